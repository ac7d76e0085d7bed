//! Three independent stacks agree on credentials signed through the compiled path: ssi's full
//! JSON-LD path (Rust), Digital Bazaar's vc.js (JavaScript: jsonld.js, rdf-canonize) and a
//! verifier over pyld (Python). The sample covers other scripts, combining marks, quotes and
//! backslashes, emoji, long and repeated values, optional fields present and absent and 0–3
//! earlier doses; each credential also goes out tampered, and all three refuse that copy.

use std::sync::Arc;

use chrono::Utc;
use credentials::{
    CredentialSigner, CredentialVerifier, IssuerKey, Keyring, Verdict, compiled::Compiled, contexts, keys,
};
use domain::{
    credential::{CertifiedDose, CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    ids::{CertificateId, EventId, IdKey},
};
use serde_json::{Value, json};
use vaxtrail_tests::{fixtures, js_verify, py_verify};

/// The names the sample is built around (one per credential).
const NAMES: [&str; 8] = [
    "Bhaya Mitra",
    "भाया मित्र",
    "Zoe\u{0308} N\u{0303}un\u{0303}ez",
    "O\"Brien \\ back\\slash",
    "李小龍 김민지",
    "Ana 🌍 Ñ",
    "முருகன் محمد",
    "Same Value",
];

fn request(i: usize, name: &str) -> Value {
    let mut body = fixtures::divoc_certify_request()[0].clone();
    body["vaccination"]["name"] = "covaxin".into();
    body["recipient"]["name"] = name.into();
    body["recipient"]["identity"] = format!("did:in.gov.uidai.aadhaar:{i:012}").into();
    if i.is_multiple_of(2) {
        body["recipient"]["address"]["addressLine2"] = "दूसरी पंक्ति \"2\"".into();
    }
    if i.is_multiple_of(3) {
        let object = body["recipient"].as_object_mut().unwrap();
        object.remove("dob");
        object.insert("age".into(), json!(30 + i));
    }
    if name == "Same Value" {
        // The same text in several fields.
        body["facility"]["name"] = name.into();
        body["vaccinator"]["name"] = name.into();
        body["vaccination"]["batch"] = name.into();
    }
    if i == 5 {
        body["facility"]["name"] = "L".repeat(250).into();
    }
    body["vaccination"]["dose"] = (1 + i % 4).into();
    body["vaccination"]["totalDoses"] = 4.into();
    body
}

#[tokio::test]
async fn ssi_vc_js_and_pyld_accept_compiled_credentials_and_refuse_tampered_ones() {
    let did = "did:web:certificates.example.gov";
    let keyring = Keyring::new(
        did,
        vec![IssuerKey::from_pem("key-1", &keys::generate_pem()).unwrap()],
        None,
    )
    .unwrap();
    let profile = IssuerProfile {
        issuer: did.into(),
        base_url: "https://certificates.example.gov".into(),
    };
    let compiled = Arc::new(Compiled::learn().await.unwrap());
    let signer = CredentialSigner::new(keyring.clone()).with_compiled(compiled.clone());
    let key = keyring.active().signing_key().unwrap();

    let mut genuine = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let record = fixtures::parse_record(&request(i, name));
        let id =
            |n: usize| CertificateId::for_event(&IdKey::development(), EventId::derive("three", &format!("{i}-{n}")));
        let previous: Vec<CertifiedDose> = (0..i % 4).map(|n| CertifiedDose::of(&id(n), &record)).collect();
        let credential = unsigned_credential(&CredentialInput {
            profile: &profile,
            certificate_id: &id(9),
            record: &record,
            previous: &previous,
            // Data model 1.1 and VC 2.0 credentials, alternately.
            status: StatusSlot {
                list: if i % 2 == 0 { 0 } else { 1000 },
                index: i as u64,
            },
            issued_at: Utc::now(),
        });
        let created = Utc::now();
        let text = compiled
            .sign(&credential, key, &keyring.active_method(), created)
            .expect("the credential is of the compiled shape");
        assert_eq!(
            signer.sign_full(credential, created).await.unwrap().text,
            text,
            "{name}"
        );
        genuine.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    let tampered: Vec<Value> = genuine
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let name = c["credentialSubject"]["name"].as_str().unwrap().to_owned();
            c["credentialSubject"]["name"] = format!("{name}.").into();
            c
        })
        .collect();

    let context = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    let input = json!({
        "credentials": genuine.iter().chain(&tampered).collect::<Vec<_>>(),
        "didDocument": keyring.did_document(),
        "contexts": {
            contexts::VACCINATION_V1: context(contexts::VACCINATION_V1_DOCUMENT),
            contexts::VACCINATION_V2: context(contexts::VACCINATION_V2_DOCUMENT),
            contexts::CREDENTIALS_V1: context(ssi_contexts::CREDENTIALS_V1),
            contexts::CREDENTIALS_V2: context(ssi_contexts::CREDENTIALS_V2),
            contexts::DATA_INTEGRITY_V2: context(ssi_contexts::W3ID_DATA_INTEGRITY_V2),
        },
    });
    let full = CredentialVerifier::new(&keyring);
    for (stack, verdicts) in [("vc.js", js_verify(&input)), ("pyld", py_verify(&input))] {
        assert_eq!(verdicts.len(), 2 * NAMES.len(), "{stack}");
        for (i, verdict) in verdicts.iter().enumerate() {
            let expected = i < NAMES.len();
            assert_eq!(
                verdict["verified"],
                expected,
                "{stack}, credential {i} ({}): {verdict}",
                NAMES[i % NAMES.len()]
            );
        }
    }
    for (i, credential) in genuine.iter().chain(&tampered).enumerate() {
        let verdict = full.verify_full(&credential.to_string()).await;
        assert_eq!(
            matches!(verdict, Verdict::Valid { .. }),
            i < NAMES.len(),
            "ssi, credential {i}: {verdict:?}"
        );
    }
}
