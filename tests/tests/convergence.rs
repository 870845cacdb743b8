//! Property: any interleaving of edits, syncs, cut connections and relay restarts across three to
//! five replicas ends with every replica identical and no acknowledged write missing.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::collections::BTreeSet;

use gridsync_core::record::Kind;
use gridsync_core::transport;
use gridsync_core::{Query, Replica};
use gridsync_e2e::proxy::{Fault, Proxy};
use gridsync_e2e::{PASSWORD, TestServer, fields, snapshot};
use gridsync_server::accounts::Role;
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    /// Set a household's risk level (scalar: concurrent sets conflict, and must merge anyway).
    Risk(usize, usize, u8),
    /// Append to a household's notes (text: concurrent edits interleave).
    Note(usize, usize, u8),
    Sync(usize),
    /// The next connection, whichever replica makes it, is cut after this many bytes.
    Cut(u16),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..5usize).prop_map(Op::Create),
        3 => (0..5usize, 0..8usize, 0..3u8).prop_map(|(r, i, v)| Op::Risk(r, i, v)),
        2 => (0..5usize, 0..8usize, 0..26u8).prop_map(|(r, i, c)| Op::Note(r, i, c)),
        4 => (0..5usize).prop_map(Op::Sync),
        1 => (100..4000u16).prop_map(Op::Cut),
        1 => Just(Op::Restart),
    ]
}

fn ids(r: &Replica) -> Vec<String> {
    let mut ids: Vec<String> = r
        .list(&Query {
            kind: Some(Kind::Household),
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect();
    ids.sort();
    ids
}

async fn run(n: usize, ops: Vec<Op>) {
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let user = format!("w{i}");
        server.user(&user, Role::GridWorker, &["g1"]).await;
        let mut r = Replica::open(dir.path()).unwrap();
        transport::sign_in(&mut r, &proxy.url(), &user, PASSWORD, "")
            .await
            .unwrap();
        replicas.push(r);
    }
    let mut created: BTreeSet<String> = BTreeSet::new();
    for op in ops {
        match op {
            Op::Create(r) => {
                let r = &mut replicas[r % n];
                let h = r
                    .create(
                        Kind::Household,
                        fields(json!({"head_name": "户", "household_type": "rented"})),
                    )
                    .unwrap();
                created.insert(h.id);
            }
            Op::Risk(r, i, v) => {
                let r = &mut replicas[r % n];
                if let Some(id) = ids(r).get(i % 8).cloned() {
                    let level = ["low", "medium", "high"][v as usize % 3];
                    r.update(&id, fields(json!({"risk_level": level}))).unwrap();
                }
            }
            Op::Note(r, i, c) => {
                let r = &mut replicas[r % n];
                if let Some(id) = ids(r).get(i % 8).cloned() {
                    let mut notes = r
                        .get(&id)
                        .unwrap()
                        .str_field("notes")
                        .unwrap_or("")
                        .to_string();
                    notes.push(char::from(b'a' + c % 26));
                    r.update(&id, fields(json!({"notes": notes}))).unwrap();
                }
            }
            Op::Sync(r) => {
                // A failure (cut connection, restarting relay) is part of the game.
                let _ = transport::sync_once(&mut replicas[r % n], None).await;
            }
            Op::Cut(bytes) => proxy.plan([Fault {
                cut_down_after: Some(u64::from(bytes)),
                ..Fault::default()
            }]),
            // The relay comes back on the same port, behind the same proxy.
            Op::Restart => server = server.restart().await,
        }
    }
    // The network heals: everyone syncs until nothing is left, twice round.
    for _ in 0..2 {
        for r in replicas.iter_mut() {
            let mut ok = false;
            for _ in 0..5 {
                if transport::sync_once(r, None).await.is_ok() {
                    ok = true;
                    break;
                }
            }
            assert!(ok, "sync never succeeded after the faults stopped");
        }
    }
    let first = snapshot(&mut replicas[0]);
    for r in replicas.iter_mut() {
        assert_eq!(r.status().unwrap().unsent_changes, 0);
        assert_eq!(snapshot(r), first, "replicas differ");
        let held: BTreeSet<String> = ids(r).into_iter().collect();
        assert_eq!(held, created, "a created record is missing");
    }
    server.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, max_shrink_iters: 16, ..ProptestConfig::default() })]

    #[test]
    fn test_any_interleaving_converges(n in 3usize..=5, ops in proptest::collection::vec(op(), 5..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(n, ops));
    }
}
