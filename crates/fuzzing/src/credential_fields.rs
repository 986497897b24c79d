//! `credential_fields`: the domain's validators over arbitrary input.
//!
//! Input: `mode` byte, then per mode
//! * 0 — `type` byte, `variant` byte, JSON `fields`: [`credential_types::validate`] for every
//!   type and variant (the variant byte also picks "none" and an unknown name), plus
//!   [`credential_destinations`];
//! * 1 — `kind` byte, JSON `config`: [`connectors::validate_config`] for every connector kind;
//! * 2 — lines: [`AllowedSet::parse`];
//! * 3 — text: [`Pattern::parse`], [`Destination::from_url`], [`Host::parse`].
//!
//! Promises checked: no panic; a rejection names at least one problem with a documented code
//! and never quotes (` (got "…")`) a secret value; an accepted credential has no secret leaf in its public
//! half, its `secret_fields_set` paths exist, and public + secret merged validate again to the
//! same split; an accepted config validates again to itself; normalized patterns, hosts and
//! destinations parse back to themselves; an allowed set parses back from its stored form,
//! covers every entry it was given, and holds no entry covered by another.

use serde_json::Value;

use credvault_domain::connectors::{self, ConnectorKind};
use credvault_domain::credential_types::{
    self, CredentialType, FieldKind, FieldSchema, ValidatedFields, merge, schema,
};
use credvault_domain::destinations::{AllowedSet, Destination, Host, Pattern, credential_destinations};

/// The codes [`credential_types::FieldError::code`] documents.
const CODES: &[&str] = &[
    "required",
    "unknown_field",
    "wrong_type",
    "invalid_format",
    "invalid_variant",
    "variant_required",
    "too_long",
    "empty",
];

/// The entry point.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => credential(rest),
        1 => connector(rest),
        2 => allowed_set(rest),
        _ => single(rest),
    }
}

fn credential(data: &[u8]) {
    let [ty_b, variant_b, json @ ..] = data else {
        return;
    };
    let ty = CredentialType::ALL[usize::from(*ty_b) % CredentialType::ALL.len()];
    let variants = schema(ty).variants;
    let variant = match usize::from(*variant_b) % (variants.len() + 2) {
        0 => None,
        i if i <= variants.len() => Some(variants[i - 1].name),
        _ => Some("no_such_variant"),
    };
    let Ok(fields) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let _ = credential_destinations(ty, &fields);

    let vs = credential_types::resolve_variant(ty, variant).ok();
    let (mut secrets, mut plain) = (Vec::new(), Vec::new());
    match vs {
        Some(vs) => strings_by_schema(vs.fields, &fields, false, &mut secrets, &mut plain),
        None => all_strings(&fields, &mut plain),
    }
    match credential_types::validate(ty, variant, fields) {
        Err(errors) => {
            assert!(!errors.is_empty(), "{ty}/{variant:?}: rejected without a reason");
            for e in &errors {
                assert!(
                    CODES.contains(&e.code),
                    "{ty}/{variant:?}: undocumented code {:?}",
                    e.code
                );
                assert!(
                    e.field == "variant" || e.field == "fields" || e.field.starts_with("fields."),
                    "{ty}/{variant:?}: error path {:?} is not under fields",
                    e.field
                );
                for s in &secrets {
                    if plain.iter().any(|p| p.contains(s.as_str())) {
                        continue; // the same text is also a non-secret value or a key
                    }
                    // Values are quoted as ` (got "…")`. (A plain substring check would trip
                    // over secrets that happen to spell part of a message: the fuzzer learns
                    // the messages' words from this very comparison.)
                    assert!(
                        !e.message.contains(&format!("(got {s:?})")),
                        "{ty}/{variant:?}: the message for {} quotes a secret value: {}",
                        e.field,
                        e.message
                    );
                }
            }
        }
        Ok(v) => {
            let Some(vs) = vs else {
                panic!("{ty}/{variant:?}: accepted although the variant does not resolve");
            };
            accepted(ty, variant, vs.fields, &v);
        }
    }
}

/// Checks an accepted split.
fn accepted(ty: CredentialType, variant: Option<&str>, fields: &'static [FieldSchema], v: &ValidatedFields) {
    no_secret_in_public(fields, &v.public, false, "fields");
    for path in &v.secret_fields_set {
        assert!(
            lookup(v.secret.expose(), path).is_some_and(|x| !x.is_null()),
            "{ty}/{variant:?}: secret_fields_set names {path}, which the secret half lacks"
        );
    }
    let merged = merge(&v.public, v.secret.expose());
    match credential_types::validate(ty, variant, merged) {
        Ok(again) => {
            assert_eq!(
                again.public, v.public,
                "{ty}/{variant:?}: public half changes on re-validation"
            );
            assert_eq!(
                again.secret.expose(),
                v.secret.expose(),
                "{ty}/{variant:?}: secret half changes on re-validation"
            );
            assert_eq!(again.secret_fields_set, v.secret_fields_set);
            assert_eq!(again.variant, v.variant);
        }
        Err(e) => panic!("{ty}/{variant:?}: the merged halves of accepted fields are rejected: {e:?}"),
    }
}

/// Sorts every string of `v` (keys too) into secret and plain, following the schema: strings
/// below a secret field are secret, and so are the values of unknown fields (which the
/// validator discards unquoted).
fn strings_by_schema(
    fields: &'static [FieldSchema],
    v: &Value,
    secret: bool,
    secrets: &mut Vec<String>,
    plain: &mut Vec<String>,
) {
    let Value::Object(m) = v else {
        if secret {
            all_strings(v, secrets);
        } else {
            all_strings(v, plain);
        }
        return;
    };
    for (k, val) in m {
        plain.push(k.clone());
        let Some(f) = fields.iter().find(|f| f.name == k) else {
            all_strings(val, secrets);
            continue;
        };
        let secret = secret || f.secret;
        match (f.kind, val) {
            (FieldKind::Object(sub), _) => strings_by_schema(sub, val, secret, secrets, plain),
            (FieldKind::List(sub), Value::Array(items)) => {
                for item in items {
                    strings_by_schema(sub, item, secret, secrets, plain);
                }
            }
            (FieldKind::StringMap, Value::Object(entries)) => {
                for (key, x) in entries {
                    plain.push(key.clone());
                    all_strings(x, if secret { &mut *secrets } else { &mut *plain });
                }
            }
            _ => all_strings(val, if secret { &mut *secrets } else { &mut *plain }),
        }
    }
}

fn all_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                all_strings(x, out);
            }
        }
        _ => {}
    }
}

/// The public half holds only non-secret leaves (objects below a secret field may appear, empty
/// of leaves, to keep the nesting).
fn no_secret_in_public(fields: &'static [FieldSchema], public: &Value, secret: bool, path: &str) {
    let Value::Object(m) = public else {
        panic!("public half at {path} is not an object: {public}");
    };
    for (k, v) in m {
        let Some(f) = fields.iter().find(|f| f.name == k) else {
            panic!("public half holds {path}.{k}, which the schema does not know");
        };
        let secret = secret || f.secret;
        match (f.kind, v) {
            (FieldKind::Object(sub), _) => no_secret_in_public(sub, v, secret, &format!("{path}.{k}")),
            (FieldKind::List(sub), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    no_secret_in_public(sub, item, secret, &format!("{path}.{k}[{i}]"));
                }
            }
            (FieldKind::List(_), other) => panic!("public half: list {path}.{k} is {other}"),
            _ => assert!(!secret, "public half holds the secret field {path}.{k}"),
        }
    }
}

/// Follows a `secret_fields_set` path (`a.b`, `parts[1].value`).
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, i)) => (n, Some(i.strip_suffix(']')?.parse::<usize>().ok()?)),
            None => (seg, None),
        };
        cur = cur.get(name)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn connector(data: &[u8]) {
    let Some((&kind_b, json)) = data.split_first() else {
        return;
    };
    let kind = ConnectorKind::ALL[usize::from(kind_b) % ConnectorKind::ALL.len()];
    let Ok(config) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    match connectors::validate_config(kind, config) {
        Err(errors) => {
            assert!(!errors.is_empty(), "{kind:?}: rejected without a reason");
            for e in &errors {
                assert!(CODES.contains(&e.code), "{kind:?}: undocumented code {:?}", e.code);
                assert!(
                    e.field == "config" || e.field.starts_with("config."),
                    "{kind:?}: error path {:?} is not under config",
                    e.field
                );
            }
        }
        Ok(v) => {
            if let Err(e) = credvault_domain::destinations::connection_destinations(kind, &v) {
                panic!("{kind:?}: an accepted config has no destinations: {e:?}");
            }
            match connectors::validate_config(kind, v.clone()) {
                Ok(again) => assert_eq!(again, v, "{kind:?}: an accepted config changes on re-validation"),
                Err(e) => panic!("{kind:?}: an accepted config is rejected on re-validation: {e:?}"),
            }
        }
    }
}

fn allowed_set(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    match AllowedSet::parse(&lines) {
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.index < lines.len(), "entry error index {} out of range", e.index);
                assert!(!e.message.is_empty());
            }
        }
        Ok(set) => {
            let strings = set.to_strings();
            assert_eq!(
                AllowedSet::parse(&strings).as_ref(),
                Ok(&set),
                "an allowed set does not parse back from its entries {strings:?}"
            );
            assert_eq!(AllowedSet::from_stored(Some(&set.to_stored())), set, "stored form");
            assert!(set.within(&set));
            for line in &lines {
                if let Ok(p) = Pattern::parse(line) {
                    assert!(
                        set.patterns().iter().any(|q| p.within(q)),
                        "the set {strings:?} does not cover its entry {p}"
                    );
                }
            }
            let ps = set.patterns();
            for (i, p) in ps.iter().enumerate() {
                for (j, q) in ps.iter().enumerate() {
                    assert!(i == j || !p.within(q), "the set {strings:?} keeps {p}, covered by {q}");
                }
            }
        }
    }
}

fn single(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();
    if let Ok(p) = Pattern::parse(s) {
        let shown = p.to_string();
        assert_eq!(
            Pattern::parse(&shown).as_ref(),
            Ok(&p),
            "pattern {s:?} is shown as {shown:?}, which parses differently"
        );
        assert!(p.within(&p));
    }
    if let Ok(d) = Destination::from_url(s) {
        let pattern = d.as_pattern();
        assert!(pattern.allows(&d.host, d.port), "{d} is not allowed by its own pattern");
        let shown = d.to_string();
        assert_eq!(
            Pattern::parse(&shown).as_ref(),
            Ok(&pattern),
            "destination of {s:?} is shown as {shown:?}, which parses as another pattern"
        );
        let mut set = AllowedSet::empty();
        assert!(set.allow(&d));
        assert!(!set.allow(&d), "allowing {d} twice changes the set");
        assert!(set.permits_resolved(&d, &[]));
    }
    if let Ok(h) = Host::parse(s) {
        let shown = h.to_string();
        assert_eq!(
            Host::parse(&shown).as_ref(),
            Ok(&h),
            "host {s:?} is shown as {shown:?}, which parses differently"
        );
    }
}
