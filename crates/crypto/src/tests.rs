#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::*;

const B: Binding<'static> = Binding {
    org_id: "org-1",
    credential_id: "cred-1",
    version: 3,
};
const SECRET: &[u8] = b"hunter2 is my password";

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let name: String = random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("credvault-crypto-test-{name}"));
        fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn write_key_file(p: &Path, json: &str) {
    fs::write(p, json).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

fn b64key(byte: u8, len: usize) -> String {
    STANDARD.encode(vec![byte; len])
}

fn is_auth_or_framing_error(r: &Result<impl Sized, CryptoError>) -> bool {
    matches!(r, Err(CryptoError::Decrypt | CryptoError::Malformed(_)))
}

#[test]
fn a_sealed_secret_opens_to_the_same_plaintext() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    assert_eq!(sealed.kek_id, "k1");
    assert_eq!(sealed.wrapped_key.len(), 61);
    assert_eq!(sealed.ciphertext.len(), 1 + 12 + SECRET.len() + 16);
    assert_eq!(sealed.ciphertext[0], 1);
    assert_eq!(kr.open(&B, &sealed).unwrap().as_slice(), SECRET);
}

#[test]
fn an_empty_plaintext_round_trips() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, b"").unwrap();
    assert!(kr.open(&B, &sealed).unwrap().is_empty());
}

#[test]
fn sealing_twice_gives_different_bytes() {
    let kr = Keyring::generate();
    let a = kr.seal(&B, SECRET).unwrap();
    let b = kr.seal(&B, SECRET).unwrap();
    assert_ne!(a.ciphertext, b.ciphertext);
    assert_ne!(a.wrapped_key, b.wrapped_key);
}

#[test]
fn a_different_keyring_cannot_open() {
    let sealed = Keyring::generate().seal(&B, SECRET).unwrap();
    let other = Keyring::generate();
    assert!(matches!(other.open(&B, &sealed), Err(CryptoError::Decrypt)));
}

#[test]
fn a_ciphertext_moved_to_another_credential_does_not_open() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    let moved = Binding {
        credential_id: "cred-2",
        ..B
    };
    assert!(matches!(kr.open(&moved, &sealed), Err(CryptoError::Decrypt)));
}

#[test]
fn a_ciphertext_moved_to_another_version_does_not_open() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    let moved = Binding { version: 4, ..B };
    assert!(matches!(kr.open(&moved, &sealed), Err(CryptoError::Decrypt)));
}

#[test]
fn a_ciphertext_moved_to_another_org_does_not_open() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    let moved = Binding { org_id: "org-2", ..B };
    assert!(matches!(kr.open(&moved, &sealed), Err(CryptoError::Decrypt)));
}

#[test]
fn bindings_that_concatenate_equally_are_still_distinct() {
    let kr = Keyring::generate();
    let a = Binding {
        org_id: "ab",
        credential_id: "c",
        version: 1,
    };
    let b = Binding {
        org_id: "a",
        credential_id: "bc",
        version: 1,
    };
    let sealed = kr.seal(&a, SECRET).unwrap();
    assert!(matches!(kr.open(&b, &sealed), Err(CryptoError::Decrypt)));
}

#[test]
fn a_flipped_bit_anywhere_in_the_ciphertext_fails() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    for i in 0..sealed.ciphertext.len() {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 1 << bit;
            let r = kr.open(&B, &bad);
            if i == 0 {
                assert!(matches!(r, Err(CryptoError::Malformed(_))), "byte {i}");
            } else {
                assert!(matches!(r, Err(CryptoError::Decrypt)), "byte {i} bit {bit}");
            }
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_in_the_wrapped_key_fails() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    for i in 0..sealed.wrapped_key.len() {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad.wrapped_key[i] ^= 1 << bit;
            let r = kr.open(&B, &bad);
            if i == 0 {
                assert!(matches!(r, Err(CryptoError::Malformed(_))), "byte {i}");
            } else {
                assert!(matches!(r, Err(CryptoError::Decrypt)), "byte {i} bit {bit}");
            }
        }
    }
}

#[test]
fn truncated_inputs_fail_cleanly_and_never_panic() {
    let kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    for len in 0..sealed.ciphertext.len() {
        let mut bad = sealed.clone();
        bad.ciphertext.truncate(len);
        assert!(is_auth_or_framing_error(&kr.open(&B, &bad)), "ciphertext len {len}");
    }
    for len in 0..sealed.wrapped_key.len() {
        let mut bad = sealed.clone();
        bad.wrapped_key.truncate(len);
        assert!(is_auth_or_framing_error(&kr.open(&B, &bad)), "wrapped len {len}");
        assert!(is_auth_or_framing_error(&kr.rewrap(&B, &bad)), "rewrap len {len}");
    }
    let mut longer = sealed.clone();
    longer.wrapped_key.push(0);
    assert!(matches!(kr.open(&B, &longer), Err(CryptoError::Malformed(_))));
}

#[test]
fn an_unknown_version_byte_is_malformed() {
    let kr = Keyring::generate();
    let mut sealed = kr.seal(&B, SECRET).unwrap();
    sealed.ciphertext[0] = 2;
    assert!(matches!(kr.open(&B, &sealed), Err(CryptoError::Malformed(_))));
}

#[test]
fn a_keyring_with_old_and_new_keys_opens_data_sealed_under_both() {
    let mut kr = Keyring::generate();
    let old = kr.seal(&B, b"old").unwrap();
    let new_id = kr.add_key();
    assert_eq!(new_id.as_str(), "k2");
    assert_eq!(kr.primary(), &new_id);
    let new = kr.seal(&B, b"new").unwrap();
    assert_eq!(old.kek_id, "k1");
    assert_eq!(new.kek_id, "k2");
    assert_eq!(kr.open(&B, &old).unwrap().as_slice(), b"old");
    assert_eq!(kr.open(&B, &new).unwrap().as_slice(), b"new");
}

#[test]
fn rewrap_moves_to_the_primary_and_leaves_the_ciphertext_identical() {
    let mut kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    kr.add_key();
    let rewrapped = kr.rewrap(&B, &sealed).unwrap();
    assert_eq!(rewrapped.kek_id, "k2");
    assert_eq!(rewrapped.ciphertext, sealed.ciphertext);
    assert_ne!(rewrapped.wrapped_key, sealed.wrapped_key);
    assert_eq!(kr.open(&B, &rewrapped).unwrap().as_slice(), SECRET);
}

#[test]
fn rewrap_with_the_wrong_binding_fails() {
    let mut kr = Keyring::generate();
    let sealed = kr.seal(&B, SECRET).unwrap();
    kr.add_key();
    let other = Binding { version: 9, ..B };
    assert!(matches!(kr.rewrap(&other, &sealed), Err(CryptoError::Decrypt)));
}

#[test]
fn after_retiring_the_old_key_data_not_rewrapped_fails_with_unknown_key() {
    let mut kr = Keyring::generate();
    let stale = kr.seal(&B, b"stale").unwrap();
    let moved = kr.seal(&B, b"moved").unwrap();
    kr.add_key();
    let moved = kr.rewrap(&B, &moved).unwrap();
    kr.retire(&KeyId::new("k1")).unwrap();
    assert_eq!(kr.key_ids(), vec![KeyId::new("k2")]);
    match kr.open(&B, &stale) {
        Err(CryptoError::UnknownKey(id)) => assert_eq!(id, "k1"),
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    assert_eq!(kr.open(&B, &moved).unwrap().as_slice(), b"moved");
}

#[test]
fn the_primary_key_cannot_be_retired() {
    let mut kr = Keyring::generate();
    assert!(matches!(
        kr.retire(&KeyId::new("k1")),
        Err(CryptoError::RetiredKeyInUse(_))
    ));
    assert!(matches!(kr.retire(&KeyId::new("k7")), Err(CryptoError::UnknownKey(_))));
}

#[test]
fn key_ids_are_never_reused_after_retirement() {
    let mut kr = Keyring::generate();
    kr.add_key();
    kr.add_key();
    kr.retire(&KeyId::new("k2")).unwrap();
    assert_eq!(kr.add_key().as_str(), "k4");
    assert_eq!(
        kr.key_ids().iter().map(KeyId::as_str).collect::<Vec<_>>(),
        ["k1", "k3", "k4"]
    );
}

#[test]
fn a_sealed_value_with_a_renamed_kek_id_does_not_open() {
    let mut kr = Keyring::generate();
    kr.add_key();
    let mut sealed = kr.seal(&B, SECRET).unwrap();
    sealed.kek_id = "k1".to_owned();
    assert!(matches!(kr.open(&B, &sealed), Err(CryptoError::Decrypt)));
}

#[test]
fn a_saved_keyring_loads_back_and_opens_the_same_data() {
    let dir = TempDir::new();
    let path = dir.path("keyring.json");
    let mut kr = Keyring::generate();
    let old = kr.seal(&B, b"old").unwrap();
    kr.add_key();
    let new = kr.seal(&B, b"new").unwrap();
    kr.save(&path).unwrap();

    let loaded = Keyring::load(&path).unwrap();
    assert_eq!(loaded.primary().as_str(), "k2");
    assert_eq!(loaded.key_ids(), kr.key_ids());
    assert_eq!(loaded.open(&B, &old).unwrap().as_slice(), b"old");
    assert_eq!(loaded.open(&B, &new).unwrap().as_slice(), b"new");

    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["format"], "credvault-keyring/1");
    assert_eq!(json["primary"], "k2");
    assert!(json["keys"][0]["created_at"].as_str().unwrap().ends_with('Z'));

    // Saving over an existing file replaces it and leaves no temp files behind.
    let mut loaded = loaded;
    loaded.add_key();
    loaded.save(&path).unwrap();
    assert_eq!(Keyring::load(&path).unwrap().primary().as_str(), "k3");
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn save_creates_the_file_with_mode_0600() {
    let dir = TempDir::new();
    let path = dir.path("keyring.json");
    Keyring::generate().save(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn load_refuses_a_0644_file() {
    let dir = TempDir::new();
    let path = dir.path("keyring.json");
    Keyring::generate().save(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    match Keyring::load(&path) {
        Err(CryptoError::InsecureKeyFile { mode, .. }) => assert_eq!(mode, 0o644),
        other => panic!("expected InsecureKeyFile, got {other:?}"),
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(Keyring::load(&path), Err(CryptoError::InsecureKeyFile { .. })));
}

#[test]
fn load_of_a_missing_file_is_an_io_error() {
    let dir = TempDir::new();
    assert!(matches!(
        Keyring::load(&dir.path("nope.json")),
        Err(CryptoError::Io { .. })
    ));
}

#[test]
fn load_accepts_unix_seconds_and_rejects_bad_key_files() {
    let dir = TempDir::new();
    let path = dir.path("k.json");
    let good = format!(
        r#"{{"format":"credvault-keyring/1","primary":"k2","keys":[
            {{"id":"k1","created_at":1700000000,"key":"{}"}},
            {{"id":"k2","created_at":"2024-01-02T03:04:05Z","key":"{}"}}]}}"#,
        b64key(1, 32),
        b64key(2, 32)
    );
    write_key_file(&path, &good);
    let kr = Keyring::load(&path).unwrap();
    assert_eq!(kr.primary().as_str(), "k2");

    let short_key = b64key(3, 16);
    let long_key = b64key(4, 33);
    let cases = [
        (
            "short key",
            format!(r#"{{"format":"credvault-keyring/1","primary":"k1","keys":[{{"id":"k1","created_at":"1","key":"{short_key}"}}]}}"#),
        ),
        (
            "long key",
            format!(r#"{{"format":"credvault-keyring/1","primary":"k1","keys":[{{"id":"k1","created_at":"1","key":"{long_key}"}}]}}"#),
        ),
        (
            "duplicate id",
            format!(r#"{{"format":"credvault-keyring/1","primary":"k1","keys":[{{"id":"k1","created_at":"1","key":"{a}"}},{{"id":"k1","created_at":"1","key":"{a}"}}]}}"#, a = b64key(5, 32)),
        ),
        (
            "missing primary",
            format!(r#"{{"format":"credvault-keyring/1","primary":"k9","keys":[{{"id":"k1","created_at":"1","key":"{}"}}]}}"#, b64key(6, 32)),
        ),
        (
            "wrong format",
            format!(r#"{{"format":"credvault-keyring/2","primary":"k1","keys":[{{"id":"k1","created_at":"1","key":"{}"}}]}}"#, b64key(7, 32)),
        ),
        (
            "bad base64",
            r#"{"format":"credvault-keyring/1","primary":"k1","keys":[{"id":"k1","created_at":"1","key":"!!!notbase64!!!"}]}"#.to_owned(),
        ),
        ("not json", "{".to_owned()),
        (
            "key in wrong place",
            format!(r#"{{"format":"credvault-keyring/1","primary":"k1","keys":["{}"]}}"#, b64key(8, 32)),
        ),
    ];
    for (what, json) in cases {
        write_key_file(&path, &json);
        match Keyring::load(&path) {
            Err(e @ CryptoError::MalformedKeyFile { .. }) => {
                // Error messages never echo key material.
                let msg = e.to_string();
                for byte in 1..=8 {
                    for len in [16, 32, 33] {
                        assert!(!msg.contains(&b64key(byte, len)), "{what}: {msg}");
                    }
                }
                assert!(!msg.contains("notbase64"), "{what}: {msg}");
            }
            other => panic!("{what}: expected MalformedKeyFile, got {other:?}"),
        }
    }
}

#[test]
fn the_debug_output_of_a_keyring_shows_ids_but_no_key_material() {
    let dir = TempDir::new();
    let path = dir.path("keyring.json");
    let mut kr = Keyring::generate();
    kr.add_key();
    kr.save(&path).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let debug = format!("{kr:?}");
    assert_eq!(debug, r#"Keyring { keys: ["k1", "k2"], primary: "k2" }"#);
    let alt = format!("{kr:#?}");
    for k in json["keys"].as_array().unwrap() {
        let b64 = k["key"].as_str().unwrap();
        assert_eq!(b64.len(), 44);
        assert!(!debug.contains(b64) && !alt.contains(b64));
    }
}

#[test]
fn generate_token_returns_distinct_well_formed_tokens_whose_hash_matches() {
    let (t1, h1) = generate_token();
    let (t2, h2) = generate_token();
    assert_ne!(*t1, *t2);
    assert_ne!(h1, h2);
    for (t, h) in [(&t1, h1), (&t2, h2)] {
        let body = t.strip_prefix("cvt_").unwrap();
        assert_eq!(body.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_eq!(hash_token(t), h);
    }
    // Known SHA-256 vector.
    assert_eq!(hash_token("abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
}

#[test]
fn ct_eq_compares_contents_and_lengths() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(ct_eq(b"", b""));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
}

#[test]
fn random_bytes_are_not_constant() {
    let a = random_bytes::<32>();
    let b = random_bytes::<32>();
    assert_ne!(a, b);
    assert_ne!(a, [0u8; 32]);
}

#[test]
fn key_ids_display_as_their_string() {
    let id = KeyId::from("k12");
    assert_eq!(id.to_string(), "k12");
    assert_eq!(id.as_str(), "k12");
    assert_eq!(id.sequence(), Some(12));
    assert_eq!(KeyId::new("x1").sequence(), None);
}

#[test]
fn rfc3339_formatting_matches_known_dates() {
    use crate::keyfile::rfc3339_utc;
    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
}

#[test]
fn error_messages_are_lowercase() {
    let errs = [
        CryptoError::Decrypt,
        CryptoError::Encrypt,
        CryptoError::UnknownKey("k1".into()),
        CryptoError::Malformed("x".into()),
        CryptoError::RetiredKeyInUse("k1".into()),
    ];
    for e in errs {
        let m = e.to_string();
        assert!(m.starts_with(|c: char| c.is_ascii_lowercase()), "{m}");
    }
}
