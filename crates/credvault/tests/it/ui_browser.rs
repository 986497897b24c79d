//! The web UI end to end in headless Chromium (Debian's `chromium` through `chromedriver`,
//! started by `scripts/test`), against the test run's real PostgreSQL as the target system:
//! sign in (with the keyboard only) and reach New credential from the keyboard; create a
//! `database` credential through the form; the canary secret (the real
//! password) is in no page source afterwards; create a connection and press Test connection
//! (ok, then failed once a wrong password version is live); run the rotation wizard to the
//! end; see the environment-mismatch message; download the attachments CSV; see the audit
//! entries; a builder is offered no "New credential" and a forged form is refused; a form
//! without the CSRF token is refused. The same run in headless Firefox (geckodriver).
//! Screenshots of each main screen (from Chromium) go to `docs/screenshots/`, and every main
//! screen must pass axe-core's WCAG 2.1 A/AA and best-practice rules without a single finding,
//! in both browsers.
#![cfg(all(feature = "browser-tests", feature = "postgres-tests"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use crate::common::random_hex;

use std::path::PathBuf;

use common::webdriver::{Browser, ENTER, TAB};
use common::{Backend, Server};
use serde_json::json;

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}

/// The test PostgreSQL, and a login role on it for the credential.
struct PgRole {
    admin: postgres::Config,
    host: String,
    port: u16,
    role: String,
}

impl PgRole {
    fn create(password: &str) -> PgRole {
        let url = std::env::var("CREDVAULT_TEST_PG_URL")
            .expect("CREDVAULT_TEST_PG_URL must name the test PostgreSQL; scripts/test starts one");
        let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
        let (auth, rest) = rest.rsplit_once('@').unwrap();
        let (user, pass) = auth.split_once(':').unwrap();
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (host, port) = hostport.rsplit_once(':').unwrap();
        let mut admin = postgres::Config::new();
        admin
            .host(host)
            .port(port.parse().unwrap())
            .user(user)
            .password(pass)
            .dbname(db.split('?').next().unwrap());
        let r = PgRole {
            admin,
            host: host.to_owned(),
            port: port.parse().unwrap(),
            role: format!("cvt_ui_{}", random_hex(4)),
        };
        r.sql(format!("CREATE ROLE {} LOGIN PASSWORD '{password}'", r.role));
        r
    }
    fn sql(&self, s: String) {
        let admin = self.admin.clone();
        common::off_runtime(move || {
            let mut c = admin
                .connect(postgres::NoTls)
                .expect("cannot reach the test PostgreSQL");
            c.batch_execute(&s).unwrap();
        });
    }
    fn set_password(&self, pw: &str) {
        self.sql(format!("ALTER ROLE {} PASSWORD '{pw}'", self.role));
    }
}

impl Drop for PgRole {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let s = format!("DROP ROLE IF EXISTS {}", self.role);
        common::off_runtime(move || {
            if let Ok(mut c) = admin.connect(postgres::NoTls) {
                let _ = c.batch_execute(&s);
            }
        });
    }
}

/// Every page source seen, to check for secrets at the end.
struct Seen(Vec<(String, String)>);

impl Seen {
    async fn record(&mut self, b: &Browser) {
        self.0.push((b.current_url().await, b.source().await));
    }
    fn assert_absent(&self, secrets: &[&str]) {
        assert!(self.0.len() > 10, "too few pages recorded");
        for (url, src) in &self.0 {
            for s in secrets {
                assert!(!src.contains(s), "a secret appears in the source of {url}");
            }
        }
    }
}

async fn sign_in(b: &Browser, srv: &Server, login: &str, password: &str) {
    b.goto(&format!("{}/sign-in", srv.base)).await;
    b.find("#login").await.send_keys(login).await;
    b.find("#password").await.send_keys(password).await;
    b.find("form.card button[type=submit]").await.click().await;
    b.wait_for_text("h1", "Credentials").await;
}

/// Clicks the submit button of the form whose action ends with `action_suffix`.
async fn press(b: &Browser, action_suffix: &str) {
    b.find(&format!("form[action$='{action_suffix}'] button[type=submit]"))
        .await
        .click()
        .await;
}

#[tokio::test]
async fn the_whole_credential_lifecycle_in_chromium() {
    lifecycle(Browser::start().await, true).await;
}

#[tokio::test]
async fn the_whole_credential_lifecycle_in_firefox() {
    lifecycle(Browser::start_firefox().await, false).await;
}

/// Writes a screenshot of the current page when `take` (the Chromium run writes them).
/// At each main screen: the screenshot (Chromium's run) and the accessibility check.
async fn shot(b: &Browser, take: bool, a11y: &mut Vec<String>, name: &str) {
    if take {
        b.screenshot(shots().join(name)).await;
    }
    for v in axe(b).await {
        a11y.push(format!("{name}: {v}"));
    }
}

/// axe-core's findings of any impact (WCAG 2.1 A/AA and best practices) on the current
/// page. `scripts/test` fetches axe-core from the npm registry (`axe_ensure`).
async fn axe(b: &Browser) -> Vec<String> {
    let path = std::env::var("CREDVAULT_TEST_AXE_JS")
        .expect("CREDVAULT_TEST_AXE_JS must name axe.min.js; scripts/test fetches it (scripts/lib/chromium.sh)");
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // WebDriver scripts are not subject to the page's CSP, so injecting works under
    // `script-src 'self'`.
    let loaded = b.execute(&format!("{src}\n;return typeof window.axe;"), vec![]).await;
    assert_eq!(loaded, json!("object"), "axe-core did not load");
    let found = b
        .execute_async(
            "var done = arguments[arguments.length - 1];
             window.axe.run(document, {resultTypes: ['violations'],
                 runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
               .then(function (r) {
                 done(r.violations
                   .map(function (v) {
                     return v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
                       v.nodes.slice(0, 3).map(function (n) { return n.target.join(' '); }).join(', ');
                   }));
               }, function (e) { done(['axe failed: ' + e]); });",
            vec![],
        )
        .await;
    found
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_else(|| vec![format!("axe returned {found}")])
}

async fn lifecycle(b: Browser, take: bool) {
    let srv = Server::start_with(Backend::Sqlite, &["--egress-allow", "127.0.0.0/8"]).await;
    let canary = format!("cvcanary{}", random_hex(10));
    let pg = PgRole::create(&canary);
    let mut seen = Seen(Vec::new());
    let mut a11y: Vec<String> = Vec::new();
    std::fs::create_dir_all(shots()).unwrap();

    // 1. Sign in, with the keyboard only: the name field has the focus, Tab moves on, Enter
    // sends.
    b.goto(&format!("{}/", srv.base)).await;
    b.find("#login").await;
    shot(&b, take, &mut a11y, "01-sign-in.png").await;
    assert_eq!(b.focused().await, "login", "the sign-in page focuses the name field");
    b.press_keys(&format!("admin{TAB}{}{ENTER}", srv.admin_password)).await;
    b.wait_for_text("h1", "Credentials").await;
    shot(&b, take, &mut a11y, "02-credentials-empty.png").await;

    // 2. New credential, reached from the keyboard: the first Tab stop skips to the content,
    // and New credential is a few Tabs further.
    b.press_keys(TAB).await;
    assert_eq!(b.focused().await, "a.skip", "the first Tab stop is 'Skip to content'");
    b.press_keys(ENTER).await;
    let mut stops = Vec::new();
    while b.focused().await != "new-credential" {
        assert!(
            stops.len() < 8,
            "New credential is not reachable with Tab from the content: {stops:?}"
        );
        b.press_keys(TAB).await;
        stops.push(b.focused().await);
    }
    b.press_keys(ENTER).await;
    b.wait_for_text("h1", "New credential").await;
    shot(&b, take, &mut a11y, "03-new-credential-types.png").await;
    b.find("a[data-type=database]").await.click().await;
    b.wait_for_text("h1", "New Database credential").await;
    assert_eq!(
        b.find("#f-password").await.attr("type").await.as_deref(),
        Some("password"),
        "secret fields are password inputs"
    );
    b.find("#in-name").await.send_keys("orders-db").await;
    b.find("#workspace").await.select_value(&srv.ws_id).await;
    b.find("#in-environment").await.send_keys("prod").await;
    b.find("#in-system").await.send_keys("orders").await;
    b.find("#in-owner").await.send_keys("data-platform").await;
    b.find("#in-rotation_period_days").await.send_keys("90").await;
    b.find("#f-username").await.send_keys(&pg.role).await;
    b.find("#f-password").await.send_keys(&canary).await;
    shot(&b, take, &mut a11y, "04-new-credential-form.png").await;
    b.find("form.credential button.primary").await.click().await;
    b.wait_for_text("p.notice", "Created").await;
    seen.record(&b).await;
    let cred_url = b.current_url().await;
    let cred_id = cred_url
        .split("/credentials/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert!(cred_id.starts_with("cred_"), "{cred_url}");

    // 3. A connection to the real PostgreSQL; the picker offers the fitting credential.
    b.goto(&format!("{}/connections", srv.base)).await;
    seen.record(&b).await;
    b.find("#new-connection").await.click().await;
    b.find("a[data-kind=postgres]").await.click().await;
    b.wait_for_text("h1", "New postgres connection").await;
    b.find("#c-name").await.send_keys("orders-db-prod").await;
    b.find("#c-env").await.send_keys("prod").await;
    b.find("[name='cfg.host']").await.send_keys(&pg.host).await;
    b.find("[name='cfg.port']").await.send_keys(&pg.port.to_string()).await;
    b.find("[name='cfg.database']").await.send_keys("postgres").await;
    b.find("#c-cred").await.select_value(&cred_id).await;
    b.find("form.card button.primary").await.click().await;
    b.wait_for_text("p.notice", "Created").await;
    let conn_url = b.current_url().await;
    let conn_path = conn_url
        .split(&srv.base)
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();

    // 4. Test connection: ok, with a latency.
    press(&b, "/test").await;
    let r = b.wait_for_text("#test-result", "Connection works").await;
    assert!(r.text().await.contains(" ms"));
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "05-connection-test-ok.png").await;

    // 5. Rotation with a wrong password: the wizard's tests show the failure; promoting it
    //    anyway (after the confirmation) makes Test connection fail.
    b.goto(&cred_url).await;
    b.find("#rotate").await.click().await;
    b.wait_for_text("h1", "Rotate orders-db").await;
    b.find("[name='f.password']")
        .await
        .send_keys("definitely-wrong-pw")
        .await;
    b.find("form.card button.primary").await.click().await;
    b.wait_for_text("#test-summary", "Some connections failed").await;
    assert!(b.find("#test-results").await.text().await.contains("failed"));
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "06-rotation-wizard-failed-test.png").await;
    b.execute("window.confirm = function () { return true; };", vec![])
        .await;
    press(&b, "/promote").await;
    b.wait_for_text("h1", "is live").await;
    b.goto(&format!("{}{conn_path}", srv.base)).await;
    press(&b, "/test").await;
    b.wait_for_text("#test-result", "Connection failed").await;
    seen.record(&b).await;

    // 6. The rotation wizard to completion: the DBA sets a new password, the wizard stages
    //    it, every dependent passes, promote, revoke the old versions.
    let new_pw = format!("cvcanary2{}", random_hex(10));
    pg.set_password(&new_pw);
    b.goto(&format!("{}/credentials/{cred_id}/rotate", srv.base)).await;
    b.find("[name='f.password']").await.send_keys(&new_pw).await;
    b.find("form.card button.primary").await.click().await;
    b.wait_for_text("#test-summary", "Every connection works").await;
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "07-rotation-wizard-tests-passed.png").await;
    press(&b, "/versions/3/promote").await;
    b.wait_for_text("h1", "Version 3 is live").await;
    shot(&b, take, &mut a11y, "08-rotation-wizard-revoke.png").await;
    press(&b, "/versions/2/revoke").await;
    b.wait_for_text("p.notice", "Version revoked").await;
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "09-credential-detail.png").await;
    let c = srv.get(&format!("/v1/credentials/{cred_id}"), &srv.admin).await.ok(200);
    let states: Vec<(i64, String)> = c["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["state"].as_str().unwrap().to_owned()))
        .collect();
    assert!(states.contains(&(2, "revoked".into())), "{states:?}");
    assert!(states.contains(&(3, "current".into())), "{states:?}");
    b.goto(&format!("{}{conn_path}", srv.base)).await;
    press(&b, "/test").await;
    b.wait_for_text("#test-result", "Connection works").await;

    // 7. Environment mismatch: a staging connection cannot take the prod credential.
    b.goto(&format!("{}/connections/new?kind=postgres", srv.base)).await;
    b.find("#c-name").await.send_keys("orders-db-staging").await;
    b.find("#c-env").await.send_keys("staging").await;
    b.find("[name='cfg.host']").await.send_keys(&pg.host).await;
    b.find("[name='cfg.database']").await.send_keys("postgres").await;
    b.find("#c-cred").await.select_value(&cred_id).await;
    b.find("form.card button.primary").await.click().await;
    let m = b.wait_for_text("#env-mismatch", "Environment mismatch").await;
    assert!(m.is_displayed().await);
    assert!(b.find("#form-error").await.text().await.contains("tagged `prod`"));
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "10-environment-mismatch.png").await;

    // 8. Review: the attachments CSV downloads with the session.
    b.goto(&format!("{}/review", srv.base)).await;
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "11-review.png").await;
    let href = b.find("#csv-attachments").await.attr("href").await.unwrap();
    assert_eq!(href, "/review/attachments.csv");
    let csv = b
        .execute(
            "return fetch(arguments[0]).then(r => r.text().then(t => [r.status, r.headers.get('content-type'), r.headers.get('content-disposition'), t]));",
            vec![json!(href)],
        )
        .await;
    assert_eq!(csv[0], json!(200));
    assert_eq!(csv[1], json!("text/csv; charset=utf-8"));
    assert!(csv[2].as_str().unwrap().contains("credvault-attachments.csv"));
    let body = csv[3].as_str().unwrap();
    assert!(body.starts_with("credential_id,credential_name,"), "{body}");
    assert!(body.contains("orders-db-prod"), "{body}");
    assert!(!body.contains(&canary) && !body.contains(&new_pw));

    // 9. Audit: the entries are there; verify the chain.
    b.goto(&format!("{}/audit", srv.base)).await;
    let events = b.find("#audit-events").await.text().await;
    for a in [
        "auth.sign_in",
        "credential.create",
        "connection.create",
        "connection.test",
        "credential.version.promote",
        "credential.version.revoke",
    ] {
        assert!(events.contains(a), "{a} not in the audit page");
    }
    b.find("#verify").await.click().await;
    b.wait_for_text("#verify-result", "The chain is intact").await;
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "12-audit.png").await;

    b.goto(&format!("{}/admin", srv.base)).await;
    b.find("#members").await;
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "13-admin.png").await;
    b.execute("document.getElementById('settings').scrollIntoView();", vec![])
        .await;
    shot(&b, take, &mut a11y, "17-admin-settings.png").await;
    b.goto(&format!("{}/credentials", srv.base)).await;
    seen.record(&b).await;
    shot(&b, take, &mut a11y, "14-credentials.png").await;
    b.set_window_size(420, 860).await;
    b.goto(&format!("{}/credentials/{cred_id}", srv.base)).await;
    shot(&b, take, &mut a11y, "15-narrow-window.png").await;
    b.set_window_size(1280, 800).await;

    // 10. A form without the CSRF token is refused, with an explanation.
    b.execute(
        "var f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; \
         document.body.appendChild(f); f.submit();",
        vec![json!(format!("/credentials/{cred_id}/disable"))],
    )
    .await;
    b.wait_for_text("p.error", "stale").await;
    let c = srv.get(&format!("/v1/credentials/{cred_id}"), &srv.admin).await.ok(200);
    assert_eq!(c["status"], "active", "the CSRF-less form changed nothing");

    // Sign out.
    b.goto(&format!("{}/credentials", srv.base)).await;
    b.find("form.signout button").await.click().await;
    b.wait_for_text("h1", "Sign in").await;

    // 11. A builder: no New credential button, and a forged form (with a valid CSRF token of
    //     their own session) is refused by the server.
    let org = srv.org_id.clone();
    let (builder, _) = srv
        .principal(&org, "user", "bo-builder", &[("builder", common::Scope::Org(&org))])
        .await;
    let r = srv
        .call(
            "PUT",
            &format!("/v1/principals/{builder}/password"),
            Some(&srv.admin),
            Some(json!({"password": "builder-password-1"})),
        )
        .await;
    assert_eq!(r.status, 204);
    sign_in(&b, &srv, "bo-builder", "builder-password-1").await;
    seen.record(&b).await;
    assert!(
        b.try_find("#new-credential").await.is_none(),
        "a builder is offered New credential"
    );
    assert!(
        b.find("table.list").await.text().await.contains("orders-db"),
        "a builder sees credentials"
    );
    shot(&b, take, &mut a11y, "16-builder-view.png").await;
    b.execute(
        "var f = document.createElement('form'); f.method = 'post'; f.action = '/credentials/new'; \
         var add = function (k, v) { var i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }; \
         add('_csrf', document.querySelector('input[name=_csrf]').value); add('type', 'database'); add('variant', 'password'); \
         add('name', 'forged'); add('environment', 'prod'); add('f.username', 'x'); add('f.password', 'forged-pw-123'); \
         document.body.appendChild(f); f.submit();",
        vec![],
    )
    .await;
    // Wait for the answer page itself: the list page also has an h1, so waiting for any
    // h1 could read the old page before the browser navigated.
    let h1 = b.wait_for_text("h1", "Not ").await.text().await;
    assert!(h1 == "Not allowed" || h1 == "Not found", "{h1}");
    let list = srv.get("/v1/credentials", &srv.admin).await.ok(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "nothing forged was created");

    seen.assert_absent(&[&canary, &new_pw, "definitely-wrong-pw"]);
    assert!(
        a11y.is_empty(),
        "accessibility problems (axe-core):\n{}",
        a11y.join("\n")
    );
    b.quit().await;
    let logs = srv.logs();
    assert!(!logs.contains(&canary) && !logs.contains(&new_pw));
}
