//! TLS end to end: a relay serving a certificate from a CA of the test's own (a community
//! intranet's), devices that sign in trusting it with `--ca-cert`'s equivalent and keep it for
//! later syncs, and devices that do not trust it, which are refused before anything is sent.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is what it should do

use gridsync_core::transport;
use gridsync_core::{Error, Query, Replica};
use gridsync_e2e::tls::{Recorder, TestCa};
use gridsync_e2e::{PASSWORD, TestServer, household, sync};
use gridsync_server::accounts::Role;

/// A relay serving a certificate signed by `ca`, with grid worker zhang.wei in g1.
async fn relay(data: &std::path::Path, ca: &TestCa) -> TestServer {
    let (cert, key) = ca.leaf();
    let server = TestServer::start_tls(data, &cert, &key).await;
    server.user("zhang.wei", Role::GridWorker, &["g1"]).await;
    server
}

/// Whether `needle` occurs anywhere in `bytes`.
fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// What must never cross the network in clear, whatever else fails.
fn assert_nothing_in_clear(sent: &[u8]) {
    assert!(!sent.is_empty(), "the device did try to connect");
    assert_eq!(sent[0], 0x16, "the first byte opens a TLS handshake record");
    for secret in [PASSWORD, "GET /v1/sync", "websocket", "zhang.wei"] {
        assert!(
            !holds(sent, secret),
            "`{secret}` went over the wire in clear"
        );
    }
}

#[tokio::test]
async fn test_device_signs_in_over_tls_with_its_ca_and_keeps_it_for_later_syncs() {
    let ca = TestCa::new("和平社区 intranet CA");
    let data = tempfile::tempdir().unwrap();
    let server = relay(data.path(), &ca).await;
    let dir = tempfile::tempdir().unwrap();

    let mut phone = Replica::open(dir.path()).unwrap();
    let answer = transport::sign_in_with_ca(
        &mut phone,
        &server.https_url(),
        "zhang.wei",
        PASSWORD,
        "手机",
        Some(&ca.pem),
    )
    .await
    .unwrap();
    assert_eq!(answer.grids, ["g1"]);
    assert_eq!(
        phone.trusted_ca().unwrap().as_deref(),
        Some(ca.pem.as_str())
    );
    household(&mut phone, "张三");
    let first = sync(&mut phone).await;
    assert_eq!(first.stats.changes_sent, 1);
    drop(phone);

    // A later sync, in a new process as it were, finds the CA in the replica.
    let mut phone = Replica::open(dir.path()).unwrap();
    assert_eq!(
        phone.trusted_ca().unwrap().as_deref(),
        Some(ca.pem.as_str())
    );
    household(&mut phone, "李四");
    let second = sync(&mut phone).await;
    assert_eq!(second.stats.changes_sent, 1);
    assert_eq!(phone.status().unwrap().unsent_changes, 0);

    // Another device of the same office receives both records over TLS.
    let other_dir = tempfile::tempdir().unwrap();
    let mut other = Replica::open(other_dir.path()).unwrap();
    transport::sign_in_with_ca(
        &mut other,
        &format!("wss://{}/v1/sync", server.addr),
        "zhang.wei",
        PASSWORD,
        "平板",
        Some(&ca.pem),
    )
    .await
    .unwrap();
    sync(&mut other).await;
    assert_eq!(other.count(&Query::default()).unwrap(), 2);
}

#[tokio::test]
async fn test_device_without_the_ca_is_refused_and_sends_nothing_in_clear() {
    let ca = TestCa::new("和平社区 intranet CA");
    let data = tempfile::tempdir().unwrap();
    let server = relay(data.path(), &ca).await;
    let recorder = Recorder::start(server.addr).await;
    let url = format!("https://{}", recorder.addr);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = Replica::open(dir.path()).unwrap();

    let refused = transport::sign_in(&mut phone, &url, "zhang.wei", PASSWORD, "手机").await;
    let Err(e @ Error::UntrustedCertificate { .. }) = refused else {
        panic!("expected an untrusted certificate, got {refused:?}");
    };
    let message = e.to_string();
    for part in [
        url.as_str(),
        "证书不受信任",
        "is not trusted",
        "签发机构未知",
        "--ca-cert",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    assert!(matches!(phone.identity(), Err(Error::NotInitialised)));
    assert_nothing_in_clear(&recorder.sent());
}

#[tokio::test]
async fn test_a_wrong_ca_is_refused_at_sign_in_and_at_sync() {
    let ca = TestCa::new("和平社区 intranet CA");
    let stranger = TestCa::new("somebody else's CA");
    let data = tempfile::tempdir().unwrap();
    let server = relay(data.path(), &ca).await;
    let dir = tempfile::tempdir().unwrap();
    let mut phone = Replica::open(dir.path()).unwrap();

    let wrong = transport::sign_in_with_ca(
        &mut phone,
        &server.https_url(),
        "zhang.wei",
        PASSWORD,
        "手机",
        Some(&stranger.pem),
    )
    .await;
    assert!(
        matches!(wrong, Err(Error::UntrustedCertificate { .. })),
        "{wrong:?}"
    );
    assert!(
        phone.trusted_ca().unwrap().is_none(),
        "a refused CA is not kept"
    );

    transport::sign_in_with_ca(
        &mut phone,
        &server.https_url(),
        "zhang.wei",
        PASSWORD,
        "手机",
        Some(&ca.pem),
    )
    .await
    .unwrap();
    household(&mut phone, "张三");

    // The relay comes back on the same address with a certificate from another CA, as a
    // man in the middle would: the device's kept CA does not vouch for it.
    let addr = server.addr;
    server.stop().await;
    let (cert, key) = stranger.leaf();
    let impostor_data = tempfile::tempdir().unwrap();
    let files = (
        impostor_data.path().join("cert.pem"),
        impostor_data.path().join("key.pem"),
    );
    std::fs::write(&files.0, cert).unwrap();
    std::fs::write(&files.1, key).unwrap();
    let config = gridsync_server::Config {
        listen: addr,
        data_dir: impostor_data.path().to_path_buf(),
        tls: Some(gridsync_server::config::TlsFiles {
            cert: files.0,
            key: files.1,
        }),
        ..gridsync_server::Config::default()
    };
    let served = gridsync_server::tls::load(config.tls.as_ref().unwrap()).unwrap();
    let impostor = TestServer::start_config(&config, Some(served)).await;
    let refused = transport::sync_once(&mut phone, None).await;
    assert!(
        matches!(refused, Err(Error::UntrustedCertificate { .. })),
        "{refused:?}"
    );
    assert_eq!(phone.status().unwrap().unsent_changes, 1, "nothing lost");
    impostor.stop().await;
}

#[tokio::test]
async fn test_https_to_a_plain_relay_fails_instead_of_falling_back_to_clear() {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(data.path()).await;
    server.user("zhang.wei", Role::GridWorker, &["g1"]).await;
    let recorder = Recorder::start(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let mut phone = Replica::open(dir.path()).unwrap();

    let url = format!("https://{}", recorder.addr);
    let failed = transport::sign_in(&mut phone, &url, "zhang.wei", PASSWORD, "手机").await;
    let Err(Error::Unreachable { message, .. }) = &failed else {
        panic!("expected the relay to be unreachable over TLS, got {failed:?}");
    };
    assert!(message.contains("TLS handshake failed"), "{message}");
    assert_nothing_in_clear(&recorder.sent());
}

#[tokio::test]
async fn test_stalled_tls_handshakes_count_in_the_caps_and_time_out() {
    use tokio::io::AsyncReadExt;
    let ca = TestCa::new("和平社区 intranet CA");
    let (cert, key) = ca.leaf();
    let data = tempfile::tempdir().unwrap();
    let files = gridsync_server::config::TlsFiles {
        cert: data.path().join("cert.pem"),
        key: data.path().join("key.pem"),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    let served = gridsync_server::tls::load(&files).unwrap();
    let config = gridsync_server::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data.path().to_path_buf(),
        limits: gridsync_server::config::Limits {
            header_timeout: std::time::Duration::from_secs(1),
            max_connections_per_address: 2,
            ..Default::default()
        },
        tls: Some(files),
        ..gridsync_server::Config::default()
    };
    let server = TestServer::start_config(&config, Some(served)).await;
    server.user("zhang.wei", Role::GridWorker, &["g1"]).await;

    // Two connections that never start their handshake fill this address's places.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut phone = Replica::open(dir.path()).unwrap();
    let url = server.https_url();
    let full = transport::sign_in_with_ca(
        &mut phone,
        &url,
        "zhang.wei",
        PASSWORD,
        "手机",
        Some(&ca.pem),
    )
    .await;
    assert!(matches!(full, Err(Error::Unreachable { .. })), "{full:?}");

    // The relay drops them after the header timeout, and the address may connect again.
    for mut s in stalled {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a stalled handshake is dropped in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    transport::sign_in_with_ca(
        &mut phone,
        &url,
        "zhang.wei",
        PASSWORD,
        "手机",
        Some(&ca.pem),
    )
    .await
    .unwrap();
}
