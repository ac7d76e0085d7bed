//! Analytics from ClickHouse for the dashboard: doses by day, vaccine, dose number, place, gender
//! and age band; certificate outcomes; signing latency percentiles; and the pipeline's live lag
//! (each projection's stored offsets against the topics' high watermarks). Counts come from the
//! materialized daily aggregates, which keep distinct event ids, so a redelivery never counts
//! twice. Public: nothing here names a person.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::header,
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use platform::problem::Problem;
use rdkafka::consumer::Consumer;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;

/// The query string, or a problem naming what is wrong with it.
pub fn query<T>(parsed: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    parsed
        .map(|Query(value)| value)
        .map_err(|e| Problem::field("query", e.body_text()))
}

/// How `/v1/analytics/doses` may group (`by`): name → ClickHouse expression.
pub const DOSES_BY: [(&str, &str); 7] = [
    ("day", "toString(vaccination_date)"),
    ("vaccine", "vaccine"),
    ("dose", "toString(dose)"),
    ("state", "state"),
    ("district", "concat(state, ' / ', district)"),
    ("gender", "gender"),
    ("ageBand", "age_band"),
];

/// How `/v1/analytics/certificates` may group (`by`).
pub const CERTIFICATES_BY: [(&str, &str); 3] = [
    ("outcome", "outcome"),
    ("day", "concat(toString(day), ' ', outcome)"),
    ("rule", "concat(outcome, if(rule = '', '', concat(': ', rule)))"),
];

/// The filters every series takes.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filters {
    /// First day, `YYYY-MM-DD` (inclusive).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (inclusive).
    to: Option<String>,
    /// Only this programme.
    programme: Option<String>,
    /// The dimension to group by.
    by: Option<String>,
}

struct Range {
    from: NaiveDate,
    to: NaiveDate,
}

fn range(filters: &Filters) -> Result<Range, Problem> {
    let day = |field: &str, value: &Option<String>, default: NaiveDate| match value {
        None => Ok(default),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| Problem::field(field, "must be a date written YYYY-MM-DD")),
    };
    let from = day(
        "from",
        &filters.from,
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date"),
    )?;
    let to = day(
        "to",
        &filters.to,
        NaiveDate::from_ymd_opt(2105, 12, 31).expect("a date"),
    )?;
    // Only a range the caller wrote both ends of can be backwards; one end past the other's
    // default is an empty range.
    if from > to && filters.from.is_some() && filters.to.is_some() {
        return Err(Problem::field("from", "must not be after `to`"));
    }
    Ok(Range { from, to })
}

fn dimension<'a>(filters: &Filters, allowed: &[(&'a str, &'a str)], default: &str) -> Result<&'a str, Problem> {
    let by = filters.by.as_deref().unwrap_or(default);
    allowed
        .iter()
        .find(|(name, _)| *name == by)
        .map(|(_, column)| *column)
        .ok_or_else(|| {
            Problem::field(
                "by",
                format!(
                    "must be one of {}",
                    allowed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )
        })
}

fn unavailable(error: &clickhouse::error::Error) -> Problem {
    Problem::unavailable("The analytics store is unavailable; retry shortly", error)
}

/// Whether the analytics store's generation marker says it caught up with the log (`None`: it has
/// no marker).
async fn clickhouse_complete(client: &clickhouse::Client) -> Result<Option<bool>, clickhouse::error::Error> {
    let (_, complete, rows): (String, u8, u64) = client
        .query(platform::read_models::CLICKHOUSE_MARKER)
        .fetch_one()
        .await?;
    Ok((rows > 0).then_some(complete == 1))
}

/// The figures, once the store is known to be complete (asked after the read: figures from a
/// store that is being rebuilt would undercount, so they are 503, not an answer).
async fn answer(state: &AppState, body: Value) -> Result<Response, Problem> {
    match clickhouse_complete(&state.clickhouse).await {
        Ok(Some(true)) => {}
        Ok(_) => {
            metrics::counter!("vaxtrail_query_untrusted_reads_total", "store" => "clickhouse").increment(1);
            return Err(Problem::unavailable(
                "The analytics store is being rebuilt from the log; retry shortly",
                &"the store's generation marker is not complete",
            ));
        }
        Err(error) => return Err(unavailable(&error)),
    }
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=30"),
    );
    Ok(response)
}

/// `GET /v1/analytics/doses?by=day|vaccine|dose|state|district|gender|ageBand&from&to&programme`:
/// doses given (recorded vaccinations).
pub async fn doses(
    State(state): State<Arc<AppState>>,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, Problem> {
    let filters = query(filters)?;
    let range = range(&filters)?;
    let column = dimension(&filters, &DOSES_BY, "day")?;
    let sql = format!(
        "SELECT {column} AS key, toUInt64(sum(n)) AS doses FROM (
             SELECT vaccination_date, vaccine, dose, state, district, gender, age_band,
                    uniqExactMerge(events) AS n
             FROM daily_vaccinations
             WHERE event_type = 'VaccinationRecorded' AND vaccination_date BETWEEN toDate(?) AND toDate(?)
               AND (? = '' OR programme = ?)
             GROUP BY vaccination_date, programme, event_type, vaccine, dose, state, district, gender, age_band)
         GROUP BY key ORDER BY key"
    );
    let programme = filters.programme.clone().unwrap_or_default();
    let rows: Vec<(String, u64)> = state
        .clickhouse
        .query(&sql)
        .bind(range.from.to_string())
        .bind(range.to.to_string())
        .bind(&programme)
        .bind(&programme)
        .fetch_all()
        .await
        .map_err(|e| unavailable(&e))?;
    let total: u64 = rows.iter().map(|(_, n)| n).sum();
    answer(
        &state,
        json!({
            "by": filters.by.as_deref().unwrap_or("day"),
            "total": total,
            "series": rows.iter().map(|(key, n)| json!({"key": key, "doses": n})).collect::<Vec<_>>(),
        }),
    )
    .await
}

/// `GET /v1/analytics/certificates?by=outcome|day|rule&from&to`: issued / superseded / revoked /
/// rejected (by rule).
pub async fn certificates(
    State(state): State<Arc<AppState>>,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, Problem> {
    let filters = query(filters)?;
    let range = range(&filters)?;
    let column = dimension(&filters, &CERTIFICATES_BY, "outcome")?;
    let sql = format!(
        "SELECT {column} AS key, toUInt64(sum(n)) AS outcomes FROM (
             SELECT day, outcome, rule, uniqExactMerge(outcomes) AS n FROM daily_outcomes
             WHERE day BETWEEN toDate(?) AND toDate(?) GROUP BY day, outcome, rule)
         GROUP BY key ORDER BY key"
    );
    let rows: Vec<(String, u64)> = state
        .clickhouse
        .query(&sql)
        .bind(range.from.to_string())
        .bind(range.to.to_string())
        .fetch_all()
        .await
        .map_err(|e| unavailable(&e))?;
    answer(
        &state,
        json!({
            "by": filters.by.as_deref().unwrap_or("outcome"),
            "series": rows.iter().map(|(key, n)| json!({"key": key, "certificates": n})).collect::<Vec<_>>(),
        }),
    )
    .await
}

/// `GET /v1/analytics/signing-latency?from&to`: percentiles of (outcome time − event time) of
/// issued certificates, in milliseconds.
pub async fn signing_latency(
    State(state): State<Arc<AppState>>,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, Problem> {
    let filters = query(filters)?;
    let range = range(&filters)?;
    if filters.by.is_some() || filters.programme.is_some() {
        return Err(Problem::field("by", "signing latency takes only from and to"));
    }
    let (count, p50, p90, p99, max): (u64, f64, f64, f64, u64) = state
        .clickhouse
        .query(
            "SELECT count(), toFloat64(quantileExact(0.5)(signing_latency_ms)),
                    toFloat64(quantileExact(0.9)(signing_latency_ms)),
                    toFloat64(quantileExact(0.99)(signing_latency_ms)), max(signing_latency_ms)
             FROM certificate_outcomes FINAL
             WHERE outcome = 'issued' AND toDate(decided_at) BETWEEN toDate(?) AND toDate(?)",
        )
        .bind(range.from.to_string())
        .bind(range.to.to_string())
        .fetch_one()
        .await
        .map_err(|e| unavailable(&e))?;
    answer(
        &state,
        json!({
            "certificates": count,
            "p50Ms": p50, "p90Ms": p90, "p99Ms": p99, "maxMs": max,
        }),
    )
    .await
}

/// `GET /v1/pipeline/lag`: records each projection has still to apply, per topic.
pub async fn lag(State(state): State<Arc<AppState>>) -> Result<Response, Problem> {
    let topics = vec![
        state.topics.vaccination_events.clone(),
        state.topics.certificate_events.clone(),
    ];
    let (consumer, partitions, asked) = (state.watermarks.clone(), state.partitions, topics.clone());
    let ends = tokio::task::spawn_blocking(move || -> Result<Vec<(String, i64)>, String> {
        let mut ends = Vec::new();
        for topic in asked {
            let mut sum = 0;
            for partition in 0..partitions as i32 {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(3))
                    .map_err(|e| e.to_string())?;
                sum += high;
            }
            ends.push((topic, sum));
        }
        Ok(ends)
    })
    .await
    .map_err(|e| Problem::unavailable("The event log is unavailable", &e))?
    .map_err(|e| Problem::unavailable("The event log is unavailable", &e))?;

    let mut projections = serde_json::Map::new();
    let mut complete = serde_json::Map::new();
    let stored = state.store.stored_offsets().await;
    let clickhouse: Result<Vec<(String, i64)>, _> = state
        .clickhouse
        .query(
            "SELECT topic, toInt64(sum(next_offset)) FROM projection_positions FINAL
             WHERE generation = (SELECT argMax(generation, at) FROM projection_generation) GROUP BY topic",
        )
        .fetch_all()
        .await;
    let clickhouse_marker = clickhouse_complete(&state.clickhouse).await.map_err(|e| e.to_string());
    for (name, marker) in [
        ("postgres", &stored.postgres_complete),
        ("redis", &stored.redis_complete),
        ("clickhouse", &clickhouse_marker),
    ] {
        // true: caught up with the log once and trusted; false: rebuilding from the log (or no
        // marker yet); null: the store cannot say.
        let value = match marker {
            Ok(found) => json!(found.unwrap_or(false)),
            Err(_) => Value::Null,
        };
        complete.insert(name.to_owned(), value);
    }
    for (name, offsets) in [
        ("postgres", stored.postgres),
        ("redis", stored.redis),
        ("clickhouse", clickhouse.map_err(|e| e.to_string())),
    ] {
        let value = match offsets {
            Ok(offsets) => {
                let behind: serde_json::Map<String, Value> = ends
                    .iter()
                    .map(|(topic, end)| {
                        let done = offsets.iter().find(|(t, _)| t == topic).map_or(0, |(_, n)| *n);
                        (topic.clone(), json!((end - done).max(0)))
                    })
                    .collect();
                Value::Object(behind)
            }
            Err(error) => json!({ "unavailable": error }),
        };
        projections.insert(name.to_owned(), value);
    }
    let mut response = Json(json!({
        "ends": ends.iter().map(|(t, n)| (t.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "behind": projections,
        "complete": complete,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}
