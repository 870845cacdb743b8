//! The compact form of the Automerge changes in a `Changes` message (protocol 2).
//!
//! A change chunk is `magic (4) | checksum (4) | type (1) | uleb128 length | body`, and its body
//! begins with the change's dependencies: `uleb128 count`, then `count` 32-byte hashes. The
//! checksum is the first 4 bytes of the change's hash, the SHA-256 of everything after the
//! checksum. Hashes do not compress, and in a catch-up most dependencies are a change a few
//! entries earlier in the same record's list (one writer editing a record several times): about
//! a third of the bytes of a DEFLATE-compressed catch-up.
//!
//! So each element of a record's list is sent as either
//! - `0`, then the chunk verbatim (anything that is not a plain change, or that the compact form
//!   would not give back byte for byte), or
//! - `1`, `uleb128 count`, then per dependency `0` and the 32-byte hash, or `1` and the
//!   `uleb128` position of an earlier element of the list, then the rest of the body.
//!
//! The receiver rebuilds the exact chunk, header and checksum included, so the change's hash and
//! Automerge's own verification of it are unchanged: the compact form can lose or alter nothing.

use std::collections::HashMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use super::MAX_MESSAGE;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
const HEADER: usize = 4 + 4 + 1;
const HASH_LEN: usize = 32;

const VERBATIM: u8 = 0;
const COMPACT: u8 = 1;
const DEP_HASH: u8 = 0;
const DEP_EARLIER: u8 = 1;

/// The compact form of one record's changes, in order.
pub fn compact(changes: &[ByteBuf]) -> Vec<Vec<u8>> {
    let mut positions: HashMap<[u8; HASH_LEN], usize> = HashMap::new();
    let mut hashes = Vec::with_capacity(changes.len());
    let mut out = Vec::with_capacity(changes.len());
    for (i, bytes) in changes.iter().enumerate() {
        let compacted = compact_one(bytes, &positions)
            .filter(|item| expand_one(item, &hashes).is_ok_and(|(full, _)| full == **bytes));
        let item = compacted.unwrap_or_else(|| {
            let mut item = Vec::with_capacity(1 + bytes.len());
            item.push(VERBATIM);
            item.extend_from_slice(bytes);
            item
        });
        let hash = chunk_hash(bytes);
        positions.entry(hash).or_insert(i);
        hashes.push(hash);
        out.push(item);
    }
    out
}

/// Rebuilds one record's changes from their compact form.
pub fn expand(items: &[ByteBuf]) -> Result<Vec<ByteBuf>, String> {
    let mut hashes = Vec::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    let mut total = 0usize;
    for item in items {
        let (full, hash) = expand_one(item, &hashes)?;
        total += full.len();
        if total > MAX_MESSAGE {
            return Err(format!(
                "changes expand beyond the {MAX_MESSAGE}-byte message limit"
            ));
        }
        hashes.push(hash);
        out.push(ByteBuf::from(full));
    }
    Ok(out)
}

/// What the receiver will compute as an element's hash: SHA-256 of the bytes after the checksum
/// (a change's hash when the element is an uncompressed change).
fn chunk_hash(bytes: &[u8]) -> [u8; HASH_LEN] {
    Sha256::digest(bytes.get(8..).unwrap_or_default()).into()
}

fn compact_one(bytes: &[u8], positions: &HashMap<[u8; HASH_LEN], usize>) -> Option<Vec<u8>> {
    if bytes.len() < HEADER || bytes[..4] != MAGIC || bytes[8] != CHUNK_CHANGE {
        return None;
    }
    let (len, n) = read_uleb(&bytes[HEADER..])?;
    let body = &bytes[HEADER + n..];
    if body.len() as u64 != len {
        return None;
    }
    let (count, m) = read_uleb(body)?;
    let deps_end = usize::try_from(count)
        .ok()?
        .checked_mul(HASH_LEN)?
        .checked_add(m)?;
    let deps = body.get(m..deps_end)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.push(COMPACT);
    write_uleb(&mut out, count);
    for dep in deps.chunks_exact(HASH_LEN) {
        match positions.get(dep) {
            Some(&i) => {
                out.push(DEP_EARLIER);
                write_uleb(&mut out, i as u64);
            }
            None => {
                out.push(DEP_HASH);
                out.extend_from_slice(dep);
            }
        }
    }
    out.extend_from_slice(&body[deps_end..]);
    Some(out)
}

/// One element back to its chunk, with the chunk's hash. `earlier` holds the hashes of the
/// elements before it.
fn expand_one(
    item: &[u8],
    earlier: &[[u8; HASH_LEN]],
) -> Result<(Vec<u8>, [u8; HASH_LEN]), String> {
    let (&tag, rest) = item.split_first().ok_or("empty change")?;
    match tag {
        VERBATIM => Ok((rest.to_vec(), chunk_hash(rest))),
        COMPACT => {
            let bad = || "malformed compact change".to_string();
            let (count, mut at) = read_uleb(rest).ok_or_else(bad)?;
            // Every dependency takes at least two bytes of the item.
            if count > rest.len() as u64 / 2 {
                return Err(bad());
            }
            let mut body = Vec::with_capacity(rest.len() + count as usize * HASH_LEN);
            write_uleb(&mut body, count);
            for _ in 0..count {
                match rest.get(at) {
                    Some(&DEP_HASH) => {
                        let hash = rest.get(at + 1..at + 1 + HASH_LEN).ok_or_else(bad)?;
                        body.extend_from_slice(hash);
                        at += 1 + HASH_LEN;
                    }
                    Some(&DEP_EARLIER) => {
                        let (i, n) = rest.get(at + 1..).and_then(read_uleb).ok_or_else(bad)?;
                        let hash = usize::try_from(i)
                            .ok()
                            .and_then(|i| earlier.get(i))
                            .ok_or("compact change refers to a later change")?;
                        body.extend_from_slice(hash);
                        at += 1 + n;
                    }
                    _ => return Err(bad()),
                }
            }
            body.extend_from_slice(rest.get(at..).ok_or_else(bad)?);
            let mut hashed = Vec::with_capacity(body.len() + 11);
            hashed.push(CHUNK_CHANGE);
            write_uleb(&mut hashed, body.len() as u64);
            hashed.extend_from_slice(&body);
            let hash: [u8; HASH_LEN] = Sha256::digest(&hashed).into();
            let mut full = Vec::with_capacity(8 + hashed.len());
            full.extend_from_slice(&MAGIC);
            full.extend_from_slice(&hash[..4]);
            full.extend_from_slice(&hashed);
            Ok((full, hash))
        }
        other => Err(format!("unknown change form {other}")),
    }
}

fn read_uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn write_uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `#[serde(with = "compact::changes")]` for a record's list of changes.
pub mod changes {
    use super::*;

    pub fn serialize<S: Serializer>(changes: &[ByteBuf], s: S) -> Result<S::Ok, S::Error> {
        let items = compact(changes);
        s.collect_seq(items.iter().map(|i| serde_bytes::Bytes::new(i)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ByteBuf>, D::Error> {
        let items = Vec::<ByteBuf>::deserialize(d)?;
        expand(&items).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{Automerge, Change, ROOT};

    use super::*;

    /// A record edited `edits` times after its creation, as one list of changes.
    fn history(edits: usize) -> Vec<ByteBuf> {
        let mut doc = Automerge::new();
        let mut out = Vec::new();
        for i in 0..=edits {
            let mut tx = doc.transaction();
            tx.put(ROOT, "status", format!("s{i}")).unwrap();
            tx.commit();
            out.push(ByteBuf::from(
                doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
            ));
        }
        out
    }

    #[test]
    fn test_a_chain_of_edits_round_trips_exactly_and_is_smaller() {
        let changes = history(5);
        let items = compact(&changes);
        assert!(items.iter().all(|i| i[0] == COMPACT));
        let saved: usize = changes.iter().map(|c| c.len()).sum::<usize>()
            - items.iter().map(|i| i.len()).sum::<usize>();
        // Five dependencies on an earlier element, and six headers, left out.
        assert!(saved >= 5 * 30 + 6 * 8, "saved {saved} bytes");
        let back = expand(&items.into_iter().map(ByteBuf::from).collect::<Vec<_>>()).unwrap();
        assert_eq!(back, changes);
        for c in back {
            Change::from_bytes(c.into_vec()).unwrap();
        }
    }

    #[test]
    fn test_a_dependency_outside_the_list_is_sent_whole() {
        let changes = history(3);
        let items = compact(&changes[2..]);
        let back = expand(&items.into_iter().map(ByteBuf::from).collect::<Vec<_>>()).unwrap();
        assert_eq!(back, changes[2..]);
    }

    #[test]
    fn test_anything_else_is_sent_verbatim() {
        let odd = vec![ByteBuf::from(vec![1, 2, 3]), ByteBuf::from(vec![])];
        let items = compact(&odd);
        assert!(items.iter().all(|i| i[0] == VERBATIM));
        let back = expand(&items.into_iter().map(ByteBuf::from).collect::<Vec<_>>()).unwrap();
        assert_eq!(back, odd);
    }

    #[test]
    fn test_bad_compact_forms_are_errors() {
        let changes = history(2);
        let mut items = compact(&changes);
        // A reference to an element that comes later.
        items[1] = vec![COMPACT, 1, DEP_EARLIER, 5];
        let items: Vec<ByteBuf> = items.into_iter().map(ByteBuf::from).collect();
        assert!(expand(&items).is_err());
        for bad in [
            vec![],
            vec![9],
            vec![COMPACT],
            vec![COMPACT, 0xff],
            vec![COMPACT, 100, DEP_HASH],
            vec![COMPACT, 1, DEP_HASH, 1, 2],
            vec![COMPACT, 1, 7],
        ] {
            assert!(expand(&[ByteBuf::from(bad.clone())]).is_err(), "{bad:?}");
        }
    }
}
