//! An in-memory backend: for tests and for trying the relay without a disk. Not durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use gridsync_core::protocol::Hash;
use gridsync_core::record::{IndexRow, Kind};

mod accounts;
mod attachments;

use super::query::matches;
use super::{
    AttachmentCount, AttachmentUse, Attachments, BlobRemoval, ChangeSource, Changed, Commit,
    Commits, DocAttachment, GridCount, GridMove, KindFilter, ListedRecord, Log, LogEntry,
    LogSnapshot, Orphan, PackedSnapshot, Queries, RecordCount, RecordFacts, RecordPage,
    RecordQuery, Result, Settled, StorageError, StoredBlob, StoredDoc, Tally, kind_text, packed,
};

#[derive(Default)]
struct Inner {
    /// (grid, kind, entry, who uploaded it)
    log: Vec<(String, String, LogEntry, Source)>,
    hashes: HashSet<Hash>,
    docs: BTreeMap<String, MemDoc>,
    index: HashMap<String, Indexed>,
    /// Review flags by doc id.
    review: HashMap<String, Flag>,
    attachments: attachments::Attachments,
    /// Every move, by seq (`grid_moves`).
    moves: Vec<GridMove>,
}

/// A review flag, as `review_flags` keeps it.
struct Flag {
    /// The last log sequence that flagged it.
    last: u64,
    had_conflicts: bool,
    /// When it was settled and the log sequence that settled it.
    settled: Option<(String, u64)>,
}

impl Flag {
    fn open(&self) -> bool {
        self.settled.is_none()
    }
}

impl Inner {
    fn matches(&self, q: &RecordQuery, i: &Indexed) -> bool {
        let flag = self.review.get(&i.row.id);
        matches(
            q,
            &i.row,
            &i.facts,
            flag.is_some_and(Flag::open),
            flag.and_then(|f| f.settled.as_ref())
                .map(|(at, _)| at.as_str()),
        )
    }
}

struct Source {
    worker_id: String,
    received_at: String,
    /// The change's length, its bytes stored or not (`NewChange::in_snapshot`).
    size: usize,
}

struct Indexed {
    row: IndexRow,
    received_at: String,
    facts: RecordFacts,
}

struct MemDoc {
    grid_id: String,
    kind: Option<Kind>,
    heads: Vec<Hash>,
    snapshot: Option<PackedSnapshot>,
    snapshot_seq: u64,
}

pub struct MemoryStorage {
    id: String,
    inner: Mutex<Inner>,
    /// Areas, users, devices, sessions and API tokens, apart from the log as in SQLite.
    accounts: Mutex<accounts::Accounts>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        MemoryStorage {
            id: uuid::Uuid::now_v7().to_string(),
            inner: Mutex::default(),
            accounts: Mutex::default(),
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
impl Log for MemoryStorage {
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

    async fn load_doc(&self, doc_id: &str) -> Result<Option<StoredDoc>> {
        let inner = self.lock()?;
        let Some(doc) = inner.docs.get(doc_id) else {
            return Ok(None);
        };
        let changes = inner
            .log
            .iter()
            .filter(|(_, _, e, _)| e.doc_id == doc_id && e.seq > doc.snapshot_seq)
            .map(|(_, _, e, _)| e.bytes.clone())
            .collect();
        Ok(Some(StoredDoc {
            grid_id: doc.grid_id.clone(),
            kind: doc.kind,
            snapshot: doc
                .snapshot
                .as_ref()
                .map(|p| packed::read(doc_id, p.stored().to_vec())),
            changes,
        }))
    }

    async fn snapshots_within(
        &self,
        grid_id: &str,
        doc_ids: &[String],
        after: u64,
        up_to: u64,
    ) -> Result<Vec<Option<LogSnapshot>>> {
        let inner = self.lock()?;
        Ok(doc_ids
            .iter()
            .map(|id| {
                let doc = inner.docs.get(id).filter(|d| d.grid_id == grid_id)?;
                let stored = doc.snapshot.as_ref()?;
                let first = inner
                    .log
                    .iter()
                    .find(|(_, _, e, _)| e.doc_id == *id)
                    .map(|(_, _, e, _)| e.seq)?;
                (first > after && doc.snapshot_seq <= up_to).then(|| LogSnapshot {
                    bytes: packed::read(id, stored.stored().to_vec()),
                    seq: doc.snapshot_seq,
                })
            })
            .collect())
    }

    async fn log_since(
        &self,
        grid_id: &str,
        kinds: &KindFilter,
        after: u64,
        max_changes: usize,
        max_bytes: usize,
    ) -> Result<(Vec<LogEntry>, bool)> {
        let inner = self.lock()?;
        let mut out = Vec::new();
        let mut size = 0;
        for (grid, kind, entry, source) in inner.log.iter().skip(after as usize) {
            if grid != grid_id || !kinds.admits_name(kind) {
                continue;
            }
            if out.len() == max_changes || (!out.is_empty() && size + source.size > max_bytes) {
                return Ok((out, true));
            }
            size += source.size;
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
            .find(|(g, _, _, _)| g == grid_id)
            .map(|(_, _, e, _)| (e.seq, e.hash)))
    }

    async fn entry_hash(&self, grid_id: &str, seq: u64) -> Result<Option<Hash>> {
        let inner = self.lock()?;
        Ok(seq
            .checked_sub(1)
            .and_then(|i| inner.log.get(i as usize))
            .filter(|(g, _, _, _)| g == grid_id)
            .map(|(_, _, e, _)| e.hash))
    }

    async fn doc_heads(
        &self,
        grid_id: &str,
        kinds: &KindFilter,
        after_doc: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Hash>)>> {
        let inner = self.lock()?;
        Ok(inner
            .docs
            .iter()
            .filter(|(id, d)| {
                d.grid_id == grid_id
                    && kinds.admits_name(kind_text(d.kind))
                    && after_doc.is_none_or(|a| id.as_str() > a)
            })
            .take(limit)
            .map(|(id, d)| (id.clone(), d.heads.clone()))
            .collect())
    }

    async fn moves_of(&self, doc_id: &str) -> Result<Vec<GridMove>> {
        let inner = self.lock()?;
        Ok(inner
            .moves
            .iter()
            .filter(|m| m.doc_id == doc_id)
            .cloned()
            .collect())
    }

    async fn moves_into(&self, grid_id: &str, after: u64, up_to: u64) -> Result<Vec<String>> {
        let inner = self.lock()?;
        Ok(inner
            .moves
            .iter()
            .filter(|m| m.to_grid == grid_id && m.seq > after && m.seq <= up_to)
            .map(|m| m.doc_id.clone())
            .collect())
    }

    async fn moves_after(&self, after: u64, limit: usize) -> Result<Vec<GridMove>> {
        let inner = self.lock()?;
        Ok(inner
            .moves
            .iter()
            .filter(|m| m.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Commits for MemoryStorage {
    async fn commit(&self, commit: Commit) -> Result<u64> {
        let mut inner = self.lock()?;
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        for ch in commit.changes {
            if !inner.hashes.insert(ch.hash) {
                continue;
            }
            let seq = inner.log.len() as u64 + 1;
            let size = ch.bytes.len();
            let bytes = ch.stored_bytes().to_vec();
            inner.log.push((
                ch.grid_id,
                kind_text(ch.kind).to_string(),
                LogEntry {
                    seq,
                    doc_id: ch.doc_id,
                    hash: ch.hash,
                    bytes,
                    device_id: ch.device_id,
                },
                Source {
                    worker_id: ch.worker_id,
                    received_at: now.clone(),
                    size,
                },
            ));
        }
        let last = inner.log.len() as u64;
        for mut d in commit.docs {
            if let Some(refs) = d.attachments.take() {
                inner
                    .attachments
                    .set_refs(&d.doc_id, &d.grid_id, kind_text(d.kind), refs);
            }
            let doc_seq = inner
                .log
                .iter()
                .rev()
                .find(|(_, _, e, _)| e.doc_id == d.doc_id)
                .map_or(0, |(_, _, e, _)| e.seq);
            let entry = inner
                .docs
                .entry(d.doc_id.clone())
                .or_insert_with(|| MemDoc {
                    grid_id: d.grid_id.clone(),
                    kind: None,
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
            let conflicts = d.index.as_ref().is_some_and(|i| i.has_conflicts);
            if d.parallel {
                let had = inner
                    .review
                    .get(&d.doc_id)
                    .filter(|f| f.open())
                    .is_some_and(|f| f.had_conflicts);
                inner.review.insert(
                    d.doc_id.clone(),
                    Flag {
                        last,
                        had_conflicts: had || conflicts,
                        settled: None,
                    },
                );
            } else if let Some(flag) = inner.review.get_mut(&d.doc_id)
                && flag.open()
            {
                if conflicts {
                    flag.had_conflicts = true;
                } else if flag.had_conflicts && d.index.is_some() {
                    flag.settled = Some((now.clone(), last));
                }
            }
            if let Some(row) = d.index {
                let old = inner.index.remove(&d.doc_id);
                let mut facts = d.facts.unwrap_or_default();
                // Closed since the first write that closed it (as in SQL's COALESCE).
                let old_closed = old.as_ref().and_then(|o| o.facts.closed_at.clone());
                if facts.closed_at.is_some() && old_closed.is_some() {
                    facts.closed_at = old_closed;
                }
                let old_handled = old.as_ref().and_then(|o| o.facts.handled_at.clone());
                if facts.handled_at.is_some() && old_handled.is_some() {
                    facts.handled_at = old_handled;
                }
                let received_at = old.map_or_else(|| now.clone(), |o| o.received_at);
                inner.index.insert(
                    d.doc_id,
                    Indexed {
                        row,
                        received_at,
                        facts,
                    },
                );
            }
        }
        for mut m in commit.moves {
            let Some(seq) = inner
                .log
                .iter()
                .find(|(_, _, e, _)| e.hash == m.arrived)
                .map(|(_, _, e, _)| e.seq)
            else {
                return Err(StorageError::Invalid(format!(
                    "the move of {} has no arrival entry in the log",
                    m.doc_id
                )));
            };
            if let Some(doc) = inner.docs.get_mut(&m.doc_id) {
                doc.grid_id = m.to_grid.clone();
            }
            if let Some(i) = inner.index.get_mut(&m.doc_id) {
                i.row.grid_id = m.to_grid.clone();
            }
            m.seq = seq;
            m.arrived = [0; 32];
            m.moved_at = now.clone();
            inner.moves.push(m);
        }
        Ok(last)
    }
}

#[async_trait]
impl Queries for MemoryStorage {
    async fn store_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn record_counts(&self) -> Result<Vec<RecordCount>> {
        let inner = self.lock()?;
        let mut counts: BTreeMap<(String, String, Option<String>), u64> = BTreeMap::new();
        for row in inner.index.values().map(|i| &i.row).filter(|r| !r.deleted) {
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

    async fn list_records(&self, q: &RecordQuery) -> Result<RecordPage> {
        let inner = self.lock()?;
        let mut found: Vec<&Indexed> = inner
            .index
            .values()
            .filter(|i| inner.matches(q, i))
            .collect();
        let key = |i: &Indexed| i.row.updated_at.clone().unwrap_or(i.received_at.clone());
        found.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.row.id.cmp(&b.row.id)));
        let total = found.len() as u64;
        let rows = found
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .map(|i| ListedRecord {
                row: i.row.clone(),
                received_at: i.received_at.clone(),
                facts: i.facts.clone(),
                household_title: i
                    .row
                    .household_id
                    .as_ref()
                    .filter(|_| i.row.kind != gridsync_core::record::Kind::Household)
                    .and_then(|h| inner.index.get(h))
                    .map(|h| h.row.title.clone()),
                parallel: inner.review.get(&i.row.id).is_some_and(Flag::open),
                settled: inner
                    .review
                    .get(&i.row.id)
                    .and_then(|f| f.settled.clone())
                    .map(|(at, seq)| Settled {
                        at,
                        by: inner
                            .log
                            .iter()
                            .rev()
                            .find(|(_, _, e, _)| e.doc_id == i.row.id && e.seq <= seq)
                            .map(|(_, _, _, src)| src.worker_id.clone()),
                    }),
            })
            .collect();
        Ok(RecordPage { rows, total })
    }

    async fn tally(&self, q: &RecordQuery) -> Result<Vec<Tally>> {
        let inner = self.lock()?;
        let mut counts: BTreeMap<(String, String, Option<String>, Option<String>), u64> =
            BTreeMap::new();
        for i in inner.index.values() {
            if inner.matches(q, i) {
                *counts
                    .entry((
                        i.row.grid_id.clone(),
                        i.row.kind.as_str().to_string(),
                        i.row.status.clone(),
                        i.facts.subtype.clone(),
                    ))
                    .or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((grid_id, kind, status, subtype), count)| Tally {
                grid_id,
                kind,
                status,
                subtype,
                count,
            })
            .collect())
    }

    async fn grid_counts(
        &self,
        q: &RecordQuery,
        overdue_before: &[(String, String)],
    ) -> Result<Vec<GridCount>> {
        let inner = self.lock()?;
        let mut counts: BTreeMap<String, GridCount> = BTreeMap::new();
        for i in inner.index.values().filter(|i| inner.matches(q, i)) {
            let c = counts
                .entry(i.row.grid_id.clone())
                .or_insert_with(|| GridCount {
                    grid_id: i.row.grid_id.clone(),
                    ..GridCount::default()
                });
            c.count += 1;
            // The last pair for an urgency wins, as a JSON object's last key does.
            let cutoff = overdue_before
                .iter()
                .rev()
                .find(|(u, _)| i.facts.urgency.as_ref() == Some(u));
            let overdue = cutoff.is_some_and(|(_, at)| {
                i.facts
                    .occurred_at
                    .as_ref()
                    .is_some_and(|t| t.as_str() < at.as_str())
            });
            c.overdue += u64::from(overdue);
        }
        Ok(counts.into_values().collect())
    }

    async fn low_stock_counts(&self, grids: &[String]) -> Result<Vec<(String, u64)>> {
        let inner = self.lock()?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for i in inner.index.values() {
            let low = i.row.kind == gridsync_core::record::Kind::Stock
                && !i.row.deleted
                && grids.contains(&i.row.grid_id)
                && i.facts.low_at.is_some_and(|low| i.facts.on_hand() <= low);
            if low {
                *counts.entry(i.row.grid_id.clone()).or_default() += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }

    async fn change_sources(&self, doc_id: &str) -> Result<Vec<ChangeSource>> {
        let inner = self.lock()?;
        Ok(inner
            .log
            .iter()
            .filter(|(_, _, e, _)| e.doc_id == doc_id)
            .map(|(_, _, e, src)| ChangeSource {
                hash: e.hash,
                seq: e.seq,
                device_id: e.device_id.clone(),
                worker_id: src.worker_id.clone(),
                received_at: src.received_at.clone(),
            })
            .collect())
    }

    async fn clear_review(&self, doc_id: &str, seq: u64) -> Result<()> {
        let mut inner = self.lock()?;
        if let Some(flag) = inner.review.get_mut(doc_id)
            && flag.open()
            && flag.last <= seq
        {
            flag.settled = Some((Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true), seq));
        }
        Ok(())
    }

    async fn changed_since(
        &self,
        grids: &[String],
        kinds: &KindFilter,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Changed>, bool)> {
        let inner = self.lock()?;
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (grid, _, entry, _) in inner.log.iter().skip(after as usize) {
            let kind = inner.index.get(&entry.doc_id).map(|i| i.row.kind.as_str());
            if grids.contains(grid) && kind.is_some_and(|k| kinds.admits_name(k)) {
                last.insert(entry.doc_id.as_str(), entry.seq);
            }
        }
        let mut out: Vec<Changed> = last
            .into_iter()
            .map(|(doc_id, seq)| Changed {
                doc_id: doc_id.to_string(),
                seq,
            })
            .collect();
        out.sort_by_key(|c| c.seq);
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more))
    }
}

#[async_trait]
impl Attachments for MemoryStorage {
    async fn attachment_uses(&self, hash: &Hash) -> Result<Vec<AttachmentUse>> {
        Ok(self.lock()?.attachments.uses(hash))
    }

    async fn doc_attachments(&self, doc_id: &str) -> Result<Vec<DocAttachment>> {
        Ok(self.lock()?.attachments.of_doc(doc_id))
    }

    async fn attachment_counts_of(
        &self,
        doc_ids: &[String],
    ) -> Result<std::collections::HashMap<String, usize>> {
        let inner = self.lock()?;
        Ok(doc_ids
            .iter()
            .map(|id| (id.clone(), inner.attachments.of_doc(id).len()))
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn blob_stored(&self, blob: StoredBlob) -> Result<()> {
        self.lock()?.attachments.insert_blob(blob);
        Ok(())
    }

    async fn stored_blob(&self, hash: &Hash) -> Result<Option<StoredBlob>> {
        Ok(self.lock()?.attachments.blob(hash))
    }

    async fn device_blob_bytes(&self, device_id: &str) -> Result<u64> {
        Ok(self.lock()?.attachments.device_bytes(device_id))
    }

    async fn attachment_counts(&self) -> Result<Vec<AttachmentCount>> {
        Ok(self.lock()?.attachments.counts())
    }

    async fn orphan_blobs(&self, now: &str) -> Result<Vec<Orphan>> {
        Ok(self.lock()?.attachments.orphans(now))
    }

    async fn purge_blob(&self, hash: &Hash, unnamed_by: &str, remove: BlobRemoval) -> Result<bool> {
        // Under the lock a commit takes.
        let mut inner = self.lock()?;
        if !inner.attachments.purgeable(hash, unnamed_by) {
            return Ok(false);
        }
        remove()?;
        inner.attachments.forget(hash);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn test_memory_storage_conforms() {
        crate::storage::tests::conformance(&super::MemoryStorage::default()).await;
    }

    #[tokio::test]
    async fn test_memory_storage_keeps_a_change_its_snapshot_holds_once() {
        crate::storage::tests::in_snapshot_conformance(&super::MemoryStorage::default()).await;
    }

    #[tokio::test]
    async fn test_memory_storage_answers_dashboard_queries() {
        crate::storage::tests::dashboard_conformance(&super::MemoryStorage::default()).await;
    }

    #[tokio::test]
    async fn test_memory_storage_keeps_attachment_metadata() {
        crate::storage::tests::attachments_conformance(&super::MemoryStorage::default()).await;
    }

    #[tokio::test]
    async fn test_memory_storage_lists_records_changed_since() {
        crate::storage::tests::changed_since_conformance(&super::MemoryStorage::default()).await;
    }
}
