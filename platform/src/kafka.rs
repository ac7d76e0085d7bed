//! Every Kafka client vaxtrail creates, built here from one [`Tuning`], so the guarantees are
//! set once: producers are idempotent with `acks=all` (a retried send never duplicates or
//! reorders within a partition), consumers never auto-commit (offsets are stored only after the
//! effect is durable) and start from the earliest record, and log readers never join a group.

use std::time::Duration;

use rdkafka::{
    ClientConfig, ClientContext,
    config::{FromClientConfig, FromClientConfigAndContext},
    error::KafkaResult,
    producer::FutureProducer,
};

/// What differs between vaxtrail's clients. [`Tuning::default`] suits a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// How long a producer waits to fill a batch (`linger.ms`).
    pub linger: Duration,
    /// How long a produced record may wait for the broker before its send fails
    /// (`message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Large batches and a deep queue, for tools writing many records at once.
    pub bulk: bool,
    /// A group member not heard from for this long is expelled (`session.timeout.ms`); its
    /// heartbeat is a quarter of it. `None` keeps librdkafka's default.
    pub session_timeout: Option<Duration>,
    /// The longest a group member may go between polls (`max.poll.interval.ms`).
    pub max_poll_interval: Option<Duration>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(30),
            bulk: false,
            session_timeout: None,
            max_poll_interval: None,
        }
    }
}

/// `VAXTRAIL_KAFKA_FETCH_WAIT_MS`: how long a consumer's fetch may wait at the broker for records
/// (`fetch.wait.max.ms`; librdkafka's default of 500 ms when unset).
fn fetch_wait() -> Option<u64> {
    std::env::var("VAXTRAIL_KAFKA_FETCH_WAIT_MS").ok()?.parse().ok()
}

/// A broker address with the tuning its clients get.
#[derive(Clone, Debug)]
pub struct Kafka {
    brokers: String,
    tuning: Tuning,
}

impl Kafka {
    /// Clients of `brokers` (comma-separated) with the default tuning.
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            tuning: Tuning::default(),
        }
    }

    /// The same brokers with another tuning.
    pub fn tuned(&self, tuning: Tuning) -> Self {
        Self {
            brokers: self.brokers.clone(),
            tuning,
        }
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    /// An idempotent producer with `acks=all`.
    pub fn producer(&self) -> KafkaResult<FutureProducer> {
        self.producer_config().create()
    }

    /// The producer's configuration (for a producer with a context of its own).
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.tuning.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                self.tuning.delivery_timeout.as_millis().to_string(),
            );
        if self.tuning.bulk {
            config
                .set("batch.size", "1000000")
                .set("batch.num.messages", "10000")
                .set("queue.buffering.max.messages", "500000");
        }
        config
    }

    /// A consumer in `group` that commits only when told and starts a partition with no committed
    /// offset at its earliest record.
    pub fn consumer<C: FromClientConfig>(&self, group: &str) -> KafkaResult<C> {
        self.consumer_config(group).create()
    }

    /// [`Kafka::consumer`] with a context (rebalance callbacks).
    pub fn consumer_with_context<X: ClientContext, C: FromClientConfigAndContext<X>>(
        &self,
        group: &str,
        context: X,
    ) -> KafkaResult<C> {
        self.consumer_config(group).create_with_context(context)
    }

    fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest");
        if let Some(session) = self.tuning.session_timeout {
            config
                .set("session.timeout.ms", session.as_millis().to_string())
                .set("heartbeat.interval.ms", (session.as_millis() / 4).max(100).to_string());
        }
        if let Some(interval) = self.tuning.max_poll_interval {
            config.set("max.poll.interval.ms", interval.as_millis().to_string());
        }
        if let Some(wait) = fetch_wait() {
            config.set("fetch.wait.max.ms", wait.to_string());
        }
        config
    }

    /// A reader that is assigned partitions and never joins `group` (librdkafka needs a group
    /// name to fetch; nothing is ever committed under it).
    pub fn reader<C: FromClientConfig>(&self, group: &str) -> KafkaResult<C> {
        self.consumer(group)
    }

    /// A bare client for metadata, watermarks and administration.
    pub fn client<C: FromClientConfig>(&self) -> KafkaResult<C> {
        self.base().create()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_are_idempotent_and_wait_for_every_replica() {
        let config = Kafka::new("b:9092").producer_config();
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("batch.size"), None);
        let bulk = Kafka::new("b:9092").tuned(Tuning {
            bulk: true,
            ..Tuning::default()
        });
        assert_eq!(bulk.producer_config().get("batch.size"), Some("1000000"));
    }

    #[test]
    fn consumers_never_auto_commit_and_heartbeat_a_quarter_of_the_session() {
        let kafka = Kafka::new("b:9092").tuned(Tuning {
            session_timeout: Some(Duration::from_secs(60)),
            ..Tuning::default()
        });
        let config = kafka.consumer_config("g");
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(config.get("session.timeout.ms"), Some("60000"));
        assert_eq!(config.get("heartbeat.interval.ms"), Some("15000"));
    }
}
