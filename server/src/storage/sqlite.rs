//! The default backend: one SQLite file under the data directory, zero set-up.
//!
//! One writer connection and a few reader connections (WAL lets them read while it writes).
//! rusqlite is blocking, so every call runs on tokio's blocking pool.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use gridsync_core::protocol::Hash;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    AttachmentCount, AttachmentUse, Attachments, BlobRemoval, ChangeSource, Changed, Commit,
    Commits, DocAttachment, GridCount, GridMove, KindFilter, Log, LogEntry, LogSnapshot, Orphan,
    Queries, RecordCount, RecordPage, RecordQuery, Result, StorageError, StoredBlob, StoredDoc,
    Tally, kind_text, packed, stored_kind,
};

mod accounts;
mod attachments;
mod backup;
mod query;

pub use backup::{DirLock, LOCK_FILE, Restored, StoreSummary};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/001_init.sql"),
    include_str!("../../migrations/002_accounts.sql"),
    include_str!("../../migrations/003_dashboard.sql"),
    include_str!("../../migrations/004_credentials.sql"),
    include_str!("../../migrations/005_co_construction.sql"),
    include_str!("../../migrations/006_review_settled.sql"),
    include_str!("../../migrations/007_api_tokens.sql"),
    include_str!("../../migrations/008_attachments.sql"),
    include_str!("../../migrations/009_county.sql"),
    include_str!("../../migrations/010_docs_rowid.sql"),
    include_str!("../../migrations/011_grid_moves.sql"),
    include_str!("../../migrations/012_tallies.sql"),
    include_str!("../../migrations/013_log_in_snapshot.sql"),
];
const READERS: usize = 4;
pub const DB_FILE: &str = "gridsync.sqlite3";

pub struct SqliteStorage {
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    /// The data directory the store's files are in.
    dir: std::path::PathBuf,
    /// Held while the store is open, so that `admin restore` never replaces it underneath.
    _lock: DirLock,
}

impl SqliteStorage {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<SqliteStorage> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Database(format!("cannot create {}: {e}", dir.display())))?;
        let lock = DirLock::shared(dir)?;
        let path = dir.join(DB_FILE);
        let mut writer = connect(&path)?;
        migrate(&mut writer)?;
        if get_meta(&writer, "server_id")?.is_none() {
            writer.execute(
                "INSERT INTO meta (key, value) VALUES ('server_id', ?1)",
                [uuid::Uuid::now_v7().to_string()],
            )?;
        }
        let readers = (0..READERS)
            .map(|_| connect(&path).map(|c| Arc::new(Mutex::new(c))))
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteStorage {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            next_reader: AtomicUsize::new(0),
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[i].clone();
        run_blocking(move || {
            let guard = conn.lock().map_err(|_| poisoned())?;
            f(&guard)
        })
        .await
    }

    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.writer.clone();
        run_blocking(move || {
            let mut guard = conn.lock().map_err(|_| poisoned())?;
            f(&mut guard)
        })
        .await
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Database(format!("storage task failed: {e}")))?
}

/// One document's snapshot and the log entries after it.
fn read_doc(c: &Connection, doc_id: &str) -> Result<Option<StoredDoc>> {
    let row: Option<(String, String, Option<Vec<u8>>, i64)> = c
        .prepare_cached("SELECT grid_id, kind, snapshot, snapshot_seq FROM docs WHERE doc_id = ?1")?
        .query_row([&doc_id], |r| {
            Ok((r.get(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((grid_id, kind, snapshot, snapshot_seq)) = row else {
        return Ok(None);
    };
    let changes = c
        .prepare_cached("SELECT bytes FROM log WHERE doc_id = ?1 AND seq > ?2 ORDER BY seq")?
        .query_map(params![doc_id, snapshot_seq], |r| r.get(0))?
        .collect::<Result<Vec<Vec<u8>>, _>>()?;
    Ok(Some(StoredDoc {
        grid_id,
        kind: stored_kind(&kind)?,
        snapshot: snapshot.map(|stored| packed::read(doc_id, stored)),
        changes,
    }))
}

fn poisoned() -> StorageError {
    StorageError::Database("a storage connection was poisoned by an earlier panic".into())
}

/// The page size of a store this relay creates.
const PAGE_SIZE: i64 = 8192;

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    // A new store's pages are 8 KiB: a record's row in `docs` (its deflated snapshot, about
    // 1.4 KB for a 1 KB record) fits five to a page where two fitted in 4 KiB, which left a
    // third of each page empty (W2's relay store: 8.4 MB against 9.1 MB, the WAL apart). A
    // store made before keeps its pages; the setting does nothing to it.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // An acknowledged batch must survive a crash or power loss: fsync on every commit.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The write-ahead log is checkpointed every 1 MiB of pages (not SQLite's 1,000 pages) and
    // cut back to 1 MiB after a checkpoint when it grew past that (it otherwise keeps the size
    // it once grew to), so the WAL stays about a megabyte beside the store.
    let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", (1 << 20) / page)?;
    conn.pragma_update(None, "journal_size_limit", 1024 * 1024)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

const MOVE_COLUMNS: &str = "seq, doc_id, from_grid, to_grid, left_hash, moved_by, moved_at";

fn read_moves(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<GridMove>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Vec<u8>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    rows.map(|row| {
        let (seq, doc_id, from_grid, to_grid, left, moved_by, moved_at) = row?;
        Ok(GridMove {
            doc_id,
            from_grid,
            to_grid,
            left: to_hash(left)?,
            // Not kept: it is the log's entry at `seq`.
            arrived: [0; 32],
            moved_by,
            seq: seq as u64,
            moved_at,
        })
    })
    .collect()
}

/// Records a move and files the document (its copy and its index row) under the new grid.
fn commit_move(tx: &rusqlite::Transaction<'_>, m: &GridMove, now: &str) -> Result<()> {
    let seq: Option<i64> = tx
        .prepare_cached("SELECT seq FROM log WHERE hash = ?1")?
        .query_row([m.arrived.as_slice()], |r| r.get(0))
        .optional()?;
    let Some(seq) = seq else {
        return Err(StorageError::Invalid(format!(
            "the move of {} has no arrival entry in the log",
            m.doc_id
        )));
    };
    tx.prepare_cached(
        "INSERT INTO grid_moves (seq, doc_id, from_grid, to_grid, left_hash, moved_by, moved_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        seq,
        m.doc_id,
        m.from_grid,
        m.to_grid,
        m.left.as_slice(),
        m.moved_by,
        now
    ])?;
    tx.prepare_cached("UPDATE docs SET grid_id = ?2 WHERE doc_id = ?1")?
        .execute(params![m.doc_id, m.to_grid])?;
    tx.prepare_cached("UPDATE records SET grid_id = ?2 WHERE doc_id = ?1")?
        .execute(params![m.doc_id, m.to_grid])?;
    Ok(())
}

fn to_hash(bytes: Vec<u8>) -> Result<Hash> {
    Hash::try_from(bytes.as_slice())
        .map_err(|_| StorageError::Corrupt(format!("a change hash of {} bytes", bytes.len())))
}

/// A kind filter as a JSON array for `json_each` (`[]`: every kind).
fn kinds_json(kinds: &[String]) -> String {
    serde_json::to_string(kinds).unwrap_or_else(|_| "[]".into())
}

/// A kind filter as `kinds_json` gives it to SQL (`[]`: every kind; callers answer
/// [`KindFilter::admits_nothing`] themselves).
fn filter_json(kinds: &KindFilter) -> String {
    match kinds {
        KindFilter::All => "[]".into(),
        KindFilter::Only(kinds) => kinds_json(
            &kinds
                .iter()
                .map(|k| k.as_str().to_string())
                .collect::<Vec<_>>(),
        ),
    }
}

fn heads_blob(heads: &[Hash]) -> Vec<u8> {
    heads.iter().flatten().copied().collect()
}

#[async_trait]
impl Log for SqliteStorage {
    async fn server_id(&self) -> Result<String> {
        self.read(|c| {
            get_meta(c, "server_id")?.ok_or_else(|| StorageError::Corrupt("no server id".into()))
        })
        .await
    }

    async fn known(&self, hashes: &[Hash]) -> Result<HashSet<Hash>> {
        let hashes = hashes.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT 1 FROM log WHERE hash = ?1")?;
            let mut out = HashSet::new();
            for h in hashes {
                if stmt.exists([h.as_slice()])? {
                    out.insert(h);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn load_doc(&self, doc_id: &str) -> Result<Option<StoredDoc>> {
        let doc_id = doc_id.to_string();
        self.read(move |c| read_doc(c, &doc_id)).await
    }

    async fn load_docs(&self, doc_ids: &[String]) -> Result<Vec<Option<StoredDoc>>> {
        let doc_ids = doc_ids.to_vec();
        self.read(move |c| doc_ids.iter().map(|id| read_doc(c, id)).collect())
            .await
    }

    async fn log_since(
        &self,
        grid_id: &str,
        kinds: &KindFilter,
        after: u64,
        max_changes: usize,
        max_bytes: usize,
    ) -> Result<(Vec<LogEntry>, bool)> {
        if kinds.admits_nothing() {
            return Ok((Vec::new(), false));
        }
        let grid_id = grid_id.to_string();
        let kinds = filter_json(kinds);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, doc_id, hash, bytes, device_id, COALESCE(size, length(bytes)) FROM log
                 WHERE grid_id = ?1 AND seq > ?2
                   AND (?4 = '[]' OR kind IN (SELECT value FROM json_each(?4)))
                 ORDER BY seq LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![
                grid_id,
                after as i64,
                max_changes as i64 + 1,
                kinds
            ])?;
            let mut out = Vec::new();
            let mut size = 0;
            while let Some(r) = rows.next()? {
                let bytes: Vec<u8> = r.get(3)?;
                let length = r.get::<_, i64>(5)? as usize;
                if out.len() == max_changes || (!out.is_empty() && size + length > max_bytes) {
                    return Ok((out, true));
                }
                size += length;
                out.push(LogEntry {
                    seq: r.get::<_, i64>(0)? as u64,
                    doc_id: r.get(1)?,
                    hash: to_hash(r.get(2)?)?,
                    bytes,
                    device_id: r.get(4)?,
                });
            }
            Ok((out, false))
        })
        .await
    }

    async fn snapshots_within(
        &self,
        grid_id: &str,
        doc_ids: &[String],
        after: u64,
        up_to: u64,
    ) -> Result<Vec<Option<LogSnapshot>>> {
        let doc_ids = doc_ids.to_vec();
        let grid_id = grid_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT snapshot, snapshot_seq FROM docs
                 WHERE doc_id = ?1 AND snapshot IS NOT NULL AND snapshot_seq <= ?3
                   AND grid_id = ?4
                   AND (SELECT MIN(seq) FROM log WHERE doc_id = ?1) > ?2",
            )?;
            doc_ids
                .iter()
                .map(|id| {
                    let row: Option<(Vec<u8>, u64)> = stmt
                        .query_row(params![id, after as i64, up_to as i64, grid_id], |r| {
                            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
                        })
                        .optional()?;
                    Ok(row.map(|(stored, seq)| LogSnapshot {
                        bytes: packed::read(id, stored),
                        seq,
                    }))
                })
                .collect()
        })
        .await
    }

    async fn head(&self, grid_id: &str) -> Result<Option<(u64, Hash)>> {
        let grid_id = grid_id.to_string();
        self.read(move |c| {
            let row: Option<(i64, Vec<u8>)> = c
                .prepare_cached(
                    "SELECT seq, hash FROM log WHERE grid_id = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([grid_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(seq, hash)| Ok((seq as u64, to_hash(hash)?)))
                .transpose()
        })
        .await
    }

    async fn entry_hash(&self, grid_id: &str, seq: u64) -> Result<Option<Hash>> {
        let grid_id = grid_id.to_string();
        self.read(move |c| {
            let hash: Option<Vec<u8>> = c
                .prepare_cached("SELECT hash FROM log WHERE seq = ?1 AND grid_id = ?2")?
                .query_row(params![seq as i64, grid_id], |r| r.get(0))
                .optional()?;
            hash.map(to_hash).transpose()
        })
        .await
    }

    async fn doc_heads(
        &self,
        grid_id: &str,
        kinds: &KindFilter,
        after_doc: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Hash>)>> {
        if kinds.admits_nothing() {
            return Ok(Vec::new());
        }
        let grid_id = grid_id.to_string();
        let after = after_doc.unwrap_or("").to_string();
        let kinds = filter_json(kinds);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT doc_id, heads FROM docs WHERE grid_id = ?1 AND doc_id > ?2
                   AND (?4 = '[]' OR kind IN (SELECT value FROM json_each(?4)))
                 ORDER BY doc_id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![grid_id, after, limit as i64, kinds], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, blob) = row?;
                let heads = blob
                    .chunks_exact(32)
                    .map(|c| to_hash(c.to_vec()))
                    .collect::<Result<Vec<_>>>()?;
                out.push((id, heads));
            }
            Ok(out)
        })
        .await
    }

    async fn moves_of(&self, doc_id: &str) -> Result<Vec<GridMove>> {
        let doc_id = doc_id.to_string();
        self.read(move |c| {
            read_moves(
                c,
                &format!("SELECT {MOVE_COLUMNS} FROM grid_moves WHERE doc_id = ?1 ORDER BY seq"),
                params![doc_id],
            )
        })
        .await
    }

    async fn moves_into(&self, grid_id: &str, after: u64, up_to: u64) -> Result<Vec<String>> {
        let grid_id = grid_id.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT doc_id FROM grid_moves WHERE to_grid = ?1 AND seq > ?2 AND seq <= ?3
                 ORDER BY seq",
            )?;
            let rows =
                stmt.query_map(params![grid_id, after as i64, up_to as i64], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn moves_after(&self, after: u64, limit: usize) -> Result<Vec<GridMove>> {
        self.read(move |c| {
            read_moves(
                c,
                &format!(
                    "SELECT {MOVE_COLUMNS} FROM grid_moves WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ),
                params![after as i64, limit as i64],
            )
        })
        .await
    }
}

#[async_trait]
impl Commits for SqliteStorage {
    async fn commit(&self, commit: Commit) -> Result<u64> {
        self.write(move |c| {
            let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
            let tx = c.transaction()?;
            for ch in &commit.changes {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO log (grid_id, doc_id, kind, hash, bytes, device_id, worker_id,
                        received_at, size)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    ch.grid_id,
                    ch.doc_id,
                    kind_text(ch.kind),
                    ch.hash.as_slice(),
                    ch.stored_bytes(),
                    ch.device_id,
                    ch.worker_id,
                    now,
                    ch.stored_size(),
                ])?;
            }
            let last: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM log", [], |r| r.get(0))?;
            for d in &commit.docs {
                tx.prepare_cached(
                    "INSERT INTO docs (doc_id, grid_id, kind, heads) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (doc_id) DO UPDATE SET kind = excluded.kind, heads = excluded.heads",
                )?
                .execute(params![
                    d.doc_id,
                    d.grid_id,
                    kind_text(d.kind),
                    heads_blob(&d.heads)
                ])?;
                if let Some(snapshot) = &d.snapshot {
                    tx.prepare_cached(
                        "UPDATE docs SET snapshot = ?2,
                            snapshot_seq = (SELECT COALESCE(MAX(seq), 0) FROM log WHERE doc_id = ?1)
                         WHERE doc_id = ?1",
                    )?
                    .execute(params![d.doc_id, snapshot.stored()])?;
                }
                if let Some(row) = &d.index {
                    tx.prepare_cached(
                        "INSERT INTO records (doc_id, kind, grid_id, household_id, status, assigned_to,
                            due_at, title, created_at, updated_at, deleted, has_conflicts,
                            received_at, updated_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                         ON CONFLICT (doc_id) DO UPDATE SET
                            kind = excluded.kind, household_id = excluded.household_id,
                            status = excluded.status, assigned_to = excluded.assigned_to,
                            due_at = excluded.due_at, title = excluded.title,
                            created_at = excluded.created_at, updated_at = excluded.updated_at,
                            deleted = excluded.deleted, has_conflicts = excluded.has_conflicts,
                            updated_seq = excluded.updated_seq",
                    )?
                    .execute(params![
                        row.id,
                        row.kind.as_str(),
                        row.grid_id,
                        row.household_id,
                        row.status,
                        row.assigned_to,
                        row.due_at,
                        row.title,
                        row.created_at,
                        row.updated_at,
                        row.deleted,
                        row.has_conflicts,
                        now,
                        last
                    ])?;
                }
                query::commit_doc(&tx, d, last, &now)?;
                attachments::commit_refs(&tx, d)?;
            }
            for m in &commit.moves {
                commit_move(&tx, m, &now)?;
            }
            tx.commit()?;
            Ok(last as u64)
        })
        .await
    }
}

#[async_trait]
impl Queries for SqliteStorage {
    async fn store_bytes(&self) -> Result<Option<u64>> {
        let bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|end| std::fs::metadata(self.dir.join(format!("{DB_FILE}{end}"))).ok())
            .map(|m| m.len())
            .sum();
        Ok(Some(bytes))
    }

    async fn record_counts(&self) -> Result<Vec<RecordCount>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT grid_id, kind, status, COUNT(*) FROM records WHERE deleted = 0
                 GROUP BY grid_id, kind, status ORDER BY grid_id, kind, status",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(RecordCount {
                    grid_id: r.get(0)?,
                    kind: r.get(1)?,
                    status: r.get(2)?,
                    count: r.get::<_, i64>(3)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn list_records(&self, q: &RecordQuery) -> Result<RecordPage> {
        let q = q.clone();
        self.read(move |c| query::list_records(c, &q)).await
    }

    async fn tally(&self, q: &RecordQuery) -> Result<Vec<Tally>> {
        let q = q.clone();
        self.read(move |c| query::tally(c, &q)).await
    }

    async fn grid_counts(
        &self,
        q: &RecordQuery,
        overdue_before: &[(String, String)],
    ) -> Result<Vec<GridCount>> {
        let (q, overdue_before) = (q.clone(), overdue_before.to_vec());
        self.read(move |c| query::grid_counts(c, &q, &overdue_before))
            .await
    }

    async fn low_stock_counts(&self, grids: &[String]) -> Result<Vec<(String, u64)>> {
        let grids = kinds_json(grids);
        self.read(move |c| query::low_stock_counts(c, &grids)).await
    }

    async fn change_sources(&self, doc_id: &str) -> Result<Vec<ChangeSource>> {
        let doc_id = doc_id.to_string();
        self.read(move |c| query::change_sources(c, &doc_id)).await
    }

    async fn clear_review(&self, doc_id: &str, seq: u64) -> Result<()> {
        let doc_id = doc_id.to_string();
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        self.write(move |c| query::clear_review(c, &doc_id, seq, &now))
            .await
    }

    async fn changed_since(
        &self,
        grids: &[String],
        kinds: &KindFilter,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Changed>, bool)> {
        if kinds.admits_nothing() {
            return Ok((Vec::new(), false));
        }
        let (grids, kinds) = (kinds_json(grids), filter_json(kinds));
        self.read(move |c| query::changed_since(c, &grids, &kinds, after, limit))
            .await
    }
}

#[async_trait]
impl Attachments for SqliteStorage {
    async fn attachment_uses(&self, hash: &Hash) -> Result<Vec<AttachmentUse>> {
        let hash = *hash;
        self.read(move |c| attachments::uses(c, &hash)).await
    }

    async fn doc_attachments(&self, doc_id: &str) -> Result<Vec<DocAttachment>> {
        let doc_id = doc_id.to_string();
        self.read(move |c| attachments::of_doc(c, &doc_id)).await
    }

    async fn attachment_counts_of(
        &self,
        doc_ids: &[String],
    ) -> Result<std::collections::HashMap<String, usize>> {
        let ids = kinds_json(doc_ids);
        self.read(move |c| attachments::counts_of(c, &ids)).await
    }

    async fn blob_stored(&self, blob: StoredBlob) -> Result<()> {
        self.write(move |c| attachments::insert_blob(c, &blob))
            .await
    }

    async fn stored_blob(&self, hash: &Hash) -> Result<Option<StoredBlob>> {
        let hash = *hash;
        self.read(move |c| attachments::blob(c, &hash)).await
    }

    async fn device_blob_bytes(&self, device_id: &str) -> Result<u64> {
        let device_id = device_id.to_string();
        self.read(move |c| attachments::device_bytes(c, &device_id))
            .await
    }

    async fn attachment_counts(&self) -> Result<Vec<AttachmentCount>> {
        self.read(attachments::counts).await
    }

    async fn orphan_blobs(&self, now: &str) -> Result<Vec<Orphan>> {
        let now = now.to_string();
        self.write(move |c| {
            let tx = c.transaction()?;
            let out = attachments::orphans(&tx, &now)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn purge_blob(&self, hash: &Hash, unnamed_by: &str, remove: BlobRemoval) -> Result<bool> {
        let (hash, unnamed_by) = (*hash, unnamed_by.to_string());
        self.write(move |c| {
            // Immediate: the write lock from the check on, so that no commit of another
            // connection (another process) names the hash between the check and the removal.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !attachments::purgeable(&tx, &hash, &unnamed_by)? {
                return Ok(false);
            }
            // The bytes first: if the commit fails, the row stays and the next purge retries.
            remove()?;
            attachments::forget(&tx, &hash)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DocUpdate, NewChange, PackedSnapshot};
    use gridsync_core::record::Kind;

    #[tokio::test]
    async fn test_sqlite_storage_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        crate::storage::tests::conformance(&storage).await;
        let size = storage.store_bytes().await.unwrap().unwrap();
        let file = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
        assert!(size >= file && file > 0, "{size} {file}");
    }

    #[tokio::test]
    async fn test_a_store_from_before_the_tallies_counts_its_records_once_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        crate::storage::tests::dashboard_conformance(&storage).await;
        let every = RecordQuery {
            grids: ["g1", "g2", "k1", "k2", "k3", "t1", "t2", "t3"]
                .map(String::from)
                .to_vec(),
            ..RecordQuery::default()
        };
        let counted = storage.grid_counts(&every, &[]).await.unwrap();
        let listed = storage.list_records(&every).await.unwrap().total;
        assert_eq!(counted.iter().map(|c| c.count).sum::<u64>(), listed);
        assert!(listed > 20, "{listed}");
        // As a relay of the release before migration 012 left it.
        storage
            .write(|c| {
                c.execute_batch(
                    "DROP TABLE record_tallies;
                     DROP TRIGGER records_tally_in;
                     DROP TRIGGER records_tally_out;
                     DROP TRIGGER records_tally_moved;
                     DROP TRIGGER facts_tally_in;
                     DROP TRIGGER facts_tally_moved;
                     DROP TRIGGER facts_tally_out;
                     ALTER TABLE log DROP COLUMN size;
                     PRAGMA user_version = 11;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        drop(storage);
        let storage = SqliteStorage::open(dir.path()).unwrap();
        assert_eq!(storage.grid_counts(&every, &[]).await.unwrap(), counted);
    }

    #[tokio::test]
    async fn test_sqlite_storage_answers_dashboard_queries() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        crate::storage::tests::dashboard_conformance(&storage).await;
    }

    #[tokio::test]
    async fn test_sqlite_storage_keeps_attachment_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        crate::storage::tests::attachments_conformance(&storage).await;
    }

    #[tokio::test]
    async fn test_sqlite_storage_lists_records_changed_since() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        crate::storage::tests::changed_since_conformance(&storage).await;
    }

    #[tokio::test]
    async fn test_sqlite_storage_keeps_a_change_its_snapshot_holds_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        crate::storage::tests::in_snapshot_conformance(&storage).await;
    }

    #[tokio::test]
    async fn test_a_record_snapshot_takes_its_own_size_on_disk_not_a_page() {
        // 300 records with a 1.7 KB snapshot each (a 1 KB record's, as the relay keeps it):
        // stored inline the store grows by about 0.85 MB (the log and indexes beside them); as
        // the WITHOUT ROWID table of migration 001 kept them, each spilled into an overflow page
        // of its own (4 KiB) and the store grew by 1.6 MB. Bytes with no repeats, which the
        // store cannot deflate (storage/packed.rs), so each takes its full 1.7 KB.
        let noise = |seed: u64| crate::storage::packed::tests::noise(1700, seed);
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(dir.path()).unwrap();
        let empty = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
        for batch in 0..3u8 {
            let mut commit = Commit::default();
            for i in 0..100u8 {
                let doc_id = format!("doc-{batch}-{i}");
                let snapshot = PackedSnapshot::pack(&noise(u64::from(batch) * 100 + u64::from(i)));
                assert_eq!(snapshot.stored().len(), 1700, "stored as it is");
                let mut hash = [0u8; 32];
                hash[..2].copy_from_slice(&(u16::from(batch) * 100 + u16::from(i)).to_be_bytes());
                commit.changes.push(NewChange {
                    grid_id: "g1".into(),
                    doc_id: doc_id.clone(),
                    kind: Some(Kind::Visit),
                    hash,
                    bytes: vec![i; 10],
                    device_id: "d".into(),
                    worker_id: "w".into(),
                    in_snapshot: false,
                });
                commit.docs.push(DocUpdate {
                    doc_id,
                    grid_id: "g1".into(),
                    kind: Some(Kind::Visit),
                    heads: vec![hash],
                    index: None,
                    snapshot: Some(snapshot),
                    facts: None,
                    parallel: false,
                    attachments: None,
                });
            }
            s.commit(commit).await.unwrap();
        }
        // Closing the last connection checkpoints the WAL into the file and removes it.
        drop(s);
        let grew = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len() - empty;
        assert!(
            grew < 300 * 1700 * 2,
            "300 snapshots of 1,700 bytes grew the store by {grew} bytes"
        );
    }

    #[tokio::test]
    async fn test_a_snapshot_is_stored_deflated_and_one_stored_before_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(dir.path()).unwrap();
        let mut doc = automerge::AutoCommit::new();
        {
            use automerge::transaction::Transactable;
            for field in ["title", "notes", "outcome", "visit_type", "household_id"] {
                doc.put(
                    automerge::ROOT,
                    field,
                    format!("{field}: 入户走访，情况稳定"),
                )
                .unwrap();
            }
        }
        let saved = gridsync_core::doc::save_snapshot(doc.document());
        let hash = doc.get_heads()[0].0;
        let update = |id: &str, snapshot: &[u8]| DocUpdate {
            doc_id: id.into(),
            grid_id: "g1".into(),
            kind: Some(Kind::Visit),
            heads: vec![hash],
            index: None,
            snapshot: Some(PackedSnapshot::pack(snapshot)),
            facts: None,
            parallel: false,
            attachments: None,
        };
        s.commit(Commit {
            docs: vec![update("now", &saved)],
            ..Commit::default()
        })
        .await
        .unwrap();
        // One written before snapshots were deflated: the column holds Automerge's own bytes.
        s.commit(Commit {
            docs: vec![update("before", b"placeholder")],
            ..Commit::default()
        })
        .await
        .unwrap();
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute(
            "UPDATE docs SET snapshot = ?1 WHERE doc_id = 'before'",
            [&saved],
        )
        .unwrap();
        let column: Vec<u8> = c
            .query_row("SELECT snapshot FROM docs WHERE doc_id = 'now'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            column.len() < saved.len() * 9 / 10,
            "stored {} bytes of a {}-byte snapshot",
            column.len(),
            saved.len()
        );
        for id in ["now", "before"] {
            let loaded = s.load_doc(id).await.unwrap().unwrap();
            assert_eq!(loaded.snapshot.as_deref(), Some(saved.as_slice()), "{id}");
        }
    }

    #[tokio::test]
    async fn test_a_new_store_has_8_kib_pages_and_one_made_before_keeps_its_own() {
        let page_size = |dir: &Path| -> i64 {
            Connection::open(dir.join(DB_FILE))
                .unwrap()
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap()
        };
        let new = tempfile::tempdir().unwrap();
        drop(SqliteStorage::open(new.path()).unwrap());
        assert_eq!(page_size(new.path()), 8192);
        // A store of 4 KiB pages, as every relay made them before.
        let old = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(old.path().join(DB_FILE)).unwrap();
            c.pragma_update(None, "page_size", 4096).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch("CREATE TABLE before (x)").unwrap();
        }
        let s = SqliteStorage::open(old.path()).unwrap();
        crate::storage::tests::conformance(&s).await;
        drop(s);
        assert_eq!(page_size(old.path()), 4096);
    }

    #[tokio::test]
    async fn test_sqlite_storage_keeps_everything_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let s = SqliteStorage::open(dir.path()).unwrap();
            crate::storage::tests::conformance(&s).await;
            s.server_id().await.unwrap()
        };
        let s = SqliteStorage::open(dir.path()).unwrap();
        assert_eq!(s.server_id().await.unwrap(), id);
        assert_eq!(
            s.log_since("g1", &KindFilter::All, 0, 100, 1 << 20)
                .await
                .unwrap()
                .0
                .len(),
            4
        );
    }
}
