//! The blob side of storage: the bytes of attachments (photos and files on records), named by
//! their SHA-256 and kept outside the database, so the documents and the log stay small.
//!
//! An upload grows a *partial* blob one piece at a time, only at its end, each piece durable
//! before [`BlobStore::append`] returns; [`BlobStore::finish`] checks the SHA-256 of the whole,
//! reading it in pieces, and moves it into place in one step. Only a complete blob is ever read
//! ([`BlobStore::read`]): a partial one is never served. [`FsBlobStore`] keeps them under the
//! data directory, [`MemoryBlobStore`] in memory (beside `MemoryStorage`); a PostgreSQL or
//! object-store backend implements the same trait, and [`tests::conformance`] checks them all.
//! What a blob is for (which records name it, who uploaded it) is the database's business.

mod fs;
mod memory;

use std::time::SystemTime;

use async_trait::async_trait;
use gridsync_core::protocol::Hash;

pub use fs::{ATTACHMENTS_DIR, FsBlobStore};
pub use memory::MemoryBlobStore;

use super::Result;

/// Where the store stands with one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stand {
    /// Nothing of it is held.
    Missing,
    /// The first this many bytes are durable; the upload goes on from there.
    Partial(u64),
    /// Every byte is held and was checked against the hash; its size.
    Complete(u64),
}

impl Stand {
    /// Where a piece at `offset` goes: the length of the prefix it extends, or `None` when it
    /// is not taken (the blob is complete, the piece is empty, or it does not start where the
    /// durable prefix ends) and the store answers with where it stands instead.
    pub fn append_at(self, offset: u64, data: &[u8]) -> Option<u64> {
        let len = match self {
            Stand::Complete(_) => return None,
            Stand::Partial(len) => len,
            Stand::Missing => 0,
        };
        (offset == len && !data.is_empty()).then_some(len)
    }
}

/// How [`BlobStore::finish`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The bytes match the hash and are in place, this many of them.
    Complete(u64),
    /// They do not match: the partial blob was discarded.
    Mismatch,
    /// There was no partial blob to finish (and no complete one).
    Missing,
}

/// An upload under way, for the purge of abandoned ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialBlob {
    pub hash: Hash,
    pub len: u64,
    /// When its last piece was stored.
    pub touched: SystemTime,
}

/// The removal of one blob's bytes, run by whoever must run it at the right moment (the
/// database, inside the transaction that checks no record names it: [`super::Attachments::purge_blob`]).
/// It blocks; removing what is not there is no error.
pub type BlobRemoval = Box<dyn FnOnce() -> Result<()> + Send>;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Where the store stands with `hash`.
    async fn stand(&self, hash: &Hash) -> Result<Stand>;
    /// Appends `data` to the partial blob when `offset` is where its durable prefix ends (a
    /// blob not yet begun at offset 0), and makes it durable before returning. A piece at any
    /// other offset, or for a complete blob, changes nothing. Returns where the store stands
    /// afterwards; checking that the prefix stays within the size a record names is the
    /// caller's.
    async fn append(&self, hash: &Hash, offset: u64, data: &[u8]) -> Result<Stand>;
    /// Checks the partial blob's bytes against `hash` (in pieces, never the whole in memory),
    /// then moves it into place in one atomic step, or discards it when they do not match.
    /// A blob already complete is [`Finished::Complete`].
    async fn finish(&self, hash: &Hash) -> Result<Finished>;
    /// Up to `max` bytes of a complete blob from `offset` (empty at or past its end); `None`
    /// when the blob is not complete.
    async fn read(&self, hash: &Hash, offset: u64, max: usize) -> Result<Option<Vec<u8>>>;
    /// Removes the blob, complete or partial; whether there was one.
    async fn remove(&self, hash: &Hash) -> Result<bool>;
    /// What [`BlobStore::remove`] does, to be run later and elsewhere (blocking).
    fn removal(&self, hash: &Hash) -> BlobRemoval;
    /// The uploads under way.
    async fn partials(&self) -> Result<Vec<PartialBlob>>;
    /// The complete blobs' hashes (a purge's check against the database).
    async fn complete(&self) -> Result<Vec<Hash>>;
}

#[cfg(test)]
pub(crate) mod tests;
