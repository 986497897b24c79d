//! OAuth 2.0 token endpoint calls for credvault's OAuth credentials: the authorization-code
//! exchange (with PKCE), refresh (with refresh-token rotation), the client-credentials grant,
//! and RFC 7009 revocation. The token endpoint is user-chosen, so every call goes through the
//! egress policy; the client authenticates with HTTP Basic (`client_secret_basic`, the
//! default) or in the form (`client_secret_post`).

use serde_json::Value as Json;
use zeroize::Zeroizing;

use crate::EgressPolicy;
use crate::http::{check_url, policy_client};

/// Tokens from a token endpoint. Zeroized on drop, redacted in `Debug`.
pub struct Tokens {
    /// The access token.
    pub access_token: Zeroizing<String>,
    /// A refresh token, if the endpoint issued (or rotated) one.
    pub refresh_token: Option<Zeroizing<String>>,
    /// Lifetime in seconds, if given.
    pub expires_in: Option<i64>,
    /// The answer's other top-level values (`instance_url`, `scope`, `token_type`, …), as
    /// strings; nested values are dropped.
    pub extras: Vec<(String, Zeroizing<String>)>,
}

/// How the client authenticates at the token and revocation endpoints (RFC 6749 2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded ID and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

impl ClientAuth {
    /// From a credential's `token_endpoint_auth_method` (absent: Basic).
    pub fn from_field(v: Option<&str>) -> ClientAuth {
        match v {
            Some("client_secret_post") => ClientAuth::Post,
            _ => ClientAuth::Basic,
        }
    }
}

/// A POST with the client's authentication.
fn authenticated(
    req: reqwest::RequestBuilder,
    auth: ClientAuth,
    client_id: &str,
    client_secret: &str,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    match auth {
        // RFC 6749 2.3.1: the Basic credentials are form-urlencoded first.
        ClientAuth::Basic => req
            .basic_auth(percent(client_id), Some(percent(client_secret)))
            .form(form),
        ClientAuth::Post => {
            let mut all = form.to_vec();
            all.push(("client_id", client_id));
            all.push(("client_secret", client_secret));
            req.form(&all)
        }
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a token request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The grant is dead (`invalid_grant`): consent revoked, refresh token reused or expired.
    #[error("the provider answered invalid_grant: {0}")]
    InvalidGrant(String),
    /// The client is not accepted (`invalid_client`, `unauthorized_client`).
    #[error("the provider refused the client: {0}")]
    InvalidClient(String),
    /// Network trouble or a 5xx: worth retrying.
    #[error("the token endpoint is unavailable: {0}")]
    Transient(String),
    /// Anything else the provider said.
    #[error("the token endpoint answered {0}")]
    Other(String),
    /// The egress policy refused the endpoint.
    #[error("{0}")]
    Egress(String),
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent(s: &str) -> String {
    crate::aws::uri_encode(s)
}

/// POSTs a form to a token endpoint with client authentication.
pub async fn token_request(
    policy: &EgressPolicy,
    token_url: &str,
    (auth, client_id, client_secret): (ClientAuth, &str, &str),
    form: &[(&str, &str)],
) -> Result<Tokens, OAuthError> {
    let url = reqwest::Url::parse(token_url).map_err(|_| OAuthError::Other("token_url is not a URL".into()))?;
    check_url(policy, &url).map_err(|e| OAuthError::Egress(e.message))?;
    let client = policy_client(policy, &url).map_err(|e| OAuthError::Egress(e.message))?;
    let resp = authenticated(
        client.post(url).header("accept", "application/json"),
        auth,
        client_id,
        client_secret,
        form,
    )
    .send()
    .await
    .map_err(|e| {
        let t = crate::http::classify(&e);
        match t.code {
            crate::ErrorCode::EgressDenied | crate::ErrorCode::DestinationNotAllowed => OAuthError::Egress(t.message),
            _ => OAuthError::Transient(t.message),
        }
    })?;
    let status = resp.status().as_u16();
    let mut body: Json = resp.json().await.unwrap_or(Json::Null);
    let take = |b: &mut Json, k: &str| -> Option<Zeroizing<String>> {
        match b.get_mut(k) {
            Some(Json::String(s)) => Some(Zeroizing::new(std::mem::take(s))),
            _ => None,
        }
    };
    if (200..300).contains(&status) {
        if let Some(access_token) = take(&mut body, "access_token") {
            let refresh_token = take(&mut body, "refresh_token");
            let expires_in = body.get("expires_in").and_then(Json::as_i64);
            let mut extras = Vec::new();
            if let Json::Object(m) = &mut body {
                for (k, v) in m.iter_mut() {
                    let text = match v {
                        _ if matches!(k.as_str(), "access_token" | "refresh_token" | "expires_in") => continue,
                        Json::String(s) => std::mem::take(s),
                        Json::Number(n) => n.to_string(),
                        Json::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    extras.push((k.clone(), Zeroizing::new(text)));
                }
            }
            credvault_domain::secret::zeroize_json(&mut body);
            return Ok(Tokens {
                access_token,
                refresh_token,
                expires_in,
                extras,
            });
        }
        return Err(OAuthError::Other(format!("{status} without an access token")));
    }
    let err = body.get("error").and_then(Json::as_str).unwrap_or("").to_owned();
    let desc: String = body
        .get("error_description")
        .and_then(Json::as_str)
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let text = if desc.is_empty() {
        format!("{status} {err}")
    } else {
        format!("{status} {err}: {desc}")
    };
    Err(match err.as_str() {
        "invalid_grant" => OAuthError::InvalidGrant(text),
        "invalid_client" | "unauthorized_client" => OAuthError::InvalidClient(text),
        _ if status >= 500 || status == 429 => OAuthError::Transient(text),
        _ => OAuthError::Other(text),
    })
}

/// RFC 7009: revokes a token at the provider. Best effort; returns whether it was accepted.
pub async fn revoke(
    policy: &EgressPolicy,
    revocation_url: &str,
    (auth, client_id, client_secret): (ClientAuth, &str, &str),
    token: &str,
    hint: &str,
) -> Result<(), OAuthError> {
    let url =
        reqwest::Url::parse(revocation_url).map_err(|_| OAuthError::Other("revocation_url is not a URL".into()))?;
    check_url(policy, &url).map_err(|e| OAuthError::Egress(e.message))?;
    let client = policy_client(policy, &url).map_err(|e| OAuthError::Egress(e.message))?;
    let resp = authenticated(
        client.post(url),
        auth,
        client_id,
        client_secret,
        &[("token", token), ("token_type_hint", hint)],
    )
    .send()
    .await
    .map_err(|e| OAuthError::Transient(crate::http::classify(&e).message))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(OAuthError::Other(format!("revocation answered {}", resp.status())))
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (Zeroizing<String>, String) {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).unwrap_or_else(|_| std::process::abort());
    let verifier = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    (verifier, challenge)
}

/// A random `state` value.
pub fn state() -> String {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).unwrap_or_else(|_| std::process::abort());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenges_are_s256_of_the_verifier() {
        use base64::Engine as _;
        let (v, c) = pkce();
        assert_eq!(v.len(), 43);
        let expect = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes()));
        assert_eq!(c, expect);
        assert_ne!(state(), state());
    }
}
