//! The OpenAPI 3.1 document, generated at start-up from the route table (every route added
//! through the table is documented) plus the credential-type schemas of the domain crate.

use serde_json::{Value, json};

/// Documentation of one route.
#[derive(Clone, Debug, Default)]
pub struct RouteDoc {
    /// HTTP method, lowercase (`get`, `post`…); filled in by the table.
    pub method: &'static str,
    /// Path template; filled in by the table.
    pub path: &'static str,
    /// Stable operation ID.
    pub operation_id: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Tag (resource group).
    pub tag: &'static str,
    /// The permission needed (`""` when public or self-service).
    pub permission: &'static str,
    /// Name of the request body schema in `components.schemas`, if any.
    pub body: Option<&'static str>,
    /// Accepted query parameters.
    pub query: &'static [&'static str],
    /// Status of success.
    pub success: u16,
    /// Whether the route needs a bearer token.
    pub auth: bool,
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// Builds the document.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes {
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(
            r.query
                .iter()
                .map(|q| json!({"name": q, "in": "query", "required": false, "schema": {"type": "string"}})),
        );
        let mut op = json!({
            "operationId": r.operation_id,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": params,
            "responses": {
                r.success.to_string(): {"description": "success", "content": {"application/json": {"schema": {}}}},
                "default": {"description": "a problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
        });
        if !r.permission.is_empty() {
            op["description"] = format!("Needs the permission `{}`.", r.permission).into();
            op["x-permission"] = r.permission.into();
        }
        if r.auth {
            op["security"] = json!([{"bearer": []}]);
        } else {
            op["security"] = json!([]);
        }
        if let Some(b) = r.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "credvault", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Credential store for data pipelines. Errors are RFC 9457 problem documents with a stable `code`."},
        "paths": paths,
        "x-credential-types": credvault_domain::credential_types::types_json(&credvault_domain::credential_types::CredentialType::ALL),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        }
    })
}

/// The `allowed_destinations` property of credential requests.
fn allowed_destinations() -> Value {
    json!({
        "type": ["array", "null"], "maxItems": credvault_domain::destinations::MAX_PATTERNS,
        "items": {"type": "string", "minLength": 1, "maxLength": 300},
        "description": "Where the secret may be sent: `host`, `*.suffix`, an IP address or a CIDR, each with an optional `:port` \
            (IPv6 as `[addr]:port`), or a URL (its host and port). Only those who may change the credential set or widen it; \
            a connection whose every destination is allowed may be wired by anyone who may attach. Replaces the whole list on PATCH.",
    })
}

fn schemas() -> Value {
    let id = |p: &str| json!({"type": "string", "pattern": format!("^{p}[a-z2-7]{{26}}$")});
    json!({
        "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object"}}, "request_id": {"type": "string"}}},
        "CreateOrg": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {"name": {"type": "string"}}},
        "CreateWorkspace": {"type": "object", "required": ["org_id", "name"], "additionalProperties": false,
            "properties": {"org_id": id("org_"), "name": {"type": "string"}}},
        "CreatePrincipal": {"type": "object", "required": ["org_id", "kind", "name"], "additionalProperties": false,
            "properties": {"org_id": id("org_"), "kind": {"enum": ["user", "service_account"]}, "name": {"type": "string"}}},
        "CreateRoleBinding": {"type": "object", "required": ["principal_id", "role"], "additionalProperties": false,
            "properties": {"principal_id": {"type": "string"}, "role": {"enum": ["admin", "integration_engineer", "builder", "auditor", "viewer", "worker"]},
                           "workspace_id": id("ws_"), "org_id": id("org_")}},
        "CreateToken": {"type": "object", "required": ["principal_id"], "additionalProperties": false,
            "properties": {"principal_id": {"type": "string"}, "name": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}}},
        "OrgSettingsPatch": {"type": "object", "additionalProperties": false, "properties": {
            "enabled_types": {"type": "array", "items": {"type": "string"}}, "allow_environment_override": {"type": "boolean"},
            "recovery_window_days": {"type": "integer", "minimum": 1, "maximum": 365},
            "previous_grace_hours": {"type": "integer", "minimum": 0, "maximum": 2160}, "expired_grace_hours": {"type": "integer", "minimum": 0, "maximum": 2160},
            "expiry_alert_days": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 365}, "description": "days before an expiry date and before a rotation period ends at which alerts fire"},
            "auto_disable_on_target_auth_failures": {"type": "boolean"},
            "role_policy": {"type": "object", "properties": {"credential.create": {"type": "array"}, "credential.attach": {"type": "array"}, "credential.reveal": {"type": "array"}}}}},
        "CreateCredential": {"type": "object", "required": ["name", "type", "environment", "fields"], "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "type": {"enum": ["aws", "azure", "gcp", "database", "api_key", "oauth", "password"]},
            "variant": {"type": ["string", "null"]}, "workspace_id": id("ws_"), "org_id": id("org_"),
            "environment": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "description": {"type": ["string", "null"]}, "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "rotation_period_days": {"type": ["integer", "null"]},
            "allowed_destinations": allowed_destinations(),
            "fields": {"type": "object", "description": "Fields of the type and variant; see x-credential-types."}}},
        "PatchCredential": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "labels": {"type": "object"}, "description": {"type": ["string", "null"]},
            "expires_at": {"type": ["string", "null"]}, "rotation_period_days": {"type": ["integer", "null"]},
            "allowed_destinations": allowed_destinations()}},
        "CreateConnection": {"type": "object", "required": ["name", "workspace_id", "environment", "kind"], "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "workspace_id": id("ws_"), "environment": {"type": "string"},
            "kind": {"enum": credvault_domain::connectors::ConnectorKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()},
            "config": {"type": "object", "description": "Per kind; see GET /v1/connector-kinds."},
            "credential_id": id("cred_"), "override_reason": {"type": ["string", "null"]}, "description": {"type": ["string", "null"]}}},
        "PatchConnection": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "config": {"type": "object"}, "description": {"type": "string"}}},
        "AttachCredential": {"type": "object", "required": ["credential_id"], "additionalProperties": false, "properties": {
            "credential_id": id("cred_"), "override_reason": {"type": ["string", "null"]}}},
        "CreatePipeline": {"type": "object", "required": ["name", "workspace_id"], "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "workspace_id": id("ws_"), "connection_ids": {"type": "array", "items": id("conn_")},
            "description": {"type": ["string", "null"]}}},
        "PatchPipeline": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string"}, "connection_ids": {"type": "array", "items": id("conn_")}, "description": {"type": "string"}}},
        "CreateReview": {"type": "object", "required": ["decision"], "additionalProperties": false, "properties": {
            "decision": {"enum": ["keep", "remove"]}, "note": {"type": ["string", "null"]}}},
        "ResolveRequest": {"type": "object", "required": ["connection_id", "run_id"], "additionalProperties": false, "properties": {
            "connection_id": id("conn_"), "run_id": {"type": "string"}, "pipeline_id": {"type": ["string", "null"]}}},
        "RotateRequest": {"type": "object", "required": ["fields"], "additionalProperties": false, "properties": {"fields": {"type": "object"}, "allow_untestable": {"type": "boolean", "description": "connections whose test answers `unsupported` do not block promotion"}, "keep": {"type": "array", "maxItems": 32, "uniqueItems": true, "items": {"type": "string"}, "description": "top-level fields to carry over (secrets included) from the current version"}}},
        "SetPassword": {"type": "object", "required": ["password"], "additionalProperties": false, "properties": {"password": {"type": "string", "minLength": 12, "writeOnly": true}, "current_password": {"type": "string", "writeOnly": true}}},
        "OffboardRequest": {"type": "object", "additionalProperties": false, "properties": {"transfer_to": {"type": "string", "pattern": "^sa_[a-z2-7]{26}$"}}},
        "ResolveReport": {"type": "object", "required": ["connection_id", "run_id", "outcome"], "additionalProperties": false, "properties": {
            "connection_id": id("conn_"), "run_id": {"type": "string"}, "version": {"type": ["integer", "null"]},
            "outcome": {"enum": ["ok", "auth_failed", "error"]}}},
        "AuthorizeRequest": {"type": "object", "additionalProperties": false, "properties": {"as": {"type": "string", "pattern": "^sa_[a-z2-7]{26}$"}}},
        "TestRequest": {"type": "object", "additionalProperties": false, "properties": {"version": {"type": ["integer", "null"]}}},
        "CreateVersion": {"type": "object", "required": ["fields"], "additionalProperties": false, "properties": {
            "fields": {"type": "object"}, "mode": {"enum": ["stage", "replace"]}, "keep": {"type": "array", "maxItems": 32, "uniqueItems": true, "items": {"type": "string"}, "description": "top-level fields to carry over (secrets included) from the current version"}}},
    })
}
