//! Processes killed with SIGKILL: a write that returned is never lost, and the file stays sound.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::path::Path;

use gridsync_core::{Query, Replica};

/// Deterministic "random" kill points.
fn kill_points(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % 120) as usize
        })
        .collect()
}

#[test]
fn test_device_killed_while_writing_keeps_every_returned_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut returned: Vec<String> = Vec::new();
    let kills = kill_points(8);
    for &after in &kills {
        returned.extend(gridsync_e2e::write_and_kill(
            Path::new(env!("CARGO_BIN_EXE_gridsync-test-writer")),
            dir.path(),
            after as u64,
        ));
    }

    let conn = rusqlite::Connection::open(dir.path().join(gridsync_core::store::DB_FILE)).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    let mut r = Replica::open(dir.path()).unwrap();
    for id in &returned {
        let rec = r
            .get(id)
            .unwrap_or_else(|e| panic!("write {id} returned but is gone: {e}"));
        assert!(rec.str_field("head_name").is_some());
    }
    let stored = r.count(&Query::default()).unwrap() as usize;
    assert!(stored >= returned.len());
    assert_eq!(
        r.status().unwrap().unsent_changes as usize,
        stored,
        "every write is queued to send"
    );
    eprintln!(
        "device crash test: {} kills, {} returned writes, all present ({} stored)",
        kills.len(),
        returned.len(),
        stored
    );
}
