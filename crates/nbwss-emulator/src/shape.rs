//! The shapes of request attributes the emulator keeps: each documented attribute with its type, so that a
//! request is refused with a 400 naming the attribute that is wrong, and what is kept always reads back
//! in its documented type. Attributes a shape does not list are ignored, as NetBackup ignores them.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The expected shape of one attribute.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    Bool,
    /// An integer within the bounds.
    Int(i64, i64),
    Str,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// An object with these attributes (others are dropped).
    Object(&'static [(&'static str, Shape)]),
    /// A list of at most 1000 items of this shape.
    List(&'static Shape),
}

/// The most items a list attribute may have.
const MAX_ITEMS: usize = 1000;

/// Checks `value` against `shape` and returns what to keep; `path` names the attribute in errors.
pub(crate) fn take(value: &Value, shape: Shape, path: &str) -> ApiResult<Value> {
    let wrong = |what: &str| ApiError::bad_attribute(path, format!("must be {what}"));
    match shape {
        Shape::Bool => value.as_bool().map(Value::from).ok_or_else(|| wrong("true or false")),
        Shape::Int(min, max) => value
            .as_i64()
            .filter(|number| (min..=max).contains(number))
            .map(Value::from)
            .ok_or_else(|| wrong(&format!("an integer from {min} to {max}"))),
        Shape::Str => value.as_str().map(Value::from).ok_or_else(|| wrong("a string")),
        Shape::Enum(allowed) => value
            .as_str()
            .filter(|text| allowed.contains(text))
            .map(Value::from)
            .ok_or_else(|| wrong(&format!("one of {}", allowed.join(", ")))),
        Shape::Object(fields) => {
            let object = value.as_object().ok_or_else(|| wrong("an object"))?;
            take_object(object, fields, path).map(Value::Object)
        }
        Shape::List(item) => {
            let items = value.as_array().ok_or_else(|| wrong("a list"))?;
            if items.len() > MAX_ITEMS {
                return Err(wrong(&format!("a list of at most {MAX_ITEMS} items")));
            }
            items
                .iter()
                .enumerate()
                .map(|(index, value)| take(value, *item, &format!("{path}[{index}]")))
                .collect::<ApiResult<Vec<Value>>>()
                .map(Value::Array)
        }
    }
}

/// The listed attributes of `object` that are present (and not null), each checked.
pub(crate) fn take_object(
    object: &Map<String, Value>,
    fields: &[(&'static str, Shape)],
    path: &str,
) -> ApiResult<Map<String, Value>> {
    let mut kept = Map::new();
    for (name, shape) in fields {
        let Some(value) = object.get(*name).filter(|value| !value.is_null()) else { continue };
        let at = if path.is_empty() { (*name).to_owned() } else { format!("{path}.{name}") };
        kept.insert((*name).to_owned(), take(value, *shape, &at)?);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const INNER: &[(&str, Shape)] = &[("limit", Shape::Int(1, 10))];
    const FIELDS: &[(&str, Shape)] = &[
        ("on", Shape::Bool),
        ("kind", Shape::Enum(&["A", "B"])),
        ("inner", Shape::Object(INNER)),
        ("names", Shape::List(&Shape::Str)),
    ];

    #[test]
    fn keeps_what_is_listed_and_checks_it() {
        let given =
            json!({"on": true, "kind": "A", "inner": {"limit": 3, "junk": 1}, "names": ["x"], "other": 5});
        let kept = take_object(given.as_object().unwrap(), FIELDS, "").unwrap();
        assert_eq!(
            Value::Object(kept),
            json!({"on": true, "kind": "A", "inner": {"limit": 3}, "names": ["x"]})
        );
        for (given, named) in [
            (json!({"on": "yes"}), "on"),
            (json!({"kind": "C"}), "kind"),
            (json!({"inner": {"limit": 11}}), "inner.limit"),
            (json!({"names": ["x", 1]}), "names[1]"),
        ] {
            let error = take_object(given.as_object().unwrap(), FIELDS, "").unwrap_err();
            assert!(error.details[0].starts_with(named), "{given}: {error:?}");
        }
    }
}
