//! Delivery to one sink: a JSON-lines file with size-based rotation, syslog (RFC 5424 over UDP,
//! TCP with octet counting, or TCP+TLS), or an HTTPS webhook receiving batches signed with
//! HMAC-SHA256. A sink either delivers a whole batch or fails; the forwarder retries.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use super::format;
use super::{Format, SinkConfig, SinkKind, Transport};
use crate::audit::Event;

/// A delivery failure: retried, unless `permanent` — the receiver refuses this content and
/// always will (a webhook's 413, a datagram too large to send), so retrying the same events
/// cannot help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What went wrong.
    pub message: String,
    /// The content is refused for good (as opposed to the receiver being unreachable).
    pub permanent: bool,
}

#[allow(non_snake_case)]
fn SinkError(message: String) -> SinkError {
    SinkError {
        message,
        permanent: false,
    }
}

fn err(e: impl std::fmt::Display) -> SinkError {
    SinkError(e.to_string())
}

/// An I/O error that says the message itself cannot be sent (too large for a datagram).
fn io_err(e: std::io::Error) -> SinkError {
    let permanent = e.raw_os_error() == Some(90) // EMSGSIZE on Linux
        || e.kind() == std::io::ErrorKind::InvalidInput;
    SinkError {
        message: e.to_string(),
        permanent,
    }
}

/// A connected sink.
pub enum Sink {
    /// JSON lines (or CEF lines) in a file.
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
        format: Format,
    },
    /// Syslog over UDP.
    SyslogUdp {
        socket: tokio::net::UdpSocket,
        target: std::net::SocketAddr,
        format: Format,
        host: String,
        app: String,
    },
    /// Syslog over TCP or TCP+TLS; connected lazily and reconnected after errors.
    SyslogStream {
        addr: String,
        tls: Option<(tokio_rustls::TlsConnector, rustls_pki_types::ServerName<'static>)>,
        conn: Option<Box<dyn Stream>>,
        format: Format,
        host: String,
        app: String,
    },
    /// HTTPS POST of batches.
    Webhook {
        client: reqwest::Client,
        url: String,
        secret: zeroize::Zeroizing<Vec<u8>>,
    },
}

/// A byte stream to a syslog receiver.
pub trait Stream: tokio::io::AsyncWrite + tokio::io::AsyncRead + Unpin + Send {}
impl<T: tokio::io::AsyncWrite + tokio::io::AsyncRead + Unpin + Send> Stream for T {}

/// Whether a stream the receiver may have closed while it sat idle is still usable. A write
/// into a connection whose peer is gone still succeeds once (the kernel buffers it), so the
/// batch would be lost; a read that completes at once with end-of-stream (or an error) shows
/// the close before anything is written. A syslog receiver sends nothing, so any bytes read
/// are ignored (for TLS, the stream itself consumes session tickets and close_notify).
/// An error with its causes (reqwest's own message names only the outermost layer; the cause,
/// such as an untrusted certificate, is what an operator needs).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

async fn still_open(c: &mut Box<dyn Stream>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        match tokio::time::timeout(std::time::Duration::ZERO, c.read(&mut buf)).await {
            Err(_) => return true, // nothing to read: open
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => continue, // drain and look again
        }
    }
    true
}

fn render(e: &Event, format: Format) -> String {
    match format {
        Format::Json => format::json_line(e),
        Format::Cef => format::cef(e),
    }
}

fn tls_connector(ca_file: Option<&PathBuf>) -> Result<tokio_rustls::TlsConnector, SinkError> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let Some(path) = ca_file else {
        return Err(SinkError(
            "syslog over TLS needs ca_file (the receiver's CA certificate, PEM)".into(),
        ));
    };
    let pem = std::fs::read_to_string(path).map_err(|e| SinkError(format!("cannot read {}: {e}", path.display())))?;
    let mut added = 0;
    for block in pem.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body: String = block
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SinkError(format!("{} holds a malformed certificate", path.display())))?;
        roots.add(rustls_pki_types::CertificateDer::from(der)).map_err(err)?;
        added += 1;
    }
    if added == 0 {
        return Err(SinkError(format!("{} holds no certificate", path.display())));
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(err)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Sink {
    /// Prepares a sink from its configuration (no connection is made yet for streams).
    pub async fn open(c: &SinkConfig) -> Result<Sink, SinkError> {
        let host = format::hostname();
        let app = c.app_name.clone().unwrap_or_else(|| "credvault".into());
        Ok(match &c.kind {
            SinkKind::File => Sink::File {
                path: c
                    .path
                    .clone()
                    .ok_or_else(|| SinkError("a file sink needs path".into()))?,
                max_bytes: c.max_bytes.unwrap_or(100 * 1024 * 1024),
                keep: c.keep.unwrap_or(5),
                format: c.format,
            },
            SinkKind::Syslog => {
                let addr = c
                    .address
                    .clone()
                    .ok_or_else(|| SinkError("a syslog sink needs address (host:port)".into()))?;
                match c.transport.unwrap_or(Transport::Udp) {
                    Transport::Udp => {
                        let target = tokio::net::lookup_host(&addr)
                            .await
                            .map_err(err)?
                            .next()
                            .ok_or_else(|| SinkError(format!("{addr} does not resolve")))?;
                        let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                        let socket = tokio::net::UdpSocket::bind(bind).await.map_err(err)?;
                        Sink::SyslogUdp {
                            socket,
                            target,
                            format: c.format,
                            host,
                            app,
                        }
                    }
                    Transport::Tcp => Sink::SyslogStream {
                        addr,
                        tls: None,
                        conn: None,
                        format: c.format,
                        host,
                        app,
                    },
                    Transport::Tls => {
                        let connector = tls_connector(c.ca_file.as_ref())?;
                        let name = c
                            .tls_server_name
                            .clone()
                            .unwrap_or_else(|| addr.rsplit_once(':').map_or(addr.clone(), |(h, _)| h.to_owned()));
                        let name = rustls_pki_types::ServerName::try_from(name).map_err(err)?;
                        Sink::SyslogStream {
                            addr,
                            tls: Some((connector, name)),
                            conn: None,
                            format: c.format,
                            host,
                            app,
                        }
                    }
                }
            }
            SinkKind::Webhook => {
                let url = c
                    .url
                    .clone()
                    .ok_or_else(|| SinkError("a webhook sink needs url".into()))?;
                let secret_file = c
                    .hmac_secret_file
                    .clone()
                    .ok_or_else(|| SinkError("a webhook sink needs hmac_secret_file".into()))?;
                let secret = std::fs::read(&secret_file)
                    .map_err(|e| SinkError(format!("cannot read {}: {e}", secret_file.display())))?;
                let secret = zeroize::Zeroizing::new(secret.trim_ascii().to_vec());
                let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15));
                if let Some(ca) = &c.ca_file {
                    let pem = std::fs::read(ca).map_err(|e| SinkError(format!("cannot read {}: {e}", ca.display())))?;
                    let cert = reqwest::Certificate::from_pem(&pem).map_err(err)?;
                    builder = builder.add_root_certificate(cert);
                }
                Sink::Webhook {
                    client: builder.build().map_err(err)?,
                    url,
                    secret,
                }
            }
        })
    }

    /// Delivers a batch (in order). Either everything is delivered or an error is returned.
    pub async fn deliver(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        match self {
            Sink::File {
                path,
                max_bytes,
                keep,
                format,
            } => {
                let size = std::fs::metadata(&*path).map(|m| m.len()).unwrap_or(0);
                if size >= *max_bytes {
                    rotate(path, *keep).map_err(err)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&*path)
                    .map_err(err)?;
                let mut buf = String::new();
                for e in batch {
                    buf.push_str(&render(e, *format));
                    buf.push('\n');
                }
                f.write_all(buf.as_bytes()).map_err(err)?;
                f.sync_data().map_err(err)?;
                Ok(())
            }
            Sink::SyslogUdp {
                socket,
                target,
                format,
                host,
                app,
            } => {
                for e in batch {
                    let msg = format::syslog_5424(e, host, app, &render(e, *format));
                    socket.send_to(msg.as_bytes(), *target).await.map_err(io_err)?;
                }
                Ok(())
            }
            Sink::SyslogStream {
                addr,
                tls,
                conn,
                format,
                host,
                app,
            } => {
                if let Some(c) = conn.as_mut()
                    && !still_open(c).await
                {
                    *conn = None;
                }
                if conn.is_none() {
                    let tcp = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        tokio::net::TcpStream::connect(addr.as_str()),
                    )
                    .await
                    .map_err(|_| SinkError(format!("connecting to {addr} timed out")))?
                    .map_err(|e| SinkError(format!("cannot connect to {addr}: {e}")))?;
                    *conn = Some(match tls {
                        Some((connector, name)) => Box::new(
                            connector
                                .connect(name.clone(), tcp)
                                .await
                                .map_err(|e| SinkError(format!("TLS to {addr}: {e}")))?,
                        ),
                        None => Box::new(tcp),
                    });
                }
                let mut buf = Vec::new();
                for e in batch {
                    let msg = format::syslog_5424(e, host, app, &render(e, *format));
                    // RFC 6587 octet counting.
                    buf.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
                }
                let r = match conn.as_mut() {
                    Some(c) => async {
                        c.write_all(&buf).await?;
                        c.flush().await
                    }
                    .await
                    .map_err(err),
                    None => Err(SinkError("not connected".into())),
                };
                if r.is_err() {
                    *conn = None;
                }
                r
            }
            Sink::Webhook { client, url, secret } => {
                let body = serde_json::to_vec(&serde_json::json!({
                    "first_seq": batch.first().map(|e| e.seq), "last_seq": batch.last().map(|e| e.seq), "events": batch,
                }))
                .map_err(err)?;
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(err)?;
                mac.update(&body);
                let sig = hex::encode(mac.finalize().into_bytes());
                let resp = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header("x-credvault-signature", format!("sha256={sig}"))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| SinkError(format!("POST {url}: {}", chain(&e))))?;
                if !resp.status().is_success() {
                    return Err(SinkError {
                        message: format!("POST {url} answered {}", resp.status()),
                        permanent: resp.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE,
                    });
                }
                Ok(())
            }
        }
    }
}

/// `file` → `file.1` → … → `file.keep` (the oldest is dropped).
fn rotate(path: &std::path::Path, keep: u32) -> std::io::Result<()> {
    let name = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(name(keep));
    for n in (1..keep).rev() {
        if name(n).exists() {
            std::fs::rename(name(n), name(n + 1))?;
        }
    }
    std::fs::rename(path, name(1))
}
