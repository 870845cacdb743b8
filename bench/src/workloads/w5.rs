//! W5 first sync: a new device downloads a grid; then the same, cut off half-way and resumed.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::record::Kind;
use serde_json::{Value, json};

use super::{BYTES_NOTE, CPU_NOTE, Ctx, Outcome, say};
use crate::data::{self, Rng, SEED};
use crate::measure::{self, mib, ms, round3};
use crate::meter::Meter;
use crate::setup::{self, ServerProcess};

const GRID: &str = "grid-w5";

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let n = ctx.records.unwrap_or(if ctx.quick { 1000 } else { 10_000 });
    let history = 3;
    let mut out = Outcome::default();
    out.param("n", n as u64);
    out.param("editsOfHistory", history as u64);
    out.param("record", "visit");
    out.param(
        "households",
        "one, created first by the writing device; the new device receives n + 1 documents",
    );
    out.note(BYTES_NOTE);
    out.note(CPU_NOTE);
    out.note(
        "the new device runs in a fresh process (this binary, `w5-device`): syncMs is its \
         sync_once, processMs spawn to exit, deviceRssMib its VmHWM",
    );
    out.note(
        "the cut ends the new device's process at the first progress callback at or past half of \
         the announced log entries (cutTrippedAtFraction), right after that batch was stored, \
         as when the app is killed or the phone loses its link mid-sync: what it stored stays, \
         nothing after (cutHeldFraction = records held after the cut / records); \
         redownloadedBytes = bytes down in the cut session + the resumed session - bytes down \
         in the uncut first sync",
    );

    let mut server = ServerProcess::start(&ctx.root)?;
    let grids = vec![GRID.to_string()];
    server.add_grids(&grids)?;
    server.add_worker("worker-w5", &grids)?;
    server.add_worker("worker-new", &grids)?;
    let meter = Meter::start(server.addr)?;
    say(format!(
        "w5: the grid gets {n} records with {history} edits each"
    ));
    let mut writer = setup::new_device(&ctx.root, &server.url(), "worker-w5").await?;
    let mut rng = Rng::new(SEED, 5);
    let household = data::create_household(&mut writer.replica, &mut rng)?;
    for _ in 0..n {
        data::create_record(
            &mut writer.replica,
            &mut rng,
            Kind::Visit,
            &household,
            history,
        )?;
    }
    out.param(
        "recordJsonBytes",
        data::typical_json_bytes(Kind::Visit, &household, "worker-w5"),
    );
    let unsent = writer.replica.outbox_batch(usize::MAX, usize::MAX)?;
    out.param("changes", unsent.len() as u64);
    out.param(
        "rawChangeBytes",
        unsent.iter().map(|e| e.bytes.len() as u64).sum::<u64>(),
    );
    setup::sync(&mut writer.replica)
        .await
        .context("the writer's upload")?;
    out.param("serverDataBytes", server.data_bytes());

    // The new devices sign in here (through the meter, before it is read), then sync in a
    // fresh process.
    let fresh = setup::device_dir(&ctx.root)?;
    let cut_dir = setup::device_dir(&ctx.root)?;
    for dir in [&fresh, &cut_dir] {
        setup::sign_in(dir.path(), &meter.url(), "worker-new").await?;
    }

    say("w5: timed: a new device's first sync");
    let before = meter.settle(Duration::from_secs(5)).await;
    let server_cpu0 = server.cpu_secs()?;
    let start = Instant::now();
    let full = child(fresh.path(), false)?;
    let process = start.elapsed();
    let server_cpu = server.cpu_secs()? - server_cpu0;
    let full_traffic = meter.settle(Duration::from_secs(5)).await.since(before);
    {
        let mut r = setup::open_replica(fresh.path())?;
        let count = measure::same_contents(&mut r, &mut writer.replica)
            .context("the new device does not hold the grid")?;
        out.param("verifiedRecords", count as u64);
    }

    say("w5: the same, cut off half-way, then resumed");
    let before = meter.settle(Duration::from_secs(5)).await;
    let cut = child(cut_dir.path(), true)?;
    let cut_traffic = meter.settle(Duration::from_secs(5)).await.since(before);
    if cut["cut"] != Value::Bool(true) {
        bail!("the sync finished before it could be cut: {cut}");
    }
    let held = measure::record_ids(&setup::open_replica(cut_dir.path())?)?.len() as u64;
    let before = meter.settle(Duration::from_secs(5)).await;
    let resumed = child(cut_dir.path(), false)?;
    let resumed_traffic = meter.settle(Duration::from_secs(5)).await.since(before);
    {
        let mut r = setup::open_replica(cut_dir.path())?;
        measure::same_contents(&mut r, &mut writer.replica)
            .context("after the cut and resume, the device does not hold the grid")?;
    }
    let redownloaded = (cut_traffic.down + resumed_traffic.down).saturating_sub(full_traffic.down);

    out.metric("syncMs", full["syncMs"].clone());
    out.metric("processMs", ms(process));
    out.metric("bytesDown", full_traffic.down);
    out.metric("bytesUp", full_traffic.up);
    out.metric("frameBytesDown", full["frameBytesReceived"].clone());
    out.metric("messages", full["messages"].clone());
    out.metric("deviceRssMib", full["peakRssMib"].clone());
    out.metric("deviceCpuSecs", full["cpuSecs"].clone());
    out.metric("serverCpuSecs", round3(server_cpu));
    out.metric("cutTrippedAtFraction", cut["fraction"].clone());
    out.metric("cutRecordsHeld", held);
    out.metric("cutHeldFraction", round3(held as f64 / (n as f64 + 1.0)));
    out.metric("cutBytesDown", cut_traffic.down);
    out.metric("resumeBytesDown", resumed_traffic.down);
    out.metric("resumeMs", resumed["syncMs"].clone());
    out.metric("redownloadedBytes", redownloaded);
    out.metric(
        "redownloadedPct",
        round3(100.0 * redownloaded as f64 / full_traffic.down.max(1) as f64),
    );
    Ok(out)
}

fn child(dir: &std::path::Path, cut: bool) -> Result<Value> {
    let mut cmd = setup::device_process()?;
    cmd.arg("w5-device").arg(dir);
    if cut {
        cmd.arg("--cut");
    }
    let output = cmd.output().context("run the new-device process")?;
    if !output.status.success() {
        bail!(
            "new-device process failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("new-device process printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("new-device output {line:?}"))
}

/// `gridsync-bench w5-device DIR [--cut]`: a new (signed-in) device's process, syncing for the
/// first time. Prints one JSON line.
pub fn child_main(args: &[String]) -> Result<()> {
    let Some(dir) = args.first() else {
        bail!("usage: gridsync-bench w5-device DIR [--cut]");
    };
    let cut = args.iter().any(|a| a == "--cut");
    let rt = setup::runtime(2)?;
    let line = rt.block_on(async {
        let mut r = setup::open_replica(dir.as_ref())?;
        let start = Instant::now();
        let cpu0 = measure::self_cpu_secs()?;
        if !cut {
            let report = setup::sync(&mut r).await?;
            let elapsed = start.elapsed();
            let cpu = measure::self_cpu_secs()? - cpu0;
            return Ok::<_, anyhow::Error>(json!({
                "syncMs": ms(elapsed),
                "frameBytesReceived": report.bytes_received,
                "frameBytesSent": report.bytes_sent,
                "messages": report.messages_sent + report.messages_received,
                "changesReceived": report.stats.changes_received,
                "peakRssMib": mib(measure::self_peak_rss_kib()?),
                "cpuSecs": round3(cpu),
            }));
        }
        // The cut ends this process where the progress report first reaches half of the
        // catch-up, right after the batch it reports was stored. Dropping the sync future
        // there instead would not cut a small grid: its rest is already in the socket's
        // buffer, and the sync runs to its end before the future can be dropped.
        let progress = move |p: gridsync_core::transport::Progress| {
            if p.total > 0 && p.done * 2 >= p.total {
                let line = json!({
                    "cut": true,
                    "fraction": round3(p.done as f64 / p.total as f64),
                    "syncMs": ms(start.elapsed()),
                });
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
                std::process::exit(0);
            }
        };
        setup::sync_with_progress(&mut r, progress).await?;
        Ok(json!({ "cut": false, "syncMs": ms(start.elapsed()) }))
    })?;
    println!("{line}");
    Ok(())
}
