//! The in-flight output: records sent in order with several awaiting the broker, folded into the
//! state when sent and settled when acknowledged.

use super::*;

pub(super) struct InFlight {
    pub(super) partition: i32,
    pub(super) hash: Sha256,
    pub(super) delivery: DeliveryFuture,
}

pub(super) fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    platform::Kafka::new(brokers)
        .tuned(platform::Tuning {
            // Signing takes milliseconds per record: wait a little to send several per batch,
            // which makes the log cheaper to read back when a partition is taken over.
            linger: Duration::from_millis(50),
            ..platform::Tuning::default()
        })
        .producer()
        .context("creating the certificate-events producer")
}

pub(super) fn sha256(bytes: &[u8]) -> Sha256 {
    sha2::Sha256::digest(bytes).into()
}

impl Worker {
    /// Encodes, sends (in order, several in flight) and folds one output record.
    pub(super) async fn append(
        &mut self,
        partition: i32,
        record: &CertificateEnvelope,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let bytes = self.encode(record, stop).await?;
        let hash = sha256(&bytes);
        let key = match &record.body {
            CertificateBody::Outcome { recipient_key, .. } => recipient_key.as_str().to_owned(),
            CertificateBody::SealedIssue(_) => anyhow::bail!("a sealed issue is only read, never written"),
            CertificateBody::Checkpoint(_) => format!("checkpoint-{partition}"),
            CertificateBody::StatusList(_) => format!("status-list-{partition}"),
        };
        while self.in_flight.len() >= self.settings.max_in_flight {
            self.settle(true).await?;
        }
        let producer = self.producer.lock().expect("not poisoned").clone();
        // An outcome carries the trace of the record it answers; checkpoints start none.
        let headers = TraceContext::current().map(|trace| trace.add_to(OwnedHeaders::new()));
        let mut out = FutureRecord::to(&self.settings.certificate_events)
            .partition(partition)
            .key(&key)
            .payload(&bytes);
        if let Some(headers) = headers {
            out = out.headers(headers);
        }
        let delivery = producer
            .send_result(out)
            .map_err(|(error, _)| anyhow::anyhow!("queueing a certificate-events record: {error}"))?;
        self.in_flight.push_back(InFlight {
            partition,
            hash,
            delivery,
        });
        self.states.get_mut(&partition).expect("present").fold(record, hash)
    }

    pub(super) async fn encode(
        &self,
        record: &CertificateEnvelope,
        stop: &CancellationToken,
    ) -> anyhow::Result<Vec<u8>> {
        Backoff::REGISTRY
            .retry(stop, || self.certificates.encode(record), CodecError::is_retriable)
            .await?
            .context("encoding a certificate-events record")
    }

    /// Awaits acknowledgements: the oldest one if `block`, else only those already in.
    pub(super) async fn settle(&mut self, block: bool) -> anyhow::Result<()> {
        while let Some(front) = self.in_flight.front_mut() {
            let result = if block {
                Some((&mut front.delivery).await)
            } else {
                (&mut front.delivery).now_or_never()
            };
            let Some(result) = result else { break };
            let done = self.in_flight.pop_front().expect("front exists");
            let delivery = result.context("the producer was dropped")?;
            let (partition, offset) = match delivery {
                Ok(delivery) => (delivery.partition, delivery.offset),
                Err((error, _)) => anyhow::bail!("certificate-events write failed: {error}"),
            };
            debug_assert_eq!(partition, done.partition);
            if let Some(state) = self.states.get_mut(&done.partition) {
                state.last_delivered = Some((offset, done.hash));
                state.output_end = offset + 1;
            }
            if block {
                break;
            }
        }
        Ok(())
    }

    pub(super) async fn drain(&mut self) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.settle(true).await?;
        }
        Ok(())
    }
}
