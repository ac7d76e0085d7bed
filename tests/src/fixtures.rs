//! Domain values built from DIVOC's real sample, for tests across crates.

use domain::{
    commands::{ParseContext, RecordVaccination},
    vaccine::VaccineCatalog,
    values::CountryCode,
};

/// DIVOC's sample certify request (an array of one record), as its API receives it.
pub fn divoc_certify_request() -> serde_json::Value {
    serde_json::from_str(include_str!("../fixtures/divoc/certify-request.json")).expect("valid fixture")
}

/// DIVOC's master list (VACCINE_ICD.json format) plus the "CoVax" its sample request names,
/// as a programme extends its list.
pub fn master_list_with_covax() -> String {
    domain::vaccine::DIVOC_VACCINE_ICD
        .trim_end()
        .trim_end_matches(']')
        .to_owned()
        + r#", {"vaccineName": "CoVax", "icd11Code": "XM1NL1"}]"#
}

/// The sample as the command API parses it with [`master_list_with_covax`] in `zone`.
pub fn divoc_sample_parsed(zone: chrono_tz::Tz) -> RecordVaccination {
    let catalog = VaccineCatalog::from_divoc(&master_list_with_covax(), domain::vaccine::DIVOC_ICD)
        .expect("the extended list is valid");
    let ctx = ParseContext {
        catalog: &catalog,
        zone,
        default_country: CountryCode::parse("c", "IND").expect("IND is assigned"),
        today: chrono::Utc::now().date_naive(),
    };
    RecordVaccination::parse(&divoc_certify_request()[0], &ctx).expect("the sample parses")
}

/// The sample's record with a vaccine from DIVOC's master list, parsed.
pub fn divoc_record() -> RecordVaccination {
    let mut body = divoc_certify_request()[0].clone();
    body["vaccination"]["name"] = "covaxin".into();
    parse_record(&body)
}

/// A DIVOC request body (one record) parsed with DIVOC's master list in UTC.
pub fn parse_record(body: &serde_json::Value) -> RecordVaccination {
    let catalog = VaccineCatalog::divoc_default();
    let ctx = ParseContext {
        catalog: &catalog,
        zone: chrono_tz::UTC,
        default_country: CountryCode::parse("c", "IND").expect("IND is assigned"),
        today: chrono::Utc::now().date_naive(),
    };
    RecordVaccination::parse(body, &ctx).unwrap_or_else(|problems| panic!("the body parses: {problems:?}"))
}
