//! Authentication (bearer token → [`Actor`]) and authorization (actor × scope × permission →
//! allowed, 404 or 403). Deny by default: a principal with no binding that covers a scope does
//! not learn that anything exists inside it.

use crate::actions::Action;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use credvault_crypto::{ct_eq, hash_token};
use credvault_domain::roles::{Permission, Role};
use credvault_domain::time::now_micros;
use credvault_domain::{OrgId, PrincipalId, PrincipalKind, TokenId, WorkspaceId};
use credvault_store::Tx;

use crate::Service;
use crate::audit::{self, ActorRef, Draft, Outcome};
use crate::context::{Actor, ActorBinding, RequestCtx};
use crate::error::{CoreError, CoreResult, Denial};
use crate::settings::OrgSettings;

/// Where an operation happens, for authorization.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope<'a> {
    /// Organization level: only organization-wide bindings grant permissions.
    Org(&'a OrgId),
    /// Inside a workspace: organization and workspace bindings grant permissions.
    Workspace(&'a OrgId, &'a WorkspaceId),
    /// Something organization-wide that every member may use (org-wide credentials, the
    /// organization itself): any binding in the organization grants its permissions.
    OrgShared(&'a OrgId),
}

impl Scope<'_> {
    fn org(&self) -> &OrgId {
        match self {
            Scope::Org(o) | Scope::OrgShared(o) | Scope::Workspace(o, _) => o,
        }
    }
}

/// Checks `perm` for `actor` in `scope`. On refusal returns a [`CoreError::Denied`] carrying
/// the audit event `draft` marked `denied`.
pub(crate) fn authorize(
    actor: &Actor,
    settings: &OrgSettings,
    scope: Scope<'_>,
    perm: Permission,
    what: &'static str,
    draft: impl FnOnce() -> Draft,
) -> CoreResult<()> {
    let (visible, granted) = grants(actor, settings, scope, perm);
    if granted {
        return Ok(());
    }
    let hidden = if visible { None } else { Some(what) };
    let mut d = draft().outcome(Outcome::Denied);
    if let serde_json::Value::Object(m) = &mut d.details {
        m.insert("permission".into(), perm.as_str().into());
        m.insert("reason".into(), if visible { "forbidden" } else { "not_found" }.into());
    }
    Err(CoreError::Denied(Box::new(Denial {
        draft: d,
        hidden,
        permission: perm,
    })))
}

/// Whether `actor` can see `scope`: it belongs to the organization and, for a workspace, holds
/// a role there (an organization-wide one counts).
pub(crate) fn visible(actor: &Actor, scope: Scope<'_>) -> bool {
    actor.in_org(scope.org())
        && match scope {
            Scope::Workspace(_, ws) => !actor.workspace_roles(ws).is_empty(),
            Scope::Org(_) | Scope::OrgShared(_) => true,
        }
}

/// Whether `actor` can see `scope`, and whether it holds `perm` there.
fn grants(actor: &Actor, settings: &OrgSettings, scope: Scope<'_>, perm: Permission) -> (bool, bool) {
    let visible = visible(actor, scope);
    let roles: Vec<Role> = match scope {
        Scope::Org(_) => actor.org_roles(),
        Scope::Workspace(_, ws) => actor.workspace_roles(ws),
        Scope::OrgShared(_) => actor.any_roles(),
    };
    (visible, visible && settings.role_policy.any_grants(&roles, perm))
}

/// Whether `actor` holds `perm` in `scope` (no audit event: for choosing what to do, never
/// for refusing).
pub(crate) fn permits(actor: &Actor, settings: &OrgSettings, scope: Scope<'_>, perm: Permission) -> bool {
    grants(actor, settings, scope, perm).1
}

/// A non-reversible fingerprint of a presented token for the audit journal: lets an analyst
/// correlate repeated failures without the journal ever holding anything usable.
fn token_fingerprint(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"credvault/audit-token-fingerprint/v1\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..8])
}

struct Found {
    token_id: String,
    principal_id: String,
    org_id: String,
    kind: String,
    name: String,
    instance_admin: bool,
    disabled: bool,
    hash: Vec<u8>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl Service {
    /// Authenticates a bearer token. Every failure is audited (with a fingerprint, never the
    /// token) and answered with the same [`CoreError::Unauthenticated`].
    pub async fn authenticate(&self, token: &str, ctx: &RequestCtx) -> CoreResult<Arc<Actor>> {
        let hash = hash_token(token);
        if let Some(actor) = self.cached_actor(&hash) {
            return Ok(actor);
        }
        // An address past the throttle is answered without looking the token up (a flood of
        // bad tokens then costs no store read) — unless this node has seen the token work in
        // the last ten minutes: a worker behind the same address keeps working, and is looked
        // up as usual (a revocation still takes effect).
        let ip = ctx.source_ip.as_deref().unwrap_or("unknown");
        if !self.inner.auth_failures.recently_valid(&hash)
            && let Some(retry_after_secs) = self.inner.auth_failures.throttled(ip)
        {
            return Err(CoreError::Throttled { retry_after_secs });
        }
        let well_formed = token.starts_with(credvault_crypto::TOKEN_PREFIX) && token.len() < 100;
        let found = if well_formed {
            self.inner
                .store
                .read(
                    move |tx: &mut dyn Tx| -> CoreResult<Option<(Found, Vec<ActorBinding>)>> {
                        let Some(r) = tx.query_opt(
                            "SELECT t.id, t.principal_id, p.org_id, p.kind, p.name, p.instance_admin, p.disabled, \
                         t.hash, t.expires_at, t.revoked_at \
                         FROM tokens t JOIN principals p ON p.id = t.principal_id WHERE t.hash = $1",
                            &[hash.to_vec().into()],
                        )?
                        else {
                            return Ok(None);
                        };
                        let f = Found {
                            token_id: r.text(0)?,
                            principal_id: r.text(1)?,
                            org_id: r.text(2)?,
                            kind: r.text(3)?,
                            name: r.text(4)?,
                            instance_admin: r.bool(5)?,
                            disabled: r.bool(6)?,
                            hash: r.bytes(7)?,
                            expires_at: r.opt_int(8)?,
                            revoked_at: r.opt_int(9)?,
                        };
                        let bindings = load_bindings(tx, &f.principal_id)?;
                        Ok(Some((f, bindings)))
                    },
                )
                .await?
        } else {
            None
        };
        let now = now_micros();
        let failure = match &found {
            None => Some(("unknown_token", None)),
            Some((f, _)) if !ct_eq(&f.hash, &hash) => Some(("unknown_token", None)),
            Some((f, _)) if f.revoked_at.is_some() => Some(("token_revoked", Some(f))),
            Some((f, _)) if f.expires_at.is_some_and(|e| e <= now) => Some(("token_expired", Some(f))),
            Some((f, _)) if f.disabled => Some(("principal_disabled", Some(f))),
            Some(_) => None,
        };
        if let Some((reason, f)) = failure {
            let mut draft = Draft {
                action: Action::AuthFailure,
                target_type: None,
                target_id: None,
                org_id: f.map(|f| f.org_id.clone()),
                workspace_id: None,
                outcome: Outcome::Denied,
                details: serde_json::json!({ "reason": reason }),
            };
            let who = match f {
                Some(f) => {
                    draft.target_type = Some("token");
                    draft.target_id = Some(f.token_id.clone());
                    ActorRef {
                        id: Some(f.principal_id.clone()),
                        kind: if f.kind == "user" { "user" } else { "service_account" },
                    }
                }
                None => {
                    if let serde_json::Value::Object(m) = &mut draft.details {
                        m.insert("token_fingerprint".into(), token_fingerprint(token).into());
                    }
                    ActorRef::anonymous()
                }
            };
            let ip = ctx.source_ip.clone().unwrap_or_else(|| "unknown".into());
            let mut alerts = Vec::new();
            alerts.extend(self.alert(
                crate::alerts::Signal::AuthFailureIp,
                &ip,
                draft.org_id.as_deref(),
                "source_ip",
                &ip,
            ));
            if let Some(f) = f {
                alerts.extend(self.alert(
                    crate::alerts::Signal::AuthFailurePrincipal,
                    &f.principal_id,
                    Some(&f.org_id),
                    "principal",
                    &f.principal_id,
                ));
            }
            return Err(match self.record_failure(ctx, &ip, reason, who, draft, alerts).await {
                Ok(never) => match never {},
                Err(e) => e,
            });
        }
        let Some((f, bindings)) = found else {
            return Err(CoreError::Unauthenticated);
        };
        let expires = f.expires_at;
        let actor = Arc::new(Actor {
            principal_id: PrincipalId::from_trusted(f.principal_id),
            kind: PrincipalKind::parse(&f.kind).unwrap_or(PrincipalKind::ServiceAccount),
            name: f.name,
            org_id: OrgId::from_trusted(f.org_id),
            instance_admin: f.instance_admin,
            token_id: TokenId::from_trusted(f.token_id),
            bindings,
        });
        self.cache_actor(hash, actor.clone(), expires);
        self.inner.auth_failures.seen_valid(hash);
        Ok(actor)
    }

    /// Records a request that carried no usable credentials at all (no header, wrong scheme);
    /// answers the error the caller gets (401, or 429 once the address is throttled).
    pub async fn record_missing_auth(&self, ctx: &RequestCtx, reason: &'static str) -> CoreError {
        let draft = Draft {
            action: Action::AuthFailure,
            target_type: None,
            target_id: None,
            org_id: None,
            workspace_id: None,
            outcome: Outcome::Denied,
            details: serde_json::json!({ "reason": reason }),
        };
        let ip = ctx.source_ip.clone().unwrap_or_else(|| "unknown".into());
        let alerts: Vec<Draft> = self
            .alert(crate::alerts::Signal::AuthFailureIp, &ip, None, "source_ip", &ip)
            .into_iter()
            .collect();
        match self
            .record_failure(ctx, &ip, reason, ActorRef::anonymous(), draft, alerts)
            .await
        {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    /// One authentication failure from `ip`. Every failure feeds the spike detectors (the
    /// caller did that); the journal gets the first failure of each address's window in full
    /// and one summary event per window for the rest (`coalesced`), so a flood of bad tokens
    /// costs one durable write per address and window, not one per request. Past
    /// [`FailureLimits::throttle_after`] failures in a window the address is answered 429 until the window
    /// ends. Always an error: 401 or 429.
    async fn record_failure(
        &self,
        ctx: &RequestCtx,
        ip: &str,
        reason: &'static str,
        who: ActorRef,
        draft: Draft,
        alerts: Vec<Draft>,
    ) -> CoreResult<std::convert::Infallible> {
        let step = self
            .inner
            .auth_failures
            .observe(ip, reason, who.id.as_deref(), draft.org_id.as_deref());
        let window = self.inner.config.auth_failures.window;
        let write_first = matches!(step.decision, Decision::Record | Decision::Throttle { first: true, .. });
        let ended = step.ended;
        if write_first || !ended.is_empty() || !alerts.is_empty() {
            let ctx2 = ctx.clone();
            self.inner
                .store
                .write(move |tx| {
                    for w in &ended {
                        audit::append(tx, &ctx2, &ActorRef::system(), &w.summary(window))?;
                    }
                    if write_first {
                        audit::append(tx, &ctx2, &who, &draft)?;
                    }
                    for a in &alerts {
                        audit::append(tx, &ctx2, &ActorRef::system(), a)?;
                    }
                    Ok::<_, CoreError>(())
                })
                .await?;
        }
        match step.decision {
            Decision::Throttle { retry_after_secs, .. } => Err(CoreError::Throttled { retry_after_secs }),
            _ => Err(CoreError::Unauthenticated),
        }
    }

    /// Writes the summary events of failure windows that have ended (a background task calls
    /// this every few seconds, so quiet addresses are summed up too); with `all`, of every
    /// window (at shutdown, so no count is lost).
    pub async fn flush_auth_failures(&self, all: bool) -> CoreResult<usize> {
        let now = std::time::Instant::now();
        let ended = self.inner.auth_failures.take_ended(if all {
            now + self.inner.config.auth_failures.window
        } else {
            now
        });
        if ended.is_empty() {
            return Ok(0);
        }
        let n = ended.len();
        let window = self.inner.config.auth_failures.window;
        self.inner
            .store
            .write(move |tx| {
                let ctx = RequestCtx {
                    user_agent: Some("credvault auth-failure summary".into()),
                    ..RequestCtx::default()
                };
                for w in &ended {
                    audit::append(tx, &ctx, &ActorRef::system(), &w.summary(window))?;
                }
                Ok::<_, CoreError>(())
            })
            .await?;
        Ok(n)
    }
}

/// How authentication failures are journaled and throttled.
#[derive(Clone, Copy, Debug)]
pub struct FailureLimits {
    /// The window over which failures are coalesced (and counted for throttling).
    pub window: std::time::Duration,
    /// Failures per address and window after which the address is answered 429.
    pub throttle_after: u64,
}

impl Default for FailureLimits {
    fn default() -> Self {
        FailureLimits {
            window: std::time::Duration::from_secs(60),
            throttle_after: 100,
        }
    }
}

/// What to do with one failure.
enum Decision {
    /// The first of its kind in its window: write it in full.
    Record,
    /// Counted only (summed up when the window ends).
    Count,
    /// The address is throttled (`first`: the first failure of its kind in its window,
    /// journaled in full all the same, so what a throttled client tried is on record).
    Throttle { retry_after_secs: u64, first: bool },
}

struct Step {
    decision: Decision,
    /// Windows that ended (at rollover): their summaries are due.
    ended: Vec<EndedWindow>,
}

/// Failures of one kind (address, reason, principal) in the current window.
struct Window {
    started: std::time::Instant,
    started_at: i64,
    ip: String,
    reason: &'static str,
    principal: Option<String>,
    org: Option<String>,
    /// Failures after the first (which was written in full).
    more: u64,
    throttled: u64,
}

/// A window to sum up in the journal.
pub(crate) struct EndedWindow(Window);

impl EndedWindow {
    fn summary(&self, window: std::time::Duration) -> Draft {
        let w = &self.0;
        Draft {
            action: Action::AuthFailure,
            target_type: Some("source_ip"),
            target_id: Some(w.ip.clone()),
            org_id: w.org.clone(),
            workspace_id: None,
            outcome: Outcome::Denied,
            details: serde_json::json!({
                "reason": w.reason, "coalesced": true, "source_ip": w.ip, "principal_id": w.principal,
                "count": w.more, "throttled": w.throttled,
                "window_started_at": credvault_domain::time::to_rfc3339(w.started_at),
                "window_secs": window.as_secs(),
            }),
        }
    }
}

/// This node's failure windows: by kind (address, reason, principal) for the journal, and by
/// address for throttling.
pub(crate) struct FailureWindows {
    inner: std::sync::Mutex<Windows>,
    limits: FailureLimits,
    /// Hashes of tokens that authenticated on this node lately (they pass a throttled
    /// address's fast refusal).
    valid: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>,
}

/// How long a token that worked stays exempt from a throttled address's fast refusal.
const RECENTLY_VALID: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Default)]
struct Windows {
    kinds: std::collections::HashMap<(String, &'static str, Option<String>), Window>,
    /// Per address: window start and failures in it.
    addresses: std::collections::HashMap<String, (std::time::Instant, u64)>,
}

impl Windows {
    fn take(&mut self, pred: impl Fn(&Window) -> bool) -> Vec<EndedWindow> {
        let keys: Vec<_> = self
            .kinds
            .iter()
            .filter(|(_, w)| pred(w))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(w) = self.kinds.remove(&k)
                && w.more > 0
            {
                out.push(EndedWindow(w));
            }
        }
        out
    }
}

impl FailureWindows {
    pub(crate) fn new(limits: FailureLimits) -> FailureWindows {
        FailureWindows {
            inner: std::sync::Mutex::default(),
            limits,
            valid: std::sync::Mutex::default(),
        }
    }

    fn seen_valid(&self, hash: [u8; 32]) {
        let mut v = self.valid.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if v.len() >= 100_000 {
            v.retain(|_, t| t.elapsed() < RECENTLY_VALID);
        }
        v.insert(hash, std::time::Instant::now());
    }

    fn recently_valid(&self, hash: &[u8; 32]) -> bool {
        let v = self.valid.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        v.get(hash).is_some_and(|t| t.elapsed() < RECENTLY_VALID)
    }

    fn observe(&self, ip: &str, reason: &'static str, principal: Option<&str>, org: Option<&str>) -> Step {
        let now = std::time::Instant::now();
        let mut m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (ip.to_owned(), reason, principal.map(str::to_owned));
        let window = self.limits.window;
        let mut ended = m.take(|w| w.ip == ip && now.duration_since(w.started) >= window);
        // Bound the memory an address-spraying flood can take: sum up and forget the oldest
        // windows early.
        if m.kinds.len() >= 100_000 {
            let cutoff = now - window / 2;
            ended.extend(m.take(|w| w.started < cutoff));
            m.addresses.retain(|_, (t, _)| *t >= cutoff);
        }
        let count = {
            let a = m.addresses.entry(ip.to_owned()).or_insert((now, 0));
            if now.duration_since(a.0) >= window {
                *a = (now, 0);
            }
            a.1 += 1;
            *a
        };
        let throttle = (count.1 > self.limits.throttle_after)
            .then(|| window.saturating_sub(now.duration_since(count.0)).as_secs().max(1));
        let decision = match m.kinds.get_mut(&key) {
            None => {
                m.kinds.insert(
                    key,
                    Window {
                        started: now,
                        started_at: now_micros(),
                        ip: ip.to_owned(),
                        reason,
                        principal: principal.map(str::to_owned),
                        org: org.map(str::to_owned),
                        more: 0,
                        throttled: 0,
                    },
                );
                match throttle {
                    Some(retry_after_secs) => Decision::Throttle {
                        retry_after_secs,
                        first: true,
                    },
                    None => Decision::Record,
                }
            }
            Some(w) => {
                w.more += 1;
                match throttle {
                    Some(retry_after_secs) => {
                        w.throttled += 1;
                        Decision::Throttle {
                            retry_after_secs,
                            first: false,
                        }
                    }
                    None => Decision::Count,
                }
            }
        };
        Step { decision, ended }
    }

    /// Whether `ip` is past the throttle now (counted as a throttled failure of its window),
    /// and for how long.
    fn throttled(&self, ip: &str) -> Option<u64> {
        let now = std::time::Instant::now();
        let window = self.limits.window;
        let mut m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let a = m.addresses.get_mut(ip)?;
        let age = now.duration_since(a.0);
        if age >= window || a.1 <= self.limits.throttle_after {
            return None;
        }
        a.1 += 1;
        let left = window.saturating_sub(age).as_secs().max(1);
        if let Some(w) = m
            .kinds
            .iter_mut()
            .filter(|((k, _, _), _)| k == ip)
            .map(|(_, w)| w)
            .min_by_key(|w| w.started)
        {
            w.more += 1;
            w.throttled += 1;
        }
        Some(left)
    }

    fn take_ended(&self, now: std::time::Instant) -> Vec<EndedWindow> {
        let window = self.limits.window;
        let mut m = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.addresses.retain(|_, (t, _)| now.duration_since(*t) < window);
        m.take(|w| now.duration_since(w.started) >= window)
    }
}

/// How long an authenticated token is trusted without asking the store again. Revoking a
/// token, disabling a principal or changing role bindings clears this node's cache at once;
/// other nodes see the change within this bound.
pub const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl Service {
    fn cached_actor(&self, hash: &[u8; 32]) -> Option<Arc<Actor>> {
        let cache = self.inner.token_cache.lock().ok()?;
        let (actor, at, expires) = cache.get(hash)?;
        if at.elapsed() >= TOKEN_CACHE_TTL || expires.is_some_and(|e| e <= now_micros()) {
            return None;
        }
        Some(actor.clone())
    }

    fn cache_actor(&self, hash: [u8; 32], actor: Arc<Actor>, expires: Option<i64>) {
        if let Ok(mut cache) = self.inner.token_cache.lock() {
            if cache.len() > 50_000 {
                cache.retain(|_, (_, at, _)| at.elapsed() < TOKEN_CACHE_TTL);
            }
            cache.insert(hash, (actor, std::time::Instant::now(), expires));
        }
    }

    /// Forgets every cached authentication (after revocations and binding changes).
    pub(crate) fn clear_token_cache(&self) {
        if let Ok(mut cache) = self.inner.token_cache.lock() {
            cache.clear();
        }
    }
}

pub(crate) fn load_bindings(tx: &mut dyn Tx, principal_id: &str) -> CoreResult<Vec<ActorBinding>> {
    let rows = tx.query(
        "SELECT role, workspace_id FROM role_bindings WHERE principal_id = $1 ORDER BY seq",
        &[principal_id.into()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(role) = Role::parse(&r.text(0)?) else {
            continue;
        };
        out.push(ActorBinding {
            role,
            workspace_id: r.opt_text(1)?.map(WorkspaceId::from_trusted),
        });
    }
    Ok(out)
}
