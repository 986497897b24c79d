//! Test connection over real HTTP, on SQLite and PostgreSQL:
//!
//! - the PostgreSQL tester against the test run's real PostgreSQL (right and wrong password,
//!   missing database, no CONNECT privilege, refused port, a pending version, a credential over
//!   two connections, `last_test`, the audit trail);
//! - the HTTP tester against a hand-rolled HTTP/1.1 stub (api_key in a header and in the query,
//!   basic auth, expected_status, methods, no redirects followed, a target echoing the secret
//!   back never making it leave);
//! - who may test, unsupported kinds that must not even open a socket;
//! - the SSRF suite: more than fifty hostile targets under the default egress policy, every one
//!   refused and — checked with listening sockets — never connected to; and the positive
//!   control under `--egress-allow 127.0.0.0/8`, where the same listener is reached while the
//!   metadata address stays refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{closed_port, random_hex, st};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `serve` arguments that let the server reach loopback (the stubs and the test PostgreSQL).
const ALLOW_LOOPBACK: [&str; 2] = ["--egress-allow", "127.0.0.0/8"];

/// Roles that hold `credential.attach`, and the ones that do not.
const TESTERS: [&str; 3] = ["admin", "integration_engineer", "builder"];
const NON_TESTERS: [&str; 3] = ["auditor", "viewer", "worker"];

// ------------------------------------------------------------------------------- helpers

fn id(v: &Value) -> String {
    st(&v["id"])
}

/// Standard base64 with padding.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 { A[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Percent-encoding of everything but unreserved characters.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Asserts that none of the usual spellings of `secret` occurs in `hay`.
#[track_caller]
fn assert_no_secret(what: &str, hay: &str, secret: &str) {
    for form in [secret.to_owned(), b64(secret.as_bytes()), pct(secret)] {
        assert!(!hay.contains(&form), "{what} contains the secret (as `{form}`):\n{hay}");
    }
}

/// Creates a credential as admin and returns its ID.
async fn credential(srv: &Server, body: Value) -> String {
    id(&srv.post("/v1/credentials", &srv.admin, body).await.ok(201))
}

/// An `api_key` credential with these parts.
async fn api_key_cred(srv: &Server, name: &str, parts: Value) -> String {
    credential(
        srv,
        json!({"name": name, "type": "api_key", "workspace_id": srv.ws_id, "environment": "prod",
               "fields": {"parts": parts}}),
    )
    .await
}

/// An `api_key` credential with one header part.
async fn header_key_cred(srv: &Server, name: &str, header: &str, value: &str) -> String {
    api_key_cred(srv, name, json!([{"name": header, "value": value, "in": "header"}])).await
}

/// A `password` credential (HTTP basic auth).
async fn basic_cred(srv: &Server, name: &str, user: &str, password: &str) -> String {
    credential(
        srv,
        json!({"name": name, "type": "password", "workspace_id": srv.ws_id, "environment": "prod",
               "fields": {"username": user, "password": password}}),
    )
    .await
}

/// A `database` credential (password variant).
async fn db_cred(srv: &Server, name: &str, user: &str, password: &str) -> String {
    credential(
        srv,
        json!({"name": name, "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
               "labels": {"system": "postgres", "owner_team": "data-platform"},
               "fields": {"username": user, "password": password}}),
    )
    .await
}

/// The body of a connection.
fn conn_body(srv: &Server, name: &str, kind: &str, config: Value, cred: Option<&str>) -> Value {
    let mut b = json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": kind, "config": config});
    if let Some(c) = cred {
        b["credential_id"] = json!(c);
    }
    b
}

/// Creates a connection as admin and returns its ID.
async fn connection(srv: &Server, name: &str, kind: &str, config: Value, cred: Option<&str>) -> String {
    id(&srv
        .post("/v1/connections", &srv.admin, conn_body(srv, name, kind, config, cred))
        .await
        .ok(201))
}

/// An `http` connection to `base_url` with extra config.
async fn http_conn(srv: &Server, name: &str, base_url: &str, extra: Value, cred: &str) -> String {
    let mut config = json!({"base_url": base_url});
    if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
        c.extend(e);
    }
    connection(srv, name, "http", config, Some(cred)).await
}

/// POST /v1/connections/{id}/test as admin, expecting 200.
async fn test_conn(srv: &Server, conn: &str, body: Value) -> Value {
    srv.post(&format!("/v1/connections/{conn}/test"), &srv.admin, body)
        .await
        .ok(200)
}

/// POST /v1/credentials/{id}/test as admin, expecting 200.
async fn test_cred(srv: &Server, cred: &str, body: Value) -> Value {
    srv.post(&format!("/v1/credentials/{cred}/test"), &srv.admin, body)
        .await
        .ok(200)
}

/// The error code of a test result ("" when it passed).
fn code(r: &Value) -> String {
    r["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[track_caller]
fn assert_passed(r: &Value) {
    assert_eq!(r["ok"], true, "the test should pass: {r}");
    assert!(r.get("error").is_none_or(Value::is_null), "{r}");
    assert!(r["latency_ms"].is_u64(), "{r}");
}

#[track_caller]
fn assert_failed(r: &Value, expected: &str) {
    assert_eq!(r["ok"], false, "the test should fail with {expected}: {r}");
    assert_eq!(r["error"]["code"], expected, "{r}");
    assert!(r["error"]["message"].is_string(), "{r}");
    assert!(r["latency_ms"].is_u64(), "{r}");
}

/// Every audit event of `action` (all pages), oldest first.
async fn audit(srv: &Server, action: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = format!("/v1/audit?action={action}&limit=200");
    loop {
        let page = srv.get(&path, &srv.admin).await.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/audit?action={action}&limit=200&cursor={c}"),
            None => break,
        }
    }
    out.sort_by_key(|e| e["seq"].as_i64().unwrap_or_default());
    out
}

/// The `connection.test` events of one connection that ran a test (not refused ones).
async fn test_events(srv: &Server, conn: &str) -> Vec<Value> {
    audit(srv, "connection.test")
        .await
        .into_iter()
        .filter(|e| e["target_id"] == conn && e["outcome"] != "denied")
        .collect()
}

// ----------------------------------------------------------------- hand-rolled servers

/// One HTTP request a stub received.
#[derive(Clone, Debug, Default)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or_default()
    }
    fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or_default()
    }
}

/// What a stub answers.
struct Reply {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn new(status: u16) -> Reply {
        let reason = match status {
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            302 => "Found",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Whatever",
        };
        Reply {
            status,
            reason: reason.to_owned(),
            headers: Vec::new(),
            body: String::new(),
        }
    }
    fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }
    fn body(mut self, b: &str) -> Reply {
        self.body = b.to_owned();
        self
    }
    fn reason(mut self, r: &str) -> Reply {
        self.reason = r.to_owned();
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// How a stub treats a connection.
#[derive(Clone)]
enum Mode {
    /// Minimal HTTP/1.1, one request per connection.
    Http(Handler),
    /// Writes these bytes at once, then closes.
    Raw(&'static [u8]),
    /// Accepts and never answers.
    Silent,
    /// A PostgreSQL server that declines TLS, asks for a cleartext password and refuses it,
    /// echoing it back in its error (raw, base64 and percent-encoded).
    PgEcho,
    /// The same behind TLS (it accepts the SSLRequest with this acceptor).
    PgEchoTls(tokio_rustls::TlsAcceptor),
    /// A PostgreSQL server that declines TLS, asks for an MD5 password and refuses it.
    PgMd5,
}

fn http(f: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Mode {
    Mode::Http(Arc::new(f))
}

/// A listener on loopback that counts the connections it accepts and records HTTP requests.
struct Stub {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    reqs: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    async fn start(bind: &str, mode: Mode) -> Stub {
        Stub::on(TcpListener::bind(bind).await.unwrap(), mode)
    }

    fn on(listener: TcpListener, mode: Mode) -> Stub {
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (conns.clone(), reqs.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (mode, r) = (mode.clone(), r.clone());
                tokio::spawn(async move { serve(sock, mode, r).await });
            }
        });
        Stub {
            addr,
            conns,
            reqs,
            task,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
    /// `http://127.0.0.1:PORT` (or `http://[::1]:PORT`).
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
    fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    match tokio::time::timeout(Duration::from_secs(3), s.read(buf)).await {
        Ok(Ok(n)) if n > 0 => Some(n),
        _ => None,
    }
}

async fn read_request(s: &mut TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = read_some(s, &mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let req = Req {
        method,
        target,
        headers,
    };
    let len = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut have = buf.len() - end - 4;
    while have < len {
        let Some(n) = read_some(s, &mut chunk).await else { break };
        have += n;
    }
    Some(req)
}

async fn serve(mut s: TcpStream, mode: Mode, reqs: Arc<Mutex<Vec<Req>>>) {
    match mode {
        Mode::Http(h) => {
            let Some(req) = read_request(&mut s).await else { return };
            reqs.lock().unwrap().push(req.clone());
            let reply = h(&req);
            let body = if req.method == "HEAD" { "" } else { reply.body.as_str() };
            let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reply.reason);
            for (k, v) in &reply.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str(&format!(
                "content-length: {}\r\nconnection: close\r\n\r\n{body}",
                reply.body.len()
            ));
            let _ = s.write_all(out.as_bytes()).await;
            let _ = s.shutdown().await;
        }
        Mode::Raw(bytes) => {
            let _ = s.write_all(bytes).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = s.shutdown().await;
        }
        Mode::Silent => {
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(60), async {
                while s.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            })
            .await;
        }
        Mode::PgEcho => pg_echo(s, None, false).await,
        Mode::PgEchoTls(acceptor) => pg_echo(s, Some(acceptor), false).await,
        Mode::PgMd5 => pg_echo(s, None, true).await,
    }
}

async fn read_exact_n<S: tokio::io::AsyncRead + Unpin>(s: &mut S, n: usize) -> Option<Vec<u8>> {
    let mut b = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut b))
        .await
        .ok()?
        .ok()?;
    Some(b)
}

/// The fake PostgreSQL servers of [`Mode::PgEcho`], [`Mode::PgEchoTls`] and [`Mode::PgMd5`].
async fn pg_echo(mut s: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, md5: bool) {
    // StartupMessage (or SSLRequest first): Int32 length including itself, then the body.
    let Some(len) = read_exact_n(&mut s, 4).await else {
        return;
    };
    let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let Some(body) = read_exact_n(&mut s, n.saturating_sub(4)).await else {
        return;
    };
    let ssl_request = body.get(..4) == Some(&[0x04, 0xd2, 0x16, 0x2f]);
    match (ssl_request, tls) {
        (true, Some(acceptor)) => {
            let _ = s.write_all(b"S").await;
            let Ok(mut t) = acceptor.accept(s).await else { return };
            let Some(len) = read_exact_n(&mut t, 4).await else {
                return;
            };
            let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if read_exact_n(&mut t, n.saturating_sub(4)).await.is_none() {
                return;
            }
            pg_auth(&mut t, md5).await;
        }
        (true, None) => {
            let _ = s.write_all(b"N").await; // SSLRequest: no TLS here
            let Some(len) = read_exact_n(&mut s, 4).await else {
                return;
            };
            let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if read_exact_n(&mut s, n.saturating_sub(4)).await.is_none() {
                return;
            }
            pg_auth(&mut s, md5).await;
        }
        (false, _) => pg_auth(&mut s, md5).await,
    }
}

/// Asks for the password (clear text, or MD5 with a salt), reads the answer and refuses it,
/// echoing what arrived.
async fn pg_auth<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S, md5: bool) {
    let ask: &[u8] = if md5 {
        &[b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]
    } else {
        &[b'R', 0, 0, 0, 8, 0, 0, 0, 3]
    };
    if s.write_all(ask).await.is_err() {
        return;
    }
    // PasswordMessage: 'p', Int32 length, the password, NUL.
    let Some(head) = read_exact_n(s, 5).await else {
        return;
    };
    let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let Some(body) = read_exact_n(s, n.saturating_sub(4)).await else {
        return;
    };
    let pw = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned();
    let msg = format!(
        "password authentication failed for user \"loader\": you sent {pw} (base64 {}, url {})",
        b64(pw.as_bytes()),
        pct(&pw)
    );
    let mut fields = Vec::new();
    for (t, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28P01"),
        (b'M', msg.as_str()),
        (b'D', msg.as_str()),
    ] {
        fields.push(t);
        fields.extend_from_slice(v.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&u32::try_from(fields.len() + 4).unwrap().to_be_bytes());
    out.extend_from_slice(&fields);
    let _ = s.write_all(&out).await;
    let _ = s.shutdown().await;
}

/// Listening sockets on 127.0.0.1 and (when the host has IPv6 loopback) ::1 that answer
/// `200 OK` to anything and count every connection they accept: a hostile target pointed at
/// them must leave the counts at zero.
struct Trap {
    v4: Stub,
    v6: Option<Stub>,
}

impl Trap {
    async fn start() -> Trap {
        let mode = http(|_| Reply::new(200).body("trapped"));
        let v4 = Stub::start("127.0.0.1:0", mode.clone()).await;
        // The same port on ::1 when possible, so `localhost`, `[::]` and friends hit a trap on
        // either family.
        let v6 = match TcpListener::bind(("::1", v4.port())).await {
            Ok(l) => Some(l),
            Err(_) => TcpListener::bind("[::1]:0").await.ok(),
        }
        .map(|l| Stub::on(l, mode));
        let trap = Trap { v4, v6 };
        // Prove the trap sees connections (then count from here).
        let _ = TcpStream::connect(trap.v4.addr).await.unwrap();
        if let Some(v6) = &trap.v6 {
            let _ = TcpStream::connect(v6.addr).await.unwrap();
        }
        let want = 1 + usize::from(trap.v6.is_some());
        for _ in 0..100 {
            if trap.raw_count() == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(trap.raw_count(), want, "the trap does not see connections");
        trap.v4.conns.store(0, Ordering::SeqCst);
        if let Some(v6) = &trap.v6 {
            v6.conns.store(0, Ordering::SeqCst);
        }
        trap
    }
    fn raw_count(&self) -> usize {
        self.v4.connections() + self.v6.as_ref().map_or(0, Stub::connections)
    }
    /// Connections accepted since the trap was armed.
    async fn hits(&self) -> usize {
        // Let any in-flight accept land.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.raw_count()
    }
    fn port(&self) -> u16 {
        self.v4.port()
    }
    /// The port of the IPv6 trap (the IPv4 one when there is no IPv6 loopback).
    fn port6(&self) -> u16 {
        self.v6.as_ref().map_or(self.v4.port(), Stub::port)
    }
}

// ------------------------------------------------------------------- the PostgreSQL target

/// A role and databases on the test run's PostgreSQL for the PostgreSQL tester to log in to.
#[cfg(feature = "postgres-tests")]
struct PgTarget {
    admin: postgres::Config,
    host: String,
    port: u16,
    role: String,
    password: String,
    db: String,
    locked_db: String,
}

#[cfg(feature = "postgres-tests")]
impl PgTarget {
    fn create() -> PgTarget {
        let url = std::env::var("CREDVAULT_TEST_PG_URL").expect(
            "CREDVAULT_TEST_PG_URL must name the test PostgreSQL (postgres://postgres:pw@127.0.0.1:PORT/postgres)",
        );
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .expect("a postgres:// URL");
        let (auth, rest) = rest.rsplit_once('@').expect("user:password@ in the URL");
        let (user, pass) = auth.split_once(':').expect("a password in the URL");
        let (hostport, admin_db) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => (h.trim_matches(['[', ']']).to_owned(), p.parse::<u16>().unwrap()),
            _ => (hostport.trim_matches(['[', ']']).to_owned(), 5432),
        };
        let mut admin = postgres::Config::new();
        admin
            .host(&host)
            .port(port)
            .user(user)
            .password(pass)
            .dbname(admin_db.split('?').next().unwrap_or("postgres"));
        let tag = random_hex(5);
        let t = PgTarget {
            admin,
            host,
            port,
            role: format!("cvt_tc_{tag}"),
            password: format!("pg-pw-{}", random_hex(8)),
            db: format!("cvt_tcdb_{tag}"),
            locked_db: format!("cvt_tclk_{tag}"),
        };
        let stmts = vec![
            format!("CREATE ROLE {} LOGIN PASSWORD '{}'", t.role, t.password),
            format!("CREATE DATABASE {} OWNER {}", t.db, t.role),
            format!("CREATE DATABASE {}", t.locked_db),
            format!("REVOKE CONNECT ON DATABASE {} FROM PUBLIC", t.locked_db),
        ];
        let admin = t.admin.clone();
        common::off_runtime(move || {
            let mut c = admin
                .connect(postgres::NoTls)
                .expect("cannot reach the test PostgreSQL");
            // CREATE DATABASE cannot run in a (multi-statement, implicit) transaction.
            for s in stmts {
                c.batch_execute(&s).unwrap();
            }
        });
        t
    }

    /// A postgres connection config pointing at `database`.
    fn config(&self, database: &str) -> Value {
        json!({"host": self.host, "port": self.port, "database": database})
    }
}

#[cfg(feature = "postgres-tests")]
impl Drop for PgTarget {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let stmts = vec![
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.locked_db),
            format!("DROP ROLE IF EXISTS {}", self.role),
        ];
        common::off_runtime(move || {
            if let Ok(mut c) = admin.connect(postgres::NoTls) {
                for s in stmts {
                    let _ = c.batch_execute(&s);
                }
            }
        });
    }
}

// ------------------------------------------------------------ 1. the PostgreSQL tester

#[cfg(feature = "postgres-tests")]
async fn postgres_tester_logs_in_and_classifies_failures(b: Backend, pg: &PgTarget) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let main = db_cred(&srv, "pg-main", &pg.role, &pg.password).await;
    let good = connection(&srv, "pg-good", "postgres", pg.config(&pg.db), Some(&main)).await;

    // Nothing tested yet.
    let before = srv.get(&format!("/v1/connections/{good}"), &srv.admin).await.ok(200);
    assert!(before["last_test"].is_null(), "{before}");

    // The right password: logged in, SELECT 1 ran. Without a body, with `{}` and with the
    // current version named.
    let r = srv
        .call("POST", &format!("/v1/connections/{good}/test"), Some(&srv.admin), None)
        .await
        .ok(200);
    assert_passed(&r);
    assert_eq!(r["connection_id"], good.as_str(), "{r}");
    assert_eq!(r["connection_name"], "pg-good", "{r}");
    assert_eq!(r["credential_id"], main.as_str(), "{r}");
    assert_eq!(r["version"], 1, "{r}");
    assert_passed(&test_conn(&srv, &good, json!({})).await);
    assert_passed(&test_conn(&srv, &good, json!({"version": 1})).await);

    // last_test shows it.
    let got = srv.get(&format!("/v1/connections/{good}"), &srv.admin).await.ok(200);
    let lt = &got["last_test"];
    assert_eq!(lt["ok"], true, "{got}");
    assert_eq!(lt["version"], 1, "{got}");
    assert!(lt["error_code"].is_null(), "{got}");
    assert!(lt["latency_ms"].is_i64(), "{got}");
    assert!(lt["at"].as_str().is_some_and(|s| s.ends_with('Z')), "{got}");

    // Redshift speaks the same protocol; sslmode disable/prefer are fine.
    let aux = db_cred(&srv, "pg-aux", &pg.role, &pg.password).await;
    let rs = connection(&srv, "rs-good", "redshift", pg.config(&pg.db), Some(&aux)).await;
    assert_passed(&test_conn(&srv, &rs, json!({})).await);
    for mode in ["disable", "prefer"] {
        let mut cfg = pg.config(&pg.db);
        cfg["sslmode"] = json!(mode);
        let c = connection(&srv, &format!("pg-ssl-{mode}"), "postgres", cfg, Some(&aux)).await;
        assert_passed(&test_conn(&srv, &c, json!({})).await);
    }

    // A wrong password: auth_failed, and the password never comes back.
    let wrong_pw = format!("wrong-{}", random_hex(6));
    let wrong = db_cred(&srv, "pg-wrong", &pg.role, &wrong_pw).await;
    let c = connection(&srv, "pg-wrong-pw", "postgres", pg.config(&pg.db), Some(&wrong)).await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert_failed(&r, "auth_failed");
    assert_no_secret("the result", &r.to_string(), &wrong_pw);
    // A role that does not exist: auth_failed too (PostgreSQL does not tell them apart).
    let ghost = db_cred(&srv, "pg-ghost", &format!("nobody_{}", random_hex(4)), &pg.password).await;
    let c = connection(&srv, "pg-ghost-role", "postgres", pg.config(&pg.db), Some(&ghost)).await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "auth_failed");

    // A database that does not exist: not_found.
    let c = connection(
        &srv,
        "pg-no-db",
        "postgres",
        pg.config("no_such_database_here"),
        Some(&aux),
    )
    .await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "not_found");
    // A database the role may not connect to: permission_denied.
    let c = connection(&srv, "pg-locked-db", "postgres", pg.config(&pg.locked_db), Some(&aux)).await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "permission_denied");

    // Nothing listens: connect_refused.
    let port = closed_port().await;
    let closed = connection(
        &srv,
        "pg-closed",
        "postgres",
        json!({"host": "127.0.0.1", "port": port, "database": pg.db}),
        Some(&main),
    )
    .await;
    assert_failed(&test_conn(&srv, &closed, json!({})).await, "connect_refused");

    // A pending version with a wrong password: testing it fails while the current passes.
    let staged_pw = format!("staged-{}", random_hex(6));
    let v2 = srv
        .post(
            &format!("/v1/credentials/{main}/versions"),
            &srv.admin,
            json!({"fields": {"username": pg.role, "password": staged_pw}, "mode": "stage"}),
        )
        .await
        .ok(201);
    assert_eq!(v2["state"], "pending", "{v2}");
    assert_eq!(v2["version"], 2, "{v2}");
    let r = test_conn(&srv, &good, json!({"version": 2})).await;
    assert_failed(&r, "auth_failed");
    assert_eq!(r["version"], 2, "{r}");
    assert_no_secret("the result", &r.to_string(), &staged_pw);
    let lt = srv.get(&format!("/v1/connections/{good}"), &srv.admin).await.ok(200)["last_test"].clone();
    assert_eq!(
        (lt["ok"].clone(), lt["error_code"].clone(), lt["version"].clone()),
        (json!(false), json!("auth_failed"), json!(2)),
        "{lt}"
    );
    let r = test_conn(&srv, &good, json!({})).await;
    assert_passed(&r);
    assert_eq!(r["version"], 1, "testing without a version tests the current one: {r}");
    // The credential did not change.
    let cred = srv.get(&format!("/v1/credentials/{main}"), &srv.admin).await.ok(200);
    assert_eq!(cred["current_version"], 1, "{cred}");

    // The credential over its two connections: one passes, one is refused.
    let r = test_cred(&srv, &main, json!({})).await;
    assert_eq!(r["credential_id"], main.as_str(), "{r}");
    assert_eq!(r["version"], 1, "{r}");
    assert_eq!(r["ok"], false, "{r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{r}");
    let by_id = |cid: &str| results.iter().find(|x| x["connection_id"] == cid).cloned().unwrap();
    let g = by_id(&good);
    assert_passed(&g);
    assert_eq!(g["connection_name"], "pg-good");
    assert_eq!(g["credential_id"], main.as_str());
    assert_eq!(g["version"], 1);
    let cl = by_id(&closed);
    assert_failed(&cl, "connect_refused");
    assert_eq!(cl["connection_name"], "pg-closed");
    assert_eq!(cl["version"], 1);
    // The same with the pending version: both fail, each for its own reason.
    let r = test_cred(&srv, &main, json!({"version": 2})).await;
    assert_eq!((r["ok"].clone(), r["version"].clone()), (json!(false), json!(2)), "{r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{r}");
    for x in results {
        let want = if x["connection_id"] == good.as_str() {
            "auth_failed"
        } else {
            "connect_refused"
        };
        assert_failed(x, want);
        assert_eq!(x["version"], 2, "{x}");
    }
    assert_no_secret("the credential test", &r.to_string(), &staged_pw);
    // A credential whose every connection passes.
    let r = test_cred(&srv, &aux, json!({})).await;
    assert_eq!(r["ok"], false, "aux has unsupported and failing connections: {r}");
    let solo = db_cred(&srv, "pg-solo", &pg.role, &pg.password).await;
    let solo_conn = connection(&srv, "pg-solo-conn", "postgres", pg.config(&pg.db), Some(&solo)).await;
    let r = test_cred(&srv, &solo, json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["results"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["results"][0]["connection_id"], solo_conn.as_str(), "{r}");

    // last_test after the credential test.
    let lt = srv.get(&format!("/v1/connections/{closed}"), &srv.admin).await.ok(200)["last_test"].clone();
    assert_eq!(
        (lt["ok"].clone(), lt["error_code"].clone(), lt["version"].clone()),
        (json!(false), json!("connect_refused"), json!(2)),
        "{lt}"
    );

    // Versions that cannot be tested.
    let r = srv
        .post(
            &format!("/v1/connections/{good}/test"),
            &srv.admin,
            json!({"version": 99}),
        )
        .await;
    assert!(matches!(r.status, 404 | 422), "{} {}", r.status, r.text);
    srv.post(
        &format!("/v1/credentials/{main}/versions/2/revoke"),
        &srv.admin,
        json!({}),
    )
    .await
    .ok(200);
    srv.post(
        &format!("/v1/connections/{good}/test"),
        &srv.admin,
        json!({"version": 2}),
    )
    .await
    .problem(409, "version_revoked");
    srv.post(
        &format!("/v1/credentials/{main}/test"),
        &srv.admin,
        json!({"version": 2}),
    )
    .await
    .problem(409, "version_revoked");

    // The audit trail: one event per test that ran, with its outcome and details.
    let evs = test_events(&srv, &good).await;
    let seen: Vec<(String, bool, Value, i64)> = evs
        .iter()
        .map(|e| {
            let d = &e["details"];
            assert!(d["latency_ms"].is_u64(), "{e}");
            assert_eq!(d["credential_id"], main.as_str(), "{e}");
            assert_eq!(e["outcome"], if d["ok"] == true { "success" } else { "error" }, "{e}");
            assert_eq!(e["target_type"], "connection", "{e}");
            assert_eq!(e["workspace_id"], srv.ws_id.as_str(), "{e}");
            (
                st(&e["outcome"]),
                d["ok"].as_bool().unwrap(),
                d["error_code"].clone(),
                d["version"].as_i64().unwrap(),
            )
        })
        .collect();
    let s = |o: &str, ok: bool, c: Value, v: i64| (o.to_owned(), ok, c, v);
    assert_eq!(
        seen,
        vec![
            s("success", true, Value::Null, 1),
            s("success", true, Value::Null, 1),
            s("success", true, Value::Null, 1),
            s("error", false, json!("auth_failed"), 2),
            s("success", true, Value::Null, 1),
            s("success", true, Value::Null, 1),
            s("error", false, json!("auth_failed"), 2),
        ],
        "{evs:#?}"
    );
    let closed_evs = test_events(&srv, &closed).await;
    assert_eq!(closed_evs.len(), 3, "{closed_evs:#?}");
    assert!(
        closed_evs
            .iter()
            .all(|e| e["outcome"] == "error" && e["details"]["error_code"] == "connect_refused"),
        "{closed_evs:#?}"
    );
    let everything = audit(&srv, "connection.test").await;
    let text = serde_json::to_string(&everything).unwrap();
    for secret in [&pg.password, &wrong_pw, &staged_pw] {
        assert_no_secret("the audit log", &text, secret);
        assert_no_secret("the server logs", &srv.logs(), secret);
    }
}

#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_tester_logs_in_runs_select_1_and_names_each_failure_on_every_backend() {
    let pg = PgTarget::create();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        postgres_tester_logs_in_and_classifies_failures(backend, &pg).await;
    }
}

/// The CA files and the TLS-only, expired-certificate PostgreSQL that scripts/test makes
/// (`scripts/lib/tls.sh`, `pg_start` with `PG_TLS_*`).
#[cfg(feature = "postgres-tests")]
fn tls_env() -> (String, String, String) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: the PostgreSQL TLS tests need the certificates and clusters scripts/test makes")
        })
    };
    let dir = var("CREDVAULT_TEST_TLS_DIR");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
    (
        read("ca.pem"),
        read("other-ca.pem"),
        var("CREDVAULT_TEST_PG_EXPIRED_URL"),
    )
}

/// `sslmode` does what it says, against real PostgreSQL servers speaking TLS with certificates
/// of a test CA: verify-full checks the chain and the name, verify-ca the chain, require (with
/// `ca_pem`) the chain; a wrong CA, a name the certificate does not hold and an expired
/// certificate each fail with their own code; a mode that needs TLS never falls back to plain
/// text (the password is not sent to a server that declines TLS).
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_modes_verify_what_they_promise_and_name_each_failure() {
    let pg = PgTarget::create();
    let (ca, other_ca, expired_url) = tls_env();
    // `localhost` may resolve to ::1 as well.
    let srv = Server::start_with(
        Backend::Sqlite,
        &["--egress-allow", "127.0.0.0/8", "--egress-allow", "::1/128"],
    )
    .await;
    let cred = db_cred(&srv, "pg-tls", &pg.role, &pg.password).await;
    let try_mode = |name: &'static str, host: &str, sslmode: &str, ca_pem: Option<&str>| {
        let mut cfg = json!({"host": host, "port": pg.port, "database": pg.db, "sslmode": sslmode});
        if let Some(p) = ca_pem {
            cfg["ca_pem"] = json!(p);
        }
        let (srv, cred) = (&srv, cred.clone());
        async move {
            let c = connection(srv, name, "postgres", cfg, Some(&cred)).await;
            test_conn(srv, &c, json!({})).await
        }
    };
    // The name and the chain hold: in.
    assert_passed(&try_mode("full-ok", "localhost", "verify-full", Some(&ca)).await);
    // The certificate names localhost only: dialled as 127.0.0.1, verify-full refuses it and
    // verify-ca (chain only) takes it.
    let r = try_mode("full-ip", "127.0.0.1", "verify-full", Some(&ca)).await;
    assert_failed(&r, "tls_name_mismatch");
    assert!(st(&r["error"]["message"]).contains("127.0.0.1"), "{r}");
    assert_passed(&try_mode("ca-ip", "127.0.0.1", "verify-ca", Some(&ca)).await);
    // Another CA: untrusted, whether asked by verify-ca, verify-full or require with ca_pem.
    assert_failed(
        &try_mode("ca-other", "127.0.0.1", "verify-ca", Some(&other_ca)).await,
        "tls_untrusted",
    );
    assert_failed(
        &try_mode("full-other", "localhost", "verify-full", Some(&other_ca)).await,
        "tls_untrusted",
    );
    assert_failed(
        &try_mode("req-other", "127.0.0.1", "require", Some(&other_ca)).await,
        "tls_untrusted",
    );
    // No ca_pem: the server's trust store, which does not hold the test CA.
    assert_failed(
        &try_mode("full-system", "localhost", "verify-full", None).await,
        "tls_untrusted",
    );
    // require without a CA: encrypted, unverified (libpq's meaning); disable and prefer log in.
    for mode in ["require", "prefer", "disable"] {
        assert_passed(&try_mode(mode, "127.0.0.1", mode, None).await);
    }

    // A TLS-only server whose certificate expired.
    let rest = expired_url.strip_prefix("postgres://").unwrap();
    let (auth, rest) = rest.rsplit_once('@').unwrap();
    let (user, pass) = auth.split_once(':').unwrap();
    let port: u16 = rest.split(['/', ':']).nth(1).unwrap().parse().unwrap();
    let old = db_cred(&srv, "pg-expired", user, pass).await;
    let expired = |name: &'static str, sslmode: &str| {
        let cfg = json!({"host": "localhost", "port": port, "database": "postgres", "sslmode": sslmode, "ca_pem": ca});
        let (srv, old) = (&srv, old.clone());
        async move {
            let c = connection(srv, name, "postgres", cfg, Some(&old)).await;
            test_conn(srv, &c, json!({})).await
        }
    };
    assert_failed(&expired("exp-full", "verify-full").await, "tls_expired");
    assert_failed(&expired("exp-ca", "verify-ca").await, "tls_expired");
    // Plain text is refused by that server (hostssl only): the failure says so.
    let r = expired("exp-plain", "disable").await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(st(&r["error"]["message"]).contains("no encryption"), "{r}");

    // A server that declines TLS (answers `N`, then asks for the password in clear text and
    // echoes it): require fails with `tls` before any password is sent; prefer falls back to
    // plain text, where the clear-text request is refused (`unsupported`) and nothing is sent.
    // The control: a server that asks for an MD5 password over the same plain connection gets
    // an answer (and refuses it: auth_failed).
    let fake = Stub::start("127.0.0.1:0", Mode::PgEcho).await;
    let secret = format!("Tls-Pw-{}", random_hex(6));
    let plain = db_cred(&srv, "pg-fake", "loader", &secret).await;
    let to_fake = |name: &'static str, sslmode: &str| {
        let cfg = json!({"host": "127.0.0.1", "port": fake.port(), "database": "x", "sslmode": sslmode});
        let (srv, plain) = (&srv, plain.clone());
        async move {
            let c = connection(srv, name, "postgres", cfg, Some(&plain)).await;
            test_conn(srv, &c, json!({})).await
        }
    };
    let r = to_fake("fake-require", "verify-full").await;
    assert_failed(&r, "tls");
    assert!(st(&r["error"]["message"]).contains("does not offer TLS"), "{r}");
    let r = to_fake("fake-prefer", "prefer").await;
    assert_failed(&r, "unsupported");
    assert!(st(&r["error"]["message"]).contains("clear text"), "{r}");
    assert!(!r.to_string().contains(&secret), "{r}");
    let r = to_fake("fake-disable", "disable").await;
    assert_failed(&r, "unsupported");
    assert_eq!(fake.connections(), 3);
    let md5 = Stub::start("127.0.0.1:0", Mode::PgMd5).await;
    let c = connection(
        &srv,
        "fake-md5",
        "postgres",
        json!({"host": "127.0.0.1", "port": md5.port(), "database": "x", "sslmode": "prefer"}),
        Some(&plain),
    )
    .await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert_failed(&r, "auth_failed");
    assert!(
        st(&r["error"]["message"]).contains("password authentication failed"),
        "{r}"
    );
    assert!(
        !r.to_string().contains(&secret),
        "an MD5 answer is not the password: {r}"
    );
    for s in [&pg.password, &secret, &pass.to_owned()] {
        assert_no_secret("the server logs", &srv.logs(), s);
    }
}

async fn postgres_errors_echoing_the_password_are_scrubbed(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    // Behind TLS (require, unverified): the only way a clear-text password still goes out.
    let dir = common::TempDir::new();
    let pki = common::tls::pki(dir.path(), "pg-echo");
    let fake = Stub::start("127.0.0.1:0", Mode::PgEchoTls(common::tls::acceptor(&pki))).await;
    let secret = format!("Echo-Pw-{}!x", random_hex(6));
    let cred = db_cred(&srv, "pg-echo", "loader", &secret).await;
    let c = connection(
        &srv,
        "pg-echoing",
        "postgres",
        json!({"host": "127.0.0.1", "port": fake.port(), "database": "x", "sslmode": "require"}),
        Some(&cred),
    )
    .await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert_eq!(fake.connections(), 1, "the fake PostgreSQL was not reached");
    assert_failed(&r, "auth_failed");
    let msg = st(&r["error"]["message"]);
    assert!(msg.contains("password authentication failed"), "{r}");
    assert_no_secret("the result", &r.to_string(), &secret);
    let r = test_cred(&srv, &cred, json!({})).await;
    assert_failed(&r["results"][0], "auth_failed");
    assert_no_secret("the credential test", &r.to_string(), &secret);
    let got = srv.get(&format!("/v1/connections/{c}"), &srv.admin).await;
    assert_no_secret("the connection", &got.text, &secret);
    let list = srv.get("/v1/connections?limit=500", &srv.admin).await;
    assert_no_secret("the connection list", &list.text, &secret);
    let evs = audit(&srv, "connection.test").await;
    assert_eq!(evs.len(), 2, "{evs:#?}");
    assert_no_secret("the audit log", &serde_json::to_string(&evs).unwrap(), &secret);
    assert_no_secret("the server logs", &srv.logs(), &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_target_echoing_the_password_in_its_error_never_gets_it_out_on_every_backend() {
    each_backend!(postgres_errors_echoing_the_password_are_scrubbed);
}

/// A listener that accepts the connection and answers something that is not PostgreSQL was
/// reached: `connect_refused` ("nothing listens there") is wrong, `unexpected_response` ("the
/// target answered something unexpected") is right.
async fn a_postgres_test_against_something_else_is_not_called_refused(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    // An HTTP server where PostgreSQL was expected: it accepted the connection, so it was not
    // refused; it answered something that is not PostgreSQL.
    let web = Stub::start(
        "127.0.0.1:0",
        Mode::Raw(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\nconnection: close\r\n\r\nnot postgres"),
    )
    .await;
    let ssh = Stub::start("127.0.0.1:0", Mode::Raw(b"SSH-2.0-OpenSSH_9.6\r\n")).await;
    let cred = db_cred(&srv, "pg-misdirected", "loader", "pw-misdirected").await;
    for (name, stub) in [("pg-at-web", &web), ("pg-at-ssh", &ssh)] {
        let c = connection(
            &srv,
            name,
            "postgres",
            json!({"host": "127.0.0.1", "port": stub.port(), "database": "x"}),
            Some(&cred),
        )
        .await;
        let r = test_conn(&srv, &c, json!({})).await;
        assert!(stub.connections() >= 1, "{name}: not reached");
        assert_failed(&r, "unexpected_response");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_test_against_a_server_that_is_not_postgres_is_an_unexpected_response_on_every_backend() {
    each_backend!(a_postgres_test_against_something_else_is_not_called_refused);
}

// ------------------------------------------------------------------ 2. the HTTP tester

/// The stub API: checks a header key, a query key or basic auth; other paths answer fixed
/// statuses.
fn api(key: String, user: String, pass: String, redirect_to: String) -> Mode {
    http(move |r: &Req| {
        let basic = format!("Basic {}", b64(format!("{user}:{pass}").as_bytes()));
        let authorized = match r.path() {
            "/v1/header" | "/v1/nested/header" => r.header("x-api-key") == Some(key.as_str()),
            "/v1/query" => r.query().split('&').any(|kv| kv == format!("api_key={key}")),
            "/v1/basic" => r.header("authorization") == Some(basic.as_str()),
            _ => true,
        };
        if !authorized {
            return Reply::new(401).header("www-authenticate", "Basic realm=\"stub\"");
        }
        match (r.method.as_str(), r.path()) {
            (_, "/v1/header" | "/v1/nested/header" | "/v1/query" | "/v1/basic") => {
                Reply::new(200).body("{\"ok\":true}")
            }
            (_, "/v1/created") => Reply::new(201),
            (_, "/v1/empty") => Reply::new(204),
            (_, "/v1/forbidden") => Reply::new(403),
            (_, "/v1/teapot") => Reply::new(418),
            (_, "/v1/redirect") => Reply::new(302).header("location", &redirect_to),
            ("HEAD", "/v1/head-only") => Reply::new(200),
            (_, "/v1/head-only") => Reply::new(405),
            ("POST", "/v1/post-only") => Reply::new(200),
            (_, "/v1/post-only") => Reply::new(405),
            _ => Reply::new(404),
        }
    })
}

async fn http_tester_checks_keys_statuses_and_redirects(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let key = format!("key-{}", random_hex(10));
    let pass = format!("pw-{}", random_hex(10));
    let elsewhere = Trap::start().await;
    let target = Stub::start(
        "127.0.0.1:0",
        api(
            key.clone(),
            "svc-user".into(),
            pass.clone(),
            format!("{}/landing", elsewhere.v4.url()),
        ),
    )
    .await;
    let base = target.url();

    // api_key in a header.
    let good = header_key_cred(&srv, "api-good", "X-Api-Key", &key).await;
    let c = http_conn(&srv, "http-header", &base, json!({"check_path": "/v1/header"}), &good).await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert_passed(&r);
    assert_eq!(r["connection_name"], "http-header");
    assert_eq!(r["credential_id"], good.as_str());
    assert_eq!(r["version"], 1);
    let last = target.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.path()), ("GET", "/v1/header"), "{last:?}");
    assert_eq!(last.header("x-api-key"), Some(key.as_str()), "{last:?}");
    assert_eq!(
        srv.get(&format!("/v1/connections/{c}"), &srv.admin).await.ok(200)["last_test"]["ok"],
        true
    );
    // A base URL with a path and a relative check path.
    let c = http_conn(
        &srv,
        "http-nested",
        &format!("{base}/v1/"),
        json!({"check_path": "nested/header"}),
        &good,
    )
    .await;
    assert_passed(&test_conn(&srv, &c, json!({})).await);
    assert_eq!(target.requests().pop().unwrap().path(), "/v1/nested/header");

    // A wrong key: auth_failed.
    let bad = header_key_cred(&srv, "api-bad", "X-Api-Key", "not-the-key").await;
    let c = http_conn(
        &srv,
        "http-header-bad",
        &base,
        json!({"check_path": "/v1/header"}),
        &bad,
    )
    .await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert_failed(&r, "auth_failed");
    assert_no_secret("the result", &r.to_string(), "not-the-key");
    let lt = srv.get(&format!("/v1/connections/{c}"), &srv.admin).await.ok(200)["last_test"].clone();
    assert_eq!(
        (lt["ok"].clone(), lt["error_code"].clone()),
        (json!(false), json!("auth_failed")),
        "{lt}"
    );

    // api_key in the query.
    let q = api_key_cred(
        &srv,
        "api-query",
        json!([{"name": "api_key", "value": key, "in": "query"}]),
    )
    .await;
    let c = http_conn(&srv, "http-query", &base, json!({"check_path": "/v1/query"}), &q).await;
    assert_passed(&test_conn(&srv, &c, json!({})).await);
    let last = target.requests().pop().unwrap();
    assert_eq!(last.query(), format!("api_key={key}"), "{last:?}");
    assert_eq!(last.header("x-api-key"), None, "{last:?}");
    let qbad = api_key_cred(
        &srv,
        "api-query-bad",
        json!([{"name": "api_key", "value": "nope-nope", "in": "query"}]),
    )
    .await;
    let c = http_conn(&srv, "http-query-bad", &base, json!({"check_path": "/v1/query"}), &qbad).await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "auth_failed");

    // Basic auth from a password credential.
    let basic = basic_cred(&srv, "basic-good", "svc-user", &pass).await;
    let c = http_conn(&srv, "http-basic", &base, json!({"check_path": "/v1/basic"}), &basic).await;
    assert_passed(&test_conn(&srv, &c, json!({})).await);
    let basic_bad = basic_cred(&srv, "basic-bad", "svc-user", "wrong-pass").await;
    let c = http_conn(
        &srv,
        "http-basic-bad",
        &base,
        json!({"check_path": "/v1/basic"}),
        &basic_bad,
    )
    .await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "auth_failed");

    // Status mapping and expected_status.
    let cases = [
        (json!({"check_path": "/v1/created", "expected_status": 201}), ""),
        (json!({"check_path": "/v1/empty", "expected_status": 204}), ""),
        (json!({"check_path": "/v1/created"}), "unexpected_response"),
        (
            json!({"check_path": "/v1/header", "expected_status": 204}),
            "unexpected_response",
        ),
        (json!({"check_path": "/v1/teapot"}), "unexpected_response"),
        (json!({"check_path": "/v1/forbidden"}), "permission_denied"),
        (json!({"check_path": "/v1/nothing-here"}), "not_found"),
        (json!({"check_path": "/v1/head-only", "check_method": "HEAD"}), ""),
        (json!({"check_path": "/v1/head-only"}), "unexpected_response"),
        (json!({"check_path": "/v1/post-only", "check_method": "POST"}), ""),
        (
            json!({"check_path": "/v1/post-only", "check_method": "GET"}),
            "unexpected_response",
        ),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        let c = http_conn(&srv, &format!("http-status-{i}"), &base, extra.clone(), &good).await;
        let r = test_conn(&srv, &c, json!({})).await;
        if want.is_empty() {
            assert_passed(&r);
        } else {
            assert_failed(&r, want);
        }
        eprintln!("{extra} -> {}", code(&r));
    }
    let methods: Vec<String> = target.requests().iter().map(|r| r.method.clone()).collect();
    assert!(
        methods.iter().any(|m| m == "HEAD") && methods.iter().any(|m| m == "POST"),
        "{methods:?}"
    );

    // A redirect is not followed: 302 is not 200, and the redirect target is never contacted,
    // even when 302 is what was expected.
    let c = http_conn(
        &srv,
        "http-redirect",
        &base,
        json!({"check_path": "/v1/redirect"}),
        &good,
    )
    .await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "unexpected_response");
    let c = http_conn(
        &srv,
        "http-redirect-expected",
        &base,
        json!({"check_path": "/v1/redirect", "expected_status": 302}),
        &good,
    )
    .await;
    assert_passed(&test_conn(&srv, &c, json!({})).await);
    assert_eq!(elsewhere.hits().await, 0, "a redirect was followed");

    // Nothing listens: connect_refused. Something that is not HTTP: unexpected_response.
    let port = closed_port().await;
    let c = http_conn(
        &srv,
        "http-closed",
        &format!("http://127.0.0.1:{port}"),
        json!({}),
        &good,
    )
    .await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "connect_refused");
    let ssh = Stub::start("127.0.0.1:0", Mode::Raw(b"SSH-2.0-OpenSSH_9.6\r\n")).await;
    let c = http_conn(&srv, "http-not-http", &ssh.url(), json!({}), &good).await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert_eq!(ssh.connections(), 1);
    assert_failed(&r, "unexpected_response");

    // Audit: every test is there, success or error, with its code.
    let evs: Vec<Value> = audit(&srv, "connection.test")
        .await
        .into_iter()
        .filter(|e| e["outcome"] != "denied")
        .collect();
    assert_eq!(evs.len(), 22, "{evs:#?}");
    assert!(
        evs.iter()
            .all(|e| (e["outcome"] == "success") == (e["details"]["ok"] == true))
    );
    let codes: Vec<String> = evs
        .iter()
        .filter_map(|e| e["details"]["error_code"].as_str().map(str::to_owned))
        .collect();
    for want in [
        "auth_failed",
        "permission_denied",
        "not_found",
        "unexpected_response",
        "connect_refused",
    ] {
        assert!(codes.iter().any(|c| c == want), "{want} missing from {codes:?}");
    }
    let text = serde_json::to_string(&evs).unwrap();
    for secret in [&key, &pass] {
        assert_no_secret("the audit log", &text, secret);
        assert_no_secret("the server logs", &srv.logs(), secret);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_tester_sends_keys_checks_statuses_and_never_follows_redirects_on_every_backend() {
    each_backend!(http_tester_checks_keys_statuses_and_redirects);
}

async fn http_targets_echoing_the_secret_never_get_it_out(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let key = format!("EchoKey-{}", random_hex(10));
    let pass = format!("EchoPass-{}", random_hex(10));
    // Echoes every header and the query back in the body, in headers, in the reason phrase and
    // in the Location of a redirect, with an error status.
    let echo = Stub::start(
        "127.0.0.1:0",
        http(|r: &Req| {
            let all = format!(
                "{} {} {}",
                r.target,
                r.headers
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
                r.header("authorization").unwrap_or_default()
            );
            let flat = all.replace(['\r', '\n'], " ");
            let status = match r.path() {
                "/unauthorized" => 401,
                "/redirect" => 302,
                "/forbidden" => 403,
                _ => 500,
            };
            Reply::new(status)
                .reason(&format!("Echo {flat}"))
                .header("x-echo", &flat)
                .header("www-authenticate", &format!("Basic realm=\"{flat}\""))
                .header("location", &format!("http://127.0.0.1:1/?{flat}"))
                .body(&format!("{{\"error\":\"bad key\",\"you_sent\":\"{flat}\"}}"))
        }),
    )
    .await;
    let base = echo.url();
    let header = header_key_cred(&srv, "echo-header", "X-Api-Key", &key).await;
    let query = api_key_cred(
        &srv,
        "echo-query",
        json!([{"name": "token", "value": key, "in": "query"}]),
    )
    .await;
    let basic = basic_cred(&srv, "echo-basic", "echo-user", &pass).await;
    let mut conns = Vec::new();
    for (cred, tag) in [(&header, "h"), (&query, "q"), (&basic, "b")] {
        for (path, want) in [
            ("/unauthorized", "auth_failed"),
            ("/redirect", "unexpected_response"),
            ("/forbidden", "permission_denied"),
            ("/error", "unexpected_response"),
        ] {
            let name = format!("echo-{tag}{}", path.replace('/', "-"));
            let c = http_conn(&srv, &name, &base, json!({"check_path": path}), cred).await;
            let r = test_conn(&srv, &c, json!({})).await;
            assert_failed(&r, want);
            for s in [&key, &pass] {
                assert_no_secret(&format!("the result of {name}"), &r.to_string(), s);
            }
            conns.push(c);
        }
    }
    assert_eq!(echo.connections(), 12, "every test reached the echoing target");
    // Each credential over its connections.
    for cred in [&header, &query, &basic] {
        let r = test_cred(&srv, cred, json!({})).await;
        assert_eq!(r["results"].as_array().unwrap().len(), 4, "{r}");
        for s in [&key, &pass] {
            assert_no_secret("a credential test", &r.to_string(), s);
        }
    }
    let basic_b64 = b64(format!("echo-user:{pass}").as_bytes());
    let mut hay = Vec::new();
    for c in &conns {
        hay.push(srv.get(&format!("/v1/connections/{c}"), &srv.admin).await.text);
    }
    hay.push(srv.get("/v1/connections?limit=500", &srv.admin).await.text);
    hay.push(serde_json::to_string(&audit(&srv, "connection.test").await).unwrap());
    hay.push(srv.logs());
    for h in &hay {
        for s in [&key, &pass] {
            assert_no_secret("a connection, the audit log or the logs", h, s);
        }
        assert!(!h.contains(&basic_b64), "the basic-auth header leaked:\n{h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_target_echoing_the_secret_never_gets_it_into_results_connections_audit_or_logs_on_every_backend() {
    each_backend!(http_targets_echoing_the_secret_never_get_it_out);
}

async fn names_that_do_not_resolve_and_tls_failures_have_their_codes(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let key = header_key_cred(&srv, "misc-key", "X-Api-Key", "misc-key-value").await;
    let db = db_cred(&srv, "misc-db", "loader", "misc-db-pw").await;
    // A name that does not resolve: dns.
    let c = http_conn(&srv, "http-nxdomain", "http://no-such-host.invalid/", json!({}), &key).await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "dns");
    let c = connection(
        &srv,
        "pg-nxdomain",
        "postgres",
        json!({"host": "no-such-host.invalid", "database": "x"}),
        Some(&db),
    )
    .await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "dns");
    // https to a server that speaks plain HTTP: the handshake fails.
    let plain = Stub::start("127.0.0.1:0", http(|_| Reply::new(200))).await;
    let c = http_conn(
        &srv,
        "https-to-plain",
        &format!("https://127.0.0.1:{}/", plain.port()),
        json!({}),
        &key,
    )
    .await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert!(plain.connections() >= 1);
    assert_failed(&r, "tls");

    // An OAuth credential: its access token as a bearer token; none yet is unsupported.
    let token = format!("at-{}", random_hex(8));
    let want = format!("Bearer {token}");
    let api = Stub::start(
        "127.0.0.1:0",
        http(move |r: &Req| {
            Reply::new(if r.header("authorization") == Some(want.as_str()) {
                200
            } else {
                401
            })
        }),
    )
    .await;
    let oauth = |name: &str, access_token: Option<&str>| {
        let mut fields = json!({"client_id": "client-1", "client_secret": "oauth-client-secret",
                                "token_url": "https://auth.example.invalid/token"});
        if let Some(t) = access_token {
            fields["access_token"] = json!(t);
        }
        json!({"name": name, "type": "oauth", "variant": "client_credentials", "workspace_id": srv.ws_id,
               "environment": "prod", "fields": fields})
    };
    for (name, at, want) in [
        ("oauth-good", Some(token.as_str()), ""),
        ("oauth-stale", Some("at-stale"), "auth_failed"),
        ("oauth-none", None, "unsupported"),
    ] {
        let cred = credential(&srv, oauth(name, at)).await;
        let c = http_conn(&srv, &format!("http-{name}"), &api.url(), json!({}), &cred).await;
        let r = test_conn(&srv, &c, json!({})).await;
        if want.is_empty() {
            assert_passed(&r);
        } else {
            assert_failed(&r, want);
        }
        assert_no_secret("the result", &r.to_string(), "oauth-client-secret");
    }
    assert_eq!(
        api.connections(),
        2,
        "a credential without an access token must not connect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_names_answer_dns_failed_handshakes_tls_and_oauth_tokens_go_as_bearer_on_every_backend() {
    each_backend!(names_that_do_not_resolve_and_tls_failures_have_their_codes);
}

async fn silent_targets_time_out(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let silent = Stub::start("127.0.0.1:0", Mode::Silent).await;
    let key = header_key_cred(&srv, "silent-key", "X-Api-Key", "silent-key-value").await;
    let db = db_cred(&srv, "silent-db", "loader", "silent-pw").await;
    let h = http_conn(&srv, "http-silent", &silent.url(), json!({}), &key).await;
    let p = connection(
        &srv,
        "pg-silent",
        "postgres",
        json!({"host": "127.0.0.1", "port": silent.port(), "database": "x"}),
        Some(&db),
    )
    .await;
    let started = std::time::Instant::now();
    let (rh, rp) = tokio::join!(test_conn(&srv, &h, json!({})), test_conn(&srv, &p, json!({})));
    assert_failed(&rh, "timeout");
    assert_failed(&rp, "timeout");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    assert_eq!(silent.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_accepts_and_never_answers_times_out_on_every_backend() {
    each_backend!(silent_targets_time_out);
}

// --------------------------------------------------- permissions, refusals, unsupported kinds

async fn only_credential_attach_holders_may_test(b: Backend) {
    let srv = Server::start(b).await;
    let key = header_key_cred(&srv, "perm-key", "X-Api-Key", "perm-key-value").await;
    let c = http_conn(&srv, "perm-conn", "http://10.1.2.3/", json!({}), &key).await;
    for role in TESTERS {
        let t = if role == "admin" {
            srv.admin.clone()
        } else {
            srv.user_with_role(role).await
        };
        let r = srv
            .post(&format!("/v1/connections/{c}/test"), &t, json!({}))
            .await
            .ok(200);
        assert_failed(&r, "egress_denied");
        let r = srv
            .post(&format!("/v1/credentials/{key}/test"), &t, json!({}))
            .await
            .ok(200);
        assert_failed(&r["results"][0], "egress_denied");
    }
    for role in NON_TESTERS {
        let t = srv.user_with_role(role).await;
        srv.post(&format!("/v1/connections/{c}/test"), &t, json!({}))
            .await
            .problem(403, "forbidden");
        srv.post(&format!("/v1/credentials/{key}/test"), &t, json!({}))
            .await
            .problem(403, "forbidden");
    }
    // Exactly the six permitted tests were recorded.
    assert_eq!(test_events(&srv, &c).await.len(), 6);
    // No credential: 409. Unknown IDs: 404.
    let bare = connection(&srv, "perm-bare", "http", json!({"base_url": "http://10.1.2.3/"}), None).await;
    srv.post(&format!("/v1/connections/{bare}/test"), &srv.admin, json!({}))
        .await
        .problem(409, "no_credential");
    let r = srv
        .post(
            "/v1/connections/conn_aaaaaaaaaaaaaaaaaaaaaaaaaa/test",
            &srv.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = srv
        .post(
            "/v1/credentials/cred_aaaaaaaaaaaaaaaaaaaaaaaaaa/test",
            &srv.admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // Unknown body fields are refused.
    let r = srv
        .post(&format!("/v1/connections/{c}/test"), &srv.admin, json!({"versoin": 1}))
        .await;
    assert!(matches!(r.status, 400 | 422), "{} {}", r.status, r.text);
    // A credential nothing uses: not ok, no results.
    let lonely = header_key_cred(&srv, "perm-lonely", "X-Api-Key", "lonely-value").await;
    let r = test_cred(&srv, &lonely, json!({})).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["results"], json!([]), "{r}");
    assert_eq!(r["version"], 1, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_credential_attach_holders_may_test_and_refusals_have_their_codes_on_every_backend() {
    each_backend!(only_credential_attach_holders_may_test);
}

/// Outside a scope everything is 404 (ARCHITECTURE.md): a builder of one workspace testing an
/// organization-wide credential may test the connections of its own workspaces only — never
/// see, test, stamp `last_test` on or write audit events about another workspace's.
async fn a_credential_test_stays_inside_the_callers_workspaces(b: Backend) {
    let srv = Server::start(b).await;
    let org = srv.org_id.clone();
    let ws = srv.ws_id.clone();
    let ws2 = id(&srv
        .post("/v1/workspaces", &srv.admin, json!({"org_id": org, "name": "team-b"}))
        .await
        .ok(201));
    // An organization-wide credential used by a connection in each workspace.
    let shared = credential(
        &srv,
        json!({"name": "shared-api", "type": "api_key", "org_id": org, "environment": "prod",
               "fields": {"parts": [{"name": "X-Api-Key", "value": "shared-key-value", "in": "header"}]}}),
    )
    .await;
    let mine = connection(
        &srv,
        "team-a-api",
        "http",
        json!({"base_url": "http://10.1.2.3/"}),
        Some(&shared),
    )
    .await;
    let mut theirs_body = conn_body(
        &srv,
        "team-b-secret-api",
        "http",
        json!({"base_url": "http://10.9.8.7/"}),
        Some(&shared),
    );
    theirs_body["workspace_id"] = json!(ws2);
    let theirs = id(&srv.post("/v1/connections", &srv.admin, theirs_body).await.ok(201));
    // A builder of the default workspace only.
    let (_, builder) = srv
        .principal(&org, "user", "builder-a", &[("builder", common::Scope::Ws(&ws))])
        .await;
    srv.post(&format!("/v1/connections/{theirs}/test"), &builder, json!({}))
        .await
        .problem(404, "not_found");
    srv.post(&format!("/v1/connections/{mine}/test"), &builder, json!({}))
        .await
        .ok(200);
    // Testing the credential must not reach into team-b: not its result, not its name, not its
    // last_test, not an audit event on it.
    let r = srv
        .post(&format!("/v1/credentials/{shared}/test"), &builder, json!({}))
        .await;
    let text = r.text.clone();
    assert!(
        !text.contains(&theirs) && !text.contains("team-b-secret-api") && !text.contains(&ws2),
        "POST /v1/credentials/{{id}}/test by a builder of one workspace tested and showed a connection of another workspace: {text}"
    );
    if r.status == 200 {
        let ids: Vec<String> = r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| st(&x["connection_id"]))
            .collect();
        assert_eq!(ids, vec![mine.clone()], "{text}");
    }
    let got = srv.get(&format!("/v1/connections/{theirs}"), &srv.admin).await.ok(200);
    assert!(
        got["last_test"].is_null(),
        "a builder of another workspace changed this connection's last_test: {got}"
    );
    assert!(
        test_events(&srv, &theirs).await.is_empty(),
        "tests ran on team-b's connection"
    );
    // The admin tests both.
    let r = test_cred(&srv, &shared, json!({})).await;
    assert_eq!(r["results"].as_array().unwrap().len(), 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_a_shared_credential_only_tests_connections_in_the_callers_workspaces_on_every_backend() {
    each_backend!(a_credential_test_stays_inside_the_callers_workspaces);
}

async fn unsupported_kinds_answer_unsupported_without_connecting(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let trap = Trap::start().await;
    let p = trap.port();
    let db = db_cred(&srv, "unsup-db", "loader", "unsup-db-pw").await;
    let pw = basic_cred(&srv, "unsup-pw", "loader", "unsup-pw-value").await;
    let aws = credential(
        &srv,
        json!({"name": "unsup-aws", "type": "aws", "variant": "access_key", "workspace_id": srv.ws_id, "environment": "prod",
               "fields": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "not-a-real-key"}}),
    )
    .await;
    let host = |extra: Value| {
        let mut c = json!({"host": "127.0.0.1", "port": p});
        if let (Value::Object(m), Value::Object(e)) = (&mut c, extra) {
            m.extend(e);
        }
        c
    };
    // Kinds with no tester in this build (mysql, ftp, ldap, s3 and redshift-with-aws have
    // their own suites now).
    let _ = (&pw, &aws);
    let cases = [
        ("sqlserver", host(json!({"database": "x"})), &db),
        ("oracle", host(json!({"service_name": "ORCL"})), &db),
        ("snowflake", json!({"account": "acme-prod"}), &db),
    ];
    for (i, (kind, config, cred)) in cases.into_iter().enumerate() {
        let c = connection(&srv, &format!("unsup-{i}-{kind}"), kind, config, Some(cred)).await;
        let r = test_conn(&srv, &c, json!({})).await;
        assert_failed(&r, "unsupported");
        if kind == "oracle" {
            assert!(st(&r["error"]["message"]).contains("pure-Rust"), "{r}");
        }
    }
    assert_eq!(trap.hits().await, 0, "an unsupported test opened a connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_without_a_tester_answer_unsupported_and_never_connect_on_every_backend() {
    each_backend!(unsupported_kinds_answer_unsupported_without_connecting);
}

// ------------------------------------------------------------------ 3. the SSRF suite

/// One hostile destination.
struct Target {
    label: String,
    kind: &'static str,
    config: Value,
    /// Codes that count as refused (never `ok`).
    accept: &'static [&'static str],
    /// Whether refusing the connection at creation (422) is also a correct refusal.
    input_may_refuse: bool,
}

const DENIED: &[&str] = &["egress_denied"];
/// For names that may not resolve here (no internet, no resolver entry).
const DENIED_OR_DNS: &[&str] = &["egress_denied", "dns"];

fn http_target(label: &str, url: &str, accept: &'static [&'static str]) -> Target {
    Target {
        label: label.to_owned(),
        kind: "http",
        config: json!({"base_url": url}),
        accept,
        input_may_refuse: false,
    }
}

fn pg_target(label: &str, host: &str, port: u16, accept: &'static [&'static str]) -> Target {
    Target {
        label: label.to_owned(),
        kind: "postgres",
        config: json!({"host": host, "port": port, "database": "postgres"}),
        accept,
        input_may_refuse: false,
    }
}

/// Names in /etc/hosts that point at loopback (127.x or ::1), with whether they are IPv6.
fn loopback_names_in_etc_hosts() -> Vec<(String, bool)> {
    let text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut out: Vec<(String, bool)> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(ip) = words.next() else { continue };
        let v6 = ip == "::1";
        if !(ip.starts_with("127.") || v6) {
            continue;
        }
        for name in words {
            let ok = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if ok && !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                out.push((name.to_owned(), v6));
            }
        }
    }
    out
}

/// The hostile targets, pointed at the trap's ports where they would land on this host.
fn hostile_targets(trap: &Trap) -> Vec<Target> {
    let p = trap.port();
    let q = trap.port6();
    let mut t = vec![
        // Loopback in every spelling.
        http_target("loopback", &format!("http://127.0.0.1:{p}/"), DENIED),
        http_target("localhost", &format!("http://localhost:{p}/"), DENIED),
        http_target("ipv6 loopback", &format!("http://[::1]:{q}/"), DENIED),
        http_target("ipv6 loopback, long", &format!("http://[0:0:0:0:0:0:0:1]:{q}/"), DENIED),
        http_target("ipv6 unspecified", &format!("http://[::]:{q}/"), DENIED),
        http_target("this network", &format!("http://0.0.0.0:{p}/"), DENIED),
        http_target("zero", &format!("http://0:{p}/"), DENIED),
        http_target("short form", &format!("http://127.1:{p}/"), DENIED),
        http_target("short form 3", &format!("http://127.0.1:{p}/"), DENIED),
        http_target("decimal", &format!("http://2130706433:{p}/"), DENIED),
        http_target("hex", &format!("http://0x7f000001:{p}/"), DENIED),
        http_target("hex dotted", &format!("http://0x7f.0x0.0x0.0x1:{p}/"), DENIED),
        http_target("hex short", &format!("http://0x7f.1:{p}/"), DENIED),
        http_target("octal dotted", &format!("http://0177.0.0.1:{p}/"), DENIED),
        http_target("octal", &format!("http://017700000001:{p}/"), DENIED),
        http_target("trailing dot ip", &format!("http://127.0.0.1.:{p}/"), DENIED),
        http_target("other loopback", &format!("http://127.0.0.2:{p}/"), DENIED),
        http_target("top of loopback", &format!("http://127.255.255.254:{p}/"), DENIED),
        http_target("percent-encoded ip", &format!("http://%31%32%37.0.0.1:{p}/"), DENIED),
        http_target("percent-encoded name", &format!("http://loc%61lhost:{p}/"), DENIED),
        http_target("upper case", &format!("HTTP://LOCALHOST:{p}/"), DENIED),
        http_target("mixed case", &format!("hTtP://LocalHost:{p}/"), DENIED),
        http_target("trailing dot name", &format!("http://localhost.:{p}/"), DENIED_OR_DNS),
        http_target(
            "localhost.localdomain",
            &format!("http://localhost.localdomain:{p}/"),
            DENIED_OR_DNS,
        ),
        http_target("https loopback", &format!("https://127.0.0.1:{p}/"), DENIED),
        // IPv6 spellings of IPv4 loopback.
        http_target("ipv4-mapped", &format!("http://[::ffff:127.0.0.1]:{p}/"), DENIED),
        http_target("ipv4-mapped hex", &format!("http://[::ffff:7f00:1]:{p}/"), DENIED),
        http_target(
            "ipv4-mapped long",
            &format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/"),
            DENIED,
        ),
        http_target(
            "ipv4-mapped this network",
            &format!("http://[::ffff:0.0.0.0]:{p}/"),
            DENIED,
        ),
        http_target("nat64", &format!("http://[64:ff9b::7f00:1]:{p}/"), DENIED),
        http_target("nat64 dotted", &format!("http://[64:ff9b::127.0.0.1]:{p}/"), DENIED),
        http_target("6to4", &format!("http://[2002:7f00:1::]:{p}/"), DENIED),
        http_target("ipv4-compatible", &format!("http://[::127.0.0.1]:{p}/"), DENIED),
        http_target("ipv4-compatible hex", &format!("http://[::7f00:1]:{p}/"), DENIED),
        http_target("ipv4-compatible tiny", &format!("http://[::2]:{p}/"), DENIED),
        // Cloud metadata.
        http_target("aws metadata", "http://169.254.169.254/latest/meta-data/", DENIED),
        http_target("aws metadata decimal", "http://2852039166/latest/meta-data/", DENIED),
        http_target(
            "aws metadata octal",
            "http://0251.0376.0251.0376/latest/meta-data/",
            DENIED,
        ),
        http_target("aws metadata hex", "http://0xa9fea9fe/latest/meta-data/", DENIED),
        http_target(
            "aws metadata mapped",
            "http://[::ffff:169.254.169.254]/latest/meta-data/",
            DENIED,
        ),
        http_target(
            "aws metadata mapped hex",
            "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
            DENIED,
        ),
        http_target(
            "aws metadata nat64",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            DENIED,
        ),
        http_target(
            "aws metadata 6to4",
            "http://[2002:a9fe:a9fe::]/latest/meta-data/",
            DENIED,
        ),
        http_target(
            "aws metadata compatible",
            "http://[::169.254.169.254]/latest/meta-data/",
            DENIED,
        ),
        http_target("aws metadata ipv6", "http://[fd00:ec2::254]/latest/meta-data/", DENIED),
        http_target(
            "gcp metadata",
            "http://metadata.google.internal/computeMetadata/v1/",
            DENIED_OR_DNS,
        ),
        http_target(
            "gcp metadata short",
            "http://metadata/computeMetadata/v1/",
            DENIED_OR_DNS,
        ),
        http_target("alibaba metadata", "http://100.100.100.200/latest/meta-data/", DENIED),
        http_target("link-local", "http://169.254.0.1/", DENIED),
        // Private, CGNAT, multicast, reserved.
        http_target("10/8", "http://10.0.0.1/", DENIED),
        http_target("10/8 top", "http://10.255.255.255/", DENIED),
        http_target("172.16/12", "http://172.16.0.1/", DENIED),
        http_target("172.16/12 top", "http://172.31.255.255/", DENIED),
        http_target("192.168/16", "http://192.168.0.1/", DENIED),
        http_target("cgnat", "http://100.64.0.1/", DENIED),
        http_target("cgnat top", "http://100.127.255.254/", DENIED),
        http_target("ietf protocol", "http://192.0.0.1/", DENIED),
        http_target("benchmarking", "http://198.18.0.1/", DENIED),
        http_target("multicast", "http://224.0.0.1/", DENIED),
        http_target("reserved", "http://240.0.0.1/", DENIED),
        http_target("broadcast", "http://255.255.255.255/", DENIED),
        http_target("this network, not zero", "http://0.1.2.3/", DENIED),
        http_target("ipv6 link-local", "http://[fe80::1]/", DENIED),
        http_target("ipv6 ula", "http://[fc00::1]/", DENIED),
        http_target("ipv6 ula fd", "http://[fd00::2]/", DENIED),
        http_target("ipv6 site-local", "http://[fec0::1]/", DENIED),
        http_target("ipv6 multicast", "http://[ff02::1]/", DENIED),
        // Parser tricks.
        Target {
            input_may_refuse: true,
            ..http_target("user-info", &format!("http://evil.com@127.0.0.1:{p}/"), DENIED)
        },
        Target {
            input_may_refuse: true,
            ..http_target(
                "user-info with password",
                &format!("http://evil.com:x@127.0.0.1:{p}/"),
                DENIED,
            )
        },
        http_target(
            "fragment user-info",
            &format!("http://127.0.0.1:{p}#@evil.com/"),
            DENIED,
        ),
        http_target("query user-info", &format!("http://127.0.0.1:{p}?@evil.com/"), DENIED),
    ];
    // The check path can carry its own authority: it must be checked like the base URL.
    for (label, path, accept) in [
        ("check_path absolute", format!("http://127.0.0.1:{p}/admin"), DENIED),
        ("check_path scheme-relative", format!("//127.0.0.1:{p}/admin"), DENIED),
        ("check_path scheme-relative v6", format!("//[::1]:{q}/admin"), DENIED),
        (
            "check_path to metadata",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            DENIED,
        ),
        ("check_path localhost", format!("//localhost:{p}/"), DENIED),
        ("check_path file scheme", "file:///etc/passwd".to_owned(), DENIED),
        ("check_path gopher scheme", format!("gopher://127.0.0.1:{p}/_x"), DENIED),
    ] {
        t.push(Target {
            label: label.to_owned(),
            kind: "http",
            config: json!({"base_url": "http://api.example.invalid/", "check_path": path}),
            accept,
            // A check path that leaves the base URL's host is refused when written.
            input_may_refuse: true,
        });
    }
    // Names this host resolves to loopback.
    for (name, v6) in loopback_names_in_etc_hosts() {
        let port = if v6 { q } else { p };
        t.push(http_target(
            &format!("/etc/hosts {name}"),
            &format!("http://{name}:{port}/"),
            DENIED,
        ));
        t.push(http_target(
            &format!("/etc/hosts {name} upper"),
            &format!("http://{}:{port}/", name.to_ascii_uppercase()),
            DENIED,
        ));
        t.push(http_target(
            &format!("/etc/hosts {name}."),
            &format!("http://{name}.:{port}/"),
            DENIED_OR_DNS,
        ));
        t.push(pg_target(&format!("pg /etc/hosts {name}"), &name, port, DENIED));
    }
    // PostgreSQL hosts.
    for (host, port, accept) in [
        ("127.0.0.1", p, DENIED),
        ("localhost", p, DENIED),
        ("LOCALHOST", p, DENIED),
        ("localhost.", p, DENIED_OR_DNS),
        ("::1", q, DENIED),
        ("[::1]", q, DENIED),
        ("::", q, DENIED),
        ("0.0.0.0", p, DENIED),
        ("127.1", p, DENIED),
        ("2130706433", p, DENIED),
        ("0x7f000001", p, DENIED),
        ("0177.0.0.1", p, DENIED),
        ("127.0.0.2", p, DENIED),
        ("::ffff:127.0.0.1", p, DENIED),
        ("::ffff:7f00:1", p, DENIED),
        ("64:ff9b::7f00:1", p, DENIED),
        ("2002:7f00:1::", p, DENIED),
        ("::127.0.0.1", p, DENIED),
        ("169.254.169.254", 5432, DENIED),
        ("10.0.0.1", 5432, DENIED),
        ("172.16.0.1", 5432, DENIED),
        ("192.168.0.1", 5432, DENIED),
        ("100.64.0.1", 5432, DENIED),
        ("fe80::1", 5432, DENIED),
        ("fc00::1", 5432, DENIED),
        ("metadata.google.internal", 5432, DENIED_OR_DNS),
    ] {
        t.push(pg_target(&format!("pg {host}"), host, port, accept));
    }
    t
}

async fn hostile_targets_are_refused_and_never_reached(b: Backend) {
    let srv = Server::start(b).await;
    let trap = Trap::start().await;
    let targets = hostile_targets(&trap);
    let key_value = format!("ssrf-key-{}", random_hex(8));
    let key = header_key_cred(&srv, "ssrf-key", "X-Api-Key", &key_value).await;
    let db = db_cred(&srv, "ssrf-db", "loader", "ssrf-db-pw").await;
    let mut failures = Vec::new();
    let mut refused_at_input = 0;
    let mut tested: Vec<(String, &Target)> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let cred = if t.kind == "http" { &key } else { &db };
        let body = conn_body(&srv, &format!("ssrf-{i:03}"), t.kind, t.config.clone(), Some(cred));
        let created = srv.post("/v1/connections", &srv.admin, body).await;
        if created.status != 201 {
            if t.input_may_refuse && created.status == 422 {
                refused_at_input += 1;
            } else {
                failures.push(format!(
                    "{}: creating {} answered {} {}",
                    t.label, t.config, created.status, created.text
                ));
            }
            continue;
        }
        let conn = created.id();
        let r = test_conn(&srv, &conn, json!({})).await;
        let c = code(&r);
        if c != "egress_denied" {
            eprintln!("{}: {c}", t.label);
        }
        if r["ok"] != false || !t.accept.contains(&c.as_str()) {
            failures.push(format!("{} ({}): expected {:?}, got {r}", t.label, t.config, t.accept));
        }
        if c == "egress_denied" && r["error"]["message"].as_str().is_none_or(str::is_empty) {
            failures.push(format!("{}: egress_denied without a message: {r}", t.label));
        }
        tested.push((conn, t));
    }
    let hits_after_each = trap.hits().await;

    // The same connections again, all at once, through the credential tests.
    let mut reruns = 0;
    for cred in [&key, &db] {
        let r = test_cred(&srv, cred, json!({})).await;
        assert_eq!(r["ok"], false, "{r}");
        for x in r["results"].as_array().unwrap() {
            reruns += 1;
            let Some((_, t)) = tested.iter().find(|(c, _)| x["connection_id"] == c.as_str()) else {
                failures.push(format!("a credential test result for an unknown connection: {x}"));
                continue;
            };
            if x["ok"] != false || !t.accept.contains(&code(x).as_str()) {
                failures.push(format!(
                    "{} (credential test): expected {:?}, got {x}",
                    t.label, t.accept
                ));
            }
        }
    }
    assert_eq!(reruns, tested.len());
    let hits = trap.hits().await;

    let http_count = targets.iter().filter(|t| t.kind == "http").count();
    let pg_count = targets.len() - http_count;
    eprintln!(
        "{} hostile targets ({http_count} http, {pg_count} postgres), {refused_at_input} refused at input, trap on ports {}/{} ({})",
        targets.len(),
        trap.port(),
        trap.port6(),
        if trap.v6.is_some() { "with ::1" } else { "no ::1" }
    );
    assert!(
        failures.is_empty(),
        "{} of {} hostile targets were not refused as they should be:\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );
    assert_eq!(hits_after_each, 0, "a hostile target was connected to");
    assert_eq!(hits, 0, "a hostile target was connected to (credential tests)");
    assert!(http_count >= 50, "only {http_count} http targets");
    assert!(pg_count >= 10, "only {pg_count} postgres targets");
    assert_eq!(trap.v4.requests().len(), 0);

    // last_test and the audit log say so.
    let (first, _) = &tested[0];
    let lt = srv.get(&format!("/v1/connections/{first}"), &srv.admin).await.ok(200)["last_test"].clone();
    assert_eq!(
        (lt["ok"].clone(), lt["error_code"].clone()),
        (json!(false), json!("egress_denied")),
        "{lt}"
    );
    let evs = audit(&srv, "connection.test").await;
    assert_eq!(evs.len(), 2 * tested.len(), "one event per test");
    let denied = evs
        .iter()
        .filter(|e| e["outcome"] == "error" && e["details"]["error_code"] == "egress_denied")
        .count();
    assert!(denied >= 2 * 50, "{denied} egress_denied events");
    assert!(
        evs.iter()
            .all(|e| e["outcome"] == "error" && e["details"]["ok"] == false)
    );
    assert_no_secret("the audit log", &serde_json::to_string(&evs).unwrap(), &key_value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_fifty_hostile_targets_are_refused_and_never_connected_to_under_the_default_policy_on_every_backend() {
    each_backend!(hostile_targets_are_refused_and_never_reached);
}

// --------------------------------------------------------------- 4. the positive control

async fn an_allowed_loopback_is_reached_and_metadata_is_still_refused(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let trap = Trap::start().await;
    let p = trap.port();
    let key = header_key_cred(&srv, "allow-key", "X-Api-Key", "allow-key-value").await;
    let db = db_cred(&srv, "allow-db", "loader", "allow-db-pw").await;

    // Reached: the listener sees the connection and answers 200.
    let mut seen = 0;
    let mut urls = vec![
        format!("http://127.0.0.1:{p}/"),
        format!("http://2130706433:{p}/"),
        format!("http://127.1:{p}/"),
    ];
    // `localhost` only when it names 127.x alone here (a name with any refused address, such
    // as ::1, is refused as a whole).
    if !loopback_names_in_etc_hosts()
        .iter()
        .any(|(n, v6)| *v6 && n == "localhost")
    {
        urls.push(format!("http://localhost:{p}/"));
    }
    for (i, url) in urls.iter().enumerate() {
        let c = http_conn(&srv, &format!("allowed-{i}"), url, json!({}), &key).await;
        let r = test_conn(&srv, &c, json!({})).await;
        assert_passed(&r);
        seen += 1;
        assert_eq!(trap.hits().await, seen, "{url} did not reach the listener");
    }
    let last = trap.v4.requests().pop().unwrap();
    assert_eq!(last.header("x-api-key"), Some("allow-key-value"));
    // PostgreSQL to the same listener: reached (it is not PostgreSQL, so the test fails, but
    // not on the policy).
    let c = connection(
        &srv,
        "allowed-pg",
        "postgres",
        json!({"host": "127.0.0.1", "port": p, "database": "x"}),
        Some(&db),
    )
    .await;
    let r = test_conn(&srv, &c, json!({})).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_ne!(code(&r), "egress_denied", "{r}");
    seen += 1;
    assert_eq!(trap.hits().await, seen, "PostgreSQL did not reach the listener");

    // Still refused: outside 127.0.0.0/8, whatever the spelling; nothing reaches the listener.
    let q = trap.port6();
    let mut i = 0;
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/".to_owned(),
        "http://2852039166/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.0.1/".to_owned(),
        format!("http://0.0.0.0:{p}/"),
        format!("http://[::1]:{q}/"),
        format!("http://[::]:{q}/"),
    ] {
        i += 1;
        let c = http_conn(&srv, &format!("still-refused-{i}"), &url, json!({}), &key).await;
        let r = test_conn(&srv, &c, json!({})).await;
        assert_eq!(
            (r["ok"].clone(), code(&r)),
            (json!(false), "egress_denied".to_owned()),
            "{url}: {r}"
        );
    }
    for host in ["169.254.169.254", "::1", "0.0.0.0"] {
        i += 1;
        let port = if host.contains(':') { q } else { p };
        let c = connection(
            &srv,
            &format!("still-refused-{i}"),
            "postgres",
            json!({"host": host, "port": port, "database": "x"}),
            Some(&db),
        )
        .await;
        let r = test_conn(&srv, &c, json!({})).await;
        assert_eq!(
            (r["ok"].clone(), code(&r)),
            (json!(false), "egress_denied".to_owned()),
            "{host}: {r}"
        );
    }
    assert_eq!(trap.hits().await, seen, "a refused destination reached the listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_loopback_allowed_the_listener_is_reached_and_metadata_is_still_refused_on_every_backend() {
    each_backend!(an_allowed_loopback_is_reached_and_metadata_is_still_refused);
}

// ------------------------------------------------------------------ HTTPS with a private CA

/// An HTTPS API on 127.0.0.1 (real TLS, a certificate from a test CA) that answers 200 when
/// `x-api-key` is `key` and 401 otherwise.
async fn https_api(pki: &common::tls::Pki, key: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let acc = common::tls::acceptor(pki);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { break };
            let acc = acc.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acc.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let ok = head.lines().any(|l| l.trim() == format!("x-api-key: {key}"));
                let status = if ok { "200 OK" } else { "401 Unauthorized" };
                let _ = s
                    .write_all(
                        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes(),
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

async fn https_with_a_private_ca(b: Backend) {
    let dir = common::TempDir::new();
    let pki = common::tls::pki(dir.path(), "api");
    let ca_pem = std::fs::read_to_string(&pki.ca_pem).unwrap();
    let port = https_api(&pki, "https-key-123").await;
    let base = format!("https://127.0.0.1:{port}/");
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let good = header_key_cred(&srv, "https-good", "x-api-key", "https-key-123").await;
    let bad = header_key_cred(&srv, "https-bad", "x-api-key", "https-wrong-1").await;
    // Trusting the private CA: the right key passes, a wrong one is auth_failed.
    let c = http_conn(&srv, "https-ca", &base, json!({"ca_pem": ca_pem}), &good).await;
    assert_passed(&test_conn(&srv, &c, json!({})).await);
    let c = http_conn(&srv, "https-ca-bad", &base, json!({"ca_pem": ca_pem}), &bad).await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "auth_failed");
    // Without it, the certificate is not trusted: a TLS failure, not a pass.
    let c = http_conn(&srv, "https-no-ca", &base, json!({}), &good).await;
    assert_failed(&test_conn(&srv, &c, json!({})).await, "tls");
    // A ca_pem that is not a certificate is refused when written, naming the field.
    let r = srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "https-garbage", "workspace_id": srv.ws_id, "environment": "prod", "kind": "http",
                   "config": {"base_url": base, "ca_pem": "not a certificate"}, "credential_id": good}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["field"], "config.ca_pem", "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_api_behind_a_private_ca_passes_with_ca_pem_and_fails_tls_without_it_on_every_backend() {
    for b in common::backends() {
        https_with_a_private_ca(b).await;
    }
}

// ------------------------------------------------------------- per-organization test slots

/// A target that accepts, holds each connection for `hold`, then closes it.
async fn slow_target(hold: Duration) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                drop(s);
            });
        }
    });
    port
}

/// One organization with slow targets takes at most its own slots: its fifth test waits for
/// one of its four, while another organization's test goes through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organization_with_slow_targets_does_not_starve_another() {
    let srv = Server::start_with(Backend::Sqlite, &["--egress-allow", "127.0.0.0/8"]).await;
    let hold = Duration::from_secs(3);
    let port = slow_target(hold).await;
    let a = srv.admin.clone();
    let cred = db_cred(&srv, "slow-db", "loader", "slow-pw").await;
    let mut conns = Vec::new();
    for i in 0..5 {
        conns.push(
            connection(
                &srv,
                &format!("slow-{i}"),
                "postgres",
                json!({"host": "127.0.0.1", "port": port, "database": "d"}),
                Some(&cred),
            )
            .await,
        );
    }
    // Another organization, with a target that refuses at once.
    let org_b = srv.post("/v1/orgs", &a, json!({"name": "other-org"})).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ws_b = srv
        .post("/v1/workspaces", &a, json!({"org_id": org_b, "name": "w"}))
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cred_b = srv
        .post(
            "/v1/credentials",
            &a,
            json!({"name": "b-db", "type": "database", "workspace_id": ws_b, "environment": "prod", "fields": {"username": "u", "password": "p"}}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conn_b = srv
        .post(
            "/v1/connections",
            &a,
            json!({"name": "b-conn", "workspace_id": ws_b, "environment": "prod", "kind": "postgres",
                   "config": {"host": "127.0.0.1", "port": closed, "database": "d"}, "credential_id": cred_b}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let timed = |conn: String| {
        let (base, token, http) = (srv.base.clone(), a.clone(), srv.http.clone());
        async move {
            let t = std::time::Instant::now();
            let r = http
                .post(format!("{base}/v1/connections/{conn}/test"))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            (t.elapsed(), v)
        }
    };
    let slow: Vec<_> = conns.iter().map(|c| tokio::spawn(timed(c.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (b_time, b) = timed(conn_b).await;
    assert_eq!(code(&b), "connect_refused", "{b}");
    assert!(
        b_time < Duration::from_secs(2),
        "the other organization waited {b_time:?}"
    );
    let mut times = Vec::new();
    for h in slow {
        let (t, v) = h.await.unwrap();
        assert_eq!(v["ok"], false, "{v}");
        times.push(t);
    }
    times.sort();
    // Four ran at once (about `hold` each); the fifth waited for a slot, then ran.
    assert!(times[3] < hold * 2, "{times:?}");
    assert!(
        times[4] >= hold * 2 - Duration::from_millis(500),
        "the fifth test did not wait for a slot: {times:?}"
    );
}
