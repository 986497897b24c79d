//! MySQL and MariaDB: log in with a `database` password credential, run `SELECT 1`.
//!
//! **How the driver is kept on the policy's connection.** mysql_async cannot take a stream
//! of ours: it always dials a TCP address itself. So we open the stream ourselves — through
//! the egress policy (`policy.connect`: resolved once, checked, connected to exactly the
//! checked address) or through the SSH tunnel — and hand it to the driver through a one-shot
//! relay on `127.0.0.1:0`: the driver is given the relay's port and `resolved_ips =
//! [127.0.0.1]`, so it neither resolves a name nor reaches anything but our relay, which
//! forwards bytes to the stream we opened. The configured host name is still given to the
//! driver, but only as the TLS server name. The relay accepts one connection, and on Linux
//! only one whose client socket belongs to this process (checked in `/proc`), so another local
//! process cannot race the driver to it.
//!
//! We read the server's greeting before the driver does: it tells whether the far side speaks
//! MySQL at all (`unexpected_response` otherwise, without sending anything), whether it offers
//! TLS, and — as an error packet — refusals such as a blocked host.
//!
//! TLS (`config.tls`): `disable` never; `prefer` (the default) when the server offers it,
//! without certificate verification — an unverified channel is still no worse than the
//! plaintext the mode would fall back to; `require` and `verify-full` demand TLS with a
//! certificate that chains to `ca_pem` (else to the public web PKI roots the driver carries)
//! and names the host; `verify-ca` only the chain. A server without TLS, or whose certificate
//! fails the check, gets no credential: `tls` (no TLS), `tls_untrusted`, `tls_expired` or
//! `tls_name_mismatch`. (`require` verifies, stricter than MySQL's own `REQUIRED`.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ssh::{BoxedIo, Route};
use crate::{EgressPolicy, ErrorCode, TestError, TestInput, Tester};

pub(crate) struct Mysql;

/// `config.tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Tester for Mysql {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "database" || input.variant.as_deref().is_some_and(|v| v != "password") {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "only database password credentials can be tested against MySQL in this build",
                ));
            }
            let tls = match input.config_str("tls") {
                None | Some("prefer") => TlsMode::Prefer,
                Some("disable") => TlsMode::Disable,
                Some("require") => TlsMode::Require,
                Some("verify-ca") => TlsMode::VerifyCa,
                Some("verify-full") => TlsMode::VerifyFull,
                Some(other) => {
                    return Err(TestError::new(
                        ErrorCode::Unsupported,
                        format!("tls `{other}` is not one of disable, prefer, require, verify-ca, verify-full"),
                    ));
                }
            };
            let ca_pem = input.config_str("ca_pem").filter(|p| !p.trim().is_empty());
            if let Some(pem) = ca_pem {
                // Checked here: the driver would take a PEM without certificates as DER.
                credvault_tls::roots_from_pem(pem.as_bytes())
                    .map_err(|_| TestError::new(ErrorCode::Tls, "ca_pem holds no usable certificate"))?;
            }
            let host = input.config_str("host").unwrap_or_default().trim();
            let port = input
                .config_int("port")
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(3306);
            let route = Route::for_input(input, policy).await?;
            let r = login(&route, input, policy, host, port, (tls, ca_pem)).await;
            route.close().await;
            r
        })
    }
}

/// Opens the stream on `route`, reads the greeting, lets the driver log in over the relay and
/// run `SELECT 1`.
async fn login(
    route: &Route,
    input: &TestInput,
    policy: &EgressPolicy,
    host: &str,
    port: u16,
    (tls, ca_pem): (TlsMode, Option<&str>),
) -> Result<(), TestError> {
    let mut upstream = route.open(policy, host, port).await?;
    let greeting = read_greeting(&mut upstream, policy.connect_timeout).await?;
    let use_tls = match (tls, greeting.offers_tls) {
        (TlsMode::Disable, _) => false,
        (TlsMode::Prefer, offered) => offered,
        (_, true) => true,
        (_, false) => {
            return Err(TestError::new(
                ErrorCode::Tls,
                "the server does not offer TLS, and the connection requires it",
            ));
        }
    };
    // verify-ca: the driver checks a name whenever it checks a chain (its switch to skip the
    // name does not recognise this rustls's error), so it is given a name the certificate
    // holds, learnt by a handshake of ours that checked the chain only. The driver's own
    // handshake then checks the chain again: only a certificate of the trusted CA gets the
    // password, whatever name it holds.
    let name_override = match (tls, use_tls) {
        (TlsMode::VerifyCa, true) => Some(name_in_certificate(route, policy, host, port, ca_pem).await?),
        _ => None,
    };
    let relay = Relay::start(upstream, greeting.bytes).await?;

    let ssl = use_tls.then(|| {
        let mut opts = mysql_async::SslOpts::default();
        if let Some(pem) = ca_pem {
            opts = opts
                .with_root_certs(vec![pem.as_bytes().to_vec().into()])
                .with_disable_built_in_roots(true);
        }
        match tls {
            TlsMode::Disable | TlsMode::Prefer => opts
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
            TlsMode::VerifyCa => opts.with_danger_tls_hostname_override(name_override),
            TlsMode::Require | TlsMode::VerifyFull => opts,
        }
    });
    let database = input.config_str("database").filter(|d| !d.is_empty());
    let opts = mysql_async::OptsBuilder::default()
        // Only the TLS server name: the address is the relay's.
        .ip_or_hostname(host.trim_start_matches('[').trim_end_matches(']'))
        .resolved_ips(Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]))
        .tcp_port(relay.port)
        .prefer_socket(false)
        .user(Some(input.field("username").unwrap_or_default()))
        .pass(Some(input.field("password").unwrap_or_default()))
        .db_name(database)
        .enable_cleartext_plugin(false)
        .stmt_cache_size(0)
        .ssl_opts(ssl);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| classify(&e, use_tls, host))?;
    let r = conn
        .query_drop("SELECT 1")
        .await
        .map_err(|e| classify(&e, use_tls, host));
    let _ = conn.disconnect().await;
    drop(relay);
    r
}

/// Opens a second stream, asks for TLS (an `SSLRequest`), checks the server's certificate
/// chain (against `ca_pem`, else the machine's roots) and returns the first DNS name or address
/// its subjectAltName lists. Sends no credential.
async fn name_in_certificate(
    route: &Route,
    policy: &EgressPolicy,
    host: &str,
    port: u16,
    ca_pem: Option<&str>,
) -> Result<String, TestError> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let mut s = route.open(policy, host, port).await?;
    let greeting = read_greeting(&mut s, policy.connect_timeout).await?;
    if !greeting.offers_tls {
        return Err(TestError::new(
            ErrorCode::Tls,
            "the server does not offer TLS, and the connection requires it",
        ));
    }
    // CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION,
    // 16 MiB packets, utf8mb4, 23 bytes reserved; packet 1 after the greeting.
    let caps: u32 = 0x0001 | 0x0200 | u32::from(CLIENT_SSL) | 0x8000;
    let mut req = vec![32, 0, 0, 1];
    req.extend_from_slice(&caps.to_le_bytes());
    req.extend_from_slice(&(16u32 << 20).to_le_bytes());
    req.push(45);
    req.extend_from_slice(&[0; 23]);
    let io = |_| TestError::new(ErrorCode::UnexpectedResponse, "the connection to the server broke");
    s.write_all(&req).await.map_err(io)?;
    let config = crate::tls::client_config(crate::tls::Verify::Chain, ca_pem)?;
    let name = crate::tls::server_name(host)?;
    let stream = tokio::time::timeout(
        policy.connect_timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, s),
    )
    .await
    .map_err(|_| TestError::new(ErrorCode::Timeout, "the TLS handshake did not finish in time"))?
    .map_err(|e| match crate::tls::rustls_error(&e) {
        Some(r) => crate::tls::classify(r, host),
        None => TestError::new(ErrorCode::Tls, format!("the TLS handshake failed: {e}")),
    })?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| TestError::new(ErrorCode::Tls, "the server showed no certificate"))?;
    let names = credvault_tls::names_in_certificate(leaf);
    names
        .into_iter()
        .find(|n| ServerName::try_from(n.as_str()).is_ok())
        .ok_or_else(|| {
            TestError::new(
                ErrorCode::TlsNameMismatch,
                "the server's certificate names no host or address (subjectAltName) to verify it for",
            )
        })
}

// ---------------------------------------------------------------------------- the greeting

/// The server's first packet.
struct Greeting {
    /// The packet as received (header and payload), replayed to the driver.
    bytes: Vec<u8>,
    /// The server sets CLIENT_SSL.
    offers_tls: bool,
}

const CLIENT_SSL: u16 = 0x0800;

fn not_mysql() -> TestError {
    TestError::new(
        ErrorCode::UnexpectedResponse,
        "the server did not answer like MySQL or MariaDB",
    )
}

/// Reads and checks the initial handshake packet (protocol 10), or classifies the error packet
/// a server sends instead of it.
async fn read_greeting(s: &mut BoxedIo, wait: Duration) -> Result<Greeting, TestError> {
    let read = async {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await?;
        let len = usize::from(head[0]) | (usize::from(head[1]) << 8) | (usize::from(head[2]) << 16);
        if len == 0 || len > 16 * 1024 {
            return Ok(None);
        }
        let mut bytes = head.to_vec();
        bytes.resize(4 + len, 0);
        s.read_exact(&mut bytes[4..]).await?;
        Ok::<_, std::io::Error>(Some(bytes))
    };
    let bytes = match tokio::time::timeout(wait, read).await {
        Err(_) => {
            return Err(TestError::new(
                ErrorCode::Timeout,
                format!(
                    "the server accepted the connection but sent no MySQL greeting within {} s",
                    wait.as_secs()
                ),
            ));
        }
        Ok(Err(_)) => {
            return Err(TestError::new(
                ErrorCode::UnexpectedResponse,
                "the server closed the connection before greeting like MySQL or MariaDB",
            ));
        }
        Ok(Ok(None)) => return Err(not_mysql()),
        Ok(Ok(Some(b))) => b,
    };
    let payload = &bytes[4..];
    match payload.first() {
        Some(0x0a) => {
            // protocol 10: version\0, connection id (4), scramble part 1 (8), filler (1),
            // capability flags, lower 2 bytes.
            let nul = payload[1..].iter().position(|b| *b == 0).ok_or_else(not_mysql)?;
            let caps_at = 1 + nul + 1 + 4 + 8 + 1;
            let caps = payload.get(caps_at..caps_at + 2).ok_or_else(not_mysql)?;
            let caps = u16::from_le_bytes([caps[0], caps[1]]);
            Ok(Greeting {
                offers_tls: caps & CLIENT_SSL != 0,
                bytes,
            })
        }
        Some(0xff) if payload.len() >= 3 => {
            let code = u16::from_le_bytes([payload[1], payload[2]]);
            let mut msg = &payload[3..];
            if msg.first() == Some(&b'#') && msg.len() >= 6 {
                msg = &msg[6..];
            }
            Err(server_error(code, &String::from_utf8_lossy(msg)))
        }
        _ => Err(not_mysql()),
    }
}

// ------------------------------------------------------------------------- classification

/// A server error by its MySQL/MariaDB error number.
fn server_error(code: u16, message: &str) -> TestError {
    let kind = match code {
        // ER_ACCESS_DENIED_ERROR, ER_HOST_NOT_PRIVILEGED, ER_ACCESS_DENIED_NO_PASSWORD_ERROR,
        // ER_MUST_CHANGE_PASSWORD_LOGIN, ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL, MariaDB)
        1045 | 1130 | 1698 | 1862 | 3118 | 4151 => ErrorCode::AuthFailed,
        // ER_BAD_DB_ERROR
        1049 => ErrorCode::NotFound,
        // ER_DBACCESS_DENIED_ERROR, ER_HOST_IS_BLOCKED, ER_SPECIFIC_ACCESS_DENIED_ERROR,
        // ER_TABLEACCESS_DENIED_ERROR, ER_PROCACCESS_DENIED_ERROR
        1044 | 1129 | 1227 | 1142 | 1370 => ErrorCode::PermissionDenied,
        // ER_SECURE_TRANSPORT_REQUIRED
        3159 => ErrorCode::Tls,
        _ => ErrorCode::UnexpectedResponse,
    };
    TestError::new(kind, format!("the server said: {} ({code})", message.trim()))
}

fn classify(e: &mysql_async::Error, tls: bool, host: &str) -> TestError {
    use mysql_async::{DriverError, Error, IoError};
    if tls && let Some(r) = crate::tls::rustls_error(e) {
        return crate::tls::classify(r, host);
    }
    match e {
        Error::Server(s) => server_error(s.code, &s.message),
        Error::Io(IoError::Tls(t)) => TestError::new(ErrorCode::Tls, format!("the TLS handshake failed: {t}")),
        Error::Io(IoError::Io(io)) => {
            let text = format!("{io:?}").to_ascii_lowercase();
            if tls && (text.contains("certificate") || text.contains("tls") || text.contains("handshake")) {
                TestError::new(ErrorCode::Tls, format!("the TLS handshake failed: {io}"))
            } else {
                TestError::new(
                    ErrorCode::UnexpectedResponse,
                    format!("the connection to the server broke: {}", io.kind()),
                )
            }
        }
        Error::Driver(DriverError::NoClientSslFlagFromServer) => {
            TestError::new(ErrorCode::Tls, "the server does not offer TLS")
        }
        Error::Driver(DriverError::CleartextPluginDisabled) => TestError::new(
            ErrorCode::Unsupported,
            "the server asks for the password in clear text (mysql_clear_password), which this tester never sends",
        ),
        Error::Driver(DriverError::UnknownAuthPlugin { name }) => TestError::new(
            ErrorCode::Unsupported,
            format!("the server asks for the authentication plugin `{name}`, which this build does not speak"),
        ),
        Error::Driver(DriverError::UnexpectedPacket { .. }) | Error::Driver(DriverError::PacketOutOfOrder) => {
            not_mysql()
        }
        Error::Driver(d) => TestError::new(
            ErrorCode::UnexpectedResponse,
            format!("the server did not answer like MySQL or MariaDB: {d}"),
        ),
        Error::Other(_) | Error::Url(_) => TestError::new(ErrorCode::UnexpectedResponse, "the MySQL driver failed"),
    }
}

// ---------------------------------------------------------------------------------- the relay

/// A one-shot relay on `127.0.0.1:0` that hands the driver the stream we opened. The task is
/// aborted on drop (the test may be cancelled by its timeout at any point).
struct Relay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    async fn start(mut upstream: BoxedIo, greeting: Vec<u8>) -> Result<Relay, TestError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(|e| {
            TestError::new(
                ErrorCode::UnexpectedResponse,
                format!("cannot open the local relay for the MySQL driver: {}", e.kind()),
            )
        })?;
        let local = listener.local_addr().map_err(|e| {
            TestError::new(
                ErrorCode::UnexpectedResponse,
                format!("cannot open the local relay for the MySQL driver: {}", e.kind()),
            )
        })?;
        let task = tokio::spawn(async move {
            let mut client = loop {
                let Ok((client, peer)) = listener.accept().await else {
                    return;
                };
                let ours = tokio::task::spawn_blocking(move || connected_from_this_process(peer, local))
                    .await
                    .unwrap_or(false);
                if ours {
                    break client;
                }
                tracing::warn!(%peer, "refused a connection to the MySQL test relay from outside this process");
            };
            drop(listener);
            let _ = client.set_nodelay(true);
            if client.write_all(&greeting).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        Ok(Relay {
            port: local.port(),
            task,
        })
    }
}

/// Whether the TCP connection from `peer` to our relay at `relay` was made by a socket of this
/// process. Linux: the client socket's inode from `/proc/net/tcp`, found among our own file
/// descriptors. Where that cannot be read, there is nothing to check against and the
/// connection is taken.
#[cfg(target_os = "linux")]
fn connected_from_this_process(peer: SocketAddr, relay: SocketAddr) -> bool {
    let (SocketAddr::V4(peer), SocketAddr::V4(relay)) = (peer, relay) else {
        return false;
    };
    // /proc/net/tcp prints the address as the in-memory (network order) u32, in hex.
    let hex = |a: std::net::SocketAddrV4| format!("{:08X}:{:04X}", u32::from_ne_bytes(a.ip().octets()), a.port());
    let (want_local, want_remote) = (hex(peer), hex(relay));
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&want_local.as_str()) && f.get(2) == Some(&want_remote.as_str()))
            .then(|| f.get(9).map(|s| (*s).to_owned()))
            .flatten()
    });
    let Some(inode) = inode else {
        return false;
    };
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return true;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == want.as_str()))
}

#[cfg(not(target_os = "linux"))]
fn connected_from_this_process(_: SocketAddr, _: SocketAddr) -> bool {
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn boxed(bytes: &[u8]) -> BoxedIo {
        let (mut a, b) = tokio::io::duplex(4096);
        let bytes = bytes.to_vec();
        tokio::spawn(async move {
            a.write_all(&bytes).await.unwrap();
            // Keep the far end open a moment so reads see data, not EOF first.
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        Box::new(b)
    }

    fn packet(payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, 0];
        v.extend_from_slice(payload);
        v
    }

    fn greeting(caps: u16) -> Vec<u8> {
        let mut p = vec![0x0a];
        p.extend_from_slice(b"10.11.19-MariaDB\0");
        p.extend_from_slice(&[1, 0, 0, 0]);
        p.extend_from_slice(b"abcdefgh");
        p.push(0);
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&[0u8; 20]);
        packet(&p)
    }

    #[tokio::test]
    async fn the_greeting_tells_mysql_and_tls_apart_from_everything_else() {
        let wait = Duration::from_secs(2);
        let g = read_greeting(&mut boxed(&greeting(0xffff)), wait).await.unwrap();
        assert!(g.offers_tls);
        assert_eq!(g.bytes, greeting(0xffff));
        let g = read_greeting(&mut boxed(&greeting(!CLIENT_SSL)), wait).await.unwrap();
        assert!(!g.offers_tls);

        let err = packet(b"\xff\x69\x04Host '10.0.0.9' is blocked because of many connection errors");
        let e = read_greeting(&mut boxed(&err), wait).await.err().unwrap();
        assert_eq!(e.code, ErrorCode::PermissionDenied, "{e}");
        assert!(e.message.contains("(1129)"), "{e}");

        for junk in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"\x05\0\0\0\x0bhello",
        ] {
            let e = read_greeting(&mut boxed(junk), wait).await.err().unwrap();
            assert_eq!(e.code, ErrorCode::UnexpectedResponse, "{junk:?}: {e}");
        }
        let (_keep, silent) = tokio::io::duplex(64);
        let mut silent: BoxedIo = Box::new(silent);
        let e = read_greeting(&mut silent, Duration::from_millis(100))
            .await
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::Timeout, "{e}");
    }

    #[test]
    fn server_errors_map_to_their_codes() {
        assert_eq!(server_error(1045, "Access denied").code, ErrorCode::AuthFailed);
        assert_eq!(server_error(1049, "Unknown database").code, ErrorCode::NotFound);
        assert_eq!(
            server_error(1044, "Access denied to database").code,
            ErrorCode::PermissionDenied
        );
        assert_eq!(server_error(3159, "secure transport").code, ErrorCode::Tls);
        assert_eq!(
            server_error(1040, "Too many connections").code,
            ErrorCode::UnexpectedResponse
        );
    }

    #[tokio::test]
    async fn the_relay_serves_only_connections_from_this_process() {
        // A connection from this process is ours (the driver's case).
        let (up, mut far) = tokio::io::duplex(4096);
        let relay = Relay::start(Box::new(up), b"hello".to_vec()).await.unwrap();
        // Another process racing to the relay is dropped without a byte.
        #[cfg(target_os = "linux")]
        {
            let port = relay.port;
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new("timeout")
                    .args([
                        "5",
                        "bash",
                        "-c",
                        &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && cat <&3"),
                    ])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            assert!(out.stdout.is_empty(), "a foreign process got {:?}", out.stdout);
            assert_ne!(out.status.code(), Some(124), "the foreign connection was held open");
        }
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", relay.port)).await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
