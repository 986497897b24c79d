//! The web UI over real HTTP, without a browser (the browser suite is `ui_browser.rs`): sign-in
//! and lock-out, sessions and sign-out, CSRF on every form, security headers, a builder who is
//! offered no "New credential" and whose forged form is refused, the canary secret absent from
//! every page after it was entered, and the password API and CLI. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::random_hex;

use std::collections::HashMap;

use common::{Backend, Server, backends};
use serde_json::{Value, json};

/// A cookie-keeping client that does not follow redirects, like a browser seen from the wire.
pub(crate) struct Ui {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn location(&self) -> String {
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
    pub(crate) fn new(srv: &Server) -> Ui {
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

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let rb = self.http.get(format!("{}{path}", self.base));
        self.send(rb).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded(form);
        let rb = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(rb).await
    }

    /// Signs in; returns the response to the sign-in POST.
    pub(crate) async fn sign_in(&mut self, login: &str, password: &str) -> Page {
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
    pub(crate) async fn csrf(&mut self) -> String {
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
pub(crate) async fn person(srv: &Server, role: &str) -> (String, String) {
    let name = format!("{role}-{}", random_hex(3));
    let org = srv.org_id.clone();
    let (pid, _) = srv
        .principal(&org, "user", &name, &[(role, common::Scope::Org(&org))])
        .await;
    let pw = format!("pw-{}", random_hex(8));
    assert_eq!(set_password(srv, &pid, &pw).await.status, 204);
    (name, pw)
}

/// `PUT /v1/principals/{pid}/password` as the admin.
async fn set_password(srv: &Server, pid: &str, pw: &str) -> common::Resp {
    srv.call(
        "PUT",
        &format!("/v1/principals/{pid}/password"),
        Some(&srv.admin),
        Some(json!({"password": pw})),
    )
    .await
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
    // The admin and review screens refuse a builder too, without a string of refused reports.
    let r = ui.get("/admin").await;
    assert!(r.status == 403 || r.status == 404, "{}", r.status);
    let before = srv.get("/v1/audit?outcome=denied&limit=500", &srv.admin).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(ui.get("/review").await.status, 403);
    let after = srv.get("/v1/audit?outcome=denied&limit=500", &srv.admin).await.ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
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
                ("more_labels", "cost_center=42\ntier = gold"),
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
    assert_eq!(
        c["labels"],
        json!({"system": "orders", "owner_team": "data-platform", "cost_center": "42", "tier": "gold"}),
        "the UI writes the same label keys as the API and the CLI"
    );
    assert_eq!(c["rotation_period_days"], 90);
    let filtered = ui.get("/credentials?label=owner_team%3Adata-platform").await;
    assert!(filtered.body.contains(">orders-db<"), "{}", filtered.body);
    // A label that is not key=value is refused with the form kept (secrets excepted).
    let r = ui
        .post(
            "/credentials/new",
            &[
                ("_csrf", &csrf),
                ("type", "database"),
                ("variant", "password"),
                ("name", "orders-db-2"),
                ("environment", "prod"),
                ("more_labels", "justaword"),
                ("f.username", "loader"),
                ("f.password", &canary),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(!r.body.contains(&canary), "a refused form never echoes a secret");
    for (labels, says) in [("system=other", "given twice"), ("Bad Key=x", "Bad Key:")] {
        let r = ui
            .post(
                "/credentials/new",
                &[
                    ("_csrf", &csrf),
                    ("type", "database"),
                    ("variant", "password"),
                    ("name", "orders-db-3"),
                    ("environment", "prod"),
                    ("system", "orders"),
                    ("more_labels", labels),
                    ("f.username", "loader"),
                    ("f.password", &canary),
                ],
            )
            .await;
        assert_eq!(r.status, 422, "{labels}: {}", r.body);
        assert!(r.body.contains(says), "{labels}: {}", r.body);
    }
    assert!(
        r.body.contains("is not a key=value line") && r.body.contains("value=\"orders-db-2\""),
        "{}",
        r.body
    );

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
    // A user changes their own password only with the current one: a stolen API token alone
    // can neither turn on UI sign-in nor take the account over.
    put(pid.clone(), tok.clone(), "caseys-own-password")
        .await
        .problem(422, "wrong_password");
    assert_eq!(
        put(pid.clone(), srv.admin.clone(), "caseys-first-password")
            .await
            .status,
        204
    );
    let own = |body: Value| {
        let (srv, pid, tok) = (&srv, pid.clone(), tok.clone());
        async move {
            srv.call("PUT", &format!("/v1/principals/{pid}/password"), Some(&tok), Some(body))
                .await
        }
    };
    own(json!({"password": "caseys-own-password", "current_password": "not-it-at-all"}))
        .await
        .problem(422, "wrong_password");
    let r = own(json!({"password": "caseys-own-password", "current_password": "caseys-first-password"})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // But not somebody else's.
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

/// The ID of the principal named `name`.
async fn principal_id(srv: &Server, name: &str) -> String {
    let all = srv.get("/v1/principals?limit=500", &srv.admin).await.ok(200);
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == json!(name))
        .unwrap_or_else(|| panic!("no principal {name}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_admin_runs_members_connections_and_incidents_from_the_ui() {
    for b in backends() {
        admin_flows(b).await;
    }
}

async fn admin_flows(b: Backend) {
    let srv = Server::start(b).await;
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;

    // Members: add a person, bind a role, set a password; they sign in and may create.
    let r = ui
        .post(
            "/admin/members",
            &[("_csrf", &csrf), ("name", "dana"), ("kind", "user")],
        )
        .await;
    assert_eq!(r.location(), "/admin?done=member", "{}", r.body);
    let dana = principal_id(&srv, "dana").await;
    let r = ui
        .post(
            "/admin/bindings",
            &[
                ("_csrf", &csrf),
                ("principal_id", &dana),
                ("role", "integration_engineer"),
                ("scope", ""),
            ],
        )
        .await;
    assert_eq!(r.location(), "/admin?done=bound", "{}", r.body);
    let r = ui
        .post(
            &format!("/admin/principals/{dana}/password"),
            &[("_csrf", &csrf), ("password", "short")],
        )
        .await;
    assert_eq!(r.status, 422, "a weak password is refused on the page");
    assert!(
        r.body.contains("12 to 1024 characters") && !r.body.contains("value=\"short\""),
        "{}",
        r.body
    );
    let r = ui
        .post(
            &format!("/admin/principals/{dana}/password"),
            &[("_csrf", &csrf), ("password", "danas-password-1")],
        )
        .await;
    assert_eq!(r.location(), "/admin?done=password");
    let mut dana_ui = Ui::new(&srv);
    assert_eq!(
        dana_ui.sign_in("dana", "danas-password-1").await.location(),
        "/credentials"
    );
    let p = dana_ui.get("/credentials").await;
    assert!(p.body.contains("New credential"));
    assert!(
        !p.body.contains("href=\"/admin\""),
        "an integration engineer is not offered Admin"
    );

    // A connection made on the page, then a credential attached, refused across
    // environments, edited, detached.
    let cred = srv.database_credential(&srv.admin, "warehouse", "wh-secret-123").await;
    let cred_id = cred["id"].as_str().unwrap().to_owned();
    let r = ui
        .post(
            "/connections/new",
            &[
                ("_csrf", &csrf),
                ("kind", "postgres"),
                ("name", "warehouse-dev"),
                ("workspace", &srv.ws_id),
                ("environment", "dev"),
                ("cfg.host", "db.internal"),
                ("cfg.port", "5432"),
                ("cfg.database", "wh"),
                ("credential_id", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let conn = r
        .location()
        .trim_start_matches("/connections/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let page = ui.get(&format!("/connections/{conn}")).await;
    assert!(
        page.body.contains(&format!("value=\"{cred_id}\"")),
        "the picker offers the fitting credential"
    );
    let r = ui
        .post(
            &format!("/connections/{conn}/attach"),
            &[("_csrf", &csrf), ("credential_id", &cred_id)],
        )
        .await;
    assert_eq!(r.status, 409, "prod credential, dev connection");
    assert!(
        r.body.contains("env-mismatch") && r.body.contains("tagged `prod`"),
        "{}",
        r.body
    );
    let r = ui
        .post(
            "/admin/settings",
            &[
                ("_csrf", &csrf),
                ("type", "database"),
                ("type", "api_key"),
                ("allow_environment_override", "true"),
                ("recovery_window_days", "7"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/admin?done=updated");
    let settings_path = format!("/v1/orgs/{}/settings", srv.org_id);
    let before = srv.get(&settings_path, &srv.admin).await.ok(200)["role_policy"].clone();
    assert_eq!(
        before["credential.attach"],
        json!(["admin", "integration_engineer", "builder"]),
        "a form without the grid leaves the policy alone"
    );

    // The "Who may" grid: the admin page shows the policy, and saving it sets exactly the
    // ticked roles (here: builders may also create; auditors may read secret values).
    let admin_page = ui.get("/admin").await;
    assert!(admin_page.body.contains("id=\"role-policy\""), "{}", admin_page.body);
    assert!(admin_page.body.contains("name=\"policy.credential.create\" value=\"integration_engineer\" aria-label=\"integration_engineer: Create and rotate credentials\" checked"), "{}", admin_page.body);
    let r = ui
        .post(
            "/admin/settings",
            &[
                ("_csrf", &csrf),
                ("type", "database"),
                ("type", "api_key"),
                ("allow_environment_override", "true"),
                ("recovery_window_days", "7"),
                ("policy", "1"),
                ("policy.credential.create", "admin"),
                ("policy.credential.create", "integration_engineer"),
                ("policy.credential.create", "builder"),
                ("policy.credential.attach", "admin"),
                ("policy.credential.attach", "integration_engineer"),
                ("policy.credential.attach", "builder"),
                ("policy.credential.reveal", "auditor"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/admin?done=updated");
    let after = srv.get(&settings_path, &srv.admin).await.ok(200)["role_policy"].clone();
    assert_eq!(
        after,
        json!({"credential.create": ["admin", "integration_engineer", "builder"],
               "credential.attach": ["admin", "integration_engineer", "builder"],
               "credential.reveal": ["auditor"]})
    );
    let (bname, bpw) = person(&srv, "builder").await;
    let mut bui = Ui::new(&srv);
    bui.sign_in(&bname, &bpw).await;
    assert!(
        bui.get("/credentials").await.body.contains("id=\"new-credential\""),
        "the builder may create now"
    );
    // Back to the defaults for the rest of this test.
    srv.patch(&settings_path, &srv.admin, json!({"role_policy": before}))
        .await
        .ok(200);
    let r = ui
        .post(
            &format!("/connections/{conn}/attach"),
            &[("_csrf", &csrf), ("credential_id", &cred_id)],
        )
        .await;
    assert_eq!(r.status, 422, "an override needs a reason");
    assert!(r.body.contains("override_reason"), "{}", r.body);
    let r = ui
        .post(
            &format!("/connections/{conn}/attach"),
            &[
                ("_csrf", &csrf),
                ("credential_id", &cred_id),
                ("override_reason", "dev mirrors prod until Q3"),
            ],
        )
        .await;
    assert_eq!(r.location(), format!("/connections/{conn}?done=attached"));
    let c = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200);
    assert_eq!(c["credential_id"], json!(cred_id));
    assert_eq!(c["override_reason"], "dev mirrors prod until Q3");
    let r = ui
        .post(
            &format!("/connections/{conn}/edit"),
            &[
                ("_csrf", &csrf),
                ("name", "warehouse-dev-2"),
                ("cfg.host", "db2.internal"),
                ("cfg.port", "6432"),
                ("cfg.database", "wh"),
            ],
        )
        .await;
    assert_eq!(r.location(), format!("/connections/{conn}?done=updated"), "{}", r.body);
    let c = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200);
    assert_eq!(c["name"], "warehouse-dev-2");
    assert_eq!(c["config"]["port"], 6432);
    let r = ui
        .post(
            &format!("/connections/{conn}/edit"),
            &[("_csrf", &csrf), ("name", "x"), ("cfg.port", "nope")],
        )
        .await;
    assert_eq!(r.status, 422, "bad config is refused on the page, naming the field");
    assert!(r.body.contains("field-error"), "{}", r.body);

    // Incident: detach the credential from every connection at once.
    let r = ui
        .post(&format!("/credentials/{cred_id}/detach-all"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("1 connections no longer use"), "{}", r.body);
    let c = srv.get(&format!("/v1/connections/{conn}"), &srv.admin).await.ok(200);
    assert_eq!(c["credential_id"], Value::Null);
    let r = ui
        .post(&format!("/connections/{conn}/delete"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(r.location(), "/connections?done=deleted_connection");

    // Tokens: shown once, then only listed; revocable.
    let r = ui
        .post(
            "/admin/members",
            &[("_csrf", &csrf), ("name", "loader"), ("kind", "service_account")],
        )
        .await;
    assert_eq!(r.location(), "/admin?done=member");
    let sa = principal_id(&srv, "loader").await;
    // The token form is one-time: without its nonce nothing is minted.
    let r = ui
        .post(
            "/admin/tokens",
            &[("_csrf", &csrf), ("principal_id", &sa), ("name", "airflow")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        !r.body.contains("cvt_") && r.body.contains("already submitted"),
        "{}",
        r.body
    );
    let once = ui.get("/admin").await.hidden("_once");
    let token_form = [
        ("_csrf", csrf.as_str()),
        ("_once", once.as_str()),
        ("principal_id", sa.as_str()),
        ("name", "airflow"),
    ];
    let r = ui.post("/admin/tokens", &token_form).await;
    assert_eq!(r.status, 200);
    let i = r.body.find("cvt_").expect("the new token is shown");
    let token: String = r.body[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert_eq!(srv.get("/v1/me", &token).await.status, 200, "the shown token works");
    // Reloading the answer page posts the same form again: no second token.
    let again = ui.post("/admin/tokens", &token_form).await;
    assert_eq!(again.status, 200);
    assert!(
        !again.body.contains("cvt_") && again.body.contains("already submitted"),
        "{}",
        again.body
    );
    let minted = srv
        .get(&format!("/v1/tokens?principal_id={sa}"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(minted["items"].as_array().unwrap().len(), 1, "one form, one token");
    let admin_page = ui.get("/admin").await;
    assert!(!admin_page.body.contains(&token), "a token is shown once");
    let tok_id = srv
        .get(&format!("/v1/tokens?principal_id={sa}"), &srv.admin)
        .await
        .ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(admin_page.body.contains(&tok_id));
    let r = ui
        .post(&format!("/admin/tokens/{tok_id}/revoke"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(r.location(), "/admin?done=token_revoked");
    assert_eq!(srv.get("/v1/me", &token).await.status, 401);

    // Review shows the OAuth grants section (none here).
    let r = ui.get("/review").await;
    assert!(r.body.contains("No OAuth grants."), "{}", r.body);

    // Offboarding ends the person's session at once; their binding can be removed.
    let binding = srv
        .get(&format!("/v1/role-bindings?principal_id={dana}"), &srv.admin)
        .await
        .ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = ui
        .post(
            &format!("/admin/principals/{dana}/offboard"),
            &[("_csrf", &csrf), ("transfer_to", &sa)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Offboarded") && r.body.contains(&sa), "{}", r.body);
    assert_eq!(
        dana_ui.get("/credentials").await.status,
        303,
        "an offboarded person's session ends"
    );
    let r = ui
        .post(&format!("/admin/bindings/{binding}/delete"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(r.location(), "/admin?done=unbound");
    let left = srv
        .get(&format!("/v1/role-bindings?principal_id={dana}"), &srv.admin)
        .await
        .ok(200);
    assert_eq!(left["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn guesses_sent_in_parallel_each_count_toward_the_lock() {
    let srv = Server::start(Backend::Sqlite).await;
    let (name, pw) = person(&srv, "viewer").await;
    let mut ui = Ui::new(&srv);
    let pre = ui.get("/sign-in").await.hidden("_pre");
    let cookie = ui.cookie_header();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (base, cookie, pre, name) = (srv.base.clone(), cookie.clone(), pre.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let body = form_urlencoded(&[
                ("_pre", &pre),
                ("login", &name),
                ("password", &format!("wrong-guess-{i}")),
            ]);
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .post(format!("{base}/sign-in"))
                .header("cookie", cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 303);
    }
    let failures = audit_actions(&srv, "auth.failure").await;
    let tried = failures
        .iter()
        .filter(|e| e["details"]["reason"] == "bad_password")
        .count();
    let locked = failures
        .iter()
        .filter(|e| e["details"]["reason"] == "locked_out")
        .count();
    assert_eq!(tried, 5, "only five guesses may be checked before the lock");
    assert_eq!(locked, 15);
    // Twenty failures from one address in a minute cross the default spike threshold.
    let alerts = audit_actions(&srv, "alert.auth_failures").await;
    assert!(!alerts.is_empty(), "the spike detector counted the sign-in failures");
    let r = ui.sign_in(&name, &pw).await;
    assert!(
        r.location().starts_with("/sign-in?failed=1"),
        "locked: {}",
        r.location()
    );
}

#[tokio::test]
async fn sign_in_never_redirects_off_site() {
    let srv = Server::start(Backend::Sqlite).await;
    for next in [
        "//evil.example/x",
        "/\t/evil.example",
        "/\\evil.example",
        "https://evil.example",
        "/ok\n/x",
        "/sign-in",
    ] {
        let mut ui = Ui::new(&srv);
        let pre = ui.get("/sign-in").await.hidden("_pre");
        let next = next.replace("\\t", "\t").replace("\\n", "\n");
        let r = ui
            .post(
                "/sign-in",
                &[
                    ("_pre", &pre),
                    ("next", &next),
                    ("login", "admin"),
                    ("password", &srv.admin_password),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{next:?}");
        assert_eq!(r.location(), "/credentials", "{next:?}");
    }
    let mut ui = Ui::new(&srv);
    let pre = ui.get("/sign-in").await.hidden("_pre");
    let r = ui
        .post(
            "/sign-in",
            &[
                ("_pre", &pre),
                ("next", "/audit?outcome=denied"),
                ("login", "admin"),
                ("password", &srv.admin_password),
            ],
        )
        .await;
    assert_eq!(r.location(), "/audit?outcome=denied", "a local path is kept");
}

#[tokio::test]
async fn people_change_their_own_password_on_the_account_page() {
    let srv = Server::start(Backend::Sqlite).await;
    let (name, pw) = person(&srv, "auditor").await;
    let mut ui = Ui::new(&srv);
    ui.sign_in(&name, &pw).await;
    let page = ui.get("/account").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Change your password"));
    let csrf = page.hidden("_csrf");
    // An auditor is not offered Admin, and the page refuses them.
    assert!(!page.body.contains("href=\"/admin\""));
    assert_eq!(ui.get("/admin").await.status, 403);
    let r = ui
        .post(
            "/account",
            &[
                ("_csrf", &csrf),
                ("current_password", "wrong-current-pw"),
                ("password", "a-new-password-1"),
                ("password2", "a-new-password-1"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("current password"), "{}", r.body);
    let r = ui
        .post(
            "/account",
            &[
                ("_csrf", &csrf),
                ("current_password", &pw),
                ("password", "a-new-password-1"),
                ("password2", "a-new-password-2"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    let r = ui
        .post(
            "/account",
            &[
                ("_csrf", &csrf),
                ("current_password", &pw),
                ("password", "a-new-password-1"),
                ("password2", "a-new-password-1"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/sign-in");
    assert_eq!(ui.get("/credentials").await.status, 303, "the change ends the session");
    assert!(ui.sign_in(&name, &pw).await.location().starts_with("/sign-in?failed=1"));
    assert_eq!(ui.sign_in(&name, "a-new-password-1").await.location(), "/credentials");
}

#[tokio::test]
async fn an_api_key_with_one_part_is_created_from_the_form_rows() {
    let srv = Server::start(Backend::Sqlite).await;
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;
    let page = ui.get("/credentials/new?type=api_key").await;
    assert!(
        page.body
            .contains("name=\"f.parts.0.value\" autocomplete=\"new-password\""),
        "{}",
        page.body
    );
    let secret = format!("sk-{}", random_hex(12));
    let base = [
        ("_csrf", csrf.as_str()),
        ("type", "api_key"),
        ("variant", "api_key"),
        ("name", "vendor-key"),
        ("environment", "prod"),
        ("f.parts.0.in", "header"),
        ("f.parts.1.in", "header"),
        ("f.parts.2.in", ""),
        ("f.headers", "Accept: application/json"),
    ];
    // A row without its name is refused next to the row's input, without the secret.
    let mut f = base.to_vec();
    f.push(("f.parts.0.value", &secret));
    let r = ui.post("/credentials/new", &f).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("field-error") && !r.body.contains(&secret),
        "{}",
        r.body
    );
    f.push(("f.parts.0.name", "X-API-Key"));
    let r = ui.post("/credentials/new", &f).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = r
        .location()
        .trim_start_matches("/credentials/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let c = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    assert_eq!(c["fields"]["parts"][0]["name"], "X-API-Key");
    assert_eq!(
        c["fields"]["parts"].as_array().unwrap().len(),
        1,
        "empty rows are ignored"
    );
    assert_eq!(c["fields"]["headers"]["Accept"], "application/json");
    assert!(!ui.get(&format!("/credentials/{id}")).await.body.contains(&secret));
}

#[tokio::test]
async fn search_matches_name_and_description_literally_on_every_backend() {
    for b in backends() {
        let srv = Server::start(b).await;
        srv.database_credential(&srv.admin, "orders-db", "pw-1234567").await;
        let billing = srv.database_credential(&srv.admin, "billing", "pw-7654321").await;
        let id = billing["id"].as_str().unwrap();
        srv.patch(
            &format!("/v1/credentials/{id}"),
            &srv.admin,
            json!({"description": "Orders mirror"}),
        )
        .await
        .ok(200);
        let names = |v: Value| -> Vec<String> {
            let mut n: Vec<String> = v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect();
            n.sort();
            n
        };
        for (q, want) in [
            ("orders", vec!["billing", "orders-db"]),
            ("ORD", vec!["billing", "orders-db"]),
            ("bill", vec!["billing"]),
            ("%", vec![]),
            ("o_d", vec![]),
            ("s-d", vec!["orders-db"]),
        ] {
            let got = names(
                srv.get(
                    &format!(
                        "/v1/credentials?q={}",
                        form_urlencoded(&[("", q)]).trim_start_matches('=')
                    ),
                    &srv.admin,
                )
                .await
                .ok(200),
            );
            assert_eq!(got, want, "q={q}");
        }
        let mut ui = Ui::new(&srv);
        ui.sign_in("admin", &srv.admin_password).await;
        let p = ui.get("/credentials?q=bill").await;
        assert!(
            p.body.contains(">billing<") && !p.body.contains(">orders-db<"),
            "{}",
            p.body
        );
    }
}

/// `credvault scheduler tick --now T` against the server's store; its JSON report.
fn tick_at(srv: &Server, unix_secs: i64) -> Value {
    let at = time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(["scheduler", "tick", "--data-dir"]).arg(srv.data.path());
    if let Some(pg) = &srv.pg {
        cmd.arg("--database-url").arg(&pg.url);
    }
    cmd.arg("--now").arg(&at);
    for v in [
        "CREDVAULT_TOKEN",
        "CREDVAULT_CONFIG",
        "CREDVAULT_DATABASE_URL",
        "CREDVAULT_DATA_DIR",
    ] {
        cmd.env_remove(v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_scheduler_deletes_sessions_a_day_after_they_ended() {
    for b in backends() {
        let srv = Server::start(b).await;
        let mut a = Ui::new(&srv);
        a.sign_in("admin", &srv.admin_password).await;
        let csrf = a.csrf().await;
        let mut b2 = Ui::new(&srv);
        b2.sign_in("admin", &srv.admin_password).await;
        assert_eq!(a.post("/sign-out", &[("_csrf", &csrf)]).await.status, 303);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert_eq!(
            tick_at(&srv, now)["sessions_removed"],
            0,
            "ended just now: kept for a day"
        );
        assert_eq!(b2.get("/credentials").await.status, 200, "a live session is untouched");
        assert_eq!(tick_at(&srv, now + 2 * 86_400)["sessions_removed"], 2);
    }
}

#[tokio::test]
async fn sessions_expire_when_idle_or_old_and_cookies_are_secure_behind_tls() {
    for b in backends() {
        let srv = Server::start(b).await;
        let mut ui = Ui::new(&srv);
        ui.sign_in("admin", &srv.admin_password).await;
        assert_eq!(ui.get("/credentials").await.status, 200);
        // Idle for 31 minutes: refused, the cookie cleared, the refusal audited.
        let idle = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64)
            - 31 * 60 * 1_000_000;
        srv.raw_sql(&format!("UPDATE ui_sessions SET last_seen = {idle}"));
        let r = ui.get("/credentials").await;
        assert_eq!(r.status, 303);
        assert!(r.location().starts_with("/sign-in"));
        assert!(!ui.cookies.contains_key("cv_session"), "the dead cookie is cleared");
        // Past the absolute expiry, however active.
        ui.sign_in("admin", &srv.admin_password).await;
        assert_eq!(ui.get("/credentials").await.status, 200);
        srv.raw_sql("UPDATE ui_sessions SET expires_at = 1 WHERE revoked_at IS NULL");
        assert_eq!(ui.get("/credentials").await.status, 303);
        let reasons: Vec<String> = audit_actions(&srv, "auth.failure")
            .await
            .iter()
            .map(|e| e["details"]["reason"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            reasons.iter().filter(|r| *r == "session_expired").count(),
            2,
            "{reasons:?}"
        );
    }

    // Behind TLS (an https public URL) the cookies are __Host- prefixed and Secure.
    let srv = Server::start_opts(
        Backend::Sqlite,
        common::TempDir::new(),
        None,
        &[],
        &[("CREDVAULT_PUBLIC_URL", "https://vault.example.test")],
    )
    .await;
    let mut ui = Ui::new(&srv);
    let p = ui.get("/sign-in").await;
    let pre = p.header("set-cookie");
    assert!(
        pre.starts_with("__Host-cv_pre=") && pre.contains("; Secure") && pre.contains("Path=/;"),
        "{pre}"
    );
    let r = ui.sign_in("admin", &srv.admin_password).await;
    let set: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("__Host-cv_session=cvs_"))
        .expect("a __Host- session cookie");
    assert!(
        session.contains("; Secure") && session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let device = set
        .iter()
        .find(|c| c.starts_with("__Host-cv_device=cvd_"))
        .expect("a __Host- device cookie");
    assert!(
        device.contains("; Secure") && device.contains("HttpOnly") && device.contains("SameSite=Strict"),
        "{device}"
    );
    assert_eq!(ui.get("/credentials").await.status, 200, "the prefixed cookie signs in");
}

#[tokio::test]
async fn pipelines_show_their_connections() {
    let srv = Server::start(Backend::Sqlite).await;
    let cred = srv.database_credential(&srv.admin, "warehouse", "wh-secret-123").await;
    let conn = srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "warehouse-prod", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "db.internal", "port": 5432, "database": "wh"}, "credential_id": cred["id"]}),
        )
        .await
        .ok(201);
    let p = srv
        .post(
            "/v1/pipelines",
            &srv.admin,
            json!({"name": "nightly-orders", "workspace_id": srv.ws_id, "connection_ids": [conn["id"]]}),
        )
        .await
        .ok(201);
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let list = ui.get("/pipelines").await;
    assert!(list.body.contains(">nightly-orders<"), "{}", list.body);
    let detail = ui.get(&format!("/pipelines/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(detail.status, 200);
    assert!(
        detail.body.contains(">warehouse-prod<") && detail.body.contains(cred["id"].as_str().unwrap()),
        "{}",
        detail.body
    );
    let usage = ui.get(&format!("/credentials/{}", cred["id"].as_str().unwrap())).await;
    assert!(
        usage.body.contains(">nightly-orders<"),
        "the credential page lists the pipelines using it"
    );
}

#[tokio::test]
async fn show_rotation_due_covers_every_page_of_the_list() {
    let srv = Server::start(Backend::Sqlite).await;
    // 60 credentials that are not due (more than one page of 50), then one that is.
    for i in 0..60 {
        srv.database_credential(&srv.admin, &format!("fine-{i:02}"), "pw-1234567")
            .await;
    }
    srv.post(
        "/v1/credentials",
        &srv.admin,
        json!({"name": "overdue", "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
               "rotation_period_days": 1, "fields": {"username": "loader", "password": "pw-7654321"}}),
    )
    .await
    .ok(201);
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let all = ui.get("/credentials").await;
    assert!(
        !all.body.contains(">overdue<") && all.body.contains("Next page"),
        "the unfiltered first page ends before the due credential"
    );
    let due = ui.get("/credentials?show=rotation-due").await;
    assert_eq!(due.status, 200);
    assert!(due.body.contains(">overdue<"), "{}", due.body);
    assert!(!due.body.contains(">fine-00<"), "only due credentials are listed");
    assert!(!due.body.contains("Next page"), "every page was read");
    let unused = ui.get("/credentials?show=unused").await;
    // All 61 are unused (unattached): a page of at least 50, then a next page.
    assert!(
        unused.body.contains(">fine-00<") && unused.body.contains("Next page"),
        "{}",
        unused.body
    );
}

#[tokio::test]
async fn the_same_name_in_two_organizations_signs_in_as_organization_slash_name() {
    for b in backends() {
        let srv = Server::start(b).await;
        let other = srv.post("/v1/orgs", &srv.admin, json!({"name": "Acme"})).await.ok(201)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for (org, pw) in [
            (srv.org_id.clone(), "default-alice-pw"),
            (other.clone(), "acme-alice-pw"),
        ] {
            let (pid, _) = srv
                .principal(&org, "user", "alice", &[("builder", common::Scope::Org(&org))])
                .await;
            let r = set_password(&srv, &pid, pw).await;
            assert_eq!(
                r.status, 204,
                "a name used in another organization can get a password: {:?}",
                r.body
            );
        }
        // The bare name is ambiguous now: nobody is signed in, and the page says what to do.
        let mut ui = Ui::new(&srv);
        let r = ui.sign_in("alice", "acme-alice-pw").await;
        assert!(r.location().starts_with("/sign-in?failed=1"), "{}", r.location());
        let page = ui.get(&r.location()).await;
        assert!(page.body.contains("organization/name"), "{}", page.body);
        // Qualified, each alice gets her own organization (case-insensitively).
        for (login, pw, org) in [
            ("default/alice", "default-alice-pw", srv.org_id.as_str()),
            ("ACME/Alice", "acme-alice-pw", other.as_str()),
        ] {
            let mut ui = Ui::new(&srv);
            let r = ui.sign_in(login, pw).await;
            assert_eq!(r.location(), "/credentials", "{login}");
            let account = ui.get("/account").await;
            assert!(account.body.contains(org), "{login} is in {org}: {}", account.body);
            // The browser she signed in from settles the bare name for her from now on.
            let csrf = ui.csrf().await;
            ui.post("/sign-out", &[("_csrf", &csrf)]).await;
            assert_eq!(
                ui.sign_in("alice", pw).await.location(),
                "/credentials",
                "{login} bare, known browser"
            );
            let account = ui.get("/account").await;
            assert!(account.body.contains(org), "{}", account.body);
        }
        // Failures that name nobody are in the instance's own chain.
        let ambiguous = audit_actions(&srv, "auth.failure&org_id=_instance").await;
        assert!(
            ambiguous.iter().any(|e| e["details"]["reason"] == "ambiguous_login"),
            "{ambiguous:#?}"
        );
        // The wrong organization's password does not work, and neither does an unknown one.
        let mut ui = Ui::new(&srv);
        assert!(
            ui.sign_in("default/alice", "acme-alice-pw")
                .await
                .location()
                .starts_with("/sign-in?failed=1")
        );
        assert!(
            ui.sign_in("nowhere/alice", "acme-alice-pw")
                .await
                .location()
                .starts_with("/sign-in?failed=1")
        );
        // Within one organization a login is unique: a case variant cannot get a password.
        let org = srv.org_id.clone();
        let (upper, _) = srv
            .principal(&org, "user", "ALICE", &[("builder", common::Scope::Org(&org))])
            .await;
        set_password(&srv, &upper, "upper-alice-pw")
            .await
            .problem(409, "login_taken");
        // A name that only one organization uses still signs in bare.
        let mut ui = Ui::new(&srv);
        assert_eq!(
            ui.sign_in("admin", &srv.admin_password).await.location(),
            "/credentials"
        );
    }
}

#[tokio::test]
async fn the_rotation_wizard_keeps_the_ssh_tunnel_unless_told_not_to() {
    let srv = Server::start(Backend::Sqlite).await;
    let key = "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n";
    let cred = srv
        .post(
            "/v1/credentials",
            &srv.admin,
            json!({"name": "tunnelled", "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
                   "fields": {"username": "loader", "password": "old-db-password",
                              "ssh_tunnel": {"host": "127.0.0.1", "port": 1, "user": "jump", "private_key_pem": key,
                                             "known_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICvetwQHN4E+0aOrtmeDkwI+VH/a+yYcE0w5L9CiiEzE b"}}}),
        )
        .await
        .ok(201);
    let id = cred["id"].as_str().unwrap().to_owned();
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;
    let form = ui.get(&format!("/credentials/{id}/rotate")).await;
    assert!(
        form.body.contains("name=\"keep.ssh_tunnel\"") && form.body.contains("name=\"keep.password\""),
        "{}",
        form.body
    );
    assert!(!form.body.contains("MAMCAQA") && !form.body.contains("old-db-password"));
    let versions = |c: Value| -> Vec<Vec<String>> {
        c["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let mut s: Vec<String> = v["secret_fields_set"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_owned())
                    .collect();
                s.sort();
                s
            })
            .collect()
    };
    let path = format!("/credentials/{id}/rotate");
    // A new password, the tunnel kept (its key is not entered again).
    let r = ui
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("f.password", "new-db-password"),
                ("keep.ssh_tunnel", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Version 2 staged"), "{}", r.body);
    // Unticked, the optional tunnel is dropped from the new version.
    let r = ui
        .post(&path, &[("_csrf", &csrf), ("f.password", "third-db-password")])
        .await;
    assert!(r.body.contains("Version 3 staged"), "{}", r.body);
    // Nothing entered and "keep" unticked for the required password: refused, nothing staged.
    let r = ui.post(&path, &[("_csrf", &csrf), ("keep.ssh_tunnel", "1")]).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let v = versions(srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200));
    let with_tunnel = vec!["password".to_owned(), "ssh_tunnel.private_key_pem".to_owned()];
    assert_eq!(v, vec![with_tunnel.clone(), with_tunnel, vec!["password".to_owned()]]);
}

async fn device_cookies(b: Backend) {
    let srv = Server::start(b).await;
    let (name, pw) = person(&srv, "viewer").await;
    // The owner signed in from this browser before: it holds a device cookie.
    let mut owner = Ui::new(&srv);
    assert_eq!(owner.sign_in(&name, &pw).await.location(), "/credentials");
    let device = owner
        .cookies
        .get("cv_device")
        .cloned()
        .expect("a device cookie is issued");
    assert!(device.starts_with("cvd_") && device.len() == 68, "{device}");
    let csrf = owner.csrf().await;
    owner.post("/sign-out", &[("_csrf", &csrf)]).await;

    // A stranger guesses five times and locks the account for strangers.
    let mut stranger = Ui::new(&srv);
    for _ in 0..5 {
        stranger.sign_in(&name, "wrong-password-1").await;
    }
    let r = stranger.sign_in(&name, &pw).await;
    assert!(
        r.location().starts_with("/sign-in?failed=1"),
        "locked for browsers without a device cookie"
    );
    // Someone else's device cookie, or a made-up one, does not help.
    let (other, other_pw) = person(&srv, "viewer").await;
    let mut other_ui = Ui::new(&srv);
    other_ui.sign_in(&other, &other_pw).await;
    let other_device = other_ui.cookies["cv_device"].clone();
    for fake in [other_device, format!("cvd_{}", "0".repeat(64))] {
        let mut s = Ui::new(&srv);
        s.cookies.insert("cv_device".into(), fake);
        assert!(s.sign_in(&name, &pw).await.location().starts_with("/sign-in?failed=1"));
    }

    // The owner's browser still signs in, and keeps its device cookie.
    assert_eq!(
        owner.sign_in(&name, &pw).await.location(),
        "/credentials",
        "the owner is not locked out"
    );
    assert_eq!(owner.cookies["cv_device"], device);
    let csrf = owner.csrf().await;
    owner.post("/sign-out", &[("_csrf", &csrf)]).await;
    // The strangers' lock stays in place.
    let mut s = Ui::new(&srv);
    assert!(s.sign_in(&name, &pw).await.location().starts_with("/sign-in?failed=1"));

    // Guesses from a stolen device cookie lock that device, not more.
    let mut thief = Ui::new(&srv);
    thief.cookies.insert("cv_device".into(), device.clone());
    for _ in 0..5 {
        thief.sign_in(&name, "wrong-password-2").await;
    }
    assert!(
        thief
            .sign_in(&name, &pw)
            .await
            .location()
            .starts_with("/sign-in?failed=1"),
        "the device is locked now"
    );
    // An admin's password reset unlocks the account and ends every device cookie (and its lock).
    let pid = principal_id(&srv, &name).await;
    assert_eq!(set_password(&srv, &pid, "reset-by-the-admin").await.status, 204);
    let mut after = Ui::new(&srv);
    assert_eq!(
        after.sign_in(&name, "reset-by-the-admin").await.location(),
        "/credentials"
    );
    assert_ne!(after.cookies["cv_device"], device, "a new device cookie");
    let mut old_device = Ui::new(&srv);
    old_device.cookies.insert("cv_device".into(), device.clone());
    assert_eq!(
        old_device.sign_in(&name, "reset-by-the-admin").await.location(),
        "/credentials"
    );
    assert_ne!(
        old_device.cookies["cv_device"], device,
        "the old device cookie is no longer known"
    );
    let failures = audit_actions(&srv, "auth.failure").await;
    assert!(
        failures
            .iter()
            .any(|e| e["details"]["counted_on"] == "device" && e["details"]["locked_for_secs"] == json!(30))
    );
    assert!(
        failures
            .iter()
            .any(|e| e["details"]["counted_on"] == "account" && e["details"]["locked_for_secs"] == json!(30))
    );
    // The device cookie is never in the audit journal or the log.
    assert!(!json!(failures).to_string().contains(&device[4..]));
    assert!(!srv.logs().contains(&device[4..]));
}

#[tokio::test]
async fn a_browser_that_signed_in_before_is_not_locked_out_by_strangers_guesses() {
    for b in backends() {
        device_cookies(b).await;
    }
}

#[tokio::test]
async fn a_credential_s_details_are_edited_in_the_ui_and_its_secrets_are_not() {
    let srv = Server::start(Backend::Sqlite).await;
    let cred = srv.database_credential(&srv.admin, "orders-db", "pw-secret-77").await;
    let id = cred["id"].as_str().unwrap().to_owned();
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;
    let detail = ui.get(&format!("/credentials/{id}")).await;
    assert!(
        detail.body.contains(&format!("href=\"/credentials/{id}/edit\"")),
        "{}",
        detail.body
    );
    let form = ui.get(&format!("/credentials/{id}/edit")).await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains(">owner_team=data-platform\nsystem=postgres</textarea>"),
        "labels prefilled: {}",
        form.body
    );
    assert!(!form.body.contains("pw-secret-77"));
    let path = format!("/credentials/{id}/edit");
    let r = ui
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("name", "orders-db-prod"),
                ("description", "Orders primary"),
                ("labels", "system=orders\nowner_team=payments\ntier=gold\nnote=a, b=c"),
                ("expires_at", "2031-01-31T00:00:00Z"),
                ("rotation_period_days", "60"),
            ],
        )
        .await;
    assert_eq!(r.location(), format!("/credentials/{id}?done=updated"), "{}", r.body);
    let c = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    assert_eq!(c["name"], "orders-db-prod");
    assert_eq!(c["description"], "Orders primary");
    assert_eq!(
        c["labels"],
        json!({"system": "orders", "owner_team": "payments", "tier": "gold", "note": "a, b=c"}),
        "a value may hold commas and ="
    );
    assert_eq!(c["rotation_period_days"], 60);
    assert!(c["expires_at"].as_str().unwrap().starts_with("2031-01-31"));
    assert_eq!(c["current_version"], 1, "no new version: the secret is untouched");
    // Refusals keep what was typed and say what is wrong.
    for (field, value, says) in [
        ("labels", "tier", "not a key=value line"),
        ("rotation_period_days", "soon", "whole number"),
        ("expires_at", "tomorrow", "RFC 3339"),
    ] {
        let mut f = vec![
            ("_csrf", csrf.as_str()),
            ("name", "orders-db-prod"),
            ("labels", "system=orders"),
            ("rotation_period_days", "60"),
        ];
        f.retain(|(k, _)| *k != field);
        f.push((field, value));
        let r = ui.post(&path, &f).await;
        assert_eq!(r.status, 422, "{field}: {}", r.body);
        assert!(
            r.body.contains(says)
                && (r.body.contains(&format!("value=\"{value}\"")) || r.body.contains(&format!(">{value}</textarea>"))),
            "{field}: {}",
            r.body
        );
    }
    // Sending the form as shown changes nothing (and says so).
    let form = ui.get(&path).await;
    assert!(
        form.body
            .contains(">note=a, b=c\nowner_team=payments\nsystem=orders\ntier=gold</textarea>"),
        "{}",
        form.body
    );
    let shown_expiry = c["expires_at"].as_str().unwrap().to_owned();
    let r = ui
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("name", "orders-db-prod"),
                ("description", "Orders primary"),
                ("labels", "note=a, b=c\nowner_team=payments\nsystem=orders\ntier=gold"),
                ("expires_at", &shown_expiry),
                ("rotation_period_days", "60"),
            ],
        )
        .await;
    assert_eq!(r.location(), format!("/credentials/{id}?done=unchanged"));
    // Clearing the optional fields clears them; a field the form does not send is left alone.
    let r = ui
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("name", "orders-db-prod"),
                ("labels", ""),
                ("expires_at", ""),
                ("rotation_period_days", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let c = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    assert_eq!(
        (
            c["labels"].clone(),
            c["expires_at"].clone(),
            c["rotation_period_days"].clone()
        ),
        (json!({}), Value::Null, Value::Null)
    );
    assert_eq!(c["description"], "Orders primary", "not sent, not cleared");
    // A builder is offered no Edit and cannot post one.
    let (bname, bpw) = person(&srv, "builder").await;
    let mut b = Ui::new(&srv);
    b.sign_in(&bname, &bpw).await;
    assert!(!b.get(&format!("/credentials/{id}")).await.body.contains("/edit\""));
    let bcsrf = b.csrf().await;
    let r = b
        .post(&path, &[("_csrf", &bcsrf), ("name", "hijacked"), ("labels", "")])
        .await;
    assert!(r.status == 403 || r.status == 404, "{}", r.status);
    assert_eq!(
        srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200)["name"],
        "orders-db-prod"
    );
}

#[tokio::test]
async fn the_rotation_wizard_shows_when_the_old_version_was_last_resolved() {
    let srv = Server::start(Backend::Sqlite).await;
    let cred = srv.database_credential(&srv.admin, "orders-db", "pw-old-1234").await;
    let id = cred["id"].as_str().unwrap().to_owned();
    let conn = srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "orders", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "db.internal", "database": "x"}, "credential_id": id}),
        )
        .await
        .ok(201);
    let org = srv.org_id.clone();
    let (_, worker) = srv
        .principal(&org, "service_account", "etl", &[("worker", common::Scope::Org(&org))])
        .await;
    srv.post(
        "/v1/resolve",
        &worker,
        json!({"connection_id": conn["id"], "run_id": "run-1"}),
    )
    .await
    .ok(200);
    srv.post(
        &format!("/v1/credentials/{id}/versions"),
        &srv.admin,
        json!({"fields": {"username": "loader", "password": "pw-new-5678"}}),
    )
    .await
    .ok(201);
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;
    let detail = ui.get(&format!("/credentials/{id}")).await;
    assert_eq!(
        detail.body.matches("last resolved").count(),
        1,
        "v1 only: {}",
        detail.body
    );
    let r = ui
        .post(&format!("/credentials/{id}/versions/2/promote"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Version 1: last resolved"), "{}", r.body);
}

/// Where a secret may go, in the UI: the credential page lists the allowed destinations, the
/// owner edits them (a bad line is named and the typed text kept), New credential takes them,
/// and the attach picker tells a builder which credential would refuse the connection's hosts
/// — while the owner, whose wiring allows them, is told nothing of the sort.
#[tokio::test]
async fn allowed_destinations_are_shown_edited_and_explained_in_the_attach_picker() {
    let srv = Server::start(Backend::Sqlite).await;
    let cred = srv.database_credential(&srv.admin, "orders-db", "pw-secret-88").await;
    let id = cred["id"].as_str().unwrap().to_owned();
    let mut ui = Ui::new(&srv);
    ui.sign_in("admin", &srv.admin_password).await;
    let csrf = ui.csrf().await;
    let detail = ui.get(&format!("/credentials/{id}")).await;
    assert!(detail.body.contains("Where the secret may go"), "{}", detail.body);
    assert!(detail.body.contains("Nowhere yet"), "{}", detail.body);
    let path = format!("/credentials/{id}/edit");
    let r = ui
        .post(
            &path,
            &[
                ("_csrf", &csrf),
                ("allowed_destinations", "db.internal:5432\n\n*.corp.example\n"),
            ],
        )
        .await;
    assert_eq!(r.location(), format!("/credentials/{id}?done=updated"), "{}", r.body);
    let c = srv.get(&format!("/v1/credentials/{id}"), &srv.admin).await.ok(200);
    assert_eq!(c["allowed_destinations"], json!(["db.internal:5432", "*.corp.example"]));
    let detail = ui.get(&format!("/credentials/{id}")).await;
    assert!(detail.body.contains("<code>db.internal:5432</code>"), "{}", detail.body);
    let form = ui.get(&path).await;
    assert!(
        form.body.contains(">db.internal:5432\n*.corp.example</textarea>"),
        "{}",
        form.body
    );
    // A bad line is named by its number and what was typed stays.
    let r = ui
        .post(
            &path,
            &[("_csrf", &csrf), ("allowed_destinations", "db.internal:5432\n*")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("line 2:"), "{}", r.body);
    assert!(r.body.contains(">db.internal:5432\n*</textarea>"), "{}", r.body);
    // New credential takes them.
    let r = ui
        .post(
            "/credentials/new",
            &[
                ("_csrf", &csrf),
                ("type", "password"),
                ("variant", "password"),
                ("name", "ftp-login"),
                ("workspace", &srv.ws_id),
                ("environment", "prod"),
                ("allowed_destinations", "ftp.internal:21"),
                ("f.username", "u"),
                ("f.password", "pw-secret-99"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let new_id = r
        .location()
        .trim_start_matches("/credentials/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let c = srv.get(&format!("/v1/credentials/{new_id}"), &srv.admin).await.ok(200);
    assert_eq!(c["allowed_destinations"], json!(["ftp.internal:21"]));

    // A connection to a host the credential does not allow.
    let conn = srv
        .post(
            "/v1/connections",
            &srv.admin,
            json!({"name": "elsewhere", "workspace_id": srv.ws_id, "environment": "prod", "kind": "postgres",
                   "config": {"host": "db.example.com", "database": "a"}}),
        )
        .await
        .ok(201);
    let conn_id = conn["id"].as_str().unwrap();
    // The owner is not warned: attaching would allow the host.
    let page = ui.get(&format!("/connections/{conn_id}")).await;
    assert!(!page.body.contains("destination-misfits"), "{}", page.body);
    // A builder is told, before trying, and the refusal after trying names the host.
    let (name, pw) = person(&srv, "builder").await;
    let mut b = Ui::new(&srv);
    b.sign_in(&name, &pw).await;
    let bcsrf = b.csrf().await;
    let page = b.get(&format!("/connections/{conn_id}")).await;
    assert!(page.body.contains("id=\"destination-misfits\""), "{}", page.body);
    assert!(
        page.body.contains("does not allow db.example.com:5432"),
        "{}",
        page.body
    );
    let r = b
        .post(
            &format!("/connections/{conn_id}/attach"),
            &[("_csrf", &bcsrf), ("credential_id", &id)],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains("db.example.com:5432 is not an allowed destination"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("pw-secret-88"));
}
