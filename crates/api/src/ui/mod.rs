//! The web UI: server-rendered HTML (maud templates, escaped by construction) for people,
//! signed in with a password and a session cookie. Every page calls the same
//! [`credvault_core::Service`] methods as the API, with the session's actor, so authorization
//! and audit are the core's, not the UI's.
//!
//! Rules every page keeps:
//! - no secret value is ever rendered: secret inputs are `type=password` and never pre-filled,
//!   not even after a validation error; forms are `POST` so nothing lands in a URL;
//! - every response carries `Cache-Control: no-store` and a strict CSP (`script-src 'self'`,
//!   no inline script or style), `frame-ancestors 'none'`, `nosniff`, `no-referrer`;
//! - every `POST` carries the session's CSRF token (checked in constant time), and the session
//!   cookie is `HttpOnly; SameSite=Strict` (`Secure` when the public URL is https);
//! - everything works without JavaScript; `app.js` only adds confirmations and conveniences.

mod credentials;
mod pages;

use credvault_domain::problems::Code;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use zeroize::Zeroize;

use credvault_core::{CoreError, RequestCtx, SessionActor};
use credvault_domain::roles::Permission;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::request_ctx;

/// Name of the session cookie; behind TLS `__Host-cv_session` (Secure, host-only, Path=/), so
/// a sibling subdomain cannot plant one.
fn cookie_name(state: &AppState) -> &'static str {
    if state.secure_cookies {
        "__Host-cv_session"
    } else {
        "cv_session"
    }
}
/// Name of the pre-session cookie that protects the sign-in form itself (double submit).
fn pre_cookie_name(state: &AppState) -> &'static str {
    if state.secure_cookies {
        "__Host-cv_pre"
    } else {
        "cv_pre"
    }
}
/// Name of the device cookie: this browser signed in before (see `Service::sign_in`).
fn device_cookie_name(state: &AppState) -> &'static str {
    if state.secure_cookies {
        "__Host-cv_device"
    } else {
        "cv_device"
    }
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The UI's routes (merged into the main router ahead of the API fallback).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/credentials") }))
        .route(
            "/assets/app.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route("/account", get(account).post(change_password))
        .merge(credentials::routes())
        .merge(pages::routes())
        .layer(axum::middleware::map_response(security_headers))
}

fn asset(body: &'static str, ct: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ct),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Headers on every UI response.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    r
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Appends a `Set-Cookie` that deletes cookie `name`.
fn clear_cookie(r: &mut Response, name: &str, state: &AppState) {
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        secure(state)
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn secure(state: &AppState) -> &'static str {
    if state.secure_cookies { "; Secure" } else { "" }
}

/// A signed-in person. Pages without a valid session redirect to the sign-in page.
pub(crate) struct Session {
    pub s: SessionActor,
    pub ctx: RequestCtx,
    /// The organization's settings, read once per request (role policy, enabled types).
    pub settings: Option<credvault_core::OrgSettings>,
}

impl Session {
    pub fn actor(&self) -> &Arc<credvault_core::Actor> {
        &self.s.actor
    }

    /// Whether the person holds `perm` in `workspace` (`None`: anywhere in the organization),
    /// to decide which controls to offer; the core decides what is allowed.
    pub fn may(&self, perm: Permission, workspace: Option<&str>) -> bool {
        let a = self.actor();
        let roles = match workspace {
            Some(ws) => a.workspace_roles(&credvault_domain::WorkspaceId::from_trusted(ws.to_owned())),
            None => a.any_roles(),
        };
        self.settings
            .as_ref()
            .is_some_and(|s| s.role_policy.any_grants(&roles, perm))
    }

    /// Whether `perm` is granted at organization level (the Admin, Review and Audit screens).
    fn may_org(&self, perm: Permission) -> bool {
        let roles = self.actor().org_roles();
        self.settings
            .as_ref()
            .is_some_and(|s| s.role_policy.any_grants(&roles, perm))
    }

    /// Whether to offer the Admin screen (organization admins).
    pub fn nav_admin(&self) -> bool {
        self.may_org(Permission::OrgAdmin)
    }

    /// Whether to offer the Audit and Review screens (`audit.read`).
    pub fn nav_audit(&self) -> bool {
        self.may_org(Permission::AuditRead)
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = request_ctx(parts);
        let next = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let to_sign_in = || {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &next)
                .finish();
            Redirect::to(&format!("/sign-in?{q}")).into_response()
        };
        let Some(cookie) = cookie_value(&parts.headers, cookie_name(state)) else {
            return Err(to_sign_in());
        };
        match state.service.session_actor(&cookie, &ctx).await {
            Ok(s) => {
                let a = &s.actor;
                let settings = state.service.get_settings(&ctx, a, a.org_id.as_str()).await.ok();
                Ok(Session { s, ctx, settings })
            }
            Err(CoreError::Unauthenticated) => {
                let mut r = to_sign_in();
                clear_cookie(&mut r, cookie_name(state), state);
                Err(r)
            }
            Err(e) => Err(error_page(None, e)),
        }
    }
}

/// An `application/x-www-form-urlencoded` body. Values are wiped when dropped (a form may
/// carry secrets). Refuses other content types.
pub(crate) struct Form(pub Vec<(String, String)>);

impl Drop for Form {
    fn drop(&mut self) {
        for (_, v) in &mut self.0 {
            v.zeroize();
        }
    }
}

impl Form {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    /// A trimmed, non-empty value.
    pub fn text(&self, k: &str) -> Option<String> {
        self.get(k).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(plain_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send this form from the page.",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if crate::extract::body_timed_out(&e) {
                plain_error(StatusCode::REQUEST_TIMEOUT, "The form took too long to arrive.")
            } else {
                plain_error(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
            }
        })?;
        let pairs = form_urlencoded::parse(&bytes).into_owned().collect();
        if let Ok(mut owned) = bytes.try_into_mut() {
            owned[..].zeroize();
        }
        Ok(Form(pairs))
    }
}

/// An optional ID from form field `key`, checked like the API checks IDs (a bad one is a 422
/// naming the field).
pub(crate) fn form_id<T, E>(
    form: &Form,
    key: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, CoreError> {
    match form.text(key) {
        None => Ok(None),
        Some(v) => parse(&v)
            .map(Some)
            .map_err(|_| CoreError::invalid(key.to_owned(), Code::InvalidId, "is not a valid ID")),
    }
}

/// A required ID from form field `key`.
pub(crate) fn form_id_req<T, E>(form: &Form, key: &str, parse: impl Fn(&str) -> Result<T, E>) -> Result<T, CoreError> {
    form_id(form, key, parse)?.ok_or_else(|| CoreError::invalid(key.to_owned(), Code::Required, "choose one"))
}

/// Checks the form's CSRF token against the session; a mismatch is refused (and audited).
pub(crate) async fn check_csrf(state: &AppState, sess: &Session, form: &Form) -> Result<(), Response> {
    let ok = form.get("_csrf").is_some_and(|t| sess.s.csrf_ok(t));
    if ok {
        return Ok(());
    }
    if let Err(e) = state.service.record_csrf_failure(&sess.ctx, &sess.s).await {
        return Err(error_page(Some(sess), e));
    }
    Err(plain_error(
        StatusCode::FORBIDDEN,
        "This form is stale or was not sent from credvault's own page. Reload the page and try again.",
    ))
}

fn plain_error(status: StatusCode, msg: &str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" { head { meta charset="utf-8"; title { "credvault" } link rel="stylesheet" href="/assets/app.css"; }
        body { main.narrow { h1 { "Something is off" } p.error { (msg) } p { a href="/" { "Back to credvault" } } } } }
    };
    (status, Html(body)).into_response()
}

/// HTML response.
pub(crate) struct Html(pub Markup);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.0.into_string(),
        )
            .into_response()
    }
}

/// The message for form field `name` in `err` (matching `name` or `prefix.name`).
/// Nested paths from the core (`fields.parts[1].name`) match input names (`parts.1.name`).
pub(crate) fn field_message(err: Option<&Shown>, prefix: &str, name: &str) -> Option<String> {
    err?.fields
        .iter()
        .find(|(f, _)| {
            let f = f.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')).unwrap_or(f);
            f.replace('[', ".").replace(']', "") == name
        })
        .map(|(_, m)| m.clone())
}

/// The workspaces the person can see, for pickers (empty when none).
pub(crate) async fn workspaces(state: &AppState, sess: &Session) -> Vec<credvault_core::views::WorkspaceView> {
    state
        .service
        .list_workspaces(&sess.ctx, sess.actor(), None)
        .await
        .map(|p| p.items)
        .unwrap_or_default()
}

/// What a core error looks like to a person.
pub(crate) struct Shown {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

pub(crate) fn shown(e: CoreError) -> Shown {
    let a = ApiError::from(e);
    Shown {
        status: a.status(),
        code: a.code(),
        message: a.detail().to_owned(),
        fields: a.field_errors(),
    }
}

/// A full error page for a failed call.
pub(crate) fn error_page(sess: Option<&Session>, e: CoreError) -> Response {
    if matches!(e, CoreError::Unauthenticated) {
        return Redirect::to("/sign-in").into_response();
    }
    shown_page(sess, shown(e))
}

/// A full error page for an error already translated for people.
pub(crate) fn shown_page(sess: Option<&Session>, sh: Shown) -> Response {
    let title = match sh.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        s if s.is_client_error() => "That did not work",
        _ => "Server error",
    };
    let body = html! {
        h1 { (title) }
        p.error role="alert" { (sh.message) }
        p { a href="/" data-back="1" { "Go back" } " · " a href="/credentials" { "Credentials" } }
    };
    let page = match sess {
        Some(s) => layout(s, title, "", body),
        None => bare(title, body),
    };
    (sh.status, Html(page)).into_response()
}

/// The page frame for signed-in people.
pub(crate) fn layout(sess: &Session, title: &str, active: &str, body: Markup) -> Markup {
    let nav = [
        ("credentials", "/credentials", "Credentials"),
        ("connections", "/connections", "Connections"),
        ("pipelines", "/pipelines", "Pipelines"),
        ("review", "/review", "Review"),
        ("audit", "/audit", "Audit"),
        ("admin", "/admin", "Admin"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "credvault" }
                    nav aria-label="Main" {
                        ul {
                            @for (key, href, label) in nav {
                                @if (key != "admin" || sess.nav_admin()) && (!matches!(key, "audit" | "review") || sess.nav_audit()) {
                                li { a href=(href) aria-current=[(key == active).then_some("page")] { (label) } }
                                }
                            }
                        }
                    }
                    form.signout method="post" action="/sign-out" {
                        (csrf_field(sess))
                        a.who href="/account" title="Your account" { (sess.actor().name) }
                        button.link type="submit" { "Sign out" }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A page frame without navigation (sign-in, errors before sign-in).
fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body { main.narrow #main { (body) } }
        }
    }
}

/// The `<head>` of every page; `script` adds app.js (pages behind sign-in).
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · credvault" }
            link rel="stylesheet" href="/assets/app.css";
            @if script { script src="/assets/app.js" defer {} }
        }
    }
}

pub(crate) fn csrf_field(sess: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(sess.s.csrf); }
}

/// How long a one-time form's nonce is remembered: a session's absolute lifetime, after which
/// the form could not be posted anyway.
const ONCE_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// Nonces of one-time forms already submitted on this node, with when. A form that creates
/// something shown only once (a token) carries a fresh nonce ([`once_field`]); posting it
/// again (the browser's reload of the answer page) is refused by [`first_submission`] instead
/// of creating a second one. In memory: behind a load balancer a reload that lands on another
/// node is not caught (documented in ARCHITECTURE.md).
#[derive(Default)]
pub(crate) struct UsedForms(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

/// A hidden field with a fresh nonce that makes this form one-time (see [`UsedForms`]).
pub(crate) fn once_field() -> Markup {
    let nonce: String = credvault_core::random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    html! { input type="hidden" name="_once" value=(nonce); }
}

/// Whether this is the first submission of a one-time form; records it. A form without a
/// well-formed nonce is refused like a repeat (it did not come from our page).
pub(crate) fn first_submission(state: &AppState, sess: &Session, form: &Form) -> bool {
    let Some(nonce) = form.text("_once") else { return false };
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let now = std::time::Instant::now();
    let mut used = used_forms(state);
    if used.len() >= 1024 {
        used.retain(|_, at| now.duration_since(*at) < ONCE_TTL);
    }
    used.insert(once_key(sess, &nonce), now).is_none()
}

/// Forgets a one-time form's submission whose action failed (refused, invalid), so only
/// forms that created something stay remembered and the form can be corrected and sent.
pub(crate) fn forget_submission(state: &AppState, sess: &Session, form: &Form) {
    if let Some(nonce) = form.text("_once") {
        used_forms(state).remove(&once_key(sess, &nonce));
    }
}

fn once_key(sess: &Session, nonce: &str) -> String {
    format!("{}:{nonce}", sess.actor().principal_id)
}

fn used_forms(state: &AppState) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Instant>> {
    match state.used_forms.0.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A one-button form posting to `action` (with CSRF), optionally confirmed by app.js.
pub(crate) fn action_button(sess: &Session, action: &str, label: &str, class: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(sess))
            button type="submit" class=(class) data-confirm=[confirm] { (label) }
        }
    }
}

/// Whether a refused form should be shown again with its message (bad input or a conflict)
/// rather than as an error page (not found, not allowed, unavailable).
pub(crate) fn redisplay(sh: &Shown) -> bool {
    matches!(sh.status.as_u16(), 400 | 409 | 422)
}

/// A test outcome for display: ok, latency, and the error's code and message.
pub(crate) fn outcome(t: &credvault_core::testing::ConnectionTest) -> (bool, u64, Option<(&'static str, &str)>) {
    let o = &t.outcome;
    (
        o.ok,
        o.latency_ms,
        o.error.as_ref().map(|e| (e.code.as_str(), e.message.as_str())),
    )
}

/// Short, fixed notices after a redirect (`?done=code`): never reflects arbitrary text.
pub(crate) fn notice(code: Option<&str>) -> Markup {
    let text = match code.unwrap_or("") {
        "created" => "Created.",
        "updated" => "Saved.",
        "disabled" => "Disabled: resolves now fail for its connections.",
        "enabled" => "Enabled.",
        "deleted" => "Deleted. It can be restored until the recovery window ends.",
        "restored" => "Restored.",
        "reviewed" => "Marked as reviewed.",
        "grant-revoked" => {
            "Grant revoked: the provider was asked to revoke the refresh token, and the credential needs a new authorization."
        }
        "staged" => "New version staged. Test it, then promote.",
        "promoted" => "Promoted: resolves now return the new version.",
        "revoked" => "Version revoked.",
        "attached" => "Credential attached.",
        "detached" => "Credential detached: resolves of this connection fail until one is attached.",
        "deleted_connection" => "Connection deleted.",
        "member" => "Member added.",
        "bound" => "Role bound.",
        "unbound" => "Role binding removed.",
        "offboarded" => "Offboarded: tokens revoked, sessions ended, account disabled.",
        "token_revoked" => "Token revoked.",
        "unchanged" => "Nothing changed.",
        "password" => "Password set.",
        "token_resubmitted" => {
            "That form was already submitted, so no second token was created. The token it made was shown once and cannot be shown again: if it was not copied, revoke it below and create another."
        }
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// Renders an RFC 3339 timestamp compactly (date and minute, UTC).
pub(crate) fn when(t: Option<&str>) -> String {
    match t {
        Some(t) => match (t.get(..10), t.get(11..16)) {
            (Some(d), Some(m)) => format!("{d} {m} UTC"),
            _ => t.to_owned(),
        },
        None => "—".to_owned(),
    }
}

#[derive(serde::Deserialize)]
struct SignInQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// Only local paths are followed after sign-in (no open redirect): a leading `/` not followed
/// by `/` or `\`, and nothing but visible ASCII without `\` (browsers drop tabs and newlines
/// from `Location`, which could turn `/\t/evil` into `//evil`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/sign-")
                && n.len() <= 2048
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_owned()
        }
        _ => "/credentials".to_owned(),
    }
}

async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: axum::extract::Query<SignInQuery>,
) -> Response {
    // Already signed in? Go on.
    let pre = cookie_value(&headers, pre_cookie_name(&state))
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| {
            credvault_core::random_bytes::<32>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        });
    let failed = q.failed.is_some();
    let body = html! {
        h1 { "Sign in to credvault" }
        @if failed {
            p.error role="alert" #signin-error {
                "That name and password do not match, or the account is locked for a while after repeated failures. "
                "If your name is used in more than one organization, sign in as "
                code { "organization/name" } "."
            }
        }
        form.card method="post" action="/sign-in" {
            input type="hidden" name="_pre" value=(pre);
            input type="hidden" name="next" value=(safe_next(q.next.as_deref()));
            label for="login" { "Name" }
            input #login name="login" type="text" autocomplete="username" aria-describedby="login-hint" required autofocus;
            p.hint #login-hint { "Your name, or " code { "organization/name" } "." }
            label for="password" { "Password" }
            input #password name="password" type="password" autocomplete="current-password" required;
            button.primary type="submit" { "Sign in" }
        }
        p.hint { "Machines use API tokens, not this page. An administrator sets passwords with "
            code { "credvault principal set-password" } "." }
    };
    let mut r = Html(bare("Sign in", body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={pre}; Path=/; HttpOnly; SameSite=Strict{}",
        pre_cookie_name(&state),
        secure(&state)
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn sign_in(
    State(state): State<AppState>,
    crate::extract::Ctx(ctx): crate::extract::Ctx,
    headers: HeaderMap,
    form: Form,
) -> Response {
    // Login CSRF: the form must echo the pre-session cookie it was served with.
    let pre_ok = match (cookie_value(&headers, pre_cookie_name(&state)), form.get("_pre")) {
        (Some(c), Some(f)) => credvault_core::ct_eq(c.as_bytes(), f.as_bytes()),
        _ => false,
    };
    if !pre_ok {
        let _ = state.service.record_missing_auth(&ctx, "csrf_mismatch").await;
        return plain_error(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or was not sent from credvault's own page. Reload it and try again.",
        );
    }
    let next = safe_next(form.get("next"));
    let login = form.get("login").unwrap_or("").to_owned();
    let password = zeroize::Zeroizing::new(form.get("password").unwrap_or("").to_owned());
    let device = cookie_value(&headers, device_cookie_name(&state));
    match state.service.sign_in(&ctx, &login, password, device.as_deref()).await {
        Ok(s) => {
            let mut r = Redirect::to(&next).into_response();
            let cookie = zeroize::Zeroizing::new(format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                cookie_name(&state),
                s.cookie.as_str(),
                credvault_core::SESSION_MAX_SECS,
                secure(&state)
            ));
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            if let Some(d) = &s.device {
                let cookie = zeroize::Zeroizing::new(format!(
                    "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                    device_cookie_name(&state),
                    d.as_str(),
                    credvault_core::DEVICE_MAX_SECS,
                    secure(&state)
                ));
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            clear_cookie(&mut r, pre_cookie_name(&state), &state);
            r
        }
        Err(CoreError::Unauthenticated) => {
            let q: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("failed", "1")
                .append_pair("next", &next)
                .finish();
            Redirect::to(&format!("/sign-in?{q}")).into_response()
        }
        Err(e) => error_page(None, e),
    }
}

async fn sign_out(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    if let Err(e) = state.service.sign_out(&sess.ctx, &sess.s).await {
        return error_page(Some(&sess), e);
    }
    let mut r = Redirect::to("/sign-in").into_response();
    clear_cookie(&mut r, cookie_name(&state), &state);
    r
}

async fn account(sess: Session) -> Response {
    render_account(&sess, None, None)
}

fn render_account(sess: &Session, done: Option<&str>, err: Option<Shown>) -> Response {
    let a = sess.actor();
    let status = err.as_ref().map_or(StatusCode::OK, |e| e.status);
    let body = html! {
        h1 { "Your account" }
        @if let Some(d) = done { p.notice role="status" { (d) } }
        @if let Some(e) = &err { p.error #form-error role="alert" { (e.message) } }
        dl.meta {
            dt { "Name" } dd { (a.name) }
            dt { "ID" } dd { code { (a.principal_id) } }
            dt { "Organization" } dd { (sess.s.org_name) " " span.muted { "(" code { (a.org_id) } ")" } }
            dt { "Sign-in name" } dd { code { (a.name.to_lowercase()) } " or " code { (sess.s.org_name.to_lowercase()) "/" (a.name.to_lowercase()) } }
            dt { "Roles" } dd { (a.bindings.iter().map(|b| b.role.as_str()).collect::<Vec<_>>().join(", ")) }
        }
        h2 { "Change your password" }
        form.card #change-password method="post" action="/account" {
            (csrf_field(sess))
            div.field { label for="cur" { "Current password" } input #cur type="password" name="current_password" autocomplete="current-password" required; }
            div.field { label for="new1" { "New password" } input #new1 type="password" name="password" autocomplete="new-password" minlength="12" required; span.hint { "At least 12 characters." } }
            div.field { label for="new2" { "New password again" } input #new2 type="password" name="password2" autocomplete="new-password" required; }
            div.actions { button.primary type="submit" { "Change password" } }
        }
        p.hint { "Changing your password ends all your sessions, this one included." }
    };
    (status, Html(layout(sess, "Your account", "", body))).into_response()
}

async fn change_password(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    if form.get("password") != form.get("password2") {
        let e = Shown {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: Code::Mismatch,
            message: "The two new passwords differ.".into(),
            fields: vec![("password2".into(), "differs".into())],
        };
        return render_account(&sess, None, Some(e));
    }
    let pw = zeroize::Zeroizing::new(form.get("password").unwrap_or("").to_owned());
    let cur = zeroize::Zeroizing::new(form.get("current_password").unwrap_or("").to_owned());
    let id = sess.actor().principal_id.to_string();
    match state
        .service
        .set_password(&sess.ctx, sess.actor(), &id, pw, Some(cur))
        .await
    {
        Ok(()) => {
            let mut r = Redirect::to("/sign-in").into_response();
            clear_cookie(&mut r, cookie_name(&state), &state);
            r
        }
        Err(e) => render_account(&sess, None, Some(shown(e))),
    }
}
