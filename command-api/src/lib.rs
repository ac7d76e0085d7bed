//! HTTP API that vaccination systems post to. Each accepted record becomes one event on
//! `vaccination-events`, keyed by the recipient key; the answer (202 with the event id and a status
//! URL) is sent only after the broker acknowledged it (`acks=all`, idempotent producer). A broker
//! outage answers 503 with `Retry-After`, never a 202. Callers present a bearer JWT: facilities
//! record and correct, controllers revoke; the token's subject is the event's source system.
//!
//! `Application::build(config)` connects and binds; `run_until_stopped` serves until SIGTERM.

mod append;
mod bulk;
mod master;
pub mod openapi;
mod ownership;
mod problem;
mod routes;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post, put},
};
use chrono_tz::Tz;
use clap::Parser;
use domain::{
    ids::IdKey,
    vaccine::VaccineCatalog,
    values::{CountryCode, RecipientKeySecret},
};
use platform::{HttpService, LogArgs, Readiness, Shutdown, checks, config::SecretUrl};

/// The recipient-key secret the local stack uses; refused outside development.
pub const DEVELOPMENT_RECIPIENT_SECRET: &str = "vaxtrail-local-development-only";

/// Configuration of `command-api`, read from the environment at start.
#[derive(Clone, Debug, Parser)]
#[command(name = "command-api", version, about = "HTTP API that vaccination systems post to")]
pub struct Config {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub kafka: platform::KafkaArgs,
    #[command(flatten)]
    pub redis: platform::RedisArgs,
    #[command(flatten)]
    pub postgres: platform::PostgresArgs,
    #[command(flatten)]
    pub auth: platform::auth::AuthArgs,
    #[command(flatten)]
    pub environment: platform::EnvironmentArgs,
    #[command(flatten)]
    pub http: platform::HttpLimitArgs,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long = "listen", env = "VAXTRAIL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// IANA time zone of the programme: a vaccination timestamp is reduced to its date there.
    #[arg(
        long = "programme-timezone",
        env = "VAXTRAIL_PROGRAMME_TIMEZONE",
        default_value = "UTC"
    )]
    pub zone: Tz,
    /// ISO 3166-1 alpha-3 country of addresses that name none.
    #[arg(
        long = "programme-country",
        env = "VAXTRAIL_PROGRAMME_COUNTRY",
        default_value = "IND"
    )]
    pub country: String,
    /// Secret keying recipient hashes (the Kafka keys). The default is for local development only:
    /// outside development the service refuses to start with it.
    #[arg(
        long = "recipient-key-secret",
        env = "VAXTRAIL_RECIPIENT_KEY_SECRET",
        default_value = DEVELOPMENT_RECIPIENT_SECRET,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub recipient_secret: SecretUrl,
    #[command(flatten)]
    pub ids: platform::environment::IdSecretArgs,
    #[command(flatten)]
    pub keystore: platform::keystore::KeystoreArgs,
    /// Vaccine master list in DIVOC's VACCINE_ICD.json format (default: DIVOC's, bundled).
    #[arg(long = "vaccine-master-list", env = "VAXTRAIL_VACCINE_MASTER_LIST")]
    pub vaccine_list: Option<PathBuf>,
    /// ICD-11 descriptions in DIVOC's ICD.json format (default: DIVOC's, bundled).
    #[arg(long = "icd-list", env = "VAXTRAIL_ICD_LIST")]
    pub icd_list: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long = "max-body-bytes", env = "VAXTRAIL_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most records in one certify request (an array).
    #[arg(long = "max-records", env = "VAXTRAIL_MAX_RECORDS", default_value_t = 1000)]
    pub max_records: usize,
    /// Largest bulk CSV accepted, in bytes (it is read as a stream, row by row; a larger file is
    /// answered 413 once the limit is crossed).
    #[arg(long = "max-bulk-bytes", env = "VAXTRAIL_MAX_BULK_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_bulk_bytes: usize,
    /// Most rows in one bulk CSV (each answered in the reply).
    #[arg(long = "max-bulk-rows", env = "VAXTRAIL_MAX_BULK_ROWS", default_value_t = 20_000)]
    pub max_bulk_rows: usize,
    /// Longest a bulk upload may take, in seconds.
    #[arg(
        long = "bulk-timeout-secs",
        env = "VAXTRAIL_BULK_TIMEOUT_SECS",
        default_value_t = 600
    )]
    pub bulk_timeout_secs: u64,
    /// How long to wait for the broker's acknowledgement before answering 503, in milliseconds.
    #[arg(
        long = "produce-timeout-ms",
        env = "VAXTRAIL_PRODUCE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub produce_timeout_ms: u64,
    /// Which facility tokens are held to the facilities they are bound to (the token's
    /// `facilities` claim, master-data ids): `when-claimed` (tokens without the claim post for any
    /// facility name, as before master data) or `required` (every facility token must carry the
    /// claim; the production setting once facilities are registered).
    #[arg(
        long = "facility-binding",
        env = "VAXTRAIL_FACILITY_BINDING",
        value_enum,
        default_value = "when-claimed"
    )]
    pub facility_binding: FacilityBinding,
    /// Origins whose pages may call the master-data endpoints from a browser (CORS), such as the
    /// query API's `/admin` page: comma-separated `scheme://host:port`. Empty: none.
    #[arg(
        long = "admin-origins",
        env = "VAXTRAIL_ADMIN_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub admin_origins: Vec<String>,
}

/// See [`Config::facility_binding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FacilityBinding {
    WhenClaimed,
    Required,
}

/// What the handlers share.
pub(crate) struct Intake {
    catalog: VaccineCatalog,
    zone: Tz,
    default_country: CountryCode,
    recipient_secret: RecipientKeySecret,
    ids: IdKey,
    appender: append::Appender,
    verifier: platform::auth::Verifier,
    ownership: ownership::Ownership,
    max_records: usize,
    max_bulk_bytes: usize,
    max_bulk_rows: usize,
    /// Seals personal data and erases recipients (`None`: development, in the clear).
    keys: Option<Arc<platform::keystore::KeyStore>>,
    /// Programmes, vaccines and facilities, followed live.
    master: Option<master::Master>,
    facility_binding: FacilityBinding,
}

fn catalog(config: &Config) -> anyhow::Result<VaccineCatalog> {
    let read =
        |path: &PathBuf| std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()));
    Ok(match (&config.vaccine_list, &config.icd_list) {
        (None, None) => VaccineCatalog::divoc_default(),
        (Some(names), None) => VaccineCatalog::from_divoc(&read(names)?, domain::vaccine::DIVOC_ICD)?,
        (names, Some(codes)) => {
            let names = names.as_ref().map(read).transpose()?;
            let names = names.as_deref().unwrap_or(domain::vaccine::DIVOC_VACCINE_ICD);
            VaccineCatalog::from_divoc(names, &read(codes)?)?
        }
    })
}

/// Registers the event schemas (BACKWARD_TRANSITIVE) in the background, retrying with backoff
/// while the registry is unavailable; the flag turns true once done (a readiness check).
fn register_schemas(kafka: platform::KafkaArgs, shutdown: Shutdown) -> Arc<std::sync::atomic::AtomicBool> {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    tokio::spawn(async move {
        let client = avro::client::RegistryClient::new(&kafka.schema_registry_url);
        let backoff = platform::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let registered = backoff
            .retry(
                &shutdown,
                || client.register_event_schemas(&kafka.topic_prefix),
                |error| {
                    metrics::counter!("vaxtrail_schema_registration_retries_total").increment(1);
                    tracing::warn!(%error, "registering the event schemas failed; retrying");
                    true
                },
            )
            .await;
        if let Ok(Ok(registered)) = registered {
            tracing::info!(?registered, "event schemas registered");
            flag.store(true, std::sync::atomic::Ordering::Release);
        }
    });
    done
}

/// The running service.
pub struct Application {
    http: HttpService,
}

impl Application {
    /// Loads the master list, connects (lazily: a dependency that is down makes `/readyz` fail,
    /// not the start) and binds the listener.
    pub async fn build(config: &Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        let environment = &config.environment;
        environment.refuse_development_secret(
            "VAXTRAIL_RECIPIENT_KEY_SECRET",
            config.recipient_secret.expose(),
            DEVELOPMENT_RECIPIENT_SECRET,
        )?;
        let ids = config.ids.key(environment)?;
        let verifier = platform::auth::Verifier::load(&config.auth).await?;
        environment.refuse_development_jwks(&verifier)?;
        let pool = config.postgres.pool()?;
        let topics = config.kafka.topics();
        let redis_client = config.redis.client()?;
        let redis_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let redis = redis::aio::ConnectionManager::new_lazy_with_config(redis_client.clone(), redis_config)?;
        let keys = config.keystore.open(&config.environment)?;
        let appender = append::Appender::new(
            &config.kafka.brokers,
            &config.kafka.schema_registry_url,
            &topics.vaccination_events,
            Some(redis),
            &config.redis.key_prefix,
            Duration::from_millis(config.produce_timeout_ms),
            keys.clone(),
        )?;
        let catalog = catalog(config)?;
        let master = master::Master::start(
            &config.kafka,
            &topics.master_data,
            catalog.clone(),
            Duration::from_millis(config.produce_timeout_ms),
            shutdown.clone(),
        )?;
        let view = master.view.clone();
        let intake = Arc::new(Intake {
            catalog,
            zone: config.zone,
            default_country: CountryCode::parse("VAXTRAIL_PROGRAMME_COUNTRY", &config.country)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            recipient_secret: RecipientKeySecret::new(config.recipient_secret.expose().as_bytes()),
            ids,
            appender,
            verifier,
            ownership: ownership::Ownership::new(pool),
            max_records: config.max_records.max(1),
            max_bulk_bytes: config.max_bulk_bytes,
            max_bulk_rows: config.max_bulk_rows.max(1),
            keys,
            master: Some(master),
            facility_binding: config.facility_binding,
        });
        let registered = register_schemas(config.kafka.clone(), shutdown.clone());
        let readiness = Readiness::default()
            .with(
                "kafka",
                checks::kafka(&config.kafka.brokers, vec![topics.vaccination_events.clone()])?,
            )
            .with(
                "schema-registry",
                checks::http(format!("{}/subjects", config.kafka.schema_registry_url)),
            )
            .with("master-data", move || {
                let done = view.caught_up();
                Box::pin(async move {
                    if done {
                        Ok(())
                    } else {
                        Err("reading the master-data topic".to_owned())
                    }
                })
            })
            .with("schemas-registered", move || {
                let done = registered.load(std::sync::atomic::Ordering::Acquire);
                Box::pin(async move {
                    if done {
                        Ok(())
                    } else {
                        Err("event schemas not registered yet".to_owned())
                    }
                })
            });
        let limits = platform::HttpLimits::new(&config.http);
        let api = Router::new()
            .route("/v1/certify", post(routes::certify))
            .route("/v1/vaccinations", post(routes::vaccination))
            .route("/v1/corrections", post(routes::correction))
            .route("/v1/revocations", post(routes::revocation))
            .route("/v1/erasures", post(routes::erasure))
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .with_state(intake.clone());
        // Master data: small bodies, and callable from the master-data page's origin (CORS).
        let master_data = Router::new()
            .route("/v1/master-data", get(master::list))
            .route("/v1/master-data/programmes/{id}", put(master::put_programme))
            .route("/v1/master-data/vaccines", post(master::post_vaccine))
            .route("/v1/master-data/facilities/{id}", put(master::put_facility))
            .route("/v1/master-data/facilities/{id}/status", post(master::facility_status))
            .route("/v1/master-data/vaccinators/{id}", put(master::put_vaccinator))
            .layer(DefaultBodyLimit::max(64 * 1024))
            .with_state(intake.clone());
        let api = api.merge(master::cors(master_data, &config.admin_origins)?);
        let document = openapi::document(&intake.catalog, intake.max_records);
        // The bulk body is a stream counted by the handler itself (413 once past the limit).
        let bulk = Router::new()
            .route("/v1/vaccinations/bulk", post(bulk::bulk))
            .with_state(intake);
        let api = limits
            .apply(api)
            .merge(limits.apply_with_timeout(bulk, Duration::from_secs(config.bulk_timeout_secs.max(1))));
        let openapi = Router::new().route(
            "/openapi.json",
            axum::routing::get(move || async move { axum::Json(document) }),
        );
        let router = api.merge(openapi).merge(platform::ops_router("command-api", readiness));
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
        tracing::info!("command-api stopped");
        Ok(())
    }
}
