//! The CLI's times and "today" are the community's, learned from the relay (protocol 5): at a
//! moment when the community's day is not the UTC day, `list --overdue` shows exactly what the
//! office dashboard counts overdue, with a relay east and one west of UTC.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use gridsync_e2e::{PASSWORD, TestServer};
use gridsync_server::Config;
use gridsync_server::accounts::Role;
use serde_json::{Value, json};

/// The built `gridsync`, with none of the caller's settings, the device's own zone UTC, and
/// these variables; the password on stdin.
fn gridsync(replica: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync"))
        .arg("--replica")
        .arg(replica)
        .args(args)
        .env_remove("GRIDSYNC_REPLICA")
        .env_remove("GRIDSYNC_REPLICA_KEY")
        .env_remove("GRIDSYNC_UTC_OFFSET")
        .env_remove("GRIDSYNC_NOW")
        .env("TZ", "UTC")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = writeln!(input, "{PASSWORD}");
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(replica: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = gridsync(replica, args, env);
    assert!(
        out.status.success(),
        "gridsync {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A relay whose community is `minutes` east of UTC, with worker w1 in g1 and office clerk zhao.
fn relay(runtime: &tokio::runtime::Runtime, dir: &Path, minutes: i32) -> TestServer {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.dashboard.utc_offset_minutes = minutes;
    runtime.block_on(async {
        let server = TestServer::start_config(&config, None).await;
        server.user("w1", Role::GridWorker, &["g1"]).await;
        server.user("zhao", Role::Office, &["m1"]).await;
        server
    })
}

/// One HTTP/1.1 request to the relay; the whole response (headers and body).
fn http(server: &TestServer, request: &str) -> String {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

fn cookies(response: &str) -> Vec<String> {
    response
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .filter_map(|c| c.split(';').next().map(str::to_string))
        .collect()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The number of households the dashboard's overview counts overdue in g1, signed in as zhao.
fn dashboard_overdue(server: &TestServer) -> u64 {
    let host = server.addr;
    let page = http(
        server,
        &format!("GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    let mut jar = cookies(&page);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    let body = format!(
        "username=zhao&password={}&csrf={}&next=%2F",
        form_encode(PASSWORD),
        form_encode(&csrf)
    );
    let signed_in = http(
        server,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {host}\r\nCookie: {}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            jar.join("; "),
            body.len()
        ),
    );
    jar.extend(cookies(&signed_in));
    let live = http(
        server,
        &format!(
            "GET /overview/live?grid=g1 HTTP/1.1\r\nHost: {host}\r\nCookie: {}\r\nConnection: \
             close\r\n\r\n",
            jar.join("; ")
        ),
    );
    let row = live
        .split("data-grid=\"g1\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no row of g1: {live}"));
    let cell = row.split("num overdue").nth(1).unwrap();
    let number = cell.split('>').nth(1).unwrap().split('<').next().unwrap();
    number.trim().parse().unwrap()
}

fn overdue_ids(replica: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let text = ok(replica, &["list", "household", "--overdue", "--json"], env);
    let rows: Value = serde_json::from_str(&text).unwrap();
    let mut ids: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// At `now`, with a relay `minutes` east of UTC and a CLI signed in with no zone of its own:
/// households due on `days` (in that order); `local` are the ones overdue in the community's
/// day, `utc` the ones overdue in the UTC day.
fn check_boundary(minutes: i32, now: &str, days: [&str; 3], local: [bool; 3], zone: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = relay(&runtime, &dir.path().join("relay"), minutes);
    let replica = dir.path().join("replica");
    let signed_in = ok(
        &replica,
        &["login", "--server", &server.url(), "--user", "w1"],
        &[],
    );
    assert!(signed_in.contains("w1"), "{signed_in}");
    let ids: Vec<String> = days
        .iter()
        .map(|day| {
            let fields =
                json!({"head_name": "王五", "household_type": "rented", "next_visit_due": day});
            ok(
                &replica,
                &["create", "household", "--json", &fields.to_string()],
                &[],
            )
            .trim()
            .to_string()
        })
        .collect();
    ok(&replica, &["sync"], &[]);

    let at = [("GRIDSYNC_NOW", now)];
    server.state.dashboard.set_now(Some(now.parse().unwrap()));
    let shown = overdue_ids(&replica, &at);
    let mut expected: Vec<String> = ids
        .iter()
        .zip(local)
        .filter(|(_, overdue)| *overdue)
        .map(|(id, _)| id.clone())
        .collect();
    expected.sort();
    assert_eq!(shown, expected, "the community's day at {now}");
    assert_eq!(
        dashboard_overdue(&server),
        shown.len() as u64,
        "the dashboard counts what the CLI lists"
    );
    let table = ok(&replica, &["list", "household", "--overdue"], &at);
    assert!(
        table.contains(&format!("时间为 {zone}（服务器设定）")),
        "{table}"
    );
    let status = ok(&replica, &["status"], &[]);
    assert!(
        status.contains(&format!("{zone}, the relay's setting")),
        "{status}"
    );
    // A time shown is in the relay's zone too.
    let got = ok(&replica, &["get", &ids[0]], &at);
    assert!(got.contains(&format!("时间为 {zone}")), "{got}");

    // GRIDSYNC_UTC_OFFSET still wins: in UTC the day is another one.
    let utc = overdue_ids(
        &replica,
        &[("GRIDSYNC_NOW", now), ("GRIDSYNC_UTC_OFFSET", "+00:00")],
    );
    assert_ne!(utc, shown, "the override counts another day");
    let table = ok(
        &replica,
        &["list", "household"],
        &[("GRIDSYNC_UTC_OFFSET", "+00:00")],
    );
    assert!(
        table.contains("时间为 UTC+00:00（GRIDSYNC_UTC_OFFSET 设定）"),
        "{table}"
    );
    runtime.block_on(server.stop());
}

#[test]
fn test_overdue_matches_the_dashboard_east_of_utc_after_local_midnight() {
    // 22:10 UTC on 30 November is 06:10 on 1 December at UTC+8.
    check_boundary(
        480,
        "2026-11-30T22:10:00Z",
        ["2026-11-29", "2026-11-30", "2026-12-01"],
        [true, true, false],
        "UTC+08:00",
    );
}

#[test]
fn test_overdue_matches_the_dashboard_west_of_utc_before_local_midnight() {
    // 02:00 UTC on 1 December is 21:00 on 30 November at UTC−5.
    check_boundary(
        -300,
        "2026-12-01T02:00:00Z",
        ["2026-11-29", "2026-11-30", "2026-12-01"],
        [true, false, false],
        "UTC-05:00",
    );
}

/// A replica signed in the way a device before protocol 5 did (`Login`, answered by `LoginOk`
/// alone) has no zone: the CLI shows the device's own and says so. Its next sync learns the
/// relay's, and a later one the relay's new setting.
#[test]
fn test_a_replica_signed_in_without_a_zone_falls_back_until_a_sync_tells_it() {
    use gridsync_core::protocol::{ClientMsg, LoginRequest, ServerMsg};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let server = relay(&runtime, &data, 480);
    let replica = dir.path().join("replica");
    let mut r = gridsync_core::Replica::open(&replica).unwrap();
    let (answer, zones) = runtime.block_on(async {
        let mut raw = gridsync_e2e::RawClient::connect(&server).await;
        raw.send(&ClientMsg::Login(LoginRequest {
            username: "w1".into(),
            password: PASSWORD.into(),
            device_name: "旧手机".into(),
            actor: r.actor_hex(),
        }))
        .await;
        let mut zones = 0;
        loop {
            match raw.recv().await {
                Some(ServerMsg::LoginOk(answer)) => break (answer, zones),
                Some(ServerMsg::Zone(_)) => zones += 1,
                other => panic!("{other:?}"),
            }
        }
    });
    assert_eq!(
        zones, 0,
        "no zone to a device that did not announce protocol 5"
    );
    r.enrol(&server.url(), &answer).unwrap();
    drop(r);

    let shown = ok(&replica, &["status"], &[]);
    assert!(
        shown.contains("本机时区") && shown.contains("UTC+00:00"),
        "{shown}"
    );
    let status = ok(&replica, &["status", "--json"], &[]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["time_zone_source"], "device");
    assert_eq!(status["utc_offset_minutes"], Value::Null);

    ok(&replica, &["sync"], &[]);
    let status: Value = serde_json::from_str(&ok(&replica, &["status", "--json"], &[])).unwrap();
    assert_eq!(status["time_zone"], "UTC+08:00");
    assert_eq!(status["time_zone_source"], "relay");

    // The office moves the relay's setting: the next sync brings it.
    let addr = server.addr;
    runtime.block_on(server.stop());
    let mut config = Config {
        listen: addr,
        data_dir: data.clone(),
        ..Config::default()
    };
    config.dashboard.utc_offset_minutes = -300;
    let server = runtime.block_on(TestServer::start_config(&config, None));
    ok(&replica, &["sync"], &[]);
    let shown = ok(&replica, &["status"], &[]);
    assert!(shown.contains("时间为 UTC-05:00（服务器设定）"), "{shown}");
    runtime.block_on(server.stop());
}
