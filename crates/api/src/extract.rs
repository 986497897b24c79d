//! Extractors: the request context (ID, peer, user agent), the authenticated actor, a JSON
//! body whose rejections are problem documents naming the field, and query parameters that
//! refuse unknown keys.

use credvault_domain::problems::Code;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use credvault_core::{Actor, RequestCtx};

use crate::AppState;
use crate::error::ApiError;

/// The request's context, for audit events.
pub struct Ctx(pub RequestCtx);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx(request_ctx(parts)))
    }
}

/// Builds the context from request parts (the request ID is set by the middleware).
pub fn request_ctx(parts: &Parts) -> RequestCtx {
    let (request_id, received_at) = parts
        .extensions
        .get::<RequestIdExt>()
        .map(|r| (r.0.clone(), r.1))
        .unwrap_or_default();
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().filter(|c| !c.is_control()).take(256).collect());
    RequestCtx {
        request_id,
        source_ip,
        user_agent,
        received_at,
    }
}

/// The request ID and when the request arrived (microseconds since the epoch), stored in
/// request extensions by the middleware.
#[derive(Clone, Debug)]
pub struct RequestIdExt(pub String, pub i64);

/// The authenticated actor. Rejects with 401 (audited) when the bearer token is missing or bad.
pub struct Auth(pub Arc<Actor>);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = request_ctx(parts);
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(h) = header else {
            return Err(state.service.record_missing_auth(&ctx, "missing_token").await.into());
        };
        let Some(token) = h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")) else {
            return Err(state.service.record_missing_auth(&ctx, "wrong_scheme").await.into());
        };
        let actor = state.service.authenticate(token.trim(), &ctx).await?;
        Ok(Auth(actor))
    }
}

/// A JSON body. Syntax errors are 400 `malformed_json`; type and shape errors are 422
/// `invalid_field` naming the field path; a wrong content type is 415; an oversized body 413.
/// The raw body is zeroized after parsing, since it may hold secrets.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let is_json = ct
            .split(';')
            .next()
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        let parsed = parse_json::<T>(&bytes);
        // The body may hold secrets: wipe it if nobody else holds a reference.
        if let Ok(mut owned) = bytes.try_into_mut() {
            zeroize::Zeroize::zeroize(&mut owned[..]);
        }
        parsed.map(Json)
    }
}

/// Whether a body error is (or was caused by) the body deadline.
pub(crate) fn body_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if x.is::<crate::serve::BodyTimedOut>() {
            return true;
        }
        cur = x.source();
    }
    false
}

/// The problem document for a body that could not be read: too large (413), too slow (408),
/// or broken (400).
fn body_rejection(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if body_timed_out(&e) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::BodyTimeout,
            format!(
                "the request body did not arrive within {} s of its headers",
                crate::serve::BODY_TIMEOUT.as_secs()
            ),
        );
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::BodyTooLarge,
            "the request body is larger than the server accepts",
        );
    }
    ApiError::bad_request(Code::UnreadableBody, "the request body could not be read")
}

/// An optional JSON body: an empty body is `None`; anything else must be valid like [`Json`].
pub struct MaybeJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MaybeJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(MaybeJson(None));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| MaybeJson(Some(v)))
    }
}

/// Parses a JSON object body with a path-aware error. Three steps, so each failure gets the
/// right answer: syntax (including trailing garbage) is 400 `malformed_json`; a body that is
/// not an object is 422; anything the shape rejects is 422 `invalid_field` naming the field.
/// Messages never quote string input: serde's type errors can contain the offending value,
/// which may be a secret.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::bad_request(
            Code::MalformedJson,
            format!("the body is not valid JSON (line {}, column {})", e.line(), e.column()),
        ));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Code::InvalidField,
            "the body must be a JSON object",
        ));
    }
    // JSON does not tell `2.0` from `2` (nor does JSON Schema's `integer`): a body that spells a
    // whole number as a float is read with the number as an integer. Only such bodies take this
    // path, since reading through a `Value` loses duplicate-key detection.
    if let Some(mut normalized) = whole_floats_as_integers(bytes) {
        let result = serde_path_to_error::deserialize::<_, T>(&normalized);
        // The body may hold secrets: wipe the copy.
        credvault_domain::secret::zeroize_json(&mut normalized);
        return result.map_err(|e| shape_error(e.path().to_string(), &e.into_inner().to_string()));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let raw = inner.to_string();
            // The first pass proved the syntax, except what only a typed parse sees (a lone
            // surrogate, nesting too deep, a number out of range). serde_json files some shape
            // errors (an enum given a number: "expected value") under "syntax", so sort by
            // what the error says, not by its category.
            let syntax = [
                "recursion limit",
                "number out of range",
                "surrogate",
                "hex escape",
                "unicode code point",
                "control character",
                "EOF while parsing",
            ]
            .iter()
            .any(|p| raw.contains(p));
            if syntax {
                return Err(ApiError::bad_request(
                    Code::MalformedJson,
                    format!(
                        "the body is not valid JSON (line {}, column {})",
                        inner.line(),
                        inner.column()
                    ),
                ));
            }
            Err(shape_error(path, &raw))
        }
    }
}

/// 422 `invalid_field` for what the shape of `T` refused, naming the field.
fn shape_error(path: String, raw: &str) -> ApiError {
    let msg = sanitize_serde_message(raw);
    let field = if path == "." { String::new() } else { path };
    let named = missing_field(&msg)
        .or_else(|| duplicate_field(&msg))
        .or(Some(field).filter(|f| !f.is_empty()));
    let detail = match &named {
        Some(f) if !msg.contains(f.as_str()) => format!("{f}: {msg}"),
        _ => msg,
    };
    let mut err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Code::InvalidField, detail);
    if let Some(f) = named {
        err = err.field(f);
    }
    err
}

/// The body with every float that is a whole number within ±2^53 (`2.0`, `1e3`) turned into
/// that integer, or `None` when it has no such float (or does not parse; the typed parse then
/// reports why).
fn whole_floats_as_integers(bytes: &[u8]) -> Option<serde_json::Value> {
    use serde_json::Value;
    fn walk(v: &mut Value) -> bool {
        match v {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    *v = Value::from(f as i64);
                    true
                } else {
                    false
                }
            }
            Value::Array(items) => items.iter_mut().fold(false, |acc, x| walk(x) | acc),
            Value::Object(m) => m.values_mut().fold(false, |acc, x| walk(x) | acc),
            _ => false,
        }
    }
    if !bytes.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return None;
    }
    // Reading through a `Value` keeps the last of two equal keys; a body with a duplicate key
    // stays on the strict path, which refuses it.
    serde_json::from_slice::<NoDuplicates>(bytes).ok()?;
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    if walk(&mut v) {
        Some(v)
    } else {
        credvault_domain::secret::zeroize_json(&mut v);
        None
    }
}

/// A JSON document checked for duplicate keys in any object (and nothing else).
struct NoDuplicates;

impl<'de> serde::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NoDuplicates;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<NoDuplicates, A::Error> {
                while s.next_element::<NoDuplicates>()?.is_some() {}
                Ok(NoDuplicates)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<NoDuplicates, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k) {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                    m.next_value::<NoDuplicates>()?;
                }
                Ok(NoDuplicates)
            }
        }
        d.deserialize_any(V)
    }
}

/// `duplicate field `x`` names the field in the message.
fn duplicate_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("duplicate field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// `missing field `x`` names the field in the message, not the path.
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// Drops quoted input values from serde messages (`invalid type: string "…", expected …`),
/// and the position suffix.
fn sanitize_serde_message(msg: &str) -> String {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    let mut out = String::with_capacity(msg.len());
    let mut in_quote = false;
    for c in msg.chars() {
        if c == '"' {
            if !in_quote {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
            in_quote = !in_quote;
            continue;
        }
        if !in_quote {
            out.push(c);
        }
    }
    out
}

/// Path parameters. Any rejection (e.g. an ID that is not valid UTF-8) is a 404 problem: an
/// identifier that cannot be parsed names nothing.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(_) => Err(ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, "no such resource")),
        }
    }
}

/// Query parameters, checked against the list a handler accepts.
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        Ok(Params(form_urlencoded::parse(q.as_bytes()).into_owned().collect()))
    }
}

impl Params {
    /// Refuses keys not in `allowed`.
    pub fn allow(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for (k, _) in &self.0 {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_request(
                    Code::UnknownParameter,
                    format!("unknown query parameter `{k}`; accepted: {}", allowed.join(", ")),
                )
                .field(k.clone()));
            }
        }
        Ok(())
    }
    /// The single value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<String>, ApiError> {
        let mut it = self.0.iter().filter(|(k, _)| k == key);
        let first = it.next().map(|(_, v)| v.clone());
        if it.next().is_some() {
            return Err(
                ApiError::bad_request(Code::RepeatedParameter, format!("`{key}` may be given once")).field(key),
            );
        }
        Ok(first)
    }
    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// A positive integer parameter.
    pub fn usize(&self, key: &str) -> Result<Option<usize>, ApiError> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).map(Some).ok_or_else(|| {
                ApiError::bad_request(Code::InvalidParameter, format!("`{key}` must be a positive integer")).field(key)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn whole_floats_read_as_integers() {
        #[derive(serde::Deserialize)]
        struct B {
            n: i64,
            v: serde_json::Value,
        }
        let b: B = parse_json(br#"{"n": 2.0, "v": {"port": 5432.0, "x": 1.5}}"#)
            .ok()
            .unwrap();
        assert_eq!(b.n, 2);
        assert_eq!(b.v, serde_json::json!({"port": 5432, "x": 1.5}));
        assert_eq!(
            parse_json::<B>(br#"{"n": 2.5, "v": null}"#).err().unwrap().code(),
            Code::InvalidField
        );
        // A duplicate key is refused on this path too (a `Value` would keep the last one).
        assert!(parse_json::<B>(br#"{"n": 2.0, "n": 3, "v": null}"#).is_err());
    }

    #[test]
    fn serde_messages_lose_quoted_values() {
        assert_eq!(
            sanitize_serde_message("invalid type: string \"hunter2\", expected u32 at line 1 column 9"),
            "invalid type: string \"…\", expected u32"
        );
    }
}
