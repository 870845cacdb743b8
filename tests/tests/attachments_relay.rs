//! The relay's side of attachments (docs/protocol.md §13): real replicas write records whose
//! `attachments` field names a hash and sync them; raw sessions then send and fetch the bytes.

use gridsync_core::Replica;
use gridsync_core::protocol::{
    BLOB_CHUNK, BlobGet, BlobPut, BlobReply, BlobState, ClientMsg, Hash, Hello, ServerMsg,
};
use gridsync_core::record::Kind;
use gridsync_core::record::attachment::hash_text;
use gridsync_core::record::sensitive::private_id;
use gridsync_e2e::{RawClient, TestServer, fields, sync};
use gridsync_server::accounts::Role;
use serde_json::json;
use sha2::{Digest, Sha256};

fn photo(n: usize, seed: u8) -> (Vec<u8>, Hash) {
    let bytes: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
    let hash = Sha256::digest(&bytes).into();
    (bytes, hash)
}

fn named(hash: &Hash, size: usize) -> serde_json::Value {
    json!([{"hash": hash_text(hash), "media_type": "image/jpeg", "size": size, "caption": "楼道"}])
}

/// A patrol in `grid` naming the photo, synced to the relay.
async fn patrol_naming(r: &mut Replica, grid: &str, hash: &Hash, size: usize) -> String {
    let mut f = fields(json!({"grid_id": grid, "started_at": "2026-11-01T20:00:00Z"}));
    f.insert("attachments".into(), named(hash, size));
    let id = r.create(Kind::Patrol, f).expect("patrol").id;
    sync(r).await;
    id
}

/// A raw session of `r`'s device speaking `protocol`.
async fn session(server: &TestServer, r: &Replica, protocol: u16) -> (RawClient, u16) {
    let mut c = RawClient::connect(server).await;
    c.send(&ClientMsg::Hello(Hello {
        protocol,
        client_version: "raw".into(),
        token: r.identity().expect("signed in").token.clone(),
        device_id: "raw".into(),
        cursors: vec![],
        witnesses: vec![],
        live: false,
    }))
    .await;
    for _ in 0..100 {
        if let Some(ServerMsg::Welcome(w)) = c.recv().await {
            return (c, w.protocol);
        }
    }
    panic!("no welcome");
}

async fn put(c: &mut RawClient, hash: &Hash, size: usize, offset: usize, data: &[u8]) -> BlobState {
    c.send(&ClientMsg::BlobPut(BlobPut {
        hash: *hash,
        size: size as u64,
        offset: offset as u64,
        data: data.to_vec().into(),
    }))
    .await;
    for _ in 0..1000 {
        match c.recv().await {
            Some(ServerMsg::Blob(b)) if b.hash == *hash => return b.state,
            Some(_) => continue,
            None => panic!("closed while uploading"),
        }
    }
    panic!("no answer to BlobPut");
}

/// Sends the whole attachment from the relay's prefix on; the last answer.
async fn upload(c: &mut RawClient, hash: &Hash, bytes: &[u8]) -> BlobState {
    let mut state = put(c, hash, bytes.len(), 0, &[]).await;
    for _ in 0..10_000 {
        let BlobState::Have(at) = state else {
            return state;
        };
        let at = at as usize;
        let end = (at + BLOB_CHUNK).min(bytes.len());
        state = put(c, hash, bytes.len(), at, &bytes[at..end]).await;
    }
    state
}

async fn get(c: &mut RawClient, hash: &Hash, offset: u64) -> BlobReply {
    c.send(&ClientMsg::BlobGet(BlobGet {
        hash: *hash,
        offset,
    }))
    .await;
    for _ in 0..1000 {
        match c.recv().await {
            Some(ServerMsg::BlobData(d)) if d.hash == *hash => return d.reply,
            Some(_) => continue,
            None => panic!("closed while downloading"),
        }
    }
    panic!("no answer to BlobGet");
}

/// The whole attachment, or the first answer that is not data.
async fn download(c: &mut RawClient, hash: &Hash) -> Result<Vec<u8>, BlobReply> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match get(c, hash, out.len() as u64).await {
            BlobReply::Data { size, data, .. } => {
                out.extend_from_slice(&data);
                if out.len() as u64 >= size || data.is_empty() {
                    return Ok(out);
                }
            }
            other => return Err(other),
        }
    }
    Ok(out)
}

fn refusal(state: BlobState) -> String {
    match state {
        BlobState::Refused(reason) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn test_attachment_uploaded_whole_is_served_identical_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let mut li = server.worker(&dir.path().join("li"), "li", &["g1"]).await;
    let (bytes, hash) = photo(3 * BLOB_CHUNK + 1000, 1);
    patrol_naming(&mut wang, "g1", &hash, bytes.len()).await;
    // A second record names the same bytes.
    patrol_naming(&mut li, "g1", &hash, bytes.len()).await;

    let (mut reader, _) = session(&server, &li, 4).await;
    assert_eq!(get(&mut reader, &hash, 0).await, BlobReply::NotYet);
    let (mut up, _) = session(&server, &wang, 4).await;
    assert_eq!(upload(&mut up, &hash, &bytes).await, BlobState::Complete);
    assert_eq!(download(&mut reader, &hash).await.unwrap(), bytes);
    // The other record's maker is told the relay has it already, and one file is stored.
    let (mut again, _) = session(&server, &li, 4).await;
    assert_eq!(
        put(&mut again, &hash, bytes.len(), 0, &[]).await,
        BlobState::Complete
    );
    let stats = server.stats().await;
    assert_eq!(stats["attachments"]["stored"], 1, "{stats}");
    assert_eq!(stats["attachments"]["stored_bytes"], bytes.len(), "{stats}");
    let files = std::fs::read_dir(
        dir.path()
            .join("relay/attachments")
            .join(&hash_text(&hash)[..2]),
    )
    .unwrap()
    .count();
    assert_eq!(files, 1);
}

#[tokio::test]
async fn test_wrong_bytes_are_refused_and_nothing_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let (bytes, hash) = photo(BLOB_CHUNK + 10, 2);
    patrol_naming(&mut wang, "g1", &hash, bytes.len()).await;
    let mut wrong = bytes.clone();
    wrong[5] ^= 0xff;
    let (mut c, _) = session(&server, &wang, 4).await;
    let reason = refusal(upload(&mut c, &hash, &wrong).await);
    assert!(reason.contains("do not match"), "{reason}");
    assert_eq!(get(&mut c, &hash, 0).await, BlobReply::NotYet);
    assert_eq!(server.stats().await["attachments"]["not_received"], 1);
}

#[tokio::test]
async fn test_upload_cut_short_is_not_served_and_resumes_from_the_relays_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let mut li = server.worker(&dir.path().join("li"), "li", &["g1"]).await;
    let (bytes, hash) = photo(5 * BLOB_CHUNK, 3);
    patrol_naming(&mut wang, "g1", &hash, bytes.len()).await;
    sync(&mut li).await;
    let (mut first, _) = session(&server, &wang, 4).await;
    assert_eq!(
        put(&mut first, &hash, bytes.len(), 0, &bytes[..BLOB_CHUNK]).await,
        BlobState::Have(BLOB_CHUNK as u64)
    );
    assert_eq!(
        put(
            &mut first,
            &hash,
            bytes.len(),
            BLOB_CHUNK,
            &bytes[BLOB_CHUNK..2 * BLOB_CHUNK]
        )
        .await,
        BlobState::Have(2 * BLOB_CHUNK as u64)
    );
    drop(first);
    let (mut reader, _) = session(&server, &li, 4).await;
    assert_eq!(
        get(&mut reader, &hash, 0).await,
        BlobReply::NotYet,
        "a partial upload is never served"
    );
    // A piece at the wrong offset is answered with the prefix and otherwise ignored.
    let (mut second, _) = session(&server, &wang, 4).await;
    assert_eq!(
        put(
            &mut second,
            &hash,
            bytes.len(),
            3 * BLOB_CHUNK,
            &bytes[3 * BLOB_CHUNK..4 * BLOB_CHUNK]
        )
        .await,
        BlobState::Have(2 * BLOB_CHUNK as u64)
    );
    assert_eq!(
        upload(&mut second, &hash, &bytes).await,
        BlobState::Complete
    );
    assert_eq!(download(&mut reader, &hash).await.unwrap(), bytes);
}

#[tokio::test]
async fn test_attachments_stay_in_the_scope_of_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let mut zhao = server
        .worker(&dir.path().join("zhao"), "zhao", &["g2"])
        .await;
    server.user("chen", Role::Volunteer, &["g1"]).await;
    let chen = server.device(&dir.path().join("chen"), "chen").await;
    let (patrol_photo, patrol_hash) = photo(1000, 4);
    let (id_card, id_hash) = photo(2000, 5);
    patrol_naming(&mut wang, "g1", &patrol_hash, patrol_photo.len()).await;
    // The device side cannot yet name a photo on a household's private part (it is written
    // through the household): the relay's record of one is seeded, beside the serving relay, as
    // a commit would store it.
    use gridsync_server::storage::Commits;
    gridsync_server::storage::SqliteStorage::open(&dir.path().join("relay"))
        .unwrap()
        .commit(gridsync_server::storage::Commit {
            changes: vec![],
            docs: vec![gridsync_server::storage::DocUpdate {
                doc_id: private_id("h-zhang"),
                grid_id: "g1".into(),
                kind: Some(Kind::HouseholdPrivate),
                heads: vec![],
                index: None,
                snapshot: None,
                facts: None,
                parallel: false,
                attachments: Some(vec![gridsync_core::record::attachment::AttachmentRef {
                    hash: id_hash,
                    size: id_card.len() as u64,
                    media_type: "image/jpeg".into(),
                }]),
            }],
            moves: Vec::new(),
        })
        .await
        .unwrap();
    let (mut up, _) = session(&server, &wang, 4).await;
    assert_eq!(
        upload(&mut up, &patrol_hash, &patrol_photo).await,
        BlobState::Complete
    );
    assert_eq!(
        upload(&mut up, &id_hash, &id_card).await,
        BlobState::Complete
    );

    let (mut other, _) = session(&server, &zhao, 4).await;
    assert!(matches!(
        get(&mut other, &patrol_hash, 0).await,
        BlobReply::Refused(_)
    ));
    let (mut volunteer, _) = session(&server, &chen, 4).await;
    assert_eq!(
        download(&mut volunteer, &patrol_hash).await.unwrap(),
        patrol_photo
    );
    assert!(
        matches!(
            get(&mut volunteer, &id_hash, 0).await,
            BlobReply::Refused(_)
        ),
        "a volunteer never gets the photo of an ID card"
    );
    // Another grid's device may not upload what only g1's records name.
    let reason = refusal(put(&mut other, &patrol_hash, patrol_photo.len(), 0, &[]).await);
    assert!(reason.contains("no record you may write"), "{reason}");
    sync(&mut zhao).await;
}

#[tokio::test]
async fn test_unnamed_and_oversized_attachments_are_refused_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let limits = gridsync_server::config::Limits {
        max_attachment_bytes: 4096,
        ..Default::default()
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = TestServer::start_with(&dir.path().join("relay"), addr, limits).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let (big, big_hash) = photo(5000, 6);
    patrol_naming(&mut wang, "g1", &big_hash, big.len()).await;
    let (mut c, _) = session(&server, &wang, 4).await;
    let reason = refusal(put(&mut c, &big_hash, big.len(), 0, &big[..1000]).await);
    assert!(
        reason.contains("附件过大") && reason.contains("too large"),
        "{reason}"
    );
    let (small, small_hash) = photo(100, 7);
    let reason = refusal(put(&mut c, &small_hash, small.len(), 0, &small).await);
    assert!(reason.contains("no record you may write"), "{reason}");
    // The size the device claims is not taken on trust either.
    let reason = refusal(put(&mut c, &big_hash, 100, 0, &big[..100]).await);
    assert!(reason.contains("no record"), "{reason}");
}

#[tokio::test]
async fn test_protocol_3_device_still_syncs_and_is_answered_as_3() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("relay")).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let (bytes, hash) = photo(100, 8);
    patrol_naming(&mut wang, "g1", &hash, bytes.len()).await;
    let (mut old, protocol) = session(&server, &wang, 3).await;
    assert_eq!(protocol, 3);
    old.send(&ClientMsg::BlobGet(BlobGet { hash, offset: 0 }))
        .await;
    let error = old.until_closed().await.expect("refused");
    assert!(error.message.contains("protocol 4"), "{}", error.message);
    let (_, protocol) = session(&server, &wang, 4).await;
    assert_eq!(protocol, 4);
}
