//! PostgreSQL backend: a small pool of synchronous clients driven from tokio's blocking
//! threads. Many `credvault serve` nodes may share one database: invariants that span rows
//! are kept with row locks (`Tx::for_update`) taken by the core, and PostgreSQL's own WAL
//! flushing groups concurrent commits, so no explicit batching is needed here.
//!
//! Why synchronous clients: the store API hands closures a synchronous `Tx` so that the same
//! store code runs on SQLite (which is synchronous) and here; each closure runs on a blocking
//! thread, never on an async worker.

use std::sync::{Arc, Mutex};

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls};
use tokio::sync::Semaphore;

use crate::{Engine, Row, StoreError, StoreOptions, Tx, TxError, Value, migrations};

pub(crate) struct PgStore {
    url: String,
    idle: Arc<Mutex<Vec<(Client, StatementCache)>>>,
    permits: Arc<Semaphore>,
}

pub(crate) struct PgTx<'a> {
    tx: Conn<'a>,
    cache: &'a mut StatementCache,
}

/// A transaction, or a client whose statements each commit on their own (fresh reads).
enum Conn<'a> {
    Tx(postgres::Transaction<'a>),
    Auto(&'a mut Client),
}

/// How a closure runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A read-write transaction (READ COMMITTED).
    Write,
    /// A read-only REPEATABLE READ transaction: one snapshot for every statement.
    Read,
    /// No transaction: each statement sees what is committed when it runs.
    Fresh,
}

/// Prepared statements of one connection, by SQL text. The synchronous client has no cache
/// of its own, and preparing every statement would cost a round trip each time.
type StatementCache = std::collections::HashMap<String, postgres::Statement>;

impl PgTx<'_> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = match &mut self.tx {
            Conn::Tx(t) => t.prepare(sql),
            Conn::Auto(c) => c.prepare(sql),
        }
        .map_err(db_err)?;
        if self.cache.len() > 512 {
            self.cache.clear();
        }
        self.cache.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

fn db_err(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Unique(db.constraint().unwrap_or_default().to_owned());
        }
        return StoreError::Db(format!("{}: {}", db.code().code(), db.message()));
    }
    if e.is_closed() {
        return StoreError::Unavailable("connection closed".into());
    }
    StoreError::Unavailable(e.to_string())
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Value::Text(s) => s.to_sql(ty, out),
            Value::Bytes(b) => b.to_sql(ty, out),
        }
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

fn row_values(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut vals = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i).map_err(db_err)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)
                .map_err(db_err)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)
                .map_err(db_err)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map_err(db_err)?
                .map(|v| Value::Int(v.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i).map_err(db_err)?.map(Value::Bytes)
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME || *ty == Type::BPCHAR {
            row.try_get::<_, Option<String>>(i).map_err(db_err)?.map(Value::Text)
        } else {
            return Err(StoreError::Shape(format!("column {i}: unsupported type {ty}")));
        };
        vals.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(vals))
}

fn params(p: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Tx for PgTx<'_> {
    fn query(&mut self, sql: &str, p: &[Value]) -> Result<Vec<Row>, StoreError> {
        crate::versions::check(sql)?;
        let stmt = self.statement(sql)?;
        match &mut self.tx {
            Conn::Tx(t) => t.query(&stmt, &params(p)),
            Conn::Auto(c) => c.query(&stmt, &params(p)),
        }
        .map_err(db_err)?
        .iter()
        .map(row_values)
        .collect()
    }
    fn execute(&mut self, sql: &str, p: &[Value]) -> Result<u64, StoreError> {
        crate::versions::check(sql)?;
        self.execute_inside(&crate::versions::Inside(()), sql, p)
    }
    fn execute_inside(&mut self, _: &crate::versions::Inside, sql: &str, p: &[Value]) -> Result<u64, StoreError> {
        let stmt = self.statement(sql)?;
        match &mut self.tx {
            Conn::Tx(t) => t.execute(&stmt, &params(p)),
            Conn::Auto(c) => c.execute(&stmt, &params(p)),
        }
        .map_err(db_err)
    }
    fn engine(&self) -> Engine {
        Engine::Postgres
    }
}

fn connect(url: &str) -> Result<Client, StoreError> {
    let mut c = Client::connect(url, NoTls).map_err(db_err)?;
    c.batch_execute("SET synchronous_commit = on; SET TIME ZONE 'UTC'")
        .map_err(db_err)?;
    Ok(c)
}

impl PgStore {
    pub(crate) fn open(url: &str, opts: &StoreOptions) -> Result<PgStore, StoreError> {
        let mut first = connect(url)?;
        migrations::run_postgres(&mut first)?;
        Ok(PgStore {
            url: url.to_owned(),
            idle: Arc::new(Mutex::new(vec![(first, StatementCache::new())])),
            permits: Arc::new(Semaphore::new(opts.max_connections.max(1))),
        })
    }

    async fn run<T, E, F>(&self, mode: Mode, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| E::from(StoreError::Unavailable("pool closed".into())))?;
        let idle = self.idle.clone();
        let url = self.url.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = idle.lock().ok().and_then(|mut v| v.pop());
            let (mut client, mut cache) = match pooled {
                Some((c, cache)) if !c.is_closed() => (c, cache),
                _ => (connect(&url).map_err(E::from)?, StatementCache::new()),
            };
            let result = (|| {
                if mode == Mode::Fresh {
                    let mut pg = PgTx {
                        tx: Conn::Auto(&mut client),
                        cache: &mut cache,
                    };
                    return f(&mut pg);
                }
                let mut builder = client.build_transaction();
                if mode == Mode::Read {
                    // One snapshot for every statement of the closure (lists, exports).
                    builder = builder
                        .read_only(true)
                        .isolation_level(postgres::IsolationLevel::RepeatableRead);
                }
                let tx = builder.start().map_err(|e| E::from(db_err(e)))?;
                let mut pg = PgTx {
                    tx: Conn::Tx(tx),
                    cache: &mut cache,
                };
                let r = f(&mut pg)?;
                if let Conn::Tx(t) = pg.tx {
                    t.commit().map_err(|e| E::from(db_err(e)))?;
                }
                Ok(r)
            })();
            if !client.is_closed()
                && let Ok(mut v) = idle.lock()
            {
                v.push((client, cache));
            }
            result
        })
        .await;
        joined.unwrap_or_else(|e| Err(E::from(StoreError::Db(format!("store task failed: {e}")))))
    }

    /// Runs a statement outside any transaction (VACUUM cannot run inside one).
    pub(crate) async fn outside_tx(&self, sql: &'static str) -> Result<(), StoreError> {
        let url = self.url.clone();
        let idle = self.idle.clone();
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let pooled = idle.lock().ok().and_then(|mut v| v.pop());
            let (mut client, cache) = match pooled {
                Some((c, cache)) if !c.is_closed() => (c, cache),
                _ => (connect(&url)?, StatementCache::new()),
            };
            let r = client.batch_execute(sql).map_err(db_err);
            if let Ok(mut v) = idle.lock() {
                v.push((client, cache));
            }
            r
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Db(format!("store task failed: {e}"))))
    }

    pub(crate) async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Write, f).await
    }

    pub(crate) async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Read, f).await
    }

    /// Runs reads outside any transaction: each statement sees the latest commit (no
    /// BEGIN/COMMIT round trips; for hot paths whose statements need no common snapshot).
    pub(crate) async fn read_fresh<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: TxError,
        F: FnOnce(&mut dyn Tx) -> Result<T, E> + Send + 'static,
    {
        self.run(Mode::Fresh, f).await
    }
}

impl Drop for PgStore {
    /// A synchronous client blocks on its own runtime when dropped, which panics on an async
    /// worker thread; hand the idle clients to a plain thread to close them.
    fn drop(&mut self) {
        let clients = self
            .idle
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        if !clients.is_empty() {
            let _ = std::thread::Builder::new()
                .name("credvault-pg-close".into())
                .spawn(move || drop(clients));
        }
    }
}
