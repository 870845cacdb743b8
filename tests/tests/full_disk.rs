//! A full disk, on the relay and on a phone: reads, sign-ins and catch-ups are answered (or refused
//! in plain words), nothing is acknowledged that is not stored, and everything goes on by itself
//! once there is room again. The disks are small tmpfs mounts the test makes; where mounting is
//! not permitted the tests say so and pass without running.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use gridsync_core::{Error, Query, Replica, transport};
use gridsync_e2e::{PASSWORD, TestServer, household, sync};
use gridsync_server::accounts::Role;

/// A tmpfs of a few MiB mounted on a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "SKIPPED: this test needs to mount a small tmpfs (root, or CAP_SYS_ADMIN) and \
                 could not; nothing was tested"
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk to the last byte; returns the filler, to delete for room again.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..100_000 {
            if file.write_all(&chunk).is_err() {
                break;
            }
        }
        // Whatever is left, byte by byte (bounded: less than a chunk).
        for _ in 0..chunk.len() {
            if file.write_all(&[0]).is_err() {
                break;
            }
        }
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a relay a failed test left running may still hold files on it.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn device(server: &TestServer, dir: &Path, user: &str) -> Replica {
    server.user(user, Role::GridWorker, &["g1"]).await;
    server.device(dir, user).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_relay_with_a_full_disk_serves_reads_and_acknowledges_nothing_unstored() {
    let Some(disk) = SmallDisk::mount(16) else {
        return;
    };
    let data = disk.path().join("data");
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let server = TestServer::start(&data).await;
    let mut a = device(&server, dirs[0].path(), "wang").await;
    let mut b = device(&server, dirs[1].path(), "li").await;
    server.user("zhao", Role::GridWorker, &["g1"]).await;
    for n in 0..20 {
        household(&mut a, &format!("王家{n}"));
    }
    sync(&mut a).await;
    let filler = disk.fill();

    // Writes fail, and say why; the device keeps them.
    for n in 0..5 {
        household(&mut a, &format!("满盘时{n}"));
    }
    let err = transport::sync_once(&mut a, None).await.err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        message.contains("磁盘已满") && message.contains("disk is full"),
        "{err:?}"
    );
    assert_eq!(a.status().unwrap().unsent_changes, 5);
    // A device that only downloads catches up.
    let report = sync(&mut b).await;
    assert_eq!(b.count(&Query::default()).unwrap(), 20, "{report:?}");
    // A sign-in needs a row for the device: refused in plain words, nothing half made.
    let mut c = Replica::open(dirs[2].path()).unwrap();
    let err = transport::sign_in(&mut c, &server.url(), "zhao", PASSWORD, "")
        .await
        .err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(message.contains("磁盘已满"), "{err:?}");
    assert!(matches!(c.identity(), Err(Error::NotInitialised)));

    // Room again: everything goes on by itself.
    std::fs::remove_file(filler).unwrap();
    sync(&mut a).await;
    assert_eq!(a.status().unwrap().unsent_changes, 0);
    transport::sign_in(&mut c, &server.url(), "zhao", PASSWORD, "")
        .await
        .unwrap();
    sync(&mut c).await;
    sync(&mut b).await;
    assert_eq!(b.count(&Query::default()).unwrap(), 25);
    assert_eq!(c.count(&Query::default()).unwrap(), 25);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_phone_with_a_full_disk_reads_keeps_everything_and_goes_on_with_room() {
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let server = TestServer::start(data.path()).await;
    let phone = disk.path().join("replica");
    let mut a = device(&server, &phone, "wang").await;
    let mut b = device(&server, dirs[0].path(), "li").await;
    for n in 0..10 {
        household(&mut a, &format!("王家{n}"));
        household(&mut b, &format!("李家{n}"));
    }
    sync(&mut a).await;
    sync(&mut b).await;
    let unsent = [household(&mut a, "离线甲"), household(&mut a, "离线乙")];
    for n in 10..15 {
        household(&mut b, &format!("李家{n}"));
    }
    sync(&mut b).await;
    let filler = disk.fill();

    // A write is refused and stores nothing; what is stored reads as before.
    let err = a
        .create(
            gridsync_core::record::Kind::Household,
            gridsync_e2e::fields(
                serde_json::json!({"head_name": "满盘时", "household_type": "rented"}),
            ),
        )
        .err()
        .unwrap();
    assert!(err.is_disk_full(), "{err:?}");
    assert_eq!(a.count(&Query::default()).unwrap(), 12);
    assert_eq!(a.get(&unsent[0]).unwrap().fields["head_name"], "离线甲");
    // A sync fails (nothing received can be stored, an acknowledgement cannot be recorded) and
    // loses nothing: the unsent changes stay, and are sent again.
    let err = transport::sync_once(&mut a, None).await.err();
    assert!(err.as_ref().is_some_and(Error::is_disk_full), "{err:?}");
    assert_eq!(a.status().unwrap().unsent_changes, 2);
    // It still opens, to be read.
    drop(a);
    let mut a = Replica::open(&phone).unwrap();
    assert_eq!(a.count(&Query::default()).unwrap(), 12);

    std::fs::remove_file(filler).unwrap();
    sync(&mut a).await;
    assert_eq!(a.status().unwrap().unsent_changes, 0);
    assert_eq!(a.count(&Query::default()).unwrap(), 27);
    sync(&mut b).await;
    assert_eq!(b.count(&Query::default()).unwrap(), 27);
    // Each change is on the relay once.
    let mut c = device(&server, dirs[1].path(), "zhao").await;
    let report = sync(&mut c).await;
    assert_eq!(report.stats.changes_received, 27);
    server.stop().await;
}
