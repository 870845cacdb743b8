//! TLS for the end-to-end tests: certificates made on the spot with rcgen (a CA, and a leaf for
//! 127.0.0.1 and localhost signed by it), a relay serving them, and a TCP recorder that shows
//! what a device put on the wire.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use gridsync_server::config::{Limits, TlsFiles};
use gridsync_server::{Config, tls};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::TestServer;

/// A certificate authority of the test's own, as a community office would run for its intranet.
pub struct TestCa {
    /// Its certificate, what a device is given with `--ca-cert`.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A relay certificate for 127.0.0.1 and localhost signed by this CA: (certificate, key),
    /// both PEM.
    pub fn leaf(&self) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("leaf parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "gridsync relay");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
        (cert.pem(), key.serialize_pem())
    }
}

impl TestServer {
    /// Starts a relay on a free port that serves TLS itself with `cert` and `key` (PEM, written
    /// beside its data in `data_dir`), as `--tls-cert` and `--tls-key` do. Reach it at
    /// [`TestServer::https_url`].
    pub async fn start_tls(data_dir: &Path, cert: &str, key: &str) -> TestServer {
        let files = TlsFiles {
            cert: data_dir.join("relay-cert.pem"),
            key: data_dir.join("relay-key.pem"),
        };
        std::fs::create_dir_all(data_dir).expect("data dir");
        std::fs::write(&files.cert, cert).expect("write certificate");
        std::fs::write(&files.key, key).expect("write key");
        let served = tls::load(&files).expect("load certificate and key");
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            limits: Limits::default(),
            tls: Some(files),
            ..Config::default()
        };
        TestServer::start_config(&config, Some(served)).await
    }

    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// Forwards 127.0.0.1 connections to `upstream` and keeps every byte clients sent.
pub struct Recorder {
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(upstream: SocketAddr) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("recorder address");
        let sent: Arc<Mutex<Vec<u8>>> = Arc::default();
        let kept = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, kept).await;
                    }
                });
            }
        });
        Recorder { addr, sent, task }
    }

    /// Everything clients sent so far, all connections one after another.
    pub fn sent(&self) -> Vec<u8> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(client: TcpStream, server: TcpStream, kept: Arc<Mutex<Vec<u8>>>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Ok(mut k) = kept.lock() {
                k.extend_from_slice(&buf[..n]);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}
