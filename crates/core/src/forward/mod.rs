//! Forwarding the audit journal to SIEMs through an outbox: the journal itself is the outbox,
//! and each sink (declared only in the server's config file, never through the API) has a
//! cursor in the store (`sink_cursors`). A forwarder reads events after the cursor in sequence
//! order, delivers them, and only then advances the cursor — at least once, in order, with the
//! sequence number in every record so a receiver can de-duplicate. An outage of any length
//! loses nothing: events wait in the store. On PostgreSQL a lease keeps one node per sink, and
//! a gap in sequence numbers (a transaction that took a number and has not committed yet) is
//! waited for until every transaction in progress when it was seen has ended: then the number
//! is either visible or was rolled back — a committed event is never skipped.
//!
//! Fail-closed: a sink with `on_backlog_full = "block"` whose backlog passes `max_backlog`
//! closes the [`AuditGate`], and secret-bearing operations answer `503 audit_unavailable`.

mod format;
mod sinks;

use crate::actions::Action;
use credvault_domain::problems::Code;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use credvault_domain::time::now_micros;
use credvault_store::{Store, Tx};

use crate::audit::{EVENT_COLUMNS, Event, StoredEvent};
use crate::error::{CoreError, CoreResult};

pub use format::{cef, json_line, syslog_5424};

/// What kind of sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// JSON (or CEF) lines in a file, rotated by size.
    File,
    /// Syslog, RFC 5424.
    Syslog,
    /// HTTPS POST of signed batches.
    Webhook,
}

/// Syslog transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// One datagram per event.
    Udp,
    /// TCP with octet counting (RFC 6587).
    Tcp,
    /// TCP+TLS with octet counting (RFC 5425).
    Tls,
}

/// Record format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The event as JSON.
    #[default]
    Json,
    /// ArcSight Common Event Format.
    Cef,
}

/// What a full backlog does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBacklogFull {
    /// Raise an alert event and keep serving.
    #[default]
    Alert,
    /// Refuse secret-bearing operations (503) until the sink catches up.
    Block,
}

/// One sink, as declared in the config file (`[[audit_sinks]]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique name (its cursor's key).
    pub name: String,
    /// Kind.
    pub kind: SinkKind,
    /// Record format.
    #[serde(default)]
    pub format: Format,
    /// File sinks: the file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// File sinks: rotate past this size.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// File sinks: rotated files kept.
    #[serde(default)]
    pub keep: Option<u32>,
    /// Syslog: `host:port`.
    #[serde(default)]
    pub address: Option<String>,
    /// Syslog: transport.
    #[serde(default)]
    pub transport: Option<Transport>,
    /// Syslog: APP-NAME.
    #[serde(default)]
    pub app_name: Option<String>,
    /// Syslog TLS / webhook: CA certificate (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Syslog TLS: the name in the receiver's certificate (default: the host of `address`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Webhook: URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Webhook: file holding the HMAC-SHA256 key for the `X-Credvault-Signature` header.
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// Only `alert.*` events (incident workflows).
    #[serde(default)]
    pub alerts_only: bool,
    /// Events per delivery.
    #[serde(default)]
    pub batch_size: Option<i64>,
    /// Backlog size that counts as full.
    #[serde(default)]
    pub max_backlog: Option<i64>,
    /// What a full backlog does.
    #[serde(default)]
    pub on_backlog_full: OnBacklogFull,
}

/// Health of one sink.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkHealth {
    /// Events not yet delivered.
    pub backlog: i64,
    /// The last delivered sequence number.
    pub delivered_seq: i64,
    /// Events delivered since start (batches may repeat after a crash).
    pub delivered: u64,
    /// The last delivery error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Whether this sink currently blocks secret-bearing operations.
    pub blocking: bool,
    /// Events this node parked for this sink since it started (refused by it for good).
    pub dead_letters: u64,
}

/// Shared between forwarders and the service: sink health and the fail-closed gate.
#[derive(Clone, Debug, Default)]
pub struct AuditGate {
    health: Arc<Mutex<HashMap<String, SinkHealth>>>,
}

impl AuditGate {
    /// Refuses when a blocking sink is over its backlog limit.
    pub fn check(&self) -> CoreResult<()> {
        let blocked: Vec<String> = match self.health.lock() {
            Ok(h) => h.iter().filter(|(_, s)| s.blocking).map(|(n, _)| n.clone()).collect(),
            Err(_) => vec!["(unknown)".into()],
        };
        if blocked.is_empty() {
            return Ok(());
        }
        Err(CoreError::Unavailable {
            code: Code::AuditUnavailable,
            message: format!(
                "the audit sink(s) {} are behind their limit; secret-bearing operations wait until they catch up",
                blocked.join(", ")
            ),
        })
    }

    /// A snapshot of every sink's health.
    pub fn snapshot(&self) -> Vec<(String, SinkHealth)> {
        let mut v: Vec<_> = self
            .health
            .lock()
            .map(|h| h.iter().map(|(k, s)| (k.clone(), s.clone())).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SinkHealth)) {
        if let Ok(mut h) = self.health.lock() {
            f(h.entry(name.to_owned()).or_default());
        }
    }
}

/// SQLite: how long a gap in sequence numbers (only a row removed by hand makes one there) is
/// waited for before it is passed. PostgreSQL waits for the transactions instead ([`Gap`]).
const GAP_WAIT_US: i64 = 10_000_000;

struct Batch {
    events: Vec<Event>,
    /// The cursor after this batch (may pass events filtered out by `alerts_only`).
    next_cursor: i64,
}

/// A gap in sequence numbers being waited for (PostgreSQL): a transaction took the number and
/// has not committed yet, or rolled back. `waiting_on` are the transactions that were in
/// progress when the gap was first seen (the gap's holder is among them): once none is, the
/// number either became visible (committed) or never will (rolled back) — so no committed
/// event is ever skipped, however long its transaction took.
#[derive(Clone, Debug, Default)]
pub(crate) struct Gap {
    /// The first missing sequence number.
    seq: i64,
    /// `xid8` values, as text.
    waiting_on: Vec<String>,
}

/// Decides a gap (PostgreSQL) starting at `missing`, before the visible `seen`: `true` when it
/// can be passed (its transaction rolled back), `false` to wait. `gap` carries the state
/// between polls.
fn pass_gap(tx: &mut dyn Tx, missing: i64, seen: i64, gap: &mut Option<Gap>) -> CoreResult<bool> {
    let waiting = match gap.take() {
        Some(g) if g.seq == missing => g.waiting_on,
        _ => tx
            .query(
                "SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x \
                 WHERE x <> COALESCE(pg_current_xact_id_if_assigned(), '0'::xid8)",
                &[],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let still: Vec<String> = if waiting.is_empty() {
        Vec::new()
    } else {
        let list = format!("{{{}}}", waiting.join(","));
        tx.query(
            "SELECT x::text FROM unnest(($1::text)::xid8[]) AS x WHERE pg_xact_status(x) = 'in progress'",
            &[list.as_str().into()],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>, _>>()?
    };
    if !still.is_empty() {
        *gap = Some(Gap {
            seq: missing,
            waiting_on: still,
        });
        return Ok(false);
    }
    // Every transaction that could hold the numbers has ended: committed ones are visible now
    // (read them on the next poll, in order); the rest rolled back.
    let appeared = tx
        .query_one(
            "SELECT COUNT(*) FROM audit_events WHERE seq >= $1 AND seq < $2",
            &[missing.into(), seen.into()],
        )?
        .int(0)?;
    Ok(appeared == 0)
}

/// Takes (or keeps) the sink's lease and reads the next batch after its cursor.
fn next_batch(
    tx: &mut dyn Tx,
    name: &str,
    node: &str,
    limit: i64,
    alerts_only: bool,
    gap: &mut Option<Gap>,
) -> CoreResult<Option<(Batch, i64)>> {
    let now = now_micros();
    tx.execute(
        "INSERT INTO sink_cursors (name, last_seq, owner, lease_until, updated_at) VALUES ($1, 0, NULL, 0, $2) ON CONFLICT (name) DO NOTHING",
        &[name.into(), now.into()],
    )?;
    let got = tx.execute(
        "UPDATE sink_cursors SET owner = $1, lease_until = $2 WHERE name = $3 AND (owner = $1 OR owner IS NULL OR lease_until < $4)",
        &[node.into(), (now + LEASE_US).into(), name.into(), now.into()],
    )?;
    if got == 0 {
        return Ok(None); // another node forwards this sink
    }
    let cursor = tx
        .query_one("SELECT last_seq FROM sink_cursors WHERE name = $1", &[name.into()])?
        .int(0)?;
    let max = tx
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM audit_events", &[])?
        .int(0)?;
    let rows = tx.query(
        &format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"),
        &[cursor.into(), limit.into()],
    )?;
    let mut events = Vec::new();
    let mut next = cursor;
    for r in &rows {
        let e = StoredEvent::from_row(r)?;
        let seq = e.seq();
        if seq != next + 1 {
            // A gap: an uncommitted (or rolled back) transaction holds the missing number.
            let ev = e.into_event();
            let pass = match tx.engine() {
                credvault_store::Engine::Postgres => pass_gap(tx, next + 1, seq, gap)?,
                // One writer takes numbers in commit order: a gap is a row removed by hand;
                // wait briefly in case, then pass it.
                credvault_store::Engine::Sqlite => {
                    let at = credvault_domain::time::parse_rfc3339(&ev.at).unwrap_or(0);
                    now - at >= GAP_WAIT_US
                }
            };
            if !pass {
                break;
            }
            next = seq;
            if !alerts_only || ev.action.starts_with("alert.") {
                events.push(ev);
            }
            continue;
        }
        next = seq;
        let ev = e.into_event();
        if !alerts_only || ev.action.starts_with("alert.") {
            events.push(ev);
        }
    }
    Ok(Some((
        Batch {
            events,
            next_cursor: next,
        },
        max - cursor,
    )))
}

fn backlog_of(tx: &mut dyn Tx, name: &str) -> CoreResult<i64> {
    let cursor = tx
        .query_opt("SELECT last_seq FROM sink_cursors WHERE name = $1", &[name.into()])?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    let max = tx
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM audit_events", &[])?
        .int(0)?;
    Ok(max - cursor)
}

fn commit_cursor(tx: &mut dyn Tx, name: &str, node: &str, seq: i64) -> CoreResult<()> {
    tx.execute(
        "UPDATE sink_cursors SET last_seq = $1, updated_at = $2 WHERE name = $3 AND owner = $4 AND last_seq < $1",
        &[seq.into(), now_micros().into(), name.into(), node.into()],
    )?;
    Ok(())
}

/// How long a forwarder's lease on a sink lasts without renewal (a crashed node's sink is
/// picked up by the next start or another node after this).
const LEASE_US: i64 = 15_000_000;

/// How often every node recomputes each sink's backlog for the fail-closed gate, whether or
/// not it holds the sink's lease.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The running forwarders of this node.
pub struct Forwarders {
    node: String,
    store: Store,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Forwarders {
    /// Stops the forwarders and gives their leases back, so the next start (or another node)
    /// resumes at once instead of waiting for the leases to run out.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        let node = self.node.clone();
        let r = self
            .store
            .write(move |tx| {
                tx.execute(
                    "UPDATE sink_cursors SET owner = NULL, lease_until = 0 WHERE owner = $1",
                    &[node.as_str().into()],
                )?;
                CoreResult::Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not release the audit sinks' leases");
        }
    }
}

/// Starts one forwarder and one backlog watcher per sink. Before it returns, each sink's
/// backlog has been read once and the gate set from it, so a server never serves
/// secret-bearing operations past a blocking sink that is already over its limit.
pub async fn start_forwarders(store: Store, sinks: Vec<SinkConfig>, gate: AuditGate) -> Forwarders {
    let node = format!("{}-{}", format::hostname(), std::process::id());
    let mut tasks = Vec::new();
    for cfg in sinks {
        let mut watch = Watch::default();
        watch.check(&store, &cfg, &gate).await;
        let (st, g, c) = (store.clone(), gate.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                watch.check(&st, &c, &g).await;
            }
        }));
        let (store, gate, node) = (store.clone(), gate.clone(), node.clone());
        tasks.push(tokio::spawn(async move { run_sink(store, cfg, gate, node).await }));
    }
    Forwarders { node, store, tasks }
}

/// A sink's backlog as every node sees it: sets the gate and raises `alert.audit_backlog`
/// when the backlog passes `max_backlog` (once per crossing, on each node).
#[derive(Default)]
struct Watch {
    over: bool,
}

impl Watch {
    async fn check(&mut self, store: &Store, cfg: &SinkConfig, gate: &AuditGate) {
        let max_backlog = cfg.max_backlog.unwrap_or(100_000);
        let n = cfg.name.clone();
        let backlog = match store.read(move |tx| backlog_of(tx, &n)).await {
            Ok(b) => b,
            Err(e) => {
                // Cannot tell: a blocking sink fails closed.
                tracing::error!(sink = %cfg.name, error = %e, "cannot read the audit sink's backlog");
                if cfg.on_backlog_full == OnBacklogFull::Block {
                    gate.update(&cfg.name, |h| h.blocking = true);
                }
                return;
            }
        };
        let over = backlog > max_backlog;
        let blocking = cfg.on_backlog_full == OnBacklogFull::Block && over;
        gate.update(&cfg.name, |h| {
            h.backlog = backlog;
            h.blocking = blocking;
        });
        if over && !self.over {
            let (name, mode) = (cfg.name.clone(), cfg.on_backlog_full);
            let r = store
                .write(move |tx| {
                    let ctx = crate::context::RequestCtx {
                        request_id: String::new(),
                        source_ip: None,
                        user_agent: Some("credvault audit forwarder".into()),
                        received_at: 0,
                    };
                    let d = crate::audit::Draft {
                        action: Action::AlertAuditBacklog,
                        target_type: Some("audit_sink"),
                        target_id: Some(name),
                        org_id: None,
                        workspace_id: None,
                        outcome: crate::audit::Outcome::Success,
                        details: serde_json::json!({
                            "backlog": backlog, "max_backlog": max_backlog,
                            "on_backlog_full": mode, "blocking": mode == OnBacklogFull::Block,
                        }),
                    };
                    crate::audit::append(tx, &ctx, &crate::audit::ActorRef::system(), &d).map(|_| ())
                })
                .await;
            if let Err(e) = r {
                tracing::error!(sink = %cfg.name, error = %e, "cannot record the audit backlog alert");
                return; // try again on the next check
            }
            tracing::warn!(sink = %cfg.name, backlog, max_backlog, "audit sink backlog over its limit");
        }
        self.over = over;
    }
}

/// Full batches taken in a row before a shrunken batch size doubles again.
const GROW_AFTER: u32 = 8;

async fn run_sink(store: Store, cfg: SinkConfig, gate: AuditGate, node: String) {
    let name = cfg.name.clone();
    let configured = cfg.batch_size.unwrap_or(500).clamp(1, 5000);
    // Shrinks when the receiver refuses a batch for its size, grows back (doubling) after
    // GROW_AFTER full batches in a row were taken.
    let mut limit = configured;
    let mut full_batches = 0u32;
    let max_backlog = cfg.max_backlog.unwrap_or(100_000);
    let mut backoff = Duration::from_millis(250);
    let mut sink: Option<sinks::Sink> = None;
    let mut gap: Option<Gap> = None;
    loop {
        if sink.is_none() {
            match sinks::Sink::open(&cfg).await {
                Ok(s) => sink = Some(s),
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "audit sink cannot be opened");
                    gate.update(&name, |h| h.last_error = Some(e.to_string()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        let (n, a) = (name.clone(), cfg.alerts_only);
        let nd = node.clone();
        let mut g = gap.take();
        let r = store
            .write(move |tx| next_batch(tx, &n, &nd, limit, a, &mut g).map(|b| (b, g)))
            .await
            .map(|(b, g)| {
                gap = g;
                b
            });
        let (batch, backlog) = match r {
            Ok(Some(b)) => b,
            Ok(None) => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "audit forwarder cannot read the journal");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let blocking = cfg.on_backlog_full == OnBacklogFull::Block && backlog > max_backlog;
        gate.update(&name, |h| {
            h.backlog = backlog;
            h.blocking = blocking;
        });
        if batch.events.is_empty() && backlog == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let delivered = if batch.events.is_empty() {
            Ok(())
        } else if let Some(s) = sink.as_mut() {
            s.deliver(&batch.events).await
        } else {
            Err(sinks::SinkError {
                message: "sink not open".into(),
                permanent: false,
            })
        };
        match delivered {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                let (n, nd, seq) = (name.clone(), node.clone(), batch.next_cursor);
                if let Err(e) = store.write(move |tx| commit_cursor(tx, &n, &nd, seq)).await {
                    tracing::error!(sink = %name, error = %e, "cannot advance the sink cursor (events will be re-sent)");
                }
                let count = batch.events.len() as u64;
                if count as i64 >= limit && limit < configured {
                    full_batches += 1;
                    if full_batches >= GROW_AFTER {
                        limit = (limit * 2).min(configured);
                        full_batches = 0;
                    }
                }
                gate.update(&name, |h| {
                    h.delivered += count;
                    h.delivered_seq = seq;
                    h.last_error = None;
                });
                if batch.events.is_empty() {
                    // Only gaps or filtered events: nothing to wait for but new ones.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) if e.permanent => {
                // The receiver refuses some event of this batch for good: find it, park it
                // (with an alert), deliver the rest, and move on — never retry it forever.
                let Some(s) = sink.as_mut() else { continue };
                let Isolated {
                    handled,
                    parked,
                    transient,
                    largest_delivered,
                } = deliver_isolating(s, &batch.events).await;
                // The receiver took at most this many at once: ask for no more until it has
                // taken that many in a row a few times (a size limit, not one bad event).
                if largest_delivered > 0 && (largest_delivered as i64) < limit {
                    tracing::info!(sink = %name, from = limit, to = largest_delivered, "audit sink refuses large batches; smaller batches from now on");
                    limit = largest_delivered as i64;
                    full_batches = 0;
                }
                let cursor = if handled == batch.events.len() {
                    batch.next_cursor
                } else {
                    batch.events.get(handled.wrapping_sub(1)).map_or(0, |e| e.seq)
                };
                if handled > 0 {
                    let (n, nd, p) = (name.clone(), node.clone(), parked.clone());
                    if let Err(e) = store.write(move |tx| park(tx, &n, &nd, cursor, &p)).await {
                        tracing::error!(sink = %name, error = %e, "cannot park undeliverable audit events (they will be tried again)");
                    } else {
                        for (seq, why) in &parked {
                            tracing::error!(sink = %name, seq, error = %why, "audit event parked: the sink refuses it for good");
                        }
                        gate.update(&name, |h| {
                            h.delivered += (handled - parked.len()) as u64;
                            h.delivered_seq = cursor;
                            h.dead_letters += parked.len() as u64;
                        });
                    }
                }
                if let Some(e) = transient {
                    gate.update(&name, |h| h.last_error = Some(e.to_string()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, backlog, "audit delivery failed; retrying");
                gate.update(&name, |h| h.last_error = Some(e.to_string()));
                // Exponential backoff with jitter, so a fleet does not retry in lockstep (the
                // sink's watcher keeps the backlog, and so the gate, current meanwhile).
                let jitter = Duration::from_millis(u64::from(rand_u16() % 250));
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// What [`deliver_isolating`] did with a batch the receiver refused for good.
struct Isolated {
    /// Events handled (delivered or parked), a prefix of the batch in journal order.
    handled: usize,
    /// The events refused for good on their own: (`seq`, why).
    parked: Vec<(i64, String)>,
    /// The transient error that stopped it early, if one did.
    transient: Option<sinks::SinkError>,
    /// The largest run of events the receiver took in one delivery (0 if none).
    largest_delivered: usize,
}

/// Delivers `events` after the whole batch was refused for good, by halves: a refused run is
/// split in two and each half tried in order, down to single events, which are parked. A
/// receiver that refuses a batch for its size (a webhook's 413) so gets runs it takes —
/// `log2(batch)` extra requests, not one request per event — and a single bad event costs
/// as many. Order is kept: a run is tried only after every event before it was handled.
async fn deliver_isolating(sink: &mut sinks::Sink, events: &[crate::audit::Event]) -> Isolated {
    let mut out = Isolated {
        handled: 0,
        parked: Vec::new(),
        transient: None,
        largest_delivered: 0,
    };
    // Runs still to try, the next one last; the whole batch was refused already.
    let mut todo: Vec<std::ops::Range<usize>> = Vec::new();
    let half = events.len() / 2;
    todo.push(half..events.len());
    todo.push(0..half);
    while let Some(run) = todo.pop() {
        let Some(part) = events.get(run.clone()).filter(|p| !p.is_empty()) else {
            continue;
        };
        match sink.deliver(part).await {
            Ok(()) => {
                out.handled = run.end;
                out.largest_delivered = out.largest_delivered.max(part.len());
            }
            Err(err) if err.permanent && part.len() == 1 => {
                out.parked.push((part[0].seq, err.message));
                out.handled = run.end;
            }
            Err(err) if err.permanent => {
                let mid = run.start + part.len() / 2;
                todo.push(mid..run.end);
                todo.push(run.start..mid);
            }
            Err(err) => {
                out.transient = Some(err);
                break;
            }
        }
    }
    out
}

/// Records parked events (kept in the journal, listed for admins, each with an
/// `alert.audit_dead_letter` event) and moves the sink's cursor past what was handled.
fn park(tx: &mut dyn Tx, name: &str, node: &str, cursor: i64, parked: &[(i64, String)]) -> CoreResult<()> {
    let now = now_micros();
    let ctx = crate::context::RequestCtx {
        user_agent: Some("credvault audit forwarder".into()),
        ..Default::default()
    };
    for (seq, why) in parked {
        let why: String = why.chars().take(500).collect();
        tx.execute(
            "INSERT INTO audit_dead_letters (sink, seq, error, parked_at) VALUES ($1, $2, $3, $4) ON CONFLICT (sink, seq) DO NOTHING",
            &[name.into(), (*seq).into(), why.as_str().into(), now.into()],
        )?;
        crate::audit::append(
            tx,
            &ctx,
            &crate::audit::ActorRef::system(),
            &crate::audit::Draft {
                action: Action::AlertAuditDeadLetter,
                target_type: Some("audit_sink"),
                target_id: Some(name.to_owned()),
                org_id: None,
                workspace_id: None,
                outcome: crate::audit::Outcome::Success,
                details: serde_json::json!({"sink": name, "seq": seq, "error": why}),
            },
        )?;
    }
    commit_cursor(tx, name, node, cursor)
}

/// The events parked for each sink (newest first, at most `limit` per sink).
pub(crate) fn dead_letters(tx: &mut dyn Tx, limit: i64) -> CoreResult<Vec<(String, i64, String, i64)>> {
    let rows = tx.query(
        "SELECT sink, seq, error, parked_at FROM audit_dead_letters ORDER BY sink, seq DESC",
        &[],
    )?;
    let mut out: Vec<(String, i64, String, i64)> = Vec::new();
    for r in rows {
        let sink = r.text(0)?;
        if out.iter().filter(|d| d.0 == sink).count() as i64 >= limit {
            continue;
        }
        out.push((sink, r.int(1)?, r.text(2)?, r.int(3)?));
    }
    Ok(out)
}

fn rand_u16() -> u16 {
    let b = credvault_crypto::random_bytes::<2>();
    u16::from_le_bytes(b)
}
