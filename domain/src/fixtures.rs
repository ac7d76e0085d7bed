//! Test fixtures shared by the domain's tests: DIVOC's sample record and a parse context.

use chrono::NaiveDate;
use serde_json::Value;

use crate::{
    commands::{ParseContext, RecordVaccination},
    vaccine::VaccineCatalog,
    values::CountryCode,
};

/// DIVOC's master list plus the sample's "CoVax", as a programme would extend its list.
pub fn catalog() -> VaccineCatalog {
    let names = crate::vaccine::DIVOC_VACCINE_ICD
        .trim_end()
        .trim_end_matches(']')
        .to_owned()
        + r#", {"vaccineName": "CoVax", "icd11Code": "XM1NL1"}]"#;
    VaccineCatalog::from_divoc(&names, crate::vaccine::DIVOC_ICD).unwrap()
}

/// Kolkata's zone, India by default, "today" 2021-06-01.
pub fn context(catalog: &VaccineCatalog) -> ParseContext<'_> {
    ParseContext {
        catalog,
        zone: chrono_tz::Asia::Kolkata,
        default_country: CountryCode::parse("c", "IND").unwrap(),
        today: NaiveDate::from_ymd_opt(2021, 6, 1).unwrap(),
    }
}

/// DIVOC's sample certify request, one record of it (its API receives an array).
pub fn divoc_sample() -> Value {
    let array: Value = serde_json::from_str(include_str!("../../tests/fixtures/divoc/certify-request.json")).unwrap();
    array[0].clone()
}

/// The sample record for dose `dose` of 2, with a given batch (to make records differ).
pub fn record(dose: u8, batch: &str) -> RecordVaccination {
    let mut body = divoc_sample();
    body["vaccination"]["dose"] = dose.into();
    body["vaccination"]["batch"] = batch.into();
    RecordVaccination::parse(&body, &context(&catalog())).unwrap()
}
