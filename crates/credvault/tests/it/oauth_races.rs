//! An OAuth refresh or consent callback must not undo a rotation that happens while the token
//! endpoint is answering: the new tokens go back only into the version they were derived from
//! (compare-and-set). A token endpoint that takes two seconds to answer holds the door open; a
//! new version is entered meanwhile; afterwards the current version is still exactly the one
//! entered. Controls: without the concurrent rotation, the same refresh and callback store
//! their tokens. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Scope, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A token endpoint that answers every POST after `delay` with fresh tokens
/// (`at-N` / `rt-N`), counting requests.
struct SlowTokens {
    port: u16,
    calls: Arc<AtomicUsize>,
}

impl SlowTokens {
    async fn start(delay: Duration) -> SlowTokens {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then the body by Content-Length.
                    let body_len = loop {
                        let Ok(n) = s.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            break end + 4 + len;
                        }
                    };
                    while buf.len() < body_len {
                        let Ok(n) = s.read(&mut chunk).await else { return };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(delay).await;
                    let body = json!({"access_token": format!("at-{n}"), "refresh_token": format!("rt-{n}"),
                                      "token_type": "Bearer", "expires_in": 3600})
                    .to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        SlowTokens { port, calls }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// OAuth fields whose access token expired long ago (so resolve refreshes).
fn stale(tokens: &SlowTokens, secret: &str, refresh: &str) -> Value {
    json!({"client_id": "cid", "client_secret": secret, "authorization_url": tokens.url("/auth"),
           "token_url": tokens.url("/token"), "scopes": ["api:read"], "refresh_token": refresh,
           "access_token": "at-stale", "access_token_expires_at": "2020-01-01T00:00:00Z"})
}

struct Env {
    srv: Server,
    tokens: SlowTokens,
    cred: String,
    conn: String,
    worker: String,
}

async fn setup(b: Backend) -> Env {
    let srv = Server::start_with(b, &["--egress-allow", "127.0.0.0/8"]).await;
    let tokens = SlowTokens::start(Duration::from_secs(2)).await;
    let a = srv.admin.clone();
    let cred = srv
        .post(
            "/v1/credentials",
            &a,
            json!({"name": "saas", "type": "oauth", "variant": "authorization_code", "workspace_id": srv.ws_id,
                   "environment": "prod", "fields": stale(&tokens, "cs-1", "rt-1")}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conn = srv
        .post(
            "/v1/connections",
            &a,
            json!({"name": "saas-api", "workspace_id": srv.ws_id, "environment": "prod", "kind": "oauth_saas",
                   "config": {"api_base_url": "https://api.saas.example/"}, "credential_id": cred}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let (_, worker) = srv
        .principal(&org, "service_account", "runner", &[("worker", Scope::Ws(&ws))])
        .await;
    Env {
        srv,
        tokens,
        cred,
        conn,
        worker,
    }
}

impl Env {
    async fn resolve(&self) -> common::Resp {
        self.srv
            .post(
                "/v1/resolve",
                &self.worker,
                json!({"connection_id": self.conn, "run_id": "run-1"}),
            )
            .await
    }

    /// Enters a new current version (update in place) with these fields.
    async fn replace(&self, fields: Value) {
        self.srv
            .post(
                &format!("/v1/credentials/{}/versions", self.cred),
                &self.srv.admin,
                json!({"fields": fields, "mode": "replace"}),
            )
            .await
            .ok(201);
    }
}

async fn refresh_race(b: Backend) {
    let env = setup(b).await;
    // Control: a refresh with nothing in between stores its tokens.
    let f = env.resolve().await.ok(200)["credential"]["fields"].clone();
    assert_eq!(f["access_token"], "at-1", "{f}");
    assert_eq!(
        f["refresh_token"], "rt-1",
        "the endpoint's rt-1 replaced the stored one: {f}"
    );
    assert_eq!(env.tokens.calls.load(Ordering::SeqCst), 1);

    // Make the token stale again (a new version), then race a rotation against its refresh.
    env.replace(stale(&env.tokens, "cs-2", "rt-2")).await;
    let refreshing = {
        let (base, worker, conn, http) = (
            env.srv.base.clone(),
            env.worker.clone(),
            env.conn.clone(),
            env.srv.http.clone(),
        );
        tokio::spawn(async move {
            http.post(format!("{base}/v1/resolve"))
                .bearer_auth(worker)
                .json(&json!({"connection_id": conn, "run_id": "run-2"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // While the endpoint takes its time, an engineer rotates: a new secret, a fresh token.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        env.tokens.calls.load(Ordering::SeqCst),
        2,
        "the refresh is at the token endpoint"
    );
    let mut rotated = stale(&env.tokens, "cs-3", "rt-3");
    rotated["access_token"] = json!("at-rotated");
    rotated["access_token_expires_at"] = json!("2099-01-01T00:00:00Z");
    env.replace(rotated).await;
    let _ = refreshing.await.unwrap();
    // The rotation stands: the refresh's tokens (from version 2's grant) were not written
    // into version 3.
    let c = env
        .srv
        .get(&format!("/v1/credentials/{}", env.cred), &env.srv.admin)
        .await
        .ok(200);
    assert_eq!(c["current_version"], 3, "{c}");
    let f = env.resolve().await.ok(200)["credential"]["fields"].clone();
    assert_eq!(f["client_secret"], "cs-3", "{f}");
    assert_eq!(f["refresh_token"], "rt-3", "{f}");
    assert_eq!(f["access_token"], "at-rotated", "{f}");
    let events = env
        .srv
        .get(
            &format!("/v1/audit?action=oauth.refresh&target_id={}", env.cred),
            &env.srv.admin,
        )
        .await
        .ok(200);
    let discarded = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["discarded"].is_string())
        .count();
    assert_eq!(discarded, 1, "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_overlaps_a_rotation_does_not_undo_it_on_every_backend() {
    each_backend!(refresh_race);
}

/// Drives the consent callback for a state started by `authorize`: returns the callback
/// page's body.
async fn callback(env: &Env, state: &str) -> String {
    let r = env
        .srv
        .http
        .get(format!(
            "{}/v1/oauth/callback?code=the-code&state={state}",
            env.srv.base
        ))
        .send()
        .await
        .unwrap();
    r.text().await.unwrap()
}

async fn authorize(env: &Env) -> String {
    let r = env
        .srv
        .post(
            &format!("/v1/credentials/{}/oauth/authorize", env.cred),
            &env.srv.admin,
            json!({}),
        )
        .await
        .ok(200);
    r["state"].as_str().unwrap().to_owned()
}

async fn callback_race(b: Backend) {
    let env = setup(b).await;
    // Control: a callback with nothing in between stores the tokens as a new version.
    let state = authorize(&env).await;
    let page = callback(&env, &state).await;
    assert!(page.contains("Access granted"), "{page}");
    let c = env
        .srv
        .get(&format!("/v1/credentials/{}", env.cred), &env.srv.admin)
        .await
        .ok(200);
    assert_eq!(c["current_version"], 2, "{c}");

    // Now a rotation lands while the provider answers the code exchange.
    let state = authorize(&env).await;
    let pending = {
        let (base, http) = (env.srv.base.clone(), env.srv.http.clone());
        tokio::spawn(async move {
            http.get(format!("{base}/v1/oauth/callback?code=the-code&state={state}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut rotated = stale(&env.tokens, "cs-9", "rt-9");
    rotated["access_token"] = json!("at-rotated");
    rotated["access_token_expires_at"] = json!("2099-01-01T00:00:00Z");
    env.replace(rotated).await;
    let page = pending.await.unwrap();
    assert!(page.contains("got a new version while you were authorizing"), "{page}");
    let c = env
        .srv
        .get(&format!("/v1/credentials/{}", env.cred), &env.srv.admin)
        .await
        .ok(200);
    assert_eq!(c["current_version"], 3, "no version was added over the rotation: {c}");
    let f = env.resolve().await.ok(200)["credential"]["fields"].clone();
    assert_eq!(f["client_secret"], "cs-9", "{f}");
    assert_eq!(f["refresh_token"], "rt-9", "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_callback_that_overlaps_a_rotation_does_not_undo_it_on_every_backend() {
    each_backend!(callback_race);
}
