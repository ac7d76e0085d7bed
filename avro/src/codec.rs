//! Confluent wire format for the event topics through the schema registry: magic byte 0, the
//! 4-byte schema id, then the Avro body. Encoding uses the subject's latest schema (registered at
//! start-up); decoding fetches the writer's schema by id, so records written with a newer,
//! compatible schema (an added optional field) still decode.

use std::{marker::PhantomData, sync::Arc};

use apache_avro::types::Value;
use domain::values::RecipientKey;
use futures::{FutureExt, future::BoxFuture};
use privacy::DataKeys;
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
    sealing,
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
    /// The key store could not answer (retry later).
    #[error("key store: {0}")]
    Keys(#[from] privacy::KeysError),
    /// The record's personal data is sealed and cannot be opened here.
    #[error("event {event_id}: the personal data is sealed and {why}")]
    Sealed {
        event_id: String,
        /// The payload record's name (`VaccinationRecorded`, `VaccinationCorrected`).
        event_type: String,
        recipient_key: RecipientKey,
        /// The data key that sealed it (which the log names in the clear).
        key_id: privacy::KeyId,
        why: Unreadable,
    },
}

/// Why a sealed record could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Its data key is gone: the recipient was erased.
    #[error("its data key was erased")]
    Erased,
    /// This reader has no key store (set VAXTRAIL_KEYSTORE_URL and VAXTRAIL_KEK_FILE).
    #[error("this process has no key store (set VAXTRAIL_KEYSTORE_URL and VAXTRAIL_KEK_FILE)")]
    NoKeyStore,
}

impl CodecError {
    /// Whether trying again may succeed (the registry was unreachable), as opposed to the
    /// record's own fault. Logs a retriable error: the caller waits it out.
    pub fn is_retriable(&self) -> bool {
        let retriable = match self {
            Self::Registry(e) => e.retriable,
            // A key store outage, a key that does not unwrap with this deployment's
            // key-encryption key, or a process configured without the key store: waiting (and
            // saying so) loses nothing, where dead-lettering would.
            Self::Keys(_) => true,
            Self::Sealed { why, .. } => *why == Unreadable::NoKeyStore,
            Self::Invalid(_) => false,
        };
        if retriable {
            tracing::warn!(error = %self, "cannot read the record yet; retrying");
        }
        retriable
    }

    /// The erased recipient's key, when the record could not be read because they were erased.
    pub fn erased(&self) -> Option<(&str, &RecipientKey)> {
        match self {
            Self::Sealed {
                event_id,
                recipient_key,
                why: Unreadable::Erased,
                ..
            } => Some((event_id, recipient_key)),
            _ => None,
        }
    }
}

/// A topic's record value type.
pub trait Envelope: Sized {
    fn to_avro(&self) -> Result<Value, ConvertError>;
    fn from_avro(value: &Value) -> Result<Self, ConvertError>;
    /// Seals the value's personal parts with the recipient's data key.
    fn seal<'a>(value: &'a mut Value, keys: &'a dyn DataKeys) -> BoxFuture<'a, Result<(), CodecError>>;
    /// Opens the value's sealed parts in place, as far as the keys allow.
    fn open<'a>(value: &'a mut Value, keys: Option<&'a dyn DataKeys>) -> BoxFuture<'a, Result<(), CodecError>>;
    /// The recipient whose data key sealing this envelope takes, when a caller may fetch it ahead
    /// ([`Codec::key_for_writing`]); `None` when there is nothing to seal or no fetching ahead.
    fn sealed_for(&self) -> Option<&RecipientKey> {
        None
    }
}

impl Envelope for VaccinationEnvelope {
    fn to_avro(&self) -> Result<Value, ConvertError> {
        Ok(vaccination::to_avro(self))
    }
    fn from_avro(value: &Value) -> Result<Self, ConvertError> {
        vaccination::from_avro(value)
    }
    fn seal<'a>(value: &'a mut Value, keys: &'a dyn DataKeys) -> BoxFuture<'a, Result<(), CodecError>> {
        sealing::seal_vaccination(value, keys).boxed()
    }
    fn open<'a>(value: &'a mut Value, keys: Option<&'a dyn DataKeys>) -> BoxFuture<'a, Result<(), CodecError>> {
        sealing::open_vaccination(value, keys).boxed()
    }
    fn sealed_for(&self) -> Option<&RecipientKey> {
        self.event.payload.record().map(|_| &self.event.recipient_key)
    }
}

impl Envelope for CertificateEnvelope {
    fn to_avro(&self) -> Result<Value, ConvertError> {
        certificate::to_avro(self)
    }
    fn from_avro(value: &Value) -> Result<Self, ConvertError> {
        certificate::from_avro(value)
    }
    fn seal<'a>(value: &'a mut Value, keys: &'a dyn DataKeys) -> BoxFuture<'a, Result<(), CodecError>> {
        sealing::seal_certificate(value, keys).boxed()
    }
    fn open<'a>(value: &'a mut Value, keys: Option<&'a dyn DataKeys>) -> BoxFuture<'a, Result<(), CodecError>> {
        sealing::open_certificate(value, keys).boxed()
    }
}

/// A recipient's data key fetched ahead of encoding ([`Codec::key_for_writing`]).
pub struct WriteKey {
    recipient: RecipientKey,
    id: privacy::KeyId,
    key: privacy::DataKey,
}

/// Gives the one key it holds to the sealing of its recipient's envelope.
impl DataKeys for WriteKey {
    fn for_writing<'a>(
        &'a self,
        recipient: &'a RecipientKey,
    ) -> BoxFuture<'a, Result<(privacy::KeyId, privacy::DataKey), privacy::KeysError>> {
        let found = if *recipient == self.recipient {
            Ok((self.id, self.key.clone()))
        } else {
            Err(privacy::KeysError::Unavailable(
                "a key fetched ahead for another recipient".into(),
            ))
        };
        futures::future::ready(found).boxed()
    }
    fn for_reading<'a>(
        &'a self,
        _: &'a RecipientKey,
        _: privacy::KeyId,
    ) -> BoxFuture<'a, Result<Option<privacy::DataKey>, privacy::KeysError>> {
        futures::future::ready(Err(privacy::KeysError::Unavailable(
            "a key fetched ahead is for writing only".into(),
        )))
        .boxed()
    }
    fn forget(&self, _: &RecipientKey) {}
}

/// Master data holds no personal data: nothing to seal.
impl Envelope for crate::master::MasterEnvelope {
    fn to_avro(&self) -> Result<Value, ConvertError> {
        Ok(crate::master::to_avro(self))
    }
    fn from_avro(value: &Value) -> Result<Self, ConvertError> {
        crate::master::from_avro(value)
    }
    fn seal<'a>(_: &'a mut Value, _: &'a dyn DataKeys) -> BoxFuture<'a, Result<(), CodecError>> {
        futures::future::ready(Ok(())).boxed()
    }
    fn open<'a>(_: &'a mut Value, _: Option<&'a dyn DataKeys>) -> BoxFuture<'a, Result<(), CodecError>> {
        futures::future::ready(Ok(())).boxed()
    }
}

/// Encodes and decodes one topic's values.
pub struct Codec<T> {
    topic: String,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    keys: Option<Arc<dyn DataKeys>>,
    envelope: PhantomData<fn() -> T>,
}

/// `master-data` values.
pub type MasterDataCodec = Codec<crate::master::MasterEnvelope>;
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
            keys: None,
            envelope: PhantomData,
        }
    }

    /// Seals what it encodes and opens what it decodes with the key store's data keys. Without
    /// one (development only) it writes personal data in the clear and cannot open sealed records.
    pub fn with_keys(mut self, keys: Option<Arc<dyn DataKeys>>) -> Self {
        self.keys = keys;
        self
    }

    /// The record value bytes of an envelope.
    pub async fn encode(&self, envelope: &T) -> Result<Vec<u8>, CodecError> {
        self.encode_with(envelope, None).await
    }

    /// The data key [`Codec::encode_with`] will seal `envelope` with, fetched now, so that a caller
    /// can wait for the key store beside its other round trips. `None` when there is no key store
    /// or nothing to seal (and for envelopes that are not fetched ahead).
    pub async fn key_for_writing(&self, envelope: &T) -> Result<Option<WriteKey>, CodecError> {
        let (Some(keys), Some(recipient)) = (&self.keys, envelope.sealed_for()) else {
            return Ok(None);
        };
        let (id, key) = keys.for_writing(recipient).await?;
        Ok(Some(WriteKey {
            recipient: recipient.clone(),
            id,
            key,
        }))
    }

    /// The record value bytes of an envelope, sealed with `key` when it was fetched ahead for this
    /// envelope's recipient (otherwise with the key the key store gives now).
    pub async fn encode_with(&self, envelope: &T, key: Option<WriteKey>) -> Result<Vec<u8>, CodecError> {
        let mut value = envelope.to_avro()?;
        if let Some(keys) = &self.keys {
            match key {
                Some(key) if Some(&key.recipient) == envelope.sealed_for() => T::seal(&mut value, &key).await?,
                _ => T::seal(&mut value, keys.as_ref()).await?,
            }
        }
        let Value::Record(fields) = value else {
            unreachable!("an envelope is a record")
        };
        let (names, values): (Vec<String>, Vec<Value>) = fields.into_iter().unzip();
        let fields: Vec<(&str, Value)> = names.iter().map(String::as_str).zip(values).collect();
        let strategy = SubjectNameStrategy::TopicNameStrategy(self.topic.clone(), false);
        Ok(self.encoder.encode(fields, strategy).await?)
    }

    /// The envelope in a record's value bytes.
    pub async fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let mut value = self.decoder.decode(Some(bytes)).await?.value;
        T::open(&mut value, self.keys.as_deref()).await?;
        Ok(T::from_avro(&value)?)
    }
}
