//! End-to-end harness: the four services as real processes on a test's slice of the local stack,
//! driven over HTTP, and `vaxctl` run as the operator runs it. Also a second, empty cluster (a
//! Tansu broker and a registry of its own) to restore a backup into.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

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

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vaxtrail-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Kafka-compatible broker and a schema registry, both new and empty.
pub struct Cluster {
    pub brokers: String,
    pub registry_url: String,
    children: Vec<tokio::process::Child>,
    _dir: Scratch,
}

impl Cluster {
    /// Starts Tansu (SQLite storage in a scratch directory) and `vaxtrail-registry` over it.
    pub async fn start_empty() -> Self {
        let dir = Scratch::new("cluster");
        std::fs::write(dir.0.join(".env"), "").expect("writable");
        let tansu = std::env::var_os("VAXTRAIL_TANSU").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/vaxtrail/tools/bin/tansu")
        });
        let (broker_port, registry_port) = (free_port(), free_port());
        let brokers = format!("127.0.0.1:{broker_port}");
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.0.join(name)).expect("writable"));
        let broker = tokio::process::Command::new(&tansu)
            .current_dir(&dir.0)
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
        eventually(Duration::from_secs(30), "the new broker to listen", || async {
            tokio::net::TcpStream::connect(&brokers).await.ok().map(|_| ())
        })
        .await;
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
            async move { client.get(url).send().await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
        Self {
            brokers,
            registry_url,
            children: vec![broker, registry],
            _dir: dir,
        }
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
    /// SIGKILL.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
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
}

impl Deployment {
    /// A deployment on `stack` signing with the keys in `issuer` (nothing started yet; topics
    /// created).
    pub async fn new(stack: TestStack, issuer: &Issuer) -> Self {
        stack.create_event_topics().await;
        Self {
            stack,
            issuer_keys: issuer.dir.clone(),
            services: Vec::new(),
            logs: Scratch::new("logs"),
        }
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
            ("VAXTRAIL_PUBLIC_BASE_URL", PUBLIC_BASE_URL.to_owned()),
            ("VAXTRAIL_JWKS", keys.join("dev-jwks.json").display().to_string()),
            ("VAXTRAIL_DEV_TOKEN_KEY", keys.join("dev-token-key.json").display().to_string()),
            ("VAXTRAIL_KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
            ("VAXTRAIL_KAFKA_MAX_POLL_INTERVAL_MS", "20000".to_owned()),
            ("VAXTRAIL_LOG", "warn".to_owned()),
            ("RUST_BACKTRACE", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Starts a service (`command-api`, `signer-worker`, `projectors`, `query-api`) and waits
    /// until it is ready. Returns its index in `services`.
    pub async fn start(&mut self, name: &str, extra: &[(&str, &str)]) -> usize {
        let address = format!("127.0.0.1:{}", free_port());
        let index = self.services.len();
        let log = |suffix: &str| {
            Stdio::from(
                std::fs::File::create(self.logs.0.join(format!("{name}-{index}.{suffix}"))).expect("writable"),
            )
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
            address: address.clone(),
            child,
        });
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
            panic!("{name} was not ready within 120 s:\n{}", self.log_tail(name, index));
        }
        index
    }

    /// The last lines a service wrote to stderr.
    pub fn log_tail(&self, name: &str, index: usize) -> String {
        let text = std::fs::read_to_string(self.logs.0.join(format!("{name}-{index}.err"))).unwrap_or_default();
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

/// Per certificate id, what the query API answers about it.
pub type Answers = HashMap<String, serde_json::Value>;
