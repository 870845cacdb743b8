//! The live session: stays connected while the app is in the foreground, uploads each local
//! write at once, stores what the relay pushes, and reconnects by itself.
//!
//! Reconnecting waits a capped exponential backoff with jitter between attempts (1 s, 2 s,
//! 4 s, ... up to 2 minutes, each between half and all of that), so a dead network costs one
//! connection attempt every two minutes at most, and phones that lost the relay together do not
//! all come back in the same second. A session that stayed up counts as working and starts
//! the backoff over. Errors no retry can fix (signed out, revoked) end the session instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gridsync_core::transport::{self, SyncOptions};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error::{ErrorCode, GridsyncError, Result};
use crate::replica::Shared;
use crate::runtime::runtime;

/// The first wait after a failed connection.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(120);
/// A session that stayed up this long worked: the next failure starts the backoff over.
const STEADY: Duration = Duration::from_secs(30);
/// How long `stop()` waits for the session to close.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Where a live session is.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SessionState {
    /// Not running: not started yet, or stopped.
    Stopped,
    /// Connecting to the relay, at start or again after a failure.
    Connecting,
    /// Connected: catching up, then uploading local writes at once and receiving pushes.
    Live,
    /// The connection failed or broke; the next attempt starts after `retry_in` (sooner after
    /// `reconnectNow()`).
    Retrying {
        /// Failed attempts in a row.
        attempt: u32,
        retry_in: Duration,
        code: ErrorCode,
        /// Chinese and English, as `GridsyncException` prints it.
        message: String,
    },
    /// Ended by an error no retry can fix: `UNAUTHORIZED` (sign in again), `REVOKED` (the
    /// replica was erased), `NOT_SIGNED_IN`.
    Failed { code: ErrorCode, message: String },
}

/// Told of every change of a live session's state, on the replica's callback thread.
#[uniffi::export(foreign)]
pub trait LiveSessionListener: Send + Sync {
    fn on_state(&self, state: SessionState);
}

/// A live sync session of one replica. `start()` when a screen that shows synced data comes
/// to the foreground, `stop()` when the app goes to the background (background sync is
/// `syncOnce` in a WorkManager or BGTaskScheduler job). Dropping it stops it.
#[derive(uniffi::Object)]
pub struct LiveSession {
    shared: Arc<Shared>,
    reporter: Reporter,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: watch::Sender<bool>,
    /// Wakes a connected session so it closes at once.
    stop_live: Arc<Notify>,
    kick: Arc<Notify>,
    task: JoinHandle<()>,
}

#[uniffi::export]
impl LiveSession {
    /// Starts the session in the background and returns at once; states arrive at the
    /// listener. Starting a running session does nothing. Fails with `BUSY` if another live
    /// session of the same replica is running.
    pub fn start(&self) -> Result<()> {
        let mut running = self.lock_running();
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Ok(());
        }
        {
            let mut live = self.shared.live.lock().unwrap_or_else(|p| p.into_inner());
            if *live {
                return Err(GridsyncError::new(
                    ErrorCode::Busy,
                    "此副本已有实时同步在运行",
                    "another live session of this replica is running: stop it first",
                ));
            }
            *live = true;
        }
        let (stop, stop_rx) = watch::channel(false);
        let stop_live = Arc::new(Notify::new());
        let kick = Arc::new(Notify::new());
        self.reporter.set(SessionState::Connecting);
        let task = runtime()?.spawn(run(
            self.shared.clone(),
            self.reporter.clone(),
            stop_rx,
            stop_live.clone(),
            kick.clone(),
        ));
        *running = Some(Running {
            stop,
            stop_live,
            kick,
            task,
        });
        Ok(())
    }

    /// Stops the session: closes the connection and waits for it (a few seconds at most).
    /// Nothing is lost; unsent writes go at the next sync.
    pub fn stop(&self) {
        let Some(task) = self.signal_stop() else {
            return;
        };
        // On the library's own threads the session finishes by itself.
        if tokio::runtime::Handle::try_current().is_err()
            && let Ok(rt) = runtime()
        {
            let _ = rt.block_on(async { tokio::time::timeout(STOP_WAIT, task).await });
        }
    }

    /// Tries to connect now instead of waiting out the backoff: call it when the phone's
    /// network comes back (Android `ConnectivityManager.NetworkCallback.onAvailable`, iOS
    /// `NWPathMonitor`).
    pub fn reconnect_now(&self) {
        if let Some(r) = self.lock_running().as_ref() {
            r.kick.notify_one();
        }
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        self.reporter.get()
    }
}

impl LiveSession {
    pub(crate) fn new(
        shared: Arc<Shared>,
        listener: Option<Arc<dyn LiveSessionListener>>,
    ) -> Arc<LiveSession> {
        let reporter = Reporter {
            state: Arc::new(Mutex::new(SessionState::Stopped)),
            listener,
            shared: shared.clone(),
        };
        Arc::new(LiveSession {
            shared,
            reporter,
            running: Mutex::new(None),
        })
    }

    fn lock_running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signal_stop(&self) -> Option<JoinHandle<()>> {
        let running = self.lock_running().take()?;
        let _ = running.stop.send(true);
        running.stop_live.notify_one();
        Some(running.task)
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Keeps the state and tells the listener, on the callback thread.
#[derive(Clone)]
struct Reporter {
    state: Arc<Mutex<SessionState>>,
    listener: Option<Arc<dyn LiveSessionListener>>,
    shared: Arc<Shared>,
}

impl Reporter {
    fn get(&self) -> SessionState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, next: SessionState) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if *state == next {
                return;
            }
            *state = next.clone();
        }
        if let Some(listener) = &self.listener {
            let listener = listener.clone();
            self.shared.hub.post(move || listener.on_state(next));
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    reporter: Reporter,
    mut stop: watch::Receiver<bool>,
    stop_live: Arc<Notify>,
    kick: Arc<Notify>,
) {
    let mut attempt: u32 = 0;
    let mut failed = None;
    while !*stop.borrow() {
        reporter.set(SessionState::Connecting);
        let began = Instant::now();
        let reached = Arc::new(AtomicBool::new(false));
        let on_change = {
            let (reached, reporter, hub) = (reached.clone(), reporter.clone(), shared.hub.clone());
            move || {
                hub.changed();
                if !reached.swap(true, Ordering::Relaxed) {
                    reporter.set(SessionState::Live);
                }
            }
        };
        let live = transport::run_live_with(
            shared.replica.clone(),
            shared.local_writes.clone(),
            stop_live.clone(),
            SyncOptions {
                on_change: Some(Box::new(on_change)),
                ..SyncOptions::default()
            },
        );
        tokio::pin!(live);
        let result = tokio::select! {
            result = &mut live => result,
            _ = stopped(&mut stop) => {
                // A connected session closes at its next wait; one still connecting is dropped
                // after a moment (between two steps, so nothing is half stored).
                tokio::time::timeout(Duration::from_secs(2), &mut live)
                    .await
                    .unwrap_or(Ok(Default::default()))
            }
        };
        shared.hub.changed();
        let error = match result {
            Ok(_) => break,
            Err(e) => GridsyncError::from(e),
        };
        if matches!(
            error.code(),
            ErrorCode::Unauthorized
                | ErrorCode::Revoked
                | ErrorCode::NotSignedIn
                | ErrorCode::BadCredentials
        ) {
            failed = Some(SessionState::Failed {
                code: error.code(),
                message: error.to_string(),
            });
            break;
        }
        if reached.load(Ordering::Relaxed) || began.elapsed() >= STEADY {
            attempt = 0;
        }
        attempt = attempt.saturating_add(1);
        let delay = backoff(attempt);
        tracing::info!("live session: attempt {attempt} failed ({error}); retrying in {delay:?}");
        reporter.set(SessionState::Retrying {
            attempt,
            retry_in: delay,
            code: error.code(),
            message: error.to_string(),
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = kick.notified() => attempt = 0,
            _ = stopped(&mut stop) => break,
        }
    }
    *shared.live.lock().unwrap_or_else(|p| p.into_inner()) = false;
    reporter.set(failed.unwrap_or(SessionState::Stopped));
}

/// Resolves once `stop()` was called (or the session dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The wait before attempt `attempt + 1`: doubling from [`FIRST_RETRY`] up to [`MAX_RETRY`],
/// half of it fixed and half random.
fn backoff(attempt: u32) -> Duration {
    let doubled = FIRST_RETRY
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_RETRY);
    let half = doubled / 2;
    half + half.mul_f64(random_fraction())
}

/// A number in [0, 1) from the system's random source (0.5 if it has none).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 1..=40 {
            let full = FIRST_RETRY
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(MAX_RETRY);
            let d = backoff(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
        assert_eq!(backoff(1000).max(MAX_RETRY), MAX_RETRY);
        assert!(backoff(1) >= Duration::from_millis(500));
    }
}
