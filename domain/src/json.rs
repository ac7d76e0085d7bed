//! Reading a JSON body field by field, so that each problem names its path (`recipient.dob`) and
//! every problem of a body is reported at once, not only the first.

use serde_json::Value;

use crate::values::FieldError;

/// Collects the problems of one body.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Keeps `result`'s value, or records its problem and gives `None`.
    pub fn take<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// Records a problem.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// `Ok(value)` when no problem was recorded (the value then exists), else every problem.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<FieldError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self.0),
        }
    }
}

/// `prefix.key`, or `key` at the top.
pub fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The value at `key`, `None` when absent, null or an empty (or blank) string: DIVOC's systems send
/// `""` for optional values they do not have.
pub fn optional<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object
        .get(key)
        .filter(|v| !v.is_null() && v.as_str().is_none_or(|s| !s.trim().is_empty()))
}

/// The value at `key`, which must be present.
pub fn required<'a>(object: &'a Value, prefix: &str, key: &str) -> Result<&'a Value, FieldError> {
    optional(object, key).ok_or_else(|| FieldError::new(path(prefix, key), "is required"))
}

/// The string at `key`, which must be present.
pub fn required_str<'a>(object: &'a Value, prefix: &str, key: &str) -> Result<&'a str, FieldError> {
    let value = required(object, prefix, key)?;
    value
        .as_str()
        .ok_or_else(|| FieldError::new(path(prefix, key), "must be a string"))
}

/// The string at `key`, if present.
pub fn optional_str<'a>(object: &'a Value, prefix: &str, key: &str) -> Result<Option<&'a str>, FieldError> {
    match optional(object, key) {
        None => Ok(None),
        Some(value) => value
            .as_str()
            .map(Some)
            .ok_or_else(|| FieldError::new(path(prefix, key), "must be a string")),
    }
}

/// The object at `key`, which must be present.
pub fn required_object<'a>(object: &'a Value, prefix: &str, key: &str) -> Result<&'a Value, FieldError> {
    let value = required(object, prefix, key)?;
    value
        .is_object()
        .then_some(value)
        .ok_or_else(|| FieldError::new(path(prefix, key), "must be an object"))
}

/// The whole number at `key` (a JSON integer, an integral number such as `2.0`, or digits in a
/// string, as DIVOC's clients send all three), which must be present.
pub fn required_integer(object: &Value, prefix: &str, key: &str) -> Result<i64, FieldError> {
    let value = required(object, prefix, key)?;
    integer(value).ok_or_else(|| FieldError::new(path(prefix, key), "must be a whole number"))
}

/// A whole number written as a JSON number or as digits in a string.
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The strings of the array at `key` (absent = empty).
pub fn string_array<'a>(object: &'a Value, prefix: &str, key: &str) -> Result<Vec<&'a str>, FieldError> {
    let Some(value) = optional(object, key) else {
        return Ok(Vec::new());
    };
    let not_strings = || FieldError::new(path(prefix, key), "must be an array of strings");
    value
        .as_array()
        .ok_or_else(not_strings)?
        .iter()
        .map(|v| v.as_str().ok_or_else(not_strings))
        .collect()
}
