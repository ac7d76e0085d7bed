//! The consuming loop of a projection: batches bounded by count and time, positions checked
//! against what the projection stored (never the consumer group's), undecodable records to
//! `dead-letters`, and a failing store retried with backoff without skipping anything. The next
//! batch is fetched and decoded while the current one is written, so the store and the broker
//! work at the same time.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use avro::codec::{CertificateCodec, VaccinationCodec, through_registry};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::OwnedMessage,
    producer::FutureProducer,
};
use tokio_util::sync::CancellationToken;

use avro::{certificate::CertificateEnvelope, vaccination::VaccinationEnvelope};

/// One decoded record.
#[derive(Clone, Debug)]
pub enum Projected {
    Vaccination(Box<VaccinationEnvelope>),
    Certificate(Box<CertificateEnvelope>),
    /// Not decodable: dead-lettered, only its offset counts.
    Skipped,
}

/// A record to apply: topic, partition, offset and what it says.
#[derive(Clone, Debug)]
pub struct Positioned {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record: Projected,
}

impl Positioned {
    /// A record at the message's position.
    pub fn of(message: &OwnedMessage, record: Projected) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            record,
        }
    }
}

/// Decodes the event topics' records into what projections apply, through the registry (an
/// outage of the registry is waited out until `stop`).
pub struct Decoder {
    vaccination_events: String,
    vaccinations: VaccinationCodec,
    certificates: CertificateCodec,
}

impl Decoder {
    pub fn new(registry_url: &str, vaccination_events: &str, certificate_events: &str) -> Self {
        Self {
            vaccination_events: vaccination_events.to_owned(),
            vaccinations: VaccinationCodec::new(registry_url, vaccination_events),
            certificates: CertificateCodec::new(registry_url, certificate_events),
        }
    }

    /// The record, or why it does not decode.
    pub async fn decode(
        &self,
        stop: &CancellationToken,
        message: &OwnedMessage,
    ) -> anyhow::Result<Result<Projected, String>> {
        let bytes = message.payload().unwrap_or_default();
        Ok(if message.topic() == self.vaccination_events {
            through_registry(stop, || self.vaccinations.decode(bytes))
                .await?
                .map_err(|e| e.to_string())
                .map(|e| Projected::Vaccination(Box::new(e)))
        } else {
            through_registry(stop, || self.certificates.decode(bytes))
                .await?
                .map_err(|e| e.to_string())
                .map(|e| Projected::Certificate(Box::new(e)))
        })
    }
}

/// A read model fed from the log. `apply` must store the batch and its partitions' next offsets
/// atomically, or write rows that are idempotent and the offsets only after them.
pub trait Projection: Send + Sync + 'static {
    const NAME: &'static str;
    /// Creates what the projection needs (tables, migrations); retried until it succeeds.
    fn prepare(&self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// The next offset to apply of a topic's partition, if one was stored.
    fn next_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl std::future::Future<Output = anyhow::Result<Option<i64>>> + Send;
    /// Applies a batch (in log order per partition) with its next offsets.
    fn apply(&self, batch: &[Positioned]) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// Why a projection is waiting, if it is (shown by `/readyz`).
#[derive(Clone, Debug, Default)]
pub struct Stall(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Stall {
    fn set(&self, why: Option<String>) {
        *self.0.lock().expect("not poisoned") = why;
    }

    /// `Err(why)` while the projection waits for its store.
    pub fn check(&self) -> Result<(), String> {
        match self.0.lock().expect("not poisoned").as_ref() {
            Some(why) => Err(format!("waiting for its store: {why}")),
            None => Ok(()),
        }
    }
}

/// What the loop needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub brokers: String,
    pub registry_url: String,
    pub group: String,
    pub vaccination_events: String,
    pub certificate_events: String,
    pub dead_letters: String,
    pub batch_size: usize,
    pub batch_time: Duration,
    pub stall: Stall,
}

/// How often the lag gauge asks the broker for high watermarks.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Where a partition stands: the next offset to apply, and whether the consumer was seen there.
struct Position {
    next: i64,
    confirmed: bool,
}

/// Prepares the projection (retrying while its store is down), then runs it until `stop`.
pub async fn run<P: Projection>(settings: Settings, projection: P, stop: CancellationToken) -> anyhow::Result<()> {
    retry::<P, _, _, _>(&stop, &settings.stall, "preparing the store", || projection.prepare()).await?;
    let consumer: Arc<StreamConsumer> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map(Arc::new)
        .context("creating the projection's consumer")?;
    consumer.subscribe(&[&settings.vaccination_events, &settings.certificate_events])?;
    let dead_letters: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .set("acks", "all")
        .create()?;
    let mut feed = Feed {
        decoder: Decoder::new(
            &settings.registry_url,
            &settings.vaccination_events,
            &settings.certificate_events,
        ),
        consumer: consumer.clone(),
        dead_letters,
        positions: HashMap::new(),
        settings: &settings,
    };
    let mut last_lag: Option<Instant> = None;
    // The next offset of each partition applied so far (for the lag gauge).
    let mut done: HashMap<(String, i32), i64> = HashMap::new();

    // The next batch is fetched and decoded while the current one is written.
    let mut items = feed.next::<P>(&projection, &stop).await?;
    while !stop.is_cancelled() {
        if items.is_empty() {
            items = feed.next::<P>(&projection, &stop).await?;
            continue;
        }
        let started = Instant::now();
        let (applied, next) = tokio::join!(
            retry::<P, _, _, _>(&stop, &settings.stall, "applying a batch", || projection.apply(&items)),
            feed.next::<P>(&projection, &stop)
        );
        applied?;
        for item in &items {
            let slot = done.entry((item.topic.clone(), item.partition)).or_default();
            *slot = (*slot).max(item.offset + 1);
        }
        metrics::histogram!("vaxtrail_projection_batch_seconds", "projection" => P::NAME)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("vaxtrail_projection_batch_size", "projection" => P::NAME).record(items.len() as f64);
        metrics::counter!("vaxtrail_projection_applied_total", "projection" => P::NAME).increment(items.len() as u64);

        // Lag: records behind each partition's high watermark, asked of the broker at most every
        // few seconds and off the runtime's threads (the request blocks).
        if last_lag.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            last_lag = Some(Instant::now());
            let asked: Vec<(String, i32, i64)> = done
                .iter()
                .map(|((topic, partition), next)| (topic.clone(), *partition, *next))
                .collect();
            let reader = consumer.clone();
            tokio::task::spawn_blocking(move || {
                for (topic, partition, next) in asked {
                    if let Ok((_, high)) = reader.fetch_watermarks(&topic, partition, Duration::from_secs(2)) {
                        metrics::gauge!("vaxtrail_projection_lag", "projection" => P::NAME, "topic" => topic, "partition" => partition.to_string())
                            .set((high - next).max(0) as f64);
                    }
                }
            });
        }

        // Consumer-group offsets: for lag metrics only.
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &done {
            let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(error) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(%error, "committing offsets (lag metrics only)");
        }
        items = next?;
    }
    Ok(())
}

/// Where the records come from: the consumer, the positions the projection stored, the codecs.
struct Feed<'a> {
    settings: &'a Settings,
    consumer: Arc<StreamConsumer>,
    dead_letters: FutureProducer,
    decoder: Decoder,
    positions: HashMap<(String, i32), Position>,
}

impl Feed<'_> {
    /// The next batch: up to `batch_size` records or what came within `batch_time`, without
    /// what precedes the stored positions, decoded (what does not decode is dead-lettered).
    /// Empty when nothing came, or after a seek.
    async fn next<P: Projection>(
        &mut self,
        projection: &P,
        stop: &CancellationToken,
    ) -> anyhow::Result<Vec<Positioned>> {
        // Gather a batch: up to `batch_size` records, or what came within `batch_time`.
        let mut batch: Vec<OwnedMessage> = Vec::new();
        let deadline = Instant::now() + self.settings.batch_time;
        while batch.len() < self.settings.batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !batch.is_empty() {
                break;
            }
            let wait = if batch.is_empty() {
                Duration::from_millis(500)
            } else {
                left
            };
            tokio::select! {
                () = stop.cancelled() => break,
                received = tokio::time::timeout(wait, self.consumer.recv()) => match received {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "consuming");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(_) => if !batch.is_empty() { break },
                }
            }
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }

        // Keep only what follows the stored position of each partition.
        let mut accepted = Vec::with_capacity(batch.len());
        for message in batch {
            let key = (message.topic().to_owned(), message.partition());
            if !self.positions.contains_key(&key) {
                let stored = retry::<P, _, _, _>(stop, &self.settings.stall, "reading stored offsets", || {
                    projection.next_offset(&key.0, key.1)
                })
                .await?;
                self.positions.insert(
                    key.clone(),
                    Position {
                        next: stored.unwrap_or(0),
                        confirmed: stored.is_none(),
                    },
                );
            }
            let position = self.positions.get_mut(&key).expect("inserted above");
            if message.offset() < position.next {
                continue;
            }
            if message.offset() > position.next && !position.confirmed {
                // A seek waits on librdkafka: keep it off the runtime's threads, which the other
                // projections in this process share.
                let (seeker, (topic, partition), next) = (self.consumer.clone(), key.clone(), position.next);
                let sought = tokio::task::spawn_blocking(move || {
                    seeker.seek(&topic, partition, Offset::Offset(next), Duration::from_secs(5))
                })
                .await?;
                if let Err(error) = sought {
                    tracing::warn!(topic = %key.0, partition = key.1, %error, "seek failed; retried at the next record");
                }
                continue;
            }
            position.confirmed = true;
            position.next = message.offset() + 1;
            accepted.push(message);
        }
        if accepted.is_empty() {
            return Ok(Vec::new());
        }

        // Decode; what does not decode goes to dead-letters and only its offset counts.
        let mut items = Vec::with_capacity(accepted.len());
        for message in &accepted {
            let decoded = self.decoder.decode(stop, message).await?;
            let record = match decoded {
                Ok(record) => record,
                Err(reason) => {
                    dead_letter(&self.dead_letters, self.settings, P::NAME, message, &reason).await?;
                    Projected::Skipped
                }
            };
            items.push(Positioned::of(message, record));
        }
        Ok(items)
    }
}

/// Retries a store operation with backoff until it succeeds or `stop`: a store that is down
/// pauses the projection, it never skips a record.
async fn retry<P: Projection, T, F, Fut>(
    stop: &CancellationToken,
    stall: &Stall,
    what: &str,
    mut call: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match call().await {
            Ok(value) => {
                stall.set(None);
                return Ok(value);
            }
            Err(error) => {
                stall.set(Some(format!("{what}: {error:#}")));
                metrics::counter!("vaxtrail_projection_retries_total", "projection" => P::NAME).increment(1);
                tracing::warn!(projection = P::NAME, error = %format!("{error:#}"), what, "store unavailable; retrying");
            }
        }
        tokio::select! {
            () = stop.cancelled() => anyhow::bail!("stopped while {what}"),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn dead_letter(
    producer: &FutureProducer,
    settings: &Settings,
    projection: &'static str,
    message: &OwnedMessage,
    reason: &str,
) -> anyhow::Result<()> {
    let stage = format!("projector-{projection}");
    platform::topics::dead_letter(producer, &settings.dead_letters, message, &stage, reason)
        .await
        .context("writing to dead-letters")?;
    metrics::counter!("vaxtrail_projection_dead_letters_total", "projection" => projection).increment(1);
    Ok(())
}
