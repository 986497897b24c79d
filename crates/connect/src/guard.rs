//! The destination guard: the last check before a byte of a secret leaves (issue 13).
//!
//! The core checks a connection's declared destinations against its credential's allowed set
//! before it calls a tester; this guard repeats the check at the socket, for every host the
//! tester actually dials, so a tester (or a new connector kind) that sends somewhere its kind
//! did not declare is refused too. A host:port passes when it is
//!
//! - allowed by the allowed set of **every** credential whose secret travels on the call (the
//!   credential, and each source of an AWS role chain; each set includes the destinations its
//!   own credential's fields name), or
//! - a provider's fixed public endpoint built into credvault ([`provider_default`]): AWS STS,
//!   Microsoft Entra, Google OAuth — what a tester uses when the config names no endpoint.
//!
//! A name that only IP/CIDR entries could allow is decided by the addresses it resolved to,
//! which are the addresses the connection then goes to (the egress policy connects to exactly
//! a checked address).

use std::net::IpAddr;

use credvault_domain::destinations::{AllowedSet, Destination, Host, Verdict};

use crate::{ErrorCode, TestError};

/// The allowed sets a call must satisfy, one per credential whose secret it carries.
#[derive(Clone, Debug)]
pub struct Guard {
    sets: Vec<(String, AllowedSet)>,
}

/// A provider's fixed public endpoint that testers use when a config names none.
pub fn provider_default(dest: &Destination) -> bool {
    let Host::Name(n) = &dest.host else { return false };
    if dest.port != 443 {
        return false;
    }
    if n == "login.microsoftonline.com" || n == "oauth2.googleapis.com" || n == "sts.amazonaws.com" {
        return true;
    }
    // sts.REGION.amazonaws.com
    let labels: Vec<&str> = n.split('.').collect();
    labels.len() == 4
        && labels[0] == "sts"
        && labels[2] == "amazonaws"
        && labels[3] == "com"
        && labels[1]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn refused(dest: &Destination, credential: &str) -> TestError {
    TestError::new(
        ErrorCode::DestinationNotAllowed,
        format!("{dest} is not an allowed destination of credential {credential}; the secret was not sent"),
    )
}

impl Guard {
    /// A guard over these credentials' sets (credential ID, set).
    pub fn new(sets: Vec<(String, AllowedSet)>) -> Guard {
        Guard { sets }
    }

    /// Checks `host:port` before DNS. `Ok(None)`: allowed. `Ok(Some(dest))`: decided by the
    /// addresses the name resolves to ([`Guard::check_resolved`]).
    pub fn precheck(&self, host: &str, port: u16) -> Result<Option<Destination>, TestError> {
        let dest = Destination::new(host, port).map_err(|m| {
            TestError::new(
                ErrorCode::DestinationNotAllowed,
                format!("the host {m}; the secret was not sent"),
            )
        })?;
        if provider_default(&dest) {
            return Ok(None);
        }
        let mut needs = false;
        for (id, set) in &self.sets {
            match set.check(&dest) {
                Verdict::Allowed => {}
                Verdict::Denied => return Err(refused(&dest, id)),
                Verdict::NeedsAddresses => needs = true,
            }
        }
        Ok(needs.then_some(dest))
    }

    /// Checks a name by the addresses it resolved to.
    pub fn check_resolved(&self, dest: &Destination, addrs: &[IpAddr]) -> Result<(), TestError> {
        for (id, set) in &self.sets {
            if !set.permits_resolved(dest, addrs) {
                return Err(refused(dest, id));
            }
        }
        Ok(())
    }

    /// Checks a name that will not be resolved here (a host reached through an SSH bastion,
    /// which resolves it): by name only.
    pub fn check_by_name(&self, host: &str, port: u16) -> Result<(), TestError> {
        match self.precheck(host, port)? {
            None => Ok(()),
            Some(dest) => Err(TestError::new(
                ErrorCode::DestinationNotAllowed,
                format!(
                    "{dest} is reached through the SSH tunnel, where only names are matched: allow the name itself; the secret was not sent"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn guard(sets: &[&[&str]]) -> Guard {
        Guard::new(
            sets.iter()
                .enumerate()
                .map(|(i, s)| (format!("cred_{i}"), AllowedSet::parse(s).unwrap()))
                .collect(),
        )
    }

    #[test]
    fn every_credential_on_the_call_must_allow_the_destination() {
        let g = guard(&[&["*.example.com"], &["api.example.com:443"]]);
        assert!(g.precheck("api.example.com", 443).unwrap().is_none());
        let e = g.precheck("other.example.com", 443).unwrap_err();
        assert_eq!(e.code, ErrorCode::DestinationNotAllowed);
        assert!(e.message.contains("cred_1"), "{}", e.message);
        assert!(guard(&[&[]]).precheck("api.example.com", 443).is_err());
    }

    #[test]
    fn provider_endpoints_pass_and_look_alikes_do_not() {
        let g = guard(&[&[]]);
        for ok in [
            "sts.amazonaws.com",
            "sts.eu-west-1.amazonaws.com",
            "login.microsoftonline.com",
            "oauth2.googleapis.com",
        ] {
            assert!(g.precheck(ok, 443).unwrap().is_none(), "{ok}");
        }
        for bad in [
            ("sts.amazonaws.com", 80),
            ("bucket.s3.amazonaws.com", 443),
            ("sts.evil.example.com", 443),
            ("sts.x.amazonaws.com.evil", 443),
            ("oauth2.googleapis.com.evil.example", 443),
        ] {
            assert!(g.precheck(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_allowed_only_by_networks_are_decided_by_their_addresses() {
        let g = guard(&[&["10.0.0.0/8:5432"]]);
        let d = g.precheck("db.internal", 5432).unwrap().unwrap();
        assert!(g.check_resolved(&d, &["10.1.2.3".parse().unwrap()]).is_ok());
        assert!(
            g.check_resolved(&d, &["10.1.2.3".parse().unwrap(), "192.0.2.1".parse().unwrap()])
                .is_err()
        );
        assert!(g.check_by_name("db.internal", 5432).is_err());
        assert!(g.check_by_name("10.9.9.9", 5432).is_ok());
    }
}
