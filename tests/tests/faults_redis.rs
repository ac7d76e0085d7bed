//! Fault drill: Redis restarts without persistence (as the local stack and docker-compose run it),
//! under a steady load, and the projectors restart after it. The cache's generation marker goes
//! with its data, so the running projection notices at its next batch (or within two seconds when
//! idle) and rebuilds the cache from the log's first record; the restarted projectors find no
//! marker and do the same, never resuming from the consumer group's position. Meanwhile the query
//! API does not trust the cache (it reads Postgres), and a vaccination answered before the restart
//! is never reported as merely accepted.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use vaxtrail_tests::{
    e2e::Deployment,
    eventually,
    faults::{Load, assert_nothing_lost},
    signer::Issuer,
    stores::OwnRedis,
};

/// A counter's value summed over its label sets, from a Prometheus page.
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_without_persistence_then_a_projector_restart_loses_nothing() {
    let issuer = Issuer::new();
    let mut redis = OwnRedis::start().await;
    let mut deployment = Deployment::on_own_cluster(&issuer).await;
    deployment.stack.redis.url = redis.url().parse().expect("a URL");
    deployment.start_all().await;
    let token = deployment.token("admin").await;
    let query = deployment.url("query-api");

    // Before: 150 people, their corrections and revocations, all answered.
    Load::start(&deployment, 150, 0, 200).finish().await;
    assert_nothing_lost(&deployment, "redis (before the fault)").await;
    let pool = deployment.stack.postgres.pool().expect("a pool");
    let issued_before: uuid::Uuid =
        sqlx::query_scalar("SELECT source_event_id FROM event_outcomes WHERE outcome = 'issued' LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("an issued event");

    // The fault, under load: Redis loses everything, then the projectors restart.
    let load = Load::start(&deployment, 100, 150, 60);
    let projectors = deployment
        .services
        .iter()
        .position(|s| s.name == "projectors")
        .expect("started");
    let metrics = format!("{}/metrics", deployment.url("projectors"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().await;
    eprintln!("drill redis: Redis restarted empty under load");
    // The running projection notices the lost store by itself.
    eventually(
        Duration::from_secs(60),
        "the running projection to notice the lost cache",
        || async {
            let page = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            (counter(&page, "vaxtrail_projection_store_lost_total") >= 1.0).then_some(())
        },
    )
    .await;
    // An event answered before the restart is still answered, never "accepted".
    let outcome: Value = eventually(Duration::from_secs(30), "the event lookup to answer", || async {
        let response = reqwest::Client::new()
            .get(format!("{query}/v1/events/{issued_before}"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?;
        (response.status() == StatusCode::OK).then_some(())?;
        response.json().await.ok()
    })
    .await;
    assert_eq!(outcome["status"], "issued", "{outcome}");
    deployment.services[projectors].stop().await;
    redis.restart().await;
    deployment.start("projectors", &[]).await;
    eprintln!("drill redis: Redis emptied again while the projectors were down; projectors restarted");
    load.finish().await;

    let found = assert_nothing_lost(&deployment, "redis").await;
    assert!(found.revoked > 0 && found.certificates > 250, "{found:?}");

    // Idle (no load, so no record arrives to show a partition is out of place): Redis empties
    // under the running projections, then again while the projectors are down. Each time every
    // partition is moved back to the store's position (the group's committed offsets are at the
    // log's end) and the cache rebuilt.
    redis.restart().await;
    eprintln!("drill redis: Redis restarted empty while idle");
    assert_nothing_lost(&deployment, "redis (emptied while idle)").await;
    let projectors = deployment
        .services
        .iter()
        .rposition(|s| s.name == "projectors")
        .expect("started");
    deployment.services[projectors].stop().await;
    redis.restart().await;
    deployment.start("projectors", &[]).await;
    eprintln!("drill redis: Redis emptied while the projectors were down, restarted idle");
    assert_nothing_lost(&deployment, "redis (restarted idle)").await;
    deployment.stop_all().await;
}
