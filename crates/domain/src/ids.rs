//! Opaque, prefixed identifiers (`org_…`, `cred_…`, …): 128 random bits rendered as 26
//! lowercase base32 characters, so they are unguessable and carry no order. Each kind is
//! its own type so a `CredentialId` can never be passed where a `ConnectionId` is meant.

use std::fmt;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Number of base32 characters after the prefix (128 bits need 26 characters).
pub const ID_BODY_LEN: usize = 26;

/// Why a string is not an identifier of the expected kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The prefix names another kind of object (or none).
    #[error("expected an identifier starting with `{expected}`")]
    WrongPrefix {
        /// The prefix this kind uses, e.g. `cred_`.
        expected: &'static str,
    },
    /// The part after the prefix is not 26 base32 characters.
    #[error("malformed identifier")]
    Malformed,
}

fn random_body() -> String {
    let mut bytes = [0u8; 17];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness no identifier (or key) can be made safely; there is no fallback.
        std::process::abort();
    }
    let mut out = String::with_capacity(ID_BODY_LEN);
    // 26 characters × 5 bits = 130 bits: take them from the first 17 bytes.
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 && out.len() < ID_BODY_LEN {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    out
}

fn check(prefix: &'static str, s: &str) -> Result<(), IdError> {
    let Some(body) = s.strip_prefix(prefix) else {
        return Err(IdError::WrongPrefix { expected: prefix });
    };
    if body.len() == ID_BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b)) {
        Ok(())
    } else {
        Err(IdError::Malformed)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every identifier of this kind starts with.
            pub const PREFIX: &'static str = $prefix;
            /// A fresh random identifier.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_body()))
            }
            /// Parses a string that must be an identifier of this kind.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check($prefix, s)?;
                Ok(Self(s.to_owned()))
            }
            /// Wraps a value read back from our own store without re-checking it.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(/// An organization: the tenancy boundary.
    OrgId, "org_");
id_type!(/// A workspace inside an organization.
    WorkspaceId, "ws_");
id_type!(/// A credential.
    CredentialId, "cred_");
id_type!(/// A connection.
    ConnectionId, "conn_");
id_type!(/// A pipeline.
    PipelineId, "pl_");
id_type!(/// An API token (the identifier, never the secret).
    TokenId, "tok_");
id_type!(/// A role binding.
    BindingId, "rb_");
id_type!(/// A credential review.
    ReviewId, "rev_");
id_type!(/// A request, for correlating logs, responses and audit events.
    RequestId, "req_");

/// A principal: a human user (`usr_…`) or a service account (`sa_…`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct PrincipalId(String);

/// The two kinds of principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human.
    User,
    /// Automation: workers, CI, integrations.
    ServiceAccount,
}

impl PrincipalKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ServiceAccount => "service_account",
        }
    }
    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "service_account" => Some(Self::ServiceAccount),
            _ => None,
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Self::User => "usr_",
            Self::ServiceAccount => "sa_",
        }
    }
}

impl PrincipalId {
    /// A fresh identifier for a principal of `kind`.
    pub fn generate(kind: PrincipalKind) -> Self {
        Self(format!("{}{}", kind.prefix(), random_body()))
    }
    /// Parses `usr_…` or `sa_…`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check("usr_", s)
            .or_else(|_| check("sa_", s))
            .map_err(|_| IdError::WrongPrefix {
                expected: "usr_` or `sa_",
            })?;
        Ok(Self(s.to_owned()))
    }
    /// Wraps a value read back from our own store.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Which kind of principal this identifier names.
    pub fn kind(&self) -> PrincipalKind {
        if self.0.starts_with("sa_") {
            PrincipalKind::ServiceAccount
        } else {
            PrincipalKind::User
        }
    }
}
impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl<'de> serde::Deserialize<'de> for PrincipalId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A human-chosen name (organization, workspace, credential, principal…): 1–128 characters of
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit. Names appear in URLs,
/// CSV exports and log lines, so the alphabet is kept boring on purpose.
pub fn check_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > 128 {
        return Err("must be at most 128 characters");
    }
    let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if !first_ok {
        return Err("must start with a letter or digit");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may contain only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// The environment a credential or connection belongs to. Free-form but checked
/// (`dev`, `staging`, `prod`, or another short lowercase word), because attachment rules
/// compare environments for equality.
pub fn check_environment(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 32 {
        return Err("must be 1–32 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may contain only lowercase letters, digits and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = CredentialId::generate();
        let b = CredentialId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), "cred_".len() + ID_BODY_LEN);
        assert_eq!(CredentialId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn ids_of_another_kind_or_malformed_are_refused() {
        let c = CredentialId::generate();
        assert!(matches!(
            ConnectionId::parse(c.as_str()),
            Err(IdError::WrongPrefix { .. })
        ));
        assert_eq!(CredentialId::parse("cred_short"), Err(IdError::Malformed));
        assert_eq!(
            CredentialId::parse("cred_AAAAAAAAAAAAAAAAAAAAAAAAAA"),
            Err(IdError::Malformed)
        );
        assert!(CredentialId::parse("cred_../../etc/passwd").is_err());
    }

    #[test]
    fn principal_ids_know_their_kind() {
        let u = PrincipalId::generate(PrincipalKind::User);
        let s = PrincipalId::generate(PrincipalKind::ServiceAccount);
        assert_eq!(u.kind(), PrincipalKind::User);
        assert_eq!(s.kind(), PrincipalKind::ServiceAccount);
        assert!(PrincipalId::parse(u.as_str()).is_ok());
        assert!(PrincipalId::parse("org_aaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
    }

    #[test]
    fn names_and_environments_are_checked() {
        assert!(check_name("prod-warehouse").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(129)).is_err());
        assert!(check_environment("prod").is_ok());
        assert!(check_environment("Prod").is_err());
    }
}
