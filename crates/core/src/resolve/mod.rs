//! The one door through which plaintext leaves: a worker resolves a connection for a run.
//!
//! One piece of code reads the connection, settings, credential and version, authorizes
//! (`connection.resolve` in the connection's workspace), checks them, decrypts, and drafts the
//! audit event with the last-used stamps it owes. Where its reads come from depends on the
//! store: PostgreSQL reads fresh outside any transaction and writes the record through the
//! node's appender; SQLite runs it on the writer with the record in the same transaction, or —
//! while the store's state is unchanged since a resolve of the same target — replays those
//! reads from memory and sends the writer only the record ([`cache`]). In every case the record
//! is durable before the plaintext is returned, so no secret leaves without it. Refusals
//! (disabled, deleted, expired…) are audited too.

use crate::actions::Action;
use credvault_domain::problems::Code;
use credvault_domain::states::{CredentialStatus, VersionState};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use credvault_domain::roles::Permission;
use credvault_domain::time::now_micros;
use credvault_domain::{ConnectionId, PipelineId};

pub(crate) mod cache;

use cache::CacheEvent;
pub use cache::CacheStats;

use crate::Service;
use crate::appender::{Pending, Stamp};
use crate::audit::{self, ActorRef, Outcome};
use crate::auth::Scope;
use crate::connections::{CONN_COLS, ConnRow, connection_plan, load_conn};
use crate::context::{Actor, RequestCtx};
use crate::credentials::{CRED_COLS, CredRow, SEALED_COLS, load_cred, open_sealed_row};
use crate::destinations::{Dns, check as check_destinations, holders, of_connection, refusal_details};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Check, Mode};
use crate::settings::OrgSettings;
use crate::tenancy::settings_of;

/// Request: resolve a connection for a run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The connection, by ID (or give `workspace_id` and `connection_name`).
    #[serde(default)]
    pub connection_id: Option<String>,
    /// The connection's workspace, when it is named by `connection_name`.
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// The connection's name in `workspace_id` (what tools that know connections by name,
    /// such as Airflow's `conn_id`, give).
    #[serde(default)]
    pub connection_name: Option<String>,
    /// The run this is for (recorded in the audit event).
    pub run_id: String,
    /// The pipeline, if the worker runs one (must reference the connection).
    #[serde(default)]
    pub pipeline_id: Option<String>,
    /// Pin a version: the current one, or the `previous` one while the organization's grace
    /// period after a promotion lasts. Default: the current version.
    #[serde(default)]
    pub version: Option<i64>,
}

/// The connection as a worker needs it.
#[derive(Serialize)]
pub struct ResolvedConnection {
    /// `conn_…`
    pub id: String,
    /// Connector kind.
    pub kind: String,
    /// Non-secret configuration.
    pub config: Json,
}

/// The credential version, with plaintext fields.
#[derive(Serialize)]
pub struct ResolvedCredential {
    /// `cred_…`
    pub id: String,
    /// Type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Variant.
    pub variant: Option<String>,
    /// The version resolved.
    pub version: i64,
    /// All fields, secret ones in plaintext.
    pub fields: Json,
    /// Set when the fields are not the credential's own but made from them:
    /// `rds_iam_token` (`username`, `password`: an RDS IAM token, `expires_at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<&'static str>,
}

/// The answer of a resolve. Holds plaintext: redacted in `Debug`, zeroized on drop.
#[derive(Serialize)]
pub struct Resolved {
    /// The connection.
    pub connection: ResolvedConnection,
    /// The credential.
    pub credential: ResolvedCredential,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("connection", &self.connection.id)
            .field("credential", &self.credential.id)
            .field("fields", &"[redacted]")
            .finish()
    }
}

impl Drop for Resolved {
    fn drop(&mut self) {
        credvault_domain::secret::zeroize_json(&mut self.credential.fields);
    }
}

/// A worker's report of how a resolved credential fared at the target system.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveReport {
    /// The connection that was resolved.
    pub connection_id: String,
    /// The run.
    pub run_id: String,
    /// The version the worker used.
    #[serde(default)]
    pub version: Option<i64>,
    /// `ok`, `auth_failed` (the target refused the credential) or `error`.
    pub outcome: String,
}

/// Columns of [`CONN_COLS`]; the organization's settings follow them.
const CONN_WIDTH: usize = 22;
/// Where [`CRED_COLS`] (21 columns) start in [`resolve_read`]'s row.
const CRED_AT: usize = CONN_WIDTH + 1;
/// Where the version's state, timestamps and sealed columns start.
const VERSION_AT: usize = CRED_AT + 21;

/// Resolve's one read: connection, settings, credential, and the asked (`$2`) or current
/// version. Two statements rather than `COALESCE($2, …)`: a parameter in a join constraint
/// makes SQLite (with STAT4 statistics) prepare the statement again at every bind.
fn resolve_read(asked_version: bool) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 2]> =
        std::sync::LazyLock::new(|| [resolve_read_sql("k.current_version"), resolve_read_sql("$2")]);
    &SQL[usize::from(asked_version)]
}

fn resolve_read_sql(version: &str) -> String {
    format!(
        "SELECT {CONN_COLS}, o.settings, {}, v.state, v.state_changed_at, v.last_resolved_at, {} \
         FROM connections c JOIN orgs o ON o.id = c.org_id \
         LEFT JOIN credentials k ON k.id = c.credential_id \
         LEFT JOIN credential_versions v ON v.credential_id = k.id AND v.version = {version} \
         WHERE c.id = $1",
        CRED_COLS.replace("c.", "k."),
        SEALED_COLS
            .split(", ")
            .map(|col| format!("v.{col}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// What a resolve reads before it decides: the connection, its organization's settings, its
/// credential and the asked (or current) version's state, timestamps and sealed columns.
struct Reads {
    conn: ConnRow,
    settings: OrgSettings,
    cred: Option<CredRow>,
    version: Option<credvault_store::Row>,
}

/// One joined statement on PostgreSQL (a round trip each costs more than the join); on SQLite,
/// where statements are calls into the library, the plain lookups (SQLite re-prepares a
/// joined statement whose plan its statistics tie to the bound values).
fn read_for_resolve(tx: &mut dyn credvault_store::Tx, id: &str, asked: Option<i64>) -> CoreResult<Reads> {
    if ConnectionId::parse(id).is_err() {
        return Err(CoreError::NotFound { what: "connection" });
    }
    if tx.engine() == credvault_store::Engine::Sqlite {
        let conn = load_conn(tx, id, false)?;
        let settings = settings_of(tx, &conn.org_id, "connection")?;
        let Some(cred_id) = conn.credential_id.clone() else {
            return Ok(Reads {
                conn,
                settings,
                cred: None,
                version: None,
            });
        };
        let cred = load_cred(tx, &cred_id, false)?;
        let version = tx.query_opt(
            &format!(
                "SELECT state, state_changed_at, last_resolved_at, {SEALED_COLS} FROM credential_versions WHERE credential_id = $1 AND version = $2"
            ),
            &[cred_id.as_str().into(), asked.unwrap_or(cred.current_version).into()],
        )?;
        return Ok(Reads {
            conn,
            settings,
            cred: Some(cred),
            version,
        });
    }
    let mut params = vec![id.into()];
    params.extend(asked.map(Into::into));
    let joined = tx
        .query_opt(resolve_read(asked.is_some()), &params)?
        .ok_or(CoreError::NotFound { what: "connection" })?;
    let conn = ConnRow::from_row(&joined)?;
    let settings: OrgSettings = match joined.opt_text(CONN_WIDTH)? {
        Some(text) => serde_json::from_str(&text)?,
        None => return Err(CoreError::NotFound { what: "connection" }),
    };
    let cred = match joined.opt_text(CRED_AT)? {
        Some(_) => Some(CredRow::from_row(&joined.tail(CRED_AT))?),
        None => None,
    };
    let version = joined.opt_text(VERSION_AT)?.is_some().then(|| joined.tail(VERSION_AT));
    Ok(Reads {
        conn,
        settings,
        cred,
        version,
    })
}

/// Resolution of `last_used_at` on credentials, connections and pipelines (1 s).
const LAST_USED_GRAIN_US: i64 = 1_000_000;

fn check_run_id(run_id: &str) -> CoreResult<()> {
    if run_id.is_empty() || run_id.len() > 200 || run_id.chars().any(char::is_control) {
        return Err(CoreError::invalid(
            "run_id",
            Code::InvalidRunId,
            "must be 1–200 printable characters",
        ));
    }
    Ok(())
}

impl Service {
    /// Records a worker's report of a login at the target. Failed logins feed the
    /// `alert.target_auth_failures` detector; past its threshold, an organization that opted in
    /// gets the credential disabled at once.
    pub async fn report_resolve(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: ResolveReport,
    ) -> CoreResult<serde_json::Value> {
        check_run_id(&req.run_id)?;
        if !["ok", "auth_failed", "error"].contains(&req.outcome.as_str()) {
            return Err(CoreError::invalid(
                "outcome",
                Code::InvalidOutcome,
                "must be ok, auth_failed or error",
            ));
        }
        let this = self.clone();
        let plan = connection_plan(&req.connection_id, false, Permission::Resolve, Action::ResolveReport);
        self.operate(ctx, actor, Mode::Write, plan, move |ops, c| {
            let settings = ops.settings().clone();
            let cred = c.credential_id.clone().unwrap_or_default();
            let outcome = if req.outcome == "ok" { Outcome::Success } else { Outcome::Error };
            if req.outcome == "auth_failed" && !cred.is_empty() && settings.auto_disable_on_target_auth_failures {
                // The credential row may be updated below: lock it before the audit head
                // (the order every writer uses).
                let sql = format!("SELECT id FROM credentials WHERE id = $1{}", ops.tx().for_update());
                ops.tx().query_opt(&sql, &[cred.as_str().into()])?;
            }
            ops.record(c.draft(Action::ResolveReport).outcome(outcome).details(serde_json::json!({
                "credential_id": cred, "version": req.version, "run_id": req.run_id, "reported": req.outcome,
            })))?;
            let mut auto_disabled = false;
            if req.outcome == "auth_failed" && !cred.is_empty()
                && let Some(alert) = this.alert(crate::alerts::Signal::TargetAuthFailure, &cred, Some(&c.org_id), "credential", &cred) {
                    ops.record_system(alert.workspace(Some(c.workspace_id.as_str())))?;
                    if settings.auto_disable_on_target_auth_failures {
                        let n = ops.tx().execute(
                            "UPDATE credentials SET status = 'disabled', updated_at = $1 WHERE id = $2 AND status = 'active'",
                            &[now_micros().into(), cred.as_str().into()],
                        )?;
                        if n > 0 {
                            auto_disabled = true;
                            ops.record_system(
                                crate::audit::Draft::new(Action::CredentialDisable, "credential", cred.as_str(), c.org_id.as_str())
                                    .details(serde_json::json!({"from": "active", "to": "disabled", "reason": "failed logins at the target past the threshold"})),
                            )?;
                        }
                    }
                }
            Ok(serde_json::json!({"recorded": true, "credential_id": cred, "auto_disabled": auto_disabled}))
        })
        .await
    }

    /// Resolves a connection to its configuration and the current version's plaintext.
    pub async fn resolve(&self, ctx: &RequestCtx, actor: &Arc<Actor>, req: ResolveRequest) -> CoreResult<Resolved> {
        self.with_dns(|dns| self.resolve_with(ctx, actor, req.clone(), dns))
            .await
    }

    async fn resolve_with(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: ResolveRequest,
        dns: Dns,
    ) -> CoreResult<Resolved> {
        match self.resolve_once(ctx, actor, req.clone(), false, dns.clone()).await {
            // An OAuth access token is stale: refresh it (single flight), then try once more.
            Err(CoreError::NeedsRefresh(cred)) => {
                self.ensure_fresh_token(&cred, ctx.received_at()).await?;
                self.resolve_once(ctx, actor, req, true, dns).await
            }
            other => other,
        }
    }

    async fn resolve_once(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        req: ResolveRequest,
        refreshed: bool,
        dns: Dns,
    ) -> CoreResult<Resolved> {
        self.inner.config.audit_gate.check()?;
        check_run_id(&req.run_id)?;
        let by_name = match (&req.connection_id, &req.workspace_id, &req.connection_name) {
            (Some(_), None, None) => None,
            (None, Some(ws), Some(name)) => Some((ws.clone(), name.clone())),
            (Some(_), ws, _) => {
                return Err(CoreError::invalid(
                    if ws.is_some() {
                        "workspace_id"
                    } else {
                        "connection_name"
                    },
                    Code::ConflictingParameters,
                    "give connection_id, or workspace_id and connection_name, not both",
                ));
            }
            (None, None, _) => {
                return Err(CoreError::invalid(
                    "connection_id",
                    Code::Required,
                    "give connection_id, or workspace_id and connection_name",
                ));
            }
            (None, Some(_), None) => {
                return Err(CoreError::invalid(
                    "connection_name",
                    Code::Required,
                    "give the connection's name with its workspace_id",
                ));
            }
        };
        if let Some(p) = &req.pipeline_id
            && PipelineId::parse(p).is_err()
        {
            return Err(CoreError::invalid("pipeline_id", Code::NotFound, "no such pipeline"));
        }
        let keyring = self.keyring()?.clone();
        let skew = self.inner.config.oauth.refresh_skew_secs;
        let (a, ctx2) = (actor.clone(), ctx.clone());
        // PostgreSQL: fresh reads outside any transaction, then the audit record through this
        // node's group-committing appender (see `appender`). SQLite: one closure on the
        // single writer, which group-commits already.
        let defer = self.inner.store.engine() == credvault_store::Engine::Postgres;
        // What the in-memory replay keys on (SQLite only; see `cache`).
        let key = (!defer).then(|| cache::Key {
            target: match (&req.connection_id, &by_name) {
                (Some(id), _) => id.clone(),
                (None, Some((ws, name))) => format!("{ws}\u{0}{name}"),
                (None, None) => String::new(),
            },
            version: req.version,
            pipeline: req.pipeline_id.clone(),
        });
        let work = move |tx: &mut dyn credvault_store::Tx| -> CoreResult<(Resolved, Pending, Option<SessionPlan>)> {
            // The connection, its organization's settings, its credential and the version to
            // resolve (state and sealed row) in one statement.
            // By name: one keyed lookup first. An unknown name and a workspace the caller
            // cannot see answer alike (404), the latter from the check below.
            let connection_id = match (&req.connection_id, &by_name) {
                (Some(id), _) => id.clone(),
                (None, Some((ws, name))) => tx
                    .query_opt(
                        "SELECT id FROM connections WHERE workspace_id = $1 AND name = $2",
                        &[ws.as_str().into(), name.as_str().into()],
                    )?
                    .ok_or(CoreError::NotFound { what: "connection" })?
                    .text(0)?,
                (None, None) => return Err(CoreError::NotFound { what: "connection" }),
            };
            if ConnectionId::parse(&connection_id).is_err() {
                return Err(CoreError::NotFound { what: "connection" });
            }
            let Reads {
                conn: c,
                settings,
                cred: read_cred,
                version: read_version,
            } = read_for_resolve(tx, &connection_id, req.version)?;
            let (org, ws) = (c.org(), c.ws());
            let base = || {
                c.draft(Action::ConnectionResolve).details(serde_json::json!({
                    "run_id": req.run_id, "pipeline_id": req.pipeline_id, "credential_id": c.credential_id,
                }))
            };
            // Resolve cannot run through `Service::operate` (its reads run outside a transaction on
            // PostgreSQL and its record goes to the appender), but its check is the same type.
            Check::new(Scope::Workspace(&org, &ws), Permission::Resolve, "connection", base()).run(&a, &settings)?;
            // The audit record names the refusal by the error's own code.
            let refuse = |err: CoreError| {
                let mut d = base().outcome(Outcome::Error);
                d.details["refused"] = err.code().map_or("refused", Code::as_str).into();
                CoreError::Audited(Box::new((err, d)))
            };
            let mut pipeline_used = None;
            if let Some(p) = &req.pipeline_id {
                let found = tx.query_opt(
                    "SELECT p.last_used_at FROM pipelines p JOIN pipeline_connections pc ON pc.pipeline_id = p.id \
                     WHERE p.id = $1 AND p.workspace_id = $2 AND pc.connection_id = $3",
                    &[p.as_str().into(), c.workspace_id.as_str().into(), c.id.as_str().into()],
                )?;
                if let Some(r) = &found {
                    pipeline_used = r.opt_int(0)?;
                }
                if found.is_none() {
                    return Err(refuse(CoreError::invalid(
                        "pipeline_id",
                        Code::PipelineMismatch,
                        "the pipeline does not use this connection",
                    )));
                }
            }
            let Some(cred_id) = c.credential_id.clone() else {
                return Err(refuse(CoreError::conflict(
                    Code::NoCredential,
                    "the connection has no credential attached",
                )));
            };
            let cred = match read_cred {
                Some(cred) if cred.id == cred_id => cred,
                _ => return Err(CoreError::NotFound { what: "credential" }),
            };
            let now = now_micros();
            match cred.status {
                CredentialStatus::Active => {}
                CredentialStatus::Disabled => {
                    return Err(refuse(CoreError::conflict(
                        Code::CredentialDisabled,
                        "the credential is disabled",
                    )));
                }
                CredentialStatus::PendingDeletion => {
                    return Err(refuse(CoreError::conflict(
                        Code::CredentialDeleted,
                        "the credential is pending deletion",
                    )));
                }
                other @ CredentialStatus::Purged => {
                    return Err(refuse(CoreError::conflict(
                        Code::CredentialNotActive,
                        format!("the credential is {other}"),
                    )));
                }
            }
            let grace = i64::from(settings.expired_grace_hours) * 3_600_000_000;
            if cred.expires_at.is_some_and(|e| e + grace <= now) {
                return Err(refuse(CoreError::conflict(
                    Code::CredentialExpired,
                    "the credential has expired",
                )));
            }
            let version = req.version.unwrap_or(cred.current_version);
            // The version's state and sealed data came with the rest; opened only once usable.
            let row = read_version;
            let usable = match &row {
                Some(r) => match VersionState::parse(&r.text(0)?) {
                    Some(VersionState::Current) => true,
                    Some(VersionState::Previous) => {
                        r.int(1)? + i64::from(settings.previous_grace_hours) * 3_600_000_000 > now
                    }
                    _ => false,
                },
                None => false,
            };
            if row.is_none() && req.version.is_some() {
                return Err(CoreError::invalid("version", Code::NotFound, "no such version"));
            }
            if !usable && req.version.is_some_and(|v| v != cred.current_version) {
                return Err(refuse(CoreError::conflict(
                    Code::VersionNotResolvable,
                    format!("version {version} is not current and not within the grace period"),
                )));
            }
            let (true, Some(row)) = (usable, row) else {
                return Err(refuse(CoreError::conflict(
                    Code::VersionRevoked,
                    "the credential's current version is not usable",
                )));
            };
            // The secret goes where the connection points: every destination must be one the
            // credential (and each source of its role chain) allows — checked before the
            // version is even opened (defence in depth for rows older than the rule, or a set
            // narrowed since).
            let config: serde_json::Value = serde_json::from_str(&c.config)?;
            let public: serde_json::Value = serde_json::from_str(&row.text(6)?)?;
            let hs = holders(tx, cred.clone(), &public, false)?;
            if let Err((field, dest, holder)) = check_destinations(&hs, &of_connection(&c.kind, &config)?, &dns)? {
                let mut d = base().outcome(Outcome::Denied);
                if let (serde_json::Value::Object(m), serde_json::Value::Object(extra)) =
                    (&mut d.details, refusal_details(&field, &dest, &holder))
                {
                    m.extend(extra);
                }
                d.details["credential_id"] = cred.id.as_str().into();
                return Err(CoreError::Audited(Box::new((
                    CoreError::conflict(
                        Code::DestinationNotAllowed,
                        format!(
                            "{field}: {dest} is not an allowed destination of credential {holder}; the secret is not released to this connection"
                        ),
                    ),
                    d,
                ))));
            }
            let version_used = row.opt_int(2)?;
            let mut fields = open_sealed_row(&keyring, &cred.org_id, &cred.id, version, &row, 3, None)?;
            if cred.ty == "oauth" {
                let health = tx
                    .query_opt(
                        "SELECT oauth_health FROM credentials WHERE id = $1",
                        &[cred.id.as_str().into()],
                    )?
                    .and_then(|r| r.opt_text(0).ok().flatten());
                let refuse_zeroed = |fields: &mut serde_json::Value, err: CoreError| {
                    credvault_domain::secret::zeroize_json(fields);
                    refuse(err)
                };
                if health.as_deref() == Some("needs_reauthorization") {
                    return Err(refuse_zeroed(
                        &mut fields,
                        CoreError::conflict(
                            Code::OauthNeedsReauthorization,
                            "the OAuth grant was revoked or expired at the provider; authorize it again",
                        ),
                    ));
                }
                // Right after a refresh, a token that has not expired is good enough (a skew
                // longer than the provider's token lifetime must not refuse a new token).
                if !crate::oauth::token_fresh(&fields, if refreshed { 0 } else { skew }) {
                    let never = cred.variant.as_deref() == Some("authorization_code")
                        && fields
                            .get("refresh_token")
                            .and_then(serde_json::Value::as_str)
                            .is_none_or(str::is_empty);
                    if never {
                        return Err(refuse_zeroed(
                            &mut fields,
                            CoreError::conflict(
                                Code::OauthNotAuthorized,
                                "nobody has authorized this OAuth credential yet",
                            ),
                        ));
                    }
                    credvault_domain::secret::zeroize_json(&mut fields);
                    if !refreshed {
                        return Err(CoreError::NeedsRefresh(cred.id.clone()));
                    }
                    return Err(refuse(CoreError::Unavailable {
                        code: Code::OauthRefreshFailing,
                        message: "the access token could not be refreshed; the provider is failing".into(),
                    }));
                }
            }
            // A database that authenticates with IAM gets a 15-minute token for its user, made
            // from the AWS key — the key itself never leaves. An AWS role chain gets a session
            // of its role, assumed after these reads (and before the record is written).
            let mut session = None;
            let delivered = if matches!(c.kind.as_str(), "postgres" | "mysql") && cred.ty == "aws" {
                fields = rds_token_fields(&config, fields, now)?;
                Some("rds_iam_token")
            } else if cred.ty == "aws"
                && (cred.variant.as_deref() == Some("assume_role")
                    || config.get("deliver").and_then(Json::as_str) == Some("session"))
            {
                let (sources, secrets) = crate::testing::chain_sources(tx, &keyring, &cred, &fields, None)?;
                session = Some(SessionPlan {
                    input: credvault_connect::TestInput {
                        config: config.clone(),
                        credential_type: cred.ty.clone(),
                        variant: cred.variant.clone(),
                        fields: fields.clone(),
                        secrets,
                        sources,
                    },
                    guard: crate::destinations::guard(&hs),
                    session_name: session_name(&req.run_id),
                });
                Some("sts_session")
            } else {
                None
            };
            // Rows first, the audit head last: every writer takes its row locks before the
            // audit head's (an OAuth refresh locks the credential, then appends), so two
            // transactions never wait on each other in opposite orders.
            // `last_used_at` has a resolution of LAST_USED_GRAIN_US: a row used more recently
            // than that is not written again, so a connection resolved by many tasks at once
            // costs the writer one update per second, not one per call.
            let stale = |used: Option<i64>| used.is_none_or(|t| t + LAST_USED_GRAIN_US <= now);
            let mut stamps = Vec::new();
            if stale(cred.last_used_at) {
                stamps.push(Stamp::Credential(cred_id.clone()));
            }
            if stale(c.last_used_at) {
                stamps.push(Stamp::Connection(c.id.clone()));
            }
            if stale(version_used) {
                stamps.push(Stamp::Version(cred_id.clone(), version));
            }
            if let Some(p) = &req.pipeline_id
                && stale(pipeline_used)
            {
                stamps.push(Stamp::Pipeline(p.clone()));
            }
            let mut d = base();
            d.details["version"] = version.into();
            if let Some(what) = delivered {
                d.details["delivered"] = what.into();
            }
            if let Some(plan) = session
                .as_ref()
                .filter(|p| p.input.variant.as_deref() == Some("assume_role"))
            {
                d.details["session_name"] = plan.session_name.as_str().into();
            }
            let pending = Pending {
                ctx: ctx2.clone(),
                who: ActorRef::from(a.as_ref()),
                draft: d,
                stamps,
                now,
                expect: None,
            };
            let resolved = Resolved {
                connection: ResolvedConnection {
                    id: c.id.clone(),
                    kind: c.kind.clone(),
                    config,
                },
                credential: ResolvedCredential {
                    id: cred.id.clone(),
                    ty: cred.ty.clone(),
                    variant: cred.variant.clone(),
                    version,
                    fields,
                    delivered,
                },
            };
            Ok((resolved, pending, session))
        };
        if defer {
            let r = self.inner.store.read_fresh(work).await;
            let (resolved, pending, session) = self.settle(ctx, actor, r).await?;
            return self.release(resolved, Some(pending), session).await;
        }
        // SQLite: this target's reads replayed from memory while the store's state is unchanged
        // (see `cache`); the writer only writes the record, after checking that again.
        let cache = &self.inner.resolve_cache;
        let current = self.inner.store.generation();
        if let Some(recorded) = key.as_ref().zip(current).and_then(|(k, g)| cache.get(k, g)) {
            let mut replay = cache::Replay::new(&recorded);
            let replayed = work(&mut replay);
            // A refusal or a read it does not hold: the writer decides (and records), as before.
            if let (Ok((resolved, mut pending, session)), false) = (replayed, replay.missed) {
                pending.expect = Some(recorded.generation());
                pending.stamps = cache.owed(std::mem::take(&mut pending.stamps), pending.now, LAST_USED_GRAIN_US);
                match self.release(resolved, Some(pending), session).await {
                    Err(CoreError::Stale) => cache.count(CacheEvent::Stale),
                    other => {
                        cache.count(CacheEvent::Hit);
                        return other;
                    }
                }
            }
        }
        cache.count(CacheEvent::Miss);
        let store = self.inner.store.clone();
        let (resolved, pending, session, recorded, stamped) = self
            .write(ctx, actor, move |tx| {
                let generation = store.generation().unwrap_or_default();
                let mut recorder = cache::Recorder::new(&mut *tx);
                let (resolved, pending, session) = work(&mut recorder)?;
                let recorded = recorder.finish(generation);
                if session.is_some() {
                    // Written after the session is minted.
                    return Ok((resolved, Some(pending), session, recorded, None));
                }
                // The record in the same transaction as the reads.
                for s in &pending.stamps {
                    s.write(tx, pending.now)?;
                }
                audit::append(tx, &pending.ctx, &pending.who, &pending.draft)?;
                Ok((resolved, None, session, recorded, Some((pending.stamps, pending.now))))
            })
            .await?;
        if let Some(key) = key {
            cache.put(key, recorded);
        }
        if let Some((stamps, now)) = stamped {
            cache.note_stamped(&stamps, now);
        }
        self.release(resolved, pending, session).await
    }

    /// Mints the session a resolve planned (if any), writes its record (if not yet written)
    /// and only then returns the secret.
    async fn release(
        &self,
        mut resolved: Resolved,
        mut pending: Option<Pending>,
        session: Option<SessionPlan>,
    ) -> CoreResult<Resolved> {
        if let Some(plan) = session {
            let policy = self.inner.config.egress.guarded(plan.guard.clone());
            let chain = plan.input.variant.as_deref() == Some("assume_role");
            let minted = if chain {
                credvault_connect::assume_role_session(&plan.input, &policy, &plan.session_name, SESSION_SECS).await
            } else {
                credvault_connect::key_session(&plan.input, &policy, SESSION_SECS).await
            };
            match minted {
                Ok(s) => resolved.credential.fields = session_fields(&resolved.credential.fields, s),
                Err(e) => {
                    // Nothing is released; the refusal is what the journal records.
                    if let Some(mut p) = pending.take() {
                        p.draft.outcome = Outcome::Error;
                        p.draft.details["refused"] = Code::StsFailed.as_str().into();
                        p.draft.details["error"] = e.message.clone().into();
                        self.record_pending(p).await?;
                    }
                    return Err(CoreError::Unavailable {
                        code: Code::StsFailed,
                        message: format!("AWS STS did not issue a session: {}", e.message),
                    });
                }
            }
        }
        if let Some(p) = pending {
            // Dropping `resolved` on failure zeroizes the secret: nothing leaves unaudited.
            self.record_pending(p).await?;
        }
        Ok(resolved)
    }

    /// Writes a resolve's record through this node's appender (group-committed; on SQLite only
    /// if its `expect`ed generation still holds, else [`CoreError::Stale`]).
    async fn record_pending(&self, p: Pending) -> CoreResult<()> {
        // SQLite's replays read old `last_used_at` values: note the stamps written (PostgreSQL
        // reads fresh ones).
        let noted = (self.inner.store.engine() == credvault_store::Engine::Sqlite).then(|| (p.stamps.clone(), p.now));
        self.appender().append(p).await?;
        if let Some((stamps, now)) = noted {
            self.inner.resolve_cache.note_stamped(&stamps, now);
        }
        Ok(())
    }
}

/// How long an assumed role's session lasts (AWS caps a chained role's session at one hour).
const SESSION_SECS: u32 = 3600;

/// An AWS role chain to assume after resolve's reads: the chain (decrypted) and where its
/// calls may go.
struct SessionPlan {
    input: credvault_connect::TestInput,
    guard: credvault_connect::Guard,
    /// The last hop's `RoleSessionName` ([`session_name`]).
    session_name: String,
}

/// `RoleSessionName` for a run: `credvault-` and the run ID, in the characters STS accepts
/// (`[\w+=,.@-]`, at most 64), so CloudTrail shows which run used the role.
fn session_name(run_id: &str) -> String {
    let mut s: String = format!("credvault-{run_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(64);
    s
}

/// The fields a worker gets for a role chain: the session's keys, its expiry and the role (the
/// chain's own fields, which hold no secret, are replaced).
fn session_fields(own: &Json, s: credvault_connect::AwsSession) -> Json {
    serde_json::json!({
        "access_key_id": s.credentials.access_key_id,
        "secret_access_key": s.credentials.secret_access_key.as_str(),
        "session_token": s.credentials.session_token.as_ref().map(|t| t.as_str()),
        "expires_at": s.expiration,
        "role_arn": own.get("role_arn"),
    })
}

/// The fields a worker gets for an `auth: iam` database connection: `username` (the config's
/// `iam_user`), `password` (an RDS IAM token for it, made from the AWS key in `keys`, which is
/// zeroized) and `expires_at`.
fn rds_token_fields(config: &Json, mut keys: Json, now: i64) -> CoreResult<Json> {
    let text = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).unwrap_or_default().to_owned();
    let creds = credvault_connect::aws::AwsCredentials::new(
        &text(&keys, "access_key_id"),
        text(&keys, "secret_access_key"),
        keys.get("session_token").and_then(Json::as_str).map(str::to_owned),
    );
    credvault_domain::secret::zeroize_json(&mut keys);
    let (host, user, region) = (text(config, "host"), text(config, "iam_user"), text(config, "region"));
    let port = config
        .get("port")
        .and_then(Json::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| CoreError::Internal("an iam connection without a port".into()))?;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1000)
        .map_err(|_| CoreError::Internal("clock out of range".into()))?;
    let token = credvault_connect::aws::rds_auth_token(&host, port, &region, &user, &creds, at);
    let expires = now + credvault_connect::aws::RDS_TOKEN_SECS * 1_000_000;
    Ok(serde_json::json!({
        "username": user,
        "password": token.as_str(),
        "expires_at": credvault_domain::time::to_rfc3339(expires),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joined read's offsets follow the column lists they index into.
    #[test]
    fn the_joined_reads_offsets_match_the_column_lists() {
        assert_eq!(CONN_COLS.split(',').count(), CONN_WIDTH);
        assert_eq!(CRED_COLS.split(',').count(), VERSION_AT - CRED_AT);
        let sql = resolve_read(false);
        let select = &sql[..sql.find(" FROM connections").unwrap_or(sql.len())];
        assert_eq!(
            select.split(',').count(),
            VERSION_AT + 3 + SEALED_COLS.split(',').count()
        );
    }
}
