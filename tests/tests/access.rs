//! Who sees and writes what: the access matrix, revocation, reassignment, forged identities and
//! throttled sign-ins, all against a real relay.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge};
use futures_util::{SinkExt, StreamExt};
use gridsync_core::protocol::{
    self, ClientMsg, ErrorCode, Hello, LoginRequest, ServerMsg, UpChange,
};
use gridsync_core::record::Kind;
use gridsync_core::record::sensitive::private_id;
use gridsync_core::transport;
use gridsync_core::{Error, Query, Replica};
use gridsync_e2e::{PASSWORD, RawClient, TestServer, fields, household, sync};
use gridsync_server::accounts::{self, Role};
use serde_json::json;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

const ID_NUMBER: &str = "420102195003071234";

/// One record of every kind in `grid`; returns each record's id by kind.
fn seed(r: &mut Replica, grid: &str) -> BTreeMap<Kind, String> {
    try_seed(r, grid)
        .into_iter()
        .map(|(kind, id)| (kind, id.unwrap_or_else(|e| panic!("{kind}: {e}"))))
        .collect()
}

/// [`seed`] as far as the device lets it: each kind's record id, or the device's refusal (which
/// must be the refusal of a kind its role may not write).
fn try_seed(r: &mut Replica, grid: &str) -> BTreeMap<Kind, Result<String, String>> {
    let mut create = |kind: Kind, record: serde_json::Value| {
        r.create(kind, fields(record))
            .map(|record| record.id)
            .map_err(|e| {
                assert!(matches!(e, Error::NotAllowed(_)), "{kind}: {e}");
                e.to_string()
            })
    };
    let h = create(
        Kind::Household,
        json!({
            "grid_id": grid, "head_name": "张三", "household_type": "registered",
            "residents": [{"name": "张三", "id_number": ID_NUMBER, "disability_type": "肢体"}],
        }),
    );
    // A role that may not write households refuses a visit or case before reading its fields.
    let household_id = h.clone().unwrap_or_default();
    let v = create(
        Kind::Visit,
        json!({
            "grid_id": grid, "household_id": household_id, "visit_type": "routine",
            "outcome": "met", "started_at": "2026-11-01T09:00:00Z",
        }),
    );
    let p = create(
        Kind::Patrol,
        json!({"grid_id": grid, "started_at": "2026-11-01T20:00:00Z"}),
    );
    let c = create(
        Kind::Case,
        json!({"grid_id": grid, "case_type": "disability", "household_id": household_id}),
    );
    let rep = create(
        Kind::Report,
        json!({
            "grid_id": grid, "category": "safety_hazard", "urgency": "urgent",
            "description": "楼道堆放杂物", "discovered_at": "2026-11-01T10:00:00Z",
        }),
    );
    let unit = create(
        Kind::Unit,
        json!({"grid_id": grid, "name": "区税务局", "unit_type": "government"}),
    );
    let volunteer = create(
        Kind::Volunteer,
        json!({"grid_id": grid, "name": "陈志强", "phone": "13900001111"}),
    );
    let activity = create(
        Kind::Activity,
        json!({
            "grid_id": grid, "activity_type": "clean_up", "title": "楼道清理",
            "started_at": "2026-11-01T09:00:00Z",
        }),
    );
    let stock = create(
        Kind::Stock,
        json!({"grid_id": grid, "item": "大米", "measure": "袋"}),
    );
    let task = create(
        Kind::Task,
        json!({
            "grid_id": grid, "title": "清理消防通道", "source": "office",
            "deadline": "2026-11-05T18:00:00Z",
        }),
    );
    BTreeMap::from([
        (Kind::Unit, unit),
        (Kind::Volunteer, volunteer),
        (Kind::Activity, activity),
        (Kind::Stock, stock),
        (Kind::Task, task),
        (Kind::HouseholdPrivate, h.clone().map(|h| private_id(&h))),
        (Kind::Household, h),
        (Kind::Visit, v),
        (Kind::Patrol, p),
        (Kind::Case, c),
        (Kind::Report, rep),
    ])
}

/// A replica of `username` that does not know its role (its stored role is empty, as for a
/// role its build does not know): it refuses nothing itself, so every write it makes reaches
/// the relay's own check, as a hand-edited replica's would.
async fn roleless(server: &TestServer, dir: &std::path::Path, username: &str) -> Replica {
    let mut r = Replica::open(dir).unwrap();
    let request = LoginRequest {
        username: username.into(),
        password: PASSWORD.into(),
        device_name: "旧手机".into(),
        actor: r.actor_hex(),
    };
    let mut answer = transport::login(&server.url(), request).await.unwrap();
    answer.account.role = String::new();
    r.enrol(&server.url(), &answer.account).unwrap();
    assert_eq!(r.identity().unwrap().known_role(), None);
    r
}

fn kinds_in(r: &Replica, grid: &str) -> BTreeSet<Kind> {
    r.list(&Query {
        grid: Some(grid.into()),
        ..Query::default()
    })
    .unwrap()
    .into_iter()
    .map(|row| row.kind)
    .collect()
}

struct Subject {
    role: Role,
    username: &'static str,
    areas: &'static [&'static str],
    own: &'static str,
    other: &'static str,
    /// Whether the role's scope includes `other` (only the admin's does).
    other_in_scope: bool,
}

const SUBJECTS: [Subject; 4] = [
    Subject {
        role: Role::GridWorker,
        username: "worker",
        areas: &["g1"],
        own: "g1",
        other: "g2",
        other_in_scope: false,
    },
    Subject {
        role: Role::Volunteer,
        username: "volunteer",
        areas: &["g1"],
        own: "g1",
        other: "g2",
        other_in_scope: false,
    },
    Subject {
        role: Role::Office,
        username: "office",
        areas: &["m1"],
        own: "g1",
        other: "g9",
        other_in_scope: false,
    },
    Subject {
        role: Role::Admin,
        username: "admin",
        areas: &[],
        own: "g1",
        other: "g9",
        other_in_scope: true,
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_access_matrix_every_role_kind_grid_and_operation() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let seeder_dir = tempfile::tempdir().unwrap();
    server.user("seeder", Role::Admin, &[]).await;
    let mut seeder = server.device(seeder_dir.path(), "seeder").await;
    for grid in ["g1", "g2", "g9"] {
        seed(&mut seeder, grid);
    }
    sync(&mut seeder).await;

    let mut cells = 0;
    let mut refused = 0;
    for s in &SUBJECTS {
        server.user(s.username, s.role, s.areas).await;
        let dir = tempfile::tempdir().unwrap();
        let mut r = server.device(dir.path(), s.username).await;
        sync(&mut r).await;

        // Read: exactly the kinds the role may read, in its own grid, and the other grid only
        // where it is in scope.
        for (grid, in_scope) in [(s.own, true), (s.other, s.other_in_scope)] {
            let held = kinds_in(&r, grid);
            for kind in Kind::ALL_STORED {
                let allowed = in_scope && accounts::can_read(s.role, kind);
                assert_eq!(
                    held.contains(&kind),
                    allowed,
                    "{:?} reading {kind} in {grid}",
                    s.role
                );
                cells += 1;
                refused += usize::from(!allowed);
            }
        }

        // Write on the device: what the role may never write is refused at once, before it is
        // stored, in the words the relay uses below.
        let local = try_seed(&mut r, s.own);
        for (kind, written) in &local {
            assert_eq!(
                written.is_ok(),
                accounts::can_write(s.role, *kind),
                "{:?} writing {kind} on the device: {written:?}",
                s.role
            );
        }
        assert!(r.status().unwrap().rejected.is_empty());

        // Write at the relay: create one record of every kind in each grid from a replica that
        // refuses nothing itself, and see what the relay keeps. To reach the relay's own check
        // for the other grid, the device is made to believe it holds that grid too.
        let old_dir = tempfile::tempdir().unwrap();
        let mut r = roleless(&server, old_dir.path(), s.username).await;
        let mut grids = r.identity().unwrap().grids.clone();
        grids.push(s.other.to_string());
        r.set_scope(&grids).unwrap();
        let own = seed(&mut r, s.own);
        let other = seed(&mut r, s.other);
        sync(&mut r).await;
        let rejected: BTreeMap<String, String> = r
            .status()
            .unwrap()
            .rejected
            .into_iter()
            .map(|x| (x.doc_id, x.reason))
            .collect();
        for (ids, in_scope, grid) in [(&own, true, s.own), (&other, s.other_in_scope, s.other)] {
            for (kind, id) in ids {
                let allowed = in_scope && accounts::can_write(s.role, *kind);
                assert_eq!(
                    !rejected.contains_key(id),
                    allowed,
                    "{:?} writing {kind} in {grid}",
                    s.role
                );
                cells += 1;
                refused += usize::from(!allowed);
            }
        }
        // The device said what the relay says (a household's private part is written, and
        // refused, through its household).
        for (kind, id) in own.iter().filter(|(k, _)| **k != Kind::HouseholdPrivate) {
            if let Err(said) = &local[kind] {
                assert_eq!(Some(said), rejected.get(id), "{:?} writing {kind}", s.role);
            }
        }
        // Refused changes never block the next sync.
        let again = sync(&mut r).await;
        assert_eq!(again.stats.changes_sent, 0);
    }
    assert_eq!(cells, 4 * Kind::ALL_STORED.len() * 2 * 2);
    eprintln!("access matrix: {cells} cells, {refused} of them refused");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_volunteers_case_is_refused_on_the_device_in_the_relays_words() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dv, dold) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut worker = server.worker(dw.path(), "worker", &["g1"]).await;
    server.user("volunteer", Role::Volunteer, &["g1"]).await;
    let mut volunteer = server.device(dv.path(), "volunteer").await;
    let h = household(&mut worker, "张三");
    sync(&mut worker).await;
    sync(&mut volunteer).await;
    let case = json!({"case_type": "disability", "household_id": h, "plan": "每周探访"});

    // Refused at once, with the reason, and nothing is stored: no open case on the phone, no
    // change waiting for the next sync.
    let err = volunteer
        .create(Kind::Case, fields(case.clone()))
        .unwrap_err();
    assert!(matches!(err, Error::NotAllowed(_)), "{err:?}");
    let reason = "巡逻志愿者无权写入帮扶个案 a volunteer may not write case records";
    assert_eq!(err.to_string(), reason);
    let edit = volunteer.update(&h, fields(json!({"notes": "志愿者改的"})));
    assert!(matches!(edit, Err(Error::NotAllowed(_))), "{edit:?}");
    let status = volunteer.status().unwrap();
    assert_eq!(status.unsent_changes, 0);
    assert!(status.rejected.is_empty());
    assert_eq!(
        kinds_in(&volunteer, "g1"),
        BTreeSet::from([Kind::Household])
    );
    let again = sync(&mut volunteer).await;
    assert_eq!(again.stats.changes_sent, 0);
    assert!(volunteer.status().unwrap().rejected.is_empty());

    // What the role may write still goes, and a grid worker still writes the case.
    volunteer
        .create(
            Kind::Patrol,
            fields(json!({"started_at": "2026-11-01T20:00:00Z"})),
        )
        .unwrap();
    sync(&mut volunteer).await;
    let status = volunteer.status().unwrap();
    assert_eq!((status.unsent_changes, status.rejected.len()), (0, 0));
    let c = worker.create(Kind::Case, fields(case.clone())).unwrap().id;
    sync(&mut worker).await;
    assert!(worker.status().unwrap().rejected.is_empty());
    assert!(relay_copy_exists(&server, &c).await);

    // A replica that does not check, uploading the same write, is refused by the relay in the
    // same words.
    let mut old = roleless(&server, dold.path(), "volunteer").await;
    sync(&mut old).await;
    let sneaked = old.create(Kind::Case, fields(case)).unwrap().id;
    sync(&mut old).await;
    let rejected = old.status().unwrap().rejected;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(
        (rejected[0].doc_id.as_str(), rejected[0].reason.as_str()),
        (sneaked.as_str(), reason)
    );
    assert!(!relay_copy_exists(&server, &sneaked).await);
    server.stop().await;
}

async fn relay_copy_exists(server: &TestServer, id: &str) -> bool {
    server.state.relay.document(id).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_volunteer_replica_holds_no_id_number() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dv) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut worker = server.worker(dw.path(), "worker", &["g1"]).await;
    let ids = seed(&mut worker, "g1");
    sync(&mut worker).await;
    assert_eq!(
        worker.get(&ids[&Kind::Household]).unwrap().fields["residents"][0]["id_number"],
        ID_NUMBER
    );

    server.user("volunteer", Role::Volunteer, &["g1"]).await;
    let mut volunteer = server.device(dv.path(), "volunteer").await;
    sync(&mut volunteer).await;
    let household = volunteer.get(&ids[&Kind::Household]).unwrap();
    assert_eq!(household.fields["head_name"], "张三");
    assert!(household.fields["residents"][0].get("id_number").is_none());
    drop(volunteer);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dv.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!bytes.is_empty());
    let found = bytes
        .windows(ID_NUMBER.len())
        .any(|w| w == ID_NUMBER.as_bytes());
    assert!(
        !found,
        "the ID number is somewhere in the volunteer's replica files"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_unauthenticated_stats_say_nothing_about_grids_or_cases() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let dw = tempfile::tempdir().unwrap();
    let mut worker = server.worker(dw.path(), "worker", &["g1"]).await;
    let ids = seed(&mut worker, "g1");
    sync(&mut worker).await;
    let stats = server.stats().await;
    assert_eq!(stats["records"], ids.len() as u64, "{stats}");
    let text = stats.to_string();
    for secret in ["g1", "case", "household", "open"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_revoked_device_is_refused_and_wiped() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "worker", &["g1"]).await;
    seed(&mut a, "g1");
    sync(&mut a).await;
    let device = a.identity().unwrap().device_id.clone();
    assert!(server.accounts.revoke_device(&device).await.unwrap());

    let err = transport::sync_once(&mut a, None).await.unwrap_err();
    assert!(matches!(err, Error::Revoked(_)), "{err}");
    assert!(a.identity().is_err(), "the replica forgot who it was");
    assert_eq!(a.count(&Query::default()).unwrap(), 0);
    drop(a);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(da.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(
        !bytes
            .windows(ID_NUMBER.len())
            .any(|w| w == ID_NUMBER.as_bytes())
    );

    // A live session is cut within seconds of the revocation, and wiped too.
    let b = Arc::new(Mutex::new(server.device(db.path(), "worker").await));
    let (writes, stop) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let live = tokio::spawn(transport::run_live(b.clone(), writes, stop));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let device = b.lock().unwrap().identity().unwrap().device_id.clone();
    server.accounts.revoke_device(&device).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(15), live).await;
    let result = ended.expect("live session ends").unwrap();
    assert!(matches!(result, Err(Error::Revoked(_))), "{result:?}");
    assert!(b.lock().unwrap().identity().is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reassignment_purges_the_old_grid_only_after_its_changes_are_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dv) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut w = server.worker(dw.path(), "worker", &["g1"]).await;
    let ids = seed(&mut w, "g1");
    sync(&mut w).await;
    let case = ids[&Kind::Case].clone();
    // Offline work in g1, then the office moves the worker to g2.
    w.update(&case, fields(json!({"status": "open", "plan": "每周探访"})))
        .unwrap();
    server.user("worker", Role::GridWorker, &["g2"]).await;
    assert_eq!(
        w.count(&Query {
            grid: Some("g1".into()),
            ..Query::default()
        })
        .unwrap(),
        ids.len() as u64
    );

    sync(&mut w).await;
    assert_eq!(
        w.status().unwrap().unsent_changes,
        0,
        "the g1 change was accepted"
    );
    assert!(w.status().unwrap().rejected.is_empty());
    assert!(
        kinds_in(&w, "g1").is_empty(),
        "g1 purged once nothing there was unsent"
    );
    assert_eq!(w.identity().unwrap().grids, ["g2"]);

    // The change made before the move reached the office.
    server.user("office", Role::Office, &["m1"]).await;
    let mut office = server.device(dv.path(), "office").await;
    sync(&mut office).await;
    assert_eq!(office.get(&case).unwrap().fields["plan"], "每周探访");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_forged_actor_and_token_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    let b = server.worker(db.path(), "li", &["g1"]).await;
    seed(&mut a, "g1");
    let stolen = a.outbox_batch(1, 1 << 20).unwrap().remove(0);

    // B presents its own valid token but uploads a change signed by A's actor.
    let url = format!("ws://{}/v1/sync", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let hello = ClientMsg::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        client_version: "test".into(),
        token: b.identity().unwrap().token.clone(),
        device_id: "pretending".into(),
        cursors: vec![],
        witnesses: vec![],
        live: false,
    });
    let upload = ClientMsg::Upload(protocol::Upload {
        batch: 1,
        changes: vec![UpChange {
            doc_id: stolen.doc_id,
            grid: stolen.grid_id,
            bytes: stolen.bytes,
        }],
    });
    for msg in [hello, upload] {
        for frame in protocol::encode(&msg, 1) {
            ws.send(Message::Binary(frame.into())).await.unwrap();
        }
    }
    let mut ack = None;
    for _ in 0..10 {
        let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
            break;
        };
        if let Ok(ServerMsg::Ack(a)) = protocol::decode_frame::<ServerMsg>(&bytes) {
            ack = Some(a);
            break;
        }
    }
    let ack = ack.expect("an acknowledgement");
    assert_eq!(ack.rejected.len(), 1);
    assert!(
        ack.rejected[0].reason.contains("not bound to this device"),
        "{:?}",
        ack.rejected
    );

    // A made-up token gets a clear refusal, and nothing is erased on the device's side.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let forged = ClientMsg::Hello(Hello {
        protocol: protocol::PROTOCOL_VERSION,
        client_version: "test".into(),
        token: "0".repeat(64),
        device_id: "x".into(),
        cursors: vec![],
        witnesses: vec![],
        live: false,
    });
    for frame in protocol::encode(&forged, 1) {
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
        panic!("no answer to a forged token")
    };
    match protocol::decode_frame::<ServerMsg>(&bytes).unwrap() {
        ServerMsg::Error(e) => assert_eq!(e.code, ErrorCode::Unauthorized),
        other => panic!("forged token got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_repeated_wrong_passwords_are_throttled() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    server.user("wang", Role::GridWorker, &["g1"]).await;
    let attempt = |password: &str| LoginRequest {
        username: "wang".into(),
        password: password.into(),
        device_name: String::new(),
        actor: "00112233445566778899aabbccddeeff".into(),
    };
    for _ in 0..5 {
        let err = transport::login(&server.url(), attempt("guess"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("wrong username or password"),
            "{err}"
        );
    }
    // Even the right password waits now.
    let err = transport::login(&server.url(), attempt(PASSWORD))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("too many failed attempts"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sign_in_of_a_user_without_grids_is_refused_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    server.user("newbie", Role::GridWorker, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut phone = Replica::open(dir.path()).unwrap();
    let err = transport::sign_in(&mut phone, &server.url(), "newbie", PASSWORD, "手机")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("没有分配网格"), "{err}");
    assert!(
        matches!(phone.identity(), Err(Error::NotInitialised)),
        "the phone is not signed in, so it cannot reach a record without a grid"
    );
    server.stop().await;
}

/// A change by `device`'s own actor and signature that makes the root of `base` (a new
/// document when `None`) hold `patch` (`null` removes a field): what a device whose SQLite was
/// edited by hand would upload.
fn forge(
    device: &Replica,
    base: Option<&Automerge>,
    doc_id: &str,
    grid: &str,
    patch: serde_json::Value,
) -> UpChange {
    let actor: ActorId = device.actor_hex().parse().unwrap();
    let mut doc = match base {
        Some(d) => d.fork().with_actor(actor),
        None => Automerge::new().with_actor(actor),
    };
    let current = gridsync_core::doc::read_root(&doc);
    let mut new = current.clone();
    for (k, v) in fields(patch) {
        if v.is_null() {
            new.remove(&k);
        } else {
            new.insert(k, v);
        }
    }
    let mut tx = doc.transaction();
    gridsync_core::doc::reconcile_root(&mut tx, Kind::Patrol, &current, &new).unwrap();
    let author = device.identity().unwrap().worker_id.clone();
    tx.commit_with(CommitOptions::default().with_message(author));
    UpChange {
        doc_id: doc_id.into(),
        grid: grid.into(),
        bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
    }
}

/// Uploads each change as an upload of its own, with `device`'s own token over the sync
/// protocol (one session); returns the relay's refusal of each, if it refused it.
async fn upload_raw(
    server: &TestServer,
    device: &Replica,
    changes: Vec<UpChange>,
) -> Vec<Option<String>> {
    let mut raw = RawClient::connect(server).await;
    raw.hello(&device.identity().unwrap().token).await;
    let mut out = Vec::new();
    for (batch, change) in (1..).zip(changes) {
        let upload = protocol::Upload {
            batch,
            changes: vec![change],
        };
        raw.send(&ClientMsg::Upload(upload)).await;
        let mut answer = None;
        for _ in 0..50 {
            match raw.recv().await {
                Some(ServerMsg::Ack(ack)) if ack.batch == batch => {
                    answer = Some(ack.rejected.into_iter().next().map(|r| r.reason));
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        out.push(answer.expect("an acknowledgement of the upload"));
    }
    out
}

/// The relay's copy of a document.
async fn relay_copy(server: &TestServer, id: &str) -> Automerge {
    server
        .state
        .relay
        .document(id)
        .await
        .unwrap()
        .expect("the relay holds it")
        .doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_volunteers_record_under_a_households_private_id_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dv) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut worker = server.worker(dw.path(), "worker", &["g1"]).await;
    server.user("volunteer", Role::Volunteer, &["g1"]).await;
    let mut volunteer = server.device(dv.path(), "volunteer").await;
    // A household with no sensitive data yet: it has no private part.
    let h = household(&mut worker, "张三");
    sync(&mut worker).await;
    sync(&mut volunteer).await;
    let private = private_id(&h);

    // The attack: the volunteer's device makes a patrol log under the private part's id.
    let patrol = forge(
        &volunteer,
        None,
        &private,
        "g1",
        json!({"id": private, "kind": "patrol", "grid_id": "g1",
               "started_at": "2026-11-01T20:00:00Z", "created_by": "volunteer"}),
    );
    let refused = upload_raw(&server, &volunteer, vec![patrol]).await;
    assert!(
        refused[0].as_ref().is_some_and(|r| r.contains("reserved")),
        "{refused:?}"
    );

    // The worker then records the residents' ID numbers: they go into the real private part,
    // which the volunteer never receives.
    worker
        .update(
            &h,
            fields(json!({"residents": [{"name": "张三", "id_number": ID_NUMBER, "health": "糖尿病"}]})),
        )
        .unwrap();
    sync(&mut worker).await;
    assert!(worker.status().unwrap().rejected.is_empty());
    let stored = server
        .state
        .relay
        .document(&private)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.kind, Some(Kind::HouseholdPrivate));
    sync(&mut volunteer).await;
    assert_eq!(volunteer.kind_of(&private), None);
    let seen = volunteer.get(&h).unwrap();
    assert!(
        seen.fields["residents"][0].get("id_number").is_none(),
        "{seen:?}"
    );
    assert_eq!(
        worker.get(&h).unwrap().fields["residents"][0]["id_number"],
        ID_NUMBER
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_document_keeps_its_id_kind_and_grid() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dv, ds) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let w = server.worker(dw.path(), "worker", &["g1", "g2"]).await;
    server.user("volunteer", Role::Volunteer, &["g1"]).await;
    let mut v = server.device(dv.path(), "volunteer").await;
    // The records are a colleague's: the worker's device has written none of them.
    let mut colleague = server.worker(ds.path(), "li", &["g1"]).await;
    let ids = seed(&mut colleague, "g1");
    let bare = household(&mut colleague, "李四");
    sync(&mut colleague).await;
    sync(&mut v).await;
    let (case, patrol) = (ids[&Kind::Case].clone(), ids[&Kind::Patrol].clone());
    let patrol_doc = relay_copy(&server, &patrol).await;
    let new_patrol = |id: &str, grid: &str| {
        json!({"id": id, "kind": "patrol", "grid_id": grid, "started_at": "2026-11-01T20:00:00Z",
               "created_by": "worker"})
    };
    let private_part = |household: &str, grid: &str| {
        json!({"id": private_id(household), "kind": "household_private", "grid_id": grid,
               "household_id": household, "created_by": "worker",
               "residents": [{"name": "李四", "id_number": ID_NUMBER}]})
    };
    let mut attempts: Vec<(&str, UpChange, &str)> = vec![
        (
            "a patrol log under a household's private id",
            forge(
                &w,
                None,
                &private_id(&bare),
                "g1",
                new_patrol(&private_id(&bare), "g1"),
            ),
            "reserved",
        ),
        (
            "another kind's id",
            forge(&w, None, &case, "g1", new_patrol(&case, "g1")),
            "cannot become",
        ),
        (
            "another grid's id",
            forge(&w, None, &case, "g2", new_patrol(&case, "g2")),
            "belongs to grid g1",
        ),
        (
            "a grid field naming another grid",
            forge(&w, None, "p-new", "g1", new_patrol("p-new", "g2")),
            "says grid g2",
        ),
        (
            "a root id that is not the document's",
            forge(&w, None, "p-other", "g1", new_patrol("p-else", "g1")),
            "says id p-else",
        ),
        (
            "a kind change in a later change",
            forge(
                &w,
                Some(&patrol_doc),
                &patrol,
                "g1",
                json!({"kind": "case"}),
            ),
            "cannot become",
        ),
        (
            "the kind removed in a later change",
            forge(&w, Some(&patrol_doc), &patrol, "g1", json!({"kind": null})),
            "remove the kind",
        ),
        (
            "the id changed in a later change",
            forge(
                &w,
                Some(&patrol_doc),
                &patrol,
                "g1",
                json!({"id": "p-renamed"}),
            ),
            "says id p-renamed",
        ),
        (
            "a private part of a household that does not exist",
            forge(
                &w,
                None,
                &private_id("nobody"),
                "g1",
                private_part("nobody", "g1"),
            ),
            "does not exist",
        ),
        (
            "a private part of a household in another grid",
            forge(
                &w,
                None,
                &private_id(&bare),
                "g2",
                private_part(&bare, "g2"),
            ),
            "does not exist in grid g2",
        ),
        (
            "a private part naming another household",
            forge(&w, None, &private_id(&bare), "g1", {
                let mut p = private_part(&bare, "g1");
                p["household_id"] = json!(ids[&Kind::Household]);
                p
            }),
            "household_id must be",
        ),
    ];
    let volunteer_writes = forge(&v, None, &private_id(&bare), "g1", {
        let mut p = private_part(&bare, "g1");
        p["created_by"] = json!("volunteer");
        p
    });
    let changes: Vec<UpChange> = attempts.iter_mut().map(|(_, c, _)| c.clone()).collect();
    let refused = upload_raw(&server, &w, changes).await;
    for ((what, _, reason), got) in attempts.iter().zip(&refused) {
        assert!(
            got.as_ref().is_some_and(|r| r.contains(reason)),
            "{what}: {got:?} (expected “{reason}”)"
        );
    }
    let refused = upload_raw(&server, &v, vec![volunteer_writes]).await;
    assert!(
        refused[0]
            .as_ref()
            .is_some_and(|r| r.contains("may not write")),
        "a volunteer writing a household's private part: {refused:?}"
    );

    // Nothing of it reached anyone: the records read as before, and the volunteer still
    // holds no private part.
    assert_eq!(
        server
            .state
            .relay
            .document(&case)
            .await
            .unwrap()
            .unwrap()
            .kind,
        Some(Kind::Case)
    );
    let patrol_now = relay_copy(&server, &patrol).await;
    assert_eq!(patrol_now.get_heads(), patrol_doc.get_heads());
    assert!(
        server
            .state
            .relay
            .document(&private_id("nobody"))
            .await
            .unwrap()
            .is_none()
    );
    sync(&mut v).await;
    assert!(!kinds_in(&v, "g1").contains(&Kind::HouseholdPrivate));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_relay_refuses_content_a_device_would_not_write() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let dw = tempfile::tempdir().unwrap();
    let w = server.worker(dw.path(), "worker", &["g1"]).await;
    server.user("zhao", Role::Office, &["m2"]).await;
    let case = |id: &str, extra: serde_json::Value| {
        let mut f = json!({"id": id, "kind": "case", "grid_id": "g1", "case_type": "low_income",
                           "subject_name": "张三", "status": "open", "created_by": "worker",
                           "updated_by": "worker"});
        f.as_object_mut().unwrap().extend(fields(extra));
        forge(&w, None, id, "g1", f)
    };
    let report = |id: &str, discovered: &str| {
        forge(
            &w,
            None,
            id,
            "g1",
            json!({
                "id": id, "kind": "report", "grid_id": "g1", "category": "dispute",
                "urgency": "urgent", "description": "邻里纠纷", "discovered_at": discovered,
                "created_by": "worker",
            }),
        )
    };
    let household = |id: &str, extra: serde_json::Value| {
        let mut f = json!({"id": id, "kind": "household", "grid_id": "g1",
                           "household_type": "registered", "head_name": "王五",
                           "created_by": "worker"});
        f.as_object_mut().unwrap().extend(fields(extra));
        forge(&w, None, id, "g1", f)
    };
    let attempts = [
        (
            case(
                "c1",
                json!({"status": "totally_invalid", "case_type": "not_a_type"}),
            ),
            "unknown variant",
        ),
        (case("c2", json!({"created_by": "zhao"})), "created_by says"),
        (case("c3", json!({"updated_by": "zhao"})), "updated_by says"),
        (report("r1", "9999-99-99T99:99:99Z"), "discovered_at"),
        (report("r2", "2099-01-01T00:00:00Z"), "relay's time"),
        (
            household("h1", json!({"head_name": "王".repeat(33_000)})),
            "head_name",
        ),
        (
            household("h2", json!({"gps": {"lat": 123.0, "lon": 114.3}})),
            "latitude",
        ),
        (case("c-ok", json!({})), ""),
    ];
    let refused = upload_raw(
        &server,
        &w,
        attempts.iter().map(|(c, _)| c.clone()).collect(),
    )
    .await;
    for (i, ((_, reason), got)) in attempts.iter().zip(&refused).enumerate() {
        if reason.is_empty() {
            assert!(got.is_none(), "a valid case was refused: {got:?}");
        } else {
            let found = got.as_ref().is_some_and(|r| r.contains(reason));
            assert!(found, "{i}: {got:?} (expected “{reason}”)");
        }
    }
    // A later change is held to the same rules: a closed case cannot go back to work, and an
    // edit is signed by whoever makes it.
    let ok = relay_copy(&server, "c-ok").await;
    let closed = forge(&w, Some(&ok), "c-ok", "g1", json!({"status": "closed"}));
    assert_eq!(upload_raw(&server, &w, vec![closed]).await, [None]);
    let ok = relay_copy(&server, "c-ok").await;
    let later = [
        (
            forge(
                &w,
                Some(&ok),
                "c-ok",
                "g1",
                json!({"status": "in_progress"}),
            ),
            "reopen",
        ),
        (
            forge(&w, Some(&ok), "c-ok", "g1", json!({"updated_by": "zhao"})),
            "updated_by says",
        ),
        // Rewritten by a later change: what a change writes is checked whichever other fields
        // it leaves alone.
        (
            forge(&w, Some(&ok), "c-ok", "g1", json!({"created_by": "wang"})),
            "not later",
        ),
    ];
    for (change, reason) in later {
        let refused = upload_raw(&server, &w, vec![change]).await;
        let found = refused[0].as_ref().is_some_and(|r| r.contains(reason));
        assert!(found, "{refused:?} (expected “{reason}”)");
    }
    server.stop().await;
}
