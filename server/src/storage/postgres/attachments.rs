//! The attachments' metadata in PostgreSQL (as SQLite's migration 008 keeps it).

use std::collections::HashMap;

use deadpool_postgres::{Client, Transaction};
use gridsync_core::protocol::Hash;

use super::to_hash;
use crate::storage::{
    AttachmentCount, AttachmentUse, DocAttachment, DocUpdate, Orphan, Result, StoredBlob, kind_text,
};

/// Replaces what a document names, in the commit's transaction.
pub(super) async fn commit_refs(tx: &Transaction<'_>, d: &DocUpdate) -> Result<()> {
    let Some(refs) = &d.attachments else {
        return Ok(());
    };
    tx.execute(
        &tx.prepare_cached("DELETE FROM attachment_refs WHERE doc_id = $1")
            .await?,
        &[&d.doc_id],
    )
    .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO attachment_refs (hash, doc_id, grid_id, kind, size, media_type)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (hash, doc_id) DO UPDATE SET grid_id = excluded.grid_id,
                kind = excluded.kind, size = excluded.size, media_type = excluded.media_type",
        )
        .await?;
    // Named again: the grace period starts anew the next time it is found unnamed.
    let named = tx
        .prepare_cached(
            "UPDATE attachment_blobs SET orphaned_at = NULL
             WHERE hash = $1 AND orphaned_at IS NOT NULL",
        )
        .await?;
    for r in refs {
        tx.execute(&named, &[&r.hash.as_slice()]).await?;
        tx.execute(
            &insert,
            &[
                &r.hash.as_slice(),
                &d.doc_id,
                &d.grid_id,
                &kind_text(d.kind),
                &(r.size as i64),
                &r.media_type,
            ],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn uses(c: &Client, hash: &Hash) -> Result<Vec<AttachmentUse>> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT doc_id, grid_id, kind, size, media_type FROM attachment_refs
                 WHERE hash = $1 ORDER BY doc_id",
            )
            .await?,
            &[&hash.as_slice()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AttachmentUse {
            doc_id: r.get(0),
            grid_id: r.get(1),
            kind: r.get(2),
            size: r.get::<_, i64>(3) as u64,
            media_type: r.get(4),
        })
        .collect())
}

pub(super) async fn of_doc(c: &Client, doc_id: &str) -> Result<Vec<DocAttachment>> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT r.hash, r.size, r.media_type, b.hash IS NOT NULL
                 FROM attachment_refs r LEFT JOIN attachment_blobs b ON b.hash = r.hash
                 WHERE r.doc_id = $1 ORDER BY r.hash",
            )
            .await?,
            &[&doc_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DocAttachment {
                hash: to_hash(r.get(0))?,
                size: r.get::<_, i64>(1) as u64,
                media_type: r.get(2),
                stored: r.get(3),
            })
        })
        .collect()
}

pub(super) async fn counts_of(c: &Client, ids: &[String]) -> Result<HashMap<String, usize>> {
    let rows = c
        .query(
            &c.prepare_cached(
                "SELECT doc_id, COUNT(*) FROM attachment_refs
                 WHERE doc_id = ANY($1::text[]) GROUP BY doc_id",
            )
            .await?,
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as usize))
        .collect())
}

pub(super) async fn insert_blob(c: &Client, b: &StoredBlob) -> Result<()> {
    c.execute(
        &c.prepare_cached(
            "INSERT INTO attachment_blobs (hash, size, media_type, device_id, user_id, stored_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING",
        )
        .await?,
        &[
            &b.hash.as_slice(),
            &(b.size as i64),
            &b.media_type,
            &b.device_id,
            &b.user_id,
            &b.stored_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn blob(c: &Client, hash: &Hash) -> Result<Option<StoredBlob>> {
    let row = c
        .query_opt(
            &c.prepare_cached(
                "SELECT size, media_type, device_id, user_id, stored_at FROM attachment_blobs
                 WHERE hash = $1",
            )
            .await?,
            &[&hash.as_slice()],
        )
        .await?;
    Ok(row.map(|r| StoredBlob {
        hash: *hash,
        size: r.get::<_, i64>(0) as u64,
        media_type: r.get(1),
        device_id: r.get(2),
        user_id: r.get(3),
        stored_at: r.get(4),
    }))
}

pub(super) async fn device_bytes(c: &Client, device_id: &str) -> Result<u64> {
    let n: i64 = c
        .query_one(
            &c.prepare_cached(
                "SELECT COALESCE(SUM(size), 0)::BIGINT FROM attachment_blobs WHERE device_id = $1",
            )
            .await?,
            &[&device_id],
        )
        .await?
        .get(0);
    Ok(n as u64)
}

pub(super) async fn counts(c: &Client) -> Result<Vec<AttachmentCount>> {
    let rows = c
        .query(
            "SELECT r.grid_id, COUNT(*), COUNT(b.hash), COALESCE(SUM(b.size), 0)::BIGINT
             FROM (SELECT DISTINCT grid_id, hash FROM attachment_refs) r
             LEFT JOIN attachment_blobs b ON b.hash = r.hash
             GROUP BY r.grid_id ORDER BY r.grid_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AttachmentCount {
            grid_id: r.get(0),
            named: r.get::<_, i64>(1) as u64,
            stored: r.get::<_, i64>(2) as u64,
            stored_bytes: r.get::<_, i64>(3) as u64,
        })
        .collect())
}

pub(super) async fn orphans(tx: &Transaction<'_>, now: &str) -> Result<Vec<Orphan>> {
    const NAMED: &str =
        "EXISTS (SELECT 1 FROM attachment_refs r WHERE r.hash = attachment_blobs.hash)";
    tx.execute(
        &format!(
            "UPDATE attachment_blobs SET orphaned_at = NULL WHERE orphaned_at IS NOT NULL AND {NAMED}"
        ),
        &[],
    )
    .await?;
    tx.execute(
        &format!(
            "UPDATE attachment_blobs SET orphaned_at = $1 WHERE orphaned_at IS NULL AND NOT {NAMED}"
        ),
        &[&now],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT hash, size, orphaned_at FROM attachment_blobs WHERE orphaned_at IS NOT NULL
             ORDER BY hash",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Orphan {
                hash: to_hash(r.get(0))?,
                size: r.get::<_, i64>(1) as u64,
                orphaned_at: r.get(2),
            })
        })
        .collect()
}

/// Whether a stored attachment is unnamed and was marked so at or before `unnamed_by`.
pub(super) async fn purgeable(tx: &Transaction<'_>, hash: &Hash, unnamed_by: &str) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM attachment_blobs b WHERE b.hash = $1 AND b.orphaned_at <= $2
                AND NOT EXISTS (SELECT 1 FROM attachment_refs r WHERE r.hash = b.hash)",
            &[&hash.as_slice(), &unnamed_by],
        )
        .await?
        .is_some())
}

pub(super) async fn forget(tx: &Transaction<'_>, hash: &Hash) -> Result<()> {
    tx.execute(
        "DELETE FROM attachment_blobs WHERE hash = $1",
        &[&hash.as_slice()],
    )
    .await?;
    Ok(())
}
