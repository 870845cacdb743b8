//! The `gridsync-server` binary as an operator runs it: flags, health check, SIGTERM.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Starts the binary on a free port; returns it, its address and the rest of its log.
fn start(data: &std::path::Path) -> (Child, String, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-server"))
        .args(["--listen", "127.0.0.1:0"])
        .env("GRIDSYNC_DATA_DIR", data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("the server says where it listens");
    (child, addr, lines)
}

/// Sends SIGTERM and waits (15 s at most) for a clean exit that logs "stopped".
fn stop(mut child: Child, lines: std::io::Lines<BufReader<ChildStdout>>) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "clean exit on SIGTERM: {exit}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

/// A `/v1/sync` connection upgraded by hand, so that any bytes can follow.
fn upgrade(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /v1/sync HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// The header of a masked (with zeros) binary WebSocket frame announcing `len` bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

#[test]
fn test_server_binary_serves_health_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let (child, addr, lines) = start(data.path());
    let health = http_get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    assert!(
        data.path().join("gridsync.sqlite3").exists(),
        "data dir taken from the environment"
    );
    stop(child, lines);
}

#[test]
fn test_sigterm_stops_the_server_despite_idle_and_half_open_connections() {
    let data = tempfile::tempdir().unwrap();
    let (child, addr, lines) = start(data.path());
    let mut held = Vec::new();
    // Half a request's headers, then nothing.
    for _ in 0..20 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n")
            .unwrap();
        held.push(s);
    }
    // Connected, nothing sent.
    for _ in 0..5 {
        held.push(TcpStream::connect(&addr).unwrap());
    }
    // A keep-alive connection, idle after one request.
    let mut kept = TcpStream::connect(&addr).unwrap();
    write!(kept, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = [0u8; 12];
    kept.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    held.push(kept);
    // Sync sockets that never say hello, and one stuck halfway through its first frame.
    for _ in 0..5 {
        held.push(upgrade(&addr));
    }
    let mut half = upgrade(&addr);
    half.write_all(&frame_header(4096)).unwrap();
    half.write_all(&[0; 1000]).unwrap();
    held.push(half);
    // Everything above was accepted before this answers.
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));

    stop(child, lines);
    drop(held);
}

/// 200 sockets that never sign in, each sending all but the last byte of a 1 MiB first frame,
/// made the relay hold 200 MiB more before the read budget; now each is closed after 16 KiB.
#[cfg(target_os = "linux")]
#[test]
fn test_unauthenticated_sockets_cannot_make_the_relay_grow() {
    fn peak_kib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }
    let data = tempfile::tempdir().unwrap();
    let (child, addr, lines) = start(data.path());
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    let before = peak_kib(child.id());

    const MIB: usize = 1024 * 1024;
    let mut payload = frame_header(MIB as u64);
    payload.extend(std::iter::repeat_n(0u8, MIB - 1));
    let payload = std::sync::Arc::new(payload);
    let attackers: Vec<_> = (0..200)
        .map(|_| {
            let (addr, payload) = (addr.clone(), payload.clone());
            std::thread::spawn(move || {
                let mut s = upgrade(&addr);
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                // Refused partway once the relay stops reading: an error here is the point.
                let _ = s.write_all(&payload);
                s
            })
        })
        .collect();
    let sockets: Vec<TcpStream> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    let grown = peak_kib(child.id()).saturating_sub(before);
    // A sanity bound, far below the 200 MiB the unfinished frames would take if buffered.
    eprintln!("200 unauthenticated sockets: the relay grew by {grown} KiB at most");
    assert!(grown < 64 * 1024, "the relay grew by {grown} KiB");
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    drop(sockets);
    stop(child, lines);
}
