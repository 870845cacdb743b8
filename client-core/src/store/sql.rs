//! SQLite plumbing of the replica: opening, migrations, and the rows every write touches.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::crypt::{self, ReplicaKey};
use crate::error::Result;
use crate::record::{IndexRow, Kind};

/// Numbered migrations; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/001_init.sql"),
    include_str!("../../migrations/002_count_by_status.sql"),
    include_str!("../../migrations/003_attachments.sql"),
    include_str!("../../migrations/004_rowid_docs.sql"),
];

/// The file inside the replica directory.
pub const DB_FILE: &str = "replica.sqlite3";

/// Opens (or creates) the replica's database, with its key when it is encrypted. A key that does
/// not fit is found before anything is written: no migration, no WAL, no leftover removed.
pub fn open(dir: &Path, key: Option<&ReplicaKey>) -> Result<Connection> {
    std::fs::create_dir_all(dir)?;
    crypt::check_fits(dir, key)?;
    if let Some(key) = key {
        crypt::check_key(dir, key)?;
    }
    let mut conn = Connection::open(dir.join(DB_FILE))?;
    if let Some(key) = key {
        crypt::unlock(&conn, key)?;
    }
    crypt::discard_unfinished(dir)?;
    // WAL keeps readers and the writer apart; FULL makes every committed write survive a crash
    // or power loss, which is the promise of "a write that returned is kept".
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    migrate(&mut conn)?;
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

pub fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The snapshot and the changes since it: everything needed to load one document.
pub struct StoredDoc {
    pub snapshot: Option<Vec<u8>>,
    pub changes: Vec<Vec<u8>>,
}

pub fn load_doc(conn: &Connection, doc_id: &str) -> Result<Option<StoredDoc>> {
    let snapshot: Option<Option<Vec<u8>>> = conn
        .query_row(
            "SELECT snapshot FROM docs WHERE doc_id = ?1",
            [doc_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(snapshot) = snapshot else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached("SELECT bytes FROM doc_changes WHERE doc_id = ?1")?;
    let changes = stmt
        .query_map([doc_id], |r| r.get(0))?
        .collect::<Result<Vec<Vec<u8>>, _>>()?;
    Ok(Some(StoredDoc { snapshot, changes }))
}

pub fn ensure_doc(tx: &Transaction<'_>, doc_id: &str, kind: &str, grid_id: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO docs (doc_id, kind, grid_id) VALUES (?1, ?2, ?3)
         ON CONFLICT (doc_id) DO UPDATE SET kind = excluded.kind, grid_id = excluded.grid_id
         WHERE docs.kind = '' OR (excluded.kind <> '' AND docs.grid_id <> excluded.grid_id)",
    )?
    .execute(params![doc_id, kind, grid_id])?;
    Ok(())
}

pub fn insert_change(tx: &Transaction<'_>, doc_id: &str, hash: &[u8], bytes: &[u8]) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO doc_changes (doc_id, hash, bytes) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![doc_id, hash, bytes])?;
    Ok(())
}

pub fn changes_since_snapshot(conn: &Connection, doc_id: &str) -> Result<usize> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM doc_changes WHERE doc_id = ?1")?
        .query_row([doc_id], |r| r.get::<_, i64>(0))? as usize)
}

/// Replaces a document's incremental changes by one snapshot.
pub fn compact(tx: &Transaction<'_>, doc_id: &str, snapshot: &[u8]) -> Result<()> {
    tx.prepare_cached("UPDATE docs SET snapshot = ?2 WHERE doc_id = ?1")?
        .execute(params![doc_id, snapshot])?;
    tx.prepare_cached("DELETE FROM doc_changes WHERE doc_id = ?1")?
        .execute([doc_id])?;
    Ok(())
}

pub fn upsert_index(tx: &Transaction<'_>, row: &IndexRow, heads: &[u8]) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO records (doc_id, kind, grid_id, household_id, status, assigned_to, due_at,
                              title, created_at, updated_at, deleted, has_conflicts, heads)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (doc_id) DO UPDATE SET
            kind = excluded.kind, grid_id = excluded.grid_id,
            household_id = excluded.household_id, status = excluded.status,
            assigned_to = excluded.assigned_to, due_at = excluded.due_at, title = excluded.title,
            created_at = excluded.created_at, updated_at = excluded.updated_at,
            deleted = excluded.deleted, has_conflicts = excluded.has_conflicts,
            heads = excluded.heads",
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
        heads,
    ])?;
    Ok(())
}

pub const INDEX_COLUMNS: &str = "doc_id, kind, grid_id, household_id, status, assigned_to, due_at, \
                                 title, created_at, updated_at, deleted, has_conflicts";

pub fn index_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IndexRow> {
    let kind: String = r.get(1)?;
    Ok(IndexRow {
        id: r.get(0)?,
        kind: kind.parse().unwrap_or(Kind::Household),
        grid_id: r.get(2)?,
        household_id: r.get(3)?,
        status: r.get(4)?,
        assigned_to: r.get(5)?,
        due_at: r.get(6)?,
        title: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        deleted: r.get(10)?,
        has_conflicts: r.get(11)?,
    })
}
