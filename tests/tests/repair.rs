//! When the relay cannot vouch for a device's cursor (restored from a backup), the grid is repaired
//! document by document with Automerge's sync protocol: nothing lost, nothing duplicated.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use futures_util::{SinkExt, StreamExt};
use gridsync_core::Query;
use gridsync_core::protocol::{self, ClientMsg, ErrorCode, Hello, ServerMsg, close_code};
use gridsync_core::record::Kind;
use gridsync_e2e::{TestServer, copy_dir, fields, household, snapshot, sync};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_restored_backup_is_repaired_from_the_devices() {
    let data = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let server = TestServer::start(data.path()).await;
    let mut a = server.worker(dirs[0].path(), "wang", &["g1"]).await;
    let mut b = server.worker(dirs[1].path(), "li", &["g1"]).await;
    let h1 = household(&mut a, "备份前");
    sync(&mut a).await;
    sync(&mut b).await;

    // The nightly backup is taken (server stopped, files copied) ...
    let (addr, dir) = (server.addr, server.data_dir.clone());
    server.stop().await;
    copy_dir(&dir, backup.path());
    let server = TestServer::start_on(&dir, addr).await;

    // ... then a day of work reaches the server and both devices.
    let h2 = household(&mut a, "备份后");
    a.update(&h1, fields(json!({"notes": "备份后修改"})))
        .unwrap();
    sync(&mut a).await;
    sync(&mut b).await;
    b.create(
        Kind::Case,
        fields(json!({"case_type": "elderly_care", "household_id": h2, "status": "open"})),
    )
    .unwrap();
    sync(&mut b).await;

    // The disk dies; the backup is restored. The server no longer knows the devices' cursors.
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(backup.path(), &dir);
    let server = TestServer::start_on(&dir, addr).await;

    let report = sync(&mut b).await;
    assert!(
        report.stats.repaired_docs >= 3,
        "b repaired its documents: {report:?}"
    );
    let report = sync(&mut a).await;
    assert!(
        report.stats.repaired_docs >= 1,
        "a repaired too: {report:?}"
    );
    sync(&mut b).await;

    // A brand-new device sees everything the devices held: the server has it all again.
    let mut c = server.worker(dirs[2].path(), "office", &["g1"]).await;
    sync(&mut c).await;
    assert_eq!(c.count(&Query::default()).unwrap(), 3);
    assert_eq!(c.get(&h1).unwrap().fields["notes"], "备份后修改");
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    assert_eq!(snapshot(&mut a), snapshot(&mut c));

    // Once repaired, the next sync is an ordinary catch-up again.
    let again = sync(&mut a).await;
    assert_eq!(again.stats.repaired_docs, 0);
    assert_eq!(again.stats.changes_received, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_incompatible_client_gets_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let url = format!("ws://{}/v1/sync", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let hello = ClientMsg::Hello(Hello {
        protocol: 99,
        client_version: "9.0.0".into(),
        token: "t".into(),
        device_id: "d".into(),
        cursors: vec![],
        witnesses: vec![],
        live: false,
    });
    for frame in protocol::encode(&hello, 1) {
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    let mut error = None;
    let mut close = None;
    for _ in 0..10 {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => error = protocol::decode_frame::<ServerMsg>(&b).ok(),
            Some(Ok(Message::Close(frame))) => {
                close = frame;
                break;
            }
            _ => break,
        }
    }
    match error {
        Some(ServerMsg::Error(e)) => {
            assert_eq!(e.code, ErrorCode::IncompatibleVersion);
            assert!(e.message.contains("update the app"), "{}", e.message);
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    assert_eq!(
        u16::from(close.expect("close frame").code),
        close_code::INCOMPATIBLE_VERSION
    );

    // The server keeps serving everyone else.
    let dir = tempfile::tempdir().unwrap();
    let mut r = server.worker(dir.path(), "wang", &["g1"]).await;
    household(&mut r, "照常");
    sync(&mut r).await;
    server.stop().await;
}
