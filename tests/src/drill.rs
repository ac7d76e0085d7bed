//! The drills' shared steps: a live deployment loaded with demo people, waiting until every
//! projection has settled, a sample of certificates and a snapshot of what the query API answers
//! for them (to compare before and after a disaster, a replay or a restore), and a restore into
//! a new cluster.

use std::{collections::BTreeMap, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    TestStack,
    cluster::Cluster,
    e2e::{Deployment, last_json},
    eventually,
    signer::Issuer,
};

/// A count from the environment, or `default`.
pub fn count_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A deployment on a cluster of its own with the four services started.
pub async fn live_deployment(issuer: &Issuer) -> Deployment {
    let mut live = Deployment::on_own_cluster(issuer).await;
    live.start_all().await;
    live
}

/// Posts `people` demo people through the deployment's command API (`vaxctl demo`) and waits until
/// every vaccination is answered and every projection has reached the topics' ends.
pub async fn load(deployment: &Deployment, people: u64) {
    let started = std::time::Instant::now();
    let (command, query) = (deployment.url("command-api"), deployment.url("query-api"));
    deployment
        .vaxctl_ok(&[
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
    eventually(
        Duration::from_secs(1800),
        "every vaccination answered and projected",
        || settled(&deployment.stack),
    )
    .await;
    eprintln!(
        "drill: {people} people posted, signed and projected in {:?}",
        started.elapsed()
    );
}

/// What the query API answers, by request, for comparing before and after.
pub type Snapshot = BTreeMap<String, String>;

/// Offsets every projection stored, against the topics' high watermarks: `None` while any lags
/// or any vaccination has no outcome yet.
pub async fn settled(stack: &TestStack) -> Option<()> {
    let topics = stack.kafka.topics();
    let names = [topics.vaccination_events, topics.certificate_events];
    let marks = platform::log::watermarks_async(&stack.kafka.brokers, &names)
        .await
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
    let mut redis = stack
        .redis
        .client()
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let cached: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{}offsets", stack.redis.key_prefix))
        .query_async(&mut redis)
        .await
        .ok()?;
    let analytics: Vec<(String, i32, i64)> = stack
        .clickhouse
        .client()
        .query(
            "SELECT topic, partition, max(next_offset) FROM projection_positions
             WHERE generation = (SELECT argMax(generation, at) FROM projection_generation)
             GROUP BY topic, partition",
        )
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
pub async fn sample(stack: &TestStack) -> Vec<String> {
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
    assert!(changed.len() >= 2, "the demo supersedes and revokes some certificates");
    ids.extend(changed);
    ids
}

/// The query API's answers for the sample and the analytics totals (certificates read with an
/// administrator's token: they are personal data).
pub async fn snapshot(query: &str, token: &str, ids: &[String]) -> Snapshot {
    let client = reqwest::Client::new();
    let mut out = Snapshot::new();
    for id in ids {
        let response = client
            .get(format!("{query}/v1/certificates/{id}"))
            .bearer_auth(token)
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
        // The other formats, as logged beside the credential (or why there is none).
        for format in ["eu-dcc", "shc"] {
            let response = client
                .get(format!("{query}/v1/certificates/{id}/{format}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("the query API answers");
            let code = response.status();
            let body = response.text().await.expect("a body");
            out.insert(format!("{id} {format}"), format!("{code} {body}"));
        }
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

pub fn assert_same(before: &Snapshot, after: &Snapshot, when: &str) {
    assert_eq!(before.len(), after.len());
    for (what, answer) in before {
        assert_eq!(Some(answer), after.get(what), "{when}: {what} differs");
    }
}

/// Replays a projection with `vaxctl replay --json`; its figures.
pub async fn replay(deployment: &Deployment, projection: &str) -> Value {
    let out = deployment
        .vaxctl_ok(&["replay", "--projection", projection, "--json"])
        .await;
    let figures = last_json(&out);
    assert_eq!(figures["swapped"], true, "{projection}: {figures}");
    eprintln!("drill figure: replay {projection}: {figures}");
    figures
}

/// Restores a backup into a new empty cluster, with a deployment (nothing started) on it.
pub async fn restore(live: &Deployment, dir: &str, issuer: &Issuer) -> Restored {
    let cluster = Cluster::start_empty().await;
    let mut stack = TestStack::new().await;
    stack.kafka.brokers = cluster.brokers.clone();
    stack.kafka.schema_registry_url = cluster.registry_url.clone();
    stack.kafka.topic_prefix = live.stack.kafka.topic_prefix.clone();
    // The key store lives outside the log and outlasts a cluster: the restored deployment opens
    // what the live one sealed with the same keys.
    stack.keystore = live.stack.keystore.clone();
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
pub struct Restored {
    pub deployment: Deployment,
    _cluster: Cluster,
}

impl Restored {
    /// Replays every projection into the deployment's stores and starts a query API on them.
    pub async fn serve(&mut self) {
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
