//! Master keys, KMS and backups: rotation re-wraps every data key (and resumes after a kill),
//! a KMS-wrapped keyring serves and rotates, and a backup restores the same plaintext with the
//! right keyring and refuses without it — on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::{Command, Stdio};

use common::{Backend, Scope, Server, TempDir};
use serde_json::{Value, json};

/// Runs the binary with store arguments for `srv`'s data directory (and database).
fn store_cli(
    srv_data: &std::path::Path,
    pg_url: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).arg("--data-dir").arg(srv_data);
    if let Some(u) = pg_url {
        cmd.arg("--database-url").arg(u);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A connection with a credential and a worker that may resolve it.
async fn wired(srv: &Server, password: &str) -> (String, String) {
    let c = srv
        .database_credential(&srv.admin, &format!("db-{}", &password[..6]), password)
        .await;
    let conn = srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": format!("conn-{}", &password[..6]), "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "db.internal", "database": "dwh"}, "credential_id": c["id"]}),
        )
        .await
        .ok(201);
    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(
            &org,
            "service_account",
            &format!("w-{}", &password[..6]),
            &[("worker", Scope::Org(&org))],
        )
        .await;
    (conn["id"].as_str().unwrap().to_owned(), worker)
}

async fn resolve_password(srv: &Server, conn: &str, worker: &str) -> String {
    let r = srv
        .post("/v1/resolve", worker, json!({"connection_id": conn, "run_id": "r"}))
        .await
        .ok(200);
    r["credential"]["fields"]["password"].as_str().unwrap().to_owned()
}

async fn rotation_rewraps_every_data_key_and_resumes_after_a_kill(b: Backend) {
    let srv = Server::start(b).await;
    let (conn, worker) = wired(&srv, "first-secret-pw").await;
    // Enough versions that a re-wrap takes several batches.
    let mut handles = Vec::new();
    for i in 0..120 {
        let (base, tok, ws) = (srv.base.clone(), srv.admin.clone(), srv.ws_id.clone());
        handles.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{base}/v1/credentials"))
                .bearer_auth(tok)
                .json(&json!({"name": format!("bulk-{i}"), "type": "password", "workspace_id": ws, "environment": "dev", "fields": {"password": format!("bulk-secret-{i}")}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 201);
    }
    let pg = srv.pg.as_ref().map(|p| p.url.clone());
    let data = srv.data.path().to_owned();
    // Rotate with the server running; kill the rotation as soon as it starts re-wrapping.
    let mut cmd = Command::new(common::bin());
    cmd.args(["keys", "rotate", "--wait-secs", "2", "--data-dir"])
        .arg(&data);
    if let Some(u) = &pg {
        cmd.arg("--database-url").arg(u);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    // Whatever was committed, everything still opens (the running server reloaded the key file).
    assert_eq!(resolve_password(&srv, &conn, &worker).await, "first-secret-pw");
    let (ok, out, err) = store_cli(&data, pg.as_deref(), &["keys", "status"], &[]);
    assert!(ok, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["primary"], "k2", "{st}");
    // Resume: finishes whatever the kill left.
    let (ok, _, err) = store_cli(&data, pg.as_deref(), &["keys", "rewrap"], &[]);
    assert!(ok, "{err}");
    let (_, out, _) = store_cli(&data, pg.as_deref(), &["keys", "status"], &[]);
    let st: Value = serde_json::from_str(&out).unwrap();
    let k1 = st["keys"].as_array().unwrap().iter().find(|k| k["id"] == "k1").unwrap()["data_keys"]
        .as_i64()
        .unwrap();
    let k2 = st["keys"].as_array().unwrap().iter().find(|k| k["id"] == "k2").unwrap()["data_keys"]
        .as_i64()
        .unwrap();
    assert_eq!(k1, 0, "{st}");
    assert_eq!(k2, 121, "{st}");
    // Retire the old key; every secret still opens, checked through reveal for all of them.
    let (ok, _, err) = store_cli(&data, pg.as_deref(), &["keys", "retire", "k1"], &[]);
    assert!(ok, "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    srv.patch(&format!("/v1/orgs/{}/settings", srv.org_id), &srv.admin, json!({"role_policy": {"credential.create": ["admin", "integration_engineer"], "credential.attach": ["admin", "integration_engineer", "builder"], "credential.reveal": ["admin"]}}))
        .await
        .ok(200);
    let mut cursor: Option<String> = None;
    let mut revealed = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/v1/credentials?type=password&limit=100&cursor={c}"),
            None => "/v1/credentials?type=password&limit=100".to_owned(),
        };
        let page = srv.get(&q, &srv.admin).await.ok(200);
        for c in page["items"].as_array().unwrap() {
            let r = srv
                .post(
                    &format!("/v1/credentials/{}/reveal", c["id"].as_str().unwrap()),
                    &srv.admin,
                    json!({}),
                )
                .await
                .ok(200);
            let i = c["name"].as_str().unwrap().strip_prefix("bulk-").unwrap();
            assert_eq!(r["fields"]["password"], format!("bulk-secret-{i}"));
            revealed += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(revealed, 120);
    assert_eq!(resolve_password(&srv, &conn, &worker).await, "first-secret-pw");
    // A retired key that still wraps data cannot be retired.
    let (ok, _, err) = store_cli(&data, pg.as_deref(), &["keys", "retire", "k2"], &[]);
    assert!(!ok);
    assert!(err.contains("primary") || err.contains("still wraps"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_every_data_key_and_resumes_after_a_kill_on_every_backend() {
    each_backend!(rotation_rewraps_every_data_key_and_resumes_after_a_kill);
}

async fn a_backup_restores_the_same_plaintext_with_its_keyring_and_refuses_without(b: Backend) {
    let srv = Server::start(b).await;
    let (conn, worker) = wired(&srv, "backup-secret-pw").await;
    let dir = TempDir::new();
    let backup = dir.path().join("b.cvb");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "a long enough passphrase\n").unwrap();
    let pg = srv.pg.as_ref().map(|p| p.url.clone());
    // Taken while the server runs.
    let (ok, _, err) = store_cli(
        srv.data.path(),
        pg.as_deref(),
        &[
            "backup",
            "--output",
            backup.to_str().unwrap(),
            "--include-keyring",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    let bytes = std::fs::read(&backup).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("backup-secret-pw"),
        "no plaintext in a backup"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);

    // Restore with the key file into a fresh store of the same engine.
    let target = TempDir::new();
    let target_pg = (b == Backend::Postgres).then(common::PgDb::create);
    let tpg = target_pg.as_ref().map(|p| p.url.clone());
    let (ok, _, err) = store_cli(
        target.path(),
        tpg.as_deref(),
        &[
            "restore",
            "--input",
            backup.to_str().unwrap(),
            "--passphrase-file",
            "/dev/null",
        ],
        &[],
    );
    assert!(!ok, "an empty (wrong) passphrase must not open the key file");
    assert!(err.contains("passphrase"), "{err}");
    let (ok, _, err) = store_cli(
        target.path(),
        tpg.as_deref(),
        &[
            "restore",
            "--input",
            backup.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = store_cli(
        target.path(),
        tpg.as_deref(),
        &[
            "restore",
            "--input",
            backup.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "restoring into a non-empty store is refused");
    assert!(err.contains("empty"), "{err}");
    let (admin, org, ws) = (srv.admin.clone(), srv.org_id.clone(), srv.ws_id.clone());
    let mut restored = Server::start_opts(b, target, target_pg, &[], &[]).await;
    restored.admin = admin;
    restored.org_id = org;
    restored.ws_id = ws;
    assert_eq!(resolve_password(&restored, &conn, &worker).await, "backup-secret-pw");
    assert_eq!(
        restored.get("/v1/audit/verify", &restored.admin).await.ok(200)["ok"],
        true
    );
    restored.stop();

    // Restore without the key file: the data is there but the server refuses to start.
    let bare = TempDir::new();
    let bare_pg = (b == Backend::Postgres).then(common::PgDb::create);
    let bpg = bare_pg.as_ref().map(|p| p.url.clone());
    let (ok, _, err) = store_cli(
        bare.path(),
        bpg.as_deref(),
        &["restore", "--input", backup.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{err}");
    assert!(err.contains("no key file restored"), "{err}");
    let mut cmd = Command::new(common::bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(bare.path());
    if let Some(u) = &bpg {
        cmd.arg("--database-url").arg(u);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // …and with a different keyring it cannot decrypt: resolve fails, no plaintext.
    let other = TempDir::new();
    let (ok, _, _) = store_cli(other.path(), None, &["init", "--json"], &[]);
    assert!(ok);
    std::fs::copy(other.path().join("keyring.json"), bare.path().join("keyring.json")).unwrap();
    let mut wrong = Server::start_opts(b, bare, bare_pg, &[], &[]).await;
    wrong.admin = srv.admin.clone();
    let r = wrong
        .post("/v1/resolve", &worker, json!({"connection_id": conn, "run_id": "r"}))
        .await;
    assert!(r.status >= 500, "{}", r.text);
    assert!(!r.text.contains("backup-secret-pw"));
    wrong.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_the_same_plaintext_with_its_keyring_and_refuses_without_on_every_backend() {
    each_backend!(a_backup_restores_the_same_plaintext_with_its_keyring_and_refuses_without);
}

#[cfg(feature = "moto-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_wrapped_keyring_serves_rotates_and_needs_kms_credentials() {
    let moto = std::env::var("CREDVAULT_TEST_MOTO_URL")
        .expect("CREDVAULT_TEST_MOTO_URL must name a moto server; scripts/test starts one");
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIATESTTESTTESTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "dummysecret"),
    ];
    let creds = credvault_connect::aws::AwsCredentials {
        access_key_id: env[0].1.into(),
        secret_access_key: env[1].1.to_owned().into(),
        session_token: None,
    };
    let key = credvault_connect::aws::KmsKey {
        key_id: String::new(),
        region: "us-east-1".into(),
        endpoint: Some(moto.clone()),
    };
    let created = credvault_connect::aws::kms_call(&key, &creds, "CreateKey", json!({"Description": "credvault test"}))
        .await
        .unwrap();
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();

    let srv = Server::start(Backend::Sqlite).await;
    let (conn, worker) = wired(&srv, "kms-secret-pw1").await;
    let mut srv = srv;
    srv.stop();
    let data = srv.data.path().to_owned();
    let (ok, _, err) = store_cli(
        &data,
        None,
        &["keys", "kms-wrap", "--kms-key-id", &key_id, "--kms-endpoint", &moto],
        &env,
    );
    assert!(ok, "{err}");
    assert!(!data.join("keyring.json").exists(), "the plain key file is gone");
    let wrapped = std::fs::read_to_string(data.join("keyring.kms.json")).unwrap();
    assert!(wrapped.contains("credvault-keyring-kms/1"));
    // Without AWS credentials the server cannot unwrap the keyring and says so.
    let out = Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With them it serves the same plaintext.
    let srv = srv.restart(&[], &env).await;
    assert_eq!(resolve_password(&srv, &conn, &worker).await, "kms-secret-pw1");
    // Rotation under KMS: new primary, every data key re-wrapped, still resolves.
    let (ok, _, err) = store_cli(&data, None, &["keys", "rotate", "--wait-secs", "2"], &env);
    assert!(ok, "{err}");
    let (ok, out, err) = store_cli(&data, None, &["keys", "status"], &env);
    assert!(ok, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["primary"], "k2");
    assert_eq!(resolve_password(&srv, &conn, &worker).await, "kms-secret-pw1");
    // And back to a plain key file.
    let mut srv = srv;
    srv.stop();
    let (ok, _, err) = store_cli(&data, None, &["keys", "kms-unwrap"], &env);
    assert!(ok, "{err}");
    assert!(data.join("keyring.json").exists());
    let srv = srv.restart(&[], &[]).await;
    assert_eq!(resolve_password(&srv, &conn, &worker).await, "kms-secret-pw1");
}
