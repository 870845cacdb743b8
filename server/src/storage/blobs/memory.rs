//! Blobs in memory, beside `MemoryStorage`: for tests and a relay run without a data directory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use gridsync_core::protocol::Hash;
use sha2::{Digest, Sha256};

use super::{BlobRemoval, BlobStore, Finished, PartialBlob, Stand};
use crate::storage::Result;

#[derive(Default)]
struct Blobs {
    complete: HashMap<Hash, Arc<Vec<u8>>>,
    partial: HashMap<Hash, (Vec<u8>, SystemTime)>,
}

#[derive(Default)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<Blobs>>,
}

impl MemoryBlobStore {
    pub fn new() -> Arc<MemoryBlobStore> {
        Arc::new(MemoryBlobStore::default())
    }

    fn lock(&self) -> MutexGuard<'_, Blobs> {
        lock(&self.blobs)
    }
}

fn lock(blobs: &Mutex<Blobs>) -> MutexGuard<'_, Blobs> {
    blobs.lock().unwrap_or_else(|p| p.into_inner())
}

fn remove(blobs: &mut Blobs, hash: &Hash) -> bool {
    let complete = blobs.complete.remove(hash).is_some();
    let partial = blobs.partial.remove(hash).is_some();
    complete || partial
}

fn stand_of(blobs: &Blobs, hash: &Hash) -> Stand {
    if let Some(bytes) = blobs.complete.get(hash) {
        return Stand::Complete(bytes.len() as u64);
    }
    blobs
        .partial
        .get(hash)
        .map_or(Stand::Missing, |(b, _)| Stand::Partial(b.len() as u64))
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn stand(&self, hash: &Hash) -> Result<Stand> {
        Ok(stand_of(&self.lock(), hash))
    }

    async fn append(&self, hash: &Hash, offset: u64, data: &[u8]) -> Result<Stand> {
        let mut blobs = self.lock();
        let stand = stand_of(&blobs, hash);
        if stand.append_at(offset, data).is_none() {
            return Ok(stand);
        }
        let entry = blobs
            .partial
            .entry(*hash)
            .or_insert_with(|| (Vec::new(), SystemTime::now()));
        entry.0.extend_from_slice(data);
        entry.1 = SystemTime::now();
        Ok(Stand::Partial(entry.0.len() as u64))
    }

    async fn finish(&self, hash: &Hash) -> Result<Finished> {
        let mut blobs = self.lock();
        if let Some(bytes) = blobs.complete.get(hash) {
            return Ok(Finished::Complete(bytes.len() as u64));
        }
        let Some((bytes, _)) = blobs.partial.remove(hash) else {
            return Ok(Finished::Missing);
        };
        if Sha256::digest(&bytes).as_slice() != hash.as_slice() {
            return Ok(Finished::Mismatch);
        }
        let len = bytes.len() as u64;
        blobs.complete.insert(*hash, Arc::new(bytes));
        Ok(Finished::Complete(len))
    }

    async fn read(&self, hash: &Hash, offset: u64, max: usize) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.lock().complete.get(hash).cloned() else {
            return Ok(None);
        };
        let start = usize::try_from(offset).map_or(bytes.len(), |o| o.min(bytes.len()));
        let end = start + (bytes.len() - start).min(max);
        Ok(Some(bytes[start..end].to_vec()))
    }

    async fn remove(&self, hash: &Hash) -> Result<bool> {
        Ok(remove(&mut self.lock(), hash))
    }

    fn removal(&self, hash: &Hash) -> BlobRemoval {
        let (blobs, hash) = (self.blobs.clone(), *hash);
        Box::new(move || {
            remove(&mut lock(&blobs), &hash);
            Ok(())
        })
    }

    async fn partials(&self) -> Result<Vec<PartialBlob>> {
        Ok(self
            .lock()
            .partial
            .iter()
            .map(|(hash, (bytes, touched))| PartialBlob {
                hash: *hash,
                len: bytes.len() as u64,
                touched: *touched,
            })
            .collect())
    }

    async fn complete(&self) -> Result<Vec<Hash>> {
        Ok(self.lock().complete.keys().copied().collect())
    }
}
