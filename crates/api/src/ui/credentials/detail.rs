//! A credential's page and its actions (disable, enable, delete, restore, review, detach-all, OAuth), Test results.

use super::*;

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct DetailQuery {
    done: Option<String>,
}

pub(super) async fn detail(
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
                        @if o.authorized_by.is_some() {
                            form.inline #revoke-grant method="post" action={(base) "/revoke-grant"} {
                                (csrf_field(&sess))
                                label for="revoke-reason" { "Reason" }
                                input #revoke-reason type="text" name="reason" required maxlength="1024" placeholder="e.g. offboarding";
                                button.danger type="submit" { "Revoke grant" }
                            }
                            p.muted { "Revokes the refresh token at the provider and removes the tokens; the credential needs a new authorization." }
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
pub(super) fn plain(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "—".into(),
        other => other.to_string(),
    }
}

pub(super) async fn act(
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
            "revoke-grant" => {
                let reason = form.text("reason").unwrap_or_default();
                (
                    state
                        .service
                        .revoke_grant(&sess.ctx, a, &id, credvault_core::oauth::RevokeGrantRequest { reason })
                        .await
                        .map(|_| ()),
                    "grant-revoked",
                )
            }
            "authorize" => {
                let as_principal = match crate::ui::form_id(&form, "as", credvault_domain::PrincipalId::parse) {
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
pub(super) fn test_results_page(
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
                    @let (ok, ms, err) = crate::ui::outcome(r);
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
