//! One log record as an auditor sees it: its position, timestamp, key and SHA-256, and what it
//! says (event id and type for a vaccination; the hashes that chain it, the event it answers and
//! the certificate for an outcome; the chain head for a checkpoint).

use avro::{
    certificate::{CertificateBody, CertificateEnvelope},
    codec::{CertificateCodec, CodecError, VaccinationCodec},
};
use domain::events::CertificateOutcome;
use rdkafka::{Message, message::OwnedMessage};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Describes a record of either event topic (`vaccination_topic` tells them apart). A record
/// that does not decode is described with why.
pub async fn describe(
    record: &OwnedMessage,
    vaccination_topic: &str,
    vaccinations: &VaccinationCodec,
    certificates: &CertificateCodec,
) -> Value {
    let bytes = record.payload().unwrap_or_default();
    let mut out = json!({
        "topic": record.topic(),
        "partition": record.partition(),
        "offset": record.offset(),
        "timestamp": record.timestamp().to_millis(),
        "key": record.key().map(String::from_utf8_lossy),
        "sha256": hex::encode(Sha256::digest(bytes)),
    });
    if record.topic() == vaccination_topic {
        match vaccinations.decode(bytes).await {
            Ok(envelope) => {
                out["eventId"] = json!(envelope.event.event_id.to_string());
                out["eventType"] = json!(envelope.event.payload.event_type());
                out["recipientKey"] = json!(envelope.event.recipient_key.as_str());
                out["recordedAt"] = json!(envelope.provenance.recorded_at);
                out["sourceSystem"] = json!(envelope.provenance.source_system);
            }
            // An auditor without the key store (or after an erasure) sees who and what, not the
            // personal data.
            Err(CodecError::Sealed {
                event_id,
                event_type,
                recipient_key,
                why,
                ..
            }) => {
                out["eventId"] = json!(event_id);
                out["eventType"] = json!(event_type);
                out["recipientKey"] = json!(recipient_key.as_str());
                out["personalData"] = json!(format!("sealed: {why}"));
            }
            Err(e) => out["undecodable"] = json!(e.to_string()),
        }
    } else {
        match certificates.decode(bytes).await {
            Ok(envelope) => describe_certificate(&mut out, &envelope),
            Err(e) => out["undecodable"] = json!(e.to_string()),
        }
    }
    out
}

fn describe_certificate(out: &mut Value, envelope: &CertificateEnvelope) {
    out["previousSha256"] = json!(envelope.previous_sha256.map(hex::encode));
    out["source"] = json!({"partition": envelope.source.partition, "offset": envelope.source.offset});
    out["recordedAt"] = json!(envelope.recorded_at);
    match &envelope.body {
        CertificateBody::Outcome {
            recipient_key,
            source_sha256,
            event,
            ..
        } => {
            out["eventType"] = json!(event.outcome.event_type());
            out["answers"] = json!(event.answers.to_string());
            out["recipientKey"] = json!(recipient_key.as_str());
            out["sourceSha256"] = json!(hex::encode(source_sha256));
            if let Some(id) = certificate_of(&event.outcome) {
                out["certificateId"] = json!(id);
            }
        }
        CertificateBody::SealedIssue(issue) => {
            out["eventType"] = json!("CertificateIssued");
            out["answers"] = json!(issue.answers.to_string());
            out["recipientKey"] = json!(issue.recipient_key.as_str());
            out["sourceSha256"] = json!(hex::encode(issue.source_sha256));
            out["certificateId"] = json!(issue.certificate_id.as_str());
            out["credential"] = json!("sealed");
        }
        CertificateBody::Checkpoint(checkpoint) => {
            out["eventType"] = json!("Checkpoint");
            out["chainHead"] = json!(hex::encode(checkpoint.chain_head));
            out["lastOffset"] = json!(checkpoint.last_offset);
        }
        CertificateBody::StatusList(list) => {
            out["eventType"] = json!("StatusListPublished");
            out["list"] = json!(list.list);
            out["revokedCount"] = json!(list.revoked_count);
            out["bitsSha256"] = json!(hex::encode(list.bits_sha256));
        }
    }
}

/// The certificate an outcome issued, superseded or revoked (none for a rejection).
pub fn certificate_of(outcome: &CertificateOutcome) -> Option<&str> {
    use CertificateOutcome::*;
    match outcome {
        CertificateIssued { certificate_id, .. }
        | CertificateSuperseded { certificate_id, .. }
        | CertificateRevoked { certificate_id, .. } => Some(certificate_id.as_str()),
        CertificateRejected { .. } | RecipientErased { .. } => None,
    }
}
