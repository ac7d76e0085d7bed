//! `vaxctl bench backup`: backs the event topics up into a scratch directory, then, in the same
//! run, reads the same partitions with a bare consumer that keeps nothing (the broker's ceiling).
//! Prints MB/s of log (keys, values, headers) for both and their ratio.

use std::time::Instant;

use clap::Args;
use platform::{
    KafkaArgs,
    log::{Span, Watermarks},
};
use rdkafka::{Message, message::Headers};
use serde_json::json;

use vaxctl::backup;

/// `vaxctl bench backup` arguments.
#[derive(Clone, Debug, Args)]
pub struct BackupBenchArgs {
    /// Topics to back up, without the topic prefix (default: those `vaxctl backup` takes).
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

pub async fn run(kafka: &KafkaArgs, args: &BackupBenchArgs) -> anyhow::Result<()> {
    let names = if args.topics.is_empty() {
        backup::default_topics()
    } else {
        args.topics.clone()
    };
    let dir = std::env::temp_dir().join(format!("vaxtrail-bench-backup-{}", uuid::Uuid::new_v4().simple()));
    let taken = backup::take(kafka, &names, &dir, args.json).await;
    let _ = std::fs::remove_dir_all(&dir);
    let taken = taken?;

    // The baseline: the same partitions read to their ends, nothing kept.
    let full: Vec<String> = names
        .iter()
        .map(|n| backup::full_name(&kafka.topic_prefix, n))
        .collect();
    let brokers = kafka.brokers.clone();
    let (read_records, read_bytes, read_seconds) = tokio::task::spawn_blocking(move || {
        let spans: Vec<Span> = platform::log::watermarks(&brokers, &full)?
            .iter()
            .map(Watermarks::span)
            .collect();
        let started = Instant::now();
        let (mut records, mut bytes) = (0_u64, 0_u64);
        platform::log::read_spans(&brokers, &spans, None, 1000, |batch| {
            for message in &batch {
                records += 1;
                let headers: usize = message.headers().map_or(0, |h| {
                    h.iter()
                        .map(|header| header.key.len() + header.value.map_or(0, <[u8]>::len))
                        .sum()
                });
                bytes +=
                    (message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len) + headers) as u64;
            }
            true
        })?;
        anyhow::Ok((records, bytes, started.elapsed().as_secs_f64()))
    })
    .await??;

    let backup_rate = taken.log_bytes as f64 / 1e6 / taken.seconds;
    let read_rate = read_bytes as f64 / 1e6 / read_seconds;
    let ratio = backup_rate / read_rate;
    if args.json {
        println!(
            "{}",
            json!({
                "backup": { "records": taken.records, "files": taken.files, "logBytes": taken.log_bytes,
                            "fileBytes": taken.file_bytes, "seconds": taken.seconds, "megabytesPerSecond": backup_rate },
                "bareRead": { "records": read_records, "bytes": read_bytes, "seconds": read_seconds, "megabytesPerSecond": read_rate },
                "ratio": ratio,
            })
        );
    } else {
        println!(
            "backup     {:>9} records {:>8.1} MB of log in {:>6.1} s: {backup_rate:>7.2} MB/s ({:.1} MB of files)",
            taken.records,
            taken.log_bytes as f64 / 1e6,
            taken.seconds,
            taken.file_bytes as f64 / 1e6
        );
        println!(
            "bare read  {read_records:>9} records {:>8.1} MB        in {read_seconds:>6.1} s: {read_rate:>7.2} MB/s",
            read_bytes as f64 / 1e6
        );
        println!("ratio      {ratio:.2} of the bare read");
    }
    Ok(())
}
