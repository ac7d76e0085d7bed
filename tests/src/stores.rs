//! Stores of a drill's own, which it may restart, kill or starve without touching the shared
//! stack: a Redis without persistence, a PostgreSQL cluster (optionally on a small tmpfs), a
//! ClickHouse server. Each runs from a scratch directory and is stopped on drop.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::{
    e2e::{Scratch, free_port},
    eventually, repo_root,
};

/// Runs a command, asserting it succeeds; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    run("id", &["-u"]).trim() == "0"
}

/// A Redis server run like the local stack's: a cache, nothing persisted.
pub struct OwnRedis {
    pub port: u16,
    dir: Scratch,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: Scratch::new("redis"),
            child: None,
        };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (deploy/local/install)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        eventually(Duration::from_secs(20), "the drill's Redis to answer", || {
            let client = client.clone();
            async move {
                let mut connection = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut connection).await.ok()
            }
        })
        .await;
    }

    /// Kills the server and starts it again on the same port: without persistence, empty.
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        self.spawn().await;
    }
}

/// A PostgreSQL cluster of the drill's own, with a `vaxtrail` database.
pub struct OwnPostgres {
    pub port: u16,
    dir: PathBuf,
    /// A tmpfs mounted at `dir`, if the cluster lives on one.
    mounted: bool,
}

impl OwnPostgres {
    /// A cluster in a directory of its own.
    pub async fn start() -> Self {
        Self::start_in(false, 0).await
    }

    /// A cluster on a tmpfs of `megabytes` (root only): a disk that can fill up.
    pub async fn start_on_tmpfs(megabytes: u64) -> Self {
        Self::start_in(true, megabytes).await
    }

    async fn start_in(tmpfs: bool, megabytes: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("vaxtrail-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        if tmpfs {
            assert!(is_root(), "a tmpfs needs root");
            run(
                "mount",
                &[
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={megabytes}m"),
                    "tmpfs",
                    &dir.display().to_string(),
                ],
            );
        }
        if is_root() {
            run("chown", &["postgres:", &dir.display().to_string()]);
        }
        let postgres = Self {
            port: free_port(),
            dir,
            mounted: tmpfs,
        };
        postgres.as_pg(&[
            "initdb",
            "-D",
            &postgres.data(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        postgres.resume().await;
        let admin = sqlx::PgPool::connect(&format!("postgres://postgres@127.0.0.1:{}/postgres", postgres.port))
            .await
            .expect("the drill's postgres answers");
        sqlx::query("CREATE DATABASE vaxtrail")
            .execute(&admin)
            .await
            .expect("creating the database");
        postgres
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// A PostgreSQL program run as the `postgres` user (initdb and pg_ctl refuse root).
    fn pg_command(args: &[&str]) -> std::process::Command {
        let binary = format!("/usr/lib/postgresql/15/bin/{}", args[0]);
        let mut command = if is_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--", binary.as_str()]);
            command
        } else {
            std::process::Command::new(binary)
        };
        command.args(&args[1..]).stdin(Stdio::null());
        command
    }

    /// Runs a PostgreSQL program, asserting it succeeds; its stdout.
    fn as_pg(&self, args: &[&str]) -> String {
        let out = Self::pg_command(args)
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", args[0]));
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/vaxtrail", self.port)
    }

    /// The directory the cluster lives in (a tmpfs for [`Self::start_on_tmpfs`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub async fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.as_pg(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-l",
            &log,
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "start",
        ]);
    }

    /// Stops the server (`fast`: connections closed, a clean shutdown; `immediate`: as a crash).
    pub fn halt(&self, mode: &str) {
        self.as_pg(&["pg_ctl", "-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    /// Whether the server is running (it stops itself when its WAL cannot be written).
    pub fn running(&self) -> bool {
        Self::pg_command(&["pg_ctl", "-D", &self.data(), "status"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The server's log, for messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if self.running() {
            let _ = std::panic::catch_unwind(|| self.halt("immediate"));
        }
        if self.mounted {
            let _ = std::process::Command::new("umount").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A ClickHouse server of the drill's own (Debian's package, the local stack's configuration).
pub struct OwnClickHouse {
    pub http_port: u16,
    dir: Scratch,
    child: Option<tokio::process::Child>,
}

impl OwnClickHouse {
    pub async fn start() -> Self {
        let dir = Scratch::new("clickhouse");
        for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.0.join(sub)).expect("writable");
        }
        let (http_port, tcp_port) = (free_port(), free_port());
        let template = std::fs::read_to_string(repo_root().join("deploy/local/clickhouse/config.xml.in"))
            .expect("the local stack's ClickHouse configuration");
        let config = template
            .replace("@DIR@", &dir.0.display().to_string())
            .replace("@HTTP_PORT@", &http_port.to_string())
            .replace("@TCP_PORT@", &tcp_port.to_string());
        std::fs::write(dir.0.join("config.xml"), config).expect("writable");
        std::fs::copy(
            repo_root().join("deploy/local/clickhouse/users.xml"),
            dir.0.join("users.xml"),
        )
        .expect("writable");
        let mut clickhouse = Self {
            http_port,
            dir,
            child: None,
        };
        clickhouse.spawn().await;
        clickhouse
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    async fn spawn(&mut self) {
        let child = tokio::process::Command::new("clickhouse-server")
            .arg(format!("--config-file={}", self.dir.0.join("config.xml").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("clickhouse-server is installed (deploy/local/install)");
        self.child = Some(child);
        let url = format!("{}/ping", self.url());
        eventually(Duration::from_secs(60), "the drill's ClickHouse to answer", || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s) and starts it again; its data stays.
    pub async fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        self.spawn().await;
    }
}
