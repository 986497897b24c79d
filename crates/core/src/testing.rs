//! Test connection: decrypt one credential version for one call, hand it with the connection's
//! config to the kind's tester (crate `credvault-connect`, which never sees the store or the
//! keyring), then record the result per connection and per credential version, audited.
//!
//! The network call happens outside any store transaction: a slow target must not hold the
//! writer. Only `credential.attach` holders (admins, integration engineers, builders) may run
//! tests; a pending version can be tested before it is promoted.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use credvault_connect::{TestInput, TestOutcome};
use credvault_domain::roles::Permission;
use credvault_domain::time::now_micros;

use crate::Service;
use crate::audit::{self, ActorRef, Outcome};
use crate::auth::{Scope, authorize};
use crate::connections::load_conn;
use crate::context::{Actor, RequestCtx};
use crate::credentials::{decrypt_version_parts, load_cred, read_scope};
use crate::error::{CoreError, CoreResult};
use crate::tenancy::settings_of;

/// Request: which version to test (default: the current one).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// A version number, e.g. a pending one before promotion.
    #[serde(default)]
    pub version: Option<i64>,
}

/// The result of testing one connection.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionTest {
    /// The connection.
    pub connection_id: String,
    /// Its name.
    pub connection_name: String,
    /// Its kind (`postgres`, `snowflake`, …).
    pub connection_kind: String,
    /// The credential tested.
    pub credential_id: String,
    /// The version tested.
    pub version: i64,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: TestOutcome,
}

/// The result of testing every connection that uses a credential.
#[derive(Clone, Debug, Serialize)]
pub struct CredentialTest {
    /// The credential.
    pub credential_id: String,
    /// The version tested.
    pub version: i64,
    /// Whether every dependent connection passed (and there was at least one).
    pub ok: bool,
    /// One result per dependent connection.
    pub results: Vec<ConnectionTest>,
}

/// The source credentials of an AWS role chain, root first, decrypted (current versions),
/// with their secret values for scrubbing. Other credentials have no sources.
fn chain_sources(
    tx: &mut dyn credvault_store::Tx,
    keyring: &credvault_crypto::Keyring,
    cred: &crate::credentials::CredRow,
    fields: &serde_json::Value,
) -> CoreResult<(Vec<serde_json::Value>, Vec<String>)> {
    let mut sources = Vec::new();
    let mut secrets = Vec::new();
    if cred.ty != "aws" {
        return Ok((sources, secrets));
    }
    let mut next = fields
        .get("source_credential_id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let mut seen = vec![cred.id.clone()];
    while let Some(id) = next {
        if seen.contains(&id) || seen.len() > 5 {
            return Err(CoreError::conflict(
                "role_chain_invalid",
                "the AWS role chain loops or is longer than 5 hops",
            ));
        }
        let src = load_cred(tx, &id, false)?;
        if src.org_id != cred.org_id || src.ty != "aws" {
            return Err(CoreError::conflict(
                "role_chain_invalid",
                "a source credential of the role chain is not an aws credential of this organization",
            ));
        }
        let (f, mut s) = decrypt_version_parts(tx, keyring, &src.org_id, &src.id, src.current_version)?;
        next = f
            .get("source_credential_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        seen.push(id);
        sources.push(f);
        secrets.append(&mut s);
    }
    sources.reverse();
    Ok((sources, secrets))
}

/// Picks the version to test: the given one (any state but revoked) or the current one.
fn pick_version(tx: &mut dyn credvault_store::Tx, cred: &str, current: i64, asked: Option<i64>) -> CoreResult<i64> {
    let Some(n) = asked else { return Ok(current) };
    match tx.query_opt(
        "SELECT state FROM credential_versions WHERE credential_id = $1 AND version = $2",
        &[cred.into(), n.into()],
    )? {
        None => Err(CoreError::invalid("version", "not_found", "no such version")),
        Some(r) if r.text(0)? == "revoked" => Err(CoreError::conflict(
            "version_revoked",
            format!("version {n} is revoked"),
        )),
        Some(_) => Ok(n),
    }
}

struct Prepared {
    connection_id: String,
    connection_name: String,
    workspace_id: String,
    org_id: String,
    kind: String,
    credential_id: String,
    version: i64,
    input: TestInput,
}

impl Service {
    /// Tests one connection with its credential (or a given version of it). An OAuth
    /// credential's access token that is about to expire is refreshed first, as resolve would.
    pub async fn test_connection(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: TestRequest,
    ) -> CoreResult<ConnectionTest> {
        let mut p = self.prepare_connection_test(ctx, actor, id, req.clone()).await?;
        if p.input.credential_type == "oauth"
            && req.version.is_none()
            && !crate::oauth::token_fresh(&p.input.fields, self.inner.config.oauth.refresh_skew_secs)
        {
            let cred = p.credential_id.clone();
            drop(p); // zeroizes the decrypted fields
            if let Err(e) = self.ensure_fresh_token(&cred).await {
                tracing::info!(credential = %cred, error = %e, "no fresh OAuth token for Test connection");
            }
            p = self.prepare_connection_test(ctx, actor, id, req).await?;
        }
        let outcome = credvault_connect::run(&p.kind, &p.input, &self.inner.config.egress).await;
        let result = ConnectionTest {
            connection_id: p.connection_id.clone(),
            connection_name: p.connection_name.clone(),
            connection_kind: p.kind.clone(),
            credential_id: p.credential_id.clone(),
            version: p.version,
            outcome,
        };
        self.record_tests(
            ctx,
            actor,
            vec![(p.org_id.clone(), p.workspace_id.clone(), result.clone())],
        )
        .await?;
        Ok(result)
    }

    /// Authorizes a connection test and decrypts what it needs.
    async fn prepare_connection_test(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: TestRequest,
    ) -> CoreResult<Prepared> {
        let keyring = self.keyring()?.clone();
        let (id, a) = (id.to_owned(), actor.clone());
        self.read(ctx, actor, move |tx| {
            let c = load_conn(tx, &id, false)?;
            let settings = settings_of(tx, &c.org_id, "connection")?;
            let (org, ws) = (c.org(), c.ws());
            authorize(
                &a,
                &settings,
                Scope::Workspace(&org, &ws),
                Permission::CredentialAttach,
                "connection",
                || c.draft("connection.test"),
            )?;
            let Some(cred_id) = c.credential_id.clone() else {
                return Err(CoreError::conflict(
                    "no_credential",
                    "the connection has no credential attached",
                ));
            };
            let cred = load_cred(tx, &cred_id, false)?;
            let version = pick_version(tx, &cred_id, cred.current_version, req.version)?;
            let (fields, mut secrets) = decrypt_version_parts(tx, &keyring, &cred.org_id, &cred.id, version)?;
            let (sources, mut more) = chain_sources(tx, &keyring, &cred, &fields)?;
            secrets.append(&mut more);
            Ok(Prepared {
                connection_id: c.id.clone(),
                connection_name: c.name.clone(),
                workspace_id: c.workspace_id.clone(),
                org_id: c.org_id.clone(),
                kind: c.kind.clone(),
                credential_id: cred_id,
                version,
                input: TestInput {
                    config: serde_json::from_str(&c.config)?,
                    credential_type: cred.ty.clone(),
                    variant: cred.variant.clone(),
                    fields,
                    secrets,
                    sources,
                },
            })
        })
        .await
    }

    /// Tests every connection that uses a credential, with its current or a given version.
    pub async fn test_credential(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: TestRequest,
    ) -> CoreResult<CredentialTest> {
        self.test_credential_as(ctx, actor, id, req, false).await
    }

    /// Tests a credential's dependents. For a rotation (`rotation`), the caller needs
    /// `credential.create` on the credential and every dependent is tested — a promotion must
    /// not break a connection the rotator happens not to see; otherwise `credential.attach` and
    /// only the connections in the caller's workspaces.
    pub(crate) async fn test_credential_as(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: TestRequest,
        rotation: bool,
    ) -> CoreResult<CredentialTest> {
        let keyring = self.keyring()?.clone();
        let (id, a) = (id.to_owned(), actor.clone());
        let prepared = self
            .read(ctx, actor, move |tx| {
                let cred = load_cred(tx, &id, false)?;
                let settings = settings_of(tx, &cred.org_id, "credential")?;
                let (org, ws) = (cred.org(), cred.ws());
                if rotation {
                    authorize(
                        &a,
                        &settings,
                        crate::credentials::write_scope(&org, &ws),
                        Permission::CredentialCreate,
                        "credential",
                        || cred.draft("connection.test"),
                    )?;
                } else {
                    authorize(
                        &a,
                        &settings,
                        read_scope(&org, &ws),
                        Permission::CredentialAttach,
                        "credential",
                        || cred.draft("connection.test"),
                    )?;
                }
                let version = pick_version(tx, &cred.id, cred.current_version, req.version)?;
                let conns = tx.query(
                    "SELECT id FROM connections WHERE credential_id = $1 ORDER BY seq",
                    &[cred.id.as_str().into()],
                )?;
                let mut out = Vec::new();
                for r in conns {
                    let c = load_conn(tx, &r.text(0)?, false)?;
                    // Only connections the caller may test (a shared credential can be attached
                    // in workspaces the caller cannot see).
                    if !rotation
                        && !settings
                            .role_policy
                            .any_grants(&a.workspace_roles(&c.ws()), Permission::CredentialAttach)
                    {
                        continue;
                    }
                    let (fields, mut secrets) = decrypt_version_parts(tx, &keyring, &cred.org_id, &cred.id, version)?;
                    let (sources, mut more) = chain_sources(tx, &keyring, &cred, &fields)?;
                    secrets.append(&mut more);
                    out.push(Prepared {
                        connection_id: c.id.clone(),
                        connection_name: c.name.clone(),
                        workspace_id: c.workspace_id.clone(),
                        org_id: c.org_id.clone(),
                        kind: c.kind.clone(),
                        credential_id: cred.id.clone(),
                        version,
                        input: TestInput {
                            config: serde_json::from_str(&c.config)?,
                            credential_type: cred.ty.clone(),
                            variant: cred.variant.clone(),
                            fields,
                            secrets,
                            sources,
                        },
                    });
                }
                Ok((cred.id.clone(), version, out))
            })
            .await?;
        let (credential_id, version, prepared) = prepared;
        let policy = &self.inner.config.egress;
        let outcomes = futures_util::future::join_all(
            prepared
                .iter()
                .map(|p| credvault_connect::run(&p.kind, &p.input, policy)),
        )
        .await;
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (p, outcome) in prepared.iter().zip(outcomes) {
            let r = ConnectionTest {
                connection_id: p.connection_id.clone(),
                connection_name: p.connection_name.clone(),
                connection_kind: p.kind.clone(),
                credential_id: p.credential_id.clone(),
                version: p.version,
                outcome,
            };
            records.push((p.org_id.clone(), p.workspace_id.clone(), r.clone()));
            results.push(r);
        }
        if !records.is_empty() {
            self.record_tests(ctx, actor, records).await?;
        }
        let ok = !results.is_empty() && results.iter().all(|r| r.outcome.ok);
        Ok(CredentialTest {
            credential_id,
            version,
            ok,
            results,
        })
    }

    /// Stores test results and their audit events in one transaction.
    async fn record_tests(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        results: Vec<(String, String, ConnectionTest)>,
    ) -> CoreResult<()> {
        let (a, ctx2) = (actor.clone(), ctx.clone());
        let alerts: Vec<crate::audit::Draft> = results
            .iter()
            .filter(|(_, _, r)| !r.outcome.ok)
            .filter_map(|(org, _, r)| {
                self.alert(
                    crate::alerts::Signal::TestFailure,
                    &r.credential_id,
                    Some(org),
                    "credential",
                    &r.credential_id,
                )
            })
            .collect();
        self.inner
            .store
            .write(move |tx| {
                for alert in &alerts {
                    audit::append(tx, &ctx2, &ActorRef::system(), alert)?;
                }
                let now = now_micros();
                for (org, ws, r) in &results {
                    let code = r.outcome.error.as_ref().map(|e| e.code.as_str());
                    let message = r.outcome.error.as_ref().map(|e| e.message.as_str());
                    tx.execute(
                        "INSERT INTO connection_tests (connection_id, credential_id, version, at, ok, latency_ms, error_code, error_message, tested_by) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        &[
                            r.connection_id.as_str().into(),
                            r.credential_id.as_str().into(),
                            r.version.into(),
                            now.into(),
                            r.outcome.ok.into(),
                            (r.outcome.latency_ms as i64).into(),
                            code.into(),
                            message.into(),
                            a.principal_id.as_str().into(),
                        ],
                    )?;
                    tx.execute(
                        "UPDATE connections SET last_test_at = $1, last_test_ok = $2, last_test_latency_ms = $3, last_test_error_code = $4, \
                         last_test_version = $5 WHERE id = $6",
                        &[now.into(), r.outcome.ok.into(), (r.outcome.latency_ms as i64).into(), code.into(), r.version.into(), r.connection_id.as_str().into()],
                    )?;
                    audit::append(
                        tx,
                        &ctx2,
                        &ActorRef::from(a.as_ref()),
                        &audit::Draft::new("connection.test", "connection", r.connection_id.as_str(), org.as_str())
                            .workspace(Some(ws.as_str()))
                            .outcome(if r.outcome.ok { Outcome::Success } else { Outcome::Error })
                            .details(serde_json::json!({
                                "credential_id": r.credential_id, "version": r.version, "ok": r.outcome.ok,
                                "latency_ms": r.outcome.latency_ms, "error_code": code, "error_message": message,
                            })),
                    )?;
                }
                Ok::<_, CoreError>(())
            })
            .await
    }
}
