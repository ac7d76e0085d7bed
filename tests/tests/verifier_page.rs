//! The verifier page in a real browser (Debian's Chromium driven by playwright-core), fed QR codes
//! through a fake camera: a certificate the real signer issued verifies as valid in the browser;
//! then the query API is stopped (the network is cut for real, and the browser context is
//! offline too) and the page, reloaded from its service worker, still verifies it, saying how old
//! its revocation lists are; a revoked certificate shows revoked from the kept list; a tampered
//! one shows invalid, in Hindi when asked; with no list kept, the page says revocation could not be
//! checked, not that the certificate is invalid. Screenshots are kept as CI artifacts.

use std::{path::Path, time::Duration};

use domain::{
    events::VaccinationPayload,
    ids::{CertificateId, EventId},
    values::{Identity, Text},
};
use platform::auth::Role;
use reqwest::{StatusCode, header};
use serde_json::Value;
use vaxtrail_tests::{
    TestAuth, TestStack, eventually, fixtures, inprocess,
    signer::{self, EventWriter, Issuer, envelope, recipient},
};

fn id_of(event: &str) -> String {
    CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", event))
        .as_str()
        .to_owned()
}

/// A Y4M video (what Chromium's fake camera plays) of the DIVOC QR code of `credential`: a few
/// identical 640 × 640 frames, the code at 4 pixels a module in the middle.
fn camera(file: &Path, credential: &str) {
    let code = query_api::qr::code(&query_api::qr::payload(credential)).expect("a QR code");
    let qr = image::load_from_memory(&query_api::qr::png(&code, 4))
        .expect("the PNG decodes")
        .to_luma8();
    let side = 640_usize;
    let (w, h) = (qr.width() as usize, qr.height() as usize);
    assert!(w <= side && h <= side, "the code ({w} px) fits the frame");
    let mut luma = vec![255_u8; side * side];
    let (x0, y0) = ((side - w) / 2, (side - h) / 2);
    for (x, y, pixel) in qr.enumerate_pixels() {
        luma[(y0 + y as usize) * side + x0 + x as usize] = pixel.0[0];
    }
    let mut video = format!("YUV4MPEG2 W{side} H{side} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for _ in 0..3 {
        video.extend_from_slice(b"FRAME\n");
        video.extend_from_slice(&luma);
        video.extend(std::iter::repeat_n(128_u8, side * side / 2)); // U and V: grey
    }
    std::fs::write(file, video).expect("writing the camera file");
}

/// Runs tests/browser/verifier.mjs once: what the page showed.
async fn scan(url: &str, profile: &Path, camera: &Path, env: &[(&str, &str)], screenshot: &Path) -> Value {
    let mut all: Vec<(&str, &std::ffi::OsStr)> = vec![
        ("VERIFY_URL", url.as_ref()),
        ("PROFILE", profile.as_os_str()),
        ("CAMERA", camera.as_os_str()),
        ("SCREENSHOT", screenshot.as_os_str()),
    ];
    all.extend(env.iter().map(|(k, v)| (*k, v.as_ref())));
    let seen = vaxtrail_tests::browser_script("verifier.mjs", &all).await;
    assert_eq!(seen["errors"], serde_json::json!([]), "errors on the page: {seen}");
    assert!(
        std::fs::metadata(screenshot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        screenshot.display()
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_page_verifies_scanned_codes_in_the_browser_and_without_a_network() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let auth = TestAuth::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);
    let projectors = inprocess::projectors(&stack, |_| {}).await;
    let query = inprocess::query_api(&stack, &issuer.dir, &auth, |_| {}).await;
    let url = query.url.clone();

    // Person A is vaccinated; person B too, and B's certificate is then revoked.
    let a = fixtures::divoc_record();
    let mut b = a.clone();
    b.recipient.identity = Identity::parse("identity", "did:in.gov.uidai.aadhaar:999988887777").unwrap();
    let (person_a, person_b) = (
        recipient(a.recipient.identity.as_str()),
        recipient(b.recipient.identity.as_str()),
    );
    let (valid_id, revoked_id) = (id_of("a1"), id_of("b1"));
    writer
        .append(&envelope("a1", person_a, VaccinationPayload::VaccinationRecorded(a)))
        .await;
    writer
        .append(&envelope(
            "b1",
            person_b.clone(),
            VaccinationPayload::VaccinationRecorded(b),
        ))
        .await;
    let revoke = VaccinationPayload::RevocationRequested {
        certificate_id: CertificateId::parse("c", &revoked_id).unwrap(),
        reason: Text::parse("reason", "issued in error").unwrap(),
    };
    writer.append(&envelope("b2", person_b, revoke)).await;

    // Both credentials, once B's revocation is in the published list B's credential names.
    let client = reqwest::Client::new();
    let facility = auth.bearer("tests", &[Role::Facility]);
    let credential = |id: String| {
        let (client, url, facility) = (client.clone(), url.clone(), facility.clone());
        async move {
            let response = client
                .get(format!("{url}/v1/certificates/{id}"))
                .header(header::AUTHORIZATION, facility)
                .send()
                .await
                .ok()?;
            (response.status() == StatusCode::OK).then_some(())?;
            response.text().await.ok()
        }
    };
    let (valid, revoked) = eventually(
        Duration::from_secs(120),
        "both certificates issued and B's revocation published",
        || async {
            let valid = credential(valid_id.clone()).await?;
            let revoked = credential(revoked_id.clone()).await?;
            let status: Value = serde_json::from_str(&revoked).ok()?;
            let entry = &status["credentialStatus"];
            let list = entry["statusListCredential"].as_str()?.rsplit('/').next()?.to_owned();
            let index: u64 = entry["statusListIndex"].as_str()?.parse().ok()?;
            let published = client
                .get(format!("{url}/v1/status-lists/{list}"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let bits = credentials::status_list::bits_of(&published).ok()?;
            let set = bits
                .get((index / 8) as usize)
                .is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0);
            set.then_some((valid, revoked))
        },
    )
    .await;
    let mut tampered: Value = serde_json::from_str(&valid).unwrap();
    tampered["credentialSubject"]["name"] = "Someone Else".into();
    let tampered = tampered.to_string();

    let scratch = vaxtrail_tests::Scratch::new("verifier-page");
    let profile = scratch.0.join("chromium-profile");
    let cameras = [("valid", &valid), ("revoked", &revoked), ("tampered", &tampered)];
    for (name, text) in cameras {
        camera(&scratch.0.join(format!("{name}.y4m")), text);
    }
    let artifacts = vaxtrail_tests::artifacts();
    let page = format!("{url}/verify");
    const OFFLINE: &[(&str, &str)] = &[("OFFLINE", "1")];

    // Online, first visit: the signature and the list are checked in the page.
    let online = scan(
        &page,
        &profile,
        &scratch.0.join("valid.y4m"),
        &[],
        &artifacts.join("verifier-online-valid.png"),
    )
    .await;
    assert_eq!(online["outcome"], "valid", "{online}");
    assert_eq!(
        online["ready"], "true",
        "the service worker took the page over: {online}"
    );
    assert_eq!(online["name"], "Bhaya Mitra", "{online}");

    // The network is cut for real: the query API is gone, and the browser is offline too.
    query.stop().await;
    signer.stop_cleanly().await;
    projectors.stop().await;
    let offline = scan(
        &page,
        &profile,
        &scratch.0.join("valid.y4m"),
        OFFLINE,
        &artifacts.join("verifier-offline-valid.png"),
    )
    .await;
    assert_eq!(offline["controlled"], true, "served by the service worker: {offline}");
    assert_eq!(offline["outcome"], "valid", "{offline}");
    assert!(
        offline["age"]
            .as_str()
            .is_some_and(|age| age.starts_with("Revocation lists fetched")),
        "the page says how old its lists are: {offline}"
    );

    let revoked = scan(
        &page,
        &profile,
        &scratch.0.join("revoked.y4m"),
        OFFLINE,
        &artifacts.join("verifier-offline-revoked.png"),
    )
    .await;
    assert_eq!(revoked["outcome"], "revoked", "{revoked}");
    assert_eq!(revoked["heading"], "Revoked", "{revoked}");

    let tampered = scan(
        &format!("{page}?lang=hi"),
        &profile,
        &scratch.0.join("tampered.y4m"),
        OFFLINE,
        &artifacts.join("verifier-offline-tampered-hi.png"),
    )
    .await;
    assert_eq!(tampered["outcome"], "invalid", "{tampered}");
    assert_eq!(tampered["heading"], "अमान्य", "the guidance in Hindi: {tampered}");
    assert_eq!(tampered["title"], "टीकाकरण प्रमाणपत्र सत्यापित करें", "{tampered}");
    assert!(
        tampered["answer"]
            .as_str()
            .is_some_and(|a| a.contains("इसका हस्ताक्षर इसकी सामग्री से मेल नहीं खाता")),
        "the reason in Hindi: {tampered}"
    );

    // A device that never kept the list: the signature still holds, and the page says it could
    // not check revocation, never that the certificate is invalid.
    let unlisted = scan(
        &page,
        &profile,
        &scratch.0.join("valid.y4m"),
        &[("OFFLINE", "1"), ("FORGET_LISTS", "1")],
        &artifacts.join("verifier-offline-no-list.png"),
    )
    .await;
    assert!(unlisted["forgotten"].as_u64().is_some_and(|n| n >= 1), "{unlisted}");
    assert_eq!(unlisted["outcome"], "unchecked", "{unlisted}");
    assert!(
        unlisted["answer"]
            .as_str()
            .is_some_and(|a| a.contains("Its revocation list is not on this device yet.")),
        "{unlisted}"
    );
    assert!(
        unlisted["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("No revocation list kept yet")),
        "{unlisted}"
    );
    println!(
        "verifier page screenshots (CI artefacts): {}/verifier-*.png",
        artifacts.display()
    );
}
