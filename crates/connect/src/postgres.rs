//! PostgreSQL (and Redshift, which speaks its wire protocol): log in through a connection the
//! egress policy opened — or through a channel of the credential's SSH tunnel (`ssh.rs`) —
//! and run `SELECT 1`.

use futures_util::future::BoxFuture;

use crate::ssh::Route;
use crate::{EgressPolicy, ErrorCode, TestError, TestInput, Tester};

pub(crate) struct Postgres;

fn classify(e: &tokio_postgres::Error) -> TestError {
    use tokio_postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let kind = if code == &SqlState::INVALID_PASSWORD || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            ErrorCode::AuthFailed
        } else if code == &SqlState::INVALID_CATALOG_NAME {
            ErrorCode::NotFound
        } else if code == &SqlState::INSUFFICIENT_PRIVILEGE {
            ErrorCode::PermissionDenied
        } else {
            ErrorCode::UnexpectedResponse
        };
        return TestError::new(kind, format!("the server said: {} ({})", db.message(), code.code()));
    }
    // The TCP connection was already open (the policy made it), so anything else means the
    // far side did not speak PostgreSQL as expected, or dropped us.
    TestError::new(
        ErrorCode::UnexpectedResponse,
        format!("the server did not answer like PostgreSQL: {e}"),
    )
}

impl Tester for Postgres {
    fn test<'a>(&'a self, input: &'a TestInput, policy: &'a EgressPolicy) -> BoxFuture<'a, Result<(), TestError>> {
        Box::pin(async move {
            if input.credential_type != "database" || input.variant.as_deref().is_some_and(|v| v != "password") {
                return Err(TestError::new(
                    ErrorCode::Unsupported,
                    "only database password credentials can be tested against PostgreSQL in this build",
                ));
            }
            match input.config_str("sslmode") {
                Some("require") | Some("verify-full") => {
                    return Err(TestError::new(
                        ErrorCode::Unsupported,
                        "TLS to PostgreSQL is not built yet; use sslmode disable or prefer",
                    ));
                }
                _ => {}
            }
            let host = input.config_str("host").unwrap_or_default();
            let port = input
                .config_int("port")
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(5432);
            let route = Route::for_input(input, policy).await?;
            let r = login(&route, input, policy, host, port).await;
            route.close().await;
            r
        })
    }
}

async fn login(
    route: &Route,
    input: &TestInput,
    policy: &EgressPolicy,
    host: &str,
    port: u16,
) -> Result<(), TestError> {
    let stream = route.open(policy, host, port).await?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(input.field("username").unwrap_or_default())
        .password(input.field("password").unwrap_or_default())
        .dbname(input.config_str("database").unwrap_or_default())
        .application_name(input.config_str("application_name").unwrap_or("credvault-test"));
    let (client, conn) = cfg
        .connect_raw(stream, tokio_postgres::NoTls)
        .await
        .map_err(|e| classify(&e))?;
    let driver = tokio::spawn(conn);
    let r = client.simple_query("SELECT 1").await.map_err(|e| classify(&e));
    drop(client);
    driver.abort();
    r.map(|_| ())
}
