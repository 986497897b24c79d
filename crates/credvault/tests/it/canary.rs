//! The foundation canary: a random secret goes into credentials of several types, through
//! every lifecycle step (create, stage, replace, promote, revoke, disable, enable, patch,
//! delete, restore, list, get, audit), and must never come out again — not in any answer,
//! not in the server's logs, not in any audit event, not in any file of the data directory
//! (nor, on PostgreSQL, in any row of the database). Responses name secret fields in
//! `secret_fields_set` and never show their values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Backend, Resp, Server};
use serde_json::{Value, json};

/// `canary-` and 32 random hex characters.
fn new_canary() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    format!("canary-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of whole 3-byte groups (no padding).
fn b64(data: &[u8], alphabet: &[u8; 64]) -> String {
    data.chunks_exact(3)
        .flat_map(|g| {
            let n = (u32::from(g[0]) << 16) | (u32::from(g[1]) << 8) | u32::from(g[2]);
            [18, 12, 6, 0].map(|s| alphabet[((n >> s) & 63) as usize] as char)
        })
        .collect()
}

/// The forms in which the canary could leak: as is, its random part alone, hex-encoded (how
/// PostgreSQL prints `bytea`), and base64 at each of the three alignments.
fn needles(canary: &str) -> Vec<(String, Vec<u8>)> {
    let raw = canary.as_bytes();
    let mut out = vec![
        ("the canary".to_owned(), raw.to_vec()),
        (
            "the canary's random part".to_owned(),
            canary.trim_start_matches("canary-").as_bytes().to_vec(),
        ),
        (
            "the canary in hex".to_owned(),
            raw.iter().map(|x| format!("{x:02x}")).collect::<String>().into_bytes(),
        ),
    ];
    for skip in 0..3 {
        let s = &raw[skip..];
        let whole = &s[..s.len() / 3 * 3];
        out.push((
            format!("the canary in base64 (offset {skip})"),
            b64(whole, B64_STD).into_bytes(),
        ));
        out.push((
            format!("the canary in base64url (offset {skip})"),
            b64(whole, B64_URL).into_bytes(),
        ));
    }
    out
}

/// Which form of the canary `hay` holds, if any.
fn leak(hay: &[u8], needles: &[(String, Vec<u8>)]) -> Option<String> {
    needles
        .iter()
        .find(|(_, n)| hay.windows(n.len()).any(|w| w == n.as_slice()))
        .map(|(what, _)| what.clone())
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Every answer the test received, searched for the canary at the end.
#[derive(Default)]
struct Seen {
    answers: Vec<(String, String)>,
}

impl Seen {
    fn keep(&mut self, what: impl Into<String>, r: Resp) -> Resp {
        self.answers.push((what.into(), r.text.clone()));
        r
    }
}

/// Follows `next_cursor` through every page of a list, keeping every page's text.
async fn all_pages(srv: &Server, seen: &mut Seen, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let p = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let page = seen.keep(format!("GET {p}"), srv.get(&p, &srv.admin).await).ok(200);
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
    panic!("{path}: pagination never ends");
}

/// One credential carrying the canary.
struct Spec {
    name: &'static str,
    body: Value,
    /// Expected `secret_fields_set`, sorted.
    secret_names: Vec<&'static str>,
    /// Expected non-secret `fields`.
    public: Value,
}

fn specs(srv: &Server, c: &str) -> Vec<Spec> {
    let ws = srv.ws_id.as_str();
    vec![
        Spec {
            name: "canary-db",
            body: json!({
                "name": "canary-db", "type": "database", "variant": null, "workspace_id": ws,
                "environment": "prod", "labels": {"system": "postgres", "owner_team": "data-platform"},
                "description": "warehouse loader", "expires_at": "2030-01-31T00:00:00Z",
                "rotation_period_days": 90, "fields": {"username": "loader", "password": c}
            }),
            secret_names: vec!["password"],
            public: json!({"username": "loader"}),
        },
        Spec {
            name: "canary-api",
            body: json!({
                "name": "canary-api", "type": "api_key", "workspace_id": ws, "environment": "prod",
                "labels": {"system": "stripe", "owner_team": "billing"},
                "fields": {"parts": [{"name": "X-Api-Key", "value": c, "in": "header"}],
                           "headers": {"Accept": "application/json"}}
            }),
            secret_names: vec!["parts[0].value"],
            public: json!({"parts": [{"name": "X-Api-Key", "in": "header"}],
                           "headers": {"Accept": "application/json"}}),
        },
        Spec {
            name: "canary-pw",
            body: json!({
                "name": "canary-pw", "type": "password", "workspace_id": ws, "environment": "prod",
                "labels": {"system": "ftp", "owner_team": "data-platform"},
                "fields": {"username": "ftp-user", "password": c}
            }),
            secret_names: vec!["password"],
            public: json!({"username": "ftp-user"}),
        },
        Spec {
            name: "canary-oauth",
            body: json!({
                "name": "canary-oauth", "type": "oauth", "variant": "client_credentials",
                "workspace_id": ws, "environment": "prod",
                "labels": {"system": "salesforce", "owner_team": "crm"},
                "fields": {"client_id": "c", "client_secret": c,
                           "token_url": "https://auth.example.com/token"}
            }),
            secret_names: vec!["client_secret"],
            public: json!({"client_id": "c", "token_url": "https://auth.example.com/token"}),
        },
        Spec {
            name: "canary-aws",
            body: json!({
                "name": "canary-aws", "type": "aws", "variant": "access_key", "workspace_id": ws,
                "environment": "prod", "labels": {"system": "s3", "owner_team": "data-platform"},
                "fields": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": c,
                           "session_token": c, "region": "eu-west-1"}
            }),
            secret_names: vec!["secret_access_key", "session_token"],
            public: json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "region": "eu-west-1"}),
        },
        Spec {
            name: "canary-org-db",
            body: json!({
                "name": "canary-org-db", "type": "database", "org_id": srv.org_id,
                "environment": "staging", "labels": {"system": "mysql", "owner_team": "data-platform"},
                "fields": {"username": "shared", "password": c}
            }),
            secret_names: vec!["password"],
            public: json!({"username": "shared"}),
        },
    ]
}

/// Checks the shape of a credential answer: the public fields exactly, the secret fields by
/// name only.
#[track_caller]
fn assert_redacted(cred: &Value, spec: &Spec, canary: &str) {
    assert_eq!(
        cred["fields"], spec.public,
        "{}: `fields` must hold exactly the non-secret fields: {cred}",
        spec.name
    );
    assert!(
        !cred["fields"].to_string().contains(canary),
        "{}: the canary is in `fields`: {cred}",
        spec.name
    );
    let mut names: Vec<&str> = cred["secret_fields_set"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no secret_fields_set: {cred}", spec.name))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names, spec.secret_names,
        "{}: secret_fields_set must name the secret fields: {cred}",
        spec.name
    );
}

fn state_of(cred: &Value, version: i64) -> String {
    cred["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .map(|v| v["state"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Every `(path, bytes)` under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Every row of every table of the PostgreSQL database, as text.
fn postgres_rows(url: String) -> Vec<(String, String)> {
    common::off_runtime(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let tables: Vec<String> = c
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut rows = Vec::new();
        for t in tables {
            for r in c.query(&format!("SELECT t::text FROM \"{t}\" t"), &[]).unwrap() {
                rows.push((t.clone(), r.get::<_, String>(0)));
            }
        }
        rows
    })
}

async fn canary_never_leaves(backend: Backend) {
    let mut srv = Server::start(backend).await;
    let canary = new_canary();
    let c = canary.as_str();
    let admin = srv.admin.clone();
    let mut seen = Seen::default();
    let specs = specs(&srv, c);

    // Create one credential per spec.
    let mut ids = std::collections::BTreeMap::new();
    for spec in &specs {
        let cred = seen
            .keep(
                format!("create {}", spec.name),
                srv.post("/v1/credentials", &admin, spec.body.clone()).await,
            )
            .ok(201);
        assert_redacted(&cred, spec, c);
        assert_eq!(cred["current_version"], 1);
        for v in cred["versions"].as_array().unwrap() {
            assert!(
                !v.to_string().contains(c),
                "{}: a version entry holds the canary: {v}",
                spec.name
            );
        }
        ids.insert(spec.name, cred["id"].as_str().unwrap().to_owned());
    }
    let spec = |name: &str| specs.iter().find(|s| s.name == name).unwrap();
    let (db, api, pw, oauth) = (
        ids["canary-db"].clone(),
        ids["canary-api"].clone(),
        ids["canary-pw"].clone(),
        ids["canary-oauth"].clone(),
    );

    // Rotate the database credential: stage, promote, revoke the old version, then replace.
    let db_fields = json!({"username": "loader", "password": c});
    let v2 = seen
        .keep(
            "stage db v2",
            srv.post(
                &format!("/v1/credentials/{db}/versions"),
                &admin,
                json!({"fields": db_fields, "mode": "stage"}),
            )
            .await,
        )
        .ok(201);
    assert_eq!(
        (v2["version"].clone(), v2["state"].clone()),
        (json!(2), json!("pending")),
        "{v2}"
    );
    let versions = seen
        .keep(
            "db versions",
            srv.get(&format!("/v1/credentials/{db}/versions"), &admin).await,
        )
        .ok(200);
    let pending = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .cloned()
        .unwrap();
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["secret_fields_set"], json!(["password"]));
    let cred = seen
        .keep(
            "promote db v2",
            srv.post(&format!("/v1/credentials/{db}/versions/2/promote"), &admin, json!({}))
                .await,
        )
        .ok(200);
    assert_eq!(cred["current_version"], 2);
    assert_eq!(state_of(&cred, 1), "previous");
    assert_redacted(&cred, spec("canary-db"), c);
    let cred = seen
        .keep(
            "revoke db v1",
            srv.post(&format!("/v1/credentials/{db}/versions/1/revoke"), &admin, json!({}))
                .await,
        )
        .ok(200);
    assert_eq!(state_of(&cred, 1), "revoked");
    let v3 = seen
        .keep(
            "replace db v3",
            srv.post(
                &format!("/v1/credentials/{db}/versions"),
                &admin,
                json!({"fields": db_fields, "mode": "replace"}),
            )
            .await,
        )
        .ok(201);
    assert_eq!(
        (v3["version"].clone(), v3["state"].clone()),
        (json!(3), json!("current")),
        "{v3}"
    );

    // The API key gains a second secret part in a staged version, then promoted.
    let api_fields = json!({"parts": [{"name": "X-Api-Key", "value": c, "in": "header"},
                                      {"name": "api_secret", "value": c, "in": "query"}]});
    seen.keep(
        "stage api v2",
        srv.post(
            &format!("/v1/credentials/{api}/versions"),
            &admin,
            json!({"fields": api_fields, "mode": "stage"}),
        )
        .await,
    )
    .ok(201);
    let cred = seen
        .keep(
            "promote api v2",
            srv.post(&format!("/v1/credentials/{api}/versions/2/promote"), &admin, json!({}))
                .await,
        )
        .ok(200);
    assert_eq!(
        cred["fields"],
        json!({"parts": [{"name": "X-Api-Key", "in": "header"},
                         {"name": "api_secret", "in": "query"}]}),
        "{cred}"
    );
    let mut names: Vec<String> = serde_json::from_value(cred["secret_fields_set"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["parts[0].value", "parts[1].value"], "{cred}");
    seen.keep(
        "revoke api v1",
        srv.post(&format!("/v1/credentials/{api}/versions/1/revoke"), &admin, json!({}))
            .await,
    )
    .ok(200);

    // OAuth tokens after consent, replaced in one step.
    let oauth_fields = json!({
        "client_id": "c", "client_secret": c, "token_url": "https://auth.example.com/token",
        "refresh_token": c, "access_token": c, "access_token_expires_at": "2030-01-31T00:00:00Z",
        "scopes": ["api", "refresh_token"]
    });
    seen.keep(
        "replace oauth v2",
        srv.post(
            &format!("/v1/credentials/{oauth}/versions"),
            &admin,
            json!({"fields": oauth_fields, "mode": "replace"}),
        )
        .await,
    )
    .ok(201);
    let cred = seen
        .keep("get oauth", srv.get(&format!("/v1/credentials/{oauth}"), &admin).await)
        .ok(200);
    let mut names: Vec<String> = serde_json::from_value(cred["secret_fields_set"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["access_token", "client_secret", "refresh_token"], "{cred}");
    assert!(
        cred["fields"].get("access_token").is_none() && cred["fields"].get("refresh_token").is_none(),
        "{cred}"
    );

    // Password: replace, then a staged version left pending.
    seen.keep(
        "replace pw v2",
        srv.post(
            &format!("/v1/credentials/{pw}/versions"),
            &admin,
            json!({"fields": {"password": c}, "mode": "replace"}),
        )
        .await,
    )
    .ok(201);
    seen.keep(
        "stage pw v3",
        srv.post(
            &format!("/v1/credentials/{pw}/versions"),
            &admin,
            json!({"fields": {"username": "ftp-user", "password": c}}),
        )
        .await,
    )
    .ok(201);

    // Status changes and metadata edits.
    let cred = seen
        .keep(
            "disable db",
            srv.post(&format!("/v1/credentials/{db}/disable"), &admin, json!({}))
                .await,
        )
        .ok(200);
    assert_eq!(cred["status"], "disabled");
    let cred = seen
        .keep(
            "enable db",
            srv.post(&format!("/v1/credentials/{db}/enable"), &admin, json!({}))
                .await,
        )
        .ok(200);
    assert_eq!(cred["status"], "active");
    let patch = json!({
        "description": "rotated quarterly",
        "labels": {"system": "postgres", "owner_team": "data-platform", "tier": "gold"},
        "rotation_period_days": 30, "expires_at": null
    });
    let cred = seen
        .keep(
            "patch db",
            srv.patch(&format!("/v1/credentials/{db}"), &admin, patch).await,
        )
        .ok(200);
    assert_eq!(cred["labels"]["tier"], "gold");
    assert_redacted(&cred, spec("canary-db"), c);
    let cred = seen
        .keep(
            "rename pw",
            srv.patch(
                &format!("/v1/credentials/{pw}"),
                &admin,
                json!({"name": "canary-pw-renamed"}),
            )
            .await,
        )
        .ok(200);
    assert_eq!(cred["name"], "canary-pw-renamed");
    let cred = seen
        .keep("delete pw", srv.delete(&format!("/v1/credentials/{pw}"), &admin).await)
        .ok(200);
    assert_eq!(cred["status"], "pending_deletion");
    let cred = seen
        .keep(
            "restore pw",
            srv.post(&format!("/v1/credentials/{pw}/restore"), &admin, json!({}))
                .await,
        )
        .ok(200);
    assert_eq!(cred["status"], "active");

    // Refusals that carry the canary: plaintext through the API (nobody by default), a taken
    // name, fields of the wrong shape, a version of the wrong shape.
    let r = seen.keep(
        "reveal db",
        srv.post(&format!("/v1/credentials/{db}/reveal"), &admin, json!({}))
            .await,
    );
    assert_eq!(r.status, 403, "reveal is granted to nobody by default: {}", r.text);
    seen.keep(
        "create a taken name",
        srv.post("/v1/credentials", &admin, spec("canary-db").body.clone())
            .await,
    )
    .problem(409, "name_taken");
    let mut bad = spec("canary-db").body.clone();
    bad["name"] = json!("canary-bad");
    bad["fields"] = json!({"username": 5, "password": {"value": c}});
    seen.keep("create with bad fields", srv.post("/v1/credentials", &admin, bad).await)
        .problem(422, "invalid_fields");
    seen.keep(
        "bad version",
        srv.post(
            &format!("/v1/credentials/{db}/versions"),
            &admin,
            json!({"fields": {"username": "loader", "password": [c]}}),
        )
        .await,
    )
    .problem(422, "invalid_fields");

    // Reads: every credential, every version list, filtered lists, paged lists.
    for (name, id) in &ids {
        let cred = seen
            .keep(
                format!("get {name}"),
                srv.get(&format!("/v1/credentials/{id}"), &admin).await,
            )
            .ok(200);
        assert!(
            !cred["fields"].to_string().contains(c),
            "{name}: the canary is in `fields`: {cred}"
        );
        seen.keep(
            format!("versions of {name}"),
            srv.get(&format!("/v1/credentials/{id}/versions"), &admin).await,
        )
        .ok(200);
    }
    let ws = srv.ws_id.clone();
    let org = srv.org_id.clone();
    let lists = [
        "/v1/credentials".to_owned(),
        "/v1/credentials?type=database".to_owned(),
        "/v1/credentials?environment=prod".to_owned(),
        "/v1/credentials?label=system:postgres".to_owned(),
        "/v1/credentials?label=owner_team:data-platform&type=password".to_owned(),
        "/v1/credentials?status=active".to_owned(),
        format!("/v1/credentials?workspace_id={ws}"),
        format!("/v1/credentials?org_id={org}"),
        "/v1/credentials?limit=1".to_owned(),
    ];
    for l in &lists {
        let items = all_pages(&srv, &mut seen, l).await;
        for item in &items {
            assert!(
                !item["fields"].to_string().contains(c),
                "{l}: the canary is in `fields`: {item}"
            );
        }
    }
    let all = all_pages(&srv, &mut seen, "/v1/credentials?limit=1").await;
    assert_eq!(all.len(), specs.len(), "every credential is listed once");
    let dbs = all_pages(&srv, &mut seen, "/v1/credentials?type=database&label=system:postgres").await;
    assert_eq!(dbs.len(), 1, "{dbs:?}");
    assert_redacted(&dbs[0], spec("canary-db"), c);
    seen.keep("credential types", srv.get("/v1/credential-types", &admin).await)
        .ok(200);
    seen.keep("metrics", srv.call("GET", "/metrics", None, None).await);

    // The audit journal recorded all of it, and none of it holds the canary.
    let events = all_pages(&srv, &mut seen, "/v1/audit?limit=3").await;
    let actions: std::collections::BTreeSet<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    for a in [
        "credential.create",
        "credential.version.create",
        "credential.version.promote",
        "credential.version.revoke",
        "credential.disable",
        "credential.enable",
        "credential.update",
        "credential.delete",
        "credential.restore",
    ] {
        assert!(
            actions.contains(a),
            "no {a} event in the audit journal; actions: {actions:?}"
        );
    }
    let needles = needles(c);
    for e in &events {
        if let Some(form) = leak(e.to_string().as_bytes(), &needles) {
            panic!("{backend:?}: an audit event holds {form}: {e}");
        }
    }
    for filter in [
        "action=credential.create".to_owned(),
        format!("target_id={db}"),
        "action=credential.version.create".to_owned(),
        "outcome=denied".to_owned(),
    ] {
        all_pages(&srv, &mut seen, &format!("/v1/audit?{filter}")).await;
    }
    seen.keep("audit verify", srv.get("/v1/audit/verify", &admin).await)
        .ok(200);

    // Everything is flushed once the server has stopped.
    srv.stop();

    let mut leaks = Vec::new();
    for (what, text) in &seen.answers {
        if let Some(form) = leak(text.as_bytes(), &needles) {
            leaks.push(format!("  the answer to `{what}` holds {form}: {}", shorten(text, 300)));
        }
    }
    let logs = srv.logs();
    if let Some(form) = leak(logs.as_bytes(), &needles) {
        let line = logs
            .lines()
            .find(|l| leak(l.as_bytes(), &needles).is_some())
            .unwrap_or_default();
        leaks.push(format!("  the server log holds {form}: {}", shorten(line, 300)));
    }
    let files = files_under(srv.data.path());
    assert!(
        files.iter().any(|(p, _)| p.ends_with("keyring.json")),
        "the data directory has no keyring: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    if backend == Backend::Sqlite {
        assert!(
            files.iter().any(|(p, _)| p.ends_with("credvault.db")),
            "the data directory has no database"
        );
    }
    // Positive control: the search does see what is stored in the clear (names, public fields).
    let control = [("a public value".to_owned(), b"AKIAIOSFODNN7EXAMPLE".to_vec())];
    if backend == Backend::Sqlite {
        assert!(
            files.iter().any(|(_, b)| leak(b, &control).is_some()),
            "the file search cannot even find a public field"
        );
    }
    for (path, bytes) in &files {
        if let Some(form) = leak(bytes, &needles) {
            leaks.push(format!("  the file {path} holds {form}"));
        }
    }
    if backend == Backend::Postgres {
        let rows = postgres_rows(srv.pg.as_ref().unwrap().url.clone());
        assert!(
            rows.iter().any(|(t, _)| t == "credential_versions"),
            "no credential versions in PostgreSQL"
        );
        assert!(
            rows.iter().any(|(_, r)| leak(r.as_bytes(), &control).is_some()),
            "the row search cannot even find a public field"
        );
        for (table, row) in &rows {
            if let Some(form) = leak(row.as_bytes(), &needles) {
                leaks.push(format!("  a row of {table} holds {form}: {}", shorten(row, 300)));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{backend:?}: the canary leaked ({} answers, {} files searched):\n{}",
        seen.answers.len(),
        files.len(),
        leaks.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_never_appears_in_answers_logs_audit_events_or_files() {
    each_backend!(canary_never_leaves);
}

#[test]
fn the_encoded_forms_of_the_canary_are_computed_correctly() {
    assert_eq!(b64(b"foobar", B64_STD), "Zm9vYmFy");
    assert_eq!(b64(b"\xfb\xff\xbf", B64_STD), "+/+/");
    assert_eq!(b64(b"\xfb\xff\xbf", B64_URL), "-_-_");
    let n = needles("canary-00ff");
    assert!(leak(b"xx 63616e6172792d30306666 xx", &n).is_some(), "hex form");
    // "canary-00ff" from offset 0, whole groups: "canary-00" -> "Y2FuYXJ5LTAw".
    assert!(leak(b"..Y2FuYXJ5LTAw..", &n).is_some(), "base64 form");
    assert!(leak(b"nothing here", &n).is_none());
}
