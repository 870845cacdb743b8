//! The conformance suite every storage backend runs.

use std::collections::BTreeMap;

use gridsync_core::record::Kind;

use super::*;

mod accounts;
mod attachments;
pub(crate) use accounts::accounts_conformance;
pub(crate) use attachments::attachments_conformance;

fn change(grid: &str, doc: &str, n: u8, device: &str) -> NewChange {
    NewChange {
        grid_id: grid.into(),
        doc_id: doc.into(),
        kind: Some(if n == 3 { Kind::Patrol } else { Kind::Case }),
        hash: [n; 32],
        bytes: vec![n; 10],
        device_id: device.into(),
        worker_id: "w".into(),
        in_snapshot: false,
    }
}

fn doc(grid: &str, doc: &str, snapshot: Option<Vec<u8>>) -> DocUpdate {
    DocUpdate {
        doc_id: doc.into(),
        grid_id: grid.into(),
        kind: Some(Kind::Case),
        heads: vec![[1; 32]],
        index: None,
        snapshot: snapshot.map(|bytes| PackedSnapshot::pack(&bytes)),
        facts: None,
        parallel: false,
        attachments: None,
    }
}

/// A change the document's snapshot holds (`NewChange::in_snapshot`) keeps its entry without its
/// bytes, and a batch's budget counts it at its size; the rest keep theirs.
pub(crate) async fn in_snapshot_conformance(s: &dyn Storage) {
    let held = |n: u8| NewChange {
        bytes: vec![n; 100],
        in_snapshot: true,
        ..change("g-snap", "d-snap", n, "a")
    };
    s.commit(Commit {
        changes: vec![held(40), held(41)],
        docs: vec![doc("g-snap", "d-snap", Some(vec![9; 150]))],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    s.commit(Commit {
        changes: vec![change("g-snap", "d-snap", 42, "a")],
        docs: vec![doc("g-snap", "d-snap", None)],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let (all, more) = s
        .log_since("g-snap", &KindFilter::All, 0, 10, 1 << 20)
        .await
        .unwrap();
    assert!(!more);
    let stored: Vec<usize> = all.iter().map(|e| e.bytes.len()).collect();
    assert_eq!(stored, [0, 0, 10]);
    // 150 bytes hold the first entry (100) but not the second too.
    let (budgeted, more) = s
        .log_since("g-snap", &KindFilter::All, 0, 10, 150)
        .await
        .unwrap();
    assert_eq!((budgeted.len(), more), (1, true));
    // Loading the document: its snapshot and only the change after it.
    let loaded = s.load_doc("d-snap").await.unwrap().unwrap();
    assert_eq!(loaded.snapshot, Some(vec![9; 150]));
    assert_eq!(loaded.changes, [vec![42u8; 10]]);
}

/// The behaviour every backend must have.
pub(crate) async fn conformance(s: &dyn Storage) {
    let id = s.server_id().await.unwrap();
    assert_eq!(s.server_id().await.unwrap(), id, "server id is stable");
    assert_eq!(s.head("g1").await.unwrap(), None);

    let seq = s
        .commit(Commit {
            changes: vec![change("g1", "d1", 1, "a"), change("g2", "d2", 2, "a")],
            docs: vec![doc("g1", "d1", None), doc("g2", "d2", None)],
            moves: Vec::new(),
        })
        .await
        .unwrap();
    assert!(seq >= 2);
    // Re-committing a known change is harmless and adds no entry.
    s.commit(Commit {
        changes: vec![change("g1", "d1", 1, "a"), change("g1", "d1", 3, "b")],
        docs: vec![doc("g1", "d1", None)],
        moves: Vec::new(),
    })
    .await
    .unwrap();

    let (entries, more) = s
        .log_since("g1", &KindFilter::All, 0, 10, 1 << 20)
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(
        entries.iter().map(|e| e.hash[0]).collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(entries[0].seq < entries[1].seq);
    assert_eq!(entries[1].device_id, "b");
    let (page, more) = s
        .log_since("g1", &KindFilter::All, 0, 1, 1 << 20)
        .await
        .unwrap();
    assert_eq!((page.len(), more), (1, true));
    let (rest, _) = s
        .log_since("g1", &KindFilter::All, entries[0].seq, 10, 1 << 20)
        .await
        .unwrap();
    assert_eq!(rest, entries[1..].to_vec());
    let none = KindFilter::Only(Vec::new());
    assert_eq!(
        s.log_since("g1", &none, 0, 10, 1 << 20).await.unwrap().0,
        []
    );
    assert!(s.doc_heads("g1", &none, None, 10).await.unwrap().is_empty());
    let patrols = s
        .log_since("g1", &KindFilter::Only(vec![Kind::Patrol]), 0, 10, 1 << 20)
        .await
        .unwrap()
        .0;
    assert_eq!(patrols.iter().map(|e| e.hash[0]).collect::<Vec<_>>(), [3]);

    let (head_seq, head_hash) = s.head("g1").await.unwrap().unwrap();
    assert_eq!((head_seq, head_hash), (entries[1].seq, [3; 32]));
    assert_eq!(
        s.entry_hash("g1", entries[0].seq).await.unwrap(),
        Some([1; 32])
    );
    assert_eq!(s.entry_hash("g2", entries[0].seq).await.unwrap(), None);

    let known = s.known(&[[1; 32], [9; 32]]).await.unwrap();
    assert_eq!(known, HashSet::from([[1; 32]]));

    let stored = s.load_doc("d1").await.unwrap().unwrap();
    assert_eq!(stored.grid_id, "g1");
    assert_eq!(stored.changes.len(), 2);
    // A snapshot replaces the changes it covers.
    s.commit(Commit {
        changes: vec![change("g1", "d1", 4, "a")],
        docs: vec![doc("g1", "d1", Some(vec![42; 300]))],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let stored = s.load_doc("d1").await.unwrap().unwrap();
    assert_eq!(
        stored.snapshot,
        Some(vec![42; 300]),
        "stored deflated, read back whole"
    );
    assert!(stored.changes.is_empty());
    s.commit(Commit {
        changes: vec![change("g1", "d1", 5, "a")],
        docs: vec![doc("g1", "d1", None)],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        s.load_doc("d1").await.unwrap().unwrap().changes,
        vec![vec![5; 10]]
    );

    let heads = s.doc_heads("g1", &KindFilter::All, None, 10).await.unwrap();
    assert_eq!(heads, vec![("d1".to_string(), vec![[1; 32]])]);
    assert!(
        s.doc_heads("g1", &KindFilter::All, Some("d1"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.doc_heads("g1", &KindFilter::Only(vec![Kind::Patrol]), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.load_doc("nope").await.unwrap().is_none());
    assert_eq!(
        s.load_doc("d1").await.unwrap().unwrap().kind,
        Some(Kind::Case)
    );
    // A document whose first change has not arrived has no kind yet, and only a reader of every
    // kind is offered it.
    s.commit(Commit {
        changes: Vec::new(),
        docs: vec![DocUpdate {
            kind: None,
            ..doc("g1", "d0", None)
        }],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(s.load_doc("d0").await.unwrap().unwrap().kind, None);
    let only_cases = KindFilter::one(Kind::Case);
    let listed = s.doc_heads("g1", &only_cases, None, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        s.doc_heads("g1", &KindFilter::All, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    // Several at once answer as one at a time would, in order, absent ones included.
    let ids = ["nope".to_string(), "d1".to_string(), "nope".to_string()];
    let several = s.load_docs(&ids).await.unwrap();
    assert_eq!(several.len(), 3);
    assert!(several[0].is_none() && several[2].is_none());
    let one = s.load_doc("d1").await.unwrap().unwrap();
    let d1 = several[1].as_ref().unwrap();
    assert_eq!(
        (&d1.grid_id, &d1.kind, &d1.snapshot, &d1.changes),
        (&one.grid_id, &one.kind, &one.snapshot, &one.changes)
    );

    // d1's snapshot stands for its entries up to the one with hash 4. It is offered only to a
    // cursor before d1's first entry, and only to a batch that reaches that entry.
    let all = s
        .log_since("g1", &KindFilter::All, 0, 10, 1 << 20)
        .await
        .unwrap()
        .0;
    let seq_of = |n: u8| all.iter().find(|e| e.hash[0] == n).unwrap().seq;
    let (first, covered) = (seq_of(1), seq_of(4));
    let within = |after: u64, up_to: u64| {
        let ids = ["d1".to_string(), "d2".to_string(), "nope".to_string()];
        async move {
            s.snapshots_within("g1", &ids, after, up_to)
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.map(|snap| (snap.bytes, snap.seq)))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        within(first - 1, covered).await,
        vec![Some((vec![42; 300], covered)), None, None],
        "d2 has no snapshot, nope does not exist"
    );
    assert_eq!(
        within(first, covered).await[0],
        None,
        "the cursor holds part of d1"
    );
    assert_eq!(
        within(first - 1, covered - 1).await[0],
        None,
        "past the batch"
    );
}

/// The API's changed-since lists: each record once, at its newest entry, in the asked grids and
/// kinds, paged by that entry's seq; a record with no index row yet is none.
pub(crate) async fn changed_since_conformance(s: &dyn Storage) {
    use serde_json::json;
    let grids = |g: &[&str]| g.iter().map(|g| g.to_string()).collect::<Vec<_>>();
    let case = |grid: &str, id: &str| {
        record(
            grid,
            id,
            Kind::Case,
            json!({"case_type": "low_income", "status": "open"}),
            false,
        )
    };
    let visit = |grid: &str, id: &str| {
        record(
            grid,
            id,
            Kind::Visit,
            json!({"visit_type": "routine"}),
            false,
        )
    };
    s.commit(Commit {
        changes: vec![
            entry("g1", "c1", 1, "p", "w"),
            entry("g1", "v1", 2, "p", "w"),
        ],
        docs: vec![case("g1", "c1"), visit("g1", "v1")],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    s.commit(Commit {
        changes: vec![
            entry("g2", "c2", 3, "p", "w"),
            entry("g1", "c1", 4, "p", "w"),
        ],
        docs: vec![case("g2", "c2"), case("g1", "c1")],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    // A change of a document not complete yet (no index row).
    s.commit(Commit {
        changes: vec![entry("g1", "x1", 5, "p", "w")],
        docs: vec![doc("g1", "x1", None)],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let all = s
        .changed_since(&grids(&["g1"]), &KindFilter::All, 0, 10)
        .await
        .unwrap();
    let ids =
        |page: &(Vec<Changed>, bool)| page.0.iter().map(|c| c.doc_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&all), ["v1", "c1"], "c1 once, at its newest entry");
    assert!(!all.1);
    assert!(all.0[0].seq < all.0[1].seq);
    let first = s
        .changed_since(&grids(&["g1"]), &KindFilter::All, 0, 1)
        .await
        .unwrap();
    assert_eq!((ids(&first), first.1), (vec!["v1".to_string()], true));
    let rest = s
        .changed_since(&grids(&["g1"]), &KindFilter::All, first.0[0].seq, 1)
        .await
        .unwrap();
    assert_eq!((ids(&rest), rest.1), (vec!["c1".to_string()], false));
    let after = s
        .changed_since(&grids(&["g1"]), &KindFilter::All, rest.0[0].seq, 10)
        .await
        .unwrap();
    assert!(after.0.is_empty() && !after.1);
    let cases = s
        .changed_since(
            &grids(&["g1", "g2"]),
            &KindFilter::Only(vec![Kind::Case]),
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(ids(&cases), ["c2", "c1"]);
    assert!(
        s.changed_since(&[], &KindFilter::All, 0, 10)
            .await
            .unwrap()
            .0
            .is_empty(),
        "no grids, nothing"
    );
    // An edit moves the record to the end, past a cursor that had passed it.
    s.commit(Commit {
        changes: vec![entry("g1", "v1", 6, "p", "w")],
        docs: vec![visit("g1", "v1")],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let moved = s
        .changed_since(&grids(&["g1"]), &KindFilter::All, rest.0[0].seq, 10)
        .await
        .unwrap();
    assert_eq!(ids(&moved), ["v1"]);
}

/// A record's index row and facts, as the relay would commit them.
fn record(
    grid: &str,
    id: &str,
    kind: Kind,
    fields: serde_json::Value,
    parallel: bool,
) -> DocUpdate {
    let serde_json::Value::Object(f) = fields else {
        panic!("fields must be an object")
    };
    let conflicts = f.get("conflict").is_some();
    DocUpdate {
        doc_id: id.into(),
        grid_id: grid.into(),
        kind: Some(kind),
        heads: vec![[7; 32]],
        index: Some(IndexRow::from_fields(id, kind, grid, &f, conflicts)),
        snapshot: None,
        facts: Some(RecordFacts::from_fields(kind, &f)),
        parallel,
        attachments: Some(gridsync_core::record::attachment::refs(&f)),
    }
}

fn entry(grid: &str, id: &str, n: u8, device: &str, worker: &str) -> NewChange {
    NewChange {
        grid_id: grid.into(),
        doc_id: id.into(),
        kind: Some(Kind::Case),
        hash: [n; 32],
        bytes: vec![n; 4],
        device_id: device.into(),
        worker_id: worker.into(),
        in_snapshot: false,
    }
}

fn ids(page: &RecordPage) -> Vec<&str> {
    let mut ids: Vec<&str> = page.rows.iter().map(|r| r.row.id.as_str()).collect();
    ids.sort();
    ids
}

/// The dashboard's lists, counts, facts, review flags and change sources: the behaviour every
/// backend must have as well.
pub(crate) async fn dashboard_conformance(s: &dyn Storage) {
    use serde_json::json;
    let seq = s
        .commit(Commit {
            changes: vec![
                entry("g1", "c1", 101, "phone-a", "wang"),
                entry("g1", "c1", 102, "office-1", "zhao"),
            ],
            docs: vec![
                record("g1", "h1", Kind::Household, json!({
                    "head_name": "张三", "household_type": "registered", "next_visit_due": "2026-10-01",
                    "created_at": "2026-09-01T00:00:00Z", "address": {"building": "3"},
                }), false),
                record("g1", "c1", Kind::Case, json!({
                    "case_type": "low_income", "household_id": "h1", "status": "open",
                    "responsible": "wang", "created_at": "2026-11-03T02:00:00Z",
                    "updated_at": "2026-11-03T02:00:00Z",
                }), false),
                record("g2", "c2", Kind::Case, json!({
                    "case_type": "disability", "subject_name": "李四", "status": "closed",
                    "created_by": "li", "created_at": "2026-10-03T02:00:00Z",
                    "updated_at": "2026-11-04T02:00:00Z",
                }), false),
                record("g1", "r1", Kind::Report, json!({
                    "category": "dispute", "urgency": "urgent", "status": "received",
                    "discovered_at": "2026-11-05T01:00:00+08:00", "description": "Noise at night",
                    "created_by": "wang", "conflict": true,
                }), false),
                record("g1", "p1", Kind::Patrol, json!({
                    "started_at": "2026-11-06T12:00:00Z", "created_by": "liu",
                    "incidents": [{"kind": "fire", "occurred_at": "2026-11-06T12:30:00Z"}],
                }), true),
            ],
            moves: Vec::new(),
        })
        .await
        .unwrap();
    let all = |grids: &[&str]| RecordQuery {
        grids: grids.iter().map(|g| g.to_string()).collect(),
        ..RecordQuery::default()
    };
    assert_eq!(
        ids(&s.list_records(&all(&["g1"])).await.unwrap()),
        ["c1", "h1", "p1", "r1"]
    );
    assert!(
        s.list_records(&all(&[])).await.unwrap().rows.is_empty(),
        "no grids, no rows"
    );
    let cases = RecordQuery {
        kinds: KindFilter::one(Kind::Case),
        ..all(&["g1", "g2"])
    };
    assert_eq!(ids(&s.list_records(&cases).await.unwrap()), ["c1", "c2"]);
    let check = |q: RecordQuery, want: &'static [&'static str]| async move {
        assert_eq!(ids(&s.list_records(&q).await.unwrap()), want, "{q:?}");
    };
    check(
        RecordQuery {
            statuses: vec!["open".into()],
            ..cases.clone()
        },
        &["c1"],
    )
    .await;
    check(
        RecordQuery {
            subtype: Some("disability".into()),
            ..cases.clone()
        },
        &["c2"],
    )
    .await;
    check(
        RecordQuery {
            worker: Some("wang".into()),
            ..all(&["g1", "g2"])
        },
        &["c1", "r1"],
    )
    .await;
    check(
        RecordQuery {
            search: Some("李四".into()),
            ..all(&["g1", "g2"])
        },
        &["c2"],
    )
    .await;
    check(
        RecordQuery {
            search: Some("noise".into()),
            ..all(&["g1", "g2"])
        },
        &["r1"],
    )
    .await;
    check(
        RecordQuery {
            ids: vec!["h1".into()],
            ..all(&["g1"])
        },
        &["h1"],
    )
    .await;
    check(
        RecordQuery {
            needs_review: true,
            ..all(&["g1", "g2"])
        },
        &["p1", "r1"],
    )
    .await;
    check(
        RecordQuery {
            due_before: Some("2026-11-01".into()),
            ..all(&["g1"])
        },
        &["h1"],
    )
    .await;
    // Times are compared in UTC: the report was discovered on 4 November, 17:00 UTC.
    check(
        RecordQuery {
            from: Some("2026-11-04T00:00:00Z".into()),
            to: Some("2026-11-05T00:00:00Z".into()),
            ..all(&["g1", "g2"])
        },
        &["r1"],
    )
    .await;

    let page = s
        .list_records(&RecordQuery {
            limit: Some(1),
            offset: 1,
            ..all(&["g1"])
        })
        .await
        .unwrap();
    assert_eq!((page.rows.len(), page.total), (1, 4));
    let c1 = s
        .list_records(&RecordQuery {
            ids: vec!["c1".into()],
            ..all(&["g1"])
        })
        .await
        .unwrap();
    let c1 = &c1.rows[0];
    assert_eq!(c1.household_title.as_deref(), Some("张三 3"));
    assert_eq!(c1.facts.subtype.as_deref(), Some("low_income"));
    assert!(!c1.received_at.is_empty());
    let p1 = s
        .list_records(&RecordQuery {
            ids: vec!["p1".into()],
            ..all(&["g1"])
        })
        .await
        .unwrap();
    assert!(p1.rows[0].parallel);
    assert_eq!(p1.rows[0].facts.incidents[0].kind, "fire");

    let tally = s.tally(&cases).await.unwrap();
    let mut counts: Vec<(String, Option<String>, Option<String>, u64)> = tally
        .into_iter()
        .map(|t| (t.grid_id, t.status, t.subtype, t.count))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            (
                "g1".into(),
                Some("open".into()),
                Some("low_income".into()),
                1
            ),
            (
                "g2".into(),
                Some("closed".into()),
                Some("disability".into()),
                1
            ),
        ]
    );

    // A case stays closed since the first write that closed it; reopening clears that.
    s.commit(Commit {
        changes: vec![],
        docs: vec![record(
            "g2",
            "c2",
            Kind::Case,
            json!({
                "case_type": "disability", "subject_name": "李四", "status": "closed",
                "updated_at": "2026-11-20T00:00:00Z",
            }),
            false,
        )],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let get = |id: &'static str| async move {
        s.list_records(&RecordQuery {
            ids: vec![id.into()],
            ..all(&["g1", "g2"])
        })
        .await
        .unwrap()
        .rows
        .remove(0)
    };
    assert_eq!(
        get("c2").await.facts.closed_at.as_deref(),
        Some("2026-11-04T02:00:00Z")
    );
    s.commit(Commit {
        changes: vec![],
        docs: vec![record(
            "g2",
            "c2",
            Kind::Case,
            json!({
                "case_type": "disability", "subject_name": "李四", "status": "reopened",
            }),
            false,
        )],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(get("c2").await.facts.closed_at, None);

    // The co-construction facts: an activity's participants, a stock item's movements, a
    // task's handling (kept from the first write that saw it handled, cleared when it is sent
    // back), a patrol's end.
    s.commit(Commit {
        changes: vec![],
        docs: vec![
            record("g1", "a1", Kind::Activity, json!({
                "activity_type": "clean_up", "title": "清理楼道", "organiser_unit_id": "u1",
                "started_at": "2026-11-05T09:00:00+08:00", "ended_at": "2026-11-05T11:30:00+08:00",
                "participants": [{"volunteer_id": "v1", "hours": 2.5}, {"unit_id": "u1", "hours": 2}],
            }), false),
            record("g1", "s1", Kind::Stock, json!({
                "item": "大米", "measure": "袋", "low_at": 3,
                "movements": [
                    {"kind": "in", "quantity": 10, "at": "2026-11-02T09:00:00+08:00", "donor_unit_id": "u1"},
                    {"kind": "out", "quantity": 4.5, "at": "2026-11-03T09:00:00+08:00", "household_id": "h1"},
                ],
            }), false),
            record("g1", "t1", Kind::Task, json!({
                "title": "修路灯", "source": "report", "source_id": "r1", "assignee": "wang",
                "deadline": "2026-11-06T18:00:00+08:00", "status": "handled",
                "updated_at": "2026-11-06T12:00:00Z",
                "updates": [{"at": "2026-11-06T10:00:00+08:00", "status": "handled", "note": "已修好"}],
            }), false),
            record("g1", "pt1", Kind::Patrol, json!({
                "started_at": "2026-11-05T20:00:00Z", "ended_at": "2026-11-05T22:15:00Z",
            }), false),
        ],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let activity = get("a1").await.facts;
    assert_eq!(activity.unit_id.as_deref(), Some("u1"));
    assert_eq!(activity.ended_at.as_deref(), Some("2026-11-05T03:30:00Z"));
    assert_eq!(activity.duration_hours(), Some(2.5));
    assert_eq!(
        activity.participants,
        [
            ParticipantFact {
                volunteer_id: Some("v1".into()),
                unit_id: None,
                hours: 2.5
            },
            ParticipantFact {
                volunteer_id: None,
                unit_id: Some("u1".into()),
                hours: 2.0
            },
        ]
    );
    let stock = get("s1").await.facts;
    assert_eq!((stock.low_at, stock.on_hand()), (Some(3.0), 5.5));
    assert_eq!(stock.measure.as_deref(), Some("袋"));
    assert_eq!(stock.movements[1].household_id.as_deref(), Some("h1"));
    assert_eq!(
        stock.movements[1].at.as_deref(),
        Some("2026-11-03T01:00:00Z")
    );
    assert_eq!(get("pt1").await.facts.duration_hours(), Some(2.25));
    let task = get("t1").await.facts;
    assert_eq!(task.source_id.as_deref(), Some("r1"));
    assert_eq!(task.handled_at.as_deref(), Some("2026-11-06T02:00:00Z"));
    let task_as = |status: &str, updated: &str| {
        record(
            "g1",
            "t1",
            Kind::Task,
            json!({
                "title": "修路灯", "source": "report", "assignee": "wang", "status": status,
                "deadline": "2026-11-06T18:00:00+08:00", "updated_at": updated,
            }),
            false,
        )
    };
    s.commit(Commit {
        changes: vec![],
        docs: vec![task_as("verified", "2026-11-08T00:00:00Z")],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        get("t1").await.facts.handled_at.as_deref(),
        Some("2026-11-06T02:00:00Z"),
        "verifying does not move when it was handled"
    );
    s.commit(Commit {
        changes: vec![],
        docs: vec![task_as("sent_back", "2026-11-08T01:00:00Z")],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(get("t1").await.facts.handled_at, None);

    let sources = s.change_sources("c1").await.unwrap();
    assert_eq!(
        sources
            .iter()
            .map(|c| (c.hash[0], c.device_id.as_str(), c.worker_id.as_str()))
            .collect::<Vec<_>>(),
        [(101, "phone-a", "wang"), (102, "office-1", "zhao")]
    );
    assert!(sources[0].seq < sources[1].seq && !sources[0].received_at.is_empty());

    // A review ends only if nothing was edited in parallel after it.
    s.clear_review("p1", seq - 1).await.unwrap();
    assert!(
        get("p1").await.parallel,
        "flagged again after the review's entry"
    );
    s.clear_review("p1", seq).await.unwrap();
    assert!(!get("p1").await.parallel);
    assert!(get("p1").await.settled.is_some(), "settled by the review");

    // A household's own records, from the index.
    check(
        RecordQuery {
            household: Some("h1".into()),
            kinds: KindFilter::one(Kind::Case),
            ..all(&["g1", "g2"])
        },
        &["c1"],
    )
    .await;

    review_settles(s, &all(&["g1"])).await;
    county_counts(s).await;
    tallies_agree_with_the_index(s).await;
    grid_moves(s).await;
}

/// The counts the county overview and the monthly report read from the per-grid tallies equal
/// a count of the listed records, for ranges that fall within a day, across days, on day
/// boundaries and open at either end; also after records change status, subtype, day, kind or
/// deletion, and for a record whose facts never name a day.
async fn tallies_agree_with_the_index(s: &dyn Storage) {
    use serde_json::json;
    let grids: Vec<String> = ["t1", "t2", "t3"].map(String::from).to_vec();
    let visit = |grid: &str, id: &str, at: &str, visit_type: &str, outcome: &str| {
        record(
            grid,
            id,
            Kind::Visit,
            json!({"household_id": "h1", "visit_type": visit_type, "outcome": outcome,
                   "started_at": at, "created_at": at}),
            false,
        )
    };
    let case = |grid: &str, id: &str, at: &str, case_type: &str, status: &str, deleted: bool| {
        record(
            grid,
            id,
            Kind::Case,
            json!({"household_id": "h1", "case_type": case_type, "status": status,
                   "created_at": at, "deleted": deleted}),
            false,
        )
    };
    let hours = ["00:00:00", "07:59:59", "16:00:00", "23:59:59"];
    let days = ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"];
    let mut docs = Vec::new();
    for (i, (day, hour)) in days
        .iter()
        .flat_map(|d| hours.iter().map(move |h| (d, h)))
        .enumerate()
    {
        let grid = &grids[i % 3];
        let at = format!("{day}T{hour}Z");
        let (kind, outcome) = (["routine", "followup"][i % 2], ["met", "absent"][i % 3 % 2]);
        docs.push(visit(grid, &format!("tv{i}"), &at, kind, outcome));
        let status = ["open", "in_progress", "closed"][i % 3];
        docs.push(case(
            grid,
            &format!("tc{i}"),
            &at,
            "low_income",
            status,
            i % 5 == 0,
        ));
    }
    // A household has no day of its own beyond its creation; this one has none at all.
    docs.push(record(
        "t1",
        "th0",
        Kind::Household,
        json!({"address": "1栋", "head_name": "李"}),
        false,
    ));
    let commit = |docs: Vec<DocUpdate>| async move {
        s.commit(Commit {
            changes: Vec::new(),
            docs,
            moves: Vec::new(),
        })
        .await
        .unwrap();
    };
    commit(docs).await;
    let queries = |grids: &[String]| {
        let instants = [
            None,
            Some("2026-11-30T16:00:00Z"),
            Some("2026-12-01T00:00:00Z"),
            Some("2026-12-01"),
            Some("2026-12-01T08:00:00Z"),
            Some("2026-12-02T23:59:59Z"),
            Some("2026-12-09T00:00:00Z"),
        ];
        let mut out = Vec::new();
        for from in instants {
            for to in instants {
                for kinds in [
                    KindFilter::All,
                    KindFilter::one(Kind::Visit),
                    KindFilter::Only(vec![Kind::Case, Kind::Household]),
                ] {
                    let q = RecordQuery {
                        grids: grids.to_vec(),
                        kinds,
                        from: from.map(String::from),
                        to: to.map(String::from),
                        ..RecordQuery::default()
                    };
                    out.push(RecordQuery {
                        statuses: vec!["open".into(), "met".into()],
                        ..q.clone()
                    });
                    out.push(RecordQuery {
                        subtype: Some("followup".into()),
                        ..q.clone()
                    });
                    out.push(q);
                }
            }
        }
        out
    };
    let agree = |when: &'static str| {
        let grids = grids.clone();
        async move {
            for q in queries(&grids) {
                let listed = s.list_records(&q).await.unwrap();
                let mut want: BTreeMap<(String, String, Option<String>, Option<String>), u64> =
                    BTreeMap::new();
                for r in &listed.rows {
                    let key = (
                        r.row.grid_id.clone(),
                        r.row.kind.as_str().to_string(),
                        r.row.status.clone(),
                        r.facts.subtype.clone(),
                    );
                    *want.entry(key).or_default() += 1;
                }
                let mut got: BTreeMap<_, u64> = BTreeMap::new();
                for t in s.tally(&q).await.unwrap() {
                    *got.entry((t.grid_id, t.kind, t.status, t.subtype))
                        .or_default() += t.count;
                }
                assert_eq!(got, want, "{when}: tally of {q:?}");
                let mut per_grid: BTreeMap<String, u64> = BTreeMap::new();
                for ((grid, ..), n) in &want {
                    *per_grid.entry(grid.clone()).or_default() += n;
                }
                let counted: BTreeMap<String, u64> = s
                    .grid_counts(&q, &[])
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.grid_id, c.count))
                    .collect();
                assert_eq!(counted, per_grid, "{when}: grid counts of {q:?}");
            }
            assert!(
                !s.list_records(&queries(&grids)[0])
                    .await
                    .unwrap()
                    .rows
                    .is_empty(),
                "the queries must count something"
            );
        }
    };
    agree("as written").await;
    // Changes that move records between tallies: a case closed and one reopened, a visit moved
    // to another day and type, one deleted and one undeleted.
    commit(vec![
        case(
            "t1",
            "tc0",
            "2026-11-29T00:00:00Z",
            "low_income",
            "closed",
            false,
        ),
        case(
            "t2",
            "tc1",
            "2026-11-29T07:59:59Z",
            "disabled",
            "open",
            false,
        ),
        visit("t1", "tv3", "2026-12-02T16:00:00Z", "followup", "met"),
        case(
            "t3",
            "tc5",
            "2026-11-30T07:59:59Z",
            "low_income",
            "open",
            true,
        ),
        record(
            "t3",
            "tv8",
            Kind::Visit,
            json!({"household_id": "h1", "visit_type": "routine", "deleted": true,
                   "started_at": "2026-12-01T00:00:00Z"}),
            false,
        ),
    ])
    .await;
    agree("after the changes").await;
}

/// The county overview's grouped counts: open urgent reports and those past their deadline
/// by urgency, and stock items at or below their low-stock level, per grid.
async fn county_counts(s: &dyn Storage) {
    use serde_json::json;
    let report = |grid: &str, id: &str, urgency: &str, discovered: &str, status: &str| {
        record(
            grid,
            id,
            Kind::Report,
            json!({
                "category": "dispute", "urgency": urgency, "status": status,
                "discovered_at": discovered, "description": "楼道堆物",
            }),
            false,
        )
    };
    let stock = |grid: &str, id: &str, low_at: f64, movements: serde_json::Value, deleted: bool| {
        record(
            grid,
            id,
            Kind::Stock,
            json!({
                "item": "大米", "measure": "袋", "low_at": low_at, "movements": movements,
                "deleted": deleted,
            }),
            false,
        )
    };
    let moves = |ins: f64, outs: f64| json!([{"kind": "in", "quantity": ins}, {"kind": "out", "quantity": outs}]);
    s.commit(Commit {
        changes: vec![entry("k1", "kr1", 140, "phone", "wang")],
        docs: vec![
            // k1: a critical one discovered 09:00 (past a 09:30 cutoff), an urgent one at 09:00
            // (not past 08:00), one with no urgency, and a closed one.
            report("k1", "kr1", "critical", "2026-11-05T09:00:00Z", "received"),
            report("k1", "kr2", "urgent", "2026-11-05T09:00:00Z", "received"),
            report("k1", "kr3", "", "2026-11-05T01:00:00Z", "received"),
            report("k1", "kr4", "critical", "2026-11-05T01:00:00Z", "closed"),
            report(
                "k2",
                "kr5",
                "normal",
                "2026-11-04T09:00:00Z",
                "acknowledged",
            ),
            // Low: 3 on hand of 5; exactly at 4 of 4; not low: 10 of 2; deleted; no level.
            stock("k1", "ks1", 5.0, moves(10.0, 7.0), false),
            stock("k2", "ks2", 4.0, moves(6.0, 2.0), false),
            stock("k2", "ks3", 2.0, moves(10.0, 0.0), false),
            stock("k2", "ks4", 5.0, moves(1.0, 0.0), true),
            record(
                "k3",
                "ks5",
                Kind::Stock,
                json!({"item": "油", "movements": []}),
                false,
            ),
        ],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let grids: Vec<String> = ["k1", "k2", "k3"].map(String::from).to_vec();
    let open = RecordQuery {
        grids: grids.clone(),
        kinds: KindFilter::one(Kind::Report),
        statuses: ["received", "acknowledged"].map(String::from).to_vec(),
        ..RecordQuery::default()
    };
    let cutoffs = [
        ("critical".to_string(), "2026-11-05T09:30:00Z".to_string()),
        ("urgent".to_string(), "2026-11-05T08:00:00Z".to_string()),
        ("normal".to_string(), "2026-11-05T00:00:00Z".to_string()),
    ];
    let mut counts = s.grid_counts(&open, &cutoffs).await.unwrap();
    counts.sort_by(|a, b| a.grid_id.cmp(&b.grid_id));
    let got: Vec<(&str, u64, u64)> = counts
        .iter()
        .map(|c| (c.grid_id.as_str(), c.count, c.overdue))
        .collect();
    assert_eq!(got, [("k1", 3, 1), ("k2", 1, 1)]);
    let none = s.grid_counts(&open, &[]).await.unwrap();
    assert!(none.iter().all(|c| c.overdue == 0), "{none:?}");
    let outside = RecordQuery {
        grids: vec!["k3".into()],
        ..open.clone()
    };
    assert!(s.grid_counts(&outside, &cutoffs).await.unwrap().is_empty());
    // Plain counts per grid, with the filters that need the facts and the review flags too.
    let plain = |q: RecordQuery| async move {
        let mut c = s.grid_counts(&q, &[]).await.unwrap();
        c.sort_by(|a, b| a.grid_id.cmp(&b.grid_id));
        c.into_iter()
            .map(|c| (c.grid_id, c.count, c.overdue))
            .collect::<Vec<_>>()
    };
    let g = |id: &str, n: u64| (id.to_string(), n, 0);
    let every = RecordQuery {
        grids: grids.clone(),
        ..RecordQuery::default()
    };
    assert_eq!(
        plain(every.clone()).await,
        [g("k1", 5), g("k2", 3), g("k3", 1)]
    );
    let stock = RecordQuery {
        kinds: KindFilter::one(Kind::Stock),
        include_deleted: true,
        ..every.clone()
    };
    assert_eq!(plain(stock).await, [g("k1", 1), g("k2", 3), g("k3", 1)]);
    let since = RecordQuery {
        from: Some("2026-11-05T00:30:00Z".into()),
        subtype: Some("dispute".into()),
        ..every.clone()
    };
    assert_eq!(plain(since).await, [g("k1", 4)]);
    let g1 = RecordQuery {
        grids: vec!["g1".into()],
        needs_review: true,
        ..RecordQuery::default()
    };
    let listed = s.list_records(&g1).await.unwrap().total;
    let want: Vec<_> = (listed > 0).then(|| g("g1", listed)).into_iter().collect();
    assert_eq!(plain(g1).await, want, "the review queue's count");
    let mut low = s.low_stock_counts(&grids).await.unwrap();
    low.sort();
    assert_eq!(low, [("k1".to_string(), 1), ("k2".to_string(), 1)]);
    assert!(
        s.low_stock_counts(&["k9".to_string()])
            .await
            .unwrap()
            .is_empty()
    );
}

/// A move files the document and its index row under the new grid in the commit that records
/// it; the moves are listed by document, by arrival in a grid's log window, and after a seq.
async fn grid_moves(s: &dyn Storage) {
    use serde_json::json;
    let fields = json!({"id": "mv", "kind": "case", "grid_id": "ga", "case_type": "low_income"});
    s.commit(Commit {
        changes: vec![entry("ga", "mv", 201, "a", "w")],
        docs: vec![record("ga", "mv", Kind::Case, fields.clone(), false)],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    let before = s.moves_after(0, 100).await.unwrap().len();
    let in_grid = |grid: &'static str| RecordQuery {
        ids: vec!["mv".into()],
        grids: vec![grid.into()],
        include_deleted: true,
        ..RecordQuery::default()
    };
    assert_eq!(s.list_records(&in_grid("ga")).await.unwrap().total, 1);
    let last = s
        .commit(Commit {
            changes: vec![
                entry("ga", "mv", 202, "o", "u-office"),
                entry("gb", "mv", 203, "o", "u-office"),
            ],
            docs: vec![record("gb", "mv", Kind::Case, fields, false)],
            moves: vec![GridMove {
                doc_id: "mv".into(),
                from_grid: "ga".into(),
                to_grid: "gb".into(),
                left: [202; 32],
                arrived: [203; 32],
                moved_by: "u-office".into(),
                seq: 0,
                moved_at: String::new(),
            }],
        })
        .await
        .unwrap();
    let moves = s.moves_of("mv").await.unwrap();
    assert_eq!(moves.len(), 1);
    let m = &moves[0];
    assert_eq!((m.from_grid.as_str(), m.to_grid.as_str()), ("ga", "gb"));
    assert_eq!(
        (m.left, m.moved_by.as_str(), m.seq),
        ([202; 32], "u-office", last)
    );
    assert!(!m.moved_at.is_empty());
    assert!(s.moves_of("nope").await.unwrap().is_empty());
    // Filed under the new grid: its copy, its index row, its snapshot's grid.
    assert_eq!(s.load_doc("mv").await.unwrap().unwrap().grid_id, "gb");
    assert_eq!(s.list_records(&in_grid("ga")).await.unwrap().total, 0);
    assert_eq!(s.list_records(&in_grid("gb")).await.unwrap().total, 1);
    // A later commit of the document does not file it back (a stale copy's grid is ignored).
    s.commit(Commit {
        changes: vec![entry("gb", "mv", 204, "a", "w")],
        docs: vec![doc("ga", "mv", None)],
        moves: Vec::new(),
    })
    .await
    .unwrap();
    assert_eq!(s.load_doc("mv").await.unwrap().unwrap().grid_id, "gb");
    // Arrivals in a grid's log window.
    assert_eq!(s.moves_into("gb", last - 1, last).await.unwrap(), ["mv"]);
    assert!(
        s.moves_into("gb", last, last + 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.moves_into("ga", 0, last).await.unwrap().is_empty());
    let after = s.moves_after(0, 100).await.unwrap();
    assert_eq!(after.len(), before + 1);
    assert!(s.moves_after(last, 100).await.unwrap().is_empty());
    assert_eq!(s.moves_after(last - 1, 1).await.unwrap()[0].doc_id, "mv");
    // A move whose arrival is not in the log is refused, and nothing of its commit is kept.
    let refused = s
        .commit(Commit {
            changes: Vec::new(),
            docs: Vec::new(),
            moves: vec![GridMove {
                arrived: [250; 32],
                ..moves[0].clone()
            }],
        })
        .await;
    assert!(refused.is_err());
    assert_eq!(s.moves_of("mv").await.unwrap().len(), 1);
}

/// A conflict that a later change settles leaves the queue and is listed as settled; a flag
/// raised again is open again; a parallel edit that held no conflict waits for staff.
async fn review_settles(s: &dyn Storage, g1: &RecordQuery) {
    use serde_json::json;
    let queue = RecordQuery {
        needs_review: true,
        ..g1.clone()
    };
    let since = |t: &str| RecordQuery {
        settled_since: Some(t.into()),
        ..g1.clone()
    };
    let case = |conflict: bool, parallel: bool| {
        let mut f = json!({"case_type": "low_income", "subject_name": "周五", "status": "open"});
        if conflict {
            f["conflict"] = json!(true);
        }
        record("g1", "s1", Kind::Case, f, parallel)
    };
    let step = |n: u8, worker: &'static str, conflict: bool, parallel: bool| async move {
        s.commit(Commit {
            changes: vec![entry("g1", "s1", n, "phone", worker)],
            docs: vec![case(conflict, parallel)],
            moves: Vec::new(),
        })
        .await
        .unwrap()
    };
    let s1 = || async {
        s.list_records(&RecordQuery {
            ids: vec!["s1".into()],
            ..g1.clone()
        })
        .await
        .unwrap()
        .rows
        .remove(0)
    };
    let queued = || async { ids(&s.list_records(&queue).await.unwrap()).contains(&"s1") };
    step(120, "wang", true, true).await;
    assert!(queued().await && s1().await.parallel && s1().await.settled.is_none());
    // li's phone had both branches and chose a value: one head, nothing held twice.
    step(121, "li", false, false).await;
    assert!(!queued().await, "settled by a later change");
    let r = s1().await;
    assert!(!r.parallel);
    let settled = r.settled.expect("settled");
    assert_eq!(settled.by.as_deref(), Some("li"));
    assert!(
        ids(&s
            .list_records(&since("2000-01-01T00:00:00Z"))
            .await
            .unwrap())
        .contains(&"s1")
    );
    assert!(
        ids(&s
            .list_records(&since("2999-01-01T00:00:00Z"))
            .await
            .unwrap())
        .is_empty()
    );
    // Edited in parallel again, on different fields: open again, and it stays open when a
    // later change joins the branches, for staff to look at.
    step(122, "wang", false, true).await;
    assert!(queued().await && s1().await.settled.is_none());
    let seq = step(123, "li", false, false).await;
    assert!(queued().await, "nothing was held twice: staff review it");
    s.clear_review("s1", seq).await.unwrap();
    assert!(!queued().await);
    assert_eq!(s1().await.settled.unwrap().by.as_deref(), Some("li"));
}
