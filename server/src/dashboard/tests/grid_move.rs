//! The household page's "调整网格 / Move to another grid" form: offered to office staff with the
//! other grids of the community, checked like every office write (CSRF), and moving the
//! household with the records that name it.

use super::pages::{case_doc, edit, upload, worker};
use super::*;

async fn household(state: &AppState, id: &str) {
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", id),
        ("kind", "household"),
        ("grid_id", "g1"),
        ("head_name", "王五"),
        ("household_type", "registered"),
        ("visit_class", "priority"),
        ("created_by", "wang"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    tx.put_object(ROOT, "residents", automerge::ObjType::List)
        .unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    upload(state, &worker("wang", ACTOR, "g1"), id, "g1", &doc, &[]).await;
}

#[tokio::test]
async fn test_office_moves_a_household_with_its_case_from_the_household_page() {
    let (_dir, state) = server().await;
    state
        .accounts
        .add_area(Area {
            id: "g2".into(),
            parent_id: Some("m1".into()),
            level: "grid".into(),
            name: "第二网格".into(),
        })
        .await
        .unwrap();
    household(&state, "h1").await;
    let mut case = case_doc("c1", "open");
    edit(&mut case, "wang", &[("household_id", "h1")]);
    upload(&state, &worker("wang", ACTOR, "g1"), "c1", "g1", &case, &[]).await;

    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let (status, _, page) = send(&state, get("/records/h1", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("调整网格"), "no move form: {page}");
    assert!(page.contains("action=\"/records/h1/move\""), "{page}");
    // The other grid of the community is offered, not the grid of another community.
    assert!(page.contains("value=\"g2\""), "{page}");
    assert!(!page.contains("option value=\"g9\""), "{page}");

    // Without the session's CSRF token nothing moves.
    let (status, _, _) = send(&state, post("/records/h1/move", &cookie, "csrf=nope&to=g2")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        state.relay.document("h1").await.unwrap().unwrap().grid_id,
        "g1"
    );

    let form = format!("csrf={csrf}&to=g2");
    let (status, headers, _) = send(&state, post("/records/h1/move", &cookie, &form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/records/h1?saved=1");
    for id in ["h1", "c1"] {
        assert_eq!(
            state.relay.document(id).await.unwrap().unwrap().grid_id,
            "g2",
            "{id}"
        );
    }
    // The record's history names who moved it and where to.
    let (_, _, page) = send(&state, get("/records/c1", &cookie)).await;
    assert!(page.contains("zhao"), "{page}");
    assert!(page.contains("g2") || page.contains("第二网格"), "{page}");

    // Another community's grid is refused with the reason.
    let form = format!("csrf={csrf}&to=g9");
    let (status, headers, _) = send(&state, post("/records/h1/move", &cookie, &form)).await;
    let (_, page) = follow_error(&state, status, &headers, &cookie).await;
    assert!(page.contains("g9"), "{page}");
    assert_eq!(
        state.relay.document("h1").await.unwrap().unwrap().grid_id,
        "g2"
    );
}
