use serde_json::json;

use super::*;
use crate::fixtures::{catalog, context, divoc_sample};

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn divocs_sample_certify_record_is_accepted_as_is() {
    let catalog = catalog();
    let record = RecordVaccination::parse(&divoc_sample(), &context(&catalog)).unwrap();
    assert_eq!(record.pre_enrollment_code.as_str(), "1112");
    assert_eq!(
        record.recipient.identity.as_str(),
        "did:in.gov.uidai.aadhaar:2342343334"
    );
    assert_eq!(
        record.recipient.birth,
        Birth::Date(IsoDate::parse("d", "1994-11-30").unwrap())
    );
    assert_eq!(record.vaccination.vaccine.icd11_code, "XM1NL1");
    // 2020-12-02T19:21:18.646Z is 3 December 00:51 in Kolkata, the programme's zone.
    assert_eq!(record.vaccination.date.to_string(), "2020-12-03");
    assert_eq!((record.vaccination.dose.number(), record.vaccination.dose.of()), (1, 2));
    assert_eq!(
        record.facility.address.country.as_str(),
        "IND",
        "the programme's country by default"
    );
    assert_eq!(record.vaccinator.as_str(), "Sooraj Singh");
}

#[test]
fn every_problem_of_a_body_is_reported_with_its_field() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["recipient"]["gender"] = json!("M");
    body["recipient"]["dob"] = json!("30/11/1994");
    body["vaccination"]["name"] = json!("Unobtainium");
    body["vaccination"]["dose"] = json!(3);
    body["vaccination"]["batch"] = json!("MB\t3428");
    body["facility"]["address"]["country"] = json!("India");
    body.as_object_mut().unwrap().remove("vaccinator");
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "recipient.gender",
            "recipient.dob",
            "vaccination.name",
            "vaccination.dose",
            "vaccination.batch",
            "vaccinator",
            "facility.address.country"
        ]
    );
    assert!(errors[3].rule.contains("totalDoses (2)"), "{}", errors[3].rule);
}

#[test]
fn wrong_types_are_named_not_swallowed() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["recipient"]["name"] = json!(42);
    body["vaccination"]["dose"] = json!("first");
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert!(
        errors.contains(&FieldError::new("recipient.name", "must be a string")),
        "{errors:?}"
    );
    assert!(
        errors.contains(&FieldError::new("vaccination.dose", "must be a whole number")),
        "{errors:?}"
    );
    let not_an_object = RecordVaccination::parse(&json!([1, 2]), &context(&catalog)).unwrap_err();
    assert!(not_an_object[0].rule.contains("JSON object"));
}

#[test]
fn doses_sent_as_strings_or_integral_numbers_are_read() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["vaccination"]["dose"] = json!("2");
    body["vaccination"]["totalDoses"] = json!(2.0);
    let record = RecordVaccination::parse(&body, &context(&catalog)).unwrap();
    assert_eq!(record.vaccination.dose.number(), 2);
}

#[test]
fn a_vaccination_or_birth_in_the_future_is_refused() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["vaccination"]["date"] = json!("2021-06-02");
    body["recipient"]["dob"] = json!("2022-01-01");
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert_eq!(fields(&errors), ["recipient.dob", "vaccination.date"]);
}

#[test]
fn an_age_may_stand_in_for_the_date_of_birth() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["recipient"].as_object_mut().unwrap().remove("dob");
    body["recipient"]["age"] = json!("45");
    assert_eq!(
        RecordVaccination::parse(&body, &context(&catalog))
            .unwrap()
            .recipient
            .birth,
        Birth::Age(45)
    );
    body["recipient"].as_object_mut().unwrap().remove("age");
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert_eq!(fields(&errors), ["recipient.dob"]);
}

#[test]
fn effective_dates_must_be_in_order() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["vaccination"]["effectiveUntil"] = json!("2020-01-01");
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert_eq!(fields(&errors), ["vaccination.effectiveUntil"]);
}

#[test]
fn a_correction_targets_the_named_certificate_or_else_the_dose() {
    let catalog = catalog();
    let ctx = context(&catalog);
    let by_dose = CorrectVaccination::parse(&divoc_sample(), &ctx).unwrap();
    assert_eq!(
        by_dose.target,
        CorrectionTarget::Dose {
            programme: Text::parse("p", "1234").unwrap(),
            dose: 1
        }
    );

    let certificate =
        CertificateId::for_event(&crate::ids::IdKey::development(), crate::ids::EventId::derive("s", "r"));
    let mut body = divoc_sample();
    body["certificateId"] = json!(certificate.as_str());
    assert_eq!(
        CorrectVaccination::parse(&body, &ctx).unwrap().target,
        CorrectionTarget::Certificate(certificate)
    );

    body["certificateId"] = json!("not-a-certificate");
    assert_eq!(
        fields(&CorrectVaccination::parse(&body, &ctx).unwrap_err()),
        ["certificateId"]
    );
}

#[test]
fn a_revocation_needs_a_valid_certificate_id_and_a_reason() {
    let certificate =
        CertificateId::for_event(&crate::ids::IdKey::development(), crate::ids::EventId::derive("s", "r"));
    let revoke =
        RevokeCertificate::parse(&json!({ "certificateId": certificate.as_str(), "reason": "issued in error" }))
            .unwrap();
    assert_eq!(revoke.certificate_id, certificate);
    let errors = RevokeCertificate::parse(&json!({ "certificateId": "ABC" })).unwrap_err();
    assert_eq!(fields(&errors), ["certificateId", "reason"]);
}

#[test]
fn optional_values_divoc_sends_as_empty_strings_are_absent() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["recipient"]["address"]["addressLine2"] = json!("");
    body["facility"]["address"]["addressLine2"] = json!("  ");
    body["facility"]["address"]["country"] = json!("");
    body["recipient"]["email"] = json!("");
    body["recipient"]["age"] = json!("");
    let record = RecordVaccination::parse(&body, &context(&catalog)).unwrap();
    assert_eq!(record.recipient.address.line2, None);
    assert_eq!(record.facility.address.line2, None);
    assert_eq!(record.facility.address.country.as_str(), "IND");
    // A required value sent empty is reported as missing.
    body["recipient"]["name"] = json!("");
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert_eq!(errors, [FieldError::new("recipient.name", "is required")]);
}

#[test]
fn a_record_without_identity_is_certified_under_its_pre_enrollment_code() {
    let catalog = catalog();
    let mut body = divoc_sample();
    body["recipient"].as_object_mut().unwrap().remove("identity");
    let record = RecordVaccination::parse(&body, &context(&catalog)).unwrap();
    assert_eq!(
        record.recipient.identity.as_str(),
        "urn:vaxtrail:pre-enrollment-code:1112"
    );
    body["recipient"]["identity"] = json!("");
    let again = RecordVaccination::parse(&body, &context(&catalog)).unwrap();
    assert_eq!(again.recipient.identity, record.recipient.identity);
    // Without either, the pre-enrollment code is what is missing.
    body.as_object_mut().unwrap().remove("preEnrollmentCode");
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert_eq!(fields(&errors), ["preEnrollmentCode"]);
}

#[test]
fn comorbidities_are_checked_but_not_kept() {
    let catalog = catalog();
    // Sent, valid: accepted and dropped (health data no credential or read model uses).
    let mut body = divoc_sample();
    body["comorbidities"] = json!(["Diabetes", "Hypertension"]);
    let record = RecordVaccination::parse(&body, &context(&catalog)).unwrap();
    assert!(record.comorbidities.is_empty(), "{:?}", record.comorbidities);
    // The fingerprint is that of the same record sent without them.
    let mut without = divoc_sample();
    without.as_object_mut().unwrap().remove("comorbidities");
    let plain = RecordVaccination::parse(&without, &context(&catalog)).unwrap();
    assert_eq!(
        crate::credential::Fingerprint::of(&record),
        crate::credential::Fingerprint::of(&plain)
    );
    // Sent, invalid: refused naming the item, like any field.
    body["comorbidities"] = json!(["Diabetes", ""]);
    let errors = RecordVaccination::parse(&body, &context(&catalog)).unwrap_err();
    assert!(fields(&errors).contains(&"comorbidities[1]"), "{errors:?}");
}
