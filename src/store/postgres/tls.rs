//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say, over
//! rustls (the TLS the project builds anyway, on ring).
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | no |
//! | `require` | always | no; its chain when `sslrootcert` is given (libpq's rule) |
//! | `verify-ca` | always | its chain |
//! | `verify-full` | always | its chain and the host name |
//!
//! The roots a chain is checked against: the PEM file `sslrootcert`, the
//! system's (`sslrootcert=system`), else `~/.postgresql/root.crt` when it
//! exists, else the system's. Client certificates (`sslcert`, `sslkey`)
//! are refused by name rather than ignored.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `sslmode`, as libpq reads it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A store URL made ready to connect: what the client takes, and the TLS
/// it connects with.
pub(super) struct Connection {
    /// The URL without the parameters only this module reads.
    pub(super) url: String,
    pub(super) tls: MakeRustlsConnect,
}

/// Reads `sslmode`, `sslrootcert` (and refuses `sslcert`, `sslkey`) from
/// the query of `url`.
///
/// # Errors
///
/// An unknown `sslmode`, client certificates, or roots that cannot be
/// read; the message names the parameter, never the password.
pub(super) fn prepare(url: &str) -> Result<Connection, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let (mut mode, mut root) = (Mode::Prefer, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => {
                mode = match value {
                    "disable" => Mode::Disable,
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other} is none of disable, allow, prefer, require, verify-ca, verify-full"
                        ));
                    }
                };
            }
            "sslrootcert" => {
                // A path may carry `%XX` escapes in a URL.
                root = Some(
                    percent_encoding::percent_decode_str(value)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
            }
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                    "{name}: client certificates are not supported; use a password"
                ));
            }
            _ => kept.push(pair),
        }
    }
    if mode == Mode::Require && root.is_some() {
        // libpq: with a root certificate, `require` checks the chain.
        mode = Mode::VerifyCa;
    }
    // The client knows `disable`, `prefer` and `require`; what it checks
    // of a certificate is this module's.
    kept.push(match mode {
        Mode::Disable => "sslmode=disable",
        Mode::Prefer => "sslmode=prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "sslmode=require",
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => None,
        Mode::VerifyCa | Mode::VerifyFull => {
            let roots = Arc::new(roots(root.as_deref())?);
            Some(
                WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("the root certificates: {e}"))?,
            )
        }
    };
    let verifier = Verifier {
        inner,
        check_name: mode == Mode::VerifyFull,
        provider: Arc::clone(&provider),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Connection {
        url: format!("{base}?{}", kept.join("&")),
        tls: MakeRustlsConnect::new(config),
    })
}

/// The roots a server's chain is checked against.
fn roots(file: Option<&str>) -> Result<RootCertStore, String> {
    let home_root = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
        .filter(|p| p.is_file());
    let file = match file {
        Some("system") => None,
        Some(f) => Some(PathBuf::from(f)),
        None => home_root,
    };
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {}: no certificate in it",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no root certificates on this system: give sslrootcert=FILE".to_owned());
            }
        }
    }
    Ok(store)
}

/// Checks a server's certificate as the mode says.
#[derive(Debug)]
struct Verifier {
    /// The chain check; `None` takes any certificate (`prefer`, `require`).
    inner: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the certificate must name the host (`verify-full`).
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_roots_are_read_from_the_url() {
        let c = prepare("postgresql://ann@h/db").unwrap();
        assert_eq!(c.url, "postgresql://ann@h/db?sslmode=prefer");
        let c = prepare("postgresql://ann@h/db?application_name=x&sslmode=verify-full").unwrap();
        assert_eq!(
            c.url,
            "postgresql://ann@h/db?application_name=x&sslmode=require"
        );
        let e = prepare("postgresql://h/db?sslmode=sometimes")
            .err()
            .unwrap();
        assert!(e.contains("sslmode=sometimes"), "{e}");
        let e = prepare("postgresql://h/db?sslcert=/c.pem").err().unwrap();
        assert!(e.contains("client certificates"), "{e}");
        let e = prepare("postgresql://h/db?sslmode=verify-ca&sslrootcert=/nonexistent%2Fca.pem")
            .err()
            .unwrap();
        assert!(e.contains("sslrootcert /nonexistent/ca.pem"), "{e}");
    }
}
