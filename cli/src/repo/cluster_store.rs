//! A cluster as the target of `sealsync sync --cluster`: Secrets are written through the
//! controller's apply path ([`KubeTarget`]: server-side apply under each source's field
//! manager, behind the same ownership guard). A diff writes nothing: each write is worked
//! out from the Secret as the API server has it ([`KubeTarget::applied`]) and kept in
//! memory for the report.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ListParams};
use sealsync_crypto::SecretBytes;
use sealsync_engine::SecretRef;
use sealsync_engine::kubernetes::{KubeTarget, KubeTargetError, api_message};
use sealsync_engine::policy::ExistingSecret;
use sealsync_engine::target::{SecretTarget, SecretWrite};
use serde_json::Value;

use super::store::{Observable, SYNC_LABEL};

/// The cluster of a kubeconfig context as the sync's target.
pub struct ClusterStore {
    client: Client,
    target: KubeTarget,
    /// In a diff: the Secrets as the run's writes would leave them (`None`: deleted).
    preview: Option<Mutex<BTreeMap<SecretRef, Option<Value>>>>,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("diff", &self.preview.is_some())
            .finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// Writes into the cluster, or with `diff` only works out what the writes would do.
    /// The guard reads the `annotations` named (consent, and the sync's own mark).
    pub fn new(client: Client, annotations: impl IntoIterator<Item = String>, diff: bool) -> Self {
        Self {
            target: KubeTarget::uncached(client.clone(), annotations),
            client,
            preview: diff.then(Mutex::default),
        }
    }

    /// The Secret as the API server has it (with its managedFields), as JSON.
    async fn current(&self, secret: &SecretRef) -> Result<Option<Value>, KubeTargetError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &secret.namespace);
        let found = api
            .get_opt(&secret.name)
            .await
            .map_err(|source| KubeTargetError::new("read", secret, source))?;
        Ok(found.map(|secret| serde_json::to_value(secret).expect("a Secret serializes")))
    }

    fn previewed(&self, secret: &SecretRef) -> Option<Option<Value>> {
        let preview = self.preview.as_ref()?;
        preview.lock().expect("preview lock").get(secret).cloned()
    }
}

/// The values of a Secret as JSON (base64 strings).
fn values_of(secret: &Value) -> BTreeMap<String, SecretBytes> {
    secret["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let bytes = STANDARD
                .decode(value.as_str().unwrap_or_default())
                .unwrap_or_default();
            (key.clone(), SecretBytes::from(bytes))
        })
        .collect()
}

/// Whether `applied` leaves the Secret `current` as it is: what server-side apply would not
/// write (and give no new resourceVersion).
fn unchanged(current: &Value, applied: &Value) -> bool {
    // None, `{}` and `[]` alike: the API server leaves empty maps and lists out.
    let field = |secret: &Value, path: &[&str]| {
        let value = path.iter().fold(secret, |value, step| &value[*step]);
        let empty = match value {
            Value::Object(map) => map.is_empty(),
            Value::Array(list) => list.is_empty(),
            other => other.is_null(),
        };
        (!empty).then(|| value.clone())
    };
    [
        &["data"][..],
        &["type"],
        &["immutable"],
        &["metadata", "labels"],
        &["metadata", "annotations"],
        &["metadata", "ownerReferences"],
    ]
    .iter()
    .all(|path| field(current, path) == field(applied, path))
}

impl SecretTarget for ClusterStore {
    type Error = KubeTargetError;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, Self::Error> {
        self.target.existing(secret).await
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, Self::Error> {
        let Some(preview) = &self.preview else {
            return self.target.apply(write).await;
        };
        let current = self.current(write.target).await?;
        let applied = KubeTarget::applied(current.clone(), write);
        let version = match current {
            Some(current) if unchanged(&current, &applied) => {
                current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
            _ => "diff".into(),
        };
        preview
            .lock()
            .expect("preview lock")
            .insert(write.target.clone(), Some(applied));
        Ok(version)
    }

    async fn delete(&self, secret: &SecretRef, version: &str) -> Result<(), Self::Error> {
        match &self.preview {
            Some(preview) => {
                preview
                    .lock()
                    .expect("preview lock")
                    .insert(secret.clone(), None);
                Ok(())
            }
            None => self.target.delete(secret, version).await,
        }
    }
}

impl Observable for ClusterStore {
    async fn values(
        &self,
        secret: &SecretRef,
    ) -> Result<Option<BTreeMap<String, SecretBytes>>, KubeTargetError> {
        let found = match self.previewed(secret) {
            Some(previewed) => previewed,
            None => self.current(secret).await?,
        };
        Ok(found.as_ref().map(values_of))
    }

    async fn synced(&self) -> anyhow::Result<Vec<SecretRef>> {
        let api: Api<Secret> = Api::all(self.client.clone());
        let listed = api
            .list_metadata(&ListParams::default().labels(SYNC_LABEL))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot list the Secrets labelled {SYNC_LABEL} in all namespaces: {}",
                    api_message(&e)
                )
            })?;
        Ok(listed
            .items
            .into_iter()
            .filter_map(|secret| {
                Some(SecretRef {
                    namespace: secret.metadata.namespace?,
                    name: secret.metadata.name?,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_write_that_changes_nothing_is_told_apart_from_one_that_does() {
        let current = json!({
            "metadata": {"name": "db", "labels": {"a": "1"}, "resourceVersion": "7"},
            "data": {"user": "YWRtaW4="},
        });
        let same = json!({
            "metadata": {"labels": {"a": "1"}, "annotations": {}, "ownerReferences": []},
            "data": {"user": "YWRtaW4="},
        });
        assert!(unchanged(&current, &same));
        let relabelled = json!({"metadata": {"labels": {"a": "2"}}, "data": {"user": "YWRtaW4="}});
        assert!(!unchanged(&current, &relabelled));
        let new_key =
            json!({"metadata": {"labels": {"a": "1"}}, "data": {"user": "YWRtaW4=", "pw": "eA=="}});
        assert!(!unchanged(&current, &new_key));
        assert_eq!(values_of(&new_key)["user"].expose(), b"admin");
    }
}
