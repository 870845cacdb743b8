//! The sync protocol's messages and their encoding on the wire. `docs/protocol.md` describes the
//! conversation; this module is its single source of truth for bytes.
//!
//! Every WebSocket binary message is one *frame*: a format byte, then the payload.
//!
//! | byte 0 | payload |
//! |---|---|
//! | 0 | a postcard-encoded [`ClientMsg`] or [`ServerMsg`] |
//! | 1 | the same, compressed with DEFLATE (raw) |
//! | 2 | a fragment: `msg_id: u32 LE, index: u16 LE, count: u16 LE`, then a slice of a whole frame |
//!
//! A message whose frame would exceed [`MAX_FRAME`] is split into fragments; the receiver joins
//! them and refuses any message beyond [`MAX_MESSAGE`].

pub mod compact;

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// The protocol this build speaks. The server accepts every version from [`MIN_PROTOCOL`] on.
/// Protocol 2 sends changes in their compact form (see [`compact`]); protocol 3 sends a record the
/// device does not hold yet as a snapshot; protocol 4 carries attachments' bytes
/// ([`ClientMsg::BlobPut`], [`ClientMsg::BlobGet`]) and changes nothing protocol 3 sends, so a
/// relay serves both (docs/protocol.md, the support policy). Protocol 5 tells the device the
/// community's time zone ([`ClientMsg::SignIn`], [`ServerMsg::Zone`]), again only appending.
/// Nothing speaking 1 or 2 was released.
pub const PROTOCOL_VERSION: u16 = 5;
pub const MIN_PROTOCOL: u16 = 3;
/// The first protocol that carries attachments.
pub const ATTACHMENTS_PROTOCOL: u16 = 4;
/// The first protocol in which the relay tells the device the community's time zone.
pub const ZONE_PROTOCOL: u16 = 5;
/// The farthest a community's clock is from UTC, either way, in minutes (real zones lie
/// between UTC−12:00 and UTC+14:00): a relay's setting beyond is refused on both sides.
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;

/// An attachment's bytes travel in pieces of at most this many bytes...
pub const BLOB_CHUNK: usize = 64 * 1024;
/// ... with at most this many unacknowledged at once: what a cut connection can cost is bounded
/// by `BLOB_CHUNK * BLOB_WINDOW` per attachment, whatever its size.
pub const BLOB_WINDOW: usize = 4;

/// The largest WebSocket message either side sends or accepts.
pub const MAX_FRAME: usize = 1024 * 1024;
/// The largest message once fragments are joined (and once decompressed).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// A batch of changes (upload or catch-up) stops growing at this many bytes of changes...
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// ... or at this many changes.
pub const MAX_BATCH_CHANGES: usize = 2000;
/// A single change larger than this is refused when written: a record's size stays bounded.
pub const MAX_CHANGE_BYTES: usize = 512 * 1024;
/// A device may sync at most this many grids.
pub const MAX_GRIDS: usize = 64;
/// Frames smaller than this are not worth compressing.
const COMPRESS_ABOVE: usize = 512;

const FORMAT_PLAIN: u8 = 0;
const FORMAT_DEFLATE: u8 = 1;
const FORMAT_FRAGMENT: u8 = 2;
const FRAGMENT_HEADER: usize = 1 + 4 + 2 + 2;

pub type Hash = [u8; 32];

/// Where a device stands in one grid's log: the sequence number of the last entry it holds and
/// that entry's change hash, so the server can tell a cursor it issued from one it never did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub grid: String,
    pub seq: u64,
    pub hash: Option<Hash>,
}

impl Cursor {
    pub fn start(grid: &str) -> Cursor {
        Cursor {
            grid: grid.to_string(),
            seq: 0,
            hash: None,
        }
    }
}

/// Device → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// Always the first message. Its first two fields keep their place in every version.
    Hello(Hello),
    Upload(Upload),
    /// Asks for the next catch-up batch of a grid.
    Pull {
        grid: String,
    },
    /// One step of Automerge's sync protocol for one document, during repair.
    DocSync(DocSync),
    /// Instead of `Hello`: sign a device in with a password and get its token.
    Login(LoginRequest),
    /// Protocol 4, after the records: a piece of an attachment's bytes, or with no bytes the
    /// question how much of it the relay holds. Answered by [`ServerMsg::Blob`].
    BlobPut(BlobPut),
    /// Protocol 4: asks for up to [`BLOB_CHUNK`] bytes of an attachment from an offset.
    /// Answered by [`ServerMsg::BlobData`].
    BlobGet(BlobGet),
    /// Protocol 5, instead of `Login`: the same sign-in, saying which protocol the device
    /// speaks, so that the relay may answer with what that protocol has ([`ServerMsg::Zone`]
    /// before `LoginOk`).
    SignIn(SignIn),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignIn {
    pub protocol: u16,
    pub login: LoginRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobPut {
    pub hash: Hash,
    /// The whole attachment's size, as its record names it.
    pub size: u64,
    /// Where `data` starts: the relay takes a piece only where its stored prefix ends.
    pub offset: u64,
    pub data: serde_bytes::ByteBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobGet {
    pub hash: Hash,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u16,
    pub client_version: String,
    /// The device token from `Login`: the server derives user, role and grids from it alone.
    pub token: String,
    /// For the server's logs only; the token decides who this is.
    pub device_id: String,
    pub cursors: Vec<Cursor>,
    /// Per grid, the log position the server reported when it last acknowledged this device's
    /// changes. If the server no longer has that entry (restored from an older backup), it has
    /// lost acknowledged changes and the grid is repaired even though the cursor looks valid.
    pub witnesses: Vec<Cursor>,
    /// Stay connected after catching up and receive pushes.
    pub live: bool,
}

/// The first fields of any version's `Hello`, enough to answer "incompatible version" clearly.
#[derive(Debug, Clone, Deserialize)]
pub struct HelloPrefix {
    pub protocol: u16,
    pub client_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub batch: u64,
    pub changes: Vec<UpChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpChange {
    pub doc_id: String,
    pub grid: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocSync {
    pub grid: String,
    pub doc_id: String,
    /// `None` means "nothing more from me".
    pub message: Option<serde_bytes::ByteBuf>,
    /// Server → device only: the relay refuses this document's changes (the reason); the
    /// document's repair ends there and the device keeps its copy.
    pub refused: Option<String>,
}

/// Server → device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMsg {
    Welcome(Welcome),
    /// Changes accepted since the device's cursor (catch-up) or just now (live push).
    Changes(Changes),
    /// An upload batch is durable on the server. Changes not listed as rejected were accepted.
    Ack(Ack),
    /// The session cannot go on; the connection is closed after this.
    Error(ErrorMsg),
    /// Repair: the documents of a grid with their heads, in pages.
    RepairDocs(RepairDocs),
    DocSync(DocSync),
    /// The answer to `Login`; the connection is closed after it.
    LoginOk(LoginResponse),
    /// Protocol 4: where the relay stands with an attachment, the answer to every `BlobPut`.
    Blob(BlobStatus),
    /// Protocol 4: the answer to `BlobGet`.
    BlobData(BlobData),
    /// Protocol 5: the community's time zone, the one the office dashboard counts its days in.
    /// Sent before `LoginOk` to a `SignIn`, and right after `Welcome` in every session.
    Zone(CommunityZone),
}

/// The community's time zone as the relay is set up with it (`--utc-offset-minutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityZone {
    /// Minutes east of UTC (China: 480), within ±[`MAX_UTC_OFFSET_MINUTES`].
    pub utc_offset_minutes: i32,
}

impl CommunityZone {
    /// The zone as a fixed offset; `None` for a value no real zone has (a receiver refuses it).
    pub fn offset(&self) -> Option<chrono::FixedOffset> {
        if self.utc_offset_minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            return None;
        }
        chrono::FixedOffset::east_opt(self.utc_offset_minutes * 60)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobStatus {
    pub hash: Hash,
    pub state: BlobState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobState {
    /// The relay holds the first this many bytes durably: send the rest from there.
    Have(u64),
    /// The relay holds every byte and checked them against the hash.
    Complete,
    /// The relay will not take this attachment, for this reason (a size over its limit, the
    /// device's quota used up, no record it may write naming it, bytes that do not match the
    /// hash). The records that name it are not affected.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobData {
    pub hash: Hash,
    pub reply: BlobReply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BlobReply {
    /// Bytes from `offset` (at most [`BLOB_CHUNK`]; fewer only at the end) of `size` in all.
    Data {
        offset: u64,
        size: u64,
        data: serde_bytes::ByteBuf,
    },
    /// The relay does not hold it yet: the device that took it has not uploaded it.
    NotYet,
    /// This device may not have it (no record it may read names it), or it is gone.
    Refused(String),
}

/// Signs a device in (once, online). The password is checked with argon2 on the server and
/// failed attempts are throttled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// A name the admin sees in the device list.
    pub device_name: String,
    /// The replica's Automerge actor id (hex), bound to the new device: changes signed by it are
    /// accepted from this device only.
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub device_id: String,
    /// Long-lived and revocable; the server keeps only its hash.
    pub token: String,
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    /// grid_worker, volunteer, office or admin
    pub role: String,
    pub grids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u16,
    pub server_version: String,
    pub server_id: String,
    /// The grids this device receives, as the server decided them from its identity. Records of
    /// any other grid may be purged once nothing local to them is unsent.
    pub grids: Vec<GridStatus>,
    pub max_frame: u32,
    pub max_batch_bytes: u32,
    pub max_batch_changes: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridStatus {
    pub grid: String,
    /// The newest sequence number in this grid's log.
    pub head_seq: u64,
    /// `false`: the server did not issue the device's cursor (restored from a backup, say), so
    /// the grid is repaired document by document instead of caught up from the log.
    pub cursor_known: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    pub grid: String,
    pub docs: Vec<DocChanges>,
    /// The device's new cursor once it has stored these changes.
    pub cursor: Cursor,
    /// More catch-up batches follow on `Pull`.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocChanges {
    pub doc_id: String,
    /// The record as a whole, for a device that holds none of it yet: loading a document costs
    /// about half of applying the changes it holds. `changes` are then those after it.
    pub snapshot: Option<Snapshot>,
    /// Automerge change chunks, in the order to apply them; on the wire in the compact form of
    /// [`compact`] (dependencies on an earlier change of the list by position, no header).
    #[serde(with = "compact::changes")]
    pub changes: Vec<serde_bytes::ByteBuf>,
}

impl DocChanges {
    /// A document's changes, without a snapshot.
    pub fn changes(doc_id: impl Into<String>, changes: Vec<serde_bytes::ByteBuf>) -> DocChanges {
        DocChanges {
            doc_id: doc_id.into(),
            snapshot: None,
            changes,
        }
    }

    /// Log entries this carries: the snapshot's and the changes after it.
    pub fn entries(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| u64::from(s.entries)) + self.changes.len() as u64
    }
}

/// A saved Automerge document (uncompressed: the frame is deflated as a whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub bytes: serde_bytes::ByteBuf,
    /// How many of the batch's log entries it stands for (progress and counts only).
    pub entries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub batch: u64,
    pub rejected: Vec<Rejected>,
    /// For each grid of the batch, the newest log entry once the batch was stored.
    pub witnesses: Vec<Cursor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub doc_id: String,
    /// Index of the change in the upload batch.
    pub index: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairDocs {
    pub grid: String,
    pub docs: Vec<DocHeads>,
    pub more: bool,
    /// The grid's log position when the repair began: the cursor once repair is done.
    pub head: Cursor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocHeads {
    pub doc_id: String,
    pub heads: Vec<Hash>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    IncompatibleVersion,
    BadRequest,
    TooLarge,
    Forbidden,
    Internal,
    ShuttingDown,
    /// The token is unknown: sign in again. Nothing is erased.
    Unauthorized,
    /// The device was revoked or its user deactivated: the device must erase its replica.
    Revoked,
    /// Too many failed sign-ins, or too many sessions of one device open; try again later.
    Throttled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMsg {
    pub code: ErrorCode,
    pub message: String,
}

/// WebSocket close codes the server uses besides the standard ones.
pub mod close_code {
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const TOO_LARGE: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const GOING_AWAY: u16 = 1001;
    pub const INCOMPATIBLE_VERSION: u16 = 4001;
    pub const FORBIDDEN: u16 = 4003;
    pub const UNAUTHORIZED: u16 = 4011;
    pub const REVOKED: u16 = 4012;
    pub const THROTTLED: u16 = 4029;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame format {0}")]
    UnknownFormat(u8),
    /// The message is larger than the receiver's limit (in bytes), which the text states.
    #[error("message larger than the limit of {}", size_text(*.0))]
    TooLarge(usize),
    #[error("malformed fragment")]
    BadFragment,
    #[error("cannot decompress frame: {0}")]
    Deflate(String),
    #[error("cannot decode message: {0}")]
    Decode(String),
}

/// A byte count as people read it: `4 MiB`, `16 KiB`, or `1000 bytes` when not a whole unit.
pub fn size_text(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    // (Not `is_multiple_of`: it is newer than the workspace's rust-version.)
    if bytes >= MIB && bytes / MIB * MIB == bytes {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes / KIB * KIB == bytes {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Encodes a message into one or more frames, each at most [`MAX_FRAME`] bytes.
pub fn encode<T: Serialize>(msg: &T, msg_id: u32) -> Vec<Vec<u8>> {
    // Encoding our own types into a Vec cannot fail.
    let plain = postcard::to_stdvec(msg).unwrap_or_default();
    let frame = if plain.len() > COMPRESS_ABOVE {
        let mut enc = flate2::write::DeflateEncoder::new(
            vec![FORMAT_DEFLATE],
            flate2::Compression::default(),
        );
        let compressed = enc.write_all(&plain).ok().and_then(|()| enc.finish().ok());
        if let Some(out) = compressed.filter(|out| out.len() < plain.len()) {
            out
        } else {
            prefixed(FORMAT_PLAIN, &plain)
        }
    } else {
        prefixed(FORMAT_PLAIN, &plain)
    };
    if frame.len() <= MAX_FRAME {
        return vec![frame];
    }
    let part = MAX_FRAME - FRAGMENT_HEADER;
    let count = frame.len().div_ceil(part);
    frame
        .chunks(part)
        .enumerate()
        .map(|(index, chunk)| {
            let mut f = Vec::with_capacity(FRAGMENT_HEADER + chunk.len());
            f.push(FORMAT_FRAGMENT);
            f.extend_from_slice(&msg_id.to_le_bytes());
            f.extend_from_slice(&(index as u16).to_le_bytes());
            f.extend_from_slice(&(count as u16).to_le_bytes());
            f.extend_from_slice(chunk);
            f
        })
        .collect()
}

fn prefixed(format: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(format);
    out.extend_from_slice(payload);
    out
}

/// Joins fragments and decodes whole messages, refusing anything beyond [`MAX_MESSAGE`].
#[derive(Debug)]
pub struct Decoder {
    partial: Option<(u32, u16, u16, Vec<u8>)>,
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_limit(MAX_MESSAGE)
    }
}

impl Decoder {
    /// A decoder that refuses messages larger than `limit` bytes (joined and decompressed).
    pub fn with_limit(limit: usize) -> Decoder {
        Decoder {
            partial: None,
            limit: limit.min(MAX_MESSAGE),
        }
    }

    /// Feeds one frame; returns a message once one is complete.
    pub fn push<T: serde::de::DeserializeOwned>(
        &mut self,
        frame: &[u8],
    ) -> Result<Option<T>, CodecError> {
        match frame.first() {
            None => Err(CodecError::Empty),
            Some(&FORMAT_FRAGMENT) => {
                if frame.len() <= FRAGMENT_HEADER {
                    return Err(CodecError::BadFragment);
                }
                let id = u32::from_le_bytes([frame[1], frame[2], frame[3], frame[4]]);
                let index = u16::from_le_bytes([frame[5], frame[6]]);
                let count = u16::from_le_bytes([frame[7], frame[8]]);
                let body = &frame[FRAGMENT_HEADER..];
                if count < 2 || index >= count {
                    return Err(CodecError::BadFragment);
                }
                let mut partial = match self.partial.take() {
                    None if index == 0 => (id, 0, count, Vec::new()),
                    Some(p) if p.0 == id && p.1 == index && p.2 == count => p,
                    _ => return Err(CodecError::BadFragment),
                };
                if partial.3.len() + body.len() > self.limit {
                    return Err(CodecError::TooLarge(self.limit));
                }
                partial.3.extend_from_slice(body);
                partial.1 = index + 1;
                if partial.1 == count {
                    let whole = partial.3;
                    if whole.first() == Some(&FORMAT_FRAGMENT) {
                        return Err(CodecError::BadFragment);
                    }
                    decode_frame_limited(&whole, self.limit).map(Some)
                } else {
                    self.partial = Some(partial);
                    Ok(None)
                }
            }
            Some(_) => {
                if self.partial.is_some() {
                    return Err(CodecError::BadFragment);
                }
                decode_frame_limited(frame, self.limit).map(Some)
            }
        }
    }
}

/// Decodes one whole (unfragmented) frame.
pub fn decode_frame<T: serde::de::DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    decode_frame_limited(frame, MAX_MESSAGE)
}

/// Decodes one whole frame, refusing any message larger than `limit` once decompressed.
pub fn decode_frame_limited<T: serde::de::DeserializeOwned>(
    frame: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    let (format, payload) = frame.split_first().ok_or(CodecError::Empty)?;
    match *format {
        FORMAT_PLAIN => {
            postcard::from_bytes(payload).map_err(|e| CodecError::Decode(e.to_string()))
        }
        FORMAT_DEFLATE => {
            let mut plain = Vec::new();
            let read = flate2::read::DeflateDecoder::new(payload)
                .take(limit as u64 + 1)
                .read_to_end(&mut plain);
            match read {
                Err(e) => Err(CodecError::Deflate(e.to_string())),
                Ok(n) if n > limit => Err(CodecError::TooLarge(limit)),
                Ok(_) => {
                    postcard::from_bytes(&plain).map_err(|e| CodecError::Decode(e.to_string()))
                }
            }
        }
        other => Err(CodecError::UnknownFormat(other)),
    }
}

/// Reads the protocol version out of a `Hello` this build cannot fully decode.
pub fn peek_hello(frame: &[u8]) -> Option<HelloPrefix> {
    let (format, payload) = frame.split_first()?;
    let inflated;
    let payload = match *format {
        FORMAT_PLAIN => payload,
        FORMAT_DEFLATE => {
            // A hello's first fields sit at its start: a little is plenty, and a bomb stays small.
            let mut plain = Vec::new();
            flate2::read::DeflateDecoder::new(payload)
                .take(4096)
                .read_to_end(&mut plain)
                .ok()?;
            inflated = plain;
            &inflated
        }
        _ => return None,
    };
    // Variant 0 of `ClientMsg` is `Hello`; postcard writes the variant index as one varint byte.
    let (&variant, rest) = payload.split_first()?;
    if variant != 0 {
        return None;
    }
    // Versions start at 1: a zero is garbage, not an old client.
    postcard::take_from_bytes::<HelloPrefix>(rest)
        .ok()
        .map(|(p, _)| p)
        .filter(|p| p.protocol > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> ClientMsg {
        ClientMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client_version: "0.1.0".into(),
            token: "t1".into(),
            device_id: "d1".into(),
            cursors: vec![Cursor {
                grid: "g1".into(),
                seq: 7,
                hash: Some([9; 32]),
            }],
            witnesses: vec![],
            live: false,
        })
    }

    #[test]
    fn test_small_message_round_trips_in_one_frame() {
        let frames = encode(&hello(), 1);
        assert_eq!(frames.len(), 1);
        let msg: ClientMsg = Decoder::default().push(&frames[0]).unwrap().unwrap();
        assert_eq!(msg, hello());
    }

    #[test]
    fn test_hello_wire_format_is_frozen() {
        // A change here breaks every deployed device: bump PROTOCOL_VERSION instead (only the version
        // byte, the third, may differ between versions).
        let frame = &encode(&hello(), 1)[0];
        let expected = format!(
            "0000{PROTOCOL_VERSION:02x}05302e312e30027431026431010267310701090909090909090909\
             09090909090909090909090909090909090909090909090000"
        );
        assert_eq!(hex::encode(frame), expected);
    }

    #[test]
    fn test_large_message_is_fragmented_and_joined() {
        // Incompressible bytes force the frame over MAX_FRAME.
        let mut seed: u32 = 1;
        let bytes: Vec<u8> = (0..(MAX_FRAME * 2))
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            })
            .collect();
        let msg = ClientMsg::Upload(Upload {
            batch: 1,
            changes: vec![UpChange {
                doc_id: "x".into(),
                grid: "g".into(),
                bytes,
            }],
        });
        let frames = encode(&msg, 42);
        assert!(frames.len() >= 3);
        assert!(frames.iter().all(|f| f.len() <= MAX_FRAME));
        let mut dec = Decoder::default();
        let mut out = None;
        for f in &frames {
            out = dec.push::<ClientMsg>(f).unwrap();
        }
        assert_eq!(out.unwrap(), msg);
    }

    #[test]
    fn test_garbage_is_an_error_not_a_panic() {
        let mut dec = Decoder::default();
        assert!(dec.push::<ClientMsg>(&[]).is_err());
        assert!(dec.push::<ClientMsg>(&[7, 1, 2]).is_err());
        assert!(dec.push::<ClientMsg>(&[0, 200, 200, 200]).is_err());
        assert!(dec.push::<ClientMsg>(&[1, 255, 255, 255]).is_err());
        assert!(
            dec.push::<ClientMsg>(&[2, 0, 0, 0, 0, 5, 0, 2, 0, 1])
                .is_err()
        );
    }

    #[test]
    fn test_size_error_states_the_decoders_own_limit() {
        let big = ClientMsg::Upload(Upload {
            batch: 1,
            changes: vec![UpChange {
                doc_id: "x".into(),
                grid: "g".into(),
                bytes: vec![7; 300 * 1024],
            }],
        });
        let frame = &encode(&big, 1)[0];
        let err = Decoder::with_limit(256 * 1024)
            .push::<ClientMsg>(frame)
            .unwrap_err();
        assert_eq!(err, CodecError::TooLarge(256 * 1024));
        assert_eq!(err.to_string(), "message larger than the limit of 256 KiB");
        assert_eq!(
            CodecError::TooLarge(MAX_MESSAGE).to_string(),
            "message larger than the limit of 16 MiB"
        );
        assert_eq!(size_text(1000), "1000 bytes");
    }

    #[test]
    fn test_hello_at_max_grids_fits_what_the_relay_reads_before_sign_in() {
        // The relay's default `max_first_message_bytes` (server/src/config.rs) is 16 KiB; a
        // hello of a device at MAX_GRIDS grids with long ids and cursors far on must fit it.
        let cursor = |i: usize| Cursor {
            grid: format!("370102-street-community-grid-{i:04}"),
            seq: u64::MAX,
            hash: Some([0xab; 32]),
        };
        let hello = ClientMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client_version: "0.1.0-with-a-long-build-suffix".into(),
            token: "f".repeat(64),
            device_id: uuid_like(),
            cursors: (0..MAX_GRIDS).map(cursor).collect(),
            witnesses: (0..MAX_GRIDS).map(cursor).collect(),
            live: true,
        });
        let frames = encode(&hello, 1);
        assert_eq!(frames.len(), 1);
        // WebSocket framing adds at most 14 bytes.
        assert!(
            frames[0].len() + 14 <= 16 * 1024,
            "{} bytes",
            frames[0].len()
        );
        let plain = postcard::to_stdvec(&hello).unwrap();
        assert!(
            plain.len() <= 16 * 1024,
            "{} bytes uncompressed",
            plain.len()
        );
    }

    fn uuid_like() -> String {
        "0190a6f2-7b3c-7d4e-8f90-123456789abc".into()
    }

    #[test]
    fn test_future_hello_version_can_be_read() {
        let frame = &encode(&hello(), 1)[0];
        let prefix = peek_hello(frame).unwrap();
        assert_eq!(prefix.protocol, PROTOCOL_VERSION);
        assert_eq!(prefix.client_version, "0.1.0");
    }
}
