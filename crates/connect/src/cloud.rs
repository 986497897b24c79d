//! Cloud credentials: AWS (STS `GetCallerIdentity`; `AssumeRole` per hop of a role chain, with
//! external IDs, reporting which hop failed), GCP service accounts (RS256 JWT assertion
//! exchanged at the token endpoint) and Azure (client secret, or a certificate-signed client
//! assertion, in a client-credentials grant). Endpoints are overridable for private endpoints
//! and tests; every request goes through the egress policy.

use futures_util::future::BoxFuture;
use serde_json::Value as Json;
use zeroize::Zeroizing;

use crate::aws::{AwsCredentials, SignedRequest, sign};
use crate::http::{check_url, classify, policy_client};
use crate::{EgressPolicy, ErrorCode, TestError, TestInput, Tester};

pub(crate) struct Aws;
pub(crate) struct Gcp;
pub(crate) struct Azure;

fn url(s: &str, what: &str) -> Result<reqwest::Url, TestError> {
    reqwest::Url::parse(s).map_err(|_| TestError::new(ErrorCode::NotFound, format!("{what} is not a URL")))
}

/// Text between `<tag>` and `</tag>` (STS answers are small, flat XML).
fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn sts_error(status: u16, body: &str, hop: &str) -> TestError {
    let code = xml_field(body, "Code").unwrap_or("unknown");
    let kind = match code {
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "ExpiredToken"
        | "InvalidAccessKeyId" => ErrorCode::AuthFailed,
        "AccessDenied" | "AccessDeniedException" => ErrorCode::PermissionDenied,
        _ if status == 403 => ErrorCode::PermissionDenied,
        _ => ErrorCode::UnexpectedResponse,
    };
    TestError::new(kind, format!("{hop}: STS answered {status} {code}"))
}

async fn sts_call(
    client: &reqwest::Client,
    endpoint: &reqwest::Url,
    region: &str,
    creds: &AwsCredentials,
    form: &[(&str, &str)],
    hop: &str,
) -> Result<String, TestError> {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::aws::uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let headers = sign(
        &SignedRequest {
            method: "POST",
            url: endpoint,
            region,
            service: "sts",
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body: body.as_bytes(),
        },
        creds,
        time::OffsetDateTime::now_utc(),
    );
    let mut req = client.post(endpoint.clone()).body(body);
    for (k, v) in headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.map_err(|e| {
        let mut t = classify(&e);
        t.message = format!("{hop}: {}", t.message);
        t
    })?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|_| TestError::new(ErrorCode::UnexpectedResponse, format!("{hop}: unreadable STS answer")))?;
    if !(200..300).contains(&status) {
        return Err(sts_error(status, &text, hop));
    }
    Ok(text)
}

fn access_key(fields: &Json) -> Result<AwsCredentials, TestError> {
    let id = fields
        .get("access_key_id")
        .and_then(Json::as_str)
        .ok_or_else(|| TestError::new(ErrorCode::Unsupported, "the chain does not start with an access key"))?;
    let secret = fields
        .get("secret_access_key")
        .and_then(Json::as_str)
        .unwrap_or_default();
    Ok(AwsCredentials {
        access_key_id: id.to_owned(),
        secret_access_key: Zeroizing::new(secret.to_owned()),
        session_token: fields
            .get("session_token")
            .and_then(Json::as_str)
            .map(|t| Zeroizing::new(t.to_owned())),
    })
}

/// Where a connection's STS calls go: its `sts_endpoint_url`, or the region's public endpoint.
fn sts_target(input: &TestInput, policy: &EgressPolicy) -> Result<(reqwest::Client, reqwest::Url, String), TestError> {
    let region = input
        .config_str("region")
        .or_else(|| input.field("region"))
        .unwrap_or("us-east-1")
        .to_owned();
    let endpoint_s = input
        .config_str("sts_endpoint_url")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com/"));
    let endpoint = url(&endpoint_s, "sts_endpoint_url")?;
    check_url(policy, &endpoint)?;
    let client = policy_client(policy, &endpoint)?;
    Ok((client, endpoint, region))
}

/// The last hop's session: its name and duration (resolve), instead of the hop's own name and
/// 15 minutes (Test connection).
struct LastHop<'a> {
    session_name: &'a str,
    duration_secs: u32,
}

/// Walks a role chain: the root's access key, then `AssumeRole` per hop down to `input`'s own
/// credential. Returns the credentials reached and, after at least one hop, their expiry.
async fn walk_chain(
    client: &reqwest::Client,
    endpoint: &reqwest::Url,
    region: &str,
    input: &TestInput,
    last: Option<LastHop<'_>>,
) -> Result<(AwsCredentials, Option<String>, usize), TestError> {
    // Root of the chain first, then every assume_role hop down to this credential.
    let mut hops: Vec<&Json> = input.sources.iter().collect();
    hops.push(&input.fields);
    let mut creds = access_key(hops[0])?;
    let mut expiration = None;
    let n = hops.len();
    for (i, hop) in hops.iter().enumerate().skip(1) {
        let arn = hop.get("role_arn").and_then(Json::as_str).unwrap_or_default();
        let label = format!("hop {i} (AssumeRole {arn})");
        let own = hop
            .get("session_name")
            .and_then(Json::as_str)
            .unwrap_or("credvault-test");
        let (session, duration) = match &last {
            Some(l) if i == n - 1 => (l.session_name, l.duration_secs.to_string()),
            _ => (own, "900".to_owned()),
        };
        let mut form = vec![
            ("Action", "AssumeRole"),
            ("Version", "2011-06-15"),
            ("RoleArn", arn),
            ("RoleSessionName", session),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(ext) = hop.get("external_id").and_then(Json::as_str) {
            form.push(("ExternalId", ext));
        }
        let xml = Zeroizing::new(sts_call(client, endpoint, region, &creds, &form, &label).await?);
        let (Some(id), Some(secret), Some(token)) = (
            xml_field(&xml, "AccessKeyId"),
            xml_field(&xml, "SecretAccessKey"),
            xml_field(&xml, "SessionToken"),
        ) else {
            return Err(TestError::new(
                ErrorCode::UnexpectedResponse,
                format!("{label}: no credentials in the answer"),
            ));
        };
        expiration = xml_field(&xml, "Expiration").map(str::to_owned);
        creds = AwsCredentials {
            access_key_id: id.to_owned(),
            secret_access_key: Zeroizing::new(secret.to_owned()),
            session_token: Some(Zeroizing::new(token.to_owned())),
        };
    }
    Ok((creds, expiration, n - 1))
}

/// Temporary credentials of the role at the end of an `assume_role` chain.
pub struct AwsSession {
    /// Access key ID, secret access key and session token.
    pub credentials: AwsCredentials,
    /// When they expire, as STS said (ISO 8601).
    pub expiration: Option<String>,
}

/// Assumes the role of `input`'s `assume_role` credential along its chain (its `sources`, root
/// first), the last hop under `session_name` for `duration_secs`: what a worker gets at resolve
/// instead of the chain's long-lived key. Every call goes through `policy`.
pub async fn assume_role_session(
    input: &TestInput,
    policy: &EgressPolicy,
    session_name: &str,
    duration_secs: u32,
) -> Result<AwsSession, TestError> {
    let (client, endpoint, region) = sts_target(input, policy)?;
    let last = LastHop {
        session_name,
        duration_secs,
    };
    let (credentials, expiration, hops) = walk_chain(&client, &endpoint, &region, input, Some(last)).await?;
    if hops == 0 {
        return Err(TestError::new(
            ErrorCode::Unsupported,
            "not a role chain: an access key is delivered as it is",
        ));
    }
    Ok(AwsSession {
        credentials,
        expiration,
    })
}

/// A one-hour (or `duration_secs`) session of an access key (`GetSessionToken`): what a worker
/// gets instead of the long-lived key when the connection asks for sessions.
pub async fn key_session(
    input: &TestInput,
    policy: &EgressPolicy,
    duration_secs: u32,
) -> Result<AwsSession, TestError> {
    let (client, endpoint, region) = sts_target(input, policy)?;
    let creds = access_key(&input.fields)?;
    let duration = duration_secs.to_string();
    let form = [
        ("Action", "GetSessionToken"),
        ("Version", "2011-06-15"),
        ("DurationSeconds", duration.as_str()),
    ];
    let xml = Zeroizing::new(sts_call(&client, &endpoint, &region, &creds, &form, "GetSessionToken").await?);
    let (Some(id), Some(secret), Some(token)) = (
        xml_field(&xml, "AccessKeyId"),
        xml_field(&xml, "SecretAccessKey"),
        xml_field(&xml, "SessionToken"),
    ) else {
        return Err(TestError::new(
            ErrorCode::UnexpectedResponse,
            "GetSessionToken: no credentials in the answer",
        ));
    };
    Ok(AwsSession {
        credentials: AwsCredentials::new(id, secret.to_owned(), Some(token.to_owned())),
        expiration: xml_field(&xml, "Expiration").map(str::to_owned),
    })
}

impl Tester for Aws {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "aws" {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    format!("{} credentials cannot be tested against AWS", input.credential_type),
                ));
            }
            let (client, endpoint, region) = sts_target(input, policy)?;
            let (creds, _, hops) = walk_chain(&client, &endpoint, &region, input, None).await?;
            let label = if hops > 0 {
                format!("final identity after {hops} hop(s)")
            } else {
                "GetCallerIdentity".to_owned()
            };
            let xml = sts_call(
                &client,
                &endpoint,
                &region,
                &creds,
                &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
                &label,
            )
            .await?;
            if xml_field(&xml, "Arn").is_none() {
                return Err(TestError::new(
                    ErrorCode::UnexpectedResponse,
                    "GetCallerIdentity answered without an ARN",
                ));
            }
            Ok(())
        })
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// DER of the first PEM block with a label ending in `want`.
fn pem_der(pem: &str, want: &str) -> Option<Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    let begin = pem.find("-----BEGIN ")?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    if !label.ends_with(want) {
        return None;
    }
    let body_start = label_end + 5;
    let end = rest.find("-----END ")?;
    let body: String = rest[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()
        .map(Zeroizing::new)
}

/// Signs `header.claims` with RS256 using a PKCS#8 PEM private key.
fn jwt_rs256(header: &Json, claims: &Json, key_pem: &str) -> Result<String, TestError> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let der = pem_der(key_pem, "PRIVATE KEY")
        .ok_or_else(|| TestError::new(ErrorCode::Unsupported, "the private key is not a PEM private key"))?;
    let kp = RsaKeyPair::from_pkcs8(&der)
        .or_else(|_| RsaKeyPair::from_der(&der))
        .map_err(|_| {
            TestError::new(
                ErrorCode::Unsupported,
                "the private key is not an RSA key in PKCS#8 or PKCS#1 form",
            )
        })?;
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| TestError::new(ErrorCode::Unsupported, "cannot sign the assertion"))?;
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Posts a token request and classifies the OAuth error answer.
async fn token_request(
    client: &reqwest::Client,
    endpoint: &reqwest::Url,
    form: &[(&str, &str)],
) -> Result<(), TestError> {
    let resp = client
        .post(endpoint.clone())
        .form(form)
        .send()
        .await
        .map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let mut body: Json = resp.json().await.unwrap_or(Json::Null);
    let has_token = body.get("access_token").and_then(Json::as_str).is_some();
    if let Some(Json::String(t)) = body.get_mut("access_token") {
        zeroize::Zeroize::zeroize(t);
    }
    if (200..300).contains(&status) && has_token {
        return Ok(());
    }
    let err = body
        .get("error")
        .and_then(Json::as_str)
        .unwrap_or("no access token")
        .to_owned();
    let kind = match err.as_str() {
        "invalid_grant" | "invalid_client" | "unauthorized_client" => ErrorCode::AuthFailed,
        "access_denied" => ErrorCode::PermissionDenied,
        _ if status == 401 => ErrorCode::AuthFailed,
        _ if status == 403 => ErrorCode::PermissionDenied,
        _ if status == 404 => ErrorCode::NotFound,
        _ => ErrorCode::UnexpectedResponse,
    };
    Err(TestError::new(
        kind,
        format!("the token endpoint answered {status} {err}"),
    ))
}

impl Tester for Gcp {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "gcp" {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{} credentials cannot be tested against Google Cloud",
                        input.credential_type
                    ),
                ));
            }
            if input.variant.as_deref() != Some("service_account") {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "workload identity federation needs the workload's own subject token; it cannot be tested from the server",
                ));
            }
            let sa: Zeroizing<String> =
                Zeroizing::new(input.field("service_account_json").unwrap_or_default().to_owned());
            let sa: Json = serde_json::from_str(&sa)
                .map_err(|_| TestError::new(ErrorCode::Unsupported, "service_account_json is not JSON"))?;
            let email = sa.get("client_email").and_then(Json::as_str).unwrap_or_default();
            let token_url = input
                .config_str("token_url")
                .or_else(|| input.field("token_url"))
                .or_else(|| sa.get("token_uri").and_then(Json::as_str))
                .unwrap_or("https://oauth2.googleapis.com/token")
                .to_owned();
            let endpoint = url(&token_url, "token_url")?;
            check_url(policy, &endpoint)?;
            let now = now_secs();
            let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
            if let Some(kid) = sa.get("private_key_id").and_then(Json::as_str) {
                header["kid"] = kid.into();
            }
            let claims = serde_json::json!({
                "iss": email, "sub": email, "aud": token_url, "iat": now, "exp": now + 600,
                "scope": "https://www.googleapis.com/auth/cloud-platform.read-only",
            });
            let key = Zeroizing::new(
                sa.get("private_key")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
            let assertion = Zeroizing::new(jwt_rs256(&header, &claims, &key)?);
            let client = policy_client(policy, &endpoint)?;
            token_request(
                &client,
                &endpoint,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ],
            )
            .await
        })
    }
}

impl Tester for Azure {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "azure" {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    format!("{} credentials cannot be tested against Azure", input.credential_type),
                ));
            }
            let variant = input.variant.as_deref().unwrap_or_default();
            if variant == "managed_identity" {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "a managed identity is only usable on the workload's own Azure host (its metadata endpoint is never reachable from here)",
                ));
            }
            let tenant = input.field("tenant_id").unwrap_or_default();
            let client_id = input.field("client_id").unwrap_or_default();
            let authority = input
                .config_str("authority_url")
                .or_else(|| input.field("authority_url"))
                .unwrap_or("https://login.microsoftonline.com")
                .trim_end_matches('/')
                .to_owned();
            let token_url = format!("{authority}/{tenant}/oauth2/v2.0/token");
            let endpoint = url(&token_url, "authority_url")?;
            check_url(policy, &endpoint)?;
            let scope = match input.config_str("account_name") {
                Some(_) => "https://storage.azure.com/.default",
                None => "https://management.azure.com/.default",
            };
            let client = policy_client(policy, &endpoint)?;
            match variant {
                "client_secret" => {
                    let secret = input.field("client_secret").unwrap_or_default();
                    token_request(
                        &client,
                        &endpoint,
                        &[
                            ("grant_type", "client_credentials"),
                            ("client_id", client_id),
                            ("client_secret", secret),
                            ("scope", scope),
                        ],
                    )
                    .await
                }
                "certificate" => {
                    use aws_lc_rs::digest;
                    let cert = pem_der(input.field("certificate_pem").unwrap_or_default(), "CERTIFICATE").ok_or_else(
                        || TestError::new(ErrorCode::Unsupported, "certificate_pem is not a PEM certificate"),
                    )?;
                    let thumb = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
                    let thumb256 = digest::digest(&digest::SHA256, &cert);
                    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": b64url(thumb.as_ref()), "x5t#S256": b64url(thumb256.as_ref())});
                    let now = now_secs();
                    let jti: String = crate::random_hex(16);
                    let claims = serde_json::json!({"aud": token_url, "iss": client_id, "sub": client_id, "jti": jti, "nbf": now, "iat": now, "exp": now + 600});
                    let assertion = Zeroizing::new(jwt_rs256(
                        &header,
                        &claims,
                        input.field("private_key_pem").unwrap_or_default(),
                    )?);
                    token_request(
                        &client,
                        &endpoint,
                        &[
                            ("grant_type", "client_credentials"),
                            ("client_id", client_id),
                            (
                                "client_assertion_type",
                                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                            ),
                            ("client_assertion", &assertion),
                            ("scope", scope),
                        ],
                    )
                    .await
                }
                other => Err(TestError::new(
                    ErrorCode::Unsupported,
                    format!("azure variant {other} cannot be tested"),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_are_read_and_errors_classified() {
        let ok = "<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::1:user/x</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>";
        assert_eq!(xml_field(ok, "Arn"), Some("arn:aws:iam::1:user/x"));
        let err = "<ErrorResponse><Error><Code>InvalidClientTokenId</Code></Error></ErrorResponse>";
        assert_eq!(sts_error(403, err, "hop 0").code, ErrorCode::AuthFailed);
        let denied = "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>";
        assert_eq!(sts_error(403, denied, "hop 1").code, ErrorCode::PermissionDenied);
    }
}
