//! Bad input of every kind — malformed, truncated or oversized JSON, wrong types, odd ids and
//! paths, bad query parameters and version numbers, wrong content types, missing tokens — gets
//! an exact 4xx problem document with a stable code (and the offending field), never a 5xx, and
//! the server keeps serving afterwards. Problem documents never echo a submitted secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Backend, Server};
use serde_json::{Value, json};

/// A secret-looking value that must never come back in an answer, a log line or an audit event.
const SECRET: &str = "SECRET-ECHO-123";

/// What a case sends as its body.
enum Body {
    /// No body and no content type.
    None,
    /// Bytes under a content type.
    Raw(String, Vec<u8>),
}

/// Which credentials a case presents.
enum Token {
    /// The bootstrap admin's bearer token.
    Admin,
    /// No `Authorization` header.
    Missing,
    /// This exact `Authorization` header.
    Header(String),
}

/// One bad request and the problem document it must get.
struct Case {
    what: String,
    method: &'static str,
    path: String,
    token: Token,
    body: Body,
    status: u16,
    code: &'static str,
    field: Option<String>,
    first_error: Option<&'static str>,
}

fn case(what: impl Into<String>, method: &'static str, path: impl Into<String>) -> Case {
    Case {
        what: what.into(),
        method,
        path: path.into(),
        token: Token::Admin,
        body: Body::None,
        status: 0,
        code: "",
        field: None,
        first_error: None,
    }
}

impl Case {
    /// A JSON body.
    fn json(self, v: &Value) -> Case {
        self.raw("application/json", serde_json::to_vec(v).unwrap())
    }
    /// Text sent as `application/json`, valid JSON or not.
    fn text(self, s: impl Into<String>) -> Case {
        self.raw("application/json", s.into().into_bytes())
    }
    /// Bytes under a content type.
    fn raw(mut self, content_type: &str, bytes: Vec<u8>) -> Case {
        self.body = Body::Raw(content_type.to_owned(), bytes);
        self
    }
    fn token(mut self, t: Token) -> Case {
        self.token = t;
        self
    }
    /// The expected status and problem code.
    fn is(mut self, status: u16, code: &'static str) -> Case {
        self.status = status;
        self.code = code;
        self
    }
    /// The expected `field` of the problem.
    fn field(mut self, f: impl Into<String>) -> Case {
        self.field = Some(f.into());
        self
    }
    /// The expected code of `errors[0]` (credential field validation).
    fn first_error(mut self, code: &'static str) -> Case {
        self.first_error = Some(code);
        self
    }
}

/// What came back.
struct Answer {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    connection: Option<String>,
    text: String,
    body: Value,
}

async fn send(srv: &Server, c: &Case) -> Result<Answer, String> {
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    // An oversized body goes over a connection of its own: the server may close it before
    // reading the body, and a pooled connection must not be reused after that.
    let oversized = matches!(&c.body, Body::Raw(_, b) if b.len() > 1024 * 1024);
    let client = if oversized {
        reqwest::Client::new()
    } else {
        srv.http.clone()
    };
    let mut req = client.request(method, format!("{}{}", srv.base, c.path));
    match &c.token {
        Token::Admin => req = req.bearer_auth(&srv.admin),
        Token::Missing => {}
        Token::Header(h) => req = req.header("authorization", h.as_str()),
    }
    if let Body::Raw(ct, bytes) = &c.body {
        req = req.header("content-type", ct.as_str()).body(bytes.clone());
    }
    let r = req
        .send()
        .await
        .map_err(|e| format!("request failed (server down?): {e}"))?;
    let status = r.status().as_u16();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let connection = header("connection");
    let text = r.text().await.map_err(|e| format!("body unreadable: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        content_type,
        www_authenticate,
        connection,
        text,
        body,
    })
}

/// Everything wrong with one answer.
fn check(c: &Case, a: &Answer) -> Vec<String> {
    let mut bad = Vec::new();
    if a.status != c.status {
        bad.push(format!("status {} (want {})", a.status, c.status));
    }
    if a.status >= 500 {
        bad.push("a 5xx for bad input".to_owned());
    }
    if !a.content_type.starts_with("application/problem+json") {
        bad.push(format!("not a problem document (content type {:?})", a.content_type));
        return bad;
    }
    let b = &a.body;
    if b["code"] != c.code {
        bad.push(format!("code {} (want {:?})", b["code"], c.code));
    }
    if b["status"] != a.status {
        bad.push(format!("problem status {} differs from the HTTP status", b["status"]));
    }
    for k in ["type", "title", "detail", "request_id"] {
        if b[k].as_str().is_none_or(str::is_empty) {
            bad.push(format!("no `{k}` in the problem"));
        }
    }
    if let Some(f) = &c.field
        && b["field"] != f.as_str()
    {
        bad.push(format!("field {} (want {f:?})", b["field"]));
    }
    if let Some(code) = c.first_error {
        if b["errors"][0]["code"] != code {
            bad.push(format!("errors[0].code {} (want {code:?})", b["errors"][0]["code"]));
        }
        let well_formed = b["errors"].as_array().is_some_and(|es| {
            es.iter()
                .all(|e| e["field"].is_string() && e["code"].is_string() && e["message"].is_string())
        });
        if !well_formed {
            bad.push("errors is not a list of {field, code, message}".to_owned());
        }
    }
    // The server stops reading an oversized body: it must say it closes the connection, or a
    // keep-alive client sends its next request into a closed socket.
    if a.status == 413 && !a.connection.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("close")) {
        bad.push(format!("413 without `Connection: close` (got {:?})", a.connection));
    }
    if a.status == 401 && a.www_authenticate.as_deref() != Some("Bearer") {
        bad.push(format!(
            "401 without `WWW-Authenticate: Bearer` (got {:?})",
            a.www_authenticate
        ));
    }
    bad
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n).collect();
    out.push('…');
    out
}

/// Sends every case and returns a line per case answered wrongly.
async fn run_cases(srv: &Server, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let problems = match send(srv, c).await {
            Ok(a) => {
                let bad = check(c, &a);
                if bad.is_empty() {
                    None
                } else {
                    Some(format!("{}\n      body: {}", bad.join("; "), shorten(&a.text, 300)))
                }
            }
            Err(e) => Some(e),
        };
        if let Some(p) = problems {
            failures.push(format!("  {} {} — {}: {p}", c.method, shorten(&c.path, 100), c.what));
        }
    }
    failures
}

/// A valid create body for a database credential in the default workspace.
fn create_body(srv: &Server, name: &str) -> Value {
    json!({"name": name, "type": "database", "workspace_id": srv.ws_id, "environment": "prod",
           "labels": {"system": "postgres", "owner_team": "data-platform"},
           "rotation_period_days": 90,
           "fields": {"username": "loader", "password": "not-a-real-password"}})
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// Bodies that are not JSON at all, or not quite.
fn malformed_json(srv: &Server) -> Vec<Case> {
    let valid = serde_json::to_string(&create_body(srv, "probe")).unwrap();
    let post = |what: &str, text: String| {
        case(what, "POST", "/v1/credentials")
            .text(text)
            .is(400, "malformed_json")
    };
    let mut cases = vec![
        post("a lone brace", "{".into()),
        post("cut after a member", r#"{"name": "probe","#.into()),
        post("truncated in the middle", valid[..valid.len() / 2].to_owned()),
        post("missing the closing brace", valid[..valid.len() - 1].to_owned()),
        post("a trailing comma", r#"{"name": "probe",}"#.into()),
        post("single quotes", "{'name': 'probe'}".into()),
        post("unquoted keys", r#"{name: "probe"}"#.into()),
        post("a missing comma", r#"{"name": "probe" "type": "database"}"#.into()),
        post("an empty body", String::new()),
        post("only whitespace", "  \n\t ".into()),
        post("a truncated literal", "nul".into()),
        post("NaN", r#"{"rotation_period_days": NaN}"#.into()),
        post("Infinity", r#"{"rotation_period_days": Infinity}"#.into()),
        post("a leading zero", r#"{"rotation_period_days": 090}"#.into()),
        post("a number out of range", r#"{"rotation_period_days": 1e400}"#.into()),
        post("an invalid escape", r#"{"name": "\x"}"#.into()),
        post("a lone surrogate escape", r#"{"name": "\ud800"}"#.into()),
        post("a raw control character in a string", "{\"name\": \"a\u{1}b\"}".into()),
        post("a comment", format!("// create\n{valid}")),
        post(
            "an unterminated 500 KB string",
            format!("{{\"name\": \"{}", "a".repeat(500_000)),
        ),
        post("a byte-order mark", format!("\u{feff}{valid}")),
        post(
            "10k nested arrays inside fields",
            format!(r#"{{"name": "probe", "fields": {}}}"#, nested_arrays(10_000)),
        ),
        post(
            "10k nested objects inside labels",
            format!(r#"{{"name": "probe", "labels": {}}}"#, nested_objects(10_000)),
        ),
        // A valid document followed by anything is not valid JSON.
        post(
            "a valid body followed by garbage",
            format!(
                "{} garbage",
                serde_json::to_string(&create_body(srv, "trailing-garbage")).unwrap()
            ),
        ),
        post(
            "two concatenated bodies",
            format!(
                "{}{}",
                serde_json::to_string(&create_body(srv, "concatenated-a")).unwrap(),
                serde_json::to_string(&create_body(srv, "concatenated-b")).unwrap()
            ),
        ),
    ];
    cases.push(
        case("non-UTF-8 bytes in a string", "POST", "/v1/credentials")
            .raw("application/json", b"{\"name\": \"\xff\xfe\"}".to_vec())
            .is(400, "malformed_json"),
    );
    let mut secret_bytes = serde_json::to_vec(&create_body(srv, "non-utf8-secret")).unwrap();
    let at = secret_bytes.windows(3).position(|w| w == b"not").unwrap();
    secret_bytes[at] = 0xc3;
    secret_bytes[at + 1] = 0x28;
    cases.push(
        case("invalid UTF-8 inside a secret field", "POST", "/v1/credentials")
            .raw("application/json", secret_bytes)
            .is(400, "malformed_json"),
    );
    cases
}

/// Well-formed JSON of the wrong shape or with wrong types.
fn wrong_shapes(srv: &Server) -> Vec<Case> {
    let post = |what: String, body: &Value| case(what, "POST", "/v1/credentials").json(body);
    let base = create_body(srv, "probe");
    let mut cases = Vec::new();
    // Not an object at all. (An array must never be read as the members in order.)
    for text in ["[]", "[1, 2, 3]", "[{}]", "\"just a string\"", "42", "null", "true"] {
        cases.push(
            case(format!("the body {text}"), "POST", "/v1/credentials")
                .text(text)
                .is(422, "invalid_field"),
        );
    }
    cases.push(
        case("10k nested arrays as the body", "POST", "/v1/credentials")
            .text(nested_arrays(10_000))
            .is(422, "invalid_field"),
    );
    let positional = json!([
        "array-positional", "database", null, srv.ws_id, null, "prod", null, null, null, null,
        {"username": "loader", "password": "not-a-real-password"}
    ]);
    cases.push(
        case("a positional array holding every member", "POST", "/v1/credentials")
            .json(&positional)
            .is(422, "invalid_field"),
    );

    // Wrong types, member by member.
    let wrong: &[(&str, &[Value])] = &[
        (
            "name",
            &[json!(5), json!(null), json!([]), json!({}), json!(true), json!(1.5)],
        ),
        ("type", &[json!(5), json!(null), json!(["database"]), json!({})]),
        ("variant", &[json!(5), json!([]), json!({}), json!(true)]),
        (
            "workspace_id",
            &[
                json!(5),
                json!([]),
                json!("ws_bad"),
                json!(""),
                json!(srv.org_id),
                json!(srv.ws_id.to_uppercase()),
            ],
        ),
        ("environment", &[json!(5), json!(null), json!(["prod"])]),
        ("labels", &[json!("system:postgres"), json!([]), json!(5), json!(true)]),
        ("description", &[json!(5), json!([]), json!({})]),
        ("expires_at", &[json!(5), json!(true), json!({})]),
        (
            "rotation_period_days",
            &[
                json!("90"),
                json!(1.5),
                json!(true),
                json!([]),
                json!(1e20),
                json!(-1e20),
            ],
        ),
    ];
    for (key, vals) in wrong {
        for v in *vals {
            cases.push(
                post(format!("{key} = {v}"), &with(base.clone(), key, v.clone()))
                    .is(422, "invalid_field")
                    .field(*key),
            );
        }
    }
    let org_scoped = without(base.clone(), "workspace_id");
    for v in [json!(5), json!("org_bad"), json!(srv.ws_id)] {
        cases.push(
            post(format!("org_id = {v}"), &with(org_scoped.clone(), "org_id", v))
                .is(422, "invalid_field")
                .field("org_id"),
        );
    }
    for key in ["name", "type", "environment", "fields"] {
        cases.push(
            post(format!("{key} missing"), &without(base.clone(), key))
                .is(422, "invalid_field")
                .field(key),
        );
    }
    for key in ["secret", "Name", "password", "fields_extra"] {
        cases.push(
            post(format!("an unknown member {key}"), &with(base.clone(), key, json!("x")))
                .is(422, "invalid_field")
                .field(key),
        );
    }
    let dup = serde_json::to_string(&base)
        .unwrap()
        .replacen('{', r#"{"name": "first","#, 1);
    cases.push(
        case("a duplicate member", "POST", "/v1/credentials")
            .text(dup)
            .is(422, "invalid_field")
            .field("name"),
    );
    let text = serde_json::to_string(&base).unwrap();
    for big in ["99999999999999999999", "-99999999999999999999"] {
        let body = text.replace(
            "\"rotation_period_days\":90",
            &format!("\"rotation_period_days\":{big}"),
        );
        assert_ne!(body, text);
        cases.push(
            case(format!("rotation_period_days {big}"), "POST", "/v1/credentials")
                .text(body)
                .is(422, "invalid_field")
                .field("rotation_period_days"),
        );
    }
    cases
}

/// Well-typed values the domain refuses.
fn invalid_values(srv: &Server) -> Vec<Case> {
    let post = |what: String, body: &Value| case(what, "POST", "/v1/credentials").json(body);
    let base = create_body(srv, "probe");
    let mut cases = Vec::new();
    let names = [
        String::new(),
        " ".into(),
        "has space".into(),
        "a/b".into(),
        "../../etc/passwd".into(),
        "back\\slash".into(),
        "-leading-dash".into(),
        ".hidden".into(),
        "naïve".into(),
        "nul\u{0}byte".into(),
        "line\nbreak".into(),
        "x".repeat(129),
        "x".repeat(100_000),
    ];
    for n in names {
        cases.push(
            post(
                format!("name {:?}", shorten(&n, 20)),
                &with(base.clone(), "name", json!(n)),
            )
            .is(422, "invalid_name")
            .field("name"),
        );
    }
    for e in [
        String::new(),
        "PROD".into(),
        "pr od".into(),
        "prod\n".into(),
        "é".into(),
        "x".repeat(33),
        "x".repeat(100_000),
    ] {
        cases.push(
            post(
                format!("environment {:?}", shorten(&e, 20)),
                &with(base.clone(), "environment", json!(e)),
            )
            .is(422, "invalid_environment")
            .field("environment"),
        );
    }
    for t in [
        String::from("nope"),
        String::new(),
        "DATABASE".into(),
        "x".repeat(100_000),
    ] {
        cases.push(
            post(
                format!("type {:?}", shorten(&t, 20)),
                &with(base.clone(), "type", json!(t)),
            )
            .is(422, "unknown_type")
            .field("type"),
        );
    }
    for v in [
        String::from("nope"),
        String::new(),
        "PASSWORD".into(),
        "x".repeat(100_000),
    ] {
        cases.push(
            post(
                format!("variant {:?}", shorten(&v, 20)),
                &with(base.clone(), "variant", json!(v)),
            )
            .is(422, "invalid_fields")
            .field("variant")
            .first_error("invalid_variant"),
        );
    }
    let aws = json!({
        "name": "probe", "type": "aws", "workspace_id": srv.ws_id, "environment": "prod",
        "fields": {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "not-a-real-key"}
    });
    cases.push(
        post("aws without a variant".into(), &aws)
            .is(422, "invalid_fields")
            .field("variant")
            .first_error("variant_required"),
    );
    cases.push(
        post("aws with variant null".into(), &with(aws, "variant", json!(null)))
            .is(422, "invalid_fields")
            .first_error("variant_required"),
    );

    // Scope.
    cases.push(
        post(
            "both workspace_id and org_id".into(),
            &with(base.clone(), "org_id", json!(srv.org_id)),
        )
        .is(422, "scope_required")
        .field("workspace_id"),
    );
    cases.push(
        post(
            "neither workspace_id nor org_id".into(),
            &without(base.clone(), "workspace_id"),
        )
        .is(422, "scope_required")
        .field("workspace_id"),
    );
    let ghost_ws = format!("ws_{}", "a".repeat(26));
    let ghost_org = format!("org_{}", "a".repeat(26));
    cases.push(
        post(
            "a workspace that does not exist".into(),
            &with(base.clone(), "workspace_id", json!(ghost_ws)),
        )
        .is(404, "not_found"),
    );
    cases.push(
        post(
            "an organization that does not exist".into(),
            &with(without(base.clone(), "workspace_id"), "org_id", json!(ghost_org)),
        )
        .is(404, "not_found"),
    );

    // Labels.
    let long_key = "k".repeat(64);
    let labels: Vec<(Value, String)> = vec![
        (json!({"Owner": "x"}), "labels.Owner".into()),
        (json!({"": "x"}), "labels.".into()),
        (json!({"has space": "x"}), "labels.has space".into()),
        (json!({"naïve": "x"}), "labels.naïve".into()),
        (json!({"k": 5}), "labels.k".into()),
        (json!({"k": null}), "labels.k".into()),
        (json!({"k": true}), "labels.k".into()),
        (json!({"k": ["a"]}), "labels.k".into()),
        (json!({"k": {"a": "b"}}), "labels.k".into()),
        (json!({"k": "x".repeat(257)}), "labels.k".into()),
        (json!({"k": "x".repeat(500_000)}), "labels.k".into()),
        (json!({"k": "a\nb"}), "labels.k".into()),
        (json!({long_key.clone(): "v"}), format!("labels.{long_key}")),
    ];
    for (l, field) in labels {
        cases.push(
            post(
                format!("labels {}", shorten(&l.to_string(), 40)),
                &with(base.clone(), "labels", l),
            )
            .is(422, "invalid_label")
            .field(field),
        );
    }
    let many: serde_json::Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    cases.push(
        post("33 labels".into(), &with(base.clone(), "labels", Value::Object(many)))
            .is(422, "too_many")
            .field("labels"),
    );

    // Description, expiry, rotation period.
    for len in [4097, 900_000] {
        cases.push(
            post(
                format!("a description of {len} bytes"),
                &with(base.clone(), "description", json!("d".repeat(len))),
            )
            .is(422, "too_long")
            .field("description"),
        );
    }
    let stamps = [
        "tomorrow",
        "2027-01-31",
        "2027-01-31T00:00:00",
        "2027-13-01T00:00:00Z",
        "2027-02-30T00:00:00Z",
        "2027-01-31T25:00:00Z",
        "31/01/2027",
        "",
        "0",
        "-1",
    ];
    for s in stamps {
        cases.push(
            post(format!("expires_at {s:?}"), &with(base.clone(), "expires_at", json!(s)))
                .is(422, "invalid_timestamp")
                .field("expires_at"),
        );
    }
    for d in [0, -1, 3651, 99_999, i64::MAX, i64::MIN] {
        cases.push(
            post(
                format!("rotation_period_days {d}"),
                &with(base.clone(), "rotation_period_days", json!(d)),
            )
            .is(422, "out_of_range")
            .field("rotation_period_days"),
        );
    }

    // Credential fields.
    let fields: Vec<(&str, Value, &str, &str)> = vec![
        ("fields null", json!(null), "required", "fields.username"),
        ("fields {}", json!({}), "required", "fields.username"),
        ("fields a string", json!("username=loader"), "wrong_type", "fields"),
        ("fields an array", json!([]), "wrong_type", "fields"),
        ("fields a number", json!(5), "wrong_type", "fields"),
        (
            "an empty password",
            json!({"username": "loader", "password": ""}),
            "empty",
            "fields.password",
        ),
        (
            "a numeric password",
            json!({"username": "loader", "password": 5}),
            "wrong_type",
            "fields.password",
        ),
        (
            "a null password",
            json!({"username": "loader", "password": null}),
            "required",
            "fields.password",
        ),
        (
            "a 70 KB password",
            json!({"username": "loader", "password": "p".repeat(70_000)}),
            "too_long",
            "fields.password",
        ),
        (
            "an unknown field",
            json!({"username": "loader", "password": "x", "pasword": "y"}),
            "unknown_field",
            "fields.pasword",
        ),
    ];
    for (what, f, code, field) in fields {
        cases.push(
            post(what.into(), &with(base.clone(), "fields", f))
                .is(422, "invalid_fields")
                .field(field)
                .first_error(code),
        );
    }
    let api_key = |parts: Value| {
        json!({"name": "probe", "type": "api_key", "workspace_id": srv.ws_id, "environment": "prod",
               "fields": {"parts": parts}})
    };
    let part = json!({"name": "X-Api-Key", "value": "not-a-real-key", "in": "header"});
    let api_cases: Vec<(&str, Value, &str, &str)> = vec![
        ("api_key without parts", json!([]), "empty", "fields.parts"),
        (
            "api_key parts a string",
            json!("X-Api-Key"),
            "wrong_type",
            "fields.parts",
        ),
        (
            "api_key with 17 parts",
            Value::Array(vec![part.clone(); 17]),
            "too_long",
            "fields.parts",
        ),
        (
            "api_key part sent in the body",
            json!([{"name": "X-Api-Key", "value": "v", "in": "body"}]),
            "invalid_format",
            "fields.parts[0].in",
        ),
        (
            "api_key part not an object",
            json!(["X-Api-Key"]),
            "wrong_type",
            "fields.parts[0]",
        ),
    ];
    for (what, parts, code, field) in api_cases {
        cases.push(
            post(what.into(), &api_key(parts))
                .is(422, "invalid_fields")
                .field(field)
                .first_error(code),
        );
    }
    let oauth = |fields: Value| {
        json!({"name": "probe", "type": "oauth", "variant": "client_credentials",
               "workspace_id": srv.ws_id, "environment": "prod", "fields": fields})
    };
    cases.push(
        post(
            "oauth token_url not a URL".into(),
            &oauth(json!({"client_id": "c", "client_secret": "s", "token_url": "not a url"})),
        )
        .is(422, "invalid_fields")
        .field("fields.token_url")
        .first_error("invalid_format"),
    );
    cases.push(
        post(
            "oauth access_token_expires_at not a timestamp".into(),
            &oauth(json!({"client_id": "c", "client_secret": "s",
                          "token_url": "https://auth.example.com/token",
                          "access_token_expires_at": "soon"})),
        )
        .is(422, "invalid_fields")
        .field("fields.access_token_expires_at")
        .first_error("invalid_format"),
    );
    cases
}

/// Bodies over the limit and bodies that are not JSON by their content type.
fn sizes_and_content_types(srv: &Server, cid: &str) -> Vec<Case> {
    let two_mib = 2 * 1024 * 1024;
    let huge_json = format!("{{\"name\": \"{}\"}}", "a".repeat(two_mib));
    let valid = serde_json::to_vec(&create_body(srv, "probe")).unwrap();
    let mut cases = vec![
        case("a 2 MiB JSON body", "POST", "/v1/credentials")
            .text(huge_json.clone())
            .is(413, "body_too_large"),
        case("a 2 MiB body of garbage", "POST", "/v1/credentials")
            .raw("application/json", vec![b'x'; two_mib])
            .is(413, "body_too_large"),
        case("1 MiB and one byte", "POST", "/v1/credentials")
            .raw("application/json", vec![b' '; 1024 * 1024 + 1])
            .is(413, "body_too_large"),
        case("a 2 MiB version", "POST", format!("/v1/credentials/{cid}/versions"))
            .text(huge_json.clone())
            .is(413, "body_too_large"),
        case("a 2 MiB patch", "PATCH", format!("/v1/credentials/{cid}"))
            .text(huge_json)
            .is(413, "body_too_large"),
        case("no body and no content type", "POST", "/v1/credentials").is(415, "unsupported_media_type"),
    ];
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "json",
        "",
    ] {
        cases.push(
            case(format!("content type {ct:?}"), "POST", "/v1/credentials")
                .raw(ct, valid.clone())
                .is(415, "unsupported_media_type"),
        );
    }
    cases.push(
        case(
            "a version as text/plain",
            "POST",
            format!("/v1/credentials/{cid}/versions"),
        )
        .raw("text/plain", b"{}".to_vec())
        .is(415, "unsupported_media_type"),
    );
    cases.push(
        case("a patch as text/plain", "PATCH", format!("/v1/credentials/{cid}"))
            .raw("text/plain", b"{}".to_vec())
            .is(415, "unsupported_media_type"),
    );
    cases
}

/// Missing and bad tokens.
fn auth(srv: &Server) -> Vec<Case> {
    let valid = serde_json::to_vec(&create_body(srv, "probe")).unwrap();
    vec![
        case("no token", "GET", "/v1/credentials")
            .token(Token::Missing)
            .is(401, "unauthenticated"),
        case("no token on a create", "POST", "/v1/credentials")
            .token(Token::Missing)
            .raw("application/json", valid)
            .is(401, "unauthenticated"),
        case("no token and malformed JSON", "POST", "/v1/credentials")
            .token(Token::Missing)
            .text("{")
            .is(401, "unauthenticated"),
        case("an unknown token", "GET", "/v1/credentials")
            .token(Token::Header("Bearer cvt_nope".into()))
            .is(401, "unauthenticated"),
        case("an empty bearer token", "GET", "/v1/credentials")
            .token(Token::Header("Bearer ".into()))
            .is(401, "unauthenticated"),
        case("basic auth", "GET", "/v1/credentials")
            .token(Token::Header("Basic YWRtaW46YWRtaW4=".into()))
            .is(401, "unauthenticated"),
        case("a 4 KB token", "GET", "/v1/credentials")
            .token(Token::Header(format!("Bearer {}", "t".repeat(4096))))
            .is(401, "unauthenticated"),
        case("the admin token with a suffix", "GET", "/v1/credentials")
            .token(Token::Header(format!("Bearer {}x", srv.admin)))
            .is(401, "unauthenticated"),
    ]
}

/// Unknown routes, wrong methods, odd ids in paths, odd version numbers.
fn paths(srv: &Server, cid: &str) -> Vec<Case> {
    let mut cases = vec![
        case("an unknown route", "GET", "/v1/nope").is(404, "not_found"),
        case("another API version", "GET", "/v2/credentials").is(404, "not_found"),
        case("a double slash", "GET", "/v1//credentials").is(404, "not_found"),
        case("an unknown sub-resource", "GET", format!("/v1/credentials/{cid}/nope")).is(404, "not_found"),
        case(
            "an unknown version action",
            "POST",
            format!("/v1/credentials/{cid}/versions/1/nope"),
        )
        .is(404, "not_found"),
        case("a path climbing out", "GET", "/v1/credentials/../../etc/passwd").is(404, "not_found"),
        case("PUT on the collection", "PUT", "/v1/credentials")
            .json(&json!({}))
            .is(405, "method_not_allowed"),
        case("DELETE on the collection", "DELETE", "/v1/credentials").is(405, "method_not_allowed"),
        case("PATCH on versions", "PATCH", format!("/v1/credentials/{cid}/versions"))
            .json(&json!({}))
            .is(405, "method_not_allowed"),
        case(
            "GET on promote",
            "GET",
            format!("/v1/credentials/{cid}/versions/1/promote"),
        )
        .is(405, "method_not_allowed"),
        case("POST on healthz", "POST", "/healthz").is(405, "method_not_allowed"),
        case("DELETE on audit", "DELETE", "/v1/audit").is(405, "method_not_allowed"),
    ];
    let odd_ids = [
        "cred_x".to_owned(),
        format!("cred_{}", "a".repeat(26)),
        format!("cred_{}", "a".repeat(5000)),
        "a".repeat(5000),
        cid.to_uppercase(),
        format!("{cid}%20"),
        format!("%20{cid}"),
        format!("{cid}%00"),
        srv.ws_id.clone(),
        "..%2F..%2Fetc%2Fpasswd".into(),
        "%2e%2e".into(),
        "a%2Fb".into(),
        "%E2%98%83".into(),
        "☃".into(),
        "cred_ü".into(),
        "%00".into(),
        "cred_%00".into(),
        "%27%3B%20DROP%20TABLE%20credentials%3B%20--".into(),
        // Not UTF-8 once decoded: still just an id that names nothing.
        "%FF".into(),
        format!("{cid}%FF"),
    ];
    for id in &odd_ids {
        let what = format!("id {:?}", shorten(id, 40));
        cases.push(case(what.clone(), "GET", format!("/v1/credentials/{id}")).is(404, "not_found"));
        cases.push(case(what.clone(), "GET", format!("/v1/credentials/{id}/versions")).is(404, "not_found"));
        cases.push(case(what, "POST", format!("/v1/credentials/{id}/disable")).is(404, "not_found"));
    }
    for id in ["cred_x", "%00", "%FF", "..%2F..%2Fetc"] {
        let what = format!("id {id:?}");
        cases.push(
            case(what.clone(), "PATCH", format!("/v1/credentials/{id}"))
                .json(&json!({"description": "x"}))
                .is(404, "not_found"),
        );
        cases.push(case(what.clone(), "DELETE", format!("/v1/credentials/{id}")).is(404, "not_found"));
        cases.push(case(what.clone(), "POST", format!("/v1/credentials/{id}/enable")).is(404, "not_found"));
        cases.push(case(what.clone(), "POST", format!("/v1/credentials/{id}/restore")).is(404, "not_found"));
        cases.push(
            case(what.clone(), "POST", format!("/v1/credentials/{id}/versions"))
                .json(&json!({"fields": {"username": "u", "password": "p"}}))
                .is(404, "not_found"),
        );
        cases.push(case(what, "POST", format!("/v1/credentials/{id}/versions/1/promote")).is(404, "not_found"));
    }
    for n in [
        "abc",
        "-1",
        "0",
        "99",
        "1.5",
        "1e3",
        "0x1",
        "%201",
        "%00",
        "%FF",
        "99999999999999999999",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        for action in ["promote", "revoke"] {
            cases.push(
                case(
                    format!("version {n:?}"),
                    "POST",
                    format!("/v1/credentials/{cid}/versions/{n}/{action}"),
                )
                .is(404, "not_found"),
            );
        }
    }
    cases.push(
        case(
            "promoting the current version",
            "POST",
            format!("/v1/credentials/{cid}/versions/1/promote"),
        )
        .is(409, "already_current"),
    );
    cases.push(
        case(
            "revoking the current version",
            "POST",
            format!("/v1/credentials/{cid}/versions/1/revoke"),
        )
        .is(409, "cannot_revoke_current"),
    );
    cases
}

/// Bad bodies for the version and patch endpoints of an existing credential.
fn versions_and_patches(cid: &str) -> Vec<Case> {
    let vpath = format!("/v1/credentials/{cid}/versions");
    let ppath = format!("/v1/credentials/{cid}");
    let good = json!({"username": "loader", "password": "not-a-real-password"});
    let v = |what: &str, body: Value| case(what, "POST", vpath.clone()).json(&body);
    let p = |what: &str, body: Value| case(what, "PATCH", ppath.clone()).json(&body);
    vec![
        case("a malformed version", "POST", vpath.clone())
            .text("{\"fields\": ")
            .is(400, "malformed_json"),
        v("a version without fields", json!({"mode": "stage"}))
            .is(422, "invalid_field")
            .field("fields"),
        v("mode \"bogus\"", json!({"fields": good, "mode": "bogus"}))
            .is(422, "invalid_field")
            .field("mode"),
        v("mode 5", json!({"fields": good, "mode": 5}))
            .is(422, "invalid_field")
            .field("mode"),
        v("mode [\"stage\"]", json!({"fields": good, "mode": ["stage"]}))
            .is(422, "invalid_field")
            .field("mode"),
        v("mode true", json!({"fields": good, "mode": true}))
            .is(422, "invalid_field")
            .field("mode"),
        v(
            "an unknown member in a version",
            json!({"fields": good, "state": "current"}),
        )
        .is(422, "invalid_field")
        .field("state"),
        v(
            "a version missing the password",
            json!({"fields": {"username": "loader"}}),
        )
        .is(422, "invalid_fields")
        .field("fields.password")
        .first_error("required"),
        v("a version whose fields are a string", json!({"fields": "x"}))
            .is(422, "invalid_fields")
            .field("fields")
            .first_error("wrong_type"),
        case("a version as an array", "POST", vpath.clone())
            .json(&json!([good, "replace"]))
            .is(422, "invalid_field"),
        p("an empty name", json!({"name": ""}))
            .is(422, "invalid_name")
            .field("name"),
        p("a name with a space", json!({"name": "a b"}))
            .is(422, "invalid_name")
            .field("name"),
        p("a name with a slash", json!({"name": "a/b"}))
            .is(422, "invalid_name")
            .field("name"),
        p("a numeric name", json!({"name": 5}))
            .is(422, "invalid_field")
            .field("name"),
        p("a bad label key", json!({"labels": {"Bad Key": "x"}}))
            .is(422, "invalid_label")
            .field("labels.Bad Key"),
        p("labels as an array", json!({"labels": ["system:postgres"]}))
            .is(422, "invalid_field")
            .field("labels"),
        p("rotation_period_days 0", json!({"rotation_period_days": 0}))
            .is(422, "out_of_range")
            .field("rotation_period_days"),
        p("rotation_period_days 99999", json!({"rotation_period_days": 99_999}))
            .is(422, "out_of_range")
            .field("rotation_period_days"),
        p("rotation_period_days \"30\"", json!({"rotation_period_days": "30"}))
            .is(422, "invalid_field")
            .field("rotation_period_days"),
        p("expires_at \"tomorrow\"", json!({"expires_at": "tomorrow"}))
            .is(422, "invalid_timestamp")
            .field("expires_at"),
        p("expires_at 5", json!({"expires_at": 5}))
            .is(422, "invalid_field")
            .field("expires_at"),
        p("a long description", json!({"description": "d".repeat(5000)}))
            .is(422, "too_long")
            .field("description"),
        p("changing the type", json!({"type": "password"}))
            .is(422, "invalid_field")
            .field("type"),
        p("changing secret fields", json!({"fields": good}))
            .is(422, "invalid_field")
            .field("fields"),
        case("a malformed patch", "PATCH", ppath.clone())
            .text("{\"name\": \"x\"")
            .is(400, "malformed_json"),
        // Arrays are not patches: neither an empty one nor one naming a new name by position.
        case("an empty array as a patch", "PATCH", ppath.clone())
            .json(&json!([]))
            .is(422, "invalid_field"),
        case("a positional array as a patch", "PATCH", ppath.clone())
            .json(&json!(["renamed-by-array"]))
            .is(422, "invalid_field"),
    ]
}

/// Query parameters of the list and audit endpoints.
fn queries() -> Vec<Case> {
    let get = |path: &str| case(path, "GET", path);
    vec![
        get("/v1/credentials?foo=1").is(400, "unknown_parameter").field("foo"),
        get("/v1/credentials?Type=database")
            .is(400, "unknown_parameter")
            .field("Type"),
        get("/v1/credentials?limit=0")
            .is(400, "invalid_parameter")
            .field("limit"),
        get("/v1/credentials?limit=-1")
            .is(400, "invalid_parameter")
            .field("limit"),
        get("/v1/credentials?limit=abc")
            .is(400, "invalid_parameter")
            .field("limit"),
        get("/v1/credentials?limit=1.5")
            .is(400, "invalid_parameter")
            .field("limit"),
        get("/v1/credentials?limit=")
            .is(400, "invalid_parameter")
            .field("limit"),
        get("/v1/credentials?limit=99999999999999999999999")
            .is(400, "invalid_parameter")
            .field("limit"),
        get("/v1/credentials?limit=1&limit=2")
            .is(400, "repeated_parameter")
            .field("limit"),
        get("/v1/credentials?cursor=a&cursor=b")
            .is(400, "repeated_parameter")
            .field("cursor"),
        get("/v1/credentials?cursor=").is(422, "invalid_cursor").field("cursor"),
        get("/v1/credentials?cursor=!!!")
            .is(422, "invalid_cursor")
            .field("cursor"),
        get("/v1/credentials?cursor=bm90LWEtY3Vyc29y")
            .is(422, "invalid_cursor")
            .field("cursor"),
        // "v1:-1" and "v1:x", base64url without padding.
        get("/v1/credentials?cursor=djE6LTE")
            .is(422, "invalid_cursor")
            .field("cursor"),
        get("/v1/credentials?cursor=djE6eA")
            .is(422, "invalid_cursor")
            .field("cursor"),
        get("/v1/credentials?cursor=%FF%FE")
            .is(422, "invalid_cursor")
            .field("cursor"),
        get("/v1/credentials?type=nope").is(422, "unknown_type").field("type"),
        get("/v1/credentials?label=nocolon")
            .is(422, "invalid_label_filter")
            .field("label"),
        get("/v1/credentials?label=system:postgres&label=oops")
            .is(422, "invalid_label_filter")
            .field("label"),
        get(&format!("/v1/credentials?org_id=org_{}", "a".repeat(26))).is(404, "not_found"),
        get("/v1/audit?foo=1").is(400, "unknown_parameter").field("foo"),
        get("/v1/audit?limit=0").is(400, "invalid_parameter").field("limit"),
        get("/v1/audit?action=a&action=b")
            .is(400, "repeated_parameter")
            .field("action"),
        get("/v1/audit?since=yesterday")
            .is(422, "invalid_timestamp")
            .field("since"),
        get("/v1/audit?until=2027-13-01T00:00:00Z")
            .is(422, "invalid_timestamp")
            .field("until"),
        get("/v1/audit?since=2027-01-31")
            .is(422, "invalid_timestamp")
            .field("since"),
        get("/v1/audit?outcome=maybe")
            .is(422, "invalid_outcome")
            .field("outcome"),
        get("/v1/audit?cursor=!!!").is(422, "invalid_cursor").field("cursor"),
        get("/v1/credential-types?foo=1")
            .is(400, "unknown_parameter")
            .field("foo"),
    ]
}

/// Sends every bad request to a fresh server on `backend`; returns a report of what went wrong.
async fn bad_requests_on(backend: Backend) -> Option<String> {
    let srv = Server::start(backend).await;
    let cid = srv
        .database_credential(&srv.admin, "existing", "not-a-real-password")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut cases = malformed_json(&srv);
    cases.extend(wrong_shapes(&srv));
    cases.extend(invalid_values(&srv));
    cases.extend(sizes_and_content_types(&srv, &cid));
    cases.extend(auth(&srv));
    cases.extend(paths(&srv, &cid));
    cases.extend(versions_and_patches(&cid));
    cases.extend(queries());
    let total = cases.len();
    let mut failures = run_cases(&srv, &cases).await;

    // The server is still up and still works.
    let health = srv.call("GET", "/healthz", None, None).await;
    if health.status != 200 {
        failures.push(format!(
            "  GET /healthz after the bad requests: {} {}",
            health.status, health.text
        ));
    }
    let created = srv
        .post("/v1/credentials", &srv.admin, create_body(&srv, "still-works"))
        .await;
    if created.status == 201 {
        let got = srv.get(&format!("/v1/credentials/{}", created.id()), &srv.admin).await;
        if got.status != 200 || got.body["name"] != "still-works" {
            failures.push(format!(
                "  reading the new credential back: {} {}",
                got.status,
                shorten(&got.text, 300)
            ));
        }
    } else {
        failures.push(format!(
            "  a valid create after the bad requests: {} {}",
            created.status,
            shorten(&created.text, 300)
        ));
    }
    // The existing credential is untouched by everything above.
    let existing = srv.get(&format!("/v1/credentials/{cid}"), &srv.admin).await.ok(200);
    if existing["name"] != "existing" || existing["current_version"] != 1 || existing["status"] != "active" {
        failures.push(format!("  the existing credential changed: {existing}"));
    }
    let logs = srv.logs();
    if logs.contains("panicked") {
        failures.push("  the server log shows a panic".to_owned());
    }
    (!failures.is_empty()).then(|| {
        format!(
            "{backend:?}: {} of {total} checks failed:\n{}",
            failures.len(),
            failures.join("\n")
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_an_exact_4xx_problem_and_the_server_stays_up() {
    // Every backend runs before the verdict, so one report shows the failures of all of them.
    let mut reports = Vec::new();
    for backend in common::backends() {
        reports.extend(bad_requests_on(backend).await);
    }
    assert!(reports.is_empty(), "{}", reports.join("\n\n"));
}

/// Requests carrying [`SECRET`] in secret fields (or in values of the wrong type), each refused.
fn secret_carriers(srv: &Server, cid: &str) -> Vec<(String, &'static str, String, Value)> {
    let ws = srv.ws_id.clone();
    let create = |ty: &str, variant: Option<&str>, fields: Value| {
        json!({"name": "echo-probe", "type": ty, "variant": variant, "workspace_id": ws,
               "environment": "prod", "fields": fields})
    };
    let bad_pem = format!("-----BEGIN PRIVATE KEY-----\n{SECRET}!!\n-----END PRIVATE KEY-----\n");
    let sa_json =
        json!({"type": "service_account", "client_email": "a@example.com", "private_key": SECRET}).to_string();
    let db = |fields: Value| create("database", None, fields);
    let db_cases: Vec<(&str, Value)> = vec![
        (
            "username a number, password an object",
            json!({"username": 5, "password": {"x": SECRET}}),
        ),
        ("password a list", json!({"username": "loader", "password": [SECRET]})),
        (
            "password too long",
            json!({"username": "loader", "password": format!("{SECRET}{}", "x".repeat(70_000))}),
        ),
        ("username missing", json!({"password": SECRET})),
        (
            "a misspelt password field",
            json!({"username": "loader", "password": "p", "pasword": SECRET}),
        ),
        (
            "a nested object of secrets",
            json!({"username": "loader", "password": {"a": {"b": [SECRET, {"c": SECRET}]}}}),
        ),
        (
            "a bad ssh tunnel",
            json!({"username": "loader", "password": SECRET,
                   "ssh_tunnel": {"host": "bastion", "port": 70000, "user": "u",
                                  "private_key_pem": SECRET, "passphrase": {"p": SECRET},
                                  "known_host_key": "nope"}}),
        ),
    ];
    let mut out: Vec<(String, &'static str, String, Value)> = db_cases
        .into_iter()
        .map(|(what, fields)| (what.to_owned(), "POST", "/v1/credentials".to_owned(), db(fields)))
        .collect();
    let more: Vec<(&str, Value)> = vec![
        (
            "key_pair with a non-PEM key",
            create(
                "database",
                Some("key_pair"),
                json!({"username": "loader", "private_key_pem": SECRET, "passphrase": 5}),
            ),
        ),
        (
            "key_pair with a broken PEM body",
            create(
                "database",
                Some("key_pair"),
                json!({"username": "loader", "private_key_pem": bad_pem}),
            ),
        ),
        (
            "api_key value an object",
            create(
                "api_key",
                None,
                json!({"parts": [{"name": "X-Api-Key", "value": {"v": SECRET}, "in": "header"}]}),
            ),
        ),
        (
            "api_key sent in the body",
            create(
                "api_key",
                None,
                json!({"parts": [{"name": "X-Api-Key", "value": SECRET, "in": "body"}]}),
            ),
        ),
        (
            "api_key part a bare string",
            create("api_key", None, json!({"parts": [SECRET]})),
        ),
        (
            "api_key bad header name",
            create(
                "api_key",
                None,
                json!({"parts": [{"name": "bad header", "value": SECRET, "in": "header"}]}),
            ),
        ),
        (
            "oauth client_secret a list",
            create(
                "oauth",
                Some("client_credentials"),
                json!({"client_id": "c", "client_secret": [SECRET], "token_url": "not a url"}),
            ),
        ),
        (
            "oauth tokens of the wrong type",
            create(
                "oauth",
                Some("client_credentials"),
                json!({"client_id": "c", "client_secret": SECRET,
                       "token_url": "https://auth.example.com/token",
                       "refresh_token": 5, "access_token": {"t": SECRET}}),
            ),
        ),
        (
            "aws bad key id",
            create(
                "aws",
                Some("access_key"),
                json!({"access_key_id": "bad", "secret_access_key": {"k": SECRET}}),
            ),
        ),
        (
            "aws session token a list",
            create(
                "aws",
                Some("access_key"),
                json!({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET,
                       "session_token": [SECRET]}),
            ),
        ),
        (
            "gcp key not JSON",
            create("gcp", Some("service_account"), json!({"service_account_json": SECRET})),
        ),
        (
            "gcp key with a bad private key",
            create("gcp", Some("service_account"), json!({"service_account_json": sa_json})),
        ),
        (
            "azure client_secret an object",
            create(
                "azure",
                Some("client_secret"),
                json!({"tenant_id": 5, "client_id": "c", "client_secret": {"s": SECRET}}),
            ),
        ),
        (
            "password type, password an object",
            create("password", None, json!({"password": {"p": SECRET}})),
        ),
        (
            "password type, empty username",
            create("password", None, json!({"username": "", "password": SECRET})),
        ),
        ("fields a string", create("database", None, json!(SECRET))),
        ("fields a list", create("database", None, json!([SECRET]))),
        (
            "a good secret but environment a number",
            with(
                db(json!({"username": "loader", "password": SECRET})),
                "environment",
                json!(5),
            ),
        ),
        (
            "a good secret but a bad name",
            with(
                db(json!({"username": "loader", "password": SECRET})),
                "name",
                json!("bad name"),
            ),
        ),
        (
            "a good secret but an unknown workspace",
            with(
                db(json!({"username": "loader", "password": SECRET})),
                "workspace_id",
                json!(format!("ws_{}", "a".repeat(26))),
            ),
        ),
        (
            "a good secret and a bad rotation period",
            with(
                db(json!({"username": "loader", "password": SECRET})),
                "rotation_period_days",
                json!(0),
            ),
        ),
        (
            "rotation_period_days a secret string",
            with(
                db(json!({"username": "loader", "password": "p"})),
                "rotation_period_days",
                json!(SECRET),
            ),
        ),
        (
            "name a list holding a secret",
            with(
                db(json!({"username": "loader", "password": "p"})),
                "name",
                json!([SECRET]),
            ),
        ),
        (
            "description an object holding a secret",
            with(
                db(json!({"username": "loader", "password": "p"})),
                "description",
                json!({"d": SECRET}),
            ),
        ),
        (
            "expires_at an object holding a secret",
            with(
                db(json!({"username": "loader", "password": "p"})),
                "expires_at",
                json!({"e": SECRET}),
            ),
        ),
        (
            "a good secret and a name already taken",
            with(
                db(json!({"username": "loader", "password": SECRET})),
                "name",
                json!("echo-taken"),
            ),
        ),
    ];
    out.extend(
        more.into_iter()
            .map(|(what, body)| (what.to_owned(), "POST", "/v1/credentials".to_owned(), body)),
    );
    let vpath = format!("/v1/credentials/{cid}/versions");
    out.push((
        "a version with wrong types".into(),
        "POST",
        vpath.clone(),
        json!({"fields": {"username": 5, "password": {"x": SECRET}}, "mode": "stage"}),
    ));
    out.push((
        "a version with a bad mode".into(),
        "POST",
        vpath.clone(),
        json!({"fields": {"username": "loader", "password": SECRET}, "mode": "bogus"}),
    ));
    out.push((
        "a version with an unknown member".into(),
        "POST",
        vpath,
        json!({"fields": {"username": "loader", "password": SECRET}, "note": 1}),
    ));
    out.push((
        "a patch with a secret in a label".into(),
        "PATCH",
        format!("/v1/credentials/{cid}"),
        json!({"labels": {"k": {"v": SECRET}}}),
    ));
    out.push((
        "a patch carrying fields".into(),
        "PATCH",
        format!("/v1/credentials/{cid}"),
        json!({"fields": {"password": SECRET}}),
    ));
    out
}

async fn problems_never_echo_secrets(backend: Backend) {
    let mut srv = Server::start(backend).await;
    let cid = srv
        .database_credential(&srv.admin, "echo-target", "not-a-real-password")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    srv.database_credential(&srv.admin, "echo-taken", "not-a-real-password")
        .await;
    let mut failures = Vec::new();
    for (what, method, path, body) in secret_carriers(&srv, &cid) {
        let r = srv.call(method, &path, Some(&srv.admin), Some(body)).await;
        if !(400..500).contains(&r.status) {
            failures.push(format!(
                "  {what}: status {} (want a 4xx): {}",
                r.status,
                shorten(&r.text, 200)
            ));
        }
        if r.text.contains(SECRET) || r.text.contains("ECHO-123") {
            failures.push(format!(
                "  {what}: the answer echoes the secret: {}",
                shorten(&r.text, 400)
            ));
        }
    }
    // Malformed JSON around a secret.
    let raw = format!(r#"{{"name": "echo-probe", "fields": {{"password": "{SECRET}"}},}}"#);
    let r = srv
        .raw(
            "POST",
            "/v1/credentials",
            Some(&srv.admin),
            "application/json",
            raw.into_bytes(),
        )
        .await;
    if r.status != 400 || r.text.contains(SECRET) {
        failures.push(format!(
            "  malformed JSON around a secret: {} {}",
            r.status,
            shorten(&r.text, 300)
        ));
    }
    // Nothing about these refusals leaks into the audit journal or the logs.
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit?limit=100&cursor={c}"),
            None => "/v1/audit?limit=100".to_owned(),
        };
        let page = srv.get(&path, &srv.admin).await;
        if page.text.contains(SECRET) {
            failures.push(format!(
                "  the audit journal holds the secret: {}",
                shorten(&page.text, 400)
            ));
        }
        let page = page.ok(200);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    srv.stop();
    if srv.logs().contains(SECRET) {
        failures.push("  the server log holds the secret".to_owned());
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: secrets echoed:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_documents_never_echo_a_submitted_secret() {
    each_backend!(problems_never_echo_secrets);
}
