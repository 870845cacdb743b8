use std::collections::VecDeque;

use super::super::{Event, SyncEngine};
use super::*;
use crate::protocol::{
    ATTACHMENTS_PROTOCOL, Changes, Cursor, GridStatus, MIN_PROTOCOL, ServerMsg, Welcome,
};
use crate::store::OutboxEntry;

const C: u64 = BLOB_CHUNK as u64;

fn welcome(protocol: u16) -> ServerMsg {
    ServerMsg::Welcome(Welcome {
        protocol,
        server_version: "test".into(),
        server_id: "s".into(),
        grids: vec![GridStatus {
            grid: "g1".into(),
            head_seq: 10,
            cursor_known: true,
        }],
        max_frame: 0,
        max_batch_bytes: 0,
        max_batch_changes: 0,
    })
}

fn caught_up() -> ServerMsg {
    ServerMsg::Changes(Changes {
        grid: "g1".into(),
        docs: vec![],
        cursor: Cursor {
            grid: "g1".into(),
            seq: 10,
            hash: Some([1; 32]),
        },
        more: false,
    })
}

/// An engine of a session with a protocol-4 relay whose records are done: the next effect is
/// the round's read.
fn records_done(protocol: u16) -> (SyncEngine, Vec<Effect>) {
    let mut e = SyncEngine::new("token", "device", vec![Cursor::start("g1")], vec![], false);
    e.start();
    e.handle(Event::Received(welcome(protocol)));
    e.handle(Event::Received(caught_up()));
    let out = e.handle(Event::OutboxRead(vec![]));
    (e, out)
}

/// A relay as §13 has it, for one attachment: a stored prefix it appends pieces to only at its
/// end, answering every message in order.
struct Relay {
    size: u64,
    prefix: u64,
    complete_at: Option<u64>,
    answers: VecDeque<ServerMsg>,
    /// Pieces with bytes sent and not answered, and the most ever at once.
    unanswered: usize,
    most_unanswered: usize,
    bytes_taken: u64,
    offsets: Vec<u64>,
}

impl Relay {
    fn new(size: u64, prefix: u64) -> Relay {
        Relay {
            size,
            prefix,
            complete_at: Some(size),
            answers: VecDeque::new(),
            unanswered: 0,
            most_unanswered: 0,
            bytes_taken: 0,
            offsets: Vec::new(),
        }
    }

    fn take(&mut self, put: BlobPut) {
        if !put.data.is_empty() {
            self.unanswered += 1;
            self.most_unanswered = self.most_unanswered.max(self.unanswered);
            self.offsets.push(put.offset);
        }
        if put.offset == self.prefix && !put.data.is_empty() {
            self.prefix += put.data.len() as u64;
            self.bytes_taken += put.data.len() as u64;
        }
        let state = if Some(self.prefix) == self.complete_at {
            BlobState::Complete
        } else {
            BlobState::Have(self.prefix)
        };
        self.answers.push_back(ServerMsg::Blob(BlobStatus {
            hash: put.hash,
            state,
        }));
    }
}

/// Carries out the engine's effects as a replica and a relay would, answering one message at a
/// time, until the engine says Synced. Returns every effect that is not a send or a read.
fn run(e: &mut SyncEngine, first: Vec<Effect>, relay: &mut Relay) -> Vec<Effect> {
    let mut pending: VecDeque<Effect> = first.into();
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        while let Some(effect) = pending.pop_front() {
            match effect {
                Effect::ReadPiece { hash, offset } => {
                    let len = (C - offset % C).min(relay.size - offset);
                    let data = vec![7; len as usize];
                    pending.extend(e.handle(Event::PieceRead { hash, offset, data }));
                }
                Effect::Send(ClientMsg::BlobPut(put)) => relay.take(put),
                Effect::Synced => return seen,
                other => seen.push(other),
            }
        }
        let Some(answer) = relay.answers.pop_front() else {
            panic!("the engine waits for nothing: {seen:?}");
        };
        relay.unanswered = relay.unanswered.saturating_sub(1);
        pending.extend(e.handle(Event::Received(answer)));
    }
    panic!("no end")
}

fn todo(hash: u8, size: u64) -> UploadTodo {
    UploadTodo {
        hash: [hash; 32],
        size,
    }
}

#[test]
fn test_upload_resumes_from_the_relays_have_with_at_most_four_pieces_out() {
    let (mut e, out) = records_done(ATTACHMENTS_PROTOCOL);
    assert!(matches!(&out[..], [Effect::ReadAttachments]), "{out:?}");
    let size = 10 * C + 5;
    let out = e.handle(Event::AttachmentsRead {
        uploads: vec![todo(1, size)],
        downloads: vec![],
    });
    // First the question where the relay stands, with no bytes.
    assert!(
        matches!(&out[..], [Effect::Send(ClientMsg::BlobPut(p))] if p.offset == 0 && p.data.is_empty())
    );
    // A cut session left the first three pieces on the relay.
    let mut relay = Relay::new(size, 3 * C);
    let start = e.handle(Event::Received(ServerMsg::Blob(BlobStatus {
        hash: [1; 32],
        state: BlobState::Have(3 * C),
    })));
    let seen = run(&mut e, start, &mut relay);
    assert!(matches!(&seen[..], [Effect::AttachmentUploaded { hash }] if *hash == [1; 32]));
    assert_eq!(
        relay.offsets.first(),
        Some(&(3 * C)),
        "resumed at the relay's prefix"
    );
    assert_eq!(relay.bytes_taken, size - 3 * C);
    assert_eq!(
        e.stats.attachment_bytes_sent,
        size - 3 * C,
        "nothing sent twice"
    );
    assert!(
        relay.most_unanswered <= BLOB_WINDOW,
        "{}",
        relay.most_unanswered
    );
    assert_eq!(relay.most_unanswered, BLOB_WINDOW);
}

#[test]
fn test_a_piece_the_relaydid_not_take_is_sent_again_from_its_prefix() {
    let (mut e, _) = records_done(ATTACHMENTS_PROTOCOL);
    let size = 6 * C;
    e.handle(Event::AttachmentsRead {
        uploads: vec![todo(2, size)],
        downloads: vec![],
    });
    // The relay lost what it held after the question (a restore, a purged partial upload): the
    // pieces sent from 2C are answered with Have(0) and sent again from there.
    let start = e.handle(Event::Received(ServerMsg::Blob(BlobStatus {
        hash: [2; 32],
        state: BlobState::Have(2 * C),
    })));
    let mut relay = Relay::new(size, 0);
    let seen = run(&mut e, start, &mut relay);
    assert!(
        matches!(&seen[..], [Effect::AttachmentUploaded { .. }]),
        "{seen:?}"
    );
    assert_eq!(relay.prefix, size);
    assert!(relay.most_unanswered <= BLOB_WINDOW);
}

#[test]
fn test_records_go_before_attachments() {
    let mut e = SyncEngine::new("token", "device", vec![Cursor::start("g1")], vec![], false);
    e.start();
    let out = e.handle(Event::Received(welcome(ATTACHMENTS_PROTOCOL)));
    assert!(!out.iter().any(|o| matches!(o, Effect::ReadAttachments)));
    let entry = OutboxEntry {
        seq: 1,
        doc_id: "d1".into(),
        grid_id: "g1".into(),
        bytes: vec![1],
    };
    let out = e.handle(Event::OutboxRead(vec![entry]));
    assert!(matches!(&out[..], [Effect::Send(ClientMsg::Upload(_))]));
    // Catch-up done, but the upload is not acknowledged yet: still no attachment.
    let out = e.handle(Event::Received(caught_up()));
    assert!(!out.iter().any(|o| matches!(o, Effect::ReadAttachments)));
    let ack = crate::protocol::Ack {
        batch: 1,
        rejected: vec![],
        witnesses: vec![],
    };
    let out = e.handle(Event::Received(ServerMsg::Ack(ack)));
    assert!(!out.iter().any(|o| matches!(o, Effect::ReadAttachments)));
    let out = e.handle(Event::OutboxRead(vec![]));
    assert!(matches!(&out[..], [Effect::ReadAttachments]), "{out:?}");
    // In a live session an attachment made later waits for its record's upload too.
    let out = e.handle(Event::AttachmentsRead {
        uploads: vec![],
        downloads: vec![],
    });
    assert!(matches!(&out[..], [Effect::Synced]));
    let out = e.handle(Event::LocalWrite);
    assert!(matches!(&out[..], [Effect::ReadOutbox { .. }]), "{out:?}");
    let out = e.handle(Event::OutboxRead(vec![]));
    assert!(matches!(&out[..], [Effect::ReadAttachments]), "{out:?}");
}

#[test]
fn test_uploads_go_in_the_order_read_and_a_refusal_is_kept_and_skipped() {
    let (mut e, _) = records_done(ATTACHMENTS_PROTOCOL);
    let out = e.handle(Event::AttachmentsRead {
        uploads: vec![todo(9, 10), todo(3, 10)],
        downloads: vec![],
    });
    assert!(matches!(&out[..], [Effect::Send(ClientMsg::BlobPut(p))] if p.hash == [9; 32]));
    let out = e.handle(Event::Received(ServerMsg::Blob(BlobStatus {
        hash: [9; 32],
        state: BlobState::Refused("配额已满 quota used up".into()),
    })));
    match &out[..] {
        [
            Effect::AttachmentRefused { hash, reason },
            Effect::Send(ClientMsg::BlobPut(next)),
        ] => {
            assert_eq!(*hash, [9; 32]);
            assert!(reason.contains("quota"));
            assert_eq!(next.hash, [3; 32]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_not_yet_leaves_it_wanted_and_does_not_hold_back_synced() {
    let (mut e, _) = records_done(ATTACHMENTS_PROTOCOL);
    let out = e.handle(Event::AttachmentsRead {
        uploads: vec![],
        downloads: vec![DownloadTodo {
            hash: [4; 32],
            have: 0,
        }],
    });
    assert!(matches!(&out[..], [Effect::Send(ClientMsg::BlobGet(g))] if g.offset == 0));
    let out = e.handle(Event::Received(ServerMsg::BlobData(BlobData {
        hash: [4; 32],
        reply: BlobReply::NotYet,
    })));
    assert!(
        matches!(
            &out[..],
            [
                Effect::AttachmentUnavailable { refused: None, .. },
                Effect::Synced
            ]
        ),
        "{out:?}"
    );
}

#[test]
fn test_download_resumes_from_what_is_held_with_at_most_four_requests_out() {
    let (mut e, _) = records_done(ATTACHMENTS_PROTOCOL);
    let size = 9 * C + 1;
    let out = e.handle(Event::AttachmentsRead {
        uploads: vec![],
        downloads: vec![DownloadTodo {
            hash: [5; 32],
            have: 2 * C,
        }],
    });
    let mut requests: VecDeque<u64> = out
        .iter()
        .filter_map(|o| match o {
            Effect::Send(ClientMsg::BlobGet(g)) => Some(g.offset),
            _ => None,
        })
        .collect();
    assert_eq!(requests, [2 * C]);
    let mut stored = Vec::new();
    let mut most = 1;
    for _ in 0..100 {
        let Some(offset) = requests.pop_front() else {
            break;
        };
        let len = C.min(size - offset);
        let out = e.handle(Event::Received(ServerMsg::BlobData(BlobData {
            hash: [5; 32],
            reply: BlobReply::Data {
                offset,
                size,
                data: serde_bytes::ByteBuf::from(vec![1; len as usize]),
            },
        })));
        for o in out {
            match o {
                Effect::Send(ClientMsg::BlobGet(g)) => requests.push_back(g.offset),
                Effect::StorePiece { offset, .. } => stored.push(offset),
                Effect::Synced => stored.push(u64::MAX),
                other => panic!("{other:?}"),
            }
        }
        most = most.max(requests.len());
    }
    assert!(most <= BLOB_WINDOW, "{most}");
    let expected: Vec<u64> = (2..10).map(|i| i * C).chain([u64::MAX]).collect();
    assert_eq!(
        stored, expected,
        "each piece stored once, in order, then synced"
    );
    assert_eq!(e.stats.attachments_downloaded, 1);
}

#[test]
fn test_a_protocol_3_relaygets_no_attachment_message() {
    let (_, out) = records_done(MIN_PROTOCOL);
    assert!(matches!(&out[..], [Effect::Synced]), "{out:?}");
}
