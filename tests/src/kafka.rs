//! Reading topics back in tests.

use std::time::{Duration, Instant};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::OwnedMessage,
};

/// Total records in a topic (sum of its partitions' high watermarks).
pub fn count(brokers: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = platform::Kafka::new(brokers).client().unwrap();
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1)
        .sum()
}

/// Reads `expected` records from the start of every partition, or panics after `deadline`.
pub fn read(brokers: &str, topic: &str, partitions: i32, expected: usize, deadline: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = platform::Kafka::new(brokers).reader("vaxtrail-tests-reader").unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let until = Instant::now() + deadline;
    let mut messages = Vec::new();
    while messages.len() < expected {
        assert!(
            Instant::now() < until,
            "read {} of {expected} records of {topic}",
            messages.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            messages.push(message.unwrap().detach());
        }
    }
    messages.sort_by_key(|m| (m.partition(), m.offset()));
    messages
}
