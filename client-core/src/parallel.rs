//! Spreading independent pieces of work (one document each) over the machine's cores: the
//! device's receive path and the relay's accept path both build and merge many documents that
//! share nothing.

/// `items.map(f)` in order, spread over the machine's cores (at most [`MAX_THREADS`]) when there
/// is enough to share.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(items.len() / MIN_ITEMS_PER_THREAD);
    if threads < 2 {
        return items.into_iter().map(f).collect();
    }
    let mut shares: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push((i, item));
    }
    let f = &f;
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .map(|(i, item)| (i, f(item)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
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
        let out = super::map(items, |i| (i, std::thread::current().id()));
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
