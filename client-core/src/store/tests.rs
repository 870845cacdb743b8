use serde_json::{Value, json};

use super::*;
use crate::protocol::{Cursor, DocChanges, LoginResponse};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn replica(dir: &std::path::Path, worker: &str) -> Replica {
    let mut r = Replica::open(dir).unwrap();
    r.enrol("http://127.0.0.1:1", &login(worker)).unwrap();
    r
}

fn login(worker: &str) -> LoginResponse {
    LoginResponse {
        device_id: format!("device-{worker}"),
        token: "token".into(),
        user_id: worker.into(),
        username: worker.into(),
        display_name: worker.into(),
        role: "grid_worker".into(),
        grids: vec!["g1".into(), "g2".into()],
    }
}

fn household(r: &mut Replica, class: &str) -> String {
    r.create(
        Kind::Household,
        obj(json!({"head_name": "张三", "household_type": "registered", "visit_class": class})),
    )
    .unwrap()
    .id
}

#[test]
fn test_create_sets_system_fields_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let id = household(&mut r, "priority");
    let rec = r.get(&id).unwrap();
    assert_eq!(rec.kind, Kind::Household);
    assert_eq!(rec.grid_id, "g1");
    assert_eq!(rec.str_field("created_by"), Some("wang"));
    assert_eq!(rec.fields["schema_version"], SCHEMA_VERSION);
    assert_eq!(r.status().unwrap().unsent_changes, 1);
}

#[test]
fn test_create_in_a_grid_the_device_does_not_hold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let err = r
        .create(
            Kind::Household,
            obj(json!({"grid_id": "g9", "head_name": "李", "household_type": "migrant"})),
        )
        .unwrap_err();
    assert!(err.to_string().contains("g9"), "{err}");
    let id = r
        .create(
            Kind::Household,
            obj(json!({"grid_id": "g2", "head_name": "李", "household_type": "migrant"})),
        )
        .unwrap()
        .id;
    assert_eq!(r.get(&id).unwrap().grid_id, "g2");
}

#[test]
fn test_invalid_update_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let h = household(&mut r, "ordinary");
    let case = r
        .create(
            Kind::Case,
            obj(json!({"case_type": "disability", "household_id": h, "status": "open"})),
        )
        .unwrap();
    r.update(&case.id, obj(json!({"status": "closed"})))
        .unwrap();
    let before = r.status().unwrap().unsent_changes;
    let err = r
        .update(&case.id, obj(json!({"status": "in_progress"})))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Invalid(ValidationError::InvalidTransition { .. })
    ));
    assert_eq!(r.status().unwrap().unsent_changes, before);
    assert_eq!(r.get(&case.id).unwrap().fields["status"], "closed");
}

#[test]
fn test_index_answers_open_cases_in_a_grid() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let h = household(&mut r, "priority");
    for status in ["open", "open", "draft"] {
        r.create(
            Kind::Case,
            obj(json!({"case_type": "low_income", "household_id": h, "status": status})),
        )
        .unwrap();
    }
    let open = Query {
        kind: Some(Kind::Case),
        grid: Some("g1".into()),
        status: Some("open".into()),
        ..Query::default()
    };
    assert_eq!(r.count(&open).unwrap(), 2);
    assert_eq!(r.list(&open).unwrap().len(), 2);
    assert_eq!(
        r.count(&Query {
            kind: Some(Kind::Case),
            grid: Some("g2".into()),
            ..Query::default()
        })
        .unwrap(),
        0
    );
}

#[test]
fn test_visit_moves_household_due_date_and_overdue_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let visited = household(&mut r, "priority");
    let never = household(&mut r, "priority");
    r.update(&never, obj(json!({"next_visit_due": "2026-01-01"})))
        .unwrap();
    r.create(
        Kind::Visit,
        obj(json!({
            "household_id": visited, "visit_type": "priority", "outcome": "met",
            "started_at": "2026-11-01T09:00:00Z"
        })),
    )
    .unwrap();
    let h = r.get(&visited).unwrap();
    assert_eq!(h.fields["next_visit_due"], "2026-12-01");
    let overdue = r
        .list(&Query {
            kind: Some(Kind::Household),
            due_before: Some("2026-11-28".into()),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(
        overdue.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        [never.as_str()]
    );
}

#[test]
fn test_visit_that_did_not_meet_the_household_leaves_it_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    for outcome in ["nobody_home", "refused", "moved"] {
        let h = household(&mut r, "priority");
        r.update(&h, obj(json!({"next_visit_due": "2026-01-01"})))
            .unwrap();
        r.create(
            Kind::Visit,
            obj(json!({
                "household_id": h, "visit_type": "priority", "outcome": outcome,
                "started_at": "2026-11-01T09:00:00Z"
            })),
        )
        .unwrap();
        let after = r.get(&h).unwrap();
        assert_eq!(after.fields["next_visit_due"], "2026-01-01", "{outcome}");
        assert!(after.fields.get("last_visit_at").is_none(), "{outcome}");
        let overdue = r
            .list(&Query {
                kind: Some(Kind::Household),
                due_before: Some("2026-11-28".into()),
                ..Query::default()
            })
            .unwrap();
        assert!(
            overdue.iter().any(|o| o.id == h),
            "{outcome}: still overdue"
        );
    }
}

#[test]
fn test_compaction_bounds_the_change_log_and_keeps_content() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let h = household(&mut r, "ordinary");
    for n in 0..(COMPACT_AFTER * 2 + 5) {
        r.update(&h, obj(json!({"notes": format!("note {n}")})))
            .unwrap();
    }
    let pending: i64 = r
        .conn
        .query_row(
            "SELECT COUNT(*) FROM doc_changes WHERE doc_id = ?1",
            [&h],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        pending as usize <= COMPACT_AFTER,
        "{pending} changes since the snapshot"
    );
    drop(r);
    let mut r = Replica::open(dir.path()).unwrap();
    let n = COMPACT_AFTER * 2 + 4;
    assert_eq!(r.get(&h).unwrap().fields["notes"], format!("note {n}"));
    // Compaction never touches what is still to be sent.
    assert_eq!(r.status().unwrap().unsent_changes as usize, 1 + n + 1);
}

fn cursor(seq: u64) -> Cursor {
    Cursor {
        grid: "g1".into(),
        seq,
        hash: Some([seq as u8; 32]),
    }
}

fn as_changes(entries: &[OutboxEntry]) -> Vec<serde_bytes::ByteBuf> {
    entries
        .iter()
        .map(|e| serde_bytes::ByteBuf::from(e.bytes.clone()))
        .collect()
}

#[test]
fn test_a_received_snapshot_becomes_the_record_and_is_stored_as_it_came() {
    use crate::protocol::Snapshot;

    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut a = replica(da.path(), "wang");
    let h = household(&mut a, "priority");
    for note in ["独居", "独居，腿脚不便"] {
        a.update(&h, obj(json!({"notes": note}))).unwrap();
    }
    let sent = a.outbox_batch(100, 1 << 20).unwrap();
    let snapshot = Snapshot {
        bytes: serde_bytes::ByteBuf::from(doc::save_snapshot(&a.load(&h).unwrap())),
        entries: 3,
    };
    let whole = vec![DocChanges {
        doc_id: h.clone(),
        snapshot: Some(snapshot.clone()),
        changes: vec![],
    }];

    let mut b = replica(db.path(), "li");
    assert_eq!(b.apply_remote("g1", &whole, &cursor(3)).unwrap(), 3);
    assert_eq!(b.get(&h).unwrap().fields["notes"], "独居，腿脚不便");
    assert_eq!(b.count(&Query::default()).unwrap(), 1);
    assert_eq!(b.cursors().unwrap()[0], cursor(3));
    let stored: Vec<u8> = b
        .conn
        .query_row("SELECT snapshot FROM docs WHERE doc_id = ?1", [&h], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, snapshot.bytes.to_vec(), "stored as it came");
    // Received again it adds nothing; it survives a reopen; later changes apply on top.
    assert_eq!(b.apply_remote("g1", &whole, &cursor(3)).unwrap(), 0);
    drop(b);
    let mut b = Replica::open(db.path()).unwrap();
    assert_eq!(b.get(&h).unwrap().fields["notes"], "独居，腿脚不便");
    a.update(&h, obj(json!({"notes": "已入住养老院"}))).unwrap();
    let later = a.outbox_batch(100, 1 << 20).unwrap()[sent.len()..].to_vec();
    let next = vec![DocChanges::changes(h.clone(), as_changes(&later))];
    assert_eq!(b.apply_remote("g1", &next, &cursor(4)).unwrap(), 1);
    assert_eq!(b.get(&h).unwrap().fields["notes"], "已入住养老院");

    // A replica holding the record's first change merges the snapshot into it.
    let mut c = replica(dc.path(), "zhao");
    let first = vec![DocChanges::changes(h.clone(), as_changes(&sent[..1]))];
    assert_eq!(c.apply_remote("g1", &first, &cursor(1)).unwrap(), 1);
    assert_eq!(c.apply_remote("g1", &whole, &cursor(3)).unwrap(), 2);
    assert_eq!(c.get(&h).unwrap().fields["notes"], "独居，腿脚不便");
}

#[test]
fn test_a_garbled_snapshot_is_refused_and_stores_nothing() {
    use crate::protocol::Snapshot;

    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "li");
    let docs = vec![DocChanges {
        doc_id: "h-garbled".into(),
        snapshot: Some(Snapshot {
            bytes: serde_bytes::ByteBuf::from(vec![0x85, 0x6f, 0x4a, 0x83, 0, 1, 2, 3]),
            entries: 1,
        }),
        changes: vec![],
    }];
    let err = r.apply_remote("g1", &docs, &cursor(1)).unwrap_err();
    assert!(err.to_string().contains("h-garbled"), "{err}");
    assert_eq!(r.count(&Query::default()).unwrap(), 0);
    assert_eq!(
        r.cursors().unwrap()[0],
        Cursor::start("g1"),
        "cursor unmoved"
    );
}

#[test]
fn test_received_changes_are_indexed_and_move_the_cursor() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = replica(da.path(), "wang");
    let mut b = replica(db.path(), "li");
    let h = household(&mut a, "priority");
    let sent = a.outbox_batch(100, 1 << 20).unwrap();
    let docs = vec![DocChanges {
        snapshot: None,
        doc_id: h.clone(),
        changes: sent
            .iter()
            .map(|e| serde_bytes::ByteBuf::from(e.bytes.clone()))
            .collect(),
    }];
    let cursor = Cursor {
        grid: "g1".into(),
        seq: 7,
        hash: Some([1; 32]),
    };
    assert_eq!(b.apply_remote("g1", &docs, &cursor).unwrap(), 1);
    // Receiving the same changes again is harmless.
    assert_eq!(b.apply_remote("g1", &docs, &cursor).unwrap(), 0);
    assert_eq!(b.get(&h).unwrap().fields["head_name"], "张三");
    assert_eq!(b.count(&Query::default()).unwrap(), 1);
    assert_eq!(b.cursors().unwrap()[0], cursor);
    assert_eq!(
        b.status().unwrap().unsent_changes,
        0,
        "received changes are not re-sent"
    );

    let seqs: Vec<i64> = sent.iter().map(|e| e.seq).collect();
    a.acknowledge(&seqs, &[], &[]).unwrap();
    assert_eq!(a.status().unwrap().unsent_changes, 0);
}

#[test]
fn test_rejected_change_is_kept_and_does_not_block_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    household(&mut r, "priority");
    household(&mut r, "ordinary");
    let batch = r.outbox_batch(100, 1 << 20).unwrap();
    r.acknowledge(&[], &[(batch[0].seq, "outside scope".into())], &[])
        .unwrap();
    let next = r.outbox_batch(100, 1 << 20).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].seq, batch[1].seq);
    let status = r.status().unwrap();
    assert_eq!(status.rejected.len(), 1);
    assert_eq!(status.rejected[0].reason, "outside scope");
}

#[test]
fn test_signing_in_again_as_the_same_user_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let id = household(&mut r, "priority");
    let mut again = login("wang");
    again.device_id = "device-new".into();
    again.token = "token-new".into();
    r.enrol("http://127.0.0.1:2", &again).unwrap();
    assert_eq!(r.identity().unwrap().device_id, "device-new");
    assert_eq!(r.get(&id).unwrap().fields["head_name"], "张三");
    assert_eq!(
        r.status().unwrap().unsent_changes,
        1,
        "unsent work survives the new sign-in"
    );
}

#[test]
fn test_init_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    assert!(matches!(
        r.enrol("http://x", &login("li")),
        Err(Error::AlreadyInitialised(_))
    ));
}

#[test]
fn test_index_rows_from_selected_fields_equal_rows_from_the_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let h = r
        .create(
            Kind::Household,
            obj(json!({
                "head_name": "张三", "household_type": "registered", "visit_class": "priority",
                "assigned_worker": "wang", "address": {"estate": "幸福小区", "building": "3", "door": "101"},
                "residents": [{"name": "张三", "relation": "head"}], "notes": "独居老人",
            })),
        )
        .unwrap()
        .id;
    let records = [
        (
            Kind::Visit,
            json!({"household_id": h, "visit_type": "priority", "outcome": "met",
                   "started_at": "2026-11-01T09:00:00Z", "observations": "身体尚可",
                   "issues": [{"category": "住房", "description": "窗户漏风", "handling": "solved_on_spot"}]}),
        ),
        (
            Kind::Patrol,
            json!({"started_at": "2026-11-01T20:00:00Z", "team": ["wang", "li"],
                   "incidents": [{"kind": "fire", "occurred_at": "2026-11-01T20:10:00Z",
                                  "action": "handled"}]}),
        ),
        (
            Kind::Case,
            json!({"case_type": "disability", "household_id": h, "status": "open",
                   "subject_name": "张三", "responsible": "wang", "next_review_due": "2026-12-01",
                   "notes": "需要轮椅"}),
        ),
        (
            Kind::Report,
            json!({"category": "safety_hazard", "urgency": "urgent", "description": "楼道堆放杂物,影响通行",
                   "discovered_at": "2026-11-01T10:00:00Z"}),
        ),
    ];
    let mut ids = vec![(Kind::Household, h.clone())];
    for (kind, fields) in records {
        ids.push((kind, r.create(kind, obj(fields)).unwrap().id));
    }
    r.delete(&ids[2].1).unwrap();
    for (kind, id) in ids {
        let doc = r.load(&id).unwrap();
        let whole = IndexRow::from_fields(&id, kind, "g1", &doc::read_root(&doc), false);
        let selected = IndexRow::from_fields(
            &id,
            kind,
            "g1",
            &doc::read_fields(&doc, IndexRow::FIELDS.iter().copied()),
            false,
        );
        assert_eq!(selected, whole, "{kind:?}");
        let listed = r
            .list(&Query {
                kind: Some(kind),
                include_deleted: true,
                ..Query::default()
            })
            .unwrap();
        assert!(listed.contains(&whole), "{kind:?}: {listed:?}");
    }
}

#[test]
fn test_creating_a_record_without_any_grid_says_so_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    let mut nowhere = login("wang");
    nowhere.grids.clear();
    r.enrol("http://127.0.0.1:1", &nowhere).unwrap();
    let err = r
        .create(
            Kind::Household,
            obj(json!({"head_name": "张三", "household_type": "registered"})),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NoGrid), "{err}");
    assert!(err.to_string().contains("没有分配网格"), "{err}");
    assert_eq!(r.status().unwrap().unsent_changes, 0, "nothing was stored");
}

#[test]
fn test_a_database_error_reading_cursors_is_an_error_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(dir.path(), "wang");
    assert_eq!(r.cursors().unwrap().len(), 2);
    // A damaged store: the cursors table cannot be read. Starting the catch-up from zero would
    // hide that and download every grid again.
    r.conn
        .execute_batch("ALTER TABLE cursors RENAME TO cursors_lost")
        .unwrap();
    let err = r.cursors().unwrap_err();
    assert!(matches!(err, Error::Sqlite(_)), "{err}");
    assert!(r.status().is_err(), "status reads the cursors too");
}

/// A case whose unknown field `x` holds `levels` maps inside one another (the attack of issue
/// 15), as one change: the document and the change's bytes.
fn deep_case(id: &str, levels: usize) -> (Automerge, Vec<u8>) {
    use automerge::ObjType;
    use automerge::transaction::Transactable;

    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", id),
        ("kind", "case"),
        ("grid_id", "g1"),
        ("status", "open"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    let mut inner = tx.put_object(ROOT, "x", ObjType::Map).unwrap();
    for _ in 1..levels {
        inner = tx.put_object(&inner, "a", ObjType::Map).unwrap();
    }
    tx.commit();
    let bytes = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    (doc, bytes)
}

#[test]
fn test_a_received_record_nested_too_deep_is_refused_alone() {
    use crate::protocol::Snapshot;

    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = replica(da.path(), "wang");
    let h = household(&mut a, "priority");
    let good = as_changes(&a.outbox_batch(100, 1 << 20).unwrap());
    let (deep_doc, deep) = deep_case("case-deep", 300);
    let docs = vec![
        DocChanges::changes("case-deep", vec![serde_bytes::ByteBuf::from(deep)]),
        // The same attack as a snapshot of a record the device does not hold.
        DocChanges {
            doc_id: "case-deep-snapshot".into(),
            snapshot: Some(Snapshot {
                bytes: serde_bytes::ByteBuf::from(doc::save_snapshot(&deep_case("s", 2_000).0)),
                entries: 1,
            }),
            changes: vec![],
        },
        DocChanges::changes(h.clone(), good),
    ];
    let mut b = replica(db.path(), "li");
    // The batch is stored without the deep records; the cursor moves past them.
    assert_eq!(b.apply_remote("g1", &docs, &cursor(3)).unwrap(), 1);
    assert_eq!(b.get(&h).unwrap().fields["head_name"], "张三");
    assert_eq!(b.count(&Query::default()).unwrap(), 1);
    assert_eq!(b.cursors().unwrap()[0], cursor(3));
    for id in ["case-deep", "case-deep-snapshot"] {
        assert!(matches!(b.get(id), Err(Error::NotFound(_))), "{id}");
    }
    // A later change on top of the refused one adds nothing readable either.
    let mut later = deep_doc.fork();
    {
        use automerge::transaction::Transactable;
        let mut tx = later.transaction();
        tx.put(ROOT, "status", "closed").unwrap();
        tx.commit();
    }
    let next = later.get_last_local_change().unwrap().raw_bytes().to_vec();
    let docs = vec![DocChanges::changes(
        "case-deep",
        vec![serde_bytes::ByteBuf::from(next)],
    )];
    b.apply_remote("g1", &docs, &cursor(4)).unwrap();
    assert_eq!(b.count(&Query::default()).unwrap(), 1);
}

#[test]
fn test_a_record_stored_nested_too_deep_cannot_be_opened_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    // Poison stored before the limit existed: the change, the document and its index row.
    let (doc, bytes) = deep_case("case-poison", 2_000);
    let fields =
        obj(json!({"id": "case-poison", "kind": "case", "grid_id": "g1", "status": "open"}));
    let row = IndexRow::from_fields("case-poison", Kind::Case, "g1", &fields, false);
    {
        let tx = r.conn.transaction().unwrap();
        sql::ensure_doc(&tx, "case-poison", "case", "g1").unwrap();
        sql::insert_change(&tx, "case-poison", &doc.get_heads()[0].0, &bytes).unwrap();
        sql::upsert_index(&tx, &row, &doc::heads_to_bytes(&doc.get_heads())).unwrap();
        tx.commit().unwrap();
    }
    // Opening it is a clear error for that record; listing still works.
    let err = r.get("case-poison").unwrap_err();
    assert!(matches!(err, Error::TooDeep { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("case-poison") && text.contains("`x`"),
        "{text}"
    );
    assert!(
        r.update("case-poison", obj(json!({"status": "closed"})))
            .is_err()
    );
    assert_eq!(r.count(&Query::default()).unwrap(), 1);
    // A received change to it is set aside; the rest of the batch is stored.
    let da = tempfile::tempdir().unwrap();
    let mut a = replica(da.path(), "li");
    let h = household(&mut a, "priority");
    let mut later = doc.fork();
    {
        use automerge::transaction::Transactable;
        let mut tx = later.transaction();
        tx.put(ROOT, "status", "closed").unwrap();
        tx.commit();
    }
    let next = later.get_last_local_change().unwrap().raw_bytes().to_vec();
    let docs = vec![
        DocChanges::changes("case-poison", vec![serde_bytes::ByteBuf::from(next)]),
        DocChanges::changes(h.clone(), as_changes(&a.outbox_batch(10, 1 << 20).unwrap())),
    ];
    assert_eq!(r.apply_remote("g1", &docs, &cursor(9)).unwrap(), 1);
    assert_eq!(r.get(&h).unwrap().fields["head_name"], "张三");
    assert_eq!(r.cursors().unwrap()[0], cursor(9));
    // A repair of it ends without touching it.
    let mut state = automerge::sync::State::new();
    assert_eq!(
        r.repair_step("g1", "case-poison", &mut state, None)
            .unwrap(),
        None
    );
}

#[test]
fn test_a_repair_step_nested_too_deep_is_refused() {
    use automerge::sync::{self, State, SyncDoc};

    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let (mut server_copy, _) = deep_case("case-deep", 300);
    let (mut ours, mut theirs) = (State::new(), State::new());
    // The device starts, the relay answers with the deep record's changes.
    let hello = r.repair_step("g1", "case-deep", &mut ours, None).unwrap();
    let hello = sync::Message::decode(&hello.unwrap()).unwrap();
    server_copy
        .receive_sync_message(&mut theirs, hello)
        .unwrap();
    let answer = server_copy
        .generate_sync_message(&mut theirs)
        .unwrap()
        .encode();
    let reply = r
        .repair_step("g1", "case-deep", &mut ours, Some(&answer))
        .unwrap();
    assert_eq!(reply, None, "the record's repair ends");
    assert!(matches!(r.get("case-deep"), Err(Error::NotFound(_))));
    assert_eq!(r.count(&Query::default()).unwrap(), 0);
}

#[test]
fn test_a_write_nested_too_deep_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let mut deep = json!("底");
    for _ in 0..40 {
        deep = json!({ "a": deep });
    }
    let mut fields = obj(json!({"head_name": "张三", "household_type": "registered"}));
    fields.insert("x".into(), deep.clone());
    let err = r.create(Kind::Household, fields).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("`x`"), "{err}");
    assert_eq!(r.count(&Query::default()).unwrap(), 0);
    let h = household(&mut r, "priority");
    let before = r.status().unwrap().unsent_changes;
    let err = r.update(&h, obj(json!({ "address": deep }))).unwrap_err();
    assert!(err.to_string().contains("`address`"), "{err}");
    assert_eq!(r.status().unwrap().unsent_changes, before);
    assert!(r.get(&h).unwrap().fields.get("address").is_none());
}

#[test]
fn test_the_ca_given_at_sign_in_is_kept_until_replaced_or_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    assert_eq!(r.trusted_ca().unwrap(), None);
    r.enrol_trusting("https://relay", &login("wang"), Some("CA one"))
        .unwrap();
    drop(r);
    let mut r = Replica::open(dir.path()).unwrap();
    assert_eq!(r.trusted_ca().unwrap().as_deref(), Some("CA one"));
    // Signing in again without a CA (a lost token) keeps the one the replica has.
    r.enrol("https://relay", &login("wang")).unwrap();
    assert_eq!(r.trusted_ca().unwrap().as_deref(), Some("CA one"));
    r.enrol_trusting("https://relay", &login("wang"), Some("CA two"))
        .unwrap();
    assert_eq!(r.trusted_ca().unwrap().as_deref(), Some("CA two"));
    // A revoked device forgets whom it trusted with everything else.
    r.wipe().unwrap();
    assert_eq!(r.trusted_ca().unwrap(), None);
}

/// One change creating a document from scratch with these root fields, by another device.
fn foreign_change(fields: Value) -> serde_bytes::ByteBuf {
    let mut doc = Automerge::new().with_actor(ActorId::random());
    let mut tx = doc.transaction();
    doc::reconcile_root(&mut tx, Kind::Patrol, &Map::new(), &obj(fields)).unwrap();
    tx.commit_with(CommitOptions::default().with_message("volunteer"));
    serde_bytes::ByteBuf::from(doc.get_last_local_change().unwrap().raw_bytes().to_vec())
}

#[test]
fn test_a_received_record_of_another_kind_is_not_merged_into_a_private_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let h = r
        .create(
            Kind::Household,
            obj(json!({"head_name": "张三", "household_type": "registered",
                       "residents": [{"name": "张三", "id_number": "420102195003071234"}]})),
        )
        .unwrap()
        .id;
    let private = sensitive::private_id(&h);
    assert_eq!(r.kind_of(&private), Some(Kind::HouseholdPrivate));
    // What a relay that let it through would send: a patrol log under the private part's id,
    // next to an ordinary record in the same batch.
    let patrol = foreign_change(json!({
        "id": private, "kind": "patrol", "grid_id": "g1", "started_at": "2026-11-01T20:00:00Z",
        "residents": [],
    }));
    let other = foreign_change(json!({
        "id": "p-1", "kind": "patrol", "grid_id": "g1", "started_at": "2026-11-01T20:00:00Z",
    }));
    let docs = vec![
        DocChanges::changes(private.clone(), vec![patrol]),
        DocChanges::changes("p-1", vec![other]),
    ];
    assert_eq!(r.apply_remote("g1", &docs, &cursor(2)).unwrap(), 1);
    assert_eq!(r.kind_of(&private), Some(Kind::HouseholdPrivate));
    let stored = doc::read_root(&r.load(&private).unwrap());
    assert!(!stored.contains_key("started_at"), "{stored:?}");
    assert_eq!(
        r.get(&h).unwrap().fields["residents"][0]["id_number"],
        "420102195003071234"
    );
    assert_eq!(r.kind_of("p-1"), Some(Kind::Patrol), "the rest is stored");
    assert_eq!(r.cursors().unwrap()[0], cursor(2));
    // Nor does a record become a private part, or take an id that is not its own.
    let fake = foreign_change(json!({"id": "x~private", "kind": "patrol", "grid_id": "g1",
                                     "started_at": "2026-11-01T20:00:00Z"}));
    let renamed = foreign_change(json!({"id": "p-9", "kind": "patrol", "grid_id": "g1",
                                        "started_at": "2026-11-01T20:00:00Z"}));
    let docs = vec![
        DocChanges::changes("x~private", vec![fake]),
        DocChanges::changes("p-2", vec![renamed]),
    ];
    assert_eq!(r.apply_remote("g1", &docs, &cursor(3)).unwrap(), 0);
    assert_eq!(r.kind_of("x~private"), None);
    assert_eq!(r.kind_of("p-2"), None);
}

fn replica_with_role(dir: &std::path::Path, worker: &str, role: &str) -> Replica {
    let mut r = Replica::open(dir).unwrap();
    let mut answer = login(worker);
    answer.role = role.into();
    r.enrol("http://127.0.0.1:1", &answer).unwrap();
    r
}

#[test]
fn test_a_write_the_role_may_never_make_is_refused_in_the_relays_words_and_stores_nothing() {
    use crate::access::{NotAllowed, Role};
    let (dw, dv) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut worker = replica(dw.path(), "wang");
    let h = household(&mut worker, "priority");
    let mut volunteer = replica_with_role(dv.path(), "zhou", "volunteer");
    let sent = worker.outbox_batch(100, 1 << 20).unwrap();
    let docs = vec![DocChanges {
        snapshot: None,
        doc_id: h.clone(),
        changes: as_changes(&sent),
    }];
    volunteer.apply_remote("g1", &docs, &cursor(1)).unwrap();

    let case = obj(json!({"case_type": "disability", "household_id": h}));
    let err = volunteer.create(Kind::Case, case.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAllowed(NotAllowed {
                role: Role::Volunteer,
                kind: Kind::Case
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "巡逻志愿者无权写入帮扶个案 a volunteer may not write case records"
    );
    // An edit of a household it received, and a deletion, are refused the same way.
    let edit = volunteer.update(&h, obj(json!({"notes": "改一下"})));
    assert!(matches!(edit, Err(Error::NotAllowed(_))), "{edit:?}");
    assert!(matches!(volunteer.delete(&h), Err(Error::NotAllowed(_))));
    assert_eq!(volunteer.status().unwrap().unsent_changes, 0);
    assert!(volunteer.outbox_batch(100, 1 << 20).unwrap().is_empty());
    assert_eq!(volunteer.count(&Query::default()).unwrap(), 1);
    assert_eq!(volunteer.get(&h).unwrap().fields["notes"], "");

    // What the role may write goes through; a grid worker may write the case.
    volunteer
        .create(
            Kind::Patrol,
            obj(json!({"started_at": "2026-11-01T20:00:00Z"})),
        )
        .unwrap();
    assert_eq!(volunteer.status().unwrap().unsent_changes, 1);
    worker.create(Kind::Case, case).unwrap();
}

#[test]
fn test_a_replica_that_does_not_know_its_role_leaves_the_refusal_to_the_relay() {
    // An empty role (no role stored) or one a later relay has and this build does not know.
    for role in ["", "inspector"] {
        let dir = tempfile::tempdir().unwrap();
        let mut r = replica_with_role(dir.path(), "zhou", role);
        assert_eq!(r.identity().unwrap().known_role(), None);
        let case = obj(json!({"case_type": "low_income", "subject_name": "张三"}));
        r.create(Kind::Case, case).unwrap();
        assert_eq!(r.status().unwrap().unsent_changes, 1, "role {role:?}");
    }
}

#[test]
fn test_a_misspelt_field_is_refused_with_the_nearest_name_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let err = r
        .create(
            Kind::Household,
            obj(json!({"headname": "张三", "household_type": "registered"})),
        )
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Invalid(ValidationError::UnknownField { field, nearest: Some("head_name"), .. })
                if field == "headname"
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("gridsync schema household"),
        "{err}"
    );
    assert_eq!(r.status().unwrap().unsent_changes, 0);
    let h = household(&mut r, "ordinary");
    // Inside entries and maps too, and in a patch.
    let err = r
        .update(
            &h,
            obj(json!({"residents": [{"name": "李四", "id_numbr": "1"}]})),
        )
        .unwrap_err();
    assert!(err.to_string().contains("residents[0].id_numbr"), "{err}");
    assert!(err.to_string().contains("id_number"), "{err}");
    let err = r
        .update(&h, obj(json!({"address": {"dor": "101"}})))
        .unwrap_err();
    assert!(err.to_string().contains("`door`"), "{err}");
    let err = r.update(&h, obj(json!({"colour": "red"}))).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Invalid(ValidationError::UnknownField { nearest: None, .. })
        ),
        "{err}"
    );
    assert_eq!(r.status().unwrap().unsent_changes, 1);
    r.update(
        &h,
        obj(json!({"address": {"door": "101"}, "gps": {"lat": 30.1, "lon": 120.2}})),
    )
    .unwrap();
}

#[test]
fn test_appended_entries_carry_their_author_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    let h = household(&mut r, "ordinary");
    let case = r
        .create(
            Kind::Case,
            obj(json!({"case_type": "low_income", "household_id": h, "actions": [{"kind": "note", "description": "初次登记"}]})),
        )
        .unwrap();
    let updated = r
        .update(
            &case.id,
            obj(json!({"actions": [{"kind": "visit", "at": "2026-11-02T09:00:00Z", "description": "入户核实"}]})),
        )
        .unwrap();
    let actions = updated.fields["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2);
    for action in actions {
        assert_eq!(action["by"], "wang");
        assert!(
            action["at"].as_str().is_some_and(|t| t.starts_with("20")),
            "{action}"
        );
    }
    // A time the writer gave is kept.
    assert_eq!(actions[1]["at"], "2026-11-02T09:00:00Z");
}

#[test]
fn test_times_typed_as_local_time_are_read_in_the_communitys_zone() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    r.set_utc_offset(chrono::FixedOffset::east_opt(8 * 3600));
    let h = household(&mut r, "ordinary");
    let visit = r
        .create(
            Kind::Visit,
            obj(
                json!({"household_id": h, "visit_type": "routine", "outcome": "met",
                "started_at": "2026-11-30", "ended_at": "2026-11-30 09:30"}),
            ),
        )
        .unwrap();
    assert_eq!(visit.fields["started_at"], "2026-11-30T00:00:00+08:00");
    assert_eq!(visit.fields["ended_at"], "2026-11-30T09:30:00+08:00");
    // A date field stays a date; a time that is no time names its field and the formats.
    let err = r
        .update(&visit.id, obj(json!({"ended_at": "明天上午"})))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`ended_at`") && err.contains("2026-11-01 09:30"),
        "{err}"
    );
}

#[test]
fn test_status_counts_a_household_with_private_data_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = replica(dir.path(), "wang");
    r.create(
        Kind::Household,
        obj(json!({"head_name": "张三", "household_type": "registered",
            "residents": [{"name": "张三", "id_number": "420102195003071234"}]})),
    )
    .unwrap();
    assert_eq!(r.status().unwrap().records, 1);
    assert_eq!(r.status().unwrap().unsent_changes, 2);
}

#[test]
fn test_a_record_of_a_kilobyte_takes_about_its_size_on_disk_not_whole_pages() {
    // 300 households with 1.4 KB of notes each (their first change is about 1.5 KB): stored
    // inline the replica grows by about 1.5 MB (changes, outbox, index); as the WITHOUT ROWID
    // tables of migration 001 kept them, every first change spilled into an overflow page of its
    // own (4 KiB) and the replica grew by 2.3 MB.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(sql::DB_FILE);
    let mut r = replica(dir.path(), "w1");
    let before = std::fs::metadata(&file).unwrap().len();
    for i in 0..300 {
        let notes: String = "走访发现屋顶漏雨需要修缮"
            .chars()
            .cycle()
            .take(470)
            .collect();
        r.create(
            Kind::Household,
            obj(
                json!({"head_name": format!("住户{i}"), "household_type": "registered",
                       "visit_class": "ordinary", "notes": notes}),
            ),
        )
        .unwrap();
    }
    // Closing checkpoints the WAL into the file and removes it.
    drop(r);
    let grew = std::fs::metadata(&file).unwrap().len() - before;
    assert!(
        grew < 1_900_000,
        "300 records of 1.4 KB grew the replica by {grew} bytes"
    );
}
