//! A damaged replica moved aside, and its unsent work carried into a fresh one that downloads the
//! rest again.
//!
//! What a device cannot get back from the relay is what it has not sent: the outbox. Everything
//! else (records received, its own changes the relay acknowledged) the relay has. So a salvage
//! keeps the outbox rows that can still be read and are whole, and the identity (device, token,
//! actor, trusted CA) so that the device stays signed in and its changes stay its own; the fresh
//! replica then repairs every grid at its next sync ([`Replica::force_repair`]), which hands back
//! everything the relay holds, the device's own changes included.
//!
//! The steps, each safe to interrupt:
//! 1. `replica.salvage` is written and synced, naming where the damaged file goes;
//! 2. the database's `-wal` and `-shm`, then the database itself, are renamed to
//!    `replica.sqlite3.damaged-<UTC time>` (with the same suffixes): together, so the copy still
//!    reads with its last transactions, and the database last, so that its new name says the move
//!    is done;
//! 3. a fresh replica is built at `replica.sqlite3` from what can be read of the copy;
//! 4. `replica.salvage` is removed.
//!
//! An open that finds `replica.salvage` finishes the move, throws away any fresh replica of step 3
//! and does 3 and 4 again. The damaged copy stays in the folder for whoever wants to look at it
//! (encrypted as it was); a wipe erases it with the rest.

use std::collections::HashMap;
use std::path::Path;

use chrono::Utc;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

use super::Replica;
use super::check::{change_is_whole, side_file, sync_dir};
use super::crypt::{self, ReplicaKey};
use super::sql::{self, DB_FILE};
use crate::error::{Error, Result};
use crate::protocol::DocChanges;

/// Present from the moment a salvage decided where the damaged file goes until the fresh replica
/// is complete. Its first line is the damaged file's new name, the second what was wrong.
pub const PENDING_FILE: &str = "replica.salvage";
/// `replica.sqlite3.damaged-20260504T080000Z`.
const DAMAGED_INFIX: &str = ".damaged-";
/// The meta rows that make the replica this device: without all of them it must sign in again.
const IDENTITY_KEYS: &[&str] = &[
    "actor",
    "device_id",
    "worker_id",
    "grids",
    "server_url",
    "token",
];
/// Every meta key the replica writes, looked up one by one when the table cannot be scanned.
const META_KEYS: &[&str] = &[
    "actor",
    "device_id",
    "worker_id",
    "display_name",
    "role",
    "grids",
    "server_url",
    "token",
    "ca_cert",
    "last_sync",
];
/// Outbox rows looked up one by one past a damaged page, at most.
const MAX_LOOKUPS: i64 = 1_000_000;

/// What happened to a replica that was not whole when it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecoveryKind {
    /// The file was damaged: it was moved aside and a fresh replica took its place.
    Salvaged,
    /// The file was whole but its journal (`-wal`) had been deleted after a crash: the last
    /// transactions are lost, and every grid is repaired at the next sync.
    JournalLost,
}

/// What a damaged replica's salvage (or a lost journal) did, for the person using the device:
/// [`Recovery::message`] says it in plain words.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub kind: RecoveryKind,
    /// What the check or SQLite found wrong.
    pub problem: String,
    /// The damaged file's new name in the replica's folder.
    pub moved_to: Option<String>,
    /// Unsent (or refused) changes kept in the fresh replica.
    pub kept_changes: u64,
    /// Unsent changes that were found but could not be read whole, and are lost.
    pub lost_changes: u64,
    /// False when part of the list of unsent changes could not be read at all: some may be lost
    /// beyond `lost_changes`.
    pub outbox_whole: bool,
    /// Whether the device is still signed in; if not, sign in again.
    pub identity_kept: bool,
}

impl Recovery {
    /// What happened and what was kept, in Chinese, then in English.
    pub fn message(&self) -> String {
        let (mut zh, mut en) = match self.kind {
            RecoveryKind::Salvaged => {
                let moved = self.moved_to.as_deref().unwrap_or("?");
                let (kept_zh, kept_en) = match self.kept_changes {
                    0 => (
                        "没有需要保留的未上传修改".to_string(),
                        "there were no unsent changes to keep".to_string(),
                    ),
                    n => (
                        format!("已保留 {n} 条尚未上传的修改"),
                        format!("{n} unsent changes were kept"),
                    ),
                };
                (
                    format!(
                        "本机数据文件已损坏，已移到 {moved} 并换成新文件（{}）。{kept_zh}；其余数据\
                         会在下次同步时从服务器重新下载。",
                        self.problem
                    ),
                    format!(
                        "The data file on this device was damaged ({}); it was moved to {moved} \
                         and replaced by a new one. {}; everything else is downloaded from the \
                         server again at the next sync.",
                        self.problem,
                        capitalise(&kept_en)
                    ),
                )
            }
            RecoveryKind::JournalLost => (
                "本机数据的日志文件（-wal）在程序异常退出后丢失：退出前不久所做的修改可能已丢失。\
                 下次同步时将与服务器逐条核对，服务器上的数据会重新下载。"
                    .to_string(),
                "The journal of this device's data (its -wal file) was missing after the app \
                 stopped unexpectedly: changes made shortly before may be lost. At the next sync \
                 every record is checked against the server, and what the server has is \
                 downloaded again."
                    .to_string(),
            ),
        };
        if self.lost_changes > 0 {
            zh.push_str(&format!(
                "有 {} 条未上传的修改无法读取，已丢失。",
                self.lost_changes
            ));
            en.push_str(&format!(
                " {} unsent changes could not be read and are lost.",
                self.lost_changes
            ));
        } else if !self.outbox_whole {
            zh.push_str("部分未上传的修改可能无法读取，已丢失。");
            en.push_str(" Some unsent changes may have been unreadable, and are lost.");
        }
        if !self.identity_kept {
            zh.push_str("登录信息无法读取，请重新登录。");
            en.push_str(" The sign-in could not be read: sign in again.");
        }
        format!("{zh}\n{en}")
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Replica {
    /// Moves the damaged replica in `dir` aside and builds a fresh one in its place from its
    /// readable, whole unsent changes and its identity; the next sync repairs every grid, which
    /// downloads the rest again. `problem` is what a check found ([`Replica::check`]). The
    /// replica must be closed everywhere. A wrong key is refused before anything moves.
    ///
    /// Opening a replica does this by itself when the file turns out damaged (see
    /// [`Replica::recovery`]); this is for a damage only [`Replica::check`] finds.
    pub fn salvage(
        dir: impl AsRef<Path>,
        key: Option<&ReplicaKey>,
        problem: &str,
    ) -> Result<Recovery> {
        let dir = dir.as_ref();
        crypt::check_fits(dir, key)?;
        if let Some(key) = key {
            // Only that the key opens it: nothing is moved for a wrong key.
            if let Err(e @ Error::ReplicaKey(_)) = open_damaged(&dir.join(DB_FILE), Some(key)) {
                return Err(e);
            }
        }
        salvage(dir, key, problem)
    }

    /// What opening this replica found and did, when it was not whole: show
    /// [`Recovery::message`] to the person using the device.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }
}

/// Moves the damaged replica in `dir` aside and builds a fresh one from it.
pub(crate) fn salvage(dir: &Path, key: Option<&ReplicaKey>, problem: &str) -> Result<Recovery> {
    let moved = begin(dir, problem)?;
    finish(dir, key, &moved, problem)
}

/// Finishes a salvage an interruption left, if any.
pub(crate) fn finish_pending(dir: &Path, key: Option<&ReplicaKey>) -> Result<Option<Recovery>> {
    let text = match std::fs::read_to_string(dir.join(PENDING_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (moved, problem) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    let valid = moved.starts_with(&format!("{DB_FILE}{DAMAGED_INFIX}"))
        && !moved.contains(['/', '\\'])
        && text.ends_with('\n');
    if !valid {
        // Cut short while being written, before anything was moved: nothing to finish.
        std::fs::remove_file(dir.join(PENDING_FILE))?;
        return Ok(None);
    }
    finish(dir, key, moved, problem.trim_end()).map(Some)
}

/// Steps 1 and 2: where the damaged file goes, then the move.
fn begin(dir: &Path, problem: &str) -> Result<String> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut moved = format!("{DB_FILE}{DAMAGED_INFIX}{stamp}");
    for n in 2..1000 {
        if !dir.join(&moved).exists() {
            break;
        }
        moved = format!("{DB_FILE}{DAMAGED_INFIX}{stamp}-{n}");
    }
    let pending = format!("{moved}\n{}\n", problem.replace(['\r', '\n'], " "));
    std::fs::write(dir.join(PENDING_FILE), pending)?;
    std::fs::File::open(dir.join(PENDING_FILE))?.sync_all()?;
    sync_dir(dir)?;
    move_files(dir, &moved)?;
    Ok(moved)
}

/// Renames the database with its side files to `moved`, the database last; nothing once it is
/// there.
fn move_files(dir: &Path, moved: &str) -> Result<()> {
    let target = dir.join(moved);
    if target.exists() {
        return Ok(());
    }
    let db = dir.join(DB_FILE);
    for suffix in ["-wal", "-shm", "-journal", ""] {
        let from = side_file(&db, suffix);
        if from.exists() {
            std::fs::rename(&from, side_file(&target, suffix))?;
        }
    }
    sync_dir(dir)
}

/// Steps 3 and 4.
fn finish(dir: &Path, key: Option<&ReplicaKey>, moved: &str, problem: &str) -> Result<Recovery> {
    move_files(dir, moved)?;
    // A fresh replica an interrupted salvage left is built again from the start.
    let db = dir.join(DB_FILE);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        match std::fs::remove_file(side_file(&db, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let found = read_damaged(&dir.join(moved), key)?;
    let identity_kept = IDENTITY_KEYS
        .iter()
        .all(|k| found.meta.iter().any(|(key, _)| key == k));
    let mut conn = sql::open(dir, key)?;
    let tx = conn.transaction()?;
    for (k, v) in &found.meta {
        // Half an identity is none: the device signs in again, with a new actor, and nothing
        // of the old one is in the way.
        if identity_kept || !IDENTITY_KEYS.contains(&k.as_str()) {
            sql::set_meta(&tx, k, v)?;
        }
    }
    for row in &found.outbox {
        tx.execute(
            "INSERT OR IGNORE INTO outbox (seq, doc_id, grid_id, hash, bytes, rejected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.seq,
                row.doc_id,
                row.grid_id,
                row.hash,
                row.bytes,
                row.rejected
            ],
        )?;
    }
    // Own attachments the relay does not hold are only here: the changes kept above name them.
    if let Ok(damaged) = open_damaged(&dir.join(moved), key) {
        super::attachments::salvage_own(&damaged, &tx)?;
    }
    tx.commit()?;
    let mut replica = Replica::from_conn(conn)?;
    let mut grids = found.grids.clone();
    grids.extend(found.outbox.iter().map(|r| r.grid_id.clone()));
    replica.force_repair(&grids)?;
    replica.take_back(&found.outbox);
    drop(replica);
    std::fs::remove_file(dir.join(PENDING_FILE))?;
    sync_dir(dir)?;
    let recovery = Recovery {
        kind: RecoveryKind::Salvaged,
        problem: problem.to_string(),
        moved_to: Some(moved.to_string()),
        kept_changes: found.outbox.len() as u64,
        lost_changes: found.lost,
        outbox_whole: found.outbox_whole,
        identity_kept,
    };
    tracing::warn!("{}", recovery.message());
    Ok(recovery)
}

impl Replica {
    /// Applies salvaged unsent changes to the fresh replica's documents, so its records show
    /// them at once. A change whose dependencies were not among them waits, stored, for the
    /// repair to bring those; one that cannot be applied stays in the outbox all the same.
    fn take_back(&mut self, outbox: &[OutboxRow]) {
        let mut grids: Vec<(String, Vec<DocChanges>)> = Vec::new();
        let mut slot: HashMap<(String, String), (usize, usize)> = HashMap::new();
        for row in outbox {
            let g = match grids.iter().position(|(g, _)| *g == row.grid_id) {
                Some(g) => g,
                None => {
                    grids.push((row.grid_id.clone(), Vec::new()));
                    grids.len() - 1
                }
            };
            let key = (row.grid_id.clone(), row.doc_id.clone());
            let (g, d) = *slot.entry(key).or_insert_with(|| {
                grids[g].1.push(DocChanges {
                    doc_id: row.doc_id.clone(),
                    snapshot: None,
                    changes: Vec::new(),
                });
                (g, grids[g].1.len() - 1)
            });
            grids[g].1[d]
                .changes
                .push(serde_bytes::ByteBuf::from(row.bytes.clone()));
        }
        for (grid, docs) in grids {
            if let Err(e) = self.apply_received(&grid, &docs, None) {
                tracing::warn!("salvaged changes of grid {grid} wait for the next sync: {e}");
            }
        }
    }
}

/// One outbox row as the damaged replica had it.
struct OutboxRow {
    seq: i64,
    doc_id: String,
    grid_id: String,
    hash: Vec<u8>,
    bytes: Vec<u8>,
    rejected: Option<String>,
}

/// What could be read of a damaged replica.
struct Found {
    meta: Vec<(String, String)>,
    outbox: Vec<OutboxRow>,
    /// Rows read but not whole.
    lost: u64,
    outbox_whole: bool,
    /// Grids the replica had cursors in.
    grids: Vec<String>,
}

/// Opens a damaged database to read what it can: never created, never checkpointed into (the
/// copy stays as it was), and with SQLite's check of the file's length against its header off,
/// so that a truncated file still reads up to where it ends.
fn open_damaged(path: &Path, key: Option<&ReplicaKey>) -> Result<Connection> {
    let flags = OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.pragma_update(None, "writable_schema", true)?;
    if let Some(key) = key {
        crypt::unlock(&conn, key)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(1))?;
    Ok(conn)
}

/// Reads what it can of the damaged replica at `path`. Fails only for a key that does not open
/// it; a file nothing can be read of gives nothing.
fn read_damaged(path: &Path, key: Option<&ReplicaKey>) -> Result<Found> {
    let mut found = Found {
        meta: Vec::new(),
        outbox: Vec::new(),
        lost: 0,
        outbox_whole: false,
        grids: Vec::new(),
    };
    let conn = match open_damaged(path, key) {
        Ok(conn) => conn,
        Err(e @ Error::ReplicaKey(_)) => return Err(e),
        Err(e) => {
            tracing::warn!("nothing could be read of the damaged replica: {e}");
            return Ok(found);
        }
    };
    found.meta = read_meta(&conn);
    read_outbox(&conn, &mut found);
    found.grids = conn
        .prepare("SELECT grid_id FROM cursors")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    Ok(found)
}

fn read_meta(conn: &Connection) -> Vec<(String, String)> {
    let all = conn
        .prepare("SELECT key, value FROM meta")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
        });
    all.unwrap_or_else(|_| {
        META_KEYS
            .iter()
            .filter_map(|k| {
                conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                    .ok()
                    .map(|v| (k.to_string(), v))
            })
            .collect()
    })
}

const OUTBOX_COLUMNS: &str = "seq, doc_id, grid_id, hash, bytes, rejected";

fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        seq: r.get(0)?,
        doc_id: r.get(1)?,
        grid_id: r.get(2)?,
        hash: r.get(3)?,
        bytes: r.get(4)?,
        rejected: r.get(5)?,
    })
}

/// The outbox in order, each row kept only if its change is whole. A scan stops at the first
/// damaged page; the rows after it are then looked up one by one, which reads only the pages on
/// the way to each.
fn read_outbox(conn: &Connection, found: &mut Found) {
    let mut last = 0;
    let scan = (|| -> rusqlite::Result<()> {
        let mut stmt =
            conn.prepare(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let row = outbox_row(r)?;
            last = row.seq;
            keep(row, found);
        }
        Ok(())
    })();
    found.outbox_whole = scan.is_ok();
    if scan.is_ok() {
        return;
    }
    let end = conn
        .query_row("SELECT MAX(seq) FROM outbox", [], |r| r.get::<_, i64>(0))
        .or_else(|_| {
            conn.query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .unwrap_or(last)
        .min(last.saturating_add(MAX_LOOKUPS));
    let Ok(mut stmt) = conn.prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE seq = ?1"
    )) else {
        return;
    };
    for seq in last.saturating_add(1)..=end {
        // No row: acknowledged long ago. An error: a damaged page on the way (already counted
        // by `outbox_whole`).
        if let Ok(row) = stmt.query_row([seq], outbox_row) {
            keep(row, found);
        }
    }
}

/// Keeps an outbox row if its change is whole.
fn keep(row: OutboxRow, found: &mut Found) {
    if !row.doc_id.is_empty() && change_is_whole(&row.hash, row.bytes.clone()) {
        found.outbox.push(row);
    } else {
        found.lost += 1;
    }
}

/// Erases the damaged copies salvages left in `dir` (a wipe erases everything).
pub(crate) fn remove_damaged_copies(dir: &Path) -> Result<usize> {
    let prefix = format!("{DB_FILE}{DAMAGED_INFIX}");
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
