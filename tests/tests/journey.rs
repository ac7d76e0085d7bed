//! A certificate's whole life, end to end, with the four services as processes and driven over
//! HTTP as their users drive them: DIVOC's sample certify request is accepted, the certificate is
//! issued and fetched, its QR code (decoded by zbar from the PNG) verifies, a controller revokes
//! it, the same QR code then verifies as revoked, and the vaccination certified again gives a new
//! certificate that verifies as valid; `vaxctl audit events` then reads the certificate's records
//! from the log. The services log at `info` throughout, and afterwards neither their logs nor their
//! metrics hold the recipient's name, identity, phone number or address. Also `vaxctl keys
//! rotate` on a key directory.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vaxtrail_tests::{
    e2e::{Deployment, certified, recipient_of},
    eventually, fixtures,
    signer::Issuer,
};

/// Decodes the QR code in a PNG with zbar: the payload bytes.
fn scan(png: &[u8]) -> Vec<u8> {
    let dir = vaxtrail_tests::Scratch::new("qr");
    vaxtrail_tests::zbar_scan(&dir.file("qr.png", png))
}

/// The trace the journey's first vaccination is posted under.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Posts DIVOC's sample record with an Idempotency-Key under the W3C trace context [`TRACE_ID`];
/// the accepted event id.
async fn certify(client: &reqwest::Client, command: &str, token: &str, key: &str) -> String {
    let response = client
        .post(format!("{command}/v1/certify"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&fixtures::divoc_certify_request())
        .send()
        .await
        .expect("the command API answers");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("JSON");
    let id = body.to_string();
    let start = id.find("\"eventId\":\"").expect("an eventId") + 11;
    id[start..start + 36].to_owned()
}

/// The certificate an event was answered with, once the query API has it, and the holder's
/// access code the facility hands to the recipient.
async fn certificate_of(query: &str, token: &str, event: &str) -> (String, String) {
    let answer = certified(query, token, event, Duration::from_secs(120)).await;
    let text = |field: &str| answer[field].as_str().expect("the answer names it").to_owned();
    (text("certificateId"), text("holderCode"))
}

/// The certificate's QR code, as the PNG the query API serves its holder.
async fn qr_png(client: &reqwest::Client, query: &str, (certificate, code): &(String, String)) -> Vec<u8> {
    client
        .get(format!("{query}/v1/certificates/{certificate}/qr.png"))
        .query(&[("code", code)])
        .send()
        .await
        .expect("the QR code")
        .bytes()
        .await
        .expect("PNG bytes")
        .to_vec()
}

async fn verify_qr(client: &reqwest::Client, query: &str, payload: &[u8]) -> Value {
    let response = client
        .post(format!("{query}/v1/verify"))
        .json(&json!({ "qr": base64::engine::general_purpose::STANDARD.encode(payload) }))
        .send()
        .await
        .expect("the query API answers");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divoc_sample_issued_verified_revoked_and_certified_again() {
    let issuer = Issuer::new();
    let mut deployment = Deployment::on_own_cluster(&issuer).await;
    // The sample names "CoVax": the programme's master list has it, as DIVOC's deployments did.
    let list = vaxtrail_tests::TempFile::with(&fixtures::master_list_with_covax());
    let list_path = list.path();
    // Each service logs the records it handles under their trace ids, and everything else at info.
    let traced = [
        ("VAXTRAIL_LOG", "info,vaxtrail_trace=debug"),
        ("VAXTRAIL_LOG_FORMAT", "json"),
    ];
    deployment
        .start(
            "command-api",
            &[&traced[..], &[("VAXTRAIL_VACCINE_MASTER_LIST", list_path.as_str())]].concat(),
        )
        .await;
    for name in ["signer-worker", "projectors", "query-api"] {
        deployment.start(name, &traced).await;
    }
    let (command, query) = (deployment.url("command-api"), deployment.url("query-api"));
    let facility = deployment.token("facility").await;
    let controller = deployment.token("controller").await;
    let client = reqwest::Client::new();

    // Issued and fetched.
    let event = certify(&client, &command, &facility, "journey-1").await;
    let held = certificate_of(&query, &facility, &event).await;
    let certificate = held.0.clone();
    let credential: Value = client
        .get(format!("{query}/v1/certificates/{certificate}"))
        .header("Vaxtrail-Access-Code", &held.1)
        .send()
        .await
        .expect("the certificate")
        .json()
        .await
        .expect("JSON");
    let sample = fixtures::divoc_certify_request();
    assert_eq!(
        credential["credentialSubject"]["name"], sample[0]["recipient"]["name"],
        "the credential names the sample's recipient"
    );

    // The vaccination's path, under the caller's trace id: appended by the command API, answered
    // by the signer, applied by every projection (its record and its outcome).
    eventually(Duration::from_secs(60), "every service logging the trace", || async {
        let lines = |name: &str, index: usize| -> Vec<Value> {
            deployment
                .log(name, index)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["trace_id"] == TRACE_ID)
                .collect()
        };
        let said = |lines: &[Value], message: &str| lines.iter().filter(|l| l["message"] == message).count();
        let projected = lines("projectors", 2);
        let path = [
            said(&lines("command-api", 0), "appending the event"),
            said(&lines("signer-worker", 1), "answered"),
            projected
                .iter()
                .filter(|l| l["topic"].as_str().is_some_and(|t| t.ends_with("vaccination-events")))
                .count(),
            projected
                .iter()
                .filter(|l| l["topic"].as_str().is_some_and(|t| t.ends_with("certificate-events")))
                .count(),
        ];
        // Three projections apply the record and its outcome.
        (path[0] >= 1 && path[1] >= 1 && path[2] >= 3 && path[3] >= 3).then_some(())
    })
    .await;

    // Its QR code, decoded by zbar, verifies.
    let payload = scan(&qr_png(&client, &query, &held).await);
    let verdict = verify_qr(&client, &query, &payload).await;
    assert_eq!(verdict["outcome"], "valid", "{verdict}");
    assert_eq!(verdict["certificateId"], certificate.as_str());

    // A controller revokes it.
    let code = sample[0]["preEnrollmentCode"].as_str().expect("a code");
    let recipient = recipient_of(&query, &facility, code, Duration::from_secs(60)).await;
    let revoked = client
        .post(format!("{command}/v1/revocations"))
        .bearer_auth(&controller)
        .header("Idempotency-Key", "journey-revoke")
        .json(&json!({ "certificateId": certificate, "reason": "issued in error", "recipientKey": recipient }))
        .send()
        .await
        .expect("the command API answers");
    assert_eq!(revoked.status(), StatusCode::ACCEPTED);

    // The same QR code now verifies as revoked, with the reason.
    let verdict = eventually(Duration::from_secs(120), "the revocation to be seen", || async {
        let verdict = verify_qr(&client, &query, &payload).await;
        (verdict["outcome"] == "revoked").then_some(verdict)
    })
    .await;
    assert_eq!(verdict["revocationReason"], "issued in error", "{verdict}");

    // Certified again: a new certificate, valid; the old one stays revoked.
    let again = certify(&client, &command, &facility, "journey-2").await;
    let renewed = certificate_of(&query, &facility, &again).await;
    assert_ne!(renewed.0, certificate);
    let verdict = verify_qr(&client, &query, &scan(&qr_png(&client, &query, &renewed).await)).await;
    assert_eq!(verdict["outcome"], "valid", "{verdict}");
    let old = verify_qr(&client, &query, &payload).await;
    assert_eq!(old["outcome"], "revoked", "{old}");

    // What an auditor reads of that certificate, from the log itself: the vaccination, its
    // issuance, the revocation and its outcome, each with its hashes.
    let read: Value = serde_json::from_str(
        &deployment
            .vaxctl_ok(&["audit", "events", "--certificate", &certificate])
            .await,
    )
    .expect("JSON");
    let kinds: Vec<&str> = read["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventType"].as_str().unwrap_or_default())
        .collect();
    for kind in ["VaccinationRecorded", "CertificateIssued", "CertificateRevoked"] {
        assert!(kinds.contains(&kind), "{kind} among {kinds:?}");
    }
    assert!(
        read["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["sha256"].as_str().is_some_and(|h| h.len() == 64)),
        "{read}"
    );
    // No personal data in what operators' tools collect: every service's log and metrics.
    let sample = fixtures::divoc_certify_request();
    let recipient = &sample[0]["recipient"];
    let personal = [
        recipient["name"].as_str().expect("a name"),
        recipient["identity"].as_str().expect("an identity"),
        "2342343334",
        "9880414889",
        recipient["address"]["addressLine1"].as_str().expect("an address"),
    ];
    let mut seen = 0;
    for (index, service) in deployment.services.iter().enumerate() {
        let log = deployment.log(&service.name, index);
        let metrics = reqwest::get(format!("http://{}/metrics", service.address))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        seen += log.lines().count();
        for value in personal {
            assert!(!log.contains(value), "{}'s log holds {value:?}", service.name);
            assert!(!metrics.contains(value), "{}'s metrics hold {value:?}", service.name);
        }
    }
    assert!(seen > 20, "the services logged at info ({seen} lines)");
    deployment.stop_all().await;
}

/// `vaxctl keys rotate`: a new key signs, every other key is kept as a public key only.
#[test]
fn keys_rotate_leaves_one_signing_key_and_keeps_the_old_ones_published() {
    let issuer = Issuer::new();
    let dir = issuer.dir.display().to_string();
    let rotate = |id: &str| {
        let out = std::process::Command::new(vaxtrail_tests::bin_dir().join("vaxctl"))
            .args(["keys", "rotate", "--dir", &dir, "--id", id])
            .output()
            .expect("vaxctl was built");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    rotate("key-2");
    rotate("key-3");
    let keyring = credentials::Keyring::load(vaxtrail_tests::signer::DID, &issuer.dir, None)
        .expect("exactly one private key is left");
    assert_eq!(keyring.active().id, "key-3");
    let ids: Vec<&str> = keyring.keys().iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["key-1", "key-2", "key-3"]);
    assert_eq!(keyring.keys().iter().filter(|k| k.can_sign()).count(), 1);
}
