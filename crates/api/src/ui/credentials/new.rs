//! New credential: the type-driven form and create.

use super::*;

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct NewQuery {
    #[serde(rename = "type")]
    ty: Option<String>,
    variant: Option<String>,
}

pub(super) async fn new_form(State(state): State<AppState>, sess: Session, Query(q): Query<NewQuery>) -> Response {
    render_new(&state, &sess, q.ty.as_deref(), q.variant.as_deref(), None, None).await
}

/// Renders the New credential flow: type picker, variant picker, then the form.
pub(super) async fn render_new(
    state: &AppState,
    sess: &Session,
    ty: Option<&str>,
    variant: Option<&str>,
    form: Option<&Form>,
    err: Option<crate::ui::Shown>,
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
    let workspaces = crate::ui::workspaces(state, sess).await;
    let status = err.as_ref().map_or(StatusCode::OK, |e| e.status);
    let field_err = |name: &str| crate::ui::field_message(err.as_ref(), "fields", name);
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

pub(super) fn text_input(
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
pub(super) const LIST_ROWS: usize = 3;

/// One input for one schema field. Secret fields are password inputs and never pre-filled.
/// `errs` finds the message for an input name without its `f.` prefix.
pub(super) fn field_input(f: &FieldSchema, form: Option<&Form>, errs: &dyn Fn(&str) -> Option<String>) -> Markup {
    input_for(f, &format!("f.{}", f.name), form, errs, false, false)
}

pub(super) fn input_for(
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
pub(super) fn fields_from_form(v: &VariantSchema, form: &Form) -> Result<Json, (String, String)> {
    let mut out = Map::new();
    for f in v.fields {
        if let Some(val) = value_for(f, &format!("f.{}", f.name), form)? {
            out.insert(f.name.to_owned(), val);
        }
    }
    Ok(Json::Object(out))
}

pub(super) fn value_for(f: &FieldSchema, name: &str, form: &Form) -> Result<Option<Json>, (String, String)> {
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

pub(super) fn form_error(field: String, message: String) -> crate::ui::Shown {
    crate::ui::Shown {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: Code::InvalidField,
        message: format!("{field}: {message}"),
        fields: vec![(field, message)],
    }
}

pub(super) async fn create(State(state): State<AppState>, sess: Session, form: Form) -> Response {
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
    let workspace_id = match crate::ui::form_id(&form, "workspace", credvault_domain::WorkspaceId::parse) {
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
            if crate::ui::redisplay(&sh) {
                render_new(&state, &sess, Some(&ty), variant.as_deref(), Some(&form), Some(sh)).await
            } else {
                crate::ui::shown_page(Some(&sess), sh)
            }
        }
    }
}
