//! API tests over real HTTP against a started server, on SQLite and PostgreSQL: bootstrap,
//! tenancy, tokens, credentials and versions, lists, audit and its tamper evidence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Backend, Scope, Server};
use serde_json::{Value, json};

async fn bootstrap_creates_default_org_workspace_and_admin(b: Backend) {
    let srv = Server::start(b).await;
    assert!(srv.admin.starts_with("cvt_"));
    let me = srv.get("/v1/me", &srv.admin).await.ok(200);
    assert_eq!(me["name"], "admin");
    assert_eq!(me["instance_admin"], true);
    assert_eq!(me["bindings"][0]["role"], "admin");
    let orgs = srv.get("/v1/orgs", &srv.admin).await.ok(200);
    assert_eq!(orgs["items"][0]["name"], "default");
    assert_eq!(orgs["items"][0]["id"], srv.org_id.as_str());
    let ws = srv.get("/v1/workspaces", &srv.admin).await.ok(200);
    assert_eq!(ws["items"][0]["id"], srv.ws_id.as_str());
    let settings = srv
        .get(&format!("/v1/orgs/{}/settings", srv.org_id), &srv.admin)
        .await
        .ok(200);
    assert_eq!(settings["recovery_window_days"], 7);
    assert_eq!(settings["allow_environment_override"], false);
    assert_eq!(settings["enabled_types"].as_array().unwrap().len(), 7);
    assert_eq!(srv.get("/healthz", "").await.status, 200);
    assert_eq!(srv.get("/readyz", "").await.ok(200)["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_creates_default_org_workspace_and_admin_on_every_backend() {
    each_backend!(bootstrap_creates_default_org_workspace_and_admin);
}

async fn tokens_are_hashed_revocable_and_expire(b: Backend) {
    let srv = Server::start(b).await;
    let (pid, token) = srv
        .principal(
            &srv.org_id,
            "service_account",
            "etl",
            &[("viewer", Scope::Org(&srv.org_id))],
        )
        .await;
    assert!(pid.starts_with("sa_"));
    srv.get("/v1/me", &token).await.ok(200);
    // Only the hash is stored.
    let list = srv
        .get(&format!("/v1/tokens?principal_id={pid}"), &srv.admin)
        .await
        .ok(200);
    let tok_id = list["items"][0]["id"].as_str().unwrap().to_owned();
    assert!(!list.to_string().contains(&token));
    srv.delete(&format!("/v1/tokens/{tok_id}"), &srv.admin).await.ok(200);
    srv.get("/v1/me", &token).await.problem(401, "unauthenticated");
    // Expiry in the past is refused; a near expiry works until it passes.
    srv.post(
        "/v1/tokens",
        &srv.admin,
        json!({"principal_id": pid, "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .problem(422, "in_the_past");
    let soon = credvault_test_time(2);
    let t = srv
        .post(
            "/v1/tokens",
            &srv.admin,
            json!({"principal_id": pid, "expires_at": soon}),
        )
        .await
        .ok(201);
    let short = t["token"].as_str().unwrap().to_owned();
    srv.get("/v1/me", &short).await.ok(200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    srv.get("/v1/me", &short).await.problem(401, "unauthenticated");
    // A garbage token is refused and the failure is audited with a fingerprint, never the token.
    srv.get("/v1/me", "cvt_not-a-real-token")
        .await
        .problem(401, "unauthenticated");
    let fails = srv
        .get("/v1/audit?org_id=_instance&action=auth.failure", &srv.admin)
        .await
        .ok(200);
    let text = fails.to_string();
    assert!(text.contains("token_fingerprint"));
    assert!(!text.contains("cvt_not-a-real-token"));
    let org_fails = srv.get("/v1/audit?action=auth.failure", &srv.admin).await.ok(200);
    let reasons: Vec<&str> = org_fails["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"token_revoked"), "{reasons:?}");
    assert!(reasons.contains(&"token_expired"), "{reasons:?}");
}

/// An RFC 3339 time `secs` seconds from now.
fn credvault_test_time(secs: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let days = now / 86400;
    let rem = now % 86400;
    // Civil date from days since epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_hashed_revocable_and_expire_on_every_backend() {
    each_backend!(tokens_are_hashed_revocable_and_expire);
}

async fn credential_lifecycle_keeps_exactly_one_current_version(b: Backend) {
    let srv = Server::start(b).await;
    let c = srv.database_credential(&srv.admin, "prod-warehouse", "pw-one").await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cred_"));
    assert_eq!(c["status"], "active");
    assert_eq!(c["variant"], "password");
    assert_eq!(c["fields"], json!({"username": "loader"}));
    assert_eq!(c["secret_fields_set"], json!(["password"]));
    assert_eq!(c["current_version"], 1);
    assert_eq!(c["labels"]["system"], "postgres");
    // Same name in the same workspace: conflict.
    srv.post("/v1/credentials", &srv.admin, json!({"name": "prod-warehouse", "type": "password", "workspace_id": srv.ws_id, "environment": "prod", "fields": {"password": "x"}}))
        .await
        .problem(409, "name_taken");

    let v2 = srv
        .post(
            &format!("/v1/credentials/{id}/versions"),
            &srv.admin,
            json!({"fields": {"username": "loader2", "password": "pw-two"}, "mode": "stage"}),
        )
        .await
        .ok(201);
    assert_eq!(v2, json!({"credential_id": id, "version": 2, "state": "pending"}));
    let got = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    assert_eq!(got["current_version"], 1);
    assert_eq!(got["fields"]["username"], "loader");
    let promoted = srv
        .post(
            &format!("/v1/credentials/{id}/versions/2/promote"),
            &srv.admin,
            json!({}),
        )
        .await
        .ok(200);
    assert_eq!(promoted["current_version"], 2);
    assert_eq!(promoted["fields"]["username"], "loader2");
    let states: Vec<(i64, String)> = promoted["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["state"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(states, vec![(1, "previous".into()), (2, "current".into())]);
    srv.post(
        &format!("/v1/credentials/{id}/versions/2/revoke"),
        &srv.admin,
        json!({}),
    )
    .await
    .problem(409, "cannot_revoke_current");
    srv.post(
        &format!("/v1/credentials/{id}/versions/2/promote"),
        &srv.admin,
        json!({}),
    )
    .await
    .problem(409, "already_current");
    srv.post(
        &format!("/v1/credentials/{id}/versions/9/promote"),
        &srv.admin,
        json!({}),
    )
    .await
    .problem(404, "not_found");
    let revoked = srv
        .post(
            &format!("/v1/credentials/{id}/versions/1/revoke"),
            &srv.admin,
            json!({}),
        )
        .await
        .ok(200);
    assert_eq!(revoked["versions"][0]["state"], "revoked");
    srv.post(
        &format!("/v1/credentials/{id}/versions/1/promote"),
        &srv.admin,
        json!({}),
    )
    .await
    .problem(409, "version_revoked");
    // Replace: current at once, the old current is revoked.
    let v3 = srv
        .post(
            &format!("/v1/credentials/{id}/versions"),
            &srv.admin,
            json!({"fields": {"username": "loader3", "password": "pw-three"}, "mode": "replace"}),
        )
        .await
        .ok(201);
    assert_eq!(v3["state"], "current");
    let got = srv
        .get(&format!("/v1/credentials/{id}/versions"), &srv.admin)
        .await
        .ok(200);
    let states: Vec<&str> = got["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["revoked", "revoked", "current"]);
    // A version must be complete and valid for the type.
    srv.post(
        &format!("/v1/credentials/{id}/versions"),
        &srv.admin,
        json!({"fields": {"username": "x"}}),
    )
    .await
    .problem(422, "invalid_fields");

    // Patch metadata.
    let p = srv
        .patch(&format!("/v1/credentials/{id}"), &srv.admin, json!({"name": "prod-dwh", "labels": {"system": "postgres", "owner_team": "bi"}, "description": "loader", "expires_at": "2030-01-01T00:00:00Z", "rotation_period_days": 30}))
        .await
        .ok(200);
    assert_eq!(p["name"], "prod-dwh");
    assert_eq!(p["labels"]["owner_team"], "bi");
    assert_eq!(p["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(p["rotation_period_days"], 30);
    let p = srv
        .patch(
            &format!("/v1/credentials/{id}"),
            &srv.admin,
            json!({"expires_at": null, "description": null}),
        )
        .await
        .ok(200);
    assert_eq!(p["expires_at"], Value::Null);
    assert_eq!(p["description"], Value::Null);

    // Disable / enable / delete / restore.
    assert_eq!(
        srv.post(&format!("/v1/credentials/{id}/disable"), &srv.admin, json!({}))
            .await
            .ok(200)["status"],
        "disabled"
    );
    assert_eq!(
        srv.post(&format!("/v1/credentials/{id}/enable"), &srv.admin, json!({}))
            .await
            .ok(200)["status"],
        "active"
    );
    let d = srv.delete(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    assert_eq!(d["status"], "pending_deletion");
    assert!(d["deleted_at"].is_string());
    srv.post(&format!("/v1/credentials/{id}/disable"), &srv.admin, json!({}))
        .await
        .problem(409, "credential_deleted");
    srv.post(
        &format!("/v1/credentials/{id}/versions"),
        &srv.admin,
        json!({"fields": {"username": "a", "password": "b"}}),
    )
    .await
    .problem(409, "credential_deleted");
    assert_eq!(
        srv.post(&format!("/v1/credentials/{id}/restore"), &srv.admin, json!({}))
            .await
            .ok(200)["status"],
        "active"
    );
    srv.post(&format!("/v1/credentials/{id}/restore"), &srv.admin, json!({}))
        .await
        .problem(409, "not_deleted");

    // Every step is audited, and the chain verifies.
    let audit = srv
        .get(&format!("/v1/audit?target_id={id}&limit=500"), &srv.admin)
        .await
        .ok(200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "credential.create",
        "credential.version.create",
        "credential.version.promote",
        "credential.version.revoke",
        "credential.update",
        "credential.disable",
        "credential.enable",
        "credential.delete",
        "credential.restore",
    ] {
        assert!(actions.contains(&a), "missing {a} in {actions:?}");
    }
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    assert_eq!(v["ok"], true);
    assert!(v["events"].as_i64().unwrap() > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_lifecycle_keeps_exactly_one_current_version_on_every_backend() {
    each_backend!(credential_lifecycle_keeps_exactly_one_current_version);
}

async fn concurrent_promotes_leave_one_winner(b: Backend) {
    let srv = Server::start(b).await;
    let c = srv.database_credential(&srv.admin, "racy", "p1").await;
    let id = c["id"].as_str().unwrap().to_owned();
    for _ in 0..8 {
        srv.post(
            &format!("/v1/credentials/{id}/versions"),
            &srv.admin,
            json!({"fields": {"username": "u", "password": "p"}}),
        )
        .await
        .ok(201);
    }
    let mut handles = Vec::new();
    for n in 2..=9 {
        let (base, tok, id) = (srv.base.clone(), srv.admin.clone(), id.clone());
        handles.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/v1/credentials/{id}/versions/{n}/promote"))
                .bearer_auth(tok)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for h in handles {
        let s = h.await.unwrap();
        assert!(s == 200 || s == 409, "status {s}");
    }
    let got = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    let current: Vec<i64> = got["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "current")
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(current.len(), 1, "exactly one current: {got}");
    assert_eq!(got["current_version"], current[0]);
    let previous = got["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "previous")
        .count();
    assert!(previous <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_promotes_leave_one_winner_on_every_backend() {
    each_backend!(concurrent_promotes_leave_one_winner);
}

async fn lists_filter_and_paginate(b: Backend) {
    let srv = Server::start(b).await;
    for i in 0..7 {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        srv.post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": format!("{env}-key-{i}"), "type": "api_key", "workspace_id": srv.ws_id, "environment": env,
                   "labels": {"system": if i < 3 { "stripe" } else { "hubspot" }},
                   "fields": {"parts": [{"name": "Authorization", "value": "k", "in": "header"}]}}),
        )
        .await
        .ok(201);
    }
    srv.post("/v1/credentials", &srv.admin, json!({"name": "shared-pw", "type": "password", "org_id": srv.org_id, "environment": "prod", "fields": {"password": "x"}})).await.ok(201);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/credentials?limit=3&cursor={c}"),
            None => "/v1/credentials?limit=3".to_owned(),
        };
        let page = srv.get(&q, &srv.admin).await.ok(200);
        for i in page["items"].as_array().unwrap() {
            seen.push(i["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 8, "no duplicates across pages");
    let prod = srv
        .get("/v1/credentials?environment=prod&type=api_key", &srv.admin)
        .await
        .ok(200);
    assert_eq!(prod["items"].as_array().unwrap().len(), 4);
    let stripe = srv
        .get("/v1/credentials?label=system:stripe&environment=prod", &srv.admin)
        .await
        .ok(200);
    assert_eq!(stripe["items"].as_array().unwrap().len(), 2);
    let ws = srv
        .get(&format!("/v1/credentials?workspace_id={}", srv.ws_id), &srv.admin)
        .await
        .ok(200);
    assert_eq!(ws["items"].as_array().unwrap().len(), 7);
    let org_wide = srv.get("/v1/credentials?type=password", &srv.admin).await.ok(200);
    assert_eq!(org_wide["items"][0]["workspace_id"], Value::Null);
    assert_eq!(org_wide["items"][0]["org_id"], srv.org_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_and_paginate_on_every_backend() {
    each_backend!(lists_filter_and_paginate);
}

async fn enabled_types_limit_create_and_the_type_list(b: Backend) {
    let srv = Server::start(b).await;
    let types = srv.get("/v1/credential-types", &srv.admin).await.ok(200);
    assert_eq!(types["items"].as_array().unwrap().len(), 7);
    srv.patch(
        &format!("/v1/orgs/{}/settings", srv.org_id),
        &srv.admin,
        json!({"enabled_types": ["database", "api_key"]}),
    )
    .await
    .ok(200);
    let types = srv.get("/v1/credential-types", &srv.admin).await.ok(200);
    let names: Vec<&str> = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["database", "api_key"]);
    srv.post("/v1/credentials", &srv.admin, json!({"name": "p", "type": "password", "workspace_id": srv.ws_id, "environment": "dev", "fields": {"password": "x"}}))
        .await
        .problem(422, "type_not_enabled");
    srv.patch(
        &format!("/v1/orgs/{}/settings", srv.org_id),
        &srv.admin,
        json!({"recovery_window_days": 0}),
    )
    .await
    .problem(422, "out_of_range");
    srv.patch(
        &format!("/v1/orgs/{}/settings", srv.org_id),
        &srv.admin,
        json!({"enabled_typos": []}),
    )
    .await
    .problem(422, "invalid_field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_types_limit_create_and_the_type_list_on_every_backend() {
    each_backend!(enabled_types_limit_create_and_the_type_list);
}

async fn audit_tampering_is_detected(b: Backend) {
    let srv = Server::start(b).await;
    for i in 0..5 {
        srv.database_credential(&srv.admin, &format!("c{i}"), "pw").await;
    }
    let org = srv.org_id.clone();
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);
    let events = srv.get("/v1/audit?action=credential.create", &srv.admin).await.ok(200);
    let third = events["items"][2]["seq"].as_i64().unwrap();
    // Edit one field of one event.
    srv.raw_sql(&format!(
        "UPDATE audit_events SET details = '{{\"name\":\"forged\"}}' WHERE seq = {third}"
    ));
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_broken"]["seq"], third);
    // Delete it instead (after restoring nothing): the next event's link breaks (or, when it
    // was the last of its chain — shards on PostgreSQL — the chain's head).
    srv.raw_sql(&format!("DELETE FROM audit_events WHERE seq = {third}"));
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    assert_eq!(v["ok"], false);
    assert!(v["first_broken"]["seq"].as_i64().unwrap() >= third, "{v}");
    // Removing the tail is caught by the chain head.
    let srv2 = Server::start(b).await;
    srv2.database_credential(&srv2.admin, "x", "pw").await;
    srv2.raw_sql(&format!(
        "DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events WHERE chain = '{}')",
        srv2.org_id
    ));
    let v = srv2.get("/v1/audit/verify", &srv2.admin).await.ok(200);
    assert_eq!(v["ok"], false, "{v}");
    let _ = org;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tampering_is_detected_on_every_backend() {
    each_backend!(audit_tampering_is_detected);
}

/// PostgreSQL spreads an organization's events over shards (issue 22): every event once, each
/// shard a chain of its own, listed together in sequence order, and tampering with any shard —
/// an edit, a deleted event, a truncated tail, a shard removed whole or one slipped in — breaks
/// verification, naming the shard.
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_shards_share_the_writes_and_verification_walks_every_one() {
    async fn sharded(n: &str) -> Server {
        let data = common::TempDir::new();
        Server::start_opts(
            Backend::Postgres,
            data,
            Some(common::PgDb::create()),
            &[],
            &[("CREDVAULT_AUDIT_SHARDS", n)],
        )
        .await
    }
    fn pg_query(srv: &Server, sql: &str) -> Vec<Vec<Value>> {
        let (u, sql) = (srv.pg.as_ref().unwrap().url.clone(), sql.to_owned());
        common::off_runtime(move || {
            let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
            c.query(&sql, &[])
                .unwrap()
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| match r.try_get::<_, String>(i) {
                            Ok(t) => json!(t),
                            Err(_) => json!(r.get::<_, i64>(i)),
                        })
                        .collect()
                })
                .collect()
        })
    }
    let chains =
        |srv: &Server| -> Vec<(String, i64)> {
            pg_query(srv, &format!(
            "SELECT chain, COUNT(*)::bigint FROM audit_events WHERE org_id = '{}' GROUP BY chain ORDER BY chain",
            srv.org_id
        ))
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect()
        };
    let srv = sharded("4").await;
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (url, token, ws) = (
            format!("{}/v1/credentials", srv.base),
            srv.admin.clone(),
            srv.ws_id.clone(),
        );
        creates.spawn(async move {
            let body = json!({"name": format!("s{i}"), "type": "database", "workspace_id": ws, "environment": "prod",
                              "fields": {"username": "loader", "password": "pw"}});
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = creates.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    // Listed together, in sequence order, each once.
    let listed = srv
        .get("/v1/audit?action=credential.create&limit=100", &srv.admin)
        .await
        .ok(200);
    let seqs: Vec<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 24, "{listed}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The writes went to more than one shard, and only to the organization's four.
    let used = chains(&srv);
    assert!(used.len() > 1, "one chain took every event: {used:?}");
    let heads = pg_query(
        &srv,
        &format!(
            "SELECT chain FROM audit_heads WHERE org = '{}' ORDER BY chain",
            srv.org_id
        ),
    );
    assert_eq!(heads.len(), 4, "{heads:?}");
    for (c, _) in &used {
        assert!(c == &srv.org_id || c.starts_with(&format!("{}#", srv.org_id)), "{c}");
    }
    // Events on a shard carry it; the organization's own chain needs no name.
    let on_shard = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["chain"].is_string())
        .count();
    let on_own = used.iter().find(|(c, _)| c == &srv.org_id).map_or(0, |(_, n)| *n);
    assert!(on_shard > 0, "{listed}");
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["chains"], 4, "{v}");
    let total: i64 = used.iter().map(|(_, n)| n).sum();
    assert_eq!(v["events"], total, "{v} {used:?} (own chain: {on_own})");

    // The export of the journal verifies offline, shards and all; an edited line does not.
    let dir = common::TempDir::new();
    let file = dir.path().join("export.jsonl").to_string_lossy().into_owned();
    let client = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .args(args)
            .env("CREDVAULT_SERVER", &srv.base)
            .env("CREDVAULT_TOKEN", &srv.admin)
            .env_remove("CREDVAULT_TOKEN_FILE")
            .output()
            .unwrap()
    };
    let out = client(&["audit", "export", "--output", &file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = client(&["audit", "verify", "--file", &file]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let moved = text.replacen(
        &format!("\"chain\":\"{}#", srv.org_id),
        &format!("\"chain\":\"{}#9", srv.org_id),
        1,
    );
    assert_ne!(moved, text, "no event in the export names its shard");
    std::fs::write(&file, moved).unwrap();
    assert!(
        !client(&["audit", "verify", "--file", &file]).status.success(),
        "an event moved to another shard verified"
    );

    // Tampering, each on a shard other than the organization's own chain.
    let shard = used
        .iter()
        .find(|(c, n)| c != &srv.org_id && *n >= 2)
        .map(|(c, _)| c.clone())
        .expect("a shard with two events");
    let seq_of = |srv: &Server, q: &str| pg_query(srv, q)[0][0].as_i64().unwrap();
    let broken = |v: &Value, chain: &str| {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["first_broken"]["chain"], chain, "{v}");
    };
    // An edit.
    let first = seq_of(
        &srv,
        &format!("SELECT MIN(seq) FROM audit_events WHERE chain = '{shard}'"),
    );
    srv.raw_sql(&format!("UPDATE audit_events SET details = '{{}}' WHERE seq = {first}"));
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    broken(&v, &shard);
    assert_eq!(v["first_broken"]["seq"], first, "{v}");

    // A truncated tail (the head still names it).
    let srv = sharded("4").await;
    for i in 0..16 {
        srv.database_credential(&srv.admin, &format!("t{i}"), "pw").await;
    }
    let used = chains(&srv);
    let shard = used
        .iter()
        .find(|(c, n)| c != &srv.org_id && *n >= 1)
        .map(|(c, _)| c.clone())
        .unwrap();
    let last = seq_of(
        &srv,
        &format!("SELECT MAX(seq) FROM audit_events WHERE chain = '{shard}'"),
    );
    srv.raw_sql(&format!("DELETE FROM audit_events WHERE seq = {last}"));
    broken(&srv.get("/v1/audit/verify", &srv.admin).await.ok(200), &shard);
    // The whole shard, head and all.
    srv.raw_sql(&format!(
        "DELETE FROM audit_events WHERE chain = '{shard}'; DELETE FROM audit_heads WHERE chain = '{shard}'"
    ));
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    broken(&v, &shard);
    assert!(v["first_broken"]["reason"].as_str().unwrap().contains("removed"), "{v}");

    // A shard slipped in (a head the organization never opened).
    let srv = sharded("2").await;
    srv.database_credential(&srv.admin, "u", "pw").await;
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);
    let fake = format!("{}#7", srv.org_id);
    srv.raw_sql(&format!(
        "INSERT INTO audit_heads (chain, last_seq, hash, org) VALUES ('{fake}', 0, decode(repeat('00', 32), 'hex'), '{}')",
        srv.org_id
    ));
    broken(&srv.get("/v1/audit/verify", &srv.admin).await.ok(200), &fake);

    // More shards at a restart: opened, recorded, verified.
    let srv = sharded("2").await;
    srv.database_credential(&srv.admin, "w", "pw").await;
    let srv = srv.restart(&[], &[("CREDVAULT_AUDIT_SHARDS", "5")]).await;
    let opened = srv
        .get("/v1/audit?action=audit.shards_opened", &srv.admin)
        .await
        .ok(200);
    let named: Vec<&str> = opened["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["details"]["chains"].as_array().unwrap())
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(named.len(), 4, "{opened}");
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    assert_eq!((v["ok"].clone(), v["chains"].clone()), (json!(true), json!(5)), "{v}");
}

/// Resolve on PostgreSQL reads outside any transaction and writes its audit record through the
/// node's group-committing appender (issue 22). What must not change: every resolve has its
/// event, once; a secret is released only once its event committed; a disable acknowledged by
/// one node stops the next resolve on another at once.
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_resolves_are_group_committed_without_releasing_anything_unaudited() {
    let srv = Server::start(Backend::Postgres).await;
    let (worker, cred, conn) = worker_and_connection(&srv, "appender", "S3CRET-APPENDER").await;
    let resolve = |base: String, run: String| {
        let (worker, conn) = (worker.clone(), conn.clone());
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/v1/resolve"))
                .bearer_auth(worker)
                .json(&json!({"connection_id": conn, "run_id": run}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Many at once: each answered with the secret, each with exactly one event.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..48 {
        set.spawn(resolve(srv.base.clone(), format!("run-{i}")));
    }
    while let Some(r) = set.join_next().await {
        let (status, body) = r.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("S3CRET-APPENDER"), "{body}");
    }
    let events = srv
        .get(
            &format!("/v1/audit?action=connection.resolve&target_id={conn}&limit=500"),
            &srv.admin,
        )
        .await
        .ok(200);
    let runs: std::collections::BTreeSet<String> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events["items"].as_array().unwrap().len(), 48, "{events}");
    assert_eq!(runs.len(), 48);
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);

    // No event, no secret: with audit inserts failing, the resolve fails and shows nothing.
    srv.raw_sql(
        "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
    );
    let (status, body) = resolve(srv.base.clone(), "while-down".into()).await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("S3CRET"), "{body}");
    srv.raw_sql("DROP TRIGGER refuse_audit ON audit_events;");
    let (status, body) = resolve(srv.base.clone(), "after".into()).await;
    assert_eq!(status, 200, "control: {body}");

    // A second node on the same database: a disable it acknowledges stops the first node's
    // next resolve (no cache, no grace).
    let data2 = common::TempDir::new();
    for e in std::fs::read_dir(srv.data.path()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), data2.path().join(e.file_name())).unwrap();
        }
    }
    let url = srv.pg.as_ref().unwrap().url.clone();
    let node2 = Server::start_opts(Backend::Postgres, data2, None, &["--database-url", &url], &[]).await;
    let (status, _) = resolve(node2.base.clone(), "node2".into()).await;
    assert_eq!(status, 200, "control: the second node resolves");
    node2
        .post(&format!("/v1/credentials/{cred}/disable"), &srv.admin, json!({}))
        .await
        .ok(200);
    let (status, body) = resolve(srv.base.clone(), "after-disable".into()).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("credential_disabled"), "{body}");
    assert!(!body.contains("S3CRET"), "{body}");
}

/// A worker (service account bound in the default workspace) and a database credential with
/// `password` attached to a new connection: (worker's token, credential ID, connection ID).
async fn worker_and_connection(srv: &Server, name: &str, password: &str) -> (String, String, String) {
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let (_, worker) = srv
        .principal(
            &org,
            "service_account",
            &format!("{name}-etl"),
            &[("worker", Scope::Ws(&ws))],
        )
        .await;
    let cred = srv
        .database_credential(&srv.admin, &format!("{name}-db"), password)
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conn = srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": format!("{name}-conn"), "workspace_id": ws, "environment": "prod", "kind": "postgres",
                   "config": {"host": "db.internal", "database": "dwh"}, "credential_id": cred}),
        )
        .await
        .id();
    (worker, cred, conn)
}

/// `credvault_resolve_cache_<what>_total` from `/metrics`.
async fn cache_count(srv: &Server, what: &str) -> u64 {
    let m = srv.call("GET", "/metrics", None, None).await;
    let name = format!("credvault_resolve_cache_{what}_total ");
    m.text
        .lines()
        .find_map(|l| l.strip_prefix(name.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {}", m.text))
        .parse()
        .unwrap()
}

/// On SQLite a resolve's reads are replayed from memory while the store's state is unchanged
/// (issue 22). Whatever changes the state — through the API or behind its back — is seen by the
/// very next resolve: no grace window. Each step first proves the cache was warm (a hit), so
/// a cache that ignored the change would answer with the secret. On PostgreSQL nothing is
/// cached; the same steps hold.
async fn resolves_from_memory_see_every_change_at_once(b: Backend) {
    let srv = Server::start(b).await;
    let (worker, cred, conn) = worker_and_connection(&srv, "cached", "PW-ONE").await;
    let sqlite = b == Backend::Sqlite;
    // Resolves until one is answered from memory (SQLite) and returns the last answer.
    let warm = |version: Option<i64>| {
        let (srv, worker, conn) = (&srv, worker.clone(), conn.clone());
        async move {
            let hits = cache_count(srv, "hits").await;
            let mut body = json!({"connection_id": conn, "run_id": "warm"});
            if let Some(v) = version {
                body["version"] = json!(v);
            }
            let mut r = None;
            for _ in 0..3 {
                r = Some(srv.post("/v1/resolve", &worker, body.clone()).await.ok(200));
            }
            if sqlite {
                assert!(cache_count(srv, "hits").await >= hits + 2, "the cache was not used");
            } else {
                assert_eq!(cache_count(srv, "hits").await, 0, "PostgreSQL keeps nothing in memory");
            }
            r.unwrap()
        }
    };
    let resolve = |version: Option<i64>| {
        let (srv, worker, conn) = (&srv, worker.clone(), conn.clone());
        async move {
            let mut body = json!({"connection_id": conn, "run_id": "after"});
            if let Some(v) = version {
                body["version"] = json!(v);
            }
            srv.post("/v1/resolve", &worker, body).await
        }
    };

    // Disable → refused at once; enable → resolves again.
    assert_eq!(warm(None).await["credential"]["fields"]["password"], "PW-ONE");
    srv.post(&format!("/v1/credentials/{cred}/disable"), &srv.admin, json!({}))
        .await
        .ok(200);
    let r = resolve(None).await.problem(409, "credential_disabled");
    assert!(!r.to_string().contains("PW-ONE"));
    srv.post(&format!("/v1/credentials/{cred}/enable"), &srv.admin, json!({}))
        .await
        .ok(200);

    // A new version promoted → the next resolve has the new password, never the old one.
    srv.patch(
        &format!("/v1/orgs/{}/settings", srv.org_id),
        &srv.admin,
        json!({"previous_grace_hours": 2}),
    )
    .await
    .ok(200);
    warm(None).await;
    srv.post(
        &format!("/v1/credentials/{cred}/versions"),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": "PW-TWO"}, "mode": "stage"}),
    )
    .await
    .ok(201);
    srv.post(
        &format!("/v1/credentials/{cred}/versions/2/promote"),
        &srv.admin,
        json!({}),
    )
    .await
    .ok(200);
    let r = resolve(None).await.ok(200);
    assert_eq!(r["credential"]["fields"]["password"], "PW-TWO", "{r}");

    // The previous version, pinned, resolves within its grace; revoked → refused at once.
    assert_eq!(warm(Some(1)).await["credential"]["fields"]["password"], "PW-ONE");
    srv.post(
        &format!("/v1/credentials/{cred}/versions/1/revoke"),
        &srv.admin,
        json!({}),
    )
    .await
    .ok(200);
    resolve(Some(1)).await.problem(409, "version_not_resolvable");

    // A write behind the server's back (another process on the same file, or a restore):
    // the next resolve sees it.
    warm(None).await;
    srv.raw_sql(&format!(
        "UPDATE credentials SET status = 'disabled' WHERE id = '{cred}'"
    ));
    resolve(None).await.problem(409, "credential_disabled");
    srv.raw_sql(&format!("UPDATE credentials SET status = 'active' WHERE id = '{cred}'"));

    // Detach → refused at once.
    warm(None).await;
    srv.delete(&format!("/v1/connections/{conn}/credential"), &srv.admin)
        .await
        .ok(200);
    let r = resolve(None).await.problem(409, "no_credential");
    assert!(!r.to_string().contains("PW-TWO"));

    // Every answer had its own event, and the chains verify.
    let events = srv
        .get(
            &format!("/v1/audit?action=connection.resolve&target_id={conn}&limit=500"),
            &srv.admin,
        )
        .await
        .ok(200);
    let ok = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "success")
        .count();
    assert_eq!(ok, 5 * 3 + 1, "{events}");
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_from_memory_see_every_change_at_once_on_every_backend() {
    each_backend!(resolves_from_memory_see_every_change_at_once);
}

/// Many resolves in flight while the credential is disabled: every resolve that began after
/// the disable was acknowledged is refused, every answer with the secret has exactly one
/// event, and no event says success for a refused one (SQLite's replays race the writer here).
async fn a_disable_during_a_resolve_storm_stops_every_later_resolve(b: Backend) {
    let srv = Server::start(b).await;
    let (worker, cred, conn) = worker_and_connection(&srv, "storm", "PW-STORM").await;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for task in 0..8 {
        let (base, worker, conn, acked) = (srv.base.clone(), worker.clone(), conn.clone(), acked.clone());
        set.spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut late_ok, mut late) = (0u32, 0u32, 0u32);
            // Until 25 resolves of this task began after the acknowledgement.
            for i in 0..100_000 {
                if late >= 25 {
                    break;
                }
                let after_ack = acked.load(std::sync::atomic::Ordering::SeqCst);
                late += u32::from(after_ack);
                let r = client
                    .post(format!("{base}/v1/resolve"))
                    .bearer_auth(&worker)
                    .json(&json!({"connection_id": conn, "run_id": format!("storm-{task}-{i}")}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                match status {
                    200 => {
                        assert!(text.contains("PW-STORM"));
                        ok += 1;
                        late_ok += u32::from(after_ack);
                    }
                    409 => assert!(
                        text.contains("credential_disabled") && !text.contains("PW-STORM"),
                        "{text}"
                    ),
                    other => panic!("{other}: {text}"),
                }
            }
            (ok, late_ok)
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    srv.post(&format!("/v1/credentials/{cred}/disable"), &srv.admin, json!({}))
        .await
        .ok(200);
    acked.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut ok, mut late_ok) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (o, l) = r.unwrap();
        ok += o;
        late_ok += l;
    }
    assert_eq!(
        late_ok, 0,
        "resolves begun after the disable was acknowledged returned the secret"
    );
    assert!(ok > 0, "control: resolves before the disable succeeded");
    let mut successes = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut q = format!("/v1/audit?action=connection.resolve&target_id={conn}&outcome=success&limit=500");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let page = srv.get(&q, &srv.admin).await.ok(200);
        successes += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(successes as u32, ok, "one success event per answer with the secret");
    if b == Backend::Sqlite {
        assert!(
            cache_count(&srv, "hits").await > 0,
            "the storm was not served from memory"
        );
    }
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_during_a_resolve_storm_stops_every_later_resolve_on_every_backend() {
    each_backend!(a_disable_during_a_resolve_storm_stops_every_later_resolve);
}

async fn audit_queries_filter_and_paginate(b: Backend) {
    let srv = Server::start(b).await;
    for i in 0..6 {
        srv.database_credential(&srv.admin, &format!("a{i}"), "pw").await;
    }
    let all = srv
        .get("/v1/audit?action=credential.create&limit=4", &srv.admin)
        .await
        .ok(200);
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    let next = all["next_cursor"].as_str().unwrap();
    let rest = srv
        .get(
            &format!("/v1/audit?action=credential.create&limit=4&cursor={next}"),
            &srv.admin,
        )
        .await
        .ok(200);
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    let e = &all["items"][0];
    for k in [
        "seq",
        "at",
        "actor_id",
        "action",
        "target_type",
        "target_id",
        "org_id",
        "workspace_id",
        "outcome",
        "source_ip",
        "request_id",
        "details",
    ] {
        assert!(e.get(k).is_some(), "event lacks {k}: {e}");
    }
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["source_ip"], "127.0.0.1");
    let none = srv
        .get(
            "/v1/audit?action=credential.create&since=2999-01-01T00:00:00Z",
            &srv.admin,
        )
        .await
        .ok(200);
    assert!(none["items"].as_array().unwrap().is_empty());
    srv.get("/v1/audit?since=yesterday", &srv.admin)
        .await
        .problem(422, "invalid_timestamp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_queries_filter_and_paginate_on_every_backend() {
    each_backend!(audit_queries_filter_and_paginate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route_and_metrics_count_requests() {
    let srv = Server::start(Backend::Sqlite).await;
    let doc = srv.call("GET", "/v1/openapi.json", None, None).await.ok(200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in [
        ("post", "/v1/credentials"),
        ("get", "/v1/credentials/{id}"),
        ("post", "/v1/credentials/{id}/versions/{n}/promote"),
        ("patch", "/v1/orgs/{id}/settings"),
        ("get", "/v1/audit/verify"),
        ("post", "/v1/tokens"),
        ("delete", "/v1/role-bindings/{id}"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    // It says what the server accepts and answers (schemathesis checks it in scripts/test).
    let op = |path: &str, method: &str| paths[path][method].clone();
    assert_eq!(
        op("/metrics", "get")["responses"]["200"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["text/plain; version=0.0.4"]
    );
    // One catalogue of problem codes, each with its meaning; a problem's `code` is one of them.
    let codes = doc["x-problem-codes"].as_array().unwrap();
    assert!(codes.len() > 80, "{}", codes.len());
    let names: Vec<&str> = codes.iter().map(|c| c["code"].as_str().unwrap()).collect();
    for c in codes {
        assert!(c["description"].as_str().is_some_and(|d| d.len() > 10), "{c}");
    }
    for known in [
        "not_found",
        "unauthenticated",
        "forbidden",
        "invalid_fields",
        "audit_unavailable",
        "too_many_failures",
    ] {
        assert!(names.contains(&known), "{known} not catalogued");
    }
    assert_eq!(
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"],
        json!(names),
        "the Problem schema allows exactly the catalogued codes"
    );
    // The audit actions, each with what it records (what SIEM rules match on).
    let actions: Vec<&str> = doc["x-audit-actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["description"].as_str().is_some_and(|d| d.len() > 10), "{a}");
            a["action"].as_str().unwrap()
        })
        .collect();
    for known in [
        "connection.resolve",
        "credential.reveal",
        "auth.failure",
        "alert.audit_dead_letter",
    ] {
        assert!(actions.contains(&known), "{known} not catalogued");
    }
    // A 204 has no body, so it documents no content.
    let set_password = op("/v1/principals/{id}/password", "put");
    assert!(set_password["responses"]["204"].is_object(), "{set_password}");
    assert!(
        set_password["responses"]["204"].get("content").is_none(),
        "{set_password}"
    );
    let callback = op("/v1/oauth/callback", "get");
    assert!(callback["responses"]["400"]["content"]["text/html; charset=utf-8"].is_object());
    assert_eq!(callback["x-semantic-errors"][0]["status"], 400);
    let report = op("/v1/reports/{kind}", "get");
    assert!(report["responses"]["200"]["content"]["text/csv; charset=utf-8"].is_object());
    let list = op("/v1/credentials", "get");
    let param = |name: &str| {
        list["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(param("limit")["type"], "integer");
    assert_eq!(param("limit")["minimum"], 1);
    assert!(param("cursor")["pattern"].as_str().unwrap().starts_with("^djE6"));
    assert_eq!(
        op("/v1/credentials", "post")["responses"]["201"]["links"]["getCredential"]["parameters"]["path.id"],
        "$response.body#/id"
    );
    assert!(op("/v1/credentials", "get")["responses"]["429"]["headers"]["Retry-After"].is_object());
    assert!(doc["components"]["schemas"]["CredentialFields.aws.access_key"].is_object());
    // Every documented operation answers something other than "no such route".
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "x").replace("{n}", "1");
            let r = srv
                .call(&method.to_uppercase(), &concrete, Some(&srv.admin), None)
                .await;
            assert!(
                !(r.status == 404 && r.body["detail"] == "no such route"),
                "{method} {path} is documented but not routed"
            );
            assert_ne!(r.status, 405, "{method} {path}");
            assert!(r.status < 500, "{method} {path} -> {}", r.status);
        }
    }
    let m = srv.call("GET", "/metrics", None, None).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text
            .contains("credvault_http_requests_total{method=\"GET\",route=\"/v1/openapi.json\",status=\"200\"} 2"),
        "{}",
        m.text
    );
    assert!(m.text.contains("credvault_store_ready 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_request_ids_and_security_headers() {
    let srv = Server::start(Backend::Sqlite).await;
    let r = srv
        .http
        .get(format!("{}/v1/me", srv.base))
        .header("x-request-id", "trace-abc-123")
        .bearer_auth(&srv.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let p = srv.call("GET", "/v1/credentials/cred_x", Some(&srv.admin), None).await;
    let body = p.problem(404, "not_found");
    assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
    let unauth = srv.http.get(format!("{}/v1/me", srv.base)).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    assert_eq!(unauth.headers()["www-authenticate"], "Bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_on_sigterm_and_restart_keeps_data() {
    let mut srv = Server::start(Backend::Sqlite).await;
    let c = srv.database_credential(&srv.admin, "keep-me", "pw").await;
    srv.stop();
    // The log reader threads may still be draining the pipes.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !srv.logs().contains("shutdown signal received") && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(srv.logs().contains("shutdown signal received"), "{}", srv.logs());
    // Restart on the same data directory: no new admin token, the credential is there.
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(srv.data.path());
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(
        line.contains("listening on"),
        "a restarted server prints no new token: {line}"
    );
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap();
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/v1/credentials/{}", c["id"].as_str().unwrap()))
        .bearer_auth(&srv.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_its_key_file_refuses_to_start() {
    let mut srv = Server::start(Backend::Sqlite).await;
    srv.stop();
    std::fs::remove_file(srv.data.path().join("keyring.json")).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(srv.data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key file") && err.contains("missing"), "{err}");
}

#[test]
fn init_prints_the_bootstrap_json_once() {
    let dir = common::TempDir::new();
    let out = std::process::Command::new(common::bin())
        .args(["init", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["admin_token"].as_str().unwrap().starts_with("cvt_"));
    assert!(v["org_id"].as_str().unwrap().starts_with("org_"));
    assert!(v["workspace_id"].as_str().unwrap().starts_with("ws_"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("keyring.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = std::process::Command::new(common::bin())
        .args(["init", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));
}
