//! The command API against the real stack: DIVOC's sample is accepted and lands on
//! `vaccination-events` as the same data; a retry yields the same event and one record; invalid
//! bodies get problem+json naming each field and append nothing; an unreachable broker gives 503.

use std::time::Duration;

use avro::codec::VaccinationCodec;
use clap::Parser;
use domain::events::VaccinationPayload;
use platform::Shutdown;
use platform::auth::Role;
use rdkafka::Message;
use serde_json::{Value, json};
use vaxtrail_tests::{
    TempFile, TestAuth, TestStack,
    fixtures::{divoc_certify_request, divoc_sample_parsed, master_list_with_covax},
    kafka,
};

struct Api {
    url: String,
    shutdown: Shutdown,
    auth: TestAuth,
    _list: TempFile,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn_api(stack: &TestStack, adjust: impl FnOnce(&mut command_api::Config)) -> Api {
    stack.create_event_topics().await;
    avro::client::RegistryClient::new(&stack.kafka.schema_registry_url)
        .register_event_schemas(&stack.kafka.topic_prefix)
        .await
        .unwrap();
    let list = TempFile::with(&master_list_with_covax());
    let mut config = command_api::Config::parse_from(["command-api"]);
    config.kafka = stack.kafka.clone();
    config.redis = stack.redis.clone();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.vaccine_list = Some(list.0.clone());
    let auth = TestAuth::new();
    config.auth.jwks = Some(auth.jwks.path());
    config.zone = chrono_tz::Asia::Kolkata;
    adjust(&mut config);
    let shutdown = Shutdown::new();
    let app = command_api::Application::build(&config, shutdown.clone())
        .await
        .unwrap();
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped());
    Api {
        url,
        shutdown,
        auth,
        _list: list,
    }
}

async fn post(api: &Api, path: &str, key: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    let role = if path == "/v1/revocations" {
        Role::Controller
    } else {
        Role::Facility
    };
    post_as(api, path, key, body, Some(api.auth.bearer("cowin", &[role]))).await
}

async fn post_as(
    api: &Api,
    path: &str,
    key: Option<&str>,
    body: &Value,
    bearer: Option<String>,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new().post(format!("{}{path}", api.url)).json(body);
    if let Some(bearer) = bearer {
        request = request.header("Authorization", bearer);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, content_type, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn divocs_sample_is_accepted_and_lands_on_the_topic_as_the_same_data() {
    let stack = TestStack::new().await;
    let api = spawn_api(&stack, |_| {}).await;
    let (status, _, body) = post(&api, "/v1/certify", Some("cowin-1112"), &divoc_certify_request()).await;
    assert_eq!(status, 202, "{body}");
    let event_id = body[0]["eventId"].as_str().unwrap().to_owned();
    assert_eq!(body[0]["status"], format!("/v1/events/{event_id}"));

    let topic = stack.topic("vaccination-events");
    let records =
        tokio::task::block_in_place(|| kafka::read(&stack.kafka.brokers, &topic, 3, 1, Duration::from_secs(20)));
    let codec = VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic);
    let envelope = codec.decode(records[0].payload().unwrap()).await.unwrap();
    assert_eq!(envelope.event.event_id.to_string(), event_id);
    assert_eq!(
        records[0].key(),
        Some(envelope.event.recipient_key.as_str().as_bytes()),
        "keyed by the recipient key"
    );
    assert!(
        !String::from_utf8_lossy(records[0].key().unwrap()).contains("2342343334"),
        "never the raw identity"
    );
    assert_eq!(
        envelope.event.payload,
        VaccinationPayload::VaccinationRecorded(divoc_sample_parsed(chrono_tz::Asia::Kolkata))
    );
    assert_eq!(
        (
            envelope.provenance.source_system.as_str(),
            envelope.provenance.source_record_id.as_str()
        ),
        ("cowin", "cowin-1112")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_with_the_same_key_yields_the_same_event_id_and_one_record() {
    let stack = TestStack::new().await;
    let api = spawn_api(&stack, |_| {}).await;
    let record = divoc_certify_request()[0].clone();
    let (first_status, _, first) = post(&api, "/v1/vaccinations", Some("retry-1"), &record).await;
    let (second_status, _, second) = post(&api, "/v1/vaccinations", Some("retry-1"), &record).await;
    assert_eq!((first_status, second_status), (202, 202));
    assert_eq!(first["eventId"], second["eventId"]);
    assert_eq!(
        (first["duplicate"].as_bool(), second["duplicate"].as_bool()),
        (Some(false), Some(true))
    );
    let topic = stack.topic("vaccination-events");
    assert_eq!(
        tokio::task::block_in_place(|| kafka::count(&stack.kafka.brokers, &topic, 3)),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_the_same_record_still_yields_the_same_event_id() {
    let stack = TestStack::new().await;
    let api = spawn_api(&stack, |_| {}).await;
    let record = divoc_certify_request()[0].clone();
    let first = post(&api, "/v1/vaccinations", None, &record).await.2;
    let second = post(&api, "/v1/vaccinations", None, &record).await.2;
    assert_eq!(first["eventId"], second["eventId"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bodies_get_problem_json_naming_each_field_and_append_nothing() {
    let stack = TestStack::new().await;
    let api = spawn_api(&stack, |_| {}).await;
    let mut bad = divoc_certify_request()[0].clone();
    bad["recipient"]["gender"] = json!("M");
    bad["vaccination"].as_object_mut().unwrap().remove("batch");

    let (status, content_type, problem) = post(&api, "/v1/vaccinations", None, &bad).await;
    assert_eq!(status, 422);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(problem["status"], 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["recipient.gender", "vaccination.batch"]);
    assert!(
        problem["errors"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("Male, Female, Other")
    );

    // One bad record in an array refuses the whole request.
    let good = divoc_certify_request()[0].clone();
    let (status, _, problem) = post(&api, "/v1/certify", None, &json!([good, bad])).await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "[1].recipient.gender");

    let (status, _, problem) = post(&api, "/v1/revocations", None, &json!({ "certificateId": "nope" })).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["certificateId", "reason", "recipientKey"]);

    let response = reqwest::Client::new()
        .post(format!("{}/v1/vaccinations", api.url))
        .header("Authorization", api.auth.bearer("cowin", &[Role::Facility]))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);

    let topic = stack.topic("vaccination-events");
    assert_eq!(
        tokio::task::block_in_place(|| kafka::count(&stack.kafka.brokers, &topic, 3)),
        0,
        "nothing appended"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_limit_is_refused_with_413() {
    let stack = TestStack::new().await;
    let api = spawn_api(&stack, |config| config.max_body_bytes = 512).await;
    let (status, content_type, problem) = post(&api, "/v1/certify", None, &divoc_certify_request()).await;
    assert_eq!(
        (status, content_type.as_deref()),
        (413, Some("application/problem+json")),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_gives_503_with_retry_after_never_202() {
    let stack = TestStack::new().await;
    let api = spawn_api(&stack, |config| {
        config.kafka.brokers = "127.0.0.1:1".into();
        config.produce_timeout_ms = 1_500;
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/vaccinations", api.url))
        .header("Authorization", api.auth.bearer("cowin", &[Role::Facility]))
        .json(&divoc_certify_request()[0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_without_a_valid_token_or_the_right_role_are_refused_and_nothing_is_appended() {
    let stack = TestStack::new().await;
    let api = spawn_api(&stack, |_| {}).await;
    let record = divoc_certify_request()[0].clone();

    let (status, _, problem) = post_as(&api, "/v1/vaccinations", None, &record, None).await;
    assert_eq!(status, 401, "{problem}");
    assert!(problem["title"].as_str().unwrap().contains("Bearer"));
    let stranger = TestAuth::new().bearer("cowin", &[Role::Facility]);
    assert_eq!(
        post_as(&api, "/v1/vaccinations", None, &record, Some(stranger)).await.0,
        401
    );

    let auditor = api.auth.bearer("audit-office", &[Role::Auditor]);
    let (status, _, problem) = post_as(&api, "/v1/vaccinations", None, &record, Some(auditor)).await;
    assert_eq!(status, 403, "{problem}");
    let facility = api.auth.bearer("cowin", &[Role::Facility]);
    let revocation = json!({ "certificateId": "x", "reason": "y", "recipientKey": "z" });
    assert_eq!(
        post_as(&api, "/v1/revocations", None, &revocation, Some(facility))
            .await
            .0,
        403,
        "facilities do not revoke"
    );

    let topic = stack.topic("vaccination-events");
    assert_eq!(
        tokio::task::block_in_place(|| kafka::count(&stack.kafka.brokers, &topic, 3)),
        0,
        "nothing appended"
    );
}
