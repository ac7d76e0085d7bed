//! SMART Health Cards on the real stack: the signer issues a card beside each W3C credential
//! and logs it (sealed) in the certificate record; the query API serves the JWS, its `shc:/`
//! text and QR code, the JWKS (with CORS) and each key's revocation list; an independent JOSE
//! library (jwcrypto, PyPI) verifies the card against the published JWKS; a revocation reaches
//! the card's `rid` in the list and `POST /v1/verify`.

use std::time::Duration;

use domain::{
    events::VaccinationPayload,
    ids::{CertificateId, EventId},
    values::{Identity, Text},
};
use platform::auth::Role;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use vaxtrail_tests::{
    Scratch, TestAuth, TestStack, eventually, fixtures, inprocess, shc_verify,
    signer::{EventWriter, Issuer, envelope, recipient},
    zbar_scan,
};

fn id_of(event: &str) -> String {
    CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", event))
        .as_str()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_health_cards_issued_served_verified_independently_and_revoked() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let auth = TestAuth::new();
    let scratch = Scratch::new("shc");
    let keys = scratch.0.join("keys");
    let public = scratch.0.join("public");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("shc-1.pem"), credentials::shc::generate_pem()).unwrap();
    credentials::shc::publish(&keys, &public).unwrap();

    let dir = keys.clone();
    let signer = inprocess::signer(&stack, &issuer.dir, move |c| {
        c.shc.keys = Some(dir);
        c.shc.active = None;
        // The cards' issuer is the query API's public URL (where its JWKS is served).
        c.issuer.public_base_url = "https://certificates.test".into();
    })
    .await;
    let projectors = inprocess::projectors(&stack, |_| {}).await;
    let trusted = public.clone();
    let query = inprocess::query_api(&stack, &issuer.dir, &auth, move |c| c.shc.public = Some(trusted)).await;
    let url = query.url.clone();

    // A: recorded. B: recorded, then revoked.
    let a = fixtures::divoc_record();
    let mut b = a.clone();
    b.recipient.identity = Identity::parse("identity", "did:in.gov.uidai.aadhaar:999988887777").unwrap();
    let (person_a, person_b) = (
        recipient(a.recipient.identity.as_str()),
        recipient(b.recipient.identity.as_str()),
    );
    writer
        .append(&envelope(
            "a1",
            person_a,
            VaccinationPayload::VaccinationRecorded(a.clone()),
        ))
        .await;
    writer
        .append(&envelope(
            "b1",
            person_b.clone(),
            VaccinationPayload::VaccinationRecorded(b),
        ))
        .await;
    let revoke = VaccinationPayload::RevocationRequested {
        certificate_id: CertificateId::parse("c", &id_of("b1")).unwrap(),
        reason: Text::parse("reason", "issued in error").unwrap(),
    };
    writer.append(&envelope("b2", person_b, revoke)).await;

    let client = reqwest::Client::new();
    let facility = auth.bearer("tests", &[Role::Facility]);
    let get = |path: String| {
        let (client, url, facility) = (client.clone(), url.clone(), facility.clone());
        async move {
            client
                .get(format!("{url}{path}"))
                .header(header::AUTHORIZATION, &facility)
                .send()
                .await
                .unwrap()
        }
    };
    let (ca, cb) = (id_of("a1"), id_of("b1"));
    eventually(
        Duration::from_secs(90),
        "the cards and the revocation projected",
        || async {
            let revoked: Value = get(format!("/v1/certificates/{cb}/status")).await.json().await.ok()?;
            (revoked["status"] == "revoked").then_some(())?;
            for id in [&ca, &cb] {
                (get(format!("/v1/certificates/{id}/shc")).await.status() == StatusCode::OK).then_some(())?;
            }
            Some(())
        },
    )
    .await;

    // Served as personal data; the JWKS and the revocation list are public, with CORS.
    let anonymous = client
        .get(format!("{url}/v1/certificates/{ca}/shc"))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ));
    let card_a: Value = get(format!("/v1/certificates/{ca}/shc")).await.json().await.unwrap();
    let card_b: Value = get(format!("/v1/certificates/{cb}/shc")).await.json().await.unwrap();
    assert_eq!(card_b["status"], "revoked");
    let jwks = client.get(format!("{url}/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    assert_eq!(jwks.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let jwks: Value = jwks.json().await.unwrap();
    assert!(jwks["keys"][0].get("d").is_none(), "no private member: {jwks}");
    let kid = card_a["kid"].as_str().unwrap().to_owned();
    let crl = client
        .get(format!("{url}/.well-known/crl/{kid}.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(crl.status(), StatusCode::OK);
    assert_eq!(crl.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let crl: Value = crl.json().await.unwrap();
    assert_eq!(crl["rids"].as_array().unwrap().len(), 1, "{crl}");
    assert_eq!(crl["ctr"], 1);
    let unknown = client
        .get(format!("{url}/.well-known/crl/nope.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // The independent verifier.
    let (qr_a, qr_b) = (
        card_a["qr"].as_str().unwrap().to_owned(),
        card_b["qr"].as_str().unwrap().to_owned(),
    );
    let mut tampered = qr_a.clone().into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'1' { b'2' } else { b'1' };
    let tampered = String::from_utf8(tampered).unwrap();
    let verdicts = shc_verify(&json!({
        "cards": [qr_a, qr_b, tampered.clone()],
        "jwks": jwks,
        "crls": {kid.clone(): crl},
    }));
    let v = &verdicts[0];
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["kid"], kid.as_str());
    assert_eq!(v["iss"], "https://certificates.test");
    assert_eq!(v["fhirVersion"], "4.0.1");
    assert_eq!(v["resources"], json!(["Patient", "Immunization"]));
    assert_eq!(
        v["types"],
        json!([
            "https://smarthealth.cards#health-card",
            "https://smarthealth.cards#immunization"
        ])
    );
    let immunization = &v["bundle"]["entry"][1]["resource"];
    assert_eq!(immunization["status"], "completed");
    assert_eq!(
        immunization["vaccineCode"]["coding"][0]["code"],
        a.vaccination.vaccine.icd11_code.as_str()
    );
    assert_eq!(immunization["lotNumber"], a.vaccination.batch.as_str());
    assert_eq!(
        v["bundle"]["entry"][0]["resource"]["name"][0]["text"],
        a.recipient.name.as_str()
    );
    assert_eq!(v["revoked"], false);
    assert_eq!(verdicts[1]["valid"], true, "{}", verdicts[1]);
    assert_eq!(verdicts[1]["revoked"], true, "the revoked card's rid is in the list");
    assert_eq!(verdicts[2]["valid"], false, "{}", verdicts[2]);

    // The QR code: numeric mode, within version 22, read back as the same text.
    let png = get(format!("/v1/certificates/{ca}/shc.png")).await;
    assert_eq!(png.status(), StatusCode::OK);
    let version: usize = png.headers()["vaxtrail-qr-version"].to_str().unwrap().parse().unwrap();
    let image = scratch.file("shc.png", png.bytes().await.unwrap());
    assert_eq!(String::from_utf8(zbar_scan(&image)).unwrap().trim_end(), card_a["qr"]);
    println!(
        "SMART Health Card QR: version {version} (ECC L), JWS {} characters",
        v["jwsLength"]
    );
    assert!(version <= 22, "version {version}");
    // The printable certificate carrying the card's code.
    let pdf = get(format!("/v1/certificates/{ca}/shc.pdf")).await;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()[header::CONTENT_TYPE], "application/pdf");
    let pdf = scratch.file("shc.pdf", pdf.bytes().await.unwrap());
    let rendered = std::process::Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(&pdf)
        .arg(scratch.0.join("page"))
        .status()
        .expect("pdftoppm is installed (deploy/local/install)");
    assert!(rendered.success());
    assert_eq!(
        String::from_utf8(zbar_scan(&scratch.0.join("page.png")))
            .unwrap()
            .trim_end(),
        card_a["qr"]
    );

    // POST /v1/verify recognises shc:/.
    let verify = |text: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .post(format!("{url}/v1/verify"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(text)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let answer = verify(card_a["qr"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (answer["outcome"].as_str(), answer["format"].as_str()),
        (Some("valid"), Some("shc")),
        "{answer}"
    );
    assert_eq!(answer["certificateId"], ca.as_str());
    let answer = verify(card_b["qr"].as_str().unwrap().to_owned()).await;
    assert_eq!(answer["outcome"], "revoked", "{answer}");
    let answer = verify(tampered).await;
    assert_eq!(answer["outcome"], "invalid", "{answer}");

    query.stop().await;
    projectors.stop().await;
    signer.stop().await;
}
