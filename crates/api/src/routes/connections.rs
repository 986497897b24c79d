//! Connections, pipelines, usage, detach-all, resolve, reviews and reports.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use credvault_domain::problems::Code;
use serde_json::Value;

use credvault_core::connections::{
    AttachCredential, ConnectionFilter, CreateConnection, CreatePipeline, PatchConnection, PatchPipeline,
    PipelineFilter,
};
use credvault_core::{CreateReview, ReportKind, ReportRequest, ResolveRequest};

use super::Table;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Ctx, Json, MaybeJson, Params, Path};
use crate::openapi::RouteDoc;

pub(crate) fn routes(t: Table) -> Table {
    let doc = |operation_id, summary, tag, permission, success| RouteDoc {
        operation_id,
        summary,
        tag,
        permission,
        success,
        auth: true,
        ..Default::default()
    };
    t.add("get", "/v1/connector-kinds", get(kinds), doc("listConnectorKinds", "Connector kinds, their config fields and the credential types they accept", "connections", "", 200))
        .add("post", "/v1/connections", post(create_connection), RouteDoc {
            body: Some("CreateConnection"),
            ..doc("createConnection", "Create a connection (optionally attaching a credential under the attachment rules)", "connections", "credential.attach", 201)
        })
        .add("get", "/v1/connections", get(list_connections), RouteDoc {
            query: &["org_id", "workspace_id", "kind", "environment", "credential_id", "cursor", "limit"],
            ..doc("listConnections", "List connections", "connections", "metadata.read", 200)
        })
        .add("get", "/v1/connections/{id}", get(get_connection), doc("getConnection", "One connection", "connections", "metadata.read", 200))
        .add("patch", "/v1/connections/{id}", patch(patch_connection), RouteDoc {
            body: Some("PatchConnection"),
            ..doc("patchConnection", "Change name, config or description", "connections", "credential.attach", 200)
        })
        .add("delete", "/v1/connections/{id}", delete(delete_connection), doc("deleteConnection", "Delete a connection no pipeline uses", "connections", "credential.attach", 200))
        .add("put", "/v1/connections/{id}/credential", put(attach), RouteDoc {
            body: Some("AttachCredential"),
            ..doc("attachCredential", "Attach a credential (type, visibility, status and environment are checked)", "connections", "credential.attach", 200)
        })
        .add("delete", "/v1/connections/{id}/credential", delete(detach), doc("detachCredential", "Detach the credential", "connections", "credential.attach", 200))
        .add("post", "/v1/connections/{id}/test", post(test_connection), RouteDoc {
            body: Some("TestRequest"),
            ..doc("testConnection", "Test connection: connect to the target with the credential (or a given version)", "connections", "credential.attach", 200)
        })
        .add("post", "/v1/credentials/{id}/test", post(test_credential), RouteDoc {
            body: Some("TestRequest"),
            ..doc("testCredential", "Test every connection that uses the credential (optionally with a pending version)", "credentials", "credential.attach", 200)
        })
        .add("post", "/v1/pipelines", post(create_pipeline), RouteDoc {
            body: Some("CreatePipeline"),
            ..doc("createPipeline", "Create a pipeline over connections of its workspace", "pipelines", "credential.attach", 201)
        })
        .add("get", "/v1/pipelines", get(list_pipelines), RouteDoc {
            query: &["org_id", "workspace_id", "connection_id", "cursor", "limit"],
            ..doc("listPipelines", "List pipelines", "pipelines", "metadata.read", 200)
        })
        .add("get", "/v1/pipelines/{id}", get(get_pipeline), doc("getPipeline", "One pipeline", "pipelines", "metadata.read", 200))
        .add("patch", "/v1/pipelines/{id}", patch(patch_pipeline), RouteDoc {
            body: Some("PatchPipeline"),
            ..doc("patchPipeline", "Change a pipeline", "pipelines", "credential.attach", 200)
        })
        .add("delete", "/v1/pipelines/{id}", delete(delete_pipeline), doc("deletePipeline", "Delete a pipeline", "pipelines", "credential.attach", 200))
        .add("get", "/v1/credentials/{id}/usage", get(usage), doc("credentialUsage", "Connections and pipelines that use a credential", "credentials", "metadata.read", 200))
        .add("post", "/v1/credentials/{id}/detach-all", post(detach_all), doc("detachAll", "Incident response: detach the credential from every connection", "credentials", "credential.delete", 200))
        .add("post", "/v1/credentials/{id}/reviews", post(create_review), RouteDoc {
            body: Some("CreateReview"),
            ..doc("createReview", "Record a review (keep or remove)", "reviews", "audit.read", 201)
        })
        .add("get", "/v1/credentials/{id}/reviews", get(list_reviews), doc("listReviews", "Reviews of a credential", "reviews", "metadata.read", 200))
        .add("post", "/v1/resolve/report", post(report_resolve), RouteDoc {
            body: Some("ResolveReport"),
            ..doc("reportResolve", "A worker reports how the resolved credential fared at the target (feeds alerts and auto-disable)", "resolve", "connection.resolve", 200)
        })
        .add("post", "/v1/resolve", post(resolve), RouteDoc {
            body: Some("ResolveRequest"),
            ..doc("resolve", "Resolve a connection to its config and plaintext credential fields for a run (audited)", "resolve", "connection.resolve", 200)
        })
        .add("get", "/v1/reports/{kind}", get(report), RouteDoc {
            query: &["org_id", "workspace_id", "days", "format"],
            produces: &["application/json", "text/csv; charset=utf-8"],
            ..doc("report", "Review reports: attachments, unused, rotation-due, overrides, unreviewed (JSON or ?format=csv, streamed)", "reports", "audit.read", 200)
        })
}

async fn kinds(Auth(_): Auth) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "items": credvault_domain::connectors::kinds_json() }))
}

async fn create_connection(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreateConnection>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_connection(&ctx, &a, req).await?),
    ))
}

async fn list_connections(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&[
        "org_id",
        "workspace_id",
        "kind",
        "environment",
        "credential_id",
        "cursor",
        "limit",
    ])?;
    let f = ConnectionFilter {
        org_id: p.get("org_id")?,
        workspace_id: p.get("workspace_id")?,
        kind: p.get("kind")?,
        environment: p.get("environment")?,
        credential_id: p.get("credential_id")?,
        cursor: p.get("cursor")?,
        limit: p.usize("limit")?,
    };
    Ok(axum::Json(s.service.list_connections(&ctx, &a, f).await?))
}

async fn get_connection(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.get_connection(&ctx, &a, &id).await?))
}

async fn patch_connection(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(p): Json<PatchConnection>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.patch_connection(&ctx, &a, &id, p).await?))
}

async fn delete_connection(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.delete_connection(&ctx, &a, &id).await?))
}

async fn attach(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(req): Json<AttachCredential>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.attach_credential(&ctx, &a, &id, req).await?))
}

async fn detach(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.detach_credential(&ctx, &a, &id).await?))
}

/// A test request body is optional: an empty body means "the current version".
fn test_request(body: MaybeJson<credvault_core::testing::TestRequest>) -> credvault_core::testing::TestRequest {
    body.0.unwrap_or_default()
}

async fn test_connection(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    body: MaybeJson<credvault_core::testing::TestRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        s.service.test_connection(&ctx, &a, &id, test_request(body)).await?,
    ))
}

async fn test_credential(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    body: MaybeJson<credvault_core::testing::TestRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        s.service.test_credential(&ctx, &a, &id, test_request(body)).await?,
    ))
}

async fn create_pipeline(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreatePipeline>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_pipeline(&ctx, &a, req).await?),
    ))
}

async fn list_pipelines(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["org_id", "workspace_id", "connection_id", "cursor", "limit"])?;
    let f = PipelineFilter {
        org_id: p.get("org_id")?,
        workspace_id: p.get("workspace_id")?,
        connection_id: p.get("connection_id")?,
        cursor: p.get("cursor")?,
        limit: p.usize("limit")?,
    };
    Ok(axum::Json(s.service.list_pipelines(&ctx, &a, f).await?))
}

async fn get_pipeline(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.get_pipeline(&ctx, &a, &id).await?))
}

async fn patch_pipeline(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(p): Json<PatchPipeline>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.patch_pipeline(&ctx, &a, &id, p).await?))
}

async fn delete_pipeline(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.delete_pipeline(&ctx, &a, &id).await?))
}

async fn usage(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.credential_usage(&ctx, &a, &id).await?))
}

async fn detach_all(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.detach_all(&ctx, &a, &id).await?))
}

async fn create_review(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(req): Json<CreateReview>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_review(&ctx, &a, &id, req).await?),
    ))
}

async fn list_reviews(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        serde_json::json!({ "items": s.service.list_reviews(&ctx, &a, &id).await? }),
    ))
}

async fn report_resolve(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<credvault_core::ResolveReport>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.report_resolve(&ctx, &a, req).await?))
}

async fn resolve(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<ResolveRequest>,
) -> ApiResult<Response> {
    let resolved = s.service.resolve(&ctx, &a, req).await?;
    // The response body holds plaintext: serialize into a zeroizing buffer that hyper owns
    // until it is written, and that is wiped when the last reference is dropped.
    let body = serde_json::to_vec(&resolved).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "cannot encode the response",
        )
    })?;
    drop(resolved);
    let bytes = Bytes::from_owner(zeroize::Zeroizing::new(body));
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Quotes one CSV cell (RFC 4180). Cells that a spreadsheet would run as a formula get a
/// leading `'` so an exported report cannot carry a formula injection.
fn csv_cell(v: &Value, out: &mut String) {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string()))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&s);
    }
}

async fn report(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(kind): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    p.allow(&["org_id", "workspace_id", "days", "format"])?;
    let kind = ReportKind::parse(&kind).ok_or_else(|| {
        ApiError::not_found("report (use attachments, unused, rotation-due, overrides or unreviewed)")
    })?;
    let csv = match p.get("format")?.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::bad_request(Code::InvalidParameter, "format must be json or csv").field("format"));
        }
    };
    let days = match p.get("days")? {
        None => None,
        Some(d) => Some(
            d.parse::<i64>()
                .map_err(|_| ApiError::bad_request(Code::InvalidParameter, "days must be an integer").field("days"))?,
        ),
    };
    let req = ReportRequest {
        kind,
        org_id: p.get("org_id")?,
        workspace_id: p.get("workspace_id")?,
        days,
    };
    let stream = s.service.report(&ctx, &a, req).await?;
    Ok(report_response(stream, csv))
}

/// Streams a report as CSV (with a download file name) or JSON. Shared with the web UI.
pub(crate) fn report_response(stream: credvault_core::ReportStream, csv: bool) -> Response {
    let columns = stream.columns;
    let name = stream.kind.as_str();
    // State machine: header, rows, trailer.
    enum St {
        Head,
        Rows,
        Done,
    }
    let init = (stream.rows, St::Head, true);
    let body = futures_util::stream::unfold(init, move |(mut rows, st, first)| async move {
        match st {
            St::Head => {
                let head = if csv {
                    let mut line = String::new();
                    for (i, c) in columns.iter().enumerate() {
                        if i > 0 {
                            line.push(',');
                        }
                        line.push_str(c);
                    }
                    line.push_str("\r\n");
                    line
                } else {
                    format!(
                        "{{\"report\":\"{name}\",\"columns\":{},\"items\":[",
                        serde_json::json!(columns)
                    )
                };
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(head)), (rows, St::Rows, true)))
            }
            St::Rows => match rows.recv().await {
                Some(Ok(row)) => {
                    let mut chunk = String::new();
                    if csv {
                        for (i, v) in row.iter().enumerate() {
                            if i > 0 {
                                chunk.push(',');
                            }
                            csv_cell(v, &mut chunk);
                        }
                        chunk.push_str("\r\n");
                    } else {
                        if !first {
                            chunk.push(',');
                        }
                        let obj: serde_json::Map<String, Value> =
                            columns.iter().map(|c| (*c).to_owned()).zip(row).collect();
                        chunk.push_str(&Value::Object(obj).to_string());
                    }
                    Some((Ok(Bytes::from(chunk)), (rows, St::Rows, false)))
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, report = name, "report stream failed");
                    Some((Err(std::io::Error::other("report failed")), (rows, St::Done, first)))
                }
                None => {
                    let tail = if csv { String::new() } else { "]}".to_owned() };
                    Some((Ok(Bytes::from(tail)), (rows, St::Done, first)))
                }
            },
            St::Done => None,
        }
    });
    let mut r = Response::new(Body::from_stream(body));
    let ct = if csv {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if csv && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"credvault-{name}.csv\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
