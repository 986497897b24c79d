//! The operation pipeline: the one place where a scoped operation is authorized, applied and
//! audited.
//!
//! An operation is two closures. `prepare` reads what the operation acts on and declares the
//! [`Check`] that guards it (scope, permission, and the operation's event, which also records a
//! refusal); it gets a transaction that refuses writes, so nothing can change before
//! authorization. The pipeline then loads the organization's settings and checks:
//!
//! - **refused** → the refusal's event (and a denial-spike alert, if one is due) is appended in
//!   the same transaction, which commits nothing else, and the caller gets 404 (outside the
//!   scope) or 403 (inside it, without the permission);
//! - **granted** → `apply` runs with an [`Ops`]: the transaction, the settings, and
//!   [`Ops::record`] for its events. A mutation that records no event cannot commit: the
//!   pipeline counts the statements `apply` writes and refuses (rolls back) a write without
//!   an event.
//!
//! Refusals found while applying (a check that depends on what `apply` computed, or an error
//! that must leave a trace) roll the transaction back and are recorded in one of their own by
//! [`Service::settle`].

use std::sync::Arc;

use credvault_domain::roles::Permission;
use credvault_domain::{OrgId, WorkspaceId};
use credvault_store::{Engine, Row, StoreError, Tx, Value, versions::Inside};

use crate::actions::Action;
use crate::audit::{self, ActorRef, Draft};
use crate::auth::{Scope, authorize, permits};
use crate::context::{Actor, RequestCtx};
use crate::error::{CoreError, CoreResult};
use crate::settings::OrgSettings;
use crate::{Service, alerts, append_all};

/// Whether an operation changes the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Runs on the writer (one transaction for the change and its events).
    Write,
    /// Runs in a read-only snapshot; a refusal is recorded in a transaction of its own.
    Read,
}

#[derive(Clone, Copy, Debug)]
enum ScopeKind {
    Org,
    Workspace,
    OrgShared,
}

/// One permission an operation needs: where, which, and the event that records a refusal.
#[derive(Debug)]
pub(crate) struct Check {
    org: OrgId,
    ws: Option<WorkspaceId>,
    kind: ScopeKind,
    permission: Permission,
    /// Any member of the scope passes, whatever its roles grant (`permission` then only names
    /// what a refusal was about).
    member: bool,
    /// Also passes with this permission in the same scope.
    or_permission: Option<Permission>,
    /// Also passes when the actor is this principal (its own tokens, its own bindings).
    or_principal: Option<String>,
    what: &'static str,
    draft: Draft,
}

impl Check {
    /// `permission` in `scope`; a caller outside the scope is told that no `what` exists.
    pub(crate) fn new(scope: Scope<'_>, permission: Permission, what: &'static str, draft: Draft) -> Check {
        let (org, ws, kind) = match scope {
            Scope::Org(o) => (o.clone(), None, ScopeKind::Org),
            Scope::OrgShared(o) => (o.clone(), None, ScopeKind::OrgShared),
            Scope::Workspace(o, w) => (o.clone(), Some(w.clone()), ScopeKind::Workspace),
        };
        Check {
            org,
            ws,
            kind,
            permission,
            member: false,
            or_permission: None,
            or_principal: None,
            what,
            draft,
        }
    }

    /// `perm` at the level of organization `id` (a caller-given ID: one that is not an
    /// organization's is not found); the event `action` on the organization.
    pub(crate) fn org(id: &str, perm: Permission, action: Action) -> CoreResult<Check> {
        let org = OrgId::parse(id).map_err(|_| CoreError::NotFound { what: "organization" })?;
        let draft = Draft::new(action, "org", org.as_str(), org.as_str());
        Ok(Check::new(Scope::Org(&org), perm, "organization", draft))
    }

    /// The same check, also passed with `perm` in the same scope.
    pub(crate) fn or(mut self, perm: Permission) -> Check {
        self.or_permission = Some(perm);
        self
    }

    /// The same check, also passed by `principal` itself.
    pub(crate) fn or_self(mut self, principal: &str) -> Check {
        self.or_principal = Some(principal.to_owned());
        self
    }

    /// Membership of `scope` (any role there; for an organization, belonging to it): for what
    /// every member may read, such as the organization's settings and its workspaces' names.
    pub(crate) fn member(scope: Scope<'_>, what: &'static str, draft: Draft) -> Check {
        Check {
            member: true,
            ..Check::new(scope, Permission::MetadataRead, what, draft)
        }
    }

    /// The same check, its event carrying `details`.
    pub(crate) fn details(mut self, details: serde_json::Value) -> Check {
        self.draft.details = details;
        self
    }

    fn scope(&self) -> Scope<'_> {
        match (self.kind, &self.ws) {
            (ScopeKind::Workspace, Some(w)) => Scope::Workspace(&self.org, w),
            (ScopeKind::OrgShared, _) => Scope::OrgShared(&self.org),
            _ => Scope::Org(&self.org),
        }
    }

    /// `Ok` when granted, else the [`CoreError::Denied`] that records the refusal (for the one
    /// path that cannot run through [`Service::operate`]: resolve, see `resolve.rs`).
    pub(crate) fn run(self, actor: &Actor, settings: &OrgSettings) -> CoreResult<()> {
        if (self.member && crate::auth::visible(actor, self.scope()))
            || self.or_principal.as_deref() == Some(actor.principal_id.as_str())
            || self
                .or_permission
                .is_some_and(|p| permits(actor, settings, self.scope(), p))
        {
            return Ok(());
        }
        let Check {
            permission,
            what,
            draft,
            ..
        } = &self;
        authorize(actor, settings, self.scope(), *permission, what, || draft.clone())
    }
}

/// What `prepare` found: the target, and the check that guards it.
pub(crate) struct Plan<T> {
    target: T,
    check: Check,
}

impl<T> Plan<T> {
    /// A target guarded by a check.
    pub(crate) fn new(target: T, check: Check) -> Plan<T> {
        Plan { target, check }
    }

    /// The same plan, its event carrying `details`.
    pub(crate) fn details(mut self, details: serde_json::Value) -> Plan<T> {
        self.check = self.check.details(details);
        self
    }
}

/// What `apply` works with: the transaction, who acts, the organization's settings, and the
/// recorder of its events.
pub(crate) struct Ops<'a> {
    tx: Counting<'a>,
    ctx: &'a RequestCtx,
    actor: &'a Arc<Actor>,
    settings: OrgSettings,
    org: OrgId,
    event: Draft,
    recorded: usize,
}

impl Ops<'_> {
    /// The transaction.
    pub(crate) fn tx(&mut self) -> &mut dyn Tx {
        &mut self.tx
    }
    /// Who acts.
    pub(crate) fn actor(&self) -> &Arc<Actor> {
        self.actor
    }
    /// Who acts, as the audit journal names them.
    pub(crate) fn who(&self) -> ActorRef {
        ActorRef::from(self.actor.as_ref())
    }
    /// The settings of the organization the check ran in.
    pub(crate) fn settings(&self) -> &OrgSettings {
        &self.settings
    }
    /// The event the operation declared (its first check's), to complete and record.
    pub(crate) fn event(&self) -> Draft {
        self.event.clone()
    }
    /// Appends an event by the actor, in this transaction.
    pub(crate) fn record(&mut self, draft: Draft) -> CoreResult<()> {
        let who = self.who();
        audit::append(&mut self.tx, self.ctx, &who, &draft)?;
        self.recorded += 1;
        Ok(())
    }
    /// Which workspaces of the organization the actor may read with `perm`, for a list
    /// (`None`: all of them). Refuses (404/403, recorded as `action`) when it may read nothing
    /// there, or when it asks for a workspace (`asked`) it cannot read.
    pub(crate) fn visible_workspaces(
        &self,
        asked: Option<&str>,
        action: Action,
        perm: Permission,
    ) -> CoreResult<Option<Vec<String>>> {
        let (a, settings, org) = (self.actor, &self.settings, &self.org);
        let draft = || Draft::new(action, "org", org.as_str(), org.as_str());
        if a.in_org(org) && settings.role_policy.any_grants(&a.org_roles(), perm) {
            return Ok(None);
        }
        let mut ws: Vec<String> = a
            .bindings
            .iter()
            .filter_map(|b| b.workspace_id.clone())
            .filter(|w| settings.role_policy.any_grants(&a.workspace_roles(w), perm))
            .map(|w| w.to_string())
            .collect();
        ws.sort();
        ws.dedup();
        if ws.is_empty() || !a.in_org(org) {
            self.check(Check::new(Scope::OrgShared(org), perm, "organization", draft()))?;
        }
        if let Some(w) = asked
            && !ws.iter().any(|x| x == w)
        {
            let wid = WorkspaceId::from_trusted(w.to_owned());
            self.check(Check::new(Scope::Workspace(org, &wid), perm, "workspace", draft()))?;
        }
        Ok(Some(ws))
    }
    /// Appends an event the operation caused but the system did (an alert it raised, an
    /// automatic reaction), in this transaction.
    pub(crate) fn record_system(&mut self, draft: Draft) -> CoreResult<()> {
        audit::append(&mut self.tx, self.ctx, &ActorRef::system(), &draft)?;
        self.recorded += 1;
        Ok(())
    }
    /// Refuses the operation (403: the actor is inside the scope) for a reason its check could
    /// not see, such as an organization admin reaching for the instance admin's account. The
    /// refusal rolls back what `apply` did and is recorded with the operation's event.
    pub(crate) fn forbid(&self, permission: Permission) -> CoreError {
        CoreError::Denied(Box::new(crate::error::Denial {
            draft: self.event().outcome(audit::Outcome::Denied),
            hidden: None,
            permission,
        }))
    }
    /// A check that depends on what `apply` found. A refusal rolls back everything `apply`
    /// did and is recorded in a transaction of its own.
    pub(crate) fn check(&self, check: Check) -> CoreResult<()> {
        check.run(self.actor, &self.settings)
    }
}

/// A transaction that counts the statements that may change something.
struct Counting<'a> {
    inner: &'a mut dyn Tx,
    writes: u64,
}

impl Tx for Counting<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        if !is_select(sql) {
            self.writes += 1;
        }
        self.inner.query(sql, params)
    }
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        self.writes += 1;
        self.inner.execute(sql, params)
    }
    fn execute_inside(&mut self, inside: &Inside, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        self.writes += 1;
        self.inner.execute_inside(inside, sql, params)
    }
    fn engine(&self) -> Engine {
        self.inner.engine()
    }
}

/// A transaction that refuses writes (what `prepare` gets).
struct ReadOnly<'a>(&'a mut dyn Tx);

/// A plain `SELECT` (a `WITH` may hold a data-modifying statement: it counts as a write).
fn is_select(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|h| h.eq_ignore_ascii_case("select"))
}

fn refused_write() -> StoreError {
    StoreError::ReadOnly("an operation wrote before it was authorized")
}

impl Tx for ReadOnly<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        if !is_select(sql) {
            return Err(refused_write());
        }
        self.0.query(sql, params)
    }
    fn execute(&mut self, _: &str, _: &[Value]) -> Result<u64, StoreError> {
        Err(refused_write())
    }
    fn execute_inside(&mut self, _: &Inside, _: &str, _: &[Value]) -> Result<u64, StoreError> {
        Err(refused_write())
    }
    fn engine(&self) -> Engine {
        self.0.engine()
    }
}

/// The result of one pass through a transaction: done, or refused with the refusal recorded
/// (write mode) or still to record (read mode).
enum Pass<T> {
    Done(T),
    Refused(CoreError),
}

impl Service {
    /// Runs an operation: `prepare` (reads only) → check → `apply` → its events, in one
    /// transaction. See the module documentation.
    pub(crate) async fn operate<T, P, A, R>(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        mode: Mode,
        prepare: P,
        apply: A,
    ) -> CoreResult<R>
    where
        T: Send + 'static,
        R: Send + 'static,
        P: FnOnce(&mut dyn Tx) -> CoreResult<Plan<T>> + Send + 'static,
        A: FnOnce(&mut Ops<'_>, T) -> CoreResult<R> + Send + 'static,
    {
        let (svc, ctx2, a) = (self.clone(), ctx.clone(), actor.clone());
        let pass = move |tx: &mut dyn Tx| -> CoreResult<Pass<R>> {
            let plan = prepare(&mut ReadOnly(tx))?;
            let check = plan.check;
            let settings = crate::tenancy::settings_of(tx, check.org.as_str(), check.what)?;
            let (event, org) = (check.draft.clone(), check.org.clone());
            match check.run(&a, &settings) {
                Ok(()) => {}
                Err(CoreError::Denied(d)) if mode == Mode::Write => {
                    let public = d.public_error();
                    svc.record_denial(tx, &ctx2, &a, d.draft)?;
                    return Ok(Pass::Refused(public));
                }
                Err(e) => return Err(e),
            }
            let mut ops = Ops {
                tx: Counting { inner: tx, writes: 0 },
                ctx: &ctx2,
                actor: &a,
                settings,
                org,
                event,
                recorded: 0,
            };
            let out = apply(&mut ops, plan.target)?;
            if mode == Mode::Write && ops.tx.writes > 0 && ops.recorded == 0 {
                return Err(CoreError::Internal(
                    "an operation changed the store without recording an event".into(),
                ));
            }
            Ok(Pass::Done(out))
        };
        let r = match mode {
            Mode::Write => self.inner.store.write(pass).await,
            Mode::Read => self.inner.store.read(pass).await,
        };
        match self.settle(ctx, actor, r).await? {
            Pass::Done(out) => Ok(out),
            Pass::Refused(e) => Err(e),
        }
    }

    /// Runs a list over organization `org`: the caller needs `perm` somewhere in it (a refusal
    /// is recorded as `action`); `apply` gets the workspaces it may read (`None`: all), and
    /// `asked`, a workspace filter, must be one of them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn operate_list<R, A>(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        mode: Mode,
        org: &str,
        asked: Option<String>,
        (action, perm): (Action, Permission),
        apply: A,
    ) -> CoreResult<R>
    where
        R: Send + 'static,
        A: FnOnce(&mut Ops<'_>, Option<Vec<String>>) -> CoreResult<R> + Send + 'static,
    {
        let org = OrgId::parse(org).map_err(|_| CoreError::NotFound { what: "organization" })?;
        let draft = Draft::new(action, "org", org.as_str(), org.as_str());
        let check = Check::new(Scope::OrgShared(&org), perm, "organization", draft);
        self.operate(
            ctx,
            actor,
            mode,
            move |_| Ok(Plan::new((), check)),
            move |ops, ()| {
                let visible = ops.visible_workspaces(asked.as_deref(), action, perm)?;
                apply(ops, visible)
            },
        )
        .await
    }

    /// Appends a refusal and the denial-spike alert it may raise, in `tx`.
    pub(crate) fn record_denial(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestCtx,
        actor: &Actor,
        draft: Draft,
    ) -> CoreResult<()> {
        let pid = actor.principal_id.to_string();
        let alert = self.alert(alerts::Signal::Denial, &pid, draft.org_id.as_deref(), "principal", &pid);
        append_all(tx, ctx, &ActorRef::from(actor), &draft, alert)
    }
}

#[cfg(test)]
mod tests;
