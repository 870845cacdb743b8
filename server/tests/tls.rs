//! The `gridsync-server` binary serving TLS itself, as an operator runs it with `--tls-cert` and
//! `--tls-key`: HTTPS health check and Secure cookies, plain HTTP refused, bad files refused at
//! start-up.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A CA and a certificate for 127.0.0.1 signed by it, written to `dir`: (CA PEM, cert, key).
fn certificates(dir: &Path) -> (String, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca_pem, cert, key)
}

/// Starts the binary with the certificate and key from the environment; returns it, its
/// address and the rest of its log.
fn start(
    data: &Path,
    cert: &Path,
    key: &Path,
) -> (Child, String, std::io::Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-server"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(cert)
        .env("GRIDSYNC_TLS_KEY", key)
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
        if let Some(rest) = line.split("listening on https://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("the server says it listens on https://");
    (child, addr, lines)
}

/// `GET path` over TLS, trusting only `ca_pem`.
fn https_get(addr: &str, path: &str, ca_pem: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    // The relay may close without a TLS close_notify once it has answered.
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "clean exit on SIGTERM: {exit}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn test_server_binary_serves_https_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ca, cert, key) = certificates(dir.path());
    let (child, addr, _log) = start(&data, &cert, &key);

    let health = https_get(&addr, "/healthz", &ca);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    // Without --secure-cookies: serving TLS itself is enough.
    let login = https_get(&addr, "/login", &ca);
    let cookie = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {login}"));
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // The relay may drop the connection before the request is even written (a broken pipe or a
    // reset here): that is a refusal too.
    let _ = write!(plain, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("\"status\""),
        "health answered in clear"
    );
    stop(child);
}

#[test]
fn test_server_binary_refuses_to_start_with_a_missing_or_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, cert, _) = certificates(dir.path());
    let run = |key: &Path| {
        Command::new(env!("CARGO_BIN_EXE_gridsync-server"))
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(key)
            .env("GRIDSYNC_DATA_DIR", &data)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };

    let missing = run(&dir.path().join("no-such-key.pem"));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(stderr.contains("no-such-key.pem"), "{stderr}");

    // A key that is not the certificate's.
    let other = dir.path().join("other-key.pem");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let wrong = run(&other);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    assert!(!data.exists(), "refused before anything was set up");
}
