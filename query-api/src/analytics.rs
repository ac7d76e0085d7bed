//! Analytics from ClickHouse for the dashboard: doses by day, vaccine, dose number, place, gender
//! and age band; certificate outcomes; signing latency percentiles; and the pipeline's live lag
//! (each projection's stored offsets against the topics' high watermarks). Counts come from the
//! materialized daily aggregates, which keep distinct event ids, so a redelivery never counts
//! twice. Public: nothing here names a person, and no public answer singles one out: a breakdown's
//! cells counting fewer than `VAXTRAIL_ANALYTICS_MIN_CELL` (default 10) are withheld, their sum
//! given only when it is itself at least that and the total only when it cannot reveal a withheld
//! count (`suppress`). A `monitoring` (or `admin`) token reads every cell.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
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
pub const DOSES_BY: [(&str, &str); 9] = [
    ("day", "toString(vaccination_date)"),
    ("vaccine", "vaccine"),
    ("dose", "toString(dose)"),
    ("state", "state"),
    ("district", "concat(state, ' / ', district)"),
    ("gender", "gender"),
    ("ageBand", "age_band"),
    ("facility", "facility"),
    ("vaccinator", "vaccinator"),
];

/// The groupings counted from the recorded vaccinations themselves (the daily aggregates do not
/// keep facility or vaccinator). A vaccinator is a person: only the monitoring role sees them.
const FROM_RECORDS: [&str; 2] = ["facility", "vaccinator"];

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
async fn answer(state: &AppState, body: Value, full: bool) -> Result<Response, Problem> {
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
    // The unsuppressed answer is the monitoring role's: never kept by a shared cache.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(if full {
            "private, no-store"
        } else {
            "public, max-age=30"
        }),
    );
    Ok(response)
}

/// Whether the caller reads every cell: a token whose role may (`monitoring`, `admin`). No token
/// is the public; a token that does not verify, or whose role may not, is refused rather than
/// quietly answered as the public.
async fn full_breakdown(state: &AppState, headers: &HeaderMap) -> Result<bool, Problem> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(false);
    }
    crate::access::caller_for(&state.auth, headers, crate::access::Route::FullAnalytics).await?;
    Ok(true)
}

/// A public breakdown: the cells counting at least `min`, the withheld ones' number, their sum
/// when it is at least `min` (else `null`), and the total when it cannot reveal a withheld count
/// (no cell withheld, or their sum shown). Every number it gives is 0 or at least `min`, and none
/// can be subtracted from another to give a withheld cell's count.
pub fn suppress(rows: &[(String, u64)], min: u64) -> (Vec<(String, u64)>, Value, Option<u64>) {
    let (shown, withheld): (Vec<_>, Vec<_>) = rows.iter().cloned().partition(|(_, n)| *n >= min);
    let hidden: u64 = withheld.iter().map(|(_, n)| n).sum();
    let visible: u64 = shown.iter().map(|(_, n)| n).sum();
    // One withheld cell whose sum is shown would be the cell itself.
    let sum_shown = withheld.len() >= 2 && hidden >= min;
    let total = (withheld.is_empty() || sum_shown).then_some(visible + hidden);
    let summary = json!({
        "threshold": min,
        "cells": withheld.len(),
        "count": if sum_shown { json!(hidden) } else { Value::Null },
    });
    (shown, summary, total)
}

/// `GET /v1/analytics/doses?by=day|vaccine|dose|state|district|gender|ageBand|facility|vaccinator&from&to&programme`:
/// doses given (recorded vaccinations). By vaccinator: the monitoring role only.
pub async fn doses(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, Problem> {
    let full = full_breakdown(&state, &headers).await?;
    let filters = query(filters)?;
    let range = range(&filters)?;
    let column = dimension(&filters, &DOSES_BY, "day")?;
    let by = filters.by.as_deref().unwrap_or("day");
    if by == "vaccinator" && !full {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "monitoring-role-needed",
            "Doses by vaccinator name people: send a token with the monitoring role",
        ));
    }
    let sql = if FROM_RECORDS.contains(&by) {
        // Each event once, however often a redelivery wrote its row.
        format!(
            "SELECT {column} AS key, toUInt64(uniqExact(event_id)) AS doses FROM vaccinations
             WHERE event_type = 'VaccinationRecorded' AND vaccination_date BETWEEN toDate(?) AND toDate(?)
               AND (? = '' OR programme = ?)
             GROUP BY key ORDER BY key"
        )
    } else {
        format!(
            "SELECT {column} AS key, toUInt64(sum(n)) AS doses FROM (
                 SELECT vaccination_date, vaccine, dose, state, district, gender, age_band,
                        uniqExactMerge(events) AS n
                 FROM daily_vaccinations
                 WHERE event_type = 'VaccinationRecorded' AND vaccination_date BETWEEN toDate(?) AND toDate(?)
                   AND (? = '' OR programme = ?)
                 GROUP BY vaccination_date, programme, event_type, vaccine, dose, state, district, gender, age_band)
             GROUP BY key ORDER BY key"
        )
    };
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
    let (rows, suppressed, total) = if full {
        let total = rows.iter().map(|(_, n)| n).sum();
        (rows, Value::Null, Some(total))
    } else {
        suppress(&rows, state.analytics_min_cell)
    };
    answer(
        &state,
        json!({
            "by": filters.by.as_deref().unwrap_or("day"),
            "total": total,
            "series": rows.iter().map(|(key, n)| json!({"key": key, "doses": n})).collect::<Vec<_>>(),
            "suppressed": suppressed,
        }),
        full,
    )
    .await
}

/// `GET /v1/analytics/certificates?by=outcome|day|rule&from&to`: issued / superseded / revoked /
/// rejected (by rule).
pub async fn certificates(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    filters: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, Problem> {
    let full = full_breakdown(&state, &headers).await?;
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
    let (rows, suppressed) = if full {
        (rows, Value::Null)
    } else {
        let (rows, suppressed, _) = suppress(&rows, state.analytics_min_cell);
        (rows, suppressed)
    };
    answer(
        &state,
        json!({
            "by": filters.by.as_deref().unwrap_or("outcome"),
            "series": rows.iter().map(|(key, n)| json!({"key": key, "certificates": n})).collect::<Vec<_>>(),
            "suppressed": suppressed,
        }),
        full,
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
        false,
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

#[cfg(test)]
mod tests {
    use super::suppress;

    fn rows(counts: &[u64]) -> Vec<(String, u64)> {
        counts.iter().enumerate().map(|(i, n)| (format!("d{i}"), *n)).collect()
    }

    #[test]
    fn no_public_number_reveals_a_cell_under_the_threshold() {
        // Nothing small: everything shown, with the total.
        let (shown, summary, total) = suppress(&rows(&[10, 25]), 10);
        assert_eq!((shown.len(), total, summary["cells"].as_u64()), (2, Some(35), Some(0)));
        // One small cell: withheld, and the total too (35 - 25 would be that cell).
        let (shown, summary, total) = suppress(&rows(&[1, 25]), 10);
        assert_eq!((shown.len(), total), (1, None));
        assert_eq!((summary["cells"].as_u64(), summary["count"].is_null()), (Some(1), true));
        // Small cells summing to at least the threshold: their sum and the total are shown.
        let (shown, summary, total) = suppress(&rows(&[4, 9, 30]), 10);
        assert_eq!((shown.len(), total, summary["count"].as_u64()), (1, Some(43), Some(13)));
        // Small cells summing under it: neither their sum nor the total.
        let (_, summary, total) = suppress(&rows(&[2, 3, 30]), 10);
        assert_eq!((total, summary["count"].is_null()), (None, true));
        // Every number given is 0 or at least the threshold.
        for counts in [[1_u64, 2, 3, 50], [9, 9, 9, 9], [0, 10, 11, 1]] {
            let (shown, summary, total) = suppress(&rows(&counts), 10);
            let mut given: Vec<u64> = shown.iter().map(|(_, n)| *n).collect();
            given.extend(summary["count"].as_u64());
            given.extend(total);
            assert!(given.iter().all(|n| *n == 0 || *n >= 10), "{counts:?}: {given:?}");
        }
    }
}
