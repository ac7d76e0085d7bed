//! `certificate-events` records ⇄ what the signer decided. Each record answers one position of
//! `vaccination-events` (same partition number) and carries the SHA-256 of that source record and
//! of the previous record of its own partition: a hash chain an auditor can walk. Checkpoints sign
//! the chain head.

use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use domain::{
    credential::{CertifiedDose, Fingerprint, StatusSlot},
    events::{CertificateEvent, CertificateOutcome},
    ids::{CertificateId, EventId},
    values::{RecipientKey, Text},
};

use crate::value::{ConvertError, Fields, nullable, record, string};

pub mod chain;

/// Version of the envelope this code writes.
pub const SCHEMA_VERSION: i32 = 1;

/// The SHA-256 of a record's value bytes (a link of the chain).
pub type Sha256 = [u8; 32];

/// The `vaccination-events` record an outcome answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourcePosition {
    pub partition: i32,
    pub offset: i64,
}

/// A signed credential as the log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCredential {
    /// The credential's JSON text exactly as signed.
    pub text: String,
    /// The verification method that signed it (`did:web:...#key-1`).
    pub key_id: String,
    /// The same dose in other formats (the EU DCC), signed at the same decision.
    pub renderings: Vec<Rendering>,
}

/// A credential format other than the W3C one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendering {
    /// `eu-dcc`.
    pub format: String,
    /// The key that signed it.
    pub key_id: String,
    /// The document's text (`HC1:…`).
    pub text: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Rendering {
    /// The format name of an EU Digital COVID Certificate.
    pub const EU_DCC: &str = "eu-dcc";
    /// The format name of a SMART Health Card (the compact JWS).
    pub const SHC: &str = "shc";
}

fn rendering_value(r: &Rendering) -> Value {
    use sha2::Digest;
    record(vec![
        ("format", string(&r.format)),
        ("keyId", string(&r.key_id)),
        ("sha256", fixed(&sha2::Sha256::digest(r.text.as_bytes()).into())),
        (
            "expiresAt",
            nullable(r.expires_at.map(|t| Value::TimestampMillis(t.timestamp_millis()))),
        ),
        ("document", string(&r.text)),
        ("sealed", nullable(None)),
    ])
}

fn rendering_of(value: &Value) -> Result<Rendering, ConvertError> {
    use sha2::Digest;
    let f = Fields::of(value, "renderings")?;
    let text = f.string("document")?.to_owned();
    let sha = read_fixed(f.required("sha256")?, "sha256")?;
    if <[u8; 32]>::from(sha2::Sha256::digest(text.as_bytes())) != sha {
        return Err(ConvertError::Invalid {
            field: "renderings".into(),
            rule: "a document does not match its sha256".into(),
        });
    }
    let expires_at = match f.optional("expiresAt") {
        Some(Value::TimestampMillis(ms)) => {
            Some(
                DateTime::from_timestamp_millis(*ms).ok_or_else(|| ConvertError::Invalid {
                    field: "expiresAt".into(),
                    rule: "out of range".into(),
                })?,
            )
        }
        Some(_) => {
            return Err(ConvertError::WrongType {
                field: "expiresAt".into(),
                expected: "timestamp-millis",
            });
        }
        None => None,
    };
    Ok(Rendering {
        format: f.string("format")?.to_owned(),
        key_id: f.string("keyId")?.to_owned(),
        text,
        expires_at,
    })
}

/// A signed statement of a partition's chain head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub partition: i32,
    /// Offset in `certificate-events` of the last record covered.
    pub last_offset: i64,
    /// SHA-256 of that record's value bytes.
    pub chain_head: Sha256,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// The signer's signed revocation status list of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusListPublished {
    /// The list number (the partition).
    pub list: u32,
    /// The signed `StatusList2021Credential`, exactly as signed.
    pub credential: String,
    /// Bits set.
    pub revoked_count: u64,
    /// SHA-256 of the bitstring.
    pub bits_sha256: Sha256,
}

/// What a record says. (Outcomes are far more common than checkpoints; boxing them would only
/// add an allocation per record.)
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum CertificateBody {
    /// An outcome for a vaccination event; `credential` is present exactly for an issue.
    Outcome {
        recipient_key: RecipientKey,
        source_sha256: Sha256,
        event: CertificateEvent,
        credential: Option<IssuedCredential>,
    },
    Checkpoint(Checkpoint),
    StatusList(StatusListPublished),
    /// An issue whose credential is sealed with a key this reader cannot use (the recipient was
    /// erased, or the reader has no key store): everything but the credential and the dose it
    /// certifies. Only ever read, never written.
    SealedIssue(SealedIssue),
}

/// See [`CertificateBody::SealedIssue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedIssue {
    pub recipient_key: RecipientKey,
    pub source_sha256: Sha256,
    /// The vaccination event answered.
    pub answers: EventId,
    pub certificate_id: CertificateId,
    pub programme: Text,
    pub supersedes: Option<CertificateId>,
    pub status: StatusSlot,
    /// The verification method that signed it.
    pub key_id: String,
}

/// One `certificate-events` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateEnvelope {
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The last source position covered (for a checkpoint: the last one answered before it).
    pub source: SourcePosition,
    /// SHA-256 of the previous record of the partition; `None` for the first.
    pub previous_sha256: Option<Sha256>,
    pub body: CertificateBody,
}

impl CertificateEnvelope {
    /// The record's own id: derived from the event it answers and its kind (an event has at most
    /// one outcome of each kind), so whoever writes it twice writes the same id.
    pub fn event_id(&self) -> EventId {
        match &self.body {
            CertificateBody::Outcome { event, .. } => {
                EventId::derive("vaxtrail-signer", &format!("{}/{}", event.answers, self.event_type()))
            }
            CertificateBody::SealedIssue(issue) => {
                EventId::derive("vaxtrail-signer", &format!("{}/{}", issue.answers, self.event_type()))
            }
            CertificateBody::Checkpoint(c) => {
                EventId::derive("vaxtrail-checkpoint", &format!("{}/{}", c.partition, c.last_offset))
            }
            CertificateBody::StatusList(l) => EventId::derive(
                "vaxtrail-status-list",
                &format!("{}/{}/{}", l.list, self.source.offset, hex32(&l.bits_sha256)),
            ),
        }
    }

    /// The payload record's name.
    pub fn event_type(&self) -> &'static str {
        match &self.body {
            CertificateBody::Checkpoint(_) => "Checkpoint",
            CertificateBody::StatusList(_) => "StatusListPublished",
            CertificateBody::Outcome { event, .. } => event.outcome.event_type(),
            CertificateBody::SealedIssue(_) => "CertificateIssued",
        }
    }
}

fn hex32(hash: &Sha256) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn fixed(hash: &Sha256) -> Value {
    Value::Fixed(32, hash.to_vec())
}

/// The envelope as an Avro record value. Fails only for an issue without its credential.
pub fn to_avro(envelope: &CertificateEnvelope) -> Result<Value, ConvertError> {
    let (recipient, source_event, source_sha, payload) = match &envelope.body {
        CertificateBody::Checkpoint(c) => (
            String::new(),
            None,
            None,
            Value::Union(
                4,
                Box::new(record(vec![
                    ("partition", Value::Int(c.partition)),
                    ("lastOffset", Value::Long(c.last_offset)),
                    ("chainHead", fixed(&c.chain_head)),
                    ("keyId", string(&c.key_id)),
                    ("signature", Value::Bytes(c.signature.clone())),
                ])),
            ),
        ),
        CertificateBody::StatusList(l) => (
            String::new(),
            None,
            None,
            Value::Union(
                5,
                Box::new(record(vec![
                    ("list", Value::Int(l.list as i32)),
                    ("credential", string(&l.credential)),
                    ("revokedCount", Value::Long(l.revoked_count as i64)),
                    ("bitsSha256", fixed(&l.bits_sha256)),
                ])),
            ),
        ),
        CertificateBody::SealedIssue(_) => {
            return Err(ConvertError::Invalid {
                field: "credential".into(),
                rule: "an issue read without its key cannot be written again".into(),
            });
        }
        CertificateBody::Outcome {
            recipient_key,
            source_sha256,
            event,
            credential,
        } => (
            recipient_key.as_str().to_owned(),
            Some(string(event.answers)),
            Some(fixed(source_sha256)),
            outcome(&event.outcome, credential.as_ref())?,
        ),
    };
    Ok(record(vec![
        ("eventId", string(envelope.event_id())),
        ("eventType", string(envelope.event_type())),
        (
            "occurredAt",
            Value::TimestampMillis(envelope.occurred_at.timestamp_millis()),
        ),
        (
            "recordedAt",
            Value::TimestampMillis(envelope.recorded_at.timestamp_millis()),
        ),
        ("recipientKey", string(recipient)),
        ("sourceEventId", nullable(source_event)),
        ("sourcePartition", Value::Int(envelope.source.partition)),
        ("sourceOffset", Value::Long(envelope.source.offset)),
        ("sourceSha256", nullable(source_sha)),
        ("previousSha256", nullable(envelope.previous_sha256.as_ref().map(fixed))),
        ("schemaVersion", Value::Int(SCHEMA_VERSION)),
        ("payload", payload),
    ]))
}

fn outcome(outcome: &CertificateOutcome, credential: Option<&IssuedCredential>) -> Result<Value, ConvertError> {
    Ok(match outcome {
        CertificateOutcome::CertificateIssued {
            certificate_id,
            programme,
            supersedes,
            fingerprint,
            certified,
            status,
        } => {
            let credential = credential.ok_or_else(|| ConvertError::Missing("credential".into()))?;
            Value::Union(
                0,
                Box::new(record(vec![
                    ("certificateId", string(certificate_id)),
                    ("programId", string(programme)),
                    ("dose", Value::Int(i32::from(certified.dose.number()))),
                    ("totalDoses", Value::Int(i32::from(certified.dose.of()))),
                    ("credential", string(&credential.text)),
                    ("keyId", string(&credential.key_id)),
                    ("statusListIndex", Value::Long(status.index as i64)),
                    ("statusList", status_list_value(status)),
                    ("supersedes", nullable(supersedes.as_ref().map(string))),
                    ("recordSha256", nullable(Some(fixed(&fingerprint.0)))),
                    ("sealedCredential", nullable(None)),
                    (
                        "renderings",
                        Value::Array(credential.renderings.iter().map(rendering_value).collect()),
                    ),
                ])),
            )
        }
        CertificateOutcome::CertificateSuperseded {
            certificate_id,
            superseded_by,
            update_count,
        } => Value::Union(
            1,
            Box::new(record(vec![
                ("certificateId", string(certificate_id)),
                ("supersededBy", string(superseded_by)),
                ("updateCount", Value::Int(*update_count as i32)),
            ])),
        ),
        CertificateOutcome::CertificateRevoked {
            certificate_id,
            reason,
            status,
        } => Value::Union(
            2,
            Box::new(record(vec![
                ("certificateId", string(certificate_id)),
                ("reason", string(reason)),
                ("statusListIndex", Value::Long(status.index as i64)),
                ("statusList", status_list_value(status)),
            ])),
        ),
        CertificateOutcome::CertificateRejected { rule, detail } => Value::Union(
            3,
            Box::new(record(vec![("rule", string(rule)), ("detail", string(detail))])),
        ),
        CertificateOutcome::RecipientErased { certificates } => Value::Union(
            6,
            Box::new(record(vec![(
                "certificateIds",
                Value::Array(certificates.iter().map(string).collect()),
            )])),
        ),
    })
}

fn read_fixed(value: &Value, field: &str) -> Result<Sha256, ConvertError> {
    match value {
        Value::Fixed(32, bytes) => Ok(bytes.as_slice().try_into().expect("32 bytes")),
        _ => Err(ConvertError::WrongType {
            field: field.to_owned(),
            expected: "Sha256",
        }),
    }
}

/// `statusList`: a Bitstring Status List's number, null for the partition's StatusList2021 list.
fn status_list_value(status: &StatusSlot) -> Value {
    nullable(status.is_bitstring().then_some(Value::Int(status.list as i32)))
}

fn status_index(f: &Fields, partition: i32) -> Result<StatusSlot, ConvertError> {
    let index = match f.required("statusListIndex")? {
        Value::Long(i) if *i >= 0 => *i as u64,
        _ => {
            return Err(ConvertError::WrongType {
                field: "statusListIndex".into(),
                expected: "non-negative long",
            });
        }
    };
    let list = match f.optional_int("statusList")? {
        Some(list) => {
            let list = u32::try_from(list)
                .ok()
                .filter(|&l| domain::status::is_bitstring_list(l));
            list.ok_or_else(|| ConvertError::Invalid {
                field: "statusList".into(),
                rule: format!(
                    "must be a Bitstring Status List number (from {})",
                    domain::status::FIRST_BITSTRING_LIST
                ),
            })?
        }
        None => u32::try_from(partition).map_err(|_| ConvertError::Invalid {
            field: "sourcePartition".into(),
            rule: "must not be negative".into(),
        })?,
    };
    Ok(StatusSlot { list, index })
}

/// Reads an envelope back, checking every value through the domain's types.
pub fn from_avro(value: &Value) -> Result<CertificateEnvelope, ConvertError> {
    let f = Fields::of(value, "envelope")?;
    let millis = |name: &str| {
        let ms = f.timestamp_millis(name)?;
        DateTime::from_timestamp_millis(ms).ok_or_else(|| ConvertError::Invalid {
            field: name.into(),
            rule: "out of range".into(),
        })
    };
    let source = SourcePosition {
        partition: f.int("sourcePartition")?,
        offset: long(&f, "sourceOffset")?,
    };
    let previous_sha256 = f
        .optional("previousSha256")
        .map(|v| read_fixed(v, "previousSha256"))
        .transpose()?;
    let (branch, inner) = f.union("payload")?;
    let p = Fields::of(inner, "payload")?;
    let body = match branch {
        5 => CertificateBody::StatusList(status_list(&p)?),
        4 => CertificateBody::Checkpoint(checkpoint(&p)?),
        0 if p.optional("sealedCredential").is_some() => {
            CertificateBody::SealedIssue(sealed_issue(&f, &p, source.partition)?)
        }
        _ => outcome_of(&f, &p, branch, source.partition)?,
    };
    Ok(CertificateEnvelope {
        occurred_at: millis("occurredAt")?,
        recorded_at: millis("recordedAt")?,
        source,
        previous_sha256,
        body,
    })
}

fn long(f: &Fields, name: &str) -> Result<i64, ConvertError> {
    match f.required(name)? {
        Value::Long(l) => Ok(*l),
        _ => Err(ConvertError::WrongType {
            field: name.to_owned(),
            expected: "long",
        }),
    }
}

fn certificate(p: &Fields, name: &str) -> Result<CertificateId, ConvertError> {
    Ok(CertificateId::parse(name, p.string(name)?)?)
}

fn not_negative(field: &str, value: i32) -> Result<u32, ConvertError> {
    u32::try_from(value).map_err(|_| ConvertError::Invalid {
        field: field.into(),
        rule: "must not be negative".into(),
    })
}

fn status_list(p: &Fields) -> Result<StatusListPublished, ConvertError> {
    Ok(StatusListPublished {
        list: not_negative("list", p.int("list")?)?,
        credential: p.string("credential")?.to_owned(),
        revoked_count: u64::try_from(long(p, "revokedCount")?).unwrap_or_default(),
        bits_sha256: read_fixed(p.required("bitsSha256")?, "bitsSha256")?,
    })
}

fn checkpoint(p: &Fields) -> Result<Checkpoint, ConvertError> {
    let signature = match p.required("signature")? {
        Value::Bytes(b) => b.clone(),
        _ => {
            return Err(ConvertError::WrongType {
                field: "signature".into(),
                expected: "bytes",
            });
        }
    };
    Ok(Checkpoint {
        partition: p.int("partition")?,
        last_offset: long(p, "lastOffset")?,
        chain_head: read_fixed(p.required("chainHead")?, "chainHead")?,
        key_id: p.string("keyId")?.to_owned(),
        signature,
    })
}

/// An issue: the outcome, and the credential it carries (which must certify that certificate).
fn issued(p: &Fields, partition: i32) -> Result<(CertificateOutcome, IssuedCredential), ConvertError> {
    let text = p.string("credential")?;
    let certified = CertifiedDose::from_credential(text).map_err(|e| ConvertError::Invalid {
        field: "credential".into(),
        rule: e.to_string(),
    })?;
    let certificate_id = certificate(p, "certificateId")?;
    if certified.certificate_id != certificate_id {
        return Err(ConvertError::Invalid {
            field: "credential".into(),
            rule: format!("certifies {}, not {certificate_id}", certified.certificate_id),
        });
    }
    let renderings = match p.optional("renderings") {
        Some(Value::Array(items)) => items.iter().map(rendering_of).collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ConvertError::WrongType {
                field: "renderings".into(),
                expected: "array",
            });
        }
        None => Vec::new(),
    };
    let credential = IssuedCredential {
        text: text.to_owned(),
        key_id: p.string("keyId")?.to_owned(),
        renderings,
    };
    let outcome = CertificateOutcome::CertificateIssued {
        certificate_id,
        programme: Text::parse("programId", p.string("programId")?)?,
        supersedes: p
            .optional_string("supersedes")?
            .map(|s| CertificateId::parse("supersedes", s))
            .transpose()?,
        fingerprint: Fingerprint(read_fixed(p.required("recordSha256")?, "recordSha256")?),
        certified,
        status: status_index(p, partition)?,
    };
    Ok((outcome, credential))
}

/// An issue whose credential stayed sealed.
fn sealed_issue(f: &Fields, p: &Fields, partition: i32) -> Result<SealedIssue, ConvertError> {
    let answers = f
        .optional_string("sourceEventId")?
        .ok_or_else(|| ConvertError::Missing("sourceEventId".into()))?;
    Ok(SealedIssue {
        recipient_key: RecipientKey::parse("recipientKey", f.string("recipientKey")?)?,
        source_sha256: read_fixed(f.required("sourceSha256")?, "sourceSha256")?,
        answers: EventId::parse("sourceEventId", answers)?,
        certificate_id: certificate(p, "certificateId")?,
        programme: Text::parse("programId", p.string("programId")?)?,
        supersedes: p
            .optional_string("supersedes")?
            .map(|s| CertificateId::parse("supersedes", s))
            .transpose()?,
        status: status_index(p, partition)?,
        key_id: p.string("keyId")?.to_owned(),
    })
}

/// An outcome (payload branches 0 to 3, and 6) with the envelope's fields that only outcomes have.
fn outcome_of(f: &Fields, p: &Fields, branch: u32, partition: i32) -> Result<CertificateBody, ConvertError> {
    let mut credential = None;
    let outcome = match branch {
        0 => {
            let (outcome, issued) = issued(p, partition)?;
            credential = Some(issued);
            outcome
        }
        1 => CertificateOutcome::CertificateSuperseded {
            certificate_id: certificate(p, "certificateId")?,
            superseded_by: certificate(p, "supersededBy")?,
            update_count: not_negative("updateCount", p.int("updateCount")?)?,
        },
        2 => CertificateOutcome::CertificateRevoked {
            certificate_id: certificate(p, "certificateId")?,
            reason: Text::parse("reason", p.string("reason")?)?,
            status: status_index(p, partition)?,
        },
        3 => CertificateOutcome::CertificateRejected {
            rule: p.string("rule")?.to_owned(),
            detail: p.string("detail")?.to_owned(),
        },
        6 => CertificateOutcome::RecipientErased {
            certificates: p
                .strings("certificateIds")?
                .into_iter()
                .map(|id| CertificateId::parse("certificateIds", id))
                .collect::<Result<_, _>>()?,
        },
        other => return Err(ConvertError::UnknownPayload(format!("branch {other}"))),
    };
    let answers = f
        .optional_string("sourceEventId")?
        .ok_or_else(|| ConvertError::Missing("sourceEventId".into()))?;
    Ok(CertificateBody::Outcome {
        recipient_key: RecipientKey::parse("recipientKey", f.string("recipientKey")?)?,
        source_sha256: read_fixed(f.required("sourceSha256")?, "sourceSha256")?,
        event: CertificateEvent {
            answers: EventId::parse("sourceEventId", answers)?,
            outcome,
        },
        credential,
    })
}

#[cfg(test)]
pub(crate) mod tests;
