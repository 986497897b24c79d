//! SQLite backend: one writer thread doing group commit, a small pool of reader connections.
//!
//! Why a dedicated writer thread: SQLite allows one writer at a time, and `synchronous=FULL`
//! makes each commit an fsync. Funnelling every write closure through one thread lets us take
//! all the closures queued at that moment, run each in its own savepoint inside one
//! transaction, and pay a single fsync for the batch. A closure that fails is rolled back to
//! its savepoint without disturbing the others; each caller learns its own outcome only after
//! the batch's COMMIT has returned, so an acknowledged write is always durable.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::{Engine, Row, StoreError, StoreOptions, Tx, TxError, Value, migrations};

/// A write closure after type erasure: runs against the transaction and returns a completion
/// that, given the commit's outcome, delivers the result to the waiting caller.
type Job = Box<dyn FnOnce(&mut SqliteTx<'_>) -> Completion + Send>;

/// What the writer thread is asked to do.
enum Msg {
    /// Run a closure in the next group commit.
    Job(Job),
    /// Checkpoint the WAL and truncate it (outside any transaction).
    Checkpoint(oneshot::Sender<Result<(), StoreError>>),
}
type Completion = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

pub(crate) struct SqliteStore {
    stats: Arc<crate::StoreStats>,
    sender: Mutex<Option<mpsc::Sender<Msg>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: std::path::PathBuf,
    /// See [`crate::generation`].
    generation: Arc<AtomicU64>,
}

pub(crate) struct SqliteTx<'c> {
    conn: &'c Connection,
    /// Whether a statement since the writer last looked may have changed state
    /// ([`crate::generation::changes_state`]).
    changed: bool,
}

pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.code == rusqlite::ErrorCode::ConstraintViolation
            && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
        {
            return StoreError::Unique(msg.clone().unwrap_or_default());
        }
        if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked {
            return StoreError::Unavailable(e.to_string());
        }
    }
    StoreError::Db(e.to_string())
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Bytes(b) => rusqlite::types::Value::Blob(b.clone()),
    }
}

impl Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        crate::versions::check(sql)?;
        self.changed |= crate::generation::changes_state(sql);
        let sql = crate::to_sqlite_placeholders(sql);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_err)?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter().map(to_sql)))
            .map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                let v = match r.get_ref(i).map_err(db_err)? {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(i) => Value::Int(i),
                    rusqlite::types::ValueRef::Real(f) => Value::Int(f as i64),
                    rusqlite::types::ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    rusqlite::types::ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                };
                vals.push(v);
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        crate::versions::check(sql)?;
        self.changed |= crate::generation::changes_state(sql);
        self.run(sql, params)
    }

    fn execute_inside(&mut self, _: &crate::versions::Inside, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        // The sealed columns are state.
        self.changed = true;
        self.run(sql, params)
    }

    fn engine(&self) -> Engine {
        Engine::Sqlite
    }
}

impl SqliteTx<'_> {
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let sql = crate::to_sqlite_placeholders(sql);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(db_err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter().map(to_sql)))
            .map_err(db_err)?;
        Ok(n as u64)
    }
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
    // secure_delete: freed content is overwritten with zeros, so a purged credential's keys
    // do not linger in free pages of the file.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
    )
    .map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

impl SqliteStore {
    pub(crate) fn open(path: &Path, opts: &StoreOptions) -> Result<SqliteStore, StoreError> {
        let writer_conn = open_conn(path, false)?;
        restrict_mode(path);
        migrations::run_sqlite(&writer_conn)?;
        let mut readers = Vec::new();
        for _ in 0..opts.max_connections.max(1) {
            readers.push(open_conn(path, true)?);
        }
        let (tx, rx) = mpsc::channel::<Msg>();
        let max_batch = opts.max_batch.max(1);
        let stats = Arc::new(crate::StoreStats::default());
        let writer_stats = stats.clone();
        let generation = Arc::new(AtomicU64::new(1));
        let writer_generation = generation.clone();
        let handle = std::thread::Builder::new()
            .name("credvault-sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, rx, max_batch, &writer_stats, &writer_generation))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        Ok(SqliteStore {
            stats,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(readers)),
            path: path.to_owned(),
            generation,
        })
    }

    pub(crate) async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |tx: &mut SqliteTx<'_>| {
            if let Err(e) = tx.conn.execute_batch("SAVEPOINT job") {
                let err = db_err(e);
                return Box::new(move |_| {
                    let _ = done_tx.send(Err(E::from(err)));
                });
            }
            match f(tx) {
                Ok(v) => {
                    if let Err(e) = tx.conn.execute_batch("RELEASE job") {
                        let err = db_err(e);
                        return Box::new(move |_| {
                            let _ = done_tx.send(Err(E::from(err)));
                        });
                    }
                    Box::new(move |commit: Result<(), &StoreError>| {
                        let _ = done_tx.send(match commit {
                            Ok(()) => Ok(v),
                            Err(e) => Err(E::from(StoreError::Db(e.to_string()))),
                        });
                    })
                }
                Err(e) => {
                    // Undo only this closure's writes; the rest of the batch goes on.
                    let _ = tx.conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    Box::new(move |_| {
                        let _ = done_tx.send(Err(e));
                    })
                }
            }
        });
        let sent = match self.sender.lock() {
            Ok(guard) => guard.as_ref().map(|s| s.send(Msg::Job(job)).is_ok()).unwrap_or(false),
            Err(_) => false,
        };
        if !sent {
            return Err(E::from(StoreError::Unavailable("store is closed".into())));
        }
        done_rx
            .await
            .unwrap_or_else(|_| Err(E::from(StoreError::Unavailable("writer stopped".into()))))
    }

    pub(crate) async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let conn = readers.lock().ok().and_then(|mut v| v.pop());
            let conn = match conn {
                Some(c) => c,
                None => open_conn(&path, true).map_err(E::from)?,
            };
            let result = (|| {
                conn.execute_batch("BEGIN").map_err(|e| E::from(db_err(e)))?;
                let r = f(&mut SqliteTx {
                    conn: &conn,
                    changed: false,
                });
                let _ = conn.execute_batch("COMMIT");
                r
            })();
            if let Ok(mut v) = readers.lock() {
                v.push(conn);
            }
            result
        })
        .await;
        joined.unwrap_or_else(|e| Err(E::from(StoreError::Db(format!("read task failed: {e}")))))
    }

    /// Checkpoints the WAL into the database file and truncates it.
    pub(crate) async fn checkpoint(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let sent = self
            .sender
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|s| s.send(Msg::Checkpoint(done)).is_ok()))
            .unwrap_or(false);
        if !sent {
            return Err(StoreError::Unavailable("store is closed".into()));
        }
        wait.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("writer stopped".into())))
    }

    pub(crate) fn stats(&self) -> (u64, u64) {
        self.stats.get()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Some(h) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The database file holds ciphertext only, but its metadata is still nobody else's business.
fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

/// Checkpoints and truncates the WAL, without waiting: a reader holding an old snapshot makes
/// it report `busy`, and the caller retries later (the scheduler scrubs on every pass, and
/// shutdown does a final one). It runs on the writer thread, which must never stall on readers.
fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::ZERO).map_err(db_err)?;
    let busy: Result<i64, _> = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0));
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err)?;
    match busy {
        Ok(0) => Ok(()),
        Ok(_) | Err(_) => Err(StoreError::Unavailable(
            "a long read keeps the WAL from being truncated; it will be retried".into(),
        )),
    }
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    stats: &crate::StoreStats,
    generation: &AtomicU64,
) {
    writer_run(&conn, rx, max_batch, stats, generation);
    // On shutdown, fold the WAL into the database so no stale page (e.g. of a purged
    // credential) stays behind in it.
    if let Err(e) = checkpoint(&conn) {
        tracing::warn!(error = %e, "final WAL checkpoint incomplete");
    }
}

/// `PRAGMA data_version`: changes when another connection (another process) committed.
fn data_version(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
}

fn writer_run(
    conn: &Connection,
    rx: mpsc::Receiver<Msg>,
    max_batch: usize,
    stats: &crate::StoreStats,
    generation: &AtomicU64,
) {
    let mut pending_checkpoints = Vec::new();
    let mut seen_version = data_version(conn);
    while let Ok(first) = rx.recv() {
        let mut jobs = Vec::new();
        match first {
            Msg::Job(j) => jobs.push(j),
            Msg::Checkpoint(done) => pending_checkpoints.push(done),
        }
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => jobs.push(j),
                Ok(Msg::Checkpoint(done)) => pending_checkpoints.push(done),
                Err(_) => break,
            }
        }
        if jobs.is_empty() {
            let r = checkpoint(conn);
            for done in pending_checkpoints.drain(..) {
                let _ = done.send(r.as_ref().map(|_| ()).map_err(|e| StoreError::Db(e.to_string())));
            }
            continue;
        }
        let begin = conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err);
        if let Err(e) = begin {
            // Nothing ran. Dropping the jobs drops their result channels, so every caller
            // gets `Unavailable` instead of waiting forever.
            tracing::error!(error = %e, "sqlite writer could not begin a transaction");
            drop(jobs);
            continue;
        }
        // Another process wrote to the file since the last batch (e.g. an offline tool).
        let version = data_version(conn);
        if version.is_none() || version != seen_version {
            generation.fetch_add(1, Ordering::SeqCst);
            seen_version = version;
        }
        let mut completions = Vec::with_capacity(jobs.len());
        {
            let mut tx = SqliteTx { conn, changed: false };
            for job in jobs {
                completions.push(job(&mut tx));
                // Before the next closure reads, and long before this one's caller hears back.
                if std::mem::take(&mut tx.changed) {
                    generation.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let commit = conn.execute_batch("COMMIT").map_err(db_err);
        stats.record(completions.len());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            // Reads in this batch may have seen writes that are now undone.
            generation.fetch_add(1, Ordering::SeqCst);
        }
        for c in completions {
            c(commit.as_ref().map(|_| ()));
        }
        if !pending_checkpoints.is_empty() {
            let r = checkpoint(conn);
            for done in pending_checkpoints.drain(..) {
                let _ = done.send(r.as_ref().map(|_| ()).map_err(|e| StoreError::Db(e.to_string())));
            }
        }
    }
}
