//! Credentials under vaxtrail's own context: a signature covers every field separately, so no
//! two values can be swapped and no field dropped without breaking it (DIVOC's context maps
//! several fields to one predicate, which let `dose 1 of 2` become `dose 2 of 1`).

use chrono::Utc;
use credentials::{CredentialSigner, CredentialVerifier, Keyring, Verdict, keys};
use domain::{
    credential::{CertifiedDose, CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    ids::{CertificateId, EventId},
};
use serde_json::Value;
use vaxtrail_tests::fixtures;

fn keyring(id: &str) -> Keyring {
    let key = credentials::IssuerKey::from_pem(id, &keys::generate_pem()).unwrap();
    Keyring::new("did:web:certificates.example.gov", vec![key], None).unwrap()
}

fn profile() -> IssuerProfile {
    IssuerProfile {
        issuer: "did:web:certificates.example.gov".into(),
        base_url: "https://certificates.example.gov".into(),
    }
}

/// DIVOC's sample as dose 2 of 2, listing dose 1: a data model 1.1 credential in status list 0,
/// or a VC 2.0 one in a Bitstring Status List (list 1000 on).
fn sample_credential(list: u32) -> Value {
    let mut record = fixtures::divoc_record();
    let first_id = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("test", "dose-1"));
    let first = CertifiedDose::of(&first_id, &record);
    record.vaccination.dose = domain::values::Dose::new(2, 2).unwrap();
    unsigned_credential(&CredentialInput {
        profile: &profile(),
        certificate_id: &CertificateId::for_event(
            &domain::ids::IdKey::development(),
            EventId::derive("test", "dose-2"),
        ),
        record: &record,
        previous: &[first],
        status: StatusSlot { list, index: 12 },
        issued_at: Utc::now(),
    })
}

async fn sign(keyring: &Keyring, credential: Value) -> Value {
    let signed = CredentialSigner::new(keyring.clone()).sign(credential).await.unwrap();
    serde_json::from_str(&signed.text).unwrap()
}

/// Paths of every leaf value under `node` (objects only; arrays by index).
fn leaves(node: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match node {
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            path.push(k.clone());
            leaves(v, path, out);
            path.pop();
        }),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| {
            path.push(i.to_string());
            leaves(v, path, out);
            path.pop();
        }),
        _ => out.push(path.clone()),
    }
}

fn at<'a>(node: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(node, |n, k| match n {
        Value::Array(items) => &mut items[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

fn evidence_of(credential: &Value) -> Value {
    // ssi writes a one-element array as the element.
    match &credential["evidence"] {
        Value::Array(items) => items[0].clone(),
        one => one.clone(),
    }
}

#[tokio::test]
async fn a_signed_credential_verifies_with_only_the_published_did_document() {
    for list in [0, 1000] {
        a_signed_credential_verifies(list).await;
    }
}

async fn a_signed_credential_verifies(list: u32) {
    let keyring = keyring("key-1");
    let signed = sign(&keyring, sample_credential(list)).await;
    assert_eq!(signed["proof"]["type"], "DataIntegrityProof");
    assert_eq!(signed["proof"]["cryptosuite"], "eddsa-rdfc-2022");
    assert_eq!(
        signed["proof"]["verificationMethod"],
        "did:web:certificates.example.gov#key-1"
    );
    assert_eq!(evidence_of(&signed)["dose"], 2);

    let published = serde_json::to_string(&keyring.did_document()).unwrap();
    let verifier = CredentialVerifier::from_did_document(&serde_json::from_str(&published).unwrap()).unwrap();
    assert!(matches!(
        verifier.verify(&signed.to_string()).await,
        Verdict::Valid { .. }
    ));

    let stranger = CredentialVerifier::new(&self::keyring("key-1"));
    assert!(
        matches!(stranger.verify(&signed.to_string()).await, Verdict::Invalid { .. }),
        "another issuer's key with the same id must not verify it"
    );
}

#[tokio::test]
async fn swapping_any_two_values_of_a_node_or_dropping_any_field_breaks_the_signature() {
    for list in [0, 1000] {
        swapping_or_dropping_breaks(list).await;
    }
}

async fn swapping_or_dropping_breaks(list: u32) {
    let keyring = keyring("key-1");
    let verifier = CredentialVerifier::new(&keyring);
    let signed = sign(&keyring, sample_credential(list)).await;
    let evidence_key = if signed["evidence"].is_array() {
        vec!["evidence".to_owned(), "0".to_owned()]
    } else {
        vec!["evidence".to_owned()]
    };

    // Every leaf of the credential except the proof, `@context` (a changed context is another
    // document) and the leaves that name a type.
    let mut all = Vec::new();
    leaves(&signed, &mut Vec::new(), &mut all);
    all.retain(|p| p[0] != "proof" && p[0] != "@context");
    assert!(all.len() > 30, "the sample has {} leaves", all.len());

    let mut tampered = 0;
    let mut still_valid = Vec::new();
    // Swaps between sibling leaves of the subject and of the evidence (where the same-predicate
    // flaw of DIVOC's context lived), including dose/totalDoses and the three dates.
    for node in [vec!["credentialSubject".to_owned()], evidence_key.clone()] {
        let siblings: Vec<&Vec<String>> = all
            .iter()
            .filter(|p| p.len() == node.len() + 1 && p.starts_with(&node))
            .collect();
        for (i, a) in siblings.iter().enumerate() {
            for b in &siblings[i + 1..] {
                let mut copy = signed.clone();
                let (va, vb) = (at(&mut copy, a).clone(), at(&mut copy, b).clone());
                if va == vb {
                    continue;
                }
                *at(&mut copy, a) = vb;
                *at(&mut copy, b) = va;
                tampered += 1;
                if matches!(verifier.verify(&copy.to_string()).await, Verdict::Valid { .. }) {
                    still_valid.push(format!("swap {} <-> {}", a.join("."), b.join(".")));
                }
            }
        }
    }
    for path in &all {
        let mut copy = signed.clone();
        let (parent, last) = path.split_at(path.len() - 1);
        match at(&mut copy, parent) {
            Value::Object(map) => {
                map.remove(&last[0]);
            }
            Value::Array(items) => {
                items.remove(last[0].parse::<usize>().unwrap());
            }
            _ => unreachable!(),
        }
        tampered += 1;
        if matches!(verifier.verify(&copy.to_string()).await, Verdict::Valid { .. }) {
            still_valid.push(format!("drop {}", path.join(".")));
        }
    }
    assert!(tampered > 80, "only {tampered} tamperings tried");
    assert!(still_valid.is_empty(), "still valid after: {still_valid:#?}");
}

#[tokio::test]
async fn a_vc2_credential_makes_a_qr_code_no_larger_than_the_same_1_1_credential() {
    let keyring = keyring("key-1");
    let mut sizes = Vec::new();
    for list in [0, 1000] {
        let signed = sign(&keyring, sample_credential(list)).await.to_string();
        let payload = query_api::qr::payload(&signed);
        let version = query_api::qr::version(&query_api::qr::code(&payload).unwrap());
        sizes.push((signed.len(), payload.len(), version));
    }
    let [(v1_text, v1_zip, v1_qr), (v2_text, v2_zip, v2_qr)] = sizes[..] else {
        unreachable!()
    };
    println!(
        "W3C QR, dose 2 of 2 listing dose 1: data model 1.1 {v1_text} chars, {v1_zip} zipped, version {v1_qr}; \
         VC 2.0 {v2_text} chars, {v2_zip} zipped, version {v2_qr} (ECC M)"
    );
    assert!(v2_text < v1_text && v2_zip < v1_zip, "{sizes:?}");
    assert!(v2_qr <= v1_qr, "{sizes:?}");
}
