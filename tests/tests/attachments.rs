//! Photos on records between real devices and a real relay (docs/protocol.md §13): an upload
//! survives cuts without starting again, records never wait for photos, and other devices fetch
//! photos only when asked, into a bounded cache.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::sync::atomic::Ordering;

use gridsync_core::Replica;
use gridsync_core::record::Kind;
use gridsync_core::store::{AttachOptions, AttachSource, AttachmentSettings};
use gridsync_core::transport::{self, SyncReport};
use gridsync_e2e::proxy::{Fault, Proxy};
use gridsync_e2e::{PASSWORD, TestServer};
use gridsync_server::accounts::Role;
use serde_json::json;

/// Bytes that do not compress (the frames are DEFLATEd) and are the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

fn household(r: &mut Replica) -> String {
    let fields = json!({"head_name": "张三", "household_type": "registered"});
    r.create(Kind::Household, fields.as_object().cloned().unwrap())
        .unwrap()
        .id
}

/// Attached as taken: the bytes as they are.
fn photo(r: &mut Replica, id: &str, bytes: &[u8]) -> String {
    let options = AttachOptions {
        media_type: Some("image/jpeg".into()),
        original: true,
        ..AttachOptions::default()
    };
    r.attach(id, AttachSource::Bytes(bytes.to_vec()), options)
        .unwrap()
}

async fn sync(r: &mut Replica) -> SyncReport {
    transport::sync_once(r, None).await.unwrap()
}

fn read(r: &mut Replica, hash: &str) -> Vec<u8> {
    let mut out = Vec::new();
    r.write_attachment(hash, &mut out).unwrap();
    out
}

/// A device signed in through `url` (the proxy) as a new grid worker of g1.
async fn device_via(server: &TestServer, url: &str, dir: &std::path::Path, user: &str) -> Replica {
    server.user(user, Role::GridWorker, &["g1"]).await;
    let mut r = Replica::open(dir).unwrap();
    transport::sign_in(&mut r, url, user, PASSWORD, "")
        .await
        .unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_5_mb_photo_cut_three_times_arrives_whole_with_at_most_1_2x_its_size_sent() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = device_via(&server, &proxy.url(), da.path(), "wang").await;
    let id = household(&mut a);
    let bytes = noise(5 * 1024 * 1024, 1);
    let hash = photo(&mut a, &id, &bytes);

    let before = proxy.up_bytes.load(Ordering::Relaxed);
    // Each cut comes about 1.2 MB into its connection: three connections die mid-upload.
    proxy.plan((0..3).map(|_| Fault {
        cut_up_after: Some(1_200_000),
        ..Fault::default()
    }));
    let mut failed = 0;
    let mut done = None;
    for _ in 0..10 {
        match transport::sync_once(&mut a, None).await {
            Ok(report) => {
                done = Some(report);
                break;
            }
            Err(_) => failed += 1,
        }
    }
    let report = done.expect("the upload ends");
    assert_eq!(failed, 3, "every cut hit the upload");
    assert_eq!(report.stats.attachments_uploaded, 1);
    let sent = proxy.up_bytes.load(Ordering::Relaxed) - before;
    assert!(
        sent as f64 <= 1.2 * bytes.len() as f64,
        "{sent} bytes sent for a photo of {}",
        bytes.len()
    );
    assert_eq!(a.attachment_status().unwrap().waiting, 0);

    let mut b = server.worker(db.path(), "li", &["g1"]).await;
    sync(&mut b).await;
    b.want_attachment(&hash).unwrap();
    let report = sync(&mut b).await;
    assert_eq!(report.stats.attachments_downloaded, 1);
    assert_eq!(read(&mut b, &hash), bytes, "arrived whole");
    eprintln!(
        "attachments: a 5 MiB photo, 3 cuts, {sent} bytes sent ({:.3}x)",
        sent as f64 / bytes.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_record_is_on_the_relay_and_another_device_before_its_photos() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = device_via(&server, &proxy.url(), da.path(), "wang").await;
    let id = household(&mut a);
    let bytes = noise(2 * 1024 * 1024, 2);
    let hash = photo(&mut a, &id, &bytes);
    // The connection dies well into the photo, long after the record went up.
    proxy.plan([Fault {
        cut_up_after: Some(500_000),
        ..Fault::default()
    }]);
    assert!(transport::sync_once(&mut a, None).await.is_err());
    assert_eq!(
        a.status().unwrap().unsent_changes,
        0,
        "the record is on the relay"
    );
    assert_eq!(a.attachment_status().unwrap().waiting, 1);

    let mut b = server.worker(db.path(), "li", &["g1"]).await;
    sync(&mut b).await;
    let record = b.get(&id).unwrap();
    assert_eq!(record.fields["attachments"][0]["hash"], hash.as_str());
    // Asked for, it is not there yet: the sync still ends, and says so.
    b.want_attachment(&hash).unwrap();
    let report = sync(&mut b).await;
    assert_eq!(report.stats.attachments_downloaded, 0);
    let info = b.attachment(&hash).unwrap().unwrap();
    assert!(info.not_yet && info.wanted && !info.complete, "{info:?}");
    let err = b.write_attachment(&hash, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("not uploaded yet"), "{err}");

    let report = sync(&mut a).await;
    assert_eq!(report.stats.attachments_uploaded, 1);
    let report = sync(&mut b).await;
    assert_eq!(report.stats.attachments_downloaded, 1);
    assert_eq!(read(&mut b, &hash), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_another_device_downloads_photos_on_demand_into_a_bounded_cache() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    let mut photos = Vec::new();
    for n in 0..6 {
        let id = household(&mut a);
        let bytes = noise(300_000, 10 + n);
        let hash = photo(&mut a, &id, &bytes);
        photos.push((hash, bytes));
    }
    let report = sync(&mut a).await;
    assert_eq!(report.stats.attachments_uploaded, 6);

    let mut b = server.worker(db.path(), "li", &["g1"]).await;
    let bound = 1024 * 1024;
    b.set_attachment_settings(AttachmentSettings {
        cache_bytes: bound,
        ..AttachmentSettings::default()
    });
    let report = sync(&mut b).await;
    // Each household came with its two changes (created, photo attached).
    assert_eq!(report.stats.changes_received, 12, "the records came");
    assert_eq!(report.stats.attachments_downloaded, 0, "the photos did not");
    assert!(report.bytes_received < 300_000, "{}", report.bytes_received);
    for (hash, bytes) in &photos {
        assert!(b.attachment(hash).unwrap().is_none());
        b.want_attachment(hash).unwrap();
        sync(&mut b).await;
        assert_eq!(&read(&mut b, hash), bytes);
        let cached = b.attachment_status().unwrap().cached_bytes;
        assert!(cached <= bound, "{cached} bytes cached, bound {bound}");
    }
    assert!(
        b.attachment(&photos[0].0).unwrap().is_none(),
        "the least recently used was evicted"
    );
    assert!(
        b.attachment(&photos[5].0)
            .unwrap()
            .is_some_and(|a| a.complete)
    );
}
