//! Fault drill: the broker is killed with SIGKILL under a steady load and started again on the
//! same storage. While it is down the command API answers 503 (never 202 for what the broker does
//! not hold) and the load retries with the same Idempotency-Key; afterwards every accepted
//! vaccination is answered exactly once and every read model equals the log.

use std::time::Duration;

use vaxtrail_tests::{
    e2e::Deployment,
    faults::{Load, assert_nothing_lost},
    signer::Issuer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_under_load_and_started_again_loses_nothing() {
    let issuer = Issuer::new();
    let mut deployment = Deployment::on_own_cluster(&issuer).await;
    deployment.start_all().await;

    let load = Load::start(&deployment, 150, 0, 60);
    tokio::time::sleep(Duration::from_secs(4)).await;
    deployment.cluster().kill_broker().await;
    eprintln!("drill broker: SIGKILL under load");
    tokio::time::sleep(Duration::from_secs(5)).await;
    deployment.cluster().restart_broker().await;
    eprintln!("drill broker: started again on the same storage");
    load.finish().await;

    let found = assert_nothing_lost(&deployment, "broker SIGKILL").await;
    assert!(found.certificates > 150, "{found:?}");
    deployment.stop_all().await;
}
