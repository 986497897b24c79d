//! The audit journal: events appended in the same transaction as the change they record,
//! hash-chained per organization so that editing, deleting or reordering any row is
//! detectable, and never holding a secret value.
//!
//! Each organization has its own chain (`chain` = the organization ID; events that belong to
//! no organization — failed authentications with unknown tokens — go to the `_instance` chain).
//! `hash = SHA-256(prev_hash || canonical JSON of every other field)`. The head of each chain
//! (`audit_heads`) is locked while an event is appended, which makes sequence numbers
//! increase along the chain.
//!
//! **Shards.** On PostgreSQL a head locked until commit would serialize every write of an
//! organization across all nodes, so an organization's events spread over several chains:
//! shard 0 is the organization's own chain (named by its ID), shard k is `{org}#{k}`. An
//! append locks any free head of the organization (`FOR UPDATE SKIP LOCKED`; a transaction
//! always finds the heads it already holds, so it never waits while holding one) and waits
//! for one only when all are busy. Each shard is a complete chain of its own (a total order,
//! every event once); the shards an organization has are recorded in its shard 0 by
//! `audit.shards_opened` events, so verification notices a shard that was removed whole, head
//! and all. SQLite has a single writer: one chain per organization.

mod events;
mod verify;

pub use events::*;
pub use verify::*;

use crate::actions::Action;
use serde::Serialize;
use sha2::{Digest, Sha256};

use credvault_domain::time::{Micros, now_micros, to_rfc3339};
use credvault_store::{Engine, Row, Tx, Value};

use crate::context::{Actor, RequestCtx};
use crate::error::CoreResult;

/// The chain for events outside any organization.
pub const INSTANCE_CHAIN: &str = "_instance";

/// How many chains an organization's events spread over on PostgreSQL (at least; shards
/// once opened stay). Set at start-up from the configuration.
static SHARDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(DEFAULT_SHARDS);

/// The default number of shards per organization on PostgreSQL.
pub const DEFAULT_SHARDS: u32 = 16;

/// The largest number of shards an operator may configure.
pub const MAX_SHARDS: u32 = 256;

/// Sets the number of shards per organization (PostgreSQL; clamped to 1..=[`MAX_SHARDS`]).
pub fn set_shards(n: u32) {
    SHARDS.store(n.clamp(1, MAX_SHARDS), std::sync::atomic::Ordering::Relaxed);
}

/// Shards per organization on this engine.
pub fn shards_for(engine: Engine) -> u32 {
    match engine {
        Engine::Sqlite => 1,
        Engine::Postgres => SHARDS.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// The name of an organization's shard `k` (shard 0 is the organization's own chain).
pub fn shard_name(org: &str, k: u32) -> String {
    if k == 0 { org.to_owned() } else { format!("{org}#{k}") }
}

/// The organization (or the instance chain) a chain belongs to.
pub fn chain_org(chain: &str) -> &str {
    chain.split_once('#').map_or(chain, |(org, _)| org)
}

/// Opens the missing shards of an organization (up to the configured number): shard 0 is
/// locked first, the new heads are created (nobody else sees them before commit) and their
/// names are recorded in shard 0 by one `audit.shards_opened` event. Returns how many were
/// opened.
pub fn open_shards(tx: &mut dyn Tx, org: &str) -> CoreResult<usize> {
    let want = shards_for(tx.engine());
    if want <= 1 || org == INSTANCE_CHAIN {
        return Ok(0);
    }
    let count = |tx: &mut dyn Tx| -> CoreResult<Vec<String>> {
        tx.query("SELECT chain FROM audit_heads WHERE org = $1", &[org.into()])?
            .iter()
            .map(|r| Ok(r.text(0)?))
            .collect()
    };
    if count(tx)?.len() >= want as usize {
        return Ok(0);
    }
    create_chain(tx, org)?;
    tx.query_one(
        &format!("SELECT last_seq FROM audit_heads WHERE chain = $1{}", tx.for_update()),
        &[org.into()],
    )?;
    let have = count(tx)?;
    let mut opened = Vec::new();
    for k in 1..want {
        let name = shard_name(org, k);
        if !have.contains(&name) {
            create_chain(tx, &name)?;
            opened.push(name);
        }
    }
    if opened.is_empty() {
        return Ok(0);
    }
    let d = Draft {
        action: Action::AuditShardsOpened,
        target_type: Some("audit_chain"),
        target_id: Some(org.to_owned()),
        org_id: Some(org.to_owned()),
        workspace_id: None,
        outcome: Outcome::Success,
        details: serde_json::json!({ "chains": opened }),
    };
    let ctx = RequestCtx {
        request_id: String::new(),
        source_ip: None,
        user_agent: Some("credvault audit shards".into()),
        received_at: 0,
    };
    append_to(tx, &ctx, &ActorRef::system(), &d, Some(org))?;
    Ok(opened.len())
}

/// Outcome of the recorded action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused by authorization or authentication.
    Denied,
    /// It failed.
    Error,
}

impl Outcome {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// An event about to be appended.
#[derive(Clone, Debug)]
pub struct Draft {
    /// What happened (the catalogue: [`crate::actions::Action`]).
    pub action: Action,
    /// Kind of the target (`credential`, `token`…).
    pub target_type: Option<&'static str>,
    /// The target's ID.
    pub target_id: Option<String>,
    /// The organization whose chain records it (`None`: the instance chain).
    pub org_id: Option<String>,
    /// The workspace, where there is one.
    pub workspace_id: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Extra facts; must never hold a secret value.
    pub details: serde_json::Value,
}

impl Draft {
    /// A successful action on a target in an organization.
    pub fn new(
        action: Action,
        target_type: &'static str,
        target_id: impl Into<String>,
        org_id: impl Into<String>,
    ) -> Draft {
        Draft {
            action,
            target_type: Some(target_type),
            target_id: Some(target_id.into()),
            org_id: Some(org_id.into()),
            workspace_id: None,
            outcome: Outcome::Success,
            details: serde_json::Value::Object(Default::default()),
        }
    }
    /// Sets the workspace.
    pub fn workspace(mut self, ws: Option<impl Into<String>>) -> Draft {
        self.workspace_id = ws.map(Into::into);
        self
    }
    /// Sets the details.
    pub fn details(mut self, d: serde_json::Value) -> Draft {
        self.details = d;
        self
    }
    /// Sets the outcome.
    pub fn outcome(mut self, o: Outcome) -> Draft {
        self.outcome = o;
        self
    }
}

/// Who acted, as recorded.
#[derive(Clone, Debug)]
pub struct ActorRef {
    /// Principal ID, if known.
    pub id: Option<String>,
    /// `user`, `service_account`, `system` or `anonymous`.
    pub kind: &'static str,
}

impl ActorRef {
    /// The server itself (bootstrap, schedulers).
    pub fn system() -> ActorRef {
        ActorRef {
            id: None,
            kind: "system",
        }
    }
    /// A user (or nobody known, `None`), e.g. the person an OAuth callback came back for.
    pub fn user(id: Option<String>) -> ActorRef {
        ActorRef { id, kind: "user" }
    }
    /// An unauthenticated caller.
    pub fn anonymous() -> ActorRef {
        ActorRef {
            id: None,
            kind: "anonymous",
        }
    }
}

impl From<&Actor> for ActorRef {
    fn from(a: &Actor) -> Self {
        ActorRef {
            id: Some(a.principal_id.to_string()),
            kind: a.kind.as_str(),
        }
    }
}

/// The fields a hash covers, in a fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    chain: &'a str,
    at: i64,
    org_id: Option<&'a str>,
    workspace_id: Option<&'a str>,
    actor_id: Option<&'a str>,
    actor_kind: &'a str,
    action: &'a str,
    target_type: Option<&'a str>,
    target_id: Option<&'a str>,
    outcome: &'a str,
    source_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
    details: &'a str,
}

fn hash_event(prev: &[u8], c: &Canonical<'_>) -> CoreResult<Vec<u8>> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(serde_json::to_vec(c)?);
    Ok(h.finalize().to_vec())
}

/// The largest `details` an event stores, serialized (bytes). Larger ones are cut down before
/// the event is hashed, so the chain covers exactly what is stored: every top-level value over
/// [`MAX_DETAIL_VALUE_BYTES`] is replaced by `{"truncated": true, "original_bytes": N}`, and if
/// that is not enough the whole object becomes `{"truncated": true, "original_bytes": N,
/// "keys": [...]}`. One event can then always be delivered (a UDP datagram, a webhook body).
pub const MAX_DETAIL_BYTES: usize = 16 * 1024;

/// The largest top-level detail value kept whole when `details` is over [`MAX_DETAIL_BYTES`].
pub const MAX_DETAIL_VALUE_BYTES: usize = 1024;

/// `details` serialized, bounded by [`MAX_DETAIL_BYTES`].
pub(crate) fn bounded_details(details: &serde_json::Value) -> CoreResult<String> {
    let full = serde_json::to_string(details)?;
    if full.len() <= MAX_DETAIL_BYTES {
        return Ok(full);
    }
    let marker = |n: usize| serde_json::json!({"truncated": true, "original_bytes": n});
    if let serde_json::Value::Object(m) = details {
        let mut cut = serde_json::Map::new();
        for (k, v) in m {
            let len = serde_json::to_string(v)?.len();
            cut.insert(
                k.clone(),
                if len > MAX_DETAIL_VALUE_BYTES {
                    marker(len)
                } else {
                    v.clone()
                },
            );
        }
        cut.insert("_truncated".into(), marker(full.len()));
        let text = serde_json::to_string(&serde_json::Value::Object(cut))?;
        if text.len() <= MAX_DETAIL_BYTES {
            return Ok(text);
        }
        let keys: Vec<&String> = m.keys().take(64).collect();
        let mut last = marker(full.len());
        last["keys"] = serde_json::json!(keys);
        let text = serde_json::to_string(&last)?;
        if text.len() <= MAX_DETAIL_BYTES {
            return Ok(text);
        }
    }
    Ok(serde_json::to_string(&marker(full.len()))?)
}

/// Creates the head row of a chain (a new organization's, or the instance chain).
pub fn create_chain(tx: &mut dyn Tx, chain: &str) -> CoreResult<()> {
    tx.execute(
        "INSERT INTO audit_heads (chain, last_seq, hash, org) VALUES ($1, 0, $2, $3) ON CONFLICT (chain) DO NOTHING",
        &[chain.into(), Value::Bytes(vec![0u8; 32]), chain_org(chain).into()],
    )?;
    Ok(())
}

/// Appends one event in the caller's transaction and returns its sequence number.
pub fn append(tx: &mut dyn Tx, ctx: &RequestCtx, actor: &ActorRef, d: &Draft) -> CoreResult<i64> {
    append_to(tx, ctx, actor, d, None)
}

/// Locks the head an event goes to: the given chain, or any free shard of the event's
/// organization (waiting for one only when every shard is busy).
/// Returns the chain, its head's hash and, when the same statement drew it (PostgreSQL's
/// common case), the event's sequence number.
fn lock_head(tx: &mut dyn Tx, org: &str, chain: Option<&str>) -> CoreResult<(String, Vec<u8>, Option<i64>)> {
    if chain.is_none() && org != INSTANCE_CHAIN && tx.engine() == Engine::Postgres {
        // One round trip: a free head, locked, and the sequence number (drawn once, for the
        // one row the inner query returns — none when every head is busy).
        const FREE: &str = "SELECT h.chain, h.hash, nextval('audit_seq') FROM \
             (SELECT chain, hash FROM audit_heads WHERE org = $1 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED) h";
        if let Some(r) = tx.query_opt(FREE, &[org.into()])? {
            return Ok((r.text(0)?, r.bytes(1)?, Some(r.int(2)?)));
        }
        // Every shard is busy (or none exists yet): wait for one of those that exist.
        const ANY: &str = "SELECT chain FROM audit_heads WHERE org = $1 ORDER BY random() LIMIT 1";
        if let Some(r) = tx.query_opt(ANY, &[org.into()])? {
            let name = r.text(0)?;
            let r = tx.query_one(
                "SELECT hash FROM audit_heads WHERE chain = $1 FOR UPDATE",
                &[name.as_str().into()],
            )?;
            return Ok((name, r.bytes(0)?, None));
        }
    }
    let chain = chain.unwrap_or(org);
    let sql = format!("SELECT hash FROM audit_heads WHERE chain = $1{}", tx.for_update());
    let head = match tx.query_opt(&sql, &[chain.into()])? {
        Some(r) => r,
        None => {
            create_chain(tx, chain)?;
            tx.query_one(&sql, &[chain.into()])?
        }
    };
    Ok((chain.to_owned(), head.bytes(0)?, None))
}

/// Appends one event to the given chain (or, with `None`, to a free shard of its
/// organization's chains) and returns its sequence number.
pub fn append_to(
    tx: &mut dyn Tx,
    ctx: &RequestCtx,
    actor: &ActorRef,
    d: &Draft,
    chain: Option<&str>,
) -> CoreResult<i64> {
    let org = d.org_id.as_deref().unwrap_or(INSTANCE_CHAIN);
    debug_assert!(
        chain.is_none_or(|c| chain_org(c) == org),
        "chain {chain:?} is not {org}'s"
    );
    let (chain, prev_hash, drawn) = lock_head(tx, org, chain)?;
    let chain = chain.as_str();
    let seq = match tx.engine() {
        Engine::Postgres if let Some(seq) = drawn => seq,
        Engine::Postgres => tx.query_one("SELECT nextval('audit_seq')", &[])?.int(0)?,
        Engine::Sqlite => tx
            .query_one("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events", &[])?
            .int(0)?,
    };
    let (hash, params) = event_row(seq, chain, ctx, actor, d, prev_hash)?;
    match tx.engine() {
        // The event and its head in one round trip.
        Engine::Postgres => {
            tx.execute(&INSERT_ONE_WITH_HEAD, &params)?;
        }
        Engine::Sqlite => {
            tx.execute(&INSERT_ONE, &params)?;
            tx.execute(
                "UPDATE audit_heads SET last_seq = $1, hash = $2 WHERE chain = $3",
                &[seq.into(), Value::Bytes(hash), chain.into()],
            )?;
        }
    }
    Ok(seq)
}

const INSERT_EVENT: &str = "INSERT INTO audit_events (seq, chain, at, org_id, workspace_id, actor_id, actor_kind, action, \
     target_type, target_id, outcome, source_ip, user_agent, request_id, details, prev_hash, hash) VALUES";

/// One event (SQLite; the head is updated apart).
static INSERT_ONE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{INSERT_EVENT} {}", value_marks(1, 1)));

/// One event and its head in one statement (PostgreSQL).
static INSERT_ONE_WITH_HEAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH e AS ({INSERT_EVENT} {}) UPDATE audit_heads SET last_seq = $1, hash = $17 WHERE chain = $2",
        value_marks(1, 1)
    )
});

/// Columns of an `audit_events` row.
const EVENT_PARAMS: usize = 17;

/// `($1, …, $17), ($18, …)` for `rows` rows, numbered from `first`.
fn value_marks(first: usize, rows: usize) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (0..EVENT_PARAMS)
                .map(|c| format!("${}", first + r * EVENT_PARAMS + c))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One event's hash and its row's values (in `INSERT_EVENT`'s column order).
fn event_row(
    seq: i64,
    chain: &str,
    ctx: &RequestCtx,
    actor: &ActorRef,
    d: &Draft,
    prev_hash: Vec<u8>,
) -> CoreResult<(Vec<u8>, Vec<Value>)> {
    let at = now_micros();
    let details = bounded_details(&d.details)?;
    let c = Canonical {
        seq,
        chain,
        at,
        org_id: d.org_id.as_deref(),
        workspace_id: d.workspace_id.as_deref(),
        actor_id: actor.id.as_deref(),
        actor_kind: actor.kind,
        action: d.action.as_str(),
        target_type: d.target_type,
        target_id: d.target_id.as_deref(),
        outcome: d.outcome.as_str(),
        source_ip: ctx.source_ip.as_deref(),
        user_agent: ctx.user_agent.as_deref(),
        request_id: Some(ctx.request_id.as_str()).filter(|s| !s.is_empty()),
        details: &details,
    };
    let hash = hash_event(&prev_hash, &c)?;
    let params = vec![
        seq.into(),
        chain.into(),
        at.into(),
        c.org_id.into(),
        c.workspace_id.into(),
        c.actor_id.into(),
        c.actor_kind.into(),
        c.action.into(),
        c.target_type.into(),
        c.target_id.into(),
        c.outcome.into(),
        c.source_ip.into(),
        c.user_agent.into(),
        c.request_id.into(),
        details.as_str().into(),
        Value::Bytes(prev_hash),
        Value::Bytes(hash.clone()),
    ];
    Ok((hash, params))
}

/// Appends several events of one organization (the group-committed resolve records of
/// [`crate::appender`]) to one chain, in order, with one head update: on PostgreSQL a free
/// shard in three round trips for the lot, on SQLite its chain in four statements. Returns
/// their sequence numbers.
pub(crate) fn append_many(
    tx: &mut dyn Tx,
    org: &str,
    events: &[(&RequestCtx, &ActorRef, &Draft)],
) -> CoreResult<Vec<i64>> {
    if events.len() == 1 {
        return events.iter().map(|(ctx, who, d)| append(tx, ctx, who, d)).collect();
    }
    let (chain, mut prev, drawn) = lock_head(tx, org, None)?;
    let seqs: Vec<i64> = match tx.engine() {
        Engine::Postgres => {
            let mut seqs: Vec<i64> = drawn.into_iter().collect();
            let more = events.len() - seqs.len();
            if more > 0 {
                for r in tx.query(
                    "SELECT nextval('audit_seq') FROM generate_series(1, $1)",
                    &[(more as i64).into()],
                )? {
                    seqs.push(r.int(0)?);
                }
            }
            seqs.sort_unstable();
            seqs
        }
        // One writer: the next numbers are free.
        Engine::Sqlite => {
            let first = tx
                .query_one("SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events", &[])?
                .int(0)?;
            (first..first + events.len() as i64).collect()
        }
    };
    let mut params = Vec::with_capacity(events.len() * EVENT_PARAMS + 2);
    for ((ctx, who, d), seq) in events.iter().zip(&seqs) {
        debug_assert_eq!(d.org_id.as_deref().unwrap_or(INSTANCE_CHAIN), org);
        let (hash, row) = event_row(*seq, &chain, ctx, who, d, prev)?;
        params.extend(row);
        prev = hash;
    }
    let last = *seqs.last().unwrap_or(&0);
    match tx.engine() {
        // The events and their head in one round trip.
        Engine::Postgres => {
            let n = params.len();
            params.push(last.into());
            params.push(Value::Bytes(prev));
            params.push(chain.as_str().into());
            tx.execute(
                &format!(
                    "WITH e AS ({INSERT_EVENT} {}) UPDATE audit_heads SET last_seq = ${}, hash = ${} WHERE chain = ${}",
                    value_marks(1, events.len()),
                    n + 1,
                    n + 2,
                    n + 3
                ),
                &params,
            )?;
        }
        Engine::Sqlite => {
            tx.execute(&format!("{INSERT_EVENT} {}", value_marks(1, events.len())), &params)?;
            tx.execute(
                "UPDATE audit_heads SET last_seq = $1, hash = $2 WHERE chain = $3",
                &[last.into(), Value::Bytes(prev), chain.as_str().into()],
            )?;
        }
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::path::Path;

    #[test]
    fn details_over_the_cap_are_cut_down_and_say_so() {
        use super::{MAX_DETAIL_BYTES, bounded_details};
        let small = serde_json::json!({"a": 1, "b": "two"});
        assert_eq!(bounded_details(&small).unwrap(), small.to_string());
        let big = serde_json::json!({"keep": "me", "huge": "x".repeat(100_000)});
        let out: serde_json::Value = serde_json::from_str(&bounded_details(&big).unwrap()).unwrap();
        assert_eq!(out["keep"], "me");
        assert_eq!(out["huge"]["truncated"], true);
        assert_eq!(out["huge"]["original_bytes"], 100_002);
        assert!(out["_truncated"]["original_bytes"].as_u64().unwrap() > 100_000);
        // Many middling values: only the keys are kept.
        let many: serde_json::Map<String, serde_json::Value> = (0..100)
            .map(|i| (format!("k{i}"), serde_json::json!("y".repeat(900))))
            .collect();
        let text = bounded_details(&serde_json::Value::Object(many)).unwrap();
        assert!(text.len() <= MAX_DETAIL_BYTES, "{}", text.len());
        let out: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(out["truncated"], true);
        assert_eq!(out["keys"].as_array().unwrap().len(), 64);
        // Not an object at all.
        let arr = serde_json::json!(vec!["z".repeat(1000); 100]);
        let out: serde_json::Value = serde_json::from_str(&bounded_details(&arr).unwrap()).unwrap();
        assert_eq!(out["truncated"], true);
    }
    /// Every catalogued action is emitted somewhere (the type makes an uncatalogued one
    /// impossible): a catalogue entry nothing uses would document an event that never comes.
    #[test]
    fn every_catalogued_action_is_emitted() {
        fn sources(dir: &Path, out: &mut String) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("actions.rs") {
                    out.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut text = String::new();
        sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut text);
        let unused: Vec<&str> = crate::actions::Action::ALL
            .iter()
            .filter(|a| {
                let variant: String = a
                    .as_str()
                    .split(['.', '_'])
                    .map(|w| w[..1].to_uppercase() + &w[1..])
                    .collect();
                !text.contains(&format!("Action::{variant}"))
            })
            .map(|a| a.as_str())
            .collect();
        assert!(unused.is_empty(), "catalogued but never emitted: {unused:?}");
    }
}
