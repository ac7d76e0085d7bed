//! `vaxctl bench replay`: writes N synthetic vaccinations and their certificate outcomes to topics
//! of its own, then replays each projection from offset zero into an empty store of its own and
//! times it until its stored offsets reach the topics' ends. In the same run it measures two
//! baselines: a bare consumer reading the same records (the broker's ceiling), and a `COPY` into
//! Postgres of exactly the rows the Postgres projection wrote. Prints events/s and the ratios.
//!
//! The outcomes carry credentials of the real shape and size whose proof is not a valid
//! signature: signing 100,000 credentials would take a quarter of an hour on 2 cores, and the
//! projections store credentials without verifying them.
//!
//! Over 400 lines: generating a log of the real shape, writing it, measuring the broker's bare
//! read rate and `COPY` as baselines, and replaying each projection are one measured run.

use std::time::{Duration, Instant};

use avro::{
    certificate::{CertificateBody, CertificateEnvelope, IssuedCredential, SourcePosition},
    codec::{CertificateCodec, VaccinationCodec},
    vaccination::{Provenance, VaccinationEnvelope},
};
use chrono::Utc;
use clap::Args;
use domain::{
    commands::{ParseContext, RecordVaccination},
    credential::{CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    events::{CertificateOutcome, VaccinationEvent, VaccinationPayload},
    ids::EventId,
    lineage::{Lineage, Policy, outcomes},
    vaccine::VaccineCatalog,
    values::{CountryCode, RecipientKey, RecipientKeySecret},
};
use futures::{StreamExt, TryStreamExt, stream};
use platform::{ClickHouseArgs, KafkaArgs, PostgresArgs, RedisArgs};
use projectors::{
    Kind,
    cache::RedisProjection,
    postgres::PostgresProjection,
    rebuild::{ClickHouseStore, PostgresStore, Rebuild},
    runner::{self, Projection},
};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use vaxctl::synthetic::Person;

use crate::bench::progress;

/// `vaxctl bench replay` arguments.
#[derive(Clone, Debug, Args)]
pub struct ReplayArgs {
    /// Vaccinations to write; each has its certificate outcome, so a projection replays twice
    /// as many events.
    #[arg(long, default_value_t = 50_000)]
    count: usize,
    /// The projections to replay.
    #[arg(long, value_delimiter = ',', default_value = "postgres,redis,clickhouse")]
    projections: Vec<Kind>,
    /// Records per projection batch.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    postgres: PostgresArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

/// The encoded records of a run, per topic, each with its partition.
struct Log {
    vaccinations: Vec<(i32, String, Vec<u8>)>,
    certificates: Vec<(i32, String, Vec<u8>)>,
}

/// Builds `count` vaccinations and the outcome the signer would give each.
async fn generate(kafka: &KafkaArgs, count: usize, quiet: bool) -> anyhow::Result<Log> {
    let topics = kafka.topics();
    let vaccination_codec = VaccinationCodec::new(&kafka.schema_registry_url, &topics.vaccination_events);
    let certificate_codec = CertificateCodec::new(&kafka.schema_registry_url, &topics.certificate_events);
    let catalog = VaccineCatalog::divoc_default();
    let today = Utc::now().date_naive();
    let ctx = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::Asia::Kolkata,
        default_country: CountryCode::parse("c", "IND").map_err(|e| anyhow::anyhow!("{e}"))?,
        today,
    };
    let secret = RecipientKeySecret::new("bench");
    let profile = IssuerProfile {
        issuer: "did:web:bench.invalid".into(),
        base_url: "https://bench.invalid".into(),
    };
    let partitions = kafka.partitions.max(1);
    let mut next_index = vec![0_u64; partitions as usize];
    let mut log = Log {
        vaccinations: Vec::with_capacity(count),
        certificates: Vec::with_capacity(count),
    };
    let progress = progress(count, "generating", quiet);
    for i in 0..count {
        let body = Person::new(i as u64, today, 90).certify_request(1, "");
        let record = RecordVaccination::parse(&body, &ctx).map_err(|e| anyhow::anyhow!("record {i}: {e:?}"))?;
        let key = RecipientKey::derive(&secret, &record.recipient.identity);
        let partition = (i % partitions as usize) as i32;
        let now = Utc::now();
        let envelope = VaccinationEnvelope {
            event: VaccinationEvent {
                event_id: EventId::derive("bench", &i.to_string()),
                recipient_key: key.clone(),
                payload: VaccinationPayload::VaccinationRecorded(record.clone()),
            },
            provenance: Provenance {
                occurred_at: now,
                recorded_at: now,
                source_system: "bench".into(),
                source_record_id: i.to_string(),
                actor: "bench".into(),
            },
        };
        // One record per vaccination in its partition: the offset and the status index agree.
        let slot = &mut next_index[partition as usize];
        let (offset, status) = (
            *slot as i64,
            StatusSlot {
                list: partition as u32,
                index: *slot,
            },
        );
        *slot += 1;
        for outcome in outcomes(&Lineage::default(), &envelope.event, &Policy::default(), status) {
            let certificate = outcome_record(
                &profile,
                &record,
                &key,
                outcome,
                SourcePosition { partition, offset },
                status,
                now,
            );
            log.certificates.push((
                partition,
                key.as_str().to_owned(),
                certificate_codec.encode(&certificate).await?,
            ));
        }
        log.vaccinations.push((
            partition,
            key.as_str().to_owned(),
            vaccination_codec.encode(&envelope).await?,
        ));
        progress.inc(1);
    }
    progress.finish();
    Ok(log)
}

/// The `certificate-events` record the signer would write for `outcome`: an issue carries a
/// credential of the real shape and size, with a proof that is not a valid signature.
fn outcome_record(
    profile: &IssuerProfile,
    record: &RecordVaccination,
    key: &RecipientKey,
    outcome: domain::events::CertificateEvent,
    source: SourcePosition,
    status: StatusSlot,
    now: chrono::DateTime<Utc>,
) -> CertificateEnvelope {
    let credential = match &outcome.outcome {
        CertificateOutcome::CertificateIssued { certificate_id, .. } => {
            let mut credential = unsigned_credential(&CredentialInput {
                profile,
                certificate_id,
                record,
                previous: &[],
                status,
                issued_at: now,
            });
            credential["proof"] = json!({
                "type": "DataIntegrityProof",
                "cryptosuite": "eddsa-rdfc-2022",
                "created": now.to_rfc3339(),
                "verificationMethod": "did:web:bench.invalid#key-1",
                "proofPurpose": "assertionMethod",
                "proofValue": format!("z{}", "1".repeat(87)),
            });
            Some(IssuedCredential {
                text: credential.to_string(),
                key_id: "did:web:bench.invalid#key-1".into(),
                renderings: Vec::new(),
            })
        }
        _ => None,
    };
    CertificateEnvelope {
        occurred_at: now,
        recorded_at: now,
        source,
        previous_sha256: None,
        body: CertificateBody::Outcome {
            recipient_key: key.clone(),
            source_sha256: [0; 32],
            event: outcome,
            credential,
        },
    }
}

/// Writes the records in large batches (so reading them back is not bound by batch count).
async fn write(brokers: &str, topic: &str, records: &[(i32, String, Vec<u8>)], quiet: bool) -> anyhow::Result<f64> {
    let producer: FutureProducer = platform::Kafka::new(brokers)
        .tuned(platform::Tuning {
            linger: Duration::from_millis(100),
            bulk: true,
            ..platform::Tuning::default()
        })
        .producer()?;
    let progress = progress(records.len(), "writing", quiet);
    let started = Instant::now();
    stream::iter(records)
        .map(|(partition, key, value)| {
            let producer = &producer;
            let progress = &progress;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).partition(*partition).key(key).payload(value),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|(e, _)| e)?;
                progress.inc(1);
                anyhow::Ok(())
            }
        })
        .buffered(20_000)
        .try_collect::<()>()
        .await?;
    progress.finish();
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}

/// The records a bare consumer reads per second from both topics, start to end.
pub(crate) fn read_rate(brokers: &str, topics: &[String], partitions: i32, total: usize) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = platform::Kafka::new(brokers).reader("vaxctl-bench-read")?;
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..partitions {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let mut read = 0;
    while read < total {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "read {read} of {total} in 30 minutes"
        );
        if let Some(message) = consumer.poll(Duration::from_secs(1)) {
            message?.offset();
            read += 1;
        }
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Replays one projection from offset zero; events per second until its stored offsets reach the
/// topics' ends.
async fn replay<P: Projection>(
    settings: runner::Settings,
    projection: P,
    probe: P,
    ends: &[(String, i32, i64)],
    quiet: bool,
) -> anyhow::Result<f64> {
    let total: i64 = ends.iter().map(|(_, _, end)| end).sum();
    let progress = progress(total as usize, P::NAME, quiet);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(runner::run(settings, projection, stop.clone()));
    loop {
        let mut stored = 0;
        for (topic, partition, _) in ends {
            stored += probe.next_offset(topic, *partition).await.unwrap_or(None).unwrap_or(0);
        }
        progress.set_position(stored as u64);
        if stored >= total {
            break;
        }
        anyhow::ensure!(!running.is_finished(), "the {} projection stopped", P::NAME);
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "{} replayed {stored} of {total} events in an hour",
            P::NAME
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    progress.finish();
    stop.cancel();
    let _ = running.await;
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// The Postgres tables, in the order a `COPY` fills them.
const TABLES: [&str; 6] = [
    "recipients",
    "vaccinations",
    "certificates",
    "event_outcomes",
    "checkpoints",
    "projection_offsets",
];

/// Copies the projection's rows out, then times a `COPY` of them into an empty copy of the schema
/// (same tables, same indexes), in one transaction. Events per second.
async fn copy_rate(postgres: &PostgresArgs, from: &str, into: &str, events: i64) -> anyhow::Result<f64> {
    let source = PostgresArgs {
        schema: from.to_owned(),
        ..postgres.clone()
    }
    .pool()?;
    let mut dumped = Vec::new();
    let mut connection = source.acquire().await?;
    for table in TABLES {
        let bytes: Vec<u8> = connection
            .copy_out_raw(&format!("COPY {table} TO STDOUT (FORMAT binary)"))
            .await?
            .map_ok(|chunk| chunk.to_vec())
            .try_concat()
            .await?;
        dumped.push((table, bytes));
    }
    drop(connection);
    let target = schema(postgres, into).await?;
    PostgresProjection::new(target.clone()).migrate().await?;
    let started = Instant::now();
    let mut tx = target.begin().await?;
    for (table, bytes) in &dumped {
        let mut copy = tx
            .copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
            .await?;
        copy.send(bytes.as_slice()).await?;
        copy.finish().await?;
    }
    tx.commit().await?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// A fresh schema for a run's store, as `vaxctl replay` creates its shadows.
async fn schema(postgres: &PostgresArgs, name: &str) -> anyhow::Result<sqlx::PgPool> {
    let projection = PostgresStore(postgres.clone()).shadow(name).await?;
    Ok(projection.pool().clone())
}

/// One measured line.
struct Figure {
    what: String,
    events_per_second: f64,
    baseline: Option<(&'static str, f64)>,
}

/// Runs the benchmark.
pub async fn run(kafka: &KafkaArgs, args: &ReplayArgs) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let run = format!("bench-replay-{id}-");
    let store = format!("bench_replay_{id}");
    let kafka = KafkaArgs {
        topic_prefix: run.clone(),
        ..kafka.clone()
    };
    platform::topics::ensure_topics(&kafka.brokers, &kafka.topics().specs()).await?;
    avro::client::RegistryClient::new(&kafka.schema_registry_url)
        .register_event_schemas(&run)
        .await?;
    let topics = kafka.topics();
    let names = vec![topics.vaccination_events.clone(), topics.certificate_events.clone()];
    let log = generate(&kafka, args.count, args.json).await?;
    let written = log.vaccinations.len() + log.certificates.len();
    let write_rate = (write(&kafka.brokers, &names[0], &log.vaccinations, args.json).await?
        + write(&kafka.brokers, &names[1], &log.certificates, args.json).await?)
        / 2.0;
    drop(log);

    let ends = ends(&kafka.brokers, &names, kafka.partitions).await?;
    let events: i64 = ends.iter().map(|(_, _, end)| end).sum();
    anyhow::ensure!(
        events as usize == written,
        "the topics hold {events} records, {written} were written"
    );
    let (brokers, partitions) = (kafka.brokers.clone(), kafka.partitions);
    let read = tokio::task::spawn_blocking(move || read_rate(&brokers, &names, partitions, written)).await??;
    let mut figures = vec![Figure {
        what: "bare consumer".into(),
        events_per_second: read,
        baseline: None,
    }];
    let run_of = Run {
        kafka: &kafka,
        args,
        prefix: &run,
        store: &store,
        ends: &ends,
        read,
    };
    let mut kinds = args.projections.clone();
    kinds.dedup();
    for kind in kinds {
        figures.extend(run_of.projection(kind).await?);
    }

    cleanup(args, &run, &store).await;
    report(args, events, write_rate, &figures);
    Ok(())
}

/// The high watermark of every partition of `topics`.
async fn ends(brokers: &str, topics: &[String], partitions: i32) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let (brokers, topics) = (brokers.to_owned(), topics.to_vec());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = platform::Kafka::new(&brokers).client()?;
        let mut ends = Vec::new();
        for topic in &topics {
            for partition in 0..partitions {
                let (_, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
                ends.push((topic.clone(), partition, high));
            }
        }
        anyhow::Ok(ends)
    })
    .await?
}

/// One benchmark run's log, stores and baseline.
struct Run<'a> {
    kafka: &'a KafkaArgs,
    args: &'a ReplayArgs,
    prefix: &'a str,
    store: &'a str,
    ends: &'a [(String, i32, i64)],
    /// The bare consumer's rate.
    read: f64,
}

impl Run<'_> {
    /// The runner's settings for projection `name`, in a consumer group of its own.
    fn settings(&self, name: &str) -> runner::Settings {
        let topics = self.kafka.topics();
        runner::Settings {
            brokers: self.kafka.brokers.clone(),
            registry_url: self.kafka.schema_registry_url.clone(),
            group: format!("{}projector-{name}", self.prefix),
            vaccination_events: topics.vaccination_events,
            certificate_events: topics.certificate_events,
            dead_letters: topics.dead_letters,
            batch_size: self.args.batch_size.max(1),
            batch_time: Duration::from_millis(200),
            health: runner::Health::default(),
            keys: None,
        }
    }

    /// Replays one projection into a store of its own: its figures (Postgres adds `COPY`, the
    /// database's own ceiling, as its baseline).
    async fn projection(&self, kind: Kind) -> anyhow::Result<Vec<Figure>> {
        let (args, store, quiet) = (self.args, self.store, self.args.json);
        let rate = match kind {
            Kind::Postgres => {
                let pool = schema(&args.postgres, store).await?;
                let (live, probe) = (PostgresProjection::new(pool.clone()), PostgresProjection::new(pool));
                let rate = replay(self.settings("postgres"), live, probe, self.ends, quiet).await?;
                let events = self.ends.iter().map(|(_, _, end)| end).sum();
                let copy = copy_rate(&args.postgres, store, &format!("{store}_copy"), events).await?;
                return Ok(vec![
                    Figure {
                        what: "COPY".into(),
                        events_per_second: copy,
                        baseline: Some(("bare consumer", self.read)),
                    },
                    Figure {
                        what: "postgres projection".into(),
                        events_per_second: rate,
                        baseline: Some(("COPY", copy)),
                    },
                ]);
            }
            Kind::Redis => {
                let client = args.redis.client()?;
                let (live, probe) = (
                    RedisProjection::new(client.clone(), self.prefix),
                    RedisProjection::new(client, self.prefix),
                );
                replay(self.settings("redis"), live, probe, self.ends, quiet).await?
            }
            Kind::Clickhouse => {
                let databases = ClickHouseStore(args.clickhouse.clone());
                let (live, probe) = (databases.shadow(store).await?, databases.shadow(store).await?);
                replay(self.settings("clickhouse"), live, probe, self.ends, quiet).await?
            }
        };
        Ok(vec![Figure {
            what: format!("{} projection", format!("{kind:?}").to_lowercase()),
            events_per_second: rate,
            baseline: Some(("bare consumer", self.read)),
        }])
    }
}

/// Drops the run's schemas, database and keys; the topics stay (on Tansu, deleting topics can
/// crash other connected clients: see the README), so their deletion is the operator's call.
async fn cleanup(args: &ReplayArgs, run: &str, store: &str) {
    if let Ok(pool) = args.postgres.pool() {
        for schema in [store.to_owned(), format!("{store}_copy")] {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                .execute(&pool)
                .await;
        }
    }
    let _ = args
        .clickhouse
        .client()
        .query(&format!("DROP DATABASE IF EXISTS {store}"))
        .execute()
        .await;
    if let Ok(mut redis) = args.redis.client().and_then(|c| c.get_connection()) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{run}*"))
            .query(&mut redis)
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query(&mut redis);
        }
    }
    eprintln!("topics of this run: vaxctl topics delete --prefix {run}");
}

fn report(args: &ReplayArgs, events: i64, write_rate: f64, figures: &[Figure]) {
    if args.json {
        let lines: Vec<_> = figures
            .iter()
            .map(|f| {
                json!({
                    "what": f.what,
                    "events_per_second": f.events_per_second.round(),
                    "baseline": f.baseline.map(|(name, _)| name),
                    "ratio": f.baseline.map(|(_, rate)| (f.events_per_second / rate * 1000.0).round() / 1000.0),
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "events": events, "write_events_per_second": write_rate.round(), "replay": lines })
        );
        return;
    }
    println!(
        "replay from offset zero of {events} events ({} vaccinations and their outcomes); written at {write_rate:.0}/s",
        events / 2
    );
    println!("{:<22} {:>12}   ratio", "", "events/s");
    for f in figures {
        let ratio = f
            .baseline
            .map(|(name, rate)| format!("{:.2}x {name}", f.events_per_second / rate))
            .unwrap_or_default();
        println!("{:<22} {:>12.0}   {ratio}", f.what, f.events_per_second);
    }
}
