//! The `external-secrets.io/v1` resources of External Secrets Operator (ExternalSecret,
//! SecretStore, ClusterSecretStore, ClusterExternalSecret) with the AWS and Vault providers,
//! schema-compatible with upstream so that its manifests apply unchanged.

mod cluster_external_secret;
mod external_secret;
mod store;

pub use cluster_external_secret::{
    ClusterExternalSecret, ClusterExternalSecretCondition, ClusterExternalSecretMetadata,
    ClusterExternalSecretNamespaceFailure, ClusterExternalSecretSpec, ClusterExternalSecretStatus,
};
pub use external_secret::{
    ConversionStrategy, CreationPolicy, DecodingStrategy, DeletionPolicy, ExternalSecret,
    ExternalSecretCondition, ExternalSecretData, ExternalSecretDataFrom, ExternalSecretFind,
    ExternalSecretSpec, ExternalSecretStatus, ExternalSecretTarget, ExternalSecretTemplate,
    FindName, GeneratorRef, MetadataPolicy, NullBytePolicy, RefreshPolicy, RemoteRef, Rewrite,
    RewriteRegexp, RewriteTransform, SecretBinding, SecretStoreRef, SourceRef, StoreKind,
    SyncWindow, SyncWindows, TemplateEngineVersion, TemplateFrom, TemplateMergePolicy,
    TemplateMetadata, TemplateRef, TemplateRefItem, TemplateScope,
};
pub use store::{
    AwsAuth, AwsJwtAuth, AwsProvider, AwsSecretRef, AwsService, AwsTag, CaProvider, CaProviderType,
    ClusterSecretStore, ClusterSecretStoreCondition, ClusterSecretStoreSpec, FakeProvider,
    FakeProviderData, RetrySettings, SecretStore, SecretStoreCondition, SecretStoreProvider,
    SecretStoreSpec, SecretStoreStatus, SecretsManagerOptions, VaultAppRole, VaultAuth,
    VaultCertAuth, VaultClientTls, VaultIamAuth, VaultJwtAuth, VaultKubernetesAuth,
    VaultKubernetesServiceAccountToken, VaultKvVersion, VaultLdapAuth, VaultProvider,
    VaultUserPassAuth,
};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The API group of every kind here.
pub const GROUP: &str = "external-secrets.io";

/// `type` of the condition ESO's consumers (Argo CD's health checks, `kubectl wait`) read.
pub const CONDITION_READY: &str = "Ready";
/// `type` of the condition an ExternalSecret carries while its metrics are cleared.
pub const CONDITION_DELETED: &str = "Deleted";
/// Condition statuses are these strings, not booleans.
pub const STATUS_TRUE: &str = "True";
pub const STATUS_FALSE: &str = "False";
pub const STATUS_UNKNOWN: &str = "Unknown";

/// Ready reasons of an ExternalSecret.
pub const REASON_SECRET_SYNCED: &str = "SecretSynced";
pub const REASON_SECRET_SYNCED_ERROR: &str = "SecretSyncedError";
pub const REASON_SECRET_DELETED: &str = "SecretDeleted";
pub const REASON_SECRET_MISSING: &str = "SecretMissing";
/// Ready reasons of a store.
pub const REASON_STORE_VALID: &str = "Valid";
pub const REASON_STORE_INVALID_PROVIDER_CONFIG: &str = "InvalidProviderConfig";
pub const REASON_STORE_VALIDATION_UNKNOWN: &str = "ValidationUnknown";
/// `status.capabilities` of a store whose provider reads and writes (AWS and Vault do).
pub const CAPABILITIES_READ_WRITE: &str = "ReadWrite";

/// A key of a Secret, for credentials (`namespace` only counts for cluster stores).
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "dns_subdomain")]
    pub name: Option<String>,
    /// Namespace of the Secret; defaults to the namespace of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "namespace_name")]
    pub namespace: Option<String>,
    /// Key in the Secret's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "secret_data_key")]
    pub key: Option<String>,
}

/// A ServiceAccount whose token authenticates to a provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSelector {
    /// Name of the ServiceAccount.
    #[schemars(schema_with = "dns_subdomain")]
    pub name: String,
    /// Namespace of the ServiceAccount (cluster stores only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "namespace_name")]
    pub namespace: Option<String>,
    /// Audiences of the requested token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
}

/// A Kubernetes object name (RFC 1123 subdomain), as upstream constrains references.
fn dns_subdomain(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    })
}

/// A namespace name (RFC 1123 label).
fn namespace_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 63,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    })
}

/// Namespace names.
fn namespace_names(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "array", "items": namespace_name(generator) })
}

/// A key of a Secret's or ConfigMap's data.
fn secret_data_key(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "pattern": "^[-._a-zA-Z0-9]+$"
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_never_write_an_empty_condition_list() {
        // Argo CD's health checks read `conditions: []` as a failure.
        assert_eq!(
            serde_json::to_value(ExternalSecretStatus::default()).unwrap(),
            json!({})
        );
        assert_eq!(
            serde_json::to_value(SecretStoreStatus::default()).unwrap(),
            json!({})
        );
        assert_eq!(
            serde_json::to_value(ClusterExternalSecretStatus::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn ready_status_is_written_as_eso_writes_it() {
        let status = ExternalSecretStatus {
            refresh_time: Some("2025-06-01T10:00:00Z".into()),
            synced_resource_version: Some("1-abc".into()),
            conditions: vec![ExternalSecretCondition {
                type_: CONDITION_READY.into(),
                status: STATUS_TRUE.into(),
                reason: Some(REASON_SECRET_SYNCED.into()),
                message: Some("secret synced".into()),
                last_transition_time: Some("2025-06-01T10:00:00Z".into()),
            }],
            binding: Some(SecretBinding { name: "app".into() }),
        };
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!({
                "refreshTime": "2025-06-01T10:00:00Z",
                "syncedResourceVersion": "1-abc",
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "SecretSynced",
                    "message": "secret synced", "lastTransitionTime": "2025-06-01T10:00:00Z"
                }],
                "binding": { "name": "app" }
            })
        );
    }

    #[test]
    fn upstream_spellings_read_back() {
        let store: SecretStoreSpec = serde_json::from_value(json!({
            "provider": { "aws": {
                "service": "SecretsManager", "region": "eu-west-1", "externalID": "x",
                "auth": { "secretRef": { "accessKeyIDSecretRef": { "name": "a", "key": "k" } } }
            } },
            "refreshInterval": "5m"
        }))
        .unwrap();
        let aws = store.provider.aws.unwrap();
        assert_eq!(aws.external_id.as_deref(), Some("x"));
        let keys = aws.auth.unwrap().secret_ref.unwrap();
        assert_eq!(
            keys.access_key_id_secret_ref.unwrap().key.as_deref(),
            Some("k")
        );

        let remote: RemoteRef = serde_json::from_value(json!({
            "key": "k", "decodingStrategy": "Base64URL", "metadataPolicy": "Fetch"
        }))
        .unwrap();
        assert_eq!(remote.decoding_strategy, Some(DecodingStrategy::Base64Url));
        assert_eq!(remote.metadata_policy, Some(MetadataPolicy::Fetch));
    }
}
