//! The relay's session driven with no socket: a real relay on SQLite with the dashboard tests'
//! accounts, devices signed in as a phone is, and a list that takes what the session sends.
//! Each test checks what a device would see of it.

use std::net::{IpAddr, Ipv4Addr};

use gridsync_core::protocol::{
    BlobGet, BlobReply, Changes, CommunityZone, Hash, LoginRequest, MIN_PROTOCOL, Rejected, Upload,
};

use super::*;
use crate::accounts::Area;
use crate::attachments::tests::{name, stored};
use crate::dashboard::tests::{case, server};
use crate::relay::tests::{ACTOR, record_by};

impl Outgoing for Vec<ServerMsg> {
    async fn send(&mut self, msg: &ServerMsg) -> Result<usize, Close> {
        self.push(msg.clone());
        Ok(protocol::encode(msg, 0).iter().map(Vec::len).sum())
    }
}

/// The dashboard tests' relay (zhao, office staff of community m1; vol, a volunteer of its grid
/// g1), with a second grid g2 in m1, so that zhao's device holds two.
async fn relay() -> (tempfile::TempDir, std::sync::Arc<AppState>) {
    let (dir, state) = server().await;
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
    (dir, state)
}

/// Signs `username`'s phone in with its replica's `actor` and reads the grant its token stands
/// for, as a hello with that token would.
async fn device(state: &AppState, username: &str, actor: &[u8; 16]) -> Grant {
    let login = accounts::login(
        state.accounts.as_ref(),
        &state.limiter,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        LoginRequest {
            username: username.into(),
            password: "pw-2026".into(),
            device_name: String::new(),
            actor: hex::encode(actor),
        },
        5,
    )
    .await
    .unwrap();
    authenticate(state, &login.token).await.unwrap()
}

fn hello(protocol: u16, cursors: Vec<Cursor>, witnesses: Vec<Cursor>) -> Hello {
    Hello {
        protocol,
        client_version: "test".into(),
        // The session reads the grant, not the token again.
        token: String::new(),
        device_id: String::new(),
        cursors,
        witnesses,
        live: true,
    }
}

/// The log's newest entry of `grid` as a cursor.
async fn head(state: &AppState, grid: &str) -> Cursor {
    let (seq, hash) = state.relay.log().head(grid).await.unwrap().unwrap();
    Cursor {
        grid: grid.into(),
        seq,
        hash: Some(hash),
    }
}

/// A second phone's actor: an actor is bound to one device.
const OTHER: &[u8; 16] = b"other-phone-acto";

/// zhao's phone (actor `ACTOR`, the relay tests' records' own) with nothing yet, started and
/// caught up; what it was sent is cleared.
async fn caught_up(state: &AppState) -> (Session<'_>, Vec<ServerMsg>) {
    let mut out = Vec::new();
    let session = Session::start(
        state,
        hello(PROTOCOL_VERSION, vec![], vec![]),
        device(state, "zhao", ACTOR).await,
        &mut out,
    )
    .await
    .unwrap();
    let batches = out
        .iter()
        .filter(|m| matches!(m, ServerMsg::Changes(c) if !c.more))
        .count();
    assert_eq!(batches, 2, "{out:?}");
    out.clear();
    (session, out)
}

fn changes(msg: &ServerMsg) -> &Changes {
    match msg {
        ServerMsg::Changes(c) => c,
        other => panic!("expected changes, got {other:?}"),
    }
}

fn doc_ids(changes: &Changes) -> Vec<&str> {
    changes.docs.iter().map(|d| d.doc_id.as_str()).collect()
}

/// The session's end: its close code, error and message.
fn closed(result: Result<(), Close>) -> (u16, ErrorCode, String) {
    let close = result.expect_err("the session should have ended");
    (close.code, close.error, close.message)
}

#[tokio::test]
async fn test_start_answers_welcome_in_the_devices_protocol_then_zone_then_a_batch_per_grid() {
    let (_dir, state) = relay().await;
    case(&state, "c1", "g1", "open").await;
    case(&state, "c2", "g2", "open").await;
    case(&state, "c9", "g9", "open").await;
    let mut out = Vec::new();
    Session::start(
        &state,
        hello(PROTOCOL_VERSION, vec![], vec![]),
        device(&state, "zhao", ACTOR).await,
        &mut out,
    )
    .await
    .unwrap();

    assert_eq!(out.len(), 4, "{out:?}");
    let ServerMsg::Welcome(welcome) = &out[0] else {
        panic!("first a welcome: {out:?}")
    };
    assert_eq!(welcome.protocol, PROTOCOL_VERSION);
    assert_eq!(
        welcome.server_id,
        state.relay.log().server_id().await.unwrap()
    );
    assert_eq!(welcome.max_batch_changes, MAX_BATCH_CHANGES as u32);
    let mut grids: Vec<(&str, u64, bool)> = welcome
        .grids
        .iter()
        .map(|g| (g.grid.as_str(), g.head_seq, g.cursor_known))
        .collect();
    grids.sort();
    let (g1, g2) = (head(&state, "g1").await, head(&state, "g2").await);
    assert_eq!(
        grids,
        [("g1", g1.seq, true), ("g2", g2.seq, true)],
        "g9 is not zhao's"
    );
    assert_eq!(
        out[1],
        ServerMsg::Zone(CommunityZone {
            utc_offset_minutes: state.dashboard.offset.local_minus_utc() / 60
        })
    );
    let mut batches: Vec<&Changes> = out[2..].iter().map(changes).collect();
    batches.sort_by(|a, b| a.grid.cmp(&b.grid));
    assert_eq!(doc_ids(batches[0]), ["c1"]);
    assert_eq!(doc_ids(batches[1]), ["c2"]);
    assert_eq!((&batches[0].cursor, &batches[1].cursor), (&g1, &g2));
    assert!(!batches[0].more && !batches[1].more);

    // A device of protocol 4 is answered in 4, and protocol 4 has no zone.
    let mut out = Vec::new();
    Session::start(
        &state,
        hello(ATTACHMENTS_PROTOCOL, vec![], vec![]),
        device(&state, "zhao", OTHER).await,
        &mut out,
    )
    .await
    .unwrap();
    assert!(
        matches!(&out[0], ServerMsg::Welcome(w) if w.protocol == ATTACHMENTS_PROTOCOL),
        "{out:?}"
    );
    assert_eq!(out.len(), 3, "a welcome and two batches: {out:?}");
    assert!(out[1..].iter().all(|m| matches!(m, ServerMsg::Changes(_))));
}

#[tokio::test]
async fn test_an_unknown_cursor_gets_repair_pages_then_catches_up_from_the_head() {
    let (_dir, state) = relay().await;
    case(&state, "c1", "g1", "open").await;
    case(&state, "c2", "g1", "open").await;
    // Seq 2 of g1 exists, but with other contents than the device holds (a restored backup).
    let elsewhere = Cursor {
        grid: "g1".into(),
        seq: 2,
        hash: Some([7; 32]),
    };
    let mut out = Vec::new();
    let mut session = Session::start(
        &state,
        hello(PROTOCOL_VERSION, vec![elsewhere], vec![]),
        device(&state, "zhao", ACTOR).await,
        &mut out,
    )
    .await
    .unwrap();

    let ServerMsg::Welcome(welcome) = &out[0] else {
        panic!("first a welcome: {out:?}")
    };
    let g1 = welcome.grids.iter().find(|g| g.grid == "g1").unwrap();
    assert!(!g1.cursor_known && g1.head_seq == 2, "{g1:?}");
    assert!(matches!(out[1], ServerMsg::Zone(_)));
    // g2 catches up as usual; g1 gets its documents' heads instead of changes.
    assert_eq!(changes(&out[2]).grid, "g2");
    let ServerMsg::RepairDocs(page) = &out[3] else {
        panic!("then the repair pages: {out:?}")
    };
    let listed: Vec<&str> = page.docs.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!((page.grid.as_str(), &listed[..]), ("g1", &["c1", "c2"][..]));
    assert!(page.docs.iter().all(|d| !d.heads.is_empty()), "{page:?}");
    assert!(!page.more);
    assert_eq!(page.head, head(&state, "g1").await);
    assert_eq!(out.len(), 4, "no changes of g1: {out:?}");

    // Once repaired, the device pulls from the head: nothing older comes again.
    out.clear();
    session
        .on_message(&mut out, ClientMsg::Pull { grid: "g1".into() })
        .await
        .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    let batch = changes(&out[0]);
    assert!(batch.docs.is_empty() && !batch.more, "{batch:?}");
    assert_eq!(batch.cursor, head(&state, "g1").await);
    // And is caught up: a second pull is not answered.
    out.clear();
    session
        .on_message(&mut out, ClientMsg::Pull { grid: "g1".into() })
        .await
        .unwrap();
    assert!(out.is_empty(), "{out:?}");
}

#[tokio::test]
async fn test_a_witness_the_log_does_not_hold_repairs_even_a_cursor_at_the_start() {
    let (_dir, state) = relay().await;
    case(&state, "c1", "g2", "open").await;
    // The relay acknowledged seq 5 of g2 once; restored, its log ends at 1.
    let witness = Cursor {
        grid: "g2".into(),
        seq: 5,
        hash: Some([5; 32]),
    };
    let mut out = Vec::new();
    Session::start(
        &state,
        hello(PROTOCOL_VERSION, vec![], vec![witness]),
        device(&state, "zhao", ACTOR).await,
        &mut out,
    )
    .await
    .unwrap();
    let ServerMsg::Welcome(welcome) = &out[0] else {
        panic!("first a welcome: {out:?}")
    };
    let known: Vec<(&str, bool)> = {
        let mut k: Vec<_> = welcome
            .grids
            .iter()
            .map(|g| (g.grid.as_str(), g.cursor_known))
            .collect();
        k.sort();
        k
    };
    assert_eq!(known, [("g1", true), ("g2", false)]);
    assert!(
        matches!(&out[3], ServerMsg::RepairDocs(p) if p.grid == "g2" && p.docs.len() == 1),
        "{out:?}"
    );
}

#[tokio::test]
async fn test_an_upload_is_acknowledged_once_accepted_with_the_forbidden_change_rejected() {
    let (_dir, state) = relay().await;
    let (mut session, mut out) = caught_up(&state).await;
    let upload = Upload {
        batch: 7,
        changes: vec![
            record_by("h1", "g1", "zhao"),
            // g9 is another community's.
            record_by("h2", "g9", "zhao"),
        ],
    };
    session
        .on_message(&mut out, ClientMsg::Upload(upload))
        .await
        .unwrap();

    let [ServerMsg::Ack(ack)] = &out[..] else {
        panic!("expected one acknowledgement, got {out:?}")
    };
    assert_eq!(ack.batch, 7);
    let [
        Rejected {
            doc_id,
            index,
            reason,
        },
    ] = &ack.rejected[..]
    else {
        panic!("{ack:?}")
    };
    assert_eq!((doc_id.as_str(), *index), ("h2", 1));
    assert!(reason.contains("outside"), "{reason}");
    // The witness is the log's entry the accepted change became: durable when acknowledged.
    assert_eq!(ack.witnesses, [head(&state, "g1").await]);
    assert!(state.relay.log().head("g9").await.unwrap().is_none());

    // A volunteer may not write households at all: refused with the access rules' words.
    let (_dir, state) = relay().await;
    let mut out = Vec::new();
    let mut vol = Session::start(
        &state,
        hello(PROTOCOL_VERSION, vec![], vec![]),
        device(&state, "vol", ACTOR).await,
        &mut out,
    )
    .await
    .unwrap();
    out.clear();
    let upload = Upload {
        batch: 1,
        changes: vec![record_by("h3", "g1", "vol")],
    };
    vol.on_message(&mut out, ClientMsg::Upload(upload))
        .await
        .unwrap();
    let [ServerMsg::Ack(ack)] = &out[..] else {
        panic!("expected one acknowledgement, got {out:?}")
    };
    assert_eq!(ack.rejected.len(), 1, "{ack:?}");
    assert!(
        ack.rejected[0].reason.contains("may not write household"),
        "{ack:?}"
    );
    assert!(ack.witnesses.is_empty(), "nothing stored: {ack:?}");
}

#[tokio::test]
async fn test_a_second_hello_or_a_sign_in_on_a_session_is_a_bad_request() {
    let (_dir, state) = relay().await;
    let (mut session, mut out) = caught_up(&state).await;
    let again = session
        .on_message(
            &mut out,
            ClientMsg::Hello(hello(PROTOCOL_VERSION, vec![], vec![])),
        )
        .await;
    assert_eq!(
        closed(again),
        (
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            "hello sent twice".into()
        )
    );
    let login = LoginRequest {
        username: "zhao".into(),
        password: "pw-2026".into(),
        device_name: String::new(),
        actor: hex::encode(ACTOR),
    };
    let sign_in = session.on_message(&mut out, ClientMsg::Login(login)).await;
    assert_eq!(
        closed(sign_in),
        (
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            "sign in on a connection of its own".into()
        )
    );
    assert!(out.is_empty(), "{out:?}");
}

#[tokio::test]
async fn test_an_upload_of_more_than_max_batch_changes_is_too_large_and_nothing_is_stored() {
    let (_dir, state) = relay().await;
    let (mut session, mut out) = caught_up(&state).await;
    let upload = Upload {
        batch: 1,
        changes: vec![record_by("h1", "g1", "zhao"); MAX_BATCH_CHANGES + 1],
    };
    let (code, error, message) = closed(
        session
            .on_message(&mut out, ClientMsg::Upload(upload))
            .await,
    );
    assert_eq!((code, error), (close_code::TOO_LARGE, ErrorCode::TooLarge));
    assert!(
        message.contains(&MAX_BATCH_CHANGES.to_string()),
        "{message}"
    );
    assert!(out.is_empty(), "no acknowledgement: {out:?}");
    assert!(state.relay.log().head("g1").await.unwrap().is_none());
}

#[tokio::test]
async fn test_a_pull_while_not_catching_up_sends_nothing() {
    let (_dir, state) = relay().await;
    let (mut session, mut out) = caught_up(&state).await;
    // Written since the catch-up ended: pushed, not pulled.
    case(&state, "c1", "g1", "open").await;
    for grid in ["g1", "g9", "nowhere"] {
        session
            .on_message(&mut out, ClientMsg::Pull { grid: grid.into() })
            .await
            .unwrap();
    }
    assert!(out.is_empty(), "{out:?}");
}

#[tokio::test]
async fn test_a_notice_pushes_only_the_new_changes_and_nothing_when_the_cursor_did_not_move() {
    let (_dir, state) = relay().await;
    case(&state, "c1", "g1", "open").await;
    let (mut session, mut out) = caught_up(&state).await;
    assert!(session.live());
    session.on_notice(&mut out, "g1").await.unwrap();
    assert!(out.is_empty(), "nothing new: {out:?}");

    case(&state, "c2", "g1", "open").await;
    session.on_notice(&mut out, "g1").await.unwrap();
    let [ServerMsg::Changes(pushed)] = &out[..] else {
        panic!("expected one push, got {out:?}")
    };
    assert_eq!(doc_ids(pushed), ["c2"], "not c1 again");
    assert_eq!(pushed.cursor, head(&state, "g1").await);
    assert!(!pushed.more);
    out.clear();
    session.on_notice(&mut out, "g1").await.unwrap();
    assert!(out.is_empty(), "pushed once: {out:?}");

    // The device's own upload moves its cursor but is not pushed back to it.
    let upload = Upload {
        batch: 1,
        changes: vec![record_by("h1", "g1", "zhao")],
    };
    session
        .on_message(&mut out, ClientMsg::Upload(upload))
        .await
        .unwrap();
    out.clear();
    session.on_notice(&mut out, "g1").await.unwrap();
    assert!(out.is_empty(), "its own change: {out:?}");

    // Missed notices: every grid is looked at.
    case(&state, "c3", "g1", "open").await;
    case(&state, "c4", "g2", "open").await;
    session.on_lagged(&mut out).await.unwrap();
    let mut pushed: Vec<(&str, Vec<&str>)> = out
        .iter()
        .map(changes)
        .map(|c| (c.grid.as_str(), doc_ids(c)))
        .collect();
    pushed.sort();
    assert_eq!(pushed, [("g1", vec!["c3"]), ("g2", vec!["c4"])]);
}

#[tokio::test]
async fn test_no_push_to_a_grid_still_catching_up_or_to_a_device_revoked_or_moved() {
    let (_dir, state) = relay().await;
    case(&state, "c1", "g1", "open").await;
    // An unknown cursor: g1 is repaired, then caught up by pulls, not pushed.
    let unknown = Cursor {
        grid: "g1".into(),
        seq: 1,
        hash: Some([1; 32]),
    };
    let mut out = Vec::new();
    let grant = device(&state, "zhao", ACTOR).await;
    let device_id = grant.identity.device_id.clone();
    let mut session = Session::start(
        &state,
        hello(PROTOCOL_VERSION, vec![unknown], vec![]),
        grant,
        &mut out,
    )
    .await
    .unwrap();
    out.clear();
    case(&state, "c2", "g1", "open").await;
    session.on_notice(&mut out, "g1").await.unwrap();
    assert!(out.is_empty(), "{out:?}");

    // zhao now works in g1 alone: sync again, for the new grids.
    let zhao = state.accounts.user("zhao").await.unwrap().unwrap();
    state
        .accounts
        .set_user_areas(&zhao.id, &["g1".into()])
        .await
        .unwrap();
    let (code, error, _) = closed(session.on_notice(&mut out, "g2").await);
    assert_eq!(
        (code, error),
        (close_code::GOING_AWAY, ErrorCode::ShuttingDown)
    );

    // A revoked device is told so at its next message.
    assert!(state.accounts.revoke_device(&device_id).await.unwrap());
    let pull = ClientMsg::Pull { grid: "g1".into() };
    let (code, error, _) = closed(session.on_message(&mut out, pull).await);
    assert_eq!((code, error), (close_code::REVOKED, ErrorCode::Revoked));
    assert!(out.is_empty(), "{out:?}");
}

#[tokio::test]
async fn test_doc_sync_for_a_grid_outside_the_scope_is_forbidden() {
    let (_dir, state) = relay().await;
    case(&state, "c1", "g1", "open").await;
    case(&state, "c9", "g9", "open").await;
    let (mut session, mut out) = caught_up(&state).await;
    let step = |grid: &str, doc: &str| {
        ClientMsg::DocSync(DocSync {
            grid: grid.into(),
            doc_id: doc.into(),
            message: None,
            refused: None,
        })
    };
    let (code, error, message) = closed(session.on_message(&mut out, step("g9", "c9")).await);
    assert_eq!((code, error), (close_code::FORBIDDEN, ErrorCode::Forbidden));
    assert!(message.contains("g9"), "{message}");
    assert!(out.is_empty(), "{out:?}");

    // In scope, the relay answers the step for that document.
    session
        .on_message(&mut out, step("g1", "c1"))
        .await
        .unwrap();
    let [ServerMsg::DocSync(answer)] = &out[..] else {
        panic!("expected one repair step, got {out:?}")
    };
    assert_eq!((answer.grid.as_str(), answer.doc_id.as_str()), ("g1", "c1"));
    assert!(
        answer.message.is_some() && answer.refused.is_none(),
        "{answer:?}"
    );
}

#[tokio::test]
async fn test_attachments_are_refused_below_their_protocol_and_served_from_it() {
    let (_dir, state) = relay().await;
    let photo = vec![9u8; 1000];
    let hash: Hash = stored(state.relay.attachments(), state.blobs.as_ref(), &photo).await;
    name(state.relay.commits(), "v1", &[(hash, photo.len() as u64)]).await;
    let get = || ClientMsg::BlobGet(BlobGet { hash, offset: 0 });

    let mut out = Vec::new();
    let mut old = Session::start(
        &state,
        hello(MIN_PROTOCOL, vec![], vec![]),
        device(&state, "zhao", OTHER).await,
        &mut out,
    )
    .await
    .unwrap();
    out.clear();
    let (code, error, message) = closed(old.on_message(&mut out, get()).await);
    assert_eq!(
        (code, error),
        (close_code::PROTOCOL_ERROR, ErrorCode::BadRequest)
    );
    assert_eq!(
        message,
        format!(
            "attachments need protocol {ATTACHMENTS_PROTOCOL}; this session speaks {MIN_PROTOCOL}"
        )
    );
    assert!(out.is_empty(), "{out:?}");

    let (mut session, mut out) = caught_up(&state).await;
    session.on_message(&mut out, get()).await.unwrap();
    let [ServerMsg::BlobData(data)] = &out[..] else {
        panic!("expected the attachment, got {out:?}")
    };
    assert_eq!(data.hash, hash);
    let BlobReply::Data { offset, size, data } = &data.reply else {
        panic!("{data:?}")
    };
    assert_eq!((*offset, *size, data.as_slice()), (0, 1000, &photo[..]));
}
