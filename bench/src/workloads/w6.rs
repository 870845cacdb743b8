//! W6 photos over a slow link: one device syncs visits with two photos each over a link shaped to
//! about 1 MB/s, whose connection is cut once half-way through the photos.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::record::Kind;
use gridsync_core::store::{AttachOptions, AttachSource};
use serde_json::{Value, json};

use super::{CPU_NOTE, Ctx, Outcome, say};
use crate::data::{self, Rng, SEED};
use crate::measure::{self, mib, ms, round3};
use crate::setup::{self, ServerProcess};
use crate::shaper::Shaper;

const GRID: &str = "grid-w6";
/// Bytes a second the link carries each way.
const RATE: u64 = 1_000_000;
const PHOTOS_PER_VISIT: usize = 2;
const PHOTO_BYTES: usize = 2 * 1024 * 1024;
/// Sync sessions the device tries before the workload gives up.
const MAX_SESSIONS: usize = 20;

/// A photo's worth of bytes: a JPEG's first and last markers around bytes that do not compress
/// (as a JPEG's entropy-coded data does not).
fn photo(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(PHOTO_BYTES);
    bytes.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    while bytes.len() < PHOTO_BYTES - 2 {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(PHOTO_BYTES - 2);
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let visits = ctx.records.unwrap_or(if ctx.quick { 10 } else { 50 });
    let photos = visits * PHOTOS_PER_VISIT;
    let photo_total = (photos * PHOTO_BYTES) as u64;
    let records = visits * 2;
    let mut out = Outcome::default();
    out.param("visits", visits as u64);
    out.param("photosPerVisit", PHOTOS_PER_VISIT as u64);
    out.param("photoBytes", PHOTO_BYTES as u64);
    out.param("photoTotalBytes", photo_total);
    out.param("linkBytesPerSec", RATE);
    out.param("record", "visit");
    out.param(
        "households",
        "one per visit, created by the same device: records = 2 × visits",
    );
    out.note(
        "photos are JPEG-like bytes (SOI/EOI markers around incompressible bytes), attached as \
         originals (no downscale), 2 MiB each",
    );
    out.note(
        "the link is a TCP relay in the bench shaped to linkBytesPerSec each way, shared by the \
         device's connections; bytesUp is counted there (framing and headers included)",
    );
    out.note(
        "the cut drops the device's connection once bytesUp reaches half of photoTotalBytes; \
         the device then syncs again after 300 ms, as often as needed (deviceSessions)",
    );
    out.note(
        "recordsOnRelayMs and photosOnRelayMs: from the device process's start until the relay's \
         /v1/stats (polled every 50 ms, directly) counts every record, and every photo stored \
         and checked against its SHA-256",
    );
    out.note(
        "the device runs in a fresh process (this binary, `w6-device`): deviceRssMib is its \
         VmHWM; relayRssMib the relay's VmHWM over the whole workload",
    );
    out.note(CPU_NOTE);

    let mut server = ServerProcess::start(&ctx.root)?;
    let grids = vec![GRID.to_string()];
    server.add_grids(&grids)?;
    server.add_worker("worker-w6", &grids)?;
    let shaper = Shaper::start(server.addr, RATE).await?;
    let dir = setup::device_dir(&ctx.root)?;
    say(format!(
        "w6: the device records {visits} visits with {PHOTOS_PER_VISIT} photos of {} MiB each",
        PHOTO_BYTES >> 20
    ));
    {
        let mut r = setup::sign_in(dir.path(), &shaper.url(), "worker-w6").await?;
        let mut rng = Rng::new(SEED, 6);
        for v in 0..visits {
            let household = data::create_household(&mut r, &mut rng)?;
            // The visit's fields as the schema has them: attaching rewrites the record, and a
            // rewrite is validated against the schema, which has no `address` on a visit.
            let worker = r.identity()?.worker_id.clone();
            let mut fields = data::visit_fields(&mut rng, &household, &worker);
            let spec = Kind::Visit.spec();
            fields.retain(|key, _| spec.fields.iter().any(|f| f.name == key.as_str()));
            let visit = r.create(Kind::Visit, fields)?.id;
            for p in 0..PHOTOS_PER_VISIT {
                let options = AttachOptions {
                    media_type: Some("image/jpeg".into()),
                    original: true,
                    caption: format!("第{}户 照片{}", v + 1, p + 1),
                    ..AttachOptions::default()
                };
                r.attach(&visit, AttachSource::Bytes(photo(&mut rng)), options)
                    .context("attach a photo")?;
            }
        }
        let waiting = r.attachment_status()?;
        if waiting.waiting != photos as u64 || waiting.waiting_bytes != photo_total {
            bail!("the device holds {waiting:?}, expected {photos} photos waiting");
        }
    }

    say(format!(
        "w6: timed: the device syncs over a {} kB/s link, cut half-way through the photos",
        RATE / 1000
    ));
    let before = shaper.traffic();
    let server_cpu0 = server.cpu_secs()?;
    let start = Instant::now();
    let mut child = setup::device_process()?
        .arg("w6-device")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the device process")?;
    let limit = Duration::from_secs(photo_total / RATE * 3 + 120);
    let (mut records_at, mut photos_at, mut cut_at) = (None, None, None);
    let mut last_poll = None::<Instant>;
    let stats = loop {
        let elapsed = start.elapsed();
        if elapsed > limit {
            let _ = child.kill();
            bail!("the device did not finish within {} s", limit.as_secs());
        }
        let up = shaper.traffic().since(before).up;
        if cut_at.is_none() && up >= photo_total / 2 {
            shaper.cut();
            cut_at = Some((elapsed, up));
        }
        let exited = child.try_wait()?.is_some();
        if exited || last_poll.is_none_or(|t| t.elapsed() >= Duration::from_millis(50)) {
            last_poll = Some(Instant::now());
            let stats = server.stats()?;
            if records_at.is_none() && stats["records"].as_u64() >= Some(records as u64) {
                records_at = Some(elapsed);
            }
            let stored = stats["attachments"]["stored"].as_u64().unwrap_or(0);
            if photos_at.is_none() && stored >= photos as u64 {
                photos_at = Some(elapsed);
            }
            if exited {
                break stats;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let server_cpu = server.cpu_secs()? - server_cpu0;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "device process failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("device process printed nothing"))?;
    let device: Value =
        serde_json::from_str(line).with_context(|| format!("device output {line:?}"))?;
    let traffic = shaper.traffic().since(before);

    // Verified: the relay holds every record and every photo whole (it checked each hash).
    let attachments = &stats["attachments"];
    if stats["records"].as_u64() != Some(records as u64)
        || attachments["stored"].as_u64() != Some(photos as u64)
        || attachments["stored_bytes"].as_u64() != Some(photo_total)
        || attachments["not_received"].as_u64() != Some(0)
    {
        bail!("the relay holds {stats}, expected {records} records and {photos} photos");
    }
    let (Some(records_at), Some(photos_at), Some((cut_ms, cut_up))) =
        (records_at, photos_at, cut_at)
    else {
        bail!("the sync ended before the link was cut or everything arrived: {device}");
    };
    if device["failedSessions"].as_u64() != Some(1) {
        bail!("expected exactly one cut session: {device}");
    }
    out.param("verifiedRecords", records as u64);
    out.param("verifiedPhotos", photos as u64);

    let relay_rss = mib(server.peak_rss_kib()?);
    out.metric("recordsOnRelayMs", ms(records_at));
    out.metric("photosOnRelayMs", ms(photos_at));
    out.metric("deviceMs", device["syncMs"].clone());
    out.metric("cutAtMs", ms(cut_ms));
    out.metric("cutAtBytesUp", cut_up);
    out.metric("bytesUp", traffic.up);
    out.metric("bytesDown", traffic.down);
    out.metric(
        "bytesUpPerPhotoByte",
        round3(traffic.up as f64 / photo_total as f64),
    );
    out.metric("extraBytesUp", traffic.up.saturating_sub(photo_total));
    out.metric("connections", traffic.connections);
    out.metric("deviceSessions", device["sessions"].clone());
    out.metric("deviceRssMib", device["peakRssMib"].clone());
    out.metric("relayRssMib", relay_rss);
    out.metric(
        "photoTotalMib",
        round3(photo_total as f64 / (1024.0 * 1024.0)),
    );
    out.metric("deviceCpuSecs", device["cpuSecs"].clone());
    out.metric("serverCpuSecs", round3(server_cpu));
    Ok(out)
}

/// `gridsync-bench w6-device DIR`: the device's process, syncing until nothing waits, again
/// after a failed session. Prints one JSON line.
pub fn child_main(args: &[String]) -> Result<()> {
    let Some(dir) = args.first() else {
        bail!("usage: gridsync-bench w6-device DIR");
    };
    let rt = setup::runtime(2)?;
    let line = rt.block_on(async {
        let mut r = setup::open_replica(dir.as_ref())?;
        let start = Instant::now();
        let cpu0 = measure::self_cpu_secs()?;
        let (mut sessions, mut failed) = (0u64, 0u64);
        let mut done = false;
        for _ in 0..MAX_SESSIONS {
            sessions += 1;
            match setup::sync(&mut r).await {
                Ok(_) => {
                    if r.attachment_status()?.waiting == 0 && r.status()?.unsent_changes == 0 {
                        done = true;
                        break;
                    }
                }
                Err(_) => {
                    failed += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        if !done {
            bail!("still waiting after {sessions} sessions");
        }
        Ok::<_, anyhow::Error>(json!({
            "syncMs": ms(start.elapsed()),
            "sessions": sessions,
            "failedSessions": failed,
            "peakRssMib": mib(measure::self_peak_rss_kib()?),
            "cpuSecs": round3(measure::self_cpu_secs()? - cpu0),
        }))
    })?;
    println!("{line}");
    Ok(())
}
