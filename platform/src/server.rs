//! The HTTP shell every service runs in: bind, report the address, serve until shutdown, and count
//! every request per route and status (`vaxtrail_http_requests_total`,
//! `vaxtrail_http_request_seconds`).

use std::{net::SocketAddr, time::Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use tokio::net::TcpListener;

use crate::Shutdown;

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
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

/// Counts a request under its route's pattern (never the raw path: ids would explode the labels).
async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("vaxtrail_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("vaxtrail_http_request_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
