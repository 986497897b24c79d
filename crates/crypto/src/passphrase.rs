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
