#![doc = include_str!("../README.md")]

uniffi::setup_scaffolding!("gridsync");

mod attachments;
mod error;
mod live;
mod observe;
mod replica;
mod runtime;
mod schema;
mod types;

pub use attachments::{AttachOptions, AttachmentState};
pub use error::{ErrorCode, GridsyncError};
pub use live::{LiveSession, LiveSessionListener, SessionState};
pub use observe::{Observation, QueryListener, RecordListener};
pub use replica::Replica;
pub use schema::{Label, choice_label, field_label, kind_label, record_schema};
pub use types::{
    Account, ConflictingValue, FieldConflict, FieldRecord, GridCursor, OpenOptions, RecordConflict,
    RecordQuery, RecordSummary, Recovery, RefusedChange, SignInOptions, SyncOnceOptions,
    SyncProgress, SyncProgressListener, SyncResult, SyncStatus,
};
