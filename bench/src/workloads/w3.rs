//! W3 cold open: a fresh process opens a replica of N records and counts the open ones.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::record::Kind;
use gridsync_core::{Query, Replica};
use serde_json::{Value, json};

use super::{Ctx, Outcome, say};
use crate::data::{self, Rng, SEED};
use crate::measure::{self, mib, ms};
use crate::setup;

/// The count W3 times: records whose status is "open", from the replica's index.
fn open_query() -> Query {
    Query {
        kind: Some(Kind::Case),
        status: Some("open".into()),
        ..Query::default()
    }
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let n = ctx.records.unwrap_or(if ctx.quick { 1000 } else { 10_000 });
    let history = 3;
    let mut out = Outcome::default();
    out.param("n", n as u64);
    out.param("editsOfHistory", history as u64);
    out.param("record", "case");
    out.note(
        "records are assistance cases, not visits: the replica's index holds a case's status, \
         while for a visit its status column holds the visit's outcome, so counting open visits \
         would mean loading every document. A case is created as a draft and its first edit \
         (the status edit) moves it to open (about a third) or closed",
    );
    out.note(
        "the replica is enrolled offline (as a sign-in would, without a server): W3 never syncs",
    );
    out.note(
        "fresh process, but the OS page cache is warm (the replica was just written); \
         coldOpenMs = Replica::open + count inside that process; processMs = spawn to exit",
    );

    let dir = setup::device_dir(&ctx.root)?;
    let grids = vec!["grid-w3".to_string()];
    say(format!(
        "w3: creating {n} records with {history} edits each"
    ));
    let (expected_open, expected_digest) = {
        let mut r = setup::offline_replica(dir.path(), "worker-w3", &grids)?;
        let mut rng = Rng::new(SEED, 3);
        let household = data::create_household(&mut r, &mut rng)?;
        let mut opened = 0;
        for _ in 0..n {
            let id = data::create_record(&mut r, &mut rng, Kind::Case, &household, history)?;
            if r.get(&id)?.str_field("status") == Some("open") {
                opened += 1;
            }
        }
        out.param(
            "recordJsonBytes",
            data::typical_json_bytes(Kind::Case, &household, "worker-w3"),
        );
        let counted = r.count(&open_query())?;
        if counted != opened {
            bail!("the index counts {counted} open records, {opened} were written");
        }
        let digest = measure::digest(&mut r)?;
        (opened, digest)
    };
    out.param("openRecords", expected_open);
    out.param("replicaBytes", measure::dir_bytes(dir.path()));

    say("w3: timed: a fresh process opens the replica and counts");
    let start = Instant::now();
    let timed = child(&[dir.path().to_string_lossy().as_ref()])?;
    let process = start.elapsed();
    let open = timed["open"].as_u64().unwrap_or(u64::MAX);
    if open != expected_open {
        bail!("the cold process counted {open} open records, expected {expected_open}");
    }
    // Verification in another fresh process, so the timed one does no extra work.
    let check = child(&[dir.path().to_string_lossy().as_ref(), "--digest"])?;
    let digest = check["digest"].as_str().unwrap_or("");
    let records = check["records"].as_u64().unwrap_or(0);
    if digest != expected_digest.0 || records != expected_digest.1 as u64 {
        bail!(
            "contents after reopening: digest {digest} of {records} records, \
             expected {} of {}",
            expected_digest.0,
            expected_digest.1
        );
    }
    out.param("verifiedRecords", records);
    out.param("digest", digest);

    out.metric("coldOpenMs", timed["coldOpenMs"].clone());
    out.metric("openMs", timed["openMs"].clone());
    out.metric("countMs", timed["countMs"].clone());
    out.metric("processMs", ms(process));
    out.metric("processPeakRssMib", timed["peakRssMib"].clone());
    Ok(out)
}

fn child(args: &[&str]) -> Result<Value> {
    let output = setup::device_process()?
        .arg("w3-open")
        .args(args)
        .output()
        .context("run the cold-open process")?;
    if !output.status.success() {
        bail!(
            "cold-open process failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("cold-open process printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("cold-open output {line:?}"))
}

/// `gridsync-bench w3-open DIR [--digest]`: the fresh process of W3. Prints one JSON line.
pub fn child_main(args: &[String]) -> Result<()> {
    let dir = args
        .first()
        .ok_or_else(|| anyhow!("usage: gridsync-bench w3-open DIR [--digest]"))?;
    let with_digest = args.iter().any(|a| a == "--digest");
    let start = Instant::now();
    let r: Replica = setup::open_replica(dir.as_ref())?;
    let opened = start.elapsed();
    let open = r.count(&open_query())?;
    let total = start.elapsed();
    let peak = measure::self_peak_rss_kib()?;
    let mut line = json!({
        "coldOpenMs": ms(total),
        "openMs": ms(opened),
        "countMs": ms(total - opened),
        "open": open,
        "peakRssMib": mib(peak),
    });
    if with_digest {
        let mut r = r;
        let (digest, records) = measure::digest(&mut r)?;
        line["digest"] = digest.into();
        line["records"] = records.into();
    }
    println!("{line}");
    Ok(())
}
