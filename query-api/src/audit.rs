//! Audit reads, for the `auditor` role: events read from the log itself, each with its position,
//! its SHA-256 and (for certificate events) the hashes that chain it, found by recipient key, by
//! certificate id (positions looked up in the Postgres projection, records read from Kafka) or by
//! time range (Kafka's offsets-for-times); and the signer's signed checkpoints.

use std::{sync::Arc, time::Duration};

use avro::{
    certificate::{CertificateBody, CertificateEnvelope},
    codec::{CertificateCodec, VaccinationCodec},
};
use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use platform::problem::Problem;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::OwnedMessage,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{AppState, analytics::query};

/// At most this many events per answer.
const MAX_EVENTS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventsQuery {
    recipient: Option<String>,
    certificate: Option<String>,
    /// RFC 3339.
    from: Option<String>,
    /// RFC 3339.
    to: Option<String>,
    limit: Option<usize>,
}

async fn auditor(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    crate::access::caller_for(&state.auth, headers, crate::access::Route::Audit).await?;
    Ok(())
}

fn unavailable(error: &dyn std::fmt::Display) -> Problem {
    Problem::unavailable("The log or the read models are unavailable; retry shortly", error)
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Problem::field(field, "must be an RFC 3339 time (2021-06-01T00:00:00Z)"))
}

/// `GET /v1/audit/events?recipient=K | certificate=C | from=T&to=T [&limit=N]`.
pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    parsed: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    auditor(&state, &headers).await?;
    let q = query(parsed)?;
    let limit = q.limit.unwrap_or(MAX_EVENTS);
    if limit == 0 || limit > MAX_EVENTS {
        return Err(Problem::field("limit", format!("must be 1 to {MAX_EVENTS}")));
    }
    let topics = (
        state.topics.vaccination_events.clone(),
        state.topics.certificate_events.clone(),
    );
    let positions: Vec<(String, i32, i64)> = match (&q.recipient, &q.certificate, &q.from) {
        (Some(recipient), None, None) => {
            let rows: Vec<(i32, i64, Option<i32>, Option<i64>)> = sqlx::query_as(
                "SELECT v.log_partition, v.log_offset, o.log_partition, o.log_offset
                 FROM vaccinations v LEFT JOIN event_outcomes o ON o.source_event_id = v.event_id
                 WHERE v.recipient_key = $1 ORDER BY v.log_partition, v.log_offset",
            )
            .bind(recipient)
            .fetch_all(state.store.pool())
            .await
            .map_err(|e| unavailable(&e))?;
            pairs(rows, &topics)
        }
        (None, Some(certificate), None) => {
            let rows: Vec<(i32, i64, Option<i32>, Option<i64>)> = sqlx::query_as(
                "SELECT v.log_partition, v.log_offset, o.log_partition, o.log_offset
                 FROM vaccinations v LEFT JOIN event_outcomes o ON o.source_event_id = v.event_id
                 WHERE v.event_id = (SELECT source_event_id FROM certificates WHERE certificate_id = $1)
                    OR v.target_certificate = $1
                    OR v.event_id IN (SELECT source_event_id FROM event_outcomes WHERE certificate_id = $1)
                 ORDER BY v.log_partition, v.log_offset",
            )
            .bind(certificate)
            .fetch_all(state.store.pool())
            .await
            .map_err(|e| unavailable(&e))?;
            pairs(rows, &topics)
        }
        (None, None, Some(from)) => {
            let from = time("from", from)?;
            let to = match &q.to {
                Some(to) => time("to", to)?,
                None => Utc::now(),
            };
            if from > to {
                return Err(Problem::field("from", "must not be after `to`"));
            }
            let (brokers, partitions) = (state.brokers.clone(), state.partitions as i32);
            let names = [topics.0.clone(), topics.1.clone()];
            let records = tokio::task::spawn_blocking(move || between(&brokers, &names, partitions, from, to, limit))
                .await
                .map_err(|e| unavailable(&e))?
                .map_err(|e| unavailable(&e))?;
            return describe_all(&state, &records).await;
        }
        _ => {
            return Err(Problem::field(
                "",
                "name exactly one of: recipient, certificate, or from (with an optional to)",
            ));
        }
    };
    let mut positions = positions;
    positions.truncate(limit);
    let brokers = state.brokers.clone();
    let records = tokio::task::spawn_blocking(move || read(&brokers, &positions))
        .await
        .map_err(|e| unavailable(&e))?
        .map_err(|e| unavailable(&e))?;
    describe_all(&state, &records).await
}

async fn describe_all(state: &AppState, records: &[OwnedMessage]) -> Result<Response, Problem> {
    let vaccinations = VaccinationCodec::new(&state.registry_url, &state.topics.vaccination_events);
    let certificates = CertificateCodec::new(&state.registry_url, &state.topics.certificate_events);
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        out.push(describe(record, &state.topics.vaccination_events, &vaccinations, &certificates).await);
    }
    Ok(Json(json!({ "events": out })).into_response())
}

/// Vaccination positions and their outcomes' positions, each once.
fn pairs(rows: Vec<(i32, i64, Option<i32>, Option<i64>)>, topics: &(String, String)) -> Vec<(String, i32, i64)> {
    let mut out = Vec::new();
    for (partition, offset, outcome_partition, outcome_offset) in rows {
        let vaccination = (topics.0.clone(), partition, offset);
        if !out.contains(&vaccination) {
            out.push(vaccination);
        }
        if let (Some(p), Some(o)) = (outcome_partition, outcome_offset) {
            let outcome = (topics.1.clone(), p, o);
            if !out.contains(&outcome) {
                out.push(outcome);
            }
        }
    }
    out
}

fn reader(brokers: &str) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "vaxtrail-query-audit")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
}

/// The records written between two times, oldest first per partition. The start comes from
/// offsets-for-times where the broker answers it (Kafka does; Tansu 0.6 does not, and then each
/// partition is read from its start), and records are kept by their timestamps.
fn between(
    brokers: &str,
    topics: &[String; 2],
    partitions: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<OwnedMessage>, rdkafka::error::KafkaError> {
    let consumer = reader(brokers)?;
    let mut asked = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..partitions {
            asked.add_partition_offset(topic, partition, Offset::Offset(from.timestamp_millis()))?;
        }
    }
    let starts = consumer
        .offsets_for_times(asked.clone(), Duration::from_secs(10))
        .unwrap_or(asked);
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let mut out = Vec::new();
    for topic in topics {
        for partition in 0..partitions {
            let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
            let start = match starts.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if (low..=high).contains(&o) => o,
                Some(Offset::End) => high,
                _ => low,
            };
            if start >= high {
                continue;
            }
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(topic, partition, Offset::Offset(start))?;
            consumer.assign(&list)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let mut next = start;
            while next < high && std::time::Instant::now() < deadline {
                let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                    continue;
                };
                let message = message?;
                next = message.offset() + 1;
                let at = message.timestamp().to_millis().unwrap_or(0);
                if at > to_ms {
                    break;
                }
                if at >= from_ms {
                    out.push(message.detach());
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Reads the records at these positions.
fn read(brokers: &str, positions: &[(String, i32, i64)]) -> Result<Vec<OwnedMessage>, String> {
    let consumer = reader(brokers).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(positions.len());
    for (topic, partition, offset) in positions {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|e| e.to_string())?;
        consumer.assign(&list).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if std::time::Instant::now() > deadline {
                return Err(format!("{topic}/{partition}@{offset} could not be read within 10 s"));
            }
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(message)) if message.offset() == *offset => {
                    out.push(message.detach());
                    break;
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
        "sha256": hex(&Sha256::digest(bytes)),
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
    out["previousSha256"] = json!(envelope.previous_sha256.map(|h| hex(&h)));
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
            out["sourceSha256"] = json!(hex(source_sha256));
            if let Some(id) = certificate_of(&event.outcome) {
                out["certificateId"] = json!(id);
            }
        }
        CertificateBody::Checkpoint(checkpoint) => {
            out["eventType"] = json!("Checkpoint");
            out["chainHead"] = json!(hex(&checkpoint.chain_head));
            out["lastOffset"] = json!(checkpoint.last_offset);
        }
        CertificateBody::StatusList(list) => {
            out["eventType"] = json!("StatusListPublished");
            out["list"] = json!(list.list);
            out["revokedCount"] = json!(list.revoked_count);
            out["bitsSha256"] = json!(hex(&list.bits_sha256));
        }
    }
}

pub fn certificate_of(outcome: &domain::events::CertificateOutcome) -> Option<&str> {
    use domain::events::CertificateOutcome::*;
    match outcome {
        CertificateIssued { certificate_id, .. }
        | CertificateSuperseded { certificate_id, .. }
        | CertificateRevoked { certificate_id, .. } => Some(certificate_id.as_str()),
        CertificateRejected { .. } => None,
    }
}

/// Partition, offset, last offset covered, chain head, key id, signature, recorded at.
type CheckpointRow = (i32, i64, i64, Vec<u8>, String, Vec<u8>, DateTime<Utc>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsQuery {
    partition: Option<i32>,
}

/// `GET /v1/audit/checkpoints[?partition=P]`: the signed checkpoints, newest first per partition.
pub async fn checkpoints(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    parsed: Result<Query<CheckpointsQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    auditor(&state, &headers).await?;
    let q = query(parsed)?;
    let rows: Vec<CheckpointRow> = sqlx::query_as(
        "SELECT log_partition, log_offset, last_offset, chain_head, key_id, signature, recorded_at
         FROM checkpoints WHERE ($1::int IS NULL OR log_partition = $1)
         ORDER BY log_partition, log_offset DESC LIMIT 1000",
    )
    .bind(q.partition)
    .fetch_all(state.store.pool())
    .await
    .map_err(|e| unavailable(&e))?;
    let checkpoints: Vec<Value> = rows
        .into_iter()
        .map(|(partition, offset, last, head, key, signature, at)| {
            json!({
                "partition": partition, "offset": offset, "lastOffset": last, "chainHead": hex(&head),
                "keyId": key, "signature": hex(&signature), "recordedAt": at,
            })
        })
        .collect();
    Ok(Json(json!({ "checkpoints": checkpoints })).into_response())
}
