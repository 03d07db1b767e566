//! Reading and writing manifests: YAML or JSON, several documents, `v1.List` wrappers.

mod typed;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use crate::ApiError;
pub use typed::FieldError;

/// Output format of manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Parses every object of kind `expected_kind` in `text` (YAML or JSON, one or more
/// documents, `kind: List` expanded). `source_name` names the input in errors.
pub fn parse_documents<T: DeserializeOwned>(
    text: &str,
    source_name: &str,
    expected_kind: &'static str,
) -> Result<Vec<T>, ApiError> {
    let mut objects = Vec::new();
    for (index, mut document) in raw_documents(text, source_name)?.into_iter().enumerate() {
        let index = index + 1;
        let parsed = parse_document(&document, source_name, index, expected_kind);
        wipe(&mut document);
        objects.extend(parsed?);
    }
    if objects.is_empty() {
        return Err(ApiError::Empty {
            source_name: source_name.to_string(),
            expected: expected_kind,
        });
    }
    Ok(objects)
}

fn parse_document<T: DeserializeOwned>(
    document: &Value,
    source_name: &str,
    index: usize,
    expected_kind: &'static str,
) -> Result<Vec<T>, ApiError> {
    let wrong_kind = |found: &str| ApiError::WrongKind {
        source_name: source_name.to_string(),
        index,
        found: if found.is_empty() {
            "document without a kind".to_string()
        } else {
            found.to_string()
        },
        expected: expected_kind,
    };
    let kind_of = |v: &Value| {
        v.get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let items: Vec<&Value> = match kind_of(document).as_str() {
        "List" => document
            .get("items")
            .and_then(Value::as_array)
            .map(|items| items.iter().collect())
            .unwrap_or_default(),
        _ => vec![document],
    };
    items
        .into_iter()
        .map(|item| {
            let kind = kind_of(item);
            if kind != expected_kind {
                return Err(wrong_kind(&kind));
            }
            typed::from_value(item).map_err(|e| ApiError::Parse {
                source_name: source_name.to_string(),
                index,
                format: expected_kind,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Reads one JSON object as `T`, e.g. a request body. Errors name the field and the types,
/// never a value.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FieldError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| FieldError::new(e.to_string()))?;
    typed::from_value(&value)
}

/// The non-empty documents of a YAML stream or a stream of JSON objects.
fn raw_documents(text: &str, source_name: &str) -> Result<Vec<Value>, ApiError> {
    let parse_error = |index: usize, format: &'static str, reason: String| ApiError::Parse {
        source_name: source_name.to_string(),
        index,
        format,
        reason,
    };
    let mut documents = Vec::new();
    if text.trim_start().starts_with('{') {
        for (index, document) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            documents.push(document.map_err(|e| parse_error(index + 1, "JSON", e.to_string()))?);
        }
    } else {
        for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(document)
                .map_err(|e| parse_error(index + 1, "YAML", e.to_string()))?;
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    Ok(documents)
}

/// Overwrites every string of a parsed document, which may hold secret values.
fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Serializes objects in `format`: YAML documents separated by `---`, or indented JSON
/// objects one after the other (as kubeseal prints them).
pub fn to_document<T: Serialize>(
    objects: &[T],
    format: Format,
) -> Result<Zeroizing<String>, ApiError> {
    let mut out = Zeroizing::new(String::new());
    for (i, object) in objects.iter().enumerate() {
        let text = Zeroizing::new(match format {
            Format::Json => serde_json::to_string_pretty(object)
                .map(|json| json + "\n")
                .map_err(|e| serialize_error("JSON", e.to_string()))?,
            Format::Yaml => serde_norway::to_string(object)
                .map_err(|e| serialize_error("YAML", e.to_string()))?,
        });
        if i > 0 && format == Format::Yaml {
            out.push_str("---\n");
        }
        out.push_str(&text);
    }
    Ok(out)
}

fn serialize_error(format: &'static str, reason: String) -> ApiError {
    ApiError::Serialize { format, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Named {
        metadata: Meta,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Meta {
        name: String,
    }

    fn names(text: &str) -> Result<Vec<String>, ApiError> {
        parse_documents::<Named>(text, "input.yaml", "Secret")
            .map(|v| v.into_iter().map(|n| n.metadata.name).collect())
    }

    #[test]
    fn yaml_streams_lists_and_json_streams() {
        let yaml = "---\nkind: Secret\nmetadata: {name: a}\n---\n---\nkind: List\nitems:\n- kind: Secret\n  metadata: {name: b}\n";
        assert_eq!(names(yaml).unwrap(), ["a", "b"]);
        let json = r#"{"kind":"Secret","metadata":{"name":"a"}} {"kind":"Secret","metadata":{"name":"c"}}"#;
        assert_eq!(names(json).unwrap(), ["a", "c"]);
    }

    #[test]
    fn errors_name_the_document() {
        let err = names("kind: Secret\nmetadata: {name: a}\n---\nkind: ConfigMap\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "input.yaml: document 2 is a ConfigMap, not a Secret"
        );
        let err = names("kind: Secret\nmetadata: [unclosed\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("input.yaml: document 1 is not valid YAML"),
            "{err}"
        );
        let err = names("").unwrap_err();
        assert_eq!(err.to_string(), "input.yaml: no Secret found");
    }

    #[test]
    fn wipe_clears_every_string() {
        let mut v: Value = serde_json::json!({"a": ["x", {"b": "y"}], "c": 1});
        wipe(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["", {"b": ""}], "c": 1}));
    }
}
