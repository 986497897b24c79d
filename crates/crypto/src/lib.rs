//! Cryptography for credvault: the keyring of key encryption keys, envelope
//! encryption of credential secrets bound to where they are stored, zeroizing
//! secret buffers, and API token generation/hashing.
//!
//! This crate must not know about SQL, HTTP, async runtimes, configuration or
//! the domain model beyond the three values a ciphertext is bound to. Its only
//! IO is reading and writing the keyring file.
//!
//! # Envelope scheme
//!
//! Every [`Keyring::seal`] call:
//!
//! 1. generates a fresh random 32-byte data key (DEK, kept in a zeroizing
//!    buffer) and a fresh random 96-bit nonce;
//! 2. encrypts the plaintext with AES-256-GCM under the DEK with associated
//!    data `aad = b"credvault/payload/v1\0" || B`, giving
//!    `ciphertext = 0x01 || nonce(12) || ct || tag(16)`;
//! 3. wraps the DEK with the primary key encryption key (KEK) named `kek_id`:
//!    `wrapped_key = 0x01 || nonce(12) || AES-256-GCM(KEK, nonce, DEK, aad_wrap)`
//!    with `aad_wrap = b"credvault/dek/v1\0" || B || lp(kek_id)` (61 bytes).
//!
//! `B` is the canonical encoding of the [`Binding`]:
//! `lp(org_id) || lp(credential_id) || version as i64 big-endian`, where
//! `lp(x)` is `x`'s length as u32 big-endian followed by `x`, so no two
//! different bindings encode the same (`("ab","c")` != `("a","bc")`).
//!
//! [`Keyring::open`] looks up `kek_id` ([`CryptoError::UnknownKey`] if
//! absent), unwraps the DEK and opens the payload. Any authentication failure
//! (wrong key, wrong binding, tampering) is the single opaque
//! [`CryptoError::Decrypt`]; bad framing (short input, unknown version byte)
//! is [`CryptoError::Malformed`]. Malformed input never panics.
//!
//! Key rotation: [`Keyring::add_key`] makes a new primary,
//! [`Keyring::rewrap`] moves each stored secret's DEK to it without touching
//! the ciphertext, and [`Keyring::retire`] drops the old key.
//!
//! # Key file
//!
//! JSON, mode 0600, written atomically:
//! `{"format":"credvault-keyring/1","primary":"k2","keys":[{"id":"k1","created_at":"<rfc3339 or unix secs>","key":"<base64>"}]}`.
//!
//! Unix only (file permissions are part of the security model).

mod envelope;
mod error;
mod keyfile;
mod keyring;
mod passphrase;
mod token;

#[cfg(test)]
mod tests;

pub use envelope::{Binding, Sealed};
pub use error::CryptoError;
pub use keyring::{KeyId, Keyring};
pub use passphrase::{
    PASSWORD_M_KIB, PASSWORD_P, PASSWORD_T, hash_password, open_with_passphrase, seal_with_passphrase, verify_password,
};

/// Atomically writes a private (mode 0600) file: for wrapped key files and similar.
pub fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), CryptoError> {
    keyfile::write_private(path, bytes)
}
pub use token::{TOKEN_PREFIX, ct_eq, generate_token, hash_token};

/// Fills `buf` from the operating system's CSPRNG, aborting on failure.
///
/// There is no safe fallback for randomness: continuing with weak or zeroed
/// keys, nonces or tokens would silently destroy every guarantee this crate
/// gives, so the process is aborted instead of panicking (a panic could be
/// caught and the zero bytes used anyway).
pub(crate) fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        std::process::abort();
    }
}

/// `N` bytes from the operating system's CSPRNG, for ids, nonces and salts.
///
/// Never fails: if the OS cannot provide randomness the process is aborted via
/// [`std::process::abort`], because there is no safe fallback. Continuing with
/// weak or zeroed bytes would silently break every key, nonce and token, and a
/// panic could be caught and the bad bytes used anyway.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    fill_random(&mut buf);
    buf
}
