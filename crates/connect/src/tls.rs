//! TLS for the testers, over `credvault-tls`: client configurations as [`TestError`]s, and
//! handshake failures named by what was wrong with the certificate. Shared by FTP, LDAP and
//! PostgreSQL (and Redshift).

use std::sync::Arc;

use credvault_tls::{CertProblem, SetupError};
pub(crate) use credvault_tls::{PgTls, Verify, rustls_error};
use tokio_rustls::rustls;

use crate::{ErrorCode, TestError};

/// `ca_pem`: whether the connection kind has that field (the message then says to give it).
fn setup(e: SetupError, ca_pem: bool) -> TestError {
    let message = match e {
        SetupError::NoUsableCertificate => "ca_pem holds no usable certificate".to_owned(),
        SetupError::NoTrustStore if ca_pem => {
            "no trusted CA certificates were found on the credvault server (give ca_pem, or set SSL_CERT_FILE or SSL_CERT_DIR)".to_owned()
        }
        SetupError::NoTrustStore => {
            "no trusted CA certificates were found on the credvault server (set SSL_CERT_FILE or SSL_CERT_DIR)".to_owned()
        }
        other => other.to_string(),
    };
    TestError::new(ErrorCode::Tls, message)
}

/// A client configuration that verifies servers (chain and name) against the machine's trust
/// store. Shared by the FTP and LDAP testers.
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, TestError> {
    credvault_tls::client_config(Verify::Full, None).map_err(|e| setup(e, false))
}

/// A client configuration for `verify`, trusting `ca_pem` when given, else the machine's store.
pub(crate) fn client_config(verify: Verify, ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, TestError> {
    let roots = match (verify, ca_pem) {
        (Verify::Nothing, _) | (_, None) => None,
        (_, Some(pem)) => Some(credvault_tls::roots_from_pem(pem.as_bytes()).map_err(|e| setup(e, true))?),
    };
    credvault_tls::client_config(verify, roots).map_err(|e| setup(e, true))
}

/// The name a certificate is checked against: the host as given.
pub(crate) fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, TestError> {
    credvault_tls::server_name(host).map_err(|e| setup(e, false))
}

/// A TLS failure named by what went wrong with the certificate (`host` for the message).
pub(crate) fn classify(e: &rustls::Error, host: &str) -> TestError {
    match credvault_tls::cert_problem(e) {
        Some(CertProblem::Expired) => TestError::new(
            ErrorCode::TlsExpired,
            "the server's certificate is outside its validity period (expired or not yet valid)",
        ),
        Some(CertProblem::NameMismatch) => TestError::new(
            ErrorCode::TlsNameMismatch,
            format!("the server's certificate is not valid for {host}"),
        ),
        Some(CertProblem::Untrusted) => TestError::new(
            ErrorCode::TlsUntrusted,
            "the server's certificate is not signed by a trusted CA (give the CA in ca_pem)",
        ),
        None => TestError::new(ErrorCode::Tls, format!("the TLS handshake failed: {e}")),
    }
}
