//! Secret-bearing JSON values.
//!
//! [`SecretJson`] wraps the secret half of a credential's fields (see
//! [`crate::credential_types::validate`]). It cannot be printed (its `Debug` is redacted, it has
//! no `Display`) or serialized by accident (no `Serialize`); the only ways out are
//! [`SecretJson::expose`] and [`SecretJson::into_bytes`], both easy to grep for. When it is
//! dropped every string inside it is overwritten with zeros.
//!
//! Zeroization is best effort: it clears the buffers this value owns, not copies that other code
//! (a JSON parser's scratch buffer, a reallocated `Vec`) may have left behind.

use std::fmt;
use std::io;

use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

/// A JSON tree that holds secret values.
///
/// Its `Debug` prints `SecretJson([redacted])`; it has no `Display` and no `Serialize`; on drop
/// every string inside it is zeroized.
pub struct SecretJson(Value);

impl SecretJson {
    /// Wraps a JSON tree. From now on its strings are zeroized when the wrapper is dropped.
    pub fn new(v: Value) -> Self {
        Self(v)
    }

    /// Borrows the secret tree. Callers must not log or persist what they read in the clear.
    pub fn expose(&self) -> &Value {
        &self.0
    }

    /// Borrows the secret tree mutably (to add or remove fields in place).
    pub fn expose_mut(&mut self) -> &mut Value {
        &mut self.0
    }

    /// Takes the tree out, leaving `null`: the caller now owns the plaintext and must pass it
    /// on to something that zeroizes it.
    pub fn take(&mut self) -> Value {
        std::mem::take(&mut self.0)
    }

    /// Serializes the tree as compact JSON (as `serde_json::to_vec` would) into a buffer that is
    /// zeroized when dropped. The buffer is sized exactly up front so no partial copy is left
    /// behind by a reallocation.
    pub fn into_bytes(self) -> Zeroizing<Vec<u8>> {
        let mut counter = ByteCounter(0);
        let len = match serde_json::to_writer(&mut counter, &self.0) {
            Ok(()) => counter.0,
            Err(_) => 0,
        };
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        // Serializing a `Value` cannot fail (its keys are strings and writing to a Vec cannot
        // fail); should it ever, return an empty buffer rather than a truncated secret.
        if serde_json::to_writer(&mut *out, &self.0).is_err() {
            out.zeroize();
        }
        out
    }

    /// Parses JSON bytes (as produced by [`SecretJson::into_bytes`]).
    ///
    /// The error (serde_json's) names a line and column, never the content.
    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b).map(Self)
    }

    /// `true` for `null` or an empty object.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            _ => false,
        }
    }
}

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretJson([redacted])")
    }
}

impl Drop for SecretJson {
    fn drop(&mut self) {
        zeroize_json(&mut self.0);
    }
}

/// Walks a JSON tree and zeroizes every string in place (object keys are left alone). Used for
/// [`SecretJson`] and for request bodies that carried secrets.
pub fn zeroize_json(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        Value::Object(map) => map.values_mut().for_each(zeroize_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// An `io::Write` sink that only counts bytes (to size [`SecretJson::into_bytes`]'s buffer).
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn debug_output_is_redacted() {
        let s = SecretJson::new(json!({"password": "hunter2"}));
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("hunter2"));
        assert_eq!(format!("{s:?}"), "SecretJson([redacted])");
    }

    #[test]
    fn into_bytes_and_from_bytes_round_trip() {
        let v = json!({"password": "p\u{e9}\"w", "parts": [{"value": "a"}, {}], "n": 5});
        let expected = serde_json::to_vec(&v).unwrap();
        let bytes = SecretJson::new(v.clone()).into_bytes();
        assert_eq!(&*bytes, &expected);
        assert_eq!(bytes.capacity(), bytes.len());
        let back = SecretJson::from_bytes(&bytes).unwrap();
        assert_eq!(back.expose(), &v);
    }

    #[test]
    fn from_bytes_rejects_invalid_json() {
        assert!(SecretJson::from_bytes(b"{not json").is_err());
    }

    #[test]
    fn is_empty_is_true_only_for_null_and_the_empty_object() {
        assert!(SecretJson::new(Value::Null).is_empty());
        assert!(SecretJson::new(json!({})).is_empty());
        assert!(!SecretJson::new(json!({"a": "b"})).is_empty());
        assert!(!SecretJson::new(json!([])).is_empty());
    }

    #[test]
    fn zeroize_json_clears_every_string_in_the_tree() {
        let mut v = json!({
            "a": "secret",
            "b": ["x", {"c": "y", "d": 3, "e": true, "f": null}],
        });
        zeroize_json(&mut v);
        assert_eq!(v, json!({"a": "", "b": ["", {"c": "", "d": 3, "e": true, "f": null}]}));
    }
}
