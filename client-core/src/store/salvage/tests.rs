//! Damaged replicas: what a crash, a bad flash page or a lost journal leaves, and what the
//! device keeps. A replica "after a crash" is a copy of its folder taken while it is open: the
//! files as a SIGKILL or a power cut leaves them (every write that returned is in them).

use std::path::Path;

use serde_json::{Map, Value, json};

use super::*;
use crate::protocol::{Cursor, LoginResponse};
use crate::record::Kind;
use crate::store::{ReplicaFile, check::OPEN_MARKER};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn login() -> LoginResponse {
    LoginResponse {
        device_id: "device-wang".into(),
        token: "token-wang".into(),
        user_id: "wang".into(),
        username: "wang".into(),
        display_name: "王芳".into(),
        role: "grid_worker".into(),
        grids: vec!["g1".into()],
    }
}

fn open(dir: &Path, key: Option<&ReplicaKey>) -> Replica {
    match key {
        Some(key) => Replica::open_with_key(dir, key).unwrap(),
        None => Replica::open(dir).unwrap(),
    }
}

fn household(r: &mut Replica, name: &str) -> String {
    let fields = json!({"head_name": name, "household_type": "registered",
                        "notes": format!("{name}家的情况说明，需要定期走访。")});
    r.create(Kind::Household, obj(fields)).unwrap().id
}

/// As after a sync: every unsent change acknowledged, the cursor where the relay's log stood.
fn acknowledge_all(r: &mut Replica) {
    let seqs: Vec<i64> = r
        .outbox_batch(100_000, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    r.acknowledge(&seqs, &[], &[]).unwrap();
    let cursor = Cursor {
        grid: "g1".into(),
        seq: 90,
        hash: Some([7; 32]),
    };
    r.apply_remote("g1", &[], &cursor).unwrap();
}

/// A replica of `synced` households the relay has, written and closed in an earlier session,
/// then reopened: its file holds them, its WAL holds nothing yet.
fn replica_with_history(dir: &Path, key: Option<&ReplicaKey>, synced: usize) -> Vec<String> {
    let mut r = open(dir, key);
    r.enrol("http://127.0.0.1:1", &login()).unwrap();
    let ids = (0..synced)
        .map(|n| household(&mut r, &format!("住户{n}")))
        .collect();
    acknowledge_all(&mut r);
    ids
}

/// Copies the replica's folder as it is on disk right now.
fn crash_copy(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Overwrites 200 bytes from a fixed xorshift sequence at the start of the middle page.
fn overwrite_middle(dir: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join(DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    let pages = len / 4096;
    assert!(
        pages >= 8,
        "a file of {pages} pages is too small to damage in the middle"
    );
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let bytes: Vec<u8> = (0..200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(pages / 2 * 4096)).unwrap();
    file.write_all(&bytes).unwrap();
}

fn truncate_to_half(dir: &Path) {
    let path = dir.join(DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(
        len >= 8 * 4096,
        "a file of {len} bytes is too small to truncate"
    );
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2 / 4096 * 4096).unwrap();
}

fn damaged_copies(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("replica.sqlite3.damaged-") && !n.ends_with("-wal"))
        .filter(|n| !n.ends_with("-shm"))
        .collect()
}

/// What a salvaged replica must be: signed in as before, the unsent changes kept, records
/// written only here readable at once, and every cursor one the relay cannot vouch for, so the
/// next sync repairs every grid and hands back the rest.
fn assert_salvaged(r: &mut Replica, unsent: &[String], kept: u64) {
    let recovery = r.recovery().expect("the open says what it did").clone();
    assert_eq!(recovery.kind, RecoveryKind::Salvaged, "{recovery:?}");
    assert!(recovery.identity_kept, "{recovery:?}");
    assert_eq!(recovery.kept_changes, kept, "{recovery:?}");
    let message = recovery.message();
    assert!(message.contains("已损坏"), "{message}");
    assert!(
        message.contains(&format!("{kept} unsent changes were kept")),
        "{message}"
    );
    let moved = recovery.moved_to.clone().unwrap();
    assert!(message.contains(&moved), "{message}");
    let identity = r.identity().unwrap();
    assert_eq!(
        (identity.device_id.as_str(), identity.token.as_str()),
        ("device-wang", "token-wang")
    );
    assert_eq!(r.status().unwrap().unsent_changes, kept);
    for id in unsent {
        assert_eq!(r.get(id).unwrap().kind, Kind::Household, "{id} is readable");
    }
    for cursor in r.cursors().unwrap() {
        assert!(cursor.seq > 0 && cursor.hash.is_none(), "{cursor:?}");
    }
}

#[test]
fn test_a_crash_leaves_the_marker_and_a_clean_close_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let mut r = open(dir.path(), None);
    r.enrol("http://127.0.0.1:1", &login()).unwrap();
    household(&mut r, "张三");
    assert!(dir.path().join(OPEN_MARKER).exists());
    crash_copy(dir.path(), crashed.path());
    drop(r);
    assert!(!dir.path().join(OPEN_MARKER).exists());
    assert!(!dir.path().join("replica.sqlite3-wal").exists());

    // A crash is checked at the next open; the replica was whole, so nothing else happens.
    let r = open(crashed.path(), None);
    assert!(r.recovery().is_none(), "{:?}", r.recovery());
    assert_eq!(r.status().unwrap().unsent_changes, 1);
    assert!(damaged_copies(crashed.path()).is_empty());
}

#[test]
fn test_overwritten_pages_after_a_crash_are_salvaged_keeping_unsent_changes() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let synced = replica_with_history(dir.path(), None, 40);
    let mut r = open(dir.path(), None);
    let actor = r.actor_hex();
    let unsent = vec![household(&mut r, "新户甲"), household(&mut r, "新户乙")];
    r.update(&synced[0], obj(json!({"notes": "离线修改"})))
        .unwrap();
    // Everything in the file itself, no free page: the middle page is one the replica uses.
    r.conn.execute_batch("VACUUM").unwrap();
    r.conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    crash_copy(dir.path(), crashed.path());
    drop(r);
    overwrite_middle(crashed.path());

    let mut r = open(crashed.path(), None);
    assert_salvaged(&mut r, &unsent, 3);
    assert_eq!(r.actor_hex(), actor, "its changes stay this device's");
    assert_eq!(damaged_copies(crashed.path()).len(), 1);
    assert!(!crashed.path().join(PENDING_FILE).exists());
    // The offline edit of a record the relay has waits, stored but not listed, for the repair
    // to bring the record back.
    assert!(r.get(&synced[0]).is_err());
    assert_eq!(r.count(&crate::Query::default()).unwrap(), 2);
    drop(r);
    let r = open(crashed.path(), None);
    assert!(r.recovery().is_none(), "salvaged once, whole since");
}

#[test]
fn test_a_truncated_replica_is_salvaged_after_a_crash_and_after_a_clean_close() {
    for crash in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let crashed = tempfile::tempdir().unwrap();
        replica_with_history(dir.path(), None, 40);
        let mut r = open(dir.path(), None);
        let unsent = vec![household(&mut r, "新户甲"), household(&mut r, "新户乙")];
        let target = if crash {
            crash_copy(dir.path(), crashed.path());
            drop(r);
            crashed.path()
        } else {
            drop(r);
            dir.path()
        };
        truncate_to_half(target);
        let mut r = open(target, None);
        assert_salvaged(&mut r, &unsent, 2);
    }
}

#[test]
fn test_a_deleted_wal_after_a_crash_makes_every_grid_repair() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let before = replica_with_history(dir.path(), None, 5);
    let mut r = open(dir.path(), None);
    let kept = household(&mut r, "上次打开时写的");
    drop(r);
    let mut r = open(dir.path(), None);
    let lost = household(&mut r, "崩溃前写的");
    crash_copy(dir.path(), crashed.path());
    drop(r);
    std::fs::remove_file(crashed.path().join("replica.sqlite3-wal")).unwrap();

    let mut r = open(crashed.path(), None);
    let recovery = r.recovery().expect("a lost journal is reported").clone();
    assert_eq!(recovery.kind, RecoveryKind::JournalLost);
    assert!(
        recovery.message().contains("-wal"),
        "{}",
        recovery.message()
    );
    // The file is whole and stays where it is; what the WAL held is gone.
    assert!(damaged_copies(crashed.path()).is_empty());
    assert_eq!(r.get(&before[0]).unwrap().kind, Kind::Household);
    assert_eq!(r.get(&kept).unwrap().kind, Kind::Household);
    assert!(matches!(r.get(&lost), Err(Error::NotFound(_))));
    let cursors = r.cursors().unwrap();
    assert!(
        cursors.iter().all(|c| c.seq > 0 && c.hash.is_none()),
        "the next sync repairs: {cursors:?}"
    );
}

#[test]
fn test_a_salvage_cut_short_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_history(dir.path(), None, 3);
    let mut r = open(dir.path(), None);
    let unsent = vec![household(&mut r, "新户甲")];
    drop(r);
    // Cut after the move (step 2), then again with half a fresh replica built (step 3).
    let moved = begin(dir.path(), "test").unwrap();
    assert!(!dir.path().join(DB_FILE).exists());
    std::fs::write(dir.path().join(DB_FILE), b"half a fresh replica").unwrap();

    let mut r = open(dir.path(), None);
    assert_salvaged(&mut r, &unsent, 1);
    assert_eq!(
        r.recovery().unwrap().moved_to.as_deref(),
        Some(moved.as_str())
    );
    assert!(!dir.path().join(PENDING_FILE).exists());
}

#[test]
fn test_check_finds_overwritten_record_bytes_sqlite_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "完好无损的户主姓名MARKER-0123456789";
    let mut r = open(dir.path(), None);
    r.enrol("http://127.0.0.1:1", &login()).unwrap();
    let id = household(&mut r, "张三");
    // Enough changes for a snapshot, which the replica stores uncompressed; a name is one
    // string there (a text field would be its characters one by one).
    for n in 0..4 {
        r.update(&id, obj(json!({"head_name": format!("{marker}{n}")})))
            .unwrap();
    }
    acknowledge_all(&mut r);
    drop(r);
    let path = dir.path().join(DB_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // Every copy of the name in the file: the live snapshot's, and whatever freed pages still
    // hold of deleted rows (which copy comes first depends on how SQLite laid the pages out).
    let copies: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_bytes())
        .map(|(at, _)| at)
        .collect();
    assert!(!copies.is_empty(), "the snapshot holds the name as written");
    for at in copies {
        bytes[at + 3..at + 9].copy_from_slice(b"XXXXXX");
    }
    std::fs::write(&path, bytes).unwrap();

    // A clean close: the open does not check, and SQLite finds nothing wrong.
    let mut r = open(dir.path(), None);
    assert!(r.recovery().is_none());
    let report = r.check().unwrap();
    assert!(!report.is_sound());
    assert!(
        report.problems.iter().any(|p| p.contains(&id)),
        "{report:?}"
    );
    drop(r);
    let recovery = Replica::salvage(dir.path(), None, &report.problems[0]).unwrap();
    assert_eq!(recovery.kind, RecoveryKind::Salvaged);
    let mut r = open(dir.path(), None);
    assert!(r.check().unwrap().is_sound());
    assert!(r.identity().is_ok());
}

#[test]
fn test_a_sound_replica_passes_the_check() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_history(dir.path(), None, 5);
    let mut r = open(dir.path(), None);
    household(&mut r, "新户");
    let report = r.check().unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!((report.documents, report.unsent_changes), (6, 1));
}

#[test]
fn test_a_wipe_erases_damaged_copies_too() {
    let dir = tempfile::tempdir().unwrap();
    replica_with_history(dir.path(), None, 3);
    Replica::salvage(dir.path(), None, "test").unwrap();
    assert_eq!(damaged_copies(dir.path()).len(), 1);
    let mut r = open(dir.path(), None);
    r.wipe().unwrap();
    assert!(damaged_copies(dir.path()).is_empty());
}

#[cfg(feature = "encryption")]
mod encrypted {
    use super::*;
    use crate::store::{KeyProblem, RAW_KEY_BYTES};

    fn key(n: u8) -> ReplicaKey {
        ReplicaKey::raw([n; RAW_KEY_BYTES])
    }

    #[test]
    fn test_an_encrypted_replica_is_salvaged_with_its_key_and_stays_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let crashed = tempfile::tempdir().unwrap();
        replica_with_history(dir.path(), Some(&key(1)), 40);
        let mut r = open(dir.path(), Some(&key(1)));
        let unsent = vec![household(&mut r, "新户甲"), household(&mut r, "新户乙")];
        r.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        crash_copy(dir.path(), crashed.path());
        drop(r);
        overwrite_middle(crashed.path());

        // A wrong key is refused and moves nothing.
        let err = Replica::open_with_key(crashed.path(), &key(2)).err();
        assert!(
            matches!(err, Some(Error::ReplicaKey(KeyProblem::Wrong))),
            "{err:?}"
        );
        assert!(damaged_copies(crashed.path()).is_empty());

        let mut r = open(crashed.path(), Some(&key(1)));
        assert_salvaged(&mut r, &unsent, 2);
        drop(r);
        assert_eq!(
            Replica::inspect(crashed.path()).unwrap(),
            ReplicaFile::Encrypted
        );
        let err = Replica::open(crashed.path()).err();
        assert!(
            matches!(err, Some(Error::ReplicaKey(KeyProblem::Missing))),
            "{err:?}"
        );
    }

    #[test]
    fn test_an_encrypted_truncated_replica_is_salvaged() {
        let dir = tempfile::tempdir().unwrap();
        replica_with_history(dir.path(), Some(&key(1)), 40);
        let mut r = open(dir.path(), Some(&key(1)));
        let unsent = vec![household(&mut r, "新户甲")];
        drop(r);
        truncate_to_half(dir.path());
        let mut r = open(dir.path(), Some(&key(1)));
        assert_salvaged(&mut r, &unsent, 1);
    }
}
