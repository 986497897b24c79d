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
    target: Arc<Target>,
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

/// A failure to connect; a refused certificate says what was wrong with it.
fn connect_err(e: &postgres::Error) -> StoreError {
    if let Some(problem) = credvault_tls::rustls_error(e).and_then(credvault_tls::cert_problem) {
        let what = match problem {
            credvault_tls::CertProblem::Expired => "is expired (or not yet valid)",
            credvault_tls::CertProblem::NameMismatch => "does not name the host in the database URL",
            credvault_tls::CertProblem::Untrusted => "is not signed by a CA in sslrootcert (or the trust store)",
        };
        return StoreError::Unavailable(format!("the database's TLS certificate {what}"));
    }
    db_err_ref(e)
}

fn db_err(e: postgres::Error) -> StoreError {
    db_err_ref(&e)
}

fn db_err_ref(e: &postgres::Error) -> StoreError {
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

/// Where the store connects, and with what TLS.
pub(crate) struct Target {
    /// The database URL as tokio-postgres reads it (see [`target`]).
    url: String,
    /// `None`: `sslmode=disable`.
    tls: Option<credvault_tls::MakePgTls>,
}

/// Reads the libpq TLS parameters of a database URL that tokio-postgres does not know and
/// removes them: `sslmode` `verify-ca` / `verify-full` (passed on as `require`) and
/// `sslrootcert` (a PEM file of CA certificates, or `system` for this machine's trust store).
/// - `disable`: plain text;
/// - no `sslmode`, or `prefer` (libpq's default): TLS if the server offers it, else plain
///   text — a downgrade anyone on the path can force; unverified unless `sslrootcert` is given;
/// - `require`: TLS, unverified unless `sslrootcert` is given (then as `verify-ca`, as libpq);
/// - `verify-ca`: the certificate chains to `sslrootcert` (default: the trust store);
/// - `verify-full`: that, and it names the host.
///
/// `sslcert` and `sslkey` (PEM files, both or neither) are the client certificate presented
/// when the server asks for one (its `cert` authentication, or `clientcert=verify-full`).
pub(crate) fn target(url: &str) -> Result<Target, StoreError> {
    use credvault_tls::Verify;
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut rootcert, mut kept) = (None, None, Vec::new());
    let (mut cert, mut key) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = Some(v.to_owned()),
            "sslrootcert" => rootcert = Some(percent_decode(v)),
            "sslcert" => cert = Some(percent_decode(v)),
            "sslkey" => key = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let verify = match mode.as_deref() {
        Some("disable") => None,
        None | Some("prefer" | "require") if rootcert.is_some() => Some(Verify::Chain),
        None | Some("prefer" | "require") => Some(Verify::Nothing),
        Some("verify-ca") => Some(Verify::Chain),
        Some("verify-full") => Some(Verify::Full),
        Some(other) => {
            return Err(StoreError::BadUrl(format!(
                "sslmode={other} (use disable, prefer, require, verify-ca or verify-full)"
            )));
        }
    };
    // What tokio-postgres is told: whether to ask for TLS (the verification is ours).
    if let Some(m) = mode.as_deref() {
        kept.push(match m {
            "disable" => "sslmode=disable",
            "prefer" => "sslmode=prefer",
            _ => "sslmode=require",
        });
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    if verify.is_none() && (cert.is_some() || key.is_some()) {
        return Err(StoreError::BadUrl(
            "sslcert and sslkey need TLS (not sslmode=disable)".into(),
        ));
    }
    let tls = match verify {
        None => None,
        Some(v) => {
            let roots = match rootcert.as_deref() {
                None | Some("system") => None,
                Some(path) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| StoreError::BadUrl(format!("sslrootcert: cannot read {path}: {e}")))?;
                    Some(
                        credvault_tls::roots_from_pem(&pem)
                            .map_err(|e| StoreError::BadUrl(format!("sslrootcert: {path}: {e}")))?,
                    )
                }
            };
            let identity = match (&cert, &key) {
                (None, None) => None,
                (Some(c), Some(k)) => {
                    let read = |what: &str, path: &str| {
                        std::fs::read(path).map_err(|e| StoreError::BadUrl(format!("{what}: cannot read {path}: {e}")))
                    };
                    let (c, k) = (read("sslcert", c)?, zeroize::Zeroizing::new(read("sslkey", k)?));
                    Some(
                        credvault_tls::ClientIdentity::from_pem(&c, &k)
                            .map_err(|e| StoreError::BadUrl(format!("sslcert/sslkey: {e}")))?,
                    )
                }
                _ => return Err(StoreError::BadUrl("sslcert and sslkey go together".into())),
            };
            let config = credvault_tls::client_config_with_identity(v, roots, identity)
                .map_err(|e| StoreError::BadUrl(format!("TLS: {e}")))?;
            Some(credvault_tls::MakePgTls { config })
        }
    };
    Ok(Target { url, tls })
}

/// `%XX` escapes decoded (a path in a URL).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn connect(target: &Target) -> Result<Client, StoreError> {
    let mut c = match &target.tls {
        Some(tls) => Client::connect(&target.url, tls.clone()),
        None => Client::connect(&target.url, NoTls),
    }
    .map_err(|e| connect_err(&e))?;
    c.batch_execute("SET synchronous_commit = on; SET TIME ZONE 'UTC'")
        .map_err(db_err)?;
    Ok(c)
}

impl PgStore {
    pub(crate) fn open(url: &str, opts: &StoreOptions) -> Result<PgStore, StoreError> {
        let target = target(url)?;
        let mut first = connect(&target)?;
        migrations::run_postgres(&mut first)?;
        Ok(PgStore {
            target: Arc::new(target),
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
        let target = self.target.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = idle.lock().ok().and_then(|mut v| v.pop());
            let (mut client, mut cache) = match pooled {
                Some((c, cache)) if !c.is_closed() => (c, cache),
                _ => (connect(&target).map_err(E::from)?, StatementCache::new()),
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
        let target = self.target.clone();
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
                _ => (connect(&target)?, StatementCache::new()),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::target;
    use crate::StoreError;

    #[test]
    fn libpq_tls_parameters_are_read_and_what_tokio_postgres_gets_is_what_it_knows() {
        let t = target("postgres://u:p@db:5432/cv?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(t.url, "postgres://u:p@db:5432/cv?application_name=x&sslmode=require");
        assert!(t.tls.is_some());
        let t = target("postgres://u:p@db/cv?sslmode=disable").unwrap();
        assert_eq!(t.url, "postgres://u:p@db/cv?sslmode=disable");
        assert!(t.tls.is_none(), "disable is plain text");
        let t = target("postgres://u:p@db/cv").unwrap();
        assert_eq!(t.url, "postgres://u:p@db/cv");
        assert!(t.tls.is_some(), "libpq's default, prefer, tries TLS");
        for (url, says) in [
            (
                "postgres://db/cv?sslmode=verify-everything",
                "sslmode=verify-everything",
            ),
            ("postgres://db/cv?sslmode=require&sslcert=/c.pem", "go together"),
            (
                "postgres://db/cv?sslmode=disable&sslcert=/c.pem&sslkey=/k.pem",
                "need TLS",
            ),
            (
                "postgres://db/cv?sslmode=require&sslcert=/no/c.pem&sslkey=/no/k.pem",
                "/no/c.pem",
            ),
            (
                "postgres://db/cv?sslmode=verify-ca&sslrootcert=/no/such/ca.pem",
                "/no/such/ca.pem",
            ),
        ] {
            match target(url) {
                Err(StoreError::BadUrl(m)) => assert!(m.contains(says), "{url}: {m}"),
                other => panic!("{url}: {:?}", other.map(|t| t.url)),
            }
        }
        let dir = std::env::temp_dir().join(format!("cv-notpem-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let url = format!("postgres://db/cv?sslmode=verify-full&sslrootcert={}", dir.display());
        assert!(matches!(target(&url), Err(StoreError::BadUrl(m)) if m.contains("no usable certificate")));
        let _ = std::fs::remove_file(&dir);
    }
}
