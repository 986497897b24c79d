//! The keyring: named key encryption keys, one of which is primary.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::envelope::{self, Binding, KEY_LEN, Sealed};
use crate::{CryptoError, fill_random, keyfile};

/// Identifier of one key encryption key, e.g. `"k1"`, `"k2"`.
///
/// Ids are stored next to every ciphertext (in [`Sealed::kek_id`]) so the
/// right key can be found after rotation. They are not secret, so `Debug` and
/// `Display` show them freely. New ids are allocated monotonically
/// (`k<n+1>`) so an id is never handed out twice by one keyring.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Wraps an id string, e.g. one typed by an operator (`retire k1`) or read
    /// from a [`Sealed::kek_id`]. No validation: unknown ids are reported by
    /// the keyring operations as [`CryptoError::UnknownKey`].
    pub fn new(id: impl Into<String>) -> KeyId {
        KeyId(id.into())
    }

    /// The id as a string, for storing alongside ciphertexts.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The numeric part of a `k<n>` id, used to allocate the next id.
    pub(crate) fn sequence(&self) -> Option<u64> {
        let digits = self.0.strip_prefix('k')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for KeyId {
    fn from(id: &str) -> KeyId {
        KeyId(id.to_owned())
    }
}

impl From<String> for KeyId {
    fn from(id: String) -> KeyId {
        KeyId(id)
    }
}

/// One key encryption key with its metadata.
#[derive(Clone)]
pub(crate) struct KeyEntry {
    pub(crate) id: KeyId,
    pub(crate) created_at: keyfile::CreatedAt,
    pub(crate) key: Zeroizing<[u8; KEY_LEN]>,
}

/// The set of key encryption keys (KEKs, AES-256) used to wrap per-secret data
/// keys, with one designated primary key for new data.
///
/// Why a keyring rather than one key: rotation. New data is sealed under the
/// primary; older keys stay available to open existing data until it has been
/// [rewrapped](Keyring::rewrap), after which they can be
/// [retired](Keyring::retire). Keys live in zeroizing buffers and are never
/// printed: `Debug` shows ids only.
#[derive(Clone)]
pub struct Keyring {
    pub(crate) keys: Vec<KeyEntry>,
    pub(crate) primary: KeyId,
    /// Highest `k<n>` sequence number ever seen by this keyring, so that a
    /// retired id is not reused within its lifetime.
    pub(crate) max_seq: u64,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring")
            .field("keys", &ids)
            .field("primary", &self.primary.as_str())
            .finish()
    }
}

fn fresh_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    fill_random(&mut key[..]);
    key
}

impl Keyring {
    /// Creates a keyring with one fresh random primary key `"k1"`, for
    /// initialising a new installation.
    pub fn generate() -> Keyring {
        let id = KeyId::new("k1");
        Keyring {
            keys: vec![KeyEntry {
                id: id.clone(),
                created_at: keyfile::CreatedAt::now(),
                key: fresh_key(),
            }],
            primary: id,
            max_seq: 1,
        }
    }

    /// Loads a keyring file (`credvault-keyring/1` JSON).
    ///
    /// Refuses files accessible by group or other
    /// ([`CryptoError::InsecureKeyFile`]), keys that are not exactly 32
    /// bytes, duplicate ids, and a primary that is not among the keys
    /// ([`CryptoError::MalformedKeyFile`]).
    /// Serializes the keyring as key file JSON (for wrapping by an external key service).
    /// The buffer holds key material and is zeroized on drop.
    pub fn to_bytes(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
        crate::keyfile::to_bytes(self)
    }

    /// Parses key file JSON from memory (after unwrapping it with an external key service).
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring, CryptoError> {
        crate::keyfile::from_bytes(bytes)
    }

    pub fn load(path: &Path) -> Result<Keyring, CryptoError> {
        keyfile::load(path)
    }

    /// Writes the keyring to `path` atomically with mode 0600: a temporary
    /// file in the same directory is written and fsynced, renamed over
    /// `path`, and the directory is fsynced, so a crash never leaves a
    /// half-written keyring (which would make all data unreadable).
    pub fn save(&self, path: &Path) -> Result<(), CryptoError> {
        keyfile::save(self, path)
    }

    /// Adds a new random key and makes it primary (key rotation step 1).
    /// Returns its id, which is one higher than any id this keyring has seen.
    pub fn add_key(&mut self) -> KeyId {
        let seq = self.max_seq.saturating_add(1);
        let mut id = KeyId(format!("k{seq}"));
        // Paranoia for ids that do not follow the k<n> pattern. Past `k18446744073709551615`
        // (u64::MAX, which a key file may name) the number cannot grow: a suffix does, so the
        // search ends (it looped forever; fuzz/corpus/key_files/regress-add-key-hang-at-u64-max).
        let mut n = seq;
        let mut suffix = 0u32;
        while self.find(id.as_str()).is_some() {
            if n < u64::MAX {
                n += 1;
                id = KeyId(format!("k{n}"));
            } else {
                suffix += 1;
                id = KeyId(format!("k{n}.{suffix}"));
            }
        }
        self.max_seq = n;
        self.keys.push(KeyEntry {
            id: id.clone(),
            created_at: keyfile::CreatedAt::now(),
            key: fresh_key(),
        });
        self.primary = id.clone();
        id
    }

    /// The key new data is sealed under.
    pub fn primary(&self) -> &KeyId {
        &self.primary
    }

    /// All key ids, in keyring order (oldest first for generated keyrings),
    /// e.g. to find data still wrapped under a non-primary key.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Whether the keyring holds a key with this id.
    pub fn contains(&self, id: &KeyId) -> bool {
        self.find(id.as_str()).is_some()
    }

    /// Removes a non-primary key (key rotation final step, after all data has
    /// been rewrapped). Data still wrapped under it will fail with
    /// [`CryptoError::UnknownKey`].
    ///
    /// Errors: [`CryptoError::RetiredKeyInUse`] if `id` is the primary,
    /// [`CryptoError::UnknownKey`] if it is not in the keyring.
    pub fn retire(&mut self, id: &KeyId) -> Result<(), CryptoError> {
        if *id == self.primary {
            return Err(CryptoError::RetiredKeyInUse(id.0.clone()));
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.id != *id);
        if self.keys.len() == before {
            return Err(CryptoError::UnknownKey(id.0.clone()));
        }
        Ok(())
    }

    /// A 32-byte secret derived from key `id` for one purpose (`label`), e.g. the seed of the
    /// audit checkpoint signing key: SHA-256 over a domain-separated label and the key.
    pub fn derive_secret(&self, id: &KeyId, label: &str) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        use sha2::Digest;
        let kek = self
            .find(id.as_str())
            .ok_or_else(|| CryptoError::UnknownKey(id.0.clone()))?;
        let mut h = sha2::Sha256::new();
        h.update(b"credvault-derive-v1\0");
        h.update(label.as_bytes());
        h.update(b"\0");
        h.update(&kek.key[..]);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&h.finalize());
        Ok(out)
    }

    pub(crate) fn find(&self, id: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }

    fn primary_entry(&self) -> Result<&KeyEntry, CryptoError> {
        self.find(self.primary.as_str())
            .ok_or_else(|| CryptoError::UnknownKey(self.primary.0.clone()))
    }

    /// Encrypts `plaintext` bound to `binding` under a fresh data key, which
    /// is wrapped with the primary key. See the crate docs for the format.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let kek = self.primary_entry()?;
        let dek = fresh_key();
        let ciphertext = envelope::encrypt_framed(&dek, &envelope::payload_aad(binding)?, plaintext)?;
        let wrapped_key = envelope::wrap_dek(&kek.key, binding, kek.id.as_str(), &dek)?;
        Ok(Sealed {
            kek_id: kek.id.0.clone(),
            wrapped_key,
            ciphertext,
        })
    }

    /// Decrypts `sealed`, which must have been sealed with the same `binding`.
    ///
    /// Errors: [`CryptoError::UnknownKey`] if its key is not in the keyring,
    /// [`CryptoError::Malformed`] for bad framing, [`CryptoError::Decrypt`]
    /// for any authentication failure. Never panics on malformed input.
    pub fn open(&self, binding: &Binding<'_>, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let dek = self.unwrap(binding, sealed)?;
        envelope::decrypt_framed(&dek, &envelope::payload_aad(binding)?, &sealed.ciphertext, "ciphertext")
    }

    /// Re-wraps the data key of `sealed` under the current primary key
    /// (key rotation step 2). The ciphertext bytes are left untouched, so
    /// rotation never re-encrypts or exposes the secret itself. Always
    /// produces a fresh wrap, even if `sealed` is already under the primary;
    /// this also verifies that `sealed` belongs to `binding`.
    pub fn rewrap(&self, binding: &Binding<'_>, sealed: &Sealed) -> Result<Sealed, CryptoError> {
        let dek = self.unwrap(binding, sealed)?;
        let kek = self.primary_entry()?;
        let wrapped_key = envelope::wrap_dek(&kek.key, binding, kek.id.as_str(), &dek)?;
        Ok(Sealed {
            kek_id: kek.id.0.clone(),
            wrapped_key,
            ciphertext: sealed.ciphertext.clone(),
        })
    }

    fn unwrap(&self, binding: &Binding<'_>, sealed: &Sealed) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        let kek = self
            .find(&sealed.kek_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.kek_id.clone()))?;
        envelope::unwrap_dek(&kek.key, binding, &sealed.kek_id, &sealed.wrapped_key)
    }
}
