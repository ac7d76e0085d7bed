//! The command API against the real stack: DIVOC's sample is accepted and lands on
//! `vaccination-events` as the same data; a retry yields the same event and one record; invalid
//! bodies get problem+json naming each field and append nothing; an unreachable broker gives 503.

use std::time::Duration;

use avro::codec::VaccinationCodec;
use domain::events::VaccinationPayload;
use platform::auth::Role;
use rdkafka::Message;
use serde_json::{Value, json};
use vaxtrail_tests::{
    CommandApi, TestAuth, TestStack,
    fixtures::{divoc_certify_request, divoc_sample_parsed},
    inprocess, kafka,
};

async fn post(api: &CommandApi, path: &str, key: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    let role = if path == "/v1/revocations" {
        Role::Controller
    } else {
        Role::Facility
    };
    post_as(api, path, key, body, Some(api.auth.bearer("cowin", &[role]))).await
}

async fn post_as(
    api: &CommandApi,
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
    let api = inprocess::command_api(&stack, |_| {}).await;
    let (status, _, body) = post(&api, "/v1/certify", Some("cowin-1112"), &divoc_certify_request()).await;
    assert_eq!(status, 202, "{body}");
    let event_id = body[0]["eventId"].as_str().unwrap().to_owned();
    assert_eq!(body[0]["status"], format!("/v1/events/{event_id}"));

    let topic = stack.topic("vaccination-events");
    let records =
        tokio::task::block_in_place(|| kafka::read(&stack.kafka.brokers, &topic, 3, 1, Duration::from_secs(20)));
    // The personal data is sealed: none of it is in the record's bytes, and a reader without the
    // key store cannot open it.
    let bytes = records[0].payload().unwrap();
    for plain in ["2342343334", "Bhaya Mitra", "9880414889", "1994-11-30"] {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain} in the clear in the log"
        );
    }
    let without_keys = VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic);
    let error = without_keys.decode(bytes).await.unwrap_err();
    assert!(
        matches!(
            error,
            avro::codec::CodecError::Sealed {
                why: avro::codec::Unreadable::NoKeyStore,
                ..
            }
        ),
        "{error}"
    );
    let codec = VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic).with_keys(stack.keys());
    let envelope = codec.decode(bytes).await.unwrap();
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
    let api = inprocess::command_api(&stack, |_| {}).await;
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
    let api = inprocess::command_api(&stack, |_| {}).await;
    let record = divoc_certify_request()[0].clone();
    let first = post(&api, "/v1/vaccinations", None, &record).await.2;
    let second = post(&api, "/v1/vaccinations", None, &record).await.2;
    assert_eq!(first["eventId"], second["eventId"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_bodies_get_problem_json_naming_each_field_and_append_nothing() {
    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |_| {}).await;
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
    let api = inprocess::command_api(&stack, |config| config.max_body_bytes = 512).await;
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
    let api = inprocess::command_api(&stack, |config| {
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
    let api = inprocess::command_api(&stack, |_| {}).await;
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

/// A bulk CSV row with DIVOC's sample values (dose, gender and identity varied).
fn csv_row(identity: &str, dose: u8, gender: &str) -> String {
    format!(
        "1112,Bhaya Mitra,9880414889,1994-11-30,,{gender},Indian,did:in.gov.uidai.aadhaar:{identity},\"444, 2nd Street\",,Bengaluru,Karnataka,560034,MB3428BX,2021-03-01T10:15:00+05:30,{dose},2,2021-03-01,2022-03-01,COVPharma,CoVax,Sooraj Singh,ABC Medical Center,\"123, Koramangala\",,Bengaluru South,Karnataka,560034"
    )
}

async fn post_csv(api: &CommandApi, query: &str, csv: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/vaccinations/bulk{query}", api.url))
        .header("Authorization", api.auth.bearer("cowin", &[Role::Facility]))
        .header("Idempotency-Key", "bulk-file-1")
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_csv_answers_each_row_and_appends_only_the_good_ones() {
    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |_| {}).await;
    let header = include_str!("../fixtures/divoc/bulk-certify.csv").trim_end();
    let csv = [
        header.to_owned(),
        csv_row("1001", 1, "Male"),
        csv_row("1002", 1, "X"),
        csv_row("1001", 2, "Male"),
    ]
    .join("\n");

    let (status, body) = post_csv(&api, "?programId=1234", csv.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let rows = body["rows"].as_array().unwrap();
    assert!(rows[0]["eventId"].is_string());
    assert_eq!(rows[1]["row"], 2);
    assert_eq!(rows[1]["problems"][0]["column"], "recipientGender", "{body}");
    assert!(rows[2]["eventId"].is_string());

    let topic = stack.topic("vaccination-events");
    let records =
        tokio::task::block_in_place(|| kafka::read(&stack.kafka.brokers, &topic, 3, 2, Duration::from_secs(20)));
    let codec = VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic).with_keys(stack.keys());
    let mut doses = Vec::new();
    for record in &records {
        let envelope = codec.decode(record.payload().unwrap()).await.unwrap();
        let VaccinationPayload::VaccinationRecorded(recorded) = envelope.event.payload else {
            panic!("a record")
        };
        doses.push(recorded.vaccination.dose.number());
    }
    assert_eq!(
        doses,
        [1, 2],
        "one recipient's doses stay in file order on its partition"
    );

    // The same file again appends nothing new.
    let (status, again) = post_csv(&api, "?programId=1234", csv).await;
    assert_eq!(status, 202);
    assert_eq!(again["rows"][0]["eventId"], rows[0]["eventId"]);
    assert_eq!(again["rows"][0]["duplicate"], true);
    assert_eq!(
        tokio::task::block_in_place(|| kafka::count(&stack.kafka.brokers, &topic, 3)),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_csv_without_divocs_columns_or_a_programme_is_refused() {
    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |_| {}).await;
    let (status, problem) = post_csv(
        &api,
        "?programId=1234",
        "preEnrollmentCode,recipientName\n1112,Bhaya".into(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "recipientMobileNumber");
    let header = include_str!("../fixtures/divoc/bulk-certify.csv").trim_end();
    let (status, problem) = post_csv(&api, "", format!("{header}\n{}", csv_row("1", 1, "Male"))).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("programId"))
    );
}

/// Every key of `sample` (recursively, through objects) is a documented property of `schema`.
fn assert_documented(document: &Value, schema: &Value, sample: &Value, at: &str) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => &document["components"]["schemas"][reference.rsplit('/').next().unwrap()],
        None => schema,
    };
    let schema = schema.get("allOf").map(|all| &all[0]).unwrap_or(schema);
    let Some(object) = sample.as_object() else { return };
    for (key, value) in object {
        let property = schema["properties"]
            .get(key)
            .unwrap_or_else(|| panic!("{at}.{key} is sent by DIVOC but not documented: {schema}"));
        let property = property.get("oneOf").map(|o| &o[0]).unwrap_or(property);
        assert_documented(document, property, value, &format!("{at}.{key}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_routes_and_divocs_record() {
    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |_| {}).await;
    let document: Value = reqwest::get(format!("{}/openapi.json", api.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let paths = document["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort();
    assert_eq!(
        documented,
        [
            "/v1/certify",
            "/v1/corrections",
            "/v1/erasures",
            "/v1/master-data",
            "/v1/master-data/facilities/{id}",
            "/v1/master-data/facilities/{id}/status",
            "/v1/master-data/programmes/{id}",
            "/v1/master-data/vaccinators/{id}",
            "/v1/master-data/vaccines",
            "/v1/revocations",
            "/v1/vaccinations",
            "/v1/vaccinations/bulk"
        ]
    );
    // Master data: each operation documents its answers and is guarded (401 without a token).
    for (path, operations) in paths.iter().filter(|(p, _)| p.starts_with("/v1/master-data")) {
        for (method, operation) in operations.as_object().unwrap() {
            let expected: &[&str] = if method == "get" {
                &["200", "401", "403"]
            } else {
                &["200", "401", "403", "422", "503"]
            };
            for status in expected {
                assert!(
                    operation["responses"].get(*status).is_some(),
                    "{method} {path} documents no {status}"
                );
            }
            let concrete = path.replace("{id}", "phc-1");
            let response = reqwest::Client::new()
                .request(method.to_uppercase().parse().unwrap(), format!("{}{concrete}", api.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 401, "{method} {path}");
        }
    }
    for (path, operations) in paths.iter().filter(|(p, _)| !p.starts_with("/v1/master-data")) {
        let post = &operations["post"];
        for status in ["202", "401", "403", "422", "503"] {
            assert!(post["responses"].get(status).is_some(), "{path} documents no {status}");
        }
        // The route exists and is guarded: without a token it answers 401, not 404.
        let response = reqwest::Client::new()
            .post(format!("{}{path}", api.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }

    let record_schema = &paths["/v1/vaccinations"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_documented(&document, record_schema, &divoc_certify_request()[0], "record");
}
