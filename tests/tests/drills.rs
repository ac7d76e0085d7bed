//! The operator's drills, end to end, with the four services as processes and `vaxctl` as the
//! operator runs it. One load (`vaxctl demo`, 10,000 people by default: `VAXTRAIL_DRILL_PEOPLE`)
//! serves three drills in turn:
//! 1. disaster: the Postgres schema dropped, Redis flushed, the ClickHouse database dropped; the
//!    query API answers 503 meanwhile (never a false answer); `vaxctl replay` rebuilds each, and
//!    the query API answers exactly as before (a sample of certificates, their status and
//!    verification, and the analytics totals);
//! 2. backup and restore: `vaxctl backup` while the services run, `backup verify`, a restore into a
//!    new empty cluster (broker and registry), a replay of every projection into new stores; a
//!    query API there answers exactly as the original did, and `vaxctl audit verify` passes;
//! 3. tamper: one record of `certificate-events` altered in a copy of the backup, its manifest
//!    sealed again (so `backup verify` cannot tell); restored, `vaxctl audit verify` fails and names
//!    the altered record's position.

use std::{collections::BTreeMap, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;
use vaxtrail_tests::{
    TestStack,
    e2e::{Cluster, Deployment, Scratch, last_json},
    eventually,
    signer::Issuer,
};

/// What the query API answers, by request, for comparing before and after.
type Snapshot = BTreeMap<String, String>;

/// Offsets every projection stored, against the topics' high watermarks: `None` while any lags
/// or any vaccination has no outcome yet.
async fn settled(stack: &TestStack) -> Option<()> {
    let (brokers, topics) = (stack.kafka.brokers.clone(), stack.kafka.topics());
    let names = vec![topics.vaccination_events.clone(), topics.certificate_events.clone()];
    let marks = tokio::task::spawn_blocking(move || platform::log::watermarks(&brokers, &names))
        .await
        .ok()?
        .ok()?;
    let pool = stack.postgres.pool().ok()?;
    let unanswered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM vaccinations v
         WHERE NOT EXISTS (SELECT 1 FROM event_outcomes o WHERE o.source_event_id = v.event_id)",
    )
    .fetch_one(&pool)
    .await
    .ok()?;
    let postgres: Vec<(String, i32, i64)> =
        sqlx::query_as("SELECT topic, partition, next_offset FROM projection_offsets")
            .fetch_all(&pool)
            .await
            .ok()?;
    let mut redis = stack.redis.client().ok()?.get_multiplexed_async_connection().await.ok()?;
    let cached: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{}offsets", stack.redis.key_prefix))
        .query_async(&mut redis)
        .await
        .ok()?;
    let analytics: Vec<(String, i32, i64)> = stack
        .clickhouse
        .client()
        .query("SELECT topic, partition, max(next_offset) FROM projection_offsets GROUP BY topic, partition")
        .fetch_all()
        .await
        .ok()?;
    let all_there = marks.iter().filter(|m| m.high > 0).all(|m| {
        let at = |rows: &[(String, i32, i64)]| {
            rows.iter()
                .any(|(t, p, o)| *t == m.topic && *p == m.partition && *o == m.high)
        };
        at(&postgres) && at(&analytics) && cached.get(&format!("{}:{}", m.topic, m.partition)) == Some(&m.high)
    });
    (unanswered == 0 && all_there).then_some(())
}

/// The sample: every 100th certificate, and the first 20 that are superseded or revoked.
async fn sample(stack: &TestStack) -> Vec<String> {
    let pool = stack.postgres.pool().expect("a pool");
    let mut ids: Vec<String> = sqlx::query_scalar(
        "SELECT certificate_id FROM (SELECT certificate_id, row_number() OVER (ORDER BY certificate_id) AS n
         FROM certificates) s WHERE n % 100 = 1",
    )
    .fetch_all(&pool)
    .await
    .expect("certificates");
    let changed: Vec<String> = sqlx::query_scalar(
        "SELECT certificate_id FROM certificates WHERE status <> 'active' ORDER BY certificate_id LIMIT 20",
    )
    .fetch_all(&pool)
    .await
    .expect("certificates");
    assert!(
        changed.len() >= 2,
        "the demo supersedes and revokes some certificates"
    );
    ids.extend(changed);
    ids
}

/// The query API's answers for the sample and the analytics totals.
async fn snapshot(query: &str, ids: &[String]) -> Snapshot {
    let client = reqwest::Client::new();
    let mut out = Snapshot::new();
    for id in ids {
        let response = client
            .get(format!("{query}/v1/certificates/{id}"))
            .send()
            .await
            .expect("the query API answers");
        assert_eq!(response.status(), StatusCode::OK, "certificate {id}");
        let standing = response
            .headers()
            .get("Vaxtrail-Certificate-Status")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let credential = response.text().await.expect("a body");
        let status = client
            .get(format!("{query}/v1/certificates/{id}/status"))
            .send()
            .await
            .expect("status")
            .text()
            .await
            .expect("a body");
        let verdict = client
            .post(format!("{query}/v1/verify"))
            .header("Content-Type", "application/json")
            .body(credential.clone())
            .send()
            .await
            .expect("verify")
            .text()
            .await
            .expect("a body");
        out.insert(format!("{id} credential"), credential);
        out.insert(format!("{id} header"), standing);
        out.insert(format!("{id} status"), status);
        out.insert(format!("{id} verify"), verdict);
    }
    for path in [
        "/v1/analytics/doses?by=vaccine",
        "/v1/analytics/doses?by=state",
        "/v1/analytics/doses?by=dose",
        "/v1/analytics/doses?by=ageBand",
        "/v1/analytics/certificates?by=outcome",
    ] {
        let response = client.get(format!("{query}{path}")).send().await.expect("analytics");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        out.insert(path.to_owned(), response.text().await.expect("a body"));
    }
    out
}

fn assert_same(before: &Snapshot, after: &Snapshot, when: &str) {
    assert_eq!(before.len(), after.len());
    for (what, answer) in before {
        assert_eq!(Some(answer), after.get(what), "{when}: {what} differs");
    }
}

/// Replays a projection with `vaxctl replay --json`; its figures.
async fn replay(deployment: &Deployment, projection: &str) -> Value {
    let out = deployment
        .vaxctl_ok(&["replay", "--projection", projection, "--json"])
        .await;
    let figures = last_json(&out);
    assert_eq!(figures["swapped"], true, "{projection}: {figures}");
    eprintln!("drill figure: replay {projection}: {figures}");
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disaster_backup_restore_and_tamper_drills() {
    let people: u64 = std::env::var("VAXTRAIL_DRILL_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let issuer = Issuer::new();
    let mut live = Deployment::new(TestStack::new().await, &issuer).await;
    live.start_all().await;
    let (command, query) = (live.url("command-api"), live.url("query-api"));

    // The load, through the command API as vaccination systems post it.
    let started = std::time::Instant::now();
    live.vaxctl_ok(&[
        "demo",
        "--count",
        &people.to_string(),
        "--rate",
        "5000",
        "--command-url",
        &command,
        "--query-url",
        &query,
    ])
    .await;
    eventually(Duration::from_secs(1200), "every vaccination answered and projected", || {
        settled(&live.stack)
    })
    .await;
    eprintln!("drill: {people} people posted, signed and projected in {:?}", started.elapsed());
    let ids = sample(&live.stack).await;
    let before = snapshot(&query, &ids).await;
    let vaccinations: i64 = sqlx::query_scalar("SELECT count(*) FROM vaccinations")
        .fetch_one(&live.stack.postgres.pool().expect("a pool"))
        .await
        .expect("a count");
    assert!(vaccinations >= people as i64, "{vaccinations} vaccinations for {people} people");

    // 1. Disaster: every read model lost at once.
    let admin = sqlx::PgPool::connect(live.stack.postgres.url.expose()).await.expect("postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", live.stack.postgres.schema)))
        .execute(&admin)
        .await
        .expect("dropping the schema");
    live.stack.flush_redis().await;
    live.stack
        .clickhouse
        .client()
        .with_database("default")
        .query(&format!("DROP DATABASE {}", live.stack.clickhouse.database))
        .execute()
        .await
        .expect("dropping the database");
    let lost = reqwest::get(format!("{query}/v1/certificates/{}", ids[0])).await.expect("an answer");
    assert_eq!(
        lost.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "with its stores gone the query API says so, never 'not found'"
    );
    for projection in ["postgres", "redis", "clickhouse"] {
        let figures = replay(&live, projection).await;
        assert!(figures["records"].as_u64().unwrap_or(0) >= 2 * people, "{figures}");
    }
    let after = snapshot(&query, &ids).await;
    assert_same(&before, &after, "after the disaster replays");

    // 2. Backup while the services run, then a restore into a new, empty cluster.
    let backup = Scratch::new("backup");
    let dir = backup.0.join("b");
    let dir_text = dir.display().to_string();
    let figures = last_json(&live.vaxctl_ok(&["backup", "--out", &dir_text, "--json"]).await);
    eprintln!("drill figure: backup: {figures}");
    live.vaxctl_ok(&["backup", "verify", &dir_text]).await;

    let mut restored_to = restore(&live, &dir_text, &issuer).await;
    restored_to.serve().await;
    let restored_query = restored_to.url("query-api");
    let restored = snapshot(&restored_query, &ids).await;
    assert_same(&before, &restored, "restored into a new cluster");
    // The issuer's published keys, as an auditor keeps them.
    let did = backup.0.join("did.json").display().to_string();
    let document = reqwest::get(format!("{restored_query}/.well-known/did.json"))
        .await
        .expect("the DID document")
        .text()
        .await
        .expect("a body");
    std::fs::write(&did, document).expect("writable");
    let audit = last_json(
        &restored_to
            .vaxctl_ok(&["audit", "verify", "--did-document", &did, "--json"])
            .await,
    );
    assert_eq!(audit["ok"], true, "{audit}");
    assert!(audit["outcomes"].as_u64().unwrap_or(0) >= people, "{audit}");
    drop(restored_to);

    // 3. Tamper: one record of certificate-events altered in a copy of the backup, sealed again.
    let forged = backup.0.join("forged");
    let copied = std::process::Command::new("cp")
        .args(["-r", &dir_text, &forged.display().to_string()])
        .status()
        .expect("cp runs");
    assert!(copied.success());
    let mut altered = None;
    vaxctl::backup::rewrite_partition(&forged, "certificate-events", 0, |records| {
        // The second outcome: it has a successor whose link must then break.
        let (offset, value) = &mut records[1];
        let bytes = value.as_mut().expect("a value");
        let at = bytes
            .windows(8)
            .position(|w| w == b"\"name\":\"")
            .expect("the credential names its subject")
            + 8;
        bytes[at] = if bytes[at] == b'X' { b'Y' } else { b'X' };
        altered = Some(*offset);
    })
    .expect("rewriting the copy");
    let altered = altered.expect("a record was altered");
    let forged_text = forged.display().to_string();
    live.vaxctl_ok(&["backup", "verify", &forged_text]).await;
    let tampered = restore(&live, &forged_text, &issuer).await;
    let out = tampered
        .vaxctl(&["audit", "verify", "--did-document", &did, "--partition", "0"])
        .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the audit fails on a tampered log: {said}");
    assert!(
        said.contains(&format!("partition 0 offset {}", altered + 1)) && said.contains(&format!("(offset {altered})")),
        "the audit names the altered record (offset {altered}): {said}"
    );
}

/// Restores a backup into a new empty cluster, with a deployment (nothing started) on it.
async fn restore(live: &Deployment, dir: &str, issuer: &Issuer) -> Restored {
    let cluster = Cluster::start_empty().await;
    let mut stack = TestStack::new().await;
    stack.kafka.brokers = cluster.brokers.clone();
    stack.kafka.schema_registry_url = cluster.registry_url.clone();
    stack.kafka.topic_prefix = live.stack.kafka.topic_prefix.clone();
    let deployment = Deployment::new(stack, issuer).await;
    let figures = last_json(&deployment.vaxctl_ok(&["restore", "--from", dir, "--json"]).await);
    assert_eq!(figures["ok"], true, "{figures}");
    eprintln!("drill figure: restore: {figures}");
    Restored {
        deployment,
        _cluster: cluster,
    }
}

/// A deployment on a restored cluster (which lives as long as it does).
struct Restored {
    deployment: Deployment,
    _cluster: Cluster,
}

impl Restored {
    /// Replays every projection into the deployment's stores and starts a query API on them.
    async fn serve(&mut self) {
        for projection in ["postgres", "redis", "clickhouse"] {
            replay(&self.deployment, projection).await;
        }
        self.deployment.start("query-api", &[]).await;
    }
}

impl std::ops::Deref for Restored {
    type Target = Deployment;
    fn deref(&self) -> &Deployment {
        &self.deployment
    }
}
