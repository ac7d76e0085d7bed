//! Signs verifiable credentials for vaccination events and appends the hash-chained certificate log.
//!
//! `Application::build(config)` loads the issuer's keys, connects to the dependencies and binds
//! the listener; `run_until_stopped` signs and serves until SIGTERM. Tests build it on
//! `127.0.0.1:0`.

pub mod lists;
pub mod state;
pub mod store;
mod worker;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use credentials::CredentialSigner;
use domain::lineage::Policy;
use platform::{HttpService, LogArgs, Readiness, Shutdown, checks};

pub use worker::{CrashPoint, Settings, Worker};

pub use credentials::IssuerArgs;

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
    #[command(flatten)]
    pub issuer: IssuerArgs,
    #[command(flatten)]
    pub eu_dcc: credentials::EuDccArgs,
    #[command(flatten)]
    pub shc: credentials::ShcArgs,
    #[command(flatten)]
    pub environment: platform::EnvironmentArgs,
    #[command(flatten)]
    pub ids: platform::environment::IdSecretArgs,
    #[command(flatten)]
    pub keystore: platform::keystore::KeystoreArgs,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long = "listen", env = "VAXTRAIL_LISTEN", default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
    /// Consumer group of the signers (prefixed with the topic prefix).
    #[arg(long = "group", env = "VAXTRAIL_SIGNER_GROUP", default_value = "signer")]
    pub group: String,
    /// Corrections allowed per dose.
    #[arg(long = "update-limit", env = "VAXTRAIL_UPDATE_LIMIT", default_value_t = 1)]
    pub update_limit: u32,
    /// A signed checkpoint after this many outcomes of a partition...
    #[arg(long = "checkpoint-every", env = "VAXTRAIL_CHECKPOINT_EVERY", default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// ...or this many seconds after the last one.
    #[arg(
        long = "checkpoint-interval-secs",
        env = "VAXTRAIL_CHECKPOINT_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub checkpoint_interval_secs: u64,
    /// A partition's revocation status list is signed and published again at most this often,
    /// in seconds, while revocations change it.
    #[arg(
        long = "status-list-interval-secs",
        env = "VAXTRAIL_STATUS_LIST_INTERVAL_SECS",
        default_value_t = 2
    )]
    pub status_list_interval_secs: u64,
    /// Output records in flight (sent, not yet acknowledged) at most.
    #[arg(long = "max-in-flight", env = "VAXTRAIL_SIGNER_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,
    /// Consumer-group session timeout: how soon a dead signer's partitions move to another.
    #[arg(
        long = "session-timeout-ms",
        env = "VAXTRAIL_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u64,
    /// Longest pause between consumer polls; a rebalance also waits this long at most for a
    /// member that does not rejoin.
    #[arg(
        long = "max-poll-interval-ms",
        env = "VAXTRAIL_KAFKA_MAX_POLL_INTERVAL_MS",
        default_value_t = 120_000
    )]
    pub max_poll_interval_ms: u64,
    /// Directory of the local state store (each partition's lineages and bookkeeping on disk):
    /// a restart folds only the output written since the store's offset. Unset: state is held in
    /// memory and rebuilt from the whole output partition at every take-over. One directory per
    /// instance (the store is locked); losing it costs a full rebuild, nothing else.
    #[arg(long = "state-dir", env = "VAXTRAIL_SIGNER_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Memory for the state store, in bytes, for the whole instance: half caches decoded
    /// lineages, half is redb's page cache (lineages changed since the last write, at most about
    /// a second's worth, are held besides).
    #[arg(
        long = "state-cache-bytes",
        env = "VAXTRAIL_SIGNER_STATE_CACHE_BYTES",
        default_value_t = 256 * 1024 * 1024
    )]
    pub state_cache_bytes: u64,
    /// Fault drills only: the process aborts, as SIGKILL would end it, the first time it reaches
    /// this point (`checkpoint`: a checkpoint record queued and not yet acknowledged; `handover`:
    /// a partition taken over, its state half rebuilt from the log; `store`: a state-store write
    /// made and not committed). Refused outside development.
    #[arg(long = "crash-point", env = "VAXTRAIL_CRASH_POINT", value_enum)]
    pub crash_point: Option<CrashPoint>,
}

impl Config {
    fn settings(&self) -> anyhow::Result<Settings> {
        anyhow::ensure!(
            (self.kafka.partitions as u32) < domain::status::MAX_PARTITIONS,
            "VAXTRAIL_PARTITIONS is {}: status lists are numbered for fewer than {} partitions",
            self.kafka.partitions,
            domain::status::MAX_PARTITIONS
        );
        let topics = self.kafka.topics();
        let store = match &self.state_dir {
            // Named by the log it folds (the prefixed topic); that it is this cluster's log is
            // checked against the log's records when a partition is restored.
            Some(dir) => Some(store::Store::open(
                dir,
                &topics.certificate_events,
                self.state_cache_bytes,
            )?),
            None => None,
        };
        Ok(Settings {
            brokers: self.kafka.brokers.clone(),
            registry_url: self.kafka.schema_registry_url.clone(),
            group: format!("{}{}", self.kafka.topic_prefix, self.group),
            vaccination_events: topics.vaccination_events,
            certificate_events: topics.certificate_events,
            dead_letters: topics.dead_letters,
            profile: self.issuer.profile(),
            policy: Policy {
                update_limit: self.update_limit,
                ids: self.ids.key_unchecked(),
            },
            allocator: std::sync::Arc::new(domain::status::StatusAllocator::new(&self.ids.key_unchecked())),
            checkpoint_every: self.checkpoint_every.max(1),
            checkpoint_interval: Duration::from_secs(self.checkpoint_interval_secs.max(1)),
            max_in_flight: self.max_in_flight.max(1),
            status_list_interval: Duration::from_secs(self.status_list_interval_secs),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            max_poll_interval: Duration::from_millis(self.max_poll_interval_ms.max(self.session_timeout_ms)),
            crash_point: self.crash_point,
            store,
            // The signer answers one record at a time, in order: it binds every key it opens to
            // its recipient (and deletes them at the recipient's erasure), and what it writes for
            // a recipient is sealed with the key that opened the record it answers (no key-store
            // round trip per certificate; erased with the record's key).
            keys: self
                .keystore
                .open(&self.environment)?
                .inspect(|keys| keys.read_in_log_order()),
            eu_dcc: self
                .eu_dcc
                .issuer()
                .context("loading the EU DCC document signers")?
                .map(std::sync::Arc::new),
            shc: self
                .shc
                .keys()
                .context("loading the SMART Health Card keys")?
                .map(std::sync::Arc::new),
        })
    }
}

/// The running service.
pub struct Application {
    http: HttpService,
    worker: Worker,
    shutdown: Shutdown,
}

impl Application {
    /// Loads the keys (a missing or unusable key stops the start), connects to the dependencies
    /// (lazily: one that is down makes `/readyz` fail, not the start) and binds the listener.
    pub async fn build(config: &Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        config.ids.key(&config.environment)?;
        anyhow::ensure!(
            config.crash_point.is_none() || config.environment.is_development(),
            "VAXTRAIL_CRASH_POINT is for fault drills: it is refused outside VAXTRAIL_ENVIRONMENT=development"
        );
        let keyring = config.issuer.keyring().context("loading the issuer's keys")?;
        tracing::info!(method = %keyring.active_method(), keys = keyring.keys().len(), "issuer keys loaded");
        let topics = config.kafka.topics();
        let readiness = Readiness::default()
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
        // The contexts are processed once, here: credentials of vaxtrail's shape are then signed
        // without JSON-LD processing (credentials::compiled).
        let compiled = credentials::compiled::Compiled::learn()
            .await
            .context("learning the compiled credential shape")?;
        let signer = CredentialSigner::new(keyring).with_compiled(std::sync::Arc::new(compiled));
        let settings = config.settings()?;
        if let Some(eu) = &settings.eu_dcc {
            let active = eu.signers.active().expect("loaded with an active signer");
            tracing::info!(signer = %active.id, expires = %active.not_after, "EU DCC document signer loaded");
        }
        let worker = Worker::new(settings, signer)?;
        let router = platform::ops_router("signer-worker", readiness);
        let http = HttpService::bind(config.listen, router, shutdown.clone()).await?;
        Ok(Self { http, worker, shutdown })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Signs and serves until the shutdown token is cancelled (or the signing loop fails).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let worker = tokio::spawn(self.worker.run(self.shutdown.clone()));
        let signing = async move {
            let result = worker.await;
            shutdown.cancel();
            result
        };
        let (served, signed) = tokio::join!(self.http.run_until_stopped(), signing);
        signed.context("the signing loop panicked")??;
        served?;
        tracing::info!("signer-worker stopped");
        Ok(())
    }
}
