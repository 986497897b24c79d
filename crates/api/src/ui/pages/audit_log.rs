//! The audit log with its filters, and chain verification.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use credvault_core::views::AuditFilter;

use crate::AppState;
use crate::ui::{Form, Html, Session, check_csrf, csrf_field, error_page, layout, shown, when};

use super::{Q, more, nonempty};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit))
        .route("/audit/verify", post(verify))
}

async fn audit(State(state): State<AppState>, sess: Session, Query(q): Query<Q>) -> Response {
    render_audit(&state, &sess, q, None).await
}

async fn render_audit(
    state: &AppState,
    sess: &Session,
    q: Q,
    verified: Option<Result<credvault_core::audit::Verification, crate::ui::Shown>>,
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
