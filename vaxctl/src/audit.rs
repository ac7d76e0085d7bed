//! `vaxctl audit verify`: walks `certificate-events` partition by partition the way an auditor
//! does, from the log alone and the issuer's published DID document:
//! - every record links to the one before it (`previousSha256`);
//! - every checkpoint names the record before it and its signature verifies under a published key;
//! - every outcome answers a vaccination record of the same partition whose SHA-256 is the one it
//!   names (the source was not altered), and no vaccination record is answered twice;
//! - every decodable vaccination record before the last one answered has an outcome, or repeats an
//!   event answered already (a retried post appended twice is answered once); records not answered
//!   yet at the end are reported as pending.
//!
//! Prints the first broken link with its position and exits non-zero.

use std::collections::HashMap;

use avro::{
    certificate::{CertificateBody, chain::ChainWalk},
    codec::{CertificateCodec, VaccinationCodec},
};
use clap::{Args, Subcommand};
use credentials::PublishedKeys;
use indicatif::{ProgressBar, ProgressStyle};
use platform::KafkaArgs;
use rdkafka::{Message, message::OwnedMessage};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Subcommand)]
pub enum Action {
    /// Check the hash chain, the signed checkpoints and that every vaccination has its outcome.
    Verify(VerifyArgs),
    /// The records of a recipient or of a certificate, read from the log itself (not the read
    /// models), each with its position and SHA-256; outcomes with the hashes that chain them.
    Events(EventsArgs),
}

#[derive(Clone, Debug, Args)]
#[group(required = true, multiple = false)]
pub struct EventsArgs {
    /// A recipient key: every vaccination posted for the recipient and every outcome.
    #[arg(long)]
    recipient: Option<String>,
    /// A certificate id: the outcomes that issued, superseded or revoked it, and the vaccination
    /// records they answer.
    #[arg(long)]
    certificate: Option<String>,
}

#[derive(Clone, Debug, Args)]
pub struct VerifyArgs {
    /// Only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Only `certificate-events` records from this offset on (in each partition checked); the
    /// record before it anchors the chain. A window checks links, checkpoints, sources and
    /// doubles; that no vaccination was skipped is checked on whole partitions only.
    #[arg(long)]
    from: Option<i64>,
    /// Only `certificate-events` records up to this offset (inclusive).
    #[arg(long)]
    to: Option<i64>,
    /// The issuer's DID document: a file, or a URL (default: the query API's
    /// `<VAXTRAIL_PUBLIC_BASE_URL>/.well-known/did.json`).
    #[arg(long = "did-document")]
    did_document: Option<String>,
    /// Public base URL of the query API.
    #[arg(
        long = "public-base-url",
        env = "VAXTRAIL_PUBLIC_BASE_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    public_base_url: String,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

pub async fn run(kafka: &KafkaArgs, action: Action) -> anyhow::Result<()> {
    match action {
        Action::Verify(args) => verify(kafka, &args).await,
        Action::Events(args) => events(kafka, &args).await,
    }
}

/// Every record of the event topics, all partitions.
async fn read_log(kafka: &KafkaArgs) -> anyhow::Result<Vec<OwnedMessage>> {
    let topics = kafka.topics();
    let brokers = kafka.brokers.clone();
    let names = vec![topics.vaccination_events, topics.certificate_events];
    tokio::task::spawn_blocking(move || {
        let spans: Vec<platform::log::Span> = platform::log::watermarks(&brokers, &names)?
            .iter()
            .map(platform::log::Watermarks::span)
            .collect();
        let mut records = Vec::new();
        platform::log::read_spans(&brokers, &spans, None, 1000, |batch| {
            records.extend(batch);
            true
        })?;
        anyhow::Ok(records)
    })
    .await?
}

async fn events(kafka: &KafkaArgs, args: &EventsArgs) -> anyhow::Result<()> {
    let topics = kafka.topics();
    let vaccinations = VaccinationCodec::new(&kafka.schema_registry_url, &topics.vaccination_events);
    let certificates = CertificateCodec::new(&kafka.schema_registry_url, &topics.certificate_events);
    let records = read_log(kafka).await?;
    let mut chosen: Vec<&OwnedMessage> = Vec::new();
    match (&args.recipient, &args.certificate) {
        (Some(recipient), _) => {
            // Both topics are keyed by the recipient key.
            chosen.extend(records.iter().filter(|r| r.key() == Some(recipient.as_bytes())));
        }
        (None, Some(certificate)) => {
            let mut sources: std::collections::HashSet<(i32, i64)> = std::collections::HashSet::new();
            for record in records.iter().filter(|r| r.topic() == topics.certificate_events) {
                let Ok(envelope) = certificates.decode(record.payload().unwrap_or_default()).await else {
                    continue;
                };
                if let CertificateBody::Outcome { event, .. } = &envelope.body
                    && query_api::audit::certificate_of(&event.outcome) == Some(certificate.as_str())
                {
                    sources.insert((envelope.source.partition, envelope.source.offset));
                    chosen.push(record);
                }
            }
            chosen.extend(
                records.iter().filter(|r| {
                    r.topic() == topics.vaccination_events && sources.contains(&(r.partition(), r.offset()))
                }),
            );
        }
        (None, None) => anyhow::bail!("name --recipient or --certificate"),
    }
    chosen.sort_by_key(|r| {
        (
            r.timestamp().to_millis(),
            r.topic() != topics.vaccination_events,
            r.offset(),
        )
    });
    let mut out = Vec::with_capacity(chosen.len());
    for record in chosen {
        out.push(query_api::audit::describe(record, &topics.vaccination_events, &vaccinations, &certificates).await);
    }
    println!("{}", serde_json::to_string_pretty(&json!({ "events": out }))?);
    Ok(())
}

async fn did_document(args: &VerifyArgs) -> anyhow::Result<serde_json::Value> {
    let source = args
        .did_document
        .clone()
        .unwrap_or_else(|| format!("{}/.well-known/did.json", args.public_base_url.trim_end_matches('/')));
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        reqwest::get(&source).await?.error_for_status()?.text().await?
    } else {
        std::fs::read_to_string(&source)?
    };
    Ok(serde_json::from_str(&text)?)
}

/// Every record of a partition, in offset order.
fn read_partition(brokers: &str, topic: &str, partition: i32, bar: &ProgressBar) -> anyhow::Result<Vec<OwnedMessage>> {
    read_window(brokers, topic, partition, None, None, bar)
}

/// The records of a partition from `from` (or its start) to `to` inclusive (or its end).
fn read_window(
    brokers: &str,
    topic: &str,
    partition: i32,
    from: Option<i64>,
    to: Option<i64>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let marks = platform::log::watermarks(brokers, &[topic.to_owned()])?;
    let mark = marks
        .iter()
        .find(|m| m.partition == partition)
        .ok_or_else(|| anyhow::anyhow!("{topic} has no partition {partition}"))?;
    let span = platform::log::Span {
        topic: topic.to_owned(),
        partition,
        from: from.map_or(mark.low, |f| f.clamp(mark.low, mark.high)),
        to: to.map_or(mark.high, |t| (t + 1).clamp(mark.low, mark.high)),
    };
    let mut records = Vec::with_capacity(span.len() as usize);
    platform::log::read_spans(brokers, &[span], None, 1000, |batch| {
        bar.inc(batch.len() as u64);
        records.extend(batch);
        true
    })?;
    Ok(records)
}

/// A break, with where it is.
struct Broken {
    partition: i32,
    offset: i64,
    topic: String,
    reason: String,
}

async fn verify(kafka: &KafkaArgs, args: &VerifyArgs) -> anyhow::Result<()> {
    let keys = PublishedKeys::from_did_document(&did_document(args).await?).map_err(anyhow::Error::msg)?;
    let topics = kafka.topics();
    let vaccinations = VaccinationCodec::new(&kafka.schema_registry_url, &topics.vaccination_events);
    let certificates = CertificateCodec::new(&kafka.schema_registry_url, &topics.certificate_events);
    let partitions: Vec<i32> = match args.partition {
        Some(p) => vec![p],
        None => (0..kafka.partitions).collect(),
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos} records read, {per_sec}").expect("a template"),
        );
        bar
    };
    let (mut records, mut outcomes, mut checkpoints, mut pending, mut repeats) = (0_u64, 0_u64, 0_u64, 0_u64, 0_u64);
    let mut broken: Option<Broken> = None;
    'partitions: for partition in partitions {
        bar.set_message(format!("partition {partition}"));
        let (brokers, topic, progress) = (kafka.brokers.clone(), topics.vaccination_events.clone(), bar.clone());
        let sources =
            tokio::task::spawn_blocking(move || read_partition(&brokers, &topic, partition, &progress)).await??;
        let (brokers, topic, progress) = (kafka.brokers.clone(), topics.certificate_events.clone(), bar.clone());
        // A window starts one record early: that record anchors the chain and is not checked.
        let (from, to) = (args.from.map(|f| (f - 1).max(0)), args.to);
        let mut outputs =
            tokio::task::spawn_blocking(move || read_window(&brokers, &topic, partition, from, to, &progress))
                .await??;
        let windowed = args.from.is_some_and(|f| f > 0) || args.to.is_some();
        let mut walk = match (args.from, outputs.first()) {
            (Some(from), Some(anchor)) if from > 0 && anchor.offset() == from - 1 => {
                let anchor = outputs.remove(0);
                ChainWalk::after(
                    anchor.offset(),
                    Sha256::digest(anchor.payload().unwrap_or_default()).into(),
                )
            }
            _ => ChainWalk::default(),
        };

        // The vaccination records: offset → (SHA-256, event id when it decodes).
        let mut source_hashes: HashMap<i64, ([u8; 32], Option<String>)> = HashMap::with_capacity(sources.len());
        for record in &sources {
            let bytes = record.payload().unwrap_or_default();
            let event = vaccinations
                .decode(bytes)
                .await
                .ok()
                .map(|e| e.event.event_id.to_string());
            source_hashes.insert(record.offset(), (Sha256::digest(bytes).into(), event));
        }
        let mut answered_events: std::collections::HashSet<String> = std::collections::HashSet::new();

        let mut answered: HashMap<i64, i64> = HashMap::new();
        let mut last_source: Option<i64> = None;
        for record in &outputs {
            let bytes = record.payload().unwrap_or_default();
            let hash: [u8; 32] = Sha256::digest(bytes).into();
            let decoded = certificates.decode(bytes).await.map_err(|e| e.to_string());
            let break_at = |reason: String| Broken {
                partition,
                offset: record.offset(),
                topic: topics.certificate_events.clone(),
                reason,
            };
            if let Err(error) = walk.next(record.offset(), hash, decoded.as_ref().map_err(Clone::clone), |c| {
                let signature = ed25519_dalek::Signature::from_slice(&c.signature).map_err(|e| e.to_string())?;
                keys.verify(
                    &c.key_id,
                    &credentials::checkpoint::message(c.partition, c.last_offset, &c.chain_head),
                    &signature,
                )
            }) {
                broken = Some(break_at(error.to_string()));
                break 'partitions;
            }
            let Ok(envelope) = decoded else { continue };
            if let CertificateBody::Outcome {
                source_sha256, event, ..
            } = &envelope.body
            {
                answered_events.insert(event.answers.to_string());
                let source = envelope.source;
                if source.partition != partition {
                    broken = Some(break_at(format!("answers partition {}, not its own", source.partition)));
                    break 'partitions;
                }
                match source_hashes.get(&source.offset) {
                    None => {
                        broken = Some(break_at(format!(
                            "answers vaccination-events offset {} that the log does not hold",
                            source.offset
                        )));
                        break 'partitions;
                    }
                    Some((hash, _)) if hash != source_sha256 => {
                        broken = Some(break_at(format!(
                            "answers vaccination-events offset {} whose SHA-256 is not the one it names (the source was altered)",
                            source.offset
                        )));
                        break 'partitions;
                    }
                    Some(_) => {}
                }
                // The outcomes of one event are consecutive; the same event answered again later is a double.
                if let Some(first) = answered.get(&source.offset)
                    && last_source != Some(source.offset)
                {
                    broken = Some(break_at(format!(
                        "answers vaccination-events offset {} again (first answered at offset {first})",
                        source.offset
                    )));
                    break 'partitions;
                }
                answered.entry(source.offset).or_insert(record.offset());
                last_source = Some(source.offset);
            }
        }
        let summary = walk.summary().clone();
        records += summary.records;
        outcomes += summary.outcomes;
        checkpoints += summary.checkpoints;
        if windowed {
            continue;
        }

        // Every decodable vaccination up to the last answered one has its outcome, unless it
        // repeats an event answered already (a retry appended twice: the signer answers once).
        let last_answered = answered.keys().max().copied().unwrap_or(-1);
        let mut offsets: Vec<&i64> = source_hashes.keys().collect();
        offsets.sort();
        for offset in offsets {
            let Some(event) = &source_hashes[offset].1 else {
                continue;
            };
            if answered.contains_key(offset) {
                continue;
            }
            if answered_events.contains(event) {
                repeats += 1;
                continue;
            }
            if *offset < last_answered {
                broken = Some(Broken {
                    partition,
                    offset: *offset,
                    topic: topics.vaccination_events.clone(),
                    reason: "this vaccination has no outcome, though later ones do".into(),
                });
                break 'partitions;
            }
            pending += 1;
        }
    }
    bar.finish_and_clear();

    if let Some(b) = &broken {
        if args.json {
            println!(
                "{}",
                json!({ "ok": false, "topic": b.topic, "partition": b.partition, "offset": b.offset, "reason": b.reason })
            );
        } else {
            println!(
                "BROKEN at {} partition {} offset {}: {}",
                b.topic, b.partition, b.offset, b.reason
            );
        }
        std::process::exit(1);
    }
    if args.json {
        println!(
            "{}",
            json!({ "ok": true, "records": records, "outcomes": outcomes, "checkpoints": checkpoints, "pending": pending,
                    "repeated_events": repeats, "did": keys.did() })
        );
    } else {
        println!(
            "ok: {records} certificate records ({outcomes} outcomes, {checkpoints} checkpoints) chained and signed under {}; {repeats} vaccination records repeat an event answered already; {pending} not answered yet",
            keys.did()
        );
    }
    Ok(())
}
