//! `vaxctl topics`: the event topics with their partitions and high watermarks, and `ensure`,
//! which creates what is missing with infinite retention.

use std::time::Duration;

use clap::Subcommand;
use platform::{
    KafkaArgs,
    topics::{Ensured, ensure_topics},
};
use rdkafka::consumer::{BaseConsumer, Consumer};

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
            let groups = groups(&kafka.topic_prefix);
            let (rows, lags) = tokio::task::spawn_blocking(move || {
                let rows = watermarks(&brokers, &names)?;
                let lags = lag(&brokers, &groups, &rows);
                anyhow::Ok((rows, lags))
            })
            .await??;
            println!("{:<32} {:>9} {:>12}", "topic", "partition", "high mark");
            for (topic, partition, high) in &rows {
                println!("{topic:<32} {partition:>9} {high:>12}");
            }
            println!();
            println!(
                "{:<32} {:<24} {:>9} {:>10} {:>8}",
                "consumer group", "topic", "partition", "committed", "lag"
            );
            for (group, topic, partition, committed, lag) in lags {
                let committed = committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
                println!("{group:<32} {topic:<24} {partition:>9} {committed:>10} {lag:>8}");
            }
            println!(
                "(the projections keep their own positions in their stores; their groups' offsets are for lag only)"
            );
        }
    }
    Ok(())
}

/// The services' consumer groups, with the topic prefix.
fn groups(prefix: &str) -> Vec<String> {
    [
        "signer",
        "projector-postgres",
        "projector-redis",
        "projector-clickhouse",
    ]
    .iter()
    .map(|g| format!("{prefix}{g}"))
    .collect()
}

/// Per group and partition it reads: the committed offset (if any) and how far it is behind the
/// high watermark. The signer reads `vaccination-events`; the projectors both event topics.
fn lag(brokers: &str, groups: &[String], rows: &[(String, i32, i64)]) -> Vec<(String, String, i32, Option<i64>, i64)> {
    let mut out = Vec::new();
    for group in groups {
        let Ok(consumer) = platform::Kafka::new(brokers).reader::<BaseConsumer>(group) else {
            continue;
        };
        let reads: Vec<&(String, i32, i64)> = rows
            .iter()
            .filter(|(topic, _, _)| {
                (group.ends_with("signer") && topic.ends_with("vaccination-events"))
                    || (group.contains("projector-") && !topic.ends_with("dead-letters"))
            })
            .collect();
        let mut asked = rdkafka::TopicPartitionList::new();
        for (topic, partition, _) in &reads {
            asked.add_partition(topic, *partition);
        }
        let committed = consumer.committed_offsets(asked, Duration::from_secs(10)).ok();
        for (topic, partition, high) in reads {
            let offset = committed
                .as_ref()
                .and_then(|c| c.find_partition(topic, *partition))
                .and_then(|e| e.offset().to_raw())
                .filter(|o| *o >= 0);
            out.push((
                group.clone(),
                topic.clone(),
                *partition,
                offset,
                high - offset.unwrap_or(0),
            ));
        }
    }
    out
}

fn watermarks(brokers: &str, names: &[String]) -> anyhow::Result<Vec<(String, i32, i64)>> {
    Ok(platform::log::watermarks(brokers, names)?
        .into_iter()
        .map(|m| (m.topic, m.partition, m.high))
        .collect())
}
