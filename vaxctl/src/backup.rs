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

/// The manifest of a backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The prefix the topics had; `topics[].name` are without it.
    pub topic_prefix: String,
    pub topics: Vec<TopicEntry>,
    /// The value writer schemas, by registry id.
    pub writer_schemas: BTreeMap<u32, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicEntry {
    pub name: String,
    pub partitions: i32,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub partition: i32,
    pub path: String,
    pub records: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub bytes: u64,
    pub sha256: String,
    /// SHA-256 over the records' offsets, timestamps, keys, values and headers.
    pub content_sha256: String,
    /// For `certificate-events`: the SHA-256 of the last record, the head of the hash chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<String>,
}

/// One record as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogRecord {
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn optional_bytes(bytes: Option<&[u8]>) -> Value {
    match bytes {
        Some(b) => Value::Union(1, Box::new(Value::Bytes(b.to_vec()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn read_optional_bytes(value: &Value) -> anyhow::Result<Option<Vec<u8>>> {
    match value {
        Value::Union(_, inner) => read_optional_bytes(inner),
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b.clone())),
        other => bail!("expected bytes or null, found {other:?}"),
    }
}

impl LogRecord {
    fn from_message(message: &OwnedMessage) -> Self {
        Self {
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn to_value(&self) -> Value {
        Value::Record(vec![
            ("offset".into(), Value::Long(self.offset)),
            (
                "timestamp".into(),
                match self.timestamp {
                    Some(t) => Value::Union(1, Box::new(Value::Long(t))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            ("key".into(), optional_bytes(self.key.as_deref())),
            ("value".into(), optional_bytes(self.value.as_deref())),
            (
                "headers".into(),
                Value::Array(
                    self.headers
                        .iter()
                        .map(|(k, v)| {
                            Value::Record(vec![
                                ("key".into(), Value::String(k.clone())),
                                ("value".into(), optional_bytes(v.as_deref())),
                            ])
                        })
                        .collect(),
                ),
            ),
        ])
    }

    fn from_value(value: Value) -> anyhow::Result<Self> {
        let Value::Record(fields) = value else {
            bail!("a record was expected")
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .with_context(|| format!("field {name} is missing"))
        };
        let offset = match field("offset")? {
            Value::Long(o) => *o,
            other => bail!("offset: {other:?}"),
        };
        let timestamp = match field("timestamp")? {
            Value::Union(_, inner) => match inner.as_ref() {
                Value::Long(t) => Some(*t),
                _ => None,
            },
            _ => None,
        };
        let Value::Array(items) = field("headers")? else {
            bail!("headers: an array was expected")
        };
        let mut headers = Vec::with_capacity(items.len());
        for item in items {
            let Value::Record(pair) = item else {
                bail!("header: a record was expected")
            };
            let key = match pair.first() {
                Some((_, Value::String(k))) => k.clone(),
                _ => bail!("header key: a string was expected"),
            };
            let value = pair.get(1).map(|(_, v)| read_optional_bytes(v)).transpose()?.flatten();
            headers.push((key, value));
        }
        Ok(Self {
            offset,
            timestamp,
            key: read_optional_bytes(field("key")?)?,
            value: read_optional_bytes(field("value")?)?,
            headers,
        })
    }

    /// Feeds the record's offset and content, unambiguously framed, into a digest.
    fn digest(&self, hash: &mut Sha256) {
        hash.update(self.offset.to_be_bytes());
        self.digest_without_offset(hash);
    }

    /// Feeds the record's content (timestamp, key, value, headers) into a digest.
    fn digest_without_offset(&self, hash: &mut Sha256) {
        fn framed(hash: &mut Sha256, bytes: Option<&[u8]>) {
            match bytes {
                Some(b) => {
                    hash.update((b.len() as i64).to_be_bytes());
                    hash.update(b);
                }
                None => hash.update((-1_i64).to_be_bytes()),
            }
        }
        hash.update(self.timestamp.unwrap_or(-1).to_be_bytes());
        framed(hash, self.key.as_deref());
        framed(hash, self.value.as_deref());
        hash.update((self.headers.len() as i64).to_be_bytes());
        for (key, value) in &self.headers {
            framed(hash, Some(key.as_bytes()));
            framed(hash, value.as_deref());
        }
    }

    /// Bytes of the key, value and headers.
    fn size(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        (self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + headers) as u64
    }

    fn value_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.value.as_deref().unwrap_or_default()))
    }

    /// The registry id of the value's writer schema (Confluent wire format), if it has one.
    fn schema_id(&self) -> Option<u32> {
        match self.value.as_deref() {
            Some([0, a, b, c, d, ..]) => Some(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }
}

fn record_schema() -> Schema {
    Schema::parse_str(RECORD_SCHEMA).expect("the record schema parses")
}

fn file_sha256(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut bytes = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hash.finalize()), bytes))
}

/// The records of a backup file, in order.
fn read_file(path: &Path) -> anyhow::Result<Vec<LogRecord>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = Reader::new(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))?;
    reader
        .map(|value| LogRecord::from_value(value.context("decoding a record")?))
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", path.display()))
}

/// What the manifest says of a file's records, kept one record at a time: the backup that writes
/// a file and the check that reads it back keep the same account.
#[derive(Default)]
struct Tally {
    records: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    content: Sha256,
    /// SHA-256 of the last record's value.
    head: Option<String>,
    /// Bytes of keys, values and headers, as in the log.
    log_bytes: u64,
    /// The first place offsets jump, if they do.
    gap: Option<(i64, i64)>,
}

impl Tally {
    fn add(&mut self, record: &LogRecord) {
        if let Some(previous) = self.last_offset
            && record.offset != previous + 1
            && self.gap.is_none()
        {
            self.gap = Some((previous, record.offset));
        }
        record.digest(&mut self.content);
        self.records += 1;
        self.first_offset.get_or_insert(record.offset);
        self.last_offset = Some(record.offset);
        self.head = Some(record.value_sha256());
        self.log_bytes += record.size();
    }

    fn content_sha256(&self) -> String {
        hex::encode(self.content.clone().finalize())
    }

    /// The chain head, for a chained topic (the SHA-256 of nothing for an empty partition).
    fn chain_head(&self, chained: bool) -> Option<String> {
        chained.then(|| self.head.clone().unwrap_or_else(|| hex::encode(Sha256::digest(b""))))
    }
}

/// Streams a partition's records into a container file, keeping what the manifest says of them.
struct FileWriter<'a> {
    writer: Writer<'a, BufWriter<File>>,
    path: PathBuf,
    partition: i32,
    tally: Tally,
}

impl<'a> FileWriter<'a> {
    fn create(schema: &'a Schema, path: PathBuf, partition: i32) -> anyhow::Result<Self> {
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let writer = Writer::with_codec(schema, BufWriter::new(file), Codec::Deflate(DeflateSettings::default()))?;
        Ok(Self {
            writer,
            path,
            partition,
            tally: Tally::default(),
        })
    }

    fn append(&mut self, record: &LogRecord) -> anyhow::Result<()> {
        self.writer.append_value(record.to_value())?;
        self.tally.add(record);
        Ok(())
    }

    fn finish(self, dir: &Path, chained: bool) -> anyhow::Result<FileEntry> {
        let mut inner = self.writer.into_inner()?;
        std::io::Write::flush(&mut inner)?;
        inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let (sha256, bytes) = file_sha256(&self.path)?;
        Ok(FileEntry {
            partition: self.partition,
            path: self
                .path
                .strip_prefix(dir)
                .unwrap_or(&self.path)
                .to_string_lossy()
                .into_owned(),
            records: self.tally.records,
            first_offset: self.tally.first_offset,
            last_offset: self.tally.last_offset,
            bytes,
            sha256,
            content_sha256: self.tally.content_sha256(),
            chain_head: self.tally.chain_head(chained),
        })
    }
}

/// A file's records, read in one pass, for checking against the manifest.
fn summarize(path: &Path) -> anyhow::Result<Tally> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = Reader::new(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))?;
    let mut tally = Tally::default();
    for value in reader {
        tally.add(&LogRecord::from_value(value.context("decoding a record")?)?);
    }
    Ok(tally)
}

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

/// What a backup wrote.
#[derive(Clone, Debug)]
pub struct Taken {
    pub records: u64,
    pub files: usize,
    /// Bytes of keys, values and headers read from the log.
    pub log_bytes: u64,
    pub file_bytes: u64,
    pub seconds: f64,
}

/// Backs the topics (names without the prefix) up into `dir` (created; must be empty).
pub async fn take(kafka: &KafkaArgs, names: &[String], dir: &Path, quiet: bool) -> anyhow::Result<Taken> {
    let dir = dir.to_path_buf();
    if dir.exists() {
        ensure!(
            std::fs::read_dir(&dir)?.next().is_none(),
            "{} is not empty: a backup goes into a new directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let full: Vec<String> = names.iter().map(|n| full_name(&kafka.topic_prefix, n)).collect();
    let marks = platform::log::watermarks_async(&kafka.brokers, &full).await?;
    for (name, topic) in names.iter().zip(&full) {
        ensure!(
            marks.iter().any(|m| &m.topic == topic),
            "topic {topic} ({name}) does not exist"
        );
    }
    let total: u64 = marks.iter().map(|m| (m.high - m.low).max(0) as u64).sum();
    let progress = crate::progress(total as usize, "backup", quiet);
    let started = Instant::now();

    let (brokers, certificate_topic, out) = (
        kafka.brokers.clone(),
        full_name(&kafka.topic_prefix, "certificate-events"),
        dir.clone(),
    );
    let (names_for_files, full_for_files, reading_bar) = (names.to_vec(), full.clone(), progress.clone());
    let (entries, schema_ids, log_bytes) = tokio::task::spawn_blocking(move || {
        // Every partition at once, each read to the high watermark seen at the start.
        let schema = record_schema();
        let mut files: std::collections::HashMap<(String, i32), (String, FileWriter<'_>)> =
            std::collections::HashMap::new();
        let mut spans = Vec::with_capacity(marks.len());
        for mark in &marks {
            let index = full_for_files
                .iter()
                .position(|t| *t == mark.topic)
                .expect("a listed topic");
            let name = names_for_files[index].clone();
            std::fs::create_dir_all(out.join(&name))?;
            let path = out.join(&name).join(format!("{}.avro", mark.partition));
            let file = FileWriter::create(&schema, path, mark.partition)?;
            files.insert((mark.topic.clone(), mark.partition), (name, file));
            spans.push(mark.span());
        }
        let mut schema_ids = std::collections::BTreeSet::new();
        let mut failed = None;
        read_spans(&brokers, &spans, None, 1000, |batch| {
            reading_bar.inc(batch.len() as u64);
            for message in &batch {
                let record = LogRecord::from_message(message);
                if message.topic() != SCHEMAS_TOPIC {
                    schema_ids.extend(record.schema_id());
                }
                let (_, file) = files
                    .get_mut(&(message.topic().to_owned(), message.partition()))
                    .expect("a partition being read");
                if let Err(error) = file.append(&record) {
                    failed = Some(error);
                    return false;
                }
            }
            true
        })?;
        if let Some(error) = failed {
            return Err(error);
        }
        let mut entries: BTreeMap<String, Vec<FileEntry>> = BTreeMap::new();
        let mut log_bytes = 0;
        for ((topic, _), (name, file)) in files {
            log_bytes += file.tally.log_bytes;
            let entry = file.finish(&out, topic == certificate_topic)?;
            entries.entry(name).or_default().push(entry);
        }
        for files in entries.values_mut() {
            files.sort_by_key(|f| f.partition);
        }
        anyhow::Ok((entries, schema_ids, log_bytes))
    })
    .await??;
    progress.finish_and_clear();

    let registry = reqwest::Client::new();
    let mut writer_schemas = BTreeMap::new();
    for id in schema_ids {
        let url = format!("{}/schemas/ids/{id}", kafka.schema_registry_url.trim_end_matches('/'));
        let answer: serde_json::Value = registry
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reading writer schema {id} from the registry"))?
            .json()
            .await?;
        writer_schemas.insert(id, answer);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: chrono::Utc::now(),
        topic_prefix: kafka.topic_prefix.clone(),
        topics: entries
            .into_iter()
            .map(|(name, files)| TopicEntry {
                name,
                partitions: files.len() as i32,
                files,
            })
            .collect(),
        writer_schemas,
    };
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    let seconds = started.elapsed().as_secs_f64();
    let file_bytes: u64 = manifest.topics.iter().flat_map(|t| &t.files).map(|f| f.bytes).sum();
    let records: u64 = manifest.topics.iter().flat_map(|t| &t.files).map(|f| f.records).sum();
    Ok(Taken {
        records,
        files: manifest.topics.iter().map(|t| t.files.len()).sum(),
        log_bytes,
        file_bytes,
        seconds,
    })
}

/// What is wrong with a backup, if anything, and its counts.
fn check(dir: &Path) -> anyhow::Result<(Manifest, Vec<String>)> {
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json"))
            .with_context(|| format!("reading {}/manifest.json", dir.display()))?,
    )
    .context("manifest.json is not a vaxtrail backup manifest")?;
    ensure!(manifest.format == FORMAT, "unknown backup format {:?}", manifest.format);
    let mut problems = Vec::new();
    for topic in &manifest.topics {
        for file in &topic.files {
            let path = dir.join(&file.path);
            let where_ = format!("{} partition {}", topic.name, file.partition);
            let (sha256, _) = match file_sha256(&path) {
                Ok(found) => found,
                Err(error) => {
                    problems.push(format!("{where_}: {error:#}"));
                    continue;
                }
            };
            if sha256 != file.sha256 {
                problems.push(format!(
                    "{where_}: {} has SHA-256 {sha256}, the manifest says {}",
                    file.path, file.sha256
                ));
                continue;
            }
            let found = match summarize(&path) {
                Ok(found) => found,
                Err(error) => {
                    problems.push(format!("{where_}: {error:#}"));
                    continue;
                }
            };
            if found.records != file.records
                || found.first_offset != file.first_offset
                || found.last_offset != file.last_offset
            {
                problems.push(format!(
                    "{where_}: holds {} records ({:?}..{:?}), the manifest says {} ({:?}..{:?})",
                    found.records,
                    found.first_offset,
                    found.last_offset,
                    file.records,
                    file.first_offset,
                    file.last_offset
                ));
            }
            if found.content_sha256() != file.content_sha256 {
                problems.push(format!(
                    "{where_}: the records' content SHA-256 differs from the manifest's"
                ));
            }
            if found.chain_head(file.chain_head.is_some()) != file.chain_head {
                problems.push(format!("{where_}: the chain head differs from the manifest's"));
            }
            // The registry's topic is compacted: its offsets may jump.
            if let Some((from, to)) = found.gap
                && topic.name != SCHEMAS_TOPIC
            {
                problems.push(format!("{where_}: offsets jump from {from} to {to}"));
            }
        }
    }
    Ok((manifest, problems))
}

fn verify(dir: &Path, json: bool) -> anyhow::Result<()> {
    let (manifest, problems) = check(dir)?;
    let records: u64 = manifest.topics.iter().flat_map(|t| &t.files).map(|f| f.records).sum();
    let files: usize = manifest.topics.iter().map(|t| t.files.len()).sum();
    if json {
        println!(
            "{}",
            json!({ "ok": problems.is_empty(), "records": records, "files": files, "problems": problems })
        );
    } else if problems.is_empty() {
        println!(
            "ok: {files} files, {records} records, every SHA-256, count, offset and chain head as the manifest says"
        );
    } else {
        for problem in &problems {
            println!("BROKEN: {problem}");
        }
    }
    if !problems.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

pub async fn restore(kafka: &KafkaArgs, args: RestoreArgs) -> anyhow::Result<()> {
    let (manifest, problems) = check(&args.from)?;
    ensure!(
        problems.is_empty(),
        "the backup does not verify (see `vaxctl backup verify`): {}",
        problems.join("; ")
    );
    let started = Instant::now();
    // The registry's log first: the values name their writer schemas by its ids.
    let mut topics = manifest.topics.clone();
    topics.sort_by_key(|t| t.name != SCHEMAS_TOPIC);
    let full: Vec<String> = topics.iter().map(|t| full_name(&kafka.topic_prefix, &t.name)).collect();
    let existing = platform::log::watermarks_async(&kafka.brokers, &full).await?;

    let mut plan = Vec::new();
    for (topic, name) in topics.iter().zip(&full) {
        let held: Vec<&Watermarks> = existing.iter().filter(|m| &m.topic == name).collect();
        let non_empty = held.iter().any(|m| m.high > 0);
        if non_empty && topic.name == SCHEMAS_TOPIC {
            // A registry is running on the target: it must already hold the same schemas.
            let file = topic.files.first().context("the backup's _schemas has no file")?;
            let records = read_file(&args.from.join(&file.path))?;
            let mut target = Vec::new();
            let span = Span {
                topic: name.clone(),
                partition: 0,
                from: 0,
                to: held[0].high.min(records.len() as i64),
            };
            let brokers = kafka.brokers.clone();
            target = tokio::task::spawn_blocking(move || {
                read_spans(&brokers, &[span], None, 1000, |batch| {
                    target.extend(batch.iter().map(LogRecord::from_message));
                    true
                })
                .map(|_| target)
            })
            .await??;
            let same = target.len() == records.len()
                && target
                    .iter()
                    .zip(&records)
                    .all(|(a, b)| a.key == b.key && a.value == b.value);
            ensure!(
                same,
                "{name} already holds other schemas than the backup's: restore into a cluster whose registry is empty"
            );
            continue;
        }
        if non_empty && !args.force {
            bail!("{name} already holds records: restore into an empty cluster (or pass --force to append)");
        }
        plan.push((topic.clone(), name.clone()));
    }

    // Create the topics as they were.
    let specs: Vec<TopicSpec> = plan
        .iter()
        .map(|(topic, name)| TopicSpec {
            name: name.clone(),
            partitions: topic.partitions,
            config: if topic.name == SCHEMAS_TOPIC {
                vec![("cleanup.policy", "compact")]
            } else {
                vec![("retention.ms", "-1"), ("retention.bytes", "-1")]
            },
        })
        .collect();
    platform::topics::ensure_topics(&kafka.brokers, &specs).await?;

    let total: u64 = plan.iter().flat_map(|(t, _)| &t.files).map(|f| f.records).sum();
    let progress = crate::progress(total as usize, "restore", args.json);
    let producer: FutureProducer = platform::Kafka::new(&kafka.brokers)
        .tuned(platform::Tuning {
            linger: Duration::from_millis(20),
            delivery_timeout: Duration::from_secs(60),
            ..platform::Tuning::default()
        })
        .producer()?;
    let mut restored = 0_u64;
    for (topic, name) in &plan {
        for file in &topic.files {
            // Streamed from the file, 500 records in flight; the idempotent producer keeps
            // their order within the partition.
            let path = args.from.join(&file.path);
            let reader = Reader::new(BufReader::new(
                File::open(&path).with_context(|| format!("opening {}", path.display()))?,
            ))?;
            let (topic_name, partition) = (name.as_str(), file.partition);
            let sends = stream::iter(reader)
                .map(|value| {
                    let producer = &producer;
                    async move {
                        let record = LogRecord::from_value(value.context("decoding a backup record")?)?;
                        let mut headers = OwnedHeaders::new();
                        for (key, value) in &record.headers {
                            headers = headers.insert(Header {
                                key,
                                value: value.as_deref(),
                            });
                        }
                        let mut message: FutureRecord<'_, [u8], [u8]> =
                            FutureRecord::to(topic_name).partition(partition).headers(headers);
                        if let Some(key) = &record.key {
                            message = message.key(key.as_slice());
                        }
                        if let Some(value) = &record.value {
                            message = message.payload(value.as_slice());
                        }
                        if let Some(at) = record.timestamp {
                            message = message.timestamp(at);
                        }
                        producer
                            .send(message, Duration::from_secs(60))
                            .await
                            .map_err(|(e, _)| anyhow::anyhow!("{topic_name}/{partition}: {e}"))?;
                        anyhow::Ok(())
                    }
                })
                .buffered(500);
            futures::pin_mut!(sends);
            while let Some(sent) = sends.next().await {
                sent?;
                progress.inc(1);
                restored += 1;
            }
        }
    }
    progress.finish_and_clear();

    // Read everything back: the same records at the same offsets (the registry's compacted
    // topic: the same records in the same order).
    let verify_bar = crate::progress(total as usize, "verify", args.json);
    let mut expected: HashMap<(String, i32), (u64, String)> = HashMap::new();
    let mut spans = Vec::new();
    for (topic, name) in &plan {
        for file in &topic.files {
            let (from, to, content) = if topic.name == SCHEMAS_TOPIC {
                let mut hash = Sha256::new();
                for record in read_file(&args.from.join(&file.path))? {
                    record.digest_without_offset(&mut hash);
                }
                (0, file.records as i64, hex::encode(hash.finalize()))
            } else {
                (
                    file.first_offset.unwrap_or(0),
                    file.last_offset.map_or(0, |l| l + 1),
                    file.content_sha256.clone(),
                )
            };
            expected.insert((name.clone(), file.partition), (file.records, content));
            spans.push(Span {
                topic: name.clone(),
                partition: file.partition,
                from,
                to,
            });
        }
    }
    let (brokers, reading_bar) = (kafka.brokers.clone(), verify_bar.clone());
    let read_back = tokio::task::spawn_blocking(move || {
        let mut found: HashMap<(String, i32), (u64, Sha256)> = HashMap::new();
        read_spans(&brokers, &spans, None, 1000, |batch| {
            reading_bar.inc(batch.len() as u64);
            for message in &batch {
                let (count, hash) = found
                    .entry((message.topic().to_owned(), message.partition()))
                    .or_insert_with(|| (0, Sha256::new()));
                let record = LogRecord::from_message(message);
                if message.topic() == SCHEMAS_TOPIC {
                    record.digest_without_offset(hash);
                } else {
                    record.digest(hash);
                }
                *count += 1;
            }
            true
        })?;
        anyhow::Ok(found)
    })
    .await??;
    let mut mismatches = Vec::new();
    let mut keys: Vec<_> = expected.keys().cloned().collect();
    keys.sort();
    for key in keys {
        let (records, content) = &expected[&key];
        let (count, found) = read_back
            .get(&key)
            .map_or((0, hex::encode(Sha256::new().finalize())), |(count, hash)| {
                (*count, hex::encode(hash.clone().finalize()))
            });
        if count != *records || found != *content {
            mismatches.push(format!(
                "{} partition {}: read back {count} records of {records}{}",
                key.0,
                key.1,
                if found == *content {
                    ""
                } else {
                    ", content differs (offsets moved?)"
                }
            ));
        }
    }
    verify_bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            json!({ "ok": mismatches.is_empty(), "records": restored, "seconds": seconds,
                    "recordsPerSecond": restored as f64 / seconds, "mismatches": mismatches })
        );
    } else if mismatches.is_empty() {
        println!(
            "restored {restored} records into {} topics in {seconds:.1} s ({:.0} records/s); read back: same records at the same offsets",
            plan.len(),
            restored as f64 / seconds
        );
    }
    if !mismatches.is_empty() {
        for mismatch in &mismatches {
            eprintln!("MISMATCH: {mismatch}");
        }
        std::process::exit(1);
    }
    Ok(())
}

/// Rewrites one partition's file of a backup with `edit` applied to its records' values, and
/// seals the manifest again as if the backup had been taken so: what someone who can write the
/// backup could do. `vaxctl backup verify` then passes; only the log's hash chain (`vaxctl audit
/// verify`, after a restore) can tell. For tamper drills.
pub fn rewrite_partition(
    dir: &Path,
    topic: &str,
    partition: i32,
    edit: impl FnOnce(&mut [(i64, Option<Vec<u8>>)]),
) -> anyhow::Result<()> {
    let mut manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    let entry = manifest
        .topics
        .iter_mut()
        .find(|t| t.name == topic)
        .and_then(|t| t.files.iter_mut().find(|f| f.partition == partition))
        .with_context(|| format!("the backup has no {topic} partition {partition}"))?;
    let path = dir.join(&entry.path);
    let mut records = read_file(&path)?;
    let mut values: Vec<(i64, Option<Vec<u8>>)> = records.iter().map(|r| (r.offset, r.value.clone())).collect();
    edit(&mut values);
    for (record, (_, value)) in records.iter_mut().zip(values) {
        record.value = value;
    }
    let schema = record_schema();
    let mut file = FileWriter::create(&schema, path, partition)?;
    for record in &records {
        file.append(record)?;
    }
    *entry = file.finish(dir, entry.chain_head.is_some())?;
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(())
}
