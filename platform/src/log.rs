//! Reading the log directly, without a consumer group: the partitions' watermarks, and every
//! record of chosen offset spans in offset order. The operator's tools (replay, backup, audit)
//! read this way, so they never join or disturb the services' groups. The calls block: run them
//! on a blocking thread.

use std::{collections::HashMap, time::Duration};

use anyhow::Context as _;

use crate::Backoff;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::OwnedMessage,
};

/// How long reading may make no progress before it fails (an overloaded Tansu has answered no
/// fetch for over a minute).
const STALLED_AFTER: Duration = Duration::from_secs(300);

/// A partition with its low and high watermarks (the first offset held and the next to come).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermarks {
    pub topic: String,
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

impl Watermarks {
    /// Every record the partition holds now.
    pub fn span(&self) -> Span {
        Span {
            topic: self.topic.clone(),
            partition: self.partition,
            from: self.low,
            to: self.high,
        }
    }
}

/// The offsets `[from, to)` of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl Span {
    pub fn len(&self) -> u64 {
        (self.to - self.from).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    crate::Kafka::new(brokers)
        .reader("vaxtrail-log-reader")
        .context("creating a log reader")
}

/// Every partition of the topics that exist, in topic order then partition order. Metadata is
/// asked per topic (a broker holding thousands of topics answers that quickly).
pub fn watermarks(brokers: &str, topics: &[String]) -> anyhow::Result<Vec<Watermarks>> {
    let consumer = consumer(brokers)?;
    let timeout = Duration::from_secs(30);
    // A broker busy with another client's large fetch can take longer than one timeout to answer
    // (Tansu 0.6 after a reader was killed mid-read): asked again, for up to three minutes.
    let patiently =
        Backoff::new(Duration::from_millis(500), Duration::from_secs(5)).giving_up_after(Duration::from_secs(180));
    let retriable = |error: &KafkaError| {
        tracing::warn!(%error, "asking the broker for watermarks; asking again");
        true
    };
    let mut found = Vec::new();
    for name in topics {
        let metadata = patiently
            .retry_blocking(|| consumer.fetch_metadata(Some(name), timeout), retriable)
            .with_context(|| format!("reading the metadata of {name}"))?;
        let Some(topic) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
        else {
            continue;
        };
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        for partition in partitions {
            let (low, high) = patiently
                .retry_blocking(|| consumer.fetch_watermarks(name, partition, timeout), retriable)
                .with_context(|| format!("watermarks of {name}/{partition}"))?;
            found.push(Watermarks {
                topic: name.clone(),
                partition,
                low,
                high,
            });
        }
    }
    Ok(found)
}

/// [`watermarks`], on a blocking thread (for async callers).
pub async fn watermarks_async(brokers: &str, topics: &[String]) -> anyhow::Result<Vec<Watermarks>> {
    let (brokers, topics) = (brokers.to_owned(), topics.to_vec());
    tokio::task::spawn_blocking(move || watermarks(&brokers, &topics)).await?
}

/// Where each partition ended: `(topic, partition)` → the first offset not handed over.
pub type Ends = HashMap<(String, i32), i64>;

/// [`read_spans`] on a blocking thread, its batches handed over a channel (four in flight) for
/// async code to work on as they come. Await the handle, after the channel is drained or dropped,
/// for where each partition ended.
pub fn stream_spans(
    brokers: &str,
    spans: Vec<Span>,
    until: Option<i64>,
    batch: usize,
) -> (
    tokio::sync::mpsc::Receiver<Vec<OwnedMessage>>,
    tokio::task::JoinHandle<anyhow::Result<Ends>>,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let brokers = brokers.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        read_spans(&brokers, &spans, until, batch.max(1), |messages| {
            sender.blocking_send(messages).is_ok()
        })
    });
    (receiver, reader)
}

/// Reads the spans' records, each partition in offset order (partitions interleave), handing
/// them to `each` in batches of up to `batch` records. A partition ends at its span's end, or at
/// its first record stamped after `until` (milliseconds since the epoch), if given. `each`
/// returns `false` to stop early. Returns where each partition ended: `(topic, partition)` → the
/// first offset not handed over.
pub fn read_spans(
    brokers: &str,
    spans: &[Span],
    until: Option<i64>,
    batch: usize,
    mut each: impl FnMut(Vec<OwnedMessage>) -> bool,
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let mut ends: HashMap<(String, i32), i64> =
        spans.iter().map(|s| ((s.topic.clone(), s.partition), s.from)).collect();
    let mut open: HashMap<(String, i32), i64> = spans
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| ((s.topic.clone(), s.partition), s.to))
        .collect();
    if open.is_empty() {
        return Ok(ends);
    }
    let consumer = consumer(brokers)?;
    let mut list = TopicPartitionList::new();
    for span in spans.iter().filter(|s| !s.is_empty()) {
        list.add_partition_offset(&span.topic, span.partition, Offset::Offset(span.from))?;
    }
    consumer.assign(&list).context("assigning the partitions to read")?;
    let mut pending: Vec<OwnedMessage> = Vec::with_capacity(batch);
    let mut last_progress = std::time::Instant::now();
    while !open.is_empty() {
        let polled = consumer.poll(Duration::from_millis(200));
        let Some(message) = polled else {
            if !pending.is_empty() && !each(std::mem::take(&mut pending)) {
                return Ok(ends);
            }
            anyhow::ensure!(
                last_progress.elapsed() < STALLED_AFTER,
                "nothing read for {} s; still to read: {:?}",
                STALLED_AFTER.as_secs(),
                ends
            );
            continue;
        };
        let message = message.context("reading the log")?;
        last_progress = std::time::Instant::now();
        let key = (message.topic().to_owned(), message.partition());
        let Some(&to) = open.get(&key) else { continue };
        let stamped_after = until.is_some_and(|limit| message.timestamp().to_millis().is_some_and(|at| at > limit));
        if message.offset() >= to || stamped_after {
            close(&consumer, &mut open, &key)?;
            continue;
        }
        ends.insert(key.clone(), message.offset() + 1);
        if message.offset() + 1 >= to {
            close(&consumer, &mut open, &key)?;
        }
        pending.push(message.detach());
        if pending.len() >= batch && !each(std::mem::take(&mut pending)) {
            return Ok(ends);
        }
    }
    if !pending.is_empty() {
        each(pending);
    }
    Ok(ends)
}

fn close(consumer: &BaseConsumer, open: &mut HashMap<(String, i32), i64>, key: &(String, i32)) -> anyhow::Result<()> {
    open.remove(key);
    let mut list = TopicPartitionList::new();
    list.add_partition(&key.0, key.1);
    consumer.pause(&list).context("pausing a partition read to its end")?;
    Ok(())
}

/// A record's place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Reads the records at these positions, in the order given. Positions of a partition that lie
/// close together are read as one span (an auditor's positions cluster: one recipient's records,
/// a certificate's corrections), so a thousand positions take one pass, not a thousand fetches.
/// Fails when a position is not in the log.
pub fn read_at(brokers: &str, positions: &[Position]) -> anyhow::Result<Vec<OwnedMessage>> {
    /// Positions at most this far apart share a span.
    const GAP: i64 = 256;
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    // A position outside what the log holds would leave the read waiting: refuse it first.
    let mut topics: Vec<String> = positions.iter().map(|p| p.topic.clone()).collect();
    topics.sort_unstable();
    topics.dedup();
    let marks = watermarks(brokers, &topics)?;
    for at in positions {
        let held = marks
            .iter()
            .any(|m| m.topic == at.topic && m.partition == at.partition && (m.low..m.high).contains(&at.offset));
        anyhow::ensure!(held, "{}/{}@{} is not in the log", at.topic, at.partition, at.offset);
    }
    let mut sorted: Vec<&Position> = positions.iter().collect();
    sorted.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    let mut spans: Vec<Span> = Vec::new();
    for at in sorted {
        match spans.last_mut() {
            Some(span) if span.topic == at.topic && span.partition == at.partition && at.offset < span.to + GAP => {
                span.to = span.to.max(at.offset + 1);
            }
            _ => spans.push(Span {
                topic: at.topic.clone(),
                partition: at.partition,
                from: at.offset,
                to: at.offset + 1,
            }),
        }
    }
    let wanted: std::collections::HashSet<(&str, i32, i64)> = positions
        .iter()
        .map(|p| (p.topic.as_str(), p.partition, p.offset))
        .collect();
    let mut found: HashMap<(String, i32, i64), OwnedMessage> = HashMap::with_capacity(positions.len());
    for span in &spans {
        // One span per call: read_spans reads one span per partition.
        read_spans(brokers, std::slice::from_ref(span), None, 1000, |batch| {
            for message in batch {
                if wanted.contains(&(message.topic(), message.partition(), message.offset())) {
                    found.insert(
                        (message.topic().to_owned(), message.partition(), message.offset()),
                        message,
                    );
                }
            }
            true
        })?;
    }
    positions
        .iter()
        .map(|at| {
            found
                .get(&(at.topic.clone(), at.partition, at.offset))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{}/{}@{} is not in the log", at.topic, at.partition, at.offset))
        })
        .collect()
}

/// Up to `limit` records stamped in `[from_ms, to_ms]` (milliseconds since the epoch), oldest
/// first per partition, topics in the order given. Each partition is read from where
/// offsets-for-times puts `from_ms` when the broker answers it (Kafka does; Tansu 0.6 does not,
/// and then from its start).
pub fn read_between(
    brokers: &str,
    topics: &[String],
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> anyhow::Result<Vec<OwnedMessage>> {
    // Kafka's timestamps start at the epoch: an earlier time means from the start.
    let from_ms = from_ms.max(0);
    if to_ms < from_ms {
        return Ok(Vec::new());
    }
    let marks = watermarks(brokers, topics)?;
    let consumer = consumer(brokers)?;
    let mut asked = TopicPartitionList::new();
    for mark in &marks {
        asked.add_partition_offset(&mark.topic, mark.partition, Offset::Offset(from_ms))?;
    }
    let starts = consumer
        .offsets_for_times(asked.clone(), Duration::from_secs(10))
        .unwrap_or(asked);
    let mut out = Vec::new();
    for mark in &marks {
        let from = match starts.find_partition(&mark.topic, mark.partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if (mark.low..=mark.high).contains(&o) => o,
            Some(Offset::End) => mark.high,
            _ => mark.low,
        };
        let span = Span { from, ..mark.span() };
        read_spans(brokers, &[span], Some(to_ms), 1000, |batch| {
            let stamped = |m: &OwnedMessage| m.timestamp().to_millis().unwrap_or(0) >= from_ms;
            out.extend(batch.into_iter().filter(stamped).take(limit - out.len()));
            out.len() < limit
        })?;
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
