//! The lifecycle beyond create, over real HTTP and the real CLI, on SQLite and PostgreSQL:
//! one-call tested rotation against a real PostgreSQL login role; the grace of a `previous`
//! version and its end by the scheduler; the scheduler's expiry, expired and rotation-overdue
//! alerts at controlled times (each exactly once, audited as `system`); purge leaving no
//! recoverable key material in the store's files (or, on PostgreSQL, rows); offboarding; and
//! incident disable through the CLI. Then the edges: a purged credential stays purged, a purge
//! overlapping a long read still leaves no copy, offboarding never hands ownership to the
//! principal it disables, and a refused rotation stages nothing.
//!
//! Scheduler passes run through `credvault scheduler tick --now …` against the store of a
//! running server whose own background scheduler is switched off (config file
//! `scheduler_interval_secs = 0`), so every alert comes from a pass this test chose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{random_hex, st};

use std::path::Path;
use std::process::Command;

use common::{Backend, Resp, Scope, Server, TempDir};
use serde_json::{Value, json};

/// One day in seconds.
const DAY: i64 = 86_400;

/// One hour in seconds.
const HOUR: i64 = 3_600;

// ------------------------------------------------------------------------------- helpers

fn id(v: &Value) -> String {
    st(&v["id"])
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// RFC 3339 (UTC, whole seconds) of a Unix time.
pub(crate) fn rfc3339(secs: i64) -> String {
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

/// A server whose background scheduler is off, so only the passes a test runs happen. The
/// returned directory holds the config file and must live as long as the server.
async fn quiet_server(b: Backend, extra: &[&str]) -> (Server, TempDir) {
    let dir = TempDir::new();
    let cfg = dir.path().join("credvault.toml");
    std::fs::write(&cfg, "scheduler_interval_secs = 0\n").unwrap();
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let mut args: Vec<&str> = vec!["--config", &cfg_s];
    args.extend_from_slice(extra);
    (Server::start_with(b, &args).await, dir)
}

/// Runs `credvault scheduler tick --now AT` against the server's store and returns its report.
fn tick(srv: &Server, at: i64) -> Value {
    let mut cmd = Command::new(common::bin());
    cmd.args(["scheduler", "tick", "--data-dir"]).arg(srv.data.path());
    if let Some(pg) = &srv.pg {
        cmd.arg("--database-url").arg(&pg.url);
    }
    cmd.arg("--now").arg(rfc3339(at));
    for v in [
        "CREDVAULT_TOKEN",
        "CREDVAULT_CONFIG",
        "CREDVAULT_DATABASE_URL",
        "CREDVAULT_DATA_DIR",
        "CREDVAULT_SCHEDULER_INTERVAL_SECS",
    ] {
        cmd.env_remove(v);
    }
    let out = cmd.output().expect("cannot run credvault scheduler tick");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "scheduler tick at {} failed: {}\nstdout: {stdout}\nstderr: {}",
        rfc3339(at),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("tick printed no JSON ({e}): {stdout}"))
}

/// Runs `n` scheduler passes at the same `at` concurrently and returns their reports.
fn ticks_at_once(srv: &Server, at: i64, n: usize) -> Vec<Value> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n).map(|_| s.spawn(|| tick(srv, at))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The alerts of a tick report, sorted.
fn alerts(report: &Value) -> Vec<String> {
    let mut a: Vec<String> = report["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("no alerts[] in {report}"))
        .iter()
        .map(st)
        .collect();
    a.sort();
    a
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
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

/// A `database` credential body in workspace `ws`.
fn db_cred(name: &str, ws: &str, username: &str, password: &str) -> Value {
    json!({"name": name, "type": "database", "workspace_id": ws, "environment": "prod",
           "labels": {"system": "postgres", "owner_team": "data-platform"},
           "fields": {"username": username, "password": password}})
}

/// A postgres connection body.
fn pg_conn(name: &str, ws: &str, config: Value, cred: Option<&str>) -> Value {
    let mut b = json!({"name": name, "workspace_id": ws, "environment": "prod", "kind": "postgres", "config": config});
    if let Some(c) = cred {
        b["credential_id"] = json!(c);
    }
    b
}

async fn create(srv: &Server, path: &str, body: Value) -> String {
    id(&srv.post(path, &srv.admin, body).await.ok(201))
}

async fn resolve(
    srv: &Server,
    token: &str,
    conn: &str,
    run: &str,
    pipeline: Option<&str>,
    version: Option<i64>,
) -> Resp {
    let mut b = json!({"connection_id": conn, "run_id": run});
    if let Some(p) = pipeline {
        b["pipeline_id"] = json!(p);
    }
    if let Some(v) = version {
        b["version"] = json!(v);
    }
    srv.post("/v1/resolve", token, b).await
}

/// A worker service account bound at the default workspace; returns its token.
async fn worker(srv: &Server) -> String {
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    srv.principal(&org, "service_account", "etl-worker", &[("worker", Scope::Ws(&ws))])
        .await
        .1
}

/// `(version, state)` of every version of a credential.
async fn version_states(srv: &Server, cred: &str) -> Vec<(i64, String)> {
    srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), st(&v["state"])))
        .collect()
}

// ----------------------------------------------------------- 1. rotation against PostgreSQL

/// A login role and its database on the test run's PostgreSQL, dropped at the end.
#[cfg(feature = "postgres-tests")]
struct TargetDb {
    admin_url: String,
    host: String,
    port: u16,
    role: String,
    db: String,
}

#[cfg(feature = "postgres-tests")]
impl TargetDb {
    fn create(password: &str) -> TargetDb {
        let admin_url =
            std::env::var("CREDVAULT_TEST_PG_URL").expect("CREDVAULT_TEST_PG_URL must name the test PostgreSQL");
        let (_, after_at) = admin_url.rsplit_once('@').unwrap();
        let (hostport, _) = after_at.split_once('/').unwrap();
        let (host, port) = hostport.rsplit_once(':').unwrap();
        let suffix = random_hex(5);
        let t = TargetDb {
            admin_url: admin_url.clone(),
            host: host.to_owned(),
            port: port.parse().unwrap(),
            role: format!("app_{suffix}"),
            db: format!("appdb_{suffix}"),
        };
        t.admin(&format!("CREATE ROLE {} LOGIN PASSWORD '{password}'", t.role));
        t.admin(&format!("CREATE DATABASE {} OWNER {}", t.db, t.role));
        t
    }

    fn admin(&self, sql: &str) {
        let (u, sql) = (self.admin_url.clone(), sql.to_owned());
        common::off_runtime(move || {
            let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
            c.batch_execute(&sql).unwrap();
        });
    }

    /// Logs in to the target database as `user`/`password` and returns `current_user`.
    fn login(&self, user: &str, password: &str) -> Result<String, String> {
        let mut cfg = postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(&self.db);
        common::off_runtime(move || {
            let mut c = cfg.connect(postgres::NoTls).map_err(|e| e.to_string())?;
            let row = c
                .query_one("SELECT current_user::text", &[])
                .map_err(|e| e.to_string())?;
            Ok(row.get::<_, String>(0))
        })
    }
}

#[cfg(feature = "postgres-tests")]
impl Drop for TargetDb {
    fn drop(&mut self) {
        let (u, db, role) = (self.admin_url.clone(), self.db.clone(), self.role.clone());
        common::off_runtime(move || {
            if let Ok(mut c) = postgres::Client::connect(&u, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
                let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
            }
        });
    }
}

#[cfg(feature = "postgres-tests")]
async fn rotation_is_promoted_only_when_the_real_database_accepts_the_new_password(b: Backend) {
    let p1 = format!("p1-{}", random_hex(8));
    let p2 = format!("p2-{}", random_hex(8));
    let typo = format!("{p1}x");
    let target = TargetDb::create(&p1);
    let (srv, _cfg) = quiet_server(b, &["--egress-allow", "127.0.0.0/8"]).await;
    let ws = srv.ws_id.clone();
    let cred = create(&srv, "/v1/credentials", db_cred("prod-app-db", &ws, &target.role, &p1)).await;
    let config = json!({"host": target.host, "port": target.port, "database": target.db});
    let conn = create(
        &srv,
        "/v1/connections",
        pg_conn("app-db", &ws, config.clone(), Some(&cred)),
    )
    .await;
    let pipe = create(
        &srv,
        "/v1/pipelines",
        json!({"name": "nightly-app", "workspace_id": ws, "connection_ids": [conn]}),
    )
    .await;
    let w = worker(&srv).await;

    // The setup works with p1.
    let t = srv
        .post(&format!("/v1/connections/{conn}/test"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_eq!(t["ok"], true, "the connection works with p1: {t}");
    let r = resolve(&srv, &w, &conn, "run-1", Some(&pipe), None).await.ok(200);
    assert_eq!(r["credential"]["version"], 1);
    assert_eq!(r["credential"]["fields"]["password"], p1.as_str());

    // The target now accepts only p2.
    target.admin(&format!("ALTER ROLE {} PASSWORD '{p2}'", target.role));
    assert_eq!(target.login(&target.role, &p2).unwrap(), target.role);
    assert!(target.login(&target.role, &p1).is_err());

    // A typo: the dependent connection fails its test, the version stays pending.
    let resp = srv
        .post(
            &format!("/v1/credentials/{cred}/rotate"),
            &srv.admin,
            json!({"fields": {"username": target.role, "password": typo}}),
        )
        .await;
    assert!(
        !resp.text.contains(&typo),
        "the rotation answer echoes the secret: {}",
        resp.text
    );
    let rot = resp.ok(200);
    assert_eq!(rot["credential_id"], cred.as_str());
    assert_eq!(rot["version"], 2);
    assert_eq!(rot["promoted"], false, "{rot}");
    assert_eq!(rot["state"], "pending");
    assert_eq!(rot["failed_connections"], json!([conn]));
    assert_eq!(rot["tests"]["ok"], false);
    let results = rot["tests"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{rot}");
    assert_eq!(results[0]["connection_id"], conn.as_str());
    assert_eq!(results[0]["version"], 2);
    assert_eq!(results[0]["ok"], false);
    assert_eq!(results[0]["error"]["code"], "auth_failed", "{rot}");
    assert_eq!(
        version_states(&srv, &cred).await,
        vec![(1, "current".to_owned()), (2, "pending".to_owned())]
    );
    let r = resolve(&srv, &w, &conn, "run-2", Some(&pipe), None).await.ok(200);
    assert_eq!(r["credential"]["version"], 1, "resolve still returns the old version");
    assert_eq!(r["credential"]["fields"]["password"], p1.as_str());

    // The right password: tested, promoted.
    let resp = srv
        .post(
            &format!("/v1/credentials/{cred}/rotate"),
            &srv.admin,
            json!({"fields": {"username": target.role, "password": p2}}),
        )
        .await;
    assert!(
        !resp.text.contains(&p2),
        "the rotation answer echoes the secret: {}",
        resp.text
    );
    let rot = resp.ok(200);
    assert_eq!(rot["version"], 3);
    assert_eq!(rot["promoted"], true, "{rot}");
    assert_eq!(rot["state"], "current");
    assert_eq!(rot["failed_connections"], json!([]));
    assert_eq!(rot["tests"]["ok"], true, "{rot}");
    assert_eq!(rot["tests"]["results"][0]["ok"], true);
    let got = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert_eq!(got["current_version"], 3);
    let states = version_states(&srv, &cred).await;
    assert_eq!(states[0], (1, "previous".to_owned()), "{states:?}");
    assert_eq!(states[2], (3, "current".to_owned()), "{states:?}");

    // Resolve hands out p2, and the connection's database really accepts it (and not p1).
    let r = resolve(&srv, &w, &conn, "run-3", Some(&pipe), None).await.ok(200);
    assert_eq!(r["credential"]["version"], 3);
    let fields = &r["credential"]["fields"];
    assert_eq!(fields["password"], p2.as_str());
    let cfg = &r["connection"]["config"];
    assert_eq!(cfg, &config);
    let mut login = postgres::Config::new();
    login
        .host(&st(&cfg["host"]))
        .port(u16::try_from(cfg["port"].as_i64().unwrap()).unwrap())
        .user(&st(&fields["username"]))
        .password(st(&fields["password"]))
        .dbname(&st(&cfg["database"]));
    let who = common::off_runtime(move || {
        let mut c = login
            .connect(postgres::NoTls)
            .expect("the resolved credential is refused by its database");
        c.query_one("SELECT current_user::text", &[])
            .unwrap()
            .get::<_, String>(0)
    });
    assert_eq!(who, target.role);
    assert!(
        target.login(&st(&fields["username"]), &p1).is_err(),
        "the database still accepts p1"
    );

    // Both rotations are on the record.
    let events = audit(&srv, &format!("target_id={conn}&action=connection.test")).await;
    let oks: Vec<bool> = events.iter().map(|e| e["details"]["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, vec![true, false, true], "{events:#?}");
    let promotes = audit(&srv, &format!("target_id={cred}&action=credential.version.promote")).await;
    assert_eq!(promotes.len(), 1, "{promotes:#?}");
}

#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_promoted_only_when_the_real_database_accepts_the_new_password_on_every_backend() {
    each_backend!(rotation_is_promoted_only_when_the_real_database_accepts_the_new_password);
}

// ------------------------------------------------------------- 2. previous-version grace

async fn previous_version_resolves_only_within_its_grace(b: Backend) {
    let (srv, _cfg) = quiet_server(b, &[]).await;
    let ws = srv.ws_id.clone();
    let (pw1, pw2) = (format!("pw1-{}", random_hex(6)), format!("pw2-{}", random_hex(6)));
    let cred = create(&srv, "/v1/credentials", db_cred("prod-grace", &ws, "loader", &pw1)).await;
    let conn = create(
        &srv,
        "/v1/connections",
        pg_conn(
            "grace-db",
            &ws,
            json!({"host": "db.internal", "database": "analytics"}),
            Some(&cred),
        ),
    )
    .await;
    let w = worker(&srv).await;
    let settings_path = format!("/v1/orgs/{}/settings", srv.org_id);
    assert_eq!(
        srv.get(&settings_path, &srv.admin).await.ok(200)["previous_grace_hours"],
        0
    );

    srv.post(
        &format!("/v1/credentials/{cred}/versions"),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": pw2}, "mode": "stage"}),
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
    let promoted_at = now_secs();

    // Default grace 0: only the current version resolves.
    let r = resolve(&srv, &w, &conn, "run-cur", None, None).await.ok(200);
    assert_eq!(r["credential"]["version"], 2);
    assert_eq!(r["credential"]["fields"]["password"], pw2.as_str());
    let refused = resolve(&srv, &w, &conn, "run-prev-0", None, Some(1))
        .await
        .problem(409, "version_not_resolvable");
    assert!(!refused.to_string().contains(&pw1));
    // Pinning the current version is always fine.
    assert_eq!(
        resolve(&srv, &w, &conn, "run-pin", None, Some(2)).await.ok(200)["credential"]["version"],
        2
    );

    // Two hours of grace: the previous version resolves.
    let s = srv
        .patch(&settings_path, &srv.admin, json!({"previous_grace_hours": 2}))
        .await
        .ok(200);
    assert_eq!(s["previous_grace_hours"], 2);
    let r = resolve(&srv, &w, &conn, "run-prev-2", None, Some(1)).await.ok(200);
    assert_eq!(r["credential"]["version"], 1);
    assert_eq!(r["credential"]["fields"]["password"], pw1.as_str());
    let last = audit(&srv, "action=connection.resolve").await;
    assert_eq!(
        last.last().unwrap()["details"]["version"],
        1,
        "the audit event names the version"
    );

    // Within the grace a pass leaves it alone; after it the pass revokes it.
    let t = tick(&srv, promoted_at + HOUR);
    assert_eq!(t["leader"], true, "{t}");
    assert_eq!(t["grace_revoked"], 0, "{t}");
    assert_eq!(resolve(&srv, &w, &conn, "run-prev-1h", None, Some(1)).await.status, 200);
    let t = tick(&srv, promoted_at + 3 * HOUR);
    assert_eq!(t["grace_revoked"], 1, "{t}");
    assert_eq!(
        version_states(&srv, &cred).await,
        vec![(1, "revoked".to_owned()), (2, "current".to_owned())]
    );
    resolve(&srv, &w, &conn, "run-prev-3h", None, Some(1))
        .await
        .problem(409, "version_not_resolvable");
    assert_eq!(
        resolve(&srv, &w, &conn, "run-cur-3h", None, None).await.ok(200)["credential"]["version"],
        2
    );
    assert_eq!(tick(&srv, promoted_at + 3 * HOUR)["grace_revoked"], 0, "revoked once");
    let revokes = audit(&srv, &format!("target_id={cred}&action=credential.version.revoke")).await;
    assert_eq!(revokes.len(), 1, "{revokes:#?}");
    assert_eq!(revokes[0]["actor_kind"], "system");
    assert_eq!(revokes[0]["actor_id"], Value::Null);
    assert_eq!(revokes[0]["details"]["version"], 1);
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_version_resolves_only_within_its_grace_and_the_scheduler_revokes_it_after_on_every_backend() {
    each_backend!(previous_version_resolves_only_within_its_grace);
}

// ----------------------------------------------------------------- 3. scheduler alerts

async fn scheduler_alerts_fire_once_at_controlled_times(b: Backend) {
    let (srv, _cfg) = quiet_server(b, &[]).await;
    let ws = srv.ws_id.clone();
    let t0 = now_secs();
    let mk = |name: &str, extra: Value| {
        let mut body = db_cred(name, &ws, "loader", "pw");
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let e40 = create(
        &srv,
        "/v1/credentials",
        mk("exp-40", json!({"expires_at": rfc3339(t0 + 40 * DAY)})),
    )
    .await;
    let e20 = create(
        &srv,
        "/v1/credentials",
        mk("exp-20", json!({"expires_at": rfc3339(t0 + 20 * DAY)})),
    )
    .await;
    let e5 = create(
        &srv,
        "/v1/credentials",
        mk("exp-5", json!({"expires_at": rfc3339(t0 + 5 * DAY)})),
    )
    .await;
    let gone = create(
        &srv,
        "/v1/credentials",
        mk("expired", json!({"expires_at": rfc3339(t0 - DAY)})),
    )
    .await;
    let rot = create(
        &srv,
        "/v1/credentials",
        mk("rotate-daily", json!({"rotation_period_days": 1})),
    )
    .await;
    let r14 = create(
        &srv,
        "/v1/credentials",
        mk("rotate-fortnightly", json!({"rotation_period_days": 14})),
    )
    .await;
    let quiet = create(&srv, "/v1/credentials", mk("no-dates", json!({}))).await;
    let conn = create(
        &srv,
        "/v1/connections",
        pg_conn(
            "expired-db",
            &ws,
            json!({"host": "db.internal", "database": "x"}),
            Some(&gone),
        ),
    )
    .await;
    let w = worker(&srv).await;

    let expiring = |c: &str, d: u32| format!("credential.expiring {c} {d}d");
    let expired = |c: &str| format!("credential.expired {c}");
    let overdue = |c: &str| format!("credential.rotation_overdue {c}");
    let due_soon = |c: &str, d: u32| format!("credential.rotation_due {c} {d}d");

    // Now: 20 days left crosses 30; 5 days left crosses 30 and 7 (only 7 fires); the expired
    // one. No rotation warning yet: the daily one has no threshold shorter than its period, the
    // fortnightly one is 14 days away.
    let t = tick(&srv, t0 + 60);
    assert_eq!(t["leader"], true);
    assert_eq!(
        alerts(&t),
        sorted(&[expiring(&e20, 30), expiring(&e5, 7), expired(&gone)]),
        "{t}"
    );
    assert_eq!(t["grace_revoked"], 0);
    assert_eq!(t["purged"], json!([]));
    assert_eq!(
        alerts(&tick(&srv, t0 + 60)),
        Vec::<String>::new(),
        "a second pass at the same time"
    );
    assert_eq!(
        alerts(&tick(&srv, t0 + 2 * HOUR)),
        Vec::<String>::new(),
        "nothing new crossed"
    );

    // Day 11: 40 → 29 days left crosses 30; the 5-day one expired; the daily rotation is
    // overdue; the fortnightly one is due in 3 days (crosses 7).
    let t = tick(&srv, t0 + 11 * DAY);
    assert_eq!(
        alerts(&t),
        sorted(&[expiring(&e40, 30), expired(&e5), overdue(&rot), due_soon(&r14, 7)]),
        "{t}"
    );
    assert_eq!(alerts(&tick(&srv, t0 + 11 * DAY)), Vec::<String>::new());

    // A new version of the overdue credential starts a new period, overdue again a day later.
    srv.post(
        &format!("/v1/credentials/{rot}/versions"),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": "pw-2"}, "mode": "replace"}),
    )
    .await
    .ok(201);
    // Day 13 + 1 h: 20 → 7 days minus an hour left crosses 7. Four passes at once raise it
    // (and the new overdue) exactly once between them.
    let reports = ticks_at_once(&srv, t0 + 13 * DAY + HOUR, 4);
    let all: Vec<String> = reports.iter().flat_map(alerts).collect();
    assert_eq!(
        sorted(&all),
        sorted(&[expiring(&e20, 7), overdue(&rot), due_soon(&r14, 1)]),
        "{reports:?}"
    );
    assert!(reports.iter().any(|r| r["leader"] == true), "{reports:?}");
    // Day 19 + 1 h: under a day left crosses 1; the fortnightly rotation is overdue.
    let t = tick(&srv, t0 + 19 * DAY + HOUR);
    assert_eq!(alerts(&t), sorted(&[expiring(&e20, 1), overdue(&r14)]), "{t}");
    assert_eq!(alerts(&tick(&srv, t0 + 19 * DAY + HOUR)), Vec::<String>::new());
    // Day 21: the 20-day one expires.
    assert_eq!(alerts(&tick(&srv, t0 + 21 * DAY)), vec![expired(&e20)]);

    // The audit log holds exactly these, by the system.
    let mut seen: Vec<String> = Vec::new();
    for action in [
        "credential.expiring",
        "credential.expired",
        "credential.rotation_due",
        "credential.rotation_overdue",
    ] {
        for e in audit(&srv, &format!("action={action}")).await {
            assert_eq!(e["actor_kind"], "system", "{e}");
            assert_eq!(e["actor_id"], Value::Null, "{e}");
            assert_eq!(e["outcome"], "success", "{e}");
            assert_eq!(e["target_type"], "credential", "{e}");
            assert_eq!(e["org_id"], srv.org_id.as_str(), "{e}");
            assert_eq!(e["workspace_id"], ws.as_str(), "{e}");
            let target = st(&e["target_id"]);
            seen.push(match action {
                "credential.expiring" => expiring(&target, e["details"]["threshold_days"].as_u64().unwrap() as u32),
                "credential.expired" => expired(&target),
                "credential.rotation_due" => due_soon(&target, e["details"]["threshold_days"].as_u64().unwrap() as u32),
                _ => overdue(&target),
            });
        }
    }
    assert_eq!(
        sorted(&seen),
        sorted(&[
            expiring(&e20, 30),
            expiring(&e20, 7),
            expiring(&e20, 1),
            expiring(&e5, 7),
            expiring(&e40, 30),
            expired(&gone),
            expired(&e5),
            expired(&e20),
            due_soon(&r14, 7),
            due_soon(&r14, 1),
            overdue(&rot),
            overdue(&rot),
            overdue(&r14),
        ])
    );
    assert!(!seen.iter().any(|s| s.contains(&quiet)));
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);

    // The expired credential does not resolve, unless the expired grace covers it.
    let refused = resolve(&srv, &w, &conn, "run-expired", None, None)
        .await
        .problem(409, "credential_expired");
    assert!(!refused.to_string().contains("\"pw\""));
    let settings_path = format!("/v1/orgs/{}/settings", srv.org_id);
    srv.patch(&settings_path, &srv.admin, json!({"expired_grace_hours": 48}))
        .await
        .ok(200);
    assert_eq!(
        resolve(&srv, &w, &conn, "run-grace", None, None).await.ok(200)["credential"]["id"],
        gone.as_str()
    );
    srv.patch(&settings_path, &srv.admin, json!({"expired_grace_hours": 12}))
        .await
        .ok(200);
    resolve(&srv, &w, &conn, "run-grace-over", None, None)
        .await
        .problem(409, "credential_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_passes_at_chosen_times_raise_each_expiry_and_rotation_alert_exactly_once_on_every_backend() {
    each_backend!(scheduler_alerts_fire_once_at_controlled_times);
}

// ------------------------------------------------------------------------------ 4. purge

/// `(version, kek_id, wrapped_key, ciphertext)` of every version, read straight from the store.
type RawVersion = (i64, Option<String>, Option<Vec<u8>>, Option<Vec<u8>>);

fn raw_versions(srv: &Server, cred: &str) -> Vec<RawVersion> {
    let sql = "SELECT version, kek_id, wrapped_key, ciphertext FROM credential_versions WHERE credential_id = $1 ORDER BY version";
    match srv.backend {
        Backend::Sqlite => {
            let c =
                rusqlite::Connection::open_with_flags(srv.sqlite_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let mut stmt = c.prepare(&sql.replace("$1", "?1")).unwrap();
            let rows = stmt
                .query_map([cred], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<Vec<RawVersion>, _>>()
                .unwrap();
            drop(stmt);
            c.close().unwrap();
            rows
        }
        Backend::Postgres => {
            let (u, cred) = (srv.pg.as_ref().unwrap().url.clone(), cred.to_owned());
            common::off_runtime(move || {
                let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
                c.query(sql, &[&cred])
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect()
            })
        }
    }
}

/// Every file of the data directory, as bytes.
fn data_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            // A file may vanish between listing and reading (the WAL on close).
            if let Ok(bytes) = std::fs::read(e.path()) {
                out.push((e.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
    }
    out
}

/// Secret material to search the data directory for: `(item, chunk)`. Every key and
/// ciphertext is cut into 16-byte chunks, so a blob split across SQLite pages (a large
/// ciphertext spills into overflow pages) is still found piece by piece; 16 random bytes
/// never occur by chance.
fn secret_needles(versions: &[RawVersion], canaries: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (v, _, wrapped, ct) in versions {
        for (what, blob) in [("wrapped_key", wrapped), ("ciphertext", ct)] {
            let blob = blob
                .as_ref()
                .unwrap_or_else(|| panic!("live version {v} has no {what}"));
            for (i, chunk) in blob.chunks(16).enumerate() {
                if chunk.len() >= 12 {
                    out.push((format!("v{v} {what}[{}..]", i * 16), chunk.to_vec()));
                }
            }
        }
    }
    for c in canaries {
        out.push((format!("canary {c}"), c.as_bytes().to_vec()));
    }
    out
}

/// Which needles occur in which data file: `(item, file)`. One pass over each file: every
/// needle is at least 12 bytes long, so each position's next 12 bytes are looked up among the
/// needles' first 12 and a candidate is compared in full (a naive search of each of the ~1,500
/// chunks through every file took most of this suite's two minutes).
fn found_in_files(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    const K: usize = 12;
    let mut by_prefix: std::collections::HashMap<&[u8], Vec<usize>> = std::collections::HashMap::new();
    for (i, (what, n)) in needles.iter().enumerate() {
        assert!(n.len() >= K, "needle {what} is shorter than {K} bytes");
        by_prefix.entry(&n[..K]).or_default().push(i);
    }
    let mut hits = Vec::new();
    for (name, bytes) in data_files(dir) {
        let mut seen = vec![false; needles.len()];
        for (pos, w) in bytes.windows(K).enumerate() {
            if let Some(ids) = by_prefix.get(w) {
                for &i in ids {
                    seen[i] = seen[i] || bytes[pos..].starts_with(&needles[i].1);
                }
            }
        }
        for (i, s) in seen.iter().enumerate() {
            if *s {
                hits.push((needles[i].0.clone(), name.clone()));
            }
        }
    }
    hits
}

/// The items (`v1 wrapped_key`, `v2 ciphertext`, …) among `hits`, deduplicated.
fn items(hits: &[(String, String)]) -> Vec<String> {
    let mut v: Vec<String> = hits
        .iter()
        .map(|(what, file)| format!("{} in {file}", what.split('[').next().unwrap()))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// SQLite: checks the search works — every key and ciphertext is in the files before a purge
/// (and the plaintext canaries are not).
fn assert_findable(srv: &Server, needles: &[(String, Vec<u8>)]) {
    if srv.backend != Backend::Sqlite {
        return;
    }
    let hits = found_in_files(srv.data.path(), needles);
    let mut wanted: Vec<&str> = needles
        .iter()
        .filter(|(w, _)| !w.starts_with("canary"))
        .map(|(w, _)| w.split('[').next().unwrap())
        .collect();
    wanted.dedup();
    for w in wanted {
        assert!(
            hits.iter().any(|(h, _)| h.starts_with(&format!("{w}["))),
            "{w} not found in the data directory before the purge: {:?}",
            items(&hits)
        );
    }
    assert!(
        !hits.iter().any(|(h, _)| h.starts_with("canary")),
        "plaintext on disk: {:?}",
        items(&hits)
    );
}

/// PostgreSQL: the file node of `credential_versions` (VACUUM FULL gives it a new one).
fn pg_relfilenode(srv: &Server) -> i64 {
    let u = srv.pg.as_ref().unwrap().url.clone();
    common::off_runtime(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        c.query_one(
            "SELECT relfilenode::bigint FROM pg_class WHERE relname = 'credential_versions' AND relkind = 'r'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
    })
}

/// Asserts every version's key material is gone from the rows (and, on SQLite, every byte of
/// it from every file of the data directory).
fn assert_shredded(srv: &Server, cred: &str, versions: usize, needles: &[(String, Vec<u8>)], when: &str) {
    let after = raw_versions(srv, cred);
    assert_eq!(after.len(), versions, "{when}: the version rows stay as tombstones");
    for (v, kek, wrapped, ct) in &after {
        assert!(
            kek.is_none() && wrapped.is_none() && ct.is_none(),
            "{when}: version {v} keeps key material (kek_id {kek:?}, wrapped_key set: {}, ciphertext set: {})",
            wrapped.is_some(),
            ct.is_some()
        );
    }
    if srv.backend == Backend::Sqlite {
        let hits = found_in_files(srv.data.path(), needles);
        assert!(
            hits.is_empty(),
            "{when}: recoverable bytes left in the data directory: {:?}",
            items(&hits)
        );
    }
}

async fn purge_leaves_no_recoverable_bytes(b: Backend) {
    let (mut srv, _cfg) = quiet_server(b, &[]).await;
    let ws = srv.ws_id.clone();
    let canary1 = format!("canary-{}", random_hex(16));
    // The second version is large: on SQLite its ciphertext spills into overflow pages, on
    // PostgreSQL into TOAST.
    let canary2 = format!("canary-{}", random_hex(12_000));
    let cred = create(&srv, "/v1/credentials", db_cred("prod-shred", &ws, "loader", &canary1)).await;
    srv.post(
        &format!("/v1/credentials/{cred}/versions"),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": canary2}, "mode": "stage"}),
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
    // A bystander credential must survive every purge untouched.
    let keep = create(&srv, "/v1/credentials", db_cred("prod-keep", &ws, "loader", "keep-pw")).await;
    let conn = create(
        &srv,
        "/v1/connections",
        pg_conn(
            "shred-db",
            &ws,
            json!({"host": "db.internal", "database": "x"}),
            Some(&cred),
        ),
    )
    .await;

    let before = raw_versions(&srv, &cred);
    assert_eq!(before.len(), 2);
    let needles = secret_needles(&before, &[&canary1, &canary2[..48]]);
    assert_findable(&srv, &needles);

    // Refusals: no reason, not an admin, still attached.
    let purge = |reason: &str| format!("/v1/credentials/{cred}?purge=true&reason={reason}");
    srv.delete(&format!("/v1/credentials/{cred}?purge=true"), &srv.admin)
        .await
        .problem(422, "reason_required");
    srv.delete(&purge("%20%20"), &srv.admin)
        .await
        .problem(422, "reason_required");
    // A reason beyond the documented 1,024 characters is refused with or without purge
    // (schemathesis: a soft delete used to ignore it and answer 200).
    let long = "r".repeat(1025);
    srv.delete(&format!("/v1/credentials/{cred}?reason={long}"), &srv.admin)
        .await
        .problem(422, "too_long");
    srv.delete(&purge(&long), &srv.admin).await.problem(422, "too_long");
    for role in ["integration_engineer", "builder", "auditor", "viewer", "worker"] {
        let t = srv.user_with_role(role).await;
        srv.delete(&purge("leaked"), &t).await.problem(403, "forbidden");
    }
    srv.delete(&purge("leaked"), &srv.admin)
        .await
        .problem(409, "credential_in_use");
    assert_eq!(raw_versions(&srv, &cred), before, "a refused purge changes nothing");

    srv.delete(&format!("/v1/connections/{conn}/credential"), &srv.admin)
        .await
        .ok(200);
    let node_before = (b == Backend::Postgres).then(|| pg_relfilenode(&srv));
    let p = srv.delete(&purge("leaked%20in%20a%20ticket"), &srv.admin).await.ok(200);
    assert_eq!(p["credential_id"], cred.as_str());
    assert_eq!(p["versions_destroyed"], 2);
    assert!(p["purged_at"].as_str().is_some_and(|s| s.ends_with('Z')), "{p}");
    let got = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert_eq!(got["status"], "purged");
    srv.delete(&purge("again"), &srv.admin)
        .await
        .problem(409, "already_purged");
    let ev = audit(&srv, &format!("target_id={cred}&action=credential.purge")).await;
    let denied = ev.iter().filter(|e| e["outcome"] == "denied").count();
    assert_eq!(denied, 5, "the five refused purges are audited: {ev:#?}");
    let ev: Vec<&Value> = ev.iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["actor_kind"], "user");
    assert_eq!(ev[0]["details"]["reason"], "leaked in a ticket");
    assert_eq!(ev[0]["details"]["versions_destroyed"], 2);
    if let Some(n) = node_before {
        assert_ne!(pg_relfilenode(&srv), n, "VACUUM FULL credential_versions did not run");
    }
    assert_shredded(&srv, &cred, 2, &needles, "after the purge");
    // The bystander is intact and readable.
    let k = raw_versions(&srv, &keep);
    assert!(k[0].2.is_some() && k[0].3.is_some());
    assert_eq!(
        srv.get(&format!("/v1/credentials/{keep}"), &srv.admin).await.ok(200)["status"],
        "active"
    );

    // After the recovery window, the scheduler purges a soft-deleted credential.
    let canary3 = format!("canary-{}", random_hex(16));
    let later = create(&srv, "/v1/credentials", db_cred("prod-later", &ws, "loader", &canary3)).await;
    let later_before = raw_versions(&srv, &later);
    let later_needles = secret_needles(&later_before, &[&canary3]);
    assert_findable(&srv, &later_needles);
    let d = srv
        .delete(&format!("/v1/credentials/{later}"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(d["status"], "pending_deletion");
    let deleted_at = now_secs();
    let t = tick(&srv, deleted_at + 6 * DAY);
    assert_eq!(t["purged"], json!([]), "inside the 7-day window: {t}");
    assert_eq!(raw_versions(&srv, &later), later_before);
    let node_before = (b == Backend::Postgres).then(|| pg_relfilenode(&srv));
    let t = tick(&srv, deleted_at + 8 * DAY);
    assert_eq!(t["purged"], json!([later]), "{t}");
    assert_eq!(
        srv.get(&format!("/v1/credentials/{later}"), &srv.admin).await.ok(200)["status"],
        "purged"
    );
    if let Some(n) = node_before {
        assert_ne!(pg_relfilenode(&srv), n, "VACUUM FULL credential_versions did not run");
    }
    assert_shredded(&srv, &later, 1, &later_needles, "after the scheduled purge");
    let ev = audit(&srv, &format!("target_id={later}&action=credential.purge")).await;
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["actor_kind"], "system");
    assert_eq!(tick(&srv, deleted_at + 9 * DAY)["purged"], json!([]), "purged once");
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);

    // Nothing comes back once the server has stopped (and SQLite closed its files).
    srv.stop();
    assert_shredded(&srv, &cred, 2, &needles, "after the server stopped");
    assert_shredded(&srv, &later, 1, &later_needles, "after the server stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_destroys_every_version_and_leaves_no_recoverable_key_bytes_on_every_backend() {
    each_backend!(purge_leaves_no_recoverable_bytes);
}

// ------------------------------------------------------------------------ 5. offboarding

async fn offboarding(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let (alice, alice_t) = srv
        .principal(&org, "user", "alice", &[("integration_engineer", Scope::Org(&org))])
        .await;
    let alice_t2 = st(&srv
        .post(
            "/v1/tokens",
            &srv.admin,
            json!({"principal_id": alice, "name": "laptop"}),
        )
        .await
        .ok(201)["token"]);
    let (keeper, _) = srv.principal(&org, "service_account", "keeper", &[]).await;
    let (bob, _) = srv
        .principal(&org, "user", "bob", &[("viewer", Scope::Org(&org))])
        .await;
    let (org_admin, org_admin_t) = srv
        .principal(&org, "user", "org-admin", &[("admin", Scope::Org(&org))])
        .await;
    let (_, engineer_t) = srv
        .principal(&org, "user", "carol", &[("integration_engineer", Scope::Org(&org))])
        .await;
    let c1 = id(&srv.database_credential(&alice_t, "alice-db", "pw-a").await);
    let c2 = create(
        &srv,
        "/v1/credentials",
        json!({"name": "alice-shared", "type": "password", "org_id": org, "environment": "prod", "fields": {"password": "pw-b"}}),
    )
    .await;
    // c2 belongs to the instance admin; alice created (and owns) c1 and c3.
    let c3 = id(&srv
        .post(
            "/v1/credentials",
            &alice_t,
            json!({"name": "alice-key", "type": "password", "workspace_id": ws, "environment": "dev", "fields": {"password": "pw-c"}}),
        )
        .await
        .ok(201));
    let instance_admin = st(&srv.get("/v1/me", &srv.admin).await.ok(200)["id"]);

    let path = format!("/v1/principals/{alice}/offboard");
    // Refusals.
    srv.post(&path, &engineer_t, json!({})).await.problem(403, "forbidden");
    srv.post(&path, &org_admin_t, json!({"transfer_to": bob}))
        .await
        .problem(422, "not_a_service_account");
    srv.post(&format!("/v1/principals/{org_admin}/offboard"), &org_admin_t, json!({}))
        .await
        .problem(409, "cannot_offboard_self");
    srv.post(
        &format!("/v1/principals/{instance_admin}/offboard"),
        &org_admin_t,
        json!({}),
    )
    .await
    .problem(403, "forbidden");
    srv.get("/v1/me", &srv.admin).await.ok(200);
    srv.get("/v1/me", &alice_t).await.ok(200);

    // The offboarding.
    let o = srv
        .post(&path, &org_admin_t, json!({"transfer_to": keeper}))
        .await
        .ok(200);
    assert_eq!(o["principal_id"], alice.as_str());
    assert_eq!(o["tokens_revoked"], 2);
    assert_eq!(o["disabled"], true);
    assert_eq!(o["transferred_to"], keeper.as_str());
    let listed: Vec<(String, Value)> = o["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (st(&c["id"]), c["relation"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (c1.clone(), json!(["owner", "creator"])),
            (c3.clone(), json!(["owner", "creator"]))
        ],
        "{o}"
    );
    assert_eq!(o["credentials"][0]["name"], "alice-db");
    assert_eq!(o["credentials"][0]["type"], "database");

    // Alice can no longer authenticate, with either token or a new one.
    srv.get("/v1/me", &alice_t).await.problem(401, "unauthenticated");
    srv.get("/v1/me", &alice_t2).await.problem(401, "unauthenticated");
    srv.get("/v1/credentials", &alice_t)
        .await
        .problem(401, "unauthenticated");
    let fresh = srv.post("/v1/tokens", &srv.admin, json!({"principal_id": alice})).await;
    if fresh.status == 201 {
        srv.get("/v1/me", &st(&fresh.body["token"]))
            .await
            .problem(401, "unauthenticated");
    } else {
        assert!((400..500).contains(&fresh.status), "{}", fresh.text);
    }
    assert_eq!(
        srv.get(&format!("/v1/principals/{alice}"), &srv.admin).await.ok(200)["disabled"],
        true
    );

    // Ownership moved; the creator stays on the record; others' credentials are untouched.
    for c in [&c1, &c3] {
        let got = srv.get(&format!("/v1/credentials/{c}"), &srv.admin).await.ok(200);
        assert_eq!(got["owner_id"], keeper.as_str(), "{got}");
        assert_eq!(got["created_by"], alice.as_str());
    }
    let got = srv.get(&format!("/v1/credentials/{c2}"), &srv.admin).await.ok(200);
    assert_eq!(got["owner_id"], instance_admin.as_str());

    // Audited.
    let ev = audit(&srv, &format!("target_id={alice}&action=principal.offboard")).await;
    let ok: Vec<&Value> = ev.iter().filter(|e| e["outcome"] == "success").collect();
    assert_eq!(ok.len(), 1, "{ev:#?}");
    assert_eq!(ok[0]["actor_id"], org_admin.as_str());
    assert_eq!(ok[0]["details"]["tokens_revoked"], 2);
    let denied = audit(&srv, &format!("target_id={instance_admin}&action=principal.offboard")).await;
    assert!(
        denied.iter().any(|e| e["outcome"] == "denied"),
        "the refused offboarding of the instance admin is audited: {denied:#?}"
    );
    let transfers = audit(&srv, "action=credential.transfer").await;
    let moved: Vec<(String, String, String)> = transfers
        .iter()
        .map(|e| (st(&e["target_id"]), st(&e["details"]["from"]), st(&e["details"]["to"])))
        .collect();
    assert_eq!(
        sorted(&moved.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>()),
        sorted(&[
            format!("{:?}", (c1.clone(), alice.clone(), keeper.clone())),
            format!("{:?}", (c3.clone(), alice.clone(), keeper.clone())),
        ])
    );

    // Without a transfer, ownership stays and the listing still says what the principal had.
    let (dave, dave_t) = srv
        .principal(&org, "user", "dave", &[("integration_engineer", Scope::Org(&org))])
        .await;
    let c4 = id(&srv.database_credential(&dave_t, "dave-db", "pw-d").await);
    let o = srv
        .post(&format!("/v1/principals/{dave}/offboard"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_eq!(o["tokens_revoked"], 1);
    assert_eq!(o["transferred_to"], Value::Null);
    assert_eq!(o["credentials"][0]["id"], c4.as_str());
    srv.get("/v1/me", &dave_t).await.problem(401, "unauthenticated");
    assert_eq!(
        srv.get(&format!("/v1/credentials/{c4}"), &srv.admin).await.ok(200)["owner_id"],
        dave.as_str()
    );
    assert_eq!(srv.get("/v1/audit/verify", &srv.admin).await.ok(200)["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_locks_the_principal_out_and_moves_ownership_but_never_touches_the_instance_admin_on_every_backend()
{
    each_backend!(offboarding);
}

// ---------------------------------------------------------------------- 6. incident CLI

async fn incident_disable(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let ws2 = create(&srv, "/v1/workspaces", json!({"org_id": org, "name": "team-b"})).await;
    let secret = format!("pw-{}", random_hex(8));
    // An organization-wide credential, used from two workspaces.
    let cred = create(
        &srv,
        "/v1/credentials",
        json!({"name": "prod-leaked", "type": "database", "org_id": org, "environment": "prod",
               "fields": {"username": "loader", "password": secret}}),
    )
    .await;
    let other = create(&srv, "/v1/credentials", db_cred("prod-fine", &ws, "loader", "fine")).await;
    let cfg = json!({"host": "db.internal", "database": "x"});
    let a = create(
        &srv,
        "/v1/connections",
        pg_conn("leaked-a", &ws, cfg.clone(), Some(&cred)),
    )
    .await;
    let bc = create(
        &srv,
        "/v1/connections",
        pg_conn("leaked-b", &ws2, cfg.clone(), Some(&cred)),
    )
    .await;
    let c = create(
        &srv,
        "/v1/connections",
        pg_conn("fine-c", &ws, cfg.clone(), Some(&other)),
    )
    .await;
    let p1 = create(
        &srv,
        "/v1/pipelines",
        json!({"name": "load-a", "workspace_id": ws, "connection_ids": [a, c]}),
    )
    .await;
    let p2 = create(
        &srv,
        "/v1/pipelines",
        json!({"name": "load-b", "workspace_id": ws2, "connection_ids": [bc]}),
    )
    .await;
    let _p3 = create(
        &srv,
        "/v1/pipelines",
        json!({"name": "load-c", "workspace_id": ws, "connection_ids": [c]}),
    )
    .await;
    let (_, w) = srv
        .principal(&org, "service_account", "etl-worker", &[("worker", Scope::Org(&org))])
        .await;
    resolve(&srv, &w, &a, "run-before", Some(&p1), None).await.ok(200);
    resolve(&srv, &w, &bc, "run-before", Some(&p2), None).await.ok(200);

    let out = Command::new(common::bin())
        .args(["incident", "disable", &cred])
        .env("CREDVAULT_SERVER", &srv.base)
        .env("CREDVAULT_TOKEN", &srv.admin)
        .env_remove("CREDVAULT_CONFIG")
        .env_remove("CREDVAULT_TOKEN_FILE")
        .output()
        .expect("cannot run credvault incident disable");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "incident disable failed: {stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![format!("{p1}\tload-a\t{ws}"), format!("{p2}\tload-b\t{ws2}")],
        "stdout lists the affected pipelines; stderr: {stderr}"
    );
    assert!(stderr.contains("detached from 2 connection(s)"), "{stderr}");
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret));

    // Disabled, detached everywhere; the unrelated connection keeps its credential.
    let got = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert_eq!(got["status"], "disabled");
    for conn in [&a, &bc] {
        let cv = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200);
        assert_eq!(cv["credential_id"], Value::Null, "{cv}");
    }
    assert_eq!(
        srv.get(&format!("/v1/connections/{c}"), &srv.admin).await.ok(200)["credential_id"],
        other.as_str()
    );
    let usage = srv
        .get(&format!("/v1/credentials/{cred}/usage"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(usage["connections"], json!([]), "{usage}");

    // No resolve hands the secret out any more: the connection has nothing attached, and the
    // disabled credential cannot be attached again.
    for (conn, pipe) in [(&a, Some(p1.as_str())), (&bc, Some(p2.as_str())), (&a, None)] {
        let r = resolve(&srv, &w, conn, "run-after", pipe, None).await;
        assert!(!r.text.contains(&secret));
        r.problem(409, "no_credential");
    }
    srv.call(
        "PUT",
        &format!("/v1/connections/{a}/credential"),
        Some(&srv.admin),
        Some(json!({"credential_id": cred})),
    )
    .await
    .problem(409, "credential_not_active");
    resolve(&srv, &w, &c, "run-fine", None, None).await.ok(200);

    let actions: Vec<String> = audit(&srv, &format!("target_id={cred}"))
        .await
        .iter()
        .map(|e| st(&e["action"]))
        .collect();
    assert!(actions.contains(&"credential.disable".to_owned()), "{actions:?}");
    assert!(actions.contains(&"credential.detach_all".to_owned()), "{actions:?}");
    let detaches = audit(&srv, "action=connection.detach").await;
    assert_eq!(detaches.len(), 2, "{detaches:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_disable_through_the_cli_stops_every_resolve_detaches_everywhere_and_prints_the_pipelines_on_every_backend()
 {
    each_backend!(incident_disable);
}

// ------------------------------------------------- 7. purged is final; partial failures

async fn purged_credential_stays_purged(b: Backend) {
    let (srv, _cfg) = quiet_server(b, &[]).await;
    let ws = srv.ws_id.clone();
    let cred = create(&srv, "/v1/credentials", db_cred("prod-gone", &ws, "loader", "pw-gone")).await;
    srv.delete(&format!("/v1/credentials/{cred}?purge=true&reason=leaked"), &srv.admin)
        .await
        .ok(200);
    let view = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert_eq!(view["status"], "purged");
    let states = version_states(&srv, &cred).await;
    assert_eq!(states, vec![(1, "revoked".to_owned())]);

    // Every operation that would bring the tombstone back (a status other than `purged`, or a
    // new version with fresh key material) is refused.
    let c = format!("/v1/credentials/{cred}");
    let fresh = json!({"username": "loader", "password": "pw-new"});
    let attempts: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", format!("{c}/disable"), Some(json!({}))),
        ("POST", format!("{c}/enable"), Some(json!({}))),
        ("DELETE", c.clone(), None),
        ("POST", format!("{c}/restore"), Some(json!({}))),
        (
            "POST",
            format!("{c}/versions"),
            Some(json!({"fields": fresh, "mode": "stage"})),
        ),
        (
            "POST",
            format!("{c}/versions"),
            Some(json!({"fields": fresh, "mode": "replace"})),
        ),
        ("POST", format!("{c}/rotate"), Some(json!({"fields": fresh}))),
        ("POST", format!("{c}/versions/1/promote"), Some(json!({}))),
    ];
    let mut accepted = Vec::new();
    for (method, path, body) in attempts {
        let r = srv.call(method, &path, Some(&srv.admin), body).await;
        if r.status != 409 {
            let now = srv.get(&c, &srv.admin).await.ok(200);
            accepted.push(format!(
                "{method} {path} -> {} (status now {:?}, current_version {}, {} version(s))",
                r.status,
                now["status"],
                now["current_version"],
                now["versions"].as_array().map_or(0, Vec::len)
            ));
        }
    }
    let after = srv.get(&c, &srv.admin).await.ok(200);
    assert!(
        accepted.is_empty(),
        "a purged credential was changed (every one of these should be 409):\n{}\nfinal: status {:?}, versions {}",
        accepted.join("\n"),
        after["status"],
        after["versions"]
    );
    assert_eq!(after["status"], "purged");
    assert_eq!(version_states(&srv, &cred).await, states);
    for (v, kek, wrapped, ct) in raw_versions(&srv, &cred) {
        assert!(
            kek.is_none() && wrapped.is_none() && ct.is_none(),
            "version {v} has key material"
        );
    }
    // It cannot be attached or resolved either.
    srv.post(
        "/v1/connections",
        &srv.admin,
        pg_conn(
            "gone-db",
            &ws,
            json!({"host": "db.internal", "database": "x"}),
            Some(&cred),
        ),
    )
    .await
    .problem(409, "credential_not_active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_credential_can_never_be_disabled_enabled_restored_or_given_a_new_version_on_every_backend() {
    each_backend!(purged_credential_stays_purged);
}

/// SQLite: an outside reader (a backup, a long report) holds a read snapshot across a purge,
/// longer than the server's 5 s busy timeout, so the truncating checkpoint cannot finish
/// while it lasts. Once the reader has gone, no copy of the key material may remain: the store
/// must finish the scrub (wait, retry, or on the next pass or shutdown) instead of leaving the
/// old WAL frames behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_overlapping_a_long_read_still_leaves_no_copy_once_the_reader_is_gone() {
    let (mut srv, _cfg) = quiet_server(Backend::Sqlite, &[]).await;
    let ws = srv.ws_id.clone();
    let canary = format!("canary-{}", random_hex(16));
    let cred = create(&srv, "/v1/credentials", db_cred("prod-busy", &ws, "loader", &canary)).await;
    let needles = secret_needles(&raw_versions(&srv, &cred), &[&canary]);
    assert_findable(&srv, &needles);

    let path = srv.sqlite_path();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let rd = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        rd.execute_batch("BEGIN").unwrap();
        let n: i64 = rd
            .query_row("SELECT count(*) FROM credential_versions", [], |r| r.get(0))
            .unwrap();
        assert!(n >= 1);
        ready_tx.send(()).unwrap();
        // Longer than the server's busy timeout (5 s).
        std::thread::sleep(std::time::Duration::from_secs(7));
        rd.execute_batch("COMMIT").unwrap();
    });
    ready_rx.recv().unwrap();
    let r = srv
        .delete(&format!("/v1/credentials/{cred}?purge=true&reason=leaked"), &srv.admin)
        .await;
    reader.join().unwrap();
    eprintln!("purge answered {} {}", r.status, r.text);
    // The reader is gone: a scheduler pass, then a clean shutdown.
    tick(&srv, now_secs());
    srv.stop();
    let hits = found_in_files(srv.data.path(), &needles);
    assert!(
        hits.is_empty(),
        "the purge answered {} but the key material is still in the data directory after the reader finished, a scheduler pass and a shutdown: {:?}",
        r.status,
        items(&hits)
    );
}

async fn offboarding_never_transfers_to_the_principal_itself(b: Backend) {
    let srv = Server::start(b).await;
    let org = srv.org_id.clone();
    let (bot, bot_t) = srv
        .principal(
            &org,
            "service_account",
            "loader-bot",
            &[("integration_engineer", Scope::Org(&org))],
        )
        .await;
    let (keeper, _) = srv.principal(&org, "service_account", "keeper", &[]).await;
    let c = id(&srv.database_credential(&bot_t, "bot-db", "pw").await);
    let path = format!("/v1/principals/{bot}/offboard");
    // Handing ownership to the account being disabled would leave it with no live owner.
    let r = srv.post(&path, &srv.admin, json!({"transfer_to": bot})).await;
    let body = r.clone();
    assert_eq!(
        r.status, 422,
        "POST {path} {{\"transfer_to\": \"{bot}\"}} must be refused: {}",
        r.text
    );
    assert_eq!(body.body["field"], "transfer_to", "{}", body.text);
    // Refused as a whole: the account still works and still owns its credential.
    srv.get("/v1/me", &bot_t).await.ok(200);
    assert_eq!(
        srv.get(&format!("/v1/credentials/{c}"), &srv.admin).await.ok(200)["owner_id"],
        bot.as_str()
    );
    // To another service account it works.
    let o = srv
        .post(&path, &srv.admin, json!({"transfer_to": keeper}))
        .await
        .ok(200);
    assert_eq!(o["transferred_to"], keeper.as_str());
    assert_eq!(
        srv.get(&format!("/v1/credentials/{c}"), &srv.admin).await.ok(200)["owner_id"],
        keeper.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_refuses_to_transfer_ownership_to_the_principal_being_offboarded_on_every_backend() {
    each_backend!(offboarding_never_transfers_to_the_principal_itself);
}

async fn refused_rotation_changes_nothing(b: Backend) {
    let srv = Server::start(b).await;
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let cred = create(&srv, "/v1/credentials", db_cred("prod-rot", &ws, "loader", "pw-1")).await;
    create(
        &srv,
        "/v1/connections",
        pg_conn(
            "rot-db",
            &ws,
            json!({"host": "db.internal", "database": "x"}),
            Some(&cred),
        ),
    )
    .await;
    // A policy where integration engineers create and rotate credentials but only admins
    // attach them and run Test connection.
    srv.patch(
        &format!("/v1/orgs/{org}/settings"),
        &srv.admin,
        json!({"role_policy": {"credential.create": ["admin", "integration_engineer"],
                               "credential.attach": ["admin"], "credential.reveal": []}}),
    )
    .await
    .ok(200);
    let engineer = srv.user_with_role("integration_engineer").await;
    let path = format!("/v1/credentials/{cred}/rotate");
    let r = srv
        .post(
            &path,
            &engineer,
            json!({"fields": {"username": "loader", "password": "pw-2"}}),
        )
        .await;
    let states = version_states(&srv, &cred).await;
    match r.status {
        // Allowed (the route documents credential.create): a normal, tested rotation. The
        // target is unreachable, so the new version stays pending.
        200 => {
            assert_eq!(r.body["version"], 2, "{}", r.text);
            assert_eq!(r.body["promoted"], false, "{}", r.text);
            assert_eq!(states, vec![(1, "current".to_owned()), (2, "pending".to_owned())]);
        }
        // Refused: then nothing may have been staged.
        403 => {
            assert_eq!(
                states,
                vec![(1, "current".to_owned())],
                "POST {path} answered 403 {} but left a staged version behind",
                r.text
            );
            let created: Vec<Value> = audit(&srv, &format!("target_id={cred}&action=credential.version.create"))
                .await
                .into_iter()
                .filter(|e| e["outcome"] == "success")
                .collect();
            assert!(
                created.is_empty(),
                "a refused rotation is audited as a created version: {created:#?}"
            );
        }
        s => panic!("POST {path}: unexpected {s} {}", r.text),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_refused_for_lack_of_a_permission_stages_nothing_on_every_backend() {
    each_backend!(refused_rotation_changes_nothing);
}

async fn keep_carries_secrets_over(b: Backend) {
    let srv = Server::start(b).await;
    let ws = srv.ws_id.clone();
    let key = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
    let host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICvetwQHN4E+0aOrtmeDkwI+VH/a+yYcE0w5L9CiiEzE bastion";
    let mut body = db_cred("tunnelled", &ws, "loader", "old-db-password");
    // The bastion is a closed local port, so the rotation's test fails at once.
    body["fields"]["ssh_tunnel"] = json!({"host": "127.0.0.1", "port": 1, "user": "jump",
        "private_key_pem": key, "passphrase": "tunnel-passphrase", "known_host_key": host_key});
    let cred = create(&srv, "/v1/credentials", body).await;
    let conn = create(
        &srv,
        "/v1/connections",
        pg_conn(
            "tunnelled-db",
            &ws,
            json!({"host": "db.internal", "database": "dwh"}),
            Some(&cred),
        ),
    )
    .await;
    let w = worker(&srv).await;
    let path = format!("/v1/credentials/{cred}/versions");

    // Refusals first: nothing is staged by any of them.
    for (keep, fields, field, code) in [
        (
            json!(["ssh_tunnel"]),
            json!({"username": "loader", "password": "p", "ssh_tunnel": {}}),
            "keep[0]",
            "kept_and_given",
        ),
        (
            json!(["private_key_pem"]),
            json!({"username": "loader", "password": "p"}),
            "keep[0]",
            "not_in_current_version",
        ),
        (
            json!(["ssh_tunnel", "ssh_tunnel"]),
            json!({"username": "loader", "password": "p"}),
            "keep[1]",
            "invalid_keep",
        ),
        (
            json!("ssh_tunnel"),
            json!({"username": "loader", "password": "p"}),
            "keep",
            "invalid_field",
        ),
        // Kept secrets go nowhere new: not with another user name, not through another bastion.
        (
            json!(["ssh_tunnel"]),
            json!({"username": "someone-else", "password": "p"}),
            "keep",
            "kept_with_changed_fields",
        ),
        (
            json!(["password"]),
            json!({"username": "loader", "ssh_tunnel": {"host": "evil.example", "port": 22, "user": "x",
                   "private_key_pem": key, "known_host_key": host_key}}),
            "keep",
            "kept_with_changed_fields",
        ),
    ] {
        let r = srv
            .post(&path, &srv.admin, json!({"fields": fields, "keep": keep}))
            .await;
        assert_eq!(r.status, 422, "{keep}: {}", r.text);
        assert_eq!(
            (r.body["field"].as_str(), r.body["code"].as_str()),
            (Some(field), Some(code)),
            "{keep}: {}",
            r.text
        );
    }
    assert_eq!(
        version_states(&srv, &cred).await.len(),
        1,
        "no refused request staged a version"
    );

    // Only the password changes; the tunnel and its secrets are carried over.
    let r = srv
        .post(&path, &srv.admin, json!({"fields": {"username": "loader", "password": "new-db-password"}, "keep": ["ssh_tunnel"], "mode": "replace"}))
        .await
        .ok(201);
    assert_eq!(r["version"], 2);
    let got = resolve(&srv, &w, &conn, "run-keep", None, None).await.ok(200);
    let f = &got["credential"]["fields"];
    assert_eq!(got["credential"]["version"], 2);
    assert_eq!(f["password"], "new-db-password");
    assert_eq!(f["ssh_tunnel"]["private_key_pem"], key);
    assert_eq!(f["ssh_tunnel"]["passphrase"], "tunnel-passphrase");
    assert_eq!(f["ssh_tunnel"]["host"], "127.0.0.1");
    let c = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert!(
        c["secret_fields_set"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "ssh_tunnel.private_key_pem"),
        "{c}"
    );

    // The one-call rotation keeps too; the audit names the kept fields, never a value.
    let r = srv
        .post(
            &format!("/v1/credentials/{cred}/rotate"),
            &srv.admin,
            json!({"fields": {"username": "loader", "password": "third-db-password"}, "keep": ["ssh_tunnel"]}),
        )
        .await;
    assert!(r.status == 200, "{}", r.text);
    let events = audit(&srv, "action=credential.version.create").await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e["details"]["kept_fields"] == json!(["ssh_tunnel"])),
        "{events:#?}"
    );
    let text = json!(events).to_string();
    for s in ["tunnel-passphrase", "MAMCAQA", "new-db-password", "third-db-password"] {
        assert!(!text.contains(s), "{s} in the audit");
    }

    // `fields: null` is what the document allows for a variant without required fields; with
    // `keep` it is no fields given (schemathesis: it used to answer 422 "must be an object").
    let mi = create(
        &srv,
        "/v1/credentials",
        json!({"name": "az-mi", "type": "azure", "variant": "managed_identity", "workspace_id": srv.ws_id,
               "environment": "prod", "fields": {"client_id": "0f8fad5b-d9cb-469f-a165-70867728950e"}}),
    )
    .await;
    srv.post(
        &format!("/v1/credentials/{mi}/versions"),
        &srv.admin,
        json!({"fields": null, "keep": ["client_id"], "mode": "replace"}),
    )
    .await
    .ok(201);
    let got = srv.get(&format!("/v1/credentials/{mi}"), &srv.admin).await.ok(200);
    assert_eq!(got["current_version"], 2, "{got}");
    assert_eq!(
        got["fields"]["client_id"], "0f8fad5b-d9cb-469f-a165-70867728950e",
        "{got}"
    );
}

#[tokio::test]
async fn a_new_version_can_keep_the_current_ssh_tunnel_without_entering_its_key_again_on_every_backend() {
    for b in common::backends() {
        keep_carries_secrets_over(b).await;
    }
}

async fn untestable_dependents(b: Backend) {
    let srv = Server::start(b).await;
    let ws = srv.ws_id.clone();
    let cred = create(
        &srv,
        "/v1/credentials",
        db_cred("snow-loader", &ws, "loader", "pw-one-1"),
    )
    .await;
    let conn = create(
        &srv,
        "/v1/connections",
        json!({"name": "prod-snowflake", "workspace_id": ws, "environment": "prod", "kind": "snowflake",
               "config": {"account": "acme-prod"}, "credential_id": cred}),
    )
    .await;
    let path = format!("/v1/credentials/{cred}/rotate");
    // By default a connection that cannot be tested here blocks the promotion.
    let r = srv
        .post(
            &path,
            &srv.admin,
            json!({"fields": {"username": "loader", "password": "pw-two-2"}}),
        )
        .await
        .ok(200);
    assert_eq!(
        (r["promoted"].clone(), r["state"].clone()),
        (json!(false), json!("pending")),
        "{r}"
    );
    assert_eq!(r["failed_connections"], json!([conn]));
    assert_eq!(r["untested_connections"], json!([conn]));
    assert_eq!(r["tests"]["results"][0]["error"]["code"], "unsupported", "{r}");
    // Asked to, it promotes and says which connections nobody tested.
    let r = srv
        .post(
            &path,
            &srv.admin,
            json!({"fields": {"username": "loader", "password": "pw-three-3"}, "allow_untestable": true}),
        )
        .await
        .ok(200);
    assert_eq!(
        (r["promoted"].clone(), r["state"].clone()),
        (json!(true), json!("current")),
        "{r}"
    );
    assert_eq!(r["failed_connections"], json!([]));
    assert_eq!(r["untested_connections"], json!([conn]));
    assert_eq!(
        version_states(&srv, &cred).await.last().unwrap(),
        &(3, "current".to_owned())
    );
    let promoted = audit(&srv, &format!("action=credential.version.promote&target_id={cred}")).await;
    assert_eq!(promoted.len(), 1, "{promoted:#?}");
    assert_eq!(
        promoted[0]["details"]["untested_connections"],
        json!([conn]),
        "the audit names what nobody tested"
    );
    assert_eq!(promoted[0]["details"]["previous_version"], 1);

    // A testable kind whose test fails still blocks, even when untestable ones are allowed.
    let pg = create(
        &srv,
        "/v1/connections",
        pg_conn(
            "closed-pg",
            &ws,
            json!({"host": "127.0.0.1", "port": 1, "database": "x"}),
            Some(&cred),
        ),
    )
    .await;
    let r = srv
        .post(
            &path,
            &srv.admin,
            json!({"fields": {"username": "loader", "password": "pw-four-4"}, "allow_untestable": true}),
        )
        .await
        .ok(200);
    assert_eq!(r["promoted"], false, "{r}");
    assert_eq!(r["failed_connections"], json!([pg]), "{r}");
    assert_eq!(r["untested_connections"], json!([conn]), "{r}");
}

#[tokio::test]
async fn a_rotation_may_be_told_not_to_wait_for_connections_nobody_can_test_here_on_every_backend() {
    for b in common::backends() {
        untestable_dependents(b).await;
    }
}

async fn version_last_resolved(b: Backend) {
    let srv = Server::start(b).await;
    let ws = srv.ws_id.clone();
    let cred = create(&srv, "/v1/credentials", db_cred("orders", &ws, "loader", "pw-v1-111")).await;
    let conn = create(
        &srv,
        "/v1/connections",
        pg_conn(
            "orders-db",
            &ws,
            json!({"host": "db.internal", "database": "x"}),
            Some(&cred),
        ),
    )
    .await;
    let w = worker(&srv).await;
    srv.patch(
        &format!("/v1/orgs/{}/settings", srv.org_id),
        &srv.admin,
        json!({"previous_grace_hours": 24}),
    )
    .await
    .ok(200);
    let last = |c: &Value, n: usize| c["versions"][n]["last_resolved_at"].clone();
    let c = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert_eq!(last(&c, 0), Value::Null, "never resolved yet");
    resolve(&srv, &w, &conn, "run-1", None, None).await.ok(200);
    let c = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    let v1_first = last(&c, 0);
    assert!(v1_first.is_string(), "{c}");
    // Rotate: v2 current, v1 previous (in its grace). A worker still on v1 shows on v1.
    srv.post(
        &format!("/v1/credentials/{cred}/versions"),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": "pw-v2-222"}}),
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
    let c = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert_eq!(last(&c, 1), Value::Null, "v2 not resolved yet");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    resolve(&srv, &w, &conn, "run-old", None, Some(1)).await.ok(200);
    let c = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert!(last(&c, 0).as_str() > v1_first.as_str(), "v1 resolved again: {c}");
    assert_eq!(last(&c, 1), Value::Null, "resolving v1 does not stamp v2");
    resolve(&srv, &w, &conn, "run-new", None, None).await.ok(200);
    let c = srv.get(&format!("/v1/credentials/{cred}"), &srv.admin).await.ok(200);
    assert!(last(&c, 1).is_string(), "{c}");
}

#[tokio::test]
async fn each_version_shows_when_a_resolve_last_returned_it_on_every_backend() {
    for b in common::backends() {
        version_last_resolved(b).await;
    }
}
