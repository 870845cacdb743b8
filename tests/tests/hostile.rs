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
