//! With the broker stopped, the command API answers 503 (never 202); once the broker is back, the
//! client's retry of the same request is accepted and the topic holds each event exactly once.
//! One test in its own binary: cargo runs test binaries one after another, so nothing else uses
//! the broker while it is down.

use std::time::Duration;

use clap::Parser;
use platform::{Shutdown, auth::Role};
use serde_json::Value;
use vaxtrail_tests::{TempFile, TestAuth, TestStack, eventually, fixtures, kafka, repo_root};

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

async fn local(script: &str, args: &[&str]) {
    let status = tokio::process::Command::new(repo_root().join("deploy/local").join(script))
        .args(args)
        .env("VAXTRAIL_SKIP_BUILD", "1")
        .status()
        .await
        .unwrap();
    assert!(status.success(), "deploy/local/{script} {args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_gives_503_and_the_retry_after_it_loses_nothing() {
    let stack = TestStack::new().await;
    stack.create_event_topics().await;
    avro::client::RegistryClient::new(&stack.kafka.schema_registry_url)
        .register_event_schemas(&stack.kafka.topic_prefix)
        .await
        .unwrap();
    let list = TempFile::with(&fixtures::master_list_with_covax());
    let auth = TestAuth::new();
    let mut config = command_api::Config::parse_from(["command-api"]);
    (config.kafka, config.redis, config.listen) =
        (stack.kafka.clone(), stack.redis.clone(), "127.0.0.1:0".parse().unwrap());
    config.vaccine_list = Some(list.0.clone());
    config.auth.jwks = Some(auth.jwks.path());
    config.produce_timeout_ms = 3_000;
    let shutdown = Shutdown::new();
    let app = command_api::Application::build(&config, shutdown.clone())
        .await
        .unwrap();
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());

    let first = fixtures::divoc_certify_request()[0].clone();
    let mut second = first.clone();
    second["vaccination"]["dose"] = 2.into();
    assert_eq!(post(&url, &auth, "before", &first).await, 202);

    local("down", &["broker"]).await;
    assert_eq!(
        post(&url, &auth, "during", &second).await,
        503,
        "never 202 while the broker is down"
    );

    local("up", &[]).await;
    // The client retries the same request until the API accepts it.
    eventually(Duration::from_secs(60), "the retry to be accepted", || {
        let (url, auth, second) = (url.clone(), &auth, second.clone());
        async move { (post(&url, auth, "during", &second).await == 202).then_some(()) }
    })
    .await;

    let topic = stack.topic("vaccination-events");
    let count = tokio::task::block_in_place(|| kafka::count(&stack.kafka.brokers, &topic, 3));
    assert_eq!(count, 2, "each accepted event exactly once, nothing lost");
    shutdown.cancel();
}
