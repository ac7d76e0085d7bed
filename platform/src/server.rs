//! The HTTP shell every service runs in: bind, report the address, serve until shutdown.

use std::net::SocketAddr;

use axum::Router;
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
            router,
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
