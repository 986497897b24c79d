//! `request_bodies`: arbitrary bodies sent to every route that takes one, through the real
//! router ([`credvault_api::router`]) over a real [`Service`] on a SQLite store, in process.
//!
//! The routes are read from the server's own OpenAPI document at start-up: every `post`,
//! `put` and `patch` operation, so a route added later is fuzzed without a change here. Path
//! parameters are filled with objects made at start-up (an organization, a workspace, a user,
//! three credentials, a connection, a pipeline, a role binding, a token).
//!
//! Input: a route byte (index into the sorted route list), a flags byte (content type; the
//! admin's token or a worker's, rarely none), a fixture byte (which credential fills `{id}`), then the body, in which
//! the markers `$ORG`, `$WS`, `$USER`, `$SA`, `$DB`, `$OAUTH`, `$API`, `$CONN` and `$PIPE` are
//! replaced by the fixtures' IDs (the fuzzer cannot guess random IDs).
//!
//! Promises checked: no panic; no 5xx; every 4xx is an `application/problem+json` document
//! whose `status` is the response's; a 2xx JSON response parses.
//!
//! `CREDVAULT_FUZZ_TRACE=1` prints every request's route, status and the start of the answer.
//!
//! The server is built once per process (building it costs a store, migrations and an Argon2
//! hash) and rebuilt every [`RESET_EVERY`] requests, so what earlier inputs changed (an
//! offboarded user, disabled credential types) does not hide the code paths for long.

use std::sync::{Mutex, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use credvault_api::ApiConfig;
use credvault_core::{CoreConfig, EgressPolicy, Service};
use credvault_crypto::Keyring;
use credvault_store::{Store, StoreOptions};

use crate::scratch::ScratchDir;

/// Requests served by one server before it is rebuilt.
pub const RESET_EVERY: u64 = 20_000;

/// The entry point.
pub fn run(data: &[u8]) {
    let [route_b, flags, fixture, body @ ..] = data else {
        return;
    };
    let h = harness();
    let mut guard = h.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.as_ref().is_some_and(|s| s.served >= RESET_EVERY)
        && let Some(old) = guard.take()
    {
        old.close();
    }
    let server = guard.get_or_insert_with(|| h.rt.block_on(Server::start()));
    server.served += 1;
    let route = &server.routes[usize::from(*route_b) % server.routes.len()];
    let path = route.path(&server.fixtures, *fixture);
    let content_type = match flags % 8 {
        0..=4 => Some("application/json"),
        5 => Some("application/merge-patch+json; charset=utf-8"),
        6 => Some("text/plain"),
        _ => None,
    };
    let token = if flags & 0xf0 == 0xf0 {
        None
    } else if flags & 0x08 != 0 {
        Some(server.worker_token.as_str())
    } else {
        Some(server.token.as_str())
    };
    let body = server.fixtures.substitute(body);
    let (status, ct, bytes) = h.rt.block_on(send(
        &server.router,
        route.method.clone(),
        &path,
        content_type,
        token,
        body,
    ));
    let what = format!("{} {path}", route.method);
    // A debugging aid for whoever runs the fuzzer, on their terminal.
    #[allow(clippy::disallowed_macros)]
    if std::env::var_os("CREDVAULT_FUZZ_TRACE").is_some() {
        eprintln!(
            "{what} -> {status} {}",
            String::from_utf8_lossy(&bytes).chars().take(160).collect::<String>()
        );
    }
    check(&what, status, ct.as_deref(), &bytes);
}

/// The promises every response keeps.
fn check(what: &str, status: StatusCode, content_type: Option<&str>, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert!(!status.is_server_error(), "{what}: {status}: {text}");
    if status.is_client_error() {
        assert_eq!(
            content_type,
            Some("application/problem+json"),
            "{what}: {status} is not a problem document: {text}"
        );
        let doc: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => panic!("{what}: {status}: the problem document does not parse ({e}): {text}"),
        };
        assert_eq!(
            doc.get("status").and_then(Value::as_u64),
            Some(u64::from(status.as_u16())),
            "{what}: problem status differs from {status}: {text}"
        );
        assert!(
            doc.get("code").is_some_and(Value::is_string),
            "{what}: problem without a code: {text}"
        );
    } else if status.is_success() && content_type.is_some_and(|c| c.starts_with("application/json")) && !body.is_empty()
    {
        assert!(
            serde_json::from_slice::<Value>(body).is_ok(),
            "{what}: {status}: the JSON response does not parse: {text}"
        );
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    server: Mutex<Option<Server>>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot start a runtime: {e}"),
        };
        Harness {
            rt,
            server: Mutex::new(None),
        }
    })
}

/// A route that takes a body.
struct Route {
    method: Method,
    template: String,
}

impl Route {
    /// The path with its parameters filled in.
    fn path(&self, f: &Fixtures, pick: u8) -> String {
        let segs: Vec<&str> = self.template.split('/').collect();
        let mut out = Vec::with_capacity(segs.len());
        for (i, seg) in segs.iter().enumerate() {
            let Some(param) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                out.push((*seg).to_owned());
                continue;
            };
            let parent = if i > 0 { segs[i - 1] } else { "" };
            out.push(f.fill(parent, param, pick));
        }
        out.join("/")
    }
}

/// Objects made at start-up, to fill path parameters.
struct Fixtures {
    org: String,
    workspace: String,
    user: String,
    service_account: String,
    credentials: Vec<String>,
    connection: String,
    pipeline: String,
    binding: String,
    token: String,
}

impl Fixtures {
    /// The body with the ID markers replaced.
    fn substitute(&self, body: &[u8]) -> Vec<u8> {
        if !body.contains(&b'$') {
            return body.to_vec();
        }
        let cred = |i: usize| self.credentials.get(i).map_or("", String::as_str);
        let markers: [(&[u8], &str); 9] = [
            (b"$ORG", &self.org),
            (b"$WS", &self.workspace),
            (b"$USER", &self.user),
            (b"$SA", &self.service_account),
            (b"$DB", cred(0)),
            (b"$OAUTH", cred(1)),
            (b"$API", cred(2)),
            (b"$CONN", &self.connection),
            (b"$PIPE", &self.pipeline),
        ];
        let mut out = Vec::with_capacity(body.len() + 64);
        let mut i = 0;
        'outer: while i < body.len() {
            if body[i] == b'$' {
                for (m, id) in &markers {
                    if body[i..].starts_with(m) {
                        out.extend_from_slice(id.as_bytes());
                        i += m.len();
                        continue 'outer;
                    }
                }
            }
            out.push(body[i]);
            i += 1;
        }
        out
    }

    fn fill(&self, parent: &str, param: &str, pick: u8) -> String {
        match (parent, param) {
            ("orgs", "id") => self.org.clone(),
            ("workspaces", "id") => self.workspace.clone(),
            ("principals", "id") => self.user.clone(),
            ("credentials", "id") => self.credentials[usize::from(pick) % self.credentials.len()].clone(),
            ("connections", "id") => self.connection.clone(),
            ("pipelines", "id") => self.pipeline.clone(),
            ("role-bindings", "id") => self.binding.clone(),
            ("tokens", "id") => self.token.clone(),
            ("versions", "n") => "1".into(),
            ("reports", "kind") => "inventory".into(),
            _ => panic!("request_bodies: no fixture for {{{param}}} after /{parent}/ — add one to Fixtures::fill"),
        }
    }
}

/// One server: store, service, router, admin token, fixtures and the routes to fuzz.
struct Server {
    router: Router,
    service: Service,
    token: String,
    worker_token: String,
    fixtures: Fixtures,
    routes: Vec<Route>,
    served: u64,
    _dir: ScratchDir,
}

impl Server {
    async fn start() -> Server {
        let dir = ScratchDir::new();
        let url = dir.sqlite_url();
        let store = match tokio::task::spawn_blocking(move || Store::open(&url, &StoreOptions::default())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("cannot open the store: {e}"),
            Err(e) => panic!("store task failed: {e}"),
        };
        // Tests of connections must not reach out: no time to connect, none to finish.
        let egress = EgressPolicy {
            connect_timeout: std::time::Duration::from_millis(1),
            total_timeout: std::time::Duration::from_millis(20),
            ..EgressPolicy::default()
        };
        let config = CoreConfig {
            egress,
            ..CoreConfig::default()
        };
        let service = Service::new(store, Keyring::generate(), config);
        let boot = match service.bootstrap().await {
            Ok(Some(b)) => b,
            Ok(None) => panic!("a fresh store is already initialized"),
            Err(e) => panic!("bootstrap failed: {e}"),
        };
        let router = credvault_api::router(service.clone(), &ApiConfig::default());
        let token = boot.admin_token.as_str().to_owned();
        let mut s = Server {
            router,
            service,
            token,
            worker_token: String::new(),
            fixtures: Fixtures {
                org: boot.org_id.clone(),
                workspace: boot.workspace_id.clone(),
                user: String::new(),
                service_account: String::new(),
                credentials: Vec::new(),
                connection: String::new(),
                pipeline: String::new(),
                binding: String::new(),
                token: String::new(),
            },
            routes: Vec::new(),
            served: 0,
            _dir: dir,
        };
        s.make_fixtures().await;
        s.routes = s.body_routes().await;
        s
    }

    /// Sends a known-good request and returns its `id`.
    async fn create(&self, path: &str, body: Value) -> String {
        match self.create_full(path, body).await.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => panic!("request_bodies fixture: POST {path} answered no id"),
        }
    }

    /// Sends a known-good request and returns the answer.
    async fn create_full(&self, path: &str, body: Value) -> Value {
        let bytes = body.to_string().into_bytes();
        let (status, _, out) = send(
            &self.router,
            Method::POST,
            path,
            Some("application/json"),
            Some(&self.token),
            bytes,
        )
        .await;
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        if !status.is_success() {
            panic!("request_bodies fixture: POST {path} {body} answered {status}: {v}");
        }
        v
    }

    async fn make_fixtures(&mut self) {
        let (org, ws) = (self.fixtures.org.clone(), self.fixtures.workspace.clone());
        let user = self
            .create(
                "/v1/principals",
                json!({"org_id": org, "kind": "user", "name": "fuzz-user"}),
            )
            .await;
        let sa = self
            .create(
                "/v1/principals",
                json!({"org_id": org, "kind": "service_account", "name": "fuzz-worker"}),
            )
            .await;
        let binding = self
            .create(
                "/v1/role-bindings",
                json!({"principal_id": user, "role": "builder", "workspace_id": ws}),
            )
            .await;
        self.create(
            "/v1/role-bindings",
            json!({"principal_id": sa, "role": "worker", "workspace_id": ws}),
        )
        .await;
        let minted = self
            .create_full("/v1/tokens", json!({"principal_id": sa, "name": "fuzz"}))
            .await;
        let (Some(token), Some(secret)) = (
            minted.get("id").and_then(Value::as_str),
            minted.get("token").and_then(Value::as_str),
        ) else {
            panic!("request_bodies fixture: a token without id or secret: {minted}");
        };
        let token = token.to_owned();
        self.worker_token = secret.to_owned();
        let db = self
            .create(
                "/v1/credentials",
                json!({"name": "fuzz-db", "type": "database", "environment": "dev", "workspace_id": ws,
                       "allowed_destinations": ["db.example.com:5432"],
                       "fields": {"username": "loader", "password": "fuzz-password"}}),
            )
            .await;
        let oauth = self
            .create(
                "/v1/credentials",
                json!({"name": "fuzz-oauth", "type": "oauth", "variant": "authorization_code", "environment": "dev",
                       "workspace_id": ws, "fields": {"client_id": "c", "client_secret": "s",
                       "authorization_url": "https://auth.example.com/authorize",
                       "token_url": "https://auth.example.com/token", "scopes": ["read"]}}),
            )
            .await;
        let api_key = self
            .create(
                "/v1/credentials",
                json!({"name": "fuzz-api", "type": "api_key", "environment": "dev", "workspace_id": ws,
                       "fields": {"parts": [{"name": "X-Key", "value": "k", "in": "header"}]}}),
            )
            .await;
        let connection = self
            .create(
                "/v1/connections",
                json!({"name": "fuzz-conn", "workspace_id": ws, "environment": "dev", "kind": "postgres",
                       "config": {"host": "db.example.com", "database": "app"}, "credential_id": db}),
            )
            .await;
        let pipeline = self
            .create(
                "/v1/pipelines",
                json!({"name": "fuzz-pipe", "workspace_id": ws, "connection_ids": [connection]}),
            )
            .await;
        self.fixtures = Fixtures {
            org,
            workspace: ws,
            user,
            service_account: sa,
            credentials: vec![db, oauth, api_key],
            connection,
            pipeline,
            binding,
            token,
        };
    }

    /// Every `post`, `put` and `patch` of the OpenAPI document, sorted by path and method.
    async fn body_routes(&self) -> Vec<Route> {
        let (status, _, out) = send(&self.router, Method::GET, "/v1/openapi.json", None, None, Vec::new()).await;
        let doc: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            panic!("no paths in the OpenAPI document ({status})");
        };
        let mut routes = Vec::new();
        for (path, ops) in paths {
            for (name, method) in [("patch", Method::PATCH), ("post", Method::POST), ("put", Method::PUT)] {
                if ops.get(name).is_some() {
                    routes.push(Route {
                        method,
                        template: path.clone(),
                    });
                }
            }
        }
        routes.sort_by(|a, b| (&a.template, a.method.as_str()).cmp(&(&b.template, b.method.as_str())));
        // Every parameter must have a fixture (panics at start-up otherwise).
        for r in &routes {
            let _ = r.path(&self.fixtures, 0);
        }
        assert!(!routes.is_empty(), "no route takes a body");
        routes
    }

    fn close(self) {
        self.service.store().close();
    }
}

/// One request through the router; the response's status, content type and body.
async fn send(
    router: &Router,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    token: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match req.body(Body::from(body)) {
        Ok(r) => r,
        Err(e) => panic!("cannot build a request for {path}: {e}"),
    };
    let resp = match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024).await {
        Ok(b) => b.to_vec(),
        Err(e) => panic!("cannot read the response to {path}: {e}"),
    };
    (status, ct, bytes)
}

/// The routes fuzzed, as `METHOD /path` in selector order (for seeding and the README).
pub fn route_list() -> Vec<String> {
    let h = harness();
    let mut guard = h.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = guard.get_or_insert_with(|| h.rt.block_on(Server::start()));
    server
        .routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .collect()
}

/// Audit events of a fresh server's organization chain, oldest first, as `GET /v1/audit`
/// returns them (for the test that checks [`crate::audit_verify::event_hash`] against the
/// server's hashes).
pub fn audit_events() -> Vec<Value> {
    let h = harness();
    let server = h.rt.block_on(Server::start());
    let path = format!("/v1/audit?org_id={}&limit=500", server.fixtures.org);
    let (status, _, out) = h.rt.block_on(send(
        &server.router,
        Method::GET,
        &path,
        None,
        Some(&server.token),
        Vec::new(),
    ));
    server.close();
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    let items = v
        .get("items")
        .or_else(|| v.get("events"))
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| v.as_array().cloned());
    let Some(mut items) = items else {
        panic!("GET {path}: {status}: {v}");
    };
    items.sort_by_key(|e| e.get("seq").and_then(Value::as_i64));
    items
}

/// Stops the server (its store's writer thread) and removes its directory.
pub fn shutdown() {
    let h = harness();
    let mut guard = h.server.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = guard.take() {
        s.close();
    }
}
