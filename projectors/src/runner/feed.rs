//! Where a projection's records come from: the consumer, the positions the projection stored
//! (a partition is read from what its store holds, never from the consumer group's offset),
//! the codecs, and the dead-letter topic for what does not decode.

use super::*;

/// Decodes the event topics' records into what projections apply, through the registry (an
/// outage of the registry is waited out until `stop`).
pub struct Decoder {
    vaccination_events: String,
    vaccinations: VaccinationCodec,
    certificates: CertificateCodec,
    /// Whether sealed records can be opened here (with the key store, a sealed issue that stays
    /// sealed is an erased recipient's).
    keyed: bool,
}

impl Decoder {
    pub fn new(
        registry_url: &str,
        vaccination_events: &str,
        certificate_events: &str,
        keys: Option<Arc<platform::keystore::KeyStore>>,
    ) -> Self {
        let keys = keys.map(|k| k as Arc<dyn privacy::DataKeys>);
        Self {
            keyed: keys.is_some(),
            vaccination_events: vaccination_events.to_owned(),
            vaccinations: VaccinationCodec::new(registry_url, vaccination_events).with_keys(keys.clone()),
            certificates: CertificateCodec::new(registry_url, certificate_events).with_keys(keys),
        }
    }

    /// The record, or why it does not decode.
    pub async fn decode(
        &self,
        stop: &CancellationToken,
        message: &OwnedMessage,
    ) -> anyhow::Result<Result<Projected, String>> {
        let bytes = message.payload().unwrap_or_default();
        Ok(if message.topic() == self.vaccination_events {
            match Backoff::REGISTRY
                .retry(stop, || self.vaccinations.decode(bytes), CodecError::is_retriable)
                .await?
            {
                Ok(envelope) => Ok(Projected::Vaccination(Box::new(envelope))),
                // An erased recipient's record (read again by a replay or a rebuild): nothing
                // of it is projected, and it is no poison.
                Err(error) if error.erased().is_some() => Ok(Projected::Skipped),
                Err(error) => Err(error.to_string()),
            }
        } else {
            let decoded = Backoff::REGISTRY
                .retry(stop, || self.certificates.decode(bytes), CodecError::is_retriable)
                .await?;
            if let Ok(envelope) = &decoded
                && matches!(envelope.body, avro::certificate::CertificateBody::SealedIssue(_))
                && !self.keyed
            {
                // Without the keys every sealed credential would look erased.
                anyhow::bail!(
                    "the log holds sealed credentials and the projectors have no key store (set VAXTRAIL_KEYSTORE_URL and VAXTRAIL_KEK_FILE)"
                );
            }
            decoded
                .map_err(|e| e.to_string())
                .map(|e| Projected::Certificate(Box::new(e)))
        })
    }
}

/// Where a partition stands: the next offset to apply, and whether the consumer was seen there.
pub(super) struct Position {
    next: i64,
    confirmed: bool,
    /// The consumer was moved to `next` since the position was read.
    sought: bool,
}

/// Where the records come from: the consumer, the positions the projection stored, the codecs.
pub(super) struct Feed<'a> {
    settings: &'a Settings,
    pub(super) consumer: Arc<StreamConsumer>,
    dead_letters: FutureProducer,
    decoder: Decoder,
    pub(super) positions: HashMap<(String, i32), Position>,
}

impl<'a> Feed<'a> {
    /// Subscribes the projection's consumer group to both topics.
    pub(super) fn open(settings: &'a Settings) -> anyhow::Result<Self> {
        let kafka = platform::Kafka::new(&settings.brokers);
        let consumer: Arc<StreamConsumer> = kafka
            .consumer(&settings.group)
            .map(Arc::new)
            .context("creating the projection's consumer")?;
        consumer.subscribe(&[&settings.vaccination_events, &settings.certificate_events])?;
        Ok(Self {
            decoder: Decoder::new(
                &settings.registry_url,
                &settings.vaccination_events,
                &settings.certificate_events,
                settings.keys.clone(),
            ),
            consumer,
            dead_letters: kafka.producer()?,
            positions: HashMap::new(),
            settings,
        })
    }

    /// The next batch: up to `batch_size` records or what came within `batch_time`, without
    /// what precedes the stored positions, decoded (what does not decode is dead-lettered).
    /// Empty when nothing came, or after a seek.
    pub(super) async fn next<P: Projection>(
        &mut self,
        projection: &P,
        stop: &CancellationToken,
    ) -> anyhow::Result<Vec<Positioned>> {
        // Gather a batch: up to `batch_size` records, or what came within `batch_time`.
        let mut batch: Vec<OwnedMessage> = Vec::new();
        let deadline = Instant::now() + self.settings.batch_time;
        while batch.len() < self.settings.batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !batch.is_empty() {
                break;
            }
            let wait = if batch.is_empty() {
                Duration::from_millis(500)
            } else {
                left
            };
            tokio::select! {
                () = stop.cancelled() => break,
                received = tokio::time::timeout(wait, self.consumer.recv()) => match received {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "consuming");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    // Nothing for a while: an empty batch, so an idle loop still checks its
                    // store's marker and a rebuild's progress.
                    Err(_) => break,
                }
            }
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }

        // Keep only what follows the stored position of each partition.
        let mut accepted = Vec::with_capacity(batch.len());
        for message in batch {
            let key = (message.topic().to_owned(), message.partition());
            self.know(projection, stop, &key).await?;
            let position = self.positions.get_mut(&key).expect("known above");
            if message.offset() < position.next {
                continue;
            }
            if message.offset() > position.next && !position.confirmed {
                let next = position.next;
                self.seek(&key, next).await?;
                continue;
            }
            position.confirmed = true;
            position.next = message.offset() + 1;
            accepted.push(message);
        }
        if accepted.is_empty() {
            return Ok(Vec::new());
        }

        // Decode; what does not decode goes to dead-letters and only its offset counts.
        let mut items = Vec::with_capacity(accepted.len());
        for message in &accepted {
            let decoded = self.decoder.decode(stop, message).await?;
            let record = match decoded {
                Ok(record) => record,
                Err(reason) => {
                    dead_letter(&self.dead_letters, self.settings, P::NAME, message, &reason).await?;
                    Projected::Skipped
                }
            };
            items.push(Positioned::of(message, record));
        }
        Ok(items)
    }
}

impl Feed<'_> {
    /// Reads where `key` stands in the store, once: its stored next offset, or with none the
    /// partition's first record (never the group's position).
    async fn know<P: Projection>(
        &mut self,
        projection: &P,
        stop: &CancellationToken,
        key: &(String, i32),
    ) -> anyhow::Result<()> {
        if self.positions.contains_key(key) {
            return Ok(());
        }
        let stored = retry::<P, _, _, _>(stop, &self.settings.health, "reading stored offsets", || {
            projection.next_offset(&key.0, key.1)
        })
        .await?;
        let next = match stored {
            Some(next) => next,
            None => self.low(key, stop).await?,
        };
        self.positions.insert(
            key.clone(),
            Position {
                next,
                confirmed: false,
                sought: false,
            },
        );
        Ok(())
    }

    /// Moves the consumer to `next` on the partition (off the runtime's threads, which the other
    /// projections share: a seek waits on librdkafka); `true` when it took.
    async fn seek(&mut self, key: &(String, i32), next: i64) -> anyhow::Result<bool> {
        let (seeker, (topic, partition)) = (self.consumer.clone(), key.clone());
        let sought = tokio::task::spawn_blocking(move || {
            seeker.seek(&topic, partition, Offset::Offset(next), Duration::from_secs(5))
        })
        .await?;
        if let Err(error) = &sought {
            tracing::debug!(topic = %key.0, partition = key.1, %error, "seek failed; tried again later");
        }
        Ok(sought.is_ok())
    }

    /// Moves the consumer, on every partition assigned to it whose position it has not seen yet,
    /// to the position the store holds. Without this an idle partition would stay wherever the
    /// group's committed offset put it (its end, say, after the store lost its data), since only
    /// an arriving record would reveal the difference.
    pub(super) async fn align<P: Projection>(
        &mut self,
        projection: &P,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let assigned: Vec<(String, i32)> = match self.consumer.assignment() {
            Ok(assigned) => assigned
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "reading the assignment");
                return Ok(());
            }
        };
        for key in assigned {
            self.know(projection, stop, &key).await?;
            let position = &self.positions[&key];
            if position.confirmed || position.sought {
                continue;
            }
            let next = position.next;
            if self.seek(&key, next).await? {
                self.positions.get_mut(&key).expect("known above").sought = true;
            }
        }
        Ok(())
    }

    /// The first offset the partition holds (its low watermark), asked until the broker answers.
    async fn low(&self, (topic, partition): &(String, i32), stop: &CancellationToken) -> anyhow::Result<i64> {
        let ask = || {
            let (reader, topic, partition) = (self.consumer.clone(), topic.clone(), *partition);
            async move {
                tokio::task::spawn_blocking(move || reader.fetch_watermarks(&topic, partition, Duration::from_secs(5)))
                    .await
                    .map_err(anyhow::Error::from)?
                    .map_err(anyhow::Error::from)
            }
        };
        let low = Backoff::SERVICE
            .retry(stop, ask, |error| {
                tracing::warn!(%topic, partition, error = %format!("{error:#}"), "reading the low watermark; retrying");
                true
            })
            .await??;
        Ok(low.0)
    }
}

pub(super) async fn dead_letter(
    producer: &FutureProducer,
    settings: &Settings,
    projection: &'static str,
    message: &OwnedMessage,
    reason: &str,
) -> anyhow::Result<()> {
    let stage = format!("projector-{projection}");
    platform::topics::dead_letter(producer, &settings.dead_letters, message, &stage, reason)
        .await
        .context("writing to dead-letters")?;
    metrics::counter!("vaxtrail_projection_dead_letters_total", "projection" => projection).increment(1);
    Ok(())
}
