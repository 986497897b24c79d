//! `audit_verify`: [`credvault_core::audit::verify_exported`] over arbitrary JSONL, read as
//! `credvault audit verify --file` reads it.
//!
//! Input: a flags byte, then the lines. Flags: `1` — `allow_partial_start`; `2` — *seal*: before
//! verifying, give every readable event the `prev_hash` and `hash` the server would have given
//! it (so the fuzzer gets past the hash check into the chain and checkpoint logic); `4` — also
//! sign every `audit.checkpoint` event with the fuzzing key over the head it names; `8` — pass
//! the fuzzing key as the trusted key.
//!
//! Promises checked: no panic; the verdict is consistent (`ok` ⇔ no broken link; counts within
//! the number of lines; no verified checkpoint without a trusted key) and the same on a second
//! run; and a sealed file of readable events with valid timestamps and (if any) properly signed
//! checkpoints verifies.

use std::collections::HashMap;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use credvault_core::audit::{Event, verify_exported};
use credvault_core::checkpoint;
use credvault_domain::time::parse_rfc3339;

/// The entry point.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let partial = flags & 1 != 0;
    let text = String::from_utf8_lossy(rest);
    let mut items: Vec<Result<Event, String>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|_| l.chars().take(80).collect::<String>()))
        .collect();
    let mut expect_ok = false;
    if flags & 2 != 0 {
        expect_ok = seal(&mut items, partial, flags & 4 != 0);
    }
    let trusted = if flags & 8 != 0 { vec![public_key()] } else { Vec::new() };
    let v = verify_exported(items.clone().into_iter(), partial, &trusted);
    let n = items.len() as u64;
    assert!(v.events <= n, "verified {} events of {n}", v.events);
    assert_eq!(v.ok, v.first_broken.is_none(), "ok and first_broken disagree: {v:?}");
    if v.ok {
        assert_eq!(v.events, n, "ok after {} of {n} events", v.events);
        assert!(items.iter().all(Result::is_ok), "ok with an unreadable line");
    }
    assert!(v.checkpoints + v.unverified_checkpoints <= v.events);
    if trusted.is_empty() {
        assert_eq!(
            v.checkpoints, 0,
            "a checkpoint counted as verified without a trusted key"
        );
    } else {
        assert_eq!(v.unverified_checkpoints, 0);
    }
    if expect_ok {
        assert!(v.ok, "a sealed journal does not verify: {v:?}");
    }
    let again = verify_exported(items.into_iter(), partial, &trusted);
    assert_eq!(
        serde_json::to_value(&again).ok(),
        serde_json::to_value(&v).ok(),
        "verification is not deterministic"
    );
}

/// The fuzzing checkpoint key (a fixed seed: inputs must replay).
fn key_pair() -> Ed25519KeyPair {
    match Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]) {
        Ok(k) => k,
        Err(e) => panic!("cannot build the fuzzing key: {e}"),
    }
}

fn public_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(key_pair().public_key().as_ref())
}

/// The hash the server gives an event: SHA-256 over the previous hash and the event's fields as
/// compact JSON in a fixed order (`Canonical` in crates/core/src/audit.rs; the replay test
/// `sealing_reproduces_the_servers_hashes` checks this copy against the server's hashes).
pub fn event_hash(prev: &[u8], e: &Event, at: i64) -> Option<Vec<u8>> {
    let chain = e.chain_name();
    let details = serde_json::to_string(&e.details).ok()?;
    let canonical = format!(
        "{{\"seq\":{},\"chain\":{},\"at\":{},\"org_id\":{},\"workspace_id\":{},\"actor_id\":{},\"actor_kind\":{},\
         \"action\":{},\"target_type\":{},\"target_id\":{},\"outcome\":{},\"source_ip\":{},\"user_agent\":{},\
         \"request_id\":{},\"details\":{}}}",
        e.seq,
        j(&chain.as_str()),
        at,
        j(&e.org_id.as_deref()),
        j(&e.workspace_id.as_deref()),
        j(&e.actor_id.as_deref()),
        j(&e.actor_kind.as_str()),
        j(&e.action.as_str()),
        j(&e.target_type.as_deref()),
        j(&e.target_id.as_deref()),
        j(&e.outcome.as_str()),
        j(&e.source_ip.as_deref()),
        j(&e.user_agent.as_deref()),
        j(&e.request_id.as_deref()),
        j(&details.as_str()),
    );
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical.as_bytes());
    Some(h.finalize().to_vec())
}

/// A value as compact JSON, as serde's derived serializer writes it.
fn j<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Gives every readable event the links the server would have written (and, with `sign`,
/// signs checkpoint events over the head they name). Returns whether the sealed file must
/// verify.
fn seal(items: &mut [Result<Event, String>], partial: bool, sign: bool) -> bool {
    let key = key_pair();
    let public = public_key();
    let mut must_verify = true;
    let mut prev: HashMap<String, Vec<u8>> = HashMap::new();
    let mut hashes: HashMap<(String, i64), String> = HashMap::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for item in items.iter_mut() {
        let Ok(e) = item else {
            must_verify = false;
            continue;
        };
        let chain = e.chain_name();
        let Some(at) = parse_rfc3339(&e.at) else {
            must_verify = false;
            continue;
        };
        if e.action == "audit.checkpoint" {
            let signed = sign && sign_checkpoint(e, &chain, &key, &public, &hashes, &last_seq);
            must_verify &= signed;
        }
        let p = match prev.get(&chain) {
            Some(p) => p.clone(),
            None if partial => hex::decode(&e.prev_hash).unwrap_or_else(|_| vec![0u8; 32]),
            None => vec![0u8; 32],
        };
        let Some(h) = event_hash(&p, e, at) else {
            must_verify = false;
            continue;
        };
        e.prev_hash = hex::encode(&p);
        e.hash = hex::encode(&h);
        hashes.insert((chain.clone(), e.seq), e.hash.clone());
        last_seq.insert(chain.clone(), e.seq);
        prev.insert(chain, h);
    }
    must_verify
}

/// Makes a checkpoint event sign (chain, seq, head) for a head earlier in the file: the one its
/// `checkpoint_seq` names when that is in the file, else the chain's previous event. Returns
/// false when there is nothing to sign (no earlier event, details not an object).
fn sign_checkpoint(
    e: &mut Event,
    chain: &str,
    key: &Ed25519KeyPair,
    public: &str,
    hashes: &HashMap<(String, i64), String>,
    last_seq: &HashMap<String, i64>,
) -> bool {
    let Value::Object(d) = &mut e.details else {
        return false;
    };
    let named = d
        .get("checkpoint_seq")
        .and_then(Value::as_i64)
        .filter(|s| hashes.contains_key(&(chain.to_owned(), *s)));
    let Some(seq) = named.or_else(|| last_seq.get(chain).copied()) else {
        return false;
    };
    let Some(head) = hashes.get(&(chain.to_owned(), seq)) else {
        return false;
    };
    let sig = key.sign(checkpoint::message(chain, seq, head, &[]).as_bytes());
    d.insert("checkpoint_seq".into(), seq.into());
    d.insert("head_hash".into(), head.clone().into());
    d.insert("public_key".into(), public.into());
    d.insert(
        "signature".into(),
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref()).into(),
    );
    true
}
