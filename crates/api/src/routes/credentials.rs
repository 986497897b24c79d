//! Credentials and their versions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post};
use credvault_domain::problems::Code;

use credvault_core::StatusOp;
use credvault_core::views::{CreateCredential, CreateVersion, CredentialFilter, PatchCredential};

use super::Table;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Ctx, Json, Params, Path};
use crate::openapi::RouteDoc;

pub(crate) fn routes(t: Table) -> Table {
    let doc = |operation_id, summary, permission, success| RouteDoc {
        operation_id,
        summary,
        tag: "credentials",
        permission,
        success,
        auth: true,
        ..Default::default()
    };
    t.add(
        "post",
        "/v1/credentials",
        post(create),
        RouteDoc {
            body: Some("CreateCredential"),
            ..doc(
                "createCredential",
                "Create a credential (secret fields are write-only)",
                "credential.create",
                201,
            )
        },
    )
    .add(
        "get",
        "/v1/credentials",
        get(list),
        RouteDoc {
            query: &[
                "org_id",
                "workspace_id",
                "type",
                "environment",
                "status",
                "label",
                "q",
                "cursor",
                "limit",
            ],
            ..doc(
                "listCredentials",
                "List credentials (filters; `label=key:value` repeatable; `q` searches name and description; cursor pagination)",
                "metadata.read",
                200,
            )
        },
    )
    .add(
        "get",
        "/v1/credentials/{id}",
        get(show),
        doc("getCredential", "One credential's metadata", "metadata.read", 200),
    )
    .add(
        "patch",
        "/v1/credentials/{id}",
        patch(update),
        RouteDoc {
            body: Some("PatchCredential"),
            ..doc(
                "patchCredential",
                "Change name, labels, description, expiry, rotation period",
                "credential.create",
                200,
            )
        },
    )
    .add(
        "delete",
        "/v1/credentials/{id}",
        delete(remove),
        RouteDoc {
            query: &["purge", "reason"],
            ..doc(
                "deleteCredential",
                "Soft-delete into pending_deletion for the recovery window; ?purge=true&reason=… destroys the keys now",
                "credential.delete",
                200,
            )
        },
    )
    .add("post", "/v1/credentials/{id}/oauth/revoke", post(oauth_revoke_grant), RouteDoc {
        body: Some("RevokeGrantRequest"),
        ..doc("revokeOauthGrant", "Revoke an OAuth grant (offboarding, incidents): the refresh token at the provider (RFC 7009), the tokens from the credential (a new version without them); the grant needs a new consent", "credential.create", 200)
    })
    .add("post", "/v1/credentials/{id}/oauth/authorize", post(oauth_authorize), RouteDoc {
        body: Some("AuthorizeRequest"),
        ..doc("oauthAuthorize", "Start OAuth consent: returns the provider URL (state + PKCE); {\"as\": \"sa_…\"} records it under a service account (admins)", "credential.create", 200)
    })
    .add(
        "post",
        "/v1/credentials/{id}/rotate",
        post(rotate),
        RouteDoc {
            body: Some("RotateRequest"),
            ..doc(
                "rotateCredential",
                "Stage a version, test every dependent connection, promote only if all passed",
                "credential.create",
                200,
            )
        },
    )
    .add(
        "post",
        "/v1/credentials/{id}/versions",
        post(add_version),
        RouteDoc {
            body: Some("CreateVersion"),
            ..doc(
                "createVersion",
                "Add a version: stage (pending) or replace (current at once)",
                "credential.create",
                201,
            )
        },
    )
    .add(
        "get",
        "/v1/credentials/{id}/versions",
        get(versions),
        doc("listVersions", "Versions of a credential", "metadata.read", 200),
    )
    .add(
        "post",
        "/v1/credentials/{id}/versions/{n}/promote",
        post(promote),
        doc(
            "promoteVersion",
            "Make a version current (the old current becomes previous)",
            "credential.create",
            200,
        ),
    )
    .add(
        "post",
        "/v1/credentials/{id}/versions/{n}/revoke",
        post(revoke),
        doc(
            "revokeVersion",
            "Revoke a version (not the current one)",
            "credential.create",
            200,
        ),
    )
    .add(
        "post",
        "/v1/credentials/{id}/disable",
        post(disable),
        doc(
            "disableCredential",
            "Stop every resolve of this credential",
            "credential.create",
            200,
        ),
    )
    .add(
        "post",
        "/v1/credentials/{id}/enable",
        post(enable),
        doc("enableCredential", "Undo disable", "credential.create", 200),
    )
    .add(
        "post",
        "/v1/credentials/{id}/restore",
        post(restore),
        doc(
            "restoreCredential",
            "Undo a soft delete within the recovery window",
            "credential.delete",
            200,
        ),
    )
    .add(
        "post",
        "/v1/credentials/{id}/reveal",
        post(reveal),
        doc(
            "revealCredential",
            "Plaintext of the current version (credential.reveal: nobody by default)",
            "credential.reveal",
            200,
        ),
    )
}

async fn create(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreateCredential>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_credential(&ctx, &a, req).await?),
    ))
}

async fn list(State(s): State<AppState>, Ctx(ctx): Ctx, Auth(a): Auth, p: Params) -> ApiResult<impl IntoResponse> {
    p.allow(&[
        "org_id",
        "workspace_id",
        "type",
        "environment",
        "status",
        "label",
        "q",
        "cursor",
        "limit",
    ])?;
    let f = CredentialFilter {
        org_id: p.get("org_id")?,
        workspace_id: p.get("workspace_id")?,
        ty: p.get("type")?,
        environment: p.get("environment")?,
        status: p.get("status")?,
        label: p.all("label"),
        q: p.get("q")?,
        cursor: p.get("cursor")?,
        limit: p.usize("limit")?,
    };
    Ok(axum::Json(s.service.list_credentials(&ctx, &a, f).await?))
}

async fn show(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.get_credential(&ctx, &a, &id).await?))
}

async fn update(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(p): Json<PatchCredential>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.patch_credential(&ctx, &a, &id, p).await?))
}

async fn remove(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<axum::response::Response> {
    p.allow(&["purge", "reason"])?;
    // The document's bound (characters), checked with or without purge: a value outside what
    // the document allows is refused, never silently ignored.
    if p.get("reason")?.is_some_and(|r| r.chars().count() > 1024) {
        return Err(crate::error::ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Code::TooLong,
            "reason: at most 1024 characters",
        )
        .field("reason"));
    }
    match p.get("purge")?.as_deref() {
        None | Some("false") => {
            Ok(axum::Json(s.service.set_status(&ctx, &a, &id, StatusOp::Delete).await?).into_response())
        }
        Some("true") => {
            let reason = p.get("reason")?.unwrap_or_default();
            Ok(axum::Json(s.service.purge_credential(&ctx, &a, &id, &reason).await?).into_response())
        }
        Some(_) => Err(
            crate::error::ApiError::bad_request(Code::InvalidParameter, "purge must be true or false").field("purge"),
        ),
    }
}

async fn oauth_authorize(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    body: crate::extract::MaybeJson<credvault_core::oauth::AuthorizeRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        s.service
            .oauth_authorize(&ctx, &a, &id, body.0.unwrap_or_default())
            .await?,
    ))
}

async fn oauth_revoke_grant(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(req): Json<credvault_core::oauth::RevokeGrantRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.revoke_grant(&ctx, &a, &id, req).await?))
}

async fn rotate(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(req): Json<credvault_core::lifecycle::RotateRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.rotate(&ctx, &a, &id, req).await?))
}

async fn add_version(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(req): Json<CreateVersion>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_version(&ctx, &a, &id, req).await?),
    ))
}

async fn versions(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        serde_json::json!({ "items": s.service.list_versions(&ctx, &a, &id).await? }),
    ))
}

fn version_number(n: &str) -> ApiResult<i64> {
    n.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::not_found("version"))
}

async fn promote(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path((id, n)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let n = version_number(&n)?;
    Ok(axum::Json(s.service.promote_version(&ctx, &a, &id, n).await?))
}

async fn revoke(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path((id, n)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let n = version_number(&n)?;
    Ok(axum::Json(s.service.revoke_version(&ctx, &a, &id, n).await?))
}

async fn disable(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        s.service.set_status(&ctx, &a, &id, StatusOp::Disable).await?,
    ))
}

async fn enable(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.set_status(&ctx, &a, &id, StatusOp::Enable).await?))
}

async fn restore(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        s.service.set_status(&ctx, &a, &id, StatusOp::Restore).await?,
    ))
}

async fn reveal(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.reveal_credential(&ctx, &a, &id).await?))
}
