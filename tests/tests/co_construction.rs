//! The co-construction kinds (units, volunteers, activities, love-supermarket stock, tasks)
//! end to end: created offline, synced to the grid's other devices and no further, merged when
//! two devices change one offline, kept from a volunteer where they carry private data.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use gridsync_core::record::{Kind, ValidationError};
use gridsync_core::{Error, Query, Replica};
use gridsync_e2e::{TestServer, fields, household, sync};
use gridsync_server::accounts::Role;
use serde_json::{Value, json};

fn count(r: &Replica, kind: Kind) -> u64 {
    r.count(&Query {
        kind: Some(kind),
        ..Query::default()
    })
    .unwrap()
}

/// One record of every new kind, as a grid worker writes them offline.
fn create_all(r: &mut Replica) -> Vec<(Kind, String)> {
    let unit = r
        .create(
            Kind::Unit,
            fields(json!({
                "name": "区税务局", "unit_type": "government", "contact_person": "刘主任",
                "services": ["税务咨询"], "paired_grids": ["g1"],
            })),
        )
        .unwrap()
        .id;
    let volunteer = r
        .create(
            Kind::Volunteer,
            fields(json!({
                "name": "陈志强", "phone": "13900001111", "unit_id": unit, "party_member": true,
                "post": "治安巡逻岗", "duties": "每周两次夜间巡逻",
            })),
        )
        .unwrap()
        .id;
    let activity = r
        .create(
            Kind::Activity,
            fields(json!({
                "activity_type": "coordination_meeting", "title": "第四季度共建联席会议",
                "started_at": "2026-11-20T14:00:00+08:00", "organiser_unit_id": unit,
                "participants": [{"volunteer_id": volunteer, "hours": 2.0}, {"unit_id": unit, "hours": 2.0}],
                "decisions": [{"text": "为3栋加装楼道照明"}],
            })),
        )
        .unwrap()
        .id;
    let stock = r
        .create(
            Kind::Stock,
            fields(json!({
                "item": "大米", "measure": "袋", "low_at": 2,
                "movements": [{"kind": "in", "quantity": 10, "at": "2026-11-20T09:00:00+08:00", "donor_unit_id": unit}],
            })),
        )
        .unwrap()
        .id;
    let task = r
        .create(
            Kind::Task,
            fields(json!({
                "title": "3栋楼道照明", "source": "decision", "source_id": activity,
                "assignee": "wang", "deadline": "2026-11-30T18:00:00+08:00",
            })),
        )
        .unwrap()
        .id;
    vec![
        (Kind::Unit, unit),
        (Kind::Volunteer, volunteer),
        (Kind::Activity, activity),
        (Kind::Stock, stock),
        (Kind::Task, task),
    ]
}

#[tokio::test]
async fn test_every_new_kind_syncs_to_its_grid_and_no_further() {
    let server = TestServer::start(tempfile::tempdir().unwrap().path()).await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut wang = server.worker(dirs[0].path(), "wang", &["g1"]).await;
    let mut li = server.worker(dirs[1].path(), "li", &["g1"]).await;
    let mut zhao = server.worker(dirs[2].path(), "zhao", &["g2"]).await;
    server.user("chen", Role::Volunteer, &["g1"]).await;
    let mut chen = server.device(dirs[3].path(), "chen").await;

    let made = create_all(&mut wang);
    assert_eq!(wang.status().unwrap().unsent_changes, 5);
    let report = sync(&mut wang).await;
    assert_eq!(report.stats.changes_sent, 5, "{report:?}");
    sync(&mut li).await;
    sync(&mut zhao).await;
    sync(&mut chen).await;

    for (kind, id) in &made {
        assert_eq!(li.get(id).unwrap().kind, *kind);
        assert_eq!(count(&li, *kind), 1, "{kind}");
        assert_eq!(count(&zhao, *kind), 0, "another grid received a {kind}");
    }
    // A volunteer never receives another volunteer's phone, nor the office's work records.
    for kind in [
        Kind::Unit,
        Kind::Volunteer,
        Kind::Activity,
        Kind::Stock,
        Kind::Task,
    ] {
        assert_eq!(count(&chen, kind), 0, "a volunteer received a {kind}");
    }
    // What a device shows: the stock on hand, computed from its movements.
    let stock = li.get(&made[3].1).unwrap();
    assert_eq!(stock.fields["on_hand"], json!(10.0));
    let volunteer = li.get(&made[1].1).unwrap();
    assert_eq!(volunteer.fields["phone"], "13900001111");
    assert!(volunteer.fields.get("status").is_none());
    let row = &li
        .list(&Query {
            kind: Some(Kind::Volunteer),
            ..Query::default()
        })
        .unwrap()[0];
    assert_eq!(row.title, "陈志强");
    assert_eq!(row.status.as_deref(), Some("active"));
    // A volunteer's device refuses, in the relay's words, what the role may not write.
    let err = chen
        .create(
            Kind::Unit,
            fields(json!({"name": "某公司", "unit_type": "company"})),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotAllowed(_)), "{err}");
    assert!(err.to_string().contains("共建单位"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn test_two_offline_hand_outs_of_ten_end_at_three_everywhere_and_an_overdraw_is_refused() {
    let server = TestServer::start(tempfile::tempdir().unwrap().path()).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut a = server.worker(dirs[0].path(), "wang", &["g1"]).await;
    let mut b = server.worker(dirs[1].path(), "li", &["g1"]).await;
    let h = household(&mut a, "张桂兰");
    let stock = a
        .create(
            Kind::Stock,
            fields(json!({
                "item": "食用油", "measure": "桶",
                "movements": [{"kind": "in", "quantity": 10, "at": "2026-11-20T09:00:00+08:00", "donor_name": "王先生"}],
            })),
        )
        .unwrap()
        .id;
    sync(&mut a).await;
    sync(&mut b).await;

    // On a device that can see it, a hand-out beyond what is on hand is refused, nothing stored.
    let before = a.status().unwrap().unsent_changes;
    let err = a
        .update(
            &stock,
            fields(json!({"movements": [{"kind": "out", "quantity": 11, "at": "2026-11-21T09:00:00+08:00"}]})),
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ValidationError::Overdrawn { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("only 10 of 食用油 on hand"),
        "{err}"
    );
    assert_eq!(a.status().unwrap().unsent_changes, before);
    assert_eq!(a.get(&stock).unwrap().fields["on_hand"], json!(10.0));

    // Offline, each hands out what it can see is there.
    a.update(
        &stock,
        fields(json!({"movements": [{"kind": "out", "quantity": 3, "at": "2026-11-21T10:00:00+08:00", "household_id": h, "by": "wang"}]})),
    )
    .unwrap();
    b.update(
        &stock,
        fields(json!({"movements": [{"kind": "out", "quantity": 4, "at": "2026-11-21T10:05:00+08:00", "by": "li"}]})),
    )
    .unwrap();
    assert_eq!(a.get(&stock).unwrap().fields["on_hand"], json!(7.0));
    assert_eq!(b.get(&stock).unwrap().fields["on_hand"], json!(6.0));
    sync(&mut a).await;
    sync(&mut b).await;
    sync(&mut a).await;
    for r in [&mut a, &mut b] {
        let rec = r.get(&stock).unwrap();
        assert_eq!(rec.fields["on_hand"], json!(3.0));
        assert_eq!(rec.fields["movements"].as_array().unwrap().len(), 3);
    }
    // Writing on_hand itself is refused: it is computed.
    let err = a
        .update(&stock, fields(json!({"on_hand": 100})))
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ValidationError::ReadOnlyField(ref f)) if f == "on_hand"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn test_a_task_goes_through_its_lifecycle_and_a_wrong_move_is_refused() {
    let server = TestServer::start(tempfile::tempdir().unwrap().path()).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut office = server.worker(dirs[0].path(), "zhou", &["g1"]).await;
    let mut wang = server.worker(dirs[1].path(), "wang", &["g1"]).await;
    let task = office
        .create(
            Kind::Task,
            fields(json!({
                "title": "清理5栋消防通道", "source": "incident", "assignee": "wang",
                "deadline": "2026-11-22T18:00:00+08:00",
            })),
        )
        .unwrap()
        .id;
    sync(&mut office).await;
    sync(&mut wang).await;
    let mine = wang
        .list(&Query {
            kind: Some(Kind::Task),
            assigned_to: Some("wang".into()),
            not_closed: true,
            by_due: true,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].status.as_deref(), Some("dispatched"));
    assert_eq!(mine[0].due_at.as_deref(), Some("2026-11-22T18:00:00+08:00"));

    // Verification comes after handling, never straight from dispatch.
    let err = wang
        .update(&task, fields(json!({"status": "verified"})))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid(ValidationError::InvalidTransition { .. })
        ),
        "{err}"
    );
    for (status, note) in [("accepted", "已接单"), ("handled", "已清理杂物")] {
        wang.update(
            &task,
            fields(json!({
                "status": status,
                "updates": [{"at": "2026-11-22T10:00:00+08:00", "by": "wang", "status": status, "note": note}],
            })),
        )
        .unwrap();
    }
    sync(&mut wang).await;
    sync(&mut office).await;
    assert_eq!(office.get(&task).unwrap().fields["status"], "handled");
    office
        .update(&task, fields(json!({"status": "sent_back"})))
        .unwrap();
    sync(&mut office).await;
    sync(&mut wang).await;
    wang.update(&task, fields(json!({"status": "handled"})))
        .unwrap();
    sync(&mut wang).await;
    sync(&mut office).await;
    for status in ["verified", "closed"] {
        office
            .update(&task, fields(json!({"status": status})))
            .unwrap();
    }
    sync(&mut office).await;
    sync(&mut wang).await;
    let done = wang.get(&task).unwrap();
    assert_eq!(done.fields["status"], "closed");
    assert_eq!(done.fields["updates"].as_array().unwrap().len(), 2);
    let open: Vec<Value> = wang
        .list(&Query {
            kind: Some(Kind::Task),
            assigned_to: Some("wang".into()),
            not_closed: true,
            ..Query::default()
        })
        .unwrap()
        .iter()
        .map(|r| json!(r.id))
        .collect();
    assert!(open.is_empty(), "a closed task is still in the plan");
    server.stop().await;
}
