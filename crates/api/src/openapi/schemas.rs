//! The document's component schemas: request bodies, the credential and connection field
//! schemas generated from the domain's declarations, and their patterns.

use super::*;

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
        Check::OAuthParamName => format!(
            "^(?!({})$)[A-Za-z0-9._~-]{{1,128}}$",
            credvault_domain::credential_types::OAUTH_OWN_PARAMS.join("|")
        ),
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

/// The TLS setting of a kind that offers RDS IAM authentication (`auth: iam`).
fn iam_tls_field(k: ConnectorKind) -> Option<&'static str> {
    match k {
        ConnectorKind::Postgres => Some("sslmode"),
        ConnectorKind::Mysql => Some("tls"),
        _ => None,
    }
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

pub(super) fn schemas() -> Value {
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
        "RevokeGrantRequest": {"type": "object", "additionalProperties": false, "required": ["reason"],
            "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1024}}},
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
        let mut config = object_schema(k.config_fields(), Some(k));
        if let Some(tls) = iam_tls_field(k) {
            // `auth: iam` needs its user and region and TLS; the IAM fields come only with it.
            config["if"] = json!({"properties": {"auth": {"const": "iam"}}, "required": ["auth"]});
            config["then"] = json!({"required": ["iam_user", "region"], "properties": {
                "iam_user": {"type": "string"}, "region": {"type": "string"},
                tls: {"enum": if k == ConnectorKind::Postgres { json!(["require", "verify-ca", "verify-full", null]) } else { json!(["require", null]) }}}});
            config["else"] = json!({"properties": {
                "iam_user": {"type": "null"}, "region": {"type": "null"}, "sts_endpoint_url": {"type": "null"}}});
        }
        map.insert(
            format!("ConnectionConfig.{}", k.as_str()),
            if k.config_fields().iter().any(|f| f.required) {
                config
            } else {
                nullable(config)
            },
        );
    }
    out
}
