//! Restoring a backup into an empty cluster, record for record, then reading everything back
//! to prove it; and rewriting a partition file (the tests forge a backup with it).

use indicatif::ProgressBar;

use super::*;

/// A topic to restore: its manifest entry and its full name on the target.
type Planned = (TopicEntry, String);

pub async fn restore(kafka: &KafkaArgs, args: RestoreArgs) -> anyhow::Result<()> {
    let (manifest, problems) = check(&args.from)?;
    ensure!(
        problems.is_empty(),
        "the backup does not verify (see `vaxctl backup verify`): {}",
        problems.join("; ")
    );
    let started = Instant::now();
    let plan = plan(kafka, &args, &manifest).await?;
    create_topics(kafka, &plan).await?;
    let total: u64 = plan.iter().flat_map(|(t, _)| &t.files).map(|f| f.records).sum();
    let progress = crate::progress(total as usize, "restore", args.json);
    let restored = produce(kafka, &args.from, &plan, &progress).await?;
    progress.finish_and_clear();
    let verify_bar = crate::progress(total as usize, "verify", args.json);
    let mismatches = read_back(kafka, &args.from, &plan, &verify_bar).await?;
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

/// The topics to restore, the registry's log first (the values name their writer schemas by its
/// ids). A target topic that holds records is refused (unless `--force`), but for a registry
/// log that already holds the backup's schemas.
async fn plan(kafka: &KafkaArgs, args: &RestoreArgs, manifest: &Manifest) -> anyhow::Result<Vec<Planned>> {
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
            ensure!(
                same_schemas(kafka, &args.from, topic, name, held[0].high).await?,
                "{name} already holds other schemas than the backup's: restore into a cluster whose registry is empty"
            );
            continue;
        }
        if non_empty && !args.force {
            bail!("{name} already holds records: restore into an empty cluster (or pass --force to append)");
        }
        plan.push((topic.clone(), name.clone()));
    }
    Ok(plan)
}

/// Whether the target's registry log holds the backup's schema records, in order.
async fn same_schemas(
    kafka: &KafkaArgs,
    dir: &Path,
    topic: &TopicEntry,
    name: &str,
    high: i64,
) -> anyhow::Result<bool> {
    let file = topic.files.first().context("the backup's _schemas has no file")?;
    let records = read_file(&dir.join(&file.path))?;
    let span = Span {
        topic: name.to_owned(),
        partition: 0,
        from: 0,
        to: high.min(records.len() as i64),
    };
    let brokers = kafka.brokers.clone();
    let target = tokio::task::spawn_blocking(move || {
        let mut target = Vec::new();
        read_spans(&brokers, &[span], None, 1000, |batch| {
            target.extend(batch.iter().map(LogRecord::from_message));
            true
        })
        .map(|_| target)
    })
    .await??;
    Ok(target.len() == records.len()
        && target
            .iter()
            .zip(&records)
            .all(|(a, b)| a.key == b.key && a.value == b.value))
}

/// Creates the topics as they were.
async fn create_topics(kafka: &KafkaArgs, plan: &[Planned]) -> anyhow::Result<()> {
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

    Ok(())
}

/// Appends every record of the plan's files; the number appended.
async fn produce(kafka: &KafkaArgs, dir: &Path, plan: &[Planned], progress: &ProgressBar) -> anyhow::Result<u64> {
    let producer: FutureProducer = platform::Kafka::new(&kafka.brokers)
        .tuned(platform::Tuning {
            linger: Duration::from_millis(20),
            delivery_timeout: Duration::from_secs(60),
            ..platform::Tuning::default()
        })
        .producer()?;
    let mut restored = 0_u64;
    for (topic, name) in plan {
        for file in &topic.files {
            restored += produce_file(&producer, &dir.join(&file.path), name, file.partition, progress).await?;
        }
    }
    Ok(restored)
}

/// Streams one file's records to its partition, 500 in flight; the idempotent producer keeps
/// their order within the partition.
async fn produce_file(
    producer: &FutureProducer,
    path: &Path,
    topic_name: &str,
    partition: i32,
    progress: &ProgressBar,
) -> anyhow::Result<u64> {
    let reader = Reader::new(BufReader::new(
        File::open(path).with_context(|| format!("opening {}", path.display()))?,
    ))?;
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
    let mut sent_count = 0;
    while let Some(sent) = sends.next().await {
        sent?;
        progress.inc(1);
        sent_count += 1;
    }
    Ok(sent_count)
}

/// Reads everything back: the same records at the same offsets (the registry's compacted topic:
/// the same records in the same order). The partitions that differ, in words.
async fn read_back(kafka: &KafkaArgs, dir: &Path, plan: &[Planned], bar: &ProgressBar) -> anyhow::Result<Vec<String>> {
    let mut expected: HashMap<(String, i32), (u64, String)> = HashMap::new();
    let mut spans = Vec::new();
    for (topic, name) in plan {
        for file in &topic.files {
            let (from, to, content) = if topic.name == SCHEMAS_TOPIC {
                let mut hash = Sha256::new();
                for record in read_file(&dir.join(&file.path))? {
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
    let (brokers, reading_bar) = (kafka.brokers.clone(), bar.clone());
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
    Ok(mismatches)
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
    super::format::write_private(&dir.join("manifest.json"), &serde_json::to_vec_pretty(&manifest)?)?;
    Ok(())
}
