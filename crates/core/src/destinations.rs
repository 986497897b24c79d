//! Where a credential's secret may be sent (PRODUCT.md §3; issue 13). The rule, enforced here
//! and nowhere else in the core:
//!
//! - A credential carries an [`AllowedSet`] (`credentials.allowed_destinations`). Only
//!   principals who may create/rotate it (`credential.create` in its write scope) set or widen
//!   it; the destinations its own fields name (an OAuth token URL, an SSH bastion) are allowed
//!   for it too, since only those principals write versions.
//! - A connection's destinations are declared by its connector kind
//!   (`credvault_domain::destinations`). Attaching a credential, creating a connection with one,
//!   or changing an attached connection's config is allowed only if every destination is
//!   allowed by the credential **and** by every source of its AWS role chain (their secrets
//!   travel on the same calls). When someone who may change a credential wires it, the missing
//!   destinations are added to that credential's set instead (trust on first use), audited as
//!   `credential.destinations.allow`. Anyone else gets 422 `destination_not_allowed`, naming the
//!   field and the destination, audited as a denial.
//! - Test connection, resolve and every OAuth call check again (defence in depth for rows
//!   written under older rules, or a set narrowed since), and connect's [`Guard`] checks every
//!   host a tester dials.
//!
//! A host name that only IP/CIDR entries could allow is decided by what it resolves to. DNS
//! never runs inside a store transaction: the transaction answers [`CoreError::NeedsDns`] with
//! the names, [`Service::with_dns`] resolves them and runs the operation once more with the
//! answers.

use crate::actions::Action;
use credvault_domain::problems::Code;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use credvault_connect::Guard;
use credvault_domain::connectors::ConnectorKind;
use credvault_domain::credential_types::CredentialType;
use credvault_domain::destinations::{
    AllowedSet, Destination, Host, NamedDestination, Verdict, connection_destinations, credential_destinations,
};
use credvault_domain::roles::Permission;
use credvault_domain::time::now_micros;
use credvault_store::Tx;

use crate::Service;
use crate::audit::{self, ActorRef, Draft, Outcome};
use crate::context::{Actor, RequestCtx};
use crate::credentials::{CredRow, load_cred, write_scope};
use crate::error::{CoreError, CoreResult};
use crate::settings::OrgSettings;

/// DNS answers gathered outside any transaction, by normalized host name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dns(Arc<HashMap<String, Vec<IpAddr>>>);

impl Dns {
    fn get(&self, host: &str) -> Option<&[IpAddr]> {
        self.0.get(host).map(Vec::as_slice)
    }
}

/// The stored set of a credential (`NULL`, before the upgrade step ran, allows nothing).
pub(crate) fn stored_set(c: &CredRow) -> AllowedSet {
    AllowedSet::from_stored(c.allowed_destinations.as_deref())
}

/// Whether `actor` may set or widen `c`'s allowed destinations.
pub(crate) fn may_set(actor: &Actor, settings: &OrgSettings, c: &CredRow) -> bool {
    let (org, ws) = (c.org(), c.ws());
    crate::auth::permits(actor, settings, write_scope(&org, &ws), Permission::CredentialCreate)
}

/// A credential whose secret travels on a call, with the set that call must satisfy.
pub(crate) struct Holder {
    /// The credential.
    pub cred: CredRow,
    /// Its stored set plus the destinations its version's fields name.
    pub set: AllowedSet,
    /// What this operation added to the stored set.
    added: Vec<Destination>,
}

impl Holder {
    fn new(cred: CredRow, ty: Option<CredentialType>, fields: &Json) -> Holder {
        let mut set = stored_set(&cred);
        if let Some(ty) = ty {
            for d in credential_destinations(ty, fields) {
                set.allow(&d.dest);
            }
        }
        Holder {
            cred,
            set,
            added: Vec::new(),
        }
    }
}

/// The credential `cred` (with the fields of the version that will be used: public ones for
/// attach-time checks, all of them for a test) and the sources of its AWS role chain (their
/// current versions' public fields), root last. `lock`: the rows are locked (an admission may
/// widen their sets).
pub(crate) fn holders(tx: &mut dyn Tx, cred: CredRow, fields: &Json, lock: bool) -> CoreResult<Vec<Holder>> {
    let ty = CredentialType::parse(&cred.ty);
    let mut next = (ty == Some(CredentialType::Aws))
        .then(|| {
            fields
                .get("source_credential_id")
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .flatten();
    let mut out = vec![Holder::new(cred, ty, fields)];
    while let Some(id) = next.take() {
        if out.iter().any(|h| h.cred.id == id) || out.len() > 5 {
            return Err(CoreError::conflict(
                Code::RoleChainInvalid,
                "the AWS role chain loops or is longer than 5 hops",
            ));
        }
        let src = load_cred(tx, &id, lock)?;
        let user = &out[out.len() - 1].cred;
        let visible = src.workspace_id.is_none() || src.workspace_id == user.workspace_id;
        if src.org_id != user.org_id || src.ty != "aws" || !visible {
            return Err(CoreError::conflict(
                Code::RoleChainInvalid,
                "a source credential of the role chain is not an aws credential visible from the credential that uses it",
            ));
        }
        let public = current_public_fields(tx, &src)?;
        next = public
            .get("source_credential_id")
            .and_then(Json::as_str)
            .map(str::to_owned);
        out.push(Holder::new(src, Some(CredentialType::Aws), &public));
    }
    Ok(out)
}

/// The public fields of a credential's current version.
pub(crate) fn current_public_fields(tx: &mut dyn Tx, c: &CredRow) -> CoreResult<Json> {
    version_public_fields(tx, &c.id, c.current_version)
}

/// The public fields of one version (`{}` if it does not exist).
pub(crate) fn version_public_fields(tx: &mut dyn Tx, cred: &str, version: i64) -> CoreResult<Json> {
    let row = tx.query_opt(
        "SELECT public_fields FROM credential_versions WHERE credential_id = $1 AND version = $2",
        &[cred.into(), version.into()],
    )?;
    Ok(match row {
        Some(r) => serde_json::from_str(&r.text(0)?)?,
        None => Json::Object(serde_json::Map::new()),
    })
}

/// A connection's destinations from its stored kind and config.
pub(crate) fn of_connection(kind: &str, config: &Json) -> CoreResult<Vec<NamedDestination>> {
    let kind = ConnectorKind::parse(kind).ok_or_else(|| CoreError::Internal(format!("stored kind {kind}")))?;
    connection_destinations(kind, config).map_err(|(field, m)| CoreError::invalid(field, Code::InvalidFormat, m))
}

fn host_key(d: &Destination) -> Option<String> {
    match &d.host {
        Host::Name(n) => Some(n.clone()),
        Host::Ip(_) => None,
    }
}

/// What a set says of a destination, given the DNS answers so far: `None` when the name
/// must be resolved first.
fn verdict(set: &AllowedSet, d: &Destination, dns: &Dns) -> Option<bool> {
    match set.check(d) {
        Verdict::Allowed => Some(true),
        Verdict::Denied => Some(false),
        Verdict::NeedsAddresses => {
            let key = host_key(d)?;
            dns.get(&key).map(|addrs| set.permits_resolved(d, addrs))
        }
    }
}

/// [`CoreError::NeedsDns`] with the names only addresses could allow that `dns` lacks.
fn needs_dns(holders: &[Holder], dests: &[NamedDestination], dns: &Dns) -> CoreResult<()> {
    let missing: Vec<String> = dests
        .iter()
        .filter(|d| holders.iter().any(|h| verdict(&h.set, &d.dest, dns).is_none()))
        .filter_map(|d| host_key(&d.dest))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CoreError::NeedsDns(missing))
    }
}

/// The refusal of one destination (never a secret: hosts and ports are configuration).
pub(crate) fn refusal(field: &str, dest: &Destination, credential: &str) -> CoreError {
    CoreError::invalid(
        field,
        Code::DestinationNotAllowed,
        format!(
            "{dest} is not an allowed destination of credential {credential}; someone who may change that credential can allow it"
        ),
    )
}

/// The audit details of a refusal.
pub(crate) fn refusal_details(field: &str, dest: &Destination, credential: &str) -> Json {
    serde_json::json!({
        "refused": "destination_not_allowed", "field": field, "destination": dest.to_string(),
        "credential_id": credential,
    })
}

/// Checks `dests` against every holder. Where a holder does not allow one and `tofu` holds
/// and the actor may change that holder, the destination is added to it (saved by
/// [`save_additions`]); otherwise the refusal is returned with its audit event (`draft`).
/// Answers [`CoreError::NeedsDns`] for names only addresses could allow and `dns` lacks.
pub(crate) fn admit(
    actor: &Actor,
    settings: &OrgSettings,
    holders: &mut [Holder],
    dests: &[NamedDestination],
    dns: &Dns,
    tofu: bool,
    draft: impl Fn() -> Draft,
) -> CoreResult<()> {
    needs_dns(holders, dests, dns)?;
    for d in dests {
        for h in holders.iter_mut() {
            if verdict(&h.set, &d.dest, dns) == Some(true) {
                continue;
            }
            if tofu && may_set(actor, settings, &h.cred) {
                h.set.allow(&d.dest);
                h.added.push(d.dest.clone());
                continue;
            }
            let err = refusal(&d.field, &d.dest, &h.cred.id);
            let mut ev = draft().outcome(Outcome::Denied);
            if let (Json::Object(m), Json::Object(extra)) =
                (&mut ev.details, refusal_details(&d.field, &d.dest, &h.cred.id))
            {
                m.extend(extra);
            }
            return Err(CoreError::Audited(Box::new((err, ev))));
        }
    }
    Ok(())
}

/// Checks `dests` without widening anything: `Err((field, destination, credential))` names
/// the first one not allowed. [`CoreError::NeedsDns`] as in [`admit`].
pub(crate) fn check(
    holders: &[Holder],
    dests: &[NamedDestination],
    dns: &Dns,
) -> CoreResult<Result<(), (String, Destination, String)>> {
    needs_dns(holders, dests, dns)?;
    for d in dests {
        for h in holders {
            if verdict(&h.set, &d.dest, dns) != Some(true) {
                return Ok(Err((d.field.clone(), d.dest.clone(), h.cred.id.clone())));
            }
        }
    }
    Ok(Ok(()))
}

/// Writes the destinations [`admit`] added to each holder's stored set and audits each
/// widening (`credential.destinations.allow`, with the connection that brought them).
/// Returns the additions, for the caller's own audit event.
pub(crate) fn save_additions(
    ops: &mut crate::operation::Ops<'_>,
    holders: &[Holder],
    via_connection: &str,
) -> CoreResult<Json> {
    let mut all = serde_json::Map::new();
    for h in holders.iter().filter(|h| !h.added.is_empty()) {
        let mut stored = stored_set(&h.cred);
        let mut added = Vec::new();
        for d in &h.added {
            if stored.allow(d) {
                added.push(d.to_string());
            }
        }
        if added.is_empty() {
            continue;
        }
        ops.tx().execute(
            "UPDATE credentials SET allowed_destinations = $1, updated_at = $2 WHERE id = $3",
            &[
                stored.to_stored().into(),
                now_micros().into(),
                h.cred.id.as_str().into(),
            ],
        )?;
        ops.record(
            h.cred
                .draft(Action::CredentialDestinationsAllow)
                .details(serde_json::json!({
                    "added": added, "via_connection": via_connection, "allowed_destinations": stored.to_strings(),
                    "reason": "wired by someone who may change the credential (trust on first use)",
                })),
        )?;
        all.insert(h.cred.id.clone(), Json::from(added));
    }
    Ok(Json::Object(all))
}

/// The runtime guard for a call carrying these holders' secrets.
pub(crate) fn guard(holders: &[Holder]) -> Guard {
    Guard::new(holders.iter().map(|h| (h.cred.id.clone(), h.set.clone())).collect())
}

/// The egress policy for a call carrying only `c`'s secret, whose `fields` (all of them)
/// name the endpoints it uses (OAuth token and revocation calls).
pub(crate) fn policy_for(
    base: &credvault_connect::EgressPolicy,
    c: &CredRow,
    fields: &Json,
) -> credvault_connect::EgressPolicy {
    let h = Holder::new(c.clone(), CredentialType::parse(&c.ty), fields);
    base.guarded(guard(&[h]))
}

/// Resolves names (concurrently, 3 s each); a name that does not resolve gets no addresses,
/// which allows nothing.
async fn lookup(names: Vec<String>, into: &mut HashMap<String, Vec<IpAddr>>) {
    let answers = futures_util::future::join_all(names.into_iter().map(|n| async move {
        let addrs: Vec<IpAddr> =
            match tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((n.as_str(), 0))).await {
                Ok(Ok(it)) => it.map(|a| a.ip()).collect(),
                _ => Vec::new(),
            };
        (n, addrs)
    }))
    .await;
    into.extend(answers);
}

impl Service {
    /// Runs `op`, and once more after resolving the names it asked for with
    /// [`CoreError::NeedsDns`].
    pub(crate) async fn with_dns<T, F, Fut>(&self, mut op: F) -> CoreResult<T>
    where
        F: FnMut(Dns) -> Fut,
        Fut: Future<Output = CoreResult<T>>,
    {
        let mut answers: HashMap<String, Vec<IpAddr>> = HashMap::new();
        loop {
            match op(Dns(Arc::new(answers.clone()))).await {
                Err(CoreError::NeedsDns(names)) => {
                    let mut new: Vec<String> = names.into_iter().filter(|n| !answers.contains_key(n)).collect();
                    new.sort();
                    new.dedup();
                    if new.is_empty() || answers.len() > 1_000 {
                        return Err(CoreError::Internal("destination names kept needing DNS".into()));
                    }
                    lookup(new, &mut answers).await;
                }
                other => return other,
            }
        }
    }

    /// The upgrade step of issue 13: every credential without an allowed set (created before
    /// destinations existed, or by an older node) gets exactly the destinations of the
    /// connections attached to it now, so nothing that works breaks; audited per credential.
    /// Returns how many credentials were set.
    pub async fn migrate_destinations(&self) -> CoreResult<usize> {
        let mut done = 0;
        loop {
            let n = self
                .inner
                .store
                .write(|tx: &mut dyn Tx| -> CoreResult<usize> {
                    let rows = tx.query(
                        &format!(
                            "SELECT id FROM credentials WHERE allowed_destinations IS NULL ORDER BY seq LIMIT 200{}",
                            tx.for_update()
                        ),
                        &[],
                    )?;
                    let ctx = RequestCtx {
                        user_agent: Some("credvault upgrade".into()),
                        ..RequestCtx::default()
                    };
                    for r in &rows {
                        let id = r.text(0)?;
                        let cred = load_cred(tx, &id, false)?;
                        let conns = tx.query(
                            "SELECT id, kind, config FROM connections WHERE credential_id = $1 ORDER BY seq",
                            &[id.as_str().into()],
                        )?;
                        let mut set = AllowedSet::empty();
                        let mut via = Vec::new();
                        for c in &conns {
                            let config: Json = serde_json::from_str(&c.text(2)?)?;
                            // A stored config that no longer makes a destination allows nothing.
                            for d in of_connection(&c.text(1)?, &config).unwrap_or_default() {
                                set.allow(&d.dest);
                            }
                            via.push(c.text(0)?);
                        }
                        tx.execute(
                            "UPDATE credentials SET allowed_destinations = $1 WHERE id = $2 AND allowed_destinations IS NULL",
                            &[set.to_stored().into(), id.as_str().into()],
                        )?;
                        audit::append(
                            tx,
                            &ctx,
                            &ActorRef::system(),
                            &cred.draft(Action::CredentialDestinationsAllow).details(serde_json::json!({
                                "added": set.to_strings(), "allowed_destinations": set.to_strings(),
                                "via_connections": via,
                                "reason": "upgrade: the destinations of the connections attached when destinations were introduced",
                            })),
                        )?;
                    }
                    Ok(rows.len())
                })
                .await?;
            done += n;
            if n < 200 {
                return Ok(done);
            }
        }
    }
}
