//! The signer on the real stack: DIVOC's sample becomes a credential that verifies with only the
//! published DID document; corrections supersede, the update limit holds, a revoked dose is
//! certified again; a poison record goes to dead-letters and the partition continues.

use std::time::Duration;

use avro::certificate::{CertificateBody, chain::ChainWalk};
use credentials::{CredentialVerifier, Verdict};
use domain::{
    commands::CorrectionTarget,
    events::{CertificateOutcome, VaccinationPayload},
    ids::{CertificateId, EventId},
    values::Text,
};
use rdkafka::message::{Headers, Message};
use serde_json::Value;
use vaxtrail_tests::{
    TestStack, fixtures, kafka,
    signer::{self, CertificateRecord, EventWriter, Issuer, envelope, read_certificates, recipient},
};

fn outcomes_of(records: &[CertificateRecord], event: &str) -> Vec<CertificateOutcome> {
    let id = EventId::derive("tests", event);
    records
        .iter()
        .filter_map(|r| match &r.envelope.body {
            CertificateBody::Outcome { event, .. } if event.answers == id => Some(event.outcome.clone()),
            _ => None,
        })
        .collect()
}

fn answered(records: &[CertificateRecord], events: &[&str]) -> bool {
    events.iter().all(|e| !outcomes_of(records, e).is_empty())
}

fn credential_of(records: &[CertificateRecord], event: &str) -> String {
    let id = EventId::derive("tests", event);
    records
        .iter()
        .find_map(|r| match &r.envelope.body {
            CertificateBody::Outcome {
                event,
                credential: Some(c),
                ..
            } if event.answers == id => Some(c.text.clone()),
            _ => None,
        })
        .expect("a credential was issued")
}

fn evidence(credential: &Value) -> &Value {
    match &credential["evidence"] {
        Value::Array(items) => &items[0],
        one => one,
    }
}

#[tokio::test]
async fn divocs_sample_is_issued_corrected_limited_revoked_and_certified_again() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);

    let record = fixtures::divoc_record();
    let person = recipient(record.recipient.identity.as_str());
    let first = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "e1"));
    let second = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("tests", "e2"));
    let mut corrected = record.clone();
    corrected.vaccination.batch = Text::parse("batch", "MB3428BY").unwrap();
    let mut again = record.clone();
    again.vaccination.batch = Text::parse("batch", "MB3428BZ").unwrap();
    let events = [
        ("e1", VaccinationPayload::VaccinationRecorded(record.clone())),
        (
            "e2",
            VaccinationPayload::VaccinationCorrected {
                target: CorrectionTarget::Certificate(first.clone()),
                corrected: corrected.clone(),
            },
        ),
        (
            "e3",
            VaccinationPayload::VaccinationCorrected {
                target: CorrectionTarget::Certificate(second.clone()),
                corrected: again,
            },
        ),
        (
            "e4",
            VaccinationPayload::RevocationRequested {
                certificate_id: second.clone(),
                reason: Text::parse("reason", "issued in error").unwrap(),
            },
        ),
        ("e5", VaccinationPayload::VaccinationRecorded(record.clone())),
    ];
    for (id, payload) in events {
        writer.append(&envelope(id, person.clone(), payload)).await;
    }
    let all = ["e1", "e2", "e3", "e4", "e5"];
    let records = read_certificates(&stack, Duration::from_secs(60), |r| answered(r, &all)).await;

    // e1: issued, and the credential verifies with only the published DID document.
    let text = credential_of(&records, "e1");
    let published: Value =
        serde_json::from_str(&serde_json::to_string(&issuer.keyring.did_document()).unwrap()).unwrap();
    let verifier = CredentialVerifier::from_did_document(&published).unwrap();
    assert!(matches!(verifier.verify(&text).await, Verdict::Valid { .. }), "{text}");
    let credential: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(credential["credentialSubject"]["name"], "Bhaya Mitra");
    assert_eq!(evidence(&credential)["certificateId"], first.as_str());
    assert_eq!(
        credential["proof"]["verificationMethod"],
        "did:web:certificates.test#key-1"
    );

    // A tampered dose or name fails.
    let mut tampered = credential.clone();
    match &mut tampered["evidence"] {
        Value::Array(items) => items[0]["dose"] = 2.into(),
        one => one["dose"] = 2.into(),
    }
    assert!(matches!(
        verifier.verify(&tampered.to_string()).await,
        Verdict::Invalid { .. }
    ));
    let mut renamed = credential.clone();
    renamed["credentialSubject"]["name"] = "Someone Else".into();
    assert!(matches!(
        verifier.verify(&renamed.to_string()).await,
        Verdict::Invalid { .. }
    ));

    // e2: the correction issues a new certificate that supersedes the first.
    let e2 = outcomes_of(&records, "e2");
    assert!(
        matches!(&e2[..], [CertificateOutcome::CertificateIssued { certificate_id, supersedes: Some(old), .. },
                            CertificateOutcome::CertificateSuperseded { certificate_id: replaced, superseded_by, update_count: 1 }]
            if certificate_id == &second && old == &first && replaced == &first && superseded_by == &second),
        "{e2:?}"
    );
    let corrected_credential: Value = serde_json::from_str(&credential_of(&records, "e2")).unwrap();
    assert_eq!(evidence(&corrected_credential)["batch"], "MB3428BY");

    // e3: beyond the update limit, rejected naming the rule.
    assert!(
        matches!(&outcomes_of(&records, "e3")[..], [CertificateOutcome::CertificateRejected { rule, .. }] if rule == "UpdateLimitReached")
    );
    // e4: the current certificate is revoked; e5: the revoked dose is certified again.
    assert!(
        matches!(&outcomes_of(&records, "e4")[..], [CertificateOutcome::CertificateRevoked { certificate_id, .. }] if certificate_id == &second)
    );
    assert!(matches!(
        &outcomes_of(&records, "e5")[..],
        [CertificateOutcome::CertificateIssued { supersedes: None, .. }]
    ));
    let reissued: Value = serde_json::from_str(&credential_of(&records, "e5")).unwrap();
    assert_ne!(
        reissued["credentialStatus"]["statusListIndex"], corrected_credential["credentialStatus"]["statusListIndex"],
        "a new certificate takes a new status bit"
    );

    // Every record links to the one before it.
    let mut walk = ChainWalk::default();
    for r in records.iter().filter(|r| r.partition == records[0].partition) {
        walk.next(r.offset, r.sha256, Ok(&r.envelope), |_| Ok(())).unwrap();
    }
    signer.stop_cleanly().await;
}

#[tokio::test]
async fn a_poison_record_goes_to_dead_letters_and_the_partition_continues() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let mut signer = signer::spawn(&stack, &issuer, &[]);

    let record = fixtures::divoc_record();
    let person = recipient(record.recipient.identity.as_str());
    let (partition, _) = writer
        .append(&envelope(
            "before",
            person.clone(),
            VaccinationPayload::VaccinationRecorded(record.clone()),
        ))
        .await;
    let (_, poison_offset) = writer
        .append_bytes(person.as_str(), b"\x00\x00\x00\x00\x07not avro at all", Some(partition))
        .await;
    let mut second = record.clone();
    second.vaccination.dose = domain::values::Dose::new(2, 2).unwrap();
    writer
        .append(&envelope(
            "after",
            person.clone(),
            VaccinationPayload::VaccinationRecorded(second),
        ))
        .await;

    let records = read_certificates(&stack, Duration::from_secs(60), |r| answered(r, &["before", "after"])).await;
    assert!(matches!(
        &outcomes_of(&records, "after")[..],
        [CertificateOutcome::CertificateIssued { .. }]
    ));
    // The second dose's certificate lists the first.
    let after: Value = serde_json::from_str(&credential_of(&records, "after")).unwrap();
    assert_eq!(evidence(&after)["previousDoses"][0]["dose"], 1);

    let dead = kafka::read(
        &stack.kafka.brokers,
        &stack.topic("dead-letters"),
        1,
        1,
        Duration::from_secs(30),
    );
    assert_eq!(dead[0].payload(), Some(&b"\x00\x00\x00\x00\x07not avro at all"[..]));
    let headers = dead[0].headers().expect("dead letters carry their position");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
    };
    assert_eq!(header("vaxtrail.topic"), Some(stack.topic("vaccination-events")));
    assert_eq!(header("vaxtrail.partition"), Some(partition.to_string()));
    assert_eq!(header("vaxtrail.offset"), Some(poison_offset.to_string()));
    assert!(header("vaxtrail.reason").is_some_and(|r| !r.is_empty()));
    signer.stop_cleanly().await;
}
