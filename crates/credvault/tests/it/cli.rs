//! The command line as a user drives it: client commands against a started server, secrets
//! from stdin or a file and never from argv.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Backend, Server};
use serde_json::Value;

fn cli(srv: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(args)
        .env("CREDVAULT_SERVER", &srv.base)
        .env("CREDVAULT_TOKEN", &srv.admin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_shows_and_rotates_credentials_with_secrets_from_stdin() {
    let srv = Server::start(Backend::Sqlite).await;
    let (ok, out, err) = cli(
        &srv,
        &[
            "credential",
            "create",
            "--name",
            "prod-db",
            "--type",
            "database",
            "--workspace",
            &srv.ws_id,
            "--env",
            "prod",
            "--label",
            "system=postgres",
            "--field",
            "username=loader",
            "--fields-file",
            "-",
        ],
        Some(r#"{"password": "cli-secret-1"}"#),
    );
    assert!(ok, "{err}");
    assert!(!out.contains("cli-secret-1"));
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["fields"]["username"], "loader");
    assert_eq!(created["secret_fields_set"][0], "password");

    let (ok, out, _) = cli(&srv, &["credential", "list"], None);
    assert!(ok);
    assert!(out.contains("prod-db") && out.contains(&id));

    let dir = common::TempDir::new();
    let f = dir.path().join("v2.json");
    std::fs::write(&f, r#"{"username": "loader", "password": "cli-secret-2"}"#).unwrap();
    let (ok, out, err) = cli(
        &srv,
        &[
            "credential",
            "rotate",
            &id,
            "--fields-file",
            f.to_str().unwrap(),
            "--promote",
        ],
        None,
    );
    assert!(ok, "{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rotated["current_version"], 2);

    let (ok, out, _) = cli(&srv, &["credential", "show", &id], None);
    assert!(ok);
    assert!(!out.contains("cli-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_secrets_on_the_command_line_and_explains_errors() {
    let srv = Server::start(Backend::Sqlite).await;
    let (ok, _, err) = cli(
        &srv,
        &[
            "credential",
            "create",
            "--name",
            "x",
            "--type",
            "password",
            "--workspace",
            &srv.ws_id,
            "--env",
            "dev",
            "--field",
            "password=oops",
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("secret field"), "{err}");
    // Missing secret and no terminal: a clear error instead of a hang.
    let (ok, _, err) = cli(
        &srv,
        &[
            "credential",
            "create",
            "--name",
            "x",
            "--type",
            "password",
            "--workspace",
            &srv.ws_id,
            "--env",
            "dev",
        ],
        None,
    );
    assert!(!ok);
    assert!(err.contains("password") && err.contains("--fields-file"), "{err}");
    // Server-side problems are shown with their code and field.
    let (ok, _, err) = cli(
        &srv,
        &[
            "credential",
            "create",
            "--name",
            "bad name",
            "--type",
            "password",
            "--workspace",
            &srv.ws_id,
            "--env",
            "dev",
            "--fields-file",
            "-",
        ],
        Some(r#"{"password":"p"}"#),
    );
    assert!(!ok);
    assert!(err.contains("invalid_name") && err.contains("field: name"), "{err}");
    // No token configured.
    let out = Command::new(common::bin())
        .args(["whoami"])
        .env_remove("CREDVAULT_TOKEN")
        .env("CREDVAULT_SERVER", &srv.base)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CREDVAULT_TOKEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_orgs_workspaces_principals_and_tokens() {
    let srv = Server::start(Backend::Sqlite).await;
    let (ok, out, err) = cli(&srv, &["org", "create", "acme"], None);
    assert!(ok, "{err}");
    let org: Value = serde_json::from_str(&out).unwrap();
    let org_id = org["id"].as_str().unwrap();
    let (ok, out, err) = cli(&srv, &["workspace", "create", "--org", org_id, "analytics"], None);
    assert!(ok, "{err}");
    let ws: Value = serde_json::from_str(&out).unwrap();
    let (ok, out, err) = cli(
        &srv,
        &[
            "principal",
            "create",
            "--org",
            org_id,
            "--kind",
            "service_account",
            "loader",
        ],
        None,
    );
    assert!(ok, "{err}");
    let p: Value = serde_json::from_str(&out).unwrap();
    let pid = p["id"].as_str().unwrap();
    let (ok, _, err) = cli(
        &srv,
        &[
            "principal",
            "bind",
            pid,
            "--role",
            "worker",
            "--workspace",
            ws["id"].as_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&srv, &["token", "create", pid], None);
    assert!(ok, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert!(t["token"].as_str().unwrap().starts_with("cvt_"));
    let (ok, out, _) = cli(&srv, &["principal", "show", pid], None);
    assert!(ok);
    assert!(out.contains("\"worker\""));
    let (ok, _, err) = cli(
        &srv,
        &["org", "set", org_id, "--enabled-types", "database,api_key"],
        None,
    );
    assert!(ok, "{err}");
}

/// The Python client (`clients/python`, standard library only) as a worker uses it: resolve
/// with the run ID, every field wrapped so `repr`/`str`/f-strings never show it, `reveal()`
/// gives it; report the outcome; problems become typed exceptions with the server's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_resolves_reports_and_never_prints_a_secret() {
    let srv = Server::start(Backend::Sqlite).await;
    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(
            &org,
            "service_account",
            "py-worker",
            &[("worker", common::Scope::Org(&org))],
        )
        .await;
    let secret = "py-canary-5f0c2e";
    let cred = srv.database_credential(&srv.admin, "py-db", secret).await;
    let conn = srv
        .post(
            "/v1/connections",
            &srv.admin,
            serde_json::json!({"name": "py-pg", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                               "config": {"host": "db.internal", "database": "dwh"}, "credential_id": cred["id"]}),
        )
        .await
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let script = r#"
import json, sys
from credvault import Client, NotFound, Unauthenticated, Invalid, Secret
c = Client.from_env()
r = c.resolve(sys.argv[1], run_id="py-run-1")
shown = [repr(r), str(r.fields), f"{r.fields['password']}", repr(c)]
out = {"shown": shown, "password": r.fields["password"].reveal(), "user": r.fields["username"].reveal(),
       "kind": r.kind, "host": r.config["host"], "version": r.version}
c.report(r, "auth_failed")
try:
    c.resolve("conn_aaaaaaaaaaaaaaaaaaaaaaaaaa", run_id="py-run-2")
except NotFound as e:
    out["missing"] = [e.status, e.code]
named = c.resolve_name(sys.argv[2], "py-pg", run_id="py-run-4")
out["by_name"] = [named.connection_id, named.fields["password"].reveal() == out["password"]]
try:
    c.resolve(sys.argv[1], run_id="")
except Invalid as e:
    out["invalid"] = [e.status, e.code, e.field]
try:
    Client(c._server, "cvt_not_a_token").resolve(sys.argv[1], run_id="py-run-3")
except Unauthenticated as e:
    out["unauthenticated"] = [e.status, e.code]
try:
    import pickle; pickle.dumps(r.fields["password"])
except TypeError:
    out["pickle"] = "refused"
print(json.dumps(out))
"#;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
    let out = Command::new("python3")
        .args(["-c", script, &conn, &srv.ws_id])
        .env("PYTHONPATH", &root)
        .env("CREDVAULT_SERVER", &srv.base)
        .env("CREDVAULT_TOKEN", &worker)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["password"], secret);
    assert_eq!(v["user"], "loader");
    assert_eq!(
        (v["kind"].as_str(), v["host"].as_str()),
        (Some("postgres"), Some("db.internal"))
    );
    let shown = v["shown"].to_string();
    assert!(!shown.contains(secret), "a secret in repr/str/format: {shown}");
    assert!(!shown.contains(&worker), "the token in repr: {shown}");
    assert!(shown.contains("Secret(***)"), "{shown}");
    assert_eq!(v["missing"], serde_json::json!([404, "not_found"]));
    assert_eq!(v["by_name"], serde_json::json!([conn, true]));
    assert_eq!(v["invalid"][0], 422, "{v}");
    assert_eq!(v["invalid"][2], "run_id", "{v}");
    assert_eq!(v["unauthenticated"], serde_json::json!([401, "unauthenticated"]));
    assert_eq!(v["pickle"], "refused");
    // The resolve and the report are journaled with the run.
    let events = srv.get("/v1/audit?action=resolve.report", &srv.admin).await.ok(200);
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["details"]["run_id"] == "py-run-1" && e["details"]["reported"] == "auth_failed"),
        "{events}"
    );
}
