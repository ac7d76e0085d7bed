//! The signing loop. Effectively-once without broker transactions:
//! - an outcome goes to the same partition number of `certificate-events` as its source, so the
//!   instance that owns an input partition is the only writer of its output partition;
//! - before answering a partition's first record, the signer folds its output partition (read to
//!   the end) into its state, and resumes the input after the last source offset answered there;
//! - ids are derived from the source event id, so a record written twice by a zombie says the
//!   same thing twice and projectors drop the second;
//! - when partitions are revoked, everything in flight is flushed before the rebalance completes,
//!   so the next owner reads it.
//!
//! Consumer-group offsets are committed too, but only for lag metrics and as a first guess of the
//! position: the output log decides.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use avro::{
    certificate::{CertificateBody, CertificateEnvelope, Checkpoint, IssuedCredential, Sha256, SourcePosition},
    codec::{CertificateCodec, CodecError, VaccinationCodec},
    vaccination::VaccinationEnvelope,
};
use chrono::Utc;
use credentials::CredentialSigner;
use domain::{
    credential::{CredentialInput, IssuerProfile, unsigned_credential},
    events::CertificateOutcome,
    lineage::{Policy, outcomes},
};
use futures::FutureExt;
use platform::{Backoff, TraceContext};
use rdkafka::message::OwnedHeaders;
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::OwnedMessage,
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer},
};
use sha2::Digest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::state::PartitionState;

mod answer;
mod checkpoints;
mod output;
mod rebalance;
mod rebuild;

use output::*;
use rebalance::*;
use rebuild::*;

/// Tuning and identity of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    pub brokers: String,
    pub registry_url: String,
    pub group: String,
    pub vaccination_events: String,
    pub certificate_events: String,
    pub dead_letters: String,
    pub profile: IssuerProfile,
    pub policy: Policy,
    /// Places certificates in Bitstring Status Lists (keyed by the id secret, like the ids).
    pub allocator: std::sync::Arc<domain::status::StatusAllocator>,
    /// A checkpoint after this many outcomes of a partition...
    pub checkpoint_every: u64,
    /// ...or this long after the last one, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Records produced and not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// A partition's status list is published again at most this often while its bits change.
    pub status_list_interval: Duration,
    pub session_timeout: Duration,
    /// Longest pause between polls (a rebuild counts); also how long a rebalance waits for a
    /// member that does not rejoin.
    pub max_poll_interval: Duration,
    /// Where a fault drill has the process abort (development only).
    pub crash_point: Option<CrashPoint>,
    /// The local state store (`None`: state in memory, rebuilt from the log at every take-over).
    pub store: Option<crate::store::Store>,
    /// The key store: personal data is read from and credentials written to the log sealed with
    /// the recipient's data key (`None`: development only, in the clear).
    pub keys: Option<Arc<platform::keystore::KeyStore>>,
    /// EU DCC issuing (`None`: none is issued).
    pub eu_dcc: Option<Arc<credentials::EuDccIssuer>>,
    /// SMART Health Card keys (`None`: none is issued).
    pub shc: Option<Arc<credentials::shc::ShcKeys>>,
}

/// A point where a fault drill has the signer abort, as SIGKILL would end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPoint {
    /// A checkpoint record queued for the broker, not yet acknowledged.
    Checkpoint,
    /// A partition taken over, its state half rebuilt from the log.
    Handover,
    /// A partition's state written to the local store, not yet committed.
    Store,
}

impl Settings {
    /// Aborts the process if a drill asked for a crash at `point`.
    fn crash_at(&self, point: CrashPoint) {
        if self.crash_point == Some(point) {
            eprintln!("signer-worker: aborting at the crash point {point:?} (VAXTRAIL_CRASH_POINT)");
            std::process::abort();
        }
    }
}

/// The signing loop and everything it owns.
pub struct Worker {
    settings: Settings,
    consumer: StreamConsumer<Context>,
    producer: Arc<Mutex<FutureProducer>>,
    changes: Arc<Mutex<Vec<Ownership>>>,
    vaccinations: VaccinationCodec,
    certificates: Arc<CertificateCodec>,
    signer: CredentialSigner,
    states: HashMap<i32, PartitionState>,
    /// States of partitions given up, kept in case they come back unchanged (an eager rebalance
    /// revokes everything and usually hands the same partitions back).
    parked: HashMap<i32, PartitionState>,
    in_flight: VecDeque<InFlight>,
    committed: HashMap<i32, i64>,
    pending_seeks: HashMap<i32, i64>,
    /// Partitions this instance owns now.
    owned: HashSet<i32>,
    /// Bumped at every change of a partition's ownership, so a rebuild that finishes after the
    /// partition moved is dropped.
    epochs: HashMap<i32, u64>,
    /// Partitions being rebuilt in the background (paused meanwhile: the loop keeps polling, so
    /// the group never thinks this member is gone).
    rebuilding: HashSet<i32>,
    rebuilt_tx: mpsc::UnboundedSender<Rebuilt>,
    rebuilt_rx: mpsc::UnboundedReceiver<Rebuilt>,
    /// Reads the input's high watermarks for the lag gauge (never joins a group).
    lag_reader: Arc<BaseConsumer>,
    lag_at: Option<std::time::Instant>,
}

impl Worker {
    /// Connects (lazily) and subscribes.
    pub fn new(settings: Settings, signer: CredentialSigner) -> anyhow::Result<Self> {
        let producer = Arc::new(Mutex::new(producer(&settings.brokers)?));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let (rebuilt_tx, rebuilt_rx) = mpsc::unbounded_channel();
        let kafka = platform::Kafka::new(&settings.brokers).tuned(platform::Tuning {
            session_timeout: Some(settings.session_timeout),
            max_poll_interval: Some(settings.max_poll_interval),
            ..platform::Tuning::default()
        });
        let consumer: StreamConsumer<Context> = kafka
            .consumer_with_context(
                &settings.group,
                Context {
                    producer: producer.clone(),
                    changes: changes.clone(),
                },
            )
            .context("creating the vaccination-events consumer")?;
        consumer
            .subscribe(&[&settings.vaccination_events])
            .context("subscribing to vaccination-events")?;
        let lag_reader: BaseConsumer = kafka
            .reader(&format!("{}-lag", settings.group))
            .context("creating the lag reader")?;
        Ok(Self {
            lag_reader: Arc::new(lag_reader),
            lag_at: None,
            vaccinations: VaccinationCodec::new(&settings.registry_url, &settings.vaccination_events)
                .with_keys(settings.keys.clone().map(|k| k as _)),
            certificates: Arc::new(
                CertificateCodec::new(&settings.registry_url, &settings.certificate_events)
                    .with_keys(settings.keys.clone().map(|k| k as _)),
            ),
            settings,
            consumer,
            producer,
            changes,
            signer,
            states: HashMap::new(),
            parked: HashMap::new(),
            in_flight: VecDeque::new(),
            committed: HashMap::new(),
            pending_seeks: HashMap::new(),
            owned: HashSet::new(),
            epochs: HashMap::new(),
            rebuilding: HashSet::new(),
            rebuilt_tx,
            rebuilt_rx,
        })
    }

    /// Runs until `stop` is cancelled; then waits for what is in flight.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                message = self.consumer.recv() => {
                    let message = message.map(|m| m.detach());
                    self.follow_ownership().await;
                    match message {
                        Ok(message) => self.handle(&message, &stop).await,
                        Err(error) => {
                            tracing::warn!(%error, "consuming vaccination-events");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
                Some(rebuilt) = self.rebuilt_rx.recv() => self.on_rebuilt(rebuilt),
                _ = tick.tick() => {
                    self.follow_ownership().await;
                    self.on_tick().await;
                }
            }
        }
        if let Err(error) = self.drain().await {
            tracing::warn!(%error, "records in flight at stop were not acknowledged; the next owner re-answers them");
        } else if let Err(error) = self.persist_all().await {
            tracing::warn!(error = %format!("{error:#}"), "writing the state store at stop; the next start folds more of the log");
        }
        self.commit();
        Ok(())
    }

    /// Writes every owned partition's changes to the local store, after waiting for what is in
    /// flight (the store never says more than the broker has).
    async fn persist_all(&mut self) -> anyhow::Result<()> {
        let Some(store) = self.settings.store.clone() else {
            return Ok(());
        };
        if !self.states.values_mut().any(|s| s.changed()) {
            return Ok(());
        }
        self.drain().await?;
        let mut pending = Vec::new();
        for state in self.states.values_mut() {
            pending.extend(state.pending()?);
        }
        // Every partition in one transaction: one fsync a second, whatever the partitions.
        let writes: Vec<_> = pending.iter().map(crate::state::Pending::as_write).collect();
        store.write_partitions(&writes, || self.settings.crash_at(CrashPoint::Store))?;
        drop(writes);
        for written in pending {
            if let Some(state) = self.states.get_mut(&written.partition) {
                state.written(written);
            }
        }
        Ok(())
    }

    async fn on_tick(&mut self) {
        let pending: Vec<(i32, i64)> = self.pending_seeks.iter().map(|(p, o)| (*p, *o)).collect();
        for (partition, offset) in pending {
            self.seek(partition, offset);
        }
        if let Err(error) = self.settle(false).await {
            self.reset(error).await;
            return;
        }
        let due: Vec<i32> = self
            .states
            .values()
            .filter(|s| s.since_checkpoint > 0)
            .filter(|s| {
                (Utc::now() - s.last_checkpoint_at).to_std().unwrap_or_default() >= self.settings.checkpoint_interval
            })
            .map(|s| s.partition)
            .collect();
        for partition in due {
            if let Err(error) = self.checkpoint(partition).await {
                self.reset(error).await;
                return;
            }
        }
        let interval = self.settings.status_list_interval;
        let lists: Vec<(i32, u32)> = self
            .states
            .values_mut()
            .flat_map(|s| {
                s.lists
                    .due(interval)
                    .into_iter()
                    .map(|list| (s.partition, list))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (partition, list) in lists {
            if let Err(error) = self.publish_status_list(partition, list).await {
                self.reset(error).await;
                return;
            }
        }
        if let Err(error) = self.persist_all().await {
            self.reset(error).await;
            return;
        }
        if self.in_flight.is_empty() {
            self.commit();
        }
        for state in self.states.values() {
            metrics::gauge!("vaxtrail_signer_recipients", "partition" => state.partition.to_string())
                .set(state.recipients() as f64);
            metrics::gauge!("vaxtrail_signer_state_unwritten", "partition" => state.partition.to_string())
                .set(state.unwritten() as f64);
        }
        self.lag();
    }

    /// Sets `vaxtrail_signer_lag{partition}` (vaccination records not answered yet) for each
    /// owned partition, at most every 5 s, on a blocking thread (the request blocks).
    fn lag(&mut self) {
        if self.lag_at.is_some_and(|at| at.elapsed() < Duration::from_secs(5)) {
            return;
        }
        self.lag_at = Some(std::time::Instant::now());
        let asked: Vec<(i32, i64)> = self.states.values().map(|s| (s.partition, s.next_source)).collect();
        let (reader, topic) = (self.lag_reader.clone(), self.settings.vaccination_events.clone());
        tokio::task::spawn_blocking(move || {
            for (partition, next) in asked {
                if let Ok((_, high)) = reader.fetch_watermarks(&topic, partition, Duration::from_secs(2)) {
                    metrics::gauge!("vaxtrail_signer_lag", "partition" => partition.to_string())
                        .set((high - next).max(0) as f64);
                }
            }
        });
    }

    /// After a failed delivery the in-memory state may be ahead of the log: forget it all, replace
    /// the producer (its idempotence epoch is spoilt) and rebuild from the log on the next record.
    async fn reset(&mut self, error: anyhow::Error) {
        tracing::error!(error = %format!("{error:#}"), "a certificate-events write failed; rebuilding from the log");
        metrics::counter!("vaxtrail_signer_resets_total").increment(1);
        self.in_flight.clear();
        self.states.clear();
        match producer(&self.settings.brokers) {
            Ok(fresh) => *self.producer.lock().expect("not poisoned") = fresh,
            Err(error) => tracing::error!(%error, "replacing the producer"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The input position is past what was lost: rebuild every owned partition now and move
        // its position back to the first unanswered record.
        let owned: Vec<i32> = match self.consumer.assignment() {
            Ok(list) => list.elements().iter().map(|e| e.partition()).collect(),
            Err(error) => {
                tracing::error!(%error, "reading the assignment");
                Vec::new()
            }
        };
        for partition in owned {
            self.rebuild_in_background(partition, Duration::ZERO);
        }
    }

    fn set_paused(&self, partition: i32, paused: bool) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.settings.vaccination_events, partition);
        let result = if paused {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        if let Err(error) = result {
            tracing::warn!(partition, paused, %error, "pausing or resuming a partition");
        }
    }

    /// Moves the input position; a seek that fails (the partition's fetcher is not started yet)
    /// is retried every tick until it holds.
    fn seek(&mut self, partition: i32, offset: i64) {
        match self.consumer.seek(
            &self.settings.vaccination_events,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            Ok(()) => {
                self.pending_seeks.remove(&partition);
            }
            Err(error) => {
                tracing::warn!(partition, offset, %error, "seek failed; retrying");
                self.pending_seeks.insert(partition, offset);
            }
        }
    }

    /// Commits each owned partition's next offset, for lag metrics.
    fn commit(&mut self) {
        let mut offsets = TopicPartitionList::new();
        for state in self.states.values() {
            if self.committed.get(&state.partition) != Some(&state.next_source) {
                let _ = offsets.add_partition_offset(
                    &self.settings.vaccination_events,
                    state.partition,
                    Offset::Offset(state.next_source),
                );
                self.committed.insert(state.partition, state.next_source);
            }
        }
        if offsets.count() > 0
            && let Err(error) = self.consumer.commit(&offsets, CommitMode::Async)
        {
            tracing::debug!(%error, "committing offsets (lag metrics only)");
        }
    }
}
