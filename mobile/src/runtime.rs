//! The library's own tokio runtime, for the network: one per process, shared by every replica,
//! started on first use. Blocking calls wait on it from the caller's thread.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::error::{GridsyncError, Result};

/// Two threads carry every socket of every replica; the work of storing received changes runs
/// on the caller's thread (one-shot syncs) or on these (live sessions).
const NETWORK_THREADS: usize = 2;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

pub(crate) fn runtime() -> Result<&'static Runtime> {
    let built = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(NETWORK_THREADS)
            .thread_name("gridsync-net")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    built
        .as_ref()
        .map_err(|e| GridsyncError::internal(format!("cannot start the network runtime: {e}")))
}

/// Runs `future` to completion on the runtime, blocking this thread. Refused on the runtime's
/// own threads (from a callback there), where blocking would stall every session.
pub(crate) fn block_on<F: Future>(call: &str, future: F) -> Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(GridsyncError::busy(call));
    }
    Ok(runtime()?.block_on(future))
}
