//! The consuming loop of a projection: batches bounded by count and time, positions checked
//! against what the projection stored (never the consumer group's: a partition with no stored
//! position starts at its first record), undecodable records to `dead-letters`, and a failing
//! store retried with backoff without skipping anything. The next batch is fetched and decoded
//! while the current one is written, so the store and the broker work at the same time.
//!
//! Every batch is written for the store's generation (see [`crate::generation`]): a store that
//! lost its data (a Redis restart without persistence, a dropped schema) is noticed at the next
//! batch or within [`CHECK_EVERY`] when idle, and rebuilt from the log's first record while
//! `/readyz` and the `vaxtrail_projection_rebuilding` gauge say so.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use avro::codec::{CertificateCodec, CodecError, VaccinationCodec};
use platform::{Backoff, TraceContext};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::OwnedMessage,
    producer::FutureProducer,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use avro::{certificate::CertificateEnvelope, vaccination::VaccinationEnvelope};

use crate::generation::{Generation, StoreLost, Targets};

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
    /// The trace the record continues ([`platform::trace`]), for the logs.
    pub trace: Option<TraceContext>,
}

impl Positioned {
    /// A record at the message's position.
    pub fn of(message: &OwnedMessage, record: Projected) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            record,
            trace: TraceContext::from_record(message.headers()),
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
            Backoff::REGISTRY
                .retry(stop, || self.vaccinations.decode(bytes), CodecError::is_retriable)
                .await?
                .map_err(|e| e.to_string())
                .map(|e| Projected::Vaccination(Box::new(e)))
        } else {
            Backoff::REGISTRY
                .retry(stop, || self.certificates.decode(bytes), CodecError::is_retriable)
                .await?
                .map_err(|e| e.to_string())
                .map(|e| Projected::Certificate(Box::new(e)))
        })
    }
}

/// A read model fed from the log. `apply` must store the batch and its partitions' next offsets
/// atomically, or write rows that are idempotent and the offsets only after them; either way only
/// while the store's generation marker is the one given.
pub trait Projection: Send + Sync + 'static {
    const NAME: &'static str;
    /// Creates what the projection needs (tables, migrations); retried until it succeeds.
    fn prepare(&self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// The next offset to apply of a topic's partition, if one was stored (in the current
    /// generation).
    fn next_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl std::future::Future<Output = anyhow::Result<Option<i64>>> + Send;
    /// The store's generation marker; `None` when it has none (a new store, or one that lost its
    /// data).
    fn generation(&self) -> impl std::future::Future<Output = anyhow::Result<Option<Generation>>> + Send;
    /// Begins `generation`: the stored positions are forgotten and the marker written, not
    /// complete. Rows left from before are overwritten by the rebuild (every write is idempotent).
    fn begin(&self, generation: &Generation) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Marks generation `id` complete (does nothing if the marker is another's).
    fn complete(&self, id: &str) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Applies a batch (in log order per partition) with its next offsets, for generation `id`:
    /// [`StoreLost`] when the store's marker is not `id`.
    fn apply(&self, id: &str, batch: &[Positioned]) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

/// The store's generation, begun if it has none.
pub async fn open<P: Projection>(projection: &P) -> anyhow::Result<Generation> {
    if let Some(generation) = projection.generation().await? {
        return Ok(generation);
    }
    let generation = Generation::begin();
    projection.begin(&generation).await?;
    tracing::warn!(
        projection = P::NAME,
        generation = %generation.id,
        "the store has no generation marker (new, or it lost its data): rebuilding it from the log's first record"
    );
    metrics::counter!("vaxtrail_projection_generations_begun_total", "projection" => P::NAME).increment(1);
    Ok(generation)
}

/// What a projection is doing that makes it not ready (shown by `/readyz`): waiting for its
/// store, or rebuilding it from the log.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<std::sync::Mutex<HealthState>>);

#[derive(Debug, Default)]
struct HealthState {
    stalled: Option<String>,
    rebuilding: Option<String>,
}

impl Health {
    fn stalled(&self, why: Option<String>) {
        self.0.lock().expect("not poisoned").stalled = why;
    }

    fn rebuilding(&self, what: Option<String>) {
        self.0.lock().expect("not poisoned").rebuilding = what;
    }

    /// `Err(why)` while the projection waits for its store or rebuilds it.
    pub fn check(&self) -> Result<(), String> {
        let state = self.0.lock().expect("not poisoned");
        match (&state.stalled, &state.rebuilding) {
            (Some(why), _) => Err(format!("waiting for its store: {why}")),
            (None, Some(what)) => Err(format!("rebuilding its store from the log: {what}")),
            (None, None) => Ok(()),
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
    pub health: Health,
}

/// How often the lag gauge asks the broker for high watermarks.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// How often an idle projection checks that its store still holds its generation marker.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Where a partition stands: the next offset to apply, and whether the consumer was seen there.
struct Position {
    next: i64,
    confirmed: bool,
    /// The consumer was moved to `next` since the position was read.
    sought: bool,
}

/// The generation the loop writes, and what it must reach while it rebuilds.
struct Store<'a, P> {
    projection: &'a P,
    settings: &'a Settings,
    generation: Generation,
    /// Set while the generation is not complete.
    targets: Option<Targets>,
    /// Each partition's low watermark when the rebuild began.
    lows: HashMap<(String, i32), i64>,
    settled: Instant,
    checked: Instant,
}

impl<'a, P: Projection> Store<'a, P> {
    /// Opens the store's generation (beginning one if it has none); a generation that is not
    /// complete is rebuilding towards the log's high watermarks as they are now.
    async fn open(projection: &'a P, settings: &'a Settings, stop: &CancellationToken) -> anyhow::Result<Self> {
        let health = &settings.health;
        retry::<P, _, _, _>(stop, health, "preparing the store", || projection.prepare()).await?;
        let generation =
            retry::<P, _, _, _>(stop, health, "reading the generation marker", || open(projection)).await?;
        let mut store = Self {
            projection,
            settings,
            targets: None,
            lows: HashMap::new(),
            generation,
            settled: Instant::now(),
            checked: Instant::now(),
        };
        if !store.generation.complete {
            let topics = [settings.vaccination_events.clone(), settings.certificate_events.clone()];
            let marks = retry::<P, _, _, _>(stop, health, "reading the log's watermarks", || {
                platform::log::watermarks_async(&settings.brokers, &topics)
            })
            .await?;
            store.targets = Some(Targets(
                marks.iter().map(|m| ((m.topic.clone(), m.partition), m.high)).collect(),
            ));
            store.lows = marks.iter().map(|m| ((m.topic.clone(), m.partition), m.low)).collect();
        }
        store.report();
        Ok(store)
    }

    fn report(&self) {
        let rebuilding = self.targets.as_ref().map(|t| {
            let records: i64 = t.0.values().sum();
            format!("generation {}, towards {records} records", self.generation.id)
        });
        metrics::gauge!("vaxtrail_projection_rebuilding", "projection" => P::NAME).set(if rebuilding.is_some() {
            1.0
        } else {
            0.0
        });
        self.settings.health.rebuilding(rebuilding);
    }

    /// While rebuilding, at most every second: marks the generation complete once every
    /// partition's stored position reached its target (whichever instance applied it). A store
    /// that cannot answer is asked again next time (the batches wait for it meanwhile).
    async fn settle(&mut self) {
        if let Err(error) = self.try_settle().await {
            tracing::warn!(projection = P::NAME, error = %format!("{error:#}"), "checking the rebuild's progress");
        }
    }

    async fn try_settle(&mut self) -> anyhow::Result<()> {
        let Some(targets) = &self.targets else {
            return Ok(());
        };
        if self.settled.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.settled = Instant::now();
        let mut stored = HashMap::new();
        for (topic, partition) in targets.0.keys() {
            let next = self.projection.next_offset(topic, *partition).await?;
            stored.insert((topic.clone(), *partition), next);
        }
        if targets.short(&stored, &self.lows) == 0 {
            self.projection.complete(&self.generation.id).await?;
            tracing::info!(projection = P::NAME, generation = %self.generation.id, "rebuilt: the store caught up with the log");
            self.generation.complete = true;
            self.targets = None;
            self.report();
        }
        Ok(())
    }

    /// [`StoreLost`] when the store no longer holds this generation's marker (asked at most every
    /// [`CHECK_EVERY`]; a store that cannot answer is asked again next time).
    async fn still_there(&mut self) -> anyhow::Result<()> {
        if self.checked.elapsed() < CHECK_EVERY {
            return Ok(());
        }
        self.checked = Instant::now();
        match self.projection.generation().await {
            Ok(found) => Ok(StoreLost::check(&self.generation.id, found.map(|g| g.id))?),
            Err(error) => {
                tracing::warn!(projection = P::NAME, error = %format!("{error:#}"), "checking the generation marker");
                Ok(())
            }
        }
    }
}

/// Prepares the projection (retrying while its store is down), then runs it until `stop`.
pub async fn run<P: Projection>(settings: Settings, projection: P, stop: CancellationToken) -> anyhow::Result<()> {
    let mut store = Store::open(&projection, &settings, &stop).await?;
    let kafka = platform::Kafka::new(&settings.brokers);
    let consumer: Arc<StreamConsumer> = kafka
        .consumer(&settings.group)
        .map(Arc::new)
        .context("creating the projection's consumer")?;
    consumer.subscribe(&[&settings.vaccination_events, &settings.certificate_events])?;
    let dead_letters: FutureProducer = kafka.producer()?;
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
        let checked = match items.is_empty() {
            true => store.still_there().await,
            false => Ok(()),
        };
        let outcome = match checked {
            Err(error) => Err(error),
            Ok(()) if items.is_empty() => {
                feed.align(&projection, &stop).await?;
                items = feed.next::<P>(&projection, &stop).await?;
                Ok(())
            }
            Ok(()) => {
                let started = Instant::now();
                let id = store.generation.id.clone();
                let span = tracing::info_span!("projection.apply", projection = P::NAME, records = items.len());
                let (applied, next) = tokio::join!(
                    retry::<P, _, _, _>(&stop, &settings.health, "applying a batch", || projection
                        .apply(&id, &items))
                    .instrument(span),
                    feed.next::<P>(&projection, &stop)
                );
                match applied {
                    Ok(()) => {
                        traced::<P>(&items);
                        for item in &items {
                            let slot = done.entry((item.topic.clone(), item.partition)).or_default();
                            *slot = (*slot).max(item.offset + 1);
                        }
                        metrics::histogram!("vaxtrail_projection_batch_seconds", "projection" => P::NAME)
                            .record(started.elapsed().as_secs_f64());
                        metrics::histogram!("vaxtrail_projection_batch_size", "projection" => P::NAME)
                            .record(items.len() as f64);
                        metrics::counter!("vaxtrail_projection_applied_total", "projection" => P::NAME)
                            .increment(items.len() as u64);
                        items = next?;
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match outcome {
            Ok(()) => {}
            Err(error) if StoreLost::is(&error) => {
                // The store is not the one the positions describe: read it again (a missing
                // marker begins a new generation from the first record) and forget what was
                // fetched; the feed seeks each partition back to what the store holds.
                tracing::error!(projection = P::NAME, error = %format!("{error:#}"), "the store lost its data; rebuilding it from the log");
                metrics::counter!("vaxtrail_projection_store_lost_total", "projection" => P::NAME).increment(1);
                store = Store::open(&projection, &settings, &stop).await?;
                feed.positions.clear();
                done.clear();
                items = Vec::new();
                continue;
            }
            Err(error) => return Err(error),
        }
        store.settle().await;

        // Lag: records behind each partition's high watermark, asked of the broker at most every
        // few seconds and off the runtime's threads (the request blocks).
        if last_lag.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            last_lag = Some(Instant::now());
            lag::<P>(&consumer, &done);
        }

        // Consumer-group offsets: for lag metrics only, never a starting point.
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &done {
            let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if offsets.count() > 0
            && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::debug!(%error, "committing offsets (lag metrics only)");
        }
    }
    Ok(())
}

/// Sets the lag gauge of each partition applied so far, on a blocking thread.
fn lag<P: Projection>(consumer: &Arc<StreamConsumer>, done: &HashMap<(String, i32), i64>) {
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
                    // Nothing for a while: an empty batch, so an idle loop still checks its
                    // store's marker and a rebuild's progress.
                    Err(_) => break,
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
            self.know(projection, stop, &key).await?;
            let position = self.positions.get_mut(&key).expect("known above");
            if message.offset() < position.next {
                continue;
            }
            if message.offset() > position.next && !position.confirmed {
                let next = position.next;
                self.seek(&key, next).await?;
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

impl Feed<'_> {
    /// Reads where `key` stands in the store, once: its stored next offset, or with none the
    /// partition's first record (never the group's position).
    async fn know<P: Projection>(
        &mut self,
        projection: &P,
        stop: &CancellationToken,
        key: &(String, i32),
    ) -> anyhow::Result<()> {
        if self.positions.contains_key(key) {
            return Ok(());
        }
        let stored = retry::<P, _, _, _>(stop, &self.settings.health, "reading stored offsets", || {
            projection.next_offset(&key.0, key.1)
        })
        .await?;
        let next = match stored {
            Some(next) => next,
            None => self.low(key, stop).await?,
        };
        self.positions.insert(
            key.clone(),
            Position {
                next,
                confirmed: false,
                sought: false,
            },
        );
        Ok(())
    }

    /// Moves the consumer to `next` on the partition (off the runtime's threads, which the other
    /// projections share: a seek waits on librdkafka); `true` when it took.
    async fn seek(&mut self, key: &(String, i32), next: i64) -> anyhow::Result<bool> {
        let (seeker, (topic, partition)) = (self.consumer.clone(), key.clone());
        let sought = tokio::task::spawn_blocking(move || {
            seeker.seek(&topic, partition, Offset::Offset(next), Duration::from_secs(5))
        })
        .await?;
        if let Err(error) = &sought {
            tracing::debug!(topic = %key.0, partition = key.1, %error, "seek failed; tried again later");
        }
        Ok(sought.is_ok())
    }

    /// Moves the consumer, on every partition assigned to it whose position it has not seen yet,
    /// to the position the store holds. Without this an idle partition would stay wherever the
    /// group's committed offset put it (its end, say, after the store lost its data), since only
    /// an arriving record would reveal the difference.
    async fn align<P: Projection>(&mut self, projection: &P, stop: &CancellationToken) -> anyhow::Result<()> {
        let assigned: Vec<(String, i32)> = match self.consumer.assignment() {
            Ok(assigned) => assigned
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "reading the assignment");
                return Ok(());
            }
        };
        for key in assigned {
            self.know(projection, stop, &key).await?;
            let position = &self.positions[&key];
            if position.confirmed || position.sought {
                continue;
            }
            let next = position.next;
            if self.seek(&key, next).await? {
                self.positions.get_mut(&key).expect("known above").sought = true;
            }
        }
        Ok(())
    }

    /// The first offset the partition holds (its low watermark), asked until the broker answers.
    async fn low(&self, (topic, partition): &(String, i32), stop: &CancellationToken) -> anyhow::Result<i64> {
        let ask = || {
            let (reader, topic, partition) = (self.consumer.clone(), topic.clone(), *partition);
            async move {
                tokio::task::spawn_blocking(move || reader.fetch_watermarks(&topic, partition, Duration::from_secs(5)))
                    .await
                    .map_err(anyhow::Error::from)?
                    .map_err(anyhow::Error::from)
            }
        };
        let low = Backoff::SERVICE
            .retry(stop, ask, |error| {
                tracing::warn!(%topic, partition, error = %format!("{error:#}"), "reading the low watermark; retrying");
                true
            })
            .await??;
        Ok(low.0)
    }
}

/// One line per applied record under its trace id, when `vaxtrail_trace=debug` is on.
fn traced<P: Projection>(items: &[Positioned]) {
    if !tracing::enabled!(target: platform::trace::TARGET, tracing::Level::DEBUG) {
        return;
    }
    for item in items {
        if let Some(trace) = &item.trace {
            tracing::debug!(
                target: platform::trace::TARGET,
                trace_id = %trace.trace_id(),
                projection = P::NAME,
                topic = %item.topic,
                partition = item.partition,
                offset = item.offset,
                "projected"
            );
        }
    }
}

/// Retries a store operation with backoff until it succeeds or `stop`: a store that is down
/// pauses the projection, it never skips a record. A lost store ([`StoreLost`]) is returned at
/// once: retrying cannot mend it.
async fn retry<P: Projection, T, F, Fut>(
    stop: &CancellationToken,
    health: &Health,
    what: &str,
    call: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let answer = Backoff::SERVICE
        .retry(stop, call, |error| {
            if StoreLost::is(error) {
                return false;
            }
            health.stalled(Some(format!("{what}: {error:#}")));
            metrics::counter!("vaxtrail_projection_retries_total", "projection" => P::NAME).increment(1);
            tracing::warn!(projection = P::NAME, error = %format!("{error:#}"), what, "store unavailable; retrying");
            true
        })
        .await
        .with_context(|| format!("stopped while {what}"))?;
    health.stalled(None);
    answer
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
