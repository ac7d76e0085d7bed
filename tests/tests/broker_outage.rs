//! With the broker stopped, the command API answers 503 (never 202); once the broker is back, the
//! client's retry of the same request is accepted and the topic holds each event exactly once.
//! One test in its own binary: cargo runs test binaries one after another, so nothing else uses
//! the broker while it is down.

use std::time::Duration;

use platform::auth::Role;
use serde_json::Value;
use vaxtrail_tests::{TestAuth, TestStack, deploy_local, eventually, fixtures, inprocess, kafka};

async fn post(url: &str, auth: &TestAuth, key: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/vaccinations"))
        .header("Authorization", auth.bearer("cowin", &[Role::Facility]))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_gives_503_and_the_retry_after_it_loses_nothing() {
    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |config| config.produce_timeout_ms = 3_000).await;
    let (url, auth) = (api.url.clone(), &api.auth);

    let first = fixtures::divoc_certify_request()[0].clone();
    let mut second = first.clone();
    second["vaccination"]["dose"] = 2.into();
    assert_eq!(post(&url, auth, "before", &first).await, 202);

    deploy_local("down", &["broker"]).await;
    assert_eq!(
        post(&url, auth, "during", &second).await,
        503,
        "never 202 while the broker is down"
    );

    deploy_local("up", &[]).await;
    // The client retries the same request until the API accepts it.
    eventually(Duration::from_secs(60), "the retry to be accepted", || {
        let (url, second) = (url.clone(), second.clone());
        async move { (post(&url, auth, "during", &second).await == 202).then_some(()) }
    })
    .await;

    let topic = stack.topic("vaccination-events");
    let count = tokio::task::block_in_place(|| kafka::count(&stack.kafka.brokers, &topic, 3));
    assert_eq!(count, 2, "each accepted event exactly once, nothing lost");
}
