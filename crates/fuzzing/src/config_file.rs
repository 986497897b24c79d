//! `config_file`: the TOML config file as `credvault serve --config FILE` reads it (no flags),
//! through [`credvault_cli::parse_config_text`]: `FileConfig` from TOML, then
//! `ServerSettings::resolve`.
//!
//! Input: the file's bytes (not UTF-8: nothing to parse, as `read_to_string` would refuse it).
//!
//! Promises checked: no panic, and accepted settings are within the bounds `resolve` enforces
//! (body limit, connection cap, timeouts, database URL scheme, public URL scheme, unique
//! non-empty sink names).

/// The entry point.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(s) = credvault_cli::parse_config_text(text) else {
        return;
    };
    assert!(
        (1024..=64 * 1024 * 1024).contains(&s.body_limit),
        "body_limit {}",
        s.body_limit
    );
    assert!(
        (16..=1_000_000).contains(&s.serve_limits.max_connections),
        "max_connections {}",
        s.serve_limits.max_connections
    );
    for t in [s.serve_limits.header_timeout, s.body_timeout, s.auth_failures.window] {
        assert!((1..=3600).contains(&t.as_secs()), "a timeout of {t:?}");
    }
    assert!(s.auth_failures.throttle_after >= 1);
    assert!(
        ["sqlite://", "postgres://", "postgresql://"]
            .iter()
            .any(|p| s.database_url.starts_with(p)),
        "database_url {:?}",
        s.database_url
    );
    if let Some(u) = &s.public_url {
        assert!(
            u.starts_with("http://") || u.starts_with("https://"),
            "public_url {u:?}"
        );
    }
    assert!((0..=3600).contains(&s.oauth_refresh_skew_secs));
    let mut names = std::collections::HashSet::new();
    for sink in &s.audit_sinks {
        assert!(
            !sink.name.is_empty() && names.insert(sink.name.clone()),
            "sink name {:?}",
            sink.name
        );
    }
}
