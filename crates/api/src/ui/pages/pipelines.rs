//! Pipelines: the list and a pipeline's page.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;

use credvault_core::connections::PipelineFilter;

use crate::AppState;
use crate::ui::{Html, Session, error_page, layout, when};

use super::{Q, nonempty};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/pipelines", get(pipelines))
        .route("/pipelines/{id}", get(pipeline))
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
