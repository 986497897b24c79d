//! Format checks ([`Check`]) as small hand-written parsers.
//!
//! Every error message here describes the problem and never repeats any part of the input: the
//! caller decides whether the value may be quoted (see [`quote_suffix`]).

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::Check;
use crate::secret::zeroize_json;

/// Default maximum length of a string field, in bytes.
pub(super) const MAX_STRING_BYTES: usize = 64 * 1024;
/// Maximum length of PEM and JSON document fields, in bytes.
pub(super) const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Standard base64, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// ` (got "value")` for a short value without control characters, else the empty string. Only
/// for values of non-secret fields.
pub(super) fn quote_suffix(s: &str) -> String {
    if s.chars().count() <= 64 && !s.chars().any(char::is_control) {
        format!(" (got {s:?})")
    } else {
        String::new()
    }
}

/// The maximum length in bytes of a string checked with `check`.
pub(super) fn max_len(check: Check) -> usize {
    match check {
        Check::Pem
        | Check::PrivateKeyPem
        | Check::CertificatePem
        | Check::GcpServiceAccountJson
        | Check::GcpExternalAccountJson => MAX_DOCUMENT_BYTES,
        _ => MAX_STRING_BYTES,
    }
}

/// The authorization request parameters credvault sets itself: `authorization_params` cannot
/// override them (PKCE, the state and the callback are what make consent safe).
pub const OAUTH_OWN_PARAMS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// Runs a string check. `query_param` says the enclosing api_key part has `"in": "query"`.
pub(super) fn check_str(check: Check, s: &str, query_param: bool) -> Result<(), String> {
    let ok = |cond: bool, msg: &str| if cond { Ok(()) } else { Err(msg.to_owned()) };
    match check {
        Check::None | Check::NonEmpty | Check::Count { .. } => Ok(()),
        Check::AwsRoleArn => ok(
            is_aws_role_arn(s),
            "must be an IAM role ARN such as arn:aws:iam::123456789012:role/name",
        ),
        Check::AwsAccessKeyId => ok(
            (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            "must be an AWS access key ID: 16–128 uppercase letters and digits",
        ),
        Check::AwsRegion => ok(is_aws_region(s), "must be an AWS region such as us-east-1"),
        Check::AwsExternalId => ok(
            (2..=1224).contains(&s.len()) && s.bytes().all(|b| is_aws_name_byte(b) || b == b':' || b == b'/'),
            "must be 2–1224 characters of letters, digits and _+=,.@:/-",
        ),
        Check::AwsSessionName => ok(
            (2..=64).contains(&s.len()) && s.bytes().all(is_aws_name_byte),
            "must be 2–64 characters of letters, digits and _+=,.@-",
        ),
        // Ports are integers; a string never reaches here for a well-formed schema.
        Check::Port => Err("must be an integer port number".to_owned()),
        Check::Url => check_url(s),
        Check::Pem => parse_pem(s)
            .map(|_| ())
            .map_err(|e| format!("is not a valid PEM document: {e}")),
        Check::PrivateKeyPem => check_private_key_pem(s),
        Check::CertificatePem => check_certificate_pem(s),
        Check::GcpServiceAccountJson => check_json_document(s, gcp_service_account),
        Check::GcpExternalAccountJson => check_json_document(s, gcp_external_account),
        Check::CredentialId => ok(
            is_credential_id(s),
            "must be a credential ID: cred_ followed by 26 characters of a-z and 2-7",
        ),
        Check::HeaderName => ok(
            is_header_name(s),
            "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, at most 256)",
        ),
        Check::ApiKeyPartName if query_param => ok(
            s.chars().count() <= 128 && !s.chars().any(char::is_control),
            "must be a query parameter name of at most 128 characters without control characters",
        ),
        Check::ApiKeyPartName => ok(
            is_header_name(s),
            "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, at most 256)",
        ),
        Check::OAuthParamName => {
            ok(
                (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)),
                "must be a parameter name of 1 to 128 letters, digits and ._~-",
            )?;
            ok(
                !OAUTH_OWN_PARAMS.contains(&s),
                "is a parameter credvault sets itself (response_type, client_id, redirect_uri, scope, state, code_challenge, code_challenge_method)",
            )
        }
        Check::Uuid => ok(is_uuid(s), "must be a UUID (8-4-4-4-12 hexadecimal digits)"),
        Check::AzureTenantId => ok(
            is_uuid(s) || is_dns_name(s),
            "must be a tenant ID (UUID) or a domain name such as contoso.onmicrosoft.com",
        ),
        Check::SshHostKey => check_ssh_host_key(s),
    }
}

// ---------------------------------------------------------------------------------------- AWS

fn is_aws_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)
}

fn is_aws_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        return false;
    }
    // IAM is global: the region part is empty.
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, rest)) = rest.split_once(':') else {
        return false;
    };
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Some(path) = rest.strip_prefix("role/") else {
        return false;
    };
    if path.is_empty() || path.len() > 512 {
        return false;
    }
    if !path.bytes().all(|b| is_aws_name_byte(b) || b == b'/') {
        return false;
    }
    let segments: Vec<&str> = path.split('/').collect();
    let name = segments.last().copied().unwrap_or_default();
    segments.iter().all(|seg| !seg.is_empty()) && name.len() <= 64
}

fn is_aws_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    s.len() <= 32
        && parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.first().is_some_and(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

// ------------------------------------------------------------------------------- identifiers

fn is_credential_id(s: &str) -> bool {
    s.strip_prefix("cred_").is_some_and(|body| {
        body.len() == 26
            && body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An RFC 7230 token, 1–256 characters.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A DNS name with at least two labels of letters, digits and inner dashes.
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    s.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()))
}

// ---------------------------------------------------------------------------------------- URL

fn check_url(s: &str) -> Result<(), String> {
    const SHAPE: &str = "must be an absolute http:// or https:// URL";
    let lower_scheme = s.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let rest = if lower_scheme.starts_with("http://") {
        s.get(7..)
    } else if lower_scheme == "https://" {
        s.get(8..)
    } else {
        None
    };
    let Some(rest) = rest else {
        return Err(SHAPE.to_owned());
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{SHAPE} without spaces or control characters"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{SHAPE} without user information (put credentials in secret fields)"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(format!("{SHAPE} with a valid host"));
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(format!("{SHAPE} with a valid host"));
        }
        match after {
            "" => (addr, None),
            p => match p.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Err(format!("{SHAPE} with a valid host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let bracketed = authority.starts_with('[');
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_~%".contains(&b) || (bracketed && b == b':'))
    {
        return Err(format!("{SHAPE} with a valid host"));
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid {
            return Err(format!("{SHAPE} with a port between 1 and 65535"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------- PEM

/// Parses a PEM document (RFC 7468, with RFC 1421 headers tolerated) and returns its block
/// labels. Text outside the blocks is ignored. Decoded bodies are zeroized.
pub(super) fn parse_pem(text: &str) -> Result<Vec<String>, String> {
    let mut labels = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        let Some(label) = begin_label(line.trim()) else {
            if line.trim_start().starts_with("-----END ") {
                return Err("an END line has no matching BEGIN line".to_owned());
            }
            continue;
        };
        // Sized up front so pushing never reallocates (which would leave a copy behind).
        let mut body = Zeroizing::new(String::with_capacity(text.len()));
        let mut ended = false;
        let mut first = true;
        let mut in_headers = false;
        let mut had_headers = false;
        for (n, raw) in lines.by_ref() {
            let l = raw.trim();
            if let Some(end) = l.strip_prefix("-----END ").and_then(|r| r.strip_suffix("-----")) {
                if end != label {
                    return Err(format!("the END line at line {} does not match its BEGIN line", n + 1));
                }
                ended = true;
                break;
            }
            if l.starts_with("-----") {
                return Err(format!("unexpected boundary line at line {}", n + 1));
            }
            if first && l.contains(':') {
                in_headers = true;
                had_headers = true;
            }
            first = false;
            if in_headers {
                if l.is_empty() {
                    in_headers = false;
                }
                continue;
            }
            if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
                return Err(format!("line {} is not base64", n + 1));
            }
            body.push_str(l);
        }
        if !ended {
            return Err("a BEGIN line has no matching END line".to_owned());
        }
        if body.is_empty() {
            return Err("a block has an empty body".to_owned());
        }
        let decoded = Zeroizing::new(
            BASE64
                .decode(body.as_bytes())
                .map_err(|_| "a block's body is not valid base64".to_owned())?,
        );
        if label == "OPENSSH PRIVATE KEY" {
            if !decoded.starts_with(b"openssh-key-v1\0") {
                return Err("an OPENSSH PRIVATE KEY block is not an OpenSSH key".to_owned());
            }
        } else if !had_headers
            && (label.ends_with("PRIVATE KEY") || label == "CERTIFICATE")
            && decoded.first() != Some(&0x30)
        {
            return Err("a block's body is not DER-encoded".to_owned());
        }
        labels.push(label.to_owned());
    }
    if labels.is_empty() {
        return Err("no -----BEGIN …----- line found".to_owned());
    }
    Ok(labels)
}

fn begin_label(line: &str) -> Option<&str> {
    let label = line.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?;
    let valid = !label.is_empty()
        && label.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !label.starts_with([' ', '-'])
        && !label.ends_with([' ', '-']);
    valid.then_some(label)
}

fn check_private_key_pem(s: &str) -> Result<(), String> {
    let labels = parse_pem(s).map_err(|e| format!("is not a valid PEM private key: {e}"))?;
    let keys = labels.iter().filter(|l| l.ends_with("PRIVATE KEY")).count();
    let others_ok = labels
        .iter()
        .all(|l| l.ends_with("PRIVATE KEY") || l == "EC PARAMETERS");
    if keys == 1 && others_ok {
        Ok(())
    } else {
        Err(
            "must contain exactly one PEM private key block (-----BEGIN … PRIVATE KEY-----) and \
             nothing else"
                .to_owned(),
        )
    }
}

fn check_certificate_pem(s: &str) -> Result<(), String> {
    let labels = parse_pem(s).map_err(|e| format!("is not a valid PEM certificate: {e}"))?;
    if labels.iter().all(|l| l == "CERTIFICATE") {
        Ok(())
    } else {
        Err("must contain only CERTIFICATE PEM blocks".to_owned())
    }
}

// -------------------------------------------------------------------------------- GCP (JSON)

/// Parses `s` as a JSON object, runs `f` on it, then zeroizes the parsed copy.
fn check_json_document(s: &str, f: fn(&Map<String, Value>) -> Result<(), String>) -> Result<(), String> {
    let mut v: Value =
        serde_json::from_str(s).map_err(|e| format!("is not valid JSON (line {}, column {})", e.line(), e.column()))?;
    let result = match &v {
        Value::Object(m) => f(m),
        _ => Err("must be a JSON object".to_owned()),
    };
    zeroize_json(&mut v);
    result
}

fn str_member<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("has a \"{key}\" member that is not a string")),
    }
}

fn required_str_member<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match str_member(m, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("is missing \"{key}\"")),
    }
}

fn gcp_service_account(m: &Map<String, Value>) -> Result<(), String> {
    if str_member(m, "type").ok().flatten() != Some("service_account") {
        return Err("must have \"type\": \"service_account\"".to_owned());
    }
    if !required_str_member(m, "client_email")?.contains('@') {
        return Err("has a \"client_email\" that is not an email address".to_owned());
    }
    check_private_key_pem(required_str_member(m, "private_key")?)
        .map_err(|e| format!("has a \"private_key\" that {e}"))?;
    str_member(m, "project_id")?;
    if let Some(uri) = str_member(m, "token_uri")? {
        check_url(uri).map_err(|e| format!("has a \"token_uri\" that {e}"))?;
    }
    Ok(())
}

fn gcp_external_account(m: &Map<String, Value>) -> Result<(), String> {
    if str_member(m, "type").ok().flatten() != Some("external_account") {
        return Err("must have \"type\": \"external_account\"".to_owned());
    }
    required_str_member(m, "audience")?;
    required_str_member(m, "subject_token_type")?;
    check_url(required_str_member(m, "token_url")?).map_err(|e| format!("has a \"token_url\" that {e}"))?;
    if !m.get("credential_source").is_some_and(Value::is_object) {
        return Err("must have a \"credential_source\" object".to_owned());
    }
    if let Some(url) = str_member(m, "service_account_impersonation_url")? {
        check_url(url).map_err(|e| format!("has a \"service_account_impersonation_url\" that {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------- SSH host keys

const SSH_KEY_ALGORITHMS: [&str; 7] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

fn check_ssh_host_key(s: &str) -> Result<(), String> {
    const SHAPE: &str = "must be an SSH public host key such as \"ssh-ed25519 AAAA…\"";
    let tokens: Vec<&str> = s.split_whitespace().collect();
    // Optionally preceded by a known_hosts host pattern.
    let start = match tokens.first() {
        Some(t) if SSH_KEY_ALGORITHMS.contains(t) => 0,
        Some(_) if tokens.get(1).is_some_and(|t| SSH_KEY_ALGORITHMS.contains(t)) => 1,
        _ => {
            return Err(format!("{SHAPE} (algorithm one of {})", SSH_KEY_ALGORITHMS.join(", ")));
        }
    };
    let (Some(algorithm), Some(blob)) = (tokens.get(start), tokens.get(start + 1)) else {
        return Err(format!("{SHAPE}: the base64 key is missing"));
    };
    let Ok(decoded) = BASE64.decode(blob) else {
        return Err(format!("{SHAPE}: the key is not valid base64"));
    };
    // The blob starts with the algorithm name as an SSH string (u32 big-endian length + bytes).
    let mut expected = (algorithm.len() as u32).to_be_bytes().to_vec();
    expected.extend_from_slice(algorithm.as_bytes());
    if decoded.len() <= expected.len() || !decoded.starts_with(&expected) {
        return Err(format!("{SHAPE}: the key does not match its algorithm"));
    }
    Ok(())
}
