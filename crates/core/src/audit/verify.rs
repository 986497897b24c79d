//! Verification: of an exported journal file, of every chain in the store, of one organization (all its shards and the registry), of one chain.

use super::*;

/// Verifies exported events (e.g. a JSONL export), chain by chain in file order: each event's
/// hash must match its fields and link to the previous event of its chain. The first event of
/// each chain in the file must be the chain's genesis (a complete export) unless
/// `allow_partial_start` (then it anchors the check).
pub fn verify_exported(
    events: impl Iterator<Item = Result<Event, String>>,
    allow_partial_start: bool,
    trusted_keys: &[String],
) -> Verification {
    let mut prev: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let mut hashes: std::collections::HashMap<(String, i64), String> = std::collections::HashMap::new();
    let mut first: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut n = 0u64;
    let mut checkpoints = 0u64;
    let mut unverified = 0u64;
    let broken = |seq: i64, reason: String, n: u64| Verification {
        ok: false,
        events: n,
        first_broken: Some(BrokenLink {
            seq,
            reason,
            chain: None,
        }),
        checkpoints: 0,
        unverified_checkpoints: 0,
        chains: 0,
    };
    for item in events {
        let e = match item {
            Ok(e) => e,
            Err(line) => return broken(0, format!("unreadable line: {line}"), n),
        };
        n += 1;
        let Some(st) = e.to_stored() else {
            return broken(e.seq, "the event's fields cannot be read back".into(), n);
        };
        let expected_prev = match prev.get(&st.chain) {
            Some(p) => p.clone(),
            None if allow_partial_start => st.prev_hash.clone(),
            None => vec![0u8; 32],
        };
        if st.prev_hash != expected_prev {
            return broken(st.seq, "prev_hash does not match the previous event of its chain (an event was removed, inserted or reordered)".into(), n);
        }
        match st.recompute() {
            Ok(h) if h == st.hash => {}
            _ => {
                return broken(
                    st.seq,
                    "hash does not match the event's fields (the event was edited)".into(),
                    n,
                );
            }
        }
        if e.action == "audit.checkpoint" {
            let signed = e.details["checkpoint_seq"].as_i64().unwrap_or(0);
            let before_file = allow_partial_start && first.get(&st.chain).is_none_or(|f| signed < *f);
            if !before_file {
                let at = hashes.get(&(st.chain.clone(), signed)).map(String::as_str);
                let shards = match crate::checkpoint::check(&st.chain, &e.details, at, trusted_keys) {
                    Ok(shards) => shards,
                    Err(reason) => return broken(st.seq, reason, n),
                };
                // Every shard head it names must be in the file (unless the file starts
                // after it): a shard's events before the checkpoint cannot go missing.
                for (c, s, h) in &shards {
                    if allow_partial_start && first.get(c).is_none_or(|f| s < f) {
                        continue;
                    }
                    if hashes.get(&(c.clone(), *s)) != Some(h) {
                        return broken(
                            st.seq,
                            format!(
                                "the checkpoint names event {s} of chain {c}, which the file does not hold (events of that shard were removed)"
                            ),
                            n,
                        );
                    }
                }
                // A signature by the key the file itself carries proves nothing (a forger
                // re-signs with their own): only a trusted key makes a checkpoint verified.
                if trusted_keys.is_empty() {
                    unverified += 1;
                } else {
                    checkpoints += 1;
                }
            }
        }
        first.entry(st.chain.clone()).or_insert(st.seq);
        hashes.insert((st.chain.clone(), st.seq), hex::encode(&st.hash));
        prev.insert(st.chain.clone(), st.hash);
    }
    Verification {
        ok: true,
        events: n,
        first_broken: None,
        checkpoints,
        unverified_checkpoints: unverified,
        chains: prev.len() as u64,
    }
}

/// Verifies every organization's chains, and the instance chain, in the store (offline tool:
/// no authorization). One entry per organization (its shards together).
pub fn verify_all(tx: &mut dyn Tx) -> CoreResult<Vec<(String, Verification)>> {
    let orgs = tx.query("SELECT DISTINCT COALESCE(org, chain) FROM audit_heads ORDER BY 1", &[])?;
    let mut out = Vec::new();
    for o in orgs {
        let org = o.text(0)?;
        let v = verify_org(tx, &org)?;
        out.push((org, v));
    }
    Ok(out)
}

/// Verifies all of an organization's chains (or the instance chain): each shard link by link
/// against its head, and the set of heads against the shards its shard 0 recorded opening.
pub fn verify_org(tx: &mut dyn Tx, org: &str) -> CoreResult<Verification> {
    let mut total = verify_chain(tx, org)?;
    if !total.ok {
        return Ok(total);
    }
    let mut opened = std::collections::BTreeSet::new();
    for r in tx.query(
        "SELECT details FROM audit_events WHERE chain = $1 AND action = 'audit.shards_opened' ORDER BY seq",
        &[org.into()],
    )? {
        let d: serde_json::Value = serde_json::from_str(&r.text(0)?)?;
        for c in d["chains"].as_array().into_iter().flatten() {
            if let Some(c) = c.as_str() {
                opened.insert(c.to_owned());
            }
        }
    }
    let heads = tx.query(
        "SELECT chain FROM audit_heads WHERE org = $1 AND chain <> $1 ORDER BY chain",
        &[org.into()],
    )?;
    let broken = |total: &Verification, chain: &str, seq: i64, reason: String| Verification {
        ok: false,
        first_broken: Some(BrokenLink {
            seq,
            reason,
            chain: Some(chain.to_owned()),
        }),
        ..total.clone()
    };
    for h in heads {
        let chain = h.text(0)?;
        if !opened.remove(&chain) {
            return Ok(broken(
                &total,
                &chain,
                0,
                format!("the chain {chain} was never opened by its organization's first chain (a shard was added)"),
            ));
        }
        let v = verify_chain(tx, &chain)?;
        total.events += v.events;
        total.chains += 1;
        if !v.ok {
            let b = v.first_broken.unwrap_or(BrokenLink {
                seq: 0,
                reason: String::new(),
                chain: None,
            });
            return Ok(broken(&total, &chain, b.seq, b.reason));
        }
    }
    if let Some(gone) = opened.into_iter().next() {
        return Ok(broken(
            &total,
            &gone,
            0,
            format!("the chain {gone} was opened but its head is gone (a whole shard was removed)"),
        ));
    }
    Ok(total)
}

/// Result of verifying one chain.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Verification {
    /// Whether every link holds.
    pub ok: bool,
    /// How many events were checked.
    pub events: u64,
    /// The first broken link, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<BrokenLink>,
    /// Signed checkpoints whose signature (by a trusted public key) and signed head were
    /// verified (exported files).
    #[serde(default)]
    pub checkpoints: u64,
    /// Checkpoints whose signature matches only the key the file itself carries: consistent,
    /// but not verified (no trusted key was given).
    #[serde(default)]
    pub unverified_checkpoints: u64,
    /// How many chains (shards) were walked.
    #[serde(default)]
    pub chains: u64,
}

/// Where and why a chain breaks.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct BrokenLink {
    /// Sequence number of the first event that does not verify (or the head's; 0 when a
    /// whole chain is missing or unexpected).
    pub seq: i64,
    /// What is wrong.
    pub reason: String,
    /// The chain (shard) it is on, when an organization has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

/// Verifies one chain, reading it in pages inside the given transaction.
pub fn verify_chain(tx: &mut dyn Tx, chain: &str) -> CoreResult<Verification> {
    let mut prev = vec![0u8; 32];
    let mut last_seq = 0i64;
    let mut events = 0u64;
    let sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT 1000");
    let broken = |seq: i64, reason: &str, events: u64| Verification {
        checkpoints: 0,
        unverified_checkpoints: 0,
        chains: 1,
        ok: false,
        events,
        first_broken: Some(BrokenLink {
            seq,
            reason: reason.to_owned(),
            chain: None,
        }),
    };
    loop {
        let rows = tx.query(&sql, &[chain.into(), last_seq.into()])?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let e = StoredEvent::from_row(r)?;
            events += 1;
            if e.prev_hash != prev {
                return Ok(broken(
                    e.seq,
                    "prev_hash does not match the previous event (an event was removed, inserted or reordered)",
                    events,
                ));
            }
            if e.recompute()? != e.hash {
                return Ok(broken(
                    e.seq,
                    "hash does not match the event's fields (the event was edited)",
                    events,
                ));
            }
            prev = e.hash;
            last_seq = e.seq;
        }
    }
    if let Some(head) = tx.query_opt(
        "SELECT last_seq, hash FROM audit_heads WHERE chain = $1",
        &[chain.into()],
    )? && (head.int(0)? != last_seq || head.bytes(1)? != prev)
    {
        return Ok(broken(
            head.int(0)?,
            "the chain head does not match the last event (events were removed from the end)",
            events,
        ));
    }
    Ok(Verification {
        checkpoints: 0,
        unverified_checkpoints: 0,
        chains: 1,
        ok: true,
        events,
        first_broken: None,
    })
}
