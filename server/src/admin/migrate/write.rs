//! The PostgreSQL side of `admin migrate`: one transaction under the log's lock, the clash
//! checks of a merge before anything is written, then each table by `COPY`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rusqlite::types::Value as SqlValue;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::blobs::{copy_blobs, missing_blobs, same_dir};
use super::read::{Keys, Msg};
use super::{BlobCopy, COPIED, Migrated, Result, SEQ_COLUMNS};
use crate::admin::AdminError;
use crate::storage::postgres::LOG_LOCK;

/// What must not be in the target already for a merge: table, column, what it is in words, and
/// whether the refusal names the values (not a hash of a secret: those are only counted).
/// The areas are checked apart ([`area_clashes`]): the same county or street is shared.
pub(super) const UNIQUE: &[(&str, &str, &str, bool)] = &[
    ("users", "id", "用户编号 user id", true),
    ("users", "username", "用户名 username", true),
    ("devices", "id", "设备 device", true),
    ("devices", "token_hash", "设备令牌 device token", false),
    (
        "device_actors",
        "actor",
        "设备的 Automerge 身份 device actor",
        true,
    ),
    ("sessions", "id_hash", "网页会话 browser session", false),
    ("api_tokens", "id", "接口令牌 API token", true),
    (
        "api_tokens",
        "token_hash",
        "接口令牌的密钥 API token secret",
        false,
    ),
    ("docs", "doc_id", "记录 record", true),
    ("records", "doc_id", "记录 record", true),
    ("record_facts", "doc_id", "记录 record", true),
    ("review_flags", "doc_id", "记录 record", true),
    // Only the same document has the same change, but a damaged store could say otherwise.
    ("log", "hash", "日志中的修改 change in the log", false),
];

/// Ids sent to PostgreSQL in one clash query.
const CHUNK: usize = 5_000;
/// Clashing ids named in the refusal, per kind (the count says how many more).
const NAMED: usize = 20;

/// Whether the target holds any of the relay's rows (its own server id aside).
async fn holds_rows(tx: &tokio_postgres::Transaction<'_>) -> Result<bool> {
    for table in COPIED.iter().filter(|t| **t != "meta") {
        let row = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await
            .map_err(crate::storage::StorageError::from)?;
        if row.get::<_, bool>(0) {
            return Ok(true);
        }
    }
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM meta WHERE key <> 'server_id')",
            &[],
        )
        .await
        .map_err(crate::storage::StorageError::from)?;
    Ok(row.get(0))
}

/// The values of `values` that `table.column` holds already in the target.
async fn present(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    column: &str,
    values: &[SqlValue],
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let texts: Vec<String> = values
        .iter()
        .filter_map(|v| match v {
            SqlValue::Text(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let blobs: Vec<Vec<u8>> = values
        .iter()
        .filter_map(|v| match v {
            SqlValue::Blob(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    let sql = format!("SELECT {column} FROM {table} WHERE {column} = ANY($1)");
    for chunk in texts.chunks(CHUNK) {
        let rows = tx
            .query(&sql, &[&chunk])
            .await
            .map_err(crate::storage::StorageError::from)?;
        found.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    for chunk in blobs.chunks(CHUNK) {
        let rows = tx
            .query(&sql, &[&chunk])
            .await
            .map_err(crate::storage::StorageError::from)?;
        found.extend(rows.iter().map(|r| hex::encode(r.get::<_, Vec<u8>>(0))));
    }
    Ok(found)
}

/// Areas of the source the target has: shared if the same county or street (same id, parent,
/// level and name), else clashes. Returns (shared, clashing).
async fn area_clashes(
    tx: &tokio_postgres::Transaction<'_>,
    keys: &Keys,
) -> Result<(Vec<String>, Vec<String>)> {
    let ids: Vec<String> = keys.areas.keys().cloned().collect();
    let rows = tx
        .query(
            "SELECT id, parent_id, level, name FROM areas WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await
        .map_err(crate::storage::StorageError::from)?;
    let (mut shared, mut clashing) = (Vec::new(), Vec::new());
    for r in rows {
        let id: String = r.get(0);
        let theirs: (Option<String>, String, String) = (r.get(1), r.get(2), r.get(3));
        let same = keys.areas.get(&id) == Some(&theirs);
        if same && (theirs.1 == "county" || theirs.1 == "street") {
            shared.push(id);
        } else {
            clashing.push(id);
        }
    }
    Ok((shared, clashing))
}

/// Everything a merge would clash on, in words; empty if nothing. Also the shared areas.
async fn clashes(
    tx: &tokio_postgres::Transaction<'_>,
    keys: &Keys,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut found: Vec<(&str, bool, Vec<String>)> = Vec::new();
    let (shared, areas) = area_clashes(tx, keys).await?;
    found.push(("区域 area", true, areas));
    // A grid the target's log or documents name, even without an area of that id.
    let grids: Vec<SqlValue> = keys.grids.iter().cloned().map(SqlValue::Text).collect();
    let mut in_use = present(tx, "docs", "grid_id", &grids).await?;
    in_use.extend(present(tx, "log", "grid_id", &grids).await?);
    found.push(("网格 grid", true, in_use));
    for ((table, column, what, named), values) in UNIQUE.iter().zip(&keys.unique) {
        found.push((what, *named, present(tx, table, column, values).await?));
    }
    let mut merged: BTreeMap<&str, (bool, Vec<String>)> = BTreeMap::new();
    for (what, named, mut ids) in found {
        let entry = merged.entry(what).or_insert((named, Vec::new()));
        entry.1.append(&mut ids);
        entry.1.sort();
        entry.1.dedup();
    }
    let words = merged
        .into_iter()
        .filter(|(_, (_, ids))| !ids.is_empty())
        .map(|(what, (named, ids))| {
            if !named {
                return format!("{what}: {} 个 ({})", ids.len(), ids.len());
            }
            let more = ids.len().saturating_sub(NAMED);
            let mut named = ids.into_iter().take(NAMED).collect::<Vec<_>>().join(", ");
            if more > 0 {
                named.push_str(&format!(" …（另有 {more} 个 and {more} more）"));
            }
            format!("{what}: {named}")
        })
        .collect();
    Ok((shared, words))
}

/// A log seq of the source as the target numbers it: the new seq of the newest source entry at
/// or below it (0 below them all). An entry's own seq maps to its new seq; a snapshot's or
/// flag's seq keeps its place among the document's entries.
struct Renumber {
    /// `None` in an exact copy: seqs are kept.
    base: Option<i64>,
    old: Vec<i64>,
}

impl Renumber {
    fn map(&self, seq: i64) -> i64 {
        match self.base {
            None => seq,
            Some(base) => match self.old.partition_point(|&o| o <= seq) {
                0 => 0,
                n => base + n as i64 - 1,
            },
        }
    }
}

/// A value as PostgreSQL takes it, typed as the column it goes to.
#[derive(Debug)]
pub(super) enum PgValue {
    Int8(Option<i64>),
    Int4(Option<i32>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Float8(Option<f64>),
}

impl PgValue {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            PgValue::Int8(v) => v,
            PgValue::Int4(v) => v,
            PgValue::Bool(v) => v,
            PgValue::Text(v) => v,
            PgValue::Bytes(v) => v,
            PgValue::Float8(v) => v,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            PgValue::Int8(v) => *v,
            _ => None,
        }
    }
}

/// A SQLite value converted to the PostgreSQL type of its column; a value that does not fit is
/// an error naming the column (a damaged or hand-edited store), not a silent change.
pub(super) fn convert(
    table: &str,
    column: &str,
    ty: &Type,
    v: SqlValue,
) -> std::result::Result<PgValue, String> {
    let bad = |v: &SqlValue| {
        format!(
            "{table}.{column} 的值 {v:?} 无法转换为 {ty} the value {v:?} of {table}.{column} does \
             not fit PostgreSQL's {ty}"
        )
    };
    Ok(match *ty {
        Type::INT8 => PgValue::Int8(match v {
            SqlValue::Null => None,
            SqlValue::Integer(i) => Some(i),
            other => return Err(bad(&other)),
        }),
        Type::INT4 => PgValue::Int4(match v {
            SqlValue::Null => None,
            SqlValue::Integer(i) => Some(i32::try_from(i).map_err(|_| bad(&v))?),
            other => return Err(bad(&other)),
        }),
        Type::BOOL => PgValue::Bool(match v {
            SqlValue::Null => None,
            SqlValue::Integer(0) => Some(false),
            SqlValue::Integer(1) => Some(true),
            other => return Err(bad(&other)),
        }),
        Type::TEXT | Type::VARCHAR => PgValue::Text(match v {
            SqlValue::Null => None,
            SqlValue::Text(t) => Some(t),
            other => return Err(bad(&other)),
        }),
        Type::BYTEA => PgValue::Bytes(match v {
            SqlValue::Null => None,
            SqlValue::Blob(b) => Some(b),
            other => return Err(bad(&other)),
        }),
        Type::FLOAT8 => PgValue::Float8(match v {
            SqlValue::Null => None,
            SqlValue::Real(f) => Some(f),
            SqlValue::Integer(i) => Some(i as f64),
            other => return Err(bad(&other)),
        }),
        _ => {
            return Err(format!(
                "迁移不认识 {table}.{column} 的类型 {ty} migrate does not know PostgreSQL's type \
                 {ty} of {table}.{column}"
            ));
        }
    })
}

/// The refusal of a merge, naming what clashes.
fn refused(clashing: &[String]) -> AdminError {
    AdminError::Invalid(format!(
        "目标数据库中已有下列编号，未写入任何内容（各社区的编号须在全县唯一）the target database \
         holds these already; nothing was written (ids must be unique across the county):\n{}",
        clashing.join("\n")
    ))
}

/// The writer: the clash checks first (without the log's lock), then the attachments' files,
/// then one transaction under the lock that checks again and copies every table.
pub(super) async fn write_target(
    client: &mut tokio_postgres::Client,
    recv: &mut mpsc::Receiver<Msg>,
    from: &Path,
    blobs_to: Option<&Path>,
) -> Result<Migrated> {
    let db = crate::storage::StorageError::from;
    let Some(Msg::Keys(keys)) = recv.recv().await else {
        return Err(ended());
    };
    {
        // Refused before any file is copied, and without holding up the relays serving the
        // target while the files are.
        let early = client.transaction().await.map_err(db)?;
        if holds_rows(&early).await? {
            let (_, clashing) = clashes(&early, &keys).await?;
            if !clashing.is_empty() {
                return Err(refused(&clashing));
            }
        }
    }
    // The files before the commit: once the target names the attachments, their bytes are
    // where the relay on it looks. A merge refused after this (ids taken meanwhile) leaves
    // copies no record names; a later try finds them there.
    let blobs = match blobs_to.filter(|to| !same_dir(from, to)) {
        Some(to) => {
            let (from, to, hashes) = (from.to_path_buf(), to.to_path_buf(), keys.blobs.clone());
            tokio::task::spawn_blocking(move || copy_blobs(&from, &to, &hashes))
                .await
                .map_err(|e| AdminError::Invalid(format!("the copying task failed: {e}")))??
        }
        None => BlobCopy {
            missing: missing_blobs(from, &keys.blobs),
            ..BlobCopy::default()
        },
    };

    let tx = client.transaction().await.map_err(db)?;
    // Before the first seq, as every commit: seq order stays commit order for relays serving
    // the target meanwhile (their commits wait for this one).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
        .await
        .map_err(db)?;
    // The tallies are counted once at the end, not row by row (postgres/004_tallies.sql).
    tx.execute("SET LOCAL gridsync.bulk = 'on'", &[])
        .await
        .map_err(db)?;
    let merged = holds_rows(&tx).await?;
    let target_id: String = tx
        .query_one("SELECT value FROM meta WHERE key = 'server_id'", &[])
        .await
        .map_err(db)?
        .get(0);
    let mut shared_areas = Vec::new();
    let mut existing_blobs: HashSet<Vec<u8>> = HashSet::new();
    if merged {
        let (shared, clashing) = clashes(&tx, &keys).await?;
        if !clashing.is_empty() {
            return Err(refused(&clashing));
        }
        shared_areas = shared;
        // The same photo stored by both: the target's row stays, its bytes are the same.
        let blobs: Vec<SqlValue> = keys.blobs.iter().cloned().map(SqlValue::Blob).collect();
        existing_blobs = present(&tx, "attachment_blobs", "hash", &blobs)
            .await?
            .into_iter()
            .filter_map(|h| hex::decode(h).ok())
            .collect();
    }
    let mut renumber = Renumber {
        base: None,
        old: Vec::new(),
    };
    // A target whose log is empty (the county made its areas and accounts, no community has
    // moved in yet) takes the seqs as they are: devices keep their cursors there too.
    let target_log: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM log)", &[])
        .await
        .map_err(db)?
        .get(0);
    if target_log {
        // Past every seq the target ever handed out (and nobody takes one while we hold the
        // log's lock).
        let next: i64 = tx
            .query_one("SELECT nextval(pg_get_serial_sequence('log', 'seq'))", &[])
            .await
            .map_err(db)?
            .get(0);
        renumber.base = Some(next);
    }
    if !merged {
        // The copy's server id replaces the one the target made for itself.
        tx.execute("DELETE FROM meta", &[]).await.map_err(db)?;
    }

    let mut rows: Vec<(&'static str, u64)> = Vec::new();
    let mut max_seq = 0i64;
    let mut pending = recv.recv().await;
    let log_counter = loop {
        let (name, columns) = match pending.take() {
            Some(Msg::Table { name, columns }) => (name, columns),
            Some(Msg::Done { log_counter }) => break log_counter,
            _ => return Err(ended()),
        };
        let list = columns.join(", ");
        let probe = tx
            .prepare(&format!("SELECT {list} FROM {name} LIMIT 0"))
            .await
            .map_err(|e| {
                AdminError::Invalid(format!(
                    "PostgreSQL 的表 {name} 与 SQLite 的不符 the PostgreSQL table {name} does not \
                     have SQLite's columns ({list}): {}",
                    db(e)
                ))
            })?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        let seq_cols: Vec<bool> = columns
            .iter()
            .map(|c| SEQ_COLUMNS.contains(&(name, c.as_str())))
            .collect();
        let position = |col: &str| columns.iter().position(|c| c == col);
        let (area_id, blob_hash, meta_key) = (position("id"), position("hash"), position("key"));
        let skip = |row: &[SqlValue]| match name {
            "areas" => area_id.is_some_and(
                |i| matches!(&row[i], SqlValue::Text(id) if shared_areas.contains(id)),
            ),
            "attachment_blobs" => blob_hash.is_some_and(
                |i| matches!(&row[i], SqlValue::Blob(h) if existing_blobs.contains(h)),
            ),
            // A merge keeps the target's server id.
            "meta" => {
                merged
                    && meta_key
                        .is_some_and(|i| matches!(&row[i], SqlValue::Text(k) if k == "server_id"))
            }
            _ => false,
        };
        let sink = tx
            .copy_in(&format!("COPY {name} ({list}) FROM STDIN BINARY"))
            .await
            .map_err(db)?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        let mut written = 0u64;
        let mut next = recv.recv().await;
        while let Some(Msg::Rows(batch)) = next {
            for row in batch {
                if skip(&row) {
                    continue;
                }
                let mut values = Vec::with_capacity(row.len());
                for (i, v) in row.into_iter().enumerate() {
                    let mut value =
                        convert(name, &columns[i], &types[i], v).map_err(AdminError::Invalid)?;
                    if seq_cols[i]
                        && let Some(old) = value.as_i64()
                    {
                        let new = if name == "log" {
                            renumber.old.push(old);
                            let new = renumber
                                .base
                                .map_or(old, |b| b + renumber.old.len() as i64 - 1);
                            max_seq = max_seq.max(new);
                            new
                        } else {
                            renumber.map(old)
                        };
                        value = PgValue::Int8(Some(new));
                    }
                    values.push(value);
                }
                let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(PgValue::as_sql).collect();
                writer.as_mut().write(&refs).await.map_err(db)?;
                written += 1;
            }
            next = recv.recv().await;
        }
        writer.as_mut().finish().await.map_err(db)?;
        rows.push((name, written));
        pending = next;
    };

    // The log's sequence past every copied seq: the relay's next entry comes after them.
    let top = if renumber.base.is_some() {
        max_seq
    } else {
        max_seq.max(log_counter)
    };
    if top > 0 {
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('log', 'seq'), $1)",
            &[&top],
        )
        .await
        .map_err(db)?;
    }
    // No commit can run meanwhile (the log's lock), so the tallies counted over every record
    // are the triggers' from here on.
    tx.batch_execute(crate::storage::postgres::RECOUNT_TALLIES)
        .await
        .map_err(db)?;
    if !existing_blobs.is_empty() {
        // A photo the target had found unnamed is named again, by the moved records.
        let hashes: Vec<Vec<u8>> = existing_blobs.iter().cloned().collect();
        tx.execute(
            "UPDATE attachment_blobs b SET orphaned_at = NULL
             WHERE b.hash = ANY($1) AND b.orphaned_at IS NOT NULL
               AND EXISTS (SELECT 1 FROM attachment_refs r WHERE r.hash = b.hash)",
            &[&hashes],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Migrated {
        merged,
        server_id: if merged {
            target_id
        } else {
            keys.server_id.clone()
        },
        source_server_id: keys.server_id.clone(),
        rows,
        renumbered: renumber
            .base
            .filter(|_| !renumber.old.is_empty())
            .map(|base| (base, max_seq)),
        keeps_cursors: renumber.base.is_none(),
        shared_areas,
        blobs,
    })
}

fn ended() -> AdminError {
    AdminError::Invalid("读取 SQLite 存储时中断 reading the SQLite store ended early".into())
}
