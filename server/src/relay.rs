//! The relay's core: accepts changes into the log and its own copy of each document, serves
//! catch-up batches, runs repair steps, and tells connected devices when a grid moved.
//!
//! Documents are held in memory only while they are worked on, in a bounded LRU cache, so the
//! relay's memory does not grow with the number of records it stores.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, Change, ReadDoc};
use gridsync_core::doc;
use gridsync_core::protocol::{
    Changes, Cursor, DocChanges, Hash, MAX_BATCH_BYTES, MAX_BATCH_CHANGES, MAX_CHANGE_BYTES,
    Rejected, Snapshot, UpChange,
};
use gridsync_core::record::received::{self, Before, ChangeMeta, Sender};
use gridsync_core::record::{IndexRow, Kind, Record, attachment};
use lru::LruCache;
use tokio::sync::broadcast;

use crate::accounts::{self, Identity};
use crate::metrics::{Metrics, Refusal};
use crate::storage::{
    Attachments, Commit, DocUpdate, KindFilter, Log, LogEntry, LogSnapshot, NewChange,
    PackedSnapshot, Queries, RecordFacts, RecordQuery, Storage, StorageError, StoredDoc,
};

/// One document's share of an upload: id, grid, and each change with its index in the batch.
type DocBatch = (String, String, Vec<(u32, Change)>);
/// The refusal of a document's changes in an upload, and why (for `/metrics`).
type Refused = (Refusal, Vec<Rejected>);

/// What an upload refused, by reason, and how many of its changes the relay already had.
#[derive(Default)]
struct Tally {
    refusals: Vec<(Refusal, usize)>,
    duplicates: usize,
}

/// A document is re-snapshotted once this many log entries follow its snapshot (and when it is
/// new): loading it then replays few changes, and a device that holds none of it receives most
/// of it as the snapshot.
const SNAPSHOT_AFTER: usize = 16;
/// Notices a grid's channel holds for a slow session before it is told it lagged (and then looks
/// at every grid it holds, so nothing is missed).
const GRID_NOTICES: usize = 256;

/// Times an upload is applied again when another relay changed one of its documents meanwhile
/// (`StorageError::Stale`); then the batch fails and the device sends it again later.
const STALE_RETRIES: usize = 5;

/// Sent to every connection when a grid's log grew.
#[derive(Debug, Clone)]
pub struct GridMoved {
    pub grid_id: String,
    pub seq: u64,
}

struct CachedDoc {
    doc: Automerge,
    grid_id: String,
    /// The record's kind as first stored (`None` while unknown); a change may not alter it.
    kind: Option<Kind>,
    /// Log entries after the stored snapshot.
    since_snapshot: usize,
}

/// A copy of one document, see [`Relay::document`].
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub doc: Automerge,
    pub grid_id: String,
    /// `None` while the record's first change has not arrived.
    pub kind: Option<Kind>,
}

pub struct Relay {
    /// Only the relay writes the log ([`Relay::accept`], grid moves); others read through
    /// [`Relay::log`], [`Relay::queries`] and [`Relay::attachments`].
    storage: Arc<dyn Storage>,
    cache: Mutex<LruCache<String, CachedDoc>>,
    /// Serialises writers: one batch is applied to documents and the log at a time, so the cache
    /// and the store never disagree.
    apply: tokio::sync::Mutex<()>,
    /// Every grid's notices, for the dashboard (few listeners, any grid).
    moved: broadcast::Sender<GridMoved>,
    /// One channel per grid that has listeners, for sync sessions: a session wakes only for the
    /// grids it holds, not for every grid's notice (which, with thousands of sessions, was most
    /// of the relay's work in live mode).
    by_grid: Mutex<HashMap<String, broadcast::Sender<GridMoved>>>,
    /// Counters of what the relay accepted, refused, sent and read (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The seq of the newest grid move this relay knows of (`None` until it first looked).
    moves_seen: Mutex<Option<u64>>,
}

/// A sync session's subscription to the notices of its grids.
pub struct GridNotices {
    receivers: Vec<broadcast::Receiver<GridMoved>>,
}

impl GridNotices {
    /// The next notice of any of the grids; `Lagged` when some were missed (look at every grid),
    /// `Closed` when the relay is gone. Waits forever when subscribed to no grid.
    pub async fn recv(&mut self) -> Result<GridMoved, broadcast::error::RecvError> {
        if self.receivers.is_empty() {
            return std::future::pending().await;
        }
        let waiting = self.receivers.iter_mut().map(|r| Box::pin(r.recv()));
        futures_util::future::select_all(waiting).await.0
    }
}

impl Relay {
    pub fn new(storage: Arc<dyn Storage>, cache_docs: usize) -> Relay {
        let (moved, _) = broadcast::channel(4096);
        Relay {
            storage,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(cache_docs).unwrap_or(NonZeroUsize::MIN),
            )),
            apply: tokio::sync::Mutex::new(()),
            moved,
            by_grid: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            moves_seen: Mutex::new(None),
        }
    }

    /// Notices of every grid (the dashboard filters them by the user's grids).
    /// The log and documents, to read (sessions' catch-up, the API's heads).
    pub fn log(&self) -> &dyn Log {
        &*self.storage
    }

    /// The store's writing side, for tests that set a store up as a commit would have left it.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> &dyn crate::storage::Commits {
        &*self.storage
    }

    /// The dashboard's and the API's reads over the index and facts.
    pub fn queries(&self) -> &dyn Queries {
        &*self.storage
    }

    /// The attachments' metadata.
    pub fn attachments(&self) -> &dyn Attachments {
        &*self.storage
    }

    pub fn subscribe(&self) -> broadcast::Receiver<GridMoved> {
        self.moved.subscribe()
    }

    /// Notices of these grids only, for a sync session.
    pub fn subscribe_grids(&self, grids: &[String]) -> GridNotices {
        let mut by_grid = self.by_grid.lock().unwrap_or_else(|p| p.into_inner());
        let receivers = grids
            .iter()
            .map(|g| {
                by_grid
                    .entry(g.clone())
                    .or_insert_with(|| broadcast::channel(GRID_NOTICES).0)
                    .subscribe()
            })
            .collect();
        GridNotices { receivers }
    }

    fn notify(&self, notice: GridMoved) {
        {
            let mut by_grid = self.by_grid.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(sender) = by_grid.get(&notice.grid_id)
                && sender.send(notice.clone()).is_err()
            {
                // Nobody listens to this grid any more.
                by_grid.remove(&notice.grid_id);
            }
        }
        // No receiver is fine: no dashboard is open.
        let _ = self.moved.send(notice);
    }

    /// Another relay on the same database committed to `grid_id` up to `seq`, changing `docs`:
    /// this relay's copies of them are dropped (the next use loads them from the store), and
    /// the grid's sessions and dashboards wake as for a commit of this relay's own.
    pub async fn moved_elsewhere(&self, grid_id: String, seq: u64, docs: &[String]) {
        {
            // After any batch being applied here, which puts its copies back when it is done.
            let _guard = self.apply.lock().await;
            let mut cache = self.lock_cache();
            for doc in docs {
                cache.pop(doc);
            }
        }
        self.notify(GridMoved { grid_id, seq });
    }

    /// Drops every cached copy (notices of other relays may have been missed).
    pub async fn forget_cached(&self) {
        let _guard = self.apply.lock().await;
        self.lock_cache().clear();
    }

    /// Accepts an upload batch. Returns the refused changes and, per grid of the batch, the
    /// log's newest entry once the batch was stored (the device's witness); everything else is
    /// durable when this returns `Ok`. An `Err` means nothing of the batch may be acknowledged.
    pub async fn accept(
        &self,
        writer: &Identity,
        changes: Vec<UpChange>,
    ) -> Result<(Vec<Rejected>, Vec<Cursor>), StorageError> {
        let started = Instant::now();
        let mut tally = Tally::default();
        let mut out = self.accept_batch(writer, changes.clone(), &mut tally).await;
        // Another relay on the database changed one of the documents since this one read it:
        // nothing was stored and the copies were dropped, so apply again on fresh ones.
        for _ in 0..STALE_RETRIES {
            if !matches!(out, Err(StorageError::Stale(_))) {
                break;
            }
            tally = Tally::default();
            out = self.accept_batch(writer, changes.clone(), &mut tally).await;
        }
        self.metrics.upload_batch.observe(started.elapsed());
        match &out {
            // Counted once the batch is stored: a batch that failed is sent again.
            Ok(_) => {
                self.metrics.changes_duplicate(tally.duplicates);
                for (why, n) in tally.refusals {
                    self.metrics.changes_refused(why, n);
                }
            }
            Err(_) => self.metrics.storage_error(),
        }
        out
    }

    /// [`Relay::accept`], noting in `tally` what it refused and what it already had.
    async fn accept_batch(
        &self,
        writer: &Identity,
        changes: Vec<UpChange>,
        tally: &mut Tally,
    ) -> Result<(Vec<Rejected>, Vec<Cursor>), StorageError> {
        let refusals = &mut tally.refusals;
        let mut rejected = Vec::new();
        // Parse and check scope before taking the lock.
        let mut by_doc: Vec<DocBatch> = Vec::new();
        for (i, up) in changes.into_iter().enumerate() {
            let index = i as u32;
            let refuse = |reason: String| Rejected {
                doc_id: up.doc_id.clone(),
                index,
                reason,
            };
            if up.bytes.len() > MAX_CHANGE_BYTES {
                refusals.push((Refusal::TooLarge, 1));
                rejected.push(refuse(format!(
                    "change larger than {MAX_CHANGE_BYTES} bytes"
                )));
                continue;
            }
            if !writer.grids.contains(&up.grid) && !writer.former_grids.contains(&up.grid) {
                refusals.push((Refusal::OutOfScope, 1));
                rejected.push(refuse(format!(
                    "grid {} is outside this user's scope",
                    up.grid
                )));
                continue;
            }
            // Only one change chunk reaches Automerge: other chunk kinds make it allocate what
            // their header declares before checking it (`doc::change_chunk_ok`).
            if !gridsync_core::doc::change_chunk_ok(&up.bytes) {
                refusals.push((Refusal::Malformed, 1));
                rejected.push(refuse("malformed change: not one Automerge change".into()));
                continue;
            }
            let change = match Change::from_bytes(up.bytes) {
                Ok(c) => c,
                Err(e) => {
                    refusals.push((Refusal::Malformed, 1));
                    rejected.push(refuse(format!("malformed change: {e}")));
                    continue;
                }
            };
            let actor = change.actor_id().to_hex_string();
            if !writer.actors.contains(&actor) {
                refusals.push((Refusal::WrongActor, 1));
                rejected.push(refuse(format!(
                    "change signed by actor {actor}, which is not bound to this device"
                )));
                continue;
            }
            // The message is the change's author wherever it is shown (conflicts, history).
            if change.message() != Some(writer.username.as_str()) {
                refusals.push((Refusal::WrongAuthor, 1));
                rejected.push(refuse(format!(
                    "change signed as {}, but uploaded by {}: a change's message is its \
                     author's username",
                    change.message().unwrap_or("nobody"),
                    writer.username
                )));
                continue;
            }
            match by_doc.iter_mut().find(|(id, _, _)| *id == up.doc_id) {
                Some((_, grid, list)) if *grid == up.grid => list.push((index, change)),
                Some(_) => {
                    refusals.push((Refusal::WrongGrid, 1));
                    rejected.push(refuse("one record named with two grids".into()));
                }
                None => by_doc.push((up.doc_id, up.grid, vec![(index, change)])),
            }
        }

        let mut grids: Vec<String> = by_doc.iter().map(|(_, g, _)| g.clone()).collect();
        grids.sort();
        grids.dedup();
        let _guard = self.apply.lock().await;
        self.refresh_moves_locked().await?;
        let hashes: Vec<Hash> = by_doc
            .iter()
            .flat_map(|(_, _, l)| l.iter().map(|(_, c)| c.hash().0))
            .collect();
        let known = self.storage.known(&hashes).await?;
        // Gather each document's copy: from the cache, else all the others from the store in one
        // call. Decoding stored copies and applying the changes then runs on every core: the
        // documents share nothing, and that work is nearly all the cost of an upload.
        let mut work = Vec::with_capacity(by_doc.len());
        let mut missing = Vec::new();
        for (doc_id, grid, list) in by_doc {
            let sent = list.len();
            let fresh: Vec<(u32, Change)> = list
                .into_iter()
                .filter(|(_, c)| !known.contains(&c.hash().0))
                .collect();
            tally.duplicates += sent - fresh.len();
            if fresh.is_empty() {
                continue;
            }
            let cached = self.lock_cache().pop(&doc_id);
            self.metrics.cache_lookup(cached.is_some());
            if cached.is_none() {
                missing.push(doc_id.clone());
            }
            work.push((
                doc_id,
                grid,
                fresh,
                cached.map(|c| Base::Cached(Box::new(c))),
            ));
        }
        let mut stored = self.storage.load_docs(&missing).await?.into_iter();
        for (_, grid, _, base) in work.iter_mut().filter(|(.., base)| base.is_none()) {
            *base = Some(match stored.next().flatten() {
                Some(s) => Base::Stored(s),
                None => Base::New(grid.clone()),
            });
        }
        let mut pending = Vec::with_capacity(work.len());
        for (doc_id, grid, fresh, base) in work {
            let Some(base) = base else { continue };
            let filed_under = match &base {
                Base::Cached(c) => Some(c.grid_id.clone()),
                Base::Stored(s) => Some(s.grid_id.clone()),
                Base::New(_) => None,
            };
            if let Some(other) = filed_under.filter(|g| *g != grid) {
                // A record the office moved away from this grid: its old-grid authors' changes
                // made before they learned of the move (offline edits) are kept, filed under
                // the grid it is in now.
                let moved = self.storage.moves_of(&doc_id).await?;
                if let Some(m) = moved.iter().rev().find(|m| m.from_grid == grid) {
                    pending.push((doc_id, fresh, base, Some((grid, m.left))));
                    continue;
                }
                let reason = format!("record belongs to grid {other}, not {grid}");
                if let Base::Cached(c) = base {
                    self.put_doc(doc_id.clone(), *c);
                }
                tally.refusals.push((Refusal::WrongGrid, fresh.len()));
                rejected.extend(fresh.iter().map(|(i, _)| Rejected {
                    doc_id: doc_id.clone(),
                    index: *i,
                    reason: reason.clone(),
                }));
                continue;
            }
            pending.push((doc_id, fresh, base, None));
        }
        let mut commit = Commit::default();
        let mut touched = Vec::new();
        let now = chrono::Utc::now();
        let applied = gridsync_core::parallel::map(pending, |(doc_id, fresh, base, moved)| {
            let cached = match base.into_cached(&doc_id) {
                Ok(cached) => cached,
                // A stored copy that cannot be loaded (say, nested too deep before the limit
                // existed) never will be: its changes are refused, the rest of the batch goes on.
                Err(StorageError::Corrupt(reason)) => {
                    return Ok(Err((Refusal::Damaged, refuse(&doc_id, &fresh, &reason))));
                }
                Err(e) => return Err(e),
            };
            Ok::<_, StorageError>(apply_to_doc(writer, doc_id, fresh, cached, now, moved))
        });
        let applied = applied.into_iter().collect::<Result<Vec<_>, _>>()?;
        for outcome in self.households_exist(writer, applied).await? {
            match outcome {
                Ok(Applied {
                    doc_id,
                    cached,
                    changes,
                    update,
                    ..
                }) => {
                    commit.changes.extend(changes);
                    commit.docs.push(update);
                    touched.push((doc_id, cached));
                }
                // The cached copy may hold part of the refused changes: it was dropped, and is
                // reloaded from the store next time.
                Err((why, refused)) => {
                    tally.refusals.push((why, refused.len()));
                    rejected.extend(refused);
                }
            }
        }
        let stored = commit.changes.len();
        self.finish(commit, touched).await?;
        self.metrics.changes_accepted(stored);
        rejected.sort_by_key(|r| r.index);
        // Still under the lock: the head is this batch's last entry or a later one of no one else.
        let mut witnesses = Vec::new();
        for grid in grids {
            if let Some((seq, hash)) = self.storage.head(&grid).await? {
                witnesses.push(Cursor {
                    grid,
                    seq,
                    hash: Some(hash),
                });
            }
        }
        Ok((rejected, witnesses))
    }

    /// Refuses the documents of a batch that name a household which does not exist: a
    /// household's private part for a household that is not in its grid, a visit or case for a
    /// household of none of the writer's grids. A household of the same batch counts once it
    /// was accepted; deleted households count too (one may be deleted while a device that
    /// still saw it is offline).
    async fn households_exist(
        &self,
        writer: &Identity,
        outcomes: Vec<Result<Applied, Refused>>,
    ) -> Result<Vec<Result<Applied, Refused>>, StorageError> {
        let mut known: HashMap<String, String> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .filter(|a| a.cached.kind == Some(Kind::Household))
            .map(|a| (a.doc_id.clone(), a.cached.grid_id.clone()))
            .collect();
        let wanted: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .flat_map(|a| a.households.iter().map(|(h, _)| h.clone()))
            .filter(|h| !known.contains_key(h))
            .collect();
        if !wanted.is_empty() {
            // A record moved away from the writer's grid names its household where it is now.
            let moved_to = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok())
                .filter(|a| a.moved)
                .map(|a| a.cached.grid_id.clone());
            let q = RecordQuery {
                grids: writer
                    .grids
                    .iter()
                    .chain(&writer.former_grids)
                    .cloned()
                    .chain(moved_to)
                    .collect(),
                kinds: KindFilter::one(Kind::Household),
                ids: wanted,
                include_deleted: true,
                ..RecordQuery::default()
            };
            let found = self.storage.list_records(&q).await?;
            known.extend(found.rows.into_iter().map(|r| (r.row.id, r.row.grid_id)));
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                let applied = outcome?;
                let missing = applied.households.iter().find(|(h, grid)| {
                    known
                        .get(h)
                        .is_none_or(|g| grid.as_ref().is_some_and(|grid| grid != g))
                });
                let Some((household, grid)) = missing else {
                    return Ok(applied);
                };
                let reason = match grid {
                    Some(grid) => format!(
                        "household {household} does not exist in grid {grid}: a household's \
                         private part is written with its household"
                    ),
                    None => format!(
                        "household {household} does not exist (in this user's grids): create \
                         the household first"
                    ),
                };
                let refused = applied
                    .indexes
                    .iter()
                    .map(|index| Rejected {
                        doc_id: applied.doc_id.clone(),
                        index: *index,
                        reason: reason.clone(),
                    })
                    .collect();
                Err((Refusal::NoHousehold, refused))
            })
            .collect())
    }

    /// Makes a commit durable, then returns the documents to the cache and tells listeners.
    async fn finish(
        &self,
        commit: Commit,
        touched: Vec<(String, CachedDoc)>,
    ) -> Result<(), StorageError> {
        if commit.changes.is_empty() {
            for (id, cached) in touched {
                self.put_doc(id, cached);
            }
            return Ok(());
        }
        let mut grids: Vec<String> = commit.changes.iter().map(|c| c.grid_id.clone()).collect();
        grids.sort();
        grids.dedup();
        // On failure the touched documents are dropped: the cache must not hold what the store
        // does not.
        let seq = self.storage.commit(commit).await?;
        for (id, cached) in touched {
            self.put_doc(id, cached);
        }
        for grid_id in grids {
            self.notify(GridMoved { grid_id, seq });
        }
        Ok(())
    }

    /// One step of Automerge's sync protocol for one document, on behalf of a repairing device.
    pub async fn repair_step(
        &self,
        writer: &Identity,
        grid: &str,
        doc_id: &str,
        state: &mut sync::State,
        message: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, RepairError> {
        if !writer.grids.iter().any(|g| g == grid) {
            return Err(RepairError::Refused(format!(
                "grid {grid} is outside this user's scope"
            )));
        }
        let _guard = self.apply.lock().await;
        self.refresh_moves_locked().await?;
        let taken = self.take_doc(doc_id).await.map_err(refuse_damaged)?;
        let mut cached = match taken {
            Some(c) if c.grid_id != grid => {
                let reason = format!("record {doc_id} belongs to grid {}", c.grid_id);
                self.put_doc(doc_id.to_string(), c);
                return Err(RepairError::Refused(reason));
            }
            Some(c) => c,
            None => CachedDoc {
                doc: Automerge::new(),
                grid_id: grid.to_string(),
                kind: None,
                since_snapshot: 0,
            },
        };
        if let Some(kind) = cached.kind
            && !accounts::can_read(writer.role, kind)
        {
            return Err(RepairError::Refused(format!(
                "a {} may not read {} records",
                writer.role,
                kind.as_str()
            )));
        }
        let existed = cached.kind.is_some();
        let mut commit = Commit::default();
        if let Some(bytes) = message {
            let msg = sync::Message::decode(bytes)
                .map_err(|e| RepairError::Refused(format!("malformed sync message: {e}")))?;
            if !doc::sync_message_chunks_ok(&msg) {
                return Err(RepairError::Refused(
                    "malformed sync message: not Automerge changes".into(),
                ));
            }
            let before = cached.doc.get_heads();
            let prior = Before::capture(&cached.doc, existed);
            doc::guarded(|| cached.doc.receive_sync_message(state, msg)).map_err(|e| {
                RepairError::Refused(format!("sync message cannot be applied: {e}"))
            })?;
            let added = cached.doc.get_changes(&before);
            if !added.is_empty() {
                // Before anything reads it; on a refusal the copy that took it is dropped.
                doc::check_depth(&cached.doc).map_err(|e| RepairError::Refused(e.to_string()))?;
                // A repair hands back others' changes too: their authors are not the writer's.
                let metas: Vec<ChangeMeta> = added.iter().map(ChangeMeta::of).collect();
                let sender = Sender {
                    username: None,
                    now: chrono::Utc::now(),
                };
                let problem = settle_kind(&mut cached, doc_id)
                    .and_then(|()| permitted(writer, &cached, existed))
                    .and_then(|()| admitted(&cached, &prior, &metas, &sender).map(drop))
                    .err();
                if let Some(reason) = problem {
                    return Err(RepairError::Refused(reason));
                }
            }
            cached.since_snapshot += added.len();
            commit.changes = added
                .iter()
                .map(|c| NewChange {
                    grid_id: grid.to_string(),
                    doc_id: doc_id.to_string(),
                    kind: cached.kind,
                    hash: c.hash().0,
                    bytes: c.raw_bytes().to_vec(),
                    device_id: writer.device_id.clone(),
                    worker_id: writer.user_id.clone(),
                    in_snapshot: false,
                })
                .collect();
            if !commit.changes.is_empty() {
                let conflicts = doc::has_conflicts(&cached.doc);
                commit
                    .docs
                    .push(doc_update(doc_id, &mut cached, !existed, conflicts, None));
            }
        }
        let reply = cached
            .doc
            .generate_sync_message(state)
            .map(sync::Message::encode);
        let stored = commit.changes.len();
        self.finish(commit, vec![(doc_id.to_string(), cached)])
            .await?;
        self.metrics.changes_accepted(stored);
        Ok(reply)
    }

    /// The next catch-up batch of a grid after `cursor`, without the device's own changes (it has
    /// them) but with the cursor moved past them. A record the device holds none of, whose stored
    /// snapshot stands for nothing beyond this batch, goes as that snapshot and the changes after
    /// it: the device loads it at about half the cost of applying its changes.
    pub async fn batch_since(
        &self,
        cursor: &Cursor,
        reader: &Identity,
    ) -> Result<Changes, StorageError> {
        let started = Instant::now();
        let out = self.read_batch(cursor, reader).await;
        self.metrics.catch_up_batch.observe(started.elapsed());
        if out.is_err() {
            self.metrics.storage_error();
        }
        out
    }

    async fn read_batch(
        &self,
        cursor: &Cursor,
        reader: &Identity,
    ) -> Result<Changes, StorageError> {
        let device_id = reader.device_id.as_str();
        let (entries, more) = self
            .storage
            .log_since(
                &cursor.grid,
                &reader.readable_kinds,
                cursor.seq,
                MAX_BATCH_CHANGES,
                MAX_BATCH_BYTES,
            )
            .await?;
        let Some(last) = entries.last() else {
            return Ok(Changes {
                grid: cursor.grid.clone(),
                docs: Vec::new(),
                cursor: cursor.clone(),
                more,
            });
        };
        let next = Cursor {
            grid: cursor.grid.clone(),
            seq: last.seq,
            hash: Some(last.hash),
        };
        // Each document's entries, in log order. A document whose first entry in the batch is
        // the device's own is one it holds: it gets changes only.
        let mut by_doc: Vec<(String, Vec<LogEntry>)> = Vec::new();
        let mut slot: HashMap<String, usize> = HashMap::new();
        for e in entries {
            match slot.get(&e.doc_id) {
                Some(&i) => by_doc[i].1.push(e),
                None => {
                    slot.insert(e.doc_id.clone(), by_doc.len());
                    by_doc.push((e.doc_id.clone(), vec![e]));
                }
            }
        }
        let candidates: Vec<String> = by_doc
            .iter()
            .filter(|(_, list)| list[0].device_id != device_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut snapshots: HashMap<String, LogSnapshot> = candidates
            .iter()
            .cloned()
            .zip(
                self.storage
                    .snapshots_within(&cursor.grid, &candidates, cursor.seq, next.seq)
                    .await?,
            )
            .filter_map(|(id, s)| Some((id, s?)))
            .collect();
        // A record moved into this grid within the batch: the device holds none of its history
        // here (the rest lies in the grid it came from), so it gets the whole record as the
        // relay's copy is now (docs/protocol.md §15).
        let arrived = self
            .storage
            .moves_into(&cursor.grid, cursor.seq, next.seq)
            .await?;
        for doc_id in arrived.into_iter().filter(|d| candidates.contains(d)) {
            if let Some(copy) = self.document(&doc_id).await? {
                snapshots.insert(
                    doc_id,
                    LogSnapshot {
                        bytes: doc::save_snapshot(&copy.doc),
                        seq: u64::MAX,
                    },
                );
            }
        }
        let mut docs = Vec::with_capacity(by_doc.len());
        for (doc_id, list) in by_doc {
            let snapshot = snapshots.remove(&doc_id);
            let covered = snapshot.as_ref().map_or(0, |s| s.seq);
            let (before, mut after): (Vec<LogEntry>, Vec<LogEntry>) =
                list.into_iter().partition(|e| e.seq <= covered);
            after.retain(|e| e.device_id != device_id);
            self.rebuild_from_snapshot(&doc_id, &mut after).await?;
            let changes: Vec<serde_bytes::ByteBuf> = after
                .into_iter()
                .map(|e| serde_bytes::ByteBuf::from(e.bytes))
                .collect();
            let snapshot = snapshot.map(|s| Snapshot {
                bytes: serde_bytes::ByteBuf::from(s.bytes),
                entries: before.len() as u32,
            });
            if snapshot.is_some() || !changes.is_empty() {
                docs.push(DocChanges {
                    doc_id,
                    snapshot,
                    changes,
                });
            }
        }
        Ok(Changes {
            grid: cursor.grid.clone(),
            docs,
            cursor: next,
            more,
        })
    }

    /// Fills in the bytes of entries whose change the document's snapshot holds
    /// ([`NewChange::in_snapshot`]), from the relay's copy of the document: rare, for a device
    /// that holds part of a record (a batch that ends inside the commit that created it, a
    /// record another device began). The change rebuilt must have the entry's hash: what is sent
    /// is what was received.
    async fn rebuild_from_snapshot(
        &self,
        doc_id: &str,
        entries: &mut [LogEntry],
    ) -> Result<(), StorageError> {
        if entries.iter().all(|e| !e.bytes.is_empty()) {
            return Ok(());
        }
        let copy = self.document(doc_id).await?.ok_or_else(|| {
            StorageError::Corrupt(format!("log entries of {doc_id} name no stored document"))
        })?;
        for e in entries.iter_mut().filter(|e| e.bytes.is_empty()) {
            let hash = automerge::ChangeHash(e.hash);
            let change = copy
                .doc
                .get_change_by_hash(&hash)
                .filter(|c| c.hash() == hash)
                .ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "change {} of {doc_id} is neither in the log nor in its snapshot",
                        hex::encode(e.hash)
                    ))
                })?;
            e.bytes = change.raw_bytes().to_vec();
        }
        Ok(())
    }

    async fn take_doc(&self, doc_id: &str) -> Result<Option<CachedDoc>, StorageError> {
        let cached = self.lock_cache().pop(doc_id);
        self.metrics.cache_lookup(cached.is_some());
        if let Some(c) = cached {
            return Ok(Some(c));
        }
        match self.storage.load_doc(doc_id).await? {
            Some(stored) => Base::Stored(stored).into_cached(doc_id).map(Some),
            None => Ok(None),
        }
    }

    fn put_doc(&self, doc_id: String, cached: CachedDoc) {
        self.lock_cache().put(doc_id, cached);
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, LruCache<String, CachedDoc>> {
        // The cache holds no invariant a panic could break: a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of a document as the relay holds it now, with its grid and kind; for readers that
    /// need more than the index (the dashboard's record page) and for office writes, which are
    /// built on this copy and then go through [`Relay::accept`] like any device's change.
    pub async fn document(&self, doc_id: &str) -> Result<Option<StoredRecord>, StorageError> {
        // Under the writers' lock: a copy loaded from the store while a batch is being applied
        // must not go back into the cache after (and instead of) the newer one.
        let _guard = self.apply.lock().await;
        if let Err(e) = self.refresh_moves_locked().await {
            self.metrics.storage_error();
            return Err(e);
        }
        let taken = self.take_doc(doc_id).await;
        if taken.is_err() {
            self.metrics.storage_error();
        }
        let Some(cached) = taken? else {
            return Ok(None);
        };
        let copy = StoredRecord {
            doc: cached.doc.clone(),
            grid_id: cached.grid_id.clone(),
            kind: cached.kind,
        };
        self.put_doc(doc_id.to_string(), cached);
        Ok(Some(copy))
    }

    /// Documents currently decoded in memory.
    pub fn cached_docs(&self) -> usize {
        self.lock_cache().len()
    }

    /// Documents the cache holds at most.
    pub fn cache_capacity(&self) -> usize {
        self.lock_cache().cap().get()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Where a document of an upload starts from.
enum Base {
    Cached(Box<CachedDoc>),
    Stored(StoredDoc),
    /// Not stored yet: a new record for this grid.
    New(String),
}

impl Base {
    /// The decoded document (for a stored copy: its snapshot and the log after it).
    fn into_cached(self, doc_id: &str) -> Result<CachedDoc, StorageError> {
        let stored = match self {
            Base::Cached(c) => return Ok(*c),
            Base::New(grid_id) => {
                return Ok(CachedDoc {
                    doc: Automerge::new(),
                    grid_id,
                    kind: None,
                    since_snapshot: 0,
                });
            }
            Base::Stored(stored) => stored,
        };
        let doc = doc::from_stored(stored.snapshot.as_deref(), &stored.changes).map_err(|e| {
            StorageError::Corrupt(format!("document {doc_id} cannot be loaded: {e}"))
        })?;
        // Stored before the nesting limit existed: refused before anything reads it.
        doc::check_depth(&doc).map_err(|e| {
            StorageError::Corrupt(format!("document {doc_id} cannot be loaded: {e}"))
        })?;
        Ok(CachedDoc {
            doc,
            grid_id: stored.grid_id,
            kind: stored.kind,
            since_snapshot: stored.changes.len(),
        })
    }
}

/// One document of an upload with its changes applied and checked, ready to commit.
struct Applied {
    doc_id: String,
    cached: CachedDoc,
    changes: Vec<NewChange>,
    update: DocUpdate,
    /// The changes' places in the batch, to refuse them after all.
    indexes: Vec<u32>,
    /// Households the changes name, which must exist: in this grid (`Some`) or any of the
    /// writer's (see [`Relay::households_exist`]).
    households: Vec<(String, Option<String>)>,
    /// An old-grid author's change to a record moved away from that grid.
    moved: bool,
}

/// Applies one document's new changes and checks the result against the writer's rights. Needs
/// no store, so the documents of a batch are applied in parallel. A refusal names every change.
fn apply_to_doc(
    writer: &Identity,
    doc_id: String,
    fresh: Vec<(u32, Change)>,
    mut cached: CachedDoc,
    now: chrono::DateTime<chrono::Utc>,
    moved: Option<(String, Hash)>,
) -> Result<Applied, Refused> {
    let existed = cached.kind.is_some();
    let hashes: Vec<automerge::ChangeHash> = fresh.iter().map(|(_, c)| c.hash()).collect();
    let indexes: Vec<u32> = fresh.iter().map(|(i, _)| *i).collect();
    let prior = Before::capture(&cached.doc, existed);
    let metas: Vec<ChangeMeta> = fresh.iter().map(|(_, c)| ChangeMeta::of(c)).collect();
    let mut changes: Vec<NewChange> = fresh
        .iter()
        .map(|(_, c)| NewChange {
            grid_id: cached.grid_id.clone(),
            doc_id: doc_id.clone(),
            kind: None,
            hash: c.hash().0,
            bytes: c.raw_bytes().to_vec(),
            device_id: writer.device_id.clone(),
            worker_id: writer.user_id.clone(),
            in_snapshot: false,
        })
        .collect();
    let applied = doc::guarded(|| cached.doc.apply_changes(fresh.into_iter().map(|(_, c)| c)));
    // Before anything reads the copy (a value nested too deep would take a reader's stack);
    // refused, the copy is dropped.
    let applied = applied.and_then(|()| doc::check_depth(&cached.doc).map_err(|e| e.to_string()));
    let has_conflicts = applied.as_ref().is_ok_and(|shape| shape.has_conflicts);
    let sender = Sender {
        username: Some(&writer.username),
        now,
    };
    let mut households = Vec::new();
    let mut root = None;
    let problem = match applied {
        Err(e) => Some((
            Refusal::CannotApply,
            format!("change cannot be applied: {e}"),
        )),
        Ok(_) => settle_kind(&mut cached, &doc_id)
            .map_err(|e| (Refusal::Identity, e))
            .and_then(|()| match &moved {
                // Written in the grid it was moved from, before the author knew of the move.
                Some((old_grid, left)) => permitted_in(writer, &cached, old_grid, existed)
                    .and_then(|()| before_move(&cached, &hashes, left))
                    .map_err(|e| (Refusal::NotPermitted, e)),
                None => permitted(writer, &cached, existed).map_err(|e| (Refusal::NotPermitted, e)),
            })
            .and_then(|()| {
                admitted(&cached, &prior, &metas, &sender).map_err(|e| (Refusal::InvalidContent, e))
            })
            .map(|content| {
                households = content.households.into_iter().map(|h| (h, None)).collect();
                root = Some(content.fields);
            })
            .err(),
    };
    if let Some((why, reason)) = problem {
        let refused = indexes
            .into_iter()
            .map(|index| Rejected {
                doc_id: doc_id.clone(),
                index,
                reason: reason.clone(),
            })
            .collect();
        return Err((why, refused));
    }
    cached.since_snapshot += changes.len();
    for c in &mut changes {
        c.kind = cached.kind;
    }
    if !existed
        && cached.kind == Some(Kind::HouseholdPrivate)
        && let Some(household) = doc_id.strip_suffix("~private")
    {
        households.push((household.to_string(), Some(cached.grid_id.clone())));
    }
    let update = doc_update(&doc_id, &mut cached, !existed, has_conflicts, root);
    if update.snapshot.is_some() {
        in_snapshot(&cached.doc, &mut changes);
    }
    Ok(Applied {
        doc_id,
        cached,
        changes,
        update,
        indexes,
        households,
        moved: moved.is_some(),
    })
}

/// Marks the changes the document's new snapshot holds: the log then keeps their entries
/// without their bytes (stored once, in the snapshot). A change still waiting for its
/// dependencies is not in the document yet and keeps its bytes. The snapshot gives each change
/// back byte for byte: loading it rebuilds every change and checks the heads' hashes, so a
/// snapshot that did not would not load at all (with the log's copy or without it).
fn in_snapshot(doc: &Automerge, changes: &mut [NewChange]) {
    for c in changes {
        c.in_snapshot = doc
            .get_change_meta_by_hash(&automerge::ChangeHash(c.hash))
            .is_some();
    }
}

/// Ties the document to its identity (id, kind and grid; see [`received::identity`]) and learns
/// a new document's kind.
fn settle_kind(cached: &mut CachedDoc, doc_id: &str) -> Result<(), String> {
    match received::identity(&cached.doc, doc_id, Some(&cached.grid_id), cached.kind)? {
        Some(kind) => {
            cached.kind = Some(kind);
            Ok(())
        }
        None => Err("the record's first change is missing: send it first".into()),
    }
}

/// The document's content as devices validate theirs, and the households its changes name
/// (each to exist in any of the writer's grids). Only once the record is complete: a document
/// still waiting for changes has nothing to check yet.
fn admitted(
    cached: &CachedDoc,
    before: &Before,
    changes: &[ChangeMeta],
    sender: &Sender<'_>,
) -> Result<received::Content, String> {
    let kind = cached.kind.ok_or("unknown record kind")?;
    received::content(&cached.doc, kind, before, changes, sender)
}

fn permitted(writer: &Identity, cached: &CachedDoc, existed: bool) -> Result<(), String> {
    permitted_in(writer, cached, &cached.grid_id, existed)
}

fn permitted_in(
    writer: &Identity,
    cached: &CachedDoc,
    grid: &str,
    existed: bool,
) -> Result<(), String> {
    let kind = cached.kind.ok_or("unknown record kind")?;
    writer.may_write(kind, grid, existed)
}

/// Refuses a change to a moved record that comes after its move's change in the old grid: its
/// author had learned of the move (a device drops such a record, it does not edit it).
fn before_move(
    cached: &CachedDoc,
    hashes: &[automerge::ChangeHash],
    left: &Hash,
) -> Result<(), String> {
    for hash in hashes {
        // Not applied yet (waiting for its dependencies): judged with the change that frees it.
        if cached.doc.get_change_meta_by_hash(hash).is_none() {
            continue;
        }
        let unseen = cached.doc.get_changes(&[*hash]);
        if !unseen.iter().any(|c| c.hash().0 == *left) {
            return Err(format!(
                "此记录已调整到网格 {} the record was moved to grid {}: a change made after \
                 the move is written there",
                cached.grid_id, cached.grid_id
            ));
        }
    }
    Ok(())
}

/// What a commit writes of a document: its index row, facts, heads and, when due, a snapshot.
/// `has_conflicts` as the document's nesting check found it (`doc::Shape`), or
/// `doc::has_conflicts`; `root`, the root fields when the content check read them already
/// (`received::Content`), else they are read here.
fn doc_update(
    doc_id: &str,
    cached: &mut CachedDoc,
    new: bool,
    has_conflicts: bool,
    root: Option<serde_json::Map<String, serde_json::Value>>,
) -> DocUpdate {
    // Only what the index row and the dashboard's facts read, not the whole record.
    let wanted = ["id", attachment::FIELD_NAME]
        .into_iter()
        .chain(IndexRow::FIELDS.iter().copied())
        .chain(RecordFacts::FIELDS.iter().copied());
    let fields = match root {
        Some(mut root) => {
            let wanted: std::collections::HashSet<&str> = wanted.collect();
            root.retain(|key, _| wanted.contains(key.as_str()));
            root
        }
        None => doc::read_fields(&cached.doc, wanted),
    };
    let record = Record::from_fields(fields.clone());
    // What the record names now replaces what it named: office writes come through here too.
    let attachments = record.as_ref().map(|_| attachment::refs(&fields));
    let index = record
        .as_ref()
        .map(|r| IndexRow::from_fields(doc_id, r.kind, &cached.grid_id, &fields, has_conflicts));
    let facts = record
        .as_ref()
        .map(|r| RecordFacts::from_fields(r.kind, &fields));
    // A new record's snapshot is what a device that has none of it receives (`batch_since`);
    // later ones bound what loading the record replays.
    let snapshot = (new || cached.since_snapshot > SNAPSHOT_AFTER).then(|| {
        cached.since_snapshot = 0;
        PackedSnapshot::pack(&doc::save_snapshot(&cached.doc))
    });
    DocUpdate {
        doc_id: doc_id.to_string(),
        grid_id: cached.grid_id.clone(),
        kind: record.map(|r| r.kind),
        heads: cached.doc.get_heads().into_iter().map(|h| h.0).collect(),
        index,
        snapshot,
        facts,
        // Concurrent heads: two writers edited this record without seeing each other's change.
        parallel: cached.doc.get_heads().len() > 1,
        attachments,
    }
}

/// The refusal of every change of one document, for one reason.
fn refuse(doc_id: &str, fresh: &[(u32, Change)], reason: &str) -> Vec<Rejected> {
    fresh
        .iter()
        .map(|(index, _)| Rejected {
            doc_id: doc_id.to_string(),
            index: *index,
            reason: reason.to_string(),
        })
        .collect()
}

/// A stored copy that cannot be loaded ends that document's repair, not the session.
fn refuse_damaged(e: StorageError) -> RepairError {
    match e {
        StorageError::Corrupt(reason) => RepairError::Refused(reason),
        e => RepairError::Storage(e),
    }
}

mod moves;

pub use moves::{MoveError, dashboard_identity, household_kinds, move_as, watch_moves};

#[cfg(test)]
pub(crate) mod tests;
