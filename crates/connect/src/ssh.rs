//! SSH tunnels for database credentials (`fields.ssh_tunnel`): the database is reached through
//! an SSH bastion.
//!
//! - The TCP connection to the bastion is opened by the egress policy (resolved once, checked,
//!   connected to exactly the checked address).
//! - The bastion's host key must be exactly the stored `known_host_key`; any other key ends the
//!   handshake before we authenticate (`host_key_mismatch`, no key material in the message).
//! - We log in with the stored private key (OpenSSH or PKCS#8 PEM, optionally encrypted with
//!   `passphrase`); a refusal is `auth_failed`, naming the SSH login so it is not mistaken for
//!   the database's.
//! - The database is then reached through a `direct-tcpip` channel. Its host and port are as
//!   seen *from the bastion*, so the bastion decides where they lead and they are not checked
//!   against our egress policy; we only refuse targets that are not a plain host name or IP
//!   address and port.
//!
//! [`Route`] hides the difference between a direct connection and a tunnelled one from the
//! database testers: both get a [`BoxedIo`] byte stream.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use crate::{EgressPolicy, ErrorCode, TestError, TestInput};

/// A bidirectional byte stream to a database: a TCP connection the egress policy opened, or an
/// SSH channel through a bastion.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`] (itself `AsyncRead + AsyncWrite + Unpin + Send`).
pub(crate) type BoxedIo = Box<dyn Io>;

/// How a database tester reaches its database.
pub(crate) enum Route {
    /// Straight through the egress policy.
    Direct,
    /// Through an SSH bastion that we are logged in to.
    Tunnel(Tunnel),
}

impl Route {
    /// The route for a credential: a tunnel (connected and logged in) when it has an
    /// `ssh_tunnel`, otherwise direct.
    pub(crate) async fn for_input(input: &TestInput, policy: &EgressPolicy) -> Result<Route, TestError> {
        match input.fields.get("ssh_tunnel") {
            None | Some(serde_json::Value::Null) => Ok(Route::Direct),
            Some(t) => Ok(Route::Tunnel(
                Tunnel::connect(&TunnelSpec::from_json(t)?, policy).await?,
            )),
        }
    }

    /// Opens a byte stream to `host:port` (the database).
    pub(crate) async fn open(&self, policy: &EgressPolicy, host: &str, port: u16) -> Result<BoxedIo, TestError> {
        match self {
            Route::Direct => Ok(Box::new(policy.connect(host, port).await?)),
            Route::Tunnel(t) => {
                policy.check_tunnel_destination(host, port)?;
                Ok(Box::new(t.open(host, port).await?))
            }
        }
    }

    /// Ends the SSH session, if any.
    pub(crate) async fn close(self) {
        if let Route::Tunnel(t) = self {
            t.close().await;
        }
    }
}

/// The `ssh_tunnel` object of a database credential. Holds the private key and passphrase:
/// zeroized on drop, never printed.
pub(crate) struct TunnelSpec {
    host: String,
    port: u16,
    user: String,
    private_key_pem: Zeroizing<String>,
    passphrase: Option<Zeroizing<String>>,
    known_host_key: String,
}

impl std::fmt::Debug for TunnelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl TunnelSpec {
    /// Reads the `ssh_tunnel` object (already validated by the credential type's schema; this
    /// only refuses what would make no sense to send).
    pub(crate) fn from_json(t: &serde_json::Value) -> Result<TunnelSpec, TestError> {
        let s = |k: &str| t.get(k).and_then(serde_json::Value::as_str).unwrap_or_default();
        let host = s("host").trim().to_owned();
        let port = match t.get("port").and_then(serde_json::Value::as_i64) {
            None => 22,
            Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                TestError::new(
                    ErrorCode::ConnectRefused,
                    format!("the SSH tunnel's port {p} cannot be connected to"),
                )
            })?,
        };
        if host.is_empty() {
            return Err(TestError::new(ErrorCode::Dns, "the SSH tunnel has no host"));
        }
        let user = s("user").to_owned();
        if user.is_empty() {
            return Err(TestError::new(ErrorCode::AuthFailed, "the SSH tunnel has no user"));
        }
        Ok(TunnelSpec {
            host,
            port,
            user,
            private_key_pem: Zeroizing::new(s("private_key_pem").to_owned()),
            passphrase: t
                .get("passphrase")
                .and_then(serde_json::Value::as_str)
                .filter(|p| !p.is_empty())
                .map(|p| Zeroizing::new(p.to_owned())),
            known_host_key: s("known_host_key").to_owned(),
        })
    }
}

/// Parses a stored host key: `ALGORITHM BASE64 [comment]`, optionally preceded by a
/// known_hosts host pattern (`bastion.example.com ssh-ed25519 AAAA…`).
pub(crate) fn parse_known_host_key(s: &str) -> Option<PublicKey> {
    let tokens: Vec<&str> = s.split_whitespace().collect();
    (0..2).find_map(|i| {
        let (alg, blob) = (tokens.get(i)?, tokens.get(i + 1)?);
        let key = russh::keys::parse_public_key_base64(blob).ok()?;
        (key.algorithm().as_str() == *alg).then_some(key)
    })
}

/// Whether `host` is a plain host name or IP address (what a `direct-tcpip` request may
/// carry): no spaces, no control characters, no URL or path syntax.
pub(crate) fn is_plain_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The russh client handler: accepts exactly the stored host key.
struct Verifier {
    expected: PublicKey,
    mismatch: Arc<AtomicBool>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let presented = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key(),
        };
        let ok = *presented == *self.expected.key_data();
        if !ok {
            self.mismatch.store(true, Ordering::SeqCst);
        }
        Ok(ok)
    }
}

/// An SSH session with a bastion, logged in.
pub(crate) struct Tunnel {
    handle: client::Handle<Verifier>,
    /// `host:port` of the bastion, for messages.
    bastion: String,
}

/// One forwarded connection through a [`Tunnel`].
pub(crate) type TunnelStream = russh::ChannelStream<client::Msg>;

impl Tunnel {
    /// Connects to the bastion through the egress policy, checks its host key, logs in.
    pub(crate) async fn connect(spec: &TunnelSpec, policy: &EgressPolicy) -> Result<Tunnel, TestError> {
        let bastion = if spec.host.contains(':') {
            format!("[{}]:{}", spec.host.trim_matches(['[', ']']), spec.port)
        } else {
            format!("{}:{}", spec.host, spec.port)
        };
        let expected = parse_known_host_key(&spec.known_host_key).ok_or_else(|| {
            TestError::new(
                ErrorCode::HostKeyMismatch,
                "the SSH tunnel's known_host_key cannot be read as \"ALGORITHM BASE64\"",
            )
        })?;
        // Read the key before any network traffic: a key we cannot use needs no connection.
        let key = decode_private_key(spec)?;

        let tcp = policy.connect(&spec.host, spec.port).await.map_err(|mut e| {
            e.message = format!("the SSH tunnel's bastion: {}", e.message);
            e
        })?;
        let _ = tcp.set_nodelay(true);
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(policy.total_timeout),
            ..client::Config::default()
        });
        let mismatch = Arc::new(AtomicBool::new(false));
        let verifier = Verifier {
            expected,
            mismatch: mismatch.clone(),
        };
        let mut handle = match client::connect_stream(config, tcp, verifier).await {
            Ok(h) => h,
            Err(_) if mismatch.load(Ordering::SeqCst) => {
                return Err(TestError::new(
                    ErrorCode::HostKeyMismatch,
                    format!(
                        "the SSH server at {bastion} presented a host key that is not the tunnel's known_host_key; \
                         refusing to log in"
                    ),
                ));
            }
            Err(e) => return Err(handshake_error(&bastion, &e)),
        };

        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| handshake_error(&bastion, &e))?
                .flatten()
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(spec.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| handshake_error(&bastion, &e))?;
        if let russh::client::AuthResult::Failure { partial_success, .. } = auth {
            let _ = handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
            let why = if partial_success {
                "the server accepted the private key but asks for a further authentication method, which a \
                 tunnel cannot give"
            } else {
                "the server does not accept this private key"
            };
            return Err(TestError::new(
                ErrorCode::AuthFailed,
                format!(
                    "SSH login to the tunnel's bastion {bastion} as `{}` was refused: {why}",
                    spec.user
                ),
            ));
        }
        Ok(Tunnel { handle, bastion })
    }

    /// Opens a `direct-tcpip` channel from the bastion to `host:port`.
    pub(crate) async fn open(&self, host: &str, port: u16) -> Result<TunnelStream, TestError> {
        let target = host.trim_start_matches('[').trim_end_matches(']');
        if !is_plain_host(host) {
            return Err(TestError::new(
                ErrorCode::Dns,
                "the database host is not a plain host name or IP address; it cannot be sent through the SSH tunnel",
            ));
        }
        if port == 0 {
            return Err(TestError::new(
                ErrorCode::ConnectRefused,
                "port 0 cannot be connected to",
            ));
        }
        let shown = if target.contains(':') {
            format!("[{target}]:{port}")
        } else {
            format!("{target}:{port}")
        };
        match self
            .handle
            .channel_open_direct_tcpip(target, u32::from(port), "127.0.0.1", 0)
            .await
        {
            Ok(ch) => Ok(ch.into_stream()),
            Err(russh::Error::ChannelOpenFailure(f)) => {
                use russh::ChannelOpenFailure as F;
                Err(match f {
                    F::ConnectFailed => TestError::new(
                        ErrorCode::ConnectRefused,
                        format!("the SSH bastion {} could not connect to {shown}", self.bastion),
                    ),
                    F::AdministrativelyProhibited => TestError::new(
                        ErrorCode::PermissionDenied,
                        format!("the SSH bastion {} does not allow forwarding to {shown}", self.bastion),
                    ),
                    other => TestError::new(
                        ErrorCode::UnexpectedResponse,
                        format!(
                            "the SSH bastion {} refused to open a channel to {shown} ({other:?})",
                            self.bastion
                        ),
                    ),
                })
            }
            Err(e) => Err(TestError::new(
                ErrorCode::UnexpectedResponse,
                format!(
                    "opening a channel to {shown} through the SSH bastion {} failed: {e}",
                    self.bastion
                ),
            )),
        }
    }

    /// Says goodbye to the bastion.
    pub(crate) async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

/// Decodes the private key (OpenSSH, PKCS#8, PKCS#1 RSA; encrypted with the passphrase).
fn decode_private_key(spec: &TunnelSpec) -> Result<russh::keys::PrivateKey, TestError> {
    // Tolerate indentation and CRLF line ends, which the decoder does not.
    let pem = Zeroizing::new(
        spec.private_key_pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    russh::keys::decode_secret_key(&pem, spec.passphrase.as_ref().map(|p| p.as_str())).map_err(|e| {
        let (code, what) = match e {
            russh::keys::Error::UnsupportedKeyType { .. } | russh::keys::Error::UnknownAlgorithm(_) => {
                (ErrorCode::Unsupported, "is of a type this build cannot use")
            }
            russh::keys::Error::KeyIsEncrypted => (ErrorCode::AuthFailed, "is encrypted and no passphrase is stored"),
            _ if spec.passphrase.is_some() => (
                ErrorCode::AuthFailed,
                "cannot be read or decrypted (is the passphrase right?)",
            ),
            _ => (ErrorCode::AuthFailed, "cannot be read (or needs a passphrase)"),
        };
        TestError::new(code, format!("the SSH tunnel's private key {what}"))
    })
}

/// Classifies a failure of the SSH handshake or login exchange.
fn handshake_error(bastion: &str, e: &russh::Error) -> TestError {
    match e {
        russh::Error::IO(io) if io.kind() == std::io::ErrorKind::TimedOut => TestError::new(
            ErrorCode::Timeout,
            format!("the SSH server at {bastion} did not answer in time"),
        ),
        russh::Error::InactivityTimeout | russh::Error::ConnectionTimeout | russh::Error::Elapsed(_) => TestError::new(
            ErrorCode::Timeout,
            format!("the SSH server at {bastion} did not answer in time"),
        ),
        other => TestError::new(
            ErrorCode::UnexpectedResponse,
            format!("the SSH handshake with {bastion} failed (is it an SSH server?): {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    #[test]
    fn known_host_keys_parse_with_or_without_a_host_pattern_and_comment() {
        let k = parse_known_host_key(ED).unwrap();
        assert_eq!(k.algorithm().as_str(), "ssh-ed25519");
        assert_eq!(
            parse_known_host_key(&format!("bastion.example.com {ED} root@bastion"))
                .unwrap()
                .key_data(),
            k.key_data()
        );
        assert!(
            parse_known_host_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ")
                .is_none()
        );
        assert!(parse_known_host_key("ssh-ed25519 not-base64!").is_none());
        assert!(parse_known_host_key("").is_none());
    }

    #[test]
    fn only_plain_hosts_go_through_a_tunnel() {
        for ok in ["db", "db.internal", "10.0.0.5", "::1", "[fd00::5]", "db_1.example.com"] {
            assert!(is_plain_host(ok), "{ok}");
        }
        for bad in [
            "",
            "db internal",
            "db\n",
            "http://db",
            "db/x",
            "db:5432",
            "-db",
            "a..b",
            "db\0",
        ] {
            assert!(!is_plain_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_tunnel_spec_never_prints_its_key() {
        let spec = TunnelSpec::from_json(&serde_json::json!({
            "host": "bastion", "port": 22, "user": "u", "private_key_pem": "SECRET-KEY",
            "passphrase": "SECRET-PP", "known_host_key": ED
        }))
        .unwrap();
        let shown = format!("{spec:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(TunnelSpec::from_json(&serde_json::json!({"host": "b", "port": 70000, "user": "u"})).is_err());
        assert!(TunnelSpec::from_json(&serde_json::json!({"host": "", "port": 22, "user": "u"})).is_err());
    }
}
