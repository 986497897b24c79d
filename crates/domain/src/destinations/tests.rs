#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::json;

use super::*;
use crate::credential_types::{Check, FieldKind, FieldSchema, all_schemas};

fn dest(s: &str) -> Destination {
    Destination::from_url(s).unwrap()
}

fn set(entries: &[&str]) -> AllowedSet {
    AllowedSet::parse(entries).unwrap()
}

// ------------------------------------------------------------------------- examples

#[test]
fn hosts_are_normalized_as_an_http_client_reads_them() {
    let n = |s: &str| Host::parse(s).unwrap();
    assert_eq!(n("DB.Example.COM."), Host::Name("db.example.com".into()));
    assert_eq!(n("bücher.example"), Host::Name("xn--bcher-kva.example".into()));
    assert_eq!(n("0x7f.1"), Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(n("2130706433"), Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(n("0177.0.0.1"), Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(n("::ffff:127.0.0.1"), Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(n("[0:0::1]"), Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    for bad in ["", "a b", "exa mple.com", "a..b", "foo.123", "a/b", "a@b"] {
        assert!(Host::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn urls_give_their_host_and_the_schemes_default_port() {
    assert_eq!(
        dest("https://API.example.com/v1?x=1").to_string(),
        "api.example.com:443"
    );
    assert_eq!(dest("http://api.example.com").to_string(), "api.example.com:80");
    assert_eq!(
        dest("https://api.example.com:8443/").to_string(),
        "api.example.com:8443"
    );
    assert_eq!(dest("http://[::1]:9/").to_string(), "[::1]:9");
    assert_eq!(dest("http://127.1:9/").to_string(), "127.0.0.1:9");
    assert_eq!(dest("https://user:pw@evil.example/").to_string(), "evil.example:443");
}

#[test]
fn patterns_parse_and_print_in_one_normal_form() {
    let p = |s: &str| Pattern::parse(s).unwrap().to_string();
    assert_eq!(p("DB.example.com"), "db.example.com");
    assert_eq!(p("db.example.com:5432"), "db.example.com:5432");
    assert_eq!(p("*.Example.com:443"), "*.example.com:443");
    assert_eq!(p("*.internal"), "*.internal");
    assert_eq!(p("10.1.2.3"), "10.1.2.3");
    assert_eq!(p("10.1.2.3/8"), "10.0.0.0/8");
    assert_eq!(p("10.0.0.0/8:5432"), "10.0.0.0/8:5432");
    assert_eq!(p("10.0.0.7/32"), "10.0.0.7");
    assert_eq!(p("2001:DB8::1"), "2001:db8::1");
    assert_eq!(p("[2001:db8::1]:443"), "[2001:db8::1]:443");
    assert_eq!(p("2001:db8::/32"), "2001:db8::/32");
    assert_eq!(p("[2001:db8::/32]:443"), "[2001:db8::/32]:443");
    assert_eq!(p("::ffff:10.0.0.0/104"), "10.0.0.0/8");
    assert_eq!(p("https://api.example.com/"), "api.example.com:443");
    assert_eq!(p("http://api.example.com:8080"), "api.example.com:8080");
    for bad in [
        "",
        "*",
        "*.com",
        "*.example",
        "a*.example.com",
        "*.10.0.0.1",
        "db:0",
        "db:65536",
        "db:x",
        "10.0.0.0/33",
        "[::1",
        "[::1]x",
        "[db.example.com]",
        "https://api.example.com/v1/path",
        "https://u:p@api.example.com/",
        "has space.example.com",
    ] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn matching_follows_host_suffix_address_network_and_port() {
    let s = set(&[
        "db.example.com:5432",
        "*.corp.example",
        "10.0.0.0/8:5432",
        "[2001:db8::/32]:443",
    ]);
    assert_eq!(
        s.check(&Destination::new("DB.EXAMPLE.COM.", 5432).unwrap()),
        Verdict::Allowed
    );
    assert_eq!(
        s.check(&Destination::new("db.example.com", 5433).unwrap()),
        Verdict::Denied
    );
    assert_eq!(
        s.check(&Destination::new("a.b.corp.example", 1).unwrap()),
        Verdict::Allowed
    );
    assert_eq!(s.check(&Destination::new("corp.example", 1).unwrap()), Verdict::Denied);
    assert_eq!(
        s.check(&Destination::new("evilcorp.example", 1).unwrap()),
        Verdict::Denied
    );
    assert_eq!(s.check(&Destination::new("10.9.8.7", 5432).unwrap()), Verdict::Allowed);
    assert_eq!(s.check(&Destination::new("10.9.8.7", 5433).unwrap()), Verdict::Denied);
    assert_eq!(
        s.check(&Destination::new("::ffff:10.9.8.7", 5432).unwrap()),
        Verdict::Allowed
    );
    assert_eq!(
        s.check(&Destination::new("2001:0db8:0:0::5", 443).unwrap()),
        Verdict::Allowed
    );
    assert_eq!(s.check(&Destination::new("2001:db9::5", 443).unwrap()), Verdict::Denied);
    // A name that only an address entry could allow: by what it resolves to, all of it.
    let name = Destination::new("db.internal", 5432).unwrap();
    assert_eq!(s.check(&name), Verdict::NeedsAddresses);
    assert!(s.permits_resolved(&name, &["10.1.1.1".parse().unwrap()]));
    assert!(!s.permits_resolved(&name, &["10.1.1.1".parse().unwrap(), "8.8.8.8".parse().unwrap()]));
    assert!(!s.permits_resolved(&name, &[]));
    assert_eq!(set(&["db.example.com"]).check(&name), Verdict::Denied);
}

#[test]
fn the_empty_set_allows_nothing_and_allow_adds_exactly_one_host_and_port() {
    let mut s = AllowedSet::empty();
    let d = Destination::new("api.example.com", 443).unwrap();
    assert_eq!(s.check(&d), Verdict::Denied);
    assert!(s.allow(&d));
    assert!(!s.allow(&d));
    assert_eq!(s.to_strings(), vec!["api.example.com:443"]);
    assert_eq!(
        s.check(&Destination::new("api.example.com", 80).unwrap()),
        Verdict::Denied
    );
    // A wider entry swallows the narrower ones it covers.
    s.insert(Pattern::parse("*.example.com").unwrap());
    assert_eq!(s.to_strings(), vec!["*.example.com"]);
    assert_eq!(AllowedSet::from_stored(Some(&s.to_stored())), s);
    assert_eq!(AllowedSet::from_stored(None), AllowedSet::empty());
    assert_eq!(AllowedSet::from_stored(Some("not json")), AllowedSet::empty());
}

#[test]
fn within_tells_whether_a_change_widens_the_set() {
    let wide = set(&["*.example.com", "10.0.0.0/8"]);
    assert!(set(&["a.example.com:443", "10.1.0.0/16", "10.2.3.4:5432"]).within(&wide));
    assert!(!set(&["example.com"]).within(&wide));
    assert!(!set(&["10.0.0.0/7"]).within(&wide));
    assert!(!set(&["*.example.com"]).within(&set(&["*.example.com:443"])));
    assert!(AllowedSet::empty().within(&AllowedSet::empty()));
}

#[test]
fn lists_name_the_bad_entries_by_index_and_are_bounded() {
    let errs = AllowedSet::parse(&["ok.example.com", "bad host", "*"]).unwrap_err();
    assert_eq!(errs.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2]);
    assert!(errs.iter().all(|e| !e.message.contains("bad host")));
    let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("h{i}.example.com")).collect();
    assert!(AllowedSet::parse(&many).is_err());
}

// ------------------------------------------------------------------- declarations

fn url_or_host_fields(fields: &[FieldSchema]) -> Vec<&'static str> {
    fields
        .iter()
        .filter(|f| f.check == Check::Url || f.name == "host")
        .map(|f| f.name)
        .collect()
}

#[test]
fn every_url_or_host_field_of_every_connector_kind_is_a_declared_destination() {
    for kind in ConnectorKind::ALL {
        let declared: Vec<&str> = destination_fields(kind).iter().map(|d| d.name()).collect();
        for f in url_or_host_fields(kind.config_fields()) {
            assert!(
                declared.contains(&f),
                "{}: config.{f} sends secrets but is not declared",
                kind.as_str()
            );
        }
        let names: Vec<&str> = kind.config_fields().iter().map(|f| f.name).collect();
        for d in &declared {
            assert!(
                names.contains(d),
                "{}: declares {d}, which is not a config field",
                kind.as_str()
            );
        }
    }
}

#[test]
fn every_url_field_of_every_credential_type_names_a_destination() {
    fn walk(fields: &[FieldSchema], prefix: &str, out: &mut Vec<String>) {
        for f in fields {
            match f.kind {
                FieldKind::Object(inner) | FieldKind::List(inner) => walk(inner, &format!("{prefix}{}.", f.name), out),
                _ if f.check == Check::Url || f.name == "host" => out.push(format!("{prefix}{}", f.name)),
                _ if matches!(f.check, Check::GcpServiceAccountJson | Check::GcpExternalAccountJson) => {
                    out.push(format!("{prefix}{}", f.name))
                }
                _ => {}
            }
        }
    }
    for schema in all_schemas() {
        for v in schema.variants {
            let mut urls = Vec::new();
            walk(v.fields, "", &mut urls);
            for path in urls {
                // Build fields with this one field pointing at a marker host.
                let mut fields = json!({});
                let value = match path.as_str() {
                    "service_account_json" => json!(json!({"token_uri": "https://marker.example/token"}).to_string()),
                    "external_account_json" => json!(json!({"token_url": "https://marker.example/token"}).to_string()),
                    _ if path.ends_with("host") => json!("marker.example"),
                    _ => json!("https://marker.example/x"),
                };
                let mut cursor = &mut fields;
                let parts: Vec<&str> = path.split('.').collect();
                for (i, p) in parts.iter().enumerate() {
                    if i + 1 == parts.len() {
                        cursor[*p] = value.clone();
                    } else {
                        cursor[*p] = json!({});
                        cursor = &mut cursor[*p];
                    }
                }
                let found = credential_destinations(schema.ty, &fields);
                assert!(
                    found.iter().any(|d| d.dest.host == Host::Name("marker.example".into())),
                    "{}/{}: field {path} names a destination that credential_destinations misses",
                    schema.ty.as_str(),
                    v.name
                );
            }
        }
    }
}

#[test]
fn connection_destinations_come_from_the_declared_fields_with_ports() {
    let pg = connection_destinations(
        ConnectorKind::Postgres,
        &json!({"host": "DB.example.com", "port": 6432}),
    )
    .unwrap();
    assert_eq!(pg[0].field, "config.host");
    assert_eq!(pg[0].dest.to_string(), "db.example.com:6432");
    let ldaps = connection_destinations(ConnectorKind::Ldap, &json!({"host": "ldap.example", "ldaps": true})).unwrap();
    assert_eq!(ldaps[0].dest.to_string(), "ldap.example:636");
    let http = connection_destinations(
        ConnectorKind::Http,
        &json!({"base_url": "https://api.example.com/v1/", "check_path": "//evil.example/x"}),
    )
    .unwrap();
    let shown: Vec<String> = http.iter().map(|d| format!("{}={}", d.field, d.dest)).collect();
    assert_eq!(
        shown,
        vec![
            "config.base_url=api.example.com:443",
            "config.check_path=evil.example:443"
        ]
    );
    let s3 = connection_destinations(ConnectorKind::S3, &json!({"bucket": "b"})).unwrap();
    assert!(s3.is_empty(), "provider defaults are not user-chosen destinations");
    let bad = connection_destinations(ConnectorKind::Http, &json!({"base_url": "not a url"})).unwrap_err();
    assert_eq!(bad.0, "config.base_url");
}

#[test]
fn credential_destinations_read_tunnels_and_key_files() {
    let db = credential_destinations(
        CredentialType::Database,
        &json!({"username": "u", "ssh_tunnel": {"host": "Bastion.example", "port": 2222}}),
    );
    assert_eq!(db[0].dest.to_string(), "bastion.example:2222");
    let sa = json!({"token_uri": "https://oauth2.example/token", "private_key": "k"}).to_string();
    let gcp = credential_destinations(CredentialType::Gcp, &json!({"service_account_json": sa}));
    assert_eq!(gcp[0].dest.to_string(), "oauth2.example:443");
    assert!(credential_destinations(CredentialType::Password, &json!({"password": "x"})).is_empty());
}

// ---------------------------------------------------------------- properties
//
// Randomized checks of the matching rules (a small splitmix64 generator instead of a
// property-testing crate; the seed is printed so a failure can be replayed).

struct Rng(u64);

impl Rng {
    fn new() -> (Rng, u64) {
        let seed = std::env::var("CREDVAULT_PROPTEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).unwrap();
                u64::from_le_bytes(b)
            });
        (Rng(seed), seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn label(&mut self) -> String {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let len = 1 + self.below(12) as usize;
        let mut s: String = (0..len)
            .map(|_| A[self.below(A.len() as u64) as usize] as char)
            .collect();
        // Labels start with a letter (a numeric last label would read as an address).
        s.replace_range(0..1, &((b'a' + self.below(26) as u8) as char).to_string());
        s
    }
    fn names(&mut self, min: usize, extra: u64) -> String {
        let labels = min + self.below(extra) as usize;
        self.name(labels)
    }
    fn name(&mut self, labels: usize) -> String {
        (0..labels).map(|_| self.label()).collect::<Vec<_>>().join(".")
    }
    fn shout(&mut self, s: &str) -> String {
        s.chars()
            .map(|c| if self.below(2) == 0 { c.to_ascii_uppercase() } else { c })
            .collect()
    }
}

const ROUNDS: usize = 2_000;

#[test]
fn property_spellings_of_one_host_and_port_are_one_destination() {
    let (mut r, seed) = Rng::new();
    for _ in 0..ROUNDS {
        let n = r.names(2, 3);
        let port = 1 + r.below(65_535) as u16;
        let canonical = Destination::new(&n, port).unwrap();
        let spellings = [
            Destination::new(&r.shout(&n), port).unwrap(),
            Destination::new(&format!("{n}."), port).unwrap(),
            dest(&format!("https://{}:{port}/x", r.shout(&n))),
            dest(&format!("http://{n}.:{port}")),
        ];
        for s in &spellings {
            assert_eq!(s, &canonical, "seed {seed}: {n}:{port}");
        }
        let exact = AllowedSet::parse(&[format!("{}:{port}", r.shout(&n))]).unwrap();
        assert_eq!(exact.check(&canonical), Verdict::Allowed, "seed {seed}");
        // The default port of the scheme is the port.
        assert_eq!(
            dest(&format!("https://{n}/")),
            dest(&format!("https://{n}:443/")),
            "seed {seed}"
        );
    }
}

#[test]
fn property_wildcards_match_deeper_names_only_at_a_label_boundary() {
    let (mut r, seed) = Rng::new();
    for _ in 0..ROUNDS {
        let base = r.names(2, 2);
        let s = AllowedSet::parse(&[format!("*.{base}")]).unwrap();
        let port = 1 + r.below(65_535) as u16;
        let deeper = format!("{}.{base}", r.names(1, 3));
        assert_eq!(
            s.check(&Destination::new(&deeper, port).unwrap()),
            Verdict::Allowed,
            "seed {seed}"
        );
        assert_eq!(
            s.check(&Destination::new(&base, port).unwrap()),
            Verdict::Denied,
            "seed {seed}"
        );
        let glued = format!("{}{base}", r.label());
        assert_eq!(
            s.check(&Destination::new(&glued, port).unwrap()),
            Verdict::Denied,
            "seed {seed}: {glued}"
        );
        let other = format!("{deeper}.x-{}", r.label());
        assert_eq!(
            s.check(&Destination::new(&other, port).unwrap()),
            Verdict::Denied,
            "seed {seed}: {other}"
        );
    }
}

#[test]
fn property_cidrs_hold_exactly_their_addresses_in_every_spelling() {
    let (mut r, seed) = Rng::new();
    for _ in 0..ROUNDS {
        if r.below(2) == 0 {
            let prefix = r.below(33) as u32;
            let net = r.next() as u32;
            let s = AllowedSet::parse(&[format!("{}/{prefix}", Ipv4Addr::from(net))]).unwrap();
            let keep = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let inside = (net & keep) | (r.next() as u32 & !keep);
            let ip = Ipv4Addr::from(inside);
            for spelled in [
                ip.to_string(),
                format!("{inside}"),
                format!("0x{inside:x}"),
                format!("::ffff:{ip}"),
            ] {
                assert_eq!(
                    s.check(&Destination::new(&spelled, 5432).unwrap()),
                    Verdict::Allowed,
                    "seed {seed}: {spelled} in {net:x}/{prefix}"
                );
            }
            if prefix > 0 {
                let flip = 1u32 << (32 - 1 - r.below(u64::from(prefix)) as u32);
                let outside = Ipv4Addr::from(inside ^ flip);
                assert_eq!(
                    s.check(&Destination::new(&outside.to_string(), 5432).unwrap()),
                    Verdict::Denied,
                    "seed {seed}: {outside} outside {net:x}/{prefix}"
                );
            }
        } else {
            let prefix = r.below(129) as u32;
            let net = (u128::from(r.next()) << 64) | u128::from(r.next());
            let netip = Ipv6Addr::from(net);
            let s = AllowedSet::parse(&[format!("[{netip}/{prefix}]:443")]).unwrap();
            let keep = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
            let inside = Ipv6Addr::from((net & keep) | (((u128::from(r.next()) << 64) | u128::from(r.next())) & !keep));
            let full: String = inside
                .segments()
                .iter()
                .map(|s| format!("{s:04X}"))
                .collect::<Vec<_>>()
                .join(":");
            for spelled in [inside.to_string(), format!("[{inside}]"), full] {
                let d = Destination::new(&spelled, 443).unwrap();
                // An IPv4-mapped address is its IPv4 host, which a v6 network does not hold.
                if inside.to_ipv4_mapped().is_none() {
                    assert_eq!(
                        s.check(&d),
                        Verdict::Allowed,
                        "seed {seed}: {spelled} in {netip}/{prefix}"
                    );
                }
                assert_eq!(
                    s.check(&Destination::new(&spelled, 444).unwrap()),
                    Verdict::Denied,
                    "seed {seed}: wrong port"
                );
            }
        }
    }
}

#[test]
fn property_patterns_round_trip_and_within_agrees_with_matching() {
    let (mut r, seed) = Rng::new();
    for _ in 0..ROUNDS {
        let n = r.names(2, 2);
        let port = if r.below(2) == 0 {
            None
        } else {
            Some(1 + r.below(65_535) as u16)
        };
        let text = match r.below(4) {
            0 => n.clone(),
            1 => format!("*.{n}"),
            2 => Ipv4Addr::from(r.next() as u32).to_string(),
            _ => format!("{}/{}", Ipv4Addr::from(r.next() as u32), r.below(33)),
        };
        let text = match port {
            Some(p) => format!("{text}:{p}"),
            None => text,
        };
        let p = Pattern::parse(&text).unwrap();
        assert_eq!(Pattern::parse(&p.to_string()).unwrap(), p, "seed {seed}: {text}");
        // Something p allows is allowed by any q that p is within.
        let sample = match &p.host {
            HostPattern::Exact(h) => Host::Name(h.clone()),
            HostPattern::Suffix(s) => Host::Name(format!("{}.{s}", r.label())),
            HostPattern::Ip(ip) => Host::Ip(*ip),
            HostPattern::Cidr(ip, _) => Host::Ip(*ip),
        };
        let sport = port.unwrap_or(1 + r.below(65_535) as u16);
        assert!(p.allows(&sample, sport), "seed {seed}: {p} allows its own sample");
        let wider = Pattern {
            host: match &p.host {
                HostPattern::Exact(h) | HostPattern::Suffix(h) => HostPattern::Suffix(
                    h.split_once('.')
                        .map(|(_, rest)| rest.to_owned())
                        .filter(|x| x.contains('.'))
                        .unwrap_or(h.clone()),
                ),
                HostPattern::Ip(ip) | HostPattern::Cidr(ip, _) => HostPattern::Cidr(*ip, 0).normalized(),
            },
            port: None,
        };
        if p.within(&wider) {
            assert!(wider.allows(&sample, sport), "seed {seed}: {p} within {wider}");
        }
    }
}
