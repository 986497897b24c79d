//! Test connection for the `ftp` and `ldap` kinds, over real HTTP, against a real vsftpd and a
//! real OpenLDAP slapd on loopback (started by `scripts/lib/ftpd.sh` and `scripts/lib/slapd.sh`,
//! which `scripts/test` sources), on every backend:
//!
//! - FTP: the right password passes, a wrong one is `auth_failed`, a closed port is
//!   `connect_refused`, a server that is not FTP is `unexpected_response`, explicit TLS (AUTH
//!   TLS) passes with the server's CA trusted and is `tls` without it, or against a server that
//!   does not offer TLS;
//! - LDAP: the right password passes, a wrong one (and an unknown DN) is `auth_failed`, a closed
//!   port is `connect_refused`, a server that is not LDAP is `unexpected_response`, StartTLS and
//!   LDAPS pass with the CA trusted and are `tls` without it or against a plain port;
//! - the default egress policy refuses loopback before any socket opens;
//! - no password, right or wrong, ever shows in a result, `last_test`, the audit log or the
//!   server's logs.
//!
//! Needs `--features server-tests` and the `CREDVAULT_TEST_FTP_*` / `CREDVAULT_TEST_LDAP_*`
//! variables; a missing variable fails the test, it never passes silently.
#![cfg(feature = "server-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{closed_port, random_hex};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Backend, PgDb, Server, TempDir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// `serve` arguments that let the server reach loopback.
const ALLOW_LOOPBACK: [&str; 2] = ["--egress-allow", "127.0.0.0/8"];

/// The system trust store, which does not hold the test CAs.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

// ------------------------------------------------------------------------------- helpers

/// A variable the server scripts export; panics with how to get it.
#[track_caller]
fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need the servers from scripts/lib/ftpd.sh and \
             scripts/lib/slapd.sh (`source scripts/lib/ftpd.sh; ftpd_start DIR PORT`, likewise \
             slapd_start; scripts/test does it)"
        ),
    }
}

/// A variable that must say `1` (a capability the scripts verified).
#[track_caller]
fn require_flag(name: &str, what: &str) {
    assert_eq!(
        std::env::var(name).ok().as_deref(),
        Some("1"),
        "{name} is not 1: the start script could not get {what} working, so this test cannot run \
         (see the script's output)"
    );
}

fn port_of(name: &str) -> u16 {
    env(name).parse().unwrap_or_else(|_| panic!("{name} is not a port"))
}

struct Ftp {
    host: String,
    port: u16,
    user: String,
    password: String,
}

fn ftp() -> Ftp {
    Ftp {
        host: env("CREDVAULT_TEST_FTP_HOST"),
        port: port_of("CREDVAULT_TEST_FTP_PORT"),
        user: env("CREDVAULT_TEST_FTP_USER"),
        password: env("CREDVAULT_TEST_FTP_PASSWORD"),
    }
}

struct Ldap {
    host: String,
    port: u16,
    bind_dn: String,
    password: String,
}

fn ldap() -> Ldap {
    Ldap {
        host: env("CREDVAULT_TEST_LDAP_HOST"),
        port: port_of("CREDVAULT_TEST_LDAP_PORT"),
        bind_dn: env("CREDVAULT_TEST_LDAP_BIND_DN"),
        password: env("CREDVAULT_TEST_LDAP_PASSWORD"),
    }
}

/// A server allowed to reach loopback, trusting exactly the CA file `ca` (or the system store).
async fn server(b: Backend, ca: Option<&str>) -> Server {
    let pg = (b == Backend::Postgres).then(PgDb::create);
    let trust = ca.unwrap_or(SYSTEM_BUNDLE);
    // SSL_CERT_DIR is emptied so that only SSL_CERT_FILE counts, whatever the caller's
    // environment holds.
    Server::start_opts(
        b,
        TempDir::new(),
        pg,
        &ALLOW_LOOPBACK,
        &[("SSL_CERT_FILE", trust), ("SSL_CERT_DIR", "")],
    )
    .await
}

/// A `password` credential; returns its ID.
async fn password_cred(srv: &Server, name: &str, user: Option<&str>, password: &str) -> String {
    let mut fields = json!({"password": password});
    if let Some(u) = user {
        fields["username"] = json!(u);
    }
    srv.post(
        "/v1/credentials",
        &srv.admin,
        json!({"name": name, "type": "password", "workspace_id": srv.ws_id, "environment": "prod",
               "fields": fields}),
    )
    .await
    .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A connection of `kind`; returns its ID.
async fn connection(srv: &Server, name: &str, kind: &str, config: Value, cred: &str) -> String {
    srv.post(
        "/v1/connections",
        &srv.admin,
        json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": kind,
               "config": config, "credential_id": cred}),
    )
    .await
    .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs Test connection.
async fn test_conn(srv: &Server, conn: &str) -> Value {
    srv.post(&format!("/v1/connections/{conn}/test"), &srv.admin, json!({}))
        .await
        .ok(200)
}

/// A connection of `kind` with `config` and a fresh credential, tested once.
async fn try_once(srv: &Server, label: &str, kind: &str, config: Value, user: Option<&str>, password: &str) -> Value {
    let name = format!("{label}-{}", random_hex(3));
    let cred = password_cred(srv, &name, user, password).await;
    let conn = connection(srv, &name, kind, config, &cred).await;
    test_conn(srv, &conn).await
}

#[track_caller]
fn assert_passed(what: &str, r: &Value) {
    assert_eq!(r["ok"], true, "{what}: the test should pass: {r}");
    assert!(r.get("error").is_none_or(Value::is_null), "{what}: {r}");
    assert!(r["latency_ms"].is_u64(), "{what}: {r}");
}

#[track_caller]
fn assert_failed(what: &str, r: &Value, code: &str) {
    assert_eq!(r["ok"], false, "{what}: the test should fail with {code}: {r}");
    assert_eq!(r["error"]["code"], code, "{what}: {r}");
    assert!(
        r["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message: {r}"
    );
    assert!(r["latency_ms"].is_u64(), "{what}: {r}");
}

/// Every `connection.test` audit event, oldest first.
async fn test_events(srv: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/v1/audit?action=connection.test&limit=200".to_owned();
    loop {
        let page = srv.get(&path, &srv.admin).await.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/audit?action=connection.test&limit=200&cursor={c}"),
            None => break,
        }
    }
    out
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

/// Asserts that neither `secret` nor its base64 form occurs in `hay`.
#[track_caller]
fn assert_no_secret(what: &str, hay: &str, secret: &str) {
    for form in [secret.to_owned(), b64(secret.as_bytes())] {
        assert!(!hay.contains(&form), "{what} contains a password (as `{form}`):\n{hay}");
    }
}

/// Checks that no password of the run shows anywhere the server speaks: the results, every
/// connection's `last_test`, the audit log and the server's own output.
async fn assert_no_password_leaked(srv: &Server, results: &[Value], secrets: &[&str]) {
    let results = serde_json::to_string(results).unwrap();
    let conns = srv
        .get("/v1/connections?limit=200", &srv.admin)
        .await
        .ok(200)
        .to_string();
    let audit = serde_json::to_string(&test_events(srv).await).unwrap();
    let logs = srv.logs();
    for s in secrets {
        assert_no_secret("a test result", &results, s);
        assert_no_secret("the connections list", &conns, s);
        assert_no_secret("the audit log", &audit, s);
        assert_no_secret("the server's logs", &logs, s);
    }
}

/// A loopback listener that counts connections and answers each one: `greeting` first, then
/// for every line the client sends the next of `replies` (`ECHO` answers `530` quoting what
/// the client sent, like a careless server would).
struct Stub {
    port: u16,
    conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    async fn start(greeting: &'static [u8], replies: &'static [&'static [u8]]) -> Stub {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if s.write_all(greeting).await.is_err() {
                        return;
                    }
                    let mut buf = [0u8; 1024];
                    for r in replies {
                        let n = match s.read(&mut buf).await {
                            Ok(n) if n > 0 => n,
                            _ => return,
                        };
                        let reply = if *r == b"ECHO" {
                            let got = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                            format!("530 Login incorrect, you sent `{got}`\r\n").into_bytes()
                        } else {
                            r.to_vec()
                        };
                        if s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                    // Then close.
                });
            }
        });
        Stub { port, conns, task }
    }
    fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ftp_config(host: &str, port: u16, tls: &str) -> Value {
    json!({"host": host, "port": port, "tls": tls, "passive": true})
}

fn ldap_config(host: &str, port: u16, bind_dn: &str, starttls: bool, ldaps: bool) -> Value {
    json!({"host": host, "port": port, "bind_dn": bind_dn, "starttls": starttls, "ldaps": ldaps})
}

// ------------------------------------------------------------------------------------ FTP

async fn ftp_logins_are_told_apart(b: Backend) {
    let f = ftp();
    let srv = server(b, None).await;
    let wrong = format!("wrong-ftp-{}", random_hex(6));
    let mut results = Vec::new();

    // The right password: logged in, PWD answered.
    let cred = password_cred(&srv, "ftp-right", Some(&f.user), &f.password).await;
    let conn = connection(&srv, "ftp-right", "ftp", ftp_config(&f.host, f.port, "none"), &cred).await;
    let r = test_conn(&srv, &conn).await;
    assert_passed("ftp right password", &r);
    results.push(r);
    let lt = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200)["last_test"].clone();
    assert_eq!(lt["ok"], true, "{lt}");

    let r = try_once(
        &srv,
        "ftp-wrong",
        "ftp",
        ftp_config(&f.host, f.port, "none"),
        Some(&f.user),
        &wrong,
    )
    .await;
    assert_failed("ftp wrong password", &r, "auth_failed");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("530"),
        "the server's 530 should show: {r}"
    );
    results.push(r);

    let r = try_once(
        &srv,
        "ftp-nouser",
        "ftp",
        ftp_config(&f.host, f.port, "none"),
        Some("no-such-user-cv"),
        &wrong,
    )
    .await;
    assert_failed("ftp unknown user", &r, "auth_failed");
    results.push(r);

    // A credential without a username cannot log in to FTP; said without connecting.
    let r = try_once(
        &srv,
        "ftp-anon",
        "ftp",
        ftp_config(&f.host, f.port, "none"),
        None,
        &wrong,
    )
    .await;
    assert_failed("ftp without username", &r, "unsupported");
    results.push(r);

    // The audit trail records each test with its outcome.
    let evs = test_events(&srv).await;
    assert!(
        evs.iter()
            .any(|e| e["target_id"] == conn.as_str() && e["details"]["ok"] == true),
        "no successful connection.test event for {conn}"
    );
    assert!(
        evs.iter()
            .any(|e| e["details"]["error_code"] == "auth_failed" && e["outcome"] == "error"),
        "no auth_failed event"
    );
    assert_no_password_leaked(&srv, &results, &[&f.password, &wrong]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_with_the_right_password_passes_and_a_wrong_password_is_auth_failed_on_every_backend() {
    each_backend!(ftp_logins_are_told_apart);
}

async fn ftp_failures_before_login_are_classified(b: Backend) {
    let f = ftp();
    let srv = server(b, None).await;
    let pw = format!("ftp-pw-{}", random_hex(6));

    let port = closed_port().await;
    let r = try_once(
        &srv,
        "ftp-closed",
        "ftp",
        ftp_config("127.0.0.1", port, "none"),
        Some(&f.user),
        &pw,
    )
    .await;
    assert_failed("ftp closed port", &r, "connect_refused");

    // An HTTP server where FTP was expected.
    let http = Stub::start(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", &[]).await;
    let r = try_once(
        &srv,
        "ftp-http",
        "ftp",
        ftp_config("127.0.0.1", http.port, "none"),
        Some(&f.user),
        &pw,
    )
    .await;
    assert_failed("ftp against an HTTP server", &r, "unexpected_response");
    assert_eq!(http.connections(), 1);

    // A server that greets and closes at once.
    let rude = Stub::start(b"", &[]).await;
    let r = try_once(
        &srv,
        "ftp-rude",
        "ftp",
        ftp_config("127.0.0.1", rude.port, "none"),
        Some(&f.user),
        &pw,
    )
    .await;
    assert_failed("ftp against a server that hangs up", &r, "unexpected_response");

    // An FTP server that does not offer TLS, asked for explicit TLS: refused as tls, and the
    // password is never sent (the stub answers nothing after AUTH).
    let plain = Stub::start(
        b"220 plain FTP\r\n",
        &[
            b"500 AUTH not understood\r\n",
            b"530 Please login with USER and PASS.\r\n",
        ],
    )
    .await;
    let r = try_once(
        &srv,
        "ftp-notls",
        "ftp",
        ftp_config("127.0.0.1", plain.port, "explicit"),
        Some(&f.user),
        &pw,
    )
    .await;
    assert_failed("explicit TLS against a server without TLS", &r, "tls");
    assert!(r["error"]["message"].as_str().unwrap().contains("AUTH TLS"), "{r}");
    assert_no_password_leaked(&srv, &[r], &[&pw]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_to_a_closed_port_is_connect_refused_and_to_a_server_that_is_not_ftp_is_unexpected_response() {
    each_backend!(ftp_failures_before_login_are_classified);
}

async fn ftp_explicit_tls(b: Backend) {
    let f = ftp();
    require_flag("CREDVAULT_TEST_FTP_TLS", "explicit TLS on vsftpd");
    let ca = env("CREDVAULT_TEST_FTP_CA");
    let wrong = format!("wrong-ftps-{}", random_hex(6));
    let mut results = Vec::new();

    // The server trusts the test CA: AUTH TLS, certificate checked against 127.0.0.1, login.
    let srv = server(b, Some(&ca)).await;
    let r = try_once(
        &srv,
        "ftps-right",
        "ftp",
        ftp_config(&f.host, f.port, "explicit"),
        Some(&f.user),
        &f.password,
    )
    .await;
    assert_passed("ftp explicit TLS, right password", &r);
    results.push(r);
    let r = try_once(
        &srv,
        "ftps-wrong",
        "ftp",
        ftp_config(&f.host, f.port, "explicit"),
        Some(&f.user),
        &wrong,
    )
    .await;
    assert_failed("ftp explicit TLS, wrong password", &r, "auth_failed");
    results.push(r);
    assert_no_password_leaked(&srv, &results, &[&f.password, &wrong]).await;
    drop(srv);

    // The server trusts only the system store: the self-made CA is not in it.
    let srv = server(b, None).await;
    let r = try_once(
        &srv,
        "ftps-untrusted",
        "ftp",
        ftp_config(&f.host, f.port, "explicit"),
        Some(&f.user),
        &f.password,
    )
    .await;
    assert_failed("ftp explicit TLS, untrusted certificate", &r, "tls");
    let m = r["error"]["message"].as_str().unwrap().to_ascii_lowercase();
    assert!(m.contains("certificate") || m.contains("issuer"), "{r}");
    assert_no_password_leaked(&srv, &[r], &[&f.password]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_with_explicit_tls_passes_with_the_ca_trusted_and_is_tls_when_the_certificate_is_not_trusted() {
    each_backend!(ftp_explicit_tls);
}

async fn an_echoed_password_is_redacted(b: Backend) {
    let srv = server(b, None).await;
    let canary = format!("ftp-canary-{}", random_hex(8));
    let echo = Stub::start(b"220 echo FTP\r\n", &[b"331 Password required\r\n", b"ECHO"]).await;
    let r = try_once(
        &srv,
        "ftp-echo",
        "ftp",
        ftp_config("127.0.0.1", echo.port, "none"),
        Some("echo-user"),
        &canary,
    )
    .await;
    assert_failed("ftp against a server echoing the password", &r, "auth_failed");
    let m = r["error"]["message"].as_str().unwrap();
    assert!(m.contains("PASS [redacted]"), "the echo should show, redacted: {r}");
    assert_no_password_leaked(&srv, &[r], &[&canary]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ftp_server_echoing_the_password_back_never_makes_it_leave_the_server() {
    each_backend!(an_echoed_password_is_redacted);
}

async fn passwords_stay_out_of_trace_logs(b: Backend) {
    let f = ftp();
    let l = ldap();
    // The most verbose logging an operator can ask for, libraries included.
    let pg = (b == Backend::Postgres).then(PgDb::create);
    let srv = Server::start_opts(
        b,
        TempDir::new(),
        pg,
        &ALLOW_LOOPBACK,
        &[("CREDVAULT_LOG", "trace"), ("SSL_CERT_DIR", "")],
    )
    .await;
    let wrong = format!("wrong-trace-{}", random_hex(6));
    let mut results = Vec::new();
    for pw in [f.password.as_str(), wrong.as_str()] {
        results.push(
            try_once(
                &srv,
                "trace-ftp",
                "ftp",
                ftp_config(&f.host, f.port, "none"),
                Some(&f.user),
                pw,
            )
            .await,
        );
    }
    for pw in [l.password.as_str(), wrong.as_str()] {
        let config = ldap_config(&l.host, l.port, &l.bind_dn, false, false);
        results.push(try_once(&srv, "trace-ldap", "ldap", config, None, pw).await);
    }
    assert_passed("ftp at trace level", &results[0]);
    assert_failed("ftp wrong password at trace level", &results[1], "auth_failed");
    assert_passed("ldap at trace level", &results[2]);
    assert_failed("ldap wrong password at trace level", &results[3], "auth_failed");
    assert!(srv.logs().len() > 1000, "trace logging is not on:\n{}", srv.logs());
    assert_no_password_leaked(&srv, &results, &[&f.password, &l.password, &wrong]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_with_trace_logging_no_ftp_or_ldap_password_reaches_the_logs_on_every_backend() {
    each_backend!(passwords_stay_out_of_trace_logs);
}

// ----------------------------------------------------------------------------------- LDAP

async fn ldap_binds_are_told_apart(b: Backend) {
    let l = ldap();
    let srv = server(b, None).await;
    let wrong = format!("wrong-ldap-{}", random_hex(6));
    let mut results = Vec::new();

    let cred = password_cred(&srv, "ldap-right", None, &l.password).await;
    let conn = connection(
        &srv,
        "ldap-right",
        "ldap",
        ldap_config(&l.host, l.port, &l.bind_dn, false, false),
        &cred,
    )
    .await;
    let r = test_conn(&srv, &conn).await;
    assert_passed("ldap right password", &r);
    results.push(r);
    let lt = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200)["last_test"].clone();
    assert_eq!(lt["ok"], true, "{lt}");

    let r = try_once(
        &srv,
        "ldap-wrong",
        "ldap",
        ldap_config(&l.host, l.port, &l.bind_dn, false, false),
        None,
        &wrong,
    )
    .await;
    assert_failed("ldap wrong password", &r, "auth_failed");
    assert!(r["error"]["message"].as_str().unwrap().contains("49"), "{r}");
    results.push(r);

    // A DN that does not exist binds like a wrong password (slapd does not tell them apart).
    let r = try_once(
        &srv,
        "ldap-nodn",
        "ldap",
        ldap_config(&l.host, l.port, "uid=nobody,ou=people,dc=example,dc=org", false, false),
        None,
        &l.password,
    )
    .await;
    assert_failed("ldap unknown DN", &r, "auth_failed");
    results.push(r);

    // Not a DN at all.
    let r = try_once(
        &srv,
        "ldap-baddn",
        "ldap",
        ldap_config(&l.host, l.port, "this is not a DN", false, false),
        None,
        &l.password,
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        ["not_found", "auth_failed"].contains(&r["error"]["code"].as_str().unwrap()),
        "{r}"
    );
    results.push(r);

    assert_no_password_leaked(&srv, &results, &[&l.password, &wrong]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_with_the_right_password_passes_and_a_wrong_password_is_auth_failed_on_every_backend() {
    each_backend!(ldap_binds_are_told_apart);
}

async fn ldap_failures_before_the_bind_are_classified(b: Backend) {
    let l = ldap();
    let srv = server(b, None).await;
    let pw = format!("ldap-pw-{}", random_hex(6));

    let port = closed_port().await;
    let r = try_once(
        &srv,
        "ldap-closed",
        "ldap",
        ldap_config("127.0.0.1", port, &l.bind_dn, false, false),
        None,
        &pw,
    )
    .await;
    assert_failed("ldap closed port", &r, "connect_refused");

    // An FTP-like server where LDAP was expected.
    let ftp_like = Stub::start(b"220 this is FTP\r\n", &[b"500 what?\r\n"]).await;
    let r = try_once(
        &srv,
        "ldap-ftp",
        "ldap",
        ldap_config("127.0.0.1", ftp_like.port, &l.bind_dn, false, false),
        None,
        &pw,
    )
    .await;
    assert_failed("ldap against an FTP server", &r, "unexpected_response");
    assert_eq!(ftp_like.connections(), 1);
    assert_no_password_leaked(&srv, &[r], &[&pw]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_to_a_closed_port_is_connect_refused_and_to_a_server_that_is_not_ldap_is_unexpected_response() {
    each_backend!(ldap_failures_before_the_bind_are_classified);
}

async fn ldap_tls(b: Backend) {
    let l = ldap();
    require_flag("CREDVAULT_TEST_LDAP_TLS", "StartTLS on slapd");
    let ca = env("CREDVAULT_TEST_LDAP_CA");
    let ldaps_port = port_of("CREDVAULT_TEST_LDAPS_PORT");
    let wrong = format!("wrong-ldaps-{}", random_hex(6));
    let mut results = Vec::new();

    let srv = server(b, Some(&ca)).await;
    for (label, config) in [
        ("starttls", ldap_config(&l.host, l.port, &l.bind_dn, true, false)),
        ("ldaps", ldap_config(&l.host, ldaps_port, &l.bind_dn, false, true)),
        (
            "ldaps wins over starttls",
            ldap_config(&l.host, ldaps_port, &l.bind_dn, true, true),
        ),
    ] {
        let r = try_once(&srv, "ldap-tls", "ldap", config.clone(), None, &l.password).await;
        assert_passed(&format!("{label}, right password"), &r);
        results.push(r);
        let r = try_once(&srv, "ldap-tls-wrong", "ldap", config, None, &wrong).await;
        assert_failed(&format!("{label}, wrong password"), &r, "auth_failed");
        results.push(r);
    }
    // LDAPS against the plain port: the handshake fails.
    let r = try_once(
        &srv,
        "ldaps-plain",
        "ldap",
        ldap_config(&l.host, l.port, &l.bind_dn, false, true),
        None,
        &l.password,
    )
    .await;
    assert_failed("ldaps against the plain port", &r, "tls");
    results.push(r);
    // StartTLS against a server that is not LDAP at all.
    let not_ldap = Stub::start(b"220 this is FTP\r\n", &[b"500 what?\r\n"]).await;
    let r = try_once(
        &srv,
        "starttls-ftp",
        "ldap",
        ldap_config("127.0.0.1", not_ldap.port, &l.bind_dn, true, false),
        None,
        &l.password,
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        ["tls", "unexpected_response"].contains(&r["error"]["code"].as_str().unwrap()),
        "{r}"
    );
    results.push(r);
    assert_no_password_leaked(&srv, &results, &[&l.password, &wrong]).await;
    drop(srv);

    // Only the system store trusted: the certificate is refused, before any bind.
    let srv = server(b, None).await;
    let mut results = Vec::new();
    for (label, config) in [
        (
            "starttls untrusted",
            ldap_config(&l.host, l.port, &l.bind_dn, true, false),
        ),
        (
            "ldaps untrusted",
            ldap_config(&l.host, ldaps_port, &l.bind_dn, false, true),
        ),
    ] {
        let r = try_once(&srv, "ldap-untrusted", "ldap", config, None, &l.password).await;
        assert_failed(label, &r, "tls");
        let m = r["error"]["message"].as_str().unwrap().to_ascii_lowercase();
        assert!(m.contains("certificate") || m.contains("issuer"), "{label}: {r}");
        results.push(r);
    }
    assert_no_password_leaked(&srv, &results, &[&l.password]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_with_starttls_or_ldaps_passes_with_the_ca_trusted_and_is_tls_when_the_certificate_is_not_trusted() {
    each_backend!(ldap_tls);
}

// --------------------------------------------------------------------------------- egress

async fn default_policy_refuses_loopback(b: Backend) {
    let f = ftp();
    let l = ldap();
    // No --egress-allow: loopback is refused before a socket opens.
    let pg = (b == Backend::Postgres).then(PgDb::create);
    let srv = Server::start_opts(b, TempDir::new(), pg, &[], &[]).await;
    let stub = Stub::start(b"220 trap\r\n", &[]).await;
    for (kind, config, user, pw) in [
        (
            "ftp",
            ftp_config(&f.host, f.port, "none"),
            Some(f.user.as_str()),
            &f.password,
        ),
        (
            "ftp",
            ftp_config("127.0.0.1", stub.port, "none"),
            Some(f.user.as_str()),
            &f.password,
        ),
        (
            "ftp",
            ftp_config("localhost", stub.port, "explicit"),
            Some(f.user.as_str()),
            &f.password,
        ),
        (
            "ldap",
            ldap_config(&l.host, l.port, &l.bind_dn, false, false),
            None,
            &l.password,
        ),
        (
            "ldap",
            ldap_config("127.0.0.1", stub.port, &l.bind_dn, true, false),
            None,
            &l.password,
        ),
        (
            "ldap",
            ldap_config("169.254.169.254", 389, &l.bind_dn, false, false),
            None,
            &l.password,
        ),
    ] {
        let r = try_once(&srv, "egress", kind, config.clone(), user, pw).await;
        assert_failed(&format!("{kind} {config}"), &r, "egress_denied");
    }
    assert_eq!(stub.connections(), 0, "a refused destination was connected to");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_default_egress_policy_ftp_and_ldap_to_loopback_are_refused_without_a_connection() {
    each_backend!(default_policy_refuses_loopback);
}
