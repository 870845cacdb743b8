//! `gridsync-server admin migrate`: a community's SQLite relay moved into PostgreSQL with real
//! devices. Into an empty database the devices sync on with no repair; a second community
//! merged into the same database (beside its serving relay) repairs, and nobody loses anything.
//! Each test makes a database of its own; without PostgreSQL it says so and skips (CI requires
//! it: `GRIDSYNC_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::path::Path;

use gridsync_core::record::Kind;
use gridsync_core::store::{AttachOptions, AttachSource};
use gridsync_core::{Query, Replica};
use gridsync_e2e::{TestServer, fields, household, snapshot, sync};
use gridsync_server::accounts::{AccountStore, Area};
use gridsync_server::admin::{self, AdminCommand};
use gridsync_server::storage::postgres::testing::TestDatabase;
use gridsync_server::{Config, storage::SqliteStorage};
use serde_json::json;

/// `gridsync-server [--data-dir DIR] admin migrate --from FROM --to URL`, as the binary runs it.
async fn migrate(data_dir: Option<&Path>, from: &Path, url: &str) -> String {
    let mut config = Config::default();
    if let Some(dir) = data_dir {
        config.data_dir = dir.to_path_buf();
    }
    let command = AdminCommand::Migrate {
        from: from.to_path_buf(),
        to: url.to_string(),
    };
    admin::execute(&config, command, &mut &b""[..])
        .await
        .unwrap_or_else(|e| panic!("admin migrate: {e}"))
}

fn photo(r: &mut Replica, id: &str, bytes: &[u8]) -> String {
    let options = AttachOptions {
        media_type: Some("image/jpeg".into()),
        original: true,
        ..AttachOptions::default()
    };
    r.attach(id, AttachSource::Bytes(bytes.to_vec()), options)
        .unwrap()
}

fn read(r: &mut Replica, hash: &str) -> Vec<u8> {
    let mut out = Vec::new();
    r.write_attachment(hash, &mut out).unwrap();
    out
}

fn visit(r: &mut Replica, h: &str, at: &str) -> String {
    r.create(
        Kind::Visit,
        fields(json!({
            "household_id": h, "visit_type": "routine", "outcome": "met",
            "started_at": at, "people_met": ["户主"],
        })),
    )
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_community_copied_into_an_empty_postgres_syncs_on_with_no_repair_and_loses_nothing()
{
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sqlite_dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(sqlite_dir.path()).await;
    let (da, dbr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    let mut b = server.worker(dbr.path(), "li", &["g1"]).await;
    let h = household(&mut a, "张三");
    let case = a
        .create(
            Kind::Case,
            fields(json!({"case_type": "low_income", "household_id": h, "status": "open"})),
        )
        .unwrap()
        .id;
    let bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = photo(&mut a, &h, &bytes);
    sync(&mut a).await;
    sync(&mut b).await;
    b.update(&case, fields(json!({"status": "assessing"})))
        .unwrap();
    sync(&mut b).await;
    sync(&mut a).await;
    assert_eq!(snapshot(&mut a), snapshot(&mut b));

    // The relay stops; meanwhile `a` works offline.
    let addr = server.addr;
    server.stop().await;
    a.update(&case, fields(json!({"notes": "已联系低保专干。"})))
        .unwrap();
    visit(&mut a, &h, "2026-11-02T09:00:00Z");
    let unsent = a.status().unwrap().unsent_changes;
    assert!(unsent > 0);

    // The relay on PostgreSQL keeps its attachments in a data directory of its own: migrate
    // copies the files there.
    let pg_dir = tempfile::tempdir().unwrap();
    let out = migrate(Some(pg_dir.path()), sqlite_dir.path(), db.url()).await;
    assert!(out.starts_with("已原样复制到空数据库"), "{out}");
    assert!(out.contains("附件文件：已复制 1 个"), "{out}");
    let server = TestServer::start_postgres(pg_dir.path(), addr, db.url()).await;

    let report = sync(&mut a).await;
    assert_eq!(report.stats.repaired_docs, 0, "no repair: {report:?}");
    assert_eq!(report.stats.changes_sent as u64, unsent as u64);
    let report = sync(&mut b).await;
    assert_eq!(report.stats.repaired_docs, 0, "no repair: {report:?}");
    assert_eq!(
        report.stats.changes_received as u64, unsent as u64,
        "only what a wrote offline, from b's old cursor: {report:?}"
    );
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    assert_eq!(b.get(&case).unwrap().fields["notes"], "已联系低保专干。");

    // New writes flow both ways, and the photo is served from the copied file.
    let v = visit(&mut b, &h, "2026-11-03T10:00:00Z");
    sync(&mut b).await;
    sync(&mut a).await;
    assert!(a.get(&v).is_ok());
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    let c_dir = tempfile::tempdir().unwrap();
    let mut c = server.worker(c_dir.path(), "zhou", &["g1"]).await;
    sync(&mut c).await;
    c.want_attachment(&hash).unwrap();
    assert_eq!(sync(&mut c).await.stats.attachments_downloaded, 1);
    assert_eq!(read(&mut c, &hash), bytes);
    assert_eq!(snapshot(&mut c), snapshot(&mut a));
    server.stop().await;
}

/// A second community's relay: county c1 and street s1 as the county has them, community m5
/// with grid g5 (the harness adds its own areas only to an empty store).
async fn second_relay(dir: &Path) -> TestServer {
    let store = SqliteStorage::open(dir).unwrap();
    for (id, parent, level, name) in [
        ("c1", None, "county", "测试县"),
        ("s1", Some("c1"), "street", "幸福街道"),
        ("m5", Some("s1"), "community", "五里社区"),
        ("g5", Some("m5"), "grid", "五里一网格"),
    ] {
        store
            .add_area(Area {
                id: id.into(),
                parent_id: parent.map(str::to_string),
                level: level.into(),
                name: name.into(),
            })
            .await
            .unwrap();
    }
    drop(store);
    TestServer::start(dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_second_community_merged_beside_a_serving_county_relay_repairs_and_loses_nothing() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // The county's relay on PostgreSQL, serving community m1's devices throughout.
    let county_dir = tempfile::tempdir().unwrap();
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let county = TestServer::start_postgres(county_dir.path(), any, db.url()).await;
    let (da, dbr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = county.worker(da.path(), "wang", &["g1"]).await;
    let mut b = county.worker(dbr.path(), "li", &["g1"]).await;
    let h1 = household(&mut a, "张三");
    sync(&mut a).await;
    sync(&mut b).await;

    // Community m5 on its own SQLite relay, two devices.
    let m5_dir = tempfile::tempdir().unwrap();
    let m5 = second_relay(m5_dir.path()).await;
    let (dc, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c = m5.worker(dc.path(), "zhao", &["g5"]).await;
    let mut d = m5.worker(dd.path(), "qian", &["g5"]).await;
    let h5 = household(&mut c, "李四");
    let case = c
        .create(
            Kind::Case,
            fields(json!({"case_type": "low_income", "household_id": h5, "status": "open"})),
        )
        .unwrap()
        .id;
    sync(&mut c).await;
    sync(&mut d).await;
    d.update(&case, fields(json!({"status": "assessing"})))
        .unwrap();
    sync(&mut d).await;
    let m5_addr = m5.addr;
    m5.stop().await;
    // Written offline while the community moves: kept on the phones until they sync again.
    c.update(&case, fields(json!({"notes": "申请人外出务工。"})))
        .unwrap();
    let offline_visit = visit(&mut c, &h5, "2026-11-04T09:00:00Z");

    // The county's relay serves on while m5 is merged in.
    let out = migrate(Some(county_dir.path()), m5_dir.path(), db.url()).await;
    assert!(out.starts_with("已并入已有数据库"), "{out}");
    assert!(
        out.contains("c1, s1"),
        "the county and street are shared: {out}"
    );
    // m5's devices reach the county's database through a relay at their old address.
    let m5_on_pg = TestServer::start_postgres(county_dir.path(), m5_addr, db.url()).await;

    let report = sync(&mut c).await;
    assert!(report.stats.repaired_docs >= 1, "c repairs: {report:?}");
    sync(&mut d).await;
    sync(&mut c).await;
    assert_eq!(snapshot(&mut c), snapshot(&mut d), "m5 lost nothing");
    let merged = d.get(&case).unwrap();
    assert_eq!(merged.fields["status"], "assessing");
    assert_eq!(merged.fields["notes"], "申请人外出务工。");
    assert!(d.get(&offline_visit).is_ok());
    assert_eq!(d.count(&Query::default()).unwrap(), 3);
    // Once repaired, catch-up again: a second sync repairs nothing.
    assert_eq!(sync(&mut c).await.stats.repaired_docs, 0);

    // m1's devices were not disturbed: no repair, and neither community sees the other.
    let report = sync(&mut a).await;
    assert_eq!(report.stats.repaired_docs, 0, "{report:?}");
    let v = visit(&mut b, &h1, "2026-11-05T09:00:00Z");
    sync(&mut b).await;
    sync(&mut a).await;
    assert!(a.get(&v).is_ok());
    assert_eq!(a.count(&Query::default()).unwrap(), 2);
    assert!(a.get(&case).is_err(), "m1 does not receive m5's records");

    // Writes flow on m5 too, through either relay.
    d.update(&case, fields(json!({"status": "in_progress"})))
        .unwrap();
    sync(&mut d).await;
    sync(&mut c).await;
    assert_eq!(c.get(&case).unwrap().fields["status"], "in_progress");
    m5_on_pg.stop().await;
    county.stop().await;
}
