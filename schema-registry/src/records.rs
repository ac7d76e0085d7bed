//! The records of the `_schemas` topic, in Confluent Schema Registry's key/value JSON format, so
//! that a Confluent registry or Karapace can take over the same topic (and we can read theirs).

use serde::{Deserialize, Serialize};

/// A record key. Field order matters for log compaction: the same logical key must always
/// serialize to the same bytes, in the order Confluent writes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordKey {
    /// A schema version registered under a subject.
    Schema { subject: String, version: u32, magic: u32 },
    /// A compatibility setting: global when `subject` is null.
    Config { subject: Option<String>, magic: u32 },
    /// A soft deletion of a subject.
    DeleteSubject { subject: String, magic: u32 },
    /// Written by Confluent's registry to find the end of the log; carries nothing.
    Noop { magic: u32 },
}

impl RecordKey {
    /// The key of a schema version.
    pub fn schema(subject: &str, version: u32) -> Self {
        Self::Schema {
            subject: subject.to_owned(),
            version,
            magic: 1,
        }
    }

    /// The key of a compatibility setting (`None` = global).
    pub fn config(subject: Option<&str>) -> Self {
        Self::Config {
            subject: subject.map(str::to_owned),
            magic: 0,
        }
    }
}

/// The value of a `SCHEMA` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
    #[serde(default)]
    pub deleted: bool,
    /// Absent for Avro, as Confluent writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
}

/// The value of a `CONFIG` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigValue {
    pub compatibility_level: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_serialize_exactly_as_confluent_writes_them() {
        let key = serde_json::to_string(&RecordKey::schema("vaccination-events-value", 3)).unwrap();
        assert_eq!(
            key,
            r#"{"keytype":"SCHEMA","subject":"vaccination-events-value","version":3,"magic":1}"#
        );
        let global = serde_json::to_string(&RecordKey::config(None)).unwrap();
        assert_eq!(global, r#"{"keytype":"CONFIG","subject":null,"magic":0}"#);
    }

    #[test]
    fn confluent_schema_values_are_read_including_unknown_fields() {
        let value: SchemaValue = serde_json::from_str(
            r#"{"subject":"s","version":1,"id":7,"schema":"\"string\"","deleted":false,"references":[]}"#,
        )
        .unwrap();
        assert_eq!(value.id, 7);
        assert_eq!(value.schema_type, None);
        let noop: RecordKey = serde_json::from_str(r#"{"keytype":"NOOP","magic":0}"#).unwrap();
        assert_eq!(noop, RecordKey::Noop { magic: 0 });
    }
}
