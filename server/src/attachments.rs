//! The relay's side of attachments (docs/protocol.md §13): takes a device's `BlobPut` pieces into
//! the [`BlobStore`](crate::storage::BlobStore) and answers `BlobGet` from it, each only for an
//! attachment a record of the device's scope names; and the purge of what no record names.
//!
//! Nothing the device says about an attachment is taken on trust: its size is the one the
//! records name, pieces are taken only at the end of the durable prefix, and the bytes become
//! servable only once their SHA-256 matched.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use chrono::{SecondsFormat, Utc};
use gridsync_core::protocol::{
    BLOB_CHUNK, BlobData, BlobGet, BlobPut, BlobReply, BlobState, BlobStatus, Hash,
};
use gridsync_core::record::Kind;
use gridsync_core::record::attachment::hash_text;

use crate::AppState;
use crate::accounts::{self, Identity};
use crate::storage::blobs::{Finished, Stand};
use crate::storage::{AttachmentUse, Attachments, BlobStore, StorageError, StoredBlob};

/// Attachments a session remembers it may send or fetch, at most; then it forgets them all and
/// asks the store again.
const GRANTS: usize = 1024;

/// What one session was allowed, so a long upload does not look the records up for every piece.
/// Only grants are kept: a refusal may be lifted by a record the device sends a moment later.
#[derive(Default)]
pub struct Grants {
    /// Hash → the size and media type a record the device may write names it with.
    put: HashMap<Hash, (u64, String)>,
    /// Hashes a record the device may read names.
    get: HashMap<Hash, ()>,
}

impl Grants {
    fn make_room(&mut self) {
        if self.put.len() + self.get.len() >= GRANTS {
            self.put.clear();
            self.get.clear();
        }
    }
}

fn kind_of(u: &AttachmentUse) -> Option<Kind> {
    u.kind.parse().ok()
}

fn refused(reason: String) -> BlobState {
    BlobState::Refused(reason)
}

/// Answers one `BlobPut`.
pub async fn put(
    state: &AppState,
    identity: &Identity,
    grants: &mut Grants,
    put: BlobPut,
) -> Result<BlobStatus, StorageError> {
    let hash = put.hash;
    let state_of = put_state(state, identity, grants, put).await?;
    Ok(BlobStatus {
        hash,
        state: state_of,
    })
}

async fn put_state(
    state: &AppState,
    identity: &Identity,
    grants: &mut Grants,
    put: BlobPut,
) -> Result<BlobState, StorageError> {
    let limits = &state.limits;
    let storage = state.relay.attachments();
    let blobs = state.blobs.as_ref();
    let hash = put.hash;
    if put.size > limits.max_attachment_bytes {
        return Ok(refused(format!(
            "附件过大（{} 字节，上限 {} 字节），未上传；记录不受影响 the attachment is too large \
             ({} bytes; this relay takes at most {}): it was not uploaded, its record is not \
             affected",
            put.size, limits.max_attachment_bytes, put.size, limits.max_attachment_bytes
        )));
    }
    let media_type = match grants.put.get(&hash) {
        Some((size, media_type)) if *size == put.size => media_type.clone(),
        _ => {
            let uses = storage.attachment_uses(&hash).await?;
            let Some(named) = uses.iter().find(|u| {
                u.size == put.size
                    && identity.grids.contains(&u.grid_id)
                    && kind_of(u).is_some_and(|k| accounts::can_write(identity.role, k))
            }) else {
                return Ok(refused(format!(
                    "没有你可写的记录以此大小引用该附件 {}，未上传 no record you may write names \
                     attachment {} with {} bytes: it was not uploaded",
                    hash_text(&hash),
                    hash_text(&hash),
                    put.size
                )));
            };
            grants.make_room();
            grants
                .put
                .insert(hash, (put.size, named.media_type.clone()));
            named.media_type.clone()
        }
    };
    let stand = blobs.stand(&hash).await?;
    if let Stand::Complete(size) = stand {
        // Also after a crash between the rename and the database's row.
        return complete(state, identity, &hash, size, &media_type).await;
    }
    let used = storage.device_blob_bytes(&identity.device_id).await?;
    if used.saturating_add(put.size) > limits.attachment_quota_bytes {
        return Ok(refused(format!(
            "此设备的附件配额已用完（{} 字节），未上传 this device's attachment quota ({} bytes) \
             is used up: the attachment was not uploaded",
            limits.attachment_quota_bytes, limits.attachment_quota_bytes
        )));
    }
    let held = match stand {
        Stand::Partial(n) => n,
        _ => 0,
    };
    let data = put.data.as_slice();
    let end = put.offset.saturating_add(data.len() as u64);
    if data.len() > BLOB_CHUNK || end > put.size {
        return Ok(refused(format!(
            "附件分块无效，未上传 a piece of attachment {} ends beyond its size or is larger \
             than {BLOB_CHUNK} bytes: it was not taken",
            hash_text(&hash)
        )));
    }
    let now = if data.is_empty() || put.offset != held {
        stand
    } else {
        blobs.append(&hash, put.offset, data).await?
    };
    match now {
        Stand::Complete(size) => complete(state, identity, &hash, size, &media_type).await,
        Stand::Partial(n) if n == put.size => finish(state, identity, &hash, &media_type).await,
        Stand::Partial(n) => Ok(BlobState::Have(n)),
        Stand::Missing if put.size == 0 => finish(state, identity, &hash, &media_type).await,
        Stand::Missing => Ok(BlobState::Have(0)),
    }
}

/// The prefix reached the size: check the bytes and put them in place.
async fn finish(
    state: &AppState,
    identity: &Identity,
    hash: &Hash,
    media_type: &str,
) -> Result<BlobState, StorageError> {
    match state.blobs.finish(hash).await? {
        Finished::Complete(size) => complete(state, identity, hash, size, media_type).await,
        Finished::Missing => Ok(BlobState::Have(0)),
        Finished::Mismatch => {
            state.relay.metrics.attachment_mismatch();
            Ok(refused(format!(
                "附件内容与摘要不符，已丢弃 the bytes of attachment {} do not match its hash: \
                 they were discarded",
                hash_text(hash)
            )))
        }
    }
}

async fn complete(
    state: &AppState,
    identity: &Identity,
    hash: &Hash,
    size: u64,
    media_type: &str,
) -> Result<BlobState, StorageError> {
    let storage = state.relay.attachments();
    if storage.stored_blob(hash).await?.is_none() {
        storage
            .blob_stored(StoredBlob {
                hash: *hash,
                size,
                media_type: media_type.to_string(),
                device_id: identity.device_id.clone(),
                user_id: identity.user_id.clone(),
                stored_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .await?;
        state.relay.metrics.attachment_stored(size);
    }
    Ok(BlobState::Complete)
}

/// Answers one `BlobGet`.
pub async fn get(
    state: &AppState,
    identity: &Identity,
    grants: &mut Grants,
    get: BlobGet,
) -> Result<BlobData, StorageError> {
    let hash = get.hash;
    let reply = get_reply(state, identity, grants, get).await?;
    Ok(BlobData { hash, reply })
}

async fn get_reply(
    state: &AppState,
    identity: &Identity,
    grants: &mut Grants,
    get: BlobGet,
) -> Result<BlobReply, StorageError> {
    let hash = get.hash;
    if !grants.get.contains_key(&hash) {
        let uses = state.relay.attachments().attachment_uses(&hash).await?;
        let readable = uses.iter().any(|u| {
            identity.grids.contains(&u.grid_id)
                && kind_of(u).is_some_and(|k| accounts::can_read(identity.role, k))
        });
        if !readable {
            return Ok(BlobReply::Refused(format!(
                "没有你可读的记录引用该附件 {} no record you may read names attachment {}",
                hash_text(&hash),
                hash_text(&hash)
            )));
        }
        grants.make_room();
        grants.get.insert(hash, ());
    }
    let Stand::Complete(size) = state.blobs.stand(&hash).await? else {
        return Ok(BlobReply::NotYet);
    };
    // Removed between the two looks (a purge): not yet, as far as the device can tell.
    let Some(data) = state.blobs.read(&hash, get.offset, BLOB_CHUNK).await? else {
        return Ok(BlobReply::NotYet);
    };
    state.relay.metrics.attachment_served(data.len());
    Ok(BlobReply::Data {
        offset: get.offset.min(size),
        size,
        data: serde_bytes::ByteBuf::from(data),
    })
}

/// What a purge removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    /// Complete attachments no record named for longer than the grace period, with their size.
    pub unnamed: Vec<(Hash, u64)>,
    /// Uploads nobody continued for longer than the grace period, with what they held.
    pub abandoned: Vec<(Hash, u64)>,
}

/// What a purge found: the attachments unnamed since `cutoff` or before, the uploads untouched
/// since `stale` or before.
#[derive(Debug)]
pub(crate) struct Found {
    cutoff: String,
    purged: Purged,
}

/// Removes the attachments no record named for longer than `grace` and the uploads untouched
/// for as long; `dry_run` only says what it would remove (it still notes the attachments newly
/// found unnamed, from when the grace period counts). An attachment a record names by the time
/// it is removed is kept ([`crate::storage::Attachments::purge_blob`]), even if it was unnamed when the purge began.
pub async fn purge(
    storage: &dyn Attachments,
    blobs: &dyn BlobStore,
    grace: Duration,
    dry_run: bool,
) -> Result<Purged, StorageError> {
    let found = find(storage, blobs, grace).await?;
    if dry_run {
        return Ok(found.purged);
    }
    remove(storage, blobs, found).await
}

pub(crate) async fn find(
    storage: &dyn Attachments,
    blobs: &dyn BlobStore,
    grace: Duration,
) -> Result<Found, StorageError> {
    let now = Utc::now();
    let before = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|grace| now.checked_sub_signed(grace))
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    // The marks are written in this form, so that the database compares them as text.
    let cutoff = before.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut purged = Purged::default();
    let orphans = storage
        .orphan_blobs(&now.to_rfc3339_opts(SecondsFormat::Millis, true))
        .await?;
    for orphan in orphans {
        if orphan.orphaned_at <= cutoff {
            purged.unnamed.push((orphan.hash, orphan.size));
        }
    }
    let stale = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for partial in blobs.partials().await? {
        // A partial file beside a complete one is left alone: removing it removes both.
        if partial.touched <= stale
            && !matches!(blobs.stand(&partial.hash).await?, Stand::Complete(_))
        {
            purged.abandoned.push((partial.hash, partial.len));
        }
    }
    Ok(Found { cutoff, purged })
}

pub(crate) async fn remove(
    storage: &dyn Attachments,
    blobs: &dyn BlobStore,
    found: Found,
) -> Result<Purged, StorageError> {
    let mut out = Purged::default();
    for (hash, size) in found.purged.unnamed {
        // Checked again, and removed, under the lock a commit naming it takes.
        if storage
            .purge_blob(&hash, &found.cutoff, blobs.removal(&hash))
            .await?
        {
            out.unnamed.push((hash, size));
        }
    }
    for (hash, len) in found.purged.abandoned {
        blobs.remove(&hash).await?;
        out.abandoned.push((hash, len));
    }
    Ok(out)
}

/// How often the relay purges by itself.
pub const PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use gridsync_core::record::attachment::AttachmentRef;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::storage::{Attachments, Commit, DocUpdate, FsBlobStore, SqliteStorage};

    /// Bytes held in whole, as after an upload from device `dev`.
    pub(crate) async fn stored(
        storage: &dyn Attachments,
        blobs: &dyn BlobStore,
        bytes: &[u8],
    ) -> Hash {
        let hash: Hash = Sha256::digest(bytes).into();
        for (i, piece) in bytes.chunks(BLOB_CHUNK).enumerate() {
            blobs
                .append(&hash, (i * BLOB_CHUNK) as u64, piece)
                .await
                .unwrap();
        }
        assert_eq!(
            blobs.finish(&hash).await.unwrap(),
            Finished::Complete(bytes.len() as u64)
        );
        storage
            .blob_stored(StoredBlob {
                hash,
                size: bytes.len() as u64,
                media_type: "image/jpeg".into(),
                device_id: "dev".into(),
                user_id: "u".into(),
                stored_at: "2026-01-01T00:00:00.000Z".into(),
            })
            .await
            .unwrap();
        hash
    }

    /// Record `doc` of grid g1 names these attachments (and nothing else).
    pub(crate) async fn name(
        storage: &dyn crate::storage::Commits,
        doc: &str,
        named: &[(Hash, u64)],
    ) {
        let attachments = named
            .iter()
            .map(|&(hash, size)| AttachmentRef {
                hash,
                size,
                media_type: "image/jpeg".into(),
            })
            .collect();
        let doc = DocUpdate {
            doc_id: doc.into(),
            grid_id: "g1".into(),
            kind: Some(Kind::Visit),
            heads: vec![[1; 32]],
            index: None,
            snapshot: None,
            facts: None,
            parallel: false,
            attachments: Some(attachments),
        };
        storage
            .commit(Commit {
                changes: Vec::new(),
                docs: vec![doc],
                moves: Vec::new(),
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn test_a_record_naming_an_attachment_while_it_is_purged_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(dir.path()).unwrap();
        let blobs = FsBlobStore::new(dir.path());
        let photo = vec![7u8; 100_000];
        let hash = stored(&storage, blobs.as_ref(), &photo).await;
        // Named once, then no more: unnamed since long ago.
        name(&storage, "v1", &[(hash, photo.len() as u64)]).await;
        name(&storage, "v1", &[]).await;
        storage
            .orphan_blobs("2020-01-01T00:00:00.000Z")
            .await
            .unwrap();

        let found = find(&storage, blobs.as_ref(), Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(found.purged.unnamed, [(hash, photo.len() as u64)]);
        // A device's record naming the same photo is accepted between the look and the removal.
        name(&storage, "v2", &[(hash, photo.len() as u64)]).await;
        let purged = remove(&storage, blobs.as_ref(), found).await.unwrap();

        assert!(purged.unnamed.is_empty(), "{purged:?}");
        assert_eq!(blobs.stand(&hash).await.unwrap(), Stand::Complete(100_000));
        assert_eq!(
            blobs.read(&hash, 0, 10).await.unwrap().as_deref(),
            Some(&photo[..10])
        );
        let docs = storage.doc_attachments("v2").await.unwrap();
        assert!(docs[0].stored, "the record's photo is still there");
    }
}
