//! `gridsync-bench`: runs the workloads W1–W5 of BENCHMARKS.md, and W6 (photos over a slow link)
//! when named, against a real `gridsync-server`
//! process on 127.0.0.1 and real replicas, verifies each result before printing any figure, and
//! prints one JSON line per workload on stdout (progress goes to stderr).
//!
//! ```text
//! gridsync-bench                 # W1..W5 as defined
//! gridsync-bench --quick         # smaller N everywhere
//! gridsync-bench w1 w3 --runs 3  # chosen workloads, medians of 3 runs
//! gridsync-bench --records 50000 w1 w3 w5   # the scaling table
//! gridsync-bench --devices 5000 w4
//! gridsync-bench --encryption paired w1 w3 w5   # plain and encrypted replicas, same run
//! gridsync-bench w6 --runs 3     # photos over a 1 MB/s link, cut once (about 4 min a run)
//! gridsync-bench w2 w4 --backend postgres --relays 2   # two relays on one database
//! gridsync-bench w2 w4 --backend paired --relays 1,2   # SQLite, then PostgreSQL with 1 and 2
//! gridsync-bench w7              # a county of 1,000,000 records on PostgreSQL (--communities N)
//! gridsync-bench w1 w2 w3 --runs 3 --peer pouchdb            # side by side with PouchDB
//! gridsync-bench w1 w2 w3 --runs 3 --peer pouchdb --busy 1   # the same with one core busy
//! ```
//!
//! The `gridsync-server` binary must sit next to this one (build both with
//! `cargo build --release -p gridsync-bench -p gridsync-server`). W3 and W5 re-run this binary as a
//! fresh device process (`gridsync-bench w3-open DIR`, `gridsync-bench w5-device DIR`), and W6
//! (`gridsync-bench w6-device DIR`);
//! `GRIDSYNC_BENCH_WRAP="perf record -o FILE --"` runs those under a profiler.

mod data;
mod measure;
mod meter;
mod peer;
mod pg;
mod setup;
mod shaper;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Map, Value, json};

use workloads::{Ctx, Outcome, say};

const ALL: [&str; 7] = ["w1", "w2", "w3", "w4", "w5", "w6", "w7"];
/// W6 (about 4 minutes a run over its slow link) and W7 (a county on PostgreSQL) only when named.
const DEFAULT: [&str; 5] = ["w1", "w2", "w3", "w4", "w5"];

/// Runs the benchmark workloads W1–W5 against a real gridsync-server and real replicas.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Workloads to run (w1 … w6); W1–W5 when none is named.
    workloads: Vec<String>,
    /// Smaller N for every workload, for a run of a minute or two.
    #[arg(long)]
    quick: bool,
    /// Run each workload K times and print the median of every figure.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Records per device for W1, W3 and W5 (the scaling table), instead of the defined N;
    /// W6: visits.
    #[arg(long)]
    records: Option<usize>,
    /// W4: connected devices (default 1,000; --quick 100).
    #[arg(long)]
    devices: Option<usize>,
    /// W4: writing devices (default 50; --quick 10).
    #[arg(long)]
    writers: Option<usize>,
    /// W4: seconds of writing (default 60; --quick 10).
    #[arg(long)]
    secs: Option<u64>,
    /// Directory for temporary replicas and server stores (default: the system temp dir).
    #[arg(long)]
    tmp: Option<PathBuf>,
    /// W4: directory for the live devices' replicas (default /dev/shm when it exists).
    #[arg(long)]
    live_dir: Option<PathBuf>,
    /// Worker threads of the bench's tokio runtime, which all in-process devices share.
    #[arg(long, default_value_t = 32)]
    threads: usize,
    /// Device replicas plain (off), encrypted with a raw key (on), or both in one run (paired:
    /// each run of a workload once plain, once encrypted, then a line of ratios).
    #[arg(long, value_enum, default_value_t = Encryption::Off)]
    encryption: Encryption,
    /// Also run the peer harness's W1–W3 (pouchdb or automerge) in the same invocation, run by
    /// run interleaved with gridsync's and with its sizes, then a line of ratios gridsync ÷ peer.
    #[arg(long)]
    peer: Option<String>,
    /// Where the peer harness is (default ../shared/peers, or GRIDSYNC_PEER_HARNESS); it is
    /// copied under target/peer-harness and run there.
    #[arg(long)]
    peer_harness: Option<PathBuf>,
    /// Keep N cores busy with a spinning process during every run, both sides alike.
    #[arg(long, default_value_t = 0)]
    busy: usize,
    /// The relay's store: SQLite in a temporary directory, or a fresh PostgreSQL database per
    /// relay start on the server of `--pg-url` (dropped with the relay).
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// The PostgreSQL server of `--backend postgres` (a database the bench may connect to).
    #[arg(long, env = "GRIDSYNC_BENCH_PG", default_value = pg::DEFAULT_URL)]
    pg_url: String,
    /// Relay processes on one PostgreSQL database (W2 and W4: devices spread over them); a
    /// list (`1,2`) runs each count in turn, run by run, on PostgreSQL (SQLite has one).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    relays: Vec<usize>,
    /// W7: communities of the county, 10 grids each (default 200; --quick 4).
    #[arg(long)]
    communities: Option<usize>,
    /// W7: records per grid (default 500; --quick 100).
    #[arg(long)]
    records_per_grid: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
    Paired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Encryption {
    Off,
    On,
    Paired,
}

fn main() -> ExitCode {
    // The fresh processes W3 and W5 time are this binary again, with a hidden first argument.
    let argv: Vec<String> = std::env::args().collect();
    let internal = match argv.get(1).map(String::as_str) {
        Some("w3-open") => Some(workloads::w3::child_main(&argv[2..])),
        Some("w5-device") => Some(workloads::w5::child_main(&argv[2..])),
        Some("w6-device") => Some(workloads::w6::child_main(&argv[2..])),
        Some("busy") => Some(peer::busy_main(&argv[2..])),
        _ => None,
    };
    if let Some(result) = internal {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("gridsync-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the chosen workloads; `Ok(false)` if any could not be verified.
fn run(args: Args) -> Result<bool> {
    let chosen: Vec<String> = if args.workloads.is_empty() {
        DEFAULT.iter().map(|w| w.to_string()).collect()
    } else {
        args.workloads.iter().map(|w| w.to_lowercase()).collect()
    };
    if let Some(bad) = chosen.iter().find(|w| !ALL.contains(&w.as_str())) {
        bail!("unknown workload {bad:?}: choose from w1, w2, w3, w4, w5, w6, w7");
    }
    let base = args.tmp.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("gridsync-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("temporary directory in {}", base.display()))?;
    let ctx = Ctx {
        quick: args.quick,
        root: root.path().to_path_buf(),
        records: args.records,
        devices: args.devices,
        writers: args.writers,
        secs: args.secs,
        live_dir: args.live_dir.clone(),
        communities: args.communities,
        records_per_grid: args.records_per_grid,
    };
    let rt = setup::runtime(args.threads)?;
    let runs = args.runs.max(1);
    let mut all_verified = true;
    let harness = match &args.peer {
        Some(name) => Some(peer::Harness::prepare(name, args.peer_harness.as_deref())?),
        None => None,
    };
    let _busy = peer::Busy::start(args.busy)?;
    // The side-by-side rows of every workload, printed as one table at the end.
    let mut table: Vec<(String, Vec<peer::Row>)> = Vec::new();
    // A mode = (encrypted replicas, relay on PostgreSQL, relay processes); a paired run has
    // two, or more with several relay counts.
    let encryptions: &[bool] = match args.encryption {
        Encryption::Off => &[false],
        Encryption::On => &[true],
        Encryption::Paired => &[false, true],
    };
    let backends: &[bool] = match args.backend {
        Backend::Sqlite => &[false],
        Backend::Postgres => &[true],
        Backend::Paired => &[false, true],
    };
    if encryptions.len() > 1 && backends.len() > 1 {
        bail!("--encryption paired 与 --backend paired 只能选一个 pair one of the two, not both");
    }
    if args.relays.iter().any(|&n| n > 1) && !backends.contains(&true) {
        bail!("多个中继需要 PostgreSQL several relays need --backend postgres (or paired)");
    }
    let relay_counts = &args.relays;
    let modes: Vec<(bool, bool, usize)> = encryptions
        .iter()
        .flat_map(|&e| backends.iter().map(move |&p| (e, p)))
        .flat_map(|(e, p)| {
            let counts: Vec<usize> = if p { relay_counts.clone() } else { vec![1] };
            counts.into_iter().map(move |n| (e, p, n.max(1)))
        })
        .collect();
    let mode_name = |&(encrypted, postgres, relays): &(bool, bool, usize)| {
        let store = if postgres { "postgres" } else { "sqlite" };
        let replicas = if encrypted { "encrypted" } else { "plain" };
        format!("{store} relay ×{relays}, {replicas} replicas")
    };
    for name in &chosen {
        // One list of outcomes per mode; a paired run alternates the modes run by run, so
        // both see the same machine.
        let mut outcomes: Vec<Vec<Outcome>> = modes.iter().map(|_| Vec::new()).collect();
        let mut peer_outcomes: Vec<Outcome> = Vec::new();
        let side_by_side = harness
            .as_ref()
            .filter(|_| peer::SHARED.contains(&name.as_str()));
        let mut failure = None;
        'runs: for i in 0..runs {
            // The peer runs after gridsync in even runs and before it in odd ones (it takes its
            // sizes from gridsync's first run), so drift in the machine's load hits both alike.
            let peer_first = i % 2 == 1;
            let mut run_peer = |outcomes: &[Vec<Outcome>]| -> Result<()> {
                let (Some(h), Some(first)) = (side_by_side, outcomes[0].first()) else {
                    return Ok(());
                };
                say(format!(
                    "{name}: run {} of {runs}, peer {}",
                    i + 1,
                    h.peer()
                ));
                let mut outcome = h.run(name, &first.params, root.path())?;
                outcome.param("busyCores", args.busy as u64);
                peer_outcomes.push(outcome);
                Ok(())
            };
            if peer_first && let Err(e) = run_peer(&outcomes) {
                failure = Some(format!("{e:#}"));
                break 'runs;
            }
            for (m, &(encrypted, postgres, relays)) in modes.iter().enumerate() {
                setup::set_encrypted(encrypted);
                setup::set_relays(relays);
                // W7 is a county's store: PostgreSQL whatever --backend says.
                let postgres = postgres || name == "w7";
                pg::set_backend(postgres.then(|| args.pg_url.clone()));
                if runs > 1 || modes.len() > 1 {
                    say(format!(
                        "{name}: run {} of {runs}{}{}",
                        i + 1,
                        if encrypted {
                            ", encrypted replicas"
                        } else {
                            ""
                        },
                        match (postgres, relays) {
                            (false, _) => String::new(),
                            (true, 1) => ", PostgreSQL relay".to_string(),
                            (true, n) => format!(", {n} PostgreSQL relays"),
                        }
                    ));
                }
                let load = measure::load_avg();
                let result = rt.block_on(async {
                    match name.as_str() {
                        "w1" => workloads::w1::run(&ctx).await,
                        "w2" => workloads::w2::run(&ctx).await,
                        "w3" => workloads::w3::run(&ctx).await,
                        "w4" => workloads::w4::run(&ctx).await,
                        "w5" => workloads::w5::run(&ctx).await,
                        "w6" => workloads::w6::run(&ctx).await,
                        _ => workloads::w7::run(&ctx).await,
                    }
                });
                match result {
                    Ok(mut outcome) => {
                        outcome.param("replicaKey", setup::replica_key_param());
                        outcome.param(
                            "serverBackend",
                            if postgres {
                                "postgres (fresh database per relay start; serverDataBytes = \
                                 pg_database_size)"
                            } else {
                                "sqlite"
                            },
                        );
                        outcome.param("relays", relays as u64);
                        outcome.param("loadAvgAtStart", load);
                        outcome.param("loadAvgAtEnd", measure::load_avg());
                        outcome.param("busyCores", args.busy as u64);
                        outcomes[m].push(outcome)
                    }
                    Err(e) => {
                        failure = Some(format!("{e:#}"));
                        break 'runs;
                    }
                }
            }
            if !peer_first && let Err(e) = run_peer(&outcomes) {
                failure = Some(format!("{e:#}"));
                break 'runs;
            }
        }
        match failure {
            None => {
                // gridsync's side of the comparison: the first mode's runs (plain replicas
                // unless only encrypted ones were asked for).
                let ours: Vec<Outcome> = outcomes[0]
                    .iter()
                    .map(|o| Outcome {
                        params: Map::new(),
                        metrics: peer::gridsync_side(name, o),
                    })
                    .collect();
                let lines: Vec<(String, Map<String, Value>)> = outcomes
                    .into_iter()
                    .map(|o| summary(name, args.quick, runs, o))
                    .collect();
                for (line, _) in &lines {
                    println!("{line}");
                }
                // Every other mode against the first (a pair: the second against the first).
                if let Some((_, first)) = lines.first() {
                    for (m, (_, other)) in lines.iter().enumerate().skip(1) {
                        let compare =
                            format!("{} / {}", mode_name(&modes[m]), mode_name(&modes[0]));
                        println!("{}", ratios(name, &compare, first, other));
                    }
                }
                if let Some(h) = side_by_side {
                    let (_, ours) = summary(name, args.quick, runs, ours);
                    let (peer_line, theirs) = summary(name, args.quick, runs, peer_outcomes);
                    println!("{peer_line}");
                    let (line, rows) =
                        peer::compare_line(name, h.peer(), args.busy, runs, &ours, &theirs);
                    println!("{line}");
                    table.push((name.clone(), rows));
                }
            }
            Some(error) => {
                all_verified = false;
                say(format!("{name}: NOT VERIFIED: {error}"));
                let params = json!({"quick": args.quick, "runs": runs});
                println!(
                    "{{\"workload\":{},\"params\":{params},\"verified\":false,\"error\":{}}}",
                    Value::from(name.as_str()),
                    Value::from(error)
                );
            }
        }
    }
    setup::set_encrypted(false);
    if let (Some(h), false) = (&harness, table.is_empty()) {
        eprintln!("{}", peer_table(h.peer(), args.busy, runs, &table));
    }
    Ok(all_verified)
}

/// The side-by-side figures as the Markdown table docs/performance.md shows (on stderr; the JSON
/// lines on stdout hold the same).
fn peer_table(peer: &str, busy: usize, runs: usize, table: &[(String, Vec<peer::Row>)]) -> String {
    let mut text = format!(
        "\nmedians of {runs} run(s), busy cores: {busy}\n\n| workload | figure | gridsync | {peer} | gridsync ÷ {peer} |\n|---|---|---:|---:|---:|\n"
    );
    for (workload, rows) in table {
        for row in rows {
            text.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} |\n",
                workload.to_uppercase(),
                row.figure,
                row.ours,
                row.theirs,
                row.ratio
            ));
        }
    }
    text
}

/// One JSON line, keys in the documented order: the first run's parameters and, per figure, the
/// median over the runs. Also returns the figures, for [`ratios`].
fn summary(
    name: &str,
    quick: bool,
    runs: usize,
    outcomes: Vec<Outcome>,
) -> (String, Map<String, Value>) {
    let mut params = outcomes
        .first()
        .map(|o| o.params.clone())
        .unwrap_or_default();
    params.insert("quick".into(), quick.into());
    params.insert("runs".into(), (runs as u64).into());
    let mut metrics = Map::new();
    if let Some(first) = outcomes.first() {
        for (key, value) in &first.metrics {
            let mut values: Vec<f64> = outcomes
                .iter()
                .filter_map(|o| o.metrics.get(key).and_then(Value::as_f64))
                .collect();
            let merged = if value.is_number() && values.len() == outcomes.len() && runs > 1 {
                let m = measure::median(&mut values);
                if value.is_u64() && m.fract() == 0.0 {
                    Value::from(m as u64)
                } else {
                    Value::from(measure::round3(m))
                }
            } else {
                value.clone()
            };
            metrics.insert(key.clone(), merged);
        }
    }
    let line = format!(
        "{{\"workload\":{},\"params\":{},\"metrics\":{},\"verified\":true}}",
        Value::from(name),
        Value::Object(params),
        Value::Object(metrics.clone())
    );
    (line, metrics)
}

/// A line after a paired run's: every figure of one mode divided by the first mode's (1.10 =
/// encryption, or PostgreSQL, costs 10 % more).
fn ratios(
    name: &str,
    compare: &str,
    base: &Map<String, Value>,
    other: &Map<String, Value>,
) -> String {
    let mut ratios = Map::new();
    for (key, value) in other {
        let (Some(e), Some(p)) = (value.as_f64(), base.get(key).and_then(Value::as_f64)) else {
            continue;
        };
        if p > 0.0 {
            ratios.insert(key.clone(), Value::from(measure::round3(e / p)));
        }
    }
    format!(
        "{{\"workload\":{},\"compare\":{},\"ratios\":{}}}",
        Value::from(name),
        Value::from(compare),
        Value::Object(ratios)
    )
}
