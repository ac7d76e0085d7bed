//! `vaxctl topics`: the event topics with their partitions and high watermarks, and `ensure`,
//! which creates what is missing with infinite retention.

use std::time::Duration;

use clap::Subcommand;
use platform::{
    KafkaArgs,
    topics::{Ensured, ensure_topics},
};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
};

#[derive(Clone, Default, Subcommand)]
pub enum Action {
    /// List the topics with partitions and high watermarks (the default).
    #[default]
    List,
    /// Create missing topics; fail when one exists with another partition count.
    Ensure,
    /// Delete every topic whose name starts with a prefix (test topics, say). Stop whatever
    /// produces to them first: Tansu 0.6 panics when an idempotent produce meets a deletion.
    Delete {
        /// Name prefix of the topics to delete (must not be empty).
        #[arg(long)]
        prefix: String,
    },
}

pub async fn run(kafka: &KafkaArgs, action: Action) -> anyhow::Result<()> {
    let catalog = kafka.topics();
    match action {
        Action::Ensure => {
            for (name, outcome) in ensure_topics(&kafka.brokers, &catalog.specs()).await? {
                let said = if outcome == Ensured::Created {
                    "created"
                } else {
                    "exists"
                };
                println!("{said:>8}  {name}");
            }
        }
        Action::Delete { prefix } => {
            anyhow::ensure!(
                !prefix.is_empty(),
                "--prefix must not be empty: it would delete every topic"
            );
            let deleted = platform::topics::delete_with_prefix(&kafka.brokers, &prefix).await?;
            println!("deleted {} topics starting with {prefix:?}", deleted.len());
        }
        Action::List => {
            let brokers = kafka.brokers.clone();
            let names = catalog.names();
            let rows = tokio::task::spawn_blocking(move || watermarks(&brokers, &names)).await??;
            println!("{:<32} {:>9} {:>12}", "topic", "partition", "high mark");
            for (topic, partition, high) in rows {
                println!("{topic:<32} {partition:>9} {high:>12}");
            }
        }
    }
    Ok(())
}

fn watermarks(brokers: &str, names: &[String]) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut rows = Vec::new();
    for topic in metadata.topics().iter().filter(|t| names.iter().any(|n| n == t.name())) {
        for partition in topic.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic.name(), partition.id(), timeout)?;
            rows.push((topic.name().to_owned(), partition.id(), high));
        }
    }
    Ok(rows)
}
