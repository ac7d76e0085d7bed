//! Each service starts from its typed config, serves /healthz, /readyz (checking its real
//! dependencies) and /metrics, and stops cleanly on SIGTERM.

use std::{process::Stdio, time::Duration};

use clap::Parser;
use vaxtrail_tests::{TestStack, bin_dir, eventually, inprocess};

/// Parses a service config from no flags, so the defaults and the environment apply.
fn config<C: Parser>() -> C {
    C::parse_from(["service"])
}

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the service answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn assert_ops_endpoints(address: std::net::SocketAddr) {
    let (status, body) = get(format!("http://{address}/healthz")).await;
    assert_eq!(status, 200, "{body}");
    // Ready once every dependency answers (the command API also registers its schemas first).
    eventually(
        Duration::from_secs(30),
        &format!("{address} to be ready"),
        || async move { (get(format!("http://{address}/readyz")).await.0 == 200).then_some(()) },
    )
    .await;
    let (status, body) = get(format!("http://{address}/metrics")).await;
    assert_eq!(status, 200);
    assert!(body.contains("vaxtrail_readiness_checks_total{"), "{body}");
}

#[tokio::test]
async fn every_service_is_ready_when_its_dependencies_are_up() {
    let stack = TestStack::new().await;
    stack.create_event_topics().await;
    let listen = "127.0.0.1:0".parse().unwrap();

    let auth = vaxtrail_tests::TestAuth::new();
    let mut command = config::<command_api::Config>();
    (command.kafka, command.redis, command.listen) = (stack.kafka.clone(), stack.redis.clone(), listen);
    command.auth.jwks = Some(auth.jwks.path());
    let command = inprocess::start::<command_api::Application>(&command).await;

    let issuer = vaxtrail_tests::signer::Issuer::new();
    let mut signer =
        signer_worker::Config::parse_from(["signer-worker", "--issuer-keys", &issuer.dir.display().to_string()]);
    (signer.kafka, signer.listen) = (stack.kafka.clone(), listen);
    let signer = inprocess::start::<signer_worker::Application>(&signer).await;

    let mut projectors = config::<projectors::Config>();
    (
        projectors.kafka,
        projectors.postgres,
        projectors.redis,
        projectors.clickhouse,
        projectors.listen,
    ) = (
        stack.kafka.clone(),
        stack.postgres.clone(),
        stack.redis.clone(),
        stack.clickhouse.clone(),
        listen,
    );
    let projectors = inprocess::start::<projectors::Application>(&projectors).await;

    let mut query = config::<query_api::Config>();
    (query.postgres, query.redis, query.clickhouse, query.listen) = (
        stack.postgres.clone(),
        stack.redis.clone(),
        stack.clickhouse.clone(),
        listen,
    );
    let query = inprocess::start::<query_api::Application>(&query).await;

    for service in [&command, &signer, &projectors, &query] {
        assert_ops_endpoints(service.address).await;
    }
    // The command API registered the event schemas itself, with BACKWARD_TRANSITIVE.
    let subject = format!("{}vaccination-events-value", stack.kafka.topic_prefix);
    let config = get(format!("{}/config/{subject}", stack.kafka.schema_registry_url)).await;
    assert_eq!(config.0, 200, "{}", config.1);
    assert!(config.1.contains("BACKWARD_TRANSITIVE"), "{}", config.1);
    for service in [command, signer, projectors, query] {
        service.stop().await;
    }
}

#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let stack = TestStack::new().await;
    let mut query = config::<query_api::Config>();
    (query.postgres, query.clickhouse, query.listen) = (
        stack.postgres.clone(),
        stack.clickhouse.clone(),
        "127.0.0.1:0".parse().unwrap(),
    );
    // Nothing listens on port 1.
    query.redis.url = "redis://127.0.0.1:1".parse().unwrap();
    let query = inprocess::start::<query_api::Application>(&query).await;
    let address = query.address;

    let (status, body) = get(format!("http://{address}/readyz")).await;
    assert_eq!(status, 503);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["checks"]["postgres"], "ok");
    assert_ne!(report["checks"]["redis"], "ok", "{report}");
    // Alive, though not ready.
    assert_eq!(get(format!("http://{address}/healthz")).await.0, 200);
    query.stop().await;
}

#[tokio::test]
async fn a_service_binary_stops_cleanly_on_sigterm() {
    let stack = TestStack::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(bin_dir().join("query-api"))
        .env("VAXTRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .env("VAXTRAIL_LOG_FORMAT", "json")
        .env("VAXTRAIL_DATABASE_SCHEMA", &stack.postgres.schema)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("query-api was built (deploy/local/up builds every binary)");
    eventually(Duration::from_secs(30), "query-api to answer /healthz", || async {
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("stopped in time")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let output = child.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    let last: serde_json::Value = serde_json::from_str(logs.lines().last().expect("it logged")).expect("JSON logs");
    assert_eq!(last["message"], "query-api stopped", "{logs}");
}
