//! Serves certificates, verification, status lists, analytics and audit reads.
//!
//! It reads the projections (Redis first, Postgres behind it, ClickHouse for analytics) and the log
//! itself for audit reads; it never writes the log. `Application::build(config)` loads the
//! issuer's keys, connects to the dependencies (lazily) and binds the listener;
//! `run_until_stopped` serves until SIGTERM. Tests build it on `127.0.0.1:0`.

pub mod analytics;
pub mod audit;
mod dashboard;
mod openapi;
pub mod pdf;
pub mod qr;
mod routes;
pub mod status_list;
pub mod store;
pub mod verify;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use clap::Parser;
use credentials::{CredentialSigner, IssuerArgs, Keyring};
use domain::credential::IssuerProfile;
use platform::{HttpService, LogArgs, Readiness, Shutdown, checks};

/// Configuration of `query-api`, read from the environment at start.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "query-api",
    version,
    about = "Serves certificates, verification, status lists, analytics and audit reads."
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
    pub auth: platform::auth::AuthArgs,
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long = "listen", env = "VAXTRAIL_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// What the verifier page tells people whose certificate does not verify: whom to contact.
    #[arg(
        long = "verifier-help",
        env = "VAXTRAIL_VERIFIER_HELP",
        default_value = "If you think this is wrong, ask the holder to contact the vaccination centre that issued the certificate, or the programme's helpline."
    )]
    pub verifier_help: String,
    /// The largest `POST /v1/verify` body, in bytes.
    #[arg(long = "max-verify-bytes", env = "VAXTRAIL_MAX_VERIFY_BYTES", default_value_t = 64 * 1024)]
    pub max_verify_bytes: usize,
}

/// What the handlers share.
pub struct AppState {
    pub store: store::Store,
    pub verifier: verify::Verifier,
    pub verifier_keys: Keyring,
    pub status_lists: status_list::StatusLists,
    pub auth: platform::auth::Verifier,
    pub profile: IssuerProfile,
    pub partitions: u32,
    pub verifier_help: String,
    pub clickhouse: clickhouse::Client,
    pub brokers: String,
    /// One client for the topics' high watermarks (the pipeline's lag), made at start.
    pub watermarks: Arc<rdkafka::consumer::BaseConsumer>,
    pub registry_url: String,
    pub topics: platform::TopicCatalog,
}

/// The running service.
pub struct Application {
    http: HttpService,
}

impl Application {
    /// Loads the issuer's keys and connects (lazily: a dependency that is down makes `/readyz`
    /// fail, not the start), then binds the listener.
    pub async fn build(config: &Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        let keyring = config.issuer.keyring()?;
        let profile = config.issuer.profile();
        let pool = config.postgres.pool()?;
        let redis = config.redis.client()?;
        let state = Arc::new(AppState {
            store: store::Store::new(pool.clone(), &redis, &config.redis.key_prefix)?,
            verifier: verify::Verifier::new(keyring.clone()),
            status_lists: status_list::StatusLists::new(
                Arc::new(CredentialSigner::new(keyring.clone())),
                profile.clone(),
            ),
            verifier_keys: keyring,
            auth: platform::auth::Verifier::load(&config.auth).await?,
            profile,
            partitions: u32::try_from(config.kafka.partitions).unwrap_or(1).max(1),
            verifier_help: config.verifier_help.clone(),
            clickhouse: config.clickhouse.client(),
            brokers: config.kafka.brokers.clone(),
            watermarks: Arc::new(
                rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &config.kafka.brokers)
                    .create()?,
            ),
            registry_url: config.kafka.schema_registry_url.clone(),
            topics: config.kafka.topics(),
        });
        let readiness = Readiness::default()
            .with("postgres", checks::postgres(pool))
            .with("redis", checks::redis(redis))
            .with("clickhouse", checks::clickhouse(config.clickhouse.client()));
        let api = Router::new()
            .route("/v1/certificates/{id}", get(routes::certificate))
            .route("/v1/certificates/{id}/status", get(routes::certificate_status))
            .route("/v1/certificates/{id}/qr.png", get(routes::qr_png))
            .route("/v1/certificates/{id}/qr.svg", get(routes::qr_svg))
            .route("/v1/events/{event_id}", get(routes::event))
            .route("/v1/recipients", get(routes::recipients))
            .route("/v1/recipients/{key}/certificates", get(routes::recipient_certificates))
            .route(
                "/v1/verify",
                post(routes::verify).layer(DefaultBodyLimit::max(config.max_verify_bytes)),
            )
            .route("/v1/status-lists/{list}", get(routes::status_list))
            .route("/.well-known/did.json", get(routes::did_document))
            .route("/credentials/vaccination/v1", get(routes::vaccination_context))
            .route("/v1/analytics/doses", get(analytics::doses))
            .route("/v1/analytics/certificates", get(analytics::certificates))
            .route("/v1/analytics/signing-latency", get(analytics::signing_latency))
            .route("/v1/pipeline/lag", get(analytics::lag))
            .route("/v1/audit/events", get(audit::events))
            .route("/v1/audit/checkpoints", get(audit::checkpoints))
            .route("/dashboard", get(dashboard::page))
            .route("/verify", get(dashboard::verifier_page))
            .route("/assets/{name}", get(dashboard::asset))
            .with_state(state);
        let document = <openapi::ApiDoc as utoipa::OpenApi>::openapi();
        let openapi = Router::new().route("/openapi.json", get(move || async move { axum::Json(document) }));
        let router = api.merge(openapi).merge(platform::ops_router("query-api", readiness));
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
        tracing::info!("query-api stopped");
        Ok(())
    }
}
