//! The attachments' metadata, as every backend keeps it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gridsync_core::record::attachment::AttachmentRef;

use super::super::*;

fn named(doc: &str, grid: &str, kind: &str, refs: &[(u8, u64)]) -> DocUpdate {
    DocUpdate {
        doc_id: doc.into(),
        grid_id: grid.into(),
        kind: kind.parse().ok(),
        heads: vec![[1; 32]],
        index: None,
        snapshot: None,
        facts: None,
        parallel: false,
        attachments: Some(
            refs.iter()
                .map(|&(h, size)| AttachmentRef {
                    hash: [h; 32],
                    size,
                    media_type: "image/jpeg".into(),
                })
                .collect(),
        ),
    }
}

fn blob(h: u8, size: u64, device: &str) -> StoredBlob {
    StoredBlob {
        hash: [h; 32],
        size,
        media_type: "image/jpeg".into(),
        device_id: device.into(),
        user_id: "u".into(),
        stored_at: "2025-01-01T00:00:00.000Z".into(),
    }
}

async fn put(s: &dyn Storage, doc: DocUpdate) {
    s.commit(Commit {
        changes: Vec::new(),
        docs: vec![doc],
        moves: Vec::new(),
    })
    .await
    .unwrap();
}

pub(crate) async fn attachments_conformance(s: &dyn Storage) {
    let g1 = vec!["g1".to_string()];
    assert!(s.attachment_uses(&[1; 32]).await.unwrap().is_empty());
    put(s, named("v1", "g1", "visit", &[(1, 100), (2, 200)])).await;
    put(s, named("p1", "g1", "household_private", &[(3, 300)])).await;
    // Two records naming the same bytes.
    put(s, named("v2", "g2", "visit", &[(1, 100)])).await;
    let uses = s.attachment_uses(&[1; 32]).await.unwrap();
    assert_eq!(
        uses.iter().map(|u| u.doc_id.as_str()).collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    assert_eq!((uses[0].grid_id.as_str(), uses[0].size), ("g1", 100));
    assert!(
        s.attachment_readable(&[1; 32], &g1, &KindFilter::All)
            .await
            .unwrap()
    );
    assert!(
        !s.attachment_readable(&[3; 32], &g1, &KindFilter::Only(vec![Kind::Visit]))
            .await
            .unwrap(),
        "a reader of visits does not read a household's private part's photo"
    );
    assert!(
        !s.attachment_readable(&[3; 32], &["g2".into()], &KindFilter::All)
            .await
            .unwrap()
    );

    let v1 = s.doc_attachments("v1").await.unwrap();
    assert_eq!(v1.len(), 2);
    assert!(v1.iter().all(|a| !a.stored));
    s.blob_stored(blob(1, 100, "dev-a")).await.unwrap();
    // Stored again (another upload of the same bytes): the first one's metadata stays.
    s.blob_stored(blob(1, 100, "dev-b")).await.unwrap();
    let v1 = s.doc_attachments("v1").await.unwrap();
    assert_eq!(
        v1.iter().map(|a| (a.hash[0], a.stored)).collect::<Vec<_>>(),
        [(1, true), (2, false)]
    );
    assert_eq!(
        s.stored_blob(&[1; 32]).await.unwrap().unwrap().device_id,
        "dev-a"
    );
    assert_eq!(s.stored_blob(&[2; 32]).await.unwrap(), None);
    assert_eq!(s.device_blob_bytes("dev-a").await.unwrap(), 100);
    assert_eq!(s.device_blob_bytes("dev-b").await.unwrap(), 0);

    let counts = s.attachment_counts().await.unwrap();
    let g = |id: &str| counts.iter().find(|c| c.grid_id == id).cloned().unwrap();
    assert_eq!(
        (g("g1").named, g("g1").stored, g("g1").stored_bytes),
        (3, 1, 100)
    );
    assert_eq!((g("g2").named, g("g2").stored), (1, 1));

    let counts = s
        .attachment_counts_of(&["v1".into(), "p1".into(), "v9".into()])
        .await
        .unwrap();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!((counts["v1"], counts["p1"]), (2, 1));

    // A record that changes its attachments replaces what it named.
    put(s, named("v1", "g1", "visit", &[(2, 200)])).await;
    assert_eq!(s.attachment_uses(&[1; 32]).await.unwrap().len(), 1);
    assert!(
        s.orphan_blobs("2025-02-01T00:00:00.000Z")
            .await
            .unwrap()
            .is_empty()
    );
    put(s, named("v2", "g2", "visit", &[])).await;
    assert!(s.attachment_uses(&[1; 32]).await.unwrap().is_empty());
    assert!(s.doc_attachments("v2").await.unwrap().is_empty());
    // Orphaned since the first look that found it so, not since every later one.
    let first = s.orphan_blobs("2025-02-01T00:00:00.000Z").await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].orphaned_at, "2025-02-01T00:00:00.000Z");
    let later = s.orphan_blobs("2025-03-01T00:00:00.000Z").await.unwrap();
    assert_eq!(later, first);
    // Named again: no longer an orphan; then one again, from a new date.
    put(s, named("v2", "g2", "visit", &[(1, 100)])).await;
    assert!(
        s.orphan_blobs("2025-04-01T00:00:00.000Z")
            .await
            .unwrap()
            .is_empty()
    );
    put(s, named("v2", "g2", "visit", &[])).await;
    let again = s.orphan_blobs("2025-05-01T00:00:00.000Z").await.unwrap();
    assert_eq!(again[0].orphaned_at, "2025-05-01T00:00:00.000Z");

    // A purge removes only what is unnamed since before its cutoff, and the bytes only then.
    let removed = Arc::new(AtomicUsize::new(0));
    let removal = || -> BlobRemoval {
        let removed = removed.clone();
        Box::new(move || {
            removed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    };
    let purge = |by: &'static str| s.purge_blob(&[1; 32], by, removal());
    assert!(!purge("2025-04-30T00:00:00.000Z").await.unwrap());
    // Named by a record committed after the purge found it unnamed: kept, its bytes too.
    put(s, named("v3", "g1", "visit", &[(1, 100)])).await;
    assert!(!purge("2025-06-01T00:00:00.000Z").await.unwrap());
    assert_eq!(removed.load(Ordering::SeqCst), 0);
    assert!(s.stored_blob(&[1; 32]).await.unwrap().is_some());
    // Unnamed again without a purge in between: its grace period starts at the next look, not
    // at the mark of before it was named.
    put(s, named("v3", "g1", "visit", &[])).await;
    let anew = s.orphan_blobs("2025-07-01T00:00:00.000Z").await.unwrap();
    assert_eq!(anew[0].orphaned_at, "2025-07-01T00:00:00.000Z");
    assert!(!purge("2025-06-01T00:00:00.000Z").await.unwrap());
    assert!(purge("2025-07-01T00:00:00.000Z").await.unwrap());
    assert_eq!(removed.load(Ordering::SeqCst), 1);
    assert_eq!(s.stored_blob(&[1; 32]).await.unwrap(), None);
    assert_eq!(s.device_blob_bytes("dev-a").await.unwrap(), 0);
}
