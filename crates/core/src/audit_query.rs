//! Reading the audit journal: filtered, paginated queries and chain verification, both
//! behind `audit.read`.

use crate::actions::Action;
use credvault_domain::problems::Code;
use std::sync::Arc;

use credvault_domain::roles::Permission;
use credvault_domain::time::parse_rfc3339;
use credvault_store::{Tx, Value};

use crate::Service;
use crate::audit::{EVENT_COLUMNS, Event, INSTANCE_CHAIN, StoredEvent, Verification, verify_org};
use crate::context::{Actor, RequestCtx};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode, Plan};
use crate::views::{AuditFilter, Page, decode_cursor, encode_cursor};

impl Service {
    /// Audit events of an organization, oldest first. Organization-level auditors see every
    /// event; workspace-level auditors see the events of their workspaces.
    pub async fn list_audit(&self, ctx: &RequestCtx, actor: &Arc<Actor>, f: AuditFilter) -> CoreResult<Page<Event>> {
        let after = match (f.cursor.as_deref(), f.after_seq) {
            (Some(_), Some(_)) => {
                return Err(CoreError::invalid(
                    "after_seq",
                    Code::ConflictingParameters,
                    "give cursor or after_seq, not both",
                ));
            }
            (_, Some(s)) => s,
            (c, None) => decode_cursor(c)?,
        };
        let limit = self.page_limit(f.limit);
        let since = match &f.since {
            Some(s) => Some(
                parse_rfc3339(s)
                    .ok_or_else(|| CoreError::invalid("since", Code::InvalidTimestamp, "must be RFC 3339"))?,
            ),
            None => None,
        };
        let until = match &f.until {
            Some(s) => Some(
                parse_rfc3339(s)
                    .ok_or_else(|| CoreError::invalid("until", Code::InvalidTimestamp, "must be RFC 3339"))?,
            ),
            None => None,
        };
        if let Some(o) = &f.outcome
            && !["success", "denied", "error"].contains(&o.as_str())
        {
            return Err(CoreError::invalid(
                "outcome",
                Code::InvalidOutcome,
                "must be success, denied or error",
            ));
        }
        let org = f.org_id.clone().unwrap_or_else(|| actor.org_id.to_string());
        let asked = f.workspace_id.clone();
        let query = move |tx: &mut dyn Tx, chain: &str, ws_only: Option<Vec<String>>| -> CoreResult<Page<Event>> {
            // An organization's events are on all its shards: select them by organization.
            let by = if chain == INSTANCE_CHAIN { "chain" } else { "org_id" };
            let mut sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE {by} = $1 AND seq > $2");
            let mut params: Vec<Value> = vec![chain.into(), after.into()];
            if let Some(ws) = &ws_only {
                let mut clause = String::from(" AND workspace_id IN (");
                let mut first = true;
                for w in ws {
                    params.push(w.as_str().into());
                    if !first {
                        clause.push_str(", ");
                    }
                    first = false;
                    clause.push_str(&format!("${}", params.len()));
                }
                clause.push(')');
                sql.push_str(&clause);
            }
            let mut add = |sql: &mut String, col: &str, v: Value| {
                params.push(v);
                sql.push_str(&format!(" AND {col} ${}", params.len()));
            };
            if let Some(v) = &f.workspace_id {
                add(&mut sql, "workspace_id =", v.as_str().into());
            }
            if let Some(v) = &f.action {
                add(&mut sql, "action =", v.as_str().into());
            }
            if let Some(v) = &f.actor_id {
                add(&mut sql, "actor_id =", v.as_str().into());
            }
            if let Some(v) = &f.target_id {
                add(&mut sql, "target_id =", v.as_str().into());
            }
            if let Some(v) = &f.outcome {
                add(&mut sql, "outcome =", v.as_str().into());
            }
            if let Some(v) = since {
                add(&mut sql, "at >=", v.into());
            }
            if let Some(v) = until {
                add(&mut sql, "at <", v.into());
            }
            params.push((limit as i64 + 1).into());
            sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
            let rows = tx.query(&sql, &params)?;
            let more = rows.len() > limit;
            let mut items = Vec::with_capacity(limit.min(rows.len()));
            for r in rows.iter().take(limit) {
                items.push(StoredEvent::from_row(r)?.into_event());
            }
            let next_cursor = if more {
                items.last().map(|e| encode_cursor(e.seq))
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        };
        if org == INSTANCE_CHAIN && actor.instance_admin {
            return self.inner.store.read(move |tx| query(tx, INSTANCE_CHAIN, None)).await;
        }
        let what = (Action::AuditRead, Permission::AuditRead);
        self.operate_list(
            ctx,
            actor,
            Mode::Read,
            &org.clone(),
            asked,
            what,
            move |ops, visible| query(ops.tx(), &org, visible),
        )
        .await
    }

    /// Verifies an organization's chain (organization-level `audit.read`).
    pub async fn verify_audit(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        org_id: Option<&str>,
    ) -> CoreResult<Verification> {
        let org = org_id.map(str::to_owned).unwrap_or_else(|| actor.org_id.to_string());
        if org == INSTANCE_CHAIN && actor.instance_admin {
            return self.inner.store.read(|tx| verify_org(tx, INSTANCE_CHAIN)).await;
        }
        let check = Check::org(&org, Permission::AuditRead, Action::AuditVerify)?;
        self.operate(
            ctx,
            actor,
            Mode::Read,
            move |_| Ok(Plan::new((), check)),
            move |ops, ()| verify_org(ops.tx(), &org),
        )
        .await
    }

    /// Opens the audit shards each organization is missing (PostgreSQL; see `audit`'s module
    /// documentation), one organization per transaction. Returns how many were opened.
    pub async fn open_audit_shards(&self) -> CoreResult<usize> {
        if crate::audit::shards_for(self.inner.store.engine()) <= 1 {
            return Ok(0);
        }
        let orgs: Vec<String> = self
            .inner
            .store
            .read(|tx| {
                tx.query("SELECT id FROM orgs ORDER BY id", &[])?
                    .iter()
                    .map(|r| Ok(r.text(0)?))
                    .collect::<CoreResult<Vec<String>>>()
            })
            .await?;
        let mut opened = 0;
        for org in orgs {
            opened += self
                .inner
                .store
                .write(move |tx| crate::audit::open_shards(tx, &org))
                .await?;
        }
        Ok(opened)
    }
}
