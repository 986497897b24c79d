//! Configuration in two stages: raw values from flags, `CREDVAULT_*` variables (clap reads
//! both) and an optional TOML file are merged and validated once into [`ServerSettings`] /
//! [`ClientSettings`], which are then passed explicitly. Unknown keys in the file are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory (key file, SQLite database).
    pub data_dir: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Largest accepted request body in bytes.
    pub body_limit: Option<usize>,
    /// Networks Test connection may reach although they are not public (CIDRs).
    pub egress_allow: Option<Vec<String>>,
    /// Seconds between scheduler passes (0: no scheduler on this node).
    pub scheduler_interval_secs: Option<u64>,
    /// Seconds between signed audit checkpoints (0 or absent: none).
    pub audit_checkpoint_interval_secs: Option<u64>,
    /// Audit sinks (`[[audit_sinks]]`): only here, never through the API.
    pub audit_sinks: Option<Vec<credvault_core::forward::SinkConfig>>,
    /// Spike detector thresholds (`[alerts]`).
    pub alerts: Option<credvault_core::alerts::AlertConfig>,
    /// The server's public base URL (OAuth redirects come back to it).
    pub public_url: Option<String>,
    /// Refresh OAuth access tokens this many seconds before they expire.
    pub oauth_refresh_skew_secs: Option<i64>,
    /// Refresh an OAuth grant nobody used for this many days (0: never).
    pub oauth_keepalive_days: Option<i64>,
    /// Open HTTP connections at most (more are closed at once).
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers (and a keep-alive connection may idle).
    pub header_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's body, counted from its headers.
    pub body_timeout_secs: Option<u64>,
    /// Seconds over which failed authentications are coalesced in the journal and counted.
    pub auth_failure_window_secs: Option<u64>,
    /// Failed authentications per address and window before it is answered 429.
    pub auth_throttle_after: Option<u64>,
    /// Audit chains (shards) per organization on PostgreSQL.
    pub audit_shards: Option<u32>,
    /// Store connections: PostgreSQL's pool, SQLite's readers.
    pub database_pool_size: Option<usize>,
    /// Client settings.
    pub client: Option<FileClient>,
}

/// The `[client]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClient {
    /// Server base URL.
    pub server: Option<String>,
    /// File holding the API token.
    pub token_file: Option<PathBuf>,
}

impl FileConfig {
    /// Loads the file, or the default when no file is given.
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated server settings.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Store URL.
    pub database_url: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Body limit.
    pub body_limit: usize,
    /// Non-public networks outbound tests may reach.
    pub egress_allow: Vec<credvault_core::Cidr>,
    /// Seconds between scheduler passes (0: none).
    pub scheduler_interval_secs: u64,
    /// Seconds between signed audit checkpoints (0: none).
    pub audit_checkpoint_interval_secs: u64,
    /// Audit sinks.
    pub audit_sinks: Vec<credvault_core::forward::SinkConfig>,
    /// Spike detector thresholds.
    pub alerts: credvault_core::alerts::AlertConfig,
    /// Public base URL (default: `http://` + the address the server actually listens on).
    pub public_url: Option<String>,
    /// OAuth refresh skew.
    pub oauth_refresh_skew_secs: i64,
    /// OAuth keepalive (days; 0 off).
    pub oauth_keepalive_days: i64,
    /// Limits of the accept loop.
    pub serve_limits: credvault_api::ServeLimits,
    /// Time for a request's body.
    pub body_timeout: std::time::Duration,
    /// Failed authentications: coalescing window and throttle.
    pub auth_failures: credvault_core::auth::FailureLimits,
    /// Audit chains (shards) per organization on PostgreSQL.
    pub audit_shards: u32,
    /// Store connections: PostgreSQL's pool, SQLite's readers.
    pub database_pool_size: usize,
}

/// Raw server values from flags/env (already merged by clap).
#[derive(Debug, Default)]
pub struct RawServer {
    /// `--data-dir` / `CREDVAULT_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `CREDVAULT_LISTEN`.
    pub listen: Option<String>,
    /// `--database-url` / `CREDVAULT_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--log-format` / `CREDVAULT_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `--body-limit` / `CREDVAULT_BODY_LIMIT`.
    pub body_limit: Option<usize>,
    /// `--egress-allow` / `CREDVAULT_EGRESS_ALLOW` (comma-separated CIDRs).
    pub egress_allow: Option<Vec<String>>,
}

impl ServerSettings {
    /// Merges flags/env over the file over defaults, and validates.
    pub fn resolve(raw: RawServer, file: &FileConfig) -> anyhow::Result<ServerSettings> {
        let data_dir = raw
            .data_dir
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./credvault-data"));
        let listen_s = raw
            .listen
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_s
            .parse()
            .with_context(|| format!("listen: `{listen_s}` is not an address like 127.0.0.1:8080"))?;
        let database_url = match raw.database_url.or_else(|| file.database_url.clone()) {
            Some(u) => u,
            None => format!("sqlite://{}", data_dir.join("credvault.db").display()),
        };
        if !(database_url.starts_with("sqlite://")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            bail!("database_url: use sqlite://PATH or postgres://USER@HOST/DB");
        }
        let log_format = match raw.log_format.or_else(|| file.log_format.clone()).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("log_format: `{other}` is neither `text` nor `json`"),
        };
        let body_limit = raw.body_limit.or(file.body_limit).unwrap_or(1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&body_limit) {
            bail!("body_limit: must be between 1 KiB and 64 MiB");
        }
        let mut egress_allow = Vec::new();
        for c in raw
            .egress_allow
            .or_else(|| file.egress_allow.clone())
            .unwrap_or_default()
        {
            let c = c.trim();
            if c.is_empty() {
                continue;
            }
            egress_allow.push(credvault_core::Cidr::parse(c).map_err(|e| anyhow::anyhow!("egress_allow: {e}"))?);
        }
        let scheduler_interval_secs = std::env::var("CREDVAULT_SCHEDULER_INTERVAL_SECS")
            .ok()
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| anyhow::anyhow!("CREDVAULT_SCHEDULER_INTERVAL_SECS: not a number of seconds"))
            })
            .transpose()?
            .or(file.scheduler_interval_secs)
            .unwrap_or(60);
        let audit_sinks = file.audit_sinks.clone().unwrap_or_default();
        let mut names = std::collections::HashSet::new();
        for s in &audit_sinks {
            if s.name.is_empty() || !names.insert(s.name.clone()) {
                bail!("audit_sinks: every sink needs a unique, non-empty name (`{}`)", s.name);
            }
        }
        let public_url = std::env::var("CREDVAULT_PUBLIC_URL")
            .ok()
            .or_else(|| file.public_url.clone());
        if public_url
            .as_ref()
            .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            bail!("public_url: must be an http(s) URL");
        }
        let oauth_refresh_skew_secs = file.oauth_refresh_skew_secs.unwrap_or(60).clamp(0, 3600);
        let oauth_keepalive_days = file.oauth_keepalive_days.unwrap_or(7);
        if !(0..=365).contains(&oauth_keepalive_days) {
            bail!("oauth_keepalive_days: must be between 0 (off) and 365");
        }
        let env_num = |name: &str| -> anyhow::Result<Option<u64>> {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| anyhow::anyhow!("{name}: not a whole number"))
                })
                .transpose()
        };
        let defaults = credvault_api::ServeLimits::default();
        let max_connections = env_num("CREDVAULT_MAX_CONNECTIONS")?
            .map(|n| n as usize)
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections);
        if !(16..=1_000_000).contains(&max_connections) {
            bail!("max_connections: must be between 16 and 1000000");
        }
        let header_timeout_secs = env_num("CREDVAULT_HEADER_TIMEOUT_SECS")?
            .or(file.header_timeout_secs)
            .unwrap_or(defaults.header_timeout.as_secs());
        let body_timeout_secs = env_num("CREDVAULT_BODY_TIMEOUT_SECS")?
            .or(file.body_timeout_secs)
            .unwrap_or(credvault_api::BODY_TIMEOUT.as_secs());
        if !(1..=3600).contains(&header_timeout_secs) || !(1..=3600).contains(&body_timeout_secs) {
            bail!("header_timeout_secs and body_timeout_secs: must be between 1 and 3600");
        }
        let failure_defaults = credvault_core::auth::FailureLimits::default();
        let auth_failure_window_secs = env_num("CREDVAULT_AUTH_FAILURE_WINDOW_SECS")?
            .or(file.auth_failure_window_secs)
            .unwrap_or(failure_defaults.window.as_secs());
        let auth_throttle_after = env_num("CREDVAULT_AUTH_THROTTLE_AFTER")?
            .or(file.auth_throttle_after)
            .unwrap_or(failure_defaults.throttle_after);
        if !(1..=3600).contains(&auth_failure_window_secs) || auth_throttle_after == 0 {
            bail!("auth_failure_window_secs: must be between 1 and 3600; auth_throttle_after: at least 1");
        }
        let audit_shards = env_num("CREDVAULT_AUDIT_SHARDS")?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .or(file.audit_shards)
            .unwrap_or(credvault_core::audit::DEFAULT_SHARDS);
        if !(1..=credvault_core::audit::MAX_SHARDS).contains(&audit_shards) {
            bail!(
                "audit_shards: must be between 1 and {}",
                credvault_core::audit::MAX_SHARDS
            );
        }
        let database_pool_size = env_num("CREDVAULT_DATABASE_POOL_SIZE")?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .or(file.database_pool_size)
            .unwrap_or(if database_url.starts_with("postgres") { 32 } else { 8 });
        if !(1..=1000).contains(&database_pool_size) {
            bail!("database_pool_size: must be between 1 and 1000");
        }
        Ok(ServerSettings {
            audit_shards,
            database_pool_size,
            data_dir,
            listen,
            database_url,
            log_format,
            body_limit,
            egress_allow,
            scheduler_interval_secs,
            audit_checkpoint_interval_secs: file.audit_checkpoint_interval_secs.unwrap_or(0),
            audit_sinks,
            alerts: file.alerts.clone().unwrap_or_default(),
            public_url,
            oauth_refresh_skew_secs,
            oauth_keepalive_days,
            serve_limits: credvault_api::ServeLimits {
                header_timeout: std::time::Duration::from_secs(header_timeout_secs),
                max_connections,
            },
            body_timeout: std::time::Duration::from_secs(body_timeout_secs),
            auth_failures: credvault_core::auth::FailureLimits {
                window: std::time::Duration::from_secs(auth_failure_window_secs),
                throttle_after: auth_throttle_after,
            },
        })
    }
}

/// Validated client settings.
pub struct ClientSettings {
    /// Server base URL, without trailing slash.
    pub server: String,
    /// The API token, if any.
    pub token: Option<zeroize::Zeroizing<String>>,
}

impl ClientSettings {
    /// Server: flag/env, then file, then the default. Token: `CREDVAULT_TOKEN`, then
    /// `--token-file`/`CREDVAULT_TOKEN_FILE`, then the file's `token_file`.
    pub fn resolve(
        server: Option<String>,
        token_file: Option<PathBuf>,
        file: &FileConfig,
    ) -> anyhow::Result<ClientSettings> {
        let fc = file.client.as_ref();
        let server = server
            .or_else(|| fc.and_then(|c| c.server.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("server: `{server}` must start with http:// or https://");
        }
        let token = match std::env::var("CREDVAULT_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Some(zeroize::Zeroizing::new(t.trim().to_owned())),
            _ => match token_file.or_else(|| fc.and_then(|c| c.token_file.clone())) {
                Some(p) => {
                    let t = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read token file {}", p.display()))?;
                    Some(zeroize::Zeroizing::new(t.trim().to_owned()))
                }
                None => None,
            },
        };
        Ok(ClientSettings { server, token })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:9000\"\nlog_format = \"json\"").unwrap();
        let s = ServerSettings::resolve(
            RawServer {
                listen: Some("127.0.0.1:7000".into()),
                ..Default::default()
            },
            &file,
        )
        .unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.log_format, LogFormat::Json);
        assert!(s.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("lissten = \"x\"").is_err());
        let e = ServerSettings::resolve(
            RawServer {
                listen: Some("nowhere".into()),
                ..Default::default()
            },
            &FileConfig::default(),
        );
        assert!(e.is_err());
        let e = ServerSettings::resolve(
            RawServer {
                database_url: Some("mysql://x".into()),
                ..Default::default()
            },
            &FileConfig::default(),
        );
        assert!(e.is_err());
    }
}
