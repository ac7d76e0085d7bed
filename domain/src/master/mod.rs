//! Master data: the programmes, vaccines and facilities a country manages without a redeploy.
//! Each is a record on the compacted `master-data` topic under its [`MasterRecord::key`], so the
//! latest record of a key is the current one and every service that reads the topic sees the
//! same data. Pure: parsing an administrator's body (every problem named with its field), and the
//! lookups intake makes ([`MasterData`]).
//!
//! A programme's rules (time zone, total doses, update limit) are read at intake and written into
//! the vaccination event ([`ProgrammeRules`]), so a replay of the log decides with the rules that
//! held when each dose was recorded, whatever the programme says today.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    vaccine::Vaccine,
    values::{CountryCode, FieldError, Text},
};

/// The pattern of a master-data id (a programme's `programId`, a facility's id): what DIVOC's
/// registries use, and safe in a URL path and a Kafka key.
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// An id of a programme, vaccine or facility.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MasterId(String);

impl MasterId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!("must match {ID_PATTERN} (letters, digits, '.', '_', '-'; at most 64)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MasterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rules of a programme that decide a dose: what the vaccination event carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgrammeRules {
    /// Doses in the full course.
    pub total_doses: u8,
    /// How many times a dose's certificate may be corrected.
    pub update_limit: u32,
    /// Where a vaccination timestamp is reduced to its date.
    pub time_zone: Tz,
}

/// A vaccination programme.
#[derive(Clone, Debug, PartialEq)]
pub struct Programme {
    pub id: MasterId,
    pub name: Text,
    pub diseases: Vec<Text>,
    pub rules: ProgrammeRules,
    pub country: CountryCode,
    /// Languages of the certificate besides English (BCP 47 tags).
    pub languages: Vec<String>,
}

/// A vaccine on the master list, as an administrator defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterVaccine {
    pub vaccine: Vaccine,
    /// Absent in DIVOC's master list (`vaxctl master-data import`).
    pub manufacturer: Option<Text>,
    /// EU DCC value-set codes, when known (`vaccine-medicinal-product`, `vaccine-mah-manf`,
    /// `sct-vaccines-covid-19`).
    pub eu: Option<EuCodes>,
}

/// A vaccine's codes in the EU DCC value sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EuCodes {
    pub product: Text,
    pub manufacturer: Text,
    pub prophylaxis: Text,
}

/// Whether a facility may record vaccinations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FacilityStatus {
    Active,
    Suspended,
}

impl FacilityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// A vaccination facility.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FacilityEntry {
    pub id: MasterId,
    /// The name its records carry (`facility.name` in DIVOC's body).
    pub name: Text,
    pub district: Text,
    pub state: Text,
    pub status: FacilityStatus,
}

/// A vaccinator, registered at one or more facilities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaccinatorEntry {
    pub id: MasterId,
    /// The name records carry (`vaccinator.name` in DIVOC's body).
    pub name: Text,
    pub facilities: Vec<MasterId>,
    pub status: FacilityStatus,
}

/// One master-data record.
#[derive(Clone, Debug, PartialEq)]
pub enum MasterRecord {
    Programme(Programme),
    Vaccine(MasterVaccine),
    Facility(FacilityEntry),
    Vaccinator(VaccinatorEntry),
}

impl MasterRecord {
    /// The record as the API shows it: the body an administrator sends, with its `id` (and
    /// `kind`).
    pub fn to_json(&self) -> Value {
        match self {
            Self::Programme(p) => serde_json::json!({
                "kind": "programme", "id": p.id, "name": p.name.as_str(),
                "diseases": p.diseases.iter().map(Text::as_str).collect::<Vec<_>>(),
                "totalDoses": p.rules.total_doses, "updateLimit": p.rules.update_limit,
                "timeZone": p.rules.time_zone.name(), "country": p.country.as_str(), "languages": p.languages,
            }),
            Self::Vaccine(v) => serde_json::json!({
                "kind": "vaccine", "id": v.vaccine.name.trim().to_lowercase(), "name": v.vaccine.name,
                "manufacturer": v.manufacturer.as_ref().map(Text::as_str), "icd11Code": v.vaccine.icd11_code,
                "icd11Term": v.vaccine.icd11_term, "vaccineType": v.vaccine.vaccine_type, "disease": v.vaccine.disease,
                "eu": v.eu.as_ref().map(|eu| serde_json::json!({
                    "product": eu.product.as_str(), "manufacturer": eu.manufacturer.as_str(), "prophylaxis": eu.prophylaxis.as_str()
                })),
            }),
            Self::Facility(f) => serde_json::json!({
                "kind": "facility", "id": f.id, "name": f.name.as_str(), "district": f.district.as_str(),
                "state": f.state.as_str(), "status": f.status.as_str(),
            }),
            Self::Vaccinator(v) => serde_json::json!({
                "kind": "vaccinator", "id": v.id, "name": v.name.as_str(),
                "facilities": v.facilities, "status": v.status.as_str(),
            }),
        }
    }

    /// The record's key on the compacted topic: its kind and id.
    pub fn key(&self) -> String {
        match self {
            Self::Programme(p) => format!("programme/{}", p.id),
            Self::Vaccine(v) => format!("vaccine/{}", v.vaccine.name.trim().to_lowercase()),
            Self::Facility(f) => format!("facility/{}", f.id),
            Self::Vaccinator(v) => format!("vaccinator/{}", v.id),
        }
    }
}

/// Every programme, vaccine and facility, as the topic holds them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MasterData {
    programmes: BTreeMap<MasterId, Programme>,
    vaccines: BTreeMap<String, MasterVaccine>,
    facilities: BTreeMap<MasterId, FacilityEntry>,
    vaccinators: BTreeMap<MasterId, VaccinatorEntry>,
}

/// Why a facility may not record a vaccination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FacilityRefusal {
    /// No facility of that name is registered.
    Unknown,
    /// It is registered but suspended.
    Suspended(MasterId),
    /// The caller's token is not bound to it.
    NotBound(MasterId),
}

impl FacilityRefusal {
    /// The rule's name (problem+json and metrics).
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Unknown => "facility-unknown",
            Self::Suspended(_) => "facility-suspended",
            Self::NotBound(_) => "facility-not-bound",
        }
    }
}

impl MasterData {
    /// Applies a record read from the topic (the later record of a key replaces the earlier).
    pub fn apply(&mut self, record: MasterRecord) {
        match record {
            MasterRecord::Programme(p) => {
                self.programmes.insert(p.id.clone(), p);
            }
            MasterRecord::Vaccine(v) => {
                self.vaccines.insert(v.vaccine.name.trim().to_lowercase(), v);
            }
            MasterRecord::Facility(f) => {
                self.facilities.insert(f.id.clone(), f);
            }
            MasterRecord::Vaccinator(v) => {
                self.vaccinators.insert(v.id.clone(), v);
            }
        }
    }

    pub fn vaccinators(&self) -> impl Iterator<Item = &VaccinatorEntry> {
        self.vaccinators.values()
    }

    /// Whether `vaccinator` may record at `facility`: any name while the facility has no
    /// vaccinator registered (as before master data), else only an active vaccinator registered
    /// there, matched by name.
    pub fn vaccinator_may_record(&self, facility: &MasterId, vaccinator: &str) -> bool {
        let mut registered = self
            .vaccinators
            .values()
            .filter(|v| v.facilities.contains(facility))
            .peekable();
        if registered.peek().is_none() {
            return true;
        }
        let wanted = vaccinator.trim().to_lowercase();
        registered.any(|v| v.status == FacilityStatus::Active && v.name.as_str().trim().to_lowercase() == wanted)
    }

    pub fn programme(&self, id: &str) -> Option<&Programme> {
        self.programmes.get(&MasterId(id.to_owned()))
    }

    pub fn facility(&self, id: &str) -> Option<&FacilityEntry> {
        self.facilities.get(&MasterId(id.to_owned()))
    }

    pub fn programmes(&self) -> impl Iterator<Item = &Programme> {
        self.programmes.values()
    }

    pub fn vaccines(&self) -> impl Iterator<Item = &MasterVaccine> {
        self.vaccines.values()
    }

    pub fn facilities(&self) -> impl Iterator<Item = &FacilityEntry> {
        self.facilities.values()
    }

    /// Whether a caller bound to `bound` facilities (by id) may record a vaccination given at the
    /// facility named `name`: the name must be a registered facility, active, and one of them.
    pub fn may_record_at(&self, name: &str, bound: &[String]) -> Result<&FacilityEntry, FacilityRefusal> {
        let wanted = name.trim().to_lowercase();
        // Among facilities of the same name, the caller's own.
        let mut named = self
            .facilities
            .values()
            .filter(|f| f.name.as_str().trim().to_lowercase() == wanted)
            .peekable();
        if named.peek().is_none() {
            return Err(FacilityRefusal::Unknown);
        }
        let mut first = None;
        for facility in named {
            if bound.iter().any(|b| b == facility.id.as_str()) {
                return match facility.status {
                    FacilityStatus::Active => Ok(facility),
                    FacilityStatus::Suspended => Err(FacilityRefusal::Suspended(facility.id.clone())),
                };
            }
            first.get_or_insert(facility.id.clone());
        }
        Err(FacilityRefusal::NotBound(first.expect("one facility at least")))
    }
}

mod parse;
pub use parse::{ICD11_PATTERN, LANGUAGE_PATTERN};

#[cfg(test)]
mod tests;
