//! The HTTP face of credvault: an axum router over [`credvault_core::Service`]. This is the
//! only crate that knows HTTP. It translates requests to service calls and errors to problem
//! documents; it decides nothing about who may do what (the core does).
//!
//! Tests and the binary both start the server through [`run`], handing in a bound listener
//! and a shutdown future, so a test can serve on port 0.

mod error;
mod extract;
mod metrics;
mod middleware;
pub mod openapi;
mod routes;
mod serve;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use credvault_core::Service;

pub use error::{ApiError, ApiResult};
pub use metrics::Metrics;
pub use serve::{BODY_TIMEOUT, ServeLimits, run, run_with};

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Mark the UI's cookies `Secure` (when the public URL is https).
    pub secure_cookies: bool,
    /// Time a client has to send a request's whole body, counted from its headers.
    pub body_timeout: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit: 1024 * 1024,
            secure_cookies: false,
            body_timeout: serve::BODY_TIMEOUT,
        }
    }
}

/// Shared state of every handler. Cloning is shallow.
#[derive(Clone)]
pub struct AppState {
    /// The service.
    pub service: Service,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// The OpenAPI document, built once from the route table.
    pub openapi: Arc<serde_json::Value>,
    /// Whether UI cookies carry `Secure`.
    pub secure_cookies: bool,
    /// One-time UI forms already submitted (a reload must not mint a second token).
    pub(crate) used_forms: Arc<ui::UsedForms>,
}

/// Builds the router: every route, the fallback, and the middleware stack.
pub fn router(service: Service, config: &ApiConfig) -> Router {
    let (routes, docs) = routes::all();
    let state = AppState {
        service,
        metrics: Arc::new(Metrics::default()),
        openapi: Arc::new(openapi::document(&docs)),
        secure_cookies: config.secure_cookies,
        used_forms: Arc::default(),
    };
    routes
        .merge(ui::routes())
        .fallback(routes::fallback)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            config.body_timeout,
            serve::body_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::observe))
        .with_state(state)
}
