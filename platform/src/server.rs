//! The HTTP shell every service runs in: bind, report the address, serve until shutdown, and count
//! every request per route and status (`vaxtrail_http_requests_total`,
//! `vaxtrail_http_request_seconds`; labels from fixed sets only). It puts a deadline and a
//! concurrency limit on a service's API routes ([`HttpLimits`]): beyond them the answer is 503 problem+json with
//! `Retry-After`, never a queue that grows or a request that hangs.

use std::{net::SocketAddr, time::Duration, time::Instant};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::{MatchedPath, Request},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use clap::Args;
use tokio::net::TcpListener;
use tower::{BoxError, ServiceBuilder};
use tracing::Instrument as _;

use crate::{Shutdown, problem::Problem, trace::TraceContext};

/// The limits every service puts on its API.
#[derive(Clone, Debug, Args)]
pub struct HttpLimitArgs {
    /// Longest a request may take, in milliseconds; beyond it the answer is 503.
    #[arg(long = "http-timeout-ms", env = "VAXTRAIL_HTTP_TIMEOUT_MS", default_value_t = 15_000)]
    pub timeout_ms: u64,
    /// Requests served at once by the API; beyond it the answer is 503 with `Retry-After`.
    #[arg(
        long = "http-max-concurrency",
        env = "VAXTRAIL_HTTP_MAX_CONCURRENCY",
        default_value_t = 256
    )]
    pub max_concurrency: usize,
}

impl Default for HttpLimitArgs {
    fn default() -> Self {
        Self {
            timeout_ms: 15_000,
            max_concurrency: 256,
        }
    }
}

/// One service's limits: a concurrency limit shared by every router they are applied to.
#[derive(Clone)]
pub struct HttpLimits {
    semaphore: std::sync::Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

impl HttpLimits {
    /// The limits the settings name.
    pub fn new(args: &HttpLimitArgs) -> Self {
        Self {
            semaphore: std::sync::Arc::new(tokio::sync::Semaphore::new(args.max_concurrency.max(1))),
            timeout: Duration::from_millis(args.timeout_ms.max(1)),
        }
    }

    /// `router` with the configured deadline per request, inside the shared concurrency limit.
    pub fn apply(&self, router: Router) -> Router {
        self.apply_with_timeout(router, self.timeout)
    }

    /// The same with a deadline of its own (a bulk upload streams for minutes).
    pub fn apply_with_timeout(&self, router: Router, timeout: Duration) -> Router {
        router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|error: BoxError| async move { refused(&error) }))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
                    self.semaphore.clone(),
                ))
                .timeout(timeout),
        )
    }
}

/// The answer to a request the limits refused.
fn refused(error: &BoxError) -> Response {
    let (reason, title) = if error.is::<tower::timeout::error::Elapsed>() {
        (
            "timeout",
            "The request took longer than this service allows; retry later",
        )
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        (
            "overloaded",
            "This service is serving as many requests as it allows; retry shortly",
        )
    } else {
        ("error", "The request could not be served; retry later")
    };
    metrics::counter!("vaxtrail_http_limited_total", "reason" => reason).increment(1);
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", title)
        .retry_after(1)
        .into_response()
}

/// A router bound to a listener, served until the shutdown token is cancelled.
pub struct HttpService {
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
}

impl HttpService {
    /// Binds `address` (`127.0.0.1:0` picks a free port).
    pub async fn bind(address: SocketAddr, router: Router, shutdown: Shutdown) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        Ok(Self {
            listener,
            router: router.layer(axum::middleware::from_fn(track)),
            shutdown,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until shutdown, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.shutdown;
        // The peer address reaches handlers and layers (the rate limits count per client).
        axum::serve(
            self.listener,
            self.router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    }
}

/// A method's label: the standard ones, else `other` (a caller can send any token as a method).
fn method_label(method: &Method) -> String {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    if KNOWN.contains(method) {
        method.as_str().to_owned()
    } else {
        "other".to_owned()
    }
}

/// Counts a request under its route's pattern (never the raw path: ids would explode the labels),
/// and serves it in a span carrying its trace id: the caller's `traceparent` continued, or a new
/// trace ([`crate::trace`]).
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let context = request
        .headers()
        .get(crate::trace::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .map_or_else(TraceContext::root, |caller| caller.child());
    let span = tracing::info_span!("http", %method, %route, trace_id = %context.trace_id());
    let response = context.scope(next.run(request)).instrument(span).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("vaxtrail_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("vaxtrail_http_request_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"FOO123").unwrap()), "other");
    }

    #[tokio::test]
    async fn a_request_beyond_the_deadline_or_the_concurrency_limit_is_answered_503() {
        use tower::ServiceExt;
        let (entered, mut entered_rx) = tokio::sync::mpsc::channel::<()>(8);
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let router = Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let (entered, held) = (entered.clone(), held.clone());
                async move {
                    entered.send(()).await.unwrap();
                    held.notified().await;
                    "done"
                }
            }),
        );
        let limits = HttpLimits::new(&HttpLimitArgs {
            timeout_ms: 300,
            max_concurrency: 1,
        });
        let app = limits.apply(router);
        let request = || Request::builder().uri("/slow").body(axum::body::Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(request()));
        entered_rx.recv().await.unwrap();
        let second = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(
            second.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "over the concurrency limit"
        );
        assert!(second.headers().contains_key("retry-after"));
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE, "past the deadline");
        release.notify_waiters();
    }
}
