//! The signer as the tests drive it: an issuer key of the test's own, `signer-worker` processes
//! (so they can be killed with SIGKILL), vaccination events written straight to the topic, and
//! the certificate log read back.

use std::{path::PathBuf, process::Stdio, time::Duration};

use avro::{
    certificate::{CertificateBody, CertificateEnvelope},
    codec::{CertificateCodec, VaccinationCodec},
    vaccination::{Provenance, VaccinationEnvelope},
};
use credentials::{IssuerKey, Keyring, keys};
use domain::{
    events::{VaccinationEvent, VaccinationPayload},
    ids::EventId,
    values::{RecipientKey, RecipientKeySecret},
};
use rdkafka::{
    Message,
    producer::{FutureProducer, FutureRecord},
};
use sha2::Digest;

use crate::TestStack;

/// The issuer's DID in tests.
pub const DID: &str = "did:web:certificates.test";

/// A key directory holding one fresh key, `key-1`.
pub struct Issuer {
    pub dir: PathBuf,
    pub keyring: Keyring,
    _scratch: crate::Scratch,
}

impl Issuer {
    pub fn new() -> Self {
        let scratch = crate::Scratch::new("issuer");
        let dir = scratch.0.clone();
        let pem = keys::generate_pem();
        std::fs::write(dir.join("key-1.pem"), &pem).expect("the temp dir is writable");
        let keyring = Keyring::new(
            DID,
            vec![IssuerKey::from_pem("key-1", &pem).expect("a fresh key")],
            None,
        )
        .expect("one private key");
        Self {
            dir,
            keyring,
            _scratch: scratch,
        }
    }
}

/// Where the public halves of a key directory are published for the query API (beside it).
pub fn public_dir(keys: &std::path::Path) -> PathBuf {
    keys.with_extension("public")
}

/// Publishes the public halves of `keys` ([`public_dir`]) and returns that directory.
pub fn publish(keys: &std::path::Path) -> PathBuf {
    let public = public_dir(keys);
    credentials::keys::publish(keys, &public).expect("publishing the test's keys");
    public
}

impl Default for Issuer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        // The key directory is a Scratch, removed with it; its published half is beside it.
        let _ = std::fs::remove_dir_all(public_dir(&self.dir));
    }
}

/// One `signer-worker` process on the test's topics, signing with `issuer`'s keys, logging to
/// the test's stderr; `env` adds or overrides variables. (Tests that kill the signer need a
/// process; others may run it in-process: [`crate::inprocess::signer`].)
pub fn spawn(stack: &TestStack, issuer: &Issuer, env: &[(&str, &str)]) -> crate::e2e::Service {
    let env = crate::e2e::service_env(stack, &issuer.dir)
        .into_iter()
        .chain([("VAXTRAIL_LOG".to_owned(), "info,rdkafka=warn".to_owned())])
        .chain(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    crate::e2e::Service::launch("signer-worker", env, Stdio::null(), Stdio::inherit())
}

/// Writes vaccination events the way the command API does.
pub struct EventWriter {
    topic: String,
    producer: FutureProducer,
    codec: VaccinationCodec,
}

impl EventWriter {
    /// Creates the topics and registers the schemas under the test's prefix.
    pub async fn new(stack: &TestStack) -> Self {
        stack.create_event_topics().await;
        avro::client::RegistryClient::new(&stack.kafka.schema_registry_url)
            .register_event_schemas(&stack.kafka.topic_prefix)
            .await
            .expect("registering the test's schemas");
        let topic = stack.topic("vaccination-events");
        Self {
            codec: VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic),
            producer: platform::Kafka::new(&stack.kafka.brokers)
                .producer()
                .expect("a producer"),
            topic,
        }
    }

    /// Appends an event; its partition and offset.
    pub async fn append(&self, envelope: &VaccinationEnvelope) -> (i32, i64) {
        let bytes = self.codec.encode(envelope).await.expect("encodes");
        self.append_bytes(envelope.event.recipient_key.as_str(), &bytes, None)
            .await
    }

    /// Appends raw value bytes (to `partition`, or by key).
    pub async fn append_bytes(&self, key: &str, bytes: &[u8], partition: Option<i32>) -> (i32, i64) {
        let mut record = FutureRecord::to(&self.topic).key(key).payload(bytes);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(e, _)| e)
            .expect("the broker acknowledges")
    }
}

/// The recipient key of an identity under the tests' secret.
pub fn recipient(identity: &str) -> RecipientKey {
    let identity = domain::values::Identity::parse("identity", identity).expect("a URI");
    RecipientKey::derive(&RecipientKeySecret::new("tests"), &identity)
}

/// An event from source system `tests` with record id `id`.
pub fn envelope(id: &str, recipient: RecipientKey, payload: VaccinationPayload) -> VaccinationEnvelope {
    VaccinationEnvelope {
        event: VaccinationEvent {
            event_id: EventId::derive("tests", id),
            recipient_key: recipient,
            payload,
        },
        provenance: Provenance {
            occurred_at: chrono::Utc::now(),
            recorded_at: chrono::Utc::now(),
            source_system: "tests".into(),
            source_record_id: id.into(),
            actor: "tests".into(),
        },
    }
}

/// One record of `certificate-events`, decoded.
#[derive(Clone, Debug)]
pub struct CertificateRecord {
    pub partition: i32,
    pub offset: i64,
    pub sha256: [u8; 32],
    pub envelope: CertificateEnvelope,
}

/// How many outcomes answer each vaccination event, by its id (checkpoints and status lists
/// aside): its length is the number of events answered.
pub fn outcomes_per_event(records: &[CertificateRecord]) -> std::collections::HashMap<EventId, usize> {
    let mut per_event = std::collections::HashMap::new();
    for r in records {
        if let CertificateBody::Outcome { event, .. } = &r.envelope.body {
            *per_event.entry(event.answers).or_insert(0) += 1;
        }
    }
    per_event
}

/// Every record of the test's `certificate-events` once `done` says the log is complete, or
/// panics after `deadline`.
pub async fn read_certificates(
    stack: &TestStack,
    deadline: Duration,
    done: impl Fn(&[CertificateRecord]) -> bool,
) -> Vec<CertificateRecord> {
    let topic = stack.topic("certificate-events");
    let codec = CertificateCodec::new(&stack.kafka.schema_registry_url, &topic).with_keys(stack.keys());
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let total = crate::kafka::count(&stack.kafka.brokers, &topic, stack.kafka.partitions) as usize;
        let messages = crate::kafka::read(
            &stack.kafka.brokers,
            &topic,
            stack.kafka.partitions,
            total,
            Duration::from_secs(30),
        );
        let mut records = Vec::with_capacity(messages.len());
        for m in &messages {
            let bytes = m.payload().unwrap_or_default();
            records.push(CertificateRecord {
                partition: m.partition(),
                offset: m.offset(),
                sha256: sha2::Sha256::digest(bytes).into(),
                envelope: codec.decode(bytes).await.expect("the signer writes valid records"),
            });
        }
        if done(&records) {
            return records;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "certificate-events incomplete after {deadline:?} ({} records)",
            records.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
