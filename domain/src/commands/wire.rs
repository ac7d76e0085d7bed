//! DIVOC's certify record as it arrives, typed: the one model the parser reads
//! ([`super::RecordVaccination::parse`]) and, with the `openapi` feature, the one the command
//! API's OpenAPI document is generated from. Every field is [`Sent`]: absent, null or blank
//! (DIVOC's systems send `""` for what they lack), of the wrong JSON type, or a value; reading
//! never fails, so the parser reports every problem of a body with its field, not only the first.
//! The rules a field's value must meet are its `schema` attribute (the JSON Schema the document
//! states) and its parser in `super` (which also checks what a schema cannot: the master list,
//! dates not after today, dose ≤ totalDoses, effectiveStart ≤ effectiveUntil).

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;

use crate::values::FieldError;

/// A field as sent.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Sent<T> {
    /// Absent, null, or a blank string.
    #[default]
    Absent,
    /// Present but not of the field's JSON type.
    Wrong,
    Value(T),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Sent<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty()) {
            return Ok(Self::Absent);
        }
        Ok(serde_json::from_value(value).map_or(Self::Wrong, Self::Value))
    }
}

impl<T> Sent<T> {
    /// The value of a field that must be present; `wrong` names its JSON type's rule.
    pub fn required(&self, field: &str, wrong: &str) -> Result<&T, FieldError> {
        match self {
            Self::Value(value) => Ok(value),
            Self::Absent => Err(FieldError::new(field, "is required")),
            Self::Wrong => Err(FieldError::new(field, wrong)),
        }
    }

    /// The value of an optional field, if sent.
    pub fn optional(&self, field: &str, wrong: &str) -> Result<Option<&T>, FieldError> {
        match self {
            Self::Value(value) => Ok(Some(value)),
            Self::Absent => Ok(None),
            Self::Wrong => Err(FieldError::new(field, wrong)),
        }
    }
}

/// A whole number as DIVOC's clients send it: a JSON integer, an integral number such as `2.0`,
/// or digits in a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Whole(pub i64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        crate::json::integer(&value)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("not a whole number"))
    }
}

#[cfg(feature = "openapi")]
use schemas as s;

/// A postal address.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub address_line1: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::optional_text))]
    #[serde(default)]
    pub address_line2: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub district: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub state: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub pincode: Sent<String>,
    /// ISO 3166-1 alpha-3; the programme's country when absent.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::country))]
    #[serde(default)]
    pub country: Sent<String>,
}

/// The person vaccinated. `dob` or `age` is required (`dob` wins when both are given).
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recipient {
    /// A URI: `did:<scheme>:<id>`, `tel:...`; the pre-enrollment code stands in when absent.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::identity))]
    #[serde(default)]
    pub identity: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub name: Sent<String>,
    /// `YYYY-MM-DD`, not after today; required unless `age` is given.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::birth_date))]
    #[serde(default)]
    pub dob: Sent<String>,
    /// Whole years from 0 to 150 (a number or digits), when no date of birth is known.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::age))]
    #[serde(default)]
    pub age: Sent<Whole>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::gender, required = true))]
    #[serde(default)]
    pub gender: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub nationality: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::texts))]
    #[serde(default)]
    pub contact: Sent<Vec<String>>,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Address))]
    #[serde(default)]
    pub address: Sent<Address>,
}

/// The dose given.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Vaccination {
    /// A vaccine on the programme's master list (the served document lists them).
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub name: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub batch: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub manufacturer: Sent<String>,
    /// `YYYY-MM-DD`, or an RFC 3339 timestamp reduced to its date in the programme's time zone;
    /// not after today.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::vaccination_date, required = true))]
    #[serde(default)]
    pub date: Sent<String>,
    /// 1 ≤ dose ≤ totalDoses.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::dose, required = true))]
    #[serde(default)]
    pub dose: Sent<Whole>,
    /// At most 10.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::dose, required = true))]
    #[serde(default)]
    pub total_doses: Sent<Whole>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::date, required = true))]
    #[serde(default)]
    pub effective_start: Sent<String>,
    /// Not before `effectiveStart`.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::date, required = true))]
    #[serde(default)]
    pub effective_until: Sent<String>,
}

/// A named person.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Named {
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub name: Sent<String>,
}

/// Where the dose was given.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Facility {
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub name: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Address))]
    #[serde(default)]
    pub address: Sent<Address>,
}

/// One record of DIVOC's certify request, accepted as-is.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CertifyRecord {
    /// At most 64 characters.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::code, required = true))]
    #[serde(default)]
    pub pre_enrollment_code: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::text, required = true))]
    #[serde(default)]
    pub program_id: Sent<String>,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Recipient))]
    #[serde(default)]
    pub recipient: Sent<Recipient>,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Vaccination))]
    #[serde(default)]
    pub vaccination: Sent<Vaccination>,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Named))]
    #[serde(default)]
    pub vaccinator: Sent<Named>,
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Facility))]
    #[serde(default)]
    pub facility: Sent<Facility>,
    #[cfg_attr(feature = "openapi", schema(schema_with = s::texts))]
    #[serde(default)]
    pub comorbidities: Sent<Vec<String>>,
}

/// A correction: the whole corrected record, optionally naming the certificate it corrects
/// (else the recipient's current certificate for that programme and dose).
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Correction {
    #[cfg_attr(feature = "openapi", schema(schema_with = s::optional_certificate_id))]
    #[serde(default)]
    pub certificate_id: Sent<String>,
    #[serde(flatten)]
    pub record: CertifyRecord,
}

/// A revocation request.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    #[cfg_attr(feature = "openapi", schema(schema_with = s::certificate_id, required = true))]
    #[serde(default)]
    pub certificate_id: Sent<String>,
    /// Shown to verifiers; at most 500 characters.
    #[cfg_attr(feature = "openapi", schema(schema_with = s::reason, required = true))]
    #[serde(default)]
    pub reason: Sent<String>,
    /// The certificate holder's recipient key (from the query API).
    #[cfg_attr(feature = "openapi", schema(schema_with = s::recipient_key, required = true))]
    #[serde(default)]
    pub recipient_key: Sent<String>,
}

/// The JSON Schemas of the fields: what their parsers accept, as far as JSON Schema can say.
#[cfg(feature = "openapi")]
pub mod schemas {
    use serde_json::json;
    use utoipa::openapi::Schema;

    use crate::{
        ids::CertificateId,
        values::{Dose, Text},
    };

    /// A JSON Schema, written as JSON.
    fn schema(value: serde_json::Value) -> Schema {
        serde_json::from_value(value).expect("a valid schema")
    }

    /// Absent, null or blank: what DIVOC's systems send for a value they lack.
    fn blank() -> serde_json::Value {
        json!({"type": ["string", "null"], "pattern": "^\\s*$"})
    }

    fn text_of(max: usize) -> Schema {
        schema(json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": Text::pattern()}))
    }

    /// Required text: not blank, at most 256 characters, no control or bidirectional-override
    /// characters.
    pub fn text() -> Schema {
        text_of(Text::MAX)
    }

    pub fn code() -> Schema {
        text_of(64)
    }

    pub fn reason() -> Schema {
        text_of(500)
    }

    pub fn optional_text() -> Schema {
        let forbidden = Text::FORBIDDEN;
        schema(json!({"type": ["string", "null"], "maxLength": Text::MAX, "pattern": format!("^[^{forbidden}]*$")}))
    }

    pub fn texts() -> Schema {
        schema(json!({"anyOf": [{"type": "array", "items": text()}, blank()]}))
    }

    /// A URI without spaces (`did:<scheme>:<id>`, `tel:...`), or blank.
    pub fn identity() -> Schema {
        let forbidden = Text::FORBIDDEN;
        let pattern = format!("^\\s*$|^[^\\s:{forbidden}]+:[^\\s{forbidden}]+$");
        schema(json!({"type": ["string", "null"], "maxLength": Text::MAX, "pattern": pattern}))
    }

    pub fn gender() -> Schema {
        schema(json!({"type": "string", "enum": ["Male", "Female", "Other"]}))
    }

    /// ISO 3166-1 alpha-3, or blank (the programme's country).
    pub fn country() -> Schema {
        let codes: Vec<&str> = celes::Country::get_countries().iter().map(|c| c.alpha3).collect();
        schema(json!({"anyOf": [{"type": "string", "enum": codes}, blank()]}))
    }

    fn iso_date() -> serde_json::Value {
        json!({"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})
    }

    /// `YYYY-MM-DD`.
    pub fn date() -> Schema {
        schema(iso_date())
    }

    pub fn birth_date() -> Schema {
        schema(json!({"anyOf": [iso_date(), blank()]}))
    }

    pub fn vaccination_date() -> Schema {
        schema(json!({"anyOf": [iso_date(), {"type": "string", "format": "date-time"}]}))
    }

    /// 1 to 10, as a JSON number or digits in a string.
    pub fn dose() -> Schema {
        schema(json!({"anyOf": [
            {"type": "integer", "minimum": 1, "maximum": Dose::MAX_DOSES},
            {"type": "string", "pattern": "^(10|[1-9])$"}
        ]}))
    }

    /// 0 to 150, as a JSON number or digits in a string, or blank.
    pub fn age() -> Schema {
        schema(json!({"anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 150},
            {"type": "string", "pattern": "^\\s*(1[0-4][0-9]|150|[0-9]{1,2})\\s*$"},
            blank()
        ]}))
    }

    pub fn certificate_id() -> Schema {
        schema(json!({"type": "string", "pattern": CertificateId::PATTERN}))
    }

    pub fn optional_certificate_id() -> Schema {
        schema(json!({"anyOf": [{"type": "string", "pattern": CertificateId::PATTERN}, blank()]}))
    }

    pub fn recipient_key() -> Schema {
        schema(json!({"type": "string", "pattern": "^[0-9a-f]{64}$"}))
    }
}
