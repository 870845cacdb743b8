//! The peer side by side: W1–W3 of the shared peer harness (PouchDB, or automerge-repo) run in
//! the same invocation as gridsync's, interleaved run by run, with the same sizes, so both sides
//! see the same machine in the same minutes. Also the background load of `--busy N`.
//!
//! The harness (`../shared/peers` beside the project, or `--peer-harness DIR`) is read-only where
//! it is kept: it is copied once under `target/peer-harness/` (next to the bench binary's
//! directory), its locked npm dependencies installed there as its `run.sh` installs them, and
//! each workload is one `node bench.mjs --peer P --workload W --out FILE` process, bounded in
//! time as `run.sh` bounds it. The peer writes a figure only after its own correctness check.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use crate::workloads::{Outcome, say};

/// The peers the harness knows.
pub const PEERS: [&str; 2] = ["pouchdb", "automerge"];

/// The workloads the harness runs; the others are gridsync's alone.
pub const SHARED: [&str; 3] = ["w1", "w2", "w3"];

/// The bound of one peer workload, as `run.sh`'s `timeout 900`.
const PEER_BOUND: Duration = Duration::from_secs(900);

/// A figure both sides report, under gridsync's name, and where the peer's result line has it.
struct Pair {
    name: &'static str,
    peer: &'static [&'static str],
}

/// The figures compared, per workload. gridsync's W1 bytes are `bytesSent + bytesReceived` and
/// its W2 office bytes `officeBytesUp + officeBytesDown` (both at the TCP socket, as the
/// harness counts its own); gridsync's W3 store is the replica's `replicaBytes`.
fn pairs(workload: &str) -> &'static [Pair] {
    match workload {
        "w1" => &[
            Pair {
                name: "catchupMs",
                peer: &["catchupMs"],
            },
            Pair {
                name: "bytesTotal",
                peer: &["atConverged", "wireBytesTotal"],
            },
            Pair {
                name: "clientCpuSecs",
                peer: &["cpuDuringCatchUp", "clientCpuS"],
            },
            Pair {
                name: "serverCpuSecs",
                peer: &["cpuDuringCatchUp", "serverCpuS"],
            },
        ],
        "w2" => &[
            Pair {
                name: "serverHoldsAllMs",
                peer: &["serverHoldsAllMs"],
            },
            Pair {
                name: "officeSyncMs",
                peer: &["officeSyncMs"],
            },
            Pair {
                name: "serverDataBytes",
                peer: &["serverDiskBytes"],
            },
            Pair {
                name: "serverPeakRssMib",
                peer: &["serverPeakRSS_MiB"],
            },
            Pair {
                name: "serverCpuSecsFanIn",
                peer: &["cpuDuringFanIn", "serverCpuS"],
            },
            Pair {
                name: "serverCpuSecsOffice",
                peer: &["cpuDuringOfficeSync", "serverCpuS"],
            },
            Pair {
                name: "officeBytes",
                peer: &["office", "wireBytesTotal"],
            },
        ],
        "w3" => &[
            Pair {
                name: "coldOpenMs",
                peer: &["coldOpenMs"],
            },
            Pair {
                name: "processPeakRssMib",
                peer: &["coldOpenPeakRSS_MiB"],
            },
            Pair {
                name: "storeBytes",
                peer: &["storeDiskBytes"],
            },
        ],
        _ => &[],
    }
}

/// gridsync's side of the compared figures, taken from its outcome (sums where the peer reports
/// one total).
pub fn gridsync_side(workload: &str, out: &Outcome) -> Map<String, Value> {
    let metric = |key: &str| out.metrics.get(key).and_then(Value::as_f64);
    let param = |key: &str| out.params.get(key).and_then(Value::as_f64);
    let sum = |a: &str, b: &str| Some(metric(a)? + metric(b)?);
    let mut side = Map::new();
    for pair in pairs(workload) {
        let value = match pair.name {
            "bytesTotal" => sum("bytesSent", "bytesReceived"),
            "officeBytes" => sum("officeBytesUp", "officeBytesDown"),
            "storeBytes" => param("replicaBytes"),
            name => metric(name),
        };
        if let Some(v) = value {
            side.insert(pair.name.into(), number(v));
        }
    }
    side
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v >= 0.0 {
        Value::from(v as u64)
    } else {
        Value::from(crate::measure::round3(v))
    }
}

/// The harness copied to a writable place with its dependencies installed, ready to run.
pub struct Harness {
    peer: String,
    dir: PathBuf,
}

impl Harness {
    /// Copies the harness from `source` (unless an identical copy is there already) and installs
    /// its locked dependencies when they are missing or older than its lock file.
    pub fn prepare(peer: &str, source: Option<&Path>) -> Result<Harness> {
        if !PEERS.contains(&peer) {
            bail!("unknown peer {peer:?}: choose from pouchdb, automerge");
        }
        let source = match source {
            Some(dir) => dir.to_path_buf(),
            None => default_source()?,
        };
        if !source.join("bench.mjs").is_file() {
            bail!(
                "{} is not the peer harness (no bench.mjs): pass --peer-harness DIR",
                source.display()
            );
        }
        let node = Command::new("node").arg("--version").output();
        match node {
            Ok(o) if o.status.success() => {}
            _ => bail!("the peer harness needs Node.js 20+ (`node` on the PATH); it was not found"),
        }
        let exe = std::env::current_exe().context("where is the bench binary")?;
        // target/release/gridsync-bench → target/peer-harness: never committed, kept between
        // runs so the npm install happens once.
        let target = exe
            .parent()
            .and_then(Path::parent)
            .context("the bench binary has no target directory")?;
        let dir = target.join("peer-harness");
        copy_tree(&source, &dir, 0).with_context(|| {
            format!(
                "copying the peer harness from {} to {}",
                source.display(),
                dir.display()
            )
        })?;
        let installed = dir.join("node_modules").join(".package-lock.json");
        let stale = match (
            modified(&installed),
            modified(&dir.join("package-lock.json")),
        ) {
            (Some(installed), Some(lock)) => installed < lock,
            _ => true,
        };
        if stale {
            say(format!(
                "peer harness: installing its locked dependencies in {}",
                dir.display()
            ));
            // As run.sh: `npm ci`, and where the registry lacks cbor-x's optional native packages
            // (npm ci refuses the lock then) `npm install` of the same locked versions.
            let ci = npm(&dir, "ci", Stdio::null())?;
            if !ci && !npm(&dir, "install", Stdio::inherit())? {
                bail!(
                    "npm could not install the peer harness's dependencies in {}",
                    dir.display()
                );
            }
        }
        Ok(Harness {
            peer: peer.to_string(),
            dir,
        })
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Runs one workload of the peer with gridsync's sizes (from its outcome's parameters) and
    /// returns its figures under gridsync's names, with the peer's whole line in `params`.
    pub fn run(&self, workload: &str, sizes: &Map<String, Value>, root: &Path) -> Result<Outcome> {
        let out_file = root.join(format!("peer-{}-{workload}.json", self.peer));
        let _ = std::fs::remove_file(&out_file);
        let mut cmd = Command::new("node");
        cmd.current_dir(&self.dir)
            .arg("bench.mjs")
            .args(["--peer", &self.peer, "--workload", workload])
            .args(size_flags(workload, sizes))
            .arg("--out")
            .arg(&out_file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().context("starting node bench.mjs")?;
        let status = wait_bounded(child, PEER_BOUND)?;
        if !status.success() {
            bail!("the peer's {workload} failed ({status}): its output above says why");
        }
        let text = std::fs::read_to_string(&out_file)
            .with_context(|| format!("the peer's result {}", out_file.display()))?;
        let line: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
            .context("the peer's result line is not JSON")?;
        if line.get("verified") != Some(&Value::Bool(true)) {
            bail!("the peer's {workload} was not verified: {text}");
        }
        let mut outcome = Outcome::default();
        outcome.param("peer", self.peer.as_str());
        if let Some(versions) = line.get("versions") {
            outcome.param("versions", versions.clone());
        }
        if let Some(params) = line.get("params") {
            outcome.param("peerParams", params.clone());
        }
        let metrics = line.get("metrics").cloned().unwrap_or_default();
        for pair in pairs(workload) {
            let mut v = &metrics;
            for key in pair.peer {
                v = v.get(key).unwrap_or(&Value::Null);
            }
            if let Some(x) = v.as_f64() {
                outcome.metric(pair.name, number(x));
            }
        }
        Ok(outcome)
    }
}

/// The harness's flags for gridsync's sizes of this workload, so both sides run the same N.
fn size_flags(workload: &str, sizes: &Map<String, Value>) -> Vec<String> {
    let get = |key: &str| sizes.get(key).and_then(Value::as_u64);
    let flags: &[(&str, &str)] = match workload {
        "w1" => &[
            ("--n", "n"),
            ("--m", "m"),
            ("--edits-m", "editsPerEditedRecord"),
            ("--new-records", "newRecords"),
            ("--seed-edits", "editsOfHistory"),
        ],
        "w2" => &[
            ("--devices", "devices"),
            ("--per-device", "recordsPerDevice"),
            ("--seed-edits", "editsOfHistory"),
        ],
        "w3" => &[("--w3-records", "n"), ("--seed-edits", "editsOfHistory")],
        _ => &[],
    };
    let mut args = Vec::new();
    for (flag, key) in flags {
        if let Some(v) = get(key) {
            args.push(flag.to_string());
            args.push(v.to_string());
        }
    }
    args
}

/// `../shared/peers` from the current directory (the project's root), where the harness is kept.
fn default_source() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("GRIDSYNC_PEER_HARNESS") {
        return Ok(PathBuf::from(dir));
    }
    let dir = Path::new("..").join("shared").join("peers");
    if dir.join("bench.mjs").is_file() {
        return Ok(dir);
    }
    bail!(
        "the peer harness was not found at ../shared/peers: pass --peer-harness DIR \
         (or set GRIDSYNC_PEER_HARNESS)"
    )
}

fn npm(dir: &Path, verb: &str, errors: Stdio) -> Result<bool> {
    let status = Command::new("npm")
        .current_dir(dir)
        .args([verb, "--no-audit", "--no-fund"])
        .stdout(Stdio::null())
        .stderr(errors)
        .status()
        .context("running npm (it comes with Node.js)")?;
    Ok(status.success())
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Copies the harness's files (not its installed modules nor its recorded results) where they
/// differ from the copy. The harness is a few dozen files a few levels deep.
fn copy_tree(from: &Path, to: &Path, depth: usize) -> Result<()> {
    if depth > 8 {
        bail!("{} is nested deeper than a harness is", from.display());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if depth == 0 && (name == "node_modules" || name == "results") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst, depth + 1)?;
        } else if std::fs::read(&dst).ok() != Some(std::fs::read(&src)?) {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn wait_bounded(mut child: Child, bound: Duration) -> Result<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the peer ran longer than {} s and was stopped",
                bound.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--busy N`: N cores kept busy by a child process for as long as this value lives, so both
/// sides are measured on a machine that also runs something else (as a phone does). A process,
/// not threads, so the bench's own CPU figures do not count it.
pub struct Busy(Option<Child>);

impl Busy {
    pub fn start(cores: usize) -> Result<Busy> {
        if cores == 0 {
            return Ok(Busy(None));
        }
        let exe = std::env::current_exe().context("where is the bench binary")?;
        let child = Command::new(exe)
            .args(["busy", &cores.to_string()])
            .stdin(Stdio::piped())
            .spawn()
            .context("starting the busy process")?;
        Ok(Busy(Some(child)))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The busy process: N threads that spin until stdin closes (the bench ended, even by a crash).
pub fn busy_main(args: &[String]) -> Result<()> {
    let cores: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .context("busy CORES")?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..cores {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x: u64 = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..100_000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
            }
        });
    }
    // Blocks until the parent closes the pipe or dies.
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// One compared figure: gridsync's median, the peer's, and gridsync ÷ peer.
pub struct Row {
    pub figure: &'static str,
    pub ours: f64,
    pub theirs: f64,
    pub ratio: f64,
}

/// The compare line: per figure, gridsync's median, the peer's median and gridsync ÷ peer
/// (0.5 = gridsync takes half the peer's time or bytes).
pub fn compare_line(
    workload: &str,
    peer: &str,
    busy: usize,
    runs: usize,
    ours: &Map<String, Value>,
    theirs: &Map<String, Value>,
) -> (String, Vec<Row>) {
    let mut ratios = Map::new();
    let mut rows = Vec::new();
    for pair in pairs(workload) {
        let (Some(g), Some(p)) = (
            ours.get(pair.name).and_then(Value::as_f64),
            theirs.get(pair.name).and_then(Value::as_f64),
        ) else {
            continue;
        };
        if p > 0.0 {
            let r = crate::measure::round3(g / p);
            ratios.insert(pair.name.into(), Value::from(r));
            rows.push(Row {
                figure: pair.name,
                ours: g,
                theirs: p,
                ratio: r,
            });
        }
    }
    let line = serde_json::json!({
        "workload": workload,
        "compare": format!("gridsync / {peer}"),
        "busyCores": busy,
        "runs": runs,
        "gridsync": ours,
        "peer": theirs,
        "ratios": ratios,
    });
    (line.to_string(), rows)
}
