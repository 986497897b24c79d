//! Declarative schemas for the seven credential types (PRODUCT.md section 2), and the validation
//! that splits submitted `fields` into a public part (stored in the clear, returned by the API)
//! and a secret part (encrypted at rest, only ever returned by `/v1/resolve`).
//!
//! * [`schema`] / [`all_schemas`]: the static tables — types, variants, fields, which fields are
//!   secret, and the format [`Check`] each field must pass.
//! * [`types_json`]: the body of `GET /v1/credential-types`.
//! * [`resolve_variant`]: `variant` handling (defaults, `variant_required`, `invalid_variant`).
//! * [`validate`]: checks `fields` against a variant and splits them ([`ValidatedFields`]).
//! * [`merge`]: puts the two halves back together.
//!
//! Error messages ([`FieldError::message`]) never contain the submitted value of a secret field.

mod checks;
mod schemas;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::{Map, Value, json};

pub use checks::OAUTH_OWN_PARAMS;
pub use validate::{merge, validate, validate_plain};

/// The kind of a credential, as it appears on the wire (`"type": "api_key"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialType {
    Aws,
    Azure,
    Gcp,
    Database,
    ApiKey,
    Oauth,
    Password,
}

impl CredentialType {
    /// Every type, in the order used by [`all_schemas`] and [`types_json`].
    pub const ALL: [CredentialType; 7] = [
        CredentialType::Aws,
        CredentialType::Azure,
        CredentialType::Gcp,
        CredentialType::Database,
        CredentialType::ApiKey,
        CredentialType::Oauth,
        CredentialType::Password,
    ];

    /// The wire name (`"aws"`, …, `"api_key"`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            CredentialType::Aws => "aws",
            CredentialType::Azure => "azure",
            CredentialType::Gcp => "gcp",
            CredentialType::Database => "database",
            CredentialType::ApiKey => "api_key",
            CredentialType::Oauth => "oauth",
            CredentialType::Password => "password",
        }
    }

    /// The inverse of [`CredentialType::as_str`] (exact, case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The schema of one credential type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeSchema {
    pub ty: CredentialType,
    pub title: &'static str,
    pub description: &'static str,
    pub variants: &'static [VariantSchema],
    /// The variant used when the request omits `variant` (or sends `null`): `"password"` for
    /// `database`, the only variant for single-variant types, `None` when a variant is required.
    pub default_variant: Option<&'static str>,
}

impl TypeSchema {
    /// The variant with this wire name.
    pub fn variant(&self, name: &str) -> Option<&'static VariantSchema> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// One variant of a type (e.g. `aws` / `assume_role`) and its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VariantSchema {
    pub name: &'static str,
    pub title: &'static str,
    pub fields: &'static [FieldSchema],
}

/// One field of a variant (or of an object / list item).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSchema {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Secret fields go to [`ValidatedFields::secret`] (encrypted at rest). On an `Object` or
    /// `List` field it makes every leaf below it secret.
    pub secret: bool,
    /// A required field must be present, non-null and (for strings) non-empty.
    pub required: bool,
    pub description: &'static str,
    pub check: Check,
}

/// The JSON shape of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A JSON string.
    String,
    /// A JSON integer (not `5.0`, not `"5"`).
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A JSON array of non-empty strings.
    StringList,
    /// An RFC 3339 timestamp string, e.g. `2025-01-31T12:00:00Z`.
    Timestamp,
    /// A nested JSON object with these fields.
    Object(&'static [FieldSchema]),
    /// A JSON array of objects, each with these fields.
    List(&'static [FieldSchema]),
    /// A JSON string, one of these values.
    Enum(&'static [&'static str]),
    /// A JSON object of string → string with free-form keys (at most 64 entries). The field's
    /// [`Check`] applies to the keys; the values must not contain control characters (CR/LF
    /// would allow header injection). Used by `api_key.headers`.
    StringMap,
}

impl FieldKind {
    /// The name used in [`types_json`] (`"string"`, `"integer"`, `"string_list"`,
    /// `"timestamp"`, `"object"`, `"list"`, `"enum"`, `"string_map"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            FieldKind::String => "string",
            FieldKind::Integer => "integer",
            FieldKind::Boolean => "boolean",
            FieldKind::StringList => "string_list",
            FieldKind::Timestamp => "timestamp",
            FieldKind::Object(_) => "object",
            FieldKind::List(_) => "list",
            FieldKind::Enum(_) => "enum",
            FieldKind::StringMap => "string_map",
        }
    }
}

/// The format a field's value must have, beyond its [`FieldKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    None,
    /// `arn:<aws|aws-cn|aws-us-gov>:iam::<12 digits>:role/<path/name>`; the part after `role/`
    /// is 1–512 chars of `[A-Za-z0-9_+=,.@/-]` with no empty segment, the name 1–64 chars.
    AwsRoleArn,
    /// 16–128 chars of `[A-Z0-9]`.
    AwsAccessKeyId,
    /// Like `us-east-1`: dash-separated lowercase segments, the first letters, the last digits.
    AwsRegion,
    /// 2–1224 chars of `[A-Za-z0-9_+=,.@:/-]`.
    AwsExternalId,
    /// 2–64 chars of `[A-Za-z0-9_+=,.@-]`.
    AwsSessionName,
    /// An integer in 1..=65535.
    Port,
    /// An absolute `http://` or `https://` URL with a host and no userinfo (`user:pw@`).
    Url,
    /// One or more PEM blocks (`-----BEGIN X-----`, base64, `-----END X-----`, labels matching,
    /// RFC 1421 headers such as `Proc-Type` allowed, text outside the blocks ignored).
    Pem,
    /// Exactly one PEM block whose label ends with `PRIVATE KEY` (PKCS#8, `RSA`, `EC`,
    /// `ENCRYPTED`, `OPENSSH` …); an `EC PARAMETERS` block may accompany it.
    PrivateKeyPem,
    /// One or more `CERTIFICATE` PEM blocks (a leaf and its chain).
    CertificatePem,
    /// A JSON object (in a string) with `"type": "service_account"`, `client_email` containing
    /// `@`, `private_key` passing [`Check::PrivateKeyPem`]; `project_id` optional (string);
    /// `token_uri` optional ([`Check::Url`]).
    GcpServiceAccountJson,
    /// A JSON object (in a string) with `"type": "external_account"`, non-empty `audience` and
    /// `subject_token_type`, `token_url` ([`Check::Url`]), a `credential_source` object, and an
    /// optional `service_account_impersonation_url` ([`Check::Url`]).
    GcpExternalAccountJson,
    /// `cred_` + 26 chars of `[a-z2-7]`.
    CredentialId,
    /// An RFC 7230 token (1–256 chars).
    HeaderName,
    /// An api_key part name: a [`Check::HeaderName`] when the part's sibling `in` is `header`;
    /// when it is `query`, any 1–128 chars without control characters.
    ApiKeyPartName,
    /// An OAuth authorization request parameter name: 1–128 of `[A-Za-z0-9._~-]`, and none
    /// that credvault sets itself (`response_type`, `client_id`, `redirect_uri`, `scope`,
    /// `state`, `code_challenge`, `code_challenge_method`).
    OAuthParamName,
    /// `8-4-4-4-12` hexadecimal digits (either case).
    Uuid,
    /// An Azure tenant: a [`Check::Uuid`] or a DNS name with at least two labels
    /// (`contoso.onmicrosoft.com`).
    AzureTenantId,
    /// Non-empty (which every string field already must be); a marker for free-form fields.
    NonEmpty,
    /// An SSH public host key: `<algorithm> <base64> [comment]`, optionally preceded by a
    /// known_hosts host pattern; the algorithm is one of `ssh-ed25519`, `ssh-rsa`,
    /// `ecdsa-sha2-nistp{256,384,521}`, `sk-ssh-ed25519@openssh.com`,
    /// `sk-ecdsa-sha2-nistp256@openssh.com`, and the decoded blob must name the same algorithm.
    SshHostKey,
    /// For `List`, `StringList`: the number of items must be in `min..=max`.
    Count {
        min: u32,
        max: u32,
    },
}

impl Check {
    /// The name used as `"format"` in [`types_json`] (`None` for [`Check::None`],
    /// [`Check::NonEmpty`] and [`Check::Count`], which is rendered as `min_items`/`max_items`).
    pub fn format_name(&self) -> Option<&'static str> {
        Some(match self {
            Check::None | Check::NonEmpty | Check::Count { .. } => return None,
            Check::AwsRoleArn => "aws_role_arn",
            Check::AwsAccessKeyId => "aws_access_key_id",
            Check::AwsRegion => "aws_region",
            Check::AwsExternalId => "aws_external_id",
            Check::AwsSessionName => "aws_session_name",
            Check::Port => "port",
            Check::Url => "url",
            Check::Pem => "pem",
            Check::PrivateKeyPem => "private_key_pem",
            Check::CertificatePem => "certificate_pem",
            Check::GcpServiceAccountJson => "gcp_service_account_json",
            Check::GcpExternalAccountJson => "gcp_external_account_json",
            Check::CredentialId => "credential_id",
            Check::HeaderName => "header_name",
            Check::ApiKeyPartName => "api_key_part_name",
            Check::OAuthParamName => "oauth_parameter_name",
            Check::Uuid => "uuid",
            Check::AzureTenantId => "azure_tenant_id",
            Check::SshHostKey => "ssh_host_key",
        })
    }
}

/// The schema of one type.
pub fn schema(ty: CredentialType) -> &'static TypeSchema {
    // `SCHEMAS` is declared in `CredentialType::ALL` order (checked by a test).
    &schemas::SCHEMAS[ty as usize]
}

/// All seven schemas, in [`CredentialType::ALL`] order.
pub fn all_schemas() -> &'static [TypeSchema] {
    &schemas::SCHEMAS
}

/// The JSON served by `GET /v1/credential-types` for the given enabled types (in
/// [`CredentialType::ALL`] order, each once):
///
/// ```json
/// [{"type": "database", "title": "…", "description": "…", "default_variant": "password",
///   "variants": [{"name": "password", "title": "…", "fields": [
///     {"name": "password", "kind": "string", "secret": true, "required": true,
///      "description": "…"},
///     {"name": "ssh_tunnel", "kind": "object", …, "fields": [ … ]}]}]}]
/// ```
///
/// Each field also carries `"format"` (see [`Check::format_name`]) when it has one,
/// `"values"` for enums, `"fields"` for objects and lists, and `"min_items"` / `"max_items"`
/// for counted lists.
pub fn types_json(enabled: &[CredentialType]) -> Value {
    Value::Array(
        all_schemas()
            .iter()
            .filter(|s| enabled.contains(&s.ty))
            .map(|s| {
                json!({
                    "type": s.ty.as_str(),
                    "title": s.title,
                    "description": s.description,
                    "default_variant": s.default_variant,
                    "variants": s.variants.iter().map(|v| json!({
                        "name": v.name,
                        "title": v.title,
                        "fields": fields_json(v.fields),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn fields_json(fields: &[FieldSchema]) -> Value {
    Value::Array(
        fields
            .iter()
            .map(|f| {
                let mut m = Map::new();
                m.insert("name".into(), f.name.into());
                m.insert("kind".into(), f.kind.as_str().into());
                m.insert("secret".into(), f.secret.into());
                m.insert("required".into(), f.required.into());
                m.insert("description".into(), f.description.into());
                if let Some(format) = f.check.format_name() {
                    m.insert("format".into(), format.into());
                }
                if let Check::Count { min, max } = f.check {
                    m.insert("min_items".into(), min.into());
                    m.insert("max_items".into(), max.into());
                }
                match f.kind {
                    FieldKind::Object(sub) | FieldKind::List(sub) => {
                        m.insert("fields".into(), fields_json(sub));
                    }
                    FieldKind::Enum(values) => {
                        m.insert("values".into(), json!(values));
                    }
                    _ => {}
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// One problem with the submitted fields.
///
/// `field` is a path from the request root such as `"fields.ssh_tunnel.port"`,
/// `"fields.parts[1].value"` or `"variant"`. `message` is for humans and never contains the
/// submitted value of a secret field; a non-secret value may be quoted when it is at most 64
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    /// One of `required`, `unknown_field`, `wrong_type`, `invalid_format`, `invalid_variant`,
    /// `variant_required`, `too_long`, `empty`.
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Fields split into the part stored in the clear and the part that will be encrypted.
#[derive(Debug)]
pub struct ValidatedFields {
    /// The resolved variant name for types with several variants (`database` without a variant
    /// gives `Some("password")`); `None` for single-variant types (`api_key`, `password`).
    pub variant: Option<String>,
    /// An object with only the non-secret fields, same nesting (objects are always present
    /// here, lists keep their length; items without public fields are `{}`).
    pub public: Value,
    /// An object with only the secret leaves, same nesting; lists keep element positions (items
    /// without secrets are `{}`); objects and lists without any secret are left out.
    pub secret: crate::secret::SecretJson,
    /// Paths of the secret leaves that were set, relative to `fields`, in schema order, e.g.
    /// `["password", "ssh_tunnel.private_key_pem", "parts[0].value"]`.
    pub secret_fields_set: Vec<String>,
}

/// Resolves the requested variant. Types with one variant, and `database` (default
/// `password`), accept `None`; the others answer `variant_required`. An unknown name answers
/// `invalid_variant`, listing the allowed names.
pub fn resolve_variant(ty: CredentialType, variant: Option<&str>) -> Result<&'static VariantSchema, FieldError> {
    let s = schema(ty);
    let names = || s.variants.iter().map(|v| v.name).collect::<Vec<_>>().join(", ");
    match variant {
        None => s.default_variant.and_then(|d| s.variant(d)).ok_or_else(|| {
            FieldError::new(
                "variant",
                "variant_required",
                format!("type {ty} needs a variant, one of: {}", names()),
            )
        }),
        Some(name) => s.variant(name).ok_or_else(|| {
            let got = checks::quote_suffix(name);
            FieldError::new(
                "variant",
                "invalid_variant",
                format!("is not a variant of type {ty}; allowed: {}{got}", names()),
            )
        }),
    }
}
