//! Two workers edit the same assistance case offline; every sync order ends with three identical
//! replicas, both actions kept and the concurrent status edit listed for review.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use gridsync_core::Replica;
use gridsync_core::record::Kind;
use gridsync_e2e::{TestServer, fields, household, snapshot, sync};
use serde_json::json;

struct Team {
    a: Replica,
    b: Replica,
    c: Replica,
    case_id: String,
    _dirs: Vec<tempfile::TempDir>,
}

async fn team(server: &TestServer) -> Team {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = server.worker(dirs[0].path(), "wang", &["g1"]).await;
    let mut b = server.worker(dirs[1].path(), "li", &["g1"]).await;
    let mut c = server.worker(dirs[2].path(), "zhao", &["g1"]).await;
    let h = household(&mut a, "张三");
    let case = a
        .create(
            Kind::Case,
            fields(json!({
                "case_type": "low_income", "household_id": h, "status": "open",
                "notes": "家中老人行动不便。",
            })),
        )
        .unwrap();
    sync(&mut a).await;
    sync(&mut b).await;
    sync(&mut c).await;
    Team {
        a,
        b,
        c,
        case_id: case.id,
        _dirs: dirs,
    }
}

fn edit_offline(t: &mut Team) {
    let id = t.case_id.clone();
    t.a.update(&id, fields(json!({"status": "assessing"})))
        .unwrap();
    t.a.update(
        &id,
        fields(json!({"notes": "家中老人行动不便。已联系低保专干。"})),
    )
    .unwrap();
    t.a.update(
        &id,
        fields(json!({"actions": [{"kind": "visit", "at": "2026-11-02T09:00:00Z", "description": "入户核实"}]})),
    )
    .unwrap();
    t.b.update(&id, fields(json!({"status": "suspended"})))
        .unwrap();
    t.b.update(
        &id,
        fields(json!({"notes": "申请人外出务工。家中老人行动不便。"})),
    )
    .unwrap();
    t.b.update(
        &id,
        fields(json!({"actions": [{"kind": "goods", "at": "2026-11-02T10:00:00Z", "quantity": 2.0, "description": "米面油"}]})),
    )
    .unwrap();
}

async fn run_order(order: &[char]) {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let mut t = team(&server).await;
    edit_offline(&mut t);
    for who in order {
        match who {
            'a' => sync(&mut t.a).await,
            'b' => sync(&mut t.b).await,
            _ => sync(&mut t.c).await,
        };
    }
    let (sa, sb, sc) = (snapshot(&mut t.a), snapshot(&mut t.b), snapshot(&mut t.c));
    assert_eq!(sa, sb, "order {order:?}: A and B differ");
    assert_eq!(sa, sc, "order {order:?}: A and C differ");

    let case = t.c.get(&t.case_id).unwrap();
    let actions = case.fields["actions"].as_array().unwrap();
    assert_eq!(
        actions.len(),
        2,
        "order {order:?}: both appended actions survive"
    );
    let notes = case.fields["notes"].as_str().unwrap();
    assert!(
        notes.contains("已联系低保专干"),
        "A's note edit kept: {notes}"
    );
    assert!(
        notes.contains("申请人外出务工"),
        "B's note edit kept: {notes}"
    );

    for r in [&mut t.a, &mut t.b, &mut t.c] {
        let conflicts = r.conflicts().unwrap();
        assert_eq!(
            conflicts.len(),
            1,
            "order {order:?}: one record in conflict"
        );
        assert_eq!(conflicts[0].id, t.case_id);
        let status = conflicts[0]
            .fields
            .iter()
            .find(|f| f.field == "status")
            .expect("the status conflict is listed");
        let mut values: Vec<_> = status.values.iter().map(|v| v.value.clone()).collect();
        values.sort_by_key(|v| v.to_string());
        assert_eq!(values, [json!("assessing"), json!("suspended")]);
        let mut authors: Vec<_> = status
            .values
            .iter()
            .filter_map(|v| v.author.clone())
            .collect();
        authors.sort();
        assert_eq!(authors, ["li", "wang"]);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_offline_edits_converge_whatever_the_sync_order() {
    for order in [
        &['a', 'b', 'c', 'a'][..],
        &['b', 'a', 'c', 'b'][..],
        &['c', 'b', 'a', 'c', 'b'][..],
    ] {
        run_order(order).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_settling_a_conflict_clears_it_everywhere() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let mut t = team(&server).await;
    edit_offline(&mut t);
    sync(&mut t.a).await;
    sync(&mut t.b).await;
    sync(&mut t.a).await;
    sync(&mut t.c).await;
    assert_eq!(t.c.conflicts().unwrap().len(), 1);
    // Office staff (here on C) choose one value: a new write that supersedes both.
    t.c.update(&t.case_id, fields(json!({"status": "in_progress"})))
        .unwrap();
    for r in [&mut t.c, &mut t.a, &mut t.b] {
        sync(r).await;
    }
    for r in [&mut t.a, &mut t.b, &mut t.c] {
        assert!(r.conflicts().unwrap().is_empty());
        assert_eq!(r.get(&t.case_id).unwrap().fields["status"], "in_progress");
    }
    server.stop().await;
}
