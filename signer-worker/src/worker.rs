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
    credential::{CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
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
}

/// A point where a fault drill has the signer abort, as SIGKILL would end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPoint {
    /// A checkpoint record queued for the broker, not yet acknowledged.
    Checkpoint,
    /// A partition taken over, its state half rebuilt from the log.
    Handover,
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

/// A change of ownership, in the order the rebalances happened.
#[derive(Debug)]
enum Ownership {
    Revoked(Vec<i32>),
    Assigned(Vec<i32>),
}

/// Flushes what is in flight before partitions move, and tells the loop what changed.
struct Context {
    producer: Arc<Mutex<FutureProducer>>,
    changes: Arc<Mutex<Vec<Ownership>>>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Nothing else produces while this runs (the loop is inside `recv`): what was sent
            // reaches the broker before the partitions move, so the next owner reads it.
            let producer = self.producer.lock().expect("not poisoned").clone();
            if let Err(error) = producer.flush(Duration::from_secs(30)) {
                tracing::error!(%error, "could not flush before giving up partitions");
            }
            let revoked: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?revoked, "partitions revoked");
            self.changes
                .lock()
                .expect("not poisoned")
                .push(Ownership::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let assigned: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(partitions = ?assigned, "partitions assigned");
            self.changes
                .lock()
                .expect("not poisoned")
                .push(Ownership::Assigned(assigned));
        }
    }
}

struct InFlight {
    partition: i32,
    hash: Sha256,
    delivery: DeliveryFuture,
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

/// A background rebuild's result.
struct Rebuilt {
    partition: i32,
    epoch: u64,
    state: anyhow::Result<PartitionState>,
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    platform::Kafka::new(brokers)
        .tuned(platform::Tuning {
            // Signing takes milliseconds per record: wait a little to send several per batch,
            // which makes the log cheaper to read back when a partition is taken over.
            linger: Duration::from_millis(50),
            ..platform::Tuning::default()
        })
        .producer()
        .context("creating the certificate-events producer")
}

fn sha256(bytes: &[u8]) -> Sha256 {
    sha2::Sha256::digest(bytes).into()
}

/// Reads a partition of `certificate-events` to its end and folds it into a fresh state.
async fn rebuild(
    settings: &Settings,
    codec: &CertificateCodec,
    partition: i32,
    stop: &CancellationToken,
) -> anyhow::Result<PartitionState> {
    let started = std::time::Instant::now();
    let reader: StreamConsumer =
        platform::Kafka::new(&settings.brokers).reader(&format!("{}-rebuild", settings.group))?;
    let timeout = Duration::from_secs(10);
    let (input_low, _) = reader.fetch_watermarks(&settings.vaccination_events, partition, timeout)?;
    let (low, high) = reader.fetch_watermarks(&settings.certificate_events, partition, timeout)?;
    let mut state = PartitionState::new(partition, input_low);
    state.output_end = high;
    if high > low {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&settings.certificate_events, partition, Offset::Beginning)?;
        reader.assign(&assignment)?;
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => anyhow::bail!("stopped while rebuilding"),
                m = tokio::time::timeout(Duration::from_secs(30), reader.recv()) => {
                    m.context("no certificate-events record within 30 s while rebuilding")??
                }
            };
            let bytes = message.payload().unwrap_or_default();
            let hash = sha256(bytes);
            state.last_delivered = Some((message.offset(), hash));
            match decode_certificate(codec, bytes, stop).await? {
                Some(envelope) => state.fold(&envelope, hash),
                None => {
                    // Our own output that does not decode: keep the chain, flag it.
                    tracing::error!(
                        partition,
                        offset = message.offset(),
                        "an unreadable certificate-events record"
                    );
                    state.chain_head = Some(hash);
                }
            }
            if message.offset() + 1 >= high {
                break;
            }
            if message.offset() >= low + (high - low) / 2 {
                settings.crash_at(CrashPoint::Handover);
            }
        }
    }
    metrics::counter!("vaxtrail_signer_rebuilds_total").increment(1);
    metrics::counter!("vaxtrail_signer_chain_breaks_total").increment(state.chain_breaks);
    metrics::histogram!("vaxtrail_signer_rebuild_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(
        partition,
        records = high - low,
        recipients = state.recipients(),
        next_source = state.next_source,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partition state rebuilt from certificate-events"
    );
    Ok(state)
}

/// Decodes an output record, waiting out registry outages; `None` when it is not decodable.
async fn decode_certificate(
    codec: &CertificateCodec,
    bytes: &[u8],
    stop: &CancellationToken,
) -> anyhow::Result<Option<CertificateEnvelope>> {
    Ok(Backoff::REGISTRY
        .retry(stop, || codec.decode(bytes), CodecError::is_retriable)
        .await?
        .ok())
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
            vaccinations: VaccinationCodec::new(&settings.registry_url, &settings.vaccination_events),
            certificates: Arc::new(CertificateCodec::new(
                &settings.registry_url,
                &settings.certificate_events,
            )),
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
        }
        self.commit();
        Ok(())
    }

    /// Applies the rebalances since the last call, in order: a revoked partition's state is
    /// dropped; an assigned one is rebuilt from the output log at once and its input position
    /// moved to the first unanswered record (the committed offset is only a guess, and a
    /// partition with nothing new would otherwise never be looked at).
    async fn follow_ownership(&mut self) {
        let changes: Vec<Ownership> = std::mem::take(&mut *self.changes.lock().expect("not poisoned"));
        for change in changes {
            match change {
                Ownership::Revoked(partitions) => {
                    for partition in &partitions {
                        self.owned.remove(partition);
                        *self.epochs.entry(*partition).or_default() += 1;
                    }
                    // Flushed in the callback: every acknowledgement is in.
                    if let Err(error) = self.drain().await {
                        tracing::warn!(%error, "a write before the rebalance failed");
                        self.parked.clear();
                        self.states.clear();
                    }
                    for partition in partitions {
                        if let Some(state) = self.states.remove(&partition) {
                            self.parked.insert(partition, state);
                        }
                        self.pending_seeks.remove(&partition);
                        self.committed.remove(&partition);
                    }
                }
                Ownership::Assigned(partitions) => {
                    for partition in partitions {
                        self.owned.insert(partition);
                        *self.epochs.entry(partition).or_default() += 1;
                        self.take_over(partition);
                    }
                }
            }
        }
    }

    /// Rebuilds a partition's state (or takes back the parked one if nobody wrote to the
    /// partition since) and seeks its input to the first unanswered record.
    fn take_over(&mut self, partition: i32) {
        if let Some(mut state) = self.parked.remove(&partition) {
            let end = self
                .consumer
                .fetch_watermarks(&self.settings.certificate_events, partition, Duration::from_secs(10))
                .map(|(_, high)| high);
            if end.as_ref().is_ok_and(|high| *high == state.output_end) {
                state.position_confirmed = false;
                let next = state.next_source;
                self.states.insert(partition, state);
                self.seek(partition, next);
                metrics::counter!("vaxtrail_signer_takeovers_total", "from" => "parked").increment(1);
                return;
            }
        }
        metrics::counter!("vaxtrail_signer_takeovers_total", "from" => "log").increment(1);
        self.rebuild_in_background(partition, Duration::ZERO);
    }

    /// Pauses the partition's input and rebuilds its state from the log in a task of its own.
    fn rebuild_in_background(&mut self, partition: i32, after: Duration) {
        if !self.rebuilding.insert(partition) {
            return;
        }
        self.set_paused(partition, true);
        let epoch = self.epochs.get(&partition).copied().unwrap_or_default();
        let (settings, codec, done) = (
            self.settings.clone(),
            self.certificates.clone(),
            self.rebuilt_tx.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let state = rebuild(&settings, &codec, partition, &CancellationToken::new()).await;
            let _ = done.send(Rebuilt {
                partition,
                epoch,
                state,
            });
        });
    }

    /// Installs a rebuilt state (unless the partition moved meanwhile) and resumes the input at
    /// the first unanswered record.
    fn on_rebuilt(&mut self, rebuilt: Rebuilt) {
        let Rebuilt {
            partition,
            epoch,
            state,
        } = rebuilt;
        self.rebuilding.remove(&partition);
        if !self.owned.contains(&partition) {
            return;
        }
        if self.epochs.get(&partition).copied().unwrap_or_default() != epoch {
            // The partition moved away and back while this ran: someone else may have written.
            self.rebuild_in_background(partition, Duration::ZERO);
            return;
        }
        match state {
            Ok(state) => {
                let next = state.next_source;
                self.states.insert(partition, state);
                self.seek(partition, next);
                self.set_paused(partition, false);
            }
            Err(error) => {
                tracing::error!(partition, error = %format!("{error:#}"), "rebuilding the partition's state; retrying");
                self.rebuild_in_background(partition, Duration::from_secs(2));
            }
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
        let lists: Vec<i32> = self
            .states
            .values_mut()
            .filter_map(|s| s.list_outdated().then_some(&*s))
            .filter(|s| s.list_published_at.is_none_or(|at| at.elapsed() >= interval))
            .map(|s| s.partition)
            .collect();
        for partition in lists {
            if let Err(error) = self.publish_status_list(partition).await {
                self.reset(error).await;
                return;
            }
        }
        if self.in_flight.is_empty() {
            self.commit();
        }
        for state in self.states.values() {
            metrics::gauge!("vaxtrail_signer_recipients", "partition" => state.partition.to_string())
                .set(state.recipients() as f64);
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

    async fn handle(&mut self, message: &OwnedMessage, stop: &CancellationToken) {
        let partition = message.partition();
        if !self.states.contains_key(&partition) {
            // Being rebuilt (the record comes again after the seek), or not ours any more.
            if self.owned.contains(&partition) {
                self.rebuild_in_background(partition, Duration::ZERO);
            }
            return;
        }
        let state = self.states.get_mut(&partition).expect("built above");
        let offset = message.offset();
        if offset < state.next_source {
            metrics::counter!("vaxtrail_signer_skipped_total").increment(1);
            return;
        }
        if offset > state.next_source && !state.position_confirmed {
            let next = state.next_source;
            tracing::info!(
                partition,
                from = offset,
                to = next,
                "resuming after the last answered offset"
            );
            self.seek(partition, next);
            return;
        }
        state.position_confirmed = true;
        // The answer continues the trace of the vaccination record it answers.
        let trace = TraceContext::from_record(message.headers()).unwrap_or_else(TraceContext::root);
        let span = tracing::info_span!("signer.answer", partition, offset, trace_id = %trace.trace_id());
        if let Err(error) = trace.child().scope(self.answer(message, stop)).instrument(span).await {
            self.reset(error).await;
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

    /// The event in a record, or why it is poison (dead-letter it).
    async fn decode_vaccination(
        &self,
        bytes: Option<&[u8]>,
        stop: &CancellationToken,
    ) -> anyhow::Result<Result<VaccinationEnvelope, String>> {
        let Some(bytes) = bytes else {
            return Ok(Err("the record has no value".into()));
        };
        Ok(Backoff::REGISTRY
            .retry(stop, || self.vaccinations.decode(bytes), CodecError::is_retriable)
            .await?
            .map_err(|e| e.to_string()))
    }

    /// Decides, signs and appends the outcomes of one vaccination event.
    async fn answer(&mut self, message: &OwnedMessage, stop: &CancellationToken) -> anyhow::Result<()> {
        let partition = message.partition();
        let offset = message.offset();
        let envelope = match self.decode_vaccination(message.payload(), stop).await? {
            Ok(envelope) => envelope,
            Err(reason) => {
                self.dead_letter(message, &reason).await?;
                self.states.get_mut(&partition).expect("present").next_source = offset + 1;
                return Ok(());
            }
        };
        let source_sha256 = sha256(message.payload().unwrap_or_default());
        let event = &envelope.event;
        let state = self.states.get_mut(&partition).expect("present");
        let lineage = state.lineage(&event.recipient_key);
        let slot = StatusSlot {
            list: partition as u32,
            index: state.next_status_index,
        };
        let decided = outcomes(&lineage, event, &self.settings.policy, slot);
        if decided.is_empty() {
            // The same event appended twice: it was answered already.
            metrics::counter!("vaxtrail_signer_outcomes_total", "outcome" => "AlreadyAnswered").increment(1);
            state.next_source = offset + 1;
            return Ok(());
        }
        for outcome in decided {
            let credential = match &outcome.outcome {
                CertificateOutcome::CertificateIssued {
                    certificate_id,
                    programme,
                    certified,
                    status,
                    ..
                } => {
                    let record = event.payload.record().context("an issue answers a record")?;
                    let previous = lineage.previous_doses(programme, certified.dose.number());
                    let unsigned = unsigned_credential(&CredentialInput {
                        profile: &self.settings.profile,
                        certificate_id,
                        record,
                        previous: &previous,
                        status: *status,
                        issued_at: Utc::now(),
                    });
                    let started = std::time::Instant::now();
                    let signed = self.signer.sign(unsigned).await?;
                    metrics::histogram!("vaxtrail_signer_sign_seconds").record(started.elapsed().as_secs_f64());
                    Some(IssuedCredential {
                        text: signed.text,
                        key_id: signed.verification_method,
                    })
                }
                _ => None,
            };
            let kind = outcome.outcome.event_type();
            if let CertificateOutcome::CertificateRejected { rule, .. } = &outcome.outcome {
                metrics::counter!("vaxtrail_signer_rejections_total", "rule" => rule.clone()).increment(1);
            }
            let state = self.states.get_mut(&partition).expect("present");
            let record = CertificateEnvelope {
                occurred_at: envelope.provenance.occurred_at,
                recorded_at: Utc::now(),
                source: SourcePosition { partition, offset },
                previous_sha256: state.chain_head,
                body: CertificateBody::Outcome {
                    recipient_key: event.recipient_key.clone(),
                    source_sha256,
                    event: outcome,
                    credential,
                },
            };
            self.append(partition, &record, stop).await?;
            metrics::counter!("vaxtrail_signer_outcomes_total", "outcome" => kind).increment(1);
            if let Some(trace) = TraceContext::current() {
                tracing::debug!(target: platform::trace::TARGET, trace_id = %trace.trace_id(), partition, offset, outcome = kind, "answered");
            }
        }
        let due = self.states[&partition].since_checkpoint >= self.settings.checkpoint_every;
        if due {
            self.checkpoint(partition).await?;
        }
        Ok(())
    }

    /// Encodes, sends (in order, several in flight) and folds one output record.
    async fn append(
        &mut self,
        partition: i32,
        record: &CertificateEnvelope,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let bytes = self.encode(record, stop).await?;
        let hash = sha256(&bytes);
        let key = match &record.body {
            CertificateBody::Outcome { recipient_key, .. } => recipient_key.as_str().to_owned(),
            CertificateBody::Checkpoint(_) => format!("checkpoint-{partition}"),
            CertificateBody::StatusList(_) => format!("status-list-{partition}"),
        };
        while self.in_flight.len() >= self.settings.max_in_flight {
            self.settle(true).await?;
        }
        let producer = self.producer.lock().expect("not poisoned").clone();
        // An outcome carries the trace of the record it answers; checkpoints start none.
        let headers = TraceContext::current().map(|trace| trace.add_to(OwnedHeaders::new()));
        let mut out = FutureRecord::to(&self.settings.certificate_events)
            .partition(partition)
            .key(&key)
            .payload(&bytes);
        if let Some(headers) = headers {
            out = out.headers(headers);
        }
        let delivery = producer
            .send_result(out)
            .map_err(|(error, _)| anyhow::anyhow!("queueing a certificate-events record: {error}"))?;
        self.in_flight.push_back(InFlight {
            partition,
            hash,
            delivery,
        });
        self.states.get_mut(&partition).expect("present").fold(record, hash);
        Ok(())
    }

    async fn encode(&self, record: &CertificateEnvelope, stop: &CancellationToken) -> anyhow::Result<Vec<u8>> {
        Backoff::REGISTRY
            .retry(stop, || self.certificates.encode(record), CodecError::is_retriable)
            .await?
            .context("encoding a certificate-events record")
    }

    /// Awaits acknowledgements: the oldest one if `block`, else only those already in.
    async fn settle(&mut self, block: bool) -> anyhow::Result<()> {
        while let Some(front) = self.in_flight.front_mut() {
            let result = if block {
                Some((&mut front.delivery).await)
            } else {
                (&mut front.delivery).now_or_never()
            };
            let Some(result) = result else { break };
            let done = self.in_flight.pop_front().expect("front exists");
            let delivery = result.context("the producer was dropped")?;
            let (partition, offset) = match delivery {
                Ok(delivery) => (delivery.partition, delivery.offset),
                Err((error, _)) => anyhow::bail!("certificate-events write failed: {error}"),
            };
            debug_assert_eq!(partition, done.partition);
            if let Some(state) = self.states.get_mut(&done.partition) {
                state.last_delivered = Some((offset, done.hash));
                state.output_end = offset + 1;
            }
            if block {
                break;
            }
        }
        Ok(())
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.settle(true).await?;
        }
        Ok(())
    }

    /// Signs the partition's chain head (after everything in flight is acknowledged, so the
    /// offset it names is real) and appends the checkpoint.
    async fn checkpoint(&mut self, partition: i32) -> anyhow::Result<()> {
        self.drain().await?;
        let Some(state) = self.states.get(&partition) else {
            return Ok(());
        };
        let (Some((last_offset, chain_head)), Some(head)) = (state.last_delivered, state.chain_head) else {
            return Ok(());
        };
        anyhow::ensure!(head == chain_head, "the chain head is not the last acknowledged record");
        let (key_id, signature) =
            self.signer
                .keyring()
                .sign(&credentials::checkpoint::message(partition, last_offset, &chain_head));
        let record = CertificateEnvelope {
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            source: SourcePosition {
                partition,
                offset: state.next_source - 1,
            },
            previous_sha256: Some(chain_head),
            body: CertificateBody::Checkpoint(Checkpoint {
                partition,
                last_offset,
                chain_head,
                key_id,
                signature: signature.to_bytes().to_vec(),
            }),
        };
        let stop = CancellationToken::new();
        self.append(partition, &record, &stop).await?;
        self.settings.crash_at(CrashPoint::Checkpoint);
        self.drain().await?;
        metrics::counter!("vaxtrail_signer_checkpoints_total").increment(1);
        Ok(())
    }

    /// Signs the partition's revocation list from its state (every revocation of its log) and
    /// appends it, so the query side serves a list that is complete by construction and holds no
    /// signing key. Published when the bits change (at most once per `status_list_interval`) and
    /// once for a partition that never had one.
    async fn publish_status_list(&mut self, partition: i32) -> anyhow::Result<()> {
        let Some(state) = self.states.get_mut(&partition) else {
            return Ok(());
        };
        let list = u32::try_from(partition).context("a partition number is not negative")?;
        let bits = state.revoked_bits.clone();
        let bits_sha256 = state.bits_sha256();
        let unsigned = credentials::status_list::unsigned(&self.settings.profile, list, &bits, Utc::now());
        let signed = self.signer.sign(unsigned).await.context("signing a status list")?;
        let record = CertificateEnvelope {
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            source: SourcePosition {
                partition,
                offset: state.next_source - 1,
            },
            previous_sha256: state.chain_head,
            body: CertificateBody::StatusList(avro::certificate::StatusListPublished {
                list,
                credential: signed.text,
                revoked_count: credentials::status_list::count(&bits),
                bits_sha256,
            }),
        };
        let stop = CancellationToken::new();
        self.append(partition, &record, &stop).await?;
        if let Some(state) = self.states.get_mut(&partition) {
            state.list_published_at = Some(std::time::Instant::now());
        }
        metrics::counter!("vaxtrail_signer_status_lists_published_total").increment(1);
        Ok(())
    }

    async fn dead_letter(&mut self, message: &OwnedMessage, reason: &str) -> anyhow::Result<()> {
        let producer = self.producer.lock().expect("not poisoned").clone();
        platform::topics::dead_letter(&producer, &self.settings.dead_letters, message, "signer-worker", reason)
            .await
            .context("writing to dead-letters")?;
        metrics::counter!("vaxtrail_signer_dead_letters_total").increment(1);
        Ok(())
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
