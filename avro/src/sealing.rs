//! Sealing the personal parts of a record value with the recipient's data key, and opening them.
//!
//! - `vaccination-events`: in every `VaccinationRecorded` record (also the one inside a
//!   `VaccinationCorrected`), `preEnrollmentCode` and `recipient` are encoded as the Avro datum
//!   `PersonalData` (schemas/personal-data.avsc), sealed into `sealed`, and replaced by
//!   placeholders.
//! - `certificate-events`: a `CertificateIssued`'s `credential` is sealed into
//!   `sealedCredential` and replaced by an empty string.
//!
//! The associated data names the topic kind, the record's event id and the recipient key, so a
//! ciphertext moved into another record does not open. The hash chain covers the record bytes,
//! ciphertext included: auditing needs no key.

use std::sync::LazyLock;

use apache_avro::{Schema, types::Value};
use domain::values::RecipientKey;
use privacy::{DataKey, DataKeys, KeyId, Sealed};

use crate::{
    codec::{CodecError, Unreadable},
    value::{ConvertError, Fields, nullable, record, string},
};

/// The record sealed inside a `VaccinationRecorded`.
pub const PERSONAL_DATA: &str = include_str!("../schemas/personal-data.avsc");

static PERSONAL: LazyLock<Schema> = LazyLock::new(|| crate::schemas::parse(PERSONAL_DATA));

/// Version byte before the sealed datum.
const PERSONAL_VERSION: u8 = 1;

/// What a sealed field is bound to.
fn associated_data(kind: &str, event_id: &str, recipient: &RecipientKey) -> Vec<u8> {
    format!("vaxtrail-events|{kind}|{event_id}|{}", recipient.as_str()).into_bytes()
}

fn field_mut<'a>(fields: &'a mut [(String, Value)], name: &str) -> Option<&'a mut Value> {
    fields.iter_mut().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn fields_mut(value: &mut Value) -> Option<&mut Vec<(String, Value)>> {
    match value {
        Value::Record(fields) => Some(fields),
        Value::Union(_, inner) => fields_mut(inner),
        _ => None,
    }
}

/// The envelope's event id and recipient key.
fn identity(value: &Value) -> Result<(String, RecipientKey), ConvertError> {
    let f = Fields::of(value, "envelope")?;
    Ok((
        f.string("eventId")?.to_owned(),
        RecipientKey::parse("recipientKey", f.string("recipientKey")?)?,
    ))
}

fn sealed_value(sealed: &Sealed) -> Value {
    nullable(Some(record(vec![
        ("keyId", string(sealed.key_id)),
        ("algorithm", string(privacy::ALGORITHM)),
        ("nonce", Value::Bytes(sealed.nonce.clone())),
        ("ciphertext", Value::Bytes(sealed.ciphertext.clone())),
    ])))
}

/// The `Sealed` record in field `name` of `fields`, if it holds one.
fn sealed_in(fields: &[(String, Value)], name: &str) -> Result<Option<Sealed>, ConvertError> {
    let Some(value) = Fields::from_slice(fields).optional(name) else {
        return Ok(None);
    };
    let s = Fields::of(value, name)?;
    let bytes = |n: &str| match s.required(n)? {
        Value::Bytes(b) => Ok(b.clone()),
        _ => Err(ConvertError::WrongType {
            field: format!("{name}.{n}"),
            expected: "bytes",
        }),
    };
    let algorithm = s.string("algorithm")?;
    if algorithm != privacy::ALGORITHM {
        return Err(ConvertError::Invalid {
            field: format!("{name}.algorithm"),
            rule: format!("{algorithm} is not {}", privacy::ALGORITHM),
        });
    }
    Ok(Some(Sealed {
        key_id: KeyId::parse(s.string("keyId")?).ok_or_else(|| ConvertError::Invalid {
            field: format!("{name}.keyId"),
            rule: "not a UUID".into(),
        })?,
        nonce: bytes("nonce")?,
        ciphertext: bytes("ciphertext")?,
    }))
}

fn placeholder_address() -> Value {
    record(vec![
        ("addressLine1", string("")),
        ("addressLine2", nullable(None)),
        ("district", string("")),
        ("state", string("")),
        ("pincode", string("")),
        ("country", nullable(None)),
    ])
}

fn placeholder_recipient() -> Value {
    record(vec![
        ("identity", string("")),
        ("name", string("")),
        ("dob", nullable(None)),
        ("age", nullable(None)),
        ("gender", string("")),
        ("nationality", string("")),
        ("contact", Value::Array(Vec::new())),
        ("address", placeholder_address()),
    ])
}

/// The `VaccinationRecorded` records of a vaccination envelope's payload.
fn recorded_records(value: &mut Value) -> Vec<&mut Vec<(String, Value)>> {
    let Some(fields) = fields_mut(value) else {
        return Vec::new();
    };
    let Some(Value::Union(branch, payload)) = field_mut(fields, "payload") else {
        return Vec::new();
    };
    match branch {
        0 => fields_mut(payload).into_iter().collect(),
        1 => fields_mut(payload)
            .and_then(|f| field_mut(f, "corrected"))
            .and_then(fields_mut)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn encode_personal(fields: &mut [(String, Value)]) -> Result<Vec<u8>, ConvertError> {
    let take = |fields: &mut [(String, Value)], name: &str, placeholder: Value| {
        field_mut(fields, name)
            .map(|v| std::mem::replace(v, placeholder))
            .ok_or_else(|| ConvertError::Missing(name.to_owned()))
    };
    let code = take(fields, "preEnrollmentCode", string(""))?;
    let recipient = take(fields, "recipient", placeholder_recipient())?;
    let personal = record(vec![("preEnrollmentCode", code), ("recipient", recipient)]);
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&PERSONAL)
        .build()
        .and_then(|writer| writer.write_value_to_vec(personal))
        .map_err(|e| ConvertError::Invalid {
            field: "recipient".into(),
            rule: e.to_string(),
        })?;
    Ok([vec![PERSONAL_VERSION], datum].concat())
}

fn decode_personal(fields: &mut [(String, Value)], bytes: &[u8]) -> Result<(), ConvertError> {
    let invalid = |rule: String| ConvertError::Invalid {
        field: "sealed".into(),
        rule,
    };
    let Some((&PERSONAL_VERSION, mut datum)) = bytes.split_first() else {
        return Err(invalid("unknown version of the sealed personal data".into()));
    };
    let personal = apache_avro::reader::datum::GenericDatumReader::builder(&PERSONAL)
        .build()
        .and_then(|reader| reader.read_value(&mut datum))
        .map_err(|e| invalid(e.to_string()))?;
    let Value::Record(parts) = personal else {
        return Err(invalid("not a record".into()));
    };
    for (name, value) in parts {
        if let Some(slot) = field_mut(fields, &name) {
            *slot = value;
        }
    }
    if let Some(sealed) = field_mut(fields, "sealed") {
        *sealed = nullable(None);
    }
    Ok(())
}

/// Seals the personal data of a `vaccination-events` value with the recipient's current key.
pub(crate) async fn seal_vaccination(value: &mut Value, keys: &dyn DataKeys) -> Result<(), CodecError> {
    let (event_id, recipient) = identity(value)?;
    let mut records = recorded_records(value);
    if records.is_empty() {
        return Ok(());
    }
    let (id, key) = keys.for_writing(&recipient).await?;
    let aad = associated_data("vaccination", &event_id, &recipient);
    for fields in records.iter_mut() {
        let plaintext = encode_personal(fields)?;
        let sealed = privacy::seal(id, &key, &aad, &plaintext);
        *field_mut(fields, "sealed").ok_or_else(|| ConvertError::Missing("sealed".into()))? = sealed_value(&sealed);
    }
    Ok(())
}

async fn key_for(
    keys: Option<&dyn DataKeys>,
    recipient: &RecipientKey,
    sealed: &Sealed,
) -> Result<Result<DataKey, Unreadable>, CodecError> {
    let Some(keys) = keys else {
        return Ok(Err(Unreadable::NoKeyStore));
    };
    Ok(keys
        .for_reading(recipient, sealed.key_id)
        .await?
        .ok_or(Unreadable::Erased))
}

/// Whether the value's payload is the union branch `branch` (a `RecipientErased`).
fn is_branch(value: &mut Value, branch: u32) -> bool {
    fields_mut(value)
        .and_then(|fields| field_mut(fields, "payload"))
        .is_some_and(|payload| matches!(payload, Value::Union(b, _) if *b == branch))
}

/// A `RecipientErased` read from the log: the key store forgets every key of the recipient it
/// holds in memory, at that point in the log's order (a signer that seals with the keys it opened
/// never seals with an erased person's key after their erasure).
fn forget_if_erased(value: &mut Value, branch: u32, keys: Option<&dyn DataKeys>) -> Result<(), CodecError> {
    if let Some(keys) = keys
        && is_branch(value, branch)
    {
        keys.forget(&identity(value)?.1);
    }
    Ok(())
}

/// The union branch of `RecipientErased` on `vaccination-events` and on `certificate-events`.
const VACCINATION_ERASED: u32 = 3;
const CERTIFICATE_ERASED: u32 = 6;

/// Opens the personal data of a `vaccination-events` value in place. A record whose key is gone
/// (or that is read without a key store) is [`CodecError::Sealed`].
pub(crate) async fn open_vaccination(value: &mut Value, keys: Option<&dyn DataKeys>) -> Result<(), CodecError> {
    forget_if_erased(value, VACCINATION_ERASED, keys)?;
    let (event_id, recipient) = identity(value)?;
    let aad = associated_data("vaccination", &event_id, &recipient);
    for fields in recorded_records(value) {
        let Some(sealed) = sealed_in(fields, "sealed")? else {
            continue;
        };
        let key = match key_for(keys, &recipient, &sealed).await? {
            Ok(key) => key,
            Err(why) => {
                let event_type = Fields::of(value, "envelope")?.string("eventType")?.to_owned();
                return Err(CodecError::Sealed {
                    event_id: event_id.clone(),
                    event_type,
                    recipient_key: recipient.clone(),
                    key_id: sealed.key_id,
                    why,
                });
            }
        };
        let plaintext = privacy::open(&key, &aad, &sealed).map_err(|e| ConvertError::Invalid {
            field: "sealed".into(),
            rule: e.to_string(),
        })?;
        decode_personal(fields, &plaintext)?;
    }
    Ok(())
}

/// The `CertificateIssued` record of a certificate envelope, if it is one.
fn issued_record(value: &mut Value) -> Option<&mut Vec<(String, Value)>> {
    let fields = fields_mut(value)?;
    match field_mut(fields, "payload")? {
        Value::Union(0, payload) => fields_mut(payload),
        _ => None,
    }
}

/// Seals an issued credential with the recipient's current key.
pub(crate) async fn seal_certificate(value: &mut Value, keys: &dyn DataKeys) -> Result<(), CodecError> {
    if issued_record(value).is_none() {
        return Ok(());
    }
    let (event_id, recipient) = identity(value)?;
    let (id, key) = keys.for_writing(&recipient).await?;
    let aad = associated_data("certificate", &event_id, &recipient);
    let fields = issued_record(value).expect("checked above");
    let Some(Value::String(text)) = field_mut(fields, "credential").map(|v| std::mem::replace(v, Value::Null)) else {
        return Err(ConvertError::Missing("credential".into()).into());
    };
    let sealed = privacy::seal(id, &key, &aad, text.as_bytes());
    *field_mut(fields, "credential").expect("taken above") = string("");
    *field_mut(fields, "sealedCredential").ok_or_else(|| ConvertError::Missing("sealedCredential".into()))? =
        sealed_value(&sealed);
    for (index, rendering) in renderings_mut(fields).into_iter().enumerate() {
        let aad = rendering_aad(&event_id, &recipient, index);
        let Some(Value::String(document)) = field_mut(rendering, "document").map(|v| std::mem::replace(v, string("")))
        else {
            return Err(ConvertError::Missing("renderings.document".into()).into());
        };
        let sealed = privacy::seal(id, &key, &aad, document.as_bytes());
        *field_mut(rendering, "sealed").ok_or_else(|| ConvertError::Missing("renderings.sealed".into()))? =
            sealed_value(&sealed);
    }
    Ok(())
}

/// The records of an issue's `renderings` (none in records written before they existed).
fn renderings_mut(fields: &mut [(String, Value)]) -> Vec<&mut Vec<(String, Value)>> {
    match field_mut(fields, "renderings") {
        Some(Value::Array(items)) => items.iter_mut().filter_map(fields_mut).collect(),
        _ => Vec::new(),
    }
}

/// What a sealed rendering is bound to: its record, its recipient and its place among the
/// record's renderings.
fn rendering_aad(event_id: &str, recipient: &RecipientKey, index: usize) -> Vec<u8> {
    associated_data(&format!("certificate-rendering-{index}"), event_id, recipient)
}

/// Opens an issued credential in place when its key exists; otherwise leaves it sealed (the
/// decoder then reads an issue whose credential is unreadable).
pub(crate) async fn open_certificate(value: &mut Value, keys: Option<&dyn DataKeys>) -> Result<(), CodecError> {
    forget_if_erased(value, CERTIFICATE_ERASED, keys)?;
    let Some(sealed) = issued_record(value)
        .map(|f| sealed_in(f, "sealedCredential"))
        .transpose()?
        .flatten()
    else {
        return Ok(());
    };
    let (event_id, recipient) = identity(value)?;
    let Ok(key) = key_for(keys, &recipient, &sealed).await? else {
        return Ok(());
    };
    let aad = associated_data("certificate", &event_id, &recipient);
    let plaintext = privacy::open(&key, &aad, &sealed).map_err(|e| ConvertError::Invalid {
        field: "sealedCredential".into(),
        rule: e.to_string(),
    })?;
    let text = String::from_utf8(plaintext).map_err(|_| ConvertError::Invalid {
        field: "sealedCredential".into(),
        rule: "not UTF-8".into(),
    })?;
    let fields = issued_record(value).expect("checked above");
    *field_mut(fields, "credential").expect("an issue has a credential") = string(text);
    *field_mut(fields, "sealedCredential").expect("it held the sealed credential") = nullable(None);
    for (index, rendering) in renderings_mut(fields).into_iter().enumerate() {
        let Some(sealed) = sealed_in(rendering, "sealed")? else {
            continue;
        };
        let aad = rendering_aad(&event_id, &recipient, index);
        let invalid = |rule: String| ConvertError::Invalid {
            field: "renderings.sealed".into(),
            rule,
        };
        let plaintext = privacy::open(&key, &aad, &sealed).map_err(|e| invalid(e.to_string()))?;
        let document = String::from_utf8(plaintext).map_err(|_| invalid("not UTF-8".into()))?;
        *field_mut(rendering, "document").expect("a rendering has a document") = string(document);
        *field_mut(rendering, "sealed").expect("it held the sealed document") = nullable(None);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Mutex};

    use apache_avro::{
        reader::datum::GenericDatumReader,
        schema_compatibility::{Compatibility, SchemaCompatibility},
        writer::datum::GenericDatumWriter,
    };
    use domain::events::VaccinationPayload;
    use futures::{FutureExt, future::BoxFuture};
    use privacy::KeysError;

    use super::*;
    use crate::{
        certificate::{self, CertificateBody},
        schemas,
        vaccination::{
            self,
            tests::{envelope, payloads, sample_record},
        },
    };

    /// Data keys in memory; `erase` drops a recipient's. Records whom it was told to forget.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<RecipientKey, (KeyId, DataKey)>>, Mutex<Vec<RecipientKey>>);

    impl Memory {
        fn erase(&self, recipient: &RecipientKey) {
            self.0.lock().unwrap().remove(recipient);
        }
    }

    impl DataKeys for Memory {
        fn for_writing<'a>(
            &'a self,
            recipient: &'a RecipientKey,
        ) -> BoxFuture<'a, Result<(KeyId, DataKey), KeysError>> {
            let mut keys = self.0.lock().unwrap();
            let entry = keys
                .entry(recipient.clone())
                .or_insert_with(|| (KeyId::random(), DataKey::random()));
            let found = (entry.0, entry.1.clone());
            async move { Ok(found) }.boxed()
        }
        fn for_reading<'a>(
            &'a self,
            recipient: &'a RecipientKey,
            id: KeyId,
        ) -> BoxFuture<'a, Result<Option<DataKey>, KeysError>> {
            let found = self
                .0
                .lock()
                .unwrap()
                .get(recipient)
                .filter(|(k, _)| *k == id)
                .map(|(_, key)| key.clone());
            async move { Ok(found) }.boxed()
        }
        fn forget(&self, recipient: &RecipientKey) {
            self.1.lock().unwrap().push(recipient.clone());
        }
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    fn write(schema: &str, value: Value) -> Vec<u8> {
        let schema = schemas::parse(schema);
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    fn read(writer: &str, bytes: &[u8]) -> Value {
        let schema = schemas::parse(writer);
        GenericDatumReader::builder(&schema)
            .build()
            .unwrap()
            .read_value(&mut &bytes[..])
            .unwrap()
    }

    #[tokio::test]
    async fn personal_data_is_sealed_on_the_wire_and_opens_with_the_key_only() {
        let keys = Memory::default();
        let person = sample_record();
        let secrets = [
            person.recipient.name.as_str().to_owned(),
            person.recipient.identity.as_str().to_owned(),
            person.recipient.address.line1.as_str().to_owned(),
            person.pre_enrollment_code.as_str().to_owned(),
        ];
        for payload in payloads() {
            let original = envelope(payload);
            let mut value = vaccination::to_avro(&original);
            seal_vaccination(&mut value, &keys).await.unwrap();
            let bytes = write(schemas::VACCINATION_EVENTS, value);
            for secret in &secrets {
                assert!(
                    !contains(&bytes, secret),
                    "{secret} in the clear in {}",
                    original.event.payload.event_type()
                );
            }
            let mut read_back = read(schemas::VACCINATION_EVENTS, &bytes);
            open_vaccination(&mut read_back, Some(&keys)).await.unwrap();
            assert_eq!(vaccination::from_avro(&read_back).unwrap(), original);

            // Without the key store the record is sealed; after an erasure it is gone for good.
            if original.event.payload.record().is_some() {
                let mut unopened = read(schemas::VACCINATION_EVENTS, &bytes);
                let error = open_vaccination(&mut unopened, None).await.unwrap_err();
                assert!(
                    matches!(
                        error,
                        CodecError::Sealed {
                            why: Unreadable::NoKeyStore,
                            ..
                        }
                    ),
                    "{error}"
                );
            }
        }
        let original = envelope(payloads().remove(0));
        let mut value = vaccination::to_avro(&original);
        seal_vaccination(&mut value, &keys).await.unwrap();
        keys.erase(&original.event.recipient_key);
        let error = open_vaccination(&mut value.clone(), Some(&keys)).await.unwrap_err();
        assert_eq!(
            error.erased(),
            Some((
                original.event.event_id.to_string().as_str(),
                &original.event.recipient_key
            ))
        );
        assert!(!error.is_retriable());
    }

    #[tokio::test]
    async fn reading_an_erasure_makes_the_key_store_forget_the_recipient_and_nothing_else_does() {
        let keys = Memory::default();
        for payload in payloads() {
            let original = envelope(payload);
            let mut value = vaccination::to_avro(&original);
            seal_vaccination(&mut value, &keys).await.unwrap();
            let bytes = write(schemas::VACCINATION_EVENTS, value);
            let mut read_back = read(schemas::VACCINATION_EVENTS, &bytes);
            open_vaccination(&mut read_back, Some(&keys)).await.unwrap();
            let forgotten = std::mem::take(&mut *keys.1.lock().unwrap());
            let erasure = matches!(original.event.payload, VaccinationPayload::RecipientErased { .. });
            let expected = if erasure {
                vec![original.event.recipient_key.clone()]
            } else {
                vec![]
            };
            assert_eq!(forgotten, expected, "{}", original.event.payload.event_type());
        }
    }

    #[tokio::test]
    async fn a_sealed_part_moved_into_another_record_does_not_open() {
        let keys = Memory::default();
        let original = envelope(payloads().remove(0));
        let mut value = vaccination::to_avro(&original);
        seal_vaccination(&mut value, &keys).await.unwrap();
        let Value::Record(fields) = &mut value else {
            unreachable!()
        };
        *field_mut(fields, "eventId").unwrap() = string(domain::ids::EventId::derive("cowin", "other"));
        let error = open_vaccination(&mut value, Some(&keys)).await.unwrap_err();
        assert!(
            matches!(&error, CodecError::Invalid(ConvertError::Invalid { field, .. }) if field == "sealed"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn records_written_before_sealing_still_read_and_the_schemas_evolve_compatibly() {
        let old = include_str!("../schemas/history/vaccination-events.v1.avsc");
        let (old_schema, new_schema) = (schemas::parse(old), schemas::parse(schemas::VACCINATION_EVENTS));
        assert_eq!(
            SchemaCompatibility::can_read(&old_schema, &new_schema).unwrap(),
            Compatibility::Full
        );
        let old_certificates = include_str!("../schemas/history/certificate-events.v1.avsc");
        assert_eq!(
            SchemaCompatibility::can_read(
                &schemas::parse(old_certificates),
                &schemas::parse(schemas::CERTIFICATE_EVENTS)
            )
            .unwrap(),
            Compatibility::Full
        );
        // A record in the clear as the old schema wrote it (no `sealed` field) reads as before.
        let original = envelope(payloads().remove(0));
        let Value::Record(mut fields) = vaccination::to_avro(&original) else {
            unreachable!()
        };
        let Some((_, Value::Union(0, payload))) = fields.iter_mut().find(|(n, _)| n == "payload") else {
            unreachable!()
        };
        let Value::Record(recorded) = payload.as_mut() else {
            unreachable!()
        };
        recorded.retain(|(n, _)| n != "sealed" && n != "programmeRules");
        let bytes = write(old, Value::Record(fields));
        let mut value = read(old, &bytes);
        open_vaccination(&mut value, Some(&Memory::default())).await.unwrap();
        assert_eq!(vaccination::from_avro(&value).unwrap(), original);
    }

    #[tokio::test]
    async fn a_credential_is_sealed_and_an_erased_one_reads_as_a_sealed_issue() {
        let keys = Memory::default();
        let (issue, credential) = certificate::tests::issued();
        let original = certificate::tests::outcome_envelope(issue, Some(credential.clone()));
        let mut value = certificate::to_avro(&original).unwrap();
        seal_certificate(&mut value, &keys).await.unwrap();
        let bytes = write(schemas::CERTIFICATE_EVENTS, value);
        assert!(!contains(&bytes, sample_record().recipient.name.as_str()));
        assert!(!contains(&bytes, &credential.text[..40]));
        assert!(!contains(&bytes, "RENDERED-EU-DCC"), "the EU DCC is sealed too");
        let mut opened = read(schemas::CERTIFICATE_EVENTS, &bytes);
        open_certificate(&mut opened, Some(&keys)).await.unwrap();
        assert_eq!(certificate::from_avro(&opened).unwrap(), original);

        let CertificateBody::Outcome {
            recipient_key, event, ..
        } = &original.body
        else {
            unreachable!()
        };
        keys.erase(recipient_key);
        let mut erased = read(schemas::CERTIFICATE_EVENTS, &bytes);
        open_certificate(&mut erased, Some(&keys)).await.unwrap();
        let read_back = certificate::from_avro(&erased).unwrap();
        let CertificateBody::SealedIssue(sealed) = &read_back.body else {
            panic!("{read_back:?}")
        };
        assert_eq!((&sealed.recipient_key, sealed.answers), (recipient_key, event.answers));
        assert_eq!(
            read_back.event_id(),
            original.event_id(),
            "the record's id does not need the key"
        );
        assert!(
            certificate::to_avro(&read_back).is_err(),
            "a sealed issue is never written again"
        );
    }
}
