//! Editing a credential's metadata.

use super::*;

pub(super) async fn edit_form(State(state): State<AppState>, sess: Session, Path(id): Path<String>) -> Response {
    render_edit(&state, &sess, &id, None, None).await
}

/// The details form: name, description, labels, expiry and rotation period (no secrets; a
/// new secret is a new version).
pub(super) async fn render_edit(
    state: &AppState,
    sess: &Session,
    id: &str,
    form: Option<&Form>,
    err: Option<crate::ui::Shown>,
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

pub(super) async fn edit_save(
    State(state): State<AppState>,
    sess: Session,
    Path(id): Path<String>,
    form: Form,
) -> Response {
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
            if crate::ui::redisplay(&sh) {
                render_edit(&state, &sess, &id, Some(&form), Some(sh)).await
            } else {
                crate::ui::shown_page(Some(&sess), sh)
            }
        }
    }
}
