//! Validation of submitted `fields` against a variant, the public/secret split, and [`merge`].

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::checks::{self, MAX_STRING_BYTES, quote_suffix};
use super::{Check, CredentialType, FieldError, FieldKind, FieldSchema, ValidatedFields, resolve_variant, schema};
use crate::secret::{SecretJson, zeroize_json};

/// Maximum number of entries in a [`FieldKind::StringMap`].
const MAX_MAP_ENTRIES: usize = 64;

/// Validates `fields` for a type and variant and splits them into public and secret parts.
///
/// `fields` may be an object or `null` (= `{}`). Null for an optional field means absent; it is
/// left out of both outputs. Every problem found is reported (not just the first). Whatever the
/// outcome, the strings of the input that did not end up in the result are zeroized.
pub fn validate(
    ty: CredentialType,
    variant: Option<&str>,
    mut fields: Value,
) -> Result<ValidatedFields, Vec<FieldError>> {
    let vs = match resolve_variant(ty, variant) {
        Ok(vs) => vs,
        Err(e) => {
            zeroize_json(&mut fields);
            return Err(vec![e]);
        }
    };
    let mut walk = Walk::default();
    let mut out = Split::default();
    match &mut fields {
        Value::Object(obj) => walk.object(vs.fields, obj, "fields", "", false, &mut out),
        Value::Null => walk.object(vs.fields, &mut Map::new(), "fields", "", false, &mut out),
        other => walk.wrong_type("fields", "an object", other),
    }
    zeroize_json(&mut fields);
    let mut secret = Value::Object(out.secret);
    if !walk.errors.is_empty() {
        zeroize_json(&mut secret);
        return Err(walk.errors);
    }
    Ok(ValidatedFields {
        variant: (schema(ty).variants.len() > 1).then(|| vs.name.to_owned()),
        public: Value::Object(out.public),
        secret: SecretJson::new(secret),
        secret_fields_set: walk.secret_paths,
    })
}

/// Validates a plain object that holds no secrets (a connection's `config`) against `fields`,
/// with the same rules as credential fields; errors are reported under `root` (e.g.
/// `config.port`). Returns the object with only the known, non-null members.
pub fn validate_plain(fields: &'static [FieldSchema], mut value: Value, root: &str) -> Result<Value, Vec<FieldError>> {
    let mut walk = Walk::default();
    let mut out = Split::default();
    match &mut value {
        Value::Object(obj) => walk.object(fields, obj, root, "", false, &mut out),
        Value::Null => walk.object(fields, &mut Map::new(), root, "", false, &mut out),
        other => walk.wrong_type(root, "an object", other),
    }
    if !walk.errors.is_empty() {
        return Err(walk.errors);
    }
    Ok(Value::Object(out.public))
}

/// Re-assembles public and secret parts into the full field object: objects are merged key by
/// key (recursively), arrays element by element; elsewhere a non-null secret value wins.
pub fn merge(public: &Value, secret: &Value) -> Value {
    match (public, secret) {
        (Value::Object(p), Value::Object(s)) => {
            let mut out = p.clone();
            for (k, sv) in s {
                let merged = match p.get(k) {
                    Some(pv) => merge(pv, sv),
                    None => sv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(p), Value::Array(s)) => Value::Array(
            (0..p.len().max(s.len()))
                .map(|i| match (p.get(i), s.get(i)) {
                    (Some(a), Some(b)) => merge(a, b),
                    (Some(a), None) => a.clone(),
                    (None, Some(b)) => b.clone(),
                    (None, None) => Value::Null,
                })
                .collect(),
        ),
        (p, Value::Null) => p.clone(),
        (_, s) => s.clone(),
    }
}

/// The two halves being built for one object.
#[derive(Default)]
struct Split {
    public: Map<String, Value>,
    secret: Map<String, Value>,
}

/// Errors and secret paths collected over the whole walk.
#[derive(Default)]
struct Walk {
    errors: Vec<FieldError>,
    secret_paths: Vec<String>,
}

impl Walk {
    fn err(&mut self, field: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, code, message));
    }

    fn wrong_type(&mut self, field: &str, expected: &str, got: &Value) {
        self.err(
            field,
            "wrong_type",
            format!("must be {expected}, got {}", type_name(got)),
        );
    }

    /// Validates the members of `obj` (emptied on return) against `fields`. `err_prefix` is the
    /// path from the request root (`fields.ssh_tunnel`), `rel_prefix` the path relative to
    /// `fields` (`ssh_tunnel`, empty at the top).
    fn object(
        &mut self,
        fields: &'static [FieldSchema],
        obj: &mut Map<String, Value>,
        err_prefix: &str,
        rel_prefix: &str,
        all_secret: bool,
        out: &mut Split,
    ) {
        // api_key parts: the name rule depends on the sibling `in`.
        let query_param = obj.get("in").and_then(Value::as_str) == Some("query");
        for f in fields {
            let err_path = format!("{err_prefix}.{}", f.name);
            let rel_path = if rel_prefix.is_empty() {
                f.name.to_owned()
            } else {
                format!("{rel_prefix}.{}", f.name)
            };
            match obj.remove(f.name) {
                None | Some(Value::Null) => {
                    if f.required {
                        self.err(err_path, "required", "is required");
                    }
                }
                Some(v) => self.field(f, v, &err_path, &rel_path, all_secret || f.secret, query_param, out),
            }
        }
        let leftovers = std::mem::take(obj);
        if !leftovers.is_empty() {
            let allowed = fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
            for (k, mut v) in leftovers {
                zeroize_json(&mut v);
                self.err(
                    format!("{err_prefix}.{}", display_key(&k)),
                    "unknown_field",
                    format!("is not a field here; allowed: {allowed}"),
                );
            }
        }
    }

    /// Validates one present, non-null value and moves it into the right half (or zeroizes it).
    #[allow(clippy::too_many_arguments)]
    fn field(
        &mut self,
        f: &'static FieldSchema,
        v: Value,
        err_path: &str,
        rel_path: &str,
        secret: bool,
        query_param: bool,
        out: &mut Split,
    ) {
        match (f.kind, v) {
            (FieldKind::Object(sub), Value::Object(mut m)) => {
                let mut inner = Split::default();
                self.object(sub, &mut m, err_path, rel_path, secret, &mut inner);
                out.public.insert(f.name.to_owned(), Value::Object(inner.public));
                if !inner.secret.is_empty() {
                    out.secret.insert(f.name.to_owned(), Value::Object(inner.secret));
                }
            }
            (FieldKind::List(sub), Value::Array(items)) => {
                if !self.count(f, items.len(), err_path) {
                    zeroize_json(&mut Value::Array(items));
                    return;
                }
                let mut publics = Vec::with_capacity(items.len());
                let mut secrets = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let item_err = format!("{err_path}[{i}]");
                    let item_rel = format!("{rel_path}[{i}]");
                    let mut inner = Split::default();
                    match item {
                        Value::Object(mut m) => {
                            self.object(sub, &mut m, &item_err, &item_rel, secret, &mut inner);
                        }
                        mut other => {
                            self.wrong_type(&item_err, "an object", &other);
                            zeroize_json(&mut other);
                        }
                    }
                    publics.push(Value::Object(inner.public));
                    secrets.push(Value::Object(inner.secret));
                }
                out.public.insert(f.name.to_owned(), Value::Array(publics));
                let mut secrets = Value::Array(secrets);
                if secrets
                    .as_array()
                    .is_some_and(|a| a.iter().any(|s| s.as_object().is_some_and(|m| !m.is_empty())))
                {
                    out.secret.insert(f.name.to_owned(), secrets);
                } else {
                    zeroize_json(&mut secrets);
                }
            }
            (FieldKind::Object(_), mut other) => {
                self.wrong_type(err_path, "an object", &other);
                zeroize_json(&mut other);
            }
            (FieldKind::List(_), mut other) => {
                self.wrong_type(err_path, "an array of objects", &other);
                zeroize_json(&mut other);
            }
            (_, mut leaf) => {
                let before = self.errors.len();
                self.leaf(f, &leaf, err_path, secret, query_param);
                if self.errors.len() != before {
                    zeroize_json(&mut leaf);
                } else if secret {
                    out.secret.insert(f.name.to_owned(), leaf);
                    self.secret_paths.push(rel_path.to_owned());
                } else {
                    out.public.insert(f.name.to_owned(), leaf);
                }
            }
        }
    }

    /// Checks a leaf value (every kind but `Object` and `List`); reports problems into `self`.
    fn leaf(&mut self, f: &FieldSchema, v: &Value, path: &str, secret: bool, query_param: bool) {
        match (f.kind, v) {
            (FieldKind::String | FieldKind::Timestamp | FieldKind::Enum(_), Value::String(s)) => {
                self.string(f, s, path, secret, query_param);
            }
            (FieldKind::String | FieldKind::Timestamp | FieldKind::Enum(_), other) => {
                self.wrong_type(path, "a string", other);
            }
            (FieldKind::Integer, Value::Number(n)) => match n.as_i64() {
                Some(i) if f.check == Check::Port && !(1..=65535).contains(&i) => {
                    let got = if secret { String::new() } else { format!(" (got {i})") };
                    self.err(
                        path,
                        "invalid_format",
                        format!("must be a port number between 1 and 65535{got}"),
                    );
                }
                Some(_) => {}
                None => self.wrong_type(path, "an integer", v),
            },
            (FieldKind::Integer, other) => self.wrong_type(path, "an integer", other),
            (FieldKind::Boolean, Value::Bool(_)) => {}
            (FieldKind::Boolean, other) => self.wrong_type(path, "true or false", other),
            (FieldKind::StringList, Value::Array(items)) => {
                if self.count(f, items.len(), path) {
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{path}[{i}]");
                        match item {
                            Value::String(s) => {
                                self.plain_string(s, &item_path, MAX_STRING_BYTES);
                            }
                            other => self.wrong_type(&item_path, "a string", other),
                        }
                    }
                }
            }
            (FieldKind::StringList, other) => self.wrong_type(path, "an array of strings", other),
            (FieldKind::StringMap, Value::Object(m)) => {
                if m.len() > MAX_MAP_ENTRIES {
                    self.err(path, "too_long", format!("must have at most {MAX_MAP_ENTRIES} entries"));
                    return;
                }
                for (k, val) in m {
                    let entry_path = format!("{path}.{}", display_key(k));
                    if let Err(msg) = checks::check_str(f.check, k, false) {
                        self.err(
                            entry_path.as_str(),
                            "invalid_format",
                            format!("has an invalid name: it {msg}"),
                        );
                    }
                    match val {
                        Value::String(s) if s.chars().any(|c| c.is_control() && c != '\t') => {
                            self.err(entry_path, "invalid_format", "must not contain control characters");
                        }
                        Value::String(s) if s.len() > MAX_STRING_BYTES => {
                            self.err(
                                entry_path,
                                "too_long",
                                format!("must be at most {MAX_STRING_BYTES} bytes"),
                            );
                        }
                        Value::String(_) => {}
                        other => self.wrong_type(&entry_path, "a string", other),
                    }
                }
            }
            (FieldKind::StringMap, other) => {
                self.wrong_type(path, "an object of strings", other);
            }
            (FieldKind::Object(_) | FieldKind::List(_), _) => {}
        }
    }

    /// Checks a string leaf: non-empty, length, kind (timestamp, enum), then `f.check`.
    fn string(&mut self, f: &FieldSchema, s: &str, path: &str, secret: bool, query_param: bool) {
        let max = checks::max_len(f.check);
        if !self.plain_string(s, path, max) {
            return;
        }
        let got = if secret { String::new() } else { quote_suffix(s) };
        match f.kind {
            FieldKind::Timestamp if OffsetDateTime::parse(s, &Rfc3339).is_err() => {
                self.err(
                    path,
                    "invalid_format",
                    format!("must be an RFC 3339 timestamp such as 2025-01-31T12:00:00Z{got}"),
                );
                return;
            }
            FieldKind::Enum(values) if !values.contains(&s) => {
                self.err(
                    path,
                    "invalid_format",
                    format!("must be one of: {}{got}", values.join(", ")),
                );
                return;
            }
            _ => {}
        }
        if let Err(msg) = checks::check_str(f.check, s, query_param) {
            self.err(path, "invalid_format", format!("{msg}{got}"));
        }
    }

    /// Non-empty and at most `max` bytes. Returns whether both hold.
    fn plain_string(&mut self, s: &str, path: &str, max: usize) -> bool {
        if s.is_empty() {
            self.err(path, "empty", "must not be empty (omit the field or send null instead)");
            false
        } else if s.len() > max {
            self.err(path, "too_long", format!("must be at most {max} bytes"));
            false
        } else {
            true
        }
    }

    /// Checks `Check::Count` on a list's length. Returns whether it holds.
    fn count(&mut self, f: &FieldSchema, len: usize, path: &str) -> bool {
        let Check::Count { min, max } = f.check else {
            return true;
        };
        let (min, max) = (min as usize, max as usize);
        if len < min {
            let s = if min == 1 { "" } else { "s" };
            self.err(path, "empty", format!("must have at least {min} item{s}"));
            false
        } else if len > max {
            self.err(path, "too_long", format!("must have at most {max} items"));
            false
        } else {
            true
        }
    }
}

/// An object key as shown in an error path: at most 64 characters, control characters replaced.
fn display_key(k: &str) -> String {
    let mut shown: String = k
        .chars()
        .take(64)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if k.chars().count() > 64 {
        shown.push('…');
    }
    shown
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
