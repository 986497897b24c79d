//! Connections (with Test connection), pipelines, the review reports, the audit log and the
//! admin screens.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use credvault_domain::problems::Code;
use maud::html;
use serde_json::{Map, Value as Json};

use credvault_core::connections::{ConnectionFilter, CreateConnection, PipelineFilter};
use credvault_core::views::{AuditFilter, CreateToken, CredentialFilter};
use credvault_core::{ReportKind, ReportRequest, SettingsPatch};
use credvault_domain::connectors::ConnectorKind;
use credvault_domain::credential_types::{CredentialType, FieldKind};
use credvault_domain::roles::{Permission, Role, RolePolicy};

use super::{Form, Html, Session, action_button, check_csrf, csrf_field, error_page, layout, notice, shown, when};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/connections", get(connections))
        .route("/connections/new", get(new_connection).post(create_connection))
        .route("/connections/{id}", get(connection))
        .route("/connections/{id}/test", post(test_connection))
        .route("/connections/{id}/attach", post(attach))
        .route("/connections/{id}/detach", post(detach))
        .route("/connections/{id}/edit", post(edit_connection))
        .route("/connections/{id}/delete", post(delete_connection))
        .route("/pipelines", get(pipelines))
        .route("/pipelines/{id}", get(pipeline))
        .route("/review", get(review))
        .route("/review/{file}", get(review_csv))
        .route("/audit", get(audit))
        .route("/audit/verify", post(verify))
        .route("/admin", get(admin))
        .route("/admin/settings", post(save_settings))
        .route("/admin/tokens", post(create_token))
        .route("/admin/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/members", post(create_member))
        .route("/admin/bindings", post(create_binding))
        .route("/admin/bindings/{id}/delete", post(delete_binding))
        .route("/admin/principals/{id}/password", post(set_password))
        .route("/admin/principals/{id}/offboard", post(offboard))
}

/// The permissions an organization assigns to roles itself, as the settings grid shows them.
const POLICY_ROWS: &[(Permission, &str)] = &[
    (Permission::CredentialCreate, "Create and rotate credentials"),
    (Permission::CredentialAttach, "Attach credentials to connections"),
    (Permission::CredentialReveal, "Read secret values"),
];

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Q {
    kind: Option<String>,
    environment: Option<String>,
    done: Option<String>,
    cursor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    actor_id: Option<String>,
    target_id: Option<String>,
}

/// `path` with the same filters and the next page's cursor.
fn more(q: &Q, path: &str, cursor: &str) -> String {
    let mut u = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("kind", &q.kind),
        ("environment", &q.environment),
        ("action", &q.action),
        ("outcome", &q.outcome),
        ("actor_id", &q.actor_id),
        ("target_id", &q.target_id),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            u.append_pair(k, v);
        }
    }
    u.append_pair("cursor", cursor);
    format!("{path}?{}", u.finish())
}

async fn connections(State(state): State<AppState>, sess: Session, Query(q): Query<Q>) -> Response {
    let f = ConnectionFilter {
        kind: nonempty(q.kind.as_deref()),
        environment: nonempty(q.environment.as_deref()),
        cursor: nonempty(q.cursor.as_deref()),
        ..Default::default()
    };
    let page = match state.service.list_connections(&sess.ctx, sess.actor(), f).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&sess), e),
    };
    let can_create = sess.may(Permission::CredentialAttach, None);
    let body = html! {
        div.titlebar {
            h1 { "Connections" }
            @if can_create { a.button.primary #new-connection href="/connections/new" { "New connection" } }
        }
        (notice(q.done.as_deref()))
        form.filters method="get" action="/connections" {
            label { "Kind" select name="kind" data-autosubmit="1" {
                option value="" { "any" }
                @for k in ConnectorKind::ALL { option value=(k.as_str()) selected[q.kind.as_deref() == Some(k.as_str())] { (k.as_str()) } }
            } }
            label { "Environment" input type="text" name="environment" value=[q.environment.as_deref()] size="8"; }
            button type="submit" { "Filter" }
        }
        @if page.items.is_empty() { div.empty { p { "No connections yet. A connection names a target system and the credential it uses." } } }
        @else {
            table.list {
                thead { tr { th { "Name" } th { "Kind" } th { "Environment" } th { "Credential" } th { "Last test" } } }
                tbody { @for c in &page.items {
                    tr {
                        td { a href={"/connections/" (c.id)} { (c.name) } }
                        td { (c.kind) }
                        td { span.env { (c.environment) } }
                        td { @if let Some(cid) = &c.credential_id { a href={"/credentials/" (cid)} { code { (cid) } } } @else { "—" } }
                        td { @match &c.last_test { Some(t) => span class=(if t.ok { "ok" } else { "fail" }) { (if t.ok { "ok" } else { "failed" }) " · " (t.latency_ms) " ms" }, None => "never" } }
                    }
                } }
            }
        }
        @if let Some(n) = &page.next_cursor { p { a href=(more(&q, "/connections", n)) { "Next page →" } } }
    };
    Html(layout(&sess, "Connections", "connections", body)).into_response()
}

async fn new_connection(State(state): State<AppState>, sess: Session, Query(q): Query<Q>) -> Response {
    render_new_connection(&state, &sess, q.kind.as_deref(), None, None).await
}

async fn render_new_connection(
    state: &AppState,
    sess: &Session,
    kind: Option<&str>,
    form: Option<&Form>,
    err: Option<super::Shown>,
) -> Response {
    let Some(k) = kind.and_then(ConnectorKind::parse) else {
        let body = html! {
            h1 { "New connection" }
            p { "What kind of system does it connect to?" }
            ul.cards { @for k in ConnectorKind::ALL {
                li { a.card href={"/connections/new?kind=" (k.as_str())} data-kind=(k.as_str()) { strong { (k.as_str()) } span { "uses " (k.accepts_text()) } } }
            } }
        };
        return Html(layout(sess, "New connection", "connections", body)).into_response();
    };
    let workspaces = super::workspaces(state, sess).await;
    let fitting = fitting_credentials(state, sess, k).await;
    let prev = |n: &str| form.and_then(|f| f.get(n)).map(str::to_owned);
    let mismatch = err.as_ref().is_some_and(|e| e.code == Code::EnvironmentMismatch);
    let needs_reason = err
        .as_ref()
        .is_some_and(|e| e.fields.iter().any(|(f, _)| f == "override_reason"));
    let status = err.as_ref().map_or(StatusCode::OK, |e| e.status);
    let body = html! {
        h1 { "New " (k.as_str()) " connection" }
        @if let Some(e) = &err { p.error role="alert" #form-error { (e.message) } }
        form.card method="post" action="/connections/new" {
            (csrf_field(sess))
            input type="hidden" name="kind" value=(k.as_str());
            div.field { label for="c-name" { "Name" span.req { " *" } } input #c-name name="name" type="text" required value=[prev("name")]; }
            div.field { label for="c-ws" { "Workspace" span.req { " *" } }
                select #c-ws name="workspace" required {
                    @for w in &workspaces { option value=(w.id) selected[prev("workspace").as_deref() == Some(w.id.as_str())] { (w.name) } }
                } }
            div.field { label for="c-env" { "Environment" span.req { " *" } } input #c-env name="environment" type="text" required value=[prev("environment")] placeholder="prod, staging, dev…"; }
            (config_inputs(k, &|n| prev(&format!("cfg.{n}")), err.as_ref()))
            div.field {
                label for="c-cred" { "Credential" }
                select #c-cred name="credential_id" {
                    option value="" { "none yet" }
                    @for c in &fitting { option value=(c.id) selected[prev("credential_id").as_deref() == Some(c.id.as_str())] { (c.name) " (" (c.ty) ", " (c.environment) ")" } }
                }
                span.hint { "Only credentials you can see whose type fits a " (k.as_str()) " connection (" (k.accepts_text()) ") are offered." }
                @if fitting.is_empty() { span.hint { " None fits yet: " a href="/credentials/new" { "create one" } "." } }
            }
            @if mismatch {
                p.warning #env-mismatch {
                    "Environment mismatch: the chosen credential belongs to another environment than this connection, "
                    "and this organization does not allow overrides. Pick a credential of the connection's environment, "
                    "or ask an admin to allow overrides."
                }
            }
            @if needs_reason {
                div.field #override {
                    label for="c-override" { "Reason to use a credential from another environment" }
                    input #c-override name="override_reason" type="text" value=[prev("override_reason")];
                    span.hint { "Only possible where the organization allows environment overrides; the reason is audited." }
                }
            }
            div.actions { button.primary type="submit" { "Create connection" } a href="/connections" { "Cancel" } }
        }
    };
    (status, Html(layout(sess, "New connection", "connections", body))).into_response()
}

/// Why `cred` would refuse this connection's destinations, for the attach picker (`None`:
/// it allows them, or the person may change the credential, whose wiring allows them). By
/// name only: a host an IP/CIDR entry may cover is decided by the server.
fn destination_misfit(
    sess: &Session,
    cred: &credvault_core::views::CredentialView,
    kind: ConnectorKind,
    config: &Json,
) -> Option<String> {
    use credvault_domain::destinations::{AllowedSet, Pattern, Verdict, connection_destinations};
    let owner = match cred.workspace_id.as_deref() {
        Some(ws) => sess.may(Permission::CredentialCreate, Some(ws)),
        None => sess.may_org(Permission::CredentialCreate),
    };
    if owner {
        return None;
    }
    let dests = connection_destinations(kind, config).ok()?;
    let mut set = AllowedSet::from_stored(None);
    for d in cred.allowed_destinations.iter().chain(&cred.field_destinations) {
        if let Ok(p) = Pattern::parse(d) {
            set.insert(p);
        }
    }
    let bad: Vec<String> = dests
        .iter()
        .filter(|d| set.check(&d.dest) == Verdict::Denied)
        .map(|d| d.dest.to_string())
        .collect();
    (!bad.is_empty()).then(|| format!("does not allow {}", bad.join(", ")))
}

/// The picker's choices: visible, active credentials whose type fits connector `k`.
async fn fitting_credentials(
    state: &AppState,
    sess: &Session,
    k: ConnectorKind,
) -> Vec<credvault_core::views::CredentialView> {
    let f = CredentialFilter {
        status: Some("active".into()),
        limit: Some(500),
        ..Default::default()
    };
    let creds = state
        .service
        .list_credentials(&sess.ctx, sess.actor(), f)
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    creds
        .into_iter()
        .filter(|c| CredentialType::parse(&c.ty).is_some_and(|t| k.fits(t, c.variant.as_deref())))
        .collect()
}

/// The connection's config from the form's `cfg.*` fields.
fn config_from_form(k: ConnectorKind, form: &Form) -> Json {
    let mut config = Map::new();
    for f in k.config_fields() {
        let key = format!("cfg.{}", f.name);
        let Some(raw) = form.text(&key) else { continue };
        let v = match f.kind {
            FieldKind::Boolean => Json::Bool(raw == "true"),
            FieldKind::Integer => match raw.parse::<i64>() {
                Ok(n) => Json::from(n),
                Err(_) => Json::String(raw),
            },
            FieldKind::StringList => Json::Array(
                raw.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Json::String(l.into()))
                    .collect(),
            ),
            _ => Json::String(raw),
        };
        config.insert(f.name.to_owned(), v);
    }
    Json::Object(config)
}

/// The `cfg.*` inputs of connector `k`, filled from `value` (the stored config or the form).
fn config_inputs(k: ConnectorKind, value: &dyn Fn(&str) -> Option<String>, err: Option<&super::Shown>) -> maud::Markup {
    html! {
        @for f in k.config_fields() {
            @let name = format!("cfg.{}", f.name);
            @let prev = value(f.name);
            div.field {
                label for=(name) { code { (f.name) } @if f.required { span.req { " *" } } }
                @match f.kind {
                    FieldKind::Boolean => input #(name) type="checkbox" name=(name) value="true" checked[prev.as_deref() == Some("true")];,
                    FieldKind::Integer => input #(name) type="number" name=(name) value=[prev] required[f.required];,
                    FieldKind::Enum(vals) => select #(name) name=(name) { @if !f.required { option value="" { "—" } } @for v in vals { option value=(v) selected[prev.as_deref() == Some(*v)] { (v) } } },
                    FieldKind::StringList => textarea #(name) name=(name) rows="2" placeholder="one per line" { @if let Some(p) = &prev { (p) } },
                    FieldKind::String if f.name.ends_with("_pem") => textarea #(name) name=(name) rows="4" { @if let Some(p) = &prev { (p) } },
                    _ => input #(name) type="text" name=(name) value=[prev] required[f.required];,
                }
                @if !f.description.is_empty() { span.hint { (f.description) } }
                @if let Some(e) = super::field_message(err, "config", f.name) { span.field-error role="alert" { (e) } }
            }
        }
    }
}

async fn create_connection(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let kind_s = form.text("kind").unwrap_or_default();
    let Some(k) = ConnectorKind::parse(&kind_s) else {
        return render_new_connection(&state, &sess, None, None, None).await;
    };
    let ids = super::form_id_req(&form, "workspace", credvault_domain::WorkspaceId::parse)
        .and_then(|w| super::form_id(&form, "credential_id", credvault_domain::CredentialId::parse).map(|c| (w, c)));
    let (workspace_id, credential_id) = match ids {
        Ok(x) => x,
        Err(e) => return render_new_connection(&state, &sess, Some(&kind_s), Some(&form), Some(shown(e))).await,
    };
    let req = CreateConnection {
        name: form.text("name").unwrap_or_default(),
        workspace_id,
        environment: form.text("environment").unwrap_or_default(),
        kind: kind_s.clone(),
        config: config_from_form(k, &form),
        credential_id,
        override_reason: form.text("override_reason"),
        description: None,
    };
    match state.service.create_connection(&sess.ctx, sess.actor(), req).await {
        Ok(c) => Redirect::to(&format!("/connections/{}?done=created", c.id)).into_response(),
        Err(e) => {
            let sh = shown(e);
            render_new_connection(&state, &sess, Some(&kind_s), Some(&form), Some(sh)).await
        }
    }
}

async fn connection(
    State(state): State<AppState>,
    sess: Session,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> Response {
    render_connection(&state, &sess, &id, q.done.as_deref(), Outcome::None).await
}

/// What the connection page shows besides the connection: a test result, or a refused change.
enum Outcome {
    None,
    Tested(Result<credvault_core::testing::ConnectionTest, super::Shown>),
    Refused(super::Shown),
}

async fn render_connection(
    state: &AppState,
    sess: &Session,
    id: &str,
    done: Option<&str>,
    outcome: Outcome,
) -> Response {
    let c = match state.service.get_connection(&sess.ctx, sess.actor(), id).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(sess), e),
    };
    let can_edit = sess.may(Permission::CredentialAttach, Some(&c.workspace_id));
    let kind = ConnectorKind::parse(&c.kind);
    let fitting = match (can_edit, kind) {
        (true, Some(k)) => fitting_credentials(state, sess, k).await,
        _ => Vec::new(),
    };
    let base = format!("/connections/{}", c.id);
    let refused = match &outcome {
        Outcome::Refused(sh) => Some(sh),
        _ => None,
    };
    let mismatch = refused.is_some_and(|e| e.code == Code::EnvironmentMismatch);
    let cfg_value = |n: &str| -> Option<String> {
        c.config.get(n).map(|v| match v {
            Json::String(s) => s.clone(),
            Json::Array(a) => a.iter().filter_map(Json::as_str).collect::<Vec<_>>().join("\n"),
            other => other.to_string(),
        })
    };
    let status = refused.map_or(StatusCode::OK, |e| e.status);
    let body = html! {
        h1 { (c.name) }
        (notice(done))
        @for w in &c.warnings { p.warning { (w) } }
        @if let Some(sh) = refused { p.error #form-error role="alert" { (sh.message) } }
        @if mismatch {
            p.warning #env-mismatch {
                "Environment mismatch: that credential belongs to another environment than this connection. "
                "Pick one of the connection's environment, or give an override reason where your organization allows it."
            }
        }
        div.actions.bar {
            @if can_edit && c.credential_id.is_some() {
                (action_button(sess, &format!("{base}/test"), "Test connection", "primary", None))
            }
        }
        @if let Outcome::Tested(r) = &outcome {
            @match r {
                Ok(t) => {
                    @let (ok, ms, err) = super::outcome(t);
                    div #test-result class=(if ok { "notice" } else { "error" }) role="status" {
                        strong { (if ok { "Connection works" } else { "Connection failed" }) }
                        " — version " (t.version) ", " (ms) " ms"
                        @if let Some((code, msg)) = err { br; code { (code) } " " (msg) }
                    }
                },
                Err(sh) => p.error #test-result role="alert" { (sh.message) },
            }
        }
        div.grid {
            section {
                h2 { "Details" }
                dl.meta {
                    dt { "ID" } dd { code { (c.id) } }
                    dt { "Kind" } dd { (c.kind) }
                    dt { "Environment" } dd { span.env { (c.environment) } }
                    dt { "Workspace" } dd { code { (c.workspace_id) } }
                    dt { "Credential" } dd { @match &c.credential_id { Some(cid) => a href={"/credentials/" (cid)} { code { (cid) } }, None => "none" } }
                    @if let Some(r) = &c.override_reason { dt { "Environment override" } dd { (r) } }
                    @if let Some(d) = &c.description { dt { "Description" } dd { (d) } }
                    @if let Json::Object(m) = &c.config { @for (k, v) in m { dt { code { (k) } } dd { (match v { Json::String(s) => s.clone(), o => o.to_string() }) } } }
                    dt { "Last test" } dd { @match &c.last_test { Some(t) => { (if t.ok { "ok" } else { "failed" }) " · " (t.latency_ms) " ms · " (when(Some(&t.at))) }, None => "never" } }
                    dt { "Last used" } dd { (when(c.last_used_at.as_deref())) }
                }
            }
            @if can_edit {
                section {
                    h2 { "Credential" }
                    form.card #attach method="post" action={(base) "/attach"} {
                        (csrf_field(sess))
                        div.field {
                            label for="a-cred" { "Use credential" }
                            select #a-cred name="credential_id" required {
                                @for f in &fitting {
                                    @let misfit = kind.and_then(|k| destination_misfit(sess, f, k, &c.config));
                                    option value=(f.id) selected[c.credential_id.as_deref() == Some(f.id.as_str())] {
                                        (f.name) " (" (f.ty) ", " (f.environment) ")" @if let Some(m) = &misfit { " — " (m) }
                                    }
                                }
                            }
                            span.hint { "Only credentials you can see whose type fits a " (c.kind) " connection are offered." }
                            @let misfits: Vec<(&str, String)> = fitting.iter().filter_map(|f| kind.and_then(|k| destination_misfit(sess, f, k, &c.config)).map(|m| (f.name.as_str(), m))).collect();
                            @if !misfits.is_empty() {
                                div.hint #destination-misfits {
                                    "A credential may only be sent where its owners allow. "
                                    "These would be refused for this connection's hosts; someone who may change the credential can allow them on its page:"
                                    ul { @for (n, m) in &misfits { li { (n) " " (m) } } }
                                }
                            }
                        }
                        div.field {
                            label for="a-reason" { "Override reason" }
                            input #a-reason type="text" name="override_reason";
                            span.hint { "Only needed when the credential's environment differs and your organization allows overrides; it is audited." }
                        }
                        div.actions {
                            button.primary type="submit" { "Attach" }
                        }
                    }
                    @if c.credential_id.is_some() {
                        div.actions { (action_button(sess, &format!("{base}/detach"), "Detach the credential", "danger", Some("Detach? Resolves of this connection fail until a credential is attached again."))) }
                    }
                    @if let Some(k) = kind {
                        h2 { "Edit" }
                        form.card #edit method="post" action={(base) "/edit"} {
                            (csrf_field(sess))
                            div.field { label for="e-name" { "Name" } input #e-name type="text" name="name" value=(c.name) required; }
                            div.field { label for="e-desc" { "Description" } input #e-desc type="text" name="description" value=[c.description.as_deref()]; }
                            (config_inputs(k, &cfg_value, refused))
                            div.actions { button.primary type="submit" { "Save" } }
                        }
                    }
                    div.actions { (action_button(sess, &format!("{base}/delete"), "Delete connection", "danger", Some("Delete this connection? Pipelines that use it will fail to resolve."))) }
                }
            }
        }
    };
    (status, Html(layout(sess, &c.name, "connections", body))).into_response()
}

async fn attach(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let credential_id = match super::form_id_req(&form, "credential_id", credvault_domain::CredentialId::parse) {
        Ok(c) => c,
        Err(e) => return refused(&state, &sess, &id, e).await,
    };
    let req = credvault_core::connections::AttachCredential {
        credential_id,
        override_reason: form.text("override_reason"),
    };
    match state.service.attach_credential(&sess.ctx, sess.actor(), &id, req).await {
        Ok(_) => Redirect::to(&format!("/connections/{id}?done=attached")).into_response(),
        Err(e) => refused(&state, &sess, &id, e).await,
    }
}

/// Re-renders the connection page with a refused change, or an error page when the
/// connection itself is out of reach.
async fn refused(state: &AppState, sess: &Session, id: &str, e: credvault_core::CoreError) -> Response {
    let sh = shown(e);
    if super::redisplay(&sh) {
        render_connection(state, sess, id, None, Outcome::Refused(sh)).await
    } else {
        super::shown_page(Some(sess), sh)
    }
}

async fn detach(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    match state.service.detach_credential(&sess.ctx, sess.actor(), &id).await {
        Ok(_) => Redirect::to(&format!("/connections/{id}?done=detached")).into_response(),
        Err(e) => refused(&state, &sess, &id, e).await,
    }
}

async fn edit_connection(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let kind = match state.service.get_connection(&sess.ctx, sess.actor(), &id).await {
        Ok(c) => ConnectorKind::parse(&c.kind),
        Err(e) => return error_page(Some(&sess), e),
    };
    let p = credvault_core::connections::PatchConnection {
        name: form.text("name"),
        config: kind.map(|k| config_from_form(k, &form)),
        description: Some(form.text("description").unwrap_or_default()),
    };
    match state.service.patch_connection(&sess.ctx, sess.actor(), &id, p).await {
        Ok(_) => Redirect::to(&format!("/connections/{id}?done=updated")).into_response(),
        Err(e) => refused(&state, &sess, &id, e).await,
    }
}

async fn delete_connection(
    State(state): State<AppState>,
    sess: Session,
    Path(id): Path<String>,
    form: Form,
) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    match state.service.delete_connection(&sess.ctx, sess.actor(), &id).await {
        Ok(_) => Redirect::to("/connections?done=deleted_connection").into_response(),
        Err(e) => refused(&state, &sess, &id, e).await,
    }
}

async fn test_connection(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let r = state
        .service
        .test_connection(&sess.ctx, sess.actor(), &id, Default::default())
        .await
        .map_err(shown);
    render_connection(&state, &sess, &id, None, Outcome::Tested(r)).await
}

async fn pipelines(State(state): State<AppState>, sess: Session, Query(q): Query<Q>) -> Response {
    let f = PipelineFilter {
        cursor: nonempty(q.cursor.as_deref()),
        ..Default::default()
    };
    let page = match state.service.list_pipelines(&sess.ctx, sess.actor(), f).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&sess), e),
    };
    let body = html! {
        h1 { "Pipelines" }
        @if page.items.is_empty() { div.empty { p { "No pipelines yet. Pipelines are registered by your orchestrator through the API; they reference connections." } } }
        @else {
            table.list {
                thead { tr { th { "Name" } th { "Workspace" } th { "Connections" } th { "Last used" } } }
                tbody { @for p in &page.items { tr {
                    td { a href={"/pipelines/" (p.id)} { (p.name) } }
                    td { code { (p.workspace_id) } }
                    td { (p.connection_ids.len()) }
                    td { (when(p.last_used_at.as_deref())) }
                } } }
            }
        }
    };
    Html(layout(&sess, "Pipelines", "pipelines", body)).into_response()
}

async fn pipeline(State(state): State<AppState>, sess: Session, Path(id): Path<String>) -> Response {
    let p = match state.service.get_pipeline(&sess.ctx, sess.actor(), &id).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(&sess), e),
    };
    let mut conns = Vec::new();
    for cid in &p.connection_ids {
        if let Ok(c) = state.service.get_connection(&sess.ctx, sess.actor(), cid).await {
            conns.push(c);
        }
    }
    let body = html! {
        h1 { (p.name) }
        @if let Some(d) = &p.description { p { (d) } }
        h2 { "Connections" }
        @if conns.is_empty() { p.empty { "None." } }
        table.list {
            thead { tr { th { "Connection" } th { "Kind" } th { "Environment" } th { "Credential" } } }
            tbody { @for c in &conns { tr {
                td { a href={"/connections/" (c.id)} { (c.name) } }
                td { (c.kind) } td { (c.environment) }
                td { @if let Some(cid) = &c.credential_id { a href={"/credentials/" (cid)} { code { (cid) } } } }
            } } }
        }
    };
    Html(layout(&sess, &p.name, "pipelines", body)).into_response()
}

const REPORTS: [(&str, &str, &str); 5] = [
    (
        "attachments",
        "Attachments",
        "Which connection uses which credential, by whom it was attached.",
    ),
    ("unused", "Unused", "Credentials nothing has resolved for a while."),
    (
        "rotation-due",
        "Rotation due",
        "Credentials past their rotation period, with OAuth grant health.",
    ),
    (
        "overrides",
        "Environment overrides",
        "Connections using a credential from another environment, and why.",
    ),
    ("unreviewed", "Unreviewed", "Credentials nobody has reviewed recently."),
];

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ReviewQuery {
    authorized_by: Option<String>,
}

async fn review(State(state): State<AppState>, sess: Session, Query(q): Query<ReviewQuery>) -> Response {
    if !sess.nav_audit() {
        // Without audit.read every report would be refused (and each refusal audited).
        let body = html! { h1 { "Not allowed" } p.error role="alert" { "The review reports need the audit.read permission (auditors and admins)." } };
        return (
            StatusCode::FORBIDDEN,
            Html(layout(&sess, "Not allowed", "review", body)),
        )
            .into_response();
    }
    let mut counts = Vec::new();
    for (k, _, _) in REPORTS {
        let Some(kind) = ReportKind::parse(k) else { continue };
        let req = ReportRequest {
            kind,
            org_id: None,
            workspace_id: None,
            days: None,
        };
        let n = match state.service.report(&sess.ctx, sess.actor(), req).await {
            Ok(mut s) => {
                let mut n = 0usize;
                while let Some(Ok(_)) = s.rows.recv().await {
                    n += 1;
                }
                Some(n)
            }
            Err(_) => None,
        };
        counts.push(n);
    }
    let gf = credvault_core::oauth::GrantFilter {
        authorized_by: nonempty(q.authorized_by.as_deref()),
        ..Default::default()
    };
    let grants = state
        .service
        .list_grants(&sess.ctx, sess.actor(), gf)
        .await
        .map(|p| p.items);
    let body = html! {
        h1 { "Review" }
        p { "The access-review reports. Download any as CSV for your records; mark credentials reviewed from their page." }
        table.list #reports {
            thead { tr { th { "Report" } th { "What it lists" } th { "Rows" } th { span.sr { "Download" } } } }
            tbody { @for ((k, title, what), n) in REPORTS.iter().zip(&counts) { tr {
                td { strong { (title) } } td { (what) }
                td { @match n { Some(n) => (n), None => span.muted { "not allowed" } } }
                td { @if n.is_some() { a.button href={"/review/" (k) ".csv"} download id={"csv-" (k)} { "Download CSV" } } }
            } } }
        }
        h2 { "OAuth grants" }
        p { "Who authorized each OAuth grant, and whether it still refreshes. Confirm the people still match headcount and roles; "
            "re-authorize a leaver's grants under a service account from the credential's page." }
        form.filters method="get" action="/review" {
            label { "Authorized by" input type="text" name="authorized_by" value=[q.authorized_by.as_deref()] placeholder="usr_… or sa_…" size="30"; }
            button type="submit" { "Filter" }
        }
        @match &grants {
            Ok(g) if g.is_empty() => p.empty { "No OAuth grants." },
            Ok(g) => table.list #grants {
                thead { tr { th { "Credential" } th { "Authorized by" } th { "Their roles now" } th { "Health" } th { "Refreshed" } } }
                tbody { @for x in g { tr {
                    td { a href={"/credentials/" (x.credential_id)} { (x.name) } }
                    td {
                        @match (&x.authorized_by, &x.authorized_by_name) {
                            (Some(id), Some(name)) => { (name) " " code.small { (id) } }
                            (Some(id), None) => code { (id) },
                            _ => span.muted { "nobody yet" },
                        }
                        @if x.authorizer_active == Some(false) {
                            " " span.status.disabled { "left: disabled or offboarded" }
                        }
                    }
                    td { @if x.authorizer_roles.is_empty() { @if x.authorized_by.is_some() { span.muted { "none" } } } @else { (x.authorizer_roles.join(", ")) } }
                    td { span class={"health " (x.health)} { (x.health) } @if let Some(r) = &x.health_reason { " — " (r) } }
                    td { (when(x.refreshed_at.as_deref())) }
                } } }
            },
            Err(_) => p.muted { "Listing grants needs the audit.read permission." },
        }
    };
    Html(layout(&sess, "Review", "review", body)).into_response()
}

async fn review_csv(State(state): State<AppState>, sess: Session, Path(file): Path<String>) -> Response {
    let Some(kind) = file.strip_suffix(".csv").and_then(ReportKind::parse) else {
        return error_page(Some(&sess), credvault_core::CoreError::NotFound { what: "report" });
    };
    let req = ReportRequest {
        kind,
        org_id: None,
        workspace_id: None,
        days: None,
    };
    match state.service.report(&sess.ctx, sess.actor(), req).await {
        Ok(stream) => crate::routes::connections::report_response(stream, true),
        Err(e) => error_page(Some(&sess), e),
    }
}

async fn audit(State(state): State<AppState>, sess: Session, Query(q): Query<Q>) -> Response {
    render_audit(&state, &sess, q, None).await
}

async fn render_audit(
    state: &AppState,
    sess: &Session,
    q: Q,
    verified: Option<Result<credvault_core::audit::Verification, super::Shown>>,
) -> Response {
    let f = AuditFilter {
        action: nonempty(q.action.as_deref()),
        outcome: nonempty(q.outcome.as_deref()),
        actor_id: nonempty(q.actor_id.as_deref()),
        target_id: nonempty(q.target_id.as_deref()),
        cursor: nonempty(q.cursor.as_deref()),
        ..Default::default()
    };
    let page = match state.service.list_audit(&sess.ctx, sess.actor(), f).await {
        Ok(p) => p,
        Err(e) => return error_page(Some(sess), e),
    };
    let body = html! {
        div.titlebar {
            h1 { "Audit log" }
            form.inline method="post" action="/audit/verify" { (csrf_field(sess)) button #verify type="submit" { "Verify the chain" } }
        }
        @if let Some(v) = &verified {
            @match v {
                Ok(v) if v.ok => p.notice #verify-result role="status" { "The chain is intact: " (v.events) " events, " (v.checkpoints) " signed checkpoints." },
                Ok(v) => p.error #verify-result role="alert" { "The chain is BROKEN" @if let Some(b) = &v.first_broken { " at event " (b.seq) } ". Events checked: " (v.events) "." },
                Err(sh) => p.error #verify-result role="alert" { (sh.message) },
            }
        }
        form.filters method="get" action="/audit" {
            label { "Action" select name="action" data-autosubmit="1" {
                option value="" { "any" }
                @for a in credvault_core::actions::Action::ALL.iter().map(|a| a.as_str()) { option value=(a) selected[q.action.as_deref() == Some(a)] { (a) } }
            } }
            label { "Outcome" select name="outcome" data-autosubmit="1" {
                option value="" { "any" }
                @for o in ["success", "denied", "error"] { option value=(o) selected[q.outcome.as_deref() == Some(o)] { (o) } }
            } }
            label { "Actor" input type="text" name="actor_id" value=[q.actor_id.as_deref()] size="14"; }
            label { "Target" input type="text" name="target_id" value=[q.target_id.as_deref()] size="14"; }
            button type="submit" { "Filter" }
        }
        @if page.items.is_empty() { p.empty { "No events match." } }
        @else {
            table.list.audit #audit-events {
                thead { tr { th { "#" } th { "When" } th { "Action" } th { "Outcome" } th { "Actor" } th { "Target" } th { "Details" } } }
                tbody { @for e in &page.items { tr {
                    td { (e.seq) }
                    td { (when(Some(&e.at))) }
                    td { code { (e.action) } }
                    td { span class={"outcome " (e.outcome)} { (e.outcome) } }
                    td { (e.actor_kind) @if let Some(a) = &e.actor_id { " " code { (a) } } }
                    td { @if let Some(t) = &e.target_id { (e.target_type.as_deref().unwrap_or("")) " " code { (t) } } }
                    td.details { @if e.details.as_object().is_some_and(|m| !m.is_empty()) { code { (e.details.to_string()) } } }
                } } }
            }
        }
        @if let Some(n) = &page.next_cursor { p { a href=(more(&q, "/audit", n)) { "Older events →" } } }
    };
    Html(layout(sess, "Audit", "audit", body)).into_response()
}

async fn verify(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let v = state
        .service
        .verify_audit(&sess.ctx, sess.actor(), None)
        .await
        .map_err(shown);
    render_audit(&state, &sess, Q::default(), Some(v)).await
}

async fn admin(State(state): State<AppState>, sess: Session, Query(q): Query<Q>) -> Response {
    if !sess.nav_admin() {
        let body =
            html! { h1 { "Not allowed" } p.error role="alert" { "The Admin screen is for organization admins." } };
        return (StatusCode::FORBIDDEN, Html(layout(&sess, "Not allowed", "admin", body))).into_response();
    }
    render_admin(&state, &sess, q.done.as_deref(), None, None).await
}

async fn render_admin(
    state: &AppState,
    sess: &Session,
    done: Option<&str>,
    new_token: Option<(String, String)>,
    problem: Option<super::Shown>,
) -> Response {
    let a = sess.actor();
    let principals = match state.service.list_principals(&sess.ctx, a, None, None, Some(500)).await {
        Ok(p) => p.items,
        Err(e) => return error_page(Some(sess), e),
    };
    let Some(settings) = &sess.settings else {
        return error_page(Some(sess), credvault_core::CoreError::NotFound { what: "organization" });
    };
    let bindings = state
        .service
        .list_role_bindings(&sess.ctx, a, None, None)
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    let workspaces = super::workspaces(state, sess).await;
    let ws_name = |id: &str| {
        workspaces
            .iter()
            .find(|w| w.id == id)
            .map_or_else(|| id.to_owned(), |w| w.name.clone())
    };
    let sas: Vec<_> = principals.iter().filter(|p| p.kind == "service_account").collect();
    let mut tokens = Vec::new();
    for sa in &sas {
        if let Ok(t) = state.service.list_tokens(&sess.ctx, a, Some(&sa.id)).await {
            tokens.extend(
                t.items
                    .into_iter()
                    .filter(|t| t.revoked_at.is_none())
                    .map(|t| (sa.name.clone(), t)),
            );
        }
    }
    let status = problem.as_ref().map_or(StatusCode::OK, |p| p.status);
    let body = html! {
        h1 { "Admin" }
        (notice(done))
        @if let Some(p) = &problem { p.error #form-error role="alert" { (p.message) } }
        @if let Some((name, token)) = &new_token {
            div.notice #new-token role="status" {
                p { "New token for " strong { (name) } ". Copy it now: it is shown this once and cannot be retrieved again." }
                p { code.token { (token) } }
            }
        }
        section {
            h2 { "Members" }
            table.list #members {
                thead { tr { th { "Name" } th { "Kind" } th { "Roles" } th { "State" } th { "Actions" } } }
                tbody { @for p in &principals { tr {
                    td { (p.name) br; code.small { (p.id) } }
                    td { (p.kind) }
                    td {
                        @for b in bindings.iter().filter(|b| b.principal_id == p.id) {
                            span.binding {
                                (b.role) @if let Some(w) = &b.workspace_id { " in " (ws_name(w)) }
                                @if !p.instance_admin {
                                    form.inline method="post" action={"/admin/bindings/" (b.id) "/delete"} {
                                        (csrf_field(sess))
                                        button.link type="submit" aria-label={"Remove " (b.role)} title="Remove this role" { "×" }
                                    }
                                }
                            }
                        }
                    }
                    td { (if p.disabled { "disabled" } else { "active" }) @if p.instance_admin { " · instance admin" } }
                    td.member-actions {
                        @if p.kind == "user" && !p.disabled && p.id != a.principal_id.as_str() && (!p.instance_admin || a.instance_admin) {
                            form.inline method="post" action={"/admin/principals/" (p.id) "/password"} {
                                (csrf_field(sess))
                                label.sr for={"pw-" (p.id)} { "New password for " (p.name) }
                                input id={"pw-" (p.id)} type="password" name="password" autocomplete="new-password" placeholder="new password" minlength="12" size="14";
                                button type="submit" { "Set password" }
                            }
                        }
                        @if !p.disabled && !p.instance_admin && p.id != a.principal_id.as_str() {
                            form.inline method="post" action={"/admin/principals/" (p.id) "/offboard"} {
                                (csrf_field(sess))
                                @if !sas.is_empty() {
                                    label.sr for={"to-" (p.id)} { "Transfer ownership to" }
                                    select id={"to-" (p.id)} name="transfer_to" {
                                        option value="" { "keep ownership" }
                                        @for sa in &sas { @if sa.id != p.id { option value=(sa.id) { "→ " (sa.name) } } }
                                    }
                                }
                                button.danger type="submit" data-confirm={"Offboard " (p.name) "? Their tokens and sessions end and the account is disabled."} { "Offboard" }
                            }
                        }
                    }
                } } }
            }
            div.grid {
                form.card #add-member method="post" action="/admin/members" {
                    (csrf_field(sess))
                    h3 { "Add a member" }
                    div.field { label for="m-name" { "Name" } input #m-name type="text" name="name" required; }
                    div.field { label for="m-kind" { "Kind" } select #m-kind name="kind" { option value="user" { "person (signs in with a password)" } option value="service_account" { "service account (uses tokens)" } } }
                    div.actions { button.primary type="submit" { "Add member" } }
                }
                form.card #bind method="post" action="/admin/bindings" {
                    (csrf_field(sess))
                    h3 { "Bind a role" }
                    div.field { label for="b-who" { "Member" } select #b-who name="principal_id" { @for p in principals.iter().filter(|p| !p.disabled) { option value=(p.id) { (p.name) } } } }
                    div.field { label for="b-role" { "Role" } select #b-role name="role" { @for r in credvault_domain::roles::Role::ALL { option value=(r.as_str()) { (r.as_str()) } } } }
                    div.field { label for="b-scope" { "Where" } select #b-scope name="scope" {
                        option value="" { "the whole organization" }
                        @for w in &workspaces { option value=(w.id) { "workspace " (w.name) } }
                    } }
                    div.actions { button.primary type="submit" { "Bind role" } }
                }
            }
        }
        section {
            h2 { "Service accounts and tokens" }
            @if sas.is_empty() { p.empty { "No service accounts. Add one above (kind: service account) for each pipeline worker." } }
            @else {
                @if !tokens.is_empty() {
                    table.list #tokens {
                        thead { tr { th { "Service account" } th { "Token" } th { "Created" } th { "Expires" } th { span.sr { "Actions" } } } }
                        tbody { @for (sa, t) in &tokens { tr {
                            td { (sa) } td { (t.name.as_deref().unwrap_or("—")) " " code { (t.id) } }
                            td { (when(Some(&t.created_at))) } td { (when(t.expires_at.as_deref())) }
                            td { (action_button(sess, &format!("/admin/tokens/{}/revoke", t.id), "Revoke", "danger", Some("Revoke this token? Workers using it stop at once."))) }
                        } } }
                    }
                }
                form.card method="post" action="/admin/tokens" {
                    (csrf_field(sess))
                    (super::once_field())
                    div.field { label for="t-sa" { "Service account" } select #t-sa name="principal_id" { @for s in &sas { option value=(s.id) { (s.name) } } } }
                    div.field { label for="t-name" { "Token name" } input #t-name type="text" name="name" placeholder="e.g. airflow-prod"; }
                    div.actions { button.primary type="submit" { "Create token" } }
                }
            }
        }
        section {
            h2 { "Organization settings" }
            form.card #settings method="post" action="/admin/settings" {
                (csrf_field(sess))
                fieldset {
                    legend { "Enabled credential types" }
                    @for t in CredentialType::ALL {
                        label.check { input type="checkbox" name="type" value=(t.as_str()) checked[settings.enabled_types.contains(&t)]; " " (t.as_str()) }
                    }
                }
                fieldset #role-policy {
                    legend { "Who may" }
                    input type="hidden" name="policy" value="1";
                    div.scroll { table.list.policy {
                        thead { tr { th { span.sr { "Permission" } } @for r in Role::ALL { th scope="col" { (r.as_str().replace('_', " ")) } } } }
                        tbody {
                            @for (perm, what) in POLICY_ROWS {
                                tr {
                                    th scope="row" { (what) " " code { (perm.as_str()) } }
                                    @for r in Role::ALL {
                                        td { input type="checkbox" name={"policy." (perm.as_str())} value=(r.as_str())
                                            aria-label={(r.as_str()) ": " (what)}
                                            checked[settings.role_policy.grants(r, *perm)]; }
                                    }
                                }
                            }
                        }
                    } }
                    p.hint { "Everything else a role may do is fixed: admins manage members and settings, auditors read the audit log and reviews, viewers read metadata, workers only resolve. Nobody may read secret values unless ticked here." }
                }
                label.check { input type="checkbox" name="allow_environment_override" value="true" checked[settings.allow_environment_override]; " Allow a connection to use a credential from another environment (with a reason)" }
                div.field { label for="s-rw" { "Recovery window (days)" } input #s-rw type="number" name="recovery_window_days" min="0" value=(settings.recovery_window_days); }
                div.actions { button.primary type="submit" { "Save settings" } }
            }
        }
    };
    (status, Html(layout(sess, "Admin", "admin", body))).into_response()
}

/// After an admin action: back to the admin page with a notice, or the page with the problem.
async fn admin_done(
    state: &AppState,
    sess: &Session,
    r: Result<(), credvault_core::CoreError>,
    done: &str,
) -> Response {
    match r {
        Ok(()) => Redirect::to(&format!("/admin?done={done}")).into_response(),
        Err(e) => {
            let sh = shown(e);
            if super::redisplay(&sh) {
                render_admin(state, sess, None, None, Some(sh)).await
            } else {
                super::shown_page(Some(sess), sh)
            }
        }
    }
}

async fn create_member(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let kind = match form.get("kind") {
        Some("service_account") => credvault_domain::PrincipalKind::ServiceAccount,
        _ => credvault_domain::PrincipalKind::User,
    };
    let req = credvault_core::views::CreatePrincipal {
        org_id: sess.actor().org_id.clone(),
        kind,
        name: form.text("name").unwrap_or_default(),
    };
    let r = state
        .service
        .create_principal(&sess.ctx, sess.actor(), req)
        .await
        .map(|_| ());
    admin_done(&state, &sess, r, "member").await
}

async fn create_binding(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let Some(role) = form.get("role").and_then(credvault_domain::roles::Role::parse) else {
        return admin_done(
            &state,
            &sess,
            Err(credvault_core::CoreError::invalid(
                "role",
                Code::InvalidRole,
                "choose a role",
            )),
            "",
        )
        .await;
    };
    let ids = super::form_id(&form, "scope", credvault_domain::WorkspaceId::parse)
        .and_then(|w| super::form_id_req(&form, "principal_id", credvault_domain::PrincipalId::parse).map(|p| (w, p)));
    let (ws, principal_id) = match ids {
        Ok(x) => x,
        Err(e) => return admin_done(&state, &sess, Err(e), "").await,
    };
    let req = credvault_core::views::CreateRoleBinding {
        principal_id,
        role,
        org_id: if ws.is_none() {
            Some(sess.actor().org_id.clone())
        } else {
            None
        },
        workspace_id: ws,
    };
    let r = state
        .service
        .create_role_binding(&sess.ctx, sess.actor(), req)
        .await
        .map(|_| ());
    admin_done(&state, &sess, r, "bound").await
}

async fn delete_binding(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let r = state
        .service
        .delete_role_binding(&sess.ctx, sess.actor(), &id)
        .await
        .map(|_| ());
    admin_done(&state, &sess, r, "unbound").await
}

async fn set_password(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let pw = zeroize::Zeroizing::new(form.get("password").unwrap_or("").to_owned());
    let r = state.service.set_password(&sess.ctx, sess.actor(), &id, pw, None).await;
    admin_done(&state, &sess, r, "password").await
}

async fn offboard(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let transfer_to = match super::form_id(&form, "transfer_to", credvault_domain::PrincipalId::parse) {
        Ok(t) => t,
        Err(e) => return admin_done(&state, &sess, Err(e), "").await,
    };
    let req = credvault_core::lifecycle::OffboardRequest { transfer_to };
    match state.service.offboard(&sess.ctx, sess.actor(), &id, req).await {
        Ok(o) => {
            let body = html! {
                h1 { "Offboarded" }
                p.notice role="status" #offboarded {
                    (o.tokens_revoked) " tokens revoked; the account is disabled and its browser sessions have ended."
                    @if let Some(t) = &o.transferred_to { " Ownership moved to " code { (t) } "." }
                }
                @if !o.oauth_grants.is_empty() {
                    h2 { "OAuth grants this person authorized" }
                    p { "Re-authorize each under a service account so scheduled jobs keep running:" }
                    ul { @for g in &o.oauth_grants { li { a href={"/credentials/" (g.id)} { (g.name) } " (" (g.ty) ")" } } }
                }
                @if !o.credentials.is_empty() {
                    h2 { "Credentials they created or own" }
                    ul { @for c in &o.credentials { li { a href={"/credentials/" (c.id)} { (c.name) } " — " (c.relation.join(", ")) } } }
                }
                p { a href="/admin" { "Back to Admin" } }
            };
            Html(layout(&sess, "Offboarded", "admin", body)).into_response()
        }
        Err(e) => admin_done(&state, &sess, Err(e), "").await,
    }
}

async fn revoke_token(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let r = state
        .service
        .revoke_token(&sess.ctx, sess.actor(), &id)
        .await
        .map(|_| ());
    admin_done(&state, &sess, r, "token_revoked").await
}

async fn save_settings(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let types: Vec<CredentialType> = form
        .0
        .iter()
        .filter(|(k, _)| k == "type")
        .filter_map(|(_, v)| CredentialType::parse(v))
        .collect();
    let rw = match form.text("recovery_window_days").map(|v| v.parse::<u32>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            let e = credvault_core::CoreError::invalid(
                "recovery_window_days",
                Code::InvalidField,
                "must be a whole number of days",
            );
            return admin_done(&state, &sess, Err(e), "").await;
        }
    };
    // The role grid: unticked boxes are absent from the form, so each permission's list is
    // exactly the ticked roles.
    let roles_for = |perm: Permission| -> Vec<Role> {
        let key = format!("policy.{}", perm.as_str());
        form.0
            .iter()
            .filter(|(k, _)| *k == key)
            .filter_map(|(_, v)| Role::parse(v))
            .collect()
    };
    // Only a form that showed the grid (it carries `policy`) changes the policy.
    let role_policy = (form.get("policy") == Some("1")).then(|| RolePolicy {
        credential_create: roles_for(Permission::CredentialCreate),
        credential_attach: roles_for(Permission::CredentialAttach),
        credential_reveal: roles_for(Permission::CredentialReveal),
    });
    let patch = SettingsPatch {
        enabled_types: Some(types),
        allow_environment_override: Some(form.get("allow_environment_override") == Some("true")),
        recovery_window_days: rw,
        role_policy,
        ..Default::default()
    };
    let a = sess.actor();
    match state
        .service
        .patch_settings(&sess.ctx, a, a.org_id.as_str(), patch)
        .await
    {
        Ok(_) => Redirect::to("/admin?done=updated").into_response(),
        Err(e) => error_page(Some(&sess), e),
    }
}

async fn create_token(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let principal_id = match super::form_id_req(&form, "principal_id", credvault_domain::PrincipalId::parse) {
        Ok(p) => p,
        Err(e) => return admin_done(&state, &sess, Err(e), "").await,
    };
    if !super::first_submission(&state, &sess, &form) {
        return render_admin(&state, &sess, Some("token_resubmitted"), None, None).await;
    }
    let req = CreateToken {
        principal_id,
        name: form.text("name"),
        expires_at: None,
    };
    match state.service.create_token(&sess.ctx, sess.actor(), req).await {
        Ok(t) => {
            let name = t.name.clone().unwrap_or_else(|| t.principal_id.clone());
            let token = t.token.clone();
            render_admin(&state, &sess, None, Some((name, token)), None).await
        }
        Err(e) => {
            super::forget_submission(&state, &sess, &form);
            error_page(Some(&sess), e)
        }
    }
}
