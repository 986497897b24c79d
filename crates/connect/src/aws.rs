//! A small AWS client: Signature Version 4 by hand (HMAC-SHA256), KMS `Encrypt`/`Decrypt` for
//! wrapping the keyring, and STS calls for Test connection. A whole SDK would cost more to
//! build than these few signed requests.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// AWS credentials. Redacted in `Debug`, zeroized on drop.
#[derive(Clone)]
pub struct AwsCredentials {
    /// Access key ID (not secret).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Zeroizing<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

impl AwsCredentials {
    /// Keys given as text (the secret parts are moved into zeroizing buffers).
    pub fn new(access_key_id: &str, secret_access_key: String, session_token: Option<String>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Zeroizing::new(secret_access_key),
            session_token: session_token.map(Zeroizing::new),
        }
    }

    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Option<AwsCredentials> {
        let id = std::env::var("AWS_ACCESS_KEY_ID").ok().filter(|s| !s.is_empty())?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").ok().filter(|s| !s.is_empty())?;
        Some(AwsCredentials {
            access_key_id: id,
            secret_access_key: Zeroizing::new(secret),
            session_token: std::env::var("AWS_SESSION_TOKEN")
                .ok()
                .filter(|s| !s.is_empty())
                .map(Zeroizing::new),
        })
    }
}

/// Errors of AWS calls. Messages carry AWS error codes, never secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AwsError {
    /// The request could not be sent or answered.
    #[error("cannot reach {endpoint}: {reason}")]
    Transport {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// AWS answered with an error.
    #[error("{service} answered {status}: {code}")]
    Service {
        /// Which service.
        service: &'static str,
        /// HTTP status.
        status: u16,
        /// AWS error code, e.g. `AccessDeniedException`.
        code: String,
    },
    /// The answer did not have the expected shape.
    #[error("unexpected answer from {0}")]
    Unexpected(&'static str),
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // HMAC-SHA256 takes keys of any length; this path does not exist.
    std::process::abort()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A request to sign.
pub struct SignedRequest<'a> {
    /// `POST`, `GET`…
    pub method: &'a str,
    /// Full URL (scheme, host, path).
    pub url: &'a reqwest::Url,
    /// Region, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service name in the scope, e.g. `kms`, `sts`.
    pub service: &'a str,
    /// Extra headers to sign and send (lowercase names).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: &'a [u8],
}

/// SigV4's time stamp, `YYYYMMDDTHHMMSSZ` (the date is its first eight characters).
fn amz_date(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// SigV4's URI encoding (RFC 3986's): everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
pub(crate) fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The hex signature of `string_to_sign` with the key derived for date, region and service.
fn signature(creds: &AwsCredentials, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let k_secret = Zeroizing::new(format!("AWS4{}", creds.secret_access_key.as_str()));
    let k_date = Zeroizing::new(hmac(k_secret.as_bytes(), date.as_bytes()));
    let k_region = Zeroizing::new(hmac(&k_date, region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&k_region, service.as_bytes()));
    let k_signing = Zeroizing::new(hmac(&k_service, b"aws4_request"));
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

/// How long an RDS IAM authentication token is accepted (AWS fixes it at 15 minutes).
pub const RDS_TOKEN_SECS: i64 = 900;

/// An RDS/Aurora IAM database authentication token for `user` at `host:port` in `region`: the
/// password a PostgreSQL or MySQL client sends, valid for [`RDS_TOKEN_SECS`] from `now`. It is
/// a SigV4-presigned `connect` request (service `rds-db`), made offline, as botocore's
/// `generate_db_auth_token` makes it (the test compares the two byte for byte).
pub fn rds_auth_token(
    host: &str,
    port: u16,
    region: &str,
    user: &str,
    creds: &AwsCredentials,
    now: time::OffsetDateTime,
) -> Zeroizing<String> {
    let amz_date = amz_date(now);
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/rds-db/aws4_request");
    // The operation's parameters, then the signature's, in this order (the URL keeps it; the
    // canonical form sorts them).
    let mut params: Vec<(&str, String)> = vec![
        ("Action", "connect".into()),
        ("DBUser", user.into()),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".into()),
        ("X-Amz-Credential", format!("{}/{scope}", creds.access_key_id)),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", RDS_TOKEN_SECS.to_string()),
        ("X-Amz-SignedHeaders", "host".into()),
    ];
    if let Some(t) = &creds.session_token {
        params.push(("X-Amz-Security-Token", t.to_string()));
    }
    let encoded: Vec<(String, String)> = params.iter().map(|(k, v)| (uri_encode(k), uri_encode(v))).collect();
    let mut sorted = encoded.clone();
    sorted.sort();
    let join = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let canonical_request = format!(
        "GET\n/\n{}\nhost:{host}:{port}\n\nhost\n{}",
        join(&sorted),
        sha256_hex(b"")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let sig = signature(creds, date, region, "rds-db", &string_to_sign);
    Zeroizing::new(format!("{host}:{port}/?{}&X-Amz-Signature={sig}", join(&encoded)))
}

/// Signs with SigV4 and returns the headers to send (including `authorization`).
pub fn sign(req: &SignedRequest<'_>, creds: &AwsCredentials, now: time::OffsetDateTime) -> Vec<(String, String)> {
    let amz_date = amz_date(now);
    let date = &amz_date[..8];
    let host = match req.url.port() {
        Some(p) => format!("{}:{p}", req.url.host_str().unwrap_or_default()),
        None => req.url.host_str().unwrap_or_default().to_owned(),
    };
    let mut headers: Vec<(String, String)> = req.headers.clone();
    headers.push(("host".into(), host));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token".into(), t.to_string()));
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
    let signed_headers = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let path = if req.url.path().is_empty() { "/" } else { req.url.path() };
    let mut query: Vec<(String, String)> = req
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method,
        sha256_hex(req.body)
    );
    let scope = format!("{date}/{}/{}/aws4_request", req.region, req.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = signature(creds, date, req.region, req.service, &string_to_sign);
    headers.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    headers
}

/// Where a KMS key lives.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct KmsKey {
    /// Key ID, ARN or alias.
    pub key_id: String,
    /// Region.
    pub region: String,
    /// Endpoint override (private endpoints, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl KmsKey {
    fn url(&self) -> Result<reqwest::Url, AwsError> {
        let s = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com/", self.region));
        reqwest::Url::parse(&s).map_err(|_| AwsError::Transport {
            endpoint: s,
            reason: "not a URL".into(),
        })
    }
}

pub async fn kms_call(key: &KmsKey, creds: &AwsCredentials, target: &str, body: Value) -> Result<Value, AwsError> {
    let url = key.url()?;
    let bytes = serde_json::to_vec(&body).map_err(|_| AwsError::Unexpected("kms"))?;
    let headers = sign(
        &SignedRequest {
            method: "POST",
            url: &url,
            region: &key.region,
            service: "kms",
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amz-target".into(), format!("TrentService.{target}")),
            ],
            body: &bytes,
        },
        creds,
        time::OffsetDateTime::now_utc(),
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| AwsError::Transport {
            endpoint: url.to_string(),
            reason: e.to_string(),
        })?;
    let mut req = client.post(url.clone()).body(bytes);
    for (k, v) in headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.map_err(|e| AwsError::Transport {
        endpoint: url.to_string(),
        reason: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.map_err(|_| AwsError::Unexpected("kms"))?;
    if !(200..300).contains(&status) {
        let code = v
            .get("__type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .rsplit('#')
            .next()
            .unwrap_or("unknown")
            .to_owned();
        return Err(AwsError::Service {
            service: "kms",
            status,
            code,
        });
    }
    Ok(v)
}

/// Encrypts up to 4 KiB with a KMS key, bound to an encryption context.
pub async fn kms_encrypt(
    key: &KmsKey,
    creds: &AwsCredentials,
    plaintext: &[u8],
    context: &str,
) -> Result<Vec<u8>, AwsError> {
    use base64::Engine as _;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(plaintext));
    let v = kms_call(
        key,
        creds,
        "Encrypt",
        json!({"KeyId": key.key_id, "Plaintext": b64.as_str(), "EncryptionContext": {"credvault": context}}),
    )
    .await?;
    let blob = v
        .get("CiphertextBlob")
        .and_then(Value::as_str)
        .ok_or(AwsError::Unexpected("kms"))?;
    base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| AwsError::Unexpected("kms"))
}

/// Decrypts what [`kms_encrypt`] produced (same encryption context).
pub async fn kms_decrypt(
    key: &KmsKey,
    creds: &AwsCredentials,
    blob: &[u8],
    context: &str,
) -> Result<Zeroizing<Vec<u8>>, AwsError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    let mut v = kms_call(
        key,
        creds,
        "Decrypt",
        json!({"KeyId": key.key_id, "CiphertextBlob": b64, "EncryptionContext": {"credvault": context}}),
    )
    .await?;
    let plain = v
        .get("Plaintext")
        .and_then(Value::as_str)
        .ok_or(AwsError::Unexpected("kms"))?;
    let out = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(plain)
            .map_err(|_| AwsError::Unexpected("kms"))?,
    );
    if let Some(Value::String(s)) = v.get_mut("Plaintext") {
        zeroize::Zeroize::zeroize(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the AWS SigV4 documentation (GET with query, IAM ListUsers).
    #[test]
    fn signatures_match_the_documented_example() {
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        };
        let url = reqwest::Url::parse("https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08")
            .unwrap_or_else(|_| std::process::abort());
        let now = time::macros::datetime!(2015-08-30 12:36:00 UTC);
        let h = sign(
            &SignedRequest {
                method: "GET",
                url: &url,
                region: "us-east-1",
                service: "iam",
                headers: vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                )],
                body: b"",
            },
            &creds,
            now,
        );
        let auth = h
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }
}
