//! Credentials and their versions: create, read, list, patch, versions (stage / replace,
//! promote, revoke), disable / enable, delete / restore, reveal.
//!
//! Invariants kept here: secret fields are validated, split from the public ones and sealed
//! (bound to organization, credential and version) before they reach the store; exactly one
//! version is `current` (also enforced by a partial unique index); the current version cannot
//! be revoked; every change and its audit event commit together.

mod checks;
mod sealed;
mod status;
mod versions;

use checks::*;
use sealed::*;

pub(crate) use checks::parse_allowed;
pub(crate) use sealed::{
    SEALED_COLS, decrypt_version, decrypt_version_parts, open_sealed_row, replace_version_internal, reseal_current,
};
pub use status::StatusOp;

use crate::actions::Action;
use credvault_domain::problems::Code;
use credvault_domain::states::{CredentialStatus, VersionState};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use credvault_crypto::{Binding, Keyring, Sealed};
use credvault_domain::credential_types::{self, CredentialType, ValidatedFields};
use credvault_domain::roles::Permission;
use credvault_domain::secret::SecretJson;
use credvault_domain::time::{now_micros, parse_rfc3339, to_rfc3339};
use credvault_domain::{CredentialId, OrgId, WorkspaceId, check_environment, check_name};
use credvault_store::{Row, StoreError, Tx, Value};

use crate::Service;
use crate::audit::Draft;
use crate::auth::Scope;
use crate::context::{Actor, RequestCtx};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode, Plan};
use crate::tenancy::{page, workspace_org};
use crate::views::*;

pub(crate) const CRED_COLS: &str = "c.id, c.name, c.type, c.variant, c.org_id, c.workspace_id, c.environment, c.labels, \
     c.description, c.status, c.expires_at, c.rotation_period_days, c.current_version, c.owner_id, c.created_at, \
     c.created_by, c.updated_at, c.deleted_at, c.last_used_at, c.seq, c.allowed_destinations";

/// A credential row.
#[derive(Clone)]
pub(crate) struct CredRow {
    pub id: String,
    pub name: String,
    pub ty: String,
    pub variant: Option<String>,
    pub org_id: String,
    pub workspace_id: Option<String>,
    pub environment: String,
    pub labels: String,
    pub description: Option<String>,
    pub status: CredentialStatus,
    pub expires_at: Option<i64>,
    pub rotation_period_days: Option<i64>,
    pub current_version: i64,
    pub owner_id: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// JSON array of allowed destination patterns (`None` until the upgrade step ran).
    pub allowed_destinations: Option<String>,
}

impl CredRow {
    pub(crate) fn from_row(r: &Row) -> CoreResult<CredRow> {
        Ok(CredRow {
            id: r.text(0)?,
            name: r.text(1)?,
            ty: r.text(2)?,
            variant: r.opt_text(3)?,
            org_id: r.text(4)?,
            workspace_id: r.opt_text(5)?,
            environment: r.text(6)?,
            labels: r.text(7)?,
            description: r.opt_text(8)?,
            status: {
                let s = r.text(9)?;
                CredentialStatus::parse(&s).ok_or_else(|| CoreError::Internal(format!("stored status {s}")))?
            },
            expires_at: r.opt_int(10)?,
            rotation_period_days: r.opt_int(11)?,
            current_version: r.int(12)?,
            owner_id: r.opt_text(13)?,
            created_at: r.int(14)?,
            created_by: r.text(15)?,
            updated_at: r.int(16)?,
            deleted_at: r.opt_int(17)?,
            last_used_at: r.opt_int(18)?,
            allowed_destinations: r.opt_text(20)?,
        })
    }

    pub(crate) fn org(&self) -> OrgId {
        OrgId::from_trusted(self.org_id.clone())
    }

    pub(crate) fn ws(&self) -> Option<WorkspaceId> {
        self.workspace_id.clone().map(WorkspaceId::from_trusted)
    }

    pub(crate) fn draft(&self, action: Action) -> Draft {
        Draft::new(action, "credential", self.id.as_str(), self.org_id.as_str()).workspace(self.workspace_id.as_deref())
    }

    /// The check that guards `action` on this credential: `perm` in its read or write scope,
    /// the refusal recorded as `action`.
    pub(crate) fn check(&self, access: Access, perm: Permission, action: Action) -> Check {
        let (org, ws) = (self.org(), self.ws());
        let scope = match access {
            Access::Read => read_scope(&org, &ws),
            Access::Write => write_scope(&org, &ws),
        };
        Check::new(scope, perm, "credential", self.draft(action))
    }

    fn view(&self, current: Option<(&str, &str)>, versions: Option<Vec<VersionView>>) -> CoreResult<CredentialView> {
        let (fields, secret_set) = match current {
            Some((f, s)) => (serde_json::from_str(f)?, serde_json::from_str(s)?),
            None => (Json::Object(Map::new()), Vec::new()),
        };
        let fields: Json = fields;
        let field_destinations = CredentialType::parse(&self.ty)
            .map(|t| {
                let mut d: Vec<String> = credvault_domain::destinations::credential_destinations(t, &fields)
                    .into_iter()
                    .map(|d| d.dest.to_string())
                    .collect();
                d.sort();
                d.dedup();
                d
            })
            .unwrap_or_default();
        Ok(CredentialView {
            id: self.id.clone(),
            name: self.name.clone(),
            ty: self.ty.clone(),
            variant: self.variant.clone(),
            org_id: self.org_id.clone(),
            workspace_id: self.workspace_id.clone(),
            environment: self.environment.clone(),
            labels: serde_json::from_str(&self.labels)?,
            description: self.description.clone(),
            status: self.status,
            expires_at: ts(self.expires_at),
            rotation_period_days: self.rotation_period_days,
            fields,
            secret_fields_set: secret_set,
            current_version: self.current_version,
            versions: versions.unwrap_or_default(),
            owner_id: self.owner_id.clone(),
            created_at: to_rfc3339(self.created_at),
            created_by: self.created_by.clone(),
            updated_at: to_rfc3339(self.updated_at),
            deleted_at: ts(self.deleted_at),
            last_used_at: ts(self.last_used_at),
            warnings: credvault_domain::connectors::naming_warning(&self.name, &self.environment)
                .into_iter()
                .collect(),
            oauth: None,
            allowed_destinations: crate::destinations::stored_set(self).to_strings(),
            field_destinations,
        })
    }
}

/// The grant health of an OAuth credential (`None` for other types).
pub(crate) fn oauth_health(tx: &mut dyn Tx, c: &CredentialView) -> CoreResult<Option<crate::views::OAuthHealth>> {
    if c.ty != "oauth" {
        return Ok(None);
    }
    let Some(r) = tx.query_opt(
        "SELECT oauth_health, oauth_health_reason, oauth_authorized_by, oauth_refreshed_at FROM credentials WHERE id = $1",
        &[c.id.as_str().into()],
    )?
    else {
        return Ok(None);
    };
    let authorized_by = r.opt_text(2)?;
    let health = r.opt_text(0)?.unwrap_or_else(|| {
        if authorized_by.is_some() || c.variant.as_deref() == Some("client_credentials") {
            "healthy".into()
        } else {
            "not_authorized".into()
        }
    });
    Ok(Some(crate::views::OAuthHealth {
        health,
        health_reason: r.opt_text(1)?,
        authorized_by,
        refreshed_at: ts(r.opt_int(3)?),
    }))
}

/// Loads a credential, locking its row on PostgreSQL when `lock` is set.
pub(crate) fn load_cred(tx: &mut dyn Tx, id: &str, lock: bool) -> CoreResult<CredRow> {
    if CredentialId::parse(id).is_err() {
        return Err(CoreError::NotFound { what: "credential" });
    }
    let sql = format!(
        "SELECT {CRED_COLS} FROM credentials c WHERE c.id = $1{}",
        if lock { tx.for_update() } else { "" }
    );
    match tx.query_opt(&sql, &[id.into()])? {
        Some(r) => CredRow::from_row(&r),
        None => Err(CoreError::NotFound { what: "credential" }),
    }
}

/// `prepare` of an operation on one credential: loads it (`lock`ed on PostgreSQL) and declares
/// `perm` in its `access` scope, the event `action`.
pub(crate) fn credential_plan(
    id: &str,
    lock: bool,
    access: Access,
    perm: Permission,
    action: Action,
) -> impl FnOnce(&mut dyn Tx) -> CoreResult<Plan<CredRow>> + Send + 'static {
    let id = id.to_owned();
    move |tx| {
        let c = load_cred(tx, &id, lock)?;
        let check = c.check(access, perm, action);
        Ok(Plan::new(c, check))
    }
}

/// Which scope of a credential an operation needs (see [`read_scope`], [`write_scope`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// Reading or using it: its workspace, or any binding for an organization-wide one.
    Read,
    /// Changing it: its workspace, or the organization level for an organization-wide one.
    Write,
}

/// The scope used to read or use a credential.
pub(crate) fn read_scope<'a>(org: &'a OrgId, ws: &'a Option<WorkspaceId>) -> Scope<'a> {
    match ws {
        Some(w) => Scope::Workspace(org, w),
        None => Scope::OrgShared(org),
    }
}

/// The scope used to change a credential.
pub(crate) fn write_scope<'a>(org: &'a OrgId, ws: &'a Option<WorkspaceId>) -> Scope<'a> {
    match ws {
        Some(w) => Scope::Workspace(org, w),
        None => Scope::Org(org),
    }
}

struct VersionRow {
    version: i64,
    state: VersionState,
    created_at: i64,
    created_by: String,
    public_fields: String,
    secret_fields_set: String,
    last_resolved_at: Option<i64>,
}

fn load_versions(tx: &mut dyn Tx, id: &str) -> CoreResult<Vec<VersionRow>> {
    let rows = tx.query(
        "SELECT version, state, created_at, created_by, public_fields, secret_fields_set, last_resolved_at FROM credential_versions \
         WHERE credential_id = $1 ORDER BY version",
        &[id.into()],
    )?;
    rows.iter()
        .map(|r| {
            Ok(VersionRow {
                version: r.int(0)?,
                state: {
                    let s = r.text(1)?;
                    VersionState::parse(&s).ok_or_else(|| CoreError::Internal(format!("stored version state {s}")))?
                },
                created_at: r.int(2)?,
                created_by: r.text(3)?,
                public_fields: r.text(4)?,
                secret_fields_set: r.text(5)?,
                last_resolved_at: r.opt_int(6)?,
            })
        })
        .collect()
}

pub(crate) fn full_view(tx: &mut dyn Tx, c: &CredRow) -> CoreResult<CredentialView> {
    let versions = load_versions(tx, &c.id)?;
    let current = versions.iter().find(|v| v.state == VersionState::Current);
    let views = versions
        .iter()
        .map(|v| {
            Ok(VersionView {
                version: v.version,
                state: v.state,
                created_at: to_rfc3339(v.created_at),
                created_by: v.created_by.clone(),
                secret_fields_set: serde_json::from_str(&v.secret_fields_set)?,
                last_resolved_at: v.last_resolved_at.map(to_rfc3339),
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    let mut view = c.view(
        current.map(|v| (v.public_fields.as_str(), v.secret_fields_set.as_str())),
        Some(views),
    )?;
    view.oauth = oauth_health(tx, &view)?;
    Ok(view)
}

impl Service {
    fn keyring_arc(&self) -> CoreResult<Arc<Keyring>> {
        Ok(self.keyring()?.clone())
    }

    /// Creates a credential with its first version.
    pub async fn create_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        mut req: CreateCredential,
    ) -> CoreResult<CredentialView> {
        self.inner.config.audit_gate.check()?;
        let ty = CredentialType::parse(&req.ty).ok_or_else(|| {
            let names: Vec<&str> = CredentialType::ALL.iter().map(|t| t.as_str()).collect();
            CoreError::invalid(
                "type",
                Code::UnknownType,
                format!("must be one of: {}", names.join(", ")),
            )
        })?;
        check_name(&req.name).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        check_environment(&req.environment)
            .map_err(|m| CoreError::invalid("environment", Code::InvalidEnvironment, m))?;
        let scope_ws = req.workspace_id.clone();
        let scope_org = req.org_id.clone();
        if scope_ws.is_some() == scope_org.is_some() {
            return Err(CoreError::invalid(
                "workspace_id",
                Code::ScopeRequired,
                "give exactly one of workspace_id or org_id",
            ));
        }
        let labels = req.labels.take().unwrap_or_default();
        check_labels(&labels)?;
        check_description(req.description.as_deref())?;
        let expires_at = parse_expiry("expires_at", req.expires_at.as_deref())?;
        check_rotation(req.rotation_period_days)?;
        let allowed = parse_allowed(req.allowed_destinations.as_deref().unwrap_or_default())?;
        let fields = std::mem::take(&mut req.fields);
        let validated = validate_fields(ty, req.variant.as_deref(), fields)?;
        let keyring = self.keyring_arc()?;
        let (name, environment, description, rotation) = (
            req.name.clone(),
            req.environment.clone(),
            req.description.clone(),
            req.rotation_period_days,
        );
        let prepare = move |tx: &mut dyn Tx| {
            let org = match (&scope_ws, &scope_org) {
                (Some(ws), _) => workspace_org(tx, ws.as_str())?.ok_or(CoreError::NotFound { what: "workspace" })?,
                (None, Some(o)) => o.clone(),
                (None, None) => return Err(CoreError::Internal("scope checked above".into())),
            };
            let id = CredentialId::generate();
            let draft = Draft::new(Action::CredentialCreate, "credential", id.as_str(), org.as_str())
                .workspace(scope_ws.as_ref().map(|w| w.as_str()));
            let what = if scope_ws.is_some() {
                "workspace"
            } else {
                "organization"
            };
            let check = Check::new(write_scope(&org, &scope_ws), Permission::CredentialCreate, what, draft);
            Ok(Plan::new((org, scope_ws, id), check))
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, scope_ws, id)| {
            let draft = || Draft::new(Action::CredentialCreate, "credential", id.as_str(), org.as_str()).workspace(scope_ws.as_ref().map(|w| w.as_str()));
            if !ops.settings().enabled_types.contains(&ty) {
                return Err(CoreError::invalid("type", Code::TypeNotEnabled, format!("type {} is not enabled for this organization", ty.as_str())));
            }
            check_references(ops.tx(), org.as_str(), scope_ws.as_ref().map(|w| w.as_str()), ty, &validated, id.as_str())?;
            let now = now_micros();
            let by = ops.actor().principal_id.to_string();
            let by = by.as_str();
            let scope_key = scope_ws.as_ref().map_or(org.as_str(), |w| w.as_str());
            let labels_json = serde_json::to_string(&labels)?;
            ops.tx().execute(
                "INSERT INTO credentials (id, org_id, workspace_id, scope_key, name, type, variant, environment, labels, description, \
                 status, expires_at, rotation_period_days, current_version, owner_id, created_at, created_by, updated_at, allowed_destinations) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $12, 1, $13, $14, $13, $14, $15)",
                &[
                    id.as_str().into(),
                    org.as_str().into(),
                    scope_ws.as_ref().map(|w| w.as_str()).into(),
                    scope_key.into(),
                    name.as_str().into(),
                    ty.as_str().into(),
                    validated.variant.clone().into(),
                    environment.as_str().into(),
                    labels_json.into(),
                    description.clone().into(),
                    expires_at.into(),
                    rotation.into(),
                    by.into(),
                    now.into(),
                    allowed.to_stored().into(),
                ],
            )
            .map_err(name_conflict)?;
            write_labels(ops.tx(), id.as_str(), &labels)?;
            let secret = SecretJson::new(validated.secret.expose().clone());
            let sealed = seal(&keyring, org.as_str(), id.as_str(), 1, secret)?;
            insert_version(ops.tx(), id.as_str(), 1, VersionState::Current, &sealed, &validated, by, now)?;
            ops.record(draft().details(serde_json::json!({
                    "name": name, "type": ty.as_str(), "variant": validated.variant, "environment": environment,
                    "labels": labels, "secret_fields_set": validated.secret_fields_set, "version": 1,
                    "allowed_destinations": allowed.to_strings(),
                })),
            )?;
            let c = load_cred(ops.tx(), id.as_str(), false)?;
            full_view(ops.tx(), &c)
        })
        .await
    }

    /// One credential's metadata.
    pub async fn get_credential(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<CredentialView> {
        let prepare = credential_plan(
            id,
            false,
            Access::Read,
            Permission::MetadataRead,
            Action::CredentialRead,
        );
        self.operate(ctx, actor, Mode::Read, prepare, |ops, c| full_view(ops.tx(), &c))
            .await
    }

    /// Versions of one credential.
    pub async fn list_versions(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<Vec<VersionView>> {
        Ok(self.get_credential(ctx, actor, id).await?.versions)
    }

    /// Credentials the caller may see, filtered, one page at a time.
    pub async fn list_credentials(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        f: CredentialFilter,
    ) -> CoreResult<Page<CredentialView>> {
        let after = decode_cursor(f.cursor.as_deref())?;
        let limit = self.page_limit(f.limit);
        let org = f.org_id.clone().unwrap_or_else(|| actor.org_id.to_string());
        if let Some(t) = &f.ty
            && CredentialType::parse(t).is_none()
        {
            return Err(CoreError::invalid("type", Code::UnknownType, "no such credential type"));
        }
        let mut label_pairs = Vec::new();
        for l in &f.label {
            let Some((k, v)) = l.split_once(':') else {
                return Err(CoreError::invalid(
                    "label",
                    Code::InvalidLabelFilter,
                    "label filters look like key:value",
                ));
            };
            label_pairs.push((k.to_owned(), v.to_owned()));
        }
        let (asked, what) = (
            f.workspace_id.clone(),
            (Action::CredentialList, Permission::MetadataRead),
        );
        self.operate_list(ctx, actor, Mode::Read, &org.clone(), asked, what, move |ops, visible| {
            let tx = ops.tx();
            let mut sql = format!(
                "SELECT {CRED_COLS}, v.public_fields, v.secret_fields_set FROM credentials c \
                 LEFT JOIN credential_versions v ON v.credential_id = c.id AND v.state = 'current' \
                 WHERE c.org_id = $1 AND c.seq > $2"
            );
            let mut params: Vec<Value> = vec![org.as_str().into(), after.into()];
            let mut push = |sql: &mut String, clause: &str, vals: Vec<Value>| {
                let mut clause = clause.to_owned();
                for v in vals {
                    params.push(v);
                    clause = clause.replacen("$?", &format!("${}", params.len()), 1);
                }
                sql.push_str(&clause);
            };
            if let Some(vis) = &visible {
                let mut clause = String::from(" AND (c.workspace_id IS NULL");
                if !vis.is_empty() {
                    clause.push_str(" OR c.workspace_id IN (");
                    clause.push_str(&vec!["$?"; vis.len()].join(", "));
                    clause.push(')');
                }
                clause.push(')');
                push(&mut sql, &clause, vis.iter().map(|w| w.as_str().into()).collect());
            }
            if let Some(w) = &f.workspace_id {
                push(&mut sql, " AND c.workspace_id = $?", vec![w.as_str().into()]);
            }
            if let Some(t) = &f.ty {
                push(&mut sql, " AND c.type = $?", vec![t.as_str().into()]);
            }
            if let Some(e) = &f.environment {
                push(&mut sql, " AND c.environment = $?", vec![e.as_str().into()]);
            }
            if let Some(s) = &f.status {
                push(&mut sql, " AND c.status = $?", vec![s.as_str().into()]);
            }
            if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
                let mut pat = String::from("%");
                for ch in q.to_lowercase().chars().take(200) {
                    if matches!(ch, '\\' | '%' | '_') {
                        pat.push('\\');
                    }
                    pat.push(ch);
                }
                pat.push('%');
                push(
                    &mut sql,
                    " AND (lower(c.name) LIKE $? ESCAPE '\\' OR lower(coalesce(c.description, '')) LIKE $? ESCAPE '\\')",
                    vec![pat.as_str().into(), pat.as_str().into()],
                );
            }
            for (k, v) in &label_pairs {
                push(
                    &mut sql,
                    " AND EXISTS (SELECT 1 FROM credential_labels l WHERE l.credential_id = c.id AND l.key = $? AND l.value = $?)",
                    vec![k.as_str().into(), v.as_str().into()],
                );
            }
            push(&mut sql, " ORDER BY c.seq LIMIT $?", vec![(limit as i64 + 1).into()]);
            let rows = tx.query(&sql, &params)?;
            page(rows, limit, 19, |r| {
                let c = CredRow::from_row(r)?;
                let (pf, sf) = (r.opt_text(21)?, r.opt_text(22)?);
                let current = match (&pf, &sf) {
                    (Some(p), Some(s)) => Some((p.as_str(), s.as_str())),
                    _ => None,
                };
                c.view(current, None)
            })
            .and_then(|mut p| {
                for v in &mut p.items {
                    v.oauth = oauth_health(tx, v)?;
                }
                Ok(p)
            })
        })
        .await
    }

    /// Changes a credential's metadata.
    pub async fn patch_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        p: PatchCredential,
    ) -> CoreResult<CredentialView> {
        if let Some(n) = &p.name {
            check_name(n).map_err(|m| CoreError::invalid("name", Code::InvalidName, m))?;
        }
        if let Some(l) = &p.labels {
            check_labels(l)?;
        }
        if let Some(d) = &p.description {
            check_description(d.as_deref())?;
        }
        let expires = match &p.expires_at {
            Some(e) => Some(parse_expiry("expires_at", e.as_deref())?),
            None => None,
        };
        if let Some(r) = p.rotation_period_days {
            check_rotation(r)?;
        }
        let allowed = p.allowed_destinations.as_deref().map(parse_allowed).transpose()?;
        let id = id.to_owned();
        let prepare = credential_plan(
            &id,
            true,
            Access::Write,
            Permission::CredentialCreate,
            Action::CredentialUpdate,
        );
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            if c.status == CredentialStatus::Purged {
                return Err(CoreError::conflict(
                    Code::CredentialPurged,
                    "the credential was purged; its keys are destroyed and it cannot change",
                ));
            }
            let mut changed = Vec::new();
            let now = now_micros();
            if let Some(n) = &p.name {
                ops.tx()
                    .execute(
                        "UPDATE credentials SET name = $1 WHERE id = $2",
                        &[n.as_str().into(), id.as_str().into()],
                    )
                    .map_err(name_conflict)?;
                changed.push("name");
            }
            if let Some(l) = &p.labels {
                ops.tx().execute(
                    "UPDATE credentials SET labels = $1 WHERE id = $2",
                    &[serde_json::to_string(l)?.into(), id.as_str().into()],
                )?;
                write_labels(ops.tx(), &id, l)?;
                changed.push("labels");
            }
            if let Some(d) = &p.description {
                ops.tx().execute(
                    "UPDATE credentials SET description = $1 WHERE id = $2",
                    &[d.clone().into(), id.as_str().into()],
                )?;
                changed.push("description");
            }
            if let Some(e) = expires {
                ops.tx().execute(
                    "UPDATE credentials SET expires_at = $1 WHERE id = $2",
                    &[e.into(), id.as_str().into()],
                )?;
                changed.push("expires_at");
            }
            if let Some(r) = p.rotation_period_days {
                ops.tx().execute(
                    "UPDATE credentials SET rotation_period_days = $1 WHERE id = $2",
                    &[r.into(), id.as_str().into()],
                )?;
                changed.push("rotation_period_days");
            }
            let mut destinations = Json::Null;
            if let Some(new) = &allowed {
                let old = crate::destinations::stored_set(&c);
                ops.tx().execute(
                    "UPDATE credentials SET allowed_destinations = $1 WHERE id = $2",
                    &[new.to_stored().into(), id.as_str().into()],
                )?;
                changed.push("allowed_destinations");
                destinations = serde_json::json!({
                    "added": new.minus(&old), "removed": old.minus(new), "allowed_destinations": new.to_strings(),
                });
            }
            ops.tx().execute(
                "UPDATE credentials SET updated_at = $1 WHERE id = $2",
                &[now.into(), id.as_str().into()],
            )?;
            ops.record(c.draft(Action::CredentialUpdate).details(serde_json::json!({
                "changed": changed, "name": p.name, "labels": p.labels, "destinations": destinations,
            })))?;
            let c = load_cred(ops.tx(), &id, false)?;
            full_view(ops.tx(), &c)
        })
        .await
    }
}
