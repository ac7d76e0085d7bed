//! EU Digital COVID Certificates on the real stack: the signer issues an HCERT beside each W3C
//! credential of a mapped vaccine and logs it (sealed) in the certificate record; the query API
//! serves it and its QR code; an independent verifier (pycose, base45, cbor2 and jsonschema from
//! PyPI) checks the signature against the published trust list and the payload against the EU
//! DCC JSON schema; a revocation reaches the EU DCC; an unmapped vaccine gets none, by name.

use std::time::Duration;

use credentials::hcert::dsc;
use domain::{
    events::VaccinationPayload,
    ids::{CertificateId, EventId},
    values::{Identity, Text},
};
use platform::auth::Role;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use vaxtrail_tests::{
    Scratch, TestAuth, TestStack, eventually, fixtures, hcert_verify, inprocess, repo_root,
    signer::{EventWriter, Issuer, envelope, recipient},
    zbar_scan,
};

fn id_of(event: &str) -> String {
    CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", event))
        .as_str()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eu_dcc_issued_logged_served_verified_independently_and_revoked() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let auth = TestAuth::new();
    let scratch = Scratch::new("eu-dcc");
    let signers = scratch.0.join("signers");
    let public = scratch.0.join("public");
    std::fs::create_dir_all(&signers).unwrap();
    std::fs::write(
        signers.join("dsc-1.pem"),
        dsc::generate("IN", "Ministry of Health", "test DSC", 60).unwrap(),
    )
    .unwrap();
    dsc::publish(&signers, &public).unwrap();

    let dir = signers.clone();
    let signer = inprocess::signer(&stack, &issuer.dir, move |c| {
        c.eu_dcc.signers = Some(dir);
        c.eu_dcc.active = None;
    })
    .await;
    let projectors = inprocess::projectors(&stack, |_| {}).await;
    let trusted = public.clone();
    let query = inprocess::query_api(&stack, &issuer.dir, &auth, move |c| c.eu_dcc.public = Some(trusted)).await;
    let url = query.url.clone();

    // A: Covaxin (mapped). B: Covishield, then revoked. Z: ZyCoV-D (in no EU value set).
    let a = fixtures::divoc_record();
    let mut b = a.clone();
    b.recipient.identity = Identity::parse("identity", "did:in.gov.uidai.aadhaar:999988887777").unwrap();
    b.vaccination.vaccine.name = "covishield".into();
    let mut z = a.clone();
    z.recipient.identity = Identity::parse("identity", "did:in.gov.uidai.aadhaar:555566667777").unwrap();
    z.vaccination.vaccine.name = "ZyCoV-D".into();
    let (person_a, person_b, person_z) = (
        recipient(a.recipient.identity.as_str()),
        recipient(b.recipient.identity.as_str()),
        recipient(z.recipient.identity.as_str()),
    );
    for (event, person, record) in [("a1", &person_a, &a), ("b1", &person_b, &b), ("z1", &person_z, &z)] {
        writer
            .append(&envelope(
                event,
                person.clone(),
                VaccinationPayload::VaccinationRecorded(record.clone()),
            ))
            .await;
    }
    // T: three doses of three (their third certificate lists the first two).
    let mut t = a.clone();
    t.recipient.identity = Identity::parse("identity", "did:in.gov.uidai.aadhaar:333344445555").unwrap();
    let person_t = recipient(t.recipient.identity.as_str());
    for n in 1..=3 {
        t.vaccination.dose = domain::values::Dose::new(n, 3).unwrap();
        t.vaccination.batch = Text::parse("batch", &format!("T{n}")).unwrap();
        writer
            .append(&envelope(
                ["t1", "t2", "t3"][n as usize - 1],
                person_t.clone(),
                VaccinationPayload::VaccinationRecorded(t.clone()),
            ))
            .await;
    }
    let revoke = VaccinationPayload::RevocationRequested {
        certificate_id: CertificateId::parse("c", &id_of("b1")).unwrap(),
        reason: Text::parse("reason", "issued in error").unwrap(),
    };
    writer.append(&envelope("b2", person_b.clone(), revoke)).await;

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
    let (ca, cb, cz) = (id_of("a1"), id_of("b1"), id_of("z1"));
    eventually(
        Duration::from_secs(90),
        "the certificates and the revocation projected",
        || async {
            let revoked = get(format!("/v1/certificates/{cb}/status")).await;
            let revoked: Value = revoked.json().await.ok()?;
            (revoked["status"] == "revoked").then_some(())?;
            // Read through Postgres (the cache may answer first).
            (get(format!("/v1/certificates/{ca}/eu-dcc")).await.status() == StatusCode::OK).then_some(())?;
            (get(format!("/v1/certificates/{cb}/eu-dcc")).await.status() == StatusCode::OK).then_some(())?;
            (get(format!("/v1/certificates/{cz}/eu-dcc")).await.status() == StatusCode::NOT_FOUND).then_some(())?;
            (get(format!("/v1/certificates/{}/eu-dcc", id_of("t3"))).await.status() == StatusCode::OK).then_some(())?;
            Some(())
        },
    )
    .await;

    // Served: personal data like the credential (no token, no code: refused).
    let anonymous = client
        .get(format!("{url}/v1/certificates/{ca}/eu-dcc"))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(anonymous.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
        "{}",
        anonymous.status()
    );
    let response = get(format!("/v1/certificates/{ca}/eu-dcc")).await;
    let status = response.status();
    let cache_control = response.headers().get(header::CACHE_CONTROL).cloned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(cache_control.unwrap(), "private, no-store");
    let hc1_a = body["hc1"].as_str().unwrap().to_owned();
    assert!(hc1_a.starts_with("HC1:"), "{hc1_a}");
    assert_eq!(body["status"], "active");
    let hc1_b = get(format!("/v1/certificates/{cb}/eu-dcc"))
        .await
        .json::<Value>()
        .await
        .unwrap()["hc1"]
        .as_str()
        .unwrap()
        .to_owned();

    // The unmapped vaccine: its W3C credential, and no EU DCC, saying which vaccine.
    let none = get(format!("/v1/certificates/{cz}/eu-dcc")).await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    assert_eq!(none.headers()[header::CONTENT_TYPE], "application/problem+json");
    let problem: Value = none.json().await.unwrap();
    assert!(problem["type"].as_str().unwrap().ends_with("no-eu-dcc"), "{problem}");
    assert_eq!(get(format!("/v1/certificates/{cz}")).await.status(), StatusCode::OK);

    // The trust list: certificates, never keys.
    let trust = client.get(format!("{url}/v1/trust-lists/eu-dcc")).send().await.unwrap();
    assert_eq!(trust.status(), StatusCode::OK);
    assert_eq!(trust.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let trust: Value = trust.json().await.unwrap();
    assert_eq!(trust["certificates"].as_array().unwrap().len(), 1);
    assert!(!trust.to_string().contains("PRIVATE"));

    // The independent verifier: signature, kid, claims, and the EU DCC JSON schema.
    let schema = repo_root().join("tests/fixtures/eu-dcc/DCC.combined-schema.json");
    let mut tampered = hc1_a.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let verdicts = hcert_verify(&json!({
        "certificates": [hc1_a, hc1_b, tampered.clone()],
        "trustList": trust,
        "schema": schema,
    }));
    assert_eq!(verdicts[0]["valid"], true, "{}", verdicts[0]);
    assert_eq!(verdicts[0]["alg"], "ES256");
    assert_eq!(verdicts[0]["kid"], body["kid"]);
    assert_eq!(verdicts[0]["iss"], "IN");
    let (iat, exp) = (
        verdicts[0]["iat"].as_i64().unwrap(),
        verdicts[0]["exp"].as_i64().unwrap(),
    );
    assert!(
        iat < exp && exp <= verdicts[0]["dscNotAfter"].as_i64().unwrap(),
        "{}",
        verdicts[0]
    );
    let v = &verdicts[0]["payload"]["v"][0];
    assert_eq!(v["mp"], "Covaxin");
    assert_eq!(v["ma"], "Bharat-Biotech");
    assert_eq!(v["tg"], "840539006");
    assert_eq!(v["dn"], i64::from(a.vaccination.dose.number()));
    assert_eq!(v["ci"], format!("URN:UVCI:01:IN:{ca}"));
    assert_eq!(verdicts[0]["payload"]["nam"]["fn"], a.recipient.name.as_str());
    assert_eq!(verdicts[1]["valid"], true, "{}", verdicts[1]);
    assert_eq!(verdicts[1]["payload"]["v"][0]["mp"], "Covishield");
    assert_eq!(verdicts[2]["valid"], false, "{}", verdicts[2]);

    // Its QR code: alphanumeric at ECC level Q, small, and what a scanner reads is the text.
    let png = get(format!("/v1/certificates/{ca}/eu-dcc.png")).await;
    assert_eq!(png.status(), StatusCode::OK);
    let qr_version: usize = png.headers()["vaxtrail-qr-version"].to_str().unwrap().parse().unwrap();
    let image = scratch.file("eu-dcc.png", png.bytes().await.unwrap());
    assert_eq!(String::from_utf8(zbar_scan(&image)).unwrap().trim_end(), hc1_a);
    let credential = get(format!("/v1/certificates/{ca}")).await.text().await.unwrap();
    let w3c_version = query_api::qr::code(&query_api::qr::payload(&credential))
        .unwrap()
        .width()
        .saturating_sub(17)
        / 4;
    println!(
        "QR versions, dose {}: EU DCC {qr_version} ({} characters, ECC Q), W3C {w3c_version} (ECC M)",
        a.vaccination.dose.number(),
        hc1_a.len()
    );
    // The issue's goal is version 15; the payload the schema requires (with a 37-character
    // issuer name and a UVCI) needs about 525 characters, version 17 at level Q (README).
    assert!(qr_version <= 17, "an EU DCC needs QR version {qr_version}, above 17");
    assert!(qr_version < w3c_version, "EU DCC {qr_version}, W3C {w3c_version}");
    // The third of three doses: the W3C credential lists the earlier doses; an EU DCC carries
    // the latest alone.
    let t3 = id_of("t3");
    let t3_credential = get(format!("/v1/certificates/{t3}")).await.text().await.unwrap();
    let t3_w3c = query_api::qr::code(&query_api::qr::payload(&t3_credential))
        .unwrap()
        .width()
        .saturating_sub(17)
        / 4;
    let t3_eu = get(format!("/v1/certificates/{t3}/eu-dcc.png")).await;
    let t3_eu: usize = t3_eu.headers()["vaxtrail-qr-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    println!("QR versions, dose 3 of 3: EU DCC {t3_eu} (ECC Q), W3C {t3_w3c} (ECC M)");
    assert!(
        t3_w3c >= w3c_version && t3_eu <= qr_version + 1,
        "W3C {t3_w3c}, EU DCC {t3_eu}"
    );
    // The PDF carries the EU DCC's code when asked.
    let pdf = get(format!("/v1/certificates/{ca}/eu-dcc.pdf")).await;
    assert_eq!(pdf.status(), StatusCode::OK);
    let pdf = scratch.file("eu-dcc.pdf", pdf.bytes().await.unwrap());
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
        hc1_a
    );
    let none = get(format!("/v1/certificates/{cz}/eu-dcc.pdf")).await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    let svg = get(format!("/v1/certificates/{ca}/eu-dcc.svg")).await;
    assert_eq!(svg.headers()[header::CONTENT_TYPE], "image/svg+xml");

    // POST /v1/verify recognises HC1: and says where the certificate stands.
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
    let answer = verify(hc1_a.clone()).await;
    assert_eq!(
        (answer["outcome"].as_str(), answer["format"].as_str()),
        (Some("valid"), Some("eu-dcc"))
    );
    assert_eq!(answer["certificateId"], ca.as_str());
    let answer = verify(hc1_b.clone()).await;
    assert_eq!(answer["outcome"], "revoked", "{answer}");
    assert_eq!(answer["revocationReason"], "issued in error");
    let answer = verify(tampered).await;
    assert_eq!(answer["outcome"], "invalid", "{answer}");
    // As JSON, the way the verifier page posts what it scanned.
    let answer: Value = client
        .post(format!("{url}/v1/verify"))
        .json(&json!({"qr": hc1_a}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["outcome"], "valid", "{answer}");
    let refused = client
        .post(format!("{url}/v1/verify"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    query.stop().await;
    projectors.stop().await;
    signer.stop().await;
}
