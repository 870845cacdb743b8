//! Garbage, abuse and replays at the sync endpoint: each gets a clear answer, and the relay keeps
//! serving everyone else.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::net::SocketAddr;
use std::time::Duration;

use gridsync_core::Query;
use gridsync_core::protocol::{
    self, ClientMsg, ErrorCode, ServerMsg, UpChange, Upload, close_code,
};
use gridsync_e2e::{RawClient, TestServer, household, sync};
use gridsync_server::config::Limits;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A deflate frame whose payload inflates far beyond any limit (a "zip bomb"), yet small enough
/// (8 KiB) to be read before sign-in.
fn deflate_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(vec![1u8], flate2::Compression::best());
    enc.write_all(&vec![0u8; 8 * 1024 * 1024]).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_malformed_first_messages_are_refused_clearly() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let mut hello_prefix = protocol::encode(
        &ClientMsg::Hello(protocol::Hello {
            protocol: protocol::PROTOCOL_VERSION,
            client_version: "x".into(),
            token: "t".into(),
            device_id: "d".into(),
            cursors: vec![],
            witnesses: vec![],
            live: false,
        }),
        1,
    )
    .remove(0);
    hello_prefix.truncate(6);
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty frame", vec![]),
        ("unknown format byte", vec![7, 1, 2, 3]),
        (
            "absurd varint length",
            vec![0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
        (
            "garbage after deflate byte",
            vec![1, 0xde, 0xad, 0xbe, 0xef],
        ),
        ("truncated hello", hello_prefix),
        ("lone fragment", vec![2, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 9]),
        ("upload before hello", {
            protocol::encode(&ClientMsg::Pull { grid: "g1".into() }, 1).remove(0)
        }),
        ("deflate bomb", deflate_bomb()),
    ];
    let count = inputs.len();
    for (what, bytes) in inputs {
        let mut c = RawClient::connect(&server).await;
        c.send_bytes(bytes).await;
        let error = c.until_closed().await;
        let error = error.unwrap_or_else(|| panic!("{what}: no error message"));
        assert_eq!(
            error.code,
            ErrorCode::BadRequest,
            "{what}: {}",
            error.message
        );
        assert!(!error.message.is_empty());
        assert_eq!(c.closed_with, Some(close_code::PROTOCOL_ERROR), "{what}");
    }
    // A text frame where a binary hello belongs.
    let mut c = RawClient::connect(&server).await;
    {
        use futures_util::SinkExt;
        let url = format!("ws://{}/v1/sync", server.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            "hello".into(),
        ))
        .await
        .unwrap();
        drop(ws);
    }
    c.send_bytes(vec![0xff; 3]).await;
    assert!(c.until_closed().await.is_some());

    // Everyone else is unaffected.
    let dir = tempfile::tempdir().unwrap();
    let mut r = server.worker(dir.path(), "wang", &["g1"]).await;
    household(&mut r, "照常");
    let report = sync(&mut r).await;
    assert_eq!(report.stats.changes_sent, 1);
    eprintln!("malformed first messages tried: {}", count + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_bad_changes_in_an_upload_are_refused_one_by_one() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut r = server.worker(dir.path(), "wang", &["g1"]).await;
    household(&mut r, "张三");
    let good = r.outbox_batch(10, 1 << 20).unwrap().remove(0);
    let token = r.identity().unwrap().token.clone();

    let mut truncated = good.bytes.clone();
    truncated.truncate(good.bytes.len() / 2);
    let mut flipped = good.bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let upload = |bytes: Vec<u8>| UpChange {
        doc_id: good.doc_id.clone(),
        grid: "g1".into(),
        bytes,
    };
    let changes = vec![
        upload(truncated),
        upload(flipped),
        upload(vec![0x85, 0x6f, 0x4a, 0x83]),
        upload(Vec::new()),
        upload(good.bytes.clone()),
    ];
    let mut c = RawClient::connect(&server).await;
    c.hello(&token).await;
    c.send(&ClientMsg::Upload(Upload { batch: 7, changes }))
        .await;
    let mut ack = None;
    for _ in 0..20 {
        match c.recv().await {
            Some(ServerMsg::Ack(a)) => {
                ack = Some(a);
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    let ack = ack.expect("the batch is acknowledged");
    assert_eq!(ack.batch, 7);
    let refused: Vec<u32> = ack.rejected.iter().map(|r| r.index).collect();
    assert_eq!(refused, [0, 1, 2, 3], "{:?}", ack.rejected);
    assert!(ack.rejected.iter().all(|r| r.reason.contains("malformed")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_oversized_messages_close_with_too_large() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_message_bytes: 256 * 1024,
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    let dir = tempfile::tempdir().unwrap();
    let r = server.worker(dir.path(), "wang", &["g1"]).await;
    let token = r.identity().unwrap().token.clone();

    // One WebSocket frame beyond the frame limit.
    let mut c = RawClient::connect(&server).await;
    c.hello(&token).await;
    c.send_bytes(vec![0; protocol::MAX_FRAME * 2]).await;
    c.until_closed().await;
    assert!(
        matches!(
            c.closed_with,
            None | Some(close_code::TOO_LARGE) | Some(close_code::PROTOCOL_ERROR)
        ),
        "{:?}",
        c.closed_with
    );

    // Fragments that add up to more than the relay accepts from a device.
    let mut c = RawClient::connect(&server).await;
    c.hello(&token).await;
    for index in 0..8u16 {
        let mut f = vec![2];
        f.extend_from_slice(&9u32.to_le_bytes());
        f.extend_from_slice(&index.to_le_bytes());
        f.extend_from_slice(&8u16.to_le_bytes());
        f.extend(std::iter::repeat_n(0u8, 64 * 1024));
        c.send_bytes(f).await;
    }
    let error = c.until_closed().await.expect("an error message");
    assert_eq!(error.code, ErrorCode::TooLarge);
    // The close frame may be lost to a reset: the server stops reading while we still send.
    assert!(matches!(c.closed_with, None | Some(close_code::TOO_LARGE)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_silent_and_excess_connections_are_bounded() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_sessions: 20,
        hello_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    let dir = tempfile::tempdir().unwrap();
    let mut r = server.worker(dir.path(), "wang", &["g1"]).await;
    let token = r.identity().unwrap().token.clone();

    // A flood: 20 connections take every session slot and never say anything.
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(RawClient::connect(&server).await);
    }
    let url = format!("ws://{}/v1/sync", server.addr);
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("the 21st session should be refused with 503, got {other:?}"),
    }
    // Each silent connection is closed once its hello is overdue, which frees the slots.
    for c in &mut flood {
        let error = c.until_closed().await.expect("told why");
        assert!(error.message.contains("no hello"), "{}", error.message);
    }
    // A client that says hello and then stalls (say, mid-frame) is closed as idle.
    let mut stalled = RawClient::connect(&server).await;
    stalled.hello(&token).await;
    let error = stalled.until_closed().await.expect("told why");
    assert!(error.message.contains("idle"), "{}", error.message);

    household(&mut r, "照常");
    assert_eq!(sync(&mut r).await.stats.changes_sent, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_live_session_that_stops_answering_is_closed() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ping_interval: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    let dir = tempfile::tempdir().unwrap();
    let r = server.worker(dir.path(), "wang", &["g1"]).await;
    let mut c = RawClient::connect(&server).await;
    c.hello_as(&r.identity().unwrap().token, true).await;
    // Not reading means not answering the relay's pings: the device is gone as far as it knows.
    // The pings themselves must not keep the session alive.
    assert_eq!(server.open_sessions().await, 1);
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if server.open_sessions().await == 0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "the relay still holds a session nobody answers for");
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_flooding_device_is_slowed_while_others_sync() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        messages_per_second: 100,
        message_burst: 20,
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flooder = server.worker(da.path(), "fast", &["g1"]).await;
    let mut calm = server.worker(db.path(), "calm", &["g1"]).await;
    let mut c = RawClient::connect(&server).await;
    c.hello(&flooder.identity().unwrap().token).await;
    let flood = tokio::spawn(async move {
        for _ in 0..500 {
            c.send(&ClientMsg::Pull { grid: "g1".into() }).await;
        }
        c
    });
    for n in 0..5 {
        household(&mut calm, &format!("户{n}"));
        assert_eq!(sync(&mut calm).await.stats.changes_sent, 1);
    }
    let mut c = flood.await.unwrap();
    // The flooder was slowed, not cut off: its session still answers.
    c.send(&ClientMsg::Upload(Upload {
        batch: 1,
        changes: vec![],
    }))
    .await;
    let mut acked = false;
    for _ in 0..3000 {
        match c.recv().await {
            Some(ServerMsg::Ack(_)) => {
                acked = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    assert!(acked, "the flooding session is still served");
    assert_eq!(calm.count(&Query::default()).unwrap(), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_duplicated_and_replayed_uploads_are_harmless() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    for n in 0..3 {
        household(&mut a, &format!("户{n}"));
    }
    let batch: Vec<UpChange> = a
        .outbox_batch(10, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|e| UpChange {
            doc_id: e.doc_id,
            grid: e.grid_id,
            bytes: e.bytes,
        })
        .collect();
    let token = a.identity().unwrap().token.clone();
    let upload = |batch_id: u64, changes: Vec<UpChange>| {
        ClientMsg::Upload(Upload {
            batch: batch_id,
            changes,
        })
    };
    // The same batch twice in one session, then replayed in reverse order in a later one.
    for round in 0..2 {
        let mut c = RawClient::connect(&server).await;
        c.hello(&token).await;
        let mut changes = batch.clone();
        if round == 1 {
            changes.reverse();
        }
        c.send(&upload(1, changes.clone())).await;
        c.send(&upload(2, changes)).await;
        let mut acks = 0;
        for _ in 0..20 {
            match c.recv().await {
                Some(ServerMsg::Ack(ack)) => {
                    assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);
                    acks += 1;
                    if acks == 2 {
                        break;
                    }
                }
                Some(_) => continue,
                None => break,
            }
        }
        assert_eq!(acks, 2);
    }
    // The device's own sync after all that: nothing duplicated anywhere.
    sync(&mut a).await;
    let mut b = server.worker(db.path(), "li", &["g1"]).await;
    let report = sync(&mut b).await;
    assert_eq!(report.stats.changes_received, 3, "each change stored once");
    assert_eq!(b.count(&Query::default()).unwrap(), 3);
    server.stop().await;
}

/// A record whose field `field` holds `levels` maps inside one another (about 1 KB for 300),
/// signed by `actor`: the one-packet crash of issue 15.
fn nested_too_deep(
    actor: &automerge::ActorId,
    id: &str,
    kind: &str,
    field: &str,
    levels: usize,
) -> automerge::Automerge {
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ObjType, ROOT};

    let mut doc = Automerge::new().with_actor(actor.clone());
    let mut tx = doc.transaction();
    for (k, v) in [
        ("id", id),
        ("kind", kind),
        ("grid_id", "g1"),
        ("status", "open"),
        ("head_name", "套娃"),
    ] {
        tx.put(ROOT, k, v).unwrap();
    }
    let mut inner = tx.put_object(ROOT, field, ObjType::Map).unwrap();
    for _ in 1..levels {
        inner = tx.put_object(&inner, "a", ObjType::Map).unwrap();
    }
    // Signed as the worker whose device uploads it, as a real device signs its changes.
    tx.commit_with(automerge::transaction::CommitOptions::default().with_message("wang"));
    doc
}

fn last_change(doc: &automerge::Automerge) -> Vec<u8> {
    doc.get_last_local_change().unwrap().raw_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_change_nested_too_deep_is_refused_and_the_relay_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut wang = server.worker(dw.path(), "wang", &["g1"]).await;
    household(&mut wang, "照常");
    let good = wang.outbox_batch(10, 1 << 20).unwrap().remove(0);
    let actor = automerge::Change::from_bytes(good.bytes.clone())
        .unwrap()
        .actor_id()
        .clone();
    let token = wang.identity().unwrap().token.clone();

    // 300 levels in a field the relay indexes, and 2,000 in a field nobody knows.
    let deep = last_change(&nested_too_deep(
        &actor,
        "h-deep",
        "household",
        "address",
        300,
    ));
    assert!(deep.len() < 2_048, "about 1 KB: {}", deep.len());
    let deeper = last_change(&nested_too_deep(&actor, "c-deeper", "case", "x", 2_000));
    let up = |doc_id: &str, bytes: Vec<u8>| UpChange {
        doc_id: doc_id.into(),
        grid: "g1".into(),
        bytes,
    };
    let mut c = RawClient::connect(&server).await;
    c.hello(&token).await;
    c.send(&ClientMsg::Upload(Upload {
        batch: 1,
        changes: vec![
            up("h-deep", deep),
            up(&good.doc_id, good.bytes.clone()),
            up("c-deeper", deeper),
        ],
    }))
    .await;
    let mut ack = None;
    for _ in 0..20 {
        match c.recv().await {
            Some(ServerMsg::Ack(a)) => {
                ack = Some(a);
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    let ack = ack.expect("the batch is acknowledged: the relay is still up");
    let refused: Vec<u32> = ack.rejected.iter().map(|r| r.index).collect();
    assert_eq!(refused, [0, 2], "{:?}", ack.rejected);
    for (r, field) in ack.rejected.iter().zip(["address", "x"]) {
        assert!(
            r.reason.contains(&format!("`{field}`")) && r.reason.contains("32 levels"),
            "{}",
            r.reason
        );
    }

    // The relay goes on serving another device, which gets the good record only.
    let mut li = server.worker(dl.path(), "li", &["g1"]).await;
    let report = sync(&mut li).await;
    assert_eq!(report.stats.changes_received, 1);
    assert_eq!(li.count(&Query::default()).unwrap(), 1);
    assert!(li.get("h-deep").is_err() && li.get("c-deeper").is_err());
    // And the uploader's own sync still works (its outbox still holds the good change the raw
    // upload sent: the relay takes it again as known).
    household(&mut wang, "又一户");
    let report = sync(&mut wang).await;
    assert_eq!(report.stats.changes_sent, 2);
    assert_eq!(report.stats.rejected, 0);
    assert_eq!(wang.status().unwrap().unsent_changes, 0);
    server.stop().await;
}

/// One HTTP request to the relay; the answer's status, head and body.
async fn http(server: &TestServer, request: String) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut response))
        .await
        .expect("the relay answers")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn get(server: &TestServer, path: &str, cookie: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
        server.addr
    )
}

/// The `name=value` of every cookie an answer sets, joined for a `Cookie` header.
fn cookies_set(head: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .filter_map(|c| c.split(';').next().map(str::to_string))
        .collect()
}

/// Signs in to the dashboard as `user`; returns the session's `Cookie` header value.
async fn dashboard_session(server: &TestServer, user: &str) -> String {
    let (_, head, page) = http(server, get(server, "/login", "")).await;
    let mut cookies = cookies_set(&head);
    let mut form = format!(
        "username={user}&password={}",
        gridsync_e2e::PASSWORD
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    // A sign-in form that carries a CSRF token gets it back.
    if let Some(at) = page.find("name=\"csrf\" value=\"") {
        let token: String = page[at + 19..].chars().take_while(|c| *c != '"').collect();
        form.push_str(&format!("&csrf={token}"));
    }
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        server.addr,
        cookies.join("; "),
        form.len()
    );
    let (status, head, _) = http(server, request).await;
    assert_eq!(status, 303, "signed in: {head}");
    cookies.extend(cookies_set(&head));
    cookies.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_record_stored_nested_too_deep_before_the_limit_is_refused_at_load() {
    use gridsync_core::record::{IndexRow, Kind};
    use gridsync_server::accounts::Role;
    use gridsync_server::storage::{
        Commit, Commits, DocUpdate, NewChange, PackedSnapshot, SqliteStorage,
    };

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("server")).await;
    server.user("zhao", Role::Office, &["m1"]).await;
    let mut li = server.worker(&dir.path().join("li"), "li", &["g1"]).await;
    let fine = household(&mut li, "照常");
    sync(&mut li).await;

    // Poison stored before the limit existed: a case acknowledged with 2,000 levels in an
    // unknown field, indexed (so the dashboard lists it) and snapshotted, written beside the
    // serving relay as an older release had left it.
    let actor = automerge::ActorId::random();
    let doc = nested_too_deep(&actor, "c-poison", "case", "x", 2_000);
    let change = doc.get_last_local_change().unwrap();
    let fields: serde_json::Map<String, serde_json::Value> = [
        ("id", "c-poison"),
        ("kind", "case"),
        ("grid_id", "g1"),
        ("status", "open"),
        ("subject_name", "套娃"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into()))
    .collect();
    SqliteStorage::open(&dir.path().join("server"))
        .unwrap()
        .commit(Commit {
            changes: vec![NewChange {
                grid_id: "g1".into(),
                doc_id: "c-poison".into(),
                kind: Some(Kind::Case),
                hash: change.hash().0,
                bytes: change.raw_bytes().to_vec(),
                device_id: "old-phone".into(),
                worker_id: "li".into(),
                in_snapshot: false,
            }],
            docs: vec![DocUpdate {
                doc_id: "c-poison".into(),
                grid_id: "g1".into(),
                kind: Some(Kind::Case),
                heads: vec![change.hash().0],
                index: Some(IndexRow::from_fields(
                    "c-poison",
                    Kind::Case,
                    "g1",
                    &fields,
                    false,
                )),
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

    // The record page is an error page, every time, and the relay keeps serving.
    let cookie = dashboard_session(&server, "zhao").await;
    for _ in 0..2 {
        let (status, _, page) = http(&server, get(&server, "/records/c-poison", &cookie)).await;
        assert_eq!(status, 500, "{page}");
        assert!(page.contains("数据已损坏"), "{page}");
    }
    let (status, _, page) = http(&server, get(&server, "/records?kind=case", &cookie)).await;
    assert_eq!(status, 200);
    assert!(page.contains("c-poison"), "the list still shows it");
    let (status, _, _) = http(&server, get(&server, &format!("/records/{fine}"), &cookie)).await;
    assert_eq!(status, 200);

    // A device catching up sets the record aside and stores the rest; opening it is an error.
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    sync(&mut wang).await;
    assert_eq!(
        wang.get(&fine).unwrap().str_field("head_name"),
        Some("照常")
    );
    assert!(wang.get("c-poison").is_err());

    // A device that stored it before the limit: opening it is a clear error for that record.
    let replica_file = dir.path().join("wang").join(gridsync_core::store::DB_FILE);
    rusqlite::Connection::open(&replica_file)
        .unwrap()
        .execute(
            "INSERT INTO docs (doc_id, kind, grid_id, snapshot) VALUES ('c-poison', 'case', 'g1', ?1)",
            [gridsync_core::doc::save_snapshot(&doc)],
        )
        .unwrap();
    let err = wang.get("c-poison").unwrap_err();
    assert!(matches!(err, gridsync_core::Error::TooDeep { .. }), "{err}");
    assert!(err.to_string().contains("c-poison"), "{err}");
    assert_eq!(
        wang.get(&fine).unwrap().str_field("head_name"),
        Some("照常")
    );
    // And its syncs go on.
    household(&mut wang, "又一户");
    assert_eq!(sync(&mut wang).await.stats.changes_sent, 1);
    server.stop().await;
}
