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
//!   what the relay lacks, as after `admin restore`. A target whose log is still empty (the
//!   county made its areas and accounts, no community moved in yet) keeps the source's seqs:
//!   the clash checks of a merge, the cursors of a copy.
//!
//! The commit holds the log's advisory lock ([`LOG_LOCK`]) from before its first seq to its end,
//! as every relay's commit does, so seq order stays commit order for relays serving the target.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_postgres::NoTls;

use super::AdminError;
use crate::storage::{DB_FILE, DirLock, PostgresStorage, SqliteStorage};
use read::{Msg, read_source};
use write::write_target;

mod blobs;
mod read;
#[cfg(test)]
mod tests;
mod write;

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
pub(crate) const SKIPPED: &[(&str, &str)] = &[
    (
        "sqlite_sequence",
        "SQLite's own counter behind the log's AUTOINCREMENT: the log's PostgreSQL sequence is \
         set past the copied seqs (and past this counter) instead",
    ),
    (
        "record_tallies",
        "derived from the records and their facts: the target's triggers count each copied row",
    ),
];

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

/// What `admin migrate` did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The target held rows already (other communities, or the county's own areas and
    /// accounts): merged, clashes checked.
    pub merged: bool,
    /// The log's seqs were kept (the target's log was empty): devices sync on with no repair.
    /// Otherwise they were renumbered and the devices repair.
    pub keeps_cursors: bool,
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
        let seqs = match self.renumbered {
            Some((first, last)) => format!("{first}–{last}"),
            None => "-".into(),
        };
        let (zh, en) = match (self.merged, self.keeps_cursors) {
            (false, _) => (
                "已原样复制到空数据库".to_string(),
                "copied into an empty database".to_string(),
            ),
            (true, true) => (
                "已并入数据库（其中尚无日志，序号保持）".to_string(),
                "merged into a database with no log entries yet (seqs kept)".to_string(),
            ),
            (true, false) => (
                format!("已并入已有数据库（日志重新编号为 {seqs}）"),
                format!("merged into a database holding other communities (log renumbered {seqs})"),
            ),
        };
        let (zh_id, en_id) = if self.merged {
            (
                format!("服务器编号为该数据库原有的 {}", self.server_id),
                format!(
                    "The server id is the database's own, {} (this relay's was {})",
                    self.server_id, self.source_server_id
                ),
            )
        } else {
            (
                format!("服务器编号保持 {}", self.server_id),
                format!("The server id is kept, {}", self.server_id),
            )
        };
        let (zh_devices, en_devices) = if self.keeps_cursors {
            (
                "设备保留同步位置，无需修复，无需重新登录",
                "devices keep their cursors and sync on with no repair, signed in as before",
            )
        } else {
            (
                "本社区的设备下次同步时自动修复各网格，不丢数据，无需重新登录",
                "the community's devices repair their grids at their next sync, stay signed in \
                 and lose nothing",
            )
        };
        lines.push(format!(
            "{zh}：记录 {records} 条，日志 {log} 条，用户 {users} 个，设备 {devices} 台，附件 {blobs} 个。\
             {zh_id}：{zh_devices}。"
        ));
        lines.push(format!(
            "{en}: {records} records, {log} log entries, {users} users, {devices} devices, \
             {blobs} attachments. {en_id}: {en_devices}."
        ));
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
                "存储记录了但原数据目录中没有的附件文件 {} 个，未复制 {} attachments the store \
                 names as stored have no file in the data directory, so none was copied: {}",
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
    let (mut client, connection) = connect(to)
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

/// A connection of its own for the one transaction, set as the relay's are: the commit is
/// durable when it returns (`synchronous_commit=on`), whatever the server's default, since the
/// operator may retire the SQLite relay on the strength of it.
async fn connect(
    url: &str,
) -> std::result::Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    tokio_postgres::Error,
> {
    // PostgresStorage::connect took the URL already.
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    let options = match config.get_options() {
        Some(o) => format!("{o} -c synchronous_commit=on"),
        None => "-c synchronous_commit=on".to_string(),
    };
    config.options(&options);
    config.application_name("gridsync-server admin migrate");
    config.connect(NoTls).await
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
