//! Exhaustion without (and with) credentials: half-sent headers, floods from one address, big
//! first frames before sign-in, many sessions of one token, many devices of one user. Each is
//! refused or closed, and the relay keeps serving real devices.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::net::SocketAddr;
use std::time::Duration;

use gridsync_core::protocol::{ErrorCode, ServerMsg, close_code, size_text};
use gridsync_core::transport;
use gridsync_e2e::{
    PASSWORD, RawClient, TestServer, frame_header, household, sync, upgrade_by_hand,
};
use gridsync_server::accounts::Role;
use gridsync_server::config::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Reads until the relay closes the connection (or 10 s pass: then `None`). A reset counts as
/// closed; what was read before it is returned.
async fn read_until_closed(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    None
}

async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    read_until_closed(&mut s).await
}

/// Until the relay serves `/healthz` again (it notices closed connections a moment later).
async fn serves_again(addr: SocketAddr) -> bool {
    for _ in 0..250 {
        if get(addr, "/healthz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Waits for the welcome of a session; `None` if the relay refused it instead.
async fn welcomed(c: &mut RawClient) -> Option<()> {
    for _ in 0..20 {
        match c.recv().await? {
            ServerMsg::Welcome(_) => return Some(()),
            ServerMsg::Error(_) => return None,
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connections_that_stop_midway_through_their_headers_are_closed() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    // Slowloris: part of a request's headers, then nothing, on many sockets at once.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /v1/sync HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // And one that connects and says nothing at all.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    for s in &mut slow {
        let answer = read_until_closed(s).await;
        assert!(answer.is_some(), "a half-sent request is closed, not kept");
        assert!(!answer.unwrap().contains(" 101 "), "and never upgraded");
    }
    assert!(read_until_closed(&mut silent).await.is_some());

    // A real device still signs in and syncs.
    let dir = tempfile::tempdir().unwrap();
    let mut r = server.worker(dir.path(), "wang", &["g1"]).await;
    household(&mut r, "照常");
    assert_eq!(sync(&mut r).await.stats.changes_sent, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connections_beyond_the_cap_of_one_address_are_refused_at_once() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections_per_address: 4,
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    // Four idle connections from 127.0.0.1 take every place this address has.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The fifth is answered 503 (or just closed) without being served.
    for _ in 0..3 {
        let answer = get(server.addr, "/healthz").await;
        let answer = answer.expect("refused at once, not left waiting");
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
    }
    // Once they go, the address is served again, and a device syncs.
    held.clear();
    assert!(serves_again(server.addr).await);
    let dir = tempfile::tempdir().unwrap();
    let mut r = server.worker(dir.path(), "wang", &["g1"]).await;
    household(&mut r, "照常");
    assert_eq!(sync(&mut r).await.stats.changes_sent, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_big_first_frame_before_sign_in_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        // Long enough that only the size limit can end these sockets within the test.
        hello_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let first_limit = limits.max_first_message_bytes;
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    // Unauthenticated sockets, each announcing a 1 MiB first frame and sending 64 KiB of it.
    let mut sockets = Vec::new();
    for _ in 0..40 {
        let mut s = upgrade_by_hand(server.addr).await;
        let mut bytes = frame_header(1024 * 1024);
        bytes.extend(std::iter::repeat_n(0u8, 64 * 1024));
        // The relay stops reading at its limit; the rest may sit in socket buffers or fail.
        let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&bytes)).await;
        sockets.push(s);
    }
    for s in sockets {
        let mut c = RawClient::over(s).await;
        let error = c.until_closed().await.expect("told why before the close");
        assert_eq!(error.code, ErrorCode::TooLarge, "{}", error.message);
        assert!(
            error.message.contains(&size_text(first_limit)),
            "the message states the limit: {}",
            error.message
        );
        assert!(matches!(c.closed_with, None | Some(close_code::TOO_LARGE)));
    }

    // A hello well within the limit is still read before sign-in, and devices sync.
    let dir = tempfile::tempdir().unwrap();
    let mut a = server.worker(dir.path(), "wang", &["g1"]).await;
    let id = household(&mut a, "照常");
    assert_eq!(sync(&mut a).await.stats.changes_sent, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut b = server.worker(dir.path(), "li", &["g1"]).await;
    sync(&mut b).await;
    assert!(
        b.get(&id).is_ok(),
        "the other device received the household"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_one_device_may_open_only_a_few_sessions() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_sessions_per_device: 2,
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    let dir = tempfile::tempdir().unwrap();
    let r = server.worker(dir.path(), "wang", &["g1"]).await;
    let token = r.identity().unwrap().token.clone();

    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = RawClient::connect(&server).await;
        c.hello_as(&token, true).await;
        assert!(welcomed(&mut c).await.is_some());
        open.push(c);
    }
    let mut extra = RawClient::connect(&server).await;
    extra.hello_as(&token, true).await;
    let error = extra.until_closed().await.expect("refused with a reason");
    assert_eq!(error.code, ErrorCode::Throttled);
    assert!(
        error.message.contains("2 sync sessions"),
        "says why: {}",
        error.message
    );
    assert_eq!(extra.closed_with, Some(close_code::THROTTLED));

    // Another device syncs as usual.
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = server.worker(other_dir.path(), "li", &["g1"]).await;
    household(&mut other, "照常");
    assert_eq!(sync(&mut other).await.stats.changes_sent, 1);

    // When one session ends, the device gets its place back.
    drop(open.pop());
    let mut back = false;
    for _ in 0..50 {
        let mut c = RawClient::connect(&server).await;
        c.hello_as(&token, false).await;
        if welcomed(&mut c).await.is_some() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "a place frees up once a session ends");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_user_may_enrol_only_a_few_devices() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_devices_per_user: 2,
        ..Limits::default()
    };
    let server = TestServer::start_with(data.path(), any_port(), limits).await;
    server.user("wang", Role::GridWorker, &["g1"]).await;
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = server.device(d1.path(), "wang").await;
    let _second = server.device(d2.path(), "wang").await;

    let mut third = gridsync_core::Replica::open(d3.path()).unwrap();
    let refused = transport::sign_in(&mut third, &server.url(), "wang", PASSWORD, "第三台")
        .await
        .expect_err("a third device is refused");
    let message = refused.to_string();
    assert!(
        message.contains("2 devices") && message.contains("revoke"),
        "says to revoke an old device: {message}"
    );
    assert!(
        third.identity().is_err(),
        "the refused replica is not enrolled"
    );

    // Revoking an old device makes room.
    let first_id = first.identity().unwrap().device_id.clone();
    assert!(server.accounts.revoke_device(&first_id).await.unwrap());
    transport::sign_in(&mut third, &server.url(), "wang", PASSWORD, "第三台")
        .await
        .expect("signs in once an old device is revoked");
    server.stop().await;
}
