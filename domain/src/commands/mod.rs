//! Commands: what vaccination systems and controllers ask for, parsed from their bodies into
//! values that are valid by construction. `RecordVaccination` takes DIVOC's certify record as-is.

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ids::CertificateId,
    json::{self, Problems, path},
    vaccine::{Vaccine, VaccineCatalog},
    values::{CountryCode, Dose, FieldError, Gender, Identity, IsoDate, Text},
};

/// What parsing needs besides the body: the master list, the programme's time zone and country,
/// and today's date in that zone (the clock is read by the caller, not here).
#[derive(Clone, Debug)]
pub struct ParseContext<'a> {
    pub catalog: &'a VaccineCatalog,
    pub zone: Tz,
    pub default_country: CountryCode,
    pub today: NaiveDate,
}

/// A postal address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub line1: Text,
    pub line2: Option<Text>,
    pub district: Text,
    pub state: Text,
    pub pincode: Text,
    pub country: CountryCode,
}

/// How old the recipient is: DIVOC allows either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Birth {
    Date(IsoDate),
    Age(u8),
}

/// The person vaccinated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub identity: Identity,
    pub name: Text,
    pub birth: Birth,
    pub gender: Gender,
    pub nationality: Text,
    pub contact: Vec<Text>,
    pub address: Address,
}

/// The dose given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vaccination {
    pub vaccine: Vaccine,
    pub manufacturer: Text,
    pub batch: Text,
    pub date: IsoDate,
    pub dose: Dose,
    pub effective_start: IsoDate,
    pub effective_until: IsoDate,
}

/// Where the dose was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facility {
    pub name: Text,
    pub address: Address,
}

/// Record a dose (DIVOC's certify request, one record of its array).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordVaccination {
    pub pre_enrollment_code: Text,
    pub programme: Text,
    pub recipient: Recipient,
    pub vaccination: Vaccination,
    pub vaccinator: Text,
    pub facility: Facility,
    pub comorbidities: Vec<Text>,
}

/// Which certificate a correction replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CorrectionTarget {
    /// The certificate named by the caller.
    Certificate(CertificateId),
    /// The current certificate of this programme's dose for the recipient.
    Dose { programme: Text, dose: u8 },
}

/// Correct a recorded dose (DIVOC's certificate update): the whole corrected record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectVaccination {
    pub target: CorrectionTarget,
    pub corrected: RecordVaccination,
}

/// Revoke a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeCertificate {
    pub certificate_id: CertificateId,
    pub reason: Text,
}

fn text(problems: &mut Problems, object: &Value, prefix: &str, key: &str) -> Option<Text> {
    let raw = problems.take(json::required_str(object, prefix, key))?;
    problems.take(Text::parse(&path(prefix, key), raw))
}

fn optional_text(problems: &mut Problems, object: &Value, prefix: &str, key: &str) -> Option<Option<Text>> {
    match problems.take(json::optional_str(object, prefix, key))? {
        None => Some(None),
        Some(raw) => problems.take(Text::parse(&path(prefix, key), raw)).map(Some),
    }
}

fn date(problems: &mut Problems, object: &Value, prefix: &str, key: &str) -> Option<IsoDate> {
    let raw = problems.take(json::required_str(object, prefix, key))?;
    problems.take(IsoDate::parse(&path(prefix, key), raw))
}

fn address(problems: &mut Problems, parent: &Value, prefix: &str, key: &str, ctx: &ParseContext) -> Option<Address> {
    let object = problems.take(json::required_object(parent, prefix, key))?;
    let prefix = &path(prefix, key);
    let country = match problems.take(json::optional_str(object, prefix, "country"))? {
        Some(raw) => problems.take(CountryCode::parse(&path(prefix, "country"), raw)),
        None => Some(ctx.default_country.clone()),
    };
    Some(Address {
        line1: text(problems, object, prefix, "addressLine1")?,
        line2: optional_text(problems, object, prefix, "addressLine2")?,
        district: text(problems, object, prefix, "district")?,
        state: text(problems, object, prefix, "state")?,
        pincode: text(problems, object, prefix, "pincode")?,
        country: country?,
    })
}

fn birth(problems: &mut Problems, recipient: &Value, ctx: &ParseContext) -> Option<Birth> {
    // An age given is checked even beside a date of birth (which wins): what is sent is valid.
    let age = match json::optional(recipient, "age") {
        Some(age) => match json::integer(age).filter(|a| (0..=150).contains(a)) {
            Some(age) => Some(Some(age as u8)),
            None => {
                problems.push(FieldError::new(
                    "recipient.age",
                    "must be a whole number of years from 0 to 150",
                ));
                None
            }
        },
        None => Some(None),
    };
    if let Some(raw) = problems.take(json::optional_str(recipient, "recipient", "dob"))? {
        let dob = problems.take(IsoDate::parse("recipient.dob", raw))?;
        if dob.date() > ctx.today {
            problems.push(FieldError::new("recipient.dob", "must not be in the future"));
            return None;
        }
        age?;
        return Some(Birth::Date(dob));
    }
    match age? {
        Some(age) => Some(Birth::Age(age)),
        None => {
            problems.push(FieldError::new("recipient.dob", "is required (or recipient.age)"));
            None
        }
    }
}

/// The recipient; `code` (the record's pre-enrollment code, parsed) names one sent without identity.
fn recipient(problems: &mut Problems, body: &Value, code: Option<&Text>, ctx: &ParseContext) -> Option<Recipient> {
    let object = problems.take(json::required_object(body, "", "recipient"))?;
    let p = "recipient";
    // DIVOC certifies a record without an identity under its pre-enrollment code.
    let identity = match problems.take(json::optional_str(object, p, "identity")) {
        Some(Some(raw)) => problems.take(Identity::parse("recipient.identity", raw)),
        Some(None) => code.map(Identity::from_pre_enrollment_code),
        None => None,
    };
    let gender = problems
        .take(json::required_str(object, p, "gender"))
        .and_then(|raw| problems.take(Gender::parse("recipient.gender", raw)));
    let contact = problems.take(json::string_array(object, p, "contact")).and_then(|raw| {
        let parsed: Vec<Option<Text>> = raw
            .iter()
            .enumerate()
            .map(|(i, c)| problems.take(Text::parse(&format!("recipient.contact[{i}]"), c)))
            .collect();
        parsed.into_iter().collect::<Option<Vec<_>>>()
    });
    let (name, birth, nationality) = (
        text(problems, object, p, "name"),
        birth(problems, object, ctx),
        text(problems, object, p, "nationality"),
    );
    let address = address(problems, object, p, "address", ctx);
    Some(Recipient {
        identity: identity?,
        name: name?,
        birth: birth?,
        gender: gender?,
        nationality: nationality?,
        contact: contact?,
        address: address?,
    })
}

fn vaccination(problems: &mut Problems, body: &Value, ctx: &ParseContext) -> Option<Vaccination> {
    let object = problems.take(json::required_object(body, "", "vaccination"))?;
    let p = "vaccination";
    let vaccine = problems
        .take(json::required_str(object, p, "name"))
        .and_then(|raw| problems.take(ctx.catalog.resolve("vaccination.name", raw).cloned()));
    let given = problems
        .take(json::required_str(object, p, "date"))
        .and_then(|raw| problems.take(IsoDate::of_vaccination("vaccination.date", raw, ctx.zone)));
    if given.is_some_and(|d| d.date() > ctx.today) {
        problems.push(FieldError::new("vaccination.date", "must not be in the future"));
    }
    let number = problems.take(json::required_integer(object, p, "dose"));
    let of = problems.take(json::required_integer(object, p, "totalDoses"));
    let dose = number.zip(of).and_then(|(n, of)| problems.take(Dose::new(n, of)));
    let (start, until) = (
        date(problems, object, p, "effectiveStart"),
        date(problems, object, p, "effectiveUntil"),
    );
    if start.zip(until).is_some_and(|(s, u)| s > u) {
        problems.push(FieldError::new(
            "vaccination.effectiveUntil",
            "must not be before effectiveStart",
        ));
    }
    let (manufacturer, batch) = (
        text(problems, object, p, "manufacturer"),
        text(problems, object, p, "batch"),
    );
    Some(Vaccination {
        vaccine: vaccine?,
        manufacturer: manufacturer?,
        batch: batch?,
        date: given?,
        dose: dose?,
        effective_start: start?,
        effective_until: until?,
    })
}

impl RecordVaccination {
    /// Parses one DIVOC certify record, reporting every problem with its field.
    pub fn parse(body: &Value, ctx: &ParseContext) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        if !body.is_object() {
            problems.push(FieldError::new("", "must be a JSON object (one certify record)"));
            return problems.finish(None);
        }
        let record = Self::read(&mut problems, body, ctx);
        problems.finish(record)
    }

    fn read(problems: &mut Problems, body: &Value, ctx: &ParseContext) -> Option<Self> {
        let pre_enrollment_code = problems
            .take(json::required_str(body, "", "preEnrollmentCode"))
            .and_then(|raw| problems.take(Text::parse_max("preEnrollmentCode", raw, 64)));
        let programme = text(problems, body, "", "programId");
        let recipient = recipient(problems, body, pre_enrollment_code.as_ref(), ctx);
        let vaccination = vaccination(problems, body, ctx);
        let vaccinator = problems
            .take(json::required_object(body, "", "vaccinator"))
            .and_then(|v| text(problems, v, "vaccinator", "name"));
        let facility = problems
            .take(json::required_object(body, "", "facility"))
            .and_then(|f| {
                let name = text(problems, f, "facility", "name");
                let address = address(problems, f, "facility", "address", ctx);
                Some(Facility {
                    name: name?,
                    address: address?,
                })
            });
        let comorbidities = problems
            .take(json::string_array(body, "", "comorbidities"))
            .and_then(|raw| {
                let parsed: Vec<Option<Text>> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, c)| problems.take(Text::parse(&format!("comorbidities[{i}]"), c)))
                    .collect();
                parsed.into_iter().collect::<Option<Vec<_>>>()
            });
        Some(Self {
            pre_enrollment_code: pre_enrollment_code?,
            programme: programme?,
            recipient: recipient?,
            vaccination: vaccination?,
            vaccinator: vaccinator?,
            facility: facility?,
            comorbidities: comorbidities?,
        })
    }
}

impl CorrectVaccination {
    /// Parses a correction: a whole certify record plus, optionally, the `certificateId` it
    /// corrects (else the recipient's current certificate for that programme and dose).
    pub fn parse(body: &Value, ctx: &ParseContext) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let target = match problems.take(json::optional_str(body, "", "certificateId")) {
            Some(Some(raw)) => problems
                .take(CertificateId::parse("certificateId", raw))
                .map(CorrectionTarget::Certificate),
            _ => None,
        };
        let corrected = match RecordVaccination::parse(body, ctx) {
            Ok(record) => Some(record),
            Err(errors) => {
                errors.into_iter().for_each(|e| problems.push(e));
                None
            }
        };
        let value = corrected.map(|corrected| {
            let target = target.unwrap_or_else(|| CorrectionTarget::Dose {
                programme: corrected.programme.clone(),
                dose: corrected.vaccination.dose.number(),
            });
            Self { target, corrected }
        });
        problems.finish(value)
    }
}

impl RevokeCertificate {
    /// Parses `{"certificateId": ..., "reason": ...}`.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let certificate_id = problems
            .take(json::required_str(body, "", "certificateId"))
            .and_then(|raw| problems.take(CertificateId::parse("certificateId", raw)));
        let reason = problems
            .take(json::required_str(body, "", "reason"))
            .and_then(|raw| problems.take(Text::parse_max("reason", raw, 500)));
        let value = certificate_id
            .zip(reason)
            .map(|(certificate_id, reason)| Self { certificate_id, reason });
        problems.finish(value)
    }
}

#[cfg(test)]
mod tests;
