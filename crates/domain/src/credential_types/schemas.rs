//! The static schema tables (PRODUCT.md section 2).

use super::{Check, CredentialType, FieldKind, FieldSchema, TypeSchema, VariantSchema};

/// A required, non-secret string field without a format check.
const fn field(name: &'static str, description: &'static str) -> FieldSchema {
    FieldSchema {
        name,
        kind: FieldKind::String,
        secret: false,
        required: true,
        description,
        check: Check::None,
    }
}

impl FieldSchema {
    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    const fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    const fn check(mut self, check: Check) -> Self {
        self.check = check;
        self
    }

    const fn kind(mut self, kind: FieldKind) -> Self {
        self.kind = kind;
        self
    }
}

// ---------------------------------------------------------------------------------------- aws

const AWS_REGION: FieldSchema = field(
    "region",
    "Default AWS region for clients built from this credential, e.g. us-east-1.",
)
.optional()
.check(Check::AwsRegion);

static AWS_ACCESS_KEY: [FieldSchema; 4] = [
    field("access_key_id", "The IAM access key ID (AKIA… or ASIA…).").check(Check::AwsAccessKeyId),
    field(
        "secret_access_key",
        "The secret access key paired with the access key ID.",
    )
    .secret()
    .check(Check::NonEmpty),
    field("session_token", "Session token, for temporary (ASIA…) credentials.")
        .secret()
        .optional(),
    AWS_REGION,
];

static AWS_ASSUME_ROLE: [FieldSchema; 5] = [
    field(
        "role_arn",
        "ARN of the role to assume, e.g. arn:aws:iam::123456789012:role/loader.",
    )
    .check(Check::AwsRoleArn),
    field(
        "external_id",
        "External ID required by the role's trust policy, if any.",
    )
    .optional()
    .check(Check::AwsExternalId),
    field(
        "session_name",
        "Role session name recorded in CloudTrail (defaults to a name chosen by credvault).",
    )
    .optional()
    .check(Check::AwsSessionName),
    field(
        "source_credential_id",
        "The aws credential (cred_…) whose identity assumes the role; role chains allowed.",
    )
    .check(Check::CredentialId),
    AWS_REGION,
];

static AWS_VARIANTS: [VariantSchema; 2] = [
    VariantSchema {
        name: "access_key",
        title: "Access key",
        fields: &AWS_ACCESS_KEY,
    },
    VariantSchema {
        name: "assume_role",
        title: "Assume role",
        fields: &AWS_ASSUME_ROLE,
    },
];

// -------------------------------------------------------------------------------------- azure

const AZURE_TENANT_ID: FieldSchema = field(
    "tenant_id",
    "Microsoft Entra tenant: its ID (a UUID) or a verified domain name.",
)
.check(Check::AzureTenantId);

const AZURE_CLIENT_ID: FieldSchema =
    field("client_id", "Application (client) ID of the app registration.").check(Check::Uuid);

const AZURE_AUTHORITY_URL: FieldSchema = field(
    "authority_url",
    "Override of the login authority (default https://login.microsoftonline.com), e.g. for \
     sovereign clouds or a local test endpoint.",
)
.optional()
.check(Check::Url);

static AZURE_CLIENT_SECRET: [FieldSchema; 4] = [
    AZURE_TENANT_ID,
    AZURE_CLIENT_ID,
    field("client_secret", "The client secret value.").secret(),
    AZURE_AUTHORITY_URL,
];

static AZURE_CERTIFICATE: [FieldSchema; 5] = [
    AZURE_TENANT_ID,
    AZURE_CLIENT_ID,
    field(
        "certificate_pem",
        "The client certificate (PEM, CERTIFICATE blocks; a chain may follow the leaf).",
    )
    .secret()
    .check(Check::CertificatePem),
    field("private_key_pem", "The certificate's private key (PEM).")
        .secret()
        .check(Check::PrivateKeyPem),
    AZURE_AUTHORITY_URL,
];

static AZURE_MANAGED_IDENTITY: [FieldSchema; 1] = [field(
    "client_id",
    "Client ID of a user-assigned managed identity; omit for the system-assigned identity.",
)
.optional()
.check(Check::Uuid)];

static AZURE_VARIANTS: [VariantSchema; 3] = [
    VariantSchema {
        name: "client_secret",
        title: "Service principal with client secret",
        fields: &AZURE_CLIENT_SECRET,
    },
    VariantSchema {
        name: "certificate",
        title: "Service principal with certificate",
        fields: &AZURE_CERTIFICATE,
    },
    VariantSchema {
        name: "managed_identity",
        title: "Managed identity",
        fields: &AZURE_MANAGED_IDENTITY,
    },
];

// ---------------------------------------------------------------------------------------- gcp

static GCP_SERVICE_ACCOUNT: [FieldSchema; 2] = [
    field(
        "service_account_json",
        "The service account key file, as a JSON string (type service_account).",
    )
    .secret()
    .check(Check::GcpServiceAccountJson),
    field(
        "token_url",
        "Override of the OAuth token endpoint (default: the key file's token_uri).",
    )
    .optional()
    .check(Check::Url),
];

static GCP_WORKLOAD_IDENTITY: [FieldSchema; 1] = [field(
    "external_account_json",
    "The workload identity federation configuration, as a JSON string (type external_account).",
)
.secret()
.check(Check::GcpExternalAccountJson)];

static GCP_VARIANTS: [VariantSchema; 2] = [
    VariantSchema {
        name: "service_account",
        title: "Service account key",
        fields: &GCP_SERVICE_ACCOUNT,
    },
    VariantSchema {
        name: "workload_identity_federation",
        title: "Workload identity federation",
        fields: &GCP_WORKLOAD_IDENTITY,
    },
];

// ----------------------------------------------------------------------------------- database

static SSH_TUNNEL: [FieldSchema; 6] = [
    field("host", "SSH bastion host name or address.").check(Check::NonEmpty),
    field("port", "SSH port (usually 22).")
        .kind(FieldKind::Integer)
        .check(Check::Port),
    field("user", "SSH user name.").check(Check::NonEmpty),
    field("private_key_pem", "SSH private key (PEM; OpenSSH format accepted).")
        .secret()
        .check(Check::PrivateKeyPem),
    field("passphrase", "Passphrase of the SSH private key, if encrypted.")
        .secret()
        .optional(),
    field(
        "known_host_key",
        "The bastion's public host key, e.g. \"ssh-ed25519 AAAA…\"; the tunnel refuses any other.",
    )
    .check(Check::SshHostKey),
];

const DB_USERNAME: FieldSchema = field("username", "Database user name.").check(Check::NonEmpty);

const DB_SSH_TUNNEL: FieldSchema = field("ssh_tunnel", "Reach the database through an SSH bastion.")
    .optional()
    .kind(FieldKind::Object(&SSH_TUNNEL));

static DB_PASSWORD: [FieldSchema; 3] = [
    DB_USERNAME,
    field("password", "Database password.").secret().check(Check::NonEmpty),
    DB_SSH_TUNNEL,
];

static DB_KEY_PAIR: [FieldSchema; 4] = [
    DB_USERNAME,
    field(
        "private_key_pem",
        "Private key registered for the user (PEM, e.g. PKCS#8 for Snowflake).",
    )
    .secret()
    .check(Check::PrivateKeyPem),
    field("passphrase", "Passphrase of the private key, if encrypted.")
        .secret()
        .optional(),
    DB_SSH_TUNNEL,
];

static DATABASE_VARIANTS: [VariantSchema; 2] = [
    VariantSchema {
        name: "password",
        title: "User name and password",
        fields: &DB_PASSWORD,
    },
    VariantSchema {
        name: "key_pair",
        title: "Key-pair authentication",
        fields: &DB_KEY_PAIR,
    },
];

// ------------------------------------------------------------------------------------ api_key

static API_KEY_PART: [FieldSchema; 3] = [
    field("name", "Header name (in=header) or query parameter name (in=query).").check(Check::ApiKeyPartName),
    field("value", "The secret value sent under that name.")
        .secret()
        .check(Check::NonEmpty),
    field("in", "Where the value is sent.").kind(FieldKind::Enum(&["header", "query"])),
];

static API_KEY: [FieldSchema; 2] = [
    field(
        "parts",
        "The secret parts of the key (1–16), e.g. one X-API-Key header.",
    )
    .kind(FieldKind::List(&API_KEY_PART))
    .check(Check::Count { min: 1, max: 16 }),
    field(
        "headers",
        "Extra non-secret headers sent with every request (name → value).",
    )
    .optional()
    .kind(FieldKind::StringMap)
    .check(Check::HeaderName),
];

static API_KEY_VARIANTS: [VariantSchema; 1] = [VariantSchema {
    name: "api_key",
    title: "API key",
    fields: &API_KEY,
}];

// -------------------------------------------------------------------------------------- oauth

/// Fields of both OAuth variants; only `authorization_url`'s requiredness differs.
macro_rules! oauth_fields {
    ($authorization_url:expr) => {
        [
            field("client_id", "OAuth client ID.").check(Check::NonEmpty),
            field("client_secret", "OAuth client secret.").secret(),
            $authorization_url,
            field("token_url", "Token endpoint.").check(Check::Url),
            field("scopes", "Scopes to request.")
                .optional()
                .kind(FieldKind::StringList),
            field("revocation_url", "Token revocation endpoint (RFC 7009).")
                .optional()
                .check(Check::Url),
            field("refresh_token", "Refresh token obtained at consent.")
                .secret()
                .optional(),
            field("access_token", "Most recent access token.").secret().optional(),
            field("access_token_expires_at", "When the access token expires.")
                .optional()
                .kind(FieldKind::Timestamp),
            field("authorized_by", "Who granted consent.").optional(),
            field("authorized_at", "When consent was granted.")
                .optional()
                .kind(FieldKind::Timestamp),
            field(
                "token_endpoint_auth_method",
                "How the client authenticates at the token and revocation endpoints: client_secret_basic (the default) or client_secret_post (the client ID and secret in the form, as HubSpot and others expect).",
            )
            .optional()
            .kind(FieldKind::Enum(&["client_secret_basic", "client_secret_post"])),
            field(
                "authorization_params",
                "Extra parameters of the authorization URL (name → value), e.g. Google's access_type=offline and prompt=consent for a refresh token.",
            )
            .optional()
            .kind(FieldKind::StringMap)
            .check(Check::OAuthParamName),
            field(
                "token_extras",
                "The token endpoint's other answers (name → value), kept from consent and each refresh: Salesforce's instance_url, the granted scope, the token type.",
            )
            .secret()
            .optional()
            .kind(FieldKind::StringMap),
        ]
    };
}

const AUTHORIZATION_URL: FieldSchema =
    field("authorization_url", "Authorization (consent) endpoint.").check(Check::Url);

static OAUTH_AUTHORIZATION_CODE: [FieldSchema; 14] = oauth_fields!(AUTHORIZATION_URL);

static OAUTH_CLIENT_CREDENTIALS: [FieldSchema; 14] = oauth_fields!(AUTHORIZATION_URL.optional());

static OAUTH_VARIANTS: [VariantSchema; 2] = [
    VariantSchema {
        name: "authorization_code",
        title: "Authorization code (user consent)",
        fields: &OAUTH_AUTHORIZATION_CODE,
    },
    VariantSchema {
        name: "client_credentials",
        title: "Client credentials",
        fields: &OAUTH_CLIENT_CREDENTIALS,
    },
];

// ----------------------------------------------------------------------------------- password

static PASSWORD: [FieldSchema; 2] = [
    field("username", "User name, if the service needs one.").optional(),
    field("password", "The password.").secret().check(Check::NonEmpty),
];

static PASSWORD_VARIANTS: [VariantSchema; 1] = [VariantSchema {
    name: "password",
    title: "Password",
    fields: &PASSWORD,
}];

// ------------------------------------------------------------------------------------- table

/// Indexed by `CredentialType as usize`, i.e. in `CredentialType::ALL` order.
pub(super) static SCHEMAS: [TypeSchema; 7] = [
    TypeSchema {
        ty: CredentialType::Aws,
        title: "AWS",
        description: "Amazon Web Services: an IAM access key, or a role assumed with another aws \
                      credential.",
        variants: &AWS_VARIANTS,
        default_variant: None,
    },
    TypeSchema {
        ty: CredentialType::Azure,
        title: "Azure",
        description: "Microsoft Azure / Entra ID: a service principal (client secret or \
                      certificate) or a managed identity.",
        variants: &AZURE_VARIANTS,
        default_variant: None,
    },
    TypeSchema {
        ty: CredentialType::Gcp,
        title: "Google Cloud",
        description: "Google Cloud: a service account key or a workload identity federation \
                      configuration.",
        variants: &GCP_VARIANTS,
        default_variant: None,
    },
    TypeSchema {
        ty: CredentialType::Database,
        title: "Database",
        description: "A database login (password or key pair), optionally through an SSH \
                      tunnel.",
        variants: &DATABASE_VARIANTS,
        default_variant: Some("password"),
    },
    TypeSchema {
        ty: CredentialType::ApiKey,
        title: "API key",
        description: "One or more secret values sent as HTTP headers or query parameters.",
        variants: &API_KEY_VARIANTS,
        default_variant: Some("api_key"),
    },
    TypeSchema {
        ty: CredentialType::Oauth,
        title: "OAuth 2.0",
        description: "An OAuth 2.0 client (authorization code or client credentials) and the \
                      tokens obtained with it.",
        variants: &OAUTH_VARIANTS,
        default_variant: None,
    },
    TypeSchema {
        ty: CredentialType::Password,
        title: "Password",
        description: "A user name and password (FTP, HTTP basic, LDAP bind …).",
        variants: &PASSWORD_VARIANTS,
        default_variant: Some("password"),
    },
];
