//! API token generation and hashing, plus small constant-time helpers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::fill_random;

/// Prefix of every token, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "cvt_";

/// Creates a new API token: 256 random bits rendered as
/// `"cvt_" + base64url-nopad(32 bytes)`.
///
/// Returns `(token, sha256(token))`. Only the hash should be stored; the token
/// itself is shown to the user once and lives in a zeroizing buffer.
pub fn generate_token() -> (Zeroizing<String>, [u8; 32]) {
    let mut raw = Zeroizing::new([0u8; 32]);
    fill_random(&mut raw[..]);
    let mut token = Zeroizing::new(String::with_capacity(TOKEN_PREFIX.len() + 43));
    token.push_str(TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&raw[..], &mut token);
    let hash = hash_token(&token);
    (token, hash)
}

/// SHA-256 of the token's bytes, for storing and looking up tokens without
/// keeping them. A plain hash suffices because tokens carry 256 random bits
/// (no password-style stretching needed).
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality of two byte strings (lengths are not hidden), for
/// comparing hashes and MACs without a timing side channel.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}
