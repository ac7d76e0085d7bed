//! Projects the event log into Postgres read models, the Redis cache and ClickHouse analytics.
//!
//! `Application::build(config)` connects to the dependencies and binds the listener;
//! `run_until_stopped` serves until SIGTERM. Tests build it on `127.0.0.1:0`.

pub mod postgres;
pub mod runner;

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use platform::{HttpService, LogArgs, Readiness, Shutdown, checks};

/// Configuration of `projectors`, read from the environment at start.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "projectors",
    version,
    about = "Projects the event log into Postgres read models, the Redis cache and ClickHouse analytics."
)]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub kafka: platform::KafkaArgs,
    #[command(flatten)]
    pub postgres: platform::PostgresArgs,
    #[command(flatten)]
    pub redis: platform::RedisArgs,
    #[command(flatten)]
    pub clickhouse: platform::ClickHouseArgs,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long = "listen", env = "VAXTRAIL_LISTEN", default_value = "127.0.0.1:9102")]
    pub listen: SocketAddr,
    /// Consumer group of the Postgres projection (prefixed with the topic prefix).
    #[arg(
        long = "postgres-group",
        env = "VAXTRAIL_PROJECTOR_POSTGRES_GROUP",
        default_value = "projector-postgres"
    )]
    pub postgres_group: String,
    /// Records per batch at most.
    #[arg(long = "batch-size", env = "VAXTRAIL_PROJECTOR_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// Longest wait, in milliseconds, to fill a batch.
    #[arg(long = "batch-ms", env = "VAXTRAIL_PROJECTOR_BATCH_MS", default_value_t = 200)]
    pub batch_ms: u64,
}

impl Config {
    fn postgres_settings(&self) -> runner::Settings {
        let topics = self.kafka.topics();
        runner::Settings {
            brokers: self.kafka.brokers.clone(),
            registry_url: self.kafka.schema_registry_url.clone(),
            group: format!("{}{}", self.kafka.topic_prefix, self.postgres_group),
            vaccination_events: topics.vaccination_events,
            certificate_events: topics.certificate_events,
            dead_letters: topics.dead_letters,
            batch_size: self.batch_size.max(1),
            batch_time: Duration::from_millis(self.batch_ms.max(1)),
        }
    }
}

/// The running service.
pub struct Application {
    http: HttpService,
    postgres: postgres::PostgresProjection,
    settings: runner::Settings,
    shutdown: Shutdown,
}

impl Application {
    /// Connects to the dependencies (lazily: a dependency that is down makes `/readyz` fail,
    /// not the start) and binds the listener.
    pub async fn build(config: &Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        let readiness = Readiness::default();
        let topics = config.kafka.topics();
        let readiness = readiness
            .with("kafka", checks::kafka(&config.kafka.brokers, topics.names())?)
            .with(
                "schema-registry",
                checks::http(format!("{}/subjects", config.kafka.schema_registry_url)),
            );
        let pool = config.postgres.pool()?;
        let readiness = readiness.with("postgres", checks::postgres(pool.clone()));
        let readiness = readiness.with("redis", checks::redis(config.redis.client()?));
        let readiness = readiness.with("clickhouse", checks::clickhouse(config.clickhouse.client()));
        let router = platform::ops_router("projectors", readiness);
        let http = HttpService::bind(config.listen, router, shutdown.clone()).await?;
        Ok(Self {
            http,
            postgres: postgres::PostgresProjection::new(pool),
            settings: config.postgres_settings(),
            shutdown,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Projects and serves until the shutdown token is cancelled (or a projection fails).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (shutdown, stop) = (self.shutdown.clone(), self.shutdown.clone());
        let (projection, settings) = (self.postgres, self.settings);
        let postgres = tokio::spawn(async move {
            // Postgres may still be starting: migrate when it answers.
            let mut backoff = Duration::from_millis(200);
            while let Err(error) = projection.migrate().await {
                tracing::warn!(error = %format!("{error:#}"), "migrating the Postgres read models; retrying");
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            runner::run_postgres(settings, projection, stop).await
        });
        let projecting = async move {
            let result = postgres.await;
            shutdown.cancel();
            result
        };
        let (served, projected) = tokio::join!(self.http.run_until_stopped(), projecting);
        projected.map_err(|e| anyhow::anyhow!("the Postgres projection panicked: {e}"))??;
        served?;
        tracing::info!("projectors stopped");
        Ok(())
    }
}
