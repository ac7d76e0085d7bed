//! An independent implementation verifies vaxtrail's credentials: Digital Bazaar's vc.js with the
//! eddsa-rdfc-2022 cryptosuite (`tests/js-verifier/`, installed by `deploy/local/install`), run by
//! node with every context served offline. A tampered copy fails there too.

use chrono::Utc;
use credentials::{CredentialSigner, IssuerKey, Keyring, contexts, keys};
use domain::{
    credential::{CertifiedDose, CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    ids::{CertificateId, EventId},
    values::Dose,
};
use serde_json::{Value, json};
use vaxtrail_tests::fixtures;

#[tokio::test]
async fn digital_bazaars_verifier_accepts_vaxtrails_credentials_and_refuses_a_tampered_one() {
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
    let signer = CredentialSigner::new(keyring.clone());

    // Dose 1, and dose 2 listing dose 1.
    let mut record = fixtures::divoc_record();
    let first = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("js", "1"));
    let second = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("js", "2"));
    let mut signed = Vec::new();
    for (id, dose, previous) in [
        (&first, 1, vec![]),
        (&second, 2, vec![CertifiedDose::of(&first, &record)]),
    ] {
        record.vaccination.dose = Dose::new(dose, 2).unwrap();
        let credential = unsigned_credential(&CredentialInput {
            profile: &profile,
            certificate_id: id,
            record: &record,
            previous: &previous,
            status: StatusSlot {
                list: 0,
                index: dose as u64,
            },
            issued_at: Utc::now(),
        });
        let text = signer.sign(credential).await.unwrap().text;
        signed.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    let mut tampered = signed[1].clone();
    match &mut tampered["evidence"] {
        Value::Array(items) => items[0]["totalDoses"] = 3.into(),
        one => one["totalDoses"] = 3.into(),
    }
    let input = json!({
        "credentials": [signed[0], signed[1], tampered],
        "didDocument": keyring.did_document(),
        "contexts": {contexts::VACCINATION_V1: serde_json::from_str::<Value>(contexts::VACCINATION_V1_DOCUMENT).unwrap()},
    });

    let verdicts = vaxtrail_tests::js_verify(&input);
    assert_eq!(verdicts.len(), 3);
    assert_eq!(verdicts[0]["verified"], true, "dose 1: {}", verdicts[0]);
    assert_eq!(
        verdicts[1]["verified"], true,
        "dose 2 with its previous dose: {}",
        verdicts[1]
    );
    assert_eq!(verdicts[2]["verified"], false, "the tampered copy: {}", verdicts[2]);
}
