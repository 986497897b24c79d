//! Master-key (key-encryption key) rotation: re-wrap every data key under the keyring's
//! primary in batches, without touching payloads. Each batch commits on its own and only
//! rows still wrapped by an older key are picked, so a crash mid-way loses nothing and a rerun
//! resumes where it stopped.

use crate::actions::Action;
use std::sync::Arc;

use serde::Serialize;

use credvault_crypto::{Binding, Keyring, Sealed};
use credvault_store::Tx;

use crate::Service;
use crate::audit::{self, ActorRef, Draft};
use crate::context::RequestCtx;
use crate::error::{CoreError, CoreResult};

/// How many data keys each key wraps.
#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    /// The primary key (new data keys are wrapped by it).
    pub primary: String,
    /// Every key in the keyring, with the number of data keys it wraps.
    pub keys: Vec<KeyUse>,
    /// Data keys wrapped by a key that is not in the keyring (cannot be opened).
    pub unknown: Vec<KeyUse>,
}

/// One key's use.
#[derive(Clone, Debug, Serialize)]
pub struct KeyUse {
    /// Key ID.
    pub id: String,
    /// Data keys it wraps.
    pub data_keys: i64,
}

struct Row {
    credential_id: String,
    version: i64,
    org_id: String,
    sealed: Sealed,
}

fn audit_instance(tx: &mut dyn Tx, action: Action, details: serde_json::Value) -> CoreResult<()> {
    let ctx = RequestCtx {
        request_id: String::new(),
        source_ip: None,
        user_agent: Some("credvault keys".into()),
        received_at: 0,
    };
    let d = Draft {
        action,
        target_type: Some("keyring"),
        target_id: None,
        org_id: None,
        workspace_id: None,
        outcome: audit::Outcome::Success,
        details,
    };
    audit::append(tx, &ctx, &ActorRef::system(), &d).map(|_| ())
}

impl Service {
    /// Replaces the in-memory keyring (the server reloads it when the key file changes).
    pub fn set_keyring(&self, keyring: Keyring) -> CoreResult<()> {
        let mut guard = self
            .inner
            .keyring
            .write()
            .map_err(|_| CoreError::Internal("keyring lock poisoned".into()))?;
        *guard = Arc::new(keyring);
        Ok(())
    }

    /// Which key wraps how many data keys.
    pub async fn key_status(&self) -> CoreResult<KeyStatus> {
        let keyring = self.keyring()?.clone();
        let rows = self
            .inner
            .store
            .read(|tx: &mut dyn Tx| -> CoreResult<Vec<(String, i64)>> {
                let rows = tx.query(
                    "SELECT kek_id, COUNT(*) FROM credential_versions WHERE kek_id IS NOT NULL GROUP BY kek_id ORDER BY kek_id",
                    &[],
                )?;
                rows.iter().map(|r| Ok((r.text(0)?, r.int(1)?))).collect()
            })
            .await?;
        let ids: Vec<String> = keyring.key_ids().iter().map(|k| k.to_string()).collect();
        let keys = ids
            .iter()
            .map(|id| KeyUse {
                id: id.clone(),
                data_keys: rows.iter().find(|(k, _)| k == id).map_or(0, |(_, n)| *n),
            })
            .collect();
        let unknown = rows
            .iter()
            .filter(|(k, _)| !ids.contains(k))
            .map(|(k, n)| KeyUse {
                id: k.clone(),
                data_keys: *n,
            })
            .collect();
        Ok(KeyStatus {
            primary: keyring.primary().to_string(),
            keys,
            unknown,
        })
    }

    /// Records the start of a rotation in the instance audit chain.
    pub async fn record_key_rotation(&self, new_primary: &str, previous: &str) -> CoreResult<()> {
        let details = serde_json::json!({"new_primary": new_primary, "previous_primary": previous});
        self.inner
            .store
            .write(move |tx| audit_instance(tx, Action::KeysRotate, details))
            .await
    }

    /// Re-wraps up to `limit` data keys that are not under the primary key. Returns how many
    /// were re-wrapped; 0 means done.
    pub async fn rewrap_batch(&self, limit: i64) -> CoreResult<i64> {
        let keyring = self.keyring()?.clone();
        let primary = keyring.primary().to_string();
        let p = primary.clone();
        let rows = self
            .inner
            .store
            .read(move |tx: &mut dyn Tx| -> CoreResult<Vec<Row>> {
                let rows = tx.query(
                    "SELECT v.credential_id, v.version, c.org_id, v.kek_id, v.wrapped_key, v.ciphertext FROM credential_versions v \
                     JOIN credentials c ON c.id = v.credential_id \
                     WHERE v.kek_id IS NOT NULL AND v.kek_id <> $1 ORDER BY v.credential_id, v.version LIMIT $2",
                    &[p.as_str().into(), limit.into()],
                )?;
                rows.iter()
                    .map(|r| {
                        Ok(Row {
                            credential_id: r.text(0)?,
                            version: r.int(1)?,
                            org_id: r.text(2)?,
                            sealed: credvault_store::versions::sealed_at(r, 3)?
                                .ok_or_else(|| CoreError::Internal("a destroyed version in the re-wrap set".into()))?,
                        })
                    })
                    .collect()
            })
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Re-wrapping is CPU work: off the async threads.
        let rewrapped = tokio::task::spawn_blocking(move || -> CoreResult<Vec<(Row, Sealed)>> {
            rows.into_iter()
                .map(|r| {
                    let b = Binding {
                        org_id: &r.org_id,
                        credential_id: &r.credential_id,
                        version: r.version,
                    };
                    let new = keyring.rewrap(&b, &r.sealed)?;
                    Ok((r, new))
                })
                .collect()
        })
        .await
        .map_err(|e| CoreError::Internal(format!("rewrap task: {e}")))??;
        let n = rewrapped.len() as i64;
        self.inner
            .store
            .write(move |tx| {
                let mut done = 0i64;
                for (old, new) in &rewrapped {
                    // Only if nobody changed the row meanwhile (e.g. a purge).
                    done += credvault_store::versions::rewrap(
                        tx,
                        &old.credential_id,
                        old.version,
                        old.sealed.kek_id(),
                        new,
                    )? as i64;
                }
                audit_instance(
                    tx,
                    Action::KeysRewrap,
                    serde_json::json!({"rewrapped": done, "primary": primary}),
                )?;
                Ok::<_, CoreError>(())
            })
            .await?;
        Ok(n)
    }
}
