//! Signs verifiable credentials for vaccination events and appends the hash-chained certificate log.
//!
//! `Application::build(config)` connects to the dependencies and binds the listener;
//! `run_until_stopped` serves until SIGTERM. Tests build it on `127.0.0.1:0`.

use std::net::SocketAddr;

use clap::Parser;
use platform::{HttpService, LogArgs, Readiness, Shutdown, checks};

/// Configuration of `signer-worker`, read from the environment at start.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "signer-worker",
    version,
    about = "Signs verifiable credentials for vaccination events and appends the hash-chained certificate log."
)]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub kafka: platform::KafkaArgs,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long = "listen", env = "VAXTRAIL_LISTEN", default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
}

/// The running service.
pub struct Application {
    http: HttpService,
}

impl Application {
    /// Connects to the dependencies (lazily: a dependency that is down makes `/readyz` fail,
    /// not the start) and binds the listener.
    pub async fn build(config: &Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        let readiness = Readiness::default();
        let topics = config.kafka.topics();
        let readiness = readiness
            .with(
                "kafka",
                checks::kafka(
                    &config.kafka.brokers,
                    vec![topics.vaccination_events.clone(), topics.certificate_events.clone()],
                )?,
            )
            .with(
                "schema-registry",
                checks::http(format!("{}/subjects", config.kafka.schema_registry_url)),
            );
        let router = platform::ops_router("signer-worker", readiness);
        let http = HttpService::bind(config.listen, router, shutdown).await?;
        Ok(Self { http })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Serves until the shutdown token is cancelled.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.http.run_until_stopped().await?;
        tracing::info!("signer-worker stopped");
        Ok(())
    }
}
