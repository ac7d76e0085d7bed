//! End-to-end harness: the four services as real processes on a test's slice of the local stack,
//! driven over HTTP, and `vaxctl` run as the operator runs it. Also a second, empty cluster (a
//! Tansu broker and a registry of its own) to restore a backup into.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{TestStack, bin_dir, eventually, repo_root, signer::Issuer};

/// The issuer's DID and public URL in the drills: fixed, so a deployment restored elsewhere
/// serves the same issuer.
pub const DID: &str = crate::signer::DID;
pub const PUBLIC_BASE_URL: &str = "https://certificates.test";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The tests' one scratch-directory helper (here for the drills that name it `e2e::Scratch`).
pub use crate::Scratch;

/// A Kafka-compatible broker and a schema registry, both new and empty.
pub struct Cluster {
    pub brokers: String,
    pub registry_url: String,
    /// The network namespace the broker runs in, if any.
    namespace: Option<String>,
    children: Vec<tokio::process::Child>,
    _dir: Scratch,
}

impl Cluster {
    /// Starts Tansu (SQLite storage in a scratch directory) and `vaxtrail-registry` over it.
    pub async fn start_empty() -> Self {
        Self::start_behind(None).await
    }

    /// Starts an empty cluster whose broker lives in network namespace `link` (reached over its
    /// veth pair), so a drill can cut the services off from it.
    pub async fn start_behind(link: Option<&crate::netns::Link>) -> Self {
        let dir = Scratch::new("cluster");
        std::fs::write(dir.0.join(".env"), "").expect("writable");
        let (broker_port, registry_port) = (free_port(), free_port());
        let host = link.map_or("127.0.0.1".to_owned(), |l| l.inside.clone());
        let brokers = format!("{host}:{broker_port}");
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.0.join(name)).expect("writable"));
        let namespace = link.map(|l| l.namespace.clone());
        let broker = Self::broker(&dir.0, &brokers, namespace.as_deref()).await;
        let registry = tokio::process::Command::new(bin_dir().join("vaxtrail-registry"))
            .env("VAXTRAIL_KAFKA_BROKERS", &brokers)
            .env("VAXTRAIL_REGISTRY_LISTEN", format!("127.0.0.1:{registry_port}"))
            .env("VAXTRAIL_LOG", "warn")
            .stdout(log("registry.log"))
            .stderr(log("registry.err"))
            .kill_on_drop(true)
            .spawn()
            .expect("vaxtrail-registry was built");
        let registry_url = format!("http://127.0.0.1:{registry_port}");
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(60), "the new registry to answer", || {
            let (client, url) = (client.clone(), format!("{registry_url}/subjects"));
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        Self {
            brokers,
            registry_url,
            namespace,
            children: vec![broker, registry],
            _dir: dir,
        }
    }
}

impl Cluster {
    /// Starts Tansu on `brokers` with its SQLite storage in `dir` (new, or as it was left).
    async fn broker(dir: &Path, brokers: &str, namespace: Option<&str>) -> tokio::process::Child {
        let tansu = std::env::var_os("VAXTRAIL_TANSU")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/vaxtrail/tools/bin/tansu")
            });
        let log = |name: &str| {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .expect("writable");
            Stdio::from(file)
        };
        let mut command = match namespace {
            Some(namespace) => {
                let mut command = tokio::process::Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&tansu);
                command
            }
            None => tokio::process::Command::new(&tansu),
        };
        let broker = command
            .current_dir(dir)
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://{brokers}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{brokers}"))
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(log("broker.log"))
            .stderr(log("broker.err"))
            .kill_on_drop(true)
            .spawn()
            .expect("tansu is installed (deploy/local/up)");
        eventually(Duration::from_secs(30), "the broker to listen", || async {
            tokio::net::TcpStream::connect(brokers).await.ok().map(|_| ())
        })
        .await;
        broker
    }

    /// Kills the broker with SIGKILL, as a machine that loses power would.
    pub async fn kill_broker(&mut self) {
        let broker = &mut self.children[0];
        let _ = broker.start_kill();
        let _ = broker.wait().await;
    }

    /// Starts the broker again on the same port and storage.
    pub async fn restart_broker(&mut self) {
        let brokers = self.brokers.clone();
        self.children[0] = Self::broker(&self._dir.0, &brokers, self.namespace.as_deref()).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}

/// A running service process.
pub struct Service {
    pub name: String,
    pub address: String,
    child: tokio::process::Child,
}

impl Service {
    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Waits up to `within` for the process to exit on its own; its exit status.
    pub async fn exited(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait()).await.ok()?.ok()
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.start_kill();
    }
}

/// The services of one deployment on a test's slice of the stack (or of another cluster).
pub struct Deployment {
    pub stack: TestStack,
    pub issuer_keys: PathBuf,
    pub services: Vec<Service>,
    logs: Scratch,
    /// The broker and registry of its own, if it has them (dropped after the services).
    cluster: Option<Cluster>,
}

impl Deployment {
    /// A deployment on `stack` signing with the keys in `issuer` (nothing started yet; topics
    /// created).
    pub async fn new(stack: TestStack, issuer: &Issuer) -> Self {
        stack.create_event_topics().await;
        crate::signer::publish(&issuer.dir);
        Self {
            stack,
            issuer_keys: issuer.dir.clone(),
            services: Vec::new(),
            logs: Scratch::new("logs"),
            cluster: None,
        }
    }

    /// A deployment on a broker and registry of its own (new and empty) and a new slice of the
    /// local stack's stores: the drills' load then neither slows nor is slowed by other tests'
    /// records in the shared broker. Nothing started yet.
    pub async fn on_own_cluster(issuer: &Issuer) -> Self {
        Self::on_cluster(issuer, Cluster::start_empty().await).await
    }

    /// A deployment on `cluster` and a new slice of the local stack's stores. Nothing started.
    pub async fn on_cluster(issuer: &Issuer, cluster: Cluster) -> Self {
        let mut stack = TestStack::new().await;
        stack.kafka.brokers = cluster.brokers.clone();
        stack.kafka.schema_registry_url = cluster.registry_url.clone();
        let mut deployment = Self::new(stack, issuer).await;
        deployment.cluster = Some(cluster);
        deployment
    }

    /// The environment every process of this deployment gets.
    pub fn env(&self) -> Vec<(String, String)> {
        let keys = repo_root().join(".vaxtrail/keys");
        let s = &self.stack;
        [
            ("VAXTRAIL_KAFKA_BROKERS", s.kafka.brokers.clone()),
            ("VAXTRAIL_SCHEMA_REGISTRY_URL", s.kafka.schema_registry_url.clone()),
            ("VAXTRAIL_TOPIC_PREFIX", s.kafka.topic_prefix.clone()),
            ("VAXTRAIL_PARTITIONS", s.kafka.partitions.to_string()),
            ("VAXTRAIL_DATABASE_URL", s.postgres.url.expose().to_owned()),
            ("VAXTRAIL_DATABASE_SCHEMA", s.postgres.schema.clone()),
            ("VAXTRAIL_REDIS_URL", s.redis.url.expose().to_owned()),
            ("VAXTRAIL_REDIS_KEY_PREFIX", s.redis.key_prefix.clone()),
            ("VAXTRAIL_CLICKHOUSE_URL", s.clickhouse.url.clone()),
            ("VAXTRAIL_CLICKHOUSE_DATABASE", s.clickhouse.database.clone()),
            ("VAXTRAIL_ISSUER_DID", DID.to_owned()),
            ("VAXTRAIL_ISSUER_KEYS", self.issuer_keys.display().to_string()),
            (
                "VAXTRAIL_ISSUER_PUBLIC_KEYS",
                crate::signer::public_dir(&self.issuer_keys).display().to_string(),
            ),
            ("VAXTRAIL_ENVIRONMENT", "development".to_owned()),
            // The drills read thousands of answers from one address: the operator's, not the
            // public's (public_surface.rs tests the per-client rate).
            ("VAXTRAIL_RATE_LIMIT_PER_SECOND", "1000000".to_owned()),
            ("VAXTRAIL_RATE_LIMIT_BURST", "1000000".to_owned()),
            ("VAXTRAIL_PUBLIC_BASE_URL", PUBLIC_BASE_URL.to_owned()),
            ("VAXTRAIL_JWKS", keys.join("dev-jwks.json").display().to_string()),
            (
                "VAXTRAIL_DEV_TOKEN_KEY",
                keys.join("dev-token-key.json").display().to_string(),
            ),
            ("VAXTRAIL_KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
            ("VAXTRAIL_KAFKA_MAX_POLL_INTERVAL_MS", "20000".to_owned()),
            ("VAXTRAIL_LOG", "warn".to_owned()),
            ("RUST_BACKTRACE", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The broker and registry of its own (for drills that kill the broker).
    pub fn cluster(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("a deployment on a cluster of its own")
    }

    /// Starts a service (`command-api`, `signer-worker`, `projectors`, `query-api`) and waits
    /// until it is ready. Returns its index in `services`.
    pub async fn start(&mut self, name: &str, extra: &[(&str, &str)]) -> usize {
        let index = self.launch(name, extra);
        self.ready(index).await;
        index
    }

    /// Waits until service `index` answers ready (panics after 120 s with its log).
    pub async fn ready(&self, index: usize) {
        let (name, address) = (&self.services[index].name, &self.services[index].address);
        let client = reqwest::Client::new();
        let url = format!("http://{address}/readyz");
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if ready.is_err() {
            let said = match client.get(&url).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(error) => error.to_string(),
            };
            panic!(
                "{name} was not ready within 120 s ({said}):\n{}",
                self.log_tail(name, index)
            );
        }
    }

    /// Starts a service without waiting for it. Returns its index in `services`.
    pub fn launch(&mut self, name: &str, extra: &[(&str, &str)]) -> usize {
        let address = format!("127.0.0.1:{}", free_port());
        let index = self.services.len();
        let log = |suffix: &str| {
            Stdio::from(std::fs::File::create(self.logs.0.join(format!("{name}-{index}.{suffix}"))).expect("writable"))
        };
        let mut command = tokio::process::Command::new(bin_dir().join(name));
        command
            .envs(self.env())
            .env("VAXTRAIL_LISTEN", &address)
            .stdout(log("out"))
            .stderr(log("err"))
            .kill_on_drop(true);
        for (k, v) in extra {
            command.env(k, v);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("{name} was built: {e}"));
        self.services.push(Service {
            name: name.to_owned(),
            address,
            child,
        });
        index
    }

    /// Everything a service wrote to stderr (its log).
    pub fn log(&self, name: &str, index: usize) -> String {
        std::fs::read_to_string(self.logs.0.join(format!("{name}-{index}.err"))).unwrap_or_default()
    }

    /// The last lines a service wrote to stderr.
    pub fn log_tail(&self, name: &str, index: usize) -> String {
        let text = self.log(name, index);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The base URL of the first running service of that name.
    pub fn url(&self, name: &str) -> String {
        let service = self
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} was started"));
        format!("http://{}", service.address)
    }

    /// Starts the four services.
    pub async fn start_all(&mut self) {
        for name in ["command-api", "signer-worker", "projectors", "query-api"] {
            self.start(name, &[]).await;
        }
    }

    /// Runs `vaxctl` with this deployment's environment; its output, whatever its exit status.
    pub async fn vaxctl(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(bin_dir().join("vaxctl"))
            .envs(self.env())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("vaxctl was built")
    }

    /// Runs `vaxctl`, asserting success; its stdout.
    pub async fn vaxctl_ok(&self, args: &[&str]) -> String {
        let out = self.vaxctl(args).await;
        assert!(
            out.status.success(),
            "vaxctl {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// `vaxctl audit verify` against the query API's DID document, until no vaccination is
    /// pending (panics at once on a broken chain, a bad checkpoint or an event answered twice);
    /// its report.
    pub async fn audited(&self, deadline: Duration) -> Value {
        let did = format!("{}/.well-known/did.json", self.url("query-api"));
        eventually(deadline, "every vaccination answered in the log", || {
            let did = did.clone();
            async move {
                let out = self
                    .vaxctl(&["audit", "verify", "--did-document", &did, "--json"])
                    .await;
                let report = last_json(&String::from_utf8_lossy(&out.stdout));
                assert_ne!(report["ok"], false, "the audit finds a break or a double: {report}");
                (report["pending"] == 0).then_some(report)
            }
        })
        .await
    }

    /// A bearer token for a role, from the local stack's development key.
    pub async fn token(&self, role: &str) -> String {
        self.vaxctl_ok(&["token", "--role", role, "--subject", "drill"])
            .await
            .trim()
            .to_owned()
    }

    /// Stops every service.
    pub async fn stop_all(&mut self) {
        for service in &mut self.services {
            service.stop().await;
        }
        self.services.clear();
    }
}

/// The JSON line a `vaxctl ... --json` printed last.
pub fn last_json(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {stdout:?}"));
    serde_json::from_str(line).expect("JSON")
}

/// The paths of a directory's files, for messages.
pub fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path().display().to_string()).collect())
        .unwrap_or_default()
}

// The drills' shared steps.

/// A count from the environment, or `default`.
pub fn count_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deployment on a cluster of its own with the four services started.
pub async fn live_deployment(issuer: &Issuer) -> Deployment {
    let mut live = Deployment::on_own_cluster(issuer).await;
    live.start_all().await;
    live
}

/// Posts `people` demo people through the deployment's command API (`vaxctl demo`) and waits until
/// every vaccination is answered and every projection has reached the topics' ends.
pub async fn load(deployment: &Deployment, people: u64) {
    let started = std::time::Instant::now();
    let (command, query) = (deployment.url("command-api"), deployment.url("query-api"));
    deployment
        .vaxctl_ok(&[
            "demo",
            "--count",
            &people.to_string(),
            "--rate",
            "5000",
            "--command-url",
            &command,
            "--query-url",
            &query,
        ])
        .await;
    eventually(
        Duration::from_secs(1800),
        "every vaccination answered and projected",
        || settled(&deployment.stack),
    )
    .await;
    eprintln!(
        "drill: {people} people posted, signed and projected in {:?}",
        started.elapsed()
    );
}

/// What the query API answers, by request, for comparing before and after.
pub type Snapshot = BTreeMap<String, String>;

/// Offsets every projection stored, against the topics' high watermarks: `None` while any lags
/// or any vaccination has no outcome yet.
pub async fn settled(stack: &TestStack) -> Option<()> {
    let topics = stack.kafka.topics();
    let names = [topics.vaccination_events, topics.certificate_events];
    let marks = platform::log::watermarks_async(&stack.kafka.brokers, &names)
        .await
        .ok()?;
    let pool = stack.postgres.pool().ok()?;
    let unanswered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vaccinations v
         WHERE NOT EXISTS (SELECT 1 FROM event_outcomes o WHERE o.source_event_id = v.event_id)",
    )
    .fetch_one(&pool)
    .await
    .ok()?;
    let postgres: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM projection_offsets")
            .fetch_all(&pool)
            .await
            .ok()?;
    let mut redis = stack
        .redis
        .client()
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let cached: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{}offsets", stack.redis.key_prefix))
        .query_async(&mut redis)
        .await
        .ok()?;
    let analytics: Vec<(String, i32, i64)> = stack
        .clickhouse
        .client()
        .query(
            "SELECT topic, partition, max(next_offset) FROM projection_positions
             WHERE generation = (SELECT argMax(generation, at) FROM projection_generation)
             GROUP BY topic, partition",
        )
        .fetch_all()
        .await
        .ok()?;
    let all_there = marks.iter().filter(|m| m.high > 0).all(|m| {
        let at = |rows: &[(String, i32, i64)]| {
            rows.iter()
                .any(|(t, p, o)| *t == m.topic && *p == m.partition && *o == m.high)
        };
        at(&postgres) && at(&analytics) && cached.get(&format!("{}:{}", m.topic, m.partition)) == Some(&m.high)
    });
    (unanswered == 0 && all_there).then_some(())
}

/// The sample: every 100th certificate, and the first 20 that are superseded or revoked.
pub async fn sample(stack: &TestStack) -> Vec<String> {
    let pool = stack.postgres.pool().expect("a pool");
    let mut ids: Vec<String> = sqlx::query_scalar(
        "SELECT certificate_id FROM (SELECT certificate_id, row_number() OVER (ORDER BY certificate_id) AS n
         FROM certificates) s WHERE n % 100 = 1",
    )
    .fetch_all(&pool)
    .await
    .expect("certificates");
    let changed: Vec<String> = sqlx::query_scalar(
        "SELECT certificate_id FROM certificates WHERE status <> 'active' ORDER BY certificate_id LIMIT 20",
    )
    .fetch_all(&pool)
    .await
    .expect("certificates");
    assert!(changed.len() >= 2, "the demo supersedes and revokes some certificates");
    ids.extend(changed);
    ids
}

/// The query API's answers for the sample and the analytics totals (certificates read with an
/// administrator's token: they are personal data).
pub async fn snapshot(query: &str, token: &str, ids: &[String]) -> Snapshot {
    let client = reqwest::Client::new();
    let mut out = Snapshot::new();
    for id in ids {
        let response = client
            .get(format!("{query}/v1/certificates/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("the query API answers");
        assert_eq!(response.status(), StatusCode::OK, "certificate {id}");
        let standing = response
            .headers()
            .get("Vaxtrail-Certificate-Status")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let credential = response.text().await.expect("a body");
        let status = client
            .get(format!("{query}/v1/certificates/{id}/status"))
            .send()
            .await
            .expect("status")
            .text()
            .await
            .expect("a body");
        let verdict = client
            .post(format!("{query}/v1/verify"))
            .header("Content-Type", "application/json")
            .body(credential.clone())
            .send()
            .await
            .expect("verify")
            .text()
            .await
            .expect("a body");
        out.insert(format!("{id} credential"), credential);
        out.insert(format!("{id} header"), standing);
        out.insert(format!("{id} status"), status);
        out.insert(format!("{id} verify"), verdict);
    }
    for path in [
        "/v1/analytics/doses?by=vaccine",
        "/v1/analytics/doses?by=state",
        "/v1/analytics/doses?by=dose",
        "/v1/analytics/doses?by=ageBand",
        "/v1/analytics/certificates?by=outcome",
    ] {
        let response = client.get(format!("{query}{path}")).send().await.expect("analytics");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        out.insert(path.to_owned(), response.text().await.expect("a body"));
    }
    out
}

pub fn assert_same(before: &Snapshot, after: &Snapshot, when: &str) {
    assert_eq!(before.len(), after.len());
    for (what, answer) in before {
        assert_eq!(Some(answer), after.get(what), "{when}: {what} differs");
    }
}

/// Replays a projection with `vaxctl replay --json`; its figures.
pub async fn replay(deployment: &Deployment, projection: &str) -> Value {
    let out = deployment
        .vaxctl_ok(&["replay", "--projection", projection, "--json"])
        .await;
    let figures = last_json(&out);
    assert_eq!(figures["swapped"], true, "{projection}: {figures}");
    eprintln!("drill figure: replay {projection}: {figures}");
    figures
}

/// Restores a backup into a new empty cluster, with a deployment (nothing started) on it.
pub async fn restore(live: &Deployment, dir: &str, issuer: &Issuer) -> Restored {
    let cluster = Cluster::start_empty().await;
    let mut stack = TestStack::new().await;
    stack.kafka.brokers = cluster.brokers.clone();
    stack.kafka.schema_registry_url = cluster.registry_url.clone();
    stack.kafka.topic_prefix = live.stack.kafka.topic_prefix.clone();
    let deployment = Deployment::new(stack, issuer).await;
    let figures = last_json(&deployment.vaxctl_ok(&["restore", "--from", dir, "--json"]).await);
    assert_eq!(figures["ok"], true, "{figures}");
    eprintln!("drill figure: restore: {figures}");
    Restored {
        deployment,
        _cluster: cluster,
    }
}

/// A deployment on a restored cluster (which lives as long as it does).
pub struct Restored {
    pub deployment: Deployment,
    _cluster: Cluster,
}

impl Restored {
    /// Replays every projection into the deployment's stores and starts a query API on them.
    pub async fn serve(&mut self) {
        for projection in ["postgres", "redis", "clickhouse"] {
            replay(&self.deployment, projection).await;
        }
        self.deployment.start("query-api", &[]).await;
    }
}

impl std::ops::Deref for Restored {
    type Target = Deployment;
    fn deref(&self) -> &Deployment {
        &self.deployment
    }
}
