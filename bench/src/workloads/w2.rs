//! W2 fan-in: many devices upload at once, then the office syncs everything.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::record::Kind;

use super::{BYTES_NOTE, CPU_NOTE, Ctx, Outcome, say};
use crate::data::{self, Rng, SEED};
use crate::measure::{self, mib, ms, round3};
use crate::meter::Meter;
use crate::setup::{self, Device, ServerProcess};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let devices = if ctx.quick { 10 } else { 50 };
    let per_device = 40;
    let history = 3;
    let total = devices * per_device;

    let mut out = Outcome::default();
    out.param("devices", devices as u64);
    out.param("recordsPerDevice", per_device as u64);
    out.param("editsOfHistory", history as u64);
    out.param("record", "visit");
    out.param(
        "grids",
        "one grid per device (each device's grid-worker account works in its own grid); the \
         office account works in the community holding all of them, so a device's sync uploads \
         only and is not also a download of the others' records",
    );
    out.param(
        "households",
        "one per device, created first (a visit must name a household the device holds); \
         the office therefore receives records + devices documents",
    );
    out.note(BYTES_NOTE);
    out.note(CPU_NOTE);
    out.note(
        "serverHoldsAllMs ends when the last device's sync returned: a sync returns only once the \
         server acknowledged every upload, and it acknowledges only what it stored durably",
    );
    out.note(
        "serverPeakRssMib is the VmHWM of a server process started after set-up (accounts, \
         sign-ins) and before the timed parts, over both timed parts",
    );

    let mut server = ServerProcess::start(&ctx.root)?;
    let all_grids: Vec<String> = (0..devices).map(|d| format!("grid-w2-{d:02}")).collect();
    server.add_grids(&all_grids)?;
    for (d, grid) in all_grids.iter().enumerate() {
        server.add_worker(&format!("worker-{d:02}"), std::slice::from_ref(grid))?;
    }
    server.add_office("office")?;
    // With several relays (--relays) the meter hands connections to them in turn.
    let meter = Meter::start_balanced(server.addrs())?;

    say(format!(
        "w2: {devices} devices create {per_device} records with {history} edits each, offline"
    ));
    let mut fleet: Vec<Device> = Vec::new();
    let mut a_household = String::new();
    for d in 0..devices {
        let mut dev = setup::new_device(&ctx.root, &meter.url(), &format!("worker-{d:02}")).await?;
        let mut rng = Rng::new(SEED, 100 + d as u64);
        let household = data::create_household(&mut dev.replica, &mut rng)?;
        a_household.clone_from(&household);
        for _ in 0..per_device {
            data::create_record(&mut dev.replica, &mut rng, Kind::Visit, &household, history)?;
        }
        fleet.push(dev);
    }
    out.param(
        "recordJsonBytes",
        data::typical_json_bytes(Kind::Visit, &a_household, "worker-00"),
    );

    let mut office = setup::new_device(&ctx.root, &meter.url(), "office").await?;
    // Sign-ins (argon2) are set-up: the timed parts run on a fresh server process.
    server.restart()?;

    say(format!("w2: timed (1): all {devices} connect at once"));
    let before = meter.settle(Duration::from_secs(5)).await;
    let server_cpu0 = server.cpu_secs()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut dev in fleet {
        tasks.push(tokio::spawn(async move {
            let result = setup::sync(&mut dev.replica).await;
            (dev, result, Instant::now())
        }));
    }
    let mut fleet = Vec::new();
    let mut last_done = start;
    let mut frame_up = 0;
    let mut messages = 0;
    for task in tasks {
        let (dev, result, done) = task.await.map_err(|e| anyhow!("device task: {e}"))?;
        let report = result.context("a device's upload")?;
        frame_up += report.bytes_sent;
        messages += report.messages_sent + report.messages_received;
        last_done = last_done.max(done);
        fleet.push(dev);
    }
    let holds_all = last_done - start;
    let server_cpu_fan_in = server.cpu_secs()? - server_cpu0;
    let fan_in = meter.settle(Duration::from_secs(5)).await.since(before);

    say("w2: timed (2): a fresh office replica syncs everything");
    let before = meter.settle(Duration::from_secs(5)).await;
    let server_cpu0 = server.cpu_secs()?;
    let start = Instant::now();
    let report = setup::sync(&mut office.replica)
        .await
        .context("the office's sync")?;
    let office_ms = start.elapsed();
    let server_cpu_office = server.cpu_secs()? - server_cpu0;
    let office_traffic = meter.settle(Duration::from_secs(5)).await.since(before);

    // Verify: the office holds exactly every device's records, field for field.
    let mut held = 0;
    for dev in &mut fleet {
        held += measure::contained_in(&mut dev.replica, &mut office.replica)
            .context("the office lacks a device's record")?;
    }
    let office_count = measure::record_ids(&office.replica)?.len();
    if held != total + devices || office_count != held {
        bail!(
            "office holds {office_count} records, devices {held}, expected {}",
            total + devices
        );
    }
    out.param("verifiedRecords", held as u64);

    out.metric("serverHoldsAllMs", ms(holds_all));
    out.metric("officeSyncMs", ms(office_ms));
    out.metric("serverPeakRssMib", mib(server.peak_rss_kib()?));
    out.metric("serverCpuSecsFanIn", round3(server_cpu_fan_in));
    out.metric("serverCpuSecsOffice", round3(server_cpu_office));
    out.metric("fanInBytesUp", fan_in.up);
    out.metric("fanInBytesDown", fan_in.down);
    out.metric("fanInFrameBytesUp", frame_up);
    out.metric("fanInMessages", messages);
    out.metric("officeBytesUp", office_traffic.up);
    out.metric("officeBytesDown", office_traffic.down);
    out.metric("officeFrameBytesDown", report.bytes_received);
    out.metric(
        "officeMessages",
        report.messages_sent + report.messages_received,
    );
    out.metric("serverDataBytes", server.data_bytes());
    Ok(out)
}
