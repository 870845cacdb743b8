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
mod setup;
mod shaper;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Map, Value, json};

use workloads::{Ctx, Outcome, say};

const ALL: [&str; 6] = ["w1", "w2", "w3", "w4", "w5", "w6"];
/// W6 (about 4 minutes a run over its slow link) only when named.
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
        bail!("unknown workload {bad:?}: choose from w1, w2, w3, w4, w5, w6");
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
    };
    let rt = setup::runtime(args.threads)?;
    let runs = args.runs.max(1);
    let mut all_verified = true;
    let modes: &[bool] = match args.encryption {
        Encryption::Off => &[false],
        Encryption::On => &[true],
        Encryption::Paired => &[false, true],
    };
    for name in &chosen {
        // One list of outcomes per mode; a paired run alternates the modes run by run, so
        // both see the same machine.
        let mut outcomes: Vec<Vec<Outcome>> = modes.iter().map(|_| Vec::new()).collect();
        let mut failure = None;
        'runs: for i in 0..runs {
            for (m, &encrypted) in modes.iter().enumerate() {
                setup::set_encrypted(encrypted);
                if runs > 1 || modes.len() > 1 {
                    say(format!(
                        "{name}: run {} of {runs}{}",
                        i + 1,
                        if encrypted {
                            ", encrypted replicas"
                        } else {
                            ""
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
                        _ => workloads::w6::run(&ctx).await,
                    }
                });
                match result {
                    Ok(mut outcome) => {
                        outcome.param("replicaKey", setup::replica_key_param());
                        outcome.param("loadAvgAtStart", load);
                        outcome.param("loadAvgAtEnd", measure::load_avg());
                        outcomes[m].push(outcome)
                    }
                    Err(e) => {
                        failure = Some(format!("{e:#}"));
                        break 'runs;
                    }
                }
            }
        }
        match failure {
            None => {
                let lines: Vec<(String, Map<String, Value>)> = outcomes
                    .into_iter()
                    .map(|o| summary(name, args.quick, runs, o))
                    .collect();
                for (line, _) in &lines {
                    println!("{line}");
                }
                if let [(_, plain), (_, encrypted)] = lines.as_slice() {
                    println!("{}", ratios(name, plain, encrypted));
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
    Ok(all_verified)
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

/// The line after a paired run's two: every figure of the encrypted run divided by the plain
/// run's (1.10 = encryption costs 10 % more).
fn ratios(name: &str, plain: &Map<String, Value>, encrypted: &Map<String, Value>) -> String {
    let mut ratios = Map::new();
    for (key, value) in encrypted {
        let (Some(e), Some(p)) = (value.as_f64(), plain.get(key).and_then(Value::as_f64)) else {
            continue;
        };
        if p > 0.0 {
            ratios.insert(key.clone(), Value::from(measure::round3(e / p)));
        }
    }
    format!(
        "{{\"workload\":{},\"compare\":\"encrypted / plain replicas\",\"ratios\":{}}}",
        Value::from(name),
        Value::Object(ratios)
    )
}
