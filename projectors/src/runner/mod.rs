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

mod feed;
mod store;
pub use feed::Decoder;
use feed::Feed;
use store::Store;

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
    /// The key store that opens sealed personal data (`None`: development, in the clear).
    pub keys: Option<Arc<platform::keystore::KeyStore>>,
}

/// How often the lag gauge asks the broker for high watermarks.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// How often an idle projection checks that its store still holds its generation marker.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Prepares the projection (retrying while its store is down), then runs it until `stop`.
pub async fn run<P: Projection>(settings: Settings, projection: P, stop: CancellationToken) -> anyhow::Result<()> {
    let mut store = Store::open(&projection, &settings, &stop).await?;
    let mut feed = Feed::open(&settings)?;
    let mut applied = Applied::default();

    // The next batch is fetched and decoded while the current one is written.
    let mut items = feed.next::<P>(&projection, &stop).await?;
    while !stop.is_cancelled() {
        let outcome = if items.is_empty() {
            match store.still_there().await {
                Ok(()) => {
                    feed.align(&projection, &stop).await?;
                    items = feed.next::<P>(&projection, &stop).await?;
                    Ok(())
                }
                Err(error) => Err(error),
            }
        } else {
            let started = Instant::now();
            let id = store.generation.id.clone();
            let span = tracing::info_span!("projection.apply", projection = P::NAME, records = items.len());
            let (outcome, next) = tokio::join!(
                retry::<P, _, _, _>(&stop, &settings.health, "applying a batch", || projection
                    .apply(&id, &items))
                .instrument(span),
                feed.next::<P>(&projection, &stop)
            );
            if outcome.is_ok() {
                applied.note::<P>(&items, started);
                items = next?;
            }
            outcome
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
                applied.next.clear();
                items = Vec::new();
                continue;
            }
            Err(error) => return Err(error),
        }
        store.settle().await;
        applied.report::<P>(&feed.consumer);
    }
    Ok(())
}

/// What has been applied, for the lag gauge and the group's offsets.
#[derive(Default)]
struct Applied {
    /// The next offset of each partition applied so far.
    next: HashMap<(String, i32), i64>,
    /// When the lag was last asked of the broker.
    lag_at: Option<Instant>,
}

impl Applied {
    /// Notes a batch applied (started at `started`): positions, metrics, trace lines.
    fn note<P: Projection>(&mut self, items: &[Positioned], started: Instant) {
        traced::<P>(items);
        for item in items {
            let slot = self.next.entry((item.topic.clone(), item.partition)).or_default();
            *slot = (*slot).max(item.offset + 1);
        }
        metrics::histogram!("vaxtrail_projection_batch_seconds", "projection" => P::NAME)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("vaxtrail_projection_batch_size", "projection" => P::NAME).record(items.len() as f64);
        metrics::counter!("vaxtrail_projection_applied_total", "projection" => P::NAME).increment(items.len() as u64);
    }

    /// The lag (records behind each partition's high watermark, asked of the broker at most
    /// every [`LAG_EVERY`] and off the runtime's threads: the request blocks), and the group's
    /// offsets: for lag metrics only, never a starting point.
    fn report<P: Projection>(&mut self, consumer: &Arc<StreamConsumer>) {
        if self.lag_at.is_none_or(|at| at.elapsed() >= LAG_EVERY) {
            self.lag_at = Some(Instant::now());
            lag::<P>(consumer, &self.next);
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &self.next {
            let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if offsets.count() > 0
            && let Err(error) = consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::debug!(%error, "committing offsets (lag metrics only)");
        }
    }
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
