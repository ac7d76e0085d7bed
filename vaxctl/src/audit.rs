//! `vaxctl audit`: the auditor's commands over the [`audit`] crate. `verify` prints the report of
//! walking `certificate-events` (the chain, the signed checkpoints, every vaccination answered
//! once from an unaltered source) and exits non-zero at the first break; `events` prints a
//! recipient's or a certificate's records read from the log itself.

use std::sync::Arc;

use audit::{Codecs, Report, Window};
use avro::certificate::CertificateBody;
use clap::{Args, Subcommand};
use credentials::PublishedKeys;
use indicatif::{ProgressBar, ProgressStyle};
use platform::KafkaArgs;
use rdkafka::{Message, message::OwnedMessage};
use serde_json::json;

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
    let log = Codecs::new(&kafka.brokers, &kafka.schema_registry_url, kafka.topics());
    let topics = &log.topics;
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
                let Ok(envelope) = log.certificates.decode(record.payload().unwrap_or_default()).await else {
                    continue;
                };
                let names = match &envelope.body {
                    CertificateBody::Outcome { event, .. } => audit::certificate_of(&event.outcome),
                    // An issue whose credential is sealed (the auditor holds no keys).
                    CertificateBody::SealedIssue(issue) => Some(issue.certificate_id.as_str()),
                    CertificateBody::Checkpoint(_) | CertificateBody::StatusList(_) => None,
                };
                if names == Some(certificate.as_str()) {
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
        out.push(audit::describe(record, &topics.vaccination_events, &log.vaccinations, &log.certificates).await);
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

/// The progress bar a terminal sees while the log is read.
struct Bar(ProgressBar);

impl audit::verify::Progress for Bar {
    fn partition(&self, partition: i32) {
        self.0.set_message(format!("partition {partition}"));
    }

    fn records(&self, count: u64) {
        self.0.inc(count);
    }
}

async fn verify(kafka: &KafkaArgs, args: &VerifyArgs) -> anyhow::Result<()> {
    let keys = PublishedKeys::from_did_document(&did_document(args).await?).map_err(anyhow::Error::msg)?;
    let log = Codecs::new(&kafka.brokers, &kafka.schema_registry_url, kafka.topics());
    let window = Window {
        partitions: args
            .partition
            .map_or_else(|| (0..kafka.partitions).collect(), |p| vec![p]),
        from: args.from,
        to: args.to,
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
    let report = audit::verify(&log, &keys, &window, Arc::new(Bar(bar.clone()))).await?;
    bar.finish_and_clear();
    print(&report, keys.did(), args.json);
    if report.broken.is_some() {
        std::process::exit(1);
    }
    Ok(())
}

fn print(report: &Report, did: &str, as_json: bool) {
    match (&report.broken, as_json) {
        (Some(b), true) => println!(
            "{}",
            json!({ "ok": false, "topic": b.topic, "partition": b.partition, "offset": b.offset, "reason": b.reason })
        ),
        (Some(b), false) => println!(
            "BROKEN at {} partition {} offset {}: {}",
            b.topic, b.partition, b.offset, b.reason
        ),
        (None, true) => println!(
            "{}",
            json!({ "ok": true, "records": report.records, "outcomes": report.outcomes, "checkpoints": report.checkpoints,
                    "pending": report.pending, "repeated_events": report.repeated_events, "did": did })
        ),
        (None, false) => println!(
            "ok: {} certificate records ({} outcomes, {} checkpoints) chained and signed under {did}; {} vaccination records repeat an event answered already; {} not answered yet",
            report.records, report.outcomes, report.checkpoints, report.repeated_events, report.pending
        ),
    }
}
