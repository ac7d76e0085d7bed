//! Taking a backup: every partition read up to the high watermark seen at the start, written to
//! its container file, then the manifest.

use super::*;

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

/// What reading the log wrote: the container files by topic name, the writer schemas the
/// records name, and the bytes read.
struct Written {
    entries: BTreeMap<String, Vec<FileEntry>>,
    schema_ids: std::collections::BTreeSet<u32>,
    log_bytes: u64,
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
    private_dir(&dir)?;
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
    let (kafka_, names_, out, bar) = (kafka.clone(), names.to_vec(), dir.clone(), progress.clone());
    let written = tokio::task::spawn_blocking(move || write_files(&kafka_, &names_, &marks, &out, &bar)).await??;
    progress.finish_and_clear();

    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: chrono::Utc::now(),
        topic_prefix: kafka.topic_prefix.clone(),
        topics: written
            .entries
            .into_iter()
            .map(|(name, files)| TopicEntry {
                name,
                partitions: files.len() as i32,
                files,
            })
            .collect(),
        writer_schemas: writer_schemas(&kafka.schema_registry_url, written.schema_ids).await?,
    };
    write_private(&dir.join("manifest.json"), &serde_json::to_vec_pretty(&manifest)?)?;
    let files = || manifest.topics.iter().flat_map(|t| &t.files);
    Ok(Taken {
        records: files().map(|f| f.records).sum(),
        files: files().count(),
        log_bytes: written.log_bytes,
        file_bytes: files().map(|f| f.bytes).sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads every partition at once, each to the high watermark in `marks` (seen at the start),
/// into its container file under `out/<name>/<partition>.avro`. Blocking.
fn write_files(
    kafka: &KafkaArgs,
    names: &[String],
    marks: &[platform::log::Watermarks],
    out: &Path,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Written> {
    let certificate_topic = full_name(&kafka.topic_prefix, "certificate-events");
    let schema = record_schema();
    let mut files: std::collections::HashMap<(String, i32), (String, FileWriter<'_>)> =
        std::collections::HashMap::new();
    let mut spans = Vec::with_capacity(marks.len());
    for mark in marks {
        let name = names
            .iter()
            .find(|n| full_name(&kafka.topic_prefix, n) == mark.topic)
            .expect("a listed topic")
            .clone();
        private_dir(&out.join(&name))?;
        let path = out.join(&name).join(format!("{}.avro", mark.partition));
        let file = FileWriter::create(&schema, path, mark.partition)?;
        files.insert((mark.topic.clone(), mark.partition), (name, file));
        spans.push(mark.span());
    }
    let mut schema_ids = std::collections::BTreeSet::new();
    let mut failed = None;
    read_spans(&kafka.brokers, &spans, None, 1000, |batch| {
        bar.inc(batch.len() as u64);
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
        let entry = file.finish(out, topic == certificate_topic)?;
        entries.entry(name).or_default().push(entry);
    }
    for files in entries.values_mut() {
        files.sort_by_key(|f| f.partition);
    }
    Ok(Written {
        entries,
        schema_ids,
        log_bytes,
    })
}

/// The writer schemas behind `ids`, as the registry serves them.
async fn writer_schemas(
    registry_url: &str,
    ids: std::collections::BTreeSet<u32>,
) -> anyhow::Result<BTreeMap<u32, serde_json::Value>> {
    let registry = reqwest::Client::new();
    let mut schemas = BTreeMap::new();
    for id in ids {
        let url = format!("{}/schemas/ids/{id}", registry_url.trim_end_matches('/'));
        let answer: serde_json::Value = registry
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reading writer schema {id} from the registry"))?
            .json()
            .await?;
        schemas.insert(id, answer);
    }
    Ok(schemas)
}
