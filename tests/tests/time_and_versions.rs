//! Device clocks years off, and records from newer app versions.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ROOT};
use chrono::{Duration, Utc};
use gridsync_core::Query;
use gridsync_core::protocol::UpChange;
use gridsync_core::record::Kind;
use gridsync_e2e::{TestServer, fields, household, snapshot, sync};
use gridsync_server::accounts::{Identity, Role};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_devices_with_clocks_years_off_sync_in_causal_order() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ahead = server.worker(da.path(), "ahead", &["g1"]).await;
    let mut behind = server.worker(db.path(), "behind", &["g1"]).await;
    ahead.set_clock(|| Utc::now() + Duration::days(5 * 365));
    behind.set_clock(|| Utc::now() - Duration::days(7 * 365));

    let h = household(&mut ahead, "张三");
    let case = ahead
        .create(
            Kind::Case,
            fields(json!({"case_type": "elderly_care", "household_id": h, "status": "open"})),
        )
        .unwrap()
        .id;
    sync(&mut ahead).await;
    sync(&mut behind).await;
    // The device twelve years "earlier" writes after the other one: its write is the newer one,
    // whatever its clock says.
    behind
        .update(
            &case,
            fields(json!({"status": "assessing", "plan": "每月两次探访"})),
        )
        .unwrap();
    sync(&mut behind).await;
    sync(&mut ahead).await;
    let seen = ahead.get(&case).unwrap();
    assert_eq!(seen.fields["status"], "assessing");
    assert_eq!(seen.fields["plan"], "每月两次探访");
    assert!(ahead.conflicts().unwrap().is_empty());
    // The device times are kept as written, for display only.
    let created: chrono::DateTime<Utc> = seen.str_field("created_at").unwrap().parse().unwrap();
    assert!(created > Utc::now() + Duration::days(4 * 365));
    let updated: chrono::DateTime<Utc> = seen.str_field("updated_at").unwrap().parse().unwrap();
    assert!(updated < Utc::now() - Duration::days(6 * 365));
    assert_eq!(snapshot(&mut ahead), snapshot(&mut behind));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_fields_from_a_newer_app_survive_this_version() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dn, dold) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The "newer app" is a device whose documents carry fields and a schema version this build
    // does not know; it writes through the relay like any device.
    let newer = server.worker(dn.path(), "newer", &["g1"]).await;
    let id = newer.identity().unwrap().clone();
    let actor: ActorId = newer.actor_hex().parse().unwrap();
    let mut doc = Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", "future-1"),
        ("kind", "household"),
        ("grid_id", "g1"),
        ("head_name", "赵六"),
        ("household_type", "registered"),
        ("energy_subsidy_card", "NX-2031-778"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    tx.put(ROOT, "schema_version", 3_i64).unwrap();
    let smart = tx
        .put_object(ROOT, "smart_meter", automerge::ObjType::Map)
        .unwrap();
    tx.put(&smart, "reading_kwh", 1234.5).unwrap();
    tx.commit_with(CommitOptions::default().with_message("newer"));
    let identity = Identity {
        user_id: id.worker_id.clone(),
        username: id.worker_id.clone(),
        display_name: id.display_name.clone(),
        role: Role::GridWorker,
        device_id: id.device_id.clone(),
        grids: vec!["g1".into()],
        former_grids: vec![],
        actors: vec![newer.actor_hex()],
        readable_kinds: gridsync_server::storage::KindFilter::All,
    };
    let change = UpChange {
        doc_id: "future-1".into(),
        grid: "g1".into(),
        bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
    };
    let (rejected, _) = server
        .state
        .relay
        .accept(&identity, vec![change])
        .await
        .unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");

    // This version receives it, edits a field it knows, and sends it back.
    let mut old = server.worker(dold.path(), "old", &["g1"]).await;
    sync(&mut old).await;
    old.update("future-1", fields(json!({"head_name": "赵六（户主）"})))
        .unwrap();
    sync(&mut old).await;
    let rec = old.get("future-1").unwrap();
    assert_eq!(rec.fields["energy_subsidy_card"], "NX-2031-778");
    assert_eq!(rec.fields["smart_meter"]["reading_kwh"], 1234.5);
    assert_eq!(rec.fields["schema_version"], 3);

    // And a third device sees both the newer fields and this version's edit.
    let dthird = tempfile::tempdir().unwrap();
    let mut third = server.worker(dthird.path(), "third", &["g1"]).await;
    sync(&mut third).await;
    let rec = third.get("future-1").unwrap();
    assert_eq!(rec.fields["head_name"], "赵六（户主）");
    assert_eq!(rec.fields["energy_subsidy_card"], "NX-2031-778");
    assert_eq!(third.count(&Query::default()).unwrap(), 1);
    server.stop().await;
}
