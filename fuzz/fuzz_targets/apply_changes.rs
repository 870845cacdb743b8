//! Bytes received as a record's changes (or its snapshot), applied to a real replica: bad bytes
//! must be an error for that batch, never a panic or a damaged store.
#![no_main]

use std::sync::Once;

use gridsync_core::protocol::{Cursor, DocChanges, Snapshot};
use libfuzzer_sys::fuzz_target;

#[path = "../common/replica.rs"]
mod replica;

fuzz_target!(|data: &[u8]| {
    // libFuzzer's panic hook aborts on any panic, even one the code catches on purpose:
    // `doc::guarded` turns Automerge's own panics on malformed changes into errors. A quiet hook
    // lets those be handled; a panic that escapes the target still aborts and is reported.
    static QUIET: Once = Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let mut t = replica::target().lock().unwrap_or_else(|p| p.into_inner());
    // Up to four changes to one of a few documents, split at 0xFE; when the first byte says so,
    // the first part is a snapshot of the document instead.
    let first = data.first().copied().unwrap_or(0);
    let doc_id = format!("doc-{}", first % 4);
    let mut parts = data
        .split(|b| *b == 0xfe)
        .take(4)
        .map(|c| serde_bytes::ByteBuf::from(c.to_vec()));
    let snapshot = if first & 4 != 0 {
        parts.next().map(|bytes| Snapshot { bytes, entries: 1 })
    } else {
        None
    };
    let docs = vec![DocChanges {
        doc_id: doc_id.clone(),
        snapshot,
        changes: parts.collect(),
    }];
    let cursor = Cursor { grid: "g1".into(), seq: 1, hash: None };
    if t.replica.apply_remote("g1", &docs, &cursor).is_ok() {
        // Whatever was accepted must read back.
        let _ = t.replica.get(&doc_id);
        let _ = t.replica.conflicts();
    }
});
