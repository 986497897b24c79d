//! TLS clients for credvault: trust anchors (the machine's store, or CA certificates given
//! with a connection or a database URL), how much of a server's certificate is verified
//! (`verify-full`, `verify-ca`, nothing — libpq's levels), and rustls under tokio-postgres for
//! the PostgreSQL store and the PostgreSQL/Redshift testers. rustls with aws-lc-rs; TLS 1.2 and
//! 1.3; no OpenSSL.

use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

pub use tokio_rustls::rustls::Error as RustlsError;

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The given PEM held no certificate rustls can use as a trust anchor.
    #[error("the CA certificates hold no usable certificate")]
    NoUsableCertificate,
    /// Verification was asked for and no trust anchor was found on this machine.
    #[error("no trusted CA certificates were found on this machine (set SSL_CERT_FILE or SSL_CERT_DIR)")]
    NoTrustStore,
    /// The host is not something a certificate can be checked against.
    #[error("the host is not a name TLS can verify a certificate against")]
    BadServerName,
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Rustls(String),
    /// The client certificate or its key is not usable PEM.
    #[error("the client certificate or key is not usable: {0}")]
    BadClientIdentity(&'static str),
}

/// A client certificate chain and its private key, for servers that authenticate clients by
/// certificate. `Debug` shows neither.
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// From PEM: the certificate (and any intermediates), and its private key (PKCS#8, SEC1
    /// or PKCS#1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientIdentity, SetupError> {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).flatten().collect();
        if chain.is_empty() {
            return Err(SetupError::BadClientIdentity("no certificate in the certificate file"));
        }
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| SetupError::BadClientIdentity("no private key in the key file"))?;
        Ok(ClientIdentity { chain, key })
    }
}

/// Files that hold the system's CA bundle on common Linux distributions (the first one found
/// wins), as `openssl-probe` looks for them.
const CA_BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/cacert.pem",
];

fn add_pem_file(roots: &mut rustls::RootCertStore, path: &std::path::Path) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Ok(bytes) = std::fs::read(path) else { return };
    for der in CertificateDer::pem_slice_iter(&bytes).flatten() {
        // A certificate rustls cannot use as an anchor is skipped, like rustls-native-certs does.
        let _ = roots.add(der);
    }
}

fn add_pem_dir(roots: &mut rustls::RootCertStore, dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() {
            add_pem_file(roots, &p);
        }
    }
}

/// The machine's trusted CA certificates: `SSL_CERT_FILE` and/or `SSL_CERT_DIR` when set (as
/// `rustls-native-certs`, and so reqwest and ldap3, read them), else the first system bundle
/// found, else `/etc/ssl/certs`.
pub fn trusted_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let file = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
    let dir = std::env::var_os("SSL_CERT_DIR").filter(|v| !v.is_empty());
    if file.is_some() || dir.is_some() {
        if let Some(f) = file {
            add_pem_file(&mut roots, std::path::Path::new(&f));
        }
        if let Some(d) = dir {
            for d in std::env::split_paths(&d) {
                add_pem_dir(&mut roots, &d);
            }
        }
        return roots;
    }
    match CA_BUNDLES.iter().map(std::path::Path::new).find(|p| p.is_file()) {
        Some(bundle) => add_pem_file(&mut roots, bundle),
        None => add_pem_dir(&mut roots, std::path::Path::new("/etc/ssl/certs")),
    }
    roots
}

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The chain to a trusted root and the host name (`verify-full`).
    Full,
    /// The chain to a trusted root, any name (`verify-ca`).
    Chain,
    /// Nothing: encrypted against a passive listener only (`require`/`prefer` without a CA, as
    /// libpq does).
    Nothing,
}

/// The trust anchors in `pem` (one or more `CERTIFICATE` blocks).
pub fn roots_from_pem(pem: &[u8]) -> Result<rustls::RootCertStore, SetupError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = roots.add(der);
    }
    if roots.is_empty() {
        return Err(SetupError::NoUsableCertificate);
    }
    Ok(roots)
}

/// The name a certificate is checked against: `host` as given (an IP literal, bracketed or
/// not, or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, SetupError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| SetupError::BadServerName)
}

/// A client configuration for `verify`, trusting `roots` when given, else the machine's store.
pub fn client_config(
    verify: Verify,
    roots: Option<rustls::RootCertStore>,
) -> Result<Arc<rustls::ClientConfig>, SetupError> {
    client_config_with_identity(verify, roots, None)
}

/// [`client_config`], presenting `identity` when the server asks for a client certificate.
pub fn client_config_with_identity(
    verify: Verify,
    roots: Option<rustls::RootCertStore>,
    identity: Option<ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, SetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Rustls(e.to_string()))?;
    let builder = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        Verify::Full | Verify::Chain => {
            let roots = roots.unwrap_or_else(trusted_roots);
            if roots.is_empty() {
                return Err(SetupError::NoTrustStore);
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| SetupError::Rustls(e.to_string()))?;
            if verify == Verify::Full {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
        }
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| SetupError::Rustls(e.to_string()))?,
    };
    Ok(Arc::new(config))
}

/// What was wrong with a server's certificate, when that is why a handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertProblem {
    /// Expired, or not yet valid.
    Expired,
    /// Not valid for the name dialled.
    NameMismatch,
    /// Does not chain to a trusted anchor (or was otherwise refused).
    Untrusted,
}

/// The DNS names and addresses a certificate's subjectAltName lists, in its order (empty when
/// it cannot be parsed or has none).
pub fn names_in_certificate(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Classifies a rustls error.
pub fn cert_problem(e: &RustlsError) -> Option<CertProblem> {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => Some(match c {
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                CertProblem::Expired
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => CertProblem::NameMismatch,
            _ => CertProblem::Untrusted,
        }),
        _ => None,
    }
}

/// The rustls error inside an I/O error's chain of sources, if any.
pub fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// `verify-ca`: the chain must verify; the name may be anything.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // webpki checks the chain (and validity) before the name: a name error means the
            // rest held.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`/`prefer` without a CA: any certificate (the handshake's signatures still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// rustls under tokio-postgres (`connect_raw` asks for it after the server said yes to
/// SSLRequest). SCRAM channel binding is not offered (`SCRAM-SHA-256` without `-PLUS`).
pub struct PgTls {
    /// The client configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the certificate is checked against.
    pub name: ServerName<'static>,
}

/// The TLS stream [`PgTls`] makes.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

// No `Send`/`'static` bounds: with them, rustc cannot show a future that holds a
// `Box<dyn … + '_>` stream `Send` for every lifetime (rust-lang/rust#110338).
impl<S> tokio_postgres::tls::TlsConnect<S> for PgTls
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type Stream = PgTlsStream<S>;
    type Error = std::io::Error;
    type Future = PgTlsConnect<S>;

    fn connect(self, stream: S) -> PgTlsConnect<S> {
        PgTlsConnect(tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream))
    }
}

/// The handshake [`PgTls`] runs.
pub struct PgTlsConnect<S>(tokio_rustls::Connect<S>);

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> std::future::Future for PgTlsConnect<S> {
    type Output = std::io::Result<PgTlsStream<S>>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.map(PgTlsStream))
    }
}

impl<S> tokio_postgres::tls::TlsStream for PgTlsStream<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// `tls-server-end-point` (RFC 5929): SCRAM-SHA-256-PLUS binds the password exchange to
    /// this TLS session, so a man in the middle with another certificate cannot relay it.
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        let leaf = self.0.get_ref().1.peer_certificates().and_then(|c| c.first());
        match leaf.and_then(server_end_point) {
            Some(hash) => tokio_postgres::tls::ChannelBinding::tls_server_end_point(hash),
            None => tokio_postgres::tls::ChannelBinding::none(),
        }
    }
}

/// RFC 5929 section 4.1: the hash of the server's certificate with its signature's hash
/// function (MD5 and SHA-1 become SHA-256). None for signatures without a single hash
/// (Ed25519, RSASSA-PSS), for which no binding is defined here.
fn server_end_point(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use aws_lc_rs::digest;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let algorithm = match parsed.signature_algorithm.algorithm.to_id_string().as_str() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &digest::SHA384,
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &digest::SHA512,
        // sha256WithRSAEncryption, ecdsa-with-SHA256, and MD5/SHA-1 ones (as the RFC says)
        "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.10045.4.1" => &digest::SHA256,
        _ => return None,
    };
    Some(digest::digest(algorithm, cert.as_ref()).as_ref().to_vec())
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// [`PgTls`] for every connection a `postgres`/`tokio-postgres` client opens: the name
/// checked is the host the client dials.
#[derive(Clone)]
pub struct MakePgTls {
    /// The client configuration.
    pub config: Arc<rustls::ClientConfig>,
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakePgTls
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTls;
    type Error = SetupError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTls, SetupError> {
        Ok(PgTls {
            config: self.config.clone(),
            name: server_name(domain)?,
        })
    }
}
