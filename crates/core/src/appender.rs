//! Group-committed resolve records (issue 22).
//!
//! A resolve on PostgreSQL reads what it needs with fresh statements outside any transaction
//! (no BEGIN/COMMIT round trips), decrypts, and then hands its audit event — with the
//! `last_used_at` stamps it owes — to this node's appender, and waits. On SQLite the same goes
//! for a resolve replayed from memory (`resolve::cache`): its record carries the generation its
//! reads were made in, and the batch writes it only if the store is still in that generation
//! (checked on the writer thread, in the batch's own closure); otherwise that resolve is told
//! it is stale and runs again on the writer. The appender takes
//! every record queued at that moment (up to [`MAX_BATCH`]) into one transaction: the stamps
//! (rows first, never waiting for a row another transaction holds: they are at 1 s grain
//! anyway), then per organization one free audit shard, the events chained on it in order and
//! one head update; then one COMMIT. Up to [`IN_FLIGHT`] batches run at once (on different
//! shards). Only after that commit does any waiting resolve return its secret: **no secret
//! leaves before its audit record is durable.** A failed batch fails every resolve in it
//! (none of them returns a secret).
//!
//! Nothing here caches state: on PostgreSQL a disable, detach, revoke or purge committed
//! before a resolve's reads is seen by them, on every node.

use credvault_domain::problems::Code;
use std::sync::Arc;

use credvault_store::{Engine, Store, Tx, Value};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::audit::{self, ActorRef, Draft, INSTANCE_CHAIN};
use crate::context::RequestCtx;
use crate::error::{CoreError, CoreResult};

/// Records one transaction takes at most.
pub const MAX_BATCH: usize = 128;

/// Batches in flight at once per node.
pub const IN_FLIGHT: usize = 4;

/// A `last_used_at` stamp a resolve owes (written at most once a second per row).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Stamp {
    Credential(String),
    Connection(String),
    Version(String, i64),
    Pipeline(String),
}

impl Stamp {
    /// Writes the stamp unless another transaction holds the row (then that one's stamp will
    /// do): `FOR UPDATE SKIP LOCKED` on PostgreSQL, plain on SQLite (a single writer).
    pub(crate) fn write(&self, tx: &mut dyn Tx, now: i64) -> CoreResult<()> {
        // (table, stamped column, key columns, key condition, key values)
        let (table, column, keys, cond, key): (&str, &str, &str, &str, Vec<Value>) = match self {
            Stamp::Credential(id) => ("credentials", "last_used_at", "id", "id = $2", vec![id.as_str().into()]),
            Stamp::Connection(id) => ("connections", "last_used_at", "id", "id = $2", vec![id.as_str().into()]),
            Stamp::Pipeline(id) => ("pipelines", "last_used_at", "id", "id = $2", vec![id.as_str().into()]),
            Stamp::Version(id, v) => (
                "credential_versions",
                "last_resolved_at",
                "credential_id, version",
                "credential_id = $2 AND version = $3",
                vec![id.as_str().into(), (*v).into()],
            ),
        };
        let sql = match tx.engine() {
            Engine::Postgres => format!(
                "UPDATE {table} SET {column} = $1 WHERE ({keys}) = (SELECT {keys} FROM {table} WHERE {cond} FOR UPDATE SKIP LOCKED)"
            ),
            Engine::Sqlite => format!("UPDATE {table} SET {column} = $1 WHERE {cond}"),
        };
        let mut params = vec![now.into()];
        params.extend(key);
        tx.execute(&sql, &params)?;
        Ok(())
    }
}

/// A resolve's audit record, waiting to be written.
pub(crate) struct Pending {
    pub ctx: RequestCtx,
    pub who: ActorRef,
    pub draft: Draft,
    pub stamps: Vec<Stamp>,
    pub now: i64,
    /// SQLite, a resolve replayed from memory: the store generation its reads were made in;
    /// the record is written only if it still holds (see `resolve::cache`).
    pub expect: Option<u64>,
}

/// A record and where its outcome goes: its sequence number, `None` when it was refused as
/// stale (a replayed resolve whose generation moved; SQLite), or the batch's error.
type Job = (Pending, oneshot::Sender<Result<Option<i64>, String>>);

/// This node's appender: a queue and the task that drains it.
pub(crate) struct Appender {
    queue: mpsc::UnboundedSender<Job>,
}

impl Appender {
    /// Starts the appender's task on the current runtime.
    pub(crate) fn start(store: Store) -> Appender {
        let (queue, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            while let Some(first) = rx.recv().await {
                // Wait for a slot first: what queues meanwhile joins this batch.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let store = store.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let (records, waiters): (Vec<Pending>, Vec<_>) = batch.into_iter().unzip();
                    let gen_of = store.clone();
                    let r = store
                        .write(move |tx| write_batch(tx, &records, gen_of.generation()))
                        .await;
                    match r {
                        Ok(seqs) => {
                            for (w, seq) in waiters.into_iter().zip(seqs) {
                                let _ = w.send(Ok(seq));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, records = waiters.len(), "a batch of resolve audit records failed; those resolves are refused");
                            for w in waiters {
                                let _ = w.send(Err(e.to_string()));
                            }
                        }
                    }
                });
            }
        });
        Appender { queue }
    }

    /// Queues a record and waits until it is durable; returns its sequence number
    /// ([`CoreError::Stale`] for a replayed resolve whose reads are no longer current).
    pub(crate) async fn append(&self, p: Pending) -> CoreResult<i64> {
        let (tx, rx) = oneshot::channel();
        let gone = || CoreError::Unavailable {
            code: Code::AuditUnavailable,
            message: "the audit record could not be written; nothing was released".into(),
        };
        self.queue.send((p, tx)).map_err(|_| gone())?;
        match rx.await {
            Ok(Ok(Some(seq))) => Ok(seq),
            Ok(Ok(None)) => Err(CoreError::Stale),
            Ok(Err(_)) | Err(_) => Err(gone()),
        }
    }
}

/// One batch: stamps (sorted, deduplicated), then each organization's events on one shard.
/// Returns the sequence numbers in the records' order; `None` for a record whose `expect`ed
/// generation is not `generation` (the store's, read on its writer: nothing of it is written).
fn write_batch(tx: &mut dyn Tx, records: &[Pending], generation: Option<u64>) -> CoreResult<Vec<Option<i64>>> {
    let live: Vec<bool> = records
        .iter()
        .map(|p| p.expect.is_none() || p.expect == generation)
        .collect();
    let mut stamps: Vec<(&Stamp, i64)> = records
        .iter()
        .zip(&live)
        .filter(|(_, live)| **live)
        .flat_map(|(p, _)| p.stamps.iter().map(move |s| (s, p.now)))
        .collect();
    stamps.sort();
    stamps.dedup_by(|a, b| a.0 == b.0);
    for (s, now) in stamps {
        s.write(tx, now)?;
    }
    let mut seqs = vec![None; records.len()];
    let mut orgs: Vec<&str> = records
        .iter()
        .zip(&live)
        .filter(|(_, live)| **live)
        .map(|(p, _)| p.draft.org_id.as_deref().unwrap_or(INSTANCE_CHAIN))
        .collect();
    orgs.sort_unstable();
    orgs.dedup();
    for org in orgs {
        let idx: Vec<usize> = (0..records.len())
            .filter(|&i| live[i] && records[i].draft.org_id.as_deref().unwrap_or(INSTANCE_CHAIN) == org)
            .collect();
        let events: Vec<(&RequestCtx, &ActorRef, &Draft)> = idx
            .iter()
            .map(|&i| (&records[i].ctx, &records[i].who, &records[i].draft))
            .collect();
        for (i, seq) in idx.into_iter().zip(audit::append_many(tx, org, &events)?) {
            seqs[i] = Some(seq);
        }
    }
    Ok(seqs)
}
