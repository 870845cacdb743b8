//! The workloads of BENCHMARKS.md (and W6 of issue 12). Each sets up (untimed), runs its timed part, verifies the
//! result, and only then returns figures.

pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod w6;
pub mod w7;

use std::path::PathBuf;

use serde_json::{Map, Value};

/// What every workload needs to know about this run.
pub struct Ctx {
    pub quick: bool,
    /// Where temporary replicas and the server's store go.
    pub root: PathBuf,
    /// Records per device for W1, W3 and W5 (the scaling runs), instead of the defined N.
    pub records: Option<usize>,
    /// W4: connected devices, writers, seconds of writing.
    pub devices: Option<usize>,
    pub writers: Option<usize>,
    pub secs: Option<u64>,
    /// W4: where the devices' replicas go (tmpfs by default, see w4.rs).
    pub live_dir: Option<PathBuf>,
    /// W7: communities of the county and records per grid.
    pub communities: Option<usize>,
    pub records_per_grid: Option<usize>,
}

/// Parameters (what was run, and where the model differs) and figures of one verified run.
#[derive(Default)]
pub struct Outcome {
    pub params: Map<String, Value>,
    pub metrics: Map<String, Value>,
}

impl Outcome {
    pub fn param(&mut self, key: &str, value: impl Into<Value>) {
        self.params.insert(key.to_string(), value.into());
    }

    pub fn metric(&mut self, key: &str, value: impl Into<Value>) {
        self.metrics.insert(key.to_string(), value.into());
    }

    pub fn note(&mut self, text: &str) {
        let notes = self
            .params
            .entry("notes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = notes {
            list.push(text.into());
        }
    }
}

/// How bytes are counted, said in every workload that reports them.
pub const BYTES_NOTE: &str = "bytes are counted at the TCP socket by an in-process relay between \
     device and server: HTTP upgrade, WebSocket framing and close handshake included; \
     *FrameBytes* are the protocol frames alone as the transport's SyncReport counts them";

/// How CPU time is read, said where it is reported.
pub const CPU_NOTE: &str = "CPU seconds are utime + stime from /proc/PID/stat, in 10 ms ticks; \
     client CPU is the bench process minus the byte-counting relay thread";

/// Progress on stderr.
pub fn say(text: impl AsRef<str>) {
    eprintln!("[gridsync-bench] {}", text.as_ref());
}
