//! The probes the compiled shapes are learned from (a data model 1.1 and a VC 2.0 credential): a credential built by the domain's own
//! `unsigned_credential`, so it has exactly the keys vaxtrail writes, with every optional one
//! present (a second address line in both addresses, two previous doses, and `age` beside
//! `dob`, which a credential carries one of).

use chrono::{NaiveDate, TimeZone, Utc};
use domain::{
    commands::{ParseContext, RecordVaccination},
    credential::{CertifiedDose, CredentialInput, IssuerProfile, StatusSlot, unsigned_credential},
    ids::{CertificateId, EventId, IdKey},
    vaccine::VaccineCatalog,
    values::CountryCode,
};
use serde_json::{Value, json};

/// The probe credential.
pub fn credential(vc2: bool) -> Value {
    let catalog = VaccineCatalog::divoc_default();
    let vaccine = catalog
        .vaccines()
        .next()
        .expect("the bundled list names vaccines")
        .name
        .clone();
    let address = json!({
        "addressLine1": "1 Main Road",
        "addressLine2": "Block B",
        "district": "Bengaluru",
        "state": "Karnataka",
        "pincode": "560034",
    });
    let request = json!({
        "preEnrollmentCode": "1000000001",
        "programId": "covid-19",
        "recipient": {
            "name": "Probe Person",
            "dob": "1990-01-01",
            "gender": "Female",
            "nationality": "Indian",
            "identity": "did:in.gov.uidai.aadhaar:000000000001",
            "contact": ["tel:9000000001"],
            "address": address,
        },
        "vaccination": {
            "name": vaccine,
            "batch": "PB1",
            "manufacturer": "Probe Pharma",
            "date": "2021-05-01T10:15:00+05:30",
            "dose": 3,
            "totalDoses": 3,
            "effectiveStart": "2021-05-01",
            "effectiveUntil": "2022-05-01",
        },
        "vaccinator": {"name": "Probe Vaccinator"},
        "facility": {"name": "Probe PHC", "address": address},
    });
    let context = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::Asia::Kolkata,
        default_country: CountryCode::parse("country", "IND").expect("a country code"),
        today: NaiveDate::from_ymd_opt(2021, 6, 1).expect("a date"),
    };
    let record = RecordVaccination::parse(&request, &context).expect("the probe request is valid");
    let profile = IssuerProfile {
        issuer: "did:web:probe.invalid".into(),
        base_url: "https://probe.invalid".into(),
    };
    let id = |n: &str| CertificateId::for_event(&IdKey::development(), EventId::derive("probe", n));
    let previous: Vec<CertifiedDose> = ["1", "2"]
        .iter()
        .map(|n| {
            let mut dose = CertifiedDose::of(&id(n), &record);
            dose.batch = format!("PB0{n}");
            dose
        })
        .collect();
    let mut credential = unsigned_credential(&CredentialInput {
        profile: &profile,
        certificate_id: &id("3"),
        record: &record,
        previous: &previous,
        status: StatusSlot {
            list: if vc2 { domain::status::FIRST_BITSTRING_LIST } else { 0 },
            index: 1,
        },
        issued_at: Utc.with_ymd_and_hms(2021, 5, 1, 5, 0, 0).single().expect("a time"),
    });
    credential["credentialSubject"]["age"] = json!("31");
    credential
}
