#![allow(clippy::unwrap_used)]

use std::path::Path;

use gridsync_core::protocol::Hash;
use gridsync_core::record::Kind;
use rusqlite::types::Value as SqlValue;
use tokio_postgres::NoTls;

use super::read::{check_tables, sqlite_columns, sqlite_tables};
use super::write::{PgValue, convert};
use super::*;
use crate::accounts::{AccountStore, ApiTokenStore, Area, Device, NewUser, Role};
use crate::storage::postgres::testing::TestDatabase;
use crate::storage::{
    Attachments as _, Commit, Commits, DocUpdate, KindFilter, Log as _, NewChange, PackedSnapshot,
    RecordQuery, Storage,
};

fn schema(dir: &Path) -> rusqlite::Connection {
    drop(SqliteStorage::open(dir).unwrap());
    rusqlite::Connection::open(dir.join(DB_FILE)).unwrap()
}

#[test]
fn test_every_table_of_the_sqlite_schema_is_copied_or_skipped_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let c = schema(dir.path());
    let tables = sqlite_tables(&c).unwrap();
    // A later migration's table fails here until migrate copies it or says why not.
    check_tables(&tables).unwrap();
    for t in COPIED.iter().chain(SKIPPED.iter().map(|(t, _)| t)) {
        assert!(tables.iter().any(|s| s == t), "{t} is not in the schema");
    }
    // Every column holding a log seq is renumbered in a merge, and only those.
    for table in COPIED {
        for column in sqlite_columns(&c, table).unwrap() {
            let listed = SEQ_COLUMNS.contains(&(*table, column.as_str()));
            assert_eq!(
                column.contains("seq"),
                listed,
                "{table}.{column}: a seq column must be in SEQ_COLUMNS (and nothing else)"
            );
        }
    }
    for (table, column) in SEQ_COLUMNS {
        assert!(
            sqlite_columns(&c, table)
                .unwrap()
                .contains(&column.to_string()),
            "{table}.{column} is not in the schema"
        );
    }
    c.execute_batch("CREATE TABLE later_feature (id TEXT PRIMARY KEY)")
        .unwrap();
    let err = check_tables(&sqlite_tables(&c).unwrap()).unwrap_err();
    assert!(err.contains("later_feature"), "{err}");
}

#[test]
fn test_values_convert_to_the_column_type_or_are_refused_by_name() {
    let ok = |ty: &Type, v: SqlValue| format!("{:?}", convert("t", "c", ty, v).unwrap());
    assert_eq!(ok(&Type::BOOL, SqlValue::Integer(1)), "Bool(Some(true))");
    assert_eq!(ok(&Type::BOOL, SqlValue::Null), "Bool(None)");
    assert_eq!(ok(&Type::FLOAT8, SqlValue::Integer(3)), "Float8(Some(3.0))");
    assert_eq!(ok(&Type::INT8, SqlValue::Integer(-5)), "Int8(Some(-5))");
    let err = convert("users", "active", &Type::BOOL, SqlValue::Integer(2)).unwrap_err();
    assert!(err.contains("users.active"), "{err}");
    let err = convert("log", "hash", &Type::BYTEA, SqlValue::Text("x".into())).unwrap_err();
    assert!(err.contains("log.hash"), "{err}");
    let err = convert("t", "at", &Type::TIMESTAMPTZ, SqlValue::Null).unwrap_err();
    assert!(err.contains("t.at") && err.contains("timestamptz"), "{err}");
}

use tokio_postgres::types::Type;

/// Every row of every copied table, values as PostgreSQL takes them, sorted: from SQLite...
fn sqlite_dump(dir: &Path, pg_types: &[(String, Vec<Type>)]) -> Vec<String> {
    let c = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let mut out = Vec::new();
    for (table, types) in pg_types {
        let columns = sqlite_columns(&c, table).unwrap();
        let mut stmt = c
            .prepare(&format!("SELECT {} FROM {table}", columns.join(", ")))
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut dump = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let values: Vec<PgValue> = (0..columns.len())
                .map(|i| convert(table, &columns[i], &types[i], row.get(i).unwrap()).unwrap())
                .collect();
            dump.push(format!("{table} {values:?}"));
        }
        dump.sort();
        out.extend(dump);
    }
    out
}

/// ... and from PostgreSQL; with each table's column types there, in SQLite's column order.
async fn pg_dump(url: &str, dir: &Path) -> (Vec<String>, Vec<(String, Vec<Type>)>) {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let c = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let (mut out, mut types) = (Vec::new(), Vec::new());
    for table in COPIED {
        let columns = sqlite_columns(&c, table).unwrap();
        let stmt = client
            .prepare(&format!("SELECT {} FROM {table}", columns.join(", ")))
            .await
            .unwrap();
        let tys: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        let mut dump = Vec::new();
        for row in client.query(&stmt, &[]).await.unwrap() {
            let values: Vec<PgValue> = tys
                .iter()
                .enumerate()
                .map(|(i, ty)| match *ty {
                    Type::INT8 => PgValue::Int8(row.get(i)),
                    Type::BOOL => PgValue::Bool(row.get(i)),
                    Type::TEXT => PgValue::Text(row.get(i)),
                    Type::BYTEA => PgValue::Bytes(row.get(i)),
                    Type::FLOAT8 => PgValue::Float8(row.get(i)),
                    ref other => panic!("{table}: a column of type {other}"),
                })
                .collect();
            dump.push(format!("{table} {values:?}"));
        }
        dump.sort();
        out.extend(dump);
        types.push((table.to_string(), tys));
    }
    (out, types)
}

/// What a store answers through the traits, for the grids, documents, blobs and users the
/// SQLite store in `dir` holds (seqs left out when `seqs` is false: a merge renumbers them).
async fn answers<S: Storage + AccountStore + ApiTokenStore>(
    s: &S,
    dir: &Path,
    seqs: bool,
) -> Vec<String> {
    let c = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let list = |sql: &str| -> Vec<String> {
        let mut stmt = c.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    let grids = list("SELECT grid_id FROM log UNION SELECT grid_id FROM docs ORDER BY 1");
    let docs = list("SELECT doc_id FROM docs ORDER BY 1");
    // Only what the source holds: a merged target holds other communities too.
    let (area_ids, user_ids) = (list("SELECT id FROM areas"), list("SELECT id FROM users"));
    let (device_ids, token_ids) = (
        list("SELECT id FROM devices"),
        list("SELECT id FROM api_tokens"),
    );
    let hashes: Vec<Vec<u8>> = {
        let mut stmt = c.prepare("SELECT hash FROM attachment_blobs").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    let tokens: Vec<Vec<u8>> = {
        let mut stmt = c
            .prepare("SELECT token_hash FROM devices UNION ALL SELECT token_hash FROM api_tokens")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    let mut out = Vec::new();
    let mut say = |what: String| out.push(what);
    for g in &grids {
        let (entries, more) = s
            .log_since(g, &KindFilter::All, 0, 1_000_000, usize::MAX)
            .await
            .unwrap();
        let entries: Vec<_> = entries
            .into_iter()
            .map(|e| {
                (
                    seqs.then_some(e.seq),
                    e.doc_id,
                    e.hash,
                    e.bytes,
                    e.device_id,
                )
            })
            .collect();
        say(format!("log {g} {entries:?} {more}"));
        let head = s
            .head(g)
            .await
            .unwrap()
            .map(|(seq, h)| (seqs.then_some(seq), h));
        say(format!("head {g} {head:?}"));
        say(format!(
            "heads {g} {:?}",
            s.doc_heads(g, &KindFilter::All, None, 100_000)
                .await
                .unwrap()
        ));
    }
    for d in &docs {
        say(format!("doc {d} {:?}", s.load_doc(d).await.unwrap()));
        let moves: Vec<_> = s
            .moves_of(d)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.from_grid, m.to_grid, m.left, m.moved_by, m.moved_at))
            .collect();
        say(format!("moves {d} {moves:?}"));
        let sources: Vec<_> = s
            .change_sources(d)
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                (
                    c.hash,
                    seqs.then_some(c.seq),
                    c.device_id,
                    c.worker_id,
                    c.received_at,
                )
            })
            .collect();
        say(format!("sources {d} {sources:?}"));
        say(format!(
            "attachments {d} {:?}",
            s.doc_attachments(d).await.unwrap()
        ));
    }
    let everything = RecordQuery {
        grids: grids.clone(),
        include_deleted: true,
        ..RecordQuery::default()
    };
    let page = s.list_records(&everything).await.unwrap();
    say(format!("records {page:?}"));
    let review = RecordQuery {
        needs_review: true,
        ..everything.clone()
    };
    say(format!(
        "review {:?}",
        s.list_records(&review).await.unwrap().total
    ));
    say(format!("tally {:?}", s.tally(&everything).await.unwrap()));
    // The live records, counted from the per-grid tallies (the copy counts them at its end).
    let live = RecordQuery {
        include_deleted: false,
        ..everything.clone()
    };
    say(format!("tallied {:?}", s.tally(&live).await.unwrap()));
    let month = RecordQuery {
        from: Some("2026-11-01T00:00:00Z".into()),
        to: Some("2026-12-01T00:00:00Z".into()),
        ..live.clone()
    };
    say(format!(
        "month {:?}",
        s.grid_counts(&month, &[]).await.unwrap()
    ));
    let (changed, _) = s
        .changed_since(&grids, &KindFilter::All, 0, 1_000_000)
        .await
        .unwrap();
    let changed: Vec<_> = changed
        .into_iter()
        .map(|c| (c.doc_id, seqs.then_some(c.seq)))
        .collect();
    say(format!("changed {changed:?}"));
    for h in &hashes {
        let h: Hash = h.as_slice().try_into().unwrap();
        say(format!("blob {:?}", s.stored_blob(&h).await.unwrap()));
        say(format!("uses {:?}", s.attachment_uses(&h).await.unwrap()));
    }
    let mut areas = s.areas().await.unwrap();
    areas.retain(|a| area_ids.contains(&a.id));
    areas.sort_by(|a, b| a.id.cmp(&b.id));
    say(format!("areas {areas:?}"));
    for u in s.users().await.unwrap() {
        if !user_ids.contains(&u.id) {
            continue;
        }
        say(format!(
            "grids of {} {:?}",
            u.username,
            s.grids_of(&u).await.unwrap()
        ));
        say(format!(
            "areas of {} {:?}",
            u.username,
            s.user_areas(&u.id).await.unwrap()
        ));
        say(format!("user {u:?}"));
    }
    for d in s.devices(None).await.unwrap() {
        if !device_ids.contains(&d.id) {
            continue;
        }
        say(format!(
            "actors {} {:?}",
            d.id,
            s.device_actors(&d.id).await.unwrap()
        ));
        say(format!("device {d:?}"));
    }
    for t in &tokens {
        say(format!("token {:?}", s.device_by_token(t).await.unwrap()));
        say(format!(
            "api token {:?}",
            s.api_token_by_hash(t).await.unwrap()
        ));
    }
    let mut api_tokens = s.api_tokens().await.unwrap();
    api_tokens.retain(|t| token_ids.contains(&t.id));
    say(format!("api tokens {api_tokens:?}"));
    out
}

/// A SQLite store filled by one of the conformance suites, through the traits' real code.
async fn filled(fill: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStorage::open(dir.path()).unwrap();
    match fill {
        "log" => crate::storage::tests::conformance(&s).await,
        "dashboard" => crate::storage::tests::dashboard_conformance(&s).await,
        "attachments" => crate::storage::tests::attachments_conformance(&s).await,
        "changed" => crate::storage::tests::changed_since_conformance(&s).await,
        "accounts" => crate::storage::tests::accounts_conformance(&s).await,
        _ => unreachable!(),
    }
    dir
}

#[tokio::test]
async fn test_an_exact_copy_keeps_every_row_and_answers_as_sqlite_did() {
    // Records of several kinds, review flags settled and open, a grid move, attachments named
    // and orphaned, users, devices, sessions and API tokens: each suite leaves its part.
    for fill in ["log", "dashboard", "attachments", "changed", "accounts"] {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let dir = filled(fill).await;
        let sqlite = SqliteStorage::open(dir.path()).unwrap();
        let before = answers(&sqlite, dir.path(), true).await;
        let id = sqlite.server_id().await.unwrap();
        drop(sqlite);

        let done = migrate(dir.path(), db.url(), None).await.unwrap();
        assert!(!done.merged, "{fill}");
        assert_eq!(done.server_id, id);
        let report = done.report();
        assert!(report.starts_with("已原样复制到空数据库"), "{report}");
        assert!(report.contains("sync on with no repair"), "{report}");

        let (pg_rows, types) = pg_dump(db.url(), dir.path()).await;
        assert_eq!(
            pg_rows,
            sqlite_dump(dir.path(), &types),
            "{fill}: every row"
        );
        assert!(!pg_rows.is_empty());
        let pg = db.storage().await;
        assert_eq!(
            pg.server_id().await.unwrap(),
            id,
            "{fill}: the server id is kept"
        );
        assert_eq!(
            answers(&pg, dir.path(), true).await,
            before,
            "{fill}: the same answers"
        );
        // The next entry comes after every copied one.
        let top = done.count("log");
        if top > 0 {
            let seq = pg
                .commit(Commit {
                    changes: vec![change("gx", "dx", 250)],
                    docs: vec![doc("gx", "dx")],
                    moves: Vec::new(),
                })
                .await
                .unwrap();
            let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
            let max: i64 = c
                .query_row("SELECT MAX(seq) FROM log", [], |r| r.get(0))
                .unwrap();
            assert!(seq as i64 > max, "{fill}: {seq} after {max}");
        }
    }
}

fn change(grid: &str, doc: &str, n: u8) -> NewChange {
    NewChange {
        grid_id: grid.into(),
        doc_id: doc.into(),
        kind: Some(Kind::Case),
        // Unlike any hash the conformance suites commit.
        hash: <sha2::Sha256 as sha2::Digest>::digest(format!("{grid}/{doc}/{n}").as_bytes()).into(),
        bytes: vec![n; 8],
        device_id: "phone-x".into(),
        worker_id: "w".into(),
        in_snapshot: false,
    }
}

fn doc(grid: &str, doc: &str) -> DocUpdate {
    DocUpdate {
        doc_id: doc.into(),
        grid_id: grid.into(),
        kind: Some(Kind::Case),
        heads: vec![[1; 32]],
        index: None,
        snapshot: None,
        facts: None,
        parallel: true,
        attachments: None,
    }
}

/// A second community: county c1 and street s1 as the first has them, its own community and
/// grid, a user with a device, and records with a snapshot and a review flag.
async fn community(dir: &Path, user: &str, community: &str, grid: &str) {
    let s = SqliteStorage::open(dir).unwrap();
    for (id, parent, level, name) in [
        ("c1", None, "county", "测试县"),
        ("s1", Some("c1"), "street", "幸福街道"),
        (community, Some("s1"), "community", "社区"),
        (grid, Some(community), "grid", "网格"),
    ] {
        s.add_area(Area {
            id: id.into(),
            parent_id: parent.map(str::to_string),
            level: level.into(),
            name: name.into(),
        })
        .await
        .unwrap();
    }
    let u = s
        .add_user(NewUser {
            username: user.into(),
            display_name: "赵六".into(),
            role: Role::GridWorker,
            password_hash: "x".into(),
        })
        .await
        .unwrap();
    s.set_user_areas(&u.id, &[grid.to_string()]).await.unwrap();
    let device = Device {
        id: format!("dev-{user}"),
        user_id: u.id.clone(),
        name: "手机".into(),
        created_at: "2026-11-01T00:00:00Z".into(),
        last_seen_at: None,
        revoked_at: None,
    };
    s.add_device(
        device,
        user.as_bytes().to_vec(),
        vec![format!("{user}-actor")],
        5,
    )
    .await
    .unwrap();
    for n in 0..3u8 {
        let mut d = doc(grid, &format!("{grid}-r{n}"));
        // Stored deflated (storage/packed.rs): the copy moves as stored and reads back the same.
        d.snapshot = (n == 1).then(|| PackedSnapshot::pack(&[7; 500]));
        s.commit(Commit {
            changes: vec![
                change(grid, &d.doc_id, 200 + n),
                change(grid, &d.doc_id, 210 + n),
            ],
            docs: vec![d],
            moves: Vec::new(),
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn test_a_merge_renumbers_after_the_target_keeps_its_server_id_and_refuses_clashes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let first = filled("dashboard").await;
    community(first.path(), "wang", "m1", "g5").await;
    // The same photo stored by both communities (the bytes are their hash's).
    let same_photo = b"the same poster, photographed twice";
    let photo = {
        let s = SqliteStorage::open(first.path()).unwrap();
        let blobs = crate::storage::FsBlobStore::new(first.path());
        crate::attachments::tests::stored(&s, blobs.as_ref(), same_photo).await
    };
    migrate(first.path(), db.url(), None).await.unwrap();
    let pg = db.storage().await;
    let county_id = pg.server_id().await.unwrap();
    let top = pg.head("g1").await.unwrap().unwrap().0;
    drop(pg);

    let second = tempfile::tempdir().unwrap();
    community(second.path(), "zhao", "m7", "g7").await;
    {
        let s = SqliteStorage::open(second.path()).unwrap();
        let blobs = crate::storage::FsBlobStore::new(second.path());
        crate::attachments::tests::stored(&s, blobs.as_ref(), same_photo).await;
    }
    let first_upload = {
        let s = SqliteStorage::open(first.path()).unwrap();
        s.stored_blob(&photo).await.unwrap()
    };
    let sqlite = SqliteStorage::open(second.path()).unwrap();
    let before = answers(&sqlite, second.path(), false).await;
    drop(sqlite);
    let done = migrate(second.path(), db.url(), None).await.unwrap();
    assert!(done.merged);
    assert_eq!(done.server_id, county_id, "the target's server id stays");
    assert_eq!(done.shared_areas, ["c1", "s1"]);
    assert_eq!(
        done.count("attachment_blobs"),
        0,
        "the photo's row was there"
    );
    let report = done.report();
    assert!(report.starts_with("已并入已有数据库"), "{report}");
    assert!(report.contains("repair their grids"), "{report}");

    let pg = db.storage().await;
    assert_eq!(
        pg.stored_blob(&photo).await.unwrap(),
        first_upload,
        "the target's row stays"
    );
    // Who uploaded the photo differs (the first community's row stays); all else is the same.
    let photo_line = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| !l.starts_with("blob "))
            .collect()
    };
    assert_eq!(
        photo_line(answers(&pg, second.path(), false).await),
        photo_line(before.clone())
    );
    let (entries, _) = pg
        .log_since("g7", &KindFilter::All, 0, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(entries.len(), 6);
    assert!(entries[0].seq > top, "after the target's entries");
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    // The snapshot still covers its own entries, and only those: the document loads with the
    // entries after it, as on SQLite.
    let stored = pg.load_doc("g7-r1").await.unwrap().unwrap();
    assert_eq!(
        (stored.snapshot, stored.changes.len()),
        (Some(vec![7; 500]), 0)
    );
    // The first community is untouched, and a device of the second is not vouched for at its
    // old seq: it repairs.
    assert_eq!(pg.head("g1").await.unwrap().unwrap().0, top);
    let c = rusqlite::Connection::open(second.path().join(DB_FILE)).unwrap();
    let (old_seq, old_hash): (i64, Vec<u8>) = c
        .query_row(
            "SELECT seq, hash FROM log WHERE grid_id = 'g7' ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_ne!(
        pg.entry_hash("g7", old_seq as u64)
            .await
            .unwrap()
            .map(|h| h.to_vec()),
        Some(old_hash)
    );
    drop(pg);

    // A third community whose grid and user name are taken: refused, naming them, and the
    // target is as it was.
    let (rows, types) = pg_dump(db.url(), first.path()).await;
    let third = tempfile::tempdir().unwrap();
    community(third.path(), "zhao", "m7", "g7").await;
    let err = migrate(third.path(), db.url(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("目标数据库中已有下列编号，未写入任何内容"),
        "{err}"
    );
    for named in [
        "区域 area: g7, m7",
        "用户名 username: zhao",
        "设备 device: dev-zhao",
    ] {
        assert!(err.contains(named), "{named}: {err}");
    }
    assert!(err.contains("设备令牌 device token: 1 个"), "{err}");
    assert!(
        !err.contains(&hex::encode(b"zhao")),
        "no token hash shown: {err}"
    );
    assert_eq!(
        pg_dump(db.url(), first.path()).await.0,
        rows,
        "target unchanged"
    );
    let _ = types;
}

#[tokio::test]
async fn test_a_relay_serving_the_directory_or_a_missing_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://postgres@127.0.0.1:5432/never_used_by_this_test";
    let err = migrate(dir.path(), url, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("没有服务器数据"), "{err}");
    let err = migrate(dir.path(), "/var/lib/x", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--to"), "{err}");
    let serving = SqliteStorage::open(dir.path()).unwrap();
    let err = migrate(dir.path(), url, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("请先停止服务器"), "{err}");
    drop(serving);
}

#[tokio::test]
async fn test_attachments_files_are_copied_to_another_data_dir_and_identical_ones_skipped() {
    use crate::storage::BlobStore as _;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let from = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(from.path()).unwrap();
    let blobs = crate::storage::FsBlobStore::new(from.path());
    let a = crate::attachments::tests::stored(&storage, blobs.as_ref(), b"a photo").await;
    let b = crate::attachments::tests::stored(&storage, blobs.as_ref(), &[9u8; 70_000]).await;
    drop(storage);
    let to = tempfile::tempdir().unwrap();
    // `b` is there already (the county's copy of the same photo).
    let hex = hex::encode(b);
    let there = to.path().join("attachments").join(&hex[..2]);
    std::fs::create_dir_all(&there).unwrap();
    std::fs::write(there.join(&hex), [9u8; 70_000]).unwrap();

    let done = migrate(from.path(), db.url(), Some(to.path()))
        .await
        .unwrap();
    assert_eq!((done.blobs.copied, done.blobs.identical), (1, 1));
    assert_eq!(done.blobs.bytes, 7);
    let copied = crate::storage::FsBlobStore::new(to.path());
    assert!(matches!(
        copied.stand(&a).await.unwrap(),
        crate::storage::blobs::Stand::Complete(7)
    ));
    let report = done.report();
    assert!(report.contains("已复制 1 个（7 字节）"), "{report}");
}

#[tokio::test]
async fn test_a_merge_into_a_database_with_only_the_countys_areas_and_accounts_keeps_the_seqs() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // The county made its tree and an account before any community moved in.
    let pg = db.storage().await;
    for (id, parent, level, name) in [
        ("c1", None, "county", "测试县"),
        ("s1", Some("c1"), "street", "幸福街道"),
    ] {
        pg.add_area(Area {
            id: id.into(),
            parent_id: parent.map(str::to_string),
            level: level.into(),
            name: name.into(),
        })
        .await
        .unwrap();
    }
    pg.add_user(NewUser {
        username: "county-admin".into(),
        display_name: "县管理员".into(),
        role: Role::Admin,
        password_hash: "x".into(),
    })
    .await
    .unwrap();
    let county_id = pg.server_id().await.unwrap();
    drop(pg);

    let dir = tempfile::tempdir().unwrap();
    community(dir.path(), "zhao", "m7", "g7").await;
    let sqlite = SqliteStorage::open(dir.path()).unwrap();
    let before = answers(&sqlite, dir.path(), true).await;
    drop(sqlite);
    let done = migrate(dir.path(), db.url(), None).await.unwrap();
    assert!(done.merged && done.keeps_cursors, "{done:?}");
    assert_eq!(done.server_id, county_id);
    let report = done.report();
    assert!(
        report.starts_with("已并入数据库（其中尚无日志，序号保持）"),
        "{report}"
    );
    assert!(report.contains("sync on with no repair"), "{report}");
    let pg = db.storage().await;
    assert_eq!(answers(&pg, dir.path(), true).await, before, "seqs and all");
    assert!(pg.user("county-admin").await.unwrap().is_some());
}

#[tokio::test]
async fn test_a_value_that_does_not_fit_its_column_fails_the_whole_migration_and_writes_nothing() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = filled("accounts").await;
    // A hand-edited store: a flag PostgreSQL's boolean cannot take, in a table copied late
    // enough that earlier tables were already written in the transaction.
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    c.execute("UPDATE api_tokens SET sensitive = 7", [])
        .unwrap();
    drop(c);
    let pg = db.storage().await;
    let id = pg.server_id().await.unwrap();
    drop(pg);
    let err = migrate(dir.path(), db.url(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("api_tokens.sensitive"), "{err}");
    let pg = db.storage().await;
    assert!(pg.users().await.unwrap().is_empty(), "nothing was written");
    assert!(pg.areas().await.unwrap().is_empty());
    assert_eq!(
        pg.server_id().await.unwrap(),
        id,
        "the target's own id stays"
    );
}
