//! The OpenAPI 3.1 document, generated at start-up from the route table (every route added
//! through the table is documented) plus the credential-type schemas of the domain crate.
//!
//! The document says exactly what the server accepts: every query parameter, request body and
//! credential/connection field has the schema the server's parsers enforce (checked in CI by
//! schemathesis, `scripts/lib/schemathesis.sh`). Where a schema-valid request can still be
//! refused because of stored state, the clock or a rule JSON Schema cannot state (an unknown
//! OAuth state, a type the organization disabled, a reference to another credential), the
//! operation lists those problem codes in `x-semantic-errors`.

use credvault_domain::problems::Code;
use serde_json::{Map, Value, json};

use credvault_domain::connectors::ConnectorKind;
use credvault_domain::credential_types::{Check, CredentialType, FieldKind, FieldSchema, all_schemas};

mod schemas;
use schemas::schemas;

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
    /// Accepted query parameters (their schemas: [`query_param`]).
    pub query: &'static [&'static str],
    /// Status of success.
    pub success: u16,
    /// Whether the route needs a bearer token.
    pub auth: bool,
    /// Content types of the success response (`application/json` when empty).
    pub produces: &'static [&'static str],
    /// Other responses that are not problem documents: (status, content type, description).
    pub other_responses: &'static [(u16, &'static str, &'static str)],
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// `prefix` + 26 characters of the ID alphabet.
fn id(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}[a-z2-7]{{26}}$")})
}

/// A user or service-account ID.
fn principal_id() -> Value {
    json!({"type": "string", "pattern": "^(usr|sa)_[a-z2-7]{26}$"})
}

/// `schema` or `null` (serde reads `null` as absent for every optional field).
fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// A name (`credvault_domain::ids::check_name`).
fn name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
           "description": "1–128 letters, digits, '-', '_' and '.', starting with a letter or digit"})
}

/// An environment (`credvault_domain::ids::check_environment`).
fn environment() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[a-z0-9-]+$"})
}

/// Free text of at most `max` bytes (ASCII: characters).
fn text(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

/// Text without control characters (Unicode category Cc).
const NO_CONTROL: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";

/// A DNS host name the server takes anywhere a host is configured: labels of letters, digits
/// and inner '-', the last one starting with a letter (a numeric last label reads as IPv4).
const HOST: &str = "([a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\\.){0,3}[a-z]([a-z0-9-]{0,20}[a-z0-9])?";
/// A TCP port, 1–65535, without leading zeros.
const PORT: &str = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
/// One line of DER in base64 (the first byte 0x30: a SEQUENCE), then more base64 lines.
const DER_BASE64: &str = "M[A-D][A-Za-z0-9+/]{2}([A-Za-z0-9+/]{4}){0,15}(\\n([A-Za-z0-9+/]{4}){1,16}){0,3}";

fn pem_block(label: &str) -> String {
    format!("-----BEGIN {label}-----\\n{DER_BASE64}\\n-----END {label}-----\\n?")
}

/// The cursor of a list page: base64url (no padding) of `v1:` and 1–18 digits.
fn cursor() -> Value {
    let group = "(M[DTjz]|N[DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]";
    let one = "(M[AQgw]|N[AQgw]|O[AQ])";
    let two = "(M[DTjz]|N[DTjz]|O[DT])[AEIMQUYcgk]";
    json!({"type": "string", "pattern": format!("^djE6({group}){{0,5}}({group}|{one}|{two})$"),
           "description": "`next_cursor` of the previous page (opaque)"})
}

/// The schema of one query parameter of one operation (what `Params` and the handler accept).
fn query_param(op: &str, name: &str) -> Value {
    let any = |d: &str| json!({"type": "string", "description": d});
    let (schema, description): (Value, &str) = match (op, name) {
        (_, "org_id") => (
            id("org_"),
            "the organization (default: the caller's); 404 when there is no such organization",
        ),
        (_, "cursor") => (cursor(), "where the page starts"),
        (_, "limit") => (
            json!({"type": "integer", "minimum": 1, "maximum": 18_446_744_073_709_551_615_u64}),
            "page size (capped by the server)",
        ),
        ("listTokens", "principal_id") => (
            principal_id(),
            "whose tokens (default: the caller's); 404 when there is no such principal",
        ),
        ("listCredentials", "type") => (
            json!({"enum": CredentialType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()}),
            "credential type",
        ),
        ("listConnections", "kind") => (
            json!({"enum": ConnectorKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()}),
            "connector kind",
        ),
        ("listCredentials", "label") => {
            return json!({"name": "label", "in": "query", "required": false, "style": "form", "explode": true,
                "description": "`key:value`, repeatable (all must match)",
                "schema": {"type": "array", "items": {"type": "string", "pattern": ":"}}});
        }
        ("listAuditEvents", "outcome") => (json!({"enum": ["success", "denied", "error"]}), "outcome"),
        ("listAuditEvents", "since" | "until") => (
            json!({"type": "string", "format": "date-time"}),
            "RFC 3339 bound (inclusive since, exclusive until)",
        ),
        ("listAuditEvents", "after_seq") => (
            json!({"type": "integer", "minimum": 0, "maximum": i64::MAX}),
            "only events after this sequence number",
        ),
        ("report", "days") => (
            json!({"type": "integer", "minimum": 0, "maximum": 3650}),
            "window in days",
        ),
        ("report", "format") => (json!({"enum": ["json", "csv"]}), "json (default) or csv"),
        ("deleteCredential", "purge") => (json!({"type": "boolean"}), "destroy the keys now (needs `reason`)"),
        ("deleteCredential", "reason") => (text(1024), "why (recorded in the audit journal)"),
        ("oauthCallback", _) => (any("as sent by the OAuth provider"), "as sent by the OAuth provider"),
        (_, "q") => (any("substring"), "searches name and description"),
        // Filters that match nothing for an unknown value, and accept any text.
        _ => (any(""), "filter: any text; matches nothing when nothing has that value"),
    };
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

/// Problem codes a schema-valid request can still get: they depend on stored state, the
/// clock, or a rule JSON Schema cannot state. (status, code or "" for any, why).
fn semantic_errors(op: &str) -> &'static [(u16, Option<Code>, &'static str)] {
    match op {
        "oauthCallback" => &[(
            400,
            None,
            "the state is not a live authorization request of this server (an HTML page says why)",
        )],
        "createToken" => &[(422, Some(Code::InThePast), "expires_at is not in the future")],
        "createCredential" => &[
            (
                422,
                Some(Code::TypeNotEnabled),
                "the organization's settings disable the type",
            ),
            (
                422,
                Some(Code::InvalidReference),
                "source_credential_id names this credential, a non-aws credential, or a chain longer than 5 hops",
            ),
        ],
        "deleteCredential" => &[(
            422,
            Some(Code::ReasonRequired),
            "purge=true needs a reason of 1–1024 bytes",
        )],
        "testCredential" => &[(422, Some(Code::NotFound), "version names no version of the credential")],
        "listAuditEvents" => &[(
            422,
            Some(Code::ConflictingParameters),
            "cursor and after_seq were both given",
        )],
        "resolve" => &[(
            422,
            Some(Code::NotFound),
            "pipeline_id names no pipeline (or one that does not use the connection)",
        )],
        "patchConnection" => &[(
            422,
            Some(Code::InvalidFields),
            "config is not one of the connection's own kind",
        )],
        "createVersion" | "rotateCredential" => &[
            (
                422,
                Some(Code::InvalidFields),
                "fields are not those of the credential's own type and variant",
            ),
            (422, Some(Code::KeptAndGiven), "a kept field is also given in fields"),
            (
                422,
                Some(Code::NotInCurrentVersion),
                "a kept field is not in the current version",
            ),
        ],
        "createConnection" | "attachCredential" => &[
            (
                422,
                Some(Code::NotFound),
                "credential_id names no credential visible from the connection's workspace",
            ),
            (
                422,
                Some(Code::CredentialTypeMismatch),
                "the credential's type and variant do not fit the connection's kind",
            ),
            (
                422,
                Some(Code::OverrideReasonRequired),
                "the credential's environment differs from the connection's and no override_reason was given",
            ),
        ],
        "setPassword" => &[(
            422,
            Some(Code::NotAUser),
            "the principal is a service account (service accounts use tokens)",
        )],
        "offboardPrincipal" => &[
            (
                422,
                Some(Code::NotFound),
                "transfer_to names no active service account of the organization",
            ),
            (422, Some(Code::NotAServiceAccount), "transfer_to names a user"),
            (
                422,
                Some(Code::SamePrincipal),
                "transfer_to names the principal being offboarded",
            ),
        ],
        "revokeOauthGrant" => &[(422, Some(Code::ReasonRequired), "reason is only whitespace")],
        "oauthAuthorize" => &[
            (
                422,
                Some(Code::NotFound),
                "as names no active service account of the organization",
            ),
            (422, Some(Code::NotAServiceAccount), "as names a user"),
        ],
        "createPipeline" | "patchPipeline" => &[(
            422,
            Some(Code::ConnectionNotFound),
            "connection_ids names a connection not in the pipeline's workspace",
        )],
        _ => &[],
    }
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn responses(r: &RouteDoc) -> Value {
    let mut out = Map::new();
    let produces: &[&str] = if r.produces.is_empty() {
        &["application/json"]
    } else {
        r.produces
    };
    let content: Map<String, Value> = produces
        .iter()
        .map(|c| ((*c).to_owned(), json!({"schema": {}})))
        .collect();
    // 204 has no body (RFC 9110 §15.3.5): no content to describe.
    let success = if r.success == 204 {
        json!({"description": "success (no content)"})
    } else {
        json!({"description": "success", "content": content})
    };
    out.insert(r.success.to_string(), success);
    let has_input = r.body.is_some() || !r.query.is_empty() || r.path.contains('{');
    if r.auth || has_input {
        out.insert(
            "400".into(),
            problem("malformed request (an unknown or repeated query parameter, a bad value, malformed JSON)"),
        );
    }
    if r.auth {
        out.insert("401".into(), problem("no valid bearer token"));
        out.insert("403".into(), problem("the caller lacks the permission"));
        let mut throttled = problem("too many failed authentications from this address");
        throttled["headers"] = json!({"Retry-After": {"required": true, "schema": {"type": "integer", "minimum": 0}, "description": "seconds"}});
        out.insert("429".into(), throttled);
    }
    if r.path.contains('{') || r.auth {
        out.insert("404".into(), problem("no such resource (or not visible to the caller)"));
    }
    if r.auth && r.method != "get" {
        out.insert("409".into(), problem("conflicts with the current state"));
    }
    if r.body.is_some() {
        out.insert("408".into(), problem("the body did not arrive in time"));
        out.insert("413".into(), problem("the body is too large"));
        out.insert("415".into(), problem("the body is not application/json"));
    }
    if r.body.is_some() || !r.query.is_empty() {
        let mut d = String::from("a value the server refuses");
        let sem = semantic_errors(r.operation_id);
        if sem.iter().any(|(s, _, _)| *s == 422) {
            d.push_str("; for a schema-valid request only: ");
            d.push_str(
                &sem.iter()
                    .filter(|(s, _, _)| *s == 422)
                    .map(|(_, c, why)| match c {
                        Some(c) => format!("`{c}` ({why})"),
                        None => format!("any code ({why})"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        out.insert("422".into(), problem(&d));
    }
    if r.auth {
        out.insert(
            "503".into(),
            problem("the store or a blocking audit sink is unavailable; retry later"),
        );
    }
    for (status, ct, d) in r.other_responses {
        out.insert(
            status.to_string(),
            json!({"description": d, "content": {(*ct): {"schema": {"type": "string"}}}}),
        );
    }
    out.insert("default".into(), problem("a problem"));
    Value::Object(out)
}

/// Links from what a create answers to the operations that take the new ID, so a client (and
/// schemathesis's stateful run) can follow them.
fn links(routes: &[RouteDoc], r: &RouteDoc) -> Value {
    let mut out = Map::new();
    if r.method != "post" || r.success != 201 {
        return Value::Object(out);
    }
    // Everything under the new resource's path.
    let (base, value) = if r.operation_id == "createVersion" {
        ("/v1/credentials/{id}/versions", "$request.path.id")
    } else {
        (r.path, "$response.body#/id")
    };
    for t in routes {
        let Some(rest) = t.path.strip_prefix(base) else {
            continue;
        };
        if r.operation_id == "createVersion" {
            if rest.starts_with("/{n}") {
                out.insert(
                    t.operation_id.to_owned(),
                    json!({"operationId": t.operation_id, "parameters": {"path.id": value, "path.n": "$response.body#/version"}}),
                );
            }
        } else if rest.starts_with("/{id}") {
            out.insert(
                t.operation_id.to_owned(),
                json!({"operationId": t.operation_id, "parameters": {"path.id": value}}),
            );
        }
    }
    let by_query = |op: &str, param: &str| json!({"operationId": op, "parameters": {format!("query.{param}"): "$response.body#/id"}});
    let by_body = |op: &str, body: Value| json!({"operationId": op, "requestBody": body});
    let extra: Vec<(&str, Value)> = match r.operation_id {
        "createOrg" => vec![
            (
                "createWorkspaceInOrg",
                by_body("createWorkspace", json!({"org_id": "$response.body#/id"})),
            ),
            (
                "createPrincipalInOrg",
                by_body("createPrincipal", json!({"org_id": "$response.body#/id"})),
            ),
            ("listWorkspacesOfOrg", by_query("listWorkspaces", "org_id")),
            ("listPrincipalsOfOrg", by_query("listPrincipals", "org_id")),
        ],
        "createWorkspace" => vec![
            (
                "createConnectionInWorkspace",
                by_body("createConnection", json!({"workspace_id": "$response.body#/id"})),
            ),
            (
                "createPipelineInWorkspace",
                by_body("createPipeline", json!({"workspace_id": "$response.body#/id"})),
            ),
            (
                "listCredentialsOfWorkspace",
                by_query("listCredentials", "workspace_id"),
            ),
        ],
        "createPrincipal" => vec![
            (
                "createTokenForPrincipal",
                by_body("createToken", json!({"principal_id": "$response.body#/id"})),
            ),
            (
                "createRoleBindingForPrincipal",
                by_body("createRoleBinding", json!({"principal_id": "$response.body#/id"})),
            ),
            ("listTokensOfPrincipal", by_query("listTokens", "principal_id")),
            (
                "listRoleBindingsOfPrincipal",
                by_query("listRoleBindings", "principal_id"),
            ),
        ],
        "createCredential" => vec![
            (
                "attachToConnection",
                by_body("attachCredential", json!({"credential_id": "$response.body#/id"})),
            ),
            (
                "listConnectionsUsingCredential",
                by_query("listConnections", "credential_id"),
            ),
        ],
        "createConnection" => vec![
            (
                "resolveConnection",
                by_body("resolve", json!({"connection_id": "$response.body#/id"})),
            ),
            (
                "createPipelineOverConnection",
                by_body("createPipeline", json!({"connection_ids": ["$response.body#/id"]})),
            ),
            (
                "listPipelinesUsingConnection",
                by_query("listPipelines", "connection_id"),
            ),
        ],
        _ => vec![],
    };
    for (k, v) in extra {
        out.insert(k.to_owned(), v);
    }
    // The revoke/delete links go last: a stateful run that deletes first reaches nothing else.
    Value::Object(out)
}

/// Builds the document.
pub fn document(routes: &[RouteDoc]) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let mut params: Vec<Value> = path_params(r.path)
            .into_iter()
            .map(|p| {
                let schema = match (r.path, p) {
                    (_, "n") => json!({"type": "integer", "minimum": 1, "maximum": i64::MAX}),
                    (p, "kind") if p.starts_with("/v1/reports/") => {
                        json!({"enum": ["attachments", "unused", "rotation-due", "overrides", "unreviewed"]})
                    }
                    _ => json!({"type": "string"}),
                };
                json!({"name": p, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        params.extend(r.query.iter().map(|q| query_param(r.operation_id, q)));
        let mut responses = responses(r);
        let links = links(routes, r);
        if links.as_object().is_some_and(|l| !l.is_empty()) {
            responses[r.success.to_string()]["links"] = links;
        }
        let mut op = json!({
            "operationId": r.operation_id,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": params,
            "responses": responses,
        });
        if !r.permission.is_empty() {
            op["description"] = format!("Needs the permission `{}`.", r.permission).into();
            op["x-permission"] = r.permission.into();
        }
        let sem = semantic_errors(r.operation_id);
        if !sem.is_empty() {
            op["x-semantic-errors"] = sem
                .iter()
                .map(|(status, code, why)| {
                    let mut e = json!({"status": status, "why": why});
                    if let Some(code) = code {
                        e["code"] = code.as_str().into();
                    }
                    e
                })
                .collect();
        }
        if r.auth {
            op["security"] = json!([{"bearer": []}]);
        } else {
            op["security"] = json!([]);
        }
        if let Some(b) = r.body {
            // Bodies that may be empty (the handler takes `MaybeJson`) are optional.
            let optional = matches!(b, "TestRequest" | "OffboardRequest" | "AuthorizeRequest");
            op["requestBody"] = json!({"required": !optional, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "credvault", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Credential store for data pipelines. Errors are RFC 9457 problem documents with a stable `code`. \
                                 Operations list in `x-semantic-errors` the problem codes a schema-valid request can still get; \
                                 `x-problem-codes` lists every code with its meaning, `x-audit-actions` every action an audit event can record."},
        "paths": paths,
        "x-credential-types": credvault_domain::credential_types::types_json(&CredentialType::ALL),
        "x-problem-codes": Code::ALL.iter().map(|c| json!({"code": c.as_str(), "description": c.doc()})).collect::<Vec<_>>(),
        "x-audit-actions": credvault_core::actions::Action::ALL
            .iter()
            .map(|a| json!({"action": a.as_str(), "description": a.doc()}))
            .collect::<Vec<_>>(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        }
    })
}
