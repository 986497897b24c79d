//! Logical backup and restore of the whole store, engine-neutral: every table is written as
//! JSON lines in key order from one consistent snapshot (a read transaction: SQLite's WAL
//! snapshot, PostgreSQL's REPEATABLE READ), and read back into an empty store of either engine.
//! Ciphertext stays ciphertext; the key file is not part of it (the CLI may add it,
//! passphrase-encrypted).
//!
//! Format: a first line `{"format":"credvault-backup/1", "schema_version": N, …}`, then one line
//! per row `{"t": table, "r": [values…]}` with columns in the order the header lists them;
//! bytes are `{"b64": "…"}`.

use std::io::{BufRead, Write};

use base64::Engine as _;
use serde_json::{Value as Json, json};

use crate::{Engine, Store, StoreError, Tx, Value, migrations};

/// Tables in restore order (parents before children), with the key columns used to page.
const TABLES: &[(&str, &[&str])] = &[
    ("meta", &["key"]),
    ("orgs", &["seq"]),
    ("workspaces", &["seq"]),
    ("principals", &["seq"]),
    ("role_bindings", &["seq"]),
    ("tokens", &["seq"]),
    ("credentials", &["seq"]),
    ("credential_labels", &["credential_id", "key"]),
    ("credential_versions", &["credential_id", "version"]),
    ("connections", &["seq"]),
    ("pipelines", &["seq"]),
    ("pipeline_connections", &["pipeline_id", "connection_id"]),
    ("reviews", &["seq"]),
    ("connection_tests", &["seq"]),
    ("alerts_sent", &["credential_id", "kind", "threshold", "ref_time"]),
    ("audit_heads", &["chain"]),
    ("audit_events", &["seq"]),
    ("sink_cursors", &["name"]),
    ("oauth_states", &["state"]),
    ("oauth_leases", &["credential_id"]),
    ("principal_passwords", &["principal_id"]),
];

/// Tables whose `seq` is an identity column on PostgreSQL.
const IDENTITY: &[&str] = &[
    "orgs",
    "workspaces",
    "principals",
    "role_bindings",
    "tokens",
    "credentials",
    "connections",
    "pipelines",
    "reviews",
    "connection_tests",
];

const PAGE: i64 = 1000;

/// Counts of what a backup or restore moved.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BackupStats {
    /// Rows per table.
    pub tables: Vec<(String, u64)>,
}

fn columns(tx: &mut dyn Tx, table: &str) -> Result<Vec<String>, StoreError> {
    let rows = match tx.engine() {
        Engine::Sqlite => tx.query(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"), &[])?,
        Engine::Postgres => tx.query(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position",
            &[table.into()],
        )?,
    };
    rows.iter().map(|r| r.text(0)).collect()
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::Text(s) => json!(s),
        Value::Bytes(b) => json!({"b64": base64::engine::general_purpose::STANDARD.encode(b)}),
    }
}

fn from_json(v: &Json) -> Result<Value, StoreError> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Number(n) => Value::Int(
            n.as_i64()
                .ok_or_else(|| StoreError::Shape("non-integer number in backup".into()))?,
        ),
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(m) => {
            let b = m
                .get("b64")
                .and_then(Json::as_str)
                .ok_or_else(|| StoreError::Shape("unknown object in backup".into()))?;
            Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| StoreError::Shape("bad base64 in backup".into()))?,
            )
        }
        _ => return Err(StoreError::Shape("unexpected value in backup".into())),
    })
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Db(format!("backup file: {e}"))
}

impl Store {
    /// Writes a consistent logical backup to `out` (blocking IO: call from a blocking thread
    /// or through [`Store::export_to`]). `progress` is called after each page with the rows
    /// written so far.
    pub async fn export_to(
        &self,
        mut out: Box<dyn Write + Send>,
        extra_header: Json,
        progress: impl Fn(u64) + Send + 'static,
    ) -> Result<BackupStats, StoreError> {
        self.read(move |tx: &mut dyn Tx| {
            let mut stats = BackupStats::default();
            let mut header =
                json!({"format": "credvault-backup/1", "schema_version": migrations::LATEST, "tables": {}});
            let mut cols_by_table = Vec::new();
            for (t, _) in TABLES {
                let cols = columns(tx, t)?;
                header["tables"][*t] = json!(cols);
                cols_by_table.push(cols);
            }
            if let (Json::Object(h), Json::Object(extra)) = (&mut header, extra_header) {
                h.extend(extra);
            }
            writeln!(out, "{header}").map_err(io)?;
            let mut total = 0u64;
            for ((t, keys), cols) in TABLES.iter().zip(&cols_by_table) {
                let key_idx: Vec<usize> = keys
                    .iter()
                    .map(|k| cols.iter().position(|c| c == k).unwrap_or(0))
                    .collect();
                let select = cols.join(", ");
                let order = keys.join(", ");
                let mut last: Option<Vec<Value>> = None;
                let mut n = 0u64;
                loop {
                    let (sql, params) = match &last {
                        None => (
                            format!("SELECT {select} FROM {t} ORDER BY {order} LIMIT {PAGE}"),
                            Vec::new(),
                        ),
                        Some(k) => {
                            let marks: Vec<String> = (1..=k.len()).map(|i| format!("${i}")).collect();
                            (
                                format!(
                                    "SELECT {select} FROM {t} WHERE ({order}) > ({}) ORDER BY {order} LIMIT {PAGE}",
                                    marks.join(", ")
                                ),
                                k.clone(),
                            )
                        }
                    };
                    let rows = tx.query(&sql, &params)?;
                    for r in &rows {
                        let vals: Vec<Json> = r.0.iter().map(to_json).collect();
                        writeln!(out, "{}", json!({"t": t, "r": vals})).map_err(io)?;
                    }
                    n += rows.len() as u64;
                    total += rows.len() as u64;
                    progress(total);
                    match rows.last() {
                        Some(r) if rows.len() as i64 == PAGE => {
                            last = Some(key_idx.iter().map(|i| r.0[*i].clone()).collect())
                        }
                        _ => break,
                    }
                }
                stats.tables.push(((*t).to_owned(), n));
            }
            out.flush().map_err(io)?;
            Ok(stats)
        })
        .await
    }

    /// Restores a backup into this store, which must hold no data (checked). Runs in one
    /// transaction: either everything is restored or nothing.
    pub async fn import_from(&self, mut input: Box<dyn BufRead + Send>) -> Result<(BackupStats, Json), StoreError> {
        self.write(move |tx: &mut dyn Tx| {
            let mut line = String::new();
            input.read_line(&mut line).map_err(io)?;
            let header: Json = serde_json::from_str(&line).map_err(|_| StoreError::Shape("not a credvault backup (bad header)".into()))?;
            if header.get("format").and_then(Json::as_str) != Some("credvault-backup/1") {
                return Err(StoreError::Shape("not a credvault backup (unknown format)".into()));
            }
            let version = header.get("schema_version").and_then(Json::as_i64).unwrap_or(0);
            if version > migrations::LATEST {
                return Err(StoreError::Shape(format!("the backup has schema {version}, newer than this build ({})", migrations::LATEST)));
            }
            if tx.query_one("SELECT COUNT(*) FROM orgs", &[])?.int(0)? > 0 {
                return Err(StoreError::Shape("the target store is not empty; restore only into an empty data directory or database".into()));
            }
            let mut stats: Vec<(String, u64)> = TABLES.iter().map(|(t, _)| ((*t).to_owned(), 0)).collect();
            // The columns of each table, read once: the header's column names go into the
            // INSERT statement, so only the table's own columns (each once) are accepted.
            let mut known: Vec<Option<Vec<String>>> = vec![None; TABLES.len()];
            loop {
                line.clear();
                if input.read_line(&mut line).map_err(io)? == 0 {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                let row: Json = serde_json::from_str(&line).map_err(|_| StoreError::Shape("corrupt backup line".into()))?;
                let t = row.get("t").and_then(Json::as_str).unwrap_or_default();
                let Some(i) = TABLES.iter().position(|(name, _)| *name == t) else {
                    return Err(StoreError::Shape(format!("unknown table `{t}` in backup")));
                };
                let cols: Vec<String> = header["tables"][t]
                    .as_array()
                    .ok_or_else(|| StoreError::Shape(format!("no columns for `{t}` in the header")))?
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect();
                if known[i].is_none() {
                    known[i] = Some(columns(tx, TABLES[i].0)?);
                }
                let real = known[i].as_deref().unwrap_or_default();
                if cols.iter().enumerate().any(|(n, c)| !real.contains(c) || cols[..n].contains(c)) {
                    return Err(StoreError::Shape(format!("the header lists a column `{t}` does not have, or one twice")));
                }
                let vals = row.get("r").and_then(Json::as_array).ok_or_else(|| StoreError::Shape("corrupt backup row".into()))?;
                if vals.len() != cols.len() {
                    return Err(StoreError::Shape(format!("row of `{t}` has {} values for {} columns", vals.len(), cols.len())));
                }
                let params = vals.iter().map(from_json).collect::<Result<Vec<_>, _>>()?;
                let marks: Vec<String> = (1..=params.len()).map(|i| format!("${i}")).collect();
                let overriding = if tx.engine() == Engine::Postgres && IDENTITY.contains(&t) { " OVERRIDING SYSTEM VALUE" } else { "" };
                // `meta` and `audit_heads` rows may exist from migrations of the empty target.
                let conflict = if t == "meta" || t == "audit_heads" { " ON CONFLICT DO NOTHING" } else { "" };
                // Rows as the backup holds them (sealed columns included: they were sealed
                // when written, and the barrier is for statements, not restored rows).
                tx.execute_inside(
                    &crate::versions::Inside(()),
                    &format!("INSERT INTO {t} ({}){overriding} VALUES ({}){conflict}", cols.join(", "), marks.join(", ")),
                    &params,
                )?;
                stats[i].1 += 1;
            }
            // Backups from before audit shards (migration 0012) carry heads without their
            // organization; each of those is an organization's own chain.
            tx.execute("UPDATE audit_heads SET org = chain WHERE org IS NULL", &[])?;
            if tx.engine() == Engine::Postgres {
                for t in IDENTITY {
                    tx.query(
                        &format!("SELECT setval(pg_get_serial_sequence('{t}', 'seq'), COALESCE((SELECT MAX(seq) FROM {t}), 0) + 1, false)"),
                        &[],
                    )?;
                }
                tx.query("SELECT setval('audit_seq', COALESCE((SELECT MAX(seq) FROM audit_events), 0) + 1, false)", &[])?;
            }
            Ok((BackupStats { tables: stats }, header))
        })
        .await
    }
}
