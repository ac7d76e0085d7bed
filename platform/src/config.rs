//! Configuration pieces shared by the binaries. Each binary's config struct flattens the pieces it
//! needs; every field is read from one `VAXTRAIL_*` environment variable (or the matching flag),
//! and the defaults point at the local stack that `deploy/local/up` starts.

use std::fmt;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

/// Parses a binary's config from flags and the environment. On a missing or malformed value it
/// prints clap's message plus the environment variable that holds the value, and exits with 2.
pub fn from_env<C: clap::Parser>() -> C {
    C::try_parse().unwrap_or_else(|error| {
        let variables = variables_named_in(&C::command(), &error.to_string());
        let _ = error.print();
        if !variables.is_empty() {
            eprintln!(
                "configuration comes from the environment: check {}",
                variables.join(", ")
            );
        }
        std::process::exit(if error.use_stderr() { 2 } else { 0 });
    })
}

/// The environment variables of the arguments whose flags a clap message mentions.
fn variables_named_in(command: &clap::Command, message: &str) -> Vec<String> {
    command
        .get_arguments()
        .filter(|arg| {
            arg.get_long()
                .is_some_and(|long| message.contains(&format!("--{long} ")))
        })
        .filter_map(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
        .collect()
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging settings.
#[derive(Clone, Debug, Args)]
pub struct LogArgs {
    /// Log format: `text` or `json`.
    #[arg(long = "log-format", env = "VAXTRAIL_LOG_FORMAT", default_value = "text")]
    pub format: LogFormat,
    /// Log filter in `tracing` env-filter syntax (e.g. `info,rdkafka=warn`).
    #[arg(long = "log-filter", env = "VAXTRAIL_LOG", default_value = "info")]
    pub filter: String,
}

/// Kafka and schema-registry settings.
#[derive(Clone, Debug, Args)]
pub struct KafkaArgs {
    /// Comma-separated Kafka bootstrap servers.
    #[arg(
        long = "kafka-brokers",
        env = "VAXTRAIL_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Base URL of the Confluent-compatible schema registry.
    #[arg(
        long = "schema-registry-url",
        env = "VAXTRAIL_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry_url: String,
    /// Prefix put before every topic name, so several systems (or tests) can share one cluster.
    #[arg(long = "topic-prefix", env = "VAXTRAIL_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// Partitions of each event topic (vaccination and certificate events must have the same count).
    #[arg(long = "partitions", env = "VAXTRAIL_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,
}

impl KafkaArgs {
    /// The topic names this configuration uses.
    pub fn topics(&self) -> crate::TopicCatalog {
        crate::TopicCatalog::new(&self.topic_prefix, self.partitions)
    }
}

/// A connection URL that may carry a password: never printed.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// The URL, for handing to a client library only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretUrl([redacted])")
    }
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(SecretString::from(s.to_owned())))
    }
}

/// A schema name safe to put in SQL unquoted.
pub fn valid_schema(name: &str) -> anyhow::Result<&str> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        ok,
        "schema name {name:?}: use lower-case letters, digits and _ (at most 63)"
    );
    Ok(name)
}

/// PostgreSQL settings.
#[derive(Clone, Debug, Args)]
pub struct PostgresArgs {
    /// PostgreSQL connection URL (may hold a password; never logged).
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "VAXTRAIL_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5433/vaxtrail",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub url: SecretUrl,
    /// Schema holding vaxtrail's tables.
    #[arg(long = "database-schema", env = "VAXTRAIL_DATABASE_SCHEMA", default_value = "public")]
    pub schema: String,
    /// Largest number of pooled connections.
    #[arg(
        long = "database-max-connections",
        env = "VAXTRAIL_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
}

/// Redis settings.
#[derive(Clone, Debug, Args)]
pub struct RedisArgs {
    /// Redis connection URL (may hold a password; never logged).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "VAXTRAIL_REDIS_URL",
        default_value = "redis://127.0.0.1:6380",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub url: SecretUrl,
    /// Prefix put before every key vaxtrail writes.
    #[arg(
        long = "redis-key-prefix",
        env = "VAXTRAIL_REDIS_KEY_PREFIX",
        default_value = "vaxtrail:"
    )]
    pub key_prefix: String,
}

/// ClickHouse settings.
#[derive(Clone, Debug, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP interface URL.
    #[arg(
        id = "clickhouse_url",
        long = "clickhouse-url",
        env = "VAXTRAIL_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:18123"
    )]
    pub url: String,
    /// ClickHouse database holding vaxtrail's tables.
    #[arg(
        long = "clickhouse-database",
        env = "VAXTRAIL_CLICKHOUSE_DATABASE",
        default_value = "vaxtrail"
    )]
    pub database: String,
    /// ClickHouse user.
    #[arg(
        long = "clickhouse-user",
        env = "VAXTRAIL_CLICKHOUSE_USER",
        default_value = "default"
    )]
    pub user: String,
    /// ClickHouse password (never logged).
    #[arg(
        long = "clickhouse-password",
        env = "VAXTRAIL_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: SecretUrl,
}

impl PostgresArgs {
    /// A pool that connects on first use (so a service starts, not ready, while PostgreSQL is
    /// down), with `search_path` set to the configured schema.
    pub fn pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        lazy_pool(
            &self.url,
            &[("search_path", self.schema.as_str())],
            self.max_connections,
        )
    }
}

/// A PostgreSQL pool that connects on first use, with these session settings (`search_path`, …)
/// on every connection.
pub fn lazy_pool(
    url: &SecretUrl,
    settings: &[(&str, &str)],
    max_connections: u32,
) -> Result<sqlx::PgPool, sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.expose().parse()?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy_with(options.options(settings.iter().copied())))
}

impl RedisArgs {
    /// A client; connections are opened on use.
    pub fn client(&self) -> Result<redis::Client, redis::RedisError> {
        redis::Client::open(self.url.expose())
    }
}

impl ClickHouseArgs {
    /// A client bound to the configured database (`with_validation(false)` keeps it working
    /// against the 18.16 server Debian ships as well as a current one).
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(self.password.expose())
            .with_database(&self.database)
            .with_validation(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Everything {
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    }

    #[test]
    fn all_pieces_flatten_into_one_config_with_local_stack_defaults() {
        use clap::CommandFactory;
        Everything::command().debug_assert();
        let parsed = <Everything as clap::Parser>::try_parse_from(["t", "--partitions", "12"]).unwrap();
        assert_eq!(parsed.kafka.partitions, 12);
        assert_eq!(parsed.redis.url.expose(), "redis://127.0.0.1:6380");
        assert_eq!(parsed.clickhouse.database, "vaxtrail");
    }

    #[test]
    fn a_malformed_value_is_refused_naming_the_flag() {
        use clap::CommandFactory;
        let error = <Everything as clap::Parser>::try_parse_from(["t", "--partitions", "many"])
            .err()
            .unwrap();
        let named = variables_named_in(&Everything::command(), &error.to_string());
        assert_eq!(named, ["VAXTRAIL_PARTITIONS"], "{error}");
    }

    #[test]
    fn secret_urls_never_print_their_value() {
        let url: SecretUrl = "postgres://u:hunter2@h/db".parse().unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.expose(), "postgres://u:hunter2@h/db");
    }
}
