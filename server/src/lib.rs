#![doc = include_str!("../README.md")]

pub mod accounts;
pub mod admin;
pub mod api;
pub mod attachments;
pub mod config;
pub mod dashboard;
mod listen;
pub mod metrics;
pub mod options;
pub mod relay;
mod session;
pub mod storage;
pub mod tls;
mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, Extension, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gridsync_core::protocol::{MAX_FRAME, PROTOCOL_VERSION};
use tokio::net::TcpListener;
use tokio::sync::watch;

use accounts::{AccountStore, LoginLimiter, Outcome, SHARED_OUTCOMES};
pub use config::Config;
use relay::Relay;
use storage::postgres::Notice;
use storage::{
    BlobStore, FsBlobStore, MemoryBlobStore, PostgresStorage, SqliteStorage, Storage, StorageError,
};

/// What every handler shares.
pub struct AppState {
    pub relay: Relay,
    /// The attachments' bytes (their metadata is in `relay.attachments()`).
    pub blobs: Arc<dyn BlobStore>,
    pub accounts: Arc<dyn AccountStore>,
    limiter: LoginLimiter,
    pub limits: config::Limits,
    shutdown: watch::Receiver<bool>,
    connections: AtomicUsize,
    /// Open sync sessions by device, so that one token cannot open any number of them.
    device_sessions: Mutex<HashMap<String, usize>>,
    /// The office dashboard's settings and its write lock.
    pub dashboard: dashboard::Dashboard,
    /// The store's directory when it is on disk (for `/metrics`: its size, the disk's free space).
    data_dir: Option<PathBuf>,
}

/// A relay ready to serve: its state and the switch that starts a graceful shutdown.
pub struct Server {
    pub state: Arc<AppState>,
    shutdown_tx: watch::Sender<bool>,
    tls: Option<tls::ServerTls>,
    metrics: Option<TcpListener>,
}

impl Server {
    /// Opens the SQLite store under the data dir ([`Server::connect`] also opens a
    /// PostgreSQL database when `config.database` names one).
    pub fn open(config: &Config) -> Result<Server, StorageError> {
        if config.database.is_some() {
            return Err(StorageError::Invalid(
                "a PostgreSQL database is opened with Server::connect".into(),
            ));
        }
        let storage = Arc::new(SqliteStorage::open(&config.data_dir)?);
        let blobs = FsBlobStore::new(&config.data_dir);
        let data_dir = Some(config.data_dir.clone());
        Ok(Server::build(
            storage.clone(),
            storage,
            blobs,
            config,
            data_dir,
        ))
    }

    /// Opens the configured storage: the PostgreSQL database `config.database` names, or else
    /// SQLite under the data dir. The attachments' bytes are under the data dir either way.
    pub async fn connect(config: &Config) -> Result<Server, StorageError> {
        let Some(url) = &config.database else {
            return Server::open(config);
        };
        let storage = Arc::new(PostgresStorage::connect(url).await?);
        let blobs = FsBlobStore::new(&config.data_dir);
        // No SQLite file to measure: `/metrics` leaves the store's size out.
        let server = Server::build(storage.clone(), storage.clone(), blobs, config, None);
        let (outcomes, shared) = tokio::sync::mpsc::channel(SHARED_OUTCOMES);
        server.state.limiter.share_with(outcomes);
        tokio::spawn(share_sign_ins(storage.clone(), shared));
        tokio::spawn(follow_other_relays(storage, Arc::downgrade(&server.state)));
        Ok(server)
    }

    pub fn with_storage(
        storage: Arc<dyn Storage>,
        accounts: Arc<dyn AccountStore>,
        config: &Config,
    ) -> Server {
        Server::build(storage, accounts, MemoryBlobStore::new(), config, None)
    }

    fn build(
        storage: Arc<dyn Storage>,
        accounts: Arc<dyn AccountStore>,
        blobs: Arc<dyn BlobStore>,
        config: &Config,
        data_dir: Option<PathBuf>,
    ) -> Server {
        let (shutdown_tx, shutdown) = watch::channel(false);
        let mut dashboard = config.dashboard.clone();
        // A relay serving TLS itself is only ever reached over HTTPS.
        dashboard.secure_cookies |= config.tls.is_some();
        let state = Arc::new(AppState {
            relay: Relay::new(storage, config.doc_cache),
            blobs,
            accounts,
            limiter: LoginLimiter::default(),
            limits: config::Limits::clone(&config.limits),
            shutdown,
            connections: AtomicUsize::new(0),
            device_sessions: Mutex::new(HashMap::new()),
            dashboard: dashboard::Dashboard::new(&dashboard),
            data_dir,
        });
        Server {
            state,
            shutdown_tx,
            tls: None,
            metrics: None,
        }
    }

    /// Also serves `GET /metrics` (Prometheus text) on `listener`, which should be reachable
    /// only by the monitoring system: the public port never serves it.
    pub fn with_metrics(mut self, listener: TcpListener) -> Server {
        self.metrics = Some(listener);
        self
    }

    /// Serves HTTPS with `tls` (from [`tls::load`] of `Config::tls`, which also makes the
    /// dashboard's cookies `Secure`) instead of plain HTTP.
    pub fn with_tls(mut self, tls: tls::ServerTls) -> Server {
        self.tls = Some(tls);
        self
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves on `listener` until `signal` completes, then stops taking connections, tells every
    /// device to come back later, and waits for connections and sessions to finish what they
    /// were doing, at most `shutdown_timeout`: a batch being stored is either acknowledged or
    /// not, never half-done. Connections that never sent a whole request are dropped at once.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router();
        let signal = async move {
            signal.await;
            tracing::info!("shutting down: closing sync sessions");
        };
        let tls = self.tls.map(|t| tokio_rustls::TlsAcceptor::from(t.0));
        let purge = tokio::spawn(purge_daily(self.state.clone()));
        let moves = tokio::spawn(relay::watch_moves(self.state.clone()));
        // The metrics port stops when the public one starts stopping, with its own census.
        let metrics = self.metrics.map(|listener| {
            let app = metrics::router(self.state.clone());
            let limits = self.state.limits.clone();
            let mut stopping = self.state.shutdown.clone();
            tokio::spawn(async move {
                let (stop, _) = watch::channel(false);
                let signal = async move {
                    let _ = stopping.wait_for(|s| *s).await;
                };
                listen::serve(listener, app, None, &limits, signal, &stop, None).await;
            })
        });
        listen::serve(
            listener,
            app,
            tls,
            &self.state.limits,
            signal,
            &self.shutdown_tx,
            Some(self.state.relay.metrics.clone()),
        )
        .await;
        purge.abort();
        moves.abort();
        if let Some(task) = metrics {
            let _ = task.await;
        }
        Ok(())
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let limits = state.limits.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/sync", get(sync_endpoint))
        .route("/v1/stats", get(stats))
        .merge(dashboard::router())
        .merge(api::router(state.clone()))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.max_body_bytes,
        ))
        // Bounds plain HTTP requests; an upgraded sync socket has answered by then and lives on
        // under the session's own timeouts.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.http_timeout,
        ))
        // The office's uploads have their own body limit and time (dashboard::upload_router).
        .merge(dashboard::upload_router(&limits))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// A place among the open sync sessions, given back when dropped (also when an upgrade fails).
struct SessionSlot(Arc<AppState>);

impl SessionSlot {
    fn take(state: &Arc<AppState>) -> Option<SessionSlot> {
        let before = state.connections.fetch_add(1, Ordering::SeqCst);
        let slot = SessionSlot(state.clone());
        (before < state.limits.max_sessions).then_some(slot)
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One of the few sync sessions a device may have open at once (`max_sessions_per_device`).
struct DeviceSessionSlot<'a> {
    state: &'a AppState,
    device_id: String,
}

impl AppState {
    /// A place among the device's open sessions, or `None` when it has all it may have.
    fn take_device_session(&self, device_id: &str) -> Option<DeviceSessionSlot<'_>> {
        let mut open = self
            .device_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = open.entry(device_id.to_string()).or_insert(0);
        if *n >= self.limits.max_sessions_per_device {
            return None;
        }
        *n += 1;
        Some(DeviceSessionSlot {
            state: self,
            device_id: device_id.to_string(),
        })
    }
}

impl Drop for DeviceSessionSlot<'_> {
    fn drop(&mut self) {
        let mut open = self
            .state
            .device_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.device_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.device_id);
            }
        }
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": PROTOCOL_VERSION,
    }))
}

async fn sync_endpoint(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    budget: Option<Extension<Arc<listen::ReadBudget>>>,
) -> Response {
    if *state.shutdown.borrow() {
        return AppError::ShuttingDown.into_response();
    }
    let Some(slot) = SessionSlot::take(&state) else {
        state
            .relay
            .metrics
            .session_refused(metrics::SessionRefusal::Busy);
        return AppError::TooBusy.into_response();
    };
    // Until the device has signed in, the socket reads no more than a hello or sign-in needs,
    // whatever frame length the client announces (`Server::serve` gives every connection one).
    let budget = budget.map(|Extension(b)| b);
    if let Some(budget) = &budget {
        budget.arm(state.limits.max_first_message_bytes);
    }
    // Small read buffers: tungstenite zero-fills its whole read buffer on every read attempt,
    // and a relay holds thousands of mostly idle sessions (W4 in docs/performance.md).
    ws.max_message_size(MAX_FRAME + 1024)
        .max_frame_size(MAX_FRAME + 1024)
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| async move {
            ws::serve_socket(socket, state.clone(), peer.ip(), budget).await;
            drop(slot);
        })
}

/// Once a day, the purge of attachments no record names and uploads nobody continues (one at a
/// time: the next waits for this one), until the relay stops.
async fn purge_daily(state: Arc<AppState>) {
    let mut stopping = state.shutdown.clone();
    // Bounded: one round a day, ended by the shutdown.
    loop {
        tokio::select! {
            () = tokio::time::sleep(attachments::PURGE_EVERY) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let grace = state.limits.attachment_grace;
        match attachments::purge(
            state.relay.attachments(),
            state.blobs.as_ref(),
            grace,
            false,
        )
        .await
        {
            Ok(p) => tracing::info!(
                unnamed = p.unnamed.len(),
                abandoned = p.abandoned.len(),
                "purged attachments no record names and abandoned uploads"
            ),
            Err(e) => {
                state.relay.metrics.storage_error();
                tracing::error!("purging attachments failed: {e}");
            }
        }
    }
}

/// On a database several relays share: what the others commit wakes this relay's sessions and
/// drops its cached copies of the documents they changed, until this relay stops.
/// Tells the other relays on the database of this relay's sign-in attempts, as they come (a
/// burst in one notice round trip). Ends with the relay (its throttle, the sender, dropped).
async fn share_sign_ins(
    storage: Arc<PostgresStorage>,
    mut outcomes: tokio::sync::mpsc::Receiver<Outcome>,
) {
    let mut batch = Vec::new();
    while outcomes.recv_many(&mut batch, 256).await > 0 {
        if let Err(e) = storage.share_sign_ins(&batch).await {
            tracing::warn!(
                "cannot tell the other relays of {} sign-in attempts: {e}",
                batch.len()
            );
        }
        batch.clear();
    }
}

async fn follow_other_relays(storage: Arc<PostgresStorage>, state: std::sync::Weak<AppState>) {
    // Bounded by the relay's life: each round ends when the connection does, or at shutdown.
    loop {
        let Some(mut stopping) = state.upgrade().map(|s| s.shutdown.clone()) else {
            return;
        };
        match storage.listen().await {
            Ok(mut listener) => {
                // Notices sent while no one listened are lost: trust no cached copy.
                let Some(s) = state.upgrade() else { return };
                s.relay.forget_cached().await;
                drop(s);
                loop {
                    let notice = tokio::select! {
                        n = listener.recv() => n,
                        _ = stopping.wait_for(|s| *s) => return,
                    };
                    let Some(n) = notice else { break };
                    let Some(s) = state.upgrade() else { return };
                    match n {
                        Notice::Log(n) => s.relay.moved_elsewhere(n.grid_id, n.seq, &n.docs).await,
                        Notice::SignIn(outcome) => s.limiter.learned(outcome),
                    }
                }
                tracing::warn!("lost the database's notices of other relays; listening again");
            }
            Err(e) => tracing::warn!("cannot listen for other relays' commits: {e}"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Record counts by grid, kind and status, from the server's query index.
/// Operational figures for monitoring, open to anyone who reaches the relay: so only totals.
/// How many cases of which kind a grid has is for signed-in office staff (the dashboard).
async fn stats(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, AppError> {
    let records: u64 = state
        .relay
        .queries()
        .record_counts()
        .await
        .inspect_err(|_| state.relay.metrics.storage_error())?
        .iter()
        .map(|c| c.count)
        .sum();
    let by_grid = state
        .relay
        .attachments()
        .attachment_counts()
        .await
        .inspect_err(|_| state.relay.metrics.storage_error())?;
    let attachments = serde_json::json!({
        "stored": by_grid.iter().map(|c| c.stored).sum::<u64>(),
        "stored_bytes": by_grid.iter().map(|c| c.stored_bytes).sum::<u64>(),
        // Named by a record, not yet uploaded by the device that took them.
        "not_received": by_grid.iter().map(|c| c.named - c.stored).sum::<u64>(),
        "by_grid": by_grid.iter().map(|c| serde_json::json!({
            "grid": c.grid_id,
            "stored": c.stored,
            "stored_bytes": c.stored_bytes,
            "not_received": c.named - c.stored,
        })).collect::<Vec<_>>(),
    });
    Ok(Json(serde_json::json!({
        "records": records,
        "attachments": attachments,
        "cached_docs": state.relay.cached_docs(),
        "connections": state.connections.load(Ordering::SeqCst),
    })))
}

/// Errors at the HTTP edge: a status and a safe message, never internals.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("storage error")]
    Storage(#[from] StorageError),
    #[error("shutting down")]
    ShuttingDown,
    #[error("too many sessions")]
    TooBusy,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            AppError::Storage(e) => {
                tracing::error!("{e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "服务器存储出错，请稍后再试 The server could not read its store; try again later",
                )
            }
            AppError::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "服务器正在重启 The server is restarting; try again in a moment",
            ),
            AppError::TooBusy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "服务器繁忙 Too many devices are syncing right now; try again in a moment",
            ),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
