//! The public surface, tried as an attacker would (issue 21): a poison graph posted for
//! verification, a flood from one client, a body of a million empty records and a bulk file past
//! its limit, a facility reading or correcting another's records, two people who share a
//! pre-enrollment code, DIVOC's own feed, and development secrets outside development. Every
//! case failed on the code before this change.
//!
//! Over 400 lines, and long test functions: each attack is one scenario read top to bottom
//! (set up, attack, assert the bound); what they share lives in `vaxtrail_tests`.

use std::time::{Duration, Instant};

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vaxtrail_tests::{
    TestAuth, TestStack,
    e2e::Deployment,
    eventually, fixtures, inprocess,
    signer::{self, Issuer},
};

/// A credential of vaxtrail's contexts and types whose address holds `n` blank nodes that all
/// reference each other: RDFC-1.0 canonicalizes it in factorial time.
fn poison(n: usize) -> Value {
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            let others: Vec<Value> = (0..n)
                .filter(|j| *j != i)
                .map(|j| json!({"@id": format!("_:b{j}")}))
                .collect();
            json!({"@id": format!("_:b{i}"), "streetAddress": others})
        })
        .collect();
    json!({
        "@context": [
            "https://www.w3.org/2018/credentials/v1",
            "https://vaxtrail.org/credentials/vaccination/v1",
            "https://w3id.org/security/data-integrity/v2"
        ],
        "type": ["VerifiableCredential", "ProofOfVaccinationCredential"],
        "issuer": vaxtrail_tests::signer::DID,
        "issuanceDate": "2021-06-01T10:00:00Z",
        "credentialSubject": {"type": "Person", "id": "did:x:1", "address": nodes},
        "proof": {
            "type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022",
            "verificationMethod": format!("{}#key-1", vaxtrail_tests::signer::DID),
            "proofPurpose": "assertionMethod", "proofValue": "z1111", "created": "2021-06-01T10:00:00Z"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_graph_is_refused_before_canonicalization_while_health_answers() {
    let stack = TestStack::new().await;
    let issuer = Issuer::new();
    let auth = TestAuth::new();
    let query_api = inprocess::query_api(&stack, &issuer.dir, &auth, |config| {
        config.rate.per_second = 10_000;
        config.rate.burst = 10_000;
    })
    .await;
    let url = &query_api.url;
    let client = reqwest::Client::new();
    let body = poison(15);
    assert!(body.to_string().len() < 64 * 1024, "within the body limit");
    let post = || client.post(format!("{url}/v1/verify")).json(&body).send();
    post().await.unwrap(); // a warm-up: connections and the first allocation
    let started = Instant::now();
    let answer = post().await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let problem: Value = answer.json().await.unwrap();
    assert!(
        problem["errors"][0]["rule"].as_str().unwrap().contains("shape"),
        "{problem}"
    );
    assert!(took < Duration::from_millis(100), "refused in {took:?}");
    eprintln!("poison graph of 15 blank nodes refused in {took:?}");

    // Fifty at once: every one refused, and /healthz answers meanwhile.
    let flood: Vec<_> = (0..50).map(|_| tokio::spawn(post())).collect();
    let health_started = Instant::now();
    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    let health_took = health_started.elapsed();
    assert_eq!(health.status(), StatusCode::OK);
    for request in flood {
        assert_eq!(
            request.await.unwrap().unwrap().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert!(
        health_took < Duration::from_secs(1),
        "/healthz took {health_took:?} under the flood"
    );
    eprintln!("/healthz answered in {health_took:?} under 50 poison requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_past_its_rate_gets_429_with_retry_after() {
    let stack = TestStack::new().await;
    let issuer = Issuer::new();
    let auth = TestAuth::new();
    let query_api = inprocess::query_api(&stack, &issuer.dir, &auth, |config| {
        config.rate.per_second = 1;
        config.rate.burst = 5;
    })
    .await;
    let url = &query_api.url;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..12 {
        let response = client.get(format!("{url}/.well-known/did.json")).send().await.unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            limited = Some(response);
        }
    }
    assert!(statuses[..5].iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    let limited = limited.expect("the burst is 5");
    assert_eq!(limited.headers()["content-type"], "application/problem+json");
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    // The ops endpoints are not the public surface: they stay unlimited.
    for _ in 0..10 {
        assert_eq!(
            client.get(format!("{url}/healthz")).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_empty_records_and_an_oversized_bulk_file_cost_nothing() {
    let issuer = Issuer::new();
    let mut deployment = Deployment::new(TestStack::new().await, &issuer).await;
    let index = deployment
        .start(
            "command-api",
            &[
                ("VAXTRAIL_MAX_BODY_BYTES", "4194304"),
                ("VAXTRAIL_MAX_BULK_BYTES", "65536"),
            ],
        )
        .await;
    let pid = deployment.services[index].pid().unwrap();
    let url = deployment.url("command-api");
    let token = deployment.token("facility").await;
    let client = reqwest::Client::new();
    let before = resident_kib(pid);

    let mut body = String::from("[");
    while body.len() < 2 * 1024 * 1024 {
        body.push_str("{},");
    }
    body.push_str("{}]");
    let response = client
        .post(format!("{url}/v1/certify"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert!(problem.to_string().len() < 16 * 1024, "the answer is bounded");
    let after = resident_kib(pid);
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!(
        "2 MB of empty records: resident {before} KiB -> {after} KiB; /metrics {} bytes",
        metrics.len()
    );
    assert!(
        after < before + 50 * 1024,
        "resident grew from {before} KiB to {after} KiB"
    );
    assert!(metrics.len() < 1024 * 1024, "/metrics is {} bytes", metrics.len());

    // A bulk file past its limit, streamed without a length: 413 once the limit is crossed.
    let header = "preEnrollmentCode,recipientName,recipientMobileNumber,recipientDOB,recipientAge,recipientGender,recipientNationality,recipientIdentity,recipientAddressLine1,recipientAddressLine2,recipientDistrict,recipientState,recipientPincode,vaccinationBatch,vaccinationDate,vaccinationDose,vaccinationTotalDoses,vaccinationEffectiveStart,vaccinationEffectiveEnd,vaccinationManufacturer,vaccinationName,vaccinatorName,facilityName,facilityAddressLine1,facilityAddressLine2,facilityDistrict,facilityState,facilityPincode\n";
    let (status, answer) = chunked_post(
        url.strip_prefix("http://").unwrap(),
        "/v1/vaccinations/bulk?programId=P",
        &token,
        std::iter::once(header.to_owned()).chain((0..200).map(|_| format!("{}\n", ",".repeat(27)).repeat(50))),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    deployment.stop_all().await;
}

/// POSTs `chunks` with `Transfer-Encoding: chunked` (no length for the server to refuse up
/// front); the status and the raw answer. Writing stops when the server has answered.
async fn chunked_post(address: &str, path: &str, token: &str, chunks: impl Iterator<Item = String>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if stream.write_all(framed.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

async fn post(client: &reqwest::Client, url: &str, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
    let response = client
        .post(format!("{url}{path}"))
        .header("authorization", token)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

/// One DIVOC record for `identity` (or none) under pre-enrollment code `code`.
fn record(code: &str, identity: Option<&str>) -> Value {
    let mut record = fixtures::divoc_certify_request()[0].clone();
    record["preEnrollmentCode"] = json!(code);
    match identity {
        Some(identity) => record["recipient"]["identity"] = json!(identity),
        None => {
            record["recipient"].as_object_mut().unwrap().remove("identity");
        }
    }
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilities_are_scoped_and_people_sharing_a_code_are_two_events() {
    let stack = TestStack::new().await;
    let api = inprocess::command_api(&stack, |_| {}).await;
    let issuer = Issuer::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);
    let projectors = inprocess::projectors(&stack, |_| {}).await;
    let query_api = inprocess::query_api(&stack, &issuer.dir, &api.auth, |_| {}).await;
    let query = query_api.url.clone();
    let client = reqwest::Client::new();
    let own = api.auth.bearer("facility-a", &[Role::Facility]);
    let other = api.auth.bearer("facility-b", &[Role::Facility]);

    // Two people registered under one phone number, posted without Idempotency-Key.
    let (status, first) = post(
        &client,
        &api.url,
        "/v1/vaccinations",
        &own,
        &record("9880414889", Some("did:in.gov.uidai.aadhaar:111111111111")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = post(
        &client,
        &api.url,
        "/v1/vaccinations",
        &own,
        &record("9880414889", Some("did:in.gov.uidai.aadhaar:222222222222")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_ne!(first["eventId"], second["eventId"]);
    assert_eq!(second["duplicate"], false);

    // DIVOC's feed: empty optional values, no identity, an Indic name with a joiner.
    let mut divoc = record("DIVOC-7", None);
    divoc["recipient"]["address"]["addressLine2"] = json!("");
    divoc["recipient"]["email"] = json!("");
    divoc["recipient"]["name"] = json!("क्\u{200D}ष Mitra");
    let (status, third) = post(&client, &api.url, "/v1/vaccinations", &own, &divoc).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{third}");
    let mut bidi = record("DIVOC-8", None);
    bidi["recipient"]["name"] = json!("Bhaya\u{202E}artiM");
    let (status, problem) = post(&client, &api.url, "/v1/vaccinations", &own, &bidi).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "recipient.name", "{problem}");

    // Three certificates, read back by the facility that recorded them.
    let mut outcomes = Vec::new();
    for event in [&first, &second, &third] {
        let id = event["eventId"].as_str().unwrap().to_owned();
        let token = own.strip_prefix("Bearer ").expect("a bearer header");
        let outcome = vaxtrail_tests::e2e::certified(&query, token, &id, Duration::from_secs(90)).await;
        outcomes.push(outcome);
    }
    assert_eq!(outcomes[0]["status"], "issued");
    assert_eq!(outcomes[1]["status"], "issued", "the second person is certified too");
    assert_ne!(outcomes[0]["certificateId"], outcomes[1]["certificateId"]);
    let certificate = outcomes[0]["certificateId"].as_str().unwrap().to_owned();
    let third_credential: Value = client
        .get(format!(
            "{query}/v1/certificates/{}",
            outcomes[2]["certificateId"].as_str().unwrap()
        ))
        .header("vaxtrail-access-code", outcomes[2]["holderCode"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        third_credential["credentialSubject"]["id"],
        "urn:vaxtrail:pre-enrollment-code:DIVOC-7"
    );

    // Once the read model knows who recorded it, another facility may neither correct nor read it.
    let recipient = eventually(Duration::from_secs(60), "the certificate in Postgres", || {
        stack_recipient(&stack, &certificate)
    })
    .await;
    let mut correction = record("9880414889", Some("did:in.gov.uidai.aadhaar:111111111111"));
    correction["vaccination"]["batch"] = json!("CORRECTED-1");
    correction["certificateId"] = json!(certificate);
    let (status, problem) = post(&client, &api.url, "/v1/corrections", &other, &correction).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["errors"][0]["rule"], "recorded-by-another-source");

    // The roles table, route by route: what each reader gets.
    let event_id = first["eventId"].as_str().unwrap().to_owned();
    let routes = [
        format!("/v1/certificates/{certificate}"),
        format!("/v1/certificates/{certificate}.pdf"),
        format!("/v1/certificates/{certificate}/qr.png"),
        format!("/v1/certificates/{certificate}/status"),
        format!("/v1/events/{event_id}"),
        format!("/v1/recipients/{recipient}/certificates"),
        "/v1/audit/checkpoints".to_owned(),
    ];
    let readers: [(&str, Option<String>); 6] = [
        ("anonymous", None),
        ("own facility", Some(own.clone())),
        ("other facility", Some(other.clone())),
        ("controller", Some(api.auth.bearer("c", &[Role::Controller]))),
        ("auditor", Some(api.auth.bearer("a", &[Role::Auditor]))),
        ("admin", Some(api.auth.bearer("x", &[Role::Admin]))),
    ];
    const OK: u16 = 200;
    const NO: u16 = 401;
    const FORBID: u16 = 403;
    // Rows: routes above; columns: readers above. "other facility" reading its (empty) share
    // of a recipient is a 404: nothing it recorded.
    let expected: [[u16; 6]; 7] = [
        [NO, OK, FORBID, OK, FORBID, OK],
        [NO, OK, FORBID, OK, FORBID, OK],
        [NO, OK, FORBID, OK, FORBID, OK],
        [OK, OK, OK, OK, OK, OK],
        [NO, OK, FORBID, OK, OK, OK],
        [NO, OK, 404, OK, FORBID, OK],
        [NO, FORBID, FORBID, FORBID, OK, OK],
    ];
    for (route, row) in routes.iter().zip(expected) {
        for ((reader, token), want) in readers.iter().zip(row) {
            let mut request = client.get(format!("{query}{route}"));
            if let Some(token) = token {
                request = request.header("authorization", token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), want, "{reader} GET {route}");
            if want == OK && route.starts_with("/v1/certificates/") && !route.ends_with("/status") {
                assert_eq!(response.headers()["cache-control"], "private, no-store", "{route}");
            }
        }
    }

    // The facility that recorded the dose corrects it.
    let (status, accepted) = post(&client, &api.url, "/v1/corrections", &own, &correction).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    signer.stop_cleanly().await;
    projectors.stop().await;
}

async fn stack_recipient(stack: &TestStack, certificate: &str) -> Option<String> {
    sqlx::query_scalar("SELECT recipient_key FROM certificates WHERE certificate_id = $1")
        .bind(certificate)
        .fetch_optional(&stack.postgres.pool().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn development_secrets_are_refused_outside_development() {
    let stack = TestStack::new().await;
    let auth = TestAuth::new();
    let mut command = <command_api::Config as clap::Parser>::parse_from(["command-api"]);
    command.kafka = stack.kafka.clone();
    command.auth.jwks = Some(auth.jwks.path());
    command.environment.environment = platform::environment::Environment::Production;
    let error = command_api::Application::build(&command, platform::Shutdown::new())
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("VAXTRAIL_RECIPIENT_KEY_SECRET"), "{error}");
    command.recipient_secret = "a real one".parse().unwrap();
    let error = command_api::Application::build(&command, platform::Shutdown::new())
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("VAXTRAIL_ID_SECRET"), "{error}");
    command.ids.id_secret = "another real one".parse().unwrap();
    let error = command_api::Application::build(&command, platform::Shutdown::new())
        .await
        .err()
        .expect("refused: the JWKS is a development key");
    assert!(error.to_string().contains("VAXTRAIL_JWKS"), "{error}");

    let mut signer =
        <signer_worker::Config as clap::Parser>::parse_from(["signer-worker", "--issuer-keys", "/nonexistent"]);
    signer.environment.environment = platform::environment::Environment::Production;
    let error = signer_worker::Application::build(&signer, platform::Shutdown::new())
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("VAXTRAIL_ID_SECRET"), "{error}");
}
