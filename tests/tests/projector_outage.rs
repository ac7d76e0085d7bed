//! Postgres stops for 20 seconds while vaccinations stream in: the Postgres projection waits (its
//! readiness says so) and then catches up with nothing missing or doubled; the Redis and
//! ClickHouse projections are not held back meanwhile.

use std::time::{Duration, Instant};

use domain::{events::VaccinationPayload, values::Identity};
use vaxtrail_tests::{
    TestStack, deploy_local, eventually, fixtures, inprocess,
    signer::{self, EventWriter, Issuer, envelope, recipient},
};

/// Brings the stack's Postgres back if the test fails while it is stopped, so the tests after
/// this one still have it.
struct RestartOnDrop(bool);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::process::Command::new(vaxtrail_tests::repo_root().join("deploy/local/up"))
                .env("VAXTRAIL_SKIP_BUILD", "1")
                .status();
        }
    }
}

const BEFORE: usize = 60;
const DURING: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_pauses_only_the_postgres_projection_which_then_catches_up() {
    let mut stack = TestStack::new().await;
    // The local stack's key store is a schema of the same PostgreSQL server as the read models:
    // stopping it would stop the key store too, and so every projection and the signer (in
    // production the key store is a database of its own, SECURITY.md). This drill is about the
    // read models' database, so it runs in the clear (development allows it).
    stack.keystore.url = None;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);
    let projectors = inprocess::projectors(&stack, |_| {}).await;
    let ops = projectors.address;
    let pool = stack.postgres.pool().unwrap();
    let clickhouse = stack.clickhouse.client();
    let template = fixtures::divoc_record();
    let post = |i: usize| {
        let mut record = template.clone();
        let identity = format!("did:in.gov.uidai.aadhaar:{i:012}");
        record.recipient.identity = Identity::parse("identity", &identity).unwrap();
        envelope(
            &format!("v{i}"),
            recipient(&identity),
            VaccinationPayload::VaccinationRecorded(record),
        )
    };
    let postgres_count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&pool)
                .await
                .ok()
        }
    };
    let clickhouse_count = |table: &'static str| {
        let clickhouse = clickhouse.clone();
        async move {
            clickhouse
                .query(&format!("SELECT count() FROM {table} FINAL"))
                .fetch_one::<u64>()
                .await
                .ok()
        }
    };

    for i in 0..BEFORE {
        writer.append(&post(i)).await;
    }
    eventually(Duration::from_secs(60), "Postgres to hold the first events", || async {
        (postgres_count("certificates").await == Some(BEFORE as i64)).then_some(())
    })
    .await;

    deploy_local("down", &["postgres"]).await;
    let mut restore = RestartOnDrop(true);
    let stopped = Instant::now();
    assert!(
        postgres_count("vaccinations").await.is_none(),
        "Postgres is down (the stack's own server)"
    );
    for i in BEFORE..BEFORE + DURING {
        writer.append(&post(i)).await;
    }
    let total = (BEFORE + DURING) as u64;
    // Not held back: ClickHouse and Redis take everything while Postgres is down.
    eventually(
        Duration::from_secs(60),
        "ClickHouse to take every outcome while Postgres is down",
        || async { (clickhouse_count("certificate_outcomes").await == Some(total)).then_some(()) },
    )
    .await;
    let redis = stack
        .redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let last = format!(
        "{}event:{}",
        stack.redis.key_prefix,
        domain::ids::EventId::derive("tests", &format!("v{}", total - 1))
    );
    // Redis is a projection of its own: wait for it, independently of ClickHouse.
    eventually(
        Duration::from_secs(60),
        "Redis to take the last outcome while Postgres is down",
        || {
            let (mut redis, last) = (redis.clone(), last.clone());
            async move {
                let issued: Option<String> = redis::cmd("HGET")
                    .arg(&last)
                    .arg("issued")
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                issued.map(|_| ())
            }
        },
    )
    .await;
    assert!(
        postgres_count("vaccinations").await.is_none(),
        "Postgres was still down meanwhile"
    );
    // The Postgres projection says it waits.
    let readiness: serde_json::Value = eventually(
        Duration::from_secs(30),
        "readiness to name the waiting projection",
        || async {
            let body: serde_json::Value = reqwest::get(format!("http://{ops}/readyz"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            body["checks"]["projection-postgres"]
                .as_str()
                .is_some_and(|s| s.contains("waiting"))
                .then_some(body)
        },
    )
    .await;
    assert_eq!(readiness["status"], "not ready", "{readiness}");
    assert_eq!(readiness["checks"]["projection-redis"], "ok");

    // Twenty seconds down, then back: Postgres catches up, nothing missing or doubled.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed())).await;
    deploy_local("up", &[]).await;
    restore.0 = false;
    eventually(Duration::from_secs(90), "Postgres to catch up", || async {
        (postgres_count("certificates").await == Some(total as i64)
            && postgres_count("vaccinations").await == Some(total as i64)
            && postgres_count("event_outcomes").await == Some(total as i64))
        .then_some(())
    })
    .await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT source_event_id) FROM certificates")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(distinct, total as i64);
    eventually(Duration::from_secs(30), "readiness to recover", || async {
        let body: serde_json::Value = reqwest::get(format!("http://{ops}/readyz"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["checks"]["projection-postgres"] == "ok").then_some(())
    })
    .await;
    signer.stop_cleanly().await;
}
