//! Criterion micro-benchmarks of the hot paths that the workloads W1–W5 exercise end to end:
//!
//! - `local_write`: `Replica::update` of one field on an existing record, with its index update
//!   (one SQLite transaction, `synchronous = FULL`, in a temp dir on the system's disk);
//! - `relay_accept`: `Relay::accept` of an upload of 100 new one-change visit records, on
//!   `MemoryStorage` and on `SqliteStorage` in a temp dir;
//! - `codec`: `protocol::encode` and `Decoder::push` of a `ServerMsg::Changes` catch-up batch of
//!   300 real changes (75 visits created and edited 3 times, plus their household);
//! - `apply_remote`: the device storing that same catch-up batch (`Replica::apply_remote`) in an
//!   empty replica, the receive path of W5; and W1's catch-up (5 edits of 200 of 2,000 visits and
//!   50 new ones) into a replica that holds the records, opened cold;
//! - `index_query`: `Replica::count` and `Replica::list` with `Query { kind, status, grid }` on a
//!   replica of 10,000 assistance cases in two grids.
//!
//! Every record comes from the workloads' own generator (`src/data.rs`, seed 42), so a figure here
//! and a workload's figure describe the same records. Heavy set-up runs once per benchmark, and
//! only when that benchmark is selected (`cargo bench -p gridsync-bench -- codec`).
//!
//! ```text
//! cargo bench -p gridsync-bench                 # all, about 3 minutes on 2 cores
//! cargo bench -p gridsync-bench -- relay_accept # one group
//! ```

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gridsync_core::protocol::{
    self, Changes, Cursor, Decoder, DocChanges, LoginResponse, ServerMsg, UpChange,
};
use gridsync_core::record::Kind;
use gridsync_core::{Query, Replica};
use gridsync_server::accounts::{Identity, Role};
use gridsync_server::relay::Relay;
use gridsync_server::storage::{MemoryStorage, SqliteStorage, Storage};
use serde_json::Value;
use tempfile::TempDir;

// The workloads' record generator, shared so that both describe the same records. The bench uses
// only part of it, and its unit tests run with the binary's (`cargo test -p gridsync-bench`).
#[allow(dead_code, unused_imports)]
#[path = "../src/data.rs"]
mod data;

use data::{Rng, SEED};

const GRID: &str = "grid-bench";
const WORKER: &str = "worker-bench";
/// Records of the index-query replica: W3's N.
const QUERY_RECORDS: usize = 10_000;
/// Records of the local-write replica: the update picks them in turn, so no document's history
/// grows much during a run.
const WRITE_RECORDS: usize = 1_000;

// ------------------------------------------------------------------ set-up helpers

/// A replica in a fresh temp dir, enrolled as if a sign-in had happened (as `src/setup.rs` does
/// for W3): it can write, and it never talks to a server.
fn offline_replica(grids: &[&str]) -> (Replica, TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("gridsync-criterion-")
        .tempdir()
        .expect("temp dir");
    let replica = enrol(dir.path(), grids);
    (replica, dir)
}

fn enrol(dir: &Path, grids: &[&str]) -> Replica {
    let mut r = Replica::open(dir).expect("open replica");
    let login = LoginResponse {
        device_id: format!("offline-{WORKER}"),
        token: "offline".into(),
        user_id: WORKER.into(),
        username: WORKER.into(),
        display_name: WORKER.into(),
        role: "grid_worker".into(),
        grids: grids.iter().map(|g| g.to_string()).collect(),
    };
    r.enrol("http://127.0.0.1:9", &login)
        .expect("enrol offline");
    r
}

/// Changes as a device uploads them: `visits` door visits with `edits` edits each, plus the
/// household they belong to, in the order they were written. Returns the replica's actor too.
fn device_changes(
    visits: usize,
    edits: usize,
    stream: u64,
) -> (Vec<UpChange>, Vec<String>, String) {
    let (mut r, _dir) = offline_replica(&[GRID]);
    let mut rng = Rng::new(SEED, stream);
    let household = data::create_household(&mut r, &mut rng).expect("household");
    let visit_ids: Vec<String> = (0..visits)
        .map(|_| {
            data::create_record(&mut r, &mut rng, Kind::Visit, &household, edits).expect("visit")
        })
        .collect();
    let changes = r
        .outbox_batch(usize::MAX >> 1, usize::MAX >> 1)
        .expect("outbox")
        .into_iter()
        .map(UpChange::from)
        .collect();
    (changes, visit_ids, r.actor_hex())
}

/// The changes grouped by document, as the relay puts them in a catch-up batch.
fn catch_up_batch(changes: &[UpChange]) -> Changes {
    let mut docs: Vec<DocChanges> = Vec::new();
    for c in changes {
        let bytes = c.bytes.clone().into();
        match docs.iter_mut().find(|d| d.doc_id == c.doc_id) {
            Some(d) => d.changes.push(bytes),
            None => docs.push(DocChanges {
                snapshot: None,
                doc_id: c.doc_id.clone(),
                changes: vec![bytes],
            }),
        }
    }
    Changes {
        grid: GRID.into(),
        docs,
        cursor: Cursor {
            grid: GRID.into(),
            seq: changes.len() as u64,
            hash: Some([7; 32]),
        },
        more: true,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn say(msg: String) {
    eprintln!("hot_paths: {msg}");
}

// ------------------------------------------------------------------ (a) local write

struct WriteSetup {
    replica: Replica,
    ids: Vec<String>,
    rng: Rng,
    _dir: TempDir,
}

fn write_setup() -> WriteSetup {
    let start = Instant::now();
    let (mut replica, dir) = offline_replica(&[GRID]);
    let mut rng = Rng::new(SEED, 11);
    let household = data::create_household(&mut replica, &mut rng).expect("household");
    let ids = (0..WRITE_RECORDS)
        .map(|_| {
            data::create_record(&mut replica, &mut rng, Kind::Visit, &household, 3).expect("visit")
        })
        .collect();
    say(format!(
        "local_write: {WRITE_RECORDS} visits with 3 edits each written in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    WriteSetup {
        replica,
        ids,
        rng,
        _dir: dir,
    }
}

fn bench_local_write(c: &mut Criterion) {
    let mut setup: Option<WriteSetup> = None;
    let mut k = 0usize;
    c.bench_function("local_write/update_one_field", |b| {
        let s = setup.get_or_insert_with(write_setup);
        b.iter_batched(
            || {
                // Record k, field k: an edit of BENCHMARKS.md, one scalar field (the replica sets
                // updated_at). Generated outside the timing.
                k += 1;
                let id = s.ids[k % s.ids.len()].clone();
                let patch = data::edit_patch(&mut s.rng, Kind::Visit, k + k / s.ids.len());
                (id, patch)
            },
            |(id, patch)| s.replica.update(&id, patch).expect("update"),
            BatchSize::SmallInput,
        );
    });
}

// ------------------------------------------------------------------ (b) relay accept

struct AcceptSetup {
    /// The visits' household, accepted before the timing (the relay requires it).
    household: Vec<UpChange>,
    batch: Vec<UpChange>,
    writer: Identity,
}

fn accept_setup() -> AcceptSetup {
    // 100 visits, no edits: 100 one-change records. The household is stored before each
    // iteration, so that the batch is exactly 100 new records.
    let (changes, visit_ids, actor) = device_changes(100, 0, 21);
    let (batch, household): (Vec<UpChange>, Vec<UpChange>) = changes
        .into_iter()
        .partition(|c| visit_ids.contains(&c.doc_id));
    assert_eq!(batch.len(), 100, "one change per new visit");
    say(format!(
        "relay_accept: 100 changes, {} bytes",
        batch.iter().map(|c| c.bytes.len()).sum::<usize>()
    ));
    AcceptSetup {
        household,
        batch,
        writer: Identity {
            user_id: WORKER.into(),
            username: WORKER.into(),
            display_name: WORKER.into(),
            role: Role::GridWorker,
            device_id: "bench-device".into(),
            grids: vec![GRID.into()],
            former_grids: vec![],
            actors: vec![actor],
            readable_kinds: gridsync_server::storage::KindFilter::All,
        },
    }
}

/// Accepts the batch into a fresh relay and checks that nothing was refused.
async fn accept_all(relay: &Relay, writer: &Identity, batch: Vec<UpChange>) {
    let (rejected, witnesses) = relay.accept(writer, batch).await.expect("accept");
    assert!(rejected.is_empty(), "refused: {rejected:?}");
    assert_eq!(witnesses.len(), 1);
}

fn bench_relay_accept(c: &mut Criterion) {
    let rt = runtime();
    let mut setup: Option<AcceptSetup> = None;
    let mut group = c.benchmark_group("relay_accept");
    group.throughput(Throughput::Elements(100));
    // Every iteration accepts the same 100 records into an empty store: a store that already
    // holds them would skip them as known.
    group.bench_function("memory_100_new_records", |b| {
        let s = setup.get_or_insert_with(accept_setup);
        b.iter_batched(
            || {
                let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::default());
                let relay = Relay::new(storage, 1000);
                rt.block_on(accept_all(&relay, &s.writer, s.household.clone()));
                (relay, s.batch.clone())
            },
            |(relay, batch)| {
                rt.block_on(accept_all(&relay, &s.writer, batch));
                relay
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("sqlite_100_new_records", |b| {
        let s = setup.get_or_insert_with(accept_setup);
        b.iter_batched(
            || {
                let dir = tempfile::Builder::new()
                    .prefix("gridsync-criterion-server-")
                    .tempdir()
                    .expect("temp dir");
                let storage: Arc<dyn Storage> =
                    Arc::new(SqliteStorage::open(dir.path()).expect("open server store"));
                let relay = Relay::new(storage, 1000);
                rt.block_on(accept_all(&relay, &s.writer, s.household.clone()));
                (dir, relay, s.batch.clone())
            },
            |(dir, relay, batch)| {
                rt.block_on(accept_all(&relay, &s.writer, batch));
                // Dropped after the timing: closing the store and removing the directory.
                (relay, dir)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

// ------------------------------------------------------------------ (c) codec, (e) apply_remote

/// 75 visits created and edited 3 times, plus their household: 300 changes or a few more.
fn catch_up_setup() -> (ServerMsg, usize) {
    let (changes, _, _) = device_changes(75, 3, 31);
    let n = changes.len();
    let msg = ServerMsg::Changes(catch_up_batch(&changes));
    let frames = protocol::encode(&msg, 1);
    say(format!(
        "catch-up batch: {n} changes, {} bytes of changes, {} frame(s) of {} bytes",
        changes.iter().map(|c| c.bytes.len()).sum::<usize>(),
        frames.len(),
        frames.iter().map(Vec::len).sum::<usize>()
    ));
    (msg, n)
}

fn bench_codec(c: &mut Criterion) {
    let mut setup: Option<(ServerMsg, usize, Vec<Vec<u8>>)> = None;
    let mut build = || {
        let (msg, n) = catch_up_setup();
        let frames = protocol::encode(&msg, 1);
        (msg, n, frames)
    };
    let mut group = c.benchmark_group("codec");
    group.bench_function("encode_catch_up_300_changes", |b| {
        let (msg, _, _) = setup.get_or_insert_with(&mut build);
        b.iter(|| protocol::encode(black_box(&*msg), 1));
    });
    group.bench_function("decode_catch_up_300_changes", |b| {
        let (msg, _, frames) = setup.get_or_insert_with(&mut build);
        b.iter(|| {
            let mut decoder = Decoder::default();
            let mut out = None;
            for f in frames.iter() {
                out = decoder.push::<ServerMsg>(black_box(f)).expect("decode");
            }
            out.expect("a whole message")
        });
        // Checked once, outside the timing: the round trip is lossless.
        let mut decoder = Decoder::default();
        let mut back = None;
        for f in frames.iter() {
            back = decoder.push::<ServerMsg>(f).expect("decode");
        }
        assert_eq!(back.as_ref(), Some(&*msg));
    });
    group.finish();
}

/// W1's catch-up at the device: a replica holding 2,000 visits (created and edited 3 times by
/// another device) receives 5 edits of every 10th record and 50 new visits, 1,050 changes or a
/// few more. Returns the replica's directory (closed) and the batch.
fn w1_setup() -> (TempDir, Changes, usize) {
    let started = Instant::now();
    let (mut writer, _writer_dir) = offline_replica(&[GRID]);
    let mut rng = Rng::new(SEED, 41);
    let household = data::create_household(&mut writer, &mut rng).expect("household");
    let ids: Vec<String> = (0..2_000)
        .map(|_| {
            data::create_record(&mut writer, &mut rng, Kind::Visit, &household, 3).expect("visit")
        })
        .collect();
    let (receiver, dir) = offline_replica(&[GRID]);
    let mut receiver = receiver;
    let history = writer
        .outbox_batch(usize::MAX >> 1, usize::MAX >> 1)
        .expect("outbox");
    let seqs: Vec<i64> = history.iter().map(|e| e.seq).collect();
    for chunk in history.chunks(2_000) {
        let changes: Vec<UpChange> = chunk
            .iter()
            .map(|e| UpChange {
                doc_id: e.doc_id.clone(),
                grid: e.grid_id.clone(),
                bytes: e.bytes.clone(),
            })
            .collect();
        let batch = catch_up_batch(&changes);
        receiver
            .apply_remote(GRID, &batch.docs, &batch.cursor)
            .expect("base");
    }
    writer.acknowledge(&seqs, &[], &[]).expect("acknowledge");
    drop(receiver);
    for id in ids.iter().step_by(10) {
        for k in 3..8 {
            data::edit(&mut writer, &mut rng, Kind::Visit, id, k).expect("edit");
        }
    }
    for _ in 0..50 {
        data::create_record(&mut writer, &mut rng, Kind::Visit, &household, 0).expect("new visit");
    }
    let changes: Vec<UpChange> = writer
        .outbox_batch(usize::MAX >> 1, usize::MAX >> 1)
        .expect("outbox")
        .into_iter()
        .map(UpChange::from)
        .collect();
    let n = changes.len();
    say(format!(
        "W1 catch-up: {n} changes into a replica of 2,000 visits, built in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    (dir, catch_up_batch(&changes), n)
}

/// A copy of a closed replica's directory, opened.
fn copy_replica(from: &Path) -> (Replica, TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("gridsync-criterion-")
        .tempdir()
        .expect("temp dir");
    for entry in std::fs::read_dir(from).expect("read replica dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy replica");
    }
    (Replica::open(dir.path()).expect("open copy"), dir)
}

fn bench_apply_remote(c: &mut Criterion) {
    let mut setup: Option<(Changes, usize)> = None;
    let mut group = c.benchmark_group("apply_remote");
    group.bench_function("catch_up_300_changes_into_empty_replica", |b| {
        let (batch, n) = setup.get_or_insert_with(|| match catch_up_setup() {
            (ServerMsg::Changes(batch), n) => (batch, n),
            _ => unreachable!("catch_up_setup builds a Changes message"),
        });
        b.iter_batched(
            || offline_replica(&[GRID]),
            |(mut replica, dir)| {
                let stored = replica
                    .apply_remote(GRID, &batch.docs, &batch.cursor)
                    .expect("apply_remote");
                assert_eq!(stored, *n);
                (replica, dir)
            },
            BatchSize::PerIteration,
        );
    });
    let mut w1: Option<(TempDir, Changes, usize)> = None;
    group.bench_function("w1_catch_up_into_replica_of_2000", |b| {
        let (base, batch, n) = w1.get_or_insert_with(w1_setup);
        b.iter_batched(
            || copy_replica(base.path()),
            |(mut replica, dir)| {
                let stored = replica
                    .apply_remote(GRID, &batch.docs, &batch.cursor)
                    .expect("apply_remote");
                assert_eq!(stored, *n);
                (replica, dir)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

// ------------------------------------------------------------------ (d) index query

struct QuerySetup {
    replica: Replica,
    query: Query,
    expected: u64,
    _dir: TempDir,
}

fn query_setup() -> QuerySetup {
    let start = Instant::now();
    let grids = ["grid-q1", "grid-q2"];
    let (mut replica, dir) = offline_replica(&grids);
    let mut rng = Rng::new(SEED, 41);
    // One household per grid: a record's household must be in its grid.
    let households: Vec<String> = grids
        .iter()
        .map(|g| {
            let mut fields = data::household_fields(&mut rng);
            fields.insert("grid_id".into(), Value::from(*g));
            replica
                .create(Kind::Household, fields)
                .expect("household")
                .id
        })
        .collect();
    let mut expected = 0;
    for i in 0..QUERY_RECORDS {
        let g = i % grids.len();
        let mut fields = data::case_fields(&mut rng, &households[g], WORKER);
        fields.insert("grid_id".into(), Value::from(grids[g]));
        let id = replica.create(Kind::Case, fields).expect("case").id;
        // W3's history: 3 edits, the first moving the case from draft to open or closed.
        for k in 0..3 {
            let patch = data::edit_patch(&mut rng, Kind::Case, k);
            let record = replica.update(&id, patch).expect("edit");
            if k == 2 && g == 0 && record.str_field("status") == Some("open") {
                expected += 1;
            }
        }
    }
    say(format!(
        "index_query: {QUERY_RECORDS} cases with 3 edits each written in {:.1} s; \
         {expected} open in grid-q1",
        start.elapsed().as_secs_f64()
    ));
    QuerySetup {
        replica,
        query: Query {
            kind: Some(Kind::Case),
            status: Some("open".into()),
            grid: Some(grids[0].into()),
            ..Query::default()
        },
        expected,
        _dir: dir,
    }
}

fn bench_index_query(c: &mut Criterion) {
    let mut setup: Option<QuerySetup> = None;
    let mut group = c.benchmark_group("index_query");
    group.bench_function("count_open_cases_in_grid_of_10k", |b| {
        let s = setup.get_or_insert_with(query_setup);
        b.iter(|| {
            let n = s.replica.count(black_box(&s.query)).expect("count");
            assert_eq!(n, s.expected);
            n
        });
    });
    group.bench_function("list_open_cases_in_grid_of_10k", |b| {
        let s = setup.get_or_insert_with(query_setup);
        b.iter(|| {
            let rows = s.replica.list(black_box(&s.query)).expect("list");
            assert_eq!(rows.len() as u64, s.expected);
            rows
        });
    });
    group.finish();
}

// ------------------------------------------------------------------ harness

fn config() -> Criterion {
    // Short runs: the whole suite takes a few minutes on the 2-core machine.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = bench_local_write, bench_relay_accept, bench_codec, bench_apply_remote,
        bench_index_query
}
criterion_main!(hot_paths);
