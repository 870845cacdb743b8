//! Photos and files on the dashboard: the record page's gallery, the attachment and thumbnail
//! routes and their scope, the office's upload, the export's count.

use image::{ImageEncoder, RgbImage};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::pages::{upload, worker};
use super::*;
use crate::dashboard::attachments;
use crate::dashboard::auth::Staff;

/// A PNG of `w` × `h` pixels.
pub(super) fn png(w: u32, h: u32, shade: u8) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, shade])
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

pub(super) fn hash_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A record's entry for these bytes.
pub(super) fn entry(bytes: &[u8], media_type: &str, caption: &str) -> Value {
    json!({
        "hash": hash_of(bytes), "media_type": media_type, "size": bytes.len(),
        "caption": caption, "at": "2026-11-30T02:00:00Z", "by": "wang",
    })
}

/// The relay receives every byte of an attachment, as a phone's upload ends.
pub(super) async fn arrive(state: &AppState, bytes: &[u8]) {
    let hash = gridsync_core::record::attachment::parse_hash(&hash_of(bytes)).unwrap();
    let mut at = 0;
    for piece in bytes.chunks(gridsync_core::protocol::BLOB_CHUNK) {
        state.blobs.append(&hash, at, piece).await.unwrap();
        at += piece.len() as u64;
    }
    let done = state.blobs.finish(&hash).await.unwrap();
    assert_eq!(
        done,
        crate::storage::blobs::Finished::Complete(bytes.len() as u64)
    );
}

/// A record of `kind` with these fields, uploaded by wang's phone.
pub(super) async fn record(state: &AppState, kind: &str, id: &str, grid: &str, fields: Value) {
    let mut all: Map<String, Value> = json!({
        "id": id, "kind": kind, "grid_id": grid, "created_by": "wang",
        "created_at": "2026-11-30T01:00:00Z",
    })
    .as_object()
    .cloned()
    .unwrap();
    all.extend(fields.as_object().cloned().unwrap());
    let kind: gridsync_core::record::Kind = kind.parse().unwrap();
    let mut doc = Automerge::new().with_actor(ActorId::from(&ACTOR[..]));
    let mut tx = doc.transaction();
    gridsync_core::doc::reconcile_root(&mut tx, kind, &Map::new(), &all).unwrap();
    tx.commit_with(CommitOptions::default().with_message("wang"));
    let who = Identity {
        actors: vec![hex::encode(ACTOR)],
        ..worker("wang", ACTOR, grid)
    };
    upload(state, &who, id, grid, &doc, &[]).await;
}

pub(super) async fn case_with(state: &AppState, id: &str, grid: &str, attachments: Value) {
    let fields = json!({
        "case_type": "low_income", "subject_name": "张三", "status": "open",
        "actions": [], "attachments": attachments,
    });
    record(state, "case", id, grid, fields).await;
}

#[tokio::test]
async fn test_record_page_shows_a_thumbnail_for_an_arrived_photo_and_says_when_one_has_not() {
    let (_dir, state) = server().await;
    let (here, away) = (png(800, 600, 10), png(640, 480, 200));
    let list = json!([
        entry(&here, "image/png", "门口堆物"),
        entry(&away, "image/png", "楼道")
    ]);
    case_with(&state, "c1", "g1", list).await;
    arrive(&state, &here).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (status, _, page) = send(&state, get("/records/c1", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let thumb = format!("src=\"/attachments/{}/thumb\"", hash_of(&here));
    assert!(page.contains(&thumb), "{page}");
    assert!(page.contains(&format!("href=\"/attachments/{}\"", hash_of(&here))));
    assert!(page.contains("门口堆物") && page.contains("楼道"));
    assert!(page.contains("照片尚未收到"), "{page}");
    assert!(
        !page.contains(&format!("/attachments/{}/thumb", hash_of(&away))),
        "no broken image for the photo not received"
    );
    let (_, _, page) = send(&state, get("/records/c1", &format!("{cookie}; gs_lang=en"))).await;
    assert!(page.contains("Photo not yet received"));
}

#[tokio::test]
async fn test_thumbnail_is_a_jpeg_of_at_most_320_px_and_the_full_image_its_bytes() {
    let (dir, state) = server().await;
    let photo = png(1600, 1200, 60);
    case_with(&state, "c1", "g1", json!([entry(&photo, "image/png", "")])).await;
    arrive(&state, &photo).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let hash = hash_of(&photo);
    let res = crate::router(state.clone())
        .oneshot(get(&format!("/attachments/{hash}/thumb"), &cookie))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "image/jpeg");
    let body = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    let img = image::load_from_memory_with_format(&body, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (320, 240));
    assert!(
        crate::dashboard::thumbs::path(dir.path(), &hash).exists(),
        "kept under the data directory"
    );

    let res = crate::router(state.clone())
        .oneshot(get(&format!("/attachments/{hash}"), &cookie))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "image/png");
    assert_eq!(h[header::CONTENT_LENGTH], photo.len().to_string().as_str());
    assert!(
        h[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let body = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    assert_eq!(&body[..], &photo[..]);
}

#[tokio::test]
async fn test_a_user_of_another_grid_gets_not_found_for_the_hash() {
    let (_dir, state) = server().await;
    let photo = png(64, 64, 1);
    case_with(&state, "c9", "g9", json!([entry(&photo, "image/png", "")])).await;
    arrive(&state, &photo).await;
    let other = state
        .accounts
        .add_user(NewUser {
            username: "sun".into(),
            display_name: "孙".into(),
            role: Role::Office,
            password_hash: accounts::hash_password("pw-2026").unwrap(),
        })
        .await
        .unwrap();
    state
        .accounts
        .set_user_areas(&other.id, &["m2".into()])
        .await
        .unwrap();
    let hash = hash_of(&photo);
    let (zhao, _) = sign_in(&state, "zhao").await;
    for path in [
        format!("/attachments/{hash}"),
        format!("/attachments/{hash}/thumb"),
    ] {
        let (status, _, _) = send(&state, get(&path, &zhao)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (sun, _) = sign_in(&state, "sun").await;
    let (status, _, _) = send(&state, get(&format!("/attachments/{hash}"), &sun)).await;
    assert_eq!(status, StatusCode::OK, "the grid's own office gets it");
}

#[tokio::test]
async fn test_a_household_private_attachment_is_not_for_a_volunteers_scope() {
    let (_dir, state) = server().await;
    let card = png(32, 20, 5);
    record(
        &state,
        "household",
        "h1",
        "g1",
        json!({"head_name": "李四", "household_type": "registered", "residents": [], "attachments": []}),
    )
    .await;
    record(
        &state,
        "household_private",
        "h1~private",
        "g1",
        json!({"household_id": "h1", "residents": [], "attachments": [entry(&card, "image/png", "身份证")]}),
    )
    .await;
    arrive(&state, &card).await;
    let hash = gridsync_core::record::attachment::parse_hash(&hash_of(&card)).unwrap();
    let scope = |username: &str, role: Role| Staff {
        user: crate::accounts::User {
            id: format!("u-{username}"),
            username: username.into(),
            display_name: username.into(),
            role,
            password_hash: String::new(),
            active: true,
            scope_version: 0,
        },
        csrf: String::new(),
        grids: vec!["g1".into()],
        former_grids: vec![],
        names: Default::default(),
        lang: crate::dashboard::Lang::Zh,
        path: "/".into(),
        session_hash: vec![],
    };
    let office = attachments::named(&state, &scope("zhao", Role::Office), &hash)
        .await
        .unwrap();
    assert_eq!(office.map(|a| a.caption).as_deref(), Some("身份证"));
    let volunteer = attachments::named(&state, &scope("vol", Role::Volunteer), &hash)
        .await
        .unwrap();
    assert!(volunteer.is_none(), "{volunteer:?}");
    // The household page shows the private part's photo to the office, marked sensitive.
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (_, _, page) = send(&state, get("/records/h1", &cookie)).await;
    assert!(
        page.contains(&format!("/attachments/{}/thumb", hash_of(&card))),
        "{page}"
    );
    assert!(page.contains("敏感信息"));
}

/// A part of a multipart form: name, file name, content type, bytes.
type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart form body and its content type.
pub(super) fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "gsboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file, ty, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disp = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = file {
            disp.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(disp.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(t) = ty {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post_multipart(path: &str, cookie: &str, form: (String, Vec<u8>)) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, form.0)
        .body(Body::from(form.1))
        .unwrap()
}

#[tokio::test]
async fn test_office_attaches_a_file_and_the_record_names_it_with_its_bytes() {
    let (_dir, state) = server().await;
    case_with(&state, "c1", "g1", json!([])).await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let photo = png(900, 300, 77);
    let hash = hash_of(&photo);
    // Without the session's token nothing is stored.
    let forged = multipart(&[("file", Some("申请表.png"), Some("image/png"), &photo)]);
    let (status, _, _) = send(
        &state,
        post_multipart("/records/c1/attach", &cookie, forged),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        !attachments::arrived(&state, crate::dashboard::Lang::Zh, &hash)
            .await
            .unwrap()
    );

    let form = multipart(&[
        ("csrf", None, None, csrf.as_bytes()),
        ("caption", None, None, "低保申请表".as_bytes()),
        (
            "file",
            Some("申请表.png"),
            Some("application/octet-stream"),
            &photo,
        ),
    ]);
    let (status, headers, _) =
        send(&state, post_multipart("/records/c1/attach", &cookie, form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/records/c1?saved=1");
    let doc = state.relay.document("c1").await.unwrap().unwrap().doc;
    let fields = gridsync_core::doc::read_root(&doc);
    let named = &fields["attachments"][0];
    assert_eq!(named["hash"], hash.as_str());
    assert_eq!(named["media_type"], "image/png", "known by its bytes");
    assert_eq!(named["size"], photo.len() as u64);
    assert_eq!(
        (named["width"].as_u64(), named["height"].as_u64()),
        (Some(900), Some(300))
    );
    assert_eq!(named["caption"], "低保申请表");
    assert_eq!(named["name"], "申请表.png");
    assert_eq!(named["by"], "zhao");
    assert!(
        attachments::arrived(&state, crate::dashboard::Lang::Zh, &hash)
            .await
            .unwrap()
    );
    let raw = gridsync_core::record::attachment::parse_hash(&hash).unwrap();
    let held = state
        .relay
        .attachments()
        .stored_blob(&raw)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.size,
        photo.len() as u64,
        "counted like a phone's upload"
    );
    let (_, _, page) = send(&state, get("/records/c1", &cookie)).await;
    assert!(
        page.contains(&format!("/attachments/{hash}/thumb")),
        "{page}"
    );
    assert!(page.contains("enctype=\"multipart/form-data\""));
}

#[tokio::test]
async fn test_a_file_over_the_relays_limit_is_refused_and_stores_nothing() {
    let (_dir, state) = server_with(|c| c.limits.max_attachment_bytes = 1000).await;
    case_with(&state, "c1", "g1", json!([])).await;
    let (cookie, csrf) = sign_in(&state, "zhao").await;
    let big = vec![7u8; 5000];
    let form = multipart(&[
        ("csrf", None, None, csrf.as_bytes()),
        (
            "file",
            Some("big.bin"),
            Some("application/octet-stream"),
            &big,
        ),
    ]);
    let (status, headers, _) =
        send(&state, post_multipart("/records/c1/attach", &cookie, form)).await;
    let (_, page) = follow_error(&state, status, &headers, &cookie).await;
    assert!(page.contains("文件太大"), "{page}");
    assert!(
        !attachments::arrived(&state, crate::dashboard::Lang::Zh, &hash_of(&big))
            .await
            .unwrap()
    );
    let doc = state.relay.document("c1").await.unwrap().unwrap().doc;
    assert_eq!(
        gridsync_core::doc::read_root(&doc)["attachments"],
        json!([])
    );
}

#[tokio::test]
async fn test_export_lists_the_attachment_count() {
    let (_dir, state) = server().await;
    let (a, b) = (png(10, 10, 1), png(10, 10, 2));
    case_with(
        &state,
        "c1",
        "g1",
        json!([entry(&a, "image/png", ""), entry(&b, "image/png", "")]),
    )
    .await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (status, _, csv) = send(&state, get("/records/export.csv?kind=case", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header
        .iter()
        .position(|h| *h == "附件数")
        .expect("a count column");
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(row[at], "2", "{csv}");
}

/// Adds a photo to the record in `doc` as its author's phone does, signed `by`.
fn add_photo(doc: &mut Automerge, kind: gridsync_core::record::Kind, by: &str, photo: Value) {
    let before = gridsync_core::doc::read_root(doc);
    let mut after = before.clone();
    after["attachments"].as_array_mut().unwrap().push(photo);
    let mut tx = doc.transaction();
    gridsync_core::doc::reconcile_root(&mut tx, kind, &before, &after).unwrap();
    tx.commit_with(CommitOptions::default().with_message(by));
}

#[tokio::test]
async fn test_review_page_shows_the_photos_each_side_added_at_once() {
    let (_dir, state) = server().await;
    let (wang, li) = (
        worker("wang", ACTOR, "g1"),
        worker("li", super::pages::LI, "g1"),
    );
    case_with(&state, "c1", "g1", json!([])).await;
    let mut doc = state.relay.document("c1").await.unwrap().unwrap().doc;
    doc.set_actor(ActorId::from(&ACTOR[..]));
    let base = doc.get_heads();
    let mut theirs = doc.fork().with_actor(ActorId::from(&super::pages::LI[..]));
    let (mine, other) = (png(400, 300, 1), png(300, 400, 2));
    let kind = gridsync_core::record::Kind::Case;
    add_photo(&mut doc, kind, "wang", entry(&mine, "image/png", "王拍的"));
    add_photo(
        &mut theirs,
        kind,
        "li",
        entry(&other, "image/png", "李拍的"),
    );
    upload(&state, &wang, "c1", "g1", &doc, &base).await;
    upload(&state, &li, "c1", "g1", &theirs, &base).await;
    arrive(&state, &mine).await;
    let (cookie, _) = sign_in(&state, "zhao").await;
    let (status, _, page) = send(&state, get("/review/c1", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("添加的附件"), "{page}");
    assert!(
        page.contains(&format!("/attachments/{}/thumb", hash_of(&mine))),
        "{page}"
    );
    // li's photo has not reached the relay: said so, not a broken image.
    assert!(!page.contains(&format!("/attachments/{}/thumb", hash_of(&other))));
    assert!(page.contains("照片尚未收到"));
}
