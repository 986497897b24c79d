//! What a slow or hostile client can do to the HTTP server (issue 15): half-sent request
//! lines, idle keep-alive connections, bodies that trickle in, and more connections than the
//! server takes. Each limit is set short here through its `CREDVAULT_*` variable; each test
//! has its control (the same connection is open, or a request is served, before the limit
//! bites).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, Scope, Server, TempDir};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(env: &[(&str, &str)]) -> Server {
    Server::start_opts(Backend::Sqlite, TempDir::new(), None, &[], env).await
}

fn addr(srv: &Server) -> String {
    srv.base.trim_start_matches("http://").to_owned()
}

/// Whether the server closed `s` (EOF or reset) within `within`; `false` if it is still open.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before the close is fine; keep reading to the end.
            Ok(Ok(_)) => continue,
        }
    }
}

/// 2,000 connections that send half a request line and then nothing do not keep a worker's
/// resolve from answering at once, and all of them are closed once the header timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_connections_are_closed_on_time_while_resolves_still_answer() {
    let srv = start(&[("CREDVAULT_HEADER_TIMEOUT_SECS", "3")]).await;
    let cred = srv.database_credential(&srv.admin, "db", "pw-hardening").await;
    let conn = srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "c", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "db.internal", "database": "a"}, "credential_id": cred["id"]}),
        )
        .await
        .ok(201);
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let (_, worker) = srv
        .principal(&org, "service_account", "w", &[("worker", Scope::Ws(&ws))])
        .await;
    let resolve = || {
        srv.post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": conn["id"], "run_id": "r"}),
        )
    };
    resolve().await.ok(200);

    let a = addr(&srv);
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..2_000 {
        let mut s = TcpStream::connect(&a).await.unwrap();
        s.write_all(b"GET /v1/credentials HTT").await.unwrap();
        slow.push(s);
    }
    // While they hang there, a worker's resolve answers at once.
    let t = Instant::now();
    let r = resolve().await;
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        took < Duration::from_secs(1),
        "resolve took {took:?} beside 2,000 slow connections"
    );
    // Control: they are open now (the test could see them stay open).
    assert!(
        !closed_within(&mut slow[0], Duration::from_millis(200)).await,
        "closed too early"
    );
    // The header timeout (3 s) closes every one of them, within a margin.
    let deadline = opened + Duration::from_secs(3) + Duration::from_secs(4);
    let mut still_open = 0;
    for s in &mut slow {
        let left = deadline.saturating_duration_since(Instant::now());
        if !closed_within(s, left).await {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open,
        0,
        "connections still open {:?} after they were opened",
        opened.elapsed()
    );
}

/// An idle keep-alive connection is closed after the header timeout; a request on it before
/// then is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let srv = start(&[("CREDVAULT_HEADER_TIMEOUT_SECS", "2")]).await;
    let mut s = TcpStream::connect(addr(&srv)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "served");
    assert!(
        !closed_within(&mut s, Duration::from_millis(500)).await,
        "kept alive for now"
    );
    assert!(
        closed_within(&mut s, Duration::from_secs(4)).await,
        "still open after the idle time"
    );
}

/// A body that trickles in is cut off when the body timeout passes, with 408 `body_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_answered_408_when_its_time_is_up() {
    let srv = start(&[("CREDVAULT_BODY_TIMEOUT_SECS", "2")]).await;
    let mut s = TcpStream::connect(addr(&srv)).await.unwrap();
    let head = format!(
        "POST /v1/credentials HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
        srv.admin
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte a second: never fast enough to finish 200 bytes in 2 s.
    let mut answer = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        let _ = s.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Ok(_) => break,
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // Control: the same request with its whole body is served.
    srv.post(
        "/v1/credentials",
        &srv.admin,
        json!({"name": "fast", "type": "password", "workspace_id": srv.ws_id, "environment": "prod", "fields": {"password": "x"}}),
    )
    .await
    .ok(201);
}

/// Past the connection cap new connections are closed at once and the server says so in its
/// log; connections already open keep working, and room frees up as they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_are_closed_and_logged_while_open_ones_work() {
    let srv = start(&[
        ("CREDVAULT_MAX_CONNECTIONS", "40"),
        ("CREDVAULT_HEADER_TIMEOUT_SECS", "30"),
    ])
    .await;
    let a = addr(&srv);
    // One keep-alive connection that has already been served.
    let mut kept = TcpStream::connect(&a).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(kept.read(&mut buf).await.unwrap() > 0);
    // Fill the rest of the cap with idle connections.
    let mut idle = Vec::new();
    for _ in 0..39 {
        idle.push(TcpStream::connect(&a).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Control: the idle ones are open.
    assert!(!closed_within(&mut idle[0], Duration::from_millis(200)).await);
    // The next one is closed at once.
    let mut extra = TcpStream::connect(&a).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "a connection past the cap stayed open"
    );
    let d = Instant::now() + Duration::from_secs(5);
    while !srv.logs().contains("connection cap reached") {
        assert!(Instant::now() < d, "no log line about the cap:\n{}", srv.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The kept-alive connection still answers.
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Room frees up when connections end.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.get("/readyz", "").await.ok(200);
}

/// A flood of bad tokens from one address: the journal gets the first failure in full and one
/// summary for the window (not one event per request); past the throttle the address gets
/// 429 with Retry-After (without a store read); the spike detector still sees every failure; a
/// token that worked lately keeps working from the same address. (A known principal's failures, a revoked token say, are a kind
/// of their own, journaled in full: `api.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tokens_is_journaled_by_window_and_throttled_with_retry_after() {
    let srv = start(&[
        ("CREDVAULT_AUTH_FAILURE_WINDOW_SECS", "3"),
        ("CREDVAULT_AUTH_THROTTLE_AFTER", "50"),
    ])
    .await;
    let instance_failures = || async {
        srv.get("/v1/audit?org_id=_instance&action=auth.failure&limit=500", &srv.admin)
            .await
            .ok(200)["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    // Control: one failure is one full event, at once.
    let r = srv.get("/v1/me", "cvt_first-bad-token").await;
    assert_eq!(r.status, 401);
    let first = instance_failures().await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0]["details"]["token_fingerprint"].is_string(), "{}", first[0]);

    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after = Vec::new();
    for i in 0..119 {
        let r = srv
            .http
            .get(format!("{}/v1/me", srv.base))
            .bearer_auth(format!("cvt_flood-{i}"))
            .send()
            .await
            .unwrap();
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
        if r.status().as_u16() == 429 {
            let ra: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            retry_after.push(ra);
        }
    }
    assert_eq!(statuses.get(&401), Some(&49), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&70), "{statuses:?}");
    assert!(retry_after.iter().all(|s| (1..=3).contains(s)), "{retry_after:?}");
    // A token that has worked on this node lately still works from the throttled address…
    srv.get("/v1/me", &srv.admin).await.ok(200);
    // …a token it has never seen waits for the window like the flood (no store read for it).
    let org = srv.org_id.clone();
    let (_, fresh) = srv
        .principal(&org, "user", "fresh", &[("viewer", Scope::Org(&org))])
        .await;
    let r = srv.get("/v1/me", &fresh).await;
    assert_eq!(r.status, 429, "{}", r.text);
    // The journal did not grow by request…
    assert_eq!(instance_failures().await.len(), 1);
    // …the spike detector saw the flood…
    let alerts = srv
        .get("/v1/audit?org_id=_instance&action=alert.auth_failures", &srv.admin)
        .await
        .ok(200);
    assert!(!alerts["items"].as_array().unwrap().is_empty(), "{alerts}");
    // …and once the window has ended, one summary counts the rest.
    let d = Instant::now() + Duration::from_secs(15);
    let summary = loop {
        let all = instance_failures().await;
        if let Some(s) = all.iter().find(|e| e["details"]["coalesced"] == true) {
            break s.clone();
        }
        assert!(Instant::now() < d, "no summary: {all:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(summary["details"]["count"], 120, "{summary}");
    assert_eq!(summary["details"]["throttled"], 71, "{summary}");
    assert_eq!(summary["details"]["reason"], "unknown_token", "{summary}");
    assert_eq!(summary["target_id"], "127.0.0.1", "{summary}");
    assert_eq!(instance_failures().await.len(), 2, "one full event and one summary");
}
