//! Fault drills: PostgreSQL and ClickHouse restart under a steady load. Their data is durable, so
//! nothing is rebuilt: the projections wait for their store (retrying with backoff, `/readyz`
//! says so), the command API answers 503 to what it cannot check (the load retries with the same
//! Idempotency-Key), the query API answers 503 instead of "not found", and afterwards every read
//! model equals the log. The two drills share one deployment, one after the other.

use std::time::Duration;

use vaxtrail_tests::{
    e2e::Deployment,
    faults::{Load, assert_nothing_lost},
    signer::Issuer,
    stores::{OwnClickHouse, OwnPostgres},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_clickhouse_restarts_under_load_lose_nothing() {
    let issuer = Issuer::new();
    let postgres = OwnPostgres::start().await;
    let mut clickhouse = OwnClickHouse::start().await;
    let mut deployment = Deployment::on_own_cluster(&issuer).await;
    deployment.stack.postgres.url = postgres.url().parse().expect("a URL");
    deployment.stack.clickhouse.url = clickhouse.url();
    deployment.start_all().await;

    // PostgreSQL stops (a clean, fast shutdown) for a few seconds under load, then comes back.
    let load = Load::start(&deployment, 120, 0, 60);
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.halt("fast");
    eprintln!("drill postgres: stopped under load");
    tokio::time::sleep(Duration::from_secs(5)).await;
    postgres.resume().await;
    eprintln!("drill postgres: started again");
    load.finish().await;
    assert_nothing_lost(&deployment, "postgres restart").await;

    // ClickHouse restarts under load.
    let load = Load::start(&deployment, 120, 120, 60);
    tokio::time::sleep(Duration::from_secs(3)).await;
    clickhouse.restart().await;
    eprintln!("drill clickhouse: restarted under load");
    load.finish().await;
    let found = assert_nothing_lost(&deployment, "clickhouse restart").await;
    assert!(found.certificates > 240, "{found:?}");
    deployment.stop_all().await;
}
