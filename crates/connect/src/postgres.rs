//! PostgreSQL (and Redshift, which speaks its wire protocol): log in through a connection the
//! egress policy opened — or through a channel of the credential's SSH tunnel (`ssh.rs`) —
//! and run `SELECT 1`. TLS as `sslmode` asks ([`tls_plan`]), with rustls; a mode that needs
//! TLS never falls back to plain text.

use futures_util::future::BoxFuture;

use crate::ssh::Route;
use crate::tls::{self, PgTls, Verify};
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

/// What `sslmode` asks for: whether TLS is tried, needed, and how much it verifies.
/// `prefer` (and no `sslmode`, like libpq) is TLS without verification when the server offers
/// it and plain text when it does not — a downgrade anyone on the path can force; `require`
/// verifies the chain when the connection has `ca_pem` (as libpq with a root certificate does),
/// nothing otherwise.
fn tls_plan(input: &TestInput) -> (tokio_postgres::config::SslMode, Option<Verify>) {
    use tokio_postgres::config::SslMode;
    let ca = input.config_str("ca_pem").is_some();
    match input.config_str("sslmode") {
        Some("disable") => (SslMode::Disable, None),
        Some("require") if ca => (SslMode::Require, Some(Verify::Chain)),
        Some("require") => (SslMode::Require, Some(Verify::Nothing)),
        Some("verify-ca") => (SslMode::Require, Some(Verify::Chain)),
        Some("verify-full") => (SslMode::Require, Some(Verify::Full)),
        _ => (SslMode::Prefer, Some(Verify::Nothing)),
    }
}

async fn login(
    route: &Route,
    input: &TestInput,
    policy: &EgressPolicy,
    host: &str,
    port: u16,
) -> Result<(), TestError> {
    let (mode, verify) = tls_plan(input);
    // The egress policy first: nothing else is decided about a host it refuses.
    let stream = crate::pg_guard::NoCleartextPassword::new(route.open(policy, host, port).await?);
    let tls = match verify {
        Some(v) => Some(PgTls {
            config: tls::client_config(v, input.config_str("ca_pem"))?,
            name: match (tls::server_name(host), v) {
                (Ok(name), _) => name,
                // Nothing is verified: no name needed (an IP sends no SNI).
                (Err(_), Verify::Nothing) => {
                    tokio_rustls::rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
                }
                (Err(e), _) => return Err(e),
            },
        }),
        None => None,
    };
    let mut cfg = tokio_postgres::Config::new();
    cfg.user(input.field("username").unwrap_or_default())
        .password(input.field("password").unwrap_or_default())
        .dbname(input.config_str("database").unwrap_or_default())
        .application_name(input.config_str("application_name").unwrap_or("credvault-test"))
        .ssl_mode(mode);
    // One arm per TLS type (the connection's stream type differs).
    let (client, driver) = match tls {
        Some(tls) => {
            let (client, conn) = cfg
                .connect_raw(stream, tls)
                .await
                .map_err(|e| classify_connect(&e, host))?;
            (client, tokio::spawn(conn))
        }
        None => {
            let (client, conn) = cfg
                .connect_raw(stream, tokio_postgres::NoTls)
                .await
                .map_err(|e| classify_connect(&e, host))?;
            (client, tokio::spawn(conn))
        }
    };
    let r = client.simple_query("SELECT 1").await.map_err(|e| classify(&e));
    drop(client);
    driver.abort();
    r.map(|_| ())
}

/// A failure to connect: TLS ones by what was wrong with the certificate, the rest as
/// [`classify`] names them.
fn classify_connect(e: &tokio_postgres::Error, host: &str) -> TestError {
    if let Some(t) = tls::rustls_error(e) {
        // Garbage after the server said yes to TLS: not a PostgreSQL (nor a TLS) server.
        if matches!(t, tokio_rustls::rustls::Error::InvalidMessage(_)) {
            return TestError::new(
                ErrorCode::UnexpectedResponse,
                "the server did not answer like PostgreSQL (its answer to the TLS request was not TLS)",
            );
        }
        return tls::classify(t, host);
    }
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<crate::pg_guard::CleartextRefused>())
        {
            return TestError::new(
                ErrorCode::Unsupported,
                "the server asks for the password in clear text over an unencrypted connection, which this tester never sends (use sslmode require or stronger, or scram-sha-256 on the server)",
            );
        }
        if c.to_string().contains("server does not support TLS") {
            return TestError::new(
                ErrorCode::Tls,
                "the server does not offer TLS, and the connection's sslmode requires it (nothing was sent)",
            );
        }
        cause = c.source();
    }
    classify(e)
}
