//! The lifecycle beyond create: one-call rotation (stage → test every dependent → promote
//! only if all passed), purge (crypto-shredding), the scheduler (expiry and rotation alerts,
//! grace ends, purge after the recovery window) and offboarding.

use crate::actions::Action;
use credvault_domain::problems::Code;
use credvault_domain::states::{CredentialStatus, VersionState};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use credvault_domain::roles::Permission;
use credvault_domain::time::{DAY, Micros, now_micros, to_rfc3339};
use credvault_domain::{OrgId, PrincipalId, PrincipalKind};
use credvault_store::{Engine, Tx};

use crate::Service;
use crate::audit::{self, ActorRef, Draft, Outcome};
use crate::auth::Scope;
use crate::context::{Actor, RequestCtx};
use crate::credentials::{Access, CredRow, credential_plan, load_cred};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode, Plan};
use crate::tenancy::settings_of;
use crate::testing::{CredentialTest, TestRequest};
use crate::views::{CreateVersion, CreatedVersion, VersionMode};

/// Request: rotate in one call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// The complete fields of the new version.
    pub fields: serde_json::Value,
    /// Top-level fields to carry over from the current version (see [`CreateVersion::keep`]).
    #[serde(default)]
    pub keep: Vec<String>,
    /// Dependents of a kind Test connection cannot check here (their test answers
    /// `unsupported`, e.g. Snowflake) do not block promotion; they are listed in
    /// `untested_connections`. Every other failure still does.
    #[serde(default)]
    pub allow_untestable: bool,
}

impl std::fmt::Debug for RotateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RotateRequest { .. }")
    }
}

impl Drop for RotateRequest {
    fn drop(&mut self) {
        credvault_domain::secret::zeroize_json(&mut self.fields);
    }
}

/// Result of a one-call rotation.
#[derive(Clone, Debug, Serialize)]
pub struct Rotation {
    /// The credential.
    pub credential_id: String,
    /// The new version.
    pub version: i64,
    /// Whether it was promoted (every dependent connection passed).
    pub promoted: bool,
    /// `current` if promoted, otherwise `pending`.
    pub state: VersionState,
    /// Connections whose test failed (the reason it was not promoted).
    pub failed_connections: Vec<String>,
    /// Connections that could not be tested (`unsupported`); with `allow_untestable` they
    /// did not block promotion, so check them by hand.
    pub untested_connections: Vec<String>,
    /// Every test result.
    pub tests: CredentialTest,
}

/// Result of a purge.
#[derive(Clone, Debug, Serialize)]
pub struct Purged {
    /// The credential.
    pub credential_id: String,
    /// Versions whose keys and ciphertext were destroyed.
    pub versions_destroyed: i64,
    /// RFC 3339.
    pub purged_at: String,
}

/// Request: offboard a principal.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffboardRequest {
    /// A service account of the same organization to take over ownership.
    #[serde(default)]
    pub transfer_to: Option<PrincipalId>,
}

/// Result of offboarding.
#[derive(Clone, Debug, Serialize)]
pub struct Offboarded {
    /// Who.
    pub principal_id: String,
    /// Tokens revoked now.
    pub tokens_revoked: i64,
    /// The principal is disabled.
    pub disabled: bool,
    /// Credentials it created or owns.
    pub credentials: Vec<OwnedCredential>,
    /// The new owner, if ownership moved.
    pub transferred_to: Option<String>,
    /// OAuth grants this principal authorized (re-authorize them under a service account with
    /// `POST /v1/credentials/{id}/oauth/authorize {"as": "sa_…"}`).
    pub oauth_grants: Vec<OwnedCredential>,
}

/// A credential in an offboarding listing.
#[derive(Clone, Debug, Serialize)]
pub struct OwnedCredential {
    /// ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: String,
    /// `owner` and/or `creator`.
    pub relation: Vec<String>,
}

/// What one scheduler pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TickReport {
    /// Whether this node held the scheduler lock (PostgreSQL: one leader at a time).
    pub leader: bool,
    /// Alert events emitted, by action.
    pub alerts: Vec<String>,
    /// Previous versions revoked because their grace ended.
    pub grace_revoked: i64,
    /// Credentials purged because their recovery window ended.
    pub purged: Vec<String>,
    /// Browser sessions deleted (ended or expired more than a day ago).
    pub sessions_removed: i64,
    /// Device cookies deleted (past their lifetime).
    pub devices_removed: i64,
    /// OAuth grants idle past `oauth_keepalive_days` that this pass refreshed (leader only;
    /// a failure shows as the grant's health and its alert).
    pub oauth_kept_alive: Vec<String>,
}

impl Service {
    /// RFC 7009: revokes an OAuth credential's refresh token at the provider (where a
    /// revocation_url is configured), before a purge or when its grant is revoked. Best effort:
    /// `revoked`, `failed: …`, or None when there was nothing to revoke.
    pub(crate) async fn revoke_oauth_at_provider(&self, id: &str) -> Option<String> {
        let keyring = self.keyring().ok()?.clone();
        let cid = id.to_owned();
        let fields = self
            .inner
            .store
            .read(
                move |tx: &mut dyn Tx| -> CoreResult<Option<(serde_json::Value, crate::credentials::CredRow)>> {
                    let c = load_cred(tx, &cid, false)?;
                    if c.ty != "oauth" || c.status == CredentialStatus::Purged {
                        return Ok(None);
                    }
                    Ok(
                        crate::credentials::decrypt_version(tx, &keyring, &c.org_id, &c.id, c.current_version)
                            .ok()
                            .map(|f| (f, c)),
                    )
                },
            )
            .await
            .ok()??;
        let (mut fields, c) = fields;
        let policy = crate::destinations::policy_for(&self.inner.config.egress, &c, &fields);
        // Borrowed from the decrypted fields, which are zeroized below: no secret is copied.
        let (url, token) = (
            crate::oauth::str_field(&fields, "revocation_url"),
            crate::oauth::str_field(&fields, "refresh_token"),
        );
        let result = if url.is_empty() || token.is_empty() {
            None
        } else {
            Some(
                match credvault_connect::oauth::revoke(
                    &policy,
                    url,
                    crate::oauth::client_auth(&fields),
                    token,
                    "refresh_token",
                )
                .await
                {
                    Ok(()) => "revoked".to_owned(),
                    Err(e) => format!("failed: {e}"),
                },
            )
        };
        credvault_domain::secret::zeroize_json(&mut fields);
        result
    }
}

/// Destroys the key material of every version of a credential.
fn destroy_versions(tx: &mut dyn Tx, cred: &str, now: Micros) -> CoreResult<i64> {
    let n = credvault_store::versions::destroy_all(tx, cred, now)?;
    tx.execute(
        "UPDATE credentials SET status = 'purged', updated_at = $1 WHERE id = $2",
        &[now.into(), cred.into()],
    )?;
    Ok(n as i64)
}

/// Alerts ahead of a date (`at`): of the thresholds (days before it) crossed by `now`, the
/// tightest fires once; wider ones crossed at the same time are marked as sent without a
/// second alert. Returns the threshold that fired.
#[allow(clippy::too_many_arguments)]
fn threshold_alert(
    tx: &mut dyn Tx,
    ctx: &RequestCtx,
    cred: &str,
    org: &str,
    ws: Option<&str>,
    action: Action,
    thresholds: &[u32],
    at: Micros,
    now: Micros,
    details: impl Fn(u32) -> serde_json::Value,
) -> CoreResult<Option<u32>> {
    let mut crossed: Vec<u32> = thresholds
        .iter()
        .copied()
        .filter(|d| at - now <= i64::from(*d) * DAY)
        .collect();
    crossed.sort_unstable();
    let Some(tightest) = crossed.first().copied() else {
        return Ok(None);
    };
    let fired = alert_once(
        tx,
        ctx,
        cred,
        org,
        ws,
        action,
        i64::from(tightest),
        at,
        now,
        details(tightest),
    )?;
    for wider in crossed.iter().skip(1) {
        tx.execute(
            "INSERT INTO alerts_sent (credential_id, kind, threshold, ref_time, sent_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
            &[
                cred.into(),
                action.as_str().into(),
                i64::from(*wider).into(),
                at.into(),
                now.into(),
            ],
        )?;
    }
    Ok(fired.then_some(tightest))
}

/// Emits an alert once per (credential, kind, threshold, reference time).
#[allow(clippy::too_many_arguments)]
fn alert_once(
    tx: &mut dyn Tx,
    ctx: &RequestCtx,
    cred: &str,
    org: &str,
    ws: Option<&str>,
    action: Action,
    threshold: i64,
    ref_time: Micros,
    now: Micros,
    details: serde_json::Value,
) -> CoreResult<bool> {
    let seen = tx
        .query_opt(
            "SELECT 1 FROM alerts_sent WHERE credential_id = $1 AND kind = $2 AND threshold = $3 AND ref_time = $4",
            &[cred.into(), action.as_str().into(), threshold.into(), ref_time.into()],
        )?
        .is_some();
    if seen {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO alerts_sent (credential_id, kind, threshold, ref_time, sent_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            cred.into(),
            action.as_str().into(),
            threshold.into(),
            ref_time.into(),
            now.into(),
        ],
    )?;
    audit::append(
        tx,
        ctx,
        &ActorRef::system(),
        &Draft::new(action, "credential", cred, org)
            .workspace(ws)
            .outcome(Outcome::Success)
            .details(details),
    )?;
    Ok(true)
}

/// One scheduler pass at time `now`, in one transaction.
fn tick(tx: &mut dyn Tx, now: Micros) -> CoreResult<TickReport> {
    let mut report = TickReport::default();
    if tx.engine() == Engine::Postgres {
        // One leader per pass across nodes: whoever takes the lock does the work.
        let got = tx.query_one("SELECT pg_try_advisory_xact_lock(7283412002)", &[])?;
        let held = match got.int(0) {
            Ok(v) => v != 0,
            Err(_) => got.bool(0).unwrap_or(false),
        };
        if !held {
            return Ok(report);
        }
    }
    report.leader = true;
    // Browser sessions that ended or expired more than a day ago are of no further use (the
    // audit journal keeps their sign-in and sign-out).
    report.sessions_removed = tx.execute(
        "DELETE FROM ui_sessions WHERE expires_at < $1 OR revoked_at < $1 OR last_seen < $2",
        &[
            (now - DAY).into(),
            (now - DAY - crate::SESSION_IDLE_SECS * 1_000_000).into(),
        ],
    )? as i64;
    // Device cookies past their lifetime no longer count for anything.
    report.devices_removed = tx.execute("DELETE FROM ui_devices WHERE expires_at < $1", &[now.into()])? as i64;
    let ctx = RequestCtx {
        request_id: String::new(),
        source_ip: None,
        user_agent: Some("credvault scheduler".into()),
        received_at: 0,
    };
    let orgs = tx.query("SELECT id FROM orgs ORDER BY seq", &[])?;
    for o in orgs {
        let org = o.text(0)?;
        let settings = settings_of(tx, &org, "organization")?;
        // How far ahead the widest alert threshold looks.
        let horizon = now + i64::from(settings.expiry_alert_days.iter().copied().max().unwrap_or(0)) * DAY;
        // Expiry: thresholds, then expired.
        let rows = tx.query(
            "SELECT id, workspace_id, expires_at, name FROM credentials WHERE org_id = $1 AND status IN ('active', 'disabled') \
             AND expires_at IS NOT NULL AND expires_at <= $2",
            &[org.as_str().into(), horizon.into()],
        )?;
        for r in rows {
            let (id, ws, exp, name) = (r.text(0)?, r.opt_text(1)?, r.int(2)?, r.text(3)?);
            if exp <= now {
                if alert_once(
                    tx,
                    &ctx,
                    &id,
                    &org,
                    ws.as_deref(),
                    Action::CredentialExpired,
                    0,
                    exp,
                    now,
                    json!({"name": name, "expired_at": to_rfc3339(exp)}),
                )? {
                    report.alerts.push(format!("credential.expired {id}"));
                }
                continue;
            }
            let details = |tightest: u32| json!({"name": name, "expires_at": to_rfc3339(exp), "threshold_days": tightest, "days_left": (exp - now) / DAY});
            if let Some(d) = threshold_alert(
                tx,
                &ctx,
                &id,
                &org,
                ws.as_deref(),
                Action::CredentialExpiring,
                &settings.expiry_alert_days,
                exp,
                now,
                details,
            )? {
                report.alerts.push(format!("credential.expiring {id} {d}d"));
            }
        }
        // Rotation: overdue once a period has ended; before that, the same thresholds as
        // expiry (those shorter than the period) warn that it is due. One query for both.
        let rows = tx.query(
            "SELECT c.id, c.workspace_id, c.name, c.rotation_period_days, v.created_at FROM credentials c \
             JOIN credential_versions v ON v.credential_id = c.id AND v.version = c.current_version \
             WHERE c.org_id = $1 AND c.status IN ('active', 'disabled') AND c.rotation_period_days IS NOT NULL \
             AND v.created_at + c.rotation_period_days * $2 <= $3",
            &[org.as_str().into(), DAY.into(), horizon.into()],
        )?;
        for r in rows {
            let (id, ws, name, period, since) = (r.text(0)?, r.opt_text(1)?, r.text(2)?, r.int(3)?, r.int(4)?);
            let due = since + period * DAY;
            if due <= now {
                let details = json!({"name": name, "rotation_period_days": period, "current_since": to_rfc3339(since), "due_at": to_rfc3339(due)});
                if alert_once(
                    tx,
                    &ctx,
                    &id,
                    &org,
                    ws.as_deref(),
                    Action::CredentialRotationOverdue,
                    period,
                    since,
                    now,
                    details,
                )? {
                    report.alerts.push(format!("credential.rotation_overdue {id}"));
                }
                continue;
            }
            // Only thresholds shorter than the period: a 30-day period must not warn "due in
            // 30 days" the moment a version is made.
            let thresholds: Vec<u32> = settings
                .expiry_alert_days
                .iter()
                .copied()
                .filter(|d| i64::from(*d) < period)
                .collect();
            let details = |tightest: u32| {
                json!({"name": name, "rotation_period_days": period, "current_since": to_rfc3339(since), "due_at": to_rfc3339(due),
                       "threshold_days": tightest, "days_left": (due - now) / DAY})
            };
            if let Some(d) = threshold_alert(
                tx,
                &ctx,
                &id,
                &org,
                ws.as_deref(),
                Action::CredentialRotationDue,
                &thresholds,
                due,
                now,
                details,
            )? {
                report.alerts.push(format!("credential.rotation_due {id} {d}d"));
            }
        }
        // Grace of previous versions.
        let grace = i64::from(settings.previous_grace_hours) * 3_600_000_000;
        let rows = tx.query(
            "SELECT v.credential_id, v.version, c.workspace_id FROM credential_versions v JOIN credentials c ON c.id = v.credential_id \
             WHERE c.org_id = $1 AND v.state = 'previous' AND v.state_changed_at + $2 <= $3",
            &[org.as_str().into(), grace.into(), now.into()],
        )?;
        for r in rows {
            let (id, version, ws) = (r.text(0)?, r.int(1)?, r.opt_text(2)?);
            tx.execute(
                "UPDATE credential_versions SET state = 'revoked', state_changed_at = $1 WHERE credential_id = $2 AND version = $3",
                &[now.into(), id.as_str().into(), version.into()],
            )?;
            audit::append(
                tx,
                &ctx,
                &ActorRef::system(),
                &Draft::new(Action::CredentialVersionRevoke, "credential", id.as_str(), org.as_str())
                    .workspace(ws.as_deref())
                    .details(json!({"version": version, "was": "previous", "reason": "grace period ended"})),
            )?;
            report.grace_revoked += 1;
        }
        // Purge after the recovery window.
        let window = i64::from(settings.recovery_window_days) * DAY;
        let rows = tx.query(
            "SELECT id, workspace_id FROM credentials WHERE org_id = $1 AND status = 'pending_deletion' AND deleted_at + $2 <= $3",
            &[org.as_str().into(), window.into(), now.into()],
        )?;
        for r in rows {
            let (id, ws) = (r.text(0)?, r.opt_text(1)?);
            let n = destroy_versions(tx, &id, now)?;
            audit::append(
                tx,
                &ctx,
                &ActorRef::system(),
                &Draft::new(Action::CredentialPurge, "credential", id.as_str(), org.as_str())
                    .workspace(ws.as_deref())
                    .details(json!({"reason": "recovery window elapsed", "versions_destroyed": n})),
            )?;
            report.purged.push(id);
        }
    }
    Ok(report)
}

impl Service {
    /// Stages a new version, tests every dependent connection with it, and promotes it only if
    /// all passed (a credential with no dependents is promoted). Otherwise it stays `pending`.
    pub async fn rotate(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        mut req: RotateRequest,
    ) -> CoreResult<Rotation> {
        let fields = std::mem::take(&mut req.fields);
        let CreatedVersion { version, .. } = self
            .create_version(
                ctx,
                actor,
                id,
                CreateVersion {
                    fields,
                    mode: VersionMode::Stage,
                    keep: std::mem::take(&mut req.keep),
                },
            )
            .await?;
        let tests = self
            .test_credential_as(ctx, actor, id, TestRequest { version: Some(version) }, true)
            .await?;
        // Kinds this build cannot test at all (their answer says nothing about the secret);
        // an `unsupported` answer from a testable kind is a real failure.
        let untestable = |r: &&crate::testing::ConnectionTest| !credvault_connect::testable(&r.connection_kind);
        let untested: Vec<String> = tests
            .results
            .iter()
            .filter(untestable)
            .map(|r| r.connection_id.clone())
            .collect();
        let failed: Vec<String> = tests
            .results
            .iter()
            .filter(|r| !r.outcome.ok && (!req.allow_untestable || !untestable(r)))
            .map(|r| r.connection_id.clone())
            .collect();
        let promoted = failed.is_empty();
        if promoted {
            // Record which dependents went untested, when that was allowed.
            let noted: &[String] = if req.allow_untestable { &untested } else { &[] };
            self.promote_version_noted(ctx, actor, id, version, noted).await?;
        }
        Ok(Rotation {
            credential_id: id.to_owned(),
            version,
            promoted,
            state: if promoted {
                VersionState::Current
            } else {
                VersionState::Pending
            },
            failed_connections: failed,
            untested_connections: untested,
            tests,
        })
    }

    /// Destroys every version's data key and ciphertext now (admins, with a reason). The
    /// credential stays as a tombstone (`purged`) so audit trails keep their target.
    pub async fn purge_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        reason: &str,
    ) -> CoreResult<Purged> {
        let reason = reason.trim().to_owned();
        if reason.is_empty() || reason.len() > 1024 {
            return Err(CoreError::invalid(
                "reason",
                Code::ReasonRequired,
                "a purge needs a written reason (1–1024 bytes)",
            ));
        }
        // Every check first (a refused purge must not revoke a live grant at the provider),
        // then the provider revocation outside any transaction, then the purge, which checks
        // again under the row lock.
        let plan = |lock| {
            credential_plan(
                id,
                lock,
                Access::Write,
                Permission::CredentialDelete,
                Action::CredentialPurge,
            )
        };
        self.operate(ctx, actor, Mode::Read, plan(false), |ops, c| {
            purge_allowed(ops.tx(), &c)
        })
        .await?;
        let revocation = self.revoke_oauth_at_provider(id).await;
        let purged = self
            .operate(ctx, actor, Mode::Write, plan(true), move |ops, c| {
                purge_allowed(ops.tx(), &c)?;
                let now = now_micros();
                let n = destroy_versions(ops.tx(), &c.id, now)?;
                ops.record(
                    ops.event()
                        .details(json!({"reason": reason, "versions_destroyed": n, "provider_revocation": revocation})),
                )?;
                Ok(Purged {
                    credential_id: c.id.clone(),
                    versions_destroyed: n,
                    purged_at: to_rfc3339(now),
                })
            })
            .await?;
        if let Err(e) = self.inner.store.scrub_deleted().await {
            // The keys are destroyed in the database; a stale copy in the WAL goes with the next
            // scheduler pass or at shutdown.
            tracing::warn!(error = %e, "purge committed; scrubbing stale copies is deferred");
        }
        Ok(purged)
    }

    /// One scheduler pass at `now` (the background loop passes the clock; tests and the
    /// `credvault scheduler tick` command pass a chosen time).
    pub async fn scheduler_tick(&self, now: Micros) -> CoreResult<TickReport> {
        // Credentials an older node created during a rolling upgrade have no allowed set yet.
        self.migrate_destinations().await?;
        let mut report = self.inner.store.write(move |tx| tick(tx, now)).await?;
        if report.leader {
            report.oauth_kept_alive = self.keep_oauth_grants_alive(now).await?;
        }
        // Every pass scrubs: an earlier purge may have been unable to (a long read held the
        // WAL), and a checkpoint with nothing to do is cheap.
        if let Err(e) = self.inner.store.scrub_deleted().await {
            tracing::warn!(error = %e, "could not scrub deleted key material yet; the next pass retries");
        }
        Ok(report)
    }

    /// Refreshes the authorization-code grants (active, authorized, not waiting for a new
    /// consent) whose tokens were last stored more than `keepalive_days` before `now`.
    async fn keep_oauth_grants_alive(&self, now: Micros) -> CoreResult<Vec<String>> {
        let days = self.inner.config.oauth.keepalive_days;
        if days <= 0 {
            return Ok(Vec::new());
        }
        let before = now - days * DAY;
        let idle: Vec<String> = self
            .inner
            .store
            .read(move |tx: &mut dyn Tx| -> CoreResult<Vec<String>> {
                tx.query(
                    "SELECT id FROM credentials WHERE type = 'oauth' AND variant = 'authorization_code' AND status = 'active' \
                     AND oauth_authorized_by IS NOT NULL AND COALESCE(oauth_health, '') <> 'needs_reauthorization' \
                     AND COALESCE(oauth_refreshed_at, 0) < $1 ORDER BY id",
                    &[before.into()],
                )?
                .iter()
                .map(|r| Ok(r.text(0)?))
                .collect()
            })
            .await?;
        let started = now_micros();
        let mut kept = Vec::new();
        for id in idle {
            match self.keep_grant_alive(&id, started).await {
                Ok(()) => kept.push(id),
                Err(e) => tracing::warn!(credential = %id, error = %e, "OAuth keepalive refresh failed"),
            }
        }
        Ok(kept)
    }

    /// Offboards a principal: revokes its tokens, disables it, lists what it created or owns,
    /// and optionally moves ownership to a service account (admins).
    pub async fn offboard(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: OffboardRequest,
    ) -> CoreResult<Offboarded> {
        let id = id.to_owned();
        let prepare = {
            let id = id.clone();
            move |tx: &mut dyn Tx| {
                let Some(p) = tx.query_opt(
                    "SELECT org_id, instance_admin FROM principals WHERE id = $1",
                    &[id.as_str().into()],
                )?
                else {
                    return Err(CoreError::NotFound { what: "principal" });
                };
                let org = OrgId::from_trusted(p.text(0)?);
                let draft = || Draft::new(Action::PrincipalOffboard, "principal", id.as_str(), org.as_str());
                let check = Check::new(Scope::Org(&org), Permission::OrgAdmin, "principal", draft());
                Ok(Plan::new((org, p), check))
            }
        };
        self.operate(ctx, actor, Mode::Write, prepare, move |ops, (org, p)| {
            let a = ops.actor().clone();
            if p.bool(1)? && !a.instance_admin {
                return Err(ops.forbid(Permission::OrgAdmin));
            }
            if id == a.principal_id.as_str() {
                return Err(CoreError::conflict(Code::CannotOffboardSelf, "a principal cannot offboard itself"));
            }
            if let Some(t) = &req.transfer_to {
                if t.as_str() == id {
                    return Err(CoreError::invalid("transfer_to", Code::SamePrincipal, "ownership cannot move to the principal being offboarded"));
                }
                if t.kind() != PrincipalKind::ServiceAccount {
                    return Err(CoreError::invalid("transfer_to", Code::NotAServiceAccount, "ownership moves to a service account"));
                }
                let ok = ops.tx()
                    .query_opt("SELECT 1 FROM principals WHERE id = $1 AND org_id = $2 AND disabled = 0", &[t.as_str().into(), org.as_str().into()])?
                    .is_some();
                if !ok {
                    return Err(CoreError::invalid("transfer_to", Code::NotFound, "no such active service account in this organization"));
                }
            }
            let now = now_micros();
            let revoked = ops.tx().execute(
                "UPDATE tokens SET revoked_at = $1 WHERE principal_id = $2 AND revoked_at IS NULL",
                &[now.into(), id.as_str().into()],
            )? as i64;
            ops.tx().execute("UPDATE principals SET disabled = 1 WHERE id = $1", &[id.as_str().into()])?;
            ops.tx().execute(
                "UPDATE ui_sessions SET revoked_at = $1 WHERE principal_id = $2 AND revoked_at IS NULL",
                &[now.into(), id.as_str().into()],
            )?;
            ops.tx().execute("DELETE FROM ui_devices WHERE principal_id = $1", &[id.as_str().into()])?;
            let rows = ops.tx().query(
                "SELECT id, name, type, owner_id, created_by, workspace_id FROM credentials WHERE org_id = $1 AND (owner_id = $2 OR created_by = $2) \
                 AND status <> 'purged' ORDER BY seq",
                &[org.as_str().into(), id.as_str().into()],
            )?;
            let mut credentials = Vec::new();
            for r in &rows {
                let (cid, owner, creator) = (r.text(0)?, r.opt_text(3)?, r.text(4)?);
                let mut relation = Vec::new();
                if owner.as_deref() == Some(id.as_str()) {
                    relation.push("owner".to_owned());
                }
                if creator == id {
                    relation.push("creator".to_owned());
                }
                if let Some(t) = &req.transfer_to {
                    ops.tx().execute("UPDATE credentials SET owner_id = $1, updated_at = $2 WHERE id = $3", &[t.as_str().into(), now.into(), cid.as_str().into()])?;
                    ops.record(Draft::new(Action::CredentialTransfer, "credential", cid.as_str(), org.as_str())
                            .workspace(r.opt_text(5)?.as_deref())
                            .details(json!({"from": owner, "to": t.as_str(), "reason": "offboarding"})))?;
                }
                credentials.push(OwnedCredential { id: cid, name: r.text(1)?, ty: r.text(2)?, relation });
            }
            ops.record(ops.event().details(json!({"tokens_revoked": revoked, "credentials": credentials.len(), "transfer_to": req.transfer_to})))?;
            let grants = ops.tx().query(
                "SELECT id, name, type FROM credentials WHERE org_id = $1 AND oauth_authorized_by = $2 AND status <> 'purged' ORDER BY seq",
                &[org.as_str().into(), id.as_str().into()],
            )?;
            let oauth_grants = grants
                .iter()
                .map(|r| Ok(OwnedCredential { id: r.text(0)?, name: r.text(1)?, ty: r.text(2)?, relation: vec!["authorized".into()] }))
                .collect::<CoreResult<Vec<_>>>()?;
            Ok(Offboarded {
                oauth_grants,
                principal_id: id.clone(),
                tokens_revoked: revoked,
                disabled: true,
                credentials,
                transferred_to: req.transfer_to.map(|t| t.to_string()),
            })
        })
        .await
        .inspect(|_| self.clear_token_cache())
    }
}

/// Whether a credential may be purged now (not already purged, attached nowhere).
fn purge_allowed(tx: &mut dyn Tx, c: &CredRow) -> CoreResult<()> {
    if c.status == CredentialStatus::Purged {
        return Err(CoreError::conflict(
            Code::AlreadyPurged,
            "the credential was already purged",
        ));
    }
    if crate::connections::attached_count(tx, &c.id)? > 0 {
        return Err(CoreError::conflict(
            Code::CredentialInUse,
            "the credential is attached to connections; detach it first",
        ));
    }
    if !crate::testing::chain_users(tx, &c.id)?.is_empty() {
        return Err(CoreError::conflict(
            Code::CredentialInUse,
            "the credential is the source of AWS role chains; change or delete those credentials first",
        ));
    }
    Ok(())
}
