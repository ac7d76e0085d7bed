//! `vaxctl backup`, `vaxctl backup verify` and `vaxctl restore`: a logical backup of the log,
//! taken while the system runs, that restores into an empty cluster record for record.
//!
//! A backup is a directory:
//! - `<topic>/<partition>.avro`: an Avro object container file (deflate) per partition, holding
//!   every record in offset order as `{offset, timestamp, key, value, headers}` — the value's bytes
//!   exactly as in the log (the Confluent wire format: the writer schema's id, then Avro); the
//!   container embeds its own schema;
//! - `manifest.json`: per file the record count, first and last offsets, a SHA-256 of the file and
//!   one of its records' content, the chain head of `certificate-events` partitions (the SHA-256 of
//!   the last record), and the value writer schemas by id, as the registry served them.
//!
//! It holds every person's data as the log does: the directories are created 0700 and the files
//! 0600, whatever the umask.
//!
//! The registry's own log (`_schemas`) is backed up too, so a restored registry gives every
//! schema its old id. Each partition is read up to the high watermark seen when the backup
//! started: the backup is the log as it stood then.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    io::{BufReader, BufWriter, Read as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use apache_avro::{Codec, DeflateSettings, Reader, Schema, Writer, types::Value};
use clap::{Args, Subcommand};
use futures::{StreamExt, stream};
use platform::{
    KafkaArgs,
    log::{Span, Watermarks, read_spans},
    topics::TopicSpec,
};
use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The registry's topic.
const SCHEMAS_TOPIC: &str = "_schemas";
/// The manifest's format.
const FORMAT: &str = "vaxtrail-backup/1";

/// The container files' record schema.
const RECORD_SCHEMA: &str = r#"{
  "type": "record", "name": "LogRecord", "namespace": "org.vaxtrail.backup",
  "doc": "One record of a Kafka partition, as it was in the log.",
  "fields": [
    {"name": "offset", "type": "long"},
    {"name": "timestamp", "type": ["null", "long"], "doc": "milliseconds since the epoch"},
    {"name": "key", "type": ["null", "bytes"]},
    {"name": "value", "type": ["null", "bytes"]},
    {"name": "headers", "type": {"type": "array", "items": {
      "type": "record", "name": "Header",
      "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": ["null", "bytes"]}]
    }}}
  ]
}"#;

#[derive(Subcommand)]
pub enum BackupAction {
    /// Check a backup offline: every file's SHA-256, records, offsets and chain heads.
    Verify {
        /// The backup directory.
        dir: PathBuf,
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    action: Option<BackupAction>,
    /// Directory to write (created; must be empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Topics to back up, without the topic prefix (default: the event topics, dead-letters and
    /// the registry's `_schemas`).
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Print one JSON object instead of lines and a progress bar.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long = "from")]
    from: PathBuf,
    /// Append to topics that already hold records (their offsets will not be the backup's).
    #[arg(long)]
    force: bool,
    /// Print one JSON object instead of lines and a progress bar.
    #[arg(long)]
    json: bool,
}

mod format;
mod restore;
mod take;
mod verify;

use format::*;
pub use format::{FileEntry, Manifest, TopicEntry};
pub use restore::{restore, rewrite_partition};
pub use take::{Taken, take};
use verify::{check, verify};

/// The topics a backup holds by default, without the prefix.
pub fn default_topics() -> Vec<String> {
    let catalog = platform::TopicCatalog::new("", 1);
    let mut names = catalog.names();
    names.push(SCHEMAS_TOPIC.to_owned());
    names
}

/// A topic's name in the cluster (the registry's topic has no prefix).
pub fn full_name(prefix: &str, name: &str) -> String {
    if name == SCHEMAS_TOPIC {
        name.to_owned()
    } else {
        format!("{prefix}{name}")
    }
}

pub async fn backup(kafka: &KafkaArgs, args: BackupArgs) -> anyhow::Result<()> {
    if let Some(BackupAction::Verify { dir, json }) = args.action {
        return verify(&dir, json);
    }
    let dir = args.out.context("--out DIR is required")?;
    let names = if args.topics.is_empty() {
        default_topics()
    } else {
        args.topics.clone()
    };
    let taken = take(kafka, &names, &dir, args.json).await?;
    let Taken {
        records,
        files,
        log_bytes,
        file_bytes: bytes,
        seconds,
    } = taken;
    if args.json {
        println!(
            "{}",
            json!({ "dir": dir, "records": records, "logBytes": log_bytes, "fileBytes": bytes, "seconds": seconds,
                    "recordsPerSecond": records as f64 / seconds, "megabytesPerSecond": log_bytes as f64 / 1e6 / seconds })
        );
    } else {
        println!(
            "backed up {records} records ({:.1} MB of log in {files} files of {:.1} MB) in {seconds:.1} s: {:.0} records/s, {:.2} MB/s, into {}",
            log_bytes as f64 / 1e6,
            bytes as f64 / 1e6,
            records as f64 / seconds,
            log_bytes as f64 / 1e6 / seconds,
            dir.display()
        );
    }
    Ok(())
}
