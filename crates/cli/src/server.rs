//! `credvault init` and `credvault serve`: prepare the data directory (mode 0700, key file
//! mode 0600), open and migrate the store, initialize it on first start, and serve until
//! SIGTERM or Ctrl-C.

use std::path::Path;

use anyhow::{Context, bail};

use credvault_core::{BootstrapOutput, CoreConfig, Service};
use credvault_crypto::Keyring;
use credvault_store::{Store, StoreOptions};

use crate::config::{LogFormat, ServerSettings};

const KEYRING_FILE: &str = "keyring.json";

/// Sets up structured logging to stderr. Never logs request bodies or headers.
pub fn init_logging(format: LogFormat) {
    // Third-party clients may log what they send at debug/trace level (an FTP library logged
    // `PASS <password>`), so they are capped at `warn` whatever CREDVAULT_LOG asks for.
    let user = std::env::var("CREDVAULT_LOG").unwrap_or_else(|_| "info".into());
    let capped = format!(
        "{user},tokio_postgres=warn,postgres=warn,mysql_async=warn,russh=warn,ldap3=warn,lber=warn,reqwest=warn,hyper=warn,hyper_util=warn,rustls=warn,h2=warn,rusqlite=warn"
    );
    let filter =
        tracing_subscriber::EnvFilter::try_new(&capped).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict data directory {}", dir.display()))?;
    Ok(())
}

/// Opens the store and the keyring, creating the keyring only for a store that has not been
/// initialized (a new key for existing data would make every secret unreadable).
async fn open(settings: &ServerSettings) -> anyhow::Result<Service> {
    prepare_dir(&settings.data_dir)?;
    let url = settings.database_url.clone();
    let opts = StoreOptions {
        max_connections: settings.database_pool_size,
        ..StoreOptions::default()
    };
    let store = tokio::task::spawn_blocking(move || Store::open(&url, &opts))
        .await
        .context("store task failed")?
        .context("cannot open the store")?;
    let probe = Service::new(store.clone(), Keyring::generate(), CoreConfig::default());
    let initialized = probe.is_initialized().await.context("cannot read the store")?;
    let keyring = match crate::keyfiles::load(&settings.data_dir).await? {
        Some((k, _)) => k,
        None if initialized => bail!(
            "the store is initialized but the key file {} is missing: without it no secret can be decrypted. \
             Restore the key file (or point --data-dir at the directory that has it).",
            settings.data_dir.join(KEYRING_FILE).display()
        ),
        None => {
            let k = Keyring::generate();
            let key_path = settings.data_dir.join(KEYRING_FILE);
            k.save(&key_path)
                .with_context(|| format!("cannot write the key file {}", key_path.display()))?;
            k
        }
    };
    credvault_core::audit::set_shards(settings.audit_shards);
    let config = CoreConfig {
        egress: credvault_core::EgressPolicy::with_allow(settings.egress_allow.clone()),
        alerts: settings.alerts.clone(),
        oauth: credvault_core::oauth::OAuthConfig {
            public_url: settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", settings.listen)),
            refresh_skew_secs: settings.oauth_refresh_skew_secs,
            keepalive_days: settings.oauth_keepalive_days,
        },
        auth_failures: settings.auth_failures,
        ..CoreConfig::default()
    };
    Ok(Service::new(store, keyring, config))
}

/// `credvault scheduler tick`: one scheduler pass at a chosen time, against the store directly.
pub async fn scheduler_tick(
    settings: &ServerSettings,
    now: i64,
) -> anyhow::Result<credvault_core::lifecycle::TickReport> {
    let svc = open(settings).await?;
    let r = svc.scheduler_tick(now).await.context("scheduler pass failed")?;
    svc.store().close();
    Ok(r)
}

/// `credvault audit checkpoint`: one signed checkpoint per chain with new events.
pub async fn write_checkpoints(settings: &ServerSettings) -> anyhow::Result<usize> {
    let svc = open(settings).await?;
    let n = svc.write_checkpoints().await.context("cannot write checkpoints")?;
    svc.store().close();
    Ok(n)
}

/// `credvault audit public-keys`.
pub async fn checkpoint_public_keys(settings: &ServerSettings) -> anyhow::Result<Vec<(String, String)>> {
    let svc = open(settings).await?;
    let keys = svc
        .checkpoint_public_keys()
        .context("cannot derive the checkpoint keys")?;
    svc.store().close();
    Ok(keys)
}

/// `credvault audit verify --offline`: every chain, straight from the store.
pub async fn verify_offline(
    settings: &ServerSettings,
) -> anyhow::Result<Vec<(String, credvault_core::audit::Verification)>> {
    let svc = open(settings).await?;
    let r = svc.verify_all_chains().await.context("cannot verify")?;
    svc.store().close();
    Ok(r)
}

/// `credvault init`: initializes the data directory and store; errors if already initialized.
pub async fn init_data_dir(settings: &ServerSettings) -> anyhow::Result<BootstrapOutput> {
    let svc = open(settings).await?;
    let out = svc.bootstrap().await.context("cannot initialize the store")?;
    svc.store().close();
    out.ok_or_else(|| anyhow::anyhow!("the store is already initialized; the admin token was printed when it was"))
}

/// `credvault serve`.
pub async fn serve(settings: ServerSettings) -> anyhow::Result<()> {
    init_logging(settings.log_format);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let mut settings = settings;
    if settings.public_url.is_none() {
        settings.public_url = Some(format!("http://{addr}"));
    }
    let svc = open(&settings).await?;
    if let Some(out) = svc.bootstrap().await.context("cannot initialize the store")? {
        // Printed once, on stdout only; the token is stored hashed and cannot be shown again.
        println!("credvault initialized {}", settings.data_dir.display());
        println!("  organization: default ({})", out.org_id);
        println!("  workspace:    default ({})", out.workspace_id);
        println!("  admin token (shown once, keep it safe): {}", out.admin_token.as_str());
        println!(
            "  UI sign-in: admin / {} (shown once; change it on the UI's account page)",
            out.admin_password.as_str()
        );
    }
    // Organizations get the audit shards the configuration asks for (PostgreSQL).
    let opened = svc.open_audit_shards().await.context("cannot open the audit shards")?;
    if opened > 0 {
        tracing::info!(chains = opened, "audit shards opened");
    }
    // Credentials from before allowed destinations existed get the destinations of the
    // connections attached to them now (audited), so nothing that works stops working.
    let migrated = svc
        .migrate_destinations()
        .await
        .context("cannot set the allowed destinations of existing credentials")?;
    if migrated > 0 {
        tracing::info!(
            credentials = migrated,
            "allowed destinations set from the connections attached at upgrade"
        );
    }
    println!(
        "credvault listening on http://{addr}  (UI: http://{addr}/, API: http://{addr}/v1, OpenAPI: http://{addr}/v1/openapi.json)"
    );
    tracing::info!(%addr, engine = ?svc.store().engine(), "listening");
    let forwarders = if settings.audit_sinks.is_empty() {
        None
    } else {
        let names: Vec<&str> = settings.audit_sinks.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(sinks = ?names, "forwarding the audit journal");
        Some(
            credvault_core::forward::start_forwarders(
                svc.store().clone(),
                settings.audit_sinks.clone(),
                svc.audit_gate().clone(),
            )
            .await,
        )
    };
    spawn_keyring_watcher(svc.clone(), settings.data_dir.clone());
    // Authentication failures are journaled once per address and window; this writes the
    // summary of each window that ended.
    let failure_summaries = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(5));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(e) = svc.flush_auth_failures(false).await {
                    tracing::warn!(error = %e, "cannot write the authentication failure summaries yet");
                }
            }
        })
    };
    let scheduler = (settings.scheduler_interval_secs > 0).then(|| {
        let svc = svc.clone();
        let every = std::time::Duration::from_secs(settings.scheduler_interval_secs);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                match svc.scheduler_tick(credvault_domain::time::now_micros()).await {
                    Ok(r)
                        if !r.alerts.is_empty()
                            || !r.purged.is_empty()
                            || r.grace_revoked > 0
                            || !r.oauth_kept_alive.is_empty() =>
                    {
                        tracing::info!(
                            alerts = r.alerts.len(),
                            purged = r.purged.len(),
                            grace_revoked = r.grace_revoked,
                            oauth_kept_alive = r.oauth_kept_alive.len(),
                            "scheduler pass"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "scheduler pass failed"),
                }
            }
        })
    });
    let checkpoints = (settings.audit_checkpoint_interval_secs > 0).then(|| {
        let svc = svc.clone();
        let every = std::time::Duration::from_secs(settings.audit_checkpoint_interval_secs);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                if let Err(e) = svc.write_checkpoints().await {
                    tracing::error!(error = %e, "cannot write signed audit checkpoints");
                }
            }
        })
    });
    let router = credvault_api::router(
        svc.clone(),
        &credvault_api::ApiConfig {
            body_limit: settings.body_limit,
            body_timeout: settings.body_timeout,
            secure_cookies: settings
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
        },
    );
    credvault_api::run_with(listener, router, settings.serve_limits, shutdown_signal())
        .await
        .context("server failed")?;
    failure_summaries.abort();
    if let Err(e) = svc.flush_auth_failures(true).await {
        tracing::warn!(error = %e, "cannot write the last authentication failure summaries");
    }
    if let Some(s) = scheduler {
        s.abort();
    }
    if let Some(c) = checkpoints {
        c.abort();
    }
    if let Some(f) = forwarders {
        f.shutdown().await;
    }
    tracing::info!("shutting down: waiting for the store to commit queued writes");
    let store = svc.store().clone();
    tokio::task::spawn_blocking(move || store.close()).await.ok();
    Ok(())
}

/// Reloads the key file when it changes (e.g. `credvault keys rotate` added a primary key), so
/// a running server can open data keys re-wrapped under the new key within about a second.
fn spawn_keyring_watcher(svc: Service, data_dir: std::path::PathBuf) {
    tokio::spawn(async move {
        let stamp = |d: &Path| crate::keyfiles::paths(d).map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        let mut last = stamp(&data_dir);
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = stamp(&data_dir);
            if now == last {
                continue;
            }
            last = now;
            match crate::keyfiles::load(&data_dir).await {
                Ok(Some((k, _))) => {
                    let ids: Vec<String> = k.key_ids().iter().map(|i| i.to_string()).collect();
                    tracing::info!(primary = %k.primary(), keys = ?ids, "key file changed: keyring reloaded");
                    if let Err(e) = svc.set_keyring(k) {
                        tracing::error!(error = %e, "cannot install the reloaded keyring");
                    }
                }
                Ok(None) => tracing::error!("the key file disappeared; keeping the current keyring in memory"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "key file changed but cannot be loaded; keeping the current keyring")
                }
            }
        }
    });
}

/// `credvault keys …` against the store directly.
pub async fn keys(settings: &ServerSettings, cmd: KeysOp) -> anyhow::Result<()> {
    match cmd {
        KeysOp::Status => {
            let svc = open(settings).await?;
            let st = svc.key_status().await?;
            println!("{}", serde_json::to_string_pretty(&st)?);
            svc.store().close();
        }
        KeysOp::Rotate { wait_secs } => {
            let Some((mut k, source)) = crate::keyfiles::load(&settings.data_dir).await? else {
                bail!("no key file in {}", settings.data_dir.display());
            };
            let previous = k.primary().to_string();
            let new = k.add_key();
            crate::keyfiles::save(&source, &k).await?;
            eprintln!("added key {new} as primary (previous primary: {previous})");
            eprintln!("waiting {wait_secs} s so running servers load it before data keys move to it…");
            tokio::time::sleep(std::time::Duration::from_secs(wait_secs)).await;
            let svc = open(settings).await?;
            svc.record_key_rotation(new.as_str(), &previous).await?;
            rewrap_all(&svc).await?;
            svc.store().close();
            eprintln!(
                "done. When `credvault keys status` shows no data key under {previous}, retire it: credvault keys retire {previous}"
            );
        }
        KeysOp::KmsWrap { key } => {
            crate::keyfiles::wrap_with_kms(&settings.data_dir, key).await?;
            eprintln!(
                "the keyring is now wrapped by AWS KMS ({}); the plain key file was shredded",
                settings.data_dir.join(crate::keyfiles::KMS).display()
            );
        }
        KeysOp::KmsUnwrap => {
            crate::keyfiles::unwrap_from_kms(&settings.data_dir).await?;
            eprintln!(
                "the keyring is a plain key file again: {}",
                settings.data_dir.join(KEYRING_FILE).display()
            );
        }
        KeysOp::Rewrap => {
            let svc = open(settings).await?;
            rewrap_all(&svc).await?;
            svc.store().close();
        }
        KeysOp::Retire { id } => {
            let svc = open(settings).await?;
            let st = svc.key_status().await?;
            svc.store().close();
            let used = st.keys.iter().find(|k| k.id == id).map_or(0, |k| k.data_keys);
            if used > 0 {
                bail!("key {id} still wraps {used} data key(s); run `credvault keys rewrap` first");
            }
            let Some((mut k, source)) = crate::keyfiles::load(&settings.data_dir).await? else {
                bail!("no key file in {}", settings.data_dir.display());
            };
            k.retire(&credvault_crypto::KeyId::new(id.clone()))
                .with_context(|| format!("cannot retire {id}"))?;
            crate::keyfiles::save(&source, &k).await?;
            eprintln!("retired {id}");
        }
    }
    Ok(())
}

async fn rewrap_all(svc: &Service) -> anyhow::Result<()> {
    let status = svc.key_status().await?;
    let total: i64 = status
        .keys
        .iter()
        .filter(|k| k.id != status.primary)
        .map(|k| k.data_keys)
        .sum();
    if !status.unknown.is_empty() {
        eprintln!(
            "warning: data keys wrapped by keys missing from the keyring: {:?}",
            status.unknown.iter().map(|k| &k.id).collect::<Vec<_>>()
        );
    }
    let mut done = 0i64;
    loop {
        let n = svc
            .rewrap_batch(500)
            .await
            .context("re-wrap batch failed (rerun `credvault keys rewrap` to resume)")?;
        if n == 0 {
            break;
        }
        done += n;
        crate::progress(format_args!("re-wrapped {done}/{total} data keys"));
    }
    crate::progress_done(format_args!(
        "re-wrapped {done}/{total} data keys under {}",
        status.primary
    ));
    Ok(())
}

fn read_passphrase(path: &Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::Read;
    let mut s = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the passphrase from stdin")?;
    } else {
        s = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    let trimmed = zeroize::Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_owned());
    zeroize::Zeroize::zeroize(&mut s);
    Ok(trimmed)
}

/// `credvault backup`: a consistent logical snapshot of the store (works while servers run).
pub async fn backup(settings: &ServerSettings, output: &Path, keyring_passphrase: Option<&Path>) -> anyhow::Result<()> {
    use base64::Engine as _;
    use std::os::unix::fs::OpenOptionsExt;
    let url = settings.database_url.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&url, &StoreOptions::default()))
        .await
        .context("store task failed")?
        .context("cannot open the store")?;
    let mut extra =
        serde_json::json!({"created_at": credvault_domain::time::to_rfc3339(credvault_domain::time::now_micros())});
    if let Some(pp) = keyring_passphrase {
        let pass = read_passphrase(pp)?;
        let key_path = settings.data_dir.join(KEYRING_FILE);
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?,
        );
        let sealed =
            credvault_crypto::seal_with_passphrase(pass.as_bytes(), &bytes).context("cannot encrypt the key file")?;
        extra["keyring"] = serde_json::json!({"encryption": "argon2id+aes-256-gcm", "sealed": base64::engine::general_purpose::STANDARD.encode(sealed)});
    }
    let tmp = output.with_extension("partial");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let out: Box<dyn std::io::Write + Send> = Box::new(std::io::BufWriter::new(file));
    let stats = store
        .export_to(out, extra, |n| crate::progress(format_args!("backed up {n} rows")))
        .await
        .context("backup failed")?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot move the backup to {}", output.display()))?;
    store.close();
    let total: u64 = stats.tables.iter().map(|(_, n)| n).sum();
    crate::progress_done(format_args!("backed up {total} rows to {}", output.display()));
    if keyring_passphrase.is_none() {
        eprintln!(
            "the key file is NOT in the backup (secrets stay unreadable without it); keep {} safe separately",
            settings.data_dir.join(KEYRING_FILE).display()
        );
    }
    Ok(())
}

/// `credvault restore`: into an empty data directory / database.
pub async fn restore(settings: &ServerSettings, input: &Path, keyring_passphrase: Option<&Path>) -> anyhow::Result<()> {
    use base64::Engine as _;
    prepare_dir(&settings.data_dir)?;
    let key_path = settings.data_dir.join(KEYRING_FILE);
    if key_path.exists() {
        bail!(
            "{} already has a key file: restore only into an empty data directory",
            settings.data_dir.display()
        );
    }
    let file = std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let mut reader = std::io::BufReader::new(file);
    // Peek at the header for the key file before importing.
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first)?;
    let header: serde_json::Value = serde_json::from_str(&first).context("not a credvault backup")?;
    let sealed_keyring = header
        .get("keyring")
        .and_then(|k| k.get("sealed"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let keyring_bytes = match (&sealed_keyring, keyring_passphrase) {
        (Some(sealed), Some(pp)) => {
            let pass = read_passphrase(pp)?;
            let blob = base64::engine::general_purpose::STANDARD
                .decode(sealed)
                .context("corrupt key file in the backup")?;
            Some(
                credvault_crypto::open_with_passphrase(pass.as_bytes(), &blob)
                    .map_err(|_| anyhow::anyhow!("wrong passphrase for the key file in the backup"))?,
            )
        }
        (None, Some(_)) => {
            bail!("this backup does not include the key file; drop --passphrase-file and copy the key file yourself")
        }
        _ => None,
    };
    let url = settings.database_url.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&url, &StoreOptions::default()))
        .await
        .context("store task failed")?
        .context("cannot open the store")?;
    let rest = std::io::Cursor::new(first.into_bytes()).chain_into(reader);
    let (stats, _) = store
        .import_from(rest)
        .await
        .context("restore failed (nothing was written)")?;
    store.close();
    if let Some(bytes) = keyring_bytes {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        Keyring::load(&key_path).context("the restored key file does not load")?;
    }
    let total: u64 = stats.tables.iter().map(|(_, n)| n).sum();
    eprintln!("restored {total} rows into {}", settings.database_url);
    if !key_path.exists() {
        eprintln!(
            "no key file restored: put the original keyring.json into {} before `serve`",
            settings.data_dir.display()
        );
    }
    Ok(())
}

/// Reads one reader after another.
trait ChainInto {
    fn chain_into(self, next: std::io::BufReader<std::fs::File>) -> Box<dyn std::io::BufRead + Send>;
}

impl ChainInto for std::io::Cursor<Vec<u8>> {
    fn chain_into(self, next: std::io::BufReader<std::fs::File>) -> Box<dyn std::io::BufRead + Send> {
        Box::new(std::io::BufReader::new(std::io::Read::chain(self, next)))
    }
}

/// What `credvault keys` does.
#[derive(Debug)]
pub enum KeysOp {
    /// Show which key wraps how many data keys.
    Status,
    /// Add a primary key and re-wrap every data key.
    Rotate {
        /// Seconds to wait for running servers to reload the key file.
        wait_secs: u64,
    },
    /// Resume (or finish) re-wrapping under the primary key.
    Rewrap,
    /// Wrap the key file with an AWS KMS key.
    KmsWrap {
        /// The KMS key.
        key: credvault_connect::aws::KmsKey,
    },
    /// Turn a KMS-wrapped keyring back into a plain key file.
    KmsUnwrap,
    /// Remove a key no data key uses.
    Retire {
        /// Key ID.
        id: String,
    },
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
