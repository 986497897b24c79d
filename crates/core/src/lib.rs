//! The credvault service: every operation runs *authenticate → authorize → operate → audit*,
//! with the change and its audit event in one store transaction. The API layer only
//! translates HTTP to calls on [`Service`]; the store only sees ciphertext. This is the one
//! crate that holds both the keyring and the store, so plaintext exists only here, briefly,
//! in zeroizing buffers.

pub mod actions;
pub mod alerts;
mod appender;
pub mod audit;
mod audit_query;
pub mod auth;
mod bootstrap;
pub mod checkpoint;
pub mod connections;
pub mod context;
mod credentials;
mod destinations;
pub mod error;
pub mod forward;
pub mod keys;
pub mod lifecycle;
pub mod oauth;
mod operation;
mod reports;
mod resolve;
mod sessions;
mod settings;
mod tenancy;
pub mod testing;
pub mod views;

use crate::actions::Action;
use std::sync::{Arc, RwLock};

use credvault_crypto::Keyring;
use credvault_store::{Store, Tx};

pub use bootstrap::BootstrapOutput;
pub use context::{Actor, ActorBinding, RequestCtx};
pub use credentials::StatusOp;
pub use credvault_connect::{Cidr, EgressPolicy};
/// Random bytes from the OS and constant-time comparison, for the API's nonces and CSRF checks.
pub use credvault_crypto::{ct_eq, random_bytes};
pub use error::{CoreError, CoreResult};
pub use reports::{CreateReview, ReportKind, ReportRequest, ReportStream, ReviewView};
pub use resolve::{CacheStats as ResolveCacheStats, ResolveReport, ResolveRequest, Resolved};
pub use sessions::{
    DEVICE_MAX_SECS, DEVICE_PREFIX, LOCKOUT_AFTER, NewSession, SESSION_IDLE_SECS, SESSION_MAX_SECS, SESSION_PREFIX,
    SessionActor,
};
pub use settings::{OrgSettings, SettingsPatch};

/// Tunables of the core, validated at start-up.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Default and maximum page sizes of list endpoints.
    pub default_page: usize,
    /// Upper bound a caller may ask for with `limit`.
    pub max_page: usize,
    /// Where Test connection may connect.
    pub egress: credvault_connect::EgressPolicy,
    /// Audit sinks' health and the fail-closed gate.
    pub audit_gate: forward::AuditGate,
    /// Spike detector thresholds.
    pub alerts: alerts::AlertConfig,
    /// OAuth consent and refresh settings.
    pub oauth: oauth::OAuthConfig,
    /// How failed authentications are journaled and throttled.
    pub auth_failures: auth::FailureLimits,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            default_page: 50,
            max_page: 500,
            egress: credvault_connect::EgressPolicy::default(),
            audit_gate: forward::AuditGate::default(),
            alerts: alerts::AlertConfig::default(),
            oauth: oauth::OAuthConfig::default(),
            auth_failures: auth::FailureLimits::default(),
        }
    }
}

/// Appends an event and the alerts it raised (by the system) in one transaction.
fn append_all(
    tx: &mut dyn Tx,
    ctx: &RequestCtx,
    who: &audit::ActorRef,
    draft: &audit::Draft,
    alerts: impl IntoIterator<Item = audit::Draft>,
) -> CoreResult<()> {
    audit::append(tx, ctx, who, draft)?;
    for a in alerts {
        audit::append(tx, ctx, &audit::ActorRef::system(), &a)?;
    }
    Ok(())
}

/// The service. Cloning is shallow.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

/// Cached authentications: token hash → (actor, when cached, token expiry).
type TokenCache = std::collections::HashMap<[u8; 32], (Arc<Actor>, std::time::Instant, Option<i64>)>;

struct Inner {
    token_cache: std::sync::Mutex<TokenCache>,
    detectors: alerts::Detectors,
    refresh_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Authentication failures per source address and window (coalescing, throttling).
    auth_failures: auth::FailureWindows,
    /// Test connection slots per organization (see `testing::TESTS_PER_ORG`).
    test_slots: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Group-committed resolve records (PostgreSQL), started on first use.
    appender: std::sync::OnceLock<appender::Appender>,
    /// Resolve's reads kept in memory on SQLite (see `resolve::cache`).
    resolve_cache: resolve::cache::ResolveCache,
    store: Store,
    keyring: RwLock<Arc<Keyring>>,
    config: CoreConfig,
}

impl Service {
    /// A service over an opened store and a loaded keyring.
    pub fn new(store: Store, keyring: Keyring, config: CoreConfig) -> Service {
        Service {
            inner: Arc::new(Inner {
                token_cache: std::sync::Mutex::new(TokenCache::new()),
                detectors: alerts::Detectors::new(config.alerts.clone()),
                refresh_locks: std::sync::Mutex::new(std::collections::HashMap::new()),
                test_slots: std::sync::Mutex::new(std::collections::HashMap::new()),
                appender: std::sync::OnceLock::new(),
                resolve_cache: resolve::cache::ResolveCache::default(),
                auth_failures: auth::FailureWindows::new(config.auth_failures),
                store,
                keyring: RwLock::new(Arc::new(keyring)),
                config,
            }),
        }
    }

    /// How resolves found their reads (SQLite's in-memory replay; zeros on PostgreSQL).
    pub fn resolve_cache_stats(&self) -> resolve::CacheStats {
        self.inner.resolve_cache.stats()
    }

    /// Audit sinks' health (for metrics and readiness).
    pub fn audit_gate(&self) -> &forward::AuditGate {
        &self.inner.config.audit_gate
    }

    /// Verifies every audit chain in the store (offline tool).
    pub async fn verify_all_chains(&self) -> CoreResult<Vec<(String, audit::Verification)>> {
        self.inner.store.read(audit::verify_all).await
    }

    /// Whether the store answers (readiness).
    pub async fn ping_store(&self) -> CoreResult<()> {
        Ok(self.inner.store.ping().await?)
    }

    /// The store (for the command-line tools).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Appends a signed checkpoint to every chain with events since its last one.
    pub async fn write_checkpoints(&self) -> CoreResult<usize> {
        let keyring = self.keyring()?.clone();
        self.inner
            .store
            .write(move |tx| crate::checkpoint::write_all(tx, &keyring))
            .await
    }

    /// The checkpoint public keys of the keyring: (key ID, base64 Ed25519 public key).
    pub fn checkpoint_public_keys(&self) -> CoreResult<Vec<(String, String)>> {
        let keyring = self.keyring()?.clone();
        crate::checkpoint::public_keys(&keyring)
    }

    /// This node's resolve-record appender (call from the runtime).
    fn appender(&self) -> &appender::Appender {
        self.inner
            .appender
            .get_or_init(|| appender::Appender::start(self.inner.store.clone()))
    }

    fn keyring(&self) -> CoreResult<std::sync::RwLockReadGuard<'_, Arc<Keyring>>> {
        self.inner
            .keyring
            .read()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))
    }

    fn page_limit(&self, asked: Option<usize>) -> usize {
        asked
            .unwrap_or(self.inner.config.default_page)
            .clamp(1, self.inner.config.max_page)
    }

    /// Runs a write; a denial raised inside is recorded in the audit journal (in its own
    /// transaction, since the refused operation wrote nothing) and returned as 404/403.
    async fn write<T, F>(&self, ctx: &RequestCtx, actor: &Arc<Actor>, f: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> CoreResult<T> + Send + 'static,
    {
        let r = self.inner.store.write(f).await;
        self.settle(ctx, actor, r).await
    }

    /// Counts a signal; when its threshold is crossed, returns the `alert.*` event to append.
    fn alert(
        &self,
        signal: alerts::Signal,
        key: &str,
        org: Option<&str>,
        target_type: &'static str,
        target_id: &str,
    ) -> Option<audit::Draft> {
        let count = self.inner.detectors.observe(signal, key)?;
        let t = match signal {
            alerts::Signal::AuthFailureIp => self.inner.detectors.config().auth_failures_per_ip,
            alerts::Signal::AuthFailurePrincipal => self.inner.detectors.config().auth_failures_per_principal,
            alerts::Signal::Denial => self.inner.detectors.config().denials_per_principal,
            alerts::Signal::TestFailure => self.inner.detectors.config().test_failures_per_credential,
            alerts::Signal::TargetAuthFailure => self.inner.detectors.config().target_auth_failures_per_credential,
        };
        tracing::warn!(
            alert = signal.action().as_str(),
            target_type,
            target_id,
            count,
            "alert raised"
        );
        Some(audit::Draft {
            action: signal.action(),
            target_type: Some(target_type),
            target_id: Some(target_id.to_owned()),
            org_id: org.map(str::to_owned),
            workspace_id: None,
            outcome: audit::Outcome::Success,
            details: serde_json::json!({"count": count, "window_secs": t.window_secs, "threshold": t.count}),
        })
    }

    /// A refused resolve of a disabled, deleted, expired or revoked credential alerts at once.
    fn refusal_alert(&self, draft: &audit::Draft) -> Option<audit::Draft> {
        let reason = draft.details.get("refused").and_then(serde_json::Value::as_str)?;
        if ![
            "credential_disabled",
            "credential_deleted",
            "credential_expired",
            "credential_not_active",
            "version_revoked",
            "version_not_resolvable",
            "destination_not_allowed",
        ]
        .contains(&reason)
        {
            return None;
        }
        let cred = draft
            .details
            .get("credential_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Some(audit::Draft {
            action: Action::AlertResolveRefused,
            target_type: Some("credential"),
            target_id: Some(cred),
            org_id: draft.org_id.clone(),
            workspace_id: draft.workspace_id.clone(),
            outcome: audit::Outcome::Success,
            details: serde_json::json!({"reason": reason, "connection_id": draft.target_id, "run_id": draft.details.get("run_id")}),
        })
    }

    async fn settle<T>(&self, ctx: &RequestCtx, actor: &Arc<Actor>, r: CoreResult<T>) -> CoreResult<T> {
        match r {
            Err(CoreError::Denied(d)) => {
                let public = d.public_error();
                let (svc, ctx, a) = (self.clone(), ctx.clone(), actor.clone());
                self.inner
                    .store
                    .write(move |tx| svc.record_denial(tx, &ctx, &a, d.draft))
                    .await?;
                Err(public)
            }
            Err(CoreError::Audited(b)) => {
                let (err, draft) = *b;
                let ctx = ctx.clone();
                let who = audit::ActorRef::from(actor.as_ref());
                let alert = self.refusal_alert(&draft);
                self.inner
                    .store
                    .write(move |tx| append_all(tx, &ctx, &who, &draft, alert))
                    .await?;
                Err(err)
            }
            other => other,
        }
    }
}
