//! The review reports (HTML and CSV).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;

use credvault_core::{ReportKind, ReportRequest};

use crate::AppState;
use crate::ui::{Html, Session, error_page, layout, when};

use super::nonempty;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/review", get(review))
        .route("/review/{file}", get(review_csv))
}

const REPORTS: [(&str, &str, &str); 5] = [
    (
        "attachments",
        "Attachments",
        "Which connection uses which credential, by whom it was attached.",
    ),
    ("unused", "Unused", "Credentials nothing has resolved for a while."),
    (
        "rotation-due",
        "Rotation due",
        "Credentials past their rotation period, with OAuth grant health.",
    ),
    (
        "overrides",
        "Environment overrides",
        "Connections using a credential from another environment, and why.",
    ),
    ("unreviewed", "Unreviewed", "Credentials nobody has reviewed recently."),
];

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ReviewQuery {
    authorized_by: Option<String>,
}

async fn review(State(state): State<AppState>, sess: Session, Query(q): Query<ReviewQuery>) -> Response {
    if !sess.nav_audit() {
        // Without audit.read every report would be refused (and each refusal audited).
        let body = html! { h1 { "Not allowed" } p.error role="alert" { "The review reports need the audit.read permission (auditors and admins)." } };
        return (
            StatusCode::FORBIDDEN,
            Html(layout(&sess, "Not allowed", "review", body)),
        )
            .into_response();
    }
    let mut counts = Vec::new();
    for (k, _, _) in REPORTS {
        let Some(kind) = ReportKind::parse(k) else { continue };
        let req = ReportRequest {
            kind,
            org_id: None,
            workspace_id: None,
            days: None,
        };
        let n = match state.service.report(&sess.ctx, sess.actor(), req).await {
            Ok(mut s) => {
                let mut n = 0usize;
                while let Some(Ok(_)) = s.rows.recv().await {
                    n += 1;
                }
                Some(n)
            }
            Err(_) => None,
        };
        counts.push(n);
    }
    let gf = credvault_core::oauth::GrantFilter {
        authorized_by: nonempty(q.authorized_by.as_deref()),
        ..Default::default()
    };
    let grants = state
        .service
        .list_grants(&sess.ctx, sess.actor(), gf)
        .await
        .map(|p| p.items);
    let body = html! {
        h1 { "Review" }
        p { "The access-review reports. Download any as CSV for your records; mark credentials reviewed from their page." }
        table.list #reports {
            thead { tr { th { "Report" } th { "What it lists" } th { "Rows" } th { span.sr { "Download" } } } }
            tbody { @for ((k, title, what), n) in REPORTS.iter().zip(&counts) { tr {
                td { strong { (title) } } td { (what) }
                td { @match n { Some(n) => (n), None => span.muted { "not allowed" } } }
                td { @if n.is_some() { a.button href={"/review/" (k) ".csv"} download id={"csv-" (k)} { "Download CSV" } } }
            } } }
        }
        h2 { "OAuth grants" }
        p { "Who authorized each OAuth grant, and whether it still refreshes. Confirm the people still match headcount and roles; "
            "re-authorize a leaver's grants under a service account from the credential's page." }
        form.filters method="get" action="/review" {
            label { "Authorized by" input type="text" name="authorized_by" value=[q.authorized_by.as_deref()] placeholder="usr_… or sa_…" size="30"; }
            button type="submit" { "Filter" }
        }
        @match &grants {
            Ok(g) if g.is_empty() => p.empty { "No OAuth grants." },
            Ok(g) => table.list #grants {
                thead { tr { th { "Credential" } th { "Authorized by" } th { "Their roles now" } th { "Health" } th { "Refreshed" } } }
                tbody { @for x in g { tr {
                    td { a href={"/credentials/" (x.credential_id)} { (x.name) } }
                    td {
                        @match (&x.authorized_by, &x.authorized_by_name) {
                            (Some(id), Some(name)) => { (name) " " code.small { (id) } }
                            (Some(id), None) => code { (id) },
                            _ => span.muted { "nobody yet" },
                        }
                        @if x.authorizer_active == Some(false) {
                            " " span.status.disabled { "left: disabled or offboarded" }
                        }
                    }
                    td { @if x.authorizer_roles.is_empty() { @if x.authorized_by.is_some() { span.muted { "none" } } } @else { (x.authorizer_roles.join(", ")) } }
                    td { span class={"health " (x.health)} { (x.health) } @if let Some(r) = &x.health_reason { " — " (r) } }
                    td { (when(x.refreshed_at.as_deref())) }
                } } }
            },
            Err(_) => p.muted { "Listing grants needs the audit.read permission." },
        }
    };
    Html(layout(&sess, "Review", "review", body)).into_response()
}

async fn review_csv(State(state): State<AppState>, sess: Session, Path(file): Path<String>) -> Response {
    let Some(kind) = file.strip_suffix(".csv").and_then(ReportKind::parse) else {
        return error_page(Some(&sess), credvault_core::CoreError::NotFound { what: "report" });
    };
    let req = ReportRequest {
        kind,
        org_id: None,
        workspace_id: None,
        days: None,
    };
    match state.service.report(&sess.ctx, sess.actor(), req).await {
        Ok(stream) => crate::routes::connections::report_response(stream, true),
        Err(e) => error_page(Some(&sess), e),
    }
}
