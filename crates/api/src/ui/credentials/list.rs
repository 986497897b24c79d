//! The credential list: search, filters, report views, paging.

use super::*;

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct ListQuery {
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

pub(super) fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// IDs in the first column of a report (used for the "unused" and "rotation due" filters).
pub(super) async fn report_ids(
    state: &AppState,
    sess: &Session,
    kind: ReportKind,
) -> Result<BTreeSet<String>, Response> {
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
pub(super) const SHOW_WANT: usize = 50;
pub(super) const SHOW_MAX_PAGES: usize = 20;

pub(super) async fn list(State(state): State<AppState>, sess: Session, Query(q): Query<ListQuery>) -> Response {
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
pub(super) fn next_link(q: &ListQuery, cursor: &str) -> String {
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
