use apache_avro::{reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter};
use chrono::TimeZone;
use domain::{
    credential::{CredentialInput, IssuerProfile, unsigned_credential},
    values::RecipientKeySecret,
};

use super::*;
use crate::vaccination::tests::sample_record;

fn key() -> RecipientKey {
    RecipientKey::derive(&RecipientKeySecret::new("s"), &sample_record().recipient.identity)
}

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2021, 6, 1, 10, 0, second).unwrap()
}

pub(crate) fn issued() -> (CertificateOutcome, IssuedCredential) {
    let record = sample_record();
    let id = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("cowin", "r-1"));
    let status = StatusSlot { list: 3, index: 9 };
    let credential = unsigned_credential(&CredentialInput {
        profile: &IssuerProfile {
            issuer: "did:web:example.gov".into(),
            base_url: "https://example.gov".into(),
        },
        certificate_id: &id,
        record: &record,
        previous: &[],
        status,
        issued_at: at(1),
    });
    let outcome = CertificateOutcome::CertificateIssued {
        certified: CertifiedDose::of(&id, &record),
        certificate_id: id,
        programme: record.programme.clone(),
        supersedes: Some(CertificateId::for_event(
            &domain::ids::IdKey::development(),
            EventId::derive("cowin", "r-0"),
        )),
        fingerprint: Fingerprint::of(&record),
        status,
    };
    let credential = IssuedCredential {
        text: credential.to_string(),
        key_id: "did:web:example.gov#key-1".into(),
        renderings: vec![super::Rendering {
            format: super::Rendering::EU_DCC.into(),
            key_id: "AAECAwQFBgc=".into(),
            text: "HC1:NCFOXN%TSMAHN-HRENDERED-EU-DCC".into(),
            expires_at: Some(at(9)),
        }],
    };
    (outcome, credential)
}

pub(crate) fn outcome_envelope(
    outcome: CertificateOutcome,
    credential: Option<IssuedCredential>,
) -> CertificateEnvelope {
    CertificateEnvelope {
        occurred_at: at(0),
        recorded_at: at(2),
        source: SourcePosition {
            partition: 3,
            offset: 41,
        },
        previous_sha256: Some([1; 32]),
        body: CertificateBody::Outcome {
            recipient_key: key(),
            source_sha256: [2; 32],
            event: CertificateEvent {
                answers: EventId::derive("cowin", "r-1"),
                outcome,
            },
            credential,
        },
    }
}

fn envelopes() -> Vec<CertificateEnvelope> {
    let (issue, credential) = issued();
    let a = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("cowin", "r-0"));
    let b = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("cowin", "r-1"));
    let a_again = a.clone();
    let mut first = outcome_envelope(
        CertificateOutcome::CertificateRejected {
            rule: "UpdateLimitReached".into(),
            detail: "this dose was already corrected 1 time(s)".into(),
        },
        None,
    );
    first.previous_sha256 = None;
    vec![
        outcome_envelope(issue, Some(credential)),
        outcome_envelope(
            CertificateOutcome::CertificateSuperseded {
                certificate_id: a.clone(),
                superseded_by: b,
                update_count: 1,
            },
            None,
        ),
        outcome_envelope(
            CertificateOutcome::CertificateRevoked {
                certificate_id: a,
                reason: Text::parse("r", "issued in error").unwrap(),
                status: StatusSlot { list: 3, index: 4 },
            },
            None,
        ),
        first,
        CertificateEnvelope {
            occurred_at: at(0),
            recorded_at: at(3),
            source: SourcePosition {
                partition: 3,
                offset: 41,
            },
            previous_sha256: Some([5; 32]),
            body: CertificateBody::Checkpoint(Checkpoint {
                partition: 3,
                last_offset: 99,
                chain_head: [5; 32],
                key_id: "did:web:example.gov#key-1".into(),
                signature: vec![7; 64],
            }),
        },
        outcome_envelope(
            CertificateOutcome::RecipientErased {
                certificates: vec![a_again.clone()],
            },
            None,
        ),
        // A VC 2.0 certificate's bit, in partition 3's second Bitstring Status List.
        outcome_envelope(
            CertificateOutcome::CertificateRevoked {
                certificate_id: a_again,
                reason: Text::parse("r", "issued in error").unwrap(),
                status: StatusSlot {
                    list: 2003,
                    index: 777_777,
                },
            },
            None,
        ),
    ]
}

#[test]
fn every_outcome_and_a_checkpoint_round_trip_through_the_bundled_schema_in_binary() {
    let schema = crate::schemas::parse(crate::schemas::CERTIFICATE_EVENTS);
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    let reader = GenericDatumReader::builder(&schema).build().unwrap();
    for original in envelopes() {
        let bytes = writer
            .write_value_to_vec(to_avro(&original).unwrap())
            .expect("the value matches the schema");
        let read = reader.read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(from_avro(&read).unwrap(), original);
    }
}

#[test]
fn an_issue_without_its_credential_cannot_be_written() {
    let (issue, _) = issued();
    assert_eq!(
        to_avro(&outcome_envelope(issue, None)),
        Err(ConvertError::Missing("credential".into()))
    );
}

#[test]
fn a_credential_for_another_certificate_is_refused() {
    let (issue, mut credential) = issued();
    credential.text = credential.text.replace(
        CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("cowin", "r-1")).as_str(),
        CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("cowin", "r-7")).as_str(),
    );
    let value = to_avro(&outcome_envelope(issue, Some(credential))).unwrap();
    let error = from_avro(&value).unwrap_err();
    assert!(
        matches!(&error, ConvertError::Invalid { field, .. } if field == "credential"),
        "{error}"
    );
}

#[test]
fn record_ids_depend_on_the_answered_event_and_the_outcome_kind_only() {
    let all = envelopes();
    let mut later = all[0].clone();
    later.recorded_at = at(30);
    assert_eq!(all[0].event_id(), later.event_id(), "a rewrite has the same id");
    assert_ne!(
        all[0].event_id(),
        all[1].event_id(),
        "an issue and its supersession differ"
    );
    assert_ne!(all[0].event_id(), all[4].event_id());
}

mod chain_walk {
    use super::*;
    use crate::certificate::chain::{ChainBreak, ChainWalk};

    /// Three outcomes and a checkpoint, linked, with made-up record hashes.
    fn linked() -> Vec<(i64, Sha256, CertificateEnvelope)> {
        let all = envelopes();
        let mut out = Vec::new();
        let mut previous = None;
        for (offset, mut envelope) in [all[1].clone(), all[2].clone(), all[3].clone()].into_iter().enumerate() {
            envelope.previous_sha256 = previous;
            let hash = [offset as u8 + 10; 32];
            out.push((offset as i64, hash, envelope));
            previous = Some(hash);
        }
        let mut checkpoint = all[4].clone();
        checkpoint.previous_sha256 = previous;
        if let CertificateBody::Checkpoint(c) = &mut checkpoint.body {
            c.chain_head = previous.unwrap();
            c.last_offset = 2;
        }
        out.push((3, [99; 32], checkpoint));
        out
    }

    fn walk(records: &[(i64, Sha256, CertificateEnvelope)]) -> Result<(), ChainBreak> {
        walk_from(ChainWalk::default(), records)
    }

    fn walk_from(mut walk: ChainWalk, records: &[(i64, Sha256, CertificateEnvelope)]) -> Result<(), ChainBreak> {
        for (offset, hash, envelope) in records {
            walk.next(*offset, *hash, Ok(envelope), |c| {
                if c.signature == vec![7; 64] {
                    Ok(())
                } else {
                    Err("bad signature".into())
                }
            })?;
        }
        assert_eq!(walk.summary().records, records.len() as u64);
        Ok(())
    }

    #[test]
    fn an_intact_chain_walks_to_the_end() {
        assert_eq!(walk(&linked()), Ok(()));
    }

    #[test]
    fn a_window_anchored_on_the_record_before_it_walks_and_a_wrong_anchor_breaks() {
        let records = linked();
        let (anchor_offset, anchor_hash, _) = &records[0];
        assert_eq!(
            walk_from(ChainWalk::after(*anchor_offset, *anchor_hash), &records[1..]),
            Ok(())
        );
        assert_eq!(
            walk_from(ChainWalk::after(*anchor_offset, [0; 32]), &records[1..]),
            Err(ChainBreak::Link {
                offset: 1,
                previous: Some(0)
            })
        );
    }

    #[test]
    fn a_changed_record_breaks_the_link_after_it() {
        let mut records = linked();
        records[1].1 = [0; 32]; // the record at offset 1 no longer hashes to what offset 2 names
        assert_eq!(
            walk(&records),
            Err(ChainBreak::Link {
                offset: 2,
                previous: Some(1)
            })
        );
    }

    #[test]
    fn a_dropped_record_or_a_forged_checkpoint_is_found() {
        let mut dropped = linked();
        dropped.remove(1);
        assert_eq!(
            walk(&dropped),
            Err(ChainBreak::Link {
                offset: 2,
                previous: Some(0)
            })
        );
        let mut forged = linked();
        if let CertificateBody::Checkpoint(c) = &mut forged[3].2.body {
            c.signature = vec![8; 64];
        }
        assert!(matches!(
            walk(&forged),
            Err(ChainBreak::CheckpointSignature { offset: 3, .. })
        ));
    }
}

#[test]
fn renderings_round_trip_and_a_document_that_does_not_match_its_digest_is_refused() {
    let (issue, credential) = issued();
    let original = outcome_envelope(issue, Some(credential));
    let mut value = to_avro(&original).unwrap();
    assert_eq!(from_avro(&value).unwrap(), original);
    // A record written before renderings existed (no field) reads with none.
    let schema = crate::schemas::parse(crate::schemas::CERTIFICATE_EVENTS);
    // So do records written before Bitstring Status Lists (no `statusList`: the partition's).
    for before in [
        include_str!("../../schemas/history/certificate-events.v2.avsc"),
        include_str!("../../schemas/history/certificate-events.v3.avsc"),
    ] {
        assert_eq!(
            apache_avro::schema_compatibility::SchemaCompatibility::can_read(&crate::schemas::parse(before), &schema)
                .unwrap(),
            apache_avro::schema_compatibility::Compatibility::Full
        );
    }
    // The document changed after the digest was written.
    fn documents(value: &mut Value) -> Vec<&mut Value> {
        let mut out = Vec::new();
        if let Value::Record(fields) = value {
            for (name, v) in fields.iter_mut() {
                if name == "document" {
                    out.push(v);
                } else {
                    out.extend(documents(v));
                }
            }
        } else if let Value::Union(_, inner) = value {
            out.extend(documents(inner));
        } else if let Value::Array(items) = value {
            for item in items {
                out.extend(documents(item));
            }
        }
        out
    }
    *documents(&mut value).remove(0) = Value::String("HC1:FORGED".into());
    let error = from_avro(&value).unwrap_err();
    assert!(error.to_string().contains("sha256"), "{error}");
}
