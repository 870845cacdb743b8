//! Observers: an app's screen registers a query or a record id and is called when the answer
//! changes, after a local write or a received change.
//!
//! Every callback of a replica (observers and live-session states) runs on one thread of its
//! own, `gridsync-callbacks`, one at a time and in order: never on the caller's thread, never
//! on the network threads, never while a lock of the replica is held. A write or a stored batch
//! only marks the observers stale and wakes that thread, which re-runs each query (from the
//! index; a record observer opens its one record), compares the answer with the last one it
//! delivered, and calls the listener only when it differs. Bursts of writes coalesce into one
//! re-run.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;

use gridsync_core::Replica as CoreReplica;

use crate::error::Result;
use crate::replica::{get_record, list_records};
use crate::types::{FieldRecord, RecordQuery, RecordSummary};

/// Called with the rows of a query whenever they change.
#[uniffi::export(foreign)]
pub trait QueryListener: Send + Sync {
    /// The query's rows now: once soon after registering, then after every change of them.
    fn on_change(&self, rows: Vec<RecordSummary>);
}

/// Called with a record whenever it changes.
#[uniffi::export(foreign)]
pub trait RecordListener: Send + Sync {
    /// The record now (none if this device does not hold it): once soon after registering,
    /// then after every change of it.
    fn on_change(&self, record: Option<FieldRecord>);
}

/// A registered observer. Keep it as long as the screen shows the data; `cancel()` (or
/// dropping it) unregisters the listener.
#[derive(uniffi::Object)]
pub struct Observation {
    id: u64,
    hub: Weak<Hub>,
}

#[uniffi::export]
impl Observation {
    /// Unregisters the listener. Once this returns the listener is not called again (unless
    /// called from inside that listener, whose current call then finishes as usual).
    pub fn cancel(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(self.id);
        }
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.cancel();
    }
}

enum Target {
    Query(RecordQuery, Arc<dyn QueryListener>),
    Record(String, Arc<dyn RecordListener>),
}

#[derive(Clone, PartialEq)]
enum Answer {
    Rows(Vec<RecordSummary>),
    Record(Option<FieldRecord>),
}

struct Entry {
    target: Arc<Target>,
    /// What the listener was last given; `None` before the first call.
    last: Option<Answer>,
}

type Event = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    /// Something was written or received since the last re-run.
    stale: bool,
    /// Observers registered since the last re-run (they get their first answer).
    fresh: bool,
    events: VecDeque<Event>,
    closed: bool,
    thread: Option<ThreadId>,
}

/// The callback thread of one replica and what it serves.
pub(crate) struct Hub {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while a listener runs: `cancel` waits on it so no call follows a cancel.
    delivering: Mutex<()>,
}

impl Hub {
    /// Starts the callback thread of `replica`. It holds the replica weakly and ends when the
    /// replica is closed.
    pub(crate) fn start(replica: &Arc<Mutex<CoreReplica>>) -> Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            delivering: Mutex::new(()),
        });
        let weak = Arc::downgrade(replica);
        let worker = hub.clone();
        let thread = std::thread::Builder::new()
            .name("gridsync-callbacks".into())
            .spawn(move || worker.run(weak))
            .map_err(|e| {
                crate::error::GridsyncError::internal(format!(
                    "cannot start the callback thread: {e}"
                ))
            })?;
        hub.lock().thread = Some(thread.thread().id());
        Ok(hub)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica's records may have changed: re-run every observer.
    pub(crate) fn changed(&self) {
        self.lock().stale = true;
        self.wake.notify_all();
    }

    /// Runs `event` on the callback thread, after the ones queued before it.
    pub(crate) fn post(&self, event: impl FnOnce() + Send + 'static) {
        self.lock().events.push_back(Box::new(event));
        self.wake.notify_all();
    }

    /// Ends the callback thread once it has run what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    pub(crate) fn observe_query(
        self: &Arc<Self>,
        query: RecordQuery,
        listener: Arc<dyn QueryListener>,
    ) -> Arc<Observation> {
        self.add(Target::Query(query, listener))
    }

    pub(crate) fn observe_record(
        self: &Arc<Self>,
        id: String,
        listener: Arc<dyn RecordListener>,
    ) -> Arc<Observation> {
        self.add(Target::Record(id, listener))
    }

    fn add(self: &Arc<Self>, target: Target) -> Arc<Observation> {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.entries.insert(
            id,
            Entry {
                target: Arc::new(target),
                last: None,
            },
        );
        state.fresh = true;
        drop(state);
        self.wake.notify_all();
        Arc::new(Observation {
            id,
            hub: Arc::downgrade(self),
        })
    }

    fn remove(&self, id: u64) {
        let on_callback_thread = {
            let mut state = self.lock();
            state.entries.remove(&id);
            state.thread == Some(std::thread::current().id())
        };
        if !on_callback_thread {
            // A call that had started finishes before cancel returns.
            drop(self.delivering.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    fn run(&self, replica: Weak<Mutex<CoreReplica>>) {
        loop {
            let (events, due) = {
                let mut state = self.lock();
                while !(state.closed || state.stale || state.fresh || !state.events.is_empty()) {
                    state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                let events: Vec<Event> = state.events.drain(..).collect();
                let all = std::mem::take(&mut state.stale);
                state.fresh = false;
                let due: Vec<(u64, Arc<Target>, Option<Answer>)> = state
                    .entries
                    .iter()
                    .filter(|(_, e)| all || e.last.is_none())
                    .map(|(id, e)| (*id, e.target.clone(), e.last.clone()))
                    .collect();
                if state.closed && events.is_empty() {
                    return;
                }
                (events, due)
            };
            for event in events {
                self.deliver(event);
            }
            let Some(replica) = replica.upgrade() else {
                return;
            };
            for (id, target, last) in due {
                let Some(answer) = evaluate(&replica, &target) else {
                    continue;
                };
                if last.as_ref() == Some(&answer) {
                    continue;
                }
                {
                    let mut state = self.lock();
                    match state.entries.get_mut(&id) {
                        Some(entry) => entry.last = Some(answer.clone()),
                        None => continue,
                    }
                }
                self.deliver_to(id, &target, answer);
            }
        }
    }

    fn deliver(&self, event: Event) {
        let _delivering = self.delivering.lock().unwrap_or_else(|p| p.into_inner());
        if catch_unwind(AssertUnwindSafe(event)).is_err() {
            tracing::warn!("a gridsync callback failed");
        }
    }

    fn deliver_to(&self, id: u64, target: &Target, answer: Answer) {
        let _delivering = self.delivering.lock().unwrap_or_else(|p| p.into_inner());
        // Cancelled between the re-run and now: not another call.
        if !self.lock().entries.contains_key(&id) {
            return;
        }
        let call = || match (target, answer) {
            (Target::Query(_, listener), Answer::Rows(rows)) => listener.on_change(rows),
            (Target::Record(_, listener), Answer::Record(record)) => listener.on_change(record),
            _ => {}
        };
        if catch_unwind(AssertUnwindSafe(call)).is_err() {
            tracing::warn!("an observer's listener failed");
        }
    }
}

/// The current answer of one observer; `None` when it cannot be read now (it is tried again
/// at the next change).
fn evaluate(replica: &Mutex<CoreReplica>, target: &Target) -> Option<Answer> {
    let mut replica = replica.lock().unwrap_or_else(|p| p.into_inner());
    let answer = match target {
        Target::Query(query, _) => list_records(&replica, query).map(Answer::Rows),
        Target::Record(id, _) => get_record(&mut replica, id).map(Answer::Record),
    };
    match answer {
        Ok(answer) => Some(answer),
        Err(e) => {
            tracing::warn!("an observer's query failed: {e}");
            None
        }
    }
}
