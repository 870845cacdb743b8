//! Grid adjustment (网格调整, docs/protocol.md §15): the office moves a household with its
//! visits and cases to another grid. The new grid's devices receive the records, the old grid's
//! drop them once their own edits are acknowledged, an edit made offline in the old grid is
//! kept, and nobody outside the new grid reads what follows. Real relay, real replicas.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use gridsync_core::record::Kind;
use gridsync_core::{Query, Replica};
use gridsync_e2e::{TestServer, fields, sync};
use gridsync_server::accounts::Role;
use gridsync_server::relay;
use serde_json::{Value, json};

/// A household with a visit and a case in `grid`, made on `r`: (household, visit, case).
fn household_with_records(r: &mut Replica, grid: &str) -> (String, String, String) {
    let h = r
        .create(
            Kind::Household,
            fields(json!({
                "grid_id": grid, "head_name": "王五", "household_type": "registered",
                "visit_class": "priority",
            })),
        )
        .unwrap()
        .id;
    let v = r
        .create(
            Kind::Visit,
            fields(json!({
                "grid_id": grid, "household_id": h, "visit_type": "routine",
                "outcome": "met", "started_at": "2026-11-01T09:00:00Z",
            })),
        )
        .unwrap()
        .id;
    let c = r
        .create(
            Kind::Case,
            fields(json!({"grid_id": grid, "case_type": "disability", "household_id": h})),
        )
        .unwrap()
        .id;
    (h, v, c)
}

/// The ids of the records a replica holds.
fn held(r: &Replica) -> Vec<String> {
    let mut ids: Vec<String> = r
        .list(&Query {
            include_deleted: true,
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    ids.sort();
    ids
}

fn holds_all(r: &Replica, ids: &[&String]) -> bool {
    let held = held(r);
    ids.iter().all(|id| held.contains(id))
}

fn holds_none(r: &Replica, ids: &[&String]) -> bool {
    let held = held(r);
    ids.iter().all(|id| !held.contains(id))
}

/// Workers of g1 (old grid), g2 (new grid) and g3 (neither), and office staff of the community.
async fn people(server: &TestServer, dir: &std::path::Path) -> (Replica, Replica, Replica) {
    server.user("office", Role::Office, &["m1"]).await;
    let old = server.worker(&dir.join("old"), "w-old", &["g1"]).await;
    let new = server.worker(&dir.join("new"), "w-new", &["g2"]).await;
    let other = server.worker(&dir.join("other"), "w-other", &["g3"]).await;
    (old, new, other)
}

async fn move_to(server: &TestServer, household: &str, to: &str) -> Vec<String> {
    relay::move_as(
        &server.state.relay,
        server.accounts.as_ref(),
        "office",
        household,
        to,
    )
    .await
    .unwrap()
}

fn field(r: &mut Replica, id: &str, name: &str) -> Value {
    r.get(id)
        .unwrap()
        .fields
        .get(name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn test_moved_household_reaches_the_new_grid_and_leaves_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let (mut old, mut new, _) = people(&server, dir.path()).await;
    let (h, v, c) = household_with_records(&mut old, "g1");
    sync(&mut old).await;
    sync(&mut new).await;
    assert!(holds_none(&new, &[&h, &v, &c]));

    let moved = move_to(&server, &h, "g2").await;
    for id in [&h, &v, &c] {
        assert!(moved.contains(id), "{id} was not moved: {moved:?}");
    }

    sync(&mut new).await;
    assert!(
        holds_all(&new, &[&h, &v, &c]),
        "new grid holds {:?}",
        held(&new)
    );
    assert_eq!(new.get(&v).unwrap().grid_id, "g2");
    assert_eq!(field(&mut new, &h, "head_name"), json!("王五"));
    // The new grid's worker writes to it like to any record of the grid.
    new.update(&c, fields(json!({"status": "open"}))).unwrap();
    let report = sync(&mut new).await;
    assert!(report.stats.rejected == 0, "{:?}", report.stats.rejected);

    sync(&mut old).await;
    assert!(
        holds_none(&old, &[&h, &v, &c]),
        "old grid still holds {:?}",
        held(&old)
    );
    // The dashboard's index files them under the new grid.
    let doc = server.state.relay.document(&v).await.unwrap().unwrap();
    assert_eq!(doc.grid_id, "g2");
}

#[tokio::test]
async fn test_an_offline_edit_in_the_old_grid_is_kept_and_the_records_leave_only_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let (mut old, mut new, _) = people(&server, dir.path()).await;
    let (h, v, c) = household_with_records(&mut old, "g1");
    sync(&mut old).await;

    // Offline, the old grid's worker edits the household; meanwhile the office moves it.
    old.update(&h, fields(json!({"notes": "老人独居，每周探访"})))
        .unwrap();
    assert_eq!(old.status().unwrap().unsent_changes, 1);
    move_to(&server, &h, "g2").await;

    // The device learns of the move (the old grid's catch-up) before its edit is acknowledged:
    // it keeps the record its unsent edit is on, and drops the others.
    let user = server.accounts.user("w-old").await.unwrap().unwrap();
    let reader =
        relay::dashboard_identity(server.accounts.as_ref(), &user, vec!["g1".into()], vec![])
            .await
            .unwrap();
    let cursor = old
        .cursors()
        .unwrap()
        .into_iter()
        .find(|c| c.grid == "g1")
        .unwrap();
    let batch = server
        .state
        .relay
        .batch_since(&cursor, &reader)
        .await
        .unwrap();
    old.apply_remote("g1", &batch.docs, &batch.cursor).unwrap();
    old.purge_outside_scope().unwrap();
    assert!(
        holds_all(&old, &[&h]),
        "the record with the unsent edit left: {:?}",
        held(&old)
    );
    assert!(
        holds_none(&old, &[&v, &c]),
        "old grid still holds {:?}",
        held(&old)
    );
    assert_eq!(old.status().unwrap().unsent_changes, 1);

    // Once it syncs, the edit is on the relay and on the new grid's device, and only then the
    // household leaves the old grid's device.
    let report = sync(&mut old).await;
    assert!(
        report.stats.rejected == 0,
        "edit refused: {:?}",
        report.stats.rejected
    );
    assert_eq!(old.status().unwrap().unsent_changes, 0);
    assert!(
        holds_none(&old, &[&h, &v, &c]),
        "old grid still holds {:?}",
        held(&old)
    );
    let on_relay = server.state.relay.document(&h).await.unwrap().unwrap();
    assert_eq!(on_relay.grid_id, "g2");
    assert_eq!(
        gridsync_core::doc::read_root(&on_relay.doc).get("notes"),
        Some(&json!("老人独居，每周探访"))
    );
    sync(&mut new).await;
    assert_eq!(field(&mut new, &h, "notes"), json!("老人独居，每周探访"));
    assert!(holds_all(&new, &[&h, &v, &c]));
}

#[tokio::test]
async fn test_nobody_outside_the_new_grid_reads_the_moved_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let (mut old, mut new, mut other) = people(&server, dir.path()).await;
    server.user("v-other", Role::Volunteer, &["g3"]).await;
    let mut volunteer = server.device(&dir.path().join("vol"), "v-other").await;
    let (h, v, c) = household_with_records(&mut old, "g1");
    sync(&mut old).await;
    move_to(&server, &h, "g2").await;
    sync(&mut new).await;
    sync(&mut old).await;
    // The new grid writes on: what it writes stays in the new grid.
    new.update(&h, fields(json!({"notes": "已迁入第二网格"})))
        .unwrap();
    new.update(&v, fields(json!({"outcome": "nobody_home"})))
        .unwrap();
    sync(&mut new).await;

    sync(&mut other).await;
    sync(&mut volunteer).await;
    sync(&mut old).await;
    for (who, r) in [
        ("g3 worker", &other),
        ("g3 volunteer", &volunteer),
        ("old grid", &old),
    ] {
        assert!(holds_none(r, &[&h, &v, &c]), "{who} holds {:?}", held(r));
    }
}

#[tokio::test]
async fn test_a_relay_restart_between_the_move_and_the_catch_up_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let (mut old, mut new, _) = people(&server, dir.path()).await;
    let (h, v, c) = household_with_records(&mut old, "g1");
    sync(&mut old).await;
    sync(&mut new).await;
    old.update(&v, fields(json!({"outcome": "nobody_home"})))
        .unwrap();
    move_to(&server, &h, "g2").await;

    let server = server.restart().await;
    sync(&mut new).await;
    assert!(
        holds_all(&new, &[&h, &v, &c]),
        "new grid holds {:?}",
        held(&new)
    );
    let report = sync(&mut old).await;
    assert!(report.stats.rejected == 0, "{:?}", report.stats.rejected);
    assert!(
        holds_none(&old, &[&h, &v, &c]),
        "old grid still holds {:?}",
        held(&old)
    );
    sync(&mut new).await;
    assert_eq!(field(&mut new, &v, "outcome"), json!("nobody_home"));
    assert_eq!(
        server
            .state
            .relay
            .document(&c)
            .await
            .unwrap()
            .unwrap()
            .grid_id,
        "g2"
    );
}

#[tokio::test]
async fn test_admin_move_household_beside_a_serving_relay() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let (mut old, mut new, _) = people(&server, dir.path()).await;
    let (h, v, c) = household_with_records(&mut old, "g1");
    sync(&mut old).await;
    // The serving relay holds the household's copy in its cache.
    server.state.relay.document(&h).await.unwrap();

    let out = gridsync_server::admin::move_household(&server.data_dir, &h, "g2", Some("office"))
        .await
        .unwrap();
    assert!(out.contains("g2"), "{out}");
    let refused =
        gridsync_server::admin::move_household(&server.data_dir, &h, "g9", Some("office"))
            .await
            .unwrap_err();
    assert!(refused.to_string().contains("g9"), "{refused}");

    sync(&mut new).await;
    assert!(
        holds_all(&new, &[&h, &v, &c]),
        "new grid holds {:?}",
        held(&new)
    );
    // The serving relay's copy is the moved one: the new grid's edit is accepted there.
    new.update(&h, fields(json!({"notes": "由管理员调整"})))
        .unwrap();
    let report = sync(&mut new).await;
    assert!(report.stats.rejected == 0, "{:?}", report.stats.rejected);
    sync(&mut old).await;
    assert!(holds_none(&old, &[&h, &v, &c]));
}
