//! Golden bytes of what the replica stores outside its SQL schema and the Automerge bytes: the
//! values of its `meta` rows (identity, scope, token), its cursors and witnesses (a sequence
//! number and a 32-byte hash), its outbox rows (the change's hash beside its bytes, a refusal's
//! reason), and the heads of the query index (32-byte hashes end to end). One fixture,
//! tests/golden/store/replica_rows.hex: the rows as text. `GRIDSYNC_BLESS=1` rewrites it on
//! purpose (docs/protocol.md §12).

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

#[path = "golden/fixture.rs"]
mod fixture;

use gridsync_core::Replica;
use gridsync_core::protocol::{CommunityZone, Cursor, LoginResponse};
use gridsync_core::record::Kind;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

const GRID: &str = "370102-grid-07";

fn login() -> LoginResponse {
    LoginResponse {
        device_id: "0190a6f2-7b3c-7d4e-8f90-123456789abc".into(),
        token: "7f".repeat(32),
        user_id: "0190a6f2-0000-7000-8000-0000000000aa".into(),
        username: "wang".into(),
        display_name: "王芳".into(),
        role: "grid_worker".into(),
        grids: vec![GRID.into(), "370102-grid-08".into()],
    }
}

fn blob(b: Option<Vec<u8>>) -> String {
    b.map_or_else(|| "NULL".into(), hex::encode)
}

/// The rows as text, with what is random per replica (the actor, record ids) named, not shown.
fn dump(conn: &Connection, record_id: &str) -> String {
    let mut out = String::new();
    let mut meta = conn
        .prepare("SELECT key, value FROM meta ORDER BY key")
        .unwrap();
    let rows = meta
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for row in rows {
        let (key, value) = row.unwrap();
        let value = match key.as_str() {
            // 16 random bytes, lowercase hex.
            "actor" if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                "<32 hex digits>".to_string()
            }
            _ => value,
        };
        out.push_str(&format!("meta {key} = {value}\n"));
    }
    for table in ["cursors", "witnesses"] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT grid_id, seq, hash FROM {table} ORDER BY grid_id"
            ))
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (grid, seq, hash) = row.unwrap();
            out.push_str(&format!(
                "{table} {grid} seq = {seq} hash = {}\n",
                blob(hash)
            ));
        }
    }
    let mut stmt = conn
        .prepare("SELECT seq, doc_id, grid_id, hash, bytes, rejected FROM outbox ORDER BY seq")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .unwrap();
    let mut change_hashes = Vec::new();
    for row in rows {
        let (seq, doc, grid, hash, bytes, rejected) = row.unwrap();
        let doc = if doc == record_id {
            "<the record>"
        } else {
            "<another>"
        };
        // The change's hash: SHA-256 of the chunk after its 8-byte magic and checksum.
        let change_hash = Sha256::digest(&bytes[8..]).to_vec();
        let hash = if hash == change_hash {
            "<the change's hash>".into()
        } else {
            hex::encode(&hash)
        };
        change_hashes.push(change_hash);
        out.push_str(&format!(
            "outbox {seq} doc = {doc} grid = {grid} hash = {hash} bytes = <an Automerge change> \
             rejected = {}\n",
            rejected.unwrap_or_else(|| "NULL".into())
        ));
    }
    let heads: Vec<u8> = conn
        .query_row(
            "SELECT heads FROM records WHERE doc_id = ?1",
            [record_id],
            |r| r.get(0),
        )
        .unwrap();
    let last = change_hashes.last().cloned().unwrap_or_default();
    let heads = if heads == last {
        "<the last change's hash>".into()
    } else {
        hex::encode(&heads)
    };
    out.push_str(&format!("records heads = {heads}\n"));
    out
}

#[test]
fn test_replica_rows_match_their_golden_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Replica::open(dir.path()).unwrap();
    r.enrol_in_zone(
        "https://relay.example.org",
        &login(),
        None,
        Some(CommunityZone {
            utc_offset_minutes: 480,
        }),
    )
    .unwrap();
    let cursor = Cursor {
        grid: GRID.into(),
        seq: 7,
        hash: Some([0x5c; 32]),
    };
    r.apply_remote(GRID, &[], &cursor).unwrap();
    let witness = Cursor {
        grid: GRID.into(),
        seq: 9,
        hash: Some([0x6d; 32]),
    };
    r.acknowledge(&[], &[(1, "无权修改 not allowed".into())], &[witness])
        .unwrap();
    let fields = serde_json::json!({
        "head_name": "张三",
        "household_type": "registered",
        "visit_class": "priority",
        "address": {"estate": "幸福小区", "building": "3", "unit": "2", "door": "301"},
    });
    let id = r
        .create(Kind::Household, fields.as_object().unwrap().clone())
        .unwrap()
        .id;
    r.acknowledge(&[], &[(1, "无权修改 not allowed".into())], &[])
        .unwrap();
    drop(r);

    let conn = Connection::open(dir.path().join("replica.sqlite3")).unwrap();
    let text = dump(&conn, &id);
    let what = format!("The replica's rows outside its schema, as text (UTF-8):\n{text}");
    let mut failures = Vec::new();
    if let Err(e) = fixture::check("store", "replica_rows", &what, text.as_bytes()) {
        failures.push(e);
    }
    fixture::report(&failures);
}
