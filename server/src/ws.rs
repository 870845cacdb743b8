//! One WebSocket connection of a device: hello, catch-up or repair, uploads, live pushes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use automerge::sync;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use gridsync_core::protocol::{
    self, Ack, ClientMsg, Cursor, DocHeads, DocSync, ErrorCode, ErrorMsg, GridStatus, Hello,
    MAX_BATCH_BYTES, MAX_BATCH_CHANGES, MAX_FRAME, MAX_GRIDS, MIN_PROTOCOL, PROTOCOL_VERSION,
    RepairDocs, ServerMsg, Welcome, close_code,
};
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::relay::{RepairError, Writer};
use crate::storage::{Storage, StorageError};

/// A device must say hello this soon after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Documents listed per repair page.
const REPAIR_PAGE: usize = 1000;
/// Documents a device may be repairing at once on one connection.
const MAX_REPAIR_STATES: usize = 4096;

/// Why a session ended early, sent to the device before closing.
struct Close {
    code: u16,
    error: ErrorCode,
    message: String,
}

impl Close {
    fn new(code: u16, error: ErrorCode, message: impl Into<String>) -> Close {
        Close {
            code,
            error,
            message: message.into(),
        }
    }
}

impl From<StorageError> for Close {
    fn from(e: StorageError) -> Close {
        tracing::error!("storage failed during a sync session: {e}");
        Close::new(
            close_code::INTERNAL,
            ErrorCode::Internal,
            "the server could not read or write its store; try again later",
        )
    }
}

struct Session {
    writer: Writer,
    live: bool,
    /// Per grid: what this device holds, and whether a catch-up is still under way.
    cursors: HashMap<String, Cursor>,
    catching_up: HashMap<String, bool>,
    repair: HashMap<String, sync::State>,
    msg_id: u32,
}

pub async fn serve_socket(mut socket: WebSocket, state: Arc<AppState>) {
    let mut shutdown = state.shutdown.clone();
    let result = run(&mut socket, &state, &mut shutdown).await;
    if let Err(close) = result {
        let msg = ServerMsg::Error(ErrorMsg {
            code: close.error,
            message: close.message.clone(),
        });
        for frame in protocol::encode(&msg, 0) {
            let _ = socket.send(Message::Binary(frame.into())).await;
        }
        let reason: String = close.message.chars().take(100).collect();
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
) -> Result<(), Close> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv())
        .await
        .map_err(|_| {
            Close::new(
                close_code::PROTOCOL_ERROR,
                ErrorCode::BadRequest,
                "no hello",
            )
        })?;
    let Some(Ok(Message::Binary(frame))) = first else {
        return Ok(());
    };
    let hello = parse_hello(&frame)?;
    // Subscribe before reading the log, so nothing accepted in between is missed.
    let mut moved = state.relay.subscribe();
    let mut session = start(socket, state, hello).await?;
    let mut decoder = protocol::Decoder::default();

    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let frame = match incoming {
                    None | Some(Err(_)) => return Ok(()),
                    Some(Ok(Message::Binary(frame))) => frame,
                    Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => continue,
                };
                let msg: Option<ClientMsg> = decoder.push(&frame).map_err(|e| {
                    Close::new(close_code::PROTOCOL_ERROR, ErrorCode::BadRequest, e.to_string())
                })?;
                if let Some(msg) = msg {
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
                for grid in grids {
                    push(socket, state, &mut session, &grid).await?;
                }
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

fn parse_hello(frame: &[u8]) -> Result<Hello, Close> {
    match protocol::decode_frame::<ClientMsg>(frame) {
        Ok(ClientMsg::Hello(h)) if (MIN_PROTOCOL..=PROTOCOL_VERSION).contains(&h.protocol) => Ok(h),
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

/// Decides the scope, validates cursors, sends the welcome and the first catch-up or repair.
async fn start(socket: &mut WebSocket, state: &AppState, hello: Hello) -> Result<Session, Close> {
    let scope = resolve_scope(&hello)?;
    let mut session = Session {
        writer: Writer {
            device_id: hello.device_id.clone(),
            worker_id: hello.worker_id.clone(),
            scope: scope.clone(),
        },
        live: hello.live,
        cursors: HashMap::new(),
        catching_up: HashMap::new(),
        repair: HashMap::new(),
        msg_id: 0,
    };
    let storage = &state.relay.storage;
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
        let known = vouches(storage.as_ref(), &cursor).await?
            && match witness {
                Some(w) => vouches(storage.as_ref(), w).await?,
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
        protocol: PROTOCOL_VERSION,
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        server_id: storage.server_id().await?,
        grids: statuses,
        max_frame: MAX_FRAME as u32,
        max_batch_bytes: MAX_BATCH_BYTES as u32,
        max_batch_changes: MAX_BATCH_CHANGES as u32,
    });
    send(socket, &mut session, &welcome).await?;
    let grids: Vec<String> = session.cursors.keys().cloned().collect();
    for grid in grids {
        send_batch(socket, state, &mut session, &grid).await?;
    }
    for grid in repairs {
        send_repair_pages(socket, state, &mut session, &grid).await?;
    }
    Ok(session)
}

/// Whether the log holds the entry a cursor (or witness) points at: then it holds everything
/// before it too, since the log only ever grows at the end.
async fn vouches(storage: &dyn Storage, cursor: &Cursor) -> Result<bool, StorageError> {
    Ok(cursor.seq == 0
        || (cursor.hash.is_some()
            && storage.entry_hash(&cursor.grid, cursor.seq).await? == cursor.hash))
}

/// The grids this connection may read and write. Today: the grids the device asks for, checked
/// for shape; the accounts issue makes this a lookup of the authenticated user's grids.
fn resolve_scope(hello: &Hello) -> Result<Vec<String>, Close> {
    let mut grids: Vec<String> = hello.grids.clone();
    grids.sort();
    grids.dedup();
    let bad = |m: String| Close::new(close_code::PROTOCOL_ERROR, ErrorCode::BadRequest, m);
    if grids.is_empty() || grids.len() > MAX_GRIDS {
        return Err(bad(format!("ask for 1 to {MAX_GRIDS} grids")));
    }
    if let Some(g) = grids.iter().find(|g| g.is_empty() || g.len() > 128) {
        return Err(bad(format!("invalid grid id {g:?}")));
    }
    if hello.device_id.is_empty() || hello.device_id.len() > 128 {
        return Err(bad("invalid device id".into()));
    }
    Ok(grids)
}

async fn handle(
    socket: &mut WebSocket,
    state: &AppState,
    session: &mut Session,
    msg: ClientMsg,
) -> Result<(), Close> {
    match msg {
        ClientMsg::Hello(_) => Err(Close::new(
            close_code::PROTOCOL_ERROR,
            ErrorCode::BadRequest,
            "hello sent twice",
        )),
        ClientMsg::Upload(upload) => {
            if upload.changes.len() > MAX_BATCH_CHANGES {
                return Err(Close::new(
                    close_code::TOO_LARGE,
                    ErrorCode::TooLarge,
                    format!("an upload holds at most {MAX_BATCH_CHANGES} changes"),
                ));
            }
            let (rejected, witnesses) = state.relay.accept(&session.writer, upload.changes).await?;
            // Acknowledged only now: `accept` returned after the store made the batch durable.
            let ack = ServerMsg::Ack(Ack {
                batch: upload.batch,
                rejected,
                witnesses,
            });
            send(socket, session, &ack).await
        }
        ClientMsg::Pull { grid } => {
            if session.catching_up.get(&grid) == Some(&true) {
                send_batch(socket, state, session, &grid).await?;
            }
            Ok(())
        }
        ClientMsg::DocSync(ds) => {
            if !session.writer.scope.contains(&ds.grid) {
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
                .repair_step(&session.writer, &ds.grid, &ds.doc_id, sync_state, message)
                .await
            {
                Ok(reply) => reply,
                Err(RepairError::Storage(e)) => return Err(e.into()),
                Err(RepairError::Refused(reason)) => {
                    return Err(Close::new(
                        close_code::PROTOCOL_ERROR,
                        ErrorCode::BadRequest,
                        reason,
                    ));
                }
            };
            if reply.is_none() {
                session.repair.remove(&ds.doc_id);
            }
            let answer = ServerMsg::DocSync(DocSync {
                grid: ds.grid,
                doc_id: ds.doc_id,
                message: reply.map(serde_bytes::ByteBuf::from),
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
        .batch_since(cursor, &session.writer.device_id)
        .await?;
    session
        .cursors
        .insert(grid.to_string(), changes.cursor.clone());
    session.catching_up.insert(grid.to_string(), changes.more);
    send(socket, session, &ServerMsg::Changes(changes)).await
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
            .batch_since(cursor, &session.writer.device_id)
            .await?;
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
            send(socket, session, &msg).await?;
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
    let storage = &state.relay.storage;
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
            .doc_heads(grid, after.as_deref(), REPAIR_PAGE)
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

async fn send(socket: &mut WebSocket, session: &mut Session, msg: &ServerMsg) -> Result<(), Close> {
    session.msg_id = session.msg_id.wrapping_add(1);
    for frame in protocol::encode(msg, session.msg_id) {
        socket
            .send(Message::Binary(frame.into()))
            .await
            .map_err(|e| Close::new(close_code::GOING_AWAY, ErrorCode::Internal, e.to_string()))?;
    }
    Ok(())
}
