//! Old clients keep syncing: the current relay serves a protocol-3 device, driven here by the
//! frames a protocol-3 build sent in a real session (tests/fixtures/protocol-3/, README.md there).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gridsync_core::protocol::{self, ClientMsg, ServerMsg};
use gridsync_core::record::Kind;
use gridsync_e2e::{TestServer, fields, household, sync};
use gridsync_server::accounts::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Who and where the recording was made: the replay creates the same user in the same grid.
const RECORDED_USER: &str = "old-phone";
const RECORDED_GRID: &str = "g1";
/// Variants 0..=6 of `ServerMsg` are protocol 3's, byte for byte (client-core/tests/golden.rs
/// freezes them); 7 and on came with protocol 4 and must never reach a protocol-3 device.
const PROTOCOL_3_SERVER_VARIANTS: u8 = 7;

fn recorded(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/protocol-3")
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap();
    let digits: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &TestServer) -> Ws {
    let url = format!("ws://{}/v1/sync", server.addr);
    tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap()
        .0
}

/// The next whole message's postcard bytes (fragments joined, DEFLATE undone), or `None` once
/// the relay closed or went silent for 10 s.
async fn next_message(ws: &mut Ws) -> Option<Vec<u8>> {
    let mut joined: Vec<u8> = Vec::new();
    for _ in 0..1000 {
        let frame = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => b.to_vec(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Err(_) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
        };
        let whole = match frame[0] {
            2 => {
                let (index, count) = (
                    u16::from_le_bytes([frame[5], frame[6]]),
                    u16::from_le_bytes([frame[7], frame[8]]),
                );
                joined.extend_from_slice(&frame[9..]);
                if index + 1 < count {
                    continue;
                }
                std::mem::take(&mut joined)
            }
            _ => frame,
        };
        return Some(match whole[0] {
            0 => whole[1..].to_vec(),
            1 => {
                let mut plain = Vec::new();
                flate2::read::DeflateDecoder::new(&whole[1..])
                    .read_to_end(&mut plain)
                    .unwrap();
                plain
            }
            other => panic!("frame format {other} is not one protocol 3 knows"),
        });
    }
    None
}

/// A reply as a protocol-3 device reads it: a variant protocol 3 has, and its bytes decode.
fn as_protocol_3(payload: &[u8]) -> ServerMsg {
    assert!(
        payload[0] < PROTOCOL_3_SERVER_VARIANTS,
        "the relay sent a protocol-3 device variant {} of ServerMsg, which it cannot read",
        payload[0]
    );
    postcard_decode(payload)
}

fn postcard_decode(payload: &[u8]) -> ServerMsg {
    let mut frame = vec![0u8];
    frame.extend_from_slice(payload);
    protocol::decode_frame(&frame).unwrap()
}

/// Catch-up larger than one batch (about 300 KiB), so the relay asks for `Pull`.
fn fill_grid(server_device: &mut gridsync_core::Replica) {
    let h = household(server_device, "李四");
    for n in 0..200 {
        let visit = fields(json!({
            "household_id": h,
            "visit_type": "routine",
            "outcome": "met",
            "started_at": format!("2026-10-{:02}T09:00:00Z", 1 + n % 28),
            "observations": format!("{n}: 老人身体状况良好，家中整洁。").repeat(40),
            "people_met": ["户主"],
        }));
        server_device.create(Kind::Visit, visit).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_recorded_protocol_3_session_syncs_with_the_current_relay() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dn, dm) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut current = server
        .worker(dn.path(), "new-phone", &[RECORDED_GRID])
        .await;
    fill_grid(&mut current);
    sync(&mut current).await;
    server
        .user(RECORDED_USER, Role::GridWorker, &[RECORDED_GRID])
        .await;

    // Sign-in: the recorded frame as it was sent.
    let mut ws = connect(&server).await;
    ws.send(Message::Binary(recorded("01-login").into()))
        .await
        .unwrap();
    let login = match next_message(&mut ws).await.as_deref().map(as_protocol_3) {
        Some(ServerMsg::LoginOk(ok)) => ok,
        other => panic!("the recorded sign-in was not answered with LoginOk: {other:?}"),
    };
    assert_eq!(login.username, RECORDED_USER);
    assert_eq!(login.grids, [RECORDED_GRID]);
    let _ = ws.close(None).await;

    // The session: the recorded hello with this relay's token and device id in it.
    let hello = match protocol::decode_frame::<ClientMsg>(&recorded("02-hello")).unwrap() {
        ClientMsg::Hello(mut h) => {
            assert_eq!(h.protocol, 3, "the recording is of a protocol-3 device");
            h.token = login.token.clone();
            h.device_id = login.device_id.clone();
            ClientMsg::Hello(h)
        }
        other => panic!("02-hello holds {other:?}"),
    };
    let upload_frame = recorded("03-upload");
    let upload = match protocol::decode_frame::<ClientMsg>(&upload_frame).unwrap() {
        ClientMsg::Upload(u) => u,
        other => panic!("03-upload holds {other:?}"),
    };
    let mut ws = connect(&server).await;
    for frame in protocol::encode(&hello, 1) {
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    let welcome = match next_message(&mut ws).await.as_deref().map(as_protocol_3) {
        Some(ServerMsg::Welcome(w)) => w,
        other => panic!("no Welcome for the recorded hello: {other:?}"),
    };
    ws.send(Message::Binary(upload_frame.into())).await.unwrap();

    let (mut ack, mut pulled, mut caught_up) = (None, 0, false);
    for _ in 0..100 {
        if ack.is_some() && caught_up {
            break;
        }
        let Some(payload) = next_message(&mut ws).await else {
            break;
        };
        match as_protocol_3(&payload) {
            ServerMsg::Ack(a) => ack = Some(a),
            ServerMsg::Changes(c) if c.more => {
                ws.send(Message::Binary(recorded("04-pull").into()))
                    .await
                    .unwrap();
                pulled += 1;
            }
            ServerMsg::Changes(_) => caught_up = true,
            other => panic!("unexpected reply to a protocol-3 device: {other:?}"),
        }
    }
    let _ = ws.close(None).await;
    let ack = ack.expect("the recorded upload was acknowledged");
    assert_eq!(ack.batch, upload.batch);
    assert!(ack.rejected.is_empty(), "refused: {:?}", ack.rejected);
    assert!(pulled >= 1, "the catch-up took more than one batch");
    assert!(caught_up, "the catch-up ended");

    // A protocol-4 device receives what the protocol-3 device wrote.
    let mut later = server
        .worker(dm.path(), "later-phone", &[RECORDED_GRID])
        .await;
    sync(&mut later).await;
    let mut docs: Vec<&str> = Vec::new();
    for c in &upload.changes {
        if !docs.contains(&c.doc_id.as_str()) {
            docs.push(&c.doc_id);
        }
    }
    assert_eq!(docs.len(), 2, "the recording holds a household and a visit");
    let records: Vec<_> = docs.iter().map(|id| later.get(id).unwrap()).collect();
    let household = records.iter().find(|r| r.kind == Kind::Household).unwrap();
    let visit = records.iter().find(|r| r.kind == Kind::Visit).unwrap();
    assert_eq!(household.fields["head_name"], "王五");
    assert_eq!(household.fields["visit_class"], "ordinary");
    assert_eq!(visit.fields["observations"], "门口有积水，已告知物业。");
    assert_eq!(visit.fields["household_id"], household.id.as_str());
    sync(&mut current).await;
    assert_eq!(
        current.get(&household.id).unwrap().fields["head_name"],
        "王五"
    );

    // WAITS FOR the relay's side of negotiation (Welcome.protocol = min(client, server)), being
    // written on another branch: on main the relay still answers with its own version.
    assert_eq!(
        welcome.protocol, 3,
        "a protocol-3 device is welcomed with protocol 3 (negotiation not on this branch yet)"
    );
}
