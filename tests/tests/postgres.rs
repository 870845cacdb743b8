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
