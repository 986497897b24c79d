//! Connections, pipelines and resolve over real HTTP, on SQLite and PostgreSQL (PRODUCT.md
//! §3, §4, §7): every misfit and mismatch refused with its code; environment overrides only
//! when the organization allows them and only with a written reason; resolve by each of the
//! six roles (only a worker succeeds), its refusals (unattached, disabled, deleted, expired)
//! and their audit events, 404 across workspaces and organizations; usage, credential_in_use
//! and detach-all; the review reports on a seeded dataset, exact rows in JSON and in CSV; a
//! 100,000-row report streamed in bounded memory; and the canary: a secret attached through a
//! connection comes out of resolve and nowhere else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{random_hex, st};

use common::{Backend, Resp, Scope, Server};
use serde_json::{Value, json};

/// The six roles of PRODUCT.md §3.
const ROLES: [&str; 6] = [
    "admin",
    "integration_engineer",
    "builder",
    "auditor",
    "viewer",
    "worker",
];

/// An attachment refused: (what, kind, config, credential, status, code, field).
type Refusal<'a> = (&'a str, &'a str, &'a Value, &'a str, u16, &'a str, Option<&'a str>);

/// A well-formed credential ID that names nothing.
const UNKNOWN_CRED: &str = "cred_aaaaaaaaaaaaaaaaaaaaaaaaaa";

/// 2020-01-01T00:00:00Z in seconds.
const Y2020: i64 = 1_577_836_800;

/// One day in seconds.
const DAY: i64 = 86_400;

const ATTACHMENTS: [&str; 21] = [
    "credential_id",
    "credential_name",
    "credential_type",
    "credential_environment",
    "credential_workspace_id",
    "credential_status",
    "credential_last_used_at",
    "connection_id",
    "connection_name",
    "connection_environment",
    "connection_workspace_id",
    "override_reason",
    "connection_last_used_at",
    "pipeline_ids",
    "pipeline_names",
    "last_review_at",
    "last_review_decision",
    "last_reviewer_id",
    "warnings",
    "credential_system",
    "credential_owner_team",
];

const UNUSED: [&str; 12] = [
    "credential_id",
    "credential_name",
    "credential_type",
    "environment",
    "workspace_id",
    "status",
    "attachments",
    "created_at",
    "last_used_at",
    "reason",
    "system",
    "owner_team",
];

const ROTATION_DUE: [&str; 15] = [
    "credential_id",
    "credential_name",
    "credential_type",
    "environment",
    "workspace_id",
    "status",
    "expires_at",
    "rotation_period_days",
    "current_version",
    "current_version_created_at",
    "rotation_due_at",
    "reason",
    "oauth_health",
    "system",
    "owner_team",
];

const OVERRIDES: [&str; 12] = [
    "connection_id",
    "connection_name",
    "connection_environment",
    "workspace_id",
    "credential_id",
    "credential_name",
    "credential_environment",
    "override_reason",
    "attached_at",
    "attached_by",
    "credential_system",
    "credential_owner_team",
];

const UNREVIEWED: [&str; 11] = [
    "credential_id",
    "credential_name",
    "credential_type",
    "environment",
    "workspace_id",
    "status",
    "created_at",
    "last_reviewed_at",
    "last_review_decision",
    "system",
    "owner_team",
];

// ------------------------------------------------------------------------------- helpers

fn id(v: &Value) -> String {
    st(&v["id"])
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 3339 (UTC, whole seconds) of a Unix time, as the server prints it.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
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

async fn new_workspace(srv: &Server, org: &str, name: &str) -> String {
    id(&srv
        .post("/v1/workspaces", &srv.admin, json!({"org_id": org, "name": name}))
        .await
        .ok(201))
}

/// A second organization with one workspace and an admin of its own: (org, workspace, admin token).
async fn new_org(srv: &Server, name: &str) -> (String, String, String) {
    let org = id(&srv.post("/v1/orgs", &srv.admin, json!({"name": name})).await.ok(201));
    let ws = new_workspace(srv, &org, "ops").await;
    let (_, admin) = srv
        .principal(&org, "user", &format!("{name}-admin"), &[("admin", Scope::Org(&org))])
        .await;
    (org, ws, admin)
}

/// Creates a credential as `token` and returns its body.
async fn credential(srv: &Server, token: &str, body: Value) -> Value {
    srv.post("/v1/credentials", token, body).await.ok(201)
}

/// A `database` credential (password variant) in workspace `ws`.
fn db(name: &str, ws: &str, env: &str, password: &str) -> Value {
    json!({"name": name, "type": "database", "workspace_id": ws, "environment": env,
           "labels": {"system": "postgres", "owner_team": "data-platform"},
           "fields": {"username": "loader", "password": password}})
}

/// A postgres connection body.
fn pg(name: &str, ws: &str, env: &str, cred: Option<&str>) -> Value {
    let mut b = json!({"name": name, "workspace_id": ws, "environment": env, "kind": "postgres",
                       "config": {"host": "db.internal", "database": "analytics"}});
    if let Some(c) = cred {
        b["credential_id"] = json!(c);
    }
    b
}

/// A connection body of any kind.
fn conn(name: &str, ws: &str, env: &str, kind: &str, config: Value, cred: Option<&str>) -> Value {
    let mut b = json!({"name": name, "workspace_id": ws, "environment": env, "kind": kind, "config": config});
    if let Some(c) = cred {
        b["credential_id"] = json!(c);
    }
    b
}

/// How many connections the admin sees.
async fn count_connections(srv: &Server) -> usize {
    srv.get("/v1/connections?limit=500", &srv.admin).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len()
}

async fn pipeline(srv: &Server, name: &str, ws: &str, conns: &[&str]) -> Value {
    srv.post(
        "/v1/pipelines",
        &srv.admin,
        json!({"name": name, "workspace_id": ws, "connection_ids": conns}),
    )
    .await
    .ok(201)
}

async fn resolve(srv: &Server, token: &str, conn: &str, run: &str, pipeline: Option<&str>) -> Resp {
    let mut b = json!({"connection_id": conn, "run_id": run});
    if let Some(p) = pipeline {
        b["pipeline_id"] = json!(p);
    }
    srv.post("/v1/resolve", token, b).await
}

/// Every audit event of the default organization matching `query` (all pages), oldest first.
async fn audit(srv: &Server, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?limit=500&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = srv.get(&path, &srv.admin).await.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Field names of a 422 `invalid_fields` problem.
fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[]: {problem}"))
        .iter()
        .map(|e| st(&e["field"]))
        .collect()
}

/// How a JSON report cell reads in the CSV export: null empty, arrays joined with "; ",
/// numbers as written, and a leading `'` on cells a spreadsheet would run as a formula.
fn csv_text(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s
    }
}

/// A report row as an object keyed by `columns`.
fn row(columns: &[&str], values: Vec<Value>) -> Value {
    assert_eq!(
        columns.len(),
        values.len(),
        "row has {} values for {} columns",
        values.len(),
        columns.len()
    );
    Value::Object(columns.iter().map(|c| (*c).to_owned()).zip(values).collect())
}

/// Fetches `/v1/reports/{kind}` as JSON and as CSV and checks both against `expected`, row by
/// row and in order. Returns the raw CSV.
async fn check_report(
    srv: &Server,
    token: &str,
    kind: &str,
    query: &str,
    columns: &[&str],
    expected: &[Value],
) -> String {
    let sep = if query.is_empty() { "" } else { "&" };
    let path = format!("/v1/reports/{kind}?format=json{sep}{query}");
    let r = srv.get(&path, token).await;
    assert!(
        r.content_type.starts_with("application/json"),
        "{path}: {}",
        r.content_type
    );
    let body = r.ok(200);
    assert_eq!(body["report"], kind, "{path}");
    assert_eq!(body["columns"], json!(columns), "{path}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        expected.len(),
        "{path}: got rows\n{}",
        serde_json::to_string_pretty(items).unwrap()
    );
    for (i, (got, want)) in items.iter().zip(expected).enumerate() {
        assert_eq!(got, want, "{path}: row {i}");
    }

    let path = format!("/v1/reports/{kind}?format=csv{sep}{query}");
    let r = srv.get(&path, token).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    assert!(r.content_type.starts_with("text/csv"), "{path}: {}", r.content_type);
    let raw = r.text;
    assert!(raw.ends_with("\r\n"), "{path}: records end with CRLF");
    assert!(!raw.replace("\r\n", "").contains('\n'), "{path}: a bare LF in\n{raw}");
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(raw.as_bytes());
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(headers, columns, "{path}: header");
    let records: Vec<Vec<String>> = rdr
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let want: Vec<Vec<String>> = expected
        .iter()
        .map(|row| columns.iter().map(|c| csv_text(&row[*c])).collect())
        .collect();
    assert_eq!(records.len(), want.len(), "{path}:\n{raw}");
    for (i, (got, want)) in records.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "{path}: record {i}");
    }
    raw
}

// ---------------------------------------------------------------------- attachment rules

async fn misfits_and_mismatches(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let a = srv.admin.clone();
    let ws2 = new_workspace(&srv, &org, "team-b").await;
    let (_, other_ws, other_admin) = new_org(&srv, "other").await;

    // The connector kinds and what they accept.
    let kinds = srv.get("/v1/connector-kinds", &a).await.ok(200);
    let names: Vec<String> = kinds["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| st(&k["kind"]))
        .collect();
    assert_eq!(
        names,
        [
            "postgres",
            "mysql",
            "sqlserver",
            "oracle",
            "snowflake",
            "bigquery",
            "redshift",
            "s3",
            "gcs",
            "azure_blob",
            "http",
            "ftp",
            "ldap",
            "oauth_saas"
        ]
    );
    let pg_kind = kinds["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "postgres")
        .unwrap();
    // A database password, or an AWS access key for IAM authentication (`auth: iam`).
    assert_eq!(
        pg_kind["accepts"],
        json!([{"type": "database", "variants": ["password"]}, {"type": "aws", "variants": ["access_key"]}])
    );
    assert_eq!(pg_kind["default_port"], 5432);

    // Config validation names the field.
    let base = |config: Value| json!({"name": "probe", "workspace_id": ws, "environment": "prod", "kind": "postgres", "config": config});
    let p = srv
        .post(
            "/v1/connections",
            &a,
            base(json!({"host": "db", "database": "x", "dsn": "postgres://u@h/x"})),
        )
        .await
        .problem(422, "invalid_fields");
    assert!(error_fields(&p).contains(&"config.dsn".to_owned()), "{p}");
    let p = srv
        .post(
            "/v1/connections",
            &a,
            base(json!({"host": "db", "database": "x", "port": 70000})),
        )
        .await
        .problem(422, "invalid_fields");
    assert!(error_fields(&p).contains(&"config.port".to_owned()), "{p}");
    let p = srv
        .post("/v1/connections", &a, base(json!({"database": "x"})))
        .await
        .problem(422, "invalid_fields");
    assert!(error_fields(&p).contains(&"config.host".to_owned()), "{p}");
    let mut unknown_kind = base(json!({"host": "db", "database": "x"}));
    unknown_kind["kind"] = json!("mongodb");
    let p = srv
        .post("/v1/connections", &a, unknown_kind)
        .await
        .problem(422, "unknown_kind");
    assert_eq!(p["field"], "kind");

    // A plain connection: defaults filled in, nothing attached.
    let plain = srv
        .post(
            "/v1/connections",
            &a,
            json!({"name": "plain-db", "workspace_id": ws, "environment": "prod", "kind": "postgres",
                   "config": {"host": "db.internal", "database": "analytics"}, "description": "no credential yet"}),
        )
        .await
        .ok(201);
    assert!(id(&plain).starts_with("conn_"), "{plain}");
    assert_eq!(plain["name"], "plain-db");
    assert_eq!(plain["org_id"], org.as_str());
    assert_eq!(plain["workspace_id"], ws.as_str());
    assert_eq!(plain["environment"], "prod");
    assert_eq!(plain["kind"], "postgres");
    assert_eq!(
        plain["config"],
        json!({"host": "db.internal", "port": 5432, "database": "analytics"})
    );
    assert_eq!(plain["credential_id"], Value::Null);
    assert_eq!(plain["attached_at"], Value::Null);
    assert_eq!(plain["override_reason"], Value::Null);
    assert_eq!(plain["warnings"], json!([]));
    assert_eq!(
        srv.get(&format!("/v1/connections/{}", id(&plain)), &a).await.ok(200),
        plain
    );

    // The credentials.
    let prod = id(&credential(&srv, &a, db("prod-warehouse", &ws, "prod", "pw-prod")).await);
    let dev = id(&credential(&srv, &a, db("dev-warehouse", &ws, "dev", "pw-dev")).await);
    let key = id(&credential(
        &srv,
        &a,
        json!({"name": "stripe", "type": "api_key", "workspace_id": ws, "environment": "prod",
               "fields": {"parts": [{"name": "Authorization", "value": "sk-test", "in": "header"}]}}),
    )
    .await);
    let aws = id(&credential(
        &srv,
        &a,
        json!({"name": "aws-loader", "type": "aws", "variant": "access_key", "workspace_id": ws, "environment": "prod",
               "fields": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "not-a-real-key"}}),
    )
    .await);
    let key_pair = id(&credential(
        &srv,
        &a,
        json!({"name": "snow-key", "type": "database", "variant": "key_pair", "workspace_id": ws, "environment": "prod",
               "fields": {"username": "loader",
                          "private_key_pem": "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n"}}),
    )
    .await);
    let ftp_pw = id(&credential(
        &srv,
        &a,
        json!({"name": "ftp-drop", "type": "password", "workspace_id": ws, "environment": "prod",
               "fields": {"username": "drop", "password": "pw-ftp"}}),
    )
    .await);
    let in_ws2 = id(&credential(&srv, &a, db("team-b-warehouse", &ws2, "prod", "pw-b")).await);
    let in_other_org = id(&credential(&srv, &other_admin, db("theirs", &other_ws, "prod", "pw-other")).await);
    let org_wide = id(&credential(
        &srv,
        &a,
        json!({"name": "shared-warehouse", "type": "database", "org_id": org, "environment": "prod",
               "fields": {"username": "loader", "password": "pw-shared"}}),
    )
    .await);
    let disabled = id(&credential(&srv, &a, db("disabled-warehouse", &ws, "prod", "pw-x")).await);
    srv.post(&format!("/v1/credentials/{disabled}/disable"), &a, json!({}))
        .await
        .ok(200);
    let deleted = id(&credential(&srv, &a, db("deleted-warehouse", &ws, "prod", "pw-y")).await);
    assert_eq!(
        srv.delete(&format!("/v1/credentials/{deleted}"), &a).await.ok(200)["status"],
        "pending_deletion"
    );

    let pg_cfg = json!({"host": "db.internal", "database": "analytics"});
    let s3_cfg = json!({"bucket": "landing", "region": "eu-west-1"});
    let ftp_cfg = json!({"host": "ftp.internal"});
    let snow_cfg = json!({"account": "acme-eu1"});
    let rs_cfg = json!({"host": "rs.internal", "database": "dw"});

    // (what, kind, config, credential, status, code, field)
    let refused: Vec<Refusal> = vec![
        (
            "a credential of another workspace",
            "postgres",
            &pg_cfg,
            &in_ws2,
            422,
            "not_found",
            Some("credential_id"),
        ),
        (
            "a credential of another organization",
            "postgres",
            &pg_cfg,
            &in_other_org,
            422,
            "not_found",
            Some("credential_id"),
        ),
        (
            "an unknown credential",
            "postgres",
            &pg_cfg,
            UNKNOWN_CRED,
            422,
            "not_found",
            Some("credential_id"),
        ),
        (
            "a disabled credential",
            "postgres",
            &pg_cfg,
            &disabled,
            409,
            "credential_not_active",
            None,
        ),
        (
            "a credential pending deletion",
            "postgres",
            &pg_cfg,
            &deleted,
            409,
            "credential_not_active",
            None,
        ),
        (
            "an api_key on postgres",
            "postgres",
            &pg_cfg,
            &key,
            422,
            "credential_type_mismatch",
            Some("credential_id"),
        ),
        (
            "an aws credential on postgres",
            "postgres",
            &pg_cfg,
            &aws,
            422,
            "credential_type_mismatch",
            Some("credential_id"),
        ),
        (
            "a key_pair database credential on postgres",
            "postgres",
            &pg_cfg,
            &key_pair,
            422,
            "credential_type_mismatch",
            Some("credential_id"),
        ),
        (
            "a database credential on s3",
            "s3",
            &s3_cfg,
            &prod,
            422,
            "credential_type_mismatch",
            Some("credential_id"),
        ),
        (
            "an api_key on ftp",
            "ftp",
            &ftp_cfg,
            &key,
            422,
            "credential_type_mismatch",
            Some("credential_id"),
        ),
        (
            "a password credential on s3",
            "s3",
            &s3_cfg,
            &ftp_pw,
            422,
            "credential_type_mismatch",
            Some("credential_id"),
        ),
        (
            "a dev credential on a prod connection",
            "postgres",
            &pg_cfg,
            &dev,
            409,
            "environment_mismatch",
            None,
        ),
    ];
    // Every case is tried on create and on attach; all deviations are reported together.
    let mut wrong: Vec<String> = Vec::new();
    let mut judge = |how: &str, what: &str, r: &Resp, status: u16, code: &str, field: Option<&str>| {
        let ok = r.status == status
            && r.content_type.starts_with("application/problem+json")
            && r.body["code"] == code
            && field.is_none_or(|f| r.body["field"] == f);
        if !ok {
            let want = format!(
                "{status} {code}{}",
                field.map(|f| format!(" field {f}")).unwrap_or_default()
            );
            wrong.push(format!("{how} {what}: want {want}, got {} {}", r.status, r.text));
        }
    };
    for (n, (what, kind, config, cred, status, code, field)) in refused.iter().enumerate() {
        // On create: refused, and nothing is created.
        let before = count_connections(&srv).await;
        let body = conn(
            &format!("refused-{n}"),
            &ws,
            "prod",
            kind,
            (*config).clone(),
            Some(cred),
        );
        let r = srv.post("/v1/connections", &a, body).await;
        judge("create with", what, &r, *status, code, *field);
        assert_eq!(
            count_connections(&srv).await,
            before,
            "create with {what} left a connection behind"
        );
        // On attach: refused, and the connection is unchanged.
        let c = srv
            .post(
                "/v1/connections",
                &a,
                conn(&format!("target-{n}"), &ws, "prod", kind, (*config).clone(), None),
            )
            .await
            .ok(201);
        let r = srv
            .call(
                "PUT",
                &format!("/v1/connections/{}/credential", id(&c)),
                Some(&a),
                Some(json!({"credential_id": cred})),
            )
            .await;
        judge("attach", what, &r, *status, code, *field);
        assert_eq!(
            srv.get(&format!("/v1/connections/{}", id(&c)), &a).await.ok(200),
            c,
            "attach {what} changed it"
        );
    }
    // What fits is accepted, on create and on attach — once the credentials' owners allow the
    // destinations (a builder may not choose where a secret goes; `destinations.rs` tests that).
    let builder = srv.user_with_role("builder").await;
    let viewer = srv.user_with_role("viewer").await;
    for cred in [&prod, &aws, &key_pair, &ftp_pw, &org_wide, &in_ws2] {
        srv.patch(
            &format!("/v1/credentials/{cred}"),
            &a,
            json!({"allowed_destinations": ["*.internal"]}),
        )
        .await
        .ok(200);
    }
    let r = srv
        .post(
            "/v1/connections",
            &builder,
            conn(
                "elsewhere",
                &ws,
                "prod",
                "postgres",
                json!({"host": "db.example.com", "database": "a"}),
                Some(&prod),
            ),
        )
        .await;
    assert_eq!(
        (r.status, st(&r.body["code"])),
        (422, "destination_not_allowed".to_owned()),
        "{}",
        r.text
    );
    let accepted: Vec<(&str, &str, &Value, &str, &str)> = vec![
        ("a database credential on postgres", "postgres", &pg_cfg, &prod, &ws),
        ("an aws credential on s3", "s3", &s3_cfg, &aws, &ws),
        ("an aws credential on redshift", "redshift", &rs_cfg, &aws, &ws),
        ("a database credential on redshift", "redshift", &rs_cfg, &prod, &ws),
        (
            "a key_pair credential on snowflake",
            "snowflake",
            &snow_cfg,
            &key_pair,
            &ws,
        ),
        ("a password credential on ftp", "ftp", &ftp_cfg, &ftp_pw, &ws),
        (
            "an organization-wide credential in the default workspace",
            "postgres",
            &pg_cfg,
            &org_wide,
            &ws,
        ),
        (
            "an organization-wide credential in another workspace",
            "postgres",
            &pg_cfg,
            &org_wide,
            &ws2,
        ),
        (
            "a credential of that other workspace",
            "postgres",
            &pg_cfg,
            &in_ws2,
            &ws2,
        ),
    ];
    for (n, (what, kind, config, cred, in_ws)) in accepted.iter().enumerate() {
        let c = srv
            .post(
                "/v1/connections",
                &builder,
                conn(&format!("ok-{n}"), in_ws, "prod", kind, (*config).clone(), Some(cred)),
            )
            .await;
        assert_eq!(c.status, 201, "create with {what}: {}", c.text);
        let c = c.body;
        assert_eq!(c["credential_id"], *cred, "{what}");
        assert!(c["attached_at"].is_string(), "{what}: {c}");
        assert!(st(&c["attached_by"]).starts_with("usr_"), "{what}: {c}");
        assert_eq!(c["override_reason"], Value::Null, "{what}");
        let t = srv
            .post(
                "/v1/connections",
                &a,
                conn(&format!("ok-target-{n}"), in_ws, "prod", kind, (*config).clone(), None),
            )
            .await
            .ok(201);
        let path = format!("/v1/connections/{}/credential", id(&t));
        // A viewer may not attach; a builder may.
        srv.call("PUT", &path, Some(&viewer), Some(json!({"credential_id": cred})))
            .await
            .problem(403, "forbidden");
        let r = srv
            .call("PUT", &path, Some(&builder), Some(json!({"credential_id": cred})))
            .await;
        assert_eq!(r.status, 200, "attach {what}: {}", r.text);
        assert_eq!(r.body["credential_id"], *cred, "attach {what}");
        assert_eq!(
            srv.get(&format!("/v1/connections/{}", id(&t)), &a).await.ok(200)["credential_id"],
            *cred
        );
    }

    // A principal of another organization cannot even see our connections.
    srv.call(
        "PUT",
        &format!("/v1/connections/{}/credential", id(&plain)),
        Some(&other_admin),
        Some(json!({"credential_id": in_other_org})),
    )
    .await
    .problem(404, "not_found");
    // Detaching clears the attachment.
    let path = format!("/v1/connections/{}/credential", id(&plain));
    srv.call("PUT", &path, Some(&a), Some(json!({"credential_id": prod})))
        .await
        .ok(200);
    let d = srv.delete(&path, &a).await.ok(200);
    assert_eq!(d["credential_id"], Value::Null);
    assert_eq!(d["attached_at"], Value::Null);
    assert_eq!(d["attached_by"], Value::Null);

    assert!(
        wrong.is_empty(),
        "refusals with the wrong answer:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misfit_and_mismatch_is_refused_with_its_code_on_create_and_on_attach() {
    each_backend!(misfits_and_mismatches);
}

async fn overrides(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let a = srv.admin.clone();
    let auditor = srv.user_with_role("auditor").await;
    let dev = id(&credential(&srv, &a, db("dev-warehouse", &ws, "dev", "pw-dev")).await);
    let prod = id(&credential(&srv, &a, db("prod-warehouse", &ws, "prod", "pw-prod")).await);
    let c1 = id(&srv
        .post("/v1/connections", &a, pg("analytics-db", &ws, "prod", None))
        .await
        .ok(201));
    let attach = format!("/v1/connections/{c1}/credential");
    let settings = format!("/v1/orgs/{org}/settings");
    let reason = "the vendor sandbox mirrors production; ticket CAB-42";

    // Not allowed by the organization: a reason does not help.
    srv.call(
        "PUT",
        &attach,
        Some(&a),
        Some(json!({"credential_id": dev, "override_reason": reason})),
    )
    .await
    .problem(409, "environment_mismatch");
    let mut body = pg("replica-db", &ws, "prod", Some(&dev));
    body["override_reason"] = json!(reason);
    srv.post("/v1/connections", &a, body.clone())
        .await
        .problem(409, "environment_mismatch");

    // Allowed: a written reason is required.
    let s = srv
        .patch(&settings, &a, json!({"allow_environment_override": true}))
        .await
        .ok(200);
    assert_eq!(s["allow_environment_override"], true);
    for missing in [
        json!({"credential_id": dev}),
        json!({"credential_id": dev, "override_reason": null}),
        json!({"credential_id": dev, "override_reason": ""}),
        json!({"credential_id": dev, "override_reason": "  \t "}),
    ] {
        let p = srv
            .call("PUT", &attach, Some(&a), Some(missing.clone()))
            .await
            .problem(422, "override_reason_required");
        assert_eq!(p["field"], "override_reason", "{missing}");
    }
    let p = srv
        .post("/v1/connections", &a, pg("replica-db", &ws, "prod", Some(&dev)))
        .await
        .problem(422, "override_reason_required");
    assert_eq!(p["field"], "override_reason");
    assert_eq!(
        srv.get(&format!("/v1/connections/{c1}"), &a).await.ok(200)["credential_id"],
        Value::Null
    );

    // With a reason: accepted, stored, shown, audited, reported.
    let v = srv
        .call(
            "PUT",
            &attach,
            Some(&a),
            Some(json!({"credential_id": dev, "override_reason": reason})),
        )
        .await
        .ok(200);
    assert_eq!(v["credential_id"], dev.as_str());
    assert_eq!(v["override_reason"], reason);
    let warnings: Vec<String> = v["warnings"].as_array().unwrap().iter().map(st).collect();
    assert!(warnings.iter().any(|w| w.contains(reason)), "{warnings:?}");
    assert_eq!(srv.get(&format!("/v1/connections/{c1}"), &a).await.ok(200), v);
    let c2 = srv.post("/v1/connections", &a, body).await.ok(201);
    assert_eq!(c2["override_reason"], reason);
    assert_eq!(c2["credential_id"], dev.as_str());
    let attaches = audit(&srv, "action=connection.attach").await;
    for target in [&c1, &id(&c2)] {
        let e = attaches
            .iter()
            .rev()
            .find(|e| e["target_id"] == target.as_str())
            .unwrap_or_else(|| panic!("no connection.attach for {target}: {attaches:?}"));
        assert_eq!(e["outcome"], "success");
        assert_eq!(e["details"]["override_reason"], reason, "{e}");
        assert_eq!(e["details"]["credential_id"], dev.as_str(), "{e}");
    }
    let items = srv.get("/v1/reports/overrides", &auditor).await.ok(200)["items"].clone();
    let listed: Vec<(String, String)> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (st(&r["connection_id"]), st(&r["override_reason"])))
        .collect();
    assert_eq!(
        listed,
        vec![(c1.clone(), reason.to_owned()), (id(&c2), reason.to_owned())]
    );

    // Same environment: nothing to override, no reason kept.
    let v = srv
        .call(
            "PUT",
            &attach,
            Some(&a),
            Some(json!({"credential_id": prod, "override_reason": "not needed"})),
        )
        .await
        .ok(200);
    assert_eq!(v["override_reason"], Value::Null);
    assert_eq!(v["warnings"], json!([]));
    // Detaching clears the override too.
    srv.call(
        "PUT",
        &attach,
        Some(&a),
        Some(json!({"credential_id": dev, "override_reason": reason})),
    )
    .await
    .ok(200);
    let v = srv.delete(&attach, &a).await.ok(200);
    assert_eq!(v["override_reason"], Value::Null);
    assert_eq!(v["credential_id"], Value::Null);
    let items = srv.get("/v1/reports/overrides", &auditor).await.ok(200)["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["connection_id"], id(&c2).as_str());

    // Policy switched off again: new overrides are refused.
    srv.patch(&settings, &a, json!({"allow_environment_override": false}))
        .await
        .ok(200);
    srv.call(
        "PUT",
        &attach,
        Some(&a),
        Some(json!({"credential_id": dev, "override_reason": reason})),
    )
    .await
    .problem(409, "environment_mismatch");

    // Names that contradict the environment carry a warning.
    let misnamed = credential(&srv, &a, db("prod-legacy", &ws, "dev", "pw-l")).await;
    let w: Vec<String> = misnamed["warnings"].as_array().unwrap().iter().map(st).collect();
    assert!(w.len() == 1 && w[0].contains("prod-") && w[0].contains("dev"), "{w:?}");
    let ok = credential(&srv, &a, db("prod-ok", &ws, "prod", "pw-ok")).await;
    assert_eq!(ok["warnings"], json!([]));
    let sink = srv
        .post("/v1/connections", &a, pg("dev-sink", &ws, "prod", None))
        .await
        .ok(201);
    let w: Vec<String> = sink["warnings"].as_array().unwrap().iter().map(st).collect();
    assert!(w.len() == 1 && w[0].contains("dev-") && w[0].contains("prod"), "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_override_is_accepted_only_when_allowed_and_only_with_a_written_reason() {
    each_backend!(overrides);
}

// --------------------------------------------------------------------------------- resolve

async fn resolve_roles(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let a = srv.admin.clone();
    let ws2 = new_workspace(&srv, &org, "team-b").await;
    let (other_org, _, _) = new_org(&srv, "other").await;
    let password = format!("pw-{}", random_hex(8));
    let cred = id(&srv.database_credential(&a, "prod-warehouse", &password).await);
    let c = id(&srv
        .post("/v1/connections", &a, pg("prod-db", &ws, "prod", Some(&cred)))
        .await
        .ok(201));
    let other = id(&srv
        .post("/v1/connections", &a, pg("other-db", &ws, "prod", None))
        .await
        .ok(201));
    let p = id(&pipeline(&srv, "nightly-load", &ws, &[&c]).await);
    let p_other = id(&pipeline(&srv, "other-load", &ws, &[&other]).await);

    let expected = json!({
        "connection": {"id": c, "kind": "postgres", "config": {"host": "db.internal", "port": 5432, "database": "analytics"}},
        "credential": {"id": cred, "type": "database", "variant": "password", "version": 1,
                       "fields": {"username": "loader", "password": password}},
    });
    // Each role bound at the organization: only the worker resolves.
    let mut worker = String::new();
    let mut worker_id = String::new();
    for role in ROLES {
        let (pid, token) = srv
            .principal(
                &org,
                "service_account",
                &format!("sa-{role}"),
                &[(role, Scope::Org(&org))],
            )
            .await;
        let r = resolve(&srv, &token, &c, "run-roles", None).await;
        if role == "worker" {
            assert_eq!(r.ok(200), expected, "{role}");
            worker = token;
            worker_id = pid;
        } else {
            let body = r.problem(403, "forbidden");
            assert!(!body.to_string().contains(&password), "{role}");
        }
    }
    // The instance admin is no worker either.
    resolve(&srv, &a, &c, "run-roles", None).await.problem(403, "forbidden");
    // A worker bound at the connection's workspace resolves; bound at another workspace, or
    // of another organization, it sees nothing.
    let (_, ws_worker) = srv
        .principal(&org, "service_account", "ws-worker", &[("worker", Scope::Ws(&ws))])
        .await;
    assert_eq!(resolve(&srv, &ws_worker, &c, "run-ws", None).await.ok(200), expected);
    let (_, ws2_worker) = srv
        .principal(&org, "service_account", "ws2-worker", &[("worker", Scope::Ws(&ws2))])
        .await;
    resolve(&srv, &ws2_worker, &c, "run-ws2", None)
        .await
        .problem(404, "not_found");
    // By name in its workspace (as Airflow's conn_id names it): the same answer, the same
    // refusals — a worker outside the workspace cannot tell a real name from an unknown one.
    let by_name = |ws: &str, name: &str| json!({"workspace_id": ws, "connection_name": name, "run_id": "run-by-name"});
    assert_eq!(
        srv.post("/v1/resolve", &ws_worker, by_name(&ws, "prod-db"))
            .await
            .ok(200),
        expected
    );
    srv.post("/v1/resolve", &ws_worker, by_name(&ws, "no-such-db"))
        .await
        .problem(404, "not_found");
    srv.post("/v1/resolve", &ws_worker, by_name(&ws2, "prod-db"))
        .await
        .problem(404, "not_found");
    let hidden = srv.post("/v1/resolve", &ws2_worker, by_name(&ws, "prod-db")).await;
    let unknown = srv.post("/v1/resolve", &ws2_worker, by_name(&ws, "no-such-db")).await;
    assert_eq!(
        (hidden.status, &hidden.body["code"]),
        (unknown.status, &unknown.body["code"])
    );
    assert_eq!(hidden.status, 404);
    let both = json!({"connection_id": c, "workspace_id": ws, "connection_name": "prod-db", "run_id": "r"});
    assert_eq!(
        srv.post("/v1/resolve", &ws_worker, both)
            .await
            .problem(422, "conflicting_parameters")["field"],
        "workspace_id"
    );
    let neither = json!({"run_id": "r"});
    assert_eq!(
        srv.post("/v1/resolve", &ws_worker, neither)
            .await
            .problem(422, "required")["field"],
        "connection_id"
    );
    let no_name = json!({"workspace_id": ws, "run_id": "r"});
    assert_eq!(
        srv.post("/v1/resolve", &ws_worker, no_name)
            .await
            .problem(422, "required")["field"],
        "connection_name"
    );
    let (_, foreign) = srv
        .principal(
            &other_org,
            "service_account",
            "foreign-worker",
            &[("worker", Scope::Org(&other_org))],
        )
        .await;
    resolve(&srv, &foreign, &c, "run-foreign", None)
        .await
        .problem(404, "not_found");
    resolve(&srv, &worker, "conn_aaaaaaaaaaaaaaaaaaaaaaaaaa", "run-x", None)
        .await
        .problem(404, "not_found");
    // Every refusal is in the journal, with no secret.
    let denied = audit(&srv, "action=connection.resolve&outcome=denied").await;
    assert_eq!(
        denied.len(),
        9,
        "5 roles, the instance admin, the other workspace (by ID and by name), the other org: {denied:#?}"
    );
    assert!(denied.iter().all(|e| e["target_id"] == c.as_str()), "{denied:#?}");
    assert!(!json!(denied).to_string().contains(&password));

    // With a pipeline: recorded, and last-used times move.
    let cred_before = srv.get(&format!("/v1/credentials/{cred}"), &a).await.ok(200);
    assert!(
        cred_before["last_used_at"].is_string(),
        "the resolves above set it: {cred_before}"
    );
    assert_eq!(
        srv.get(&format!("/v1/pipelines/{p}"), &a).await.ok(200)["last_used_at"],
        Value::Null
    );
    // `last_used_at` has a one-second grain: wait past it so the credential's moves.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(resolve(&srv, &worker, &c, "run-42", Some(&p)).await.ok(200), expected);
    let cred_after = srv.get(&format!("/v1/credentials/{cred}"), &a).await.ok(200);
    let conn_after = srv.get(&format!("/v1/connections/{c}"), &a).await.ok(200);
    let pipe_after = srv.get(&format!("/v1/pipelines/{p}"), &a).await.ok(200);
    assert!(cred_after["last_used_at"].is_string() && cred_after["last_used_at"] != cred_before["last_used_at"]);
    assert!(conn_after["last_used_at"].is_string(), "{conn_after}");
    assert!(pipe_after["last_used_at"].is_string(), "{pipe_after}");
    assert_eq!(
        srv.get(&format!("/v1/connections/{other}"), &a).await.ok(200)["last_used_at"],
        Value::Null
    );
    let ok = audit(&srv, "action=connection.resolve&outcome=success").await;
    assert_eq!(ok.len(), 4, "{ok:#?}");
    // The resolve by name is recorded against the connection's ID.
    assert_eq!(ok[2]["details"]["run_id"], "run-by-name");
    assert_eq!(ok[2]["target_id"], c.as_str());
    let last = ok.last().unwrap();
    assert_eq!(last["actor_id"], worker_id.as_str());
    assert_eq!(last["target_id"], c.as_str());
    assert_eq!(last["details"]["credential_id"], cred.as_str());
    assert_eq!(last["details"]["version"], 1);
    assert_eq!(last["details"]["run_id"], "run-42");
    assert_eq!(last["details"]["pipeline_id"], p.as_str());
    assert_eq!(ok[0]["details"]["run_id"], "run-roles");
    assert_eq!(ok[0]["details"]["pipeline_id"], Value::Null);
    assert!(!json!(ok).to_string().contains(&password));

    // Bad run IDs and a pipeline that does not use the connection.
    for run in [String::new(), "r".repeat(300)] {
        let p = resolve(&srv, &worker, &c, &run, None)
            .await
            .problem(422, "invalid_run_id");
        assert_eq!(p["field"], "run_id");
    }
    assert_eq!(resolve(&srv, &worker, &c, &"r".repeat(200), None).await.status, 200);
    let e = resolve(&srv, &worker, &c, "run-43", Some(&p_other))
        .await
        .problem(422, "pipeline_mismatch");
    assert_eq!(e["field"], "pipeline_id");
    resolve(&srv, &worker, &c, "run-43", Some("pl_aaaaaaaaaaaaaaaaaaaaaaaaaa"))
        .await
        .problem(422, "pipeline_mismatch");

    // After a rotation the new version and password come back.
    let new_password = format!("pw-{}", random_hex(8));
    let v = srv
        .post(
            &format!("/v1/credentials/{cred}/versions"),
            &a,
            json!({"fields": {"username": "loader", "password": new_password}, "mode": "replace"}),
        )
        .await
        .ok(201);
    assert_eq!(v["version"], 2);
    let r = resolve(&srv, &worker, &c, "run-44", Some(&p)).await.ok(200);
    assert_eq!(r["credential"]["version"], 2);
    assert_eq!(r["credential"]["fields"]["password"], new_password.as_str());
    let ok = audit(&srv, "action=connection.resolve&outcome=success").await;
    assert_eq!(ok.last().unwrap()["details"]["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_worker_resolves_and_other_workspaces_and_organizations_get_404() {
    each_backend!(resolve_roles);
}

async fn resolve_refusals(b: Backend) {
    let srv = Server::start(b).await;
    let ws = srv.ws_id.clone();
    let a = srv.admin.clone();
    let worker = srv.user_with_role("worker").await;
    let password = format!("pw-{}", random_hex(8));
    let cred = id(&srv.database_credential(&a, "prod-warehouse", &password).await);
    let bare = id(&srv
        .post("/v1/connections", &a, pg("bare-db", &ws, "prod", None))
        .await
        .ok(201));
    let c = id(&srv
        .post("/v1/connections", &a, pg("prod-db", &ws, "prod", Some(&cred)))
        .await
        .ok(201));

    // No credential.
    resolve(&srv, &worker, &bare, "run-1", None)
        .await
        .problem(409, "no_credential");
    // Disabled, then enabled again.
    srv.post(&format!("/v1/credentials/{cred}/disable"), &a, json!({}))
        .await
        .ok(200);
    resolve(&srv, &worker, &c, "run-2", None)
        .await
        .problem(409, "credential_disabled");
    srv.post(&format!("/v1/credentials/{cred}/enable"), &a, json!({}))
        .await
        .ok(200);
    resolve(&srv, &worker, &c, "run-ok-1", None).await.ok(200);
    // Expired, then the expiry lifted.
    srv.patch(
        &format!("/v1/credentials/{cred}"),
        &a,
        json!({"expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .ok(200);
    resolve(&srv, &worker, &c, "run-3", None)
        .await
        .problem(409, "credential_expired");
    srv.patch(&format!("/v1/credentials/{cred}"), &a, json!({"expires_at": null}))
        .await
        .ok(200);
    resolve(&srv, &worker, &c, "run-ok-2", None).await.ok(200);
    // Deleted: the API refuses to delete an attached credential ...
    srv.delete(&format!("/v1/credentials/{cred}"), &a)
        .await
        .problem(409, "credential_in_use");
    // ... so put the row in that state directly (as a race or an older server could leave it).
    srv.raw_sql(&format!(
        "UPDATE credentials SET status = 'pending_deletion', deleted_at = {} WHERE id = '{cred}'",
        now_secs() * 1_000_000
    ));
    resolve(&srv, &worker, &c, "run-4", None)
        .await
        .problem(409, "credential_deleted");

    // Each refusal is audited as an error, with the reason and the run.
    let refused = audit(&srv, "action=connection.resolve&outcome=error").await;
    let got: Vec<(String, String, String)> = refused
        .iter()
        .map(|e| {
            (
                st(&e["target_id"]),
                st(&e["details"]["refused"]),
                st(&e["details"]["run_id"]),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (bare.clone(), "no_credential".to_owned(), "run-1".to_owned()),
            (c.clone(), "credential_disabled".to_owned(), "run-2".to_owned()),
            (c.clone(), "credential_expired".to_owned(), "run-3".to_owned()),
            (c.clone(), "credential_deleted".to_owned(), "run-4".to_owned()),
        ]
    );
    for e in &refused[1..] {
        assert_eq!(e["details"]["credential_id"], cred.as_str(), "{e}");
    }
    let ok = audit(&srv, "action=connection.resolve&outcome=success").await;
    let runs: Vec<String> = ok.iter().map(|e| st(&e["details"]["run_id"])).collect();
    assert_eq!(runs, ["run-ok-1", "run-ok-2"]);
    let all = json!(audit(&srv, "action=connection.resolve").await).to_string();
    assert!(!all.contains(&password), "a password in the audit journal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_of_an_unattached_disabled_deleted_or_expired_credential_is_refused_and_audited() {
    each_backend!(resolve_refusals);
}

async fn pipeline_mismatch_audited(b: Backend) {
    let srv = Server::start(b).await;
    let ws = srv.ws_id.clone();
    let a = srv.admin.clone();
    let worker = srv.user_with_role("worker").await;
    let cred = id(&srv.database_credential(&a, "prod-warehouse", "pw-mismatch").await);
    let c = id(&srv
        .post("/v1/connections", &a, pg("prod-db", &ws, "prod", Some(&cred)))
        .await
        .ok(201));
    let other = id(&srv
        .post("/v1/connections", &a, pg("other-db", &ws, "prod", None))
        .await
        .ok(201));
    let p_other = id(&pipeline(&srv, "other-load", &ws, &[&other]).await);
    // A worker claims a pipeline that does not use the connection: refused ...
    resolve(&srv, &worker, &c, "run-probe", Some(&p_other))
        .await
        .problem(422, "pipeline_mismatch");
    // ... and, like every other refused resolve of a connection it may resolve, audited.
    let refused = audit(&srv, "action=connection.resolve&outcome=error").await;
    assert_eq!(
        refused.len(),
        1,
        "a refused resolve (pipeline_mismatch) left no audit event: {refused:#?}"
    );
    assert_eq!(refused[0]["target_id"], c.as_str());
    assert_eq!(refused[0]["details"]["refused"], "pipeline_mismatch");
    assert_eq!(refused[0]["details"]["run_id"], "run-probe");
    assert_eq!(refused[0]["details"]["pipeline_id"], p_other.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_refused_for_a_pipeline_that_does_not_use_the_connection_is_audited() {
    each_backend!(pipeline_mismatch_audited);
}

// ------------------------------------------------------------ usage, in use, detach-all

async fn usage_and_detach_all(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let a = srv.admin.clone();
    let ws2 = new_workspace(&srv, &org, "team-b").await;
    let worker = srv.user_with_role("worker").await;
    let cred = id(&srv.database_credential(&a, "prod-warehouse", "pw-usage").await);
    let keep = id(&credential(&srv, &a, db("prod-other", &ws, "prod", "pw-keep")).await);
    let x1 = id(&srv
        .post("/v1/connections", &a, pg("prod-db", &ws, "prod", Some(&cred)))
        .await
        .ok(201));
    let x2 = id(&srv
        .post("/v1/connections", &a, pg("reporting-db", &ws, "prod", Some(&cred)))
        .await
        .ok(201));
    let x3 = id(&srv
        .post("/v1/connections", &a, pg("other-db", &ws, "prod", Some(&keep)))
        .await
        .ok(201));
    let x4 = id(&srv
        .post("/v1/connections", &a, pg("team-b-db", &ws2, "prod", None))
        .await
        .ok(201));

    // Pipelines only take connections of their own workspace.
    let p = srv
        .post(
            "/v1/pipelines",
            &a,
            json!({"name": "bad", "workspace_id": ws, "connection_ids": [x4]}),
        )
        .await
        .problem(422, "connection_not_found");
    assert_eq!(p["field"], "connection_ids[0]");
    let p = srv
        .post(
            "/v1/pipelines",
            &a,
            json!({"name": "bad", "workspace_id": ws, "connection_ids": [x1, x4]}),
        )
        .await
        .problem(422, "connection_not_found");
    assert_eq!(p["field"], "connection_ids[1]");
    let p1 = pipeline(&srv, "nightly-load", &ws, &[&x1, &x2]).await;
    assert!(id(&p1).starts_with("pl_"));
    assert_eq!(p1["connection_ids"], json!([x1, x2]));
    let p1 = id(&p1);
    let p2 = id(&pipeline(&srv, "hourly-sync", &ws, &[&x2, &x3]).await);
    let p3 = id(&pipeline(&srv, "other-sync", &ws, &[&x3]).await);
    let p4 = id(&pipeline(&srv, "scratch", &ws, &[&x3]).await);
    assert_eq!(
        srv.get(&format!("/v1/pipelines/{p2}"), &a).await.ok(200)["connection_ids"],
        json!([x2, x3])
    );
    let patched = srv
        .patch(
            &format!("/v1/pipelines/{p4}"),
            &a,
            json!({"name": "scratch-2", "connection_ids": [x2]}),
        )
        .await
        .ok(200);
    assert_eq!(patched["name"], "scratch-2");
    assert_eq!(patched["connection_ids"], json!([x2]));
    srv.patch(&format!("/v1/pipelines/{p4}"), &a, json!({"connection_ids": [x4]}))
        .await
        .problem(422, "connection_not_found");
    srv.delete(&format!("/v1/pipelines/{p4}"), &a).await.ok(200);
    srv.get(&format!("/v1/pipelines/{p4}"), &a)
        .await
        .problem(404, "not_found");

    // Usage.
    let usage = srv.get(&format!("/v1/credentials/{cred}/usage"), &a).await.ok(200);
    assert_eq!(
        usage,
        json!({
            "connections": [
                {"id": x1, "name": "prod-db", "workspace_id": ws, "environment": "prod"},
                {"id": x2, "name": "reporting-db", "workspace_id": ws, "environment": "prod"},
            ],
            "pipelines": [
                {"id": p1, "name": "nightly-load", "workspace_id": ws},
                {"id": p2, "name": "hourly-sync", "workspace_id": ws},
            ],
            "chained_credentials": [],
        })
    );
    let viewer = srv.user_with_role("viewer").await;
    assert_eq!(
        srv.get(&format!("/v1/credentials/{cred}/usage"), &viewer).await.ok(200),
        usage
    );

    // In use: neither the credential nor a connection a pipeline uses can be deleted.
    srv.delete(&format!("/v1/credentials/{cred}"), &a)
        .await
        .problem(409, "credential_in_use");
    srv.delete(&format!("/v1/connections/{x1}"), &a)
        .await
        .problem(409, "connection_in_use");

    // Detach-all is for admins only.
    let detach_all = format!("/v1/credentials/{cred}/detach-all");
    for role in ["integration_engineer", "builder", "auditor", "viewer", "worker"] {
        let t = srv.user_with_role(role).await;
        srv.post(&detach_all, &t, json!({})).await.problem(403, "forbidden");
    }
    assert_eq!(
        srv.get(&format!("/v1/credentials/{cred}/usage"), &a).await.ok(200),
        usage
    );
    let r = srv.post(&detach_all, &a, json!({})).await.ok(200);
    assert_eq!(r["detached"], usage["connections"]);
    assert_eq!(r["affected_pipelines"], usage["pipelines"]);

    // One connection.detach per connection, plus the credential's own event.
    let detaches: Vec<Value> = audit(&srv, "action=connection.detach").await;
    let got: Vec<(String, String, String)> = detaches
        .iter()
        .map(|e| {
            (
                st(&e["target_id"]),
                st(&e["details"]["credential_id"]),
                st(&e["outcome"]),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (x1.clone(), cred.clone(), "success".to_owned()),
            (x2.clone(), cred.clone(), "success".to_owned())
        ]
    );
    let all = audit(&srv, "action=credential.detach_all").await;
    let ok: Vec<&Value> = all.iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(ok.len(), 1, "{all:#?}");
    assert_eq!(ok[0]["target_id"], cred.as_str());
    assert_eq!(ok[0]["details"]["connections"], json!([x1, x2]));
    assert_eq!(ok[0]["details"]["affected_pipelines"], json!([p1, p2]));
    let denied = all.iter().filter(|e| e["outcome"] == "denied").count();
    assert_eq!(denied, 5, "the five refused detach-alls are audited: {all:#?}");

    // Everything detached; the other credential untouched.
    for x in [&x1, &x2] {
        let v = srv.get(&format!("/v1/connections/{x}"), &a).await.ok(200);
        assert_eq!(v["credential_id"], Value::Null, "{v}");
        resolve(&srv, &worker, x, "run-after", None)
            .await
            .problem(409, "no_credential");
    }
    assert_eq!(
        srv.get(&format!("/v1/connections/{x3}"), &a).await.ok(200)["credential_id"],
        keep.as_str()
    );
    assert_eq!(
        srv.get(&format!("/v1/credentials/{cred}/usage"), &a).await.ok(200),
        json!({"connections": [], "pipelines": [], "chained_credentials": []})
    );
    assert_eq!(
        srv.get(&format!("/v1/pipelines/{p1}"), &a).await.ok(200)["connection_ids"],
        json!([x1, x2])
    );
    let d = srv.delete(&format!("/v1/credentials/{cred}"), &a).await.ok(200);
    assert_eq!(d["status"], "pending_deletion");
    // A connection no pipeline uses can be deleted.
    srv.delete(&format!("/v1/pipelines/{p3}"), &a).await.ok(200);
    srv.delete(&format!("/v1/connections/{x4}"), &a).await.ok(200);
    srv.get(&format!("/v1/connections/{x4}"), &a)
        .await
        .problem(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_credential_in_use_and_detach_all_which_is_admin_only_and_audited_per_connection() {
    each_backend!(usage_and_detach_all);
}

async fn usage_scoped(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let a = srv.admin.clone();
    let ws2 = new_workspace(&srv, &org, "team-b").await;
    let shared = id(&credential(
        &srv,
        &a,
        json!({"name": "shared-warehouse", "type": "database", "org_id": org, "environment": "prod",
               "fields": {"username": "loader", "password": "pw-shared"}}),
    )
    .await);
    let mine = id(&srv
        .post("/v1/connections", &a, pg("team-a-db", &ws, "prod", Some(&shared)))
        .await
        .ok(201));
    let theirs = id(&srv
        .post(
            "/v1/connections",
            &a,
            pg("team-b-secret-db", &ws2, "prod", Some(&shared)),
        )
        .await
        .ok(201));
    let p_mine = id(&pipeline(&srv, "team-a-load", &ws, &[&mine]).await);
    let p_theirs = id(&pipeline(&srv, "team-b-secret-load", &ws2, &[&theirs]).await);

    // The admin sees both workspaces.
    let all = srv.get(&format!("/v1/credentials/{shared}/usage"), &a).await.ok(200);
    assert_eq!(all["connections"].as_array().unwrap().len(), 2);
    assert_eq!(all["pipelines"].as_array().unwrap().len(), 2);

    // A viewer of the default workspace may read the organization-wide credential, but what
    // lives in team-b is outside its scope (PRODUCT.md §3: it sees 404 for everything inside).
    let (_, viewer) = srv
        .principal(&org, "user", "viewer-a", &[("viewer", Scope::Ws(&ws))])
        .await;
    srv.get(&format!("/v1/credentials/{shared}"), &viewer).await.ok(200);
    srv.get(&format!("/v1/connections/{theirs}"), &viewer)
        .await
        .problem(404, "not_found");
    srv.get(&format!("/v1/pipelines/{p_theirs}"), &viewer)
        .await
        .problem(404, "not_found");
    let usage = srv
        .get(&format!("/v1/credentials/{shared}/usage"), &viewer)
        .await
        .ok(200);
    let text = usage.to_string();
    assert!(
        !text.contains(&theirs)
            && !text.contains("team-b-secret-db")
            && !text.contains(&p_theirs)
            && !text.contains("team-b-secret-load")
            && !text.contains(&ws2),
        "usage shows a workspace-scoped viewer the connections and pipelines of another workspace: {usage}"
    );
    assert_eq!(
        usage["connections"],
        json!([{"id": mine, "name": "team-a-db", "workspace_id": ws, "environment": "prod"}])
    );
    assert_eq!(
        usage["pipelines"],
        json!([{"id": p_mine, "name": "team-a-load", "workspace_id": ws}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_shows_a_workspace_member_only_the_connections_and_pipelines_of_its_workspaces() {
    each_backend!(usage_scoped);
}

// --------------------------------------------------------------------------------- reports

async fn reports(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let a = srv.admin.clone();
    let ws2 = new_workspace(&srv, &org, "team-b").await;
    let (auditor_id, auditor) = srv
        .principal(&org, "user", "audrey", &[("auditor", Scope::Org(&org))])
        .await;
    let worker = srv.user_with_role("worker").await;
    let now = now_secs();
    let t0 = now - DAY; // A's current version
    let t1 = now + 10 * DAY; // C's expiry

    // The credentials.
    let cred_a = id(&credential(
        &srv,
        &a,
        json!({"name": "warehouse-loader", "type": "database", "workspace_id": ws, "environment": "prod",
               "labels": {"system": "warehouse", "owner_team": "data-platform"},
               "rotation_period_days": 10, "fields": {"username": "loader", "password": "pw-a"}}),
    )
    .await);
    let cred_b = id(&credential(
        &srv,
        &a,
        json!({"name": "dev-warehouse", "type": "database", "workspace_id": ws, "environment": "dev",
               "expires_at": "2020-01-01T00:00:00Z", "fields": {"username": "loader", "password": "pw-b"}}),
    )
    .await);
    let cred_c = id(&credential(
        &srv,
        &a,
        json!({"name": "prod-stripe", "type": "api_key", "workspace_id": ws, "environment": "dev",
               "expires_at": rfc3339(t1),
               "fields": {"parts": [{"name": "Authorization", "value": "sk-c", "in": "header"}]}}),
    )
    .await);
    let cred_d = id(&credential(
        &srv,
        &a,
        json!({"name": "legacy-ftp", "type": "password", "workspace_id": ws2, "environment": "prod",
               "rotation_period_days": 30, "fields": {"username": "drop", "password": "pw-d"}}),
    )
    .await);
    // Backdate: A's version a day ago; D created (and its version) in 2020.
    srv.raw_sql(&format!(
        "UPDATE credential_versions SET created_at = {} WHERE credential_id = '{cred_a}';
         UPDATE credential_versions SET created_at = {y} WHERE credential_id = '{cred_d}';
         UPDATE credentials SET created_at = {y} WHERE id = '{cred_d}';",
        t0 * 1_000_000,
        y = Y2020 * 1_000_000,
    ));

    // Connections (one an override) and pipelines.
    srv.patch(
        &format!("/v1/orgs/{org}/settings"),
        &a,
        json!({"allow_environment_override": true}),
    )
    .await
    .ok(200);
    let reason = "=HYPERLINK(\"https://evil.example/\",\"ok\"), approved in CAB-42";
    let x1 = id(&srv
        .post("/v1/connections", &a, pg("prod-db", &ws, "prod", Some(&cred_a)))
        .await
        .ok(201));
    let x2 = id(&srv
        .post("/v1/connections", &a, pg("reporting-db", &ws, "prod", Some(&cred_a)))
        .await
        .ok(201));
    let mut body = pg("analytics-db", &ws, "prod", Some(&cred_b));
    body["override_reason"] = json!(reason);
    let x3 = id(&srv.post("/v1/connections", &a, body).await.ok(201));
    let x4 = id(&srv
        .post(
            "/v1/connections",
            &a,
            conn(
                "ftp-drop",
                &ws2,
                "prod",
                "ftp",
                json!({"host": "ftp.internal"}),
                Some(&cred_d),
            ),
        )
        .await
        .ok(201));
    srv.post("/v1/connections", &a, pg("spare-db", &ws, "dev", None))
        .await
        .ok(201);
    let p1 = id(&pipeline(&srv, "nightly-load", &ws, &[&x1, &x2]).await);
    let p2 = id(&pipeline(&srv, "hourly-sync", &ws, &[&x1, &x3]).await);
    let p3 = id(&pipeline(&srv, "ftp-ingest", &ws2, &[&x4]).await);

    // One resolve; reviews (B's backdated to 2020).
    resolve(&srv, &worker, &x1, "run-1", Some(&p2)).await.ok(200);
    let builder = srv.user_with_role("builder").await;
    srv.post(
        &format!("/v1/credentials/{cred_a}/reviews"),
        &builder,
        json!({"decision": "keep"}),
    )
    .await
    .problem(403, "forbidden");
    srv.post(
        &format!("/v1/credentials/{cred_a}/reviews"),
        &a,
        json!({"decision": "maybe"}),
    )
    .await
    .problem(422, "invalid_decision");
    let rev_a = srv
        .post(
            &format!("/v1/credentials/{cred_a}/reviews"),
            &a,
            json!({"decision": "keep", "note": "still used by the nightly load"}),
        )
        .await
        .ok(201);
    let rev_c = srv
        .post(
            &format!("/v1/credentials/{cred_c}/reviews"),
            &auditor,
            json!({"decision": "remove", "note": "owner left"}),
        )
        .await
        .ok(201);
    assert_eq!(rev_c["reviewer_id"], auditor_id.as_str());
    srv.post(
        &format!("/v1/credentials/{cred_b}/reviews"),
        &a,
        json!({"decision": "keep"}),
    )
    .await
    .ok(201);
    srv.raw_sql(&format!(
        "UPDATE reviews SET created_at = {y} WHERE credential_id = '{cred_b}';
         UPDATE credentials SET last_reviewed_at = {y} WHERE id = '{cred_b}';",
        y = Y2020 * 1_000_000
    ));
    let reviews = srv.get(&format!("/v1/credentials/{cred_a}/reviews"), &a).await.ok(200);
    assert_eq!(reviews["items"], json!([rev_a]));

    // What the reports should say, from the objects themselves.
    let get = |path: String| {
        let (srv, a) = (&srv, a.clone());
        async move { srv.get(&path, &a).await.ok(200) }
    };
    let ca = get(format!("/v1/credentials/{cred_a}")).await;
    let cb = get(format!("/v1/credentials/{cred_b}")).await;
    let cc = get(format!("/v1/credentials/{cred_c}")).await;
    let cx1 = get(format!("/v1/connections/{x1}")).await;
    let cx3 = get(format!("/v1/connections/{x3}")).await;
    assert!(ca["last_used_at"].is_string() && cx1["last_used_at"].is_string());
    let admin_id = cx1["attached_by"].clone();
    let y2020 = json!(rfc3339(Y2020));
    let null = Value::Null;
    let override_warning = "environment override: credential `dev` on connection `prod`";
    let c_warning = "credential: the name starts with `prod-` but the environment is `dev`";

    let att_a1 = row(
        &ATTACHMENTS,
        vec![
            json!(cred_a),
            json!("warehouse-loader"),
            json!("database"),
            json!("prod"),
            json!(ws),
            json!("active"),
            ca["last_used_at"].clone(),
            json!(x1),
            json!("prod-db"),
            json!("prod"),
            json!(ws),
            null.clone(),
            cx1["last_used_at"].clone(),
            json!([p1, p2]),
            json!(["nightly-load", "hourly-sync"]),
            rev_a["created_at"].clone(),
            json!("keep"),
            rev_a["reviewer_id"].clone(),
            json!([]),
            json!("warehouse"),
            json!("data-platform"),
        ],
    );
    let att_a2 = row(
        &ATTACHMENTS,
        vec![
            json!(cred_a),
            json!("warehouse-loader"),
            json!("database"),
            json!("prod"),
            json!(ws),
            json!("active"),
            ca["last_used_at"].clone(),
            json!(x2),
            json!("reporting-db"),
            json!("prod"),
            json!(ws),
            null.clone(),
            null.clone(),
            json!([p1]),
            json!(["nightly-load"]),
            rev_a["created_at"].clone(),
            json!("keep"),
            rev_a["reviewer_id"].clone(),
            json!([]),
            json!("warehouse"),
            json!("data-platform"),
        ],
    );
    let att_b = row(
        &ATTACHMENTS,
        vec![
            json!(cred_b),
            json!("dev-warehouse"),
            json!("database"),
            json!("dev"),
            json!(ws),
            json!("active"),
            null.clone(),
            json!(x3),
            json!("analytics-db"),
            json!("prod"),
            json!(ws),
            json!(reason),
            null.clone(),
            json!([p2]),
            json!(["hourly-sync"]),
            y2020.clone(),
            json!("keep"),
            admin_id.clone(),
            json!([override_warning]),
            Value::Null,
            Value::Null,
        ],
    );
    let att_c = row(
        &ATTACHMENTS,
        vec![
            json!(cred_c),
            json!("prod-stripe"),
            json!("api_key"),
            json!("dev"),
            json!(ws),
            json!("active"),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            json!([]),
            json!([]),
            rev_c["created_at"].clone(),
            json!("remove"),
            json!(auditor_id),
            json!([c_warning]),
            Value::Null,
            Value::Null,
        ],
    );
    let att_d = row(
        &ATTACHMENTS,
        vec![
            json!(cred_d),
            json!("legacy-ftp"),
            json!("password"),
            json!("prod"),
            json!(ws2),
            json!("active"),
            null.clone(),
            json!(x4),
            json!("ftp-drop"),
            json!("prod"),
            json!(ws2),
            null.clone(),
            null.clone(),
            json!([p3]),
            json!(["ftp-ingest"]),
            null.clone(),
            null.clone(),
            null.clone(),
            json!([]),
            Value::Null,
            Value::Null,
        ],
    );
    let raw = check_report(
        &srv,
        &a,
        "attachments",
        "",
        &ATTACHMENTS,
        &[
            att_a1.clone(),
            att_a2.clone(),
            att_b.clone(),
            att_c.clone(),
            att_d.clone(),
        ],
    )
    .await;
    // The formula in the override reason is defused and quoted (RFC 4180).
    assert!(
        raw.contains("\"'=HYPERLINK(\"\"https://evil.example/\"\",\"\"ok\"\"), approved in CAB-42\""),
        "{raw}"
    );
    check_report(
        &srv,
        &auditor,
        "attachments",
        &format!("workspace_id={ws2}"),
        &ATTACHMENTS,
        std::slice::from_ref(&att_d),
    )
    .await;

    let unused_c = row(
        &UNUSED,
        vec![
            json!(cred_c),
            json!("prod-stripe"),
            json!("api_key"),
            json!("dev"),
            json!(ws),
            json!("active"),
            json!(0),
            cc["created_at"].clone(),
            null.clone(),
            json!("no_attachments"),
            Value::Null,
            Value::Null,
        ],
    );
    let unused_d = row(
        &UNUSED,
        vec![
            json!(cred_d),
            json!("legacy-ftp"),
            json!("password"),
            json!("prod"),
            json!(ws2),
            json!("active"),
            json!(1),
            y2020.clone(),
            null.clone(),
            json!("never_resolved_in_90_days"),
            Value::Null,
            Value::Null,
        ],
    );
    check_report(
        &srv,
        &auditor,
        "unused",
        "",
        &UNUSED,
        &[unused_c.clone(), unused_d.clone()],
    )
    .await;
    check_report(
        &srv,
        &a,
        "unused",
        "days=90",
        &UNUSED,
        &[unused_c.clone(), unused_d.clone()],
    )
    .await;
    check_report(
        &srv,
        &a,
        "unused",
        &format!("workspace_id={ws}"),
        &UNUSED,
        std::slice::from_ref(&unused_c),
    )
    .await;

    let rot_a = row(
        &ROTATION_DUE,
        vec![
            json!(cred_a),
            json!("warehouse-loader"),
            json!("database"),
            json!("prod"),
            json!(ws),
            json!("active"),
            null.clone(),
            json!(10),
            json!(1),
            json!(rfc3339(t0)),
            json!(rfc3339(t0 + 10 * DAY)),
            json!("rotation_due"),
            null.clone(),
            json!("warehouse"),
            json!("data-platform"),
        ],
    );
    let rot_b = row(
        &ROTATION_DUE,
        vec![
            json!(cred_b),
            json!("dev-warehouse"),
            json!("database"),
            json!("dev"),
            json!(ws),
            json!("active"),
            y2020.clone(),
            null.clone(),
            json!(1),
            cb["versions"][0]["created_at"].clone(),
            null.clone(),
            json!("expired"),
            null.clone(),
            Value::Null,
            Value::Null,
        ],
    );
    let rot_c = row(
        &ROTATION_DUE,
        vec![
            json!(cred_c),
            json!("prod-stripe"),
            json!("api_key"),
            json!("dev"),
            json!(ws),
            json!("active"),
            json!(rfc3339(t1)),
            null.clone(),
            json!(1),
            cc["versions"][0]["created_at"].clone(),
            null.clone(),
            json!("expiring"),
            null.clone(),
            Value::Null,
            Value::Null,
        ],
    );
    let rot_d = row(
        &ROTATION_DUE,
        vec![
            json!(cred_d),
            json!("legacy-ftp"),
            json!("password"),
            json!("prod"),
            json!(ws2),
            json!("active"),
            null.clone(),
            json!(30),
            json!(1),
            y2020.clone(),
            json!(rfc3339(Y2020 + 30 * DAY)),
            json!("rotation_overdue"),
            null.clone(),
            Value::Null,
            Value::Null,
        ],
    );
    check_report(
        &srv,
        &a,
        "rotation-due",
        "",
        &ROTATION_DUE,
        &[rot_a.clone(), rot_b.clone(), rot_c.clone(), rot_d.clone()],
    )
    .await;
    check_report(
        &srv,
        &a,
        "rotation-due",
        "days=5",
        &ROTATION_DUE,
        &[rot_b.clone(), rot_d.clone()],
    )
    .await;
    check_report(
        &srv,
        &a,
        "rotation-due",
        &format!("days=30&workspace_id={ws2}"),
        &ROTATION_DUE,
        std::slice::from_ref(&rot_d),
    )
    .await;

    let ov = row(
        &OVERRIDES,
        vec![
            json!(x3),
            json!("analytics-db"),
            json!("prod"),
            json!(ws),
            json!(cred_b),
            json!("dev-warehouse"),
            json!("dev"),
            json!(reason),
            cx3["attached_at"].clone(),
            admin_id.clone(),
            Value::Null,
            Value::Null,
        ],
    );
    check_report(&srv, &auditor, "overrides", "", &OVERRIDES, &[ov]).await;
    check_report(
        &srv,
        &auditor,
        "overrides",
        &format!("workspace_id={ws2}"),
        &OVERRIDES,
        &[],
    )
    .await;

    let unrev_b = row(
        &UNREVIEWED,
        vec![
            json!(cred_b),
            json!("dev-warehouse"),
            json!("database"),
            json!("dev"),
            json!(ws),
            json!("active"),
            cb["created_at"].clone(),
            y2020.clone(),
            json!("keep"),
            Value::Null,
            Value::Null,
        ],
    );
    let unrev_d = row(
        &UNREVIEWED,
        vec![
            json!(cred_d),
            json!("legacy-ftp"),
            json!("password"),
            json!("prod"),
            json!(ws2),
            json!("active"),
            y2020.clone(),
            null.clone(),
            null.clone(),
            Value::Null,
            Value::Null,
        ],
    );
    check_report(
        &srv,
        &a,
        "unreviewed",
        "",
        &UNREVIEWED,
        &[unrev_b.clone(), unrev_d.clone()],
    )
    .await;
    check_report(
        &srv,
        &a,
        "unreviewed",
        &format!("workspace_id={ws2}"),
        &UNREVIEWED,
        &[unrev_d],
    )
    .await;

    // Only admins and auditors read reports.
    for role in ["integration_engineer", "builder", "viewer", "worker"] {
        let t = srv.user_with_role(role).await;
        for kind in ["attachments", "unused", "rotation-due", "overrides", "unreviewed"] {
            srv.get(&format!("/v1/reports/{kind}"), &t)
                .await
                .problem(403, "forbidden");
            srv.get(&format!("/v1/reports/{kind}?format=csv"), &t)
                .await
                .problem(403, "forbidden");
        }
    }
    srv.get("/v1/reports/everything", &a).await.problem(404, "not_found");
    srv.get("/v1/reports/unused?format=xml", &a)
        .await
        .problem(400, "invalid_parameter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_list_exact_rows_of_a_seeded_dataset_in_json_and_csv() {
    each_backend!(reports);
}

async fn warnings_on_every_row(b: Backend) {
    let srv = Server::start(b).await;
    let ws = srv.ws_id.clone();
    let a = srv.admin.clone();
    // A credential whose name contradicts its environment, used by two connections.
    let cred = id(&credential(&srv, &a, db("staging-warehouse", &ws, "prod", "pw-w")).await);
    let x1 = id(&srv
        .post("/v1/connections", &a, pg("prod-db", &ws, "prod", Some(&cred)))
        .await
        .ok(201));
    let x2 = id(&srv
        .post("/v1/connections", &a, pg("reporting-db", &ws, "prod", Some(&cred)))
        .await
        .ok(201));
    let warning = "credential: the name starts with `staging-` but the environment is `prod`";
    let body = srv.get("/v1/reports/attachments", &a).await.ok(200);
    let rows: Vec<(String, Value)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (st(&r["connection_id"]), r["warnings"].clone()))
        .collect();
    // Each row of the report stands alone (it is exported, filtered and sorted as CSV): the
    // credential's warning belongs on every row of that credential, not only on the first.
    assert_eq!(rows, vec![(x1, json!([warning])), (x2, json!([warning]))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_naming_warning_is_on_every_row_of_the_attachments_report() {
    each_backend!(warnings_on_every_row);
}

// ------------------------------------------------------------------------------ streaming

/// The process ID of `srv` (its command line names its unique data directory).
fn server_pid(srv: &Server) -> u32 {
    let dir = srv.data.path().to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").unwrap() {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "serve") && args.contains(&dir) {
            return pid;
        }
    }
    panic!("no server process with --data-dir {dir}");
}

/// Peak resident set size of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The seeded IDs: the number's 26 digits with 0, 1, 8 and 9 (not base32) mapped to letters.
fn bulk_id(i: u64) -> String {
    let digits = format!("{i:026}");
    let body: String = digits
        .chars()
        .map(|c| match c {
            '0' => 'a',
            '1' => 'b',
            '8' => 'i',
            '9' => 'j',
            d => d,
        })
        .collect();
    format!("cred_{body}")
}

const BULK: u64 = 100_000;
const PAD: usize = 300;

async fn streaming(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let cols = "id, org_id, workspace_id, scope_key, name, type, variant, environment, labels, status, current_version, \
                created_at, created_by, updated_at";
    let vcols =
        "credential_id, version, state, public_fields, secret_fields_set, created_at, created_by, state_changed_at";
    let sql = match b {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {BULK})
             INSERT INTO credentials ({cols})
             SELECT 'cred_' || replace(replace(replace(replace(printf('%026d', i), '0', 'a'), '1', 'b'), '8', 'i'), '9', 'j'),
                    '{org}', '{ws}', '{ws}', 'bulk-' || printf('%06d', i) || '-' || replace(hex(zeroblob({half})), '0', 'x'),
                    'password', NULL, 'dev', '{{}}', 'active', 1, 1, 'usr', 1 FROM n;
             INSERT INTO credential_versions ({vcols})
             SELECT id, 1, 'current', '{{}}', '[]', 1, 'usr', 1 FROM credentials WHERE name LIKE 'bulk-%';",
            half = PAD / 2
        ),
        Backend::Postgres => format!(
            "INSERT INTO credentials ({cols})
             SELECT 'cred_' || translate(lpad(i::text, 26, '0'), '0189', 'abij'),
                    '{org}', '{ws}', '{ws}', 'bulk-' || lpad(i::text, 6, '0') || '-' || repeat('x', {PAD}),
                    'password', NULL, 'dev', '{{}}', 'active', 1, 1, 'usr', 1 FROM generate_series(1, {BULK}) AS i;
             INSERT INTO credential_versions ({vcols})
             SELECT id, 1, 'current', '{{}}', '[]', 1, 'usr', 1 FROM credentials WHERE name LIKE 'bulk-%';"
        ),
    };
    srv.raw_sql(&sql);

    let pid = server_pid(&srv);
    // Warm the server up on a small answer so the baseline includes its ordinary working set.
    srv.get(
        "/v1/reports/unused?format=csv&days=0&workspace_id=ws_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        &srv.admin,
    )
    .await;
    srv.get("/v1/credentials?limit=500", &srv.admin).await.ok(200);
    let before = vm_hwm_kib(pid);

    let expected_line = |i: u64| {
        format!(
            "{},bulk-{i:06}-{},password,dev,{ws},active,0,1970-01-01T00:00:00.000001Z,,no_attachments,,",
            bulk_id(i),
            "x".repeat(PAD)
        )
    };
    let header = UNUSED.join(",");
    let started = std::time::Instant::now();
    let mut resp = srv
        .http
        .get(format!("{}/v1/reports/unused?format=csv", srv.base))
        .bearer_auth(&srv.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.content_length(), None, "a streamed body has no Content-Length");
    let (mut total, mut chunks, mut lines) = (0usize, 0usize, 0u64);
    let mut partial: Vec<u8> = Vec::new();
    let mut bad = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        total += chunk.len();
        chunks += 1;
        partial.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = partial[start..].windows(2).position(|w| w == b"\r\n") {
            let line = std::str::from_utf8(&partial[start..start + end]).unwrap();
            let want = if lines == 0 {
                header.clone()
            } else {
                expected_line(lines)
            };
            if line != want && bad.len() < 3 {
                bad.push(format!("line {lines}: {line:?}\n   want {want:?}"));
            }
            lines += 1;
            start += end + 2;
        }
        partial.drain(..start);
    }
    let elapsed = started.elapsed();
    let after = vm_hwm_kib(pid);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        partial.is_empty(),
        "a partial last line: {:?}",
        String::from_utf8_lossy(&partial)
    );
    assert_eq!(lines, BULK + 1, "100,000 rows and the header");
    let row_len = expected_line(1).len() + 2;
    assert_eq!(
        total,
        header.len() + 2 + BULK as usize * row_len,
        "the body size matches the row count"
    );
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    let csv_mib = total as f64 / (1024.0 * 1024.0);
    eprintln!(
        "{b:?}: {total} bytes ({csv_mib:.1} MiB) in {chunks} chunks, {elapsed:?}; server VmHWM {before} KiB -> {after} KiB (+{growth_mib:.1} MiB)"
    );
    assert!(
        csv_mib > 40.0,
        "the export must be larger than the memory bound: {csv_mib:.1} MiB"
    );
    assert!(
        growth_mib < 20.0,
        "the server's peak memory grew by {growth_mib:.1} MiB for a {csv_mib:.1} MiB export: it is not streaming"
    );
    assert!(chunks > 1, "the body came in {chunks} chunk(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_100k_rows_streams_as_csv_in_bounded_memory() {
    each_backend!(streaming);
}

// --------------------------------------------------------------------------------- canary

async fn canary(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let a = srv.admin.clone();
    let (_, auditor) = srv
        .principal(&org, "user", "audrey", &[("auditor", Scope::Org(&org))])
        .await;
    let (_, viewer) = srv
        .principal(&org, "user", "vic", &[("viewer", Scope::Org(&org))])
        .await;
    let (_, worker) = srv
        .principal(&org, "service_account", "runner", &[("worker", Scope::Ws(&ws))])
        .await;
    let canary = format!("canary-{}", random_hex(16));
    let canary2 = format!("canary-{}", random_hex(16));
    let needles = [
        canary.clone(),
        canary.trim_start_matches("canary-").to_owned(),
        canary2.clone(),
        canary2.trim_start_matches("canary-").to_owned(),
    ];
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut look = |what: &str, text: &str| {
        seen.push((what.to_owned(), text.to_owned()));
    };

    srv.patch(
        &format!("/v1/orgs/{org}/settings"),
        &a,
        json!({"allow_environment_override": true}),
    )
    .await
    .ok(200);
    let cred = srv
        .post(
            "/v1/credentials",
            &a,
            json!({"name": "prod-canary", "type": "database", "workspace_id": ws, "environment": "staging",
                   "rotation_period_days": 1, "fields": {"username": "loader", "password": canary}}),
        )
        .await;
    look("create credential", &cred.text);
    let cred = id(&cred.body);
    let mut body = pg("prod-db", &ws, "prod", Some(&cred));
    body["override_reason"] = json!("canary test");
    let c = srv.post("/v1/connections", &a, body).await;
    look("create connection", &c.text);
    let c = id(&c.body);
    let c2 = id(&srv
        .post("/v1/connections", &a, pg("second-db", &ws, "prod", None))
        .await
        .ok(201));
    let r = srv
        .call(
            "PUT",
            &format!("/v1/connections/{c2}/credential"),
            Some(&a),
            Some(json!({"credential_id": cred, "override_reason": "canary test"})),
        )
        .await;
    look("attach", &r.text);
    let p = srv
        .post(
            "/v1/pipelines",
            &a,
            json!({"name": "canary-load", "workspace_id": ws, "connection_ids": [c, c2]}),
        )
        .await;
    look("create pipeline", &p.text);
    let p = id(&p.body);

    // The one door: resolve gives the secret to the worker.
    let r = resolve(&srv, &worker, &c, "run-canary", Some(&p)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["credential"]["fields"]["password"], canary.as_str());
    let rot = srv
        .post(
            &format!("/v1/credentials/{cred}/versions"),
            &a,
            json!({"fields": {"username": "loader", "password": canary2}, "mode": "replace"}),
        )
        .await;
    look("rotate", &rot.text);
    let r = resolve(&srv, &worker, &c2, "run-canary-2", None).await;
    assert_eq!(
        r.body["credential"]["fields"]["password"],
        canary2.as_str(),
        "{}",
        r.text
    );
    srv.post(
        &format!("/v1/credentials/{cred}/reviews"),
        &auditor,
        json!({"decision": "keep"}),
    )
    .await
    .ok(201);

    // Every other door.
    let mut paths = vec![
        format!("/v1/connections/{c}"),
        format!("/v1/connections/{c2}"),
        "/v1/connections".to_owned(),
        format!("/v1/connections?credential_id={cred}"),
        format!("/v1/pipelines/{p}"),
        "/v1/pipelines".to_owned(),
        format!("/v1/credentials/{cred}"),
        "/v1/credentials".to_owned(),
        format!("/v1/credentials/{cred}/versions"),
        format!("/v1/credentials/{cred}/usage"),
        format!("/v1/credentials/{cred}/reviews"),
        "/v1/connector-kinds".to_owned(),
    ];
    for kind in ["attachments", "unused", "rotation-due", "overrides", "unreviewed"] {
        for format in ["json", "csv"] {
            paths.push(format!("/v1/reports/{kind}?format={format}&days=0"));
            paths.push(format!("/v1/reports/{kind}?format={format}"));
        }
    }
    for path in &paths {
        for (who, token) in [("admin", &a), ("auditor", &auditor), ("viewer", &viewer)] {
            let r = srv.get(path, token).await;
            look(&format!("GET {path} as {who}"), &r.text);
        }
    }
    // Refused resolves and worker errors.
    srv.post(&format!("/v1/credentials/{cred}/disable"), &a, json!({}))
        .await
        .ok(200);
    let r = resolve(&srv, &worker, &c, "run-refused", Some(&p)).await;
    assert_eq!(r.status, 409);
    look("refused resolve", &r.text);
    let r = resolve(&srv, &viewer, &c, "run-viewer", None).await;
    look("resolve as viewer", &r.text);
    srv.post(&format!("/v1/credentials/{cred}/enable"), &a, json!({}))
        .await
        .ok(200);
    let r = srv
        .post(&format!("/v1/credentials/{cred}/detach-all"), &a, json!({}))
        .await;
    look("detach-all", &r.text);
    for path in [format!("/v1/connections/{c}"), format!("/v1/credentials/{cred}/usage")] {
        look(&format!("GET {path} after detach-all"), &srv.get(&path, &a).await.text);
    }
    // The audit journal, whole, and the instance chain.
    look("audit", &json!(audit(&srv, "").await).to_string());
    look(
        "instance audit",
        &srv.get("/v1/audit?org_id=_instance&limit=500", &a).await.text,
    );
    look("metrics", &srv.get("/metrics", &a).await.text);
    look("server logs", &srv.logs());

    let mut leaks = Vec::new();
    for (what, text) in &seen {
        for n in &needles {
            if text.contains(n.as_str()) {
                leaks.push(format!("{what} contains {n}"));
            }
        }
    }
    assert!(seen.len() > 60, "looked at {} answers", seen.len());
    assert!(
        leaks.is_empty(),
        "the secret left through another door:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_attached_through_a_connection_comes_out_of_resolve_and_nowhere_else() {
    each_backend!(canary);
}

// ------------------------------------------------------------- destinations: upgrade, chains

async fn upgrade_destinations(b: Backend) {
    let srv = Server::start(b).await;
    let (a, ws) = (srv.admin.clone(), srv.ws_id.clone());
    let used = id(&credential(&srv, &a, db("used-db", &ws, "prod", "pw-used-1")).await);
    let idle = id(&credential(&srv, &a, db("idle-db", &ws, "prod", "pw-idle-1")).await);
    for (n, host) in [("one", "db1.internal"), ("two", "DB2.Internal.")] {
        srv.post(
            "/v1/connections",
            &a,
            conn(
                n,
                &ws,
                "prod",
                "postgres",
                json!({"host": host, "port": 6432, "database": "a"}),
                Some(&used),
            ),
        )
        .await
        .ok(201);
    }
    // Rows as an older build left them: no allowed set at all.
    srv.raw_sql("UPDATE credentials SET allowed_destinations = NULL");
    // A NULL set allows nothing until the upgrade step runs (here: a builder is refused even
    // for a destination the connections already use).
    let builder = srv.user_with_role("builder").await;
    let r = srv
        .post(
            "/v1/connections",
            &builder,
            conn(
                "three",
                &ws,
                "prod",
                "postgres",
                json!({"host": "db1.internal", "port": 6432, "database": "a"}),
                Some(&used),
            ),
        )
        .await;
    assert_eq!(
        (r.status, st(&r.body["code"])),
        (422, "destination_not_allowed".to_owned()),
        "{}",
        r.text
    );
    let srv = srv.restart(&[], &[]).await;
    let a = srv.admin.clone();
    let c = srv.get(&format!("/v1/credentials/{used}"), &a).await.ok(200);
    assert_eq!(
        c["allowed_destinations"],
        json!(["db1.internal:6432", "db2.internal:6432"]),
        "exactly the destinations of the attached connections, normalized"
    );
    let c = srv.get(&format!("/v1/credentials/{idle}"), &a).await.ok(200);
    assert_eq!(
        c["allowed_destinations"],
        json!([]),
        "nothing attached, nothing allowed"
    );
    let events = audit(&srv, "action=credential.destinations.allow").await;
    // One event per credential, by the system (the admin's own wiring before was audited too).
    let for_used: Vec<&Value> = events
        .iter()
        .filter(|e| e["target_id"] == used.as_str() && e["actor_kind"] == "system")
        .collect();
    assert_eq!(for_used.len(), 1, "{events:?}");
    assert_eq!(
        for_used[0]["details"]["added"],
        json!(["db1.internal:6432", "db2.internal:6432"])
    );
    // What worked before works after: the builder wires the same destination.
    let builder2 = srv.user_with_role("builder").await;
    srv.post(
        "/v1/connections",
        &builder2,
        conn(
            "three",
            &ws,
            "prod",
            "postgres",
            json!({"host": "db1.internal", "port": 6432, "database": "a"}),
            Some(&used),
        ),
    )
    .await
    .ok(201);
    // A second start changes nothing and audits nothing more.
    let srv = srv.restart(&[], &[]).await;
    assert_eq!(
        audit(&srv, "action=credential.destinations.allow").await.len(),
        events.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_allows_each_credential_exactly_the_destinations_of_its_attached_connections() {
    each_backend!(upgrade_destinations);
}

fn access_key(name: &str, scope: (&str, &str)) -> Value {
    let mut b = json!({"name": name, "type": "aws", "variant": "access_key", "environment": "prod",
                       "fields": {"access_key_id": "AKIAEXAMPLEEXAMPLE01", "secret_access_key": "chain-root-secret"}});
    b[scope.0] = json!(scope.1);
    b
}

fn assume_role(name: &str, ws: &str, source: &str) -> Value {
    json!({"name": name, "type": "aws", "variant": "assume_role", "workspace_id": ws, "environment": "prod",
           "fields": {"role_arn": "arn:aws:iam::123456789012:role/loader", "source_credential_id": source}})
}

async fn chains(b: Backend) {
    let srv = Server::start(b).await;
    let (a, ws, org) = (srv.admin.clone(), srv.ws_id.clone(), srv.org_id.clone());
    let other_ws = new_workspace(&srv, &org, "other").await;
    let root = id(&credential(&srv, &a, access_key("root-key", ("org_id", &org))).await);
    let chain = id(&credential(&srv, &a, assume_role("loader-role", &ws, &root)).await);
    let conn_id = id(&srv
        .post(
            "/v1/connections",
            &a,
            conn(
                "landing",
                &ws,
                "prod",
                "s3",
                json!({"bucket": "landing", "sts_endpoint_url": "http://127.0.0.1:9/"}),
                Some(&chain),
            ),
        )
        .await
        .ok(201));
    let p = id(&pipeline(&srv, "nightly", &ws, &[&conn_id]).await);

    // Usage of the root shows the chain, and the chain's connection and pipeline through it.
    let u = srv.get(&format!("/v1/credentials/{root}/usage"), &a).await.ok(200);
    assert_eq!(u["chained_credentials"][0]["id"], chain.as_str(), "{u}");
    assert_eq!(u["connections"][0]["id"], conn_id.as_str(), "{u}");
    assert_eq!(u["connections"][0]["via_credential_id"], chain.as_str(), "{u}");
    assert_eq!(u["pipelines"][0]["id"], p.as_str(), "{u}");
    // Control: the chain credential's own usage is direct.
    let u = srv.get(&format!("/v1/credentials/{chain}/usage"), &a).await.ok(200);
    assert_eq!(u["connections"][0]["via_credential_id"], Value::Null, "{u}");
    assert_eq!(u["chained_credentials"], json!([]), "{u}");

    // The root is not unused: its chain has a connection.
    let unused = srv.get("/v1/reports/unused?days=30", &a).await.ok(200);
    let ids: Vec<String> = unused["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| st(&r["credential_id"]))
        .collect();
    assert!(!ids.contains(&root), "a chain source is in use: {unused}");
    let lonely = id(&credential(&srv, &a, access_key("lonely-key", ("workspace_id", &ws))).await);
    let unused = srv.get("/v1/reports/unused?days=30", &a).await.ok(200);
    let ids: Vec<String> = unused["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| st(&r["credential_id"]))
        .collect();
    assert!(
        ids.contains(&lonely),
        "control: an access key nothing uses is unused: {unused}"
    );

    // The delete guard (and purge) refuse a source while a chain uses it.
    srv.delete(&format!("/v1/credentials/{root}"), &a)
        .await
        .problem(409, "credential_in_use");
    srv.delete(&format!("/v1/credentials/{lonely}"), &a).await.ok(200);

    // Testing the root tests the chain's connection with the root as its source.
    let t = srv
        .post(&format!("/v1/credentials/{root}/test"), &a, json!({}))
        .await
        .ok(200);
    let results = t["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{t}");
    assert_eq!(results[0]["connection_id"], conn_id.as_str());
    assert_eq!(results[0]["credential_id"], chain.as_str());
    assert_eq!(results[0]["via_source"]["credential_id"], root.as_str());
    // Loopback is not allowed to this server, so the STS call is refused, not sent.
    assert_eq!(results[0]["error"]["code"], "egress_denied", "{t}");

    // A chain's source must be visible from the chain's scope: another workspace's key is the
    // same 404 as a credential that does not exist.
    let elsewhere = id(&credential(&srv, &a, access_key("elsewhere-key", ("workspace_id", &other_ws))).await);
    let hidden = srv
        .post("/v1/credentials", &a, assume_role("cross", &ws, &elsewhere))
        .await;
    let missing = srv
        .post(
            "/v1/credentials",
            &a,
            assume_role("cross", &ws, "cred_aaaaaaaaaaaaaaaaaaaaaaaaaa"),
        )
        .await;
    assert_eq!(hidden.status, 404, "{}", hidden.text);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(hidden.body), strip(missing.body));
    // Control: the same key is a fine source for a chain in its own workspace.
    srv.post("/v1/credentials", &a, assume_role("same-ws", &other_ws, &elsewhere))
        .await
        .ok(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_chain_sources_show_in_usage_and_reports_guard_deletion_are_tested_with_their_chains_and_must_be_in_scope()
{
    each_backend!(chains);
}

/// A connection config may hold 64 KiB strings: its `connection.create` event is cut down to
/// the documented cap with a marker and the original size, before it is hashed (the journal
/// still verifies), so a UDP syslog datagram or a webhook body can always carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_event_details_are_cut_down_with_a_marker_and_the_chain_still_verifies() {
    let srv = Server::start(Backend::Sqlite).await;
    let a = srv.admin.clone();
    let big = "x".repeat(60_000);
    srv.post(
        "/v1/connections",
        &a,
        conn(
            "big",
            &srv.ws_id,
            "prod",
            "postgres",
            json!({"host": "db.internal", "database": "a", "application_name": big}),
            None,
        ),
    )
    .await
    .ok(201);
    let ev = audit(&srv, "action=connection.create").await;
    let d = &ev[0]["details"];
    assert!(d.to_string().len() <= 16 * 1024, "{} bytes", d.to_string().len());
    assert_eq!(d["config"]["truncated"], true, "{d}");
    assert!(d["config"]["original_bytes"].as_u64().unwrap() > 60_000, "{d}");
    assert!(d["_truncated"]["original_bytes"].as_u64().unwrap() > 60_000, "{d}");
    assert_eq!(d["name"], "big", "small values are kept: {d}");
    let v = srv.get("/v1/audit/verify", &a).await.ok(200);
    assert_eq!(v["ok"], true, "{v}");
    // Control: an ordinary event is stored whole.
    srv.post(
        "/v1/connections",
        &a,
        conn(
            "small",
            &srv.ws_id,
            "prod",
            "postgres",
            json!({"host": "db.internal", "database": "a"}),
            None,
        ),
    )
    .await
    .ok(201);
    let ev = audit(&srv, "action=connection.create").await;
    assert!(ev[1]["details"].get("_truncated").is_none(), "{}", ev[1]["details"]);
    assert_eq!(ev[1]["details"]["config"]["host"], "db.internal");
}
