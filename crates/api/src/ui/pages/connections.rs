//! Connections: the list, New connection, the connection page (attach, detach, edit, delete, Test connection).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use credvault_domain::problems::Code;
use maud::html;
use serde_json::{Map, Value as Json};

use credvault_core::connections::{ConnectionFilter, CreateConnection};
use credvault_core::views::CredentialFilter;
use credvault_domain::connectors::ConnectorKind;
use credvault_domain::credential_types::{CredentialType, FieldKind};
use credvault_domain::roles::Permission;

use crate::AppState;
use crate::ui::{Form, Html, Session, action_button, check_csrf, csrf_field, error_page, layout, notice, shown, when};

use super::{Q, more, nonempty};

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
    err: Option<crate::ui::Shown>,
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
    let workspaces = crate::ui::workspaces(state, sess).await;
    let fitting = fitting_credentials(state, sess, k, None).await;
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

/// The picker's choices: visible, active credentials whose type fits connector `k` (and, for an
/// existing connection, its `config`'s authentication).
async fn fitting_credentials(
    state: &AppState,
    sess: &Session,
    k: ConnectorKind,
    config: Option<&Json>,
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
        .filter(|c| {
            CredentialType::parse(&c.ty).is_some_and(|t| match config {
                Some(cfg) => k.fits_config(t, c.variant.as_deref(), cfg).is_ok(),
                None => k.fits(t, c.variant.as_deref()),
            })
        })
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
fn config_inputs(
    k: ConnectorKind,
    value: &dyn Fn(&str) -> Option<String>,
    err: Option<&crate::ui::Shown>,
) -> maud::Markup {
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
                @if let Some(e) = crate::ui::field_message(err, "config", f.name) { span.field-error role="alert" { (e) } }
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
    let ids = crate::ui::form_id_req(&form, "workspace", credvault_domain::WorkspaceId::parse).and_then(|w| {
        crate::ui::form_id(&form, "credential_id", credvault_domain::CredentialId::parse).map(|c| (w, c))
    });
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
    Tested(Result<credvault_core::testing::ConnectionTest, crate::ui::Shown>),
    Refused(crate::ui::Shown),
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
        (true, Some(k)) => fitting_credentials(state, sess, k, Some(&c.config)).await,
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
                    @let (ok, ms, err) = crate::ui::outcome(t);
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
    let credential_id = match crate::ui::form_id_req(&form, "credential_id", credvault_domain::CredentialId::parse) {
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
    if crate::ui::redisplay(&sh) {
        render_connection(state, sess, id, None, Outcome::Refused(sh)).await
    } else {
        crate::ui::shown_page(Some(sess), sh)
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
