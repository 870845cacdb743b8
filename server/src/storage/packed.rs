//! A document's snapshot as the relay's store keeps it: deflated whole.
//!
//! The relay saves snapshots without Automerge's per-column DEFLATE (`doc::save_snapshot`:
//! a fresh compressor per column made saving as dear as applying the record), so the bytes it
//! stores are the columns as they are: key names, actor ids and field values repeated from
//! column to column. One raw DEFLATE stream over the whole snapshot, from a compressor each
//! thread keeps, takes W2's snapshots to three quarters of their size (0.76) for about 45 µs
//! each. zlib-rs's level 9: its level 1 (another algorithm) kept 0.89 of them, levels 2–6
//! 0.80, at 11 and 40 µs.
//!
//! Stored form: [`TAG`], the snapshot's length (u32, little-endian), the DEFLATE stream. A
//! snapshot DEFLATE does not shrink is stored as it is, and so is every snapshot written before
//! this format (an Automerge document starts with its own magic bytes, never with [`TAG`]), so
//! a store of either age reads the same. Reading gives back the snapshot's own bytes: what the
//! relay loads and what it sends a device are Automerge's, never this form.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{Result, StorageError};

/// Starts a deflated snapshot. An Automerge document starts with `85 6f 4a 83`.
const TAG: [u8; 4] = *b"\0gz1";
const HEADER: usize = TAG.len() + 4;

/// A snapshot in its stored form, made by [`PackedSnapshot::pack`] where the relay builds
/// documents (in parallel, off the store's write lock).
#[derive(Debug, Clone)]
pub struct PackedSnapshot(Vec<u8>);

impl PackedSnapshot {
    pub fn pack(snapshot: &[u8]) -> Self {
        thread_local! {
            static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::best(), false));
        }
        let deflated = DEFLATE.with_borrow_mut(|deflate| {
            deflate.reset();
            let len = u32::try_from(snapshot.len()).ok()?;
            // Room for the longest stream DEFLATE can make of it (stored blocks: 5 bytes per
            // 16 KiB and the end), so the stream always ends and the compressor is left clean.
            let mut out = Vec::with_capacity(HEADER + snapshot.len() + snapshot.len() / 1024 + 64);
            out.extend_from_slice(&TAG);
            out.extend_from_slice(&len.to_le_bytes());
            match deflate.compress_vec(snapshot, &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) if out.len() < snapshot.len() => Some(out),
                _ => None,
            }
        });
        PackedSnapshot(deflated.unwrap_or_else(|| snapshot.to_vec()))
    }

    /// The bytes the store writes.
    pub fn stored(&self) -> &[u8] {
        &self.0
    }
}

/// The snapshot a store's `snapshot` column holds, in either form. A damaged stored form is
/// logged and handed back as it is: no document loads from it, so the relay refuses that one record when it decodes it, as it
/// refuses any stored copy that cannot be loaded, and the rest of the read (an upload's other
/// records, a catch-up batch) goes on.
pub fn read(doc_id: &str, stored: Vec<u8>) -> Vec<u8> {
    if !stored.starts_with(&TAG) {
        return stored;
    }
    match inflate(&stored) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::warn!(doc_id, "{e}");
            stored
        }
    }
}

fn inflate(stored: &[u8]) -> Result<Vec<u8>> {
    let damaged = |why: &str| StorageError::Corrupt(format!("a stored snapshot {why}"));
    let len = stored
        .get(TAG.len()..HEADER)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| damaged("is cut short"))? as usize;
    let stream = &stored[HEADER..];
    // DEFLATE expands at most 1,032 times: a damaged length cannot ask for more room.
    if len > stream.len().saturating_mul(1032) {
        return Err(damaged(&format!(
            "names {len} bytes from a stream of {}",
            stream.len()
        )));
    }
    // The length bounds what inflating may write: a damaged stream cannot make it grow.
    let mut out = Vec::with_capacity(len);
    let status = Decompress::new(false)
        .decompress_vec(stream, &mut out, FlushDecompress::Finish)
        .map_err(|e| damaged(&format!("does not inflate: {e}")))?;
    if status != Status::StreamEnd || out.len() != len {
        return Err(damaged(&format!(
            "inflates to {} bytes, not the {len} it names",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes with no repeats DEFLATE could use (splitmix64): stored, they would be longer.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    fn snapshot() -> Vec<u8> {
        let mut doc = automerge::AutoCommit::new();
        use automerge::transaction::Transactable;
        for i in 0..20 {
            doc.put(
                automerge::ROOT,
                format!("field_{i}"),
                format!("走访记录 {i}"),
            )
            .unwrap();
        }
        gridsync_core::doc::save_snapshot(doc.document())
    }

    #[test]
    fn test_a_snapshot_is_stored_smaller_and_reads_back_byte_for_byte() {
        let saved = snapshot();
        let packed = PackedSnapshot::pack(&saved);
        assert!(packed.stored().starts_with(&TAG));
        assert!(
            packed.stored().len() < saved.len() * 9 / 10,
            "{} of {} bytes",
            packed.stored().len(),
            saved.len()
        );
        assert_eq!(read("d", packed.stored().to_vec()), saved);
    }

    #[test]
    fn test_a_snapshot_deflate_cannot_shrink_and_one_stored_before_read_as_they_are() {
        let noise = noise(2000, 1);
        let packed = PackedSnapshot::pack(&noise);
        assert_eq!(packed.stored(), noise.as_slice());
        assert_eq!(read("d", packed.stored().to_vec()), noise);
        let saved = snapshot();
        assert_eq!(read("d", saved.clone()), saved);
    }

    #[test]
    fn test_one_thread_packs_many_snapshots_in_a_row_with_its_one_compressor() {
        // The thread's compressor is reset between snapshots: each comes back whole, whatever
        // came before it (compressible or not, stored deflated or as it is).
        let saved = snapshot();
        for seed in 0..50 {
            let bytes = if seed % 3 == 0 {
                saved.clone()
            } else {
                noise(1700, seed)
            };
            let packed = PackedSnapshot::pack(&bytes);
            assert_eq!(read("d", packed.stored().to_vec()), bytes, "{seed}");
        }
    }

    #[test]
    fn test_a_damaged_stored_snapshot_is_refused_as_corrupt() {
        let saved = snapshot();
        let good = PackedSnapshot::pack(&saved).stored().to_vec();
        let mut wrong_len = good.clone();
        wrong_len[TAG.len()] ^= 1;
        let mut huge = good.clone();
        huge[TAG.len()..HEADER].copy_from_slice(&u32::MAX.to_le_bytes());
        for bad in [
            good[..good.len() - 5].to_vec(),
            good[..6].to_vec(),
            wrong_len,
            huge,
        ] {
            match inflate(&bad) {
                Err(StorageError::Corrupt(_)) => {}
                other => panic!("damaged snapshot read as {other:?}"),
            }
            // Read, it stays as stored, and no document loads from it.
            assert_eq!(read("d", bad.clone()), bad);
            assert!(automerge::Automerge::load(&bad).is_err());
        }
    }
}
