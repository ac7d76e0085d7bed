//! Verifying `certificate-events` partition by partition the way an auditor does, from the log
//! alone and the issuer's published keys:
//! - every record links to the one before it (`previousSha256`);
//! - every checkpoint names the record before it and its signature verifies under a published key;
//! - every outcome answers a vaccination record of the same partition whose SHA-256 is the one it
//!   names (the source was not altered), and no vaccination record is answered twice;
//! - every decodable vaccination record before the last one answered has an outcome, or repeats an
//!   event answered already (a retried post appended twice is answered once); records not answered
//!   yet at the end are counted as pending.
//!
//! The first break ends the walk and is the report's [`Broken`].

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use avro::{
    certificate::{CertificateBody, CertificateEnvelope, chain::ChainWalk},
    codec::{CertificateCodec, VaccinationCodec},
};
use credentials::PublishedKeys;
use platform::{TopicCatalog, log};
use rdkafka::{Message, message::OwnedMessage};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where the log is and how its records decode.
pub struct Codecs {
    pub brokers: String,
    pub topics: TopicCatalog,
    pub vaccinations: VaccinationCodec,
    pub certificates: CertificateCodec,
}

impl Codecs {
    /// The codecs of a deployment's event topics, through its schema registry.
    pub fn new(brokers: &str, registry_url: &str, topics: TopicCatalog) -> Self {
        Self {
            brokers: brokers.to_owned(),
            vaccinations: VaccinationCodec::new(registry_url, &topics.vaccination_events),
            certificates: CertificateCodec::new(registry_url, &topics.certificate_events),
            topics,
        }
    }
}

/// What to verify: some partitions, whole or a window of `certificate-events` offsets.
#[derive(Clone, Debug, Default)]
pub struct Window {
    pub partitions: Vec<i32>,
    /// From this offset on in each partition; the record before it anchors the chain.
    pub from: Option<i64>,
    /// Up to this offset, inclusive.
    pub to: Option<i64>,
}

impl Window {
    /// A window checks links, checkpoints, sources and doubles; that no vaccination was skipped
    /// is checked on whole partitions only.
    fn is_partial(&self) -> bool {
        self.from.is_some_and(|f| f > 0) || self.to.is_some()
    }
}

/// Told how reading goes (a progress bar; nothing for a server).
pub trait Progress: Send + Sync {
    fn partition(&self, _partition: i32) {}
    fn records(&self, _count: u64) {}
}

impl Progress for () {}

/// The first place the log does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
}

/// What verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub records: u64,
    pub outcomes: u64,
    pub checkpoints: u64,
    /// Vaccination records not answered yet.
    pub pending: u64,
    /// Vaccination records repeating an event answered already.
    pub repeated_events: u64,
    pub broken: Option<Broken>,
}

/// Verifies the window's partitions, stopping at the first break.
pub async fn verify(
    log: &Codecs,
    keys: &PublishedKeys,
    window: &Window,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for &partition in &window.partitions {
        progress.partition(partition);
        let sources = read(log, &log.topics.vaccination_events, partition, None, None, &progress).await?;
        // A window starts one record early: that record anchors the chain and is not checked.
        let from = window.from.map(|f| (f - 1).max(0));
        let outputs = read(
            log,
            &log.topics.certificate_events,
            partition,
            from,
            window.to,
            &progress,
        )
        .await?;
        let mut check = PartitionCheck::new(log, keys, partition);
        check.sources(&sources).await;
        if let Err(broken) = check.outputs(outputs, window.from).await {
            report.broken = Some(broken);
            return Ok(report);
        }
        check.add_to(&mut report);
        if window.is_partial() {
            continue;
        }
        if let Err(broken) = check.unanswered(&mut report) {
            report.broken = Some(broken);
            return Ok(report);
        }
    }
    Ok(report)
}

/// The records of a partition from `from` (or its start) to `to` inclusive (or its end).
async fn read(
    log: &Codecs,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    to: Option<i64>,
    progress: &Arc<dyn Progress>,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let (brokers, topic, progress) = (log.brokers.clone(), topic.to_owned(), progress.clone());
    tokio::task::spawn_blocking(move || {
        let marks = log::watermarks(&brokers, std::slice::from_ref(&topic))?;
        let mark = marks
            .iter()
            .find(|m| m.partition == partition)
            .ok_or_else(|| anyhow::anyhow!("{topic} has no partition {partition}"))?;
        let span = log::Span {
            topic: topic.clone(),
            partition,
            from: from.map_or(mark.low, |f| f.clamp(mark.low, mark.high)),
            to: to.map_or(mark.high, |t| (t + 1).clamp(mark.low, mark.high)),
        };
        let mut records = Vec::with_capacity(span.len() as usize);
        log::read_spans(&brokers, &[span], None, 1000, |batch| {
            progress.records(batch.len() as u64);
            records.extend(batch);
            true
        })?;
        Ok(records)
    })
    .await?
}

/// One partition's walk: the chain, and which vaccination records are answered.
struct PartitionCheck<'a> {
    log: &'a Codecs,
    keys: &'a PublishedKeys,
    partition: i32,
    walk: ChainWalk,
    /// Vaccination offset → (SHA-256, event id when it decodes).
    sources: HashMap<i64, ([u8; 32], Option<String>)>,
    answered_events: HashSet<String>,
    /// Vaccination offset → the offset of its first outcome.
    answered: HashMap<i64, i64>,
    last_source: Option<i64>,
}

impl<'a> PartitionCheck<'a> {
    fn new(log: &'a Codecs, keys: &'a PublishedKeys, partition: i32) -> Self {
        Self {
            log,
            keys,
            partition,
            walk: ChainWalk::default(),
            sources: HashMap::new(),
            answered_events: HashSet::new(),
            answered: HashMap::new(),
            last_source: None,
        }
    }

    async fn sources(&mut self, records: &[OwnedMessage]) {
        for record in records {
            let bytes = record.payload().unwrap_or_default();
            let event = self
                .log
                .vaccinations
                .decode(bytes)
                .await
                .map(|e| e.event.event_id.to_string())
                .or_else(|error| match error {
                    // Sealed personal data (no key store here, or an erased recipient): the
                    // envelope itself read, which is all the audit needs.
                    avro::codec::CodecError::Sealed { event_id, .. } => Ok(event_id),
                    other => Err(other),
                })
                .ok();
            self.sources
                .insert(record.offset(), (Sha256::digest(bytes).into(), event));
        }
    }

    fn broken(&self, topic: &str, offset: i64, reason: String) -> Broken {
        Broken {
            topic: topic.to_owned(),
            partition: self.partition,
            offset,
            reason,
        }
    }

    /// Walks the certificate records; with `from`, the first is the anchor before the window.
    async fn outputs(&mut self, mut records: Vec<OwnedMessage>, from: Option<i64>) -> Result<(), Broken> {
        if let (Some(from), Some(anchor)) = (from, records.first())
            && from > 0
            && anchor.offset() == from - 1
        {
            let anchor = records.remove(0);
            self.walk = ChainWalk::after(
                anchor.offset(),
                Sha256::digest(anchor.payload().unwrap_or_default()).into(),
            );
        }
        for record in &records {
            self.output(record).await?;
        }
        Ok(())
    }

    async fn output(&mut self, record: &OwnedMessage) -> Result<(), Broken> {
        let topic = self.log.topics.certificate_events.clone();
        let bytes = record.payload().unwrap_or_default();
        let decoded = self.log.certificates.decode(bytes).await.map_err(|e| e.to_string());
        let keys = self.keys;
        self.walk
            .next(
                record.offset(),
                Sha256::digest(bytes).into(),
                decoded.as_ref().map_err(Clone::clone),
                |c| {
                    let signature = ed25519_dalek::Signature::from_slice(&c.signature).map_err(|e| e.to_string())?;
                    let message = credentials::checkpoint::message(c.partition, c.last_offset, &c.chain_head);
                    keys.verify(&c.key_id, &message, &signature)
                },
            )
            .map_err(|e| self.broken(&topic, record.offset(), e.to_string()))?;
        match decoded {
            Ok(envelope) => self
                .outcome(&envelope, record.offset())
                .map_err(|reason| self.broken(&topic, record.offset(), reason)),
            Err(_) => Ok(()),
        }
    }

    /// Checks that an outcome answers an unaltered vaccination record of this partition, once.
    fn outcome(&mut self, envelope: &CertificateEnvelope, offset: i64) -> Result<(), String> {
        let (source_sha256, answers) = match &envelope.body {
            CertificateBody::Outcome {
                source_sha256, event, ..
            } => (source_sha256, event.answers),
            CertificateBody::SealedIssue(issue) => (&issue.source_sha256, issue.answers),
            CertificateBody::Checkpoint(_) | CertificateBody::StatusList(_) => return Ok(()),
        };
        self.answered_events.insert(answers.to_string());
        let source = envelope.source;
        if source.partition != self.partition {
            return Err(format!("answers partition {}, not its own", source.partition));
        }
        match self.sources.get(&source.offset) {
            None => {
                return Err(format!(
                    "answers vaccination-events offset {} that the log does not hold",
                    source.offset
                ));
            }
            Some((hash, _)) if hash != source_sha256 => {
                return Err(format!(
                    "answers vaccination-events offset {} whose SHA-256 is not the one it names (the source was altered)",
                    source.offset
                ));
            }
            Some(_) => {}
        }
        // The outcomes of one event are consecutive; the same event answered again later is a double.
        if let Some(first) = self.answered.get(&source.offset)
            && self.last_source != Some(source.offset)
        {
            return Err(format!(
                "answers vaccination-events offset {} again (first answered at offset {first})",
                source.offset
            ));
        }
        self.answered.entry(source.offset).or_insert(offset);
        self.last_source = Some(source.offset);
        Ok(())
    }

    fn add_to(&self, report: &mut Report) {
        let summary = self.walk.summary();
        report.records += summary.records;
        report.outcomes += summary.outcomes;
        report.checkpoints += summary.checkpoints;
    }

    /// Every decodable vaccination up to the last answered one has its outcome, unless it
    /// repeats an event answered already (a retry appended twice: the signer answers once).
    fn unanswered(&self, report: &mut Report) -> Result<(), Broken> {
        let last_answered = self.answered.keys().max().copied().unwrap_or(-1);
        let mut offsets: Vec<&i64> = self.sources.keys().collect();
        offsets.sort();
        for offset in offsets {
            let Some(event) = &self.sources[offset].1 else {
                continue;
            };
            if self.answered.contains_key(offset) {
                continue;
            }
            if self.answered_events.contains(event) {
                report.repeated_events += 1;
                continue;
            }
            if *offset < last_answered {
                return Err(self.broken(
                    &self.log.topics.vaccination_events,
                    *offset,
                    "this vaccination has no outcome, though later ones do".into(),
                ));
            }
            report.pending += 1;
        }
        Ok(())
    }
}
