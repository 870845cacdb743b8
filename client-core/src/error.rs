//! The one error type of client-core. Messages say what was wrong and what to do about it.

use crate::record::{Kind, ValidationError};
use crate::store::KeyProblem;

/// Everything that can go wrong on a device: bad input, a damaged store, a failed sync.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The record the caller wrote is not acceptable; nothing was stored.
    #[error("invalid record: {0}")]
    Invalid(#[from] ValidationError),

    #[error("no record with id {0} on this device")]
    NotFound(String),

    #[error("record {id} is a {actual}, not a {expected}")]
    WrongKind {
        id: String,
        expected: Kind,
        actual: Kind,
    },

    #[error("this replica is not initialised: run `gridsync init` first")]
    NotInitialised,

    #[error("this replica is already initialised for worker {0}")]
    AlreadyInitialised(String),

    /// The relay gave this device no grid, so there is nowhere to create a record.
    #[error(
        "此账号还没有分配网格，无法新建记录，请联系管理员 \
         this account has no grid, so no record can be created here: ask the admin to assign one"
    )]
    NoGrid,

    /// The replica's key is missing, wrong or malformed, or was given for a plain replica; the
    /// replica's files were not changed.
    #[error("{0}")]
    ReplicaKey(KeyProblem),

    /// The local SQLite file could not be read or written.
    #[error("local database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A stored or received Automerge document or change could not be decoded.
    #[error("corrupt document {doc_id}: {message}")]
    CorruptDocument { doc_id: String, message: String },

    #[error("automerge error: {0}")]
    Automerge(#[from] automerge::AutomergeError),

    /// A message on the wire could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The server refused the session (incompatible version, bad request, ...).
    #[error("the server refused the sync: {0}")]
    Refused(String),

    /// The server could not be reached or the connection broke; local data is untouched.
    /// The device token is not known to the server: sign in again. Nothing was erased.
    #[error("请重新登录 sign in again: {0}")]
    Unauthorized(String),

    /// The device was revoked or its user deactivated; the replica has been erased.
    #[error("此设备已被停用，本地数据已清除 this device was revoked and its data erased: {0}")]
    Revoked(String),

    #[error("cannot reach the server at {url}: {message}")]
    Unreachable { url: String, message: String },

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
