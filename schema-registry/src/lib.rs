//! `vaxtrail-registry`: a Confluent-Schema-Registry-compatible REST service for the local stack,
//! where no existing registry can be installed. Schemas live in the broker's `_schemas` topic in
//! Confluent's record format, so Confluent's registry or Karapace can take over the same topic.
//! One instance writes at a time (as Confluent's single primary does).

pub mod api;
pub mod compat;
pub mod log;
pub mod records;
pub mod state;

use std::{net::SocketAddr, sync::Arc};

use clap::Parser;
use platform::{HttpService, LogArgs, Readiness, Shutdown};

pub use compat::CompatibilityLevel;

/// The registry's configuration, read from the environment.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "vaxtrail-registry",
    about = "Confluent-compatible schema registry stored in Kafka"
)]
pub struct RegistryConfig {
    #[command(flatten)]
    pub log: LogArgs,
    /// Comma-separated Kafka bootstrap servers.
    #[arg(
        long = "kafka-brokers",
        env = "VAXTRAIL_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// The topic holding the schemas (Confluent's `kafkastore.topic`).
    #[arg(long = "topic", env = "VAXTRAIL_REGISTRY_TOPIC", default_value = "_schemas")]
    pub topic: String,
    /// Address and port the REST API listens on.
    #[arg(long = "listen", env = "VAXTRAIL_REGISTRY_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
}

/// A built registry, listening, ready to serve.
pub struct Registry {
    http: HttpService,
}

impl Registry {
    /// Opens the schema log (reading it to the end) and binds the listener.
    pub async fn build(config: &RegistryConfig, shutdown: Shutdown) -> anyhow::Result<Self> {
        let log = Arc::new(log::SchemaLog::open(&config.brokers, &config.topic, shutdown.clone()).await?);
        let readiness = Readiness::default().with("kafka", {
            let log = log.clone();
            move || {
                let log = log.clone();
                Box::pin(async move { log.catch_up().await.map_err(|e| e.to_string()) })
            }
        });
        let router = api::router(log).merge(platform::ops_router("vaxtrail-registry", readiness));
        Ok(Self {
            http: HttpService::bind(config.listen, router, shutdown).await?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Serves until the shutdown token is cancelled.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        Ok(self.http.run_until_stopped().await?)
    }
}
