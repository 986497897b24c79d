//! The admin screens: members, role bindings, passwords, offboarding, service-account tokens, settings.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use credvault_domain::problems::Code;
use maud::html;

use credvault_core::SettingsPatch;
use credvault_core::views::CreateToken;
use credvault_domain::credential_types::CredentialType;
use credvault_domain::roles::{Permission, Role, RolePolicy};

use crate::AppState;
use crate::ui::{Form, Html, Session, action_button, check_csrf, csrf_field, error_page, layout, notice, shown, when};

use super::Q;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
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
    problem: Option<crate::ui::Shown>,
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
    let workspaces = crate::ui::workspaces(state, sess).await;
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
                    (crate::ui::once_field())
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
            if crate::ui::redisplay(&sh) {
                render_admin(state, sess, None, None, Some(sh)).await
            } else {
                crate::ui::shown_page(Some(sess), sh)
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
    let ids = crate::ui::form_id(&form, "scope", credvault_domain::WorkspaceId::parse).and_then(|w| {
        crate::ui::form_id_req(&form, "principal_id", credvault_domain::PrincipalId::parse).map(|p| (w, p))
    });
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
    let transfer_to = match crate::ui::form_id(&form, "transfer_to", credvault_domain::PrincipalId::parse) {
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
    let principal_id = match crate::ui::form_id_req(&form, "principal_id", credvault_domain::PrincipalId::parse) {
        Ok(p) => p,
        Err(e) => return admin_done(&state, &sess, Err(e), "").await,
    };
    if !crate::ui::first_submission(&state, &sess, &form) {
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
            crate::ui::forget_submission(&state, &sess, &form);
            error_page(Some(&sess), e)
        }
    }
}
