//! The attachments' metadata of the in-memory backend.

use std::collections::{BTreeMap, BTreeSet};

use gridsync_core::protocol::Hash;
use gridsync_core::record::attachment::AttachmentRef;

use crate::storage::{AttachmentCount, AttachmentUse, DocAttachment, Orphan, StoredBlob};

#[derive(Default)]
pub(super) struct Attachments {
    /// By document: its grid, kind and what it names.
    refs: BTreeMap<String, (String, String, Vec<AttachmentRef>)>,
    /// Stored blobs and when a purge first found them named by nothing.
    blobs: BTreeMap<Hash, (StoredBlob, Option<String>)>,
}

impl Attachments {
    pub(super) fn set_refs(
        &mut self,
        doc_id: &str,
        grid: &str,
        kind: &str,
        refs: Vec<AttachmentRef>,
    ) {
        // Named again: the grace period starts anew the next time it is found unnamed.
        for r in &refs {
            if let Some((_, mark)) = self.blobs.get_mut(&r.hash) {
                *mark = None;
            }
        }
        if refs.is_empty() {
            self.refs.remove(doc_id);
        } else {
            self.refs.insert(
                doc_id.to_string(),
                (grid.to_string(), kind.to_string(), refs),
            );
        }
    }

    fn named(&self, hash: &Hash) -> bool {
        self.refs
            .values()
            .any(|(_, _, refs)| refs.iter().any(|r| r.hash == *hash))
    }

    pub(super) fn uses(&self, hash: &Hash) -> Vec<AttachmentUse> {
        self.refs
            .iter()
            .filter_map(|(doc_id, (grid, kind, refs))| {
                let r = refs.iter().find(|r| r.hash == *hash)?;
                Some(AttachmentUse {
                    doc_id: doc_id.clone(),
                    grid_id: grid.clone(),
                    kind: kind.clone(),
                    size: r.size,
                    media_type: r.media_type.clone(),
                })
            })
            .collect()
    }

    pub(super) fn of_doc(&self, doc_id: &str) -> Vec<DocAttachment> {
        let Some((_, _, refs)) = self.refs.get(doc_id) else {
            return Vec::new();
        };
        let mut out: Vec<DocAttachment> = refs
            .iter()
            .map(|r| DocAttachment {
                hash: r.hash,
                size: r.size,
                media_type: r.media_type.clone(),
                stored: self.blobs.contains_key(&r.hash),
            })
            .collect();
        out.sort_by_key(|a| a.hash);
        out
    }

    pub(super) fn insert_blob(&mut self, blob: StoredBlob) {
        self.blobs.entry(blob.hash).or_insert((blob, None));
    }

    pub(super) fn blob(&self, hash: &Hash) -> Option<StoredBlob> {
        self.blobs.get(hash).map(|(b, _)| b.clone())
    }

    pub(super) fn device_bytes(&self, device_id: &str) -> u64 {
        self.blobs
            .values()
            .filter(|(b, _)| b.device_id == device_id)
            .map(|(b, _)| b.size)
            .sum()
    }

    pub(super) fn counts(&self) -> Vec<AttachmentCount> {
        let mut by_grid: BTreeMap<&str, BTreeSet<Hash>> = BTreeMap::new();
        for (grid, _, refs) in self.refs.values() {
            by_grid
                .entry(grid.as_str())
                .or_default()
                .extend(refs.iter().map(|r| r.hash));
        }
        by_grid
            .into_iter()
            .map(|(grid, hashes)| {
                let stored: Vec<u64> = hashes
                    .iter()
                    .filter_map(|h| self.blobs.get(h).map(|(b, _)| b.size))
                    .collect();
                AttachmentCount {
                    grid_id: grid.to_string(),
                    named: hashes.len() as u64,
                    stored: stored.len() as u64,
                    stored_bytes: stored.iter().sum(),
                }
            })
            .collect()
    }

    pub(super) fn orphans(&mut self, now: &str) -> Vec<Orphan> {
        let named: Vec<bool> = self.blobs.keys().map(|h| self.named(h)).collect();
        let mut out = Vec::new();
        for ((hash, (blob, mark)), named) in self.blobs.iter_mut().zip(named) {
            if named {
                *mark = None;
                continue;
            }
            let since = mark.get_or_insert_with(|| now.to_string());
            out.push(Orphan {
                hash: *hash,
                size: blob.size,
                orphaned_at: since.clone(),
            });
        }
        out
    }

    pub(super) fn purgeable(&self, hash: &Hash, unnamed_by: &str) -> bool {
        !self.named(hash)
            && self
                .blobs
                .get(hash)
                .is_some_and(|(_, mark)| mark.as_deref().is_some_and(|m| m <= unnamed_by))
    }

    pub(super) fn forget(&mut self, hash: &Hash) {
        self.blobs.remove(hash);
    }
}
