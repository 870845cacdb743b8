//! One WebSocket connection of a device: the first frame (hello or sign-in) under its time and
//! size limits, authentication and the per-device session limit, then the frames, timers and
//! limits around the session's state machine (`session.rs`): the decoder, the token bucket,
//! the idle timeout, pings, the revocation recheck, the grids' notices and the shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use gridsync_core::protocol::{
    self, ATTACHMENTS_PROTOCOL, ClientMsg, CodecError, ErrorCode, ErrorMsg, Hello, LoginRequest,
    MIN_PROTOCOL, PROTOCOL_VERSION, ServerMsg, ZONE_PROTOCOL, close_code,
};
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::accounts::{self, LoginError};
use crate::listen::ReadBudget;
use crate::metrics::{SessionRefusal, SignInRefusal};
use crate::session::{self, Close, Outgoing, Session, community_zone};

/// How often a session checks, while the device is quiet, that its device was not revoked and
/// its user's grids did not change meanwhile (it checks before every message and push as well).
const REVOCATION_CHECK: Duration = Duration::from_secs(5);

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
    let grant = session::authenticate(state, &hello.token)
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
    let Some(_device_session) = state.take_device_session(&grant.identity.device_id) else {
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
    let identity = &grant.identity;
    let scope: Vec<String> = identity
        .grids
        .iter()
        .chain(&identity.former_grids)
        .cloned()
        .collect();
    let mut moved = state.relay.subscribe_grids(&scope);
    metrics.session_started();
    let mut out = Frames::new(socket);
    let mut session = Session::start(state, hello, grant, &mut out).await?;
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
            incoming = out.socket.recv() => {
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
                    session.on_message(&mut out, msg).await?;
                }
            }
            notice = moved.recv(), if session.live() => match notice {
                Ok(n) => session.on_notice(&mut out, &n.grid_id).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => session.on_lagged(&mut out).await?,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = ping.tick(), if session.live() => {
                out.socket
                    .send(Message::Ping(Vec::new().into()))
                    .await
                    .map_err(socket_error)?;
            }
            _ = recheck.tick() => {
                // Revoked, deactivated or moved since the session began: stop at once.
                session.still_granted().await?;
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
    let mut out = Frames::new(socket);
    if protocol >= ZONE_PROTOCOL {
        out.send(&community_zone(state)).await?;
    }
    out.send(&ServerMsg::LoginOk(answer)).await?;
    let _ = out.socket.send(Message::Close(None)).await;
    Ok(())
}

/// The socket's side of a session: each message as its frames, numbered in order.
struct Frames<'s> {
    socket: &'s mut WebSocket,
    msg_id: u32,
}

impl<'s> Frames<'s> {
    fn new(socket: &'s mut WebSocket) -> Frames<'s> {
        Frames { socket, msg_id: 0 }
    }
}

impl Outgoing for Frames<'_> {
    async fn send(&mut self, msg: &ServerMsg) -> Result<usize, Close> {
        self.msg_id = self.msg_id.wrapping_add(1);
        let mut sent = 0;
        for frame in protocol::encode(msg, self.msg_id) {
            sent += frame.len();
            self.socket
                .send(Message::Binary(frame.into()))
                .await
                .map_err(|e| {
                    Close::new(close_code::GOING_AWAY, ErrorCode::Internal, e.to_string())
                })?;
        }
        Ok(sent)
    }
}
