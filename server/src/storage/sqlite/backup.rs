//! Online backup and restore of the relay's store, and the lock that keeps a restore from
//! replacing the file under a running relay.
//!
//! Everything the relay keeps is in one SQLite file, `gridsync.sqlite3`: the log, the documents,
//! the index and the dashboard's facts, and the accounts, areas, devices and browser sessions too
//! (the `AccountStore` is the same database). So a backup is one file and a restore replaces one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{DB_FILE, MIGRATIONS, SqliteStorage};
use crate::storage::{Result, StorageError};

/// Locked shared by every process that opens the store (the relay, each admin command) and
/// exclusively by `admin restore`.
pub const LOCK_FILE: &str = "gridsync.lock";
/// Where a restore copies the backup before it takes the store's name.
const STAGED_FILE: &str = "gridsync.sqlite3.restoring";
/// Tries of a backup step while the source is locked (a writer in rollback mode, which the relay
/// never is; WAL readers do not wait for writers).
const BUSY_TRIES: usize = 100;

/// A lock on the data directory, released when dropped (or when the process dies, however).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// The lock every user of the store holds; refused only while a restore runs.
    pub fn shared(dir: &Path) -> Result<DirLock> {
        DirLock::take(dir, false)?.ok_or_else(|| {
            StorageError::Invalid(format!(
                "{} 正在从备份恢复，请等恢复完成 a restore is replacing the store in {}: try again \
                 when it has finished",
                dir.display(),
                dir.display()
            ))
        })
    }

    /// The lock of a restore: refused while a relay or an admin command uses the store.
    pub fn exclusive(dir: &Path) -> Result<DirLock> {
        DirLock::take(dir, true)?.ok_or_else(|| in_use(dir))
    }

    fn take(dir: &Path, exclusive: bool) -> Result<Option<DirLock>> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        #[cfg(unix)]
        {
            use rustix::fs::{FlockOperation, flock};
            let op = if exclusive {
                FlockOperation::NonBlockingLockExclusive
            } else {
                FlockOperation::NonBlockingLockShared
            };
            match flock(&file, op) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(io(&path, e.into())),
            }
        }
        #[cfg(not(unix))]
        let _ = exclusive;
        Ok(Some(DirLock { _file: file }))
    }
}

fn in_use(dir: &Path) -> StorageError {
    StorageError::Invalid(format!(
        "服务器或管理命令正在使用 {}，请先停止服务器（如 systemctl stop gridsync）再恢复 the store \
         in {} is in use by a running relay or admin command: stop the relay first; nothing was \
         changed",
        dir.display(),
        dir.display()
    ))
}

fn io(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Database(format!("{}: {e}", path.display()))
}

/// What a backup file (or a restored store) holds.
#[derive(Debug, Clone)]
pub struct StoreSummary {
    pub server_id: String,
    /// Entries in the log, and the newest one's sequence number.
    pub log_entries: u64,
    pub last_seq: u64,
    pub bytes: u64,
}

/// What `admin restore` did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub summary: StoreSummary,
    /// Where the store the backup replaced was kept, if there was one.
    pub replaced: Option<PathBuf>,
}

impl SqliteStorage {
    /// See [`backup`].
    pub fn backup(dir: &Path, file: &Path) -> Result<StoreSummary> {
        backup(dir, file)
    }

    /// See [`restore`].
    pub fn restore(dir: &Path, file: &Path) -> Result<Restored> {
        restore(dir, file)
    }
}

/// Writes a copy of the store in `dir` to `file` while the relay serves: SQLite's online backup
/// of every page in one step, that is inside one read transaction, so the copy is the store as
/// it was at one commit. The relay goes on reading and writing meanwhile (WAL); a backup made in
/// steps would start over at each of its commits. The copy is checked, made a single file
/// (rollback journal), synced, and only then renamed to `file`: an older backup of that name is
/// replaced whole or not at all.
pub fn backup(dir: &Path, file: &Path) -> Result<StoreSummary> {
    let db = dir.join(DB_FILE);
    if !db.is_file() {
        return Err(StorageError::Invalid(format!(
            "{} 中没有数据 no store in {}: nothing to back up",
            dir.display(),
            dir.display()
        )));
    }
    let _lock = DirLock::shared(dir)?;
    let partial = with_suffix(file, ".partial");
    remove_with_side_files(&partial)?;
    let copied = (|| {
        let source = open_existing(&db)?;
        copy(&source, &partial)?;
        let copy = Connection::open(&partial)?;
        copy.pragma_update(None, "journal_mode", "DELETE")?;
        let summary = check_store(&copy, &partial)?;
        drop(copy);
        File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&partial, e))?;
        Ok(summary)
    })();
    let summary = match copied {
        Ok(summary) => summary,
        Err(e) => {
            let _ = remove_with_side_files(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, file).map_err(|e| io(file, e))?;
    sync_dir(file.parent().unwrap_or(Path::new(".")))?;
    Ok(summary)
}

/// Replaces the store in `dir` by the backup `file`, with the relay stopped.
///
/// Refused, with nothing changed, while a relay or an admin command has the store open (the
/// directory's lock, and SQLite's own lock for a relay that predates it), or when `file` is not
/// a whole relay store this relay can open. The backup is copied (through SQLite, so a backup
/// with a `-wal` beside it is read whole) to a file beside the store, checked and synced, and
/// renamed over it: an interruption leaves the old store or the restored one. The old store is
/// kept as `gridsync.sqlite3.replaced-<UTC time>`, with its WAL if it could not take it in.
pub fn restore(dir: &Path, file: &Path) -> Result<Restored> {
    if !file.is_file() {
        return Err(StorageError::Invalid(format!(
            "备份文件不存在 no backup file {}",
            file.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let _lock = DirLock::exclusive(dir)?;
    let db = dir.join(DB_FILE);
    let staged = dir.join(STAGED_FILE);
    remove_with_side_files(&staged)?;
    let copied = (|| {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let source = Connection::open_with_flags(file, flags)?;
        check_store(&source, file)?;
        copy(&source, &staged)?;
        let copy = Connection::open(&staged)?;
        let summary = check_store(&copy, &staged)?;
        drop(copy);
        File::open(&staged)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&staged, e))?;
        Ok(summary)
    })();
    let summary = match copied {
        Ok(summary) => summary,
        Err(e) => {
            let _ = remove_with_side_files(&staged);
            return Err(e);
        }
    };
    let replaced = if db.exists() {
        match set_aside(&db) {
            Ok(kept) => Some(kept),
            Err(e) => {
                let _ = remove_with_side_files(&staged);
                return Err(e);
            }
        }
    } else {
        None
    };
    std::fs::rename(&staged, &db).map_err(|e| io(&db, e))?;
    sync_dir(dir)?;
    Ok(Restored { summary, replaced })
}

/// Keeps the store about to be replaced as `gridsync.sqlite3.replaced-<time>`: its WAL taken in
/// first if it can be, else moved with it, so that no WAL of the old store is ever applied to
/// the restored one. Refuses if another process has the store open.
fn set_aside(db: &Path) -> Result<PathBuf> {
    match checkpoint_alone(db) {
        Ok(()) => {}
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
            return Err(in_use(db.parent().unwrap_or(Path::new("."))));
        }
        // A damaged store (the reason for many a restore): kept as it is, WAL and all.
        Err(e) => tracing::warn!("the store being replaced could not be checkpointed: {e}"),
    }
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut kept = with_suffix(db, &format!(".replaced-{stamp}"));
    for n in 2..1000 {
        if !kept.exists() {
            break;
        }
        kept = with_suffix(db, &format!(".replaced-{stamp}-{n}"));
    }
    // A link keeps the old store under the new name while the restored one is renamed over
    // the old name, so there is always a store at `gridsync.sqlite3`.
    if std::fs::hard_link(db, &kept).is_err() {
        std::fs::copy(db, &kept).map_err(|e| io(&kept, e))?;
    }
    for suffix in ["-wal", "-shm"] {
        let side = with_suffix(db, suffix);
        if side.exists() {
            std::fs::rename(&side, with_suffix(&kept, suffix)).map_err(|e| io(&side, e))?;
        }
    }
    Ok(kept)
}

/// Opens the store as the only connection (SQLite's exclusive locking mode: busy if any other
/// process has it open) and takes its WAL into the file; closing deletes the WAL.
fn checkpoint_alone(db: &Path) -> rusqlite::Result<()> {
    let conn = open_existing(db)?;
    conn.busy_timeout(Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .and_then(|busy| {
        if busy == 0 {
            Ok(())
        } else {
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ))
        }
    })?;
    conn.close().map_err(|(_, e)| e)
}

fn open_existing(db: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

/// Copies every page of `source` to a new database at `to`, in one step.
fn copy(source: &Connection, to: &Path) -> Result<()> {
    let mut dest = Connection::open(to)?;
    let backup = Backup::new(source, &mut dest)?;
    for _ in 0..BUSY_TRIES {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Err(StorageError::Database(
        "the store stayed locked; the backup was not made".into(),
    ))
}

/// Checks that `conn` holds a whole relay store this relay can open, and what it holds.
fn check_store(conn: &Connection, path: &Path) -> Result<StoreSummary> {
    let name = path.display();
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(10)")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| StorageError::Corrupt(format!("{name}: {e}")))?
        .into_iter()
        .filter(|p| p != "ok")
        .collect();
    if !problems.is_empty() {
        return Err(StorageError::Corrupt(format!(
            "{name}: {}",
            problems.join("; ")
        )));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(StorageError::Invalid(format!(
            "{name} 来自更新版本的服务器 was made by a newer gridsync-server (schema {version}, \
             this one knows {}): restore it with that version",
            MIGRATIONS.len()
        )));
    }
    let server_id: Option<String> = if version == 0 {
        None
    } else {
        conn.query_row("SELECT value FROM meta WHERE key = 'server_id'", [], |r| {
            r.get(0)
        })
        .optional()?
    };
    let Some(server_id) = server_id else {
        return Err(StorageError::Invalid(format!(
            "{name} 不是 gridsync 服务器的数据 is not a gridsync relay store"
        )));
    };
    let (log_entries, last_seq): (i64, i64) =
        conn.query_row("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM log", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(StoreSummary {
        server_id,
        log_entries: log_entries as u64,
        last_seq: last_seq as u64,
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
    })
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_with_side_files(path: &Path) -> Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let file = with_suffix(path, suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&file, e)),
        }
    }
    Ok(())
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
