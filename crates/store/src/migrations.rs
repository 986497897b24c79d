//! Schema migrations, one folder per engine (`migrations/sqlite`, `migrations/postgres`).
//! The two schemas describe the same tables; only types and sequences differ. Applied
//! migrations are recorded in `schema_migrations`; on PostgreSQL an advisory lock keeps two
//! nodes starting at once from migrating twice.

use crate::StoreError;

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_connections.sql")),
    (3, include_str!("../migrations/sqlite/0003_tests.sql")),
    (4, include_str!("../migrations/sqlite/0004_lifecycle.sql")),
    (5, include_str!("../migrations/sqlite/0005_sinks.sql")),
    (6, include_str!("../migrations/sqlite/0006_oauth.sql")),
    (7, include_str!("../migrations/sqlite/0007_ui.sql")),
    (8, include_str!("../migrations/sqlite/0008_logins.sql")),
    (9, include_str!("../migrations/sqlite/0009_version_use.sql")),
    (10, include_str!("../migrations/sqlite/0010_destinations.sql")),
    (11, include_str!("../migrations/sqlite/0011_dead_letters.sql")),
    (12, include_str!("../migrations/sqlite/0012_audit_shards.sql")),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_connections.sql")),
    (3, include_str!("../migrations/postgres/0003_tests.sql")),
    (4, include_str!("../migrations/postgres/0004_lifecycle.sql")),
    (5, include_str!("../migrations/postgres/0005_sinks.sql")),
    (6, include_str!("../migrations/postgres/0006_oauth.sql")),
    (7, include_str!("../migrations/postgres/0007_ui.sql")),
    (8, include_str!("../migrations/postgres/0008_logins.sql")),
    (9, include_str!("../migrations/postgres/0009_version_use.sql")),
    (10, include_str!("../migrations/postgres/0010_destinations.sql")),
    (11, include_str!("../migrations/postgres/0011_dead_letters.sql")),
    (12, include_str!("../migrations/postgres/0012_audit_shards.sql")),
];

/// The newest schema version this build knows.
pub const LATEST: i64 = 12;

pub(crate) fn run_sqlite(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let err = |version: i64| {
        move |e: rusqlite::Error| StoreError::Migration {
            version,
            reason: e.to_string(),
        }
    };
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(err(0))?;
    let current: i64 = conn
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(err(0))?;
    if current > LATEST {
        return Err(StoreError::Migration {
            version: current,
            reason: format!("database schema {current} is newer than this build ({LATEST})"),
        });
    }
    for (version, sql) in SQLITE.iter().filter(|(v, _)| *v > current) {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err(*version))?;
        let applied = conn.execute_batch(sql).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                rusqlite::params![version, credvault_domain::time::now_micros()],
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT").map_err(err(*version))?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err(*version)(e));
            }
        }
    }
    Ok(())
}

pub(crate) fn run_postgres(client: &mut postgres::Client) -> Result<(), StoreError> {
    let err = |version: i64| {
        move |e: postgres::Error| StoreError::Migration {
            version,
            reason: e.to_string(),
        }
    };
    let mut tx = client.transaction().map_err(err(0))?;
    tx.execute("SELECT pg_advisory_xact_lock(7283412001)", &[])
        .map_err(err(0))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .map_err(err(0))?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", &[])
        .map_err(err(0))?
        .get(0);
    if current > LATEST {
        return Err(StoreError::Migration {
            version: current,
            reason: format!("database schema {current} is newer than this build ({LATEST})"),
        });
    }
    for (version, sql) in POSTGRES.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).map_err(err(*version))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &credvault_domain::time::now_micros()],
        )
        .map_err(err(*version))?;
    }
    tx.commit().map_err(err(LATEST))?;
    Ok(())
}
