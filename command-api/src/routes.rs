//! The command endpoints. Every record of a request is parsed first; if any is invalid, nothing is
//! appended and the answer names each bad field. Otherwise each record is appended and the answer,
//! 202 with the event ids, is sent only once the broker has acknowledged every one.
//!
//! Over 400 lines: one handler per endpoint, each beside the utoipa annotation that documents it
//! (so the document and the handler change together); parsing lives in `domain`, appending in
//! `producer`, bulk files in `bulk`.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use domain::{
    commands::{CorrectVaccination, RecordVaccination, RevokeCertificate},
    events::{VaccinationEvent, VaccinationPayload},
    ids::EventId,
    values::{FieldError, RecipientKey},
};
use serde_json::{Value, json};

use platform::auth::{Caller, Role};

use crate::{
    Intake,
    append::Appended,
    master::FacilityCheck,
    problem::{self, Problem},
};

/// The header carrying the caller's own id for a record.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request body, with a too-large body answered as problem+json.
pub struct Body(axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = Problem;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Problem::too_large()),
            Err(rejection) => Err(Problem::malformed(rejection.body_text())),
        }
    }
}

pub(crate) fn parse_json(body: &Body) -> Result<Value, Problem> {
    serde_json::from_slice(&body.0).map_err(|e| Problem::malformed(format!("the body is not valid JSON: {e}")))
}

/// Most field problems one answer lists (the count of the rest is given).
const MAX_REPORTED_PROBLEMS: usize = 100;

/// A JSON array of at most `max` elements, refused as soon as the next one would pass the limit,
/// so an array of a million empty records costs nothing beyond the body itself.
struct BoundedArray(Vec<Value>);

struct BoundedVisitor(usize);

impl<'de> serde::de::Visitor<'de> for BoundedVisitor {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of at most {} records", self.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            if items.len() == self.0 {
                return Err(serde::de::Error::custom(format!(
                    "the array holds more than {} records; split it",
                    self.0
                )));
            }
            items.push(item);
        }
        Ok(items)
    }
}

impl BoundedArray {
    fn parse(body: &Body, max: usize) -> Result<Self, Problem> {
        let mut deserializer = serde_json::Deserializer::from_slice(&body.0);
        let items = serde::Deserializer::deserialize_seq(&mut deserializer, BoundedVisitor(max))
            .and_then(|items| deserializer.end().map(|()| items))
            .map_err(|e| {
                if e.to_string().contains("split it") {
                    Problem::field("", e.to_string())
                } else {
                    Problem::malformed(format!("DIVOC's certify body is a JSON array of records: {e}"))
                }
            })?;
        Ok(Self(items))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// One record ready to append: the event id is derived from the source system and the caller's
/// record id (the Idempotency-Key, with the record's position for arrays), or else from the record.
pub(crate) struct Pending {
    pub(crate) envelope: avro::vaccination::VaccinationEnvelope,
}

fn record_id(headers: &HeaderMap, index: Option<usize>, fallback: impl FnOnce() -> String) -> String {
    match (header(headers, IDEMPOTENCY_KEY), index) {
        (Some(key), Some(i)) => format!("{key}#{i}"),
        (Some(key), None) => key.to_owned(),
        (None, _) => fallback(),
    }
}

impl Intake {
    /// The caller, if its token is valid and holds one of `roles`.
    pub(crate) async fn authorize(&self, headers: &HeaderMap, roles: &[Role]) -> Result<Caller, Problem> {
        let caller = self.verifier.authenticate(headers).await?;
        caller.require(roles)?;
        Ok(caller)
    }

    fn pending(
        &self,
        caller: &Caller,
        record_id: String,
        recipient: RecipientKey,
        payload: VaccinationPayload,
    ) -> Pending {
        // The authenticated subject is the source system: ids cannot collide across callers.
        let source = caller.subject.clone();
        let now = Utc::now();
        let envelope = avro::vaccination::VaccinationEnvelope {
            event: VaccinationEvent {
                event_id: EventId::keyed(&self.ids, &source, &record_id),
                recipient_key: recipient,
                payload,
            },
            provenance: avro::vaccination::Provenance {
                occurred_at: now,
                recorded_at: now,
                source_system: source,
                source_record_id: record_id,
                actor: caller.subject.clone(),
            },
        };
        Pending { envelope }
    }

    pub(crate) fn recorded(
        &self,
        caller: &Caller,
        headers: &HeaderMap,
        index: Option<usize>,
        record: RecordVaccination,
    ) -> Pending {
        let key = RecipientKey::derive(&self.recipient_secret, &record.recipient.identity);
        // The recipient is part of the record's name: two people who share a pre-enrollment code
        // (a family's phone number) are two events.
        let id = record_id(headers, index, || {
            format!(
                "{}/{}/{}/dose-{}",
                key.as_str(),
                record.pre_enrollment_code,
                record.programme,
                record.vaccination.dose.number()
            )
        });
        self.pending(caller, id, key, VaccinationPayload::VaccinationRecorded(record))
    }

    /// Appends every pending record in order; 202 with their ids, or 503 at the first failure.
    async fn append_all(&self, pending: Vec<Pending>) -> Result<Vec<Value>, Problem> {
        let mut accepted = Vec::with_capacity(pending.len());
        for Pending { envelope } in pending {
            let outcome = self
                .appender
                .append(&envelope)
                .await
                .map_err(|e| problem::unavailable(&e))?;
            let kind = envelope.event.payload.event_type();
            metrics::counter!("vaxtrail_commands_accepted_total", "event_type" => kind).increment(1);
            let id = envelope.event.event_id;
            accepted.push(json!({
                "eventId": id,
                "status": format!("/v1/events/{id}"),
                "duplicate": outcome == Appended::AlreadyAppended,
            }));
        }
        Ok(accepted)
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Intake {
    /// A facility corrects only what its own source system recorded (an administrator anything).
    async fn check_owner(
        &self,
        caller: &Caller,
        recipient: &RecipientKey,
        target: &domain::commands::CorrectionTarget,
    ) -> Result<(), Problem> {
        if caller.roles.contains(&Role::Admin) {
            return Ok(());
        }
        let recorded = self.ownership.of(recipient, target).await.map_err(|e| {
            Problem::unavailable(
                "Who recorded this dose cannot be checked now; nothing was accepted. Retry with the same Idempotency-Key",
                &e,
            )
        })?;
        match recorded {
            crate::ownership::Recorded::By(source) if source != caller.subject => {
                metrics::counter!("vaxtrail_commands_refused_total", "rule" => "recorded-by-another-source")
                    .increment(1);
                Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "recorded-by-another-source",
                    "This dose was recorded by another source system; only that system (or an administrator) may correct it",
                )
                .with_error("certificateId", "recorded-by-another-source"))
            }
            _ => Ok(()),
        }
    }

    /// Appends one record and answers 202 with its id.
    async fn append_one(&self, pending: Pending) -> Result<Response, Problem> {
        let mut accepted_ids = self.append_all(vec![pending]).await?;
        Ok(accepted(accepted_ids.remove(0)))
    }
}

/// 422 naming each field and rule, at most [`MAX_REPORTED_PROBLEMS`] of them (then a count of the
/// rest). Counted without labels from the request: field paths and indexes would grow the metrics
/// without bound.
pub(crate) fn rejected(errors: Vec<FieldError>) -> Problem {
    rejected_with(errors, 0)
}

/// The same, with `unlisted` further problems only counted.
fn rejected_with(mut errors: Vec<FieldError>, mut unlisted: usize) -> Problem {
    metrics::counter!("vaxtrail_commands_rejected_total").increment(1);
    metrics::counter!("vaxtrail_commands_field_problems_total").increment((errors.len() + unlisted) as u64);
    if errors.len() > MAX_REPORTED_PROBLEMS {
        unlisted += errors.len() - MAX_REPORTED_PROBLEMS;
        errors.truncate(MAX_REPORTED_PROBLEMS);
    }
    if unlisted > 0 {
        errors.push(FieldError::new("", format!("and {unlisted} more problems, not listed")));
    }
    Problem::invalid(errors)
}

/// [`Intake::check_facility`] as the single-record endpoints answer it.
pub(crate) fn facility_allowed(
    intake: &Intake,
    caller: &Caller,
    record: &RecordVaccination,
    field: &str,
) -> Result<(), Problem> {
    match intake.check_facility(caller, record, field) {
        Ok(()) => Ok(()),
        Err(FacilityCheck::Field(error)) => Err(rejected(vec![error])),
        Err(FacilityCheck::Forbidden(problem)) => Err(problem),
    }
}

fn accepted(body: Value) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `POST /v1/certify`: DIVOC's certify body, an array of records.
#[utoipa::path(
    post,
    path = "/v1/certify",
    description = "DIVOC's certify request as-is. Role: facility.",
    request_body = Vec<crate::openapi::CertifyRecord>,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's id for the record: a retry with the same key yields the same event")),
    responses(
        (status = 202, description = "Accepted: the broker acknowledged every record", body = Vec<crate::openapi::Accepted>),
        crate::openapi::Refusals
    )
)]
pub async fn certify(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Facility]).await?;
    let BoundedArray(records) = BoundedArray::parse(&body, intake.max_records)?;
    if records.is_empty() {
        return Err(Problem::malformed("the array holds no record"));
    }
    let (mut errors, mut unlisted) = (Vec::new(), 0);
    let mut pending = Vec::new();
    for (i, raw) in records.iter().enumerate() {
        let ctx = intake.context_for(raw.get("programId").and_then(Value::as_str));
        let parsed = RecordVaccination::parse(raw, &ctx.parse_context()).and_then(|record| ctx.stamp(record));
        let parsed = match parsed.map(|record| {
            let field = format!("[{i}].facility.name");
            (intake.check_facility(&caller, &record, &field), record)
        }) {
            Ok((Ok(()), record)) => Ok(record),
            // A record for a facility the caller is not bound to: the whole request is refused.
            Ok((Err(FacilityCheck::Forbidden(problem)), _)) => return Err(problem),
            // Already prefixed with the record's index.
            Ok((Err(FacilityCheck::Field(error)), _)) => {
                errors.push(error);
                continue;
            }
            Err(problems) => Err(problems),
        };
        match parsed {
            Ok(record) => pending.push(intake.recorded(&caller, &headers, (records.len() > 1).then_some(i), record)),
            // Past the listed maximum only the count matters.
            Err(problems) if errors.len() >= MAX_REPORTED_PROBLEMS => unlisted += problems.len(),
            Err(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|e| FieldError::new(format!("[{i}].{}", e.field), e.rule)),
            ),
        }
    }
    if !errors.is_empty() {
        return Err(rejected_with(errors, unlisted));
    }
    Ok(accepted(json!(intake.append_all(pending).await?)))
}

/// `POST /v1/vaccinations`: one record.
#[utoipa::path(
    post,
    path = "/v1/vaccinations",
    description = "One DIVOC certify record. Role: facility.",
    request_body = crate::openapi::CertifyRecord,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's id for the record: a retry with the same key yields the same event")),
    responses(
        (status = 202, description = "Accepted: the broker acknowledged every record", body = crate::openapi::Accepted),
        crate::openapi::Refusals
    )
)]
pub async fn vaccination(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Facility]).await?;
    let body = parse_json(&body)?;
    let ctx = intake.context_for(body.get("programId").and_then(Value::as_str));
    let record = RecordVaccination::parse(&body, &ctx.parse_context())
        .and_then(|record| ctx.stamp(record))
        .map_err(rejected)?;
    facility_allowed(&intake, &caller, &record, "facility.name")?;
    let pending = intake.recorded(&caller, &headers, None, record);
    intake.append_one(pending).await
}

/// `POST /v1/corrections`: a whole corrected record, optionally naming the certificate.
#[utoipa::path(
    post,
    path = "/v1/corrections",
    description = "Correct a recorded dose. Role: facility.",
    request_body = crate::openapi::Correction,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's id for the record: a retry with the same key yields the same event")),
    responses(
        (status = 202, description = "Accepted: the broker acknowledged every record", body = crate::openapi::Accepted),
        crate::openapi::Refusals
    )
)]
pub async fn correction(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Facility]).await?;
    let body = parse_json(&body)?;
    let ctx = intake.context_for(body.get("programId").and_then(Value::as_str));
    let mut correction = CorrectVaccination::parse(&body, &ctx.parse_context()).map_err(rejected)?;
    correction.corrected = ctx.stamp(correction.corrected).map_err(rejected)?;
    let record = &correction.corrected;
    facility_allowed(&intake, &caller, record, "facility.name")?;
    let key = RecipientKey::derive(&intake.recipient_secret, &record.recipient.identity);
    intake.check_owner(&caller, &key, &correction.target).await?;
    // Without a key, the correction's content names it: the same correction retried is one event.
    let id = record_id(&headers, None, || {
        let content = serde_json::to_vec(&correction).expect("commands serialize");
        format!("correction/{}", hex_sha256(&content))
    });
    let payload = VaccinationPayload::VaccinationCorrected {
        target: correction.target,
        corrected: correction.corrected,
    };
    let pending = intake.pending(&caller, id, key, payload);
    intake.append_one(pending).await
}

/// `POST /v1/revocations`: `{certificateId, reason, recipientKey}`.
#[utoipa::path(
    post,
    path = "/v1/revocations",
    description = "Revoke a certificate. Role: controller.",
    request_body = crate::openapi::Revocation,
    params(("Idempotency-Key" = Option<String>, Header, description = "The caller's id for the record: a retry with the same key yields the same event")),
    responses(
        (status = 202, description = "Accepted: the broker acknowledged every record", body = crate::openapi::Accepted),
        crate::openapi::Refusals
    )
)]
pub async fn revocation(
    State(intake): State<Arc<Intake>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Controller]).await?;
    let body = parse_json(&body)?;
    let revoke = RevokeCertificate::parse(&body);
    // The certificate's owner keys the event so it lands beside the recipient's other events.
    let key = json::recipient_key(&body);
    let (revoke, key) = match (revoke, key) {
        (Ok(revoke), Ok(key)) => (revoke, key),
        (revoke, key) => {
            let errors = revoke.err().unwrap_or_default().into_iter().chain(key.err()).collect();
            return Err(rejected(errors));
        }
    };
    let id = record_id(&headers, None, || format!("revocation/{}", revoke.certificate_id));
    let payload = VaccinationPayload::RevocationRequested {
        certificate_id: revoke.certificate_id,
        reason: revoke.reason,
    };
    let pending = intake.pending(&caller, id, key, payload);
    intake.append_one(pending).await
}

#[utoipa::path(
    post,
    path = "/v1/erasures",
    description = "Erase a recipient (crypto-shredding): their data keys are deleted from the key store, so their records in the log can never be read again, and a RecipientErased event makes every read model drop them; the query API then answers 410 Gone for their certificates. Name them by `identity` (the URI their records carry) or by `recipientKey`. Role: admin.",
    request_body = crate::openapi::Erasure,
    responses(
        (status = 202, description = "Accepted: the keys are gone and the broker acknowledged the event", body = crate::openapi::Accepted),
        crate::openapi::Refusals
    )
)]
pub async fn erasure(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Body) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Admin]).await?;
    let body = parse_json(&body)?;
    let key = match (
        body.get("identity").and_then(Value::as_str),
        body.get("recipientKey").and_then(Value::as_str),
    ) {
        (Some(identity), None) => domain::values::Identity::parse("identity", identity)
            .map(|identity| RecipientKey::derive(&intake.recipient_secret, &identity)),
        (None, Some(key)) => RecipientKey::parse("recipientKey", key),
        _ => Err(FieldError::new(
            "identity",
            "give exactly one of identity and recipientKey (strings)",
        )),
    }
    .map_err(|e| rejected(vec![e]))?;
    let Some(keys) = &intake.keys else {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "no-key-store",
            "This deployment has no key store (VAXTRAIL_KEYSTORE_URL): personal data is in the clear and cannot be erased",
        ));
    };
    let erased = keys
        .erase(&key, &caller.subject)
        .await
        .map_err(|e| crate::problem::unavailable(&e))?;
    let first = erased.key_ids.first().map_or("none".to_owned(), ToString::to_string);
    let id = record_id(&headers, None, || format!("erasure/{}/{first}", key.as_str()));
    let payload = VaccinationPayload::RecipientErased {
        erased_keys: erased.key_ids.iter().map(ToString::to_string).collect(),
    };
    tracing::info!(recipient_key = key.as_str(), keys = erased.key_ids.len(), actor = %caller.subject, "recipient erased");
    let pending = intake.pending(&caller, id, key, payload);
    intake.append_one(pending).await
}

mod json {
    use domain::values::{FieldError, RecipientKey};
    use serde_json::Value;

    /// The `recipientKey` of a revocation body.
    pub fn recipient_key(body: &Value) -> Result<RecipientKey, FieldError> {
        let raw = body
            .get("recipientKey")
            .and_then(Value::as_str)
            .ok_or_else(|| FieldError::new("recipientKey", "is required"))?;
        RecipientKey::parse("recipientKey", raw)
    }
}
