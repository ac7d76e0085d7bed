//! `POST /v1/vaccinations/bulk?programId=...`: DIVOC's bulk CSV, streamed row by row. Each row is
//! parsed on its own: a bad row is answered with its problems (by CSV column) and does not stop
//! the others. Good rows are handed to the producer in file order (one recipient's doses keep
//! their order) with many acknowledgements awaited at once. If the broker fails, the answer is 503
//! saying how far the file got; posting the same file again with the same Idempotency-Key appends
//! only the rows not yet appended (row ids are derived from the key and the row number).
//!
//! The body is counted as it streams: past `VAXTRAIL_MAX_BULK_BYTES` (or past
//! `VAXTRAIL_MAX_BULK_ROWS` rows) the answer is 413, saying how many rows were acknowledged, so
//! neither the file nor the reply can grow without bound.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Json,
    extract::{Query, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use domain::{commands::RecordVaccination, values::FieldError};
use futures::StreamExt;
use platform::auth::Role;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    Intake,
    append::Appended,
    problem::{self, Problem},
};

/// Acknowledgements awaited at once.
const IN_FLIGHT: usize = 256;

/// DIVOC's bulk CSV columns and where each goes in a certify record.
const COLUMNS: [(&str, &str); 28] = [
    ("preEnrollmentCode", "preEnrollmentCode"),
    ("recipientName", "recipient.name"),
    ("recipientMobileNumber", "recipient.contact"),
    ("recipientDOB", "recipient.dob"),
    ("recipientAge", "recipient.age"),
    ("recipientGender", "recipient.gender"),
    ("recipientNationality", "recipient.nationality"),
    ("recipientIdentity", "recipient.identity"),
    ("recipientAddressLine1", "recipient.address.addressLine1"),
    ("recipientAddressLine2", "recipient.address.addressLine2"),
    ("recipientDistrict", "recipient.address.district"),
    ("recipientState", "recipient.address.state"),
    ("recipientPincode", "recipient.address.pincode"),
    ("vaccinationBatch", "vaccination.batch"),
    ("vaccinationDate", "vaccination.date"),
    ("vaccinationDose", "vaccination.dose"),
    ("vaccinationTotalDoses", "vaccination.totalDoses"),
    ("vaccinationEffectiveStart", "vaccination.effectiveStart"),
    ("vaccinationEffectiveEnd", "vaccination.effectiveUntil"),
    ("vaccinationManufacturer", "vaccination.manufacturer"),
    ("vaccinationName", "vaccination.name"),
    ("vaccinatorName", "vaccinator.name"),
    ("facilityName", "facility.name"),
    ("facilityAddressLine1", "facility.address.addressLine1"),
    ("facilityAddressLine2", "facility.address.addressLine2"),
    ("facilityDistrict", "facility.address.district"),
    ("facilityState", "facility.address.state"),
    ("facilityPincode", "facility.address.pincode"),
];

/// The bulk request's query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct BulkQuery {
    /// The programme every row belongs to (DIVOC's CSV has no column for it). Required.
    #[param(required = true, value_type = String, pattern = r"\S")]
    program_id: Option<String>,
}

/// Sets `value` at a dotted `path` of a JSON object.
fn set(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let child = object.entry(head).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = child {
                set(child, rest, value);
            }
        }
    }
}

/// The certify record a row describes; empty cells are left out (so required ones are reported).
fn row_to_record(columns: &[usize; COLUMNS.len()], row: &csv_async::StringRecord, programme: &str) -> Value {
    let mut record = Map::new();
    record.insert("programId".into(), json!(programme));
    for ((_, path), index) in COLUMNS.iter().zip(columns) {
        let Some(cell) = row.get(*index).map(str::trim).filter(|c| !c.is_empty()) else {
            continue;
        };
        let value = if *path == "recipient.contact" {
            json!([format!("tel:{cell}")])
        } else {
            json!(cell)
        };
        set(&mut record, path, value);
    }
    Value::Object(record)
}

/// A record problem, named by its CSV column where there is one.
fn by_column(error: FieldError) -> Value {
    let path = error.field.split('[').next().unwrap_or_default();
    let column = COLUMNS
        .iter()
        .find(|(_, p)| *p == path)
        .map_or(error.field.as_str(), |(c, _)| c);
    json!({ "column": column, "rule": error.rule })
}

fn row_outcome(row: usize, appended: Appended, event_id: domain::ids::EventId) -> Value {
    json!({
        "row": row,
        "eventId": event_id,
        "status": format!("/v1/events/{event_id}"),
        "duplicate": appended == Appended::AlreadyAppended,
    })
}

/// The handler.
#[utoipa::path(
    post,
    path = "/v1/vaccinations/bulk",
    description = "DIVOC's bulk CSV, streamed row by row; each row answered on its own. Role: facility.",
    params(BulkQuery, ("Idempotency-Key" = Option<String>, Header, description = "The file's id: re-posting it appends only rows not yet appended")),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 202, description = "Every good row acknowledged; bad rows listed with their problems", body = crate::openapi::BulkResult),
        (status = 401, description = "No valid bearer token", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the role", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing programId or DIVOC columns", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker failed part-way; re-post the file", body = crate::openapi::Problem, content_type = "application/problem+json")
    )
)]
pub async fn bulk(
    State(intake): State<Arc<Intake>>,
    Query(query): Query<BulkQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Problem> {
    let caller = intake.authorize(&headers, &[Role::Facility]).await?;
    let programme = query
        .program_id
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| Problem::invalid(vec![FieldError::new("programId", "is required (query parameter)")]))?;
    let limit = intake.max_bulk_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|l| l > limit) {
        return Err(too_large(limit, intake.max_bulk_rows, 0));
    }
    let over = Arc::new(AtomicBool::new(false));
    let body = counted(request, limit, over.clone());
    let mut reader = csv_async::AsyncReaderBuilder::new()
        .trim(csv_async::Trim::All)
        .create_reader(tokio_util::io::StreamReader::new(body));
    let columns = columns(&mut reader, &over, limit, intake.max_bulk_rows).await?;

    let context = intake.context_for(Some(&programme));
    let ctx = context.parse_context();
    let mut outcomes: Vec<Value> = Vec::new();
    let mut in_flight = InFlight::new();
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut rows = reader.records().enumerate();
    let mut cut_short = false;
    while let Some((index, row)) = rows.next().await {
        let number = index + 1;
        let row = match row {
            Ok(row) if number <= intake.max_bulk_rows => row,
            Ok(_) => {
                cut_short = true;
                break;
            }
            Err(_) if over.load(Ordering::Acquire) => {
                cut_short = true;
                break;
            }
            Err(e) => return Err(Problem::malformed(format!("row {number} cannot be read: {e}"))),
        };
        let parsed = RecordVaccination::parse(&row_to_record(&columns, &row, &programme), &ctx).and_then(|record| {
            let record = context.stamp(record)?;
            match intake.check_facility(&caller, &record, "facility.name") {
                Ok(()) => Ok(record),
                Err(crate::master::FacilityCheck::Field(error)) => Err(vec![error]),
                // A row for a facility the caller is not bound to is refused like any bad row.
                Err(crate::master::FacilityCheck::Forbidden(_)) => Err(vec![FieldError::new(
                    "facility.name",
                    "facility-not-bound: this token is not bound to the facility the row names",
                )]),
            }
        });
        match parsed {
            Err(problems) => {
                rejected += 1;
                outcomes.push(
                    json!({ "row": number, "problems": problems.into_iter().map(by_column).collect::<Vec<_>>() }),
                );
            }
            Ok(record) => {
                let pending = intake.recorded(&caller, &headers, Some(number), record);
                let event_id = pending.envelope.event.event_id;
                let enqueued = intake
                    .appender
                    .enqueue(&pending.envelope)
                    .await
                    .map_err(|e| halted(&e, accepted))?;
                in_flight.push_back((number, event_id, enqueued));
                if in_flight.len() >= IN_FLIGHT {
                    outcomes.push(complete_oldest(&intake, &mut in_flight, &mut accepted).await?);
                }
            }
        }
    }
    while !in_flight.is_empty() {
        outcomes.push(complete_oldest(&intake, &mut in_flight, &mut accepted).await?);
    }
    if cut_short {
        metrics::counter!("vaxtrail_commands_bulk_rows_total", "outcome" => "accepted").increment(accepted as u64);
        return Err(too_large(limit, intake.max_bulk_rows, accepted));
    }
    outcomes.sort_by_key(|o| o["row"].as_u64());
    metrics::counter!("vaxtrail_commands_bulk_rows_total", "outcome" => "accepted").increment(accepted as u64);
    metrics::counter!("vaxtrail_commands_bulk_rows_total", "outcome" => "rejected").increment(rejected as u64);
    let body = json!({ "accepted": accepted, "rejected": rejected, "rows": outcomes });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Where each of DIVOC's columns is in the file's header row (422 naming every one missing).
async fn columns<R: tokio::io::AsyncRead + Unpin + Send>(
    reader: &mut csv_async::AsyncReader<R>,
    over: &AtomicBool,
    limit: usize,
    max_rows: usize,
) -> Result<[usize; COLUMNS.len()], Problem> {
    let header = reader.headers().await.map_err(|e| {
        if over.load(Ordering::Acquire) {
            too_large(limit, max_rows, 0)
        } else {
            Problem::malformed(format!("the CSV header cannot be read: {e}"))
        }
    })?;
    let mut columns = [0usize; COLUMNS.len()];
    let mut missing = Vec::new();
    for (slot, (name, _)) in columns.iter_mut().zip(COLUMNS) {
        match header.iter().position(|h| h == name) {
            Some(index) => *slot = index,
            None => missing.push(FieldError::new(
                name,
                "column is missing from the CSV header (DIVOC's bulk format)",
            )),
        }
    }
    if missing.is_empty() {
        Ok(columns)
    } else {
        Err(Problem::invalid(missing))
    }
}

/// The request body as a stream of bytes that fails (and raises `over`) once more than `limit`
/// bytes have come.
fn counted(
    request: Request,
    limit: usize,
    over: Arc<AtomicBool>,
) -> impl futures::Stream<Item = std::io::Result<axum::body::Bytes>> {
    let mut seen = 0usize;
    request.into_body().into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len();
        if seen > limit {
            over.store(true, Ordering::Release);
            return Err(std::io::Error::other("the file is larger than the limit"));
        }
        Ok(chunk)
    })
}

/// 413: the file passed a limit; how many rows were acknowledged before.
fn too_large(bytes: usize, rows: usize, accepted: usize) -> Problem {
    metrics::counter!("vaxtrail_http_refused_total", "reason" => "too-large").increment(1);
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!(
            "The file is larger than {bytes} bytes or {rows} rows; the first {accepted} rows were acknowledged and the rest was not read. Post the rest as another file"
        ),
    )
    .with_error("", format!("at most {bytes} bytes and {rows} rows per file"))
}

fn halted(error: &dyn std::error::Error, accepted: usize) -> Problem {
    problem::unavailable_after(error, accepted)
}

type InFlight = VecDeque<(usize, domain::ids::EventId, crate::append::Enqueued)>;

/// Waits for the oldest row in flight and gives its outcome.
async fn complete_oldest(intake: &Intake, in_flight: &mut InFlight, accepted: &mut usize) -> Result<Value, Problem> {
    let (number, event_id, enqueued) = in_flight.pop_front().expect("called with rows in flight");
    let appended = intake
        .appender
        .complete(enqueued)
        .await
        .map_err(|e| halted(&e, *accepted))?;
    *accepted += 1;
    Ok(row_outcome(number, appended, event_id))
}
