//! Helpers for tests that run against the real local stack (`deploy/local/up`). Each
//! [`TestStack`] gets its own topics (a unique prefix under [`TEST_TOPIC_PREFIX`]), its own
//! Postgres schema, its own Redis key prefix and its own ClickHouse database, so tests run in
//! parallel against one shared stack. The schema, keys and database are removed when the
//! `TestStack` is dropped, also when the test fails. Topics are not deleted: on Tansu 0.6 a topic
//! deletion has panicked the broker's storage (an idempotent produce meeting it), crashed other
//! connected clients, and once left the broker refusing connections. Test topics all start with
//! [`TEST_TOPIC_PREFIX`]; `deploy/local/down --wipe` clears them from a developer's stack.

pub mod cluster;
pub mod config;
pub mod drill;
pub mod e2e;
pub mod faults;
pub mod fixtures;
pub mod inprocess;
pub mod kafka;
pub mod netns;
pub mod signer;
pub mod stores;

pub use inprocess::CommandApi;

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
    #[command(flatten)]
    keystore: platform::keystore::KeystoreArgs,
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
    /// The key store in a schema of this test's own (`k_<id>`), under the stack's key-encryption
    /// key: erasing a person in one test never touches another's keys.
    pub keystore: platform::keystore::KeystoreArgs,
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
        let keystore_url = base.keystore.url.clone().unwrap_or_else(|| base.postgres.url.clone());
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
            keystore: platform::keystore::KeystoreArgs {
                url: Some(keystore_url),
                schema: format!("k_{id}"),
                kek_file: Some(
                    base.keystore
                        .kek_file
                        .expect("VAXTRAIL_KEK_FILE names the stack's key-encryption key (deploy/local/lib.sh; deploy/local/up writes it)"),
                ),
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

    /// The test's key store (as the services open it), for reading what they sealed.
    pub fn keys(&self) -> Option<std::sync::Arc<dyn privacy::DataKeys>> {
        let environment = platform::EnvironmentArgs {
            environment: platform::environment::Environment::Development,
        };
        let store = self.keystore.open(&environment).expect("the test's key store opens");
        store.map(|s| s as std::sync::Arc<dyn privacy::DataKeys>)
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

/// Where tests keep what CI shows (screenshots, rendered pages): `$VAXTRAIL_ARTIFACTS`, else
/// `.vaxtrail/artifacts` in the repository. Created.
pub fn artifacts() -> PathBuf {
    let dir = std::env::var_os("VAXTRAIL_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".vaxtrail/artifacts"));
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    dir
}

/// Runs `tests/browser/<script>` under node (playwright-core driving Debian's Chromium) with
/// `env`: the one JSON line it prints of what the page showed. Fails the test, with the script's
/// output, when it exits non-zero.
pub async fn browser_script(script: &str, env: &[(&str, &std::ffi::OsStr)]) -> serde_json::Value {
    let run = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/browser").join(script))
        .envs(env.iter().copied())
        .output()
        .await
        .expect("node runs (deploy/local/install installs it and playwright-core)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{script}: the page did not do what was asked:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("the script's JSON line")
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

    /// `Authorization` header value for `subject` with `roles`, bound to `facilities`.
    pub fn bearer_for(&self, subject: &str, roles: &[platform::auth::Role], facilities: &[&str]) -> String {
        let token = self.key.token_for(
            subject,
            roles,
            facilities,
            "vaxtrail-local",
            "vaxtrail",
            Duration::from_secs(600),
        );
        format!("Bearer {token}")
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

/// Runs `tests/py-verifier/verify.py` (pyld, in the virtual environment `deploy/local/install`
/// makes) on `input`; one verdict per credential.
pub fn py_verify(input: &serde_json::Value) -> Vec<serde_json::Value> {
    let tools = std::env::var("VAXTRAIL_TOOLS").expect("VAXTRAIL_TOOLS (deploy/local/lib.sh sets it)");
    let python = PathBuf::from(tools).join("pyld-venv/bin/python");
    assert!(
        python.exists(),
        "the pyld verifier is not installed: run deploy/local/install"
    );
    run_verifier(
        std::process::Command::new(python).arg(repo_root().join("tests/py-verifier/verify.py")),
        input,
    )
}

/// Runs `tests/py-hcert/verify.py` (pycose, base45, cbor2, jsonschema, in the virtual
/// environment `deploy/local/install` makes) on `input`; one verdict per EU DCC.
pub fn hcert_verify(input: &serde_json::Value) -> Vec<serde_json::Value> {
    let tools = std::env::var("VAXTRAIL_TOOLS").expect("VAXTRAIL_TOOLS (deploy/local/lib.sh sets it)");
    let python = PathBuf::from(tools).join("hcert-venv/bin/python");
    assert!(
        python.exists(),
        "the EU DCC verifier is not installed: run deploy/local/install"
    );
    run_verifier(
        std::process::Command::new(python).arg(repo_root().join("tests/py-hcert/verify.py")),
        input,
    )
}

/// Runs `tests/py-hcert/shc.py` (jwcrypto, in the same virtual environment) on `input`; one
/// verdict per SMART Health Card.
pub fn shc_verify(input: &serde_json::Value) -> Vec<serde_json::Value> {
    let tools = std::env::var("VAXTRAIL_TOOLS").expect("VAXTRAIL_TOOLS (deploy/local/lib.sh sets it)");
    let python = PathBuf::from(tools).join("hcert-venv/bin/python");
    assert!(
        python.exists(),
        "the SMART Health Card verifier is not installed: run deploy/local/install"
    );
    run_verifier(
        std::process::Command::new(python).arg(repo_root().join("tests/py-hcert/shc.py")),
        input,
    )
}

/// Feeds `input` to a verifier process on stdin; its verdicts, one JSON line each.
fn run_verifier(command: &mut std::process::Command, input: &serde_json::Value) -> Vec<serde_json::Value> {
    use std::{io::Write as _, process::Stdio};
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the verifier runs (deploy/local/install)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("the verifier reads");
    let output = child.wait_with_output().expect("the verifier runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON verdict"))
        .collect()
}

/// Runs `tests/js-verifier/verify.mjs` on `input`; one verdict per credential.
pub fn js_verify(input: &serde_json::Value) -> Vec<serde_json::Value> {
    let dir = repo_root().join("tests/js-verifier");
    assert!(
        dir.join("node_modules/@digitalbazaar/vc-status-list").exists(),
        "tests/js-verifier is not installed: run deploy/local/install"
    );
    run_verifier(
        std::process::Command::new("node").arg("verify.mjs").current_dir(&dir),
        input,
    )
}
