//! The vaccine master list: names resolved to their ICD-11 codes and terms, loaded from DIVOC's
//! format (`VACCINE_ICD.json`: name → ICD-11 code; `ICD.json`: code → type, term, disease).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::values::FieldError;

/// DIVOC's vaccine names and their ICD-11 codes (`VACCINE_ICD.json`), bundled.
pub const DIVOC_VACCINE_ICD: &str = include_str!("../master-lists/VACCINE_ICD.json");
/// DIVOC's ICD-11 code descriptions (`ICD.json`), bundled.
pub const DIVOC_ICD: &str = include_str!("../master-lists/ICD.json");

/// A vaccine on the master list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vaccine {
    /// The name as the master list writes it.
    pub name: String,
    /// Its ICD-11 code (e.g. `XM1NL1`).
    pub icd11_code: String,
    /// ICD-11's term for the code (the credential's `prophylaxis`).
    pub icd11_term: String,
    /// Vaccine type (e.g. `Inactivated Virus`).
    pub vaccine_type: String,
    /// The disease it protects against.
    pub disease: String,
}

/// Why a master list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file} is not in DIVOC's format: {reason}")]
    Format { file: &'static str, reason: String },
    #[error("vaccine {name:?} has ICD-11 code {code}, which ICD.json does not describe")]
    UnknownCode { name: String, code: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameEntry {
    vaccine_name: String,
    icd11_code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeEntry {
    vaccine_type: String,
    icd11_term: String,
    disease: String,
}

/// The master list, looked up by name, case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct VaccineCatalog {
    by_name: BTreeMap<String, Vaccine>,
}

impl VaccineCatalog {
    /// Loads DIVOC's two files.
    pub fn from_divoc(vaccine_icd_json: &str, icd_json: &str) -> Result<Self, CatalogError> {
        let names: Vec<NameEntry> = serde_json::from_str(vaccine_icd_json).map_err(|e| CatalogError::Format {
            file: "VACCINE_ICD.json",
            reason: e.to_string(),
        })?;
        let codes: BTreeMap<String, CodeEntry> = serde_json::from_str(icd_json).map_err(|e| CatalogError::Format {
            file: "ICD.json",
            reason: e.to_string(),
        })?;
        let mut by_name = BTreeMap::new();
        for entry in names {
            let code = codes.get(&entry.icd11_code).ok_or_else(|| CatalogError::UnknownCode {
                name: entry.vaccine_name.clone(),
                code: entry.icd11_code.clone(),
            })?;
            let vaccine = Vaccine {
                name: entry.vaccine_name.clone(),
                icd11_code: entry.icd11_code,
                icd11_term: code.icd11_term.clone(),
                vaccine_type: code.vaccine_type.clone(),
                disease: code.disease.clone(),
            };
            by_name.insert(entry.vaccine_name.trim().to_lowercase(), vaccine);
        }
        Ok(Self { by_name })
    }

    /// DIVOC's master list, bundled with vaxtrail.
    pub fn divoc_default() -> Self {
        Self::from_divoc(DIVOC_VACCINE_ICD, DIVOC_ICD).expect("the bundled master list is valid")
    }

    /// The vaccine called `name`, or an error naming the master list and what is on it.
    pub fn resolve(&self, field: &str, name: &str) -> Result<&Vaccine, FieldError> {
        self.by_name.get(&name.trim().to_lowercase()).ok_or_else(|| {
            let known: Vec<&str> = self.by_name.values().map(|v| v.name.as_str()).collect();
            FieldError::new(
                field,
                format!(
                    "must name a vaccine on the master list (VACCINE_ICD.json): {}",
                    known.join(", ")
                ),
            )
        })
    }

    /// The list with `vaccines` added (one of the same name, case-insensitively, is replaced).
    pub fn with(mut self, vaccines: impl IntoIterator<Item = Vaccine>) -> Self {
        for vaccine in vaccines {
            self.by_name.insert(vaccine.name.trim().to_lowercase(), vaccine);
        }
        self
    }

    /// Every vaccine, by name.
    pub fn vaccines(&self) -> impl Iterator<Item = &Vaccine> {
        self.by_name.values()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// DIVOC's real master lists.
    pub(crate) fn divoc_catalog() -> VaccineCatalog {
        VaccineCatalog::divoc_default()
    }

    #[test]
    fn vaccines_resolve_case_insensitively_to_their_icd11_code() {
        let catalog = divoc_catalog();
        let covaxin = catalog.resolve("vaccination.name", "Covaxin").unwrap();
        assert_eq!(covaxin.icd11_code, "XM1NL1");
        assert_eq!(covaxin.vaccine_type, "Inactivated Virus");
        assert_eq!(covaxin.disease, "COVID-19");
    }

    #[test]
    fn an_unknown_vaccine_is_rejected_naming_the_list() {
        let error = divoc_catalog().resolve("vaccination.name", "CoVax").unwrap_err();
        assert_eq!(error.field, "vaccination.name");
        assert!(error.rule.contains("VACCINE_ICD.json"), "{}", error.rule);
        assert!(error.rule.contains("covaxin"), "{}", error.rule);
    }

    #[test]
    fn a_name_pointing_at_an_undescribed_code_fails_the_load() {
        let names = r#"[{"vaccineName":"x","icd11Code":"NOPE"}]"#;
        assert!(matches!(
            VaccineCatalog::from_divoc(names, "{}"),
            Err(CatalogError::UnknownCode { .. })
        ));
    }
}
