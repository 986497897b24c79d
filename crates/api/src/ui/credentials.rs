//! Credential screens: the filtered list, the type-driven "New credential" form, the detail
//! page with its actions, and the rotation wizard (stage → test dependents → promote →
//! revoke the old version).

use credvault_domain::problems::Code;
use credvault_domain::states::{CredentialStatus, VersionState};
use std::collections::BTreeSet;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::{Map, Value as Json};

use credvault_core::views::{CreateCredential, CreateVersion, CredentialFilter, CredentialView, VersionMode};
use credvault_core::{CreateReview, ReportKind, ReportRequest, StatusOp};
use credvault_domain::credential_types::{self, CredentialType, FieldKind, FieldSchema, VariantSchema};
use credvault_domain::roles::Permission;

use super::{Form, Html, Session, action_button, check_csrf, csrf_field, error_page, layout, notice, shown, when};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/credentials", get(list))
        .route("/credentials/new", get(new_form).post(create))
        .route("/credentials/{id}", get(detail))
        .route("/credentials/{id}/rotate", get(rotate_form).post(rotate_stage))
        .route("/credentials/{id}/edit", get(edit_form).post(edit_save))
        .route("/credentials/{id}/versions/{n}/promote", post(promote))
        .route("/credentials/{id}/versions/{n}/revoke", post(revoke))
        .route("/credentials/{id}/{op}", post(act))
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    #[serde(rename = "type")]
    ty: Option<String>,
    environment: Option<String>,
    status: Option<String>,
    label: Option<String>,
    q: Option<String>,
    show: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// IDs in the first column of a report (used for the "unused" and "rotation due" filters).
async fn report_ids(state: &AppState, sess: &Session, kind: ReportKind) -> Result<BTreeSet<String>, Response> {
    let req = ReportRequest {
        kind,
        org_id: None,
        workspace_id: None,
        days: None,
    };
    let mut stream = state
        .service
        .report(&sess.ctx, sess.actor(), req)
        .await
        .map_err(|e| error_page(Some(sess), e))?;
    let col = stream.columns.iter().position(|c| *c == "credential_id").unwrap_or(0);
    let mut ids = BTreeSet::new();
    while let Some(row) = stream.rows.recv().await {
        let row = row.map_err(|e| error_page(Some(sess), e))?;
        if let Some(Json::String(id)) = row.get(col) {
            ids.insert(id.clone());
        }
    }
    Ok(ids)
}

/// With "Show: unused / rotation due", the list walks pages of the store's list until it has
/// at least this many matches (or has read [`SHOW_MAX_PAGES`] pages), so the filter covers
/// every credential, not only the first page.
const SHOW_WANT: usize = 50;
const SHOW_MAX_PAGES: usize = 20;

async fn list(State(state): State<AppState>, sess: Session, Query(q): Query<ListQuery>) -> Response {
    let show = nonempty(&q.show);
    let keep = match show.as_deref() {
        Some("unused") => Some(match report_ids(&state, &sess, ReportKind::Unused).await {
            Ok(ids) => ids,
            Err(r) => return r,
        }),
        Some("rotation-due") => Some(match report_ids(&state, &sess, ReportKind::RotationDue).await {
            Ok(ids) => ids,
            Err(r) => return r,
        }),
        _ => None,
    };
    let mut cursor = nonempty(&q.cursor);
    let mut items: Vec<CredentialView> = Vec::new();
    let mut read_any = false;
    let mut next_cursor;
    let mut pages = 0;
    loop {
        let filter = CredentialFilter {
            ty: nonempty(&q.ty),
            environment: nonempty(&q.environment),
            status: nonempty(&q.status),
            label: nonempty(&q.label).into_iter().collect(),
            q: nonempty(&q.q),
            cursor: cursor.clone(),
            ..Default::default()
        };
        let page = match state.service.list_credentials(&sess.ctx, sess.actor(), filter).await {
            Ok(p) => p,
            Err(e) => {
                let sh = shown(e);
                let body = html! { h1 { "Credentials" } p.error role="alert" { (sh.message) } p { a href="/credentials" { "Clear the filters" } } };
                return (sh.status, Html(layout(&sess, "Credentials", "credentials", body))).into_response();
            }
        };
        pages += 1;
        read_any |= !page.items.is_empty();
        items.extend(
            page.items
                .into_iter()
                .filter(|c| keep.as_ref().is_none_or(|k| k.contains(&c.id))),
        );
        next_cursor = page.next_cursor;
        if keep.is_none() || items.len() >= SHOW_WANT || pages >= SHOW_MAX_PAGES || next_cursor.is_none() {
            break;
        }
        cursor = next_cursor.clone();
    }
    let can_create = sess.may(Permission::CredentialCreate, None);
    let types = enabled_types(&sess);
    let sel = |cur: &Option<String>, v: &str| cur.as_deref() == Some(v);
    let body = html! {
        div.titlebar {
            h1 { "Credentials" }
            @if can_create { a.button.primary #new-credential href="/credentials/new" { "New credential" } }
        }
        (notice(q.done.as_deref()))
        form.filters method="get" action="/credentials" role="search" {
            label { "Search" input type="search" name="q" value=[q.q.as_deref()] placeholder="name or description"; }
            label { "Type" select name="type" data-autosubmit="1" {
                option value="" { "any" }
                @for t in &types { option value=(t.as_str()) selected[sel(&q.ty, t.as_str())] { (t.as_str()) } }
            } }
            label { "Environment" input type="text" name="environment" value=[q.environment.as_deref()] size="8"; }
            label { "Label" input type="text" name="label" value=[q.label.as_deref()] placeholder="owner_team:data-platform" size="12"; }
            label { "Status" select name="status" data-autosubmit="1" {
                option value="" { "any" }
                @for s in ["active", "disabled", "expired", "pending_deletion"] { option value=(s) selected[sel(&q.status, s)] { (s) } }
            } }
            @if sess.nav_audit() { label { "Show" select name="show" data-autosubmit="1" {
                option value="" { "all" }
                option value="unused" selected[sel(&q.show, "unused")] { "unused" }
                option value="rotation-due" selected[sel(&q.show, "rotation-due")] { "rotation due" }
            } } }
            button type="submit" { "Filter" }
        }
        @if items.is_empty() {
            div.empty {
                p { "No credentials match." }
                @if can_create && !read_any && q.cursor.is_none() && keep.is_none() {
                    p { "Start by adding one: choose the type that matches the target system, and enter its secrets once." }
                }
            }
        } @else {
            table.list {
                thead { tr { th { "Name" } th { "Type" } th { "Environment" } th { "Labels" } th { "Status" } th { "Version" } th { "Last used" } } }
                tbody {
                    @for c in &items {
                        tr {
                            td { a href={"/credentials/" (c.id)} { (c.name) } }
                            td { (c.ty) @if let Some(v) = &c.variant { span.muted { " · " (v) } } }
                            td { span.env { (c.environment) } }
                            td { (labels_text(&c.labels)) }
                            td { span class={"status " (c.status)} { (c.status) } }
                            td { "v" (c.current_version) }
                            td { (when(c.last_used_at.as_deref())) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = &next_cursor {
            p { a href=(next_link(&q, next)) { "Next page →" } }
        }
    };
    Html(layout(&sess, "Credentials", "credentials", body)).into_response()
}

/// The list URL with the same filters and the next page's cursor.
fn next_link(q: &ListQuery, cursor: &str) -> String {
    let mut u = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("type", &q.ty),
        ("environment", &q.environment),
        ("status", &q.status),
        ("label", &q.label),
        ("q", &q.q),
        ("show", &q.show),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            u.append_pair(k, v);
        }
    }
    u.append_pair("cursor", cursor);
    format!("/credentials?{}", u.finish())
}

/// Adds `key=value` lines to `labels` (split at the first `=`, so values may hold `=` and
/// `,`); a key already there (set by its own field, or twice) or a line without `=` is
/// refused with a message for the person.
fn parse_labels(text: &str, labels: &mut Map<String, Json>) -> Result<(), String> {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some((k, _)) if labels.contains_key(k) => {
                return Err(format!("`{k}` is given twice (or also by its own field above)"));
            }
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_owned(), Json::String(v.to_owned()));
            }
            _ => return Err(format!("`{line}` is not a key=value line (one label per line)")),
        }
    }
    Ok(())
}

/// Labels as the edit form shows them: one `key=value` per line.
fn labels_lines(l: &Map<String, Json>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A labels text area.
fn labels_input(name: &str, label: &str, value: Option<String>, err: Option<String>, hint: &str) -> Markup {
    let id = format!("in-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            textarea #(id) name=(name) rows="3" spellcheck="false" placeholder=(hint)
                aria-invalid=[err.as_ref().map(|_| "true")] { @if let Some(v) = &value { (v) } }
            @if let Some(e) = err { span.field-error role="alert" { (e) } }
        }
    }
}

fn labels_text(l: &Map<String, Json>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Allowed destinations as a text area holds them: one entry per line.
fn destinations_lines(list: &[String]) -> String {
    list.join("\n")
}

/// The entries of a destinations text area (blank lines and spaces dropped).
fn parse_destination_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The message of the first refused destination entry (`allowed_destinations[i]`), naming
/// its line.
fn destinations_error(err: Option<&super::Shown>) -> Option<String> {
    err.and_then(|e| {
        e.fields.iter().find_map(|(f, m)| {
            let rest = f.strip_prefix("allowed_destinations")?;
            let line = rest
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok());
            Some(match line {
                Some(i) => format!("line {}: {m}", i + 1),
                None => m.clone(),
            })
        })
    })
}

/// The destinations text area of the New credential and Edit forms.
fn destinations_input(value: Option<String>, err: Option<String>) -> Markup {
    html! {
        div.field {
            label for="in-allowed_destinations" { "Allowed destinations" }
            textarea #in-allowed_destinations name="allowed_destinations" rows="3" spellcheck="false"
                aria-describedby="hint-allowed_destinations"
                placeholder="db.example.com:5432\n*.corp.example\n10.0.0.0/8:5432"
                aria-invalid=[err.as_ref().map(|_| "true")] { @if let Some(v) = &value { (v) } }
            span.hint #hint-allowed_destinations {
                "Where the secret may be sent, one per line: a host, *.suffix, an IP address or a CIDR, each with an optional :port. "
                "Connections you wire yourself add their hosts; anyone else can only use this credential with connections that point here."
            }
            @if let Some(e) = err { span.field-error role="alert" { (e) } }
        }
    }
}

fn enabled_types(sess: &Session) -> Vec<CredentialType> {
    sess.settings
        .as_ref()
        .map(|s| s.enabled_types.clone())
        .unwrap_or_default()
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct NewQuery {
    #[serde(rename = "type")]
    ty: Option<String>,
    variant: Option<String>,
}

async fn new_form(State(state): State<AppState>, sess: Session, Query(q): Query<NewQuery>) -> Response {
    render_new(&state, &sess, q.ty.as_deref(), q.variant.as_deref(), None, None).await
}

/// Renders the New credential flow: type picker, variant picker, then the form.
async fn render_new(
    state: &AppState,
    sess: &Session,
    ty: Option<&str>,
    variant: Option<&str>,
    form: Option<&Form>,
    err: Option<super::Shown>,
) -> Response {
    if form.is_none() && !sess.may(Permission::CredentialCreate, None) {
        let body = html! {
            h1 { "New credential" }
            p.empty { "Your roles do not let you create credentials. An integration engineer or an admin can." }
        };
        return (
            StatusCode::FORBIDDEN,
            Html(layout(sess, "New credential", "credentials", body)),
        )
            .into_response();
    }
    let types = enabled_types(sess);
    let chosen = ty.and_then(CredentialType::parse).filter(|t| types.contains(t));
    let Some(t) = chosen else {
        let body = html! {
            h1 { "New credential" }
            p { "Choose the type that matches the target system. Only the types enabled for your organization are offered." }
            @if types.is_empty() { p.empty { "No credential types are enabled for this organization; an admin can enable them under Admin." } }
            ul.cards {
                @for t in &types {
                    @let s = credential_types::schema(*t);
                    li { a.card href={"/credentials/new?type=" (t.as_str())} data-type=(t.as_str()) { strong { (s.title) } span { (s.description) } } }
                }
            }
        };
        return Html(layout(sess, "New credential", "credentials", body)).into_response();
    };
    let schema = credential_types::schema(t);
    let v = variant.and_then(|v| schema.variant(v)).or_else(|| {
        if schema.variants.len() == 1 {
            schema.variants.first()
        } else {
            schema.default_variant.and_then(|d| schema.variant(d))
        }
    });
    let workspaces = super::workspaces(state, sess).await;
    let status = err.as_ref().map_or(StatusCode::OK, |e| e.status);
    let field_err = |name: &str| super::field_message(err.as_ref(), "fields", name);
    // Label problems (`labels` or `labels.KEY` from the API) show at the labels field.
    let label_err = err.as_ref().and_then(|e| {
        e.fields.iter().find_map(|(f, m)| match f.strip_prefix("labels") {
            Some("") => Some(m.clone()),
            Some(rest) => rest.strip_prefix('.').map(|k| format!("{k}: {m}")),
            None => None,
        })
    });
    let prev = |k: &str| form.and_then(|f| f.get(k)).map(str::to_owned);
    let body = html! {
        h1 { "New " (schema.title) " credential" }
        p.muted { (schema.description) }
        @if schema.variants.len() > 1 {
            nav.variants aria-label="Variant" {
                span { "Kind: " }
                @for var in schema.variants {
                    a href={"/credentials/new?type=" (t.as_str()) "&variant=" (var.name)}
                      aria-current=[(v.map(|x| x.name) == Some(var.name)).then_some("true")] { (var.title) }
                }
            }
        }
        @if let Some(e) = &err { p.error role="alert" #form-error { (e.message) } }
        @match v {
            None => p { "Choose a kind above." },
            Some(v) => form.card.credential method="post" action="/credentials/new" autocomplete="off" {
                (csrf_field(sess))
                input type="hidden" name="type" value=(t.as_str());
                input type="hidden" name="variant" value=(v.name);
                fieldset {
                    legend { "About" }
                    (text_input("name", "Name", prev("name"), true, field_err("name"), "e.g. orders-db-prod"))
                    label for="workspace" { "Workspace" }
                    select #workspace name="workspace" {
                        option value="" { "Organization-wide (every workspace may use it)" }
                        @for w in &workspaces { option value=(w.id) selected[prev("workspace").as_deref() == Some(w.id.as_str())] { (w.name) } }
                    }
                    (text_input("environment", "Environment", prev("environment"), true, field_err("environment"), "prod, staging, dev…"))
                    (text_input("system", "System label", prev("system"), false, None, "the target system, e.g. orders-db"))
                    (text_input("owner", "Owner team label", prev("owner"), false, None, "e.g. data-platform"))
                    (labels_input("more_labels", "More labels", prev("more_labels"), label_err.clone(), "key=value, one per line (optional)"))
                    (text_input("description", "Description", prev("description"), false, field_err("description"), ""))
                    (text_input("expires_at", "Expires at", prev("expires_at"), false, field_err("expires_at"), "2027-01-31T00:00:00Z (optional)"))
                    (text_input("rotation_period_days", "Rotation period (days)", prev("rotation_period_days"), false, field_err("rotation_period_days"), "e.g. 90 (optional)"))
                    (destinations_input(prev("allowed_destinations"), destinations_error(err.as_ref())))
                }
                fieldset {
                    legend { (v.title) }
                    @for f in v.fields { (field_input(f, form, &field_err)) }
                }
                div.actions { button.primary type="submit" { "Create credential" } a href="/credentials" { "Cancel" } }
            },
        }
    };
    (status, Html(layout(sess, "New credential", "credentials", body))).into_response()
}

fn text_input(
    name: &str,
    label: &str,
    value: Option<String>,
    required: bool,
    err: Option<String>,
    hint: &str,
) -> Markup {
    let id = format!("in-{name}");
    html! {
        div.field {
            label for=(id) { (label) @if required { span.req aria-hidden="true" { " *" } } }
            input #(id) type="text" name=(name) value=[value] required[required] placeholder=(hint)
                aria-invalid=[err.as_ref().map(|_| "true")];
            @if let Some(e) = err { span.field-error role="alert" { (e) } }
        }
    }
}

/// Rows offered for a list field (empty rows are ignored).
const LIST_ROWS: usize = 3;

/// One input for one schema field. Secret fields are password inputs and never pre-filled.
/// `errs` finds the message for an input name without its `f.` prefix.
fn field_input(f: &FieldSchema, form: Option<&Form>, errs: &dyn Fn(&str) -> Option<String>) -> Markup {
    input_for(f, &format!("f.{}", f.name), form, errs, false, false)
}

fn input_for(
    f: &FieldSchema,
    name: &str,
    form: Option<&Form>,
    errs: &dyn Fn(&str) -> Option<String>,
    secret_parent: bool,
    in_list: bool,
) -> Markup {
    let secret = f.secret || secret_parent;
    let id = name.replace('.', "-");
    let err = errs(name.trim_start_matches("f."));
    let prev = if secret {
        None
    } else {
        form.and_then(|x| x.get(name)).map(str::to_owned)
    };
    let label = html! {
        label for=(id) {
            code { (f.name) }
            @if f.required { span.req aria-hidden="true" { " *" } }
            @if secret { span.badge { "secret" } }
        }
    };
    let input = match f.kind {
        FieldKind::Object(sub) => {
            return html! {
                fieldset.nested {
                    legend { code { (f.name) } @if !f.required { span.muted { " (optional)" } } }
                    @if !f.description.is_empty() { span.hint { (f.description) } }
                    @for s in sub { (input_for(s, &format!("{name}.{}", s.name), form, errs, secret, in_list)) }
                    @if let Some(e) = err { span.field-error role="alert" { (e) } }
                }
            };
        }
        FieldKind::List(sub) => {
            return html! {
                fieldset.nested {
                    legend { code { (f.name) } }
                    @if !f.description.is_empty() { span.hint { (f.description) " Fill one row per item; empty rows are ignored." } }
                    @for i in 0..LIST_ROWS {
                        div.row {
                            span.muted { "#" (i + 1) }
                            @for s in sub { (input_for(s, &format!("{name}.{i}.{}", s.name), form, errs, secret, true)) }
                        }
                    }
                    @if let Some(e) = err { span.field-error role="alert" { (e) } }
                }
            };
        }
        FieldKind::Boolean => html! {
            input #(id) type="checkbox" name=(name) value="true" checked[prev.as_deref() == Some("true")];
        },
        FieldKind::Enum(values) => html! {
            select #(id) name=(name) {
                @if !f.required || in_list { option value="" { "—" } }
                @for v in values { option value=(v) selected[prev.as_deref() == Some(*v)] { (v) } }
            }
        },
        FieldKind::StringMap => html! {
            textarea #(id) name=(name) rows="3" placeholder="Name: value (one per line)" spellcheck="false" { @if let Some(p) = &prev { (p) } }
        },
        FieldKind::StringList => html! {
            textarea #(id) name=(name) rows="3" placeholder="one per line" spellcheck="false" { @if let Some(p) = &prev { (p) } }
        },
        _ if secret && f.check.format_name().is_some_and(|n| n.contains("pem")) => html! {
            textarea #(id) name=(name) rows="6" class="secret" spellcheck="false" autocomplete="off" {}
        },
        _ if secret => html! {
            input #(id) type="password" name=(name) autocomplete="new-password";
        },
        FieldKind::Integer => html! { input #(id) type="number" name=(name) value=[prev]; },
        _ => html! { input #(id) type="text" name=(name) value=[prev]; },
    };
    html! {
        div.field {
            (label)
            (input)
            @if !f.description.is_empty() { span.hint { (f.description) } }
            @if let Some(e) = err { span.field-error role="alert" { (e) } }
        }
    }
}

/// Builds the `fields` object from the form for a variant. Unfilled optional fields are
/// left out; the core validates the rest and names any bad field.
fn fields_from_form(v: &VariantSchema, form: &Form) -> Result<Json, (String, String)> {
    let mut out = Map::new();
    for f in v.fields {
        if let Some(val) = value_for(f, &format!("f.{}", f.name), form)? {
            out.insert(f.name.to_owned(), val);
        }
    }
    Ok(Json::Object(out))
}

fn value_for(f: &FieldSchema, name: &str, form: &Form) -> Result<Option<Json>, (String, String)> {
    let path = || name.trim_start_matches("f.").to_owned();
    let raw = form.get(name).unwrap_or("");
    Ok(Some(match f.kind {
        FieldKind::Object(sub) => {
            let mut m = Map::new();
            for s in sub {
                if let Some(v) = value_for(s, &format!("{name}.{}", s.name), form)? {
                    m.insert(s.name.to_owned(), v);
                }
            }
            if m.is_empty() {
                return Ok(None);
            }
            Json::Object(m)
        }
        FieldKind::List(sub) => {
            let mut items = Vec::new();
            for i in 0..LIST_ROWS {
                let mut m = Map::new();
                let mut filled = false;
                for s in sub {
                    if let Some(v) = value_for(s, &format!("{name}.{i}.{}", s.name), form)? {
                        // A row whose only values are pre-selected choices is an empty row.
                        filled |= !matches!(s.kind, FieldKind::Enum(_) | FieldKind::Boolean);
                        m.insert(s.name.to_owned(), v);
                    }
                }
                if filled {
                    items.push(Json::Object(m));
                }
            }
            if items.is_empty() {
                return Ok(None);
            }
            Json::Array(items)
        }
        FieldKind::Boolean => {
            if form.get(name).is_none() {
                return Ok(None);
            }
            Json::Bool(raw == "true")
        }
        _ if raw.trim().is_empty() => return Ok(None),
        FieldKind::Integer => match raw.trim().parse::<i64>() {
            Ok(n) => Json::from(n),
            Err(_) => return Err((path(), "must be a whole number".to_owned())),
        },
        FieldKind::StringList => Json::Array(
            raw.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Json::String(l.to_owned()))
                .collect(),
        ),
        FieldKind::StringMap => {
            let mut m = Map::new();
            for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let Some((k, v)) = line.split_once(':') else {
                    return Err((path(), "write one `Name: value` per line".to_owned()));
                };
                m.insert(k.trim().to_owned(), Json::String(v.trim().to_owned()));
            }
            Json::Object(m)
        }
        _ if f.secret => Json::String(raw.to_owned()),
        _ => Json::String(raw.trim().to_owned()),
    }))
}

fn form_error(field: String, message: String) -> super::Shown {
    super::Shown {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: Code::InvalidField,
        message: format!("{field}: {message}"),
        fields: vec![(field, message)],
    }
}

async fn create(State(state): State<AppState>, sess: Session, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let ty = form.text("type").unwrap_or_default();
    let variant = form.text("variant");
    let Some(t) = CredentialType::parse(&ty) else {
        return render_new(&state, &sess, None, None, None, None).await;
    };
    let schema = credential_types::schema(t);
    let Some(v) = variant.as_deref().and_then(|n| schema.variant(n)) else {
        return render_new(&state, &sess, Some(&ty), None, None, None).await;
    };
    let fields = match fields_from_form(v, &form) {
        Ok(f) => f,
        Err((f, m)) => {
            return render_new(
                &state,
                &sess,
                Some(&ty),
                variant.as_deref(),
                Some(&form),
                Some(form_error(f, m)),
            )
            .await;
        }
    };
    // The seed's two labels (system, owner team; stored as `system` and `owner_team` like the
    // API and CLI write them), then any others as `key=value` pairs.
    let mut labels = Map::new();
    for (field, key) in [("system", "system"), ("owner", "owner_team")] {
        if let Some(val) = form.text(field) {
            labels.insert(key.to_owned(), Json::String(val));
        }
    }
    if let Err(m) = parse_labels(form.text("more_labels").as_deref().unwrap_or(""), &mut labels) {
        let e = form_error("labels".into(), m);
        return render_new(&state, &sess, Some(&ty), variant.as_deref(), Some(&form), Some(e)).await;
    }
    let period = match form.text("rotation_period_days").map(|p| p.parse::<i64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            let e = form_error("rotation_period_days".into(), "must be a whole number of days".into());
            return render_new(&state, &sess, Some(&ty), variant.as_deref(), Some(&form), Some(e)).await;
        }
    };
    let workspace_id = match super::form_id(&form, "workspace", credvault_domain::WorkspaceId::parse) {
        Ok(w) => w,
        Err(e) => {
            return render_new(
                &state,
                &sess,
                Some(&ty),
                variant.as_deref(),
                Some(&form),
                Some(shown(e)),
            )
            .await;
        }
    };
    let req = CreateCredential {
        name: form.text("name").unwrap_or_default(),
        ty: ty.clone(),
        variant: variant.clone(),
        org_id: match workspace_id {
            Some(_) => None,
            None => Some(sess.actor().org_id.clone()),
        },
        workspace_id,
        environment: form.text("environment").unwrap_or_default(),
        labels: Some(labels),
        description: form.text("description"),
        expires_at: form.text("expires_at"),
        rotation_period_days: period,
        allowed_destinations: form.get("allowed_destinations").map(parse_destination_lines),
        fields,
    };
    match state.service.create_credential(&sess.ctx, sess.actor(), req).await {
        Ok(c) => Redirect::to(&format!("/credentials/{}?done=created", c.id)).into_response(),
        Err(e) => {
            let sh = shown(e);
            if super::redisplay(&sh) {
                render_new(&state, &sess, Some(&ty), variant.as_deref(), Some(&form), Some(sh)).await
            } else {
                super::shown_page(Some(&sess), sh)
            }
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DetailQuery {
    done: Option<String>,
}

async fn detail(
    State(state): State<AppState>,
    sess: Session,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let c = match state.service.get_credential(&sess.ctx, sess.actor(), &id).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(&sess), e),
    };
    let usage = state.service.credential_usage(&sess.ctx, sess.actor(), &id).await.ok();
    let reviews = state
        .service
        .list_reviews(&sess.ctx, sess.actor(), &id)
        .await
        .unwrap_or_default();
    let ws = c.workspace_id.as_deref();
    let can_edit = sess.may(Permission::CredentialCreate, ws);
    let can_delete = sess.may(Permission::CredentialDelete, ws);
    let can_review = sess.may(Permission::AuditRead, None);
    let can_attach = sess.may(Permission::CredentialAttach, ws);
    let can_admin = sess.may(Permission::OrgAdmin, None);
    let service_accounts = if can_admin && c.oauth.is_some() {
        state
            .service
            .list_principals(&sess.ctx, sess.actor(), None, None, Some(500))
            .await
            .map(|p| {
                p.items
                    .into_iter()
                    .filter(|p| p.kind == "service_account" && !p.disabled)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let base = format!("/credentials/{}", c.id);
    let conns = usage.as_ref().map(|u| u.connections.as_slice()).unwrap_or_default();
    let pipes = usage.as_ref().map(|u| u.pipelines.as_slice()).unwrap_or_default();
    let tests = state
        .service
        .list_connections(
            &sess.ctx,
            sess.actor(),
            credvault_core::connections::ConnectionFilter {
                credential_id: Some(c.id.clone()),
                ..Default::default()
            },
        )
        .await
        .map(|p| p.items)
        .unwrap_or_default();
    let body = html! {
        div.titlebar {
            h1 { (c.name) " " span class={"status " (c.status)} { (c.status) } }
        }
        (notice(q.done.as_deref()))
        @for w in &c.warnings { p.warning { (w) } }
        div.actions.bar {
            @if can_edit && c.status != CredentialStatus::PendingDeletion {
                a.button.primary #rotate href={(base) "/rotate"} { "Rotate…" }
                a.button #edit href={(base) "/edit"} { "Edit details" }
            }
            @if can_attach && !conns.is_empty() {
                (action_button(&sess, &format!("{base}/test"), "Test dependents", "", None))
            }
            @if can_edit {
                @if c.status == CredentialStatus::Disabled {
                    (action_button(&sess, &format!("{base}/enable"), "Enable", "", None))
                } @else if c.status != CredentialStatus::PendingDeletion {
                    (action_button(&sess, &format!("{base}/disable"), "Disable", "", Some("Disable this credential? Every resolve through it fails until it is enabled again.")))
                }
            }
            @if can_delete {
                @if c.status == CredentialStatus::PendingDeletion {
                    (action_button(&sess, &format!("{base}/restore"), "Restore", "", None))
                } @else {
                    (action_button(&sess, &format!("{base}/delete"), "Delete", "danger", Some("Delete this credential? It can be restored until the recovery window ends.")))
                }
            }
            @if can_review {
                (action_button(&sess, &format!("{base}/review"), "Mark reviewed", "", None))
            }
            @if can_admin && !conns.is_empty() {
                (action_button(&sess, &format!("{base}/detach-all"), "Detach from all connections", "danger",
                    Some("Detach this credential from every connection now (incident response)? Their resolves fail until another credential is attached.")))
            }
        }
        div.grid {
            section {
                h2 { "Details" }
                dl.meta {
                    dt { "ID" } dd { code { (c.id) } }
                    dt { "Type" } dd { (c.ty) @if let Some(v) = &c.variant { " · " (v) } }
                    dt { "Environment" } dd { span.env { (c.environment) } }
                    dt { "Scope" } dd { (c.workspace_id.as_deref().unwrap_or("organization-wide")) }
                    dt { "Labels" } dd { (labels_text(&c.labels)) }
                    @if let Some(d) = &c.description { dt { "Description" } dd { (d) } }
                    dt { "Expires" } dd { (when(c.expires_at.as_deref())) }
                    dt { "Rotation period" } dd { @match c.rotation_period_days { Some(d) => { (d) " days" }, None => "—" } }
                    dt { "Last used" } dd { (when(c.last_used_at.as_deref())) }
                    dt { "Created" } dd { (when(Some(&c.created_at))) " by " code { (c.created_by) } }
                    dt { "Secret fields" } dd { (c.secret_fields_set.join(", ")) " " span.muted { "(values are never shown)" } }
                    @if let Json::Object(m) = &c.fields { @for (k, v) in m { dt { code { (k) } } dd { (plain(v)) } } }
                }
                h2 #destinations { "Where the secret may go" }
                @if c.allowed_destinations.is_empty() && c.field_destinations.is_empty() {
                    p.empty { "Nowhere yet: only someone who may change this credential can wire it to a connection (which allows that connection's hosts)." }
                } @else {
                    ul.destinations {
                        @for d in &c.allowed_destinations { li { code { (d) } } }
                        @for d in &c.field_destinations { li { code { (d) } " " span.muted { "(named by the credential's own fields)" } } }
                    }
                }
                p.muted {
                    "A connection can use this credential only if every host it sends the secret to is listed here. "
                    @if can_edit { a href={(base) "/edit#in-allowed_destinations"} { "Change the list" } }
                }
                @if let Some(o) = &c.oauth {
                    h2 { "OAuth grant" }
                    p { span class={"health " (o.health)} { (o.health) } @if let Some(r) = &o.health_reason { " — " (r) } }
                    p.muted { "Authorized by " (o.authorized_by.as_deref().unwrap_or("nobody yet")) ", refreshed " (when(o.refreshed_at.as_deref())) }
                    @if can_edit {
                        form.inline #authorize method="post" action={(base) "/authorize"} {
                            (csrf_field(&sess))
                            @if can_admin && !service_accounts.is_empty() {
                                label.sr for="as" { "Authorize as" }
                                select #as name="as" {
                                    option value="" { "as me" }
                                    @for sa in &service_accounts { option value=(sa.id) { "as " (sa.name) } }
                                }
                            }
                            button type="submit" { (if o.authorized_by.is_some() { "Re-authorize" } else { "Authorize" }) }
                        }
                    }
                }
            }
            section {
                h2 { "Versions" }
                ol.timeline {
                    @for v in c.versions.iter().rev() {
                        li class=(v.state) {
                            strong { "v" (v.version) } " " span class={"state " (v.state)} { (v.state) }
                            span.muted { " · " (when(Some(&v.created_at))) }
                            @if let Some(t) = &v.last_resolved_at { span.muted.last-resolved { " · last resolved " (when(Some(t))) } }
                            @if can_edit && v.state == VersionState::Pending {
                                (action_button(&sess, &format!("{base}/versions/{}/promote", v.version), "Promote", "", None))
                            }
                            @if can_edit && (v.state == VersionState::Previous || v.state == VersionState::Pending) {
                                (action_button(&sess, &format!("{base}/versions/{}/revoke", v.version), "Revoke", "danger", Some("Revoke this version? Nothing can use it afterwards.")))
                            }
                        }
                    }
                }
                h2 { "Used by" }
                @if conns.is_empty() { p.empty { "No connection uses this credential yet." } }
                @else {
                    table.list {
                        thead { tr { th { "Connection" } th { "Environment" } th { "Last test" } } }
                        tbody { @for u in conns {
                            tr {
                                td { a href={"/connections/" (u.id)} { (u.name) }
                                    @if let Some(via) = &u.via_credential_id { " " span.muted { "through the role chain of " a href={"/credentials/" (via)} { code { (via) } } } } }
                                td { (u.environment.as_deref().unwrap_or("—")) }
                                td { @if let Some(t) = tests.iter().find(|t| t.id == u.id).and_then(|t| t.last_test.as_ref()) {
                                    span class=(if t.ok { "ok" } else { "fail" }) { (if t.ok { "ok" } else { "failed" }) }
                                    " " (t.latency_ms) " ms · " (when(Some(&t.at)))
                                    @if let Some(code) = &t.error_code { " · " code { (code) } }
                                } @else { "never" } }
                            }
                        } }
                    }
                }
                @if !pipes.is_empty() {
                    h3 { "Pipelines" }
                    ul { @for p in pipes { li { a href={"/pipelines/" (p.id)} { (p.name) } } } }
                }
                h2 { "Reviews" }
                @if reviews.is_empty() { p.empty { "Never reviewed." } }
                ul { @for r in &reviews { li { (r.decision) " by " code { (r.reviewer_id) } " · " (when(Some(&r.created_at))) } } }
            }
        }
    };
    Html(layout(&sess, &c.name, "credentials", body)).into_response()
}

/// A non-secret field value as text.
fn plain(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "—".into(),
        other => other.to_string(),
    }
}

async fn act(
    State(state): State<AppState>,
    sess: Session,
    Path((id, op)): Path<(String, String)>,
    form: Form,
) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let a = sess.actor();
    let base = format!("/credentials/{id}");
    let op_status = match op.as_str() {
        "disable" => Some((StatusOp::Disable, "disabled")),
        "enable" => Some((StatusOp::Enable, "enabled")),
        "delete" => Some((StatusOp::Delete, "deleted")),
        "restore" => Some((StatusOp::Restore, "restored")),
        _ => None,
    };
    let (r, done) = if let Some((st, done)) = op_status {
        (state.service.set_status(&sess.ctx, a, &id, st).await.map(|_| ()), done)
    } else {
        match op.as_str() {
            "review" => {
                let review = CreateReview {
                    decision: "keep".into(),
                    note: None,
                };
                (
                    state.service.create_review(&sess.ctx, a, &id, review).await.map(|_| ()),
                    "reviewed",
                )
            }
            "test" => {
                return match state
                    .service
                    .test_credential(&sess.ctx, a, &id, Default::default())
                    .await
                {
                    Ok(t) => test_results_page(&sess, &id, &t, None),
                    Err(e) => error_page(Some(&sess), e),
                };
            }
            "detach-all" => {
                return match state.service.detach_all(&sess.ctx, a, &id).await {
                    Ok(d) => {
                        let body = html! {
                            h1 { "Detached from every connection" }
                            p.notice role="status" #detached {
                                (d.detached.len()) " connections no longer use this credential; their resolves fail until another is attached."
                            }
                            @if !d.detached.is_empty() {
                                h2 { "Connections" }
                                ul { @for c in &d.detached { li { a href={"/connections/" (c.id)} { (c.name) } } } }
                            }
                            @if !d.affected_pipelines.is_empty() {
                                h2 { "Pipelines affected" }
                                ul { @for p in &d.affected_pipelines { li { a href={"/pipelines/" (p.id)} { (p.name) } } } }
                            }
                            p { "Next: disable or delete the credential here, and revoke the secret in the vendor's console." }
                            p { a href={"/credentials/" (id)} { "Back to the credential" } }
                        };
                        Html(layout(&sess, "Detached", "credentials", body)).into_response()
                    }
                    Err(e) => error_page(Some(&sess), e),
                };
            }
            "authorize" => {
                let as_principal = match super::form_id(&form, "as", credvault_domain::PrincipalId::parse) {
                    Ok(p) => p,
                    Err(e) => return error_page(Some(&sess), e),
                };
                return match state
                    .service
                    .oauth_authorize(
                        &sess.ctx,
                        a,
                        &id,
                        credvault_core::oauth::AuthorizeRequest { as_principal },
                    )
                    .await
                {
                    Ok(start) => Redirect::to(&start.authorization_url).into_response(),
                    Err(e) => error_page(Some(&sess), e),
                };
            }
            _ => return error_page(Some(&sess), credvault_core::CoreError::NotFound { what: "action" }),
        }
    };
    match r {
        Ok(()) => Redirect::to(&format!("{base}?done={done}")).into_response(),
        Err(e) => error_page(Some(&sess), e),
    }
}

/// Per-connection test results (also step 2 of the rotation wizard, with a promote button).
fn test_results_page(
    sess: &Session,
    id: &str,
    t: &credvault_core::testing::CredentialTest,
    promote: Option<i64>,
) -> Response {
    let base = format!("/credentials/{id}");
    let body = html! {
        @if let Some(n) = promote {
            (wizard_steps(2))
            h1 { "Version " (n) " staged — test results" }
        } @else {
            h1 { "Test results for version " (t.version) }
        }
        @if t.results.is_empty() { p.empty { "No connection uses this credential, so there was nothing to test." } }
        @else {
            p class=(if t.ok { "notice" } else { "error" }) role="status" #test-summary {
                @if t.ok { "Every connection works with version " (t.version) "." }
                @else { "Some connections failed with version " (t.version) "." }
            }
            table.list #test-results {
                thead { tr { th { "Connection" } th { "Result" } th { "Latency" } th { "Detail" } } }
                tbody { @for r in &t.results {
                    @let (ok, ms, err) = super::outcome(r);
                    tr {
                        td { a href={"/connections/" (r.connection_id)} { (r.connection_name) } }
                        td { span class=(if ok { "ok" } else { "fail" }) { (if ok { "ok" } else { "failed" }) } }
                        td { (ms) " ms" }
                        td { @if let Some((code, msg)) = err { code { (code) } " " (msg) } }
                    }
                } }
            }
        }
        @if let Some(n) = promote {
            div.actions {
                (action_button(sess, &format!("{base}/versions/{n}/promote"), "Promote version", "primary",
                    (!t.ok).then_some("Some connections failed with this version. Promote anyway?")))
                (action_button(sess, &format!("{base}/versions/{n}/revoke"), "Discard this version", "danger", None))
            }
        }
        p { a href=(base) { "Back to the credential" } }
    };
    Html(layout(sess, "Test results", "credentials", body)).into_response()
}

fn wizard_steps(at: u8) -> Markup {
    let steps = [
        "Enter the new secret",
        "Test dependents",
        "Promote",
        "Revoke the old version",
    ];
    html! {
        ol.steps aria-label="Rotation steps" {
            @for (i, s) in steps.iter().enumerate() {
                li aria-current=[(i as u8 + 1 == at).then_some("step")] class=[(((i as u8) + 1) < at).then_some("done")] { (s) }
            }
        }
    }
}

async fn edit_form(State(state): State<AppState>, sess: Session, Path(id): Path<String>) -> Response {
    render_edit(&state, &sess, &id, None, None).await
}

/// The details form: name, description, labels, expiry and rotation period (no secrets; a
/// new secret is a new version).
async fn render_edit(
    state: &AppState,
    sess: &Session,
    id: &str,
    form: Option<&Form>,
    err: Option<super::Shown>,
) -> Response {
    let c = match state.service.get_credential(&sess.ctx, sess.actor(), id).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(sess), e),
    };
    let status = err.as_ref().map_or(StatusCode::OK, |e| e.status);
    let field = |name: &str| {
        err.as_ref()
            .and_then(|e| {
                e.fields
                    .iter()
                    .find(|(f, _)| f == name || f.starts_with(&format!("{name}.")))
            })
            .map(|(f, m)| {
                if f == name {
                    m.clone()
                } else {
                    format!("{}: {m}", &f[name.len() + 1..])
                }
            })
    };
    // After a refusal the person's input is shown again, otherwise the stored values.
    let value = |k: &str, stored: Option<String>| match form {
        Some(f) => f.get(k).map(str::to_owned),
        None => stored,
    };
    let body = html! {
        h1 { "Edit " (c.name) }
        p.muted { "Only the details and where the secret may go: to change a secret, rotate." }
        @if let Some(e) = &err { p.error role="alert" #form-error { (e.message) } }
        form.card method="post" action={"/credentials/" (c.id) "/edit"} {
            (csrf_field(sess))
            (text_input("name", "Name", value("name", Some(c.name.clone())), true, field("name"), ""))
            (text_input("description", "Description", value("description", c.description.clone()), false, field("description"), ""))
            (labels_input("labels", "Labels", value("labels", Some(labels_lines(&c.labels))), field("labels"), "key=value, one per line"))
            (text_input("expires_at", "Expires at", value("expires_at", c.expires_at.clone()), false, field("expires_at"), "2027-01-31T00:00:00Z (empty: never)"))
            (text_input("rotation_period_days", "Rotation period (days)", value("rotation_period_days", c.rotation_period_days.map(|d| d.to_string())), false, field("rotation_period_days"), "empty: none"))
            (destinations_input(value("allowed_destinations", Some(destinations_lines(&c.allowed_destinations))), destinations_error(err.as_ref())))
            div.actions { button.primary type="submit" { "Save" } a href={"/credentials/" (c.id)} { "Cancel" } }
        }
    };
    (status, Html(layout(sess, "Edit credential", "credentials", body))).into_response()
}

async fn edit_save(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let c = match state.service.get_credential(&sess.ctx, sess.actor(), &id).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(&sess), e),
    };
    // Only what the person changed goes into the patch: a field the form did not send, or
    // sent unchanged, is left alone (and not reported as changed in the audit event).
    let mut patch = credvault_core::views::PatchCredential::default();
    if let Some(text) = form.get("labels") {
        let mut labels = Map::new();
        if let Err(m) = parse_labels(text, &mut labels) {
            return render_edit(&state, &sess, &id, Some(&form), Some(form_error("labels".into(), m))).await;
        }
        patch.labels = (labels != c.labels).then_some(labels);
    }
    if form.get("rotation_period_days").is_some() {
        let period = match form.text("rotation_period_days").map(|p| p.parse::<i64>()) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => {
                let e = form_error("rotation_period_days".into(), "must be a whole number of days".into());
                return render_edit(&state, &sess, &id, Some(&form), Some(e)).await;
            }
        };
        patch.rotation_period_days = (period != c.rotation_period_days).then_some(period);
    }
    if form.get("name").is_some() {
        let name = form.text("name").unwrap_or_default();
        patch.name = (name != c.name).then_some(name);
    }
    if form.get("description").is_some() {
        let d = form.text("description");
        patch.description = (d != c.description).then_some(d);
    }
    if form.get("expires_at").is_some() {
        let e = form.text("expires_at");
        // The form shows the stored value as it came; an unchanged one is not re-sent.
        patch.expires_at = (e != c.expires_at).then_some(e);
    }
    if let Some(text) = form.get("allowed_destinations") {
        let list = parse_destination_lines(text);
        patch.allowed_destinations = (list != c.allowed_destinations).then_some(list);
    }
    let unchanged = patch.name.is_none()
        && patch.allowed_destinations.is_none()
        && patch.labels.is_none()
        && patch.description.is_none()
        && patch.expires_at.is_none()
        && patch.rotation_period_days.is_none();
    if unchanged {
        return Redirect::to(&format!("/credentials/{}?done=unchanged", c.id)).into_response();
    }
    match state
        .service
        .patch_credential(&sess.ctx, sess.actor(), &id, patch)
        .await
    {
        Ok(c) => Redirect::to(&format!("/credentials/{}?done=updated", c.id)).into_response(),
        Err(e) => {
            let sh = shown(e);
            if super::redisplay(&sh) {
                render_edit(&state, &sess, &id, Some(&form), Some(sh)).await
            } else {
                super::shown_page(Some(&sess), sh)
            }
        }
    }
}

/// Whether a field holds a secret anywhere below it.
fn holds_secret(f: &FieldSchema) -> bool {
    f.secret
        || match f.kind {
            FieldKind::Object(sub) | FieldKind::List(sub) => sub.iter().any(holds_secret),
            _ => false,
        }
}

/// A secret-holding field that the current version has set: the rotation form offers to keep it.
fn keepable(f: &FieldSchema, c: &CredentialView) -> bool {
    holds_secret(f)
        && (c.fields.get(f.name).is_some()
            || c.secret_fields_set.iter().any(|p| {
                p.strip_prefix(f.name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
            }))
}

async fn rotate_form(State(state): State<AppState>, sess: Session, Path(id): Path<String>) -> Response {
    render_rotate(&state, &sess, &id, None).await
}

/// A credential and the schema of its variant (for the rotation form).
async fn credential_and_variant(
    state: &AppState,
    sess: &Session,
    id: &str,
) -> Result<(CredentialView, &'static VariantSchema), Response> {
    let c = state
        .service
        .get_credential(&sess.ctx, sess.actor(), id)
        .await
        .map_err(|e| error_page(Some(sess), e))?;
    let v = CredentialType::parse(&c.ty)
        .map(credential_types::schema)
        .and_then(|s| c.variant.as_deref().and_then(|n| s.variant(n)).or(s.variants.first()));
    match v {
        Some(v) => Ok((c, v)),
        None => Err(error_page(
            Some(sess),
            credvault_core::CoreError::NotFound {
                what: "credential type",
            },
        )),
    }
}

async fn render_rotate(state: &AppState, sess: &Session, id: &str, err: Option<super::Shown>) -> Response {
    let (c, v) = match credential_and_variant(state, sess, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let status = err.as_ref().map_or(StatusCode::OK, |e| e.status);
    let field_err = |name: &str| super::field_message(err.as_ref(), "fields", name);
    let body = html! {
        (wizard_steps(1))
        h1 { "Rotate " (c.name) }
        p { "Enter the new secret values. The new version is staged: connections keep using version "
            (c.current_version) " until you promote it after the tests." }
        @if let Some(e) = &err { p.error role="alert" #form-error { (e.message) } }
        form.card method="post" action={"/credentials/" (c.id) "/rotate"} autocomplete="off" {
            (csrf_field(sess))
            p.muted { "Non-secret fields left empty keep their current values. A secret left empty keeps its current value while “keep” is ticked; untick it to drop an optional one." }
            @for f in v.fields {
                (field_input(f, None, &field_err))
                @if keepable(f, &c) {
                    label.check {
                        input type="checkbox" name={"keep." (f.name)} value="1" checked;
                        " Keep the current " code { (f.name) } " when left empty"
                    }
                }
            }
            div.actions { button.primary type="submit" { "Stage and test" } a href={"/credentials/" (c.id)} { "Cancel" } }
        }
    };
    (status, Html(layout(sess, "Rotate", "credentials", body))).into_response()
}

async fn rotate_stage(State(state): State<AppState>, sess: Session, Path(id): Path<String>, form: Form) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    let (c, v) = match credential_and_variant(&state, &sess, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut fields = match fields_from_form(v, &form) {
        Ok(f) => f,
        Err((f, m)) => return render_rotate(&state, &sess, &id, Some(form_error(f, m))).await,
    };
    // Secrets left empty are carried over by the server when "keep" is ticked; non-secret
    // fields left empty keep their current values.
    let mut keep = Vec::new();
    if let Json::Object(new) = &mut fields {
        for f in v.fields {
            if keepable(f, &c) && !new.contains_key(f.name) && form.get(&format!("keep.{}", f.name)) == Some("1") {
                keep.push(f.name.to_owned());
            }
        }
        if let Json::Object(cur) = &c.fields {
            for f in v.fields.iter().filter(|f| !holds_secret(f)) {
                if let Some(val) = cur.get(f.name) {
                    new.entry(f.name.to_owned()).or_insert_with(|| val.clone());
                }
            }
        }
    }
    let staged = match state
        .service
        .create_version(
            &sess.ctx,
            sess.actor(),
            &id,
            CreateVersion {
                fields,
                mode: VersionMode::Stage,
                keep,
            },
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let sh = shown(e);
            return if super::redisplay(&sh) {
                render_rotate(&state, &sess, &id, Some(sh)).await
            } else {
                super::shown_page(Some(&sess), sh)
            };
        }
    };
    let req = credvault_core::testing::TestRequest {
        version: Some(staged.version),
    };
    match state.service.test_credential(&sess.ctx, sess.actor(), &id, req).await {
        Ok(t) => test_results_page(&sess, &id, &t, Some(staged.version)),
        Err(e) => {
            // Nothing to test (or not allowed to test): still offer promotion.
            let sh = shown(e);
            let base = format!("/credentials/{id}");
            let n = staged.version;
            let body = html! {
                (wizard_steps(2))
                h1 { "Version " (n) " staged" }
                p.warning { "The dependents were not tested: " (sh.message) }
                div.actions {
                    (action_button(&sess, &format!("{base}/versions/{n}/promote"), "Promote version", "primary", None))
                    (action_button(&sess, &format!("{base}/versions/{n}/revoke"), "Discard this version", "danger", None))
                }
            };
            Html(layout(&sess, "Staged", "credentials", body)).into_response()
        }
    }
}

async fn promote(
    State(state): State<AppState>,
    sess: Session,
    Path((id, n)): Path<(String, i64)>,
    form: Form,
) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    // The promotion answers with the credential as it now is: no second read.
    let c = match state.service.promote_version(&sess.ctx, sess.actor(), &id, n).await {
        Ok(c) => c,
        Err(e) => return error_page(Some(&sess), e),
    };
    let base = format!("/credentials/{id}");
    let previous: Vec<(i64, Option<String>)> = c
        .versions
        .iter()
        .filter(|v| v.state == VersionState::Previous)
        .map(|v| (v.version, v.last_resolved_at.clone()))
        .collect();
    let body = html! {
        (wizard_steps(4))
        h1 { "Version " (n) " is live" }
        p.notice role="status" { "Promoted: resolves now return version " (n) "." }
        @if previous.is_empty() {
            p { "No older version is left to revoke." }
        } @else {
            p { "Once every pipeline has picked up the new secret, revoke the old version so it cannot be used again. "
                "Below: when a resolve last returned each old version; the credential's page always shows the latest." }
            ul.plain #old-versions {
                @for (old, used) in &previous {
                    li {
                        "Version " (old) ": "
                        @match used { Some(t) => { "last resolved " (when(Some(t))) }, None => span.muted { "never resolved" } }
                        " "
                        (action_button(&sess, &format!("{base}/versions/{old}/revoke"), &format!("Revoke version {old}"), "danger", None))
                    }
                }
            }
        }
        p { a href=(base) { "Done — back to the credential" } }
    };
    Html(layout(&sess, "Promoted", "credentials", body)).into_response()
}

async fn revoke(
    State(state): State<AppState>,
    sess: Session,
    Path((id, n)): Path<(String, i64)>,
    form: Form,
) -> Response {
    if let Err(r) = check_csrf(&state, &sess, &form).await {
        return r;
    }
    match state.service.revoke_version(&sess.ctx, sess.actor(), &id, n).await {
        Ok(_) => Redirect::to(&format!("/credentials/{id}?done=revoked")).into_response(),
        Err(e) => error_page(Some(&sess), e),
    }
}
