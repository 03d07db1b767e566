//! Deserializing a parsed JSON value into a typed object with errors that name the field
//! and the types involved, never the value: serde's own messages quote it ("invalid type:
//! integer `1234`"), and in a Secret manifest the value is the secret.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use serde_json::Value;

/// Why a value does not fit its type: where (`stringData.pin`) and what, without the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", location(path))]
pub struct FieldError {
    /// Segments from the innermost outwards, as the error bubbles up.
    path: Vec<String>,
    problem: String,
}

fn location(path: &[String]) -> String {
    if path.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for segment in path.iter().rev() {
        if segment.starts_with('[') || out.is_empty() {
            out.push_str(segment);
        } else {
            out.push('.');
            out.push_str(segment);
        }
    }
    out + ": "
}

impl FieldError {
    pub(super) fn new(problem: String) -> Self {
        Self {
            path: Vec::new(),
            problem,
        }
    }

    fn within_key(mut self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        self.path.push(if plain {
            key.to_string()
        } else {
            format!("[{key:?}]")
        });
        self
    }

    fn within_item(mut self, index: usize) -> Self {
        self.path.push(format!("[{index}]"));
        self
    }
}

/// What kind of value was found, in words, without the value.
fn kind(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a number",
        Unexpected::Char(_) => "a character",
        Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "null",
        Unexpected::Seq => "a list",
        Unexpected::Map => "a map",
        _ => "a value of another type",
    }
}

impl de::Error for FieldError {
    /// Messages of deserializers written for these types (sealsync's name the key only).
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::new(message.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        let hint = match unexpected {
            Unexpected::Bool(_)
            | Unexpected::Unsigned(_)
            | Unexpected::Signed(_)
            | Unexpected::Float(_)
                if expected.to_string().contains("string") =>
            {
                " (quote it)"
            }
            _ => "",
        };
        Self::new(format!(
            "expected {expected}, found {}{hint}",
            kind(&unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::new(format!(
            "expected {expected}, found {} that is not one",
            kind(&unexpected)
        ))
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(format!("unknown value: expected one of {expected:?}"))
    }
}

/// Deserializes `value` as `T`; errors are [`FieldError`]s.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    T::deserialize(Typed(value))
}

/// A borrowed [`Value`] as a deserializer whose errors are [`FieldError`]s.
struct Typed<'a>(&'a Value);

impl<'de> Deserializer<'de> for Typed<'de> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (_, Some(i), _) => visitor.visit_i64(i),
                (_, _, Some(f)) => visitor.visit_f64(f),
                _ => Err(FieldError::new("a number out of range".into())),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Items {
                items: items.iter(),
                index: 0,
            }),
            Value::Object(map) => visitor.visit_map(Entries {
                entries: map.iter(),
                key: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        visitor.visit_newtype_struct(self)
    }

    /// Unit variants only (`"Variant"`), the only enums of the manifests read.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, FieldError> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Float(0.0),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

struct Items<'a> {
    items: std::slice::Iter<'a, Value>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = FieldError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FieldError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let index = self.index;
        self.index += 1;
        seed.deserialize(Typed(item))
            .map(Some)
            .map_err(|e| e.within_item(index))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a> {
    entries: serde_json::map::Iter<'a>,
    key: Option<(&'a str, &'a Value)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.key = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::<FieldError>::new(key))
            .map(Some)
            .map_err(|e| e.within_key(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let (key, value) = self
            .key
            .take()
            .ok_or_else(|| FieldError::new("a value without its key".into()))?;
        seed.deserialize(Typed(value))
            .map_err(|e| e.within_key(key))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc {
        string_data: BTreeMap<String, String>,
        #[serde(default)]
        items: Vec<u8>,
        #[serde(default)]
        flag: Option<bool>,
    }

    fn error(value: Value) -> String {
        from_value::<Doc>(&value).unwrap_err().to_string()
    }

    #[test]
    fn type_errors_name_the_field_and_the_types_only() {
        for (value, found) in [
            (json!(1234), "an integer"),
            (json!(-1234), "an integer"),
            (json!(12.5), "a number"),
            (json!(true), "a boolean"),
            (json!({"nested": "hunter2"}), "a map"),
            (json!(["hunter2"]), "a list"),
            (json!(null), "null"),
        ] {
            let msg = error(json!({"stringData": {"pin": value}}));
            assert!(
                msg.starts_with(&format!("stringData.pin: expected a string, found {found}")),
                "{msg}"
            );
            assert!(!msg.contains("1234") && !msg.contains("12.5") && !msg.contains("hunter2"));
        }
        let msg = error(json!({"stringData": {"tls.key": 7}}));
        assert_eq!(
            msg,
            "stringData[\"tls.key\"]: expected a string, found an integer (quote it)"
        );
        let msg = error(json!({"stringData": {}, "items": [1, "hunter2"]}));
        assert_eq!(msg, "items[1]: expected u8, found a string");
        let msg = error(json!({"stringData": "hunter2"}));
        assert_eq!(msg, "stringData: expected a map, found a string");
        let msg = error(json!({"stringData": {}, "flag": "hunter2"}));
        assert_eq!(msg, "flag: expected a boolean, found a string");
        let msg = error(json!({"stringData": {}, "items": [300]}));
        assert_eq!(
            msg,
            "items[0]: expected u8, found an integer that is not one"
        );
        assert_eq!(error(json!({})), "missing field `stringData`");
    }

    #[test]
    fn well_typed_values_deserialize() {
        let doc: Doc = from_value(
            &json!({"stringData": {"a": "b"}, "items": [1, 2], "flag": null, "other": {"x": [1]}}),
        )
        .unwrap();
        assert_eq!(doc.string_data["a"], "b");
        assert_eq!(doc.items, [1, 2]);
        assert_eq!(doc.flag, None);
    }
}
