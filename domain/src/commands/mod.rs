//! Commands: what vaccination systems and controllers ask for, parsed from their bodies into
//! values that are valid by construction. `RecordVaccination` takes DIVOC's certify record as-is.

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod wire;

use wire::Sent;

use crate::{
    ids::CertificateId,
    json::{Problems, path},
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
    /// Always empty in records parsed now: a request's comorbidities are checked (bad ones are
    /// refused like any field) and then dropped, since no credential or read model uses them and
    /// they are health data. The field stays so records read from the log before this keep their
    /// shape, and so the fingerprint of a record (its JSON, `[]` here) is the same as before for
    /// every record that had none.
    pub comorbidities: Vec<Text>,
    /// The programme's rules when the record was accepted (master data), so the signer and a
    /// replay decide with the rules that held then; `None` when master data did not define the
    /// programme (the signer's deployment-wide rules apply). Not part of the record's JSON
    /// fingerprint: the same dose posted twice is the same record whatever the rules.
    #[serde(skip)]
    pub rules: Option<crate::master::ProgrammeRules>,
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

/// A string field's JSON-type rule.
const STRING: &str = "must be a string";
/// An object field's JSON-type rule.
const OBJECT: &str = "must be an object";
/// A string array's JSON-type rule.
const STRINGS: &str = "must be an array of strings";

fn text(problems: &mut Problems, sent: &Sent<String>, field: &str) -> Option<Text> {
    let raw = problems.take(sent.required(field, STRING))?;
    problems.take(Text::parse(field, raw))
}

fn optional_text(problems: &mut Problems, sent: &Sent<String>, field: &str) -> Option<Option<Text>> {
    match problems.take(sent.optional(field, STRING))? {
        None => Some(None),
        Some(raw) => problems.take(Text::parse(field, raw)).map(Some),
    }
}

fn date(problems: &mut Problems, sent: &Sent<String>, field: &str) -> Option<IsoDate> {
    let raw = problems.take(sent.required(field, STRING))?;
    problems.take(IsoDate::parse(field, raw))
}

/// Each string of an array (absent: none) as text, named `field[i]`.
fn texts(problems: &mut Problems, sent: &Sent<Vec<String>>, field: &str) -> Option<Vec<Text>> {
    let raw = problems
        .take(sent.optional(field, STRINGS))?
        .cloned()
        .unwrap_or_default();
    let parsed: Vec<Option<Text>> = raw
        .iter()
        .enumerate()
        .map(|(i, c)| problems.take(Text::parse(&format!("{field}[{i}]"), c)))
        .collect();
    parsed.into_iter().collect()
}

fn address(problems: &mut Problems, sent: &Sent<wire::Address>, prefix: &str, ctx: &ParseContext) -> Option<Address> {
    let object = problems.take(sent.required(prefix, OBJECT))?;
    let field = |key: &str| path(prefix, key);
    let country = match problems.take(object.country.optional(&field("country"), STRING))? {
        Some(raw) => problems.take(CountryCode::parse(&field("country"), raw)),
        None => Some(ctx.default_country.clone()),
    };
    Some(Address {
        line1: text(problems, &object.address_line1, &field("addressLine1"))?,
        line2: optional_text(problems, &object.address_line2, &field("addressLine2"))?,
        district: text(problems, &object.district, &field("district"))?,
        state: text(problems, &object.state, &field("state"))?,
        pincode: text(problems, &object.pincode, &field("pincode"))?,
        country: country?,
    })
}

fn birth(problems: &mut Problems, recipient: &wire::Recipient, ctx: &ParseContext) -> Option<Birth> {
    const AGE: &str = "must be a whole number of years from 0 to 150";
    // An age given is checked even beside a date of birth (which wins): what is sent is valid.
    let age = match problems.take(recipient.age.optional("recipient.age", AGE))? {
        Some(wire::Whole(age)) if (0..=150).contains(age) => Some(Some(*age as u8)),
        Some(_) => {
            problems.push(FieldError::new("recipient.age", AGE));
            None
        }
        None => Some(None),
    };
    if let Some(raw) = problems.take(recipient.dob.optional("recipient.dob", STRING))? {
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
fn recipient(
    problems: &mut Problems,
    sent: &Sent<wire::Recipient>,
    code: Option<&Text>,
    ctx: &ParseContext,
) -> Option<Recipient> {
    let object = problems.take(sent.required("recipient", OBJECT))?;
    // DIVOC certifies a record without an identity under its pre-enrollment code.
    let identity = match problems.take(object.identity.optional("recipient.identity", STRING)) {
        Some(Some(raw)) => problems.take(Identity::parse("recipient.identity", raw)),
        Some(None) => code.map(Identity::from_pre_enrollment_code),
        None => None,
    };
    let gender = problems
        .take(object.gender.required("recipient.gender", STRING))
        .and_then(|raw| problems.take(Gender::parse("recipient.gender", raw)));
    let contact = texts(problems, &object.contact, "recipient.contact");
    let (name, birth, nationality) = (
        text(problems, &object.name, "recipient.name"),
        birth(problems, object, ctx),
        text(problems, &object.nationality, "recipient.nationality"),
    );
    let address = address(problems, &object.address, "recipient.address", ctx);
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

fn vaccination(problems: &mut Problems, sent: &Sent<wire::Vaccination>, ctx: &ParseContext) -> Option<Vaccination> {
    const WHOLE: &str = "must be a whole number";
    let object = problems.take(sent.required("vaccination", OBJECT))?;
    let vaccine = problems
        .take(object.name.required("vaccination.name", STRING))
        .and_then(|raw| problems.take(ctx.catalog.resolve("vaccination.name", raw).cloned()));
    let given = problems
        .take(object.date.required("vaccination.date", STRING))
        .and_then(|raw| problems.take(IsoDate::of_vaccination("vaccination.date", raw, ctx.zone)));
    if given.is_some_and(|d| d.date() > ctx.today) {
        problems.push(FieldError::new("vaccination.date", "must not be in the future"));
    }
    let number = problems.take(object.dose.required("vaccination.dose", WHOLE));
    let of = problems.take(object.total_doses.required("vaccination.totalDoses", WHOLE));
    let dose = number.zip(of).and_then(|(n, of)| problems.take(Dose::new(n.0, of.0)));
    let (start, until) = (
        date(problems, &object.effective_start, "vaccination.effectiveStart"),
        date(problems, &object.effective_until, "vaccination.effectiveUntil"),
    );
    if start.zip(until).is_some_and(|(s, u)| s > u) {
        problems.push(FieldError::new(
            "vaccination.effectiveUntil",
            "must not be before effectiveStart",
        ));
    }
    let (manufacturer, batch) = (
        text(problems, &object.manufacturer, "vaccination.manufacturer"),
        text(problems, &object.batch, "vaccination.batch"),
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

/// Reads a body into its wire model (never fails for an object: every field is [`Sent`]).
fn wire<T: serde::de::DeserializeOwned + Default>(body: &Value) -> T {
    T::deserialize(body).unwrap_or_default()
}

impl RecordVaccination {
    /// Parses one DIVOC certify record, reporting every problem with its field.
    pub fn parse(body: &Value, ctx: &ParseContext) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        if !body.is_object() {
            problems.push(FieldError::new("", "must be a JSON object (one certify record)"));
            return problems.finish(None);
        }
        let record = Self::read(&mut problems, &wire(body), ctx);
        problems.finish(record)
    }

    fn read(problems: &mut Problems, body: &wire::CertifyRecord, ctx: &ParseContext) -> Option<Self> {
        let pre_enrollment_code = problems
            .take(body.pre_enrollment_code.required("preEnrollmentCode", STRING))
            .and_then(|raw| problems.take(Text::parse_max("preEnrollmentCode", raw, 64)));
        let programme = text(problems, &body.program_id, "programId");
        let recipient = recipient(problems, &body.recipient, pre_enrollment_code.as_ref(), ctx);
        let vaccination = vaccination(problems, &body.vaccination, ctx);
        let vaccinator = problems
            .take(body.vaccinator.required("vaccinator", OBJECT))
            .and_then(|v| text(problems, &v.name, "vaccinator.name"));
        let facility = problems.take(body.facility.required("facility", OBJECT)).and_then(|f| {
            let name = text(problems, &f.name, "facility.name");
            let address = address(problems, &f.address, "facility.address", ctx);
            Some(Facility {
                name: name?,
                address: address?,
            })
        });
        // Checked, then not kept (see `RecordVaccination::comorbidities`).
        let comorbidities = texts(problems, &body.comorbidities, "comorbidities").map(|_| Vec::new());
        Some(Self {
            pre_enrollment_code: pre_enrollment_code?,
            programme: programme?,
            recipient: recipient?,
            vaccination: vaccination?,
            vaccinator: vaccinator?,
            facility: facility?,
            comorbidities: comorbidities?,
            rules: None,
        })
    }
}

impl CorrectVaccination {
    /// Parses a correction: a whole certify record plus, optionally, the `certificateId` it
    /// corrects (else the recipient's current certificate for that programme and dose).
    pub fn parse(body: &Value, ctx: &ParseContext) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let sent: wire::Correction = wire(body);
        let target = match problems.take(sent.certificate_id.optional("certificateId", STRING)) {
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
        let sent: wire::Revocation = wire(body);
        let certificate_id = problems
            .take(sent.certificate_id.required("certificateId", STRING))
            .and_then(|raw| problems.take(CertificateId::parse("certificateId", raw)));
        let reason = problems
            .take(sent.reason.required("reason", STRING))
            .and_then(|raw| problems.take(Text::parse_max("reason", raw, 500)));
        let value = certificate_id
            .zip(reason)
            .map(|(certificate_id, reason)| Self { certificate_id, reason });
        problems.finish(value)
    }
}

#[cfg(test)]
mod tests;
