//! Fault drill: the signer dies (aborts, as SIGKILL would end it) while it writes a checkpoint,
//! and again while it takes over a partition and rebuilds its state from the log, under a steady
//! load. Each replacement runs in a consumer group of its own (correctness never rests on the
//! group; Tansu 0.6's coordinator can stall a group with a dead member, README "Known limits").
//! Afterwards every vaccination is answered exactly once, the chains and checkpoints verify, and
//! every read model equals the log.

use std::time::Duration;

use vaxtrail_tests::{
    e2e::Deployment,
    faults::{Load, assert_nothing_lost},
    signer::Issuer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signer_killed_at_a_checkpoint_and_at_a_handover_loses_and_doubles_nothing() {
    let issuer = Issuer::new();
    let mut deployment = Deployment::on_own_cluster(&issuer).await;
    for name in ["command-api", "projectors", "query-api"] {
        deployment.start(name, &[]).await;
    }
    let load = Load::start(&deployment, 150, 0, 60);

    // Dies at its first checkpoint, with the checkpoint record queued and not acknowledged.
    let first = deployment.launch(
        "signer-worker",
        &[
            ("VAXTRAIL_CRASH_POINT", "checkpoint"),
            ("VAXTRAIL_CHECKPOINT_EVERY", "40"),
            ("VAXTRAIL_SIGNER_GROUP", "signer-1"),
        ],
    );
    let status = deployment.services[first].exited(Duration::from_secs(300)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the signer aborts at its checkpoint: {status:?}"
    );
    eprintln!("drill signer: aborted while writing a checkpoint");

    // Its successor dies halfway through rebuilding a partition it took over.
    let second = deployment.launch(
        "signer-worker",
        &[
            ("VAXTRAIL_CRASH_POINT", "handover"),
            ("VAXTRAIL_SIGNER_GROUP", "signer-2"),
        ],
    );
    let status = deployment.services[second].exited(Duration::from_secs(300)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the signer aborts in the handover: {status:?}"
    );
    eprintln!("drill signer: aborted while rebuilding a partition it took over");

    let last = deployment.launch(
        "signer-worker",
        &[
            ("VAXTRAIL_CHECKPOINT_EVERY", "40"),
            ("VAXTRAIL_SIGNER_GROUP", "signer-3"),
        ],
    );
    deployment.ready(last).await;
    load.finish().await;

    let found = assert_nothing_lost(&deployment, "signer SIGKILL").await;
    // The lag gauge the alert rules read, at zero once everything is answered.
    let metrics = format!("http://{}/metrics", deployment.services[last].address);
    vaxtrail_tests::eventually(Duration::from_secs(30), "the signer's lag gauge at 0", || async {
        let page = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        let lags: Vec<f64> = page
            .lines()
            .filter(|l| l.starts_with("vaxtrail_signer_lag{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!lags.is_empty() && lags.iter().all(|&lag| lag == 0.0)).then_some(())
    })
    .await;
    assert!(found.certificates > 150, "{found:?}");
    deployment.stop_all().await;
}
