//! The catalog of Kafka topics: names (with an optional prefix, so tests and several systems can
//! share one cluster), partition counts, and their creation with infinite retention.

use std::time::Duration;

use rdkafka::{
    Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};

/// One topic the system uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// Full topic name, prefix included.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Broker-side topic configuration.
    pub config: Vec<(&'static str, &'static str)>,
}

/// The topic names one deployment uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicCatalog {
    /// Vaccination events posted by vaccination systems, keyed by recipient key.
    pub vaccination_events: String,
    /// Certificate outcomes decided by the signer, same partition count, hash-chained.
    pub certificate_events: String,
    /// Records that could not be decoded or applied, with their reason and position.
    pub dead_letters: String,
    /// Programmes, vaccines and facilities: compacted, keyed by kind and id, one partition (so
    /// every reader sees the changes in the order they were made).
    pub master_data: String,
    /// Partition count of the two event topics.
    pub partitions: i32,
}

/// Records are kept forever: the log is the source of truth.
const KEEP_FOREVER: [(&str, &str); 2] = [("retention.ms", "-1"), ("retention.bytes", "-1")];
/// The latest record of each key is kept forever (master data: the current state of each
/// programme, vaccine and facility; earlier versions may be compacted away).
const COMPACTED: [(&str, &str); 3] = [
    ("cleanup.policy", "compact"),
    ("retention.ms", "-1"),
    ("retention.bytes", "-1"),
];

impl TopicCatalog {
    /// The catalog for a prefix ("" in production) and an event-topic partition count.
    pub fn new(prefix: &str, partitions: i32) -> Self {
        Self {
            vaccination_events: format!("{prefix}vaccination-events"),
            certificate_events: format!("{prefix}certificate-events"),
            dead_letters: format!("{prefix}dead-letters"),
            master_data: format!("{prefix}master-data"),
            partitions,
        }
    }

    /// Every topic with its partitions and configuration.
    pub fn specs(&self) -> Vec<TopicSpec> {
        let spec = |name: &str, partitions| TopicSpec {
            name: name.to_owned(),
            partitions,
            config: KEEP_FOREVER.to_vec(),
        };
        vec![
            spec(&self.vaccination_events, self.partitions),
            spec(&self.certificate_events, self.partitions),
            spec(&self.dead_letters, 1),
            TopicSpec {
                name: self.master_data.clone(),
                partitions: 1,
                config: COMPACTED.to_vec(),
            },
        ]
    }

    /// Every topic name.
    pub fn names(&self) -> Vec<String> {
        self.specs().into_iter().map(|s| s.name).collect()
    }
}

/// What [`ensure_topics`] did to one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured {
    /// The topic was created.
    Created,
    /// The topic already existed with the expected partition count.
    Existed,
}

/// Errors creating or checking topics.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The broker could not be reached or refused a request.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topic exists with another partition count.
    #[error("topic {name} has {actual} partitions, expected {expected}")]
    PartitionMismatch { name: String, expected: i32, actual: i32 },
    /// The broker refused to delete the topic.
    #[error("deleting topic {name}: {code}")]
    Delete { name: String, code: RDKafkaErrorCode },
    /// The broker refused to create the topic.
    #[error("creating topic {name}: {code}")]
    Create { name: String, code: RDKafkaErrorCode },
}

/// Creates each missing topic and checks the partition count of each existing one. Idempotent.
pub async fn ensure_topics(brokers: &str, specs: &[TopicSpec]) -> Result<Vec<(String, Ensured)>, TopicError> {
    let admin: AdminClient<DefaultClientContext> = crate::Kafka::new(brokers).client()?;
    let existing = partition_counts(brokers, specs).await?;
    let mut outcome = Vec::new();
    let mut to_create = Vec::new();
    for spec in specs {
        match existing.iter().find(|(name, _)| name == &spec.name) {
            Some((_, actual)) if *actual == spec.partitions => outcome.push((spec.name.clone(), Ensured::Existed)),
            Some((_, actual)) => {
                return Err(TopicError::PartitionMismatch {
                    name: spec.name.clone(),
                    expected: spec.partitions,
                    actual: *actual,
                });
            }
            None => to_create.push(spec),
        }
    }
    if to_create.is_empty() {
        return Ok(outcome);
    }
    let new_topics: Vec<NewTopic> = to_create
        .iter()
        .map(|spec| {
            spec.config.iter().fold(
                NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(1)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(name) => outcome.push((name, Ensured::Created)),
            // Another process created it between our look and our request.
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => outcome.push((name, Ensured::Existed)),
            Err((name, code)) => return Err(TopicError::Create { name, code }),
        }
    }
    Ok(outcome)
}

/// Deletes every topic whose name starts with `prefix`; returns their names.
pub async fn delete_with_prefix(brokers: &str, prefix: &str) -> Result<Vec<String>, TopicError> {
    let consumer: BaseConsumer = crate::Kafka::new(brokers).client()?;
    let owned_prefix = prefix.to_owned();
    let names: Vec<String> = tokio::task::spawn_blocking(move || {
        consumer.fetch_metadata(None, Duration::from_secs(10)).map(|m| {
            m.topics()
                .iter()
                .map(|t| t.name().to_owned())
                .filter(|n| n.starts_with(&owned_prefix))
                .collect()
        })
    })
    .await
    .expect("metadata task does not panic")?;
    if names.is_empty() {
        return Ok(names);
    }
    let admin: AdminClient<DefaultClientContext> = crate::Kafka::new(brokers).client()?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&refs, &options).await? {
        match result {
            // Already gone is what we wanted.
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => return Err(TopicError::Delete { name, code }),
        }
    }
    Ok(names)
}

/// The partition count of each named topic that exists.
pub async fn partition_counts(brokers: &str, specs: &[TopicSpec]) -> Result<Vec<(String, i32)>, TopicError> {
    let consumer: BaseConsumer = crate::Kafka::new(brokers).client()?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| names.iter().any(|n| n == t.name()) && t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    })
    .await
    .expect("metadata task does not panic")
}

/// Writes a record that could not be decoded or applied to the dead-letter topic: its original
/// key and value bytes, and headers `vaxtrail.topic`, `vaxtrail.partition`, `vaxtrail.offset`,
/// `vaxtrail.reason` and `vaxtrail.stage` (who refused it). Returns once the broker acknowledged.
pub async fn dead_letter(
    producer: &FutureProducer,
    dead_letters: &str,
    message: &OwnedMessage,
    stage: &str,
    reason: &str,
) -> Result<(), KafkaError> {
    tracing::warn!(
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        stage,
        reason,
        "dead-lettering a record"
    );
    let (partition, offset) = (message.partition().to_string(), message.offset().to_string());
    let headers = [
        ("vaxtrail.topic", message.topic()),
        ("vaxtrail.partition", partition.as_str()),
        ("vaxtrail.offset", offset.as_str()),
        ("vaxtrail.reason", reason),
        ("vaxtrail.stage", stage),
    ]
    .into_iter()
    .fold(OwnedHeaders::new(), |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    });
    let mut record = FutureRecord::to(dead_letters).headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_topics_share_one_partition_count_and_keep_records_forever() {
        let catalog = TopicCatalog::new("t1-", 6);
        let specs = catalog.specs();
        assert_eq!(specs[0].name, "t1-vaccination-events");
        assert_eq!(specs[0].partitions, specs[1].partitions);
        assert!(specs.iter().all(|s| s.config.contains(&("retention.ms", "-1"))));
    }
}
