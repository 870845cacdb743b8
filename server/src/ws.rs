//! One WebSocket connection of a device: hello, catch-up or repair, uploads, live pushes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use automerge::sync;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use gridsync_core::protocol::{
    self, ATTACHMENTS_PROTOCOL, Ack, ClientMsg, CodecError, Cursor, DocHeads, DocSync, ErrorCode,
    ErrorMsg, GridStatus, Hello, LoginRequest, MAX_BATCH_BYTES, MAX_BATCH_CHANGES, MAX_FRAME,
    MIN_PROTOCOL, PROTOCOL_VERSION, RepairDocs, ServerMsg, Welcome, ZONE_PROTOCOL, close_code,
};
use tokio::sync::{broadcast, watch};

use crate::accounts::{self, Device, Identity, LoginError, User};
use crate::listen::ReadBudget;
use crate::metrics::{SessionRefusal, SignInRefusal};
use crate::relay::RepairError;
use crate::storage::{KindFilter, Log, StorageError};
use crate::{AppState, attachments};

/// Documents listed per repair page.
const REPAIR_PAGE: usize = 1000;
/// Documents a device may be repairing at once on one connection.
const MAX_REPAIR_STATES: usize = 4096;
/// How often a session checks, while the device is quiet, that its device was not revoked and
/// its user's grids did not change meanwhile (it checks before every message and push as well).
const REVOCATION_CHECK: Duration = Duration::from_secs(5);

/// Why a session ended early, sent to the device before closing.
struct Close {
    code: u16,
    error: ErrorCode,
    message: String,
    /// A storage error not yet counted in `/metrics`.
    storage: bool,
}

impl Close {
    fn new(code: u16, error: ErrorCode, message: impl Into<String>) -> Close {
        Close {
            code,
            error,
            message: message.into(),
            storage: false,
        }
    }

    /// A storage error the relay's core already counted.
    fn counted(e: StorageError) -> Close {
        Close {
            storage: false,
            ..Close::from(e)
        }
    }
}

impl From<StorageError> for Close {
    fn from(e: StorageError) -> Close {
        tracing::error!("storage failed during a sync session: {e}");
        let message = match e {
            // The device keeps what it sent (nothing was acknowledged) and sends it again.
            StorageError::Full => {
                "服务器磁盘已满：修改仍保存在本机，稍后自动上传 the relay's disk is full: your \
                 changes stay on this device and are sent when there is room; try again later"
            }
            _ => "the server could not read or write its store; try again later",
        };
        Close {
            storage: true,
            ..Close::new(close_code::INTERNAL, ErrorCode::Internal, message)
        }
    }
}

struct Session {
    identity: Identity,
    /// The protocol both sides speak: the device's, up to this relay's.
    protocol: u16,
    /// The attachments this session may send or fetch, as far as it looked.
    grants: attachments::Grants,
    token_hash: Vec<u8>,
    /// The user's scope version when the identity was read: the grids are stale once it moved.
    scope_version: i64,
    live: bool,
    /// Per grid: what this device holds, and whether a catch-up is still under way.
    cursors: HashMap<String, Cursor>,
    catching_up: HashMap<String, bool>,
    repair: HashMap<String, sync::State>,
    msg_id: u32,
}

pub async fn serve_socket(
    mut socket: WebSocket,
    state: Arc<AppState>,
    peer: IpAddr,
    budget: Option<Arc<ReadBudget>>,
) {
    let mut shutdown = state.shutdown.clone();
    let result = run(&mut socket, &state, &mut shutdown, peer, budget.as_deref()).await;
    if let Err(close) = result {
        if close.storage {
            state.relay.metrics.storage_error();
        }
        let msg = ServerMsg::Error(ErrorMsg {
            code: close.error,
            message: close.message.clone(),
        });
        for frame in protocol::encode(&msg, 0) {
            let _ = socket.send(Message::Binary(frame.into())).await;
        }
        // A close frame's reason has room for 123 bytes: a longer one (Chinese text is three
        // bytes a character) would make the close frame itself fail.
        let mut reason = String::new();
        for c in close.message.chars().take(100) {
            if reason.len() + c.len_utf8() > 123 {
                break;
            }
            reason.push(c);
        }
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: close.code,
                reason: reason.into(),
            })))
            .await;
    }
}

async fn run(
    socket: &mut WebSocket,
    state: &AppState,
    shutdown: &mut watch::Receiver<bool>,
    peer: IpAddr,
    budget: Option<&ReadBudget>,
) -> Result<(), Close> {
    let limits = &state.limits;
    let first = tokio::select! {
        first = tokio::time::timeout(limits.hello_timeout, socket.recv()) => first,
        _ = shutdown.changed() => return Err(shutting_down()),
    };
    let first = first.map_err(|_| {
        Close::new(
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            "no hello in time",
        )
    })?;
    let frame = match first {
        Some(Ok(Message::Binary(frame))) => frame,
        Some(Ok(Message::Close(_))) | None => return Ok(()),
        Some(Err(_)) if budget.is_some_and(ReadBudget::exhausted) => {
            return Err(Close::new(
                close_code::TOO_LARGE,
                ErrorCode::TooLarge,
                format!(
                    "the first message (hello or sign-in) may be at most {}",
                    protocol::size_text(limits.max_first_message_bytes)
                ),
            ));
        }
        Some(Err(e)) => return Err(socket_error(e)),
        Some(Ok(_)) => {
            return Err(Close::new(
                close_code::PROTOCOL_ERROR,
                ErrorCode::BadRequest,
                "the first message must be a binary hello or sign-in",
            ));
        }
    };
    let metrics = &state.relay.metrics;
    let first = parse_first(&frame).inspect_err(|close| {
        metrics.session_refused(match close.error {
            ErrorCode::IncompatibleVersion => SessionRefusal::IncompatibleVersion,
            _ => SessionRefusal::BadHello,
        })
    });
    let hello = match first? {
        First::Hello(hello) => hello,
        First::Login(request, protocol) => {
            return sign_in(socket, state, peer, request, protocol).await;
        }
    };
    let (identity, token_hash, scope_version) = authenticate(state, &hello.token)
        .await
        .inspect_err(|close| match close.error {
            ErrorCode::Unauthorized => metrics.session_refused(SessionRefusal::UnknownDevice),
            ErrorCode::Revoked => metrics.session_refused(SessionRefusal::Revoked),
            _ => {}
        })?;
    // Signed in: from here on the session's own limits apply.
    if let Some(budget) = budget {
        budget.lift();
    }
    let Some(_device_session) = state.take_device_session(&identity.device_id) else {
        metrics.session_refused(SessionRefusal::DeviceLimit);
        return Err(Close::new(
            close_code::THROTTLED,
            ErrorCode::Throttled,
            format!(
                "此设备已有 {n} 个同步连接，请稍后再试 this device already has {n} sync sessions \
                 open, the most allowed; try again once one has ended",
                n = limits.max_sessions_per_device
            ),
        ));
    };
    // Subscribe before reading the log, so nothing accepted in between is missed; only to the
    // grids this device may hold, so it is not woken for anyone else's.
    let scope: Vec<String> = identity
        .grids
        .iter()
        .chain(&identity.former_grids)
        .cloned()
        .collect();
    let mut moved = state.relay.subscribe_grids(&scope);
    metrics.session_started();
    let mut session = start(socket, state, hello, identity, token_hash, scope_version).await?;
    let mut decoder = protocol::Decoder::with_limit(limits.max_message_bytes);
    let mut recheck = tokio::time::interval(REVOCATION_CHECK);
    recheck.tick().await;
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.tick().await;
    let mut bucket = TokenBucket::new(limits.messages_per_second, limits.message_burst);
    // Bytes of the message whose fragments are arriving, as sent.
    let mut arriving = 0;
    // One deadline for the whole session, moved on by every message the device sends (pongs to
    // our pings included), not restarted by our own timers.
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);

    loop {
        tokio::select! {
            () = &mut idle => {
                return Err(Close::new(
                    close_code::GOING_AWAY,
                    ErrorCode::BadRequest,
                    "no message for too long: closing an idle session",
                ));
            }
            incoming = socket.recv() => {
                idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                let frame = match incoming {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(socket_error(e)),
                    Some(Ok(Message::Binary(frame))) => frame,
                    // Pongs (and pings) only show the device is alive.
                    Some(Ok(_)) => continue,
                };
                // A device sending far faster than the rest is slowed down, not cut off.
                if let Some(wait) = bucket.take() {
                    tokio::time::sleep(wait).await;
                }
                arriving += frame.len();
                let msg: Option<ClientMsg> = decoder.push(&frame).map_err(|e| match e {
                    CodecError::TooLarge(_) => Close::new(close_code::TOO_LARGE, ErrorCode::TooLarge, e.to_string()),
                    _ => Close::new(close_code::PROTOCOL_ERROR, ErrorCode::BadRequest, e.to_string()),
                })?;
                if let Some(msg) = msg {
                    if matches!(msg, ClientMsg::Upload(_)) {
                        metrics.uploaded_bytes(arriving);
                    }
                    arriving = 0;
                    // An upload, pull or repair step of a device revoked or moved a moment ago is
                    // refused, not just its next session.
                    still_granted(state, &session).await?;
                    handle(socket, state, &mut session, msg).await?;
                }
            }
            notice = moved.recv(), if session.live => {
                let grids: Vec<String> = match notice {
                    Ok(n) => vec![n.grid_id],
                    // Missed some notices: look at every grid.
                    Err(broadcast::error::RecvError::Lagged(_)) => session.cursors.keys().cloned().collect(),
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                };
                // Not a single change more of a grid the user was moved away from.
                still_granted(state, &session).await?;
                for grid in grids {
                    push(socket, state, &mut session, &grid).await?;
                }
            }
            _ = ping.tick(), if session.live => {
                socket
                    .send(Message::Ping(Vec::new().into()))
                    .await
                    .map_err(socket_error)?;
            }
            _ = recheck.tick() => {
                // Revoked, deactivated or moved since the session began: stop at once.
                still_granted(state, &session).await?;
            }
            _ = shutdown.changed() => {
                return Err(Close::new(
                    close_code::GOING_AWAY,
                    ErrorCode::ShuttingDown,
                    "the server is restarting; sync again in a moment",
                ));
            }
        }
    }
}

/// Said to a device whose hello has not arrived when the relay stops.
fn shutting_down() -> Close {
    Close::new(
        close_code::GOING_AWAY,
        ErrorCode::ShuttingDown,
        "the server is restarting; sync again in a moment",
    )
}

/// A broken or oversized frame: say why if the socket still listens.
fn socket_error(e: axum::Error) -> Close {
    let message = e.to_string();
    if message.contains("too long") || message.contains("Space limit") || message.contains("size") {
        Close::new(
            close_code::TOO_LARGE,
            ErrorCode::TooLarge,
            format!("message too large: {message}"),
        )
    } else {
        Close::new(close_code::PROTOCOL_ERROR, ErrorCode::BadRequest, message)
    }
}

/// Messages per second with a burst allowance; says how long to wait when over.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            at: tokio::time::Instant::now(),
        }
    }

    fn take(&mut self) -> Option<Duration> {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

enum First {
    Hello(Hello),
    /// A sign-in, with the protocol the device announced (`Login` announces none: 4 or older).
    Login(LoginRequest, u16),
}

/// A hello or sign-in is small (about 10 KiB at `MAX_GRIDS` grids, uncompressed); anything
/// that inflates beyond this is not one.
const MAX_FIRST_MESSAGE: usize = 64 * 1024;

fn parse_first(frame: &[u8]) -> Result<First, Close> {
    match protocol::decode_frame_limited::<ClientMsg>(frame, MAX_FIRST_MESSAGE) {
        Ok(ClientMsg::Login(request)) => Ok(First::Login(request, ATTACHMENTS_PROTOCOL)),
        Ok(ClientMsg::SignIn(s)) if (MIN_PROTOCOL..=PROTOCOL_VERSION).contains(&s.protocol) => {
            Ok(First::Login(s.login, s.protocol))
        }
        Ok(ClientMsg::SignIn(s)) => Err(incompatible(s.protocol, "(sign-in)")),
        Ok(ClientMsg::Hello(h)) if (MIN_PROTOCOL..=PROTOCOL_VERSION).contains(&h.protocol) => {
            Ok(First::Hello(h))
        }
        Ok(ClientMsg::Hello(h)) => Err(incompatible(h.protocol, &h.client_version)),
        Ok(_) => Err(Close::new(
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            "the first message must be a hello",
        )),
        Err(e) => match protocol::peek_hello(frame) {
            Some(p) if p.protocol != PROTOCOL_VERSION => {
                Err(incompatible(p.protocol, &p.client_version))
            }
            _ => Err(Close::new(
                close_code::PROTOCOL_ERROR,
                ErrorCode::BadRequest,
                format!("cannot read hello: {e}"),
            )),
        },
    }
}

fn incompatible(protocol: u16, client_version: &str) -> Close {
    Close::new(
        close_code::INCOMPATIBLE_VERSION,
        ErrorCode::IncompatibleVersion,
        format!(
            "client {client_version} speaks protocol {protocol}; this server speaks \
             {MIN_PROTOCOL} to {PROTOCOL_VERSION}: update the app (请升级应用)"
        ),
    )
}

/// Signs a device in and closes: one `Login`, one `LoginOk` (or an error); to a `SignIn` of
/// protocol 5 or later, the community's zone first.
async fn sign_in(
    socket: &mut WebSocket,
    state: &AppState,
    peer: IpAddr,
    request: LoginRequest,
    protocol: u16,
) -> Result<(), Close> {
    let answer = accounts::login(
        state.accounts.as_ref(),
        &state.limiter,
        peer,
        request,
        state.limits.max_devices_per_user,
    )
    .await;
    let metrics = &state.relay.metrics;
    match &answer {
        Ok(_) => metrics.signed_in(),
        Err(e) => metrics.sign_in_refused(match e {
            LoginError::BadCredentials => SignInRefusal::BadCredentials,
            LoginError::Throttled(_) => SignInRefusal::Throttled,
            LoginError::Inactive => SignInRefusal::Inactive,
            LoginError::NoGrids => SignInRefusal::NoGrids,
            LoginError::TooManyDevices(_) => SignInRefusal::TooManyDevices,
            LoginError::BadRequest(_) => SignInRefusal::BadRequest,
            LoginError::Storage(_) => SignInRefusal::Storage,
        }),
    }
    let answer = answer.map_err(|e| match e {
        LoginError::BadCredentials | LoginError::Inactive => Close::new(
            close_code::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            e.to_string(),
        ),
        LoginError::NoGrids => {
            Close::new(close_code::FORBIDDEN, ErrorCode::Forbidden, e.to_string())
        }
        LoginError::Throttled(_) => {
            Close::new(close_code::THROTTLED, ErrorCode::Throttled, e.to_string())
        }
        LoginError::TooManyDevices(_) => {
            Close::new(close_code::FORBIDDEN, ErrorCode::Forbidden, e.to_string())
        }
        LoginError::BadRequest(_) => Close::new(
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            e.to_string(),
        ),
        LoginError::Storage(e) => e.into(),
    })?;
    let mut msg_id = 0;
    if protocol >= ZONE_PROTOCOL {
        send_raw(socket, &mut msg_id, &community_zone(state)).await?;
    }
    send_raw(socket, &mut msg_id, &ServerMsg::LoginOk(answer)).await?;
    let _ = socket.send(Message::Close(None)).await;
    Ok(())
}

/// The identity behind a device token, decided by the relay alone, with the token's hash and
/// the user's scope version it was read at. Records the contact (once per session, not on every
/// check: that would be a write per session every few seconds); a contact that cannot be
/// recorded (a full disk) does not stop a session that may only read.
async fn authenticate(state: &AppState, token: &str) -> Result<(Identity, Vec<u8>, i64), Close> {
    let token_hash = accounts::token_hash(token);
    let (device, user) = standing(state, &token_hash).await?;
    let (grids, former_grids) = state.accounts.grids_of(&user).await?;
    let actors = state.accounts.device_actors(&device.id).await?;
    if let Err(e) = state.accounts.touch_device(&device.id).await {
        tracing::warn!("could not record the contact of device {}: {e}", device.id);
    }
    let scope_version = user.scope_version;
    let identity = Identity {
        readable_kinds: KindFilter::readable_by(user.role),
        user_id: user.id,
        username: user.username,
        display_name: user.display_name,
        role: user.role,
        device_id: device.id,
        grids,
        former_grids,
        actors,
    };
    Ok((identity, token_hash, scope_version))
}

/// Ends the session when what it was granted has been taken back since it began: the device
/// revoked or its user deactivated (`Revoked`: the device erases its data), or the user's grids
/// changed (`ShuttingDown`, which every device takes as "sync again": its next hello gets the
/// new grids, and it purges the ones it left). The admin commands run in another process, so
/// the database is the only place to learn this; one indexed read.
async fn still_granted(state: &AppState, session: &Session) -> Result<(), Close> {
    let (_, user) = standing(state, &session.token_hash).await?;
    if user.scope_version != session.scope_version {
        return Err(Close::new(
            close_code::GOING_AWAY,
            ErrorCode::ShuttingDown,
            "your grids changed: sync again to receive the new ones (工作网格已调整，请重新同步)",
        ));
    }
    Ok(())
}

/// The device and user behind a token hash, if the device may still sync.
async fn standing(state: &AppState, token_hash: &[u8]) -> Result<(Device, User), Close> {
    let Some((device, user)) = state.accounts.device_by_token(token_hash).await? else {
        return Err(Close::new(
            close_code::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "unknown device: sign in again (设备未登记，请重新登录)",
        ));
    };
    if device.revoked_at.is_some() || !user.active {
        return Err(Close::new(
            close_code::REVOKED,
            ErrorCode::Revoked,
            "this device was revoked: erase its data (此设备已停用)",
        ));
    }
    Ok((device, user))
}

/// Validates cursors, sends the welcome and the first catch-up or repair of every grid in scope.
async fn start(
    socket: &mut WebSocket,
    state: &AppState,
    hello: Hello,
    identity: Identity,
    token_hash: Vec<u8>,
    scope_version: i64,
) -> Result<Session, Close> {
    let scope = identity.grids.clone();
    let mut session = Session {
        identity,
        protocol: hello.protocol.min(PROTOCOL_VERSION),
        grants: attachments::Grants::default(),
        token_hash,
        scope_version,
        live: hello.live,
        cursors: HashMap::new(),
        catching_up: HashMap::new(),
        repair: HashMap::new(),
        msg_id: 0,
    };
    let storage = state.relay.log();
    let mut statuses = Vec::new();
    let mut repairs = Vec::new();
    for grid in &scope {
        let cursor = hello
            .cursors
            .iter()
            .find(|c| &c.grid == grid)
            .cloned()
            .unwrap_or_else(|| Cursor::start(grid));
        let witness = hello.witnesses.iter().find(|w| &w.grid == grid);
        let known = vouches(storage, &cursor).await?
            && match witness {
                Some(w) => vouches(storage, w).await?,
                None => true,
            };
        let head_seq = storage.head(grid).await?.map_or(0, |(seq, _)| seq);
        statuses.push(GridStatus {
            grid: grid.clone(),
            head_seq,
            cursor_known: known,
        });
        if known {
            session.cursors.insert(grid.clone(), cursor);
            session.catching_up.insert(grid.clone(), true);
        } else {
            repairs.push(grid.clone());
        }
    }
    let welcome = ServerMsg::Welcome(Welcome {
        // A device of an older protocol is answered in its own.
        protocol: session.protocol,
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        server_id: storage.server_id().await?,
        grids: statuses,
        max_frame: MAX_FRAME as u32,
        max_batch_bytes: MAX_BATCH_BYTES as u32,
        max_batch_changes: MAX_BATCH_CHANGES as u32,
    });
    send(socket, &mut session, &welcome).await?;
    if session.protocol >= ZONE_PROTOCOL {
        // Every session, so that a device learns a setting changed since its sign-in.
        send(socket, &mut session, &community_zone(state)).await?;
    }
    let grids: Vec<String> = session.cursors.keys().cloned().collect();
    for grid in grids {
        send_batch(socket, state, &mut session, &grid).await?;
    }
    for grid in repairs {
        send_repair_pages(socket, state, &mut session, &grid).await?;
    }
    Ok(session)
}

/// The community's time zone, the one the dashboard counts its days in.
fn community_zone(state: &AppState) -> ServerMsg {
    ServerMsg::Zone(protocol::CommunityZone {
        utc_offset_minutes: state.dashboard.offset.local_minus_utc() / 60,
    })
}

/// Whether the log holds the entry a cursor (or witness) points at: then it holds everything
/// before it too, since the log only ever grows at the end.
async fn vouches(storage: &dyn Log, cursor: &Cursor) -> Result<bool, StorageError> {
    Ok(cursor.seq == 0
        || (cursor.hash.is_some()
            && storage.entry_hash(&cursor.grid, cursor.seq).await? == cursor.hash))
}

async fn handle(
    socket: &mut WebSocket,
    state: &AppState,
    session: &mut Session,
    msg: ClientMsg,
) -> Result<(), Close> {
    match msg {
        ClientMsg::Login(_) | ClientMsg::SignIn(_) => Err(Close::new(
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            "sign in on a connection of its own",
        )),
        ClientMsg::Hello(_) => Err(Close::new(
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            "hello sent twice",
        )),
        ClientMsg::BlobPut(_) | ClientMsg::BlobGet(_)
            if session.protocol < ATTACHMENTS_PROTOCOL =>
        {
            Err(Close::new(
                close_code::PROTOCOL_ERROR,
                ErrorCode::BadRequest,
                format!(
                    "attachments need protocol {ATTACHMENTS_PROTOCOL}; this session speaks {}",
                    session.protocol
                ),
            ))
        }
        ClientMsg::BlobPut(put) => {
            let answer = attachments::put(state, &session.identity, &mut session.grants, put)
                .await
                .inspect_err(|_| state.relay.metrics.storage_error())
                .map_err(Close::counted)?;
            send(socket, session, &ServerMsg::Blob(answer))
                .await
                .map(drop)
        }
        ClientMsg::BlobGet(get) => {
            let answer = attachments::get(state, &session.identity, &mut session.grants, get)
                .await
                .inspect_err(|_| state.relay.metrics.storage_error())
                .map_err(Close::counted)?;
            send(socket, session, &ServerMsg::BlobData(answer))
                .await
                .map(drop)
        }
        ClientMsg::Upload(upload) => {
            if upload.changes.len() > MAX_BATCH_CHANGES {
                return Err(Close::new(
                    close_code::TOO_LARGE,
                    ErrorCode::TooLarge,
                    format!("an upload holds at most {MAX_BATCH_CHANGES} changes"),
                ));
            }
            let (rejected, witnesses) = state
                .relay
                .accept(&session.identity, upload.changes)
                .await
                .map_err(Close::counted)?;
            // Acknowledged only now: `accept` returned after the store made the batch durable.
            let ack = ServerMsg::Ack(Ack {
                batch: upload.batch,
                rejected,
                witnesses,
            });
            send(socket, session, &ack).await.map(drop)
        }
        ClientMsg::Pull { grid } => {
            if session.catching_up.get(&grid) == Some(&true) {
                send_batch(socket, state, session, &grid).await?;
            }
            Ok(())
        }
        ClientMsg::DocSync(ds) => {
            if !session.identity.grids.contains(&ds.grid) {
                return Err(Close::new(
                    close_code::FORBIDDEN,
                    ErrorCode::Forbidden,
                    format!("grid {} is outside this device's scope", ds.grid),
                ));
            }
            if !session.repair.contains_key(&ds.doc_id) && session.repair.len() >= MAX_REPAIR_STATES
            {
                session.repair.clear();
            }
            let sync_state = session.repair.entry(ds.doc_id.clone()).or_default();
            let message = ds.message.as_ref().map(|m| m.as_slice());
            let reply = match state
                .relay
                .repair_step(&session.identity, &ds.grid, &ds.doc_id, sync_state, message)
                .await
            {
                Ok(reply) => reply,
                Err(RepairError::Storage(e)) => return Err(e.into()),
                // This document is refused (say, the role may not write it); the rest of the
                // repair goes on, and the device keeps its copy.
                Err(RepairError::Refused(reason)) => {
                    session.repair.remove(&ds.doc_id);
                    let answer = ServerMsg::DocSync(DocSync {
                        grid: ds.grid,
                        doc_id: ds.doc_id,
                        message: None,
                        refused: Some(reason),
                    });
                    return send(socket, session, &answer).await.map(drop);
                }
            };
            if reply.is_none() {
                session.repair.remove(&ds.doc_id);
            }
            let answer = ServerMsg::DocSync(DocSync {
                grid: ds.grid,
                doc_id: ds.doc_id,
                message: reply.map(serde_bytes::ByteBuf::from),
                refused: None,
            });
            send(socket, session, &answer).await?;
            Ok(())
        }
    }
}

/// Sends the next catch-up batch of a grid and moves the session's cursor.
async fn send_batch(
    socket: &mut WebSocket,
    state: &AppState,
    session: &mut Session,
    grid: &str,
) -> Result<(), Close> {
    let Some(cursor) = session.cursors.get(grid) else {
        return Ok(());
    };
    let changes = state
        .relay
        .batch_since(cursor, &session.identity)
        .await
        .map_err(Close::counted)?;
    session
        .cursors
        .insert(grid.to_string(), changes.cursor.clone());
    session.catching_up.insert(grid.to_string(), changes.more);
    let sent = send(socket, session, &ServerMsg::Changes(changes)).await?;
    state.relay.metrics.caught_up_bytes(sent);
    Ok(())
}

/// Live push: everything new in a grid since what this device holds, skipping empty batches.
async fn push(
    socket: &mut WebSocket,
    state: &AppState,
    session: &mut Session,
    grid: &str,
) -> Result<(), Close> {
    if session.catching_up.get(grid) != Some(&false) {
        return Ok(());
    }
    // Bounded: each round moves the cursor forward over a finite log.
    for _ in 0..10_000 {
        let Some(cursor) = session.cursors.get(grid) else {
            return Ok(());
        };
        let changes = state
            .relay
            .batch_since(cursor, &session.identity)
            .await
            .map_err(Close::counted)?;
        let more = changes.more;
        let moved = changes.cursor != *cursor;
        if !moved {
            return Ok(());
        }
        session
            .cursors
            .insert(grid.to_string(), changes.cursor.clone());
        if !changes.docs.is_empty() {
            let msg = ServerMsg::Changes(protocol::Changes {
                more: false,
                ..changes
            });
            let sent = send(socket, session, &msg).await?;
            state.relay.metrics.pushed_bytes(sent);
        }
        if !more {
            return Ok(());
        }
    }
    Ok(())
}

async fn send_repair_pages(
    socket: &mut WebSocket,
    state: &AppState,
    session: &mut Session,
    grid: &str,
) -> Result<(), Close> {
    let storage = state.relay.log();
    let head = match storage.head(grid).await? {
        Some((seq, hash)) => Cursor {
            grid: grid.to_string(),
            seq,
            hash: Some(hash),
        },
        None => Cursor::start(grid),
    };
    let mut after: Option<String> = None;
    loop {
        let page = storage
            .doc_heads(
                grid,
                &session.identity.readable_kinds,
                after.as_deref(),
                REPAIR_PAGE,
            )
            .await?;
        let more = page.len() == REPAIR_PAGE;
        after = page.last().map(|(id, _)| id.clone());
        let msg = ServerMsg::RepairDocs(RepairDocs {
            grid: grid.to_string(),
            docs: page
                .into_iter()
                .map(|(doc_id, heads)| DocHeads { doc_id, heads })
                .collect(),
            more,
            head: head.clone(),
        });
        send(socket, session, &msg).await?;
        if !more {
            break;
        }
    }
    // After repair the device pulls from the head onwards like any catch-up.
    session.cursors.insert(grid.to_string(), head);
    session.catching_up.insert(grid.to_string(), true);
    Ok(())
}

/// Sends a message; returns its size as sent (its frames, compressed).
async fn send(
    socket: &mut WebSocket,
    session: &mut Session,
    msg: &ServerMsg,
) -> Result<usize, Close> {
    send_raw(socket, &mut session.msg_id, msg).await
}

async fn send_raw(
    socket: &mut WebSocket,
    msg_id: &mut u32,
    msg: &ServerMsg,
) -> Result<usize, Close> {
    *msg_id = msg_id.wrapping_add(1);
    let mut sent = 0;
    for frame in protocol::encode(msg, *msg_id) {
        sent += frame.len();
        socket
            .send(Message::Binary(frame.into()))
            .await
            .map_err(|e| Close::new(close_code::GOING_AWAY, ErrorCode::Internal, e.to_string()))?;
    }
    Ok(sent)
}
