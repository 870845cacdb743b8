//! What the tests that run the `gridsync-server` binary as operators do share: the binary,
//! `admin` commands against a data directory, starting it on a port, a record to write.

#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use gridsync_core::Replica;
use gridsync_core::record::Kind;

pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gridsync-server")
}

pub fn admin(data: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(server_bin())
        .arg("--data-dir")
        .arg(data)
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        writeln!(child.stdin.take().unwrap(), "{text}").unwrap();
    }
    assert!(child.wait().unwrap().success(), "admin {args:?}");
}

pub fn start(data: &Path, port: u16) -> Child {
    let mut child = Command::new(server_bin())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until it says it listens.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref().take(50) {
        if line.unwrap().contains("listening on") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn household(r: &mut Replica, name: String) {
    let fields = serde_json::json!({"head_name": name, "household_type": "rented"});
    let serde_json::Value::Object(map) = fields else {
        unreachable!()
    };
    r.create(Kind::Household, map).unwrap();
}
