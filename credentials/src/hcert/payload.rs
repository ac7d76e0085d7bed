//! The EU DCC payload (schema 1.3) of one dose: the person's standardised name and birth date
//! and one vaccination entry, its codes from the EU value sets through a mapping of the vaccine
//! master list (`domain/master-lists/eu-dcc-vaccines.json`).

use std::collections::BTreeMap;

use domain::{
    commands::{Birth, RecordVaccination},
    ids::CertificateId,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The EU DCC schema version the payload follows.
pub const SCHEMA_VERSION: &str = "1.3.0";
/// `disease-agent-targeted`: COVID-19 (SNOMED CT 840539006), the only disease the EU DCC covers.
pub const COVID_19: &str = "840539006";
/// Longest name field (`fn`, `gn`, `fnt`, `gnt`) the schema allows.
const NAME_MAX: usize = 80;

/// The bundled mapping of DIVOC's vaccine names to EU value-set codes.
pub const BUNDLED_MAPPING: &str = include_str!("../../../domain/master-lists/eu-dcc-vaccines.json");

/// A vaccine's EU value-set codes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EuVaccine {
    /// `vaccine-prophylaxis` (SNOMED CT or ATC).
    pub vp: String,
    /// `vaccine-medicinal-product`.
    pub mp: String,
    /// `vaccine-mah-manf`.
    pub ma: String,
}

/// Why no EU DCC is issued for a dose.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmapped {
    #[error("vaccine {0:?} has no EU DCC value-set mapping (eu-dcc-vaccines.json): no EU DCC is issued for it")]
    Vaccine(String),
}

/// Vaccine names (lower case) to their codes.
#[derive(Clone, Debug)]
pub struct VaccineMapping {
    vaccines: BTreeMap<String, EuVaccine>,
}

#[derive(Deserialize)]
struct MappingFile {
    vaccines: BTreeMap<String, EuVaccine>,
}

impl VaccineMapping {
    /// Reads a mapping file: `{"vaccines": {"<name>": {"vp", "mp", "ma"}}}`; names are matched
    /// without regard to case.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: MappingFile = serde_json::from_str(text).map_err(|e| format!("EU DCC vaccine mapping: {e}"))?;
        let mut vaccines = BTreeMap::new();
        for (name, codes) in file.vaccines {
            if [&codes.vp, &codes.mp, &codes.ma].iter().any(|c| c.trim().is_empty()) {
                return Err(format!("EU DCC vaccine mapping: {name:?} has an empty code"));
            }
            if vaccines.insert(name.trim().to_lowercase(), codes).is_some() {
                return Err(format!("EU DCC vaccine mapping: {name:?} is mapped twice"));
            }
        }
        Ok(Self { vaccines })
    }

    /// The bundled mapping.
    pub fn bundled() -> Self {
        Self::parse(BUNDLED_MAPPING).expect("the bundled mapping parses (tested)")
    }

    /// The codes of a vaccine, or why there are none.
    pub fn codes(&self, vaccine: &str) -> Result<&EuVaccine, Unmapped> {
        self.vaccines
            .get(&vaccine.trim().to_lowercase())
            .ok_or_else(|| Unmapped::Vaccine(vaccine.to_owned()))
    }
}

/// A name standardised as ICAO Doc 9303 part 3 writes it in the machine-readable zone: Latin
/// letters A–Z in upper case, `<` between words, transliterated from other scripts (through
/// `deunicode`, an approximation of ICAO's tables), at most 80 characters.
pub fn icao_name(name: &str) -> String {
    let ascii = deunicode::deunicode(name).to_ascii_uppercase();
    let mut out = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_uppercase() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('<') {
            out.push('<');
        }
    }
    while out.ends_with('<') {
        out.pop();
    }
    out.chars().take(NAME_MAX).collect()
}

fn truncated(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// What the issuer writes beside the record.
#[derive(Clone, Debug)]
pub struct Issuer<'a> {
    /// `is`: who issued the certificate (at most 80 characters).
    pub name: &'a str,
    /// The issuing country, ISO 3166-1 alpha-2 (the UVCI's country).
    pub country: &'a str,
}

/// The unique vaccination certificate identifier of a certificate: `URN:UVCI:01:<country>:<id>`
/// (the id already ends with its own check character).
pub fn uvci(country: &str, certificate_id: &CertificateId) -> String {
    format!("URN:UVCI:01:{country}:{}", certificate_id.as_str())
}

/// The ISO 3166-1 alpha-2 code of an alpha-3 code.
pub fn alpha2(alpha3: &str) -> Option<String> {
    celes::Country::from_alpha3(alpha3).ok().map(|c| c.alpha2.to_owned())
}

/// The payload of one dose's EU DCC.
pub fn payload(
    record: &RecordVaccination,
    certificate_id: &CertificateId,
    issuer: &Issuer<'_>,
    mapping: &VaccineMapping,
) -> Result<Value, Unmapped> {
    let vaccination = &record.vaccination;
    let codes = mapping.codes(&vaccination.vaccine.name)?;
    let name = record.recipient.name.as_str();
    let dob = match &record.recipient.birth {
        Birth::Date(date) => date.to_string(),
        // The schema allows an empty date of birth when it is unknown; an age is not a date.
        Birth::Age(_) => String::new(),
    };
    let country = alpha2(record.facility.address.country.as_str()).unwrap_or_else(|| issuer.country.to_owned());
    Ok(json!({
        "ver": SCHEMA_VERSION,
        // DIVOC records one name; it is the primary name (`fn`), as ICAO writes a single name.
        "nam": {"fn": truncated(name, NAME_MAX), "fnt": icao_name(name)},
        "dob": dob,
        "v": [{
            "tg": COVID_19,
            "vp": codes.vp,
            "mp": codes.mp,
            "ma": codes.ma,
            "dn": vaccination.dose.number(),
            "sd": vaccination.dose.of(),
            "dt": vaccination.date.to_string(),
            "co": country,
            "is": truncated(issuer.name, NAME_MAX),
            "ci": uvci(issuer.country, certificate_id),
        }],
    }))
}
