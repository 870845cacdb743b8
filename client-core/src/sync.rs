//! The device side of the sync protocol as a state machine, without I/O.
//!
//! [`SyncEngine::start`] and [`SyncEngine::handle`] take events (a message arrived, the outbox
//! was read, a repair step ran) and return effects (send this, store that, read the outbox). The
//! transport ([`crate::transport`]) moves bytes and the replica stores data; the engine only decides.
//! This keeps the protocol testable without sockets and embeddable in any app's event loop.

mod blobs;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use automerge::sync;

use crate::error::Error;
use crate::protocol::{
    ATTACHMENTS_PROTOCOL, ClientMsg, Cursor, DocChanges, DocSync, ErrorCode, Hash, Hello,
    MAX_BATCH_BYTES, MAX_BATCH_CHANGES, PROTOCOL_VERSION, ServerMsg, UpChange, Upload,
};
use crate::store::{DownloadTodo, OutboxEntry, UploadTodo};

/// How many documents are repaired at once.
const REPAIR_WINDOW: usize = 64;
/// A document that needs more rounds than this to converge is reported as an error.
const REPAIR_MAX_ROUNDS: u32 = 32;

#[derive(Debug)]
pub enum Event {
    Received(ServerMsg),
    /// The answer to [`Effect::ReadOutbox`].
    OutboxRead(Vec<OutboxEntry>),
    /// Something was written locally (live sessions upload it at once).
    LocalWrite,
    /// The answer to [`Effect::ListLocalDocs`].
    LocalDocs {
        grid: String,
        docs: Vec<(String, Vec<Hash>)>,
    },
    /// The answer to [`Effect::RepairStep`].
    RepairStepped {
        grid: String,
        doc_id: String,
        state: Box<sync::State>,
        reply: Option<Vec<u8>>,
    },
    /// The answer to [`Effect::ReadAttachments`]: own attachments waiting for upload (urgent
    /// reports' first, then oldest first) and wanted ones with the bytes already here.
    AttachmentsRead {
        uploads: Vec<UploadTodo>,
        downloads: Vec<DownloadTodo>,
    },
    /// The answer to [`Effect::ReadPiece`]: the stored bytes from `offset`, up to the end of
    /// their piece.
    PieceRead {
        hash: Hash,
        offset: u64,
        data: Vec<u8>,
    },
}

#[derive(Debug)]
pub enum Effect {
    Send(ClientMsg),
    /// Read up to this many unsent changes and answer with [`Event::OutboxRead`].
    ReadOutbox {
        max_changes: usize,
        max_bytes: usize,
    },
    /// Store received changes and then move the grid's cursor, atomically.
    Store {
        grid: String,
        docs: Vec<DocChanges>,
        cursor: Cursor,
    },
    /// The server made these outbox rows durable (`accepted`) or refused them.
    Acknowledge {
        accepted: Vec<i64>,
        rejected: Vec<(i64, String)>,
        witnesses: Vec<Cursor>,
    },
    /// A grid was repaired: the witness the session started with no longer applies (a newer
    /// one, from an upload during the repair, still does).
    RepairDone {
        grid: String,
        witness: Option<Cursor>,
    },
    /// List the grid's local documents and heads; answer with [`Event::LocalDocs`].
    ListLocalDocs {
        grid: String,
    },
    /// Run one Automerge sync step for a document; answer with [`Event::RepairStepped`].
    RepairStep {
        grid: String,
        doc_id: String,
        state: Box<sync::State>,
        incoming: Option<Vec<u8>>,
    },
    /// The relay said the community's time zone (a valid one): remember it, for every local
    /// day and time shown on this device.
    Zone(crate::protocol::CommunityZone),
    /// The server decided which grids this device holds; remember them. Records of other grids
    /// are purged once the session is synced (never while anything local to them is unsent).
    Scope {
        grids: Vec<String>,
    },
    /// Read the attachments to upload and to download; answer with [`Event::AttachmentsRead`].
    ReadAttachments,
    /// Read a stored attachment's bytes from `offset`; answer with [`Event::PieceRead`].
    ReadPiece {
        hash: Hash,
        offset: u64,
    },
    /// The relay holds and checked every byte of an own attachment.
    AttachmentUploaded {
        hash: Hash,
    },
    /// The relay will not take an own attachment: keep it with the reason, send it no more.
    AttachmentRefused {
        hash: Hash,
        reason: String,
    },
    /// A piece of a wanted attachment arrived: store it (the store checks the whole once the
    /// last piece is in).
    StorePiece {
        hash: Hash,
        offset: u64,
        size: u64,
        data: Vec<u8>,
    },
    /// The relay did not give a wanted attachment: not uploaded by its maker yet (`None`: it
    /// stays wanted), or refused.
    AttachmentUnavailable {
        hash: Hash,
        refused: Option<String>,
    },
    /// Everything local reached the server and everything in scope arrived, own attachments
    /// included (wanted ones the relay does not hold yet do not hold this back).
    Synced,
    Fail(Error),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStats {
    pub changes_sent: u64,
    pub changes_received: u64,
    pub docs_received: u64,
    pub batches_received: u64,
    pub repaired_docs: u64,
    pub rejected: u64,
    pub attachments_uploaded: u64,
    pub attachments_refused: u64,
    pub attachments_downloaded: u64,
    /// Attachment bytes sent in pieces, resent ones included.
    pub attachment_bytes_sent: u64,
    pub attachment_bytes_received: u64,
}

#[derive(Debug)]
enum GridPhase {
    CatchingUp,
    Repairing(Box<Repair>),
    CaughtUp,
}

#[derive(Debug, Default)]
struct Repair {
    head: Option<Cursor>,
    server_docs: HashMap<String, Vec<Hash>>,
    pages_done: bool,
    queue: VecDeque<String>,
    active: HashMap<String, u32>,
    listed: bool,
}

pub struct SyncEngine {
    hello: Hello,
    live: bool,
    welcomed: bool,
    done: bool,
    grids: BTreeMap<String, GridPhase>,
    in_flight: Option<(u64, Vec<i64>)>,
    reading_outbox: bool,
    outbox_drained: bool,
    next_batch: u64,
    /// Automerge sync state of each document being repaired, while it is not out with the driver.
    repair_states: HashMap<String, Box<sync::State>>,
    blobs: blobs::Blobs,
    pub stats: SyncStats,
}

impl SyncEngine {
    pub fn new(
        token: &str,
        device_id: &str,
        cursors: Vec<Cursor>,
        witnesses: Vec<Cursor>,
        live: bool,
    ) -> SyncEngine {
        SyncEngine {
            hello: Hello {
                protocol: PROTOCOL_VERSION,
                client_version: env!("CARGO_PKG_VERSION").to_string(),
                token: token.to_string(),
                device_id: device_id.to_string(),
                cursors,
                witnesses,
                live,
            },
            live,
            welcomed: false,
            done: false,
            grids: BTreeMap::new(),
            in_flight: None,
            reading_outbox: false,
            outbox_drained: false,
            next_batch: 1,
            repair_states: HashMap::new(),
            blobs: blobs::Blobs::default(),
            stats: SyncStats::default(),
        }
    }

    /// The first effects of a session, once the connection is open.
    pub fn start(&mut self) -> Vec<Effect> {
        vec![Effect::Send(ClientMsg::Hello(self.hello.clone()))]
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn handle(&mut self, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::Received(msg) => self.on_message(msg, &mut out),
            Event::OutboxRead(entries) => self.on_outbox(entries, &mut out),
            Event::LocalWrite => {
                self.outbox_drained = false;
                self.blobs.round_due = true;
                self.read_outbox(&mut out);
            }
            Event::AttachmentsRead { uploads, downloads } => {
                self.blobs.on_read(uploads, downloads, &mut out);
            }
            Event::PieceRead { hash, offset, data } => {
                self.blobs
                    .on_piece(hash, offset, data, &mut self.stats, &mut out);
            }
            Event::LocalDocs { grid, docs } => self.on_local_docs(&grid, docs, &mut out),
            Event::RepairStepped {
                grid,
                doc_id,
                state,
                reply,
            } => self.on_repair_stepped(grid, doc_id, state, reply, &mut out),
        }
        self.check_done(&mut out);
        out
    }

    fn on_message(&mut self, msg: ServerMsg, out: &mut Vec<Effect>) {
        match msg {
            ServerMsg::Welcome(w) => {
                self.welcomed = true;
                self.blobs.enabled = w.protocol >= ATTACHMENTS_PROTOCOL;
                self.blobs.round_due = self.blobs.enabled;
                out.push(Effect::Scope {
                    grids: w.grids.iter().map(|g| g.grid.clone()).collect(),
                });
                for g in w.grids {
                    let phase = if g.cursor_known {
                        GridPhase::CatchingUp
                    } else {
                        GridPhase::Repairing(Box::default())
                    };
                    self.grids.insert(g.grid, phase);
                }
                self.read_outbox(out);
            }
            ServerMsg::Changes(c) => {
                self.stats.batches_received += 1;
                self.stats.docs_received += c.docs.len() as u64;
                self.stats.changes_received += c.docs.iter().map(DocChanges::entries).sum::<u64>();
                // The next batch is asked for before this one is stored, so the relay reads and
                // sends it while the device stores this one. If storing fails the session ends
                // and the next batch is dropped unread: the stored cursor still says where to
                // resume.
                if let Some(phase @ GridPhase::CatchingUp) = self.grids.get_mut(&c.grid) {
                    if c.more {
                        out.push(Effect::Send(ClientMsg::Pull {
                            grid: c.grid.clone(),
                        }));
                    } else {
                        *phase = GridPhase::CaughtUp;
                    }
                }
                out.push(Effect::Store {
                    grid: c.grid,
                    docs: c.docs,
                    cursor: c.cursor,
                });
            }
            ServerMsg::Ack(ack) => {
                let Some((batch, seqs)) = self.in_flight.take() else {
                    out.push(Effect::Fail(Error::Protocol(
                        "acknowledgement for no upload".into(),
                    )));
                    return;
                };
                if batch != ack.batch {
                    out.push(Effect::Fail(Error::Protocol(format!(
                        "acknowledgement for batch {} while {batch} is in flight",
                        ack.batch
                    ))));
                    return;
                }
                let mut rejected = Vec::new();
                let mut refused = HashSet::new();
                for r in ack.rejected {
                    if let Some(seq) = seqs.get(r.index as usize) {
                        refused.insert(*seq);
                        rejected.push((*seq, r.reason));
                    }
                }
                self.stats.rejected += rejected.len() as u64;
                let accepted: Vec<i64> =
                    seqs.into_iter().filter(|s| !refused.contains(s)).collect();
                self.stats.changes_sent += accepted.len() as u64;
                out.push(Effect::Acknowledge {
                    accepted,
                    rejected,
                    witnesses: ack.witnesses,
                });
                self.read_outbox(out);
            }
            ServerMsg::Error(e) => {
                let error = match e.code {
                    ErrorCode::Revoked => Error::Revoked(e.message),
                    ErrorCode::Unauthorized => Error::Unauthorized(e.message),
                    code => Error::Refused(format!("{code:?}: {}", e.message)),
                };
                out.push(Effect::Fail(error));
            }
            ServerMsg::LoginOk(_) => {
                out.push(Effect::Fail(Error::Protocol(
                    "unexpected sign-in answer".into(),
                )));
            }
            ServerMsg::Blob(status) if self.blobs.enabled => {
                self.blobs.on_status(status, &mut self.stats, out);
            }
            ServerMsg::BlobData(data) if self.blobs.enabled => {
                self.blobs.on_data(data, &mut self.stats, out);
            }
            ServerMsg::Zone(zone) if self.welcomed => match zone.offset() {
                Some(_) => out.push(Effect::Zone(zone)),
                None => out.push(Effect::Fail(Error::Protocol(format!(
                    "the relay's time zone, {} minutes from UTC, is not one",
                    zone.utc_offset_minutes
                )))),
            },
            ServerMsg::Zone(_) => {
                out.push(Effect::Fail(Error::Protocol(
                    "a time zone before the welcome".into(),
                )));
            }
            ServerMsg::Blob(_) | ServerMsg::BlobData(_) => {
                out.push(Effect::Fail(Error::Protocol(
                    "an attachment answer from a relay of protocol 3".into(),
                )));
            }
            ServerMsg::RepairDocs(page) => {
                let Some(GridPhase::Repairing(repair)) = self.grids.get_mut(&page.grid) else {
                    out.push(Effect::Fail(Error::Protocol(format!(
                        "repair pages for grid {} that is not being repaired",
                        page.grid
                    ))));
                    return;
                };
                if repair.head.is_none() {
                    repair.head = Some(page.head);
                }
                for d in page.docs {
                    repair.server_docs.insert(d.doc_id, d.heads);
                }
                if !page.more {
                    repair.pages_done = true;
                    out.push(Effect::ListLocalDocs { grid: page.grid });
                }
            }
            ServerMsg::DocSync(ds) => {
                let Some(GridPhase::Repairing(repair)) = self.grids.get_mut(&ds.grid) else {
                    return;
                };
                if let Some(reason) = ds.refused {
                    // The relay will not take this document; its repair ends, the local copy
                    // stays, and the rest of the grid goes on.
                    if repair.active.remove(&ds.doc_id).is_some() {
                        tracing::warn!("repair of {} refused: {reason}", ds.doc_id);
                        self.repair_states.remove(&ds.doc_id);
                        self.stats.rejected += 1;
                        let grid = ds.grid.clone();
                        self.fill_repair_window(&grid, out);
                    }
                    return;
                }
                if repair.active.contains_key(&ds.doc_id) {
                    let state = self.repair_states.remove(&ds.doc_id).unwrap_or_default();
                    out.push(Effect::RepairStep {
                        grid: ds.grid,
                        doc_id: ds.doc_id,
                        state,
                        incoming: ds.message.map(|m| m.into_vec()),
                    });
                }
            }
        }
    }

    fn on_local_docs(&mut self, grid: &str, docs: Vec<(String, Vec<Hash>)>, out: &mut Vec<Effect>) {
        let Some(GridPhase::Repairing(repair)) = self.grids.get_mut(grid) else {
            return;
        };
        repair.listed = true;
        let local: HashMap<String, Vec<Hash>> = docs.into_iter().collect();
        let mut todo: Vec<String> = Vec::new();
        for (id, heads) in &repair.server_docs {
            let mut theirs = heads.clone();
            theirs.sort();
            let same = local.get(id).is_some_and(|mine| {
                let mut mine = mine.clone();
                mine.sort();
                mine == theirs
            });
            if !same {
                todo.push(id.clone());
            }
        }
        todo.extend(
            local
                .keys()
                .filter(|id| !repair.server_docs.contains_key(*id))
                .cloned(),
        );
        todo.sort();
        repair.queue.extend(todo);
        self.fill_repair_window(grid, out);
    }

    fn fill_repair_window(&mut self, grid: &str, out: &mut Vec<Effect>) {
        let Some(GridPhase::Repairing(repair)) = self.grids.get_mut(grid) else {
            return;
        };
        while repair.active.len() < REPAIR_WINDOW {
            let Some(doc_id) = repair.queue.pop_front() else {
                break;
            };
            repair.active.insert(doc_id.clone(), 0);
            out.push(Effect::RepairStep {
                grid: grid.to_string(),
                doc_id,
                state: Box::new(sync::State::new()),
                incoming: None,
            });
        }
        if repair.pages_done && repair.listed && repair.queue.is_empty() && repair.active.is_empty()
        {
            let head = repair.head.clone().unwrap_or_else(|| Cursor::start(grid));
            out.push(Effect::RepairDone {
                grid: grid.to_string(),
                witness: self
                    .hello
                    .witnesses
                    .iter()
                    .find(|w| w.grid == grid)
                    .cloned(),
            });
            out.push(Effect::Store {
                grid: grid.to_string(),
                docs: Vec::new(),
                cursor: head,
            });
            out.push(Effect::Send(ClientMsg::Pull {
                grid: grid.to_string(),
            }));
            self.grids.insert(grid.to_string(), GridPhase::CatchingUp);
        }
    }

    fn on_repair_stepped(
        &mut self,
        grid: String,
        doc_id: String,
        state: Box<sync::State>,
        reply: Option<Vec<u8>>,
        out: &mut Vec<Effect>,
    ) {
        let Some(GridPhase::Repairing(repair)) = self.grids.get_mut(&grid) else {
            return;
        };
        let Some(rounds) = repair.active.get_mut(&doc_id) else {
            return;
        };
        *rounds += 1;
        match reply {
            Some(bytes) if *rounds <= REPAIR_MAX_ROUNDS => {
                self.repair_states.insert(doc_id.clone(), state);
                out.push(Effect::Send(ClientMsg::DocSync(DocSync {
                    grid: grid.clone(),
                    doc_id,
                    message: Some(serde_bytes::ByteBuf::from(bytes)),
                    refused: None,
                })));
            }
            Some(_) => out.push(Effect::Fail(Error::Protocol(format!(
                "document {doc_id} did not converge in {REPAIR_MAX_ROUNDS} repair rounds"
            )))),
            None => {
                repair.active.remove(&doc_id);
                self.repair_states.remove(&doc_id);
                self.stats.repaired_docs += 1;
                self.fill_repair_window(&grid, out);
            }
        }
    }

    fn read_outbox(&mut self, out: &mut Vec<Effect>) {
        if self.welcomed && self.in_flight.is_none() && !self.reading_outbox {
            self.reading_outbox = true;
            out.push(Effect::ReadOutbox {
                max_changes: MAX_BATCH_CHANGES,
                max_bytes: MAX_BATCH_BYTES,
            });
        }
    }

    fn on_outbox(&mut self, entries: Vec<OutboxEntry>, out: &mut Vec<Effect>) {
        self.reading_outbox = false;
        if entries.is_empty() {
            self.outbox_drained = true;
            return;
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        let seqs = entries.iter().map(|e| e.seq).collect();
        let changes = entries.into_iter().map(UpChange::from).collect();
        self.in_flight = Some((batch, seqs));
        out.push(Effect::Send(ClientMsg::Upload(Upload { batch, changes })));
    }

    /// Records first: attachments move only once the outbox is empty and every grid caught up;
    /// the session is synced once they did too.
    fn check_done(&mut self, out: &mut Vec<Effect>) {
        if !self.welcomed || out.iter().any(|e| matches!(e, Effect::Fail(_))) {
            return;
        }
        let all_caught_up = self
            .grids
            .values()
            .all(|g| matches!(g, GridPhase::CaughtUp));
        let records_done = all_caught_up
            && self.outbox_drained
            && self.in_flight.is_none()
            && !self.reading_outbox;
        if !records_done {
            return;
        }
        if self.blobs.round_due && !self.blobs.busy() {
            self.blobs.read_round(out);
            return;
        }
        if !self.done && !self.blobs.busy() {
            self.done = true;
            out.push(Effect::Synced);
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Ack, Changes, DocHeads, GridStatus, Rejected, RepairDocs, Welcome};

    fn welcome(grids: &[(&str, bool)]) -> ServerMsg {
        ServerMsg::Welcome(Welcome {
            protocol: PROTOCOL_VERSION,
            server_version: "test".into(),
            server_id: "s".into(),
            grids: grids
                .iter()
                .map(|(g, known)| GridStatus {
                    grid: g.to_string(),
                    head_seq: 10,
                    cursor_known: *known,
                })
                .collect(),
            max_frame: 0,
            max_batch_bytes: 0,
            max_batch_changes: 0,
        })
    }

    fn changes(grid: &str, seq: u64, more: bool) -> ServerMsg {
        ServerMsg::Changes(Changes {
            grid: grid.into(),
            docs: vec![],
            cursor: Cursor {
                grid: grid.into(),
                seq,
                hash: Some([1; 32]),
            },
            more,
        })
    }

    fn entry(seq: i64) -> OutboxEntry {
        OutboxEntry {
            seq,
            doc_id: format!("d{seq}"),
            grid_id: "g1".into(),
            bytes: vec![seq as u8],
        }
    }

    fn engine() -> SyncEngine {
        SyncEngine::new("token", "device", vec![Cursor::start("g1")], vec![], false)
    }

    #[test]
    fn test_session_starts_with_hello_and_ends_when_both_directions_are_done() {
        let mut e = engine();
        assert!(
            matches!(&e.start()[..], [Effect::Send(ClientMsg::Hello(h))] if h.token == "token")
        );
        let out = e.handle(Event::Received(welcome(&[("g1", true)])));
        assert!(matches!(out[0], Effect::Scope { .. }));
        assert!(matches!(out[1], Effect::ReadOutbox { .. }));
        // A batch with more to come asks for the next one, then stores this one.
        let out = e.handle(Event::Received(changes("g1", 5, true)));
        assert!(matches!(
            &out[..],
            [Effect::Send(ClientMsg::Pull { .. }), Effect::Store { .. }]
        ));
        let out = e.handle(Event::OutboxRead(vec![]));
        assert!(out.is_empty(), "not done: catch-up still running");
        let out = e.handle(Event::Received(changes("g1", 10, false)));
        // Records done, attachments next (none here).
        assert!(matches!(
            &out[..],
            [Effect::Store { .. }, Effect::ReadAttachments]
        ));
        let out = e.handle(Event::AttachmentsRead {
            uploads: vec![],
            downloads: vec![],
        });
        assert!(matches!(&out[..], [Effect::Synced]));
        assert!(e.is_done());
    }

    #[test]
    fn test_upload_is_marked_sent_only_on_acknowledgement() {
        let mut e = engine();
        e.start();
        e.handle(Event::Received(welcome(&[("g1", true)])));
        e.handle(Event::Received(changes("g1", 10, false)));
        let out = e.handle(Event::OutboxRead(vec![entry(3), entry(4), entry(5)]));
        let Effect::Send(ClientMsg::Upload(up)) = &out[0] else {
            panic!("expected an upload, got {out:?}")
        };
        assert_eq!(up.changes.len(), 3);
        // Nothing more is read while the batch is in flight.
        assert!(e.handle(Event::LocalWrite).is_empty());
        let ack = Ack {
            batch: up.batch,
            rejected: vec![Rejected {
                doc_id: "d4".into(),
                index: 1,
                reason: "no".into(),
            }],
            witnesses: vec![],
        };
        let out = e.handle(Event::Received(ServerMsg::Ack(ack)));
        match &out[0] {
            Effect::Acknowledge {
                accepted, rejected, ..
            } => {
                assert_eq!(accepted, &[3, 5]);
                assert_eq!(rejected, &[(4, "no".to_string())]);
            }
            other => panic!("expected an acknowledgement, got {other:?}"),
        }
        assert!(matches!(out[1], Effect::ReadOutbox { .. }));
        let out = e.handle(Event::OutboxRead(vec![]));
        assert!(matches!(&out[..], [Effect::ReadAttachments]));
        let out = e.handle(Event::AttachmentsRead {
            uploads: vec![],
            downloads: vec![],
        });
        assert!(matches!(&out[..], [Effect::Synced]), "then synced");
        assert!(e.is_done());
    }

    #[test]
    fn test_an_acknowledgement_for_another_batch_fails_the_session() {
        let mut e = engine();
        e.start();
        e.handle(Event::Received(welcome(&[("g1", true)])));
        e.handle(Event::OutboxRead(vec![entry(1)]));
        let ack = Ack {
            batch: 99,
            rejected: vec![],
            witnesses: vec![],
        };
        let out = e.handle(Event::Received(ServerMsg::Ack(ack)));
        assert!(matches!(out[0], Effect::Fail(Error::Protocol(_))));
    }

    #[test]
    fn test_unknown_cursor_repairs_each_differing_document_then_catches_up() {
        let mut e = SyncEngine::new(
            "token",
            "device",
            vec![Cursor::start("g1")],
            vec![Cursor {
                grid: "g1".into(),
                seq: 40,
                hash: Some([4; 32]),
            }],
            false,
        );
        e.start();
        e.handle(Event::Received(welcome(&[("g1", false)])));
        let head = Cursor {
            grid: "g1".into(),
            seq: 7,
            hash: Some([7; 32]),
        };
        let out = e.handle(Event::Received(ServerMsg::RepairDocs(RepairDocs {
            grid: "g1".into(),
            docs: vec![
                DocHeads {
                    doc_id: "same".into(),
                    heads: vec![[1; 32]],
                },
                DocHeads {
                    doc_id: "differs".into(),
                    heads: vec![[2; 32]],
                },
            ],
            more: false,
            head: head.clone(),
        })));
        assert!(matches!(&out[..], [Effect::ListLocalDocs { .. }]));
        let local = vec![
            ("same".to_string(), vec![[1; 32]]),
            ("differs".to_string(), vec![[3; 32]]),
            ("only-here".to_string(), vec![[5; 32]]),
        ];
        let out = e.handle(Event::LocalDocs {
            grid: "g1".into(),
            docs: local,
        });
        let stepped: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                Effect::RepairStep { doc_id, .. } => Some(doc_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(stepped, ["differs", "only-here"]);
        // Each document's exchange ends when the device has nothing more to say.
        let mut out = Vec::new();
        for doc in ["differs", "only-here"] {
            out = e.handle(Event::RepairStepped {
                grid: "g1".into(),
                doc_id: doc.into(),
                state: Box::default(),
                reply: None,
            });
        }
        match &out[..] {
            [
                Effect::RepairDone { witness, .. },
                Effect::Store { cursor, .. },
                Effect::Send(ClientMsg::Pull { .. }),
            ] => {
                assert_eq!(witness.as_ref().map(|w| w.seq), Some(40));
                assert_eq!(cursor, &head);
            }
            other => panic!("expected repair to finish, got {other:?}"),
        }
        assert_eq!(e.stats.repaired_docs, 2);
    }

    #[test]
    fn test_a_zone_after_the_welcome_is_kept_and_one_no_place_has_fails_the_session() {
        use crate::protocol::CommunityZone;
        let mut e = engine();
        e.start();
        let zone = |m| {
            Event::Received(ServerMsg::Zone(CommunityZone {
                utc_offset_minutes: m,
            }))
        };
        let out = e.handle(zone(480));
        assert!(
            matches!(&out[..], [Effect::Fail(Error::Protocol(_))]),
            "before the welcome"
        );
        let mut e = engine();
        e.start();
        e.handle(Event::Received(welcome(&[("g1", true)])));
        let out = e.handle(zone(-300));
        assert!(matches!(
            &out[..],
            [Effect::Zone(CommunityZone {
                utc_offset_minutes: -300
            })]
        ));
        let out = e.handle(zone(15 * 60));
        assert!(matches!(&out[..], [Effect::Fail(Error::Protocol(m))] if m.contains("900")));
    }
}
