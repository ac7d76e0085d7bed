//! Rebuilding a partition's state from its output partition, in the background, before its
//! first record is answered.

use super::*;

/// A background rebuild's result.
pub(super) struct Rebuilt {
    pub(super) partition: i32,
    pub(super) epoch: u64,
    pub(super) state: anyhow::Result<PartitionState>,
}

/// Reads a partition of `certificate-events` to its end and folds it into the state: from the
/// local store's offset when the store holds the partition for this log, else from the start.
pub(super) async fn rebuild(
    settings: &Settings,
    codec: &CertificateCodec,
    partition: i32,
    stop: &CancellationToken,
) -> anyhow::Result<PartitionState> {
    let started = std::time::Instant::now();
    let reader: StreamConsumer =
        platform::Kafka::new(&settings.brokers).reader(&format!("{}-rebuild", settings.group))?;
    let timeout = Duration::from_secs(10);
    let (input_low, _) = reader.fetch_watermarks(&settings.vaccination_events, partition, timeout)?;
    let (low, high) = reader.fetch_watermarks(&settings.certificate_events, partition, timeout)?;
    let restored = restorable(settings, &reader, partition, (low, high), stop).await?;
    let from_store = restored.is_some();
    let mut state = restored.unwrap_or_else(|| {
        PartitionState::new(partition, input_low, settings.store.clone(), settings.allocator.clone())
    });
    state.next_source = state.next_source.max(input_low);
    let from = if from_store { state.output_end } else { low };
    if high > from {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&settings.certificate_events, partition, Offset::Offset(from))?;
        reader.assign(&assignment)?;
        loop {
            let message = next_record(&reader, stop).await?;
            let bytes = message.payload().unwrap_or_default();
            let hash = sha256(bytes);
            state.last_delivered = Some((message.offset(), hash));
            match decode_certificate(codec, bytes, stop).await? {
                Some(envelope)
                    if matches!(envelope.body, CertificateBody::SealedIssue(_)) && settings.keys.is_none() =>
                {
                    // Without the keys every sealed issue would look erased: the lineages would be
                    // wrong. Refuse rather than decide on them.
                    anyhow::bail!(
                        "partition {partition}: the log holds sealed credentials and this signer has no key store (set VAXTRAIL_KEYSTORE_URL and VAXTRAIL_KEK_FILE)"
                    );
                }
                Some(envelope) => state.fold(&envelope, hash)?,
                None => {
                    // Our own output that does not decode: keep the chain, flag it.
                    tracing::error!(
                        partition,
                        offset = message.offset(),
                        "an unreadable certificate-events record"
                    );
                    state.chain_head = Some(hash);
                }
            }
            if settings
                .store
                .as_ref()
                .is_some_and(|s| state.unwritten() >= s.write_every())
            {
                // Everything folded was read from the log: the store may say so. Bounds the
                // memory a rebuild takes, and a rebuild cut short resumes from here.
                state.persist(|| ())?;
            }
            if message.offset() + 1 >= high {
                break;
            }
            if message.offset() >= from + (high - from) / 2 {
                settings.crash_at(CrashPoint::Handover);
            }
        }
    }
    state.output_end = high;
    state.persist(|| ())?;
    let source = if from_store { "store" } else { "log" };
    metrics::counter!("vaxtrail_signer_rebuilds_total", "from" => source).increment(1);
    metrics::counter!("vaxtrail_signer_chain_breaks_total").increment(state.chain_breaks);
    metrics::histogram!("vaxtrail_signer_rebuild_seconds", "from" => source).record(started.elapsed().as_secs_f64());
    tracing::info!(
        partition,
        from = source,
        records = high - from,
        recipients = state.recipients(),
        next_source = state.next_source,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partition state rebuilt from certificate-events"
    );
    Ok(state)
}

/// The next record of an assigned reader, within 30 s.
async fn next_record(reader: &StreamConsumer, stop: &CancellationToken) -> anyhow::Result<OwnedMessage> {
    tokio::select! {
        () = stop.cancelled() => anyhow::bail!("stopped while rebuilding"),
        m = tokio::time::timeout(Duration::from_secs(30), reader.recv()) => {
            Ok(m.context("no certificate-events record within 30 s while rebuilding")??.detach())
        }
    }
}

/// The partition's state from the local store, when the store holds it for this log: written by
/// this deployment, not ahead of the log, and the log's record just before the stored offset
/// hashes to the stored chain head. Anything else is cleared (and rebuilt from the log).
async fn restorable(
    settings: &Settings,
    reader: &StreamConsumer,
    partition: i32,
    (low, high): (i64, i64),
    stop: &CancellationToken,
) -> anyhow::Result<Option<PartitionState>> {
    let Some(store) = &settings.store else { return Ok(None) };
    let Some((meta, bits)) = store.load(partition)? else {
        // Nothing stored for this deployment (lineages of another one are cleared).
        store.clear(partition)?;
        return Ok(None);
    };
    let offset = meta.output_offset;
    let refused = if offset > high {
        Some("ahead of the log (a restored backup or a recreated topic)")
    } else if offset > 0 && offset <= low {
        Some("behind the log's first record")
    } else if offset > 0 {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&settings.certificate_events, partition, Offset::Offset(offset - 1))?;
        reader.assign(&assignment)?;
        let record = next_record(reader, stop).await?;
        reader.unassign()?;
        let hash = sha256(record.payload().unwrap_or_default());
        (record.offset() != offset - 1 || meta.chain_head.as_deref() != Some(crate::store::hex_of(&hash).as_str()))
            .then_some("from another log (its chain head is not the log's record there)")
    } else {
        None
    };
    if let Some(reason) = refused {
        tracing::warn!(
            partition,
            stored_offset = offset,
            log_end = high,
            reason,
            "the local state store does not match the log: rebuilding from the log"
        );
        metrics::counter!("vaxtrail_signer_store_discarded_total").increment(1);
        store.clear(partition)?;
        return Ok(None);
    }
    Ok(Some(PartitionState::restored(
        partition,
        store.clone(),
        meta,
        bits,
        settings.allocator.clone(),
    )))
}

/// Decodes an output record, waiting out registry outages; `None` when it is not decodable.
pub(super) async fn decode_certificate(
    codec: &CertificateCodec,
    bytes: &[u8],
    stop: &CancellationToken,
) -> anyhow::Result<Option<CertificateEnvelope>> {
    Ok(Backoff::REGISTRY
        .retry(stop, || codec.decode(bytes), CodecError::is_retriable)
        .await?
        .ok())
}

impl Worker {
    /// Pauses the partition's input and rebuilds its state from the log in a task of its own.
    pub(super) fn rebuild_in_background(&mut self, partition: i32, after: Duration) {
        if !self.rebuilding.insert(partition) {
            return;
        }
        self.set_paused(partition, true);
        let epoch = self.epochs.get(&partition).copied().unwrap_or_default();
        let (settings, codec, done) = (
            self.settings.clone(),
            self.certificates.clone(),
            self.rebuilt_tx.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let state = rebuild(&settings, &codec, partition, &CancellationToken::new()).await;
            let _ = done.send(Rebuilt {
                partition,
                epoch,
                state,
            });
        });
    }

    /// Installs a rebuilt state (unless the partition moved meanwhile) and resumes the input at
    /// the first unanswered record.
    pub(super) fn on_rebuilt(&mut self, rebuilt: Rebuilt) {
        let Rebuilt {
            partition,
            epoch,
            state,
        } = rebuilt;
        self.rebuilding.remove(&partition);
        if !self.owned.contains(&partition) {
            return;
        }
        if self.epochs.get(&partition).copied().unwrap_or_default() != epoch {
            // The partition moved away and back while this ran: someone else may have written.
            self.rebuild_in_background(partition, Duration::ZERO);
            return;
        }
        match state {
            Ok(state) => {
                let next = state.next_source;
                self.states.insert(partition, state);
                self.seek(partition, next);
                self.set_paused(partition, false);
            }
            Err(error) => {
                tracing::error!(partition, error = %format!("{error:#}"), "rebuilding the partition's state; retrying");
                self.rebuild_in_background(partition, Duration::from_secs(2));
            }
        }
    }
}
