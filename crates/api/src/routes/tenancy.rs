//! Organizations, settings, workspaces, principals, role bindings and tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post};

use credvault_core::SettingsPatch;
use credvault_core::views::{CreateOrg, CreatePrincipal, CreateRoleBinding, CreateToken, CreateWorkspace};

use super::Table;
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Auth, Ctx, Json, Params, Path};
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
    t.add(
        "post",
        "/v1/orgs",
        post(create_org),
        RouteDoc {
            body: Some("CreateOrg"),
            ..doc("createOrg", "Create an organization", "orgs", "instance admin", 201)
        },
    )
    .add(
        "get",
        "/v1/orgs",
        get(list_orgs),
        doc("listOrgs", "Organizations the caller can see", "orgs", "", 200),
    )
    .add(
        "get",
        "/v1/orgs/{id}",
        get(get_org),
        doc("getOrg", "One organization", "orgs", "member", 200),
    )
    .add(
        "get",
        "/v1/orgs/{id}/settings",
        get(get_settings),
        doc("getOrgSettings", "An organization's settings", "orgs", "member", 200),
    )
    .add(
        "patch",
        "/v1/orgs/{id}/settings",
        patch(patch_settings),
        RouteDoc {
            body: Some("OrgSettingsPatch"),
            ..doc(
                "patchOrgSettings",
                "Change enabled types, role policy, override policy, recovery window",
                "orgs",
                "org.admin",
                200,
            )
        },
    )
    .add(
        "post",
        "/v1/workspaces",
        post(create_workspace),
        RouteDoc {
            body: Some("CreateWorkspace"),
            ..doc("createWorkspace", "Create a workspace", "workspaces", "org.admin", 201)
        },
    )
    .add(
        "get",
        "/v1/workspaces",
        get(list_workspaces),
        RouteDoc {
            query: &["org_id"],
            ..doc(
                "listWorkspaces",
                "Workspaces the caller can see",
                "workspaces",
                "member",
                200,
            )
        },
    )
    .add(
        "get",
        "/v1/workspaces/{id}",
        get(get_workspace),
        doc("getWorkspace", "One workspace", "workspaces", "member", 200),
    )
    .add(
        "post",
        "/v1/principals",
        post(create_principal),
        RouteDoc {
            body: Some("CreatePrincipal"),
            ..doc(
                "createPrincipal",
                "Create a user or service account",
                "principals",
                "org.admin",
                201,
            )
        },
    )
    .add(
        "get",
        "/v1/principals",
        get(list_principals),
        RouteDoc {
            query: &["org_id", "cursor", "limit"],
            ..doc(
                "listPrincipals",
                "Principals of an organization",
                "principals",
                "org.admin or audit.read",
                200,
            )
        },
    )
    .add(
        "get",
        "/v1/principals/{id}",
        get(get_principal),
        doc(
            "getPrincipal",
            "One principal with its role bindings",
            "principals",
            "org.admin, audit.read, or self",
            200,
        ),
    )
    .add(
        "put",
        "/v1/principals/{id}/password",
        axum::routing::put(set_password),
        RouteDoc {
            body: Some("SetPassword"),
            ..doc(
                "setPassword",
                "Set a user's web UI sign-in password (Argon2id); ends the user's sessions",
                "principals",
                "org.admin (or the user themself)",
                204,
            )
        },
    )
    .add(
        "post",
        "/v1/principals/{id}/offboard",
        post(offboard),
        RouteDoc {
            body: Some("OffboardRequest"),
            ..doc(
                "offboardPrincipal",
                "Revoke tokens, disable, list owned credentials, optionally transfer them to a service account",
                "principals",
                "org.admin",
                200,
            )
        },
    )
    .add(
        "post",
        "/v1/role-bindings",
        post(create_binding),
        RouteDoc {
            body: Some("CreateRoleBinding"),
            ..doc(
                "createRoleBinding",
                "Bind a role at organization or workspace scope",
                "role-bindings",
                "org.admin",
                201,
            )
        },
    )
    .add(
        "get",
        "/v1/role-bindings",
        get(list_bindings),
        RouteDoc {
            query: &["org_id", "principal_id"],
            ..doc(
                "listRoleBindings",
                "Role bindings",
                "role-bindings",
                "org.admin, audit.read, or self",
                200,
            )
        },
    )
    .add(
        "delete",
        "/v1/role-bindings/{id}",
        delete(delete_binding),
        doc(
            "deleteRoleBinding",
            "Remove a role binding",
            "role-bindings",
            "org.admin",
            200,
        ),
    )
    .add(
        "post",
        "/v1/tokens",
        post(create_token),
        RouteDoc {
            body: Some("CreateToken"),
            ..doc(
                "createToken",
                "Issue a bearer token (shown once)",
                "tokens",
                "org.admin",
                201,
            )
        },
    )
    .add(
        "get",
        "/v1/tokens",
        get(list_tokens),
        RouteDoc {
            query: &["principal_id"],
            ..doc(
                "listTokens",
                "Token metadata of a principal",
                "tokens",
                "org.admin or self",
                200,
            )
        },
    )
    .add(
        "delete",
        "/v1/tokens/{id}",
        delete(revoke_token),
        doc("revokeToken", "Revoke a token", "tokens", "org.admin or self", 200),
    )
}

async fn create_org(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreateOrg>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_org(&ctx, &a, req).await?),
    ))
}

async fn list_orgs(State(s): State<AppState>, Auth(a): Auth, p: Params) -> ApiResult<impl IntoResponse> {
    p.allow(&[])?;
    Ok(axum::Json(s.service.list_orgs(&a).await?))
}

async fn get_org(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.get_org(&ctx, &a, &id).await?))
}

async fn get_settings(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.get_settings(&ctx, &a, &id).await?))
}

async fn patch_settings(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(p): Json<SettingsPatch>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.patch_settings(&ctx, &a, &id, p).await?))
}

async fn create_workspace(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreateWorkspace>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_workspace(&ctx, &a, req).await?),
    ))
}

async fn list_workspaces(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["org_id"])?;
    Ok(axum::Json(
        s.service.list_workspaces(&ctx, &a, p.get("org_id")?.as_deref()).await?,
    ))
}

async fn get_workspace(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.get_workspace(&ctx, &a, &id).await?))
}

async fn create_principal(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreatePrincipal>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_principal(&ctx, &a, req).await?),
    ))
}

async fn list_principals(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["org_id", "cursor", "limit"])?;
    Ok(axum::Json(
        s.service
            .list_principals(
                &ctx,
                &a,
                p.get("org_id")?.as_deref(),
                p.get("cursor")?.as_deref(),
                p.usize("limit")?,
            )
            .await?,
    ))
}

async fn get_principal(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.get_principal(&ctx, &a, &id).await?))
}

/// Body of `PUT /v1/principals/{id}/password`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPassword {
    password: String,
    /// Required when users change their own password.
    #[serde(default)]
    current_password: Option<String>,
}

async fn set_password(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    Json(req): Json<SetPassword>,
) -> ApiResult<impl IntoResponse> {
    let pw = zeroize::Zeroizing::new(req.password);
    let current = req.current_password.map(zeroize::Zeroizing::new);
    s.service.set_password(&ctx, &a, &id, pw, current).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn offboard(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
    body: crate::extract::MaybeJson<credvault_core::lifecycle::OffboardRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(
        s.service.offboard(&ctx, &a, &id, body.0.unwrap_or_default()).await?,
    ))
}

async fn create_binding(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreateRoleBinding>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_role_binding(&ctx, &a, req).await?),
    ))
}

async fn list_bindings(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["org_id", "principal_id"])?;
    Ok(axum::Json(
        s.service
            .list_role_bindings(&ctx, &a, p.get("org_id")?.as_deref(), p.get("principal_id")?.as_deref())
            .await?,
    ))
}

async fn delete_binding(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.delete_role_binding(&ctx, &a, &id).await?))
}

async fn create_token(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Json(req): Json<CreateToken>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        axum::Json(s.service.create_token(&ctx, &a, req).await?),
    ))
}

async fn list_tokens(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    p: Params,
) -> ApiResult<impl IntoResponse> {
    p.allow(&["principal_id"])?;
    Ok(axum::Json(
        s.service
            .list_tokens(&ctx, &a, p.get("principal_id")?.as_deref())
            .await?,
    ))
}

async fn revoke_token(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.service.revoke_token(&ctx, &a, &id).await?))
}
