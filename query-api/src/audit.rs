//! Audit reads, for the `auditor` role: events read from the log itself, each with its position,
//! its SHA-256 and (for certificate events) the hashes that chain it, found by recipient key, by
//! certificate id (positions looked up in the Postgres projection, records read from Kafka) or by
//! time range (Kafka's offsets-for-times); and the signer's signed checkpoints.

use std::sync::Arc;

use avro::codec::{CertificateCodec, VaccinationCodec};
use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use platform::log::Position;
use platform::problem::Problem;
use rdkafka::message::OwnedMessage;
use serde::Deserialize;
use serde_json::{Value, json};

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
    let positions: Vec<Position> = match (&q.recipient, &q.certificate, &q.from) {
        (Some(recipient), None, None) => {
            crate::routes::recipient_key(recipient, "recipient")?;
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
            domain::ids::CertificateId::parse("certificate", certificate)
                .map_err(|e| Problem::field("certificate", e.rule))?;
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
                Some(to) => {
                    let to = time("to", to)?;
                    // Only a range the caller wrote both ends of can be backwards.
                    if from > to {
                        return Err(Problem::field("from", "must not be after `to`"));
                    }
                    to
                }
                None => Utc::now(),
            };
            if from > to {
                // A `from` after now with no `to`: nothing has been logged there yet.
                return Ok(Json(json!({ "events": [] })).into_response());
            }
            let brokers = state.brokers.clone();
            let names = [topics.0.clone(), topics.1.clone()];
            let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
            let records =
                tokio::task::spawn_blocking(move || platform::log::read_between(&brokers, &names, from, to, limit))
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
    let records = tokio::task::spawn_blocking(move || platform::log::read_at(&brokers, &positions))
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
        out.push(audit::describe(record, &state.topics.vaccination_events, &vaccinations, &certificates).await);
    }
    Ok(Json(json!({ "events": out })).into_response())
}

/// Vaccination positions and their outcomes' positions, each once.
fn pairs(rows: Vec<(i32, i64, Option<i32>, Option<i64>)>, topics: &(String, String)) -> Vec<Position> {
    let at = |topic: &String, partition, offset| Position {
        topic: topic.clone(),
        partition,
        offset,
    };
    let mut out = Vec::new();
    for (partition, offset, outcome_partition, outcome_offset) in rows {
        let vaccination = at(&topics.0, partition, offset);
        if !out.contains(&vaccination) {
            out.push(vaccination);
        }
        if let (Some(p), Some(o)) = (outcome_partition, outcome_offset) {
            let outcome = at(&topics.1, p, o);
            if !out.contains(&outcome) {
                out.push(outcome);
            }
        }
    }
    out
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
                "partition": partition, "offset": offset, "lastOffset": last, "chainHead": hex::encode(&head),
                "keyId": key, "signature": hex::encode(&signature), "recordedAt": at,
            })
        })
        .collect();
    Ok(Json(json!({ "checkpoints": checkpoints })).into_response())
}
