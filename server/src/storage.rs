//! Where the relay keeps the change log, its copy of each document and the query index.
//!
//! The trait is the whole contract: the sync code never sees SQL. Every method is a plain
//! request/response with no SQLite-only semantics (no rowid tricks, no reliance on a single
//! writer connection), so a PostgreSQL backend can implement it as it stands. [`MemoryStorage`]
//! implements it too, and [`tests::conformance`] runs the same checks against both.

mod memory;
mod sqlite;

use std::collections::HashSet;

use async_trait::async_trait;
use gridsync_core::protocol::Hash;
use gridsync_core::record::IndexRow;

pub use memory::MemoryStorage;
pub use sqlite::SqliteStorage;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request itself is wrong (a duplicate username, an unknown area): say so to the user.
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Database(e.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A change to append to the log.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub grid_id: String,
    pub doc_id: String,
    /// The record's kind ("" while the document's first change has not arrived).
    pub kind: String,
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub device_id: String,
    pub worker_id: String,
}

/// What a commit changes about one document besides its log entries.
#[derive(Debug, Clone)]
pub struct DocUpdate {
    pub doc_id: String,
    pub grid_id: String,
    pub kind: String,
    pub heads: Vec<Hash>,
    /// `None` while the document is incomplete (its first change has not arrived).
    pub index: Option<IndexRow>,
    /// A fresh snapshot covering every change of the document up to and including this commit.
    pub snapshot: Option<Vec<u8>>,
}

/// One atomic write: either all of it is durable when `commit` returns, or none of it.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub changes: Vec<NewChange>,
    pub docs: Vec<DocUpdate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub doc_id: String,
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub device_id: String,
}

/// A document as stored: its snapshot and the log entries after it.
#[derive(Debug, Clone, Default)]
pub struct StoredDoc {
    pub grid_id: String,
    pub kind: String,
    pub snapshot: Option<Vec<u8>>,
    pub changes: Vec<Vec<u8>>,
}

/// Counts for `/v1/stats`: records by grid, kind and status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordCount {
    pub grid_id: String,
    pub kind: String,
    pub status: Option<String>,
    pub count: u64,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A random id made when the store was created; a restored backup keeps it.
    async fn server_id(&self) -> Result<String>;
    /// Which of these change hashes are already in the log.
    async fn known(&self, hashes: &[Hash]) -> Result<HashSet<Hash>>;
    /// Appends changes (skipping any already known) and updates documents, atomically and
    /// durably. Returns the highest sequence number in the log afterwards.
    async fn commit(&self, commit: Commit) -> Result<u64>;
    async fn load_doc(&self, doc_id: &str) -> Result<Option<StoredDoc>>;
    /// A grid's log entries after `after` of the given kinds (all kinds if `kinds` is empty),
    /// oldest first, at most `max_changes` entries and about `max_bytes` bytes (at least one
    /// entry). The flag says whether more remain.
    async fn log_since(
        &self,
        grid_id: &str,
        kinds: &[String],
        after: u64,
        max_changes: usize,
        max_bytes: usize,
    ) -> Result<(Vec<LogEntry>, bool)>;
    /// The newest entry of a grid's log.
    async fn head(&self, grid_id: &str) -> Result<Option<(u64, Hash)>>;
    /// The hash of the grid's entry at `seq`, if there is one.
    async fn entry_hash(&self, grid_id: &str, seq: u64) -> Result<Option<Hash>>;
    /// A page of the grid's documents of the given kinds (all if empty) with their heads,
    /// ordered by id, after `after_doc`.
    async fn doc_heads(
        &self,
        grid_id: &str,
        kinds: &[String],
        after_doc: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Hash>)>>;
    async fn record_counts(&self) -> Result<Vec<RecordCount>>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn change(grid: &str, doc: &str, n: u8, device: &str) -> NewChange {
        NewChange {
            grid_id: grid.into(),
            doc_id: doc.into(),
            kind: if n == 3 {
                "patrol".into()
            } else {
                "case".into()
            },
            hash: [n; 32],
            bytes: vec![n; 10],
            device_id: device.into(),
            worker_id: "w".into(),
        }
    }

    fn doc(grid: &str, doc: &str, snapshot: Option<Vec<u8>>) -> DocUpdate {
        DocUpdate {
            doc_id: doc.into(),
            grid_id: grid.into(),
            kind: "case".into(),
            heads: vec![[1; 32]],
            index: None,
            snapshot,
        }
    }

    /// The behaviour every backend must have.
    pub(crate) async fn conformance(s: &dyn Storage) {
        let id = s.server_id().await.unwrap();
        assert_eq!(s.server_id().await.unwrap(), id, "server id is stable");
        assert_eq!(s.head("g1").await.unwrap(), None);

        let seq = s
            .commit(Commit {
                changes: vec![change("g1", "d1", 1, "a"), change("g2", "d2", 2, "a")],
                docs: vec![doc("g1", "d1", None), doc("g2", "d2", None)],
            })
            .await
            .unwrap();
        assert!(seq >= 2);
        // Re-committing a known change is harmless and adds no entry.
        s.commit(Commit {
            changes: vec![change("g1", "d1", 1, "a"), change("g1", "d1", 3, "b")],
            docs: vec![doc("g1", "d1", None)],
        })
        .await
        .unwrap();

        let (entries, more) = s.log_since("g1", &[], 0, 10, 1 << 20).await.unwrap();
        assert!(!more);
        assert_eq!(
            entries.iter().map(|e| e.hash[0]).collect::<Vec<_>>(),
            [1, 3]
        );
        assert!(entries[0].seq < entries[1].seq);
        assert_eq!(entries[1].device_id, "b");
        let (page, more) = s.log_since("g1", &[], 0, 1, 1 << 20).await.unwrap();
        assert_eq!((page.len(), more), (1, true));
        let (rest, _) = s
            .log_since("g1", &[], entries[0].seq, 10, 1 << 20)
            .await
            .unwrap();
        assert_eq!(rest, entries[1..].to_vec());
        let patrols = s
            .log_since("g1", &["patrol".into()], 0, 10, 1 << 20)
            .await
            .unwrap()
            .0;
        assert_eq!(patrols.iter().map(|e| e.hash[0]).collect::<Vec<_>>(), [3]);

        let (head_seq, head_hash) = s.head("g1").await.unwrap().unwrap();
        assert_eq!((head_seq, head_hash), (entries[1].seq, [3; 32]));
        assert_eq!(
            s.entry_hash("g1", entries[0].seq).await.unwrap(),
            Some([1; 32])
        );
        assert_eq!(s.entry_hash("g2", entries[0].seq).await.unwrap(), None);

        let known = s.known(&[[1; 32], [9; 32]]).await.unwrap();
        assert_eq!(known, HashSet::from([[1; 32]]));

        let stored = s.load_doc("d1").await.unwrap().unwrap();
        assert_eq!(stored.grid_id, "g1");
        assert_eq!(stored.changes.len(), 2);
        // A snapshot replaces the changes it covers.
        s.commit(Commit {
            changes: vec![change("g1", "d1", 4, "a")],
            docs: vec![doc("g1", "d1", Some(vec![42]))],
        })
        .await
        .unwrap();
        let stored = s.load_doc("d1").await.unwrap().unwrap();
        assert_eq!(stored.snapshot, Some(vec![42]));
        assert!(stored.changes.is_empty());
        s.commit(Commit {
            changes: vec![change("g1", "d1", 5, "a")],
            docs: vec![doc("g1", "d1", None)],
        })
        .await
        .unwrap();
        assert_eq!(
            s.load_doc("d1").await.unwrap().unwrap().changes,
            vec![vec![5; 10]]
        );

        let heads = s.doc_heads("g1", &[], None, 10).await.unwrap();
        assert_eq!(heads, vec![("d1".to_string(), vec![[1; 32]])]);
        assert!(
            s.doc_heads("g1", &[], Some("d1"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.doc_heads("g1", &["patrol".into()], None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(s.load_doc("nope").await.unwrap().is_none());
    }
}
