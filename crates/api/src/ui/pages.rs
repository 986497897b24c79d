//! Connections (with Test connection), pipelines, the review reports, the audit log and the
//! admin screens.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde_json::{Map, Value as Json};

use credvault_core::connections::{ConnectionFilter, CreateConnection, PipelineFilter};
use credvault_core::views::{AuditFilter, CreateToken, CredentialFilter};
use credvault_core::{ReportKind, ReportRequest, SettingsPatch};
use credvault_domain::connectors::ConnectorKind;
use credvault_domain::credential_types::{CredentialType, FieldKind};
use credvault_domain::roles::Permission;

use super::{Form, Html, Session, action_button, check_csrf, csrf_field, error_page, layout, may, notice, shown, when};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/connections", get(connections))
        .route("/connections/new", get(new_connection).post(create_connection))
        .route("/connections/{id}", get(connection))
        .route("/connections/{id}/test", post(test_connection))
        .route("/pipelines", get(pipelines))
        .route("/pipelines/{id}", get(pipeline))
        .route("/review", get(review))
        .route("/review/{file}", get(review_csv))
        .route("/audit", get(audit))
        .route("/audit/verify", post(verify))
        .route("/admin", get(admin))
        .route("/admin/settings", post(save_settings))
        .route("/admin/tokens", post(create_token))
}

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
    let can_create = may(&state, &sess, Permission::CredentialAttach, None).await;
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
        @if let Some(n) = &page.next_cursor { p { a href={"/connections?cursor=" (n)} { "Next page →" } } }
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
    // The picker offers only visible credentials whose type fits this kind.
    let creds = state
        .service
        .list_credentials(
            &sess.ctx,
            sess.actor(),
            CredentialFilter {
                status: Some("active".into()),
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    let fitting: Vec<_> = creds
        .iter()
        .filter(|c| CredentialType::parse(&c.ty).is_some_and(|t| k.fits(t, c.variant.as_deref())))
        .collect();
    let prev = |n: &str| form.and_then(|f| f.get(n)).map(str::to_owned);
    let field_err = |name: &str| super::field_message(err.as_ref(), "config", name);
    let mismatch = err.as_ref().is_some_and(|e| e.code == "environment_mismatch");
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
            @for f in k.config_fields() {
                @let name = format!("cfg.{}", f.name);
                div.field {
                    label for=(name) { code { (f.name) } @if f.required { span.req { " *" } } }
                    @match f.kind {
                        FieldKind::Boolean => input #(name) type="checkbox" name=(name) value="true" checked[prev(&name).as_deref() == Some("true")];,
                        FieldKind::Integer => input #(name) type="number" name=(name) value=[prev(&name)] required[f.required];,
                        FieldKind::Enum(vals) => select #(name) name=(name) { @if !f.required { option value="" { "—" } } @for v in vals { option value=(v) selected[prev(&name).as_deref() == Some(*v)] { (v) } } },
                        FieldKind::StringList => textarea #(name) name=(name) rows="2" placeholder="one per line" { @if let Some(p) = prev(&name) { (p) } },
                        FieldKind::String if f.name.ends_with("_pem") => textarea #(name) name=(name) rows="4" { @if let Some(p) = prev(&name) { (p) } },
                        _ => input #(name) type="text" name=(name) value=[prev(&name)] required[f.required];,
                    }
                    @if !f.description.is_empty() { span.hint { (f.description) } }
                    @if let Some(e) = field_err(f.name) { span.field-error role="alert" { (e) } }
                }
            }
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

async fn create_connection(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let kind_s = form.text("kind").unwrap_or_default();
    let Some(k) = ConnectorKind::parse(&kind_s) else {
        return render_new_connection(&state, &sess, None, None, None).await;
    };
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
    let req = CreateConnection {
        name: form.text("name").unwrap_or_default(),
        workspace_id: credvault_domain::WorkspaceId::from_trusted(form.text("workspace").unwrap_or_default()),
        environment: form.text("environment").unwrap_or_default(),
        kind: kind_s.clone(),
        config: Json::Object(config),
        credential_id: form
            .text("credential_id")
            .map(credvault_domain::CredentialId::from_trusted),
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
    render_connection(&state, &sess, &id, q.done.as_deref(), None).await
}

async fn render_connection(
    state: &AppState,
    sess: &Session,
    id: &str,
    done: Option<&str>,
    result: Option<Result<credvault_core::testing::ConnectionTest, super::Shown>>,
) -> Response {
    let c = match state.service.get_connection(&sess.ctx, sess.actor(), id).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(sess), e),
    };
    let can_test = may(state, sess, Permission::CredentialAttach, Some(&c.workspace_id)).await;
    let body = html! {
        h1 { (c.name) }
        (notice(done))
        @for w in &c.warnings { p.warning { (w) } }
        div.actions.bar {
            @if can_test && c.credential_id.is_some() {
                (action_button(sess, &format!("/connections/{}/test", c.id), "Test connection", "primary", None))
            }
        }
        @if let Some(r) = &result {
            @match r {
                Ok(t) => {
                    @let j = serde_json::to_value(t).unwrap_or_default();
                    @let ok = j.get("ok").and_then(Json::as_bool).unwrap_or(false);
                    div #test-result class=(if ok { "notice" } else { "error" }) role="status" {
                        strong { (if ok { "Connection works" } else { "Connection failed" }) }
                        " — version " (t.version) ", " (j.get("latency_ms").and_then(Json::as_u64).unwrap_or(0)) " ms"
                        @if let Some(e) = j.get("error") {
                            br; code { (e.get("code").and_then(Json::as_str).unwrap_or("")) } " " (e.get("message").and_then(Json::as_str).unwrap_or(""))
                        }
                    }
                },
                Err(sh) => p.error #test-result role="alert" { (sh.message) },
            }
        }
        dl.meta {
            dt { "ID" } dd { code { (c.id) } }
            dt { "Kind" } dd { (c.kind) }
            dt { "Environment" } dd { span.env { (c.environment) } }
            dt { "Workspace" } dd { code { (c.workspace_id) } }
            dt { "Credential" } dd { @match &c.credential_id { Some(cid) => a href={"/credentials/" (cid)} { code { (cid) } }, None => "none" } }
            @if let Some(r) = &c.override_reason { dt { "Environment override" } dd { (r) } }
            @if let Json::Object(m) = &c.config { @for (k, v) in m { dt { code { (k) } } dd { (match v { Json::String(s) => s.clone(), o => o.to_string() }) } } }
            dt { "Last test" } dd { @match &c.last_test { Some(t) => { (if t.ok { "ok" } else { "failed" }) " · " (t.latency_ms) " ms · " (when(Some(&t.at))) }, None => "never" } }
            dt { "Last used" } dd { (when(c.last_used_at.as_deref())) }
        }
    };
    Html(layout(sess, &c.name, "connections", body)).into_response()
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
    render_connection(&state, &sess, &id, None, Some(r)).await
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

async fn review(State(state): State<AppState>, sess: Session) -> Response {
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
    let body = html! {
        h1 { "Review" }
        p { "The access-review reports. Download any as CSV for your records; mark credentials reviewed from their page." }
        table.list #reports {
            thead { tr { th { "Report" } th { "What it lists" } th { "Rows" } th {} } }
            tbody { @for ((k, title, what), n) in REPORTS.iter().zip(&counts) { tr {
                td { strong { (title) } } td { (what) }
                td { @match n { Some(n) => (n), None => span.muted { "not allowed" } } }
                td { @if n.is_some() { a.button href={"/review/" (k) ".csv"} download id={"csv-" (k)} { "Download CSV" } } }
            } } }
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
                @for a in credvault_core::audit::ACTIONS { option value=(a) selected[q.action.as_deref() == Some(*a)] { (a) } }
            } }
            label { "Outcome" select name="outcome" data-autosubmit="1" {
                option value="" { "any" }
                @for o in ["success", "denied", "failure"] { option value=(o) selected[q.outcome.as_deref() == Some(o)] { (o) } }
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
        @if let Some(n) = &page.next_cursor { p { a href={"/audit?cursor=" (n)} { "Older events →" } } }
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
    render_admin(&state, &sess, q.done.as_deref(), None).await
}

async fn render_admin(
    state: &AppState,
    sess: &Session,
    done: Option<&str>,
    new_token: Option<(String, String)>,
) -> Response {
    let a = sess.actor();
    let principals = match state.service.list_principals(&sess.ctx, a, None, None, Some(500)).await {
        Ok(p) => p.items,
        Err(e) => return error_page(Some(sess), e),
    };
    let settings = match state.service.get_settings(&sess.ctx, a, a.org_id.as_str()).await {
        Ok(s) => s,
        Err(e) => return error_page(Some(sess), e),
    };
    let bindings = state
        .service
        .list_role_bindings(&sess.ctx, a, None, None)
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    let roles_of = |pid: &str| -> String {
        bindings
            .iter()
            .filter(|b| b.principal_id == pid)
            .map(|b| match &b.workspace_id {
                Some(w) => format!("{} in {w}", b.role),
                None => b.role.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sas: Vec<_> = principals.iter().filter(|p| p.kind == "service_account").collect();
    let body = html! {
        h1 { "Admin" }
        (notice(done))
        @if let Some((name, token)) = &new_token {
            div.notice #new-token role="status" {
                p { "New token for " strong { (name) } ". Copy it now: it is shown this once and cannot be retrieved again." }
                p { code.token { (token) } }
            }
        }
        section {
            h2 { "Members" }
            table.list #members {
                thead { tr { th { "Name" } th { "Kind" } th { "Roles" } th { "State" } } }
                tbody { @for p in &principals { tr {
                    td { (p.name) } td { (p.kind) } td { (roles_of(&p.id)) }
                    td { (if p.disabled { "disabled" } else { "active" }) }
                } } }
            }
            p.hint { "Add members and bind roles with " code { "credvault principal create" } " and " code { "credvault principal bind" } "; set a person's password with " code { "credvault principal set-password" } "." }
        }
        section {
            h2 { "Service accounts and tokens" }
            @if sas.is_empty() { p.empty { "No service accounts." } }
            @else {
                form.card method="post" action="/admin/tokens" {
                    (csrf_field(sess))
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
                label.check { input type="checkbox" name="allow_environment_override" value="true" checked[settings.allow_environment_override]; " Allow a connection to use a credential from another environment (with a reason)" }
                div.field { label for="s-rw" { "Recovery window (days)" } input #s-rw type="number" name="recovery_window_days" min="0" value=(settings.recovery_window_days); }
                div.actions { button.primary type="submit" { "Save settings" } }
            }
        }
    };
    Html(layout(sess, "Admin", "admin", body)).into_response()
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
    let rw = form.text("recovery_window_days").and_then(|v| v.parse::<u32>().ok());
    let patch = SettingsPatch {
        enabled_types: Some(types),
        allow_environment_override: Some(form.get("allow_environment_override") == Some("true")),
        recovery_window_days: rw,
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
    let req = CreateToken {
        principal_id: credvault_domain::PrincipalId::from_trusted(form.text("principal_id").unwrap_or_default()),
        name: form.text("name"),
        expires_at: None,
    };
    match state.service.create_token(&sess.ctx, sess.actor(), req).await {
        Ok(t) => {
            let name = t.name.clone().unwrap_or_else(|| t.principal_id.clone());
            let token = t.token.clone();
            render_admin(&state, &sess, None, Some((name, token))).await
        }
        Err(e) => error_page(Some(&sess), e),
    }
}
