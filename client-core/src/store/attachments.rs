//! Photos and files on records, on the device (docs/protocol.md §13). The bytes live in the
//! replica's own SQLite file, in pieces of [`BLOB_CHUNK`] (migration 003): encrypted exactly like
//! the records when the replica is, and attached in the same transaction as the change that names
//! them, so an attach that returned survives a crash like any write. Files are read a piece at a
//! time; only a photo being downscaled is decoded whole.
//!
//! Attachments this device made wait for upload until the relay says `Complete` (or refuses
//! them, with a reason kept for the user). Attachments of others are fetched only when wanted
//! ([`Replica::want_attachment`]) and kept in a cache of bounded size: the least recently used are
//! evicted first, never one of this device's own not yet uploaded, never one being downloaded.

mod photo;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Replica;
use crate::error::{Error, Result};
use crate::protocol::{BLOB_CHUNK, Hash};
use crate::record::Kind;
use crate::record::attachment::{self, MAX_ATTACHMENT_BYTES};

pub use photo::JPEG_QUALITY;

/// The default bound of the cache of fetched attachments.
pub const DEFAULT_CACHE_BYTES: u64 = 200 * 1024 * 1024;
/// Photos whose longest side is over this many pixels are downscaled to it by default.
pub const DEFAULT_MAX_SIDE: u32 = 1600;

/// What [`Replica::attach`] reads.
#[derive(Debug, Clone)]
pub enum AttachSource {
    /// A file, read in pieces.
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub caption: String,
    /// The file name the record shows; by default the source file's own.
    pub name: Option<String>,
    /// By default sniffed from the bytes (JPEG, PNG, PDF), else from the file name.
    pub media_type: Option<String>,
    /// Keep a photo byte for byte instead of downscaling it.
    pub original: bool,
}

/// The settings of a replica's attachments.
#[derive(Debug, Clone, Copy)]
pub struct AttachmentSettings {
    /// The bound of the cache (fetched attachments and own ones already uploaded).
    pub cache_bytes: u64,
    /// The longest side, in pixels, of a photo that is not attached as its original.
    pub max_side: u32,
}

impl Default for AttachmentSettings {
    fn default() -> AttachmentSettings {
        AttachmentSettings {
            cache_bytes: DEFAULT_CACHE_BYTES,
            max_side: DEFAULT_MAX_SIDE,
        }
    }
}

/// One attachment this device holds or wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentInfo {
    pub hash: String,
    pub size: Option<u64>,
    pub media_type: Option<String>,
    /// Made on this device (else fetched from the relay).
    pub local: bool,
    /// Of a local one: `waiting`, `uploaded` or `refused`.
    pub upload: Option<String>,
    /// The relay's reason for refusing it (local), or for not giving it (fetched).
    pub refused: Option<String>,
    /// Every byte is here.
    pub complete: bool,
    /// A fetched one is to be downloaded at the next sync.
    pub wanted: bool,
    /// The relay said a record names it but its maker has not uploaded it yet.
    pub not_yet: bool,
}

/// What `gridsync status` and an app's sync screen show of attachments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttachmentStatus {
    pub waiting: u64,
    pub waiting_bytes: u64,
    pub refused: Vec<RefusedAttachment>,
    /// Bytes of the cache, against `cache_bound`.
    pub cached_bytes: u64,
    pub cache_bound: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedAttachment {
    pub hash: String,
    pub reason: String,
}

/// An attachment to upload, for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTodo {
    pub hash: Hash,
    pub size: u64,
}

/// An attachment to download and the bytes of it already here, for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadTodo {
    pub hash: Hash,
    pub have: u64,
}

/// `fetch_note` of an attachment the relay does not hold yet.
const NOT_YET: &str = "not_yet";

/// Rows the cache may evict: fetched ones not being downloaded, own ones the relay holds.
const EVICTABLE: &str = "((origin = 'fetched' AND wanted = 0) OR upload = 'uploaded')";

impl Replica {
    pub fn set_attachment_settings(&mut self, settings: AttachmentSettings) {
        self.attachment_settings = settings;
    }

    pub fn attachment_settings(&self) -> AttachmentSettings {
        self.attachment_settings
    }

    /// Attaches a photo or a file to a record and returns its hash (64 hex digits). The bytes
    /// and the record's new `attachments` entry are stored in one transaction with the change
    /// and its outbox row. A JPEG or PNG photo whose longest side is over
    /// [`AttachmentSettings::max_side`] is stored upright, downscaled to it, as a JPEG at
    /// [`JPEG_QUALITY`], unless `options.original`. Attaching bytes the record already names
    /// changes nothing.
    pub fn attach(
        &mut self,
        record_id: &str,
        source: AttachSource,
        options: AttachOptions,
    ) -> Result<String> {
        let record = self.get(record_id)?;
        if !record
            .kind
            .spec()
            .fields
            .iter()
            .any(|f| f.name == attachment::FIELD_NAME)
        {
            return Err(Error::Attachment(format!(
                "{} 记录不能附加照片或文件 a {} record carries no photos or files",
                record.kind.spec().label.zh,
                record.kind.as_str()
            )));
        }
        let mut source = source;
        let name = options.name.clone().or_else(|| match &source {
            AttachSource::Path(path) => path.file_name().map(|n| n.to_string_lossy().into_owned()),
            AttachSource::Bytes(_) => None,
        });
        let mut media_type = match options.media_type.clone() {
            Some(m) => m,
            None => sniff(&source, name.as_deref())?,
        };
        let mut size_px = None;
        if photo::is_photo(&media_type)
            && let Some((w, h, _)) = photo::inspect(&source)
        {
            size_px = Some((w, h));
            let max_side = self.attachment_settings.max_side;
            if !options.original && w.max(h) > max_side {
                let (bytes, w, h) = photo::downscale(&source, max_side)?;
                source = AttachSource::Bytes(bytes);
                media_type = "image/jpeg".into();
                size_px = Some((w, h));
            }
        }
        let (hash, size) = digest(&source)?;
        if size == 0 || size > MAX_ATTACHMENT_BYTES {
            return Err(Error::Attachment(format!(
                "附件大小须在 1 字节到 {} 兆字节之间 an attachment must be from 1 byte to {} MiB, \
                 this one is {size} bytes",
                MAX_ATTACHMENT_BYTES >> 20,
                MAX_ATTACHMENT_BYTES >> 20
            )));
        }
        let text = attachment::hash_text(&hash);
        let mut list = match record.fields.get(attachment::FIELD_NAME) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        if list
            .iter()
            .any(|e| e.get("hash").and_then(Value::as_str) == Some(text.as_str()))
        {
            return Ok(text);
        }
        let identity = self.identity()?.clone();
        let mut entry = json!({
            "hash": text,
            "media_type": media_type,
            "size": size,
            "caption": options.caption,
            "at": self.now_string(),
            "by": identity.worker_id,
        });
        if let Some(obj) = entry.as_object_mut() {
            if let Some((w, h)) = size_px {
                obj.insert("width".into(), w.into());
                obj.insert("height".into(), h.into());
            }
            if let Some(name) = name {
                obj.insert("name".into(), name.into());
            }
        }
        list.push(entry);
        let mut patch = Map::new();
        patch.insert(attachment::FIELD_NAME.into(), Value::Array(list));
        let writes = self.prepare_update(record_id, patch)?;
        let row = NewRow {
            hash,
            size,
            media_type: &media_type,
            size_px,
            priority: record.kind == Kind::Report,
            created_at: self.now_string(),
        };
        self.persist_with(writes, |tx| store_local(tx, &row, &source))?;
        Ok(text)
    }

    /// Streams a complete attachment to `out` and returns its size. A fetched one is checked
    /// against its hash before its first use.
    pub fn write_attachment(&mut self, hash: &str, out: &mut dyn Write) -> Result<u64> {
        let key = parse(hash)?;
        let Some(info) = self.attachment(hash)? else {
            return Err(not_here(hash));
        };
        if !info.complete {
            return Err(match (info.refused, info.not_yet) {
                (Some(reason), _) => Error::Attachment(format!(
                    "服务器不提供此附件 the relay will not give attachment {hash}: {reason}"
                )),
                (None, true) => Error::Attachment(format!(
                    "此附件尚未由拍摄的设备上传，请稍后再试 attachment {hash} is not uploaded \
                     yet by the device that took it: try again later"
                )),
                (None, false) => not_here(hash),
            });
        }
        let verified: bool = self.conn.query_row(
            "SELECT verified FROM attachments WHERE hash = ?1",
            [&key[..]],
            |r| r.get(0),
        )?;
        if !verified {
            let mut hasher = Sha256::new();
            self.each_piece(&key, |bytes| {
                hasher.update(bytes);
                Ok(())
            })?;
            if <[u8; 32]>::from(hasher.finalize()) != key {
                self.conn
                    .execute("DELETE FROM attachments WHERE hash = ?1", [&key[..]])?;
                return Err(mismatch(hash));
            }
            self.conn.execute(
                "UPDATE attachments SET verified = 1 WHERE hash = ?1",
                [&key[..]],
            )?;
        }
        let mut written = 0u64;
        self.each_piece(&key, |bytes| {
            out.write_all(bytes)?;
            written += bytes.len() as u64;
            Ok(())
        })?;
        out.flush()?;
        self.touch(&key)?;
        Ok(written)
    }

    /// [`Replica::write_attachment`] into a file, written beside it and renamed into place.
    pub fn save_attachment(&mut self, hash: &str, path: &Path) -> Result<u64> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let tmp = match dir {
            Some(d) => d.join(format!(".{hash}.part")),
            None => PathBuf::from(format!(".{hash}.part")),
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let written = self.write_attachment(hash, &mut file).and_then(|n| {
            file.into_inner()
                .map_err(|e| Error::Io(e.into_error()))?
                .sync_all()?;
            Ok(n)
        });
        match written {
            Ok(n) => {
                std::fs::rename(&tmp, path)?;
                Ok(n)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Asks for an attachment at the next sync, unless every byte of it is here already.
    pub fn want_attachment(&mut self, hash: &str) -> Result<AttachmentInfo> {
        let key = parse(hash)?;
        let now = self.now_string();
        self.conn.execute(
            "INSERT INTO attachments (hash, origin, wanted, created_at) VALUES (?1, 'fetched', 1, ?2)
             ON CONFLICT (hash) DO UPDATE SET wanted = 1, fetch_note = NULL
             WHERE origin = 'fetched' AND (size IS NULL OR stored < size)",
            params![&key[..], now],
        )?;
        self.attachment(hash)?.ok_or_else(|| not_here(hash))
    }

    /// What this device holds of an attachment, if anything.
    pub fn attachment(&self, hash: &str) -> Result<Option<AttachmentInfo>> {
        let key = parse(hash)?;
        Ok(self
            .conn
            .query_row(
                "SELECT size, media_type, origin, upload, refused, stored, wanted, fetch_note
                 FROM attachments WHERE hash = ?1",
                [&key[..]],
                |r| {
                    let size = r.get::<_, Option<i64>>(0)?.map(|s| s as u64);
                    let stored = r.get::<_, i64>(5)? as u64;
                    let note: Option<String> = r.get(7)?;
                    let origin: String = r.get(2)?;
                    let refused: Option<String> = r.get(4)?;
                    Ok(AttachmentInfo {
                        hash: hash.to_string(),
                        size,
                        media_type: r.get(1)?,
                        local: origin == "local",
                        upload: r.get(3)?,
                        refused: refused.or(note.clone().filter(|n| n != NOT_YET)),
                        complete: size.is_some_and(|s| s == stored),
                        wanted: r.get(6)?,
                        not_yet: note.as_deref() == Some(NOT_YET),
                    })
                },
            )
            .optional()?)
    }

    /// Counts for the status screen.
    pub fn attachment_status(&self) -> Result<AttachmentStatus> {
        let (waiting, waiting_bytes): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM attachments WHERE upload = 'waiting'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let refused = self
            .conn
            .prepare(
                "SELECT hash, refused FROM attachments WHERE upload = 'refused' ORDER BY created_at",
            )?
            .query_map([], |r| {
                let hash: Vec<u8> = r.get(0)?;
                Ok(RefusedAttachment {
                    hash: hex::encode(hash),
                    reason: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AttachmentStatus {
            waiting: waiting as u64,
            waiting_bytes: waiting_bytes as u64,
            refused,
            cached_bytes: self.cached_bytes()?,
            cache_bound: self.attachment_settings.cache_bytes,
        })
    }

    /// What the engine uploads (urgent reports' first, then oldest first) and downloads.
    pub fn attachments_to_sync(&self) -> Result<(Vec<UploadTodo>, Vec<DownloadTodo>)> {
        let uploads = self
            .conn
            .prepare(
                "SELECT hash, size FROM attachments WHERE upload = 'waiting'
                 ORDER BY priority DESC, created_at, rowid",
            )?
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(h, size)| {
                Some(UploadTodo {
                    hash: h.try_into().ok()?,
                    size,
                })
            })
            .collect();
        let downloads = self
            .conn
            .prepare(
                "SELECT hash, stored FROM attachments WHERE origin = 'fetched' AND wanted = 1
                 ORDER BY rowid",
            )?
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(h, have)| {
                Some(DownloadTodo {
                    hash: h.try_into().ok()?,
                    have,
                })
            })
            .collect();
        Ok((uploads, downloads))
    }

    /// Up to [`BLOB_CHUNK`] bytes of a stored attachment from `offset`.
    pub fn attachment_piece(&self, hash: &Hash, offset: u64) -> Result<Vec<u8>> {
        let chunk = BLOB_CHUNK as u64;
        let start = offset - offset % chunk;
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT bytes FROM attachment_pieces WHERE hash = ?1 AND offset = ?2")?
            .query_row(params![&hash[..], start as i64], |r| r.get(0))
            .optional()?;
        let bytes = bytes.ok_or_else(|| {
            Error::Damaged(format!(
                "attachment {} has no bytes at {offset}",
                attachment::hash_text(hash)
            ))
        })?;
        let from = ((offset - start) as usize).min(bytes.len());
        Ok(bytes[from..].to_vec())
    }

    /// The relay holds every byte of an own attachment.
    pub fn mark_attachment_uploaded(&mut self, hash: &Hash) -> Result<()> {
        self.conn.execute(
            "UPDATE attachments SET upload = 'uploaded', refused = NULL WHERE hash = ?1 AND origin = 'local'",
            [&hash[..]],
        )?;
        self.evict(None)
    }

    /// The relay refused an own attachment: kept with the reason, not sent again.
    pub fn mark_attachment_refused(&mut self, hash: &Hash, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE attachments SET upload = 'refused', refused = ?2 WHERE hash = ?1 AND origin = 'local'",
            params![&hash[..], reason],
        )?;
        Ok(())
    }

    /// Stores a downloaded piece (one transaction each, so a cut download resumes from here);
    /// once every byte is here, checks the whole against the hash. Returns whether the
    /// attachment is now complete and checked.
    pub fn store_attachment_piece(
        &mut self,
        hash: &Hash,
        offset: u64,
        size: u64,
        data: &[u8],
    ) -> Result<bool> {
        let text = attachment::hash_text(hash);
        if size == 0 || size > MAX_ATTACHMENT_BYTES || data.len() > BLOB_CHUNK {
            return Err(Error::Protocol(format!(
                "attachment {text}: a piece of {} bytes of an attachment of {size}",
                data.len()
            )));
        }
        let tx = self.conn.transaction()?;
        let row: Option<(Option<u64>, u64)> = tx
            .query_row(
                "SELECT size, stored FROM attachments WHERE hash = ?1 AND origin = 'fetched' AND wanted = 1",
                [&hash[..]],
                |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?.map(|s| s as u64),
                        r.get::<_, i64>(1)? as u64,
                    ))
                },
            )
            .optional()?;
        let Some((known, stored)) = row else {
            return Ok(false);
        };
        if known.is_some_and(|k| k != size) || offset != stored || stored + data.len() as u64 > size
        {
            return Err(Error::Protocol(format!(
                "attachment {text}: a piece at {offset} of {size} while {stored} are stored"
            )));
        }
        tx.prepare_cached(
            "INSERT INTO attachment_pieces (hash, offset, bytes) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![&hash[..], offset as i64, data])?;
        let stored = stored + data.len() as u64;
        tx.execute(
            "UPDATE attachments SET size = ?2, stored = ?3 WHERE hash = ?1",
            params![&hash[..], size as i64, stored as i64],
        )?;
        tx.commit()?;
        if stored < size {
            return Ok(false);
        }
        let mut hasher = Sha256::new();
        self.each_piece(hash, |bytes| {
            hasher.update(bytes);
            Ok(())
        })?;
        if <[u8; 32]>::from(hasher.finalize()) != *hash {
            self.conn
                .execute("DELETE FROM attachment_pieces WHERE hash = ?1", [&hash[..]])?;
            self.conn.execute(
                "UPDATE attachments SET stored = 0, wanted = 0, fetch_note = ?2 WHERE hash = ?1",
                params![&hash[..], mismatch(&text).to_string()],
            )?;
            return Ok(false);
        }
        let next = self.next_use()?;
        self.conn.execute(
            "UPDATE attachments SET wanted = 0, verified = 1, fetch_note = NULL, last_used = ?2
             WHERE hash = ?1",
            params![&hash[..], next],
        )?;
        self.evict(Some(hash))?;
        Ok(true)
    }

    /// The relay did not give a wanted attachment: not uploaded yet (`None`: it stays wanted),
    /// or refused with a reason (no longer wanted).
    pub fn attachment_unavailable(&mut self, hash: &Hash, refused: Option<&str>) -> Result<()> {
        match refused {
            None => self.conn.execute(
                "UPDATE attachments SET fetch_note = ?2 WHERE hash = ?1 AND origin = 'fetched'",
                params![&hash[..], NOT_YET],
            )?,
            Some(reason) => self.conn.execute(
                "UPDATE attachments SET fetch_note = ?2, wanted = 0 WHERE hash = ?1 AND origin = 'fetched'",
                params![&hash[..], reason],
            )?,
        };
        Ok(())
    }

    fn each_piece(&self, hash: &Hash, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT bytes FROM attachment_pieces WHERE hash = ?1 ORDER BY offset",
        )?;
        let mut rows = stmt.query([&hash[..]])?;
        while let Some(row) = rows.next()? {
            let bytes: Vec<u8> = row.get(0)?;
            f(&bytes)?;
        }
        Ok(())
    }

    fn next_use(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(last_used), 0) + 1 FROM attachments",
            [],
            |r| r.get(0),
        )?)
    }

    fn touch(&self, hash: &Hash) -> Result<()> {
        let next = self.next_use()?;
        self.conn.execute(
            "UPDATE attachments SET last_used = ?2 WHERE hash = ?1",
            params![&hash[..], next],
        )?;
        Ok(())
    }

    fn cached_bytes(&self) -> Result<u64> {
        let bytes: i64 = self.conn.query_row(
            &format!("SELECT COALESCE(SUM(stored), 0) FROM attachments WHERE {EVICTABLE}"),
            [],
            |r| r.get(0),
        )?;
        Ok(bytes as u64)
    }

    /// Evicts the least recently used of the cache until it is within its bound; `keep` (the
    /// one just fetched, which is about to be used) stays even when it alone is over it.
    fn evict(&mut self, keep: Option<&Hash>) -> Result<()> {
        let bound = self.attachment_settings.cache_bytes;
        let mut total = self.cached_bytes()?;
        if total <= bound {
            return Ok(());
        }
        let keep = keep.map(|k| k.to_vec()).unwrap_or_default();
        let victims: Vec<(Vec<u8>, i64)> = self
            .conn
            .prepare(&format!(
                "SELECT hash, stored FROM attachments WHERE {EVICTABLE} AND hash <> ?1
                 ORDER BY last_used, rowid"
            ))?
            .query_map([&keep], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let tx = self.conn.transaction()?;
        for (hash, stored) in victims {
            if total <= bound {
                break;
            }
            tx.execute("DELETE FROM attachments WHERE hash = ?1", [&hash])?;
            total = total.saturating_sub(stored as u64);
        }
        tx.commit()?;
        Ok(())
    }
}

/// The row of a new own attachment.
struct NewRow<'a> {
    hash: Hash,
    size: u64,
    media_type: &'a str,
    size_px: Option<(u32, u32)>,
    priority: bool,
    created_at: String,
}

/// Stores an own attachment's bytes inside the attach's transaction, re-reading the source and
/// checking it is still what was hashed (a file changed meanwhile is refused, nothing stored).
fn store_local(tx: &Transaction<'_>, row: &NewRow<'_>, source: &AttachSource) -> Result<()> {
    let existing: Option<(String, Option<i64>, i64)> = tx
        .query_row(
            "SELECT origin, size, stored FROM attachments WHERE hash = ?1",
            [&row.hash[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((origin, size, stored)) = existing
        && size == Some(stored)
    {
        // Bytes another record named first: stored once. Fetched ones are on the relay already.
        if origin == "local" && row.priority {
            tx.execute(
                "UPDATE attachments SET priority = 1 WHERE hash = ?1",
                [&row.hash[..]],
            )?;
        }
        return Ok(());
    }
    tx.execute("DELETE FROM attachments WHERE hash = ?1", [&row.hash[..]])?;
    tx.execute(
        "INSERT INTO attachments (hash, size, media_type, width, height, origin, upload, priority,
                                  stored, verified, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'local', 'waiting', ?6, ?2, 1, ?7)",
        params![
            &row.hash[..],
            row.size as i64,
            row.media_type,
            row.size_px.map(|p| p.0),
            row.size_px.map(|p| p.1),
            row.priority,
            row.created_at
        ],
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO attachment_pieces (hash, offset, bytes) VALUES (?1, ?2, ?3)",
    )?;
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    each_chunk(source, |piece| {
        hasher.update(piece);
        insert.execute(params![&row.hash[..], offset as i64, piece])?;
        offset += piece.len() as u64;
        Ok(())
    })?;
    if offset != row.size || <[u8; 32]>::from(hasher.finalize()) != row.hash {
        return Err(Error::Attachment(
            "文件在附加时被修改，未保存 the file changed while it was attached: nothing was stored"
                .into(),
        ));
    }
    Ok(())
}

/// Copies into a salvaged replica's transaction the own attachments of the damaged one that the
/// relay does not hold (waiting or refused), each only if every piece reads back and matches
/// its hash; the rest are named in the log. Fails only when the fresh replica cannot be written.
pub(super) fn salvage_own(damaged: &rusqlite::Connection, tx: &Transaction<'_>) -> Result<()> {
    type Row = (Vec<u8>, i64, Option<String>, Option<i64>, Option<i64>);
    type More = (String, Option<String>, i64, String);
    let rows: Vec<(Row, More)> = damaged
        .prepare(
            "SELECT hash, size, media_type, width, height, upload, refused, priority, created_at
             FROM attachments WHERE origin = 'local' AND upload IN ('waiting', 'refused')",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                    (r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?),
                ))
            })?
            .collect()
        })
        .unwrap_or_default();
    for ((hash, size, media_type, width, height), (upload, refused, priority, created)) in rows {
        tx.execute(
            "INSERT OR IGNORE INTO attachments (hash, size, media_type, width, height, origin,
                 upload, refused, priority, stored, verified, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'local', ?6, ?7, ?8, ?2, 1, ?9)",
            params![
                hash, size, media_type, width, height, upload, refused, priority, created
            ],
        )?;
        let mut hasher = Sha256::new();
        let mut held = 0i64;
        let copied = damaged
            .prepare("SELECT offset, bytes FROM attachment_pieces WHERE hash = ?1 ORDER BY offset")
            .and_then(|mut stmt| {
                let mut pieces = stmt.query([&hash])?;
                while let Some(piece) = pieces.next()? {
                    let (offset, bytes): (i64, Vec<u8>) = (piece.get(0)?, piece.get(1)?);
                    if offset != held {
                        break;
                    }
                    hasher.update(&bytes);
                    held += bytes.len() as i64;
                    tx.execute(
                        "INSERT OR IGNORE INTO attachment_pieces (hash, offset, bytes) VALUES (?1, ?2, ?3)",
                        params![hash, offset, bytes],
                    )?;
                }
                Ok(())
            });
        let whole = copied.is_ok()
            && held == size
            && hash.as_slice() == <[u8; 32]>::from(hasher.finalize()).as_slice();
        if !whole {
            tracing::warn!(
                "attachment {} not yet uploaded could not be read back whole from the damaged \
                 replica: its record names it, but it is lost",
                hex::encode(&hash)
            );
            tx.execute("DELETE FROM attachments WHERE hash = ?1", [&hash])?;
        }
    }
    Ok(())
}

/// The SHA-256 and size of the source, read a piece at a time.
fn digest(source: &AttachSource) -> Result<(Hash, u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    each_chunk(source, |piece| {
        hasher.update(piece);
        size += piece.len() as u64;
        if size > MAX_ATTACHMENT_BYTES {
            return Err(Error::Attachment(format!(
                "附件不能超过 {} 兆字节 an attachment may be at most {} MiB",
                MAX_ATTACHMENT_BYTES >> 20,
                MAX_ATTACHMENT_BYTES >> 20
            )));
        }
        Ok(())
    })?;
    Ok((hasher.finalize().into(), size))
}

/// Calls `f` with the source's bytes in pieces of [`BLOB_CHUNK`] (the last one shorter).
fn each_chunk(source: &AttachSource, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    match source {
        AttachSource::Bytes(bytes) => bytes.chunks(BLOB_CHUNK).try_for_each(f),
        AttachSource::Path(path) => {
            let mut file = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
            let mut buf = vec![0u8; BLOB_CHUNK];
            loop {
                let mut filled = 0;
                while filled < buf.len() {
                    let n = file
                        .read(&mut buf[filled..])
                        .map_err(|e| unreadable(path, e))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok(());
                }
                f(&buf[..filled])?;
                if filled < buf.len() {
                    return Ok(());
                }
            }
        }
    }
}

/// The media type from the first bytes, else from the file name's extension.
fn sniff(source: &AttachSource, name: Option<&str>) -> Result<String> {
    let mut head = [0u8; 8];
    let n = match source {
        AttachSource::Bytes(b) => {
            let n = b.len().min(8);
            head[..n].copy_from_slice(&b[..n]);
            n
        }
        AttachSource::Path(path) => {
            let mut file = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
            file.read(&mut head).map_err(|e| unreadable(path, e))?
        }
    };
    let head = &head[..n];
    let by_bytes = if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"%PDF") {
        Some("application/pdf")
    } else {
        None
    };
    let ext = name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    let by_name = match ext.as_deref() {
        Some("jpg" | "jpeg") => Some("image/jpeg"),
        Some("png") => Some("image/png"),
        Some("pdf") => Some("application/pdf"),
        Some("txt") => Some("text/plain"),
        Some("heic") => Some("image/heic"),
        Some("mp4") => Some("video/mp4"),
        Some("m4a") => Some("audio/mp4"),
        _ => None,
    };
    Ok(by_bytes
        .or(by_name)
        .unwrap_or("application/octet-stream")
        .to_string())
}

fn parse(hash: &str) -> Result<Hash> {
    attachment::parse_hash(hash).ok_or_else(|| {
        Error::Attachment(format!(
            "附件摘要应为 64 位小写十六进制 an attachment's hash is 64 lowercase hex digits, not `{}`",
            hash.chars().take(70).collect::<String>()
        ))
    })
}

fn not_here(hash: &str) -> Error {
    Error::Attachment(format!(
        "此设备上没有此附件 attachment {hash} is not on this device: sync to fetch it"
    ))
}

fn mismatch(hash: &str) -> Error {
    Error::Attachment(format!(
        "下载的附件与其摘要不符，已丢弃 the downloaded bytes of attachment {hash} do not \
         match its hash and were discarded"
    ))
}

fn unreadable(path: &Path, e: std::io::Error) -> Error {
    Error::Attachment(format!(
        "无法读取该文件 cannot read the file {}: {e}",
        path.display()
    ))
}

#[cfg(test)]
mod tests;
