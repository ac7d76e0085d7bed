//! Killing the broker and starting it again with `deploy/local/up` keeps every topic, record and
//! committed offset (Tansu's SQLite storage under .vaxtrail/). This file holds one test: cargo runs
//! test binaries one after another, so nothing else uses the broker while it is down.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use platform::topics::{TopicSpec, ensure_topics, partition_counts};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use vaxtrail_tests::{TestStack, eventually, repo_root};

const RECORDS: usize = 30;
const TIMEOUT: Duration = Duration::from_secs(20);

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    platform::Kafka::new(brokers).consumer(group).unwrap()
}

/// Every record of the topic as partition → [(offset, key, value)].
fn read_all(brokers: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<(i64, String, String)>> {
    let consumer = consumer(brokers, "reader");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut seen: BTreeMap<i32, Vec<(i64, String, String)>> = BTreeMap::new();
    let until = std::time::Instant::now() + TIMEOUT;
    while seen.values().map(Vec::len).sum::<usize>() < RECORDS && std::time::Instant::now() < until {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            seen.entry(message.partition()).or_default().push((
                message.offset(),
                text(message.key()),
                text(message.payload()),
            ));
        }
    }
    seen
}

fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Offset> {
    let consumer = consumer(brokers, group);
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(topic, p);
    }
    let offsets = consumer.committed_offsets(wanted, TIMEOUT).unwrap();
    offsets.elements().iter().map(|e| e.offset()).collect()
}

fn broker_pid_file() -> PathBuf {
    let state = std::env::var_os("VAXTRAIL_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".vaxtrail"));
    state.join("broker/tansu.pid")
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_records_and_committed_offsets_survive_a_broker_restart() {
    let stack = TestStack::new().await;
    let brokers = stack.kafka.brokers.clone();
    let topic = stack.topic("durable");
    let group = stack.topic("group");
    let spec = TopicSpec {
        name: topic.clone(),
        partitions: 3,
        config: vec![("retention.ms", "-1")],
    };
    ensure_topics(&brokers, std::slice::from_ref(&spec)).await.unwrap();

    let producer: FutureProducer = platform::Kafka::new(&brokers).producer().unwrap();
    for i in 0..RECORDS {
        let (key, value) = (format!("recipient-{i}"), format!("event-{i}"));
        producer
            .send(FutureRecord::to(&topic).key(&key).payload(&value), TIMEOUT)
            .await
            .unwrap();
    }
    let before = tokio::task::block_in_place(|| read_all(&brokers, &topic, 3));
    assert_eq!(before.values().map(Vec::len).sum::<usize>(), RECORDS);

    let mut commit = TopicPartitionList::new();
    for (partition, records) in &before {
        commit
            .add_partition_offset(&topic, *partition, Offset::Offset(records.len() as i64 / 2))
            .unwrap();
    }
    tokio::task::block_in_place(|| consumer(&brokers, &group).commit(&commit, CommitMode::Sync)).unwrap();
    let committed_before = tokio::task::block_in_place(|| committed(&brokers, &group, &topic, 3));
    assert!(
        committed_before.iter().all(|o| matches!(o, Offset::Offset(_))),
        "{committed_before:?}"
    );

    // Kill the broker outright (no chance to flush), wait until it is gone, then bring it back.
    let pid = std::fs::read_to_string(broker_pid_file()).expect("deploy/local/up started the broker");
    let pid = pid.trim();
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .unwrap()
            .success()
    );
    eventually(TIMEOUT, "the broker to exit", || async {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    })
    .await;
    let up = tokio::process::Command::new(repo_root().join("deploy/local/up"))
        .env("VAXTRAIL_SKIP_BUILD", "1")
        .status()
        .await
        .unwrap();
    assert!(up.success(), "deploy/local/up brought the broker back");

    let counts = partition_counts(&brokers, &[spec]).await.unwrap();
    assert_eq!(
        counts,
        vec![(topic.clone(), 3)],
        "the topic survived with its partitions"
    );
    let after = tokio::task::block_in_place(|| read_all(&brokers, &topic, 3));
    assert_eq!(after, before, "every record survived at its partition and offset");
    let committed_after = tokio::task::block_in_place(|| committed(&brokers, &group, &topic, 3));
    assert_eq!(committed_after, committed_before, "committed offsets survived");
}
