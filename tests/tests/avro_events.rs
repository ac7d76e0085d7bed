//! The event topics' schemas in the real registry: a record encoded in Confluent's wire format
//! decodes to the same domain event; a v2 with a new optional field is accepted under
//! BACKWARD_TRANSITIVE and a consumer built on v1 still reads v2 records; an incompatible change
//! is refused.

use apache_avro::types::Value;
use avro::{
    client::{ClientError, RegistryClient},
    codec::VaccinationCodec,
    vaccination::{Provenance, VaccinationEnvelope},
};
use chrono::{TimeZone, Utc};
use domain::{
    events::{VaccinationEvent, VaccinationPayload},
    ids::EventId,
    values::{RecipientKey, RecipientKeySecret},
};
use schema_registry_converter::{
    async_impl::{avro::AvroEncoder, schema_registry::SrSettings},
    schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema},
};
use vaxtrail_tests::{TestStack, fixtures::divoc_record};

fn envelope() -> VaccinationEnvelope {
    let record = divoc_record();
    VaccinationEnvelope {
        event: VaccinationEvent {
            event_id: EventId::derive("cowin", "1112-1234-1"),
            recipient_key: RecipientKey::derive(&RecipientKeySecret::new("test"), &record.recipient.identity),
            payload: VaccinationPayload::VaccinationRecorded(record),
        },
        provenance: Provenance {
            occurred_at: Utc.with_ymd_and_hms(2020, 12, 2, 19, 21, 18).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2020, 12, 2, 19, 21, 20).unwrap(),
            source_system: "cowin".into(),
            source_record_id: "1112-1234-1".into(),
            actor: "facility-1".into(),
        },
    }
}

/// The bundled envelope schema with one more top-level field.
fn with_field(field: serde_json::Value) -> String {
    let mut schema: serde_json::Value = serde_json::from_str(avro::schemas::VACCINATION_EVENTS).unwrap();
    schema["fields"].as_array_mut().unwrap().push(field);
    schema.to_string()
}

#[tokio::test]
async fn a_v1_consumer_reads_records_written_with_a_compatible_v2() {
    let stack = TestStack::new().await;
    let registry = RegistryClient::new(&stack.kafka.schema_registry_url);
    registry
        .register_event_schemas(&stack.kafka.topic_prefix)
        .await
        .unwrap();
    let topic = stack.topic("vaccination-events");
    let codec = VaccinationCodec::new(&stack.kafka.schema_registry_url, &topic);

    // v1 round trip in Confluent's wire format.
    let original = envelope();
    let bytes = codec.encode(&original).await.unwrap();
    assert_eq!(bytes[0], 0, "Confluent's magic byte");
    assert_eq!(codec.decode(&bytes).await.unwrap(), original);

    // v2 adds an optional field: compatible under BACKWARD_TRANSITIVE.
    let v2 = with_field(serde_json::json!({
        "name": "traceId", "type": ["null", "string"], "default": null, "doc": "Trace of the request."
    }));
    let subject = format!("{topic}-value");
    let v2_id = registry.register(&subject, &v2).await.unwrap();

    // A producer on v2 writes the new field...
    let Value::Record(mut fields) = avro::vaccination::to_avro(&original) else {
        unreachable!()
    };
    fields.push((
        "traceId".into(),
        Value::Union(1, Box::new(Value::String("trace-7".into()))),
    ));
    let encoder = AvroEncoder::new(SrSettings::new(stack.kafka.schema_registry_url.clone()));
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, v2);
    let v2_bytes = encoder
        .encode(
            fields.iter().map(|(n, v)| (n.as_str(), v.clone())).collect(),
            SubjectNameStrategy::TopicNameStrategyWithSchema(topic.clone(), false, supplied),
        )
        .await
        .unwrap();
    assert_eq!(
        u32::from_be_bytes(v2_bytes[1..5].try_into().unwrap()),
        v2_id,
        "written with v2"
    );
    // ...and the v1 consumer code reads the same event.
    assert_eq!(codec.decode(&v2_bytes).await.unwrap(), original);
}

#[tokio::test]
async fn an_incompatible_change_is_refused_by_the_registry() {
    let stack = TestStack::new().await;
    let registry = RegistryClient::new(&stack.kafka.schema_registry_url);
    registry
        .register_event_schemas(&stack.kafka.topic_prefix)
        .await
        .unwrap();
    let subject = format!("{}-value", stack.topic("vaccination-events"));
    // A new field without a default: v2 readers cannot read v1 records.
    let v2 = with_field(serde_json::json!({ "name": "traceId", "type": "string", "doc": "Trace of the request." }));
    match registry.register(&subject, &v2).await {
        Err(ClientError::Refused {
            status: 409,
            code: 409,
            message,
        }) => assert!(message.contains("version 1"), "{message}"),
        other => panic!("expected 409, got {other:?}"),
    }
}
