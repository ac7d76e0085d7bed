//! `master-data` records ⇄ domain master data ([`domain::master`]). Decoding parses every value
//! again through the domain's types, so a record that does not hold valid master data is refused
//! with the field named.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use domain::{
    master::{
        EuCodes, FacilityEntry, FacilityStatus, MasterId, MasterRecord, MasterVaccine, Programme, ProgrammeRules,
        VaccinatorEntry,
    },
    vaccine::Vaccine,
    values::{CountryCode, Text},
};

use crate::value::{ConvertError, Fields, nullable, record, string};

/// Version of the envelope this code writes.
pub const SCHEMA_VERSION: i32 = 1;

/// A `master-data` record: the change and who made it.
#[derive(Clone, Debug, PartialEq)]
pub struct MasterEnvelope {
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub record: MasterRecord,
}

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(items.into_iter().map(string).collect())
}

fn status(status: FacilityStatus) -> Value {
    match status {
        FacilityStatus::Active => Value::Enum(0, "ACTIVE".into()),
        FacilityStatus::Suspended => Value::Enum(1, "SUSPENDED".into()),
    }
}

fn read_status(f: &Fields) -> Result<FacilityStatus, ConvertError> {
    match f.required("status")? {
        Value::Enum(0, _) => Ok(FacilityStatus::Active),
        Value::Enum(1, _) => Ok(FacilityStatus::Suspended),
        _ => Err(invalid("status", "ACTIVE or SUSPENDED")),
    }
}

/// The envelope as an Avro record value.
pub fn to_avro(envelope: &MasterEnvelope) -> Value {
    let payload = match &envelope.record {
        MasterRecord::Programme(p) => Value::Union(
            0,
            Box::new(record(vec![
                ("id", string(&p.id)),
                ("name", string(p.name.as_str())),
                ("diseases", strings(p.diseases.iter().map(Text::as_str))),
                ("totalDoses", Value::Int(i32::from(p.rules.total_doses))),
                (
                    "updateLimit",
                    Value::Int(i32::try_from(p.rules.update_limit).unwrap_or(i32::MAX)),
                ),
                ("timeZone", string(p.rules.time_zone.name())),
                ("country", string(p.country.as_str())),
                ("languages", strings(p.languages.iter().map(String::as_str))),
            ])),
        ),
        MasterRecord::Vaccine(v) => Value::Union(
            1,
            Box::new(record(vec![
                ("name", string(&v.vaccine.name)),
                (
                    "manufacturer",
                    nullable(v.manufacturer.as_ref().map(|m| string(m.as_str()))),
                ),
                ("icd11Code", string(&v.vaccine.icd11_code)),
                ("icd11Term", string(&v.vaccine.icd11_term)),
                ("vaccineType", string(&v.vaccine.vaccine_type)),
                ("disease", string(&v.vaccine.disease)),
                (
                    "eu",
                    nullable(v.eu.as_ref().map(|eu| {
                        record(vec![
                            ("product", string(eu.product.as_str())),
                            ("manufacturer", string(eu.manufacturer.as_str())),
                            ("prophylaxis", string(eu.prophylaxis.as_str())),
                        ])
                    })),
                ),
            ])),
        ),
        MasterRecord::Facility(f) => Value::Union(
            2,
            Box::new(record(vec![
                ("id", string(&f.id)),
                ("name", string(f.name.as_str())),
                ("district", string(f.district.as_str())),
                ("state", string(f.state.as_str())),
                ("status", status(f.status)),
            ])),
        ),
        MasterRecord::Vaccinator(v) => Value::Union(
            3,
            Box::new(record(vec![
                ("id", string(&v.id)),
                ("name", string(v.name.as_str())),
                ("facilities", strings(v.facilities.iter().map(MasterId::as_str))),
                ("status", status(v.status)),
            ])),
        ),
    };
    record(vec![
        ("schemaVersion", Value::Int(SCHEMA_VERSION)),
        (
            "recordedAt",
            Value::TimestampMillis(envelope.recorded_at.timestamp_millis()),
        ),
        ("actor", string(&envelope.actor)),
        ("payload", payload),
    ])
}

fn text(f: &Fields, name: &str) -> Result<Text, ConvertError> {
    Ok(Text::parse(name, f.string(name)?)?)
}

fn texts(f: &Fields, name: &str) -> Result<Vec<Text>, ConvertError> {
    f.strings(name)?
        .into_iter()
        .map(|s| Text::parse(name, s).map_err(ConvertError::from))
        .collect()
}

fn invalid(field: &str, rule: &str) -> ConvertError {
    ConvertError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// The envelope in an Avro record value.
pub fn from_avro(value: &Value) -> Result<MasterEnvelope, ConvertError> {
    let f = Fields::of(value, "MasterDataRecord")?;
    let recorded_at = DateTime::from_timestamp_millis(f.timestamp_millis("recordedAt")?)
        .ok_or_else(|| invalid("recordedAt", "out of range"))?;
    let (branch, payload) = f.union("payload")?;
    let p = Fields::of(payload, "payload")?;
    let record = match branch {
        0 => MasterRecord::Programme(Programme {
            id: MasterId::parse("id", p.string("id")?)?,
            name: text(&p, "name")?,
            diseases: texts(&p, "diseases")?,
            rules: ProgrammeRules {
                total_doses: u8::try_from(p.int("totalDoses")?).map_err(|_| invalid("totalDoses", "1 to 10"))?,
                update_limit: u32::try_from(p.int("updateLimit")?)
                    .map_err(|_| invalid("updateLimit", "not negative"))?,
                time_zone: p
                    .string("timeZone")?
                    .parse()
                    .map_err(|_| invalid("timeZone", "an IANA time zone"))?,
            },
            country: CountryCode::parse("country", p.string("country")?)?,
            languages: p.strings("languages")?.into_iter().map(str::to_owned).collect(),
        }),
        1 => MasterRecord::Vaccine(MasterVaccine {
            vaccine: Vaccine {
                name: p.string("name")?.to_owned(),
                icd11_code: p.string("icd11Code")?.to_owned(),
                icd11_term: p.string("icd11Term")?.to_owned(),
                vaccine_type: p.string("vaccineType")?.to_owned(),
                disease: p.string("disease")?.to_owned(),
            },
            manufacturer: p
                .optional_string("manufacturer")?
                .map(|m| Text::parse("manufacturer", m))
                .transpose()?,
            eu: match p.optional("eu") {
                Some(eu) => {
                    let eu = Fields::of(eu, "eu")?;
                    Some(EuCodes {
                        product: text(&eu, "product")?,
                        manufacturer: text(&eu, "manufacturer")?,
                        prophylaxis: text(&eu, "prophylaxis")?,
                    })
                }
                None => None,
            },
        }),
        2 => MasterRecord::Facility(FacilityEntry {
            id: MasterId::parse("id", p.string("id")?)?,
            name: text(&p, "name")?,
            district: text(&p, "district")?,
            state: text(&p, "state")?,
            status: read_status(&p)?,
        }),
        3 => MasterRecord::Vaccinator(VaccinatorEntry {
            id: MasterId::parse("id", p.string("id")?)?,
            name: text(&p, "name")?,
            facilities: p
                .strings("facilities")?
                .into_iter()
                .map(|id| MasterId::parse("facilities", id).map_err(ConvertError::from))
                .collect::<Result<_, _>>()?,
            status: read_status(&p)?,
        }),
        other => return Err(invalid("payload", &format!("unknown branch {other}"))),
    };
    Ok(MasterEnvelope {
        recorded_at,
        actor: f.string("actor")?.to_owned(),
        record,
    })
}

#[cfg(test)]
mod tests {
    use apache_avro::{reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter};
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::schemas;

    #[test]
    fn every_kind_of_master_data_round_trips_through_the_schema() {
        let programme = Programme::parse(
            "covid19",
            &json!({"name": "COVID-19", "diseases": ["COVID-19"], "totalDoses": 2, "updateLimit": 3,
                    "timeZone": "Asia/Kolkata", "country": "IND", "languages": ["hi", "ta"]}),
        )
        .unwrap();
        let vaccine = MasterVaccine::parse(&json!({
            "name": "Covishield", "manufacturer": "Serum Institute of India", "icd11Code": "XM9QW8",
            "icd11Term": "COVID-19 vaccine, non-replicating viral vector", "vaccineType": "Viral Vector",
            "disease": "COVID-19", "eu": {"product": "EU/1/21/1529", "manufacturer": "ORG-100001699", "prophylaxis": "J07BX03"}
        }))
        .unwrap();
        let mut plain = vaccine.clone();
        plain.eu = None;
        plain.manufacturer = None;
        let facility = FacilityEntry::parse(
            "phc-1",
            &json!({"name": "PHC Whitefield", "district": "Bengaluru", "state": "Karnataka", "status": "active"}),
        )
        .unwrap();
        let vaccinator = VaccinatorEntry::parse(
            "v-1",
            &json!({"name": "Asha Devi", "facilities": ["phc-1", "phc-2"], "status": "suspended"}),
        )
        .unwrap();
        let schema = schemas::parse(schemas::MASTER_DATA);
        for record in [
            MasterRecord::Programme(programme),
            MasterRecord::Vaccine(vaccine),
            MasterRecord::Vaccine(plain),
            MasterRecord::Facility(facility),
            MasterRecord::Vaccinator(vaccinator),
        ] {
            let envelope = MasterEnvelope {
                recorded_at: Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap(),
                actor: "admin".into(),
                record,
            };
            let bytes = GenericDatumWriter::builder(&schema)
                .build()
                .unwrap()
                .write_value_to_vec(to_avro(&envelope))
                .unwrap();
            let value = GenericDatumReader::builder(&schema)
                .build()
                .unwrap()
                .read_value(&mut &bytes[..])
                .unwrap();
            assert_eq!(from_avro(&value).unwrap(), envelope);
        }
    }
}
