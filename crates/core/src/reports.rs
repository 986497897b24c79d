//! Review reports (`attachments`, `unused`, `rotation-due`, `overrides`, `unreviewed`) and
//! credential reviews.
//!
//! Reports stream: a background task reads the store one keyset page at a time and hands rows
//! to a bounded channel, so a million-row export holds one page in memory, not the report.
//! Each row is a list of JSON values aligned with the report's `columns`.

use crate::actions::Action;
use credvault_domain::problems::Code;
use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use credvault_domain::connectors::naming_warning;
use credvault_domain::roles::Permission;
use credvault_domain::time::{DAY, now_micros, to_rfc3339};
use credvault_store::{Row, Tx, Value};

use crate::Service;
use crate::audit::Draft;
use crate::connections::push_in;
use crate::context::{Actor, RequestCtx};
use crate::credentials::{Access, credential_plan};
use crate::error::{CoreError, CoreResult};
use crate::operation::Mode;
use crate::views::ts;

/// Rows per store read while streaming.
const PAGE: i64 = 500;

/// The reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// Credential → connections → pipelines, with environments, last use and last review.
    Attachments,
    /// Credentials with no attachments, or not resolved for N days (default 90).
    Unused,
    /// Credentials past or within N days (default 30) of expiry or their rotation period.
    RotationDue,
    /// Connections attached across environments, with the written reason.
    Overrides,
    /// Credentials not reviewed for N days (default 90).
    Unreviewed,
}

impl ReportKind {
    /// Parses the URL name.
    pub fn parse(s: &str) -> Option<ReportKind> {
        Some(match s {
            "attachments" => ReportKind::Attachments,
            "unused" => ReportKind::Unused,
            "rotation-due" => ReportKind::RotationDue,
            "overrides" => ReportKind::Overrides,
            "unreviewed" => ReportKind::Unreviewed,
            _ => return None,
        })
    }

    /// URL name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Attachments => "attachments",
            ReportKind::Unused => "unused",
            ReportKind::RotationDue => "rotation-due",
            ReportKind::Overrides => "overrides",
            ReportKind::Unreviewed => "unreviewed",
        }
    }

    /// Column names, in order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            ReportKind::Attachments => &[
                "credential_id",
                "credential_name",
                "credential_type",
                "credential_environment",
                "credential_workspace_id",
                "credential_status",
                "credential_last_used_at",
                "connection_id",
                "connection_name",
                "connection_environment",
                "connection_workspace_id",
                "override_reason",
                "connection_last_used_at",
                "pipeline_ids",
                "pipeline_names",
                "last_review_at",
                "last_review_decision",
                "last_reviewer_id",
                "warnings",
                "credential_system",
                "credential_owner_team",
            ],
            ReportKind::Unused => &[
                "credential_id",
                "credential_name",
                "credential_type",
                "environment",
                "workspace_id",
                "status",
                "attachments",
                "created_at",
                "last_used_at",
                "reason",
                "system",
                "owner_team",
            ],
            ReportKind::RotationDue => &[
                "credential_id",
                "credential_name",
                "credential_type",
                "environment",
                "workspace_id",
                "status",
                "expires_at",
                "rotation_period_days",
                "current_version",
                "current_version_created_at",
                "rotation_due_at",
                "reason",
                "oauth_health",
                "system",
                "owner_team",
            ],
            ReportKind::Overrides => &[
                "connection_id",
                "connection_name",
                "connection_environment",
                "workspace_id",
                "credential_id",
                "credential_name",
                "credential_environment",
                "override_reason",
                "attached_at",
                "attached_by",
                "credential_system",
                "credential_owner_team",
            ],
            ReportKind::Unreviewed => &[
                "credential_id",
                "credential_name",
                "credential_type",
                "environment",
                "workspace_id",
                "status",
                "created_at",
                "last_reviewed_at",
                "last_review_decision",
                "system",
                "owner_team",
            ],
        }
    }

    fn default_days(self) -> i64 {
        match self {
            ReportKind::RotationDue => 30,
            _ => 90,
        }
    }
}

/// Parameters of a report.
#[derive(Clone, Debug)]
pub struct ReportRequest {
    /// Which report.
    pub kind: ReportKind,
    /// Organization (default: the caller's).
    pub org_id: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// The N of the report (days).
    pub days: Option<i64>,
}

/// A report being streamed.
pub struct ReportStream {
    /// Which report.
    pub kind: ReportKind,
    /// Column names.
    pub columns: &'static [&'static str],
    /// Rows as they are read; an `Err` ends the stream.
    pub rows: mpsc::Receiver<CoreResult<Vec<Json>>>,
}

/// Request: record a review of a credential.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReview {
    /// `keep` or `remove`.
    pub decision: String,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// A recorded review.
#[derive(Clone, Debug, Serialize)]
pub struct ReviewView {
    /// `rev_…`
    pub id: String,
    /// The credential.
    pub credential_id: String,
    /// Who reviewed.
    pub reviewer_id: String,
    /// `keep` or `remove`.
    pub decision: String,
    /// Free text.
    pub note: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// What a page query needs.
#[derive(Clone)]
struct Scope {
    org: String,
    visible: Option<Vec<String>>,
    workspace: Option<String>,
    days: i64,
    now: i64,
}

fn opt_ts(r: &Row, i: usize) -> CoreResult<Json> {
    Ok(ts(r.opt_int(i)?).map_or(Json::Null, Json::String))
}

fn cred_filters(sql: &mut String, params: &mut Vec<Value>, s: &Scope) {
    push_in(sql, params, "c.workspace_id", s.visible.as_deref());
    if let Some(w) = &s.workspace {
        params.push(w.as_str().into());
        sql.push_str(&format!(" AND c.workspace_id = ${}", params.len()));
    }
}

fn in_list(params: &mut Vec<Value>, ids: &[String]) -> String {
    let mut marks = Vec::with_capacity(ids.len());
    for id in ids {
        params.push(id.as_str().into());
        marks.push(format!("${}", params.len()));
    }
    marks.join(", ")
}

/// The labels every report ends with: the credential's `system` and `owner_team`, so exports
/// show what each credential is for and who owns it.
const LABEL_COLUMNS: [&str; 2] = ["system", "owner_team"];

/// One page of a report: rows and the position to continue after (`None`: done). Each row
/// ends with the credential's [`LABEL_COLUMNS`], looked up for the whole page at once.
fn page(tx: &mut dyn Tx, kind: ReportKind, s: &Scope, after: i64) -> CoreResult<(Vec<Vec<Json>>, Option<i64>)> {
    let (mut rows, next) = page_rows(tx, kind, s, after)?;
    let col = kind.columns().iter().position(|c| *c == "credential_id").unwrap_or(0);
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get(col).and_then(Json::as_str).map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    let mut labels: std::collections::HashMap<String, Json> = std::collections::HashMap::new();
    if !ids.is_empty() {
        let mut params: Vec<Value> = Vec::new();
        let list = in_list(&mut params, &ids);
        for r in tx.query(
            &format!("SELECT id, labels FROM credentials WHERE id IN ({list})"),
            &params,
        )? {
            let parsed: Json = serde_json::from_str(&r.text(1)?).unwrap_or(Json::Null);
            labels.insert(r.text(0)?, parsed);
        }
    }
    for row in &mut rows {
        let l = row.get(col).and_then(Json::as_str).and_then(|id| labels.get(id));
        for key in LABEL_COLUMNS {
            row.push(l.and_then(|l| l.get(key)).cloned().unwrap_or(Json::Null));
        }
    }
    Ok((rows, next))
}

fn page_rows(tx: &mut dyn Tx, kind: ReportKind, s: &Scope, after: i64) -> CoreResult<(Vec<Vec<Json>>, Option<i64>)> {
    match kind {
        ReportKind::Attachments => attachments_page(tx, s, after),
        ReportKind::Overrides => {
            let mut params: Vec<Value> = vec![s.org.as_str().into(), after.into()];
            let mut sql = String::from(
                "SELECT x.id, x.name, x.environment, x.workspace_id, c.id, c.name, c.environment, x.override_reason, \
                 x.attached_at, x.attached_by, x.seq FROM connections x JOIN credentials c ON c.id = x.credential_id \
                 WHERE x.org_id = $1 AND x.seq > $2 AND x.override_reason IS NOT NULL",
            );
            push_in(&mut sql, &mut params, "x.workspace_id", s.visible.as_deref());
            if let Some(w) = &s.workspace {
                params.push(w.as_str().into());
                sql.push_str(&format!(" AND x.workspace_id = ${}", params.len()));
            }
            params.push(PAGE.into());
            sql.push_str(&format!(" ORDER BY x.seq LIMIT ${}", params.len()));
            let rows = tx.query(&sql, &params)?;
            let next = next_after(&rows, 10)?;
            let out = rows
                .iter()
                .map(|r| {
                    Ok(vec![
                        json!(r.text(0)?),
                        json!(r.text(1)?),
                        json!(r.text(2)?),
                        json!(r.text(3)?),
                        json!(r.text(4)?),
                        json!(r.text(5)?),
                        json!(r.text(6)?),
                        json!(r.opt_text(7)?),
                        opt_ts(r, 8)?,
                        json!(r.opt_text(9)?),
                    ])
                })
                .collect::<CoreResult<Vec<_>>>()?;
            Ok((out, next))
        }
        ReportKind::Unused => {
            let cutoff = s.now - s.days * DAY;
            let mut params: Vec<Value> = vec![s.org.as_str().into(), after.into(), cutoff.into()];
            // A credential is used by its connections and by the role chains that start from
            // it (whose resolves count as its use).
            let count = "((SELECT COUNT(*) FROM connections x WHERE x.credential_id = c.id) + \
                 (SELECT COUNT(*) FROM credential_versions cv WHERE cv.source_credential_id = c.id AND cv.state = 'current'))";
            let chain_used = "(SELECT MAX(u.last_used_at) FROM credentials u JOIN credential_versions cv ON cv.credential_id = u.id \
                 WHERE cv.source_credential_id = c.id AND cv.state = 'current')";
            let used = format!(
                "CASE WHEN {chain_used} IS NOT NULL AND (c.last_used_at IS NULL OR {chain_used} > c.last_used_at) \
                 THEN {chain_used} ELSE c.last_used_at END"
            );
            let mut sql = format!(
                "SELECT c.id, c.name, c.type, c.environment, c.workspace_id, c.status, {count}, c.created_at, {used}, c.seq \
                 FROM credentials c WHERE c.org_id = $1 AND c.seq > $2 AND c.status <> 'pending_deletion' \
                 AND ({count} = 0 OR COALESCE({used}, c.created_at) < $3)"
            );
            cred_filters(&mut sql, &mut params, s);
            params.push(PAGE.into());
            sql.push_str(&format!(" ORDER BY c.seq LIMIT ${}", params.len()));
            let rows = tx.query(&sql, &params)?;
            let next = next_after(&rows, 9)?;
            let days = s.days;
            let out = rows
                .iter()
                .map(|r| {
                    let n = r.int(6)?;
                    let reason = if n == 0 {
                        "no_attachments".to_owned()
                    } else if r.opt_int(8)?.is_none() {
                        format!("never_resolved_in_{days}_days")
                    } else {
                        format!("not_resolved_for_{days}_days")
                    };
                    Ok(vec![
                        json!(r.text(0)?),
                        json!(r.text(1)?),
                        json!(r.text(2)?),
                        json!(r.text(3)?),
                        json!(r.opt_text(4)?),
                        json!(r.text(5)?),
                        json!(n),
                        json!(to_rfc3339(r.int(7)?)),
                        opt_ts(r, 8)?,
                        json!(reason),
                    ])
                })
                .collect::<CoreResult<Vec<_>>>()?;
            Ok((out, next))
        }
        ReportKind::RotationDue => {
            let horizon = s.now + s.days * DAY;
            let mut params: Vec<Value> = vec![s.org.as_str().into(), after.into(), horizon.into(), DAY.into()];
            let mut sql = String::from(
                "SELECT c.id, c.name, c.type, c.environment, c.workspace_id, c.status, c.expires_at, c.rotation_period_days, \
                 c.current_version, v.created_at, c.seq, c.oauth_health FROM credentials c \
                 JOIN credential_versions v ON v.credential_id = c.id AND v.version = c.current_version \
                 WHERE c.org_id = $1 AND c.seq > $2 AND c.status <> 'pending_deletion' \
                 AND ((c.expires_at IS NOT NULL AND c.expires_at <= $3) \
                      OR (c.rotation_period_days IS NOT NULL AND v.created_at + c.rotation_period_days * $4 <= $3) \
                      OR c.oauth_health IN ('refresh_failing', 'needs_reauthorization'))",
            );
            cred_filters(&mut sql, &mut params, s);
            params.push(PAGE.into());
            sql.push_str(&format!(" ORDER BY c.seq LIMIT ${}", params.len()));
            let rows = tx.query(&sql, &params)?;
            let next = next_after(&rows, 10)?;
            let now = s.now;
            let out = rows
                .iter()
                .map(|r| {
                    let expires = r.opt_int(6)?;
                    let period = r.opt_int(7)?;
                    let version_at = r.int(9)?;
                    let rotation_due = period.map(|p| version_at + p * DAY);
                    let oauth = r.opt_text(11)?;
                    let horizon_hit =
                        expires.is_some_and(|e| e <= horizon) || rotation_due.is_some_and(|d| d <= horizon);
                    let reason = match (expires, rotation_due) {
                        (Some(e), _) if e <= now => "expired",
                        (_, Some(d)) if d <= now => "rotation_overdue",
                        _ if !horizon_hit => match oauth.as_deref() {
                            Some("needs_reauthorization") => "oauth_needs_reauthorization",
                            _ => "oauth_refresh_failing",
                        },
                        (Some(e), Some(d)) if e <= d => "expiring",
                        (Some(_), None) => "expiring",
                        _ => "rotation_due",
                    };
                    Ok(vec![
                        json!(r.text(0)?),
                        json!(r.text(1)?),
                        json!(r.text(2)?),
                        json!(r.text(3)?),
                        json!(r.opt_text(4)?),
                        json!(r.text(5)?),
                        opt_ts(r, 6)?,
                        json!(period),
                        json!(r.int(8)?),
                        json!(to_rfc3339(version_at)),
                        json!(rotation_due.map(to_rfc3339)),
                        json!(reason),
                        json!(oauth),
                    ])
                })
                .collect::<CoreResult<Vec<_>>>()?;
            Ok((out, next))
        }
        ReportKind::Unreviewed => {
            let cutoff = s.now - s.days * DAY;
            let mut params: Vec<Value> = vec![s.org.as_str().into(), after.into(), cutoff.into()];
            let mut sql = String::from(
                "SELECT c.id, c.name, c.type, c.environment, c.workspace_id, c.status, c.created_at, c.last_reviewed_at, \
                 (SELECT r.decision FROM reviews r WHERE r.credential_id = c.id ORDER BY r.seq DESC LIMIT 1), c.seq \
                 FROM credentials c WHERE c.org_id = $1 AND c.seq > $2 AND c.status <> 'pending_deletion' \
                 AND (c.last_reviewed_at IS NULL OR c.last_reviewed_at < $3)",
            );
            cred_filters(&mut sql, &mut params, s);
            params.push(PAGE.into());
            sql.push_str(&format!(" ORDER BY c.seq LIMIT ${}", params.len()));
            let rows = tx.query(&sql, &params)?;
            let next = next_after(&rows, 9)?;
            let out = rows
                .iter()
                .map(|r| {
                    Ok(vec![
                        json!(r.text(0)?),
                        json!(r.text(1)?),
                        json!(r.text(2)?),
                        json!(r.text(3)?),
                        json!(r.opt_text(4)?),
                        json!(r.text(5)?),
                        json!(to_rfc3339(r.int(6)?)),
                        opt_ts(r, 7)?,
                        json!(r.opt_text(8)?),
                    ])
                })
                .collect::<CoreResult<Vec<_>>>()?;
            Ok((out, next))
        }
    }
}

fn next_after(rows: &[Row], seq_col: usize) -> CoreResult<Option<i64>> {
    if (rows.len() as i64) < PAGE {
        return Ok(None);
    }
    Ok(rows.last().map(|r| r.int(seq_col)).transpose()?)
}

fn attachments_page(tx: &mut dyn Tx, s: &Scope, after: i64) -> CoreResult<(Vec<Vec<Json>>, Option<i64>)> {
    let mut params: Vec<Value> = vec![s.org.as_str().into(), after.into()];
    let mut sql = String::from(
        "SELECT c.id, c.name, c.type, c.environment, c.workspace_id, c.status, c.last_used_at, c.seq FROM credentials c \
         WHERE c.org_id = $1 AND c.seq > $2",
    );
    cred_filters(&mut sql, &mut params, s);
    params.push(PAGE.into());
    sql.push_str(&format!(" ORDER BY c.seq LIMIT ${}", params.len()));
    let creds = tx.query(&sql, &params)?;
    let next = next_after(&creds, 7)?;
    if creds.is_empty() {
        return Ok((Vec::new(), None));
    }
    let ids: Vec<String> = creds.iter().map(|r| r.text(0)).collect::<Result<_, _>>()?;

    // Connections of these credentials (only in workspaces the caller may read).
    let mut params: Vec<Value> = Vec::new();
    let list = in_list(&mut params, &ids);
    let mut sql = format!(
        "SELECT x.credential_id, x.id, x.name, x.environment, x.workspace_id, x.override_reason, x.last_used_at \
         FROM connections x WHERE x.credential_id IN ({list})"
    );
    push_in(&mut sql, &mut params, "x.workspace_id", s.visible.as_deref());
    sql.push_str(" ORDER BY x.seq");
    let conns = tx.query(&sql, &params)?;
    let mut by_cred: HashMap<String, Vec<&Row>> = HashMap::new();
    for r in &conns {
        by_cred.entry(r.text(0)?).or_default().push(r);
    }

    // Pipelines of those connections.
    let mut pipes: HashMap<String, Vec<(String, String)>> = HashMap::new();
    if !conns.is_empty() {
        let conn_ids: Vec<String> = conns.iter().map(|r| r.text(1)).collect::<Result<_, _>>()?;
        let mut params: Vec<Value> = Vec::new();
        let list = in_list(&mut params, &conn_ids);
        let rows = tx.query(
            &format!(
                "SELECT pc.connection_id, p.id, p.name FROM pipeline_connections pc JOIN pipelines p ON p.id = pc.pipeline_id \
                 WHERE pc.connection_id IN ({list}) ORDER BY p.seq"
            ),
            &params,
        )?;
        for r in rows {
            pipes.entry(r.text(0)?).or_default().push((r.text(1)?, r.text(2)?));
        }
    }

    // Last review per credential.
    let mut params: Vec<Value> = Vec::new();
    let list = in_list(&mut params, &ids);
    let rows = tx.query(
        &format!("SELECT credential_id, created_at, decision, reviewer_id FROM reviews WHERE credential_id IN ({list}) ORDER BY seq"),
        &params,
    )?;
    let mut reviews: HashMap<String, (i64, String, String)> = HashMap::new();
    for r in rows {
        reviews.insert(r.text(0)?, (r.int(1)?, r.text(2)?, r.text(3)?));
    }

    let mut out = Vec::new();
    for c in &creds {
        let id = c.text(0)?;
        let (name, env) = (c.text(1)?, c.text(3)?);
        let review = reviews.get(&id);
        let cred_cols = [
            json!(id),
            json!(name),
            json!(c.text(2)?),
            json!(env),
            json!(c.opt_text(4)?),
            json!(c.text(5)?),
            opt_ts(c, 6)?,
        ];
        let review_cols = [
            json!(review.map(|r| to_rfc3339(r.0))),
            json!(review.map(|r| r.1.clone())),
            json!(review.map(|r| r.2.clone())),
        ];
        let cred_warnings: Vec<String> = naming_warning(&name, &env)
            .into_iter()
            .map(|w| format!("credential: {w}"))
            .collect();
        match by_cred.get(&id) {
            None => {
                let mut row: Vec<Json> = cred_cols.to_vec();
                row.extend([
                    Json::Null,
                    Json::Null,
                    Json::Null,
                    Json::Null,
                    Json::Null,
                    Json::Null,
                    json!([]),
                    json!([]),
                ]);
                row.extend(review_cols.iter().cloned());
                row.push(json!(cred_warnings));
                out.push(row);
            }
            Some(list) => {
                for x in list {
                    let (xid, xname, xenv) = (x.text(1)?, x.text(2)?, x.text(3)?);
                    let ps = pipes.get(&xid).cloned().unwrap_or_default();
                    let mut warnings = cred_warnings.clone();
                    warnings.extend(naming_warning(&xname, &xenv).map(|w| format!("connection: {w}")));
                    if xenv != env {
                        warnings.push(format!(
                            "environment override: credential `{env}` on connection `{xenv}`"
                        ));
                    }
                    let mut row: Vec<Json> = cred_cols.to_vec();
                    row.extend([
                        json!(xid),
                        json!(xname),
                        json!(xenv),
                        json!(x.text(4)?),
                        json!(x.opt_text(5)?),
                        opt_ts(x, 6)?,
                        json!(ps.iter().map(|p| p.0.clone()).collect::<Vec<_>>()),
                        json!(ps.iter().map(|p| p.1.clone()).collect::<Vec<_>>()),
                    ]);
                    row.extend(review_cols.iter().cloned());
                    row.push(json!(warnings));
                    out.push(row);
                }
            }
        }
    }
    Ok((out, next))
}

impl Service {
    /// Starts streaming a report (organization-level `audit.read`, or workspace-level for
    /// `workspace_id`). The export itself is audited.
    pub async fn report(&self, ctx: &RequestCtx, actor: &Arc<Actor>, req: ReportRequest) -> CoreResult<ReportStream> {
        let days = req.days.unwrap_or(req.kind.default_days());
        if !(0..=3650).contains(&days) {
            return Err(CoreError::invalid(
                "days",
                Code::OutOfRange,
                "must be between 0 and 3650",
            ));
        }
        let org = req.org_id.clone().unwrap_or_else(|| actor.org_id.to_string());
        let (kind, workspace) = (req.kind, req.workspace_id.clone());
        let what = (Action::ReportRead, Permission::AuditRead);
        let scope = self
            .operate_list(
                ctx,
                actor,
                Mode::Write,
                &org.clone(),
                workspace.clone(),
                what,
                move |ops, visible| {
                    ops.record(
                        Draft::new(Action::ReportRead, "report", kind.as_str(), org.as_str())
                            .workspace(workspace.as_deref())
                            .details(json!({"report": kind.as_str(), "days": days})),
                    )?;
                    Ok(Scope {
                        org,
                        visible,
                        workspace,
                        days,
                        now: now_micros(),
                    })
                },
            )
            .await?;
        let (sender, rows) = mpsc::channel(PAGE as usize);
        let svc = self.clone();
        tokio::spawn(async move {
            let mut after = 0i64;
            loop {
                let s = scope.clone();
                let r = svc.inner.store.read(move |tx| page(tx, kind, &s, after)).await;
                match r {
                    Ok((rows, next)) => {
                        for row in rows {
                            if sender.send(Ok(row)).await.is_err() {
                                return; // the client went away
                            }
                        }
                        match next {
                            Some(n) => after = n,
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = sender.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(ReportStream {
            kind,
            columns: kind.columns(),
            rows,
        })
    }

    /// Records a review of a credential (`audit.read`: admins and auditors).
    pub async fn create_review(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: CreateReview,
    ) -> CoreResult<ReviewView> {
        if !["keep", "remove"].contains(&req.decision.as_str()) {
            return Err(CoreError::invalid(
                "decision",
                Code::InvalidDecision,
                "must be keep or remove",
            ));
        }
        if req.note.as_ref().is_some_and(|n| n.len() > 4096) {
            return Err(CoreError::invalid("note", Code::TooLong, "must be at most 4096 bytes"));
        }
        let id = id.to_owned();
        let prepare = credential_plan(&id, true, Access::Read, Permission::AuditRead, Action::CredentialReview);
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, c| {
            let a = ops.actor().clone();
            let now = now_micros();
            let rid = credvault_domain::ReviewId::generate().to_string();
            ops.tx().execute(
                "INSERT INTO reviews (id, org_id, credential_id, reviewer_id, decision, note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    rid.as_str().into(),
                    c.org_id.as_str().into(),
                    id.as_str().into(),
                    a.principal_id.as_str().into(),
                    req.decision.as_str().into(),
                    req.note.clone().into(),
                    now.into(),
                ],
            )?;
            ops.tx().execute("UPDATE credentials SET last_reviewed_at = $1 WHERE id = $2", &[now.into(), id.as_str().into()])?;
            ops.record(c.draft(Action::CredentialReview).details(json!({"decision": req.decision, "note": req.note})))?;
            Ok(ReviewView {
                id: rid,
                credential_id: id,
                reviewer_id: a.principal_id.to_string(),
                decision: req.decision,
                note: req.note,
                created_at: to_rfc3339(now),
            })
        })
        .await
    }

    /// Reviews of a credential, newest last.
    pub async fn list_reviews(&self, ctx: &RequestCtx, actor: &Arc<Actor>, id: &str) -> CoreResult<Vec<ReviewView>> {
        let id = id.to_owned();
        let prepare = credential_plan(
            &id,
            false,
            Access::Read,
            Permission::MetadataRead,
            Action::CredentialRead,
        );
        self.operate(ctx, actor, Mode::Read, prepare, move |ops, _| {
            let rows = ops.tx().query(
                "SELECT id, credential_id, reviewer_id, decision, note, created_at FROM reviews WHERE credential_id = $1 ORDER BY seq",
                &[id.as_str().into()],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(ReviewView {
                        id: r.text(0)?,
                        credential_id: r.text(1)?,
                        reviewer_id: r.text(2)?,
                        decision: r.text(3)?,
                        note: r.opt_text(4)?,
                        created_at: to_rfc3339(r.int(5)?),
                    })
                })
                .collect()
        })
        .await
    }
}
