//! TLS for `wss://` relays: rustls with the ring provider, the Mozilla root certificates of
//! webpki-roots compiled in, and the one extra CA certificate a replica may have been given at
//! sign-in (a community intranet relay with its own CA).
//!
//! The roots are compiled in rather than read from the phone: they are the same on every
//! Android and iOS version (old phones with stale system stores included), and reading Android's
//! store from Rust needs the app's JVM. A CA that only the system store knows (one an employer's
//! device management installed) is what `--ca-cert` is for.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite;

use crate::error::{Error, Result};

/// Checks that `pem` holds exactly one certificate that can serve as a trust anchor, as
/// [`super::sign_in_with_ca`] does before it connects.
pub fn check_ca_certificate(pem: &str) -> Result<()> {
    let mut roots = RootCertStore::empty();
    add_ca(&mut roots, pem)
}

fn add_ca(roots: &mut RootCertStore, pem: &str) -> Result<()> {
    let bad = |why: String| Error::BadCaCertificate(why);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("not a PEM file ({e})")))?;
    let cert = match <[_; 1]>::try_from(certs) {
        Ok([cert]) => cert,
        Err(certs) if certs.is_empty() => {
            return Err(bad("no certificate in it (a PEM certificate starts with \
                 -----BEGIN CERTIFICATE-----)"
                .into()));
        }
        Err(certs) => {
            return Err(bad(format!(
                "{} certificates in it: give the one CA certificate that signed the relay's",
                certs.len()
            )));
        }
    };
    roots
        .add(cert)
        .map_err(|e| bad(format!("not a usable X.509 certificate ({e})")))
}

/// The client configuration for one connection: the public roots, plus `extra_ca` (PEM).
pub(super) fn client_config(extra_ca: Option<&str>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca {
        add_ca(&mut roots, pem)?;
    }
    // The provider is given here, not installed process-wide: nothing depends on a default
    // provider being set, and an app embedding us may have installed another.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Protocol(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Turns a failed connection into the error a person can act on: a certificate this device does
/// not trust is [`Error::UntrustedCertificate`]; anything else leaves the server unreachable.
pub(super) fn connect_error(server: &str, url: &str, e: tungstenite::Error) -> Error {
    let handshake = match &e {
        tungstenite::Error::Tls(tungstenite::error::TlsError::Rustls(e)) => Some(&**e),
        tungstenite::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match handshake {
        Some(rustls::Error::InvalidCertificate(why)) => Error::UntrustedCertificate {
            server: server.to_string(),
            reason: reason(why),
        },
        Some(other) => Error::Unreachable {
            url: url.to_string(),
            message: format!("TLS handshake failed: {other} (does the relay serve https here?)"),
        },
        None => Error::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        },
    }
}

fn reason(why: &CertificateError) -> String {
    match why {
        CertificateError::UnknownIssuer => "签发机构未知 issued by an authority this device \
                                            does not know"
            .into(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "证书不是颁发给这个地址的 issued for another name or address".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "证书已过期 expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "证书尚未生效 not valid yet (check the phone's date)".into()
        }
        CertificateError::Revoked => "证书已吊销 revoked".into(),
        other => format!("{other:?}"),
    }
}

/// Whether signing in to `server_url` sends the password and the device token in clear to
/// another machine: `http://` or `ws://` to anything but this one (localhost, 127.0.0.0/8, ::1).
/// Plain addresses stay allowed, for tests and for an intranet behind its own protection; the
/// CLI warns about them.
pub fn is_cleartext_remote(server_url: &str) -> bool {
    let url = server_url.trim();
    let lower = url.to_ascii_lowercase();
    let Some(rest) = ["http://", "ws://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let local = host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_only_plain_urls_to_other_machines_are_cleartext() {
        for remote in [
            "http://10.0.0.5:8080",
            "HTTP://relay.example.org",
            "ws://192.168.1.2/v1/sync",
            "http://user@relay:80",
        ] {
            assert!(is_cleartext_remote(remote), "{remote}");
        }
        for local in [
            "https://10.0.0.5",
            "wss://relay.example.org",
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:8080",
            "ws://127.0.0.2",
        ] {
            assert!(!is_cleartext_remote(local), "{local}");
        }
    }

    #[test]
    fn test_a_ca_file_must_hold_exactly_one_certificate() {
        let empty = check_ca_certificate("not a certificate at all");
        assert!(
            matches!(&empty, Err(Error::BadCaCertificate(why)) if why.contains("no certificate")),
            "{empty:?}"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string();
        assert!(matches!(
            check_ca_certificate(&garbage),
            Err(Error::BadCaCertificate(_))
        ));
        let two = format!("{garbage}{garbage}");
        let refused = check_ca_certificate(&two);
        assert!(
            matches!(&refused, Err(Error::BadCaCertificate(why)) if why.contains("2 certificates")),
            "{refused:?}"
        );
    }
}
