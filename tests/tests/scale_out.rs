//! Scale-out, end to end: two signer-worker processes and two projectors processes, each pair in
//! one consumer group, share the partitions while `vaxctl demo` posts through the command API.
//! Mid-stream one signer and one projectors process are killed (`kill`, SIGTERM: what an operator
//! or an orchestrator scaling down sends). The survivors take the partitions over, and every
//! vaccination still gets exactly one outcome (`vaxctl audit verify`), every read model holds
//! every event once.
//!
//! SIGKILL with the survivor in the same group is left to `signer_crash.rs` and
//! `projector_crash.rs`: Tansu 0.6's coordinator can stall a group with a dead member for good
//! (README, known limits), which a real Kafka cluster does not.

use std::time::Duration;

use vaxtrail_tests::{
    TestStack,
    e2e::{Cluster, Deployment},
    eventually,
    signer::Issuer,
};

const PEOPLE: u64 = 400;

/// A counter's value summed over its label sets, from a Prometheus text page.
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .map(|r| r.text())
        .expect("metrics")
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_signers_and_two_projectors_share_the_work_and_survive_losing_one() {
    let issuer = Issuer::new();
    let cluster = Cluster::start_empty().await;
    let mut stack = TestStack::new().await;
    stack.kafka.partitions = 4;
    stack.kafka.brokers = cluster.brokers.clone();
    stack.kafka.schema_registry_url = cluster.registry_url.clone();
    let mut deployment = Deployment::new(stack, &issuer).await;
    deployment.start("command-api", &[]).await;
    let signers = [
        deployment.start("signer-worker", &[]).await,
        deployment.start("signer-worker", &[]).await,
    ];
    let projectors = [
        deployment.start("projectors", &[]).await,
        deployment.start("projectors", &[]).await,
    ];
    deployment.start("query-api", &[]).await;
    let (command, query) = (deployment.url("command-api"), deployment.url("query-api"));

    // The load, in the background.
    let env = deployment.env();
    let demo = tokio::process::Command::new(vaxtrail_tests::bin_dir().join("vaxctl"))
        .envs(env)
        .args(["demo", "--count", &PEOPLE.to_string(), "--rate", "40"])
        .args(["--command-url", &command, "--query-url", &query])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("vaxctl was built");

    // Both signers work before one goes.
    let addresses: Vec<String> = signers
        .iter()
        .map(|&i| deployment.services[i].address.clone())
        .collect();
    eventually(Duration::from_secs(180), "both signers to have answered events", || {
        let addresses = addresses.clone();
        async move {
            let mut each = Vec::new();
            for address in &addresses {
                each.push(counter(&metrics(address).await, "vaxtrail_signer_outcomes_total"));
            }
            each.iter().all(|n| *n >= 20.0).then_some(())
        }
    })
    .await;
    let projector_addresses: Vec<String> = projectors
        .iter()
        .map(|&i| deployment.services[i].address.clone())
        .collect();
    eventually(
        Duration::from_secs(180),
        "both projectors processes to apply records",
        || {
            let addresses = projector_addresses.clone();
            async move {
                let mut each = Vec::new();
                for address in &addresses {
                    each.push(counter(&metrics(address).await, "vaxtrail_projection_applied_total"));
                }
                each.iter().all(|n| *n > 0.0).then_some(())
            }
        },
    )
    .await;

    // One of each goes, mid-stream.
    deployment.services[signers[0]].stop().await;
    deployment.services[projectors[0]].stop().await;

    let status = tokio::time::timeout(Duration::from_secs(600), demo.wait_with_output())
        .await
        .expect("the demo finishes")
        .expect("it runs");
    assert!(
        status.status.success(),
        "vaxctl demo: {}",
        String::from_utf8_lossy(&status.stderr)
    );

    // Exactly one outcome per vaccination, and the chain intact.
    let audit = deployment.audited(Duration::from_secs(300)).await;
    let pool = deployment.stack.postgres.pool().expect("a pool");
    // Every outcome record projected once (a correction's event has two: issued and superseded).
    let (answered, outcomes): (i64, i64) = eventually(Duration::from_secs(300), "the read models to catch up", || {
        let pool = pool.clone();
        let expected = audit["outcomes"].as_i64().unwrap_or(-1);
        async move {
            let counts: (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(DISTINCT source_event_id) FROM event_outcomes), (SELECT count(*) FROM event_outcomes)",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (counts.1 == expected).then_some(counts)
        }
    })
    .await;
    let posted: i64 = sqlx::query_scalar("SELECT count(*) FROM vaccinations")
        .fetch_one(&pool)
        .await
        .expect("a count");
    assert_eq!(posted, answered, "every vaccination has its outcome: {audit}");
    assert!(outcomes >= answered);
    deployment.stop_all().await;
}
