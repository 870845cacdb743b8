//! Photos on the office dashboard in a real browser (headless Chromium through chromedriver, as
//! in `dashboard.rs`): the office attaches two photos to a case from the record page, the page
//! shows their thumbnails (made by the relay) and, for a photo a worker's phone named but has not
//! uploaded yet, says so. `GRIDSYNC_SCREENSHOTS=DIR` saves the page as `record-photos.png`.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

#[path = "dashboard/browser.rs"]
#[allow(dead_code)] // shared with dashboard.rs, which uses all of it
mod browser;

use std::io::Write;

use browser::{Browser, browser_or_skip};
use fantoccini::Locator;
use gridsync_core::record::Kind;
use gridsync_e2e::{TestServer, fields, household, sync};
use gridsync_server::accounts::Role;
use serde_json::json;

/// A PNG of RGB pixels, written by hand (zlib from flate2) so the test needs no image library.
fn png(w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    for y in 0..h {
        raw.push(0); // no filter
        for x in 0..w {
            raw.extend_from_slice(&pixel(x, y));
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&raw).unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A street at dusk: sky, a sun, a grey building with lit windows.
fn street(x: u32, y: u32) -> [u8; 3] {
    let (w, h) = (1200, 900);
    let (dx, dy) = (x as i64 - 900, y as i64 - 220);
    if (300..=700).contains(&x) && y >= 300 {
        let lit = (x - 300) % 80 > 30 && (y - 300) % 90 > 40 && y < h - 60;
        return if lit { [250, 210, 90] } else { [110, 116, 124] };
    }
    if dx * dx + dy * dy < 90 * 90 {
        return [255, 190, 80];
    }
    if y > h - 120 {
        return [60, 64, 70];
    }
    let t = (y * 255 / h) as u8;
    [
        40 + t / 2,
        60 + t / 3,
        (200u32.saturating_sub(x * 40 / w)) as u8,
    ]
}

/// A blocked corridor: bricks with boxes piled in front.
fn corridor(x: u32, y: u32) -> [u8; 3] {
    if (200..520).contains(&x) && y > 380 || (560..760).contains(&x) && y > 480 {
        let edge = x % 160 < 4 || y % 120 < 4;
        return if edge { [120, 80, 40] } else { [196, 150, 96] };
    }
    let row = y / 40;
    let shift = if row.is_multiple_of(2) { 0 } else { 45 };
    let mortar = y % 40 < 4 || (x + shift) % 90 < 4;
    if mortar {
        [210, 205, 195]
    } else {
        [150 + (row % 3 * 12) as u8, 60, 45]
    }
}

async fn setup(dir: &std::path::Path) -> TestServer {
    let server = TestServer::start(&dir.join("server")).await;
    server.user("zhao", Role::Office, &["m1"]).await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_browser_office_attaches_photos_and_the_record_page_shows_their_thumbnails() {
    if !browser_or_skip(
        "test_browser_office_attaches_photos_and_the_record_page_shows_their_thumbnails",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = setup(dir.path()).await;
    let mut wang = server
        .worker(&dir.path().join("wang"), "wang", &["g1"])
        .await;
    let h = household(&mut wang, "张三");
    // The worker's phone names a photo whose bytes it has not uploaded yet.
    let case = wang
        .create(
            Kind::Case,
            fields(json!({
                "case_type": "low_income", "household_id": h, "status": "open",
                "attachments": [{
                    "hash": "5f".repeat(32), "media_type": "image/jpeg", "size": 2_400_000,
                    "width": 1600, "height": 1200, "caption": "入户照片",
                    "at": chrono::Utc::now().to_rfc3339(), "by": "wang",
                }],
            })),
        )
        .unwrap()
        .id;
    sync(&mut wang).await;
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let photos = [
        ("街道.png", png(1200, 900, street), "小区门口现状"),
        ("楼道.png", png(960, 720, corridor), "楼道堆放杂物"),
    ];

    let b = Browser::start().await;
    b.sign_in(&server, "zhao", gridsync_e2e::PASSWORD).await;
    assert!(b.wait_for_text("工作概览", 5).await);
    let page = format!("{}/records/{case}", server.url());
    for (name, bytes, caption) in &photos {
        let path = files.join(name);
        std::fs::write(&path, bytes).unwrap();
        b.goto(&page).await;
        b.fill("#attach input[name=caption]", caption).await;
        let input = b
            .c()
            .find(Locator::Css("#attach input[type=file]"))
            .await
            .unwrap();
        input.send_keys(&path.display().to_string()).await.unwrap();
        b.click("#attach button[type=submit]").await;
        assert!(
            b.wait_for_text("已保存", 10).await,
            "{}",
            b.page_text().await
        );
    }
    b.goto(&page).await;
    assert!(b.wait_for_text("照片尚未收到", 5).await);
    let text = b.text("#gallery").await;
    assert!(
        text.contains("小区门口现状") && text.contains("楼道堆放杂物") && text.contains("入户照片"),
        "{text}"
    );
    // Every thumbnail loaded, as a picture of at most 320 px.
    let mut sizes = json!(null);
    for _ in 0..50 {
        sizes = b
            .c()
            .execute(
                "return Array.from(document.querySelectorAll('#gallery img'))\
                 .map(i => i.complete ? [i.naturalWidth, i.naturalHeight] : null);",
                vec![],
            )
            .await
            .unwrap();
        let loaded = sizes
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|s| s[0].as_u64() > Some(0)));
        if loaded {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sizes, json!([[320, 240], [320, 240]]), "{sizes}");
    b.c()
        .execute(
            "document.getElementById('attachments').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("record-photos").await;
    b.close().await;
    server.stop().await;
}
