//! credvault's load generator and seeding tool for `scripts/bench`.
//!
//! `load` drives one scenario over real HTTP with `C` connections for a duration, in one of two
//! modes: `closed` (each connection sends its next request when the previous one returned —
//! measures capacity) or `open --rate R` (requests are scheduled at fixed intended times,
//! R per second overall; latency is measured from the *intended* send time, so a stall that
//! delays later requests shows up in their latency — coordinated-omission aware, like wrk2).
//! `raw-commit` measures single-writer durable commits of the same store. `seed` bulk-inserts
//! filler credentials and references for the scale runs. `hello` serves a bare axum "hello"
//! (the same HTTP stack as credvault, nothing behind it): the floor `wrk` measures.

// A command-line tool: it reports on its terminal.
#![allow(clippy::disallowed_macros)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive a scenario and print one JSON line of results.
    Load {
        #[arg(long)]
        url: String,
        /// Bearer token (admin for create/rotate/list, worker for resolve).
        #[arg(long, env = "BENCH_TOKEN")]
        token: String,
        /// floor | resolve | create | rotate | list
        #[arg(long)]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Open loop at this many requests per second (default: closed loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Resolve: comma-separated connection IDs (spread over connections).
        #[arg(long, default_value = "")]
        connections: String,
        /// Create: the workspace. Rotate: comma-separated credential IDs (one per connection).
        #[arg(long, default_value = "")]
        target: String,
        /// List: query string.
        #[arg(long, default_value = "")]
        query: String,
        /// Seconds of warm-up not recorded.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// Single-writer durable commits per second of the store (baseline for group commit).
    RawCommit {
        #[arg(long)]
        sqlite: Option<String>,
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
    },
    /// Serve a bare axum "hello" on LISTEN until killed (the HTTP floor).
    Hello {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Bulk-insert filler credentials (with versions) and connection/pipeline references.
    Seed {
        #[arg(long)]
        sqlite: Option<String>,
        #[arg(long)]
        postgres: Option<String>,
        #[arg(long)]
        org: String,
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        credentials: u64,
        /// Connections + pipeline references in total (about 3 per credential for the 1 M run).
        #[arg(long, default_value_t = 0)]
        references: u64,
    },
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(clippy::too_many_arguments)]
async fn load(
    url: String,
    token: String,
    scenario: String,
    concurrency: usize,
    duration: f64,
    rate: Option<f64>,
    connections: String,
    target: String,
    query: String,
    warmup: f64,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()?;
    let conns: Vec<String> = connections
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let targets: Vec<String> = target.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if scenario == "resolve" && conns.is_empty() {
        bail!("resolve needs --connections");
    }
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let warm = start + Duration::from_secs_f64(warmup);
    let end = warm + Duration::from_secs_f64(duration);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url, token, scenario) = (client.clone(), url.clone(), token.clone(), scenario.clone());
        let (conns, targets, query, counter, errors) = (
            conns.clone(),
            targets.clone(),
            query.clone(),
            counter.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u64> = Vec::with_capacity(100_000);
            let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
            let mut intended = start + interval.map(|i| i.mul_f64(worker as f64 / concurrency as f64)).unwrap_or_default();
            let mut n: u64 = 0;
            loop {
                if interval.is_some() {
                    let now = Instant::now();
                    if intended > now {
                        tokio::time::sleep_until(intended.into()).await;
                    }
                } else {
                    intended = Instant::now();
                }
                if intended >= end {
                    break;
                }
                n += 1;
                let req = match scenario.as_str() {
                    "floor" => client.get(format!("{url}/v1/ping")),
                    "resolve" => {
                        let c = &conns[(worker + n as usize) % conns.len()];
                        client.post(format!("{url}/v1/resolve")).json(&json!({"connection_id": c, "run_id": format!("bench-{worker}-{n}")}))
                    }
                    "create" => {
                        let i = counter.fetch_add(1, Ordering::Relaxed);
                        client.post(format!("{url}/v1/credentials")).json(&json!({
                            "name": format!("bench-{}-{i}", std::process::id()), "type": "password", "workspace_id": targets.first().cloned().unwrap_or_default(),
                            "environment": "dev", "fields": {"password": format!("bench-secret-{i}")}
                        }))
                    }
                    "rotate" => {
                        let c = &targets[worker % targets.len()];
                        client.post(format!("{url}/v1/credentials/{c}/versions")).json(&json!({"fields": {"password": format!("rotated-{n}")}, "mode": "replace"}))
                    }
                    "list" => client.get(format!("{url}/v1/credentials?{query}")),
                    // A flood of bad tokens: a fresh garbage token each time; 401 and 429 are
                    // the expected answers.
                    "badauth" => client.get(format!("{url}/v1/me")),
                    other => panic!("unknown scenario {other}"),
                };
                let bad = scenario == "badauth";
                let tok = if bad { format!("cvt_bench_bad_{worker}_{n}") } else { token.clone() };
                let r = req.bearer_auth(&tok).send().await;
                let ok = match r {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let ok = if bad { s == 401 || s == 429 } else { resp.status().is_success() };
                        let _ = resp.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                let done = Instant::now();
                if intended >= warm {
                    if ok {
                        lat.push(done.duration_since(intended).as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(i) = interval {
                    intended += i;
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    all.sort_unstable();
    let requests = all.len() as u64;
    Ok(json!({
        "scenario": scenario, "concurrency": concurrency, "mode": if rate.is_some() { "open" } else { "closed" },
        "target_rate": rate, "duration_s": duration, "requests": requests, "errors": errors.load(Ordering::Relaxed),
        "throughput": requests as f64 / duration,
        "p50_us": percentile(&all, 0.50), "p90_us": percentile(&all, 0.90), "p99_us": percentile(&all, 0.99),
        "p999_us": percentile(&all, 0.999), "max_us": all.last().copied().unwrap_or(0),
    }))
}

fn raw_commit(sqlite: Option<String>, postgres: Option<String>, duration: f64) -> anyhow::Result<Value> {
    let d = Duration::from_secs_f64(duration);
    if let Some(path) = sqlite {
        let c = rusqlite::Connection::open(&path)?;
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, v BLOB)")?;
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < d {
            c.execute("INSERT INTO raw (v) VALUES (?1)", [vec![7u8; 200]])?;
            n += 1;
        }
        return Ok(json!({"store": "sqlite", "commits_per_s": n as f64 / t.elapsed().as_secs_f64()}));
    }
    if let Some(url) = postgres {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
        c.batch_execute(
            "SET synchronous_commit = on; CREATE TABLE IF NOT EXISTS raw (id BIGSERIAL PRIMARY KEY, v BYTEA)",
        )?;
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < d {
            c.execute("INSERT INTO raw (v) VALUES ($1)", &[&vec![7u8; 200]])?;
            n += 1;
        }
        return Ok(json!({"store": "postgres", "commits_per_s": n as f64 / t.elapsed().as_secs_f64()}));
    }
    bail!("give --sqlite PATH or --postgres URL")
}

/// A filler ID: the prefix and 26 characters of the base32 alphabet derived from `i`.
fn filler_id(prefix: &str, i: u64) -> String {
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut s = String::from(prefix);
    let mut x = i;
    let mut body = [b'a'; 26];
    for b in body.iter_mut().rev() {
        *b = A[(x % 32) as usize];
        x /= 32;
    }
    body[0] = b'z'; // never collides with random IDs of real rows in practice
    s.push_str(std::str::from_utf8(&body).unwrap_or("zzzzzzzzzzzzzzzzzzzzzzzzzz"));
    s
}

fn seed(
    sqlite: Option<String>,
    postgres: Option<String>,
    org: &str,
    ws: &str,
    credentials: u64,
    references: u64,
) -> anyhow::Result<Value> {
    let t = Instant::now();
    let now: i64 = 1_700_000_000_000_000;
    let envs = ["dev", "staging", "prod"];
    if let Some(path) = sqlite {
        let mut c = rusqlite::Connection::open(&path)?;
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        let batch = 50_000u64;
        let mut i = 0u64;
        while i < credentials {
            let tx = c.transaction()?;
            {
                let mut ins_c = tx.prepare(
                    "INSERT INTO credentials (id, org_id, workspace_id, scope_key, name, type, variant, environment, labels, status, current_version, created_at, created_by, updated_at, allowed_destinations) \
                     VALUES (?1, ?2, ?3, ?3, ?4, 'password', NULL, ?5, '{\"system\":\"filler\"}', 'active', 1, ?6, 'usr_bench', ?6, '[]')",
                )?;
                let mut ins_v = tx.prepare(
                    "INSERT INTO credential_versions (credential_id, version, state, public_fields, secret_fields_set, created_at, created_by, state_changed_at) \
                     VALUES (?1, 1, 'current', '{}', '[\"password\"]', ?2, 'usr_bench', ?2)",
                )?;
                let mut ins_l = tx.prepare(
                    "INSERT INTO credential_labels (credential_id, key, value) VALUES (?1, 'system', 'filler')",
                )?;
                for j in i..(i + batch).min(credentials) {
                    let id = filler_id("cred_", j);
                    ins_c.execute(rusqlite::params![
                        id,
                        org,
                        ws,
                        format!("filler-{j}"),
                        envs[(j % 3) as usize],
                        now
                    ])?;
                    ins_v.execute(rusqlite::params![id, now])?;
                    ins_l.execute(rusqlite::params![id])?;
                }
            }
            tx.commit()?;
            i += batch;
        }
        let mut k = 0u64;
        while k < references {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare(
                    "INSERT INTO connections (id, org_id, workspace_id, name, environment, kind, config, credential_id, created_at, created_by, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, 'dev', 'postgres', '{\"host\":\"db\",\"database\":\"x\",\"port\":5432}', ?5, ?6, 'usr_bench', ?6)",
                )?;
                for j in k..(k + batch).min(references) {
                    ins.execute(rusqlite::params![
                        filler_id("conn_", j),
                        org,
                        ws,
                        format!("filler-conn-{j}"),
                        filler_id("cred_", j % credentials.max(1)),
                        now
                    ])?;
                }
            }
            tx.commit()?;
            k += batch;
        }
        c.execute_batch("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")?;
        return Ok(
            json!({"store": "sqlite", "credentials": credentials, "references": references, "seconds": t.elapsed().as_secs_f64()}),
        );
    }
    if let Some(url) = postgres {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
        c.batch_execute(&format!(
            "INSERT INTO credentials (id, org_id, workspace_id, scope_key, name, type, variant, environment, labels, status, current_version, created_at, created_by, updated_at, allowed_destinations) \
             SELECT 'cred_z' || lpad(to_hex(i), 25, 'a'), '{org}', '{ws}', '{ws}', 'filler-' || i, 'password', NULL, (ARRAY['dev','staging','prod'])[1 + i % 3], \
             '{{\"system\":\"filler\"}}', 'active', 1, {now}, 'usr_bench', {now}, '[]' FROM generate_series(0, {} - 1) i;\
             INSERT INTO credential_versions (credential_id, version, state, public_fields, secret_fields_set, created_at, created_by, state_changed_at) \
             SELECT 'cred_z' || lpad(to_hex(i), 25, 'a'), 1, 'current', '{{}}', '[\"password\"]', {now}, 'usr_bench', {now} FROM generate_series(0, {} - 1) i;\
             INSERT INTO credential_labels (credential_id, key, value) SELECT 'cred_z' || lpad(to_hex(i), 25, 'a'), 'system', 'filler' FROM generate_series(0, {} - 1) i;\
             INSERT INTO connections (id, org_id, workspace_id, name, environment, kind, config, credential_id, created_at, created_by, updated_at) \
             SELECT 'conn_z' || lpad(to_hex(i), 25, 'a'), '{org}', '{ws}', 'filler-conn-' || i, 'dev', 'postgres', '{{\"host\":\"db\"}}', \
             'cred_z' || lpad(to_hex(i % {}), 25, 'a'), {now}, 'usr_bench', {now} FROM generate_series(0, {} - 1) i;\
             ANALYZE;",
            credentials,
            credentials,
            credentials,
            credentials.max(1),
            references
        ))
        .context("bulk insert")?;
        return Ok(
            json!({"store": "postgres", "credentials": credentials, "references": references, "seconds": t.elapsed().as_secs_f64()}),
        );
    }
    bail!("give --sqlite PATH or --postgres URL")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let v = match cli.cmd {
        Cmd::Load {
            url,
            token,
            scenario,
            concurrency,
            duration,
            rate,
            connections,
            target,
            query,
            warmup,
        } => {
            load(
                url,
                token,
                scenario,
                concurrency,
                duration,
                rate,
                connections,
                target,
                query,
                warmup,
            )
            .await?
        }
        Cmd::Hello { listen } => {
            let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
            let l = tokio::net::TcpListener::bind(listen).await?;
            println!("listening on http://{}", l.local_addr()?);
            axum::serve(l, app).await?;
            return Ok(());
        }
        Cmd::RawCommit {
            sqlite,
            postgres,
            duration,
        } => tokio::task::spawn_blocking(move || raw_commit(sqlite, postgres, duration)).await??,
        Cmd::Seed {
            sqlite,
            postgres,
            org,
            workspace,
            credentials,
            references,
        } => {
            tokio::task::spawn_blocking(move || seed(sqlite, postgres, &org, &workspace, credentials, references))
                .await??
        }
    };
    println!("{v}");
    Ok(())
}
