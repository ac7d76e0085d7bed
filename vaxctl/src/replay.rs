//! `vaxctl replay`: rebuilds a projection from the log beside the live one, then swaps it in.
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
//! `--at <time>` builds the projection as it stood at that time (each partition up to its first
//! record stamped later) into a point-in-time copy beside the live one, and does not swap.

use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, FixedOffset, Utc};
use clap::Args;
use platform::{ClickHouseArgs, KafkaArgs, PostgresArgs, RedisArgs, log::Watermarks};
use projectors::{
    Kind,
    analytics::{self, AnalyticsProjection},
    cache::{self, RedisProjection},
    postgres::{self, PostgresProjection},
    replay::{Applied, Source, apply_spans, spans_from_stored},
    runner::Projection,
};
use serde_json::json;

use crate::bench::progress;

/// `vaxctl replay` arguments.
#[derive(Clone, Debug, Args)]
pub struct ReplayArgs {
    /// The read model to rebuild.
    #[arg(long, value_enum)]
    projection: Kind,
    /// Where the rebuild starts: the first record of every partition.
    #[arg(long, default_value = "earliest", value_parser = ["earliest"])]
    from: String,
    /// Build the read model as it stood at this time (RFC 3339) into a copy beside the live one;
    /// the live one is left as it is.
    #[arg(long)]
    at: Option<DateTime<FixedOffset>>,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Print one JSON object instead of lines and a progress bar.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    postgres: PostgresArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
}

/// What a rebuild did.
struct Rebuilt {
    target: String,
    marks: Vec<Watermarks>,
    resumed_from: u64,
    shadow: Applied,
    seconds: f64,
}

impl ReplayArgs {
    /// The suffix of a point-in-time copy's name.
    fn stamp(&self) -> Option<String> {
        self.at
            .map(|at| at.with_timezone(&Utc).format("at_%Y%m%dt%H%M%Sz").to_string())
    }
}

pub async fn run(kafka: &KafkaArgs, args: &ReplayArgs) -> anyhow::Result<()> {
    let topics = kafka.topics();
    let source = Source {
        brokers: kafka.brokers.clone(),
        registry_url: kafka.schema_registry_url.clone(),
        vaccination_events: topics.vaccination_events,
        certificate_events: topics.certificate_events,
    };
    let started = Instant::now();
    let (rebuilt, swap) = match args.projection {
        Kind::Postgres => {
            let live = args.postgres.schema.clone();
            let shadow = match args.stamp() {
                Some(stamp) => format!("{live}_{stamp}"),
                None => format!("{live}_replay"),
            };
            postgres::valid_schema(&shadow)?;
            let admin = args.postgres.pool()?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {shadow}")))
                .execute(&admin)
                .await
                .context("creating the shadow schema")?;
            let pool = PostgresArgs {
                schema: shadow.clone(),
                ..args.postgres.clone()
            }
            .pool()?;
            replay_into(
                &source,
                args,
                (&PostgresProjection::new(pool), shadow.clone()),
                &PostgresProjection::new(args.postgres.pool()?),
                async { postgres::swap_schemas(&admin, &live, &shadow).await },
            )
            .await?
        }
        Kind::Redis => {
            let live = args.redis.key_prefix.clone();
            let shadow = match args.stamp() {
                Some(stamp) => format!("{}:{live}", stamp.replace('_', "-")),
                None => format!("replay:{live}"),
            };
            let client = args.redis.client()?;
            replay_into(
                &source,
                args,
                (&RedisProjection::new(client.clone(), &shadow), shadow.clone()),
                &RedisProjection::new(client.clone(), &live),
                async { cache::swap_prefixes(&client, &live, &shadow).await.map(|_| ()) },
            )
            .await?
        }
        Kind::Clickhouse => {
            let live = args.clickhouse.database.clone();
            let shadow = match args.stamp() {
                Some(stamp) => format!("{live}_{stamp}"),
                None => format!("{live}_replay"),
            };
            analytics::valid_database(&shadow)?;
            let admin = ClickHouseArgs {
                database: "default".into(),
                ..args.clickhouse.clone()
            }
            .client();
            admin
                .query(&format!("CREATE DATABASE IF NOT EXISTS {shadow}"))
                .execute()
                .await
                .context("creating the shadow database")?;
            let shadow_client = admin.clone().with_database(&shadow);
            replay_into(
                &source,
                args,
                (&AnalyticsProjection::new(shadow_client, &shadow), shadow.clone()),
                &AnalyticsProjection::new(args.clickhouse.client(), &live),
                async { analytics::swap_databases(&admin, &live, &shadow).await },
            )
            .await?
        }
    };
    report(args, &rebuilt, swap, started.elapsed().as_secs_f64());
    Ok(())
}

impl Rebuilt {
    /// Where the shadow ended, per partition.
    fn ends(&self) -> Vec<(String, i32, i64)> {
        self.marks
            .iter()
            .map(|m| {
                let end = self
                    .shadow
                    .ends
                    .get(&(m.topic.clone(), m.partition))
                    .copied()
                    .unwrap_or(m.high);
                (m.topic.clone(), m.partition, end)
            })
            .collect()
    }
}

/// Rebuilds the shadow, then (without `--at`) swaps it in and brings it up to date. The swap
/// future runs only when awaited.
async fn replay_into<P: Projection>(
    source: &Source,
    args: &ReplayArgs,
    (shadow, target): (&P, String),
    live: &P,
    swap: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<(Rebuilt, Option<Swapped>)> {
    let rebuilt = rebuild(source, args, shadow, target).await?;
    let swapped = match args.at {
        Some(_) => None,
        None => Some(finish(source, args, rebuilt.ends(), live, swap).await?),
    };
    Ok((rebuilt, swapped))
}

/// Brings the shadow from what it stored to the high watermarks read now (or to `--at`).
async fn rebuild<P: Projection>(
    source: &Source,
    args: &ReplayArgs,
    shadow: &P,
    target: String,
) -> anyhow::Result<Rebuilt> {
    shadow.prepare().await.context("preparing the shadow")?;
    let marks = watermarks(source).await?;
    let spans = spans_from_stored(shadow, &marks).await?;
    let resumed_from: u64 = spans
        .iter()
        .zip(&marks)
        .map(|(span, mark)| (span.from - mark.low).max(0) as u64)
        .sum();
    let total: u64 = spans.iter().map(|s| s.len()).sum();
    if !args.json {
        let what = if args.at.is_some() {
            "point-in-time copy"
        } else {
            "shadow"
        };
        println!(
            "replaying {total} records into the {what} {target}{}",
            if resumed_from > 0 {
                format!(" (resuming: {resumed_from} applied by an earlier run)")
            } else {
                String::new()
            }
        );
    }
    let bar = progress(total as usize, P::NAME, args.json);
    let started = Instant::now();
    let until = args.at.map(|at| at.timestamp_millis());
    let shadow_applied = apply_spans(source, shadow, spans, until, args.batch_size, |n| bar.inc(n)).await?;
    bar.finish_and_clear();
    if until.is_none() {
        // Caught up with the log as it stood when the replay began: readers may trust it once
        // it is swapped in (a point-in-time copy never is).
        shadow
            .complete(&shadow_applied.generation)
            .await
            .context("marking the shadow complete")?;
    }
    Ok(Rebuilt {
        target,
        marks,
        resumed_from,
        shadow: shadow_applied,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the swap did.
struct Swapped {
    swap_ms: u128,
    caught_up: u64,
}

/// Swaps the shadow in, then applies what was appended since the shadow's end.
async fn finish<P: Projection>(
    source: &Source,
    args: &ReplayArgs,
    ends: Vec<(String, i32, i64)>,
    live: &P,
    swap: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Swapped> {
    let started = Instant::now();
    swap.await.context("swapping the shadow in")?;
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
    let caught_up = apply_spans(source, live, spans, None, args.batch_size, |_| {})
        .await
        .context("applying what was appended during the replay")?
        .records;
    Ok(Swapped { swap_ms, caught_up })
}

async fn watermarks(source: &Source) -> anyhow::Result<Vec<Watermarks>> {
    let topics = [source.vaccination_events.clone(), source.certificate_events.clone()];
    platform::log::watermarks_async(&source.brokers, &topics).await
}

fn report(args: &ReplayArgs, rebuilt: &Rebuilt, swap: Option<Swapped>, total_seconds: f64) {
    let records = rebuilt.shadow.records;
    let rate = records as f64 / rebuilt.seconds.max(1e-9);
    if args.json {
        println!(
            "{}",
            json!({
                "projection": format!("{:?}", args.projection).to_lowercase(),
                "target": rebuilt.target,
                "swapped": swap.is_some(),
                "records": records,
                "skipped": rebuilt.shadow.skipped,
                "resumedFrom": rebuilt.resumed_from,
                "seconds": rebuilt.seconds,
                "eventsPerSecond": rate,
                "swapMillis": swap.as_ref().map(|s| s.swap_ms),
                "caughtUp": swap.as_ref().map(|s| s.caught_up),
                "totalSeconds": total_seconds,
            })
        );
        return;
    }
    println!(
        "replayed {records} records ({} undecodable, skipped) in {:.1} s: {rate:.0} events/s",
        rebuilt.shadow.skipped, rebuilt.seconds
    );
    match swap {
        Some(swap) => println!(
            "swapped {} in ({} ms), then applied {} records appended meanwhile; the old one is dropped",
            rebuilt.target, swap.swap_ms, swap.caught_up
        ),
        None => println!(
            "the copy as of {} is in {}; the live projection is unchanged",
            args.at.map(|a| a.to_rfc3339()).unwrap_or_default(),
            rebuilt.target
        ),
    }
}
