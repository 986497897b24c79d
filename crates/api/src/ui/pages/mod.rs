//! The screens besides credentials and sign-in, one file per screen group: connections,
//! pipelines, the review reports, the audit log and the admin screens.

mod admin;
mod audit_log;
mod connections;
mod pipelines;
mod review;

use axum::Router;

use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .merge(connections::routes())
        .merge(pipelines::routes())
        .merge(review::routes())
        .merge(audit_log::routes())
        .merge(admin::routes())
}

pub(super) fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub(super) struct Q {
    pub(super) kind: Option<String>,
    pub(super) environment: Option<String>,
    pub(super) done: Option<String>,
    pub(super) cursor: Option<String>,
    pub(super) action: Option<String>,
    pub(super) outcome: Option<String>,
    pub(super) actor_id: Option<String>,
    pub(super) target_id: Option<String>,
}

/// `path` with the same filters and the next page's cursor.
pub(super) fn more(q: &Q, path: &str, cursor: &str) -> String {
    let mut u = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("kind", &q.kind),
        ("environment", &q.environment),
        ("action", &q.action),
        ("outcome", &q.outcome),
        ("actor_id", &q.actor_id),
        ("target_id", &q.target_id),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            u.append_pair(k, v);
        }
    }
    u.append_pair("cursor", cursor);
    format!("{path}?{}", u.finish())
}
