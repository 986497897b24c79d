//! Organizations, workspaces, principals, role bindings and tokens.

mod principals;
mod tokens;

use crate::actions::Action;
use credvault_domain::problems::Code;
use std::sync::Arc;

use credvault_crypto::generate_token;
use credvault_domain::roles::{Permission, Role};
use credvault_domain::time::{now_micros, parse_rfc3339, to_rfc3339};
use credvault_domain::{BindingId, OrgId, PrincipalId, TokenId, WorkspaceId, check_name};
use credvault_store::{Row, StoreError, Tx, Value};

use crate::Service;
use crate::audit::{self, ActorRef, Draft};
use crate::auth::Scope;
use crate::context::{Actor, RequestCtx};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode, Plan};
use crate::settings::{OrgSettings, SettingsPatch};
use crate::views::*;

fn name_taken(e: CoreError, what: &str) -> CoreError {
    match e {
        CoreError::Store(StoreError::Unique(_)) => CoreError::conflict(
            Code::NameTaken,
            format!("a {what} with this name already exists in this scope"),
        ),
        other => other,
    }
}

fn check_name_field(field: &str, name: &str) -> CoreResult<()> {
    check_name(name).map_err(|m| CoreError::invalid(field, Code::InvalidName, m))
}

pub(crate) fn settings_of(tx: &mut dyn Tx, org_id: &str, what: &'static str) -> CoreResult<OrgSettings> {
    OrgSettings::load(tx, org_id)?.ok_or(CoreError::NotFound { what })
}

fn org_view(r: &Row) -> CoreResult<OrgView> {
    Ok(OrgView {
        id: r.text(0)?,
        name: r.text(1)?,
        created_at: to_rfc3339(r.int(2)?),
    })
}

fn ws_view(r: &Row) -> CoreResult<WorkspaceView> {
    Ok(WorkspaceView {
        id: r.text(0)?,
        org_id: r.text(1)?,
        name: r.text(2)?,
        created_at: to_rfc3339(r.int(3)?),
    })
}

const PRINCIPAL_COLS: &str = "id, org_id, kind, name, instance_admin, disabled, created_at";
fn principal_view(r: &Row) -> CoreResult<PrincipalView> {
    Ok(PrincipalView {
        id: r.text(0)?,
        org_id: r.text(1)?,
        kind: r.text(2)?,
        name: r.text(3)?,
        instance_admin: r.bool(4)?,
        disabled: r.bool(5)?,
        created_at: to_rfc3339(r.int(6)?),
        bindings: None,
    })
}

const BINDING_COLS: &str = "id, principal_id, role, org_id, workspace_id, created_at";
fn binding_view(r: &Row) -> CoreResult<RoleBindingView> {
    Ok(RoleBindingView {
        id: r.text(0)?,
        principal_id: r.text(1)?,
        role: r.text(2)?,
        org_id: r.text(3)?,
        workspace_id: r.opt_text(4)?,
        created_at: to_rfc3339(r.int(5)?),
    })
}

/// A principal's role bindings, oldest first.
fn bindings_of(tx: &mut dyn Tx, principal: &str) -> CoreResult<Vec<RoleBindingView>> {
    let rows = tx.query(
        &format!("SELECT {BINDING_COLS} FROM role_bindings WHERE principal_id = $1 ORDER BY seq"),
        &[principal.into()],
    )?;
    rows.iter().map(binding_view).collect()
}

const TOKEN_COLS: &str = "id, principal_id, name, created_at, expires_at, revoked_at, seq";
fn token_view(r: &Row) -> CoreResult<TokenView> {
    Ok(TokenView {
        id: r.text(0)?,
        principal_id: r.text(1)?,
        name: r.opt_text(2)?,
        created_at: to_rfc3339(r.int(3)?),
        expires_at: ts(r.opt_int(4)?),
        revoked_at: ts(r.opt_int(5)?),
    })
}

/// Inserts an organization with its default settings and its audit chain.
pub(crate) fn insert_org(tx: &mut dyn Tx, id: &OrgId, name: &str, by: Option<&str>) -> CoreResult<i64> {
    let now = now_micros();
    tx.execute(
        "INSERT INTO orgs (id, name, settings, created_at, created_by) VALUES ($1, $2, $3, $4, $5)",
        &[
            id.as_str().into(),
            name.into(),
            serde_json::to_string(&OrgSettings::default())?.into(),
            now.into(),
            by.into(),
        ],
    )?;
    audit::create_chain(tx, id.as_str())?;
    audit::open_shards(tx, id.as_str())?;
    Ok(now)
}

/// Looks up a workspace's organization.
pub(crate) fn workspace_org(tx: &mut dyn Tx, ws: &str) -> CoreResult<Option<OrgId>> {
    Ok(tx
        .query_opt("SELECT org_id FROM workspaces WHERE id = $1", &[ws.into()])?
        .map(|r| r.text(0))
        .transpose()?
        .map(OrgId::from_trusted))
}

/// Looks up a principal's organization.
fn principal_org(tx: &mut dyn Tx, p: &str) -> CoreResult<Option<OrgId>> {
    Ok(tx
        .query_opt("SELECT org_id FROM principals WHERE id = $1", &[p.into()])?
        .map(|r| r.text(0))
        .transpose()?
        .map(OrgId::from_trusted))
}

impl Service {
    /// The caller itself, with its bindings.
    pub async fn whoami(&self, actor: &Arc<Actor>) -> CoreResult<PrincipalView> {
        let id = actor.principal_id.to_string();
        self.inner
            .store
            .read(move |tx: &mut dyn Tx| -> CoreResult<PrincipalView> {
                let r = tx.query_one(
                    &format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE id = $1"),
                    &[id.as_str().into()],
                )?;
                let mut v = principal_view(&r)?;
                v.bindings = Some(bindings_of(tx, &id)?);
                Ok(v)
            })
            .await
    }

    /// Creates an organization (instance admins only).
    /// The health of every audit sink and the events parked for it (instance admins only:
    /// errors may name sink URLs).
    pub async fn audit_sinks(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
    ) -> CoreResult<serde_json::Map<String, serde_json::Value>> {
        if !actor.instance_admin {
            let draft = Draft::new(Action::AuditSinksRead, "instance", "", actor.org_id.as_str())
                .outcome(crate::audit::Outcome::Denied);
            let denial = crate::error::Denial {
                draft,
                hidden: None,
                permission: Permission::OrgAdmin,
            };
            return self.settle(ctx, actor, Err(CoreError::Denied(Box::new(denial)))).await;
        }
        let parked = self
            .inner
            .store
            .read(|tx: &mut dyn credvault_store::Tx| crate::forward::dead_letters(tx, 50))
            .await?;
        let mut out = serde_json::Map::new();
        for (name, health) in self.audit_gate().snapshot() {
            let mut v = serde_json::to_value(&health)?;
            v["parked"] = serde_json::Value::Array(
                parked
                    .iter()
                    .filter(|d| d.0 == name)
                    .map(|d| serde_json::json!({"seq": d.1, "error": d.2, "parked_at": credvault_domain::time::to_rfc3339(d.3)}))
                    .collect(),
            );
            out.insert(name, v);
        }
        Ok(out)
    }

    pub async fn create_org(&self, ctx: &RequestCtx, actor: &Arc<Actor>, req: CreateOrg) -> CoreResult<OrgView> {
        check_name_field("name", &req.name)?;
        if !actor.instance_admin {
            let draft =
                Draft::new(Action::OrgCreate, "org", "", actor.org_id.as_str()).outcome(crate::audit::Outcome::Denied);
            let denial = crate::error::Denial {
                draft,
                hidden: None,
                permission: Permission::OrgAdmin,
            };
            return self.settle(ctx, actor, Err(CoreError::Denied(Box::new(denial)))).await;
        }
        let (ctx2, a) = (ctx.clone(), actor.clone());
        self.write(ctx, actor, move |tx| {
            let id = OrgId::generate();
            let now = insert_org(tx, &id, &req.name, Some(a.principal_id.as_str()))
                .map_err(|e| name_taken(e, "organization"))?;
            audit::append(
                tx,
                &ctx2,
                &ActorRef::from(a.as_ref()),
                &Draft::new(Action::OrgCreate, "org", id.as_str(), id.as_str())
                    .details(serde_json::json!({"name": req.name})),
            )?;
            Ok(OrgView {
                id: id.to_string(),
                name: req.name,
                created_at: to_rfc3339(now),
            })
        })
        .await
    }

    /// Organizations the caller can see.
    pub async fn list_orgs(&self, actor: &Arc<Actor>) -> CoreResult<Page<OrgView>> {
        let a = actor.clone();
        self.inner
            .store
            .read(move |tx: &mut dyn Tx| -> CoreResult<Page<OrgView>> {
                let rows = if a.instance_admin {
                    tx.query("SELECT id, name, created_at FROM orgs ORDER BY seq", &[])?
                } else if a.bindings.is_empty() {
                    vec![]
                } else {
                    tx.query(
                        "SELECT id, name, created_at FROM orgs WHERE id = $1",
                        &[a.org_id.as_str().into()],
                    )?
                };
                Ok(Page {
                    items: rows.iter().map(org_view).collect::<CoreResult<_>>()?,
                    next_cursor: None,
                })
            })
            .await
    }

    /// One organization.
    pub async fn get_org(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<OrgView> {
        let (check, id) = (org_member(id, Action::OrgRead)?, id.to_owned());
        self.operate(
            ctx,
            actor,
            Mode::Read,
            move |_| Ok(Plan::new((), check)),
            move |ops, ()| {
                let r = ops.tx().query_one(
                    "SELECT id, name, created_at FROM orgs WHERE id = $1",
                    &[id.as_str().into()],
                )?;
                org_view(&r)
            },
        )
        .await
    }

    /// An organization's settings (any member may read them).
    pub async fn get_settings(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<OrgSettings> {
        let check = org_member(id, Action::OrgRead)?;
        self.operate(
            ctx,
            actor,
            Mode::Read,
            move |_| Ok(Plan::new((), check)),
            |ops, ()| Ok(ops.settings().clone()),
        )
        .await
    }

    /// Changes an organization's settings (admins).
    pub async fn patch_settings(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        patch: SettingsPatch,
    ) -> CoreResult<OrgSettings> {
        let org = OrgId::parse(id).map_err(|_| CoreError::NotFound { what: "organization" })?;
        let check = Check::new(
            Scope::Org(&org),
            Permission::OrgAdmin,
            "organization",
            Draft::new(Action::OrgSettingsUpdate, "org", org.as_str(), org.as_str()),
        );
        self.operate(
            ctx,
            actor,
            Mode::Write,
            move |_| Ok(Plan::new((), check)),
            move |ops, ()| {
                let mut settings = ops.settings().clone();
                let before = serde_json::to_value(&settings)?;
                settings.apply(patch)?;
                ops.tx().execute(
                    "UPDATE orgs SET settings = $1 WHERE id = $2",
                    &[serde_json::to_string(&settings)?.into(), org.as_str().into()],
                )?;
                let after = serde_json::to_value(&settings)?;
                ops.record(
                    ops.event()
                        .details(serde_json::json!({"before": before, "after": after})),
                )?;
                Ok(settings)
            },
        )
        .await
    }

    /// Creates a workspace (organization admins).
    pub async fn create_workspace(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreateWorkspace,
    ) -> CoreResult<WorkspaceView> {
        check_name_field("name", &req.name)?;
        let org_in = req.org_id.clone();
        let prepare = {
            move |_: &mut dyn Tx| {
                let org = org_in;
                let id = WorkspaceId::generate();
                let draft = || Draft::new(Action::WorkspaceCreate, "workspace", id.as_str(), org.as_str());
                let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "organization", draft());
                Ok(Plan::new((org, id), check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, id)| {
            let a = ops.actor().clone();
            let now = now_micros();
            ops.tx()
                .execute(
                    "INSERT INTO workspaces (id, org_id, name, created_at, created_by) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        id.as_str().into(),
                        org.as_str().into(),
                        req.name.as_str().into(),
                        now.into(),
                        a.principal_id.as_str().into(),
                    ],
                )
                .map_err(|e| name_taken(e.into(), "workspace"))?;
            ops.record(
                ops.event()
                    .workspace(Some(id.as_str()))
                    .details(serde_json::json!({"name": req.name})),
            )?;
            Ok(WorkspaceView {
                id: id.to_string(),
                org_id: org.to_string(),
                name: req.name,
                created_at: to_rfc3339(now),
            })
        })
        .await
    }

    /// Workspaces the caller can see in an organization.
    pub async fn list_workspaces(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        org_id: Option<&str>,
    ) -> CoreResult<Page<WorkspaceView>> {
        let org = org_id.map(str::to_owned).unwrap_or_else(|| actor.org_id.to_string());
        let check = org_member(&org, Action::WorkspaceRead)?;
        self.operate(
            ctx,
            actor,
            Mode::Read,
            move |_| Ok(Plan::new((), check)),
            move |ops, ()| {
                let a = ops.actor().clone();
                let tx = ops.tx();
                let rows = tx.query(
                    "SELECT id, org_id, name, created_at FROM workspaces WHERE org_id = $1 ORDER BY seq",
                    &[org.as_str().into()],
                )?;
                let all_visible = !a.org_roles().is_empty();
                let mut items = Vec::new();
                for r in &rows {
                    let v = ws_view(r)?;
                    if all_visible || !a.workspace_roles(&WorkspaceId::from_trusted(v.id.clone())).is_empty() {
                        items.push(v);
                    }
                }
                Ok(Page {
                    items,
                    next_cursor: None,
                })
            },
        )
        .await
    }

    /// One workspace.
    pub async fn get_workspace(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<WorkspaceView> {
        let id = id.to_owned();
        let prepare = move |tx: &mut dyn Tx| {
            let Some(r) = tx.query_opt(
                "SELECT id, org_id, name, created_at FROM workspaces WHERE id = $1",
                &[id.as_str().into()],
            )?
            else {
                return Err(CoreError::NotFound { what: "workspace" });
            };
            let v = ws_view(&r)?;
            let (org, ws) = (
                OrgId::from_trusted(v.org_id.clone()),
                WorkspaceId::from_trusted(v.id.clone()),
            );
            let draft = Draft::new(Action::WorkspaceRead, "workspace", id.as_str(), v.org_id.as_str())
                .workspace(Some(id.as_str()));
            let check = Check::member(Scope::Workspace(&org, &ws), "workspace", draft);
            Ok(Plan::new(v, check))
        };
        self.operate(ctx, actor, Mode::Read, prepare, |_, v| Ok(v)).await
    }
}

/// The check of an organization administrator's operation on organization `id`; the event
/// `action`.
fn org_admin(id: &str, action: Action) -> CoreResult<Check> {
    Check::org(id, Permission::OrgAdmin, action)
}

/// The check of what any member of organization `id` may read; the event `action`.
fn org_member(id: &str, action: Action) -> CoreResult<Check> {
    let org = OrgId::parse(id).map_err(|_| CoreError::NotFound { what: "organization" })?;
    let draft = Draft::new(action, "org", org.as_str(), org.as_str());
    Ok(Check::member(Scope::OrgShared(&org), "organization", draft))
}

/// Whether a principal is an instance admin (whose tokens only instance admins manage).
pub(crate) fn is_instance_admin(tx: &mut dyn Tx, principal: &str) -> CoreResult<bool> {
    Ok(
        match tx.query_opt(
            "SELECT instance_admin FROM principals WHERE id = $1",
            &[principal.into()],
        )? {
            Some(r) => r.bool(0)?,
            None => false,
        },
    )
}

/// A 403 denial recorded with `draft`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_token(
    tx: &mut dyn Tx,
    id: &TokenId,
    org: &OrgId,
    principal: &str,
    hash: &[u8; 32],
    name: Option<&str>,
    expires_at: Option<i64>,
    by: Option<&str>,
    now: i64,
) -> CoreResult<()> {
    tx.execute(
        "INSERT INTO tokens (id, org_id, principal_id, hash, name, created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            id.as_str().into(),
            org.as_str().into(),
            principal.into(),
            Value::Bytes(hash.to_vec()),
            name.into(),
            now.into(),
            by.into(),
            expires_at.into(),
        ],
    )?;
    Ok(())
}

/// Turns `limit + 1` rows into a page; `seq_col` is the column holding the row's position.
pub(crate) fn page<T>(
    rows: Vec<Row>,
    limit: usize,
    seq_col: usize,
    f: impl Fn(&Row) -> CoreResult<T>,
) -> CoreResult<Page<T>> {
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(limit.min(rows.len()));
    let mut last = None;
    for r in rows.iter().take(limit) {
        items.push(f(r)?);
        last = Some(r.int(seq_col)?);
    }
    Ok(Page {
        items,
        next_cursor: if more { last.map(encode_cursor) } else { None },
    })
}

/// Used by bootstrap.
pub(crate) fn insert_principal(
    tx: &mut dyn Tx,
    id: &PrincipalId,
    org: &OrgId,
    name: &str,
    instance_admin: bool,
    now: i64,
) -> CoreResult<()> {
    tx.execute(
        "INSERT INTO principals (id, org_id, kind, name, instance_admin, disabled, created_at, created_by) VALUES ($1, $2, $3, $4, $5, 0, $6, NULL)",
        &[id.as_str().into(), org.as_str().into(), id.kind().as_str().into(), name.into(), instance_admin.into(), now.into()],
    )?;
    Ok(())
}

/// Used by bootstrap.
pub(crate) fn insert_binding(
    tx: &mut dyn Tx,
    org: &OrgId,
    principal: &PrincipalId,
    role: Role,
    now: i64,
) -> CoreResult<()> {
    tx.execute(
        "INSERT INTO role_bindings (id, org_id, principal_id, role, workspace_id, scope_key, created_at, created_by) VALUES ($1, $2, $3, $4, NULL, $2, $5, NULL)",
        &[BindingId::generate().as_str().into(), org.as_str().into(), principal.as_str().into(), role.as_str().into(), now.into()],
    )?;
    Ok(())
}
