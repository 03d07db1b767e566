//! The `bitnami.com/v1alpha1` SealedSecret resource, schema-compatible with upstream.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use sealsync_crypto::Scope;
use serde::{Deserialize, Serialize};

/// Desired state of a SealedSecret: encrypted values and the template of the Secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "bitnami.com",
    version = "v1alpha1",
    kind = "SealedSecret",
    plural = "sealedsecrets",
    namespaced,
    doc = "A Secret sealed (encrypted) with the controller's key, safe to store in Git.",
    status = "SealedSecretStatus",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[0].message"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[0].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    /// Metadata, type and templated data of the Secret that is generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplateSpec>,
    /// Sealed values by key, each base64 of the hybrid ciphertext.
    #[serde(default, deserialize_with = "null_as_empty")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub encrypted_data: BTreeMap<String, String>,
    /// Deprecated: a whole Secret sealed as one value. Use `encryptedData` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "byte"))]
    pub data: Option<String>,
}

/// Template of the generated Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplateSpec {
    /// Metadata of the Secret (name, namespace, labels, annotations, ...); fields not
    /// listed here are kept as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "template_metadata")]
    pub metadata: Option<ObjectMeta>,
    /// Type of the Secret, e.g. `Opaque` or `kubernetes.io/tls`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Whether the data of the Secret cannot be updated once it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Go-template data rendered over the unsealed values.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub data: BTreeMap<String, String>,
}

/// Upstream's schema of the template's metadata: the usual fields typed, every other field
/// (such as the `creationTimestamp: null` that kubeseal wrote) kept.
fn template_metadata(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let string_map = schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string" }
    });
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "annotations": string_map,
            "finalizers": { "type": "array", "items": { "type": "string" } },
            "labels": string_map,
            "name": { "type": "string" },
            "namespace": { "type": "string" }
        }
    })
}

/// Observed state of a SealedSecret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretStatus {
    /// The generation most recently observed by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The latest observations of the SealedSecret's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<SealedSecretCondition>,
    /// Fingerprints (OpenSSH SHA256) of the keys that opened its values when it was last
    /// unsealed, so that auditors can see which SealedSecrets still depend on an old key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_fingerprints: Vec<String>,
    /// Digest of the inputs its Secret was last generated from (sealsync's own), so that a
    /// restarted controller opens nothing that did not change, without any bookkeeping on
    /// the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
}

/// A condition of a SealedSecret (upstream has one type: `Synced`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretCondition {
    /// Type of the condition: `Synced`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: `True`, `False` or `Unknown`.
    pub status: String,
    /// When the condition was last updated (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_update_time: Option<String>,
    /// When the condition last changed status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
    /// Machine-readable reason of the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable details of the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl SealedSecret {
    /// The scope its annotations declare.
    pub fn scope(&self) -> Scope {
        let annotations = self.metadata.annotations.as_ref();
        Scope::from_annotations(|key| annotations?.get(key).map(String::as_str))
    }

    /// `namespace/name` for messages.
    pub fn object_ref(&self) -> String {
        crate::secret::object_ref(&self.metadata)
    }

    /// The OAEP label its values are sealed under.
    pub fn label(&self) -> Vec<u8> {
        self.label_for(self.scope())
    }

    pub(crate) fn label_for(&self, scope: Scope) -> Vec<u8> {
        scope.label(
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default(),
        )
    }
}

/// Reads an explicit `null` map (accepted by the CRD, written by some tools) as empty.
fn null_as_empty<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_maps_read_as_empty() {
        let sealed: SealedSecret = serde_json::from_value(serde_json::json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "x", "namespace": "y", "creationTimestamp": null},
            "spec": {"encryptedData": null, "template": {"metadata": null, "data": null}}
        }))
        .unwrap();
        assert!(sealed.spec.encrypted_data.is_empty());
        assert!(sealed.spec.template.unwrap().data.is_empty());
    }
}
