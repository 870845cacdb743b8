//! The attachments' part of a session (docs/protocol.md §13), once the records are done: the
//! device's own attachments uploaded one after the other from where the relay stands, at most
//! [`BLOB_WINDOW`] pieces unanswered, then the wanted ones downloaded with at most [`BLOB_WINDOW`]
//! requests out. A round is read from the replica when the outbox is empty and every grid caught
//! up (at the start of a session, and again after local writes in a live one).

use std::collections::{HashSet, VecDeque};

use super::{Effect, SyncStats};
use crate::error::Error;
use crate::protocol::{
    BLOB_CHUNK, BLOB_WINDOW, BlobData, BlobGet, BlobPut, BlobReply, BlobState, BlobStatus,
    ClientMsg, Hash,
};
use crate::record::attachment::hash_text;
use crate::store::{DownloadTodo, UploadTodo};

#[derive(Debug, Default)]
pub(super) struct Blobs {
    /// The relay speaks protocol 4.
    pub enabled: bool,
    /// A round is to be read once the records are done: the session's first, or one after a
    /// local write (a live session uploads what was attached after its record).
    pub round_due: bool,
    reading: bool,
    uploads: VecDeque<UploadTodo>,
    downloads: VecDeque<DownloadTodo>,
    up: Option<Up>,
    down: Option<Down>,
    /// Attachments done with in this session: answers still on the way for them are dropped.
    finished: HashSet<Hash>,
}

#[derive(Debug)]
struct Up {
    hash: Hash,
    size: u64,
    /// The first question (an empty piece at 0) is not answered yet.
    probing: bool,
    /// The next offset to read and send.
    next: u64,
    /// Where each piece read or sent and not yet answered ends, oldest first.
    in_flight: VecDeque<(u64, u64)>,
    /// The relay did not take a piece where it was sent: once every piece out is answered,
    /// continue from its prefix.
    resync: Option<u64>,
}

#[derive(Debug)]
struct Down {
    hash: Hash,
    /// Bytes stored (or handed to the store) so far.
    received: u64,
    /// The offset of the next request.
    next: u64,
    size: Option<u64>,
    outstanding: usize,
}

impl Blobs {
    /// A round is being read or carried out.
    pub fn busy(&self) -> bool {
        self.reading || self.up.is_some() || self.down.is_some()
    }

    pub fn read_round(&mut self, out: &mut Vec<Effect>) {
        self.round_due = false;
        self.reading = true;
        out.push(Effect::ReadAttachments);
    }

    pub fn on_read(
        &mut self,
        uploads: Vec<UploadTodo>,
        downloads: Vec<DownloadTodo>,
        out: &mut Vec<Effect>,
    ) {
        self.reading = false;
        self.uploads = uploads.into();
        self.downloads = downloads.into();
        self.next(out);
    }

    /// Starts the next upload, or when none is left the next download.
    fn next(&mut self, out: &mut Vec<Effect>) {
        if self.up.is_some() || self.down.is_some() {
            return;
        }
        if let Some(todo) = self.uploads.pop_front() {
            self.finished.remove(&todo.hash);
            out.push(Effect::Send(ClientMsg::BlobPut(BlobPut {
                hash: todo.hash,
                size: todo.size,
                offset: 0,
                data: serde_bytes::ByteBuf::new(),
            })));
            self.up = Some(Up {
                hash: todo.hash,
                size: todo.size,
                probing: true,
                next: 0,
                in_flight: VecDeque::new(),
                resync: None,
            });
        } else if let Some(todo) = self.downloads.pop_front() {
            self.finished.remove(&todo.hash);
            out.push(Effect::Send(ClientMsg::BlobGet(BlobGet {
                hash: todo.hash,
                offset: todo.have,
            })));
            self.down = Some(Down {
                hash: todo.hash,
                received: todo.have,
                next: todo.have + BLOB_CHUNK as u64,
                size: None,
                outstanding: 1,
            });
        }
    }

    /// Asks the replica for pieces until [`BLOB_WINDOW`] are out.
    fn fill_upload(&mut self, out: &mut Vec<Effect>) {
        let Some(up) = self.up.as_mut() else { return };
        if up.probing || up.resync.is_some() {
            return;
        }
        while up.in_flight.len() < BLOB_WINDOW && up.next < up.size {
            let chunk = BLOB_CHUNK as u64;
            let len = (chunk - up.next % chunk).min(up.size - up.next);
            up.in_flight.push_back((up.next, up.next + len));
            out.push(Effect::ReadPiece {
                hash: up.hash,
                offset: up.next,
            });
            up.next += len;
        }
    }

    /// The answer to [`Effect::ReadPiece`]: sent as it is.
    pub fn on_piece(
        &mut self,
        hash: Hash,
        offset: u64,
        data: Vec<u8>,
        stats: &mut SyncStats,
        out: &mut Vec<Effect>,
    ) {
        let Some(up) = self.up.as_ref().filter(|u| u.hash == hash) else {
            return;
        };
        let expected = up.in_flight.iter().find(|(start, _)| *start == offset);
        if expected.is_none_or(|(start, end)| end - start != data.len() as u64) {
            out.push(Effect::Fail(Error::Damaged(format!(
                "attachment {}: the stored piece at {offset} is not the {} bytes expected",
                hash_text(&hash),
                expected.map_or(0, |(s, e)| e - s)
            ))));
            return;
        }
        stats.attachment_bytes_sent += data.len() as u64;
        out.push(Effect::Send(ClientMsg::BlobPut(BlobPut {
            hash,
            size: up.size,
            offset,
            data: serde_bytes::ByteBuf::from(data),
        })));
    }

    pub fn on_status(&mut self, status: BlobStatus, stats: &mut SyncStats, out: &mut Vec<Effect>) {
        let Some(up) = self.up.as_mut().filter(|u| u.hash == status.hash) else {
            if !self.finished.contains(&status.hash) {
                out.push(unasked(&status.hash));
            }
            return;
        };
        match status.state {
            BlobState::Have(have) => {
                if up.probing {
                    up.probing = false;
                    up.next = have.min(up.size);
                } else {
                    let answered = up.in_flight.pop_front();
                    if answered.is_none_or(|(_, end)| end != have) || up.resync.is_some() {
                        up.resync = Some(have);
                    }
                    if up.in_flight.is_empty()
                        && let Some(at) = up.resync.take()
                    {
                        up.next = at.min(up.size);
                    }
                }
                if up.next >= up.size && up.in_flight.is_empty() {
                    // The relay answers the piece that completes the prefix with Complete or
                    // Refused, never with Have.
                    out.push(Effect::Fail(Error::Protocol(format!(
                        "the relay holds all {} bytes of attachment {} but did not check them",
                        up.size,
                        hash_text(&up.hash)
                    ))));
                    return;
                }
                self.fill_upload(out);
            }
            BlobState::Complete => {
                stats.attachments_uploaded += 1;
                out.push(Effect::AttachmentUploaded { hash: up.hash });
                self.finish_upload(out);
            }
            BlobState::Refused(reason) => {
                stats.attachments_refused += 1;
                out.push(Effect::AttachmentRefused {
                    hash: up.hash,
                    reason,
                });
                self.finish_upload(out);
            }
        }
    }

    fn finish_upload(&mut self, out: &mut Vec<Effect>) {
        if let Some(up) = self.up.take() {
            self.finished.insert(up.hash);
        }
        self.next(out);
    }

    pub fn on_data(&mut self, data: BlobData, stats: &mut SyncStats, out: &mut Vec<Effect>) {
        let Some(down) = self.down.as_mut().filter(|d| d.hash == data.hash) else {
            if !self.finished.contains(&data.hash) {
                out.push(unasked(&data.hash));
            }
            return;
        };
        down.outstanding = down.outstanding.saturating_sub(1);
        match data.reply {
            BlobReply::Data {
                offset,
                size,
                data: bytes,
            } => {
                let len = bytes.len() as u64;
                let end = offset.saturating_add(len);
                let short = len < BLOB_CHUNK as u64 && end != size;
                if offset != down.received
                    || down.size.is_some_and(|s| s != size)
                    || end > size
                    || short
                {
                    out.push(Effect::Fail(Error::Protocol(format!(
                        "attachment {}: {len} bytes at {offset} of {size} while {} are stored",
                        hash_text(&data.hash),
                        down.received
                    ))));
                    return;
                }
                down.received = end;
                down.size = Some(size);
                stats.attachment_bytes_received += len;
                out.push(Effect::StorePiece {
                    hash: data.hash,
                    offset,
                    size,
                    data: bytes.into_vec(),
                });
                if end == size {
                    stats.attachments_downloaded += 1;
                    self.finish_download(out);
                    return;
                }
                while down.outstanding < BLOB_WINDOW && down.next < size {
                    out.push(Effect::Send(ClientMsg::BlobGet(BlobGet {
                        hash: data.hash,
                        offset: down.next,
                    })));
                    down.next += BLOB_CHUNK as u64;
                    down.outstanding += 1;
                }
            }
            BlobReply::NotYet => {
                out.push(Effect::AttachmentUnavailable {
                    hash: data.hash,
                    refused: None,
                });
                self.finish_download(out);
            }
            BlobReply::Refused(reason) => {
                out.push(Effect::AttachmentUnavailable {
                    hash: data.hash,
                    refused: Some(reason),
                });
                self.finish_download(out);
            }
        }
    }

    fn finish_download(&mut self, out: &mut Vec<Effect>) {
        if let Some(down) = self.down.take() {
            self.finished.insert(down.hash);
        }
        self.next(out);
    }
}

fn unasked(hash: &Hash) -> Effect {
    Effect::Fail(Error::Protocol(format!(
        "an answer about attachment {} that nothing asked for",
        hash_text(hash)
    )))
}

#[cfg(test)]
mod tests;
