//! `ApiError`: every failure becomes an RFC 9457 `application/problem+json` document with a
//! stable `code`, the offending `field` where there is one, and the request ID. Internal
//! causes are logged (never secret-bearing: the core's errors carry no values) and answered
//! with a generic body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use credvault_domain::problems::Code;
use serde::Serialize;

use credvault_core::CoreError;
use credvault_domain::credential_types::FieldError;

/// An error on its way to the client (boxed: it travels through every handler's `Result`).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: Code,
    title: &'static str,
    detail: String,
    field: Option<String>,
    errors: Vec<FieldError>,
    request_id: Option<String>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    ty: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl ApiError {
    /// A problem with a status, code and human detail.
    pub fn new(status: StatusCode, code: Code, detail: impl Into<String>) -> ApiError {
        ApiError(Box::new(Inner {
            status,
            code,
            title: status.canonical_reason().unwrap_or("Error"),
            detail: detail.into(),
            field: None,
            errors: Vec::new(),
            request_id: None,
            retry_after: None,
        }))
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// `(field, message)` for each invalid field (the single `field` if there is no list).
    pub fn field_errors(&self) -> Vec<(String, String)> {
        if self.0.errors.is_empty() {
            return self
                .0
                .field
                .iter()
                .map(|f| (f.clone(), self.0.detail.clone()))
                .collect();
        }
        self.0
            .errors
            .iter()
            .map(|e| (e.field.clone(), e.message.clone()))
            .collect()
    }

    /// Names the offending field.
    pub fn field(mut self, f: impl Into<String>) -> ApiError {
        self.0.field = Some(f.into());
        self
    }

    /// Attaches the request ID (done by the middleware for every problem response).
    pub fn with_request_id(mut self, id: &str) -> ApiError {
        self.0.request_id = Some(id.to_owned());
        self
    }

    /// 400 for malformed input.
    pub fn bad_request(code: Code, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 404.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, format!("no such {what}"))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable code.
    pub fn code(&self) -> Code {
        self.0.code
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        match e {
            CoreError::Unauthenticated => ApiError::new(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "a valid bearer token is required",
            ),
            CoreError::NotFound { what } => ApiError::not_found(what),
            CoreError::Throttled { retry_after_secs } => {
                let mut a = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::TooManyFailures,
                    format!("too many failed authentications from this address; retry in {retry_after_secs} s"),
                );
                a.0.retry_after = Some(retry_after_secs);
                a
            }
            CoreError::Forbidden { permission } => ApiError::new(
                StatusCode::FORBIDDEN,
                Code::Forbidden,
                format!("this needs the permission {}", permission.as_str()),
            ),
            CoreError::Denied(d) => ApiError::from(d.public_error()),
            CoreError::Audited(b) => ApiError::from(b.0),
            CoreError::Invalid { field, code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, format!("{field}: {message}")).field(field)
            }
            CoreError::InvalidFields(errors) => {
                let first = errors.first().map(|e| e.field.clone());
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut a = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, Code::InvalidFields, detail);
                a.0.field = first;
                a.0.errors = errors;
                a
            }
            CoreError::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            CoreError::Unavailable { code, message } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message),
            ref other if let Some(cause) = other.store_unavailable() => {
                tracing::error!(%cause, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Code::Unavailable,
                    "the store is unavailable; retry later",
                )
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Code::Internal,
                    "internal error; the request ID identifies it in the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = self.0;
        let body = Problem {
            ty: format!("urn:credvault:problem:{}", this.code),
            title: this.title,
            status: this.status.as_u16(),
            detail: &this.detail,
            code: this.code.as_str(),
            field: this.field.as_deref(),
            errors: &this.errors,
            request_id: this.request_id.as_deref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":\"internal\"}".to_vec());
        let mut resp = (this.status, bytes).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if this.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = this.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // The middleware adds the request ID to the body of problems built without one.
        resp.extensions_mut().insert(ProblemMarker);
        resp
    }
}

/// Marks responses that carry a problem document.
#[derive(Clone, Copy, Debug)]
pub struct ProblemMarker;

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
