//! Catch-up by cursor, restarts, scope and live pushes, against a real relay.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::sync::{Arc, Mutex};

use gridsync_core::record::Kind;
use gridsync_core::transport;
use gridsync_core::{Query, Replica};
use gridsync_e2e::{TestServer, eventually, fields, household, offline_replica, snapshot, sync};
use serde_json::json;
use tokio::sync::Notify;

fn visit(household_id: &str, n: usize) -> serde_json::Map<String, serde_json::Value> {
    fields(json!({
        "household_id": household_id,
        "visit_type": "routine",
        "outcome": "met",
        "started_at": format!("2026-10-{:02}T09:00:00Z", 1 + n % 28),
        "observations": "老人身体状况良好，家中整洁。".repeat(4),
        "people_met": ["户主"],
    }))
}

/// The offline-week scenario at the scale: 2,000 records on both devices, 200 of them
/// changed while A was away. A must receive those 200 records' changes and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_offline_device_receives_only_changes_since_its_cursor() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    let mut b = server.worker(db.path(), "li", &["g1"]).await;

    let mut ids = Vec::new();
    let h = household(&mut b, "张三");
    ids.push(h.clone());
    for n in 0..1999 {
        ids.push(b.create(Kind::Visit, visit(&h, n)).unwrap().id);
    }
    let unsent = b.status().unwrap().unsent_changes;
    let first = sync(&mut b).await;
    assert_eq!(first.stats.changes_sent, unsent);
    assert_eq!(b.status().unwrap().unsent_changes, 0);
    let initial = sync(&mut a).await;
    assert_eq!(a.count(&Query::default()).unwrap(), 2000);
    assert!(initial.stats.changes_received >= 2000);

    // A goes offline for a week; B changes every 10th record.
    let changed: Vec<&String> = ids.iter().skip(1).step_by(10).collect();
    assert_eq!(changed.len(), 200);
    for id in &changed {
        b.update(id, fields(json!({"outcome": "nobody_home"})))
            .unwrap();
    }
    sync(&mut b).await;

    let report = sync(&mut a).await;
    assert_eq!(
        report.stats.docs_received, 200,
        "only the changed records arrive"
    );
    assert_eq!(
        report.stats.changes_received, 200,
        "one change per changed record"
    );
    assert_eq!(report.stats.changes_sent, 0);
    assert!(
        report.messages_received <= 3,
        "welcome + one batch: {report:?}"
    );
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    eprintln!(
        "offline week: received {} records, {} changes, {} bytes in {} messages; sent {} bytes",
        report.stats.docs_received,
        report.stats.changes_received,
        report.bytes_received,
        report.messages_received,
        report.bytes_sent
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_server_restart_between_syncs_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    let mut b = server.worker(db.path(), "li", &["g1"]).await;
    let h = household(&mut a, "李四");
    sync(&mut a).await;

    let server = server.restart().await;
    a.create(Kind::Visit, visit(&h, 1)).unwrap();
    sync(&mut a).await;
    let server = server.restart().await;
    sync(&mut b).await;
    assert_eq!(b.count(&Query::default()).unwrap(), 2);
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    assert_eq!(a.status().unwrap().unsent_changes, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_replica_dropped_without_closing_keeps_every_returned_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let mut r = offline_replica(dir.path(), "wang", &["g1"]);
        let h = household(&mut r, "王五");
        ids.push(h.clone());
        for n in 0..100 {
            ids.push(r.create(Kind::Visit, visit(&h, n)).unwrap().id);
        }
        // Past the compaction threshold on one document.
        for n in 0..80 {
            r.update(&h, fields(json!({"notes": format!("第{n}次备注")})))
                .unwrap();
        }
        // No destructor runs: nothing gets a chance to flush or close.
        std::mem::forget(r);
    }
    let mut r = Replica::open(dir.path()).unwrap();
    for id in &ids {
        r.get(id).unwrap();
    }
    assert_eq!(r.get(&ids[0]).unwrap().fields["notes"], "第79次备注");
    // A visit moves its household's last-visit date only when it is newer: the 100 visits cycle
    // through 28 days, so 28 of them touch the household.
    assert_eq!(r.status().unwrap().unsent_changes, 1 + 100 + 28 + 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_devices_receive_only_their_grids() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut g1 = server.worker(dirs[0].path(), "wang", &["g1"]).await;
    let mut g2 = server.worker(dirs[1].path(), "li", &["g2"]).await;
    let mut both = server.worker(dirs[2].path(), "office", &["g1", "g2"]).await;
    household(&mut g1, "一网格户");
    household(&mut g2, "二网格户");
    sync(&mut g1).await;
    sync(&mut g2).await;
    sync(&mut g1).await;
    sync(&mut both).await;
    assert_eq!(g1.count(&Query::default()).unwrap(), 1);
    assert_eq!(g2.count(&Query::default()).unwrap(), 1);
    assert_eq!(both.count(&Query::default()).unwrap(), 2);
    let only = g1.list(&Query::default()).unwrap();
    assert_eq!(only[0].grid_id, "g1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_live_device_receives_a_push_without_asking() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    let c = Arc::new(Mutex::new(
        server.worker(dc.path(), "office", &["g1"]).await,
    ));
    let (writes, stop) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let live = tokio::spawn(transport::run_live(c.clone(), writes.clone(), stop.clone()));

    let count = |c: &Arc<Mutex<Replica>>| c.lock().unwrap().count(&Query::default()).unwrap();
    // Let the live session finish its catch-up, then write elsewhere.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    household(&mut a, "赵六");
    sync(&mut a).await;
    assert!(
        eventually(10, || count(&c) == 1).await,
        "pushed to the live device"
    );

    // And a write on the live device goes up without a manual sync.
    let id = household(&mut c.lock().unwrap(), "钱七");
    writes.notify_one();
    let synced = eventually(10, || {
        c.lock().unwrap().status().unwrap().unsent_changes == 0
    })
    .await;
    assert!(synced, "live device uploaded its write");
    sync(&mut a).await;
    a.get(&id).unwrap();

    stop.notify_one();
    live.await.unwrap().unwrap();
    server.stop().await;
}
