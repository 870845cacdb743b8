//! `/metrics` as an operator scrapes it: the relay binary started with `--metrics-listen`, a
//! device signing in and syncing, and the figures an operator watches moving; the public port
//! does not serve them.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gridsync_core::Replica;
use gridsync_core::record::Kind;
use gridsync_core::transport;

mod common;
use common::{admin, server_bin};

const PASSWORD: &str = "metrics-test-password";

/// The relay process, killed when the test ends, however it ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The relay on free ports: (process, public address, metrics address).
fn start(data: &Path) -> (Relay, String, String) {
    let mut child = Command::new(server_bin())
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut public, mut metrics) = (None, None);
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        let after = |marker: &str| {
            line.split(marker)
                .nth(1)
                .and_then(|r| r.split(['/', ' ']).next())
                .map(str::to_string)
        };
        metrics = metrics.or_else(|| after("metrics on http://"));
        public = public.or_else(|| after("listening on http://"));
        if public.is_some() {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (
        Relay(child),
        public.expect("the relay says where it listens"),
        metrics.expect("the relay says where it serves metrics"),
    )
}

fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// Checks the Prometheus text format (version 0.0.4) line by line and returns every sample's
/// value by its series as written (`name{label="v"}`).
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let (mut helped, mut typed) = (HashSet::new(), HashMap::new());
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(is_name(name, true) && !help.is_empty(), "{line}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        let name = match series.split_once('{') {
            None => series,
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap();
                for pair in labels.split(',') {
                    let (key, v) = pair.split_once('=').unwrap();
                    assert!(is_name(key, false), "{line}");
                    assert!(
                        v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
                name
            }
        };
        assert!(is_name(name, true), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|end| {
                name.strip_suffix(end)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no TYPE for {line}");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{line}"
        );
    }
    samples
}

fn scrape(addr: &str) -> HashMap<String, f64> {
    let (head, body) = http_get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse_exposition(&body)
}

fn fields(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(map) = v else {
        unreachable!()
    };
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_metrics_count_what_a_device_did_and_only_on_the_metrics_port() {
    let data = tempfile::tempdir().unwrap();
    admin(
        data.path(),
        &["area", "add", "g1", "--name", "一网格", "--level", "grid"],
        None,
    );
    admin(
        data.path(),
        &[
            "user",
            "add",
            "wang",
            "--name",
            "王",
            "--role",
            "grid_worker",
            "--area",
            "g1",
        ],
        Some(PASSWORD),
    );
    let (_relay, public, metrics) = start(data.path());
    let url = format!("http://{public}");

    let before = scrape(&metrics);
    assert_eq!(before["gridsync_sign_ins_total"], 0.0);
    assert_eq!(before["gridsync_changes_accepted_total"], 0.0);

    // A wrong password first, then the right one.
    let dir = tempfile::tempdir().unwrap();
    let mut replica = Replica::open(dir.path()).unwrap();
    assert!(
        transport::sign_in(&mut replica, &url, "wang", "not-the-password", "")
            .await
            .is_err()
    );
    transport::sign_in(&mut replica, &url, "wang", PASSWORD, "")
        .await
        .unwrap();
    let household = replica
        .create(
            Kind::Household,
            fields(serde_json::json!({"head_name": "李四", "household_type": "rented"})),
        )
        .unwrap()
        .id;
    let visit = |started_at: &str| {
        fields(serde_json::json!({
            "household_id": household,
            "visit_type": "routine",
            "outcome": "met",
            "started_at": started_at,
            "people_met": ["户主"],
        }))
    };
    for day in 1..=3 {
        replica
            .create(Kind::Visit, visit(&format!("2026-10-0{day}T09:00:00Z")))
            .unwrap();
    }
    // A visit dated years ahead: the device has no clock to trust and writes it; the relay
    // refuses it as more than a day after its own time.
    replica
        .create(Kind::Visit, visit("2099-06-01T09:00:00Z"))
        .unwrap();
    let report = transport::sync_once(&mut replica, None).await.unwrap();
    assert_eq!(report.stats.rejected, 1, "{report:?}");
    // `changes_sent` counts the acknowledged ones.
    let accepted = report.stats.changes_sent;
    assert!(accepted >= 4, "{report:?}");

    let after = scrape(&metrics);
    assert_eq!(after["gridsync_sign_ins_total"], 1.0);
    assert_eq!(
        after["gridsync_sign_ins_refused_total{reason=\"bad_credentials\"}"],
        1.0
    );
    assert_eq!(
        after["gridsync_password_checks_total{result=\"wrong\"}"],
        1.0
    );
    assert_eq!(after["gridsync_password_checks_total{result=\"ok\"}"], 1.0);
    assert_eq!(after["gridsync_changes_accepted_total"], accepted as f64);
    assert_eq!(
        after["gridsync_changes_refused_total{reason=\"invalid_content\"}"],
        1.0
    );
    assert_eq!(
        after["gridsync_changes_refused_total{reason=\"wrong_author\"}"],
        0.0
    );
    assert_eq!(after["gridsync_sync_sessions_total"], 1.0);
    assert!(after["gridsync_upload_bytes_total"] > 0.0);
    assert!(after["gridsync_catch_up_bytes_total"] > 0.0);
    assert!(after["gridsync_upload_batch_seconds_count"] >= 1.0);
    assert_eq!(
        after["gridsync_upload_batch_seconds_bucket{le=\"+Inf\"}"],
        after["gridsync_upload_batch_seconds_count"]
    );
    assert!(after["gridsync_catch_up_batch_seconds_count"] >= 1.0);
    assert!(
        after["gridsync_doc_cache_hits_total"] + after["gridsync_doc_cache_misses_total"] > 0.0
    );
    assert_eq!(after["gridsync_storage_errors_total"], 0.0);
    assert!(after["gridsync_disk_free_bytes"] > 0.0);
    assert!(after["gridsync_store_bytes"] > 0.0);

    // The public port does not serve them; the metrics port serves nothing else.
    let (head, _) = http_get(&public, "/metrics");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = http_get(&metrics, "/healthz");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn test_no_metrics_port_unless_asked() {
    let data = tempfile::tempdir().unwrap();
    let mut relay = Relay(
        Command::new(server_bin())
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lines: Vec<String> = BufReader::new(relay.0.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("listening on"))
        .take(20)
        .collect();
    assert!(!lines.iter().any(|l| l.contains("metrics on")), "{lines:?}");
}
