//! The relay killed with SIGKILL while devices upload: after restarts, every acknowledged change
//! is there, every unacknowledged one is re-sent, nothing is duplicated, and all replicas agree.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::time::Duration;

use gridsync_core::transport;
use gridsync_core::{Query, Replica};

mod common;
use common::{admin, free_port, household, start};

const PASSWORD: &str = "kill-test-password";
const DEVICES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_relay_killed_mid_upload_loses_and_duplicates_nothing() {
    let data = tempfile::tempdir().unwrap();
    admin(
        data.path(),
        &["area", "add", "g1", "--name", "一网格", "--level", "grid"],
        None,
    );
    for n in 0..=DEVICES {
        let user = format!("w{n}");
        admin(
            data.path(),
            &[
                "user",
                "add",
                &user,
                "--name",
                &user,
                "--role",
                "grid_worker",
                "--area",
                "g1",
            ],
            Some(PASSWORD),
        );
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start(data.path(), port);

    let dirs: Vec<_> = (0..=DEVICES)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut replicas = Vec::new();
    for (n, dir) in dirs.iter().enumerate().take(DEVICES) {
        let mut r = Replica::open(dir.path()).unwrap();
        transport::sign_in(&mut r, &url, &format!("w{n}"), PASSWORD, "")
            .await
            .unwrap();
        replicas.push(r);
    }

    // Devices write and sync in a loop; the relay is killed and restarted underneath them.
    let tasks: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .map(|(n, mut r)| {
            tokio::spawn(async move {
                let mut failures = 0;
                for round in 0..12 {
                    for k in 0..10 {
                        household(&mut r, format!("设备{n}第{round}轮{k}"));
                    }
                    if transport::sync_once(&mut r, None).await.is_err() {
                        failures += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                (r, failures)
            })
        })
        .collect();
    let mut kills = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tokio::time::sleep(Duration::from_millis(150 + x % 400)).await;
        server.kill().unwrap(); // SIGKILL: no shutdown, no flush
        server.wait().unwrap();
        kills += 1;
        server = start(data.path(), port);
    }
    let mut replicas = Vec::new();
    let mut failed_syncs = 0;
    for t in tasks {
        let (r, failures) = t.await.unwrap();
        failed_syncs += failures;
        replicas.push(r);
    }

    // With the relay up for good, every device syncs until it has nothing left to send.
    for _ in 0..3 {
        for r in replicas.iter_mut() {
            for _ in 0..5 {
                if transport::sync_once(r, None).await.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let total = DEVICES * 12 * 10;
    for r in &replicas {
        assert_eq!(
            r.status().unwrap().unsent_changes,
            0,
            "everything acknowledged in the end"
        );
        assert_eq!(r.count(&Query::default()).unwrap() as usize, total);
    }
    // A fresh device receives each change exactly once: nothing lost, nothing duplicated.
    let mut fresh = Replica::open(dirs[DEVICES].path()).unwrap();
    transport::sign_in(&mut fresh, &url, &format!("w{DEVICES}"), PASSWORD, "")
        .await
        .unwrap();
    let report = transport::sync_once(&mut fresh, None).await.unwrap();
    assert_eq!(report.stats.changes_received as usize, total);
    assert_eq!(fresh.count(&Query::default()).unwrap() as usize, total);
    eprintln!(
        "relay kill test: {kills} SIGKILLs, {failed_syncs} syncs cut, {total} records, none lost or duplicated"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
