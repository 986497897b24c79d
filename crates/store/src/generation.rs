//! The SQLite store's state generation: a counter the writer thread moves whenever a write
//! may have changed what a read returns — anything but the audit journal, the state of its
//! forwarding, and usage stamps. The core keeps reads in memory tagged with the generation
//! they were made in and trusts them only while it has not moved (see `core::resolve::cache`).
//!
//! The writer moves it right after each closure that wrote (before any caller learns the
//! outcome, so an acknowledged change is always a new generation), again when a commit fails
//! (reads made inside the failed batch saw writes that never became durable), and when another
//! process committed to the file (`PRAGMA data_version`). Erring towards a move only costs a
//! cache refill; the classification below therefore names what does *not* move it, and every
//! statement it does not recognise does.

/// Tables whose writes change no state another read depends on: the audit journal, its
/// forwarding cursors and dead letters, alert throttling, and browser sessions.
const JOURNAL_TABLES: &[&str] = &[
    "audit_events",
    "audit_heads",
    "audit_dead_letters",
    "sink_cursors",
    "alerts_sent",
    "ui_sessions",
    "ui_devices",
];

/// Tables whose usage stamp (`SET <column> = $1 WHERE …`, nothing else) is not state: resolve
/// writes them at most once a second per row and keeps its own note of when it did.
const STAMPS: &[(&str, &str)] = &[
    ("credentials", "last_used_at"),
    ("connections", "last_used_at"),
    ("pipelines", "last_used_at"),
    ("credential_versions", "last_resolved_at"),
];

/// Whether `sql` (a statement run through a transaction) may change state: false only for
/// plain reads, writes to [`JOURNAL_TABLES`] and exact usage stamps.
pub(crate) fn changes_state(sql: &str) -> bool {
    let s = sql.trim_start();
    let word = |prefix: &str| s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix);
    // A read needs no further look (every statement, resolve's included, passes here; rusqlite
    // refuses a second statement after the first).
    if word("SELECT ") {
        return false;
    }
    if s.contains(';') {
        return true;
    }
    let rest = if word("INSERT INTO ") {
        &s["INSERT INTO ".len()..]
    } else if word("DELETE FROM ") {
        &s["DELETE FROM ".len()..]
    } else if word("UPDATE ") {
        let rest = &s["UPDATE ".len()..];
        for (table, column) in STAMPS {
            if let Some(after) = rest.strip_prefix(table)
                && let Some(after) = after.strip_prefix(" SET ")
                && let Some(after) = after.strip_prefix(column)
                && after.starts_with(" = $1 WHERE ")
            {
                return false;
            }
        }
        rest
    } else {
        return true;
    };
    let table = rest
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    !JOURNAL_TABLES.contains(&table)
}

#[cfg(test)]
mod tests {
    use super::changes_state;

    #[test]
    fn only_reads_the_journal_and_usage_stamps_leave_the_generation_alone() {
        for quiet in [
            "SELECT * FROM credentials WHERE id = $1",
            "INSERT INTO audit_events (seq) VALUES ($1)",
            "UPDATE audit_heads SET last_seq = $1, hash = $2 WHERE chain = $3",
            "INSERT INTO audit_heads (chain) VALUES ($1) ON CONFLICT (chain) DO NOTHING",
            "UPDATE sink_cursors SET seq = $1",
            "DELETE FROM ui_sessions WHERE expires_at < $1",
            "UPDATE credentials SET last_used_at = $1 WHERE id = $2",
            "UPDATE credential_versions SET last_resolved_at = $1 WHERE credential_id = $2 AND version = $3",
        ] {
            assert!(!changes_state(quiet), "{quiet}");
        }
        for state in [
            "UPDATE credentials SET status = 'disabled', updated_at = $1 WHERE id = $2",
            // A stamp that also sets something else is state.
            "UPDATE credentials SET last_used_at = $1, status = $2 WHERE id = $3",
            "UPDATE credentials SET last_used_at = $1 WHERE id = $2; DELETE FROM credentials",
            "UPDATE connections SET credential_id = NULL WHERE id = $1",
            "DELETE FROM pipeline_connections WHERE pipeline_id = $1",
            "INSERT INTO role_bindings (id) VALUES ($1)",
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2",
            "UPDATE audit_events_shadow SET x = 1",
            "INSERT INTO audit_eventsx (seq) VALUES ($1)",
            "WITH e AS (INSERT INTO credentials VALUES (1)) SELECT 1",
            "REPLACE INTO credentials VALUES (1)",
            "PRAGMA foreign_keys = OFF",
        ] {
            assert!(changes_state(state), "{state}");
        }
    }
}
