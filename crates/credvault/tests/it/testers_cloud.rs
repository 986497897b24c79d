//! Test connection for the cloud testers, over real HTTP, on SQLite and PostgreSQL:
//!
//! - AWS (feature `moto-tests`) against moto: one moto without auth (any key works) and one
//!   enforcing SigV4 for a real IAM user — right key, wrong secret, unknown key ID, an
//!   `assume_role` with an external ID, a two-hop role chain, a chain whose root key is wrong
//!   (the failing hop is named), Redshift with an AWS credential, and the secret access key
//!   never showing in results, audit or logs;
//! - GCP service accounts and Azure service principals against a hand-rolled OAuth token
//!   endpoint that really verifies the RS256 assertions (with `openssl dgst -verify` on a key
//!   generated at test time), the claims (`iss`, `sub`, `aud`, `exp`…) and, for Azure
//!   certificates, the `x5t` thumbprint; where the token URL comes from; the variants that
//!   cannot be tested from the server (`unsupported`, without a request); secrets never leaving;
//! - egress: token and STS endpoints on metadata and private addresses are refused even with
//!   `--egress-allow 127.0.0.0/8`, redirects are not followed, and under the default policy
//!   loopback is refused by address and by name;
//! - AWS role chain shapes: more than five hops, and loops, are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::{closed_port, random_hex, st};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, Server, TempDir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `serve` arguments that let the server reach loopback (the stubs and moto).
const ALLOW_LOOPBACK: [&str; 2] = ["--egress-allow", "127.0.0.0/8"];

/// The scope an Azure Blob connection asks for.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

// ------------------------------------------------------------------------------- helpers

/// A random UUID-shaped string (what Azure client and tenant IDs look like).
fn uuid() -> String {
    let h = random_hex(16);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn id(v: &Value) -> String {
    st(&v["id"])
}

fn b64_with(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(alphabet[(n >> 18) as usize & 63] as char);
        out.push(alphabet[(n >> 12) as usize & 63] as char);
        if c.len() > 1 {
            out.push(alphabet[(n >> 6) as usize & 63] as char);
        } else if pad {
            out.push('=');
        }
        if c.len() > 2 {
            out.push(alphabet[n as usize & 63] as char);
        } else if pad {
            out.push('=');
        }
    }
    out
}

/// Standard base64 with padding.
fn b64(data: &[u8]) -> String {
    b64_with(
        data,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

/// base64url without padding (JWT).
fn b64url(data: &[u8]) -> String {
    b64_with(
        data,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

/// Decodes base64 in either alphabet, padding optional.
fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Percent-encoding of everything but unreserved characters.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let dec = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let h = std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match h {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Asserts that none of the usual spellings of `secret` occurs in `hay`.
#[track_caller]
fn assert_no_secret(what: &str, hay: &str, secret: &str) {
    assert!(secret.len() >= 8, "a secret this short proves nothing: {secret:?}");
    let json_escaped = serde_json::to_string(secret).unwrap();
    let json_escaped = json_escaped.trim_matches('"');
    for form in [
        secret.to_owned(),
        b64(secret.as_bytes()),
        pct(secret),
        json_escaped.to_owned(),
    ] {
        assert!(!hay.contains(&form), "{what} contains the secret (as `{form}`):\n{hay}");
    }
}

/// The base64 body lines of a PEM document: each one alone gives part of the key away, so
/// each one must stay out of everything the server shows or stores in the clear.
fn pem_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

/// Creates a credential as admin and returns its ID.
async fn credential(srv: &Server, name: &str, ty: &str, variant: &str, fields: Value) -> String {
    id(&srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": name, "type": ty, "variant": variant, "workspace_id": srv.ws_id,
                   "environment": "prod", "fields": fields}),
        )
        .await
        .ok(201))
}

/// Creates a connection as admin and returns its ID.
async fn connection(srv: &Server, name: &str, kind: &str, config: Value, cred: &str) -> String {
    id(&srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": kind,
                   "config": config, "credential_id": cred}),
        )
        .await
        .ok(201))
}

/// POST /v1/connections/{id}/test as admin, expecting 200.
async fn test_conn(srv: &Server, conn: &str) -> Value {
    srv.post(&format!("/v1/connections/{conn}/test"), &srv.admin, json!({}))
        .await
        .ok(200)
}

/// POST /v1/credentials/{id}/test as admin, expecting 200.
async fn test_cred(srv: &Server, cred: &str) -> Value {
    srv.post(&format!("/v1/credentials/{cred}/test"), &srv.admin, json!({}))
        .await
        .ok(200)
}

fn message(r: &Value) -> String {
    r["error"]["message"].as_str().unwrap_or_default().to_owned()
}

#[track_caller]
fn assert_passed(what: &str, r: &Value) {
    assert_eq!(r["ok"], true, "{what}: the test should pass: {r}");
    assert!(r.get("error").is_none_or(Value::is_null), "{what}: {r}");
    assert!(r["latency_ms"].is_u64(), "{what}: {r}");
}

#[track_caller]
fn assert_failed(what: &str, r: &Value, expected: &str) {
    assert_eq!(r["ok"], false, "{what}: the test should fail with {expected}: {r}");
    assert_eq!(r["error"]["code"], expected, "{what}: {r}");
    assert!(r["error"]["message"].is_string(), "{what}: {r}");
    assert!(r["latency_ms"].is_u64(), "{what}: {r}");
}

/// Runs `f` on every backend, each to its end even when another fails, then fails with every
/// backend's panic (so a report shows each backend's outcome).
async fn on_every_backend<F, Fut>(f: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut failed = Vec::new();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        if let Err(e) = tokio::spawn(f(backend)).await {
            let msg = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".to_owned()),
                Err(e) => e.to_string(),
            };
            eprintln!("--- backend {backend:?} FAILED");
            failed.push(format!("[{backend:?}] {msg}"));
        } else {
            eprintln!("--- backend {backend:?} passed");
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Every audit event (all actions, all pages) as one JSON text.
async fn audit_text(srv: &Server) -> String {
    let mut out = Vec::new();
    let mut path = "/v1/audit?limit=200".to_owned();
    loop {
        let page = srv.get(&path, &srv.admin).await.ok(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/audit?limit=200&cursor={c}"),
            None => break,
        }
    }
    assert!(
        out.iter().any(|e| e["action"] == "connection.test"),
        "no connection.test event in the audit log"
    );
    serde_json::to_string(&out).unwrap()
}

/// Everything readable about these connections and credentials, the whole audit log and the
/// server's logs: none may hold a secret.
async fn assert_nowhere(srv: &Server, results: &[Value], conns: &[&str], creds: &[&str], secrets: &[String]) {
    let mut shown = serde_json::to_string(results).unwrap();
    for c in conns {
        shown.push_str(&srv.get(&format!("/v1/connections/{c}"), &srv.admin).await.text);
    }
    for c in creds {
        shown.push_str(&srv.get(&format!("/v1/credentials/{c}"), &srv.admin).await.text);
    }
    shown.push_str(&srv.get("/v1/connections?limit=500", &srv.admin).await.text);
    let audit = audit_text(srv).await;
    let logs = srv.logs();
    for s in secrets {
        assert_no_secret("the results and resources", &shown, s);
        assert_no_secret("the audit log", &audit, s);
        assert_no_secret("the server logs", &logs, s);
    }
}

// ---------------------------------------------------------------------- keys (openssl)

/// Runs openssl in `dir` and returns its stdout (panics when it fails).
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("cannot run openssl (these tests need the openssl command, e.g. /usr/bin/openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A key pair generated for this test run, in its own directory.
struct KeyPair {
    dir: TempDir,
    /// The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    private_pem: String,
    /// The public key (SubjectPublicKeyInfo PEM), for the endpoint to verify with.
    public_path: PathBuf,
}

impl KeyPair {
    fn rsa() -> KeyPair {
        Self::generate(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    }

    fn ec() -> KeyPair {
        Self::generate(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    }

    fn generate(alg: &[&str]) -> KeyPair {
        let dir = TempDir::new();
        let mut args = vec!["genpkey"];
        args.extend_from_slice(alg);
        args.extend_from_slice(&["-out", "key.pem"]);
        openssl(dir.path(), &args);
        openssl(dir.path(), &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
        let private_pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{private_pem}");
        let public_path = dir.path().join("pub.pem");
        KeyPair {
            dir,
            private_pem,
            public_path,
        }
    }

    /// The same key in PKCS#1 form (`BEGIN RSA PRIVATE KEY`).
    fn pkcs1_pem(&self) -> String {
        let pem = openssl(self.dir.path(), &["pkey", "-in", "key.pem", "-traditional"]);
        let pem = String::from_utf8(pem).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
        pem
    }

    /// A self-signed certificate for this key: its PEM and its thumbprints.
    fn self_signed(&self, name: &str) -> Cert {
        let dir = self.dir.path();
        let (pem_file, der_file) = (format!("{name}.pem"), format!("{name}.der"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "key.pem",
                "-subj",
                "/CN=credvault-test",
                "-days",
                "1",
                "-out",
                &pem_file,
            ],
        );
        openssl(dir, &["x509", "-in", &pem_file, "-outform", "DER", "-out", &der_file]);
        let sha1 = openssl(dir, &["dgst", "-sha1", "-binary", &der_file]);
        assert_eq!(sha1.len(), 20);
        let sha256 = openssl(dir, &["dgst", "-sha256", "-binary", &der_file]);
        assert_eq!(sha256.len(), 32);
        Cert {
            pem: std::fs::read_to_string(dir.join(&pem_file)).unwrap(),
            thumbprints: Thumbprints {
                x5t: b64url(&sha1),
                x5t_s256: b64url(&sha256),
            },
        }
    }
}

/// The JWT header thumbprints of a certificate: base64url of the SHA-1 (`x5t`) and SHA-256
/// (`x5t#S256`) of its DER.
#[derive(Clone, Debug, PartialEq)]
struct Thumbprints {
    x5t: String,
    x5t_s256: String,
}

/// A certificate made for a test.
struct Cert {
    pem: String,
    thumbprints: Thumbprints,
}

// --------------------------------------------------------------- the token endpoint

/// A service account the endpoint knows: its email and public key.
#[derive(Clone)]
struct GcpAccount {
    email: String,
    public_path: PathBuf,
}

/// An app registration the endpoint knows.
#[derive(Clone)]
struct AzureApp {
    client_id: String,
    /// The client secret it accepts (client_secret grants).
    secret: Option<String>,
    /// The certificate's public key and thumbprints (client assertions).
    cert: Option<(PathBuf, Thumbprints)>,
    /// Refuses with an `error` that echoes the secret it was sent (a careless endpoint).
    echo: bool,
}

/// What the endpoint accepts.
#[derive(Clone, Default)]
struct Registry {
    gcp: Vec<GcpAccount>,
    /// The Azure tenant in the path `/{tenant}/oauth2/v2.0/token`.
    tenant: String,
    azure: Vec<AzureApp>,
    /// Answers every request with `307 Temporary Redirect` to this URL instead.
    redirect: Option<String>,
}

/// One request the endpoint answered, and what it made of it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    form: Vec<(String, String)>,
    status: u16,
    verdict: String,
    /// Whether an RS256 signature was checked and found valid with a known public key.
    signature_verified: bool,
    /// The access token issued, if any.
    token: Option<String>,
}

impl Seen {
    fn form(&self, k: &str) -> Option<&str> {
        self.form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

struct RawReq {
    method: String,
    path: String,
    host: String,
    content_type: String,
    body: Vec<u8>,
}

/// The answer: status, body, verdict, whether a signature was verified.
type Answer = (u16, Value, String, bool);

fn refuse(status: u16, error: &str, why: impl Into<String>) -> Answer {
    (
        status,
        json!({"error": error, "error_description": "refused by the test endpoint"}),
        why.into(),
        false,
    )
}

/// A decoded JWT.
struct Jwt {
    header: Value,
    claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn parse_jwt(s: &str) -> Result<Jwt, String> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("a JWT has 3 parts, this one {}", parts.len()));
    }
    let json = |p: &str, what: &str| -> Result<Value, String> {
        let raw = b64_decode(p).ok_or(format!("the {what} is not base64url"))?;
        serde_json::from_slice(&raw).map_err(|_| format!("the {what} is not JSON"))
    };
    Ok(Jwt {
        header: json(parts[0], "header")?,
        claims: json(parts[1], "claims")?,
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature: b64_decode(parts[2]).ok_or("the signature is not base64url")?,
    })
}

impl Jwt {
    /// RS256: RSASSA-PKCS1-v1_5 with SHA-256 over `header.claims`, checked by openssl.
    fn verify(&self, public_pem: &Path) -> bool {
        let scratch = TempDir::new();
        let (data, sig) = (scratch.path().join("data.bin"), scratch.path().join("sig.bin"));
        std::fs::write(&data, self.signing_input.as_bytes()).unwrap();
        std::fs::write(&sig, &self.signature).unwrap();
        let out = Command::new("openssl")
            .arg("dgst")
            .arg("-sha256")
            .arg("-verify")
            .arg(public_pem)
            .arg("-signature")
            .arg(&sig)
            .arg(&data)
            .output()
            .expect("cannot run openssl");
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
    }

    fn claim(&self, k: &str) -> Option<&str> {
        self.claims.get(k).and_then(Value::as_str)
    }

    /// `exp` in the future and at most an hour away; `iat`/`nbf`, when present, not in the
    /// future.
    fn times_ok(&self) -> Result<(), String> {
        let now = now_secs();
        let exp = self.claims["exp"].as_i64().ok_or("no exp")?;
        if exp <= now {
            return Err("exp is in the past".into());
        }
        if exp > now + 3600 + 60 {
            return Err("exp is more than an hour away".into());
        }
        for k in ["iat", "nbf"] {
            if let Some(v) = self.claims.get(k) {
                let t = v.as_i64().ok_or(format!("{k} is not a number"))?;
                if t > now + 60 {
                    return Err(format!("{k} is in the future"));
                }
            }
        }
        Ok(())
    }
}

fn token_ok(why: &str) -> Answer {
    (
        200,
        json!({"access_token": format!("stub-access-token-{}", random_hex(12)), "token_type": "Bearer", "expires_in": 3600}),
        why.to_owned(),
        true,
    )
}

/// The OAuth token endpoint's logic (blocking: it runs openssl).
fn answer(reg: &Registry, req: &RawReq) -> Answer {
    if req.method != "POST" {
        return refuse(405, "invalid_request", "not a POST");
    }
    if !req.content_type.starts_with("application/x-www-form-urlencoded") {
        return refuse(400, "invalid_request", format!("content type {}", req.content_type));
    }
    let url = format!("http://{}{}", req.host, req.path);
    let form = parse_form(&req.body);
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match get("grant_type") {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => gcp_answer(reg, &url, get("assertion")),
        Some("client_credentials") => azure_answer(reg, &url, &req.path, &get),
        other => refuse(400, "unsupported_grant_type", format!("grant_type {other:?}")),
    }
}

/// Google's JWT bearer grant: the assertion's `iss` names a known service account whose key
/// signed it, `aud` is this endpoint's URL.
fn gcp_answer(reg: &Registry, url: &str, assertion: Option<&str>) -> Answer {
    let Some(assertion) = assertion else {
        return refuse(400, "invalid_request", "no assertion");
    };
    let jwt = match parse_jwt(assertion) {
        Ok(j) => j,
        Err(e) => return refuse(400, "invalid_grant", e),
    };
    if jwt.header["alg"] != "RS256" || jwt.header["typ"] != "JWT" {
        return refuse(400, "invalid_grant", format!("header {}", jwt.header));
    }
    let iss = jwt.claim("iss").unwrap_or_default();
    let Some(sa) = reg.gcp.iter().find(|a| a.email == iss) else {
        return refuse(400, "invalid_grant", format!("unknown service account {iss}"));
    };
    if !jwt.verify(&sa.public_path) {
        return refuse(400, "invalid_grant", "Invalid JWT Signature.");
    }
    if let Some(sub) = jwt.claim("sub")
        && sub != iss
    {
        return refuse(400, "invalid_grant", format!("sub {sub} is not iss {iss}"));
    }
    if jwt.claim("aud") != Some(url) {
        return refuse(400, "invalid_grant", format!("aud {:?} is not {url}", jwt.claim("aud")));
    }
    if let Err(e) = jwt.times_ok() {
        return refuse(400, "invalid_grant", e);
    }
    if jwt.claim("scope").is_none_or(str::is_empty) {
        return refuse(400, "invalid_scope", "no scope");
    }
    token_ok("signature verified; iss, sub, aud, exp and scope checked")
}

/// Entra ID's client credentials grant, with a client secret or a certificate-signed client
/// assertion.
fn azure_answer<'a>(reg: &Registry, url: &str, path: &str, get: &dyn Fn(&str) -> Option<&'a str>) -> Answer {
    if path != format!("/{}/oauth2/v2.0/token", reg.tenant) {
        return refuse(400, "invalid_request", format!("unknown tenant path {path}"));
    }
    if get("scope") != Some(STORAGE_SCOPE) {
        return refuse(400, "invalid_scope", format!("scope {:?}", get("scope")));
    }
    let client_id = get("client_id").unwrap_or_default();
    let Some(app) = reg.azure.iter().find(|a| a.client_id == client_id) else {
        return refuse(400, "unauthorized_client", format!("unknown client {client_id}"));
    };
    if let Some(secret) = get("client_secret") {
        if app.echo {
            return (
                401,
                json!({"error": format!("invalid_client: the secret {secret} is wrong")}),
                "echoed the secret".into(),
                false,
            );
        }
        return match &app.secret {
            Some(s) if s == secret => token_ok("client secret checked"),
            _ => refuse(401, "invalid_client", "wrong client secret"),
        };
    }
    if get("client_assertion_type") != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
        return refuse(400, "invalid_request", "neither a client secret nor a client assertion");
    }
    let Some((public, thumbs)) = &app.cert else {
        return refuse(401, "invalid_client", "no certificate registered");
    };
    let jwt = match parse_jwt(get("client_assertion").unwrap_or_default()) {
        Ok(j) => j,
        Err(e) => return refuse(401, "invalid_client", e),
    };
    if jwt.header["alg"] != "RS256" {
        return refuse(401, "invalid_client", format!("header {}", jwt.header));
    }
    if jwt.header["x5t"].as_str() != Some(thumbs.x5t.as_str()) {
        return refuse(
            401,
            "invalid_client",
            format!(
                "x5t {} is not the registered certificate's {}",
                jwt.header["x5t"], thumbs.x5t
            ),
        );
    }
    // x5t#S256 is optional; when sent, it must name the same certificate.
    if let Some(s256) = jwt.header.get("x5t#S256")
        && s256.as_str() != Some(thumbs.x5t_s256.as_str())
    {
        return refuse(
            401,
            "invalid_client",
            format!("x5t#S256 {s256} is not the registered certificate's"),
        );
    }
    if !jwt.verify(public) {
        return refuse(
            401,
            "invalid_client",
            "the client assertion's signature does not verify",
        );
    }
    if jwt.claim("iss") != Some(client_id) || jwt.claim("sub") != Some(client_id) {
        return refuse(401, "invalid_client", format!("iss/sub {}", jwt.claims));
    }
    if jwt.claim("aud") != Some(url) {
        return refuse(
            401,
            "invalid_client",
            format!("aud {:?} is not {url}", jwt.claim("aud")),
        );
    }
    if jwt.claim("jti").is_none_or(str::is_empty) {
        return refuse(401, "invalid_client", "no jti");
    }
    if let Err(e) = jwt.times_ok() {
        return refuse(401, "invalid_client", e);
    }
    token_ok("client assertion verified; x5t, x5t#S256, iss, sub, aud, jti and times checked")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    match tokio::time::timeout(Duration::from_secs(5), s.read(buf)).await {
        Ok(Ok(n)) if n > 0 => Some(n),
        _ => None,
    }
}

/// Reads one HTTP/1.1 request with its `content-length` body.
async fn read_request(s: &mut TcpStream) -> Option<RawReq> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = read_some(s, &mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let len = header("content-length").parse::<usize>().unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let n = read_some(s, &mut chunk).await?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some(RawReq {
        method,
        path,
        host: header("host"),
        content_type: header("content-type"),
        body,
    })
}

/// A token endpoint on 127.0.0.1 answering minimal HTTP/1.1, one request per connection.
struct TokenEndpoint {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenEndpoint {
    async fn start(reg: Registry) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (reg, log) = (Arc::new(reg), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (reg, log) = (reg.clone(), log.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let (reg2, req) = (reg.clone(), Arc::new(req));
                    let r2 = req.clone();
                    let (status, body, verdict, verified) = match &reg.redirect {
                        Some(_) => (307, json!({}), "redirected".to_owned(), false),
                        None => tokio::task::spawn_blocking(move || answer(&reg2, &r2)).await.unwrap(),
                    };
                    log.lock().unwrap().push(Seen {
                        path: req.path.clone(),
                        form: parse_form(&req.body),
                        status,
                        verdict,
                        signature_verified: verified,
                        token: body["access_token"].as_str().map(str::to_owned),
                    });
                    let body = body.to_string();
                    let reason = match status {
                        200 => "OK",
                        400 => "Bad Request",
                        401 => "Unauthorized",
                        307 => "Temporary Redirect",
                        _ => "Whatever",
                    };
                    let location = reg
                        .redirect
                        .as_ref()
                        .map(|l| format!("location: {l}\r\n"))
                        .unwrap_or_default();
                    let out = format!(
                        "HTTP/1.1 {status} {reason}\r\n{location}content-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TokenEndpoint { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT`
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request answered (panics when there was none).
    #[track_caller]
    fn last(&self) -> Seen {
        self.seen().last().cloned().expect("the token endpoint was not reached")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Every access token issued so far.
    fn tokens(&self) -> Vec<String> {
        self.seen().into_iter().filter_map(|s| s.token).collect()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------- 1. AWS

/// An `s3` connection whose STS calls go to `sts`.
async fn s3_conn(srv: &Server, name: &str, sts: &str, cred: &str) -> String {
    connection(
        srv,
        name,
        "s3",
        json!({"bucket": "b", "region": "us-east-1", "sts_endpoint_url": sts}),
        cred,
    )
    .await
}

#[cfg(feature = "moto-tests")]
mod aws {
    use super::*;

    /// The two moto servers scripts/test starts.
    pub struct Moto {
        /// moto without auth: any key works.
        pub open: String,
        /// moto enforcing SigV4 for a real IAM user.
        pub auth: String,
        pub key_id: String,
        pub secret: String,
    }

    fn env(name: &str) -> String {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => v,
            _ => panic!(
                "{name} is not set: the moto-tests feature needs two moto servers \
                 (CREDVAULT_TEST_MOTO_URL without auth; CREDVAULT_TEST_MOTO_AUTH_URL, \
                 CREDVAULT_TEST_MOTO_AUTH_KEY_ID and CREDVAULT_TEST_MOTO_AUTH_SECRET with SigV4 \
                 enforced). scripts/test starts them; by hand: `source scripts/lib/moto.sh; \
                 moto_start DIR PORT; moto_auth_start DIR PORT2` and export the variables"
            ),
        }
    }

    impl Moto {
        pub fn from_env() -> Moto {
            Moto {
                open: env("CREDVAULT_TEST_MOTO_URL"),
                auth: env("CREDVAULT_TEST_MOTO_AUTH_URL"),
                key_id: env("CREDVAULT_TEST_MOTO_AUTH_KEY_ID"),
                secret: env("CREDVAULT_TEST_MOTO_AUTH_SECRET"),
            }
        }

        /// A signed call (`iam`, `sts`) on the SigV4 moto, as the IAM user.
        async fn call(&self, service: &str, form: &[(&str, &str)]) -> (u16, String) {
            let url = reqwest::Url::parse(&format!("{}/", self.auth.trim_end_matches('/'))).unwrap();
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={}", pct(v)))
                .collect::<Vec<_>>()
                .join("&");
            let creds = credvault_connect::aws::AwsCredentials {
                access_key_id: self.key_id.clone(),
                secret_access_key: self.secret.clone().into(),
                session_token: None,
            };
            let headers = credvault_connect::aws::sign(
                &credvault_connect::aws::SignedRequest {
                    method: "POST",
                    url: &url,
                    region: "us-east-1",
                    service,
                    headers: vec![(
                        "content-type".into(),
                        "application/x-www-form-urlencoded; charset=utf-8".into(),
                    )],
                    body: body.as_bytes(),
                },
                &creds,
                time::OffsetDateTime::now_utc(),
            );
            let mut req = reqwest::Client::new().post(url).body(body);
            for (k, v) in headers {
                if k != "host" {
                    req = req.header(k, v);
                }
            }
            let r = req.send().await.expect("the SigV4 moto is not reachable");
            (r.status().as_u16(), r.text().await.unwrap())
        }

        /// The ARN of the IAM user (GetCallerIdentity).
        pub async fn user_arn(&self) -> String {
            let (status, body) = self
                .call("sts", &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")])
                .await;
            assert_eq!(status, 200, "GetCallerIdentity on moto: {body}");
            xml(&body, "Arn")
        }

        /// Creates an IAM role that `principal` may assume with `external_id` (moto checks the
        /// trust policy's principal and `sts:ExternalId` condition) and that may do anything (so
        /// its sessions can assume the next role of a chain); returns its ARN.
        pub async fn role(&self, name: &str, principal: &str, external_id: &str) -> String {
            let trust = json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }]})
            .to_string();
            let (status, body) = self
                .call(
                    "iam",
                    &[
                        ("Action", "CreateRole"),
                        ("Version", "2010-05-08"),
                        ("RoleName", name),
                        ("AssumeRolePolicyDocument", &trust),
                    ],
                )
                .await;
            assert_eq!(status, 200, "CreateRole on moto: {body}");
            let arn = xml(&body, "Arn");
            let all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
            let (status, body) = self
                .call(
                    "iam",
                    &[
                        ("Action", "PutRolePolicy"),
                        ("Version", "2010-05-08"),
                        ("RoleName", name),
                        ("PolicyName", "all"),
                        ("PolicyDocument", all),
                    ],
                )
                .await;
            assert_eq!(status, 200, "PutRolePolicy on moto: {body}");
            arn
        }
    }

    /// The text of the first `<tag>` element.
    fn xml(body: &str, tag: &str) -> String {
        body.split(&format!("<{tag}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{tag}>")).next())
            .unwrap_or_else(|| panic!("no {tag} in {body}"))
            .to_owned()
    }

    /// An `aws`/`access_key` credential.
    pub async fn access_key(srv: &Server, name: &str, key_id: &str, secret: &str) -> String {
        credential(
            srv,
            name,
            "aws",
            "access_key",
            json!({"access_key_id": key_id, "secret_access_key": secret, "region": "us-east-1"}),
        )
        .await
    }

    /// An `aws`/`assume_role` credential on top of `source`.
    pub async fn assume_role(
        srv: &Server,
        name: &str,
        role_arn: &str,
        external_id: Option<&str>,
        source: &str,
    ) -> String {
        let mut fields = json!({"role_arn": role_arn, "source_credential_id": source, "session_name": "credvault-it"});
        if let Some(e) = external_id {
            fields["external_id"] = json!(e);
        }
        credential(srv, name, "aws", "assume_role", fields).await
    }

    /// An `s3` connection whose STS calls go to `sts`.
    pub async fn s3(srv: &Server, name: &str, sts: &str, cred: &str) -> String {
        s3_conn(srv, name, sts, cred).await
    }

    /// An access key ID nobody issued.
    pub fn unknown_key_id() -> String {
        format!("AKIA{}", random_hex(8).to_ascii_uppercase())
    }
}

#[cfg(feature = "moto-tests")]
async fn aws_keys_and_role_chains_are_checked_against_sigv4_moto(b: Backend, m: &aws::Moto) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let mut results = Vec::new();
    let wrong_secret = format!("Wr0ng/{}+secret", random_hex(12));
    let unknown_secret = format!("Unkn0wn/{}+secret", random_hex(12));

    let user_arn = m.user_arn().await;
    assert!(user_arn.starts_with("arn:aws:iam::123456789012:user/"), "{user_arn}");

    // The right key: GetCallerIdentity answers, the test passes (twice: per connection and per
    // credential).
    let root = aws::access_key(&srv, "aws-root", &m.key_id, &m.secret).await;
    let c_root = aws::s3(&srv, "s3-root", &m.auth, &root).await;
    let r = test_conn(&srv, &c_root).await;
    assert_passed("the right access key", &r);
    results.push(r);
    let r = test_cred(&srv, &root).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_passed("the right access key, tested per credential", &r["results"][0]);
    results.push(r);

    // The right key ID with a wrong secret: SignatureDoesNotMatch, auth_failed.
    let bad = aws::access_key(&srv, "aws-wrong-secret", &m.key_id, &wrong_secret).await;
    let c_bad = aws::s3(&srv, "s3-wrong-secret", &m.auth, &bad).await;
    let r = test_conn(&srv, &c_bad).await;
    assert_failed("a wrong secret", &r, "auth_failed");
    assert!(message(&r).contains("GetCallerIdentity"), "{r}");
    results.push(r);

    // A key ID moto never issued: InvalidClientTokenId, auth_failed.
    let ghost = aws::access_key(&srv, "aws-unknown-key", &aws::unknown_key_id(), &unknown_secret).await;
    let c_ghost = aws::s3(&srv, "s3-unknown-key", &m.auth, &ghost).await;
    let r = test_conn(&srv, &c_ghost).await;
    assert_failed("an unknown key ID", &r, "auth_failed");
    results.push(r);

    // One hop: the access key assumes a role with an external ID.
    let etl = aws::assume_role(
        &srv,
        "aws-etl",
        "arn:aws:iam::123456789012:role/etl",
        Some("ext-1"),
        &root,
    )
    .await;
    let c_etl = aws::s3(&srv, "s3-etl", &m.auth, &etl).await;
    let r = test_conn(&srv, &c_etl).await;
    assert_passed("an assumed role", &r);
    results.push(r);

    // Two hops on roles that exist in moto's IAM, whose trust policies name exactly who may
    // assume them and with which external ID: the IAM user assumes hop 1 with ext-1, hop 1's
    // session (named credvault-it) assumes hop 2 with ext-2.
    let tag = random_hex(4);
    let (hop1_name, hop2_name) = (format!("etl-hop1-{tag}"), format!("etl-hop2-{tag}"));
    let hop1_arn = m.role(&hop1_name, &user_arn, "ext-1").await;
    assert_eq!(hop1_arn, format!("arn:aws:iam::123456789012:role/{hop1_name}"));
    let hop1_session = format!("arn:aws:sts::123456789012:assumed-role/{hop1_name}/credvault-it");
    let hop2_arn = m.role(&hop2_name, &hop1_session, "ext-2").await;
    let hop1 = aws::assume_role(&srv, "aws-hop1", &hop1_arn, Some("ext-1"), &root).await;
    let hop2 = aws::assume_role(&srv, "aws-hop2", &hop2_arn, Some("ext-2"), &hop1).await;
    let c_hop1 = aws::s3(&srv, "s3-hop1", &m.auth, &hop1).await;
    let r = test_conn(&srv, &c_hop1).await;
    assert_passed("the first hop alone", &r);
    results.push(r);
    let c_hop2 = aws::s3(&srv, "s3-hop2", &m.auth, &hop2).await;
    let r = test_conn(&srv, &c_hop2).await;
    assert_passed("a two-hop role chain", &r);
    results.push(r);

    // The external ID is really sent: a wrong one at hop 2 is refused there (AccessDenied).
    let wrong_ext = aws::assume_role(&srv, "aws-hop2-wrong-ext", &hop2_arn, Some("ext-wrong"), &hop1).await;
    let c = aws::s3(&srv, "s3-hop2-wrong-ext", &m.auth, &wrong_ext).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("a wrong external ID at hop 2", &r, "permission_denied");
    assert!(message(&r).contains("hop 2"), "the failing hop is not named: {r}");
    assert!(message(&r).contains(&hop2_arn), "{r}");
    results.push(r);
    // Hop 2's role trusts hop 1's session, not the IAM user: assumed straight from the key, the
    // trust policy refuses it at hop 1.
    let skipping = aws::assume_role(&srv, "aws-skip-hop1", &hop2_arn, Some("ext-2"), &root).await;
    let c = aws::s3(&srv, "s3-skip-hop1", &m.auth, &skipping).await;
    let r = test_conn(&srv, &c).await;
    assert_failed(
        "a role assumed by a principal it does not trust",
        &r,
        "permission_denied",
    );
    assert!(message(&r).contains("hop 1"), "{r}");
    results.push(r);

    // The same chain on a root key with a wrong secret: the first AssumeRole fails, and the
    // message says so.
    let bad_hop1 = aws::assume_role(&srv, "aws-bad-hop1", &hop1_arn, Some("ext-1"), &bad).await;
    let bad_hop2 = aws::assume_role(
        &srv,
        "aws-bad-hop2",
        "arn:aws:iam::123456789012:role/loader",
        None,
        &bad_hop1,
    )
    .await;
    let c_bad_chain = aws::s3(&srv, "s3-bad-chain", &m.auth, &bad_hop2).await;
    let r = test_conn(&srv, &c_bad_chain).await;
    assert_failed("a chain whose root key is wrong", &r, "auth_failed");
    let msg = message(&r);
    assert!(msg.contains("hop 1"), "the failing hop is not named: {r}");
    assert!(!msg.contains("hop 2"), "{r}");
    assert!(msg.contains(&hop1_arn), "the failing hop's role is not named: {r}");
    results.push(r);
    // And a one-hop chain on an unknown key ID.
    let ghost_hop = aws::assume_role(
        &srv,
        "aws-ghost-hop",
        "arn:aws:iam::123456789012:role/etl",
        None,
        &ghost,
    )
    .await;
    let c = aws::s3(&srv, "s3-ghost-hop", &m.auth, &ghost_hop).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("a chain whose root key ID is unknown", &r, "auth_failed");
    assert!(message(&r).contains("hop 1"), "{r}");
    results.push(r);

    // last_test and the audit trail record the outcomes.
    let got = srv
        .get(&format!("/v1/connections/{c_bad_chain}"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(got["last_test"]["ok"], false, "{got}");
    assert_eq!(got["last_test"]["error_code"], "auth_failed", "{got}");
    let got = srv.get(&format!("/v1/connections/{c_hop2}"), &srv.admin).await.ok(200);
    assert_eq!(got["last_test"]["ok"], true, "{got}");

    // The secret access keys never show.
    assert_nowhere(
        &srv,
        &results,
        &[&c_root, &c_bad, &c_ghost, &c_etl, &c_hop1, &c_hop2, &c_bad_chain],
        &[&root, &bad, &ghost, &etl, &hop1, &hop2],
        &[m.secret.clone(), wrong_secret, unknown_secret],
    )
    .await;
}

#[cfg(feature = "moto-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_access_keys_and_role_chains_are_checked_against_moto_with_sigv4_enforced_on_every_backend() {
    let m = aws::Moto::from_env();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        aws_keys_and_role_chains_are_checked_against_sigv4_moto(backend, &m).await;
    }
}

#[cfg(feature = "moto-tests")]
async fn any_key_and_any_chain_pass_on_a_moto_without_auth(b: Backend, m: &aws::Moto) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let secret = format!("any-{}", random_hex(12));
    let key = aws::access_key(&srv, "aws-any", &aws::unknown_key_id(), &secret).await;
    let c = aws::s3(&srv, "s3-open", &m.open, &key).await;
    assert_passed("any key on the moto without auth", &test_conn(&srv, &c).await);
    // Five hops (the longest chain allowed), no role needs to exist there.
    let mut src = key.clone();
    for i in 1..=5 {
        src = aws::assume_role(
            &srv,
            &format!("aws-open-hop{i}"),
            &format!("arn:aws:iam::123456789012:role/open-{i}"),
            Some("ext-1"),
            &src,
        )
        .await;
    }
    let c3 = aws::s3(&srv, "s3-open-5-hops", &m.open, &src).await;
    let r = test_conn(&srv, &c3).await;
    assert_passed("a five-hop chain on the moto without auth", &r);
    assert_nowhere(&srv, &[r], &[&c, &c3], &[&key, &src], &[secret]).await;
}

#[cfg(feature = "moto-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moto_without_auth_takes_any_well_formed_key_and_a_five_hop_chain_on_every_backend() {
    let m = aws::Moto::from_env();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        any_key_and_any_chain_pass_on_a_moto_without_auth(backend, &m).await;
    }
}

/// Redshift with an AWS credential is tested as the AWS identity (the dispatch in
/// credvault-connect sends it to the AWS tester, which reads `sts_endpoint_url` from the
/// connection's config) — so a Redshift connection must be able to name its STS endpoint, as
/// an S3 connection can, for private (VPC) endpoints and for this test.
#[cfg(feature = "moto-tests")]
async fn redshift_with_an_aws_credential_checks_the_aws_identity(b: Backend, m: &aws::Moto) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let root = aws::access_key(&srv, "rs-aws-root", &m.key_id, &m.secret).await;
    let wrong_secret = format!("Rs-Wr0ng/{}", random_hex(12));
    let bad = aws::access_key(&srv, "rs-aws-bad", &m.key_id, &wrong_secret).await;
    let etl = aws::assume_role(
        &srv,
        "rs-aws-etl",
        "arn:aws:iam::123456789012:role/etl",
        Some("ext-1"),
        &root,
    )
    .await;
    let config = |sts: &str| {
        json!({"host": "analytics.abc123xyz.us-east-1.redshift.amazonaws.com", "database": "dev",
               "cluster_id": "analytics", "region": "us-east-1", "sts_endpoint_url": sts})
    };
    let mut results = Vec::new();
    let mut conns = Vec::new();
    for (name, cred, expect) in [
        ("rs-key", &root, None),
        ("rs-role", &etl, None),
        ("rs-wrong", &bad, Some("auth_failed")),
    ] {
        let resp = srv
            .post(
                "/v1/connections",
                &srv.admin,
                json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": "redshift",
                       "config": config(&m.auth), "credential_id": cred}),
            )
            .await;
        assert_eq!(
            resp.status, 201,
            "a redshift connection for IAM authentication cannot name its STS endpoint \
             (sts_endpoint_url), so its AWS identity can only ever be checked against the public \
             sts.REGION.amazonaws.com: {}",
            resp.text
        );
        let c = resp.id();
        let r = test_conn(&srv, &c).await;
        match expect {
            None => assert_passed(name, &r),
            Some(code) => assert_failed(name, &r, code),
        }
        results.push(r);
        conns.push(c);
    }
    let conn_refs: Vec<&str> = conns.iter().map(String::as_str).collect();
    assert_nowhere(
        &srv,
        &results,
        &conn_refs,
        &[&root, &bad],
        &[m.secret.clone(), wrong_secret],
    )
    .await;
}

#[cfg(feature = "moto-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redshift_connection_with_an_aws_credential_checks_the_aws_identity_at_its_sts_endpoint_on_every_backend() {
    let m = Arc::new(aws::Moto::from_env());
    on_every_backend(|b| {
        let m = m.clone();
        async move { redshift_with_an_aws_credential_checks_the_aws_identity(b, &m).await }
    })
    .await;
}

// ---------------------------------------------------------------------------- 2. GCP

/// The key material of the GCP and Azure tests, generated once per test.
struct Material {
    /// The key the endpoint knows.
    known: KeyPair,
    /// A key it does not.
    unknown: KeyPair,
}

impl Material {
    fn new() -> Material {
        Material {
            known: KeyPair::rsa(),
            unknown: KeyPair::rsa(),
        }
    }
}

/// A service account key file.
fn sa_json(email: &str, private_pem: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account", "project_id": "credvault-it", "private_key_id": random_hex(20),
        "private_key": private_pem, "client_email": email, "client_id": "112233445566778899",
        "token_uri": token_uri,
    })
    .to_string()
}

/// A `gcp`/`service_account` credential, with an optional `token_url` field.
async fn gcp_cred(srv: &Server, name: &str, sa: &str, token_url: Option<&str>) -> String {
    let mut fields = json!({"service_account_json": sa});
    if let Some(t) = token_url {
        fields["token_url"] = json!(t);
    }
    credential(srv, name, "gcp", "service_account", fields).await
}

async fn gcp_service_accounts_are_checked_at_a_verifying_endpoint(b: Backend, keys: &Material) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let email = format!("loader-{}@credvault-it.iam.gserviceaccount.com", random_hex(3));
    let ep = TokenEndpoint::start(Registry {
        gcp: vec![GcpAccount {
            email: email.clone(),
            public_path: keys.known.public_path.clone(),
        }],
        ..Registry::default()
    })
    .await;
    let token_uri = format!("{}/token", ep.url());
    let mut results = Vec::new();
    let mut conns = Vec::new();

    // The right key, token_uri from the key file: the endpoint verified the signature.
    let good_sa = sa_json(&email, &keys.known.private_pem, &token_uri);
    let good = gcp_cred(&srv, "gcp-good", &good_sa, None).await;
    let c = connection(&srv, "gcs-good", "gcs", json!({"bucket": "b"}), &good).await;
    let r = test_conn(&srv, &c).await;
    assert_passed("the right service account key", &r);
    let seen = ep.last();
    assert!(seen.signature_verified, "{seen:?}");
    assert_eq!(seen.status, 200, "{seen:?}");
    assert_eq!(seen.path, "/token", "{seen:?}");
    assert_eq!(
        seen.form("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer"),
        "{seen:?}"
    );
    // The assertion is a well-formed RS256 JWT for this account, for this endpoint.
    let jwt = parse_jwt(seen.form("assertion").unwrap()).unwrap();
    assert_eq!(jwt.header["alg"], "RS256", "{}", jwt.header);
    assert_eq!(jwt.claims["iss"], email.as_str(), "{}", jwt.claims);
    assert_eq!(jwt.claims["aud"], token_uri.as_str(), "{}", jwt.claims);
    results.push(r);
    conns.push(c);

    // BigQuery goes the same way.
    let c = connection(
        &srv,
        "bq-good",
        "bigquery",
        json!({"project_id": "credvault-it"}),
        &good,
    )
    .await;
    let r = test_conn(&srv, &c).await;
    assert_passed("the right key on bigquery", &r);
    assert!(ep.last().signature_verified);
    results.push(r);
    conns.push(c);

    // The same key in PKCS#1 form.
    let pkcs1 = keys.known.pkcs1_pem();
    let pkcs1_sa = sa_json(&email, &pkcs1, &token_uri);
    let pkcs1_cred = gcp_cred(&srv, "gcp-pkcs1", &pkcs1_sa, None).await;
    let c = connection(&srv, "gcs-pkcs1", "gcs", json!({"bucket": "b"}), &pkcs1_cred).await;
    let r = test_conn(&srv, &c).await;
    assert_passed("the right key in PKCS#1 form", &r);
    assert!(ep.last().signature_verified);
    results.push(r);
    conns.push(c);

    // A key the endpoint does not know, for a known account: the signature does not verify.
    let n = ep.count();
    let rogue_sa = sa_json(&email, &keys.unknown.private_pem, &token_uri);
    let rogue = gcp_cred(&srv, "gcp-rogue-key", &rogue_sa, None).await;
    let c = connection(&srv, "gcs-rogue-key", "gcs", json!({"bucket": "b"}), &rogue).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("an unknown key", &r, "auth_failed");
    assert_eq!(ep.count(), n + 1, "the endpoint was not asked");
    let seen = ep.last();
    assert!(!seen.signature_verified, "{seen:?}");
    assert_eq!(seen.verdict, "Invalid JWT Signature.", "{seen:?}");
    assert!(message(&r).contains("invalid_grant"), "{r}");
    results.push(r);
    conns.push(c);

    // An account the endpoint does not know at all.
    let stranger_sa = sa_json(
        "stranger@elsewhere.iam.gserviceaccount.com",
        &keys.unknown.private_pem,
        &token_uri,
    );
    let stranger = gcp_cred(&srv, "gcp-stranger", &stranger_sa, None).await;
    let c = connection(&srv, "gcs-stranger", "gcs", json!({"bucket": "b"}), &stranger).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("an unknown service account", &r, "auth_failed");
    results.push(r);
    conns.push(c);

    // Per credential: every connection of the good one passes.
    let r = test_cred(&srv, &good).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["results"].as_array().unwrap().len(), 2, "{r}");
    results.push(r);

    // Neither private key ever shows.
    let mut secrets = pem_lines(&keys.known.private_pem);
    secrets.extend(pem_lines(&keys.unknown.private_pem));
    secrets.extend(pem_lines(&pkcs1));
    // Nor do the access tokens the endpoint issued.
    let tokens = ep.tokens();
    assert_eq!(tokens.len(), 5, "{:?}", ep.seen());
    secrets.extend(tokens);
    let conn_refs: Vec<&str> = conns.iter().map(String::as_str).collect();
    assert_nowhere(
        &srv,
        &results,
        &conn_refs,
        &[&good, &pkcs1_cred, &rogue, &stranger],
        &secrets,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_service_accounts_sign_an_rs256_assertion_the_token_endpoint_verifies_on_every_backend() {
    let keys = Material::new();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        gcp_service_accounts_are_checked_at_a_verifying_endpoint(backend, &keys).await;
    }
}

async fn gcp_token_url_precedence(b: Backend, keys: &Material) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let email = "precedence@credvault-it.iam.gserviceaccount.com".to_owned();
    let reg = Registry {
        gcp: vec![GcpAccount {
            email: email.clone(),
            public_path: keys.known.public_path.clone(),
        }],
        ..Registry::default()
    };
    // Three endpoints that would all accept: only the right one may be asked.
    let (key_file, field, config) = (
        TokenEndpoint::start(reg.clone()).await,
        TokenEndpoint::start(reg.clone()).await,
        TokenEndpoint::start(reg).await,
    );
    let sa = sa_json(&email, &keys.known.private_pem, &format!("{}/key-file", key_file.url()));

    // The connection's token_url wins over the key file's token_uri (and is the aud).
    let plain = gcp_cred(&srv, "gcp-plain", &sa, None).await;
    let config_url = format!("{}/from-config", config.url());
    let c = connection(
        &srv,
        "gcs-config-url",
        "gcs",
        json!({"bucket": "b", "project_id": "credvault-it", "token_url": config_url}),
        &plain,
    )
    .await;
    assert_passed("token_url from the connection", &test_conn(&srv, &c).await);
    assert_eq!(config.count(), 1, "the configured token endpoint was not asked");
    assert_eq!(key_file.count(), 0, "the key file's token_uri was asked instead");
    let seen = config.last();
    assert_eq!(seen.path, "/from-config");
    assert!(seen.signature_verified, "{seen:?}");
    let aud = parse_jwt(seen.form("assertion").unwrap()).unwrap().claims["aud"].clone();
    assert_eq!(aud, config_url.as_str());
    // The same on bigquery.
    let c = connection(
        &srv,
        "bq-config-url",
        "bigquery",
        json!({"project_id": "credvault-it", "dataset": "raw", "location": "EU", "token_url": config_url}),
        &plain,
    )
    .await;
    assert_passed("token_url from a bigquery connection", &test_conn(&srv, &c).await);
    assert_eq!(config.count(), 2);
    assert_eq!(key_file.count(), 0);

    // The credential's token_url field wins over the key file, and the connection's over both.
    let with_field = gcp_cred(&srv, "gcp-field", &sa, Some(&format!("{}/from-field", field.url()))).await;
    let c = connection(&srv, "gcs-field-url", "gcs", json!({"bucket": "b"}), &with_field).await;
    assert_passed("token_url from the credential", &test_conn(&srv, &c).await);
    assert_eq!((field.count(), key_file.count()), (1, 0));
    assert_eq!(field.last().path, "/from-field");
    let c = connection(
        &srv,
        "gcs-field-and-config",
        "gcs",
        json!({"bucket": "b", "token_url": config_url}),
        &with_field,
    )
    .await;
    assert_passed(
        "token_url from the connection over the credential",
        &test_conn(&srv, &c).await,
    );
    assert_eq!((config.count(), field.count(), key_file.count()), (3, 1, 0));

    // Without either, the key file's token_uri.
    let c = connection(&srv, "gcs-key-file-url", "gcs", json!({"bucket": "b"}), &plain).await;
    assert_passed("token_uri from the key file", &test_conn(&srv, &c).await);
    assert_eq!((config.count(), field.count(), key_file.count()), (3, 1, 1));
    assert_eq!(key_file.last().path, "/key-file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcp_token_url_comes_from_the_connection_then_the_credential_then_the_key_file_on_every_backend() {
    let keys = Material::new();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        gcp_token_url_precedence(backend, &keys).await;
    }
}

async fn gcp_variants_that_cannot_be_tested(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let ep = TokenEndpoint::start(Registry::default()).await;
    // Workload identity federation needs the workload's own subject token.
    let external = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/sts", ep.url()),
        "credential_source": {"file": "/var/run/token"},
    })
    .to_string();
    let wif = credential(
        &srv,
        "gcp-wif",
        "gcp",
        "workload_identity_federation",
        json!({"external_account_json": external}),
    )
    .await;
    let c = connection(
        &srv,
        "gcs-wif",
        "gcs",
        json!({"bucket": "b", "token_url": format!("{}/token", ep.url())}),
        &wif,
    )
    .await;
    let r = test_conn(&srv, &c).await;
    assert_failed("workload identity federation", &r, "unsupported");
    let c = connection(&srv, "bq-wif", "bigquery", json!({"project_id": "p"}), &wif).await;
    assert_failed(
        "workload identity federation on bigquery",
        &test_conn(&srv, &c).await,
        "unsupported",
    );

    // A service account whose key is not RSA cannot sign RS256.
    let ec = KeyPair::ec();
    let sa = sa_json(
        "ec@credvault-it.iam.gserviceaccount.com",
        &ec.private_pem,
        &format!("{}/token", ep.url()),
    );
    let ec_cred = gcp_cred(&srv, "gcp-ec", &sa, None).await;
    let c = connection(&srv, "gcs-ec", "gcs", json!({"bucket": "b"}), &ec_cred).await;
    let r2 = test_conn(&srv, &c).await;
    assert_failed("an EC service account key", &r2, "unsupported");

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ep.count(), 0, "nothing may be sent for these: {:?}", ep.seen());
    assert_nowhere(&srv, &[r, r2], &[&c], &[&ec_cred], &pem_lines(&ec.private_pem)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_workload_identity_federation_and_non_rsa_keys_are_unsupported_without_a_request_on_every_backend() {
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        gcp_variants_that_cannot_be_tested(backend).await;
    }
}

// -------------------------------------------------------------------------- 2. Azure

/// An `azure`/`client_secret` credential.
async fn azure_secret_cred(
    srv: &Server,
    name: &str,
    tenant: &str,
    client_id: &str,
    secret: &str,
    authority: Option<&str>,
) -> String {
    let mut fields = json!({"tenant_id": tenant, "client_id": client_id, "client_secret": secret});
    if let Some(a) = authority {
        fields["authority_url"] = json!(a);
    }
    credential(srv, name, "azure", "client_secret", fields).await
}

/// An `azure_blob` connection, with an optional authority override.
async fn blob(srv: &Server, name: &str, authority: Option<&str>, cred: &str) -> String {
    let mut config = json!({"account_name": "credvaultit", "container": "raw"});
    if let Some(a) = authority {
        config["authority_url"] = json!(a);
    }
    connection(srv, name, "azure_blob", config, cred).await
}

async fn azure_service_principals_are_checked_at_a_verifying_endpoint(b: Backend, keys: &Material) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let tenant = uuid();
    let (secret_app, cert_app, echo_app) = (uuid(), uuid(), uuid());
    let secret = format!("cs~{}.Q_", random_hex(16));
    let wrong = format!("cs~{}.W_", random_hex(16));
    let echoed = format!("cs~{}.E_", random_hex(16));
    let leaf = keys.known.self_signed("leaf");
    let (cert_pem, x5t) = (leaf.pem.clone(), leaf.thumbprints.x5t.clone());
    let other_cert_pem = keys.known.self_signed("other").pem;
    let ep = TokenEndpoint::start(Registry {
        tenant: tenant.clone(),
        azure: vec![
            AzureApp {
                client_id: secret_app.clone(),
                secret: Some(secret.clone()),
                cert: None,
                echo: false,
            },
            AzureApp {
                client_id: cert_app.clone(),
                secret: None,
                cert: Some((keys.known.public_path.clone(), leaf.thumbprints.clone())),
                echo: false,
            },
            AzureApp {
                client_id: echo_app.clone(),
                secret: None,
                cert: None,
                echo: true,
            },
        ],
        ..Registry::default()
    })
    .await;
    let decoy = TokenEndpoint::start(Registry {
        tenant: tenant.clone(),
        ..Registry::default()
    })
    .await;
    let token_path = format!("/{tenant}/oauth2/v2.0/token");
    let mut results = Vec::new();
    let mut conns = Vec::new();
    let mut creds = Vec::new();

    // The right client secret, authority from the credential (with a trailing slash).
    let good = azure_secret_cred(
        &srv,
        "az-good",
        &tenant,
        &secret_app,
        &secret,
        Some(&format!("{}/", ep.url())),
    )
    .await;
    let c = blob(&srv, "blob-good", None, &good).await;
    let r = test_conn(&srv, &c).await;
    assert_passed("the right client secret", &r);
    let seen = ep.last();
    assert_eq!(seen.status, 200, "{seen:?}");
    assert_eq!(seen.path, token_path, "{seen:?}");
    assert_eq!(seen.form("grant_type"), Some("client_credentials"));
    assert_eq!(seen.form("client_id"), Some(secret_app.as_str()));
    assert_eq!(seen.form("scope"), Some(STORAGE_SCOPE));
    results.push(r);
    conns.push(c);
    creds.push(good.clone());

    // The connection's authority wins over the credential's.
    let decoy_field = azure_secret_cred(
        &srv,
        "az-decoy-field",
        &tenant,
        &secret_app,
        &secret,
        Some(&decoy.url()),
    )
    .await;
    let c = blob(&srv, "blob-config-authority", Some(&ep.url()), &decoy_field).await;
    let n = ep.count();
    assert_passed("the connection's authority", &test_conn(&srv, &c).await);
    assert_eq!((ep.count(), decoy.count()), (n + 1, 0), "{:?}", decoy.seen());

    // A wrong client secret: invalid_client, auth_failed.
    let bad = azure_secret_cred(&srv, "az-wrong", &tenant, &secret_app, &wrong, None).await;
    let c = blob(&srv, "blob-wrong", Some(&ep.url()), &bad).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("a wrong client secret", &r, "auth_failed");
    assert!(message(&r).contains("invalid_client"), "{r}");
    assert_eq!(ep.last().verdict, "wrong client secret");
    results.push(r);
    conns.push(c);
    creds.push(bad);

    // An app the tenant does not know: unauthorized_client, auth_failed.
    let stranger = azure_secret_cred(&srv, "az-stranger", &tenant, &uuid(), &secret, None).await;
    let c = blob(&srv, "blob-stranger", Some(&ep.url()), &stranger).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("an unknown client ID", &r, "auth_failed");
    results.push(r);

    // An endpoint echoing the secret in its error: the secret does not come back.
    let echo = azure_secret_cred(&srv, "az-echo", &tenant, &echo_app, &echoed, None).await;
    let c = blob(&srv, "blob-echo", Some(&ep.url()), &echo).await;
    let r = test_conn(&srv, &c).await;
    assert_eq!(ep.last().verdict, "echoed the secret");
    assert_failed("an endpoint echoing the secret", &r, "auth_failed");
    assert_no_secret("the echoed error", &r.to_string(), &echoed);
    let r2 = test_cred(&srv, &echo).await;
    assert_no_secret("the echoed error, per credential", &r2.to_string(), &echoed);
    results.push(r);
    results.push(r2);
    conns.push(c);
    creds.push(echo);

    // A certificate: the client assertion is signed by its key, with its x5t.
    let cert_fields = |cert: &str, key: &str| json!({"tenant_id": tenant, "client_id": cert_app, "certificate_pem": cert, "private_key_pem": key});
    let cert = credential(
        &srv,
        "az-cert",
        "azure",
        "certificate",
        cert_fields(&cert_pem, &keys.known.private_pem),
    )
    .await;
    let c = blob(&srv, "blob-cert", Some(&ep.url()), &cert).await;
    let r = test_conn(&srv, &c).await;
    assert_passed("a certificate", &r);
    let seen = ep.last();
    assert!(seen.signature_verified, "{seen:?}");
    assert_eq!(seen.form("client_secret"), None);
    assert_eq!(
        seen.form("client_assertion_type"),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    let jwt = parse_jwt(seen.form("client_assertion").unwrap()).unwrap();
    assert_eq!(jwt.header["x5t"], x5t.as_str(), "{}", jwt.header);
    assert_eq!(
        jwt.header["x5t#S256"],
        leaf.thumbprints.x5t_s256.as_str(),
        "{}",
        jwt.header
    );
    assert_eq!(
        jwt.claims["aud"],
        format!("{}{token_path}", ep.url()).as_str(),
        "{}",
        jwt.claims
    );
    results.push(r);
    conns.push(c);
    creds.push(cert.clone());
    // Per credential too.
    let r = test_cred(&srv, &cert).await;
    assert_eq!(r["ok"], true, "{r}");
    results.push(r);

    // The right certificate with a key it does not belong to: the signature does not verify.
    let mismatched = credential(
        &srv,
        "az-cert-wrong-key",
        "azure",
        "certificate",
        cert_fields(&cert_pem, &keys.unknown.private_pem),
    )
    .await;
    let c = blob(&srv, "blob-cert-wrong-key", Some(&ep.url()), &mismatched).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("a certificate with another key", &r, "auth_failed");
    assert_eq!(ep.last().verdict, "the client assertion's signature does not verify");
    results.push(r);
    conns.push(c);
    creds.push(mismatched);

    // The right key with a certificate the app does not have registered: x5t mismatch.
    let other = credential(
        &srv,
        "az-cert-unregistered",
        "azure",
        "certificate",
        cert_fields(&other_cert_pem, &keys.known.private_pem),
    )
    .await;
    let c = blob(&srv, "blob-cert-unregistered", Some(&ep.url()), &other).await;
    let r = test_conn(&srv, &c).await;
    assert_failed("an unregistered certificate", &r, "auth_failed");
    assert!(ep.last().verdict.starts_with("x5t "), "{:?}", ep.last());
    results.push(r);
    conns.push(c);
    creds.push(other);

    assert_eq!(decoy.count(), 0, "{:?}", decoy.seen());
    let mut secrets = vec![secret, wrong, echoed];
    secrets.extend(pem_lines(&keys.known.private_pem));
    secrets.extend(pem_lines(&keys.unknown.private_pem));
    secrets.extend(ep.tokens());
    let conn_refs: Vec<&str> = conns.iter().map(String::as_str).collect();
    let cred_refs: Vec<&str> = creds.iter().map(String::as_str).collect();
    assert_nowhere(&srv, &results, &conn_refs, &cred_refs, &secrets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_client_secrets_and_certificate_assertions_are_checked_at_a_verifying_endpoint_on_every_backend() {
    let keys = Material::new();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        azure_service_principals_are_checked_at_a_verifying_endpoint(backend, &keys).await;
    }
}

async fn azure_managed_identities_cannot_be_tested(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let ep = TokenEndpoint::start(Registry::default()).await;
    for (name, fields) in [
        ("az-mi-system", json!({})),
        ("az-mi-user", json!({"client_id": uuid()})),
    ] {
        let cred = credential(&srv, name, "azure", "managed_identity", fields).await;
        let c = blob(&srv, &format!("blob-{name}"), Some(&ep.url()), &cred).await;
        let r = test_conn(&srv, &c).await;
        assert_failed(name, &r, "unsupported");
        assert!(message(&r).contains("managed identity"), "{r}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ep.count(), 0, "{:?}", ep.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_managed_identities_are_unsupported_without_a_request_on_every_backend() {
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        azure_managed_identities_cannot_be_tested(backend).await;
    }
}

// ------------------------------------------------------------------------- 3. egress

async fn cloud_endpoints_on_forbidden_addresses(b: Backend, keys: &Material) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let email = "egress@credvault-it.iam.gserviceaccount.com";
    let tenant = uuid();
    let app = uuid();
    let secret = format!("cs~{}.X_", random_hex(16));
    // The positive control: the same server reaches a loopback endpoint.
    let ep = TokenEndpoint::start(Registry {
        gcp: vec![GcpAccount {
            email: email.to_owned(),
            public_path: keys.known.public_path.clone(),
        }],
        tenant: tenant.clone(),
        azure: vec![AzureApp {
            client_id: app.clone(),
            secret: Some(secret.clone()),
            cert: None,
            echo: false,
        }],
        redirect: None,
    })
    .await;
    let sa = sa_json(email, &keys.known.private_pem, &format!("{}/token", ep.url()));
    let gcp = gcp_cred(&srv, "gcp-egress", &sa, None).await;
    let az = azure_secret_cred(&srv, "az-egress", &tenant, &app, &secret, None).await;
    let c = connection(&srv, "gcs-loopback", "gcs", json!({"bucket": "b"}), &gcp).await;
    assert_passed("gcs on loopback", &test_conn(&srv, &c).await);
    let c = blob(&srv, "blob-loopback", Some(&ep.url()), &az).await;
    assert_passed("azure on loopback", &test_conn(&srv, &c).await);
    let reached = ep.count();
    assert_eq!(reached, 2);

    let forbidden = [
        "http://169.254.169.254",
        "http://10.0.0.1",
        "http://[::ffff:169.254.169.254]",
        "http://[fd00::1]",
        "http://0xa9fea9fe",
        "http://192.168.1.1:8080",
    ];
    let mut results = Vec::new();
    for (i, base) in forbidden.iter().enumerate() {
        // GCS / BigQuery token_url in the connection's config.
        let c = connection(
            &srv,
            &format!("gcs-egress-{i}"),
            "gcs",
            json!({"bucket": "b", "token_url": format!("{base}/token")}),
            &gcp,
        )
        .await;
        let r = test_conn(&srv, &c).await;
        assert_failed(&format!("gcs token_url {base}"), &r, "egress_denied");
        results.push(r);
        let c = connection(
            &srv,
            &format!("bq-egress-{i}"),
            "bigquery",
            json!({"project_id": "p", "token_url": format!("{base}/token")}),
            &gcp,
        )
        .await;
        assert_failed(
            &format!("bigquery token_url {base}"),
            &test_conn(&srv, &c).await,
            "egress_denied",
        );
        // The key file's own token_uri.
        let hostile_sa = sa_json(
            email,
            &keys.known.private_pem,
            &format!("{base}/computeMetadata/v1/token"),
        );
        let hostile = gcp_cred(&srv, &format!("gcp-hostile-{i}"), &hostile_sa, None).await;
        let c = connection(
            &srv,
            &format!("gcs-hostile-{i}"),
            "gcs",
            json!({"bucket": "b"}),
            &hostile,
        )
        .await;
        assert_failed(
            &format!("token_uri {base}"),
            &test_conn(&srv, &c).await,
            "egress_denied",
        );
        // Azure authority_url in the connection's config, and in the credential.
        let c = blob(&srv, &format!("blob-egress-{i}"), Some(base), &az).await;
        let r = test_conn(&srv, &c).await;
        assert_failed(&format!("azure authority_url {base}"), &r, "egress_denied");
        results.push(r);
        let field = azure_secret_cred(&srv, &format!("az-field-{i}"), &tenant, &app, &secret, Some(base)).await;
        let c = blob(&srv, &format!("blob-field-{i}"), None, &field).await;
        assert_failed(
            &format!("azure authority_url field {base}"),
            &test_conn(&srv, &c).await,
            "egress_denied",
        );
        // The STS endpoint of an S3 connection.
        let aws = credential(
            &srv,
            &format!("aws-egress-{i}"),
            "aws",
            "access_key",
            json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "egress-aws-secret-value"}),
        )
        .await;
        let c = connection(
            &srv,
            &format!("s3-egress-{i}"),
            "s3",
            json!({"bucket": "b", "region": "us-east-1", "sts_endpoint_url": base}),
            &aws,
        )
        .await;
        assert_failed(
            &format!("s3 sts_endpoint_url {base}"),
            &test_conn(&srv, &c).await,
            "egress_denied",
        );
    }
    assert_eq!(ep.count(), reached, "{:?}", ep.seen());

    // A token endpoint redirecting elsewhere (here: to the accepting endpoint) is not followed.
    let redirector = TokenEndpoint::start(Registry {
        redirect: Some(format!("{}/token", ep.url())),
        ..Registry::default()
    })
    .await;
    let c = connection(
        &srv,
        "gcs-redirected",
        "gcs",
        json!({"bucket": "b", "token_url": format!("{}/token", redirector.url())}),
        &gcp,
    )
    .await;
    let r = test_conn(&srv, &c).await;
    assert_failed("a redirecting GCP token endpoint", &r, "unexpected_response");
    let c = blob(&srv, "blob-redirected", Some(&redirector.url()), &az).await;
    let r2 = test_conn(&srv, &c).await;
    assert_failed("a redirecting Azure authority", &r2, "unexpected_response");
    assert_eq!(redirector.count(), 2, "{:?}", redirector.seen());
    assert_eq!(ep.count(), reached, "a redirect was followed: {:?}", ep.seen());
    results.push(r);
    results.push(r2);

    let logs = srv.logs();
    assert_no_secret("the server logs", &logs, &secret);
    assert_no_secret("the results", &serde_json::to_string(&results).unwrap(), &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_token_and_sts_endpoints_on_metadata_and_private_addresses_are_egress_denied_on_every_backend() {
    let keys = Material::new();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        cloud_endpoints_on_forbidden_addresses(backend, &keys).await;
    }
}

/// Under the default policy (no `--egress-allow`), a loopback endpoint is refused whether it
/// is named by address or by a name that resolves to it — the cloud testers resolve names
/// through the policy — and is never reached.
async fn cloud_endpoints_on_loopback_under_the_default_policy(b: Backend, keys: &Material) {
    let srv = Server::start(b).await;
    let email = "default-policy@credvault-it.iam.gserviceaccount.com";
    let tenant = uuid();
    let app = uuid();
    let secret = format!("cs~{}.D_", random_hex(16));
    let ep = TokenEndpoint::start(Registry {
        gcp: vec![GcpAccount {
            email: email.to_owned(),
            public_path: keys.known.public_path.clone(),
        }],
        tenant: tenant.clone(),
        azure: vec![AzureApp {
            client_id: app.clone(),
            secret: Some(secret.clone()),
            cert: None,
            echo: false,
        }],
        redirect: None,
    })
    .await;
    let port = ep.addr.port();
    let az = azure_secret_cred(&srv, "az-default", &tenant, &app, &secret, None).await;
    let aws = credential(
        &srv,
        "aws-default",
        "aws",
        "access_key",
        json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "default-policy-aws-secret"}),
    )
    .await;
    for (i, host) in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"].iter().enumerate() {
        let base = format!("http://{host}:{port}");
        let sa = sa_json(email, &keys.known.private_pem, &format!("{base}/token"));
        let gcp = gcp_cred(&srv, &format!("gcp-default-{i}"), &sa, None).await;
        let c = connection(&srv, &format!("gcs-default-{i}"), "gcs", json!({"bucket": "b"}), &gcp).await;
        assert_failed(&format!("gcs at {base}"), &test_conn(&srv, &c).await, "egress_denied");
        let c = blob(&srv, &format!("blob-default-{i}"), Some(&base), &az).await;
        assert_failed(&format!("azure at {base}"), &test_conn(&srv, &c).await, "egress_denied");
        let c = connection(
            &srv,
            &format!("s3-default-{i}"),
            "s3",
            json!({"bucket": "b", "sts_endpoint_url": base}),
            &aws,
        )
        .await;
        assert_failed(&format!("sts at {base}"), &test_conn(&srv, &c).await, "egress_denied");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ep.count(), 0, "a refused endpoint was reached: {:?}", ep.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_endpoints_on_loopback_are_refused_by_address_and_by_name_under_the_default_policy_on_every_backend() {
    let keys = Material::new();
    for backend in common::backends() {
        eprintln!("--- backend {backend:?}");
        cloud_endpoints_on_loopback_under_the_default_policy(backend, &keys).await;
    }
}

// ------------------------------------------------------------------- AWS chain shapes

/// An `aws` access key and `hops` `assume_role` credentials on top of it; returns them root
/// first.
async fn chain(srv: &Server, tag: &str, hops: usize) -> Vec<String> {
    let mut ids = vec![
        credential(
            srv,
            &format!("{tag}-key"),
            "aws",
            "access_key",
            json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": format!("{tag}-secret-value")}),
        )
        .await,
    ];
    for i in 1..=hops {
        let src = ids.last().unwrap().clone();
        ids.push(
            credential(
                srv,
                &format!("{tag}-hop{i}"),
                "aws",
                "assume_role",
                json!({"role_arn": format!("arn:aws:iam::123456789012:role/{tag}-{i}"), "source_credential_id": src}),
            )
            .await,
        );
    }
    ids
}

/// The server's limit: five `AssumeRole` hops are accepted and tested; a sixth is refused
/// when it is written (422 invalid_reference), before anything could be sent.
async fn role_chains_longer_than_five_hops_are_refused(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let sts = format!("http://127.0.0.1:{}", closed_port().await);
    let ids = chain(&srv, "long", 5).await;
    let c5 = s3_conn(&srv, "s3-5-hops", &sts, &ids[5]).await;
    let r = test_conn(&srv, &c5).await;
    assert_failed("a five-hop chain", &r, "connect_refused");
    assert!(message(&r).contains("hop 1"), "{r}");
    let sixth = srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": "long-hop6", "type": "aws", "variant": "assume_role", "workspace_id": srv.ws_id, "environment": "prod",
                   "fields": {"role_arn": "arn:aws:iam::123456789012:role/long-6", "source_credential_id": ids[5]}}),
        )
        .await;
    let body = sixth.problem(422, "invalid_reference");
    assert!(body["detail"].as_str().unwrap().contains("5 hops"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_chains_of_more_than_five_hops_are_refused_as_the_server_says_on_every_backend() {
    on_every_backend(role_chains_longer_than_five_hops_are_refused).await;
}

/// A credential cannot be its own source; nor may it become its own source through another
/// hop (a loop can never be assumed). If a loop gets stored anyway, testing it is refused.
async fn role_chain_loops_are_refused(b: Backend) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let ids = chain(&srv, "loop", 2).await;
    let (hop1, hop2) = (&ids[1], &ids[2]);
    // Directly: refused.
    srv.post(
        &format!("/v1/credentials/{hop1}/versions"),
        &srv.admin,
        json!({"fields": {"role_arn": "arn:aws:iam::123456789012:role/loop-1", "source_credential_id": hop1},
               "mode": "replace"}),
    )
    .await
    .problem(422, "invalid_reference");
    // Through hop 2 (hop 1 ← hop 2 ← hop 1): must be refused the same way.
    let resp = srv
        .post(
            &format!("/v1/credentials/{hop1}/versions"),
            &srv.admin,
            json!({"fields": {"role_arn": "arn:aws:iam::123456789012:role/loop-1", "source_credential_id": hop2},
                   "mode": "replace"}),
        )
        .await;
    if resp.status == 201 {
        // Stored anyway: at least the test must refuse it, without a request.
        let sts = format!("http://127.0.0.1:{}", closed_port().await);
        let c = s3_conn(&srv, "s3-loop", &sts, hop2).await;
        srv.post(&format!("/v1/connections/{c}/test"), &srv.admin, json!({}))
            .await
            .problem(409, "role_chain_invalid");
    }
    assert_eq!(
        resp.status, 422,
        "a version making the role chain loop (hop 1's source is hop 2, whose source is hop 1) \
         was accepted: {}",
        resp.text
    );
    resp.problem(422, "invalid_reference");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_chain_that_loops_through_another_hop_is_refused_when_written_on_every_backend() {
    on_every_backend(role_chain_loops_are_refused).await;
}

/// What botocore's `generate_db_auth_token` makes for each case (`host`, `port`, `region`,
/// `user`, `akid`, `secret`, `token`?, `now` as `[Y, M, D, h, m, s]` UTC), from moto's virtualenv.
#[cfg(feature = "moto-tests")]
fn botocore_tokens(cases: &Value) -> Vec<String> {
    let python = std::env::var("CREDVAULT_TEST_BOTOCORE_PYTHON").unwrap_or_else(|_| {
        panic!("CREDVAULT_TEST_BOTOCORE_PYTHON is not set: moto's virtualenv python (scripts/lib/moto.sh exports it; scripts/test does)")
    });
    let script = r#"
import sys, json, datetime, botocore.session, botocore.auth
out = []
for c in json.load(sys.stdin):
    t = datetime.datetime(*c["now"])
    botocore.auth.get_current_datetime = lambda t=t, **kw: t
    client = botocore.session.get_session().create_client(
        "rds", region_name=c["region"], aws_access_key_id=c["akid"],
        aws_secret_access_key=c["secret"], aws_session_token=c.get("token"))
    out.append(client.generate_db_auth_token(c["host"], c["port"], c["user"], Region=c["region"]))
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(cases.to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// RDS/Aurora IAM database authentication tokens are what botocore's `generate_db_auth_token`
/// makes, byte for byte, for fixed keys and clocks: with and without a session token, a user
/// name that needs encoding, two regions and ports (botocore from moto's virtualenv, which
/// scripts/test installs).
#[cfg(feature = "moto-tests")]
#[test]
fn an_rds_auth_token_is_byte_for_byte_what_botocore_makes() {
    use credvault_connect::aws::{AwsCredentials, rds_auth_token};
    let cases = json!([
        {"host": "db.example.internal", "port": 5432, "region": "eu-west-1", "user": "app_user",
         "akid": "AKIAIOSFODNN7EXAMPLE", "secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "now": [2026, 12, 7, 9, 30, 5]},
        {"host": "prod.cluster-abc.us-east-1.rds.amazonaws.com", "port": 3306, "region": "us-east-1", "user": "etl user+1@x",
         "akid": "ASIAQEXAMPLE1234", "secret": "s3cr3t/with+signs=", "token": "IQoJb3JpZ2luX2VjE//token+/=",
         "now": [2027, 1, 31, 23, 59, 59]},
    ]);
    let expected = botocore_tokens(&cases);
    for (c, want) in cases.as_array().unwrap().iter().zip(&expected) {
        let n: Vec<u8> = c["now"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let date = time::Date::from_calendar_date(
            c["now"][0].as_i64().unwrap() as i32,
            time::Month::try_from(n[0]).unwrap(),
            n[1],
        )
        .unwrap();
        let now = time::PrimitiveDateTime::new(date, time::Time::from_hms(n[2], n[3], n[4]).unwrap()).assume_utc();
        let creds = AwsCredentials::new(
            c["akid"].as_str().unwrap(),
            c["secret"].as_str().unwrap().into(),
            c["token"].as_str().map(str::to_owned),
        );
        let got = rds_auth_token(
            c["host"].as_str().unwrap(),
            c["port"].as_u64().unwrap() as u16,
            c["region"].as_str().unwrap(),
            c["user"].as_str().unwrap(),
            &creds,
            now,
        );
        assert_eq!(got.as_str(), want.as_str(), "{c}");
    }
    // Control: one second later is another token.
    let creds = AwsCredentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        None,
    );
    let t = time::macros::datetime!(2026-12-07 09:30:06 UTC);
    assert_ne!(
        rds_auth_token("db.example.internal", 5432, "eu-west-1", "app_user", &creds, t).as_str(),
        expected[0]
    );
}

/// A PostgreSQL connection with `auth: iam` and an `aws` access key: Test connection checks the
/// AWS identity at the connection's STS endpoint (moto enforcing SigV4; a wrong secret fails);
/// a worker's resolve gets the IAM user and a 15-minute RDS token — what botocore makes for the
/// same key and second — and never the key; the journal says what was delivered. The
/// authentication must match the credential both ways, on create, attach and config change.
#[cfg(feature = "moto-tests")]
async fn iam_database(b: Backend, m: &aws::Moto) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let key = aws::access_key(&srv, "rds-iam-key", &m.key_id, &m.secret).await;
    let wrong_secret = format!("Rds-Wr0ng/{}", random_hex(12));
    let bad = aws::access_key(&srv, "rds-iam-bad", &m.key_id, &wrong_secret).await;
    let config = json!({"host": "prod.cluster-abc.eu-west-1.rds.amazonaws.com", "port": 5432, "database": "dwh",
                        "auth": "iam", "iam_user": "etl_user", "region": "eu-west-1", "sts_endpoint_url": m.auth});
    let create = |name: &str, config: &Value, cred: &str| {
        json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
               "config": config, "credential_id": cred})
    };
    let conn = srv
        .post("/v1/connections", &srv.admin, create("rds-iam", &config, &key))
        .await
        .id();
    let bad_conn = srv
        .post("/v1/connections", &srv.admin, create("rds-iam-bad", &config, &bad))
        .await
        .id();
    let ok = test_conn(&srv, &conn).await;
    assert_passed("iam identity", &ok);
    let failed = test_conn(&srv, &bad_conn).await;
    assert_failed("iam identity, wrong secret", &failed, "auth_failed");

    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(
            &org,
            "service_account",
            "rds-worker",
            &[("worker", common::Scope::Org(&org))],
        )
        .await;
    let r = srv
        .post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": conn, "run_id": "rds-run-1"}),
        )
        .await
        .ok(200);
    let fields = &r["credential"]["fields"];
    assert_eq!(fields["username"], "etl_user", "{r}");
    assert_eq!(r["credential"]["delivered"], "rds_iam_token", "{r}");
    assert!(
        fields.get("secret_access_key").is_none() && fields.get("access_key_id").is_none(),
        "{r}"
    );
    assert!(!r.to_string().contains(&m.secret), "the AWS secret left: {r}");
    let token = fields["password"].as_str().unwrap();
    assert!(
        token.starts_with("prod.cluster-abc.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=etl_user&"),
        "{token}"
    );
    // Byte for byte what botocore makes for the same key at the token's own second.
    let stamp = token.split("X-Amz-Date=").nth(1).unwrap().get(..16).unwrap();
    let n = |a: usize, b: usize| stamp[a..b].parse::<u32>().unwrap();
    let now = json!([n(0, 4), n(4, 6), n(6, 8), n(9, 11), n(11, 13), n(13, 15)]);
    let want = botocore_tokens(
        &json!([{"host": "prod.cluster-abc.eu-west-1.rds.amazonaws.com", "port": 5432,
        "region": "eu-west-1", "user": "etl_user", "akid": m.key_id, "secret": m.secret, "now": now}]),
    );
    assert_eq!(token, want[0]);
    let expires = time::OffsetDateTime::parse(
        fields["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(14) && left <= time::Duration::minutes(15),
        "{left}"
    );
    let events = srv
        .get(
            &format!("/v1/audit?action=connection.resolve&target_id={conn}"),
            &srv.admin,
        )
        .await
        .ok(200);
    assert_eq!(events["items"][0]["details"]["delivered"], "rds_iam_token", "{events}");
    assert_nowhere(
        &srv,
        &[ok, failed],
        &[&conn, &bad_conn],
        &[&key, &bad],
        &[m.secret.clone(), wrong_secret],
    )
    .await;

    // The authentication must fit the credential, both ways and at every step.
    let db = srv.database_credential(&srv.admin, "rds-pw", "pw-rds-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let password_config = json!({"host": "db.internal", "database": "dwh"});
    let e = srv
        .post("/v1/connections", &srv.admin, create("iam-with-password", &config, &db))
        .await;
    assert_eq!(e.problem(422, "credential_type_mismatch")["field"], "credential_id");
    let e = srv
        .post(
            "/v1/connections",
            &srv.admin,
            create("password-with-key", &password_config, &key),
        )
        .await;
    assert_eq!(e.problem(422, "credential_type_mismatch")["field"], "credential_id");
    let plain = srv
        .post("/v1/connections", &srv.admin, create("plain", &password_config, &db))
        .await
        .id();
    let e = srv
        .call(
            "PUT",
            &format!("/v1/connections/{plain}/credential"),
            Some(&srv.admin),
            Some(json!({"credential_id": key})),
        )
        .await;
    assert_eq!(e.problem(422, "credential_type_mismatch")["field"], "credential_id");
    let e = srv
        .patch(
            &format!("/v1/connections/{conn}"),
            &srv.admin,
            json!({"config": password_config}),
        )
        .await;
    assert_eq!(e.problem(422, "credential_type_mismatch")["field"], "config.auth");
    let mut no_region = config.clone();
    no_region.as_object_mut().unwrap().remove("region");
    let e = srv
        .post("/v1/connections", &srv.admin, create("iam-no-region", &no_region, &key))
        .await;
    assert_eq!(e.status, 422, "{}", e.text);
    assert!(e.text.contains("config.region"), "{}", e.text);
    // IAM fields only with auth: iam (an STS URL would widen where a password may go), and an
    // IAM token only over TLS (require by default).
    let mut stray = password_config.clone();
    stray["sts_endpoint_url"] = json!(m.auth);
    let e = srv
        .post("/v1/connections", &srv.admin, create("stray-sts", &stray, &db))
        .await;
    assert!(
        e.status == 422 && e.text.contains("config.sts_endpoint_url"),
        "{}",
        e.text
    );
    let mut cleartext = config.clone();
    cleartext["sslmode"] = json!("disable");
    let e = srv
        .post("/v1/connections", &srv.admin, create("iam-cleartext", &cleartext, &key))
        .await;
    assert!(e.status == 422 && e.text.contains("config.sslmode"), "{}", e.text);
    let made = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200);
    assert_eq!(made["config"]["sslmode"], "require", "{made}");
}

#[cfg(feature = "moto-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iam_database_connection_resolves_to_an_rds_token_and_tests_the_aws_identity_on_every_backend() {
    let m = Arc::new(aws::Moto::from_env());
    on_every_backend(|b| {
        let m = m.clone();
        async move { iam_database(b, &m).await }
    })
    .await;
}

/// A worker resolving an S3 connection whose credential is an `assume_role` chain gets a
/// session of the role — assumed at the connection's STS endpoint (moto enforcing SigV4), named
/// after the run, usable (its GetCallerIdentity is the assumed role) — and never the chain's
/// long-lived key; the journal records the session. Control: a chain whose root key is wrong
/// releases nothing (503 `sts_failed`, recorded as such).
#[cfg(feature = "moto-tests")]
async fn sessions_at_resolve(b: Backend, m: &aws::Moto) {
    let srv = Server::start_with(b, &ALLOW_LOOPBACK).await;
    let root = aws::access_key(&srv, "sess-root", &m.key_id, &m.secret).await;
    let etl = aws::assume_role(
        &srv,
        "sess-etl",
        "arn:aws:iam::123456789012:role/etl",
        Some("ext-1"),
        &root,
    )
    .await;
    let conn = s3_conn(&srv, "sess-s3", &m.auth, &etl).await;
    let wrong_secret = format!("Sess-Wr0ng/{}", random_hex(12));
    let bad_root = aws::access_key(&srv, "sess-bad-root", &m.key_id, &wrong_secret).await;
    let bad_etl = aws::assume_role(
        &srv,
        "sess-bad-etl",
        "arn:aws:iam::123456789012:role/etl",
        None,
        &bad_root,
    )
    .await;
    let bad_conn = s3_conn(&srv, "sess-bad-s3", &m.auth, &bad_etl).await;
    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(
            &org,
            "service_account",
            "sess-worker",
            &[("worker", common::Scope::Org(&org))],
        )
        .await;

    let r = srv
        .post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": conn, "run_id": "nightly 2026/12/07"}),
        )
        .await
        .ok(200);
    assert_eq!(r["credential"]["delivered"], "sts_session", "{r}");
    let f = &r["credential"]["fields"];
    let (id, secret, token) = (
        f["access_key_id"].as_str().unwrap(),
        f["secret_access_key"].as_str().unwrap(),
        f["session_token"].as_str().unwrap(),
    );
    assert!(id.starts_with("ASIA") && !secret.is_empty() && !token.is_empty(), "{r}");
    assert!(f["expires_at"].is_string(), "{r}");
    assert_eq!(f["role_arn"], "arn:aws:iam::123456789012:role/etl");
    assert!(
        !r.to_string().contains(&m.secret),
        "the chain's long-lived key left: {r}"
    );
    // The session works, as the role, under the run's name.
    let python =
        std::env::var("CREDVAULT_TEST_BOTOCORE_PYTHON").expect("CREDVAULT_TEST_BOTOCORE_PYTHON (scripts/lib/moto.sh)");
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, botocore.session as s\n\
             c = s.get_session().create_client('sts', region_name='us-east-1', endpoint_url=sys.argv[1],\n\
                 aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3], aws_session_token=sys.argv[4])\n\
             print(c.get_caller_identity()['Arn'])",
            &m.auth,
            id,
            secret,
            token,
        ])
        .output()
        .unwrap();
    let arn = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(arn.contains("assumed-role/etl/credvault-nightly-2026-12-07"), "{arn}");
    let events = srv
        .get(
            &format!("/v1/audit?action=connection.resolve&target_id={conn}"),
            &srv.admin,
        )
        .await
        .ok(200);
    let e = &events["items"][0];
    assert_eq!(
        (e["outcome"].as_str(), e["details"]["delivered"].as_str()),
        (Some("success"), Some("sts_session")),
        "{e}"
    );
    assert_eq!(e["details"]["session_name"], "credvault-nightly-2026-12-07");

    // An access key on a connection that asks for sessions: a GetSessionToken session, never
    // the key; the same key on a connection that does not ask is delivered as it is (control).
    let conn_with = |name: &str, deliver: Option<&str>| {
        let mut config = json!({"bucket": "b", "region": "us-east-1", "sts_endpoint_url": m.auth});
        if let Some(d) = deliver {
            config["deliver"] = json!(d);
        }
        json!({"name": name, "workspace_id": srv.ws_id, "environment": "prod", "kind": "s3", "config": config, "credential_id": root})
    };
    let keyed = srv
        .post("/v1/connections", &srv.admin, conn_with("sess-key", Some("session")))
        .await
        .id();
    let plain = srv
        .post("/v1/connections", &srv.admin, conn_with("sess-plain", None))
        .await
        .id();
    let r = srv
        .post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": keyed, "run_id": "key-run"}),
        )
        .await
        .ok(200);
    assert_eq!(r["credential"]["delivered"], "sts_session", "{r}");
    let f = &r["credential"]["fields"];
    // (moto answers GetSessionToken with fixed example keys; AWS with ASIA… ones)
    assert_ne!(f["access_key_id"], m.key_id.as_str(), "{r}");
    assert!(f["session_token"].is_string() && f["expires_at"].is_string(), "{r}");
    assert!(
        !r.to_string().contains(&m.secret) && !r.to_string().contains(&m.key_id),
        "the long-lived key left: {r}"
    );
    let r = srv
        .post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": plain, "run_id": "key-run"}),
        )
        .await
        .ok(200);
    assert_eq!(r["credential"]["fields"]["access_key_id"], m.key_id.as_str(), "{r}");
    assert_eq!(r["credential"].get("delivered"), None, "{r}");

    // Control: the root key is wrong — nothing leaves, and the journal says why.
    let e = srv
        .post(
            "/v1/resolve",
            &worker,
            json!({"connection_id": bad_conn, "run_id": "nightly-2"}),
        )
        .await;
    assert!(!e.text.contains(&wrong_secret), "{}", e.text);
    let p = e.problem(503, "sts_failed");
    assert!(p["detail"].as_str().unwrap().contains("hop 1"), "{p}");
    let events = srv
        .get(
            &format!("/v1/audit?action=connection.resolve&target_id={bad_conn}"),
            &srv.admin,
        )
        .await
        .ok(200);
    let e = &events["items"][0];
    assert_eq!(
        (e["outcome"].as_str(), e["details"]["refused"].as_str()),
        (Some("error"), Some("sts_failed")),
        "{e}"
    );
    assert!(!events.to_string().contains(&wrong_secret) && !events.to_string().contains(&m.secret));
}

#[cfg(feature = "moto-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assume_role_chain_resolves_to_a_session_of_its_role_never_its_key_on_every_backend() {
    let m = Arc::new(aws::Moto::from_env());
    on_every_backend(|b| {
        let m = m.clone();
        async move { sessions_at_resolve(b, &m).await }
    })
    .await;
}
