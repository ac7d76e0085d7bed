//! Small helpers for reading and writing `apache_avro` values by field name, with errors that
//! name the field, so a record that cannot be read goes to the dead-letter topic with a reason.

use apache_avro::types::Value;

/// Why an Avro value could not be turned into a domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("field {0} is missing")]
    Missing(String),
    #[error("field {field} has the wrong type: expected {expected}")]
    WrongType { field: String, expected: &'static str },
    #[error("field {field}: {rule}")]
    Invalid { field: String, rule: String },
    #[error("unknown payload record {0}")]
    UnknownPayload(String),
}

impl From<domain::values::FieldError> for ConvertError {
    fn from(error: domain::values::FieldError) -> Self {
        Self::Invalid {
            field: error.field,
            rule: error.rule,
        }
    }
}

/// A record's fields, read by name.
pub struct Fields<'a>(&'a [(String, Value)]);

impl<'a> Fields<'a> {
    /// The fields of a record's field list.
    pub fn from_slice(fields: &'a [(String, Value)]) -> Self {
        Self(fields)
    }

    /// The fields of a record value.
    pub fn of(value: &'a Value, name: &str) -> Result<Self, ConvertError> {
        match unwrap_union(value) {
            Value::Record(fields) => Ok(Self(fields)),
            _ => Err(ConvertError::WrongType {
                field: name.to_owned(),
                expected: "record",
            }),
        }
    }

    /// A field's value, with nullable unions unwrapped; `None` when absent or null.
    pub fn optional(&self, name: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| unwrap_union(v))
            .filter(|v| !matches!(v, Value::Null))
    }

    /// A field that must be present.
    pub fn required(&self, name: &str) -> Result<&'a Value, ConvertError> {
        self.optional(name)
            .ok_or_else(|| ConvertError::Missing(name.to_owned()))
    }

    /// A string field.
    pub fn string(&self, name: &str) -> Result<&'a str, ConvertError> {
        as_str(self.required(name)?, name)
    }

    /// A nullable string field.
    pub fn optional_string(&self, name: &str) -> Result<Option<&'a str>, ConvertError> {
        self.optional(name).map(|v| as_str(v, name)).transpose()
    }

    /// An int field.
    pub fn int(&self, name: &str) -> Result<i32, ConvertError> {
        match self.required(name)? {
            Value::Int(i) => Ok(*i),
            _ => Err(ConvertError::WrongType {
                field: name.to_owned(),
                expected: "int",
            }),
        }
    }

    /// A nullable int field.
    pub fn optional_int(&self, name: &str) -> Result<Option<i32>, ConvertError> {
        match self.optional(name) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(_) => Err(ConvertError::WrongType {
                field: name.to_owned(),
                expected: "int",
            }),
        }
    }

    /// A timestamp-millis field.
    pub fn timestamp_millis(&self, name: &str) -> Result<i64, ConvertError> {
        match self.required(name)? {
            Value::TimestampMillis(ms) | Value::Long(ms) => Ok(*ms),
            _ => Err(ConvertError::WrongType {
                field: name.to_owned(),
                expected: "timestamp-millis",
            }),
        }
    }

    /// An array-of-strings field.
    pub fn strings(&self, name: &str) -> Result<Vec<&'a str>, ConvertError> {
        match self.optional(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| as_str(v, name)).collect(),
            Some(_) => Err(ConvertError::WrongType {
                field: name.to_owned(),
                expected: "array of strings",
            }),
        }
    }

    /// The record inside a union field, with the name of its branch's position.
    pub fn union(&self, name: &str) -> Result<(u32, &'a Value), ConvertError> {
        match self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v) {
            Some(Value::Union(index, inner)) => Ok((*index, inner)),
            Some(_) => Err(ConvertError::WrongType {
                field: name.to_owned(),
                expected: "union",
            }),
            None => Err(ConvertError::Missing(name.to_owned())),
        }
    }
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn as_str<'a>(value: &'a Value, name: &str) -> Result<&'a str, ConvertError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(ConvertError::WrongType {
            field: name.to_owned(),
            expected: "string",
        }),
    }
}

/// A string value.
pub fn string(s: impl ToString) -> Value {
    Value::String(s.to_string())
}

/// A nullable value: branch 0 is null, branch 1 the value.
pub fn nullable(value: Option<Value>) -> Value {
    match value {
        Some(v) => Value::Union(1, Box::new(v)),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

/// A record value from `(name, value)` pairs in schema order.
pub fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(n, v)| (n.to_owned(), v)).collect())
}
