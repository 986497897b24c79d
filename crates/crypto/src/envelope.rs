//! Envelope encryption primitives: binding encoding, framing, AES-256-GCM.
//!
//! Everything here is private to the crate except [`Binding`] and [`Sealed`];
//! the keyring decides which key encryption key is used.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, Key, KeyInit, Nonce};
use zeroize::{Zeroize, Zeroizing};

use crate::{CryptoError, fill_random};

/// Version byte at the start of every framed ciphertext and wrapped key.
pub(crate) const FRAME_VERSION: u8 = 0x01;
/// AES-GCM nonce length (96 bits).
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM authentication tag length.
pub(crate) const TAG_LEN: usize = 16;
/// AES-256 key length.
pub(crate) const KEY_LEN: usize = 32;
/// Version byte plus nonce.
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Exact length of a wrapped data key.
pub(crate) const WRAPPED_LEN: usize = HEADER_LEN + KEY_LEN + TAG_LEN;

const PAYLOAD_DOMAIN: &[u8] = b"credvault/payload/v1\0";
const DEK_DOMAIN: &[u8] = b"credvault/dek/v1\0";

/// What a ciphertext is bound to: moving it to another row or version makes it
/// fail to open.
///
/// The binding is authenticated as associated data, so a database attacker who
/// swaps ciphertexts between credentials, organisations or versions gets
/// [`CryptoError::Decrypt`] instead of someone else's secret.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// Organisation (tenant) that owns the credential.
    pub org_id: &'a str,
    /// Credential the secret belongs to.
    pub credential_id: &'a str,
    /// Version number of the credential's secret.
    pub version: i64,
}

/// Stored form of one credential version's secret. None of these bytes is
/// secret on its own.
///
/// Why three fields: `kek_id` says which keyring key can unwrap
/// `wrapped_key` (the per-secret data key), which in turn decrypts
/// `ciphertext`. Key rotation only rewrites `kek_id` and `wrapped_key`.
///
/// The fields are private: a `Sealed` comes from [`crate::Keyring::seal`] or
/// [`crate::Keyring::rewrap`], or from the store's bytes through [`Sealed::from_stored`], which
/// refuses anything not framed as this crate frames it. The store's secret columns accept only
/// this type (`credvault_store::versions`), so no other bytes reach them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the key encryption key that wrapped the data key (e.g. `"k2"`).
    pub(crate) kek_id: String,
    /// `0x01 || nonce(12) || AES-256-GCM(KEK, DEK)` (61 bytes).
    pub(crate) wrapped_key: Vec<u8>,
    /// `0x01 || nonce(12) || AES-256-GCM(DEK, plaintext) || tag`.
    pub(crate) ciphertext: Vec<u8>,
}

impl Sealed {
    /// A sealed secret read back from storage. Checks the framing (version byte, lengths, a
    /// key ID); whether it opens is [`crate::Keyring::open`]'s to say.
    pub fn from_stored(kek_id: String, wrapped_key: Vec<u8>, ciphertext: Vec<u8>) -> Result<Sealed, CryptoError> {
        if kek_id.is_empty() || kek_id.len() > 64 || !kek_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CryptoError::Malformed("sealed secret: key ID".to_owned()));
        }
        if wrapped_key.len() != WRAPPED_LEN || wrapped_key.first() != Some(&FRAME_VERSION) {
            return Err(CryptoError::Malformed("sealed secret: wrapped key framing".to_owned()));
        }
        if ciphertext.len() < HEADER_LEN + TAG_LEN || ciphertext.first() != Some(&FRAME_VERSION) {
            return Err(CryptoError::Malformed("sealed secret: ciphertext framing".to_owned()));
        }
        Ok(Sealed {
            kek_id,
            wrapped_key,
            ciphertext,
        })
    }

    /// The key encryption key's ID.
    pub fn kek_id(&self) -> &str {
        &self.kek_id
    }

    /// The wrapped data key (61 bytes).
    pub fn wrapped_key(&self) -> &[u8] {
        &self.wrapped_key
    }

    /// The framed ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

/// Appends `bytes` with a u32 big-endian length prefix, so that adjacent
/// fields cannot be shifted into each other (`("ab","c")` != `("a","bc")`).
fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), CryptoError> {
    let len = u32::try_from(bytes.len()).map_err(|_| CryptoError::Malformed("binding field too long".to_owned()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Canonical encoding of a binding: `lp(org_id) || lp(credential_id) || version_be`.
fn push_binding(out: &mut Vec<u8>, binding: &Binding<'_>) -> Result<(), CryptoError> {
    push_len_prefixed(out, binding.org_id.as_bytes())?;
    push_len_prefixed(out, binding.credential_id.as_bytes())?;
    out.extend_from_slice(&binding.version.to_be_bytes());
    Ok(())
}

/// Associated data for the payload encryption.
pub(crate) fn payload_aad(binding: &Binding<'_>) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(PAYLOAD_DOMAIN.len() + 16 + binding.org_id.len() + binding.credential_id.len());
    out.extend_from_slice(PAYLOAD_DOMAIN);
    push_binding(&mut out, binding)?;
    Ok(out)
}

/// Associated data for wrapping the data key under a key encryption key.
pub(crate) fn wrap_aad(binding: &Binding<'_>, kek_id: &str) -> Result<Vec<u8>, CryptoError> {
    let mut out =
        Vec::with_capacity(DEK_DOMAIN.len() + 20 + binding.org_id.len() + binding.credential_id.len() + kek_id.len());
    out.extend_from_slice(DEK_DOMAIN);
    push_binding(&mut out, binding)?;
    push_len_prefixed(&mut out, kek_id.as_bytes())?;
    Ok(out)
}

/// Builds the AES-256-GCM instance. The temporary key copy is wiped; the
/// cipher's own key schedule is not (the `aes-gcm` `zeroize` feature is not
/// enabled in this workspace).
fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    let mut key = Key::<Aes256Gcm>::from(*key);
    let cipher = Aes256Gcm::new(&key);
    key.as_mut_slice().zeroize();
    cipher
}

/// Encrypts `plaintext` under `key` with a fresh random nonce and returns
/// `0x01 || nonce || ct || tag`.
pub(crate) fn encrypt_framed(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    // Pre-size so the in-place encryption never reallocates (a reallocation
    // would leave an unzeroized copy of the plaintext behind).
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len().saturating_add(TAG_LEN)));
    buf.extend_from_slice(plaintext);
    cipher(key)
        .encrypt_in_place(&Nonce::<Aes256Gcm>::from(nonce), aad, &mut *buf)
        .map_err(|_| CryptoError::Encrypt)?;
    let mut out = Vec::with_capacity(HEADER_LEN + buf.len());
    out.push(FRAME_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Checks the framing of `framed` and decrypts it. `what` names the input in
/// error messages ("ciphertext", "wrapped key").
pub(crate) fn decrypt_framed(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    framed: &[u8],
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (&version, rest) = framed
        .split_first()
        .ok_or_else(|| CryptoError::Malformed(format!("{what} is empty")))?;
    if version != FRAME_VERSION {
        return Err(CryptoError::Malformed(format!(
            "{what} has unsupported version {version}"
        )));
    }
    let (nonce, body) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or_else(|| CryptoError::Malformed(format!("{what} is too short")))?;
    if body.len() < TAG_LEN {
        return Err(CryptoError::Malformed(format!("{what} is too short")));
    }
    let mut buf = Zeroizing::new(body.to_vec());
    cipher(key)
        .decrypt_in_place(&Nonce::<Aes256Gcm>::from(*nonce), aad, &mut *buf)
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(buf)
}

/// Wraps a data key under a key encryption key.
pub(crate) fn wrap_dek(
    kek: &[u8; KEY_LEN],
    binding: &Binding<'_>,
    kek_id: &str,
    dek: &[u8; KEY_LEN],
) -> Result<Vec<u8>, CryptoError> {
    encrypt_framed(kek, &wrap_aad(binding, kek_id)?, dek)
}

/// Unwraps a data key; the result is exactly [`KEY_LEN`] bytes.
pub(crate) fn unwrap_dek(
    kek: &[u8; KEY_LEN],
    binding: &Binding<'_>,
    kek_id: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    if wrapped.len() != WRAPPED_LEN {
        // Check the version byte first so an unknown format is reported as such.
        if let Some(&v) = wrapped.first()
            && v != FRAME_VERSION
        {
            return Err(CryptoError::Malformed(format!(
                "wrapped key has unsupported version {v}"
            )));
        }
        return Err(CryptoError::Malformed("wrapped key has wrong length".to_owned()));
    }
    let plain = decrypt_framed(kek, &wrap_aad(binding, kek_id)?, wrapped, "wrapped key")?;
    let mut dek = Zeroizing::new([0u8; KEY_LEN]);
    if plain.len() != KEY_LEN {
        return Err(CryptoError::Malformed("wrapped key has wrong length".to_owned()));
    }
    dek.copy_from_slice(&plain);
    Ok(dek)
}
