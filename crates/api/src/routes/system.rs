//! Health, readiness, metrics, the OpenAPI document, the landing page, `whoami`, credential
//! types and the audit journal.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use credvault_domain::problems::Code;

use credvault_core::views::AuditFilter;

use super::Table;
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Ctx, Params};
use crate::openapi::RouteDoc;

pub(crate) fn routes(t: Table) -> Table {
    let public = |operation_id, summary| RouteDoc {
        operation_id,
        summary,
        tag: "system",
        success: 200,
        ..Default::default()
    };
    let authed = |operation_id, summary, permission| RouteDoc {
        operation_id,
        summary,
        tag: "system",
        success: 200,
        auth: true,
        permission,
        ..Default::default()
    };
    t.add(
        "get",
        "/healthz",
        get(healthz),
        public("healthz", "Liveness: the process answers"),
    )
    .add(
        "get",
        "/readyz",
        get(readyz),
        RouteDoc {
            other_responses: &[(503, "application/json", "the store does not answer")],
            ..public(
                "readyz",
                "Readiness: the store answers (details for instance admins: /v1/audit/sinks)",
            )
        },
    )
    .add(
        "get",
        "/metrics",
        get(metrics),
        RouteDoc {
            produces: &["text/plain; version=0.0.4"],
            ..public("metrics", "Prometheus metrics")
        },
    )
    .add(
        "get",
        "/v1/openapi.json",
        get(openapi),
        public("openapi", "This document"),
    )
    .add(
        "get",
        "/v1/ping",
        get(ping),
        authed(
            "ping",
            "Authenticated no-op (the benchmark's floor: routing, auth, JSON)",
            "",
        ),
    )
    .add(
        "get",
        "/v1/me",
        get(me),
        authed("whoami", "The calling principal and its role bindings", ""),
    )
    .add(
        "get",
        "/v1/credential-types",
        get(credential_types),
        RouteDoc {
            query: &["org_id"],
            ..authed(
                "listCredentialTypes",
                "Credential types enabled for an organization, with their field schemas",
                "",
            )
        },
    )
    .add(
        "get",
        "/v1/oauth/callback",
        get(oauth_callback),
        RouteDoc {
            tag: "oauth",
            produces: &["text/html; charset=utf-8"],
            other_responses: &[(
                400,
                "text/html; charset=utf-8",
                "the authorization failed (unknown, used or expired state; the provider refused; the token exchange failed)",
            )],
            query: &[
                "code",
                "state",
                "error",
                "error_description",
                "iss",
                "scope",
                "session_state",
            ],
            ..public(
                "oauthCallback",
                "Where the OAuth provider sends the browser back (a small HTML page; no tokens in it)",
            )
        },
    )
    .add(
        "get",
        "/v1/oauth/grants",
        get(oauth_grants),
        RouteDoc {
            tag: "oauth",
            query: &["org_id", "authorized_by", "health"],
            ..authed(
                "listOAuthGrants",
                "OAuth grants with who authorized them and their health",
                "metadata.read",
            )
        },
    )
    .add(
        "get",
        "/v1/audit",
        get(audit),
        RouteDoc {
            tag: "audit",
            query: &[
                "org_id",
                "workspace_id",
                "action",
                "actor_id",
                "target_id",
                "outcome",
                "since",
                "until",
                "cursor",
                "after_seq",
                "limit",
            ],
            ..authed("listAuditEvents", "Query the audit journal", "audit.read")
        },
    )
    .add(
        "get",
        "/v1/audit/sinks",
        get(audit_sinks),
        RouteDoc {
            tag: "audit",
            ..authed(
                "auditSinks",
                "Health of each audit sink (backlog, last delivery error, whether it blocks); instance admins only",
                "instance admin",
            )
        },
    )
    .add(
        "get",
        "/v1/audit/verify",
        get(audit_verify),
        RouteDoc {
            tag: "audit",
            query: &["org_id"],
            ..authed(
                "verifyAudit",
                "Verify the hash chain of an organization's audit journal",
                "audit.read",
            )
        },
    )
}

async fn oauth_callback(State(s): State<AppState>, Ctx(ctx): Ctx, p: Params) -> Response {
    let get = |k: &str| p.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let outcome = s
        .service
        .oauth_callback(&ctx, get("code"), get("state"), get("error"))
        .await;
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let title = if outcome.ok {
        "Authorization complete"
    } else {
        "Authorization failed"
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} — credvault</title></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto\"><h1>{title}</h1><p>{}</p></body></html>",
        esc(&outcome.message)
    );
    let status = if outcome.ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut r = (status, Html(page)).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    r
}

async fn oauth_grants(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(actor): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["org_id", "authorized_by", "health"])?;
    let f = credvault_core::oauth::GrantFilter {
        org_id: p.get("org_id")?,
        authorized_by: p.get("authorized_by")?,
        health: p.get("health")?,
    };
    Ok(axum::Json(s.service.list_grants(&ctx, &actor, f).await?))
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready or not, and nothing more: sink details (errors may name a webhook URL) are for
/// instance admins at `/v1/audit/sinks`.
async fn readyz(State(s): State<AppState>) -> Response {
    match s.service.ping_store().await {
        Ok(()) => {
            let blocking = s.service.audit_gate().snapshot().iter().any(|(_, h)| h.blocking);
            let status = if blocking { "degraded" } else { "ready" };
            axum::Json(serde_json::json!({"status": status})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness probe failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let ready = s.service.ping_store().await.is_ok();
    let mut text = s.metrics.render(ready);
    let c = s.service.resolve_cache_stats();
    for (name, help, n) in [
        (
            "hits",
            "Resolves whose reads were replayed from memory (SQLite).",
            c.hits,
        ),
        (
            "misses",
            "Resolves whose reads ran on the store's writer (SQLite).",
            c.misses,
        ),
        (
            "stale",
            "Replayed resolves run again because the state changed before their record was written.",
            c.stale,
        ),
    ] {
        text.push_str(&format!(
            "# HELP credvault_resolve_cache_{name}_total {help}\n# TYPE credvault_resolve_cache_{name}_total counter\ncredvault_resolve_cache_{name}_total {n}\n"
        ));
    }
    let sinks = s.service.audit_gate().snapshot();
    if !sinks.is_empty() {
        text.push_str("# HELP credvault_audit_sink_backlog Audit events not yet delivered to a sink.\n# TYPE credvault_audit_sink_backlog gauge\n");
        for (name, h) in &sinks {
            text.push_str(&format!(
                "credvault_audit_sink_backlog{{sink=\"{name}\"}} {}\n",
                h.backlog
            ));
        }
        text.push_str("# HELP credvault_audit_sink_delivered_total Audit events delivered to a sink since start.\n# TYPE credvault_audit_sink_delivered_total counter\n");
        for (name, h) in &sinks {
            text.push_str(&format!(
                "credvault_audit_sink_delivered_total{{sink=\"{name}\"}} {}\n",
                h.delivered
            ));
        }
        text.push_str("# HELP credvault_audit_sink_up Whether the last delivery attempt to a sink succeeded.\n# TYPE credvault_audit_sink_up gauge\n");
        for (name, h) in &sinks {
            text.push_str(&format!(
                "credvault_audit_sink_up{{sink=\"{name}\"}} {}\n",
                u8::from(h.last_error.is_none())
            ));
        }
        text.push_str("# HELP credvault_audit_sink_blocking Whether a sink blocks secret-bearing operations.\n# TYPE credvault_audit_sink_blocking gauge\n");
        for (name, h) in &sinks {
            text.push_str(&format!(
                "credvault_audit_sink_blocking{{sink=\"{name}\"}} {}\n",
                u8::from(h.blocking)
            ));
        }
    }
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn openapi(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(s.openapi.as_ref().clone())
}

async fn ping(Auth(_): Auth) -> impl IntoResponse {
    axum::Json(serde_json::json!({"ok": true}))
}

async fn me(State(s): State<AppState>, Auth(actor): Auth) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.whoami(&actor).await?))
}

async fn credential_types(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(actor): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["org_id"])?;
    let org = p.get("org_id")?.unwrap_or_else(|| actor.org_id.to_string());
    let settings = s.service.get_settings(&ctx, &actor, &org).await?;
    Ok(axum::Json(serde_json::json!({
        "items": credvault_domain::credential_types::types_json(&settings.enabled_types)
    })))
}

async fn audit(State(s): State<AppState>, Ctx(ctx): Ctx, Auth(actor): Auth, p: Params) -> ApiResult<impl IntoResponse> {
    p.allow(&[
        "org_id",
        "workspace_id",
        "action",
        "actor_id",
        "target_id",
        "outcome",
        "since",
        "until",
        "cursor",
        "after_seq",
        "limit",
    ])?;
    let f = AuditFilter {
        org_id: p.get("org_id")?,
        workspace_id: p.get("workspace_id")?,
        action: p.get("action")?,
        actor_id: p.get("actor_id")?,
        target_id: p.get("target_id")?,
        outcome: p.get("outcome")?,
        since: p.get("since")?,
        until: p.get("until")?,
        cursor: p.get("cursor")?,
        after_seq: match p.get("after_seq")? {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                crate::error::ApiError::bad_request(Code::InvalidParameter, "after_seq must be a non-negative integer")
                    .field("after_seq")
            })?),
        },
        limit: p.usize("limit")?,
    };
    Ok(axum::Json(s.service.list_audit(&ctx, &actor, f).await?))
}

async fn audit_sinks(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(actor): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&[])?;
    let sinks = s.service.audit_sinks(&ctx, &actor).await?;
    let blocking = sinks.values().any(|h| h["blocking"] == true);
    let status = if blocking { "degraded" } else { "ready" };
    Ok(axum::Json(serde_json::json!({"status": status, "audit_sinks": sinks})))
}

async fn audit_verify(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(actor): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["org_id"])?;
    let org = p.get("org_id")?;
    Ok(axum::Json(s.service.verify_audit(&ctx, &actor, org.as_deref()).await?))
}
