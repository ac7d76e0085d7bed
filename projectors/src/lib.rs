//! Projects the event log into Postgres read models, the Redis cache and ClickHouse analytics.
//!
//! `Application::build(config)` connects to the dependencies and binds the listener;
//! `run_until_stopped` serves until SIGTERM. Tests build it on `127.0.0.1:0`.

pub mod analytics;
pub mod cache;
pub mod generation;
pub mod postgres;
pub mod rebuild;
pub mod replay;
pub mod runner;

use std::{net::SocketAddr, sync::Arc, time::Duration};

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
    #[command(flatten)]
    pub environment: platform::EnvironmentArgs,
    #[command(flatten)]
    pub keystore: platform::keystore::KeystoreArgs,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long = "listen", env = "VAXTRAIL_LISTEN", default_value = "127.0.0.1:9102")]
    pub listen: SocketAddr,
    /// The projections this process runs (each its own consumer group).
    #[arg(
        long = "projection",
        env = "VAXTRAIL_PROJECTIONS",
        value_delimiter = ',',
        default_value = "postgres,redis,clickhouse"
    )]
    pub projections: Vec<Kind>,
    /// Consumer groups are `<topic prefix><this><projection>`.
    #[arg(
        long = "group-prefix",
        env = "VAXTRAIL_PROJECTOR_GROUP_PREFIX",
        default_value = "projector-"
    )]
    pub group_prefix: String,
    /// Records per batch at most.
    #[arg(long = "batch-size", env = "VAXTRAIL_PROJECTOR_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// Longest wait, in milliseconds, to fill a batch (a busy log fills batches by size long
    /// before; when records trickle in, this is what each one waits).
    #[arg(long = "batch-ms", env = "VAXTRAIL_PROJECTOR_BATCH_MS", default_value_t = 50)]
    pub batch_ms: u64,
}

/// A read model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Postgres,
    Redis,
    Clickhouse,
}

impl Config {
    fn settings(&self, name: &str, keys: Option<Arc<platform::keystore::KeyStore>>) -> runner::Settings {
        let topics = self.kafka.topics();
        runner::Settings {
            brokers: self.kafka.brokers.clone(),
            registry_url: self.kafka.schema_registry_url.clone(),
            group: format!("{}{}{name}", self.kafka.topic_prefix, self.group_prefix),
            vaccination_events: topics.vaccination_events,
            certificate_events: topics.certificate_events,
            dead_letters: topics.dead_letters,
            batch_size: self.batch_size.max(1),
            batch_time: Duration::from_millis(self.batch_ms.max(1)),
            health: runner::Health::default(),
            keys,
        }
    }
}

/// The running service.
pub struct Application {
    http: HttpService,
    projections: tokio::task::JoinSet<anyhow::Result<()>>,
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
        let mut readiness = readiness.with("clickhouse", checks::clickhouse(config.clickhouse.client()));
        let keys = config.keystore.open(&config.environment)?;
        let mut kinds = config.projections.clone();
        kinds.dedup();
        let mut projections = tokio::task::JoinSet::new();
        for kind in kinds {
            let (name, check_name) = match kind {
                Kind::Postgres => ("postgres", "projection-postgres"),
                Kind::Redis => ("redis", "projection-redis"),
                Kind::Clickhouse => ("clickhouse", "projection-clickhouse"),
            };
            let settings = config.settings(name, keys.clone());
            let health = settings.health.clone();
            readiness = readiness.with(check_name, move || {
                let verdict = health.check();
                Box::pin(async move { verdict })
            });
            let stop = shutdown.clone();
            match kind {
                Kind::Postgres => projections.spawn(runner::run(
                    settings,
                    postgres::PostgresProjection::new(pool.clone()),
                    stop,
                )),
                Kind::Redis => projections.spawn(runner::run(
                    settings,
                    cache::RedisProjection::new(config.redis.client()?, &config.redis.key_prefix),
                    stop,
                )),
                Kind::Clickhouse => projections.spawn(runner::run(
                    settings,
                    analytics::AnalyticsProjection::new(config.clickhouse.client(), &config.clickhouse.database),
                    stop,
                )),
            };
        }
        let router = platform::ops_router("projectors", readiness);
        let http = HttpService::bind(config.listen, router, shutdown.clone()).await?;
        Ok(Self {
            http,
            projections,
            shutdown,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Projects and serves until the shutdown token is cancelled (or a projection fails).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let mut projections = self.projections;
        let projecting = async move {
            // The first projection to fail stops the process (its supervisor restarts it).
            let mut outcome = Ok(());
            while let Some(joined) = projections.join_next().await {
                let result = joined
                    .map_err(|e| anyhow::anyhow!("a projection panicked: {e}"))
                    .and_then(|r| r);
                if let Err(error) = result {
                    shutdown.cancel();
                    outcome = outcome.and(Err(error));
                }
            }
            outcome
        };
        let (served, projected) = tokio::join!(self.http.run_until_stopped(), projecting);
        projected?;
        served?;
        tracing::info!("projectors stopped");
        Ok(())
    }
}
