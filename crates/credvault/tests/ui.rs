//! The web UI over real HTTP, without a browser (the browser suite is `ui_browser.rs`): sign-in
//! and lock-out, sessions and sign-out, CSRF on every form, security headers, a builder who is
//! offered no "New credential" and whose forged form is refused, the canary secret absent from
//! every page after it was entered, and the password API and CLI. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{Backend, Server, backends};
use serde_json::{Value, json};

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A cookie-keeping client that does not follow redirects, like a browser seen from the wire.
struct Ui {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> String {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    /// The value of the first hidden input `name`.
    fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let i = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no {name} in page: {}", self.body));
        let rest = &self.body[i + needle.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

impl Ui {
    fn new(srv: &Server) -> Ui {
        Ui {
            base: srv.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, rb: reqwest::RequestBuilder) -> Page {
        let rb = if self.cookies.is_empty() {
            rb
        } else {
            rb.header("cookie", self.cookie_header())
        };
        let r = rb.send().await.unwrap();
        for v in r.headers().get_all("set-cookie") {
            let s = v.to_str().unwrap();
            let (kv, attrs) = s.split_once(';').unwrap_or((s, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        Page {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let rb = self.http.get(format!("{}{path}", self.base));
        self.send(rb).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded(form);
        let rb = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(rb).await
    }

    /// Signs in; returns the response to the sign-in POST.
    async fn sign_in(&mut self, login: &str, password: &str) -> Page {
        let p = self.get("/sign-in").await;
        assert_eq!(p.status, 200);
        let pre = p.hidden("_pre");
        self.post(
            "/sign-in",
            &[
                ("_pre", &pre),
                ("next", "/credentials"),
                ("login", login),
                ("password", password),
            ],
        )
        .await
    }

    /// The CSRF token of the signed-in session (from any page's sign-out form).
    async fn csrf(&mut self) -> String {
        let p = self.get("/credentials").await;
        assert_eq!(p.status, 200, "not signed in: {}", p.location());
        p.hidden("_csrf")
    }
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn audit_actions(srv: &Server, action: &str) -> Vec<Value> {
    let r = srv
        .get(&format!("/v1/audit?action={action}&limit=500"), &srv.admin)
        .await
        .ok(200);
    r["items"].as_array().unwrap().clone()
}

/// A user with `role` in the default organization and a UI password; returns (id, password).
async fn person(srv: &Server, role: &str) -> (String, String) {
    let name = format!("{role}-{}", random_hex(3));
    let org = srv.org_id.clone();
    let (pid, _) = srv
        .principal(&org, "user", &name, &[(role, common::Scope::Org(&org))])
        .await;
    let pw = format!("pw-{}", random_hex(8));
    let r = srv
        .call(
            "PUT",
            &format!("/v1/principals/{pid}/password"),
            Some(&srv.admin),
            Some(json!({"password": pw})),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    (name, pw)
}

#[tokio::test]
async fn sign_in_sessions_and_security_headers() {
    for b in backends() {
        sign_in_flow(b).await;
    }
}

async fn sign_in_flow(b: Backend) {
    let srv = Server::start(b).await;
    assert_eq!(
        srv.admin_password.len(),
        24,
        "serve prints the admin's first UI password"
    );
    let mut ui = Ui::new(&srv);

    // Signed out: pages redirect to the sign-in page, keeping where the user was going.
    let p = ui.get("/credentials?type=database").await;
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/sign-in?next=%2Fcredentials%3Ftype%3Ddatabase");
    assert_eq!(ui.get("/").await.location(), "/credentials");

    // The sign-in page: strict headers, a login-CSRF cookie, nothing cached.
    let p = ui.get("/sign-in").await;
    let csp = p.header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(p.header("x-content-type-options"), "nosniff");
    assert_eq!(p.header("referrer-policy"), "no-referrer");
    assert_eq!(p.header("cache-control"), "no-store");
    assert!(ui.cookies.contains_key("cv_pre"));

    // Without the pre-session token echoed, sign-in is refused before any password check.
    let r = ui
        .post(
            "/sign-in",
            &[("_pre", "0"), ("login", "admin"), ("password", &srv.admin_password)],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(!ui.cookies.contains_key("cv_session"));

    // Wrong password: back to the form with a message that does not say which part was wrong.
    let r = ui.sign_in("admin", "not-the-password").await;
    assert_eq!(r.status, 303);
    assert!(r.location().starts_with("/sign-in?failed=1"), "{}", r.location());
    let page = ui.get(&r.location()).await;
    assert!(page.body.contains("do not match"), "{}", page.body);
    let r = ui.sign_in("nobody-here", "whatever-password").await;
    assert!(r.location().starts_with("/sign-in?failed=1"));

    // Right password: a session cookie, HttpOnly and SameSite=Strict, never Secure on http.
    let r = ui.sign_in("ADMIN", &srv.admin_password).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/credentials");
    let set = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let session = set
        .iter()
        .find(|c| c.starts_with("cv_session=cvs_"))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "{session}");
    let p = ui.get("/credentials").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("New credential"));
    assert_eq!(p.header("cache-control"), "no-store");

    // Open redirects are not followed after sign-in.
    let mut other = Ui::new(&srv);
    let pre = other.get("/sign-in").await.hidden("_pre");
    let r = other
        .post(
            "/sign-in",
            &[
                ("_pre", &pre),
                ("next", "//evil.example/x"),
                ("login", "admin"),
                ("password", &srv.admin_password),
            ],
        )
        .await;
    assert_eq!(r.location(), "/credentials");

    // Sign-out needs the CSRF token, ends the session server-side, and a replayed cookie is
    // refused afterwards.
    let stolen = ui.cookies.get("cv_session").unwrap().clone();
    let r = ui.post("/sign-out", &[]).await;
    assert_eq!(r.status, 403);
    let csrf = ui.csrf().await;
    let r = ui.post("/sign-out", &[("_csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert!(!ui.cookies.contains_key("cv_session"));
    ui.cookies.insert("cv_session".into(), stolen);
    assert_eq!(ui.get("/credentials").await.status, 303);

    // Everything above is in the audit journal; no password or cookie value is.
    let sign_ins = audit_actions(&srv, "auth.sign_in").await;
    assert_eq!(sign_ins.len(), 2);
    assert_eq!(audit_actions(&srv, "auth.sign_out").await.len(), 1);
    let failures = audit_actions(&srv, "auth.failure").await;
    let reasons: Vec<&str> = failures
        .iter()
        .map(|e| e["details"]["reason"].as_str().unwrap())
        .collect();
    for want in ["csrf_mismatch", "bad_password", "session_ended"] {
        assert!(reasons.contains(&want), "{want} not in {reasons:?}");
    }
    let all = srv.get("/v1/audit?limit=500", &srv.admin).await.ok(200).to_string();
    assert!(!all.contains(&srv.admin_password));
    assert!(!all.contains("cvs_"));
}

#[tokio::test]
async fn repeated_failures_lock_the_account_with_back_off() {
    for b in backends() {
        lockout(b).await;
    }
}

async fn lockout(b: Backend) {
    let srv = Server::start(b).await;
    let (name, pw) = person(&srv, "viewer").await;
    let mut ui = Ui::new(&srv);
    for _ in 0..5 {
        let r = ui.sign_in(&name, "wrong-password-1").await;
        assert!(r.location().starts_with("/sign-in?failed=1"));
    }
    // Locked now: even the right password is refused, with the same message.
    let r = ui.sign_in(&name, &pw).await;
    assert!(r.location().starts_with("/sign-in?failed=1"), "{}", r.location());
    assert!(!ui.cookies.contains_key("cv_session"));
    let failures = audit_actions(&srv, "auth.failure").await;
    let locked = failures
        .iter()
        .find(|e| e["details"]["locked_for_secs"] == json!(30))
        .expect("the fifth failure locks for 30 s");
    assert_eq!(locked["details"]["reason"], "bad_password");
    assert!(failures.iter().any(|e| e["details"]["reason"] == "locked_out"));
    // An admin resetting the password unlocks the account.
    let pid = srv.get("/v1/principals?limit=500", &srv.admin).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == json!(name))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pw2 = "a-brand-new-password";
    let r = srv
        .call(
            "PUT",
            &format!("/v1/principals/{pid}/password"),
            Some(&srv.admin),
            Some(json!({"password": pw2})),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = ui.sign_in(&name, pw2).await;
    assert_eq!(r.location(), "/credentials");
}

#[tokio::test]
async fn forms_need_the_session_csrf_token() {
    let srv = Server::start(Backend::Sqlite).await;
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;
    let form = |tok: Option<&str>| {
        let mut f = vec![
            ("type", "database".to_owned()),
            ("variant", "password".to_owned()),
            ("name", "csrf-probe".to_owned()),
            ("environment", "dev".to_owned()),
            ("f.username", "u".to_owned()),
            ("f.password", "k-123456".to_owned()),
        ];
        if let Some(t) = tok {
            f.push(("_csrf", t.to_owned()));
        }
        f
    };
    for tok in [None, Some("0000"), Some(&csrf[..csrf.len() - 1])] {
        let f = form(tok);
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = ui.post("/credentials/new", &pairs).await;
        assert_eq!(r.status, 403, "{tok:?}");
    }
    // Another session's token does not work either.
    let mut other = Ui::new(&srv);
    other.sign_in("admin", &srv.admin_password).await;
    let other_csrf = other.csrf().await;
    assert_ne!(other_csrf, csrf);
    let f = form(Some(&other_csrf));
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(ui.post("/credentials/new", &pairs).await.status, 403);
    let list = srv.get("/v1/credentials", &srv.admin).await.ok(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing was created");
    let mismatches = audit_actions(&srv, "auth.failure")
        .await
        .into_iter()
        .filter(|e| e["details"]["reason"] == "csrf_mismatch")
        .count();
    assert_eq!(mismatches, 4);
    // JSON is not accepted by form routes (no CSRF by content type).
    let r = ui
        .send(
            ui.http
                .post(format!("{}/credentials/new", ui.base))
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn a_builder_is_not_offered_new_credential_and_a_forged_form_is_refused() {
    for b in backends() {
        builder(b).await;
    }
}

async fn builder(b: Backend) {
    let srv = Server::start(b).await;
    let (name, pw) = person(&srv, "builder").await;
    let mut ui = Ui::new(&srv);
    assert_eq!(ui.sign_in(&name, &pw).await.location(), "/credentials");
    let p = ui.get("/credentials").await;
    assert_eq!(p.status, 200);
    assert!(
        !p.body.contains("New credential"),
        "a builder cannot create credentials"
    );
    assert!(!p.body.contains("href=\"/admin\""), "nor the admin screen");
    assert!(!p.body.contains("href=\"/audit\""), "nor the audit log");
    let csrf = p.hidden("_csrf");
    let r = ui
        .post(
            "/credentials/new",
            &[
                ("_csrf", &csrf),
                ("type", "database"),
                ("variant", "password"),
                ("name", "forged"),
                ("environment", "dev"),
                ("f.username", "u"),
                ("f.password", "forged-secret-value"),
            ],
        )
        .await;
    assert!(r.status == 403 || r.status == 404, "{}: {}", r.status, r.body);
    assert!(!r.body.contains("forged-secret-value"));
    let list = srv.get("/v1/credentials", &srv.admin).await.ok(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let denied = srv
        .get("/v1/audit?outcome=denied&action=credential.create", &srv.admin)
        .await
        .ok(200);
    assert_eq!(denied["items"].as_array().unwrap().len(), 1, "the refusal is audited");
    // The admin screen refuses a builder too.
    let r = ui.get("/admin").await;
    assert!(r.status == 403 || r.status == 404, "{}", r.status);
}

#[tokio::test]
async fn the_canary_secret_is_in_no_page_after_it_was_entered() {
    for b in backends() {
        canary(b).await;
    }
}

async fn canary(b: Backend) {
    let srv = Server::start(b).await;
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;
    let canary = format!("CANARY-{}", random_hex(12));

    // A validation error re-renders the form without the secret.
    let r = ui
        .post(
            "/credentials/new",
            &[
                ("_csrf", &csrf),
                ("type", "database"),
                ("variant", "password"),
                ("name", "bad name with spaces!"),
                ("environment", "prod"),
                ("f.username", "loader"),
                ("f.password", &canary),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("field-error") || r.body.contains("form-error"));
    assert!(
        !r.body.contains(&canary),
        "a re-rendered form must not carry the secret"
    );
    assert!(r.body.contains("value=\"loader\""), "non-secret values are kept");

    let r = ui
        .post(
            "/credentials/new",
            &[
                ("_csrf", &csrf),
                ("type", "database"),
                ("variant", "password"),
                ("name", "orders-db"),
                ("workspace", &srv.ws_id),
                ("environment", "prod"),
                ("system", "orders"),
                ("owner", "data-platform"),
                ("rotation_period_days", "90"),
                ("f.username", "loader"),
                ("f.password", &canary),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let detail = r.location();
    assert!(
        detail.starts_with("/credentials/cred_") && detail.ends_with("?done=created"),
        "{detail}"
    );
    let id = detail
        .trim_start_matches("/credentials/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let c = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    assert_eq!(c["labels"]["system"], "orders");
    assert_eq!(c["rotation_period_days"], 90);

    // Stage a rotation through the wizard with another canary, then look everywhere.
    let canary2 = format!("CANARY2-{}", random_hex(12));
    let r = ui
        .post(
            &format!("/credentials/{id}/rotate"),
            &[("_csrf", &csrf), ("f.password", &canary2)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Version 2 staged"), "{}", r.body);
    let pages = [
        "/credentials".to_owned(),
        detail.clone(),
        format!("/credentials/{id}"),
        format!("/credentials/{id}/rotate"),
        "/credentials/new?type=database&variant=password".to_owned(),
        "/connections".to_owned(),
        "/review".to_owned(),
        "/review/attachments.csv".to_owned(),
        "/review/unused.csv".to_owned(),
        "/audit".to_owned(),
        "/admin".to_owned(),
    ];
    for p in &pages {
        let page = ui.get(p).await;
        assert_eq!(page.status, 200, "{p}: {}", page.body);
        assert!(
            !page.body.contains(&canary) && !page.body.contains(&canary2),
            "secret on {p}"
        );
        assert_eq!(page.header("cache-control"), "no-store", "{p}");
    }
    let d = ui.get(&format!("/credentials/{id}")).await;
    assert!(d.body.contains("password") && d.body.contains("values are never shown"));
    assert!(
        d.body.contains("state pending"),
        "the timeline shows the staged version"
    );
    let logs = srv.logs();
    assert!(
        !logs.contains(&canary) && !logs.contains(&canary2),
        "secret in the server log"
    );
}

#[tokio::test]
async fn set_password_rules_and_the_cli() {
    let srv = Server::start(Backend::Sqlite).await;
    let org = srv.org_id.clone();
    let (pid, tok) = srv
        .principal(&org, "user", "casey", &[("viewer", common::Scope::Org(&org))])
        .await;
    let (sa, _) = srv
        .principal(
            &org,
            "service_account",
            "loader",
            &[("worker", common::Scope::Org(&org))],
        )
        .await;
    let put = |who: String, tok: String, pw: &'static str| {
        let srv = &srv;
        async move {
            srv.call(
                "PUT",
                &format!("/v1/principals/{who}/password"),
                Some(&tok),
                Some(json!({"password": pw})),
            )
            .await
        }
    };
    put(pid.clone(), srv.admin.clone(), "short")
        .await
        .problem(422, "weak_password");
    put(sa.clone(), srv.admin.clone(), "long-enough-password")
        .await
        .problem(422, "not_a_user");
    // A viewer may set their own password but not somebody else's.
    assert_eq!(put(pid.clone(), tok.clone(), "caseys-own-password").await.status, 204);
    let admin_id = srv.get("/v1/me", &srv.admin).await.ok(200)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = put(admin_id.clone(), tok.clone(), "take-over-the-admin").await;
    assert!(r.status == 403 || r.status == 404, "{}", r.status);
    // Nor may an organization admin take over the instance admin's account.
    let (_, org_admin) = srv
        .principal(&org, "user", "olga", &[("admin", common::Scope::Org(&org))])
        .await;
    assert_eq!(
        put(admin_id, org_admin.clone(), "take-over-the-admin").await.status,
        403
    );
    assert_eq!(put(pid.clone(), org_admin, "an-org-admin-may-reset").await.status, 204);
    assert!(!srv.logs().contains("caseys-own-password"));

    // The CLI reads the password from stdin, never from argv.
    let token_file = srv.data.path().join("admin.token");
    std::fs::write(&token_file, &srv.admin).unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args([
            "principal",
            "set-password",
            &pid,
            "--password-stdin",
            "--server",
            &srv.base,
        ])
        .arg("--token-file")
        .arg(&token_file)
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
            .write_all(b"set-from-the-cli-123\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ui = Ui::new(&srv);
    assert_eq!(
        ui.sign_in("casey", "set-from-the-cli-123").await.location(),
        "/credentials"
    );
}
