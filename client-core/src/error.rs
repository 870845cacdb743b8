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

    /// The device's own role may never write this kind of record (a volunteer creating a case);
    /// nothing was stored. The message is the relay's refusal, word for word.
    #[error("{0}")]
    NotAllowed(#[from] crate::access::NotAllowed),

    #[error("no record with id {0} on this device")]
    NotFound(String),

    #[error("record {id} is a {actual}, not a {expected}")]
    WrongKind {
        id: String,
        expected: Kind,
        actual: Kind,
    },

    #[error("此副本尚未登录 this replica is not signed in: run `gridsync login` first")]
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

    /// The replica's file is damaged: an integrity check failed. An open that finds this
    /// salvages the replica instead of failing ([`crate::store::Recovery`]);
    /// [`Error::is_damaged_replica`] also tells SQLite's own "corrupt" errors.
    #[error("副本文件已损坏 the replica's file is damaged: {0}")]
    Damaged(String),

    /// A stored or received Automerge document or change could not be decoded.
    #[error("corrupt document {doc_id}: {message}")]
    CorruptDocument { doc_id: String, message: String },

    /// A record nests values deeper than [`crate::doc::MAX_DEPTH`]: received, it was not stored;
    /// stored before the limit existed, it cannot be opened. Other records are not affected.
    #[error("record {doc_id} cannot be used: {reason}")]
    TooDeep {
        doc_id: String,
        reason: crate::doc::TooDeep,
    },

    #[error("automerge error: {0}")]
    Automerge(#[from] automerge::AutomergeError),

    /// A message on the wire could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The server refused the session (incompatible version, bad request, ...).
    #[error("the server refused the sync: {0}")]
    Refused(String),

    /// The relay refused a sign-in (wrong username or password, a deactivated account, too many
    /// attempts); `code` says which kind of refusal. Nothing was stored.
    #[error("登录被拒绝 sign-in refused: {message}")]
    SignInRefused {
        code: crate::protocol::ErrorCode,
        message: String,
    },

    /// The server could not be reached or the connection broke; local data is untouched.
    /// The device token is not known to the server: sign in again. Nothing was erased.
    #[error("请重新登录 sign in again: {0}")]
    Unauthorized(String),

    /// The device was revoked or its user deactivated; the replica has been erased.
    /// The relay's own words are kept for logs, not shown: they say the same again.
    #[error(
        "此设备已被停用，本地数据已清除 this device was revoked and its data erased; 如属误操作请联系\
         社区办公室后重新登录 if this was a mistake, ask the office and sign in again with \
         `gridsync login`"
    )]
    Revoked(String),

    #[error("cannot reach the server at {url}: {message}")]
    Unreachable { url: String, message: String },

    /// The relay's TLS certificate is not one this device trusts (unknown authority, another
    /// name, expired); the connection was dropped during the handshake, before anything was sent.
    #[error(
        "服务器 {server} 的证书不受信任 the certificate of the server {server} is not trusted: \
         {reason}. 未发送任何数据 Nothing was sent. 如该服务器使用本单位自己的 CA 证书，请用 \
         `gridsync login --ca-cert 文件` 重新登录 If the relay uses your organisation's own CA, \
         sign in again with `gridsync login --ca-cert FILE`"
    )]
    UntrustedCertificate { server: String, reason: String },

    /// The CA certificate given at sign-in cannot be used; nothing was sent.
    #[error(
        "CA 证书无效 the CA certificate cannot be used: {0}. Give the PEM file of the CA that \
         signed the relay's certificate"
    )]
    BadCaCertificate(String),

    /// A photo or file could not be attached, or is not on this device (not uploaded by its
    /// maker yet, refused, not fetched): the message says which, zh-CN then English.
    #[error("{0}")]
    Attachment(String),

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
