//! Damaged replicas against a real relay: a phone whose file was truncated, had a page
//! overwritten, or lost its WAL after a crash keeps its unsent work, gets everything else back
//! from the relay (its own synced records included, which catch-up never sends back), and ends
//! equal to the other devices. A phone "after a crash" is a copy of its replica folder taken while
//! the replica is open: the files as a SIGKILL or a power cut leaves them.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::path::Path;

use gridsync_core::store::{RecoveryKind, ReplicaFile};
use gridsync_core::{Query, Replica, ReplicaKey, transport};
use gridsync_e2e::{PASSWORD, TestServer, copy_dir, fields, household, snapshot, sync};
use serde_json::json;

const DB_FILE: &str = "replica.sqlite3";

fn open(dir: &Path, key: Option<&ReplicaKey>) -> Replica {
    match key {
        Some(key) => Replica::open_with_key(dir, key).unwrap(),
        None => Replica::open(dir).unwrap(),
    }
}

async fn signed_in(
    server: &TestServer,
    dir: &Path,
    user: &str,
    key: Option<&ReplicaKey>,
) -> Replica {
    server
        .user(user, gridsync_server::accounts::Role::GridWorker, &["g1"])
        .await;
    let mut r = open(dir, key);
    transport::sign_in(&mut r, &server.url(), user, PASSWORD, "测试设备")
        .await
        .unwrap();
    r
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

/// 200 bytes of a fixed xorshift sequence written over the start of the file's middle page.
fn overwrite_middle(dir: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join(DB_FILE);
    let pages = std::fs::metadata(&path).unwrap().len() / 4096;
    assert!(pages >= 8, "a file of {pages} pages is too small to damage");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
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

/// Wang's phone has 30 households it synced and 10 of Li's; after a restart of the app it
/// writes two households and edits one of Li's, unsent, and the phone dies. `damage` is done to
/// the folder it leaves; then the app starts again and syncs.
async fn damaged_phone_recovers(key: Option<ReplicaKey>, damage: fn(&Path)) {
    let data = tempfile::tempdir().unwrap();
    let (phone, crashed, other, fresh) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let server = TestServer::start(data.path()).await;
    let mut a = signed_in(&server, phone.path(), "wang", key.as_ref()).await;
    let mut b = signed_in(&server, other.path(), "li", None).await;
    for n in 0..30 {
        household(&mut a, &format!("王家{n}"));
    }
    sync(&mut a).await;
    let li: Vec<String> = (0..10)
        .map(|n| household(&mut b, &format!("李家{n}")))
        .collect();
    sync(&mut b).await;
    sync(&mut a).await;
    drop(a);

    let mut a = open(phone.path(), key.as_ref());
    let unsent = [household(&mut a, "离线甲"), household(&mut a, "离线乙")];
    a.update(&li[0], fields(json!({"head_name": "李家0（已核实）"})))
        .unwrap();
    copy_dir(phone.path(), crashed.path());
    drop(a);
    damage(crashed.path());

    let mut a = open(crashed.path(), key.as_ref());
    let recovery = a.recovery().expect("the damage is found and said").clone();
    assert_eq!(recovery.kind, RecoveryKind::Salvaged, "{recovery:?}");
    assert_eq!(recovery.kept_changes, 3, "{recovery:?}");
    assert!(
        recovery.message().contains("已保留 3 条尚未上传的修改"),
        "{}",
        recovery.message()
    );
    assert!(crashed.path().join(recovery.moved_to.unwrap()).exists());
    if key.is_some() {
        assert_eq!(
            Replica::inspect(crashed.path()).unwrap(),
            ReplicaFile::Encrypted
        );
    }

    // Still signed in: it uploads what it kept and repairs everything else from the relay.
    let report = sync(&mut a).await;
    assert!(report.stats.repaired_docs >= 40, "{report:?}");
    assert_eq!(a.status().unwrap().unsent_changes, 0);
    sync(&mut b).await;
    assert_eq!(a.count(&Query::default()).unwrap(), 42);
    assert_eq!(b.count(&Query::default()).unwrap(), 42);
    assert_eq!(
        a.get(&li[0]).unwrap().fields["head_name"],
        "李家0（已核实）"
    );
    for id in &unsent {
        assert_eq!(b.get(id).unwrap().grid_id, "g1");
    }
    assert_eq!(snapshot(&mut a), snapshot(&mut b));

    // Repaired once: the next sync is an ordinary catch-up, and a new device gets it all.
    let again = sync(&mut a).await;
    assert_eq!(again.stats.repaired_docs, 0, "{again:?}");
    let mut c = signed_in(&server, fresh.path(), "zhao", None).await;
    sync(&mut c).await;
    assert_eq!(snapshot(&mut c), snapshot(&mut a));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_truncated_replica_keeps_unsent_work_and_gets_the_rest_back_from_the_relay() {
    damaged_phone_recovers(None, truncate_to_half).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_encrypted_replica_with_overwritten_page_is_salvaged_with_its_key() {
    let key = ReplicaKey::raw(*b"a 32-byte key from the keystore!");
    damaged_phone_recovers(Some(key), overwrite_middle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_deleted_wal_after_a_crash_gets_own_synced_records_back() {
    let data = tempfile::tempdir().unwrap();
    let (phone, crashed, other) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let server = TestServer::start(data.path()).await;
    let mut a = signed_in(&server, phone.path(), "wang", None).await;
    let mut b = signed_in(&server, other.path(), "li", None).await;
    for n in 0..5 {
        household(&mut a, &format!("王家{n}"));
    }
    sync(&mut a).await;
    drop(a);

    // Since the app last started, everything it did is in the WAL: 20 households it synced
    // (the relay acknowledged them) and 5 of Li's it received.
    let mut a = open(phone.path(), None);
    for n in 5..25 {
        household(&mut a, &format!("王家{n}"));
    }
    sync(&mut a).await;
    for n in 0..5 {
        household(&mut b, &format!("李家{n}"));
    }
    sync(&mut b).await;
    sync(&mut a).await;
    assert_eq!(a.count(&Query::default()).unwrap(), 30);
    copy_dir(phone.path(), crashed.path());
    drop(a);
    std::fs::remove_file(crashed.path().join(format!("{DB_FILE}-wal"))).unwrap();

    let mut a = open(crashed.path(), None);
    let recovery = a.recovery().expect("the lost journal is said").clone();
    assert_eq!(recovery.kind, RecoveryKind::JournalLost, "{recovery:?}");
    assert!(
        recovery.message().contains("-wal"),
        "{}",
        recovery.message()
    );
    assert_eq!(a.count(&Query::default()).unwrap(), 5, "what the file held");

    // The relay never sends a device its own changes by catch-up: only the repair brings back
    // the 20 households this phone wrote and lost.
    let report = sync(&mut a).await;
    assert!(report.stats.repaired_docs >= 25, "{report:?}");
    assert_eq!(a.count(&Query::default()).unwrap(), 30);
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    server.stop().await;
}
