//! OAuth credentials against a real authorization server (panva's `oidc-provider`, started by
//! `scripts/lib/oidc.sh`: dynamic client registration, dev login and consent screens, PKCE
//! required, rotating refresh tokens, client credentials, revocation and introspection), over
//! real HTTP, on SQLite and PostgreSQL:
//!
//! consent with the authorization code and PKCE driven through the provider's own forms; the
//! callback page; single-use `state` (replayed, forged and expired states refused and
//! audited); refresh ahead of expiry with refresh-token rotation (the old refresh token is dead
//! at the provider and never sent again); single-flight refresh across 50 concurrent resolves
//! on one node (also with a refresh skew longer than the token lifetime) and across two nodes
//! on one PostgreSQL database (by chance over many rounds, and the losing interleaving forced
//! with a row lock); `invalid_grant` turning the grant into `needs_reauthorization` (and a
//! later resolve failing fast); a failing token endpoint; the client-credentials variant;
//! offboarding and re-consent under a service account; purge revoking the refresh token at the
//! provider (and a refused purge revoking nothing); and no token, code or client secret
//! anywhere but in resolve answers.
//!
//! Needs `CREDVAULT_TEST_OIDC_ISSUER` (`source scripts/lib/oidc.sh; oidc_start DIR PORT`); any
//! access-token lifetime up to an hour works, a short one (`OIDC_ACCESS_TTL=60`) is closer to
//! real providers.
#![cfg(feature = "server-tests")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{random_hex, st};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Backend, Resp, Scope, Server, TempDir};
use serde_json::{Value, json};

/// An `access_token_expires_at` long past: credvault then considers the access token expired.
const LONG_AGO: &str = "2020-01-01T00:00:00Z";

/// The scopes of authorization-code credentials.
const SCOPES: [&str; 3] = ["openid", "offline_access", "api:read"];

// ---------------------------------------------------------------------------- the provider

fn issuer() -> String {
    match std::env::var("CREDVAULT_TEST_OIDC_ISSUER") {
        Ok(s) if !s.trim().is_empty() => s.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "CREDVAULT_TEST_OIDC_ISSUER is not set: these tests need a running oidc-provider. Start one with \
             `OIDC_ACCESS_TTL=60; source scripts/lib/oidc.sh; oidc_start /tmp/oidc-$$ 56150; export CREDVAULT_TEST_OIDC_ISSUER` \
             (scripts/test does this)"
        ),
    }
}

/// A client registered at the provider.
#[derive(Clone, Debug)]
struct OidcClient {
    id: String,
    secret: String,
}

/// The authorization server, spoken to directly (as a browser and as the client).
struct Provider {
    issuer: String,
    /// Follows no redirects: the consent flow is walked step by step.
    http: reqwest::Client,
}

/// Cookies of one browser session (name, value, path); reqwest's cookie store is not enabled
/// in this workspace.
#[derive(Default)]
struct Jar(Vec<(String, String, String)>);

impl Jar {
    fn store(&mut self, headers: &reqwest::header::HeaderMap) {
        for h in headers.get_all("set-cookie") {
            let Ok(s) = h.to_str() else { continue };
            let mut parts = s.split(';');
            let Some((name, value)) = parts.next().and_then(|nv| nv.trim().split_once('=')) else {
                continue;
            };
            let path = parts
                .filter_map(|a| a.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("path"))
                .map(|(_, v)| v.to_owned())
                .unwrap_or_else(|| "/".to_owned());
            let expired = s.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
            self.0.retain(|(n, _, p)| !(n == name && *p == path));
            if !expired && !value.is_empty() {
                self.0.push((name.to_owned(), value.to_owned(), path));
            }
        }
    }

    fn header(&self, path: &str) -> String {
        self.0
            .iter()
            .filter(|(_, _, p)| path.starts_with(p.as_str()))
            .map(|(n, v, _)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in one HTML tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let i = tag.find(&pat)? + pat.len();
    let j = tag[i..].find('"')? + i;
    Some(unescape(&tag[i..j]))
}

/// The first form of a page: its action and its hidden inputs.
fn parse_form(html: &str) -> (String, Vec<(String, String)>) {
    let start = html
        .find("<form")
        .unwrap_or_else(|| panic!("no form on the provider's page:\n{html}"));
    let form = &html[start..];
    let tag_end = form.find('>').unwrap();
    let action = attr(&form[..tag_end], "action").unwrap_or_else(|| panic!("a form without action:\n{html}"));
    let body = &form[..form.find("</form>").unwrap_or(form.len())];
    let mut hidden = Vec::new();
    for seg in body.split("<input").skip(1) {
        let tag = &seg[..seg.find('>').unwrap_or(seg.len())];
        if attr(tag, "type").as_deref() == Some("hidden")
            && let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value"))
        {
            hidden.push((n, v));
        }
    }
    (action, hidden)
}

impl Provider {
    fn new() -> Provider {
        Provider {
            issuer: issuer(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Dynamic client registration for a credvault server's callback.
    async fn register(&self, redirect_uri: &str) -> OidcClient {
        self.register_with(redirect_uri, "client_secret_basic").await
    }

    /// Registration with a token endpoint authentication method (the provider then refuses
    /// any other).
    async fn register_with(&self, redirect_uri: &str, auth_method: &str) -> OidcClient {
        let r = self
            .http
            .post(format!("{}/reg", self.issuer))
            .json(&json!({
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                "response_types": ["code"],
                "token_endpoint_auth_method": auth_method,
                "scope": "openid offline_access api:read",
            }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cannot reach the OIDC provider at {}: {e}", self.issuer));
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "client registration failed: {v}");
        OidcClient {
            id: v["client_id"].as_str().unwrap().to_owned(),
            secret: v["client_secret"].as_str().unwrap().to_owned(),
        }
    }

    async fn post_form(&self, path: &str, c: &OidcClient, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.issuer))
            .basic_auth(&c.id, Some(&c.secret))
            .header("accept", "application/json")
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A token request straight at the token endpoint.
    async fn token(&self, c: &OidcClient, form: &[(&str, &str)]) -> (u16, Value) {
        self.post_form("/token", c, form).await
    }

    /// Whether the provider considers `token` active (RFC 7662; does not consume it).
    async fn active(&self, c: &OidcClient, token: &str) -> bool {
        let (status, v) = self.post_form("/token/introspection", c, &[("token", token)]).await;
        assert_eq!(status, 200, "introspection failed: {v}");
        v["active"] == json!(true)
    }

    /// RFC 7009 revocation.
    async fn revoke(&self, c: &OidcClient, token: &str, hint: &str) {
        let (status, v) = self
            .post_form("/token/revocation", c, &[("token", token), ("token_type_hint", hint)])
            .await;
        assert_eq!(status, 200, "revocation failed: {v}");
    }

    /// Asserts that the provider refuses `refresh_token` (and thereby uses it up, if it was
    /// still good: call this last).
    async fn assert_refresh_token_dead(&self, c: &OidcClient, refresh_token: &str, what: &str) {
        let (status, v) = self
            .token(c, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}: the provider should refuse this refresh token, answered {status} {v}"
        );
    }

    /// The access-token lifetime the provider hands out (a client-credentials grant).
    async fn access_ttl(&self, c: &OidcClient) -> i64 {
        let (status, v) = self
            .token(c, &[("grant_type", "client_credentials"), ("scope", "api:read")])
            .await;
        assert_eq!(status, 200, "client credentials at the provider: {v}");
        v["expires_in"].as_i64().unwrap()
    }

    /// Walks a browser through login and consent, starting at `authorization_url`, and
    /// returns the URL the provider finally redirects to (credvault's callback, not visited).
    async fn consent(&self, authorization_url: &str, callback: &str, login: &str) -> String {
        let mut jar = Jar::default();
        let mut url = reqwest::Url::parse(authorization_url).unwrap();
        let mut form: Option<Vec<(String, String)>> = None;
        let mut trail = Vec::new();
        for _ in 0..20 {
            if url.as_str().starts_with(callback) {
                return url.to_string();
            }
            trail.push(format!(
                "{} {}",
                if form.is_some() { "POST" } else { "GET" },
                url.path()
            ));
            let mut req = match form.take() {
                Some(f) => self.http.post(url.clone()).form(&f),
                None => self.http.get(url.clone()),
            };
            let cookie = jar.header(url.path());
            if !cookie.is_empty() {
                req = req.header("cookie", cookie);
            }
            let resp = req.send().await.unwrap();
            jar.store(resp.headers());
            let status = resp.status().as_u16();
            if (300..400).contains(&status) {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| panic!("a redirect without Location at {url}"))
                    .to_owned();
                url = url.join(&loc).unwrap();
                continue;
            }
            let body = resp.text().await.unwrap();
            assert_eq!(status, 200, "provider page {url} (after {trail:?}):\n{body}");
            let (action, mut fields) = parse_form(&body);
            if fields.iter().any(|(k, v)| k == "prompt" && v == "login") {
                fields.push(("login".into(), login.into()));
                fields.push(("password".into(), "any-password".into()));
            }
            url = url.join(&action).unwrap();
            form = Some(fields);
        }
        panic!("the consent flow did not reach {callback}: {trail:?}");
    }
}

// ------------------------------------------------------------------------------ credvault

/// Writes a server config file with this refresh skew (and no background scheduler).
fn write_config(dir: &Path, skew: i64) -> PathBuf {
    let p = dir.join("credvault.toml");
    std::fs::write(
        &p,
        // egress_allow here too: `scheduler tick` reads the file, not serve's flags.
        format!("oauth_refresh_skew_secs = {skew}\nscheduler_interval_secs = 0\negress_allow = [\"127.0.0.0/8\"]\n"),
    )
    .unwrap();
    p
}

/// A resolve answer: status and body.
async fn resolve_raw(http: reqwest::Client, base: String, token: String, conn: String, run: String) -> (u16, Value) {
    let r = http
        .post(format!("{base}/v1/resolve"))
        .bearer_auth(token)
        .json(&json!({"connection_id": conn, "run_id": run}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// One server, a client registered for its callback, and a worker.
struct Env {
    srv: Server,
    cfg_dir: TempDir,
    cfg: PathBuf,
    op: Provider,
    client: OidcClient,
    /// Access-token lifetime at the provider, seconds.
    ttl: i64,
    worker: String,
    admin_id: String,
    /// Answers (other than resolve) and pages seen, scanned for secrets at the end.
    seen: std::sync::Mutex<Vec<String>>,
}

fn serve_args(cfg: &Path) -> Vec<String> {
    vec![
        "--egress-allow".into(),
        "127.0.0.0/8".into(),
        "--config".into(),
        cfg.display().to_string(),
    ]
}

async fn setup(backend: Backend, skew: i64) -> Env {
    let op = Provider::new();
    let cfg_dir = TempDir::new();
    let cfg = write_config(cfg_dir.path(), skew);
    let args = serve_args(&cfg);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Server::start_with(backend, &args).await;
    let client = op.register(&format!("{}/v1/oauth/callback", srv.base)).await;
    let ttl = op.access_ttl(&client).await;
    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(&org, "service_account", "worker", &[("worker", Scope::Org(&org))])
        .await;
    let admin_id = st(&srv.get("/v1/me", &srv.admin).await.ok(200)["id"]);
    Env {
        srv,
        cfg_dir,
        cfg,
        op,
        client,
        ttl,
        worker,
        admin_id,
        seen: std::sync::Mutex::new(Vec::new()),
    }
}

impl Env {
    /// Restarts the server on the same store with another refresh skew.
    async fn restart(self, skew: i64) -> Env {
        let mut env = self;
        env.cfg = write_config(env.cfg_dir.path(), skew);
        let args = serve_args(&env.cfg);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The listen port changes, and the callback URL with it: the registered client only
        // knows the first one, so no consent after a restart.
        env.srv = env.srv.restart(&args, &[]).await;
        env
    }

    fn keep(&self, r: &Resp) {
        self.seen.lock().unwrap().push(r.text.clone());
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        let r = self.srv.get(path, token).await;
        self.keep(&r);
        r
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        let r = self.srv.post(path, token, body).await;
        self.keep(&r);
        r
    }

    /// An OAuth credential of this client in the default workspace.
    async fn oauth_cred(&self, token: &str, name: &str, variant: &str) -> String {
        self.oauth_cred_at(token, name, variant, &format!("{}/token", self.op.issuer))
            .await
    }

    async fn oauth_cred_at(&self, token: &str, name: &str, variant: &str, token_url: &str) -> String {
        let iss = &self.op.issuer;
        let mut fields = json!({
            "client_id": self.client.id, "client_secret": self.client.secret,
            "token_url": token_url, "revocation_url": format!("{iss}/token/revocation"),
        });
        if variant == "authorization_code" {
            fields["authorization_url"] = json!(format!("{iss}/auth"));
            fields["scopes"] = json!(SCOPES);
        } else {
            fields["scopes"] = json!(["api:read"]);
        }
        let c = self
            .post(
                "/v1/credentials",
                token,
                json!({"name": name, "type": "oauth", "variant": variant, "workspace_id": self.srv.ws_id,
                       "environment": "prod", "labels": {"system": "oidc-test", "owner_team": "data-platform"},
                       "fields": fields}),
            )
            .await
            .ok(201);
        st(&c["id"])
    }

    /// An `oauth_saas` connection holding `cred`.
    async fn connection(&self, cred: &str, name: &str) -> String {
        let c = self
            .post(
                "/v1/connections",
                &self.srv.admin,
                json!({"name": name, "workspace_id": self.srv.ws_id, "environment": "prod", "kind": "oauth_saas",
                       "config": {"api_base_url": "http://127.0.0.1:1/"}, "credential_id": cred}),
            )
            .await
            .ok(201);
        st(&c["id"])
    }

    /// Starts consent for `cred` as `token` (optionally recorded under `as_`).
    async fn authorize(&self, token: &str, cred: &str, as_: Option<&str>) -> Resp {
        let body = match as_ {
            Some(p) => json!({"as": p}),
            None => json!({}),
        };
        self.post(&format!("/v1/credentials/{cred}/oauth/authorize"), token, body)
            .await
    }

    /// Drives the provider's consent for an authorize answer; returns the callback URL.
    async fn consent(&self, start: &Value, login: &str) -> String {
        let redirect = st(&start["redirect_uri"]);
        assert_eq!(redirect, format!("{}/v1/oauth/callback", self.srv.base));
        self.op
            .consent(&st(&start["authorization_url"]), &redirect, login)
            .await
    }

    /// Visits credvault's callback as the browser.
    async fn callback(&self, url: &str) -> Resp {
        let path = url
            .strip_prefix(&self.srv.base)
            .unwrap_or_else(|| panic!("{url} is not this server's"));
        let r = self.srv.call("GET", path, None, None).await;
        self.keep(&r);
        r
    }

    /// Authorize, consent, callback: asserts success and returns the callback URL.
    async fn authorize_fully(&self, token: &str, cred: &str, as_: Option<&str>, login: &str) -> String {
        let start = self.authorize(token, cred, as_).await.ok(200);
        let url = self.consent(&start, login).await;
        let page = self.callback(&url).await;
        assert_eq!(page.status, 200, "callback page: {}", page.text);
        assert!(page.text.contains("Authorization complete"), "{}", page.text);
        url
    }

    async fn resolve(&self, conn: &str) -> Resp {
        let run = format!("run-{}", random_hex(4));
        self.srv
            .post(
                "/v1/resolve",
                &self.worker,
                json!({"connection_id": conn, "run_id": run}),
            )
            .await
    }

    /// Resolves successfully and returns the credential's plaintext fields.
    async fn fields(&self, conn: &str) -> Value {
        self.resolve(conn).await.ok(200)["credential"]["fields"].clone()
    }

    /// Every audit event of the default organization matching `query`, oldest first.
    async fn audit(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/audit?limit=500&{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&path, &self.srv.admin).await.ok(200);
            out.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    async fn refreshes(&self, cred: &str) -> Vec<Value> {
        self.audit(&format!("action=oauth.refresh&target_id={cred}")).await
    }

    async fn grant(&self, cred: &str) -> Value {
        let g = self.get("/v1/oauth/grants", &self.srv.admin).await.ok(200);
        g["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["credential_id"] == cred)
            .cloned()
            .unwrap_or_else(|| panic!("{cred} not in the grants listing: {g}"))
    }

    /// Replaces the current version: the fields of `fields` with these changes.
    async fn replace(&self, cred: &str, fields: &Value, changes: Value) {
        let mut f = fields.clone();
        for (k, v) in changes.as_object().unwrap() {
            f[k] = v.clone();
        }
        let r = self
            .srv
            .post(
                &format!("/v1/credentials/{cred}/versions"),
                &self.srv.admin,
                json!({"fields": f, "mode": "replace"}),
            )
            .await;
        self.keep(&r);
        r.ok(201);
    }

    /// No secret in the server's output, in any audit event (organization and instance
    /// chains), or in any answer other than resolve that this test saw.
    async fn assert_no_leak(&self, secrets: &[String]) {
        let mut secrets: Vec<String> = secrets.iter().filter(|s| !s.is_empty()).cloned().collect();
        secrets.push(self.client.secret.clone());
        let org_events = serde_json::to_string(&self.audit("").await).unwrap();
        let instance_events = serde_json::to_string(&self.audit("org_id=_instance").await).unwrap();
        let logs = self.srv.logs();
        let seen = self.seen.lock().unwrap().join("\n");
        for s in &secrets {
            assert!(s.len() >= 16, "a secret too short to look for: {s:?}");
            for (what, hay) in [
                ("the server's output", &logs),
                ("the organization's audit events", &org_events),
                ("the instance's audit events", &instance_events),
                ("an answer or page", &seen),
            ] {
                assert!(
                    !hay.contains(s.as_str()),
                    "a token or client secret ({}…) appears in {what}",
                    &s[..6]
                );
            }
        }
    }
}

/// A refresh skew no shorter than the provider's access-token lifetime (the server accepts at
/// most 3600 s, which is still enough for oidc-provider's default lifetime of an hour).
fn long_skew(ttl: i64) -> i64 {
    let skew = (ttl + 30).min(3600);
    assert!(
        skew >= ttl,
        "the provider's access tokens live {ttl}s, longer than the longest refresh skew; start it with OIDC_ACCESS_TTL=60"
    );
    skew
}

/// The secret values of resolved fields.
fn secrets_of(fields: &Value) -> Vec<String> {
    ["access_token", "refresh_token", "client_secret"]
        .iter()
        .filter_map(|k| fields[*k].as_str().map(str::to_owned))
        .collect()
}

// ------------------------------------------------------------------ 1. code + PKCE consent

async fn consent_flow(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;

    // Before consent: not authorized, and resolve says so.
    assert_eq!(env.grant(&cred).await["health"], "not_authorized");
    let r = env.resolve(&conn).await;
    env.keep(&r);
    r.problem(409, "oauth_not_authorized");

    // Start: the provider URL carries state, PKCE (S256) and the callback.
    let start = env.authorize(&admin, &cred, None).await.ok(200);
    let url = reqwest::Url::parse(&st(&start["authorization_url"])).unwrap();
    assert!(url.as_str().starts_with(&format!("{}/auth?", env.op.issuer)), "{url}");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], env.client.id);
    assert_eq!(q["redirect_uri"], format!("{}/v1/oauth/callback", env.srv.base));
    assert_eq!(q["state"], st(&start["state"]));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["scope"], SCOPES.join(" "));
    assert!(!q.contains_key("code_verifier"));
    assert!(!start.to_string().contains(&env.client.secret));
    assert!(start["expires_at"].as_str().is_some());

    // The browser consents at the provider and comes back with a code.
    let back = env.consent(&start, "alice").await;
    let page = env.callback(&back).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    assert!(page.text.contains("Authorization complete"), "{}", page.text);
    let code = reqwest::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(!page.text.contains(&code), "the callback page shows the code");

    // A new current version with the tokens sealed and who consented in the clear.
    let c = env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200);
    assert_eq!(c["current_version"], 2, "{c}");
    assert_eq!(c["fields"]["authorized_by"], env.admin_id.as_str(), "{c}");
    assert!(c["fields"]["authorized_at"].as_str().is_some(), "{c}");
    for k in ["access_token", "refresh_token", "client_secret"] {
        assert!(c["fields"].get(k).is_none(), "{k} in the clear: {c}");
        assert!(
            c["secret_fields_set"].as_array().unwrap().contains(&json!(k)),
            "{k} not set: {c}"
        );
    }
    let ev = env.audit(&format!("action=oauth.authorize&target_id={cred}")).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "success");
    assert_eq!(ev[0]["details"]["authorized_by"], env.admin_id.as_str());
    assert_eq!(ev[0]["details"]["refresh_token_issued"], true);
    let g = env.grant(&cred).await;
    assert_eq!(g["health"], "healthy", "{g}");
    assert_eq!(g["authorized_by"], env.admin_id.as_str());
    assert_eq!(g["variant"], "authorization_code");

    // A worker's resolve gets an access token the provider says is active (no refresh: the
    // token from the code exchange is fresh).
    let f = env.fields(&conn).await;
    let at = st(&f["access_token"]);
    assert!(!st(&f["refresh_token"]).is_empty());
    assert!(
        env.op.active(&env.client, &at).await,
        "the resolved access token is not active"
    );
    assert!(env.refreshes(&cred).await.is_empty());
    for s in secrets_of(&f) {
        assert!(!page.text.contains(&s), "a token in the callback page");
    }

    // Consent is for the authorization-code variant only.
    let cc = env.oauth_cred(&admin, "cc", "client_credentials").await;
    env.authorize(&admin, &cc, None)
        .await
        .problem(409, "not_an_authorization_code_credential");
    env.assert_no_leak(&secrets_of(&f)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consent_with_code_and_pkce_stores_tokens_a_worker_can_use() {
    each_backend!(consent_flow);
}

// ------------------------------------------------------------- 2. replayed and forged state

async fn state_single_use(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let back = env.authorize_fully(&admin, &cred, None, "alice").await;
    let version = env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200)["current_version"].clone();

    // The same callback again (same state, same code): refused, audited, nothing stored.
    let again = env.callback(&back).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert!(again.text.contains("Authorization failed"), "{}", again.text);
    assert!(again.text.contains("already used"), "{}", again.text);
    let denied = env.audit("action=oauth.callback&outcome=denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["details"]["reason"], "replayed_state");
    assert_eq!(denied[0]["target_id"], cred.as_str());
    assert_eq!(
        env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200)["current_version"],
        version
    );

    // A forged state: refused and audited on the instance chain (no organization known).
    let forged = format!("/v1/oauth/callback?code=abc&state=forged-{}", random_hex(8));
    let r = env.srv.call("GET", &forged, None, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("Authorization failed"), "{}", r.text);
    // No state at all.
    let r = env.srv.call("GET", "/v1/oauth/callback?code=abc", None, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let unknown: Vec<Value> = env
        .audit("org_id=_instance&action=oauth.callback")
        .await
        .into_iter()
        .filter(|e| e["details"]["reason"] == "unknown_state")
        .collect();
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(unknown.iter().all(|e| e["outcome"] == "denied"), "{unknown:?}");
    // Every authorize gets its own state.
    let s1 = env.authorize(&admin, &cred, None).await.ok(200);
    let s2 = env.authorize(&admin, &cred, None).await.ok(200);
    assert_ne!(s1["state"], s2["state"]);

    // An expired state (ten minutes; here set back in the store): refused and audited, and
    // the code it came with is never exchanged.
    let back = env.consent(&s1, "alice").await;
    env.srv.raw_sql(&format!(
        "UPDATE oauth_states SET expires_at = 1 WHERE state = '{}'",
        st(&s1["state"])
    ));
    let r = env.callback(&back).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("expired"), "{}", r.text);
    let expired: Vec<Value> = env
        .audit("action=oauth.callback&outcome=denied")
        .await
        .into_iter()
        .filter(|e| e["details"]["reason"] == "expired_state")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");

    // The provider reports a refusal: audited as an error of oauth.authorize, nothing stored.
    let r = env
        .callback(&format!(
            "{}/v1/oauth/callback?error=access_denied&state={}",
            env.srv.base,
            st(&s2["state"])
        ))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let ev = env
        .audit(&format!("action=oauth.authorize&target_id={cred}&outcome=error"))
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["details"]["provider_error"], "access_denied");
    assert_eq!(
        env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200)["current_version"],
        version
    );
    assert_eq!(env.grant(&cred).await["health"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_and_forged_states_are_refused_and_audited() {
    each_backend!(state_single_use);
}

// -------------------------------------------------------- 3. refresh ahead, with rotation

async fn refresh_ahead(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let f0 = env.fields(&conn).await;
    assert!(env.refreshes(&cred).await.is_empty(), "a fresh token was refreshed");
    let (at0, rt0) = (st(&f0["access_token"]), st(&f0["refresh_token"]));

    // Now a skew at least as long as the token lifetime: every token is due for refresh.
    let skew = long_skew(env.ttl);
    let env = env.restart(skew).await;
    let f1 = env.fields(&conn).await;
    let (at1, rt1) = (st(&f1["access_token"]), st(&f1["refresh_token"]));
    let ev = env.refreshes(&cred).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "success", "{ev:?}");
    assert_eq!(ev[0]["actor_kind"], "system", "{ev:?}");
    assert_eq!(ev[0]["details"]["refresh_token_rotated"], true, "{ev:?}");
    assert_ne!(at1, at0, "the access token was not refreshed");
    assert_ne!(rt1, rt0, "the refresh token was not rotated");
    assert!(env.op.active(&env.client, &at1).await);
    // Ahead of expiry: the old access token was still good when it was replaced.
    assert!(env.op.active(&env.client, &at0).await);
    // The rotated-away refresh token is dead at the provider.
    assert!(
        !env.op.active(&env.client, &rt0).await,
        "the old refresh token is still active"
    );

    // The next refresh uses the new refresh token (the old one would fail with invalid_grant).
    let f2 = env.fields(&conn).await;
    let ev = env.refreshes(&cred).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev.iter().all(|e| e["outcome"] == "success"), "{ev:?}");
    assert_ne!(st(&f2["access_token"]), at1);
    assert_ne!(st(&f2["refresh_token"]), rt1);
    assert_eq!(env.grant(&cred).await["health"], "healthy");
    // Version numbers do not move with refreshes (the current version is re-sealed).
    let c = env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200);
    assert_eq!(c["current_version"], 2, "{c}");

    let mut secrets = secrets_of(&f0);
    secrets.extend(secrets_of(&f1));
    secrets.extend(secrets_of(&f2));
    env.assert_no_leak(&secrets).await;
    env.op
        .assert_refresh_token_dead(&env.client, &rt0, "the rotated-away refresh token")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_ahead_of_expiry_rotates_and_never_reuses_the_old_refresh_token() {
    each_backend!(refresh_ahead);
}

// ------------------------------------------------------ 4. single flight on one node

/// `n` concurrent resolves of `conn` against each server; returns the answers.
async fn burst(servers: &[&Server], worker: &str, conn: &str, n: usize) -> Vec<(u16, Value)> {
    let total = n * servers.len();
    let barrier = Arc::new(tokio::sync::Barrier::new(total));
    let mut set = tokio::task::JoinSet::new();
    for s in servers {
        for i in 0..n {
            let (http, base, token, conn, b) = (
                s.http.clone(),
                s.base.clone(),
                worker.to_owned(),
                conn.to_owned(),
                barrier.clone(),
            );
            set.spawn(async move {
                b.wait().await;
                resolve_raw(http, base, token, conn, format!("burst-{i}")).await
            });
        }
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

/// Panics with the server log lines of every failed answer's request.
fn explain_failures(answers: &[(u16, Value)], servers: &[&Server], context: &str) {
    let failed: Vec<&(u16, Value)> = answers.iter().filter(|(s, _)| *s != 200).collect();
    if failed.is_empty() {
        return;
    }
    let mut lines = Vec::new();
    for (_, body) in &failed {
        if let Some(id) = body["request_id"].as_str() {
            for (n, s) in servers.iter().enumerate() {
                lines.extend(
                    s.logs()
                        .lines()
                        .filter(|l| l.contains(id))
                        .map(|l| format!("node {n}: {l}")),
                );
            }
        }
    }
    for (n, s) in servers.iter().enumerate() {
        lines.extend(
            s.logs()
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .map(|l| format!("node {n}: {l}")),
        );
    }
    panic!(
        "{context}{} of {} concurrent resolves failed, first: {}\nserver log lines of the failed requests, and warnings:\n{}",
        failed.len(),
        answers.len(),
        failed[0].1,
        lines.join("\n")
    );
}

/// All answers succeeded with one and the same access token; returns it.
fn one_token(answers: &[(u16, Value)]) -> String {
    let mut tokens = std::collections::BTreeSet::new();
    for (status, body) in answers {
        assert_eq!(*status, 200, "a concurrent resolve failed: {body}");
        tokens.insert(st(&body["credential"]["fields"]["access_token"]));
    }
    assert_eq!(
        tokens.len(),
        1,
        "concurrent resolves got {} different access tokens",
        tokens.len()
    );
    tokens.into_iter().next().unwrap()
}

async fn single_flight(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let f = env.fields(&conn).await;
    // The access token expired long ago (as far as credvault knows).
    env.replace(&cred, &f, json!({"access_token_expires_at": LONG_AGO}))
        .await;

    let answers = burst(&[&env.srv], &env.worker, &conn, 50).await;
    explain_failures(&answers, &[&env.srv], "");
    let at = one_token(&answers);
    assert_ne!(at, st(&f["access_token"]), "the stale token was handed out");
    let ev = env.refreshes(&cred).await;
    assert_eq!(
        ev.len(),
        1,
        "50 concurrent resolves refreshed {} times: {ev:?}",
        ev.len()
    );
    assert_eq!(ev[0]["outcome"], "success");
    assert!(env.op.active(&env.client, &at).await);
    // And the token stays cached.
    assert_eq!(st(&env.fields(&conn).await["access_token"]), at);
    assert_eq!(env.refreshes(&cred).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_resolves_refresh_once() {
    each_backend!(single_flight);
}

/// With a refresh skew longer than the provider's token lifetime (the setting of test 3),
/// resolves queued behind a refresh must take the token that refresh just fetched instead of
/// refreshing again, one after the other.
async fn single_flight_long_skew(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let skew = long_skew(env.ttl);
    let env = env.restart(skew).await;

    let answers = burst(&[&env.srv], &env.worker, &conn, 50).await;
    explain_failures(&answers, &[&env.srv], "");
    let ev = env.refreshes(&cred).await;
    assert_eq!(
        ev.len(),
        1,
        "with oauth_refresh_skew_secs longer than the token lifetime, 50 concurrent resolves refreshed {} times",
        ev.len()
    );
    one_token(&answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_resolves_refresh_once_even_with_a_skew_longer_than_the_token_lifetime() {
    each_backend!(single_flight_long_skew);
}

// ------------------------------------------------------------ providers as they really are

/// A token endpoint in front of the provider's (which takes the client's secret either way):
/// records how each request authenticated the client — `basic` (an Authorization header) or
/// `post` (client_secret in the form) — and forwards it. One request per connection.
async fn recording_token_endpoint(upstream: String) -> (String, Arc<std::sync::Mutex<Vec<&'static str>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", l.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let Ok((mut sock, _)) = l.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the request ended early");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned()))
            };
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the body ended early");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_end..head_end + len].to_vec();
            let raw_head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let auth = raw_head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                .map(|l| l["authorization:".len()..].trim().to_owned());
            let in_form = String::from_utf8_lossy(&body)
                .split('&')
                .any(|kv| kv.starts_with("client_secret="));
            record.lock().unwrap().push(match (auth.is_some(), in_form) {
                (true, false) => "basic",
                (false, true) => "post",
                (true, true) => "both",
                (false, false) => "none",
            });
            let mut req = http
                .post(&upstream)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let answer = resp.bytes().await.unwrap();
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            sock.write_all(head.as_bytes()).await.unwrap();
            sock.write_all(&answer).await.unwrap();
        }
    });
    (url, seen)
}

/// A client registered for `client_secret_post` (HubSpot and others authenticate only so):
/// consent and refresh send the ID and secret in the form, the authorization URL carries the
/// credential's own parameters (Google's access_type and prompt), and the token answer's other
/// values are kept for the worker (Salesforce's instance_url; here the granted scope and the
/// token type), through a refresh too. The provider takes the secret either way, so a
/// recording endpoint in front of it shows how each call authenticated; the control is a
/// credential without the setting, which authenticates with Basic.
async fn provider_profiles(b: Backend) {
    let env = setup(b, 60).await;
    let admin = env.srv.admin.clone();
    let post = env
        .op
        .register_with(&format!("{}/v1/oauth/callback", env.srv.base), "client_secret_post")
        .await;
    let iss = env.op.issuer.clone();
    let (token_url, seen) = recording_token_endpoint(format!("{iss}/token")).await;
    let cred_body = |name: &str, method: Option<&str>, params: Value| {
        let mut fields = json!({
            "client_id": post.id, "client_secret": post.secret, "token_url": token_url,
            "authorization_url": format!("{iss}/auth"), "scopes": SCOPES, "authorization_params": params,
        });
        if let Some(m) = method {
            fields["token_endpoint_auth_method"] = json!(m);
        }
        json!({"name": name, "type": "oauth", "variant": "authorization_code", "workspace_id": env.srv.ws_id,
               "environment": "prod", "labels": {"system": "oidc-test", "owner_team": "data-platform"}, "fields": fields})
    };

    // A parameter credvault sets itself cannot be overridden: refused, naming it.
    for own in ["state", "redirect_uri", "code_challenge"] {
        let r = env
            .post(
                "/v1/credentials",
                &admin,
                cred_body("p-own", Some("client_secret_post"), json!({own: "x"})),
            )
            .await
            .problem(422, "invalid_fields");
        assert_eq!(
            r["errors"][0]["field"],
            format!("fields.authorization_params.{own}"),
            "{r}"
        );
    }

    // The control: without the setting, the code exchange authenticates with Basic.
    let basic = st(&env
        .post("/v1/credentials", &admin, cred_body("p-basic", None, json!({})))
        .await
        .ok(201)["id"]);
    let start = env.authorize(&admin, &basic, None).await.ok(200);
    let url = env.consent(&start, "alice").await;
    let page = env.callback(&url).await;
    assert!(page.text.contains("Authorization complete"), "{}", page.text);
    assert_eq!(*seen.lock().unwrap(), ["basic"]);
    seen.lock().unwrap().clear();

    // client_secret_post, with a login hint and a locale for the provider.
    let cred = st(&env
        .post(
            "/v1/credentials",
            &admin,
            cred_body(
                "p-post",
                Some("client_secret_post"),
                json!({"login_hint": "alice", "ui_locales": "fr"}),
            ),
        )
        .await
        .ok(201)["id"]);
    let start = env.authorize(&admin, &cred, None).await.ok(200);
    let auth_url = st(&start["authorization_url"]);
    assert!(
        auth_url.contains("login_hint=alice") && auth_url.contains("ui_locales=fr"),
        "{auth_url}"
    );
    let url = env.consent(&start, "alice").await;
    let page = env.callback(&url).await;
    assert!(page.text.contains("Authorization complete"), "{}", page.text);
    let conn = env.connection(&cred, "p-post-api").await;
    let f = env.fields(&conn).await;
    assert_eq!(f["token_extras"]["token_type"], "Bearer", "{f}");
    assert!(st(&f["token_extras"]["scope"]).contains("api:read"), "{f}");
    assert!(
        f["token_extras"].get("access_token").is_none() && f["token_extras"].get("refresh_token").is_none(),
        "{f}"
    );

    // A refresh authenticates the same way, and the extras stay.
    env.replace(&cred, &f, json!({"access_token_expires_at": LONG_AGO}))
        .await;
    let f2 = env.fields(&conn).await;
    assert_ne!(f2["access_token"], f["access_token"], "not refreshed");
    let ev = env.refreshes(&cred).await;
    assert!(!ev.is_empty() && ev.iter().all(|e| e["outcome"] == "success"), "{ev:?}");
    assert_eq!(f2["token_extras"]["token_type"], "Bearer", "{f2}");
    // The exchange and the refresh: both in the form, never in a header.
    assert_eq!(*seen.lock().unwrap(), ["post", "post"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_secret_post_authorization_params_and_the_token_answers_other_values_on_every_backend() {
    each_backend!(provider_profiles);
}

// ------------------------------------------------------ 5. single flight across two nodes

#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_refresh_once() {
    let env = setup(Backend::Postgres, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let mut fields = env.fields(&conn).await;

    // A second node: the same key file (a copy of the data directory) and database. The first
    // server keeps the harness's PgDb (dropped with it); this one only gets the URL.
    let data2 = TempDir::new();
    for e in std::fs::read_dir(env.srv.data.path()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), data2.path().join(e.file_name())).unwrap();
        }
    }
    let url = env.srv.pg.as_ref().unwrap().url.clone();
    let mut args = serve_args(&env.cfg);
    args.extend(["--database-url".to_owned(), url]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node2 = Server::start_opts(Backend::Postgres, data2, None, &args, &[]).await;
    assert!(node2.admin.is_empty(), "the second node initialized a new store");
    let me2 = node2.get("/v1/me", &admin).await.ok(200);
    assert_eq!(
        me2["id"],
        env.admin_id.as_str(),
        "the second node does not share the store"
    );

    // The race between the nodes depends on timing: every round is one more chance to lose
    // it. Each round starts from an access token credvault considers expired, and uses the
    // refresh token the previous round stored.
    for round in 1..=80 {
        env.replace(&cred, &fields, json!({"access_token_expires_at": LONG_AGO}))
            .await;
        let answers = burst(&[&env.srv, &node2], &env.worker, &conn, 25).await;
        let ev = env.refreshes(&cred).await;
        let this_round: Vec<String> = ev[round - 1..]
            .iter()
            .map(|e| format!("{} {}", e["outcome"], e["details"]))
            .collect();
        explain_failures(
            &answers,
            &[&env.srv, &node2],
            &format!("round {round}: oauth.refresh events of the round: {this_round:#?}\n"),
        );
        assert_eq!(
            ev.len(),
            round,
            "round {round}: 25 + 25 concurrent resolves on two nodes refreshed {} times: {this_round:#?}",
            ev.len() + 1 - round,
        );
        assert_eq!(ev[round - 1]["outcome"], "success", "round {round}: {ev:?}");
        let at = one_token(&answers);
        assert!(env.op.active(&env.client, &at).await, "round {round}");
        assert_eq!(env.grant(&cred).await["health"], "healthy", "round {round}");
        fields = answers[0].1["credential"]["fields"].clone();
    }
    drop(node2);
}

/// The interleaving the two-node test hits by chance, forced: this node decides to refresh
/// and reads the stored refresh token; meanwhile another node (played by this test) takes the
/// lease, refreshes with that same token (the provider rotates it), stores the new tokens and
/// releases the lease; only then does this node get the lease. It must use what the winner
/// stored, not the refresh token it read before (the provider refuses that one now, and
/// with reuse detection revokes the whole grant).
///
/// The test pauses the node exactly there by holding a row lock on the lease row in its own
/// transaction; the lease row is left as the winner's release leaves it (free).
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_loses_the_refresh_race_uses_the_tokens_the_winner_stored() {
    let env = setup(Backend::Postgres, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let f = env.fields(&conn).await;
    let rt0 = st(&f["refresh_token"]);
    env.replace(&cred, &f, json!({"access_token_expires_at": LONG_AGO}))
        .await;
    let url = env.srv.pg.as_ref().unwrap().url.clone();

    // The other node's lease row, locked by this test's transaction.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (u, c) = (url.clone(), cred.clone());
    let holder = std::thread::spawn(move || {
        let mut db = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        db.execute(
            "INSERT INTO oauth_leases (credential_id, owner, until) VALUES ($1, 'other-node', 0) \
             ON CONFLICT (credential_id) DO UPDATE SET owner = 'other-node', until = 0",
            &[&c],
        )
        .unwrap();
        let mut tx = db.transaction().unwrap();
        tx.query("SELECT 1 FROM oauth_leases WHERE credential_id = $1 FOR UPDATE", &[&c])
            .unwrap();
        locked_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        tx.commit().unwrap();
    });
    locked_rx.recv().unwrap();

    // This node: resolve, find the access token stale, read the refresh token, and wait for
    // the lease row.
    let task = tokio::spawn(resolve_raw(
        env.srv.http.clone(),
        env.srv.base.clone(),
        env.worker.clone(),
        conn.clone(),
        "race".into(),
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let u = url.clone();
        let waiting: i64 = common::off_runtime(move || {
            let mut db = postgres::Client::connect(&u, postgres::NoTls).unwrap();
            db.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%oauth_leases%'",
                &[],
            )
            .unwrap()
            .get(0)
        });
        if waiting > 0 {
            break;
        }
        assert!(
            !task.is_finished(),
            "the resolve finished without waiting for the lease"
        );
        assert!(std::time::Instant::now() < deadline, "the node never reached the lease");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The other node refreshes with the same refresh token and stores the result.
    let (status, t) = env
        .op
        .token(&env.client, &[("grant_type", "refresh_token"), ("refresh_token", &rt0)])
        .await;
    assert_eq!(status, 200, "{t}");
    let at1 = st(&t["access_token"]);
    let rt1 = st(&t["refresh_token"]);
    assert_ne!(rt1, rt0, "the provider does not rotate refresh tokens");
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(t["expires_in"].as_i64().unwrap());
    let expires = expires
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    env.replace(
        &cred,
        &f,
        json!({"access_token": at1, "refresh_token": rt1, "access_token_expires_at": expires}),
    )
    .await;
    go_tx.send(()).unwrap();
    holder.join().unwrap();

    // This node now gets the lease: it must hand out the winner's token.
    let (status, body) = task.await.unwrap();
    let ev = env.refreshes(&cred).await;
    assert_eq!(
        status, 200,
        "the node that lost the race refreshed with the refresh token it had read before the winner rotated it: \
         {body}\noauth.refresh events: {ev:#?}"
    );
    assert_eq!(st(&body["credential"]["fields"]["access_token"]), at1);
    assert!(ev.is_empty(), "a second refresh: {ev:#?}");
    assert_eq!(env.grant(&cred).await["health"], "healthy");
    assert!(
        env.op.active(&env.client, &rt1).await,
        "the stored refresh token is dead"
    );
}

// ------------------------------------------------------------------------ 6. invalid_grant

async fn invalid_grant(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();

    // (a) A bogus refresh token and an expired access token.
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let f = env.fields(&conn).await;
    env.replace(
        &cred,
        &f,
        json!({"refresh_token": format!("bogus-{}", random_hex(12)), "access_token_expires_at": LONG_AGO}),
    )
    .await;
    let r = env.resolve(&conn).await;
    env.keep(&r);
    r.problem(409, "oauth_needs_reauthorization");
    let ev = env.refreshes(&cred).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "error");
    assert_eq!(ev[0]["details"]["health"], "needs_reauthorization");
    assert!(st(&ev[0]["details"]["error"]).contains("invalid_grant"), "{ev:?}");
    let g = env.grant(&cred).await;
    assert_eq!(g["health"], "needs_reauthorization", "{g}");
    assert!(g["health_reason"].as_str().is_some(), "{g}");
    let filtered = env
        .get("/v1/oauth/grants?health=needs_reauthorization", &admin)
        .await
        .ok(200);
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1, "{filtered}");
    let alerts = env
        .audit(&format!("action=alert.oauth_needs_reauthorization&target_id={cred}"))
        .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let refused = env
        .audit(&format!("action=connection.resolve&target_id={conn}&outcome=error"))
        .await;
    assert!(
        refused
            .iter()
            .any(|e| e["details"]["refused"] == "oauth_needs_reauthorization"),
        "{refused:?}"
    );

    // A second resolve fails fast: no new token request, no second alert.
    let t = std::time::Instant::now();
    let r = env.resolve(&conn).await;
    env.keep(&r);
    r.problem(409, "oauth_needs_reauthorization");
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(env.refreshes(&cred).await.len(), 1, "the provider was asked again");
    assert_eq!(
        env.audit(&format!("action=alert.oauth_needs_reauthorization&target_id={cred}"))
            .await
            .len(),
        1
    );

    // Consent again: healthy, and resolve works.
    env.authorize_fully(&admin, &cred, None, "alice").await;
    assert_eq!(env.grant(&cred).await["health"], "healthy");
    let f2 = env.fields(&conn).await;
    assert!(env.op.active(&env.client, &st(&f2["access_token"])).await);

    // (b) The grant revoked at the provider.
    let cred2 = env.oauth_cred(&admin, "erp", "authorization_code").await;
    let conn2 = env.connection(&cred2, "erp-api").await;
    env.authorize_fully(&admin, &cred2, None, "alice").await;
    let g2 = env.fields(&conn2).await;
    env.op
        .revoke(&env.client, &st(&g2["refresh_token"]), "refresh_token")
        .await;
    env.replace(&cred2, &g2, json!({"access_token_expires_at": LONG_AGO}))
        .await;
    let r = env.resolve(&conn2).await;
    env.keep(&r);
    r.problem(409, "oauth_needs_reauthorization");
    assert_eq!(env.grant(&cred2).await["health"], "needs_reauthorization");
    assert_eq!(
        env.audit(&format!("action=alert.oauth_needs_reauthorization&target_id={cred2}"))
            .await
            .len(),
        1
    );
    let r = env.resolve(&conn2).await;
    env.keep(&r);
    r.problem(409, "oauth_needs_reauthorization");
    assert_eq!(env.refreshes(&cred2).await.len(), 1);
    // The other grant is unaffected.
    assert_eq!(env.grant(&cred).await["health"], "healthy");

    let mut secrets = secrets_of(&f);
    secrets.extend(secrets_of(&f2));
    secrets.extend(secrets_of(&g2));
    env.assert_no_leak(&secrets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_grant_needs_reauthorization_and_later_resolves_fail_fast() {
    each_backend!(invalid_grant);
}

/// A token endpoint that cannot be reached: `refresh_failing`, 503, alert once.
async fn refresh_failing(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env
        .oauth_cred_at(&admin, "down", "client_credentials", "http://127.0.0.1:1/token")
        .await;
    let conn = env.connection(&cred, "down-api").await;
    let r = env.resolve(&conn).await;
    env.keep(&r);
    r.problem(503, "oauth_refresh_failing");
    let g = env.grant(&cred).await;
    assert_eq!(g["health"], "refresh_failing", "{g}");
    // Reads and the rotation-due report show it too.
    let c = env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200);
    assert_eq!(c["oauth"]["health"], "refresh_failing", "{c}");
    let due = env.get("/v1/reports/rotation-due", &admin).await.ok(200);
    let row = due["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["credential_id"] == cred.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{cred} not in rotation-due: {due}"));
    assert_eq!(row["reason"], "oauth_refresh_failing", "{row}");
    assert_eq!(row["oauth_health"], "refresh_failing", "{row}");
    // Within the backoff (2 s plus jitter after the first failure) a resolve fails fast,
    // without calling the provider again.
    let r = env.resolve(&conn).await;
    env.keep(&r);
    r.problem(503, "oauth_refresh_failing");
    assert_eq!(
        env.refreshes(&cred).await.len(),
        1,
        "retried before the backoff ran out"
    );
    // After it, the provider is tried again.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let r = env.resolve(&conn).await;
    env.keep(&r);
    r.problem(503, "oauth_refresh_failing");
    assert_eq!(
        env.refreshes(&cred).await.len(),
        2,
        "a failing provider is retried after the backoff"
    );
    assert_eq!(
        env.audit(&format!("action=alert.oauth_refresh_failing&target_id={cred}"))
            .await
            .len(),
        1
    );
    env.assert_no_leak(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_token_endpoint_is_refresh_failing() {
    each_backend!(refresh_failing);
}

// ------------------------------------------------------------------ 7. client credentials

async fn client_credentials(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "svc", "client_credentials").await;
    let conn = env.connection(&cred, "svc-api").await;
    // Nobody needs to consent.
    assert_eq!(env.grant(&cred).await["health"], "not_authorized");

    let f = env.fields(&conn).await;
    let at = st(&f["access_token"]);
    assert!(
        env.op.active(&env.client, &at).await,
        "the client-credentials token is not active"
    );
    assert!(
        f["access_token_expires_at"].as_str().is_some(),
        "{}",
        f["access_token_expires_at"]
    );
    let ev = env.refreshes(&cred).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "success");
    assert_eq!(ev[0]["details"]["refresh_token_rotated"], false);

    // Cached: the second resolve gets the same token without a token request.
    let f2 = env.fields(&conn).await;
    assert_eq!(st(&f2["access_token"]), at);
    assert_eq!(env.refreshes(&cred).await.len(), 1);
    let g = env.grant(&cred).await;
    assert_eq!(g["health"], "healthy", "{g}");
    assert_eq!(g["variant"], "client_credentials");
    assert!(g["refreshed_at"].as_str().is_some(), "{g}");

    // A wrong client secret: the client is refused, which needs a human.
    let bad = env.oauth_cred(&admin, "svc-bad", "client_credentials").await;
    let conn_bad = env.connection(&bad, "svc-bad-api").await;
    let fb = json!({"client_id": env.client.id, "client_secret": format!("wrong-{}", random_hex(12)),
                    "token_url": format!("{}/token", env.op.issuer), "scopes": ["api:read"]});
    env.replace(&bad, &fb, json!({})).await;
    let r = env.resolve(&conn_bad).await;
    env.keep(&r);
    r.problem(409, "oauth_needs_reauthorization");
    assert_eq!(env.grant(&bad).await["health"], "needs_reauthorization");

    env.assert_no_leak(&secrets_of(&f)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_credentials_tokens_are_fetched_once_and_cached() {
    each_backend!(client_credentials);
}

// -------------------------------------------------------------------------- 8. offboarding

async fn offboarding(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let org = env.srv.org_id.clone();
    let (usr, usr_token) = env
        .srv
        .principal(&org, "user", "alice", &[("integration_engineer", Scope::Org(&org))])
        .await;
    assert!(usr.starts_with("usr_"), "{usr}");
    let (sa, _) = env.srv.principal(&org, "service_account", "crm-integration", &[]).await;
    assert!(sa.starts_with("sa_"), "{sa}");

    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&usr_token, &cred, None, "alice").await;
    let g = env
        .get(&format!("/v1/oauth/grants?authorized_by={usr}"), &admin)
        .await
        .ok(200);
    let items = g["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{g}");
    assert_eq!(items[0]["credential_id"], cred.as_str());
    assert_eq!(items[0]["authorized_by"], usr.as_str());
    assert_eq!(items[0]["authorized_by_name"], "alice");
    assert_eq!(items[0]["authorizer_active"], true);
    assert_eq!(items[0]["authorizer_roles"], json!(["integration_engineer"]));
    // Who the authorizers are is for auditors and admins; others see the grant without it.
    let g = env.get("/v1/oauth/grants", &usr_token).await.ok(200);
    assert_eq!(g["items"][0]["credential_id"], cred.as_str(), "{g}");
    assert_eq!(g["items"][0]["authorized_by_name"], Value::Null, "{g}");
    assert_eq!(g["items"][0]["authorizer_active"], Value::Null, "{g}");
    assert_eq!(g["items"][0]["authorizer_roles"], json!([]), "{g}");
    let c = env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200);
    assert_eq!(c["fields"]["authorized_by"], usr.as_str());

    // Only an admin records consent under a service account, and only under one.
    env.authorize(&usr_token, &cred, Some(&sa))
        .await
        .problem(403, "forbidden");
    let r = env.authorize(&admin, &cred, Some(&usr)).await;
    assert_eq!(r.status, 422, "{}", r.text);

    // Offboarding the user lists the grant.
    let off = env
        .post(&format!("/v1/principals/{usr}/offboard"), &admin, json!({}))
        .await
        .ok(200);
    let grants = off["oauth_grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{off}");
    assert_eq!(grants[0]["id"], cred.as_str());
    // The grants review now shows that the person behind it left.
    let g = env
        .get(&format!("/v1/oauth/grants?authorized_by={usr}"), &admin)
        .await
        .ok(200);
    assert_eq!(g["items"][0]["authorizer_active"], false, "{g}");
    // The grant still works for workers meanwhile.
    let f = env.fields(&conn).await;

    // The admin re-consents under the service account.
    env.authorize_fully(&admin, &cred, Some(&sa), "integration").await;
    let g = env
        .get(&format!("/v1/oauth/grants?authorized_by={sa}"), &admin)
        .await
        .ok(200);
    assert_eq!(g["items"].as_array().unwrap().len(), 1, "{g}");
    assert_eq!(g["items"][0]["authorized_by"], sa.as_str());
    assert_eq!(g["items"][0]["health"], "healthy");
    let g = env
        .get(&format!("/v1/oauth/grants?authorized_by={usr}"), &admin)
        .await
        .ok(200);
    assert!(g["items"].as_array().unwrap().is_empty(), "{g}");
    let c = env.get(&format!("/v1/credentials/{cred}"), &admin).await.ok(200);
    assert_eq!(c["fields"]["authorized_by"], sa.as_str());
    let ev = env.audit(&format!("action=oauth.authorize&target_id={cred}")).await;
    assert_eq!(ev.last().unwrap()["details"]["authorized_by"], sa.as_str());
    let f2 = env.fields(&conn).await;
    assert!(env.op.active(&env.client, &st(&f2["access_token"])).await);

    let mut secrets = secrets_of(&f);
    secrets.extend(secrets_of(&f2));
    env.assert_no_leak(&secrets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offboarding_lists_grants_and_an_admin_reconsents_under_a_service_account() {
    each_backend!(offboarding);
}

// ----------------------------------------------------------------------------- 9. purge

async fn purge_revokes(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let f = env.fields(&conn).await;
    let rt = st(&f["refresh_token"]);
    assert!(env.op.active(&env.client, &rt).await);

    let r = env
        .srv
        .delete(&format!("/v1/connections/{conn}/credential"), &admin)
        .await;
    env.keep(&r);
    r.ok(200);
    let r = env
        .srv
        .delete(&format!("/v1/credentials/{cred}?purge=true&reason=x"), &admin)
        .await;
    env.keep(&r);
    r.ok(200);
    assert!(
        !env.op.active(&env.client, &rt).await,
        "the refresh token survived the purge"
    );
    let ev = env.audit(&format!("action=credential.purge&target_id={cred}")).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["details"]["provider_revocation"], "revoked", "{ev:?}");
    // A purged grant is no longer listed.
    let g = env.get("/v1/oauth/grants", &admin).await.ok(200);
    assert!(
        g["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["credential_id"] != cred.as_str()),
        "{g}"
    );

    env.assert_no_leak(&secrets_of(&f)).await;
    env.op
        .assert_refresh_token_dead(&env.client, &rt, "a purged credential's refresh token")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_revokes_the_refresh_token_at_the_provider() {
    each_backend!(purge_revokes);
}

/// Revoking a grant (offboarding, an incident) kills the refresh token at the provider, takes
/// the tokens out of the credential (the connection stays attached), and resolve then asks for
/// a new consent; refused requests (no reason, a builder, a viewer) revoke nothing. A new
/// consent makes the credential usable again.
async fn revoke_grant(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let resolved = env.resolve(&conn).await.ok(200);
    let (f, granted) = (
        resolved["credential"]["fields"].clone(),
        resolved["credential"]["version"].clone(),
    );
    let rt = st(&f["refresh_token"]);
    let path = format!("/v1/credentials/{cred}/oauth/revoke");

    // Refusals first: each leaves the refresh token alive.
    env.post(&path, &admin, json!({"reason": "   "}))
        .await
        .problem(422, "reason_required");
    for role in ["builder", "viewer"] {
        let t = env.srv.user_with_role(role).await;
        let r = env.post(&path, &t, json!({"reason": "offboarding"})).await;
        assert_eq!(r.status, 403, "{role}: {}", r.text);
    }
    assert!(
        env.op.active(&env.client, &rt).await,
        "a refused revocation reached the provider"
    );
    let denied = env
        .audit(&format!("action=oauth.grant_revoke&target_id={cred}&outcome=denied"))
        .await;
    assert_eq!(denied.len(), 2, "{denied:?}");

    // The command line, as an operator offboarding someone types it.
    let out = std::process::Command::new(common::bin())
        .args(["credential", "revoke-grant", &cred, "--reason", "alice left"])
        .env("CREDVAULT_SERVER", &env.srv.base)
        .env("CREDVAULT_TOKEN", &admin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["provider_revocation"], "revoked", "{r}");
    assert_eq!(r["oauth_health"], "needs_reauthorization", "{r}");
    assert!(
        !env.op.active(&env.client, &rt).await,
        "the refresh token survived the revocation"
    );
    let ev = env
        .audit(&format!("action=oauth.grant_revoke&target_id={cred}&outcome=success"))
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["details"]["reason"], "alice left", "{ev:?}");
    assert_eq!(env.grant(&cred).await["health"], "needs_reauthorization");
    // No token left to hand out: resolve refuses, and the old version is not reachable either.
    env.resolve(&conn).await.problem(409, "oauth_needs_reauthorization");
    let old = env
        .srv
        .post(
            "/v1/resolve",
            &env.worker,
            json!({"connection_id": conn, "run_id": "run-old", "version": granted}),
        )
        .await;
    old.problem(409, "version_not_resolvable");

    // A new consent: usable again.
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let again = env.fields(&conn).await;
    assert_ne!(again["refresh_token"], f["refresh_token"]);

    // The same from the web UI: the credential's page offers it once there is a grant.
    let rt2 = st(&again["refresh_token"]);
    let (login, pw) = crate::ui::person(&env.srv, "admin").await;
    let mut ui = crate::ui::Ui::new(&env.srv);
    ui.sign_in(&login, &pw).await;
    let page = ui.get(&format!("/credentials/{cred}")).await;
    assert!(page.body.contains("Revoke grant"), "{}", page.body);
    let csrf = ui.csrf().await;
    let done = ui
        .post(
            &format!("/credentials/{cred}/revoke-grant"),
            &[("_csrf", &csrf), ("reason", "incident 42")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.location().ends_with("?done=grant-revoked"), "{}", done.location());
    assert!(
        !env.op.active(&env.client, &rt2).await,
        "the UI's revocation did not reach the provider"
    );
    let page = ui.get(&format!("/credentials/{cred}")).await;
    assert!(
        page.body.contains("needs_reauthorization") && !page.body.contains("Revoke grant"),
        "{}",
        page.body
    );
    env.assert_no_leak(&secrets_of(&f)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_grant_kills_it_at_the_provider_and_needs_a_new_consent_on_every_backend() {
    each_backend!(revoke_grant);
}

/// `credvault scheduler tick --now` against this environment's store and configuration.
fn tick(env: &Env, at: i64) -> Value {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["scheduler", "tick", "--data-dir"]).arg(env.srv.data.path());
    if let Some(pg) = &env.srv.pg {
        cmd.arg("--database-url").arg(&pg.url);
    }
    cmd.arg("--config").arg(&env.cfg);
    cmd.arg("--now").arg(crate::lifecycle::rfc3339(at));
    for v in ["CREDVAULT_CONFIG", "CREDVAULT_DATABASE_URL", "CREDVAULT_DATA_DIR"] {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tick: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A grant nobody uses is refreshed by the scheduler once it has been idle for
/// oauth_keepalive_days (7 by default), so a refresh token that dies when idle (a sliding
/// window) survives between rare runs: the refresh rotates it, like any other. A day later
/// nothing is due (the control).
async fn keepalive(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let f = env.fields(&conn).await;
    let rt0 = st(&f["refresh_token"]);
    assert!(env.refreshes(&cred).await.is_empty());
    let now = crate::lifecycle::now_secs();

    let t = tick(&env, now + 86_400);
    assert_eq!(t["oauth_kept_alive"], json!([]), "{t}");
    assert!(env.refreshes(&cred).await.is_empty());

    let t = tick(&env, now + 8 * 86_400);
    assert_eq!(t["oauth_kept_alive"], json!([cred]), "{t}");
    let ev = env.refreshes(&cred).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["outcome"], "success", "{ev:?}");
    assert_eq!(ev[0]["actor_kind"], "system", "{ev:?}");
    assert_eq!(ev[0]["details"]["trigger"], "keepalive", "{ev:?}");
    let f2 = env.fields(&conn).await;
    assert_ne!(st(&f2["refresh_token"]), rt0, "the refresh token was not rotated");
    assert!(
        !env.op.active(&env.client, &rt0).await,
        "the old refresh token is still active"
    );
    assert!(env.op.active(&env.client, &st(&f2["access_token"])).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_grant_is_refreshed_by_the_scheduler_before_its_refresh_token_dies_on_every_backend() {
    each_backend!(keepalive);
}

/// A purge that is refused (still attached, no reason, a caller without the permission) must
/// leave the grant alone at the provider.
async fn refused_purge(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let f = env.fields(&conn).await;
    let rt = st(&f["refresh_token"]);
    let viewer = env.srv.user_with_role("viewer").await;

    let r = env
        .srv
        .delete(&format!("/v1/credentials/{cred}?purge=true&reason=x"), &viewer)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(
        env.op.active(&env.client, &rt).await,
        "a purge refused to a viewer revoked the refresh token at the provider"
    );
    let r = env
        .srv
        .delete(&format!("/v1/credentials/{cred}?purge=true&reason=%20"), &admin)
        .await;
    assert_eq!(r.status / 100, 4, "{}", r.text);
    assert!(
        env.op.active(&env.client, &rt).await,
        "a purge refused for a missing reason revoked the refresh token at the provider"
    );
    env.srv
        .delete(&format!("/v1/credentials/{cred}?purge=true&reason=x"), &admin)
        .await
        .problem(409, "credential_in_use");
    assert!(
        env.op.active(&env.client, &rt).await,
        "a purge refused with credential_in_use revoked the refresh token at the provider"
    );
    // The credential keeps working.
    let stale = json!({"access_token_expires_at": LONG_AGO});
    env.replace(&cred, &f, stale).await;
    env.resolve(&conn).await.ok(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_purge_does_not_revoke_at_the_provider() {
    each_backend!(refused_purge);
}

// ---------------------------------------------------------------------- 10. no token leaks

async fn no_leaks(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "crm", "authorization_code").await;
    let conn = env.connection(&cred, "crm-api").await;
    let back = env.authorize_fully(&admin, &cred, None, "alice").await;
    env.callback(&back).await; // replayed
    // The authorization code (single use, but a credential while it lives) is looked for too.
    let code = reqwest::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let mut secrets = vec![code];
    let f = env.fields(&conn).await;
    secrets.extend(secrets_of(&f));
    // A refresh (rotation), and a failing one.
    env.replace(&cred, &f, json!({"access_token_expires_at": LONG_AGO}))
        .await;
    let f2 = env.fields(&conn).await;
    secrets.extend(secrets_of(&f2));
    let cc = env.oauth_cred(&admin, "svc", "client_credentials").await;
    let cc_conn = env.connection(&cc, "svc-api").await;
    secrets.extend(secrets_of(&env.fields(&cc_conn).await));
    let bogus = format!("bogus-refresh-{}", random_hex(12));
    env.replace(
        &cred,
        &f2,
        json!({"refresh_token": bogus, "access_token_expires_at": LONG_AGO}),
    )
    .await;
    let r = env.resolve(&conn).await;
    env.keep(&r);
    r.problem(409, "oauth_needs_reauthorization");
    secrets.push(bogus);

    // Every metadata view.
    for path in [
        format!("/v1/credentials/{cred}"),
        format!("/v1/credentials/{cred}/versions"),
        format!("/v1/credentials/{cc}"),
        "/v1/credentials".to_owned(),
        "/v1/oauth/grants".to_owned(),
        format!("/v1/connections/{conn}"),
        format!("/v1/credentials/{cred}/usage"),
    ] {
        let r = env.get(&path, &admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }
    env.assert_no_leak(&secrets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_token_or_client_secret_leaves_except_through_resolve() {
    each_backend!(no_leaks);
}

#[test]
fn forms_and_cookies_are_parsed() {
    let html = r#"<form autocomplete="off" action="http://127.0.0.1:1/interaction/abc" method="post">
      <input type="hidden" name="prompt" value="login"/>
      <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
      </form>"#;
    let (action, hidden) = parse_form(html);
    assert_eq!(action, "http://127.0.0.1:1/interaction/abc");
    assert_eq!(hidden, vec![("prompt".to_owned(), "login".to_owned())]);
    let mut h = reqwest::header::HeaderMap::new();
    h.append("set-cookie", "_i=1; path=/interaction/abc; httponly".parse().unwrap());
    h.append("set-cookie", "_s=2; path=/; httponly".parse().unwrap());
    let mut jar = Jar::default();
    jar.store(&h);
    assert_eq!(jar.header("/interaction/abc"), "_i=1; _s=2");
    assert_eq!(jar.header("/auth/x"), "_s=2");
}

// ---------------------------------------------------- 11. Test connection of an oauth_saas

async fn saas_test_connection(b: Backend) {
    let env = setup(b, 5).await;
    let admin = env.srv.admin.clone();
    let cred = env.oauth_cred(&admin, "saas", "authorization_code").await;
    // The provider's userinfo endpoint stands in for the SaaS API: it answers 200 to a live
    // access token and 401 to anything else.
    let conn = env
        .post(
            "/v1/connections",
            &admin,
            json!({"name": "saas-api", "workspace_id": env.srv.ws_id, "environment": "prod", "kind": "oauth_saas",
                   "config": {"api_base_url": env.op.issuer, "check_url": format!("{}/me", env.op.issuer)},
                   "credential_id": cred}),
        )
        .await
        .ok(201);
    let conn = st(&conn["id"]);
    let test = || async {
        let r = env
            .post(&format!("/v1/connections/{conn}/test"), &admin, json!({}))
            .await;
        r.ok(200)
    };
    // Not consented yet: no token to test with.
    let r = test().await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "auth_failed", "{r}");
    // Consented: the token works at the API.
    env.authorize_fully(&admin, &cred, None, "alice").await;
    let r = test().await;
    assert_eq!(r["ok"], true, "{r}");
    // An access token about to expire is refreshed first (as resolve would), then used.
    let f = env.fields(&conn).await;
    env.replace(&cred, &f, json!({"access_token_expires_at": LONG_AGO}))
        .await;
    let r = test().await;
    assert_eq!(r["ok"], true, "{r}");
    let f2 = env.fields(&conn).await;
    assert_ne!(
        f2["access_token"], f["access_token"],
        "Test connection refreshed the stale token"
    );
    // The token revoked at the provider: the API answers 401, reported as auth_failed.
    env.op
        .revoke(&env.client, &st(&f2["access_token"]), "access_token")
        .await;
    let r = test().await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "auth_failed", "{r}");
    let text = r.to_string();
    for k in ["access_token", "refresh_token"] {
        assert!(!text.contains(st(&f2[k]).as_str()), "{k} in a test result: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_connection_of_an_oauth_saas_connection_calls_the_api_with_a_fresh_token() {
    each_backend!(saas_test_connection);
}
