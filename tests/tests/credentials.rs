//! Old credentials and old scope stop working: a reassignment reaches sessions already open,
//! deactivation revokes devices and browser sessions for good, a password change signs browsers
//! out, and a dashboard page's event stream ends with its session. Admin actions go through the
//! `AccountStore` calls the `admin` commands make, on the serving relay's store.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridsync_core::record::Kind;
use gridsync_core::record::sensitive::private_id;
use gridsync_core::transport;
use gridsync_core::{Error, Query, Replica};
use gridsync_e2e::{PASSWORD, TestServer, eventually, fields, household, sync};
use gridsync_server::accounts::{self, Role};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const ID_NUMBER: &str = "420102195003071234";

/// How long a session may take to notice: a few of the relay's 5-second checks.
const NOTICE: Duration = Duration::from_secs(20);

fn held(r: &Replica) -> BTreeSet<String> {
    r.list(&Query {
        include_deleted: true,
        ..Query::default()
    })
    .unwrap()
    .into_iter()
    .map(|row| row.id)
    .collect()
}

/// Whether the ID number is anywhere in the replica's files, write-ahead log included.
fn files_hold_id_number(dir: &std::path::Path) -> bool {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    bytes
        .windows(ID_NUMBER.len())
        .any(|w| w == ID_NUMBER.as_bytes())
}

struct Live {
    replica: Arc<Mutex<Replica>>,
    writes: Arc<Notify>,
    stop: Arc<Notify>,
    task: JoinHandle<gridsync_core::Result<transport::SyncReport>>,
}

impl Live {
    fn start(replica: Replica) -> Live {
        let replica = Arc::new(Mutex::new(replica));
        let (writes, stop) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let task = tokio::spawn(transport::run_live(
            replica.clone(),
            writes.clone(),
            stop.clone(),
        ));
        Live {
            replica,
            writes,
            stop,
            task,
        }
    }

    /// How the session ended, if the relay ended it within [`NOTICE`]; else stops it.
    async fn ended(
        mut self,
    ) -> (
        Replica,
        Option<gridsync_core::Result<transport::SyncReport>>,
    ) {
        let ended = match tokio::time::timeout(NOTICE, &mut self.task).await {
            Ok(result) => Some(result.unwrap()),
            Err(_) => {
                self.stop.notify_one();
                let _ = tokio::time::timeout(NOTICE, self.task).await;
                None
            }
        };
        let replica = Arc::try_unwrap(self.replica)
            .ok()
            .expect("the session let go of the replica")
            .into_inner()
            .unwrap();
        (replica, ended)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_open_session_gets_nothing_more_of_a_grid_its_user_left() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wang = server.worker(dw.path(), "wang", &["g1"]).await;
    let mut li = server.worker(dl.path(), "li", &["g1"]).await;
    let before = household(&mut li, "李一");
    sync(&mut li).await;
    let live = Live::start(wang);
    assert!(
        eventually(10, || live.replica.lock().unwrap().get(&before).is_ok()).await,
        "the live session caught up"
    );

    // `admin user assign wang --area g2`, then Li registers a household with a resident's ID
    // number in g1.
    server.user("wang", Role::GridWorker, &["g2"]).await;
    let after = li
        .create(
            Kind::Household,
            fields(json!({
                "grid_id": "g1", "head_name": "李二", "household_type": "registered",
                "residents": [{"name": "李二", "id_number": ID_NUMBER, "disability_type": "肢体"}],
            })),
        )
        .unwrap()
        .id;
    sync(&mut li).await;
    assert!(li.get(&after).is_ok());

    let (mut wang, ended) = live.ended().await;
    let ids = held(&wang);
    assert!(
        !ids.contains(&after),
        "the moved worker received the old grid's new household"
    );
    assert!(
        !ids.contains(&private_id(&after)),
        "the moved worker received the household's private part"
    );
    assert!(
        !files_hold_id_number(dw.path()),
        "the ID number is in the moved worker's replica"
    );
    // The session was ended so the device comes back with its new grids: not as a revocation.
    let ended = ended.expect("the relay ended the session that had the old grids");
    assert!(ended.is_err(), "{ended:?}");
    assert!(!matches!(ended, Err(Error::Revoked(_))), "{ended:?}");

    sync(&mut wang).await;
    assert_eq!(wang.identity().unwrap().grids, ["g2"]);
    assert!(!held(&wang).contains(&after));
    assert!(!held(&wang).contains(&before), "g1 purged");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_open_session_cannot_create_records_in_a_grid_its_user_left() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut wang = server.worker(dw.path(), "wang", &["g1"]).await;
    let mut li = server.worker(dl.path(), "li", &["g1"]).await;
    let home = household(&mut wang, "王五");
    let case = wang
        .create(
            Kind::Case,
            fields(json!({"grid_id": "g1", "case_type": "disability", "household_id": home})),
        )
        .unwrap()
        .id;
    sync(&mut wang).await;
    let marker = household(&mut li, "李一");
    sync(&mut li).await;
    let live = Live::start(wang);
    assert!(
        eventually(10, || live.replica.lock().unwrap().get(&marker).is_ok()).await,
        "the live session caught up"
    );

    // Moved to g2 while the session is open; the device, not told yet, writes in g1: a change
    // to a record g1 already had, and a new record.
    server.user("wang", Role::GridWorker, &["g2"]).await;
    let patrol = {
        let mut r = live.replica.lock().unwrap();
        r.update(&case, fields(json!({"status": "open", "plan": "每周探访"})))
            .unwrap();
        r.create(
            Kind::Patrol,
            fields(json!({"grid_id": "g1", "started_at": "2026-11-01T20:00:00Z"})),
        )
        .unwrap()
        .id
    };
    live.writes.notify_one();
    let (mut wang, _) = live.ended().await;
    // Whatever the open session did, the device's next sync settles it.
    let _ = transport::sync_once(&mut wang, None).await;
    let status = wang.status().unwrap();
    let refused: Vec<_> = status.rejected.iter().map(|r| r.doc_id.clone()).collect();
    assert_eq!(
        refused,
        std::slice::from_ref(&patrol),
        "only the new record in the old grid is refused"
    );
    assert!(
        status.rejected[0].reason.contains("outside"),
        "{:?}",
        status.rejected
    );
    let storage = server.state.relay.log();
    assert!(
        storage.load_doc(&patrol).await.unwrap().is_none(),
        "the relay holds the new record"
    );
    // The change to the existing record, made before the device heard of the move, arrived.
    sync(&mut li).await;
    assert_eq!(li.get(&case).unwrap().fields["plan"], "每周探访");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reactivated_user_gets_no_old_phone_or_browser_back() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let (dw, dn) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut phone = server.worker(dw.path(), "wang", &["g1"]).await;
    let home = household(&mut phone, "张三");
    sync(&mut phone).await;
    server.user("zhao", Role::Office, &["m1"]).await;
    let cookie = browser_sign_in(&server, "zhao", PASSWORD).await;
    assert_eq!(get(&server, "/", &cookie).await.0, 200);

    // `admin user deactivate`, then `admin user activate`, for both.
    for username in ["wang", "zhao"] {
        let user = server.accounts.user(username).await.unwrap().unwrap();
        server.accounts.set_active(&user.id, false).await.unwrap();
        server.accounts.set_active(&user.id, true).await.unwrap();
    }

    // The lost phone stays dead: told to erase its data, and it did.
    let err = transport::sync_once(&mut phone, None).await.unwrap_err();
    assert!(matches!(err, Error::Revoked(_)), "{err}");
    assert!(phone.identity().is_err(), "the replica forgot who it was");
    assert_eq!(phone.count(&Query::default()).unwrap(), 0);
    // So does the browser: sent to the sign-in page.
    let (status, location) = get(&server, "/", &cookie).await;
    assert!(
        status == 303 && location.starts_with("/login"),
        "old cookie: {status} {location}"
    );

    // Signing in again works, on the phone and in the browser.
    let mut again = server.device(dn.path(), "wang").await;
    sync(&mut again).await;
    assert_eq!(again.get(&home).unwrap().fields["head_name"], "张三");
    let fresh = browser_sign_in(&server, "zhao", PASSWORD).await;
    assert_eq!(get(&server, "/", &fresh).await.0, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_password_change_signs_browsers_out_and_keeps_phones() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    let dw = tempfile::tempdir().unwrap();
    let mut phone = server.worker(dw.path(), "wang", &["g1"]).await;
    server.user("zhao", Role::Office, &["m1"]).await;
    let cookie = browser_sign_in(&server, "zhao", PASSWORD).await;
    assert_eq!(get(&server, "/", &cookie).await.0, 200);
    let mut stream = open_events(&server, &cookie).await;

    // `admin user passwd`, for both.
    let new_password = "另一个 horse battery";
    for username in ["wang", "zhao"] {
        let user = server.accounts.user(username).await.unwrap().unwrap();
        let hash = accounts::hash_password(new_password).unwrap();
        server.accounts.set_password(&user.id, &hash).await.unwrap();
    }

    let (status, location) = get(&server, "/", &cookie).await;
    assert!(
        status == 303 && location.starts_with("/login"),
        "old cookie: {status} {location}"
    );
    assert!(
        stream_ends(&mut stream).await,
        "the page's event stream kept going"
    );
    let fresh = browser_sign_in(&server, "zhao", new_password).await;
    assert_eq!(get(&server, "/", &fresh).await.0, 200);
    // Devices stay signed in: a password change is not a lost phone.
    household(&mut phone, "张三");
    sync(&mut phone).await;
    assert_eq!(phone.status().unwrap().unsent_changes, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_event_stream_ends_at_sign_out_and_at_deactivation() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    server.user("zhao", Role::Office, &["m1"]).await;

    let cookie = browser_sign_in(&server, "zhao", PASSWORD).await;
    let mut stream = open_events(&server, &cookie).await;
    let (status, body) = request(&server, "GET", "/", &cookie, None).await;
    assert_eq!(status, 200);
    let csrf = hidden_value(&body, "csrf").expect("a CSRF token on the page");
    let form = format!("csrf={}", form_encode(&csrf));
    let (status, _) = request(&server, "POST", "/logout", &cookie, Some(&form)).await;
    assert_eq!(status, 303, "signed out");
    assert!(
        stream_ends(&mut stream).await,
        "the event stream outlived sign-out"
    );

    let cookie = browser_sign_in(&server, "zhao", PASSWORD).await;
    let mut stream = open_events(&server, &cookie).await;
    let zhao = server.accounts.user("zhao").await.unwrap().unwrap();
    server.accounts.set_active(&zhao.id, false).await.unwrap();
    assert!(
        stream_ends(&mut stream).await,
        "the event stream outlived deactivation"
    );
    server.stop().await;
}

// A small HTTP/1.1 client over TCP: one request per connection, as a browser's would be here.

/// Sends a request; returns the status and the raw response (headers and body).
async fn request(
    server: &TestServer,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr
    );
    if !cookie.is_empty() {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut response))
        .await
        .expect("an answer in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    (status_of(&response), response)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The values of a response header, case-insensitively.
fn headers<'a>(response: &'a str, name: &str) -> Vec<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// `GET path`: the status and where it redirects to.
async fn get(server: &TestServer, path: &str, cookie: &str) -> (u16, String) {
    let (status, response) = request(server, "GET", path, cookie, None).await;
    let location = headers(&response, "location")
        .first()
        .map_or(String::new(), |l| l.to_string());
    (status, location)
}

/// The `value` of the hidden input `name` in a page.
fn hidden_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Every hidden input of a page, as form pairs.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let attr = |a: &str| {
                let at = tag.find(&format!("{a}=\""))? + a.len() + 2;
                Some(tag[at..at + tag[at..].find('"')?].to_string())
            };
            Some((attr("name")?, attr("value").unwrap_or_default()))
        })
        .collect()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in at the dashboard's form as a browser would; returns the session cookie pair.
async fn browser_sign_in(server: &TestServer, username: &str, password: &str) -> String {
    // Whatever the form carries besides the credentials (and any cookie it sets) goes back.
    let (_, page) = request(server, "GET", "/login", "", None).await;
    let mut cookies: Vec<String> = headers(&page, "set-cookie")
        .iter()
        .filter_map(|c| c.split(';').next().map(str::to_string))
        .collect();
    let mut form = vec![
        ("username".to_string(), username.to_string()),
        ("password".to_string(), password.to_string()),
    ];
    form.extend(
        hidden_fields(&page)
            .into_iter()
            .filter(|(k, _)| k != "next"),
    );
    form.push(("next".to_string(), "/".to_string()));
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    let (status, response) = request(
        server,
        "POST",
        "/login",
        &cookies.join("; "),
        Some(&body.join("&")),
    )
    .await;
    assert_eq!(status, 303, "sign-in of {username}: {response}");
    let session = headers(&response, "set-cookie")
        .into_iter()
        .filter_map(|c| c.split(';').next())
        .find(|c| c.starts_with("gs_session=") && c.len() > "gs_session=".len())
        .expect("a session cookie")
        .to_string();
    cookies.retain(|c| !c.starts_with("gs_session="));
    cookies.push(session);
    cookies.join("; ")
}

/// Opens the dashboard's event stream and reads its headers.
async fn open_events(server: &TestServer, cookie: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "GET /events HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\
         Connection: close\r\n\r\n",
        server.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("event stream headers in time")
            .unwrap();
        assert!(n > 0, "the event stream closed before its headers");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    s
}

/// Whether the server ends the stream within [`NOTICE`].
async fn stream_ends(s: &mut TcpStream) -> bool {
    let deadline = tokio::time::Instant::now() + NOTICE;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
