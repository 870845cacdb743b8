//! Bad networks: connections cut at random byte offsets, delayed and stalled, and a first sync of
//! 10,000 records cut half-way. Sync resumes where it stopped and converges.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::time::Duration;

use automerge::transaction::CommitOptions;
use automerge::{ActorId, Automerge};
use gridsync_core::protocol::UpChange;
use gridsync_core::record::Kind;
use gridsync_core::transport;
use gridsync_core::{Query, Replica};
use gridsync_e2e::proxy::{Fault, Proxy};
use gridsync_e2e::{PASSWORD, TestServer, fields, household, snapshot, sync};
use gridsync_server::accounts::{Identity, Role};
use serde_json::json;

fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Syncs until it succeeds; returns how many attempts failed. Bounded.
async fn sync_until_done(r: &mut Replica) -> usize {
    for failed in 0..40 {
        if transport::sync_once(r, None).await.is_ok() {
            return failed;
        }
    }
    panic!("sync never completed in 40 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sync_through_cut_delayed_and_stalled_connections_converges() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server.worker(da.path(), "wang", &["g1"]).await;
    for n in 0..300 {
        household(&mut a, &format!("户{n}"));
    }
    sync(&mut a).await;

    server.user("li", Role::GridWorker, &["g1"]).await;
    let mut b = Replica::open(db.path()).unwrap();
    transport::sign_in(&mut b, &proxy.url(), "li", PASSWORD, "")
        .await
        .unwrap();
    for n in 0..100 {
        household(&mut b, &format!("乙{n}"));
    }
    // Every connection of B's misbehaves somehow, until the plan runs out.
    let mut x: u64 = 0xdead_beef_cafe_f00d;
    let mut faults = Vec::new();
    for i in 0..12 {
        let r = next(&mut x);
        faults.push(match i % 4 {
            0 => Fault {
                cut_down_after: Some(200 + r % 6_000),
                ..Fault::default()
            },
            1 => Fault {
                cut_up_after: Some(100 + r % 4_000),
                ..Fault::default()
            },
            2 => Fault {
                delay: Duration::from_millis(5 + r % 20),
                cut_down_after: Some(1000 + r % 8_000),
                ..Fault::default()
            },
            _ => Fault {
                cut_down_after: Some(500 + r % 5_000),
                stall: Duration::from_millis(300),
                ..Fault::default()
            },
        });
    }
    let cuts = faults.len();
    proxy.plan(faults);
    let failed = sync_until_done(&mut b).await;
    // The first two faults always land: a cut inside the catch-up of 300 records, and one inside
    // the upload of 100. How many later ones do depends on timing: once a cut connection has
    // delivered the whole catch-up (the relay sends it unasked, while the upload goes up), the
    // next syncs move only a few hundred bytes, fewer than some of the planned cut offsets.
    assert!(
        failed >= 2,
        "the faults did hit the sync: {failed} failures"
    );
    sync(&mut a).await;
    assert_eq!(a.count(&Query::default()).unwrap(), 400);
    assert_eq!(snapshot(&mut a), snapshot(&mut b));
    eprintln!(
        "network faults: {cuts} connections cut, delayed or stalled; {failed} syncs failed; converged"
    );
    server.stop().await;
}

/// Seeds the relay with `n` household records authored by `seeder`'s device, straight through
/// the relay's own accept path (a real sync of them would only make the test slower).
async fn seed(server: &TestServer, seeder: &Replica, n: usize) {
    let id = seeder.identity().unwrap();
    let identity = Identity {
        user_id: id.worker_id.clone(),
        username: id.worker_id.clone(),
        display_name: id.display_name.clone(),
        role: Role::GridWorker,
        device_id: id.device_id.clone(),
        grids: vec!["g1".into()],
        former_grids: vec![],
        actors: vec![seeder.actor_hex()],
        readable_kinds: gridsync_server::storage::KindFilter::All,
    };
    let actor: ActorId = seeder.actor_hex().parse().unwrap();
    let notes = "家中老人行动不便，需定期探访，子女在外地务工。".repeat(8);
    for chunk in 0..n.div_ceil(500) {
        let mut batch = Vec::new();
        for i in chunk * 500..((chunk + 1) * 500).min(n) {
            let doc_id = format!("seed-{i:05}");
            let record = fields(json!({
                "id": doc_id, "kind": "household", "grid_id": "g1", "schema_version": 1,
                "created_by": id.worker_id, "head_name": format!("住户{i}"),
                "household_type": "registered", "notes": notes,
                "address": {"estate": "幸福小区", "building": (i / 100).to_string(), "door": (i % 100).to_string()},
            }));
            let mut doc = Automerge::new().with_actor(actor.clone());
            let mut tx = doc.transaction();
            gridsync_core::doc::reconcile_root(
                &mut tx,
                Kind::Household,
                &Default::default(),
                &record,
            )
            .unwrap();
            tx.commit_with(CommitOptions::default().with_message(id.worker_id.clone()));
            batch.push(UpChange {
                doc_id,
                grid: "g1".into(),
                bytes: doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
            });
        }
        let (rejected, _) = server.state.relay.accept(&identity, batch).await.unwrap();
        assert!(rejected.is_empty(), "{rejected:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_first_sync_of_10000_records_resumes_after_a_cut() {
    const N: u64 = 10_000;
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let seeder = server.worker(dirs[0].path(), "seeder", &["g1"]).await;
    seed(&server, &seeder, N as usize).await;

    // An uncut first sync, for the full size.
    let mut whole = server.worker(dirs[1].path(), "whole", &["g1"]).await;
    let full = sync(&mut whole).await;
    assert_eq!(full.stats.changes_received, N);

    // A new device whose first sync is cut when half of that has arrived.
    server.user("new", Role::GridWorker, &["g1"]).await;
    let mut fresh = Replica::open(dirs[2].path()).unwrap();
    transport::sign_in(&mut fresh, &proxy.url(), "new", PASSWORD, "")
        .await
        .unwrap();
    proxy.plan([Fault {
        cut_down_after: Some(full.bytes_received / 2),
        ..Fault::default()
    }]);
    let cut = transport::sync_once(&mut fresh, None).await;
    assert!(cut.is_err(), "the connection was cut half-way");

    // What arrived before the cut is usable at once.
    let held = fresh.count(&Query::default()).unwrap();
    assert!(held > N / 4 && held < N, "{held} records after the cut");
    let some = fresh
        .list(&Query {
            limit: Some(1),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(
        fresh.get(&some[0].id).unwrap().fields["household_type"],
        "registered"
    );

    let resumed = sync(&mut fresh).await;
    let again = resumed.stats.changes_received - (N - held);
    assert!(again * 10 < N, "re-downloaded {again} of {N} changes");
    assert_eq!(fresh.count(&Query::default()).unwrap(), N);
    eprintln!(
        "first sync cut at half: {held} records kept, {again} changes ({:.1} %) downloaded again, resumed with {} of {} bytes",
        again as f64 * 100.0 / N as f64,
        resumed.bytes_received,
        full.bytes_received
    );
    server.stop().await;
}
