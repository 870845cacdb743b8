//! Soak: N relay SIGKILLs while five devices upload at once, N connections cut at random byte
//! counts, and N device SIGKILLs mid-write, all at the same time; then, with the faults over,
//! every acknowledged change must be in the relay's store, none stored twice, and every replica
//! must hold what the relay holds. One JSON line says what happened.
//!
//! `GRIDSYNC_SOAK_N` sets N (3 by default, so CI runs it in seconds); `GRIDSYNC_SOAK_SEED` replays
//! a run's choices (what to write, where to cut, when to kill), printed with every result:
//!
//! ```text
//! GRIDSYNC_SOAK_N=100 cargo test -p gridsync-e2e --test soak -- --nocapture
//! ```

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridsync_core::protocol::Hash;
use gridsync_core::record::Kind;
use gridsync_core::{Query, Replica, transport};
use gridsync_e2e::proxy::{Fault, Proxy};
use gridsync_e2e::{PASSWORD, TestServer, fields};
use gridsync_server::accounts::Role;
use serde_json::json;

/// Devices uploading at once: `DEVICES - 1` in this process, and one the writer process is
/// killed on.
const DEVICES: usize = 5;
const GRID: &str = "g1";
/// Longest a sync may take before it counts as failed (a cut can leave one waiting).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// splitmix64: every choice of a run comes from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    /// Another generator, for a task of its own.
    fn fork(&mut self) -> Rng {
        Rng(self.next())
    }
}

/// What the run counted and found, shared by its tasks.
#[derive(Default)]
struct Tally {
    relay_kills: AtomicU64,
    device_kills: AtomicU64,
    returned_writes: AtomicU64,
    lost_at_kills: AtomicU64,
    failed_syncs: AtomicU64,
    /// Changes that left a device's outbox: the relay acknowledged them.
    acknowledged: Mutex<HashSet<Hash>>,
    /// Records a device was told were written.
    written: Mutex<HashSet<String>>,
    findings: Mutex<Vec<String>>,
}

impl Tally {
    fn finding(&self, text: String) {
        eprintln!("soak finding: {text}");
        self.findings.lock().unwrap().push(text);
    }
}

/// The changes waiting in a replica's outbox, and how many the relay refused.
fn outbox(dir: &Path) -> (HashSet<Hash>, u64) {
    let conn = rusqlite::Connection::open(dir.join(gridsync_core::store::DB_FILE)).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut stmt = conn.prepare("SELECT hash, rejected FROM outbox").unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .unwrap();
    let (mut waiting, mut refused) = (HashSet::new(), 0);
    for row in rows {
        let (hash, rejected) = row.unwrap();
        if rejected.is_some() {
            refused += 1;
        } else {
            waiting.insert(Hash::try_from(hash.as_slice()).unwrap());
        }
    }
    (waiting, refused)
}

/// One sync through the proxy, bounded in time; what left the outbox counts as acknowledged.
async fn sync(r: &mut Replica, dir: &Path, tally: &Tally) -> bool {
    let (before, _) = outbox(dir);
    let ok = matches!(
        tokio::time::timeout(SYNC_TIMEOUT, transport::sync_once(r, None)).await,
        Ok(Ok(_))
    );
    let (after, refused) = outbox(dir);
    if refused > 0 {
        tally.finding(format!("{} refused {refused} changes", dir.display()));
    }
    tally
        .acknowledged
        .lock()
        .unwrap()
        .extend(before.difference(&after).copied());
    if !ok {
        tally.failed_syncs.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

/// Starts the relay process on `addr` and waits (bounded) until it listens.
fn start_relay(data: &Path, addr: SocketAddr) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-test-relay"))
        .arg(data)
        .arg(addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the relay listens within a minute");
    child
}

/// Runs the writer on `dir`, SIGKILLs it once it returned `after` writes; the ids it returned.
fn write_and_kill(dir: &Path, after: u64) -> Vec<String> {
    gridsync_e2e::write_and_kill(
        Path::new(env!("CARGO_BIN_EXE_gridsync-test-writer")),
        dir,
        after,
    )
}

/// A device of this process: writes a few records or edits recent ones (its own and others'),
/// syncs, again, until told to stop.
async fn device(
    mut r: Replica,
    dir: PathBuf,
    n: usize,
    mut rng: Rng,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> Replica {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) && round < 100_000 {
        round += 1;
        // Mostly a few writes between syncs, sometimes a burst: a large upload batch for the
        // relay to be killed in the middle of.
        let writes = if rng.range(0, 8) == 0 {
            rng.range(20, 60)
        } else {
            rng.range(1, 6)
        };
        for k in 0..writes {
            if rng.range(0, 3) == 0 {
                let recent = r
                    .list(&Query {
                        kind: Some(Kind::Household),
                        limit: Some(40),
                        ..Query::default()
                    })
                    .unwrap();
                if !recent.is_empty() {
                    let id = &recent[rng.range(0, recent.len() as u64) as usize].id;
                    let patch = fields(json!({"notes": format!("设备{n}第{round}轮改{k}")}));
                    if let Err(e) = r.update(id, patch) {
                        tally.finding(format!("device {n} cannot edit {id}: {e}"));
                    }
                    continue;
                }
            }
            let f = fields(json!({
                "head_name": format!("设备{n}第{round}轮{k}"),
                "household_type": "registered",
            }));
            match r.create(Kind::Household, f) {
                Ok(record) => {
                    tally.written.lock().unwrap().insert(record.id);
                }
                Err(e) => tally.finding(format!("device {n} cannot write: {e}")),
            }
        }
        sync(&mut r, &dir, &tally).await;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 40))).await;
    }
    r
}

/// The device the writer runs on: N times the writer is killed mid-write, the replica reopened
/// and checked for every write that returned, then synced.
async fn killed_device(dir: PathBuf, n: u64, mut rng: Rng, tally: Arc<Tally>, until: Instant) {
    for _ in 0..n {
        if Instant::now() > until {
            return;
        }
        let after = rng.range(1, 25);
        let d = dir.clone();
        let returned = tokio::task::spawn_blocking(move || write_and_kill(&d, after))
            .await
            .unwrap();
        tally.device_kills.fetch_add(1, Ordering::Relaxed);
        tally
            .returned_writes
            .fetch_add(returned.len() as u64, Ordering::Relaxed);
        let mut r = match Replica::open(&dir) {
            Ok(r) => r,
            Err(e) => {
                tally.finding(format!("the killed device's replica does not open: {e}"));
                return;
            }
        };
        for id in &returned {
            if let Err(e) = r.get(id) {
                tally.lost_at_kills.fetch_add(1, Ordering::Relaxed);
                tally.finding(format!("write {id} returned before a SIGKILL, then: {e}"));
            }
        }
        tally.written.lock().unwrap().extend(returned);
        sync(&mut r, &dir, &tally).await;
    }
}

/// SIGKILLs the relay `n` times at random moments, restarting it on the same data each time.
fn kill_relay(
    mut relay: Child,
    data: &Path,
    addr: SocketAddr,
    n: u64,
    mut rng: Rng,
    tally: &Tally,
    until: Instant,
) -> Child {
    for _ in 0..n {
        if Instant::now() > until {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.range(100, 400)));
        relay.kill().unwrap(); // SIGKILL: no shutdown, no flush
        relay.wait().unwrap();
        tally.relay_kills.fetch_add(1, Ordering::Relaxed);
        relay = start_relay(data, addr);
    }
    relay
}

/// What the relay's store holds: every change hash with how many times it is logged, and each
/// document's heads in the grid.
struct Stored {
    log: BTreeMap<Hash, u64>,
    docs: BTreeMap<String, Vec<Hash>>,
}

fn stored(data: &Path) -> Stored {
    let conn = rusqlite::Connection::open(data.join(gridsync_server::storage::DB_FILE)).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut log = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT hash FROM log").unwrap();
    for hash in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
        *log.entry(Hash::try_from(hash.unwrap().as_slice()).unwrap())
            .or_default() += 1;
    }
    let mut docs = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT doc_id, heads FROM docs WHERE grid_id = ?1")
        .unwrap();
    let rows = stmt
        .query_map([GRID], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap();
    for row in rows {
        let (id, blob) = row.unwrap();
        let mut heads: Vec<Hash> = blob
            .chunks(32)
            .map(|c| Hash::try_from(c).unwrap())
            .collect();
        heads.sort();
        docs.insert(id, heads);
    }
    Stored { log, docs }
}

fn heads(r: &Replica) -> BTreeMap<String, Vec<Hash>> {
    r.doc_heads(GRID)
        .unwrap()
        .into_iter()
        .map(|(id, mut h)| {
            h.sort();
            (id, h)
        })
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_soak_relay_kills_cuts_and_device_kills_lose_and_duplicate_nothing() {
    let n = env_u64("GRIDSYNC_SOAK_N").unwrap_or(3).max(1);
    let seed = env_u64("GRIDSYNC_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("soak: n={n} seed={seed} (GRIDSYNC_SOAK_SEED={seed} replays its choices)");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let tally = Arc::new(Tally::default());

    // Accounts, made by the relay's library on the data directory the relay process then serves.
    let data = tempfile::tempdir().unwrap();
    let setup = TestServer::start(data.path()).await;
    for d in 0..=DEVICES {
        setup
            .user(&format!("w{d}"), Role::GridWorker, &[GRID])
            .await;
    }
    setup.stop().await;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = start_relay(data.path(), addr);
    let proxy = Proxy::start(addr).await;

    let dirs: Vec<_> = (0..=DEVICES)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut replicas = Vec::new();
    for (d, dir) in dirs.iter().enumerate().take(DEVICES) {
        let mut r = Replica::open(dir.path()).unwrap();
        transport::sign_in(&mut r, &proxy.url(), &format!("w{d}"), PASSWORD, "soak")
            .await
            .unwrap();
        replicas.push(r);
    }
    // The writer process opens the last device's replica itself.
    replicas.pop();
    let killed_dir = dirs[DEVICES - 1].path().to_path_buf();

    // Bounded: a run that cannot make its N of each in this time says so and fails.
    let until = Instant::now() + Duration::from_secs(120 + 5 * n);
    let stop = Arc::new(AtomicBool::new(false));
    let devices: Vec<_> = replicas
        .into_iter()
        .enumerate()
        .map(|(d, r)| {
            let dir = dirs[d].path().to_path_buf();
            tokio::spawn(device(r, dir, d, rng.fork(), tally.clone(), stop.clone()))
        })
        .collect();
    let writer = tokio::spawn(killed_device(
        killed_dir.clone(),
        n,
        rng.fork(),
        tally.clone(),
        until,
    ));
    let killer = {
        let (data, rng, tally) = (data.path().to_path_buf(), rng.fork(), tally.clone());
        tokio::task::spawn_blocking(move || kill_relay(relay, &data, addr, n, rng, &tally, until))
    };
    // Connections cut one planned fault at a time, each at a random byte count either way.
    let mut cut_rng = rng.fork();
    while proxy.cuts() < n && Instant::now() < until {
        if proxy.planned() == 0 {
            let at = Some(cut_rng.range(16, 8_000));
            let fault = if cut_rng.range(0, 2) == 0 {
                Fault {
                    cut_up_after: at,
                    ..Fault::default()
                }
            } else {
                Fault {
                    cut_down_after: at,
                    ..Fault::default()
                }
            };
            proxy.plan([fault]);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.clear();
    let mut relay = killer.await.unwrap();
    writer.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    // Each replica with the index of its directory in `dirs`.
    let mut replicas = Vec::new();
    for (d, task) in devices.into_iter().enumerate() {
        replicas.push((d, task.await.unwrap()));
    }
    match Replica::open(&killed_dir) {
        Ok(r) => replicas.push((DEVICES - 1, r)),
        Err(e) => tally.finding(format!("the killed device's replica does not open: {e}")),
    }
    let (relay_kills, device_kills, cuts) = (
        tally.relay_kills.load(Ordering::Relaxed),
        tally.device_kills.load(Ordering::Relaxed),
        proxy.cuts(),
    );
    for (what, count) in [
        ("relay kills", relay_kills),
        ("device kills", device_kills),
        ("connection cuts", cuts),
    ] {
        if count < n {
            tally.finding(format!("only {count} {what} of {n} in the time allowed"));
        }
    }

    // The faults are over: every device syncs until it has nothing left to send, then once more
    // so that it has what the others sent.
    for round in 0..4 {
        let mut waiting = 0;
        for (d, r) in replicas.iter_mut() {
            let d = *d;
            let mut synced = false;
            for _ in 0..10 {
                if sync(r, dirs[d].path(), &tally).await {
                    synced = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !synced {
                tally.finding(format!("device {d} cannot sync with the faults over"));
            }
            waiting += outbox(dirs[d].path()).0.len();
        }
        if waiting == 0 && round >= 1 {
            break;
        }
    }
    // A device new to the grid gets each logged change exactly once.
    let fresh_dir = dirs[DEVICES].path();
    let mut fresh = Replica::open(fresh_dir).unwrap();
    transport::sign_in(
        &mut fresh,
        &proxy.url(),
        &format!("w{DEVICES}"),
        PASSWORD,
        "soak",
    )
    .await
    .unwrap();
    let fresh_received = match transport::sync_once(&mut fresh, None).await {
        Ok(report) => report.stats.changes_received,
        Err(e) => {
            tally.finding(format!("a new device cannot sync: {e}"));
            0
        }
    };
    replicas.push((DEVICES, fresh));
    relay.kill().unwrap();
    relay.wait().unwrap();

    let relay_has = stored(data.path());
    let log_entries: u64 = relay_has.log.values().sum();
    let duplicates = relay_has.log.values().filter(|&&c| c > 1).count();
    let acknowledged = tally.acknowledged.lock().unwrap().clone();
    let lost = acknowledged
        .iter()
        .filter(|h| !relay_has.log.contains_key(*h))
        .count();
    if lost > 0 {
        tally.finding(format!(
            "{lost} acknowledged changes are not in the relay's log"
        ));
    }
    if duplicates > 0 {
        tally.finding(format!("{duplicates} changes are logged more than once"));
    }
    if fresh_received != log_entries {
        tally.finding(format!(
            "a new device received {fresh_received} changes of the {log_entries} logged"
        ));
    }
    let written = tally.written.lock().unwrap().clone();
    let missing = written
        .iter()
        .filter(|id| !relay_has.docs.contains_key(*id))
        .count();
    if missing > 0 {
        tally.finding(format!(
            "{missing} records written on devices are not on the relay"
        ));
    }
    let mut converged = true;
    for (d, r) in &replicas {
        let (waiting, refused) = outbox(dirs[*d].path());
        if !waiting.is_empty() || refused > 0 {
            tally.finding(format!(
                "device {d} still holds {} unsent and {refused} refused changes",
                waiting.len()
            ));
        }
        let own = heads(r);
        if own != relay_has.docs {
            converged = false;
            let differ = relay_has
                .docs
                .keys()
                .chain(own.keys())
                .collect::<HashSet<_>>()
                .into_iter()
                .filter(|id| own.get(*id) != relay_has.docs.get(*id))
                .count();
            tally.finding(format!(
                "device {d} holds {} records, the relay {}; {differ} differ or are missing on one side",
                own.len(),
                relay_has.docs.len()
            ));
        }
    }

    let findings = tally.findings.lock().unwrap().clone();
    let line = json!({
        "n": n,
        "seed": seed,
        "devices": DEVICES,
        "relay_kills": relay_kills,
        "connection_cuts": cuts,
        "device_kills": device_kills,
        "returned_writes": tally.returned_writes.load(Ordering::Relaxed),
        "lost_at_kills": tally.lost_at_kills.load(Ordering::Relaxed),
        "failed_syncs": tally.failed_syncs.load(Ordering::Relaxed),
        "acknowledged_changes": acknowledged.len(),
        "log_entries": log_entries,
        "records": relay_has.docs.len(),
        "lost": lost,
        "duplicates": duplicates,
        "converged": converged,
        "findings": findings,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{line}");
    assert!(
        findings.is_empty() && lost == 0 && duplicates == 0 && converged,
        "soak failed (replay with GRIDSYNC_SOAK_SEED={seed}): {line}"
    );
}
