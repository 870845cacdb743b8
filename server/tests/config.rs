//! The relay's settings as an operator gives them: a TOML file with `--config`, environment
//! variables over it, flags over both; a wrong key stops the relay; the log as JSON, and as
//! plain text without colour codes when it goes to a file or a pipe.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The relay process, killed when the test ends, however it ends.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridsync-server"));
    // Nothing of the machine running the tests leaks in.
    for (key, _) in std::env::vars() {
        if key.starts_with("GRIDSYNC_") {
            command.env_remove(key);
        }
    }
    command
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

/// Reads the log until the relay says where it listens; returns the lines read so far.
fn until_listening(child: &mut Child) -> (Vec<String>, std::io::Lines<BufReader<ChildStdout>>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        let done = line.contains("listening on http://");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("listening on")),
        "{seen:?}"
    );
    (seen, lines)
}

/// The address after `marker` in a log line.
fn address_after(lines: &[String], marker: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.split(marker).nth(1))
        .and_then(|r| r.split(['/', ' ', '"']).next())
        .unwrap_or_else(|| panic!("{marker} in {lines:?}"))
        .to_string()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Sends SIGTERM and waits for a clean exit; returns the rest of the log.
fn terminate(mut relay: Relay, rest: std::io::Lines<BufReader<ChildStdout>>) -> Vec<String> {
    let status = Command::new("kill")
        .args(["-TERM", &relay.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Ends when the relay closes its output, at exit.
    let rest: Vec<String> = rest.map_while(Result::ok).collect();
    assert!(relay.0.wait().unwrap().success(), "{rest:?}");
    rest
}

#[test]
fn test_config_file_sets_the_relay_and_environment_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env) = (dir.path().join("file-data"), dir.path().join("env-data"));
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "# a relay's settings\nlisten = \"127.0.0.1:0\"\nmetrics-listen = \"127.0.0.1:0\"\n\
             data-dir = {:?}\ndoc-cache = 10\n",
            from_file.display().to_string()
        ),
    )
    .unwrap();
    let mut relay = Relay(
        server()
            .arg("--config")
            .arg(&config)
            .args(["--doc-cache", "30"])
            .env("GRIDSYNC_DATA_DIR", &from_env)
            .env("GRIDSYNC_DOC_CACHE", "20")
            .spawn()
            .unwrap(),
    );
    let (lines, rest) = until_listening(&mut relay.0);
    // The listen address and the metrics port come from the file ...
    let public = address_after(&lines, "listening on http://");
    assert!(http_get(&public, "/healthz").starts_with("HTTP/1.1 200"));
    let metrics_port = address_after(&lines, "metrics on http://");
    let metrics = http_get(&metrics_port, "/metrics");
    // ... the data directory from the environment, over the file ...
    assert!(from_env.join("gridsync.sqlite3").exists());
    assert!(!from_file.exists(), "the file's data-dir was overridden");
    // ... and the document cache from the flag, over both.
    assert!(
        metrics.contains("\ngridsync_doc_cache_capacity 30\n"),
        "{metrics}"
    );
    // A scraper's idle keep-alive connection does not hold up a graceful stop.
    let mut idle = TcpStream::connect(&metrics_port).unwrap();
    write!(
        idle,
        "GET /metrics HTTP/1.1\r\nHost: {metrics_port}\r\n\r\n"
    )
    .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let rest = terminate(relay, rest);
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");

    // GRIDSYNC_CONFIG names the file too.
    let mut relay = Relay(
        server()
            .env("GRIDSYNC_CONFIG", &config)
            .env("GRIDSYNC_DATA_DIR", &from_env)
            .spawn()
            .unwrap(),
    );
    let (lines, _rest) = until_listening(&mut relay.0);
    let metrics = http_get(&address_after(&lines, "metrics on http://"), "/metrics");
    assert!(
        metrics.contains("\ngridsync_doc_cache_capacity 10\n"),
        "{metrics}"
    );
}

#[test]
fn test_unknown_key_in_the_config_file_stops_the_relay_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"/var/lib/gridsync\"\n",
    )
    .unwrap();
    let out = server()
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("\"data_dir\""), "{stderr}");
    assert!(stderr.contains("未知的设置项"), "{stderr}");
    assert!(stderr.contains("unknown setting"), "{stderr}");
    assert!(stderr.contains("write it data-dir"), "{stderr}");
    assert!(
        !dir.path().join("data").exists() && out.stdout.is_empty(),
        "nothing started"
    );

    let missing = server()
        .args(["--config", "no-such-relay.toml"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert!(
        stderr.contains("cannot read the config file no-such-relay.toml"),
        "{stderr}"
    );
}

#[test]
fn test_json_logs_are_one_object_a_line() {
    let data = tempfile::tempdir().unwrap();
    let mut relay = Relay(
        server()
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(data.path())
            .spawn()
            .unwrap(),
    );
    let (mut lines, rest) = until_listening(&mut relay.0);
    let public = address_after(&lines, "listening on http://");
    assert!(http_get(&public, "/healthz").starts_with("HTTP/1.1 200"));
    // The shutdown's lines too.
    lines.extend(terminate(relay, rest));
    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(event["level"], "INFO", "{line}");
        assert!(event["message"].is_string(), "{line}");
        assert!(event["timestamp"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"message\":\"stopped\"")));
}

#[test]
fn test_text_log_to_a_pipe_has_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    let mut relay = Relay(
        server()
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .spawn()
            .unwrap(),
    );
    let (lines, rest) = until_listening(&mut relay.0);
    let mut lines = lines;
    lines.extend(terminate(relay, rest));
    let text = lines.join("\n");
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes in {text:?}");
}

#[test]
fn test_purge_attachments_takes_its_data_dir_and_grace_period_from_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An upload nobody continued for three days.
    let partial = data.join("attachments/partial").join("ab".repeat(32));
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, [7u8; 1000]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3 * 24 * 3600))
        .unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\nattachment-grace-days = 5\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let purge = |grace_env: Option<&str>, args: &[&str]| {
        let mut command = server();
        command
            .arg("--config")
            .arg(&config)
            .args(["admin", "purge-attachments"])
            .args(args);
        if let Some(days) = grace_env {
            command.env("GRIDSYNC_ATTACHMENT_GRACE_DAYS", days);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };

    // Five days from the file: too young to go.
    let out = purge(None, &["--dry-run"]);
    assert!(
        out.starts_with("没有可清除的附件（宽限期 5 天） nothing to purge"),
        "{out}"
    );
    // Two from the environment: it would go, and a dry run leaves it.
    let out = purge(Some("2"), &["--dry-run"]);
    assert!(out.starts_with("试运行，未删除任何文件"), "{out}");
    assert!(
        out.contains(&format!("未完成 partial\t{}\t1000", "ab".repeat(32))),
        "{out}"
    );
    assert!(partial.exists());
    let out = purge(Some("2"), &[]);
    assert!(out.starts_with("已清除 1 项，共 1000 字节"), "{out}");
    assert!(
        !partial.exists(),
        "removed from the configured data directory"
    );
}

/// `admin` and the relay on the PostgreSQL database `--database` (or `GRIDSYNC_DATABASE`)
/// names: accounts made by `admin` sign in on the relay, records a device wrote are there for
/// another device after a restart with an empty data directory (nothing was in SQLite), and
/// `admin backup` refuses, pointing at pg_dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_binary_keeps_accounts_and_records_in_the_database_given() {
    use gridsync_core::record::Kind;
    use gridsync_core::{Query, Replica, transport};
    use gridsync_server::storage::postgres::testing::TestDatabase;

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let admin = |args: &[&str], stdin: Option<&str>| {
        let mut child = server()
            .env("GRIDSYNC_DATABASE", db.url())
            .arg("--data-dir")
            .arg(&first)
            .arg("admin")
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            writeln!(child.stdin.take().unwrap(), "{text}").unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let password = "correct horse 电池";
    for args in [
        &["area", "add", "g1", "--name", "一网格", "--level", "grid"][..],
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
    ] {
        let out = admin(args, Some(password));
        assert!(out.status.success(), "{out:?}");
    }
    let backup = admin(&["backup", "b.sqlite3"], None);
    assert!(!backup.status.success());
    let stderr = String::from_utf8(backup.stderr).unwrap();
    assert!(
        stderr.contains("pg_dump") && stderr.contains("请用"),
        "{stderr}"
    );

    let start = |data: &std::path::Path| {
        let mut relay = Relay(
            server()
                .args(["--listen", "127.0.0.1:0", "--database", db.url()])
                .arg("--data-dir")
                .arg(data)
                .spawn()
                .unwrap(),
        );
        let (lines, rest) = until_listening(&mut relay.0);
        assert!(
            lines.iter().any(|l| l.contains("records in PostgreSQL")),
            "{lines:?}"
        );
        let url = format!("http://{}", address_after(&lines, "listening on http://"));
        (relay, rest, url)
    };
    let (relay, rest, url) = start(&first);
    let phone = tempfile::tempdir().unwrap();
    let mut a = Replica::open(phone.path()).unwrap();
    transport::sign_in(&mut a, &url, "wang", password, "手机")
        .await
        .unwrap();
    let serde_json::Value::Object(f) =
        serde_json::json!({"head_name": "张三", "household_type": "rented"})
    else {
        unreachable!()
    };
    a.create(Kind::Household, f).unwrap();
    transport::sync_once(&mut a, None).await.unwrap();
    terminate(relay, rest);
    assert!(
        !first.join("gridsync.sqlite3").exists(),
        "nothing in SQLite"
    );

    let (relay, rest, url) = start(&second);
    let tablet = tempfile::tempdir().unwrap();
    let mut b = Replica::open(tablet.path()).unwrap();
    transport::sign_in(&mut b, &url, "wang", password, "平板")
        .await
        .unwrap();
    transport::sync_once(&mut b, None).await.unwrap();
    assert_eq!(b.count(&Query::default()).unwrap(), 1, "a's household");
    terminate(relay, rest);
}
