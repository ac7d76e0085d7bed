//! The query API on the real stack, fed by a real signer and the projectors: certificates with
//! their status, QR codes and PDFs decoded with real tools (zbarimg, pdftoppm) back into
//! credentials that verify; verification answers valid / invalid / revoked / superseded with
//! reasons; the status list's bit flips on revocation; a key rotation keeps old certificates
//! valid; a flushed Redis changes no answer; stores that cannot answer give 503, never "invalid".
//!
//! Over 400 lines, and a long test function: one certificate lifecycle (issue, correct, revoke,
//! rotate keys, flush the cache, lose the stores) read top to bottom, on one expensive setup.

use std::{process::Command, time::Duration};

use base64::Engine as _;
use domain::{
    commands::CorrectionTarget,
    events::VaccinationPayload,
    ids::{CertificateId, EventId},
    values::{Identity, Text},
};
use platform::auth::Role;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use vaxtrail_tests::{
    TestAuth, TestStack, eventually, fixtures, inprocess,
    signer::{self, EventWriter, Issuer, envelope, recipient},
    zbar_scan as scan,
};

fn id_of(event: &str) -> String {
    CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", event))
        .as_str()
        .to_owned()
}

async fn verify(client: &reqwest::Client, url: &str, body: Value) -> Value {
    let response = client
        .post(format!("{url}/v1/verify"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The event's outcome once the signer answered it and the projections have it.
async fn answered(client: reqwest::Client, url: String, token: String, event: &'static str) -> Option<Value> {
    let id = EventId::derive("tests", event);
    let response = client
        .get(format!("{url}/v1/events/{id}"))
        .header(header::AUTHORIZATION, token)
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    (body["status"] != "accepted").then_some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_qr_pdf_verification_status_lists_rotation_and_fallbacks() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let auth = TestAuth::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);
    let projectors = inprocess::projectors(&stack, |_| {}).await;

    // Person A: recorded, then corrected (C2 supersedes C1). Person B: recorded, then revoked.
    let a = fixtures::divoc_record();
    let person_a = recipient(a.recipient.identity.as_str());
    let mut b = a.clone();
    b.recipient.identity = Identity::parse("identity", "did:in.gov.uidai.aadhaar:999988887777").unwrap();
    let person_b = recipient(b.recipient.identity.as_str());
    let mut corrected = a.clone();
    corrected.vaccination.batch = Text::parse("batch", "MB3428BY").unwrap();
    let (c1, c2, c3) = (id_of("a1"), id_of("a2"), id_of("b1"));
    let events = [
        (
            "a1",
            person_a.clone(),
            VaccinationPayload::VaccinationRecorded(a.clone()),
        ),
        (
            "a2",
            person_a.clone(),
            VaccinationPayload::VaccinationCorrected {
                target: CorrectionTarget::Certificate(CertificateId::parse("c", &c1).unwrap()),
                corrected,
            },
        ),
        (
            "b1",
            person_b.clone(),
            VaccinationPayload::VaccinationRecorded(b.clone()),
        ),
    ];
    for (id, person, payload) in events {
        writer.append(&envelope(id, person, payload)).await;
    }

    // The key rotates: key-2 signs from now on; key-1 stays published.
    let client = reqwest::Client::new();
    let query = inprocess::query_api(&stack, &issuer.dir, &auth, |_| {}).await;
    let url = query.url.clone();
    // The events below were posted by source system "tests": this facility recorded them.
    let facility = auth.bearer("tests", &[Role::Facility]);
    let outcome = |event: &'static str| answered(client.clone(), url.clone(), facility.clone(), event);
    eventually(Duration::from_secs(90), "the first three events answered", || async {
        for event in ["a1", "a2", "b1"] {
            outcome(event).await?;
        }
        Some(())
    })
    .await;
    signer.stop_cleanly().await;
    query.stop().await;
    std::fs::write(issuer.dir.join("key-2.pem"), credentials::keys::generate_pem()).unwrap();
    let mut signer = signer::spawn(
        &stack,
        &issuer,
        &[
            ("VAXTRAIL_ISSUER_ACTIVE_KEY", "key-2"),
            ("VAXTRAIL_CHECKPOINT_EVERY", "1"),
        ],
    );
    let query_api = inprocess::query_api(&stack, &issuer.dir, &auth, |_| {}).await;
    let url = query_api.url.clone();
    let revoke = VaccinationPayload::RevocationRequested {
        certificate_id: CertificateId::parse("c", &c3).unwrap(),
        reason: Text::parse("reason", "issued in error").unwrap(),
    };
    writer.append(&envelope("b2", person_b.clone(), revoke)).await;
    let mut c = a.clone();
    c.recipient.identity = Identity::parse("identity", "did:in.gov.uidai.aadhaar:111122223333").unwrap();
    let person_c = recipient(c.recipient.identity.as_str());
    writer
        .append(&envelope(
            "c1",
            person_c.clone(),
            VaccinationPayload::VaccinationRecorded(c),
        ))
        .await;
    let c4 = id_of("c1");
    let outcome = |event: &'static str| answered(client.clone(), url.clone(), facility.clone(), event);
    let b2 = eventually(Duration::from_secs(90), "the revocation and c1 answered", || async {
        let b2 = outcome("b2").await?;
        outcome("c1").await?;
        Some(b2)
    })
    .await;
    assert_eq!(b2["status"], "revoked");
    assert_eq!(b2["certificateId"], c3.as_str());

    // Event outcomes need a token, and say what happened.
    let unauthenticated = client
        .get(format!("{url}/v1/events/{}", EventId::derive("tests", "a1")))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unauthenticated.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let a2 = outcome("a2").await.unwrap();
    assert_eq!(
        (a2["status"].as_str(), a2["certificateId"].as_str()),
        (Some("issued"), Some(c2.as_str()))
    );
    assert_eq!(a2["superseded"], c1.as_str());

    // Certificates, with their status: personal data, read here by the facility that recorded
    // them (the access tests walk every other reader).
    let get = |path: String| {
        let client = client.clone();
        let url = url.clone();
        let facility = facility.clone();
        async move {
            client
                .get(format!("{url}{path}"))
                .header(header::AUTHORIZATION, &facility)
                .send()
                .await
                .unwrap()
        }
    };
    let response = client
        .get(format!("{url}/v1/certificates/{c2}"))
        .header(header::AUTHORIZATION, &facility)
        .header(header::ACCEPT, "application/vc+ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/vc+ld+json");
    assert_eq!(response.headers()["vaxtrail-certificate-status"], "active");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "private, no-store");
    let c2_text = response.text().await.unwrap();
    // The holder reads it with the code the facility was given; nobody else without a token.
    let holder_code = a2["holderCode"]
        .as_str()
        .expect("an issue carries the holder's code")
        .to_owned();
    let as_holder = client
        .get(format!("{url}/v1/certificates/{c2}"))
        .query(&[("code", holder_code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(as_holder.status(), StatusCode::OK);
    assert_eq!(as_holder.text().await.unwrap(), c2_text);
    let stranger = client.get(format!("{url}/v1/certificates/{c2}")).send().await.unwrap();
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);
    let wrong_code = client
        .get(format!("{url}/v1/certificates/{c2}.pdf"))
        .header("vaxtrail-access-code", &b2["holderCode"].as_str().unwrap().to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_code.status(), StatusCode::FORBIDDEN, "another certificate's code");
    // A blank code is presented, and wrong: refused even beside a token that may read it.
    let blank_code = client
        .get(format!("{url}/v1/certificates/{c2}"))
        .query(&[("code", " ")])
        .header(header::AUTHORIZATION, &facility)
        .send()
        .await
        .unwrap();
    assert_eq!(blank_code.status(), StatusCode::FORBIDDEN, "a blank access code");
    let with_token = client
        .get(format!("{url}/v1/certificates/{c2}"))
        .header(header::AUTHORIZATION, &facility)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK, "the same token without the code");
    let other_facility = client
        .get(format!("{url}/v1/certificates/{c2}/qr.png"))
        .header(header::AUTHORIZATION, auth.bearer("facility-2", &[Role::Facility]))
        .send()
        .await
        .unwrap();
    assert_eq!(other_facility.status(), StatusCode::FORBIDDEN);
    let c2_credential: Value = serde_json::from_str(&c2_text).unwrap();
    let c1_response = get(format!("/v1/certificates/{c1}")).await;
    assert_eq!(
        c1_response.headers()["vaxtrail-certificate-status"],
        format!("superseded; by={c2}").as_str()
    );
    let c1_credential: Value = c1_response.json().await.unwrap();
    let c3_credential: Value = get(format!("/v1/certificates/{c3}")).await.json().await.unwrap();
    // The cache can serve c4 before Postgres knows who recorded it: until then the facility gets
    // 503 (retry), never 403 or 404.
    let c4_credential: Value = eventually(Duration::from_secs(30), "c4 readable by its facility", || async {
        let response = get(format!("/v1/certificates/{c4}")).await;
        match response.status() {
            StatusCode::OK => response.json().await.ok(),
            StatusCode::SERVICE_UNAVAILABLE => None,
            other => panic!("c4: {other} {}", response.text().await.unwrap_or_default()),
        }
    })
    .await;
    // Anyone may read where a certificate stands, and nothing else.
    let status: Value = client
        .get(format!("{url}/v1/certificates/{c3}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status, json!({"certificateId": c3, "status": "revoked"}));
    let nosuch =
        domain::ids::CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "none"));
    let missing = get(format!("/v1/certificates/{nosuch}")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(
        get("/v1/certificates/not%20an%20id".into()).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Verification: valid, superseded, revoked, and invalid for each reason.
    assert_eq!(
        c2_credential["@context"][0], "https://www.w3.org/ns/credentials/v2",
        "VC 2.0"
    );
    assert_eq!(c2_credential["credentialStatus"]["type"], "BitstringStatusListEntry");
    let answer = verify(&client, &url, c2_credential.clone()).await;
    assert_eq!(answer["outcome"], "valid", "{answer}");
    assert_eq!(answer["verificationMethod"], "did:web:certificates.test#key-1");
    // A data model 1.1 credential, as the signer wrote them before VC 2.0 (C2's, in its
    // partition's StatusList2021 list), still verifies.
    let mut earlier = c2_credential.clone();
    let earlier = earlier.as_object_mut().unwrap();
    earlier.remove("proof");
    let valid_from = earlier.remove("validFrom").unwrap();
    earlier.insert("issuanceDate".into(), valid_from);
    earlier.insert(
        "@context".into(),
        json!([
            domain::credential::CREDENTIALS_V1,
            domain::credential::VACCINATION_V1,
            domain::credential::DATA_INTEGRITY_V2
        ]),
    );
    earlier.insert(
        "credentialStatus".into(),
        json!({
            "id": "https://certificates.test/v1/status-lists/0#41",
            "type": "StatusList2021Entry",
            "statusPurpose": "revocation",
            "statusListIndex": "41",
            "statusListCredential": "https://certificates.test/v1/status-lists/0",
        }),
    );
    let earlier = credentials::CredentialSigner::new(issuer.keyring.clone())
        .sign(Value::Object(earlier.clone()))
        .await
        .unwrap()
        .text;
    let answer = verify(&client, &url, serde_json::from_str(&earlier).unwrap()).await;
    assert_eq!(answer["outcome"], "valid", "a data model 1.1 credential: {answer}");
    let answer = verify(&client, &url, c4_credential.clone()).await;
    assert_eq!(answer["outcome"], "valid", "{answer}");
    assert_eq!(
        answer["verificationMethod"], "did:web:certificates.test#key-2",
        "signed after the rotation"
    );
    let answer = verify(&client, &url, c1_credential.clone()).await;
    assert_eq!(
        (answer["outcome"].as_str(), answer["supersededBy"].as_str()),
        (Some("superseded"), Some(c2.as_str()))
    );
    let answer = verify(&client, &url, c3_credential.clone()).await;
    assert_eq!(answer["outcome"], "revoked", "{answer}");
    assert_eq!(answer["revocationReason"], "issued in error");
    assert!(answer["revokedAt"].is_string());
    let mut tampered = c2_credential.clone();
    match &mut tampered["evidence"] {
        Value::Array(items) => items[0]["dose"] = json!(2),
        one => one["dose"] = json!(2),
    }
    let answer = verify(&client, &url, tampered).await;
    assert_eq!(answer["outcome"], "invalid");
    assert!(
        answer["reasons"][0].as_str().unwrap().starts_with("bad signature"),
        "{answer}"
    );
    let mut unknown = c2_credential.clone();
    unknown["proof"]["verificationMethod"] = json!("did:web:certificates.test#key-9");
    let answer = verify(&client, &url, unknown).await;
    assert!(
        answer["reasons"][0].as_str().unwrap().starts_with("unknown key"),
        "{answer}"
    );
    let mut divoc_context = c2_credential.clone();
    divoc_context["@context"][1] = json!("https://cowin.gov.in/credentials/vaccination/v1");
    let answer = verify(&client, &url, divoc_context).await;
    assert!(
        answer["reasons"][0].as_str().unwrap().starts_with("context mismatch"),
        "{answer}"
    );
    let bad = client
        .post(format!("{url}/v1/verify"))
        .json(&json!({"qr": "not base64!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "qr");

    // The status list: signed by the issuer (in the signer, published through the log), C3's bit
    // set, C2's not.
    let list_url = c3_credential["credentialStatus"]["statusListCredential"]
        .as_str()
        .unwrap();
    let path = list_url.strip_prefix("https://certificates.test").unwrap();
    let index = |c: &Value| {
        c["credentialStatus"]["statusListIndex"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let list_text = eventually(Duration::from_secs(60), "the signer's list with C3's bit", || async {
        let response = get(path.to_owned()).await;
        if response.status() != StatusCode::OK {
            return None;
        }
        let text = response.text().await.ok()?;
        let list: Value = serde_json::from_str(&text).ok()?;
        let encoded = list["credentialSubject"]["encodedList"].as_str()?.to_owned();
        query_api::status_list::is_set(&encoded, index(&c3_credential))
            .unwrap()
            .then_some(text)
    })
    .await;
    let verifier = credentials::CredentialVerifier::new(&issuer_keyring(&issuer));
    assert!(
        matches!(verifier.verify(&list_text).await, credentials::Verdict::Valid { .. }),
        "{list_text}"
    );
    let list: Value = serde_json::from_str(&list_text).unwrap();
    assert_eq!(list["type"][1], "BitstringStatusListCredential");
    assert!(
        path.rsplit('/').next().unwrap().parse::<u32>().unwrap() >= 1000,
        "{path}"
    );
    let encoded = list["credentialSubject"]["encodedList"].as_str().unwrap();
    // A list nobody published: 404 (not "retry"), for a partition the deployment has or not.
    for nosuch in ["/v1/status-lists/9000", "/v1/status-lists/1999", "/v1/status-lists/7"] {
        assert_eq!(get(nosuch.into()).await.status(), StatusCode::NOT_FOUND, "{nosuch}");
    }
    if c2_credential["credentialStatus"]["statusListCredential"] == list_url {
        assert!(!query_api::status_list::is_set(encoded, index(&c2_credential)).unwrap());
    }

    // The DID document lists both keys; the context is served, immutable.
    let did: Value = get("/.well-known/did.json".into()).await.json().await.unwrap();
    assert_eq!(did["assertionMethod"].as_array().unwrap().len(), 2, "{did}");
    let v2 = get("/credentials/vaccination/v2".into()).await;
    assert_eq!(v2.status(), StatusCode::OK);
    assert_eq!(v2.text().await.unwrap(), credentials::contexts::VACCINATION_V2_DOCUMENT);
    let context = get("/credentials/vaccination/v1".into()).await;
    assert!(
        context.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let context: Value = context.json().await.unwrap();
    assert!(
        context["@context"]["@protected"].as_bool().unwrap_or(false),
        "{context}"
    );

    // QR PNG and the PDF, decoded with real tools, give back a credential that verifies.
    let scratch = vaxtrail_tests::Scratch::new("query");
    let dir = scratch.0.clone();
    let png = get(format!("/v1/certificates/{c2}/qr.png"))
        .await
        .bytes()
        .await
        .unwrap();
    std::fs::write(dir.join("qr.png"), &png).unwrap();
    let payload = scan(&dir.join("qr.png"));
    let from_qr = query_api::qr::credential_of(&payload).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&from_qr).unwrap(), c2_credential);
    let answer = verify(
        &client,
        &url,
        json!({"qr": base64::engine::general_purpose::STANDARD.encode(&payload)}),
    )
    .await;
    assert_eq!(answer["outcome"], "valid", "{answer}");
    let svg = get(format!("/v1/certificates/{c2}/qr.svg")).await.text().await.unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..80.min(svg.len())]
    );

    let pdf = get(format!("/v1/certificates/{c2}.pdf")).await;
    assert_eq!(pdf.headers()[header::CONTENT_TYPE], "application/pdf");
    std::fs::write(dir.join("certificate.pdf"), pdf.bytes().await.unwrap()).unwrap();
    let rendered = Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(dir.join("certificate.pdf"))
        .arg(dir.join("page"))
        .status()
        .expect("pdftoppm is installed (deploy/local/install)");
    assert!(rendered.success());
    let from_pdf = query_api::qr::credential_of(&scan(&dir.join("page.png"))).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&from_pdf).unwrap(), c2_credential);
    let text = Command::new("pdftotext")
        .arg(dir.join("certificate.pdf"))
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for field in ["Bhaya Mitra", c2.as_str(), "MB3428BY", "Dose", "Batch"] {
        assert!(text.contains(field), "the PDF shows {field}:\n{text}");
    }

    // Recipients: authenticated only; by key and by DIVOC's pre-enrollment code.
    let certificates: Value = client
        .get(format!("{url}/v1/recipients/{}/certificates", person_a.as_str()))
        .header(header::AUTHORIZATION, &facility)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<(&str, &str)> = certificates["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["certificateId"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert!(
        statuses.contains(&(c1.as_str(), "superseded")) && statuses.contains(&(c2.as_str(), "active")),
        "{statuses:?}"
    );
    let by_code = client
        .get(format!("{url}/v1/recipients"))
        .query(&[("preEnrollmentCode", a.pre_enrollment_code.as_str())])
        .header(header::AUTHORIZATION, &facility)
        .send()
        .await
        .unwrap();
    let by_code: Value = by_code.json().await.unwrap();
    assert!(
        by_code["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["recipientKey"] == person_a.as_str())
    );
    let anonymous = client
        .get(format!("{url}/v1/recipients/{}/certificates", person_a.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Audit reads, from the log itself: auditors only.
    let auditor = auth.bearer("auditor-1", &[Role::Auditor]);
    let audit = |query: String| {
        let (client, url, auditor) = (client.clone(), url.clone(), auditor.clone());
        async move {
            let response = client
                .get(format!("{url}/v1/audit/{query}"))
                .header(header::AUTHORIZATION, auditor)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{query}");
            response.json::<Value>().await.unwrap()
        }
    };
    let forbidden = client
        .get(format!("{url}/v1/audit/events?recipient={}", person_b.as_str()))
        .header(header::AUTHORIZATION, &facility)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let events = audit(format!("events?recipient={}", person_b.as_str())).await;
    // An auditor reads positions, digests, keys and event types, not the person: neither the
    // name, the identity nor the date of birth is in the answer.
    let text = events.to_string();
    for personal in [
        b.recipient.name.as_str(),
        b.recipient.identity.as_str(),
        "999988887777",
        "1994-11-30",
    ] {
        assert!(!text.contains(personal), "the audit answer holds {personal:?}");
    }
    let events = events["events"].as_array().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    for wanted in [
        "VaccinationRecorded",
        "RevocationRequested",
        "CertificateIssued",
        "CertificateRevoked",
    ] {
        assert!(types.contains(&wanted), "{types:?}");
    }
    // Each outcome names the SHA-256 of the vaccination record it answers, as read from the log.
    for outcome in events.iter().filter(|e| e.get("sourceSha256").is_some()) {
        let source = events
            .iter()
            .find(|e| e.get("eventId") == outcome.get("answers"))
            .expect("the answered event is listed");
        assert_eq!(outcome["sourceSha256"], source["sha256"]);
        assert_eq!(outcome["source"]["offset"], source["offset"]);
    }
    let by_certificate = audit(format!("events?certificate={c3}")).await;
    assert_eq!(
        by_certificate["events"].as_array().unwrap().len(),
        4,
        "{by_certificate}"
    );
    let since = (chrono::Utc::now() - chrono::Duration::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let by_time = audit(format!("events?from={since}&limit=100")).await;
    assert!(by_time["events"].as_array().unwrap().len() >= 8, "{by_time}");
    // A `from` after now with no `to` is an empty range, not a backwards one (schemathesis
    // found the API refusing it although the document allows it).
    let future = (chrono::Utc::now() + chrono::Duration::days(3650)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let later = audit(format!("events?from={future}")).await;
    assert_eq!(later["events"].as_array().map(Vec::len), Some(0), "{later}");
    let checkpoints = audit("checkpoints".into()).await;
    let checkpoints = checkpoints["checkpoints"].as_array().unwrap();
    assert!(!checkpoints.is_empty(), "the signer checkpoints every outcome here");
    let keyring = issuer_keyring(&issuer);
    for checkpoint in checkpoints {
        let head: [u8; 32] = hex_bytes(checkpoint["chainHead"].as_str().unwrap()).try_into().unwrap();
        let message = credentials::checkpoint::message(
            checkpoint["partition"].as_i64().unwrap() as i32,
            checkpoint["lastOffset"].as_i64().unwrap(),
            &head,
        );
        let signature: [u8; 64] = hex_bytes(checkpoint["signature"].as_str().unwrap()).try_into().unwrap();
        let method = format!(
            "{}#{}",
            vaxtrail_tests::signer::DID,
            checkpoint["keyId"].as_str().unwrap()
        );
        let method = if checkpoint["keyId"].as_str().unwrap().starts_with("did:") {
            checkpoint["keyId"].as_str().unwrap().to_owned()
        } else {
            method
        };
        keyring
            .verify(&method, &message, &ed25519_dalek::Signature::from_bytes(&signature))
            .expect("the checkpoint's signature verifies");
    }

    // Every documented path is served (a 404 would be a route the document invented).
    let document: Value = get("/openapi.json".into()).await.json().await.unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 19, "{}", paths.len());
    for (path, operations) in paths {
        let concrete = path
            .replace("{id}", &c2)
            .replace("{eventId}", &EventId::derive("tests", "a1").to_string())
            .replace("{key}", person_a.as_str())
            .replace("{list}", "0");
        let request = if operations.get("post").is_some() {
            client.post(format!("{url}{concrete}")).json(&c2_credential)
        } else {
            client.get(format!("{url}{concrete}"))
        };
        let response = request.header(header::AUTHORIZATION, &auditor).send().await.unwrap();
        let status = response.status();
        // A handler's 404 is a problem document (an unknown id, a format not issued); a route
        // that does not exist answers a bare 404.
        let problem = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|c| c == "application/problem+json");
        assert!(
            status != StatusCode::NOT_FOUND || problem,
            "{path} is documented but not served"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }

    // Redis flushed: the same answers, from Postgres.
    stack.flush_redis().await;
    let answer = verify(&client, &url, c3_credential.clone()).await;
    assert_eq!(answer["outcome"], "revoked", "{answer}");
    let answer = verify(&client, &url, c1_credential.clone()).await;
    assert_eq!(answer["outcome"], "superseded", "{answer}");
    let after = get(format!("/v1/certificates/{c1}")).await;
    assert_eq!(
        after.headers()["vaxtrail-certificate-status"],
        format!("superseded; by={c2}").as_str()
    );
    let list_after: Value = get(path.to_owned()).await.json().await.unwrap();
    assert!(
        query_api::status_list::is_set(
            list_after["credentialSubject"]["encodedList"].as_str().unwrap(),
            index(&c3_credential)
        )
        .unwrap()
    );

    // Stores that cannot answer: 503 with Retry-After, never "invalid".
    let down_query = inprocess::query_api(&stack, &issuer.dir, &auth, |config| {
        config.postgres.url = "postgres://postgres@127.0.0.1:9/vaxtrail".parse().unwrap();
        config.redis.url = "redis://127.0.0.1:9".parse().unwrap();
    })
    .await;
    let down_url = &down_query.url;
    let response = client
        .post(format!("{down_url}/v1/verify"))
        .json(&c2_credential)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));

    signer.stop_cleanly().await;
    projectors.stop().await;
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn issuer_keyring(issuer: &Issuer) -> credentials::Keyring {
    credentials::Keyring::load(vaxtrail_tests::signer::DID, &issuer.dir, Some("key-2")).unwrap()
}
