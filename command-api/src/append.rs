//! Appending an event to `vaccination-events`: encode through the registry, produce with the
//! idempotent producer (acks=all) keyed by the recipient key, and return only once the broker has
//! acknowledged. A recently appended event id is remembered in Redis so a retried POST does not
//! append again; if Redis is down the append still happens and the signer drops the duplicate.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use avro::{codec::VaccinationCodec, vaccination::VaccinationEnvelope};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// How long an appended event id is remembered for retries.
const REMEMBER_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("encoding through the schema registry: {0}")]
    Codec(#[from] avro::codec::CodecError),
    #[error("the broker did not acknowledge: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Where an event landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Written now, at this partition and offset.
    Written { partition: i32, offset: i64 },
    /// Already written by an earlier request with the same event id.
    AlreadyAppended,
}

/// An event handed to the producer, not yet acknowledged.
pub enum Enqueued {
    /// Nothing to wait for: an earlier request appended it.
    AlreadyAppended,
    /// On its way to the broker.
    InFlight {
        delivery: rdkafka::producer::DeliveryFuture,
        producer: Arc<FutureProducer>,
        remembered: String,
        started: Instant,
    },
}

/// The append path.
pub struct Appender {
    topic: String,
    brokers: String,
    /// Replaced after a failed send (see [`Appender::replace_producer`]).
    producer: RwLock<Arc<FutureProducer>>,
    codec: VaccinationCodec,
    redis: Option<redis::aio::ConnectionManager>,
    key_prefix: String,
    timeout: Duration,
}

impl Appender {
    /// An appender for `topic`.
    pub fn new(
        brokers: &str,
        registry_url: &str,
        topic: &str,
        redis: Option<redis::aio::ConnectionManager>,
        key_prefix: &str,
        timeout: Duration,
        keys: Option<Arc<platform::keystore::KeyStore>>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            topic: topic.to_owned(),
            brokers: brokers.to_owned(),
            producer: RwLock::new(Arc::new(producer(brokers, timeout)?)),
            codec: VaccinationCodec::new(registry_url, topic).with_keys(keys.map(|k| k as _)),
            redis,
            key_prefix: key_prefix.to_owned(),
            timeout,
        })
    }

    fn remembered_key(&self, envelope: &VaccinationEnvelope) -> String {
        format!("{}appended:{}", self.key_prefix, envelope.event.event_id)
    }

    /// Appends the event unless it was appended recently; returns once the broker acknowledged.
    pub async fn append(&self, envelope: &VaccinationEnvelope) -> Result<Appended, AppendError> {
        let enqueued = self.enqueue(envelope).await?;
        self.complete(enqueued).await
    }

    /// Hands the event to the producer without waiting for the acknowledgement. Events enqueued
    /// one after another keep their order per partition (idempotent producer), so a caller can
    /// have many in flight and still keep one recipient's events in order.
    pub async fn enqueue(&self, envelope: &VaccinationEnvelope) -> Result<Enqueued, AppendError> {
        let remembered = self.remembered_key(envelope);
        // The retry check (Redis) and the recipient's data key (the key store) are independent
        // round trips: wait for both at once. A key fetched for a retry is the recipient's
        // existing one, so nothing is created in vain.
        let (appended, key) = tokio::join!(self.was_appended(&remembered), self.codec.key_for_writing(envelope));
        if appended {
            metrics::counter!("vaxtrail_commands_duplicates_total").increment(1);
            return Ok(Enqueued::AlreadyAppended);
        }
        let value = self.codec.encode_with(envelope, key?).await?;
        let key = envelope.event.recipient_key.as_str();
        let event_id = envelope.event.event_id.to_string();
        // The record's one header: the request's trace, which the signer and the projectors
        // continue. (Every header costs Tansu 0.6 a scan of its header table per record read:
        // README, known limits. The event's id and type are in the value.)
        let trace = platform::TraceContext::current()
            .unwrap_or_else(platform::TraceContext::root)
            .child();
        let headers = trace.add_to(rdkafka::message::OwnedHeaders::new());
        tracing::debug!(target: platform::trace::TARGET, trace_id = %trace.trace_id(), event_id, "appending the event");
        let record = FutureRecord::to(&self.topic).key(key).payload(&value).headers(headers);
        let producer = self.producer.read().expect("producer lock is never poisoned").clone();
        let delivery = match producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((error, _)) => {
                self.replace_producer(&producer);
                return Err(error.into());
            }
        };
        Ok(Enqueued::InFlight {
            delivery,
            producer,
            remembered,
            started: Instant::now(),
        })
    }

    /// Waits for an enqueued event's acknowledgement (at most the configured timeout).
    pub async fn complete(&self, enqueued: Enqueued) -> Result<Appended, AppendError> {
        let Enqueued::InFlight {
            delivery,
            producer,
            remembered,
            started,
        } = enqueued
        else {
            return Ok(Appended::AlreadyAppended);
        };
        let outcome = match tokio::time::timeout(self.timeout, delivery).await {
            Ok(Ok(Ok(delivery))) => Ok(delivery),
            Ok(Ok(Err((error, _)))) => Err(error),
            Ok(Err(_canceled)) => Err(rdkafka::error::KafkaError::Canceled),
            Err(_elapsed) => Err(rdkafka::error::KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::MessageTimedOut,
            )),
        };
        let delivery = outcome.inspect_err(|_| self.replace_producer(&producer))?;
        metrics::histogram!("vaxtrail_commands_produce_seconds").record(started.elapsed().as_secs_f64());
        self.remember(&remembered).await;
        Ok(Appended::Written {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    /// After a failed send the producer is replaced by a fresh one (a new producer id) instead of
    /// being reused: librdkafka bumps the failed idempotent producer's epoch, which Apache Kafka
    /// accepts but Tansu 0.6 does not (its storage task panics). A fresh producer is correct on both.
    fn replace_producer(&self, failed: &Arc<FutureProducer>) {
        let mut current = self.producer.write().expect("producer lock is never poisoned");
        if !Arc::ptr_eq(&current, failed) {
            return; // a concurrent failure already replaced it
        }
        match producer(&self.brokers, self.timeout) {
            Ok(fresh) => {
                *current = Arc::new(fresh);
                metrics::counter!("vaxtrail_commands_producer_replaced_total").increment(1);
            }
            Err(error) => tracing::error!(%error, "could not create a fresh producer; keeping the old one"),
        }
    }

    async fn was_appended(&self, key: &str) -> bool {
        let Some(mut redis) = self.redis.clone() else {
            return false;
        };
        match redis::cmd("EXISTS").arg(key).query_async::<bool>(&mut redis).await {
            Ok(exists) => exists,
            Err(error) => {
                tracing::warn!(%error, "redis unavailable for the retry check; appending anyway");
                false
            }
        }
    }

    async fn remember(&self, key: &str) {
        let Some(mut redis) = self.redis.clone() else { return };
        let outcome = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(REMEMBER_FOR.as_secs())
            .query_async::<Option<String>>(&mut redis)
            .await;
        if let Err(error) = outcome {
            tracing::warn!(%error, "redis unavailable; a retry of this request will append a duplicate the signer drops");
        }
    }
}

fn producer(brokers: &str, timeout: Duration) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    platform::Kafka::new(brokers)
        .tuned(platform::Tuning {
            linger: Duration::from_millis(2),
            delivery_timeout: timeout,
            ..platform::Tuning::default()
        })
        .producer()
}
