//! Helpers for tests that run against the real local stack (`deploy/local/up`). Each
//! [`TestStack`] gets its own topics (a unique prefix under [`TEST_TOPIC_PREFIX`]), its own
//! Postgres schema, its own Redis key prefix and its own ClickHouse database, so tests run in
//! parallel against one shared stack. The schema, keys and database are removed when the
//! `TestStack` is dropped, also when the test fails. Topics are not deleted: on Tansu 0.6 a topic
//! deletion has panicked the broker's storage (an idempotent produce meeting it), crashed other
//! connected clients, and once left the broker refusing connections. Test topics all start with
//! [`TEST_TOPIC_PREFIX`]; `deploy/local/down --wipe` clears them from a developer's stack.

pub mod config;
pub mod e2e;
pub mod faults;
pub mod netns;
pub mod stores;

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use platform::{ClickHouseArgs, KafkaArgs, PostgresArgs, RedisArgs};

/// Every test topic's name starts with this.
pub const TEST_TOPIC_PREFIX: &str = "t-";

/// The stack's addresses, read from the same `VAXTRAIL_*` variables (and defaults) the services use.
#[derive(Clone, Debug, Parser)]
struct StackArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    postgres: PostgresArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

/// One test's isolated slice of the shared stack.
pub struct TestStack {
    /// Short unique id of this test's slice (lowercase hex).
    pub id: String,
    /// Kafka settings with this test's topic prefix.
    pub kafka: KafkaArgs,
    /// Postgres settings with this test's schema.
    pub postgres: PostgresArgs,
    /// Redis settings with this test's key prefix.
    pub redis: RedisArgs,
    /// ClickHouse settings with this test's database.
    pub clickhouse: ClickHouseArgs,
}

impl TestStack {
    /// Deletes this test's Redis keys (a flushed cache).
    pub async fn flush_redis(&self) {
        let mut redis = self
            .redis
            .client()
            .and_then(|c| c.get_connection())
            .expect("Redis is up");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.redis.key_prefix))
            .query(&mut redis)
            .expect("KEYS");
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query::<()>(&mut redis).expect("DEL");
        }
    }

    /// Creates this test's Postgres schema and ClickHouse database (topics are created by whoever
    /// uses them, under [`TestStack::topic`] names).
    pub async fn new() -> Self {
        let base = StackArgs::parse_from(["vaxtrail-tests"]);
        // Lowercase hex: a plain identifier in Postgres and ClickHouse, so it can be spliced into DDL.
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mut stack = Self {
            kafka: KafkaArgs {
                topic_prefix: format!("{TEST_TOPIC_PREFIX}{id}-"),
                partitions: 3,
                ..base.kafka
            },
            postgres: PostgresArgs {
                schema: format!("t_{id}"),
                ..base.postgres
            },
            redis: RedisArgs {
                key_prefix: format!("t:{id}:"),
                ..base.redis
            },
            clickhouse: ClickHouseArgs {
                database: format!("t_{id}"),
                ..base.clickhouse
            },
            id,
        };
        let admin = sqlx::PgPool::connect(stack.postgres.url.expose())
            .await
            .expect("postgres is up (deploy/local/up)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {}", stack.postgres.schema)))
            .execute(&admin)
            .await
            .expect("creating the test schema");
        let database = std::mem::take(&mut stack.clickhouse.database);
        stack
            .clickhouse
            .client()
            .with_database("default")
            .query(&format!("CREATE DATABASE {database}"))
            .execute()
            .await
            .expect("clickhouse is up (deploy/local/up)");
        stack.clickhouse.database = database;
        stack
    }

    /// A topic name private to this test.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.kafka.topic_prefix)
    }

    /// Creates this test's event topics (vaccination, certificate, dead letters).
    pub async fn create_event_topics(&self) {
        platform::topics::ensure_topics(&self.kafka.brokers, &self.kafka.topics().specs())
            .await
            .expect("creating the test's topics");
    }
}

/// What a test's slice needs for cleaning up; no `Drop` of its own.
struct Slice {
    postgres: PostgresArgs,
    redis: RedisArgs,
    clickhouse: ClickHouseArgs,
}

impl Slice {
    async fn teardown(&self) -> anyhow::Result<()> {
        let pool = sqlx::PgPool::connect(self.postgres.url.expose()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.postgres.schema
        )))
        .execute(&pool)
        .await?;
        self.clickhouse
            .client()
            .with_database("default")
            .query(&format!("DROP DATABASE IF EXISTS {}", self.clickhouse.database))
            .execute()
            .await?;
        let mut redis = self.redis.client()?.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.redis.key_prefix))
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut redis).await?;
        }
        Ok(())
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside the test's runtime: clean up on a thread of its own.
        let slice = Slice {
            postgres: self.postgres.clone(),
            redis: self.redis.clone(),
            clickhouse: self.clickhouse.clone(),
        };
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(slice.teardown())
        })
        .join();
        if let Ok(Err(error)) = outcome {
            eprintln!("test stack {}: cleanup failed: {error:#}", self.id);
        }
    }
}

/// The repository root (where `deploy/` and `docker-compose.yml` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repo root")
        .to_owned()
}

/// The directory holding the workspace's built binaries (beside this test executable).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps")
        .to_owned()
}

/// Decodes the QR code in an image file with zbar: the raw payload bytes.
pub fn zbar_scan(image: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("zbarimg")
        .args(["-q", "--raw", "-Sbinary"])
        .arg(image)
        .output()
        .expect("zbarimg is installed (deploy/local/install)");
    assert!(out.status.success(), "zbarimg found no code in {}", image.display());
    let mut bytes = out.stdout;
    // zbar ends its output with a newline, unless the payload is one.
    if bytes.last() == Some(&b'\n') && query_api::qr::credential_of(&bytes).is_err() {
        bytes.pop();
    }
    bytes
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "gave up waiting for {what} after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Domain values built from DIVOC's real sample, for tests across crates.
pub mod fixtures {
    use domain::{
        commands::{ParseContext, RecordVaccination},
        vaccine::VaccineCatalog,
        values::CountryCode,
    };

    /// DIVOC's sample certify request (an array of one record), as its API receives it.
    pub fn divoc_certify_request() -> serde_json::Value {
        serde_json::from_str(include_str!("../fixtures/divoc/certify-request.json")).expect("valid fixture")
    }

    /// DIVOC's master list (VACCINE_ICD.json format) plus the "CoVax" its sample request names,
    /// as a programme extends its list.
    pub fn master_list_with_covax() -> String {
        domain::vaccine::DIVOC_VACCINE_ICD
            .trim_end()
            .trim_end_matches(']')
            .to_owned()
            + r#", {"vaccineName": "CoVax", "icd11Code": "XM1NL1"}]"#
    }

    /// The sample as the command API parses it with [`master_list_with_covax`] in `zone`.
    pub fn divoc_sample_parsed(zone: chrono_tz::Tz) -> RecordVaccination {
        let catalog = VaccineCatalog::from_divoc(&master_list_with_covax(), domain::vaccine::DIVOC_ICD)
            .expect("the extended list is valid");
        let ctx = ParseContext {
            catalog: &catalog,
            zone,
            default_country: CountryCode::parse("c", "IND").expect("IND is assigned"),
            today: chrono::Utc::now().date_naive(),
        };
        RecordVaccination::parse(&divoc_certify_request()[0], &ctx).expect("the sample parses")
    }

    /// The sample's record with a vaccine from DIVOC's master list, parsed.
    pub fn divoc_record() -> RecordVaccination {
        let mut body = divoc_certify_request()[0].clone();
        body["vaccination"]["name"] = "covaxin".into();
        let catalog = VaccineCatalog::divoc_default();
        let ctx = ParseContext {
            catalog: &catalog,
            zone: chrono_tz::UTC,
            default_country: CountryCode::parse("c", "IND").expect("IND is assigned"),
            today: chrono::Utc::now().date_naive(),
        };
        RecordVaccination::parse(&body, &ctx).expect("the sample parses")
    }
}

/// Reading topics back in tests.
pub mod kafka {
    use std::time::{Duration, Instant};

    use rdkafka::{
        Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        message::OwnedMessage,
    };

    /// Total records in a topic (sum of its partitions' high watermarks).
    pub fn count(brokers: &str, topic: &str, partitions: i32) -> i64 {
        let consumer: BaseConsumer = platform::Kafka::new(brokers).client().unwrap();
        (0..partitions)
            .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1)
            .sum()
    }

    /// Reads `expected` records from the start of every partition, or panics after `deadline`.
    pub fn read(brokers: &str, topic: &str, partitions: i32, expected: usize, deadline: Duration) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = platform::Kafka::new(brokers).reader("vaxtrail-tests-reader").unwrap();
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let until = Instant::now() + deadline;
        let mut messages = Vec::new();
        while messages.len() < expected {
            assert!(
                Instant::now() < until,
                "read {} of {expected} records of {topic}",
                messages.len()
            );
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                messages.push(message.unwrap().detach());
            }
        }
        messages.sort_by_key(|m| (m.partition(), m.offset()));
        messages
    }
}

/// A scratch directory removed on drop: the one way tests get files and directories of their own.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory in the temp dir, named for `what`.
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vaxtrail-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        Self(dir)
    }

    /// Writes `content` to `name` in the directory; its path.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("the scratch dir is writable");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file removed when dropped (a [`Scratch`] holding one file).
pub struct TempFile(
    pub PathBuf,
    #[allow(dead_code, reason = "removes the file's directory when dropped")] Scratch,
);

impl TempFile {
    /// Writes `content` to a fresh file.
    pub fn with(content: &str) -> Self {
        let dir = Scratch::new("file");
        Self(dir.file("content.json", content), dir)
    }

    /// The path, as a config value.
    pub fn path(&self) -> String {
        self.0.display().to_string()
    }
}

/// A signing key of the test's own, and a JWKS file trusting it (for `VAXTRAIL_JWKS`).
pub struct TestAuth {
    pub key: platform::auth::DevKey,
    pub jwks: TempFile,
}

impl TestAuth {
    /// A fresh key and its JWKS file.
    pub fn new() -> Self {
        let key = platform::auth::DevKey::generate();
        let jwks = TempFile::with(&key.jwks());
        Self { key, jwks }
    }

    /// `Authorization` header value for `subject` with `roles`, as the services expect by default.
    pub fn bearer(&self, subject: &str, roles: &[platform::auth::Role]) -> String {
        let token = self
            .key
            .token(subject, roles, "vaxtrail-local", "vaxtrail", Duration::from_secs(600));
        format!("Bearer {token}")
    }
}

impl Default for TestAuth {
    fn default() -> Self {
        Self::new()
    }
}

/// A command API started in-process on a test's slice: event topics created, schemas registered,
/// DIVOC's master list plus the sample's "CoVax", a signing key of its own, Kolkata's time zone.
pub struct CommandApi {
    /// Base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    /// Signs tokens the API trusts.
    pub auth: TestAuth,
    shutdown: platform::Shutdown,
    _list: TempFile,
}

impl CommandApi {
    /// Starts one, letting the test adjust its config first.
    pub async fn spawn(stack: &TestStack, adjust: impl FnOnce(&mut command_api::Config)) -> Self {
        stack.create_event_topics().await;
        avro::client::RegistryClient::new(&stack.kafka.schema_registry_url)
            .register_event_schemas(&stack.kafka.topic_prefix)
            .await
            .expect("registering the test's schemas");
        let list = TempFile::with(&fixtures::master_list_with_covax());
        let auth = TestAuth::new();
        let mut config = command_api::Config::parse_from(["command-api"]);
        config.kafka = stack.kafka.clone();
        config.redis = stack.redis.clone();
        config.postgres = stack.postgres.clone();
        config.listen = "127.0.0.1:0".parse().expect("a valid address");
        config.vaccine_list = Some(list.0.clone());
        config.auth.jwks = Some(auth.jwks.path());
        config.zone = chrono_tz::Asia::Kolkata;
        adjust(&mut config);
        let shutdown = platform::Shutdown::new();
        let app = command_api::Application::build(&config, shutdown.clone())
            .await
            .expect("the command API builds");
        let url = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped());
        Self {
            url,
            auth,
            shutdown,
            _list: list,
        }
    }
}

impl Drop for CommandApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The signer as the tests drive it: an issuer key of the test's own, `signer-worker` processes
/// (so they can be killed with SIGKILL), vaccination events written straight to the topic, and
/// the certificate log read back.
pub mod signer {
    use std::{path::PathBuf, process::Stdio, time::Duration};

    use avro::{
        certificate::CertificateEnvelope,
        codec::{CertificateCodec, VaccinationCodec},
        vaccination::{Provenance, VaccinationEnvelope},
    };
    use credentials::{IssuerKey, Keyring, keys};
    use domain::{
        events::{VaccinationEvent, VaccinationPayload},
        ids::EventId,
        values::{RecipientKey, RecipientKeySecret},
    };
    use rdkafka::{
        Message,
        producer::{FutureProducer, FutureRecord},
    };
    use sha2::Digest;

    use crate::{TestStack, bin_dir};

    /// The issuer's DID in tests.
    pub const DID: &str = "did:web:certificates.test";

    /// A key directory holding one fresh key, `key-1`.
    pub struct Issuer {
        pub dir: PathBuf,
        pub keyring: Keyring,
        _scratch: crate::Scratch,
    }

    impl Issuer {
        pub fn new() -> Self {
            let scratch = crate::Scratch::new("issuer");
            let dir = scratch.0.clone();
            let pem = keys::generate_pem();
            std::fs::write(dir.join("key-1.pem"), &pem).expect("the temp dir is writable");
            let keyring = Keyring::new(
                DID,
                vec![IssuerKey::from_pem("key-1", &pem).expect("a fresh key")],
                None,
            )
            .expect("one private key");
            Self {
                dir,
                keyring,
                _scratch: scratch,
            }
        }
    }

    /// Where the public halves of a key directory are published for the query API (beside it).
    pub fn public_dir(keys: &std::path::Path) -> PathBuf {
        keys.with_extension("public")
    }

    /// Publishes the public halves of `keys` ([`public_dir`]) and returns that directory.
    pub fn publish(keys: &std::path::Path) -> PathBuf {
        let public = public_dir(keys);
        credentials::keys::publish(keys, &public).expect("publishing the test's keys");
        public
    }

    impl Default for Issuer {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Drop for Issuer {
        fn drop(&mut self) {
            // The key directory is a Scratch, removed with it; its published half is beside it.
            let _ = std::fs::remove_dir_all(public_dir(&self.dir));
        }
    }

    /// One `signer-worker` process.
    pub struct SignerProcess {
        child: tokio::process::Child,
    }

    impl SignerProcess {
        /// Starts one on the test's topics; `env` adds or overrides variables.
        pub fn spawn(stack: &TestStack, issuer: &Issuer, env: &[(&str, &str)]) -> Self {
            let mut command = tokio::process::Command::new(bin_dir().join("signer-worker"));
            command
                .env("VAXTRAIL_LISTEN", "127.0.0.1:0")
                .env("VAXTRAIL_TOPIC_PREFIX", &stack.kafka.topic_prefix)
                .env("VAXTRAIL_PARTITIONS", stack.kafka.partitions.to_string())
                .env("VAXTRAIL_ISSUER_DID", DID)
                .env("VAXTRAIL_ISSUER_KEYS", &issuer.dir)
                .env("VAXTRAIL_PUBLIC_BASE_URL", "https://certificates.test")
                .env("VAXTRAIL_KAFKA_SESSION_TIMEOUT_MS", "6000")
                .env("VAXTRAIL_KAFKA_MAX_POLL_INTERVAL_MS", "20000")
                .env("VAXTRAIL_LOG", "info,rdkafka=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            for (name, value) in env {
                command.env(name, value);
            }
            let child = command
                .spawn()
                .expect("signer-worker was built (deploy/local/up builds every binary)");
            Self { child }
        }

        /// SIGKILL: no flush, no goodbye.
        pub async fn kill9(&mut self) {
            self.child.start_kill().expect("the signer runs");
            self.child.wait().await.expect("it exits");
        }

        /// SIGTERM, and waits for a clean exit.
        pub async fn stop(&mut self) {
            let pid = self.child.id().expect("running").to_string();
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill runs");
            let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
                .await
                .expect("the signer stops within 30 s")
                .expect("it exits");
            assert!(status.success(), "signer-worker exited with {status}");
        }
    }

    /// Writes vaccination events the way the command API does.
    pub struct EventWriter {
        topic: String,
        producer: FutureProducer,
        codec: VaccinationCodec,
    }

    impl EventWriter {
        /// Creates the topics and registers the schemas under the test's prefix.
        pub async fn new(stack: &TestStack) -> Self {
            stack.create_event_topics().await;
            avro::client::RegistryClient::new(&stack.kafka.schema_registry_url)
                .register_event_schemas(&stack.kafka.topic_prefix)
                .await
                .expect("registering the test's schemas");
            let topic = stack.topic("vaccination-events");
            Self {
                codec: VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic),
                producer: platform::Kafka::new(&stack.kafka.brokers)
                    .producer()
                    .expect("a producer"),
                topic,
            }
        }

        /// Appends an event; its partition and offset.
        pub async fn append(&self, envelope: &VaccinationEnvelope) -> (i32, i64) {
            let bytes = self.codec.encode(envelope).await.expect("encodes");
            self.append_bytes(envelope.event.recipient_key.as_str(), &bytes, None)
                .await
        }

        /// Appends raw value bytes (to `partition`, or by key).
        pub async fn append_bytes(&self, key: &str, bytes: &[u8], partition: Option<i32>) -> (i32, i64) {
            let mut record = FutureRecord::to(&self.topic).key(key).payload(bytes);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            self.producer
                .send(record, Duration::from_secs(30))
                .await
                .map(|delivery| (delivery.partition, delivery.offset))
                .map_err(|(e, _)| e)
                .expect("the broker acknowledges")
        }
    }

    /// The recipient key of an identity under the tests' secret.
    pub fn recipient(identity: &str) -> RecipientKey {
        let identity = domain::values::Identity::parse("identity", identity).expect("a URI");
        RecipientKey::derive(&RecipientKeySecret::new("tests"), &identity)
    }

    /// An event from source system `tests` with record id `id`.
    pub fn envelope(id: &str, recipient: RecipientKey, payload: VaccinationPayload) -> VaccinationEnvelope {
        VaccinationEnvelope {
            event: VaccinationEvent {
                event_id: EventId::derive("tests", id),
                recipient_key: recipient,
                payload,
            },
            provenance: Provenance {
                occurred_at: chrono::Utc::now(),
                recorded_at: chrono::Utc::now(),
                source_system: "tests".into(),
                source_record_id: id.into(),
                actor: "tests".into(),
            },
        }
    }

    /// One record of `certificate-events`, decoded.
    #[derive(Clone, Debug)]
    pub struct CertificateRecord {
        pub partition: i32,
        pub offset: i64,
        pub sha256: [u8; 32],
        pub envelope: CertificateEnvelope,
    }

    /// Every record of the test's `certificate-events` once `done` says the log is complete, or
    /// panics after `deadline`.
    pub async fn read_certificates(
        stack: &TestStack,
        deadline: Duration,
        done: impl Fn(&[CertificateRecord]) -> bool,
    ) -> Vec<CertificateRecord> {
        let topic = stack.topic("certificate-events");
        let codec = CertificateCodec::new(&stack.kafka.schema_registry_url, &topic);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let total = crate::kafka::count(&stack.kafka.brokers, &topic, stack.kafka.partitions) as usize;
            let messages = crate::kafka::read(
                &stack.kafka.brokers,
                &topic,
                stack.kafka.partitions,
                total,
                Duration::from_secs(30),
            );
            let mut records = Vec::with_capacity(messages.len());
            for m in &messages {
                let bytes = m.payload().unwrap_or_default();
                records.push(CertificateRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    sha256: sha2::Sha256::digest(bytes).into(),
                    envelope: codec.decode(bytes).await.expect("the signer writes valid records"),
                });
            }
            if done(&records) {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "certificate-events incomplete after {deadline:?} ({} records)",
                records.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Runs a `deploy/local` script (without rebuilding), asserting it succeeds.
pub async fn deploy_local(script: &str, args: &[&str]) {
    let status = tokio::process::Command::new(repo_root().join("deploy/local").join(script))
        .args(args)
        .env("VAXTRAIL_SKIP_BUILD", "1")
        .status()
        .await
        .expect("the deploy scripts run");
    assert!(status.success(), "deploy/local/{script} {args:?}");
}

/// The projectors, in-process on the test's topics and stores: every projection, small batches.
/// Returns the shutdown token and the ops address.
pub async fn spawn_projectors(stack: &TestStack) -> (platform::Shutdown, std::net::SocketAddr) {
    let mut config = projectors::Config::parse_from(["projectors"]);
    config.kafka = stack.kafka.clone();
    config.postgres = stack.postgres.clone();
    config.redis = stack.redis.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.batch_size = 50;
    let shutdown = platform::Shutdown::new();
    let app = projectors::Application::build(&config, shutdown.clone())
        .await
        .expect("the projectors build");
    let address = app.local_addr();
    tokio::spawn(app.run_until_stopped());
    (shutdown, address)
}

/// The query API, in-process on the test's stores, trusting `keys` (a `signer::Issuer`'s
/// directory) under the tests' DID and `auth`'s tokens. Returns the shutdown token and its URL.
pub async fn spawn_query_api(
    stack: &TestStack,
    keys: &std::path::Path,
    active_key: Option<&str>,
    auth: &TestAuth,
) -> (platform::Shutdown, String) {
    spawn_query_api_with(stack, keys, active_key, auth, |_| {}).await
}

/// [`spawn_query_api`], with the configuration changed by `tweak` first.
pub async fn spawn_query_api_with(
    stack: &TestStack,
    keys: &std::path::Path,
    active_key: Option<&str>,
    auth: &TestAuth,
    tweak: impl FnOnce(&mut query_api::Config),
) -> (platform::Shutdown, String) {
    // The query API holds the public halves only, as `vaxctl keys publish` writes them.
    let public = signer::publish(keys);
    let keys_arg = public.display().to_string();
    let _ = active_key;
    let mut config = query_api::Config::parse_from(["query-api", "--issuer-public-keys", keys_arg.as_str()]);
    config.kafka = stack.kafka.clone();
    config.postgres = stack.postgres.clone();
    config.redis = stack.redis.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.issuer.did = signer::DID.to_owned();
    config.issuer.public_base_url = "https://certificates.test".to_owned();
    config.auth.jwks = Some(auth.jwks.path());
    tweak(&mut config);
    let shutdown = platform::Shutdown::new();
    let app = query_api::Application::build(&config, shutdown.clone())
        .await
        .expect("the query API builds");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());
    (shutdown, url)
}

/// Runs `tests/js-verifier/verify.mjs` on `input`; one verdict per credential.
pub fn js_verify(input: &serde_json::Value) -> Vec<serde_json::Value> {
    let dir = repo_root().join("tests/js-verifier");
    assert!(
        dir.join("node_modules/@digitalbazaar/vc-status-list").exists(),
        "tests/js-verifier is not installed: run deploy/local/install"
    );
    use std::{io::Write as _, process::Stdio};
    let mut node = std::process::Command::new("node")
        .arg("verify.mjs")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed (deploy/local/install)");
    node.stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("node reads");
    let output = node.wait_with_output().expect("node runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON verdict"))
        .collect()
}
