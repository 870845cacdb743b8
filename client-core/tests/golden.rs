//! Golden bytes of every wire message: one fixture per variant of `ClientMsg` and `ServerMsg`,
//! of the enums that travel inside them (`ErrorCode`, `BlobState`, `BlobReply`) and of
//! `DocChanges` in its compact form with and without a snapshot (tests/golden/wire/).
//!
//! Each sample is encoded and compared byte for byte with its fixture, and the fixture is
//! decoded back to the sample. A new variant does not compile until `client_name` or
//! `server_name` names it, and fails until it has a sample and a fixture. Regenerate on purpose
//! with `GRIDSYNC_BLESS=1 cargo test -p gridsync-core --test golden` (docs/protocol.md §12).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

#[path = "golden/fixture.rs"]
mod fixture;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ROOT};
use gridsync_core::protocol::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

const WIRE: &str = "wire";

/// Two changes of one record, the second depending on the first, and the record saved after
/// both: made with a fixed actor and time, so the bytes are the same on every run.
struct History {
    first: Vec<u8>,
    second: Vec<u8>,
    saved: Vec<u8>,
}

fn history() -> History {
    let mut doc = Automerge::new().with_actor(ActorId::from(&[0xa1u8; 16][..]));
    let mut changes = Vec::new();
    for (field, value) in [("head_name", "张三"), ("status", "open")] {
        let mut tx = doc.transaction();
        tx.put(ROOT, field, value).unwrap();
        tx.commit_with(CommitOptions::default().with_time(1_790_000_000));
        changes.push(doc.get_last_local_change().unwrap().raw_bytes().to_vec());
    }
    let saved = doc.save();
    let second = changes.pop().unwrap();
    let first = changes.pop().unwrap();
    History {
        first,
        second,
        saved,
    }
}

fn cursor(seq: u64) -> Cursor {
    Cursor {
        grid: "370102-grid-07".into(),
        seq,
        hash: Some([0x5c; 32]),
    }
}

fn doc_changes_plain(h: &History) -> DocChanges {
    DocChanges::changes(
        "hh-0001",
        vec![
            ByteBuf::from(h.first.clone()),
            ByteBuf::from(h.second.clone()),
        ],
    )
}

fn doc_changes_snapshot(h: &History) -> DocChanges {
    DocChanges {
        doc_id: "hh-0002".into(),
        snapshot: Some(Snapshot {
            bytes: ByteBuf::from(h.saved.clone()),
            entries: 2,
        }),
        changes: vec![],
    }
}

/// The fixture's name of a device message. No wildcard: a new variant is a compile error here.
fn client_name(m: &ClientMsg) -> &'static str {
    match m {
        ClientMsg::Hello(_) => "client_hello",
        ClientMsg::Upload(_) => "client_upload",
        ClientMsg::Pull { .. } => "client_pull",
        ClientMsg::DocSync(_) => "client_doc_sync",
        ClientMsg::Login(_) => "client_login",
        ClientMsg::BlobPut(_) => "client_blob_put",
        ClientMsg::BlobGet(_) => "client_blob_get",
        ClientMsg::SignIn(_) => "client_sign_in",
    }
}

/// The fixture's name of a relay message. No wildcard: a new variant is a compile error here.
fn server_name(m: &ServerMsg) -> &'static str {
    match m {
        ServerMsg::Welcome(_) => "server_welcome",
        ServerMsg::Changes(_) => "server_changes",
        ServerMsg::Ack(_) => "server_ack",
        ServerMsg::Error(_) => "server_error",
        ServerMsg::RepairDocs(_) => "server_repair_docs",
        ServerMsg::DocSync(_) => "server_doc_sync",
        ServerMsg::LoginOk(_) => "server_login_ok",
        ServerMsg::Blob(_) => "server_blob",
        ServerMsg::BlobData(_) => "server_blob_data",
        ServerMsg::Zone(_) => "server_zone",
    }
}

fn error_code_name(c: ErrorCode) -> &'static str {
    match c {
        ErrorCode::IncompatibleVersion => "error_code_incompatible_version",
        ErrorCode::BadRequest => "error_code_bad_request",
        ErrorCode::TooLarge => "error_code_too_large",
        ErrorCode::Forbidden => "error_code_forbidden",
        ErrorCode::Internal => "error_code_internal",
        ErrorCode::ShuttingDown => "error_code_shutting_down",
        ErrorCode::Unauthorized => "error_code_unauthorized",
        ErrorCode::Revoked => "error_code_revoked",
        ErrorCode::Throttled => "error_code_throttled",
    }
}

fn blob_state_name(s: &BlobState) -> &'static str {
    match s {
        BlobState::Have(_) => "blob_state_have",
        BlobState::Complete => "blob_state_complete",
        BlobState::Refused(_) => "blob_state_refused",
    }
}

fn blob_reply_name(r: &BlobReply) -> &'static str {
    match r {
        BlobReply::Data { .. } => "blob_reply_data",
        BlobReply::NotYet => "blob_reply_not_yet",
        BlobReply::Refused(_) => "blob_reply_refused",
    }
}

/// One sample of every device message, in variant order.
fn client_samples(h: &History) -> Vec<ClientMsg> {
    vec![
        ClientMsg::Hello(Hello {
            protocol: 3,
            client_version: "0.1.0".into(),
            token: "7f".repeat(32),
            device_id: "0190a6f2-7b3c-7d4e-8f90-123456789abc".into(),
            cursors: vec![cursor(41)],
            witnesses: vec![cursor(40)],
            live: true,
        }),
        ClientMsg::Upload(Upload {
            batch: 3,
            changes: vec![UpChange {
                doc_id: "hh-0001".into(),
                grid: "370102-grid-07".into(),
                bytes: h.first.clone(),
            }],
        }),
        ClientMsg::Pull {
            grid: "370102-grid-07".into(),
        },
        ClientMsg::DocSync(DocSync {
            grid: "370102-grid-07".into(),
            doc_id: "hh-0001".into(),
            message: Some(ByteBuf::from(vec![0x42, 0x01, 0x02])),
            refused: None,
        }),
        ClientMsg::Login(LoginRequest {
            username: "wang".into(),
            password: "correct horse 电池".into(),
            device_name: "王的手机".into(),
            actor: "a1".repeat(16),
        }),
        ClientMsg::BlobPut(BlobPut {
            hash: [0xb1; 32],
            size: 70_000,
            offset: 65_536,
            data: ByteBuf::from(vec![0xff, 0xd8, 0xff, 0xe0]),
        }),
        ClientMsg::BlobGet(BlobGet {
            hash: [0xb1; 32],
            offset: 65_536,
        }),
        ClientMsg::SignIn(SignIn {
            protocol: 5,
            login: LoginRequest {
                username: "wang".into(),
                password: "correct horse 电池".into(),
                device_name: "王的手机".into(),
                actor: "a1".repeat(16),
            },
        }),
    ]
}

/// One sample of every relay message, in variant order.
fn server_samples(h: &History) -> Vec<ServerMsg> {
    vec![
        ServerMsg::Welcome(Welcome {
            protocol: 3,
            server_version: "0.1.0".into(),
            server_id: "0190a6f2-0000-7000-8000-000000000001".into(),
            grids: vec![GridStatus {
                grid: "370102-grid-07".into(),
                head_seq: 42,
                cursor_known: true,
            }],
            max_frame: MAX_FRAME as u32,
            max_batch_bytes: MAX_BATCH_BYTES as u32,
            max_batch_changes: MAX_BATCH_CHANGES as u32,
        }),
        ServerMsg::Changes(Changes {
            grid: "370102-grid-07".into(),
            docs: vec![doc_changes_plain(h)],
            cursor: cursor(42),
            more: false,
        }),
        ServerMsg::Ack(Ack {
            batch: 3,
            rejected: vec![Rejected {
                doc_id: "hh-0003".into(),
                index: 1,
                reason: "无权修改 not allowed".into(),
            }],
            witnesses: vec![cursor(43)],
        }),
        ServerMsg::Error(ErrorMsg {
            code: ErrorCode::IncompatibleVersion,
            message: "请升级应用 update the app".into(),
        }),
        ServerMsg::RepairDocs(RepairDocs {
            grid: "370102-grid-07".into(),
            docs: vec![DocHeads {
                doc_id: "hh-0001".into(),
                heads: vec![[0x3d; 32]],
            }],
            more: true,
            head: cursor(42),
        }),
        ServerMsg::DocSync(DocSync {
            grid: "370102-grid-07".into(),
            doc_id: "hh-0001".into(),
            message: None,
            refused: Some("无权修改 not allowed".into()),
        }),
        ServerMsg::LoginOk(LoginResponse {
            device_id: "0190a6f2-7b3c-7d4e-8f90-123456789abc".into(),
            token: "7f".repeat(32),
            user_id: "0190a6f2-0000-7000-8000-0000000000aa".into(),
            username: "wang".into(),
            display_name: "王芳".into(),
            role: "grid_worker".into(),
            grids: vec!["370102-grid-07".into()],
        }),
        ServerMsg::Blob(BlobStatus {
            hash: [0xb1; 32],
            state: BlobState::Have(65_536),
        }),
        ServerMsg::BlobData(BlobData {
            hash: [0xb1; 32],
            reply: BlobReply::NotYet,
        }),
        // West of UTC: the offset is a zigzag varint, negative values included.
        ServerMsg::Zone(CommunityZone {
            utc_offset_minutes: -300,
        }),
    ]
}

fn error_codes() -> Vec<ErrorCode> {
    vec![
        ErrorCode::IncompatibleVersion,
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::Forbidden,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::Unauthorized,
        ErrorCode::Revoked,
        ErrorCode::Throttled,
    ]
}

fn blob_states() -> Vec<BlobState> {
    vec![
        BlobState::Have(65_536),
        BlobState::Complete,
        BlobState::Refused("附件过大 attachment too large".into()),
    ]
}

fn blob_replies() -> Vec<BlobReply> {
    vec![
        BlobReply::Data {
            offset: 0,
            size: 4,
            data: ByteBuf::from(vec![0xff, 0xd8, 0xff, 0xe0]),
        },
        BlobReply::NotYet,
        BlobReply::Refused("无权查看 not allowed".into()),
    ]
}

/// A message as it goes on the wire: the whole frame (format byte and postcard payload).
fn frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let frames = encode(msg, 1);
    assert_eq!(frames.len(), 1, "a sample fits one frame");
    frames.into_iter().next().unwrap_or_default()
}

/// Checks one sample: its bytes against the fixture, and the fixture decoded back to it.
fn golden<T, E, D>(failures: &mut Vec<String>, name: &str, what: &str, value: &T, enc: E, dec: D)
where
    T: PartialEq + std::fmt::Debug,
    E: Fn(&T) -> Vec<u8>,
    D: Fn(&[u8]) -> Result<T, String>,
{
    match fixture::check(WIRE, name, what, &enc(value)) {
        Err(e) => failures.push(e),
        Ok(fixed) => match dec(&fixed) {
            Ok(back) if back == *value => {}
            Ok(back) => failures.push(format!("{name}: decodes to {back:?}, not {value:?}")),
            Err(e) => failures.push(format!("{name}: does not decode: {e}")),
        },
    }
}

fn decode_frame_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_frame(bytes).map_err(|e| e.to_string())
}

fn postcard_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

fn plain<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap()
}

/// The samples of an enum are its variants in order, one each, and nothing comes after the last:
/// postcard writes the variant's index first, and the index after the last is refused as unknown.
fn covers_every_variant<T: DeserializeOwned>(
    failures: &mut Vec<String>,
    what: &str,
    payloads: &[Vec<u8>],
) {
    let indices: Vec<u8> = payloads.iter().map(|p| p[0]).collect();
    let expected: Vec<u8> = (0..payloads.len() as u8).collect();
    if indices != expected {
        failures.push(format!(
            "{what}: samples are variants {indices:?}, not one each in order"
        ));
    }
    // An index past the last variant fails on the index itself (a custom serde error), not on a
    // payload it would have to read.
    let next = [payloads.len() as u8];
    match postcard::from_bytes::<T>(&next) {
        Err(postcard::Error::SerdeDeCustom) => {}
        other => failures.push(format!(
            "{what} has a variant {} without a sample: {:?}",
            payloads.len(),
            other.err()
        )),
    }
}

#[test]
fn test_every_wire_message_matches_its_golden_bytes() {
    let h = history();
    let mut failures = Vec::new();
    let mut names = Vec::new();

    let clients = client_samples(&h);
    for m in &clients {
        let name = client_name(m);
        names.push(name.to_string());
        let what = format!("ClientMsg: {name}, a whole frame (format byte 0, then postcard)");
        golden(
            &mut failures,
            name,
            &what,
            m,
            frame,
            decode_frame_as::<ClientMsg>,
        );
    }
    let payloads: Vec<Vec<u8>> = clients.iter().map(plain).collect();
    covers_every_variant::<ClientMsg>(&mut failures, "ClientMsg", &payloads);

    let servers = server_samples(&h);
    for m in &servers {
        let name = server_name(m);
        names.push(name.to_string());
        let what = format!("ServerMsg: {name}, a whole frame (format byte 0, then postcard)");
        golden(
            &mut failures,
            name,
            &what,
            m,
            frame,
            decode_frame_as::<ServerMsg>,
        );
    }
    let payloads: Vec<Vec<u8>> = servers.iter().map(plain).collect();
    covers_every_variant::<ServerMsg>(&mut failures, "ServerMsg", &payloads);

    let codes = error_codes();
    for c in &codes {
        let name = error_code_name(*c);
        names.push(name.to_string());
        golden(
            &mut failures,
            name,
            "ErrorCode, postcard",
            c,
            plain,
            postcard_as::<ErrorCode>,
        );
    }
    let payloads: Vec<Vec<u8>> = codes.iter().map(plain).collect();
    covers_every_variant::<ErrorCode>(&mut failures, "ErrorCode", &payloads);

    let states = blob_states();
    for s in &states {
        let name = blob_state_name(s);
        names.push(name.to_string());
        golden(
            &mut failures,
            name,
            "BlobState, postcard",
            s,
            plain,
            postcard_as::<BlobState>,
        );
    }
    let payloads: Vec<Vec<u8>> = states.iter().map(plain).collect();
    covers_every_variant::<BlobState>(&mut failures, "BlobState", &payloads);

    let replies = blob_replies();
    for r in &replies {
        let name = blob_reply_name(r);
        names.push(name.to_string());
        golden(
            &mut failures,
            name,
            "BlobReply, postcard",
            r,
            plain,
            postcard_as::<BlobReply>,
        );
    }
    let payloads: Vec<Vec<u8>> = replies.iter().map(plain).collect();
    covers_every_variant::<BlobReply>(&mut failures, "BlobReply", &payloads);

    for (name, what, d) in [
        (
            "doc_changes_compact",
            "DocChanges without a snapshot: two changes, the second's dependency by position",
            doc_changes_plain(&h),
        ),
        (
            "doc_changes_snapshot",
            "DocChanges with a snapshot (a saved document) and no changes after it",
            doc_changes_snapshot(&h),
        ),
    ] {
        names.push(name.to_string());
        golden(
            &mut failures,
            name,
            what,
            &d,
            plain,
            postcard_as::<DocChanges>,
        );
    }

    // The second change's dependency goes by position (compact, 1 dependency, earlier, 0).
    let items = compact::compact(&doc_changes_plain(&h).changes);
    if !items[1].starts_with(&[1, 1, 1, 0]) {
        failures.push("doc_changes_compact: the dependency was not compacted".into());
    }

    names.sort();
    let present = fixture::names(WIRE);
    if !fixture::blessing() && present != names {
        failures.push(format!(
            "fixtures without a sample or samples without a fixture:\n  fixtures {present:?}\n  samples  {names:?}"
        ));
    }
    eprintln!("{} wire fixtures", names.len());
    fixture::report(&failures);
}

/// Protocol 5 appended its two variants after every protocol-4 one, which keep their bytes.
#[test]
fn test_protocol_5_appended_variants_after_every_protocol_4_one() {
    let h = history();
    let clients: Vec<&str> = client_samples(&h).iter().map(client_name).collect();
    assert_eq!(
        clients[5..],
        ["client_blob_put", "client_blob_get", "client_sign_in"]
    );
    let servers: Vec<&str> = server_samples(&h).iter().map(server_name).collect();
    assert_eq!(
        servers[7..],
        ["server_blob", "server_blob_data", "server_zone"]
    );
}

/// What a protocol-3 device sends and receives is the same in protocol 4: protocol 4 only
/// appended variants. The fixtures of the protocol-3 messages are the protocol-3 bytes.
#[test]
fn test_protocol_4_appended_variants_after_every_protocol_3_one() {
    let h = history();
    let client_v3 = [
        "client_hello",
        "client_upload",
        "client_pull",
        "client_doc_sync",
        "client_login",
    ];
    let clients: Vec<&str> = client_samples(&h).iter().map(client_name).collect();
    assert_eq!(&clients[..client_v3.len()], client_v3);
    let server_v3 = [
        "server_welcome",
        "server_changes",
        "server_ack",
        "server_error",
        "server_repair_docs",
        "server_doc_sync",
        "server_login_ok",
    ];
    let servers: Vec<&str> = server_samples(&h).iter().map(server_name).collect();
    assert_eq!(&servers[..server_v3.len()], server_v3);
}
