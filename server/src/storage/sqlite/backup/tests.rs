use super::*;
use crate::storage::{Log, SqliteStorage};

/// A store with the conformance suite's data in it; returns its server id.
async fn filled(dir: &Path) -> String {
    let storage = SqliteStorage::open(dir).unwrap();
    crate::storage::tests::conformance(&storage).await;
    storage.server_id().await.unwrap()
}

async fn entries(dir: &Path) -> (String, usize) {
    let storage = SqliteStorage::open(dir).unwrap();
    let (log, _) = storage
        .log_since("g1", &crate::storage::KindFilter::All, 0, 100, 1 << 20)
        .await
        .unwrap();
    (storage.server_id().await.unwrap(), log.len())
}

#[tokio::test]
async fn test_backup_of_an_open_store_restores_into_an_empty_directory() {
    let (data, other, out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let storage = SqliteStorage::open(data.path()).unwrap();
    crate::storage::tests::conformance(&storage).await;
    let id = storage.server_id().await.unwrap();
    let file = out.path().join("nightly.sqlite3");
    // While the store is open, as under a serving relay.
    let summary = backup(data.path(), &file).unwrap();
    assert_eq!(summary.server_id, id);
    assert_eq!(summary.log_entries, 5, "every grid's entries");
    // One self-contained file: nothing beside it.
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("nightly.sqlite3")]);
    // A second backup of the same name replaces the first.
    backup(data.path(), &file).unwrap();
    drop(storage);

    let restored = restore(&other.path().join("data"), &file).unwrap();
    assert_eq!(restored.summary.server_id, id);
    assert!(restored.replaced.is_none());
    assert_eq!(entries(&other.path().join("data")).await, (id, 4));
}

#[tokio::test]
async fn test_restore_refuses_while_the_store_is_open_and_changes_nothing() {
    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = backups.path().join("source");
    filled(&source).await;
    let file = backups.path().join("b.sqlite3");
    backup(&source, &file).unwrap();
    let storage = SqliteStorage::open(data.path()).unwrap();
    let id = storage.server_id().await.unwrap();

    let err = restore(data.path(), &file).unwrap_err().to_string();
    assert!(
        err.contains("stop the relay") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(storage.server_id().await.unwrap(), id);
    drop(storage);
    assert_eq!(entries(data.path()).await, (id, 0));
}

#[tokio::test]
async fn test_a_relay_cannot_open_the_store_while_a_restore_holds_it() {
    let data = tempfile::tempdir().unwrap();
    let lock = DirLock::exclusive(data.path()).unwrap();
    let err = SqliteStorage::open(data.path()).err().unwrap().to_string();
    assert!(err.contains("a restore is replacing the store"), "{err}");
    drop(lock);
    SqliteStorage::open(data.path()).unwrap();
}

#[tokio::test]
async fn test_restore_keeps_the_replaced_store_and_reads_a_copied_data_directory() {
    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old = filled(data.path()).await;
    // A backup taken by copying a stopped relay's file: WAL mode, no backup command involved.
    let source = backups.path().join("source");
    let new = filled(&source).await;
    let copied = backups.path().join("copied.sqlite3");
    std::fs::copy(source.join(DB_FILE), &copied).unwrap();

    let restored = restore(data.path(), &copied).unwrap();
    assert_eq!(restored.summary.server_id, new);
    let kept = restored.replaced.unwrap();
    assert!(
        kept.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gridsync.sqlite3.replaced-")
    );
    assert_eq!(entries(data.path()).await, (new, 4));
    let kept_dir = backups.path().join("kept");
    std::fs::create_dir(&kept_dir).unwrap();
    std::fs::copy(&kept, kept_dir.join(DB_FILE)).unwrap();
    assert_eq!(entries(&kept_dir).await, (old, 4));
}

#[tokio::test]
async fn test_restore_refuses_what_is_not_a_whole_relay_store() {
    let (data, backups) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id = filled(data.path()).await;
    let garbage = backups.path().join("garbage.sqlite3");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let other_db = backups.path().join("other.sqlite3");
    Connection::open(&other_db)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
        .unwrap();
    let missing = backups.path().join("missing.sqlite3");
    for (file, says) in [
        (&garbage, "database"),
        (&other_db, "not a gridsync relay store"),
        (&missing, "no backup file"),
    ] {
        let err = restore(data.path(), file).unwrap_err().to_string();
        assert!(err.contains(says), "{}: {err}", file.display());
    }
    assert_eq!(entries(data.path()).await, (id, 4));
    assert!(!data.path().join(STAGED_FILE).exists());
}

#[test]
fn test_backup_of_a_directory_without_a_store_is_refused() {
    let (data, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = out.path().join("b.sqlite3");
    let err = backup(data.path(), &file).unwrap_err().to_string();
    assert!(err.contains("nothing to back up"), "{err}");
    assert!(!file.exists());
}
