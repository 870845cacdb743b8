//! The replica at rest: SQLCipher keys, telling a plain replica from an encrypted one, and
//! changing the key (or encrypting a plain replica) without ever being left with neither file.
//!
//! SQLCipher encrypts every page of the database and of its WAL with AES-256 (HMAC-SHA512 per
//! page); the `-shm` file holds only page numbers and checksums, and temporary tables and sorts
//! stay in memory (SQLCipher's builds use `SQLITE_TEMP_STORE=2`, Android's 3). So the key covers
//! every file client-core writes in the replica's folder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use zeroize::Zeroizing;

use super::sql::{self, DB_FILE};
use crate::error::{Error, Result};

/// The first 16 bytes of every plain SQLite file. An SQLCipher file starts with its random salt.
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// Where [`rekey`] builds the re-encrypted copy before it replaces the replica.
const REKEY_FILE: &str = "replica.sqlite3.rekey";
/// SQLCipher's file format version the replica is written in: pinned, so that a later SQLCipher
/// with other defaults still opens, and still writes, the replicas already on phones.
const CIPHER_COMPATIBILITY: i64 = 4;
/// Raw keys are this long: AES-256.
pub const RAW_KEY_BYTES: usize = 32;

/// The key of an encrypted replica. Wiped from memory when dropped, never printed.
///
/// A phone app keeps a [raw key](ReplicaKey::raw) of 32 random bytes in the Android Keystore or
/// the iOS Keychain (docs/security.md, "Replica key on phones"): SQLCipher uses it as the AES
/// key as it is. A [passphrase](ReplicaKey::passphrase) is what a person can type; SQLCipher
/// derives the key from it with PBKDF2-HMAC-SHA512 (256,000 rounds), which costs that much time
/// at every open.
#[derive(Clone)]
pub struct ReplicaKey {
    /// What SQLCipher is given: `x'<64 hex digits>'` for a raw key, else the passphrase.
    text: Zeroizing<String>,
}

impl ReplicaKey {
    /// A raw 256-bit key.
    pub fn raw(bytes: [u8; RAW_KEY_BYTES]) -> ReplicaKey {
        let hex = Zeroizing::new(hex::encode_upper(bytes));
        let mut bytes = bytes;
        zeroize::Zeroize::zeroize(&mut bytes);
        ReplicaKey {
            text: Zeroizing::new(format!("x'{}'", hex.as_str())),
        }
    }

    /// A raw key from a byte slice, as a binding receives it: exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ReplicaKey> {
        let raw: [u8; RAW_KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| Error::ReplicaKey(KeyProblem::Malformed))?;
        Ok(ReplicaKey::raw(raw))
    }

    /// A passphrase (not empty).
    pub fn passphrase(passphrase: impl Into<String>) -> Result<ReplicaKey> {
        let text = Zeroizing::new(passphrase.into());
        if text.is_empty() {
            return Err(Error::ReplicaKey(KeyProblem::Malformed));
        }
        Ok(ReplicaKey { text })
    }

    /// A key as a person or a script writes it (`GRIDSYNC_REPLICA_KEY`): `x'` + 64 hex digits +
    /// `'` is a raw key, SQLCipher's own notation; anything else is a passphrase. Text that
    /// starts like a raw key but is not one is refused rather than taken as a passphrase.
    pub fn parse(text: &str) -> Result<ReplicaKey> {
        if let Some(hex) = text.strip_prefix("x'").or_else(|| text.strip_prefix("X'")) {
            let hex = hex
                .strip_suffix('\'')
                .ok_or(Error::ReplicaKey(KeyProblem::Malformed))?;
            let mut raw = [0u8; RAW_KEY_BYTES];
            hex::decode_to_slice(hex, &mut raw)
                .map_err(|_| Error::ReplicaKey(KeyProblem::Malformed))?;
            return Ok(ReplicaKey::raw(raw));
        }
        ReplicaKey::passphrase(text)
    }

    fn text(&self) -> &str {
        &self.text
    }
}

/// Equal keys open the same replicas: the same raw bytes, or the same passphrase. (The phone
/// library compares the key of a second open of a folder with the one it is open with.)
impl PartialEq for ReplicaKey {
    fn eq(&self, other: &ReplicaKey) -> bool {
        self.text() == other.text()
    }
}

impl Eq for ReplicaKey {}

impl std::fmt::Debug for ReplicaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaKey(..)")
    }
}

/// Why a replica could not be opened (or re-keyed) with the key given, or without one. Every
/// case is found before anything is written: the replica's files are as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The replica is encrypted and no key was given.
    #[error(
        "此副本已加密，需要密钥才能打开 this replica is encrypted and needs its key to open; \
         nothing was read or changed"
    )]
    Missing,
    /// The key given does not decrypt the replica (or the file is not a replica at all).
    #[error(
        "副本密钥不正确 the key does not open this replica (a wrong key, or the file is not a \
         gridsync replica); nothing was read or changed"
    )]
    Wrong,
    /// A key was given, but the replica is a plain SQLite file.
    #[error(
        "此副本未加密 this replica is not encrypted: open it without a key, or encrypt it \
         first (Replica::rekey, `gridsync rekey`); nothing was changed"
    )]
    NotEncrypted,
    /// Not a key: a raw key is exactly 32 bytes (`x'` + 64 hex digits + `'`), a passphrase is
    /// not empty.
    #[error(
        "密钥格式无效 invalid replica key: a raw key is exactly 32 bytes (x'…' with 64 hex \
         digits), a passphrase must not be empty"
    )]
    Malformed,
    /// This build of gridsync-core was made without the `encryption` feature.
    #[error(
        "此版本不支持加密副本 this build of gridsync-core cannot open encrypted replicas \
         (feature `encryption`); nothing was opened"
    )]
    Unsupported,
}

/// What is in a replica folder, found from the file's first bytes without opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaFile {
    /// No replica yet (or an empty file): opening creates one, encrypted if a key is given.
    Missing,
    /// A plain SQLite replica.
    Plain,
    /// Not plain SQLite: an encrypted replica, or a file that is no replica at all.
    Encrypted,
}

/// Tells a plain replica from an encrypted one.
pub fn inspect(dir: &Path) -> Result<ReplicaFile> {
    let file = match File::open(dir.join(DB_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReplicaFile::Missing),
        Err(e) => return Err(e.into()),
    };
    let mut header = Vec::with_capacity(PLAIN_HEADER.len());
    file.take(PLAIN_HEADER.len() as u64)
        .read_to_end(&mut header)?;
    Ok(if header.is_empty() {
        ReplicaFile::Missing
    } else if header == PLAIN_HEADER {
        ReplicaFile::Plain
    } else {
        ReplicaFile::Encrypted
    })
}

/// Refuses a key that does not fit the file before anything opens it.
pub fn check_fits(dir: &Path, key: Option<&ReplicaKey>) -> Result<()> {
    if key.is_some() && !cfg!(feature = "encryption") {
        return Err(Error::ReplicaKey(KeyProblem::Unsupported));
    }
    match (inspect(dir)?, key) {
        (ReplicaFile::Encrypted, None) => Err(Error::ReplicaKey(KeyProblem::Missing)),
        (ReplicaFile::Plain, Some(_)) => Err(Error::ReplicaKey(KeyProblem::NotEncrypted)),
        _ => Ok(()),
    }
}

/// Proves `key` opens the replica in `dir` before a connection that may write is opened.
///
/// A replica whose last session did not close (an app killed mid-work) still has its WAL and
/// `-shm`: a connection that reads it first recovers the WAL index into `-shm`, and one that
/// closes checkpoints, both before the key is known to be wrong. So then the key is tried first
/// on a read-only connection that never looks at the WAL (`immutable=1`) and reads page 1 of the
/// main file only. Without a WAL, the first read of the real connection proves the key as well,
/// and a passphrase's key derivation is not paid twice.
pub fn check_key(dir: &Path, key: &ReplicaKey) -> Result<()> {
    let db = dir.join(DB_FILE);
    if !side_file(&db, "-wal").exists() && !side_file(&db, "-shm").exists() {
        return Ok(());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(immutable_uri(&db), flags)?;
    unlock(&conn, key)
}

/// `file:` URI of a path, for SQLite's URI parameters.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(b as char)
            }
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Gives a freshly opened connection its key and proves it right by reading the schema: the
/// first statement on the connection, so a wrong key is found before anything is written.
pub fn unlock(conn: &Connection, key: &ReplicaKey) -> Result<()> {
    // SQLCipher logs a failed page check on stderr (logcat on Android); the error returned
    // says it better, in the app's or the CLI's own words.
    conn.pragma_update(None, "cipher_log_level", "NONE")?;
    set_key(conn, key)?;
    conn.pragma_update(None, "cipher_compatibility", CIPHER_COMPATIBILITY)?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            Err(Error::ReplicaKey(KeyProblem::Wrong))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(feature = "encryption")]
fn set_key(conn: &Connection, key: &ReplicaKey) -> Result<()> {
    conn.key(None::<&str>, key.text().as_bytes(), false)?;
    Ok(())
}

#[cfg(not(feature = "encryption"))]
fn set_key(_conn: &Connection, _key: &ReplicaKey) -> Result<()> {
    Err(Error::ReplicaKey(KeyProblem::Unsupported))
}

/// Removes what an interrupted [`rekey`] left: a copy that never replaced the replica. The
/// replica itself is then the old file, whole, so the copy is only in the way.
pub fn discard_unfinished(dir: &Path) -> Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        match std::fs::remove_file(dir.join(format!("{REKEY_FILE}{suffix}"))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Where a re-key stops early, to test that every interruption leaves a whole replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    Never,
    /// The re-encrypted copy is written and synced; the replica is not yet replaced.
    BeforeRename,
    /// The copy replaced the replica; the old file's bytes are not yet overwritten.
    AfterRename,
}

/// Re-encrypts the replica in `dir` with `new`: a plain replica (`old` = `None`) gets
/// encrypted, an encrypted one gets a new key.
///
/// The data is copied with `sqlcipher_export` into a new file beside the replica, which is
/// synced, checked (same rows in every table), and renamed over the replica; the folder is
/// synced. A rename is atomic, so an interruption at any point leaves either the old replica or
/// the new one, whole, never neither; a copy left by an interruption is removed at the next
/// open. Unsent changes travel with everything else. The old file's bytes are then overwritten
/// with zeros, so they do not stay readable in freed blocks (on flash storage the controller
/// may still keep copies: see docs/security.md).
///
/// The replica must be closed everywhere while this runs (`Replica` handles of this and other
/// processes); a replica still open elsewhere is refused and left as it was.
pub fn rekey(
    dir: &Path,
    old: Option<&ReplicaKey>,
    new: &ReplicaKey,
    interrupt: Interrupt,
) -> Result<()> {
    if !cfg!(feature = "encryption") {
        return Err(Error::ReplicaKey(KeyProblem::Unsupported));
    }
    if inspect(dir)? == ReplicaFile::Missing {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no replica in {}", dir.display()),
        )));
    }
    let path = dir.join(DB_FILE);
    let copy = dir.join(REKEY_FILE);
    let conn = sql::open(dir, old)?;
    let rows = row_counts(&conn, "main")?;
    let export = (|| -> Result<()> {
        conn.execute(
            "ATTACH DATABASE ?1 AS rekeyed KEY ?2",
            rusqlite::params![copy.to_string_lossy(), new.text()],
        )?;
        conn.pragma_update(
            Some("rekeyed"),
            "cipher_compatibility",
            CIPHER_COMPATIBILITY,
        )?;
        conn.query_row("SELECT sqlcipher_export('rekeyed')", [], |_| Ok(()))?;
        // sqlcipher_export copies the schema and the rows, not the migration count.
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        conn.pragma_update(Some("rekeyed"), "user_version", version)?;
        if row_counts(&conn, "rekeyed")? != rows {
            return Err(Error::Io(std::io::Error::other(
                "the re-encrypted copy does not hold every row; the replica is unchanged",
            )));
        }
        conn.execute("DETACH DATABASE rekeyed", [])?;
        Ok(())
    })();
    if let Err(e) = export {
        drop(conn);
        discard_unfinished(dir)?;
        return Err(e);
    }
    // Closing the last connection checkpoints the WAL into the file and deletes it. A WAL still
    // there means another connection has the replica open: replacing the file under it would
    // lose what it writes next.
    conn.close().map_err(|(_, e)| Error::Sqlite(e))?;
    if side_file(&path, "-wal").exists() {
        discard_unfinished(dir)?;
        return Err(Error::Io(std::io::Error::other(
            "the replica is open elsewhere (another app screen or process): close it there, \
             then change the key; nothing was changed",
        )));
    }
    File::open(&copy)?.sync_all()?;
    if interrupt == Interrupt::BeforeRename {
        return Ok(());
    }
    // Held open across the rename: after it, this handle is the only way to the old bytes.
    let mut replaced = OpenOptions::new().write(true).open(&path)?;
    std::fs::rename(&copy, &path)?;
    // From here on the replica has the new key: a failure now must not be reported as a failed
    // re-key, or the caller would go on with the old key.
    // The new file is whole: a marker an earlier crash left must not pass for a lost journal.
    super::check::clear_marker(dir);
    if let Err(e) = sync_dir(dir) {
        tracing::warn!("re-keyed replica, but syncing its folder failed: {e}");
    }
    if interrupt == Interrupt::AfterRename {
        return Ok(());
    }
    if let Err(e) = overwrite(&mut replaced) {
        tracing::warn!("re-keyed replica, but overwriting the old file failed: {e}");
    }
    Ok(())
}

/// Rows of every table of the replica in `schema`, to check a copy holds them all.
fn row_counts(conn: &Connection, schema: &str) -> Result<Vec<(String, i64)>> {
    let tables: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM {schema}.sqlite_master WHERE type = 'table' ORDER BY name"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut counts = Vec::with_capacity(tables.len());
    for table in tables {
        let n: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM {schema}.\"{}\"",
                table.replace('"', "\"\"")
            ),
            [],
            |r| r.get(0),
        )?;
        counts.push((table, n));
    }
    Ok(counts)
}

/// The replica's `-wal` or `-shm` file.
fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Overwrites a file's bytes with zeros and syncs them.
fn overwrite(file: &mut File) -> Result<()> {
    let len = file.metadata()?.len();
    let zeros = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(all(test, not(feature = "encryption")))]
#[test]
fn test_a_key_without_the_encryption_feature_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = ReplicaKey::raw([1; RAW_KEY_BYTES]);
    let err = crate::Replica::open_with_key(dir.path(), &key).err();
    assert!(
        matches!(err, Some(Error::ReplicaKey(KeyProblem::Unsupported))),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).map(|d| d.count()).ok(),
        Some(0)
    );
}
