//! The exfiltration suite (PRODUCT.md §3, "Where a secret may go"), over real HTTP, on SQLite
//! and PostgreSQL.
//!
//! A `builder` may wire credentials into connections, but may not choose where a secret goes.
//! For every connector kind with a tester — http (basic auth), postgres, mysql, ftp, ldap, s3
//! (SigV4 at the STS endpoint), gcs (a service account's signed assertion), azure_blob (a
//! client secret at the authority), oauth_saas (a bearer token at the check URL) and, with
//! `--features server-tests`, postgres through an SSH bastion — a builder tries every path to
//! get an admin's secret to a TCP listener it controls:
//!
//! 1. its own connection created with the credential, and its own connection without one
//!    followed by attaching the credential: `422 destination_not_allowed` naming the field;
//! 2. re-pointing a destination field of a connection the admin wired to an allowed
//!    destination (and widening the credential's allowed set directly): refused;
//! 3. a connection whose row was re-pointed behind the API's back (standing in for rows written
//!    under older rules): Test connection — plain and pinned to a pending version — answers
//!    `destination_not_allowed`, so do the admin's credential test and rotation for that
//!    dependent, and a worker's resolve is `409 destination_not_allowed`;
//!
//! and the listener must have accepted no connection at all (and nothing a builder was shown
//! holds the secret in any spelling). Every refused path has a control run afterwards: the
//! credential's owner takes the same path (widening the set by trust on first use, or allowing
//! the listener by PATCH) and the very same listener is reached — where the protocol hands the
//! secret over (a basic auth header, FTP `PASS`, an LDAP
//! simple bind, an Azure client secret, the AWS access key ID in SigV4, an OAuth bearer token)
//! the listener's bytes do contain it — so the suite cannot pass by accident. (PostgreSQL and
//! MySQL listeners ask for a clear-text password over plain TCP, which the testers refuse to
//! send: there the control shows the listener reached, and nothing handed over.)
//!
//! Besides: narrowing a credential's set to nothing makes resolve and Test connection of a
//! connection wired before refuse again (the defence for rows older than the rule), and an AWS
//! role chain whose source sits in another workspace is refused exactly like a source that does
//! not exist (`404 not_found`, the same body), so the answer reveals nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{random_hex, st};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, Resp, Scope, Server, TempDir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `serve` arguments that let the server reach loopback: only the destination rules stand
/// between a builder and the listener.
const ALLOW_LOOPBACK: [&str; 2] = ["--egress-allow", "127.0.0.0/8"];

/// The destination the admin wires connections to: allowed, and nobody listens there (a
/// connection is refused at once).
const BENIGN: (&str, u16) = ("127.0.0.1", 1);

/// An access token expiry far in the future: no refresh is ever attempted.
const FAR_FUTURE: &str = "2099-01-01T00:00:00Z";

// ------------------------------------------------------------------------------- helpers

/// A secret with characters that every encoding changes (`/ + = &`).
fn secret(tag: &str) -> String {
    format!("{tag}/{}+{}=&{}", random_hex(5), random_hex(5), random_hex(3))
}

/// An AWS-shaped access key ID.
fn access_key_id() -> String {
    format!("AKIA{}", random_hex(8).to_ascii_uppercase())
}

/// A well-formed credential ID that names no credential.
fn unused_credential_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut b = [0u8; 26];
    getrandom::fill(&mut b).unwrap();
    let body: String = b.iter().map(|x| ALPHABET[usize::from(*x) % 32] as char).collect();
    format!("cred_{body}")
}

/// A random UUID-shaped string (Azure tenant and client IDs).
fn uuid() -> String {
    let h = random_hex(16);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn id(v: &Value) -> String {
    st(&v["id"])
}

fn b64_with(data: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(alphabet[(n >> 18) as usize & 63] as char);
        out.push(alphabet[(n >> 12) as usize & 63] as char);
        if c.len() > 1 {
            out.push(alphabet[(n >> 6) as usize & 63] as char);
        }
        if c.len() > 2 {
            out.push(alphabet[n as usize & 63] as char);
        }
    }
    out
}

/// Percent-encoding of everything but unreserved characters (upper- or lowercase hex).
fn pct(s: &str, lower: bool) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The spellings of a secret on the wire: plaintext, base64 and base64url (unpadded: a prefix
/// of the padded form), percent- and form-encoded, JSON-escaped.
fn spellings(secret: &str) -> Vec<String> {
    let json_escaped = serde_json::to_string(secret).unwrap();
    let mut v = vec![
        secret.to_owned(),
        b64_with(
            secret.as_bytes(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        ),
        b64_with(
            secret.as_bytes(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        ),
        pct(secret, false),
        pct(secret, true),
        json_escaped.trim_matches('"').to_owned(),
    ];
    v.sort();
    v.dedup();
    v
}

/// The spelling of `secret` that occurs in `hay`, if any.
fn spelled(hay: &str, secret: &str) -> Option<String> {
    spellings(secret).into_iter().find(|f| hay.contains(f.as_str()))
}

#[track_caller]
fn assert_absent(what: &str, hay: &str, secrets: &[String]) {
    for s in secrets {
        assert!(s.len() >= 8, "a secret this short proves nothing: {s:?}");
        if let Some(form) = spelled(hay, s) {
            panic!("{what} holds a secret (as `{form}`):\n{hay}");
        }
    }
}

/// Runs `f` on every backend, each to its end even when another fails, then fails with every
/// backend's panic.
async fn on_every_backend<F, Fut>(f: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut failed = Vec::new();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        if let Err(e) = tokio::spawn(f(backend)).await {
            let msg = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".to_owned()),
                Err(e) => e.to_string(),
            };
            eprintln!("--- backend {backend:?} FAILED");
            failed.push(format!("[{backend:?}] {msg}"));
        } else {
            eprintln!("--- backend {backend:?} passed");
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// The body of a connection in the default workspace.
fn conn_body(srv: &Server, name: &str, kind: &str, config: Value, cred: Option<&str>) -> Value {
    let mut b = json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": kind, "config": config});
    if let Some(c) = cred {
        b["credential_id"] = json!(c);
    }
    b
}

/// Every audit event matching `query` (all pages), oldest first.
async fn audit(srv: &Server, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/audit?limit=500".to_owned();
        if !query.is_empty() {
            path.push_str(&format!("&{query}"));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = srv.get(&path, &srv.admin).await.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// The credential's stored allowed destinations.
async fn allowed(srv: &Server, cred: &str) -> Vec<String> {
    let c = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    c["allowed_destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("no allowed_destinations in {c}"))
        .iter()
        .map(st)
        .collect()
}

/// Replaces the credential's allowed destinations as admin.
async fn set_allowed(srv: &Server, cred: &str, list: &[String]) {
    srv.patch(
        &format!("/v1/credentials/{cred}"),
        &srv.admin,
        json!({"allowed_destinations": list}),
    )
    .await
    .ok(200);
    let (mut got, mut sent) = (allowed(srv, cred).await, list.to_vec());
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "the set was not replaced as sent");
}

/// Asserts a `422 destination_not_allowed` problem naming `field`.
#[track_caller]
fn assert_refused(r: &Resp, field: &str, what: &str) {
    assert_eq!(
        r.status, 422,
        "{what}: expected 422 destination_not_allowed; got {}",
        r.text
    );
    assert!(
        r.content_type.starts_with("application/problem+json"),
        "{what}: not a problem document: {}",
        r.text
    );
    assert_eq!(r.body["code"], "destination_not_allowed", "{what}: {}", r.text);
    assert_eq!(
        r.body["field"], field,
        "{what}: the refusal does not name the field: {}",
        r.text
    );
}

/// Asserts a Test connection result that refused the destination (nothing sent).
#[track_caller]
fn assert_test_refused(r: &Value, what: &str) {
    assert_eq!(r["ok"], false, "{what}: the test should be refused: {r}");
    assert_eq!(r["error"]["code"], "destination_not_allowed", "{what}: {r}");
    assert!(r["error"]["message"].is_string(), "{what}: {r}");
}

/// Asserts a Test connection result that was not stopped by the destination rules.
#[track_caller]
fn assert_test_ran(r: &Value, what: &str) {
    assert!(r["ok"].is_boolean(), "{what}: not a test result: {r}");
    assert_ne!(
        r["error"]["code"], "destination_not_allowed",
        "{what}: the control was refused: {r}"
    );
}

/// The result for `conn` in a credential test's results.
#[track_caller]
fn result_for<'a>(r: &'a Value, conn: &str) -> &'a Value {
    r["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {r}"))
        .iter()
        .find(|x| x["connection_id"] == conn)
        .unwrap_or_else(|| panic!("no result for {conn} in {r}"))
}

// ------------------------------------------------------------------------------ the listener

/// How the listener answers, so that each client gets as far as handing over its secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    /// Reads one HTTP/1.1 request, answers `200 OK` with an empty body.
    Http,
    /// Answers `N` to an SSLRequest and the startup message with
    /// AuthenticationCleartextPassword, then reads the password message.
    Postgres,
    /// Sends a few bytes and closes (the control counts connections only).
    Mysql,
    /// `220`, `331` to USER, `530` to PASS.
    Ftp,
    /// Just reads (an LDAP simple bind is the client's first message).
    Read,
}

/// A TCP listener the builder controls: counts every connection and keeps every byte received.
struct Listener {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(proto: Proto) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
        let (acc, rec) = (accepted.clone(), received.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let i = {
                    let mut r = rec.lock().unwrap();
                    r.push(Vec::new());
                    r.len() - 1
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let rx = Rx {
                    log: rec.clone(),
                    i,
                    buf: Vec::new(),
                };
                tokio::spawn(converse(proto, sock, rx));
            }
        });
        Listener {
            addr,
            accepted,
            received,
            task,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, as an allowed-destination entry.
    fn dest(&self) -> String {
        self.addr.to_string()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Everything received on the connections accepted after the first `mark`.
    fn text_from(&self, mark: usize) -> String {
        let r = self.received.lock().unwrap();
        r.iter()
            .skip(mark)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts that nobody connected (after a moment for connections in flight).
    async fn assert_untouched(&self, what: &str) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            self.accepted(),
            0,
            "{what}: the builder's listener was reached; it received:\n{}",
            self.text_from(0)
        );
    }

    /// The control: asserts that connections after `mark` reached the listener and that their
    /// bytes hold each of `needles` (in some spelling).
    async fn assert_reached(&self, mark: usize, needles: &[String], what: &str) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            self.accepted() > mark,
            "{what}: the control did not reach the listener, so the refusals above prove nothing"
        );
        let text = self.text_from(mark);
        for n in needles {
            assert!(
                spelled(&text, n).is_some(),
                "{what}: the listener was reached but did not receive {n:?}; it received:\n{text}"
            );
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The bytes of one connection: kept locally and in the listener's log as they arrive.
struct Rx {
    log: Arc<Mutex<Vec<Vec<u8>>>>,
    i: usize,
    buf: Vec<u8>,
}

impl Rx {
    /// Reads one chunk; false on EOF, error or `idle` without data.
    async fn read(&mut self, s: &mut TcpStream, idle: Duration) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(idle, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.log.lock().unwrap()[self.i].extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// Reads until the client goes quiet or closes.
    async fn drain(&mut self, s: &mut TcpStream, idle: Duration) {
        while self.read(s, idle).await {}
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `buf` holds a whole HTTP/1.1 request (head and `content-length` body).
fn http_request_complete(buf: &[u8]) -> bool {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + len
}

async fn converse(proto: Proto, mut s: TcpStream, mut rx: Rx) {
    const IDLE: Duration = Duration::from_millis(300);
    const WAIT: Duration = Duration::from_secs(3);
    match proto {
        Proto::Http => {
            while !http_request_complete(&rx.buf) {
                if !rx.read(&mut s, WAIT).await {
                    break;
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
        Proto::Postgres => {
            let mut at = 0;
            loop {
                while rx.buf.len() < at + 8 {
                    if !rx.read(&mut s, WAIT).await {
                        return;
                    }
                }
                let len = u32::from_be_bytes(rx.buf[at..at + 4].try_into().unwrap()) as usize;
                let code = u32::from_be_bytes(rx.buf[at + 4..at + 8].try_into().unwrap());
                while rx.buf.len() < at + len.max(8) {
                    if !rx.read(&mut s, WAIT).await {
                        return;
                    }
                }
                at += len.max(8);
                // SSLRequest / GSSENCRequest: no.
                if code == 80_877_103 || code == 80_877_104 {
                    let _ = s.write_all(b"N").await;
                    continue;
                }
                break;
            }
            // AuthenticationCleartextPassword: a client that answered would send the password
            // itself; the tester refuses to over plain TCP.
            let _ = s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
            rx.drain(&mut s, IDLE).await;
        }
        Proto::Mysql => {
            let _ = s.write_all(&[0x05, 0x00, 0x00, 0x00, 0x0a, b'x']).await;
            rx.drain(&mut s, Duration::from_millis(150)).await;
        }
        Proto::Ftp => {
            let _ = s.write_all(b"220 ready\r\n").await;
            let mut at = 0;
            loop {
                let end = loop {
                    if let Some(p) = find(&rx.buf[at..], b"\r\n") {
                        break Some(at + p);
                    }
                    if !rx.read(&mut s, WAIT).await {
                        break None;
                    }
                };
                let Some(end) = end else { break };
                let verb = String::from_utf8_lossy(&rx.buf[at..end.min(at + 4)]).to_ascii_uppercase();
                at = end + 2;
                let reply: &[u8] = match verb.as_str() {
                    "USER" => b"331 password please\r\n",
                    "PASS" => b"530 login incorrect\r\n",
                    _ => b"502 not implemented\r\n",
                };
                let _ = s.write_all(reply).await;
                if verb == "PASS" {
                    break;
                }
            }
            rx.drain(&mut s, IDLE).await;
        }
        Proto::Read => rx.drain(&mut s, IDLE).await,
    }
    let _ = s.shutdown().await;
}

// ------------------------------------------------------------------------------ the cases

/// The connector kinds of the suite.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Http,
    Postgres,
    Mysql,
    Ftp,
    Ldap,
    S3,
    Gcs,
    AzureBlob,
    OauthSaas,
    #[cfg(feature = "server-tests")]
    PostgresViaSsh,
}

/// One kind's credential, its pending version, and how its config points somewhere.
struct Case {
    kind: &'static str,
    /// `type`, `variant` and `fields` of the credential (version 1).
    credential: Value,
    /// The fields of version 2, staged by the admin.
    staged: Value,
    /// A config pointing at `host:port` (every destination field the attack needs).
    config: fn(&str, u16) -> Value,
    /// The field a refusal names.
    field: &'static str,
    proto: Proto,
    /// What must never reach the builder's listener or anything the builder is shown.
    secrets: Vec<String>,
    /// What the listener receives from version 1 and version 2 in the controls.
    handed: [Vec<String>; 2],
}

fn url(host: &str, port: u16, path: &str) -> String {
    format!("http://{host}:{port}{path}")
}

/// An RSA private key (PKCS#8 PEM), made by openssl.
fn rsa_key() -> String {
    let dir = TempDir::new();
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ])
        .current_dir(dir.path())
        .output()
        .expect("cannot run openssl (the gcs case needs it to make a service account key)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.path().join("key.pem")).unwrap()
}

/// The base64 lines of a PEM document (each one gives part of the key away).
fn pem_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

/// A service account key file whose own token URI is Google's (allowed for the credential).
fn sa_json(email: &str, pem: &str) -> String {
    json!({
        "type": "service_account", "project_id": "credvault-it", "private_key_id": random_hex(20),
        "private_key": pem, "client_email": email, "client_id": "112233445566778899",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

#[cfg(feature = "server-tests")]
fn env(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: the ssh case needs the bastion from scripts/lib/sshd.sh (scripts/test starts it)")
    })
}

/// The bastion's `ssh_tunnel` object (as in testers_db.rs).
#[cfg(feature = "server-tests")]
fn bastion_tunnel() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"));
    json!({
        "host": env("CREDVAULT_TEST_SSH_HOST"),
        "port": env("CREDVAULT_TEST_SSH_PORT").parse::<u16>().expect("CREDVAULT_TEST_SSH_PORT is a port"),
        "user": env("CREDVAULT_TEST_SSH_USER"),
        "private_key_pem": read(&env("CREDVAULT_TEST_SSH_KEY_FILE")),
        "known_host_key": read(&env("CREDVAULT_TEST_SSH_HOST_KEY_FILE")).trim(),
    })
}

impl Case {
    fn new(k: Kind) -> Case {
        let (s1, s2) = (secret("S1"), secret("S2"));
        let db = |s: &str| json!({"username": "loader", "password": s});
        match k {
            Kind::Http => {
                let user = "svc-exports";
                let (b1, b2) = (format!("{user}:{s1}"), format!("{user}:{s2}"));
                Case {
                    kind: "http",
                    credential: json!({"type": "password", "fields": {"username": user, "password": s1}}),
                    staged: json!({"username": user, "password": s2}),
                    config: |h, p| json!({"base_url": url(h, p, "/")}),
                    field: "config.base_url",
                    proto: Proto::Http,
                    secrets: vec![s1, s2, b1.clone(), b2.clone()],
                    // Authorization: Basic base64(user:password)
                    handed: [vec![b1], vec![b2]],
                }
            }
            Kind::Postgres => Case {
                kind: "postgres",
                credential: json!({"type": "database", "variant": "password", "fields": db(&s1)}),
                staged: db(&s2),
                config: |h, p| json!({"host": h, "port": p, "database": "dwh", "sslmode": "disable"}),
                field: "config.host",
                proto: Proto::Postgres,
                // A clear-text password request over plain TCP is refused (pg_guard).
                handed: [vec![], vec![]],
                secrets: vec![s1, s2],
            },
            Kind::Mysql => Case {
                kind: "mysql",
                credential: json!({"type": "database", "variant": "password", "fields": db(&s1)}),
                staged: db(&s2),
                config: |h, p| json!({"host": h, "port": p, "database": "dwh"}),
                field: "config.host",
                proto: Proto::Mysql,
                secrets: vec![s1, s2],
                handed: [vec![], vec![]],
            },
            Kind::Ftp => {
                let f = |s: &str| json!({"username": "cvftp-user", "password": s});
                Case {
                    kind: "ftp",
                    credential: json!({"type": "password", "fields": f(&s1)}),
                    staged: f(&s2),
                    config: |h, p| json!({"host": h, "port": p, "tls": "none"}),
                    field: "config.host",
                    proto: Proto::Ftp,
                    handed: [vec![format!("PASS {s1}")], vec![format!("PASS {s2}")]],
                    secrets: vec![s1, s2],
                }
            }
            Kind::Ldap => Case {
                kind: "ldap",
                credential: json!({"type": "password", "fields": {"password": s1}}),
                staged: json!({"password": s2}),
                config: |h, p| json!({"host": h, "port": p, "bind_dn": "uid=svc-pipeline,ou=people,dc=example,dc=org"}),
                field: "config.host",
                proto: Proto::Read,
                // The simple bind request carries the password as an octet string.
                handed: [vec![s1.clone()], vec![s2.clone()]],
                secrets: vec![s1, s2],
            },
            Kind::S3 => {
                let (k1, k2) = (access_key_id(), access_key_id());
                let f = |k: &str, s: &str| json!({"access_key_id": k, "secret_access_key": s, "region": "us-east-1"});
                Case {
                    kind: "s3",
                    credential: json!({"type": "aws", "variant": "access_key", "fields": f(&k1, &s1)}),
                    staged: f(&k2, &s2),
                    config: |h, p| json!({"bucket": "exports", "region": "us-east-1", "sts_endpoint_url": url(h, p, "/")}),
                    field: "config.sts_endpoint_url",
                    proto: Proto::Http,
                    // SigV4: Authorization: AWS4-HMAC-SHA256 Credential=AKIA…/…
                    handed: [vec![k1.clone()], vec![k2.clone()]],
                    secrets: vec![s1, s2, k1, k2],
                }
            }
            Kind::Gcs => {
                let (key1, key2) = (rsa_key(), rsa_key());
                let email = format!("exports-{}@credvault-it.iam.gserviceaccount.com", random_hex(3));
                let mut secrets = pem_lines(&key1);
                secrets.extend(pem_lines(&key2));
                Case {
                    kind: "gcs",
                    credential: json!({"type": "gcp", "variant": "service_account",
                                       "fields": {"service_account_json": sa_json(&email, &key1)}}),
                    staged: json!({"service_account_json": sa_json(&email, &key2)}),
                    config: |h, p| json!({"bucket": "exports", "project_id": "credvault-it", "token_url": url(h, p, "/token")}),
                    field: "config.token_url",
                    proto: Proto::Http,
                    secrets,
                    // The JWT bearer grant: an assertion signed with the private key.
                    handed: [vec!["assertion=".to_owned()], vec!["assertion=".to_owned()]],
                }
            }
            Kind::AzureBlob => {
                let (tenant, client) = (uuid(), uuid());
                let f = |s: &str| json!({"tenant_id": tenant, "client_id": client, "client_secret": s});
                Case {
                    kind: "azure_blob",
                    credential: json!({"type": "azure", "variant": "client_secret", "fields": f(&s1)}),
                    staged: f(&s2),
                    config: |h, p| json!({"account_name": "credvaultit", "container": "raw", "authority_url": url(h, p, "")}),
                    field: "config.authority_url",
                    proto: Proto::Http,
                    // client_secret=… in the token request's form body.
                    handed: [vec![s1.clone()], vec![s2.clone()]],
                    secrets: vec![s1, s2],
                }
            }
            Kind::OauthSaas => {
                let client_secret = secret("CS");
                let f = |at: &str| {
                    json!({"client_id": "cv-exports", "client_secret": client_secret,
                           "token_url": url(BENIGN.0, BENIGN.1, "/token"), "scopes": ["api:read"],
                           "access_token": at, "access_token_expires_at": FAR_FUTURE})
                };
                Case {
                    kind: "oauth_saas",
                    credential: json!({"type": "oauth", "variant": "client_credentials", "fields": f(&s1)}),
                    staged: f(&s2),
                    // The API base stays where the admin put it; the check URL is re-pointed.
                    config: |h, p| json!({"api_base_url": url(BENIGN.0, BENIGN.1, "/"), "check_url": url(h, p, "/me")}),
                    field: "config.check_url",
                    proto: Proto::Http,
                    // Authorization: Bearer <access token>
                    handed: [vec![s1.clone()], vec![s2.clone()]],
                    secrets: vec![s1, s2, client_secret],
                }
            }
            #[cfg(feature = "server-tests")]
            Kind::PostgresViaSsh => {
                let tunnel = bastion_tunnel();
                let key = st(&tunnel["private_key_pem"]);
                let f = |s: &str| json!({"username": "loader", "password": s, "ssh_tunnel": tunnel});
                let mut secrets = vec![s1.clone(), s2.clone()];
                secrets.extend(pem_lines(&key));
                Case {
                    kind: "postgres",
                    credential: json!({"type": "database", "variant": "password", "fields": f(&s1)}),
                    staged: f(&s2),
                    config: |h, p| json!({"host": h, "port": p, "database": "dwh", "sslmode": "disable"}),
                    field: "config.host",
                    proto: Proto::Postgres,
                    // A clear-text password request over plain TCP is refused (pg_guard).
                    handed: [vec![], vec![]],
                    secrets,
                }
            }
        }
    }
}

// ----------------------------------------------------------------- 1–3. the exfiltration suite

async fn exfiltration(b: Backend, k: Kind) {
    let case = Case::new(k);
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let trap = Listener::start(case.proto).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let kind = case.kind;
    let there = (case.config)("127.0.0.1", trap.port());
    let here = (case.config)(BENIGN.0, BENIGN.1);
    let (builder_id, builder) = srv
        .principal(&org, "user", "builder-b", &[("builder", Scope::Ws(&ws))])
        .await;
    let (worker_id, worker) = srv
        .principal(&org, "service_account", "worker-w", &[("worker", Scope::Ws(&ws))])
        .await;

    // The admin's credential, wired to an allowed destination twice, and a pending version.
    let mut body = case.credential.clone();
    body["name"] = json!(format!("{kind}-prod"));
    body["workspace_id"] = json!(ws);
    body["environment"] = json!("prod");
    let cred = id(&srv.post("/v1/credentials", &srv.admin, body).await.ok(201));
    let wired = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            conn_body(&srv, "wired", kind, here.clone(), Some(cred.as_str())),
        )
        .await
        .ok(201));
    let legacy = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            conn_body(&srv, "legacy", kind, here.clone(), Some(cred.as_str())),
        )
        .await
        .ok(201));
    let v2 = srv
        .post(
            &format!("/v1/credentials/{cred}/versions"),
            &srv.admin,
            json!({"fields": case.staged, "mode": "stage"}),
        )
        .await
        .ok(201);
    assert_eq!(
        (v2["version"].as_i64(), v2["state"].as_str()),
        (Some(2), Some("pending")),
        "{v2}"
    );
    let base = allowed(&srv, &cred).await;
    assert!(!base.contains(&trap.dest()), "{base:?}");
    // The legacy row is re-pointed behind the API's back (written under older rules).
    let raw = serde_json::to_string(&there).unwrap().replace('\'', "''");
    srv.raw_sql(&format!(
        "UPDATE connections SET config = '{raw}' WHERE id = '{legacy}'"
    ));

    // Everything the builder and the worker are shown.
    let mut shown = Vec::new();

    // 1. The builder's own connection with the credential.
    let r = srv
        .post(
            "/v1/connections",
            &builder,
            conn_body(&srv, "exfil", kind, there.clone(), Some(cred.as_str())),
        )
        .await;
    assert_refused(&r, case.field, "a builder's connection to its listener");
    shown.push(r.text);
    // Its own connection without a credential is fine; attaching the credential is not.
    let own = id(&srv
        .post(
            "/v1/connections",
            &builder,
            conn_body(&srv, "exfil-bare", kind, there.clone(), None),
        )
        .await
        .ok(201));
    let r = srv
        .call(
            "PUT",
            &format!("/v1/connections/{own}/credential"),
            Some(builder.as_str()),
            Some(json!({"credential_id": cred})),
        )
        .await;
    assert_refused(&r, case.field, "attaching the credential to the builder's connection");
    shown.push(r.text);
    let got = srv.get(&format!("/v1/connections/{own}"), &builder).await.ok(200);
    assert!(got["credential_id"].is_null(), "the refused attach stuck: {got}");

    // 2. Re-pointing the admin's wired connection: the same destination is fine, the listener
    // is not; nor may the builder widen the credential's set itself.
    srv.patch(&format!("/v1/connections/{wired}"), &builder, json!({"config": here}))
        .await
        .ok(200);
    let r = srv
        .patch(&format!("/v1/connections/{wired}"), &builder, json!({"config": there}))
        .await;
    assert_refused(&r, case.field, "re-pointing the admin's connection");
    shown.push(r.text);
    let got = srv.get(&format!("/v1/connections/{wired}"), &builder).await.ok(200);
    assert!(
        !got["config"].to_string().contains(&trap.port().to_string()),
        "the refused PATCH changed the config: {got}"
    );
    let mut wider = base.clone();
    wider.push(trap.dest());
    let r = srv
        .patch(
            &format!("/v1/credentials/{cred}"),
            &builder,
            json!({"allowed_destinations": wider}),
        )
        .await;
    shown.push(r.text.clone());
    r.problem(403, "forbidden");

    // 3. The re-pointed row: Test connection (current and pending version), the admin's
    // credential test and rotation, a worker's resolve.
    let r = srv
        .post(
            &format!("/v1/connections/{legacy}/test"),
            &builder,
            json!({"version": null}),
        )
        .await
        .ok(200);
    assert_test_refused(&r, "the builder's test of the re-pointed connection");
    shown.push(r.to_string());
    let r = srv
        .post(
            &format!("/v1/connections/{legacy}/test"),
            &builder,
            json!({"version": 2}),
        )
        .await
        .ok(200);
    assert_test_refused(&r, "the builder's test pinned to the pending version");
    assert_eq!(r["version"], 2, "{r}");
    shown.push(r.to_string());
    let r = srv
        .post(
            &format!("/v1/credentials/{cred}/test"),
            &srv.admin,
            json!({"version": 2}),
        )
        .await
        .ok(200);
    assert_test_refused(result_for(&r, &legacy), "the admin's credential test of version 2");
    assert_ne!(
        result_for(&r, &wired)["error"]["code"],
        "destination_not_allowed",
        "{r}"
    );
    let r = srv
        .post(
            &format!("/v1/credentials/{cred}/rotate"),
            &srv.admin,
            json!({"fields": case.staged}),
        )
        .await
        .ok(200);
    assert_eq!(r["promoted"], false, "{r}");
    assert_test_refused(result_for(&r["tests"], &legacy), "the rotation's test of the dependent");
    assert!(
        r["failed_connections"].as_array().unwrap().contains(&json!(legacy)),
        "{r}"
    );
    let r = srv
        .post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": legacy, "run_id": "run-exfil"}),
        )
        .await;
    shown.push(r.text.clone());
    r.problem(409, "destination_not_allowed");

    // Nothing reached the listener; nothing the builder or worker saw holds a secret.
    trap.assert_untouched(&format!("{kind}: the builder's attempts")).await;
    assert_absent(&format!("{kind}: the answers"), &shown.join("\n"), &case.secrets);
    assert_eq!(allowed(&srv, &cred).await, base, "the attempts changed the allowed set");
    // Each refusal is audited as a denial naming the field.
    let denied = audit(&srv, &format!("actor_id={builder_id}&outcome=denied")).await;
    for action in ["connection.create", "connection.attach", "connection.update"] {
        assert!(
            denied.iter().any(|e| e["action"] == action
                && e["details"]["refused"] == "destination_not_allowed"
                && e["details"]["field"] == case.field),
            "{kind}: no denied {action} event naming {}: {denied:#?}",
            case.field
        );
    }
    let tests = denied
        .iter()
        .filter(|e| e["action"] == "connection.test" && e["target_id"] == legacy.as_str())
        .count();
    assert_eq!(
        tests, 2,
        "{kind}: the refused tests are not audited as denials: {denied:#?}"
    );
    let resolves = audit(
        &srv,
        &format!("actor_id={worker_id}&action=connection.resolve&outcome=denied"),
    )
    .await;
    assert!(
        resolves
            .iter()
            .any(|e| e["details"]["refused"] == "destination_not_allowed"),
        "{kind}: the refused resolve is not audited: {resolves:#?}"
    );
    assert_absent(
        &format!("{kind}: the audit log"),
        &serde_json::to_string(&audit(&srv, "").await).unwrap(),
        &case.secrets,
    );

    // ---- Controls: the owner takes the same paths and the same listener is reached.

    // 3'. The admin allows the listener: the same tests and resolve now go through.
    set_allowed(&srv, &cred, &wider).await;
    let m = trap.accepted();
    let r = srv
        .post(
            &format!("/v1/connections/{legacy}/test"),
            &builder,
            json!({"version": null}),
        )
        .await
        .ok(200);
    assert_test_ran(&r, "control: the builder's test once allowed");
    trap.assert_reached(m, &case.handed[0], &format!("{kind}: control 3, current version"))
        .await;
    let m = trap.accepted();
    let r = srv
        .post(
            &format!("/v1/connections/{legacy}/test"),
            &builder,
            json!({"version": 2}),
        )
        .await
        .ok(200);
    assert_test_ran(&r, "control: the pinned test once allowed");
    trap.assert_reached(m, &case.handed[1], &format!("{kind}: control 3, pending version"))
        .await;
    let m = trap.accepted();
    let r = srv
        .post(
            &format!("/v1/credentials/{cred}/test"),
            &srv.admin,
            json!({"version": 2}),
        )
        .await
        .ok(200);
    assert_test_ran(result_for(&r, &legacy), "control: the credential test once allowed");
    trap.assert_reached(m, &case.handed[1], &format!("{kind}: control 3, credential test"))
        .await;
    let r = srv
        .post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": legacy, "run_id": "run-control"}),
        )
        .await
        .ok(200);
    assert_eq!(r["connection"]["config"], there, "{r}");
    // Narrowed again, resolve refuses again.
    set_allowed(&srv, &cred, &base).await;
    srv.post(
        "/v1/resolve",
        &worker,
        json!({"connection_id": legacy, "run_id": "run-narrowed"}),
    )
    .await
    .problem(409, "destination_not_allowed");

    // 2'. The owner re-points the wired connection: trust on first use widens the set.
    let widened_before = audit(&srv, "action=credential.destinations.allow").await.len();
    srv.patch(
        &format!("/v1/connections/{wired}"),
        &srv.admin,
        json!({"config": there}),
    )
    .await
    .ok(200);
    assert!(allowed(&srv, &cred).await.contains(&trap.dest()));
    let widened = audit(&srv, "action=credential.destinations.allow").await;
    assert_eq!(widened.len(), widened_before + 1, "{widened:#?}");
    let ev = widened.last().unwrap();
    assert_eq!(ev["target_id"], cred.as_str(), "{ev}");
    assert_eq!(ev["details"]["via_connection"], wired.as_str(), "{ev}");
    assert_eq!(ev["details"]["added"], json!([trap.dest()]), "{ev}");
    let m = trap.accepted();
    let r = srv
        .post(&format!("/v1/connections/{wired}/test"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_test_ran(&r, "control: the admin's re-pointed connection");
    trap.assert_reached(m, &case.handed[0], &format!("{kind}: control 2"))
        .await;
    set_allowed(&srv, &cred, &base).await;

    // 1'. The owner attaches the credential to a connection to the listener.
    let bare = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            conn_body(&srv, "owner-bare", kind, there.clone(), None),
        )
        .await
        .ok(201));
    srv.call(
        "PUT",
        &format!("/v1/connections/{bare}/credential"),
        Some(srv.admin.as_str()),
        Some(json!({"credential_id": cred})),
    )
    .await
    .ok(200);
    assert!(allowed(&srv, &cred).await.contains(&trap.dest()));
    let m = trap.accepted();
    let r = srv
        .post(&format!("/v1/connections/{bare}/test"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_test_ran(&r, "control: the owner's attach");
    trap.assert_reached(m, &case.handed[0], &format!("{kind}: control 1 (attach)"))
        .await;
    set_allowed(&srv, &cred, &base).await;

    // 1''. The owner creates a connection to the listener with the credential.
    let owned = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            conn_body(&srv, "owner-conn", kind, there.clone(), Some(cred.as_str())),
        )
        .await
        .ok(201));
    assert!(allowed(&srv, &cred).await.contains(&trap.dest()));
    let m = trap.accepted();
    let r = srv
        .post(&format!("/v1/connections/{owned}/test"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_test_ran(&r, "control: the owner's connection");
    if kind == "http" {
        assert_eq!(r["ok"], true, "the listener answers 200: {r}");
    }
    trap.assert_reached(m, &case.handed[0], &format!("{kind}: control 1 (create)"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_auth_never_reaches_a_builders_listener_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::Http)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_password_never_reaches_a_builders_listener_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_login_never_reaches_a_builders_listener_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::Mysql)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ftp_password_never_reaches_a_builders_listener_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::Ftp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldap_bind_password_never_reaches_a_builders_listener_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::Ldap)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_access_key_never_signs_for_a_builders_sts_endpoint_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::S3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcp_service_account_never_signs_for_a_builders_token_url_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::Gcs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_client_secret_never_reaches_a_builders_authority_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::AzureBlob)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_access_token_never_reaches_a_builders_check_url_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::OauthSaas)).await;
}

/// The database behind an SSH bastion: the credential allows its bastion (its own field), not
/// whatever host a builder names behind it.
#[cfg(feature = "server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_password_never_reaches_a_builders_listener_through_the_ssh_bastion_on_every_backend() {
    on_every_backend(|b| exfiltration(b, Kind::PostgresViaSsh)).await;
}

// ------------------------------------------------------------- narrowing: the upgrade defence

async fn narrowing(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let trap = Listener::start(Proto::Http).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let (_, builder) = srv
        .principal(&org, "user", "builder-n", &[("builder", Scope::Ws(&ws))])
        .await;
    let (worker_id, worker) = srv
        .principal(&org, "service_account", "worker-n", &[("worker", Scope::Ws(&ws))])
        .await;
    let password = secret("N1");
    let basic = format!("svc-n:{password}");
    let cred = id(&srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": "api-basic", "type": "password", "workspace_id": ws, "environment": "prod",
                   "fields": {"username": "svc-n", "password": password}}),
        )
        .await
        .ok(201));
    assert_eq!(allowed(&srv, &cred).await, Vec::<String>::new());
    let conn = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            conn_body(
                &srv,
                "api",
                "http",
                json!({"base_url": url("127.0.0.1", trap.port(), "/")}),
                Some(cred.as_str()),
            ),
        )
        .await
        .ok(201));
    // Trust on first use: the admin's wiring allowed the listener.
    assert_eq!(allowed(&srv, &cred).await, vec![trap.dest()]);
    let got = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert_eq!(got["field_destinations"], json!([]), "{got}");
    let ev = audit(&srv, "action=credential.destinations.allow").await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["details"]["via_connection"], conn.as_str(), "{ev:#?}");
    let resolve = |run: &'static str| srv.post("/v1/resolve", &worker, json!({"connection_id": conn, "run_id": run}));
    // While allowed: resolve answers, the test reaches the listener with the secret.
    let r = resolve("run-1").await.ok(200);
    assert_eq!(r["credential"]["fields"]["password"], password.as_str(), "{r}");
    let r = srv
        .post(&format!("/v1/connections/{conn}/test"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_eq!(r["ok"], true, "{r}");
    trap.assert_reached(0, std::slice::from_ref(&basic), "before narrowing")
        .await;

    // The admin narrows the set to nothing: the connection wired before is refused everywhere.
    set_allowed(&srv, &cred, &[]).await;
    let upd = audit(&srv, &format!("action=credential.update&target_id={cred}")).await;
    assert_eq!(
        upd.last().unwrap()["details"]["destinations"]["removed"],
        json!([trap.dest()]),
        "{upd:#?}"
    );
    let m = trap.accepted();
    let r = resolve("run-2").await;
    assert_absent("the refused resolve", &r.text, std::slice::from_ref(&password));
    r.problem(409, "destination_not_allowed");
    for (who, token) in [("the builder", &builder), ("the admin", &srv.admin)] {
        let r = srv
            .post(&format!("/v1/connections/{conn}/test"), token, json!({}))
            .await
            .ok(200);
        assert_test_refused(&r, &format!("{who}'s test after narrowing"));
    }
    let r = srv
        .post(&format!("/v1/credentials/{cred}/test"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_test_refused(result_for(&r, &conn), "the credential test after narrowing");
    // A test never widens the set, not even the admin's.
    assert_eq!(allowed(&srv, &cred).await, Vec::<String>::new());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(trap.accepted(), m, "the listener was reached after narrowing");
    let denied = audit(
        &srv,
        &format!("actor_id={worker_id}&action=connection.resolve&outcome=denied"),
    )
    .await;
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(
        denied[0]["details"]["refused"], "destination_not_allowed",
        "{denied:#?}"
    );
    assert_eq!(denied[0]["details"]["field"], "config.base_url", "{denied:#?}");

    // Allowed again: resolve answers again.
    set_allowed(&srv, &cred, &[trap.dest()]).await;
    resolve("run-3").await.ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_the_allowed_set_makes_resolve_and_test_of_a_wired_connection_refuse_on_every_backend() {
    on_every_backend(narrowing).await;
}

// --------------------------------------------------------- 4. role chains across workspaces

/// A problem body without the parts that differ per request.
fn comparable(r: &Resp) -> Value {
    let mut b = r.body.clone();
    if let Value::Object(m) = &mut b {
        m.remove("request_id");
    }
    b
}

async fn role_chain_across_workspaces(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let (org, ws_a) = (srv.org_id.clone(), srv.ws_id.clone());
    let ws_b = id(&srv
        .post("/v1/workspaces", &srv.admin, json!({"org_id": org, "name": "team-b"}))
        .await
        .ok(201));
    let (_, ie) = srv
        .principal(&org, "user", "ie-a", &[("integration_engineer", Scope::Ws(&ws_a))])
        .await;
    let key = |name: &str, scope: Value, key_id: &str, secret: &str| {
        let mut b = json!({"name": name, "type": "aws", "variant": "access_key", "environment": "prod",
                           "fields": {"access_key_id": key_id, "secret_access_key": secret, "region": "us-east-1"}});
        if let (Value::Object(m), Value::Object(s)) = (&mut b, scope) {
            m.extend(s);
        }
        b
    };
    let (b_key_id, b_secret) = (access_key_id(), secret("B"));
    let b_key = id(&srv
        .post(
            "/v1/credentials",
            &srv.admin,
            key("b-key", json!({"workspace_id": ws_b}), &b_key_id, &b_secret),
        )
        .await
        .ok(201));
    let b_db = id(&srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": "b-db", "type": "database", "workspace_id": ws_b, "environment": "prod",
                   "fields": {"username": "u", "password": secret("BDB")}}),
        )
        .await
        .ok(201));
    let a_key = id(&srv
        .post(
            "/v1/credentials",
            &srv.admin,
            key("a-key", json!({"workspace_id": ws_a}), &access_key_id(), &secret("A")),
        )
        .await
        .ok(201));
    let org_key = id(&srv
        .post(
            "/v1/credentials",
            &srv.admin,
            key("org-key", json!({"org_id": org}), &access_key_id(), &secret("O")),
        )
        .await
        .ok(201));
    let ghost = unused_credential_id();
    assert_ne!(ghost, b_key);
    let chain = |name: &str, source: &str| {
        json!({"name": name, "type": "aws", "variant": "assume_role", "workspace_id": ws_a, "environment": "prod",
               "fields": {"role_arn": "arn:aws:iam::123456789012:role/x", "source_credential_id": source}})
    };

    // The source in workspace B, a source that does not exist, and B's database credential:
    // one and the same answer.
    let across = srv.post("/v1/credentials", &ie, chain("chain-b", &b_key)).await;
    let nowhere = srv.post("/v1/credentials", &ie, chain("chain-ghost", &ghost)).await;
    let other_type = srv.post("/v1/credentials", &ie, chain("chain-db", &b_db)).await;
    for (what, r) in [
        ("a source in another workspace", &across),
        ("a source that does not exist", &nowhere),
        ("another workspace's database credential", &other_type),
    ] {
        assert_eq!(r.status, 404, "{what}: {}", r.text);
        assert!(
            r.content_type.starts_with("application/problem+json"),
            "{what}: {}",
            r.content_type
        );
        assert_eq!(r.body["code"], "not_found", "{what}: {}", r.text);
        assert!(
            r.body.get("field").is_none(),
            "{what}: a field hints at existence: {}",
            r.text
        );
        for hint in [
            b_key.as_str(),
            b_db.as_str(),
            ws_b.as_str(),
            b_key_id.as_str(),
            "workspace",
            "aws",
            "database",
        ] {
            assert!(
                !r.text.contains(hint),
                "{what}: the answer mentions {hint:?}: {}",
                r.text
            );
        }
        assert_absent(what, &r.text, std::slice::from_ref(&b_secret));
    }
    // Exactly the answer for any credential that is not there.
    assert_eq!(
        comparable(&nowhere),
        json!({"type": "urn:credvault:problem:not_found", "title": "Not Found", "status": 404,
               "detail": "no such credential", "code": "not_found"}),
        "{}",
        nowhere.text
    );
    assert_eq!(
        comparable(&across),
        comparable(&nowhere),
        "a source in another workspace is told apart from a missing one"
    );
    assert_eq!(comparable(&other_type), comparable(&nowhere));
    // The same through a new version of a chain that was fine.
    let ok_chain = id(&srv.post("/v1/credentials", &ie, chain("chain-a", &a_key)).await.ok(201));
    srv.post("/v1/credentials", &ie, chain("chain-org", &org_key))
        .await
        .ok(201);
    let version = |source: &str| json!({"fields": {"role_arn": "arn:aws:iam::123456789012:role/x", "source_credential_id": source}, "mode": "stage"});
    let across_v = srv
        .post(&format!("/v1/credentials/{ok_chain}/versions"), &ie, version(&b_key))
        .await;
    let nowhere_v = srv
        .post(&format!("/v1/credentials/{ok_chain}/versions"), &ie, version(&ghost))
        .await;
    assert_eq!(across_v.status, 404, "{}", across_v.text);
    assert_eq!(comparable(&across_v), comparable(&nowhere_v));
    assert_eq!(comparable(&across_v), comparable(&nowhere));
    // Nothing was created by the refused requests.
    let names: Vec<String> = srv
        .get(&format!("/v1/credentials?workspace_id={ws_a}&limit=100"), &srv.admin)
        .await
        .ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| st(&c["name"]))
        .collect();
    for n in ["chain-b", "chain-ghost", "chain-db"] {
        assert!(!names.contains(&n.to_owned()), "{n} was created: {names:?}");
    }
    let got = srv
        .get(&format!("/v1/credentials/{ok_chain}"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(got["current_version"], 1, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_chain_from_another_workspaces_key_is_refused_like_a_key_that_does_not_exist_on_every_backend() {
    on_every_backend(role_chain_across_workspaces).await;
}
