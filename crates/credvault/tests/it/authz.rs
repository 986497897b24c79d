//! Who may do what (PRODUCT.md §3): every role against every route as a table, tenancy
//! (a principal of another organization sees 404 for everything inside ours), workspace
//! scoping, and the movable role policy. Inside a scope without the permission: 403
//! `forbidden`; outside the scope: 404 `not_found`; every refusal is in the audit journal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Backend, Scope, Server};
use serde_json::{Value, json};

/// The six roles, in the column order of [`TABLE`].
const ROLES: [&str; 6] = [
    "admin",
    "integration_engineer",
    "builder",
    "auditor",
    "viewer",
    "worker",
];

/// The password of every credential this file creates through [`fresh_credential`]; it must
/// never show up anywhere but a permitted reveal.
const PASSWORD: &str = "pw-authz-7c1d9e";

/// The routes under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    CreateCredential,
    ListCredentials,
    GetCredential,
    ListVersions,
    PatchCredential,
    StageVersion,
    PromoteVersion,
    RevokeVersion,
    Disable,
    Enable,
    Delete,
    Restore,
    Reveal,
    ListAudit,
    VerifyAudit,
    PatchSettings,
    CreateWorkspace,
    CreatePrincipal,
    CreateRoleBinding,
    CreateToken,
    CreateOrg,
}

/// The permission table of PRODUCT.md §3 as statuses, one column per role of [`ROLES`]:
/// admin, integration_engineer, builder, auditor, viewer, worker.
#[rustfmt::skip]
const TABLE: &[(Route, [u16; 6])] = &[
    //                             admin  i_eng  build  audit  view   worker
    // credential.create
    (Route::CreateCredential,    [201,   201,   403,   403,   403,   403]),
    // metadata.read
    (Route::ListCredentials,     [200,   200,   200,   200,   200,   403]),
    (Route::GetCredential,       [200,   200,   200,   200,   200,   403]),
    (Route::ListVersions,        [200,   200,   200,   200,   200,   403]),
    // credential.create (rotate, disable)
    (Route::PatchCredential,     [200,   200,   403,   403,   403,   403]),
    (Route::StageVersion,        [201,   201,   403,   403,   403,   403]),
    (Route::PromoteVersion,      [200,   200,   403,   403,   403,   403]),
    (Route::RevokeVersion,       [200,   200,   403,   403,   403,   403]),
    (Route::Disable,             [200,   200,   403,   403,   403,   403]),
    (Route::Enable,              [200,   200,   403,   403,   403,   403]),
    // credential.delete
    (Route::Delete,              [200,   403,   403,   403,   403,   403]),
    (Route::Restore,             [200,   403,   403,   403,   403,   403]),
    // credential.reveal: nobody by default
    (Route::Reveal,              [403,   403,   403,   403,   403,   403]),
    // audit.read
    (Route::ListAudit,           [200,   403,   403,   200,   403,   403]),
    (Route::VerifyAudit,         [200,   403,   403,   200,   403,   403]),
    // org.admin
    (Route::PatchSettings,       [200,   403,   403,   403,   403,   403]),
    (Route::CreateWorkspace,     [201,   403,   403,   403,   403,   403]),
    (Route::CreatePrincipal,     [201,   403,   403,   403,   403,   403]),
    (Route::CreateRoleBinding,   [201,   403,   403,   403,   403,   403]),
    (Route::CreateToken,         [201,   403,   403,   403,   403,   403]),
    // instance admin only
    (Route::CreateOrg,           [403,   403,   403,   403,   403,   403]),
];

/// One prepared attempt: the request, and the credential it targets with that credential's
/// state just before the call (so a refusal can be checked to have changed nothing).
struct Req {
    method: &'static str,
    path: String,
    body: Option<Value>,
    cred: Option<String>,
    before: Option<Value>,
}

impl Req {
    fn new(method: &'static str, path: impl Into<String>, body: Option<Value>) -> Req {
        Req {
            method,
            path: path.into(),
            body,
            cred: None,
            before: None,
        }
    }
}

/// Creates a database credential in the default workspace as the instance admin.
async fn fresh_credential(srv: &Server, name: &str) -> String {
    srv.database_credential(&srv.admin, name, PASSWORD).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates a principal (no bindings) in `org` as the instance admin.
async fn fresh_principal(srv: &Server, org: &str, name: &str) -> String {
    srv.post(
        "/v1/principals",
        &srv.admin,
        json!({"org_id": org, "kind": "user", "name": name}),
    )
    .await
    .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sets up a fresh, meaningful target for `route` in the default organization (as the
/// instance admin) and returns the request to try. `n` makes names unique; with
/// `org_in_query`, list routes name the default organization explicitly.
async fn prepare(srv: &Server, route: Route, n: usize, org_in_query: bool) -> Req {
    let org = srv.org_id.clone();
    let q = if org_in_query {
        format!("?org_id={org}")
    } else {
        String::new()
    };
    let on_cred = |id: &str, method, suffix: &str, body| {
        let mut r = Req::new(method, format!("/v1/credentials/{id}{suffix}"), body);
        r.cred = Some(id.to_owned());
        r
    };
    let mut req = match route {
        Route::CreateCredential => Req::new(
            "POST",
            "/v1/credentials",
            Some(
                json!({"name": format!("new-{n}"), "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
                        "labels": {"system": "postgres", "owner_team": "data-platform"},
                        "fields": {"username": "loader", "password": PASSWORD}}),
            ),
        ),
        Route::ListCredentials => {
            fresh_credential(srv, &format!("listed-{n}")).await;
            Req::new("GET", format!("/v1/credentials{q}"), None)
        }
        Route::ListAudit => Req::new("GET", format!("/v1/audit{q}"), None),
        Route::VerifyAudit => Req::new("GET", format!("/v1/audit/verify{q}"), None),
        Route::PatchSettings => Req::new(
            "PATCH",
            format!("/v1/orgs/{org}/settings"),
            Some(json!({"recovery_window_days": 7})),
        ),
        Route::CreateWorkspace => Req::new(
            "POST",
            "/v1/workspaces",
            Some(json!({"org_id": org, "name": format!("ws-{n}")})),
        ),
        Route::CreatePrincipal => Req::new(
            "POST",
            "/v1/principals",
            Some(json!({"org_id": org, "kind": "service_account", "name": format!("sa-{n}")})),
        ),
        Route::CreateRoleBinding => {
            let p = fresh_principal(srv, &org, &format!("bind-{n}")).await;
            Req::new(
                "POST",
                "/v1/role-bindings",
                Some(json!({"principal_id": p, "role": "viewer", "org_id": org})),
            )
        }
        Route::CreateToken => {
            let p = fresh_principal(srv, &org, &format!("tok-{n}")).await;
            Req::new("POST", "/v1/tokens", Some(json!({"principal_id": p})))
        }
        Route::CreateOrg => Req::new("POST", "/v1/orgs", Some(json!({"name": format!("org-{n}")}))),
        cred_route => {
            let id = fresh_credential(srv, &format!("target-{n}")).await;
            let stage = || async {
                srv.post(
                    &format!("/v1/credentials/{id}/versions"),
                    &srv.admin,
                    json!({"fields": {"username": "u", "password": "p2"}, "mode": "stage"}),
                )
                .await
                .ok(201)
            };
            match cred_route {
                Route::GetCredential => on_cred(&id, "GET", "", None),
                Route::ListVersions => on_cred(&id, "GET", "/versions", None),
                Route::PatchCredential => on_cred(
                    &id,
                    "PATCH",
                    "",
                    Some(json!({"description": "patched", "labels": {"system": "mysql"}})),
                ),
                Route::StageVersion => on_cred(
                    &id,
                    "POST",
                    "/versions",
                    Some(json!({"fields": {"username": "u", "password": "p2"}, "mode": "stage"})),
                ),
                Route::PromoteVersion => {
                    let v = stage().await;
                    assert_eq!(
                        (v["version"].as_i64(), v["state"].as_str()),
                        (Some(2), Some("pending")),
                        "staging: {v}"
                    );
                    on_cred(&id, "POST", "/versions/2/promote", None)
                }
                Route::RevokeVersion => {
                    stage().await;
                    on_cred(&id, "POST", "/versions/2/revoke", None)
                }
                Route::Disable => on_cred(&id, "POST", "/disable", None),
                Route::Enable => {
                    let c = srv
                        .post(&format!("/v1/credentials/{id}/disable"), &srv.admin, json!({}))
                        .await
                        .ok(200);
                    assert_eq!(c["status"], "disabled");
                    on_cred(&id, "POST", "/enable", None)
                }
                Route::Delete => on_cred(&id, "DELETE", "", None),
                Route::Restore => {
                    let c = srv.delete(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
                    assert_eq!(c["status"], "pending_deletion");
                    on_cred(&id, "POST", "/restore", None)
                }
                Route::Reveal => on_cred(&id, "POST", "/reveal", None),
                other => unreachable!("{other:?} is handled above"),
            }
        }
    };
    if let Some(id) = &req.cred {
        req.before = Some(srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200));
    }
    req
}

/// Sends `req` as `who` and compares the answer with `expected`: the status, the problem code
/// of a refusal (403 `forbidden`, 404 `not_found`), and that a refused call left its target
/// credential untouched. Returns a description naming `who` and `route` on any mismatch.
async fn check(srv: &Server, who: &str, route: Route, token: &str, req: Req, expected: u16) -> Option<String> {
    let label = format!("{who} × {route:?} ({} {})", req.method, req.path);
    let r = srv.call(req.method, &req.path, Some(token), req.body).await;
    if r.status != expected {
        return Some(format!(
            "{label}: expected {expected}, got {}; body: {}",
            r.status, r.text
        ));
    }
    let code = match expected {
        403 => "forbidden",
        404 => "not_found",
        _ => return None,
    };
    if !r.content_type.starts_with("application/problem+json") || r.body["code"] != code {
        return Some(format!(
            "{label}: expected a problem document with code {code:?}, got {} {}",
            r.content_type, r.text
        ));
    }
    if r.text.contains(PASSWORD) {
        return Some(format!(
            "{label}: the refusal carries the plaintext password: {}",
            r.text
        ));
    }
    if let (Some(id), Some(before)) = (&req.cred, &req.before) {
        let after = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
        if &after != before {
            return Some(format!(
                "{label}: refused with {expected} but the credential changed:\n  before {before}\n  after  {after}"
            ));
        }
    }
    None
}

/// Panics with every mismatch at once, so one run shows the whole disagreement.
#[track_caller]
fn assert_none_failed(backend: Backend, what: &str, tried: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "[{backend:?}] {} of {tried} {what} disagree with PRODUCT.md §3:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every audit event matching `query` (e.g. `outcome=denied&actor_id=…`), all pages.
async fn audit_events(srv: &Server, token: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?{query}&limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = srv.get(&path, token).await;
        assert!(
            !r.text.contains(PASSWORD),
            "the audit journal holds a plaintext password: {}",
            r.text
        );
        let page = r.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn permission_table(backend: Backend) {
    let srv = Server::start(backend).await;
    let org = srv.org_id.clone();
    let mut principals = Vec::new();
    for role in ROLES {
        let (pid, token) = srv
            .principal(&org, "user", &format!("{role}-user"), &[(role, Scope::Org(&org))])
            .await;
        principals.push((role, pid, token));
    }
    let mut failures = Vec::new();
    let mut tried = 0;
    // (role, route) -> the credential the attempt targeted, for the audit checks below.
    let mut targets: Vec<(&str, Route, Option<String>)> = Vec::new();
    for (row, (route, expected)) in TABLE.iter().enumerate() {
        for (col, (role, _, token)) in principals.iter().enumerate() {
            let req = prepare(&srv, *route, row * 10 + col, false).await;
            targets.push((role, *route, req.cred.clone()));
            tried += 1;
            if let Some(f) = check(&srv, role, *route, token, req, expected[col]).await {
                failures.push(f);
            }
        }
    }
    assert_none_failed(backend, "(role, route) pairs", tried, &failures);

    // Refusals are in the journal, as `denied`, with the refused actor and target.
    let target = |role: &str, route: Route| {
        targets
            .iter()
            .find(|(r, t, _)| *r == role && *t == route)
            .and_then(|(_, _, c)| c.clone())
            .unwrap()
    };
    let pid = |role: &str| principals.iter().find(|(r, _, _)| *r == role).unwrap().1.clone();
    let worker = audit_events(&srv, &srv.admin, &format!("outcome=denied&actor_id={}", pid("worker"))).await;
    let worker_refusals = TABLE.len();
    assert!(
        worker.len() >= worker_refusals,
        "[{backend:?}] the worker was refused {worker_refusals} times but the journal has {} denied events: {worker:#?}",
        worker.len()
    );
    assert!(
        worker
            .iter()
            .all(|e| e["outcome"] == "denied" && e["actor_id"] == pid("worker").as_str()),
        "{worker:#?}"
    );
    for route in [Route::GetCredential, Route::Delete, Route::Reveal, Route::Disable] {
        let cred = target("worker", route);
        assert!(
            worker.iter().any(|e| e["target_id"] == cred.as_str()),
            "[{backend:?}] worker × {route:?} on {cred} is not in the journal as denied: {worker:#?}"
        );
    }
    let builder = audit_events(
        &srv,
        &srv.admin,
        &format!("outcome=denied&action=credential.create&actor_id={}", pid("builder")),
    )
    .await;
    assert!(
        !builder.is_empty(),
        "[{backend:?}] the builder's refused credential.create is not in the journal"
    );
    let reveal = target("admin", Route::Reveal);
    let admin_reveal = audit_events(
        &srv,
        &srv.admin,
        &format!("outcome=denied&target_id={reveal}&actor_id={}", pid("admin")),
    )
    .await;
    assert_eq!(
        admin_reveal.len(),
        1,
        "[{backend:?}] the admin's refused reveal of {reveal}: {admin_reveal:#?}"
    );
    // Nothing in the journal shows a refusal as a success.
    let viewer_delete = target("viewer", Route::Delete);
    let ok = audit_events(
        &srv,
        &srv.admin,
        &format!("outcome=success&target_id={viewer_delete}&actor_id={}", pid("viewer")),
    )
    .await;
    assert!(
        ok.is_empty(),
        "[{backend:?}] a refused delete was journaled as a success: {ok:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_exactly_the_status_the_permission_table_says() {
    for backend in common::backends() {
        permission_table(backend).await;
    }
}

async fn other_org(backend: Backend) {
    let srv = Server::start(backend).await;
    let org = srv.org_id.clone();
    let other = srv.post("/v1/orgs", &srv.admin, json!({"name": "other"})).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(other.starts_with("org_") && other != org, "{other}");
    let (mallory, token) = srv
        .principal(&other, "user", "mallory", &[("admin", Scope::Org(&other))])
        .await;

    // Mallory is a full admin of her own organization ...
    let mine = srv
        .post(
            "/v1/credentials",
            &token,
            json!({"name": "mine", "type": "password", "org_id": other, "environment": "prod", "fields": {"password": "x"}}),
        )
        .await
        .ok(201)["id"].as_str().unwrap().to_owned();
    // ... and sees nothing of ours, whatever she asks.
    let mut failures = Vec::new();
    let mut tried = 0;
    let mut targets = Vec::new();
    for (n, (route, _)) in TABLE.iter().enumerate() {
        if *route == Route::CreateOrg {
            continue; // not a resource of the default organization (and she is no instance admin: 403)
        }
        let req = prepare(&srv, *route, n, true).await;
        targets.extend(req.cred.clone());
        tried += 1;
        if let Some(f) = check(&srv, "admin of another org", *route, &token, req, 404).await {
            failures.push(f);
        }
    }
    assert_eq!(
        srv.post("/v1/orgs", &token, json!({"name": "third"}))
            .await
            .problem(403, "forbidden")["status"],
        403
    );

    // The rest of the default organization's tenancy resources.
    let pid = fresh_principal(&srv, &org, "victim").await;
    let binding = srv
        .post(
            "/v1/role-bindings",
            &srv.admin,
            json!({"principal_id": pid, "role": "viewer", "org_id": org}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tok = srv
        .post("/v1/tokens", &srv.admin, json!({"principal_id": pid}))
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ws = srv.ws_id.clone();
    let tenancy = [
        ("GET", format!("/v1/orgs/{org}"), None),
        ("GET", format!("/v1/orgs/{org}/settings"), None),
        ("GET", format!("/v1/credential-types?org_id={org}"), None),
        ("GET", format!("/v1/workspaces?org_id={org}"), None),
        ("GET", format!("/v1/workspaces/{ws}"), None),
        ("GET", format!("/v1/credentials?workspace_id={ws}&org_id={org}"), None),
        ("GET", format!("/v1/audit?org_id={org}&workspace_id={ws}"), None),
        ("GET", format!("/v1/principals?org_id={org}"), None),
        ("GET", format!("/v1/principals/{pid}"), None),
        ("GET", format!("/v1/role-bindings?org_id={org}"), None),
        ("GET", format!("/v1/tokens?principal_id={pid}"), None),
        ("DELETE", format!("/v1/tokens/{tok}"), None),
        ("DELETE", format!("/v1/role-bindings/{binding}"), None),
        // Binding one of our principals in her own organization must not confirm that it exists.
        (
            "POST",
            "/v1/role-bindings".to_owned(),
            Some(json!({"principal_id": pid, "role": "viewer", "org_id": other})),
        ),
        (
            "POST",
            "/v1/role-bindings".to_owned(),
            Some(json!({"principal_id": mallory, "role": "admin", "org_id": org})),
        ),
        (
            "POST",
            "/v1/role-bindings".to_owned(),
            Some(json!({"principal_id": mallory, "role": "admin", "workspace_id": ws})),
        ),
    ];
    for (method, path, body) in tenancy {
        tried += 1;
        let r = srv.call(method, &path, Some(&token), body).await;
        if r.status != 404 || r.body["code"] != "not_found" {
            failures.push(format!(
                "admin of another org × {method} {path}: expected 404 not_found, got {}; body: {}",
                r.status, r.text
            ));
        }
    }
    assert_none_failed(backend, "requests into another organization", tried, &failures);

    // Her own lists hold only her organization.
    let list = srv.get("/v1/credentials", &token).await.ok(200);
    assert_eq!(ids(&list), vec![mine.clone()], "[{backend:?}] {list}");
    let journal = audit_events(&srv, &token, "").await;
    assert!(!journal.is_empty());
    assert!(
        journal.iter().all(|e| e["org_id"] == other.as_str()),
        "[{backend:?}] her journal shows another organization: {journal:#?}"
    );
    let bindings = srv
        .get(&format!("/v1/role-bindings?principal_id={pid}"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(
        bindings["items"].as_array().unwrap().len(),
        1,
        "the victim's binding is intact: {bindings}"
    );

    // Every attempt is in our journal as denied, and none of hers succeeded.
    let denied = audit_events(
        &srv,
        &srv.admin,
        &format!("org_id={org}&outcome=denied&actor_id={mallory}"),
    )
    .await;
    for cred in &targets {
        assert!(
            denied.iter().any(|e| e["target_id"] == cred.as_str()),
            "[{backend:?}] her attempt on {cred} is not journaled as denied: {denied:#?}"
        );
    }
    let succeeded = audit_events(
        &srv,
        &srv.admin,
        &format!("org_id={org}&outcome=success&actor_id={mallory}"),
    )
    .await;
    assert!(
        succeeded.is_empty(),
        "[{backend:?}] she changed something in our organization: {succeeded:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_of_another_organization_gets_404_for_everything_inside_ours() {
    for backend in common::backends() {
        other_org(backend).await;
    }
}

async fn workspace_scope(backend: Backend) {
    let srv = Server::start(backend).await;
    let org = srv.org_id.clone();
    let b = srv
        .post("/v1/workspaces", &srv.admin, json!({"org_id": org, "name": "b"}))
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, builder) = srv
        .principal(&org, "user", "builder-b", &[("builder", Scope::Ws(&b))])
        .await;
    let (_, engineer) = srv
        .principal(&org, "user", "engineer-b", &[("integration_engineer", Scope::Ws(&b))])
        .await;

    let in_default = fresh_credential(&srv, "in-default").await;
    let in_b = srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": "in-b", "type": "password", "workspace_id": b, "environment": "prod", "fields": {"password": PASSWORD}}),
        )
        .await
        .ok(201)["id"].as_str().unwrap().to_owned();
    let org_wide = srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": "org-wide", "type": "password", "org_id": org, "environment": "prod", "fields": {"password": PASSWORD}}),
        )
        .await
        .ok(201)["id"].as_str().unwrap().to_owned();
    assert!(
        srv.get(&format!("/v1/credentials/{org_wide}"), &srv.admin)
            .await
            .ok(200)["workspace_id"]
            .is_null()
    );

    // The default workspace does not exist for them.
    for token in [&builder, &engineer] {
        srv.get(&format!("/v1/credentials/{in_default}"), token)
            .await
            .problem(404, "not_found");
        srv.get(&format!("/v1/credentials/{in_default}/versions"), token)
            .await
            .problem(404, "not_found");
        srv.patch(
            &format!("/v1/credentials/{in_default}"),
            token,
            json!({"description": "x"}),
        )
        .await
        .problem(404, "not_found");
        srv.post(&format!("/v1/credentials/{in_default}/disable"), token, json!({}))
            .await
            .problem(404, "not_found");
        srv.post(&format!("/v1/credentials/{in_default}/reveal"), token, json!({}))
            .await
            .problem(404, "not_found");
        srv.delete(&format!("/v1/credentials/{in_default}"), token)
            .await
            .problem(404, "not_found");
        srv.get(&format!("/v1/credentials?workspace_id={}", srv.ws_id), token)
            .await
            .problem(404, "not_found");
        srv.get(&format!("/v1/workspaces/{}", srv.ws_id), token)
            .await
            .problem(404, "not_found");
        srv.post(
            "/v1/credentials",
            token,
            json!({"name": "sneaky", "type": "password", "workspace_id": srv.ws_id, "environment": "prod", "fields": {"password": "x"}}),
        )
        .await
        .problem(404, "not_found");
    }
    let c = srv
        .get(&format!("/v1/credentials/{in_default}"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(
        (c["status"].as_str(), c["description"].as_str()),
        (Some("active"), None),
        "{c}"
    );

    // The listing holds their workspace and the organization-wide credentials, nothing else.
    for token in [&builder, &engineer] {
        let mut seen = ids(&srv.get("/v1/credentials", token).await.ok(200));
        seen.sort();
        let mut want = vec![in_b.clone(), org_wide.clone()];
        want.sort();
        assert_eq!(
            seen, want,
            "[{backend:?}] a principal bound on workspace b lists exactly b's and the org-wide credentials"
        );
        assert_eq!(
            ids(&srv
                .get(&format!("/v1/credentials?workspace_id={b}"), token)
                .await
                .ok(200)),
            vec![in_b.clone()]
        );
        assert_eq!(
            ids(&srv.get("/v1/workspaces", token).await.ok(200)),
            vec![b.clone()],
            "[{backend:?}] only workspace b is listed"
        );
        srv.get(&format!("/v1/credentials/{in_b}"), token).await.ok(200);
        srv.get(&format!("/v1/credentials/{org_wide}"), token).await.ok(200);
        srv.get(&format!("/v1/credentials/{org_wide}/versions"), token)
            .await
            .ok(200);
    }

    // Inside b the role decides: 403 for the builder, success for the engineer.
    let new_in_b = |name: &str| json!({"name": name, "type": "password", "workspace_id": b, "environment": "prod", "fields": {"password": "x"}});
    srv.post("/v1/credentials", &builder, new_in_b("by-builder"))
        .await
        .problem(403, "forbidden");
    srv.patch(
        &format!("/v1/credentials/{in_b}"),
        &builder,
        json!({"description": "x"}),
    )
    .await
    .problem(403, "forbidden");
    srv.post(&format!("/v1/credentials/{in_b}/reveal"), &builder, json!({}))
        .await
        .problem(403, "forbidden");
    srv.post("/v1/credentials", &engineer, new_in_b("by-engineer"))
        .await
        .ok(201);
    srv.patch(
        &format!("/v1/credentials/{in_b}"),
        &engineer,
        json!({"description": "rotated soon"}),
    )
    .await
    .ok(200);
    srv.delete(&format!("/v1/credentials/{in_b}"), &engineer)
        .await
        .problem(403, "forbidden");

    // Organization-wide credentials are visible to them but changed only with an
    // organization-level binding.
    srv.patch(
        &format!("/v1/credentials/{org_wide}"),
        &engineer,
        json!({"description": "x"}),
    )
    .await
    .problem(403, "forbidden");
    srv.post(&format!("/v1/credentials/{org_wide}/disable"), &builder, json!({}))
        .await
        .problem(403, "forbidden");
    srv.post(&format!("/v1/credentials/{org_wide}/reveal"), &builder, json!({}))
        .await
        .problem(403, "forbidden");
    srv.post(
        "/v1/credentials",
        &engineer,
        json!({"name": "org-by-engineer", "type": "password", "org_id": org, "environment": "prod", "fields": {"password": "x"}}),
    )
    .await
    .problem(403, "forbidden");

    // With credential.reveal moved to integration engineers, a workspace binding reveals its
    // own workspace's credentials — and not the organization-wide ones every workspace can
    // read: reveal has the scope of create/rotate.
    srv.patch(
        &format!("/v1/orgs/{org}/settings"),
        &srv.admin,
        policy(
            &["admin", "integration_engineer"],
            &["admin", "integration_engineer", "builder"],
            &["integration_engineer"],
        ),
    )
    .await
    .ok(200);
    let shown = srv
        .post(&format!("/v1/credentials/{in_b}/reveal"), &engineer, json!({}))
        .await
        .ok(200);
    assert!(shown["fields"].is_object(), "{shown}");
    srv.post(&format!("/v1/credentials/{org_wide}/reveal"), &engineer, json!({}))
        .await
        .problem(403, "forbidden");
    srv.post(&format!("/v1/credentials/{in_b}/reveal"), &builder, json!({}))
        .await
        .problem(403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_binding_sees_its_workspace_and_org_wide_credentials_and_nothing_else() {
    for backend in common::backends() {
        workspace_scope(backend).await;
    }
}

fn policy(create: &[&str], attach: &[&str], reveal: &[&str]) -> Value {
    json!({"role_policy": {"credential.create": create, "credential.attach": attach, "credential.reveal": reveal}})
}

async fn role_policy(backend: Backend) {
    let srv = Server::start(backend).await;
    let org = srv.org_id.clone();
    let (_, admin) = srv
        .principal(&org, "user", "org-admin", &[("admin", Scope::Org(&org))])
        .await;
    let (builder_id, builder) = srv
        .principal(&org, "user", "builder", &[("builder", Scope::Org(&org))])
        .await;
    let (_, engineer) = srv
        .principal(&org, "user", "engineer", &[("integration_engineer", Scope::Org(&org))])
        .await;
    let (_, viewer) = srv
        .principal(&org, "user", "viewer", &[("viewer", Scope::Org(&org))])
        .await;
    let cred = srv
        .database_credential(&srv.admin, "policy-target", "hunter2-policy")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reveal = format!("/v1/credentials/{cred}/reveal");
    let new_cred = |name: &str| {
        json!({"name": name, "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
               "fields": {"username": "loader", "password": "builder-made"}})
    };
    let settings = format!("/v1/orgs/{org}/settings");

    // The defaults.
    srv.post("/v1/credentials", &builder, new_cred("before"))
        .await
        .problem(403, "forbidden");
    srv.post(&reveal, &admin, json!({})).await.problem(403, "forbidden");
    srv.patch(
        &settings,
        &engineer,
        policy(&["integration_engineer"], &[], &["integration_engineer"]),
    )
    .await
    .problem(403, "forbidden");

    // An admin moves credential.create to builders and credential.reveal to admins.
    let all3 = ["admin", "integration_engineer", "builder"];
    let s = srv
        .patch(&settings, &admin, policy(&all3, &all3, &["admin"]))
        .await
        .ok(200);
    assert_eq!(s["role_policy"]["credential.create"], json!(all3), "{s}");
    assert_eq!(s["role_policy"]["credential.reveal"], json!(["admin"]), "{s}");
    assert_eq!(
        srv.get(&settings, &viewer).await.ok(200)["role_policy"],
        s["role_policy"]
    );

    let made = srv
        .post("/v1/credentials", &builder, new_cred("by-builder"))
        .await
        .ok(201);
    assert_eq!(made["created_by"], builder_id.as_str(), "{made}");
    let made_id = made["id"].as_str().unwrap();
    let v = srv
        .post(
            &format!("/v1/credentials/{made_id}/versions"),
            &builder,
            json!({"fields": {"username": "u", "password": "p2"}, "mode": "stage"}),
        )
        .await
        .ok(201);
    assert_eq!(
        (v["version"].as_i64(), v["state"].as_str()),
        (Some(2), Some("pending")),
        "{v}"
    );
    // Only the movable permissions moved.
    srv.delete(&format!("/v1/credentials/{made_id}"), &builder)
        .await
        .problem(403, "forbidden");
    srv.patch(&settings, &builder, json!({"recovery_window_days": 3}))
        .await
        .problem(403, "forbidden");
    srv.post(&reveal, &builder, json!({})).await.problem(403, "forbidden");
    srv.post(&reveal, &engineer, json!({})).await.problem(403, "forbidden");
    srv.post(&reveal, &viewer, json!({})).await.problem(403, "forbidden");

    let r = srv.post(&reveal, &admin, json!({})).await.ok(200);
    assert_eq!(r["fields"]["password"], "hunter2-policy", "{r}");
    assert_eq!(r["fields"]["username"], "loader", "{r}");
    let journal = srv
        .get(&format!("/v1/audit?action=credential.reveal&target_id={cred}"), &admin)
        .await;
    assert!(
        !journal.text.contains("hunter2-policy"),
        "the journal holds the revealed password: {}",
        journal.text
    );
    let events = journal.ok(200)["items"].as_array().unwrap().clone();
    let outcomes: Vec<&str> = events.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "success").count(),
        1,
        "[{backend:?}] one successful reveal journaled: {events:#?}"
    );
    assert!(
        outcomes.iter().filter(|o| **o == "denied").count() >= 4,
        "[{backend:?}] every refused reveal journaled: {events:#?}"
    );

    // Moving them back takes effect at once.
    srv.patch(
        &settings,
        &admin,
        policy(&["admin", "integration_engineer"], &all3, &[]),
    )
    .await
    .ok(200);
    srv.post(&reveal, &admin, json!({})).await.problem(403, "forbidden");
    srv.post("/v1/credentials", &builder, new_cred("after"))
        .await
        .problem(403, "forbidden");
    srv.post("/v1/credentials", &engineer, new_cred("after")).await.ok(201);

    // Only the three movable permissions can be named: a policy that tries to hand out
    // org.admin is bad input, and never grants it.
    let r = srv
        .patch(
            &settings,
            &admin,
            json!({"role_policy": {"credential.create": ["admin", "integration_engineer"], "credential.attach": all3,
                                   "credential.reveal": [], "org.admin": ["viewer"]}}),
        )
        .await;
    srv.post("/v1/workspaces", &viewer, json!({"org_id": org, "name": "viewer-ws"}))
        .await
        .problem(403, "forbidden");
    assert!(
        (400..500).contains(&r.status),
        "[{backend:?}] PATCH settings with role_policy naming the non-movable org.admin was accepted ({}) and the key silently dropped: {}",
        r.status,
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_policy_moves_create_and_reveal_between_roles_and_nothing_else() {
    for backend in common::backends() {
        role_policy(backend).await;
    }
}

async fn escalation(backend: Backend) {
    let srv = Server::start(backend).await;
    let org = srv.org_id.clone();
    let (_, admin) = srv
        .principal(&org, "user", "org-admin", &[("admin", Scope::Org(&org))])
        .await;
    let instance_admin = srv.get("/v1/me", &srv.admin).await.ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = srv.post("/v1/orgs", &srv.admin, json!({"name": "other"})).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": "theirs", "type": "password", "org_id": other, "environment": "prod", "fields": {"password": "x"}}),
        )
        .await
        .ok(201)["id"].as_str().unwrap().to_owned();
    // The organization admin has no business in `other` ...
    srv.get(&format!("/v1/credentials/{theirs}"), &admin)
        .await
        .problem(404, "not_found");
    srv.post("/v1/orgs", &admin, json!({"name": "mine"}))
        .await
        .problem(403, "forbidden");
    // ... and must not be able to get there by issuing itself a token of the instance admin,
    // who lives in the default organization.
    let r = srv
        .post("/v1/tokens", &admin, json!({"principal_id": instance_admin}))
        .await;
    let mut reached = String::new();
    if r.status == 201 {
        let t = r.body["token"].as_str().unwrap();
        let read = srv.get(&format!("/v1/credentials/{theirs}"), t).await;
        let create = srv.post("/v1/orgs", t, json!({"name": "escalated"})).await;
        reached = format!(
            "; with it, GET another org's credential -> {}, POST /v1/orgs -> {}",
            read.status, create.status
        );
    }
    assert!(
        r.status == 403 || r.status == 404,
        "[{backend:?}] an organization admin issued a token for the instance admin: POST /v1/tokens -> {}{reached}",
        r.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_admin_cannot_mint_a_token_that_reaches_another_organization() {
    for backend in common::backends() {
        escalation(backend).await;
    }
}

/// Guards the table itself: every route once, six columns.
#[test]
fn the_permission_table_lists_every_route_once() {
    for (i, (route, _)) in TABLE.iter().enumerate() {
        assert!(
            TABLE.iter().skip(i + 1).all(|(r, _)| r != route),
            "{route:?} is listed twice"
        );
    }
    assert_eq!(TABLE.len(), 21);
}

/// A credential's state is no answer to someone outside its scope: every write on a purged or
/// pending-deletion credential of our organization is 404 for an admin of another one (a
/// state check that ran before authorization once answered `409 credential_purged`), while
/// our own admin gets the state's 409 (the control). Likewise our audit journal for an auditor
/// of another organization's workspace.
async fn state_hidden(backend: Backend) {
    let srv = Server::start(backend).await;
    let other = srv.post("/v1/orgs", &srv.admin, json!({"name": "other"})).await.ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, mallory) = srv
        .principal(&other, "user", "mallory", &[("admin", Scope::Org(&other))])
        .await;
    // An auditor of a workspace of another organization cannot list our journal: 404, where
    // a hand-written check once answered 200 with an empty page (telling that it exists).
    let their_ws = srv
        .post(
            "/v1/workspaces",
            &srv.admin,
            json!({"org_id": other, "name": "their-ws"}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, their_auditor) = srv
        .principal(&other, "user", "their-auditor", &[("auditor", Scope::Ws(&their_ws))])
        .await;
    srv.get(&format!("/v1/audit?org_id={}", srv.org_id), &their_auditor)
        .await
        .problem(404, "not_found");
    // Control: in its own organization it lists its workspace's events.
    srv.get(&format!("/v1/audit?org_id={other}"), &their_auditor)
        .await
        .ok(200);
    let purged = fresh_credential(&srv, "purged-one").await;
    srv.delete(&format!("/v1/credentials/{purged}?purge=true&reason=test"), &srv.admin)
        .await
        .ok(200);
    let pending = fresh_credential(&srv, "pending-one").await;
    srv.delete(&format!("/v1/credentials/{pending}"), &srv.admin)
        .await
        .ok(200);
    let writes = |id: &str| {
        vec![
            ("POST", format!("/v1/credentials/{id}/disable"), json!({})),
            ("POST", format!("/v1/credentials/{id}/enable"), json!({})),
            ("PATCH", format!("/v1/credentials/{id}"), json!({"description": "x"})),
            (
                "POST",
                format!("/v1/credentials/{id}/versions"),
                json!({"fields": {"password": "n"}}),
            ),
            ("POST", format!("/v1/credentials/{id}/versions/1/promote"), json!({})),
            ("POST", format!("/v1/credentials/{id}/reveal"), json!({})),
        ]
    };
    for (id, code) in [(&purged, "credential_purged"), (&pending, "credential_deleted")] {
        for (method, path, body) in writes(id) {
            let call = |token: String| {
                let (path, body) = (path.clone(), body.clone());
                let srv = &srv;
                async move {
                    match method {
                        "PATCH" => srv.patch(&path, &token, body).await,
                        _ => srv.post(&path, &token, body).await,
                    }
                }
            };
            let outside = call(mallory.clone()).await;
            assert_eq!(
                outside.status, 404,
                "{backend:?} {method} {path} by another org's admin: {}",
                outside.body
            );
            assert_eq!(outside.body["code"], "not_found", "{backend:?} {method} {path}");
            // The control: our admin is told the state (409) where the operation checks it.
            if path.ends_with("/disable") {
                srv.post(&path, &srv.admin, json!({})).await.problem(409, code);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_s_state_is_no_answer_to_someone_outside_its_scope() {
    for backend in common::backends() {
        state_hidden(backend).await;
    }
}
