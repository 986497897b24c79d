//! The single error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `credvault-crypto`.
///
/// Why one enum: callers (store, core, CLI) need to tell "the key file is
/// unsafe" from "this ciphertext does not authenticate" without string
/// matching. Messages are lowercase and never contain key material or
/// plaintext, so they are safe to log and to show to operators.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Reading or writing the keyring file (or its directory) failed.
    #[error("key file i/o error at {path}: {source}")]
    Io {
        /// The file or directory that was being accessed.
        path: PathBuf,
        /// The underlying operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// The keyring file can be read by group or other (`mode & 0o077 != 0`);
    /// we refuse to use keys that other local users may already have copied.
    #[error("key file {path} has insecure permissions {mode:o} (must not be accessible by group or other)")]
    InsecureKeyFile {
        /// The offending key file.
        path: PathBuf,
        /// The permission bits found on the file.
        mode: u32,
    },

    /// The keyring file is not a valid `credvault-keyring/1` document.
    /// `reason` describes the structural problem only, never key bytes.
    #[error("malformed key file {path}: {reason}")]
    MalformedKeyFile {
        /// The offending key file.
        path: PathBuf,
        /// What is wrong with it (never contains secret material).
        reason: String,
    },

    /// A key encryption key id is not present in the keyring (for example the
    /// key was retired before all data wrapped under it was rewrapped).
    #[error("unknown key id {0}")]
    UnknownKey(String),

    /// Authentication failed: the wrong key, the wrong binding, or tampered
    /// data. Deliberately one opaque variant so that callers (and attackers)
    /// cannot learn which of these it was.
    #[error("decryption failed: wrong key, wrong binding, or tampered data")]
    Decrypt,

    /// Encryption failed (the only cause with AES-GCM is an input larger than
    /// the algorithm's limit of about 64 GiB).
    #[error("encryption failed: input too large")]
    Encrypt,

    /// The stored bytes do not have the expected framing (too short, unknown
    /// version byte, wrong length), or an input is too large to encode.
    #[error("malformed ciphertext: {0}")]
    Malformed(String),

    /// A key cannot be retired because it is still in use: it is the primary
    /// key that new data is sealed under.
    #[error("key {0} is still in use (primary) and cannot be retired")]
    RetiredKeyInUse(String),
}
