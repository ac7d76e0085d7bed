//! The registry's state, folded from the `_schemas` log: subjects and their versions, schemas by
//! id, and compatibility settings. Pure: the log is the only source of truth, this is its view.

use std::collections::{BTreeMap, HashMap};

use apache_avro::Schema;

use crate::{
    compat::{Check, CompatibilityLevel},
    records::{ConfigValue, RecordKey, SchemaValue},
};

/// One version of a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub version: u32,
    pub id: u32,
    pub schema: String,
    pub deleted: bool,
}

/// What registering a schema under a subject would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The subject already has this schema: answer its id, write nothing.
    Existing(u32),
    /// Write a new version (the id is reused when another subject has the same schema).
    New { id: u32, version: u32 },
}

/// A schema parsed and brought to the text form the registry stores and compares.
#[derive(Clone, Debug)]
pub struct Normalized {
    /// Compact JSON with sorted keys: two submissions of the same schema compare equal.
    pub text: String,
    pub schema: Schema,
}

/// Parses a submitted schema. The error says why it is not a valid Avro schema.
pub fn normalize(submitted: &str) -> Result<Normalized, String> {
    let json: serde_json::Value =
        serde_json::from_str(submitted).map_err(|e| format!("schema is not valid JSON: {e}"))?;
    let text = json.to_string();
    let schema = Schema::parse_str(&text).map_err(|e| format!("schema is not valid Avro: {e}"))?;
    Ok(Normalized { text, schema })
}

/// The folded state.
#[derive(Debug, Default)]
pub struct RegistryState {
    subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    schemas: BTreeMap<u32, String>,
    ids_by_text: HashMap<String, u32>,
    global: Option<CompatibilityLevel>,
    per_subject: HashMap<String, CompatibilityLevel>,
}

impl RegistryState {
    /// Applies one `_schemas` record. A record this registry does not understand is reported and
    /// left out; it never stops the log being read.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key: RecordKey = serde_json::from_slice(key).map_err(|e| format!("unreadable key: {e}"))?;
        match (key, value) {
            (RecordKey::Schema { subject, version, .. }, None) => {
                if let Some(versions) = self.subjects.get_mut(&subject) {
                    versions.remove(&version);
                }
            }
            (RecordKey::Schema { .. }, Some(value)) => {
                let value: SchemaValue =
                    serde_json::from_slice(value).map_err(|e| format!("unreadable schema value: {e}"))?;
                let text = normalize(&value.schema).map(|n| n.text).unwrap_or(value.schema);
                self.schemas.entry(value.id).or_insert_with(|| text.clone());
                self.ids_by_text.entry(text.clone()).or_insert(value.id);
                self.subjects.entry(value.subject).or_default().insert(
                    value.version,
                    Version {
                        version: value.version,
                        id: value.id,
                        schema: text,
                        deleted: value.deleted,
                    },
                );
            }
            (RecordKey::Config { subject, .. }, value) => {
                let level = match value {
                    Some(value) => {
                        let value: ConfigValue =
                            serde_json::from_slice(value).map_err(|e| format!("unreadable config: {e}"))?;
                        Some(value.compatibility_level.parse()?)
                    }
                    None => None,
                };
                match (subject, level) {
                    (None, level) => self.global = level,
                    (Some(subject), Some(level)) => {
                        self.per_subject.insert(subject, level);
                    }
                    (Some(subject), None) => {
                        self.per_subject.remove(&subject);
                    }
                }
            }
            (RecordKey::DeleteSubject { subject, .. }, _) => {
                for version in self.subjects.get_mut(&subject).into_iter().flat_map(|v| v.values_mut()) {
                    version.deleted = true;
                }
            }
            (RecordKey::Noop { .. }, _) => {}
        }
        Ok(())
    }

    /// Subjects with at least one live version, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| versions.values().any(|v| !v.deleted))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A subject's live versions, oldest first; `None` when the subject is unknown.
    pub fn versions(&self, subject: &str) -> Option<Vec<&Version>> {
        let live: Vec<&Version> = self.subjects.get(subject)?.values().filter(|v| !v.deleted).collect();
        (!live.is_empty()).then_some(live)
    }

    /// A schema by id (also when every version using it was soft-deleted, as Confluent does).
    pub fn schema(&self, id: u32) -> Option<&str> {
        self.schemas.get(&id).map(String::as_str)
    }

    /// Subjects and versions that use a schema id.
    pub fn usages(&self, id: u32) -> Vec<(&str, u32)> {
        self.subjects
            .iter()
            .flat_map(|(s, versions)| versions.values().map(move |v| (s.as_str(), v)))
            .filter(|(_, v)| v.id == id && !v.deleted)
            .map(|(s, v)| (s, v.version))
            .collect()
    }

    /// The live version of a subject holding exactly this (normalized) schema.
    pub fn find(&self, subject: &str, text: &str) -> Option<&Version> {
        self.versions(subject)?.into_iter().find(|v| v.schema == text)
    }

    /// The level configured for a subject, if any.
    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.per_subject.get(subject).copied()
    }

    /// The global level (Confluent's default when none was set).
    pub fn global_level(&self) -> CompatibilityLevel {
        self.global.unwrap_or(CompatibilityLevel::DEFAULT)
    }

    /// The level that applies to a subject.
    pub fn level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject).unwrap_or_else(|| self.global_level())
    }

    /// What registering `text` under `subject` would do, or why it is refused.
    pub fn plan(&self, subject: &str, candidate: &Normalized) -> Result<Plan, Vec<String>> {
        if let Some(existing) = self.find(subject, &candidate.text) {
            return Ok(Plan::Existing(existing.id));
        }
        let history = self.parsed_history(subject);
        let problems = self.level(subject).check(&candidate.schema, &history);
        if !problems.is_empty() {
            return Err(problems);
        }
        let id = match self.ids_by_text.get(&candidate.text) {
            Some(id) => *id,
            None => self.schemas.keys().next_back().copied().unwrap_or(0) + 1,
        };
        let version = self
            .subjects
            .get(subject)
            .and_then(|v| v.keys().next_back().copied())
            .unwrap_or(0)
            + 1;
        Ok(Plan::New { id, version })
    }

    /// A subject's live schemas, parsed, oldest first.
    pub fn parsed_history(&self, subject: &str) -> Vec<(u32, Schema)> {
        self.versions(subject)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| Schema::parse_str(&v.schema).ok().map(|s| (v.version, s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},
        {"name":"b","type":["null","long"],"default":null}]}"#;

    fn schema_record(subject: &str, version: u32, id: u32, schema: &str) -> (Vec<u8>, Vec<u8>) {
        let key = serde_json::to_vec(&RecordKey::schema(subject, version)).unwrap();
        let value = SchemaValue {
            subject: subject.into(),
            version,
            id,
            schema: schema.into(),
            deleted: false,
            schema_type: None,
        };
        (key, serde_json::to_vec(&value).unwrap())
    }

    fn state_with(records: &[(Vec<u8>, Vec<u8>)]) -> RegistryState {
        let mut state = RegistryState::default();
        for (k, v) in records {
            state.apply(k, Some(v)).unwrap();
        }
        state
    }

    #[test]
    fn the_same_schema_under_a_subject_is_not_registered_twice() {
        let state = state_with(&[schema_record("s", 1, 1, V1)]);
        let respaced = V1.replace(',', " , ");
        assert_eq!(state.plan("s", &normalize(&respaced).unwrap()), Ok(Plan::Existing(1)));
    }

    #[test]
    fn a_new_version_gets_the_next_id_and_version() {
        let state = state_with(&[schema_record("s", 1, 1, V1)]);
        assert_eq!(
            state.plan("s", &normalize(V2).unwrap()),
            Ok(Plan::New { id: 2, version: 2 })
        );
    }

    #[test]
    fn the_same_schema_under_another_subject_reuses_its_id() {
        let state = state_with(&[schema_record("s", 1, 5, V1)]);
        assert_eq!(
            state.plan("t", &normalize(V1).unwrap()),
            Ok(Plan::New { id: 5, version: 1 })
        );
    }

    #[test]
    fn an_incompatible_schema_is_refused_with_the_reason() {
        let mut state = state_with(&[schema_record("s", 1, 1, V1)]);
        let key = serde_json::to_vec(&RecordKey::config(Some("s"))).unwrap();
        state
            .apply(&key, Some(br#"{"compatibilityLevel":"BACKWARD_TRANSITIVE"}"#))
            .unwrap();
        let required =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"c","type":"int"}]}"#;
        let refused = state.plan("s", &normalize(required).unwrap()).unwrap_err();
        assert!(refused[0].contains("version 1"), "{refused:?}");
        assert_eq!(state.level("s"), CompatibilityLevel::BackwardTransitive);
        assert_eq!(state.level("other"), CompatibilityLevel::Backward);
    }

    #[test]
    fn a_deleted_subject_disappears_but_its_schema_ids_still_resolve() {
        let mut state = state_with(&[schema_record("s", 1, 1, V1)]);
        state
            .apply(
                br#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#,
                Some(br#"{"subject":"s","version":1}"#),
            )
            .unwrap();
        assert!(state.subjects().is_empty());
        assert!(state.schema(1).is_some());
    }

    #[test]
    fn unreadable_records_are_reported_not_applied() {
        let mut state = RegistryState::default();
        assert!(state.apply(b"not json", Some(b"{}")).is_err());
        assert!(state.subjects().is_empty());
    }

    #[test]
    fn invalid_schemas_are_refused_with_the_reason() {
        assert!(normalize("{").unwrap_err().contains("JSON"));
        assert!(normalize(r#"{"type":"record"}"#).unwrap_err().contains("Avro"));
    }
}
