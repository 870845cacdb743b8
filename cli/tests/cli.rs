//! Runs the built `gridsync` binary against a replica in a temporary directory.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use gridsync_e2e::{PASSWORD, TestServer};
use gridsync_server::accounts::Role;
use serde_json::{Value, json};

fn gridsync(replica: &Path, args: &[&str]) -> Output {
    gridsync_with(replica, args, &[], None)
}

/// Runs gridsync with these environment variables (and nothing of the caller's gridsync
/// settings) and, if given, this line on stdin.
fn gridsync_with(
    replica: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync"))
        .arg("--replica")
        .arg(replica)
        .args(args)
        .env_remove("GRIDSYNC_REPLICA")
        .env_remove("GRIDSYNC_REPLICA_KEY")
        .env_remove("GRIDSYNC_REPLICA_NEW_KEY")
        .env_remove("RUST_LOG")
        .env_remove("GRIDSYNC_UTC_OFFSET")
        .env_remove("GRIDSYNC_NOW")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gridsync");
    let mut input = child.stdin.take().unwrap();
    if let Some(line) = stdin {
        // gridsync may refuse before it reads stdin.
        let _ = writeln!(input, "{line}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must succeed and returns its stdout.
fn ok(replica: &Path, args: &[&str]) -> String {
    let out = gridsync(replica, args);
    assert!(
        out.status.success(),
        "gridsync {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn ok_json(replica: &Path, args: &[&str]) -> Value {
    let text = ok(replica, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A real relay for the CLI to sign in to, with user `w1` working in grids g1 and g2, and the
/// patrol volunteer `v1` in g1.
struct Relay {
    runtime: tokio::runtime::Runtime,
    server: Option<TestServer>,
    _data: tempfile::TempDir,
}

impl Relay {
    fn start() -> Relay {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let data = tempfile::tempdir().unwrap();
        let server = runtime.block_on(async {
            let server = TestServer::start(data.path()).await;
            server.user("w1", Role::GridWorker, &["g1", "g2"]).await;
            server.user("v1", Role::Volunteer, &["g1"]).await;
            server
        });
        Relay {
            runtime,
            server: Some(server),
            _data: data,
        }
    }

    fn url(&self) -> String {
        self.server.as_ref().map(|s| s.url()).unwrap_or_default()
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

fn login_with(replica: &Path, server: &str, password: &str) -> Output {
    login_args(replica, &["--server", server], password)
}

/// `gridsync login --user w1` with more arguments, the password on stdin.
fn login_args(replica: &Path, args: &[&str], password: &str) -> Output {
    let mut all = vec!["login", "--user", "w1"];
    all.extend_from_slice(args);
    gridsync_with(replica, &all, &[], Some(password))
}

/// Signs `replica` in as w1; returns the relay, which must outlive the test's syncs.
fn init(replica: &Path) -> Relay {
    let relay = Relay::start();
    let out = login_with(replica, &relay.url(), PASSWORD);
    assert!(
        out.status.success(),
        "login failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("w1"), "{}", stdout(&out));
    relay
}

fn create(replica: &Path, kind: &str, fields: &Value) -> String {
    let out = ok(replica, &["create", kind, "--json", &fields.to_string()]);
    let id = out.trim().to_string();
    assert_eq!(
        out.lines().count(),
        1,
        "create must print the id only: {out}"
    );
    assert!(!id.is_empty() && !id.contains(' '), "not an id: {out}");
    id
}

fn household(replica: &Path) -> String {
    create(
        replica,
        "household",
        &json!({"head_name": "张三", "household_type": "registered"}),
    )
}

#[test]
fn test_records_round_trip_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);

    let h = household(&replica);
    let visit = json!({
        "household_id": h, "visit_type": "routine", "outcome": "met",
        "started_at": "2026-11-01T09:00:00Z",
    });
    let v = create(&replica, "visit", &visit);
    assert_ne!(h, v);

    let rows = ok_json(&replica, &["list", "household", "--json"]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], h.as_str());
    assert_eq!(rows[0]["kind"], "household");
    assert_eq!(rows[0]["grid_id"], "g1");
    assert_eq!(rows[0]["has_conflicts"], false);
    let visits = ok_json(&replica, &["list", "visit", "--household", &h, "--json"]);
    assert_eq!(visits.as_array().unwrap().len(), 1);
    assert_eq!(visits[0]["id"], v.as_str());

    let record = ok_json(&replica, &["get", &h, "--json"]);
    assert_eq!(record["head_name"], "张三");
    // The visit moved the household's last visit.
    assert_eq!(record["last_visit_at"], "2026-11-01T09:00:00Z");
    let readable = ok(&replica, &["get", &h]);
    assert!(
        readable.contains("head_name:") && readable.contains("张三"),
        "{readable}"
    );

    let table = ok(&replica, &["list", "household"]);
    assert!(table.starts_with("编号 ID"), "{table}");
    assert!(
        table.contains("标题 Title") && table.contains(&h),
        "{table}"
    );
}

#[test]
fn test_invalid_case_transition_fails_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let h = household(&replica);
    let case = json!({"case_type": "low_income", "household_id": h, "status": "open"});
    let c = create(&replica, "case", &case);

    let updated = ok(
        &replica,
        &["update", &c, "--json", r#"{"status":"closed"}"#],
    );
    assert_eq!(updated.trim(), c);

    let out = gridsync(
        &replica,
        &["update", &c, "--json", r#"{"status":"in_progress"}"#],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("错误 Error: "), "{err}");
    assert!(err.contains("记录无效"), "{err}");
    assert!(
        err.contains("`closed`") && err.contains("`in_progress`"),
        "{err}"
    );
    let record = ok_json(&replica, &["get", &c, "--json"]);
    assert_eq!(record["status"], "closed");
}

#[test]
fn test_a_volunteer_creating_a_case_is_refused_at_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let relay = Relay::start();
    let login = ["login", "--user", "v1", "--server", &relay.url()];
    let out = gridsync_with(&replica, &login, &[], Some(PASSWORD));
    assert!(out.status.success(), "{}", stderr(&out));

    let case = json!({"case_type": "low_income", "subject_name": "张三"}).to_string();
    let out = gridsync(&replica, &["create", "case", "--json", &case]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "", "no id: nothing was created");
    assert_eq!(
        stderr(&out).trim(),
        "错误 Error: 巡逻志愿者无权写入帮扶个案 a volunteer may not write case records; \
         未保存 nothing was stored"
    );
    let status = ok_json(&replica, &["status", "--json"]);
    assert_eq!(status["unsent_changes"], 0);
    assert_eq!(status["records"], 0);

    // A patrol log is the volunteer's to write, and syncs without a refusal.
    create(
        &replica,
        "patrol",
        &json!({"started_at": "2026-11-01T20:00:00Z"}),
    );
    ok(&replica, &["sync"]);
    let status = ok_json(&replica, &["status", "--json"]);
    assert_eq!(status["unsent_changes"], 0);
    assert_eq!(status["rejected"], json!([]));
}

#[test]
fn test_sync_without_server_fails_and_keeps_unsent_changes() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let mut relay = init(&replica);
    let url = relay.url();
    household(&replica);
    relay.stop();

    let out = gridsync(&replica, &["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Cannot reach"), "{err}");
    assert!(err.contains("无法连接服务器") && err.contains("local data is untouched"));

    let status = ok_json(&replica, &["status", "--json"]);
    assert_eq!(status["unsent_changes"], 1);
    assert_eq!(status["worker_id"], "w1");
    assert_eq!(status["grids"], json!(["g1", "g2"]));
    assert_eq!(status["server_url"], url);
    assert_eq!(status["last_sync"], Value::Null);
    assert_eq!(status["records"], 1);
    assert_eq!(
        status["cursors"][1],
        json!({"grid": "g2", "seq": 0, "hash": null})
    );
}

#[test]
fn test_json_input_from_file_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let file = dir.path().join("h.json");
    std::fs::write(&file, r#"{"head_name":"李四","household_type":"migrant"}"#).unwrap();
    let from_file = ok(
        &replica,
        &[
            "create",
            "household",
            "--json",
            &format!("@{}", file.display()),
        ],
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync"))
        .arg("--replica")
        .arg(&replica)
        .args(["update", from_file.trim(), "--json", "-"])
        .env_remove("GRIDSYNC_REPLICA_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(r#"{"head_name":"李四四"}"#.as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let record = ok_json(&replica, &["get", from_file.trim(), "--json"]);
    assert_eq!(record["head_name"], "李四四");

    let out = gridsync(&replica, &["create", "household", "--json", "[1, 2]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("JSON object"), "{}", stderr(&out));
}

#[test]
fn test_commands_need_an_initialised_replica() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("missing");
    let out = gridsync(&replica, &["list", "case"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gridsync login"), "{}", stderr(&out));
    assert!(
        !replica.exists(),
        "a failed command must not create a replica"
    );

    let relay = init(&replica);
    // Signing in again as the same user while the relay still knows this device: the replica's
    // actor is bound to that device, so the relay refuses a second one, and nothing changes.
    let again = login_with(&replica, &relay.url(), PASSWORD);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already bound"),
        "{}",
        stderr(&again)
    );
    assert!(replica.exists(), "the signed-in replica is kept");

    let other = dir.path().join("other");
    let bad = login_with(&other, "x", PASSWORD);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("invalid server address"));
    assert!(!other.exists(), "a refused login must not create a replica");

    let wrong = login_with(&other, &relay.url(), "not the password");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("wrong username or password"),
        "{}",
        stderr(&wrong)
    );
    assert!(!other.exists(), "a failed login leaves no replica behind");
}

#[test]
fn test_overdue_lists_only_past_due_households() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let late = create(
        &replica,
        "household",
        &json!({"head_name": "王五", "household_type": "rented", "next_visit_due": "2000-01-01"}),
    );
    create(
        &replica,
        "household",
        &json!({"head_name": "赵六", "household_type": "rented", "next_visit_due": "2999-01-01"}),
    );
    let rows = ok_json(&replica, &["list", "household", "--overdue", "--json"]);
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [late.as_str()]);
}

#[test]
fn test_login_with_ca_cert_trusts_an_intranet_relay_for_later_syncs() {
    let ca = gridsync_e2e::tls::TestCa::new("和平社区 intranet CA");
    let (cert, key) = ca.leaf();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = runtime.block_on(async {
        let server = TestServer::start_tls(data.path(), &cert, &key).await;
        server.user("w1", Role::GridWorker, &["g1"]).await;
        server
    });
    let url = server.https_url();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let ca_arg = ca_file.to_str().unwrap();

    let untrusted = dir.path().join("untrusted");
    let out = login_with(&untrusted, &url, PASSWORD);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    for part in ["证书不受信任", "is not trusted", "--ca-cert", url.as_str()] {
        assert!(stderr(&out).contains(part), "`{part}` in {}", stderr(&out));
    }
    assert!(!untrusted.exists(), "a refused login leaves no replica");

    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let out = login_args(
        &untrusted,
        &["--server", &url, "--ca-cert", not_pem.to_str().unwrap()],
        PASSWORD,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the CA certificate cannot be used"),
        "{}",
        stderr(&out)
    );

    let replica = dir.path().join("replica");
    let out = login_args(&replica, &["--server", &url, "--ca-cert", ca_arg], PASSWORD);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stderr(&out).contains("Warning"), "{}", stderr(&out));
    household(&replica);
    let synced = ok_json(&replica, &["sync", "--json"]);
    assert_eq!(synced["changes_sent"], 1, "{synced}");
    runtime.block_on(server.stop());
}

#[test]
fn test_login_warns_when_the_password_would_travel_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    // Warned before the password is asked for; with none given, nothing is tried.
    let out = login_with(&dir.path().join("r"), "http://192.0.2.1:9", "");
    assert!(stderr(&out).contains("travel in clear"), "{}", stderr(&out));
    let local = login_with(&dir.path().join("l"), "http://127.0.0.1:9", "");
    assert!(
        !stderr(&local).contains("travel in clear"),
        "{}",
        stderr(&local)
    );
}

const KEY: &str = "x'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'";

/// The replica's files, by name, with their bytes.
fn replica_files(replica: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(replica)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn holds(replica: &Path, text: &str) -> bool {
    replica_files(replica)
        .iter()
        .any(|(_, bytes)| bytes.windows(text.len()).any(|w| w == text.as_bytes()))
}

#[test]
fn test_replica_key_from_the_environment_encrypts_and_is_needed_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let relay = Relay::start();
    let key = [("GRIDSYNC_REPLICA_KEY", KEY)];
    let login = gridsync_with(
        &replica,
        &["login", "--server", &relay.url(), "--user", "w1"],
        &key,
        Some(PASSWORD),
    );
    assert!(login.status.success(), "{}", stderr(&login));
    let created = gridsync_with(
        &replica,
        &[
            "create",
            "household",
            "--json",
            r#"{"head_name":"欧阳明珠","household_type":"registered"}"#,
        ],
        &key,
        None,
    );
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        !holds(&replica, "欧阳明珠"),
        "the name is readable in the replica"
    );

    // Without the key, and with a wrong one: a clear error, and the files stay as they were.
    let before = replica_files(&replica);
    let missing = gridsync(&replica, &["list", "household"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = stderr(&missing);
    assert!(
        err.contains("此副本已加密") && err.contains("GRIDSYNC_REPLICA_KEY"),
        "{err}"
    );
    let wrong = "x'ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100'";
    for args in [&["list", "household"][..], &["status"], &["sync"]] {
        let out = gridsync_with(&replica, args, &[("GRIDSYNC_REPLICA_KEY", wrong)], None);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("错误 Error: 副本密钥不正确 the key does not open this replica"),
            "{err}"
        );
        assert!(err.contains("check GRIDSYNC_REPLICA_KEY"), "{err}");
    }
    let empty = gridsync_with(
        &replica,
        &["list", "household"],
        &[("GRIDSYNC_REPLICA_KEY", "")],
        None,
    );
    assert!(
        stderr(&empty).contains("is set but empty"),
        "{}",
        stderr(&empty)
    );
    assert_eq!(replica_files(&replica), before);

    let rows = gridsync_with(&replica, &["list", "household", "--json"], &key, None);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&rows)).unwrap()[0]["title"],
        "欧阳明珠"
    );

    // A new key from GRIDSYNC_REPLICA_NEW_KEY; the unsent change is kept.
    let rekey = gridsync_with(
        &replica,
        &["rekey"],
        &[
            ("GRIDSYNC_REPLICA_KEY", KEY),
            ("GRIDSYNC_REPLICA_NEW_KEY", "新口令 new passphrase"),
        ],
        None,
    );
    assert!(rekey.status.success(), "{}", stderr(&rekey));
    assert!(stdout(&rekey).contains("密钥已更换"), "{}", stdout(&rekey));
    let old = gridsync_with(&replica, &["status"], &key, None);
    assert!(stderr(&old).contains("副本密钥不正确"), "{}", stderr(&old));
    let new = [("GRIDSYNC_REPLICA_KEY", "新口令 new passphrase")];
    let status = gridsync_with(&replica, &["status", "--json"], &new, None);
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["unsent_changes"], 1);
    let synced = gridsync_with(&replica, &["sync"], &new, None);
    assert!(synced.status.success(), "{}", stderr(&synced));
}

#[test]
fn test_rekey_encrypts_a_plain_replica_in_place_with_the_key_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    household(&replica);
    assert!(holds(&replica, "张三"));
    // GRIDSYNC_REPLICA_KEY names the key the replica has now: a plain one has none.
    let confused = gridsync_with(&replica, &["rekey"], &[("GRIDSYNC_REPLICA_KEY", KEY)], None);
    assert!(
        stderr(&confused).contains("is not encrypted"),
        "{}",
        stderr(&confused)
    );
    let listed = gridsync_with(
        &replica,
        &["list", "household"],
        &[("GRIDSYNC_REPLICA_KEY", KEY)],
        None,
    );
    assert!(
        stderr(&listed).contains("此副本未加密"),
        "{}",
        stderr(&listed)
    );

    let out = gridsync_with(&replica, &["rekey"], &[], Some(KEY));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("副本已加密"), "{}", stdout(&out));
    assert!(!holds(&replica, "张三"), "the name is still readable");
    assert!(stderr(&gridsync(&replica, &["status"])).contains("此副本已加密"));
    let status = gridsync_with(
        &replica,
        &["status", "--json"],
        &[("GRIDSYNC_REPLICA_KEY", KEY)],
        None,
    );
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(
        (status["unsent_changes"].clone(), status["records"].clone()),
        (json!(1), json!(1))
    );
}

#[test]
fn test_check_salvages_a_damaged_replica_and_keeps_its_unsent_changes() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let synced = household(&replica);
    ok(&replica, &["sync"]);
    let marker = "完好无损的户主姓名MARKER-0123456789";
    let id = household(&replica);
    // Enough changes for a snapshot, where the name is stored as it was written.
    for n in 0..4 {
        let patch = json!({"head_name": format!("{marker}{n}")}).to_string();
        ok(&replica, &["update", &id, "--json", &patch]);
    }
    let sound = ok(&replica, &["check"]);
    assert!(
        sound.contains("副本完好") && sound.contains("sound"),
        "{sound}"
    );

    // Bytes of the stored record overwritten on disk: SQLite's own checks cannot see it.
    let path = replica.join("replica.sqlite3");
    let mut bytes = std::fs::read(&path).unwrap();
    // The snapshot holds the four names one after the other (Automerge keeps a column of the
    // values); each unsent change in the outbox holds one. Overwrite the snapshot's copies only
    // (also a stale one a freed page may still hold), so the unsent changes stay whole.
    let copies: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_bytes())
        .map(|(at, _)| at)
        .collect();
    let in_snapshot: Vec<usize> = copies
        .iter()
        .copied()
        .filter(|&at| {
            copies
                .iter()
                .any(|&next| next > at && next <= at + marker.len() + 16)
        })
        .collect();
    assert!(
        !in_snapshot.is_empty(),
        "the snapshot holds the names as written"
    );
    for at in in_snapshot {
        bytes[at + 3..at + 9].copy_from_slice(b"XXXXXX");
    }
    std::fs::write(&path, bytes).unwrap();

    let out = ok(&replica, &["check"]);
    assert!(out.contains("已损坏") && out.contains("damaged"), "{out}");
    assert!(out.contains("已保留 5 条尚未上传的修改"), "{out}");
    assert!(out.contains("gridsync sync"), "{out}");
    let moved: Vec<_> = std::fs::read_dir(&replica)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("replica.sqlite3.damaged-") && !n.contains("-wal"))
        .filter(|n| !n.ends_with("-shm"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    let record = ok_json(&replica, &["get", &id, "--json"]);
    assert_eq!(record["head_name"], format!("{marker}3"));
    assert_eq!(
        ok_json(&replica, &["status", "--json"])["unsent_changes"],
        5
    );

    // Still signed in; the next sync sends the kept changes and brings the rest back.
    ok(&replica, &["sync"]);
    assert_eq!(
        ok_json(&replica, &["status", "--json"])["unsent_changes"],
        0
    );
    let list = ok(&replica, &["list", "household", "--json"]);
    assert!(list.contains(&synced) && list.contains(&id), "{list}");
}

#[test]
fn test_any_command_salvages_a_truncated_replica_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let synced: Vec<String> = (0..20).map(|_| household(&replica)).collect();
    ok(&replica, &["sync"]);
    let unsent = household(&replica);
    let path = replica.join("replica.sqlite3");
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2 / 4096 * 4096).unwrap();
    drop(file);

    let out = gridsync(&replica, &["list", "household", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let notice = stderr(&out);
    assert!(
        notice.contains("注意 Notice") && notice.contains("已保留 1 条尚未上传的修改"),
        "{notice}"
    );
    assert!(stdout(&out).contains(&unsent), "{}", stdout(&out));
    ok(&replica, &["sync"]);
    let list = ok(&replica, &["list", "household", "--json"]);
    for id in synced.iter().chain([&unsent]) {
        assert!(list.contains(id.as_str()), "{id} is back: {list}");
    }
}

#[test]
fn test_schema_lists_kinds_and_fields_with_labels_and_choices() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    // No replica is needed to read the schema.
    let kinds = ok(&replica, &["schema"]);
    assert!(
        kinds.contains("household") && kinds.contains("户 Household"),
        "{kinds}"
    );
    assert!(
        kinds.contains("report") && kinds.contains("社情民意"),
        "{kinds}"
    );
    let case = ok(&replica, &["schema", "case"]);
    assert!(
        case.starts_with("帮扶个案 Assistance case (case)"),
        "{case}"
    );
    assert!(
        case.contains("case_type") && case.contains("必填 required"),
        "{case}"
    );
    assert!(case.contains("low_income=低保"), "{case}");
    assert!(case.contains("actions[].kind"), "{case}");
    let json = ok_json(&replica, &["schema", "household", "--json"]);
    assert_eq!(json["kind"], "household");
    assert_eq!(json["fields"][0]["name"], "head_name");
    assert_eq!(json["fields"][0]["label"]["zh"], "户主");
    let all = ok_json(&replica, &["schema", "--json"]);
    assert_eq!(all["kinds"].as_array().unwrap().len(), 10);
    let out = gridsync(&replica, &["schema", "cases"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("household, visit, patrol, case, report"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_a_misspelt_field_is_refused_naming_the_nearest_one() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let out = gridsync(
        &replica,
        &[
            "create",
            "household",
            "--json",
            r#"{"headname": "张三", "household_type": "registered"}"#,
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("户没有字段「headname」，是否想写「head_name」"),
        "{err}"
    );
    assert!(err.contains("gridsync schema household"), "{err}");
    let rows = ok_json(&replica, &["list", "household", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 0);
}

#[test]
fn test_my_tasks_come_by_deadline_with_the_households_due_today() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let task = |title: &str, assignee: &str, deadline: &str| {
        create(
            &replica,
            "task",
            &json!({"title": title, "source": "office", "assignee": assignee, "deadline": deadline}),
        )
    };
    let later = task("回访独居老人", "w1", "2026-12-20T18:00:00+08:00");
    let sooner = task("清理消防通道", "w1", "2026-12-05T18:00:00+08:00");
    task("别人的任务", "someone", "2026-12-01T18:00:00+08:00");
    let done = task("已办结的任务", "w1", "2026-12-01T18:00:00+08:00");
    ok(
        &replica,
        &["update", &done, "--json", r#"{"status":"closed"}"#],
    );
    create(
        &replica,
        "household",
        &json!({"head_name": "孙七", "household_type": "registered", "assigned_worker": "w1", "next_visit_due": "2000-01-01"}),
    );

    let rows = ok_json(&replica, &["list", "task", "--mine", "--json"]);
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [sooner.as_str(), later.as_str()]);
    let plan = ok(&replica, &["list", "task", "--mine"]);
    assert!(plan.starts_with("今日待走访 1 户"), "{plan}");
    assert!(plan.contains("孙七"), "{plan}");
    let (first, second) = (
        plan.find("清理消防通道").unwrap(),
        plan.find("回访独居老人").unwrap(),
    );
    assert!(first < second, "{plan}");
    assert!(
        !plan.contains("别人的任务") && !plan.contains("已办结"),
        "{plan}"
    );
}

/// `gridsync` with a fixed clock and community zone, and its stdout (it must succeed).
fn at(replica: &Path, now: &str, offset: &str, args: &[&str]) -> String {
    let out = gridsync_with(
        replica,
        args,
        &[("GRIDSYNC_NOW", now), ("GRIDSYNC_UTC_OFFSET", offset)],
        None,
    );
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn test_overdue_uses_the_communitys_local_day_at_the_utc_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let h = create(
        &replica,
        "household",
        &json!({"head_name": "王五", "household_type": "rented", "next_visit_due": "2026-11-30"}),
    );
    // 22:10 UTC on 30 November is 06:10 on 1 December in the community (UTC+8): the household
    // is overdue there, as the dashboard counts it, though the UTC day is still the 30th.
    let now = "2026-11-30T22:10:00Z";
    let local = at(
        &replica,
        now,
        "+08:00",
        &["list", "household", "--overdue", "--json"],
    );
    assert!(local.contains(&h), "{local}");
    let utc = at(
        &replica,
        now,
        "+00:00",
        &["list", "household", "--overdue", "--json"],
    );
    assert!(!utc.contains(&h), "{utc}");
    let table = at(&replica, now, "+08:00", &["list", "household", "--overdue"]);
    assert!(
        table.contains("时间为 UTC+08:00（GRIDSYNC_UTC_OFFSET 设定）"),
        "{table}"
    );
}

#[test]
fn test_get_and_list_speak_in_labels_and_local_times_and_json_keeps_codes() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let _relay = init(&replica);
    let h = household(&replica);
    let case = |fields: &Value| {
        let out = gridsync_with(
            &replica,
            &["create", "case", "--json", &fields.to_string()],
            &[("GRIDSYNC_UTC_OFFSET", "+08:00")],
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let c = case(&json!({
        "case_type": "low_income", "household_id": h, "status": "open", "subject_name": "张三",
        "actions": [
            {"kind": "goods", "at": "2026-11-02 10:00", "description": "米面油"},
            {"kind": "visit", "at": "2026-11-01 09:00", "description": "入户核实"},
        ],
    }));
    let shown = at(&replica, "2026-11-03T00:00:00Z", "+08:00", &["get", &c]);
    assert!(
        shown.contains("个案类型 case_type:") && shown.contains("低保 (low_income)"),
        "{shown}"
    );
    assert!(
        shown.contains("状态 status:") && shown.contains("已立案 (open)"),
        "{shown}"
    );
    // Entries one a line, in time order, with their author; times in the community's zone.
    let visit = shown
        .find("- 2026-11-01 09:00 · 走访 · 入户核实 · (w1)")
        .expect(&shown);
    let goods = shown
        .find("- 2026-11-02 10:00 · 发放物资 · 米面油 · (w1)")
        .expect(&shown);
    assert!(visit < goods, "{shown}");
    // The record's own fields first, in the order of its kind, then the system's.
    let (kind_first, system_last) = (
        shown.find("个案类型").unwrap(),
        shown.find("创建人").unwrap(),
    );
    assert!(kind_first < system_last, "{shown}");
    let table = at(
        &replica,
        "2026-11-03T00:00:00Z",
        "+08:00",
        &["list", "case"],
    );
    assert!(
        table.contains("低保 张三") && table.contains("已立案"),
        "{table}"
    );
    let json = ok_json(&replica, &["get", &c, "--json"]);
    assert_eq!(json["case_type"], "low_income");
    assert_eq!(json["actions"][1]["at"], "2026-11-01T09:00:00+08:00");
}
