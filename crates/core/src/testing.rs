//! Test connection: decrypt one credential version for one call, hand it with the connection's
//! config to the kind's tester (crate `credvault-connect`, which never sees the store or the
//! keyring), then record the result per connection and per credential version, audited.
//!
//! The network call happens outside any store transaction: a slow target must not hold the
//! writer. Only `credential.attach` holders (admins, integration engineers, builders) may run
//! tests; a pending version can be tested before it is promoted.

use crate::actions::Action;
use credvault_domain::problems::Code;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use credvault_connect::{TestInput, TestOutcome};
use credvault_domain::roles::Permission;
use credvault_domain::time::now_micros;

use crate::Service;
use crate::audit::{self, ActorRef, Outcome};

use crate::connections::{connection_plan, load_conn};
use crate::context::{Actor, RequestCtx};
use crate::credentials::{Access, decrypt_version_parts, load_cred};
use crate::destinations::{Dns, holders, of_connection};
use crate::error::{CoreError, CoreResult};
use crate::operation::{Mode, Plan};
use credvault_store::Tx;

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
    /// When the connection uses the tested credential through an AWS role chain: the chain
    /// credential attached to it is `credential_id`, and the tested source is this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_source: Option<ViaSource>,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: TestOutcome,
}

/// The source credential (and version) a chained connection was tested with.
#[derive(Clone, Debug, Serialize)]
pub struct ViaSource {
    /// The source credential.
    pub credential_id: String,
    /// Its version used.
    pub version: i64,
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
pub(crate) fn chain_sources(
    tx: &mut dyn credvault_store::Tx,
    keyring: &credvault_crypto::Keyring,
    cred: &crate::credentials::CredRow,
    fields: &serde_json::Value,
    pinned: Option<(&str, i64)>,
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
    let mut scope = cred.workspace_id.clone();
    while let Some(id) = next {
        if seen.contains(&id) || seen.len() > 5 {
            return Err(CoreError::conflict(
                Code::RoleChainInvalid,
                "the AWS role chain loops or is longer than 5 hops",
            ));
        }
        let src = load_cred(tx, &id, false)?;
        // Each source must be visible from the hop that uses it (organization-wide, or in that
        // hop's workspace): rows written before the rule existed are refused here.
        let visible = src.workspace_id.is_none() || src.workspace_id == scope;
        if src.org_id != cred.org_id || src.ty != "aws" || !visible {
            return Err(CoreError::conflict(
                Code::RoleChainInvalid,
                "a source credential of the role chain is not an aws credential visible from the credential that uses it",
            ));
        }
        scope = src.workspace_id.clone();
        // A rotation of a source tests its chains with the staged version (`pinned`).
        let version = match pinned {
            Some((pid, v)) if pid == src.id => v,
            _ => src.current_version,
        };
        let (f, mut s) = decrypt_version_parts(tx, keyring, &src.org_id, &src.id, version)?;
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
        None => Err(CoreError::invalid("version", Code::NotFound, "no such version")),
        Some(r) if r.text(0)? == "revoked" => Err(CoreError::conflict(
            Code::VersionRevoked,
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
    /// Where this call may send the secrets it carries (checked again at every socket).
    guard: credvault_connect::Guard,
    /// Set when a declared destination is not allowed: the test is not run.
    refused: Option<credvault_connect::TestError>,
    /// The tested source, for a connection that uses it through a role chain.
    via_source: Option<ViaSource>,
}

/// Credentials whose current version uses `id` as the source of a role chain, transitively
/// (at most 5 hops), each with the chain it hangs from.
pub(crate) fn chain_users(tx: &mut dyn credvault_store::Tx, id: &str) -> CoreResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut frontier = vec![id.to_owned()];
    for _ in 0..5 {
        let mut next = Vec::new();
        for f in &frontier {
            for r in tx.query(
                "SELECT v.credential_id FROM credential_versions v JOIN credentials c ON c.id = v.credential_id \
                 WHERE v.source_credential_id = $1 AND v.state = 'current' AND c.status <> 'purged' ORDER BY c.seq",
                &[f.as_str().into()],
            )? {
                let u = r.text(0)?;
                if u != id && !out.contains(&u) {
                    out.push(u.clone());
                    next.push(u);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(out)
}

/// Checks the connection's declared destinations against the credential version (all its
/// fields) and the sources of its role chain, and builds the runtime guard. A refusal is an
/// outcome, not an error: nothing is sent, and the result is recorded like any other test.
fn destinations_for_test(
    tx: &mut dyn credvault_store::Tx,
    cred: crate::credentials::CredRow,
    fields: &serde_json::Value,
    kind: &str,
    config: &serde_json::Value,
    dns: &Dns,
) -> CoreResult<(credvault_connect::Guard, Option<credvault_connect::TestError>)> {
    let hs = holders(tx, cred, fields, false)?;
    let dests = of_connection(kind, config)?;
    let refused = crate::destinations::check(&hs, &dests, dns)?.err().map(|(field, dest, cred)| {
        credvault_connect::TestError::new(
            credvault_connect::ErrorCode::DestinationNotAllowed,
            format!(
                "{field}: {dest} is not an allowed destination of credential {cred}; nothing was sent (someone who may change that credential can allow it)"
            ),
        )
    });
    Ok((crate::destinations::guard(&hs), refused))
}

/// Test connections one organization may have in flight at once (the server-wide bound is the
/// egress policy's): one tenant with slow targets cannot take every slot.
pub const TESTS_PER_ORG: usize = 4;

impl Service {
    /// The test slots of an organization.
    fn org_test_slots(&self, org: &str) -> Arc<tokio::sync::Semaphore> {
        let mut slots = self
            .inner
            .test_slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .entry(org.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(TESTS_PER_ORG)))
            .clone()
    }

    /// Runs a prepared test: refused ones are answered without a byte sent; the others wait
    /// for one of their organization's slots (at most the test timeout) and go through the
    /// egress policy restricted to their destinations.
    async fn run_prepared(&self, p: &Prepared) -> TestOutcome {
        if let Some(e) = &p.refused {
            return TestOutcome {
                ok: false,
                latency_ms: 0,
                error: Some(e.clone()),
            };
        }
        let policy = &self.inner.config.egress;
        let started = std::time::Instant::now();
        let slots = self.org_test_slots(&p.org_id);
        let Ok(Ok(_slot)) = tokio::time::timeout(policy.total_timeout, slots.acquire_owned()).await else {
            return TestOutcome {
                ok: false,
                latency_ms: started.elapsed().as_millis() as u64,
                error: Some(credvault_connect::TestError::new(
                    credvault_connect::ErrorCode::Timeout,
                    format!(
                        "this organization already had {TESTS_PER_ORG} tests in flight for {} s; try again",
                        policy.total_timeout.as_secs()
                    ),
                )),
            };
        };
        credvault_connect::run(&p.kind, &p.input, &policy.guarded(p.guard.clone())).await
    }
}

/// Decrypts `holder`'s `version` (and its role chain's sources, `via` pinning a rotated
/// source's version) for one test of connection `c`, and checks the connection's destinations.
fn prepare(
    tx: &mut dyn credvault_store::Tx,
    keyring: &credvault_crypto::Keyring,
    c: &crate::connections::ConnRow,
    holder: crate::credentials::CredRow,
    version: i64,
    via: Option<ViaSource>,
    dns: &Dns,
) -> CoreResult<Prepared> {
    let (fields, mut secrets) = decrypt_version_parts(tx, keyring, &holder.org_id, &holder.id, version)?;
    let pinned = via.as_ref().map(|v| (v.credential_id.as_str(), v.version));
    let (sources, mut more) = chain_sources(tx, keyring, &holder, &fields, pinned)?;
    secrets.append(&mut more);
    let config: serde_json::Value = serde_json::from_str(&c.config)?;
    let (credential_id, ty, variant) = (holder.id.clone(), holder.ty.clone(), holder.variant.clone());
    let (guard, refused) = destinations_for_test(tx, holder, &fields, &c.kind, &config, dns)?;
    Ok(Prepared {
        connection_id: c.id.clone(),
        connection_name: c.name.clone(),
        workspace_id: c.workspace_id.clone(),
        org_id: c.org_id.clone(),
        kind: c.kind.clone(),
        credential_id,
        version,
        input: TestInput {
            config,
            credential_type: ty,
            variant,
            fields,
            secrets,
            sources,
        },
        guard,
        refused,
        via_source: via,
    })
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
        // Secret-bearing: stops with the other secret-bearing operations when a blocking
        // audit sink falls behind.
        self.inner.config.audit_gate.check()?;
        let mut p = self.prepare_connection_test(ctx, actor, id, req.clone()).await?;
        if p.input.credential_type == "oauth"
            && req.version.is_none()
            && !crate::oauth::token_fresh(&p.input.fields, self.inner.config.oauth.refresh_skew_secs)
        {
            let cred = p.credential_id.clone();
            drop(p); // zeroizes the decrypted fields
            if let Err(e) = self.ensure_fresh_token(&cred, ctx.received_at()).await {
                tracing::info!(credential = %cred, error = %e, "no fresh OAuth token for Test connection");
            }
            p = self.prepare_connection_test(ctx, actor, id, req).await?;
        }
        let outcome = self.run_prepared(&p).await;
        let result = ConnectionTest {
            connection_id: p.connection_id.clone(),
            connection_name: p.connection_name.clone(),
            connection_kind: p.kind.clone(),
            credential_id: p.credential_id.clone(),
            version: p.version,
            via_source: None,
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
        self.with_dns(|dns| self.prepare_connection_test_once(ctx, actor, id, req.clone(), dns))
            .await
    }

    async fn prepare_connection_test_once(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: TestRequest,
        dns: Dns,
    ) -> CoreResult<Prepared> {
        let keyring = self.keyring()?.clone();
        let id = id.to_owned();
        let find = connection_plan(&id, false, Permission::CredentialAttach, Action::ConnectionTest);
        self.operate(ctx, actor, Mode::Read, find, move |ops, c| {
            let Some(cred_id) = c.credential_id.clone() else {
                return Err(CoreError::conflict(
                    Code::NoCredential,
                    "the connection has no credential attached",
                ));
            };
            let cred = load_cred(ops.tx(), &cred_id, false)?;
            let version = pick_version(ops.tx(), &cred_id, cred.current_version, req.version)?;
            prepare(ops.tx(), &keyring, &c, cred, version, None, &dns)
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
        self.inner.config.audit_gate.check()?;
        let prepared = self
            .with_dns(|dns| self.prepare_credential_test(ctx, actor, id, req.clone(), rotation, dns))
            .await?;
        let (credential_id, version, prepared) = prepared;
        let outcomes = futures_util::future::join_all(prepared.iter().map(|p| self.run_prepared(p))).await;
        self.finish_credential_test(ctx, actor, credential_id, version, prepared, outcomes)
            .await
    }

    /// Authorizes a credential test and decrypts what each dependent connection's test needs.
    async fn prepare_credential_test(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        id: &str,
        req: TestRequest,
        rotation: bool,
        dns: Dns,
    ) -> CoreResult<(String, i64, Vec<Prepared>)> {
        let keyring = self.keyring()?.clone();
        let id = id.to_owned();
        let find = move |tx: &mut dyn Tx| {
            let cred = load_cred(tx, &id, false)?;
            let check = if rotation {
                cred.check(Access::Write, Permission::CredentialCreate, Action::ConnectionTest)
            } else {
                cred.check(Access::Read, Permission::CredentialAttach, Action::ConnectionTest)
            };
            Ok(Plan::new(cred, check))
        };
        self.operate(ctx, actor, Mode::Read, find, move |ops, cred| {
            let (a, settings) = (ops.actor().clone(), ops.settings().clone());
            let tx = ops.tx();
            let version = pick_version(tx, &cred.id, cred.current_version, req.version)?;
            // Dependents: the connections of the credential itself, then those of every
            // credential that uses it as the source of a role chain (tested with their own
            // current version and this credential's `version` as the source).
            let mut dependents: Vec<(String, crate::credentials::CredRow, i64, Option<ViaSource>)> = Vec::new();
            for r in tx.query(
                "SELECT id FROM connections WHERE credential_id = $1 ORDER BY seq",
                &[cred.id.as_str().into()],
            )? {
                dependents.push((r.text(0)?, cred.clone(), version, None));
            }
            for u in chain_users(tx, &cred.id)? {
                let user = load_cred(tx, &u, false)?;
                for r in tx.query(
                    "SELECT id FROM connections WHERE credential_id = $1 ORDER BY seq",
                    &[u.as_str().into()],
                )? {
                    let via = ViaSource {
                        credential_id: cred.id.clone(),
                        version,
                    };
                    dependents.push((r.text(0)?, user.clone(), user.current_version, Some(via)));
                }
            }
            let mut out = Vec::new();
            let mut need_dns = Vec::new();
            for (conn_id, holder, holder_version, via) in dependents {
                let c = load_conn(tx, &conn_id, false)?;
                // Only connections the caller may test (a shared credential can be attached
                // in workspaces the caller cannot see).
                if !rotation
                    && !settings
                        .role_policy
                        .any_grants(&a.workspace_roles(&c.ws()), Permission::CredentialAttach)
                {
                    continue;
                }
                // Names to resolve are gathered over every connection first, so one round of
                // DNS serves them all.
                match prepare(tx, &keyring, &c, holder, holder_version, via, &dns) {
                    Err(CoreError::NeedsDns(mut names)) => need_dns.append(&mut names),
                    other => out.push(other?),
                }
            }
            if !need_dns.is_empty() {
                return Err(CoreError::NeedsDns(need_dns));
            }
            Ok((cred.id.clone(), version, out))
        })
        .await
    }

    async fn finish_credential_test(
        &self,
        ctx: &RequestCtx,
        actor: &Arc<Actor>,
        credential_id: String,
        version: i64,
        prepared: Vec<Prepared>,
        outcomes: Vec<TestOutcome>,
    ) -> CoreResult<CredentialTest> {
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (p, outcome) in prepared.iter().zip(outcomes) {
            let r = ConnectionTest {
                connection_id: p.connection_id.clone(),
                connection_name: p.connection_name.clone(),
                connection_kind: p.kind.clone(),
                credential_id: p.credential_id.clone(),
                version: p.version,
                via_source: p.via_source.clone(),
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
                        &audit::Draft::new(Action::ConnectionTest, "connection", r.connection_id.as_str(), org.as_str())
                            .workspace(Some(ws.as_str()))
                            .outcome(match &r.outcome.error {
                                None => Outcome::Success,
                                Some(e) if e.code == credvault_connect::ErrorCode::DestinationNotAllowed => Outcome::Denied,
                                Some(_) => Outcome::Error,
                            })
                            .details(serde_json::json!({
                                "credential_id": r.credential_id, "version": r.version, "ok": r.outcome.ok,
                                "latency_ms": r.outcome.latency_ms, "error_code": code, "error_message": message,
                                "via_source": r.via_source,
                            })),
                    )?;
                }
                Ok::<_, CoreError>(())
            })
            .await
    }
}
