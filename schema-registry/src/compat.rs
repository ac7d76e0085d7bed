//! The check a new schema must pass against a subject's versions under its compatibility level,
//! decided by `apache_avro`'s schema-compatibility module.

use apache_avro::{
    Schema,
    schema_compatibility::{Compatibility, SchemaCompatibility},
};
pub use avro::compatibility::CompatibilityLevel;

/// What a compatibility level demands of a candidate schema.
pub trait Check {
    /// Checks `candidate` against a subject's existing schemas (oldest first). Returns why it is
    /// incompatible, one message per failed check; empty when compatible.
    fn check(self, candidate: &Schema, existing: &[(u32, Schema)]) -> Vec<String>;
}

impl Check for CompatibilityLevel {
    fn check(self, candidate: &Schema, existing: &[(u32, Schema)]) -> Vec<String> {
        let against: &[(u32, Schema)] = if self.transitive() {
            existing
        } else {
            existing.last().map(std::slice::from_ref).unwrap_or(&[])
        };
        let mut problems = Vec::new();
        for (version, old) in against {
            if let Some(why) = self.new_reads_old().then(|| can_read(old, candidate)).flatten() {
                problems.push(format!(
                    "the new schema cannot read data written with version {version}: {why}"
                ));
            }
            if let Some(why) = self.old_reads_new().then(|| can_read(candidate, old)).flatten() {
                problems.push(format!(
                    "version {version} cannot read data written with the new schema: {why}"
                ));
            }
        }
        problems
    }
}

/// `None` when every record written with `writer` can be read with `reader`. A partial match
/// (a writer's union branch the reader lacks) is refused, as Avro's Java checker refuses it.
fn can_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => {
            Some("only some of the writer's values can be read (union or enum branch missing)".into())
        }
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap()
    }

    fn v1() -> Schema {
        record(r#"{"name":"a","type":"string"}"#)
    }

    #[test]
    fn adding_an_optional_field_is_backward_and_forward_compatible() {
        let v2 = record(r#"{"name":"a","type":"string"},{"name":"b","type":["null","int"],"default":null}"#);
        assert!(CompatibilityLevel::FullTransitive.check(&v2, &[(1, v1())]).is_empty());
    }

    #[test]
    fn adding_a_required_field_breaks_backward_but_not_forward() {
        let v2 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
        assert_eq!(CompatibilityLevel::Backward.check(&v2, &[(1, v1())]).len(), 1);
        assert!(CompatibilityLevel::Forward.check(&v2, &[(1, v1())]).is_empty());
    }

    #[test]
    fn transitive_levels_check_every_version_not_only_the_latest() {
        // v1 has no "b"; v2 adds "b" with a default; v3 makes "b" required.
        let v2 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
        let v3 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
        let history = [(1, v1()), (2, v2)];
        assert!(CompatibilityLevel::Backward.check(&v3, &history).is_empty());
        let problems = CompatibilityLevel::BackwardTransitive.check(&v3, &history);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("version 1"), "{problems:?}");
    }

    #[test]
    fn none_accepts_anything() {
        let other = Schema::parse_str(r#""long""#).unwrap();
        assert!(CompatibilityLevel::None.check(&other, &[(1, v1())]).is_empty());
    }
}
