//! Confluent wire format for `vaccination-events` through the schema registry: magic byte 0, the
//! 4-byte schema id, then the Avro body. Encoding uses the subject's latest schema (registered at
//! start-up); decoding fetches the writer's schema by id, so records written with a newer,
//! compatible schema (an added optional field) still decode.

use schema_registry_converter::{
    async_impl::{
        avro::{AvroDecoder, AvroEncoder},
        schema_registry::SrSettings,
    },
    error::SRCError,
    schema_registry_common::SubjectNameStrategy,
};

use crate::{
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

/// Encodes and decodes one topic's values.
pub struct VaccinationCodec {
    topic: String,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
}

impl VaccinationCodec {
    /// A codec for `topic` (values under `<topic>-value`) at the registry's base URL.
    pub fn new(registry_url: &str, topic: &str) -> Self {
        let settings = SrSettings::new(registry_url.trim_end_matches('/').to_owned());
        Self {
            topic: topic.to_owned(),
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
        }
    }

    /// The record value bytes of an envelope.
    pub async fn encode(&self, envelope: &VaccinationEnvelope) -> Result<Vec<u8>, CodecError> {
        let apache_avro::types::Value::Record(fields) = vaccination::to_avro(envelope) else {
            unreachable!("an envelope is a record")
        };
        let fields: Vec<(&str, apache_avro::types::Value)> =
            fields.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        let strategy = SubjectNameStrategy::TopicNameStrategy(self.topic.clone(), false);
        Ok(self.encoder.encode(fields, strategy).await?)
    }

    /// The envelope in a record's value bytes.
    pub async fn decode(&self, bytes: &[u8]) -> Result<VaccinationEnvelope, CodecError> {
        let decoded = self.decoder.decode(Some(bytes)).await?;
        Ok(vaccination::from_avro(&decoded.value)?)
    }
}
