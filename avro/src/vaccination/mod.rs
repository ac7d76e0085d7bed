//! `vaccination-events` records ⇄ domain events. Encoding writes every field in schema order;
//! decoding parses every value again through the domain's types, so a record that does not hold a
//! valid event is refused with the field named (and goes to the dead-letter topic).

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use domain::{
    commands::{Address, Birth, CorrectionTarget, Facility, Recipient, RecordVaccination, Vaccination},
    events::{VaccinationEvent, VaccinationPayload},
    ids::{CertificateId, EventId},
    master::ProgrammeRules,
    vaccine::Vaccine,
    values::{CountryCode, Dose, Gender, Identity, IsoDate, RecipientKey, Text},
};

use crate::value::{ConvertError, Fields, nullable, record, string};

/// Version of the envelope this code writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Who posted an event, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub source_system: String,
    pub source_record_id: String,
    pub actor: String,
}

/// A `vaccination-events` record: the event and its provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaccinationEnvelope {
    pub event: VaccinationEvent,
    pub provenance: Provenance,
}

/// The envelope as an Avro record value.
pub fn to_avro(envelope: &VaccinationEnvelope) -> Value {
    let (event, p) = (&envelope.event, &envelope.provenance);
    let payload = match &event.payload {
        VaccinationPayload::VaccinationRecorded(r) => Value::Union(0, Box::new(recorded(r))),
        VaccinationPayload::VaccinationCorrected { target, corrected } => {
            let certificate = match target {
                CorrectionTarget::Certificate(id) => Some(string(id)),
                CorrectionTarget::Dose { .. } => None,
            };
            let value = record(vec![
                ("certificateId", nullable(certificate)),
                ("corrected", recorded(corrected)),
            ]);
            Value::Union(1, Box::new(value))
        }
        VaccinationPayload::RevocationRequested { certificate_id, reason } => Value::Union(
            2,
            Box::new(record(vec![
                ("certificateId", string(certificate_id)),
                ("reason", string(reason)),
            ])),
        ),
        VaccinationPayload::RecipientErased { erased_keys } => Value::Union(
            3,
            Box::new(record(vec![(
                "erasedKeys",
                Value::Array(erased_keys.iter().map(string).collect()),
            )])),
        ),
    };
    record(vec![
        ("eventId", string(event.event_id)),
        ("eventType", string(event.payload.event_type())),
        ("occurredAt", Value::TimestampMillis(p.occurred_at.timestamp_millis())),
        ("recordedAt", Value::TimestampMillis(p.recorded_at.timestamp_millis())),
        ("sourceSystem", string(&p.source_system)),
        ("sourceRecordId", string(&p.source_record_id)),
        ("actor", string(&p.actor)),
        ("recipientKey", string(event.recipient_key.as_str())),
        ("schemaVersion", Value::Int(SCHEMA_VERSION)),
        ("payload", payload),
    ])
}

fn address(a: &Address) -> Value {
    record(vec![
        ("addressLine1", string(&a.line1)),
        ("addressLine2", nullable(a.line2.as_ref().map(string))),
        ("district", string(&a.district)),
        ("state", string(&a.state)),
        ("pincode", string(&a.pincode)),
        ("country", nullable(Some(string(a.country.as_str())))),
    ])
}

fn recorded(r: &RecordVaccination) -> Value {
    let (dob, age) = match &r.recipient.birth {
        Birth::Date(d) => (Some(string(d)), None),
        Birth::Age(a) => (None, Some(Value::Int(i32::from(*a)))),
    };
    let recipient = record(vec![
        ("identity", string(r.recipient.identity.as_str())),
        ("name", string(&r.recipient.name)),
        ("dob", nullable(dob)),
        ("age", nullable(age)),
        ("gender", string(r.recipient.gender)),
        ("nationality", string(&r.recipient.nationality)),
        (
            "contact",
            Value::Array(r.recipient.contact.iter().map(string).collect()),
        ),
        ("address", address(&r.recipient.address)),
    ]);
    let v = &r.vaccination;
    let vaccination = record(vec![
        ("name", string(&v.vaccine.name)),
        ("icd11Code", string(&v.vaccine.icd11_code)),
        ("icd11Term", string(&v.vaccine.icd11_term)),
        ("vaccineType", string(&v.vaccine.vaccine_type)),
        ("disease", string(&v.vaccine.disease)),
        ("manufacturer", string(&v.manufacturer)),
        ("batch", string(&v.batch)),
        ("date", string(v.date)),
        ("dose", Value::Int(i32::from(v.dose.number()))),
        ("totalDoses", Value::Int(i32::from(v.dose.of()))),
        ("effectiveStart", string(v.effective_start)),
        ("effectiveUntil", string(v.effective_until)),
    ]);
    record(vec![
        ("preEnrollmentCode", string(&r.pre_enrollment_code)),
        ("programId", string(&r.programme)),
        ("recipient", recipient),
        ("vaccination", vaccination),
        ("vaccinator", string(&r.vaccinator)),
        (
            "facility",
            record(vec![
                ("name", string(&r.facility.name)),
                ("address", address(&r.facility.address)),
            ]),
        ),
        (
            "comorbidities",
            Value::Array(r.comorbidities.iter().map(string).collect()),
        ),
        ("sealed", nullable(None)),
        (
            "programmeRules",
            nullable(r.rules.map(|rules| {
                record(vec![
                    ("totalDoses", Value::Int(i32::from(rules.total_doses))),
                    (
                        "updateLimit",
                        Value::Int(i32::try_from(rules.update_limit).unwrap_or(i32::MAX)),
                    ),
                    ("timeZone", string(rules.time_zone.name())),
                ])
            })),
        ),
    ])
}

/// Reads an envelope back, checking every value through the domain's types.
pub fn from_avro(value: &Value) -> Result<VaccinationEnvelope, ConvertError> {
    let f = Fields::of(value, "envelope")?;
    let millis = |name: &str| {
        let ms = f.timestamp_millis(name)?;
        DateTime::from_timestamp_millis(ms).ok_or_else(|| ConvertError::Invalid {
            field: name.into(),
            rule: "out of range".into(),
        })
    };
    let provenance = Provenance {
        occurred_at: millis("occurredAt")?,
        recorded_at: millis("recordedAt")?,
        source_system: f.string("sourceSystem")?.to_owned(),
        source_record_id: f.string("sourceRecordId")?.to_owned(),
        actor: f.string("actor")?.to_owned(),
    };
    let (branch, inner) = f.union("payload")?;
    let payload = match branch {
        0 => VaccinationPayload::VaccinationRecorded(read_recorded(inner)?),
        1 => {
            let c = Fields::of(inner, "payload")?;
            let corrected = read_recorded(c.required("corrected")?)?;
            let target = match c.optional_string("certificateId")? {
                Some(id) => CorrectionTarget::Certificate(CertificateId::parse("certificateId", id)?),
                None => CorrectionTarget::Dose {
                    programme: corrected.programme.clone(),
                    dose: corrected.vaccination.dose.number(),
                },
            };
            VaccinationPayload::VaccinationCorrected { target, corrected }
        }
        2 => {
            let r = Fields::of(inner, "payload")?;
            VaccinationPayload::RevocationRequested {
                certificate_id: CertificateId::parse("certificateId", r.string("certificateId")?)?,
                reason: Text::parse("reason", r.string("reason")?)?,
            }
        }
        3 => VaccinationPayload::RecipientErased {
            erased_keys: Fields::of(inner, "payload")?
                .strings("erasedKeys")?
                .into_iter()
                .map(str::to_owned)
                .collect(),
        },
        other => return Err(ConvertError::UnknownPayload(format!("branch {other}"))),
    };
    let event = VaccinationEvent {
        event_id: EventId::parse("eventId", f.string("eventId")?)?,
        recipient_key: RecipientKey::parse("recipientKey", f.string("recipientKey")?)?,
        payload,
    };
    Ok(VaccinationEnvelope { event, provenance })
}

fn read_address(value: &Value, field: &str) -> Result<Address, ConvertError> {
    let a = Fields::of(value, field)?;
    let text = |name: &str| -> Result<Text, ConvertError> { Ok(Text::parse(name, a.string(name)?)?) };
    let country = a
        .optional_string("country")?
        .ok_or_else(|| ConvertError::Missing(format!("{field}.country")))?;
    Ok(Address {
        line1: text("addressLine1")?,
        line2: a
            .optional_string("addressLine2")?
            .map(|l| Text::parse("addressLine2", l))
            .transpose()?,
        district: text("district")?,
        state: text("state")?,
        pincode: text("pincode")?,
        country: CountryCode::parse("country", country)?,
    })
}

fn read_recorded(value: &Value) -> Result<RecordVaccination, ConvertError> {
    let r = Fields::of(value, "VaccinationRecorded")?;
    let text = |f: &Fields, name: &str| -> Result<Text, ConvertError> { Ok(Text::parse(name, f.string(name)?)?) };
    let p = Fields::of(r.required("recipient")?, "recipient")?;
    let birth = match (p.optional_string("dob")?, p.optional_int("age")?) {
        (Some(dob), _) => Birth::Date(IsoDate::parse("dob", dob)?),
        (None, Some(age)) => Birth::Age(u8::try_from(age).map_err(|_| ConvertError::Invalid {
            field: "age".into(),
            rule: "0..=255".into(),
        })?),
        (None, None) => return Err(ConvertError::Missing("recipient.dob or recipient.age".into())),
    };
    let recipient = Recipient {
        identity: Identity::parse("identity", p.string("identity")?)?,
        name: text(&p, "name")?,
        birth,
        gender: Gender::parse("gender", p.string("gender")?)?,
        nationality: text(&p, "nationality")?,
        contact: p
            .strings("contact")?
            .into_iter()
            .map(|c| Text::parse("contact", c))
            .collect::<Result<_, _>>()?,
        address: read_address(p.required("address")?, "recipient.address")?,
    };
    let v = Fields::of(r.required("vaccination")?, "vaccination")?;
    let vaccination = Vaccination {
        vaccine: Vaccine {
            name: v.string("name")?.to_owned(),
            icd11_code: v.string("icd11Code")?.to_owned(),
            icd11_term: v.string("icd11Term")?.to_owned(),
            vaccine_type: v.string("vaccineType")?.to_owned(),
            disease: v.string("disease")?.to_owned(),
        },
        manufacturer: text(&v, "manufacturer")?,
        batch: text(&v, "batch")?,
        date: IsoDate::parse("date", v.string("date")?)?,
        dose: Dose::new(i64::from(v.int("dose")?), i64::from(v.int("totalDoses")?))?,
        effective_start: IsoDate::parse("effectiveStart", v.string("effectiveStart")?)?,
        effective_until: IsoDate::parse("effectiveUntil", v.string("effectiveUntil")?)?,
    };
    let facility = Fields::of(r.required("facility")?, "facility")?;
    Ok(RecordVaccination {
        pre_enrollment_code: text(&r, "preEnrollmentCode")?,
        programme: text(&r, "programId")?,
        recipient,
        vaccination,
        vaccinator: text(&r, "vaccinator")?,
        facility: Facility {
            name: text(&facility, "name")?,
            address: read_address(facility.required("address")?, "facility.address")?,
        },
        comorbidities: r
            .strings("comorbidities")?
            .into_iter()
            .map(|c| Text::parse("comorbidities", c))
            .collect::<Result<_, _>>()?,
        rules: match r.optional("programmeRules") {
            Some(rules) => {
                let p = Fields::of(rules, "programmeRules")?;
                let invalid = |field: &str, rule: &str| ConvertError::Invalid {
                    field: format!("programmeRules.{field}"),
                    rule: rule.into(),
                };
                Some(ProgrammeRules {
                    total_doses: u8::try_from(p.int("totalDoses")?).map_err(|_| invalid("totalDoses", "1 to 10"))?,
                    update_limit: u32::try_from(p.int("updateLimit")?)
                        .map_err(|_| invalid("updateLimit", "not negative"))?,
                    time_zone: p
                        .string("timeZone")?
                        .parse()
                        .map_err(|_| invalid("timeZone", "an IANA time zone"))?,
                })
            }
            None => None,
        },
    })
}

#[cfg(test)]
pub(crate) mod tests;
