//! End-to-end harness: the four services as real processes on a test's slice of the local stack,
//! driven over HTTP, and `vaxctl` run as the operator runs it. Also a second, empty cluster (a
//! Tansu broker and a registry of its own) to restore a backup into.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

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

pub use crate::{
    cluster::Cluster,
    drill::{
        Restored, Snapshot, assert_same, count_from_env, live_deployment, load, replay, restore, sample, settled,
        snapshot,
    },
};

/// The tests' one scratch-directory helper (here for the drills that name it `e2e::Scratch`).
pub use crate::Scratch;

/// The environment a service process gets on `stack`'s slice, signing with (or trusting the
/// published halves of) the keys in `issuer_keys`.
pub fn service_env(stack: &TestStack, issuer_keys: &Path) -> Vec<(String, String)> {
    let keys = repo_root().join(".vaxtrail/keys");
    let s = stack;
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
        ("VAXTRAIL_ISSUER_KEYS", issuer_keys.display().to_string()),
        (
            "VAXTRAIL_ISSUER_PUBLIC_KEYS",
            crate::signer::public_dir(issuer_keys).display().to_string(),
        ),
        ("VAXTRAIL_ENVIRONMENT", "development".to_owned()),
        (
            "VAXTRAIL_KEYSTORE_URL",
            s.keystore
                .url
                .as_ref()
                .map(|u| u.expose().to_owned())
                .unwrap_or_default(),
        ),
        ("VAXTRAIL_KEYSTORE_SCHEMA", s.keystore.schema.clone()),
        (
            "VAXTRAIL_KEK_FILE",
            s.keystore
                .kek_file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
        ),
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

/// The sum of a Prometheus series (every line starting with `series`, labels included as
/// written) on a service's `/metrics`; 0 when it has none or does not answer.
pub async fn metric(address: &str, series: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{address}/metrics")).await else {
        return 0.0;
    };
    let page = response.text().await.unwrap_or_default();
    page.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A running service process.
pub struct Service {
    pub name: String,
    pub address: String,
    child: tokio::process::Child,
}

impl Service {
    /// Starts binary `name` (from the build's bin dir) listening on a free port, with `env` (a
    /// variable given empty is removed from what the process inherits), its output going to
    /// `stdout` and `stderr`. Killed if dropped.
    pub fn launch(name: &str, env: impl IntoIterator<Item = (String, String)>, stdout: Stdio, stderr: Stdio) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let mut command = tokio::process::Command::new(bin_dir().join(name));
        for (key, value) in env {
            if value.is_empty() {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        let child = command
            .env("VAXTRAIL_LISTEN", &address)
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} was built (deploy/local/up builds every binary): {e}"));
        Self {
            name: name.to_owned(),
            address,
            child,
        }
    }

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

    /// SIGTERM, and asserts a clean exit within 30 s.
    pub async fn stop_cleanly(&mut self) {
        let pid = self.child.id().expect("running").to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} stops within 30 s", self.name))
            .expect("it exits");
        assert!(status.success(), "{} exited with {status}", self.name);
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
        service_env(&self.stack, &self.issuer_keys)
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
        let index = self.services.len();
        let log = |suffix: &str| {
            Stdio::from(std::fs::File::create(self.logs.0.join(format!("{name}-{index}.{suffix}"))).expect("writable"))
        };
        let env = self
            .env()
            .into_iter()
            .chain(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.services.push(Service::launch(name, env, log("out"), log("err")));
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
        let mut command = tokio::process::Command::new(bin_dir().join("vaxctl"));
        for (key, value) in self.env() {
            if value.is_empty() {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        command
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

/// The query API's answer for `event` (`GET /v1/events/{event}` with `token`) once it names a
/// certificate; panics after `deadline`.
pub async fn certified(query: &str, token: &str, event: &str, deadline: Duration) -> Value {
    let client = reqwest::Client::new();
    eventually(deadline, &format!("event {event} certified"), || async {
        let body: Value = client
            .get(format!("{query}/v1/events/{event}"))
            .bearer_auth(token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["certificateId"].is_string().then_some(body)
    })
    .await
}

/// The recipient key the query API gives for a pre-enrollment code (`GET /v1/recipients` with
/// `token`), once the Postgres projection has it: an event's answer can come from the cache first.
/// Panics after `deadline`.
pub async fn recipient_of(query: &str, token: &str, code: &str, deadline: Duration) -> String {
    let client = reqwest::Client::new();
    eventually(deadline, &format!("the recipient of {code} projected"), || async {
        let found: Value = client
            .get(format!("{query}/v1/recipients"))
            .query(&[("preEnrollmentCode", code)])
            .bearer_auth(token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(found["recipients"][0]["recipientKey"].as_str()?.to_owned())
    })
    .await
}
