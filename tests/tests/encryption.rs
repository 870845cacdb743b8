//! The encrypted replica against a real relay: nothing a resident told the grid worker is
//! readable in the phone's replica folder, whatever file of it one looks in, and a revoked
//! device's encrypted replica is wiped like a plain one.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::path::Path;

use gridsync_core::record::Kind;
use gridsync_core::store::{KeyProblem, ReplicaFile};
use gridsync_core::{Error, Query, Replica, ReplicaKey, transport};
use gridsync_e2e::{PASSWORD, TestServer, fields, sync};
use gridsync_server::accounts::Role;
use serde_json::json;

const NAME: &str = "欧阳明珠";
const ID_NUMBER: &str = "420102195003071234";
const NOTE: &str = "申请人丈夫去年工伤致残，家中两个孩子上学，收入证明待补交";
/// Written on the other device and received by the encrypted one.
const RECEIVED_NOTE: &str = "社区已联系民政办，下周二上门复核";

fn key() -> ReplicaKey {
    ReplicaKey::raw(*b"a 32-byte key from the keystore!")
}

/// Every file in the folder, by name, with its bytes.
fn folder(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The secrets found in some file of the folder, with the file.
fn readable(dir: &Path) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for (name, bytes) in folder(dir) {
        for secret in [NAME, ID_NUMBER, NOTE, RECEIVED_NOTE] {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                found.push((secret, name.clone()));
            }
        }
    }
    found
}

async fn signed_in(server: &TestServer, dir: &Path, key: Option<&ReplicaKey>) -> Replica {
    let mut r = match key {
        Some(key) => Replica::open_with_key(dir, key).unwrap(),
        None => Replica::open(dir).unwrap(),
    };
    transport::sign_in(&mut r, &server.url(), "worker", PASSWORD, "测试设备")
        .await
        .unwrap();
    r
}

/// A household with a resident's name and ID number, and a case with a note about them.
fn write_household_and_case(r: &mut Replica) -> (String, String) {
    let h = r
        .create(
            Kind::Household,
            fields(json!({
                "head_name": NAME, "household_type": "registered", "visit_class": "priority",
                "residents": [{"name": NAME, "id_number": ID_NUMBER, "disability_type": "肢体"}],
            })),
        )
        .unwrap()
        .id;
    let c = r
        .create(
            Kind::Case,
            fields(json!({"case_type": "disability", "household_id": h, "notes": NOTE})),
        )
        .unwrap()
        .id;
    (h, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_no_resident_data_is_readable_anywhere_in_an_encrypted_replica_folder() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    server.user("worker", Role::GridWorker, &["g1"]).await;
    let (dir, plain_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut phone = signed_in(&server, dir.path(), Some(&key())).await;
    let (h, c) = write_household_and_case(&mut phone);
    sync(&mut phone).await;

    // A second, plain device of the same worker adds to the case note; the phone receives it.
    let mut other = signed_in(&server, plain_dir.path(), None).await;
    sync(&mut other).await;
    let note = format!("{NOTE}；{RECEIVED_NOTE}");
    other.update(&c, fields(json!({"notes": note}))).unwrap();
    sync(&mut other).await;
    let report = sync(&mut phone).await;
    assert!(report.stats.changes_received >= 1, "{report:?}");
    assert_eq!(phone.get(&c).unwrap().fields["notes"], note.as_str());
    assert_eq!(
        phone.get(&h).unwrap().fields["residents"][0]["id_number"],
        ID_NUMBER
    );

    // While the replica is open its WAL and shared-memory files exist: they are searched too.
    let names: Vec<String> = folder(dir.path()).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n.ends_with("-wal")) && names.iter().any(|n| n.ends_with("-shm")),
        "{names:?}"
    );
    assert_eq!(readable(dir.path()), vec![], "in the open replica's folder");
    drop(phone);
    assert_eq!(
        readable(dir.path()),
        vec![],
        "in the closed replica's folder"
    );
    // The same search finds all of it in the plain device's folder: it would see a leak.
    drop(other);
    let plain: Vec<&str> = readable(plain_dir.path())
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    for secret in [NAME, ID_NUMBER, NOTE] {
        assert!(
            plain.contains(&secret),
            "{secret} not found in the plain replica: {plain:?}"
        );
    }

    // Reopened, with its key only.
    assert!(matches!(
        Replica::open(dir.path()).err().unwrap(),
        Error::ReplicaKey(KeyProblem::Missing)
    ));
    let mut phone = Replica::open_with_key(dir.path(), &key()).unwrap();
    assert_eq!(phone.get(&c).unwrap().fields["notes"], note.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_revocation_wipes_an_encrypted_replica() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    server.user("worker", Role::GridWorker, &["g1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut phone = signed_in(&server, dir.path(), Some(&key())).await;
    write_household_and_case(&mut phone);
    sync(&mut phone).await;
    // Unsent work too: a revoked device erases everything.
    phone
        .create(
            Kind::Patrol,
            fields(json!({"started_at": "2026-11-01T20:00:00Z"})),
        )
        .unwrap();
    let size_before: usize = folder(dir.path()).iter().map(|(_, b)| b.len()).sum();
    let device = phone.identity().unwrap().device_id.clone();
    assert!(server.accounts.revoke_device(&device).await.unwrap());

    let err = transport::sync_once(&mut phone, None).await.unwrap_err();
    assert!(matches!(err, Error::Revoked(_)), "{err}");
    assert!(phone.identity().is_err());
    assert_eq!(phone.count(&Query::default()).unwrap(), 0);
    drop(phone);

    // Still encrypted, and empty: no identity, no record, no unsent change, a small file.
    assert_eq!(
        Replica::inspect(dir.path()).unwrap(),
        ReplicaFile::Encrypted
    );
    let size_after: usize = folder(dir.path()).iter().map(|(_, b)| b.len()).sum();
    assert!(size_after < size_before, "{size_after} >= {size_before}");
    let phone = Replica::open_with_key(dir.path(), &key()).unwrap();
    assert!(phone.identity().is_err());
    assert_eq!(phone.count(&Query::default()).unwrap(), 0);
    assert!(
        phone
            .outbox_batch(usize::MAX, usize::MAX)
            .unwrap()
            .is_empty()
    );
    assert_eq!(readable(dir.path()), vec![]);
    server.stop().await;
}
