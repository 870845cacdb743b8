//! The conformance suite every blob store runs.

use sha2::{Digest, Sha256};

use super::*;

fn hash_of(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The behaviour every blob store must have.
pub(crate) async fn conformance(s: &dyn BlobStore) {
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let hash = hash_of(&bytes);
    assert_eq!(s.stand(&hash).await.unwrap(), Stand::Missing);
    assert_eq!(s.read(&hash, 0, 10).await.unwrap(), None);
    // Asking with nothing changes nothing; a piece that does not start at 0 is ignored.
    assert_eq!(s.append(&hash, 0, &[]).await.unwrap(), Stand::Missing);
    assert_eq!(
        s.append(&hash, 5, &bytes[5..10]).await.unwrap(),
        Stand::Missing
    );
    assert_eq!(
        s.append(&hash, 0, &bytes[..65_536]).await.unwrap(),
        Stand::Partial(65_536)
    );
    // Only at the end of the prefix: a piece again, or one leaving a gap, changes nothing.
    assert_eq!(
        s.append(&hash, 0, &bytes[..65_536]).await.unwrap(),
        Stand::Partial(65_536)
    );
    assert_eq!(
        s.append(&hash, 70_000, &bytes[70_000..80_000])
            .await
            .unwrap(),
        Stand::Partial(65_536)
    );
    assert_eq!(s.stand(&hash).await.unwrap(), Stand::Partial(65_536));
    // A partial blob is never read.
    assert_eq!(s.read(&hash, 0, 10).await.unwrap(), None);
    let partials = s.partials().await.unwrap();
    assert_eq!(partials.len(), 1);
    assert_eq!((partials[0].hash, partials[0].len), (hash, 65_536));
    assert!(s.complete().await.unwrap().is_empty());

    assert_eq!(
        s.append(&hash, 65_536, &bytes[65_536..]).await.unwrap(),
        Stand::Partial(bytes.len() as u64)
    );
    assert_eq!(
        s.finish(&hash).await.unwrap(),
        Finished::Complete(bytes.len() as u64)
    );
    assert_eq!(
        s.stand(&hash).await.unwrap(),
        Stand::Complete(bytes.len() as u64)
    );
    assert!(s.partials().await.unwrap().is_empty());
    assert_eq!(s.complete().await.unwrap(), vec![hash]);
    // Finishing again, or a piece for a complete blob, changes nothing.
    assert_eq!(
        s.finish(&hash).await.unwrap(),
        Finished::Complete(bytes.len() as u64)
    );
    assert_eq!(
        s.append(&hash, bytes.len() as u64, b"more").await.unwrap(),
        Stand::Complete(bytes.len() as u64)
    );
    // Ranges: from the middle, cut at the end, past the end.
    assert_eq!(
        s.read(&hash, 1000, 500).await.unwrap().unwrap(),
        &bytes[1000..1500]
    );
    assert_eq!(
        s.read(&hash, 199_990, 500).await.unwrap().unwrap(),
        &bytes[199_990..]
    );
    assert!(
        s.read(&hash, 300_000, 10)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    let mut whole = Vec::new();
    for _ in 0..10 {
        let piece = s.read(&hash, whole.len() as u64, 65_536).await.unwrap();
        let piece = piece.unwrap();
        if piece.is_empty() {
            break;
        }
        whole.extend(piece);
    }
    assert_eq!(whole, bytes);

    // Bytes that do not match their name are discarded, never served.
    let wrong = hash_of(b"something else");
    assert_eq!(
        s.append(&wrong, 0, b"not it").await.unwrap(),
        Stand::Partial(6)
    );
    assert_eq!(s.finish(&wrong).await.unwrap(), Finished::Mismatch);
    assert_eq!(s.stand(&wrong).await.unwrap(), Stand::Missing);
    assert_eq!(s.read(&wrong, 0, 10).await.unwrap(), None);
    assert_eq!(s.finish(&wrong).await.unwrap(), Finished::Missing);

    // The empty blob is a blob too.
    let empty = hash_of(b"");
    assert_eq!(s.finish(&empty).await.unwrap(), Finished::Missing);

    assert!(s.remove(&hash).await.unwrap());
    assert!(!s.remove(&hash).await.unwrap());
    assert_eq!(s.stand(&hash).await.unwrap(), Stand::Missing);
    assert_eq!(s.read(&hash, 0, 10).await.unwrap(), None);
    s.append(&wrong, 0, b"x").await.unwrap();
    assert!(s.remove(&wrong).await.unwrap());
    assert!(s.partials().await.unwrap().is_empty());

    // A removal does nothing until it is run, on a blocking thread as the database runs it;
    // removing what is not there is no error.
    let photo = b"a photo".to_vec();
    let named = hash_of(&photo);
    s.append(&named, 0, &photo).await.unwrap();
    assert_eq!(s.finish(&named).await.unwrap(), Finished::Complete(7));
    let removal = s.removal(&named);
    assert_eq!(s.stand(&named).await.unwrap(), Stand::Complete(7));
    tokio::task::spawn_blocking(removal).await.unwrap().unwrap();
    assert_eq!(s.stand(&named).await.unwrap(), Stand::Missing);
    assert_eq!(s.read(&named, 0, 10).await.unwrap(), None);
    let again = s.removal(&named);
    tokio::task::spawn_blocking(again).await.unwrap().unwrap();
}

#[tokio::test]
async fn test_memory_blob_store_conforms() {
    conformance(MemoryBlobStore::new().as_ref()).await;
}

#[tokio::test]
async fn test_fs_blob_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(FsBlobStore::new(dir.path()).as_ref()).await;
}

#[tokio::test]
async fn test_fs_blob_store_keeps_its_prefix_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = vec![7u8; 100_000];
    let hash = hash_of(&bytes);
    let first = FsBlobStore::new(dir.path());
    first.append(&hash, 0, &bytes[..40_000]).await.unwrap();
    drop(first);
    // The relay restarted: the upload goes on from what was durable.
    let again = FsBlobStore::new(dir.path());
    assert_eq!(again.stand(&hash).await.unwrap(), Stand::Partial(40_000));
    again.append(&hash, 40_000, &bytes[40_000..]).await.unwrap();
    assert_eq!(
        again.finish(&hash).await.unwrap(),
        Finished::Complete(100_000)
    );
    let hex = hex::encode(hash);
    let placed = dir.path().join(ATTACHMENTS_DIR).join(&hex[..2]).join(&hex);
    assert_eq!(std::fs::read(placed).unwrap(), bytes);
}
