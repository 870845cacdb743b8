//! Every device and server set-up the bench does, in one place: starting the relay process and
//! creating its areas and accounts, creating and signing in a replica, syncing once, going live.
//!
//! Nothing else in the bench opens a replica, signs a device in, or talks to the sync transport.
//! When the way a device joins or authenticates changes again, this is the one file to adapt.
//!
//! Accounts: each workload's server gets the areas county, street, community "bench-community"
//! and the workload's grids under it (via `gridsync-server admin`, as an operator would), one
//! grid-worker account per grid (or per writing device) and, where needed, an office account of
//! the community. Devices sign in with the transport's `sign_in`; the server decides their grids.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::protocol::LoginResponse;
use gridsync_core::transport::{self, Progress, SyncReport};
use gridsync_core::{Replica, ReplicaKey};
use tempfile::TempDir;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::measure;

// ------------------------------------------------------------------ the relay process

/// The password of every bench account.
pub const PASSWORD: &str = "bench-password-42";
/// The community every bench grid belongs to; office accounts work in it.
pub const COMMUNITY: &str = "bench-community";

/// A `gridsync-server` child process on 127.0.0.1 with its store in a temporary directory.
/// Killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    bin: PathBuf,
    data_dir: TempDir,
    areas_ready: bool,
    /// The relay's PostgreSQL database under `--backend postgres`; dropped after the process.
    pg: Option<crate::pg::FreshDatabase>,
    /// Further relay processes on the same database and data directory (`--relays`).
    others: Vec<(Child, SocketAddr)>,
}

/// How many relay processes a workload's server is (`--relays`; several need PostgreSQL).
static RELAYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

pub fn set_relays(n: usize) {
    RELAYS.store(n.max(1), Ordering::SeqCst);
}

pub fn relays() -> usize {
    RELAYS.load(Ordering::SeqCst)
}

/// SIGTERM, as an operator stops a relay, then SIGKILL after 15 s.
fn stop_child(child: &mut Child) -> Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Starts a relay on `listen`, retrying while the port is still being released.
fn respawn(
    bin: &Path,
    data_dir: &Path,
    listen: &str,
    database: Option<&str>,
) -> Result<(Child, SocketAddr)> {
    let mut last = None;
    for _ in 0..50 {
        match spawn_server(bin, data_dir, listen, database) {
            Ok(started) => return Ok(started),
            Err(e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("server did not restart")))
}

/// Under `cargo run`, builds (or confirms up to date) the relay binary in the same profile, so
/// `cargo run --release -p gridsync-bench` is the whole command. Run directly, the bench uses
/// whatever binary sits next to it.
fn ensure_server_built(dir: &Path) -> Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "gridsync-server"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().context("build gridsync-server")?;
    if !status.success() {
        bail!("building gridsync-server failed");
    }
    Ok(())
}

impl ServerProcess {
    /// Starts the `gridsync-server` binary that sits next to this bench binary.
    pub fn start(tmp_root: &Path) -> Result<ServerProcess> {
        let exe = std::env::current_exe().context("where is the bench binary")?;
        let dir = exe
            .parent()
            .ok_or_else(|| anyhow!("bench binary has no directory"))?;
        let bin = dir.join("gridsync-server");
        ensure_server_built(dir)?;
        if !bin.exists() {
            bail!(
                "{} not found: build it next to the bench with \
                 `cargo build --release -p gridsync-bench -p gridsync-server`",
                bin.display()
            );
        }
        let data_dir = tempfile::Builder::new()
            .prefix("server-")
            .tempdir_in(tmp_root)
            .context("server data dir")?;
        let pg = match crate::pg::backend_url() {
            Some(url) => Some(crate::pg::FreshDatabase::create(&url)?),
            None => None,
        };
        let database = pg.as_ref().map(|d| d.url.clone());
        if relays() > 1 && database.is_none() {
            bail!("several relays share one PostgreSQL database: give --backend postgres");
        }
        let (child, addr) =
            spawn_server(&bin, data_dir.path(), "127.0.0.1:0", database.as_deref())?;
        let mut others = Vec::new();
        for _ in 1..relays() {
            others.push(spawn_server(
                &bin,
                data_dir.path(),
                "127.0.0.1:0",
                database.as_deref(),
            )?);
        }
        Ok(ServerProcess {
            child,
            addr,
            bin,
            data_dir,
            areas_ready: false,
            pg,
            others,
        })
    }

    /// Stops the server (SIGTERM, as an operator would) and starts a fresh process on the same
    /// port and store: what a "fresh server process" figure (peak RSS) is measured on.
    pub fn restart(&mut self) -> Result<()> {
        let database = self.pg.as_ref().map(|d| d.url.clone());
        stop_child(&mut self.child)?;
        let (child, addr) = respawn(
            &self.bin,
            self.data_dir.path(),
            &self.addr.to_string(),
            database.as_deref(),
        )?;
        self.child = child;
        self.addr = addr;
        for (child, addr) in &mut self.others {
            stop_child(child)?;
            (*child, *addr) = respawn(
                &self.bin,
                self.data_dir.path(),
                &addr.to_string(),
                database.as_deref(),
            )?;
        }
        Ok(())
    }

    /// Every relay's address, the first one's first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.addr)
            .chain(self.others.iter().map(|(_, a)| *a))
            .collect()
    }

    /// `gridsync-server --data-dir DIR admin ARGS`, beside the running server.
    fn admin(&self, args: &[&str], stdin: Option<&str>) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("GRIDSYNC_DATABASE");
        if let Some(db) = &self.pg {
            cmd.env("GRIDSYNC_DATABASE", &db.url);
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("admin")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("run gridsync-server admin")?;
        // The password, if the command reads one; otherwise stdin is closed at once.
        if let (Some(mut input), Some(password)) = (child.stdin.take(), stdin) {
            writeln!(input, "{password}")?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "gridsync-server admin {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Adds grids under the bench community (creating county, street and community first).
    pub fn add_grids(&mut self, grids: &[String]) -> Result<()> {
        if !self.areas_ready {
            for (id, level, parent) in [
                ("bench-county", "county", None),
                ("bench-street", "street", Some("bench-county")),
                (COMMUNITY, "community", Some("bench-street")),
            ] {
                let mut args = vec!["area", "add", id, "--name", id, "--level", level];
                if let Some(p) = parent {
                    args.extend(["--parent", p]);
                }
                self.admin(&args, None)?;
            }
            self.areas_ready = true;
        }
        for grid in grids {
            self.admin(
                &[
                    "area", "add", grid, "--name", grid, "--level", "grid", "--parent", COMMUNITY,
                ],
                None,
            )?;
        }
        Ok(())
    }

    /// Adds a grid worker working in `grids`.
    pub fn add_worker(&self, username: &str, grids: &[String]) -> Result<()> {
        let mut args = vec![
            "user",
            "add",
            username,
            "--name",
            username,
            "--role",
            "grid_worker",
        ];
        for g in grids {
            args.extend(["--area", g.as_str()]);
        }
        self.admin(&args, Some(PASSWORD))
    }

    /// Adds a user of `role` over `areas` (a county office's, say).
    pub fn add_user(&self, username: &str, role: &str, areas: &[&str]) -> Result<()> {
        let mut args = vec!["user", "add", username, "--name", username, "--role", role];
        for a in areas {
            args.extend(["--area", a]);
        }
        self.admin(&args, Some(PASSWORD))
    }

    /// The relay's PostgreSQL database, under `--backend postgres`.
    pub fn database_url(&self) -> Option<&str> {
        self.pg.as_ref().map(|d| d.url.as_str())
    }

    /// Adds office staff of the bench community: they receive every grid of it.
    pub fn add_office(&self, username: &str) -> Result<()> {
        self.admin(
            &[
                "user", "add", username, "--name", username, "--role", "office", "--area",
                COMMUNITY,
            ],
            Some(PASSWORD),
        )
    }

    /// The URL a device is initialised with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.pid()).chain(self.others.iter().map(|(c, _)| c.id()))
    }

    /// Peak resident memory of the server process (VmHWM), in KiB; of several relays, the sum.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        self.pids()
            .map(|pid| measure::status_kib(&format!("/proc/{pid}/status"), "VmHWM"))
            .sum()
    }

    /// Current resident memory (VmRSS), in KiB; of several relays, the sum.
    pub fn rss_kib(&self) -> Result<u64> {
        self.pids()
            .map(|pid| measure::status_kib(&format!("/proc/{pid}/status"), "VmRSS"))
            .sum()
    }

    /// CPU seconds (user + system) the server process has used so far; of several, the sum.
    pub fn cpu_secs(&self) -> Result<f64> {
        self.pids()
            .map(|pid| measure::stat_cpu_secs(&format!("/proc/{pid}/stat")))
            .sum()
    }

    /// Bytes of the server's data directory (SQLite file, WAL, shared memory).
    /// On PostgreSQL: `pg_database_size` of the relay's database.
    pub fn data_bytes(&self) -> u64 {
        if let Some(db) = &self.pg {
            return db.size_bytes();
        }
        measure::dir_bytes(self.data_dir.path())
    }

    /// The relay's `/v1/stats`: records, attachments stored and not yet received, sessions.
    pub fn stats(&self) -> Result<serde_json::Value> {
        let body = http_get(self.addr, "/v1/stats")?;
        serde_json::from_str(&body).context("stats body")
    }

    /// Sync sessions the server holds open right now (from `/v1/stats`; of every relay).
    pub fn connections(&self) -> Result<u64> {
        let mut total = 0;
        for addr in self.addrs() {
            let body = http_get(addr, "/v1/stats")?;
            let v: serde_json::Value = serde_json::from_str(&body).context("stats body")?;
            total += v["connections"]
                .as_u64()
                .ok_or_else(|| anyhow!("no connection count in {body}"))?;
        }
        Ok(total)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        for (child, _) in &mut self.others {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // GRIDSYNC_BENCH_KEEP_STORE=1 keeps the server's store for a look inside (where its
        // bytes go): the directory is named on stderr and left for the caller to remove.
        if std::env::var_os("GRIDSYNC_BENCH_KEEP_STORE").is_some()
            && let Ok(empty) = tempfile::tempdir()
        {
            let kept = std::mem::replace(&mut self.data_dir, empty).keep();
            // Out of the run's own temporary directory, which goes at the end of the run.
            let name = kept.file_name().unwrap_or_default().to_string_lossy();
            let out = std::env::temp_dir().join(format!("gridsync-bench-kept-{name}"));
            let kept = match std::fs::rename(&kept, &out) {
                Ok(()) => out,
                Err(_) => kept,
            };
            crate::workloads::say(format!("server store kept in {}", kept.display()));
        }
    }
}

/// Starts the server binary and waits until it is healthy; returns the process and its address.
fn spawn_server(
    bin: &Path,
    data_dir: &Path,
    listen: &str,
    database: Option<&str>,
) -> Result<(Child, SocketAddr)> {
    let mut cmd = Command::new(bin);
    cmd.env_remove("GRIDSYNC_DATABASE");
    if let Some(url) = database {
        cmd.env("GRIDSYNC_DATABASE", url);
    }
    let mut child = cmd
        .args(["--listen", listen, "--data-dir"])
        .arg(data_dir)
        // Every simulated device connects from 127.0.0.1, and W4 enrols many devices per user:
        // lift the per-address and per-user caps (the defaults are for real fleets).
        .args(["--max-connections-per-address", "1000000"])
        .args(["--max-devices-per-user", "1000000"])
        .env_remove("GRIDSYNC_LISTEN")
        .env_remove("GRIDSYNC_DATA_DIR")
        .env_remove("GRIDSYNC_DOC_CACHE")
        .env_remove("GRIDSYNC_MAX_SESSIONS")
        .env_remove("GRIDSYNC_MAX_CONNECTIONS")
        .env("RUST_LOG", "info,tower_http=warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("server stdout not captured"))?;
    // The server logs on stdout: find where it listens, then keep draining so it never blocks.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::Builder::new()
        .name("server-log".into())
        .spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sent {
                    continue;
                }
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    sent = tx.send(addr).is_ok();
                }
            }
        })?;
    let addr = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("gridsync-server did not say where it listens (is {listen} free?)");
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad listen address {addr:?}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(addr, "/healthz") {
            Ok(body) if body.contains("\"ok\"") => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("gridsync-server is not healthy");
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Ok((child, addr))
}

/// A plain HTTP/1.1 GET on 127.0.0.1, returning the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", out.lines().next().unwrap_or("no answer"));
    }
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

// ------------------------------------------------------------------ devices

/// A device: a replica in its own temporary directory, initialised for one worker and grid(s).
pub struct Device {
    pub replica: Replica,
    // Declared after the replica so the replica is closed before its directory is removed.
    dir: TempDir,
}

impl Device {
    /// Splits the device for a live session, which shares the replica with the bench.
    pub fn into_shared(self) -> (Arc<Mutex<Replica>>, TempDir) {
        (Arc::new(Mutex::new(self.replica)), self.dir)
    }
}

/// A fresh directory for a replica, under `root`.
pub fn device_dir(root: &Path) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("device-")
        .tempdir_in(root)
        .context("device dir")
}

/// Creates a replica in a fresh directory and signs it in as `username` (an existing account).
pub async fn new_device(root: &Path, server_url: &str, username: &str) -> Result<Device> {
    let dir = device_dir(root)?;
    let replica = sign_in(dir.path(), server_url, username).await?;
    Ok(Device { replica, dir })
}

/// Opens the replica in `dir` and signs it in as `username`, unless it already is.
pub async fn sign_in(dir: &Path, server_url: &str, username: &str) -> Result<Replica> {
    let mut r = open_replica(dir)?;
    if r.identity().is_err() {
        transport::sign_in(&mut r, server_url, username, PASSWORD, "gridsync-bench")
            .await
            .with_context(|| format!("sign in as {username}"))?;
    }
    Ok(r)
}

/// A replica enrolled as if a sign-in had happened, for a workload that never syncs (W3).
pub fn offline_replica(dir: &Path, username: &str, grids: &[String]) -> Result<Replica> {
    let mut r = open_replica(dir)?;
    if r.identity().is_err() {
        let login = LoginResponse {
            device_id: format!("offline-{username}"),
            token: "offline".into(),
            user_id: username.into(),
            username: username.into(),
            display_name: username.into(),
            role: "grid_worker".into(),
            grids: grids.to_vec(),
        };
        r.enrol("http://127.0.0.1:9", &login)
            .context("enrol offline")?;
    }
    Ok(r)
}

// ------------------------------------------------------------------ encryption

/// Whether the bench's replicas are encrypted (`--encryption`), switched between the two halves
/// of a paired run. The fresh device processes learn it from [`KEY_ENV`].
static ENCRYPTED: AtomicBool = AtomicBool::new(false);
/// Tells a device process (W3's cold open, W5's new device) the replicas' key.
const KEY_ENV: &str = "GRIDSYNC_BENCH_REPLICA_KEY";
/// The bench's key: a raw 256-bit key, as a phone app keeps in the Keystore or Keychain (no
/// key derivation at open; a passphrase would add PBKDF2's 256,000 rounds to every open).
const BENCH_KEY: &str = "x'4242424242424242424242424242424242424242424242424242424242424242'";

/// Encrypts the replicas created and opened from now on (or not).
pub fn set_encrypted(on: bool) {
    ENCRYPTED.store(on, Ordering::SeqCst);
}

/// How the replicas of this run are stored, for the `replicaKey` parameter.
pub fn replica_key_param() -> &'static str {
    if replica_key().is_some() {
        "raw 256-bit key (SQLCipher 4, AES-256 + HMAC-SHA512 per page)"
    } else {
        "none (plain SQLite)"
    }
}

fn replica_key() -> Option<&'static str> {
    if ENCRYPTED.load(Ordering::SeqCst) {
        return Some(BENCH_KEY);
    }
    std::env::var(KEY_ENV)
        .ok()
        .filter(|k| k == BENCH_KEY)
        .map(|_| BENCH_KEY)
}

/// Opens (or creates) a replica, with the run's key if it is encrypted (a device starting up).
pub fn open_replica(dir: &Path) -> Result<Replica> {
    let opened = match replica_key() {
        Some(text) => ReplicaKey::parse(text).and_then(|key| Replica::open_with_key(dir, &key)),
        None => Replica::open(dir),
    };
    opened.with_context(|| format!("open replica {}", dir.display()))
}

// ------------------------------------------------------------------ syncing

/// One sync session: upload the outbox, catch up, disconnect.
pub async fn sync(replica: &mut Replica) -> Result<SyncReport> {
    transport::sync_once(replica, None)
        .await
        .context("sync_once")
}

/// As [`sync`], calling `progress` after every stored catch-up batch.
pub async fn sync_with_progress(
    replica: &mut Replica,
    progress: impl FnMut(Progress) + Send,
) -> Result<SyncReport> {
    transport::sync_once(replica, Some(Box::new(progress)))
        .await
        .context("sync_once")
}

/// A device's live session: connected, uploading local writes as they happen, storing pushes.
pub struct Live {
    writes: Arc<Notify>,
    stop: Arc<Notify>,
    task: JoinHandle<gridsync_core::Result<SyncReport>>,
}

/// Starts a live session for a shared replica (on the current tokio runtime).
pub fn go_live(replica: Arc<Mutex<Replica>>) -> Live {
    let writes = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(transport::run_live(replica, writes.clone(), stop.clone()));
    Live { writes, stop, task }
}

/// Tells a live session that a local write is waiting to be uploaded; cheap to clone.
#[derive(Clone)]
pub struct WriteSignal(Arc<Notify>);

impl WriteSignal {
    pub fn wrote(&self) {
        self.0.notify_one();
    }
}

impl Live {
    pub fn write_signal(&self) -> WriteSignal {
        WriteSignal(self.writes.clone())
    }

    /// Whether the session has ended (on its own, that is an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends the session and returns what it did, or why it had ended.
    pub async fn stop(self) -> Result<SyncReport> {
        self.stop.notify_one();
        match self.task.await {
            Ok(result) => result.context("live session"),
            Err(e) => Err(anyhow!("live session task failed: {e}")),
        }
    }
}

/// The tokio runtime devices run on.
pub fn runtime(worker_threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// This bench binary as a fresh device process (W3's cold open, W5's new device).
///
/// `GRIDSYNC_BENCH_WRAP` (for example `perf record -o /tmp/w5.data --`) runs it under a profiler;
/// the figures of such a run include the profiler's overhead.
pub fn device_process() -> Result<Command> {
    let exe = std::env::current_exe().context("where is the bench binary")?;
    let wrap = std::env::var("GRIDSYNC_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    match replica_key() {
        Some(key) => cmd.env(KEY_ENV, key),
        None => cmd.env_remove(KEY_ENV),
    };
    Ok(cmd)
}
