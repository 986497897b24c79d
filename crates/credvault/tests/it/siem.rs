//! Audit forwarding to SIEMs and the spike detectors, over real HTTP against the real binary,
//! on SQLite and PostgreSQL. Sinks are declared only in the server's TOML file
//! (`--config`, `[[audit_sinks]]`), so every test here writes one.
//!
//! - syslog (feature `server-tests`, a real rsyslogd started by `scripts/lib/rsyslog.sh`): RFC
//!   5424 over UDP and over TCP with octet counting, in JSON and in CEF, parsed line by line;
//!   the sequence numbers of `credential.create` match the API's journal;
//! - a signed webhook (a hand-rolled HTTP/1.1 receiver in this file verifying the
//!   `x-credvault-signature: sha256=<hex>` HMAC-SHA256 of every body): 10,000 events generated
//!   while the receiver answers 503 and then refuses connections all arrive once it is back,
//!   in order by `seq` (duplicates allowed and counted);
//! - `kill -9` of the server in the middle of forwarding loses nothing;
//! - tamper evidence: edited, deleted, reordered and inserted audit rows and exported JSONL
//!   lines are caught by `GET /v1/audit/verify`, `credvault audit verify` (through the server,
//!   `--offline` on the store, `--file` on an export);
//! - fail-closed: a blocking sink past `max_backlog` makes resolve, create and new versions
//!   answer `503 audit_unavailable` (reads keep working); `on_backlog_full = "alert"` keeps
//!   serving;
//! - the spike detectors fire once on a scripted burst and stay quiet below the threshold;
//! - a canary secret and a canary token appear in no audit record, sink file, webhook body or
//!   syslog line;
//! - sink metrics.
//!
//! Webhooks here are plain HTTP; HTTPS webhooks and syslog over TLS are in `siem_tls.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{random_hex, st};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, Scope, Server, TempDir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ------------------------------------------------------------------------------- helpers

fn id(v: &Value) -> String {
    st(&v["id"])
}

/// A TOML basic string.
fn q(s: impl AsRef<str>) -> String {
    let s = s.as_ref();
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn qp(p: &Path) -> String {
    q(p.to_string_lossy())
}

/// A port nothing listens on (bound once, then released).
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = l.local_addr().unwrap().port();
    drop(l);
    p
}

/// Writes `body` (sink and alert tables) as the server's config file in `dir` and returns its
/// path. The scheduler is off so that the journal holds only what a test does.
fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join(format!("credvault-{}.toml", random_hex(3)));
    std::fs::write(&path, format!("scheduler_interval_secs = 0\n\n{body}")).unwrap();
    path
}

/// Starts a fresh server on `b` with the config file `cfg` (passed after `serve`: `--config`
/// is a global flag) and extra `serve` arguments.
async fn start(b: Backend, cfg: &Path, extra: &[&str]) -> Server {
    let cfg = cfg.to_string_lossy().into_owned();
    let mut args = vec!["--config", cfg.as_str()];
    args.extend_from_slice(extra);
    Server::start_with(b, &args).await
}

/// Restarts `srv` (same data, same database) with the config file `cfg`.
async fn restart(srv: Server, cfg: &Path, extra: &[&str]) -> Server {
    let cfg = cfg.to_string_lossy().into_owned();
    let mut args = vec!["--config", cfg.as_str()];
    args.extend_from_slice(extra);
    srv.restart(&args, &[]).await
}

/// A polling deadline.
struct Deadline {
    until: Instant,
    what: String,
}

impl Deadline {
    fn new(secs: u64, what: impl Into<String>) -> Deadline {
        Deadline {
            until: Instant::now() + Duration::from_secs(secs),
            what: what.into(),
        }
    }
    /// Sleeps a little; panics with `detail` once the deadline passed.
    async fn tick(&self, detail: impl FnOnce() -> String) {
        if Instant::now() > self.until {
            panic!("timed out waiting for {}: {}", self.what, detail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every audit event of `chain` (`_instance` or an organization) matching `query`, oldest first.
async fn chain_events(srv: &Server, chain: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0i64;
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let path = format!("/v1/audit?org_id={chain}&limit=500&after_seq={after}{sep}{query}");
        let page = srv.get(&path, &srv.admin).await.ok(200);
        let items = page["items"].as_array().unwrap().clone();
        let n = items.len();
        if let Some(last) = items.last() {
            after = last["seq"].as_i64().unwrap();
        }
        out.extend(items);
        if n < 500 {
            return out;
        }
    }
}

/// Every event of the instance chain and of the default organization, by `seq`.
async fn journal(srv: &Server) -> BTreeMap<i64, Value> {
    let mut all = BTreeMap::new();
    for chain in ["_instance", srv.org_id.as_str()] {
        for e in chain_events(srv, chain, "").await {
            all.insert(e["seq"].as_i64().unwrap(), e);
        }
    }
    all
}

/// `n` requests with garbage tokens (`GET /v1/me`, 16 at a time): each feeds the spike
/// detector; the journal gets the first of the window in full and a summary for the rest.
async fn bad_auths(srv: &Server, tag: &str, n: usize) {
    let par = 16;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..par {
        let (http, base, tag) = (srv.http.clone(), srv.base.clone(), tag.to_owned());
        set.spawn(async move {
            let mut i = w;
            while i < n {
                let r = http
                    .get(format!("{base}/v1/me"))
                    .bearer_auth(format!("cvt_x{tag}{i}"))
                    .send()
                    .await
                    .expect("request failed");
                assert_eq!(r.status().as_u16(), 401);
                i += par;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// `n` audit events, fast: a viewer asking for the audit log is refused, and every refusal is
/// journaled. (Failed authentications no longer make one event each: they are coalesced per
/// address and window.)
async fn journal_events(srv: &Server, tag: &str, n: usize) {
    let org = srv.org_id.clone();
    let (_, viewer) = srv
        .principal(
            &org,
            "user",
            &format!("gen-{tag}-{}", random_hex(3)),
            &[("viewer", Scope::Org(&org))],
        )
        .await;
    let par = 16;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..par {
        let (http, base, viewer) = (srv.http.clone(), srv.base.clone(), viewer.clone());
        set.spawn(async move {
            let mut i = w;
            while i < n {
                let r = http
                    .get(format!("{base}/v1/audit"))
                    .bearer_auth(&viewer)
                    .send()
                    .await
                    .expect("request failed");
                assert_eq!(r.status().as_u16(), 403);
                i += par;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// A resolvable setup in the default workspace: a `database` credential holding `secret`, a
/// postgres connection using it, and a worker (service account) token.
struct Resolvable {
    cred: String,
    conn: String,
    worker: String,
}

async fn resolvable(srv: &Server, name: &str, secret: &str) -> Resolvable {
    let cred = id(&srv.database_credential(&srv.admin, name, secret).await);
    let conn = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": format!("{name}-conn"), "workspace_id": srv.ws_id, "environment": "prod",
                   "kind": "postgres", "config": {"host": "db.internal", "database": "analytics"},
                   "credential_id": cred}),
        )
        .await
        .ok(201));
    let (org, ws) = (srv.org_id.clone(), srv.ws_id.clone());
    let (_, worker) = srv
        .principal(
            &org,
            "service_account",
            &format!("{name}-worker"),
            &[("worker", Scope::Ws(&ws))],
        )
        .await;
    Resolvable { cred, conn, worker }
}

async fn resolve(srv: &Server, r: &Resolvable, run: &str) -> common::Resp {
    srv.post(
        "/v1/resolve",
        &r.worker,
        json!({"connection_id": r.conn, "run_id": run}),
    )
    .await
}

/// A metric's value for one sink, from the Prometheus text.
fn metric(text: &str, name: &str, sink: &str) -> Option<f64> {
    let prefix = format!("{name}{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

async fn metrics(srv: &Server) -> String {
    let r = srv.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.text
}

/// Sink health, as instance admins see it (`/readyz` says only ready or degraded).
async fn readyz(srv: &Server) -> Value {
    srv.get("/v1/audit/sinks", &srv.admin).await.ok(200)
}

/// JSON lines of a file sink (and its rotated files `.N`, oldest first). Unparseable lines are
/// returned separately.
fn read_json_sink(path: &Path) -> (Vec<Value>, Vec<String>) {
    let mut files = Vec::new();
    for n in (1..=50).rev() {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if p.exists() {
            files.push(p);
        }
    }
    files.push(path.to_owned());
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines().filter(|l| !l.is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v["seq"].is_i64() => ok.push(v),
                _ => bad.push(line.to_owned()),
            }
        }
    }
    (ok, bad)
}

/// At-least-once, in order: walks `seqs` in arrival order and returns the distinct ones and
/// how many were duplicates. Panics when a sequence number arrives for the first time below
/// one that already arrived (out of order).
#[track_caller]
fn in_order(what: &str, seqs: &[i64]) -> (BTreeSet<i64>, usize) {
    let mut seen = BTreeSet::new();
    let mut dups = 0;
    let mut max = i64::MIN;
    for (i, s) in seqs.iter().enumerate() {
        if !seen.insert(*s) {
            dups += 1;
            continue;
        }
        assert!(
            *s > max,
            "{what}: seq {s} arrived (position {i}) after seq {max}: out of order"
        );
        max = *s;
    }
    (seen, dups)
}

#[track_caller]
fn assert_has_all(what: &str, got: &BTreeSet<i64>, want: &BTreeMap<i64, Value>) {
    let missing: Vec<(i64, String)> = want
        .iter()
        .filter(|(s, _)| !got.contains(s))
        .map(|(s, e)| (*s, st(&e["action"])))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} events missing, first: {:?}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(20)]
    );
}

/// Finds the server's process (its command line names its data directory).
fn server_pid(srv: &Server) -> u32 {
    let needle = srv.data.path().to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "serve") && args.contains(&needle) {
            return pid;
        }
    }
    panic!("no credvault process serves {needle}");
}

fn kill9(pid: u32) {
    let s = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success(), "kill -KILL {pid} failed");
}

/// Runs the CLI with the server's address and a token in the environment.
fn cli(srv: &Server, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::bin())
        .args(args)
        .env("CREDVAULT_SERVER", &srv.base)
        .env("CREDVAULT_TOKEN", token)
        .env_remove("CREDVAULT_TOKEN_FILE")
        .env_remove("CREDVAULT_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("cannot run the credvault CLI")
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ------------------------------------------------------------------ SHA-256 and HMAC

const K256: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

/// SHA-256 (FIPS 180-4), enough to check the webhook's signatures without a dependency.
fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, wi) in K256.iter().zip(w.iter()) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(*k).wrapping_add(*wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn the_test_hmac_matches_the_published_vectors() {
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(&sha256(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // 56 bytes: the padding spills into a second block.
    assert_eq!(
        hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    // RFC 4231, test cases 2 and 6 (a key longer than a block).
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

// ------------------------------------------------------------- RFC 5424 and CEF parsers

/// One RFC 5424 message: `<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`.
#[derive(Debug, Clone)]
struct Syslog {
    pri: u16,
    version: u32,
    timestamp: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    structured_data: String,
    msg: String,
}

/// Parses an RFC 5424 message; `None` when the header is malformed.
fn parse_5424(line: &str) -> Option<Syslog> {
    let rest = line.strip_prefix('<')?;
    let (pri, rest) = rest.split_once('>')?;
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri: u16 = pri.parse().ok()?;
    if pri > 191 {
        return None;
    }
    let (version, rest) = rest.split_once(' ')?;
    let version: u32 = version.parse().ok()?;
    let mut fields = Vec::new();
    let mut rest = rest;
    for max in [64usize, 255, 48, 128, 32] {
        let (f, r) = rest.split_once(' ')?;
        if f.is_empty() || f.len() > max || !f.bytes().all(|b| (33..=126).contains(&b)) {
            return None;
        }
        fields.push(f.to_owned());
        rest = r;
    }
    // STRUCTURED-DATA: "-" or one or more [SD-ID param="value"...] elements.
    let (sd, msg) = if let Some(r) = rest.strip_prefix('-') {
        ("-".to_owned(), r)
    } else if rest.starts_with('[') {
        let b = rest.as_bytes();
        let (mut i, mut in_elem, mut in_quote) = (0, false, false);
        while i < b.len() {
            match b[i] {
                b'\\' if in_quote => i += 1,
                b'"' if in_elem => in_quote = !in_quote,
                b'[' if !in_elem => in_elem = true,
                b']' if in_elem && !in_quote => {
                    in_elem = false;
                    if b.get(i + 1) != Some(&b'[') {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if in_elem {
            return None;
        }
        (rest[..i].to_owned(), &rest[i..])
    } else {
        return None;
    };
    let msg = if msg.is_empty() { "" } else { msg.strip_prefix(' ')? };
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Some(Syslog {
        pri,
        version,
        timestamp: fields[0].clone(),
        hostname: fields[1].clone(),
        app_name: fields[2].clone(),
        procid: fields[3].clone(),
        msgid: fields[4].clone(),
        structured_data: sd,
        msg: msg.to_owned(),
    })
}

/// One CEF record.
#[derive(Debug, Clone)]
struct Cef {
    version: String,
    vendor: String,
    product: String,
    device_version: String,
    signature: String,
    name: String,
    severity: String,
    ext: BTreeMap<String, String>,
}

/// Parses `CEF:Version|Vendor|Product|Version|SignatureID|Name|Severity|Extension`: header
/// fields escape `\|` and `\\`; extension values escape `\=`, `\\`, `\n` and `\r`, and a key
/// starts after the last space before an unescaped `=`. `None` when malformed (an unescaped `=`
/// inside a value shows as a key that is not alphanumeric).
fn parse_cef(line: &str) -> Option<Cef> {
    let rest = line.strip_prefix("CEF:")?;
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.char_indices();
    let mut ext_start = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n @ ('|' | '\\'))) => cur.push(n),
                Some((_, n)) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => return None,
            },
            '|' => {
                header.push(std::mem::take(&mut cur));
                if header.len() == 7 {
                    ext_start = Some(i + 1);
                    break;
                }
            }
            c => cur.push(c),
        }
    }
    let ext_text = &rest[ext_start?..];
    let ext = parse_cef_extension(ext_text)?;
    Some(Cef {
        version: header[0].clone(),
        vendor: header[1].clone(),
        product: header[2].clone(),
        device_version: header[3].clone(),
        signature: header[4].clone(),
        name: header[5].clone(),
        severity: header[6].clone(),
        ext,
    })
}

fn parse_cef_extension(s: &str) -> Option<BTreeMap<String, String>> {
    let chars: Vec<char> = s.chars().collect();
    // Positions of unescaped '='.
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '=' => eqs.push(i),
            _ => {}
        }
        i += 1;
    }
    let mut out = BTreeMap::new();
    let mut keys: Vec<(usize, usize)> = Vec::new(); // (key start, '=' position)
    let mut prev_end = 0usize;
    for &eq in &eqs {
        let start = chars[prev_end..eq]
            .iter()
            .rposition(|c| *c == ' ')
            .map_or(prev_end, |p| prev_end + p + 1);
        if !keys.is_empty() && start == prev_end {
            return None; // "a=b=c": an unescaped '=' inside a value
        }
        keys.push((start, eq));
        prev_end = eq + 1;
    }
    for (n, (start, eq)) in keys.iter().enumerate() {
        let key: String = chars[*start..*eq].iter().collect();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let end = match keys.get(n + 1) {
            Some((next_start, _)) => next_start - 1, // the separating space
            None => chars.len(),
        };
        let raw = &chars[eq + 1..end.max(eq + 1)];
        let mut v = String::new();
        let mut j = 0;
        while j < raw.len() {
            if raw[j] == '\\' && j + 1 < raw.len() {
                match raw[j + 1] {
                    '=' => v.push('='),
                    '\\' => v.push('\\'),
                    'n' => v.push('\n'),
                    'r' => v.push('\r'),
                    other => {
                        v.push('\\');
                        v.push(other);
                    }
                }
                j += 2;
            } else {
                v.push(raw[j]);
                j += 1;
            }
        }
        if out.insert(key, v).is_some() {
            return None;
        }
    }
    if keys.is_empty() && !s.trim().is_empty() {
        return None;
    }
    Some(out)
}

#[test]
fn the_test_parsers_read_rfc5424_headers_and_cef_escapes() {
    let m = parse_5424("<85>1 2026-01-02T03:04:05.000006Z host1 credvault - credential.create - hello world").unwrap();
    assert_eq!(
        (m.pri, m.version, m.hostname.as_str(), m.app_name.as_str()),
        (85, 1, "host1", "credvault")
    );
    assert_eq!(m.timestamp, "2026-01-02T03:04:05.000006Z");
    assert_eq!((m.procid.as_str(), m.msgid.as_str()), ("-", "credential.create"));
    assert_eq!((m.structured_data.as_str(), m.msg.as_str()), ("-", "hello world"));
    let m = parse_5424(r#"<13>1 - h a 12 id [x@1 k="a\]b"][y@2 z="1"] msg"#).unwrap();
    assert_eq!(m.structured_data, r#"[x@1 k="a\]b"][y@2 z="1"]"#);
    assert_eq!(m.msg, "msg");
    assert!(parse_5424("<85> 1 x").is_none());
    assert!(parse_5424("<999>1 t h a - m - x").is_none());

    let c = parse_cef(
        r#"CEF:0|credvault|credvault|0.1|a\|b|a\|b|3|rt=1 act=x=y externalId=7 requestClientApplication=a\=b|c msg={"name":"x\=y z"} cs1="#,
    );
    assert!(c.is_none(), "an unescaped = in a value is malformed");
    let c = parse_cef(
        r#"CEF:0|credvault|credvault|0.1|a\|b|a\|b|3|rt=1 externalId=7 requestClientApplication=a\=b|c msg={"name":"x\=y z"} cs1="#,
    )
    .unwrap();
    assert_eq!(
        (
            c.version.as_str(),
            c.vendor.as_str(),
            c.product.as_str(),
            c.device_version.as_str()
        ),
        ("0", "credvault", "credvault", "0.1")
    );
    assert_eq!((c.signature.as_str(), c.name.as_str()), ("a|b", "a|b"));
    assert_eq!(c.severity, "3");
    assert_eq!(c.ext["externalId"], "7");
    assert_eq!(c.ext["requestClientApplication"], "a=b|c");
    assert_eq!(c.ext["msg"], r#"{"name":"x=y z"}"#);
    assert_eq!(c.ext["cs1"], "");
}

// ------------------------------------------------------------------ the webhook receiver

/// What the receiver does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HookMode {
    /// Verify, record, 200.
    Up,
    /// 503 without recording.
    Unavailable,
    /// 413 for any body holding this text (a receiver that refuses some event for good).
    RejectContaining(String),
    /// 413 for any batch of more than this many events (a receiver with a body limit).
    MaxEvents(usize),
}

struct HookState {
    mode: HookMode,
    /// Accepted events, in arrival order.
    events: Vec<Value>,
    /// Raw accepted bodies.
    bodies: Vec<String>,
    /// Requests whose signature did not verify (answered 401).
    bad_signatures: Vec<String>,
    /// Bodies that were not a well-formed batch (answered 400).
    malformed: Vec<String>,
    /// Requests answered 503.
    refused: usize,
    /// Delay before each answer.
    delay: Duration,
}

/// A webhook receiver on 127.0.0.1: hand-rolled HTTP/1.1 with keep-alive, checks
/// `x-credvault-signature: sha256=<hex HMAC-SHA256 of the body>` with the shared secret.
struct Hook {
    port: u16,
    secret: Arc<Vec<u8>>,
    state: Arc<Mutex<HookState>>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Hook {
    async fn start(secret: &[u8]) -> Hook {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(l, secret)
    }

    async fn start_on(port: u16, secret: &[u8]) -> Hook {
        let l = Self::bind(port).await;
        Self::on(l, secret)
    }

    async fn bind(port: u16) -> TcpListener {
        let d = Deadline::new(10, format!("port {port} to be free again"));
        loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => return l,
                Err(e) => d.tick(|| e.to_string()).await,
            }
        }
    }

    fn on(l: TcpListener, secret: &[u8]) -> Hook {
        let hook = Hook {
            port: l.local_addr().unwrap().port(),
            secret: Arc::new(secret.to_vec()),
            state: Arc::new(Mutex::new(HookState {
                mode: HookMode::Up,
                events: Vec::new(),
                bodies: Vec::new(),
                bad_signatures: Vec::new(),
                malformed: Vec::new(),
                refused: 0,
                delay: Duration::ZERO,
            })),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        hook.spawn(l);
        hook
    }

    fn spawn(&self, l: TcpListener) {
        let (state, secret, tasks) = (self.state.clone(), self.secret.clone(), self.tasks.clone());
        let t2 = tasks.clone();
        let h = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { break };
                let (state, secret) = (state.clone(), secret.clone());
                let c = tokio::spawn(async move { hook_conn(s, state, secret).await });
                t2.lock().unwrap().push(c.abort_handle());
            }
        });
        tasks.lock().unwrap().push(h.abort_handle());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn set_mode(&self, m: HookMode) {
        self.state.lock().unwrap().mode = m;
    }

    fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    /// Stops accepting and drops every open connection: the port refuses connections.
    fn close(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Listens on the same port again.
    async fn reopen(&self) {
        let l = Self::bind(self.port).await;
        self.spawn(l);
    }

    fn seqs(&self) -> Vec<i64> {
        self.state
            .lock()
            .unwrap()
            .events
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect()
    }

    fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    fn bodies(&self) -> Vec<String> {
        self.state.lock().unwrap().bodies.clone()
    }

    #[track_caller]
    fn assert_all_signed(&self) {
        let s = self.state.lock().unwrap();
        assert!(
            s.bad_signatures.is_empty(),
            "{} webhook requests had a bad signature, first: {}",
            s.bad_signatures.len(),
            s.bad_signatures[0]
        );
        assert!(
            s.malformed.is_empty(),
            "{} webhook bodies were not well-formed batches, first: {}",
            s.malformed.len(),
            s.malformed[0]
        );
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.close();
    }
}

/// Checks one request; answers (status, reason).
fn hook_handle(
    state: &Mutex<HookState>,
    secret: &[u8],
    request_line: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> (u16, &'static str) {
    let text = String::from_utf8_lossy(body).into_owned();
    let expected = format!("sha256={}", hex(&hmac_sha256(secret, body)));
    let mut s = state.lock().unwrap();
    if !request_line.starts_with("POST /hook ") {
        s.malformed.push(format!("request line `{request_line}`"));
        return (404, "Not Found");
    }
    if headers.get("x-credvault-signature") != Some(&expected) {
        s.bad_signatures.push(format!(
            "got {:?}, expected {expected}",
            headers.get("x-credvault-signature")
        ));
        return (401, "Unauthorized");
    }
    if s.mode == HookMode::Unavailable {
        s.refused += 1;
        return (503, "Service Unavailable");
    }
    if let HookMode::RejectContaining(bad) = &s.mode
        && text.contains(bad.as_str())
    {
        s.refused += 1;
        return (413, "Payload Too Large");
    }
    let Ok(batch) = serde_json::from_slice::<Value>(body) else {
        s.malformed.push(text);
        return (400, "Bad Request");
    };
    let Some(events) = batch["events"].as_array() else {
        s.malformed.push(text);
        return (400, "Bad Request");
    };
    if let HookMode::MaxEvents(max) = s.mode
        && events.len() > max
    {
        s.refused += 1;
        return (413, "Payload Too Large");
    }
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    let well_formed = !events.is_empty()
        && seqs.len() == events.len()
        && seqs.windows(2).all(|w| w[0] < w[1])
        && batch["first_seq"].as_i64() == seqs.first().copied()
        && batch["last_seq"].as_i64() == seqs.last().copied()
        && headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/json"));
    if !well_formed {
        s.malformed.push(text);
        return (400, "Bad Request");
    }
    s.events.extend(events.iter().cloned());
    s.bodies.push(text);
    (200, "OK")
}

async fn hook_conn(mut s: TcpStream, state: Arc<Mutex<HookState>>, secret: Arc<Vec<u8>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let total = head_end + 4 + len;
        while buf.len() < total {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end + 4..total].to_vec();
        buf.drain(..total);
        let delay = state.lock().unwrap().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (status, reason) = hook_handle(&state, &secret, &request_line, &headers, &body);
        let resp = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n");
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A webhook sink's TOML, with its secret file written into `dir`.
fn webhook_sink(dir: &Path, name: &str, url: &str, secret: &[u8], extra: &str) -> String {
    let secret_file = dir.join(format!("{name}.key"));
    std::fs::write(&secret_file, secret).unwrap();
    format!(
        "[[audit_sinks]]\nname = {}\nkind = \"webhook\"\nurl = {}\nhmac_secret_file = {}\n{extra}\n",
        q(name),
        q(url),
        qp(&secret_file)
    )
}

fn file_sink(name: &str, path: &Path, format: &str, extra: &str) -> String {
    format!(
        "[[audit_sinks]]\nname = {}\nkind = \"file\"\nformat = {}\npath = {}\n{extra}\n",
        q(name),
        q(format),
        qp(path)
    )
}

/// Waits until the JSON file sink holds every event of the journal (instance chain and default
/// organization) as read now; returns the sink's records in file order.
async fn wait_file_sink_complete(srv: &Server, path: &Path, what: &str, secs: u64) -> Vec<Value> {
    let want = journal(srv).await;
    let d = Deadline::new(secs, what);
    loop {
        let (records, bad) = read_json_sink(path);
        assert!(
            bad.is_empty(),
            "{what}: unreadable lines in {}: {bad:?}",
            path.display()
        );
        let got: BTreeSet<i64> = records.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        if want.keys().all(|s| got.contains(s)) {
            return records;
        }
        d.tick(|| {
            let missing: Vec<&i64> = want.keys().filter(|s| !got.contains(s)).take(20).collect();
            format!("missing seqs {missing:?}")
        })
        .await;
    }
}

// ------------------------------------------------------------------------------ syslog

/// rsyslog's port and the file it writes every received message to (`scripts/lib/rsyslog.sh`).
#[cfg(feature = "server-tests")]
fn rsyslog() -> (u16, PathBuf) {
    let port = std::env::var("CREDVAULT_TEST_RSYSLOG_PORT").unwrap_or_else(|_| {
        panic!(
            "CREDVAULT_TEST_RSYSLOG_PORT is not set: the server-tests feature needs rsyslogd \
             (source scripts/lib/rsyslog.sh; rsyslog_start DIR PORT — scripts/test does this)"
        )
    });
    let log = std::env::var("CREDVAULT_TEST_RSYSLOG_LOG").unwrap_or_else(|_| {
        panic!(
            "CREDVAULT_TEST_RSYSLOG_LOG is not set: the server-tests feature needs rsyslogd \
             (source scripts/lib/rsyslog.sh; rsyslog_start DIR PORT — scripts/test does this)"
        )
    });
    (
        port.parse().expect("CREDVAULT_TEST_RSYSLOG_PORT is not a port"),
        PathBuf::from(log),
    )
}

/// The messages rsyslog received from the sink whose APP-NAME is `app`.
#[cfg(feature = "server-tests")]
fn syslog_lines(log: &Path, app: &str) -> Vec<(String, Syslog)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!(" {app} ");
    text.lines()
        .filter(|l| l.contains(&needle))
        .map(|l| {
            let m = parse_5424(l).unwrap_or_else(|| panic!("not an RFC 5424 message: {l}"));
            (l.to_owned(), m)
        })
        .filter(|(_, m)| m.app_name == app)
        .collect()
}

#[cfg(feature = "server-tests")]
async fn rsyslog_receives_rfc5424_over_udp_and_tcp_in_json_and_cef(b: Backend) {
    let (port, log) = rsyslog();
    let dir = TempDir::new();
    let tag = random_hex(4);
    let sinks = [
        ("udp-json", "udp", "json"),
        ("udp-cef", "udp", "cef"),
        ("tcp-json", "tcp", "json"),
        ("tcp-cef", "tcp", "cef"),
    ];
    let mut toml = String::new();
    for (name, transport, format) in sinks {
        toml.push_str(&format!(
            "[[audit_sinks]]\nname = {}\nkind = \"syslog\"\naddress = \"127.0.0.1:{port}\"\ntransport = {}\nformat = {}\napp_name = {}\n\n",
            q(name),
            q(transport),
            q(format),
            q(format!("cv{tag}-{name}"))
        ));
    }
    let cfg = write_config(dir.path(), &toml);
    let srv = start(b, &cfg, &[]).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();

    // A user agent (recorded in every event) with characters both formats must escape.
    let ua = r"siem-test a=b|c\d e\=f |g= [x] \";
    let mut created = Vec::new();
    for i in 0..5 {
        let r = srv
            .http
            .post(format!("{}/v1/credentials", srv.base))
            .bearer_auth(&srv.admin)
            .header("user-agent", ua)
            .json(&new_cred_body(
                &srv,
                &format!("syslog-{i}"),
                &format!("pw-{}", random_hex(8)),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        created.push(id(&r.json::<Value>().await.unwrap()));
    }
    // Failures of another severity: unknown tokens (the first of the address's window is
    // journaled in full, the second only counted for the window's summary).
    bad_auths(&srv, &tag, 2).await;

    let api: Vec<Value> = chain_events(&srv, &srv.org_id, "action=credential.create").await;
    assert_eq!(api.len(), 5, "{api:#?}");
    let want: Vec<i64> = api.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let failures = chain_events(&srv, "_instance", "action=auth.failure").await;
    assert!(!failures.is_empty());

    for (name, transport, format) in sinks {
        let app = format!("cv{tag}-{name}");
        let d = Deadline::new(20, format!("{name}: rsyslog to receive every credential.create"));
        let lines = loop {
            let lines = syslog_lines(&log, &app);
            let creates: BTreeSet<String> = lines
                .iter()
                .filter(|(_, m)| m.msgid == "credential.create")
                .map(|(l, _)| l.clone())
                .collect();
            let fails = lines.iter().filter(|(_, m)| m.msgid == "auth.failure").count();
            if creates.len() >= 5 && fails >= 1 {
                break lines;
            }
            d.tick(|| format!("{} lines so far", lines.len())).await;
        };
        let mut seqs = Vec::new();
        for (line, m) in &lines {
            assert_eq!(m.version, 1, "{name}: {line}");
            assert_eq!(m.hostname, host, "{name}: {line}");
            assert_eq!(m.procid, "-", "{name}: {line}");
            assert_eq!(m.structured_data, "-", "{name}: {line}");
            assert_eq!(m.pri / 8, 10, "{name}: facility authpriv: {line}");
            let (seq, action, at) = if format == "json" {
                let e: Value =
                    serde_json::from_str(&m.msg).unwrap_or_else(|e| panic!("{name}: MSG is not JSON ({e}): {line}"));
                (e["seq"].as_i64().unwrap(), st(&e["action"]), st(&e["at"]))
            } else {
                let c = parse_cef(&m.msg).unwrap_or_else(|| panic!("{name}: MSG is not CEF: {line}"));
                assert_eq!(
                    (c.version.as_str(), c.vendor.as_str(), c.product.as_str()),
                    ("0", "credvault", "credvault"),
                    "{name}: {line}"
                );
                assert!(!c.device_version.is_empty(), "{name}: {line}");
                assert_eq!(c.signature, c.ext["act"], "{name}: {line}");
                assert_eq!(c.name, c.ext["act"], "{name}: {line}");
                let seq: i64 = c.ext["externalId"].parse().unwrap();
                let e = srv_event(&api, &failures, seq);
                let at_ms = c.ext["rt"].parse::<i64>().unwrap();
                assert!(at_ms > 1_600_000_000_000, "{name}: rt in milliseconds: {line}");
                if let Some(e) = e {
                    assert_eq!(c.ext["cs5"], st(&e["hash"]), "{name}: cs5 is the hash: {line}");
                    assert_eq!(c.ext["cs5Label"], "hash", "{name}: {line}");
                    assert_eq!(c.ext["outcome"], st(&e["outcome"]), "{name}: {line}");
                    let details: Value = serde_json::from_str(&c.ext["msg"]).unwrap();
                    assert_eq!(details, e["details"], "{name}: msg is the details: {line}");
                    if e["action"] == "credential.create" {
                        assert_eq!(c.ext["cs1"], srv.org_id, "{name}: {line}");
                        assert_eq!(
                            c.ext["cs3"],
                            format!("credential:{}", st(&e["target_id"])),
                            "{name}: {line}"
                        );
                        assert_eq!(c.ext["suser"], st(&e["actor_id"]), "{name}: {line}");
                        assert_eq!(c.ext["requestClientApplication"], ua, "{name}: {line}");
                        assert_eq!(c.ext["cs4"], st(&e["request_id"]), "{name}: {line}");
                        assert_eq!(c.ext["src"], "127.0.0.1", "{name}: {line}");
                        assert_eq!(c.severity, "3", "{name}: {line}");
                    } else {
                        assert_eq!(c.severity, "6", "{name}: a failed login is severity 6: {line}");
                    }
                }
                (seq, c.ext["act"].clone(), String::new())
            };
            assert_eq!(m.msgid, action, "{name}: MSGID is the action: {line}");
            if let Some(e) = srv_event(&api, &failures, seq) {
                if !at.is_empty() {
                    assert_eq!(at, st(&e["at"]), "{name}: {line}");
                }
                assert_eq!(
                    m.timestamp,
                    st(&e["at"]),
                    "{name}: TIMESTAMP is the event's time: {line}"
                );
                let sev = if e["outcome"] == "success" { 5 } else { 4 };
                assert_eq!(m.pri % 8, sev, "{name}: severity: {line}");
                if format == "json" {
                    let full: Value = serde_json::from_str(&m.msg).unwrap();
                    assert_eq!(&full, e, "{name}: the JSON record is the API's event: {line}");
                }
            }
            seqs.push((seq, action));
        }
        let creates: Vec<i64> = seqs
            .iter()
            .filter(|(_, a)| a == "credential.create")
            .map(|(s, _)| *s)
            .collect();
        let (distinct, dups) = in_order(name, &creates);
        assert_eq!(
            distinct.into_iter().collect::<Vec<_>>(),
            want,
            "{name} ({transport}): the credential.create seqs match the API's journal"
        );
        eprintln!("{name}: {} messages, {dups} duplicate credential.create", lines.len());
    }
    let created_in_api: BTreeSet<String> = api.iter().map(|e| st(&e["target_id"])).collect();
    assert_eq!(created_in_api, created.into_iter().collect());
}

/// The API event with this seq among the lists given.
#[cfg(feature = "server-tests")]
fn srv_event<'a>(a: &'a [Value], b: &'a [Value], seq: i64) -> Option<&'a Value> {
    a.iter().chain(b.iter()).find(|e| e["seq"].as_i64() == Some(seq))
}

#[cfg(feature = "server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_receives_rfc5424_over_udp_and_tcp_in_json_and_cef_with_the_journals_sequence_numbers() {
    each_backend!(rsyslog_receives_rfc5424_over_udp_and_tcp_in_json_and_cef);
}

/// A syslog TCP receiver that goes away and comes back: events generated meanwhile arrive
/// after the reconnection (the stream sink reconnects after a failed write).
#[cfg(feature = "server-tests")]
async fn syslog_over_tcp_survives_a_receiver_restart(b: Backend) {
    let (_, log) = rsyslog();
    let dir = TempDir::new();
    let tag = random_hex(4);
    // A TCP relay we control in front of rsyslog, so that the receiver can "restart".
    let (port, _) = rsyslog();
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
    let spawn_relay = |l: TcpListener, tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>| {
        let t2 = tasks.clone();
        let h = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else { break };
                let c = tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", port)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                });
                t2.lock().unwrap().push(c.abort_handle());
            }
        });
        tasks.lock().unwrap().push(h.abort_handle());
    };
    spawn_relay(relay, tasks.clone());
    let app = format!("cv{tag}-tcp-restart");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[audit_sinks]]\nname = \"tcp\"\nkind = \"syslog\"\naddress = \"127.0.0.1:{relay_port}\"\ntransport = \"tcp\"\napp_name = {}\n",
            q(&app)
        ),
    );
    let srv = start(b, &cfg, &[]).await;
    srv.database_credential(&srv.admin, "before", "pw-before-1").await;
    let d = Deadline::new(20, "the first event over TCP");
    while !syslog_lines(&log, &app)
        .iter()
        .any(|(_, m)| m.msgid == "credential.create")
    {
        d.tick(String::new).await;
    }
    // The receiver goes away.
    for t in tasks.lock().unwrap().drain(..) {
        t.abort();
    }
    for i in 0..3 {
        srv.database_credential(&srv.admin, &format!("during-{i}"), "pw-during-1")
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // …and comes back on the same port.
    let l = Hook::bind(relay_port).await;
    spawn_relay(l, tasks.clone());
    for i in 0..2 {
        srv.database_credential(&srv.admin, &format!("after-{i}"), "pw-after-1")
            .await;
    }
    let want: BTreeMap<i64, Value> = chain_events(&srv, &srv.org_id, "action=credential.create")
        .await
        .into_iter()
        .map(|e| (e["seq"].as_i64().unwrap(), e))
        .collect();
    assert_eq!(want.len(), 6);
    let d = Deadline::new(30, "every credential.create after the TCP receiver came back");
    loop {
        let seqs: Vec<i64> = syslog_lines(&log, &app)
            .iter()
            .filter(|(_, m)| m.msgid == "credential.create")
            .map(|(_, m)| serde_json::from_str::<Value>(&m.msg).unwrap()["seq"].as_i64().unwrap())
            .collect();
        let got: BTreeSet<i64> = seqs.iter().copied().collect();
        if want.keys().all(|s| got.contains(s)) {
            in_order("syslog tcp", &seqs);
            break;
        }
        d.tick(|| format!("got {got:?}, want {:?}", want.keys().collect::<Vec<_>>()))
            .await;
    }
    for t in tasks.lock().unwrap().drain(..) {
        t.abort();
    }
}

#[cfg(feature = "server-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_delivers_what_happened_while_the_receiver_was_away() {
    each_backend!(syslog_over_tcp_survives_a_receiver_restart);
}

// ---------------------------------------------------------------------------- webhook

async fn a_webhook_outage_of_10000_events_loses_nothing(b: Backend) {
    let dir = TempDir::new();
    let secret = format!("hook-secret-{}", random_hex(16));
    let hook = Hook::start(secret.as_bytes()).await;
    let cfg = write_config(
        dir.path(),
        &webhook_sink(dir.path(), "hook", &hook.url(), secret.as_bytes(), ""),
    );
    let srv = start(b, &cfg, &[]).await;
    let t0 = Instant::now();

    // The bootstrap events arrive.
    let want = journal(&srv).await;
    let d = Deadline::new(20, "the bootstrap events at the webhook");
    while !want.keys().all(|s| hook.seqs().contains(s)) {
        d.tick(|| format!("{:?}", hook.seqs())).await;
    }

    // The receiver answers 503 while 5,000 events happen…
    hook.set_mode(HookMode::Unavailable);
    let tag = random_hex(3);
    journal_events(&srv, &format!("{tag}a"), 5_000).await;
    // Long enough for several refused attempts (the forwarder backs off exponentially).
    let d = Deadline::new(20, "three delivery attempts during the 503 phase");
    while hook.refused() < 3 {
        d.tick(String::new).await;
    }
    let m = metrics(&srv).await;
    assert!(
        metric(&m, "credvault_audit_sink_backlog", "hook").unwrap() > 0.0,
        "backlog while the receiver answers 503:\n{m}"
    );
    assert_eq!(metric(&m, "credvault_audit_sink_up", "hook"), Some(0.0), "{m}");
    let health = &readyz(&srv).await["audit_sinks"]["hook"];
    assert!(
        health["last_error"].as_str().is_some_and(|e| e.contains("503")),
        "{health}"
    );
    assert_eq!(health["blocking"], false, "{health}");
    // Nobody unauthenticated learns any of it (the error names the hook's URL); an
    // organization admin who is not the instance admin is refused, and the refusal audited.
    let public = srv.call("GET", "/readyz", None, None).await.ok(200);
    assert_eq!(
        public,
        json!({"status": "ready"}),
        "/readyz says ready or degraded, nothing more"
    );
    let org_admin = srv.user_with_role("admin").await;
    srv.get("/v1/audit/sinks", &org_admin).await.problem(403, "forbidden");

    // …then refuses connections while 5,000 more happen…
    hook.close();
    journal_events(&srv, &format!("{tag}b"), 5_000).await;
    let generated = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = hook.refused();

    // …and comes back.
    hook.reopen().await;
    hook.set_mode(HookMode::Up);
    let want = journal(&srv).await;
    let refusals = want
        .values()
        .filter(|e| e["outcome"] == "denied" && e["details"]["permission"] == "audit.read")
        .count();
    assert_eq!(refusals, 10_000, "the journal holds the 10,000 refusals");
    let d = Deadline::new(60, "all events at the webhook after the outage");
    loop {
        let got: BTreeSet<i64> = hook.seqs().into_iter().collect();
        if want.keys().all(|s| got.contains(s)) {
            break;
        }
        d.tick(|| {
            let missing = want.keys().filter(|s| !got.contains(s)).count();
            format!("{missing} of {} still missing", want.len())
        })
        .await;
    }
    hook.assert_all_signed();
    let seqs = hook.seqs();
    let (distinct, dups) = in_order("webhook", &seqs);
    assert_has_all("webhook", &distinct, &want);
    // Every delivered event is the API's event, field for field.
    let events = hook.state.lock().unwrap().events.clone();
    for e in &events {
        let s = e["seq"].as_i64().unwrap();
        if let Some(api) = want.get(&s) {
            assert_eq!(e, api, "the webhook's event {s} differs from the API's");
        }
    }
    eprintln!(
        "{b:?}: {} events generated in {generated:?}, all delivered after {:?}; {refused} deliveries refused with 503; {dups} duplicates",
        want.len(),
        t0.elapsed(),
    );
    let d = Deadline::new(10, "the backlog metric to drop to 0");
    loop {
        let m = metrics(&srv).await;
        if metric(&m, "credvault_audit_sink_backlog", "hook") == Some(0.0) {
            assert_eq!(metric(&m, "credvault_audit_sink_up", "hook"), Some(1.0), "{m}");
            let delivered = metric(&m, "credvault_audit_sink_delivered_total", "hook").unwrap();
            assert!(
                delivered >= want.len() as f64,
                "delivered {delivered} < {}:\n{m}",
                want.len()
            );
            break;
        }
        d.tick(|| m.clone()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_while_10000_events_happen_receives_all_of_them_signed_and_in_order() {
    each_backend!(a_webhook_outage_of_10000_events_loses_nothing);
}

// ---------------------------------------------------------------------------- kill -9

async fn kill9_mid_forwarding_loses_nothing(b: Backend) {
    let dir = TempDir::new();
    let secret = format!("hook-secret-{}", random_hex(16));
    let hook = Hook::start(secret.as_bytes()).await;
    hook.set_delay(Duration::from_millis(30));
    let file = dir.path().join("audit.jsonl");
    let toml = format!(
        "{}{}",
        file_sink("file", &file, "json", "batch_size = 7"),
        webhook_sink(dir.path(), "hook", &hook.url(), secret.as_bytes(), "batch_size = 25")
    );
    let cfg = write_config(dir.path(), &toml);
    let srv = start(b, &cfg, &[]).await;

    // Load in the background: audited refusals and credential creations, until the server
    // dies (each one an event; failed logins would be coalesced per window).
    let org = srv.org_id.clone();
    let (_, viewer) = srv
        .principal(&org, "user", "kill-viewer", &[("viewer", Scope::Org(&org))])
        .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (http, base, admin, ws, stop, viewer) = (
            srv.http.clone(),
            srv.base.clone(),
            srv.admin.clone(),
            srv.ws_id.clone(),
            stop.clone(),
            viewer.clone(),
        );
        load.spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = if w % 2 == 0 {
                    http.get(format!("{base}/v1/audit")).bearer_auth(&viewer).send().await
                } else {
                    http.post(format!("{base}/v1/credentials"))
                        .bearer_auth(&admin)
                        .json(
                            &json!({"name": format!("k{w}-{i}"), "type": "database", "workspace_id": ws,
                                      "environment": "prod", "labels": {"system": "postgres", "owner_team": "x"},
                                      "fields": {"username": "u", "password": "pw-kill-test"}}),
                        )
                        .send()
                        .await
                };
                if r.is_err() {
                    break; // the server is gone
                }
                i += 1;
            }
        });
    }
    // Kill when both sinks are behind and forwarding.
    let d = Deadline::new(30, "both sinks to be forwarding with a backlog");
    loop {
        let h = readyz(&srv).await;
        let s = &h["audit_sinks"];
        let busy = |n: &str| s[n]["delivered"].as_u64().unwrap_or(0) > 40 && s[n]["backlog"].as_i64().unwrap_or(0) > 20;
        if busy("file") && busy("hook") {
            break;
        }
        d.tick(|| h.to_string()).await;
    }
    let pid = server_pid(&srv);
    kill9(pid);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let before = hook.seqs().len();

    // Restart: everything committed before the kill reaches both sinks.
    let srv = restart(srv, &cfg, &[]).await;
    let want = journal(&srv).await;
    assert!(want.len() > 60, "too little load before the kill: {}", want.len());
    let records = wait_file_sink_complete(&srv, &file, "the file sink after kill -9", 50).await;
    let seqs: Vec<i64> = records.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let (distinct, dups) = in_order("file sink", &seqs);
    assert_has_all("file sink", &distinct, &want);
    for e in &records {
        if let Some(api) = want.get(&e["seq"].as_i64().unwrap()) {
            assert_eq!(e, api, "the file sink's record differs from the API's event");
        }
    }
    let d = Deadline::new(30, "the webhook after kill -9");
    loop {
        let got: BTreeSet<i64> = hook.seqs().into_iter().collect();
        if want.keys().all(|s| got.contains(s)) {
            break;
        }
        d.tick(|| format!("{} missing", want.keys().filter(|s| !got.contains(s)).count()))
            .await;
    }
    hook.assert_all_signed();
    let (hook_distinct, hook_dups) = in_order("webhook", &hook.seqs());
    assert_has_all("webhook", &hook_distinct, &want);
    eprintln!(
        "{b:?}: killed with {before} events at the webhook; {} events in the journal; duplicates: file {dups}, webhook {hook_dups}",
        want.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_sigkill_mid_forwarding_delivers_every_committed_event_after_restart() {
    each_backend!(kill9_mid_forwarding_loses_nothing);
}

// ----------------------------------------------------------------------- tamper evidence

/// `GET /v1/audit/verify` for one chain.
async fn api_verify(srv: &Server, chain: &str) -> Value {
    srv.get(&format!("/v1/audit/verify?org_id={chain}"), &srv.admin)
        .await
        .ok(200)
}

/// `credvault audit verify --org CHAIN` through the server: (exit success, printed JSON).
fn cli_verify(srv: &Server, chain: &str) -> (bool, Value, String) {
    let o = cli(srv, &srv.admin, &["audit", "verify", "--org", chain]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.success(), v, out_text(&o))
}

/// `credvault audit verify --offline` on the server's store: (exit success, chain → result).
fn cli_verify_offline(srv: &Server) -> (bool, BTreeMap<String, Value>, String) {
    let data = srv.data.path().to_string_lossy().into_owned();
    let mut args = vec!["audit", "verify", "--offline", "--data-dir", data.as_str()];
    let url;
    if let Some(pg) = &srv.pg {
        url = pg.url.clone();
        args.extend(["--database-url", url.as_str()]);
    }
    let o = cli(srv, &srv.admin, &args);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let chains = v
        .as_array()
        .map(|a| a.iter().map(|p| (st(&p[0]), p[1].clone())).collect())
        .unwrap_or_default();
    (o.status.success(), chains, out_text(&o))
}

/// `credvault audit verify --file F`: (exit success, printed JSON).
fn cli_verify_file(srv: &Server, f: &Path) -> (bool, Value, String) {
    let f = f.to_string_lossy().into_owned();
    let o = cli(srv, &srv.admin, &["audit", "verify", "--file", &f]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.success(), v, out_text(&o))
}

#[track_caller]
fn assert_verified(what: &str, v: &Value) {
    assert_eq!(v["ok"], true, "{what}: should verify: {v}");
    assert!(v.get("first_broken").is_none_or(Value::is_null), "{what}: {v}");
}

#[track_caller]
fn assert_broken_at(what: &str, v: &Value, seq: i64) {
    assert_eq!(v["ok"], false, "{what}: the tampering goes unnoticed: {v}");
    assert_eq!(
        v["first_broken"]["seq"].as_i64(),
        Some(seq),
        "{what}: the first broken link should be seq {seq}: {v}"
    );
    assert!(
        v["first_broken"]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{what}: {v}"
    );
}

/// Every way to verify the store agrees that `chain` is intact.
async fn store_verifies(srv: &Server, chain: &str, what: &str) {
    assert_verified(&format!("{what} (API)"), &api_verify(srv, chain).await);
    let (ok, v, out) = cli_verify(srv, chain);
    assert!(ok, "{what}: `audit verify` should succeed: {out}");
    assert_verified(&format!("{what} (CLI)"), &v);
    let (ok, chains, out) = cli_verify_offline(srv);
    assert!(ok, "{what}: `audit verify --offline` should succeed: {out}");
    assert!(chains.contains_key(chain), "{what}: {out}");
    for (c, v) in &chains {
        assert_verified(&format!("{what} (offline, chain {c})"), v);
    }
}

/// Every way to verify the store reports `chain` broken at `seq`.
async fn store_broken_at(srv: &Server, chain: &str, seq: i64, what: &str) {
    assert_broken_at(&format!("{what} (API)"), &api_verify(srv, chain).await, seq);
    let (ok, v, out) = cli_verify(srv, chain);
    assert!(!ok, "{what}: `audit verify` should fail: {out}");
    assert_broken_at(&format!("{what} (CLI)"), &v, seq);
    let (ok, chains, out) = cli_verify_offline(srv);
    assert!(!ok, "{what}: `audit verify --offline` should fail: {out}");
    let v = chains
        .get(chain)
        .unwrap_or_else(|| panic!("{what}: no result for chain {chain}: {out}"));
    assert_broken_at(&format!("{what} (offline)"), v, seq);
}

fn sql_text(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "NULL".into(),
    }
}

const COLUMNS: &str = "seq, chain, at, org_id, workspace_id, actor_id, actor_kind, action, target_type, \
     target_id, outcome, source_ip, user_agent, request_id, details, prev_hash, hash";

/// A server whose organization writes one audit chain (PostgreSQL shards spread events over
/// several; `audit_shards_share_the_writes_and_verification_walks_every_one` in `api.rs` and
/// `sharded_exports_need_every_shard_up_to_a_checkpoint` below cover those): the tamper cases
/// here name the neighbour an edit breaks, which is the next event of the same chain.
async fn one_chain_server(b: Backend) -> Server {
    let pg = (b == Backend::Postgres).then(common::PgDb::create);
    Server::start_opts(b, TempDir::new(), pg, &[], &[("CREDVAULT_AUDIT_SHARDS", "1")]).await
}

async fn tampered_rows_are_detected(b: Backend) {
    let srv = one_chain_server(b).await;
    let org = srv.org_id.clone();
    for i in 0..10 {
        srv.database_credential(&srv.admin, &format!("tamper-{i}"), "pw-tamper-1")
            .await;
    }
    journal_events(&srv, "tamper", 3).await;
    store_verifies(&srv, &org, "untouched").await;
    store_verifies(&srv, "_instance", "untouched instance chain").await;

    let events = chain_events(&srv, &org, "").await;
    let n = events.len();
    assert!(n >= 10, "{n}");
    let seq = |i: usize| events[i]["seq"].as_i64().unwrap();
    let (mid, next, last) = (n / 2, n / 2 + 1, n - 1);
    let m = &events[mid];
    assert_eq!(m["action"], "credential.create", "{m}");

    // Any edited field breaks the chain at the edited event.
    let edits: Vec<(&str, String, String)> = vec![
        (
            "action",
            "action = 'credential.read'".into(),
            format!("action = {}", sql_text(&m["action"])),
        ),
        (
            "outcome",
            "outcome = 'denied'".into(),
            format!("outcome = {}", sql_text(&m["outcome"])),
        ),
        ("at", "at = at + 1".into(), "at = at - 1".into()),
        (
            "details",
            "details = details || ' '".into(),
            "details = substr(details, 1, length(details) - 1)".into(),
        ),
        (
            "actor_id",
            "actor_id = 'usr_forged'".into(),
            format!("actor_id = {}", sql_text(&m["actor_id"])),
        ),
        (
            "target_id",
            "target_id = target_id || 'x'".into(),
            "target_id = substr(target_id, 1, length(target_id) - 1)".into(),
        ),
        (
            "workspace_id",
            "workspace_id = NULL".into(),
            format!("workspace_id = {}", sql_text(&m["workspace_id"])),
        ),
        (
            "source_ip",
            "source_ip = '192.0.2.66'".into(),
            format!("source_ip = {}", sql_text(&m["source_ip"])),
        ),
        (
            "user_agent",
            "user_agent = 'forged'".into(),
            format!("user_agent = {}", sql_text(&m["user_agent"])),
        ),
        (
            "request_id",
            "request_id = 'req_forged'".into(),
            format!("request_id = {}", sql_text(&m["request_id"])),
        ),
    ];
    for (i, (col, set, restore)) in edits.iter().enumerate() {
        srv.raw_sql(&format!("UPDATE audit_events SET {set} WHERE seq = {}", seq(mid)));
        let what = format!("edited {col}");
        if i == 0 {
            store_broken_at(&srv, &org, seq(mid), &what).await;
        } else {
            assert_broken_at(&what, &api_verify(&srv, &org).await, seq(mid));
        }
        srv.raw_sql(&format!("UPDATE audit_events SET {restore} WHERE seq = {}", seq(mid)));
        assert_verified(&format!("{what}, restored"), &api_verify(&srv, &org).await);
    }

    // A deleted event breaks the chain at the next one.
    srv.raw_sql(&format!(
        "CREATE TABLE tamper_bak AS SELECT * FROM audit_events WHERE seq = {s}; DELETE FROM audit_events WHERE seq = {s}",
        s = seq(mid)
    ));
    store_broken_at(&srv, &org, seq(next), "deleted an event").await;
    srv.raw_sql("INSERT INTO audit_events SELECT * FROM tamper_bak; DROP TABLE tamper_bak");
    store_verifies(&srv, &org, "deleted event restored").await;

    // The last event deleted: the head no longer matches.
    srv.raw_sql(&format!(
        "CREATE TABLE tamper_bak AS SELECT * FROM audit_events WHERE seq = {s}; DELETE FROM audit_events WHERE seq = {s}",
        s = seq(last)
    ));
    store_broken_at(&srv, &org, seq(last), "deleted the last event").await;
    srv.raw_sql("INSERT INTO audit_events SELECT * FROM tamper_bak; DROP TABLE tamper_bak");
    store_verifies(&srv, &org, "last event restored").await;

    // Two events swapped.
    let swap = format!(
        "UPDATE audit_events SET seq = -{a} WHERE seq = {a}; UPDATE audit_events SET seq = {a} WHERE seq = {b}; \
         UPDATE audit_events SET seq = {b} WHERE seq = -{a}",
        a = seq(mid),
        b = seq(next)
    );
    srv.raw_sql(&swap);
    store_broken_at(&srv, &org, seq(mid), "swapped two events").await;
    srv.raw_sql(&swap);
    store_verifies(&srv, &org, "swap undone").await;

    // A copy of an event inserted at the end of the chain.
    let forged = journal(&srv).await.keys().max().unwrap() + 1_000;
    let cols_from = COLUMNS.replacen("seq", &forged.to_string(), 1);
    srv.raw_sql(&format!(
        "INSERT INTO audit_events ({COLUMNS}) SELECT {cols_from} FROM audit_events WHERE seq = {}",
        seq(mid)
    ));
    store_broken_at(&srv, &org, forged, "inserted a copy").await;
    srv.raw_sql(&format!("DELETE FROM audit_events WHERE seq = {forged}"));
    store_verifies(&srv, &org, "inserted copy removed").await;

    // The instance chain too (a failed login lands there).
    bad_auths(&srv, "tamper-instance", 1).await;
    let inst = chain_events(&srv, "_instance", "").await;
    let s = inst[inst.len() / 2]["seq"].as_i64().unwrap();
    srv.raw_sql(&format!("UPDATE audit_events SET outcome = 'success' WHERE seq = {s}"));
    store_broken_at(&srv, "_instance", s, "edited an instance event").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_deleting_reordering_or_inserting_audit_rows_is_detected_by_the_api_and_both_cli_verifiers() {
    each_backend!(tampered_rows_are_detected);
}

/// With shards (PostgreSQL), an export's events of one shard can go missing at that shard's
/// tail, where no later event of the shard links to them. A signed checkpoint of the
/// organization's own chain names every shard's head, so from a checkpoint back nothing can be
/// dropped: not a shard's last event, not a whole shard.
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_exports_need_every_shard_up_to_a_checkpoint() {
    let srv = Server::start_opts(
        Backend::Postgres,
        TempDir::new(),
        Some(common::PgDb::create()),
        &[],
        &[("CREDVAULT_AUDIT_SHARDS", "4")],
    )
    .await;
    for i in 0..20 {
        srv.database_credential(&srv.admin, &format!("shard-{i}"), "pw-shard-1")
            .await;
    }
    let dir = TempDir::new();
    let export = |name: &str| -> Vec<String> {
        let f = dir.path().join(name).to_string_lossy().into_owned();
        let o = cli(&srv, &srv.admin, &["audit", "export", "--output", &f]);
        assert!(o.status.success(), "{}", out_text(&o));
        std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let write = |name: &str, lines: &[String]| {
        let f = dir.path().join(name);
        std::fs::write(&f, lines.join("\n") + "\n").unwrap();
        cli_verify_file(&srv, &f)
    };
    let chain_of = |l: &str| -> Option<String> {
        let v: Value = serde_json::from_str(l).unwrap();
        v["chain"].as_str().map(str::to_owned)
    };
    // The shard whose last event in the export is latest, and that event's index.
    let last_of_a_shard = |lines: &[String]| -> (String, usize) {
        let mut last = std::collections::HashMap::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(c) = chain_of(l) {
                last.insert(c, i);
            }
        }
        last.into_iter().max_by_key(|(_, i)| *i).expect("no event on a shard")
    };
    // Without a checkpoint, a shard's last event can be dropped unnoticed — the limit the
    // checkpoint closes.
    let lines = export("plain.jsonl");
    let (ok, v, out) = write("plain-ok.jsonl", &lines);
    assert!(ok, "{out}");
    assert_eq!(v["chains"], 4, "{v}");
    let (_, i) = last_of_a_shard(&lines);
    let mut dropped = lines.clone();
    dropped.remove(i);
    assert!(
        write("plain-dropped.jsonl", &dropped).0,
        "the limit changed: update this test and the docs"
    );

    // A checkpoint pass, then more events: the checkpoint names every shard's head.
    let data = srv.data.path().to_string_lossy().into_owned();
    let url = srv.pg.as_ref().unwrap().url.clone();
    let o = cli(
        &srv,
        &srv.admin,
        &["audit", "checkpoint", "--data-dir", &data, "--database-url", &url],
    );
    assert!(o.status.success(), "{}", out_text(&o));
    for i in 0..4 {
        srv.database_credential(&srv.admin, &format!("late-{i}"), "pw-shard-1")
            .await;
    }
    let lines = export("signed.jsonl");
    let named = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["action"] == "audit.checkpoint" && v["details"]["shards"].is_array())
        .expect("a checkpoint naming the shards");
    assert_eq!(named["details"]["shards"].as_array().unwrap().len(), 3, "{named}");
    let (ok, _, out) = write("signed-ok.jsonl", &lines);
    assert!(ok, "control: {out}");
    let cp_at = lines.iter().position(|l| l.contains("\"shards\":[")).unwrap();
    // A shard's last event before the checkpoint (its own checkpoint) dropped.
    let (shard, i) = last_of_a_shard(&lines[..cp_at]);
    let mut dropped = lines.clone();
    dropped.remove(i);
    let (ok, v, out) = write("signed-dropped.jsonl", &dropped);
    assert!(!ok, "{out}");
    assert!(st(&v["first_broken"]["reason"]).contains(&shard), "{v}");
    // A whole shard dropped.
    let without: Vec<String> = lines
        .iter()
        .filter(|l| chain_of(l).as_deref() != Some(shard.as_str()))
        .cloned()
        .collect();
    let (ok, v, out) = write("signed-without.jsonl", &without);
    assert!(!ok, "{out}");
    assert!(
        st(&v["first_broken"]["reason"]).contains("which the file does not hold"),
        "{v}"
    );
}

async fn tampered_exports_are_detected(b: Backend) {
    let srv = one_chain_server(b).await;
    let dir = TempDir::new();
    for i in 0..6 {
        srv.database_credential(&srv.admin, &format!("export-{i}"), "pw-export-1")
            .await;
    }
    journal_events(&srv, "export", 3).await;
    let f = dir.path().join("audit.jsonl");
    let fs = f.to_string_lossy().into_owned();
    let o = cli(&srv, &srv.admin, &["audit", "export", "--output", &fs]);
    assert!(o.status.success(), "{}", out_text(&o));
    let text = std::fs::read_to_string(&f).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let api = chain_events(&srv, &srv.org_id, "").await;
    assert_eq!(lines.len(), api.len(), "the export holds the organization's journal");
    for (l, e) in lines.iter().zip(&api) {
        assert_eq!(&serde_json::from_str::<Value>(l).unwrap(), e);
    }
    let (ok, v, out) = cli_verify_file(&srv, &f);
    assert!(ok, "{out}");
    assert_verified("the untouched export", &v);
    assert_eq!(v["events"].as_u64(), Some(lines.len() as u64), "{v}");

    // The instance chain exports and verifies too.
    let fi = dir.path().join("instance.jsonl");
    let o = cli(
        &srv,
        &srv.admin,
        &[
            "audit",
            "export",
            "--org",
            "_instance",
            "--output",
            &fi.to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "{}", out_text(&o));
    let (ok, v, out) = cli_verify_file(&srv, &fi);
    assert!(ok, "{out}");
    assert_verified("the instance chain's export", &v);

    let seq_of = |l: &str| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64().unwrap();
    let k = lines.len() / 2;
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut out = lines.clone();
        let mut v: Value = serde_json::from_str(&out[k]).unwrap();
        f(&mut v);
        out[k] = v.to_string();
        out
    };
    let mut cases: Vec<(&str, Vec<String>, i64)> = vec![
        (
            "an edited outcome",
            edit(&|v| v["outcome"] = json!(if v["outcome"] == "denied" { "success" } else { "denied" })),
            seq_of(&lines[k]),
        ),
        (
            "an edited action",
            edit(&|v| v["action"] = json!("credential.read")),
            seq_of(&lines[k]),
        ),
        (
            "edited details",
            edit(&|v| v["details"]["forged"] = json!(true)),
            seq_of(&lines[k]),
        ),
        (
            "an edited actor",
            edit(&|v| v["actor_id"] = json!("usr_forged")),
            seq_of(&lines[k]),
        ),
        (
            "an edited time",
            edit(&|v| {
                // The last digit before the `Z`: seconds or microseconds.
                let mut c: Vec<char> = st(&v["at"]).chars().collect();
                let i = c.len() - 2;
                c[i] = if c[i] == '1' { '2' } else { '1' };
                v["at"] = json!(c.into_iter().collect::<String>());
            }),
            seq_of(&lines[k]),
        ),
        (
            "an edited seq",
            edit(&|v| v["seq"] = json!(v["seq"].as_i64().unwrap() + 100_000)),
            seq_of(&lines[k]) + 100_000,
        ),
    ];
    let mut deleted = lines.clone();
    deleted.remove(k);
    cases.push(("a deleted line", deleted, seq_of(&lines[k + 1])));
    let mut first = lines.clone();
    first.remove(0);
    cases.push(("the first line deleted", first, seq_of(&lines[1])));
    let mut swapped = lines.clone();
    swapped.swap(k, k + 1);
    cases.push(("two lines swapped", swapped, seq_of(&lines[k + 1])));
    let mut dup = lines.clone();
    dup.insert(k + 1, lines[k].clone());
    cases.push(("a duplicated line", dup, seq_of(&lines[k])));
    let mut forged = lines.clone();
    let mut copy: Value = serde_json::from_str(&lines[k]).unwrap();
    copy["seq"] = json!(seq_of(lines.last().unwrap()) + 1);
    forged.push(copy.to_string());
    cases.push(("a copied line appended", forged, seq_of(lines.last().unwrap()) + 1));
    for (what, tampered, seq) in cases {
        let t = dir.path().join("tampered.jsonl");
        std::fs::write(&t, tampered.join("\n") + "\n").unwrap();
        let (ok, v, out) = cli_verify_file(&srv, &t);
        assert!(!ok, "{what}: `audit verify --file` should fail: {out}");
        assert_broken_at(what, &v, seq);
    }
    // An unreadable line is an error, not a skipped line.
    let mut garbage = lines.clone();
    garbage[k] = "{not json".into();
    let t = dir.path().join("tampered.jsonl");
    std::fs::write(&t, garbage.join("\n") + "\n").unwrap();
    let (ok, v, out) = cli_verify_file(&srv, &t);
    assert!(!ok, "an unreadable line: {out}");
    assert_eq!(v["ok"], false, "{out}");
    // Note: dropping the *last* line of a bare export cannot be detected from the file alone
    // (nothing anchors the head); the store's verifiers catch it (see the row test).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_deleting_or_reordering_lines_of_an_exported_journal_is_detected_by_verify_file() {
    each_backend!(tampered_exports_are_detected);
}

// -------------------------------------------------------------------------- fail-closed

/// Polls `/readyz` until `f` holds for the sink's health; returns the whole answer.
async fn wait_health(srv: &Server, sink: &str, what: &str, secs: u64, f: impl Fn(&Value, &Value) -> bool) -> Value {
    let d = Deadline::new(secs, what);
    loop {
        let r = readyz(srv).await;
        if f(&r, &r["audit_sinks"][sink]) {
            return r;
        }
        d.tick(|| r.to_string()).await;
    }
}

fn new_cred_body(srv: &Server, name: &str, password: &str) -> Value {
    json!({"name": name, "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
           "labels": {"system": "postgres", "owner_team": "data-platform"},
           "fields": {"username": "loader", "password": password}})
}

async fn a_blocking_sink_past_its_backlog_closes_the_gate(b: Backend) {
    let dir = TempDir::new();
    let srv = Server::start(b).await;
    let secret = format!("fail-closed-{}", random_hex(12));
    let r = resolvable(&srv, "gate", &secret).await;
    let ok = resolve(&srv, &r, "run-before").await.ok(200);
    assert!(ok.to_string().contains(&secret));

    // A webhook sink whose receiver is down, blocking past 5 undelivered events.
    let port = dead_port().await;
    let hook_secret = b"gate-hook-secret";
    let cfg = write_config(
        dir.path(),
        &webhook_sink(
            dir.path(),
            "gate",
            &format!("http://127.0.0.1:{port}/hook"),
            hook_secret,
            "on_backlog_full = \"block\"\nmax_backlog = 5\nbatch_size = 3",
        ),
    );
    let srv = restart(srv, &cfg, &[]).await;
    journal_events(&srv, "gate", 6).await;
    // (The gate may close before the first delivery attempt fails: every node watches the
    // backlog from the start.)
    let h = wait_health(&srv, "gate", "the gate to close", 20, |r, h| {
        r["status"] == "degraded" && h["blocking"] == true && h["last_error"].is_string()
    })
    .await;
    assert!(h["audit_sinks"]["gate"]["backlog"].as_i64().unwrap() > 5, "{h}");
    assert!(h["audit_sinks"]["gate"]["last_error"].is_string(), "{h}");

    // Secret-bearing operations answer 503 audit_unavailable, without any plaintext.
    let resp = resolve(&srv, &r, "run-blocked").await;
    assert!(
        !resp.text.contains(&secret),
        "a refused resolve leaks the secret: {}",
        resp.text
    );
    resp.problem(503, "audit_unavailable");
    let resp = srv
        .post(
            "/v1/credentials",
            &srv.admin,
            new_cred_body(&srv, "blocked-new", "pw-blocked-new"),
        )
        .await;
    assert!(!resp.text.contains("pw-blocked-new"), "{}", resp.text);
    resp.problem(503, "audit_unavailable");
    srv.post(
        &format!("/v1/credentials/{}/versions", r.cred),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": "pw-blocked-v2"}, "mode": "stage"}),
    )
    .await
    .problem(503, "audit_unavailable");
    let resp = srv
        .call(
            "POST",
            &format!("/v1/credentials/{}/reveal", r.cred),
            Some(&srv.admin),
            None,
        )
        .await;
    assert!(!resp.text.contains(&secret), "{}", resp.text);
    resp.problem(503, "audit_unavailable");
    // Test connection carries the secret to a target: it stops too (connection and credential).
    srv.post(&format!("/v1/connections/{}/test", r.conn), &srv.admin, json!({}))
        .await
        .problem(503, "audit_unavailable");
    srv.post(&format!("/v1/credentials/{}/test", r.cred), &srv.admin, json!({}))
        .await
        .problem(503, "audit_unavailable");
    // /readyz says degraded, without naming the sink or its error.
    let public = srv.call("GET", "/readyz", None, None).await.ok(200);
    assert_eq!(public, json!({"status": "degraded"}));
    // Reads keep working.
    let c = srv
        .get(&format!("/v1/credentials/{}", r.cred), &srv.admin)
        .await
        .ok(200);
    assert_eq!(c["status"], "active");
    srv.get("/v1/credentials", &srv.admin).await.ok(200);
    srv.get(&format!("/v1/connections/{}", r.conn), &srv.admin)
        .await
        .ok(200);
    srv.get("/v1/audit", &srv.admin).await.ok(200);
    srv.get("/v1/me", &r.worker).await.ok(200);
    let m = metrics(&srv).await;
    assert_eq!(metric(&m, "credvault_audit_sink_blocking", "gate"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "credvault_audit_sink_up", "gate"), Some(0.0), "{m}");
    assert!(metric(&m, "credvault_audit_sink_backlog", "gate").unwrap() > 5.0, "{m}");
    // Nothing was created while blocked.
    let names: Vec<String> = srv.get("/v1/credentials?limit=500", &srv.admin).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| st(&c["name"]))
        .collect();
    assert!(!names.contains(&"blocked-new".to_owned()), "{names:?}");

    // The receiver comes back: the sink catches up and the gate opens.
    let hook = Hook::start_on(port, hook_secret).await;
    wait_health(
        &srv,
        "gate",
        "the gate to open after the receiver came back",
        60,
        |r, h| r["status"] == "ready" && h["blocking"] == false,
    )
    .await;
    let ok = resolve(&srv, &r, "run-after").await.ok(200);
    assert!(ok.to_string().contains(&secret));
    let want = journal(&srv).await;
    let d = Deadline::new(30, "the gate's webhook to catch up");
    loop {
        let got: BTreeSet<i64> = hook.seqs().into_iter().collect();
        if want.keys().all(|s| got.contains(s)) {
            break;
        }
        d.tick(|| format!("{} missing", want.keys().filter(|s| !got.contains(s)).count()))
            .await;
    }
    hook.assert_all_signed();
    in_order("gate webhook", &hook.seqs());
    drop(hook);

    // The same outage with on_backlog_full = "alert" keeps serving.
    let port2 = dead_port().await;
    let cfg2 = write_config(
        dir.path(),
        &webhook_sink(
            dir.path(),
            "loose",
            &format!("http://127.0.0.1:{port2}/hook"),
            hook_secret,
            "on_backlog_full = \"alert\"\nmax_backlog = 5",
        ),
    );
    let srv = restart(srv, &cfg2, &[]).await;
    journal_events(&srv, "loose", 6).await;
    let h = wait_health(&srv, "loose", "the alerting sink to fall behind", 20, |_, h| {
        h["backlog"].as_i64().unwrap_or(0) > 5 && h["last_error"].is_string()
    })
    .await;
    assert_eq!(h["status"], "ready", "{h}");
    assert_eq!(h["audit_sinks"]["loose"]["blocking"], false, "{h}");
    let ok = resolve(&srv, &r, "run-loose").await.ok(200);
    assert!(ok.to_string().contains(&secret));
    srv.post(
        "/v1/credentials",
        &srv.admin,
        new_cred_body(&srv, "loose-new", "pw-loose-new"),
    )
    .await
    .ok(201);
    let m = metrics(&srv).await;
    assert_eq!(metric(&m, "credvault_audit_sink_blocking", "loose"), Some(0.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_sink_past_max_backlog_makes_secret_bearing_operations_answer_503_while_reads_work() {
    each_backend!(a_blocking_sink_past_its_backlog_closes_the_gate);
}

/// A blocking sink that cannot even be opened (its HMAC key file is missing) is as far behind
/// as a dead receiver: it must close the gate too, not leave it open forever.
async fn an_unopenable_blocking_sink_closes_the_gate(b: Backend) {
    let dir = TempDir::new();
    let srv = Server::start(b).await;
    let secret = format!("fail-closed-{}", random_hex(12));
    let r = resolvable(&srv, "unopenable", &secret).await;
    let port = dead_port().await;
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[audit_sinks]]\nname = \"broken\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\nhmac_secret_file = {}\non_backlog_full = \"block\"\nmax_backlog = 5\n",
            qp(&dir.path().join("missing.key"))
        ),
    );
    let srv = restart(srv, &cfg, &[]).await;
    journal_events(&srv, "unopenable", 10).await;
    let h = wait_health(&srv, "broken", "the sink's error to show", 20, |_, h| {
        h["last_error"].is_string()
    })
    .await;
    let d = Deadline::new(15, "an unopenable blocking sink to close the gate");
    loop {
        let h2 = readyz(&srv).await;
        if h2["audit_sinks"]["broken"]["blocking"] == true && h2["status"] == "degraded" {
            break;
        }
        d.tick(|| {
            format!(
                "the sink cannot be opened ({}) so nothing is forwarded, yet the gate stays open (fail-open): {h2}",
                h["audit_sinks"]["broken"]["last_error"]
            )
        })
        .await;
    }
    let resp = resolve(&srv, &r, "run-unopenable").await;
    assert!(
        !resp.text.contains(&secret),
        "an unforwardable resolve returned the secret: {}",
        resp.text
    );
    resp.problem(503, "audit_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_sink_that_cannot_be_opened_closes_the_gate_instead_of_failing_open() {
    each_backend!(an_unopenable_blocking_sink_closes_the_gate);
}

/// `on_backlog_full = "alert"` is documented as "raise an alert event and keep serving": a sink
/// past `max_backlog` shows up in the journal as an `alert.*` event naming the sink.
async fn an_alerting_sink_past_its_backlog_raises_an_alert(b: Backend) {
    let dir = TempDir::new();
    let port = dead_port().await;
    let cfg = write_config(
        dir.path(),
        &webhook_sink(
            dir.path(),
            "behind",
            &format!("http://127.0.0.1:{port}/hook"),
            b"k",
            "on_backlog_full = \"alert\"\nmax_backlog = 5",
        ),
    );
    let srv = start(b, &cfg, &[]).await;
    journal_events(&srv, "behind", 10).await;
    wait_health(&srv, "behind", "the sink to fall behind", 20, |_, h| {
        h["backlog"].as_i64().unwrap_or(0) > 5 && h["last_error"].is_string()
    })
    .await;
    let d = Deadline::new(15, "an alert.* event about the sink that is past max_backlog");
    loop {
        let all = journal(&srv).await;
        let alerts: Vec<&Value> = all
            .values()
            .filter(|e| e["action"].as_str().is_some_and(|a| a.starts_with("alert.")))
            .filter(|e| e.to_string().contains("behind"))
            .collect();
        if !alerts.is_empty() {
            break;
        }
        d.tick(|| {
            let actions: BTreeSet<String> = all.values().map(|e| st(&e["action"])).collect();
            format!("no alert names the sink `behind`; actions in the journal: {actions:?}")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alerting_sink_past_max_backlog_raises_an_alert_event_and_keeps_serving() {
    each_backend!(an_alerting_sink_past_its_backlog_raises_an_alert);
}

// ---------------------------------------------------------------------- spike detectors

/// Events of `action` in `chain`.
async fn alerts(srv: &Server, chain: &str, action: &str) -> Vec<Value> {
    chain_events(srv, chain, &format!("action={action}")).await
}

/// Every `alert.*` event in the instance chain and the default organization.
async fn all_alerts(srv: &Server) -> Vec<Value> {
    journal(srv)
        .await
        .into_values()
        .filter(|e| e["action"].as_str().is_some_and(|a| a.starts_with("alert.")))
        .collect()
}

async fn auth_failure_bursts_alert_once(b: Backend) {
    let dir = TempDir::new();
    let alerts_file = dir.path().join("alerts.jsonl");
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}[alerts]\nauth_failures_per_ip = {{ count = 5, window_secs = 60 }}\nauth_failures_per_principal = {{ count = 3, window_secs = 60 }}\n",
            file_sink("alerts", &alerts_file, "json", "alerts_only = true")
        ),
    );
    let srv = start(b, &cfg, &[]).await;
    let org = srv.org_id.clone();

    // Normal load raises nothing.
    let r = resolvable(&srv, "normal", "pw-normal-load").await;
    for i in 0..5 {
        resolve(&srv, &r, &format!("run-{i}")).await.ok(200);
        srv.get(&format!("/v1/credentials/{}", r.cred), &srv.admin)
            .await
            .ok(200);
    }
    srv.get("/v1/credentials", &srv.admin).await.ok(200);
    let viewer = srv.user_with_role("viewer").await;
    srv.get("/v1/credentials", &viewer).await.ok(200);
    assert_eq!(all_alerts(&srv).await, Vec::<Value>::new(), "normal load raised alerts");

    // Four failed logins from one address stay below the threshold…
    bad_auths(&srv, "quiet", 4).await;
    assert_eq!(alerts(&srv, "_instance", "alert.auth_failures").await.len(), 0);
    // …the fifth crosses it: exactly one alert…
    bad_auths(&srv, "burst", 1).await;
    let got = alerts(&srv, "_instance", "alert.auth_failures").await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let a = &got[0];
    assert_eq!(a["target_type"], "source_ip", "{a}");
    assert_eq!(a["target_id"], "127.0.0.1", "{a}");
    assert_eq!(a["actor_kind"], "system", "{a}");
    assert_eq!(a["details"]["count"], 5, "{a}");
    assert_eq!(a["details"]["threshold"], 5, "{a}");
    assert_eq!(a["details"]["window_secs"], 60, "{a}");
    // …and the burst going on within the window raises no second one.
    bad_auths(&srv, "more", 20).await;
    assert_eq!(alerts(&srv, "_instance", "alert.auth_failures").await.len(), 1);

    // One principal's revoked token: per principal, in its organization's chain.
    let (pid, token) = srv
        .principal(&org, "service_account", "revoked-sa", &[("viewer", Scope::Org(&org))])
        .await;
    let toks = srv
        .get(&format!("/v1/tokens?principal_id={pid}"), &srv.admin)
        .await
        .ok(200);
    let tok_id = st(&toks["items"][0]["id"]);
    srv.delete(&format!("/v1/tokens/{tok_id}"), &srv.admin).await.ok(200);
    let principal_alerts =
        |all: Vec<Value>| -> Vec<Value> { all.into_iter().filter(|e| e["target_type"] == "principal").collect() };
    for _ in 0..2 {
        srv.get("/v1/me", &token).await.problem(401, "unauthenticated");
    }
    assert_eq!(
        principal_alerts(alerts(&srv, &org, "alert.auth_failures").await).len(),
        0
    );
    srv.get("/v1/me", &token).await.problem(401, "unauthenticated");
    let got = principal_alerts(alerts(&srv, &org, "alert.auth_failures").await);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["target_id"], pid.as_str(), "{}", got[0]);
    for _ in 0..5 {
        srv.get("/v1/me", &token).await.problem(401, "unauthenticated");
    }
    assert_eq!(
        principal_alerts(alerts(&srv, &org, "alert.auth_failures").await).len(),
        1
    );

    // The alerts-only sink holds exactly the alerts.
    let want: BTreeSet<i64> = all_alerts(&srv)
        .await
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(want.len(), 2);
    let d = Deadline::new(20, "the alerts-only sink");
    loop {
        let (records, bad) = read_json_sink(&alerts_file);
        assert!(bad.is_empty(), "{bad:?}");
        let got: BTreeSet<i64> = records.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        if got == want {
            assert!(
                records.iter().all(|e| st(&e["action"]).starts_with("alert.")),
                "{records:#?}"
            );
            break;
        }
        d.tick(|| format!("got {got:?}, want {want:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_bursts_raise_exactly_one_alert_per_window_and_normal_load_none() {
    each_backend!(auth_failure_bursts_alert_once);
}

async fn denial_bursts_alert_once(b: Backend) {
    let dir = TempDir::new();
    let cfg = write_config(
        dir.path(),
        "[alerts]\ndenials_per_principal = { count = 3, window_secs = 60 }\n",
    );
    let srv = start(b, &cfg, &[]).await;
    let org = srv.org_id.clone();
    let (pid, viewer) = srv
        .principal(&org, "user", "nosy-viewer", &[("viewer", Scope::Org(&org))])
        .await;
    for i in 0..2 {
        srv.post(
            "/v1/credentials",
            &viewer,
            new_cred_body(&srv, &format!("denied-{i}"), "pw-denied-1"),
        )
        .await
        .problem(403, "forbidden");
    }
    let denied = chain_events(&srv, &org, "outcome=denied").await;
    assert_eq!(denied.len(), 2, "{denied:#?}");
    assert_eq!(alerts(&srv, &org, "alert.denials").await.len(), 0);
    srv.post(
        "/v1/credentials",
        &viewer,
        new_cred_body(&srv, "denied-3", "pw-denied-1"),
    )
    .await
    .problem(403, "forbidden");
    let got = alerts(&srv, &org, "alert.denials").await;
    assert_eq!(
        got.len(),
        1,
        "3 denials of one principal within 60 s (denials_per_principal = 3/60s) raise one alert.denials: {got:#?}"
    );
    assert_eq!(got[0]["target_type"], "principal", "{}", got[0]);
    assert_eq!(got[0]["target_id"], pid.as_str(), "{}", got[0]);
    for i in 0..4 {
        srv.post(
            "/v1/credentials",
            &viewer,
            new_cred_body(&srv, &format!("denied-more-{i}"), "pw-denied-1"),
        )
        .await
        .problem(403, "forbidden");
    }
    assert_eq!(alerts(&srv, &org, "alert.denials").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_authorization_denials_by_one_principal_raises_one_alert() {
    each_backend!(denial_bursts_alert_once);
}

async fn refused_resolves_alert(b: Backend) {
    let srv = Server::start(b).await;
    let org = srv.org_id.clone();
    let r = resolvable(&srv, "refused", "pw-refused-1").await;
    resolve(&srv, &r, "run-ok").await.ok(200);
    assert_eq!(alerts(&srv, &org, "alert.resolve_refused").await.len(), 0);
    srv.call(
        "POST",
        &format!("/v1/credentials/{}/disable", r.cred),
        Some(&srv.admin),
        None,
    )
    .await
    .ok(200);
    let resp = resolve(&srv, &r, "run-disabled").await;
    assert!(!resp.text.contains("pw-refused-1"), "{}", resp.text);
    resp.problem(409, "credential_disabled");
    let refused = chain_events(&srv, &org, "action=connection.resolve&outcome=error").await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0]["details"]["refused"], "credential_disabled");
    let got = alerts(&srv, &org, "alert.resolve_refused").await;
    assert_eq!(
        got.len(),
        1,
        "a worker resolving a disabled credential raises alert.resolve_refused at once: {got:#?}"
    );
    assert_eq!(got[0]["target_type"], "credential", "{}", got[0]);
    assert_eq!(got[0]["target_id"], r.cred.as_str(), "{}", got[0]);
    assert_eq!(got[0]["details"]["reason"], "credential_disabled", "{}", got[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_resolving_a_disabled_credential_raises_alert_resolve_refused() {
    each_backend!(refused_resolves_alert);
}

async fn failed_tests_alert_once(b: Backend) {
    let dir = TempDir::new();
    let cfg = write_config(
        dir.path(),
        "[alerts]\ntest_failures_per_credential = { count = 3, window_secs = 300 }\n",
    );
    let srv = start(b, &cfg, &["--egress-allow", "127.0.0.0/8"]).await;
    let org = srv.org_id.clone();
    let cred = id(&srv.database_credential(&srv.admin, "tested", "pw-tested-1").await);
    let port = dead_port().await;
    let conn = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "pg-closed", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "127.0.0.1", "port": port, "database": "x"}, "credential_id": cred}),
        )
        .await
        .ok(201));
    let test = || async {
        let r = srv
            .post(&format!("/v1/connections/{conn}/test"), &srv.admin, json!({}))
            .await
            .ok(200);
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error"]["code"], "connect_refused", "{r}");
    };
    test().await;
    test().await;
    assert_eq!(alerts(&srv, &org, "alert.test_failures").await.len(), 0);
    test().await;
    let got = alerts(&srv, &org, "alert.test_failures").await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["target_type"], "credential", "{}", got[0]);
    assert_eq!(got[0]["target_id"], cred.as_str(), "{}", got[0]);
    assert_eq!(got[0]["details"]["count"], 3, "{}", got[0]);
    test().await;
    test().await;
    assert_eq!(alerts(&srv, &org, "alert.test_failures").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_tests_of_one_credential_raise_one_alert() {
    each_backend!(failed_tests_alert_once);
}

async fn report(srv: &Server, r: &Resolvable, outcome: &str, run: &str) -> Value {
    srv.post(
        "/v1/resolve/report",
        &r.worker,
        json!({"connection_id": r.conn, "run_id": run, "version": 1, "outcome": outcome}),
    )
    .await
    .ok(200)
}

async fn target_login_failures_alert_and_auto_disable(b: Backend) {
    let dir = TempDir::new();
    let cfg = write_config(
        dir.path(),
        "[alerts]\ntarget_auth_failures_per_credential = { count = 3, window_secs = 300 }\n",
    );
    let srv = start(b, &cfg, &[]).await;
    let org = srv.org_id.clone();
    let for_cred =
        |all: Vec<Value>, cred: &str| -> Vec<Value> { all.into_iter().filter(|e| e["target_id"] == cred).collect() };

    // Reports of success or other errors count for nothing.
    let quiet = resolvable(&srv, "tgt-quiet", "pw-tgt-quiet").await;
    for i in 0..4 {
        report(&srv, &quiet, "error", &format!("run-e{i}")).await;
        report(&srv, &quiet, "ok", &format!("run-o{i}")).await;
    }
    assert_eq!(alerts(&srv, &org, "alert.target_auth_failures").await.len(), 0);

    // Without the opt-in: an alert, and the credential stays usable.
    let a = resolvable(&srv, "tgt-a", "pw-tgt-a").await;
    resolve(&srv, &a, "run-a0").await.ok(200);
    for i in 0..2 {
        let r = report(&srv, &a, "auth_failed", &format!("run-a{i}")).await;
        assert_eq!(r["auto_disabled"], false, "{r}");
    }
    assert_eq!(
        for_cred(alerts(&srv, &org, "alert.target_auth_failures").await, &a.cred).len(),
        0
    );
    let r = report(&srv, &a, "auth_failed", "run-a2").await;
    assert_eq!(r["recorded"], true, "{r}");
    assert_eq!(r["auto_disabled"], false, "{r}");
    assert_eq!(
        for_cred(alerts(&srv, &org, "alert.target_auth_failures").await, &a.cred).len(),
        1
    );
    resolve(&srv, &a, "run-a3").await.ok(200);

    // With auto_disable_on_target_auth_failures: the third failure disables the credential.
    srv.patch(
        &format!("/v1/orgs/{org}/settings"),
        &srv.admin,
        json!({"auto_disable_on_target_auth_failures": true}),
    )
    .await
    .ok(200);
    let b2 = resolvable(&srv, "tgt-b", "pw-tgt-b").await;
    resolve(&srv, &b2, "run-b0").await.ok(200);
    for i in 0..2 {
        let r = report(&srv, &b2, "auth_failed", &format!("run-b{i}")).await;
        assert_eq!(r["auto_disabled"], false, "{r}");
    }
    let c = srv
        .get(&format!("/v1/credentials/{}", b2.cred), &srv.admin)
        .await
        .ok(200);
    assert_eq!(c["status"], "active");
    let r = report(&srv, &b2, "auth_failed", "run-b2").await;
    assert_eq!(r["auto_disabled"], true, "{r}");
    let c = srv
        .get(&format!("/v1/credentials/{}", b2.cred), &srv.admin)
        .await
        .ok(200);
    assert_eq!(c["status"], "disabled", "{c}");
    let resp = resolve(&srv, &b2, "run-b3").await;
    assert!(!resp.text.contains("pw-tgt-b"), "{}", resp.text);
    resp.problem(409, "credential_disabled");
    let got = for_cred(alerts(&srv, &org, "alert.target_auth_failures").await, &b2.cred);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["details"]["count"], 3, "{}", got[0]);
    let disabled = for_cred(chain_events(&srv, &org, "action=credential.disable").await, &b2.cred);
    assert_eq!(disabled.len(), 1, "{disabled:#?}");
    assert_eq!(disabled[0]["actor_kind"], "system", "{}", disabled[0]);
    let reports = chain_events(&srv, &org, "action=resolve.report").await;
    assert_eq!(reports.len(), 8 + 3 + 3, "{reports:#?}");
    // Credential A, alerted before the opt-in, stays active.
    let c = srv
        .get(&format!("/v1/credentials/{}", a.cred), &srv.admin)
        .await
        .ok(200);
    assert_eq!(c["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_reported_by_workers_alert_and_with_the_opt_in_disable_the_credential() {
    each_backend!(target_login_failures_alert_and_auto_disable);
}

// ------------------------------------------------------------------------------- canary

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

/// The forms a secret could leak in: as is, its random part, hex, base64 at each alignment.
fn needles(label: &str, secret: &str, random_part: &str) -> Vec<(String, String)> {
    let raw = secret.as_bytes();
    let mut out = vec![
        (label.to_owned(), secret.to_owned()),
        (format!("{label}'s random part"), random_part.to_owned()),
        (format!("{label} in hex"), hex(raw)),
    ];
    for skip in 0..3 {
        let s = &raw[skip..];
        let whole = &s[..s.len() / 3 * 3];
        out.push((format!("{label} in base64 (offset {skip})"), b64(whole, B64_STD)));
        out.push((format!("{label} in base64url (offset {skip})"), b64(whole, B64_URL)));
    }
    out
}

/// Two syslog sinks (UDP/JSON and TCP/CEF) for the canary test, with rsyslog.
#[cfg(feature = "server-tests")]
fn canary_syslog_sinks(tag: &str) -> String {
    let (port, _) = rsyslog();
    let mut toml = String::new();
    for (name, transport, format) in [("udp-json", "udp", "json"), ("tcp-cef", "tcp", "cef")] {
        toml.push_str(&format!(
            "[[audit_sinks]]\nname = {}\nkind = \"syslog\"\naddress = \"127.0.0.1:{port}\"\ntransport = {}\nformat = {}\napp_name = {}\n\n",
            q(name),
            q(transport),
            q(format),
            q(format!("cv{tag}-canary-{name}"))
        ));
    }
    toml
}

/// Without rsyslog (no `server-tests` feature): no syslog sinks.
#[cfg(not(feature = "server-tests"))]
fn canary_syslog_sinks(_tag: &str) -> String {
    String::new()
}

async fn canaries_stay_out_of_every_sink(b: Backend) {
    let dir = TempDir::new();
    let secret = format!("hook-secret-{}", random_hex(16));
    let hook = Hook::start(secret.as_bytes()).await;
    let json_file = dir.path().join("audit.jsonl");
    let cef_file = dir.path().join("audit.cef");
    let tag = random_hex(4);
    let toml = format!(
        "{}{}{}{}",
        file_sink("json", &json_file, "json", ""),
        file_sink("cef", &cef_file, "cef", ""),
        webhook_sink(dir.path(), "hook", &hook.url(), secret.as_bytes(), ""),
        canary_syslog_sinks(&tag)
    );
    let cfg = write_config(dir.path(), &toml);
    let srv = start(b, &cfg, &["--egress-allow", "127.0.0.0/8"]).await;
    let org = srv.org_id.clone();

    // The canary secret through resolve, a new version, a report, a failed test, a refusal.
    let rand1 = random_hex(16);
    let canary = format!("canary-{rand1}");
    let rand2 = random_hex(16);
    let canary2 = format!("canary-{rand2}");
    let r = resolvable(&srv, "canary", &canary).await;
    let got = resolve(&srv, &r, "run-canary-1").await.ok(200);
    assert_eq!(got["credential"]["fields"]["password"], canary.as_str(), "{got}");
    srv.post(
        &format!("/v1/credentials/{}/versions", r.cred),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": canary2}, "mode": "stage"}),
    )
    .await
    .ok(201);
    srv.call(
        "POST",
        &format!("/v1/credentials/{}/versions/2/promote", r.cred),
        Some(&srv.admin),
        None,
    )
    .await
    .ok(200);
    let got = resolve(&srv, &r, "run-canary-2").await.ok(200);
    assert_eq!(got["credential"]["fields"]["password"], canary2.as_str(), "{got}");
    report(&srv, &r, "auth_failed", "run-canary-2").await;
    let port = dead_port().await;
    let closed = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "canary-closed", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "127.0.0.1", "port": port, "database": "x"}, "credential_id": r.cred}),
        )
        .await
        .ok(201));
    let t = srv
        .post(&format!("/v1/connections/{closed}/test"), &srv.admin, json!({}))
        .await
        .ok(200);
    assert_eq!(t["ok"], false, "{t}");
    srv.call(
        "POST",
        &format!("/v1/credentials/{}/disable", r.cred),
        Some(&srv.admin),
        None,
    )
    .await
    .ok(200);
    resolve(&srv, &r, "run-canary-3")
        .await
        .problem(409, "credential_disabled");
    srv.call(
        "POST",
        &format!("/v1/credentials/{}/enable", r.cred),
        Some(&srv.admin),
        None,
    )
    .await
    .ok(200);
    // A canary in a request the server refuses (a field it does not know).
    srv.post(
        "/v1/credentials",
        &srv.admin,
        json!({"name": "bad", "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
               "fields": {"username": "u", "password": canary, "passwd": canary}}),
    )
    .await;

    // The canary token: used, mangled, in the wrong scheme, denied, revoked.
    let (pid, token) = srv
        .principal(&org, "service_account", "canary-sa", &[("viewer", Scope::Org(&org))])
        .await;
    srv.get("/v1/me", &token).await.ok(200);
    srv.get("/v1/me", &format!("{token}x"))
        .await
        .problem(401, "unauthenticated");
    let mangled: String = token.chars().rev().collect();
    srv.get("/v1/me", &mangled).await.problem(401, "unauthenticated");
    let basic = srv
        .http
        .get(format!("{}/v1/me", srv.base))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
    srv.post("/v1/credentials", &token, new_cred_body(&srv, "nope", "pw-nope-1"))
        .await
        .problem(403, "forbidden");
    let toks = srv
        .get(&format!("/v1/tokens?principal_id={pid}"), &srv.admin)
        .await
        .ok(200);
    srv.delete(&format!("/v1/tokens/{}", st(&toks["items"][0]["id"])), &srv.admin)
        .await
        .ok(200);
    srv.get("/v1/me", &token).await.problem(401, "unauthenticated");

    // Everything reaches every sink.
    let want = journal(&srv).await;
    wait_file_sink_complete(&srv, &json_file, "the JSON file sink", 30).await;
    let d = Deadline::new(30, "the CEF file and the webhook");
    loop {
        let cef = std::fs::read_to_string(&cef_file).unwrap_or_default();
        let cef_seqs: BTreeSet<i64> = cef
            .lines()
            .map(|l| parse_cef(l).unwrap_or_else(|| panic!("not a CEF line: {l}")))
            .map(|c| c.ext["externalId"].parse::<i64>().unwrap())
            .collect();
        let hook_seqs: BTreeSet<i64> = hook.seqs().into_iter().collect();
        if want.keys().all(|s| cef_seqs.contains(s) && hook_seqs.contains(s)) {
            break;
        }
        d.tick(|| format!("CEF {} / webhook {} of {}", cef_seqs.len(), hook_seqs.len(), want.len()))
            .await;
    }
    #[cfg_attr(not(feature = "server-tests"), allow(unused_mut))]
    let mut hay: Vec<(String, String)> = vec![
        (
            "the audit journal (API)".into(),
            want.values().map(Value::to_string).collect::<Vec<_>>().join("\n"),
        ),
        (
            "the JSON file sink".into(),
            std::fs::read_to_string(&json_file).unwrap(),
        ),
        ("the CEF file sink".into(), std::fs::read_to_string(&cef_file).unwrap()),
        ("the webhook bodies".into(), hook.bodies().join("\n")),
        ("the server's logs".into(), srv.logs()),
    ];
    #[cfg(feature = "server-tests")]
    let (_, syslog_log) = rsyslog();
    #[cfg(feature = "server-tests")]
    for name in ["udp-json", "tcp-cef"] {
        let app = format!("cv{tag}-canary-{name}");
        let d = Deadline::new(30, format!("syslog {name}"));
        let lines = loop {
            let lines = syslog_lines(&syslog_log, &app);
            let seqs: BTreeSet<i64> = lines
                .iter()
                .filter_map(|(_, m)| {
                    if name.ends_with("json") {
                        serde_json::from_str::<Value>(&m.msg).ok()?["seq"].as_i64()
                    } else {
                        parse_cef(&m.msg)?.ext.get("externalId")?.parse().ok()
                    }
                })
                .collect();
            if want.keys().all(|s| seqs.contains(s)) {
                break lines;
            }
            d.tick(|| format!("{} of {}", seqs.len(), want.len())).await;
        };
        hay.push((
            format!("the syslog lines ({name})"),
            lines.into_iter().map(|(l, _)| l).collect::<Vec<_>>().join("\n"),
        ));
    }
    let token_random = token.trim_start_matches("cvt_").to_owned();
    let mut all_needles = needles("the canary secret", &canary, &rand1);
    all_needles.extend(needles("the second canary secret", &canary2, &rand2));
    all_needles.extend(needles("the canary token", &token, &token_random));
    for (where_, text) in &hay {
        assert!(!text.is_empty(), "{where_} is empty");
        for (what, needle) in &all_needles {
            assert!(!text.contains(needle.as_str()), "{what} (`{needle}`) is in {where_}");
        }
    }
    hook.assert_all_signed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_and_a_canary_token_appear_in_no_audit_record_sink_file_webhook_body_or_syslog_line() {
    each_backend!(canaries_stay_out_of_every_sink);
}

// ------------------------------------------------------------------------------ metrics

async fn sink_metrics_show_backlog_and_deliveries(b: Backend) {
    let dir = TempDir::new();
    let file = dir.path().join("audit.jsonl");
    let port = dead_port().await;
    let toml = format!(
        "{}{}",
        file_sink("archive", &file, "json", "batch_size = 4"),
        webhook_sink(dir.path(), "dead", &format!("http://127.0.0.1:{port}/hook"), b"k", "")
    );
    let cfg = write_config(dir.path(), &toml);
    let srv = start(b, &cfg, &[]).await;
    for i in 0..5 {
        srv.database_credential(&srv.admin, &format!("metrics-{i}"), "pw-metrics-1")
            .await;
    }
    journal_events(&srv, "metrics", 3).await;
    let records = wait_file_sink_complete(&srv, &file, "the file sink", 30).await;
    let want = journal(&srv).await;
    let max = *want.keys().max().unwrap();
    let d = Deadline::new(20, "the sink metrics to settle");
    loop {
        let m = metrics(&srv).await;
        let settled = metric(&m, "credvault_audit_sink_backlog", "archive") == Some(0.0)
            && metric(&m, "credvault_audit_sink_backlog", "dead") == Some(max as f64);
        if settled {
            for name in [
                "credvault_audit_sink_backlog",
                "credvault_audit_sink_delivered_total",
                "credvault_audit_sink_up",
                "credvault_audit_sink_blocking",
            ] {
                assert!(m.contains(&format!("# TYPE {name} ")), "no TYPE line for {name}:\n{m}");
            }
            assert_eq!(
                metric(&m, "credvault_audit_sink_delivered_total", "archive"),
                Some(records.len() as f64),
                "{m}"
            );
            assert_eq!(metric(&m, "credvault_audit_sink_up", "archive"), Some(1.0), "{m}");
            assert_eq!(metric(&m, "credvault_audit_sink_blocking", "archive"), Some(0.0), "{m}");
            assert_eq!(
                metric(&m, "credvault_audit_sink_delivered_total", "dead"),
                Some(0.0),
                "{m}"
            );
            assert_eq!(metric(&m, "credvault_audit_sink_up", "dead"), Some(0.0), "{m}");
            assert_eq!(metric(&m, "credvault_audit_sink_blocking", "dead"), Some(0.0), "{m}");
            break;
        }
        d.tick(|| m.clone()).await;
    }
    let h = readyz(&srv).await;
    assert_eq!(h["audit_sinks"]["archive"]["delivered_seq"], max, "{h}");
    assert_eq!(h["audit_sinks"]["dead"]["delivered_seq"], 0, "{h}");
    assert_eq!(h["status"], "ready", "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_each_sinks_backlog_and_delivered_count() {
    each_backend!(sink_metrics_show_backlog_and_deliveries);
}

// ------------------------------------------------- fail-closed across restarts and nodes

/// A server killed while its blocking sink is past `max_backlog` comes back with the gate
/// closed: the backlog is still there, so secret-bearing operations must still be refused
/// (not served until the dead process's sink lease runs out).
async fn the_gate_stays_closed_across_a_crash(b: Backend) {
    let dir = TempDir::new();
    let srv = Server::start(b).await;
    let secret = format!("fail-closed-{}", random_hex(12));
    let r = resolvable(&srv, "crash-gate", &secret).await;
    let port = dead_port().await;
    let cfg = write_config(
        dir.path(),
        &webhook_sink(
            dir.path(),
            "gate",
            &format!("http://127.0.0.1:{port}/hook"),
            b"k",
            "on_backlog_full = \"block\"\nmax_backlog = 5",
        ),
    );
    let srv = restart(srv, &cfg, &[]).await;
    journal_events(&srv, "crash-gate", 6).await;
    wait_health(&srv, "gate", "the gate to close", 20, |r, h| {
        r["status"] == "degraded" && h["blocking"] == true
    })
    .await;
    resolve(&srv, &r, "run-before-crash")
        .await
        .problem(503, "audit_unavailable");
    kill9(server_pid(&srv));
    let srv = restart(srv, &cfg, &[]).await;
    let t0 = Instant::now();
    // At once after the restart…
    let first = resolve(&srv, &r, "run-after-crash-1").await;
    let first_leaked = first.text.contains(&secret);
    // …and once the new process had a few seconds to look at its sinks (well under the 30 s
    // sink lease the killed process left behind).
    let mut closed_after = None;
    while t0.elapsed() < Duration::from_secs(5) {
        if readyz(&srv).await["audit_sinks"]["gate"]["blocking"] == true {
            closed_after = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = readyz(&srv).await;
    let later = resolve(&srv, &r, "run-after-crash-2").await;
    assert!(
        !first_leaked && !later.text.contains(&secret) && closed_after.is_some(),
        "after a restart, with the blocking sink still more than 5 events behind: the first resolve answered {} \
         ({}), the gate {}, and a resolve {:?} after the restart answered {} ({}); readyz: {h}",
        first.status,
        if first_leaked {
            "with the plaintext"
        } else {
            "without plaintext"
        },
        closed_after.map_or("did not close within 5 s".to_owned(), |t| format!("closed after {t:?}")),
        t0.elapsed(),
        later.status,
        if later.text.contains(&secret) {
            "with the plaintext"
        } else {
            "without plaintext"
        },
    );
    later.problem(503, "audit_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_gate_of_a_blocking_sink_that_is_still_behind_is_closed_at_once() {
    each_backend!(the_gate_stays_closed_across_a_crash);
}

/// Two server nodes on one PostgreSQL database with the same blocking sink: whichever node
/// holds the sink's lease, both must refuse secret-bearing operations while it is behind.
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_postgresql_nodes_a_blocking_sink_behind_its_limit_closes_the_gate_on_both() {
    let dir = TempDir::new();
    let srv = Server::start(Backend::Postgres).await;
    let secret = format!("fail-closed-{}", random_hex(12));
    let r = resolvable(&srv, "two-nodes", &secret).await;
    let port = dead_port().await;
    let cfg = write_config(
        dir.path(),
        &webhook_sink(
            dir.path(),
            "gate",
            &format!("http://127.0.0.1:{port}/hook"),
            b"k",
            "on_backlog_full = \"block\"\nmax_backlog = 5",
        ),
    );
    let srv = restart(srv, &cfg, &[]).await;
    journal_events(&srv, "two-nodes", 6).await;
    wait_health(&srv, "gate", "node 1 to close its gate", 20, |r, h| {
        r["status"] == "degraded" && h["blocking"] == true
    })
    .await;
    // Node 2: the same database and key file, its own data directory.
    let data2 = TempDir::new();
    std::fs::copy(srv.data.path().join("keyring.json"), data2.path().join("keyring.json")).unwrap();
    let url = srv.pg.as_ref().unwrap().url.clone();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut node2 = Server::start_opts(
        Backend::Postgres,
        data2,
        None,
        &["--database-url", &url, "--config", &cfg_s],
        &[],
    )
    .await;
    node2.admin = srv.admin.clone();
    node2.org_id = srv.org_id.clone();
    node2.ws_id = srv.ws_id.clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let h = readyz(&node2).await;
    let resp = resolve(&node2, &r, "run-node2").await;
    assert!(
        !resp.text.contains(&secret),
        "node 2 resolved with the plaintext ({}) while the blocking sink is behind (node 1 refuses); node 2's readyz: {h}",
        resp.status
    );
    resp.problem(503, "audit_unavailable");
    resolve(&srv, &r, "run-node1").await.problem(503, "audit_unavailable");
}

/// Refused resolves must not eat the failed-test detector's window: after three refusals, three
/// failed tests of the same credential still raise `alert.test_failures` (or the refusals
/// themselves raised it).
async fn refusals_do_not_silence_the_test_failure_alert(b: Backend) {
    let dir = TempDir::new();
    let cfg = write_config(
        dir.path(),
        "[alerts]\ntest_failures_per_credential = { count = 3, window_secs = 300 }\n",
    );
    let srv = start(b, &cfg, &["--egress-allow", "127.0.0.0/8"]).await;
    let org = srv.org_id.clone();
    let r = resolvable(&srv, "silenced", "pw-silenced-1").await;
    srv.call(
        "POST",
        &format!("/v1/credentials/{}/disable", r.cred),
        Some(&srv.admin),
        None,
    )
    .await
    .ok(200);
    for i in 0..3 {
        resolve(&srv, &r, &format!("run-{i}"))
            .await
            .problem(409, "credential_disabled");
    }
    assert_eq!(alerts(&srv, &org, "alert.resolve_refused").await.len(), 3);
    srv.call(
        "POST",
        &format!("/v1/credentials/{}/enable", r.cred),
        Some(&srv.admin),
        None,
    )
    .await
    .ok(200);
    let port = dead_port().await;
    let conn = id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "pg-closed", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "127.0.0.1", "port": port, "database": "x"}, "credential_id": r.cred}),
        )
        .await
        .ok(201));
    for _ in 0..3 {
        let t = srv
            .post(&format!("/v1/connections/{conn}/test"), &srv.admin, json!({}))
            .await
            .ok(200);
        assert_eq!(t["ok"], false, "{t}");
    }
    let got = alerts(&srv, &org, "alert.test_failures").await;
    assert!(
        !got.is_empty(),
        "3 failed tests of {} within 300 s (test_failures_per_credential = 3/300s) raised no alert.test_failures \
         after 3 refused resolves of the same credential",
        r.cred
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_resolves_do_not_silence_the_failed_test_alert_of_the_same_credential() {
    each_backend!(refusals_do_not_silence_the_test_failure_alert);
}

// ---------------------------------------------------------------------- file rotation

async fn a_rotating_file_sink_keeps_every_event(b: Backend) {
    let dir = TempDir::new();
    let file = dir.path().join("audit.jsonl");
    let small = dir.path().join("small.jsonl");
    let toml = format!(
        "{}{}",
        file_sink("rotating", &file, "json", "max_bytes = 4000\nkeep = 50\nbatch_size = 5"),
        file_sink("small", &small, "json", "max_bytes = 4000\nkeep = 2\nbatch_size = 5")
    );
    let cfg = write_config(dir.path(), &toml);
    let srv = start(b, &cfg, &[]).await;
    for i in 0..20 {
        srv.database_credential(&srv.admin, &format!("rotate-{i}"), "pw-rotate-1")
            .await;
    }
    journal_events(&srv, "rotate", 40).await;
    let records = wait_file_sink_complete(&srv, &file, "the rotating file sink", 30).await;
    let seqs: Vec<i64> = records.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let (distinct, dups) = in_order("rotated files", &seqs);
    assert_eq!(dups, 0);
    assert_has_all("rotated files", &distinct, &journal(&srv).await);
    let rotated = |p: &Path| {
        (1..=60)
            .filter(|n| {
                let mut f = p.as_os_str().to_owned();
                f.push(format!(".{n}"));
                PathBuf::from(f).exists()
            })
            .count()
    };
    assert!(rotated(&file) >= 3, "the sink rotated: {} files", rotated(&file));
    // Rotation happens before a batch is appended, so a file holds at most max_bytes plus one
    // batch.
    let d = Deadline::new(20, "the small sink to deliver everything");
    let max = *journal(&srv).await.keys().max().unwrap();
    while readyz(&srv).await["audit_sinks"]["small"]["delivered_seq"] != max {
        d.tick(String::new).await;
    }
    assert_eq!(rotated(&small), 2, "keep = 2 keeps two rotated files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sink_rotates_by_size_and_every_event_is_in_one_of_its_files() {
    each_backend!(a_rotating_file_sink_keeps_every_event);
}

// ---------------------------------------------------------------------------- dead letters

async fn dead_letter(b: Backend) {
    let dir = TempDir::new();
    let secret = b"dead-letter-hook-secret";
    let hook = Hook::start(secret).await;
    let poison = format!("poison-{}", random_hex(4));
    hook.set_mode(HookMode::RejectContaining(poison.clone()));
    let cfg = write_config(
        dir.path(),
        &webhook_sink(
            dir.path(),
            "hook",
            &hook.url(),
            secret,
            "batch_size = 50\non_backlog_full = \"block\"\nmax_backlog = 20",
        ),
    );
    let srv = start(b, &cfg, &[]).await;
    // With `block` and a backlog limit of 20, a burst of creates may outrun the forwarder for
    // a moment (503 audit_unavailable, the gate working as configured); each create waits for
    // it to catch up. Were the poisoned event to stall the sink, the gate would stay closed
    // and this would time out.
    let create = |name: String, pw: &'static str| {
        let srv = &srv;
        async move {
            let d = Deadline::new(30, format!("the gate to let {name} through"));
            loop {
                let body = json!({"name": name, "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
                                  "fields": {"username": "loader", "password": pw}});
                let r = srv.post("/v1/credentials", &srv.admin, body).await;
                if r.status != 503 {
                    return r.ok(201);
                }
                d.tick(|| r.text.clone()).await;
            }
        }
    };
    create("before".into(), "pw-dl-1").await;
    let bad = create(poison.clone(), "pw-dl-2").await;
    for i in 0..30 {
        create(format!("after-{i}"), "pw-dl-3").await;
    }
    let poisoned: Vec<i64> = journal(&srv)
        .await
        .into_iter()
        .filter(|(_, e)| e.to_string().contains(&poison))
        .map(|(s, _)| s)
        .collect();
    assert_eq!(poisoned.len(), 1, "one event names the poisoned credential");
    let poison_seq = poisoned[0];
    // Everything else arrives; the poisoned event is parked, with an alert (which arrives too).
    let d = Deadline::new(30, "every event but the refused one at the webhook");
    loop {
        let want: Vec<i64> = journal(&srv)
            .await
            .keys()
            .copied()
            .filter(|s| *s != poison_seq)
            .collect();
        let got: BTreeSet<i64> = hook.seqs().into_iter().collect();
        let alert_in = hook
            .state
            .lock()
            .unwrap()
            .events
            .iter()
            .any(|e| e["action"] == "alert.audit_dead_letter");
        if want.iter().all(|s| got.contains(s)) && alert_in {
            break;
        }
        d.tick(|| format!("{} missing", want.iter().filter(|s| !got.contains(s)).count()))
            .await;
    }
    assert!(!hook.seqs().contains(&poison_seq));
    hook.assert_all_signed();
    in_order("dead-letter webhook", &hook.seqs());
    let sinks = readyz(&srv).await;
    let h = &sinks["audit_sinks"]["hook"];
    assert_eq!(h["parked"][0]["seq"], poison_seq, "{sinks}");
    assert!(st(&h["parked"][0]["error"]).contains("413"), "{sinks}");
    assert_eq!(h["blocking"], false, "forwarding did not stall behind it: {sinks}");
    let alerts = alerts(&srv, "_instance", "alert.audit_dead_letter").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["details"]["seq"], poison_seq);
    // The event itself stays in the journal, and the journal still verifies.
    let v = srv.get("/v1/audit/verify", &srv.admin).await.ok(200);
    assert_eq!(v["ok"], true, "{v}");
    // Secret-bearing operations were never blocked for good.
    srv.database_credential(&srv.admin, "last", "pw-dl-4").await;
    let _ = bad;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_a_sink_refuses_for_good_is_parked_with_an_alert_and_forwarding_moves_on() {
    each_backend!(dead_letter);
}

/// A receiver that takes at most 5 events per request (413 above): everything arrives, in
/// order, nothing is parked, and the forwarder learns the size instead of sending one request
/// per event from then on (what it did before: 300 events cost about 300 requests).
async fn batch_size_adapts(b: Backend) {
    let dir = TempDir::new();
    let secret = b"small-hook-secret";
    let hook = Hook::start(secret).await;
    hook.set_mode(HookMode::MaxEvents(5));
    let cfg = write_config(
        dir.path(),
        &webhook_sink(dir.path(), "hook", &hook.url(), secret, "batch_size = 64"),
    );
    let srv = start(b, &cfg, &[]).await;
    journal_events(&srv, "small", 300).await;
    let d = Deadline::new(60, "every event at the small webhook");
    loop {
        let want: Vec<i64> = journal(&srv).await.keys().copied().collect();
        let got: BTreeSet<i64> = hook.seqs().into_iter().collect();
        if want.len() >= 300 && want.iter().all(|s| got.contains(s)) {
            break;
        }
        d.tick(|| {
            format!(
                "{} of {} missing",
                want.iter().filter(|s| !got.contains(s)).count(),
                want.len()
            )
        })
        .await;
    }
    hook.assert_all_signed();
    in_order("small webhook", &hook.seqs());
    let (events, requests, refused) = {
        let st = hook.state.lock().unwrap();
        (st.events.len(), st.bodies.len(), st.refused)
    };
    eprintln!("{b:?}: {events} events in {requests} accepted requests, {refused} refused");
    let sinks = readyz(&srv).await;
    assert_eq!(sinks["audit_sinks"]["hook"]["dead_letters"], 0, "{sinks}");
    // Batches of 4 (64 -> 32 -> 16 -> 8 -> 4 is the largest run taken), then 8 after eight
    // full ones (refused, split, back to 4): about events / 4 requests, not one per event.
    assert!(
        requests * 2 < events,
        "{requests} accepted requests (and {refused} refused) for {events} events"
    );
    assert!(refused < events / 4, "{refused} refused requests for {events} events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_refuses_large_batches_gets_smaller_ones_and_every_event() {
    each_backend!(batch_size_adapts);
}

// ----------------------------------------------------------------- PostgreSQL sequence gaps

/// On PostgreSQL a transaction takes its event's sequence number before it commits. One that
/// holds its number for longer than any fixed wait (here 12 s, past the 10 s the forwarder once
/// waited before skipping) is still delivered once it commits — and the events after it wait
/// their turn, in sequence order. Control: a transaction that takes a number and rolls back
/// is passed as soon as it has ended.
#[cfg(feature = "postgres-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_event_whose_transaction_held_its_number_for_long_is_still_forwarded_in_order() {
    let dir = TempDir::new();
    let file = dir.path().join("audit.jsonl");
    let cfg = write_config(dir.path(), &file_sink("file", &file, "json", ""));
    let srv = start(Backend::Postgres, &cfg, &[]).await;
    let url = srv.pg.as_ref().unwrap().url.clone();
    wait_file_sink_complete(&srv, &file, "the bootstrap events in the file", 20).await;

    // A transaction that takes a number (after getting an xid, as every writer has by then:
    // it holds the chain head's row lock) and keeps it.
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<bool>();
    let (seq_tx, seq_rx) = std::sync::mpsc::channel::<i64>();
    let holder = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut t = c.transaction().unwrap();
        t.query_one("SELECT pg_current_xact_id()::text", &[]).unwrap();
        let n: i64 = t.query_one("SELECT nextval('audit_seq')", &[]).unwrap().get(0);
        seq_tx.send(n).unwrap();
        let commit = hold_rx.recv().unwrap();
        if commit {
            t.execute(
                "INSERT INTO audit_events (seq, chain, at, actor_kind, action, outcome, details, prev_hash, hash) \
                 VALUES ($1, '_gap_test', 0, 'system', 'test.held_number', 'success', '{}', '\\x00', '\\x00')",
                &[&n],
            )
            .unwrap();
            t.commit().unwrap();
        } else {
            t.rollback().unwrap();
        }
    });
    let held = seq_rx.recv().unwrap();
    for i in 0..3 {
        srv.database_credential(&srv.admin, &format!("after-gap-{i}"), "pw-gap")
            .await;
    }
    let after: Vec<i64> = journal(&srv).await.keys().copied().filter(|s| *s > held).collect();
    assert!(!after.is_empty());
    // 12 s: the events after the held number wait behind it.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (records, _) = read_json_sink(&file);
    let got: Vec<i64> = records.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        !got.iter().any(|s| *s >= held),
        "forwarded past an open transaction's number: {got:?} (held {held})"
    );
    hold_tx.send(true).unwrap();
    holder.join().unwrap();
    let d = Deadline::new(20, "the held event and the ones after it in the file");
    let got = loop {
        let (records, _) = read_json_sink(&file);
        let got: Vec<i64> = records.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        if got.contains(&held) && after.iter().all(|s| got.contains(s)) {
            break got;
        }
        d.tick(|| format!("{got:?}")).await;
    };
    let pos = got.iter().position(|s| *s == held).unwrap();
    assert!(
        after.iter().all(|s| got.iter().position(|g| g == s).unwrap() > pos),
        "{got:?}"
    );
    in_order("gap file sink", &got);

    // Control: a number taken and rolled back is passed as soon as its transaction ended.
    let url = srv.pg.as_ref().unwrap().url.clone();
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<bool>();
    let (seq_tx, seq_rx) = std::sync::mpsc::channel::<i64>();
    let holder = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut t = c.transaction().unwrap();
        t.query_one("SELECT pg_current_xact_id()::text", &[]).unwrap();
        let n: i64 = t.query_one("SELECT nextval('audit_seq')", &[]).unwrap().get(0);
        seq_tx.send(n).unwrap();
        let _ = hold_rx.recv().unwrap();
        t.rollback().unwrap();
    });
    let lost = seq_rx.recv().unwrap();
    srv.database_credential(&srv.admin, "after-rollback", "pw-gap").await;
    hold_tx.send(false).unwrap();
    holder.join().unwrap();
    let t = Instant::now();
    wait_file_sink_complete(&srv, &file, "the events after a rolled-back number", 10).await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a rolled-back number held forwarding for {:?}",
        t.elapsed()
    );
    let (records, _) = read_json_sink(&file);
    assert!(!records.iter().any(|e| e["seq"] == lost));
}
