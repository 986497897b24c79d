//! The store: one API over two SQL engines, SQLite (embedded default) and PostgreSQL
//! (scale-out). It sees only ciphertext and metadata: nothing here can decrypt, and nothing
//! here decides who may do what — the core does that before it calls in.
//!
//! The API is deliberately small. Callers hand [`Store::write`] or [`Store::read`] a closure
//! that runs against a [`Tx`]: a transaction that speaks one SQL dialect (PostgreSQL-style
//! `$1` placeholders, portable types: `BIGINT`/`INTEGER`, `TEXT`, bytes). What differs between
//! engines (how a writer is scheduled, row locks, sequences) lives in `sqlite.rs` and
//! `postgres.rs`, next to each other.
//!
//! Durability: SQLite runs in WAL mode with `synchronous=FULL`; PostgreSQL with
//! `synchronous_commit=on`. On SQLite one writer thread batches the closures that are queued
//! at the same moment into one transaction (each in its own savepoint), so concurrent
//! requests share one fsync instead of paying one each (group commit).

mod backup;
mod generation;
mod migrations;
mod postgres;
mod sqlite;
mod value;
pub mod versions;

use std::sync::Arc;

pub use backup::BackupStats;
pub use migrations::LATEST as SCHEMA_VERSION;
pub use value::{Row, Value};

/// Which engine a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Embedded SQLite (one file, one writer).
    Sqlite,
    /// PostgreSQL (many nodes may share it).
    Postgres,
}

/// Failures of the store itself. Messages never contain parameter values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness constraint was violated; carries the constraint or column hint.
    #[error("unique constraint violated: {0}")]
    Unique(String),
    /// The database rejected a statement or failed.
    #[error("database error: {0}")]
    Db(String),
    /// The database cannot be reached or the store is shutting down.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database URL is not one we support.
    #[error("unsupported database url: {0}")]
    BadUrl(String),
    /// A schema migration failed.
    #[error("migration {version} failed: {reason}")]
    Migration {
        /// The migration that failed.
        version: i64,
        /// Why.
        reason: String,
    },
    /// A row did not have the expected shape (a bug or a foreign schema).
    #[error("unexpected row shape: {0}")]
    Shape(String),
    /// A statement would write the sealed columns outside [`versions`] (a bug).
    #[error("encryption barrier: {0}")]
    Barrier(&'static str),
    /// A statement tried to write where only reads are allowed (a bug).
    #[error("write refused: {0}")]
    ReadOnly(&'static str),
}

/// Errors that closures run by the store may return: anything the store can fail with must
/// convert into them.
pub trait TxError: From<StoreError> + Send + 'static {}
impl<E: From<StoreError> + Send + 'static> TxError for E {}

/// One transaction. Statements use `$1`, `$2`… placeholders on both engines.
pub trait Tx {
    /// Runs a statement and returns its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// Runs a statement and returns the number of rows it changed. A statement that writes
    /// the sealed columns is refused ([`versions`] is the way to them).
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// [`Tx::execute`] without the barrier, for the store's own typed functions.
    #[doc(hidden)]
    fn execute_inside(&mut self, inside: &versions::Inside, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Which engine this transaction runs on, for the few statements that differ.
    fn engine(&self) -> Engine;

    /// Runs a query expected to return at most one row.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    /// Runs a query expected to return exactly one row.
    fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Shape("expected one row, got none".into()))
    }
    /// `" FOR UPDATE"` on PostgreSQL (row lock), empty on SQLite (one writer already serializes).
    fn for_update(&self) -> &'static str {
        match self.engine() {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite => "",
        }
    }
}

/// Options for opening a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Maximum connections (PostgreSQL) or reader connections (SQLite).
    pub max_connections: usize,
    /// Maximum closures one SQLite group commit takes at once.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            max_batch: 256,
        }
    }
}

/// A handle to the store. Cloning is shallow.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (and migrates) the store named by `url`: `sqlite://PATH` or `postgres://…`
    /// (also `postgresql://`). Any other scheme is an error — never a silently created file.
    pub fn open(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl("sqlite:// needs a file path".into()));
            }
            Backend::Sqlite(sqlite::SqliteStore::open(std::path::Path::new(path), opts)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::PgStore::open(url, opts)?)
        } else {
            let scheme = url.split("://").next().unwrap_or("");
            return Err(StoreError::BadUrl(format!(
                "scheme `{scheme}` (use sqlite://PATH or postgres://…)"
            )));
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// Which engine backs this store.
    pub fn engine(&self) -> Engine {
        match &*self.backend {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs `f` in a read-write transaction and commits it durably before returning. If `f`
    /// fails, none of its writes persist.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(s) => s.write(f).await,
            Backend::Postgres(p) => p.write(f).await,
        }
    }

    /// Runs `f` in a read-only transaction (a consistent snapshot).
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(s) => s.read(f).await,
            Backend::Postgres(p) => p.read(f).await,
        }
    }

    /// Runs reads that need no common snapshot: on PostgreSQL outside any transaction (each
    /// statement sees the latest commit; no BEGIN/COMMIT round trips), on SQLite as
    /// [`Store::read`]. Writes in `f` would commit one by one: use it for reads only.
    pub async fn read_fresh<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        match &*self.backend {
            Backend::Sqlite(s) => s.read(f).await,
            Backend::Postgres(p) => p.read_fresh(f).await,
        }
    }

    /// SQLite: the state generation, a number that changes (before the writer acknowledges
    /// anything) whenever a write may have changed what a read returns — every write except the
    /// audit journal, its forwarding state and usage stamps — and when another process wrote to
    /// the file. Reads made while it held one value stay true while it holds it. `None` on
    /// PostgreSQL, where other nodes write without this process knowing.
    pub fn generation(&self) -> Option<u64> {
        match &*self.backend {
            Backend::Sqlite(s) => Some(s.generation()),
            Backend::Postgres(_) => None,
        }
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| tx.query("SELECT 1", &[]).map(|_| ())).await
    }

    /// `(commits, write closures)` made by the SQLite group-commit writer since start; `None` on
    /// PostgreSQL, whose own WAL flushing groups commits.
    pub fn group_commit_stats(&self) -> Option<(u64, u64)> {
        match &*self.backend {
            Backend::Sqlite(s) => Some(s.stats()),
            Backend::Postgres(_) => None,
        }
    }

    /// After destroying key material: make sure no stale copy of it stays in the store's
    /// files. SQLite (which runs with `secure_delete`): checkpoint and truncate the WAL.
    /// PostgreSQL: `VACUUM FULL credential_versions` rewrites the table without the dead
    /// tuples (copies in WAL archives or backups are outside the store's reach).
    pub async fn scrub_deleted(&self) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => s.checkpoint().await,
            Backend::Postgres(p) => p.outside_tx("VACUUM FULL credential_versions").await,
        }
    }

    /// Stops the SQLite writer after the queued work is committed. Idempotent.
    pub fn close(&self) {
        if let Backend::Sqlite(s) = &*self.backend {
            s.close();
        }
    }
}

/// Counters of the SQLite writer: how many commits it made and how many write closures they
/// carried. Their ratio is the group-commit batch size.
#[derive(Default)]
pub(crate) struct StoreStats {
    commits: std::sync::atomic::AtomicU64,
    jobs: std::sync::atomic::AtomicU64,
}

impl StoreStats {
    fn record(&self, jobs: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.commits.fetch_add(1, Relaxed);
        self.jobs.fetch_add(jobs as u64, Relaxed);
    }
    fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.commits.load(Relaxed), self.jobs.load(Relaxed))
    }
}

/// Converts `$N` placeholders to SQLite's `?N`, leaving string literals alone.
pub(crate) fn to_sqlite_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut in_str = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_str = !in_str;
            out.push(c);
        } else if c == '$' && !in_str && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_string_literals() {
        assert_eq!(
            to_sqlite_placeholders("SELECT '$1', x FROM t WHERE a = $1 AND b = $12"),
            "SELECT '$1', x FROM t WHERE a = ?1 AND b = ?12"
        );
    }

    #[test]
    fn unknown_url_schemes_are_refused() {
        let e = Store::open("mysql://x", &StoreOptions::default()).err();
        assert!(matches!(e, Some(StoreError::BadUrl(_))));
        let e = Store::open("/tmp/some.db", &StoreOptions::default()).err();
        assert!(matches!(e, Some(StoreError::BadUrl(_))));
    }
}
