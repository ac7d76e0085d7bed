//! Rebuilding a partition's state from its output partition, in the background, before its
//! first record is answered.

use super::*;

/// A background rebuild's result.
pub(super) struct Rebuilt {
    pub(super) partition: i32,
    pub(super) epoch: u64,
    pub(super) state: anyhow::Result<PartitionState>,
}

/// Reads a partition of `certificate-events` to its end and folds it into a fresh state.
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
    let mut state = PartitionState::new(partition, input_low);
    state.output_end = high;
    if high > low {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&settings.certificate_events, partition, Offset::Beginning)?;
        reader.assign(&assignment)?;
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => anyhow::bail!("stopped while rebuilding"),
                m = tokio::time::timeout(Duration::from_secs(30), reader.recv()) => {
                    m.context("no certificate-events record within 30 s while rebuilding")??
                }
            };
            let bytes = message.payload().unwrap_or_default();
            let hash = sha256(bytes);
            state.last_delivered = Some((message.offset(), hash));
            match decode_certificate(codec, bytes, stop).await? {
                Some(envelope) => state.fold(&envelope, hash),
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
            if message.offset() + 1 >= high {
                break;
            }
            if message.offset() >= low + (high - low) / 2 {
                settings.crash_at(CrashPoint::Handover);
            }
        }
    }
    metrics::counter!("vaxtrail_signer_rebuilds_total").increment(1);
    metrics::counter!("vaxtrail_signer_chain_breaks_total").increment(state.chain_breaks);
    metrics::histogram!("vaxtrail_signer_rebuild_seconds").record(started.elapsed().as_secs_f64());
    tracing::info!(
        partition,
        records = high - low,
        recipients = state.recipients(),
        next_source = state.next_source,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "partition state rebuilt from certificate-events"
    );
    Ok(state)
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
