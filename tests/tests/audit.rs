//! `vaxctl audit verify` on the real stack: a log the signer wrote (with checkpoints and an event
//! appended twice, answered once) verifies against the issuer's published DID document; a record forged into `certificate-events` is
//! found at its offset and the command exits non-zero; a DID document without the signing key
//! fails at the first checkpoint.

use std::{process::Stdio, time::Duration};

use avro::{
    certificate::{CertificateBody, CertificateEnvelope, SourcePosition},
    codec::CertificateCodec,
};
use domain::{
    events::{CertificateEvent, CertificateOutcome, VaccinationPayload},
    ids::EventId,
    values::Identity,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use vaxtrail_tests::{
    TestStack, bin_dir, fixtures,
    signer::{self, EventWriter, Issuer, envelope, read_certificates, recipient},
};

const EVENTS: usize = 12;

async fn audit(stack: &TestStack, did_document: &std::path::Path) -> (bool, Value) {
    let out = tokio::process::Command::new(bin_dir().join("vaxctl"))
        .args(["audit", "verify", "--json", "--did-document"])
        .arg(did_document)
        .env("VAXTRAIL_TOPIC_PREFIX", &stack.kafka.topic_prefix)
        .env("VAXTRAIL_PARTITIONS", stack.kafka.partitions.to_string())
        .env("VAXTRAIL_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("vaxctl was built (deploy/local/up builds every binary)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    (
        out.status.success(),
        serde_json::from_str(line).unwrap_or_else(|_| panic!("JSON from vaxctl: {text}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signers_log_verifies_and_a_forged_record_is_found_at_its_offset() {
    let stack = TestStack::new().await;
    let writer = EventWriter::new(&stack).await;
    let issuer = Issuer::new();
    let mut signer = signer::spawn(&stack, &issuer, &[("VAXTRAIL_CHECKPOINT_EVERY", "3")]);
    let template = fixtures::divoc_record();
    for i in 0..EVENTS {
        let mut record = template.clone();
        let identity = format!("did:in.gov.uidai.aadhaar:{:012}", 500_000 + i);
        record.recipient.identity = Identity::parse("identity", &identity).unwrap();
        writer
            .append(&envelope(
                &format!("a{i}"),
                recipient(&identity),
                VaccinationPayload::VaccinationRecorded(record),
            ))
            .await;
    }
    // A retried post appended twice: the signer answers it once, and the audit accepts that.
    let mut again = template.clone();
    let identity = format!("did:in.gov.uidai.aadhaar:{:012}", 500_000);
    again.recipient.identity = Identity::parse("identity", &identity).unwrap();
    writer
        .append(&envelope(
            "a0",
            recipient(&identity),
            VaccinationPayload::VaccinationRecorded(again),
        ))
        .await;
    let records = read_certificates(&stack, Duration::from_secs(60), |r| {
        r.iter()
            .filter(|r| matches!(r.envelope.body, CertificateBody::Outcome { .. }))
            .count()
            == EVENTS
            && r.iter()
                .any(|r| matches!(r.envelope.body, CertificateBody::Checkpoint(_)))
    })
    .await;
    signer.stop_cleanly().await;

    let dir = vaxtrail_tests::Scratch::new("audit");
    let published = dir.file("did.json", issuer.keyring.did_document().to_string());
    let (ok, report) = audit(&stack, &published).await;
    assert!(ok, "{report}");
    assert_eq!(report["outcomes"], EVENTS as u64, "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["pending"], 0);
    assert_eq!(report["repeated_events"], 1, "{report}");

    // Someone else's key: the first checkpoint's signature does not verify.
    let stranger = Issuer::new();
    let other = dir.file("other.json", stranger.keyring.did_document().to_string());
    let (ok, report) = audit(&stack, &other).await;
    assert!(!ok);
    assert!(report["reason"].as_str().unwrap().contains("signature"), "{report}");

    // A forged outcome appended to a partition: its link to the record before it is wrong.
    let victim = records
        .iter()
        .rev()
        .find(|r| r.partition == 0)
        .map(|r| r.offset)
        .unwrap_or(-1);
    let topic = stack.topic("certificate-events");
    let codec = CertificateCodec::new(&stack.kafka.schema_registry_url, &topic).with_keys(stack.keys());
    let forged = CertificateEnvelope {
        occurred_at: chrono::Utc::now(),
        recorded_at: chrono::Utc::now(),
        source: SourcePosition {
            partition: 0,
            offset: 0,
        },
        previous_sha256: Some([7; 32]),
        body: CertificateBody::Outcome {
            recipient_key: recipient("did:in.gov.uidai.aadhaar:000000000001"),
            source_sha256: [0; 32],
            event: CertificateEvent {
                answers: EventId::derive("forger", "1"),
                outcome: CertificateOutcome::CertificateRejected {
                    rule: "Forged".into(),
                    detail: "not written by the signer".into(),
                },
            },
            credential: None,
        },
    };
    let producer: FutureProducer = platform::Kafka::new(&stack.kafka.brokers).producer().unwrap();
    let (partition, offset) = producer
        .send(
            FutureRecord::to(&topic)
                .partition(0)
                .key("forger")
                .payload(&codec.encode(&forged).await.unwrap()),
            Duration::from_secs(30),
        )
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
        .unwrap();
    assert!(offset > victim);
    let (ok, report) = audit(&stack, &published).await;
    assert!(!ok, "the forged record must break the audit");
    assert_eq!(
        (report["partition"].as_i64(), report["offset"].as_i64()),
        (Some(partition as i64), Some(offset)),
        "{report}"
    );
    assert!(
        report["reason"].as_str().unwrap().contains("previousSha256"),
        "{report}"
    );
}
