//! The SQLite side of `admin migrate`: the store read in one read transaction, on a thread of
//! its own, handed over in batches.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::Value as SqlValue;
use tokio::sync::mpsc;

use super::write::UNIQUE;
use super::{COPIED, Result, SKIPPED};
use crate::admin::AdminError;

/// Rows handed from the reading thread to the writer at a time.
const BATCH: usize = 500;

/// What the reading thread hands over.
pub(super) enum Msg {
    /// The ids a merge checks, read in the same transaction as the rows.
    Keys(Box<Keys>),
    Table {
        name: &'static str,
        columns: Vec<String>,
    },
    Rows(Vec<Vec<SqlValue>>),
    /// Every table sent; SQLite's AUTOINCREMENT counter of the log.
    Done {
        log_counter: i64,
    },
}

#[derive(Default)]
pub(super) struct Keys {
    pub(super) server_id: String,
    /// id → (parent, level, name)
    pub(super) areas: BTreeMap<String, (Option<String>, String, String)>,
    /// Per [`UNIQUE`] entry, the source's values.
    pub(super) unique: Vec<Vec<SqlValue>>,
    /// Every grid the source's log or documents name.
    pub(super) grids: Vec<String>,
    /// The attachments whose bytes the source holds.
    pub(super) blobs: Vec<Vec<u8>>,
}

fn sqlite_err(e: rusqlite::Error) -> AdminError {
    AdminError::Storage(e.into())
}

/// The tables of a SQLite store's schema, SQLite's own included.
pub(super) fn sqlite_tables(c: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

/// The columns of a SQLite table, in order.
pub(super) fn sqlite_columns(
    c: &rusqlite::Connection,
    table: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

/// Refuses a store with a table this relay does not know how to move.
pub(super) fn check_tables(tables: &[String]) -> std::result::Result<(), String> {
    let unknown: Vec<&String> = tables
        .iter()
        .filter(|t| !COPIED.contains(&t.as_str()) && !SKIPPED.iter().any(|(s, _)| s == t))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        let names = unknown
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "存储中有迁移不认识的表 {names}，请用与该服务器同版本的 gridsync-server 迁移 the store has \
             tables migrate does not know: {names}; migrate with the gridsync-server of the \
             relay's own version"
        ))
    }
}

/// The reading thread: everything in one read transaction.
pub(super) fn read_source(path: &Path, send: mpsc::Sender<Msg>) -> Result<()> {
    let mut conn = rusqlite::Connection::open(path).map_err(sqlite_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_err)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
        .map_err(sqlite_err)?;
    // The first read starts the snapshot every later read of this transaction sees.
    let tables = sqlite_tables(&tx).map_err(sqlite_err)?;
    check_tables(&tables).map_err(AdminError::Invalid)?;
    let keys = read_keys(&tx).map_err(sqlite_err)?;
    if send.blocking_send(Msg::Keys(Box::new(keys))).is_err() {
        return Ok(());
    }
    for &name in COPIED {
        let columns = sqlite_columns(&tx, name).map_err(sqlite_err)?;
        let list = columns.join(", ");
        // The log in seq order: a merge numbers its entries anew in that order.
        let order = if name == "log" { " ORDER BY seq" } else { "" };
        let mut stmt = tx
            .prepare(&format!("SELECT {list} FROM {name}{order}"))
            .map_err(sqlite_err)?;
        let width = columns.len();
        if send.blocking_send(Msg::Table { name, columns }).is_err() {
            return Ok(());
        }
        let mut rows = stmt.query([]).map_err(sqlite_err)?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(row) = rows.next().map_err(sqlite_err)? {
            let values = (0..width)
                .map(|i| row.get::<_, SqlValue>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sqlite_err)?;
            batch.push(values);
            if batch.len() == BATCH
                && send
                    .blocking_send(Msg::Rows(std::mem::take(&mut batch)))
                    .is_err()
            {
                return Ok(());
            }
        }
        if !batch.is_empty() && send.blocking_send(Msg::Rows(batch)).is_err() {
            return Ok(());
        }
    }
    let log_counter: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'log'",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite_err)?;
    let _ = send.blocking_send(Msg::Done { log_counter });
    Ok(())
}

fn read_keys(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Keys> {
    let column = |sql: &str| -> rusqlite::Result<Vec<SqlValue>> {
        let mut stmt = tx.prepare(sql)?;
        let values = stmt.query_map([], |r| r.get(0))?;
        values.collect()
    };
    let mut keys = Keys {
        server_id: tx.query_row("SELECT value FROM meta WHERE key = 'server_id'", [], |r| {
            r.get(0)
        })?,
        ..Keys::default()
    };
    let mut stmt = tx.prepare("SELECT id, parent_id, level, name FROM areas")?;
    for row in stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))? {
        let (id, area) = row?;
        keys.areas.insert(id, area);
    }
    for (table, col, _, _) in UNIQUE {
        keys.unique
            .push(column(&format!("SELECT DISTINCT {col} FROM {table}"))?);
    }
    keys.grids = column("SELECT grid_id FROM log UNION SELECT grid_id FROM docs")?
        .into_iter()
        .filter_map(|v| match v {
            SqlValue::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    keys.blobs = column("SELECT hash FROM attachment_blobs")?
        .into_iter()
        .filter_map(|v| match v {
            SqlValue::Blob(b) => Some(b),
            _ => None,
        })
        .collect();
    Ok(keys)
}
