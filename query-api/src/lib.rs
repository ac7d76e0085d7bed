//! Serves certificates, verification, status lists, analytics and audit reads.
//!
//! It reads the projections (Redis first, Postgres behind it, ClickHouse for analytics) and the log
//! itself for audit reads; it never writes the log. `Application::build(config)` loads the
//! issuer's keys, connects to the dependencies (lazily) and binds the listener;
//! `run_until_stopped` serves until SIGTERM. Tests build it on `127.0.0.1:0`.

pub mod access;
mod admin;
pub mod analytics;
pub mod audit;
mod dashboard;
mod eu_dcc;
mod openapi;
pub mod pdf;
pub mod qr;
pub mod rate_limit;
mod routes;
pub mod shape;
mod shc;
pub mod status_list;
pub mod store;
pub mod verifier;
pub mod verify;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use clap::Parser;
use credentials::Keyring;
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
    pub issuer: PublishedIssuerArgs,
    #[command(flatten)]
    pub eu_dcc: credentials::EuDccTrustArgs,
    #[command(flatten)]
    pub shc: credentials::ShcTrustArgs,
    #[command(flatten)]
    pub environment: platform::EnvironmentArgs,
    #[command(flatten)]
    pub http: platform::HttpLimitArgs,
    #[command(flatten)]
    pub rate: rate_limit::RateLimitArgs,
    /// Secret keying holders' access codes (an HMAC of the certificate id). The default is for
    /// local development only; rotating it invalidates every code handed out.
    #[arg(
        long = "holder-code-secret",
        env = "VAXTRAIL_HOLDER_CODE_SECRET",
        default_value = access::HolderCodes::DEVELOPMENT_SECRET,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub holder_code_secret: platform::config::SecretUrl,
    /// Proof checks run at once by `POST /v1/verify` (each on a blocking thread).
    #[arg(
        long = "verify-concurrency",
        env = "VAXTRAIL_VERIFY_CONCURRENCY",
        default_value_t = 4
    )]
    pub verify_concurrency: usize,
    /// Longest one proof check may take, in milliseconds (503 beyond).
    #[arg(
        long = "verify-deadline-ms",
        env = "VAXTRAIL_VERIFY_DEADLINE_MS",
        default_value_t = 2_000
    )]
    pub verify_deadline_ms: u64,
    /// Longest a verification waits for a free slot, in milliseconds (503 beyond).
    #[arg(long = "verify-queue-ms", env = "VAXTRAIL_VERIFY_QUEUE_MS", default_value_t = 1_000)]
    pub verify_queue_ms: u64,
    /// Address and port to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long = "listen", env = "VAXTRAIL_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The verifier page's guidance (how to scan, what each result means, what to do, whom to
    /// contact), a JSON file of texts per language; unset: the bundled English, Hindi and Tamil
    /// (`query-api/assets/verifier/guidance.json`, the file to copy and edit).
    #[arg(long = "verifier-guidance", env = "VAXTRAIL_VERIFIER_GUIDANCE")]
    pub verifier_guidance: Option<std::path::PathBuf>,
    /// Where a browser reaches the command API: the master-data page (`/admin`) calls it (the
    /// command API must list this service's public origin in `VAXTRAIL_ADMIN_ORIGINS`).
    #[arg(
        long = "command-api-public-url",
        env = "VAXTRAIL_COMMAND_API_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub command_api_url: String,
    /// The largest `POST /v1/verify` body, in bytes.
    #[arg(long = "max-verify-bytes", env = "VAXTRAIL_MAX_VERIFY_BYTES", default_value_t = 64 * 1024)]
    pub max_verify_bytes: usize,
    /// Public analytics suppress every cell counting fewer than this many (a small district's
    /// cell can be one person); a `monitoring` token reads them all.
    #[arg(
        long = "analytics-min-cell",
        env = "VAXTRAIL_ANALYTICS_MIN_CELL",
        default_value_t = 10
    )]
    pub analytics_min_cell: u64,
    /// Directories of the fonts the PDFs embed (Debian's Noto fonts: `fonts-noto-core`, and
    /// `fonts-noto-cjk` for Chinese, Japanese and Korean names), separated by `:`.
    #[arg(
        long = "pdf-fonts",
        env = "VAXTRAIL_PDF_FONTS",
        default_value = "/usr/share/fonts/truetype/noto:/usr/share/fonts/opentype/noto"
    )]
    pub pdf_fonts: String,
    /// A directory of label files (`<language code>.json`, as `query-api/assets/labels/`) that
    /// add languages to the bundled English, Hindi, Tamil and Sinhala, or replace their texts.
    #[arg(long = "pdf-labels", env = "VAXTRAIL_PDF_LABELS")]
    pub pdf_labels: Option<std::path::PathBuf>,
    /// The languages each programme's certificates print after English: `programme=code,code;…`,
    /// `*` for every other programme (`*=hi;measles=ta,si`). Empty: English only.
    #[arg(long = "pdf-languages", env = "VAXTRAIL_PDF_LANGUAGES", default_value = "")]
    pub pdf_languages: String,
}

/// The issuer as the query API knows it: its DID, its published (public) keys and where it
/// publishes. The query API holds no private key: the signer signs credentials, checkpoints and
/// status lists.
#[derive(Clone, Debug, clap::Args)]
pub struct PublishedIssuerArgs {
    /// The issuer's DID (`did:web:<host>`), whose document `/.well-known/did.json` serves.
    #[arg(
        long = "issuer-did",
        env = "VAXTRAIL_ISSUER_DID",
        default_value = "did:web:127.0.0.1%3A8090"
    )]
    pub did: String,
    /// Directory of the issuer's public keys, `<key id>.pem` (SPKI), every key active or retired
    /// (`vaxctl keys publish` writes it from the signer's keys). A private key there is refused.
    #[arg(long = "issuer-public-keys", env = "VAXTRAIL_ISSUER_PUBLIC_KEYS")]
    pub public_keys: PathBuf,
    /// Public base URL of the query API: evidence ids and status lists are named under it.
    #[arg(
        long = "public-base-url",
        env = "VAXTRAIL_PUBLIC_BASE_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    pub public_base_url: String,
}

impl PublishedIssuerArgs {
    /// The published keys (public halves only).
    pub fn keyring(&self) -> anyhow::Result<Keyring> {
        Ok(Keyring::published(&self.did, &self.public_keys)?)
    }

    /// The issuer's profile.
    pub fn profile(&self) -> IssuerProfile {
        IssuerProfile {
            issuer: self.did.clone(),
            base_url: self.public_base_url.trim_end_matches('/').to_owned(),
        }
    }
}

/// What the handlers share.
pub struct AppState {
    pub store: store::Store,
    pub verifier: verify::Verifier,
    pub verifier_keys: Keyring,
    pub auth: platform::auth::Verifier,
    pub holder_codes: access::HolderCodes,
    pub profile: IssuerProfile,
    pub partitions: u32,
    /// The verifier page's guidance, per language.
    pub verifier_guidance: verifier::Guidance,
    /// The command API's public URL, for the master-data page.
    pub command_api_url: String,
    pub clickhouse: clickhouse::Client,
    pub brokers: String,
    /// One client for the topics' high watermarks (the pipeline's lag), made at start.
    pub watermarks: Arc<rdkafka::consumer::BaseConsumer>,
    pub registry_url: String,
    pub topics: platform::TopicCatalog,
    /// Public analytics' suppression threshold.
    pub analytics_min_cell: u64,
    /// The EU DCC document signers' certificates (`None`: no EU DCC is issued here).
    pub eu_dcc_trust: Option<credentials::hcert::DocumentSigners>,
    /// The SMART Health Card keys' public halves (`None`: no card is issued here).
    pub shc_keys: Option<credentials::shc::ShcKeys>,
    /// The PDFs' fonts.
    pub fonts: pdf::Fonts,
    /// The PDFs' labels, per programme.
    pub labels: pdf::Labels,
}

/// The running service.
pub struct Application {
    http: HttpService,
}

impl Application {
    /// Loads the issuer's keys and connects (lazily: a dependency that is down makes `/readyz`
    /// fail, not the start), then binds the listener.
    pub async fn build(config: &Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        config.environment.refuse_development_secret(
            "VAXTRAIL_HOLDER_CODE_SECRET",
            config.holder_code_secret.expose(),
            access::HolderCodes::DEVELOPMENT_SECRET,
        )?;
        let keyring = config.issuer.keyring()?;
        let profile = config.issuer.profile();
        let auth = platform::auth::Verifier::load(&config.auth).await?;
        config.environment.refuse_development_jwks(&auth)?;
        let bounds = verify::Bounds {
            max_concurrent: config.verify_concurrency.max(1),
            deadline: Duration::from_millis(config.verify_deadline_ms.max(1)),
            queue_wait: Duration::from_millis(config.verify_queue_ms),
        };
        let compiled = Arc::new(
            credentials::compiled::Compiled::learn()
                .await
                .map_err(|e| anyhow::anyhow!("learning the compiled credential shape: {e}"))?,
        );
        let pool = config.postgres.pool()?;
        let redis = config.redis.client()?;
        let state = Arc::new(AppState {
            store: store::Store::new(pool.clone(), &redis, &config.redis.key_prefix)?,
            verifier: verify::Verifier::new(keyring.clone(), bounds, compiled),
            verifier_keys: keyring,
            auth,
            holder_codes: access::HolderCodes::new(config.holder_code_secret.expose().as_bytes()),
            profile,
            partitions: u32::try_from(config.kafka.partitions).unwrap_or(1).max(1),
            verifier_guidance: verifier::Guidance::load(config.verifier_guidance.as_deref())?,
            command_api_url: config.command_api_url.clone(),
            clickhouse: config.clickhouse.client(),
            brokers: config.kafka.brokers.clone(),
            watermarks: Arc::new(platform::Kafka::new(&config.kafka.brokers).client()?),
            registry_url: config.kafka.schema_registry_url.clone(),
            topics: config.kafka.topics(),
            analytics_min_cell: config.analytics_min_cell.max(1),
            eu_dcc_trust: config
                .eu_dcc
                .trusted()
                .map_err(|e| anyhow::anyhow!("loading the EU DCC document signers' certificates: {e}"))?,
            shc_keys: config
                .shc
                .keys()
                .map_err(|e| anyhow::anyhow!("loading the SMART Health Card public keys: {e}"))?,
            labels: pdf::Labels::load(config.pdf_labels.as_deref(), &config.pdf_languages)
                .map_err(|e| anyhow::anyhow!(e))?,
            fonts: {
                let dirs: Vec<std::path::PathBuf> = std::env::split_paths(&config.pdf_fonts).collect();
                let fonts = pdf::Fonts::load(&dirs)?;
                tracing::info!(fonts = fonts.loaded.len(), "PDF fonts loaded");
                fonts
            },
        });
        let readiness = Readiness::default()
            .with("postgres", checks::postgres(pool))
            .with("redis", checks::redis(redis))
            .with("clickhouse", checks::clickhouse(config.clickhouse.client()));
        // Anyone may call these; each is rate-limited per client.
        let public = Router::new()
            .route("/v1/certificates/{id}", get(routes::certificate))
            .route("/v1/certificates/{id}/status", get(routes::certificate_status))
            .route("/v1/certificates/{id}/qr.png", get(routes::qr_png))
            .route("/v1/certificates/{id}/qr.svg", get(routes::qr_svg))
            .route("/v1/certificates/{id}/eu-dcc", get(eu_dcc::document))
            .route("/v1/certificates/{id}/eu-dcc.png", get(eu_dcc::qr_png))
            .route("/v1/certificates/{id}/eu-dcc.svg", get(eu_dcc::qr_svg))
            .route("/v1/certificates/{id}/eu-dcc.pdf", get(eu_dcc::pdf))
            .route("/v1/trust-lists/eu-dcc", get(eu_dcc::trust_list))
            .route("/v1/certificates/{id}/shc", get(shc::document))
            .route("/v1/certificates/{id}/shc.png", get(shc::qr_png))
            .route("/v1/certificates/{id}/shc.svg", get(shc::qr_svg))
            .route("/v1/certificates/{id}/shc.pdf", get(shc::pdf))
            .route("/.well-known/jwks.json", get(shc::jwks))
            .route("/.well-known/crl/{file}", get(shc::crl))
            .route(
                "/v1/verify",
                post(routes::verify).layer(DefaultBodyLimit::max(config.max_verify_bytes)),
            )
            .route("/v1/status-lists/{list}", get(routes::status_list))
            .route("/.well-known/did.json", get(routes::did_document))
            .route("/credentials/vaccination/{version}", get(routes::vaccination_context))
            .route("/v1/analytics/doses", get(analytics::doses))
            .route("/v1/analytics/certificates", get(analytics::certificates))
            .route("/v1/analytics/signing-latency", get(analytics::signing_latency))
            .route("/v1/pipeline/lag", get(analytics::lag))
            .route("/dashboard", get(dashboard::page))
            .route("/admin", get(admin::page))
            .route("/verify", get(verifier::page))
            .route("/verify/app.js", get(verifier::script))
            .route("/verify/trust.json", get(verifier::trust))
            .route("/verify-sw.js", get(verifier::worker))
            .route("/assets/{name}", get(dashboard::asset))
            .with_state(state.clone());
        // These need a token; what each role reads is `access::scope`.
        let authenticated = Router::new()
            .route("/v1/events/{event_id}", get(routes::event))
            .route("/v1/recipients", get(routes::recipients))
            .route("/v1/recipients/{key}/certificates", get(routes::recipient_certificates))
            .route("/v1/audit/events", get(audit::events))
            .route("/v1/audit/checkpoints", get(audit::checkpoints))
            .with_state(state);
        let limits = platform::HttpLimits::new(&config.http);
        let api = limits.apply(rate_limit::limit(public, &config.rate, &shutdown).merge(authenticated));
        let document = openapi::document();
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
