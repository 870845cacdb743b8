//! `gridsync-server admin backup` while devices upload, the store lost, `admin restore` of that
//! backup: the devices repair the restored relay, and in the end every change any device made is
//! on it exactly once. The binary as operators run it.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{free_port, household, server_bin, start};
use std::sync::Arc;
use std::time::Duration;

use gridsync_core::{Error, Query, Replica, transport};

const PASSWORD: &str = "backup-test-password";
/// Devices uploading while the backup is taken.
const DEVICES: usize = 3;
const ROUNDS: usize = 8;
const PER_ROUND: usize = 10;
/// Households each device writes and syncs at the end, which only it and the relay then hold.
const EXTRA: usize = 3;
/// Households of the device that signs in after the backup.
const LATE: usize = 5;

fn admin(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(server_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        writeln!(child.stdin.take().unwrap(), "{text}").unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn admin_ok(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = admin(data, args, stdin);
    assert!(
        out.status.success(),
        "admin {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Entries in the log of the store in `data`, read with SQLite directly.
fn log_entries(data: &Path) -> i64 {
    let conn = rusqlite::Connection::open(data.join("gridsync.sqlite3")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap()
}

async fn sign_in(dir: &Path, url: &str, user: &str) -> Replica {
    let mut r = Replica::open(dir).unwrap();
    transport::sign_in(&mut r, url, user, PASSWORD, "")
        .await
        .unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backup_during_uploads_restored_and_repaired_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = data.path().join("store");
    admin_ok(
        &store,
        &["area", "add", "g1", "--name", "一网格", "--level", "grid"],
        None,
    );
    for n in 0..=DEVICES + 1 {
        let user = format!("w{n}");
        let args = [
            "user",
            "add",
            &user,
            "--name",
            &user,
            "--role",
            "grid_worker",
            "--area",
            "g1",
        ];
        admin_ok(&store, &args, Some(PASSWORD));
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start(&store, port);
    let dirs: Vec<_> = (0..=DEVICES + 1)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut replicas = Vec::new();
    for (n, dir) in dirs.iter().enumerate().take(DEVICES) {
        replicas.push(sign_in(dir.path(), &url, &format!("w{n}")).await);
    }

    // Devices write and sync in rounds; halfway through the first device's rounds the backup is
    // taken, while the others go on uploading.
    let halfway = Arc::new(tokio::sync::Notify::new());
    let tasks: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .map(|(n, mut r)| {
            let halfway = halfway.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    for k in 0..PER_ROUND {
                        household(&mut r, format!("设备{n}第{round}轮{k}"));
                    }
                    transport::sync_once(&mut r, None).await.unwrap();
                    if n == 0 && round == ROUNDS / 2 {
                        halfway.notify_one();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r
            })
        })
        .collect();
    halfway.notified().await;
    let file = backups.path().join("nightly.sqlite3");
    let (dir, path) = (store.clone(), file.clone());
    let out = tokio::task::spawn_blocking(move || {
        admin_ok(&dir, &["backup", path.to_str().unwrap()], None)
    })
    .await
    .unwrap();
    assert!(out.contains("已备份 backup written"), "{out}");

    // Restoring over the store of a serving relay is refused, and changes nothing.
    let (dir, path) = (store.clone(), file.clone());
    let refused = tokio::task::spawn_blocking(move || {
        admin(&dir, &["restore", path.to_str().unwrap()], None)
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("stop the relay") && err.contains("nothing was changed"),
        "{err}"
    );

    let mut replicas = Vec::new();
    for t in tasks {
        replicas.push(t.await.unwrap());
    }
    for r in replicas.iter_mut() {
        transport::sync_once(r, None).await.unwrap();
        assert_eq!(r.status().unwrap().unsent_changes, 0);
    }
    for (n, r) in replicas.iter_mut().enumerate() {
        for k in 0..EXTRA {
            household(r, format!("设备{n}最后{k}"));
        }
        transport::sync_once(r, None).await.unwrap();
    }
    // A device that signs in after the backup: the restored relay will not know it.
    let mut late = sign_in(dirs[DEVICES].path(), &url, &format!("w{DEVICES}")).await;
    for k in 0..LATE {
        household(&mut late, format!("晚到设备{k}"));
    }
    transport::sync_once(&mut late, None).await.unwrap();
    let total = DEVICES * (ROUNDS * PER_ROUND + EXTRA) + LATE;
    assert_eq!(log_entries(&store) as usize, total);

    // The disk dies with the relay on it; the backup is restored onto a new one.
    server.kill().unwrap();
    server.wait().unwrap();
    std::fs::remove_dir_all(&store).unwrap();
    let out = admin_ok(&store, &["restore", file.to_str().unwrap()], None);
    assert!(out.contains("已恢复 restored"), "{out}");
    let restored = log_entries(&store) as usize;
    assert!(
        restored > 0 && restored < DEVICES * ROUNDS * PER_ROUND,
        "the backup was taken mid-upload: {restored} of {total} changes"
    );
    let mut server = start(&store, port);

    // Every device gives back what the backup lacks: its cursor, or the witness of its last
    // upload, is one the restored relay cannot vouch for.
    for r in replicas.iter_mut() {
        let report = transport::sync_once(r, None).await.unwrap();
        assert!(report.stats.repaired_docs > 0, "{report:?}");
    }
    let err = transport::sync_once(&mut late, None).await.err();
    assert!(matches!(err, Some(Error::Unauthorized(_))), "{err:?}");
    transport::sign_in(&mut late, &url, &format!("w{DEVICES}"), PASSWORD, "")
        .await
        .unwrap();
    transport::sync_once(&mut late, None).await.unwrap();
    for r in replicas.iter_mut().chain([&mut late]) {
        transport::sync_once(r, None).await.unwrap();
        assert_eq!(r.status().unwrap().unsent_changes, 0);
        assert_eq!(r.count(&Query::default()).unwrap() as usize, total);
    }

    // A new device receives each change exactly once: nothing lost, nothing duplicated.
    let mut fresh = sign_in(dirs[DEVICES + 1].path(), &url, &format!("w{}", DEVICES + 1)).await;
    let report = transport::sync_once(&mut fresh, None).await.unwrap();
    assert_eq!(report.stats.changes_received as usize, total);
    assert_eq!(fresh.count(&Query::default()).unwrap() as usize, total);
    assert_eq!(log_entries(&store) as usize, total);
    eprintln!(
        "backup test: backup held {restored} of {total} changes; after restore and repair the relay \
         has all {total}, none duplicated"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
