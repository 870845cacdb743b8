use std::sync::Arc;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ROOT};
use gridsync_core::protocol::{Cursor, UpChange};
use gridsync_core::record::Kind;

use super::Relay;
use crate::accounts::{Identity, Role};
use crate::storage::{Commits, KindFilter, Log, MemoryStorage};

pub(crate) const ACTOR: &[u8; 16] = b"device-one-actor";

fn writer(grids: &[&str]) -> Identity {
    Identity {
        user_id: "u-wang".into(),
        username: "wang".into(),
        display_name: "王".into(),
        role: Role::GridWorker,
        device_id: "dev-1".into(),
        grids: grids.iter().map(|g| g.to_string()).collect(),
        former_grids: vec![],
        actors: vec![hex::encode(ACTOR)],
        readable_kinds: crate::storage::KindFilter::All,
    }
}

/// A minimal record document (one change) for `grid`.
fn record(id: &str, grid: &str) -> UpChange {
    record_by(id, grid, "wang")
}

/// [`record`] signed by `author`.
pub(crate) fn record_by(id: &str, grid: &str, author: &str) -> UpChange {
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    tx.put(ROOT, "id", id).unwrap();
    tx.put(ROOT, "kind", "household").unwrap();
    tx.put(ROOT, "grid_id", grid).unwrap();
    tx.put(ROOT, "head_name", "张三").unwrap();
    tx.put(ROOT, "household_type", "registered").unwrap();
    tx.commit_with(CommitOptions::default().with_message(author));
    UpChange {
        doc_id: id.into(),
        grid: grid.into(),
        bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
    }
}

#[tokio::test]
async fn test_accepting_a_batch_twice_adds_nothing() {
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    let batch = vec![record("d1", "g1"), record("d2", "g1")];
    let (rejected, witnesses) = relay.accept(&writer(&["g1"]), batch.clone()).await.unwrap();
    assert!(rejected.is_empty());
    assert_eq!(witnesses.len(), 1);
    let (rejected, _) = relay.accept(&writer(&["g1"]), batch).await.unwrap();
    assert!(
        rejected.is_empty(),
        "a re-sent change is accepted again, not refused"
    );
    let (log, _) = storage
        .log_since("g1", &KindFilter::All, 0, 100, 1 << 20)
        .await
        .unwrap();
    assert_eq!(log.len(), 2, "and it is stored once");
}

#[tokio::test]
async fn test_a_bundle_chunk_that_declares_gigabytes_is_refused_before_automerge_reads_it() {
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    // The fuzzer's 35 bytes: given to Automerge, they made it allocate more than a gigabyte.
    let mut bundle = record("d1", "g1");
    bundle.bytes = vec![
        0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 3, 14, 0, 0, 1, 1, 0, 1, 35, 6, 255, 255, 255, 249, 26,
        0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 79, 0,
    ];
    let (rejected, _) = relay
        .accept(&writer(&["g1"]), vec![bundle, record("d2", "g1")])
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].reason.contains("not one Automerge change"),
        "{rejected:?}"
    );
}

#[tokio::test]
async fn test_bad_changes_are_refused_one_by_one() {
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    let mut garbage = record("d3", "g1");
    garbage.bytes = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3];
    let batch = vec![
        record("d1", "g1"),
        record("d2", "g2"),
        garbage,
        record("d4", "g9"),
        UpChange {
            grid: "g1".into(),
            ..record("d5", "g2")
        },
    ];
    let (rejected, _) = relay.accept(&writer(&["g1", "g2"]), batch).await.unwrap();
    let reasons: Vec<(u32, &str)> = rejected
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].0 == 2 && reasons[0].1.contains("malformed"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 3 && reasons[1].1.contains("outside"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == 4 && reasons[2].1.contains("grid"),
        "{reasons:?}"
    );
    assert_eq!(
        storage
            .log_since("g1", &KindFilter::All, 0, 100, 1 << 20)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
    assert_eq!(
        storage
            .log_since("g2", &KindFilter::All, 0, 100, 1 << 20)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
}

#[tokio::test]
async fn test_memory_holds_at_most_the_cache_size_whatever_is_stored() {
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 16);
    for chunk in 0..10 {
        let batch = (0..50)
            .map(|i| record(&format!("d{chunk}-{i}"), "g1"))
            .collect();
        relay.accept(&writer(&["g1"]), batch).await.unwrap();
    }
    assert_eq!(
        storage
            .log_since("g1", &KindFilter::All, 0, 1000, 1 << 24)
            .await
            .unwrap()
            .0
            .len(),
        500
    );
    assert!(
        relay.cached_docs() <= 16,
        "{} documents in memory",
        relay.cached_docs()
    );
}

#[tokio::test]
async fn test_catch_up_skips_the_devices_own_changes_but_moves_its_cursor() {
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    relay
        .accept(&writer(&["g1"]), vec![record("mine", "g1")])
        .await
        .unwrap();
    let other = Identity {
        device_id: "dev-2".into(),
        ..writer(&["g1"])
    };
    relay
        .accept(&other, vec![record("theirs", "g1")])
        .await
        .unwrap();
    let batch = relay
        .batch_since(&Cursor::start("g1"), &writer(&["g1"]))
        .await
        .unwrap();
    assert_eq!(batch.docs.len(), 1);
    assert_eq!(batch.docs[0].doc_id, "theirs");
    assert_eq!(batch.cursor.seq, 2);
    assert!(!batch.more);
}

/// A record created with one change and edited with `edits` more, as the device uploads them.
fn record_with_edits(id: &str, grid: &str, edits: usize) -> Vec<UpChange> {
    let first = record(id, grid);
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    doc.apply_changes([automerge::Change::from_bytes(first.bytes.clone()).unwrap()])
        .unwrap();
    let mut out = vec![first];
    for i in 0..edits {
        let mut tx = doc.transaction();
        tx.put(ROOT, "head_name", format!("张三{i}")).unwrap();
        tx.commit_with(CommitOptions::default().with_message("wang"));
        out.push(UpChange {
            doc_id: id.into(),
            grid: grid.into(),
            bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
        });
    }
    out
}

#[tokio::test]
async fn test_catch_up_sends_a_record_the_device_has_none_of_as_its_snapshot() {
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    let author = writer(&["g1"]);
    let reader = Identity {
        device_id: "dev-2".into(),
        ..writer(&["g1"])
    };
    // Created with three edits in one upload, then edited once more in a second one.
    let mut changes = record_with_edits("d1", "g1", 4);
    let late = changes.pop().unwrap();
    relay.accept(&author, changes).await.unwrap();
    relay.accept(&author, vec![late.clone()]).await.unwrap();

    let first = relay
        .batch_since(&Cursor::start("g1"), &reader)
        .await
        .unwrap();
    assert_eq!(first.docs.len(), 1);
    let doc = &first.docs[0];
    let snapshot = doc
        .snapshot
        .as_ref()
        .expect("a new record goes as a snapshot");
    assert_eq!(
        snapshot.entries, 4,
        "it stands for the first upload's four changes"
    );
    assert_eq!(
        doc.changes.len(),
        1,
        "the later edit follows it as a change"
    );
    assert_eq!(doc.changes[0].as_slice(), late.bytes.as_slice());
    assert_eq!(doc.entries(), 5);
    let mut loaded = Automerge::load(&snapshot.bytes).unwrap();
    loaded
        .apply_changes([automerge::Change::from_bytes(late.bytes.clone()).unwrap()])
        .unwrap();
    assert_eq!(
        gridsync_core::doc::root_str(&loaded, "head_name").as_deref(),
        Some("张三3")
    );

    // A device past the record's first entry holds part of it: changes only.
    let later = relay
        .batch_since(
            &Cursor {
                seq: 2,
                ..Cursor::start("g1")
            },
            &reader,
        )
        .await
        .unwrap();
    assert!(later.docs.iter().all(|d| d.snapshot.is_none()));
    assert_eq!(later.docs[0].changes.len(), 3);
    // The record's author gets nothing: every entry is its own.
    let own = relay
        .batch_since(&Cursor::start("g1"), &author)
        .await
        .unwrap();
    assert!(own.docs.is_empty());
}

#[tokio::test]
async fn test_a_snapshot_is_offered_only_when_it_stands_for_nothing_past_the_batch() {
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    let reader = Identity {
        device_id: "dev-2".into(),
        ..writer(&["g1"])
    };
    relay
        .accept(&writer(&["g1"]), record_with_edits("d1", "g1", 2))
        .await
        .unwrap();
    // A batch of at most two entries ends before the snapshot's third: plain changes.
    let (entries, more) = storage
        .log_since("g1", &KindFilter::All, 0, 2, 1 << 20)
        .await
        .unwrap();
    assert!(more);
    let snapshots = storage
        .snapshots_within("g1", &["d1".to_string()], 0, entries[1].seq)
        .await
        .unwrap();
    assert!(snapshots[0].is_none());
    let whole = storage
        .snapshots_within("g1", &["d1".to_string()], 0, 3)
        .await
        .unwrap();
    assert_eq!(whole[0].as_ref().map(|s| s.seq), Some(3));
    let batch = relay
        .batch_since(&Cursor::start("g1"), &reader)
        .await
        .unwrap();
    assert_eq!(batch.docs[0].snapshot.as_ref().map(|s| s.entries), Some(3));
}

#[tokio::test]
async fn test_a_change_that_makes_automerge_panic_is_refused_and_the_relay_goes_on() {
    // Found by fuzzing (fuzz/regressions/apply_changes): Automerge 0.12 panics applying it.
    let bytes =
        include_bytes!("../../../fuzz/regressions/apply_changes/automerge-panic-batch-1121");
    let change = automerge::Change::from_bytes(bytes.to_vec()).expect("it parses");
    let mut identity = writer(&["g1"]);
    identity.actors.push(change.actor_id().to_hex_string());
    // Its actor and author are the uploader's, so that it reaches Automerge.
    identity.username = change.message().unwrap_or_default().to_string();
    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    let bad = UpChange {
        doc_id: "d1".into(),
        grid: "g1".into(),
        bytes: bytes.to_vec(),
    };
    let (rejected, _) = relay
        .accept(
            &identity,
            vec![bad, record_by("d2", "g1", &identity.username)],
        )
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].index, 0);
    assert!(
        rejected[0].reason.contains("cannot be applied"),
        "{rejected:?}"
    );
    assert_eq!(
        storage
            .log_since("g1", &KindFilter::All, 0, 10, 1 << 20)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
}

#[test]
fn test_index_row_and_facts_read_from_selected_fields_equal_those_of_the_whole_record() {
    use gridsync_core::doc;
    use gridsync_core::record::{IndexRow, Kind};
    use serde_json::json;

    use crate::storage::RecordFacts;

    let samples = [
        (
            Kind::Household,
            json!({"head_name": "张三", "household_type": "registered", "assigned_worker": "wang",
                   "address": {"estate": "幸福小区", "building": "3"}, "notes": "独居",
                   "residents": [{"name": "张三"}]}),
        ),
        (
            Kind::Visit,
            json!({"household_id": "h1", "visit_type": "priority", "outcome": "met",
                   "started_at": "2026-11-01T09:00:00+08:00", "observations": "身体尚可"}),
        ),
        (
            Kind::Patrol,
            json!({"started_at": "2026-11-01T20:00:00Z", "team": ["王", "李"],
                   "incidents": [{"kind": "fire", "occurred_at": "2026-11-01T20:10:00Z", "action": "handled"}]}),
        ),
        (
            Kind::Case,
            json!({"case_type": "disability", "status": "closed", "subject_name": "张三",
                   "responsible": "wang", "updated_at": "2026-11-02T08:00:00Z"}),
        ),
        (
            Kind::Report,
            json!({"category": "safety_hazard", "urgency": "urgent", "place": "3栋",
                   "description": "楼道堆放杂物", "discovered_at": "2026-11-01T10:00:00Z",
                   "phoned_in_at": "2026-11-01T10:30:00Z", "status": "reported"}),
        ),
    ];
    for (kind, extra) in samples {
        let mut fields = json!({"id": "r1", "kind": kind.as_str(), "grid_id": "g1",
                                "created_by": "wang", "created_at": "2026-11-01T08:00:00Z"});
        fields
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let fields = fields.as_object().unwrap().clone();
        let mut d = Automerge::new();
        let mut tx = d.transaction();
        doc::reconcile_root(&mut tx, kind, &serde_json::Map::new(), &fields).unwrap();
        tx.commit();
        let whole = doc::read_root(&d);
        let mut cached = super::CachedDoc {
            doc: d,
            grid_id: "g1".into(),
            kind: Some(kind),
            since_snapshot: 0,
        };
        let conflicts = doc::has_conflicts(&cached.doc);
        let update = super::doc_update("r1", &mut cached, true, conflicts, None);
        assert_eq!(
            update.index,
            Some(IndexRow::from_fields("r1", kind, "g1", &whole, false)),
            "{kind:?}"
        );
        assert_eq!(
            update.facts,
            Some(RecordFacts::from_fields(kind, &whole)),
            "{kind:?}"
        );
        // The same from the root fields the content check read (`received::Content`).
        let checked = super::doc_update("r1", &mut cached, false, conflicts, Some(whole.clone()));
        assert_eq!(checked.index, update.index, "{kind:?}");
        assert_eq!(checked.facts, update.facts, "{kind:?}");
        assert_eq!(checked.attachments, update.attachments, "{kind:?}");
    }
}

#[tokio::test]
async fn test_a_session_is_told_only_of_its_own_grids() {
    let relay = Relay::new(Arc::new(MemoryStorage::default()), 100);
    let mut g1 = relay.subscribe_grids(&["g1".to_string()]);
    let mut both = relay.subscribe_grids(&["g1".to_string(), "g2".to_string()]);
    let writer = writer(&["g1", "g2"]);
    relay
        .accept(&writer, vec![record("d2", "g2")])
        .await
        .unwrap();
    relay
        .accept(&writer, vec![record("d1", "g1")])
        .await
        .unwrap();
    let first = g1.recv().await.unwrap();
    assert_eq!(
        first.grid_id, "g1",
        "g2's notice never reached a g1 session"
    );
    // Across grids the order does not matter: each grid's push is its own.
    let mut grids = [
        both.recv().await.unwrap().grid_id,
        both.recv().await.unwrap().grid_id,
    ];
    grids.sort();
    assert_eq!(grids, ["g1", "g2"]);
    // A session of no grid waits rather than spinning.
    let mut none = relay.subscribe_grids(&[]);
    let waited = tokio::time::timeout(std::time::Duration::from_millis(50), none.recv()).await;
    assert!(waited.is_err());
}

/// A case whose unknown field `x` holds `levels` maps inside one another (issue 15's attack):
/// the document, signed by the test device's actor.
fn deep_case(id: &str, levels: usize) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", id),
        ("kind", "household"),
        ("grid_id", "g1"),
        ("head_name", "张三"),
        ("household_type", "registered"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    let mut inner = tx.put_object(ROOT, "x", automerge::ObjType::Map).unwrap();
    for _ in 1..levels {
        inner = tx.put_object(&inner, "a", automerge::ObjType::Map).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message("wang"));
    doc
}

fn upload(id: &str, doc: &Automerge) -> UpChange {
    UpChange {
        doc_id: id.into(),
        grid: "g1".into(),
        bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
    }
}

const LI: &[u8; 16] = b"device-two-actor";

/// A second worker of the same grids, on another phone.
fn li(grids: &[&str]) -> Identity {
    Identity {
        user_id: "u-li".into(),
        username: "li".into(),
        device_id: "dev-2".into(),
        actors: vec![hex::encode(LI)],
        ..writer(grids)
    }
}

/// Sets root fields of `doc` in one change signed by `author`, as that device uploads it.
fn put(doc: &mut Automerge, id: &str, author: &str, fields: serde_json::Value) -> UpChange {
    let current = gridsync_core::doc::read_root(doc);
    let mut new = current.clone();
    if let serde_json::Value::Object(f) = fields {
        new.extend(f);
    }
    let mut tx = doc.transaction();
    gridsync_core::doc::reconcile_root(&mut tx, gridsync_core::record::Kind::Case, &current, &new)
        .unwrap();
    tx.commit_with(CommitOptions::default().with_message(author));
    UpChange {
        doc_id: id.into(),
        grid: "g1".into(),
        bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
    }
}

#[test]
fn test_a_change_nested_too_deep_is_refused_with_its_reason_and_nothing_is_stored() {
    // On a small stack: accepting it must not recurse once per level (2,000 levels of a
    // recursive reader take megabytes).
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let storage = Arc::new(MemoryStorage::default());
                let relay = Relay::new(storage.clone(), 100);
                let batch = vec![
                    upload("c-deep", &deep_case("c-deep", 300)),
                    record("d1", "g1"),
                    upload("c-deeper", &deep_case("c-deeper", 2_000)),
                ];
                let (rejected, _) = relay.accept(&writer(&["g1"]), batch).await.unwrap();
                let refused: Vec<u32> = rejected.iter().map(|r| r.index).collect();
                assert_eq!(refused, [0, 2], "{rejected:?}");
                for r in &rejected {
                    assert!(
                        r.reason.contains("`x`") && r.reason.contains("32 levels"),
                        "{}",
                        r.reason
                    );
                }
                let (log, _) = storage
                    .log_since("g1", &KindFilter::All, 0, 10, 1 << 20)
                    .await
                    .unwrap();
                assert_eq!(log.len(), 1, "only the good record is stored");
                assert!(storage.load_doc("c-deep").await.unwrap().is_none());
                assert!(relay.document("c-deep").await.unwrap().is_none());
                // A record at the limit is fine.
                let (rejected, _) = relay
                    .accept(
                        &writer(&["g1"]),
                        vec![upload("c-32", &deep_case("c-32", 32))],
                    )
                    .await
                    .unwrap();
                assert!(rejected.is_empty(), "{rejected:?}");
            });
        })
        .unwrap()
        .join()
        .unwrap();
}

#[tokio::test]
async fn test_a_record_stored_nested_too_deep_is_refused_at_load() {
    use crate::storage::{Commit, DocUpdate, NewChange, PackedSnapshot, StorageError};

    // Poison stored before the limit existed: a 2,000-level case with its snapshot.
    let storage = Arc::new(MemoryStorage::default());
    let doc = deep_case("c-poison", 2_000);
    let change = doc.get_last_local_change().unwrap();
    storage
        .commit(Commit {
            changes: vec![NewChange {
                grid_id: "g1".into(),
                doc_id: "c-poison".into(),
                kind: Some(Kind::Case),
                hash: change.hash().0,
                bytes: change.raw_bytes().to_vec(),
                device_id: "dev-1".into(),
                worker_id: "u-wang".into(),
                in_snapshot: false,
            }],
            docs: vec![DocUpdate {
                doc_id: "c-poison".into(),
                grid_id: "g1".into(),
                kind: Some(Kind::Household),
                heads: vec![change.hash().0],
                index: None,
                snapshot: Some(PackedSnapshot::pack(&gridsync_core::doc::save_snapshot(
                    &doc,
                ))),
                facts: None,
                parallel: false,
                attachments: None,
            }],
            moves: Vec::new(),
        })
        .await
        .unwrap();
    let relay = Relay::new(storage.clone(), 100);
    // Readers (the dashboard) get a clear error.
    match relay.document("c-poison").await {
        Err(StorageError::Corrupt(reason)) => {
            assert!(
                reason.contains("c-poison") && reason.contains("32 levels"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A change to it is refused on its own; the rest of the batch is stored.
    let mut later = doc.fork().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = later.transaction();
    tx.put(ROOT, "head_name", "李四").unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    let (rejected, _) = relay
        .accept(
            &writer(&["g1"]),
            vec![upload("c-poison", &later), record("d1", "g1")],
        )
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].index, 0);
    assert!(rejected[0].reason.contains("32 levels"), "{rejected:?}");
    assert!(relay.document("d1").await.unwrap().is_some());
    // A repair step of it ends that document's repair, not the session.
    let mut state = automerge::sync::State::new();
    let outcome = relay
        .repair_step(&writer(&["g1"]), "g1", "c-poison", &mut state, None)
        .await;
    assert!(
        matches!(&outcome, Err(super::RepairError::Refused(r)) if r.contains("32 levels")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn test_a_repair_step_nested_too_deep_is_refused() {
    use automerge::sync::{self, State, SyncDoc};

    let storage = Arc::new(MemoryStorage::default());
    let relay = Relay::new(storage.clone(), 100);
    let mut device = deep_case("c-deep", 300);
    let (mut theirs, mut ours) = (State::new(), State::new());
    let mut message = device
        .generate_sync_message(&mut theirs)
        .map(sync::Message::encode);
    let mut refused = None;
    for _ in 0..8 {
        let Some(m) = message.take() else { break };
        match relay
            .repair_step(&writer(&["g1"]), "g1", "c-deep", &mut ours, Some(&m))
            .await
        {
            Ok(Some(reply)) => {
                device
                    .receive_sync_message(&mut theirs, sync::Message::decode(&reply).unwrap())
                    .unwrap();
                message = device
                    .generate_sync_message(&mut theirs)
                    .map(sync::Message::encode);
            }
            Ok(None) => break,
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("the deep record is refused");
    assert!(refused.contains("32 levels"), "{refused}");
    assert!(storage.load_doc("c-deep").await.unwrap().is_none());
    assert!(relay.document("c-deep").await.unwrap().is_none());
}
fn case_fields(id: &str, status: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "kind": "case", "grid_id": "g1", "case_type": "low_income",
                       "subject_name": "张三", "status": status, "created_by": "wang"})
}

#[tokio::test]
async fn test_status_moves_are_checked_change_by_change_and_a_merge_is_nobodys_fault() {
    let relay = Relay::new(Arc::new(MemoryStorage::default()), 100);
    let (wang, li) = (writer(&["g1"]), li(&["g1"]));
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let created = put(&mut doc, "c1", "wang", case_fields("c1", "draft"));
    assert!(
        relay
            .accept(&wang, vec![created])
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // Two moves made offline arrive together: draft → open → assessing is two legal moves,
    // though draft → assessing would not be one.
    let steps = vec![
        put(
            &mut doc,
            "c1",
            "wang",
            serde_json::json!({"status": "open"}),
        ),
        put(
            &mut doc,
            "c1",
            "wang",
            serde_json::json!({"status": "assessing"}),
        ),
    ];
    assert!(relay.accept(&wang, steps).await.unwrap().0.is_empty());
    // Both workers move the case on from what they saw; the relay has wang's closing when li's
    // move arrives, and still takes it: li never saw the case closed.
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    let closing = put(
        &mut doc,
        "c1",
        "wang",
        serde_json::json!({"status": "closed"}),
    );
    let working = put(
        &mut theirs,
        "c1",
        "li",
        serde_json::json!({"status": "in_progress"}),
    );
    assert!(
        relay
            .accept(&wang, vec![closing])
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let (rejected, _) = relay.accept(&li, vec![working]).await.unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");

    // An illegal move is refused even when a legal one follows it in the same upload.
    let mut other = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let closed = put(&mut other, "c2", "wang", case_fields("c2", "closed"));
    assert!(
        relay
            .accept(&wang, vec![closed])
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let hidden = vec![
        put(
            &mut other,
            "c2",
            "wang",
            serde_json::json!({"status": "draft"}),
        ),
        put(
            &mut other,
            "c2",
            "wang",
            serde_json::json!({"status": "open"}),
        ),
    ];
    let (rejected, _) = relay.accept(&wang, hidden).await.unwrap();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected[0].reason.contains("closed"), "{rejected:?}");
}

#[tokio::test]
async fn test_times_are_checked_as_their_writer_saw_the_record_and_households_must_exist() {
    let relay = Relay::new(Arc::new(MemoryStorage::default()), 100);
    let (wang, li) = (writer(&["g1"]), li(&["g1"]));
    let visit = |id: &str, household: &str| {
        serde_json::json!({"id": id, "kind": "visit", "grid_id": "g1", "household_id": household,
                           "visit_type": "routine", "outcome": "met",
                           "started_at": "2026-11-01T09:00:00Z", "ended_at": "2026-11-01T10:00:00Z"})
    };
    // A visit to a household of the same upload is taken; one to no household is not.
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut nowhere = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let batch = vec![
        record("h1", "g1"),
        put(&mut doc, "v1", "wang", visit("v1", "h1")),
        put(&mut nowhere, "v2", "wang", visit("v2", "nope")),
    ];
    let (rejected, _) = relay.accept(&wang, batch).await.unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].index == 2 && rejected[0].reason.contains("does not exist"),
        "{rejected:?}"
    );
    // Each moves one end of the visit, each consistently with what they saw; merged, the start
    // is after the end, which neither could have avoided.
    let mut theirs = doc.fork().with_actor(ActorId::from(&LI[..]));
    let later_start = put(
        &mut doc,
        "v1",
        "wang",
        serde_json::json!({"started_at": "2026-11-01T09:30:00Z"}),
    );
    let earlier_end = put(
        &mut theirs,
        "v1",
        "li",
        serde_json::json!({"ended_at": "2026-11-01T09:15:00Z"}),
    );
    assert!(
        relay
            .accept(&wang, vec![later_start])
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let (rejected, _) = relay.accept(&li, vec![earlier_end]).await.unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    // One writer ending a visit before it began is refused.
    let mut merged = relay.document("v1").await.unwrap().unwrap().doc;
    merged.set_actor(ActorId::from(&ACTOR[..]));
    let backwards = put(
        &mut merged,
        "v1",
        "wang",
        serde_json::json!({"started_at": "2026-11-01T09:40:00Z", "ended_at": "2026-11-01T09:35:00Z"}),
    );
    let (rejected, _) = relay.accept(&wang, vec![backwards]).await.unwrap();
    assert!(
        rejected.len() == 1 && rejected[0].reason.contains("before"),
        "{rejected:?}"
    );
}

#[tokio::test]
async fn test_metrics_count_refusals_by_reason_and_re_sent_changes_once() {
    let relay = Relay::new(Arc::new(MemoryStorage::default()), 100);
    let mut garbage = record("d3", "g1");
    garbage.bytes = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3];
    let batch = vec![
        record("d1", "g1"),
        record("d2", "g2"),
        garbage,
        record_by("d4", "g1", "li"),
    ];
    let (rejected, _) = relay.accept(&writer(&["g1"]), batch).await.unwrap();
    assert_eq!(rejected.len(), 3);
    relay
        .accept(&writer(&["g1"]), vec![record("d1", "g1")])
        .await
        .unwrap();
    let gauges = crate::metrics::Gauges {
        sync_sessions: 0,
        cached_docs: relay.cached_docs(),
        cache_capacity: relay.cache_capacity(),
        password_checks: [("ok", 0), ("wrong", 0), ("throttled", 0)],
        data_dir: None,
        store_bytes: None,
    };
    let text = crate::metrics::render(&relay.metrics, &gauges);
    for line in [
        "gridsync_changes_accepted_total 1",
        "gridsync_changes_duplicate_total 1",
        "gridsync_changes_refused_total{reason=\"out_of_scope\"} 1",
        "gridsync_changes_refused_total{reason=\"malformed\"} 1",
        "gridsync_changes_refused_total{reason=\"wrong_author\"} 1",
        "gridsync_changes_refused_total{reason=\"invalid_content\"} 0",
        "gridsync_upload_batch_seconds_count 2",
        "gridsync_doc_cache_misses_total 1",
        "gridsync_doc_cache_capacity 100",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn test_a_new_records_changes_are_stored_once_in_its_snapshot_and_sent_back_exact() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(crate::storage::SqliteStorage::open(dir.path()).unwrap());
    let relay = Relay::new(storage.clone(), 100);
    let author = writer(&["g1"]);
    let reader = Identity {
        device_id: "dev-2".into(),
        ..writer(&["g1"])
    };
    let mut changes = record_with_edits("d1", "g1", 4);
    let late = changes.pop().unwrap();
    relay.accept(&author, changes.clone()).await.unwrap();
    relay.accept(&author, vec![late.clone()]).await.unwrap();

    // The first upload's four changes are in the record's snapshot: their entries keep no
    // bytes. The later edit, after the snapshot, keeps its own.
    let (log, _) = storage
        .log_since("g1", &KindFilter::All, 0, 100, 1 << 20)
        .await
        .unwrap();
    let stored: Vec<usize> = log.iter().map(|e| e.bytes.len()).collect();
    assert_eq!(stored[..4], [0, 0, 0, 0], "{stored:?}");
    assert_eq!(stored[4], late.bytes.len());
    // A batch's budget still counts them at their size: two fit in 2 × the largest, not all.
    let largest = changes.iter().map(|c| c.bytes.len()).max().unwrap();
    let (budgeted, more) = storage
        .log_since("g1", &KindFilter::All, 0, 100, 2 * largest)
        .await
        .unwrap();
    assert!(more && budgeted.len() < 4, "{} entries", budgeted.len());

    // A device past the record's first entry holds part of it and is sent the other changes,
    // rebuilt from the relay's copy byte for byte, also after a restart (nothing cached).
    drop(relay);
    let relay = Relay::new(storage.clone(), 100);
    let part = relay
        .batch_since(
            &Cursor {
                seq: log[0].seq,
                ..Cursor::start("g1")
            },
            &reader,
        )
        .await
        .unwrap();
    let sent: Vec<&[u8]> = part.docs[0].changes.iter().map(|c| c.as_slice()).collect();
    let expected: Vec<&[u8]> = changes[1..]
        .iter()
        .chain([&late])
        .map(|c| c.bytes.as_slice())
        .collect();
    assert_eq!(sent, expected);
    // With the first change it had, they make the record as its author left it.
    let mut held = Automerge::new();
    held.apply_changes(
        std::iter::once(changes[0].bytes.as_slice())
            .chain(sent.iter().copied())
            .map(|b| automerge::Change::from_bytes(b.to_vec()).unwrap()),
    )
    .unwrap();
    assert_eq!(
        gridsync_core::doc::root_str(&held, "head_name").as_deref(),
        Some("张三3")
    );
}

#[tokio::test]
async fn test_a_damaged_deflated_copy_refuses_its_record_and_not_the_rest_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(crate::storage::SqliteStorage::open(dir.path()).unwrap());
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    for (key, value) in [
        ("id", "h1"),
        ("kind", "household"),
        ("grid_id", "g1"),
        (
            "head_name",
            "张三张三张三张三张三张三张三张三张三张三张三张三",
        ),
        ("household_type", "registered"),
        ("notes", "独居老人，独居老人，独居老人，独居老人，独居老人"),
    ] {
        tx.put(ROOT, key, value).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_message("wang"));
    let relay = Relay::new(storage.clone(), 100);
    let (rejected, _) = relay
        .accept(&writer(&["g1"]), vec![upload("h1", &doc)])
        .await
        .unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");
    // The stored form names a length its stream does not inflate to.
    let c = rusqlite::Connection::open(dir.path().join(crate::storage::DB_FILE)).unwrap();
    let stored: Vec<u8> = c
        .query_row("SELECT snapshot FROM docs WHERE doc_id = 'h1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(stored.starts_with(b"\0gz1"), "stored deflated");
    let mut damaged = stored;
    damaged[4] ^= 1;
    c.execute(
        "UPDATE docs SET snapshot = ?1 WHERE doc_id = 'h1'",
        [&damaged],
    )
    .unwrap();

    // A relay started on the damaged store (nothing cached) refuses an edit of that record and
    // stores the rest of the batch; readers get a clear error.
    let relay = Relay::new(storage.clone(), 100);
    let mut tx = doc.transaction();
    tx.put(ROOT, "head_name", "李四").unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    let (rejected, _) = relay
        .accept(
            &writer(&["g1"]),
            vec![upload("h1", &doc), record("h2", "g1")],
        )
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].doc_id, "h1");
    assert!(relay.document("h2").await.unwrap().is_some());
    match relay.document("h1").await {
        Err(crate::storage::StorageError::Corrupt(reason)) => {
            assert!(reason.contains("h1"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
