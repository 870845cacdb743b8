//! W4 many devices: N live devices, some of them writing one edit a second; push-to-receive latency.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::record::Kind;
use gridsync_core::{Query, Replica};

use super::{Ctx, Outcome, say};
use crate::data::{self, Rng, SEED};
use crate::measure::{self, mib, ms, round3};
use crate::setup::{self, Device, Live, ServerProcess};

/// Records each writer edits in turn.
const RECORDS_PER_GRID: usize = 10;
/// An edit not seen by its receiver after this long is counted as lost.
const LOST_AFTER: Duration = Duration::from_secs(15);
/// Live sessions started at once while connecting.
const CONNECT_WAVE: usize = 50;

struct Pending {
    /// Second of the writing window the edit was made in.
    second: usize,
    receiver: usize,
    id: String,
    updated_at: String,
    wrote: Instant,
}

fn lock(r: &Mutex<Replica>) -> MutexGuard<'_, Replica> {
    r.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let devices = ctx.devices.unwrap_or(if ctx.quick { 100 } else { 1000 });
    let writers = ctx
        .writers
        .unwrap_or(if ctx.quick { 10 } else { 50 })
        .clamp(1, devices / 2);
    let secs = ctx.secs.unwrap_or(if ctx.quick { 10 } else { 60 });
    let history = 3;
    // Device d is in grid d % writers; device g < writers is grid g's writer.
    let members: Vec<Vec<usize>> = (0..writers)
        .map(|g| (g..devices).step_by(writers).collect())
        .collect();

    let live_base = ctx.live_dir.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() { shm } else { ctx.root.clone() }
    });
    let mut out = Outcome::default();
    out.param("devices", devices as u64);
    out.param("writers", writers as u64);
    out.param("secs", secs);
    out.param("editsPerSecPerWriter", 1);
    out.param("grids", writers as u64);
    out.param("devicesPerGrid", (devices / writers) as u64);
    out.param("recordsPerGrid", RECORDS_PER_GRID as u64);
    out.param("record", "visit");
    out.param("replicaDir", live_base.display().to_string());
    out.note(
        "one grid per writer; every device of the grid is live. Latency: from the writer's local \
         write returning (durable) until the receiving device's replica holds that version \
         (polled every 1 ms); the receiver rotates over the grid's other devices",
    );
    out.note(
        "accounts: one grid-worker account per grid, every device of the grid signed in to it; \
         the server is restarted after the sign-ins, so its memory figures start from a fresh \
         process",
    );
    out.note(
        "all devices share this process and its tokio runtime; connections are real sockets. \
         Replicas are on the replicaDir filesystem: on /dev/shm (tmpfs) the fsyncs of N simulated \
         phones do not queue on this machine's one disk",
    );

    let mut server = ServerProcess::start(&ctx.root)?;
    let grids: Vec<String> = (0..writers).map(|g| format!("grid-w4-{g:03}")).collect();
    server.add_grids(&grids)?;
    for grid in &grids {
        server.add_worker(&format!("worker-{grid}"), std::slice::from_ref(grid))?;
    }
    // With several relays (--relays), a grid's devices are spread over them: its writer on the
    // first, so its pushes reach the others' devices through the database.
    let urls: Vec<String> = server
        .addrs()
        .iter()
        .map(|a| format!("http://{a}"))
        .collect();
    let live_root = tempfile::Builder::new()
        .prefix("gridsync-bench-w4-")
        .tempdir_in(&live_base)
        .context("W4 replica dir")?;

    say(format!("w4: creating {devices} devices in {writers} grids"));
    let mut fleet = create_devices(live_root.path(), &urls, &grids, devices).await?;
    // Sign-ins (argon2) are set-up: what follows runs on a fresh server process.
    server.restart()?;
    let mut grid_records: Vec<Vec<String>> = Vec::new();
    let mut rngs = Vec::new();
    for (g, dev) in fleet.iter_mut().take(writers).enumerate() {
        let mut rng = Rng::new(SEED, 400 + g as u64);
        let household = data::create_household(&mut dev.replica, &mut rng)?;
        let mut ids = Vec::new();
        for _ in 0..RECORDS_PER_GRID {
            ids.push(data::create_record(
                &mut dev.replica,
                &mut rng,
                Kind::Visit,
                &household,
                history,
            )?);
        }
        setup::sync(&mut dev.replica)
            .await
            .context("a writer's first upload")?;
        grid_records.push(ids);
        rngs.push(rng);
    }

    say(format!("w4: connecting {devices} live sessions"));
    let mut dirs = Vec::new();
    let mut replicas = Vec::new();
    for dev in fleet {
        let (r, dir) = dev.into_shared();
        replicas.push(r);
        dirs.push(dir);
    }
    let mut sessions: Vec<Live> = Vec::new();
    for wave in replicas.chunks(CONNECT_WAVE) {
        for r in wave {
            sessions.push(setup::go_live(r.clone()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected = wait_for(Duration::from_secs(120), || {
        server.connections().unwrap_or(0) >= devices as u64
    })
    .await;
    let held = server.connections().unwrap_or(0);
    if !connected {
        let ended: Vec<usize> = (0..sessions.len())
            .filter(|i| sessions[*i].is_finished())
            .collect();
        let mut why = String::new();
        if let Some(i) = ended.first() {
            let s = sessions.swap_remove(*i);
            why = format!(
                "; first ended session: {:?}",
                s.stop().await.err().map(|e| format!("{e:#}"))
            );
        }
        bail!(
            "the server holds {held} of {devices} connections after 120 s; \
             {} sessions ended{why}",
            ended.len()
        );
    }
    let per_grid_docs = (RECORDS_PER_GRID + 1) as u64;
    let caught_up = wait_for(Duration::from_secs(120), || {
        replicas
            .iter()
            .all(|r| lock(r).count(&Query::default()).unwrap_or(0) >= per_grid_docs)
    })
    .await;
    if !caught_up {
        bail!("not every live device received its grid's records within 120 s");
    }

    say(format!(
        "w4: timed: {writers} writers, one edit a second each, for {secs} s"
    ));
    let pending: Arc<Mutex<Vec<Pending>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<(usize, f64)>>> = Arc::default();
    let write_errors = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let writing_done = Arc::new(AtomicBool::new(false));
    let server_cpu0 = server.cpu_secs()?;
    let client_cpu0 = measure::self_cpu_secs()?;
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let window = Instant::now();

    let poller = {
        let (pending, latencies, lost, done, replicas) = (
            pending.clone(),
            latencies.clone(),
            lost.clone(),
            writing_done.clone(),
            replicas.clone(),
        );
        tokio::spawn(async move {
            loop {
                let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
                let mut keep = Vec::new();
                for p in batch {
                    let has = lock(&replicas[p.receiver])
                        .get(&p.id)
                        .ok()
                        .and_then(|r| {
                            r.str_field("updated_at")
                                .map(|u| u >= p.updated_at.as_str())
                        })
                        .unwrap_or(false);
                    if has {
                        let latency = ms(p.wrote.elapsed());
                        latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((p.second, latency));
                    } else if p.wrote.elapsed() > LOST_AFTER {
                        lost.fetch_add(1, Ordering::SeqCst);
                    } else {
                        keep.push(p);
                    }
                }
                let empty = {
                    let mut list = pending.lock().unwrap_or_else(|p| p.into_inner());
                    list.extend(keep);
                    list.is_empty()
                };
                if empty && done.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let mut writer_tasks = Vec::new();
    for (g, mut rng) in rngs.into_iter().enumerate() {
        let writer = replicas[g].clone();
        let signal = sessions[g].write_signal();
        let ids = grid_records[g].clone();
        let receivers: Vec<usize> = members[g][1..].to_vec();
        let (pending, errors) = (pending.clone(), write_errors.clone());
        let offset = Duration::from_millis((g as u64 * 1000) / writers as u64);
        writer_tasks.push(tokio::spawn(async move {
            for round in 0..secs as usize {
                tokio::time::sleep_until(start + offset + Duration::from_secs(round as u64)).await;
                let id = &ids[round % ids.len()];
                let k = history + round / ids.len();
                let written = data::edit(&mut lock(&writer), &mut rng, Kind::Visit, id, k);
                match written {
                    Ok(updated_at) => {
                        let wrote = Instant::now();
                        signal.wrote();
                        pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Pending {
                                second: round,
                                receiver: receivers[round % receivers.len()],
                                id: id.clone(),
                                updated_at,
                                wrote,
                            });
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for t in writer_tasks {
        t.await.map_err(|e| anyhow!("writer task: {e}"))?;
    }
    let writing = window.elapsed();
    let server_cpu = server.cpu_secs()? - server_cpu0;
    let client_cpu = measure::self_cpu_secs()? - client_cpu0;
    let server_rss = server.rss_kib()?;
    let server_conns = server.connections().unwrap_or(0);
    writing_done.store(true, Ordering::SeqCst);
    poller.await.map_err(|e| anyhow!("poller task: {e}"))?;
    let server_peak = server.peak_rss_kib()?;
    let client_rss = measure::self_rss_kib()?;

    // Sessions that ended on their own are errors; then stop the rest.
    let mut dropped = 0u64;
    let mut first_error = None;
    for s in sessions {
        let ended_early = s.is_finished();
        let result = s.stop().await;
        if ended_early || result.is_err() {
            dropped += 1;
            if first_error.is_none() {
                first_error = Some(match result {
                    Err(e) => format!("{e:#}"),
                    Ok(_) => "ended before it was stopped".into(),
                });
            }
        }
    }
    let write_errors = write_errors.load(Ordering::SeqCst);
    let lost = lost.load(Ordering::SeqCst);
    let timed = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    // Worst latency of each 10 s of the window: shows whether slow pushes are a start-up
    // transient, periodic, or spread out.
    let mut by_window = vec![0.0f64; (secs as usize).div_ceil(10)];
    for (second, latency) in &timed {
        if let Some(w) = by_window.get_mut(second / 10) {
            *w = w.max(*latency);
        }
    }
    say(format!(
        "w4: worst latency (ms) per 10 s of writing: {by_window:?}"
    ));
    out.param("latencyMaxMsPer10s", by_window);
    let mut latencies: Vec<f64> = timed.into_iter().map(|(_, l)| l).collect();
    latencies.sort_by(f64::total_cmp);
    let expected_edits = (writers as u64) * secs;

    // Verify: every device of a grid holds its writer's records, field for field.
    let mut checked = 0;
    for (g, grid) in members.iter().enumerate() {
        for &d in &grid[1..] {
            let mut writer = lock(&replicas[g]);
            let mut device = lock(&replicas[d]);
            checked += measure::same_contents(&mut device, &mut writer)
                .with_context(|| format!("device {d} of grid {g} differs from its writer"))?;
        }
    }
    if dropped + write_errors + lost > 0 || latencies.len() as u64 != expected_edits {
        bail!(
            "errors: {dropped} sessions dropped (first: {}), {write_errors} failed writes, \
             {lost} edits not received within {} s; {} of {expected_edits} edits measured",
            first_error.unwrap_or_default(),
            LOST_AFTER.as_secs(),
            latencies.len()
        );
    }
    out.param("verifiedRecordCopies", checked as u64);

    out.metric("edits", latencies.len() as u64);
    out.metric("latencyP50Ms", measure::percentile(&latencies, 50.0));
    out.metric("latencyP99Ms", measure::percentile(&latencies, 99.0));
    out.metric(
        "latencyMaxMs",
        latencies.last().copied().unwrap_or_default(),
    );
    out.metric("serverConnections", server_conns);
    out.metric("serverRssMib", mib(server_rss));
    out.metric("serverPeakRssMib", mib(server_peak));
    out.metric("serverCpuSecs", round3(server_cpu));
    out.metric(
        "serverCpuPct",
        round3(100.0 * server_cpu / writing.as_secs_f64()),
    );
    out.metric("clientCpuSecs", round3(client_cpu));
    out.metric("clientRssMib", mib(client_rss));
    out.metric("errors", dropped + write_errors + lost);
    drop(dirs);
    Ok(out)
}

/// Creates and signs in the devices, a few at a time: device d is in grid d % grids.
async fn create_devices(
    root: &std::path::Path,
    urls: &[String],
    grids: &[String],
    n: usize,
) -> Result<Vec<Device>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = Vec::with_capacity(n);
    for d in 0..n {
        let url = urls[(d / grids.len()) % urls.len()].clone();
        let (root, limit) = (root.to_path_buf(), limit.clone());
        let user = format!("worker-{}", grids[d % grids.len()]);
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            setup::new_device(&root, &url, &user).await
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.push(t.await.map_err(|e| anyhow!("device task: {e}"))??);
    }
    Ok(all)
}

async fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
