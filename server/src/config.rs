//! Server configuration: defaults that run locally with zero set-up; a config file, environment
//! variables and flags override them (`crate::options`, docs/operations.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where devices and browsers connect.
    pub listen: SocketAddr,
    /// Where `/metrics` is served, apart from the public port; `None` serves it nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How the log is written (set up by the binary).
    pub log_format: LogFormat,
    /// Where the SQLite store lives, and the attachments' bytes whichever the database.
    pub data_dir: PathBuf,
    /// A PostgreSQL database (`postgres://user@host/name`) to keep everything but the
    /// attachments' bytes in, instead of SQLite under `data_dir`; several relays may share it.
    pub database: Option<String>,
    /// Documents held decoded in memory at most; the relay's memory does not grow beyond this
    /// however many records it stores.
    pub doc_cache: usize,
    /// What one client may cost the relay; see docs/operations.md.
    pub limits: Limits,
    /// The office dashboard: report deadlines, local time, sessions (docs/dashboard.md).
    pub dashboard: DashboardConfig,
    /// Serve HTTPS with this certificate and key (`tls::load` reads them, `Server::with_tls`
    /// serves them); `None` serves plain HTTP, as behind a TLS proxy. With TLS the dashboard's
    /// cookies are always `Secure`.
    pub tls: Option<TlsFiles>,
}

/// How the relay writes its log (to standard output).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text an event, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object a line, for a log collector.
    Json,
}

/// The PEM files the relay serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFiles {
    /// The certificate, followed by any intermediate CA certificates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            log_format: LogFormat::Text,
            data_dir: PathBuf::from("./data"),
            database: None,
            doc_cache: 1000,
            limits: Limits::default(),
            dashboard: DashboardConfig::default(),
            tls: None,
        }
    }
}

/// The office dashboard's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DashboardConfig {
    /// Minutes from discovery to the deadline of an urgent report, by urgency. Local rules
    /// range from 20 minutes to 2 hours; the board and the monthly report use these.
    pub report_deadlines: gridsync_core::record::DeadlineRules,
    /// Hours from dispatch to a task's default deadline, by where the task came from.
    pub task_deadlines: crate::dashboard::TaskRules,
    /// The community's offset from UTC in minutes (China: +480). Days, weeks and months of the
    /// overview and the monthly report start at local midnight.
    pub utc_offset_minutes: i32,
    /// How long a browser stays signed in.
    pub session_hours: i64,
    /// Mark the session cookie `Secure` (only sent over HTTPS): on when a TLS proxy fronts
    /// the relay; always on when the relay serves TLS itself (`Config::tls`).
    pub secure_cookies: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            report_deadlines: gridsync_core::record::DeadlineRules::default(),
            task_deadlines: crate::dashboard::TaskRules::default(),
            utc_offset_minutes: 8 * 60,
            session_hours: 12,
            secure_cookies: false,
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
    /// A connection must send its request headers within this time, and an idle keep-alive
    /// connection is closed after it: a client that sends part of its headers and then nothing
    /// does not hold a socket for long.
    pub header_timeout: Duration,
    /// TCP connections open at once from one address (sync sessions, browsers, anything);
    /// more are refused as soon as they are accepted. Behind a proxy every connection comes
    /// from the proxy's address: raise it there.
    pub max_connections_per_address: usize,
    /// TCP connections open at once in all; more are refused as soon as they are accepted.
    /// Keep it below the process's open-file limit.
    pub max_connections: usize,
    /// Bytes a sync connection may send before it has signed in (its hello or sign-in,
    /// WebSocket framing included): what a hello with `MAX_GRIDS` grids needs, no more. An
    /// unauthenticated socket can make the relay hold no larger a message than this.
    pub max_first_message_bytes: usize,
    /// Sync sessions one device (one token) may have open at once; another is refused with
    /// `Throttled` until one ends.
    pub max_sessions_per_device: usize,
    /// Devices a user may have enrolled and not revoked (the dashboard's own not counted); a
    /// sign-in beyond is refused and asks for an old device to be revoked.
    pub max_devices_per_user: usize,
    /// How long a graceful shutdown waits for connections and sessions to finish before it
    /// drops the rest.
    pub shutdown_timeout: Duration,
    /// The largest attachment (photo or file) the relay takes; a larger one is refused with
    /// the reason, its record unaffected.
    pub max_attachment_bytes: u64,
    /// The bytes of attachments one device may have stored on the relay.
    pub attachment_quota_bytes: u64,
    /// How long an attachment no record names any more, or an upload nobody continues, is
    /// kept before the purge removes it.
    pub attachment_grace: Duration,
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
            header_timeout: Duration::from_secs(10),
            max_connections_per_address: 256,
            max_connections: 12_000,
            max_first_message_bytes: 16 * 1024,
            max_sessions_per_device: 4,
            max_devices_per_user: 10,
            shutdown_timeout: Duration::from_secs(10),
            max_attachment_bytes: 20 * 1024 * 1024,
            attachment_quota_bytes: 2 * 1024 * 1024 * 1024,
            attachment_grace: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
