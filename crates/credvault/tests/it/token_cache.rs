//! The token cache's bound: a node looks a token up in the store at most every 2 seconds.
//! Revoking a token takes effect at once on the node that revoked it, and within that bound
//! on every other node of the same PostgreSQL store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

#[cfg(feature = "postgres-tests")]
use std::time::{Duration, Instant};

#[cfg(feature = "postgres-tests")]
use common::Backend;
use common::{Scope, Server};
use serde_json::json;

/// Creates a service account with a token; returns (token ID, token).
async fn service_token(srv: &Server, name: &str) -> (String, String) {
    let org = srv.org_id.clone();
    let (sa, _) = srv
        .principal(&org, "service_account", name, &[("viewer", Scope::Org(&org))])
        .await;
    let t = srv
        .post("/v1/tokens", &srv.admin, json!({"principal_id": sa}))
        .await
        .ok(201);
    (
        t["id"].as_str().unwrap().to_owned(),
        t["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once_on_the_node_that_revoked_it() {
    for b in common::backends() {
        let srv = Server::start(b).await;
        let (id, token) = service_token(&srv, "cached").await;
        // Warm the cache, then revoke: the very next request is refused.
        srv.get("/v1/me", &token).await.ok(200);
        srv.get("/v1/me", &token).await.ok(200);
        srv.delete(&format!("/v1/tokens/{id}"), &srv.admin).await.ok(200);
        assert_eq!(srv.get("/v1/me", &token).await.status, 401, "{b:?}");
    }
}

#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_node_is_refused_by_another_within_two_seconds() {
    let node1 = Server::start(Backend::Postgres).await;
    // A second node on the same database with the same key file.
    let data2 = common::TempDir::new();
    for e in std::fs::read_dir(node1.data.path()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), data2.path().join(e.file_name())).unwrap();
        }
    }
    let url = node1.pg.as_ref().unwrap().url.clone();
    let node2 = Server::start_opts(Backend::Postgres, data2, None, &["--database-url", url.as_str()], &[]).await;
    let (id, token) = service_token(&node1, "two-nodes").await;
    // Node 2 caches the token.
    node2.get("/v1/me", &token).await.ok(200);
    node1.delete(&format!("/v1/tokens/{id}"), &node1.admin).await.ok(200);
    let revoked = Instant::now();
    assert_eq!(node1.get("/v1/me", &token).await.status, 401);
    // Node 2 refuses it within the bound (plus a little for the requests themselves).
    loop {
        let status = node2.get("/v1/me", &token).await.status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_millis(2500),
            "node 2 still accepts a token revoked {:?} ago",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
