//! An in-memory backend: for tests and for trying the relay without a disk. Not durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use gridsync_core::protocol::Hash;
use gridsync_core::record::IndexRow;

use super::{Commit, LogEntry, RecordCount, Result, Storage, StorageError, StoredDoc};

#[derive(Default)]
struct Inner {
    /// (grid, kind, entry)
    log: Vec<(String, String, LogEntry)>,
    hashes: HashSet<Hash>,
    docs: BTreeMap<String, MemDoc>,
    index: HashMap<String, IndexRow>,
}

struct MemDoc {
    grid_id: String,
    kind: String,
    heads: Vec<Hash>,
    snapshot: Option<Vec<u8>>,
    snapshot_seq: u64,
}

pub struct MemoryStorage {
    id: String,
    inner: Mutex<Inner>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage {
            id: uuid::Uuid::now_v7().to_string(),
            inner: Mutex::default(),
        }
    }
}

impl MemoryStorage {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| StorageError::Database("memory store poisoned".into()))
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn server_id(&self) -> Result<String> {
        Ok(self.id.clone())
    }

    async fn known(&self, hashes: &[Hash]) -> Result<HashSet<Hash>> {
        let inner = self.lock()?;
        Ok(hashes
            .iter()
            .filter(|h| inner.hashes.contains(*h))
            .copied()
            .collect())
    }

    async fn commit(&self, commit: Commit) -> Result<u64> {
        let mut inner = self.lock()?;
        for ch in commit.changes {
            if !inner.hashes.insert(ch.hash) {
                continue;
            }
            let seq = inner.log.len() as u64 + 1;
            inner.log.push((
                ch.grid_id,
                ch.kind,
                LogEntry {
                    seq,
                    doc_id: ch.doc_id,
                    hash: ch.hash,
                    bytes: ch.bytes,
                    device_id: ch.device_id,
                },
            ));
        }
        let last = inner.log.len() as u64;
        for d in commit.docs {
            let doc_seq = inner
                .log
                .iter()
                .rev()
                .find(|(_, _, e)| e.doc_id == d.doc_id)
                .map_or(0, |(_, _, e)| e.seq);
            let entry = inner
                .docs
                .entry(d.doc_id.clone())
                .or_insert_with(|| MemDoc {
                    grid_id: d.grid_id.clone(),
                    kind: String::new(),
                    heads: Vec::new(),
                    snapshot: None,
                    snapshot_seq: 0,
                });
            entry.kind = d.kind;
            entry.heads = d.heads;
            if let Some(snapshot) = d.snapshot {
                entry.snapshot = Some(snapshot);
                entry.snapshot_seq = doc_seq;
            }
            if let Some(row) = d.index {
                inner.index.insert(d.doc_id, row);
            }
        }
        Ok(last)
    }

    async fn load_doc(&self, doc_id: &str) -> Result<Option<StoredDoc>> {
        let inner = self.lock()?;
        let Some(doc) = inner.docs.get(doc_id) else {
            return Ok(None);
        };
        let changes = inner
            .log
            .iter()
            .filter(|(_, _, e)| e.doc_id == doc_id && e.seq > doc.snapshot_seq)
            .map(|(_, _, e)| e.bytes.clone())
            .collect();
        Ok(Some(StoredDoc {
            grid_id: doc.grid_id.clone(),
            kind: doc.kind.clone(),
            snapshot: doc.snapshot.clone(),
            changes,
        }))
    }

    async fn log_since(
        &self,
        grid_id: &str,
        kinds: &[String],
        after: u64,
        max_changes: usize,
        max_bytes: usize,
    ) -> Result<(Vec<LogEntry>, bool)> {
        let inner = self.lock()?;
        let mut out = Vec::new();
        let mut size = 0;
        for (grid, kind, entry) in inner.log.iter().skip(after as usize) {
            if grid != grid_id || !(kinds.is_empty() || kinds.contains(kind)) {
                continue;
            }
            if out.len() == max_changes || (!out.is_empty() && size + entry.bytes.len() > max_bytes)
            {
                return Ok((out, true));
            }
            size += entry.bytes.len();
            out.push(entry.clone());
        }
        Ok((out, false))
    }

    async fn head(&self, grid_id: &str) -> Result<Option<(u64, Hash)>> {
        let inner = self.lock()?;
        Ok(inner
            .log
            .iter()
            .rev()
            .find(|(g, _, _)| g == grid_id)
            .map(|(_, _, e)| (e.seq, e.hash)))
    }

    async fn entry_hash(&self, grid_id: &str, seq: u64) -> Result<Option<Hash>> {
        let inner = self.lock()?;
        Ok(seq
            .checked_sub(1)
            .and_then(|i| inner.log.get(i as usize))
            .filter(|(g, _, _)| g == grid_id)
            .map(|(_, _, e)| e.hash))
    }

    async fn doc_heads(
        &self,
        grid_id: &str,
        kinds: &[String],
        after_doc: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Hash>)>> {
        let inner = self.lock()?;
        Ok(inner
            .docs
            .iter()
            .filter(|(id, d)| {
                d.grid_id == grid_id
                    && (kinds.is_empty() || kinds.contains(&d.kind))
                    && after_doc.is_none_or(|a| id.as_str() > a)
            })
            .take(limit)
            .map(|(id, d)| (id.clone(), d.heads.clone()))
            .collect())
    }

    async fn record_counts(&self) -> Result<Vec<RecordCount>> {
        let inner = self.lock()?;
        let mut counts: BTreeMap<(String, String, Option<String>), u64> = BTreeMap::new();
        for row in inner.index.values().filter(|r| !r.deleted) {
            *counts
                .entry((
                    row.grid_id.clone(),
                    row.kind.as_str().to_string(),
                    row.status.clone(),
                ))
                .or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((grid_id, kind, status), count)| RecordCount {
                grid_id,
                kind,
                status,
                count,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn test_memory_storage_conforms() {
        crate::storage::tests::conformance(&super::MemoryStorage::default()).await;
    }
}
