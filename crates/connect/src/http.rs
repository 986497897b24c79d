//! HTTP APIs: a configured check request (method, path, expected status) with headers or query
//! parameters built from an `api_key` credential's parts, or basic auth from a `password`
//! credential. Names resolve through the egress policy; IP literals are checked directly; no
//! redirect is followed.

use futures_util::future::BoxFuture;

use crate::egress::PolicyResolver;
use crate::{EgressPolicy, ErrorCode, TestError, TestInput, Tester};

pub(crate) struct Http;

impl Tester for Http {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            let base = input.config_str("base_url").unwrap_or_default();
            let path = input.config_str("check_path").unwrap_or("");
            let mut url =
                reqwest::Url::parse(base).map_err(|_| TestError::new(ErrorCode::NotFound, "base_url is not a URL"))?;
            if !path.is_empty() {
                url = url
                    .join(path)
                    .map_err(|_| TestError::new(ErrorCode::NotFound, "check_path does not make a URL"))?;
            }
            check_url(policy, &url)?;
            let method = match input.config_str("check_method").unwrap_or("GET") {
                "HEAD" => reqwest::Method::HEAD,
                "POST" => reqwest::Method::POST,
                _ => reqwest::Method::GET,
            };
            let expected = input.config_int("expected_status").unwrap_or(200);
            let mut builder = reqwest::Client::builder();
            if let Some(pem) = input.config_str("ca_pem").filter(|p| !p.is_empty()) {
                let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                    .map_err(|_| TestError::new(ErrorCode::Tls, "ca_pem holds no usable certificate"))?;
                for c in certs {
                    builder = builder.add_root_certificate(c);
                }
            }
            let client = builder
                .dns_resolver(std::sync::Arc::new(PolicyResolver {
                    policy: policy.clone(),
                    port: url_port(&url)?,
                }))
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(policy.connect_timeout)
                .timeout(policy.total_timeout)
                .no_proxy()
                .build()
                .map_err(|_| TestError::new(ErrorCode::Unsupported, "cannot build an HTTP client"))?;
            let mut req = client.request(method, url.clone());
            match input.credential_type.as_str() {
                "api_key" => {
                    let parts = input
                        .fields
                        .get("parts")
                        .and_then(|p| p.as_array())
                        .cloned()
                        .unwrap_or_default();
                    let mut query = Vec::new();
                    for p in &parts {
                        let name = p.get("name").and_then(|v| v.as_str()).unwrap_or_default();
                        let value = p.get("value").and_then(|v| v.as_str()).unwrap_or_default();
                        if p.get("in").and_then(|v| v.as_str()) == Some("query") {
                            query.push((name.to_owned(), value.to_owned()));
                        } else {
                            req = req.header(name, value);
                        }
                    }
                    if let Some(h) = input.fields.get("headers").and_then(|h| h.as_object()) {
                        for (k, v) in h {
                            req = req.header(k.as_str(), v.as_str().unwrap_or_default());
                        }
                    }
                    if !query.is_empty() {
                        req = req.query(&query);
                    }
                }
                "password" => {
                    req = req.basic_auth(input.field("username").unwrap_or_default(), input.field("password"));
                }
                "oauth" => match input.field("access_token") {
                    Some(t) => req = req.bearer_auth(t),
                    None => {
                        return Err(TestError::new(
                            ErrorCode::Unsupported,
                            "this OAuth credential has no access token yet",
                        ));
                    }
                },
                other => {
                    return Err(TestError::new(
                        ErrorCode::Unsupported,
                        format!("{other} credentials cannot be tested against an HTTP API"),
                    ));
                }
            }
            let resp = req.send().await.map_err(|e| classify(&e))?;
            let status = i64::from(resp.status().as_u16());
            if status == expected {
                return Ok(());
            }
            Err(status_error(&url, status, &format!("{status}, expected {expected}")))
        })
    }
}

/// A status that is not the expected one, as a test error: 401 is a refused credential.
fn status_error(url: &reqwest::Url, status: i64, answered: &str) -> TestError {
    let code = match status {
        401 => ErrorCode::AuthFailed,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        _ => ErrorCode::UnexpectedResponse,
    };
    TestError::new(code, format!("{} answered {answered}", url.host_str().unwrap_or("")))
}

/// Checks a URL a user chose: http(s) only; its host and port must pass the destination
/// guard, and an IP literal host the policy (a name is checked by the policy resolver when the
/// client dials, against the addresses it resolves to).
pub(crate) fn check_url(policy: &EgressPolicy, url: &reqwest::Url) -> Result<(), TestError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TestError::new(
            ErrorCode::EgressDenied,
            "only http and https are allowed",
        ));
    }
    let host = url.host_str().unwrap_or_default();
    policy.check_destination(host, url_port(url)?)?;
    match url.host() {
        Some(url::Host::Ipv4(ip)) => policy.check(ip.into()),
        Some(url::Host::Ipv6(ip)) => policy.check(ip.into()),
        Some(url::Host::Domain(_)) => Ok(()),
        None => Err(TestError::new(ErrorCode::Dns, "the URL has no host")),
    }
}

/// The port a request to `url` goes to.
pub(crate) fn url_port(url: &reqwest::Url) -> Result<u16, TestError> {
    url.port_or_known_default()
        .ok_or_else(|| TestError::new(ErrorCode::EgressDenied, "the URL has no port"))
}

/// An HTTP client for requests to `url`'s host and port, whose every connection goes through
/// the policy (and its destination guard), following no redirects.
pub(crate) fn policy_client(policy: &EgressPolicy, url: &reqwest::Url) -> Result<reqwest::Client, TestError> {
    reqwest::Client::builder()
        .dns_resolver(std::sync::Arc::new(PolicyResolver {
            policy: policy.clone(),
            port: url_port(url)?,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(policy.connect_timeout)
        .timeout(policy.total_timeout)
        .no_proxy()
        .build()
        .map_err(|_| TestError::new(ErrorCode::Unsupported, "cannot build an HTTP client"))
}

pub(crate) fn classify(e: &reqwest::Error) -> TestError {
    use std::error::Error;
    // The policy's refusal travels inside reqwest's error chain.
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(t) = s.downcast_ref::<TestError>() {
            return t.clone();
        }
        src = s.source();
    }
    if e.is_timeout() {
        return TestError::new(ErrorCode::Timeout, "the request timed out");
    }
    let text = format!("{e:?}").to_ascii_lowercase();
    if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        return TestError::new(ErrorCode::Tls, "the TLS handshake failed");
    }
    if e.is_connect() {
        return TestError::new(ErrorCode::ConnectRefused, "the connection was refused");
    }
    TestError::new(ErrorCode::UnexpectedResponse, "the request failed")
}

/// SaaS APIs behind OAuth: calls `check_url` (or `api_base_url`) with the credential's access
/// token as a bearer token. The caller has refreshed a token about to expire.
pub(crate) struct OauthSaas;

impl Tester for OauthSaas {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "oauth" {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{} credentials cannot be tested against an OAuth API",
                        input.credential_type
                    ),
                ));
            }
            let raw = input
                .config_str("check_url")
                .filter(|s| !s.is_empty())
                .or_else(|| input.config_str("api_base_url"))
                .unwrap_or_default();
            let url =
                reqwest::Url::parse(raw).map_err(|_| TestError::new(ErrorCode::NotFound, "check_url is not a URL"))?;
            check_url(policy, &url)?;
            let Some(token) = input.field("access_token").filter(|t| !t.is_empty()) else {
                return Err(TestError::new(
                    ErrorCode::AuthFailed,
                    "this OAuth credential has no access token: authorize it first",
                ));
            };
            let resp = policy_client(policy, &url)?
                .get(url.clone())
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let status = i64::from(status.as_u16());
            Err(status_error(&url, status, &status.to_string()))
        })
    }
}
