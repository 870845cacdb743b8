//! The conformance suites on PostgreSQL, and what only a shared database has to show: seq order
//! is commit order across connections, and relays starting together migrate once.

use super::testing::TestDatabase;
use super::*;
use gridsync_core::record::Kind;

#[tokio::test]
async fn test_postgres_storage_conforms() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let storage = db.storage().await;
    crate::storage::tests::conformance(&storage).await;
    // What /metrics reports as the store's size: the database, migrations and all.
    let size = storage.store_bytes().await.unwrap().unwrap();
    assert!(size > 1 << 20, "{size}");
}

#[tokio::test]
async fn test_postgres_storage_answers_dashboard_queries() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    crate::storage::tests::dashboard_conformance(&db.storage().await).await;
}

#[tokio::test]
async fn test_postgres_storage_keeps_attachment_metadata() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    crate::storage::tests::attachments_conformance(&db.storage().await).await;
}

#[tokio::test]
async fn test_postgres_storage_lists_records_changed_since() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    crate::storage::tests::changed_since_conformance(&db.storage().await).await;
}

#[tokio::test]
async fn test_postgres_storage_keeps_a_change_its_snapshot_holds_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    crate::storage::tests::in_snapshot_conformance(&db.storage().await).await;
}

#[tokio::test]
async fn test_postgres_storage_keeps_accounts() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    crate::storage::tests::accounts_conformance(&db.storage().await).await;
}

#[tokio::test]
async fn test_postgres_storage_keeps_everything_across_reconnect_and_migrates_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let id = {
        let s = db.storage().await;
        crate::storage::tests::conformance(&s).await;
        s.server_id().await.unwrap()
    };
    // Two relays starting at once on the same database: one migrates, both serve.
    let (a, b) = tokio::join!(
        PostgresStorage::connect(db.url()),
        PostgresStorage::connect(db.url())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.server_id().await.unwrap(), id);
    assert_eq!(b.server_id().await.unwrap(), id);
    let c = a.client().await.unwrap();
    let version: i64 = c
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, MIGRATIONS.len() as i64);
    assert_eq!(
        b.log_since("g1", &KindFilter::All, 0, 100, 1 << 20)
            .await
            .unwrap()
            .0
            .len(),
        4
    );
}

/// Backends (the test's own connection among them) of the database waiting for a lock.
async fn waiting(s: &PostgresStorage) -> i64 {
    let c = s.client().await.unwrap();
    c.query_one(
        "SELECT COUNT(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Issue 13's hard part on one relay's connections (several relays share them the same way):
/// a commit that took its seq and is slow to finish (here it waits for a row another
/// transaction holds) keeps every later commit waiting, so a device that catches up in between
/// gets a cursor below the slow entry, and gets the entry once it is visible. Without the
/// advisory lock the later commit takes a higher seq and is visible first: the cursor passes the
/// slow entry, which that device would never be sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_cursor_never_passes_an_entry_that_a_slower_commit_makes_visible_later() {
    use std::sync::Arc;

    use crate::storage::{DocUpdate, NewChange};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let s = Arc::new(db.storage().await);
    let commit = |doc: &str, n: u8| Commit {
        changes: vec![NewChange {
            grid_id: "g1".into(),
            doc_id: doc.into(),
            kind: Some(Kind::Case),
            hash: [n; 32],
            bytes: vec![n; 8],
            device_id: "phone".into(),
            worker_id: "wang".into(),
            in_snapshot: false,
        }],
        docs: vec![DocUpdate {
            doc_id: doc.into(),
            grid_id: "g1".into(),
            kind: Some(Kind::Case),
            heads: vec![[n; 32]],
            index: None,
            snapshot: None,
            facts: None,
            parallel: false,
            attachments: None,
        }],
        moves: Vec::new(),
    };
    s.commit(commit("slow", 1)).await.unwrap();
    let mut holder = s.client().await.unwrap();
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT 1 FROM docs WHERE doc_id = 'slow' FOR UPDATE", &[])
        .await
        .unwrap();
    let spawn = |doc: &'static str, n: u8| {
        let (s, c) = (s.clone(), commit(doc, n));
        tokio::spawn(async move { s.commit(c).await })
    };
    let slow = spawn("slow", 2);
    for _ in 0..200 {
        if waiting(&s).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(waiting(&s).await, 1, "the slow commit waits for its row");
    let fast = spawn("fast", 3);
    // Either it waits for the slow one (seq order is commit order) or it is done.
    for _ in 0..200 {
        if fast.is_finished() || waiting(&s).await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (seen, _) = s
        .log_since("g1", &KindFilter::All, 0, 100, 1 << 20)
        .await
        .unwrap();
    let cursor = seen.last().map_or(0, |e| e.seq);
    hold.rollback().await.unwrap();
    slow.await.unwrap().unwrap();
    fast.await.unwrap().unwrap();
    let (rest, _) = s
        .log_since("g1", &KindFilter::All, cursor, 100, 1 << 20)
        .await
        .unwrap();
    let mut got: Vec<u8> = seen.iter().chain(&rest).map(|e| e.hash[0]).collect();
    got.sort();
    assert_eq!(
        got,
        [1, 2, 3],
        "a device that caught up to seq {cursor} in between never gets the slow entry"
    );
}

/// Two stores on one database (two relays' pools) commit at once while a device catches up
/// by cursor throughout, round after round: it receives every entry exactly once, in seq order,
/// never skipping one that committed after it read past a higher seq. 20 rounds in CI;
/// `GRIDSYNC_NO_SKIP_ROUNDS=1000` runs a long loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_catching_up_during_concurrent_commits_of_two_relays_never_skips_an_entry() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::storage::NewChange;
    const COMMITS: usize = 15;
    let rounds: usize = std::env::var("GRIDSYNC_NO_SKIP_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let relays = [Arc::new(db.storage().await), Arc::new(db.storage().await)];
    let mut n: u32 = 0;
    for round in 0..rounds {
        let done = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for (r, s) in relays.iter().enumerate() {
            let s = s.clone();
            let first = n + (r * COMMITS) as u32;
            writers.push(tokio::spawn(async move {
                for i in 0..COMMITS as u32 {
                    let k = first + i;
                    let mut hash = [0u8; 32];
                    hash[..4].copy_from_slice(&k.to_be_bytes());
                    s.commit(Commit {
                        changes: vec![NewChange {
                            grid_id: "g1".into(),
                            doc_id: format!("d{k}"),
                            kind: Some(Kind::Case),
                            hash,
                            bytes: vec![1; 64],
                            device_id: format!("phone-{r}"),
                            worker_id: "wang".into(),
                            in_snapshot: false,
                        }],
                        docs: Vec::new(),
                        moves: Vec::new(),
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        n += (relays.len() * COMMITS) as u32;
        let reader = {
            let (s, done) = (relays[round % 2].clone(), done.clone());
            tokio::spawn(async move {
                let mut cursor = 0;
                let mut got: Vec<(u64, [u8; 32])> = Vec::new();
                // Bounded: the writers end; then one last read after they did.
                for _ in 0..100_000 {
                    let last = done.load(Ordering::SeqCst);
                    let (batch, _) = s
                        .log_since("g1", &KindFilter::All, cursor, 7, 1 << 20)
                        .await
                        .unwrap();
                    if let Some(e) = batch.last() {
                        cursor = e.seq;
                    }
                    got.extend(batch.into_iter().map(|e| (e.seq, e.hash)));
                    if last && cursor == s.head("g1").await.unwrap().map_or(0, |h| h.0) {
                        break;
                    }
                }
                got
            })
        };
        for w in writers {
            w.await.unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let got = reader.await.unwrap();
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "round {round}");
        let mut hashes: Vec<[u8; 32]> = got.iter().map(|e| e.1).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(
            hashes.len(),
            n as usize,
            "round {round}: the device missed an entry"
        );
    }
}

/// Two relays on one database share their sign-in throttle: wrong passwords counted on one
/// hold the next attempt back on the other, so a guesser gains nothing by going round the relays
/// behind a load balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_wrong_passwords_on_one_relay_hold_the_next_attempt_back_on_the_other() {
    use crate::accounts::{LoginError, NewUser, Role, hash_password};
    use crate::{Config, Server};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let config = Config {
        database: Some(db.url().to_string()),
        data_dir: tempfile::tempdir().unwrap().path().to_path_buf(),
        ..Config::default()
    };
    let (one, two) = (
        Server::connect(&config).await.unwrap(),
        Server::connect(&config).await.unwrap(),
    );
    one.state
        .accounts
        .add_user(NewUser {
            username: "zhao".into(),
            display_name: "赵".into(),
            role: Role::GridWorker,
            password_hash: hash_password("zhao-pass-2026").unwrap(),
        })
        .await
        .unwrap();
    let addr: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    for _ in 0..5 {
        let wrong = one
            .state
            .limiter
            .attempt(&*one.state.accounts, "zhao", "guess", addr)
            .await;
        assert!(matches!(wrong, Err(LoginError::BadCredentials)));
    }
    // The other relay learns it through the database's notices (asking counts no failure).
    let mut held = None;
    for _ in 0..200 {
        held = two.state.limiter.blocked("zhao", addr);
        if held.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        held.is_some(),
        "the second relay never learned of the failures"
    );
    let next = two
        .state
        .limiter
        .attempt(&*two.state.accounts, "zhao", "zhao-pass-2026", addr)
        .await;
    assert!(matches!(next, Err(LoginError::Throttled(_))), "{next:?}");
}
