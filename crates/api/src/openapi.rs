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

/// The regular expression (and maximum length) of a field check, as narrow as the server's
/// parser or narrower where the parser takes forms a pattern cannot state (PEM with RFC 1421
/// headers, URLs with IPv6 hosts); the description names the full rule.
fn check_pattern(check: Check) -> Option<String> {
    let uuid = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    let aws = "[A-Za-z0-9_+=,.@-]";
    Some(match check {
        Check::None | Check::NonEmpty | Check::Count { .. } | Check::Port => return None,
        Check::AwsRoleArn => {
            format!("^arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{{12}}:role/({aws}{{1,64}}/){{0,6}}{aws}{{1,64}}$")
        }
        Check::AwsAccessKeyId => "^[A-Z0-9]{16,128}$".into(),
        Check::AwsRegion => "^[a-z]{1,10}-([a-z0-9]{1,8}-){1,2}[0-9]{1,2}$".into(),
        Check::AwsExternalId => "^[A-Za-z0-9_+=,.@:/-]{2,1224}$".into(),
        Check::AwsSessionName => format!("^{aws}{{2,64}}$"),
        Check::Url => format!("^https?://{HOST}(:{PORT})?(/[A-Za-z0-9._~/-]*)?$"),
        Check::Pem | Check::CertificatePem => format!("^{}$", pem_block("CERTIFICATE")),
        Check::PrivateKeyPem => format!("^{}$", pem_block("PRIVATE KEY")),
        Check::GcpServiceAccountJson => format!(
            "^\\{{\"type\":\"service_account\",\"client_email\":\"[a-z0-9.-]{{1,30}}@[a-z0-9.-]{{1,30}}\",\"private_key\":\"{}\"\\}}$",
            pem_block("PRIVATE KEY")
                .replace("\\n", "\\\\n")
                .replace("\\\\n?", "(\\\\n)?")
        ),
        Check::GcpExternalAccountJson => format!(
            "^\\{{\"type\":\"external_account\",\"audience\":\"[a-z0-9]{{1,20}}\",\"subject_token_type\":\"[a-z0-9:.]{{1,40}}\",\"token_url\":\"https://{HOST}/token\",\"credential_source\":\\{{\\}}\\}}$"
        ),
        Check::CredentialId => "^cred_[a-z2-7]{26}$".into(),
        Check::HeaderName | Check::ApiKeyPartName => "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$".into(),
        Check::Uuid => format!("^{uuid}$"),
        Check::AzureTenantId => {
            format!("^({uuid}|([a-z0-9]([a-z0-9-]{{0,20}}[a-z0-9])?\\.){{1,3}}[a-z]([a-z0-9-]{{0,20}}[a-z0-9])?)$")
        }
        Check::SshHostKey => {
            "^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5([A-Za-z0-9+/]{4}){1,16}( [A-Za-z0-9@.-]{1,30})?$".into()
        }
    })
}

/// The largest string a check takes, in bytes (= characters for ASCII).
fn check_max_len(check: Check) -> usize {
    match check {
        Check::Pem
        | Check::PrivateKeyPem
        | Check::CertificatePem
        | Check::GcpServiceAccountJson
        | Check::GcpExternalAccountJson => 256 * 1024,
        _ => 64 * 1024,
    }
}

/// The schema of one credential field or connection config field (see
/// `credvault_domain::credential_types::validate`). `kind` is the connector kind for config
/// fields, whose hosts and provider names have rules of their own.
fn field_schema(f: &FieldSchema, kind: Option<ConnectorKind>) -> Value {
    let string = |pattern: Option<String>| {
        let mut s = json!({"type": "string", "minLength": 1, "maxLength": check_max_len(f.check)});
        if let Some(p) = pattern {
            s["pattern"] = p.into();
        }
        s
    };
    let mut s = match f.kind {
        FieldKind::String => match (kind, f.name) {
            (Some(_), "host") => string(Some(format!("^{HOST}$"))),
            (
                Some(ConnectorKind::Snowflake | ConnectorKind::S3 | ConnectorKind::Gcs | ConnectorKind::AzureBlob),
                "account" | "bucket" | "account_name" | "container",
            ) => string(Some("^[A-Za-z0-9._-]+$".into())),
            (Some(_), "check_path") => string(Some("^/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?$".into())),
            _ => string(check_pattern(f.check)),
        },
        FieldKind::Integer if f.check == Check::Port => json!({"type": "integer", "minimum": 1, "maximum": 65535}),
        FieldKind::Integer => json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
        FieldKind::Boolean => json!({"type": "boolean"}),
        FieldKind::Timestamp => json!({"type": "string", "format": "date-time"}),
        FieldKind::Enum(values) => json!({"enum": values}),
        FieldKind::StringList => {
            let mut a = json!({"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64 * 1024}});
            if let Check::Count { min, max } = f.check {
                a["minItems"] = min.into();
                a["maxItems"] = max.into();
            }
            a
        }
        FieldKind::StringMap => json!({
            "type": "object", "maxProperties": 64,
            "propertyNames": {"pattern": check_pattern(f.check).unwrap_or_else(|| ".*".into())},
            "additionalProperties": {"type": "string", "maxLength": 64 * 1024, "pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f]*$"},
        }),
        FieldKind::Object(sub) => object_schema(sub, kind),
        FieldKind::List(sub) => {
            let mut a = json!({"type": "array", "items": object_schema(sub, kind)});
            if let Check::Count { min, max } = f.check {
                a["minItems"] = min.into();
                a["maxItems"] = max.into();
            }
            a
        }
    };
    if !f.description.is_empty() && s.is_object() {
        s["description"] = f.description.into();
    }
    if f.required { s } else { nullable(s) }
}

/// An object of fields: unknown members are refused, required ones must be present and not
/// null. An api_key part's name rule depends on its `in`: one branch per value.
fn object_schema(fields: &'static [FieldSchema], kind: Option<ConnectorKind>) -> Value {
    let build = |override_name: Option<(&str, Value)>| {
        let mut props = Map::new();
        let mut required = Vec::new();
        for f in fields {
            let mut s = field_schema(f, kind);
            if let Some((in_value, name_schema)) = &override_name {
                if f.check == Check::ApiKeyPartName {
                    s = name_schema.clone();
                } else if f.name == "in" {
                    s = json!({"const": in_value});
                }
            }
            props.insert(f.name.to_owned(), s);
            if f.required {
                required.push(f.name);
            }
        }
        json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
    };
    if fields.iter().any(|f| f.check == Check::ApiKeyPartName) {
        let header = json!({"type": "string", "pattern": check_pattern(Check::HeaderName)});
        let query = json!({"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_CONTROL});
        return json!({"oneOf": [build(Some(("header", header))), build(Some(("query", query)))]});
    }
    build(None)
}

/// Component name of a variant's fields.
fn fields_ref(ty: CredentialType, variant: &str) -> String {
    format!("CredentialFields.{}.{variant}", ty.as_str())
}

/// The `allowed_destinations` property of credential requests.
fn allowed_destinations() -> Value {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    // A wildcard names at least two labels (`*.example.com`, not `*.com`).
    let label = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?";
    let host = format!("(\\*\\.({label}\\.){{1,3}}[a-z]([a-z0-9-]{{0,20}}[a-z0-9])?|{HOST})");
    let ip = format!("({octet}\\.){{3}}{octet}(/([0-9]|[12][0-9]|3[0-2]))?");
    nullable(json!({
        "type": "array", "maxItems": credvault_domain::destinations::MAX_PATTERNS,
        "items": {"type": "string", "minLength": 1, "maxLength": 300, "pattern": format!("^({host}|{ip})(:{PORT})?$")},
        "description": "Where the secret may be sent: `host`, `*.suffix`, an IP address or a CIDR, each with an optional `:port` \
            (IPv6 as `[addr]:port`), or a URL (its host and port); the pattern states the common forms. Only those who may change the credential set or widen it; \
            a connection whose every destination is allowed may be wired by anyone who may attach. Replaces the whole list on PATCH.",
    }))
}

/// Labels: at most 32; keys 1–63 of `a-z0-9_.-/`; values at most 256 printable characters.
fn labels() -> Value {
    json!({"type": "object", "maxProperties": 32,
           "propertyNames": {"pattern": "^[a-z0-9_./-]{1,63}$"},
           "additionalProperties": {"type": "string", "maxLength": 256, "pattern": NO_CONTROL}})
}

fn schemas() -> Value {
    let ty_names: Vec<&str> = CredentialType::ALL.iter().map(|t| t.as_str()).collect();
    let roles = json!({"enum": ["admin", "integration_engineer", "builder", "auditor", "viewer", "worker"]});
    let keep = json!({"type": "array", "maxItems": 32, "uniqueItems": true, "items": {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"},
        "description": "top-level fields to carry over (secrets included) from the current version; not also given in `fields`"});
    let mut out = json!({
        "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"enum": Code::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(), "description": "one of `x-problem-codes`"},
            "field": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object"}}, "request_id": {"type": "string"}}},
        "CreateOrg": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {"name": name()}},
        "CreateWorkspace": {"type": "object", "required": ["org_id", "name"], "additionalProperties": false,
            "properties": {"org_id": id("org_"), "name": name()}},
        "CreatePrincipal": {"type": "object", "required": ["org_id", "kind", "name"], "additionalProperties": false,
            "properties": {"org_id": id("org_"), "kind": {"enum": ["user", "service_account"]}, "name": name()}},
        "CreateRoleBinding": {"type": "object", "required": ["principal_id", "role"], "additionalProperties": false,
            "properties": {"principal_id": principal_id(), "role": roles, "workspace_id": nullable(id("ws_")), "org_id": nullable(id("org_"))},
            "description": "exactly one of workspace_id and org_id",
            "oneOf": [
                {"required": ["workspace_id"], "properties": {"workspace_id": id("ws_"), "org_id": {"type": "null"}}},
                {"required": ["org_id"], "properties": {"org_id": id("org_"), "workspace_id": {"type": "null"}}},
            ]},
        "CreateToken": {"type": "object", "required": ["principal_id"], "additionalProperties": false,
            "properties": {"principal_id": principal_id(), "name": nullable(text(128)),
                           "expires_at": nullable(json!({"type": "string", "format": "date-time", "description": "in the future"}))}},
        "OrgSettingsPatch": {"type": "object", "additionalProperties": false, "properties": {
            "enabled_types": nullable(json!({"type": "array", "items": {"enum": ty_names}})),
            "allow_environment_override": nullable(json!({"type": "boolean"})),
            "recovery_window_days": nullable(json!({"type": "integer", "minimum": 1, "maximum": 365})),
            "previous_grace_hours": nullable(json!({"type": "integer", "minimum": 0, "maximum": 2160})),
            "expired_grace_hours": nullable(json!({"type": "integer", "minimum": 0, "maximum": 2160})),
            "expiry_alert_days": nullable(json!({"type": "array", "maxItems": 10, "items": {"type": "integer", "minimum": 1, "maximum": 365},
                "description": "days before an expiry date and before a rotation period ends at which alerts fire"})),
            "auto_disable_on_target_auth_failures": nullable(json!({"type": "boolean"})),
            "role_policy": nullable(json!({"type": "object", "additionalProperties": false,
                "required": ["credential.create", "credential.attach", "credential.reveal"],
                "properties": {"credential.create": {"type": "array", "items": roles}, "credential.attach": {"type": "array", "items": roles},
                               "credential.reveal": {"type": "array", "items": roles}}}))}},
        "PatchCredential": {"type": "object", "additionalProperties": false, "properties": {
            "name": nullable(name()), "labels": nullable(labels()), "description": nullable(text(4096)),
            "expires_at": nullable(json!({"type": "string", "format": "date-time"})),
            "rotation_period_days": nullable(json!({"type": "integer", "minimum": 1, "maximum": 3650})),
            "allowed_destinations": allowed_destinations()}},
        "PatchConnection": {"type": "object", "additionalProperties": false, "properties": {
            "name": nullable(name()),
            "config": {"anyOf": ConnectorKind::ALL.iter().map(|k| json!({"$ref": format!("#/components/schemas/ConnectionConfig.{}", k.as_str())})).collect::<Vec<_>>(),
                       "description": "the whole config of the connection's kind"},
            "description": nullable(text(4096))}},
        "AttachCredential": {"type": "object", "required": ["credential_id"], "additionalProperties": false, "properties": {
            "credential_id": id("cred_"), "override_reason": nullable(text(1024))}},
        "CreatePipeline": {"type": "object", "required": ["name", "workspace_id"], "additionalProperties": false, "properties": {
            "name": name(), "workspace_id": id("ws_"), "connection_ids": {"type": "array", "items": id("conn_")},
            "description": nullable(text(4096))}},
        "PatchPipeline": {"type": "object", "additionalProperties": false, "properties": {
            "name": nullable(name()), "connection_ids": nullable(json!({"type": "array", "items": id("conn_")})), "description": nullable(text(4096))}},
        "CreateReview": {"type": "object", "required": ["decision"], "additionalProperties": false, "properties": {
            "decision": {"enum": ["keep", "remove"]}, "note": nullable(text(4096))}},
        "ResolveRequest": {"type": "object", "required": ["run_id"], "additionalProperties": false,
            "description": "The connection by `connection_id`, or by `workspace_id` and `connection_name` (its name in that workspace).",
            "oneOf": [
                {"required": ["connection_id"], "not": {"anyOf": [{"required": ["workspace_id"]}, {"required": ["connection_name"]}]}},
                {"required": ["workspace_id", "connection_name"], "not": {"required": ["connection_id"]}}],
            "properties": {
            "connection_id": {"type": "string"}, "workspace_id": {"type": "string"}, "connection_name": name(), "run_id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_CONTROL},
            "pipeline_id": nullable(json!({"type": "string"})), "version": nullable(json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}))}},
        "RotateRequest": {"type": "object", "required": ["fields"], "additionalProperties": false, "properties": {
            "fields": {"$ref": "#/components/schemas/CredentialFields"},
            "allow_untestable": {"type": "boolean", "description": "connections whose test answers `unsupported` do not block promotion"},
            "keep": keep}},
        "SetPassword": {"type": "object", "required": ["password"], "additionalProperties": false, "properties": {
            "password": {"type": "string", "minLength": 12, "writeOnly": true}, "current_password": nullable(json!({"type": "string", "writeOnly": true}))}},
        "OffboardRequest": {"type": "object", "additionalProperties": false, "properties": {"transfer_to": nullable(principal_id())}},
        "ResolveReport": {"type": "object", "required": ["connection_id", "run_id", "outcome"], "additionalProperties": false, "properties": {
            "connection_id": {"type": "string"}, "run_id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_CONTROL},
            "version": nullable(json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX})),
            "outcome": {"enum": ["ok", "auth_failed", "error"]}}},
        "AuthorizeRequest": {"type": "object", "additionalProperties": false, "properties": {"as": nullable(principal_id())}},
        "TestRequest": {"type": "object", "additionalProperties": false, "properties": {
            "version": nullable(json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}))}},
        "CreateVersion": {"type": "object", "required": ["fields"], "additionalProperties": false, "properties": {
            "fields": {"$ref": "#/components/schemas/CredentialFields"}, "mode": {"enum": ["stage", "replace"]}, "keep": keep}},
    });
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    // Credentials: one branch per type, variant and scope, so a valid body is one the server takes.
    let mut create = Vec::new();
    let mut any_fields = Vec::new();
    for ts in all_schemas() {
        for v in ts.variants {
            let r = fields_ref(ts.ty, v.name);
            let mut f = object_schema(v.fields, None);
            if v.fields.iter().all(|f| !f.required) {
                f = nullable(f);
            }
            map.insert(r.clone(), f);
            any_fields.push(json!({"$ref": format!("#/components/schemas/{r}")}));
            let variant = if ts.default_variant == Some(v.name) {
                nullable(json!({"const": v.name}))
            } else {
                json!({"const": v.name})
            };
            let mut required = vec!["name", "type", "environment", "fields"];
            if ts.default_variant != Some(v.name) {
                required.push("variant");
            }
            for scope in ["workspace_id", "org_id"] {
                let mut props = json!({
                    "name": name(), "type": {"const": ts.ty.as_str()}, "variant": variant,
                    "workspace_id": {"type": "null"}, "org_id": {"type": "null"},
                    "environment": environment(), "labels": nullable(labels()), "description": nullable(text(4096)),
                    "expires_at": nullable(json!({"type": "string", "format": "date-time"})),
                    "rotation_period_days": nullable(json!({"type": "integer", "minimum": 1, "maximum": 3650})),
                    "allowed_destinations": allowed_destinations(),
                    "fields": {"$ref": format!("#/components/schemas/{r}")},
                });
                props[scope] = if scope == "workspace_id" { id("ws_") } else { id("org_") };
                let mut req = required.clone();
                req.push(scope);
                create.push(
                    json!({"type": "object", "additionalProperties": false, "required": req, "properties": props}),
                );
            }
        }
    }
    map.insert(
        "CreateCredential".into(),
        json!({"description": "Exactly one of workspace_id and org_id; `fields` are those of the type and variant (see x-credential-types).",
               "oneOf": create}),
    );
    map.insert(
        "CredentialFields".into(),
        json!({"description": "the fields of the credential's own type and variant", "anyOf": any_fields}),
    );
    // Connections: one branch per kind, picked by `kind`.
    let mut mapping = Map::new();
    for k in ConnectorKind::ALL {
        let component = format!("CreateConnection.{}", k.as_str());
        let required = if k.config_fields().iter().any(|f| f.required) {
            json!(["name", "workspace_id", "environment", "kind", "config"])
        } else {
            json!(["name", "workspace_id", "environment", "kind"])
        };
        map.insert(
            component.clone(),
            json!({"type": "object", "required": required, "additionalProperties": false, "properties": {
                "name": name(), "workspace_id": id("ws_"), "environment": environment(), "kind": {"const": k.as_str()},
                "config": {"$ref": format!("#/components/schemas/ConnectionConfig.{}", k.as_str())},
                "credential_id": nullable(id("cred_")), "override_reason": nullable(text(1024)), "description": nullable(text(4096))}}),
        );
        mapping.insert(
            k.as_str().to_owned(),
            format!("#/components/schemas/{component}").into(),
        );
    }
    map.insert(
        "CreateConnection".into(),
        json!({"description": "`config` per kind; see GET /v1/connector-kinds",
               "oneOf": mapping.values().map(|r| json!({"$ref": r})).collect::<Vec<_>>(),
               "discriminator": {"propertyName": "kind", "mapping": mapping}}),
    );
    for k in ConnectorKind::ALL {
        map.insert(
            format!("ConnectionConfig.{}", k.as_str()),
            if k.config_fields().iter().any(|f| f.required) {
                object_schema(k.config_fields(), Some(k))
            } else {
                nullable(object_schema(k.config_fields(), Some(k)))
            },
        );
    }
    out
}
