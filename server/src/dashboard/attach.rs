//! The office attaches a file to a record from the browser: `POST /records/{id}/attach`, a
//! multipart form with the session's CSRF token, a caption and the file.
//!
//! The file is read piece by piece into a spool file under the data directory while its SHA-256
//! is computed (never more than a piece in memory), refused as soon as it grows past the relay's
//! `max_attachment_bytes`, then handed to the blob store piece by piece, which checks the hash
//! again before the blob is complete. Only then is the record changed: an office write
//! (`write.rs`, accepted through `Relay::accept` like any) appends the entry with its media type,
//! size, image size, caption, time and author. Bytes whose write is then refused are named by no
//! record and go with the purge of unreferenced blobs.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{SecondsFormat, Utc};
use gridsync_core::doc;
use gridsync_core::protocol::{BLOB_CHUNK, Hash};
use gridsync_core::record::attachment::{self, FIELD_NAME};
use gridsync_core::record::{self, Kind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::{Staff, redirect_with_error};
use super::write::{self, Edit};
use super::{Fail, attachments, gallery, layout};
use crate::AppState;
use crate::accounts;
use crate::storage::StoredBlob;
use crate::storage::blobs::{Finished, Stand};

/// The folder under the data directory (or the system's temporary one) that spools uploads.
const SPOOL_DIR: &str = "uploads";
/// The longest caption kept, in characters.
const MAX_CAPTION: usize = 200;
/// The longest file name kept, in characters.
const MAX_NAME: usize = 120;

/// A spooled upload, removed from disk when dropped.
struct Spool {
    path: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the browser sent, the file spooled to disk.
struct Upload {
    spool: Spool,
    hash: Hash,
    size: u64,
    name: Option<String>,
    declared_type: Option<String>,
    caption: String,
}

pub async fn attach(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(id): Path<String>,
    multipart: Multipart,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let back = format!("/records/{}", layout::encode(&id));
    let rec = write::load(&state, &staff, &id).await?;
    let kind: Kind = rec.kind.ok_or_else(|| Fail::not_found(lang))?;
    if !gallery::carries(kind) || !accounts::can_write(staff.user.role, kind) {
        return Err(Fail::not_found(lang));
    }
    let upload = match receive(&state, &staff, multipart).await {
        Ok(u) => u,
        Err(fail) if fail.status == StatusCode::UNPROCESSABLE_ENTITY => {
            return Ok(redirect_with_error(&state, &back, &fail.message));
        }
        Err(fail) => return Err(fail),
    };
    let result = store_and_name(&state, &staff, &id, upload).await;
    match result {
        Ok(()) => Ok(Redirect::to(&format!("{back}?saved=1")).into_response()),
        Err(fail) if fail.status == StatusCode::UNPROCESSABLE_ENTITY => {
            Ok(redirect_with_error(&state, &back, &fail.message))
        }
        Err(fail) => Err(fail),
    }
}

fn spool_dir(state: &AppState) -> PathBuf {
    match &state.data_dir {
        Some(d) => d.join(SPOOL_DIR),
        None => std::env::temp_dir().join("gridsync-uploads"),
    }
}

/// Reads the form: the CSRF token must come before the file, so that no byte of a forged
/// upload is written anywhere.
async fn receive(state: &AppState, staff: &Staff, mut form: Multipart) -> Result<Upload, Fail> {
    let lang = staff.lang;
    let bad = |key: &'static str| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.t(key));
    let broken = |e: axum::extract::multipart::MultipartError| {
        tracing::info!("office upload cut: {e}");
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            bad("att.too_large")
        } else {
            bad("att.bad_upload")
        }
    };
    let max = attachments::max_bytes(state);
    let (mut csrf_ok, mut caption, mut file) = (false, String::new(), None);
    while let Some(mut field) = form.next_field().await.map_err(broken)? {
        match field.name().unwrap_or_default() {
            "csrf" => {
                let token = small_text(&mut field, 200).await.map_err(broken)?;
                staff.check_csrf(&token)?;
                csrf_ok = true;
            }
            "caption" => {
                caption = small_text(&mut field, MAX_CAPTION * 4)
                    .await
                    .map_err(broken)?;
            }
            "file" if csrf_ok => {
                let name = field
                    .file_name()
                    .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
                    .map(|n| n.chars().take(MAX_NAME).collect::<String>())
                    .filter(|n| !n.trim().is_empty());
                let declared_type = field.content_type().map(str::to_string);
                let dir = spool_dir(state);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| io_fail(lang, e))?;
                let spool = Spool {
                    path: dir.join(format!("{}.part", uuid::Uuid::now_v7())),
                };
                let mut out = tokio::fs::File::create(&spool.path)
                    .await
                    .map_err(|e| io_fail(lang, e))?;
                let (mut sha, mut size) = (Sha256::new(), 0u64);
                while let Some(piece) = field.chunk().await.map_err(broken)? {
                    size += piece.len() as u64;
                    if size > max {
                        return Err(bad("att.too_large"));
                    }
                    sha.update(&piece);
                    out.write_all(&piece).await.map_err(|e| io_fail(lang, e))?;
                }
                out.flush().await.map_err(|e| io_fail(lang, e))?;
                if size > 0 {
                    file = Some((spool, sha.finalize().into(), size, name, declared_type));
                }
            }
            "file" => return Err(forged(lang)),
            _ => {}
        }
    }
    if !csrf_ok {
        return Err(forged(lang));
    }
    let Some((spool, hash, size, name, declared_type)) = file else {
        return Err(bad("att.no_file"));
    };
    Ok(Upload {
        spool,
        hash,
        size,
        name,
        declared_type,
        caption: caption.trim().chars().take(MAX_CAPTION).collect(),
    })
}

/// The refusal of a form without this session's token (before its file).
fn forged(lang: super::Lang) -> Fail {
    Fail::new(StatusCode::FORBIDDEN, lang.t("err.csrf"))
}

/// A text field of the form, at most `max` bytes of it.
async fn small_text(
    field: &mut axum::extract::multipart::Field<'_>,
    max: usize,
) -> Result<String, axum::extract::multipart::MultipartError> {
    let mut bytes = Vec::new();
    while let Some(piece) = field.chunk().await? {
        if bytes.len() < max {
            bytes.extend_from_slice(&piece[..piece.len().min(max - bytes.len())]);
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn io_fail(lang: super::Lang, e: std::io::Error) -> Fail {
    tracing::error!("office upload spool: {e}");
    Fail::new(StatusCode::INTERNAL_SERVER_ERROR, lang.t("err.storage"))
}

/// What the bytes are: a JPEG or PNG by its first bytes (with its size in pixels), otherwise
/// the type the browser named when it is a well-formed one.
async fn media_type(path: &FsPath, declared: Option<&str>) -> (String, Option<(u32, u32)>) {
    let path = path.to_path_buf();
    let sniffed = tokio::task::spawn_blocking(move || {
        let reader = image::ImageReader::open(&path)
            .ok()?
            .with_guessed_format()
            .ok()?;
        let format = match reader.format()? {
            image::ImageFormat::Jpeg => "image/jpeg",
            image::ImageFormat::Png => "image/png",
            _ => return None,
        };
        // The header only: no pixel is decoded.
        Some((format, reader.into_dimensions().ok()))
    })
    .await
    .ok()
    .flatten();
    match sniffed {
        Some((format, dims)) => (format.to_string(), dims),
        None => {
            let declared = declared
                .map(|d| d.split(';').next().unwrap_or(d).trim().to_ascii_lowercase())
                .filter(|d| {
                    // Anything that would pass for a photo without being one is just bytes.
                    !d.starts_with("image/jpeg")
                        && !d.starts_with("image/png")
                        && attachment::is_media_type(d)
                });
            (
                declared.unwrap_or_else(|| "application/octet-stream".into()),
                None,
            )
        }
    }
}

/// Hands the spooled bytes to the blob store (from where it stands: the same bytes uploaded
/// before, by a phone or the office, are not stored twice), then names them on the record.
async fn store_and_name(
    state: &AppState,
    staff: &Staff,
    id: &str,
    upload: Upload,
) -> Result<(), Fail> {
    let lang = staff.lang;
    let store = |e| Fail::storage(lang, e);
    let hash = upload.hash;
    let mut at = match state.blobs.stand(&hash).await.map_err(store)? {
        Stand::Complete(_) => None,
        Stand::Partial(n) if n <= upload.size => Some(n),
        Stand::Partial(_) | Stand::Missing => Some(0),
    };
    if let Some(from) = at.take() {
        let mut file = tokio::fs::File::open(&upload.spool.path)
            .await
            .map_err(|e| io_fail(lang, e))?;
        if from > 0 {
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(from))
                .await
                .map_err(|e| io_fail(lang, e))?;
        }
        let mut offset = from;
        let mut piece = vec![0u8; BLOB_CHUNK];
        while offset < upload.size {
            let n = file.read(&mut piece).await.map_err(|e| io_fail(lang, e))?;
            if n == 0 {
                break;
            }
            match state
                .blobs
                .append(&hash, offset, &piece[..n])
                .await
                .map_err(store)?
            {
                Stand::Partial(len) if len == offset + n as u64 => offset = len,
                Stand::Complete(_) => break,
                // Someone else is uploading the same bytes at this moment: theirs will do.
                _ => break,
            }
        }
        match state.blobs.finish(&hash).await.map_err(store)? {
            Finished::Complete(size) => state.relay.metrics.attachment_stored(size),
            Finished::Mismatch | Finished::Missing => {
                return Err(Fail::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    lang.t("att.bad_upload"),
                ));
            }
        }
    }
    let (media_type, dims) = media_type(&upload.spool.path, upload.declared_type.as_deref()).await;
    // The relay's account of the bytes it holds (quotas, stats, the purge), as for a phone's
    // upload; the first upload's stays.
    let office = write::office_identity(state, staff).await?;
    state
        .relay
        .attachments()
        .blob_stored(StoredBlob {
            hash,
            size: upload.size,
            media_type: media_type.clone(),
            device_id: office.device_id.clone(),
            user_id: office.user_id.clone(),
            stored_at: crate::storage::utc_string(Utc::now()),
        })
        .await
        .map_err(store)?;
    let first = write::load(state, staff, id).await?;
    let ctx = write::context(state, staff, &doc::read_root(&first.doc)).await?;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut entry = json!({
        "hash": attachment::hash_text(&hash),
        "media_type": media_type,
        "size": upload.size,
        "caption": upload.caption,
        "at": now,
        "by": staff.user.username,
    });
    if let Some((w, h)) = dims {
        entry["width"] = json!(w);
        entry["height"] = json!(h);
    }
    if let Some(name) = &upload.name {
        entry["name"] = json!(name);
    }
    write::commit(state, staff, id, |rec| {
        let kind: Kind = rec.kind.ok_or_else(|| Fail::not_found(lang))?;
        let before = doc::read_root(&rec.doc);
        let mut fields = before.clone();
        let text = attachment::hash_text(&hash);
        match fields
            .entry(FIELD_NAME)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            // The record names these bytes already: nothing to add.
            Value::Array(items)
                if items
                    .iter()
                    .any(|i| i.get("hash").and_then(Value::as_str) == Some(text.as_str())) => {}
            Value::Array(items) => items.push(entry),
            other => *other = Value::Array(vec![entry]),
        }
        record::validate(kind, &mut fields, Some(&before), &ctx)
            .map_err(|e| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, lang.validation(&e)))?;
        Ok(Edit::Fields {
            fields,
            force: Vec::new(),
        })
    })
    .await?;
    Ok(())
}
