#![doc = include_str!("../README.md")]

uniffi::setup_scaffolding!("gridsync");

mod error;
mod live;
mod observe;
mod replica;
mod runtime;
mod types;

pub use error::{ErrorCode, GridsyncError};
pub use live::{LiveSession, LiveSessionListener, SessionState};
pub use observe::{Observation, QueryListener, RecordListener};
pub use replica::Replica;
pub use types::{
    Account, ConflictingValue, FieldConflict, FieldRecord, GridCursor, OpenOptions, RecordConflict,
    RecordQuery, RecordSummary, RefusedChange, SignInOptions, SyncOnceOptions, SyncProgress,
    SyncProgressListener, SyncResult, SyncStatus,
};
