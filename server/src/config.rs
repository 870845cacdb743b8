//! Server configuration: defaults that run locally with zero set-up; flags and environment
//! variables override them (see `gridsync-server --help`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where devices and browsers connect.
    pub listen: SocketAddr,
    /// Where the SQLite store lives.
    pub data_dir: PathBuf,
    /// Documents held decoded in memory at most; the relay's memory does not grow beyond this
    /// however many records it stores.
    pub doc_cache: usize,
    /// What one client may cost the relay; see docs/operations.md.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            doc_cache: 1000,
            limits: Limits::default(),
        }
    }
}

/// Bounds that keep one misbehaving or hostile client from hurting the others. Every value and
/// its reason is listed in docs/operations.md.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Sync sessions open at once; more are answered 503 until one ends.
    pub max_sessions: usize,
    /// A new connection must send its hello (or sign-in) within this time.
    pub hello_timeout: Duration,
    /// A session with no message from the device for this long is closed. Live sessions are
    /// pinged well within it, so only dead or stalled clients reach it.
    pub idle_timeout: Duration,
    /// How often a live session is pinged.
    pub ping_interval: Duration,
    /// Messages a session may send per second on average ...
    pub messages_per_second: u32,
    /// ... and in a burst. Beyond, the session is slowed down (not cut off).
    pub message_burst: u32,
    /// The largest message a device may send once fragments are joined and decompressed.
    pub max_message_bytes: usize,
    /// Any plain HTTP request (health, stats, dashboard) must complete within this time.
    pub http_timeout: Duration,
    /// Largest HTTP request body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 10_000,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(30),
            messages_per_second: 200,
            message_burst: 400,
            max_message_bytes: 4 * 1024 * 1024,
            http_timeout: Duration::from_secs(30),
            max_body_bytes: 64 * 1024,
        }
    }
}
