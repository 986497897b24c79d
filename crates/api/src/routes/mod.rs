//! The route table. Every route is added through [`Table::add`], which records its
//! documentation next to the handler, so the OpenAPI document covers every route by
//! construction.

pub(crate) mod connections;
mod credentials;
mod system;
mod tenancy;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::MethodRouter;
use credvault_domain::problems::Code;

use crate::AppState;
use crate::error::ApiError;
use crate::openapi::RouteDoc;

/// Routes being assembled, with their documentation.
pub(crate) struct Table {
    router: Router<AppState>,
    docs: Vec<RouteDoc>,
}

impl Table {
    /// Adds one method on one path.
    pub(crate) fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        handler: MethodRouter<AppState>,
        doc: RouteDoc,
    ) -> Table {
        self.router = self.router.route(path, handler);
        self.docs.push(RouteDoc { method, path, ..doc });
        self
    }
}

/// Every route and its documentation.
pub(crate) fn all() -> (Router<AppState>, Vec<RouteDoc>) {
    let t = Table {
        router: Router::new(),
        docs: Vec::new(),
    };
    let t = system::routes(t);
    let t = tenancy::routes(t);
    let t = credentials::routes(t);
    let t = connections::routes(t);
    (t.router, t.docs)
}

/// Unknown paths.
pub(crate) async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, "no such route")
}

/// Known paths, wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::MethodNotAllowed,
        "this route does not accept that method",
    )
}
