//! The credvault service: every operation runs *authenticate → authorize → operate → audit*,
//! with the change and its audit event in one store transaction. The API layer only
//! translates HTTP to calls on [`Service`]; the store only sees ciphertext. This is the one
//! crate that holds both the keyring and the store, so plaintext exists only here, briefly,
//! in zeroizing buffers.

pub mod audit;
mod audit_query;
mod auth;
mod bootstrap;
pub mod connections;
pub mod context;
mod credentials;
pub mod error;
pub mod forward;
pub mod keys;
pub mod lifecycle;
mod reports;
mod resolve;
mod settings;
mod tenancy;
pub mod testing;
pub mod views;

use std::sync::{Arc, RwLock};

use credvault_crypto::Keyring;
use credvault_store::{Store, Tx};

pub use bootstrap::BootstrapOutput;
pub use context::{Actor, ActorBinding, RequestCtx};
pub use credentials::StatusOp;
pub use credvault_connect::{Cidr, EgressPolicy};
pub use error::{CoreError, CoreResult};
pub use reports::{CreateReview, ReportKind, ReportRequest, ReportStream, ReviewView};
pub use resolve::{ResolveRequest, Resolved};
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
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            default_page: 50,
            max_page: 500,
            egress: credvault_connect::EgressPolicy::default(),
            audit_gate: forward::AuditGate::default(),
        }
    }
}

/// The service. Cloning is shallow.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keyring: RwLock<Arc<Keyring>>,
    config: CoreConfig,
}

impl Service {
    /// A service over an opened store and a loaded keyring.
    pub fn new(store: Store, keyring: Keyring, config: CoreConfig) -> Service {
        Service {
            inner: Arc::new(Inner {
                store,
                keyring: RwLock::new(Arc::new(keyring)),
                config,
            }),
        }
    }

    /// Audit sinks' health (for metrics and readiness).
    pub fn audit_gate(&self) -> &forward::AuditGate {
        &self.inner.config.audit_gate
    }

    /// The store (for readiness checks and tools).
    pub fn store(&self) -> &Store {
        &self.inner.store
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

    /// Runs a read, recording denials like [`Service::write`].
    async fn read<T, F>(&self, ctx: &RequestCtx, actor: &Arc<Actor>, f: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> CoreResult<T> + Send + 'static,
    {
        let r = self.inner.store.read(f).await;
        self.settle(ctx, actor, r).await
    }

    async fn settle<T>(&self, ctx: &RequestCtx, actor: &Arc<Actor>, r: CoreResult<T>) -> CoreResult<T> {
        match r {
            Err(CoreError::Denied(d)) => {
                let public = d.public_error();
                let ctx = ctx.clone();
                let who = audit::ActorRef::from(actor.as_ref());
                let draft = d.draft;
                self.inner
                    .store
                    .write(move |tx| audit::append(tx, &ctx, &who, &draft).map(|_| ()))
                    .await?;
                Err(public)
            }
            Err(CoreError::Audited(b)) => {
                let (err, draft) = *b;
                let ctx = ctx.clone();
                let who = audit::ActorRef::from(actor.as_ref());
                self.inner
                    .store
                    .write(move |tx| audit::append(tx, &ctx, &who, &draft).map(|_| ()))
                    .await?;
                Err(err)
            }
            other => other,
        }
    }
}
