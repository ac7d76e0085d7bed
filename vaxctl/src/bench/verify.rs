//! `vaxctl bench verify`: starts a query API in-process on a Redis key prefix and a Postgres
//! schema of its own, signs `--certificates` synthetic credentials with a fresh key and caches them
//! the way the Redis projection does, then, with `--concurrency` requests in flight, measures
//! `POST /v1/verify` (each request re-checks revocation against the cache) and
//! `GET /v1/certificates/{id}`; in the same run it measures `GET /healthz` (the HTTP stack's
//! ceiling) and the first verification of each distinct credential, with the same concurrency
//! (each a full eddsa-rdfc-2022 check, no verdict cache: what a border's verifier fleet meets).
//! Prints requests/s, p50 and p99, and the ratios to the HTTP ceiling.

use std::{sync::Arc, time::Instant};

use chrono::Utc;
use clap::Args;
use credentials::{CredentialSigner, IssuerKey, Keyring, keys};
use domain::{
    commands::{ParseContext, RecordVaccination},
    credential::{CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    ids::{CertificateId, EventId},
    vaccine::VaccineCatalog,
    values::CountryCode,
};
use platform::{ClickHouseArgs, KafkaArgs, PostgresArgs, RedisArgs, Shutdown};
use serde_json::json;
use vaxctl::synthetic::Person;

use crate::bench::{Figures, measure, progress};

/// `vaxctl bench verify` arguments.
#[derive(Clone, Debug, Args)]
pub struct VerifyArgs {
    /// Distinct signed certificates (each verified once uncached, then round-robin).
    #[arg(long, default_value_t = 20_000)]
    certificates: usize,
    /// Requests per measured endpoint.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
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

/// The signed credentials the benchmark verifies, cached under its own Redis key prefix.
struct Signed {
    prefix: String,
    /// The key directory (private key; its public halves are published beside it).
    dir: std::path::PathBuf,
    did: &'static str,
    base_url: String,
    credentials: Vec<String>,
    ids: Vec<String>,
}

/// The measured figures of one run.
struct Measured {
    distinct: Figures,
    health: Figures,
    verify: Figures,
    fetch: Figures,
}

/// Runs the benchmark.
pub async fn run(kafka: &KafkaArgs, args: &VerifyArgs) -> anyhow::Result<()> {
    let mut redis = args.redis.client()?.get_multiplexed_async_connection().await?;
    let signed = sign_and_cache(args, &mut redis).await?;
    let (url, codes, shutdown) = start_query_api(kafka, args, &signed).await?;
    let measured = measure_all(args, &url, &signed, codes).await;
    shutdown.cancel();
    cleanup(&signed, &mut redis).await?;
    print(args, &measured?);
    Ok(())
}

/// Signs `--certificates` synthetic credentials with a fresh key and caches them the way the
/// Redis projection does.
async fn sign_and_cache(args: &VerifyArgs, redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<Signed> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let prefix = format!("bench-verify-{id}:");
    let dir = std::env::temp_dir().join(format!("vaxtrail-bench-verify-{id}"));
    std::fs::create_dir_all(&dir)?;
    let pem = keys::generate_pem();
    std::fs::write(dir.join("key-1.pem"), &pem)?;
    let did = "did:web:bench.invalid";
    let keyring = Keyring::new(
        did,
        vec![IssuerKey::from_pem("key-1", &pem).map_err(anyhow::Error::msg)?],
        None,
    )?;
    let signer =
        CredentialSigner::new(keyring).with_compiled(Arc::new(credentials::compiled::Compiled::learn().await?));
    let profile = IssuerProfile {
        issuer: did.into(),
        base_url: "https://bench.invalid".into(),
    };
    let catalog = VaccineCatalog::divoc_default();
    let today = Utc::now().date_naive();
    let ctx = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::Asia::Kolkata,
        default_country: CountryCode::parse("c", "IND").map_err(|e| anyhow::anyhow!("{e}"))?,
        today,
    };
    // A complete cache, as a projection that caught up leaves it (the query API does not trust a
    // cache without its marker).
    let keys = platform::read_models::CacheKeys::new(&prefix);
    redis::cmd("HSET")
        .arg(keys.marker())
        .arg("generation")
        .arg("bench")
        .arg("complete")
        .arg("1")
        .query_async::<()>(redis)
        .await?;
    let mut credentials = Vec::with_capacity(args.certificates);
    let mut ids = Vec::with_capacity(args.certificates);
    let bar = progress(args.certificates, "signing", args.json);
    for i in 0..args.certificates {
        let record = RecordVaccination::parse(&Person::new(i as u64, today, 60).certify_request(1, ""), &ctx)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let certificate = CertificateId::for_event(
            &domain::ids::IdKey::development(),
            EventId::derive("bench-verify", &i.to_string()),
        );
        let unsigned = unsigned_credential(&CredentialInput {
            profile: &profile,
            certificate_id: &certificate,
            record: &record,
            previous: &[],
            status: StatusSlot {
                list: 0,
                index: i as u64,
            },
            issued_at: Utc::now(),
        });
        let text = signer.sign(unsigned).await?.text;
        redis::pipe()
            .cmd("SET")
            .arg(keys.certificate(certificate.as_str()))
            .arg(&text)
            .cmd("HSET")
            .arg(keys.certificate_state(certificate.as_str()))
            .arg("status")
            .arg("active")
            .arg("statusList")
            .arg(0)
            .arg("statusIndex")
            .arg(i)
            .query_async::<()>(redis)
            .await?;
        credentials.push(text);
        ids.push(certificate.as_str().to_owned());
        bar.inc(1);
    }
    bar.finish();
    Ok(Signed {
        prefix,
        dir,
        did,
        base_url: profile.base_url,
        credentials,
        ids,
    })
}

/// The query API, in-process, with the public halves of the keys (it holds no private key) and
/// no per-client rate: the bench is one client measuring the service. Its URL, the holders'
/// access codes (as it computes them, from its default secret) and its shutdown token.
async fn start_query_api(
    kafka: &KafkaArgs,
    args: &VerifyArgs,
    signed: &Signed,
) -> anyhow::Result<(String, Arc<Vec<String>>, Shutdown)> {
    let public = signed.dir.with_extension("public");
    credentials::keys::publish(&signed.dir, &public)?;
    let mut config = <query_api::Config as clap::Parser>::parse_from([
        "query-api",
        "--issuer-public-keys",
        public.to_str().unwrap_or_default(),
    ]);
    config.rate.per_second = 1_000_000_000;
    config.rate.burst = 1_000_000_000;
    config.verify_concurrency = args.concurrency.max(1);
    config.kafka = kafka.clone();
    config.postgres = args.postgres.clone();
    config.clickhouse = args.clickhouse.clone();
    config.redis = RedisArgs {
        key_prefix: signed.prefix.clone(),
        ..args.redis.clone()
    };
    config.issuer.did = signed.did.into();
    config.issuer.public_base_url = signed.base_url.clone();
    config.listen = "127.0.0.1:0".parse()?;
    let shutdown = Shutdown::new();
    let app = query_api::Application::build(&config, shutdown.clone()).await?;
    let url = format!("http://{}", app.local_addr());
    let holder = query_api::access::HolderCodes::new(config.holder_code_secret.expose().as_bytes());
    let codes = Arc::new(signed.ids.iter().map(|id| holder.code(id)).collect());
    tokio::spawn(app.run_until_stopped());
    Ok((url, codes, shutdown))
}

/// The cold verifications, then the three endpoints under load.
async fn measure_all(
    args: &VerifyArgs,
    url: &str,
    signed: &Signed,
    codes: Arc<Vec<String>>,
) -> anyhow::Result<Measured> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let credentials = Arc::new(signed.credentials.clone());
    let distinct = verify_each(
        args,
        &client,
        url,
        &credentials,
        (0..credentials.len()).collect(),
        "verify (distinct)",
    )
    .await?;
    let numbered: Vec<usize> = (0..args.requests).collect();
    let load = |name| progress(args.requests, name, args.json);
    let health = measure(&numbered, args.concurrency, load("healthz"), |_| {
        let (client, url) = (client.clone(), url.to_owned());
        async move {
            let sent = Instant::now();
            client.get(format!("{url}/healthz")).send().await?.error_for_status()?;
            Ok(sent.elapsed())
        }
    })
    .await?;
    let verify = verify_each(args, &client, url, &credentials, numbered.clone(), "verify (cached)").await?;
    let ids = Arc::new(signed.ids.clone());
    let fetch = measure(&numbered, args.concurrency, load("certificate"), |i| {
        let (client, url, ids, codes) = (client.clone(), url.to_owned(), ids.clone(), codes.clone());
        let i = *i;
        async move {
            let sent = Instant::now();
            client
                .get(format!("{url}/v1/certificates/{}", ids[i % ids.len()]))
                .header("vaxtrail-access-code", &codes[i % ids.len()])
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            Ok(sent.elapsed())
        }
    })
    .await?;
    Ok(Measured {
        distinct,
        health,
        verify,
        fetch,
    })
}

/// `POST /v1/verify` of `credentials[i % len]` for each `i` of `order`, answers checked valid.
async fn verify_each(
    args: &VerifyArgs,
    client: &reqwest::Client,
    url: &str,
    credentials: &Arc<Vec<String>>,
    order: Vec<usize>,
    name: &str,
) -> anyhow::Result<Figures> {
    let bar = progress(order.len(), name, args.json);
    measure(&order, args.concurrency, bar, |i| {
        let (client, url, credentials) = (client.clone(), url.to_owned(), credentials.clone());
        let i = *i;
        async move {
            let sent = Instant::now();
            let answer: serde_json::Value = client
                .post(format!("{url}/v1/verify"))
                .header("content-type", "application/json")
                .body(credentials[i % credentials.len()].clone())
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::ensure!(
                answer["outcome"] == "valid",
                "a benchmark credential did not verify: {answer}"
            );
            Ok(sent.elapsed())
        }
    })
    .await
}

/// Removes the keys and the cached credentials.
async fn cleanup(signed: &Signed, redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&signed.dir);
    let _ = std::fs::remove_dir_all(signed.dir.with_extension("public"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", signed.prefix))
        .query_async(redis)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL").arg(&keys).query_async::<()>(redis).await?;
    }
    Ok(())
}

fn print(args: &VerifyArgs, m: &Measured) {
    let line = |f: &Figures| {
        json!({ "requests_per_second": f.events_per_second.round(), "p50_ms": f.p50.as_secs_f64() * 1e3,
                "p99_ms": f.p99.as_secs_f64() * 1e3, "ratio_to_healthz": f.events_per_second / m.health.events_per_second })
    };
    if args.json {
        println!(
            "{}",
            json!({ "certificates": args.certificates, "requests": args.requests, "concurrency": args.concurrency,
                    "healthz": line(&m.health), "verify_distinct": line(&m.distinct), "verify": line(&m.verify),
                    "certificate": line(&m.fetch) })
        );
        return;
    }
    println!(
        "{} requests per endpoint, {} in flight, {} distinct certificates",
        args.requests, args.concurrency, args.certificates
    );
    println!(
        "{:<30} {:>10} {:>9} {:>9} {:>8}",
        "", "req/s", "p50 ms", "p99 ms", "ratio"
    );
    for (name, f) in [
        ("GET /healthz (ceiling)", &m.health),
        ("POST /v1/verify, distinct", &m.distinct),
        ("POST /v1/verify, cached", &m.verify),
        ("GET /v1/certificates/{id}", &m.fetch),
    ] {
        println!(
            "{name:<30} {:>10.0} {:>9.2} {:>9.2} {:>8.2}",
            f.events_per_second,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.events_per_second / m.health.events_per_second
        );
    }
}
