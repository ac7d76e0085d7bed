//! vaxtrail-registry against the real broker: Confluent's REST API and error codes, compatibility
//! levels, a real Confluent client (`schema_registry_converter`) encoding and decoding through it,
//! and a restart that rebuilds the same state from the `_schemas` topic.

use apache_avro::types::Value;
use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::SrSettings,
    },
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};
use serde_json::{Value as Json, json};
use vaxtrail_tests::{TestStack, inprocess};

const V1: &str = r#"{"type":"record","name":"Dose","namespace":"t","fields":[{"name":"vaccine","type":"string"}]}"#;
const V2_OPTIONAL: &str = r#"{"type":"record","name":"Dose","namespace":"t","fields":[{"name":"vaccine","type":"string"},{"name":"batch","type":["null","string"],"default":null}]}"#;
const V3_REQUIRED: &str = r#"{"type":"record","name":"Dose","namespace":"t","fields":[{"name":"vaccine","type":"string"},{"name":"dose","type":"int"}]}"#;

/// The registry under test, in-process on the test's own schema topic.
struct Running(inprocess::Running);

impl Running {
    async fn start(stack: &TestStack) -> Self {
        Self(inprocess::registry(stack).await)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0.url)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> (u16, Json) {
        let mut request = reqwest::Client::new().request(method, self.url(path));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Json) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn register(&self, subject: &str, schema: &str) -> (u16, Json) {
        self.call(
            reqwest::Method::POST,
            &format!("/subjects/{subject}/versions"),
            Some(json!({ "schema": schema })),
        )
        .await
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

#[tokio::test]
async fn registers_versions_and_answers_confluent_reads() {
    let stack = TestStack::new().await;
    let registry = Running::start(&stack).await;

    let (status, body) = registry.register("doses-value", V1).await;
    assert_eq!(status, 200, "{body}");
    let v1_id = body["id"].as_u64().unwrap();
    assert_eq!(
        registry.register("doses-value", V1).await.1["id"],
        v1_id,
        "same schema, same id"
    );
    assert_eq!(
        registry.register("other-value", V1).await.1["id"],
        v1_id,
        "same schema in another subject, same id"
    );
    let v2_id = registry.register("doses-value", V2_OPTIONAL).await.1["id"]
        .as_u64()
        .unwrap();
    assert_ne!(v2_id, v1_id);

    assert_eq!(registry.get("/subjects").await.1, json!(["doses-value", "other-value"]));
    assert_eq!(registry.get("/subjects/doses-value/versions").await.1, json!([1, 2]));
    let latest = registry.get("/subjects/doses-value/versions/latest").await.1;
    assert_eq!(
        (latest["version"].as_u64(), latest["id"].as_u64()),
        (Some(2), Some(v2_id))
    );
    let first = registry.get("/subjects/doses-value/versions/1").await.1;
    assert_eq!(first["id"], v1_id);
    let by_id = registry.get(&format!("/schemas/ids/{v1_id}")).await.1;
    assert_eq!(
        serde_json::from_str::<Json>(by_id["schema"].as_str().unwrap()).unwrap(),
        serde_json::from_str::<Json>(V1).unwrap()
    );
    let usages = registry.get(&format!("/schemas/ids/{v1_id}/versions")).await.1;
    assert_eq!(usages.as_array().unwrap().len(), 2);

    let lookup = registry
        .call(
            reqwest::Method::POST,
            "/subjects/doses-value",
            Some(json!({ "schema": V2_OPTIONAL })),
        )
        .await;
    assert_eq!(lookup.1["version"], 2);

    registry.stop().await;
}

#[tokio::test]
async fn answers_confluent_error_codes_for_bad_requests() {
    let stack = TestStack::new().await;
    let registry = Running::start(&stack).await;
    registry.register("doses-value", V1).await;

    let (status, body) = registry.get("/subjects/nobody-value/versions").await;
    assert_eq!((status, body["error_code"].as_u64()), (404, Some(40401)));
    let (status, body) = registry.get("/subjects/doses-value/versions/9").await;
    assert_eq!((status, body["error_code"].as_u64()), (404, Some(40402)));
    let (status, body) = registry.get("/subjects/doses-value/versions/zero").await;
    assert_eq!((status, body["error_code"].as_u64()), (422, Some(42202)));
    let (status, body) = registry.get("/schemas/ids/999999").await;
    assert_eq!((status, body["error_code"].as_u64()), (404, Some(40403)));
    let (status, body) = registry
        .register("doses-value", r#"{"type":"record","name":"Broken"}"#)
        .await;
    assert_eq!((status, body["error_code"].as_u64()), (422, Some(42201)), "{body}");
    let bad_level = registry
        .call(
            reqwest::Method::PUT,
            "/config/doses-value",
            Some(json!({ "compatibility": "SIDEWAYS" })),
        )
        .await;
    assert_eq!((bad_level.0, bad_level.1["error_code"].as_u64()), (422, Some(42203)));
    let (status, body) = registry.get("/config/doses-value").await;
    assert_eq!((status, body["error_code"].as_u64()), (404, Some(40408)));
    assert_eq!(
        registry.get("/subjects/doses-value/versions").await.1,
        json!([1]),
        "refusals change nothing"
    );

    registry.stop().await;
}

#[tokio::test]
async fn enforces_the_subject_compatibility_level() {
    let stack = TestStack::new().await;
    let registry = Running::start(&stack).await;
    let put = registry
        .call(
            reqwest::Method::PUT,
            "/config/doses-value",
            Some(json!({ "compatibility": "BACKWARD_TRANSITIVE" })),
        )
        .await;
    assert_eq!(put.1, json!({ "compatibility": "BACKWARD_TRANSITIVE" }));
    assert_eq!(
        registry.get("/config/doses-value").await.1["compatibilityLevel"],
        "BACKWARD_TRANSITIVE"
    );
    assert_eq!(
        registry.get("/config").await.1["compatibilityLevel"],
        "BACKWARD",
        "the global default is untouched"
    );

    registry.register("doses-value", V1).await;
    let test_path = "/compatibility/subjects/doses-value/versions/latest?verbose=true";
    let compatible = registry
        .call(reqwest::Method::POST, test_path, Some(json!({ "schema": V2_OPTIONAL })))
        .await;
    assert_eq!(compatible.1["is_compatible"], true);
    let incompatible = registry
        .call(reqwest::Method::POST, test_path, Some(json!({ "schema": V3_REQUIRED })))
        .await;
    assert_eq!(incompatible.1["is_compatible"], false);
    assert!(!incompatible.1["messages"].as_array().unwrap().is_empty());

    let (status, body) = registry.register("doses-value", V3_REQUIRED).await;
    assert_eq!((status, body["error_code"].as_u64()), (409, Some(409)), "{body}");
    assert_eq!(registry.register("doses-value", V2_OPTIONAL).await.0, 200);
    assert_eq!(registry.get("/subjects/doses-value/versions").await.1, json!([1, 2]));

    registry.stop().await;
}

#[tokio::test]
async fn a_confluent_client_encodes_and_decodes_through_it() {
    let stack = TestStack::new().await;
    let registry = Running::start(&stack).await;
    let settings = SrSettings::new(registry.url(""));
    let encoder = AvroEncoder::new(settings.clone());
    let topic = stack.topic("doses");
    let schema = SuppliedSchema::new(Some("t.Dose".into()), SchemaType::Avro, V1.into());
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(topic.clone(), false, schema);
    let bytes = encoder
        .encode(vec![("vaccine", Value::String("covaxin".into()))], strategy)
        .await
        .unwrap();
    let id = registry
        .get(&format!("/subjects/{topic}-value/versions/latest"))
        .await
        .1["id"]
        .as_u64()
        .unwrap() as u32;
    assert_eq!(bytes[0], 0, "Confluent's magic byte");
    assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);

    let decoded = AvroDecoder::new(settings).decode(Some(&bytes)).await.unwrap();
    assert_eq!(
        decoded.value,
        Value::Record(vec![("vaccine".into(), Value::String("covaxin".into()))])
    );
    registry.stop().await;
}

#[tokio::test]
async fn a_restarted_registry_rebuilds_the_same_state_from_the_topic() {
    let stack = TestStack::new().await;
    let first = Running::start(&stack).await;
    let v1 = first.register("doses-value", V1).await.1["id"].clone();
    let v2 = first.register("doses-value", V2_OPTIONAL).await.1["id"].clone();
    first
        .call(
            reqwest::Method::PUT,
            "/config/doses-value",
            Some(json!({ "compatibility": "FULL_TRANSITIVE" })),
        )
        .await;
    let before = (
        first.get("/subjects").await.1,
        first.get("/subjects/doses-value/versions/latest").await.1,
    );
    first.stop().await;

    let second = Running::start(&stack).await;
    let after = (
        second.get("/subjects").await.1,
        second.get("/subjects/doses-value/versions/latest").await.1,
    );
    assert_eq!(before, after);
    assert_eq!(
        second.get("/config/doses-value").await.1["compatibilityLevel"],
        "FULL_TRANSITIVE"
    );
    assert_eq!(
        second.register("doses-value", V1).await.1["id"],
        v1,
        "ids are stable across restarts"
    );
    let v3 = second.register("more-value", V3_REQUIRED).await.1["id"]
        .as_u64()
        .unwrap();
    assert!(v3 > v2.as_u64().unwrap(), "a new schema never reuses an id");
    second.stop().await;
}
