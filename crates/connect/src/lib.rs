//! Test connection: one [`Tester`] per connector kind, each taking a connection's config and
//! one decrypted credential version for the duration of one call — never the store, never
//! the keyring — and answering with a precise, secret-free [`TestOutcome`]. Every outbound
//! connection goes through the [`egress::EgressPolicy`].
//!
//! Messages are scrubbed of every secret value of the credential before they leave, even when
//! the target echoes a secret back in its error.

pub mod aws;
mod cloud;
pub mod egress;
mod ftp;
pub mod guard;
mod http;
mod ldap;
mod mysql;
pub mod oauth;
mod pg_guard;
mod postgres;
mod ssh;
mod tls;

use std::time::Instant;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value as Json;

pub use cloud::{AwsSession, assume_role_session, key_session};
pub use egress::{Cidr, EgressPolicy};
pub use guard::Guard;

/// Stable error codes of a failed test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The name did not resolve.
    Dns,
    /// Nothing listens there.
    ConnectRefused,
    /// Too slow.
    Timeout,
    /// TLS handshake or certificate problem (or the server does not offer TLS).
    Tls,
    /// The server's certificate does not chain to a trusted CA.
    TlsUntrusted,
    /// The server's certificate is expired (or not yet valid).
    TlsExpired,
    /// The server's certificate is not valid for the host name (`verify-full`).
    TlsNameMismatch,
    /// The SSH host key differs from the stored one.
    HostKeyMismatch,
    /// The target refused the credential.
    AuthFailed,
    /// Logged in, but not allowed to do the check.
    PermissionDenied,
    /// The database, bucket, path… does not exist.
    NotFound,
    /// This build cannot test this kind (or variant).
    Unsupported,
    /// The egress policy refused the destination.
    EgressDenied,
    /// The target answered something unexpected.
    UnexpectedResponse,
    /// The destination is not among the credential's allowed destinations: nothing was sent.
    DestinationNotAllowed,
}

impl ErrorCode {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Dns => "dns",
            ErrorCode::ConnectRefused => "connect_refused",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Tls => "tls",
            ErrorCode::TlsUntrusted => "tls_untrusted",
            ErrorCode::TlsExpired => "tls_expired",
            ErrorCode::TlsNameMismatch => "tls_name_mismatch",
            ErrorCode::HostKeyMismatch => "host_key_mismatch",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::EgressDenied => "egress_denied",
            ErrorCode::UnexpectedResponse => "unexpected_response",
            ErrorCode::DestinationNotAllowed => "destination_not_allowed",
        }
    }
}

/// Why a test failed.
#[derive(Clone, Debug, Serialize, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct TestError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human message (scrubbed of secrets before it leaves this crate).
    pub message: String,
}

impl TestError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> TestError {
        TestError {
            code,
            message: message.into(),
        }
    }
}

/// The result of one test.
#[derive(Clone, Debug, Serialize)]
pub struct TestOutcome {
    /// Whether the credential worked.
    pub ok: bool,
    /// Wall time of the test.
    pub latency_ms: u64,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TestError>,
}

/// What a tester gets: the connection's config and one credential version's fields. Holds
/// plaintext: redacted in `Debug`, zeroized on drop.
pub struct TestInput {
    /// Non-secret configuration of the connection.
    pub config: Json,
    /// Credential type.
    pub credential_type: String,
    /// Credential variant.
    pub variant: Option<String>,
    /// All fields, secret ones in plaintext.
    pub fields: Json,
    /// The secret values, for scrubbing messages.
    pub secrets: Vec<String>,
    /// Fields of the credentials this one is derived from, root first (an AWS role chain:
    /// the access key, then each `assume_role` hop before this one).
    pub sources: Vec<Json>,
}

impl std::fmt::Debug for TestInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestInput")
            .field("credential_type", &self.credential_type)
            .field("fields", &"[redacted]")
            .finish()
    }
}

impl Drop for TestInput {
    fn drop(&mut self) {
        zero_json(&mut self.fields);
        self.sources.iter_mut().for_each(zero_json);
        for s in &mut self.secrets {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

fn zero_json(v: &mut Json) {
    match v {
        Json::String(s) => zeroize::Zeroize::zeroize(s),
        Json::Array(a) => a.iter_mut().for_each(zero_json),
        Json::Object(m) => m.values_mut().for_each(zero_json),
        _ => {}
    }
}

impl TestInput {
    /// A string field of the credential.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Json::as_str)
    }
    /// A string field of the config.
    pub fn config_str(&self, name: &str) -> Option<&str> {
        self.config.get(name).and_then(Json::as_str)
    }
    /// An integer field of the config.
    pub fn config_int(&self, name: &str) -> Option<i64> {
        self.config.get(name).and_then(Json::as_i64)
    }
}

/// One connector kind's check.
pub trait Tester: Send + Sync {
    /// Connects with the credential and does the kind's minimal check.
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>>;
}

/// Kinds this build cannot test (no server here to prove a client against, or no pure-Rust
/// client): answers `unsupported`, honestly.
struct Unsupported(&'static str);

impl Tester for Unsupported {
    fn test<'a>(&'a self, _: &'a TestInput, _: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move { Err(TestError::new(ErrorCode::Unsupported, self.0)) })
    }
}

/// A database that also takes an AWS credential for IAM authentication — PostgreSQL or MySQL
/// with `auth: iam`, and Redshift (which speaks PostgreSQL's protocol): IAM tokens are validated
/// only by AWS itself, so with an AWS credential the check is the identity they are made from.
struct IamDatabase<T>(T);

impl<T: Tester> Tester for IamDatabase<T> {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        if input.credential_type == "aws" {
            cloud::Aws.test(input, policy)
        } else {
            self.0.test(input, policy)
        }
    }
}

/// Whether this build can test `kind` at all. For the others every test answers
/// `unsupported` without looking at the credential, so a rotation may be told not to wait for
/// them (`allow_untestable`); an `unsupported` answer from a testable kind (a key type this
/// build cannot use, say) is a real failure.
pub fn testable(kind: &str) -> bool {
    matches!(
        kind,
        "postgres"
            | "redshift"
            | "http"
            | "mysql"
            | "ftp"
            | "ldap"
            | "s3"
            | "bigquery"
            | "gcs"
            | "azure_blob"
            | "oauth_saas"
    )
}

/// The tester for a connector kind.
pub fn tester_for(kind: &str) -> Box<dyn Tester> {
    match kind {
        "postgres" => Box::new(IamDatabase(postgres::Postgres)),
        "redshift" => Box::new(IamDatabase(postgres::Postgres)),
        "http" => Box::new(http::Http),
        "mysql" => Box::new(IamDatabase(mysql::Mysql)),
        "ftp" => Box::new(ftp::Ftp),
        "ldap" => Box::new(ldap::Ldap),
        "s3" => Box::new(cloud::Aws),
        "bigquery" | "gcs" => Box::new(cloud::Gcp),
        "azure_blob" => Box::new(cloud::Azure),
        "oauth_saas" => Box::new(http::OauthSaas),
        "oracle" => Box::new(Unsupported(
            "Test connection for Oracle is not available: there is no pure-Rust Oracle driver",
        )),
        other => Box::new(Unsupported(match other {
            "sqlserver" => "Test connection for sqlserver is not built yet",
            "snowflake" => "Test connection for snowflake is not built yet",
            _ => "Test connection does not know this kind",
        })),
    }
}

/// Runs the test for `kind` under the policy's concurrency bound and total timeout, timing it
/// and scrubbing the message.
pub async fn run(kind: &str, input: &TestInput, policy: &EgressPolicy) -> TestOutcome {
    let started = Instant::now();
    let _permit = policy.concurrency.acquire().await.ok();
    let tester = tester_for(kind);
    let r = match tokio::time::timeout(policy.total_timeout, tester.test(input, policy)).await {
        Ok(r) => r,
        Err(_) => Err(TestError::new(
            ErrorCode::Timeout,
            format!("the test took longer than {} s", policy.total_timeout.as_secs()),
        )),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    match r {
        Ok(()) => TestOutcome {
            ok: true,
            latency_ms,
            error: None,
        },
        Err(mut e) => {
            e.message = scrub(&e.message, &input.secrets);
            TestOutcome {
                ok: false,
                latency_ms,
                error: Some(e),
            }
        }
    }
}

/// Random lowercase hex (nonces, JWT IDs).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).unwrap_or_else(|_| std::process::abort());
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Removes every secret value (and its URL- and base64-encodings) from a message.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    use base64::Engine;
    let mut out = message.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        let forms = [
            s.clone(),
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>(),
        ];
        for f in forms {
            if !f.is_empty() {
                out = out.replace(&f, "[redacted]");
            }
        }
    }
    // Bound the size of what gets stored and shown.
    if out.len() > 500 {
        let mut cut = 500;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn kinds_without_a_tester_are_exactly_the_untestable_ones() {
        let input = TestInput {
            config: serde_json::json!({}),
            credential_type: "database".into(),
            variant: None,
            fields: serde_json::json!({}),
            secrets: Vec::new(),
            sources: Vec::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for kind in ["oracle", "sqlserver", "snowflake", "no-such-kind"] {
            assert!(!testable(kind), "{kind}");
            let out = rt.block_on(run(kind, &input, &EgressPolicy::default()));
            assert_eq!(out.error.map(|e| e.code), Some(ErrorCode::Unsupported), "{kind}");
        }
        for kind in [
            "postgres",
            "redshift",
            "http",
            "mysql",
            "ftp",
            "ldap",
            "s3",
            "bigquery",
            "gcs",
            "azure_blob",
            "oauth_saas",
        ] {
            assert!(testable(kind), "{kind}");
        }
    }

    #[test]
    fn messages_lose_every_form_of_a_secret() {
        let secrets = vec!["hunter2!".to_owned()];
        let m = scrub("bad password hunter2! (aHVudGVyMiE=) q=hunter2%21", &secrets);
        assert!(!m.contains("hunter2"), "{m}");
        assert!(!m.contains("aHVudGVyMiE="), "{m}");
    }
}
