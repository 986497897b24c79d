//! `kill -9` of the server in the middle of credential rotations, on SQLite and PostgreSQL:
//! after a restart every acknowledged version is there and opens, every credential has
//! exactly one current version, and rotation carries on. (The same for `keys rotate` is in
//! `keys.rs`; for audit forwarding in `siem.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, Scope, Server};
use serde_json::{Value, json};

const CREDENTIALS: usize = 24;
const ROTATIONS: usize = 12;

/// The password written by rotation `k` (1-based) of credential `i`; `k = 0` is the first.
fn password(i: usize, k: usize) -> String {
    if k == 0 {
        format!("crash-first-{i}")
    } else {
        format!("crash-rot-{i}-{k}")
    }
}

async fn kill9_mid_rotation(b: Backend) {
    let mut srv = Server::start(b).await;
    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(&org, "service_account", "crash-worker", &[("worker", Scope::Org(&org))])
        .await;
    let mut creds = Vec::new();
    let mut conns = Vec::new();
    for i in 0..CREDENTIALS {
        let c = srv
            .database_credential(&srv.admin, &format!("crash-{i}"), &password(i, 0))
            .await;
        let cred = c["id"].as_str().unwrap().to_owned();
        let conn = srv
            .post(
                "/v1/connections",
                &srv.admin,
                json!({"name": format!("crash-conn-{i}"), "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                       "config": {"host": "db.internal", "database": "dwh"}, "credential_id": cred}),
            )
            .await
            .ok(201);
        creds.push(cred);
        conns.push(conn["id"].as_str().unwrap().to_owned());
    }
    // Every credential is rotated again and again (each by one task, in order, so rotation k
    // makes version k + 1); acknowledged versions are recorded as their responses arrive.
    let acked: Arc<Mutex<BTreeMap<usize, i64>>> = Arc::default();
    let mut tasks = Vec::new();
    for (i, cred) in creds.iter().enumerate() {
        let (base, tok, cred, acked) = (srv.base.clone(), srv.admin.clone(), cred.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for k in 1..=ROTATIONS {
                let r = http
                    .post(format!("{base}/v1/credentials/{cred}/versions"))
                    .bearer_auth(&tok)
                    .json(&json!({"fields": {"username": "loader", "password": password(i, k)}, "mode": "replace"}))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status().as_u16() != 201 {
                    return;
                }
                let Ok(v) = r.json::<Value>().await else { return };
                let version = v["version"].as_i64().unwrap();
                assert_eq!(version, k as i64 + 1, "rotation {k} of credential {i}: {v}");
                acked.lock().unwrap().insert(i, version);
            }
        }));
    }
    // Kill once a good part of the rotations is acknowledged, with the rest in flight.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let done: i64 = acked.lock().unwrap().values().map(|v| v - 1).sum();
        if done >= (CREDENTIALS * ROTATIONS / 4) as i64 {
            break;
        }
        assert!(
            Instant::now() < until,
            "rotations did not get going: {done} acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    srv.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let total: i64 = acked.values().map(|v| v - 1).sum();
    assert!(
        total < (CREDENTIALS * ROTATIONS) as i64,
        "the kill came after every rotation: the test proved nothing"
    );
    let srv = srv.restart(&[], &[]).await;
    for (i, (cred, conn)) in creds.iter().zip(&conns).enumerate() {
        let got = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
        let versions = got["versions"].as_array().unwrap();
        let current: Vec<i64> = versions
            .iter()
            .filter(|v| v["state"] == "current")
            .map(|v| v["version"].as_i64().unwrap())
            .collect();
        assert_eq!(current.len(), 1, "exactly one current version of credential {i}: {got}");
        let current = current[0];
        let last_acked = acked.get(&i).copied().unwrap_or(1);
        // Acknowledged means durable: the current version is at least the last acknowledged
        // one (a version committed just before the kill but never acknowledged may follow it).
        assert!(
            current == last_acked || current == last_acked + 1,
            "credential {i}: current version {current}, last acknowledged {last_acked}"
        );
        for v in 1..=current {
            assert!(
                versions.iter().any(|x| x["version"] == v),
                "credential {i} lost version {v}: {got}"
            );
        }
        // The current version opens and holds what its rotation wrote.
        let r = srv
            .post(
                "/v1/resolve",
                &worker,
                json!({"connection_id": conn, "run_id": "after-crash"}),
            )
            .await
            .ok(200);
        assert_eq!(
            r["credential"]["fields"]["password"],
            password(i, (current - 1) as usize),
            "credential {i}, version {current}"
        );
        // And rotation carries on where it stopped.
        let next = srv
            .post(
                &format!("/v1/credentials/{cred}/versions"),
                &srv.admin,
                json!({"fields": {"username": "loader", "password": "after-the-crash"}, "mode": "replace"}),
            )
            .await
            .ok(201);
        assert_eq!(next["version"], current + 1);
    }
    // The journal survived intact.
    let v = srv
        .get(&format!("/v1/audit/verify?org_id={}", srv.org_id), &srv.admin)
        .await
        .ok(200);
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_in_the_middle_of_rotations_keeps_every_acknowledged_version_and_one_current_on_every_backend() {
    for b in common::backends() {
        eprintln!("--- backend {b:?}");
        kill9_mid_rotation(b).await;
    }
}
