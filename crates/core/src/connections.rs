//! Connections and pipelines: the seed's layering (pipelines → connections → credentials),
//! the attachment rules, usage, and detach-all for incident response.
//!
//! Attachment rules, checked on create, on attach and (permission only) on detach: the
//! credential must be visible from the connection's workspace (its own workspace or
//! organization-wide), active, of a type and variant that fit the connector kind, and of the
//! same environment — unless the organization allows overrides, in which case a written
//! `override_reason` is required, audited, and listed in the overrides report.

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
use crate::audit::{self, ActorRef, Draft};
use crate::auth::{Scope, authorize};
use crate::context::{Actor, RequestCtx};
use crate::credentials::{CredRow, load_cred, write_scope};
use crate::destinations::{Dns, Holder, admit, current_public_fields, holders, of_connection, save_additions};
use crate::error::{CoreError, CoreResult};
use crate::settings::OrgSettings;
use crate::tenancy::{page, settings_of, workspace_org};
use crate::views::{Page, decode_cursor, ts};

/// A connection.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionView {
    /// `conn_…`
    pub id: String,
    /// Unique within the workspace.
    pub name: String,
    /// The organization.
    pub org_id: String,
    /// The workspace.
    pub workspace_id: String,
    /// Environment tag.
    pub environment: String,
    /// Connector kind.
    pub kind: String,
    /// Non-secret configuration.
    pub config: Json,
    /// The attached credential, or `null`.
    pub credential_id: Option<String>,
    /// Why an environment mismatch was allowed, if it was.
    pub override_reason: Option<String>,
    /// When the credential was attached.
    pub attached_at: Option<String>,
    /// Who attached it.
    pub attached_by: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Review hints (naming convention, environment override).
    pub warnings: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Principal ID.
    pub created_by: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Last resolve, RFC 3339.
    pub last_used_at: Option<String>,
    /// The last Test connection, if any.
    pub last_test: Option<LastTest>,
}

/// The last Test connection of a connection.
#[derive(Clone, Debug, Serialize)]
pub struct LastTest {
    /// RFC 3339.
    pub at: String,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took.
    pub latency_ms: i64,
    /// The error code when it failed.
    pub error_code: Option<String>,
    /// The credential version tested.
    pub version: Option<i64>,
}

/// A pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineView {
    /// `pl_…`
    pub id: String,
    /// Unique within the workspace.
    pub name: String,
    /// The organization.
    pub org_id: String,
    /// The workspace.
    pub workspace_id: String,
    /// Connections it uses.
    pub connection_ids: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Principal ID.
    pub created_by: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Last resolve for this pipeline, RFC 3339.
    pub last_used_at: Option<String>,
}

/// Request: create a connection.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Unique within the workspace.
    pub name: String,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Environment tag.
    pub environment: String,
    /// Connector kind.
    pub kind: String,
    /// Non-secret configuration.
    #[serde(default)]
    pub config: Json,
    /// A credential to attach at once.
    #[serde(default)]
    pub credential_id: Option<CredentialId>,
    /// Needed when the credential's environment differs and the policy allows overrides.
    #[serde(default)]
    pub override_reason: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// Request: change a connection.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchConnection {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New configuration (replaces the old one; validated).
    #[serde(default)]
    pub config: Option<Json>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Request: attach a credential.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachCredential {
    /// The credential.
    pub credential_id: CredentialId,
    /// Needed for an allowed environment mismatch.
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// Request: create a pipeline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePipeline {
    /// Unique within the workspace.
    pub name: String,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Connections of the same workspace.
    #[serde(default)]
    pub connection_ids: Vec<ConnectionId>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// Request: change a pipeline.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchPipeline {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// Replaces the connection list.
    #[serde(default)]
    pub connection_ids: Option<Vec<ConnectionId>>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Filters of the connection list.
#[derive(Clone, Debug, Default)]
pub struct ConnectionFilter {
    /// Organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only connections using this credential.
    pub credential_id: Option<String>,
    /// Cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

/// Filters of the pipeline list.
#[derive(Clone, Debug, Default)]
pub struct PipelineFilter {
    /// Organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Only pipelines using this connection.
    pub connection_id: Option<String>,
    /// Cursor.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
}

/// What uses a credential.
#[derive(Clone, Debug, Serialize)]
pub struct Usage {
    /// Connections that reference it (or, with `via_credential_id`, a credential whose AWS
    /// role chain starts from it).
    pub connections: Vec<UsageRef>,
    /// Pipelines that reference those connections.
    pub pipelines: Vec<UsageRef>,
    /// Credentials whose current version uses it as the source of an AWS role chain.
    pub chained_credentials: Vec<UsageRef>,
}

/// A reference in a usage listing.
#[derive(Clone, Debug, Serialize)]
pub struct UsageRef {
    /// ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Workspace.
    pub workspace_id: String,
    /// Environment (connections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The chain credential through which this uses the credential, if not directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_credential_id: Option<String>,
}

/// Result of detach-all.
#[derive(Clone, Debug, Serialize)]
pub struct DetachAll {
    /// Connections that lost the credential.
    pub detached: Vec<UsageRef>,
    /// Pipelines that depend on them (what breaks now).
    pub affected_pipelines: Vec<UsageRef>,
}

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

/// The attachment rules. Returns the override reason to store (if an allowed mismatch).
fn check_attachment(
    conn_org: &str,
    conn_ws: &str,
    conn_env: &str,
    kind: ConnectorKind,
    cred: &CredRow,
    settings: &OrgSettings,
    override_reason: Option<&str>,
) -> CoreResult<Option<String>> {
    let visible = cred.org_id == conn_org && cred.workspace_id.as_deref().is_none_or(|w| w == conn_ws);
    if !visible {
        // Same answer as for an unknown ID: nothing about other workspaces leaks.
        return Err(CoreError::NotFound { what: "credential" });
    }
    if cred.status != CredentialStatus::Active {
        return Err(CoreError::conflict(
            Code::CredentialNotActive,
            format!(
                "the credential is {}; only active credentials can be attached",
                cred.status
            ),
        ));
    }
    let ty = CredentialType::parse(&cred.ty).ok_or_else(|| CoreError::Internal(format!("stored type {}", cred.ty)))?;
    if !kind.fits(ty, cred.variant.as_deref()) {
        return Err(CoreError::invalid(
            "credential_id",
            Code::CredentialTypeMismatch,
            format!(
                "a {}{} credential does not fit a {} connection; it takes: {}",
                cred.ty,
                cred.variant.as_deref().map(|v| format!(" ({v})")).unwrap_or_default(),
                kind.as_str(),
                kind.accepts_text()
            ),
        ));
    }
    if cred.environment == conn_env {
        return Ok(None);
    }
    if !settings.allow_environment_override {
        return Err(CoreError::conflict(
            Code::EnvironmentMismatch,
            format!(
                "the credential is tagged `{}` but the connection is `{}`; this organization does not allow overrides",
                cred.environment, conn_env
            ),
        ));
    }
    match override_reason.map(str::trim).filter(|r| !r.is_empty()) {
        None => Err(CoreError::invalid(
            "override_reason",
            Code::OverrideReasonRequired,
            format!(
                "the credential is tagged `{}` but the connection is `{}`: give a written override_reason",
                cred.environment, conn_env
            ),
        )),
        Some(r) if r.len() > 1024 => Err(CoreError::invalid(
            "override_reason",
            Code::TooLong,
            "at most 1024 bytes",
        )),
        Some(r) => Ok(Some(r.to_owned())),
    }
}

/// Checks a connection's destinations against `cred` and the sources of its role chain
/// (locked: an owner's wiring widens their sets, trust on first use). See `destinations.rs`.
#[allow(clippy::too_many_arguments)]
fn admit_destinations(
    tx: &mut dyn Tx,
    actor: &Actor,
    settings: &OrgSettings,
    cred: CredRow,
    kind: &str,
    config: &Json,
    dns: &Dns,
    draft: impl Fn() -> Draft,
) -> CoreResult<Vec<Holder>> {
    let public = current_public_fields(tx, &cred)?;
    let mut hs = holders(tx, cred, &public, true)?;
    let dests = of_connection(kind, config)?;
    admit(actor, settings, &mut hs, &dests, dns, true, draft)?;
    Ok(hs)
}

/// What uses a credential, limited to `visible` workspaces (`None`: all).
fn usage_visible(tx: &mut dyn Tx, credential_id: &str, visible: Option<&[String]>) -> CoreResult<Usage> {
    let mut u = usage_with_chains(tx, credential_id)?;
    if let Some(v) = visible {
        u.connections.retain(|c| v.contains(&c.workspace_id));
        u.pipelines.retain(|p| v.contains(&p.workspace_id));
        // Organization-wide chain credentials (no workspace) are visible to every member.
        u.chained_credentials
            .retain(|c| c.workspace_id.is_empty() || v.contains(&c.workspace_id));
    }
    Ok(u)
}

fn usage_of(tx: &mut dyn Tx, credential_id: &str) -> CoreResult<Usage> {
    let rows = tx.query(
        "SELECT id, name, workspace_id, environment FROM connections WHERE credential_id = $1 ORDER BY seq",
        &[credential_id.into()],
    )?;
    let connections = rows
        .iter()
        .map(|r| {
            Ok(UsageRef {
                id: r.text(0)?,
                name: r.text(1)?,
                workspace_id: r.text(2)?,
                environment: Some(r.text(3)?),
                via_credential_id: None,
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    let rows = tx.query(
        "SELECT DISTINCT p.id, p.name, p.workspace_id, p.seq FROM pipelines p \
         JOIN pipeline_connections pc ON pc.pipeline_id = p.id \
         JOIN connections c ON c.id = pc.connection_id WHERE c.credential_id = $1 ORDER BY p.seq",
        &[credential_id.into()],
    )?;
    let pipelines = rows
        .iter()
        .map(|r| {
            Ok(UsageRef {
                id: r.text(0)?,
                name: r.text(1)?,
                workspace_id: r.text(2)?,
                environment: None,
                via_credential_id: None,
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    Ok(Usage {
        connections,
        pipelines,
        chained_credentials: Vec::new(),
    })
}

/// What uses a credential directly and through AWS role chains that start from it (usage,
/// the delete guard).
pub(crate) fn usage_with_chains(tx: &mut dyn Tx, credential_id: &str) -> CoreResult<Usage> {
    let mut u = usage_of(tx, credential_id)?;
    for user in crate::testing::chain_users(tx, credential_id)? {
        let c = load_cred(tx, &user, false)?;
        u.chained_credentials.push(UsageRef {
            id: c.id.clone(),
            name: c.name.clone(),
            workspace_id: c.workspace_id.clone().unwrap_or_default(),
            environment: Some(c.environment.clone()),
            via_credential_id: None,
        });
        let via = usage_of(tx, &user)?;
        for mut r in via.connections {
            r.via_credential_id = Some(user.clone());
            u.connections.push(r);
        }
        for mut r in via.pipelines {
            if !u.pipelines.iter().any(|p| p.id == r.id) {
                r.via_credential_id = Some(user.clone());
                u.pipelines.push(r);
            }
        }
    }
    Ok(u)
}

fn pipeline_connections(tx: &mut dyn Tx, pipeline_id: &str) -> CoreResult<Vec<String>> {
    tx.query(
        "SELECT pc.connection_id FROM pipeline_connections pc JOIN connections c ON c.id = pc.connection_id \
         WHERE pc.pipeline_id = $1 ORDER BY c.seq",
        &[pipeline_id.into()],
    )?
    .iter()
    .map(|r| Ok(r.text(0)?))
    .collect()
}

const PIPE_COLS: &str =
    "id, name, org_id, workspace_id, description, created_at, created_by, updated_at, last_used_at, seq";

fn pipeline_view(tx: &mut dyn Tx, r: &Row) -> CoreResult<PipelineView> {
    let id = r.text(0)?;
    let connection_ids = pipeline_connections(tx, &id)?;
    Ok(PipelineView {
        id,
        name: r.text(1)?,
        org_id: r.text(2)?,
        workspace_id: r.text(3)?,
        connection_ids,
        description: r.opt_text(4)?,
        created_at: to_rfc3339(r.int(5)?),
        created_by: r.text(6)?,
        updated_at: to_rfc3339(r.int(7)?),
        last_used_at: ts(r.opt_int(8)?),
    })
}

fn load_pipeline_row(tx: &mut dyn Tx, id: &str) -> CoreResult<Row> {
    if PipelineId::parse(id).is_err() {
        return Err(CoreError::NotFound { what: "pipeline" });
    }
    tx.query_opt(
        &format!("SELECT {PIPE_COLS} FROM pipelines WHERE id = $1"),
        &[id.into()],
    )?
    .ok_or(CoreError::NotFound { what: "pipeline" })
}

/// Every connection must exist in the pipeline's workspace.
fn check_pipeline_connections(tx: &mut dyn Tx, ws: &str, ids: &[ConnectionId]) -> CoreResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (i, c) in ids.iter().enumerate() {
        let found = tx.query_opt(
            "SELECT workspace_id FROM connections WHERE id = $1",
            &[c.as_str().into()],
        )?;
        match found {
            Some(r) if r.text(0)? == ws => {}
            _ => {
                return Err(CoreError::invalid(
                    format!("connection_ids[{i}]"),
                    Code::ConnectionNotFound,
                    "no such connection in the pipeline's workspace",
                ));
            }
        }
        if !out.iter().any(|o| o == c.as_str()) {
            out.push(c.to_string());
        }
    }
    if out.len() > 500 {
        return Err(CoreError::invalid(
            "connection_ids",
            Code::TooMany,
            "at most 500 connections per pipeline",
        ));
    }
    Ok(out)
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
        let (a, ctx2) = (actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let ws = req.workspace_id;
            let org = workspace_org(tx, ws.as_str())?.ok_or(CoreError::NotFound { what: "workspace" })?;
            let settings = settings_of(tx, org.as_str(), "workspace")?;
            let draft = || Draft::new(Action::ConnectionCreate, "connection", id.as_str(), org.as_str()).workspace(Some(ws.as_str()));
            authorize(&a, &settings, Scope::Workspace(&org, &ws), Permission::CredentialAttach, "workspace", draft)?;
            let mut override_reason = None;
            let mut hs = Vec::new();
            if let Some(cid) = &req.credential_id {
                let cred = load_cred(tx, cid.as_str(), true).map_err(|e| with_field(e, "credential_id"))?;
                override_reason = check_attachment(
                    org.as_str(),
                    ws.as_str(),
                    &req.environment,
                    kind,
                    &cred,
                    &settings,
                    req.override_reason.as_deref(),
                ).map_err(|e| with_field(e, "credential_id"))?;
                hs = admit_destinations(tx, &a, &settings, cred, kind.as_str(), &config, &dns, || {
                    draft().details(serde_json::json!({"name": req.name, "kind": kind.as_str(), "credential_id": cid}))
                })?;
            }
            let now = now_micros();
            let by = a.principal_id.as_str();
            let attached = req.credential_id.as_ref().map(|_| now);
            tx.execute(
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
            let allowed = save_additions(tx, &ctx2, &ActorRef::from(a.as_ref()), &hs, id.as_str())?;
            audit::append(
                tx,
                &ctx2,
                &ActorRef::from(a.as_ref()),
                &draft().details(serde_json::json!({
                    "name": req.name, "kind": kind.as_str(), "environment": req.environment, "config": config,
                    "credential_id": req.credential_id, "override_reason": override_reason,
                    "destinations_allowed": allowed,
                })),
            )?;
            if let Some(cid) = &req.credential_id {
                audit::append(
                    tx,
                    &ctx2,
                    &ActorRef::from(a.as_ref()),
                    &Draft::new(Action::ConnectionAttach, "connection", id.as_str(), org.as_str())
                        .workspace(Some(ws.as_str()))
                        .details(serde_json::json!({"credential_id": cid, "override_reason": override_reason})),
                )?;
            }
            load_conn(tx, id.as_str(), false)?.view()
        })
        .await
    }

    /// One connection.
    pub async fn get_connection(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<ConnectionView> {
        let (id, a) = (id.to_owned(), actor.clone());
        self.read(ctx, actor, move |tx| {
            let c = load_conn(tx, &id, false)?;
            let settings = settings_of(tx, &c.org_id, "connection")?;
            let (org, ws) = (c.org(), c.ws());
            authorize(
                &a,
                &settings,
                Scope::Workspace(&org, &ws),
                Permission::MetadataRead,
                "connection",
                || c.draft(Action::ConnectionRead),
            )?;
            c.view()
        })
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
        let a = actor.clone();
        self.read(ctx, actor, move |tx| {
            let settings = settings_of(tx, &org, "organization")?;
            let visible = visible_workspaces(
                &a,
                &settings,
                &org,
                f.workspace_id.as_deref(),
                Action::ConnectionRead,
                Permission::MetadataRead,
            )?;
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
        })
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
        let (id, a, ctx2) = (id.to_owned(), actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let c = load_conn(tx, &id, true)?;
            let settings = settings_of(tx, &c.org_id, "connection")?;
            let (org, ws) = (c.org(), c.ws());
            authorize(
                &a,
                &settings,
                Scope::Workspace(&org, &ws),
                Permission::CredentialAttach,
                "connection",
                || c.draft(Action::ConnectionUpdate),
            )?;
            let mut hs = Vec::new();
            let now = now_micros();
            let mut changed = Vec::new();
            if let Some(n) = &p.name {
                tx.execute(
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
                    let cred = load_cred(tx, cid, true)?;
                    hs = admit_destinations(tx, &a, &settings, cred, &c.kind, &cfg, &dns, || {
                        c.draft(Action::ConnectionUpdate)
                            .details(serde_json::json!({"changed": ["config"], "credential_id": cid}))
                    })?;
                }
                tx.execute(
                    "UPDATE connections SET config = $1 WHERE id = $2",
                    &[serde_json::to_string(&cfg)?.into(), id.as_str().into()],
                )?;
                changed.push("config");
            }
            if let Some(d) = &p.description {
                tx.execute(
                    "UPDATE connections SET description = $1 WHERE id = $2",
                    &[d.as_str().into(), id.as_str().into()],
                )?;
                changed.push("description");
            }
            tx.execute(
                "UPDATE connections SET updated_at = $1 WHERE id = $2",
                &[now.into(), id.as_str().into()],
            )?;
            let allowed = save_additions(tx, &ctx2, &ActorRef::from(a.as_ref()), &hs, &id)?;
            audit::append(
                tx,
                &ctx2,
                &ActorRef::from(a.as_ref()),
                &c.draft(Action::ConnectionUpdate).details(
                    serde_json::json!({"changed": changed, "config": p.config, "destinations_allowed": allowed}),
                ),
            )?;
            load_conn(tx, &id, false)?.view()
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
        let (id, a, ctx2) = (id.to_owned(), actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let c = load_conn(tx, &id, true)?;
            let settings = settings_of(tx, &c.org_id, "connection")?;
            let (org, ws) = (c.org(), c.ws());
            authorize(&a, &settings, Scope::Workspace(&org, &ws), Permission::CredentialAttach, "connection", || {
                c.draft(Action::ConnectionDelete)
            })?;
            let users = tx.query(
                "SELECT p.name FROM pipelines p JOIN pipeline_connections pc ON pc.pipeline_id = p.id WHERE pc.connection_id = $1 ORDER BY p.seq LIMIT 20",
                &[id.as_str().into()],
            )?;
            if !users.is_empty() {
                let names = users.iter().map(|r| r.text(0)).collect::<Result<Vec<_>, _>>()?;
                return Err(CoreError::conflict(Code::ConnectionInUse, format!("pipelines use this connection: {}", names.join(", "))));
            }
            let view = c.view()?;
            tx.execute("DELETE FROM connections WHERE id = $1", &[id.as_str().into()])?;
            audit::append(tx, &ctx2, &ActorRef::from(a.as_ref()), &c.draft(Action::ConnectionDelete).details(serde_json::json!({"name": c.name, "credential_id": c.credential_id})))?;
            Ok(view)
        })
        .await
    }

    /// Attaches (or replaces) a connection's credential under the attachment rules.
    pub async fn attach_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: AttachCredential,
    ) -> CoreResult<ConnectionView> {
        self.with_dns(|dns| self.attach_credential_once(ctx, actor, id, req.clone(), dns))
            .await
    }

    async fn attach_credential_once(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: AttachCredential,
        dns: Dns,
    ) -> CoreResult<ConnectionView> {
        let (id, a, ctx2) = (id.to_owned(), actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let c = load_conn(tx, &id, true)?;
            let settings = settings_of(tx, &c.org_id, "connection")?;
            let (org, ws) = (c.org(), c.ws());
            let draft = || c.draft(Action::ConnectionAttach).details(serde_json::json!({"credential_id": req.credential_id}));
            authorize(&a, &settings, Scope::Workspace(&org, &ws), Permission::CredentialAttach, "connection", draft)?;
            let cred = load_cred(tx, req.credential_id.as_str(), true).map_err(|e| with_field(e, "credential_id"))?;
            let kind = parse_kind(&c.kind)?;
            let reason = check_attachment(&c.org_id, &c.workspace_id, &c.environment, kind, &cred, &settings, req.override_reason.as_deref()).map_err(|e| with_field(e, "credential_id"))?;
            let cred_env = cred.environment.clone();
            let config: Json = serde_json::from_str(&c.config)?;
            let hs = admit_destinations(tx, &a, &settings, cred, &c.kind, &config, &dns, draft)?;
            let now = now_micros();
            tx.execute(
                "UPDATE connections SET credential_id = $1, override_reason = $2, attached_at = $3, attached_by = $4, updated_at = $3 WHERE id = $5",
                &[req.credential_id.as_str().into(), reason.clone().into(), now.into(), a.principal_id.as_str().into(), id.as_str().into()],
            )?;
            let allowed = save_additions(tx, &ctx2, &ActorRef::from(a.as_ref()), &hs, &id)?;
            audit::append(
                tx,
                &ctx2,
                &ActorRef::from(a.as_ref()),
                &c.draft(Action::ConnectionAttach).details(serde_json::json!({
                    "credential_id": req.credential_id, "previous_credential_id": c.credential_id,
                    "override_reason": reason, "credential_environment": cred_env, "connection_environment": c.environment,
                    "destinations_allowed": allowed,
                })),
            )?;
            load_conn(tx, &id, false)?.view()
        })
        .await
    }

    /// Detaches a connection's credential.
    pub async fn detach_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
    ) -> CoreResult<ConnectionView> {
        let (id, a, ctx2) = (id.to_owned(), actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let c = load_conn(tx, &id, true)?;
            let settings = settings_of(tx, &c.org_id, "connection")?;
            let (org, ws) = (c.org(), c.ws());
            authorize(&a, &settings, Scope::Workspace(&org, &ws), Permission::CredentialAttach, "connection", || {
                c.draft(Action::ConnectionDetach)
            })?;
            if c.credential_id.is_some() {
                let now = now_micros();
                tx.execute(
                    "UPDATE connections SET credential_id = NULL, override_reason = NULL, attached_at = NULL, attached_by = NULL, updated_at = $1 WHERE id = $2",
                    &[now.into(), id.as_str().into()],
                )?;
                audit::append(tx, &ctx2, &ActorRef::from(a.as_ref()), &c.draft(Action::ConnectionDetach).details(serde_json::json!({"credential_id": c.credential_id})))?;
            }
            load_conn(tx, &id, false)?.view()
        })
        .await
    }

    /// Connections and pipelines that use a credential.
    pub async fn credential_usage(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<Usage> {
        let (id, a) = (id.to_owned(), actor.clone());
        self.read(ctx, actor, move |tx| {
            let c = load_cred(tx, &id, false)?;
            let settings = settings_of(tx, &c.org_id, "credential")?;
            let (org, ws) = (c.org(), c.ws());
            authorize(
                &a,
                &settings,
                crate::credentials::read_scope(&org, &ws),
                Permission::MetadataRead,
                "credential",
                || c.draft(Action::CredentialRead),
            )?;
            let visible = visible_workspaces(
                &a,
                &settings,
                &c.org_id,
                None,
                Action::CredentialRead,
                Permission::MetadataRead,
            )?;
            usage_visible(tx, &id, visible.as_deref())
        })
        .await
    }

    /// Incident response: detaches a credential from every connection at once (admins),
    /// auditing each connection, and says which pipelines are affected.
    pub async fn detach_all(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<DetachAll> {
        let (id, a, ctx2) = (id.to_owned(), actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let c = load_cred(tx, &id, true)?;
            let settings = settings_of(tx, &c.org_id, "credential")?;
            let (org, ws) = (c.org(), c.ws());
            authorize(&a, &settings, write_scope(&org, &ws), Permission::CredentialDelete, "credential", || {
                c.draft(Action::CredentialDetachAll)
            })?;
            let usage = usage_of(tx, &id)?;
            let now = now_micros();
            for conn in &usage.connections {
                tx.execute(
                    "UPDATE connections SET credential_id = NULL, override_reason = NULL, attached_at = NULL, attached_by = NULL, updated_at = $1 WHERE id = $2",
                    &[now.into(), conn.id.as_str().into()],
                )?;
                audit::append(
                    tx,
                    &ctx2,
                    &ActorRef::from(a.as_ref()),
                    &Draft::new(Action::ConnectionDetach, "connection", conn.id.as_str(), c.org_id.as_str())
                        .workspace(Some(conn.workspace_id.as_str()))
                        .details(serde_json::json!({"credential_id": id, "reason": "detach_all"})),
                )?;
            }
            audit::append(
                tx,
                &ctx2,
                &ActorRef::from(a.as_ref()),
                &c.draft(Action::CredentialDetachAll).details(serde_json::json!({
                    "connections": usage.connections.iter().map(|u| &u.id).collect::<Vec<_>>(),
                    "affected_pipelines": usage.pipelines.iter().map(|u| &u.id).collect::<Vec<_>>(),
                })),
            )?;
            Ok(DetachAll { detached: usage.connections, affected_pipelines: usage.pipelines })
        })
        .await
    }

    /// Creates a pipeline over connections of its workspace.
    pub async fn create_pipeline(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: CreatePipeline,
    ) -> CoreResult<PipelineView> {
        check_name(&req.name).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        check_description(req.description.as_deref())?;
        let (a, ctx2) = (actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let ws = req.workspace_id;
            let org = workspace_org(tx, ws.as_str())?.ok_or(CoreError::NotFound { what: "workspace" })?;
            let settings = settings_of(tx, org.as_str(), "workspace")?;
            let id = PipelineId::generate();
            let draft = || Draft::new(Action::PipelineCreate, "pipeline", id.as_str(), org.as_str()).workspace(Some(ws.as_str()));
            authorize(&a, &settings, Scope::Workspace(&org, &ws), Permission::CredentialAttach, "workspace", draft)?;
            let conns = check_pipeline_connections(tx, ws.as_str(), &req.connection_ids)?;
            let now = now_micros();
            tx.execute(
                "INSERT INTO pipelines (id, org_id, workspace_id, name, description, created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $6)",
                &[id.as_str().into(), org.as_str().into(), ws.as_str().into(), req.name.as_str().into(), req.description.clone().into(), now.into(), a.principal_id.as_str().into()],
            )
            .map_err(|e| name_conflict(e, "pipeline"))?;
            for c in &conns {
                tx.execute("INSERT INTO pipeline_connections (pipeline_id, connection_id) VALUES ($1, $2)", &[id.as_str().into(), c.as_str().into()])?;
            }
            audit::append(tx, &ctx2, &ActorRef::from(a.as_ref()), &draft().details(serde_json::json!({"name": req.name, "connection_ids": conns})))?;
            let r = load_pipeline_row(tx, id.as_str())?;
            pipeline_view(tx, &r)
        })
        .await
    }

    /// One pipeline.
    pub async fn get_pipeline(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<PipelineView> {
        let (id, a) = (id.to_owned(), actor.clone());
        self.read(ctx, actor, move |tx| {
            let r = load_pipeline_row(tx, &id)?;
            let (org_s, ws_s) = (r.text(2)?, r.text(3)?);
            let settings = settings_of(tx, &org_s, "pipeline")?;
            let (org, ws) = (
                OrgId::from_trusted(org_s.clone()),
                WorkspaceId::from_trusted(ws_s.clone()),
            );
            authorize(
                &a,
                &settings,
                Scope::Workspace(&org, &ws),
                Permission::MetadataRead,
                "pipeline",
                || {
                    Draft::new(Action::PipelineRead, "pipeline", id.as_str(), org_s.as_str())
                        .workspace(Some(ws_s.as_str()))
                },
            )?;
            pipeline_view(tx, &r)
        })
        .await
    }

    /// Pipelines the caller may see.
    pub async fn list_pipelines(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        f: PipelineFilter,
    ) -> CoreResult<Page<PipelineView>> {
        let PipelineFilter {
            org_id,
            workspace_id,
            connection_id,
            cursor,
            limit,
        } = f;
        let after = decode_cursor(cursor.as_deref())?;
        let limit = self.page_limit(limit);
        let org = org_id.unwrap_or_else(|| actor.org_id.to_string());
        let a = actor.clone();
        self.read(ctx, actor, move |tx| {
            let settings = settings_of(tx, &org, "organization")?;
            let visible = visible_workspaces(&a, &settings, &org, workspace_id.as_deref(), Action::PipelineRead, Permission::MetadataRead)?;
            let mut sql = format!("SELECT {PIPE_COLS} FROM pipelines WHERE org_id = $1 AND seq > $2");
            let mut params: Vec<Value> = vec![org.as_str().into(), after.into()];
            push_in(&mut sql, &mut params, "workspace_id", visible.as_deref());
            if let Some(w) = &workspace_id {
                params.push(w.as_str().into());
                sql.push_str(&format!(" AND workspace_id = ${}", params.len()));
            }
            if let Some(c) = &connection_id {
                params.push(c.as_str().into());
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM pipeline_connections pc WHERE pc.pipeline_id = pipelines.id AND pc.connection_id = ${})",
                    params.len()
                ));
            }
            params.push((limit as i64 + 1).into());
            sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
            let rows = tx.query(&sql, &params)?;
            let more = rows.len() > limit;
            let mut items = Vec::new();
            let mut last = None;
            for r in rows.iter().take(limit) {
                items.push(pipeline_view(tx, r)?);
                last = Some(r.int(9)?);
            }
            Ok(Page { items, next_cursor: if more { last.map(crate::views::encode_cursor) } else { None } })
        })
        .await
    }

    /// Changes a pipeline.
    pub async fn patch_pipeline(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        p: PatchPipeline,
    ) -> CoreResult<PipelineView> {
        if let Some(n) = &p.name {
            check_name(n).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        }
        check_description(p.description.as_deref())?;
        let (id, a, ctx2) = (id.to_owned(), actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let r = load_pipeline_row(tx, &id)?;
            let (org_s, ws_s) = (r.text(2)?, r.text(3)?);
            let settings = settings_of(tx, &org_s, "pipeline")?;
            let (org, ws) = (
                OrgId::from_trusted(org_s.clone()),
                WorkspaceId::from_trusted(ws_s.clone()),
            );
            let draft = || {
                Draft::new(Action::PipelineUpdate, "pipeline", id.as_str(), org_s.as_str())
                    .workspace(Some(ws_s.as_str()))
            };
            authorize(
                &a,
                &settings,
                Scope::Workspace(&org, &ws),
                Permission::CredentialAttach,
                "pipeline",
                draft,
            )?;
            let now = now_micros();
            if let Some(n) = &p.name {
                tx.execute(
                    "UPDATE pipelines SET name = $1 WHERE id = $2",
                    &[n.as_str().into(), id.as_str().into()],
                )
                .map_err(|e| name_conflict(e, "pipeline"))?;
            }
            if let Some(d) = &p.description {
                tx.execute(
                    "UPDATE pipelines SET description = $1 WHERE id = $2",
                    &[d.as_str().into(), id.as_str().into()],
                )?;
            }
            let mut conns = None;
            if let Some(ids) = &p.connection_ids {
                let checked = check_pipeline_connections(tx, &ws_s, ids)?;
                tx.execute(
                    "DELETE FROM pipeline_connections WHERE pipeline_id = $1",
                    &[id.as_str().into()],
                )?;
                for c in &checked {
                    tx.execute(
                        "INSERT INTO pipeline_connections (pipeline_id, connection_id) VALUES ($1, $2)",
                        &[id.as_str().into(), c.as_str().into()],
                    )?;
                }
                conns = Some(checked);
            }
            tx.execute(
                "UPDATE pipelines SET updated_at = $1 WHERE id = $2",
                &[now.into(), id.as_str().into()],
            )?;
            audit::append(
                tx,
                &ctx2,
                &ActorRef::from(a.as_ref()),
                &draft().details(serde_json::json!({"name": p.name, "connection_ids": conns})),
            )?;
            let r = load_pipeline_row(tx, &id)?;
            pipeline_view(tx, &r)
        })
        .await
    }

    /// Deletes a pipeline.
    pub async fn delete_pipeline(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<PipelineView> {
        let (id, a, ctx2) = (id.to_owned(), actor.clone(), ctx.clone());
        self.write(ctx, actor, move |tx| {
            let r = load_pipeline_row(tx, &id)?;
            let (org_s, ws_s) = (r.text(2)?, r.text(3)?);
            let settings = settings_of(tx, &org_s, "pipeline")?;
            let (org, ws) = (
                OrgId::from_trusted(org_s.clone()),
                WorkspaceId::from_trusted(ws_s.clone()),
            );
            let draft = || {
                Draft::new(Action::PipelineDelete, "pipeline", id.as_str(), org_s.as_str())
                    .workspace(Some(ws_s.as_str()))
            };
            authorize(
                &a,
                &settings,
                Scope::Workspace(&org, &ws),
                Permission::CredentialAttach,
                "pipeline",
                draft,
            )?;
            let view = pipeline_view(tx, &r)?;
            tx.execute(
                "DELETE FROM pipeline_connections WHERE pipeline_id = $1",
                &[id.as_str().into()],
            )?;
            tx.execute("DELETE FROM pipelines WHERE id = $1", &[id.as_str().into()])?;
            audit::append(
                tx,
                &ctx2,
                &ActorRef::from(a.as_ref()),
                &draft().details(serde_json::json!({"name": view.name})),
            )?;
            Ok(view)
        })
        .await
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

/// Which workspaces of `org` the actor may read for a list. `None` = the whole organization.
/// Refuses (404/403, audited) when it may read nothing, or asks for a workspace it cannot read.
pub(crate) fn visible_workspaces(
    a: &Actor,
    settings: &OrgSettings,
    org: &str,
    asked: Option<&str>,
    action: Action,
    perm: Permission,
) -> CoreResult<Option<Vec<String>>> {
    let org_id = OrgId::from_trusted(org.to_owned());
    let draft = || Draft::new(action, "org", org, org);
    if a.in_org(&org_id) && settings.role_policy.any_grants(&a.org_roles(), perm) {
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
    if ws.is_empty() || !a.in_org(&org_id) {
        authorize(a, settings, Scope::OrgShared(&org_id), perm, "organization", draft)?;
    }
    if let Some(w) = asked
        && !ws.iter().any(|x| x == w)
    {
        let wid = WorkspaceId::from_trusted(w.to_owned());
        authorize(a, settings, Scope::Workspace(&org_id, &wid), perm, "workspace", draft)?;
    }
    Ok(Some(ws))
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
