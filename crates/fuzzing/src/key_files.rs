//! `key_files`: the readers of key material and backups, on arbitrary bytes.
//!
//! Input: a `mode` byte, then per mode
//! * 0 — a key file (`keyring.json`): [`Keyring::from_bytes`], the parser `Keyring::load` uses;
//! * 1 — a KMS-wrapped key file (`keyring.kms.json`): [`credvault_cli::parse_kms_file`], what
//!   the server reads before it asks KMS to unwrap the blob;
//! * 2 — a patch to a freshly sealed secret: pairs of (offset, xor) bytes over
//!   `wrapped_key ‖ ciphertext`, a first byte whose bits cut either short or bind it to another
//!   version; then [`Keyring::open`] and [`Keyring::rewrap`];
//! * 3 — a sealed secret from raw bytes (`kek_id` length, `kek_id`, `wrapped_key` length,
//!   `wrapped_key`, `ciphertext`): [`Keyring::open`];
//! * 4 — a backup file: [`credvault_store::Store::import_from`] into an empty SQLite store.
//!
//! Promises checked: no panic, no hang; an accepted key file writes back to a file that reads
//! back to the same keys, seals and opens, derives, rotates to an unused key ID (and still
//! reads back), and retires the old keys; a sealed secret opens only when unmodified and bound
//! to where it was sealed; a refused backup leaves the store empty.

use std::sync::{Mutex, OnceLock};

use credvault_crypto::{Binding, Keyring, Sealed};
use credvault_store::{Store, StoreError, StoreOptions, Tx};

use crate::scratch::ScratchDir;

/// The entry point.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => key_file(rest),
        1 => {
            let _ = credvault_cli::parse_kms_file(&String::from_utf8_lossy(rest));
        }
        2 => patched(rest),
        3 => raw_sealed(rest),
        _ => backup(rest),
    }
}

const BINDING: Binding<'static> = Binding {
    org_id: "org_fuzz",
    credential_id: "cred_fuzz",
    version: 3,
};

fn key_file(data: &[u8]) {
    let Ok(mut k) = Keyring::from_bytes(data) else {
        return;
    };
    let ids = k.key_ids();
    assert!(k.contains(k.primary()), "the primary is not in the keyring");
    round_trip(&k);
    let sealed = match k.seal(&BINDING, b"fuzz secret") {
        Ok(s) => s,
        Err(e) => panic!("a keyring that loads cannot seal: {e}"),
    };
    assert_eq!(sealed.kek_id(), k.primary().as_str());
    assert!(k.open(&BINDING, &sealed).is_ok_and(|p| *p == *b"fuzz secret"));
    for id in &ids {
        assert!(k.derive_secret(id, "fuzz").is_ok(), "cannot derive from {id}");
    }
    // Rotation, as `credvault keys rotate` does it: a new primary, re-wrap, retire the rest.
    let old_primary = k.primary().clone();
    let new = k.add_key();
    assert!(!ids.contains(&new), "add_key reused the key ID {new}");
    assert_eq!(k.primary(), &new);
    let all = k.key_ids();
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "duplicate key IDs after add_key: {all:?}");
    round_trip(&k);
    let rewrapped = match k.rewrap(&BINDING, &sealed) {
        Ok(s) => s,
        Err(e) => panic!("cannot re-wrap under the new key: {e}"),
    };
    assert_eq!(rewrapped.kek_id(), new.as_str());
    assert!(k.retire(&new).is_err(), "retired the primary");
    for id in &ids {
        if let Err(e) = k.retire(id) {
            panic!("cannot retire {id} (primary was {old_primary}): {e}");
        }
    }
    assert!(k.open(&BINDING, &rewrapped).is_ok_and(|p| *p == *b"fuzz secret"));
    assert!(k.open(&BINDING, &sealed).is_err(), "opened under a retired key");
    round_trip(&k);
}

/// A keyring writes to a key file that reads back to the same keys.
fn round_trip(k: &Keyring) {
    let bytes = match k.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("cannot write the keyring: {e}"),
    };
    match Keyring::from_bytes(&bytes) {
        Ok(back) => {
            assert_eq!(back.key_ids(), k.key_ids(), "key IDs change through the key file");
            assert_eq!(back.primary(), k.primary(), "the primary changes through the key file");
        }
        Err(e) => panic!("the key file written does not read back: {e}"),
    }
}

/// A fixed keyring (inputs must replay): k1 and k2, k2 primary.
fn fixed_keyring() -> &'static Keyring {
    static K: OnceLock<Keyring> = OnceLock::new();
    K.get_or_init(|| {
        let json = br#"{"format":"credvault-keyring/1","primary":"k2","keys":[
            {"id":"k1","created_at":"2026-01-01T00:00:00Z","key":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},
            {"id":"k2","created_at":1767225600,"key":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="}]}"#;
        match Keyring::from_bytes(json) {
            Ok(k) => k,
            Err(e) => panic!("the fixed keyring does not load: {e}"),
        }
    })
}

fn patched(data: &[u8]) {
    let k = fixed_keyring();
    let Some((&how, pairs)) = data.split_first() else {
        return;
    };
    let sealed = match k.seal(&BINDING, b"patched secret") {
        Ok(s) => s,
        Err(e) => panic!("cannot seal: {e}"),
    };
    let mut bytes = [sealed.wrapped_key(), sealed.ciphertext()].concat();
    let split = sealed.wrapped_key().len();
    for p in pairs.chunks_exact(2) {
        let i = usize::from(p[0]) % bytes.len();
        bytes[i] ^= p[1];
    }
    let (mut wrapped, mut ciphertext) = (bytes[..split].to_vec(), bytes[split..].to_vec());
    if how & 1 != 0 {
        let cut = usize::from(how >> 4) + 1;
        if how & 2 != 0 {
            wrapped.truncate(wrapped.len().saturating_sub(cut));
        } else {
            ciphertext.truncate(ciphertext.len().saturating_sub(cut));
        }
    }
    let binding = if how & 4 != 0 {
        Binding {
            version: BINDING.version + 1,
            ..BINDING
        }
    } else {
        BINDING
    };
    let kek_id = if how & 8 != 0 {
        "k1".to_owned()
    } else {
        sealed.kek_id().to_owned()
    };
    // The data key's wrapping covers the key ID, the binding and the wrapped key; the payload
    // covers the binding and the ciphertext. Re-wrapping leaves the ciphertext alone.
    let wrap_changed = kek_id != sealed.kek_id() || wrapped != sealed.wrapped_key() || how & 4 != 0;
    let changed = wrap_changed || ciphertext != sealed.ciphertext();
    // Bytes that are not framed as sealed bytes are refused before any key is tried (what the
    // store does with a row it reads back); an intact one always passes.
    let s = match Sealed::from_stored(kek_id, wrapped, ciphertext) {
        Ok(s) => s,
        Err(_) => {
            assert!(changed, "intact sealed bytes refused as malformed");
            return;
        }
    };
    let opened = k.open(&binding, &s);
    if changed {
        assert!(opened.is_err(), "a modified sealed secret opened");
    } else {
        assert!(
            opened.is_ok_and(|p| *p == *b"patched secret"),
            "an intact sealed secret does not open"
        );
    }
    let rewrapped = k.rewrap(&binding, &s);
    if wrap_changed {
        assert!(
            rewrapped.is_err(),
            "a sealed secret with a modified wrapping re-wrapped"
        );
    } else {
        match rewrapped {
            Ok(r) => {
                assert_eq!(r.ciphertext(), s.ciphertext(), "re-wrapping changed the ciphertext");
                assert_eq!(k.open(&binding, &r).is_ok(), !changed, "re-wrapping changed what opens");
            }
            Err(e) => panic!("an intact wrapping does not re-wrap: {e}"),
        }
    }
}

fn raw_sealed(data: &[u8]) {
    let take = |d: &mut &[u8]| -> Vec<u8> {
        let Some((&n, rest)) = d.split_first() else {
            return Vec::new();
        };
        let n = usize::from(n).min(rest.len());
        let (a, b) = rest.split_at(n);
        *d = b;
        a.to_vec()
    };
    let mut d = data;
    let kek_id = String::from_utf8_lossy(&take(&mut d)).into_owned();
    let wrapped_key = take(&mut d);
    let Ok(s) = Sealed::from_stored(kek_id, wrapped_key, d.to_vec()) else {
        return;
    };
    assert!(
        fixed_keyring().open(&BINDING, &s).is_err(),
        "a forged sealed secret opened"
    );
}

/// One empty store per process (replaced after an import that succeeded) and a runtime.
struct Backups {
    rt: tokio::runtime::Runtime,
    store: Mutex<Option<(Store, ScratchDir)>>,
}

fn backups() -> &'static Backups {
    static B: OnceLock<Backups> = OnceLock::new();
    B.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => panic!("cannot start a runtime: {e}"),
        };
        Backups {
            rt,
            store: Mutex::new(None),
        }
    })
}

fn empty_store() -> (Store, ScratchDir) {
    let dir = ScratchDir::new();
    match Store::open(&dir.sqlite_url(), &StoreOptions::default()) {
        Ok(s) => (s, dir),
        Err(e) => panic!("cannot open a store in {}: {e}", dir.path().display()),
    }
}

fn backup(data: &[u8]) {
    let b = backups();
    let mut guard = b.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (store, _) = guard.get_or_insert_with(empty_store);
    let input: Box<dyn std::io::BufRead + Send> = Box::new(std::io::Cursor::new(data.to_vec()));
    let result = b.rt.block_on(store.import_from(input));
    match result {
        Ok((stats, _)) => {
            // Every row of the backup is one row of the store (`meta` and `audit_heads` rows
            // may also come from the empty store's migrations).
            for (table, n) in stats.tables {
                if table == "meta" || table == "audit_heads" {
                    continue;
                }
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let count = b.rt.block_on(store.read(move |tx: &mut dyn Tx| {
                    let c = tx.query_one(&sql, &[])?.int(0)?;
                    Ok::<_, StoreError>(c)
                }));
                assert_eq!(
                    count.ok(),
                    i64::try_from(n).ok(),
                    "restored {n} rows of {table}, the store holds another number"
                );
            }
            // The store holds data now: the next input gets a fresh one.
            if let Some((s, dir)) = guard.take() {
                s.close();
                drop(s);
                drop(dir);
            }
        }
        Err(_) => {
            let orgs = b.rt.block_on(store.read(|tx: &mut dyn Tx| {
                let n = tx.query_one("SELECT COUNT(*) FROM orgs", &[])?.int(0)?;
                Ok::<_, StoreError>(n)
            }));
            assert!(matches!(orgs, Ok(0)), "a refused backup left rows behind: {orgs:?}");
        }
    }
}
