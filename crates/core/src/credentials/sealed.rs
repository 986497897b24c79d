//! Sealing, opening and re-sealing versions (the only code here that sees a version's plaintext), and carrying kept fields over.

use super::*;

/// Seals the secret part of validated fields for one version.
pub(super) fn seal(keyring: &Keyring, org: &str, cred: &str, version: i64, secret: SecretJson) -> CoreResult<Sealed> {
    let bytes = secret.into_bytes();
    Ok(keyring.seal(
        &Binding {
            org_id: org,
            credential_id: cred,
            version,
        },
        &bytes,
    )?)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn insert_version(
    tx: &mut dyn Tx,
    cred: &str,
    version: i64,
    state: VersionState,
    sealed: &Sealed,
    v: &ValidatedFields,
    by: &str,
    now: i64,
) -> CoreResult<()> {
    credvault_store::versions::insert(
        tx,
        &credvault_store::versions::NewVersion {
            credential_id: cred,
            version,
            state: state.as_str(),
            sealed,
            public_fields: &serde_json::to_string(&v.public)?,
            secret_fields_set: &serde_json::to_string(&v.secret_fields_set)?,
            created_at: now,
            created_by: by,
            source_credential_id: v.public.get("source_credential_id").and_then(Json::as_str),
        },
    )?;
    Ok(())
}

pub(super) fn version_state(tx: &mut dyn Tx, id: &str, n: i64) -> CoreResult<String> {
    match tx.query_opt(
        "SELECT state FROM credential_versions WHERE credential_id = $1 AND version = $2",
        &[id.into(), n.into()],
    )? {
        Some(r) => Ok(r.text(0)?),
        None => Err(CoreError::NotFound { what: "version" }),
    }
}

/// Opens one version and merges its public and secret fields. The result holds plaintext:
/// callers wrap it in a zeroizing response type.
/// Like [`decrypt_version`], also returning the secret values (for scrubbing messages).
pub(crate) fn decrypt_version_parts(
    tx: &mut dyn Tx,
    keyring: &Keyring,
    org: &str,
    cred: &str,
    version: i64,
) -> CoreResult<(Json, Vec<String>)> {
    let r = sealed_row(tx, cred, version)?;
    let mut secrets = Vec::new();
    let fields = open_sealed_row(keyring, org, cred, version, &r, 0, Some(&mut secrets))?;
    Ok((fields, secrets))
}

/// One version's [`SEALED_COLS`].
pub(super) fn sealed_row(tx: &mut dyn Tx, cred: &str, version: i64) -> CoreResult<credvault_store::Row> {
    Ok(tx.query_one(
        &format!("SELECT {SEALED_COLS} FROM credential_versions WHERE credential_id = $1 AND version = $2"),
        &[cred.into(), version.into()],
    )?)
}

/// The columns [`open_sealed_row`] reads, in order.
pub(crate) const SEALED_COLS: &str = concat!(credvault_store::sealed_cols!(), ", public_fields");

/// Opens a version from a row holding [`SEALED_COLS`] from column `at` on (so a caller can
/// read the version's state and its sealed data in one statement).
pub(crate) fn open_sealed_row(
    keyring: &Keyring,
    org: &str,
    cred: &str,
    version: i64,
    r: &credvault_store::Row,
    at: usize,
    secrets: Option<&mut Vec<String>>,
) -> CoreResult<Json> {
    let Some(sealed) = credvault_store::versions::sealed_at(r, at)? else {
        return Err(CoreError::conflict(
            Code::VersionDestroyed,
            "the keys of this version were destroyed",
        ));
    };
    let plain = keyring.open(
        &Binding {
            org_id: org,
            credential_id: cred,
            version,
        },
        &sealed,
    )?;
    let secret =
        SecretJson::from_bytes(&plain).map_err(|_| CoreError::Internal("sealed payload is not JSON".into()))?;
    let public: Json = serde_json::from_str(&r.text(at + 3)?)?;
    if let Some(out) = secrets {
        collect_strings(secret.expose(), out);
    }
    Ok(credential_types::merge(&public, secret.expose()))
}

/// Every string leaf of a (secret) tree.
pub(super) fn collect_strings(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::String(s) => out.push(s.clone()),
        Json::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Json::Object(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Opens one version and merges its public and secret fields. The result holds plaintext:
/// callers wrap it in a zeroizing response type.
pub(crate) fn decrypt_version(
    tx: &mut dyn Tx,
    keyring: &Keyring,
    org: &str,
    cred: &str,
    version: i64,
) -> CoreResult<Json> {
    let r = sealed_row(tx, cred, version)?;
    open_sealed_row(keyring, org, cred, version, &r, 0, None)
}

/// Makes `fields` the new current version (the old current is revoked): OAuth consent.
pub(crate) fn replace_version_internal(
    tx: &mut dyn Tx,
    keyring: &Keyring,
    c: &CredRow,
    fields: Json,
    by: &str,
) -> CoreResult<i64> {
    let ty = CredentialType::parse(&c.ty).ok_or_else(|| CoreError::Internal(format!("stored type {}", c.ty)))?;
    let validated = validate_fields(ty, c.variant.as_deref(), fields)?;
    let next = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM credential_versions WHERE credential_id = $1",
            &[c.id.as_str().into()],
        )?
        .int(0)?;
    let sealed = seal(
        keyring,
        &c.org_id,
        &c.id,
        next,
        SecretJson::new(validated.secret.expose().clone()),
    )?;
    let now = now_micros();
    tx.execute(
        "UPDATE credential_versions SET state = 'revoked', state_changed_at = $1 WHERE credential_id = $2 AND state = 'current'",
        &[now.into(), c.id.as_str().into()],
    )?;
    tx.execute(
        "UPDATE credentials SET current_version = $1, updated_at = $2 WHERE id = $3",
        &[next.into(), now.into(), c.id.as_str().into()],
    )?;
    insert_version(tx, &c.id, next, VersionState::Current, &sealed, &validated, by, now)?;
    Ok(next)
}

/// Re-seals the current version in place with new fields (a token refresh is not a
/// rotation: the version number stays, a fresh data key seals the new tokens) — only if it is
/// still `version`, the one the fields were read from (compare-and-set; `c` is locked).
pub(crate) fn reseal_current(
    tx: &mut dyn Tx,
    keyring: &Keyring,
    c: &CredRow,
    version: i64,
    fields: Json,
) -> CoreResult<()> {
    if c.current_version != version {
        return Err(CoreError::conflict(
            Code::VersionChanged,
            "another version became current meanwhile",
        ));
    }
    let ty = CredentialType::parse(&c.ty).ok_or_else(|| CoreError::Internal(format!("stored type {}", c.ty)))?;
    let validated = validate_fields(ty, c.variant.as_deref(), fields)?;
    let sealed = seal(
        keyring,
        &c.org_id,
        &c.id,
        c.current_version,
        SecretJson::new(validated.secret.expose().clone()),
    )?;
    credvault_store::versions::reseal(
        tx,
        &c.id,
        c.current_version,
        &sealed,
        &serde_json::to_string(&validated.public)?,
        &serde_json::to_string(&validated.secret_fields_set)?,
    )?;
    Ok(())
}
