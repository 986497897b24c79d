//! Connections and pipelines: the seed's layering (pipelines → connections → credentials),
//! the attachment rules, usage, and detach-all for incident response.
//!
//! Attachment rules, checked on create, on attach and (permission only) on detach: the
//! credential must be visible from the connection's workspace (its own workspace or
//! organization-wide), active, of a type and variant that fit the connector kind, and of the
//! same environment — unless the organization allows overrides, in which case a written
//! `override_reason` is required, audited, and listed in the overrides report.

mod attach;
mod pipelines;
mod types;
mod usage;

pub use types::*;

use attach::{admit_destinations, check_attachment};
use usage::usage_of;

use crate::actions::Action;
use credvault_domain::problems::Code;
use credvault_domain::states::CredentialStatus;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use credvault_domain::connectors::{ConnectorKind, naming_warning, validate_config};
use credvault_domain::credential_types::CredentialType;
use credvault_domain::roles::Permission;
use credvault_domain::time::{now_micros, to_rfc3339};
use credvault_domain::{ConnectionId, CredentialId, OrgId, PipelineId, WorkspaceId, check_environment, check_name};
use credvault_store::{Row, StoreError, Tx, Value};

use crate::Service;
use crate::audit::Draft;
use crate::auth::Scope;
use crate::context::{Actor, RequestCtx};
use crate::credentials::{Access, CredRow, credential_plan, load_cred};
use crate::destinations::{Dns, Holder, admit, current_public_fields, holders, of_connection, save_additions};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode, Plan};
use crate::settings::OrgSettings;
use crate::tenancy::{page, workspace_org};
use crate::views::{Page, decode_cursor, ts};

pub(crate) const CONN_COLS: &str = "c.id, c.name, c.org_id, c.workspace_id, c.environment, c.kind, c.config, c.credential_id, \
     c.override_reason, c.attached_at, c.attached_by, c.description, c.created_at, c.created_by, c.updated_at, \
     c.last_used_at, c.seq, c.last_test_at, c.last_test_ok, c.last_test_latency_ms, c.last_test_error_code, \
     c.last_test_version";

/// A connection row.
pub(crate) struct ConnRow {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub workspace_id: String,
    pub environment: String,
    pub kind: String,
    pub config: String,
    pub credential_id: Option<String>,
    pub override_reason: Option<String>,
    attached_at: Option<i64>,
    attached_by: Option<String>,
    description: Option<String>,
    created_at: i64,
    created_by: String,
    updated_at: i64,
    pub last_used_at: Option<i64>,
    last_test: Option<LastTest>,
}

impl ConnRow {
    pub(crate) fn from_row(r: &Row) -> CoreResult<ConnRow> {
        Ok(ConnRow {
            id: r.text(0)?,
            name: r.text(1)?,
            org_id: r.text(2)?,
            workspace_id: r.text(3)?,
            environment: r.text(4)?,
            kind: r.text(5)?,
            config: r.text(6)?,
            credential_id: r.opt_text(7)?,
            override_reason: r.opt_text(8)?,
            attached_at: r.opt_int(9)?,
            attached_by: r.opt_text(10)?,
            description: r.opt_text(11)?,
            created_at: r.int(12)?,
            created_by: r.text(13)?,
            updated_at: r.int(14)?,
            last_used_at: r.opt_int(15)?,
            last_test: match r.opt_int(17)? {
                Some(at) => Some(LastTest {
                    at: to_rfc3339(at),
                    ok: r.opt_int(18)?.unwrap_or(0) != 0,
                    latency_ms: r.opt_int(19)?.unwrap_or(0),
                    error_code: r.opt_text(20)?,
                    version: r.opt_int(21)?,
                }),
                None => None,
            },
        })
    }

    pub(crate) fn org(&self) -> OrgId {
        OrgId::from_trusted(self.org_id.clone())
    }

    pub(crate) fn ws(&self) -> WorkspaceId {
        WorkspaceId::from_trusted(self.workspace_id.clone())
    }

    pub(crate) fn draft(&self, action: Action) -> Draft {
        Draft::new(action, "connection", self.id.as_str(), self.org_id.as_str())
            .workspace(Some(self.workspace_id.as_str()))
    }

    fn view(&self) -> CoreResult<ConnectionView> {
        let mut warnings: Vec<String> = naming_warning(&self.name, &self.environment).into_iter().collect();
        if let Some(r) = &self.override_reason {
            warnings.push(format!("environment override: {r}"));
        }
        Ok(ConnectionView {
            id: self.id.clone(),
            name: self.name.clone(),
            org_id: self.org_id.clone(),
            workspace_id: self.workspace_id.clone(),
            environment: self.environment.clone(),
            kind: self.kind.clone(),
            config: serde_json::from_str(&self.config)?,
            credential_id: self.credential_id.clone(),
            override_reason: self.override_reason.clone(),
            attached_at: ts(self.attached_at),
            attached_by: self.attached_by.clone(),
            description: self.description.clone(),
            warnings,
            created_at: to_rfc3339(self.created_at),
            created_by: self.created_by.clone(),
            updated_at: to_rfc3339(self.updated_at),
            last_used_at: ts(self.last_used_at),
            last_test: self.last_test.clone(),
        })
    }
}

/// Loads a connection (row-locked on PostgreSQL when `lock`).
pub(crate) fn load_conn(tx: &mut dyn Tx, id: &str, lock: bool) -> CoreResult<ConnRow> {
    if ConnectionId::parse(id).is_err() {
        return Err(CoreError::NotFound { what: "connection" });
    }
    let sql = format!(
        "SELECT {CONN_COLS} FROM connections c WHERE c.id = $1{}",
        if lock { tx.for_update() } else { "" }
    );
    match tx.query_opt(&sql, &[id.into()])? {
        Some(r) => ConnRow::from_row(&r),
        None => Err(CoreError::NotFound { what: "connection" }),
    }
}

/// How many connections reference a credential.
pub(crate) fn attached_count(tx: &mut dyn Tx, credential_id: &str) -> CoreResult<i64> {
    Ok(tx
        .query_one(
            "SELECT COUNT(*) FROM connections WHERE credential_id = $1",
            &[credential_id.into()],
        )?
        .int(0)?)
}

fn check_description(d: Option<&str>) -> CoreResult<()> {
    match d {
        Some(d) if d.len() > 4096 => Err(CoreError::invalid(
            "description",
            Code::TooLong,
            "must be at most 4096 bytes",
        )),
        _ => Ok(()),
    }
}

fn parse_kind(kind: &str) -> CoreResult<ConnectorKind> {
    ConnectorKind::parse(kind).ok_or_else(|| {
        let names: Vec<&str> = ConnectorKind::ALL.iter().map(|k| k.as_str()).collect();
        CoreError::invalid(
            "kind",
            Code::UnknownKind,
            format!("must be one of: {}", names.join(", ")),
        )
    })
}

fn name_conflict(e: StoreError, what: &str) -> CoreError {
    match e {
        StoreError::Unique(_) => CoreError::conflict(
            Code::NameTaken,
            format!("a {what} with this name already exists in this workspace"),
        ),
        other => CoreError::Store(other),
    }
}

impl Service {
    /// Creates a connection, optionally attaching a credential under the attachment rules.
    pub async fn create_connection(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreateConnection,
    ) -> CoreResult<ConnectionView> {
        check_name(&req.name).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        check_environment(&req.environment)
            .map_err(|m| CoreError::invalid("environment", Code::InvalidEnvironment, m))?;
        check_description(req.description.as_deref())?;
        let kind = parse_kind(&req.kind)?;
        let config = validate_config(kind, req.config.clone()).map_err(CoreError::InvalidFields)?;
        let id = ConnectionId::generate();
        self.with_dns(|dns| {
            let (req, config, id) = (req.clone(), config.clone(), id.clone());
            self.create_connection_once(ctx, actor, req, kind, config, id, dns)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_connection_once(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreateConnection,
        kind: ConnectorKind,
        config: Json,
        id: ConnectionId,
        dns: Dns,
    ) -> CoreResult<ConnectionView> {
        let ws_in = req.workspace_id.clone();
        let prepare = {
            let id = id.clone();
            move |tx: &mut dyn Tx| {
                let ws = ws_in;
                let org = workspace_org(tx, ws.as_str())?.ok_or(CoreError::NotFound { what: "workspace" })?;
                let draft = || {
                    Draft::new(Action::ConnectionCreate, "connection", id.as_str(), org.as_str())
                        .workspace(Some(ws.as_str()))
                };
                let check = Check::new(
                    Scope::Workspace(&org, &ws),
                    Permission::CredentialAttach,
                    "workspace",
                    draft(),
                );
                Ok(Plan::new((org, ws), check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, ws)| {
            let settings = ops.settings().clone();
            let a = ops.actor().clone();
            let mut override_reason = None;
            let mut hs = Vec::new();
            if let Some(cid) = &req.credential_id {
                let cred = load_cred(ops.tx(), cid.as_str(), true).map_err(|e| with_field(e, "credential_id"))?;
                override_reason = check_attachment(
                    org.as_str(),
                    ws.as_str(),
                    &req.environment,
                    kind,
                    &config,
                    &cred,
                    &settings,
                    req.override_reason.as_deref(),
                ).map_err(|e| with_field(e, "credential_id"))?;
                let event = ops.event();
                hs = admit_destinations(ops.tx(), &a, &settings, cred, kind.as_str(), &config, &dns, || {
                    event.clone().details(serde_json::json!({"name": req.name, "kind": kind.as_str(), "credential_id": cid}))
                })?;
            }
            let now = now_micros();
            let by = a.principal_id.as_str();
            let attached = req.credential_id.as_ref().map(|_| now);
            ops.tx().execute(
                "INSERT INTO connections (id, org_id, workspace_id, name, environment, kind, config, credential_id, override_reason, \
                 attached_at, attached_by, description, created_at, created_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $13)",
                &[
                    id.as_str().into(),
                    org.as_str().into(),
                    ws.as_str().into(),
                    req.name.as_str().into(),
                    req.environment.as_str().into(),
                    kind.as_str().into(),
                    serde_json::to_string(&config)?.into(),
                    req.credential_id.as_ref().map(|c| c.as_str()).into(),
                    override_reason.clone().into(),
                    attached.into(),
                    attached.map(|_| by).into(),
                    req.description.clone().into(),
                    now.into(),
                    by.into(),
                ],
            )
            .map_err(|e| name_conflict(e, "connection"))?;
            let allowed = save_additions(ops, &hs, id.as_str())?;
            ops.record(ops.event().details(serde_json::json!({
                    "name": req.name, "kind": kind.as_str(), "environment": req.environment, "config": config,
                    "credential_id": req.credential_id, "override_reason": override_reason,
                    "destinations_allowed": allowed,
                })))?;
            if let Some(cid) = &req.credential_id {
                ops.record(Draft::new(Action::ConnectionAttach, "connection", id.as_str(), org.as_str())
                        .workspace(Some(ws.as_str()))
                        .details(serde_json::json!({"credential_id": cid, "override_reason": override_reason})))?;
            }
            load_conn(ops.tx(), id.as_str(), false)?.view()
        })
        .await
    }

    /// One connection.
    pub async fn get_connection(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<ConnectionView> {
        let id = id.to_owned();
        let prepare = connection_plan(&id, false, Permission::MetadataRead, Action::ConnectionRead);
        self.operate(ctx, actor, Mode::Read, prepare, move |_, c| c.view())
            .await
    }

    /// Connections the caller may see.
    pub async fn list_connections(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        f: ConnectionFilter,
    ) -> CoreResult<Page<ConnectionView>> {
        let after = decode_cursor(f.cursor.as_deref())?;
        let limit = self.page_limit(f.limit);
        if let Some(k) = &f.kind {
            parse_kind(k)?;
        }
        let org = f.org_id.clone().unwrap_or_else(|| actor.org_id.to_string());
        let (asked, what) = (
            f.workspace_id.clone(),
            (Action::ConnectionRead, Permission::MetadataRead),
        );
        self.operate_list(
            ctx,
            actor,
            Mode::Read,
            &org.clone(),
            asked,
            what,
            move |ops, visible| {
                let tx = ops.tx();
                let mut sql = format!("SELECT {CONN_COLS} FROM connections c WHERE c.org_id = $1 AND c.seq > $2");
                let mut params: Vec<Value> = vec![org.as_str().into(), after.into()];
                push_in(&mut sql, &mut params, "c.workspace_id", visible.as_deref());
                for (col, v) in [
                    ("c.workspace_id", &f.workspace_id),
                    ("c.kind", &f.kind),
                    ("c.environment", &f.environment),
                    ("c.credential_id", &f.credential_id),
                ] {
                    if let Some(v) = v {
                        params.push(v.as_str().into());
                        sql.push_str(&format!(" AND {col} = ${}", params.len()));
                    }
                }
                params.push((limit as i64 + 1).into());
                sql.push_str(&format!(" ORDER BY c.seq LIMIT ${}", params.len()));
                let rows = tx.query(&sql, &params)?;
                page(rows, limit, 16, |r| ConnRow::from_row(r)?.view())
            },
        )
        .await
    }

    /// Changes a connection's name, configuration or description.
    pub async fn patch_connection(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        p: PatchConnection,
    ) -> CoreResult<ConnectionView> {
        if let Some(n) = &p.name {
            check_name(n).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        }
        check_description(p.description.as_deref())?;
        self.with_dns(|dns| self.patch_connection_once(ctx, actor, id, p.clone(), dns))
            .await
    }

    async fn patch_connection_once(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        p: PatchConnection,
        dns: Dns,
    ) -> CoreResult<ConnectionView> {
        let id = id.to_owned();
        let prepare = connection_plan(&id, true, Permission::CredentialAttach, Action::ConnectionUpdate);
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            let settings = ops.settings().clone();
            let a = ops.actor().clone();
            let mut hs = Vec::new();
            let now = now_micros();
            let mut changed = Vec::new();
            if let Some(n) = &p.name {
                ops.tx()
                    .execute(
                        "UPDATE connections SET name = $1 WHERE id = $2",
                        &[n.as_str().into(), id.as_str().into()],
                    )
                    .map_err(|e| name_conflict(e, "connection"))?;
                changed.push("name");
            }
            if let Some(cfg) = &p.config {
                let kind = parse_kind(&c.kind)?;
                let cfg = validate_config(kind, cfg.clone()).map_err(CoreError::InvalidFields)?;
                // A new destination of an attached connection must be one its credential
                // allows (or is widened to, by someone who may change the credential).
                if let Some(cid) = &c.credential_id {
                    let cred = load_cred(ops.tx(), cid, true)?;
                    // A new authentication must still fit the attached credential.
                    attach::fits(kind, &cfg, &cred).map_err(|e| match e {
                        CoreError::Invalid { code, message, .. } => CoreError::Invalid {
                            field: "config.auth".into(),
                            code,
                            message,
                        },
                        other => other,
                    })?;
                    hs = admit_destinations(ops.tx(), &a, &settings, cred, &c.kind, &cfg, &dns, || {
                        c.draft(Action::ConnectionUpdate)
                            .details(serde_json::json!({"changed": ["config"], "credential_id": cid}))
                    })?;
                }
                ops.tx().execute(
                    "UPDATE connections SET config = $1 WHERE id = $2",
                    &[serde_json::to_string(&cfg)?.into(), id.as_str().into()],
                )?;
                changed.push("config");
            }
            if let Some(d) = &p.description {
                ops.tx().execute(
                    "UPDATE connections SET description = $1 WHERE id = $2",
                    &[d.as_str().into(), id.as_str().into()],
                )?;
                changed.push("description");
            }
            ops.tx().execute(
                "UPDATE connections SET updated_at = $1 WHERE id = $2",
                &[now.into(), id.as_str().into()],
            )?;
            let allowed = save_additions(ops, &hs, &id)?;
            ops.record(c.draft(Action::ConnectionUpdate).details(
                serde_json::json!({"changed": changed, "config": p.config, "destinations_allowed": allowed}),
            ))?;
            load_conn(ops.tx(), &id, false)?.view()
        })
        .await
    }

    /// Deletes a connection that no pipeline references.
    pub async fn delete_connection(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
    ) -> CoreResult<ConnectionView> {
        let id = id.to_owned();
        let prepare = connection_plan(&id, true, Permission::CredentialAttach, Action::ConnectionDelete);
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            let users = ops.tx().query(
                "SELECT p.name FROM pipelines p JOIN pipeline_connections pc ON pc.pipeline_id = p.id WHERE pc.connection_id = $1 ORDER BY p.seq LIMIT 20",
                &[id.as_str().into()],
            )?;
            if !users.is_empty() {
                let names = users.iter().map(|r| r.text(0)).collect::<Result<Vec<_>, _>>()?;
                return Err(CoreError::conflict(Code::ConnectionInUse, format!("pipelines use this connection: {}", names.join(", "))));
            }
            let view = c.view()?;
            ops.tx().execute("DELETE FROM connections WHERE id = $1", &[id.as_str().into()])?;
            ops.record(c.draft(Action::ConnectionDelete).details(serde_json::json!({"name": c.name, "credential_id": c.credential_id})))?;
            Ok(view)
        })
        .await
    }
}

/// `prepare` of an operation on one connection: loads it (`lock`ed on PostgreSQL) and declares
/// `perm` in its workspace, the event `action`.
pub(crate) fn connection_plan(
    id: &str,
    lock: bool,
    perm: Permission,
    action: Action,
) -> impl FnOnce(&mut dyn Tx) -> CoreResult<Plan<ConnRow>> + Send + 'static {
    let id = id.to_owned();
    move |tx| {
        let c = load_conn(tx, &id, lock)?;
        let (org, ws) = (c.org(), c.ws());
        let check = Check::new(Scope::Workspace(&org, &ws), perm, "connection", c.draft(action));
        Ok(Plan::new(c, check))
    }
}

/// Names the request field of a "no such credential" answer.
fn with_field(e: CoreError, field: &str) -> CoreError {
    match e {
        CoreError::NotFound { what } => CoreError::Invalid {
            field: field.to_owned(),
            code: Code::NotFound,
            message: format!("no such {what} visible from this workspace"),
        },
        other => other,
    }
}

/// Appends `AND col IN (…)` for a visibility list (`None`: no restriction).
pub(crate) fn push_in(sql: &mut String, params: &mut Vec<Value>, col: &str, list: Option<&[String]>) {
    let Some(list) = list else { return };
    if list.is_empty() {
        sql.push_str(" AND 1 = 0");
        return;
    }
    let mut marks = Vec::with_capacity(list.len());
    for w in list {
        params.push(w.as_str().into());
        marks.push(format!("${}", params.len()));
    }
    sql.push_str(&format!(" AND {col} IN ({})", marks.join(", ")));
}
