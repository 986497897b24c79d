//! Signed audit checkpoints, end to end through the binary on SQLite and PostgreSQL:
//! `audit checkpoint` signs every chain's head, `audit public-keys` prints the keys, and
//! `audit verify --file … --public-key …` checks an export against them without the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::{Command, Output, Stdio};

use common::{Backend, Server, TempDir};
use serde_json::Value;

/// Runs the binary against the server's data directory (and database).
fn store_cli(srv: &Server, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.args(args).arg("--data-dir").arg(srv.data.path());
    if let Some(pg) = &srv.pg {
        cmd.arg("--database-url").arg(&pg.url);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// Runs the binary as a client of the server.
fn client(srv: &Server, args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .env("CREDVAULT_SERVER", &srv.base)
        .env("CREDVAULT_TOKEN", &srv.admin)
        .env_remove("CREDVAULT_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

async fn checkpoints(b: Backend) {
    let srv = Server::start(b).await;
    for i in 0..3 {
        srv.database_credential(&srv.admin, &format!("cp-{i}"), "checkpoint-pw")
            .await;
    }
    // One checkpoint per chain with events; none again until something new happens.
    let first = json_of(&store_cli(&srv, &["audit", "checkpoint"]));
    assert!(first["checkpoints_written"].as_u64().unwrap() >= 1, "{first}");
    let again = json_of(&store_cli(&srv, &["audit", "checkpoint"]));
    assert_eq!(again["checkpoints_written"], 0, "{again}");
    let keys = json_of(&store_cli(&srv, &["audit", "public-keys"]));
    let pk = keys[0]["public_key"].as_str().unwrap().to_owned();
    assert_eq!(keys[0]["key_id"], "k1", "{keys}");
    // More events after the checkpoint, then a second one.
    srv.database_credential(&srv.admin, "cp-late", "checkpoint-pw").await;
    json_of(&store_cli(&srv, &["audit", "checkpoint"]));

    let dir = TempDir::new();
    let file = dir.path().join("journal.jsonl");
    let fs = file.to_string_lossy().into_owned();
    let o = client(&srv, &["audit", "export", "--output", &fs]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // With the right key: every checkpoint verifies — two on the organization's chain, one
    // more on each shard that has events (PostgreSQL spreads events over shards).
    let text = std::fs::read_to_string(&file).unwrap();
    let written = text
        .lines()
        .filter(|l| l.contains("\"action\":\"audit.checkpoint\""))
        .count();
    assert!(written >= 2, "{text}");
    if b == Backend::Sqlite {
        assert_eq!(written, 2, "{text}");
    }
    let v = json_of(&client(&srv, &["audit", "verify", "--file", &fs, "--public-key", &pk]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["checkpoints"], written, "{v}");
    // Another key is not trusted.
    let other = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    let o = client(&srv, &["audit", "verify", "--file", &fs, "--public-key", other]);
    assert!(!o.status.success(), "an untrusted key was accepted");
    assert!(String::from_utf8_lossy(&o.stdout).contains("not trusted"), "{o:?}");
    // A file without any checkpoint does not satisfy --public-key.
    let bare: Vec<&str> = text.lines().take_while(|l| !l.contains("audit.checkpoint")).collect();
    let bare_file = dir.path().join("bare.jsonl");
    std::fs::write(&bare_file, bare.join("\n")).unwrap();
    let bs = bare_file.to_string_lossy().into_owned();
    let o = client(&srv, &["audit", "verify", "--file", &bs, "--public-key", &pk]);
    assert!(!o.status.success(), "a journal without checkpoints passed --public-key");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no signed checkpoint"),
        "{o:?}"
    );
    // Plain verification still works without keys.
    let v = json_of(&client(&srv, &["audit", "verify", "--file", &bs]));
    assert_eq!(v["ok"], true, "{v}");
    // Without a trusted key, the file's checkpoints are never "verified": the public key they
    // carry is the file's own word (a forger re-signs with theirs).
    let v = json_of(&client(&srv, &["audit", "verify", "--file", &fs]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["checkpoints"], 0, "{v}");
    assert_eq!(v["unverified_checkpoints"], written, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_let_an_export_be_verified_with_the_public_key_alone_on_every_backend() {
    for b in common::backends() {
        eprintln!("--- backend {b:?}");
        checkpoints(b).await;
    }
}
