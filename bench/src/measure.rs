//! Readings from /proc, statistics, and the content checks every workload runs before it reports.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use gridsync_core::{Query, Replica};

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// A `Vm...:  1234 kB` line of a /proc status file, in KiB.
pub fn status_kib(path: &str, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let number = rest.split_whitespace().next().unwrap_or("");
            return number
                .parse()
                .with_context(|| format!("{key} in {path}: {rest:?}"));
        }
    }
    bail!("no {key} in {path}")
}

/// utime + stime of a /proc stat file (process or thread), in seconds.
pub fn stat_cpu_secs(path: &str) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    // The command name may hold spaces and parentheses: fields restart after the last ')'.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("bad {path}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3 of the man page, so utime (14) and stime (15) are at 11 and 12.
    let tick = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / CLK_TCK)
            .ok_or_else(|| anyhow!("bad cpu field in {path}"))
    };
    Ok(tick(11)? + tick(12)?)
}

/// CPU seconds of this process so far.
pub fn self_cpu_secs() -> Result<f64> {
    stat_cpu_secs("/proc/self/stat")
}

/// Peak resident memory of this process, in KiB.
pub fn self_peak_rss_kib() -> Result<u64> {
    status_kib("/proc/self/status", "VmHWM")
}

/// Current resident memory of this process, in KiB.
pub fn self_rss_kib() -> Result<u64> {
    status_kib("/proc/self/status", "VmRSS")
}

/// The 1-minute load average: how busy the machine was (2 cores; others may be compiling).
pub fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(-1.0)
}

/// The stat file of the calling thread, readable later from any thread of the process.
pub fn this_thread_stat_path() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(format!("/proc/{}/stat", link.display()))
}

/// Total size of the files in a directory (not recursive: the stores keep no subdirectories).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Milliseconds with 0.1 ms resolution.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Rounds to 3 decimals (CPU seconds, MiB).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn mib(kib: u64) -> f64 {
    round3(kib as f64 / 1024.0)
}

// ------------------------------------------------------------------ content checks

/// Every record id of a replica, deleted ones included, sorted.
pub fn record_ids(r: &Replica) -> Result<Vec<String>> {
    let rows = r.list(&Query {
        include_deleted: true,
        ..Query::default()
    })?;
    let mut ids: Vec<String> = rows.into_iter().map(|row| row.id).collect();
    ids.sort();
    Ok(ids)
}

/// Checks that two replicas hold the same records with the same contents (every field of every
/// record, as `Replica::get` reads it). Returns the number of records compared.
pub fn same_contents(a: &mut Replica, b: &mut Replica) -> Result<usize> {
    let ids_a = record_ids(a)?;
    let ids_b = record_ids(b)?;
    if ids_a != ids_b {
        let missing = ids_b
            .iter()
            .filter(|id| ids_a.binary_search(id).is_err())
            .count();
        let extra = ids_a
            .iter()
            .filter(|id| ids_b.binary_search(id).is_err())
            .count();
        bail!(
            "record sets differ: {} vs {} records ({missing} missing, {extra} extra)",
            ids_a.len(),
            ids_b.len()
        );
    }
    for id in &ids_a {
        let ra = a.get(id)?;
        let rb = b.get(id)?;
        if ra.fields != rb.fields {
            let differing: Vec<&String> = ra
                .fields
                .keys()
                .chain(rb.fields.keys())
                .filter(|k| ra.fields.get(*k) != rb.fields.get(*k))
                .collect();
            bail!("record {id} differs in {differing:?}");
        }
    }
    Ok(ids_a.len())
}

/// Checks that `part`'s records are all in `whole` with the same contents.
pub fn contained_in(part: &mut Replica, whole: &mut Replica) -> Result<usize> {
    let ids = record_ids(part)?;
    for id in &ids {
        let rp = part.get(id)?;
        let rw = whole
            .get(id)
            .with_context(|| format!("record {id} is missing"))?;
        if rp.fields != rw.fields {
            bail!("record {id} differs");
        }
    }
    Ok(ids.len())
}

/// FNV-1a (64 bit) of every record's id and JSON contents, in id order, and the record count.
pub fn digest(r: &mut Replica) -> Result<(String, usize)> {
    let ids = record_ids(r)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for id in &ids {
        let record = r.get(id)?;
        feed(id.as_bytes());
        feed(&serde_json::to_vec(&record.fields)?);
    }
    Ok((format!("{h:016x}"), ids.len()))
}
