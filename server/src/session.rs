//! The relay's side of one device's sync session as messages in, messages out: the cursor and
//! witness checks of a hello, the welcome, catch-up batches and repair pages, uploads and their
//! acknowledgements, repair steps, attachments, live pushes after a grid's notice, and the
//! revocation and scope checks before each of them. It reads and writes through the relay's
//! core and the store, but owns no socket, timer or frame: `ws.rs` feeds it the device's
//! messages and the grids' notices and carries what it sends, and its tests drive it with a
//! list for a socket.

use std::collections::HashMap;

use automerge::sync;
use gridsync_core::protocol::{
    self, ATTACHMENTS_PROTOCOL, Ack, ClientMsg, Cursor, DocHeads, DocSync, ErrorCode, GridStatus,
    Hello, MAX_BATCH_BYTES, MAX_BATCH_CHANGES, MAX_FRAME, PROTOCOL_VERSION, RepairDocs, ServerMsg,
    Welcome, ZONE_PROTOCOL, close_code,
};

use crate::accounts::{self, Device, Identity, User};
use crate::relay::RepairError;
use crate::storage::{KindFilter, Log, StorageError};
use crate::{AppState, attachments};

#[cfg(test)]
mod tests;

/// Documents listed per repair page.
const REPAIR_PAGE: usize = 1000;
/// Documents a device may be repairing at once on one connection.
const MAX_REPAIR_STATES: usize = 4096;

/// Why a session ended early, sent to the device before closing.
#[derive(Debug)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) error: ErrorCode,
    pub(crate) message: String,
    /// A storage error not yet counted in `/metrics`.
    pub(crate) storage: bool,
}

impl Close {
    pub(crate) fn new(code: u16, error: ErrorCode, message: impl Into<String>) -> Close {
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

/// Where a session's messages go: the socket's frames in `ws.rs`, a list in the tests. One
/// message at a time, so that a long catch-up or repair is never held in memory whole.
pub(crate) trait Outgoing {
    /// Sends one message; returns its size as sent (its frames, compressed), for `/metrics`.
    async fn send(&mut self, msg: &ServerMsg) -> Result<usize, Close>;
}

/// What a device token stands for, read when its session began.
pub(crate) struct Grant {
    pub(crate) identity: Identity,
    token_hash: Vec<u8>,
    /// The user's scope version when the identity was read: the grids are stale once it moved.
    scope_version: i64,
}

/// The identity behind a device token, decided by the relay alone. Records the contact (once per
/// session, not on every check: that would be a write per session every few seconds); a contact
/// that cannot be recorded (a full disk) does not stop a session that may only read.
pub(crate) async fn authenticate(state: &AppState, token: &str) -> Result<Grant, Close> {
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
    Ok(Grant {
        identity,
        token_hash,
        scope_version,
    })
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

/// The community's time zone, the one the dashboard counts its days in.
pub(crate) fn community_zone(state: &AppState) -> ServerMsg {
    ServerMsg::Zone(protocol::CommunityZone {
        utc_offset_minutes: state.dashboard.offset.local_minus_utc() / 60,
    })
}

/// One device's session after its hello: what it holds of each grid, what it is repairing, and
/// what it was granted.
pub(crate) struct Session<'a> {
    state: &'a AppState,
    identity: Identity,
    /// The protocol both sides speak: the device's, up to this relay's.
    protocol: u16,
    /// The attachments this session may send or fetch, as far as it looked.
    grants: attachments::Grants,
    token_hash: Vec<u8>,
    scope_version: i64,
    live: bool,
    /// Per grid: what this device holds, and whether a catch-up is still under way.
    cursors: HashMap<String, Cursor>,
    catching_up: HashMap<String, bool>,
    repair: HashMap<String, sync::State>,
}

impl<'a> Session<'a> {
    /// Validates the hello's cursors and witnesses, sends the welcome (and the zone), then the
    /// first catch-up batch of every grid the relay can vouch for and the repair pages of the
    /// others.
    pub(crate) async fn start(
        state: &'a AppState,
        hello: Hello,
        grant: Grant,
        out: &mut impl Outgoing,
    ) -> Result<Session<'a>, Close> {
        let scope = grant.identity.grids.clone();
        let mut session = Session {
            state,
            identity: grant.identity,
            protocol: hello.protocol.min(PROTOCOL_VERSION),
            grants: attachments::Grants::default(),
            token_hash: grant.token_hash,
            scope_version: grant.scope_version,
            live: hello.live,
            cursors: HashMap::new(),
            catching_up: HashMap::new(),
            repair: HashMap::new(),
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
        out.send(&welcome).await?;
        if session.protocol >= ZONE_PROTOCOL {
            // Every session, so that a device learns a setting changed since its sign-in.
            out.send(&community_zone(state)).await?;
        }
        let grids: Vec<String> = session.cursors.keys().cloned().collect();
        for grid in grids {
            session.send_batch(out, &grid).await?;
        }
        for grid in repairs {
            session.send_repair_pages(out, &grid).await?;
        }
        Ok(session)
    }

    /// Whether the device stays for pushes once caught up.
    pub(crate) fn live(&self) -> bool {
        self.live
    }

    /// Ends the session when what it was granted has been taken back since it began: the device
    /// revoked or its user deactivated (`Revoked`: the device erases its data), or the user's
    /// grids changed (`ShuttingDown`, which every device takes as "sync again": its next hello
    /// gets the new grids, and it purges the ones it left). The admin commands run in another
    /// process, so the database is the only place to learn this; one indexed read.
    pub(crate) async fn still_granted(&self) -> Result<(), Close> {
        let (_, user) = standing(self.state, &self.token_hash).await?;
        if user.scope_version != self.scope_version {
            return Err(Close::new(
                close_code::GOING_AWAY,
                ErrorCode::ShuttingDown,
                "your grids changed: sync again to receive the new ones (工作网格已调整，请重新同步)",
            ));
        }
        Ok(())
    }

    /// One message of the device. An upload, pull or repair step of a device revoked or moved a
    /// moment ago is refused, not just its next session.
    pub(crate) async fn on_message(
        &mut self,
        out: &mut impl Outgoing,
        msg: ClientMsg,
    ) -> Result<(), Close> {
        self.still_granted().await?;
        self.handle(out, msg).await
    }

    /// A grid's log grew: pushes what is new to a live device that caught up on it.
    pub(crate) async fn on_notice(
        &mut self,
        out: &mut impl Outgoing,
        grid: &str,
    ) -> Result<(), Close> {
        // Not a single change more of a grid the user was moved away from.
        self.still_granted().await?;
        self.push(out, grid).await
    }

    /// Some notices were missed: looks at every grid.
    pub(crate) async fn on_lagged(&mut self, out: &mut impl Outgoing) -> Result<(), Close> {
        self.still_granted().await?;
        let grids: Vec<String> = self.cursors.keys().cloned().collect();
        for grid in grids {
            self.push(out, &grid).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, out: &mut impl Outgoing, msg: ClientMsg) -> Result<(), Close> {
        let state = self.state;
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
                if self.protocol < ATTACHMENTS_PROTOCOL =>
            {
                Err(Close::new(
                    close_code::PROTOCOL_ERROR,
                    ErrorCode::BadRequest,
                    format!(
                        "attachments need protocol {ATTACHMENTS_PROTOCOL}; this session speaks {}",
                        self.protocol
                    ),
                ))
            }
            ClientMsg::BlobPut(put) => {
                let answer = attachments::put(state, &self.identity, &mut self.grants, put)
                    .await
                    .inspect_err(|_| state.relay.metrics.storage_error())
                    .map_err(Close::counted)?;
                out.send(&ServerMsg::Blob(answer)).await.map(drop)
            }
            ClientMsg::BlobGet(get) => {
                let answer = attachments::get(state, &self.identity, &mut self.grants, get)
                    .await
                    .inspect_err(|_| state.relay.metrics.storage_error())
                    .map_err(Close::counted)?;
                out.send(&ServerMsg::BlobData(answer)).await.map(drop)
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
                    .accept(&self.identity, upload.changes)
                    .await
                    .map_err(Close::counted)?;
                // Acknowledged only now: `accept` returned after the store made the batch durable.
                let ack = ServerMsg::Ack(Ack {
                    batch: upload.batch,
                    rejected,
                    witnesses,
                });
                out.send(&ack).await.map(drop)
            }
            ClientMsg::Pull { grid } => {
                if self.catching_up.get(&grid) == Some(&true) {
                    self.send_batch(out, &grid).await?;
                }
                Ok(())
            }
            ClientMsg::DocSync(ds) => {
                if !self.identity.grids.contains(&ds.grid) {
                    return Err(Close::new(
                        close_code::FORBIDDEN,
                        ErrorCode::Forbidden,
                        format!("grid {} is outside this device's scope", ds.grid),
                    ));
                }
                if !self.repair.contains_key(&ds.doc_id) && self.repair.len() >= MAX_REPAIR_STATES {
                    self.repair.clear();
                }
                let sync_state = self.repair.entry(ds.doc_id.clone()).or_default();
                let message = ds.message.as_ref().map(|m| m.as_slice());
                let reply = match state
                    .relay
                    .repair_step(&self.identity, &ds.grid, &ds.doc_id, sync_state, message)
                    .await
                {
                    Ok(reply) => reply,
                    Err(RepairError::Storage(e)) => return Err(e.into()),
                    // This document is refused (say, the role may not write it); the rest of the
                    // repair goes on, and the device keeps its copy.
                    Err(RepairError::Refused(reason)) => {
                        self.repair.remove(&ds.doc_id);
                        let answer = ServerMsg::DocSync(DocSync {
                            grid: ds.grid,
                            doc_id: ds.doc_id,
                            message: None,
                            refused: Some(reason),
                        });
                        return out.send(&answer).await.map(drop);
                    }
                };
                if reply.is_none() {
                    self.repair.remove(&ds.doc_id);
                }
                let answer = ServerMsg::DocSync(DocSync {
                    grid: ds.grid,
                    doc_id: ds.doc_id,
                    message: reply.map(serde_bytes::ByteBuf::from),
                    refused: None,
                });
                out.send(&answer).await.map(drop)
            }
        }
    }

    /// Sends the next catch-up batch of a grid and moves the session's cursor.
    async fn send_batch(&mut self, out: &mut impl Outgoing, grid: &str) -> Result<(), Close> {
        let Some(cursor) = self.cursors.get(grid) else {
            return Ok(());
        };
        let changes = self
            .state
            .relay
            .batch_since(cursor, &self.identity)
            .await
            .map_err(Close::counted)?;
        self.cursors
            .insert(grid.to_string(), changes.cursor.clone());
        self.catching_up.insert(grid.to_string(), changes.more);
        let sent = out.send(&ServerMsg::Changes(changes)).await?;
        self.state.relay.metrics.caught_up_bytes(sent);
        Ok(())
    }

    /// Live push: everything new in a grid since what this device holds, skipping empty batches.
    async fn push(&mut self, out: &mut impl Outgoing, grid: &str) -> Result<(), Close> {
        if self.catching_up.get(grid) != Some(&false) {
            return Ok(());
        }
        // Bounded: each round moves the cursor forward over a finite log.
        for _ in 0..10_000 {
            let Some(cursor) = self.cursors.get(grid) else {
                return Ok(());
            };
            let changes = self
                .state
                .relay
                .batch_since(cursor, &self.identity)
                .await
                .map_err(Close::counted)?;
            let more = changes.more;
            let moved = changes.cursor != *cursor;
            if !moved {
                return Ok(());
            }
            self.cursors
                .insert(grid.to_string(), changes.cursor.clone());
            if !changes.docs.is_empty() {
                let msg = ServerMsg::Changes(protocol::Changes {
                    more: false,
                    ..changes
                });
                let sent = out.send(&msg).await?;
                self.state.relay.metrics.pushed_bytes(sent);
            }
            if !more {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn send_repair_pages(
        &mut self,
        out: &mut impl Outgoing,
        grid: &str,
    ) -> Result<(), Close> {
        let storage = self.state.relay.log();
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
                    &self.identity.readable_kinds,
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
            out.send(&msg).await?;
            if !more {
                break;
            }
        }
        // After repair the device pulls from the head onwards like any catch-up.
        self.cursors.insert(grid.to_string(), head);
        self.catching_up.insert(grid.to_string(), true);
        Ok(())
    }
}

/// Whether the log holds the entry a cursor (or witness) points at: then it holds everything
/// before it too, since the log only ever grows at the end.
async fn vouches(storage: &dyn Log, cursor: &Cursor) -> Result<bool, StorageError> {
    Ok(cursor.seq == 0
        || (cursor.hash.is_some()
            && storage.entry_hash(&cursor.grid, cursor.seq).await? == cursor.hash))
}
