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
    json::{Problems, integer},
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

const STRING: &str = "must be a string";

fn object<'a>(problems: &mut Problems, body: &'a Value, field: &str) -> Option<&'a serde_json::Map<String, Value>> {
    let found = body.as_object();
    if found.is_none() {
        problems.push(FieldError::new(field, "must be a JSON object"));
    }
    found
}

fn required_str<'a>(problems: &mut Problems, body: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a str> {
    match body.get(field) {
        None | Some(Value::Null) => {
            problems.push(FieldError::new(field, "is required"));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            problems.push(FieldError::new(field, "is required"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            problems.push(FieldError::new(field, STRING));
            None
        }
    }
}

fn required_text(problems: &mut Problems, body: &serde_json::Map<String, Value>, field: &str) -> Option<Text> {
    let raw = required_str(problems, body, field)?;
    problems.take(Text::parse(field, raw))
}

fn texts(problems: &mut Problems, body: &serde_json::Map<String, Value>, field: &str, max: usize) -> Option<Vec<Text>> {
    let Some(value) = body.get(field).filter(|v| !v.is_null()) else {
        return Some(Vec::new());
    };
    let Some(items) = value.as_array() else {
        problems.push(FieldError::new(field, "must be an array of strings"));
        return None;
    };
    if items.len() > max {
        problems.push(FieldError::new(field, format!("must hold at most {max} items")));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        match item.as_str() {
            Some(s) => out.push(problems.take(Text::parse(&path, s))?),
            None => {
                problems.push(FieldError::new(path, STRING));
                return None;
            }
        }
    }
    Some(out)
}

fn whole(problems: &mut Problems, body: &serde_json::Map<String, Value>, field: &str, range: (i64, i64)) -> Option<i64> {
    let Some(value) = body.get(field).filter(|v| !v.is_null()) else {
        problems.push(FieldError::new(field, "is required"));
        return None;
    };
    // A JSON number only (the schema says integer): digits in a string are refused here.
    let number = value.is_number().then(|| integer(value)).flatten();
    match number {
        Some(n) if (range.0..=range.1).contains(&n) => Some(n),
        _ => {
            problems.push(FieldError::new(
                field,
                format!("must be a whole number from {} to {}", range.0, range.1),
            ));
            None
        }
    }
}

fn unknown_fields(problems: &mut Problems, body: &serde_json::Map<String, Value>, known: &[&str]) {
    for field in body.keys().filter(|k| !known.contains(&k.as_str())) {
        problems.push(FieldError::new(field.clone(), "is not a field of this record"));
    }
}

/// The pattern of an ICD-11 code as master data accepts it.
pub const ICD11_PATTERN: &str = "^[A-Za-z0-9.]{2,16}$";

/// The pattern of a language tag (BCP 47's shape: subtags of 1 to 8 letters or digits).
pub const LANGUAGE_PATTERN: &str = "^[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})*$";

fn languages(problems: &mut Problems, body: &serde_json::Map<String, Value>) -> Option<Vec<String>> {
    let Some(value) = body.get("languages").filter(|v| !v.is_null()) else {
        return Some(Vec::new());
    };
    let Some(items) = value.as_array().filter(|items| items.len() <= 8) else {
        problems.push(FieldError::new("languages", "must be an array of at most 8 language tags"));
        return None;
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let tag = item.as_str().unwrap_or_default();
        let ok = (1..=35).contains(&tag.len())
            && tag
                .split('-')
                .all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
        if !ok {
            problems.push(FieldError::new(
                format!("languages[{i}]"),
                "must be a BCP 47 language tag (e.g. hi, ta-LK)",
            ));
            return None;
        }
        out.push(tag.to_owned());
    }
    Some(out)
}

impl Programme {
    /// An administrator's body for programme `id`.
    pub fn parse(id: &str, body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let id = problems.take(MasterId::parse("id", id));
        let Some(body) = object(&mut problems, body, "") else {
            return problems.finish(None);
        };
        unknown_fields(
            &mut problems,
            body,
            &["name", "diseases", "totalDoses", "updateLimit", "timeZone", "country", "languages"],
        );
        let name = required_text(&mut problems, body, "name");
        let diseases = texts(&mut problems, body, "diseases", 16);
        let total_doses = whole(&mut problems, body, "totalDoses", (1, 10));
        let update_limit = whole(&mut problems, body, "updateLimit", (0, 100));
        let time_zone = required_str(&mut problems, body, "timeZone").and_then(|raw| {
            problems.take(raw.parse::<Tz>().map_err(|_| {
                FieldError::new("timeZone", "must be an IANA time zone (e.g. Asia/Kolkata)")
            }))
        });
        let country = required_str(&mut problems, body, "country").and_then(|raw| {
            // Exactly as ISO writes it (upper case), as the schema's list says.
            let code = problems.take(CountryCode::parse("country", raw))?;
            if code.as_str() == raw {
                Some(code)
            } else {
                problems.push(FieldError::new("country", "must be an ISO 3166-1 alpha-3 code in upper case, e.g. IND"));
                None
            }
        });
        let languages = languages(&mut problems, body);
        let programme = (|| {
            Some(Programme {
                id: id?,
                name: name?,
                diseases: diseases?,
                rules: ProgrammeRules {
                    total_doses: u8::try_from(total_doses?).ok()?,
                    update_limit: u32::try_from(update_limit?).ok()?,
                    time_zone: time_zone?,
                },
                country: country?,
                languages: languages?,
            })
        })();
        problems.finish(programme)
    }
}

impl MasterVaccine {
    /// An administrator's body for a vaccine.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let Some(body) = object(&mut problems, body, "") else {
            return problems.finish(None);
        };
        unknown_fields(
            &mut problems,
            body,
            &["name", "manufacturer", "icd11Code", "icd11Term", "vaccineType", "disease", "eu"],
        );
        let name = required_text(&mut problems, body, "name");
        let manufacturer = match body.get("manufacturer").filter(|v| !v.is_null()) {
            None => Some(None),
            Some(_) => required_text(&mut problems, body, "manufacturer").map(Some),
        };
        let code = required_str(&mut problems, body, "icd11Code").and_then(|raw| {
            let ok = (2..=16).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
            // (ICD11_PATTERN says the same.)
            if ok {
                Some(raw.to_owned())
            } else {
                problems.push(FieldError::new("icd11Code", "must be an ICD-11 code (e.g. XM1NL1)"));
                None
            }
        });
        let term = required_text(&mut problems, body, "icd11Term");
        let kind = required_text(&mut problems, body, "vaccineType");
        let disease = required_text(&mut problems, body, "disease");
        let eu = match body.get("eu").filter(|v| !v.is_null()) {
            None => Some(None),
            Some(eu) => object(&mut problems, eu, "eu").and_then(|eu| {
                for extra in eu.keys().filter(|k| !["product", "manufacturer", "prophylaxis"].contains(&k.as_str())) {
                    problems.push(FieldError::new(format!("eu.{extra}"), "is not a field of this record"));
                }
                let field = |problems: &mut Problems, name: &str| {
                    let path = format!("eu.{name}");
                    match eu.get(name).and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
                        Some(raw) => problems.take(Text::parse(&path, raw)),
                        None => {
                            problems.push(FieldError::new(path, "is required (a string)"));
                            None
                        }
                    }
                };
                let product = field(&mut problems, "product");
                let manufacturer = field(&mut problems, "manufacturer");
                let prophylaxis = field(&mut problems, "prophylaxis");
                Some(Some(EuCodes {
                    product: product?,
                    manufacturer: manufacturer?,
                    prophylaxis: prophylaxis?,
                }))
            }),
        };
        let vaccine = (|| {
            Some(MasterVaccine {
                vaccine: Vaccine {
                    name: name?.as_str().to_owned(),
                    icd11_code: code?,
                    icd11_term: term?.as_str().to_owned(),
                    vaccine_type: kind?.as_str().to_owned(),
                    disease: disease?.as_str().to_owned(),
                },
                manufacturer: manufacturer?,
                eu: eu?,
            })
        })();
        problems.finish(vaccine)
    }
}

impl FacilityEntry {
    /// An administrator's body for facility `id` (registered suspended unless `status` says
    /// `active`: a controller activates it).
    pub fn parse(id: &str, body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let id = problems.take(MasterId::parse("id", id));
        let Some(body) = object(&mut problems, body, "") else {
            return problems.finish(None);
        };
        unknown_fields(&mut problems, body, &["name", "district", "state", "status"]);
        let name = required_text(&mut problems, body, "name");
        let district = required_text(&mut problems, body, "district");
        let state = required_text(&mut problems, body, "state");
        let status = match body.get("status").filter(|v| !v.is_null()) {
            None => Some(FacilityStatus::Suspended),
            Some(Value::String(s)) if s == "active" => Some(FacilityStatus::Active),
            Some(Value::String(s)) if s == "suspended" => Some(FacilityStatus::Suspended),
            Some(_) => {
                problems.push(FieldError::new("status", "must be \"active\" or \"suspended\""));
                None
            }
        };
        let facility = (|| {
            Some(FacilityEntry {
                id: id?,
                name: name?,
                district: district?,
                state: state?,
                status: status?,
            })
        })();
        problems.finish(facility)
    }
}

impl VaccinatorEntry {
    /// An administrator's body for vaccinator `id` (active unless `status` says `suspended`).
    pub fn parse(id: &str, body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let id = problems.take(MasterId::parse("id", id));
        let Some(body) = object(&mut problems, body, "") else {
            return problems.finish(None);
        };
        unknown_fields(&mut problems, body, &["name", "facilities", "status"]);
        let name = required_text(&mut problems, body, "name");
        let facilities = match body.get("facilities").and_then(Value::as_array) {
            Some(items) if !items.is_empty() && items.len() <= 64 => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = format!("facilities[{i}]");
                    match item.as_str() {
                        Some(raw) => out.extend(problems.take(MasterId::parse(&path, raw))),
                        None => problems.push(FieldError::new(path, STRING)),
                    }
                }
                Some(out)
            }
            _ => {
                problems.push(FieldError::new("facilities", "must be an array of 1 to 64 facility ids"));
                None
            }
        };
        let status = match body.get("status").filter(|v| !v.is_null()) {
            None => Some(FacilityStatus::Active),
            Some(Value::String(s)) if s == "active" => Some(FacilityStatus::Active),
            Some(Value::String(s)) if s == "suspended" => Some(FacilityStatus::Suspended),
            Some(_) => {
                problems.push(FieldError::new("status", "must be \"active\" or \"suspended\""));
                None
            }
        };
        let vaccinator = (|| {
            Some(VaccinatorEntry {
                id: id?,
                name: name?,
                facilities: facilities?,
                status: status?,
            })
        })();
        problems.finish(vaccinator)
    }
}

#[cfg(test)]
mod tests;
