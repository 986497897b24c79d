//! Signed audit checkpoints (optional): an `audit.checkpoint` event appended to a chain signs
//! the chain's head before it — (chain, sequence, hash) — with an Ed25519 key derived from the
//! keyring's primary key. An exported journal then proves, without the database, that its
//! events up to each checkpoint are the ones the server wrote: editing them breaks the hash
//! chain, and forging the chain anew needs the signing key. (Events after the last checkpoint
//! are only as good as the hash chain.)

use crate::actions::Action;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use serde_json::{Value as Json, json};

use credvault_crypto::{KeyId, Keyring};
use credvault_store::Tx;

use crate::audit::{self, ActorRef, Draft, INSTANCE_CHAIN, Outcome};
use crate::context::RequestCtx;
use crate::error::{CoreError, CoreResult};

const LABEL: &str = "audit checkpoint ed25519";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The heads of an organization's other shards a checkpoint of its own chain names:
/// (chain, sequence, hash hex).
pub type ShardHeads = Vec<(String, i64, String)>;

/// What a checkpoint signs: its chain's head, and (on an organization's own chain, when it has
/// shards) the heads of every other shard, so an export that lost a shard's tail — or a whole
/// shard — before the checkpoint does not verify.
pub fn message(chain: &str, seq: i64, hash_hex: &str, shards: &[(String, i64, String)]) -> String {
    if shards.is_empty() {
        return format!("credvault audit checkpoint v1\n{chain}\n{seq}\n{hash_hex}");
    }
    let mut m = format!("credvault audit checkpoint v2\n{chain}\n{seq}\n{hash_hex}");
    for (c, s, h) in shards {
        m.push_str(&format!("\n{c} {s} {h}"));
    }
    m
}

fn keypair(keyring: &Keyring, id: &KeyId) -> CoreResult<Ed25519KeyPair> {
    let seed = keyring
        .derive_secret(id, LABEL)
        .map_err(|e| CoreError::Internal(format!("checkpoint key: {e}")))?;
    Ed25519KeyPair::from_seed_unchecked(&seed[..])
        .map_err(|_| CoreError::Internal("checkpoint key: cannot build the Ed25519 key".into()))
}

/// The checkpoint public key of every key in the keyring: (key ID, base64 public key).
pub fn public_keys(keyring: &Keyring) -> CoreResult<Vec<(String, String)>> {
    keyring
        .key_ids()
        .into_iter()
        .map(|id| {
            let kp = keypair(keyring, &id)?;
            Ok((id.as_str().to_owned(), B64.encode(kp.public_key().as_ref())))
        })
        .collect()
}

/// Appends a signed checkpoint to every chain that has events after its last checkpoint; an
/// organization's own chain gets one whenever any of its shards did, naming every shard's head.
/// Returns how many were written.
pub fn write_all(tx: &mut dyn Tx, keyring: &Keyring) -> CoreResult<usize> {
    let id = keyring.primary().clone();
    let kp = keypair(keyring, &id)?;
    let public = B64.encode(kp.public_key().as_ref());
    // Shards first, each organization's own chain after them.
    let heads = tx.query(
        "SELECT h.chain, COALESCE(h.org, h.chain), h.last_seq, h.hash, e.action FROM audit_heads h \
         LEFT JOIN audit_events e ON e.seq = h.last_seq WHERE h.last_seq > 0 \
         ORDER BY COALESCE(h.org, h.chain), CASE WHEN h.chain = COALESCE(h.org, h.chain) THEN 1 ELSE 0 END, h.chain",
        &[],
    )?;
    let ctx = RequestCtx {
        request_id: String::new(),
        source_ip: None,
        user_agent: Some("credvault audit checkpoint".into()),
        received_at: 0,
    };
    let mut n = 0;
    let mut touched = std::collections::HashSet::new();
    for h in heads {
        let (chain, org) = (h.text(0)?, h.text(1)?);
        let fresh = h.opt_text(4)?.as_deref() != Some("audit.checkpoint");
        let own = chain == org;
        let shards_moved = own && touched.contains(&org);
        if !(fresh || shards_moved) {
            continue; // nothing new since the last one
        }
        let (seq, hash) = (h.int(2)?, hex::encode(h.bytes(3)?));
        let shards: ShardHeads = if own && chain != INSTANCE_CHAIN {
            tx.query(
                "SELECT chain, last_seq, hash FROM audit_heads WHERE org = $1 AND chain <> $1 AND last_seq > 0 ORDER BY chain",
                &[org.as_str().into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?, hex::encode(r.bytes(2)?))))
            .collect::<CoreResult<_>>()?
        } else {
            Vec::new()
        };
        let sig = kp.sign(message(&chain, seq, &hash, &shards).as_bytes());
        let mut details = json!({
            "checkpoint_seq": seq, "head_hash": hash, "key_id": id.as_str(),
            "public_key": public, "signature": B64.encode(sig.as_ref()),
        });
        if !shards.is_empty() {
            details["shards"] = json!(shards);
        }
        let d = Draft {
            action: Action::AuditCheckpoint,
            target_type: Some("audit_chain"),
            target_id: Some(chain.clone()),
            org_id: (chain != INSTANCE_CHAIN).then(|| org.clone()),
            workspace_id: None,
            outcome: Outcome::Success,
            details,
        };
        // Into the very chain it signs (an organization may have several shards).
        audit::append_to(tx, &ctx, &ActorRef::system(), &d, Some(&chain))?;
        touched.insert(org);
        n += 1;
    }
    Ok(n)
}

/// Checks one checkpoint event's signature, its public key against `trusted` (when any are
/// given), and the hash it signed against the event the file holds at that sequence. Returns
/// the other shards' heads it names, for the caller to find in the file.
pub fn check(chain: &str, details: &Json, hash_at: Option<&str>, trusted: &[String]) -> Result<ShardHeads, String> {
    let seq = details["checkpoint_seq"]
        .as_i64()
        .ok_or("the checkpoint has no checkpoint_seq")?;
    let hash = details["head_hash"].as_str().ok_or("the checkpoint has no head_hash")?;
    let public = details["public_key"]
        .as_str()
        .ok_or("the checkpoint has no public_key")?;
    if !trusted.is_empty() && !trusted.iter().any(|t| t == public) {
        return Err("the checkpoint is signed by a key that is not trusted".into());
    }
    let pk = B64
        .decode(public)
        .map_err(|_| "the checkpoint's public key is not base64")?;
    let sig = B64
        .decode(details["signature"].as_str().unwrap_or_default())
        .map_err(|_| "the checkpoint's signature is not base64")?;
    let mut shards = ShardHeads::new();
    for item in details["shards"].as_array().into_iter().flatten() {
        match (item[0].as_str(), item[1].as_i64(), item[2].as_str()) {
            (Some(c), Some(s), Some(h)) => shards.push((c.to_owned(), s, h.to_owned())),
            _ => return Err("the checkpoint's shard list is malformed".into()),
        }
    }
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(message(chain, seq, hash, &shards).as_bytes(), &sig)
        .map_err(|_| "the checkpoint's signature does not verify".to_owned())?;
    match hash_at {
        Some(h) if h == hash => Ok(shards),
        Some(_) => Err(format!("the event at seq {seq} is not the one the checkpoint signed")),
        None => Err(format!(
            "the event at seq {seq}, which the checkpoint signed, is missing"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn signed(keyring: &Keyring, chain: &str, seq: i64, hash: &str) -> Json {
        let id = keyring.primary().clone();
        let kp = keypair(keyring, &id).unwrap();
        let sig = kp.sign(message(chain, seq, hash, &[]).as_bytes());
        json!({"checkpoint_seq": seq, "head_hash": hash, "key_id": id.as_str(),
               "public_key": B64.encode(kp.public_key().as_ref()), "signature": B64.encode(sig.as_ref())})
    }

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_its_chain_and_the_head_it_signed() {
        let ring = Keyring::generate();
        let pk = public_keys(&ring).unwrap()[0].1.clone();
        let d = signed(&ring, "org_a", 7, "ab12");
        assert_eq!(check("org_a", &d, Some("ab12"), &[]), Ok(vec![]));
        assert_eq!(check("org_a", &d, Some("ab12"), std::slice::from_ref(&pk)), Ok(vec![]));
        // Another chain, another head, a missing head, an untrusted key, a forged signature.
        assert!(
            check("org_b", &d, Some("ab12"), &[])
                .unwrap_err()
                .contains("does not verify")
        );
        assert!(
            check("org_a", &d, Some("ab13"), &[])
                .unwrap_err()
                .contains("not the one")
        );
        assert!(check("org_a", &d, None, &[]).unwrap_err().contains("missing"));
        let other = public_keys(&Keyring::generate()).unwrap()[0].1.clone();
        assert!(
            check("org_a", &d, Some("ab12"), &[other])
                .unwrap_err()
                .contains("not trusted")
        );
        let mut forged = d.clone();
        forged["head_hash"] = json!("ffff");
        assert!(
            check("org_a", &forged, Some("ffff"), &[])
                .unwrap_err()
                .contains("does not verify")
        );
        // The key is derived, not stored: the same keyring gives the same key.
        assert_eq!(public_keys(&ring).unwrap()[0].1, pk);
    }
}
