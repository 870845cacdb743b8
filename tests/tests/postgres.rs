//! The relay on PostgreSQL (`--database`): devices sync through it and converge, offline edits
//! of the same case included, and a restart on the same database keeps everything: records,
//! the log with its cursors, accounts and devices. Each test makes a database of its own and
//! drops it at the end; without PostgreSQL it says so and skips (CI requires it:
//! `GRIDSYNC_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::net::SocketAddr;

use gridsync_core::Query;
use gridsync_core::record::Kind;
use gridsync_e2e::{TestServer, fields, household, snapshot, sync};
use gridsync_server::storage::postgres::testing::TestDatabase;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_devices_converge_through_a_relay_on_postgres_and_a_restart_keeps_everything() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = TestServer::start_postgres(data.path(), any_port, db.url()).await;
    let (da, dbr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    let mut b = server.worker(dbr.path(), "li", &["g1"]).await;
    let h = household(&mut a, "张三");
    let case = a
        .create(
            Kind::Case,
            fields(json!({"case_type": "low_income", "household_id": h, "status": "open"})),
        )
        .unwrap();
    sync(&mut a).await;
    sync(&mut b).await;
    assert_eq!(b.count(&Query::default()).unwrap(), 2);

    // Both edit the case offline, then sync in turn: one case with both edits everywhere.
    a.update(&case.id, fields(json!({"notes": "已联系低保专干。"})))
        .unwrap();
    b.update(&case.id, fields(json!({"status": "assessing"})))
        .unwrap();
    sync(&mut a).await;
    sync(&mut b).await;
    sync(&mut a).await;
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    let merged = a.get(&case.id).unwrap();
    assert_eq!(merged.fields["notes"], "已联系低保专干。");
    assert_eq!(merged.fields["status"], "assessing");

    // Nothing is in a SQLite file: the data directory holds no store.
    assert!(!data.path().join(gridsync_server::storage::DB_FILE).exists());

    // A restart on the same database (a fresh data directory even): the devices stay signed
    // in, their cursors hold, and what was written in between arrives.
    let addr = server.addr;
    server.stop().await;
    let data2 = tempfile::tempdir().unwrap();
    let server = TestServer::start_postgres(data2.path(), addr, db.url()).await;
    a.create(
        Kind::Visit,
        fields(json!({
            "household_id": h, "visit_type": "routine", "outcome": "met",
            "started_at": "2026-11-02T09:00:00Z", "people_met": ["户主"],
        })),
    )
    .unwrap();
    let written = a.status().unwrap().unsent_changes;
    assert!(written > 0);
    sync(&mut a).await;
    let report = sync(&mut b).await;
    assert_eq!(
        report.stats.changes_received as u64, written as u64,
        "only what a wrote since b's cursor: {report:?}"
    );
    assert_eq!(b.count(&Query::default()).unwrap(), 3);
    assert_eq!(snapshot(&mut a), snapshot(&mut b));

    // A third device signs in on the restarted relay and gets everything.
    let dc = tempfile::tempdir().unwrap();
    let mut c = server.device(dc.path(), "wang").await;
    sync(&mut c).await;
    assert_eq!(snapshot(&mut c), snapshot(&mut a));
    assert_eq!(server.stats().await["records"], 3);
    server.stop().await;
}

/// Two relays on one database, as behind a load balancer: a device on each converges, a live
/// device on one is pushed what the other accepted, and a relay's cached copy of a record never
/// misses what the other relay accepted into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_two_relays_on_one_database_push_across_and_never_serve_a_stale_copy() {
    use std::sync::{Arc, Mutex};

    use gridsync_core::transport;
    use gridsync_e2e::eventually;
    use gridsync_server::storage::RecordQuery;
    use tokio::sync::Notify;

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = TestServer::start_postgres(d1.path(), any_port, db.url()).await;
    let two = TestServer::start_postgres(d2.path(), any_port, db.url()).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = one.worker(dirs[0].path(), "wang", &["g1"]).await;
    // Accounts are the database's: li signs in on the second relay.
    two.user("li", gridsync_server::accounts::Role::GridWorker, &["g1"])
        .await;
    let mut b = two.device(dirs[1].path(), "li").await;
    let c = Arc::new(Mutex::new(
        one.worker(dirs[2].path(), "zhao", &["g1"]).await,
    ));
    let (writes, stop) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let live = tokio::spawn(transport::run_live(c.clone(), writes, stop.clone()));

    let h = household(&mut a, "张三");
    let case = a
        .create(
            Kind::Case,
            fields(json!({"case_type": "low_income", "household_id": h, "status": "open"})),
        )
        .unwrap();
    sync(&mut a).await;
    sync(&mut b).await;
    assert_eq!(
        b.count(&Query::default()).unwrap(),
        2,
        "written on one, read on two"
    );

    // b's edit goes to the second relay; the live device on the first is pushed it.
    b.update(&case.id, fields(json!({"status": "assessing"})))
        .unwrap();
    sync(&mut b).await;
    let status = |c: &Arc<Mutex<gridsync_core::Replica>>| {
        c.lock()
            .unwrap()
            .get(&case.id)
            .map(|r| r.fields["status"].clone())
            .ok()
    };
    assert!(
        eventually(10, || status(&c) == Some(json!("assessing"))).await,
        "a live device on the first relay is pushed what the second accepted"
    );

    // The first relay had the case cached from a's upload: a's next edit there builds on a
    // copy holding b's edit too, so its index and copy hold both.
    a.update(&case.id, fields(json!({"notes": "已联系低保专干。"})))
        .unwrap();
    sync(&mut a).await;
    let row = one
        .state
        .relay
        .queries()
        .list_records(&RecordQuery {
            grids: vec!["g1".into()],
            ids: vec![case.id.clone()],
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        row.rows[0].row.status.as_deref(),
        Some("assessing"),
        "the first relay's copy missed the second's edit"
    );
    sync(&mut b).await;
    sync(&mut a).await;
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    assert!(
        eventually(10, || {
            let mut c = c.lock().unwrap();
            snapshot(&mut c) == snapshot(&mut a)
        })
        .await,
        "the live device converged too"
    );
    stop.notify_one();
    live.await.unwrap().unwrap();
    one.stop().await;
    two.stop().await;
}

/// Two relays on one database that hear nothing of each other (no notices): the first relay's
/// cached copy of a case lacks the second's edit, and its commit on that copy is refused and
/// applied again on a fresh one, so its index holds both edits. Without the commit's check the
/// first relay would index the case as it was before the second relay's edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_relay_never_commits_on_a_copy_another_relay_changed_meanwhile() {
    use std::sync::Arc;

    use gridsync_server::storage::{PostgresStorage, RecordQuery};
    use gridsync_server::{Config, Server};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let deaf = |dir: &std::path::Path| {
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let url = db.url().to_string();
        async move {
            let store = Arc::new(PostgresStorage::connect(&url).await.unwrap());
            TestServer::serve(Server::with_storage(store.clone(), store, &config), &config).await
        }
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = deaf(d1.path()).await;
    let two = deaf(d2.path()).await;
    let (da, dbr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = one.worker(da.path(), "wang", &["g1"]).await;
    let mut b = two.worker(dbr.path(), "li", &["g1"]).await;
    let h = household(&mut a, "张三");
    let case = a
        .create(
            Kind::Case,
            fields(json!({"case_type": "low_income", "household_id": h, "status": "open"})),
        )
        .unwrap();
    sync(&mut a).await;
    sync(&mut b).await;
    b.update(&case.id, fields(json!({"status": "assessing"})))
        .unwrap();
    sync(&mut b).await;
    // The first relay still holds its copy from a's upload, without b's edit.
    a.update(&case.id, fields(json!({"notes": "已联系低保专干。"})))
        .unwrap();
    let report = sync(&mut a).await;
    assert_eq!(report.stats.rejected, 0, "{report:?}");
    let listed = one
        .state
        .relay
        .queries()
        .list_records(&RecordQuery {
            grids: vec!["g1".into()],
            ids: vec![case.id.clone()],
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.rows[0].row.status.as_deref(),
        Some("assessing"),
        "the first relay indexed the case on a copy without the second's edit"
    );
    sync(&mut b).await;
    sync(&mut a).await;
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    one.stop().await;
    two.stop().await;
}

/// Two relays on one database behind a load balancer, three devices writing and syncing through
/// it; one relay, a process of its own, is SIGKILLed in the middle of their uploads. Its devices
/// reconnect through the balancer to the other relay and lose nothing: afterwards every record
/// a device wrote is on every device and in the surviving relay's index, and every change is
/// logged exactly once (an upload the killed relay had half done is either all there or sent
/// again, never half-visible).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_relay_killed_under_load_loses_nothing_and_its_devices_go_on_through_the_other() {
    use std::collections::{BTreeSet, HashSet};
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use gridsync_core::{Replica, transport};
    use gridsync_e2e::proxy::Proxy;
    use gridsync_e2e::{PASSWORD, eventually};
    use gridsync_server::accounts::Role;
    use gridsync_server::storage::{KindFilter, RecordQuery};

    const WRITERS: [&str; 3] = ["wang", "li", "zhao"];
    const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let d2 = tempfile::tempdir().unwrap();
    let two = TestServer::start_postgres(d2.path(), any_port, db.url()).await;
    for user in WRITERS.iter().chain(&["chen"]) {
        two.user(user, Role::GridWorker, &["g1"]).await;
    }

    // The relay to kill: `gridsync-test-relay` on the same database, on a port of its own.
    let d1 = tempfile::tempdir().unwrap();
    let mut one = Command::new(env!("CARGO_BIN_EXE_gridsync-test-relay"))
        .arg(d1.path())
        .arg("127.0.0.1:0")
        .arg(db.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(one.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let one_addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the relay process said {line:?}"))
        .parse()
        .unwrap();
    let balancer = Proxy::balance(vec![one_addr, two.addr]).await;

    let written: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let (syncs, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let dirs: Vec<_> = WRITERS
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut writers = Vec::new();
    for (n, (user, dir)) in WRITERS.iter().zip(&dirs).enumerate() {
        let mut r = Replica::open(dir.path()).unwrap();
        transport::sign_in(&mut r, &balancer.url(), user, PASSWORD, "测试设备")
            .await
            .unwrap();
        let (written, syncs, failed, stop) =
            (written.clone(), syncs.clone(), failed.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..10_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // A few writes between syncs, every fourth round a batch of 30: large uploads
                // for the relay to die in the middle of.
                let count = if round % 4 == n as u64 { 30 } else { 3 };
                for k in 0..count {
                    let f = fields(json!({
                        "head_name": format!("{user}第{round}轮{k}"),
                        "household_type": "registered",
                    }));
                    let id = r.create(Kind::Household, f).unwrap().id;
                    written.lock().unwrap().insert(id);
                }
                let done = tokio::time::timeout(SYNC_TIMEOUT, transport::sync_once(&mut r, None));
                match done.await {
                    Ok(Ok(_)) => syncs.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            r
        }));
    }

    // Kill the first relay once uploads are going through both (the balancer takes turns).
    assert!(
        eventually(60, || syncs.load(Ordering::Relaxed) >= 6).await,
        "the devices sync through the balancer"
    );
    one.kill().unwrap(); // SIGKILL: no shutdown, no flush
    one.wait().unwrap();
    let at_kill = syncs.load(Ordering::Relaxed);
    assert!(
        eventually(60, || syncs.load(Ordering::Relaxed) >= at_kill + 6).await,
        "the devices go on through the other relay"
    );
    stop.store(true, Ordering::Relaxed);
    let mut devices = Vec::new();
    for w in writers {
        devices.push(w.await.unwrap());
    }

    // Every device sends what it still holds (bounded), then all read the same.
    for r in &mut devices {
        for _ in 0..10 {
            let _ = tokio::time::timeout(SYNC_TIMEOUT, transport::sync_once(r, None)).await;
            if r.status().unwrap().unsent_changes == 0 {
                break;
            }
        }
        assert_eq!(
            r.status().unwrap().unsent_changes,
            0,
            "an upload never went"
        );
        assert!(
            r.status().unwrap().rejected.is_empty(),
            "a change was refused"
        );
    }
    for r in &mut devices {
        sync(r).await;
    }
    let dr = tempfile::tempdir().unwrap();
    let mut reader = two.device(dr.path(), "chen").await;
    sync(&mut reader).await;
    let written = written.lock().unwrap().clone();
    let read: BTreeSet<String> = snapshot(&mut reader).into_iter().map(|r| r.id).collect();
    assert_eq!(
        read, written,
        "a record written on a device is missing or extra"
    );
    for r in &mut devices {
        assert_eq!(snapshot(r), snapshot(&mut reader), "the devices differ");
    }

    // The surviving relay's index holds each record once; its log each change once.
    let storage = two.state.relay.log();
    let all = RecordQuery {
        grids: vec!["g1".into()],
        ..RecordQuery::default()
    };
    assert_eq!(
        two.state
            .relay
            .queries()
            .list_records(&all)
            .await
            .unwrap()
            .total,
        written.len() as u64
    );
    let (log, more) = storage
        .log_since("g1", &KindFilter::All, 0, 1_000_000, usize::MAX)
        .await
        .unwrap();
    assert!(!more);
    let hashes: HashSet<_> = log.iter().map(|e| e.hash).collect();
    assert_eq!(hashes.len(), log.len(), "a change is logged twice");
    eprintln!(
        "{} records, {} syncs ({} before the kill), {} failed syncs",
        written.len(),
        syncs.load(Ordering::Relaxed),
        at_kill,
        failed.load(Ordering::Relaxed)
    );
    two.stop().await;
}
