//! `gridsync attach` and `gridsync attachment` against a real relay, through the built binary.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use gridsync_e2e::{PASSWORD, TestServer};
use gridsync_server::accounts::Role;
use serde_json::Value;

fn gridsync(replica: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync"))
        .arg("--replica")
        .arg(replica)
        .args(args)
        .env_remove("GRIDSYNC_REPLICA")
        .env_remove("GRIDSYNC_REPLICA_KEY")
        .env_remove("GRIDSYNC_ATTACHMENT_CACHE_MB")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gridsync");
    let mut input = child.stdin.take().unwrap();
    if let Some(line) = stdin {
        let _ = writeln!(input, "{line}");
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(replica: &Path, args: &[&str]) -> String {
    let out = gridsync(replica, args, None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gridsync {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn ok_json(replica: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(replica, args)).unwrap()
}

#[test]
fn test_attach_prints_the_hash_stores_the_file_and_status_counts_it_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = runtime.block_on(async {
        let server = TestServer::start(data.path()).await;
        server.user("w1", Role::GridWorker, &["g1"]).await;
        server
    });
    let login = gridsync(
        &replica,
        &["login", "--user", "w1", "--server", &server.url()],
        Some(PASSWORD),
    );
    assert!(login.status.success(), "{login:?}");
    let h = ok(
        &replica,
        &[
            "create",
            "household",
            "--json",
            r#"{"head_name": "张三", "household_type": "registered"}"#,
        ],
    );
    let h = h.trim();
    let file = dir.path().join("申请表.pdf");
    let bytes: Vec<u8> = b"%PDF-1.4 "
        .iter()
        .copied()
        .chain((0..200_000u32).map(|i| (i * 7 % 251) as u8))
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let file_arg = file.to_str().unwrap();

    let hash = ok(
        &replica,
        &["attach", h, file_arg, "--caption", "低保申请表"],
    );
    let hash = hash.trim();
    assert_eq!(hash.len(), 64, "prints the hash alone: {hash}");
    let record = ok_json(&replica, &["get", h, "--json"]);
    let entry = &record["attachments"][0];
    assert_eq!(entry["hash"], hash);
    assert_eq!(entry["caption"], "低保申请表");
    assert_eq!(entry["media_type"], "application/pdf");
    assert_eq!(entry["name"], "申请表.pdf");
    assert_eq!(entry["size"], bytes.len());

    let status = ok_json(&replica, &["status", "--json"]);
    assert_eq!(status["attachments"]["waiting"], 1);
    assert_eq!(status["unsent_changes"], 2);
    let table = ok(&replica, &["status"]);
    assert!(table.contains("待上传附件 Attachments waiting"), "{table}");

    let back = dir.path().join("back.pdf");
    ok(
        &replica,
        &["attachment", hash, "--out", back.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&back).unwrap(), bytes);

    // One this device lacks, with the relay gone: said so, nothing written.
    runtime.block_on(server.stop());
    let other = "ab".repeat(32);
    let missing = dir.path().join("missing.jpg");
    let out = gridsync(
        &replica,
        &["attachment", &other, "--out", missing.to_str().unwrap()],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot reach") && err.contains("not fetched"),
        "{err}"
    );
    assert!(!missing.exists());
    let out = gridsync(&replica, &["attach", h, "/no/such/file.jpg"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("无法读取该文件"));
}
