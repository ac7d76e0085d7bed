//! The registry's storage: the single-partition `_schemas` topic. A reader task folds every record
//! into [`RegistryState`]; a write produces a record (acks=all) and returns only once the reader
//! has applied it, so the log is the one source of truth and a restarted registry (or Confluent's,
//! or Karapace) rebuilds the same state from it.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::state::RegistryState;

/// How long a write or a read-your-writes wait may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the log-backed store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the schema log was not read up to offset {0} in time")]
    CatchUpTimeout(i64),
    #[error("topics: {0}")]
    Topics(#[from] platform::topics::TopicError),
}

/// The `_schemas` log and the state folded from it.
pub struct SchemaLog {
    topic: String,
    producer: FutureProducer,
    watermarks: Arc<StreamConsumer>,
    state: Arc<RwLock<RegistryState>>,
    applied: watch::Receiver<i64>,
    writer: Mutex<()>,
}

impl SchemaLog {
    /// Creates the topic if needed (one partition, compacted, as Confluent requires), starts the
    /// reader and waits until it has read the whole log.
    pub async fn open(brokers: &str, topic: &str, shutdown: CancellationToken) -> Result<Self, StoreError> {
        let spec = platform::topics::TopicSpec {
            name: topic.to_owned(),
            partitions: 1,
            config: vec![("cleanup.policy", "compact")],
        };
        platform::topics::ensure_topics(brokers, &[spec]).await?;

        let kafka = platform::Kafka::new(brokers).tuned(platform::Tuning {
            linger: Duration::ZERO,
            delivery_timeout: Duration::from_secs(10),
            ..platform::Tuning::default()
        });
        let producer: FutureProducer = kafka.producer()?;
        let reader = consumer(brokers)?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        reader.assign(&assignment)?;

        let state = Arc::new(RwLock::new(RegistryState::default()));
        let (applied_tx, applied) = watch::channel(-1_i64);
        tokio::spawn(read_forever(reader, state.clone(), applied_tx, shutdown));

        let log = Self {
            topic: topic.to_owned(),
            producer,
            watermarks: Arc::new(consumer(brokers)?),
            state,
            applied,
            writer: Mutex::new(()),
        };
        log.catch_up().await?;
        Ok(log)
    }

    /// Reads the state.
    pub fn read<T>(&self, f: impl FnOnce(&RegistryState) -> T) -> T {
        f(&self.state.read().expect("state lock is never poisoned"))
    }

    /// Runs `decide` on the fully caught-up state under the writer lock and appends the records it
    /// returns, waiting until they are applied. One write at a time, so ids and versions stay unique.
    pub async fn write<T, E>(
        &self,
        decide: impl FnOnce(&RegistryState) -> Result<(T, Vec<(Vec<u8>, Option<Vec<u8>>)>), E>,
    ) -> Result<Result<T, E>, StoreError> {
        let _guard = self.writer.lock().await;
        self.catch_up().await?;
        let (answer, records) = match self.read(decide) {
            Ok(decided) => decided,
            Err(refused) => return Ok(Err(refused)),
        };
        let mut last = -1;
        for (key, value) in &records {
            let mut record = FutureRecord::to(&self.topic).partition(0).key(key);
            if let Some(value) = value {
                record = record.payload(value);
            }
            let delivery = self.producer.send(record, STORE_TIMEOUT).await.map_err(|(e, _)| e)?;
            last = delivery.offset;
        }
        if last >= 0 {
            self.wait_applied(last).await?;
        }
        Ok(Ok(answer))
    }

    /// Waits until the reader has applied everything in the log now.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let consumer = self.watermarks.clone();
        let topic = self.topic.clone();
        let (_, high) = tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&topic, 0, STORE_TIMEOUT))
            .await
            .expect("watermark task does not panic")?;
        self.wait_applied(high - 1).await
    }

    async fn wait_applied(&self, offset: i64) -> Result<(), StoreError> {
        let mut applied = self.applied.clone();
        tokio::time::timeout(STORE_TIMEOUT, applied.wait_for(|a| *a >= offset))
            .await
            .map_err(|_| StoreError::CatchUpTimeout(offset))?
            .map_err(|_| StoreError::CatchUpTimeout(offset))?;
        Ok(())
    }
}

fn consumer(brokers: &str) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    platform::Kafka::new(brokers).reader("vaxtrail-registry")
}

async fn read_forever(
    reader: StreamConsumer,
    state: Arc<RwLock<RegistryState>>,
    applied: watch::Sender<i64>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            message = reader.recv() => message,
        };
        match message {
            Ok(message) => {
                let Some(key) = message.key() else { continue };
                let outcome = state
                    .write()
                    .expect("state lock is never poisoned")
                    .apply(key, message.payload());
                if let Err(reason) = outcome {
                    metrics::counter!("vaxtrail_registry_skipped_records_total").increment(1);
                    tracing::warn!(offset = message.offset(), %reason, "schema log record skipped");
                }
                applied.send_replace(message.offset());
            }
            Err(error) => {
                tracing::warn!(%error, "reading the schema log failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
