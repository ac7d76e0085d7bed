//! Rebuilding a read model from the log beside the live one, then swapping it in: each store
//! says how its shadow is named, created and swapped ([`Rebuild`]); [`replay`] does the rest the
//! same way for all three.
//!
//! 1. The shadow (schema `<schema>_replay`, key prefix `replay:<prefix>`, database
//!    `<database>_replay`) is created if missing and brought from what it stored (nothing, at
//!    first) to the partitions' high watermarks, read when the replay starts. The live projection
//!    keeps serving and projecting meanwhile. Interrupted, the shadow keeps what it applied with
//!    its offsets, so the next run resumes.
//! 2. The swap is atomic: one Postgres transaction renames the schemas and drops the old one; one
//!    Redis script replaces the projection's keys; one ClickHouse `RENAME` moves every table.
//! 3. The records appended since step 1 are applied to the swapped-in projection, from where the
//!    shadow ended. The live projector may apply some of them too: every write is idempotent and
//!    commutes with the later ones, so the outcome is the same whoever applies them first.
//!
//! A point-in-time rebuild (`at`) builds the projection as it stood then (each partition up to
//! its first record stamped later) into a copy beside the live one, and does not swap.

use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use platform::{ClickHouseArgs, PostgresArgs, RedisArgs, log::Watermarks};

use crate::{
    analytics::{self, AnalyticsProjection},
    cache::{self, RedisProjection},
    postgres::{self, PostgresProjection},
    replay::{Applied, Source, apply_spans, spans_from_stored},
    runner::Projection,
};

/// A store that can hold a shadow of its projection and swap it in.
pub trait Rebuild {
    type Projection: Projection;

    /// The shadow's name: the replay shadow, or the point-in-time copy for `at`.
    fn shadow_name(&self, at: Option<DateTime<Utc>>) -> String;

    /// Creates the shadow store if missing; the projection writing into it.
    fn shadow(&self, name: &str) -> impl Future<Output = anyhow::Result<Self::Projection>> + Send;

    /// The live projection.
    fn live(&self) -> anyhow::Result<Self::Projection>;

    /// Puts the shadow in the live one's place, atomically for readers.
    fn swap_in(&self, shadow: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A point-in-time copy's name suffix.
fn stamp(at: DateTime<Utc>) -> String {
    at.format("at_%Y%m%dt%H%M%Sz").to_string()
}

/// The Postgres read model: shadows are schemas.
pub struct PostgresStore(pub PostgresArgs);

impl Rebuild for PostgresStore {
    type Projection = PostgresProjection;

    fn shadow_name(&self, at: Option<DateTime<Utc>>) -> String {
        let live = &self.0.schema;
        at.map_or_else(|| format!("{live}_replay"), |at| format!("{live}_{}", stamp(at)))
    }

    async fn shadow(&self, name: &str) -> anyhow::Result<PostgresProjection> {
        postgres::valid_schema(name)?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {name}")))
            .execute(&self.0.pool()?)
            .await
            .context("creating the shadow schema")?;
        let args = PostgresArgs {
            schema: name.to_owned(),
            ..self.0.clone()
        };
        Ok(PostgresProjection::new(args.pool()?))
    }

    fn live(&self) -> anyhow::Result<PostgresProjection> {
        Ok(PostgresProjection::new(self.0.pool()?))
    }

    async fn swap_in(&self, shadow: &str) -> anyhow::Result<()> {
        postgres::swap_schemas(&self.0.pool()?, &self.0.schema, shadow).await
    }
}

/// The Redis cache: shadows are key prefixes.
pub struct RedisStore(pub RedisArgs);

impl Rebuild for RedisStore {
    type Projection = RedisProjection;

    fn shadow_name(&self, at: Option<DateTime<Utc>>) -> String {
        let live = &self.0.key_prefix;
        at.map_or_else(
            || format!("replay:{live}"),
            |at| format!("{}:{live}", stamp(at).replace('_', "-")),
        )
    }

    async fn shadow(&self, name: &str) -> anyhow::Result<RedisProjection> {
        Ok(RedisProjection::new(self.0.client()?, name))
    }

    fn live(&self) -> anyhow::Result<RedisProjection> {
        Ok(RedisProjection::new(self.0.client()?, &self.0.key_prefix))
    }

    async fn swap_in(&self, shadow: &str) -> anyhow::Result<()> {
        cache::swap_prefixes(&self.0.client()?, &self.0.key_prefix, shadow)
            .await
            .map(|_| ())
    }
}

/// The ClickHouse analytics: shadows are databases.
pub struct ClickHouseStore(pub ClickHouseArgs);

impl ClickHouseStore {
    fn admin(&self) -> clickhouse::Client {
        ClickHouseArgs {
            database: "default".into(),
            ..self.0.clone()
        }
        .client()
    }
}

impl Rebuild for ClickHouseStore {
    type Projection = AnalyticsProjection;

    fn shadow_name(&self, at: Option<DateTime<Utc>>) -> String {
        let live = &self.0.database;
        at.map_or_else(|| format!("{live}_replay"), |at| format!("{live}_{}", stamp(at)))
    }

    async fn shadow(&self, name: &str) -> anyhow::Result<AnalyticsProjection> {
        analytics::valid_database(name)?;
        let admin = self.admin();
        admin
            .query(&format!("CREATE DATABASE IF NOT EXISTS {name}"))
            .execute()
            .await
            .context("creating the shadow database")?;
        Ok(AnalyticsProjection::new(admin.with_database(name), name))
    }

    fn live(&self) -> anyhow::Result<AnalyticsProjection> {
        Ok(AnalyticsProjection::new(self.0.client(), &self.0.database))
    }

    async fn swap_in(&self, shadow: &str) -> anyhow::Result<()> {
        analytics::swap_databases(&self.admin(), &self.0.database, shadow).await
    }
}

/// What to rebuild.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Build the read model as it stood at this time, into a copy; no swap.
    pub at: Option<DateTime<Utc>>,
    /// Records per batch.
    pub batch_size: usize,
}

/// Told how a replay goes (a progress bar; nothing for a test).
pub trait Progress {
    /// The shadow is about to take `total` records; `resumed_from` were applied by an earlier run.
    fn start(&self, _target: &str, _total: u64, _resumed_from: u64) {}
    fn applied(&self, _records: u64) {}
    fn finished(&self) {}
}

impl Progress for () {}

/// What the swap did.
#[derive(Clone, Debug)]
pub struct Swapped {
    pub swap_ms: u128,
    /// Records appended during the replay, applied after the swap.
    pub caught_up: u64,
}

/// What a replay did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The shadow's (or copy's) name.
    pub target: String,
    pub shadow: Applied,
    pub resumed_from: u64,
    /// Seconds the shadow took.
    pub seconds: f64,
    /// `None` for a point-in-time copy.
    pub swapped: Option<Swapped>,
}

/// Rebuilds the store's shadow, then (without `at`) swaps it in and brings it up to date.
pub async fn replay<S: Rebuild>(
    source: &Source,
    store: &S,
    plan: &Plan,
    progress: &impl Progress,
) -> anyhow::Result<Report> {
    let target = store.shadow_name(plan.at);
    let shadow = store.shadow(&target).await?;
    shadow.prepare().await.context("preparing the shadow")?;
    let marks = watermarks(source).await?;
    let spans = spans_from_stored(&shadow, &marks).await?;
    let resumed_from: u64 = spans
        .iter()
        .zip(&marks)
        .map(|(span, mark)| (span.from - mark.low).max(0) as u64)
        .sum();
    progress.start(&target, spans.iter().map(|s| s.len()).sum(), resumed_from);
    let started = Instant::now();
    let until = plan.at.map(|at| at.timestamp_millis());
    let applied = apply_spans(source, &shadow, spans, until, plan.batch_size, |n| progress.applied(n)).await?;
    progress.finished();
    let seconds = started.elapsed().as_secs_f64();
    let swapped = match plan.at {
        Some(_) => None,
        None => {
            // Caught up with the log as it stood when the replay began: readers may trust it once
            // it is swapped in (a point-in-time copy never is).
            shadow
                .complete(&applied.generation)
                .await
                .context("marking the shadow complete")?;
            Some(swap(source, store, &target, ends(&marks, &applied), plan.batch_size).await?)
        }
    };
    Ok(Report {
        target,
        shadow: applied,
        resumed_from,
        seconds,
        swapped,
    })
}

/// Where the shadow ended, per partition.
fn ends(marks: &[Watermarks], applied: &Applied) -> Vec<(String, i32, i64)> {
    marks
        .iter()
        .map(|m| {
            let end = applied
                .ends
                .get(&(m.topic.clone(), m.partition))
                .copied()
                .unwrap_or(m.high);
            (m.topic.clone(), m.partition, end)
        })
        .collect()
}

/// Swaps the shadow in, then applies what was appended since the shadow's end.
async fn swap<S: Rebuild>(
    source: &Source,
    store: &S,
    shadow: &str,
    ends: Vec<(String, i32, i64)>,
    batch_size: usize,
) -> anyhow::Result<Swapped> {
    let started = Instant::now();
    store.swap_in(shadow).await.context("swapping the shadow in")?;
    let swap_ms = started.elapsed().as_millis();
    let marks = watermarks(source).await?;
    let spans = marks
        .iter()
        .map(|m| {
            let from = ends
                .iter()
                .find(|(t, p, _)| *t == m.topic && *p == m.partition)
                .map_or(m.low, |(_, _, end)| *end);
            platform::log::Span {
                topic: m.topic.clone(),
                partition: m.partition,
                from,
                to: m.high,
            }
        })
        .collect();
    let caught_up = apply_spans(source, &store.live()?, spans, None, batch_size, |_| {})
        .await
        .context("applying what was appended during the replay")?
        .records;
    Ok(Swapped { swap_ms, caught_up })
}

async fn watermarks(source: &Source) -> anyhow::Result<Vec<Watermarks>> {
    let topics = [source.vaccination_events.clone(), source.certificate_events.clone()];
    platform::log::watermarks_async(&source.brokers, &topics).await
}
