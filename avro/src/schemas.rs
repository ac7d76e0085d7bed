//! The Avro schemas of the event topics, one envelope per topic with the payload a union of that
//! topic's event records. Registered under Confluent's `<topic>-value` subjects with
//! BACKWARD_TRANSITIVE compatibility, so a new optional field never breaks a running consumer.

use apache_avro::Schema;

/// The value schema of `vaccination-events`.
pub const VACCINATION_EVENTS: &str = include_str!("../schemas/vaccination-events.avsc");
/// The value schema of `certificate-events`.
pub const CERTIFICATE_EVENTS: &str = include_str!("../schemas/certificate-events.avsc");

/// The value schema of the compacted `master-data` topic.
pub const MASTER_DATA: &str = include_str!("../schemas/master-data.avsc");

/// The subject a topic's value schema is registered under (Confluent's TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// Each event topic's base name (without prefix) and its value schema.
pub fn by_topic() -> [(&'static str, &'static str); 3] {
    [
        ("vaccination-events", VACCINATION_EVENTS),
        ("certificate-events", CERTIFICATE_EVENTS),
        ("master-data", MASTER_DATA),
    ]
}

/// Parses a bundled schema; they are checked by the tests below, so this cannot fail in use.
pub fn parse(text: &str) -> Schema {
    Schema::parse_str(text).expect("bundled schemas are valid Avro")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_schemas_parse_and_every_field_is_documented() {
        for (topic, text) in by_topic() {
            parse(text);
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut undocumented = Vec::new();
            collect_undocumented(&json, &mut undocumented);
            assert!(undocumented.is_empty(), "{topic}: fields without doc: {undocumented:?}");
        }
    }

    fn collect_undocumented(node: &serde_json::Value, out: &mut Vec<String>) {
        match node {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(fields)) = map.get("fields") {
                    for field in fields {
                        if field.get("doc").is_none() {
                            out.push(field["name"].to_string());
                        }
                    }
                }
                map.values().for_each(|v| collect_undocumented(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_undocumented(v, out)),
            _ => {}
        }
    }
}
