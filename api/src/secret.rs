//! A Kubernetes Secret manifest whose values are [`SecretBytes`].

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sealsync_crypto::SecretBytes;
use serde::{Deserialize, Serialize};

/// A `v1` Secret as sealsync reads and writes it. Unlike `k8s_openapi`'s `Secret`, values are
/// zeroized on drop and redacted in `Debug`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretManifest {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    #[serde(
        default,
        with = "base64_values",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub data: BTreeMap<String, SecretBytes>,
    /// Write-only plain values; they win over `data`, as in Kubernetes.
    #[serde(default, with = "plain_values", skip_serializing)]
    pub string_data: BTreeMap<String, SecretBytes>,
}

fn api_version() -> String {
    "v1".into()
}

fn kind() -> String {
    "Secret".into()
}

impl SecretManifest {
    /// A Secret with the given metadata and values.
    pub fn new(metadata: ObjectMeta, data: BTreeMap<String, SecretBytes>) -> Self {
        Self {
            api_version: api_version(),
            kind: kind(),
            metadata,
            data,
            ..Self::default()
        }
    }

    /// All values: `data` overlaid with `stringData`.
    pub fn values(&self) -> BTreeMap<&str, &SecretBytes> {
        self.data
            .iter()
            .chain(&self.string_data)
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }

    /// `namespace/name` for messages.
    pub fn object_ref(&self) -> String {
        object_ref(&self.metadata)
    }
}

/// `namespace/name` of an object for messages (`name` alone without a namespace).
pub(crate) fn object_ref(metadata: &ObjectMeta) -> String {
    let name = metadata.name.as_deref().unwrap_or("<unnamed>");
    match metadata.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

mod base64_values {
    use super::*;
    use serde::de::Error;
    use serde::{Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(
        values: &BTreeMap<String, SecretBytes>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<&str, Zeroizing<String>> = values
            .iter()
            .map(|(k, v)| (k.as_str(), Zeroizing::new(STANDARD.encode(v.expose()))))
            .collect();
        serializer.collect_map(encoded.iter().map(|(k, v)| (k, v.as_str())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, SecretBytes>, D::Error> {
        let encoded: Option<BTreeMap<String, Zeroizing<String>>> =
            Option::deserialize(deserializer)?;
        encoded
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| {
                let compact: Zeroizing<String> =
                    Zeroizing::new(value.chars().filter(|c| !c.is_whitespace()).collect());
                STANDARD
                    .decode(compact.as_bytes())
                    .map(|bytes| (key.clone(), SecretBytes::from(bytes)))
                    .map_err(|_| {
                        D::Error::custom(format!("key {key:?} in data is not valid base64"))
                    })
            })
            .collect()
    }
}

mod plain_values {
    use super::*;
    use serde::Deserializer;
    use zeroize::Zeroizing;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, SecretBytes>, D::Error> {
        let plain: Option<BTreeMap<String, Zeroizing<String>>> = Option::deserialize(deserializer)?;
        Ok(plain
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, SecretBytes::from(v.as_bytes())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;

    #[test]
    fn string_data_overrides_data() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  a: YQ==\n  b: Yg==\nstringData:\n  b: plain\n";
        let secret = &parse_documents::<SecretManifest>(yaml, "s.yaml", "Secret").unwrap()[0];
        let values = secret.values();
        assert_eq!(values["a"].expose(), b"a");
        assert_eq!(values["b"].expose(), b"plain");
    }

    #[test]
    fn bad_base64_names_the_key_not_the_value() {
        let yaml = "kind: Secret\nmetadata: {name: s}\ndata:\n  password: 'hunter2!!'\n";
        let err = parse_documents::<SecretManifest>(yaml, "s.yaml", "Secret").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"password\""), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn serializes_as_a_v1_secret() {
        let secret = SecretManifest::new(
            ObjectMeta {
                name: Some("s".into()),
                ..ObjectMeta::default()
            },
            BTreeMap::from([("k".to_string(), SecretBytes::from(b"v".to_vec()))]),
        );
        let json = serde_json::to_value(&secret).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}})
        );
    }
}
