use serde_json::json;

use super::*;
use crate::protocol::LoginResponse;
use crate::store::{DB_FILE, ReplicaKey};

fn login() -> LoginResponse {
    LoginResponse {
        device_id: "device-wang".into(),
        token: "token".into(),
        user_id: "wang".into(),
        username: "wang".into(),
        display_name: "wang".into(),
        role: "grid_worker".into(),
        grids: vec!["g1".into()],
    }
}

fn enrolled(mut r: Replica) -> Replica {
    r.enrol("http://127.0.0.1:1", &login()).unwrap();
    r
}

fn household(r: &mut Replica) -> String {
    let fields = json!({"head_name": "张三", "household_type": "registered"});
    r.create(Kind::Household, fields.as_object().cloned().unwrap())
        .unwrap()
        .id
}

/// Bytes that do not compress and are the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

fn read_out(r: &mut Replica, hash: &str) -> Vec<u8> {
    let mut out = Vec::new();
    r.write_attachment(hash, &mut out).unwrap();
    out
}

fn entries(r: &mut Replica, id: &str) -> Vec<Value> {
    match r.get(id).unwrap().fields.get("attachments") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

#[test]
fn test_attach_stores_the_bytes_and_the_entry_in_one_write_and_both_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = noise(3 * BLOB_CHUNK + 100, 1);
    let file = dir.path().join("receipt.bin");
    std::fs::write(&file, &bytes).unwrap();
    let (id, hash) = {
        let mut r = enrolled(Replica::open(dir.path().join("r")).unwrap());
        let id = household(&mut r);
        let options = AttachOptions {
            caption: "门口".into(),
            ..AttachOptions::default()
        };
        let hash = r.attach(&id, AttachSource::Path(file), options).unwrap();
        assert_eq!(
            r.status().unwrap().unsent_changes,
            2,
            "the attach is one change"
        );
        (id, hash)
    };
    assert_eq!(hash, hex::encode(sha(&bytes)));
    let mut r = Replica::open(dir.path().join("r")).unwrap();
    let list = entries(&mut r, &id);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["hash"], hash.as_str());
    assert_eq!(list[0]["size"], bytes.len());
    assert_eq!(list[0]["caption"], "门口");
    assert_eq!(list[0]["name"], "receipt.bin");
    assert_eq!(list[0]["by"], "wang");
    assert!(list[0]["at"].is_string());
    assert_eq!(read_out(&mut r, &hash), bytes);
    let status = r.attachment_status().unwrap();
    assert_eq!(
        (status.waiting, status.waiting_bytes),
        (1, bytes.len() as u64)
    );
    // A record that may carry no attachment, and a bad hash, are refused with the reason.
    let err = r.write_attachment("nothex", &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("64"), "{err}");
}

#[test]
fn test_a_failed_attach_stores_neither_the_bytes_nor_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = enrolled(Replica::open(dir.path()).unwrap());
    let id = household(&mut r);
    let missing = dir.path().join("no-such-file.jpg");
    assert!(
        r.attach(&id, AttachSource::Path(missing), AttachOptions::default())
            .is_err()
    );
    let err = r
        .attach(
            &id,
            AttachSource::Bytes(Vec::new()),
            AttachOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("1 byte"), "{err}");
    assert!(entries(&mut r, &id).is_empty());
    assert_eq!(r.status().unwrap().unsent_changes, 1);
    assert_eq!(r.attachment_status().unwrap().waiting, 0);
}

#[test]
fn test_an_encrypted_replica_file_does_not_hold_the_attached_bytes_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let marker = b"MARKER-photo-of-the-flooded-lane-7f3a";
    let mut bytes = noise(2 * BLOB_CHUNK, 2);
    bytes.extend_from_slice(marker);
    let key = ReplicaKey::raw([7; 32]);
    let hash = {
        let mut r = enrolled(Replica::open_with_key(dir.path(), &key).unwrap());
        let id = household(&mut r);
        r.attach(
            &id,
            AttachSource::Bytes(bytes.clone()),
            AttachOptions::default(),
        )
        .unwrap()
    };
    for name in [DB_FILE.to_string(), format!("{DB_FILE}-wal")] {
        if let Ok(file) = std::fs::read(dir.path().join(&name)) {
            assert!(
                !file.windows(marker.len()).any(|w| w == marker),
                "{name} holds the attached bytes in clear"
            );
        }
    }
    let mut r = Replica::open_with_key(dir.path(), &key).unwrap();
    assert_eq!(read_out(&mut r, &hash), bytes);
}

/// A 3000x2000 JPEG taken with the phone held upright (EXIF orientation 6: turn it 90° clockwise
/// to show it), its stored top-left quarter red and the rest blue.
fn sideways_photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(3000, 2000, |x, y| {
        if x < 1500 && y < 1000 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
            &mut jpeg, 90,
        ))
        .unwrap();
    // An APP1 Exif segment right after SOI: a little-endian TIFF header and one IFD entry,
    // Orientation (0x0112), SHORT, 1, value 6.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&[
        1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn is_red(p: &image::Rgb<u8>) -> bool {
    p[0] > 150 && p[2] < 100
}

#[test]
fn test_a_large_photo_is_stored_upright_at_1600_px_and_an_original_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = enrolled(Replica::open(dir.path()).unwrap());
    let id = household(&mut r);
    let photo = sideways_photo();
    let small = r
        .attach(
            &id,
            AttachSource::Bytes(photo.clone()),
            AttachOptions::default(),
        )
        .unwrap();
    let stored = read_out(&mut r, &small);
    assert!(stored.len() < photo.len());
    let shown = image::load_from_memory(&stored).unwrap().to_rgb8();
    assert_eq!(shown.height(), 1600, "longest side");
    assert!((1066..=1067).contains(&shown.width()), "{}", shown.width());
    // Upright: turned clockwise, the stored top-left quarter is now at the top right.
    assert!(is_red(shown.get_pixel(shown.width() - 20, 20)));
    assert!(!is_red(shown.get_pixel(20, 20)));
    let list = entries(&mut r, &id);
    assert_eq!(list[0]["media_type"], "image/jpeg");
    assert_eq!(list[0]["height"], 1600);
    assert_eq!(list[0]["width"], shown.width());

    let options = AttachOptions {
        original: true,
        ..AttachOptions::default()
    };
    let original = r
        .attach(&id, AttachSource::Bytes(photo.clone()), options)
        .unwrap();
    assert_eq!(read_out(&mut r, &original), photo);
    let list = entries(&mut r, &id);
    assert_eq!(
        (&list[1]["width"], &list[1]["height"]),
        (&json!(2000), &json!(3000))
    );
}

/// Downloads `bytes` into the replica as the engine does, piece by piece.
fn fetch(r: &mut Replica, bytes: &[u8]) -> String {
    let hash = sha(bytes);
    let text = hex::encode(hash);
    r.want_attachment(&text).unwrap();
    for (i, piece) in bytes.chunks(BLOB_CHUNK).enumerate() {
        let offset = (i * BLOB_CHUNK) as u64;
        r.store_attachment_piece(&hash, offset, bytes.len() as u64, piece)
            .unwrap();
    }
    text
}

#[test]
fn test_the_cache_stays_under_its_bound_and_never_evicts_a_waiting_upload() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = enrolled(Replica::open(dir.path()).unwrap());
    let bound = 5 * 100_000;
    r.set_attachment_settings(AttachmentSettings {
        cache_bytes: bound,
        ..AttachmentSettings::default()
    });
    let id = household(&mut r);
    let own = noise(600_000, 10);
    let own_hash = r
        .attach(
            &id,
            AttachSource::Bytes(own.clone()),
            AttachOptions::default(),
        )
        .unwrap();
    let mut fetched = Vec::new();
    for i in 0..12 {
        let bytes = noise(100_000, 100 + i);
        fetched.push(fetch(&mut r, &bytes));
        // The first ones fetched are used again, so the least recently used are others.
        if i == 2 {
            read_out(&mut r, &fetched[0]);
        }
        let status = r.attachment_status().unwrap();
        assert!(
            status.cached_bytes <= bound,
            "{} > {bound}",
            status.cached_bytes
        );
    }
    assert_eq!(
        read_out(&mut r, &own_hash),
        own,
        "the waiting upload is kept"
    );
    assert!(
        r.attachment(&fetched[11])
            .unwrap()
            .is_some_and(|a| a.complete)
    );
    assert!(
        r.attachment(&fetched[1]).unwrap().is_none(),
        "least recently used: evicted"
    );
    // Being downloaded is not evicted either: half of one, then the cache fills past it.
    let big = noise(300_000, 999);
    let big_hash = sha(&big);
    r.want_attachment(&hex::encode(big_hash)).unwrap();
    r.store_attachment_piece(&big_hash, 0, big.len() as u64, &big[..BLOB_CHUNK])
        .unwrap();
    for i in 0..6 {
        fetch(&mut r, &noise(100_000, 500 + i));
    }
    let partial = r.attachment(&hex::encode(big_hash)).unwrap().unwrap();
    assert!(partial.wanted && !partial.complete);
    assert_eq!(
        r.attachments_to_sync().unwrap().1,
        vec![DownloadTodo {
            hash: big_hash,
            have: BLOB_CHUNK as u64
        }],
        "the download resumes from the piece it holds"
    );
}

#[test]
fn test_a_download_that_does_not_match_its_hash_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = enrolled(Replica::open(dir.path()).unwrap());
    let bytes = noise(1000, 3);
    let hash = sha(b"other bytes");
    r.want_attachment(&hex::encode(hash)).unwrap();
    let done = r
        .store_attachment_piece(&hash, 0, bytes.len() as u64, &bytes)
        .unwrap();
    assert!(!done);
    let err = r
        .write_attachment(&hex::encode(hash), &mut Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("do not match"), "{err}");
}

#[test]
fn test_an_urgent_reports_attachments_are_uploaded_before_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = enrolled(Replica::open(dir.path()).unwrap());
    let h = household(&mut r);
    let first = r
        .attach(
            &h,
            AttachSource::Bytes(noise(500, 1)),
            AttachOptions::default(),
        )
        .unwrap();
    let fields = json!({"category": "safety_hazard", "urgency": "urgent",
        "description": "楼道堆放杂物,影响通行", "discovered_at": "2026-11-01T10:00:00Z"});
    let report = r
        .create(Kind::Report, fields.as_object().cloned().unwrap())
        .unwrap()
        .id;
    let urgent = r
        .attach(
            &report,
            AttachSource::Bytes(noise(500, 2)),
            AttachOptions::default(),
        )
        .unwrap();
    let last = r
        .attach(
            &h,
            AttachSource::Bytes(noise(500, 3)),
            AttachOptions::default(),
        )
        .unwrap();
    let order: Vec<String> = r
        .attachments_to_sync()
        .unwrap()
        .0
        .iter()
        .map(|u| hex::encode(u.hash))
        .collect();
    assert_eq!(order, [urgent, first, last]);
}

#[test]
fn test_a_salvaged_replica_keeps_its_attachments_not_yet_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = noise(3 * BLOB_CHUNK + 7, 4);
    let hash = {
        let mut r = enrolled(Replica::open(dir.path()).unwrap());
        let id = household(&mut r);
        r.attach(
            &id,
            AttachSource::Bytes(bytes.clone()),
            AttachOptions::default(),
        )
        .unwrap()
    };
    crate::store::salvage::salvage(dir.path(), None, "test").unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    assert_eq!(r.status().unwrap().unsent_changes, 2);
    let info = r.attachment(&hash).unwrap().unwrap();
    assert_eq!(info.upload.as_deref(), Some("waiting"));
    assert_eq!(read_out(&mut r, &hash), bytes);
}

#[test]
fn test_leaving_a_grid_empties_the_cache_of_fetched_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = enrolled(Replica::open(dir.path()).unwrap());
    household(&mut r);
    let seqs: Vec<i64> = r
        .outbox_batch(100, 1 << 20)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    r.acknowledge(&seqs, &[], &[]).unwrap();
    let fetched = fetch(&mut r, &noise(1000, 5));
    r.set_scope(&["g2".to_string()]).unwrap();
    assert_eq!(r.purge_outside_scope().unwrap(), 1);
    assert!(r.attachment(&fetched).unwrap().is_none());
}
