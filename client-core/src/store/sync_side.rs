//! What the sync driver asks of the replica: unsent changes, acknowledgements, received changes,
//! cursors, and the per-document repair steps.

use automerge::sync::{self, SyncDoc};
use std::collections::HashMap;

use automerge::{ActorId, Automerge, Change};
use chrono::{SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{COMPACT_AFTER, Replica, build_doc_unchecked, corrupt, sql, store_doc};
use crate::error::{Error, Result};
use crate::protocol::{Cursor, DocChanges, Hash, Snapshot, UpChange};
use crate::record::{IndexRow, Kind, received};
use crate::{doc, parallel};

/// A local change waiting for the server's acknowledgement.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub seq: i64,
    pub doc_id: String,
    pub grid_id: String,
    pub bytes: Vec<u8>,
}

/// An unsent change as an upload carries it.
impl From<OutboxEntry> for UpChange {
    fn from(e: OutboxEntry) -> UpChange {
        UpChange {
            doc_id: e.doc_id,
            grid: e.grid_id,
            bytes: e.bytes,
        }
    }
}

/// A local change the server refused, kept on the device with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub doc_id: String,
    pub reason: String,
}

/// What `gridsync status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct SyncStatus {
    pub unsent_changes: u64,
    pub rejected: Vec<Rejection>,
    pub last_sync: Option<String>,
    pub cursors: Vec<Cursor>,
    /// Records as people count them: a household's private part is part of its household.
    pub records: u64,
}

impl Replica {
    /// The oldest unsent changes, at most `max_changes` of them or about `max_bytes`.
    /// Refused changes are skipped, so they never block the rest.
    pub fn outbox_batch(&self, max_changes: usize, max_bytes: usize) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, doc_id, grid_id, bytes FROM outbox WHERE rejected IS NULL ORDER BY seq LIMIT ?1",
        )?;
        let mut rows = stmt.query([max_changes as i64])?;
        let mut out = Vec::new();
        let mut size = 0;
        while let Some(r) = rows.next()? {
            let bytes: Vec<u8> = r.get(3)?;
            if !out.is_empty() && size + bytes.len() > max_bytes {
                break;
            }
            size += bytes.len();
            out.push(OutboxEntry {
                seq: r.get(0)?,
                doc_id: r.get(1)?,
                grid_id: r.get(2)?,
                bytes,
            });
        }
        Ok(out)
    }

    /// Marks changes as durable on the server (removes them from the outbox) and records refusals.
    pub fn acknowledge(
        &mut self,
        accepted: &[i64],
        rejected: &[(i64, String)],
        witnesses: &[Cursor],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for w in witnesses {
            tx.prepare_cached(
                "INSERT INTO witnesses (grid_id, seq, hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT (grid_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash
                 WHERE excluded.seq > witnesses.seq",
            )?
            .execute(params![w.grid, w.seq as i64, w.hash.map(|h| h.to_vec())])?;
        }
        for seq in accepted {
            tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
                .execute([seq])?;
        }
        for (seq, reason) in rejected {
            tx.prepare_cached("UPDATE outbox SET rejected = ?2 WHERE seq = ?1")?
                .execute(params![seq, reason])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores changes received from the server and moves the grid's cursor, in one transaction.
    /// Returns how many changes were new to this replica.
    ///
    /// Reading and writing the database is serial, but each received document is rebuilt, merged
    /// and read for the index on its own, on every core (a phone has four to eight): that is
    /// nearly all the cost of receiving.
    pub fn apply_remote(
        &mut self,
        grid: &str,
        docs: &[DocChanges],
        cursor: &Cursor,
    ) -> Result<usize> {
        self.apply_received(grid, docs, Some(cursor))
    }

    /// [`Replica::apply_remote`], moving the cursor only if one is given (a salvage takes back
    /// its own unsent changes this way, see `store/salvage.rs`).
    pub(super) fn apply_received(
        &mut self,
        grid: &str,
        docs: &[DocChanges],
        cursor: Option<&Cursor>,
    ) -> Result<usize> {
        let mut work: Vec<Incoming<'_>> = Vec::with_capacity(docs.len());
        let mut position: HashMap<&str, usize> = HashMap::with_capacity(docs.len());
        for dc in docs {
            let changes = dc.changes.iter().map(|c| c.as_slice());
            let snapshot = dc.snapshot.as_ref();
            if let Some(&i) = position.get(dc.doc_id.as_str()) {
                work[i].snapshots.extend(snapshot);
                work[i].changes.extend(changes);
                continue;
            }
            // How many changes are stored after the document's snapshot: whether storing the
            // received ones will make a new snapshot is known before the documents are built.
            let (base, pending) = match self.cache.pop(&dc.doc_id) {
                Some(doc) => (
                    Base::Cached(Box::new(doc)),
                    sql::changes_since_snapshot(&self.conn, &dc.doc_id)?,
                ),
                None => match sql::load_doc(&self.conn, &dc.doc_id)? {
                    Some(stored) => {
                        let pending = stored.changes.len();
                        (Base::Stored(stored), pending)
                    }
                    None => (Base::New, 0),
                },
            };
            position.insert(&dc.doc_id, work.len());
            work.push(Incoming {
                doc_id: dc.doc_id.clone(),
                snapshots: snapshot.into_iter().collect(),
                changes: changes.collect(),
                base,
                pending,
            });
        }
        let actor = &self.actor;
        let received = parallel::map(work, |incoming| receive(incoming, actor))
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let new_changes = received.iter().map(|r| r.new_changes).sum();
        self.store_remote(grid, &received, cursor)?;
        let mut dropped = Vec::new();
        for r in received {
            match r.refused {
                // Nothing of it was stored and the rest of the batch was: one record nested too
                // deep must not stop a device's sync for good.
                Some(reason) => tracing::warn!("received record {} refused: {reason}", r.doc_id),
                None => dropped.extend(self.cache.push(r.doc_id, r.doc).map(|(_, doc)| doc)),
            }
        }
        // A batch of new records pushes as many older ones out of the cache, and freeing a decoded
        // document (its many allocations) costs about a tenth of building it: spread like that.
        parallel::map(dropped, drop);
        Ok(new_changes)
    }

    fn store_remote(
        &mut self,
        grid: &str,
        received: &[Received],
        cursor: Option<&Cursor>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for r in received.iter().filter(|r| r.new_changes > 0) {
            // A document whose first change has not arrived yet (missing dependencies) has no
            // kind: it is stored and indexed once the rest arrives.
            let kind = r
                .fields
                .get("kind")
                .and_then(|k| k.as_str())
                .and_then(|k| k.parse::<Kind>().ok());
            let grid_id = r
                .fields
                .get("grid_id")
                .and_then(|g| g.as_str())
                .unwrap_or(grid)
                .to_string();
            sql::ensure_doc(&tx, &r.doc_id, kind.map_or("", Kind::as_str), &grid_id)?;
            match kind {
                Some(kind) => {
                    let row =
                        IndexRow::from_fields(&r.doc_id, kind, &grid_id, &r.fields, r.conflicts);
                    store_doc(&tx, &r.doc, &row, &r.fresh, r.snapshot.as_deref())?;
                }
                None => {
                    if let Some(snapshot) = &r.snapshot {
                        sql::compact(&tx, &r.doc_id, snapshot)?;
                    }
                    for (hash, bytes) in &r.fresh {
                        sql::insert_change(&tx, &r.doc_id, hash, bytes)?;
                    }
                }
            }
        }
        if let Some(c) = cursor {
            tx.prepare_cached(
                "INSERT INTO cursors (grid_id, seq, hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT (grid_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            )?
            .execute(params![grid, c.seq as i64, c.hash.map(|h| h.to_vec())])?;
            // A cursor at or past the witness vouches for everything the witness did.
            tx.prepare_cached("DELETE FROM witnesses WHERE grid_id = ?1 AND seq <= ?2")?
                .execute(params![grid, c.seq as i64])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// This replica's cursor in each of its grids.
    pub fn cursors(&self) -> Result<Vec<Cursor>> {
        let grids = self.identity()?.grids.clone();
        let mut out = Vec::with_capacity(grids.len());
        for grid in grids {
            // Only "no row" means no cursor: a database error must not restart a catch-up.
            let row: Option<(i64, Option<Vec<u8>>)> = self
                .conn
                .query_row(
                    "SELECT seq, hash FROM cursors WHERE grid_id = ?1",
                    [&grid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            out.push(match row {
                Some((seq, hash)) => Cursor {
                    grid,
                    seq: seq as u64,
                    hash: hash.and_then(|h| <Hash>::try_from(h.as_slice()).ok()),
                },
                None => Cursor::start(&grid),
            });
        }
        Ok(out)
    }

    /// The witnesses of acknowledged uploads that the cursors do not cover yet.
    pub fn witnesses(&self) -> Result<Vec<Cursor>> {
        let mut stmt = self
            .conn
            .prepare("SELECT grid_id, seq, hash FROM witnesses ORDER BY grid_id")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Cursor {
                    grid: r.get(0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    hash: r
                        .get::<_, Option<Vec<u8>>>(2)?
                        .and_then(|h| <Hash>::try_from(h.as_slice()).ok()),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Drops the grid's witness if it is still the one at `seq` (or older).
    pub fn forget_witness(&self, grid: &str, seq: u64) -> Result<()> {
        self.conn.execute(
            "DELETE FROM witnesses WHERE grid_id = ?1 AND seq <= ?2",
            params![grid, seq as i64],
        )?;
        Ok(())
    }

    pub fn mark_synced(&self) -> Result<()> {
        sql::set_meta(
            &self.conn,
            "last_sync",
            &Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        )
    }

    pub fn status(&self) -> Result<SyncStatus> {
        let unsent: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE rejected IS NULL",
            [],
            |r| r.get(0),
        )?;
        let rejected = self
            .conn
            .prepare("SELECT doc_id, rejected FROM outbox WHERE rejected IS NOT NULL ORDER BY seq")?
            .query_map([], |r| {
                Ok(Rejection {
                    doc_id: r.get(0)?,
                    reason: r.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let records: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM records WHERE deleted = 0 AND kind <> 'household_private'",
            [],
            |r| r.get(0),
        )?;
        Ok(SyncStatus {
            unsent_changes: unsent as u64,
            rejected,
            last_sync: sql::get_meta(&self.conn, "last_sync")?,
            cursors: self.cursors()?,
            records: records as u64,
        })
    }

    // ------------------------------------------------------------------ repair

    /// Every document of a grid with its heads, from the index (no document is loaded).
    pub fn doc_heads(&self, grid: &str) -> Result<Vec<(String, Vec<Hash>)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT doc_id, heads FROM records WHERE grid_id = ?1 ORDER BY doc_id")?;
        let rows = stmt
            .query_map([grid], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .map(|(id, heads)| {
                let heads = doc::heads_from_bytes(&heads)
                    .into_iter()
                    .map(|h| h.0)
                    .collect();
                (id, heads)
            })
            .collect())
    }

    /// One step of Automerge's sync protocol with the server for one document: applies what the
    /// server sent (if anything) and returns what to send back (if anything).
    pub fn repair_step(
        &mut self,
        grid: &str,
        doc_id: &str,
        state: &mut sync::State,
        incoming: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        let mut doc = match self.load(doc_id) {
            Ok(doc) => doc,
            Err(Error::NotFound(_)) => Automerge::new(),
            // Stored before the nesting limit existed: this record's repair ends, the rest goes on.
            Err(Error::TooDeep { reason, .. }) => {
                tracing::warn!("repair of {doc_id} skipped: {reason}");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if let Some(bytes) = incoming {
            let before = doc.get_heads();
            let (known_kind, known_grid) = known_identity(&doc);
            let message = sync::Message::decode(bytes)
                .map_err(|e| Error::Protocol(format!("bad repair message for {doc_id}: {e}")))?;
            if !doc::sync_message_chunks_ok(&message) {
                return Err(corrupt(doc_id, "repair message: not Automerge changes"));
            }
            doc::guarded(|| doc.receive_sync_message(state, message))
                .map_err(|e| corrupt(doc_id, &e))?;
            let shape = match doc::check_depth(&doc) {
                Ok(shape) => shape,
                Err(reason) => {
                    // Nothing of it is stored (the copy that took it is dropped) and the repair
                    // of this record ends; the rest of the grid goes on.
                    tracing::warn!("repair of {doc_id} refused: {reason}");
                    return Ok(None);
                }
            };
            if let Err(reason) = received::identity(&doc, doc_id, known_grid.as_deref(), known_kind)
            {
                // Nothing is stored and the merged copy is dropped; the repair of this one
                // document ends here.
                tracing::warn!("refused what the relay sent for {doc_id}: {reason}");
                return Ok(None);
            }
            let added: Vec<(Vec<u8>, Vec<u8>)> = doc
                .get_changes(&before)
                .into_iter()
                .map(|c| (c.hash().0.to_vec(), c.raw_bytes().to_vec()))
                .collect();
            let reply = doc.generate_sync_message(state).map(sync::Message::encode);
            let received = [Received::new(
                doc_id.to_string(),
                doc,
                added,
                None,
                0,
                shape.has_conflicts,
            )];
            self.store_remote(grid, &received, None)?;
            let [received] = received;
            self.cache.put(received.doc_id, received.doc);
            return Ok(reply);
        }
        let reply = doc.generate_sync_message(state).map(sync::Message::encode);
        self.cache.put(doc_id.to_string(), doc);
        Ok(reply)
    }

    /// Kind of a stored document, if it is complete enough to know.
    pub fn kind_of(&self, doc_id: &str) -> Option<Kind> {
        self.conn
            .query_row(
                "SELECT kind FROM records WHERE doc_id = ?1",
                [doc_id],
                |r| r.get::<_, String>(0),
            )
            .ok()
            .and_then(|k| k.parse().ok())
    }
}

/// Where a received document's current state comes from.
enum Base {
    Cached(Box<Automerge>),
    Stored(sql::StoredDoc),
    New,
}

/// One document of a received batch, before it is rebuilt.
struct Incoming<'a> {
    doc_id: String,
    snapshots: Vec<&'a Snapshot>,
    changes: Vec<&'a [u8]>,
    base: Base,
    /// Changes stored after the document's stored snapshot.
    pending: usize,
}

/// A received document, merged and read for the index, ready to be stored.
struct Received {
    doc_id: String,
    doc: Automerge,
    /// The changes this replica did not have: (hash, bytes).
    fresh: Vec<(Vec<u8>, Vec<u8>)>,
    /// Changes new to this replica, those of a received snapshot included.
    new_changes: usize,
    /// At least [`IndexRow::FIELDS`].
    fields: Map<String, Value>,
    conflicts: bool,
    /// The snapshot to store in place of the changes since the last one, when it is due.
    snapshot: Option<Vec<u8>>,
    /// Set, with the reason, when the document was refused: nothing of it is stored or cached
    /// (it nests too deep, or would make the document another record, see
    /// [`received::identity`]).
    refused: Option<String>,
}

impl Received {
    /// A received document set aside: it nests too deep, as received or as stored.
    fn refused(doc_id: String, reason: impl ToString) -> Received {
        Received {
            doc_id,
            doc: Automerge::new(),
            fresh: Vec::new(),
            new_changes: 0,
            fields: Map::new(),
            conflicts: false,
            snapshot: None,
            refused: Some(reason.to_string()),
        }
    }

    fn new(
        doc_id: String,
        doc: Automerge,
        fresh: Vec<(Vec<u8>, Vec<u8>)>,
        snapshot: Option<Vec<u8>>,
        from_snapshot: usize,
        conflicts: bool,
    ) -> Received {
        let new_changes = from_snapshot + fresh.len();
        let fields = if new_changes == 0 {
            Map::new()
        } else {
            doc::read_fields(&doc, IndexRow::FIELDS.iter().copied())
        };
        Received {
            doc_id,
            doc,
            fresh,
            new_changes,
            fields,
            conflicts,
            snapshot: snapshot.filter(|_| new_changes > 0),
            refused: None,
        }
    }
}

/// The kind and grid a stored document says it is, to hold what is merged into it to.
fn known_identity(doc: &Automerge) -> (Option<Kind>, Option<String>) {
    let kind = doc::root_str(doc, "kind").and_then(|k| k.parse().ok());
    (kind, kind.and(doc::root_str(doc, "grid_id")))
}

/// Rebuilds one document and applies what was received that it did not have. Needs no
/// database, so documents are received in parallel.
fn receive(incoming: Incoming<'_>, actor: &ActorId) -> Result<Received> {
    let Incoming {
        doc_id,
        snapshots,
        changes,
        base,
        pending,
    } = incoming;
    let new = matches!(base, Base::New);
    let mut doc = match base {
        Base::Cached(doc) => *doc,
        // Checked for nesting below, once merged with what was received.
        Base::Stored(stored) => build_doc_unchecked(&doc_id, &stored, actor)?,
        Base::New => Automerge::new(),
    };
    let (known_kind, _) = known_identity(&doc);
    // A snapshot of a record this replica does not hold becomes the document, and is stored as
    // it came; one of a record it holds in part (rare: the relay sends snapshots only of records
    // whose history the device has none of) is merged.
    let mut stored_as_received = None;
    let mut from_snapshot = 0;
    for snapshot in snapshots {
        if !doc::snapshot_chunks_ok(&snapshot.bytes) {
            return Err(corrupt(&doc_id, "received snapshot: not a document"));
        }
        let mut loaded = doc::guarded(|| Automerge::load(&snapshot.bytes))
            .map_err(|e| corrupt(&doc_id, &format!("received snapshot: {e}")))?;
        if new && from_snapshot == 0 {
            loaded.set_actor(actor.clone());
            doc = loaded;
            from_snapshot = snapshot.entries.max(1) as usize;
            stored_as_received = Some(snapshot.bytes.to_vec());
        } else {
            let added = doc.get_changes_added(&loaded);
            from_snapshot += added.len();
            doc::guarded(|| doc.apply_changes(added))
                .map_err(|e| corrupt(&doc_id, &format!("received snapshot: {e}")))?;
            stored_as_received = None;
        }
    }
    let mut fresh = Vec::new();
    let mut apply = Vec::new();
    for bytes in changes {
        if !doc::change_chunk_ok(bytes) {
            return Err(corrupt(
                &doc_id,
                "received change: not one Automerge change",
            ));
        }
        let change = Change::from_bytes(bytes.to_vec())
            .map_err(|e| corrupt(&doc_id, &format!("received change: {e}")))?;
        if doc.get_change_meta_by_hash(&change.hash()).is_none()
            && !apply.iter().any(|c: &Change| c.hash() == change.hash())
        {
            fresh.push((change.hash().0.to_vec(), bytes.to_vec()));
            apply.push(change);
        }
    }
    if !apply.is_empty() {
        doc::guarded(|| doc.apply_changes(apply)).map_err(|e| corrupt(&doc_id, &e))?;
    }
    // Before anything reads it (the index fields, the conflict check), the stored copy and what
    // was merged into it alike. The copy that took it is dropped, so the record stays as stored.
    let shape = match doc::check_depth(&doc) {
        Ok(shape) => shape,
        Err(reason) => return Ok(Received::refused(doc_id, reason)),
    };
    // The device refuses to merge into a record of another kind (or under another id),
    // whatever the relay sent: a household's private part never becomes a patrol log. Its grid
    // may change to one other grid, and only by the office's move (网格调整, docs/protocol.md
    // §15; the relay refuses a device's change to it): the record is then filed there.
    if let Err(reason) = received::identity(&doc, &doc_id, None, known_kind) {
        return Ok(Received::refused(doc_id, reason));
    }
    let snapshot = match stored_as_received {
        Some(bytes) if fresh.is_empty() => Some(bytes),
        _ if from_snapshot > 0 || pending + fresh.len() > COMPACT_AFTER => {
            Some(doc::save_snapshot(&doc))
        }
        _ => None,
    };
    Ok(Received::new(
        doc_id,
        doc,
        fresh,
        snapshot,
        from_snapshot,
        shape.has_conflicts,
    ))
}
