//! Spreading independent pieces of work (one document each) over the machine's cores: the
//! device's receive path and the relay's accept path both build and merge many documents that
//! share nothing.

/// `items.map(f)` in order, spread over the machine's cores (at most [`MAX_THREADS`]) when there
/// is enough to share. Each thread takes the next item when it is done with one (the calling
/// thread among them), so a core that something else keeps busy (another app on a phone, the
/// bench's devices beside the relay) does less of the work instead of holding up the rest.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(items.len() / MIN_ITEMS_PER_THREAD);
    if threads < 2 {
        return items.into_iter().map(f).collect();
    }
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let work = || {
        let mut done = Vec::new();
        loop {
            // A poisoned queue means another thread panicked in `f`: that panic is resumed below.
            let next = match queue.lock() {
                Ok(mut q) => q.next(),
                Err(_) => None,
            };
            let Some((i, item)) = next else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut done = work();
        for h in handles {
            done.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        done
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// More threads than this gain little on a phone (or beside a busy relay) and cost memory.
const MAX_THREADS: usize = 4;
/// Below this many documents per thread, starting threads costs more than it saves.
const MIN_ITEMS_PER_THREAD: usize = 4;

#[cfg(test)]
mod tests {
    #[test]
    fn test_results_come_back_in_order_whatever_the_thread() {
        let items: Vec<usize> = (0..1_000).collect();
        // Each item takes a moment, as a document does: the other threads start in time to take
        // some.
        let out = super::map(items, |i| {
            std::thread::sleep(std::time::Duration::from_micros(100));
            (i, std::thread::current().id())
        });
        assert!(out.iter().enumerate().all(|(i, (j, _))| i == *j));
        if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
            let first = out[0].1;
            assert!(
                out.iter().any(|(_, id)| *id != first),
                "spread over threads"
            );
        }
    }

    #[test]
    fn test_little_work_stays_on_the_calling_thread() {
        let here = std::thread::current().id();
        let out = super::map(vec![1, 2, 3], |i| (i * 2, std::thread::current().id()));
        assert_eq!(
            out.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            vec![2, 4, 6]
        );
        assert!(out.iter().all(|(_, id)| *id == here));
    }
}
