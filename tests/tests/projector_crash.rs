//! Kill -9 the projectors mid-batch several times while 5,000 vaccinations stream in and are
//! signed: afterwards Postgres, Redis and ClickHouse (`FINAL`) hold every outcome once, no row
//! missing or doubled.

use std::{process::Stdio, time::Duration};

use avro::certificate::CertificateBody;
use domain::{events::VaccinationPayload, values::Identity};
use vaxtrail_tests::{
    TestStack, bin_dir, eventually, fixtures, kafka,
    signer::{self, EventWriter, Issuer, envelope, read_certificates, recipient},
};

const EVENTS: usize = 5_000;

/// A projectors process on the test's topics and stores. Each run gets consumer groups of its
/// own: positions come from the stores, and Tansu 0.6's coordinator stalls groups with dead
/// members (README, known limits).
fn projectors(stack: &TestStack, run: usize) -> tokio::process::Child {
    tokio::process::Command::new(bin_dir().join("projectors"))
        .env("VAXTRAIL_LISTEN", "127.0.0.1:0")
        .env("VAXTRAIL_TOPIC_PREFIX", &stack.kafka.topic_prefix)
        .env("VAXTRAIL_PARTITIONS", stack.kafka.partitions.to_string())
        .env("VAXTRAIL_DATABASE_SCHEMA", &stack.postgres.schema)
        .env("VAXTRAIL_REDIS_KEY_PREFIX", &stack.redis.key_prefix)
        .env("VAXTRAIL_CLICKHOUSE_DATABASE", &stack.clickhouse.database)
        .env("VAXTRAIL_KEYSTORE_SCHEMA", &stack.keystore.schema)
        .env("VAXTRAIL_PROJECTOR_GROUP_PREFIX", format!("projector-{run}-"))
        .env("VAXTRAIL_PROJECTOR_BATCH_SIZE", "200")
        .env("VAXTRAIL_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("projectors was built (deploy/local/up builds every binary)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_mid_batch_leaves_no_row_missing_or_doubled() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);
    let template = fixtures::divoc_record();
    let stream = tokio::spawn(async move {
        for i in 0..EVENTS {
            let mut record = template.clone();
            let identity = format!("did:in.gov.uidai.aadhaar:{i:012}");
            record.recipient.identity = Identity::parse("identity", &identity).unwrap();
            let event = envelope(
                &format!("v{i}"),
                recipient(&identity),
                VaccinationPayload::VaccinationRecorded(record),
            );
            writer.append(&event).await;
        }
    });

    let pool = stack.postgres.pool().unwrap();
    let applied = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM vaccinations")
                .fetch_one(&pool)
                .await
                .unwrap_or(0)
        }
    };
    // Three runs killed with SIGKILL part-way, then one that finishes.
    for (run, until) in [(1, 800), (2, 1_800), (3, 3_000)] {
        let mut child = projectors(&stack, run);
        eventually(Duration::from_secs(180), "the projectors to apply more", || async {
            (applied().await >= until).then_some(())
        })
        .await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    let mut last = projectors(&stack, 4);
    stream.await.unwrap();

    let records = read_certificates(&stack, Duration::from_secs(600), |r| {
        r.iter()
            .filter(|r| matches!(r.envelope.body, CertificateBody::Outcome { .. }))
            .count()
            == EVENTS
    })
    .await;
    signer.stop_cleanly().await;
    let outcomes = EVENTS as i64;

    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap_or(-1) }
    };
    eventually(
        Duration::from_secs(120),
        "Postgres to hold every event and outcome",
        || async {
            (count("SELECT count(*) FROM vaccinations").await == EVENTS as i64
                && count("SELECT count(*) FROM certificates").await == outcomes
                && count("SELECT count(*) FROM event_outcomes").await == outcomes)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        count("SELECT count(DISTINCT source_event_id) FROM certificates").await,
        outcomes
    );

    let clickhouse = stack.clickhouse.client();
    eventually(
        Duration::from_secs(120),
        "ClickHouse to hold every event and outcome once",
        || {
            let clickhouse = clickhouse.clone();
            async move {
                let events: u64 = clickhouse
                    .query("SELECT count() FROM vaccinations FINAL")
                    .fetch_one()
                    .await
                    .ok()?;
                let outcomes: u64 = clickhouse
                    .query("SELECT count() FROM certificate_outcomes FINAL")
                    .fetch_one()
                    .await
                    .ok()?;
                (events == EVENTS as u64 && outcomes == EVENTS as u64).then_some(())
            }
        },
    )
    .await;
    let distinct: u64 = clickhouse
        .query("SELECT uniqExact(source_event_id) FROM certificate_outcomes FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(distinct, EVENTS as u64);
    // The dashboard's daily aggregates count each event once, whatever was redelivered.
    let daily: u64 = clickhouse
        .query("SELECT toUInt64(sum(n)) FROM (SELECT uniqExactMerge(events) AS n FROM daily_vaccinations GROUP BY vaccination_date, programme, event_type, vaccine, dose, state, district, gender, age_band)")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(daily, EVENTS as u64, "vaccinations in the daily aggregates");
    let daily: u64 = clickhouse
        .query("SELECT toUInt64(sum(n)) FROM (SELECT uniqExactMerge(outcomes) AS n FROM daily_outcomes GROUP BY day, outcome, rule)")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(daily, EVENTS as u64, "outcomes in the daily aggregates");

    // Redis: every certificate is there, with its credential, and the offsets reached the ends.
    let mut redis = stack
        .redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = stack.redis.key_prefix.clone();
    let certificate_events = stack.topic("certificate-events");
    let end = kafka::count(&stack.kafka.brokers, &certificate_events, stack.kafka.partitions);
    eventually(
        Duration::from_secs(60),
        "Redis offsets to reach the end of certificate-events",
        || {
            let mut redis = redis.clone();
            let (prefix, topic) = (prefix.clone(), certificate_events.clone());
            async move {
                let offsets: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
                    .arg(format!("{prefix}offsets"))
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                let sum: i64 = offsets
                    .iter()
                    .filter(|(k, _)| k.starts_with(&format!("{topic}:")))
                    .map(|(_, v)| v)
                    .sum();
                (sum == end).then_some(())
            }
        },
    )
    .await;
    let mut pipe = redis::pipe();
    for r in &records {
        if let CertificateBody::Outcome {
            credential: Some(_),
            event,
            ..
        } = &r.envelope.body
            && let domain::events::CertificateOutcome::CertificateIssued { certificate_id, .. } = &event.outcome
        {
            pipe.cmd("EXISTS").arg(format!("{prefix}cert:{certificate_id}"));
        }
    }
    let present: Vec<i64> = pipe.query_async(&mut redis).await.unwrap();
    assert_eq!(present.len(), EVENTS);
    assert!(
        present.iter().all(|p| *p == 1),
        "{} certificates missing from Redis",
        present.iter().filter(|p| **p == 0).count()
    );
    last.start_kill().unwrap();
}
