//! The rotation wizard: new version (with kept secrets), test, promote; revoke.

use super::*;

pub(super) fn wizard_steps(at: u8) -> Markup {
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

/// Whether a field holds a secret anywhere below it.
pub(super) fn holds_secret(f: &FieldSchema) -> bool {
    f.secret
        || match f.kind {
            FieldKind::Object(sub) | FieldKind::List(sub) => sub.iter().any(holds_secret),
            _ => false,
        }
}

/// A secret-holding field that the current version has set: the rotation form offers to keep it.
pub(super) fn keepable(f: &FieldSchema, c: &CredentialView) -> bool {
    holds_secret(f)
        && (c.fields.get(f.name).is_some()
            || c.secret_fields_set.iter().any(|p| {
                p.strip_prefix(f.name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
            }))
}

pub(super) async fn rotate_form(State(state): State<AppState>, sess: Session, Path(id): Path<String>) -> Response {
    render_rotate(&state, &sess, &id, None).await
}

/// A credential and the schema of its variant (for the rotation form).
pub(super) async fn credential_and_variant(
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

pub(super) async fn render_rotate(
    state: &AppState,
    sess: &Session,
    id: &str,
    err: Option<crate::ui::Shown>,
) -> Response {
    let (c, v) = match credential_and_variant(state, sess, id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let status = err.as_ref().map_or(StatusCode::OK, |e| e.status);
    let field_err = |name: &str| crate::ui::field_message(err.as_ref(), "fields", name);
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

pub(super) async fn rotate_stage(
    State(state): State<AppState>,
    sess: Session,
    Path(id): Path<String>,
    form: Form,
) -> Response {
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
            return if crate::ui::redisplay(&sh) {
                render_rotate(&state, &sess, &id, Some(sh)).await
            } else {
                crate::ui::shown_page(Some(&sess), sh)
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

pub(super) async fn promote(
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

pub(super) async fn revoke(
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
