//! The relay's figures for Prometheus: counters and latency histograms kept in atomics where the
//! events happen, gauges read when scraped, and `GET /metrics` in the text exposition format
//! (version 0.0.4), served only on `--metrics-listen`, never on the public port.
//!
//! The format is a few lines per figure (`# HELP`, `# TYPE`, then `name{label="v"} value`), so
//! it is written here rather than pulled in with a metrics library and its registry.

use std::fmt::{Display, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing;
use gridsync_core::protocol::PROTOCOL_VERSION;

use crate::AppState;

/// Declares a set of label values: `ALL` in order, their count and each one's text.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }
    };
}

labels! {
    /// Why the relay refused an uploaded change (`gridsync_changes_refused_total{reason}`).
    Refusal {
        /// Larger than one change may be.
        TooLarge => "too_large",
        /// For a grid outside the user's scope.
        OutOfScope => "out_of_scope",
        /// Not an Automerge change.
        Malformed => "malformed",
        /// Signed by an actor not bound to the uploading device.
        WrongActor => "wrong_actor",
        /// Its message (the author) is not the uploader's username.
        WrongAuthor => "wrong_author",
        /// For a record of another grid, or one record named with two grids.
        WrongGrid => "wrong_grid",
        /// Automerge could not apply it, or the record would nest too deep.
        CannotApply => "cannot_apply",
        /// Breaks the record's identity (id, kind, grid) or comes before the record's first change.
        Identity => "identity",
        /// The user's role may not write this record.
        NotPermitted => "not_permitted",
        /// The record would not pass a device's validation.
        InvalidContent => "invalid_content",
        /// Names a household that does not exist.
        NoHousehold => "no_household",
        /// The relay's stored copy of the record cannot be loaded.
        Damaged => "damaged",
    }
}

labels! {
    /// Why a device's sign-in was refused (`gridsync_sign_ins_refused_total{reason}`).
    SignInRefusal {
        BadCredentials => "bad_credentials",
        Throttled => "throttled",
        Inactive => "inactive",
        NoGrids => "no_grids",
        TooManyDevices => "too_many_devices",
        BadRequest => "bad_request",
        Storage => "storage",
    }
}

labels! {
    /// Why a sync session was refused before it began (`gridsync_sync_sessions_refused_total`).
    SessionRefusal {
        /// `max_sessions` sessions were open.
        Busy => "busy",
        /// The device had `max_sessions_per_device` sessions open.
        DeviceLimit => "device_limit",
        /// The token is unknown.
        UnknownDevice => "unknown_device",
        /// The device was revoked or its user deactivated.
        Revoked => "revoked",
        /// The client speaks a protocol this relay does not.
        IncompatibleVersion => "incompatible_version",
        /// No readable hello in time.
        BadHello => "bad_hello",
    }
}

labels! {
    /// How the read API answered (`gridsync_api_requests_total{result}`).
    ApiAnswer {
        Ok => "ok",
        BadRequest => "bad_request",
        /// No token, an unknown one or a revoked one.
        Unauthorized => "unauthorized",
        /// Sensitive data asked for with a token that may not read it.
        Forbidden => "forbidden",
        /// Not there, or outside the token's areas.
        NotFound => "not_found",
        Error => "error",
    }
}

impl ApiAnswer {
    pub(crate) fn of(status: axum::http::StatusCode) -> ApiAnswer {
        match status.as_u16() {
            200..=399 => ApiAnswer::Ok,
            401 => ApiAnswer::Unauthorized,
            403 => ApiAnswer::Forbidden,
            404 => ApiAnswer::NotFound,
            400..=499 => ApiAnswer::BadRequest,
            _ => ApiAnswer::Error,
        }
    }
}

/// Counts by label, in the order of the label set's `ALL`.
#[derive(Debug)]
pub struct Counts(Box<[AtomicU64]>);

impl Counts {
    fn new(labels: usize) -> Counts {
        Counts((0..labels).map(|_| AtomicU64::new(0)).collect())
    }

    fn add(&self, index: usize, n: u64) {
        if let Some(c) = self.0.get(index) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn get(&self, index: usize) -> u64 {
        self.0.get(index).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Upper bounds of the latency buckets, in seconds: a millisecond to half a minute.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one beyond every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The relay's counters, shared by the accept loop, the sessions and the relay's core. Every
/// update is one relaxed atomic add: nothing here orders or waits.
#[derive(Debug)]
pub struct Metrics {
    connections: AtomicU64,
    connections_refused: AtomicU64,
    sessions: AtomicU64,
    sessions_refused: Counts,
    sign_ins: AtomicU64,
    sign_ins_refused: Counts,
    changes_accepted: AtomicU64,
    changes_duplicate: AtomicU64,
    changes_refused: Counts,
    upload_bytes: AtomicU64,
    catch_up_bytes: AtomicU64,
    push_bytes: AtomicU64,
    /// From an upload's arrival at the relay's core to its durable commit.
    pub(crate) upload_batch: Histogram,
    /// Reading one catch-up or push batch from the log.
    pub(crate) catch_up_batch: Histogram,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    storage_errors: AtomicU64,
    attachments_stored: AtomicU64,
    attachment_bytes_stored: AtomicU64,
    attachments_mismatched: AtomicU64,
    attachment_bytes_served: AtomicU64,
    api_requests: Counts,
    started: chrono::DateTime<chrono::Utc>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            sessions_refused: Counts::new(SessionRefusal::ALL.len()),
            sign_ins: AtomicU64::new(0),
            sign_ins_refused: Counts::new(SignInRefusal::ALL.len()),
            changes_accepted: AtomicU64::new(0),
            changes_duplicate: AtomicU64::new(0),
            changes_refused: Counts::new(Refusal::ALL.len()),
            upload_bytes: AtomicU64::new(0),
            catch_up_bytes: AtomicU64::new(0),
            push_bytes: AtomicU64::new(0),
            upload_batch: Histogram::default(),
            catch_up_batch: Histogram::default(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            storage_errors: AtomicU64::new(0),
            attachments_stored: AtomicU64::new(0),
            attachment_bytes_stored: AtomicU64::new(0),
            attachments_mismatched: AtomicU64::new(0),
            attachment_bytes_served: AtomicU64::new(0),
            api_requests: Counts::new(ApiAnswer::ALL.len()),
            started: chrono::Utc::now(),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        add(&self.connections, 1);
    }

    pub(crate) fn connection_closed(&self) {
        let _ = self
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub(crate) fn connection_refused(&self) {
        add(&self.connections_refused, 1);
    }

    pub(crate) fn session_started(&self) {
        add(&self.sessions, 1);
    }

    pub(crate) fn session_refused(&self, why: SessionRefusal) {
        self.sessions_refused.add(why as usize, 1);
    }

    pub(crate) fn signed_in(&self) {
        add(&self.sign_ins, 1);
    }

    pub(crate) fn sign_in_refused(&self, why: SignInRefusal) {
        self.sign_ins_refused.add(why as usize, 1);
    }

    pub(crate) fn changes_accepted(&self, n: usize) {
        add(&self.changes_accepted, n as u64);
    }

    pub(crate) fn changes_duplicate(&self, n: usize) {
        add(&self.changes_duplicate, n as u64);
    }

    pub(crate) fn changes_refused(&self, why: Refusal, n: usize) {
        self.changes_refused.add(why as usize, n as u64);
    }

    pub(crate) fn uploaded_bytes(&self, n: usize) {
        add(&self.upload_bytes, n as u64);
    }

    pub(crate) fn caught_up_bytes(&self, n: usize) {
        add(&self.catch_up_bytes, n as u64);
    }

    pub(crate) fn pushed_bytes(&self, n: usize) {
        add(&self.push_bytes, n as u64);
    }

    pub(crate) fn cache_lookup(&self, hit: bool) {
        add(
            if hit {
                &self.cache_hits
            } else {
                &self.cache_misses
            },
            1,
        );
    }

    pub(crate) fn storage_error(&self) {
        add(&self.storage_errors, 1);
    }

    /// An attachment arrived whole and matched its hash.
    pub(crate) fn attachment_stored(&self, size: u64) {
        add(&self.attachments_stored, 1);
        add(&self.attachment_bytes_stored, size);
    }

    /// An attachment's bytes did not match its hash and were discarded.
    pub(crate) fn attachment_mismatch(&self) {
        add(&self.attachments_mismatched, 1);
    }

    pub(crate) fn attachment_served(&self, bytes: usize) {
        add(&self.attachment_bytes_served, bytes as u64);
    }

    pub(crate) fn api_request(&self, answer: ApiAnswer) {
        self.api_requests.add(answer as usize, 1);
    }
}

/// What is read only when scraped.
pub(crate) struct Gauges<'a> {
    pub sync_sessions: usize,
    pub cached_docs: usize,
    pub cache_capacity: usize,
    pub password_checks: [(&'static str, u64); 3],
    /// The data directory (its filesystem's space), when there is one.
    pub data_dir: Option<&'a Path>,
    /// What the store takes on disk, when it is on disk.
    pub store_bytes: Option<u64>,
}

/// The exposition text of every figure.
pub(crate) fn render(m: &Metrics, g: &Gauges<'_>) -> String {
    let mut t = Text::default();
    t.family(
        "gridsync_build_info",
        "gauge",
        "Always 1; the labels give the relay's version and newest protocol.",
    );
    t.sample(
        "gridsync_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("protocol", &PROTOCOL_VERSION.to_string()),
        ],
        1,
    );
    t.gauge(
        "gridsync_start_time_seconds",
        "When the relay started, in seconds since 1970 (UTC).",
        m.started.timestamp(),
    );
    t.gauge(
        "gridsync_connections",
        "TCP connections open on the public port (sync sessions, browsers, anything).",
        get(&m.connections),
    );
    t.counter(
        "gridsync_connections_refused_total",
        "Connections refused at accept: too many from one address or in all.",
        get(&m.connections_refused),
    );
    t.gauge(
        "gridsync_sync_sessions",
        "Sync sockets open (signed in, or about to say hello).",
        g.sync_sessions,
    );
    t.counter(
        "gridsync_sync_sessions_total",
        "Sync sessions begun by a device with a valid token.",
        get(&m.sessions),
    );
    t.labelled(
        "gridsync_sync_sessions_refused_total",
        "Sync sessions refused before they began, by reason.",
        SessionRefusal::ALL.iter().map(|r| r.label()),
        &m.sessions_refused,
    );
    t.counter(
        "gridsync_sign_ins_total",
        "Devices signed in (a device token issued).",
        get(&m.sign_ins),
    );
    t.labelled(
        "gridsync_sign_ins_refused_total",
        "Device sign-ins refused, by reason.",
        SignInRefusal::ALL.iter().map(|r| r.label()),
        &m.sign_ins_refused,
    );
    t.family(
        "gridsync_password_checks_total",
        "counter",
        "Sign-in attempts of devices and the dashboard at the throttle: password right, wrong, \
         or not checked because the throttle held the attempt back.",
    );
    for (result, n) in g.password_checks {
        t.sample("gridsync_password_checks_total", &[("result", result)], n);
    }
    t.counter(
        "gridsync_changes_accepted_total",
        "Changes stored in the log: uploads, office writes and repairs.",
        get(&m.changes_accepted),
    );
    t.counter(
        "gridsync_changes_duplicate_total",
        "Uploaded changes the relay already had (re-sent after a lost acknowledgement).",
        get(&m.changes_duplicate),
    );
    t.labelled(
        "gridsync_changes_refused_total",
        "Uploaded changes refused, by reason.",
        Refusal::ALL.iter().map(|r| r.label()),
        &m.changes_refused,
    );
    t.counter(
        "gridsync_upload_bytes_total",
        "Bytes of upload messages received from devices, as sent (compressed frames).",
        get(&m.upload_bytes),
    );
    t.counter(
        "gridsync_catch_up_bytes_total",
        "Bytes of catch-up batches sent to devices, as sent (compressed frames).",
        get(&m.catch_up_bytes),
    );
    t.counter(
        "gridsync_push_bytes_total",
        "Bytes of live pushes sent to devices, as sent (compressed frames).",
        get(&m.push_bytes),
    );
    t.histogram(
        "gridsync_upload_batch_seconds",
        "Time to check and durably store one upload batch (or office write).",
        &m.upload_batch,
    );
    t.histogram(
        "gridsync_catch_up_batch_seconds",
        "Time to read one catch-up or push batch from the log.",
        &m.catch_up_batch,
    );
    t.counter(
        "gridsync_doc_cache_hits_total",
        "Documents found decoded in the relay's cache.",
        get(&m.cache_hits),
    );
    t.counter(
        "gridsync_doc_cache_misses_total",
        "Documents loaded from the store because the cache did not hold them.",
        get(&m.cache_misses),
    );
    t.gauge(
        "gridsync_doc_cache_docs",
        "Documents decoded in memory now.",
        g.cached_docs,
    );
    t.gauge(
        "gridsync_doc_cache_capacity",
        "Documents the cache holds at most (--doc-cache).",
        g.cache_capacity,
    );
    t.counter(
        "gridsync_storage_errors_total",
        "Store reads or writes that failed in sync sessions and the relay's core.",
        get(&m.storage_errors),
    );
    t.counter(
        "gridsync_attachments_stored_total",
        "Attachments that arrived whole and matched their hash.",
        get(&m.attachments_stored),
    );
    t.counter(
        "gridsync_attachment_stored_bytes_total",
        "Bytes of the attachments that arrived whole.",
        get(&m.attachment_bytes_stored),
    );
    t.counter(
        "gridsync_attachments_mismatched_total",
        "Uploaded attachments whose bytes did not match their hash (discarded).",
        get(&m.attachments_mismatched),
    );
    t.counter(
        "gridsync_attachment_served_bytes_total",
        "Bytes of attachments sent to devices.",
        get(&m.attachment_bytes_served),
    );
    t.family(
        "gridsync_api_requests_total",
        "counter",
        "Requests to the read API under /api/v1, by how they were answered.",
    );
    for (i, answer) in ApiAnswer::ALL.iter().enumerate() {
        t.sample(
            "gridsync_api_requests_total",
            &[("result", answer.label())],
            m.api_requests.get(i),
        );
    }
    if let Some(store) = g.store_bytes {
        t.gauge(
            "gridsync_store_bytes",
            "Size of the relay's store on disk: the SQLite file with its write-ahead log, or \
             the PostgreSQL database (pg_database_size).",
            store,
        );
    }
    if let Some((free, size)) = g.data_dir.and_then(disk_space) {
        t.gauge(
            "gridsync_disk_free_bytes",
            "Bytes free for the relay on the data directory's filesystem.",
            free,
        );
        t.gauge(
            "gridsync_disk_size_bytes",
            "Size of the data directory's filesystem.",
            size,
        );
    }
    t.0
}

/// Bytes available to an unprivileged writer, and the filesystem's size.
#[cfg(unix)]
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

#[cfg(not(unix))]
fn disk_space(_dir: &Path) -> Option<(u64, u64)> {
    None
}

/// The exposition text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{key}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A counter with one `reason` label, every reason listed (zero included), so a rate
    /// query sees the series before its first event.
    fn labelled<'a>(
        &mut self,
        name: &str,
        help: &str,
        reasons: impl Iterator<Item = &'a str>,
        counts: &Counts,
    ) {
        self.family(name, "counter", help);
        for (i, reason) in reasons.enumerate() {
            self.sample(name, &[("reason", reason)], counts.get(i));
        }
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut seen = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            seen += h.counts[i].load(Ordering::Relaxed);
            self.sample(&bucket, &[("le", &le.to_string())], seen);
        }
        seen += h.counts[BUCKETS.len()].load(Ordering::Relaxed);
        self.sample(&bucket, &[("le", "+Inf")], seen);
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], seen);
    }
}

/// The metrics port's routes: `/metrics` and nothing else.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let timeout = state.limits.http_timeout;
    Router::new()
        .route("/metrics", routing::get(scrape))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

async fn scrape(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let gauges = Gauges {
        sync_sessions: state.connections.load(Ordering::SeqCst),
        cached_docs: state.relay.cached_docs(),
        cache_capacity: state.relay.cache_capacity(),
        password_checks: state.limiter.checks(),
        data_dir: state.data_dir.as_deref(),
        store_bytes: state
            .relay
            .queries()
            .store_bytes()
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("could not read the store's size for /metrics: {e}");
                None
            }),
    };
    let text = render(&state.relay.metrics, &gauges);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges<'static> {
        Gauges {
            sync_sessions: 2,
            cached_docs: 5,
            cache_capacity: 1000,
            password_checks: [("ok", 1), ("wrong", 2), ("throttled", 0)],
            data_dir: None,
            store_bytes: Some(4096),
        }
    }

    #[test]
    fn test_histogram_buckets_are_cumulative_with_sum_and_count() {
        let m = Metrics::default();
        m.upload_batch.observe(Duration::from_micros(500));
        m.upload_batch.observe(Duration::from_millis(20));
        m.upload_batch.observe(Duration::from_secs(60));
        let text = render(&m, &gauges());
        for line in [
            "gridsync_upload_batch_seconds_bucket{le=\"0.001\"} 1",
            "gridsync_upload_batch_seconds_bucket{le=\"0.01\"} 1",
            "gridsync_upload_batch_seconds_bucket{le=\"0.025\"} 2",
            "gridsync_upload_batch_seconds_bucket{le=\"30\"} 2",
            "gridsync_upload_batch_seconds_bucket{le=\"+Inf\"} 3",
            "gridsync_upload_batch_seconds_sum 60.0205",
            "gridsync_upload_batch_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn test_every_reason_is_listed_and_counted_under_its_label() {
        let m = Metrics::default();
        m.changes_refused(Refusal::WrongAuthor, 3);
        m.changes_refused(Refusal::WrongAuthor, 1);
        m.sign_in_refused(SignInRefusal::Throttled);
        m.api_request(ApiAnswer::of(axum::http::StatusCode::UNAUTHORIZED));
        let text = render(&m, &gauges());
        assert!(text.contains("gridsync_api_requests_total{result=\"unauthorized\"} 1\n"));
        assert!(text.contains("gridsync_api_requests_total{result=\"ok\"} 0\n"));
        assert!(text.contains("gridsync_changes_refused_total{reason=\"wrong_author\"} 4\n"));
        assert!(text.contains("gridsync_changes_refused_total{reason=\"too_large\"} 0\n"));
        assert!(text.contains("gridsync_sign_ins_refused_total{reason=\"throttled\"} 1\n"));
        assert!(text.contains("gridsync_password_checks_total{result=\"wrong\"} 2\n"));
        for r in Refusal::ALL {
            assert!(text.contains(&format!("{{reason=\"{}\"}}", r.label())));
        }
    }

    #[test]
    fn test_label_values_are_escaped() {
        let mut t = Text::default();
        t.sample("x", &[("v", "a\"b\\c\nd")], 1);
        assert_eq!(t.0, "x{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
