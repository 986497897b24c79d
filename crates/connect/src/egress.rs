//! The egress policy for every outbound connection the server makes on a user's behalf
//! (Test connection, token exchanges). A user chooses the target, so the target is hostile
//! until checked:
//!
//! - the name is resolved once, here; every resolved address is checked; the connection goes
//!   to exactly a checked address (no second resolution, so DNS rebinding cannot swap it);
//! - loopback, link-local (169.254.169.254 and friends), private, CGNAT, ULA, multicast,
//!   documentation and reserved ranges are refused — including their IPv4-mapped, NAT64,
//!   6to4 and IPv4-compatible IPv6 spellings — unless the operator allows a CIDR;
//! - connect and total timeouts are strict, and the number of tests in flight is bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::{ErrorCode, TestError};

/// An IP network (`127.0.0.0/8`, `::1/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` (or a bare address, a /32 or /128).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| format!("`{s}` is not an IP network"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a bad prefix length"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let m = 0xffu8 << (8 - rest);
    (a[full] & m) == (b[full] & m)
}

/// Why an IPv4 address is not a public destination, if it is not.
fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "this-network address",
        [10, ..] => "private address",
        [100, b, ..] if (64..128).contains(&b) => "carrier-grade NAT address",
        [127, ..] => "loopback address",
        [169, 254, ..] => "link-local address (cloud metadata lives here)",
        [172, b, ..] if (16..32).contains(&b) => "private address",
        [192, 0, 0, _] => "IETF protocol assignment",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation address",
        [192, 88, 99, _] => "6to4 relay anycast",
        [192, 168, ..] => "private address",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking address",
        [a, ..] if a >= 224 => "multicast or reserved address",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, if it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4); // ::ffff:a.b.c.d
    }
    if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15])); // ::ffff:0:a.b.c.d (SIIT)
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15])); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])); // 6to4
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15])); // ::a.b.c.d (deprecated)
    }
    None
}

/// Why an address is not a public destination, if it is not.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return v4_reason(v4);
            }
            let s = v6.segments();
            Some(match s[0] {
                _ if v6.is_unspecified() => "unspecified address",
                _ if v6.is_loopback() => "loopback address",
                x if x & 0xfe00 == 0xfc00 => "unique local address",
                x if x & 0xffc0 == 0xfe80 => "link-local address",
                x if x & 0xffc0 == 0xfec0 => "site-local address",
                x if x & 0xff00 == 0xff00 => "multicast address",
                0x2001 if s[1] == 0x0db8 => "documentation address",
                0x0100 if s[1..4] == [0, 0, 0] => "discard address",
                0x0064 if s[1] == 0xff9b && s[2] == 1 => "local-use NAT64 address",
                _ => return None,
            })
        }
    }
}

/// The operator's policy.
#[derive(Clone, Debug)]
pub struct EgressPolicy {
    /// Networks allowed even though they are not public (e.g. `127.0.0.0/8` in tests, a
    /// private database subnet in production).
    pub allow: Vec<Cidr>,
    /// Time to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Time for a whole test.
    pub total_timeout: Duration,
    /// Tests in flight at once, server-wide.
    pub concurrency: Arc<Semaphore>,
    /// The destinations this call may reach (issue 13), checked before any connection;
    /// `None` only for calls that carry no credential's secret.
    pub guard: Option<Arc<crate::guard::Guard>>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            concurrency: Arc::new(Semaphore::new(16)),
            guard: None,
        }
    }
}

impl EgressPolicy {
    /// A policy with an allow list.
    pub fn with_allow(allow: Vec<Cidr>) -> EgressPolicy {
        EgressPolicy {
            allow,
            ..EgressPolicy::default()
        }
    }

    /// The same policy, restricted to the destinations `guard` allows.
    pub fn guarded(&self, guard: crate::guard::Guard) -> EgressPolicy {
        EgressPolicy {
            guard: Some(Arc::new(guard)),
            ..self.clone()
        }
    }

    /// Checks `host:port` against the guard before anything is resolved or dialled. `Ok(None)`:
    /// allowed; `Ok(Some(dest))`: allowed only if the addresses it resolves to are.
    pub fn check_destination(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Option<credvault_domain::destinations::Destination>, TestError> {
        match &self.guard {
            Some(g) => g.precheck(host, port),
            None => Ok(None),
        }
    }

    /// Checks a host reached through an SSH bastion (which resolves it): by name only.
    pub fn check_tunnel_destination(&self, host: &str, port: u16) -> Result<(), TestError> {
        match &self.guard {
            Some(g) => g.check_by_name(host, port),
            None => Ok(()),
        }
    }

    /// Checks one address: public, or inside an allowed network.
    pub fn check(&self, ip: IpAddr) -> Result<(), TestError> {
        let Some(reason) = non_public_reason(ip) else {
            return Ok(());
        };
        // An allowed network matches the address itself, or the IPv4 address an IPv4-mapped
        // IPv6 address *is* (the same host). NAT64, 6to4 and compatible forms route elsewhere
        // and must be allowed in their own IPv6 form.
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        if self
            .allow
            .iter()
            .any(|c| c.contains(ip) || mapped.is_some_and(|m| c.contains(m)))
        {
            return Ok(());
        }
        let shown = mapped.unwrap_or(ip);
        Err(TestError::new(
            ErrorCode::EgressDenied,
            format!("{shown} is a {reason}; the server's egress policy does not allow it"),
        ))
    }

    /// Resolves `host` once and checks every address. A name with any forbidden address is
    /// refused as a whole (a rebinding name often answers with one public and one private).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TestError> {
        let by_addresses = self.check_destination(host, port)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(TestError::new(ErrorCode::Dns, "no host name"));
        }
        let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            let lookup = tokio::net::lookup_host((host, port));
            match tokio::time::timeout(self.connect_timeout, lookup).await {
                Err(_) => {
                    return Err(TestError::new(
                        ErrorCode::Timeout,
                        format!("resolving {host} timed out"),
                    ));
                }
                Ok(Err(_)) => return Err(TestError::new(ErrorCode::Dns, format!("{host} could not be resolved"))),
                Ok(Ok(it)) => it.collect(),
            }
        };
        if addrs.is_empty() {
            return Err(TestError::new(ErrorCode::Dns, format!("{host} has no addresses")));
        }
        for a in &addrs {
            self.check(a.ip())?;
        }
        if let (Some(dest), Some(g)) = (&by_addresses, &self.guard) {
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            g.check_resolved(dest, &ips)?;
        }
        Ok(addrs)
    }

    /// Resolves, checks and connects to exactly a checked address.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, TestError> {
        let addrs = self.resolve(host, port).await?;
        let mut last = TestError::new(
            ErrorCode::ConnectRefused,
            format!("{host}:{port} refused the connection"),
        );
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = TestError::new(ErrorCode::ConnectRefused, format!("{addr} refused the connection"));
                }
                Ok(Err(e)) => {
                    last = TestError::new(
                        ErrorCode::ConnectRefused,
                        format!("cannot connect to {addr}: {}", e.kind()),
                    )
                }
                Err(_) => last = TestError::new(ErrorCode::Timeout, format!("connecting to {addr} timed out")),
            }
        }
        Err(last)
    }
}

/// A reqwest resolver that applies the policy (and its destination guard, for the port of
/// the one URL the client is built for): reqwest connects to exactly the addresses returned
/// here.
pub(crate) struct PolicyResolver {
    pub policy: EgressPolicy,
    pub port: u16,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, port) = (self.policy.clone(), self.port);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy
                .resolve(&host, port)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn denied(p: &EgressPolicy, s: &str) -> bool {
        p.check(s.parse().unwrap()).is_err()
    }

    #[test]
    fn non_public_addresses_and_their_ipv6_spellings_are_refused() {
        let p = EgressPolicy::default();
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
            "ff02::1",
        ] {
            assert!(denied(&p, s), "{s} should be refused");
        }
        for s in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "93.184.216.34"] {
            assert!(!denied(&p, s), "{s} should be allowed");
        }
    }

    #[test]
    fn an_allowed_cidr_opens_exactly_that_network() {
        let p = EgressPolicy::with_allow(vec![Cidr::parse("127.0.0.0/8").unwrap()]);
        assert!(!denied(&p, "127.0.0.1"));
        assert!(!denied(&p, "::ffff:127.0.0.1"));
        assert!(denied(&p, "169.254.169.254"));
        assert!(denied(&p, "10.0.0.1"));
        assert!(
            denied(&p, "2002:7f00:1::"),
            "6to4 of loopback routes to the internet, not to loopback"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
        assert!(
            Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains("10.255.1.1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("10.0.0.0/9")
                .unwrap()
                .contains("10.128.0.1".parse().unwrap())
        );
    }
}
