//! The WebSocket transport: connects to the relay and drives a [`SyncEngine`] with a replica.

mod tls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::{Error, Result};
use crate::protocol::{self, Decoder, MAX_FRAME, ServerMsg};
use crate::store::Replica;
use crate::sync::{Effect, Event, SyncEngine, SyncStats};

pub use tls::{check_ca_certificate, is_cleartext_remote};

/// How long a one-shot sync waits for the server's next message before giving up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts of one sync session, as measured at the socket.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    #[serde(flatten)]
    pub stats: SyncStats,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The session stopped at [`SyncOptions::deadline`] before it was done; the next sync
    /// resumes from what was stored.
    pub stopped_at_deadline: bool,
}

/// Progress of a catch-up, for a progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Log entries still to receive, summed over grids, as the server announced them.
    pub total: u64,
    pub done: u64,
}

type ProgressFn<'a> = Box<dyn FnMut(Progress) + Send + 'a>;

/// What a sync does beyond the defaults; `SyncOptions::default()` is a plain sync.
#[derive(Default)]
pub struct SyncOptions<'a> {
    /// Called after each stored batch of the catch-up.
    pub progress: Option<ProgressFn<'a>>,
    /// Stop once this instant has passed, cleanly: only between two messages, when every
    /// received batch is stored with its cursor or not at all. Uploads not yet acknowledged stay
    /// in the outbox and are sent again (the relay recognises them). For the few seconds to
    /// minutes a phone's background task is given.
    pub deadline: Option<Instant>,
    /// Called after the session changed the replica's records: a received batch stored, or
    /// records outside the device's scope purged. An app refreshes what it shows from here.
    pub on_change: Option<Box<dyn FnMut() + Send + 'a>>,
    /// Called as each attachment is uploaded, refused or downloaded whole.
    pub on_attachment: Option<Box<dyn FnMut(AttachmentProgress) + Send + 'a>>,
}

/// What became of one attachment during a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentProgress {
    /// The relay holds and checked every byte of this own attachment.
    Uploaded(crate::protocol::Hash),
    /// The relay refused this own attachment, for this reason (kept; not sent again).
    Refused(crate::protocol::Hash, String),
    /// A wanted attachment arrived whole and matched its hash.
    Downloaded(crate::protocol::Hash),
}

/// Turns `http://host:port` (or `ws://...`) into the sync endpoint's URL.
pub fn sync_url(server_url: &str) -> String {
    let base = server_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        base.to_string()
    };
    if base.ends_with("/v1/sync") {
        base
    } else {
        format!("{base}/v1/sync")
    }
}

/// Syncs once: uploads every unsent change, receives everything new, then disconnects.
/// On any error the replica holds exactly what was stored before it: nothing is half-written.
pub async fn sync_once(
    replica: &mut Replica,
    progress: Option<ProgressFn<'_>>,
) -> Result<SyncReport> {
    let mut access = Exclusive(replica);
    let options = SyncOptions {
        progress,
        ..SyncOptions::default()
    };
    drive(&mut access, false, None, options).await
}

/// [`sync_once`] on a replica the app shares between threads: the lock is taken for one step
/// at a time (storing one batch at most), so reads and writes go on during the sync.
pub async fn sync_once_shared(
    replica: Arc<Mutex<Replica>>,
    options: SyncOptions<'_>,
) -> Result<SyncReport> {
    let mut access = Shared(replica);
    drive(&mut access, false, None, options).await
}

/// Stays connected: catches up, then uploads local writes as `local_writes` is notified and stores
/// what the server pushes, until `stop` is notified or the connection breaks.
pub async fn run_live(
    replica: Arc<Mutex<Replica>>,
    local_writes: Arc<Notify>,
    stop: Arc<Notify>,
) -> Result<SyncReport> {
    run_live_with(replica, local_writes, stop, SyncOptions::default()).await
}

/// [`run_live`] with options (a hook after each stored push, a deadline).
pub async fn run_live_with(
    replica: Arc<Mutex<Replica>>,
    local_writes: Arc<Notify>,
    stop: Arc<Notify>,
    options: SyncOptions<'_>,
) -> Result<SyncReport> {
    let mut access = Shared(replica);
    drive(&mut access, true, Some((local_writes, stop)), options).await
}

/// How the driver reaches the replica: owned for one-shot syncs, shared for live sessions.
trait Access {
    fn run<T>(&mut self, f: impl FnOnce(&mut Replica) -> T) -> T;
}

struct Exclusive<'a>(&'a mut Replica);

impl Access for Exclusive<'_> {
    fn run<T>(&mut self, f: impl FnOnce(&mut Replica) -> T) -> T {
        f(self.0)
    }
}

struct Shared(Arc<Mutex<Replica>>);

impl Access for Shared {
    fn run<T>(&mut self, f: impl FnOnce(&mut Replica) -> T) -> T {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

async fn drive<A: Access>(
    access: &mut A,
    live: bool,
    signals: Option<(Arc<Notify>, Arc<Notify>)>,
    options: SyncOptions<'_>,
) -> Result<SyncReport> {
    let SyncOptions {
        mut progress,
        deadline,
        mut on_change,
        on_attachment: mut attachment_progress,
    } = options;
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(SyncReport {
            stopped_at_deadline: true,
            ..SyncReport::default()
        });
    }
    let (identity, cursors, witnesses, ca) = access.run(|r| {
        Ok::<_, Error>((
            r.identity()?.clone(),
            r.cursors()?,
            r.witnesses()?,
            r.trusted_ca()?,
        ))
    })?;
    let url = sync_url(&identity.server_url);
    let unreachable = |message: String| Error::Unreachable {
        url: url.clone(),
        message,
    };
    let connecting = connect(&identity.server_url, ca.as_deref());
    let mut ws = match deadline {
        Some(d) => {
            match tokio::time::timeout_at(tokio::time::Instant::from_std(d), connecting).await {
                Ok(connected) => connected?,
                Err(_) => {
                    return Ok(SyncReport {
                        stopped_at_deadline: true,
                        ..SyncReport::default()
                    });
                }
            }
        }
        None => connecting.await?,
    };

    let mut catch_up = CatchUp::new(&cursors);
    let mut engine = SyncEngine::new(
        &identity.token,
        &identity.device_id,
        cursors,
        witnesses,
        live,
    );
    let mut report = SyncReport::default();
    let mut decoder = Decoder::default();
    let mut msg_id: u32 = 0;
    let mut pending: std::collections::VecDeque<Effect> = engine.start().into();

    loop {
        while let Some(effect) = pending.pop_front() {
            match effect {
                Effect::Send(msg) => {
                    msg_id = msg_id.wrapping_add(1);
                    for frame in protocol::encode(&msg, msg_id) {
                        report.bytes_sent += frame.len() as u64;
                        ws.send(Message::Binary(frame.into()))
                            .await
                            .map_err(|e| unreachable(e.to_string()))?;
                    }
                    report.messages_sent += 1;
                }
                Effect::ReadOutbox {
                    max_changes,
                    max_bytes,
                } => {
                    let entries = access.run(|r| r.outbox_batch(max_changes, max_bytes))?;
                    pending.extend(engine.handle(Event::OutboxRead(entries)));
                }
                Effect::Store { grid, docs, cursor } => {
                    access.run(|r| r.apply_remote(&grid, &docs, &cursor))?;
                    catch_up.reached(&grid, cursor.seq);
                    if let Some(p) = progress.as_mut() {
                        p(catch_up.progress());
                    }
                    if let Some(changed) = on_change.as_mut() {
                        changed();
                    }
                }
                Effect::Acknowledge {
                    accepted,
                    rejected,
                    witnesses,
                } => {
                    access.run(|r| r.acknowledge(&accepted, &rejected, &witnesses))?;
                }
                Effect::RepairDone { grid, witness } => {
                    if let Some(w) = witness {
                        access.run(|r| r.forget_witness(&grid, w.seq))?;
                    }
                }
                Effect::ListLocalDocs { grid } => {
                    let docs = access.run(|r| r.doc_heads(&grid))?;
                    pending.extend(engine.handle(Event::LocalDocs { grid, docs }));
                }
                Effect::RepairStep {
                    grid,
                    doc_id,
                    mut state,
                    incoming,
                } => {
                    let reply = access
                        .run(|r| r.repair_step(&grid, &doc_id, &mut state, incoming.as_deref()))?;
                    pending.extend(engine.handle(Event::RepairStepped {
                        grid,
                        doc_id,
                        state,
                        reply,
                    }));
                }
                Effect::ReadAttachments => {
                    let (uploads, downloads) = access.run(|r| r.attachments_to_sync())?;
                    pending.extend(engine.handle(Event::AttachmentsRead { uploads, downloads }));
                }
                Effect::ReadPiece { hash, offset } => {
                    let data = access.run(|r| r.attachment_piece(&hash, offset))?;
                    pending.extend(engine.handle(Event::PieceRead { hash, offset, data }));
                }
                Effect::AttachmentUploaded { hash } => {
                    access.run(|r| r.mark_attachment_uploaded(&hash))?;
                    if let Some(p) = attachment_progress.as_mut() {
                        p(AttachmentProgress::Uploaded(hash));
                    }
                }
                Effect::AttachmentRefused { hash, reason } => {
                    tracing::warn!(
                        "attachment {} refused: {reason}",
                        crate::record::attachment::hash_text(&hash)
                    );
                    access.run(|r| r.mark_attachment_refused(&hash, &reason))?;
                    if let Some(p) = attachment_progress.as_mut() {
                        p(AttachmentProgress::Refused(hash, reason));
                    }
                }
                Effect::StorePiece {
                    hash,
                    offset,
                    size,
                    data,
                } => {
                    let done =
                        access.run(|r| r.store_attachment_piece(&hash, offset, size, &data))?;
                    if done {
                        if let Some(p) = attachment_progress.as_mut() {
                            p(AttachmentProgress::Downloaded(hash));
                        }
                        if let Some(changed) = on_change.as_mut() {
                            changed();
                        }
                    }
                }
                Effect::AttachmentUnavailable { hash, refused } => {
                    access.run(|r| r.attachment_unavailable(&hash, refused.as_deref()))?;
                }
                Effect::Scope { grids } => {
                    access.run(|r| r.set_scope(&grids))?;
                }
                Effect::Zone(zone) => {
                    access.run(|r| r.set_community_zone(zone))?;
                }
                Effect::Synced => {
                    access.run(|r| {
                        r.mark_synced()?;
                        r.purge_outside_scope().map(|_| ())
                    })?;
                    if let Some(changed) = on_change.as_mut() {
                        changed();
                    }
                    if !live {
                        let _ = ws.close(None).await;
                        report.stats = engine.stats.clone();
                        return Ok(report);
                    }
                }
                Effect::Fail(e) => {
                    let _ = ws.close(None).await;
                    if matches!(e, Error::Revoked(_)) {
                        access.run(|r| r.wipe())?;
                    }
                    return Err(e);
                }
            }
        }

        // Every effect of the last message is carried out: this is the one place a session can
        // stop with nothing half done.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = ws.close(None).await;
            report.stats = engine.stats.clone();
            report.stopped_at_deadline = true;
            return Ok(report);
        }
        let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
        let incoming = match &signals {
            None => {
                let idle_by = tokio::time::Instant::now() + IDLE_TIMEOUT;
                match tokio::time::timeout_at(until(idle_by, deadline), ws.next()).await {
                    Ok(frame) => Incoming::Frame(frame),
                    Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => continue,
                    Err(_) => return Err(unreachable("the server stopped answering".into())),
                }
            }
            Some((local_writes, stop)) => tokio::select! {
                frame = ws.next() => Incoming::Frame(frame),
                _ = local_writes.notified() => Incoming::LocalWrite,
                _ = stop.notified() => Incoming::Stop,
                _ = tokio::time::sleep_until(until(far, deadline)), if deadline.is_some() => continue,
            },
        };
        let frame = match incoming {
            Incoming::LocalWrite => {
                pending.extend(engine.handle(Event::LocalWrite));
                continue;
            }
            Incoming::Stop => {
                let _ = ws.close(None).await;
                report.stats = engine.stats.clone();
                return Ok(report);
            }
            Incoming::Frame(frame) => frame,
        };
        let bytes = match frame {
            None => return Err(unreachable("the server closed the connection".into())),
            Some(Err(e)) => return Err(unreachable(e.to_string())),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(frame))) => {
                let reason = frame
                    .map(|f| format!("{} ({})", f.reason, u16::from(f.code)))
                    .unwrap_or_else(|| "no reason given".into());
                return Err(Error::Refused(format!(
                    "the server closed the session: {reason}"
                )));
            }
            Some(Ok(_)) => continue,
        };
        report.bytes_received += bytes.len() as u64;
        let msg: Option<ServerMsg> = decoder
            .push(&bytes)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let Some(msg) = msg else { continue };
        report.messages_received += 1;
        if let ServerMsg::Welcome(w) = &msg {
            for g in &w.grids {
                catch_up.head(&g.grid, g.head_seq);
            }
        }
        pending.extend(engine.handle(Event::Received(msg)));
    }
}

/// The earlier of `by` and the deadline, as a tokio instant.
fn until(by: tokio::time::Instant, deadline: Option<Instant>) -> tokio::time::Instant {
    match deadline {
        Some(d) => by.min(tokio::time::Instant::from_std(d)),
        None => by,
    }
}

/// How far each grid's catch-up has come, for the progress bar. Sequence numbers are global
/// across grids, so this counts log positions, which is close to, not exactly, entries.
struct CatchUp {
    start: std::collections::HashMap<String, u64>,
    head: std::collections::HashMap<String, u64>,
    at: std::collections::HashMap<String, u64>,
}

impl CatchUp {
    fn new(cursors: &[crate::protocol::Cursor]) -> CatchUp {
        let start: std::collections::HashMap<String, u64> =
            cursors.iter().map(|c| (c.grid.clone(), c.seq)).collect();
        CatchUp {
            at: start.clone(),
            start,
            head: Default::default(),
        }
    }

    fn head(&mut self, grid: &str, seq: u64) {
        self.head.insert(grid.to_string(), seq);
    }

    fn reached(&mut self, grid: &str, seq: u64) {
        self.at.insert(grid.to_string(), seq);
    }

    fn progress(&self) -> Progress {
        let mut p = Progress::default();
        for (grid, head) in &self.head {
            let start = self.start.get(grid).copied().unwrap_or(0).min(*head);
            let at = self
                .at
                .get(grid)
                .copied()
                .unwrap_or(start)
                .clamp(start, *head);
            p.total += head - start;
            p.done += at - start;
        }
        p
    }
}

enum Incoming {
    Frame(Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>),
    LocalWrite,
    Stop,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the relay's sync socket: `https://` and `wss://` over TLS (rustls), trusting the public
/// roots and `extra_ca` (PEM), never in clear; `http://` and `ws://` plain.
async fn connect(server_url: &str, extra_ca: Option<&str>) -> Result<Socket> {
    let url = sync_url(server_url);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME + 1024))
        .max_frame_size(Some(MAX_FRAME + 1024))
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024);
    // Given a plain connector, tokio-tungstenite refuses a wss:// URL rather than connect in
    // clear, so even a scheme this misreads cannot fall back to plain text.
    let connector = if url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
    {
        Connector::Rustls(tls::client_config(extra_ca)?)
    } else {
        Connector::Plain
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        Some(config),
        true,
        Some(connector),
    );
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| Error::Unreachable {
            url: url.clone(),
            message: "timed out connecting".into(),
        })?
        .map_err(|e| tls::connect_error(server_url, &url, e))?;
    Ok(ws)
}

/// Signs this replica in: checks the password on the server, which enrols a new device bound to
/// the replica's actor id, and stores the device token. Done once per replica, online.
pub async fn sign_in(
    replica: &mut Replica,
    server_url: &str,
    username: &str,
    password: &str,
    device_name: &str,
) -> Result<crate::protocol::LoginResponse> {
    sign_in_with_ca(replica, server_url, username, password, device_name, None).await
}

/// [`sign_in`], trusting one more CA certificate (PEM) besides the public roots: a community
/// intranet relay's own. It is used for this sign-in and kept in the replica for every later
/// sync; `None` keeps the one the replica already has, if any. A certificate neither trusts is
/// refused with [`Error::UntrustedCertificate`] before anything is sent.
pub async fn sign_in_with_ca(
    replica: &mut Replica,
    server_url: &str,
    username: &str,
    password: &str,
    device_name: &str,
    ca_pem: Option<&str>,
) -> Result<crate::protocol::LoginResponse> {
    if let Some(pem) = ca_pem {
        check_ca_certificate(pem)?;
    }
    let ca = match ca_pem {
        Some(pem) => Some(pem.to_string()),
        None => replica.trusted_ca()?,
    };
    let request = crate::protocol::LoginRequest {
        username: username.to_string(),
        password: password.to_string(),
        device_name: device_name.to_string(),
        actor: replica.actor_hex(),
    };
    let signed_in = login_with_ca(server_url, ca.as_deref(), request).await?;
    replica.enrol_in_zone(server_url, &signed_in.account, ca_pem, signed_in.zone)?;
    Ok(signed_in.account)
}

/// What a sign-in returns: the account, and the community's time zone if the relay said it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub account: crate::protocol::LoginResponse,
    /// `None` only from a relay that does not say it.
    pub zone: Option<crate::protocol::CommunityZone>,
}

/// The sign-in exchange alone: one `SignIn` message (protocol 5), the relay's zone and its
/// `LoginOk`.
pub async fn login(server_url: &str, request: crate::protocol::LoginRequest) -> Result<SignedIn> {
    login_with_ca(server_url, None, request).await
}

/// [`login`], trusting `extra_ca` (PEM) besides the public roots.
pub async fn login_with_ca(
    server_url: &str,
    extra_ca: Option<&str>,
    request: crate::protocol::LoginRequest,
) -> Result<SignedIn> {
    let url = sync_url(server_url);
    let unreachable = |message: String| Error::Unreachable {
        url: url.clone(),
        message,
    };
    let mut ws = connect(server_url, extra_ca).await?;
    let sign_in = crate::protocol::ClientMsg::SignIn(crate::protocol::SignIn {
        protocol: protocol::PROTOCOL_VERSION,
        login: request,
    });
    let mut zone = None;
    for frame in protocol::encode(&sign_in, 1) {
        ws.send(Message::Binary(frame.into()))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    }
    let mut decoder = Decoder::default();
    for _ in 0..16 {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, ws.next())
            .await
            .map_err(|_| unreachable("the server stopped answering".into()))?;
        let bytes = match frame {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(unreachable(e.to_string())),
        };
        let msg: Option<ServerMsg> = decoder
            .push(&bytes)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        match msg {
            Some(ServerMsg::Zone(z)) => {
                if z.offset().is_none() {
                    let _ = ws.close(None).await;
                    return Err(Error::Protocol(format!(
                        "the relay's time zone, {} minutes from UTC, is not one",
                        z.utc_offset_minutes
                    )));
                }
                zone = Some(z);
            }
            Some(ServerMsg::LoginOk(account)) => {
                let _ = ws.close(None).await;
                return Ok(SignedIn { account, zone });
            }
            Some(ServerMsg::Error(e)) => {
                return Err(Error::SignInRefused {
                    code: e.code,
                    message: e.message,
                });
            }
            _ => {}
        }
    }
    Err(Error::Protocol(
        "the server closed the connection without answering the sign-in".into(),
    ))
}
