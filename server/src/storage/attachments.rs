//! What the database keeps of attachments: which records name which bytes (kept by
//! [`super::Commit`] from each record's `attachments` field, [`super::DocUpdate::attachments`]),
//! and which bytes the relay holds (recorded once a blob is complete). The bytes themselves are
//! the [`super::BlobStore`]'s.

use gridsync_core::protocol::Hash;

/// A record naming an attachment: the attachment may be read by whoever may read the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentUse {
    pub doc_id: String,
    pub grid_id: String,
    pub kind: String,
    /// As the record names it.
    pub size: u64,
    pub media_type: String,
}

impl AttachmentUse {
    /// Whether a reader of these grids and kinds may read this record.
    pub fn readable_by(&self, grids: &[String], kinds: &super::KindFilter) -> bool {
        grids.contains(&self.grid_id) && kinds.admits_name(&self.kind)
    }
}

/// One attachment a record names, and whether its bytes have arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocAttachment {
    pub hash: Hash,
    pub size: u64,
    pub media_type: String,
    /// Every byte is on the relay and was checked; `false`: "not yet received".
    pub stored: bool,
}

/// An attachment the relay holds in whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub hash: Hash,
    pub size: u64,
    pub media_type: String,
    pub device_id: String,
    pub user_id: String,
    /// RFC 3339, UTC.
    pub stored_at: String,
}

/// `/v1/stats`: a grid's attachments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttachmentCount {
    pub grid_id: String,
    /// Distinct attachments the grid's records name.
    pub named: u64,
    /// Of those, the ones the relay holds, and their bytes.
    pub stored: u64,
    pub stored_bytes: u64,
}

/// A stored attachment no record names, and since when (the first purge that found it so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub hash: Hash,
    pub size: u64,
    pub orphaned_at: String,
}
