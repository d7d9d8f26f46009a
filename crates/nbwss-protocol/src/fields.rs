//! Reading JSON objects field by field, with errors that carry the field's path.

use serde_json::{Map, Value};

use crate::FieldError;

/// A JSON object being read, with the path that leads to it.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

/// The JSON type of a value, as an error message names it.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Joins a path and a key: `payload` + `uri` = `payload.uri`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Fields<'a> {
    /// Reads `value` as an object, or says at `path` what it is instead.
    pub(crate) fn of(value: &'a Value, path: &str) -> Result<Self, FieldError> {
        match value {
            Value::Object(map) => Ok(Self { map, path: path.to_owned() }),
            other => Err(FieldError::new(path, format!("must be an object, not {}", type_name(other)))),
        }
    }

    /// The path of `key` inside this object.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The raw value of `key`, if present (`null` counts as absent).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// The raw value of `key`, which must be present.
    pub(crate) fn value(&self, key: &str) -> Result<&'a Value, FieldError> {
        self.get(key).ok_or_else(|| FieldError::new(self.path_of(key), "missing"))
    }

    /// A required string.
    pub(crate) fn string(&self, key: &str) -> Result<&'a str, FieldError> {
        let value = self.value(key)?;
        value.as_str().ok_or_else(|| self.wrong_type(key, "a string", value))
    }

    /// An optional string.
    pub(crate) fn opt_string(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => value.as_str().map(Some).ok_or_else(|| self.wrong_type(key, "a string", value)),
        }
    }

    /// A required non-empty string.
    pub(crate) fn non_empty_string(&self, key: &str) -> Result<&'a str, FieldError> {
        let text = self.string(key)?;
        if text.trim().is_empty() {
            return Err(FieldError::new(self.path_of(key), "must not be empty"));
        }
        Ok(text)
    }

    /// A required integer (a JSON number without fraction).
    pub(crate) fn integer(&self, key: &str) -> Result<i64, FieldError> {
        let value = self.value(key)?;
        value.as_i64().ok_or_else(|| self.wrong_type(key, "an integer", value))
    }

    /// A required boolean.
    pub(crate) fn boolean(&self, key: &str) -> Result<bool, FieldError> {
        let value = self.value(key)?;
        value.as_bool().ok_or_else(|| self.wrong_type(key, "a boolean (true or false)", value))
    }

    /// A required array.
    pub(crate) fn array(&self, key: &str) -> Result<&'a Vec<Value>, FieldError> {
        let value = self.value(key)?;
        value.as_array().ok_or_else(|| self.wrong_type(key, "an array", value))
    }

    /// A required object.
    pub(crate) fn object(&self, key: &str) -> Result<Fields<'a>, FieldError> {
        Fields::of(self.value(key)?, &self.path_of(key))
    }

    /// The object's own entries.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.map.iter()
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> FieldError {
        FieldError::new(self.path_of(key), format!("must be {expected}, not {}", type_name(found)))
    }
}
