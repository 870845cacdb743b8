//! Harness for the end-to-end tests: a real `gridsync-server` on 127.0.0.1 and real replicas in
//! temporary directories. Nothing here talks beyond 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gridsync_core::record::{Kind, Record};
use gridsync_core::transport::{self, SyncReport};
use gridsync_core::{Query, Replica};
use gridsync_server::{Config, Server};
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A relay serving on 127.0.0.1 with its SQLite store in `data_dir`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server on a free port with its data in `data_dir`.
    pub async fn start(data_dir: &Path) -> TestServer {
        Self::start_on(data_dir, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a server on a given address (to come back on the same port after a restart).
    pub async fn start_on(data_dir: &Path, addr: SocketAddr) -> TestServer {
        let config = Config {
            listen: addr,
            data_dir: data_dir.to_path_buf(),
            ..Config::default()
        };
        let server = Server::open(&config).expect("open server store");
        let mut listener = None;
        // The previous server on this port may take a moment to release it.
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener = listener.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }

    /// Stops and starts again on the same port with the same data.
    pub async fn restart(self) -> TestServer {
        let (addr, dir) = (self.addr, self.data_dir.clone());
        self.stop().await;
        TestServer::start_on(&dir, addr).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Opens a replica in `dir`, initialised for `worker` in `grids` against `server_url`.
pub fn replica(dir: &Path, server_url: &str, grids: &[&str], worker: &str) -> Replica {
    let mut r = Replica::open(dir).expect("open replica");
    if r.identity().is_err() {
        let grids: Vec<String> = grids.iter().map(|g| g.to_string()).collect();
        r.init(server_url, &grids, worker).expect("init replica");
    }
    r
}

pub async fn sync(r: &mut Replica) -> SyncReport {
    transport::sync_once(r, None).await.expect("sync")
}

/// A JSON object literal as a field map.
pub fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("expected a JSON object, got {other}"),
    }
}

/// Every record of a replica (including deleted ones), by id, as JSON.
pub fn snapshot(r: &mut Replica) -> Vec<Record> {
    let rows = r
        .list(&Query {
            include_deleted: true,
            ..Query::default()
        })
        .expect("list");
    let mut ids: Vec<String> = rows.into_iter().map(|row| row.id).collect();
    ids.sort();
    ids.iter().map(|id| r.get(id).expect("get")).collect()
}

pub fn household(r: &mut Replica, head: &str) -> String {
    let f = fields(serde_json::json!({
        "head_name": head,
        "household_type": "registered",
        "visit_class": "priority",
        "address": {"estate": "幸福小区", "building": "3", "unit": "2", "door": "301"},
    }));
    r.create(Kind::Household, f).expect("create household").id
}

/// Polls `check` every 20 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..(secs * 50) {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Copies a directory's files (a backup of a stopped server's data dir).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create backup dir");
    for entry in std::fs::read_dir(from).expect("read data dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
        }
    }
}
