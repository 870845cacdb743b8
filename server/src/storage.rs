//! Where the relay keeps the change log, its copy of each document and the query index.
//!
//! The trait is the whole contract: the sync code never sees SQL. Every method is a plain
//! request/response with no SQLite-only semantics (no rowid tricks, no reliance on a single
//! writer connection), so [`PostgresStorage`] implements it as it stands. [`MemoryStorage`]
//! implements it too, and [`tests::conformance`] runs the same checks against all three.

mod attachments;
pub mod blobs;
mod memory;
pub(crate) mod packed;
pub mod postgres;
mod query;
mod sqlite;

use std::collections::HashSet;

use async_trait::async_trait;
use gridsync_core::protocol::Hash;
use gridsync_core::record::attachment::AttachmentRef;
use gridsync_core::record::{IndexRow, Kind};

pub use attachments::{AttachmentCount, AttachmentUse, DocAttachment, Orphan, StoredBlob};
pub use blobs::{BlobRemoval, BlobStore, FsBlobStore, MemoryBlobStore};
pub use memory::MemoryStorage;
pub use packed::PackedSnapshot;
pub use postgres::PostgresStorage;
pub use query::{
    ChangeSource, GridCount, IncidentFact, ListedRecord, MovementFact, ParticipantFact,
    RecordFacts, RecordPage, RecordQuery, Settled, Tally, normalise_instant, utc_string,
};
pub use sqlite::{DB_FILE, DirLock, LOCK_FILE, Restored, SqliteStorage, StoreSummary};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request itself is wrong (a duplicate username, an unknown area): say so to the user.
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// A file of the store (an attachment's bytes) could not be read or written.
    #[error("disk error: {0}")]
    Disk(String),
    /// The disk holding the store is full: the write was rolled back, nothing of it is stored.
    /// Reads go on, and writes succeed again once there is room.
    #[error(
        "服务器磁盘已满，未保存任何内容，腾出空间后自动恢复 the relay's disk is full: nothing was \
         stored; it goes on by itself once there is room"
    )]
    Full,
    /// Another relay on the same database changed a document of the commit since this relay
    /// read it: nothing was stored; reload the documents and apply again.
    #[error("a document changed on another relay meanwhile: {0}")]
    Stale(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StorageError::Full,
            _ => StorageError::Database(e.to_string()),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Which record kinds a read covers: every kind, or only those listed (none if the list is
/// empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KindFilter {
    #[default]
    All,
    Only(Vec<Kind>),
}

impl KindFilter {
    /// The kinds `role` may read: [`KindFilter::All`] when it reads every kind.
    pub fn readable_by(role: gridsync_core::access::Role) -> Self {
        let readable = |k: &Kind| gridsync_core::access::can_read(role, *k);
        if Kind::ALL_STORED.iter().all(readable) {
            KindFilter::All
        } else {
            KindFilter::Only(Kind::ALL_STORED.into_iter().filter(readable).collect())
        }
    }

    /// Only `kind`.
    pub fn one(kind: Kind) -> Self {
        KindFilter::Only(vec![kind])
    }

    pub fn admits(&self, kind: Kind) -> bool {
        match self {
            KindFilter::All => true,
            KindFilter::Only(kinds) => kinds.contains(&kind),
        }
    }

    /// Whether a record of the kind stored under `name` passes (a kind this build does not know
    /// passes only [`KindFilter::All`]).
    pub fn admits_name(&self, name: &str) -> bool {
        match self {
            KindFilter::All => true,
            KindFilter::Only(kinds) => kinds.iter().any(|k| k.as_str() == name),
        }
    }

    /// Whether nothing passes: backends answer such a read without asking the database.
    pub fn admits_nothing(&self) -> bool {
        matches!(self, KindFilter::Only(kinds) if kinds.is_empty())
    }
}

/// A kind as the store keeps it: its name, or '' while the record is incomplete.
pub(crate) fn kind_text(kind: Option<Kind>) -> &'static str {
    kind.map_or("", Kind::as_str)
}

/// A kind the store kept, read back.
pub(crate) fn stored_kind(text: &str) -> Result<Option<Kind>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| StorageError::Corrupt(format!("unknown record kind {text:?} in the store")))
}

/// A change to append to the log.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub grid_id: String,
    pub doc_id: String,
    /// The record's kind (`None` while the document's first change has not arrived: stored
    /// as '', which only a reader of every kind is given).
    pub kind: Option<Kind>,
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub device_id: String,
    pub worker_id: String,
    /// The document's snapshot in the same commit holds this change byte for byte (the relay
    /// checked): the log keeps the entry and the change's size, not its bytes again.
    pub in_snapshot: bool,
}

impl NewChange {
    /// What the log's `bytes` column keeps: nothing when the snapshot holds the change.
    pub fn stored_bytes(&self) -> &[u8] {
        if self.in_snapshot { &[] } else { &self.bytes }
    }

    /// What the log's `size` column keeps: the change's length when its bytes are not kept
    /// (otherwise their length is the size).
    pub fn stored_size(&self) -> Option<i64> {
        self.in_snapshot.then_some(self.bytes.len() as i64)
    }
}

/// What a commit changes about one document besides its log entries.
#[derive(Debug, Clone)]
pub struct DocUpdate {
    pub doc_id: String,
    pub grid_id: String,
    /// `None` while the document is incomplete.
    pub kind: Option<Kind>,
    pub heads: Vec<Hash>,
    /// `None` while the document is incomplete (its first change has not arrived).
    pub index: Option<IndexRow>,
    /// A fresh snapshot covering every change of the document up to and including this commit,
    /// in its stored form; read back, it is the snapshot's own bytes again.
    pub snapshot: Option<PackedSnapshot>,
    /// The dashboard's facts, with the index row.
    pub facts: Option<RecordFacts>,
    /// The document has concurrent heads after this commit: it was edited in parallel, and
    /// stays flagged for review until [`Queries::clear_review`], or until a commit leaves it
    /// with one head and no field holding concurrent values after some field did.
    pub parallel: bool,
    /// The attachments the record names now, replacing what it named before; `None` leaves
    /// them as they were (the record is not complete yet).
    pub attachments: Option<Vec<AttachmentRef>>,
}

/// One atomic write: either all of it is durable when `commit` returns, or none of it.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub changes: Vec<NewChange>,
    pub docs: Vec<DocUpdate>,
    /// Documents that change grid in this commit (docs/protocol.md §15): each move is recorded,
    /// and the document's `docs` and `records` rows are filed under `to_grid` from now on. No
    /// other commit changes a stored document's grid.
    pub moves: Vec<GridMove>,
}

/// A document moved to another grid by the office (网格调整), as recorded in the commit that
/// made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridMove {
    pub doc_id: String,
    pub from_grid: String,
    pub to_grid: String,
    /// The move's change in `from_grid`'s log (old-grid devices learn the move from it).
    pub left: Hash,
    /// The move's change in `to_grid`'s log; its seq becomes the move's `seq`. Read back from
    /// the store it is all zeros (the entry at `seq` is that change).
    pub arrived: Hash,
    /// The user id of whoever moved it.
    pub moved_by: String,
    /// Set by the store: the seq of the `arrived` entry. Ignored in a [`Commit`].
    pub seq: u64,
    /// Set by the store: when the move was committed (RFC 3339, UTC). Ignored in a [`Commit`].
    pub moved_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub doc_id: String,
    pub hash: Hash,
    /// Empty when the change is held by the document's snapshot ([`NewChange::in_snapshot`]):
    /// the relay rebuilds it from its copy of the document.
    pub bytes: Vec<u8>,
    pub device_id: String,
}

/// A document's stored snapshot and the newest log entry it stands for.
#[derive(Debug, Clone)]
pub struct LogSnapshot {
    pub bytes: Vec<u8>,
    pub seq: u64,
}

/// A document as stored: its snapshot and the log entries after it.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    pub grid_id: String,
    /// `None` while the document is incomplete.
    pub kind: Option<Kind>,
    pub snapshot: Option<Vec<u8>>,
    pub changes: Vec<Vec<u8>>,
}

/// A record and the seq of its newest log entry, see [`Queries::changed_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub doc_id: String,
    pub seq: u64,
}

/// Counts for `/v1/stats`: records by grid, kind and status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordCount {
    pub grid_id: String,
    pub kind: String,
    pub status: Option<String>,
    pub count: u64,
}

/// Writing the sync log and the documents. Only the relay's core does it (`Relay::accept`,
/// repair, grid moves), through its own handle on the store: what the rest of the relay is
/// given ([`Log`], [`Queries`], [`Attachments`]) cannot write the log.
#[async_trait]
pub trait Commits: Send + Sync + 'static {
    /// Appends changes (skipping any already known) and updates documents, atomically and
    /// durably. Returns the highest sequence number in the log afterwards.
    async fn commit(&self, commit: Commit) -> Result<u64>;
}

/// The sync log and the documents as read: what devices catch up on. Sessions, repair, grid
/// moves and the API read it; only [`Commits`] writes it.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// A random id made when the store was created; a restored backup keeps it.
    async fn server_id(&self) -> Result<String>;
    /// Which of these change hashes are already in the log.
    async fn known(&self, hashes: &[Hash]) -> Result<HashSet<Hash>>;

    async fn load_doc(&self, doc_id: &str) -> Result<Option<StoredDoc>>;
    /// [`Log::load_doc`] of several documents, in order. A backend that pays per call (a
    /// thread hop, a round trip) answers them in one.
    async fn load_docs(&self, doc_ids: &[String]) -> Result<Vec<Option<StoredDoc>>> {
        let mut out = Vec::with_capacity(doc_ids.len());
        for id in doc_ids {
            out.push(self.load_doc(id).await?);
        }
        Ok(out)
    }
    /// A grid's log entries after `after` of the kinds `kinds` admits,
    /// oldest first, at most `max_changes` entries and about `max_bytes` bytes (at least one
    /// entry). The flag says whether more remain.
    async fn log_since(
        &self,
        grid_id: &str,
        kinds: &KindFilter,
        after: u64,
        max_changes: usize,
        max_bytes: usize,
    ) -> Result<(Vec<LogEntry>, bool)>;
    /// Each document's stored snapshot (in the order of `doc_ids`) when every log entry it stands
    /// for lies in `(after, up_to]` and the document is filed under `grid_id` now: a device whose
    /// cursor in that grid is `after` holds none of the document, and the snapshot holds nothing
    /// beyond the catch-up batch that ends at `up_to` (nor anything of a grid it moved to).
    async fn snapshots_within(
        &self,
        grid_id: &str,
        doc_ids: &[String],
        after: u64,
        up_to: u64,
    ) -> Result<Vec<Option<LogSnapshot>>>;
    /// The newest entry of a grid's log.
    async fn head(&self, grid_id: &str) -> Result<Option<(u64, Hash)>>;
    /// The hash of the grid's entry at `seq`, if there is one.
    async fn entry_hash(&self, grid_id: &str, seq: u64) -> Result<Option<Hash>>;
    /// A page of the grid's documents of the kinds `kinds` admits with their heads,
    /// ordered by id, after `after_doc`.
    async fn doc_heads(
        &self,
        grid_id: &str,
        kinds: &KindFilter,
        after_doc: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Hash>)>>;
    /// The moves of a document to other grids, oldest first.
    async fn moves_of(&self, doc_id: &str) -> Result<Vec<GridMove>>;
    /// The documents moved into `grid_id` whose arrival entry lies in `(after, up_to]`, by seq.
    async fn moves_into(&self, grid_id: &str, after: u64, up_to: u64) -> Result<Vec<String>>;
    /// Moves with a seq after `after`, oldest first, at most `limit`: how a relay learns of a
    /// move another process (`admin move-household`) committed.
    async fn moves_after(&self, after: u64, limit: usize) -> Result<Vec<GridMove>>;
}

/// The dashboard's and the API's reads over the query index and the facts (plus settling a
/// review flag): what office staff see, never what devices sync.
#[async_trait]
pub trait Queries: Send + Sync + 'static {
    /// How much the store takes on disk, for `/metrics`: SQLite's file with its write-ahead
    /// log, PostgreSQL's database; `None` in memory.
    async fn store_bytes(&self) -> Result<Option<u64>>;
    async fn record_counts(&self) -> Result<Vec<RecordCount>>;
    /// A page of the records matching `q`, most recently updated first, and how many match.
    async fn list_records(&self, q: &RecordQuery) -> Result<RecordPage>;
    /// How many records match `q`, by grid, kind, status and subtype, in that order (paging
    /// ignored; a missing status or subtype first).
    async fn tally(&self, q: &RecordQuery) -> Result<Vec<Tally>>;
    /// Per grid with a match: how many records match `q` (paging ignored), and how many of
    /// those are overdue, that is whose urgency is a key of `overdue_before` and whose
    /// `occurred_at` is strictly before the instant (UTC, [`utc_string`] form) given for it.
    /// Counted in the store, one grouped query (the county overview's figures over a whole
    /// county, urgent reports past their deadline among them, without listing records).
    async fn grid_counts(
        &self,
        q: &RecordQuery,
        overdue_before: &[(String, String)],
    ) -> Result<Vec<GridCount>>;
    /// Per grid of `grids` with any: the stock items (not deleted) whose goods on hand (in
    /// minus out, [`RecordFacts::on_hand`]) are at or below their low-stock level.
    async fn low_stock_counts(&self, grids: &[String]) -> Result<Vec<(String, u64)>>;
    /// Who uploaded each change of a document, in log order.
    async fn change_sources(&self, doc_id: &str) -> Result<Vec<ChangeSource>>;
    /// The records of these grids and of the kinds `kinds` admits whose newest log
    /// entry comes after `after`, each once with that entry's seq, oldest first, at most
    /// `limit`; the flag says whether more remain. Paging on with the last seq returns every
    /// record changed since the first `after` exactly once, as long as nothing changes in
    /// between: what changes moves to the end (the API's changed-since lists).
    async fn changed_since(
        &self,
        grids: &[String],
        kinds: &KindFilter,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Changed>, bool)>;
    /// Settles a document's review flag at log entry `seq` (staff reviewed it), unless it was
    /// flagged again after that entry. A settled flag stays, to be listed as settled
    /// ([`RecordQuery::settled_since`]), until the document is flagged again.
    async fn clear_review(&self, doc_id: &str, seq: u64) -> Result<()>;
}

/// The attachments' metadata: which records name which photo, which bytes are stored, and
/// the purge of those no record names.
#[async_trait]
pub trait Attachments: Send + Sync + 'static {
    /// The records that name an attachment.
    async fn attachment_uses(&self, hash: &Hash) -> Result<Vec<AttachmentUse>>;
    /// Whether a reader of these grids and kinds may read the attachment:
    /// a record it may read names it.
    async fn attachment_readable(
        &self,
        hash: &Hash,
        grids: &[String],
        kinds: &KindFilter,
    ) -> Result<bool> {
        let uses = self.attachment_uses(hash).await?;
        Ok(uses.iter().any(|u| u.readable_by(grids, kinds)))
    }
    /// The attachments a record names, ordered by hash, each with whether its bytes arrived.
    async fn doc_attachments(&self, doc_id: &str) -> Result<Vec<DocAttachment>>;
    /// How many attachments each of these records names (records naming none are left out): an
    /// export's column in one query, not one a row.
    async fn attachment_counts_of(
        &self,
        doc_ids: &[String],
    ) -> Result<std::collections::HashMap<String, usize>>;
    /// Records that the relay holds an attachment in whole (the first upload's metadata stays).
    async fn blob_stored(&self, blob: StoredBlob) -> Result<()>;

    async fn stored_blob(&self, hash: &Hash) -> Result<Option<StoredBlob>>;
    /// The bytes of the attachments a device uploaded that the relay holds (its quota's use).
    async fn device_blob_bytes(&self, device_id: &str) -> Result<u64>;
    /// Per grid with any: attachments named, and stored with their bytes.
    async fn attachment_counts(&self) -> Result<Vec<AttachmentCount>>;
    /// The stored attachments no record names: marks those newly found so with `now`, clears
    /// the mark of those named again, and returns every one marked.
    async fn orphan_blobs(&self, now: &str) -> Result<Vec<Orphan>>;
    /// Purges a stored attachment if no record names it and it was found so at or before
    /// `unnamed_by` ([`Attachments::orphan_blobs`]'s marks): runs `remove` (its bytes) and forgets
    /// it in one write transaction, the one a commit takes too, so that a record naming it is
    /// committed either before (it is kept, and `remove` is not run) or after (it is gone). Also
    /// from another process (`admin purge-attachments` beside a serving relay). Whether it was
    /// purged.
    async fn purge_blob(&self, hash: &Hash, unnamed_by: &str, remove: BlobRemoval) -> Result<bool>;
}

/// Everything the relay stores: one backend implements all three parts.
pub trait Storage: Log + Commits + Queries + Attachments {}

impl<T: Log + Commits + Queries + Attachments> Storage for T {}

#[cfg(test)]
pub(crate) mod tests;
