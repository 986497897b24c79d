//! Connector kinds: what a connection may point at, the non-secret configuration each kind
//! takes (validated like credential fields; errors name `config.<field>`), and which
//! credential types and variants fit it. Driver options come only from these allowlists —
//! never a raw DSN from the user.

use serde_json::{Value, json};

use crate::credential_types::{Check, CredentialType, FieldError, FieldKind, FieldSchema, validate_plain};

/// The kinds of connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// Microsoft SQL Server.
    Sqlserver,
    /// Oracle Database.
    Oracle,
    /// Snowflake.
    Snowflake,
    /// Google BigQuery.
    Bigquery,
    /// Amazon Redshift.
    Redshift,
    /// Amazon S3 (or an S3-compatible endpoint).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    AzureBlob,
    /// A REST/HTTP API.
    Http,
    /// FTP (optionally with explicit TLS).
    Ftp,
    /// LDAP.
    Ldap,
    /// A SaaS API reached with OAuth.
    OauthSaas,
}

impl ConnectorKind {
    /// Every kind.
    pub const ALL: [ConnectorKind; 14] = [
        ConnectorKind::Postgres,
        ConnectorKind::Mysql,
        ConnectorKind::Sqlserver,
        ConnectorKind::Oracle,
        ConnectorKind::Snowflake,
        ConnectorKind::Bigquery,
        ConnectorKind::Redshift,
        ConnectorKind::S3,
        ConnectorKind::Gcs,
        ConnectorKind::AzureBlob,
        ConnectorKind::Http,
        ConnectorKind::Ftp,
        ConnectorKind::Ldap,
        ConnectorKind::OauthSaas,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Postgres => "postgres",
            ConnectorKind::Mysql => "mysql",
            ConnectorKind::Sqlserver => "sqlserver",
            ConnectorKind::Oracle => "oracle",
            ConnectorKind::Snowflake => "snowflake",
            ConnectorKind::Bigquery => "bigquery",
            ConnectorKind::Redshift => "redshift",
            ConnectorKind::S3 => "s3",
            ConnectorKind::Gcs => "gcs",
            ConnectorKind::AzureBlob => "azure_blob",
            ConnectorKind::Http => "http",
            ConnectorKind::Ftp => "ftp",
            ConnectorKind::Ldap => "ldap",
            ConnectorKind::OauthSaas => "oauth_saas",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<ConnectorKind> {
        ConnectorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The configuration fields of this kind.
    pub fn config_fields(self) -> &'static [FieldSchema] {
        match self {
            ConnectorKind::Postgres => POSTGRES,
            ConnectorKind::Mysql => MYSQL,
            ConnectorKind::Sqlserver => SQLSERVER,
            ConnectorKind::Oracle => ORACLE,
            ConnectorKind::Snowflake => SNOWFLAKE,
            ConnectorKind::Bigquery => BIGQUERY,
            ConnectorKind::Redshift => REDSHIFT,
            ConnectorKind::S3 => S3,
            ConnectorKind::Gcs => GCS,
            ConnectorKind::AzureBlob => AZURE_BLOB,
            ConnectorKind::Http => HTTP,
            ConnectorKind::Ftp => FTP,
            ConnectorKind::Ldap => LDAP,
            ConnectorKind::OauthSaas => OAUTH_SAAS,
        }
    }

    /// Which credential types (and, where it matters, variants) fit this kind. `None` as the
    /// variant list means every variant of the type.
    pub fn accepts(self) -> &'static [(CredentialType, Option<&'static [&'static str]>)] {
        use CredentialType as T;
        match self {
            // With `auth: iam`, an RDS/Aurora database takes an AWS access key, from which
            // resolve makes a 15-minute IAM token (see `fits_config`).
            ConnectorKind::Postgres | ConnectorKind::Mysql => {
                &[(T::Database, Some(&["password"])), (T::Aws, Some(&["access_key"]))]
            }
            ConnectorKind::Sqlserver | ConnectorKind::Oracle => &[(T::Database, Some(&["password"]))],
            ConnectorKind::Snowflake => &[(T::Database, None)],
            ConnectorKind::Redshift => &[(T::Database, Some(&["password"])), (T::Aws, None)],
            ConnectorKind::Bigquery | ConnectorKind::Gcs => &[(T::Gcp, None)],
            ConnectorKind::S3 => &[(T::Aws, None)],
            ConnectorKind::AzureBlob => &[(T::Azure, None)],
            ConnectorKind::Http => &[(T::ApiKey, None), (T::Password, None), (T::Oauth, None)],
            ConnectorKind::Ftp | ConnectorKind::Ldap => &[(T::Password, None)],
            ConnectorKind::OauthSaas => &[(T::Oauth, None)],
        }
    }

    /// Whether a credential of `ty`/`variant` fits this kind.
    pub fn fits(self, ty: CredentialType, variant: Option<&str>) -> bool {
        self.accepts()
            .iter()
            .any(|(t, vs)| *t == ty && vs.is_none_or(|vs| variant.is_none_or(|v| vs.contains(&v))))
    }

    /// Whether a credential of `ty`/`variant` fits a connection of this kind with `config`:
    /// [`ConnectorKind::fits`], and for PostgreSQL and MySQL the authentication the config asks
    /// for — `auth: iam` takes an `aws` credential, password authentication a `database` one.
    /// `Err` says why not.
    pub fn fits_config(self, ty: CredentialType, variant: Option<&str>, config: &Value) -> Result<(), String> {
        if !self.fits(ty, variant) {
            return Err(format!("it takes: {}", self.accepts_text()));
        }
        if matches!(self, ConnectorKind::Postgres | ConnectorKind::Mysql) {
            let iam = config.get("auth").and_then(Value::as_str) == Some("iam");
            match (iam, ty == CredentialType::Aws) {
                (true, false) => return Err("the connection authenticates with an IAM token (auth: iam), which is made from an aws (access_key) credential".into()),
                (false, true) => return Err("an aws credential logs in to a database only through an IAM token: set the connection's auth to iam (with iam_user and region)".into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// A human list of what fits, for error messages.
    pub fn accepts_text(self) -> String {
        self.accepts()
            .iter()
            .map(|(t, vs)| match vs {
                Some(vs) => format!("{} ({})", t.as_str(), vs.join(", ")),
                None => t.as_str().to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Default port, filled in when the config leaves it out.
    pub fn default_port(self) -> Option<i64> {
        match self {
            ConnectorKind::Postgres => Some(5432),
            ConnectorKind::Mysql => Some(3306),
            ConnectorKind::Sqlserver => Some(1433),
            ConnectorKind::Oracle => Some(1521),
            ConnectorKind::Redshift => Some(5439),
            ConnectorKind::Ftp => Some(21),
            ConnectorKind::Ldap => Some(389),
            _ => None,
        }
    }
}

/// Validates a connection's config for `kind` and fills in defaults.
pub fn validate_config(kind: ConnectorKind, config: Value) -> Result<Value, Vec<FieldError>> {
    let mut v = validate_plain(kind.config_fields(), config, "config")?;
    if let (Some(port), Value::Object(m)) = (kind.default_port(), &mut v) {
        // LDAP over TLS has its own well-known port.
        let port = if kind == ConnectorKind::Ldap && m.get("ldaps") == Some(&Value::Bool(true)) {
            636
        } else {
            port
        };
        m.entry("port").or_insert(json!(port));
    }
    let mut errors = Vec::new();
    // An IAM token is made for a user and a region: both are needed with `auth: iam`, and
    // only then (an STS endpoint on a password connection would widen where its password may
    // go for nothing). RDS accepts IAM tokens only over TLS: `require` unless verify-full.
    if matches!(kind, ConnectorKind::Postgres | ConnectorKind::Mysql) {
        let iam = v.get("auth").and_then(Value::as_str) == Some("iam");
        for name in ["iam_user", "region", "sts_endpoint_url"] {
            let given = v.get(name).is_some_and(|x| !x.is_null());
            if iam && name != "sts_endpoint_url" && v.get(name).and_then(Value::as_str).is_none_or(str::is_empty) {
                errors.push(FieldError {
                    field: format!("config.{name}"),
                    code: "required",
                    message: "required with auth: iam".into(),
                });
            } else if !iam && given {
                errors.push(FieldError {
                    field: format!("config.{name}"),
                    code: "unknown_field",
                    message: "only with auth: iam".into(),
                });
            }
        }
        let tls = if kind == ConnectorKind::Postgres {
            "sslmode"
        } else {
            "tls"
        };
        if let (true, Value::Object(m)) = (iam, &mut v) {
            let mode = m.entry(tls).or_insert(json!("require"));
            if mode.is_null() {
                *mode = json!("require");
            }
            if matches!(mode.as_str(), Some("disable" | "prefer")) {
                errors.push(FieldError {
                    field: format!("config.{tls}"),
                    code: "invalid_format",
                    message: "an IAM token goes only over TLS: require, verify-ca or verify-full".into(),
                });
            }
        }
    }
    // Fields that name a host under the provider's own domain (`{account}.snowflakecomputing.com`,
    // a bucket's virtual host): letters, digits, `-`, `_` and `.` only, so a value cannot move
    // the host out of the provider's domain (`evil.example/`, `x@evil.example`).
    for name in provider_host_fields(kind) {
        if let Some(s) = v.get(*name).and_then(Value::as_str)
            && !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errors.push(FieldError {
                field: format!("config.{name}"),
                code: "invalid_format",
                message: "must be letters, digits, '-', '_' and '.' only".into(),
            });
        }
    }
    // Every destination must be a host and port (the checks of credential destinations rest
    // on it), and a check path must stay on the base URL's host.
    match crate::destinations::connection_destinations(kind, &v) {
        Err((field, message)) => errors.push(FieldError {
            field,
            code: "invalid_format",
            message,
        }),
        Ok(dests) => {
            if let (Some(base), Some(joined)) = (
                dests.iter().find(|d| d.field == "config.base_url"),
                dests.iter().find(|d| d.field == "config.check_path"),
            ) && base.dest != joined.dest
            {
                errors.push(FieldError {
                    field: "config.check_path".into(),
                    code: "invalid_format",
                    message: "must be a path on the base URL's host (it may not name another host or port)".into(),
                });
            }
        }
    }
    if errors.is_empty() { Ok(v) } else { Err(errors) }
}

/// Config fields a worker turns into a host under the provider's domain.
fn provider_host_fields(kind: ConnectorKind) -> &'static [&'static str] {
    match kind {
        ConnectorKind::Snowflake => &["account"],
        ConnectorKind::S3 | ConnectorKind::Gcs => &["bucket"],
        ConnectorKind::AzureBlob => &["account_name", "container"],
        _ => &[],
    }
}

/// The JSON served by `GET /v1/connector-kinds`.
pub fn kinds_json() -> Value {
    Value::Array(
        ConnectorKind::ALL
            .iter()
            .map(|k| {
                json!({
                    "kind": k.as_str(),
                    "config": k.config_fields().iter().map(|f| json!({
                        "name": f.name, "kind": f.kind.as_str(), "required": f.required, "description": f.description,
                        "values": match f.kind { FieldKind::Enum(v) => json!(v), _ => Value::Null },
                    })).collect::<Vec<_>>(),
                    "accepts": k.accepts().iter().map(|(t, vs)| json!({"type": t.as_str(), "variants": vs})).collect::<Vec<_>>(),
                    "default_port": k.default_port(),
                })
            })
            .collect(),
    )
}

/// Environments recognised in names (`dev-`, `staging-`, `prod-` prefixes).
const NAME_ENVS: [&str; 3] = ["dev", "staging", "prod"];

/// A warning when a name follows the `dev-`/`staging-`/`prod-` convention but contradicts the
/// environment tag (e.g. `prod-warehouse` tagged `dev`), so wrong wiring shows in reviews.
pub fn naming_warning(name: &str, environment: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let prefix = NAME_ENVS.iter().find(|e| {
        lower
            .strip_prefix(**e)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('_') || rest.starts_with('.'))
    })?;
    (*prefix != environment).then(|| format!("the name starts with `{prefix}-` but the environment is `{environment}`"))
}

const fn f(
    name: &'static str,
    kind: FieldKind,
    required: bool,
    check: Check,
    description: &'static str,
) -> FieldSchema {
    FieldSchema {
        name,
        kind,
        secret: false,
        required,
        description,
        check,
    }
}

const HOST: FieldSchema = f(
    "host",
    FieldKind::String,
    true,
    Check::NonEmpty,
    "Host name or IP address",
);
const PORT: FieldSchema = f(
    "port",
    FieldKind::Integer,
    false,
    Check::Port,
    "TCP port (default for the kind)",
);
const DATABASE: FieldSchema = f("database", FieldKind::String, true, Check::NonEmpty, "Database name");
const CONNECT_TIMEOUT: FieldSchema = f(
    "connect_timeout_secs",
    FieldKind::Integer,
    false,
    Check::None,
    "Connect timeout in seconds",
);

/// RDS/Aurora IAM database authentication (PostgreSQL and MySQL).
const IAM_AUTH: FieldSchema = f(
    "auth",
    FieldKind::Enum(&["password", "iam"]),
    false,
    Check::None,
    "password (the credential's), or iam: a 15-minute RDS IAM token made at resolve from an aws credential",
);
const IAM_USER: FieldSchema = f(
    "iam_user",
    FieldKind::String,
    false,
    Check::None,
    "Database user the IAM token logs in as (auth: iam)",
);
const IAM_REGION: FieldSchema = f(
    "region",
    FieldKind::String,
    false,
    Check::AwsRegion,
    "AWS region of the database (auth: iam)",
);
const IAM_STS: FieldSchema = f(
    "sts_endpoint_url",
    FieldKind::String,
    false,
    Check::Url,
    "STS endpoint Test connection checks the AWS identity at (auth: iam; default sts.REGION.amazonaws.com)",
);

const PG_SSLMODE: FieldSchema = f(
    "sslmode",
    FieldKind::Enum(&["disable", "prefer", "require", "verify-ca", "verify-full"]),
    false,
    Check::None,
    "TLS mode, as libpq names them: disable; prefer (the default: TLS without verification if the server offers it, else plain text — a downgrade anyone on the path can force); require (TLS, verified against ca_pem when given); verify-ca (TLS, the certificate chains to ca_pem or the server's trust store); verify-full (verify-ca and the certificate names the host)",
);
const PG_CA_PEM: FieldSchema = f(
    "ca_pem",
    FieldKind::String,
    false,
    Check::CertificatePem,
    "CA certificate(s), PEM, that sslmode require/verify-ca/verify-full trust instead of the server's trust store (a private CA, RDS's bundle)",
);

const POSTGRES: &[FieldSchema] = &[
    HOST,
    PORT,
    DATABASE,
    IAM_AUTH,
    IAM_USER,
    IAM_REGION,
    IAM_STS,
    PG_SSLMODE,
    PG_CA_PEM,
    f(
        "application_name",
        FieldKind::String,
        false,
        Check::None,
        "application_name reported to the server",
    ),
    CONNECT_TIMEOUT,
];
const MYSQL: &[FieldSchema] = &[
    HOST,
    PORT,
    DATABASE,
    IAM_AUTH,
    IAM_USER,
    IAM_REGION,
    IAM_STS,
    f(
        "tls",
        FieldKind::Enum(&["disable", "prefer", "require", "verify-ca", "verify-full"]),
        false,
        Check::None,
        "TLS mode: disable; prefer (the default: TLS without verification if the server offers it, else plain text — a downgrade anyone on the path can force); require and verify-full (TLS, the certificate chains to ca_pem — else to the public web roots — and names the host); verify-ca (TLS, the chain only)",
    ),
    f(
        "ca_pem",
        FieldKind::String,
        false,
        Check::CertificatePem,
        "CA certificate(s), PEM, that tls require/verify-ca/verify-full trust instead of the public roots (a private CA, RDS's bundle)",
    ),
    CONNECT_TIMEOUT,
];
const SQLSERVER: &[FieldSchema] = &[
    HOST,
    PORT,
    DATABASE,
    f(
        "encrypt",
        FieldKind::Enum(&["off", "on", "required"]),
        false,
        Check::None,
        "TDS encryption",
    ),
    f(
        "trust_server_certificate",
        FieldKind::Boolean,
        false,
        Check::None,
        "Skip certificate validation (tests only)",
    ),
    CONNECT_TIMEOUT,
];
const ORACLE: &[FieldSchema] = &[
    HOST,
    PORT,
    f(
        "service_name",
        FieldKind::String,
        true,
        Check::NonEmpty,
        "Oracle service name",
    ),
    CONNECT_TIMEOUT,
];
const SNOWFLAKE: &[FieldSchema] = &[
    f(
        "account",
        FieldKind::String,
        true,
        Check::NonEmpty,
        "Account identifier (orgname-account)",
    ),
    f("warehouse", FieldKind::String, false, Check::None, "Warehouse"),
    f("database", FieldKind::String, false, Check::None, "Database"),
    f("schema", FieldKind::String, false, Check::None, "Schema"),
    f("role", FieldKind::String, false, Check::None, "Role"),
];
const BIGQUERY: &[FieldSchema] = &[
    f("project_id", FieldKind::String, true, Check::NonEmpty, "Project ID"),
    f("dataset", FieldKind::String, false, Check::None, "Default dataset"),
    f("location", FieldKind::String, false, Check::None, "Location"),
    f(
        "token_url",
        FieldKind::String,
        false,
        Check::Url,
        "Token endpoint override (private endpoints, tests)",
    ),
];
const REDSHIFT: &[FieldSchema] = &[
    HOST,
    PORT,
    DATABASE,
    PG_SSLMODE,
    PG_CA_PEM,
    f(
        "cluster_id",
        FieldKind::String,
        false,
        Check::None,
        "Cluster ID (IAM authentication)",
    ),
    f(
        "region",
        FieldKind::String,
        false,
        Check::AwsRegion,
        "AWS region (IAM authentication)",
    ),
    f(
        "sts_endpoint_url",
        FieldKind::String,
        false,
        Check::Url,
        "STS endpoint override (IAM authentication; private endpoints, tests)",
    ),
    CONNECT_TIMEOUT,
];
const S3: &[FieldSchema] = &[
    f("bucket", FieldKind::String, true, Check::NonEmpty, "Bucket"),
    f("region", FieldKind::String, false, Check::AwsRegion, "Region"),
    f("prefix", FieldKind::String, false, Check::None, "Key prefix"),
    f(
        "endpoint_url",
        FieldKind::String,
        false,
        Check::Url,
        "S3-compatible or private endpoint",
    ),
    f(
        "sts_endpoint_url",
        FieldKind::String,
        false,
        Check::Url,
        "STS endpoint override (private endpoints, tests)",
    ),
    f(
        "deliver",
        FieldKind::Enum(&["key", "session"]),
        false,
        Check::None,
        "What a worker gets for an access key: the key, or a one-hour session (GetSessionToken) so it never sees the long-lived key (a role chain always gives a session)",
    ),
];
const GCS: &[FieldSchema] = &[
    f("bucket", FieldKind::String, true, Check::NonEmpty, "Bucket"),
    f("project_id", FieldKind::String, false, Check::None, "Project ID"),
    f(
        "token_url",
        FieldKind::String,
        false,
        Check::Url,
        "Token endpoint override (private endpoints, tests)",
    ),
];
const AZURE_BLOB: &[FieldSchema] = &[
    f(
        "account_name",
        FieldKind::String,
        true,
        Check::NonEmpty,
        "Storage account",
    ),
    f("container", FieldKind::String, true, Check::NonEmpty, "Container"),
    f(
        "endpoint_url",
        FieldKind::String,
        false,
        Check::Url,
        "Blob endpoint override",
    ),
    f(
        "authority_url",
        FieldKind::String,
        false,
        Check::Url,
        "Token authority override (private endpoints, tests)",
    ),
];
const HTTP: &[FieldSchema] = &[
    f("base_url", FieldKind::String, true, Check::Url, "Base URL of the API"),
    f(
        "check_method",
        FieldKind::Enum(&["GET", "HEAD", "POST"]),
        false,
        Check::None,
        "Method of the Test connection request",
    ),
    f(
        "check_path",
        FieldKind::String,
        false,
        Check::None,
        "Path of the Test connection request",
    ),
    f(
        "expected_status",
        FieldKind::Integer,
        false,
        Check::None,
        "Status that means the credential works",
    ),
    f(
        "ca_pem",
        FieldKind::String,
        false,
        Check::CertificatePem,
        "CA certificate(s), PEM, trusted for this API besides the public roots (a private CA)",
    ),
];
const FTP: &[FieldSchema] = &[
    HOST,
    PORT,
    f(
        "tls",
        FieldKind::Enum(&["none", "explicit"]),
        false,
        Check::None,
        "Explicit TLS (AUTH TLS)",
    ),
    f("passive", FieldKind::Boolean, false, Check::None, "Passive mode"),
];
const LDAP: &[FieldSchema] = &[
    HOST,
    PORT,
    f("bind_dn", FieldKind::String, true, Check::NonEmpty, "DN to bind as"),
    f(
        "starttls",
        FieldKind::Boolean,
        false,
        Check::None,
        "Upgrade with StartTLS",
    ),
    f(
        "ldaps",
        FieldKind::Boolean,
        false,
        Check::None,
        "LDAP over TLS (port 636)",
    ),
];
const OAUTH_SAAS: &[FieldSchema] = &[
    f(
        "api_base_url",
        FieldKind::String,
        true,
        Check::Url,
        "Base URL of the SaaS API",
    ),
    f(
        "check_url",
        FieldKind::String,
        false,
        Check::Url,
        "URL called by Test connection",
    ),
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_kind_round_trips_its_name() {
        for k in ConnectorKind::ALL {
            assert_eq!(ConnectorKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ConnectorKind::parse("mongodb"), None);
    }

    #[test]
    fn fitting_credentials_follow_the_table() {
        use CredentialType as T;
        assert!(ConnectorKind::Postgres.fits(T::Database, Some("password")));
        assert!(!ConnectorKind::Postgres.fits(T::Database, Some("key_pair")));
        assert!(ConnectorKind::Snowflake.fits(T::Database, Some("key_pair")));
        assert!(ConnectorKind::S3.fits(T::Aws, Some("assume_role")));
        assert!(ConnectorKind::Redshift.fits(T::Aws, Some("access_key")));
        assert!(!ConnectorKind::S3.fits(T::Gcp, Some("service_account")));
        assert!(ConnectorKind::Http.fits(T::ApiKey, None));
        assert!(!ConnectorKind::Ftp.fits(T::ApiKey, None));
    }

    #[test]
    fn configs_are_validated_with_field_paths_and_defaults() {
        let ok = validate_config(ConnectorKind::Postgres, json!({"host": "db", "database": "a"})).unwrap();
        assert_eq!(ok["port"], 5432);
        let errs = validate_config(
            ConnectorKind::Postgres,
            json!({"host": "db", "port": 70000, "dsn": "x"}),
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"config.port"), "{fields:?}");
        assert!(fields.contains(&"config.database"), "{fields:?}");
        assert!(fields.contains(&"config.dsn"), "{fields:?}");
        let errs = validate_config(ConnectorKind::Http, json!({"base_url": "not a url"})).unwrap_err();
        assert_eq!(errs[0].field, "config.base_url");
        let errs = validate_config(
            ConnectorKind::Ldap,
            json!({"host": "h", "bind_dn": "cn=x", "starttls": "yes"}),
        )
        .unwrap_err();
        assert_eq!(errs[0].code, "wrong_type");
    }

    #[test]
    fn configs_cannot_send_a_check_elsewhere_or_leave_the_providers_domain() {
        let errs = validate_config(
            ConnectorKind::Http,
            json!({"base_url": "https://api.example.com/", "check_path": "//evil.example/x"}),
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "config.check_path");
        for path in ["https://evil.example/", "\\\\evil.example/x", "https:evil.example"] {
            let r = validate_config(
                ConnectorKind::Http,
                json!({"base_url": "http://api.example.com/", "check_path": path}),
            );
            assert!(r.is_err(), "{path}");
        }
        validate_config(
            ConnectorKind::Http,
            json!({"base_url": "https://api.example.com/v1/", "check_path": "/health"}),
        )
        .unwrap();
        let errs = validate_config(ConnectorKind::Snowflake, json!({"account": "evil.example/#"})).unwrap_err();
        assert_eq!(errs[0].field, "config.account");
        validate_config(ConnectorKind::Snowflake, json!({"account": "xy12345.us-east-2.aws"})).unwrap();
        let errs = validate_config(ConnectorKind::S3, json!({"bucket": "b@evil.example"})).unwrap_err();
        assert_eq!(errs[0].field, "config.bucket");
    }

    #[test]
    fn names_that_contradict_their_environment_are_flagged() {
        assert!(naming_warning("prod-warehouse", "dev").is_some());
        assert!(naming_warning("prod-warehouse", "prod").is_none());
        assert!(naming_warning("production", "dev").is_none());
        assert!(naming_warning("warehouse", "dev").is_none());
        assert!(naming_warning("dev_db", "prod").is_some());
    }
}
