//! The accept loop: HTTP/1.1 connections under limits a hostile or slow client cannot talk its
//! way around (issue 15).
//!
//! - **Header timeout** ([`ServeLimits::header_timeout`], 10 s): a request's headers must
//!   arrive whole within it, counted from when the connection starts waiting for them — so a
//!   client that sends half a request line and then nothing is closed, and an idle keep-alive
//!   connection is closed after the same time.
//! - **Body timeout** ([`BODY_TIMEOUT`], 30 s): the whole body must arrive within it, counted
//!   from the headers ([`body_deadline`]); a body that trickles in is cut off (`408`).
//! - **Connection cap** ([`ServeLimits::max_connections`], 8,192): past it, new connections
//!   are closed at once (existing ones, a worker's keep-alive connection say, carry on), with
//!   one warning line every 10 s saying how many were turned away.
//! - Graceful shutdown: no new connections; in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::{Service, ServiceExt};

/// Time a client has to send a request's whole body, counted from its headers.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Time to send a request's headers (and the idle time of a keep-alive connection).
    pub header_timeout: Duration,
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 8_192,
        }
    }
}

/// Serves `router` on `listener` with the default limits until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, router, ServeLimits::default(), shutdown).await
}

/// [`run`] with explicit limits.
pub async fn run_with(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let turned_away = Arc::new(AtomicU64::new(0));
    let mut last_warning: Option<Instant> = None;
    // Connection tasks hold a receiver; shutdown drops the sender and waits for them all.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: say so, and do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            let n = turned_away.fetch_add(1, Ordering::Relaxed) + 1;
            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_warning = Some(Instant::now());
                tracing::warn!(
                    max_connections = limits.max_connections,
                    turned_away = n,
                    "connection cap reached: new connections are closed until some of the open ones end"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = match make.call(addr).await {
            Ok(s) => s,
            Err(never) => match never {},
        };
        let service = service.map_request(|req: Request<Incoming>| req.map(Body::new));
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            let mut conn = pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    // Shutting down: finish the request in flight, take no new one.
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = r {
                tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
            }
            drop(slot);
            drop(done);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    // Every connection task holds a clone of `done_rx`: the sender sees it closed when the
    // last one ends.
    done_tx.closed().await;
    Ok(())
}

/// Middleware: the request's body must arrive whole within `timeout` of its headers.
pub(crate) async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        timeout,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub(crate) struct BodyTimedOut(pub Duration);

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            let t = self.timeout;
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(t)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
