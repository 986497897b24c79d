//! Signed audit checkpoints (optional): an `audit.checkpoint` event appended to a chain signs
//! the chain's head before it — (chain, sequence, hash) — with an Ed25519 key derived from the
//! keyring's primary key. An exported journal then proves, without the database, that its
//! events up to each checkpoint are the ones the server wrote: editing them breaks the hash
//! chain, and forging the chain anew needs the signing key. (Events after the last checkpoint
//! are only as good as the hash chain.)

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

/// What a checkpoint signs.
pub fn message(chain: &str, seq: i64, hash_hex: &str) -> String {
    format!("credvault audit checkpoint v1\n{chain}\n{seq}\n{hash_hex}")
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

/// Appends a signed checkpoint to every chain that has events after its last checkpoint.
/// Returns how many were written.
pub fn write_all(tx: &mut dyn Tx, keyring: &Keyring) -> CoreResult<usize> {
    let id = keyring.primary().clone();
    let kp = keypair(keyring, &id)?;
    let public = B64.encode(kp.public_key().as_ref());
    let heads = tx.query(
        "SELECT h.chain, h.last_seq, h.hash, e.action FROM audit_heads h \
         LEFT JOIN audit_events e ON e.seq = h.last_seq WHERE h.last_seq > 0 ORDER BY h.chain",
        &[],
    )?;
    let ctx = RequestCtx {
        request_id: String::new(),
        source_ip: None,
        user_agent: Some("credvault audit checkpoint".into()),
    };
    let mut n = 0;
    for h in heads {
        if h.opt_text(3)?.as_deref() == Some("audit.checkpoint") {
            continue; // nothing new since the last one
        }
        let (chain, seq, hash) = (h.text(0)?, h.int(1)?, hex::encode(h.bytes(2)?));
        let sig = kp.sign(message(&chain, seq, &hash).as_bytes());
        let d = Draft {
            action: "audit.checkpoint",
            target_type: Some("audit_chain"),
            target_id: Some(chain.clone()),
            org_id: (chain != INSTANCE_CHAIN).then(|| chain.clone()),
            workspace_id: None,
            outcome: Outcome::Success,
            details: json!({
                "checkpoint_seq": seq, "head_hash": hash, "key_id": id.as_str(),
                "public_key": public, "signature": B64.encode(sig.as_ref()),
            }),
        };
        audit::append(tx, &ctx, &ActorRef::system(), &d)?;
        n += 1;
    }
    Ok(n)
}

/// Checks one checkpoint event's signature, its public key against `trusted` (when any are
/// given), and the hash it signed against the event the file holds at that sequence.
pub fn check(chain: &str, details: &Json, hash_at: Option<&str>, trusted: &[String]) -> Result<(), String> {
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
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(message(chain, seq, hash).as_bytes(), &sig)
        .map_err(|_| "the checkpoint's signature does not verify".to_owned())?;
    match hash_at {
        Some(h) if h == hash => Ok(()),
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
        let sig = kp.sign(message(chain, seq, hash).as_bytes());
        json!({"checkpoint_seq": seq, "head_hash": hash, "key_id": id.as_str(),
               "public_key": B64.encode(kp.public_key().as_ref()), "signature": B64.encode(sig.as_ref())})
    }

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_its_chain_and_the_head_it_signed() {
        let ring = Keyring::generate();
        let pk = public_keys(&ring).unwrap()[0].1.clone();
        let d = signed(&ring, "org_a", 7, "ab12");
        assert_eq!(check("org_a", &d, Some("ab12"), &[]), Ok(()));
        assert_eq!(check("org_a", &d, Some("ab12"), std::slice::from_ref(&pk)), Ok(()));
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
