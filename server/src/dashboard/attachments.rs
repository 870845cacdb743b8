//! `GET /attachments/{hash}` (the bytes, streamed from the blob store) and
//! `GET /attachments/{hash}/thumb` (a JPEG thumbnail, see `thumbs.rs`) for signed-in staff.
//!
//! An attachment is served like the records that name it: only when a record in the staff
//! member's grids, of a kind their role may read, names the hash; otherwise, and while its bytes
//! have not arrived, the answer is 404. Its bytes are named by their hash and never change, so a
//! browser may keep them (privately: they are residents' data).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gridsync_core::protocol::{BLOB_CHUNK, Hash};
use gridsync_core::record::Attachment;
use gridsync_core::record::attachment::{self, FIELD_NAME};

use super::auth::Staff;
use super::i18n::Lang;
use super::{Fail, gallery, thumbs};
use crate::AppState;
use crate::accounts;

/// Browsers may keep an attachment for a year: its address names its bytes.
const CACHE: &str = "private, max-age=31536000, immutable";

/// Media types a browser shows in the page's place. Anything else (HTML, SVG, scripts, office
/// files) is only ever downloaded, so that bytes a device uploaded never run as the dashboard.
const SHOWN_INLINE: [&str; 6] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "application/pdf",
];

/// The largest attachment the relay takes (its `max_attachment_bytes`).
pub fn max_bytes(state: &AppState) -> u64 {
    state.limits.max_attachment_bytes
}

/// Whether the relay holds every byte of an attachment (checked against its hash).
pub async fn arrived(state: &AppState, lang: Lang, hash: &str) -> Result<bool, Fail> {
    let Some(h) = attachment::parse_hash(hash) else {
        return Ok(false);
    };
    Ok(complete_size(state, lang, &h).await?.is_some())
}

async fn complete_size(state: &AppState, lang: Lang, hash: &Hash) -> Result<Option<u64>, Fail> {
    use crate::storage::blobs::Stand;
    match state.blobs.stand(hash).await {
        Ok(Stand::Complete(size)) => Ok(Some(size)),
        Ok(_) => Ok(None),
        Err(e) => Err(Fail::storage(lang, e)),
    }
}

/// How many attachments each of these records names (for exports), in one look at the relay's
/// table of them; records naming none are not in the map.
pub async fn counts(
    state: &AppState,
    lang: Lang,
    doc_ids: &[String],
) -> Result<std::collections::HashMap<String, usize>, Fail> {
    if doc_ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    state
        .relay
        .attachments()
        .attachment_counts_of(doc_ids)
        .await
        .map_err(|e| Fail::storage(lang, e))
}

/// The records in the staff member's grids, of kinds their role may read, that name `hash`
/// (the relay's table of what each record names).
async fn holders(state: &AppState, staff: &Staff, hash: &Hash) -> Result<Vec<String>, Fail> {
    let kinds = crate::storage::KindFilter::readable_by(staff.user.role);
    let uses = state
        .relay
        .attachments()
        .attachment_uses(hash)
        .await
        .map_err(|e| Fail::storage(staff.lang, e))?;
    Ok(uses
        .into_iter()
        .filter(|u| u.readable_by(&staff.grids, &kinds))
        .map(|u| u.doc_id)
        .collect())
}

/// The entry of a record that names `hash`, among the records in the staff member's grids of a
/// kind their role may read; `None` when there is none (the hash is then "not found").
pub async fn named(
    state: &AppState,
    staff: &Staff,
    hash: &Hash,
) -> Result<Option<Attachment>, Fail> {
    let lang = staff.lang;
    let docs = holders(state, staff, hash).await?;
    let text = attachment::hash_text(hash);
    for id in docs {
        let Some(rec) = state
            .relay
            .document(&id)
            .await
            .map_err(|e| Fail::storage(lang, e))?
        else {
            continue;
        };
        // Checked against the record itself (grid, kind, entry), whatever answered.
        let readable = staff.grids.contains(&rec.grid_id)
            && rec
                .kind
                .is_some_and(|k| accounts::can_read(staff.user.role, k));
        if !readable {
            continue;
        }
        let fields = gridsync_core::doc::read_fields(&rec.doc, [FIELD_NAME]);
        let found = fields
            .get(FIELD_NAME)
            .map(gallery::entries)
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.hash == text);
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The attachment a request names, if this staff member may have it and it has arrived.
async fn find(
    state: &AppState,
    staff: &Staff,
    hash: &str,
) -> Result<(Hash, Attachment, u64), Fail> {
    let lang = staff.lang;
    let h = attachment::parse_hash(hash).ok_or_else(|| Fail::not_found(lang))?;
    let entry = named(state, staff, &h)
        .await?
        .ok_or_else(|| Fail::not_found(lang))?;
    let size = complete_size(state, lang, &h)
        .await?
        .ok_or_else(|| Fail::not_found(lang))?;
    Ok((h, entry, size))
}

pub async fn full(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(hash): Path<String>,
) -> Result<Response, Fail> {
    let (h, entry, size) = find(&state, &staff, &hash).await?;
    let blobs = state.blobs.clone();
    let metrics = state.relay.metrics.clone();
    // One piece at a time from the store: memory stays at a piece whatever the file's size.
    let pieces = futures_util::stream::unfold(Some(0u64), move |at| {
        let (blobs, metrics) = (blobs.clone(), metrics.clone());
        async move {
            let offset = at?;
            if offset >= size {
                return None;
            }
            match blobs.read(&h, offset, BLOB_CHUNK).await {
                Ok(Some(data)) if !data.is_empty() => {
                    metrics.attachment_served(data.len());
                    let next = offset + data.len() as u64;
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(data)), Some(next)))
                }
                Ok(_) => None,
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let inline = SHOWN_INLINE.contains(&entry.media_type.as_str());
    // Shown or downloaded, a file keeps its type; one no header can carry is just bytes.
    let content_type = if inline || header_safe(&entry.media_type) {
        entry.media_type.clone()
    } else {
        "application/octet-stream".to_string()
    };
    let mut res = Response::new(Body::from_stream(pieces));
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        h.insert(header::ETAG, v);
    }
    if !inline || !entry.media_type.starts_with("image/") {
        let name = entry
            .name
            .clone()
            .unwrap_or_else(|| hash.get(..12).unwrap_or("file").to_string());
        if let Ok(v) = HeaderValue::from_str(&disposition(
            if inline { "inline" } else { "attachment" },
            &name,
        )) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(res)
}

/// A media type safe to put in a header as it is.
fn header_safe(media_type: &str) -> bool {
    media_type.len() <= 100 && media_type.bytes().all(|b| b.is_ascii_graphic())
}

/// `attachment; filename="photo.jpg"; filename*=UTF-8''%E7%85%A7.jpg`: an ASCII name for old
/// browsers, the real one (Chinese) for the others.
fn disposition(how: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{how}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        super::layout::encode(name)
    )
}

pub async fn thumb(
    State(state): State<Arc<AppState>>,
    staff: Staff,
    Path(hash): Path<String>,
) -> Result<Response, Fail> {
    let lang = staff.lang;
    let (h, entry, size) = find(&state, &staff, &hash).await?;
    let unsupported = || Fail::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, lang.t("err.not_found"));
    if !thumbs::makes(&entry.media_type) {
        return Err(unsupported());
    }
    let dir = state.data_dir.clone();
    let cached = match &dir {
        Some(d) => thumbs::cached(d, &hash).await,
        None => None,
    };
    let jpeg = match cached {
        Some(jpeg) => jpeg,
        None => {
            if size > max_bytes(&state) {
                return Err(unsupported());
            }
            let _permit = state
                .dashboard
                .thumbs
                .acquire()
                .await
                .map_err(|_| unsupported())?;
            let bytes = read_all(&state, lang, &h, size).await?;
            let made = tokio::task::spawn_blocking(move || thumbs::make(&bytes))
                .await
                .map_err(|_| unsupported())?;
            let jpeg = made.map_err(|e| {
                tracing::info!("no thumbnail of {hash}: {e}");
                unsupported()
            })?;
            if let Some(d) = &dir {
                thumbs::keep(d, &hash, &jpeg).await;
            }
            jpeg
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static(CACHE)),
        ],
        jpeg,
    )
        .into_response())
}

/// A whole attachment in memory, for decoding (its size was checked against the relay's limit).
async fn read_all(state: &AppState, lang: Lang, hash: &Hash, size: u64) -> Result<Vec<u8>, Fail> {
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while (out.len() as u64) < size {
        let piece = state
            .blobs
            .read(hash, out.len() as u64, BLOB_CHUNK)
            .await
            .map_err(|e| Fail::storage(lang, e))?;
        match piece {
            Some(p) if !p.is_empty() => out.extend_from_slice(&p),
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_file_name_is_given_in_ascii_and_in_full() {
        assert_eq!(
            disposition("attachment", "申请表.pdf"),
            "attachment; filename=\"___.pdf\"; filename*=UTF-8''%E7%94%B3%E8%AF%B7%E8%A1%A8.pdf"
        );
    }
}
