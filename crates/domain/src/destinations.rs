//! Destinations: where a secret is sent (PRODUCT.md §3, "Where a secret may go").
//!
//! A connection sends its credential's secret to the hosts its config names — a host and port,
//! a base URL, a token, authority or STS endpoint. Those are its **destinations**, declared
//! once per connector kind ([`destination_fields`], an exhaustive match: a new kind does not
//! compile until it says where it sends secrets, and a unit test checks that every URL or
//! host field of every kind is declared). A credential's own fields may name destinations too
//! (an OAuth credential's token URL, an SSH tunnel's bastion: [`credential_destinations`]);
//! its owners set those, so they are allowed for that credential.
//!
//! A credential carries an [`AllowedSet`] of [`Pattern`]s: an exact host, `*.suffix`, an IP
//! address or a CIDR, each with an optional port. A [`Destination`] is a normalized host (host
//! names lowercased, IDN to ASCII, one trailing dot dropped; IPv4 in any notation and IPv6 in
//! any spelling become one address, IPv4-mapped IPv6 becomes IPv4) and a port (the URL's
//! scheme's default where the URL gives none). Hosts are normalized with the `url` crate's
//! WHATWG host parser, the one the HTTP client uses, so a spelling that reaches a host is
//! matched as that host.
//!
//! A host name is allowed by a name pattern, or — when the set names IPs/CIDRs — by the
//! addresses it resolves to (all of them must be allowed): [`Verdict::NeedsAddresses`] asks
//! the caller to resolve it (this crate does no IO) and call [`AllowedSet::permits_resolved`].

use std::fmt;
use std::net::IpAddr;

use serde_json::Value;

use crate::connectors::ConnectorKind;
use crate::credential_types::CredentialType;

/// Top-level names used only inside private networks: `*.internal` is a reasonable entry,
/// `*.com` is not.
const PRIVATE_TLDS: [&str; 9] = [
    "internal",
    "local",
    "lan",
    "corp",
    "home",
    "localdomain",
    "intranet",
    "private",
    "test",
];

/// Most entries in one credential's allowed set.
pub const MAX_PATTERNS: usize = 100;

/// A normalized host: a lowercase ASCII name, or an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A DNS name, lowercase ASCII (IDN as punycode), without a trailing dot.
    Name(String),
    /// An IP address (IPv4-mapped IPv6 addresses as IPv4).
    Ip(IpAddr),
}

impl Host {
    /// Parses and normalizes a host as an HTTP client would read it: `Example.COM.`,
    /// `bücher.example`, `[::1]`, `0x7f.1` (which is 127.0.0.1).
    pub fn parse(s: &str) -> Result<Host, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.len() > 253 + 2 {
            return Err("is longer than a host name can be".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("contains spaces or control characters".into());
        }
        // A bare IPv6 address (no brackets) is common in configs.
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(canonical_ip(ip)));
        }
        match url::Host::parse(s) {
            Ok(url::Host::Ipv4(v4)) => Ok(Host::Ip(IpAddr::V4(v4))),
            Ok(url::Host::Ipv6(v6)) => Ok(Host::Ip(canonical_ip(IpAddr::V6(v6)))),
            Ok(url::Host::Domain(d)) => {
                let d = d.strip_suffix('.').unwrap_or(&d).to_owned();
                if d.is_empty() || d.split('.').any(str::is_empty) {
                    return Err("is not a valid host name".into());
                }
                // Found by the credential_fields fuzz target: IDN labels grow as punycode, so a
                // name that was short enough above may not be any more (and would then not parse
                // back from its stored form).
                if d.len() > 253 {
                    return Err("is longer than a host name can be".into());
                }
                if d.bytes()
                    .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
                {
                    return Err("is not a valid host name".into());
                }
                // A name whose last label is numeric would be read as an IPv4 address by
                // some resolvers and as a name by others: refuse it.
                if d.rsplit('.')
                    .next()
                    .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err("is not a valid host name".into());
                }
                Ok(Host::Name(d))
            }
            Err(_) => Err("is not a valid host name or IP address".into()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 host itself.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Where one connection sends a secret: a host and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    /// The host.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

impl Destination {
    /// A host string and a port (1–65535: port 0 is nowhere to send a secret, and no allowed
    /// entry can name it).
    pub fn new(host: &str, port: u16) -> Result<Destination, String> {
        if port == 0 {
            return Err("has port 0, which is not a TCP port".into());
        }
        Ok(Destination {
            host: Host::parse(host)?,
            port,
        })
    }

    /// The host and port of an absolute URL (the scheme's default port when it has none).
    pub fn from_url(s: &str) -> Result<Destination, String> {
        let u = url::Url::parse(s.trim()).map_err(|_| "is not an absolute URL".to_owned())?;
        Destination::of_url(&u)
    }

    /// The host and port of a parsed URL.
    pub fn of_url(u: &url::Url) -> Result<Destination, String> {
        let port = u
            .port_or_known_default()
            .ok_or_else(|| "has no port and no default port for its scheme".to_owned())?;
        // Found by the credential_fields fuzz target: `x://h:0/` made a destination whose
        // pattern (`h:0`) no allowed set can hold, so trusting it on first use was lost.
        if port == 0 {
            return Err("has port 0, which is not a TCP port".into());
        }
        let host = match u.host() {
            Some(url::Host::Domain(d)) => Host::parse(d)?,
            Some(url::Host::Ipv4(v4)) => Host::Ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Host::Ip(canonical_ip(IpAddr::V6(v6))),
            None => return Err("has no host".into()),
        };
        Ok(Destination { host, port })
    }

    /// This destination as the narrowest pattern that allows it (exact host and port).
    pub fn as_pattern(&self) -> Pattern {
        Pattern {
            host: match &self.host {
                Host::Name(n) => HostPattern::Exact(n.clone()),
                Host::Ip(ip) => HostPattern::Ip(*ip),
            },
            port: Some(self.port),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The host part of an allowed-destination entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Exactly this host name.
    Exact(String),
    /// Any name strictly below this one (`*.example.com` allows `a.example.com` and
    /// `a.b.example.com`, not `example.com`).
    Suffix(String),
    /// Exactly this address.
    Ip(IpAddr),
    /// Any address in this network.
    Cidr(IpAddr, u8),
}

/// One entry of an allowed set: a host pattern and an optional port (`None`: any port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    /// Which hosts.
    pub host: HostPattern,
    /// Which port, or any.
    pub port: Option<u16>,
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| "has a port that is not a number from 1 to 65535".to_owned())
}

fn parse_cidr(net: &str, prefix: &str) -> Result<HostPattern, String> {
    let ip: IpAddr = net
        .parse()
        .map_err(|_| "is not a network: a CIDR must start with an IP address".to_owned())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("has a prefix length that is not 0–{max}"))?;
    // A mapped IPv6 network is the IPv4 network.
    if let IpAddr::V6(v6) = ip
        && prefix >= 96
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Ok(HostPattern::Cidr(IpAddr::V4(v4), prefix - 96).normalized());
    }
    Ok(HostPattern::Cidr(ip, prefix).normalized())
}

impl HostPattern {
    /// Host bits of a CIDR cleared; a full-length CIDR is an address.
    fn normalized(self) -> HostPattern {
        match self {
            HostPattern::Cidr(ip, prefix) => {
                let full = if ip.is_ipv4() { 32 } else { 128 };
                if prefix == full {
                    return HostPattern::Ip(ip);
                }
                HostPattern::Cidr(mask(ip, prefix), prefix)
            }
            other => other,
        }
    }

    fn is_address(&self) -> bool {
        matches!(self, HostPattern::Ip(_) | HostPattern::Cidr(..))
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Exact(p), Host::Name(n)) => p == n,
            (HostPattern::Suffix(s), Host::Name(n)) => {
                n.len() > s.len() + 1 && n.ends_with(s.as_str()) && n.as_bytes()[n.len() - s.len() - 1] == b'.'
            }
            (HostPattern::Ip(p), Host::Ip(ip)) => p == ip,
            (HostPattern::Cidr(net, prefix), Host::Ip(ip)) => {
                net.is_ipv4() == ip.is_ipv4() && mask(*ip, *prefix) == *net
            }
            _ => false,
        }
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

impl Pattern {
    /// Parses an entry: `db.example.com`, `db.example.com:5432`, `*.example.com`, `10.0.0.5`,
    /// `10.0.0.0/8`, `10.0.0.0/8:5432`, `[2001:db8::1]:443`, `2001:db8::/32`, `[2001:db8::/32]:443`,
    /// or a URL (`https://api.example.com/`: its host and port, the scheme's default port when
    /// it names none). Error messages never quote the input.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.len() > 300 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must be a host, *.suffix, IP address or CIDR with an optional :port".into());
        }
        if s.contains("://") {
            let u = url::Url::parse(s).map_err(|_| "is not a valid URL".to_owned())?;
            if !(u.path() == "/" || u.path().is_empty()) || u.query().is_some() || u.fragment().is_some() {
                return Err("names a path: a destination is a host and a port, write just those".into());
            }
            if !u.username().is_empty() || u.password().is_some() {
                return Err("must not carry user information".into());
            }
            return Ok(Destination::of_url(&u)?.as_pattern());
        }
        // [v6], [v6]:port, [v6/prefix], [v6/prefix]:port
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest.split_once(']').ok_or_else(|| "has an unclosed [".to_owned())?;
            let port = match after {
                "" => None,
                a => Some(parse_port(
                    a.strip_prefix(':').ok_or_else(|| "has text after ]".to_owned())?,
                )?),
            };
            let host = match inner.split_once('/') {
                Some((net, prefix)) => parse_cidr(net, prefix)?,
                None => {
                    HostPattern::Ip(canonical_ip(inner.parse::<IpAddr>().map_err(|_| {
                        "has brackets around something that is not an IPv6 address".to_owned()
                    })?))
                }
            };
            return Ok(Pattern { host, port });
        }
        // A bare IPv6 address or network (two or more colons): no port.
        if s.matches(':').count() >= 2 {
            let host = match s.split_once('/') {
                Some((net, prefix)) => parse_cidr(net, prefix)?,
                None => {
                    HostPattern::Ip(canonical_ip(s.parse::<IpAddr>().map_err(|_| {
                        "is not a valid IPv6 address (write [address]:port for a port)".to_owned()
                    })?))
                }
            };
            return Ok(Pattern { host, port: None });
        }
        let (host_part, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (s, None),
        };
        if let Some((net, prefix)) = host_part.split_once('/') {
            return Ok(Pattern {
                host: parse_cidr(net, prefix)?,
                port,
            });
        }
        if let Some(suffix) = host_part.strip_prefix("*.") {
            match Host::parse(suffix)? {
                Host::Name(n) if n.contains('.') || PRIVATE_TLDS.contains(&n.as_str()) => {
                    return Ok(Pattern {
                        host: HostPattern::Suffix(n),
                        port,
                    });
                }
                Host::Name(_) => {
                    return Err(
                        "is a wildcard over a public top-level domain; name at least two labels (private ones such as *.internal are fine)"
                            .into(),
                    );
                }
                Host::Ip(_) => return Err("puts a wildcard in front of an IP address; use a CIDR".into()),
            }
        }
        if host_part.contains('*') {
            return Err("may use * only as a whole first label (*.example.com)".into());
        }
        let host = match Host::parse(host_part)? {
            Host::Name(n) => HostPattern::Exact(n),
            Host::Ip(ip) => HostPattern::Ip(ip),
        };
        Ok(Pattern { host, port })
    }

    /// Whether this entry allows `host` on `port`.
    pub fn allows(&self, host: &Host, port: u16) -> bool {
        self.port.is_none_or(|p| p == port) && self.host.matches(host)
    }

    /// Whether every destination this entry allows is also allowed by `other`.
    pub fn within(&self, other: &Pattern) -> bool {
        if other.port.is_some() && other.port != self.port {
            return false;
        }
        match (&self.host, &other.host) {
            (HostPattern::Exact(n), _) => other.host.matches(&Host::Name(n.clone())),
            (HostPattern::Ip(ip), _) => other.host.matches(&Host::Ip(*ip)),
            (HostPattern::Suffix(a), HostPattern::Suffix(b)) => a == b || other.host.matches(&Host::Name(a.clone())),
            (HostPattern::Cidr(net, p), HostPattern::Cidr(onet, op)) => {
                net.is_ipv4() == onet.is_ipv4() && p >= op && mask(*net, *op) == *onet
            }
            _ => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = matches!(
            self.host,
            HostPattern::Ip(IpAddr::V6(_)) | HostPattern::Cidr(IpAddr::V6(_), _)
        );
        let host = match &self.host {
            HostPattern::Exact(n) => n.clone(),
            HostPattern::Suffix(s) => format!("*.{s}"),
            HostPattern::Ip(ip) => ip.to_string(),
            HostPattern::Cidr(ip, p) => format!("{ip}/{p}"),
        };
        match (self.port, bracket) {
            (Some(p), true) => write!(f, "[{host}]:{p}"),
            (Some(p), false) => write!(f, "{host}:{p}"),
            (None, _) => f.write_str(&host),
        }
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What [`AllowedSet::check`] says of a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allowed,
    /// Not allowed.
    Denied,
    /// A host name that no name entry allows, while IP/CIDR entries might allow the addresses
    /// it resolves to: resolve it and ask [`AllowedSet::permits_resolved`].
    NeedsAddresses,
}

/// A credential's allowed destinations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedSet {
    patterns: Vec<Pattern>,
}

/// Why an entry of a list was refused: its index and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError {
    /// Index in the submitted list.
    pub index: usize,
    /// What is wrong (never quotes the entry).
    pub message: String,
}

impl AllowedSet {
    /// An empty set (allows nothing).
    pub fn empty() -> AllowedSet {
        AllowedSet::default()
    }

    /// Parses a submitted list; duplicates and entries covered by another are dropped.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedSet, Vec<EntryError>> {
        let mut errors = Vec::new();
        let mut set = AllowedSet::empty();
        for (index, e) in entries.iter().enumerate() {
            match Pattern::parse(e.as_ref()) {
                Ok(p) => set.insert(p),
                Err(message) => errors.push(EntryError { index, message }),
            }
        }
        if set.patterns.len() > MAX_PATTERNS {
            errors.push(EntryError {
                index: entries.len().saturating_sub(1),
                message: format!("a credential allows at most {MAX_PATTERNS} destinations; use *.suffix or a CIDR"),
            });
        }
        if errors.is_empty() { Ok(set) } else { Err(errors) }
    }

    /// Reads the stored form (a JSON array of strings). Entries that no longer parse are
    /// dropped (they allow nothing), so a stored set never fails a request.
    pub fn from_stored(json: Option<&str>) -> AllowedSet {
        let list: Vec<String> = json.and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default();
        let mut set = AllowedSet::empty();
        for e in list {
            if let Ok(p) = Pattern::parse(&e) {
                set.insert(p);
            }
        }
        set
    }

    /// The stored form: a JSON array of normalized strings.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self.to_strings()).unwrap_or_else(|_| "[]".into())
    }

    /// The normalized entries, sorted.
    pub fn to_strings(&self) -> Vec<String> {
        self.patterns.iter().map(ToString::to_string).collect()
    }

    /// The entries.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether the set allows nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Adds an entry unless another already covers it; drops entries it covers.
    pub fn insert(&mut self, p: Pattern) {
        if self.patterns.iter().any(|q| p.within(q)) {
            return;
        }
        self.patterns.retain(|q| !q.within(&p));
        self.patterns.push(p);
        self.patterns.sort();
    }

    /// Adds `dest` (as exact host and port) unless already allowed by name or address.
    /// Returns whether the set changed.
    pub fn allow(&mut self, dest: &Destination) -> bool {
        if self.check(dest) == Verdict::Allowed {
            return false;
        }
        self.insert(dest.as_pattern());
        true
    }

    /// Whether every entry of `self` is covered by `other` (nothing widened).
    pub fn within(&self, other: &AllowedSet) -> bool {
        self.patterns.iter().all(|p| other.patterns.iter().any(|q| p.within(q)))
    }

    /// Checks a destination without DNS.
    pub fn check(&self, dest: &Destination) -> Verdict {
        if self.patterns.iter().any(|p| p.allows(&dest.host, dest.port)) {
            return Verdict::Allowed;
        }
        let address_entries = self
            .patterns
            .iter()
            .any(|p| p.host.is_address() && p.port.is_none_or(|x| x == dest.port));
        match dest.host {
            Host::Name(_) if address_entries => Verdict::NeedsAddresses,
            _ => Verdict::Denied,
        }
    }

    /// Checks a host name by the addresses it resolved to: allowed by name, or every address
    /// (at least one) is allowed by an IP/CIDR entry on the destination's port.
    pub fn permits_resolved(&self, dest: &Destination, addrs: &[IpAddr]) -> bool {
        match self.check(dest) {
            Verdict::Allowed => true,
            Verdict::Denied => false,
            Verdict::NeedsAddresses => {
                !addrs.is_empty()
                    && addrs.iter().all(|a| {
                        let h = Host::Ip(canonical_ip(*a));
                        self.patterns.iter().any(|p| p.allows(&h, dest.port))
                    })
            }
        }
    }

    /// Entries of `self` that `other` lacks (what a change widens or narrows).
    pub fn minus(&self, other: &AllowedSet) -> Vec<String> {
        self.patterns
            .iter()
            .filter(|p| !other.patterns.contains(p))
            .map(ToString::to_string)
            .collect()
    }
}

/// A destination and the field that names it (`config.base_url`, `fields.token_url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedDestination {
    /// The field path.
    pub field: String,
    /// Where it points.
    pub dest: Destination,
}

/// How a config field names a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestField {
    /// A host name or address; the port is the config's `port` (or the kind's default).
    Host(&'static str),
    /// An absolute URL (host and port; the scheme's default port).
    Url(&'static str),
    /// A path joined to the URL in the named base field (must not leave its host).
    JoinedPath {
        /// The path field.
        path: &'static str,
        /// The base URL field.
        base: &'static str,
    },
}

impl DestField {
    /// The config field this declares.
    pub fn name(self) -> &'static str {
        match self {
            DestField::Host(n) | DestField::Url(n) => n,
            DestField::JoinedPath { path, .. } => path,
        }
    }
}

/// Where each connector kind sends its credential's secret: the config fields that are
/// destinations. Fields left out fall back to a provider's fixed public endpoint built into
/// credvault (AWS STS, Microsoft Entra, Google OAuth) or a host under the provider's own
/// domain (`{account}.snowflakecomputing.com`), which a user cannot point elsewhere.
pub fn destination_fields(kind: ConnectorKind) -> &'static [DestField] {
    use DestField::{Host, JoinedPath, Url};
    match kind {
        ConnectorKind::Sqlserver | ConnectorKind::Oracle | ConnectorKind::Ftp | ConnectorKind::Ldap => &[Host("host")],
        ConnectorKind::Postgres | ConnectorKind::Mysql | ConnectorKind::Redshift => {
            &[Host("host"), Url("sts_endpoint_url")]
        }
        ConnectorKind::Snowflake => &[],
        ConnectorKind::Bigquery | ConnectorKind::Gcs => &[Url("token_url")],
        ConnectorKind::S3 => &[Url("endpoint_url"), Url("sts_endpoint_url")],
        ConnectorKind::AzureBlob => &[Url("endpoint_url"), Url("authority_url")],
        ConnectorKind::Http => &[
            Url("base_url"),
            JoinedPath {
                path: "check_path",
                base: "base_url",
            },
        ],
        ConnectorKind::OauthSaas => &[Url("api_base_url"), Url("check_url")],
    }
}

/// The destinations a (validated) connection config names, with their fields. A field whose
/// value does not make a destination is reported as an error on that field.
pub fn connection_destinations(kind: ConnectorKind, config: &Value) -> Result<Vec<NamedDestination>, (String, String)> {
    let s = |k: &str| config.get(k).and_then(Value::as_str).filter(|v| !v.trim().is_empty());
    let mut out = Vec::new();
    for f in destination_fields(kind) {
        let field = format!("config.{}", f.name());
        let dest = match *f {
            DestField::Host(h) => {
                let Some(host) = s(h) else { continue };
                let port = config
                    .get("port")
                    .and_then(Value::as_i64)
                    .or_else(|| default_port(kind, config))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| ("config.port".to_owned(), "is not a TCP port".to_owned()))?;
                Destination::new(host, port)
            }
            DestField::Url(u) => {
                let Some(url) = s(u) else { continue };
                Destination::from_url(url)
            }
            DestField::JoinedPath { path, base } => {
                let (Some(p), Some(b)) = (s(path), s(base)) else {
                    continue;
                };
                url::Url::parse(b)
                    .and_then(|b| b.join(p))
                    .map_err(|_| "does not make a URL with the base URL".to_owned())
                    .and_then(|u| Destination::of_url(&u))
            }
        };
        out.push(NamedDestination {
            field,
            dest: dest.map_err(|m| (format!("config.{}", f.name()), m))?,
        });
    }
    Ok(out)
}

fn default_port(kind: ConnectorKind, config: &Value) -> Option<i64> {
    if kind == ConnectorKind::Ldap && config.get("ldaps") == Some(&Value::Bool(true)) {
        return Some(636);
    }
    kind.default_port()
}

/// The destinations a credential version's own fields name (all of them, secret ones
/// included: the service-account key file's `token_uri`, say). Only the credential's owners
/// write versions, so these are allowed for the credential that holds them.
pub fn credential_destinations(ty: CredentialType, fields: &Value) -> Vec<NamedDestination> {
    let mut out = Vec::new();
    let mut url = |field: &str, v: Option<&Value>| {
        if let Some(Ok(dest)) = v.and_then(Value::as_str).map(Destination::from_url) {
            out.push(NamedDestination {
                field: field.to_owned(),
                dest,
            });
        }
    };
    match ty {
        CredentialType::Oauth => {
            for k in ["authorization_url", "token_url", "revocation_url"] {
                url(&format!("fields.{k}"), fields.get(k));
            }
        }
        CredentialType::Azure => url("fields.authority_url", fields.get("authority_url")),
        CredentialType::Gcp => {
            url("fields.token_url", fields.get("token_url"));
            for (field, doc) in [
                ("fields.service_account_json", "service_account_json"),
                ("fields.external_account_json", "external_account_json"),
            ] {
                let parsed: Option<zeroize::Zeroizing<String>> = fields
                    .get(doc)
                    .and_then(Value::as_str)
                    .map(|s| zeroize::Zeroizing::new(s.to_owned()));
                if let Some(text) = parsed
                    && let Ok(mut v) = serde_json::from_str::<Value>(&text)
                {
                    for k in ["token_uri", "token_url", "service_account_impersonation_url"] {
                        url(field, v.get(k));
                    }
                    crate::secret::zeroize_json(&mut v);
                }
            }
        }
        CredentialType::Database => {
            if let Some(t) = fields.get("ssh_tunnel").filter(|t| t.is_object()) {
                let port = t.get("port").and_then(Value::as_i64).unwrap_or(22);
                if let (Some(h), Ok(p)) = (t.get("host").and_then(Value::as_str), u16::try_from(port))
                    && let Ok(dest) = Destination::new(h, p)
                {
                    out.push(NamedDestination {
                        field: "fields.ssh_tunnel.host".into(),
                        dest,
                    });
                }
            }
        }
        CredentialType::Aws | CredentialType::ApiKey | CredentialType::Password => {}
    }
    out
}

#[cfg(test)]
mod tests;
