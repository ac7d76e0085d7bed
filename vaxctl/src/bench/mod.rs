//! `vaxctl bench ingest`: posts N vaccinations over HTTP to two command APIs started in-process on
//! topics of their own, one sealing personal data through the key store and one writing it in the
//! clear, in four alternating quarters (clear, sealed, sealed, clear: the broker slows as its log
//! grows, and alternating cancels that out), with C requests in flight; then, in the same run
//! against the same broker, writes the same encoded records with a raw rdkafka idempotent producer
//! at the same concurrency. Prints events/s and latency percentiles for each, the ratios, and the
//! whole machine's busy CPU per event on each command API's quarters (every process). A
//! benchmark, not a test: absolute figures vary with the machine; the ratios are what to compare.
//!
//! Over 400 lines: it holds the ingest benchmark and the harness every benchmark shares
//! (`measure`, `Figures`, `progress`); the other benchmarks are modules of their own.

pub mod backup;
pub mod e2e;
pub mod pdf;
pub mod replay;
pub mod signer_state;
pub mod verify;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use avro::{
    codec::VaccinationCodec,
    vaccination::{Provenance, VaccinationEnvelope},
};
use clap::{Args, Parser};
use domain::{
    commands::{ParseContext, RecordVaccination},
    events::{VaccinationEvent, VaccinationPayload},
    ids::EventId,
    vaccine::VaccineCatalog,
    values::{CountryCode, RecipientKey, RecipientKeySecret},
};
use futures::{StreamExt, stream};
use indicatif::ProgressBar;
use platform::{
    KafkaArgs, RedisArgs, Shutdown,
    auth::{DevKey, Role},
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

/// `vaxctl bench ingest` arguments.
#[derive(Clone, Debug, Args)]
pub struct IngestArgs {
    /// Vaccinations to post.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    redis: RedisArgs,
}

/// One side's figures.
pub(crate) struct Figures {
    pub(crate) events_per_second: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

pub(crate) fn figures(count: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Figures {
        events_per_second: count as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// The i-th synthetic vaccination, DIVOC-shaped.
pub(crate) fn body(i: usize) -> Value {
    let gender = ["Male", "Female", "Other"][i % 3];
    json!({
        "preEnrollmentCode": format!("BENCH{i:08}"),
        "programId": "bench",
        "recipient": {
            "name": "Bench Recipient", "dob": "1980-01-01", "gender": gender,
            "nationality": "Indian", "identity": format!("did:bench:{i:010}"), "contact": [format!("tel:9{i:09}")],
            "address": { "addressLine1": "1 Main Road", "district": "Bengaluru", "state": "Karnataka", "pincode": "560034" }
        },
        "vaccination": {
            "name": "covaxin", "batch": format!("B{}", i % 97), "manufacturer": "Bharat Biotech",
            "date": "2021-03-01T10:15:00+05:30", "dose": 1, "totalDoses": 2,
            "effectiveStart": "2021-03-01", "effectiveUntil": "2022-03-01"
        },
        "vaccinator": { "name": "Bench Vaccinator" },
        "facility": { "name": "Bench Facility", "address": { "addressLine1": "2 Main Road", "district": "Bengaluru", "state": "Karnataka", "pincode": "560034" } }
    })
}

pub(crate) use vaxctl::progress;

/// Runs `one` for every item with `concurrency` in flight; each returns its own latency.
pub(crate) async fn measure<'a, T, F, Fut>(
    items: &'a [T],
    concurrency: usize,
    bar: ProgressBar,
    one: F,
) -> anyhow::Result<Figures>
where
    F: Fn(&'a T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>> + 'a,
{
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<Duration>> = stream::iter(items)
        .map(|item| {
            let bar = bar.clone();
            let work = one(item);
            async move {
                let latency = work.await?;
                bar.inc(1);
                Ok(latency)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    bar.finish();
    Ok(figures(
        items.len(),
        elapsed,
        latencies.into_iter().collect::<anyhow::Result<_>>()?,
    ))
}

/// Posts every body through the API and measures; `first` numbers the bodies' idempotency keys
/// (each body its own key across calls, or the API answers a retry without appending).
async fn through_the_api(
    url: &str,
    token: &str,
    (first, bodies): (usize, &[Value]),
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<Figures> {
    let client = reqwest::Client::new();
    let numbered: Vec<(usize, &Value)> = bodies.iter().enumerate().map(|(i, b)| (first + i, b)).collect();
    let bar = progress(bodies.len(), "command-api", quiet);
    measure(&numbered, concurrency, bar, |(i, body)| {
        let request = client
            .post(format!("{url}/v1/vaccinations"))
            .bearer_auth(token)
            .header("Idempotency-Key", format!("bench-{i}"))
            .json(body);
        async move {
            let sent = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            anyhow::ensure!(status.as_u16() == 202, "answered {status}: {}", response.text().await?);
            Ok(sent.elapsed())
        }
    })
    .await
}

/// Writes the same records with a raw idempotent producer and measures.
pub(crate) async fn raw_producer(
    brokers: &str,
    topic: &str,
    records: &[(String, Vec<u8>)],
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<Figures> {
    let producer: FutureProducer = platform::Kafka::new(brokers)
        .tuned(platform::Tuning {
            linger: Duration::from_millis(2),
            ..platform::Tuning::default()
        })
        .producer()?;
    let bar = progress(records.len(), "raw rdkafka", quiet);
    measure(records, concurrency, bar, |(key, value)| {
        let producer = &producer;
        async move {
            let sent = Instant::now();
            let record = FutureRecord::to(topic).key(key).payload(value);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)?;
            Ok(sent.elapsed())
        }
    })
    .await
}

/// The same records as the API writes them, encoded ahead of time for the raw producer.
pub(crate) async fn encoded(
    bodies: &[Value],
    registry_url: &str,
    topic: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let catalog = VaccineCatalog::divoc_default();
    let ctx = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::UTC,
        default_country: CountryCode::parse("c", "IND").map_err(|e| anyhow::anyhow!("{e}"))?,
        today: chrono::Utc::now().date_naive(),
    };
    let codec = VaccinationCodec::new(registry_url, topic);
    let secret = RecipientKeySecret::new("bench");
    let mut records = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.iter().enumerate() {
        let record = RecordVaccination::parse(body, &ctx).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let key = RecipientKey::derive(&secret, &record.recipient.identity);
        let now = chrono::Utc::now();
        let envelope = VaccinationEnvelope {
            event: VaccinationEvent {
                event_id: EventId::derive("bench", &i.to_string()),
                recipient_key: key.clone(),
                payload: VaccinationPayload::VaccinationRecorded(record),
            },
            provenance: Provenance {
                occurred_at: now,
                recorded_at: now,
                source_system: "bench".into(),
                source_record_id: i.to_string(),
                actor: "bench".into(),
            },
        };
        records.push((key.as_str().to_owned(), codec.encode(&envelope).await?));
    }
    Ok(records)
}

/// Runs the benchmark.
pub async fn ingest(kafka: &KafkaArgs, args: &IngestArgs) -> anyhow::Result<()> {
    let run = format!("bench-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let kafka = KafkaArgs {
        topic_prefix: run.clone(),
        ..kafka.clone()
    };
    platform::topics::ensure_topics(&kafka.brokers, &kafka.topics().specs()).await?;
    avro::client::RegistryClient::new(&kafka.schema_registry_url)
        .register_event_schemas(&run)
        .await?;

    let key = DevKey::generate();
    let jwks = std::env::temp_dir().join(format!("{run}jwks.json"));
    std::fs::write(&jwks, key.jwks())?;
    let mut config = command_api::Config::parse_from(["command-api"]);
    anyhow::ensure!(
        config.keystore.url.is_some(),
        "bench ingest compares sealed with clear writes: set VAXTRAIL_KEYSTORE_URL and VAXTRAIL_KEK_FILE (deploy/local/lib.sh does)"
    );
    config.kafka = kafka.clone();
    config.redis = RedisArgs {
        key_prefix: run.clone(),
        ..args.redis.clone()
    };
    config.listen = "127.0.0.1:0".parse()?;
    config.auth.jwks = Some(jwks.display().to_string());
    let mut clear = config.clone();
    clear.keystore.url = None;
    clear.environment.environment = platform::environment::Environment::Development;
    let shutdown = Shutdown::new();
    let mut urls = Vec::new();
    for config in [&config, &clear] {
        let app = command_api::Application::build(config, shutdown.clone()).await?;
        urls.push(format!("http://{}", app.local_addr()));
        tokio::spawn(app.run_until_stopped());
    }
    let (sealed_url, clear_url) = (urls[0].clone(), urls[1].clone());
    let token = key.token(
        "bench",
        &[Role::Facility],
        &config.auth.issuer,
        &config.auth.audience,
        Duration::from_secs(3600),
    );

    let bodies: Vec<Value> = (0..args.count).map(body).collect();
    let raw_topic = format!("{run}raw");
    platform::topics::ensure_topics(
        &kafka.brokers,
        &[platform::topics::TopicSpec {
            name: raw_topic.clone(),
            partitions: kafka.partitions,
            config: vec![],
        }],
    )
    .await?;
    let records = Arc::new(encoded(&bodies, &kafka.schema_registry_url, &kafka.topics().vaccination_events).await?);

    let quarter = (args.count / 4).max(1);
    let mut sealed_runs = Vec::new();
    let mut clear_runs = Vec::new();
    let (mut sealed_cpu, mut clear_cpu) = (MachineCpu::default(), MachineCpu::default());
    for (i, url) in [&clear_url, &sealed_url, &sealed_url, &clear_url]
        .into_iter()
        .enumerate()
    {
        let start = (i * quarter).min(bodies.len());
        let part = &bodies[start..((i + 1) * quarter).min(bodies.len())];
        let busy_before = machine_busy();
        let figures = through_the_api(url, &token, (start, part), args.concurrency, args.json).await?;
        let busy = machine_busy()
            .zip(busy_before)
            .map(|(after, before)| after.saturating_sub(before));
        let (runs, cpu) = if *url == sealed_url {
            (&mut sealed_runs, &mut sealed_cpu)
        } else {
            (&mut clear_runs, &mut clear_cpu)
        };
        runs.push(figures);
        cpu.add(busy, part.len());
    }
    let (sealed, clear) = (mean(&sealed_runs), mean(&clear_runs));
    let raw = raw_producer(&kafka.brokers, &raw_topic, &records, args.concurrency, args.json).await?;
    shutdown.cancel();
    let _ = std::fs::remove_file(&jwks);
    // The run's topics are left in place: on Tansu, deleting topics can crash other connected
    // clients (see the README), so deletion is an operator's decision.
    eprintln!("topics of this run: vaxctl topics delete --prefix {run}");

    let ratio = sealed.events_per_second / raw.events_per_second;
    let sealing = sealed.events_per_second / clear.events_per_second;
    if args.json {
        let side = |f: &Figures| json!({ "events_per_second": f.events_per_second, "p50_ms": f.p50.as_secs_f64() * 1e3, "p99_ms": f.p99.as_secs_f64() * 1e3 });
        println!(
            "{}",
            json!({ "count": args.count, "concurrency": args.concurrency, "command_api": side(&sealed), "command_api_clear": side(&clear), "raw_rdkafka": side(&raw), "ratio": ratio, "sealed_over_clear": sealing,
                "machine_cpu_us_per_event": { "sealed": sealed_cpu.per_event_us(), "clear": clear_cpu.per_event_us() } })
        );
    } else {
        println!("ingest: {} vaccinations, {} in flight", args.count, args.concurrency);
        println!("{:<28} {:>10} {:>10} {:>10}", "", "events/s", "p50 ms", "p99 ms");
        for (name, f) in [
            ("command-api, sealed (HTTP)", &sealed),
            ("command-api, clear (HTTP)", &clear),
            ("raw rdkafka producer", &raw),
        ] {
            println!(
                "{name:<28} {:>10.0} {:>10.2} {:>10.2}",
                f.events_per_second,
                f.p50.as_secs_f64() * 1e3,
                f.p99.as_secs_f64() * 1e3
            );
        }
        println!("ratio command-api (sealed) / raw producer: {ratio:.2}");
        println!("ratio sealed / clear: {sealing:.2}");
        if let (Some(sealed), Some(clear)) = (sealed_cpu.per_event_us(), clear_cpu.per_event_us()) {
            println!("machine CPU per event (every process, 10 ms ticks): sealed {sealed:.0} µs, clear {clear:.0} µs");
        }
    }
    Ok(())
}

/// The whole machine's busy CPU time so far (user, nice, system, irq and softirq from
/// `/proc/stat`), or `None` where there is none: every process counts (the API, the broker,
/// PostgreSQL, Redis), which is what a cost per event must include.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    // USER_HZ is 100 on every Linux architecture the README's figures come from.
    Some(Duration::from_millis(busy * 10))
}

/// Busy CPU time and events over one side's quarters.
#[derive(Default)]
struct MachineCpu {
    busy: Option<Duration>,
    events: usize,
    unknown: bool,
}

impl MachineCpu {
    fn add(&mut self, busy: Option<Duration>, events: usize) {
        match busy {
            Some(busy) => self.busy = Some(self.busy.unwrap_or_default() + busy),
            None => self.unknown = true,
        }
        self.events += events;
    }

    /// Microseconds of machine CPU per event.
    fn per_event_us(&self) -> Option<f64> {
        (!self.unknown && self.events > 0)
            .then(|| self.busy.map(|b| b.as_secs_f64() * 1e6 / self.events as f64))
            .flatten()
    }
}

/// The mean of runs' figures (rates and percentiles averaged).
fn mean(runs: &[Figures]) -> Figures {
    let n = runs.len().max(1) as u32;
    Figures {
        events_per_second: runs.iter().map(|f| f.events_per_second).sum::<f64>() / f64::from(n),
        p50: runs.iter().map(|f| f.p50).sum::<Duration>() / n,
        p99: runs.iter().map(|f| f.p99).sum::<Duration>() / n,
    }
}

/// `vaxctl bench sign` arguments.
#[derive(Clone, Debug, Args)]
pub struct SignArgs {
    /// Credentials to sign (the raw baseline signs 10 times as many).
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Signs DIVOC-shaped credentials (eddsa-rdfc-2022), one at a time on one core, through the
/// compiled path and through ssi's full JSON-LD path (VC 2.0 credentials, each placed in a
/// Bitstring Status List as the signer places it), and, in the same run, raw Ed25519 signatures
/// over the same credentials' JSON bytes (the ceiling). Prints each rate per core-second and its
/// ratio to raw Ed25519; the two paths' texts are checked equal on the credentials both signed.
pub async fn sign(args: &SignArgs) -> anyhow::Result<()> {
    use credentials::{CredentialSigner, IssuerKey, Keyring, compiled::Compiled, keys};
    use domain::{
        credential::{CredentialInput, IssuerProfile, unsigned_credential},
        ids::CertificateId,
        status::StatusAllocator,
    };
    use ed25519_dalek::{Signer, pkcs8::DecodePrivateKey};

    // Where each certificate's status bit goes, as the signer places it (a keyed FF1
    // permutation within a Bitstring Status List), timed on its own.
    let allocator = StatusAllocator::new(&domain::ids::IdKey::development());
    let started = Instant::now();
    let slots = (0..args.count as u64)
        .map(|i| allocator.slot(0, i))
        .collect::<Result<Vec<_>, _>>()?;
    let slot_time = started.elapsed();

    let catalog = VaccineCatalog::divoc_default();
    let ctx = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::UTC,
        default_country: CountryCode::parse("c", "IND").map_err(|e| anyhow::anyhow!("{e}"))?,
        today: chrono::Utc::now().date_naive(),
    };
    let profile = IssuerProfile {
        issuer: "did:web:bench.example".into(),
        base_url: "https://bench.example".into(),
    };
    let mut credentials = Vec::with_capacity(args.count);
    let mut records = Vec::with_capacity(args.count);
    for (i, &status) in slots.iter().enumerate() {
        let record = RecordVaccination::parse(&body(i), &ctx).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let certificate_id = CertificateId::for_event(
            &domain::ids::IdKey::development(),
            EventId::derive("bench", &i.to_string()),
        );
        credentials.push(unsigned_credential(&CredentialInput {
            profile: &profile,
            certificate_id: &certificate_id,
            record: &record,
            previous: &[],
            status,
            issued_at: chrono::Utc::now(),
        }));
        records.push((record, certificate_id));
    }
    let pem = keys::generate_pem();
    let keyring = Keyring::new(
        &profile.issuer,
        vec![IssuerKey::from_pem("key-1", &pem).map_err(|e| anyhow::anyhow!(e))?],
        None,
    )?;
    let compiled = std::sync::Arc::new(Compiled::learn().await?);
    let signer = CredentialSigner::new(keyring).with_compiled(compiled);
    let created = chrono::Utc::now();

    // What the full path and the raw baseline need, copied before the clock starts: the signer
    // hands each credential over by value, so the compiled loop consumes them as it does.
    let full_count = (args.count / 10).max(1);
    let for_full: Vec<serde_json::Value> = credentials.iter().take(full_count).cloned().collect();
    let bytes: Vec<Vec<u8>> = credentials
        .iter()
        .map(|c| serde_json::to_vec(c).expect("JSON"))
        .collect();

    // The compiled path, as the signer runs it.
    let bar = progress(args.count, "compiled", args.json);
    let started = Instant::now();
    let mut fast = Vec::with_capacity(args.count);
    for credential in credentials {
        fast.push(signer.sign_at(credential, created).await?.text);
        bar.inc(1);
    }
    let compiled_time = started.elapsed();
    bar.finish();

    // ssi's full path, on a tenth of them (it is slow); the texts must be the same.
    let bar = progress(full_count, "ssi", args.json);
    let started = Instant::now();
    for (credential, text) in for_full.into_iter().zip(&fast) {
        let full = signer.sign_full(credential, created).await?.text;
        anyhow::ensure!(&full == text, "the compiled and the full path signed differently");
        bar.inc(1);
    }
    let full_time = started.elapsed();
    bar.finish();

    let raw_key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)?;
    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        for b in &bytes {
            std::hint::black_box(raw_key.sign(std::hint::black_box(b)));
        }
    }
    let raw = started.elapsed();
    let per_second = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let (eu_time, shc_time) = other_formats(&records, &profile.base_url, args.json)?;
    let eu_rate = per_second(records.len(), eu_time);
    let shc_rate = per_second(records.len(), shc_time);
    let compiled_rate = per_second(args.count, compiled_time);
    let slot_rate = per_second(args.count, slot_time);
    let full_rate = per_second(full_count, full_time);
    let raw_rate = per_second(args.count * rounds, raw);
    let signed_bytes: usize = fast.iter().map(String::len).sum();
    let report = json!({
        "credentials": args.count,
        "credential_bytes_mean": signed_bytes / args.count.max(1),
        "compiled_signatures_per_core_second": compiled_rate,
        "compiled_us_per_signature": 1_000_000.0 / compiled_rate,
        "ssi_signatures_per_core_second": full_rate,
        "ssi_ms_per_signature": 1000.0 / full_rate,
        "raw_ed25519_signatures_per_core_second": raw_rate,
        "raw_us_per_signature": 1_000_000.0 / raw_rate,
        "ratio": compiled_rate / raw_rate,
        "ssi_ratio": full_rate / raw_rate,
        "speedup": compiled_rate / full_rate,
        "status_slot_us_each": 1_000_000.0 / slot_rate,
        "eu_dcc_us_each": 1_000_000.0 / eu_rate,
        "shc_us_each": 1_000_000.0 / shc_rate,
        "all_formats_us_per_dose": 1_000_000.0 / compiled_rate + 1_000_000.0 / eu_rate + 1_000_000.0 / shc_rate,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "compiled eddsa-rdfc-2022:               {compiled_rate:>10.1}/core-s  ({:.1} µs each)  ratio to raw {:.3}",
            1_000_000.0 / compiled_rate,
            compiled_rate / raw_rate
        );
        println!(
            "ssi's full JSON-LD path ({full_count:>5} signed): {full_rate:>10.1}/core-s  ({:.2} ms each)  ratio to raw {:.4}",
            1000.0 / full_rate,
            full_rate / raw_rate
        );
        println!(
            "raw Ed25519 over the same JSON bytes:   {raw_rate:>10.1}/core-s  ({:.1} µs each)",
            1_000_000.0 / raw_rate
        );
        println!("compiled / full: {:.0}x", compiled_rate / full_rate);
        println!(
            "status slot (FF1 permutation in a Bitstring Status List): {:.2} µs each",
            1_000_000.0 / slot_rate
        );
        println!(
            "EU DCC (payload, CBOR, ES256, ZLIB, base45): {eu_rate:>10.1}/core-s  ({:.1} µs each)",
            1_000_000.0 / eu_rate
        );
        println!(
            "SMART Health Card (FHIR, DEFLATE, ES256):   {shc_rate:>10.1}/core-s  ({:.1} µs each)",
            1_000_000.0 / shc_rate
        );
        println!(
            "all three formats per dose: {:.1} µs (the W3C credential alone: {:.1} µs)",
            1_000_000.0 / compiled_rate + 1_000_000.0 / eu_rate + 1_000_000.0 / shc_rate,
            1_000_000.0 / compiled_rate
        );
    }
    Ok(())
}

/// Issues an EU DCC and a SMART Health Card for each record, as the signer does beside the W3C
/// credential; the time each format took for all of them.
fn other_formats(
    records: &[(RecordVaccination, domain::ids::CertificateId)],
    base_url: &str,
    quiet: bool,
) -> anyhow::Result<(Duration, Duration)> {
    use credentials::{hcert, shc};
    let dsc = hcert::DocumentSigner::from_pem(
        "bench",
        &hcert::dsc::generate("IN", "bench", "bench", 30).map_err(|e| anyhow::anyhow!(e))?,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let mapping = hcert::VaccineMapping::bundled();
    let issuer = hcert::Issuer {
        name: "Ministry of Health and Family Welfare",
        country: "IN",
    };
    let bar = progress(records.len(), "eu-dcc", quiet);
    let started = Instant::now();
    for (record, id) in records {
        // The bench's records name mapped vaccines; an unmapped one costs nothing.
        if let Ok(payload) = hcert::payload::payload(record, id, &issuer, &mapping) {
            let issued = hcert::issue(&payload, "IN", &dsc, chrono::Utc::now(), hcert::DEFAULT_VALIDITY)?;
            std::hint::black_box(issued);
        }
        bar.inc(1);
    }
    let eu = started.elapsed();
    bar.finish();
    let key = shc::ShcKey::from_pem("bench", &shc::generate_pem()).map_err(|e| anyhow::anyhow!(e))?;
    let bar = progress(records.len(), "shc", quiet);
    let started = Instant::now();
    for (record, id) in records {
        let card = shc::issue(
            &shc::bundle(record),
            base_url,
            chrono::Utc::now(),
            &shc::rid(id.as_str()),
            &key,
        );
        std::hint::black_box(card);
        bar.inc(1);
    }
    let shc = started.elapsed();
    bar.finish();
    Ok((eu, shc))
}
