//! An independent implementation verifies vaxtrail's credentials: Digital Bazaar's vc.js with the
//! eddsa-rdfc-2022 cryptosuite (`tests/js-verifier/`, installed by `deploy/local/install`), run by
//! node with every context served offline. A tampered copy fails there too; so does a revoked VC
//! 2.0 credential, whose Bitstring Status List is checked by Digital Bazaar's
//! vc-bitstring-status-list.

use chrono::Utc;
use credentials::{CredentialSigner, IssuerKey, Keyring, contexts, keys};
use domain::{
    credential::{CertifiedDose, CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    ids::{CertificateId, EventId},
    values::Dose,
};
use serde_json::{Value, json};
use vaxtrail_tests::fixtures;

/// Every vaccination context by URL, as the verifier's offline document loader serves them.
fn vaccination_contexts() -> Value {
    contexts::VACCINATION
        .iter()
        .map(|(url, document)| ((*url).to_owned(), serde_json::from_str::<Value>(document).unwrap()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

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

    // Dose 1, and dose 2 listing dose 1: as data model 1.1 credentials (status list 0), and as
    // VC 2.0 ones (Bitstring Status List 1000, where the second is revoked).
    let mut record = fixtures::divoc_record();
    let first = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("js", "1"));
    let second = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("js", "2"));
    let allocator = domain::status::StatusAllocator::new(&domain::ids::IdKey::development());
    let mut signed = Vec::new();
    for (id, dose, previous, status) in [
        (&first, 1, vec![], StatusSlot { list: 0, index: 1 }),
        (
            &second,
            2,
            vec![CertifiedDose::of(&first, &record)],
            StatusSlot { list: 0, index: 2 },
        ),
        (&first, 1, vec![], allocator.slot(0, 0).unwrap()),
        (
            &second,
            2,
            vec![CertifiedDose::of(&first, &record)],
            allocator.slot(0, 1).unwrap(),
        ),
    ] {
        record.vaccination.dose = Dose::new(dose, 2).unwrap();
        let credential = unsigned_credential(&CredentialInput {
            profile: &profile,
            certificate_id: id,
            record: &record,
            previous: &previous,
            status,
            issued_at: Utc::now() - chrono::Duration::seconds(5),
        });
        let text = signer.sign(credential).await.unwrap().text;
        signed.push(serde_json::from_str::<Value>(&text).unwrap());
    }
    let mut tampered = signed[1].clone();
    match &mut tampered["evidence"] {
        Value::Array(items) => items[0]["totalDoses"] = 3.into(),
        one => one["totalDoses"] = 3.into(),
    }
    assert_eq!(signed[2]["@context"][0], "https://www.w3.org/ns/credentials/v2");
    assert_eq!(signed[3]["credentialStatus"]["type"], "BitstringStatusListEntry");

    // The signed lists, as the signer publishes them: nothing revoked in list 0; the second VC
    // 2.0 credential's bit set in list 1000.
    let revoked = allocator.slot(0, 1).unwrap();
    let mut bits = Vec::new();
    credentials::status_list::set(&mut bits, revoked.index);
    let mut lists = serde_json::Map::new();
    for (list, bits) in [(0, Vec::new()), (revoked.list, bits)] {
        let unsigned =
            credentials::status_list::unsigned(&profile, list, &bits, Utc::now() - chrono::Duration::seconds(5));
        let text = signer.sign(unsigned).await.unwrap().text;
        lists.insert(profile.status_list_url(list), serde_json::from_str(&text).unwrap());
    }
    assert_eq!(
        lists[&profile.status_list_url(revoked.list)]["type"][1],
        "BitstringStatusListCredential"
    );
    let input = json!({
        "credentials": [signed[0], signed[1], tampered, signed[2], signed[3]],
        "didDocument": keyring.did_document(),
        "contexts": vaccination_contexts(),
        "statusLists": lists,
    });

    let verdicts = vaxtrail_tests::js_verify(&input);
    assert_eq!(verdicts.len(), 5);
    assert_eq!(verdicts[0]["verified"], true, "dose 1: {}", verdicts[0]);
    assert_eq!(
        verdicts[1]["verified"], true,
        "dose 2 with its previous dose: {}",
        verdicts[1]
    );
    assert_eq!(verdicts[2]["verified"], false, "the tampered copy: {}", verdicts[2]);
    assert_eq!(verdicts[3]["verified"], true, "VC 2.0 dose 1: {}", verdicts[3]);
    assert_eq!(
        verdicts[4]["verified"], false,
        "VC 2.0 dose 2, revoked: {}",
        verdicts[4]
    );
    assert!(
        verdicts[4]["error"].as_str().unwrap_or_default().contains("revoked"),
        "refused for its status bit, not its proof: {}",
        verdicts[4]
    );
}
