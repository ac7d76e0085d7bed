//! `vaxctl smoke`: writes a fresh value through each server of the stack and reads it back, so an
//! operator (and CI) knows every server really stores and answers, not just that a port is open.

use std::time::Duration;

use clap::Args;
use platform::{ClickHouseArgs, KafkaArgs, PostgresArgs, RedisArgs, topics::TopicSpec};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};

const DEADLINE: Duration = Duration::from_secs(20);

/// Settings for the smoke check.
#[derive(Clone, Debug, Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    pub postgres: PostgresArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
}

/// Why a round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topics: {0}")]
    Topics(#[from] platform::topics::TopicError),
    #[error("schema registry: {0}")]
    Registry(#[from] avro::client::ClientError),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("{0:?} is not a plain lowercase SQL identifier")]
    Identifier(String),
    #[error("no answer within {DEADLINE:?}")]
    Timeout,
    #[error("wrote {wrote:?} but read back {read:?}")]
    Mismatch { wrote: String, read: String },
}

fn same(wrote: &str, read: &str) -> Result<(), SmokeError> {
    if wrote == read {
        Ok(())
    } else {
        Err(SmokeError::Mismatch {
            wrote: wrote.to_owned(),
            read: read.to_owned(),
        })
    }
}

fn fresh_value() -> String {
    format!("smoke-{}", uuid::Uuid::new_v4())
}

/// Produces a record (idempotent, acks=all) to `topic` and consumes it back.
pub async fn kafka(brokers: &str, topic: &str) -> Result<(), SmokeError> {
    let spec = TopicSpec {
        name: topic.to_owned(),
        partitions: 1,
        config: vec![],
    };
    platform::topics::ensure_topics(brokers, &[spec]).await?;
    let kafka = platform::Kafka::new(brokers);
    let producer: FutureProducer = kafka.producer()?;
    let value = fresh_value();
    let record = FutureRecord::to(topic).key("smoke").payload(&value);
    let delivered = producer.send(record, DEADLINE).await.map_err(|(e, _)| e)?;

    let consumer: StreamConsumer = kafka.reader(&format!("{topic}-smoke"))?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, delivered.partition, Offset::Offset(delivered.offset))?;
    consumer.assign(&assignment)?;
    let message = tokio::time::timeout(DEADLINE, consumer.recv())
        .await
        .map_err(|_| SmokeError::Timeout)??;
    same(&value, &String::from_utf8_lossy(message.payload().unwrap_or_default()))
}

/// Registers a one-field record schema under `subject` and fetches it back by id.
pub async fn registry(url: &str, subject: &str) -> Result<(), SmokeError> {
    let client = avro::client::RegistryClient::new(url);
    let schema = r#"{"fields":[{"name":"note","type":"string"}],"name":"Smoke","type":"record"}"#;
    let id = client.register(subject, schema).await?;
    same(schema, &client.schema_by_id(id).await?)
}

/// Creates a table in `schema`, inserts a row and selects it back.
pub async fn postgres(args: &PostgresArgs, schema: &str) -> Result<(), SmokeError> {
    if schema.is_empty()
        || !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(SmokeError::Identifier(schema.to_owned()));
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(DEADLINE)
        .connect(args.url.expose())
        .await?;
    // Safe: the schema name was checked above to be a plain lowercase identifier.
    let sql = |text: String| sqlx::AssertSqlSafe(text);
    sqlx::query(sql(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
        .execute(&pool)
        .await?;
    sqlx::query(sql(format!(
        "CREATE TABLE IF NOT EXISTS {schema}.smoke (id uuid PRIMARY KEY, note text NOT NULL)"
    )))
    .execute(&pool)
    .await?;
    let (id, value) = (uuid::Uuid::new_v4(), fresh_value());
    sqlx::query(sql(format!("INSERT INTO {schema}.smoke (id, note) VALUES ($1, $2)")))
        .bind(id)
        .bind(&value)
        .execute(&pool)
        .await?;
    let read: String = sqlx::query_scalar(sql(format!("SELECT note FROM {schema}.smoke WHERE id = $1")))
        .bind(id)
        .fetch_one(&pool)
        .await?;
    same(&value, &read)
}

/// Sets a key (with a short expiry) and gets it back.
pub async fn redis(args: &RedisArgs, key: &str) -> Result<(), SmokeError> {
    let client = redis::Client::open(args.url.expose())?;
    let mut connection = tokio::time::timeout(DEADLINE, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| SmokeError::Timeout)??;
    let value = fresh_value();
    let key = format!("{}{key}", args.key_prefix);
    redis::cmd("SET")
        .arg(&key)
        .arg(&value)
        .arg("EX")
        .arg(300)
        .query_async::<()>(&mut connection)
        .await?;
    let read: String = redis::cmd("GET").arg(&key).query_async(&mut connection).await?;
    same(&value, &read)
}

/// Creates a MergeTree table in the configured database, inserts a row and selects it back.
/// The SQL runs on Debian's 18.16 server and on a current one.
pub async fn clickhouse(args: &ClickHouseArgs) -> Result<(), SmokeError> {
    let client = args.client();
    client
        .query("CREATE TABLE IF NOT EXISTS smoke (id String, note String) ENGINE = MergeTree ORDER BY id")
        .execute()
        .await?;
    let (id, value) = (uuid::Uuid::new_v4().to_string(), fresh_value());
    client
        .query("INSERT INTO smoke (id, note) VALUES (?, ?)")
        .bind(&id)
        .bind(&value)
        .execute()
        .await?;
    let read: String = client
        .query("SELECT note FROM smoke WHERE id = ?")
        .bind(&id)
        .fetch_one()
        .await?;
    same(&value, &read)
}

/// Runs every round trip and prints one line per server; fails when any failed.
pub async fn run(kafka_args: &KafkaArgs, args: &SmokeArgs) -> anyhow::Result<()> {
    let checks = [
        (
            "broker",
            kafka(
                &kafka_args.brokers,
                &format!("{}vaxtrail-smoke", kafka_args.topic_prefix),
            )
            .await,
        ),
        (
            "registry",
            registry(&kafka_args.schema_registry_url, "vaxtrail-smoke-value").await,
        ),
        ("postgres", postgres(&args.postgres, "vaxtrail_smoke").await),
        ("redis", redis(&args.redis, "smoke").await),
        ("clickhouse", clickhouse(&args.clickhouse).await),
    ];
    let mut failed = 0;
    for (server, outcome) in &checks {
        match outcome {
            Ok(()) => println!("  ok    {server:<11} wrote a value and read it back"),
            Err(error) => {
                failed += 1;
                println!("  FAIL  {server:<11} {error}");
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} servers failed the smoke check",
        checks.len()
    );
    Ok(())
}
