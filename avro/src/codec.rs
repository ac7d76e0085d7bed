//! Confluent wire format for the event topics through the schema registry: magic byte 0, the
//! 4-byte schema id, then the Avro body. Encoding uses the subject's latest schema (registered at
//! start-up); decoding fetches the writer's schema by id, so records written with a newer,
//! compatible schema (an added optional field) still decode.

use std::marker::PhantomData;

use apache_avro::types::Value;
use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::SrSettings,
    },
    error::SRCError,
    schema_registry_common::SubjectNameStrategy,
};

use crate::{
    certificate::{self, CertificateEnvelope},
    vaccination::{self, VaccinationEnvelope},
    value::ConvertError,
};

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The registry could not be reached or refused (retry later).
    #[error("schema registry: {0}")]
    Registry(#[from] SRCError),
    /// The record's value is not a valid event (dead-letter it).
    #[error("not a valid event: {0}")]
    Invalid(#[from] ConvertError),
}

impl CodecError {
    /// Whether trying again may succeed (the registry was unreachable), as opposed to the
    /// record's own fault. Logs a retriable error: the caller waits it out.
    pub fn is_retriable(&self) -> bool {
        let retriable = matches!(self, Self::Registry(e) if e.retriable);
        if retriable {
            tracing::warn!(error = %self, "schema registry unavailable; retrying");
        }
        retriable
    }
}

/// A topic's record value type.
pub trait Envelope: Sized {
    fn to_avro(&self) -> Result<Value, ConvertError>;
    fn from_avro(value: &Value) -> Result<Self, ConvertError>;
}

impl Envelope for VaccinationEnvelope {
    fn to_avro(&self) -> Result<Value, ConvertError> {
        Ok(vaccination::to_avro(self))
    }
    fn from_avro(value: &Value) -> Result<Self, ConvertError> {
        vaccination::from_avro(value)
    }
}

impl Envelope for CertificateEnvelope {
    fn to_avro(&self) -> Result<Value, ConvertError> {
        certificate::to_avro(self)
    }
    fn from_avro(value: &Value) -> Result<Self, ConvertError> {
        certificate::from_avro(value)
    }
}

/// Encodes and decodes one topic's values.
pub struct Codec<T> {
    topic: String,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    envelope: PhantomData<fn() -> T>,
}

/// `vaccination-events` values.
pub type VaccinationCodec = Codec<VaccinationEnvelope>;
/// `certificate-events` values.
pub type CertificateCodec = Codec<CertificateEnvelope>;

impl<T: Envelope> Codec<T> {
    /// A codec for `topic` (values under `<topic>-value`) at the registry's base URL.
    pub fn new(registry_url: &str, topic: &str) -> Self {
        let settings = SrSettings::new(registry_url.trim_end_matches('/').to_owned());
        Self {
            topic: topic.to_owned(),
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
            envelope: PhantomData,
        }
    }

    /// The record value bytes of an envelope.
    pub async fn encode(&self, envelope: &T) -> Result<Vec<u8>, CodecError> {
        let Value::Record(fields) = envelope.to_avro()? else {
            unreachable!("an envelope is a record")
        };
        let fields: Vec<(&str, Value)> = fields.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        let strategy = SubjectNameStrategy::TopicNameStrategy(self.topic.clone(), false);
        Ok(self.encoder.encode(fields, strategy).await?)
    }

    /// The envelope in a record's value bytes.
    pub async fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let decoded = self.decoder.decode(Some(bytes)).await?;
        Ok(T::from_avro(&decoded.value)?)
    }
}
