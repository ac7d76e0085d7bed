//! Parsing an administrator's master-data bodies: every problem of a body named with its field
//! (`diseases[2]`, `eu.product`), strict where the OpenAPI document is (JSON numbers, exact
//! country codes, no unknown fields), so what the document calls valid is what is accepted.

use chrono_tz::Tz;
use serde_json::Value;

use super::{
    EuCodes, FacilityEntry, FacilityStatus, MasterId, MasterVaccine, Programme, ProgrammeRules, VaccinatorEntry,
};
use crate::{
    json::{Problems, integer},
    vaccine::Vaccine,
    values::{CountryCode, FieldError, Text},
};

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

fn whole(
    problems: &mut Problems,
    body: &serde_json::Map<String, Value>,
    field: &str,
    range: (i64, i64),
) -> Option<i64> {
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
        problems.push(FieldError::new(
            "languages",
            "must be an array of at most 8 language tags",
        ));
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
            &[
                "name",
                "diseases",
                "totalDoses",
                "updateLimit",
                "timeZone",
                "country",
                "languages",
            ],
        );
        let name = required_text(&mut problems, body, "name");
        let diseases = texts(&mut problems, body, "diseases", 16);
        let total_doses = whole(&mut problems, body, "totalDoses", (1, 10));
        let update_limit = whole(&mut problems, body, "updateLimit", (0, 100));
        let time_zone = required_str(&mut problems, body, "timeZone").and_then(|raw| {
            problems.take(
                raw.parse::<Tz>()
                    .map_err(|_| FieldError::new("timeZone", "must be an IANA time zone (e.g. Asia/Kolkata)")),
            )
        });
        let country = required_str(&mut problems, body, "country").and_then(|raw| {
            // Exactly as ISO writes it (upper case), as the schema's list says.
            let code = problems.take(CountryCode::parse("country", raw))?;
            if code.as_str() == raw {
                Some(code)
            } else {
                problems.push(FieldError::new(
                    "country",
                    "must be an ISO 3166-1 alpha-3 code in upper case, e.g. IND",
                ));
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
            &[
                "name",
                "manufacturer",
                "icd11Code",
                "icd11Term",
                "vaccineType",
                "disease",
                "eu",
            ],
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
                for extra in eu
                    .keys()
                    .filter(|k| !["product", "manufacturer", "prophylaxis"].contains(&k.as_str()))
                {
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
                problems.push(FieldError::new(
                    "facilities",
                    "must be an array of 1 to 64 facility ids",
                ));
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
