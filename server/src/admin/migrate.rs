//! `gridsync-server admin migrate --from DIR --to postgres://…`: a community's SQLite relay moved
//! into the county's PostgreSQL database, every table of its store, so that its devices go on.
//!
//! The SQLite store is read in one read transaction (a consistent snapshot) by a thread of its
//! own, which hands rows over in batches; PostgreSQL is written in one transaction with `COPY`
//! (binary), values converted column by column to the type the PostgreSQL schema declares. A
//! failure anywhere rolls the whole transaction back: the target is as it was.
//!
//! Two cases, told apart by whether the target holds any row already (its own `server_id` in
//! `meta` aside):
//! - **Into an empty database: an exact copy.** Log seqs are kept (and the log's sequence set
//!   past them) and so is the server id, so a device's cursors and witnesses are vouched for as
//!   before: it syncs on with no repair.
//! - **Into a database that holds other communities: a merge.** Every id that would clash (an
//!   area that is not the same county or street, a user id or name, a device, an actor, a
//!   browser session, an API token, a document) is refused before anything is written. Log
//!   entries get new seqs after the target's, in the source's order, and every column holding
//!   a seq is renumbered with them; the target's server id stays. A moved device's cursor then
//!   names an entry the relay does not hold at that seq, so the relay does not vouch for it and
//!   the grid is repaired (docs/protocol.md §5, §7): the device gets everything and gives back
//!   what the relay lacks, as after `admin restore`.
//!
//! The commit holds the log's advisory lock ([`LOG_LOCK`]) from before its first seq to its end,
//! as every relay's commit does, so seq order stays commit order for relays serving the target.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::types::Value as SqlValue;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::AdminError;
use crate::storage::blobs::ATTACHMENTS_DIR;
use crate::storage::postgres::LOG_LOCK;
use crate::storage::{DB_FILE, DirLock, PostgresStorage, SqliteStorage};

type Result<T> = std::result::Result<T, AdminError>;

/// Every table of the SQLite schema that is copied, in an order that writes what a foreign key
/// names before what names it (the log before the tables whose seqs point into it).
pub(crate) const COPIED: &[&str] = &[
    "meta",
    "areas",
    "users",
    "user_areas",
    "former_grids",
    "devices",
    "device_actors",
    "sessions",
    "dashboard_devices",
    "api_tokens",
    "api_token_areas",
    "log",
    "docs",
    "records",
    "record_facts",
    "review_flags",
    "grid_moves",
    "attachment_refs",
    "attachment_blobs",
];

/// Tables of the SQLite schema deliberately not copied, and why. A table in neither list (a
/// later migration's) makes `migrate` refuse, and its test fail, until it is placed.
pub(crate) const SKIPPED: &[(&str, &str)] = &[(
    "sqlite_sequence",
    "SQLite's own counter behind the log's AUTOINCREMENT: the log's PostgreSQL sequence is set \
     past the copied seqs (and past this counter) instead",
)];

/// Columns that hold a log seq: renumbered with the log in a merge. A column named `*seq*`
/// that is not here fails the schema test.
pub(crate) const SEQ_COLUMNS: &[(&str, &str)] = &[
    ("log", "seq"),
    ("docs", "snapshot_seq"),
    ("records", "updated_seq"),
    ("review_flags", "first_seq"),
    ("review_flags", "last_seq"),
    ("review_flags", "settled_seq"),
    ("grid_moves", "seq"),
];

/// What must not be in the target already for a merge: table, column, and what it is in words.
/// The areas are checked apart ([`area_clashes`]): the same county or street is shared.
const UNIQUE: &[(&str, &str, &str)] = &[
    ("users", "id", "用户编号 user id"),
    ("users", "username", "用户名 username"),
    ("devices", "id", "设备 device"),
    ("devices", "token_hash", "设备令牌 device token"),
    (
        "device_actors",
        "actor",
        "设备的 Automerge 身份 device actor",
    ),
    ("sessions", "id_hash", "网页会话 browser session"),
    ("api_tokens", "id", "接口令牌 API token"),
    (
        "api_tokens",
        "token_hash",
        "接口令牌 API token (its secret)",
    ),
    ("docs", "doc_id", "记录 record"),
    ("records", "doc_id", "记录 record"),
    ("record_facts", "doc_id", "记录 record"),
    ("review_flags", "doc_id", "记录 record"),
];

/// Rows handed from the reading thread to the writer at a time.
const BATCH: usize = 500;
/// Ids sent to PostgreSQL in one clash query.
const CHUNK: usize = 5_000;
/// Clashing ids named in the refusal, per kind (the count says how many more).
const NAMED: usize = 20;

/// What `admin migrate` did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The target held other communities: merged, seqs renumbered, devices repair.
    pub merged: bool,
    /// The server id the relay on the target answers with (the source's in a copy).
    pub server_id: String,
    pub source_server_id: String,
    /// Rows written per table, in [`COPIED`]'s order.
    pub rows: Vec<(&'static str, u64)>,
    /// In a merge: the seqs the log's entries now have (first, last).
    pub renumbered: Option<(i64, i64)>,
    /// Areas the target had already, identical (a shared county or street): not written.
    pub shared_areas: Vec<String>,
    pub blobs: BlobCopy,
}

/// What became of the attachments' bytes.
#[derive(Debug, Clone, Default)]
pub struct BlobCopy {
    /// Where they were copied to; `None` when they stay under `--from`.
    pub to: Option<PathBuf>,
    pub copied: u64,
    pub bytes: u64,
    /// Already there with the same name and size (a name is the SHA-256 of the bytes).
    pub identical: u64,
    /// Named in the store but absent under `--from` (purged, or lost): nothing to copy.
    pub missing: Vec<String>,
}

impl Migrated {
    fn count(&self, table: &str) -> u64 {
        self.rows
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }

    /// The summary `admin migrate` prints, zh-CN first.
    pub fn report(&self) -> String {
        let (records, log, users, devices, blobs) = (
            self.count("docs"),
            self.count("log"),
            self.count("users"),
            self.count("devices"),
            self.count("attachment_blobs"),
        );
        let mut lines = Vec::new();
        if self.merged {
            let seqs = match self.renumbered {
                Some((first, last)) => format!("{first}–{last}"),
                None => "-".into(),
            };
            lines.push(format!(
                "已并入已有数据库：记录 {records} 条，日志 {log} 条（重新编号为 {seqs}），用户 {users} 个，\
                 设备 {devices} 台，附件 {blobs} 个。服务器编号为该数据库原有的 {}：本社区的设备下次同步时\
                 自动修复各网格，不丢数据，无需重新登录。",
                self.server_id
            ));
            lines.push(format!(
                "merged into a database holding other communities: {records} records, {log} log \
                 entries (renumbered {seqs}), {users} users, {devices} devices, {blobs} \
                 attachments. The server id stays the database's own, {} (this relay's was {}): \
                 the community's devices repair their grids at their next sync, stay signed in \
                 and lose nothing.",
                self.server_id, self.source_server_id
            ));
        } else {
            lines.push(format!(
                "已原样复制到空数据库：记录 {records} 条，日志 {log} 条，用户 {users} 个，设备 {devices} 台，\
                 附件 {blobs} 个。服务器编号保持 {}：设备保留同步位置，无需修复，无需重新登录。",
                self.server_id
            ));
            lines.push(format!(
                "copied into an empty database: {records} records, {log} log entries, {users} \
                 users, {devices} devices, {blobs} attachments. The server id is kept, {}: \
                 devices keep their cursors and sync on with no repair, signed in as before.",
                self.server_id
            ));
        }
        if !self.shared_areas.is_empty() {
            let shared = self.shared_areas.join(", ");
            lines.push(format!(
                "共用已有的区域 {shared} shares the areas the database had already: {shared}"
            ));
        }
        let b = &self.blobs;
        lines.push(match &b.to {
            Some(to) => format!(
                "附件文件：已复制 {} 个（{} 字节）到 {}，相同已跳过 {} 个 attachments' files: {} \
                 copied ({} bytes) to {}, {} already there",
                b.copied,
                b.bytes,
                to.display(),
                b.identical,
                b.copied,
                b.bytes,
                to.display(),
                b.identical
            ),
            None => "附件文件留在原数据目录：PostgreSQL 上的服务器须以同一 --data-dir 运行 \
                     attachments' files stay in the data directory: run the relay on PostgreSQL \
                     with the same --data-dir (or give admin --data-dir to copy them)"
                .to_string(),
        });
        if !b.missing.is_empty() {
            lines.push(format!(
                "原数据目录中缺少 {} 个附件文件（设备会重新上传自己的）{} attachments' files were \
                 not in the data directory (devices upload their own again): {}",
                b.missing.len(),
                b.missing.len(),
                b.missing.join(", ")
            ));
        }
        lines.push("表 table\t行 rows".to_string());
        for (table, n) in &self.rows {
            lines.push(format!("{table}\t{n}"));
        }
        lines.join("\n")
    }
}

/// What the reading thread hands over.
enum Msg {
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
struct Keys {
    server_id: String,
    /// id → (parent, level, name)
    areas: BTreeMap<String, (Option<String>, String, String)>,
    /// Per [`UNIQUE`] entry, the source's values.
    unique: Vec<Vec<SqlValue>>,
    /// Every grid the source's log or documents name.
    grids: Vec<String>,
    /// The attachments whose bytes the source holds.
    blobs: Vec<Vec<u8>>,
}

/// Runs `admin migrate`: the store in `from` into the PostgreSQL database `to`; the attachments'
/// files copied into `blobs_to` when given and not `from` itself.
pub async fn migrate(from: &Path, to: &str, blobs_to: Option<&Path>) -> Result<Migrated> {
    if !crate::storage::postgres::is_postgres_url(to) {
        return Err(AdminError::Invalid(format!(
            "--to 须为 PostgreSQL 地址 postgres://…，而不是 {to} --to takes a PostgreSQL URL, \
             postgres://user@host:port/name"
        )));
    }
    if !from.join(DB_FILE).is_file() {
        return Err(AdminError::Invalid(format!(
            "{} 中没有服务器数据（{DB_FILE}） there is no relay store ({DB_FILE}) in {}",
            from.display(),
            from.display()
        )));
    }
    // Brings an older store's schema up to date (the relay would at its next start), then
    // lets go of it: the exclusive lock below is refused while anyone holds it shared.
    let opened = {
        let from = from.to_path_buf();
        tokio::task::spawn_blocking(move || SqliteStorage::open(&from).map(drop))
            .await
            .map_err(|e| AdminError::Invalid(format!("the task failed: {e}")))?
    };
    opened.map_err(|e| {
        AdminError::Invalid(format!(
            "无法打开 cannot open the store in {}: {e}",
            from.display()
        ))
    })?;
    // Held to the end: no relay starts on `from` while it is read and its files copied.
    let lock = DirLock::exclusive(from).map_err(|_| in_use(from))?;
    // The target's schema, as a relay starting on it would make it.
    drop(PostgresStorage::connect(to).await?);
    let (mut client, connection) = tokio_postgres::connect(to, NoTls)
        .await
        .map_err(crate::storage::StorageError::from)?;
    let connection = tokio::spawn(connection);

    let (send, mut recv) = mpsc::channel::<Msg>(4);
    let path = from.join(DB_FILE);
    let reader = tokio::task::spawn_blocking(move || read_source(&path, send));
    let written = write_target(&mut client, &mut recv, from, blobs_to).await;
    // The reader stops at its next send once the receiver is gone.
    drop(recv);
    let read = reader
        .await
        .map_err(|e| AdminError::Invalid(format!("the reading task failed: {e}")))?;
    drop(client);
    let _ = connection.await;
    drop(lock);
    // A read error explains a write that ended early better than the write's own error.
    read?;
    written
}

fn in_use(dir: &Path) -> AdminError {
    AdminError::Invalid(format!(
        "服务器或管理命令正在使用 {}，请先停止服务器（如 systemctl stop gridsync）再迁移，未做任何改动 \
         the store in {} is in use by a running relay or admin command: stop the relay first; \
         nothing was changed",
        dir.display(),
        dir.display()
    ))
}

fn sqlite_err(e: rusqlite::Error) -> AdminError {
    AdminError::Storage(e.into())
}

/// The tables of a SQLite store's schema, SQLite's own included.
pub(crate) fn sqlite_tables(c: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

/// The columns of a SQLite table, in order.
pub(crate) fn sqlite_columns(
    c: &rusqlite::Connection,
    table: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
}

/// Refuses a store with a table this relay does not know how to move.
pub(crate) fn check_tables(tables: &[String]) -> std::result::Result<(), String> {
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
fn read_source(path: &Path, send: mpsc::Sender<Msg>) -> Result<()> {
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
    for (table, col, _) in UNIQUE {
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
    let mut found: Vec<(&str, Vec<String>)> = Vec::new();
    let (shared, areas) = area_clashes(tx, keys).await?;
    found.push(("区域 area", areas));
    // A grid the target's log or documents name, even without an area of that id.
    let grids: Vec<SqlValue> = keys.grids.iter().cloned().map(SqlValue::Text).collect();
    let mut in_use = present(tx, "docs", "grid_id", &grids).await?;
    in_use.extend(present(tx, "log", "grid_id", &grids).await?);
    found.push(("网格 grid", in_use));
    for ((table, column, what), values) in UNIQUE.iter().zip(&keys.unique) {
        found.push((what, present(tx, table, column, values).await?));
    }
    let mut merged: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (what, mut ids) in found {
        let entry = merged.entry(what).or_default();
        entry.append(&mut ids);
        entry.sort();
        entry.dedup();
    }
    let words = merged
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(what, ids)| {
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
enum PgValue {
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
fn convert(
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

/// The writer: one transaction, committed only once every table and file is in place.
async fn write_target(
    client: &mut tokio_postgres::Client,
    recv: &mut mpsc::Receiver<Msg>,
    from: &Path,
    blobs_to: Option<&Path>,
) -> Result<Migrated> {
    let db = crate::storage::StorageError::from;
    let tx = client.transaction().await.map_err(db)?;
    // Before the first seq, as every commit: seq order stays commit order for relays serving
    // the target meanwhile (their commits wait for this one).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])
        .await
        .map_err(db)?;
    let merged = holds_rows(&tx).await?;
    let target_id: String = tx
        .query_one("SELECT value FROM meta WHERE key = 'server_id'", &[])
        .await
        .map_err(db)?
        .get(0);
    let Some(Msg::Keys(keys)) = recv.recv().await else {
        return Err(ended());
    };
    let mut shared_areas = Vec::new();
    let mut existing_blobs: HashSet<Vec<u8>> = HashSet::new();
    if merged {
        let (shared, clashing) = clashes(&tx, &keys).await?;
        if !clashing.is_empty() {
            return Err(AdminError::Invalid(format!(
                "目标数据库中已有下列编号，未写入任何内容（各社区的编号须在全县唯一）the target database \
                 holds these already; nothing was written (ids must be unique across the county):\n{}",
                clashing.join("\n")
            )));
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
    if merged {
        // Past every seq the target ever handed out (and nobody takes one while we hold the
        // log's lock).
        let next: i64 = tx
            .query_one("SELECT nextval(pg_get_serial_sequence('log', 'seq'))", &[])
            .await
            .map_err(db)?
            .get(0);
        renumber.base = Some(next);
    } else {
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
    let top = if merged {
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
    // The files before the commit: once the target names the attachments, their bytes are
    // where the relay on it looks.
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
        renumbered: (merged && !renumber.old.is_empty()).then(|| {
            let base = renumber.base.unwrap_or(0);
            (base, max_seq)
        }),
        shared_areas,
        blobs,
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn blob_path(dir: &Path, hash: &[u8]) -> PathBuf {
    let hex = hex::encode(hash);
    dir.join(ATTACHMENTS_DIR).join(&hex[..2]).join(&hex)
}

fn missing_blobs(from: &Path, hashes: &[Vec<u8>]) -> Vec<String> {
    hashes
        .iter()
        .filter(|h| !blob_path(from, h).is_file())
        .map(|h| hex::encode(h))
        .collect()
}

/// Copies the complete attachments' files `hashes` names from `from` to `to`, each to a
/// temporary name then renamed (the relay only ever reads whole files), skipping those there
/// already with the same size.
fn copy_blobs(from: &Path, to: &Path, hashes: &[Vec<u8>]) -> Result<BlobCopy> {
    let mut done = BlobCopy {
        to: Some(to.to_path_buf()),
        ..BlobCopy::default()
    };
    let io = |path: &Path, e: std::io::Error| {
        AdminError::Invalid(format!(
            "无法复制附件文件 cannot copy an attachment's file {}: {e}",
            path.display()
        ))
    };
    for hash in hashes {
        let (src, dst) = (blob_path(from, hash), blob_path(to, hash));
        let Ok(meta) = std::fs::metadata(&src) else {
            done.missing.push(hex::encode(hash));
            continue;
        };
        if std::fs::metadata(&dst).is_ok_and(|d| d.len() == meta.len()) {
            done.identical += 1;
            continue;
        }
        let dir = dst.parent().unwrap_or(to);
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let staged = dir.join(format!(".{}.migrating", hex::encode(hash)));
        std::fs::copy(&src, &staged).map_err(|e| io(&src, e))?;
        std::fs::File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&staged, e))?;
        std::fs::rename(&staged, &dst).map_err(|e| io(&dst, e))?;
        done.copied += 1;
        done.bytes += meta.len();
    }
    Ok(done)
}

fn ended() -> AdminError {
    AdminError::Invalid("读取 SQLite 存储时中断 reading the SQLite store ended early".into())
}
