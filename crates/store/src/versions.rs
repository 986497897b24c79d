//! The secret columns of `credential_versions` (`kek_id`, `wrapped_key`, `ciphertext`): the
//! only way to write them. Each function takes a [`Sealed`], which only `credvault-crypto`
//! makes (by sealing or re-wrapping, or from stored bytes it checks the framing of), so plain
//! bytes — a secret by mistake — cannot reach these columns. Any other statement that writes
//! them is refused by [`check`], which every [`Tx::query`]/[`Tx::execute`] runs first.

use credvault_crypto::Sealed;

use crate::{Row, StoreError, Tx, Value};

/// The columns [`sealed_at`] reads, in order, as a literal (for `concat!` in other crates).
#[macro_export]
macro_rules! sealed_cols {
    () => {
        "kek_id, wrapped_key, ciphertext"
    };
}

/// The columns [`sealed_at`] reads, in order; a query may select them after its own columns.
pub const SEALED_COLS: &str = sealed_cols!();

/// Names the barrier watches for, in the spellings our SQL uses.
const GUARDED: [&str; 4] = ["wrapped_key", "ciphertext", "WRAPPED_KEY", "CIPHERTEXT"];

/// Refuses a statement that writes a secret column (an `INSERT`, `UPDATE` or `COPY` naming one)
/// unless it comes from this module. Reads pass.
pub(crate) fn check(sql: &str) -> Result<(), StoreError> {
    // A statement that starts with SELECT writes nothing (a data-modifying CTE starts with
    // WITH): the reads on the resolve path cost one prefix test.
    let head = sql.trim_start().get(..6).unwrap_or("");
    if head.eq_ignore_ascii_case("select") || !GUARDED.iter().any(|c| sql.contains(c)) {
        return Ok(());
    }
    let mut prev = "";
    let mut writes = false;
    for w in sql
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
    {
        // `SELECT … FOR UPDATE` locks rows; it writes nothing.
        let keyword = ["insert", "update", "copy", "replace"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k));
        if keyword && !(w.eq_ignore_ascii_case("update") && prev.eq_ignore_ascii_case("for")) {
            writes = true;
            break;
        }
        prev = w;
    }
    if writes {
        return Err(StoreError::Barrier(
            "a statement writes credential_versions' sealed columns outside credvault_store::versions",
        ));
    }
    Ok(())
}

/// Proof that a statement comes from inside the store (its typed functions, the backup
/// reader); nothing outside the crate can make one.
pub struct Inside(pub(crate) ());

/// A new version row.
pub struct NewVersion<'a> {
    /// The credential.
    pub credential_id: &'a str,
    /// Its number.
    pub version: i64,
    /// `current`, `staged`, …
    pub state: &'a str,
    /// The secret half, sealed.
    pub sealed: &'a Sealed,
    /// The public half, as JSON text.
    pub public_fields: &'a str,
    /// Paths of the secret fields that are set, as JSON text.
    pub secret_fields_set: &'a str,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// Principal ID.
    pub created_by: &'a str,
    /// An AWS role chain's source credential, if any.
    pub source_credential_id: Option<&'a str>,
}

/// Inserts a version.
pub fn insert(tx: &mut dyn Tx, v: &NewVersion<'_>) -> Result<(), StoreError> {
    tx.execute_inside(
        &Inside(()),
        "INSERT INTO credential_versions (credential_id, version, state, kek_id, wrapped_key, ciphertext, public_fields, \
         secret_fields_set, created_at, created_by, state_changed_at, source_credential_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $11)",
        &[
            v.credential_id.into(),
            v.version.into(),
            v.state.into(),
            v.sealed.kek_id().into(),
            Value::Bytes(v.sealed.wrapped_key().to_vec()),
            Value::Bytes(v.sealed.ciphertext().to_vec()),
            v.public_fields.into(),
            v.secret_fields_set.into(),
            v.created_at.into(),
            v.created_by.into(),
            v.source_credential_id.into(),
        ],
    )?;
    Ok(())
}

/// Replaces a version's sealed secret and its public half (an OAuth refresh writing new
/// tokens into the version it read). Returns the rows changed (0 or 1).
pub fn reseal(
    tx: &mut dyn Tx,
    credential_id: &str,
    version: i64,
    sealed: &Sealed,
    public_fields: &str,
    secret_fields_set: &str,
) -> Result<u64, StoreError> {
    tx.execute_inside(
        &Inside(()),
        "UPDATE credential_versions SET kek_id = $1, wrapped_key = $2, ciphertext = $3, public_fields = $4, secret_fields_set = $5 \
         WHERE credential_id = $6 AND version = $7",
        &[
            sealed.kek_id().into(),
            Value::Bytes(sealed.wrapped_key().to_vec()),
            Value::Bytes(sealed.ciphertext().to_vec()),
            public_fields.into(),
            secret_fields_set.into(),
            credential_id.into(),
            version.into(),
        ],
    )
}

/// Stores a re-wrapped data key, only if the row still has the key ID it was read with (a
/// purge or another re-wrap meanwhile wins). Returns the rows changed (0 or 1).
pub fn rewrap(
    tx: &mut dyn Tx,
    credential_id: &str,
    version: i64,
    old_kek_id: &str,
    new: &Sealed,
) -> Result<u64, StoreError> {
    tx.execute_inside(
        &Inside(()),
        "UPDATE credential_versions SET kek_id = $1, wrapped_key = $2 \
         WHERE credential_id = $3 AND version = $4 AND kek_id = $5",
        &[
            new.kek_id().into(),
            Value::Bytes(new.wrapped_key().to_vec()),
            credential_id.into(),
            version.into(),
            old_kek_id.into(),
        ],
    )
}

/// Destroys the key material of every version of a credential (a purge), marking each
/// `revoked` at `now`. Returns the versions changed.
pub fn destroy_all(tx: &mut dyn Tx, credential_id: &str, now: i64) -> Result<u64, StoreError> {
    tx.execute_inside(
        &Inside(()),
        "UPDATE credential_versions SET kek_id = NULL, wrapped_key = NULL, ciphertext = NULL, state = 'revoked', \
         state_changed_at = $1 WHERE credential_id = $2",
        &[now.into(), credential_id.into()],
    )
}

/// The sealed secret in [`SEALED_COLS`] from column `at` on: `None` once destroyed.
pub fn sealed_at(row: &Row, at: usize) -> Result<Option<Sealed>, StoreError> {
    let (Some(kek_id), Some(wrapped_key), Some(ciphertext)) =
        (row.opt_text(at)?, row.opt_bytes(at + 1)?, row.opt_bytes(at + 2)?)
    else {
        return Ok(None);
    };
    Sealed::from_stored(kek_id, wrapped_key, ciphertext)
        .map(Some)
        .map_err(|e| StoreError::Shape(format!("column {at}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn writes_of_sealed_columns_are_refused_and_reads_pass() {
        for sql in [
            "INSERT INTO credential_versions (credential_id, ciphertext) VALUES ($1, $2)",
            "UPDATE credential_versions SET wrapped_key = $1",
            "update credential_versions set CIPHERTEXT = $1",
            "WITH x AS (UPDATE credential_versions SET ciphertext = $1 RETURNING 1) SELECT * FROM x",
        ] {
            assert!(check(sql).is_err(), "{sql}");
        }
        for sql in [
            "SELECT kek_id, wrapped_key, ciphertext FROM credential_versions WHERE credential_id = $1",
            "UPDATE credential_versions SET state = 'previous' WHERE credential_id = $1",
            "INSERT INTO audit_events (seq) VALUES ($1)",
            "SELECT kek_id, wrapped_key, ciphertext FROM credential_versions WHERE credential_id = $1 FOR UPDATE",
        ] {
            assert!(check(sql).is_ok(), "{sql}");
        }
    }
}
