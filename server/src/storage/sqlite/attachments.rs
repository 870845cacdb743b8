//! The attachments' metadata in SQLite (migration 008).

use gridsync_core::protocol::Hash;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::to_hash;
use crate::storage::{
    AttachmentCount, AttachmentUse, DocAttachment, DocUpdate, Orphan, Result, StoredBlob, kind_text,
};

/// Replaces what a document names, in the commit's transaction.
pub(super) fn commit_refs(tx: &Transaction<'_>, d: &DocUpdate) -> Result<()> {
    let Some(refs) = &d.attachments else {
        return Ok(());
    };
    tx.prepare_cached("DELETE FROM attachment_refs WHERE doc_id = ?1")?
        .execute([&d.doc_id])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO attachment_refs (hash, doc_id, grid_id, kind, size, media_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    // Named again: the grace period starts anew the next time it is found unnamed.
    let mut named = tx.prepare_cached(
        "UPDATE attachment_blobs SET orphaned_at = NULL WHERE hash = ?1 AND orphaned_at IS NOT NULL",
    )?;
    for r in refs {
        named.execute([r.hash.as_slice()])?;
        insert.execute(params![
            r.hash.as_slice(),
            d.doc_id,
            d.grid_id,
            kind_text(d.kind),
            r.size as i64,
            r.media_type
        ])?;
    }
    Ok(())
}

pub(super) fn uses(c: &Connection, hash: &Hash) -> Result<Vec<AttachmentUse>> {
    c.prepare_cached(
        "SELECT doc_id, grid_id, kind, size, media_type FROM attachment_refs WHERE hash = ?1
         ORDER BY doc_id",
    )?
    .query_map([hash.as_slice()], |r| {
        Ok(AttachmentUse {
            doc_id: r.get(0)?,
            grid_id: r.get(1)?,
            kind: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
            media_type: r.get(4)?,
        })
    })?
    .collect::<Result<_, _>>()
    .map_err(Into::into)
}

pub(super) fn of_doc(c: &Connection, doc_id: &str) -> Result<Vec<DocAttachment>> {
    let rows = c
        .prepare_cached(
            "SELECT r.hash, r.size, r.media_type, b.hash IS NOT NULL
             FROM attachment_refs r LEFT JOIN attachment_blobs b ON b.hash = r.hash
             WHERE r.doc_id = ?1 ORDER BY r.hash",
        )?
        .query_map([doc_id], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(hash, size, media_type, stored)| {
            Ok(DocAttachment {
                hash: to_hash(hash)?,
                size: size as u64,
                media_type,
                stored,
            })
        })
        .collect()
}

/// `ids`: the documents as a JSON list.
pub(super) fn counts_of(
    c: &Connection,
    ids: &str,
) -> Result<std::collections::HashMap<String, usize>> {
    c.prepare_cached(
        "SELECT doc_id, COUNT(*) FROM attachment_refs
         WHERE doc_id IN (SELECT value FROM json_each(?1)) GROUP BY doc_id",
    )?
    .query_map([ids], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
    })?
    .collect::<Result<_, _>>()
    .map_err(Into::into)
}

pub(super) fn insert_blob(c: &Connection, b: &StoredBlob) -> Result<()> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO attachment_blobs
            (hash, size, media_type, device_id, user_id, stored_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        b.hash.as_slice(),
        b.size as i64,
        b.media_type,
        b.device_id,
        b.user_id,
        b.stored_at
    ])?;
    Ok(())
}

pub(super) fn blob(c: &Connection, hash: &Hash) -> Result<Option<StoredBlob>> {
    Ok(c.prepare_cached(
        "SELECT size, media_type, device_id, user_id, stored_at FROM attachment_blobs
         WHERE hash = ?1",
    )?
    .query_row([hash.as_slice()], |r| {
        Ok(StoredBlob {
            hash: *hash,
            size: r.get::<_, i64>(0)? as u64,
            media_type: r.get(1)?,
            device_id: r.get(2)?,
            user_id: r.get(3)?,
            stored_at: r.get(4)?,
        })
    })
    .optional()?)
}

pub(super) fn device_bytes(c: &Connection, device_id: &str) -> Result<u64> {
    let n: i64 = c
        .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM attachment_blobs WHERE device_id = ?1")?
        .query_row([device_id], |r| r.get(0))?;
    Ok(n as u64)
}

pub(super) fn counts(c: &Connection) -> Result<Vec<AttachmentCount>> {
    c.prepare_cached(
        "SELECT r.grid_id, COUNT(*), COUNT(b.hash), COALESCE(SUM(b.size), 0)
         FROM (SELECT DISTINCT grid_id, hash FROM attachment_refs) r
         LEFT JOIN attachment_blobs b ON b.hash = r.hash
         GROUP BY r.grid_id ORDER BY r.grid_id",
    )?
    .query_map([], |r| {
        Ok(AttachmentCount {
            grid_id: r.get(0)?,
            named: r.get::<_, i64>(1)? as u64,
            stored: r.get::<_, i64>(2)? as u64,
            stored_bytes: r.get::<_, i64>(3)? as u64,
        })
    })?
    .collect::<Result<_, _>>()
    .map_err(Into::into)
}

pub(super) fn orphans(tx: &Transaction<'_>, now: &str) -> Result<Vec<Orphan>> {
    const NAMED: &str =
        "EXISTS (SELECT 1 FROM attachment_refs r WHERE r.hash = attachment_blobs.hash)";
    tx.execute(
        &format!("UPDATE attachment_blobs SET orphaned_at = NULL WHERE orphaned_at IS NOT NULL AND {NAMED}"),
        [],
    )?;
    tx.execute(
        &format!(
            "UPDATE attachment_blobs SET orphaned_at = ?1 WHERE orphaned_at IS NULL AND NOT {NAMED}"
        ),
        [now],
    )?;
    let rows = tx
        .prepare("SELECT hash, size, orphaned_at FROM attachment_blobs WHERE orphaned_at IS NOT NULL ORDER BY hash")?
        .query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(hash, size, orphaned_at)| {
            Ok(Orphan {
                hash: to_hash(hash)?,
                size: size as u64,
                orphaned_at,
            })
        })
        .collect()
}

/// Whether a stored attachment is unnamed and was marked so at or before `unnamed_by`.
pub(super) fn purgeable(c: &Connection, hash: &Hash, unnamed_by: &str) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM attachment_blobs b WHERE b.hash = ?1 AND b.orphaned_at <= ?2
            AND NOT EXISTS (SELECT 1 FROM attachment_refs r WHERE r.hash = b.hash)",
    )?
    .query_row(params![hash.as_slice(), unnamed_by], |_| Ok(()))
    .optional()?
    .is_some())
}

pub(super) fn forget(c: &Connection, hash: &Hash) -> Result<()> {
    c.prepare_cached("DELETE FROM attachment_blobs WHERE hash = ?1")?
        .execute([hash.as_slice()])?;
    Ok(())
}
