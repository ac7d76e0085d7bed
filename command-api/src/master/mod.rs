//! Master data in the command API: a live view of the compacted `master-data` topic (read from its
//! first record at start, then followed, so a change applies without a restart), the endpoints
//! that change it (an administrator defines programmes, vaccines and facilities; a controller
//! activates and suspends facilities), and what intake asks of it: a programme's time zone and
//! country, the vaccines on the master list, and whether a facility may record.
//!
//! - this module: the view and the writer, and the follower task;
//! - [`routes`]: the endpoints (and CORS for the master-data page);
//! - [`intake`]: what a record's intake asks of master data.

mod intake;
pub(crate) mod routes;

pub(crate) use intake::FacilityCheck;
pub(crate) use routes::{cors, facility_status, list, post_vaccine, put_facility, put_programme, put_vaccinator};

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use avro::{codec::MasterDataCodec, master::MasterEnvelope};
use chrono::Utc;
use domain::{
    master::{MasterData, MasterRecord},
    vaccine::VaccineCatalog,
};
use platform::Shutdown;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};

use crate::problem::Problem;

/// The master data as the topic holds it, followed live.
pub struct MasterView {
    data: RwLock<MasterData>,
    /// The file master list with the vaccines master data adds, rebuilt when they change.
    catalog: RwLock<Arc<VaccineCatalog>>,
    base: VaccineCatalog,
    /// The offset each key was last applied from: a record is applied only if it is newer (the
    /// API applies its own writes at once; the follower then reads them again).
    applied: std::sync::Mutex<HashMap<String, i64>>,
    caught_up: AtomicBool,
}

impl MasterView {
    fn new(base: VaccineCatalog) -> Self {
        Self {
            data: RwLock::new(MasterData::default()),
            catalog: RwLock::new(Arc::new(base.clone())),
            base,
            applied: std::sync::Mutex::new(HashMap::new()),
            caught_up: AtomicBool::new(false),
        }
    }

    /// Reads the master data.
    pub fn read<R>(&self, f: impl FnOnce(&MasterData) -> R) -> R {
        f(&self.data.read().expect("never poisoned"))
    }

    /// The vaccine master list: the file's, and master data's.
    pub fn catalog(&self) -> Arc<VaccineCatalog> {
        self.catalog.read().expect("never poisoned").clone()
    }

    /// Whether the view has read the topic up to where it ended at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    fn apply(&self, offset: i64, record: MasterRecord) {
        let key = record.key();
        {
            let mut applied = self.applied.lock().expect("never poisoned");
            if applied.get(&key).is_some_and(|&seen| seen >= offset) {
                return;
            }
            applied.insert(key, offset);
        }
        let vaccine = matches!(record, MasterRecord::Vaccine(_));
        let mut data = self.data.write().expect("never poisoned");
        data.apply(record);
        if vaccine {
            let catalog = self.base.clone().with(data.vaccines().map(|v| v.vaccine.clone()));
            *self.catalog.write().expect("never poisoned") = Arc::new(catalog);
        }
        metrics::gauge!("vaxtrail_master_data_records").set(self.applied.lock().expect("never poisoned").len() as f64);
    }
}

/// Appends master-data changes and follows the topic.
pub struct Master {
    pub view: Arc<MasterView>,
    topic: String,
    codec: MasterDataCodec,
    producer: FutureProducer,
    timeout: Duration,
}

impl Master {
    /// Starts following `topic` from its first record.
    pub fn start(
        kafka: &platform::KafkaArgs,
        topic: &str,
        base: VaccineCatalog,
        timeout: Duration,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let client = platform::Kafka::new(&kafka.brokers);
        let view = Arc::new(MasterView::new(base));
        let consumer: StreamConsumer = client.reader(&format!("{topic}-view"))?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        tokio::spawn(follow(
            consumer,
            kafka.brokers.clone(),
            topic.to_owned(),
            MasterDataCodec::new(&kafka.schema_registry_url, topic),
            view.clone(),
            shutdown,
        ));
        Ok(Self {
            view,
            topic: topic.to_owned(),
            codec: MasterDataCodec::new(&kafka.schema_registry_url, topic),
            producer: client.producer()?,
            timeout,
        })
    }

    /// Appends a change; once the broker has it, the view shows it.
    async fn append(&self, actor: &str, record: MasterRecord) -> Result<(), Problem> {
        let envelope = MasterEnvelope {
            recorded_at: Utc::now(),
            actor: actor.to_owned(),
            record,
        };
        let bytes = self
            .codec
            .encode(&envelope)
            .await
            .map_err(|e| crate::problem::unavailable(&e))?;
        let key = envelope.record.key();
        let delivery = self
            .producer
            .send(FutureRecord::to(&self.topic).key(&key).payload(&bytes), self.timeout)
            .await
            .map_err(|(e, _)| crate::problem::unavailable(&e))?;
        metrics::counter!("vaxtrail_master_data_changes_total").increment(1);
        self.view.apply(delivery.offset, envelope.record);
        Ok(())
    }
}

/// Reads the topic from its first record for as long as the service runs.
async fn follow(
    consumer: StreamConsumer,
    brokers: String,
    topic: String,
    codec: MasterDataCodec,
    view: Arc<MasterView>,
    shutdown: Shutdown,
) {
    // Where the topic ended at start: the view is ready once it has read that far.
    let end = loop {
        let watermarks = platform::log::watermarks_async(&brokers, std::slice::from_ref(&topic)).await;
        match watermarks {
            Ok(marks) => break marks.iter().map(|w| w.high).max().unwrap_or(0),
            Err(error) => {
                tracing::warn!(%error, "reading the master-data topic's end; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    if end == 0 {
        view.caught_up.store(true, Ordering::Release);
    }
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message.detach(),
            Err(error) => {
                tracing::warn!(%error, "reading master-data");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let offset = message.offset();
        // A record that does not decode (a bug, or a newer schema) is skipped with its reason:
        // the rest of the master data still applies.
        let decoded = platform::Backoff::REGISTRY
            .retry(
                &shutdown,
                || codec.decode(message.payload().unwrap_or_default()),
                avro::codec::CodecError::is_retriable,
            )
            .await;
        match decoded {
            Ok(Ok(envelope)) => view.apply(offset, envelope.record),
            Ok(Err(error)) => {
                metrics::counter!("vaxtrail_master_data_undecodable_total").increment(1);
                tracing::error!(offset, %error, "a master-data record does not decode; skipped");
            }
            Err(_) => return,
        }
        if offset + 1 >= end {
            view.caught_up.store(true, Ordering::Release);
        }
    }
}
