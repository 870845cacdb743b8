//! The relay killed with SIGKILL while a device uploads a large photo: nothing of the partial
//! upload is ever served (to a device or on the dashboard), the upload resumes after the restart
//! from the prefix the relay had acknowledged, and what is served at the end is the photo.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::path::Path;
use std::time::Duration;

use gridsync_core::Replica;
use gridsync_core::record::Kind;
use gridsync_core::store::{AttachOptions, AttachSource};
use gridsync_core::transport;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{admin, free_port, start};

const PASSWORD: &str = "kill-upload-password";
const SIZE: usize = 6 * 1024 * 1024;
/// Bytes a second the device's link carries up, so that the relay can be killed mid-upload.
const UP_RATE: u64 = 2 * 1024 * 1024;

/// Bytes that do not compress (the frames are DEFLATEd) and are the same every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

/// A link to the relay's port that carries at most `UP_RATE` bytes a second upwards; each
/// connection goes to whichever relay listens there when it is made.
async fn slow_link(relay_port: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        // Ends when the test aborts it.
        while let Ok((down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(("127.0.0.1", relay_port)).await else {
                    return;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                // Either side closing closes both (a killed relay cuts the device).
                tokio::select! {
                    () = pipe(dr, uw, Some(UP_RATE)) => {}
                    () = pipe(ur, dw, None) => {}
                }
            });
        }
    });
    (port, task)
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    rate: Option<u64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some(rate) = rate {
            tokio::time::sleep(Duration::from_micros(n as u64 * 1_000_000 / rate)).await;
        }
    }
}

/// One HTTP/1.1 request; the status, the head and the body.
async fn http(port: u16, request: String) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, all[split + 4..].to_vec())
}

fn cookie(head: &str, name: &str) -> String {
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie: "))
        .map(|l| &l["set-cookie: ".len()..])
        .filter_map(|c| c.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")) && c.len() > name.len() + 1)
        .unwrap_or_else(|| panic!("no cookie {name} in {head}"))
        .to_string()
}

/// Signs the office user in to the dashboard; its session cookie.
async fn office_session(port: u16) -> String {
    let get = "GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_string();
    let (_, head, _) = http(port, get).await;
    let login = cookie(&head, "gs_login");
    let token = login.trim_start_matches("gs_login=");
    let body = format!("username=zhou&password={PASSWORD}&csrf={token}&next=%2F");
    let post = format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {login}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, head, _) = http(port, post).await;
    assert_eq!(status, 303, "{head}");
    cookie(&head, "gs_session")
}

/// The dashboard's full-size photo.
async fn dashboard_photo(port: u16, session: &str, hash: &str) -> (u16, Vec<u8>) {
    let get = format!(
        "GET /attachments/{hash} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session}\r\n\
         Connection: close\r\n\r\n"
    );
    let (status, _, body) = http(port, get).await;
    (status, body)
}

fn partial_len(data: &Path, hash: &str) -> u64 {
    std::fs::metadata(data.join("attachments/partial").join(hash)).map_or(0, |m| m.len())
}

/// Another device of the grid asks the relay for the photo: it must say "not yet", never give
/// a byte of it.
async fn not_served_to_a_device(b: &mut Replica, hash: &str) {
    let report = transport::sync_once(b, None).await.unwrap();
    assert_eq!(report.stats.attachment_bytes_received, 0);
    let info = b.attachment(hash).unwrap().unwrap();
    assert!(info.not_yet && !info.complete, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_relay_killed_mid_upload_serves_nothing_partial_and_the_upload_resumes() {
    let data = tempfile::tempdir().unwrap();
    let area = |id: &str, level: &str, parent: Option<&str>| {
        let mut args = vec!["area", "add", id, "--name", id, "--level", level];
        args.extend(parent.iter().flat_map(|p| ["--parent", p]));
        admin(data.path(), &args, None);
    };
    area("m1", "community", None);
    area("g1", "grid", Some("m1"));
    for (user, role, area) in [
        ("wang", "grid_worker", "g1"),
        ("li", "grid_worker", "g1"),
        ("zhou", "office", "m1"),
    ] {
        let args = ["user", "add", user, "--name", user, "--role", role];
        admin(
            data.path(),
            &[&args[..], &["--area", area]].concat(),
            Some(PASSWORD),
        );
    }
    let port = free_port();
    let mut relay = start(data.path(), port);
    let (link, link_task) = slow_link(port).await;

    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Replica::open(da.path()).unwrap();
    let via_link = format!("http://127.0.0.1:{link}");
    transport::sign_in(&mut a, &via_link, "wang", PASSWORD, "")
        .await
        .unwrap();
    let mut b = Replica::open(db.path()).unwrap();
    transport::sign_in(
        &mut b,
        &format!("http://127.0.0.1:{port}"),
        "li",
        PASSWORD,
        "",
    )
    .await
    .unwrap();
    let fields = serde_json::json!({"head_name": "张三", "household_type": "registered"});
    let id = a
        .create(Kind::Household, fields.as_object().cloned().unwrap())
        .unwrap()
        .id;
    let bytes = noise(SIZE);
    let options = AttachOptions {
        media_type: Some("image/jpeg".into()),
        original: true,
        ..AttachOptions::default()
    };
    let hash = a
        .attach(&id, AttachSource::Bytes(bytes.clone()), options)
        .unwrap();
    assert_eq!(hash, hex::encode(Sha256::digest(&bytes)));

    // The device uploads; once the relay holds most of the photo, it is killed.
    let upload = tokio::spawn(async move {
        let cut = transport::sync_once(&mut a, None).await;
        (a, cut)
    });
    let session = office_session(port).await;
    let mut polls = 0;
    while partial_len(data.path(), &hash) < SIZE as u64 * 6 / 10 {
        polls += 1;
        assert!(polls < 6000, "the upload never got past 60%");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A growing upload is not served on the dashboard either.
    assert_eq!(dashboard_photo(port, &session, &hash).await.0, 404);
    relay.kill().unwrap(); // SIGKILL: no shutdown, no flush
    relay.wait().unwrap();
    let (mut a, cut) = upload.await.unwrap();
    assert!(cut.is_err(), "the session died with the relay");
    let held = partial_len(data.path(), &hash);
    assert!(
        held >= SIZE as u64 * 6 / 10 && held < SIZE as u64,
        "{held} bytes held of {SIZE}"
    );
    assert_eq!(
        a.attachment(&hash).unwrap().unwrap().upload.as_deref(),
        Some("waiting")
    );

    // Restarted on the same data: the partial photo is there, and served to nobody.
    let mut relay = start(data.path(), port);
    b.want_attachment(&hash).unwrap();
    not_served_to_a_device(&mut b, &hash).await;
    let (status, body) = dashboard_photo(port, &session, &hash).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(partial_len(data.path(), &hash), held);

    // The device goes on from what the relay had acknowledged, not from the start.
    let report = transport::sync_once(&mut a, None).await.unwrap();
    let resent = report.stats.attachment_bytes_sent;
    assert_eq!(report.stats.attachments_uploaded, 1);
    assert_eq!(resent, SIZE as u64 - held, "sent after the restart");
    assert_eq!(
        a.attachment(&hash).unwrap().unwrap().upload.as_deref(),
        Some("uploaded")
    );

    // Now the photo, and exactly it, is served: to the dashboard and to the other device.
    let (status, body) = dashboard_photo(port, &session, &hash).await;
    assert_eq!(status, 200);
    assert_eq!(hex::encode(Sha256::digest(&body)), hash);
    let report = transport::sync_once(&mut b, None).await.unwrap();
    assert_eq!(report.stats.attachments_downloaded, 1);
    let mut got = Vec::new();
    b.write_attachment(&hash, &mut got).unwrap();
    assert!(got == bytes, "the other device has the photo as taken");
    eprintln!("relay killed with {held} of {SIZE} bytes held; {resent} sent after the restart");
    link_task.abort();
    relay.kill().unwrap();
    relay.wait().unwrap();
}
