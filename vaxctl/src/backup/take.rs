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
