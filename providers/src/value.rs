//! Value handling shared by the providers, as External Secrets Operator does it: property
//! lookup (gjson paths), JSON objects split into keys, decoding strategies, key conversion
//! and the null-byte policy.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use sealsync_crypto::SecretBytes;
use serde_json::value::RawValue;

use crate::RemoteRef;

/// How a fetched value is decoded before it is written (`decodingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodingStrategy {
    /// As it is (also the meaning of an unset strategy in `external-secrets.io/v1`).
    #[default]
    None,
    /// Standard base64, else base64url, else as it is.
    Auto,
    Base64,
    Base64Url,
}

/// How characters a Secret key cannot hold are replaced in keys found by `find`
/// (`conversionStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConversionStrategy {
    /// By `_`.
    #[default]
    Default,
    /// By `_U<4 hex digits>_`, which keeps distinct names distinct.
    Unicode,
}

/// What a value with a NUL byte does (`nullBytePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullBytePolicy {
    #[default]
    Ignore,
    Fail,
}

/// A value that cannot be handled as asked. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("the value is not valid {0}; use decodingStrategy None or Auto")]
    NotEncoded(&'static str),
    #[error("the value holds a NUL byte and nullBytePolicy is Fail")]
    NullByte,
}

/// Decodes `value` as `strategy` says.
pub fn decode(value: SecretBytes, strategy: DecodingStrategy) -> Result<SecretBytes, ValueError> {
    let bytes = value.expose();
    Ok(match strategy {
        DecodingStrategy::None => value,
        DecodingStrategy::Base64 => STANDARD
            .decode(bytes)
            .map_err(|_| ValueError::NotEncoded("base64"))?
            .into(),
        DecodingStrategy::Base64Url => URL_SAFE
            .decode(bytes)
            .map_err(|_| ValueError::NotEncoded("base64url"))?
            .into(),
        DecodingStrategy::Auto => {
            match STANDARD.decode(bytes).or_else(|_| URL_SAFE.decode(bytes)) {
                Ok(decoded) => decoded.into(),
                Err(_) => value,
            }
        }
    })
}

/// Fails a value with a NUL byte when `policy` says so.
pub fn check_null_bytes(value: &SecretBytes, policy: NullBytePolicy) -> Result<(), ValueError> {
    match policy {
        NullBytePolicy::Fail if value.expose().contains(&0) => Err(ValueError::NullByte),
        _ => Ok(()),
    }
}

/// `name` as a Secret key: characters other than ASCII letters, digits, `-`, `.` and `_`
/// are replaced.
pub fn convert_key(name: &str, strategy: ConversionStrategy) -> String {
    let mut key = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
            key.push(c);
        } else {
            match strategy {
                ConversionStrategy::Default => key.push('_'),
                ConversionStrategy::Unicode => key.push_str(&format!("_U{:04x}_", c as u32)),
            }
        }
    }
    key
}

/// The value at `path` (gjson syntax) in the JSON `payload`, rendered as ESO renders it:
/// a string unquoted, anything else as its JSON text. `None` when nothing is there.
pub(crate) fn at_path(payload: &[u8], path: &str) -> Option<SecretBytes> {
    let text = std::str::from_utf8(payload).ok()?;
    let found = gjson::get(text, path);
    if !found.exists() {
        return None;
    }
    Some(match found.kind() {
        gjson::Kind::String => found.str().as_bytes().into(),
        gjson::Kind::Null => SecretBytes::default(),
        _ => found.json().as_bytes().into(),
    })
}

/// The property `reference` names of `payload` (all of it without one): the literal
/// (escaped) key first when `literal_first`, then the property as a gjson path; the
/// property, when the payload has none such.
pub(crate) fn property<'a>(
    payload: &SecretBytes,
    reference: &'a RemoteRef,
    literal_first: bool,
) -> Result<SecretBytes, &'a str> {
    let Some(property) = reference.property.as_deref() else {
        return Ok(payload.clone());
    };
    let payload = payload.expose();
    literal_first
        .then(|| at_path(payload, &literal_key_path(property)))
        .flatten()
        .or_else(|| at_path(payload, property))
        .ok_or(property)
}

/// A gjson path naming the one top-level key `key`, special characters escaped (`a.b`
/// names the key "a.b", not b inside a).
pub(crate) fn literal_key_path(key: &str) -> String {
    let mut path = String::with_capacity(key.len());
    for c in key.chars() {
        if matches!(c, '\\' | '.' | '*' | '?' | '|' | '#' | '@') {
            path.push('\\');
        }
        path.push(c);
    }
    path
}

/// The top-level entries of a JSON object: strings unquoted, `null` empty, anything else
/// as its JSON text exactly as the payload has it.
pub(crate) fn json_object(payload: &[u8]) -> Result<BTreeMap<String, SecretBytes>, String> {
    let object: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(payload)
        .map_err(|e| format!("the secret is not a JSON object ({:?} error)", e.classify()))?;
    Ok(object
        .into_iter()
        .map(|(key, raw)| {
            let value = match serde_json::from_str::<Option<String>>(raw.get()) {
                Ok(text) => text.unwrap_or_default().into_bytes().into(),
                Err(_) => raw.get().as_bytes().into(),
            };
            (key, value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &SecretBytes) -> &str {
        std::str::from_utf8(value.expose()).unwrap()
    }

    #[test]
    fn decoding_strategies_decode_as_eso_does() {
        let bytes = |s: &str| SecretBytes::from(s.as_bytes());
        assert_eq!(
            text(&decode(bytes("aGVsbG8="), DecodingStrategy::Base64).unwrap()),
            "hello"
        );
        assert_eq!(
            decode(bytes("not base64!"), DecodingStrategy::Base64).unwrap_err(),
            ValueError::NotEncoded("base64")
        );
        // `-` and `_` are base64url only.
        assert_eq!(
            decode(bytes("-_8="), DecodingStrategy::Base64Url)
                .unwrap()
                .expose(),
            [0xfb, 0xff]
        );
        assert_eq!(
            decode(bytes("-_8="), DecodingStrategy::Auto)
                .unwrap()
                .expose(),
            [0xfb, 0xff]
        );
        assert_eq!(
            text(&decode(bytes("plain text"), DecodingStrategy::Auto).unwrap()),
            "plain text"
        );
        assert_eq!(
            text(&decode(bytes("aGVsbG8="), DecodingStrategy::None).unwrap()),
            "aGVsbG8="
        );
        let error = decode(bytes("s3cr3t!"), DecodingStrategy::Base64).unwrap_err();
        assert!(!error.to_string().contains("s3cr3t"));
    }

    #[test]
    fn keys_are_converted_by_strategy() {
        assert_eq!(
            convert_key("app/db:pass word", ConversionStrategy::Default),
            "app_db_pass_word"
        );
        assert_eq!(
            convert_key("app/db", ConversionStrategy::Unicode),
            "app_U002f_db"
        );
        assert_eq!(
            convert_key("ok-key_1.x", ConversionStrategy::Unicode),
            "ok-key_1.x"
        );
    }

    #[test]
    fn a_nul_byte_fails_only_when_asked() {
        let value = SecretBytes::from(&b"a\0b"[..]);
        assert!(check_null_bytes(&value, NullBytePolicy::Ignore).is_ok());
        assert_eq!(
            check_null_bytes(&value, NullBytePolicy::Fail),
            Err(ValueError::NullByte)
        );
    }

    #[test]
    fn paths_render_strings_unquoted_and_the_rest_as_json() {
        let payload = br#"{"user": "admin", "port": 5432, "tls": true, "nested": {"a": [1, 2]},
            "a.b": "dotted", "a": {"b": "inner"}, "none": null}"#;
        let at = |path: &str| at_path(payload, path).map(|v| text(&v).to_string());
        assert_eq!(at("user").as_deref(), Some("admin"));
        assert_eq!(at("port").as_deref(), Some("5432"));
        assert_eq!(at("tls").as_deref(), Some("true"));
        assert_eq!(at("nested").as_deref(), Some(r#"{"a": [1, 2]}"#));
        assert_eq!(at("nested.a.1").as_deref(), Some("2"));
        assert_eq!(at("none").as_deref(), Some(""));
        assert_eq!(at("missing"), None);
        assert_eq!(at("a.b").as_deref(), Some("inner"));
        assert_eq!(at(&literal_key_path("a.b")).as_deref(), Some("dotted"));
        let odd = br##"{"w*ld?": "card", "p|pe": "pipe", "#": "hash"}"##;
        for (key, expected) in [("w*ld?", "card"), ("p|pe", "pipe"), ("#", "hash")] {
            assert_eq!(
                at_path(odd, &literal_key_path(key))
                    .map(|v| text(&v).to_string())
                    .as_deref(),
                Some(expected)
            );
        }
        assert_eq!(at_path(&[0xff, 0xfe], "user"), None, "not JSON");
    }

    #[test]
    fn objects_split_into_keys_exactly_as_written() {
        let map = json_object(br#"{"s": "text", "n": 1.50, "o": {"k": "v"}, "z": null}"#).unwrap();
        let get = |k: &str| text(&map[k]).to_string();
        assert_eq!(get("s"), "text");
        assert_eq!(get("n"), "1.50");
        assert_eq!(get("o"), r#"{"k": "v"}"#);
        assert_eq!(get("z"), "");
        let error = json_object(br#"["s3cr3t"]"#).unwrap_err();
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}
