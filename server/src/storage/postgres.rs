//! The county's backend: PostgreSQL (`--database postgres://…`), which several relay processes
//! may share.
//!
//! One pool of connections (deadpool-postgres over tokio-postgres). Every value is stored as
//! SQLite stores it (instants as UTC text, hashes as bytes, text compared byte by byte), so both
//! backends answer the conformance suites alike. Two choices matter beyond SQL's dialect:
//! - **The log's order is commit order.** A commit takes a transaction-scoped advisory lock
//!   ([`LOG_LOCK`]) before its first seq and holds it to its end, on every connection of every
//!   relay: a cursor that read up to seq `n` never misses an entry with a seq below `n` that
//!   committed later (docs/protocol.md, "the log").
//! - **A commit returns once PostgreSQL committed it** (`synchronous_commit = on`, asked for on
//!   every connection): the relay acknowledges a batch only then.
//!
//! The attachments' bytes stay files under the data directory (`FsBlobStore`); only their
//! metadata is here.

mod accounts;
mod attachments;
mod notify;
mod query;
pub mod testing;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::str::FromStr as _;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use gridsync_core::protocol::Hash;
use lru::LruCache;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{
    AttachmentCount, AttachmentUse, Attachments, BlobRemoval, ChangeSource, Changed, Commit,
    Commits, DocAttachment, DocUpdate, GridCount, GridMove, KindFilter, Log, LogEntry, LogSnapshot,
    NewChange, Orphan, Queries, RecordCount, RecordPage, RecordQuery, Result, StorageError,
    StoredBlob, StoredDoc, Tally, kind_text, packed, stored_kind,
};

pub use notify::{LOG_CHANNEL, Listener, LogNotice, Notice, SIGN_IN_CHANNEL};

/// The numbered migrations, applied in order at start-up; `schema_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/001_init.sql"),
    include_str!("../../migrations/postgres/002_county.sql"),
    include_str!("../../migrations/postgres/003_grid_moves.sql"),
    include_str!("../../migrations/postgres/004_tallies.sql"),
    include_str!("../../migrations/postgres/005_log_in_snapshot.sql"),
];

/// Counts the per-grid tallies afresh from the index (after a bulk copy that left them alone);
/// the same count migration 004 starts them with.
pub(crate) const RECOUNT_TALLIES: &str = "
    SET LOCAL gridsync.bulk = 'off';
    DELETE FROM record_tallies;
    INSERT INTO record_tallies (kind, day, grid_id, status, subtype, n)
    SELECT r.kind, COALESCE(substr(f.occurred_at, 1, 10), ''), r.grid_id, COALESCE(r.status, ''),
           COALESCE(f.subtype, ''), COUNT(*)
    FROM records r LEFT JOIN record_facts f ON f.doc_id = r.doc_id
    WHERE NOT r.deleted
    GROUP BY 1, 2, 3, 4, 5;";

/// The advisory lock every commit holds from its first seq to its end (and the purge of an
/// attachment, which must not interleave with a commit naming it). Any fixed key; this one
/// spells "gridsync".
pub const LOG_LOCK: i64 = 0x6772_6964_7379_6e63;
/// Held while the migrations run, so that relays starting together migrate once.
const MIGRATE_LOCK: i64 = LOG_LOCK + 1;
/// Connections one relay holds at most.
const POOL_SIZE: usize = 16;

/// Whether a `--database` value names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub struct PostgresStorage {
    pool: Pool,
    /// For the listener's connection of its own ([`PostgresStorage::listen`]).
    config: tokio_postgres::Config,
    /// This store's name in its notices, so that it skips its own.
    instance: String,
    /// For each document read or written lately, a seq such that what was read (or written)
    /// holds every log entry of it up to there: a commit of the document is refused
    /// ([`StorageError::Stale`]) if it has an entry after that seq (0 when not here), since the
    /// relay's copy it was built on could then lack another relay's changes.
    bases: Mutex<LruCache<String, u64>>,
}

/// Documents whose bases [`PostgresStorage`] keeps: more than a relay caches (a relay caching
/// more reloads a document once when it falls out).
const BASES: usize = 50_000;

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code) if *code == SqlState::DISK_FULL => StorageError::Full,
            _ => match e.as_db_error() {
                Some(db) => {
                    StorageError::Database(format!("{}: {}", db.code().code(), db.message()))
                }
                // "error connecting to server" says little without its cause.
                None => StorageError::Database(match std::error::Error::source(&e) {
                    Some(cause) => format!("{e}: {cause}"),
                    None => e.to_string(),
                }),
            },
        }
    }
}

impl From<deadpool_postgres::PoolError> for StorageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StorageError::Database(format!("no database connection: {e}")),
        }
    }
}

impl PostgresStorage {
    /// Connects to the database at `url` (`postgres://user@host:port/name`), creating its
    /// tables or bringing them up to date.
    pub async fn connect(url: &str) -> Result<PostgresStorage> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            StorageError::Invalid(format!(
                "数据库地址无效 the database address is not a PostgreSQL URL: {e}"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // The relay acknowledges a batch once `commit` returned: it must be on disk by then,
        // whatever the server's default.
        let options = match config.get_options() {
            Some(o) => format!("{o} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_string(),
        };
        config.options(&options);
        config.application_name("gridsync-server");
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StorageError::Database(format!("cannot make a connection pool: {e}")))?;
        let storage = PostgresStorage {
            pool,
            config,
            instance: uuid::Uuid::now_v7().to_string(),
            bases: Mutex::new(LruCache::new(
                NonZeroUsize::new(BASES).unwrap_or(NonZeroUsize::MIN),
            )),
        };
        storage.migrate().await?;
        Ok(storage)
    }

    fn lock_bases(&self) -> std::sync::MutexGuard<'_, LruCache<String, u64>> {
        // A seq per document and nothing more: a poisoned lock is still usable.
        self.bases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that what was read of these documents holds every entry up to `seq`.
    fn note_bases<'a>(&self, docs: impl IntoIterator<Item = &'a String>, seq: i64) {
        let mut bases = self.lock_bases();
        for doc in docs {
            bases.put(doc.clone(), seq.max(0) as u64);
        }
    }

    /// The log's newest seq: every entry up to it is visible to the statements that follow
    /// (seq order is commit order).
    async fn newest(c: &deadpool_postgres::Client) -> Result<i64> {
        Ok(c.query_one("SELECT COALESCE(MAX(seq), 0) FROM log", &[])
            .await?
            .get(0))
    }

    /// Inside a commit, under the log's lock: refuses it if a document it writes may have been
    /// built on a copy lacking another relay's entries.
    async fn check_fresh(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        commit: &Commit,
    ) -> Result<()> {
        let mut ids: Vec<String> = commit.docs.iter().map(|d| d.doc_id.clone()).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let mut bases = Vec::with_capacity(ids.len());
        {
            let mut known = self.lock_bases();
            // Not read lately: fresh only if it has no entry yet (a new record).
            for id in &ids {
                bases.push(known.get(id).map_or(0, |seq| *seq as i64));
            }
        }
        let row = tx
            .query_opt(
                &tx.prepare_cached(
                    "SELECT b.doc_id FROM unnest($1::text[], $2::bigint[]) AS b(doc_id, base)
                     WHERE EXISTS (SELECT 1 FROM log l WHERE l.doc_id = b.doc_id AND l.seq > b.base)
                     LIMIT 1",
                )
                .await?,
                &[&ids, &bases],
            )
            .await?;
        match row {
            Some(r) => {
                let id: String = r.get(0);
                self.lock_bases().pop(&id);
                Err(StorageError::Stale(id))
            }
            None => Ok(()),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        Ok(self.pool.get().await?)
    }

    /// Applies the migrations not applied yet, all in one transaction: a failed one leaves the
    /// schema as it was.
    async fn migrate(&self) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let done: Option<i64> = tx
            .query_opt("SELECT version FROM schema_version", &[])
            .await?
            .map(|r| r.get(0));
        if done.is_none() {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await?;
        }
        let done = done.unwrap_or(0).max(0) as usize;
        if done > MIGRATIONS.len() {
            return Err(StorageError::Corrupt(format!(
                "数据库版本 {done} 高于本程序支持的 {} the database is at schema version {done}, \
                 newer than this relay knows ({}): run the newer relay",
                MIGRATIONS.len(),
                MIGRATIONS.len()
            )));
        }
        for sql in &MIGRATIONS[done..] {
            tx.batch_execute(sql).await?;
        }
        tx.execute(
            "UPDATE schema_version SET version = $1",
            &[&(MIGRATIONS.len() as i64)],
        )
        .await?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('server_id', $1) ON CONFLICT (key) DO NOTHING",
            &[&uuid::Uuid::now_v7().to_string()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(super) fn to_hash(bytes: &[u8]) -> Result<Hash> {
    Hash::try_from(bytes)
        .map_err(|_| StorageError::Corrupt(format!("a change hash of {} bytes", bytes.len())))
}

/// A kind filter as SQL takes it: `NULL` for every kind (callers answer
/// [`KindFilter::admits_nothing`] themselves).
pub(super) fn kind_names(kinds: &KindFilter) -> Option<Vec<String>> {
    match kinds {
        KindFilter::All => None,
        KindFilter::Only(kinds) => Some(kinds.iter().map(|k| k.as_str().to_string()).collect()),
    }
}

fn heads_blob(heads: &[Hash]) -> Vec<u8> {
    heads.iter().flatten().copied().collect()
}

const MOVE_COLUMNS: &str = "seq, doc_id, from_grid, to_grid, left_hash, moved_by, moved_at";

fn read_moves(rows: &[tokio_postgres::Row]) -> Result<Vec<GridMove>> {
    rows.iter()
        .map(|r| {
            Ok(GridMove {
                doc_id: r.get(1),
                from_grid: r.get(2),
                to_grid: r.get(3),
                left: to_hash(r.get(4))?,
                // Not kept: it is the log's entry at `seq`.
                arrived: [0; 32],
                moved_by: r.get(5),
                seq: r.get::<_, i64>(0) as u64,
                moved_at: r.get(6),
            })
        })
        .collect()
}

/// One document's rows in a commit: its copy and heads, its snapshot, its index row, facts,
/// review flag and attachments.
async fn write_doc(
    tx: &deadpool_postgres::Transaction<'_>,
    d: &DocUpdate,
    last: i64,
    now: &str,
) -> Result<()> {
    tx.execute(
        &tx.prepare_cached(
            "INSERT INTO docs (doc_id, grid_id, kind, heads) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (doc_id) DO UPDATE SET kind = excluded.kind, heads = excluded.heads",
        )
        .await?,
        &[
            &d.doc_id,
            &d.grid_id,
            &kind_text(d.kind),
            &heads_blob(&d.heads),
        ],
    )
    .await?;
    if let Some(snapshot) = &d.snapshot {
        tx.execute(
            &tx.prepare_cached(
                "UPDATE docs SET snapshot = $2,
                        snapshot_seq = (SELECT COALESCE(MAX(seq), 0) FROM log WHERE doc_id = $1)
                     WHERE doc_id = $1",
            )
            .await?,
            &[&d.doc_id, &snapshot.stored()],
        )
        .await?;
    }
    if let Some(row) = &d.index {
        tx.execute(
            &tx.prepare_cached(
                "INSERT INTO records (doc_id, kind, grid_id, household_id, status, assigned_to,
                        due_at, title, created_at, updated_at, deleted, has_conflicts,
                        received_at, updated_seq)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                     ON CONFLICT (doc_id) DO UPDATE SET
                        kind = excluded.kind, household_id = excluded.household_id,
                        status = excluded.status, assigned_to = excluded.assigned_to,
                        due_at = excluded.due_at, title = excluded.title,
                        created_at = excluded.created_at, updated_at = excluded.updated_at,
                        deleted = excluded.deleted, has_conflicts = excluded.has_conflicts,
                        updated_seq = excluded.updated_seq",
            )
            .await?,
            &[
                &row.id,
                &row.kind.as_str(),
                &row.grid_id,
                &row.household_id,
                &row.status,
                &row.assigned_to,
                &row.due_at,
                &row.title,
                &row.created_at,
                &row.updated_at,
                &row.deleted,
                &row.has_conflicts,
                &now,
                &last,
            ],
        )
        .await?;
    }
    query::commit_doc(tx, d, last, now).await?;
    attachments::commit_refs(tx, d).await?;
    Ok(())
}

/// Records a move and files the document (its copy and its index row) under the new grid, as
/// SQLite's `commit_move` does.
async fn commit_move(
    tx: &deadpool_postgres::Transaction<'_>,
    m: &GridMove,
    now: &str,
) -> Result<()> {
    let arrived = m.arrived.as_slice();
    let Some(row) = tx
        .query_opt("SELECT seq FROM log WHERE hash = $1", &[&arrived])
        .await?
    else {
        return Err(StorageError::Invalid(format!(
            "the move of {} has no arrival entry in the log",
            m.doc_id
        )));
    };
    let seq: i64 = row.get(0);
    tx.execute(
        "INSERT INTO grid_moves (seq, doc_id, from_grid, to_grid, left_hash, moved_by, moved_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &seq,
            &m.doc_id,
            &m.from_grid,
            &m.to_grid,
            &m.left.as_slice(),
            &m.moved_by,
            &now,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE docs SET grid_id = $2 WHERE doc_id = $1",
        &[&m.doc_id, &m.to_grid],
    )
    .await?;
    tx.execute(
        "UPDATE records SET grid_id = $2 WHERE doc_id = $1",
        &[&m.doc_id, &m.to_grid],
    )
    .await?;
    Ok(())
}

fn now_millis() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One document's snapshot and the log entries after it.
async fn read_doc(c: &deadpool_postgres::Client, doc_id: &str) -> Result<Option<StoredDoc>> {
    let row = c
        .query_opt(
            &c.prepare_cached(
                "SELECT grid_id, kind, snapshot, snapshot_seq FROM docs WHERE doc_id = $1",
            )
            .await?,
            &[&doc_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let snapshot_seq: i64 = row.get(3);
    let changes = c
        .query(
            &c.prepare_cached("SELECT bytes FROM log WHERE doc_id = $1 AND seq > $2 ORDER BY seq")
                .await?,
            &[&doc_id, &snapshot_seq],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, Vec<u8>>(0))
        .collect();
    Ok(Some(StoredDoc {
        grid_id: row.get(0),
        kind: stored_kind(row.get(1))?,
        snapshot: row
            .get::<_, Option<Vec<u8>>>(2)
            .map(|stored| packed::read(doc_id, stored)),
        changes,
    }))
}

#[async_trait]
impl Log for PostgresStorage {
    async fn server_id(&self) -> Result<String> {
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT value FROM meta WHERE key = 'server_id'", &[])
            .await?;
        row.map(|r| r.get(0))
            .ok_or_else(|| StorageError::Corrupt("no server id".into()))
    }

    async fn known(&self, hashes: &[Hash]) -> Result<HashSet<Hash>> {
        if hashes.is_empty() {
            return Ok(HashSet::new());
        }
        let c = self.client().await?;
        let list: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
        let rows = c
            .query(
                &c.prepare_cached("SELECT hash FROM log WHERE hash = ANY($1::bytea[])")
                    .await?,
                &[&list],
            )
            .await?;
        rows.iter().map(|r| to_hash(r.get(0))).collect()
    }

    async fn load_doc(&self, doc_id: &str) -> Result<Option<StoredDoc>> {
        let c = self.client().await?;
        let newest = Self::newest(&c).await?;
        let doc = read_doc(&c, doc_id).await?;
        self.note_bases([&doc_id.to_string()], newest);
        Ok(doc)
    }

    async fn load_docs(&self, doc_ids: &[String]) -> Result<Vec<Option<StoredDoc>>> {
        if doc_ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.client().await?;
        let newest = Self::newest(&c).await?;
        // Pipelined on the connection: one round trip for the lot, answers in order.
        let out =
            futures_util::future::try_join_all(doc_ids.iter().map(|id| read_doc(&c, id))).await?;
        self.note_bases(doc_ids, newest);
        Ok(out)
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
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(
                    "SELECT seq, doc_id, hash, bytes, device_id, COALESCE(size, length(bytes)) FROM log
                     WHERE grid_id = $1 AND seq > $2
                       AND ($4::text[] IS NULL OR kind = ANY($4::text[]))
                     ORDER BY seq LIMIT $3",
                )
                .await?,
                &[
                    &grid_id,
                    &(after as i64),
                    &(max_changes as i64 + 1),
                    &kind_names(kinds),
                ],
            )
            .await?;
        let mut out = Vec::new();
        let mut size = 0;
        for r in rows {
            let bytes: Vec<u8> = r.get(3);
            let length = r.get::<_, i64>(5) as usize;
            if out.len() == max_changes || (!out.is_empty() && size + length > max_bytes) {
                return Ok((out, true));
            }
            size += length;
            out.push(LogEntry {
                seq: r.get::<_, i64>(0) as u64,
                doc_id: r.get(1),
                hash: to_hash(r.get(2))?,
                bytes,
                device_id: r.get(4),
            });
        }
        Ok((out, false))
    }

    async fn snapshots_within(
        &self,
        grid_id: &str,
        doc_ids: &[String],
        after: u64,
        up_to: u64,
    ) -> Result<Vec<Option<LogSnapshot>>> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT snapshot, snapshot_seq FROM docs
                 WHERE doc_id = $1 AND snapshot IS NOT NULL AND snapshot_seq <= $3
                   AND grid_id = $4
                   AND (SELECT MIN(seq) FROM log WHERE doc_id = $1) > $2",
            )
            .await?;
        let mut out = Vec::with_capacity(doc_ids.len());
        for id in doc_ids {
            let row = c
                .query_opt(&stmt, &[id, &(after as i64), &(up_to as i64), &grid_id])
                .await?;
            out.push(row.map(|r| LogSnapshot {
                bytes: packed::read(id, r.get(0)),
                seq: r.get::<_, i64>(1) as u64,
            }));
        }
        Ok(out)
    }

    async fn head(&self, grid_id: &str) -> Result<Option<(u64, Hash)>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached(
                    "SELECT seq, hash FROM log WHERE grid_id = $1 ORDER BY seq DESC LIMIT 1",
                )
                .await?,
                &[&grid_id],
            )
            .await?;
        row.map(|r| Ok((r.get::<_, i64>(0) as u64, to_hash(r.get(1))?)))
            .transpose()
    }

    async fn entry_hash(&self, grid_id: &str, seq: u64) -> Result<Option<Hash>> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                &c.prepare_cached("SELECT hash FROM log WHERE seq = $1 AND grid_id = $2")
                    .await?,
                &[&(seq as i64), &grid_id],
            )
            .await?;
        row.map(|r| to_hash(r.get(0))).transpose()
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
        let c = self.client().await?;
        let rows = c
            .query(
                &c.prepare_cached(
                    "SELECT doc_id, heads FROM docs WHERE grid_id = $1 AND doc_id > $2
                       AND ($4::text[] IS NULL OR kind = ANY($4::text[]))
                     ORDER BY doc_id LIMIT $3",
                )
                .await?,
                &[
                    &grid_id,
                    &after_doc.unwrap_or(""),
                    &(limit as i64),
                    &kind_names(kinds),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let blob: &[u8] = r.get(1);
                let heads = blob
                    .chunks_exact(32)
                    .map(to_hash)
                    .collect::<Result<Vec<_>>>()?;
                Ok((r.get(0), heads))
            })
            .collect()
    }

    async fn moves_of(&self, doc_id: &str) -> Result<Vec<GridMove>> {
        let c = self.client().await?;
        let sql = format!("SELECT {MOVE_COLUMNS} FROM grid_moves WHERE doc_id = $1 ORDER BY seq");
        read_moves(&c.query(&sql, &[&doc_id]).await?)
    }

    async fn moves_into(&self, grid_id: &str, after: u64, up_to: u64) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT doc_id FROM grid_moves WHERE to_grid = $1 AND seq > $2 AND seq <= $3
                 ORDER BY seq",
                &[&grid_id, &(after as i64), &(up_to as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn moves_after(&self, after: u64, limit: usize) -> Result<Vec<GridMove>> {
        let c = self.client().await?;
        let sql =
            format!("SELECT {MOVE_COLUMNS} FROM grid_moves WHERE seq > $1 ORDER BY seq LIMIT $2");
        read_moves(&c.query(&sql, &[&(after as i64), &(limit as i64)]).await?)
    }
}

#[async_trait]
impl Commits for PostgresStorage {
    async fn commit(&self, commit: Commit) -> Result<u64> {
        let now = now_millis();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Seqs are allocated in the order commits take this lock, and it is held until the
        // commit is visible: seq order is commit order, across every relay on the database.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
            .await?;
        self.check_fresh(&tx, &commit).await?;
        // Every change in one statement, in the commit's order: seqs follow it.
        if !commit.changes.is_empty() {
            let column =
                |f: fn(&NewChange) -> &str| -> Vec<&str> { commit.changes.iter().map(f).collect() };
            let hashes: Vec<&[u8]> = commit.changes.iter().map(|c| c.hash.as_slice()).collect();
            let bytes: Vec<&[u8]> = commit.changes.iter().map(NewChange::stored_bytes).collect();
            let sizes: Vec<Option<i64>> =
                commit.changes.iter().map(NewChange::stored_size).collect();
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO log (grid_id, doc_id, kind, hash, bytes, device_id, worker_id,
                        received_at, size)
                     SELECT g, d, k, h, b, dv, w, $8, n
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[],
                                 $6::text[], $7::text[], $9::int8[])
                          WITH ORDINALITY AS c(g, d, k, h, b, dv, w, n, i)
                     ORDER BY i
                     ON CONFLICT (hash) DO NOTHING",
                )
                .await?,
                &[
                    &column(|c| &c.grid_id),
                    &column(|c| &c.doc_id),
                    &column(|c| kind_text(c.kind)),
                    &hashes,
                    &bytes,
                    &column(|c| &c.device_id),
                    &column(|c| &c.worker_id),
                    &now,
                    &sizes,
                ],
            )
            .await?;
        }
        let last: i64 = tx
            .query_one("SELECT COALESCE(MAX(seq), 0) FROM log", &[])
            .await?
            .get(0);
        // The documents' statements are pipelined on the connection (one round trip for the
        // lot, not one per statement); each document's run in its order.
        futures_util::future::try_join_all(
            commit.docs.iter().map(|d| write_doc(&tx, d, last, &now)),
        )
        .await?;
        for m in &commit.moves {
            commit_move(&tx, m, &now).await?;
        }
        // Delivered by PostgreSQL once the commit is durable, to every relay listening.
        let notices = self.notices(&commit, last as u64);
        if !notices.is_empty() {
            tx.execute(
                "SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n",
                &[&LOG_CHANNEL, &notices],
            )
            .await?;
        }
        tx.commit().await?;
        self.note_bases(commit.docs.iter().map(|d| &d.doc_id), last);
        Ok(last as u64)
    }
}

#[async_trait]
impl Queries for PostgresStorage {
    async fn store_bytes(&self) -> Result<Option<u64>> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await?;
        Ok(Some(row.get::<_, i64>(0) as u64))
    }

    async fn record_counts(&self) -> Result<Vec<RecordCount>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT grid_id, kind, status, COUNT(*) FROM records WHERE NOT deleted
                 GROUP BY grid_id, kind, status ORDER BY grid_id, kind, status",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| RecordCount {
                grid_id: r.get(0),
                kind: r.get(1),
                status: r.get(2),
                count: r.get::<_, i64>(3) as u64,
            })
            .collect())
    }

    async fn list_records(&self, q: &RecordQuery) -> Result<RecordPage> {
        let c = self.client().await?;
        query::list_records(&c, q).await
    }

    async fn tally(&self, q: &RecordQuery) -> Result<Vec<Tally>> {
        let mut c = self.client().await?;
        query::tally(&mut c, q).await
    }

    async fn grid_counts(
        &self,
        q: &RecordQuery,
        overdue_before: &[(String, String)],
    ) -> Result<Vec<GridCount>> {
        let mut c = self.client().await?;
        query::grid_counts(&mut c, q, overdue_before).await
    }

    async fn low_stock_counts(&self, grids: &[String]) -> Result<Vec<(String, u64)>> {
        let c = self.client().await?;
        query::low_stock_counts(&c, grids).await
    }

    async fn change_sources(&self, doc_id: &str) -> Result<Vec<ChangeSource>> {
        let c = self.client().await?;
        query::change_sources(&c, doc_id).await
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
        let c = self.client().await?;
        query::changed_since(&c, grids, kind_names(kinds), after, limit).await
    }

    async fn clear_review(&self, doc_id: &str, seq: u64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE review_flags SET settled_at = $3, settled_seq = $2
             WHERE doc_id = $1 AND last_seq <= $2 AND settled_at IS NULL",
            &[&doc_id, &(seq as i64), &now_millis()],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Attachments for PostgresStorage {
    async fn attachment_uses(&self, hash: &Hash) -> Result<Vec<AttachmentUse>> {
        let c = self.client().await?;
        attachments::uses(&c, hash).await
    }

    async fn doc_attachments(&self, doc_id: &str) -> Result<Vec<DocAttachment>> {
        let c = self.client().await?;
        attachments::of_doc(&c, doc_id).await
    }

    async fn attachment_counts_of(&self, doc_ids: &[String]) -> Result<HashMap<String, usize>> {
        let c = self.client().await?;
        attachments::counts_of(&c, doc_ids).await
    }

    async fn blob_stored(&self, blob: StoredBlob) -> Result<()> {
        let c = self.client().await?;
        attachments::insert_blob(&c, &blob).await
    }

    async fn stored_blob(&self, hash: &Hash) -> Result<Option<StoredBlob>> {
        let c = self.client().await?;
        attachments::blob(&c, hash).await
    }

    async fn device_blob_bytes(&self, device_id: &str) -> Result<u64> {
        let c = self.client().await?;
        attachments::device_bytes(&c, device_id).await
    }

    async fn attachment_counts(&self) -> Result<Vec<AttachmentCount>> {
        let c = self.client().await?;
        attachments::counts(&c).await
    }

    async fn orphan_blobs(&self, now: &str) -> Result<Vec<Orphan>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let out = attachments::orphans(&tx, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn purge_blob(&self, hash: &Hash, unnamed_by: &str, remove: BlobRemoval) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The lock commits take: a commit naming the hash is before the check (it is kept) or
        // after the removal (it is gone), also on another relay or from `admin`.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
            .await?;
        if !attachments::purgeable(&tx, hash, unnamed_by).await? {
            return Ok(false);
        }
        // The bytes first: if the commit fails, the row stays and the next purge retries.
        tokio::task::spawn_blocking(remove)
            .await
            .map_err(|e| StorageError::Disk(format!("removing an attachment failed: {e}")))??;
        attachments::forget(&tx, hash).await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
