//! `vaxctl replay`: rebuilds a projection from the log beside the live one, then swaps it in
//! (`projectors::rebuild` says how); with `--at`, builds a point-in-time copy and does not swap.
//! This file is the arguments and the report.

use std::time::Instant;

use chrono::{DateTime, FixedOffset, Utc};
use clap::Args;
use indicatif::ProgressBar;
use platform::{ClickHouseArgs, KafkaArgs, PostgresArgs, RedisArgs};
use projectors::{
    Kind,
    rebuild::{self, ClickHouseStore, Plan, PostgresStore, RedisStore, Report},
    replay::Source,
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
    #[command(flatten)]
    environment: platform::EnvironmentArgs,
    /// The key store that opens sealed personal data (an erased recipient's records are skipped).
    #[command(flatten)]
    keystore: platform::keystore::KeystoreArgs,
}

/// The terminal's view of a replay: a line, then a progress bar.
struct Terminal {
    json: bool,
    point_in_time: bool,
    bar: std::cell::RefCell<Option<ProgressBar>>,
    name: &'static str,
}

impl rebuild::Progress for Terminal {
    fn start(&self, target: &str, total: u64, resumed_from: u64) {
        if !self.json {
            let what = if self.point_in_time {
                "point-in-time copy"
            } else {
                "shadow"
            };
            let resumed = if resumed_from > 0 {
                format!(" (resuming: {resumed_from} applied by an earlier run)")
            } else {
                String::new()
            };
            println!("replaying {total} records into the {what} {target}{resumed}");
        }
        *self.bar.borrow_mut() = Some(progress(total as usize, self.name, self.json));
    }

    fn applied(&self, records: u64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.inc(records);
        }
    }

    fn finished(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

pub async fn run(kafka: &KafkaArgs, args: &ReplayArgs) -> anyhow::Result<()> {
    let topics = kafka.topics();
    let source = Source {
        brokers: kafka.brokers.clone(),
        registry_url: kafka.schema_registry_url.clone(),
        vaccination_events: topics.vaccination_events,
        certificate_events: topics.certificate_events,
        keys: args.keystore.open(&args.environment)?,
    };
    let plan = Plan {
        at: args.at.map(|at| at.with_timezone(&Utc)),
        batch_size: args.batch_size,
    };
    let terminal = |name| Terminal {
        json: args.json,
        point_in_time: args.at.is_some(),
        bar: std::cell::RefCell::new(None),
        name,
    };
    let started = Instant::now();
    let report = match args.projection {
        Kind::Postgres => {
            let store = PostgresStore(args.postgres.clone());
            rebuild::replay(&source, &store, &plan, &terminal("postgres")).await?
        }
        Kind::Redis => {
            let store = RedisStore(args.redis.clone());
            rebuild::replay(&source, &store, &plan, &terminal("redis")).await?
        }
        Kind::Clickhouse => {
            let store = ClickHouseStore(args.clickhouse.clone());
            rebuild::replay(&source, &store, &plan, &terminal("clickhouse")).await?
        }
    };
    print(args, &report, started.elapsed().as_secs_f64());
    Ok(())
}

fn print(args: &ReplayArgs, report: &Report, total_seconds: f64) {
    let records = report.shadow.records;
    let rate = records as f64 / report.seconds.max(1e-9);
    let swap = report.swapped.as_ref();
    if args.json {
        println!(
            "{}",
            json!({
                "projection": format!("{:?}", args.projection).to_lowercase(),
                "target": report.target,
                "swapped": swap.is_some(),
                "records": records,
                "skipped": report.shadow.skipped,
                "resumedFrom": report.resumed_from,
                "seconds": report.seconds,
                "eventsPerSecond": rate,
                "swapMillis": swap.map(|s| s.swap_ms),
                "caughtUp": swap.map(|s| s.caught_up),
                "totalSeconds": total_seconds,
            })
        );
        return;
    }
    println!(
        "replayed {records} records ({} undecodable, skipped) in {:.1} s: {rate:.0} events/s",
        report.shadow.skipped, report.seconds
    );
    match swap {
        Some(swap) => println!(
            "swapped {} in ({} ms), then applied {} records appended meanwhile; the old one is dropped",
            report.target, swap.swap_ms, swap.caught_up
        ),
        None => println!(
            "the copy as of {} is in {}; the live projection is unchanged",
            args.at.map(|a| a.to_rfc3339()).unwrap_or_default(),
            report.target
        ),
    }
}
