//! Test connection against real database servers, over real HTTP, on every store backend:
//!
//! - the MySQL tester against MariaDB (scripts/lib/mariadb.sh): the right password, a wrong
//!   one, an unknown user, a missing database, a database the user may not use, TLS required
//!   of a server without it, a closed port, a server that is not MySQL, a target the egress
//!   policy refuses;
//! - SSH tunnels through OpenSSH (scripts/lib/sshd.sh) to PostgreSQL (CREDVAULT_TEST_PG_URL,
//!   reached from the bastion at its own address) and to MariaDB: OpenSSH, PKCS#8 and
//!   passphrase-encrypted keys, a wrong host key, a key the bastion does not know, a wrong
//!   passphrase, database failures behind the tunnel, a closed port behind it, a closed
//!   bastion, a bastion the egress policy refuses;
//! - no secret (database passwords, a canary, the SSH private keys and passphrase) in any test
//!   result, connection, audit event or server log line.
//!
//! These tests need the servers: they run with `--features server-tests` (scripts/test starts
//! the servers and sets the `CREDVAULT_TEST_*` variables) and fail loudly when a variable is
//! missing.
#![cfg(feature = "server-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{closed_port, random_hex, st};

use common::{Backend, Server};
use serde_json::{Value, json};

/// `serve` arguments that let the server reach loopback, where every test server listens.
const ALLOW_LOOPBACK: [&str; 2] = ["--egress-allow", "127.0.0.0/8"];

// ------------------------------------------------------------------------------- the servers

/// A required environment variable, or a panic that says how to get it.
fn env(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!(
            "{name} is not set: the server-tests need MariaDB, sshd and PostgreSQL started by \
             scripts/lib/mariadb.sh (mariadb_start), scripts/lib/sshd.sh (sshd_start) and \
             scripts/lib/pg.sh (pg_start, then CREDVAULT_TEST_PG_URL=$PG_URL); scripts/test does all of it"
        )
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The MariaDB of this run.
struct Maria {
    host: String,
    port: u16,
    user: String,
    password: String,
    db: String,
}

impl Maria {
    fn from_env() -> Maria {
        Maria {
            host: env("CREDVAULT_TEST_MYSQL_HOST"),
            port: env("CREDVAULT_TEST_MYSQL_PORT")
                .parse()
                .expect("CREDVAULT_TEST_MYSQL_PORT is a port"),
            user: env("CREDVAULT_TEST_MYSQL_USER"),
            password: env("CREDVAULT_TEST_MYSQL_PASSWORD"),
            db: env("CREDVAULT_TEST_MYSQL_DB"),
        }
    }

    fn config(&self, database: &str) -> Value {
        json!({"host": self.host, "port": self.port, "database": database})
    }
}

/// The SSH bastion of this run and its keys.
struct Bastion {
    host: String,
    port: u16,
    user: String,
    /// ed25519, OpenSSH format.
    key: String,
    /// ECDSA P-256, PKCS#8.
    pkcs8_key: String,
    /// ed25519, OpenSSH format, encrypted with `passphrase`.
    enc_key: String,
    passphrase: String,
    /// A valid key the bastion does not accept.
    other_key: String,
    /// Its public half: a well-formed host key that is not the bastion's.
    other_public: String,
    /// "ssh-ed25519 AAAA…"
    host_key: String,
}

impl Bastion {
    fn from_env() -> Bastion {
        let other = env("CREDVAULT_TEST_SSH_OTHER_KEY_FILE");
        Bastion {
            host: env("CREDVAULT_TEST_SSH_HOST"),
            port: env("CREDVAULT_TEST_SSH_PORT")
                .parse()
                .expect("CREDVAULT_TEST_SSH_PORT is a port"),
            user: env("CREDVAULT_TEST_SSH_USER"),
            key: read(&env("CREDVAULT_TEST_SSH_KEY_FILE")),
            pkcs8_key: read(&env("CREDVAULT_TEST_SSH_PKCS8_KEY_FILE")),
            enc_key: read(&env("CREDVAULT_TEST_SSH_ENC_KEY_FILE")),
            passphrase: env("CREDVAULT_TEST_SSH_ENC_KEY_PASSPHRASE"),
            other_key: read(&other),
            other_public: read(&format!("{other}.pub")).trim().to_owned(),
            host_key: read(&env("CREDVAULT_TEST_SSH_HOST_KEY_FILE")).trim().to_owned(),
        }
    }

    /// An `ssh_tunnel` object with this key (and passphrase) and host key.
    fn tunnel(&self, key: &str, passphrase: Option<&str>, known_host_key: &str) -> Value {
        let mut t = json!({"host": self.host, "port": self.port, "user": self.user,
                           "private_key_pem": key, "known_host_key": known_host_key});
        if let Some(p) = passphrase {
            t["passphrase"] = json!(p);
        }
        t
    }

    fn good_tunnel(&self) -> Value {
        self.tunnel(&self.key, None, &self.host_key)
    }
}

/// The PostgreSQL of this run, as a database behind the bastion.
struct Pg {
    host: String,
    port: u16,
    user: String,
    password: String,
    db: String,
}

impl Pg {
    fn from_env() -> Pg {
        let url = env("CREDVAULT_TEST_PG_URL");
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .expect("CREDVAULT_TEST_PG_URL is a postgres:// URL");
        let (auth, rest) = rest.rsplit_once('@').expect("user:password@ in CREDVAULT_TEST_PG_URL");
        let (user, password) = auth.split_once(':').expect("a password in CREDVAULT_TEST_PG_URL");
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => (h.trim_matches(['[', ']']).to_owned(), p.parse().unwrap()),
            _ => (hostport.trim_matches(['[', ']']).to_owned(), 5432),
        };
        Pg {
            host,
            port,
            user: user.to_owned(),
            password: password.to_owned(),
            db: db.split('?').next().unwrap_or("postgres").to_owned(),
        }
    }

    fn config(&self) -> Value {
        json!({"host": self.host, "port": self.port, "database": self.db})
    }
}

// ---------------------------------------------------------------------------------- helpers

/// `canary-` and random hex: a password that must never come back.
fn canary() -> String {
    format!("canary-{}", random_hex(12))
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

/// The pieces of a secret worth searching for: the whole value, and for a PEM key each of its
/// base64 body lines (a key never shows up whole in a log line).
fn secret_needles(secret: &str) -> Vec<String> {
    if secret.contains("-----BEGIN") {
        secret
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .filter(|l| l.len() >= 16)
            .map(str::to_owned)
            .collect()
    } else {
        vec![secret.to_owned(), b64(secret.as_bytes()), pct(secret)]
    }
}

#[track_caller]
fn assert_no_secret(what: &str, hay: &str, secret: &str) {
    for needle in secret_needles(secret) {
        assert!(
            !hay.contains(&needle),
            "{what} contains a secret (as `{needle}`):\n{hay}"
        );
    }
}

/// Creates a `database` password credential; returns its ID.
async fn db_cred(srv: &Server, name: &str, system: &str, user: &str, password: &str, tunnel: Option<Value>) -> String {
    let mut fields = json!({"username": user, "password": password});
    if let Some(t) = tunnel {
        fields["ssh_tunnel"] = t;
    }
    let body = json!({"name": name, "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
                      "labels": {"system": system, "owner_team": "data-platform"}, "fields": fields});
    st(&srv.post("/v1/credentials", &srv.admin, body).await.ok(201)["id"])
}

/// Creates a connection of `kind`; returns its ID.
async fn connection(srv: &Server, name: &str, kind: &str, config: Value, cred: &str) -> String {
    let body = json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": kind,
                      "config": config, "credential_id": cred});
    st(&srv.post("/v1/connections", &srv.admin, body).await.ok(201)["id"])
}

/// Every Test connection result of a run, to search for secrets at the end.
#[derive(Default)]
struct Results(Vec<Value>);

impl Results {
    /// Creates a credential and a connection, tests it, and keeps the result.
    #[allow(clippy::too_many_arguments)]
    async fn test(
        &mut self,
        srv: &Server,
        name: &str,
        kind: &str,
        config: Value,
        user: &str,
        password: &str,
        tunnel: Option<Value>,
    ) -> Value {
        let system = if kind == "mysql" { "mysql" } else { "postgres" };
        let cred = db_cred(srv, &format!("{name}-cred"), system, user, password, tunnel).await;
        let conn = connection(srv, name, kind, config, &cred).await;
        let r = srv
            .post(&format!("/v1/connections/{conn}/test"), &srv.admin, json!({}))
            .await
            .ok(200);
        // The connection shows the outcome too.
        let got = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200);
        self.0.push(r.clone());
        self.0.push(got);
        r
    }

    /// Asserts that no secret occurs in any result, connection, audit event or log line.
    async fn assert_clean(&self, srv: &Server, secrets: &[&str]) {
        let results = serde_json::to_string(&self.0).unwrap();
        let audit = audit_text(srv).await;
        let logs = srv.logs();
        assert!(!logs.is_empty());
        for s in secrets {
            assert_no_secret("a test result or connection", &results, s);
            assert_no_secret("the audit log", &audit, s);
            assert_no_secret("the server logs", &logs, s);
        }
    }
}

/// All audit events, as text.
async fn audit_text(srv: &Server) -> String {
    let mut out = Vec::new();
    let mut path = "/v1/audit?limit=200".to_owned();
    loop {
        let page = srv.get(&path, &srv.admin).await.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/audit?limit=200&cursor={c}"),
            None => break,
        }
    }
    assert!(
        out.iter().any(|e| e["action"] == "connection.test"),
        "the tests were audited"
    );
    serde_json::to_string(&out).unwrap()
}

#[track_caller]
fn assert_passed(r: &Value) {
    assert_eq!(r["ok"], true, "the test should pass: {r}");
    assert!(r.get("error").is_none_or(Value::is_null), "{r}");
    assert!(r["latency_ms"].is_u64(), "{r}");
}

/// Asserts the failure code and returns the message.
#[track_caller]
fn assert_failed(r: &Value, expected: &str) -> String {
    assert_eq!(r["ok"], false, "the test should fail with {expected}: {r}");
    assert_eq!(r["error"]["code"], expected, "{r}");
    assert!(r["latency_ms"].is_u64(), "{r}");
    st(&r["error"]["message"])
}

// --------------------------------------------------------------------------- 1. MariaDB

async fn mariadb_logins_pass_and_failures_are_named(b: Backend) {
    let m = Maria::from_env();
    let ssh = Bastion::from_env();
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let mut res = Results::default();

    // The right password: logged in, SELECT 1 ran. The server offers TLS with a self-signed
    // certificate: `prefer` (the default) encrypts without verifying it, `disable` talks plain.
    let r = res
        .test(&srv, "my-good", "mysql", m.config(&m.db), &m.user, &m.password, None)
        .await;
    assert_passed(&r);
    for mode in ["prefer", "disable"] {
        let mut cfg = m.config(&m.db);
        cfg["tls"] = json!(mode);
        let r = res
            .test(
                &srv,
                &format!("my-tls-{mode}"),
                "mysql",
                cfg,
                &m.user,
                &m.password,
                None,
            )
            .await;
        assert_passed(&r);
    }
    // `require` verifies the certificate, which no public CA signed: tls_untrusted (the
    // TLS modes with a CA: the next test).
    let mut cfg = m.config(&m.db);
    cfg["tls"] = json!("require");
    let r = res
        .test(&srv, "my-tls-require", "mysql", cfg, &m.user, &m.password, None)
        .await;
    let msg = assert_failed(&r, "tls_untrusted");
    assert!(msg.contains("certificate") && msg.contains("ca_pem"), "{msg}");

    // A wrong password (a canary): auth_failed (MySQL error 1045), and it never comes back.
    let wrong = canary();
    let r = res
        .test(&srv, "my-wrong-pw", "mysql", m.config(&m.db), &m.user, &wrong, None)
        .await;
    let msg = assert_failed(&r, "auth_failed");
    assert!(msg.contains("1045"), "{msg}");
    // A user that does not exist: the same.
    let ghost = format!("nobody_{}", random_hex(3));
    let r = res
        .test(&srv, "my-ghost", "mysql", m.config(&m.db), &ghost, &m.password, None)
        .await;
    assert_failed(&r, "auth_failed");

    // A database that does not exist (the user could use it if it did): not_found (1049).
    let missing = format!("{}_missing_{}", m.db, random_hex(3));
    let r = res
        .test(
            &srv,
            "my-no-such-db",
            "mysql",
            m.config(&missing),
            &m.user,
            &m.password,
            None,
        )
        .await;
    let msg = assert_failed(&r, "not_found");
    assert!(msg.contains("1049"), "{msg}");
    // A database the user may not use: permission_denied (1044).
    let r = res
        .test(
            &srv,
            "my-locked-db",
            "mysql",
            m.config("mysql"),
            &m.user,
            &m.password,
            None,
        )
        .await;
    let msg = assert_failed(&r, "permission_denied");
    assert!(msg.contains("1044"), "{msg}");

    // Nothing listens: connect_refused.
    let port = closed_port().await;
    let cfg = json!({"host": "127.0.0.1", "port": port, "database": m.db});
    let r = res
        .test(&srv, "my-closed", "mysql", cfg, &m.user, &m.password, None)
        .await;
    assert_failed(&r, "connect_refused");

    // Something that is not MySQL (the SSH server greets first, in its own protocol).
    let cfg = json!({"host": ssh.host, "port": ssh.port, "database": m.db});
    let r = res
        .test(&srv, "my-not-mysql", "mysql", cfg, &m.user, &m.password, None)
        .await;
    assert_failed(&r, "unexpected_response");

    // The audit trail has each test with its outcome.
    let audit = audit_text(&srv).await;
    for code in [
        "auth_failed",
        "not_found",
        "permission_denied",
        "connect_refused",
        "tls_untrusted",
    ] {
        assert!(audit.contains(&format!("\"{code}\"")), "{code} is audited: {audit}");
    }
    res.assert_clean(&srv, &[&wrong, &m.password]).await;
}

/// Runs SQL as MariaDB's root on the run's server (its socket in `MARIADB_DIR`).
fn mariadb_root(sql: &str) {
    let dir = env("MARIADB_DIR");
    let out = std::process::Command::new(mysql_client())
        .args([
            "--no-defaults",
            &format!("--socket={dir}/mysqld.sock"),
            "-uroot",
            "-e",
            sql,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The MariaDB of this run shows a certificate of the run's test CA for DNS:localhost
/// (`scripts/lib/tls.sh`). Each mode checks what it promises, and each failure is named before
/// any credential is sent. The expired case swaps the server's certificate for an expired one
/// (`FLUSH SSL`) and back: the one other test that verifies MariaDB's certificate is kept from
/// running meanwhile (`.config/nextest.toml`, test group `mariadb-certificate`); the rest use
/// `prefer` (unverified).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_tls_modes_verify_what_they_promise_and_name_each_failure() {
    let m = Maria::from_env();
    let tls = env("CREDVAULT_TEST_TLS_DIR");
    let read = |f: &str| std::fs::read_to_string(format!("{tls}/{f}")).unwrap();
    let (ca, other) = (read("ca.pem"), read("other-ca.pem"));
    let srv = Server::start_with(Backend::Sqlite, &ALLOW_LOOPBACK).await;
    let mut res = Results::default();
    let cfg = |host: &str, mode: &str, ca: &str| json!({"host": host, "port": m.port, "database": m.db, "tls": mode, "ca_pem": ca});
    let mut run =
        async |name: &str, config: Value| res.test(&srv, name, "mysql", config, &m.user, &m.password, None).await;

    // The CA in ca_pem, the name the certificate holds: verify-full and require log in.
    assert_passed(&run("my-verify-full", cfg("localhost", "verify-full", &ca)).await);
    assert_passed(&run("my-require-ca", cfg("localhost", "require", &ca)).await);
    // Another name (the address the certificate does not list): verify-full refuses it,
    // verify-ca checks the chain only and logs in.
    let msg = assert_failed(
        &run("my-wrong-name", cfg("127.0.0.1", "verify-full", &ca)).await,
        "tls_name_mismatch",
    );
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert_passed(&run("my-verify-ca", cfg("127.0.0.1", "verify-ca", &ca)).await);
    // Another CA: untrusted, in every verifying mode.
    for mode in ["require", "verify-ca", "verify-full"] {
        assert_failed(
            &run(&format!("my-other-ca-{mode}"), cfg("localhost", mode, &other)).await,
            "tls_untrusted",
        );
    }
    let dir = env("MARIADB_DIR");
    // An expired certificate of the right CA and name.
    let swap = |cert: &str, key: &str| {
        std::fs::copy(cert, format!("{dir}/server-cert.pem")).unwrap();
        std::fs::copy(key, format!("{dir}/server-key.pem")).unwrap();
        mariadb_root("FLUSH SSL");
    };
    swap(&format!("{tls}/expired.pem"), &format!("{tls}/expired.key"));
    let expired = run("my-expired", cfg("localhost", "verify-full", &ca)).await;
    swap(&format!("{tls}/server.pem"), &format!("{tls}/server.key"));
    assert_failed(&expired, "tls_expired");
    // The control: the same connection passes again with the valid certificate back.
    assert_passed(&run("my-valid-again", cfg("localhost", "verify-full", &ca)).await);
    res.assert_clean(&srv, &[&m.password]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mysql_tester_logs_in_to_mariadb_and_names_each_failure_on_every_backend() {
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        mariadb_logins_pass_and_failures_are_named(backend).await;
    }
}

// ------------------------------------------------------------ 2. PostgreSQL through a tunnel

async fn postgres_through_the_bastion(b: Backend) {
    let pg = Pg::from_env();
    let ssh = Bastion::from_env();
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let mut res = Results::default();
    // Through the bastion with an OpenSSH key: ok.
    let r = res
        .test(
            &srv,
            "pg-tunnel",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(ssh.good_tunnel()),
        )
        .await;
    assert_passed(&r);
    // A PKCS#8 key.
    let t = ssh.tunnel(&ssh.pkcs8_key, None, &ssh.host_key);
    let r = res
        .test(
            &srv,
            "pg-tunnel-pkcs8",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    assert_passed(&r);
    // An encrypted key with its passphrase.
    let t = ssh.tunnel(&ssh.enc_key, Some(&ssh.passphrase), &ssh.host_key);
    let r = res
        .test(
            &srv,
            "pg-tunnel-enc",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    assert_passed(&r);
    // The host key stored as a known_hosts line (host pattern first, comment after).
    let line = format!("[{}]:{} {} bastion-comment", ssh.host, ssh.port, ssh.host_key);
    let t = ssh.tunnel(&ssh.key, None, &line);
    let r = res
        .test(
            &srv,
            "pg-tunnel-kh",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    assert_passed(&r);

    // Another host key: host_key_mismatch, no login attempted, no key material in the message.
    let t = ssh.tunnel(&ssh.key, None, &ssh.other_public);
    let r = res
        .test(
            &srv,
            "pg-tunnel-hostkey",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    let msg = assert_failed(&r, "host_key_mismatch");
    for key in [&ssh.host_key, &ssh.other_public] {
        let blob = key.split_whitespace().nth(1).unwrap();
        assert!(!msg.contains(&blob[20..40]), "the message shows key material: {msg}");
    }

    // A key the bastion does not accept: auth_failed, and the message says it is the SSH login.
    let t = ssh.tunnel(&ssh.other_key, None, &ssh.host_key);
    let r = res
        .test(
            &srv,
            "pg-tunnel-badkey",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    let msg = assert_failed(&r, "auth_failed");
    assert!(msg.contains("SSH"), "the message names the SSH login: {msg}");
    // The encrypted key with a wrong passphrase, or none: auth_failed, naming the key.
    let wrong_pp = canary();
    let t = ssh.tunnel(&ssh.enc_key, Some(&wrong_pp), &ssh.host_key);
    let r = res
        .test(
            &srv,
            "pg-tunnel-badpp",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    let msg = assert_failed(&r, "auth_failed");
    assert!(msg.contains("SSH"), "{msg}");
    let t = ssh.tunnel(&ssh.enc_key, None, &ssh.host_key);
    let r = res
        .test(
            &srv,
            "pg-tunnel-nopp",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    assert_failed(&r, "auth_failed");

    // Through the tunnel, the database's own refusal: auth_failed from PostgreSQL, not SSH.
    let wrong = canary();
    let r = res
        .test(
            &srv,
            "pg-tunnel-badpw",
            "postgres",
            pg.config(),
            &pg.user,
            &wrong,
            Some(ssh.good_tunnel()),
        )
        .await;
    let msg = assert_failed(&r, "auth_failed");
    assert!(!msg.contains("SSH"), "this is the database's refusal: {msg}");
    // Nothing listens behind the bastion: connect_refused, said by the bastion.
    let port = closed_port().await;
    let cfg = json!({"host": "127.0.0.1", "port": port, "database": pg.db});
    let r = res
        .test(
            &srv,
            "pg-tunnel-closed-db",
            "postgres",
            cfg,
            &pg.user,
            &pg.password,
            Some(ssh.good_tunnel()),
        )
        .await;
    let msg = assert_failed(&r, "connect_refused");
    assert!(msg.contains("bastion"), "{msg}");
    // The bastion itself is not there: connect_refused.
    let mut t = ssh.good_tunnel();
    t["port"] = json!(closed_port().await);
    let r = res
        .test(
            &srv,
            "pg-tunnel-no-bastion",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(t),
        )
        .await;
    let msg = assert_failed(&r, "connect_refused");
    assert!(msg.contains("bastion"), "{msg}");

    res.assert_clean(
        &srv,
        &[
            &pg.password,
            &wrong,
            &wrong_pp,
            &ssh.passphrase,
            &ssh.key,
            &ssh.pkcs8_key,
            &ssh.enc_key,
            &ssh.other_key,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_is_reached_through_an_ssh_tunnel_that_checks_the_host_key_and_the_ssh_login_on_every_backend() {
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        postgres_through_the_bastion(backend).await;
    }
}

// --------------------------------------------------------------- 3. MariaDB through a tunnel

async fn mariadb_through_the_bastion(b: Backend) {
    let m = Maria::from_env();
    let ssh = Bastion::from_env();
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let mut res = Results::default();

    let r = res
        .test(
            &srv,
            "my-tunnel",
            "mysql",
            m.config(&m.db),
            &m.user,
            &m.password,
            Some(ssh.good_tunnel()),
        )
        .await;
    assert_passed(&r);
    let t = ssh.tunnel(&ssh.enc_key, Some(&ssh.passphrase), &ssh.host_key);
    let r = res
        .test(
            &srv,
            "my-tunnel-enc",
            "mysql",
            m.config(&m.db),
            &m.user,
            &m.password,
            Some(t),
        )
        .await;
    assert_passed(&r);

    // The database's refusals behind the tunnel keep their codes.
    let wrong = canary();
    let r = res
        .test(
            &srv,
            "my-tunnel-badpw",
            "mysql",
            m.config(&m.db),
            &m.user,
            &wrong,
            Some(ssh.good_tunnel()),
        )
        .await;
    let msg = assert_failed(&r, "auth_failed");
    assert!(msg.contains("1045"), "{msg}");
    let missing = format!("{}_missing_{}", m.db, random_hex(3));
    let r = res
        .test(
            &srv,
            "my-tunnel-nodb",
            "mysql",
            m.config(&missing),
            &m.user,
            &m.password,
            Some(ssh.good_tunnel()),
        )
        .await;
    assert_failed(&r, "not_found");

    // The tunnel's own failures.
    let t = ssh.tunnel(&ssh.key, None, &ssh.other_public);
    let r = res
        .test(
            &srv,
            "my-tunnel-hostkey",
            "mysql",
            m.config(&m.db),
            &m.user,
            &m.password,
            Some(t),
        )
        .await;
    assert_failed(&r, "host_key_mismatch");
    let t = ssh.tunnel(&ssh.other_key, None, &ssh.host_key);
    let r = res
        .test(
            &srv,
            "my-tunnel-badkey",
            "mysql",
            m.config(&m.db),
            &m.user,
            &m.password,
            Some(t),
        )
        .await;
    let msg = assert_failed(&r, "auth_failed");
    assert!(msg.contains("SSH"), "{msg}");
    let port = closed_port().await;
    let cfg = json!({"host": "127.0.0.1", "port": port, "database": m.db});
    let r = res
        .test(
            &srv,
            "my-tunnel-closed",
            "mysql",
            cfg,
            &m.user,
            &m.password,
            Some(ssh.good_tunnel()),
        )
        .await;
    assert_failed(&r, "connect_refused");

    res.assert_clean(
        &srv,
        &[
            &m.password,
            &wrong,
            &ssh.passphrase,
            &ssh.key,
            &ssh.enc_key,
            &ssh.other_key,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_is_reached_through_an_ssh_tunnel_with_its_failures_still_named_on_every_backend() {
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        mariadb_through_the_bastion(backend).await;
    }
}

// ------------------------------------------------------------------------ 4. egress policy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_egress_allowance_neither_mariadb_nor_an_ssh_bastion_on_loopback_is_reached() {
    let m = Maria::from_env();
    let ssh = Bastion::from_env();
    let srv = Server::start(Backend::Sqlite).await;
    let mut res = Results::default();
    let r = res
        .test(&srv, "my-denied", "mysql", m.config(&m.db), &m.user, &m.password, None)
        .await;
    assert_failed(&r, "egress_denied");
    // The bastion is checked against the policy; the database behind it is the bastion's call,
    // but nothing gets that far.
    let r = res
        .test(
            &srv,
            "my-tunnel-denied",
            "mysql",
            m.config(&m.db),
            &m.user,
            &m.password,
            Some(ssh.good_tunnel()),
        )
        .await;
    let msg = assert_failed(&r, "egress_denied");
    assert!(msg.contains("bastion"), "{msg}");
    let pg = Pg::from_env();
    let r = res
        .test(
            &srv,
            "pg-tunnel-denied",
            "postgres",
            pg.config(),
            &pg.user,
            &pg.password,
            Some(ssh.good_tunnel()),
        )
        .await;
    assert_failed(&r, "egress_denied");
    res.assert_clean(&srv, &[&m.password, &pg.password, &ssh.key]).await;
}

// ------------------------------------------------------------------------ credvault exec

/// Runs `credvault exec` as a worker; (exit code, stdout, stderr).
fn exec(srv: &Server, worker: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(common::bin())
        .arg("exec")
        .args(args)
        .env("CREDVAULT_SERVER", &srv.base)
        .env("CREDVAULT_TOKEN", worker)
        .env("CREDVAULT_TOKEN_FILE", "/nonexistent/only-checked-when-no-token")
        .env_remove("PGPASSWORD")
        .env_remove("MYSQL_PWD")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The MariaDB command-line client of this machine (`mysql`, or `mariadb` where the old name
/// is gone).
fn mysql_client() -> &'static str {
    if std::path::Path::new("/usr/bin/mysql").exists() {
        "mysql"
    } else {
        "mariadb"
    }
}

/// `credvault exec` runs the real `psql` and `mysql` clients with the connection in the
/// variables they read (libpq's `PG*`, a private `my.cnf`), with nothing secret on a command
/// line: they log in, the command's status becomes exec's, the private directory is gone
/// afterwards, the command does not get the worker's token, and `--report-on-exit` reports
/// the outcome (journaled with the run ID).
async fn exec_runs_real_clients(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let (pg, m) = (Pg::from_env(), Maria::from_env());
    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(
            &org,
            "service_account",
            "exec-worker",
            &[("worker", common::Scope::Org(&org))],
        )
        .await;
    let pg_cred = db_cred(&srv, "exec-pg", "postgres", &pg.user, &pg.password, None).await;
    let pg_conn = connection(&srv, "exec-pg", "postgres", pg.config(), &pg_cred).await;
    let (code, out, err) = exec(
        &srv,
        &worker,
        &[
            "--connection",
            &pg_conn,
            "--run-id",
            "exec-run-1",
            "--",
            "psql",
            "-X",
            "-tAc",
            "select current_user",
        ],
    );
    assert_eq!((code, out.trim()), (0, pg.user.as_str()), "{err}");

    // The command's status is exec's; statuses named as auth failures are reported as such.
    let script = "test -z \"$CREDVAULT_TOKEN$CREDVAULT_TOKEN_FILE\" && test -n \"$PGPASSWORD\" && exit 7";
    let (code, _, err) = exec(
        &srv,
        &worker,
        &[
            "--connection",
            &pg_conn,
            "--run-id",
            "exec-run-2",
            "--report-on-exit",
            "--auth-failed-status",
            "7",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, 7, "the command saw no worker token and a password; {err}");

    // A wrong password: psql's own failure status, reported as an error.
    let bad_cred = db_cred(&srv, "exec-pg-bad", "postgres", &pg.user, "not-the-password", None).await;
    let bad_conn = connection(&srv, "exec-pg-bad", "postgres", pg.config(), &bad_cred).await;
    let (code, _, err) = exec(
        &srv,
        &worker,
        &[
            "--connection",
            &bad_conn,
            "--run-id",
            "exec-run-3",
            "--report-on-exit",
            "--",
            "psql",
            "-X",
            "-tAc",
            "select 1",
        ],
    );
    assert_eq!(code, 2, "psql exits 2 when it cannot connect: {err}");
    assert!(err.contains("password authentication failed"), "{err}");

    let my_cred = db_cred(&srv, "exec-my", "mysql", &m.user, &m.password, None).await;
    let my_conn = connection(&srv, "exec-my", "mysql", m.config(&m.db), &my_cred).await;
    let query = format!(
        "echo \"$MYSQL_HOME\"; {} -N -B -e 'select current_user(), database()'",
        mysql_client()
    );
    let (code, out, err) = exec(
        &srv,
        &worker,
        &[
            "--connection",
            &my_conn,
            "--run-id",
            "exec-run-4",
            "--report-on-exit",
            "--",
            "sh",
            "-c",
            &query,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    let home = lines.next().unwrap().to_owned();
    assert_eq!(
        lines.next().unwrap(),
        format!("{}@127.0.0.1\t{}", m.user, m.db),
        "{out}"
    );
    assert!(home.contains("credvault-exec-"), "{home}");
    assert!(
        !std::path::Path::new(&home).exists(),
        "the private my.cnf directory outlives the command"
    );

    // Every resolve is journaled with its run, and so is each reported outcome.
    let events = srv
        .get("/v1/audit?action=resolve.report&limit=100", &srv.admin)
        .await
        .ok(200);
    let reports: Vec<(String, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (st(&e["details"]["run_id"]), st(&e["details"]["reported"])))
        .collect();
    for want in [
        ("exec-run-2", "auth_failed"),
        ("exec-run-3", "error"),
        ("exec-run-4", "ok"),
    ] {
        assert!(
            reports.iter().any(|(r, o)| (r.as_str(), o.as_str()) == want),
            "{want:?} not in {reports:?}"
        );
    }
    let resolves = srv
        .get("/v1/audit?action=connection.resolve&limit=100", &srv.admin)
        .await
        .ok(200);
    let text = resolves.to_string();
    for run in ["exec-run-1", "exec-run-2", "exec-run-3", "exec-run-4"] {
        assert!(text.contains(run), "{run} not journaled: {text}");
    }
    let journal = srv.get("/v1/audit?limit=500", &srv.admin).await.ok(200).to_string();
    assert_no_secret("the audit journal", &journal, &pg.password);
    assert_no_secret("the audit journal", &journal, &m.password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credvault_exec_runs_psql_and_mysql_with_the_connection_in_their_environment_on_every_backend() {
    for b in common::backends() {
        exec_runs_real_clients(b).await;
    }
}

// ------------------------------------------------------------------------- Apache Airflow 3

/// Apache Airflow 3 with credvault as its secrets backend (`clients/python/credvault/airflow.py`).
#[cfg(feature = "airflow-tests")]
mod airflow {
    use super::*;

    /// The DAG of the Airflow test: one task that logs in to PostgreSQL with the connection
    /// `warehouse` as `BaseHook.get_connection` returns it, and writes whom it logged in as.
    const AIRFLOW_DAG: &str = r#"
import os
import pendulum
import psycopg2
from airflow.sdk import dag, task, BaseHook

@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def credvault_probe():
    @task
    def login():
        c = BaseHook.get_connection("warehouse")
        with psycopg2.connect(host=c.host, port=c.port, dbname=c.schema, user=c.login, password=c.password) as conn:
            with conn.cursor() as cur:
                cur.execute("select current_user")
                user = cur.fetchone()[0]
        with open(os.environ["PROBE_OUT"], "w") as f:
            f.write(user)
    login()

credvault_probe()
"#;

    /// Runs `airflow dags test credvault_probe` with credvault as the secrets backend; returns
    /// (status, stdout and stderr, what the task wrote).
    fn airflow_dags_test(srv: &Server, worker: &str, home: &std::path::Path) -> (i32, String, Option<String>) {
        let airflow = std::env::var("CREDVAULT_TEST_AIRFLOW").unwrap_or_else(|_| {
            panic!("CREDVAULT_TEST_AIRFLOW is not set: the airflow-tests need Apache Airflow 3 (scripts/lib/airflow.sh; scripts/test installs it)")
        });
        let probe = home.join("probe.out");
        let _ = std::fs::remove_file(&probe);
        let client = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
        let run = |args: &[&str]| {
            std::process::Command::new(&airflow)
                .args(args)
                .env("AIRFLOW_HOME", home)
                .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
                .env("AIRFLOW__CORE__DAGS_FOLDER", home.join("dags"))
                .env("AIRFLOW__SECRETS__BACKEND", "credvault.airflow.CredvaultBackend")
                .env(
                    "AIRFLOW__SECRETS__BACKEND_KWARGS",
                    json!({"workspace_id": srv.ws_id}).to_string(),
                )
                .env("CREDVAULT_SERVER", &srv.base)
                .env("CREDVAULT_TOKEN", worker)
                .env("PYTHONPATH", &client)
                .env("PROBE_OUT", &probe)
                .output()
                .expect("the airflow command runs")
        };
        if !home.join("airflow.db").exists() {
            std::fs::create_dir_all(home.join("dags")).unwrap();
            std::fs::write(home.join("dags/credvault_probe.py"), AIRFLOW_DAG).unwrap();
            let out = run(&["db", "migrate"]);
            assert!(
                out.status.success(),
                "airflow db migrate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = run(&["dags", "test", "credvault_probe"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code().unwrap_or(-1),
            text,
            std::fs::read_to_string(&probe).ok(),
        )
    }

    /// Every file under `dir`, as text (Airflow's task logs).
    fn all_text(dir: &std::path::Path) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.push_str(&all_text(&p));
                } else if p.extension().is_none_or(|x| x != "db") {
                    out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()));
                }
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_airflow_3_task_logs_in_to_postgresql_with_a_credvault_connection() {
        let srv = Server::start_with(Backend::Sqlite, &ALLOW_LOOPBACK).await;
        let pg = Pg::from_env();
        let ws = srv.ws_id.clone();
        let (_, worker) = srv
            .principal(
                &srv.org_id,
                "service_account",
                "airflow-worker",
                &[("worker", common::Scope::Ws(&ws))],
            )
            .await;
        let cred = db_cred(&srv, "airflow-pg", "postgres", &pg.user, &pg.password, None).await;
        connection(&srv, "warehouse", "postgres", pg.config(), &cred).await;
        let home = std::env::temp_dir().join(format!("credvault-airflow-{}", random_hex(6)));

        // The task resolves `warehouse` by name through credvault and logs in.
        let (code, text, probe) = tokio::task::block_in_place(|| airflow_dags_test(&srv, &worker, &home));
        assert_eq!(probe.as_deref(), Some(pg.user.as_str()), "exit {code}: {text}");
        // The resolve is in credvault's journal with the DAG run, and the password nowhere in
        // Airflow's output or task logs (its masker hides what a backend returned).
        let events = srv
            .get("/v1/audit?action=connection.resolve&outcome=success", &srv.admin)
            .await
            .ok(200);
        let run_ids: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["details"]["run_id"].as_str())
            .collect();
        assert!(
            run_ids
                .iter()
                .any(|r| r.starts_with("airflow:credvault_probe:") && r.ends_with(":login")),
            "{run_ids:?}"
        );
        assert_no_secret("airflow's output", &text, &pg.password);
        assert_no_secret("airflow's task logs", &all_text(&home.join("logs")), &pg.password);

        // Control: with the credential disabled, credvault refuses and the task fails — Airflow
        // does not fall back to another backend.
        srv.post(&format!("/v1/credentials/{cred}/disable"), &srv.admin, json!({}))
            .await
            .ok(200);
        let (code, text, probe) = tokio::task::block_in_place(|| airflow_dags_test(&srv, &worker, &home));
        assert_eq!(probe, None, "exit {code}: {text}");
        assert!(text.contains("credential_disabled"), "{text}");
        let _ = std::fs::remove_dir_all(&home);
    }
}
