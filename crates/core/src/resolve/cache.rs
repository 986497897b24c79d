//! Resolve off the SQLite writer (issue 22): a resolve's reads, kept in memory and replayed.
//!
//! On SQLite every resolve used to run its reads (connection, settings, credential, version
//! state and sealed row, pipeline, role-chain sources) on the single writer thread. Now the
//! first resolve of a target runs there as before, through a [`Recorder`] that keeps every
//! read and what it returned; later resolves of the same target run the *same code* against a
//! [`Replay`] of those reads on the request's own task — decryption included — and send the
//! writer only their audit record (and a usage stamp at most once a second per row).
//!
//! Why that keeps today's semantics. The recorded reads are tagged with the store's
//! generation (`Store::generation`), which the writer moves after every closure that wrote
//! anything but the audit journal or usage stamps, before that write's caller hears back.
//! A replay is used only while the generation is unchanged, and the record it produces is
//! written by a writer closure that first checks the generation again ([`Stale`] when it
//! moved: the resolve is then run the old way). So a resolve returns a secret only if no
//! state change was acknowledged — or even attempted — between its reads and its durable audit
//! record: **a disable, detach, revoke or purge acknowledged to its caller stops every later
//! resolve**, with no grace window. Ciphertext, not plaintext, is what stays in memory.
//!
//! [`Stale`]: crate::error::CoreError::Stale

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use credvault_store::{Engine, Row, StoreError, Tx, Value};

use crate::appender::Stamp;

/// Targets kept at most (beyond it the cache starts again empty).
const MAX_ENTRIES: usize = 4096;

/// Rows a usage stamp was written for, kept at most.
const MAX_STAMPS: usize = 65_536;

/// What a resolve asks for: the connection (by ID, or workspace and name), the version and the
/// pipeline. The replay matches every read by its statement and parameters anyway; the key
/// only groups them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub target: String,
    pub version: Option<i64>,
    pub pipeline: Option<String>,
}

/// One read: its statement, its parameters and its rows.
struct Read {
    sql: String,
    params: Vec<Value>,
    rows: Vec<Row>,
}

/// The reads one resolve made, in the generation it made them in.
pub(crate) struct Recorded {
    generation: u64,
    reads: Vec<Read>,
}

impl Recorded {
    /// The store generation the reads were made in.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// A transaction that passes everything through and keeps every read and its rows (a resolve's
/// own code only reads; its record is written on the inner transaction afterwards).
pub(crate) struct Recorder<'a> {
    inner: &'a mut dyn Tx,
    reads: Vec<Read>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(inner: &'a mut dyn Tx) -> Self {
        Recorder {
            inner,
            reads: Vec::new(),
        }
    }

    /// The reads, tagged with `generation` (read in the same writer closure, before them).
    pub(crate) fn finish(self, generation: u64) -> Recorded {
        Recorded {
            generation,
            reads: self.reads,
        }
    }
}

impl Tx for Recorder<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let rows = self.inner.query(sql, params)?;
        self.reads.push(Read {
            sql: sql.to_owned(),
            params: params.to_vec(),
            rows: rows.clone(),
        });
        Ok(rows)
    }
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        self.inner.execute(sql, params)
    }
    fn execute_inside(
        &mut self,
        inside: &credvault_store::versions::Inside,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StoreError> {
        self.inner.execute_inside(inside, sql, params)
    }
    fn engine(&self) -> Engine {
        self.inner.engine()
    }
}

/// Answers reads from a [`Recorded`] set. A read it does not hold, or any write, marks it
/// `missed` (checked by the caller even if the code under it swallowed the error).
pub(crate) struct Replay<'a> {
    reads: &'a [Read],
    pub(crate) missed: bool,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(recorded: &'a Recorded) -> Self {
        Replay {
            reads: &recorded.reads,
            missed: false,
        }
    }
}

impl Tx for Replay<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        match self.reads.iter().find(|r| r.sql == sql && r.params == params) {
            Some(r) => Ok(r.rows.clone()),
            None => {
                self.missed = true;
                Err(StoreError::Unavailable("read not in the resolve cache".into()))
            }
        }
    }
    fn execute(&mut self, _: &str, _: &[Value]) -> Result<u64, StoreError> {
        self.missed = true;
        Err(StoreError::ReadOnly("a replayed resolve does not write"))
    }
    fn execute_inside(
        &mut self,
        _: &credvault_store::versions::Inside,
        _: &str,
        _: &[Value],
    ) -> Result<u64, StoreError> {
        self.missed = true;
        Err(StoreError::ReadOnly("a replayed resolve does not write"))
    }
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }
}

/// Recorded reads per target (for one generation), and the usage stamps this process wrote.
#[derive(Default)]
pub(crate) struct ResolveCache {
    entries: Mutex<Entries>,
    stamped: Mutex<HashMap<Stamp, i64>>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

#[derive(Default)]
struct Entries {
    generation: u64,
    map: HashMap<Key, Arc<Recorded>>,
}

/// Counters for `/metrics`: resolves answered from memory, resolves that ran on the writer, and
/// replays dropped because the state changed before their record was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Resolves whose reads were replayed from memory.
    pub hits: u64,
    /// Resolves that read on the writer.
    pub misses: u64,
    /// Replays refused at the writer because the generation had moved.
    pub stale: u64,
}

impl ResolveCache {
    /// The reads recorded for `key`, if they were made in generation `current`.
    pub(crate) fn get(&self, key: &Key, current: u64) -> Option<Arc<Recorded>> {
        let entries = self.entries.lock().ok()?;
        if entries.generation != current {
            return None;
        }
        entries.map.get(key).cloned()
    }

    /// Keeps `recorded` for `key` (a newer generation empties the cache; an older one is dropped).
    pub(crate) fn put(&self, key: Key, recorded: Recorded) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if recorded.generation < entries.generation {
            return;
        }
        if recorded.generation > entries.generation || entries.map.len() >= MAX_ENTRIES {
            entries.map.clear();
            entries.generation = recorded.generation;
        }
        entries.map.insert(key, Arc::new(recorded));
    }

    /// Drops the stamps this process wrote less than `grain` µs before `now` (a replay reads
    /// the `last_used_at` its recording saw, which its own stamps have since moved).
    pub(crate) fn owed(&self, stamps: Vec<Stamp>, now: i64, grain: i64) -> Vec<Stamp> {
        let Ok(stamped) = self.stamped.lock() else {
            return stamps;
        };
        stamps
            .into_iter()
            .filter(|s| stamped.get(s).is_none_or(|t| t + grain <= now))
            .collect()
    }

    /// Notes stamps written at `now`.
    pub(crate) fn note_stamped(&self, stamps: &[Stamp], now: i64) {
        if stamps.is_empty() {
            return;
        }
        if let Ok(mut stamped) = self.stamped.lock() {
            if stamped.len() >= MAX_STAMPS {
                stamped.clear();
            }
            for s in stamps {
                stamped.insert(s.clone(), now);
            }
        }
    }

    pub(crate) fn count(&self, what: CacheEvent) {
        let c = match what {
            CacheEvent::Hit => &self.hits,
            CacheEvent::Miss => &self.misses,
            CacheEvent::Stale => &self.stale,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }
}

/// What happened to one resolve, for [`CacheStats`].
#[derive(Clone, Copy)]
pub(crate) enum CacheEvent {
    Hit,
    Miss,
    Stale,
}
