//! LDAP: a simple bind as the configured `bind_dn` with a `password` credential's password,
//! over plain LDAP, LDAP upgraded with StartTLS, or LDAPS; then an unbind.
//!
//! The egress policy opens the TCP connection (`EgressPolicy::connect`: one resolution, every
//! address checked, connected to exactly a checked address) and ldap3 is handed that socket
//! (`LdapConnSettings::set_std_stream`). The URL ldap3 also needs carries only the scheme and
//! the user's host name, which serves as the TLS server name; ldap3 neither resolves nor dials
//! it when it is given a stream.
//!
//! TLS verifies the certificate against that name with the machine's trust store (see
//! [`crate::tls::tls_config`]). With `ldaps` the whole connection is TLS and `starttls` is
//! ignored. The port is the configured one: LDAPS on 636 needs `port: 636` in the config.

use futures_util::future::BoxFuture;
use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, StdStream};

use crate::{EgressPolicy, ErrorCode, TestError, TestInput, Tester};

pub(crate) struct Ldap;

/// LDAP result codes (RFC 4511, appendix A) that get their own error code.
const INVALID_CREDENTIALS: u32 = 49;
const INAPPROPRIATE_AUTHENTICATION: u32 = 48;
const INSUFFICIENT_ACCESS_RIGHTS: u32 = 50;
const CONFIDENTIALITY_REQUIRED: u32 = 13;
const STRONGER_AUTH_REQUIRED: u32 = 8;
const INVALID_DN_SYNTAX: u32 = 34;
const NO_SUCH_OBJECT: u32 = 32;

/// Which step failed: opening the session (StartTLS, TLS handshake) or the bind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect { tls: bool },
    Bind,
}

/// The rustls error inside an I/O error, if the failure was TLS.
fn rustls_error(e: &std::io::Error) -> Option<&tokio_rustls::rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>())
}

/// The name of a result code a bind can answer with (RFC 4511, appendix A).
fn rc_name(rc: u32) -> Option<&'static str> {
    Some(match rc {
        1 => "operationsError",
        2 => "protocolError",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => return None,
    })
}

fn bounded(text: &str) -> String {
    let one = text.split(['\r', '\n']).collect::<Vec<_>>().join(" ");
    let one = one.trim();
    if one.len() <= 200 {
        return one.to_owned();
    }
    let mut cut = 200;
    while !one.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &one[..cut])
}

fn classify(step: Step, e: LdapError) -> TestError {
    match e {
        LdapError::LdapResult { result } => {
            let text = bounded(&result.text);
            let code = match rc_name(result.rc) {
                Some(name) => format!("{name} ({})", result.rc),
                None => format!("result code {}", result.rc),
            };
            let said = if text.is_empty() {
                code
            } else {
                format!("{code}: {text}")
            };
            if let Step::Connect { .. } = step {
                // The only operation before the bind is the StartTLS extended operation.
                return TestError::new(ErrorCode::Tls, format!("the server refused StartTLS: {said}"));
            }
            let kind = match result.rc {
                INVALID_CREDENTIALS | INAPPROPRIATE_AUTHENTICATION => ErrorCode::AuthFailed,
                INSUFFICIENT_ACCESS_RIGHTS => ErrorCode::PermissionDenied,
                CONFIDENTIALITY_REQUIRED | STRONGER_AUTH_REQUIRED => ErrorCode::Tls,
                INVALID_DN_SYNTAX | NO_SUCH_OBJECT => ErrorCode::NotFound,
                _ => ErrorCode::UnexpectedResponse,
            };
            let message = match kind {
                ErrorCode::AuthFailed => format!("the server refused the bind: {said}"),
                ErrorCode::Tls => format!("the server requires TLS for this bind (set starttls or ldaps): {said}"),
                ErrorCode::NotFound => format!("the bind DN is not usable: {said}"),
                _ => format!("the bind failed: {said}"),
            };
            TestError::new(kind, message)
        }
        LdapError::Timeout { .. } => TestError::new(ErrorCode::Timeout, "the LDAP server did not answer in time"),
        LdapError::Rustls { source } => TestError::new(ErrorCode::Tls, format!("the TLS handshake failed: {source}")),
        LdapError::DNSName { .. } => TestError::new(
            ErrorCode::Tls,
            "the host is not a name TLS can verify a certificate against",
        ),
        LdapError::Io { source } => {
            if let Some(tls) = rustls_error(&source) {
                return TestError::new(ErrorCode::Tls, format!("the TLS handshake failed: {tls}"));
            }
            if let Step::Connect { tls: true } = step {
                return TestError::new(
                    ErrorCode::Tls,
                    format!("the TLS session could not be established ({})", source.kind()),
                );
            }
            TestError::new(
                ErrorCode::UnexpectedResponse,
                format!("the server did not answer like an LDAP server ({})", source.kind()),
            )
        }
        // The connection task ended without an answer: the far side sent something that is
        // not LDAP, or closed the connection.
        _ if step == Step::Connect { tls: true } => TestError::new(
            ErrorCode::Tls,
            "the StartTLS exchange failed: the server did not answer like an LDAP server",
        ),
        _ => TestError::new(
            ErrorCode::UnexpectedResponse,
            "the server did not answer like an LDAP server",
        ),
    }
}

impl Tester for Ldap {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "password" {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "only password credentials can be tested against LDAP",
                ));
            }
            let bind_dn = input.config_str("bind_dn").unwrap_or_default();
            let password = input.field("password").unwrap_or_default();
            // An empty password makes a simple bind "unauthenticated", which many servers
            // accept: it would prove nothing.
            if bind_dn.is_empty() || password.is_empty() {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "an LDAP bind test needs a bind_dn and a non-empty password",
                ));
            }
            let ldaps = input.config.get("ldaps").and_then(|v| v.as_bool()).unwrap_or(false);
            let starttls = !ldaps && input.config.get("starttls").and_then(|v| v.as_bool()).unwrap_or(false);
            let host = input.config_str("host").unwrap_or_default();
            let port = input
                .config_int("port")
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(389);
            let tls = ldaps || starttls;
            // Built before connecting: a machine without a trust store fails without a socket.
            let config = if tls { Some(crate::tls::tls_config()?) } else { None };

            let stream = policy.connect(host, port).await?;
            let stream = stream
                .into_std()
                .map_err(|e| TestError::new(ErrorCode::UnexpectedResponse, format!("cannot use the socket: {e}")))?;

            // The URL names the scheme and the TLS server name only (the socket is already
            // open). IPv6 literals are bracketed; the parsed host must be the one checked.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let authority = if bare.contains(':') {
                format!("[{bare}]")
            } else {
                bare.to_owned()
            };
            let scheme = if ldaps { "ldaps" } else { "ldap" };
            let url = url::Url::parse(&format!("{scheme}://{authority}:{port}"))
                .ok()
                .filter(|u| {
                    u.host_str().is_some_and(|h| {
                        h.trim_start_matches('[')
                            .trim_end_matches(']')
                            .eq_ignore_ascii_case(bare)
                    })
                })
                .ok_or_else(|| TestError::new(ErrorCode::Dns, "the host is not a valid host name"))?;

            let mut settings = LdapConnSettings::new()
                .set_conn_timeout(policy.connect_timeout)
                .set_starttls(starttls)
                .set_std_stream(StdStream::Tcp(stream));
            if let Some(config) = config {
                settings = settings.set_config(config);
            }
            let (conn, mut ldap) = LdapConnAsync::from_url_with_settings(settings, &url)
                .await
                .map_err(|e| classify(Step::Connect { tls }, e))?;
            let driver = tokio::spawn(async move {
                let _ = conn.drive().await;
            });
            let bound = ldap
                .with_timeout(policy.total_timeout)
                .simple_bind(bind_dn, password)
                .await
                .and_then(|r| r.success());
            let r = match bound {
                Ok(_) => {
                    let _ = tokio::time::timeout(policy.connect_timeout, ldap.unbind()).await;
                    Ok(())
                }
                Err(e) => Err(classify(Step::Bind, e)),
            };
            driver.abort();
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(rc: u32, text: &str) -> LdapError {
        LdapError::LdapResult {
            result: ldap3::LdapResult {
                rc,
                matched: String::new(),
                text: text.to_owned(),
                refs: Vec::new(),
                ctrls: Vec::new(),
            },
        }
    }

    #[test]
    fn result_codes_map_to_stable_codes() {
        assert_eq!(classify(Step::Bind, result(49, "")).code, ErrorCode::AuthFailed);
        assert_eq!(classify(Step::Bind, result(50, "")).code, ErrorCode::PermissionDenied);
        assert_eq!(
            classify(Step::Bind, result(13, "confidentiality required")).code,
            ErrorCode::Tls
        );
        assert_eq!(classify(Step::Bind, result(34, "invalid DN")).code, ErrorCode::NotFound);
        assert_eq!(classify(Step::Bind, result(1, "")).code, ErrorCode::UnexpectedResponse);
        assert_eq!(
            classify(Step::Connect { tls: true }, result(52, "unavailable")).code,
            ErrorCode::Tls
        );
        assert_eq!(
            classify(Step::Bind, LdapError::EndOfStream).code,
            ErrorCode::UnexpectedResponse
        );
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, "garbage");
        assert_eq!(
            classify(Step::Bind, LdapError::Io { source: io }).code,
            ErrorCode::UnexpectedResponse
        );
    }
}
