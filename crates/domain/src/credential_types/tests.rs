//! Tests for the credential-type schemas and validation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::checks::check_str;
use super::*;

// Throwaway keys generated for these tests with openssl / ssh-keygen; they protect nothing.

/// `openssl genpkey -algorithm ed25519`
const PKCS8_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIGWskZdGbNF5gDNnIjIc0o0g65UKVu+LA6N8adXeZN8u
-----END PRIVATE KEY-----
";

/// `ssh-keygen -t ed25519 -N ''`
const OPENSSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACAr3rcEBzeBPtGjq7Zng5MCPlR/2vsmHBNMOS/QoohMxAAAAIjiLcfA4i3H
wAAAAAtzc2gtZWQyNTUxOQAAACAr3rcEBzeBPtGjq7Zng5MCPlR/2vsmHBNMOS/QoohMxA
AAAEBUUOtVuJ6usmeWGCre07QiDvpCc9I+LL/F5GUoJG1t9SvetwQHN4E+0aOrtmeDkwI+
VH/a+yYcE0w5L9CiiEzEAAAABHRlc3QB
-----END OPENSSH PRIVATE KEY-----
";

/// The public half of `OPENSSH_KEY`, as a host key line.
const SSH_HOST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICvetwQHN4E+0aOrtmeDkwI+VH/a+yYcE0w5L9CiiEzE test";

/// `openssl req -x509 -key <PKCS8_KEY> -subj /CN=credvault-test`
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBRjCB+aADAgECAhQct96G/+sqXUBCSKfOE+BhXRYBZTAFBgMrZXAwGTEXMBUG
A1UEAwwOY3JlZHZhdWx0LXRlc3QwHhcNMjYxMTI3MDcyNzE0WhcNMzYxMTI0MDcy
NzE0WjAZMRcwFQYDVQQDDA5jcmVkdmF1bHQtdGVzdDAqMAUGAytlcAMhAEaP+5F7
dUoDlY/cgO599Vut5XUyWqNLNZiSqF/5l83Go1MwUTAdBgNVHQ4EFgQUON6xD8Vg
DHSmndDg+jRr9fGoEqcwHwYDVR0jBBgwFoAUON6xD8VgDHSmndDg+jRr9fGoEqcw
DwYDVR0TAQH/BAUwAwEB/zAFBgMrZXADQQCcHCBd9LQVqHPRUp1DBO8cDKaRVnjX
4HWsft5x4SuATSyf+n2ElLeggHnurkaj1xtKa0zlphoybanYtybUAO4G
-----END CERTIFICATE-----
";

/// `openssl genrsa -traditional -aes128 1024` (legacy PEM with Proc-Type / DEK-Info headers).
const RSA_ENCRYPTED_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,4E1D9EE6079F3EF59E2550DF38D28592

aV9bEzSKxN4GK8WbKw7JJVd35g57gHN3e417zT8BSieTIh1WMEkwefUEuUIEQPz/
2gYF6gjlRx0XH0r4U1IwpCziXUUgoWPycgfoDA+zE8NsNg+LPkC1pauztqB7DX02
rOkKZgfzNlvgVmYJO5ZvsOe4UoLe8y295o5EiYo6UJ/bIhx0vA0ONPTDIVtnex4l
oM1mLeoE3HRvhJKzdHjfmEUkSNcYipJJoe269LIrJE8n95bGxo88WJCRJNSYb3or
Q8q5g7E0G4JWOj8/klPtOZtH4nqbohs+CuBM//DuhkZaZ1um4q1ywnWCBcA80nQl
WdCno6t4UKS8UiQctNuififuQ12/RXLn4loeuFypcPWHae5uUAyEKAD3trQL3ieK
Zpl3xX/Vqd+4T+kBJ5+TqaQ4Q9Aj3o503fkepFUoIO2zL4V3bCOLCsfWNIal3pEa
dTGxMh6fQopUJL5ug71w8FeuPGVftHfiQIcq2zCD4Lo756yv+wjOcOzfodg+lLIp
HGsLwNQsKHI49ai+zfbKlN1HbR9oNsdSIZqzkf5v/9Lcyj/n8sYSrIqCeNQ9N3D4
UTTQXVmKwjxKyVAfD5GxHdH0sz0MF9hCAtZnDUO42gQI8gV+luD/PjAkIcTtME+C
/bEikfZfXEO/e7HHujUszAqnyrpiMHlV4SUoDPlup9KnELW1tTW2Y4t3FoCefWQb
tJ/jdFuNzKaLK1LaAgGIs+ie8A5RmlwfYRAKtLz4rAJjTN2+tdyh56wAw0/pcS8H
3QDv96bsh94bZ6RsvPAXdi7BZxh6XcbD7c5yo4/Rpm0=
-----END RSA PRIVATE KEY-----
";

/// `openssl ecparam -name prime256v1 -genkey` (EC PARAMETERS + EC PRIVATE KEY).
const EC_KEY_WITH_PARAMS: &str = "-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIPh6+a6YOYFXhxOOLpFUa+nWsiY2aSX44TyJ1/SV5BJwoAoGCCqGSM49
AwEHoUQDQgAECzfNqwsHrEBUVzIHon5GL58pXCMZMuTp5cnuauJuUUXbNss4pYvp
Xk4xk/ynZBR/4tKSCsTVkpnHE7b0YJy9sQ==
-----END EC PRIVATE KEY-----
";

const CANARY: &str = "CANARY-7f3a";
const CRED_ID: &str = "cred_abcdefghijklmnopqrstuvwxyz";
const UUID_A: &str = "8f14e45f-ceea-467f-a5b6-1c2d3e4f5a6b";
const UUID_B: &str = "0B5F4B6E-1D2C-4A3B-9C8D-7E6F5A4B3C2D";

fn sa_json() -> String {
    json!({
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "abc123",
        "private_key": PKCS8_KEY,
        "client_email": "loader@demo-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

fn external_account_json() -> String {
    json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": "/var/run/token"},
    })
    .to_string()
}

fn tunnel() -> Value {
    json!({
        "host": "bastion.example.com",
        "port": 22,
        "user": "tunnel",
        "private_key_pem": OPENSSH_KEY,
        "passphrase": "tunnel-pass",
        "known_host_key": SSH_HOST_KEY,
    })
}

/// A valid example of every type and variant, with (nearly) every optional field set.
fn examples() -> Vec<(CredentialType, Option<&'static str>, Value)> {
    use CredentialType::*;
    vec![
        (
            Aws,
            Some("access_key"),
            json!({
                "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "session_token": "FwoGZXIvYXdzEJr//////////wEaDM",
                "region": "eu-west-1",
            }),
        ),
        (
            Aws,
            Some("assume_role"),
            json!({
                "role_arn": "arn:aws:iam::123456789012:role/service-role/loader",
                "external_id": "ext-42:abc",
                "session_name": "credvault@run-42",
                "source_credential_id": CRED_ID,
                "region": "us-gov-west-1",
            }),
        ),
        (
            Azure,
            Some("client_secret"),
            json!({
                "tenant_id": UUID_A,
                "client_id": UUID_B,
                "client_secret": "Q~secret~value",
                "authority_url": "http://127.0.0.1:8080",
            }),
        ),
        (
            Azure,
            Some("certificate"),
            json!({
                "tenant_id": "contoso.onmicrosoft.com",
                "client_id": UUID_A,
                "certificate_pem": CERTIFICATE,
                "private_key_pem": PKCS8_KEY,
            }),
        ),
        (Azure, Some("managed_identity"), json!({"client_id": UUID_A})),
        (
            Gcp,
            Some("service_account"),
            json!({
                "service_account_json": sa_json(),
                "token_url": "http://localhost:9000/token",
            }),
        ),
        (
            Gcp,
            Some("workload_identity_federation"),
            json!({"external_account_json": external_account_json()}),
        ),
        (
            Database,
            None,
            json!({"username": "loader", "password": "db-pass", "ssh_tunnel": tunnel()}),
        ),
        (
            Database,
            Some("key_pair"),
            json!({
                "username": "LOADER",
                "private_key_pem": EC_KEY_WITH_PARAMS,
                "passphrase": "key-pass",
                "ssh_tunnel": tunnel(),
            }),
        ),
        (
            ApiKey,
            None,
            json!({
                "parts": [
                    {"name": "X-API-Key", "value": "key-1", "in": "header"},
                    {"name": "api key[]", "value": "key-2", "in": "query"},
                ],
                "headers": {"Accept": "application/json", "X-Tenant": "acme"},
            }),
        ),
        (
            Oauth,
            Some("authorization_code"),
            json!({
                "client_id": "client-1",
                "client_secret": "client-secret",
                "authorization_url": "https://accounts.example.com/authorize",
                "token_url": "https://accounts.example.com/token",
                "scopes": ["read", "write"],
                "revocation_url": "https://accounts.example.com/revoke",
                "refresh_token": "refresh-1",
                "access_token": "access-1",
                "access_token_expires_at": "2030-01-31T12:00:00Z",
                "authorized_by": "usr_abc",
                "authorized_at": "2025-01-31T11:00:00.123+01:00",
            }),
        ),
        (
            Oauth,
            Some("client_credentials"),
            json!({
                "client_id": "client-2",
                "client_secret": "client-secret-2",
                "token_url": "https://[::1]:8443/token?aud=x",
                "scopes": [],
            }),
        ),
        (Password, None, json!({"username": "ftpuser", "password": "ftp-pass"})),
    ]
}

fn ok(ty: CredentialType, variant: Option<&str>, fields: Value) -> ValidatedFields {
    match validate(ty, variant, fields) {
        Ok(v) => v,
        Err(e) => panic!("{ty}/{variant:?} rejected: {e:#?}"),
    }
}

fn errs(ty: CredentialType, variant: Option<&str>, fields: Value) -> Vec<FieldError> {
    match validate(ty, variant, fields) {
        Ok(v) => panic!("{ty}/{variant:?} accepted: {:?}", v.public),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_has(errors: &[FieldError], field: &str, code: &str) {
    assert!(
        errors.iter().any(|e| e.field == field && e.code == code),
        "expected {code} at {field}, got {errors:#?}"
    );
}

/// The example of one variant.
fn example(ty: CredentialType, variant: Option<&str>) -> Value {
    examples()
        .into_iter()
        .find(|(t, v, _)| *t == ty && *v == variant)
        .map(|(_, _, f)| f)
        .unwrap()
}

/// Splits `"parts[1].value"` into `["parts", 1, "value"]`-like steps.
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for seg in path.split('.') {
        let mut parts = seg.split('[');
        out.push(Step::Key(parts.next().unwrap().to_owned()));
        for idx in parts {
            out.push(Step::Index(idx.trim_end_matches(']').parse().unwrap()));
        }
    }
    out
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    steps(path).iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get(k.as_str()),
        Step::Index(i) => v.get(*i),
    })
}

fn set_path(v: &mut Value, path: &str, new: Value) {
    let mut cur = v;
    for s in steps(path) {
        cur = match s {
            Step::Key(k) => cur.get_mut(k.as_str()).unwrap(),
            Step::Index(i) => cur.get_mut(i).unwrap(),
        };
    }
    *cur = new;
}

/// The schema field at a path relative to `fields` (list indices ignored).
fn field_at(fields: &'static [FieldSchema], path: &str) -> &'static FieldSchema {
    let mut fields = fields;
    let mut found = None;
    for s in steps(path) {
        if let Step::Key(k) = s {
            let f = fields.iter().find(|f| f.name == k).unwrap();
            if let FieldKind::Object(sub) | FieldKind::List(sub) = f.kind {
                fields = sub;
            }
            found = Some(f);
        }
    }
    found.unwrap()
}

/// Paths (relative to `fields`) of the schema-level leaves present in `v`, guided by the schema.
fn leaf_paths(fields: &'static [FieldSchema], v: &Value, prefix: &str, out: &mut Vec<String>) {
    let Some(obj) = v.as_object() else { return };
    for f in fields {
        let Some(val) = obj.get(f.name) else { continue };
        let path = if prefix.is_empty() {
            f.name.to_owned()
        } else {
            format!("{prefix}.{}", f.name)
        };
        match f.kind {
            FieldKind::Object(sub) => leaf_paths(sub, val, &path, out),
            FieldKind::List(sub) => {
                for (i, item) in val.as_array().unwrap().iter().enumerate() {
                    leaf_paths(sub, item, &format!("{path}[{i}]"), out);
                }
            }
            _ => out.push(path),
        }
    }
}

// ------------------------------------------------------------------------------ type names

#[test]
fn credential_type_names_round_trip_through_as_str_parse_and_serde() {
    for ty in CredentialType::ALL {
        assert_eq!(CredentialType::parse(ty.as_str()), Some(ty));
        assert_eq!(serde_json::to_value(ty).unwrap(), json!(ty.as_str()));
        assert_eq!(
            serde_json::from_value::<CredentialType>(json!(ty.as_str())).unwrap(),
            ty
        );
        assert_eq!(ty.to_string(), ty.as_str());
    }
    assert_eq!(CredentialType::ApiKey.as_str(), "api_key");
    assert_eq!(CredentialType::parse("API_KEY"), None);
    assert_eq!(CredentialType::parse("ssh"), None);
}

#[test]
fn all_schemas_are_listed_in_all_order_and_schema_finds_each_type() {
    let tys: Vec<_> = all_schemas().iter().map(|s| s.ty).collect();
    assert_eq!(tys, CredentialType::ALL.to_vec());
    for ty in CredentialType::ALL {
        assert_eq!(schema(ty).ty, ty);
    }
}

#[test]
fn schemas_are_well_formed() {
    fn check_fields(fields: &[FieldSchema]) {
        let mut names: Vec<_> = fields.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fields.len(), "duplicate field names");
        for f in fields {
            assert!(!f.description.is_empty(), "{} has no description", f.name);
            if let FieldKind::Object(sub) | FieldKind::List(sub) = f.kind {
                check_fields(sub);
            }
        }
    }
    for s in all_schemas() {
        assert!(!s.variants.is_empty());
        if let Some(d) = s.default_variant {
            assert!(s.variant(d).is_some(), "{} default variant missing", s.ty);
        }
        if s.variants.len() == 1 {
            assert_eq!(s.default_variant, Some(s.variants[0].name));
        }
        for v in s.variants {
            check_fields(v.fields);
        }
    }
    assert_eq!(schema(CredentialType::Database).default_variant, Some("password"));
    for ty in [
        CredentialType::Aws,
        CredentialType::Azure,
        CredentialType::Gcp,
        CredentialType::Oauth,
    ] {
        assert_eq!(schema(ty).default_variant, None, "{ty}");
    }
}

// --------------------------------------------------------------------------------- accepting

#[test]
fn each_type_and_variant_accepts_a_valid_example() {
    let examples = examples();
    let covered: usize = all_schemas().iter().map(|s| s.variants.len()).sum();
    assert_eq!(examples.len(), covered, "one example per variant");
    for (ty, variant, fields) in examples {
        let v = ok(ty, variant, fields);
        let expected_variant = match (schema(ty).variants.len(), variant) {
            (1, _) => None,
            (_, Some(name)) => Some(name.to_owned()),
            (_, None) => schema(ty).default_variant.map(str::to_owned),
        };
        assert_eq!(v.variant, expected_variant, "{ty}/{variant:?}");
    }
}

#[test]
fn every_optional_field_may_be_omitted_or_null() {
    for (ty, variant, fields) in examples() {
        let vs = resolve_variant(ty, variant).unwrap();
        for f in vs.fields.iter().filter(|f| !f.required) {
            let mut omitted = fields.clone();
            omitted.as_object_mut().unwrap().remove(f.name);
            let v = ok(ty, variant, omitted.clone());
            assert_eq!(merge(&v.public, v.secret.expose()), omitted);

            let mut nulled = fields.clone();
            nulled[f.name] = Value::Null;
            let v = ok(ty, variant, nulled);
            assert_eq!(merge(&v.public, v.secret.expose()), omitted, "null = absent");
            assert!(v.public.get(f.name).is_none());
            assert!(v.secret.expose().get(f.name).is_none());
        }
    }
}

#[test]
fn the_minimal_password_and_managed_identity_credentials_are_accepted() {
    let v = ok(CredentialType::Password, None, json!({"password": "pw"}));
    assert_eq!(v.public, json!({}));
    assert_eq!(v.secret.expose(), &json!({"password": "pw"}));
    let v = ok(CredentialType::Azure, Some("managed_identity"), json!({}));
    assert_eq!(v.public, json!({}));
    assert!(v.secret.is_empty());
    assert!(v.secret_fields_set.is_empty());
    // `fields: null` is taken as `{}`.
    ok(CredentialType::Azure, Some("managed_identity"), Value::Null);
}

// ---------------------------------------------------------------------------- split & merge

#[test]
fn the_split_puts_secrets_only_in_secret_and_public_fields_only_in_public() {
    for (ty, variant, fields) in examples() {
        let vs = resolve_variant(ty, variant).unwrap();
        let v = ok(ty, variant, fields.clone());

        let mut public_leaves = Vec::new();
        leaf_paths(vs.fields, &v.public, "", &mut public_leaves);
        for p in &public_leaves {
            assert!(!field_at(vs.fields, p).secret, "{ty}: secret {p} in public");
            assert_eq!(get_path(&v.public, p), get_path(&fields, p));
        }
        let mut secret_leaves = Vec::new();
        leaf_paths(vs.fields, v.secret.expose(), "", &mut secret_leaves);
        for p in &secret_leaves {
            assert!(field_at(vs.fields, p).secret, "{ty}: public {p} in secret");
            assert_eq!(get_path(v.secret.expose(), p), get_path(&fields, p));
        }
        let mut all = Vec::new();
        leaf_paths(vs.fields, &fields, "", &mut all);
        assert_eq!(
            public_leaves.len() + secret_leaves.len(),
            all.len(),
            "{ty}: lost a field"
        );
    }
}

#[test]
fn the_split_of_a_database_credential_keeps_the_nesting() {
    let v = ok(CredentialType::Database, None, example(CredentialType::Database, None));
    assert_eq!(
        v.public,
        json!({
            "username": "loader",
            "ssh_tunnel": {
                "host": "bastion.example.com",
                "port": 22,
                "user": "tunnel",
                "known_host_key": SSH_HOST_KEY,
            },
        })
    );
    assert_eq!(
        v.secret.expose(),
        &json!({
            "password": "db-pass",
            "ssh_tunnel": {"private_key_pem": OPENSSH_KEY, "passphrase": "tunnel-pass"},
        })
    );
}

#[test]
fn the_split_of_an_api_key_keeps_list_positions() {
    let v = ok(CredentialType::ApiKey, None, example(CredentialType::ApiKey, None));
    assert_eq!(
        v.public,
        json!({
            "parts": [{"name": "X-API-Key", "in": "header"}, {"name": "api key[]", "in": "query"}],
            "headers": {"Accept": "application/json", "X-Tenant": "acme"},
        })
    );
    assert_eq!(
        v.secret.expose(),
        &json!({"parts": [{"value": "key-1"}, {"value": "key-2"}]})
    );
}

#[test]
fn merging_public_and_secret_gives_back_the_original_fields() {
    for (ty, variant, fields) in examples() {
        let v = ok(ty, variant, fields.clone());
        assert_eq!(merge(&v.public, v.secret.expose()), fields, "{ty}/{variant:?}");
        // And through the stored byte form of the secret half.
        let secret = crate::secret::SecretJson::from_bytes(&v.secret.into_bytes()).unwrap();
        assert_eq!(merge(&v.public, secret.expose()), fields, "{ty}/{variant:?}");
    }
}

#[test]
fn merge_combines_objects_deeply_and_arrays_element_wise() {
    let public = json!({"a": 1, "o": {"x": 1}, "l": [{"n": "a"}, {"n": "b"}], "k": "p"});
    let secret = json!({"o": {"y": 2}, "l": [{"v": "1"}, {}, {"v": "3"}], "s": "s", "k": null});
    assert_eq!(
        merge(&public, &secret),
        json!({
            "a": 1, "o": {"x": 1, "y": 2},
            "l": [{"n": "a", "v": "1"}, {"n": "b"}, {"v": "3"}],
            "k": "p", "s": "s",
        })
    );
    assert_eq!(merge(&json!({"a": 1}), &Value::Null), json!({"a": 1}));
}

#[test]
fn secret_fields_set_lists_exactly_the_secret_paths_in_schema_order() {
    let v = ok(CredentialType::Database, None, example(CredentialType::Database, None));
    assert_eq!(
        v.secret_fields_set,
        ["password", "ssh_tunnel.private_key_pem", "ssh_tunnel.passphrase"]
    );
    let v = ok(CredentialType::ApiKey, None, example(CredentialType::ApiKey, None));
    assert_eq!(v.secret_fields_set, ["parts[0].value", "parts[1].value"]);
    let v = ok(
        CredentialType::Oauth,
        Some("authorization_code"),
        example(CredentialType::Oauth, Some("authorization_code")),
    );
    assert_eq!(v.secret_fields_set, ["client_secret", "refresh_token", "access_token"]);
    let v = ok(
        CredentialType::Aws,
        Some("access_key"),
        json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "s"}),
    );
    assert_eq!(v.secret_fields_set, ["secret_access_key"]);
    let v = ok(
        CredentialType::Aws,
        Some("assume_role"),
        example(CredentialType::Aws, Some("assume_role")),
    );
    assert!(v.secret_fields_set.is_empty());
    assert!(v.secret.is_empty());

    // In general: exactly the secret leaves of the secret half, in schema order.
    for (ty, variant, fields) in examples() {
        let vs = resolve_variant(ty, variant).unwrap();
        let v = ok(ty, variant, fields.clone());
        let mut expected = Vec::new();
        leaf_paths(vs.fields, &fields, "", &mut expected);
        expected.retain(|p| field_at(vs.fields, p).secret);
        assert_eq!(v.secret_fields_set, expected, "{ty}/{variant:?}");
    }
}

#[test]
fn validated_fields_debug_does_not_show_secrets() {
    let v = ok(CredentialType::Database, None, example(CredentialType::Database, None));
    let shown = format!("{v:?}");
    assert!(shown.contains("SecretJson([redacted])"));
    assert!(!shown.contains("db-pass"));
    assert!(!shown.contains("OPENSSH"));
}

// -------------------------------------------------------------------------------- rejecting

#[test]
fn an_unknown_field_is_rejected_with_unknown_field_and_its_path() {
    let mut f = example(CredentialType::Database, None);
    f["pasword"] = json!("x");
    f["ssh_tunnel"]["hostname"] = json!("x");
    let e = errs(CredentialType::Database, None, f);
    assert_has(&e, "fields.pasword", "unknown_field");
    assert_has(&e, "fields.ssh_tunnel.hostname", "unknown_field");
    assert_eq!(e.len(), 2, "{e:#?}");
    let top = e.iter().find(|e| e.field == "fields.pasword").unwrap();
    assert!(
        top.message.contains("username, password, ssh_tunnel"),
        "{}",
        top.message
    );

    let mut f = example(CredentialType::ApiKey, None);
    f["parts"][1]["where"] = json!("header");
    assert_has(
        &errs(CredentialType::ApiKey, None, f),
        "fields.parts[1].where",
        "unknown_field",
    );

    // A field of another variant is unknown here.
    let e = errs(
        CredentialType::Aws,
        Some("access_key"),
        json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "s", "role_arn": "x"}),
    );
    assert_has(&e, "fields.role_arn", "unknown_field");

    // Very long keys are shortened in the path.
    let long = "k".repeat(500);
    let e = errs(
        CredentialType::Password,
        None,
        json!({"password": "p", long.clone(): 1}),
    );
    assert_eq!(e[0].code, "unknown_field");
    assert!(e[0].field.chars().count() < 80);
}

#[test]
fn a_value_of_the_wrong_json_type_is_rejected_with_wrong_type() {
    use CredentialType::*;
    assert_has(&errs(Password, None, json!(["password"])), "fields", "wrong_type");
    assert_has(&errs(Password, None, json!("password")), "fields", "wrong_type");
    assert_has(
        &errs(Password, None, json!({"password": 5})),
        "fields.password",
        "wrong_type",
    );
    assert_has(
        &errs(Password, None, json!({"password": "p", "username": true})),
        "fields.username",
        "wrong_type",
    );

    for port in [json!("22"), json!(22.0), json!(22.5), json!(-1.5)] {
        let mut f = example(Database, None);
        f["ssh_tunnel"]["port"] = port;
        assert_has(&errs(Database, None, f), "fields.ssh_tunnel.port", "wrong_type");
    }
    let mut f = example(Database, None);
    f["ssh_tunnel"] = json!("bastion:22");
    assert_has(&errs(Database, None, f), "fields.ssh_tunnel", "wrong_type");

    let mut f = example(ApiKey, None);
    f["parts"] = json!({"name": "X"});
    assert_has(&errs(ApiKey, None, f), "fields.parts", "wrong_type");
    let mut f = example(ApiKey, None);
    f["parts"][0] = json!("X-API-Key");
    assert_has(&errs(ApiKey, None, f), "fields.parts[0]", "wrong_type");
    let mut f = example(ApiKey, None);
    f["headers"]["X-Tenant"] = json!(1);
    assert_has(&errs(ApiKey, None, f), "fields.headers.X-Tenant", "wrong_type");
    let mut f = example(ApiKey, None);
    f["headers"] = json!(["Accept"]);
    assert_has(&errs(ApiKey, None, f), "fields.headers", "wrong_type");

    let o = Some("authorization_code");
    let mut f = example(Oauth, o);
    f["scopes"] = json!("read write");
    assert_has(&errs(Oauth, o, f), "fields.scopes", "wrong_type");
    let mut f = example(Oauth, o);
    f["scopes"] = json!(["read", 7]);
    assert_has(&errs(Oauth, o, f), "fields.scopes[1]", "wrong_type");
    let mut f = example(Oauth, o);
    f["access_token_expires_at"] = json!(1_700_000_000);
    assert_has(&errs(Oauth, o, f), "fields.access_token_expires_at", "wrong_type");
}

#[test]
fn a_missing_required_field_is_rejected_with_required() {
    use CredentialType::*;
    let e = errs(Database, None, json!({}));
    assert_has(&e, "fields.username", "required");
    assert_has(&e, "fields.password", "required");
    assert_eq!(e.len(), 2);

    let mut f = example(Database, None);
    f["ssh_tunnel"].as_object_mut().unwrap().remove("host");
    f["ssh_tunnel"]["known_host_key"] = Value::Null;
    let e = errs(Database, None, f);
    assert_has(&e, "fields.ssh_tunnel.host", "required");
    assert_has(&e, "fields.ssh_tunnel.known_host_key", "required");

    let mut f = example(ApiKey, None);
    f["parts"][1].as_object_mut().unwrap().remove("in");
    assert_has(&errs(ApiKey, None, f), "fields.parts[1].in", "required");

    let e = errs(
        Oauth,
        Some("authorization_code"),
        json!({"client_id": "c", "client_secret": "s", "token_url": "https://t.example/token"}),
    );
    assert_has(&e, "fields.authorization_url", "required");
    ok(
        Oauth,
        Some("client_credentials"),
        json!({"client_id": "c", "client_secret": "s", "token_url": "https://t.example/token"}),
    );

    let e = errs(
        Aws,
        Some("assume_role"),
        json!({"role_arn": "arn:aws:iam::123456789012:role/x"}),
    );
    assert_has(&e, "fields.source_credential_id", "required");
    assert_has(&errs(Password, None, Value::Null), "fields.password", "required");
}

#[test]
fn an_empty_string_is_rejected_with_empty() {
    use CredentialType::*;
    assert_has(
        &errs(Password, None, json!({"password": ""})),
        "fields.password",
        "empty",
    );
    assert_has(
        &errs(Password, None, json!({"password": "p", "username": ""})),
        "fields.username",
        "empty",
    );
    let mut f = example(Oauth, Some("authorization_code"));
    f["scopes"] = json!(["read", ""]);
    assert_has(&errs(Oauth, Some("authorization_code"), f), "fields.scopes[1]", "empty");
}

#[test]
fn strings_over_64_kib_and_documents_over_256_kib_are_rejected_with_too_long() {
    use CredentialType::*;
    let big = "a".repeat(64 * 1024 + 1);
    assert_has(
        &errs(Password, None, json!({"password": big})),
        "fields.password",
        "too_long",
    );
    ok(Password, None, json!({"password": "a".repeat(64 * 1024)}));

    // PEM fields take up to 256 KiB: a 100 KiB key (with explanatory text around it) is fine.
    let padded = format!("{}\n{PKCS8_KEY}", "# comment\n".repeat(10_000));
    let mut f = example(Azure, Some("certificate"));
    f["private_key_pem"] = json!(padded);
    ok(Azure, Some("certificate"), f);
    let mut f = example(Azure, Some("certificate"));
    f["private_key_pem"] = json!("a".repeat(256 * 1024 + 1));
    assert_has(
        &errs(Azure, Some("certificate"), f),
        "fields.private_key_pem",
        "too_long",
    );
}

#[test]
fn an_unknown_variant_is_rejected_with_invalid_variant_listing_the_allowed_names() {
    let e = errs(CredentialType::Aws, Some("iam_user"), json!({}));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].field, "variant");
    assert_eq!(e[0].code, "invalid_variant");
    assert!(e[0].message.contains("access_key, assume_role"), "{}", e[0].message);
    assert!(e[0].message.contains("\"iam_user\""), "{}", e[0].message);

    let e = resolve_variant(CredentialType::Password, Some("basic")).unwrap_err();
    assert_eq!(e.code, "invalid_variant");
    let e = resolve_variant(CredentialType::Database, Some("")).unwrap_err();
    assert_eq!(e.code, "invalid_variant");
    // A long variant name is not quoted.
    let e = resolve_variant(CredentialType::Gcp, Some(&"x".repeat(100))).unwrap_err();
    assert!(!e.message.contains("xxxxxxxx"));
}

#[test]
fn a_missing_variant_is_rejected_with_variant_required_for_types_without_a_default() {
    for ty in [
        CredentialType::Aws,
        CredentialType::Azure,
        CredentialType::Gcp,
        CredentialType::Oauth,
    ] {
        let e = errs(ty, None, json!({}));
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].field.as_str(), e[0].code), ("variant", "variant_required"));
        let names: Vec<_> = schema(ty).variants.iter().map(|v| v.name).collect();
        assert!(e[0].message.contains(&names.join(", ")), "{}", e[0].message);
    }
}

#[test]
fn database_and_single_variant_types_accept_a_missing_variant() {
    assert_eq!(
        resolve_variant(CredentialType::Database, None).unwrap().name,
        "password"
    );
    assert_eq!(resolve_variant(CredentialType::ApiKey, None).unwrap().name, "api_key");
    assert_eq!(
        resolve_variant(CredentialType::Password, None).unwrap().name,
        "password"
    );
    // The explicit name works too.
    assert_eq!(
        resolve_variant(CredentialType::ApiKey, Some("api_key")).unwrap().name,
        "api_key"
    );
    let v = ok(
        CredentialType::Database,
        None,
        json!({"username": "u", "password": "p"}),
    );
    assert_eq!(v.variant.as_deref(), Some("password"));
    let v = ok(CredentialType::Password, Some("password"), json!({"password": "p"}));
    assert_eq!(v.variant, None);
}

#[test]
fn a_malformed_role_arn_is_rejected_with_invalid_format() {
    let v = Some("assume_role");
    for good in [
        "arn:aws:iam::123456789012:role/loader",
        "arn:aws-cn:iam::123456789012:role/a/b/c_d+e=f,g.h@i-j",
        "arn:aws-us-gov:iam::000000000000:role/x",
    ] {
        let mut f = example(CredentialType::Aws, v);
        f["role_arn"] = json!(good);
        ok(CredentialType::Aws, v, f);
    }
    for bad in [
        "loader",
        "arn:aws:iam::123456789012:user/loader",
        "arn:aws:iam::12345678901:role/loader",
        "arn:aws:iam::1234567890123:role/loader",
        "arn:aws:iam:us-east-1:123456789012:role/loader",
        "arn:azure:iam::123456789012:role/loader",
        "arn:aws:s3::123456789012:role/loader",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/a//b",
        "arn:aws:iam::123456789012:role/path/",
        "arn:aws:iam::123456789012:role/bad name",
        "arn:aws:iam::123456789012:role/bad*name",
    ] {
        let mut f = example(CredentialType::Aws, v);
        f["role_arn"] = json!(bad);
        let e = errs(CredentialType::Aws, v, f);
        assert_eq!(e.len(), 1, "{bad}");
        assert_has(&e, "fields.role_arn", "invalid_format");
    }
    let long = format!("arn:aws:iam::123456789012:role/{}", "a".repeat(65));
    let mut f = example(CredentialType::Aws, v);
    f["role_arn"] = json!(long);
    assert_has(&errs(CredentialType::Aws, v, f), "fields.role_arn", "invalid_format");
}

#[test]
fn a_malformed_pem_is_rejected_with_invalid_format() {
    let v = Some("certificate");
    let body = CERTIFICATE
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    let cases = [
        ("private_key_pem", "not a pem".to_owned()),
        ("private_key_pem", PKCS8_KEY.replace("-----END PRIVATE KEY-----", "")),
        ("private_key_pem", PKCS8_KEY.replace("-----BEGIN PRIVATE KEY-----", "")),
        (
            "private_key_pem",
            PKCS8_KEY.replace("END PRIVATE KEY", "END RSA PRIVATE KEY"),
        ),
        ("private_key_pem", PKCS8_KEY.replace("MC4C", "MC4*")),
        ("private_key_pem", PKCS8_KEY.replace("MC4C", "QUJD")),
        (
            "private_key_pem",
            "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----".to_owned(),
        ),
        ("private_key_pem", CERTIFICATE.to_owned()),
        ("private_key_pem", format!("{PKCS8_KEY}\n{PKCS8_KEY}")),
        ("private_key_pem", format!("{PKCS8_KEY}\n{CERTIFICATE}")),
        (
            "private_key_pem",
            OPENSSH_KEY.replace("b3BlbnNzaC1rZXktdjEA", "MC4CAQAwBQYDK2VwBCIE"),
        ),
        ("certificate_pem", PKCS8_KEY.to_owned()),
        ("certificate_pem", format!("{CERTIFICATE}\n{PKCS8_KEY}")),
        (
            "certificate_pem",
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE"),
        ),
        (
            "certificate_pem",
            String::from("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
        ),
    ];
    for (field, value) in cases {
        let mut f = example(CredentialType::Azure, v);
        f[field] = json!(value);
        let e = errs(CredentialType::Azure, v, f);
        assert_eq!(e.len(), 1, "{field}: {value}\n{e:#?}");
        assert_has(&e, &format!("fields.{field}"), "invalid_format");
    }
}

#[test]
fn accepted_pem_forms_include_pkcs8_openssh_legacy_encrypted_rsa_ec_and_chains() {
    for key in [
        PKCS8_KEY,
        OPENSSH_KEY,
        RSA_ENCRYPTED_KEY,
        EC_KEY_WITH_PARAMS,
        &PKCS8_KEY.replace('\n', "\r\n"),
        &format!("Bag Attributes\n    localKeyID: 01\n{PKCS8_KEY}\n\n"),
    ] {
        assert_eq!(check_str(Check::PrivateKeyPem, key, false), Ok(()), "{key}");
        assert_eq!(check_str(Check::Pem, key, false), Ok(()), "{key}");
    }
    let chain = format!("{CERTIFICATE}\n{CERTIFICATE}");
    assert_eq!(check_str(Check::CertificatePem, &chain, false), Ok(()));
    assert_eq!(
        check_str(Check::Pem, &format!("{CERTIFICATE}{PKCS8_KEY}"), false),
        Ok(())
    );
    assert!(check_str(Check::Pem, "", false).is_err());
}

#[test]
fn a_malformed_gcp_service_account_json_is_rejected_with_invalid_format() {
    let v = Some("service_account");
    let mut sa: Value = serde_json::from_str(&sa_json()).unwrap();
    let mut variants = Vec::new();
    variants.push(("not json", "{\"type\": \"service_account\",".to_owned()));
    variants.push(("not an object", "[1, 2]".to_owned()));
    for (what, key, value) in [
        ("wrong type", "type", json!("authorized_user")),
        ("missing type", "type", Value::Null),
        ("missing private_key", "private_key", Value::Null),
        ("bad private_key", "private_key", json!("MIIE...")),
        ("certificate as private_key", "private_key", json!(CERTIFICATE)),
        ("missing client_email", "client_email", Value::Null),
        ("bad client_email", "client_email", json!("loader")),
        ("bad token_uri", "token_uri", json!("ftp://x")),
        ("numeric project_id", "project_id", json!(42)),
    ] {
        let mut doc = sa.clone();
        if value.is_null() {
            doc.as_object_mut().unwrap().remove(key);
        } else {
            doc[key] = value;
        }
        variants.push((what, doc.to_string()));
    }
    for (what, doc) in variants {
        let e = errs(CredentialType::Gcp, v, json!({"service_account_json": doc}));
        assert_eq!(e.len(), 1, "{what}: {e:#?}");
        assert_has(&e, "fields.service_account_json", "invalid_format");
    }
    // Missing project_id and token_uri are fine.
    sa.as_object_mut().unwrap().remove("project_id");
    sa.as_object_mut().unwrap().remove("token_uri");
    ok(CredentialType::Gcp, v, json!({"service_account_json": sa.to_string()}));
    // An object instead of a string is a type error.
    let e = errs(CredentialType::Gcp, v, json!({"service_account_json": sa}));
    assert_has(&e, "fields.service_account_json", "wrong_type");
}

#[test]
fn a_malformed_gcp_external_account_json_is_rejected_with_invalid_format() {
    let v = Some("workload_identity_federation");
    let base: Value = serde_json::from_str(&external_account_json()).unwrap();
    for (key, value) in [
        ("type", json!("service_account")),
        ("audience", Value::Null),
        ("subject_token_type", json!("")),
        ("token_url", json!("sts.googleapis.com")),
        ("credential_source", json!("file")),
        ("service_account_impersonation_url", json!("not a url")),
    ] {
        let mut doc = base.clone();
        if value.is_null() {
            doc.as_object_mut().unwrap().remove(key);
        } else {
            doc[key] = value;
        }
        let e = errs(
            CredentialType::Gcp,
            v,
            json!({"external_account_json": doc.to_string()}),
        );
        assert_eq!(e.len(), 1, "{key}");
        assert_has(&e, "fields.external_account_json", "invalid_format");
    }
}

#[test]
fn no_error_ever_contains_a_submitted_secret_value() {
    let huge = format!("{CANARY} ").repeat(256 * 1024 / CANARY.len() + 10);
    // Invalid for every secret field.
    let always_bad = [
        json!([CANARY]),
        json!({CANARY: CANARY}),
        json!(huge),
        json!([{ "value": CANARY }]),
    ];
    let sa_with = |key: &str, value: Value| {
        let mut doc: Value = serde_json::from_str(&sa_json()).unwrap();
        doc[key] = value;
        doc.to_string()
    };
    // Invalid for secret fields that have a format check.
    let bad_formats = [
        json!(CANARY),
        json!(format!("{CANARY}\n{PKCS8_KEY}\n{CANARY}").replace("MC4C", "MC4*")),
        json!(format!("-----BEGIN {CANARY}-----\n{CANARY}\n-----END {CANARY}-----")),
        json!(format!("-----BEGIN {CANARY}-----\nQUJD\n-----END {CANARY}-----")),
        json!(format!(
            "-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----"
        )),
        json!(format!(
            "-----BEGIN CANARY PRIVATE KEY-----\nQUJD\n-----END {CANARY}-----"
        )),
        json!(format!("{CERTIFICATE}\n{PKCS8_KEY}\n{CANARY}")),
        json!(format!("{{\"{CANARY}\": ")),
        json!(format!("[\"{CANARY}\"]")),
        json!(json!({"type": CANARY, "private_key": CANARY}).to_string()),
        json!(sa_with("client_email", json!(CANARY))),
        json!(sa_with("private_key", json!(CANARY))),
        json!(sa_with(
            "private_key",
            json!(format!("-----BEGIN {CANARY}-----\nQUJD\n-----END {CANARY}-----"))
        )),
        json!(sa_with("token_uri", json!(format!("https://{CANARY}@x")))),
        json!(sa_with("project_id", json!([CANARY]))),
        json!(
            json!({"type": "external_account", "audience": CANARY, "subject_token_type": CANARY,
                     "token_url": CANARY, "credential_source": {}})
            .to_string()
        ),
        json!(
            json!({"type": "external_account", "audience": CANARY, "subject_token_type": CANARY,
                     "token_url": "https://sts.example", "credential_source": CANARY})
            .to_string()
        ),
    ];

    let mut secret_fields_seen = 0;
    for (ty, variant, fields) in examples() {
        let vs = resolve_variant(ty, variant).unwrap();
        let mut paths = Vec::new();
        leaf_paths(vs.fields, &fields, "", &mut paths);
        paths.retain(|p| field_at(vs.fields, p).secret);
        for path in paths {
            secret_fields_seen += 1;
            let checked = !matches!(field_at(vs.fields, &path).check, Check::None | Check::NonEmpty);
            for (i, bad) in always_bad.iter().chain(bad_formats.iter()).enumerate() {
                let must_fail = i < always_bad.len() || checked;
                let mut f = fields.clone();
                set_path(&mut f, &path, bad.clone());
                match validate(ty, variant, f) {
                    Ok(_) => assert!(!must_fail, "{ty}/{path} accepted bad value #{i}"),
                    Err(errors) => {
                        assert!(
                            errors.iter().any(|e| e.field == format!("fields.{path}")),
                            "{ty}/{path} #{i}: {errors:#?}"
                        );
                        for e in &errors {
                            assert!(
                                !e.field.contains(CANARY)
                                    && !e.message.contains(CANARY)
                                    && !e.message.contains("CANARY")
                                    && !e.message.contains("7f3a"),
                                "{ty}/{path} #{i} leaked: {e:?}"
                            );
                        }
                        let json = serde_json::to_string(&errors).unwrap();
                        assert!(!json.contains(CANARY));
                    }
                }
            }
        }
    }
    // Every secret field of every variant was exercised (database tunnels count twice).
    assert!(secret_fields_seen >= 20, "{secret_fields_seen}");
}

#[test]
fn short_non_secret_values_are_quoted_in_messages_and_long_ones_are_not() {
    let v = Some("access_key");
    let mut f = example(CredentialType::Aws, v);
    f["region"] = json!("moon-base");
    let e = errs(CredentialType::Aws, v, f);
    assert_has(&e, "fields.region", "invalid_format");
    assert!(e[0].message.contains("\"moon-base\""), "{}", e[0].message);

    let long = format!("{}Z", "x".repeat(80));
    let mut f = example(CredentialType::Aws, v);
    f["region"] = json!(long);
    let e = errs(CredentialType::Aws, v, f);
    assert!(!e[0].message.contains("xxxx"), "{}", e[0].message);
}

#[test]
fn a_port_must_be_between_1_and_65535() {
    for (port, good) in [
        (json!(1), true),
        (json!(65535), true),
        (json!(0), false),
        (json!(65536), false),
        (json!(-22), false),
    ] {
        let mut f = example(CredentialType::Database, None);
        f["ssh_tunnel"]["port"] = port.clone();
        match validate(CredentialType::Database, None, f) {
            Ok(_) => assert!(good, "{port}"),
            Err(e) => {
                assert!(!good, "{port}");
                assert_has(&e, "fields.ssh_tunnel.port", "invalid_format");
            }
        }
    }
}

#[test]
fn api_key_parts_need_between_1_and_16_items() {
    let part = json!({"name": "X-Key", "value": "v", "in": "header"});
    let e = errs(CredentialType::ApiKey, None, json!({"parts": []}));
    assert_has(&e, "fields.parts", "empty");
    ok(CredentialType::ApiKey, None, json!({"parts": vec![part.clone(); 16]}));
    let e = errs(CredentialType::ApiKey, None, json!({"parts": vec![part; 17]}));
    assert_has(&e, "fields.parts", "too_long");
}

#[test]
fn api_key_part_names_are_header_names_unless_sent_in_the_query() {
    let e = errs(
        CredentialType::ApiKey,
        None,
        json!({"parts": [{"name": "X Key", "value": "v", "in": "header"}]}),
    );
    assert_has(&e, "fields.parts[0].name", "invalid_format");
    ok(
        CredentialType::ApiKey,
        None,
        json!({"parts": [{"name": "X Key", "value": "v", "in": "query"}]}),
    );
    let e = errs(
        CredentialType::ApiKey,
        None,
        json!({"parts": [{"name": "k".repeat(129), "value": "v", "in": "query"}]}),
    );
    assert_has(&e, "fields.parts[0].name", "invalid_format");
    let e = errs(
        CredentialType::ApiKey,
        None,
        json!({"parts": [{"name": "X-Key", "value": "v", "in": "cookie"}]}),
    );
    assert_has(&e, "fields.parts[0].in", "invalid_format");
    assert!(e[0].message.contains("header, query"));
}

#[test]
fn api_key_headers_need_header_names_and_values_without_control_characters() {
    let part = json!([{"name": "X-Key", "value": "v", "in": "header"}]);
    let e = errs(
        CredentialType::ApiKey,
        None,
        json!({"parts": part, "headers": {"Bad Name": "x", "X-Ok": "a\r\nInjected: 1"}}),
    );
    assert_has(&e, "fields.headers.Bad Name", "invalid_format");
    assert_has(&e, "fields.headers.X-Ok", "invalid_format");
    let many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let e = errs(CredentialType::ApiKey, None, json!({"parts": part, "headers": many}));
    assert_has(&e, "fields.headers", "too_long");
    ok(
        CredentialType::ApiKey,
        None,
        json!({"parts": part, "headers": {"X-Empty": ""}}),
    );
}

#[test]
fn timestamps_must_be_rfc_3339() {
    let v = Some("authorization_code");
    for bad in ["2025-01-31", "2025-01-31 12:00:00", "yesterday", "2025-13-01T00:00:00Z"] {
        let mut f = example(CredentialType::Oauth, v);
        f["authorized_at"] = json!(bad);
        assert_has(
            &errs(CredentialType::Oauth, v, f),
            "fields.authorized_at",
            "invalid_format",
        );
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let e = errs(
        CredentialType::Azure,
        Some("client_secret"),
        json!({"tenant_id": "not a tenant", "client_id": "nope", "extra": 1}),
    );
    assert_has(&e, "fields.tenant_id", "invalid_format");
    assert_has(&e, "fields.client_id", "invalid_format");
    assert_has(&e, "fields.client_secret", "required");
    assert_has(&e, "fields.extra", "unknown_field");
    assert_eq!(e.len(), 4);
}

#[test]
fn format_checks_accept_and_reject_the_documented_shapes() {
    let cases: &[(Check, &[&str], &[&str])] = &[
        (
            Check::Url,
            &[
                "https://example.com",
                "http://127.0.0.1:8080/token?x=1",
                "HTTPS://EXAMPLE.COM/a#b",
                "http://[::1]:9/",
                "http://localhost",
            ],
            &[
                "",
                "example.com",
                "ftp://x",
                "https://",
                "https://user:pw@example.com",
                "https://a b",
                "https://x:0",
                "https://x:70000",
                "https://x:",
                "http://[::1",
                "http://a:b:80",
            ],
        ),
        (
            Check::Uuid,
            &[UUID_A, UUID_B],
            &[
                "8f14e45f-ceea-467f-a5b6-1c2d3e4f5a6",
                "8f14e45fceea467fa5b61c2d3e4f5a6b",
                "g814e45f-ceea-467f-a5b6-1c2d3e4f5a6b",
            ],
        ),
        (
            Check::AzureTenantId,
            &[UUID_A, "contoso.onmicrosoft.com", "example.com."],
            &["contoso", "-bad.com", "a..b", "common", "1.2.3.4"],
        ),
        (
            Check::AwsRegion,
            &["us-east-1", "ap-southeast-2", "us-gov-west-1", "eu-isoe-west-1"],
            &["us-east", "US-EAST-1", "us_east_1", "1-east-us", "us--1", "us-east-1a"],
        ),
        (
            Check::AwsAccessKeyId,
            &["AKIAIOSFODNN7EXAMPLE", "ASIA1234567890123456"],
            &["AKIA123", "akiaiosfodnn7example", "AKIAIOSFODNN7EXAMPL+"],
        ),
        (
            Check::CredentialId,
            &[CRED_ID, "cred_22222222222222222222222222"],
            &[
                "cred_abc",
                "cred_ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "cred_abcdefghijklmnopqrstuvwxy1",
                "conn_abcdefghijklmnopqrstuvwxyz",
            ],
        ),
        (
            Check::AwsSessionName,
            &["ab", "run-42@credvault.io"],
            &["a", "has space", "slash/not"],
        ),
        (Check::AwsExternalId, &["ab", "a:b/c"], &["a", "no spaces"]),
        (
            Check::HeaderName,
            &["X-API-Key", "authorization", "x_!#$%&'*+.^`|~"],
            &["", "X Key", "X:Key", "Ключ"],
        ),
        (
            Check::OAuthParamName,
            &["access_type", "prompt", "login_hint", "hd", "a.b~c-d"],
            &[
                "",
                "state",
                "redirect_uri",
                "code_challenge",
                "scope",
                "x y",
                "a&b",
                "a=b",
            ],
        ),
        (
            Check::SshHostKey,
            &[
                SSH_HOST_KEY,
                SSH_HOST_KEY.trim_end_matches(" test"),
                &format!("bastion.example.com,10.0.0.1 {SSH_HOST_KEY}"),
            ],
            &[
                "ssh-ed25519",
                "ssh-dsa AAAA",
                "AAAAC3NzaC1lZDI1NTE5",
                "ssh-ed25519 !!!!",
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAICvetwQHN4E+0aOrtmeDkwI+VH/a+yYcE0w5L9CiiEzE",
            ],
        ),
    ];
    for (check, good, bad) in cases {
        for g in *good {
            assert_eq!(check_str(*check, g, false), Ok(()), "{check:?} should accept {g:?}");
        }
        for b in *bad {
            assert!(check_str(*check, b, false).is_err(), "{check:?} should reject {b:?}");
        }
    }
}

// ------------------------------------------------------------------------------------ types_json

#[test]
fn types_json_honors_the_enabled_list_in_all_order() {
    let j = types_json(&[
        CredentialType::Password,
        CredentialType::Database,
        CredentialType::Password,
    ]);
    let types: Vec<_> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["database", "password"]);
    assert_eq!(types_json(&[]), json!([]));
    assert_eq!(types_json(&CredentialType::ALL).as_array().unwrap().len(), 7);
}

#[test]
fn types_json_describes_variants_fields_nesting_enums_and_formats() {
    let j = types_json(&[CredentialType::Database, CredentialType::ApiKey, CredentialType::Aws]);
    // In ALL order: aws, database, api_key.
    let db = &j[1];
    assert_eq!(db["type"], "database");
    assert_eq!(db["default_variant"], "password");
    assert!(db["title"].is_string() && db["description"].is_string());
    let password_variant = &db["variants"][0];
    assert_eq!(password_variant["name"], "password");
    let fields = password_variant["fields"].as_array().unwrap();
    let pw = fields.iter().find(|f| f["name"] == "password").unwrap();
    assert_eq!(pw["kind"], "string");
    assert_eq!(pw["secret"], true);
    assert_eq!(pw["required"], true);
    assert!(pw["description"].is_string());
    let tunnel = fields.iter().find(|f| f["name"] == "ssh_tunnel").unwrap();
    assert_eq!(tunnel["kind"], "object");
    assert_eq!(tunnel["required"], false);
    let port = tunnel["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "port")
        .unwrap();
    assert_eq!(port["kind"], "integer");
    assert_eq!(port["format"], "port");

    let api = &j[2];
    assert_eq!(api["type"], "api_key");
    let parts = &api["variants"][0]["fields"][0];
    assert_eq!(parts["kind"], "list");
    assert_eq!(
        (parts["min_items"].as_u64(), parts["max_items"].as_u64()),
        (Some(1), Some(16))
    );
    let inn = parts["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "in")
        .unwrap();
    assert_eq!(inn["kind"], "enum");
    assert_eq!(inn["values"], json!(["header", "query"]));
    assert_eq!(api["variants"][0]["fields"][1]["kind"], "string_map");

    let aws = &j[0];
    assert_eq!(aws["type"], "aws");
    assert_eq!(aws["default_variant"], Value::Null);
    let arn = &aws["variants"][1]["fields"][0];
    assert_eq!(
        (arn["name"].as_str(), arn["format"].as_str()),
        (Some("role_arn"), Some("aws_role_arn"))
    );
}

#[test]
fn field_errors_serialize_as_field_code_and_message() {
    let e = errs(CredentialType::Password, None, json!({}));
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!([{"field": "fields.password", "code": "required", "message": "is required"}])
    );
    assert_eq!(e[0].to_string(), "fields.password: is required");
}
