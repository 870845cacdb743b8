//! Replays every saved fuzz input (fuzz/regressions/<target>/*) through the same code the fuzz
//! targets exercise: each must end in an error or a value, never a panic.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::path::PathBuf;

use gridsync_core::Replica;
use gridsync_core::protocol::{
    self, ClientMsg, Cursor, Decoder, DocChanges, LoginResponse, ServerMsg,
};

// The `deep_nesting` target's program and checks, shared so both run the same code.
#[path = "../../fuzz/common/nesting.rs"]
mod nesting;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no saved inputs for {target}");
    out
}

#[test]
fn test_saved_decode_inputs_do_not_panic() {
    for (name, data) in inputs("decode_message") {
        // A panic fails the test; a decoded value or an error are both fine answers.
        let _ = protocol::peek_hello(&data);
        let _ = Decoder::default().push::<ClientMsg>(&data);
        let _ = Decoder::default().push::<ServerMsg>(&data);
        let mut stream = Decoder::with_limit(1 << 20);
        for frame in data.split(|b| *b == 0xff) {
            if stream.push::<ClientMsg>(frame).is_err() {
                stream = Decoder::with_limit(1 << 20);
            }
        }
        eprintln!("replayed {name}");
    }
}

fn fuzz_replica(dir: &std::path::Path) -> Replica {
    let mut replica = Replica::open(dir).unwrap();
    let login = LoginResponse {
        device_id: "fuzz".into(),
        token: "fuzz".into(),
        user_id: "fuzz".into(),
        username: "fuzz".into(),
        display_name: "fuzz".into(),
        role: "grid_worker".into(),
        grids: vec!["g1".into()],
    };
    replica.enrol("http://127.0.0.1:9", &login).unwrap();
    replica
}

#[test]
fn test_saved_nesting_inputs_are_refused_or_read_within_bounds() {
    // 300 and 2,000 levels (in a text's block, through lists), a deep value losing a conflict,
    // and a record exactly at the limit: each checked, read and received on a small stack.
    let dir = tempfile::tempdir().unwrap();
    let mut replica = fuzz_replica(dir.path());
    for (name, data) in inputs("deep_nesting") {
        nesting::exercise(&mut replica, &data);
        eprintln!("replayed {name}");
    }
}

#[test]
fn test_saved_change_inputs_do_not_panic_or_damage_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let mut replica = fuzz_replica(dir.path());
    for (name, data) in inputs("apply_changes") {
        let docs = vec![DocChanges {
            snapshot: None,
            doc_id: "doc-0".into(),
            changes: data
                .split(|b| *b == 0xfe)
                .take(4)
                .map(|c| serde_bytes::ByteBuf::from(c.to_vec()))
                .collect(),
        }];
        let cursor = Cursor {
            grid: "g1".into(),
            seq: 1,
            hash: None,
        };
        if replica.apply_remote("g1", &docs, &cursor).is_ok() {
            let _ = replica.get("doc-0");
        }
        // The store is still usable after each input.
        replica
            .status()
            .unwrap_or_else(|e| panic!("{name} broke the replica: {e}"));
    }
}
