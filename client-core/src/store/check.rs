//! Is the replica whole? How its last session ended, the integrity checks SQLite (and SQLCipher)
//! can make, and which errors mean the file is damaged rather than, say, the disk full.
//!
//! **Unclean shutdown** is told by a marker file, `replica.open`, created (and synced) once a
//! replica has opened and removed when its `Replica` is dropped, together with SQLite's `-wal`
//! file, which SQLite deletes when the last connection closes. Either one at open means the last
//! session did not close (the app was killed, the phone lost power) or is still open elsewhere;
//! the replica is then checked before it is used. The WAL alone would miss the case the marker is
//! for: a WAL deleted after a crash (by a cleaner app, a careless copy, a backup tool that skips
//! it) takes the last transactions with it and leaves a file that passes every check. A marker
//! inside the database would be lost with that WAL too, which is why it is a file of its own.
//! A marker without a WAL thus says the journal was lost: the file is whole, but what the device
//! last received and sent may be missing, including its own acknowledged changes, which the relay
//! never sends back by catch-up. So every grid is then repaired (`force_repair`).

use std::fs::File;
use std::path::{Path, PathBuf};

use automerge::Change;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode};
use serde::Serialize;

use super::sql::{self, DB_FILE};
use super::{Replica, build_doc};
use crate::error::{Error, Result};

/// Present while a replica is open; left behind by a session that did not close.
pub(crate) const OPEN_MARKER: &str = "replica.open";
/// At most this many problems are listed by a check; one is enough to salvage.
const MAX_PROBLEMS: usize = 20;

/// How the replica's last session ended, read from its files before they are opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastSession {
    marker: bool,
    wal: bool,
}

impl LastSession {
    pub(crate) fn read(dir: &Path) -> LastSession {
        LastSession {
            marker: dir.join(OPEN_MARKER).exists(),
            wal: side_file(&dir.join(DB_FILE), "-wal").exists(),
        }
    }

    /// The last session did not close, or another one is still open: check before use.
    pub(crate) fn unclean(self) -> bool {
        self.marker || self.wal
    }

    /// A session did not close and its WAL is gone: its last transactions are lost.
    pub(crate) fn journal_lost(self) -> bool {
        self.marker && !self.wal
    }
}

/// The marker of an open replica: removed when dropped, that is when its `Replica` is, after the
/// connection closed (the field order of `Replica` sees to that).
#[derive(Debug)]
pub(crate) struct OpenMarker {
    path: PathBuf,
}

impl OpenMarker {
    /// Creates the marker and makes it durable: a power cut a moment later must still find it.
    pub(crate) fn create(dir: &Path) -> Result<OpenMarker> {
        let path = dir.join(OPEN_MARKER);
        File::create(&path)?.sync_all()?;
        sync_dir(dir)?;
        Ok(OpenMarker { path })
    }
}

impl Drop for OpenMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes a marker left by a session that did not close, once something else has closed the
/// replica properly (a re-key rewrites it whole).
pub(crate) fn clear_marker(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(OPEN_MARKER));
}

/// Whether an error means the replica's file is damaged: what SQLite calls a corrupt database or
/// not a database at all (a wrong key is told apart before, as [`Error::ReplicaKey`]).
pub(crate) fn is_damage(e: &Error) -> bool {
    match e {
        Error::Damaged(_) => true,
        Error::Sqlite(e) => matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
        ),
        _ => false,
    }
}

/// The check made at an open after an unclean shutdown: SQLite's `quick_check` (every page of
/// every table and index read and its structure checked, in about the time of reading the file),
/// and for an encrypted replica SQLCipher's check of every page's HMAC. Fails with
/// [`Error::Damaged`]; the connection then no longer checkpoints on close, so the damaged file is
/// moved aside as it was.
pub(crate) fn quick(conn: &Connection, encrypted: bool) -> Result<()> {
    let problems = integrity(conn, "quick_check", encrypted);
    if problems.is_empty() {
        return Ok(());
    }
    let _ = conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
    Err(Error::Damaged(problems.join("; ")))
}

/// What SQLite (and SQLCipher) find wrong with the file; empty when nothing.
fn integrity(conn: &Connection, pragma: &str, encrypted: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut run = |sql: &str, ok: Option<&str>| {
        let rows = conn.prepare(sql).and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        });
        match rows {
            Ok(rows) => problems.extend(rows.into_iter().filter(|r| Some(r.as_str()) != ok)),
            Err(e) => problems.push(e.to_string()),
        }
    };
    run(&format!("PRAGMA {pragma}({MAX_PROBLEMS})"), Some("ok"));
    if encrypted {
        // Rows only for pages whose HMAC does not match: a page changed by anything but
        // SQLCipher, which `quick_check` may not notice when it changed only stored bytes.
        run("PRAGMA cipher_integrity_check", None);
    }
    problems.truncate(MAX_PROBLEMS);
    problems
}

/// What `gridsync check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// What is wrong, in SQLite's or Automerge's words; empty when the replica is whole.
    pub problems: Vec<String>,
    /// Documents that were loaded and found whole.
    pub documents: u64,
    /// Unsent (and refused) changes that were decoded and found whole.
    pub unsent_changes: u64,
}

impl CheckReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Replica {
    /// Checks the whole replica: SQLite's `integrity_check` (also that every index matches its
    /// table), SQLCipher's page check when it is encrypted, every document loaded from its
    /// snapshot and changes (Automerge checks their hashes), and every change waiting in the
    /// outbox decoded against its hash. Stored bytes that were overwritten are found here even
    /// where SQLite's structure checks cannot see them. Reads only; on problems, close the
    /// replica and call [`Replica::salvage`].
    pub fn check(&mut self) -> Result<CheckReport> {
        let encrypted = self.is_encrypted();
        let mut problems = integrity(&self.conn, "integrity_check", encrypted);
        let mut documents = 0;
        let mut unsent_changes = 0;
        if problems.is_empty() {
            let ids: Vec<String> = self
                .conn
                .prepare("SELECT doc_id FROM docs ORDER BY doc_id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for id in ids {
                let loaded = sql::load_doc(&self.conn, &id)?
                    .ok_or_else(|| Error::NotFound(id.clone()))
                    .and_then(|stored| build_doc(&id, &stored, &self.actor));
                match loaded {
                    // Nested too deep is a record stored before the limit, not damage.
                    Ok(_) | Err(Error::TooDeep { .. }) => documents += 1,
                    Err(e) => problems.push(e.to_string()),
                }
            }
            let mut stmt = self
                .conn
                .prepare("SELECT seq, hash, bytes FROM outbox ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (seq, hash, bytes): (i64, Vec<u8>, Vec<u8>) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                if change_is_whole(&hash, bytes) {
                    unsent_changes += 1;
                } else {
                    problems.push(format!("unsent change {seq} cannot be decoded"));
                }
            }
        }
        problems.truncate(MAX_PROBLEMS);
        Ok(CheckReport {
            problems,
            documents,
            unsent_changes,
        })
    }

    /// Whether this replica's file is encrypted (from its first bytes).
    fn is_encrypted(&self) -> bool {
        self.conn
            .path()
            .and_then(|p| Path::new(p).parent())
            .and_then(|dir| super::crypt::inspect(dir).ok())
            == Some(super::ReplicaFile::Encrypted)
    }

    /// Makes the next sync repair every grid this replica holds, document by document, instead
    /// of catching up from its cursors: catch-up leaves out the device's own changes, so what of
    /// them this replica lost (with a lost journal, or in a salvage) would never come back. A
    /// cursor without a hash is one no relay vouches for (docs/protocol.md §5); the repair ends
    /// with a cursor the relay does vouch for.
    /// `also` names grids beyond the identity's (those a damaged replica had cursors or unsent
    /// changes in).
    pub(crate) fn force_repair(&mut self, also: &[String]) -> Result<()> {
        let mut grids = self
            .identity
            .as_ref()
            .map(|i| i.grids.clone())
            .unwrap_or_default();
        grids.extend(also.iter().cloned());
        let tx = self.conn.transaction()?;
        tx.execute("UPDATE cursors SET seq = MAX(seq, 1), hash = NULL", [])?;
        for grid in grids {
            tx.execute(
                "INSERT OR IGNORE INTO cursors (grid_id, seq, hash) VALUES (?1, 1, NULL)",
                [grid],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A stored change decodes and is the change its hash names.
pub(crate) fn change_is_whole(hash: &[u8], bytes: Vec<u8>) -> bool {
    Change::from_bytes(bytes).is_ok_and(|c| c.hash().0.as_slice() == hash)
}

/// The replica's `-wal`, `-shm` or `-journal` file.
pub(crate) fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes a file created, renamed or removed in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl Error {
    /// Whether this error says the device's storage is full: nothing of the write was stored,
    /// everything stored before is intact, and the same call works again once there is room.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Sqlite(e) if e.sqlite_error_code() == Some(ErrorCode::DiskFull))
            || matches!(self, Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull)
    }

    /// Whether this error says the replica's file is damaged (an integrity check failed, or
    /// SQLite found it corrupt): [`Replica::check`] and [`Replica::salvage`] are the way out.
    pub fn is_damaged_replica(&self) -> bool {
        is_damage(self)
    }
}
