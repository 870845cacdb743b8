//! TLS served by the relay itself (`--tls-cert`, `--tls-key`): rustls with the ring provider,
//! HTTP/1.1 over it. Behind a TLS proxy none of this is used: the relay speaks plain HTTP.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why the certificate or the key cannot be served, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("无法读取 cannot read {what} {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error(
        "证书文件无效 no certificate in {}: give the PEM file of the relay's certificate \
         (-----BEGIN CERTIFICATE-----), followed by its intermediate CA certificates if any ({message})",
        path.display()
    )]
    NoCertificate { path: PathBuf, message: String },
    #[error(
        "私钥文件无效 no private key in {}: give the PEM file of the certificate's private key \
         (-----BEGIN PRIVATE KEY-----, RSA or EC, unencrypted) ({message})",
        path.display()
    )]
    NoKey { path: PathBuf, message: String },
    #[error(
        "证书与私钥不符 the certificate {} and the key {} cannot be used together: {message}",
        cert.display(),
        key.display()
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The relay's TLS set-up, read from the files once at start-up.
#[derive(Clone)]
pub struct ServerTls(pub(crate) Arc<ServerConfig>);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// Reads the certificate chain and the private key named in `files` and checks that they go
/// together, so that a wrong file stops the relay at start-up rather than at the first device.
pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsError> {
    let cert_pem = read("the TLS certificate file", &files.cert)?;
    let key_pem = read("the TLS key file", &files.key)?;
    let no_cert = |message: String| TlsError::NoCertificate {
        path: files.cert.clone(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if chain.is_empty() {
        return Err(no_cert("the file holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            message: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls(Arc::new(config)))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    #[test]
    fn test_certificate_and_key_files_are_checked_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (one.cert.pem(), one.signing_key.serialize_pem());

        let good = files(dir.path(), &cert, &key);
        assert!(load(&good).is_ok());

        let missing = TlsFiles {
            cert: dir.path().join("nowhere.pem"),
            key: good.key.clone(),
        };
        let err = load(&missing).unwrap_err().to_string();
        assert!(err.contains("nowhere.pem"), "{err}");

        let swapped = files(dir.path(), &key, &cert);
        let err = load(&swapped).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

        let no_key = files(dir.path(), &cert, &cert);
        let err = load(&no_key).unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");

        let mismatched = files(dir.path(), &cert, &other.signing_key.serialize_pem());
        let err = load(&mismatched).unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    }
}
