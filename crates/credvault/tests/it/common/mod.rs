//! Test harness: starts the real `credvault` binary on a fresh data directory (and, with the
//! `postgres-tests` feature, a fresh PostgreSQL database), talks to it over real HTTP, and
//! offers one helper per API so tests read as data.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod tls;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// Which store a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Every backend this test run covers: SQLite always; PostgreSQL with `--features postgres-tests`.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if cfg!(feature = "postgres-tests") {
        v.push(Backend::Postgres);
    }
    v
}

/// `n` random bytes as hex (unique names for databases, organizations, credentials).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A JSON string's value; panics (naming the value) on anything else.
pub fn st(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_owned()
}

/// A loopback port nobody listens on (bound, read and released).
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = l.local_addr().unwrap().port();
    drop(l);
    p
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("credvault-test-{}", random_hex(8)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs blocking client code (the synchronous `postgres` crate starts its own runtime) on a
/// plain thread, so it works from inside async tests.
pub fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

/// A fresh PostgreSQL database for one test, dropped at the end.
pub struct PgDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDb {
    pub fn create() -> PgDb {
        let admin_url = std::env::var("CREDVAULT_TEST_PG_URL")
            .expect("CREDVAULT_TEST_PG_URL must name a PostgreSQL server (postgres://user:pw@host:port/postgres); scripts/test starts one");
        let name = format!("cvt_{}", random_hex(6));
        let (u, n) = (admin_url.clone(), name.clone());
        off_runtime(move || {
            let mut c = postgres::Client::connect(&u, postgres::NoTls).expect("cannot reach the test PostgreSQL");
            c.batch_execute(&format!("CREATE DATABASE {n}")).unwrap();
        });
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        PgDb {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (u, n) = (self.admin_url.clone(), self.name.clone());
        off_runtime(move || {
            if let Ok(mut c) = postgres::Client::connect(&u, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
            }
        });
    }
}

/// The path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_credvault")
}

/// A running server.
pub struct Server {
    pub backend: Backend,
    pub base: String,
    pub admin: String,
    /// The bootstrap admin's UI password (sign-in name `admin`).
    pub admin_password: String,
    pub org_id: String,
    pub ws_id: String,
    pub data: TempDir,
    pub pg: Option<PgDb>,
    child: Option<Child>,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    pub http: reqwest::Client,
}

/// A response: status and JSON body (or the raw text as a JSON string).
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
    pub text: String,
}

impl Resp {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn ok(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self.body
    }
    /// Asserts a problem document with this status and code.
    #[track_caller]
    pub fn problem(self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "not a problem document: {} {}",
            self.content_type,
            self.text
        );
        assert_eq!(self.body["code"], code, "unexpected code; body: {}", self.text);
        self.body
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_default().to_owned()
    }
}

fn pump(
    r: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    first_line: Option<std::sync::mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut first_line = first_line;
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &first_line
                && line.contains("listening on http://")
            {
                let _ = tx.send(line.clone());
                first_line = None;
            }
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
}

impl Server {
    /// Starts a fresh server on `backend`.
    pub async fn start(backend: Backend) -> Server {
        Self::start_with(backend, &[]).await
    }

    /// Starts a fresh server with extra `serve` arguments.
    pub async fn start_with(backend: Backend, extra: &[&str]) -> Server {
        let data = TempDir::new();
        let pg = (backend == Backend::Postgres).then(PgDb::create);
        Self::start_opts(backend, data, pg, extra, &[]).await
    }

    /// Starts a server on a given data directory (and database), with extra arguments and
    /// environment. Works on an already initialized store: then `admin`, `org_id` and `ws_id`
    /// are empty (keep them from the first start, or use [`Server::restart`]).
    pub async fn start_opts(
        backend: Backend,
        data: TempDir,
        pg: Option<PgDb>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--listen")
            .arg("127.0.0.1:0");
        if let Some(pg) = &pg {
            cmd.arg("--database-url").arg(&pg.url);
        }
        cmd.args(extra);
        cmd.env_remove("CREDVAULT_TOKEN").env("CREDVAULT_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("cannot start credvault");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        pump(child.stdout.take().unwrap(), stdout.clone(), Some(tx));
        pump(child.stderr.take().unwrap(), stderr.clone(), None);
        let line = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; stderr:\n{}", stderr.lock().unwrap());
            }
        };
        let addr = line
            .split("listening on http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        let out = stdout.lock().unwrap().clone();
        let grab = |prefix: &str| -> String {
            out.lines()
                .find(|l| l.contains(prefix))
                .map(|l| {
                    l.rsplit(' ')
                        .next()
                        .unwrap()
                        .trim_matches(|c| c == '(' || c == ')')
                        .to_owned()
                })
                .unwrap_or_default()
        };
        let admin = grab("admin token");
        let admin_password = out
            .lines()
            .find_map(|l| l.split("UI sign-in: admin / ").nth(1))
            .and_then(|r| r.split(' ').next())
            .unwrap_or_default()
            .to_owned();
        let org_id = grab("organization:");
        let ws_id = grab("workspace:");
        Server {
            backend,
            base: format!("http://{addr}"),
            admin,
            admin_password,
            org_id,
            ws_id,
            data,
            pg,
            child: Some(child),
            stdout,
            stderr,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request failed (is the server down?)");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Resp {
            status,
            body,
            content_type,
            text,
        }
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(&self, method: &str, path: &str, token: Option<&str>, content_type: &str, body: Vec<u8>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("request failed (is the server down?)");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Resp {
            status,
            body,
            content_type,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("POST", path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("PATCH", path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call("DELETE", path, Some(token), None).await
    }

    /// Creates a principal in `org` with `role` bound at `scope` (`Scope::Org`/`Scope::Ws`) and
    /// returns (principal id, token).
    pub async fn principal(
        &self,
        org: &str,
        kind: &str,
        name: &str,
        bindings: &[(&str, Scope<'_>)],
    ) -> (String, String) {
        let p = self
            .post(
                "/v1/principals",
                &self.admin,
                json!({"org_id": org, "kind": kind, "name": name}),
            )
            .await
            .ok(201);
        let pid = p["id"].as_str().unwrap().to_owned();
        for (role, scope) in bindings {
            let mut b = json!({"principal_id": pid, "role": role});
            match scope {
                Scope::Org(o) => b["org_id"] = json!(o),
                Scope::Ws(w) => b["workspace_id"] = json!(w),
            }
            self.post("/v1/role-bindings", &self.admin, b).await.ok(201);
        }
        let t = self
            .post("/v1/tokens", &self.admin, json!({"principal_id": pid}))
            .await
            .ok(201);
        (pid, t["token"].as_str().unwrap().to_owned())
    }

    /// A user holding `role` on the default organization.
    pub async fn user_with_role(&self, role: &str) -> String {
        let name = format!("{role}-{}", random_hex(3));
        let org = self.org_id.clone();
        self.principal(&org, "user", &name, &[(role, Scope::Org(&org))]).await.1
    }

    /// Creates a `database` credential in the default workspace and returns its body.
    pub async fn database_credential(&self, token: &str, name: &str, password: &str) -> Value {
        self.post(
            "/v1/credentials",
            token,
            json!({"name": name, "type": "database", "workspace_id": self.ws_id, "environment": "prod",
                   "labels": {"system": "postgres", "owner_team": "data-platform"},
                   "fields": {"username": "loader", "password": password}}),
        )
        .await
        .ok(201)
    }

    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        format!("{}\n{}", self.stdout.lock().unwrap(), self.stderr.lock().unwrap())
    }

    /// The SQLite database path (SQLite backend).
    pub fn sqlite_path(&self) -> PathBuf {
        self.data.path().join("credvault.db")
    }

    /// Runs SQL directly against the store (for tamper tests).
    pub fn raw_sql(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let c = rusqlite::Connection::open(self.sqlite_path()).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                c.execute_batch(sql).unwrap();
            }
            Backend::Postgres => {
                let (u, sql) = (self.pg.as_ref().unwrap().url.clone(), sql.to_owned());
                off_runtime(move || {
                    let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
                    c.batch_execute(&sql).unwrap();
                });
            }
        }
    }

    /// Stops this server and starts a new one on the same data directory and database,
    /// keeping the admin token and IDs learned at the first start.
    pub async fn restart(self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut old = self;
        old.stop();
        let (backend, admin, org_id, ws_id) = (old.backend, old.admin.clone(), old.org_id.clone(), old.ws_id.clone());
        let data = std::mem::replace(&mut old.data, TempDir(PathBuf::new()));
        let pg = old.pg.take();
        let mut s = Self::start_opts(backend, data, pg, extra, env).await;
        s.admin = admin;
        s.admin_password = old.admin_password.clone();
        s.org_id = org_id;
        s.ws_id = ws_id;
        s
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Scope of a role binding in test setups.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    Org(&'a str),
    Ws(&'a str),
}

/// Runs `f` once per backend.
macro_rules! each_backend {
    ($f:ident) => {
        for backend in common::backends() {
            eprintln!("--- backend {backend:?}");
            $f(backend).await;
        }
    };
}
