//! Kubernetes-facing types of sealsync and their conversions: the `bitnami.com/v1alpha1`
//! SealedSecret resource, Secret manifests, key Secrets, and sealing/unsealing whole objects;
//! and External Secrets Operator's `external-secrets.io/v1` resources ([`external`]).

mod documents;
mod duration;
mod error;
pub mod external;
mod key_secrets;
mod sealed_secret;
mod sealing;
mod secret;
mod template;

pub use documents::{FieldError, Format, parse_documents, parse_json, to_document};
pub use duration::parse_go_duration;
pub use error::ApiError;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
pub use key_secrets::{
    KEY_LABEL, KEY_LABEL_ACTIVE, KEY_LABEL_RETIRED, KEY_SECRET_GENERATE_NAME, KeyInfo, KeyList,
    ROTATION_REQUESTED, key_secret, keyring_from_key_secrets, read_private_keys,
};
pub use sealed_secret::{
    SealedSecret, SealedSecretCondition, SealedSecretSpec, SealedSecretStatus, SecretTemplateSpec,
};
pub use sealing::{
    MAX_SEALED_VALUES, SealOptions, Unsealed, check_value_count, merge_into, reencrypt,
    seal_secret, unseal,
};
pub use secret::SecretManifest;
pub use template::{render_template_data, render_templates};

/// Every CRD of this crate, for `crdgen` and the drift check.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        SealedSecret::crd(),
        external::ExternalSecret::crd(),
        external::SecretStore::crd(),
        external::ClusterSecretStore::crd(),
        external::ClusterExternalSecret::crd(),
    ]
}
