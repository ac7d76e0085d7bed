//! A second, empty cluster for the drills: a Tansu broker (SQLite storage in a scratch
//! directory, optionally inside a network namespace) and a `vaxtrail-registry` over it, to
//! restore a backup into or to kill and partition without touching the shared stack.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::{Scratch, bin_dir, e2e::free_port, eventually};

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
    /// The broker's storage directory (its SQLite files), to search what it keeps on disk.
    pub fn storage(&self) -> &Path {
        &self._dir.0
    }

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
