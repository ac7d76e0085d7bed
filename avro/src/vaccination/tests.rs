use apache_avro::{reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter};
use chrono::TimeZone;
use domain::{
    commands::{ParseContext, RecordVaccination},
    vaccine::VaccineCatalog,
    values::RecipientKeySecret,
};
use serde_json::json;

use super::*;

/// DIVOC's sample record, with a vaccine from DIVOC's master list.
pub(crate) fn sample_record() -> RecordVaccination {
    let array: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/divoc/certify-request.json")).unwrap();
    let mut body = array[0].clone();
    body["vaccination"]["name"] = json!("covaxin");
    body["recipient"]["address"]["addressLine2"] = json!("Near the park");
    let catalog = VaccineCatalog::divoc_default();
    let ctx = ParseContext {
        catalog: &catalog,
        zone: chrono_tz_utc(),
        default_country: CountryCode::parse("c", "IND").unwrap(),
        today: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
    };
    RecordVaccination::parse(&body, &ctx).unwrap()
}

fn chrono_tz_utc() -> chrono_tz::Tz {
    chrono_tz::UTC
}

pub(crate) fn envelope(payload: VaccinationPayload) -> VaccinationEnvelope {
    let record = sample_record();
    VaccinationEnvelope {
        event: VaccinationEvent {
            event_id: EventId::derive("cowin", "r-1"),
            recipient_key: RecipientKey::derive(&RecipientKeySecret::new("s"), &record.recipient.identity),
            payload,
        },
        provenance: Provenance {
            occurred_at: Utc.with_ymd_and_hms(2020, 12, 2, 19, 21, 18).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2020, 12, 2, 19, 21, 19).unwrap(),
            source_system: "cowin".into(),
            source_record_id: "r-1".into(),
            actor: "facility-42".into(),
        },
    }
}

pub(crate) fn payloads() -> Vec<VaccinationPayload> {
    let record = sample_record();
    let certificate = CertificateId::for_event(&domain::ids::IdKey::development(), EventId::derive("cowin", "r-0"));
    vec![
        VaccinationPayload::VaccinationRecorded(record.clone()),
        VaccinationPayload::VaccinationCorrected {
            target: CorrectionTarget::Certificate(certificate.clone()),
            corrected: record.clone(),
        },
        VaccinationPayload::VaccinationCorrected {
            target: CorrectionTarget::Dose {
                programme: record.programme.clone(),
                dose: 1,
            },
            corrected: record,
        },
        VaccinationPayload::RevocationRequested {
            certificate_id: certificate,
            reason: Text::parse("r", "issued in error").unwrap(),
        },
        VaccinationPayload::RecipientErased {
            erased_keys: vec!["6f1c2a0e-8d0b-4a57-9b1e-2f6f0c1d9a11".into()],
        },
    ]
}

#[test]
fn every_payload_round_trips_through_the_bundled_schema_in_binary() {
    let schema = crate::schemas::parse(crate::schemas::VACCINATION_EVENTS);
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    let reader = GenericDatumReader::builder(&schema).build().unwrap();
    for payload in payloads() {
        let original = envelope(payload);
        let bytes = writer
            .write_value_to_vec(to_avro(&original))
            .expect("the value matches the schema");
        let read = reader.read_value(&mut bytes.as_slice()).unwrap();
        assert_eq!(from_avro(&read).unwrap(), original);
    }
}

#[test]
fn a_programmes_rules_round_trip_and_records_written_before_them_still_read() {
    use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
    let schema = crate::schemas::parse(crate::schemas::VACCINATION_EVENTS);
    let before = include_str!("../../schemas/history/vaccination-events.v2.avsc");
    assert_eq!(
        SchemaCompatibility::can_read(&crate::schemas::parse(before), &schema).unwrap(),
        Compatibility::Full
    );
    let mut record = sample_record();
    record.rules = Some(domain::master::ProgrammeRules {
        total_doses: 3,
        update_limit: 4,
        time_zone: chrono_tz::Asia::Kolkata,
    });
    let original = envelope(VaccinationPayload::VaccinationRecorded(record));
    let bytes = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(to_avro(&original))
        .unwrap();
    let read = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut bytes.as_slice())
        .unwrap();
    assert_eq!(from_avro(&read).unwrap(), original);

    // Written by the schema before (no rules): read with the rules absent.
    let Value::Record(mut fields) = to_avro(&envelope(payloads().remove(0))) else {
        unreachable!()
    };
    if let Some((_, Value::Union(0, payload))) = fields.iter_mut().find(|(n, _)| n == "payload")
        && let Value::Record(recorded) = payload.as_mut()
    {
        recorded.retain(|(n, _)| n != "programmeRules");
    }
    let old = crate::schemas::parse(before);
    let bytes = GenericDatumWriter::builder(&old)
        .build()
        .unwrap()
        .write_value_to_vec(Value::Record(fields))
        .unwrap();
    let value = GenericDatumReader::builder(&old)
        .build()
        .unwrap()
        .read_value(&mut bytes.as_slice())
        .unwrap();
    let resolved = value.resolve(&schema).unwrap();
    assert_eq!(from_avro(&resolved).unwrap(), envelope(payloads().remove(0)));
}

#[test]
fn an_age_instead_of_a_date_of_birth_round_trips() {
    let mut record = sample_record();
    record.recipient.birth = Birth::Age(45);
    let original = envelope(VaccinationPayload::VaccinationRecorded(record));
    assert_eq!(from_avro(&to_avro(&original)).unwrap(), original);
}

#[test]
fn a_missing_field_is_named() {
    let Value::Record(mut fields) = to_avro(&envelope(payloads().remove(0))) else {
        unreachable!()
    };
    fields.retain(|(name, _)| name != "recipientKey");
    assert_eq!(
        from_avro(&Value::Record(fields)),
        Err(ConvertError::Missing("recipientKey".into()))
    );
}

#[test]
fn a_value_the_domain_refuses_is_named_with_its_rule() {
    let Value::Record(mut fields) = to_avro(&envelope(payloads().remove(3))) else {
        unreachable!()
    };
    let payload = fields.iter_mut().find(|(n, _)| n == "payload").unwrap();
    payload.1 = Value::Union(
        2,
        Box::new(record(vec![
            ("certificateId", string("NOT-A-CERT")),
            ("reason", string("x")),
        ])),
    );
    let error = from_avro(&Value::Record(fields)).unwrap_err();
    assert!(
        matches!(&error, ConvertError::Invalid { field, .. } if field == "certificateId"),
        "{error}"
    );
}
