//! Harness for the end-to-end tests: a real `gridsync-server` on 127.0.0.1 and real replicas in
//! temporary directories. Nothing here talks beyond 127.0.0.1.

pub mod proxy;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gridsync_core::protocol::LoginResponse;
use gridsync_core::record::{Kind, Record};
use gridsync_core::transport::{self, SyncReport};
use gridsync_core::{Query, Replica};
use gridsync_server::accounts::{self, AccountStore, Area, NewUser, Role};
use gridsync_server::config::Limits;
use gridsync_server::{Config, Server};
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A relay serving on 127.0.0.1 with its SQLite store in `data_dir`, or its records in the
/// PostgreSQL database `database` (attachments in `data_dir`).
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database: Option<String>,
    pub accounts: Arc<dyn AccountStore>,
    /// The relay's state, for tests that seed or inspect it directly.
    pub state: Arc<gridsync_server::AppState>,
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
        Self::start_with(data_dir, addr, Limits::default()).await
    }

    /// Starts a server on `addr` with its records in the PostgreSQL database at `url` (see
    /// `gridsync_server::storage::postgres::testing` for a database of the test's own) and its
    /// attachments in `data_dir`.
    pub async fn start_postgres(data_dir: &Path, addr: SocketAddr, url: &str) -> TestServer {
        let config = Config {
            listen: addr,
            data_dir: data_dir.to_path_buf(),
            database: Some(url.to_string()),
            ..Config::default()
        };
        Self::start_config(&config, None).await
    }

    /// Starts a server with its own limits (short timeouts, few sessions).
    pub async fn start_with(data_dir: &Path, addr: SocketAddr, limits: Limits) -> TestServer {
        let config = Config {
            listen: addr,
            data_dir: data_dir.to_path_buf(),
            limits,
            ..Config::default()
        };
        Self::start_config(&config, None).await
    }

    /// Starts a server as `config` says, serving TLS with `tls` if given.
    pub async fn start_config(
        config: &Config,
        tls: Option<gridsync_server::tls::ServerTls>,
    ) -> TestServer {
        let mut server = Server::connect(config).await.expect("open server store");
        if let Some(tls) = tls {
            server = server.with_tls(tls);
        }
        Self::serve(server, config).await
    }

    /// Serves `server` (built by the test, on a store of its choosing) on `config.listen`.
    pub async fn serve(server: Server, config: &Config) -> TestServer {
        let (addr, data_dir) = (config.listen, config.data_dir.as_path());
        let accounts = server.state.accounts.clone();
        let state = server.state.clone();
        ensure_areas(accounts.as_ref()).await;
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
            database: config.database.clone(),
            accounts,
            state,
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

    /// Creates a user (if missing) with the test password, working in `areas`.
    pub async fn user(&self, username: &str, role: Role, areas: &[&str]) {
        let areas: Vec<String> = areas.iter().map(|a| a.to_string()).collect();
        let user = match self.accounts.user(username).await.expect("read user") {
            Some(user) => user,
            None => self
                .accounts
                .add_user(NewUser {
                    username: username.to_string(),
                    display_name: format!("{username} 测试"),
                    role,
                    password_hash: accounts::hash_password(PASSWORD).expect("hash"),
                })
                .await
                .expect("add user"),
        };
        self.accounts
            .set_user_areas(&user.id, &areas)
            .await
            .expect("assign areas");
    }

    /// A grid worker's replica in `dir`, signed in (the user is created if missing).
    pub async fn worker(&self, dir: &Path, username: &str, grids: &[&str]) -> Replica {
        self.user(username, Role::GridWorker, grids).await;
        self.device(dir, username).await
    }

    /// A replica in `dir` signed in as an existing user.
    pub async fn device(&self, dir: &Path, username: &str) -> Replica {
        let mut r = Replica::open(dir).expect("open replica");
        transport::sign_in(&mut r, &self.url(), username, PASSWORD, "测试设备")
            .await
            .expect("sign in");
        r
    }

    /// Sync sessions the relay has open right now (from `/v1/stats`).
    pub async fn open_sessions(&self) -> u64 {
        self.stats().await["connections"]
            .as_u64()
            .expect("connections count")
    }

    /// `GET /v1/stats` without credentials, as anyone who can reach the relay may ask.
    pub async fn stats(&self) -> serde_json::Value {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let request = format!(
            "GET /v1/stats HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        s.write_all(request.as_bytes()).await.expect("send request");
        let mut response = String::new();
        s.read_to_string(&mut response)
            .await
            .expect("read response");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("{}");
        serde_json::from_str(body).expect("stats JSON")
    }

    /// Stops and starts again on the same port with the same data.
    pub async fn restart(self) -> TestServer {
        let (addr, dir, database) = (self.addr, self.data_dir.clone(), self.database.clone());
        self.stop().await;
        match database {
            Some(url) => TestServer::start_postgres(&dir, addr, &url).await,
            None => TestServer::start_on(&dir, addr).await,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The password every test user has.
pub const PASSWORD: &str = "correct horse 电池";

/// county c1 > street s1 > community m1 > grids g1, g2, g3; community m2 > grid g9.
async fn ensure_areas(accounts: &dyn AccountStore) {
    if !accounts.areas().await.expect("areas").is_empty() {
        return;
    }
    let areas = [
        ("c1", None, "county", "测试县"),
        ("s1", Some("c1"), "street", "幸福街道"),
        ("m1", Some("s1"), "community", "和平社区"),
        ("m2", Some("s1"), "community", "光明社区"),
        ("g1", Some("m1"), "grid", "第一网格"),
        ("g2", Some("m1"), "grid", "第二网格"),
        ("g3", Some("m1"), "grid", "第三网格"),
        ("g9", Some("m2"), "grid", "光明一网格"),
    ];
    for (id, parent, level, name) in areas {
        accounts
            .add_area(Area {
                id: id.into(),
                parent_id: parent.map(str::to_string),
                level: level.into(),
                name: name.into(),
            })
            .await
            .expect("add area");
    }
}

/// A replica enrolled without a server, for tests that never sync.
pub fn offline_replica(dir: &Path, worker: &str, grids: &[&str]) -> Replica {
    let mut r = Replica::open(dir).expect("open replica");
    enrol_offline(&mut r, worker, grids).expect("enrol");
    r
}

/// Enrols a replica as if a sign-in had happened, without a server.
pub fn enrol_offline(
    r: &mut Replica,
    worker: &str,
    grids: &[&str],
) -> Result<(), gridsync_core::Error> {
    let login = LoginResponse {
        device_id: format!("offline-{worker}"),
        token: "offline".into(),
        user_id: worker.into(),
        username: worker.into(),
        display_name: worker.into(),
        role: "grid_worker".into(),
        grids: grids.iter().map(|g| g.to_string()).collect(),
    };
    r.enrol("http://127.0.0.1:9", &login)
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

/// Opens `/v1/sync` and upgrades it to a WebSocket by hand, so that the caller can write any
/// bytes (half a frame, say) where a WebSocket library would only write whole frames.
pub async fn upgrade_by_hand(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /v1/sync HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.expect("send upgrade");
    // Byte by byte up to the blank line: nothing of what follows is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        let byte = tokio::time::timeout(Duration::from_secs(10), s.read_u8())
            .await
            .expect("an answer to the upgrade")
            .expect("read upgrade answer");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// The header of a masked binary WebSocket frame (mask 0, so the payload goes as it is) that
/// announces `len` bytes of payload.
pub fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// A hand-driven protocol client, for sending what a well-behaved device never would.
pub struct RawClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// The close frame's code, once the server closed the connection.
    pub closed_with: Option<u16>,
}

impl RawClient {
    pub async fn connect(server: &TestServer) -> RawClient {
        let url = format!("ws://{}/v1/sync", server.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("websocket connect");
        RawClient {
            ws,
            closed_with: None,
        }
    }

    /// A client over a socket already upgraded by hand (see [`upgrade_by_hand`]), for reading the
    /// relay's answer to whatever raw bytes were written on it.
    pub async fn over(stream: tokio::net::TcpStream) -> RawClient {
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        RawClient {
            ws,
            closed_with: None,
        }
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        use futures_util::SinkExt;
        // The server may already have closed on an earlier message: that is an answer too.
        let _ = self
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                bytes.into(),
            ))
            .await;
    }

    pub async fn send(&mut self, msg: &gridsync_core::protocol::ClientMsg) {
        for frame in gridsync_core::protocol::encode(msg, 1) {
            self.send_bytes(frame).await;
        }
    }

    /// The next message from the server, or `None` once it closed (or after 10 s of silence).
    pub async fn recv(&mut self) -> Option<gridsync_core::protocol::ServerMsg> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        for _ in 0..100 {
            let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await;
            match next {
                Ok(Some(Ok(Message::Binary(b)))) => {
                    return gridsync_core::protocol::decode_frame(&b).ok();
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.closed_with = frame.map(|f| u16::from(f.code));
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
        None
    }

    /// Reads until the server closes; returns the first error message it sent, if any.
    pub async fn until_closed(&mut self) -> Option<gridsync_core::protocol::ErrorMsg> {
        let mut error = None;
        for _ in 0..100 {
            match self.recv().await {
                Some(gridsync_core::protocol::ServerMsg::Error(e)) => {
                    error.get_or_insert(e);
                }
                Some(_) => {}
                None => break,
            }
        }
        error
    }

    /// Says hello with a device's token.
    pub async fn hello(&mut self, token: &str) {
        self.hello_as(token, false).await;
    }

    /// Says hello, asking for a live session or not.
    pub async fn hello_as(&mut self, token: &str, live: bool) {
        let hello = gridsync_core::protocol::ClientMsg::Hello(gridsync_core::protocol::Hello {
            protocol: gridsync_core::protocol::PROTOCOL_VERSION,
            client_version: "raw".into(),
            token: token.into(),
            device_id: "raw".into(),
            cursors: vec![],
            witnesses: vec![],
            live,
        });
        self.send(&hello).await;
    }
}

/// Runs the writer process (`gridsync-test-writer`, whose path an integration test has as
/// `env!("CARGO_BIN_EXE_gridsync-test-writer")`) on the replica in `dir` and SIGKILLs it once it
/// returned `after` writes, most likely mid-write: it never stops between records. The ids of
/// the writes it returned, including any it printed before it died.
pub fn write_and_kill(writer: &Path, dir: &Path, after: u64) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(writer)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the writer");
    let mut lines = BufReader::new(child.stdout.take().expect("the writer's output")).lines();
    let mut returned = Vec::new();
    for _ in 0..after {
        match lines.next() {
            Some(Ok(id)) => returned.push(id),
            _ => break,
        }
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("the writer ends");
    returned.extend(lines.map_while(Result::ok));
    returned
}
