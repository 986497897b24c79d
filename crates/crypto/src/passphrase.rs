//! Passphrase encryption for material that must leave the machine, e.g. a key file inside a
//! backup: Argon2id (64 MiB, 3 passes) derives a 256-bit key from the passphrase and a random
//! salt; AES-256-GCM seals the bytes. Layout: `"cvpp1" || salt(16) || framed ciphertext`.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::envelope::{decrypt_framed, encrypt_framed};

const MAGIC: &[u8] = b"cvpp1";
const SALT_LEN: usize = 16;
const AAD: &[u8] = b"credvault/passphrase/v1";

fn derive(passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let params = Params::new(64 * 1024, 3, 1, Some(32)).map_err(|_| CryptoError::Encrypt)?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut *key)
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(key)
}

/// Encrypts `plaintext` under a passphrase (at least 12 bytes).
pub fn seal_with_passphrase(passphrase: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if passphrase.len() < 12 {
        return Err(CryptoError::Malformed(
            "the passphrase must be at least 12 bytes".into(),
        ));
    }
    let mut salt = [0u8; SALT_LEN];
    crate::fill_random(&mut salt);
    let key = derive(passphrase, &salt)?;
    let framed = encrypt_framed(&key, AAD, plaintext)?;
    let mut out = Vec::with_capacity(MAGIC.len() + SALT_LEN + framed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&framed);
    Ok(out)
}

/// Decrypts what [`seal_with_passphrase`] produced. A wrong passphrase is `Decrypt`.
pub fn open_with_passphrase(passphrase: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let rest = sealed
        .strip_prefix(MAGIC)
        .ok_or_else(|| CryptoError::Malformed("not passphrase-encrypted data".into()))?;
    if rest.len() < SALT_LEN {
        return Err(CryptoError::Malformed("passphrase-encrypted data is too short".into()));
    }
    let (salt, framed) = rest.split_at(SALT_LEN);
    let key = derive(passphrase, salt)?;
    decrypt_framed(&key, AAD, framed, "passphrase-encrypted data")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_right_passphrase_opens_and_a_wrong_one_does_not() {
        let sealed = seal_with_passphrase(b"correct horse battery", b"key file bytes").unwrap();
        assert_eq!(
            &*open_with_passphrase(b"correct horse battery", &sealed).unwrap(),
            b"key file bytes"
        );
        assert!(matches!(
            open_with_passphrase(b"wrong horse battery!", &sealed),
            Err(CryptoError::Decrypt)
        ));
        assert!(seal_with_passphrase(b"short", b"x").is_err());
        assert!(open_with_passphrase(b"correct horse battery", b"garbage").is_err());
    }
}

/// Argon2id memory (KiB) for people's sign-in passwords: 19 MiB, 2 passes, 1 lane (OWASP's
/// recommended minimum; about 20–40 ms here, so a guessing attack pays that per try).
pub const PASSWORD_M_KIB: u32 = 19 * 1024;
/// Argon2id passes for sign-in passwords.
pub const PASSWORD_T: u32 = 2;
/// Argon2id lanes for sign-in passwords.
pub const PASSWORD_P: u32 = 1;
use PASSWORD_M_KIB as PW_M_KIB;
use PASSWORD_P as PW_P;
use PASSWORD_T as PW_T;

fn password_digest(password: &[u8], salt: &[u8], m: u32, t: u32, p: u32) -> Result<[u8; 32], CryptoError> {
    let params = Params::new(m, t, p, Some(32)).map_err(|_| CryptoError::Encrypt)?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut out)
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(out)
}

/// Hashes a sign-in password with Argon2id and a random salt. The result names its
/// parameters, so they can be raised later without breaking stored hashes:
/// `argon2id$v=19$m=19456,t=2,p=1$<salt hex>$<hash hex>`.
pub fn hash_password(password: &[u8]) -> Result<String, CryptoError> {
    let salt: [u8; 16] = crate::random_bytes();
    let digest = password_digest(password, &salt, PW_M_KIB, PW_T, PW_P)?;
    Ok(format!(
        "argon2id$v=19$m={PW_M_KIB},t={PW_T},p={PW_P}${}${}",
        hex_lower(&salt),
        hex_lower(&digest)
    ))
}

/// Checks a password against a [`hash_password`] string in constant time. A malformed
/// stored string never matches.
pub fn verify_password(password: &[u8], stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [alg, ver, params, salt, digest] = parts.as_slice() else {
        return false;
    };
    if *alg != "argon2id" || *ver != "v=19" {
        return false;
    }
    let mut m = 0;
    let mut t = 0;
    let mut p = 0;
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("m", v)) => m = v.parse().unwrap_or(0),
            Some(("t", v)) => t = v.parse().unwrap_or(0),
            Some(("p", v)) => p = v.parse().unwrap_or(0),
            _ => return false,
        }
    }
    let (Some(salt), Some(want)) = (hex_decode(salt), hex_decode(digest)) else {
        return false;
    };
    // Refuse absurd parameters a tampered row could carry (memory exhaustion).
    if !(8..=1024 * 1024).contains(&m) || !(1..=16).contains(&t) || !(1..=8).contains(&p) {
        return false;
    }
    match password_digest(password, &salt, m, t, p) {
        Ok(got) => crate::ct_eq(&got, &want),
        Err(_) => false,
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod password_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_password_verifies_and_a_wrong_one_does_not() {
        let h = hash_password(b"correct horse battery").unwrap();
        assert!(h.starts_with("argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(b"correct horse battery", &h));
        assert!(!verify_password(b"correct horse batterz", &h));
        assert_ne!(h, hash_password(b"correct horse battery").unwrap(), "salted");
        assert!(!verify_password(b"x", "argon2id$v=19$m=999999999,t=2,p=1$00$00"));
        assert!(!verify_password(b"x", "garbage"));
    }
}
