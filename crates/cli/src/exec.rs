//! `credvault exec`: resolves a connection for a run, then runs a command with the connection in
//! the environment variables its usual tools read — never on a command line, where every user of
//! the machine could read it in `/proc`.
//!
//! | connection / credential | variables |
//! |---|---|
//! | `postgres`, `redshift` | `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`, `PGSSLROOTCERT` (a file with `ca_pem`), `PGCONNECT_TIMEOUT` |
//! | `mysql` | `MYSQL_HOME` and `MARIADB_HOME`: a private directory (0700) holding `my.cnf` (0600) with `[client]` host, port, user, password, database and the TLS mode (`ssl-mode` for MySQL's client, `ssl-verify-server-cert`/`skip-ssl` for MariaDB's; `ssl-ca`, a file with `ca_pem`); `MYSQL_HOST`, `MYSQL_TCP_PORT` |
//! | an `aws` access key | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` and `AWS_DEFAULT_REGION` |
//! | a `gcp` service account | `GOOGLE_APPLICATION_CREDENTIALS`: the key in a 0600 file in the private directory |
//! | an `azure` client secret | `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` |
//! | an `oauth` credential | `CREDVAULT_ACCESS_TOKEN` (the latest access token) |
//! | every connection | `CREDVAULT_CONNECTION_ID`, `CREDVAULT_RUN_ID`, `CREDVAULT_KIND`, `CREDVAULT_CREDENTIAL_ID`, `CREDVAULT_CREDENTIAL_VERSION`, `CREDVAULT_CONFIG_<NAME>` for each config value and `CREDVAULT_FIELD_<NAME>` for each credential field (objects as JSON) |
//!
//! The command does not get this process's `CREDVAULT_TOKEN` (nor `CREDVAULT_TOKEN_FILE`): it
//! is given the connection, not the power to resolve others. The private directory is removed when the command ends.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;
use zeroize::Zeroizing;

/// The environment prepared for one command.
pub struct Prepared {
    /// Variables to set (values may be secret: zeroized on drop).
    pub vars: Vec<(String, Zeroizing<String>)>,
    /// The private directory holding files the variables point at, if any (held for its
    /// `Drop`, which removes it).
    #[allow(dead_code)]
    dir: Option<PrivateDir>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.vars.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Prepared").field("vars", &names).finish_non_exhaustive()
    }
}

/// A directory only this user can enter, removed (with what it holds) on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> anyhow::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let name: [u8; 12] = credvault_crypto::random_bytes();
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("credvault-exec-{hex}"));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot create a private directory in {}: {e}",
                std::env::temp_dir().display()
            )
        })?;
        Ok(PrivateDir(path))
    }

    /// Writes `contents` to a new file `name` (0600) and returns its path.
    fn file(&self, name: &str, contents: &[u8]) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.0.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        f.write_all(contents)?;
        f.sync_all()?;
        Ok(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("credvault exec: could not remove {}: {e}", self.0.display());
        }
    }
}

/// A scalar as text (`None` for null, objects and arrays).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Any value as text: a scalar as itself, an object or array as JSON (`None` for null).
fn text(v: &Value) -> Option<String> {
    scalar(v).or_else(|| (!v.is_null()).then(|| v.to_string()))
}

/// `ssh_tunnel` -> `SSH_TUNNEL`.
fn env_name(prefix: &str, key: &str) -> String {
    let mut out = String::from(prefix);
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    out
}

/// Appends `option="value"` and a line break to `out`, `\` and `"` escaped, without a copy of
/// the value outside `out`.
fn cnf_line(out: &mut String, option: &str, value: &str) -> anyhow::Result<()> {
    if value.contains(['\n', '\r', '\0']) {
        anyhow::bail!("the MySQL option {option} holds a line break; it cannot go into my.cnf");
    }
    out.push_str(option);
    out.push_str("=\"");
    for c in value.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"\n");
    Ok(())
}

/// The environment for `resolved` (the body `POST /v1/resolve` answered).
pub fn prepare(resolved: &Value, run_id: &str) -> anyhow::Result<Prepared> {
    let conn = &resolved["connection"];
    let cred = &resolved["credential"];
    let kind = conn["kind"].as_str().unwrap_or_default();
    let ty = cred["type"].as_str().unwrap_or_default();
    let variant = cred["variant"].as_str();
    let config = conn["config"].as_object().cloned().unwrap_or_default();
    let empty = serde_json::Map::new();
    let fields = cred["fields"].as_object().unwrap_or(&empty);
    let cfg = |k: &str| config.get(k).and_then(scalar);
    let field = |k: &str| fields.get(k).and_then(scalar);
    let mut vars: Vec<(String, Zeroizing<String>)> = Vec::new();
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            vars.push((k.to_owned(), Zeroizing::new(v)));
        }
    };
    set("CREDVAULT_CONNECTION_ID", conn["id"].as_str().map(str::to_owned));
    set("CREDVAULT_RUN_ID", Some(run_id.to_owned()));
    set("CREDVAULT_KIND", Some(kind.to_owned()));
    set("CREDVAULT_CREDENTIAL_ID", cred["id"].as_str().map(str::to_owned));
    set(
        "CREDVAULT_CREDENTIAL_VERSION",
        cred["version"].as_i64().map(|v| v.to_string()),
    );
    for (k, v) in &config {
        set(&env_name("CREDVAULT_CONFIG_", k), text(v));
    }
    for (k, v) in fields {
        set(&env_name("CREDVAULT_FIELD_", k), text(v));
    }
    let mut dir = None;
    match kind {
        "postgres" | "redshift" => {
            set("PGHOST", cfg("host"));
            set("PGPORT", cfg("port"));
            set("PGDATABASE", cfg("database"));
            set("PGUSER", field("username"));
            set("PGPASSWORD", field("password"));
            set("PGSSLMODE", cfg("sslmode"));
            set("PGCONNECT_TIMEOUT", cfg("connect_timeout"));
            // The connection's CA certificates, as libpq reads them: a file.
            if let Some(pem) = cfg("ca_pem") {
                let d = PrivateDir::new()?;
                let file = d.file("root.crt", pem.as_bytes())?;
                set("PGSSLROOTCERT", Some(file.display().to_string()));
                dir = Some(d);
            }
        }
        "mysql" => {
            let d = PrivateDir::new()?;
            let mut cnf = Zeroizing::new(String::with_capacity(4096));
            cnf.push_str("[client]\n");
            for (option, value) in [
                ("host", cfg("host")),
                ("port", cfg("port")),
                ("user", field("username")),
                ("password", field("password")),
                ("database", cfg("database")),
            ] {
                if let Some(v) = value.map(Zeroizing::new) {
                    cnf_line(&mut cnf, option, &v)?;
                }
            }
            // TLS as the connection says, for both clients: MySQL's ssl-mode and MariaDB's
            // switches (`loose-`: each client skips the other's options instead of failing).
            if let Some(pem) = cfg("ca_pem") {
                let file = d.file("ca.pem", pem.as_bytes())?;
                cnf_line(&mut cnf, "ssl-ca", &file.display().to_string())?;
            }
            let modes = match cfg("tls").as_deref() {
                Some("disable") => Some(("DISABLED", "loose-skip-ssl")),
                Some("require" | "verify-full") => Some(("VERIFY_IDENTITY", "loose-ssl-verify-server-cert")),
                // MariaDB's client has no chain-only switch: it is told to use TLS.
                Some("verify-ca") => Some(("VERIFY_CA", "loose-ssl")),
                _ => None,
            };
            if let Some((mysql_mode, mariadb_switch)) = modes {
                cnf_line(&mut cnf, "loose-ssl-mode", mysql_mode)?;
                cnf.push_str(mariadb_switch);
                cnf.push('\n');
            }
            d.file("my.cnf", cnf.as_bytes())?;
            let home = d.path().display().to_string();
            set("MYSQL_HOME", Some(home.clone()));
            set("MARIADB_HOME", Some(home));
            set("MYSQL_HOST", cfg("host"));
            set("MYSQL_TCP_PORT", cfg("port"));
            dir = Some(d);
        }
        _ => {}
    }
    match (ty, variant) {
        ("aws", Some("access_key") | None) => {
            set("AWS_ACCESS_KEY_ID", field("access_key_id"));
            set("AWS_SECRET_ACCESS_KEY", field("secret_access_key"));
            set("AWS_SESSION_TOKEN", field("session_token"));
            let region = cfg("region").or_else(|| field("region"));
            set("AWS_REGION", region.clone());
            set("AWS_DEFAULT_REGION", region);
        }
        ("gcp", Some("service_account") | None) => {
            if let Some(key) = field("service_account_json") {
                let key = Zeroizing::new(key);
                let d = match dir.take() {
                    Some(d) => d,
                    None => PrivateDir::new()?,
                };
                let path = d.file("gcp-service-account.json", key.as_bytes())?;
                set("GOOGLE_APPLICATION_CREDENTIALS", Some(path.display().to_string()));
                dir = Some(d);
            }
        }
        ("azure", Some("client_secret")) => {
            set("AZURE_TENANT_ID", field("tenant_id"));
            set("AZURE_CLIENT_ID", field("client_id"));
            set("AZURE_CLIENT_SECRET", field("client_secret"));
        }
        ("oauth", _) => set("CREDVAULT_ACCESS_TOKEN", field("access_token")),
        _ => {}
    }
    Ok(Prepared { vars, dir })
}

/// What `--report-on-exit` reports for the command's exit `code`.
pub fn outcome(code: Option<i32>, auth_failed: &[i32]) -> &'static str {
    match code {
        Some(0) => "ok",
        Some(c) if auth_failed.contains(&c) => "auth_failed",
        _ => "error",
    }
}

/// Runs `command` with `prepared` and waits for it; the exit status as this process's.
pub async fn run(prepared: Prepared, command: &[OsString]) -> anyhow::Result<(Option<i32>, ExitCode)> {
    let Some((program, args)) = command.split_first() else {
        anyhow::bail!("give the command to run after `--`");
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_remove("CREDVAULT_TOKEN")
        .env_remove("CREDVAULT_TOKEN_FILE");
    for (k, v) in &prepared.vars {
        cmd.env(k, v.as_str());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", program.to_string_lossy()))?;
    // The command's environment now lives in the child; this copy goes.
    drop(cmd);
    // Ctrl-C reaches the child through the terminal's process group; this process waits for
    // it to end so the private directory is removed after it.
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| anyhow::anyhow!("waiting for the command: {e}"))??;
    drop(prepared);
    use std::os::unix::process::ExitStatusExt;
    let code = status.code();
    let exit = match (code, status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    };
    Ok((code, ExitCode::from(exit)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn var<'a>(p: &'a Prepared, k: &str) -> Option<&'a str> {
        p.vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn postgres_gets_libpq_variables_and_the_generic_ones() {
        let r = json!({"connection": {"id": "conn_x", "kind": "postgres", "config": {"host": "db", "port": 5433, "database": "dwh", "sslmode": "require"}},
                       "credential": {"id": "cred_x", "type": "database", "variant": "password", "version": 3,
                                      "fields": {"username": "loader", "password": "s3cret"}}});
        let p = prepare(&r, "run-1").unwrap();
        for (k, v) in [
            ("PGHOST", "db"),
            ("PGPORT", "5433"),
            ("PGDATABASE", "dwh"),
            ("PGUSER", "loader"),
            ("PGPASSWORD", "s3cret"),
            ("PGSSLMODE", "require"),
            ("CREDVAULT_RUN_ID", "run-1"),
            ("CREDVAULT_CREDENTIAL_VERSION", "3"),
            ("CREDVAULT_FIELD_PASSWORD", "s3cret"),
            ("CREDVAULT_CONFIG_HOST", "db"),
        ] {
            assert_eq!(var(&p, k), Some(v), "{k}");
        }
        assert!(!format!("{p:?}").contains("s3cret"), "Debug shows names only");
        assert!(p.dir.is_none());
    }

    #[test]
    fn a_postgres_ca_goes_to_libpq_as_a_private_file() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let r = json!({"connection": {"id": "conn_x", "kind": "postgres", "config": {"host": "db", "sslmode": "verify-full", "ca_pem": pem}},
                       "credential": {"id": "cred_x", "type": "database", "variant": "password", "version": 1,
                                      "fields": {"username": "u", "password": "p"}}});
        let p = prepare(&r, "r").unwrap();
        let file = PathBuf::from(var(&p, "PGSSLROOTCERT").unwrap());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), pem);
        assert_eq!(var(&p, "PGSSLMODE"), Some("verify-full"));
        assert!(p.dir.is_some(), "removed with the environment");
    }

    #[test]
    fn mysql_gets_a_private_option_file_removed_with_the_environment() {
        let r = json!({"connection": {"id": "conn_x", "kind": "mysql", "config": {"host": "db", "port": 3306, "database": "d"}},
                       "credential": {"id": "cred_x", "type": "database", "variant": "password", "version": 1,
                                      "fields": {"username": "u", "password": "p\"w\\x"}}});
        let p = prepare(&r, "r").unwrap();
        let home = PathBuf::from(var(&p, "MYSQL_HOME").unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&home).unwrap().permissions().mode() & 0o777, 0o700);
        let cnf = home.join("my.cnf");
        assert_eq!(std::fs::metadata(&cnf).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&cnf).unwrap();
        assert!(
            text.contains("user=\"u\"") && text.contains(r#"password="p\"w\\x""#),
            "{text}"
        );
        drop(p);
        assert!(!home.exists(), "the private directory is removed");
        let bad =
            json!({"connection": {"kind": "mysql", "config": {}}, "credential": {"fields": {"password": "a\nb"}}});
        assert!(prepare(&bad, "r").is_err());
    }

    #[test]
    fn mysql_tls_modes_and_the_ca_go_into_the_option_file_for_both_clients() {
        let cnf_for = |config: Value| {
            let r = json!({"connection": {"id": "conn_x", "kind": "mysql", "config": config},
                           "credential": {"id": "cred_x", "type": "database", "fields": {"username": "u", "password": "p"}}});
            let p = prepare(&r, "r").unwrap();
            let home = PathBuf::from(var(&p, "MYSQL_HOME").unwrap());
            let text = std::fs::read_to_string(home.join("my.cnf")).unwrap();
            let ca = std::fs::read_to_string(home.join("ca.pem")).ok();
            (text, ca)
        };
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let (text, ca) = cnf_for(json!({"host": "db", "tls": "verify-full", "ca_pem": pem}));
        assert_eq!(ca.as_deref(), Some(pem));
        assert!(text.contains("ssl-ca=\"") && text.contains("/ca.pem\""), "{text}");
        assert!(
            text.contains("loose-ssl-mode=\"VERIFY_IDENTITY\"\nloose-ssl-verify-server-cert\n"),
            "{text}"
        );
        let (text, _) = cnf_for(json!({"host": "db", "tls": "verify-ca"}));
        assert!(text.contains("loose-ssl-mode=\"VERIFY_CA\"\nloose-ssl\n"), "{text}");
        let (text, _) = cnf_for(json!({"host": "db", "tls": "disable"}));
        assert!(text.contains("loose-ssl-mode=\"DISABLED\"\nloose-skip-ssl\n"), "{text}");
        // prefer, or no mode: the clients' defaults, no TLS line.
        let (text, ca) = cnf_for(json!({"host": "db"}));
        assert!(!text.contains("ssl") && ca.is_none(), "{text}");
    }

    #[test]
    fn cloud_credentials_get_their_sdks_variables() {
        let aws = json!({"connection": {"kind": "s3", "config": {"bucket": "b", "region": "eu-west-1"}},
                         "credential": {"type": "aws", "variant": "access_key", "fields": {"access_key_id": "AKIAX", "secret_access_key": "sk"}}});
        let p = prepare(&aws, "r").unwrap();
        assert_eq!(var(&p, "AWS_SECRET_ACCESS_KEY"), Some("sk"));
        assert_eq!(var(&p, "AWS_REGION"), Some("eu-west-1"));
        let gcp = json!({"connection": {"kind": "gcs", "config": {}},
                         "credential": {"type": "gcp", "variant": "service_account", "fields": {"service_account_json": "{\"k\": 1}"}}});
        let p = prepare(&gcp, "r").unwrap();
        let path = PathBuf::from(var(&p, "GOOGLE_APPLICATION_CREDENTIALS").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"k\": 1}");
        drop(p);
        assert!(!path.exists());
    }

    #[test]
    fn outcomes_follow_the_exit_status() {
        assert_eq!(outcome(Some(0), &[]), "ok");
        assert_eq!(outcome(Some(2), &[2]), "auth_failed");
        assert_eq!(outcome(Some(1), &[2]), "error");
        assert_eq!(outcome(None, &[2]), "error");
    }
}
