//! A cluster as the target of `sealsync sync --cluster`: Secrets are written through the
//! controller's apply path ([`KubeTarget`]: server-side apply under each source's field
//! manager, behind the same ownership guard). A diff writes nothing: each write is worked
//! out from the Secret as the API server has it ([`KubeTarget::applied`]), and so are the
//! values after a write, for the report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectList};
use kube::{Client, Resource};
use sealsync_crypto::SecretBytes;
use sealsync_engine::SecretRef;
use sealsync_engine::kubernetes::{KubeTarget, KubeTargetError, api_message};
use sealsync_engine::policy::ExistingSecret;
use sealsync_engine::target::{SecretTarget, SecretWrite};
use serde_json::Value;
use zeroize::Zeroize;

use super::store::{Observable, SYNC_LABEL};

/// The cluster of a kubeconfig context as the sync's target.
pub struct ClusterStore {
    client: Client,
    target: KubeTarget,
    diff: bool,
    /// What the next call needs of a Secret, read once: as read for the values before a
    /// write (which the write then starts from), as the write left it for the values after
    /// (`None`: deleted). Each entry is taken by its reader, and its values wiped (the
    /// copies kube and serde make on the way are not).
    known: Mutex<HashMap<SecretRef, Option<Value>>>,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("diff", &self.diff)
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
            diff,
            known: Mutex::default(),
        }
    }

    fn take_known(&self, secret: &SecretRef) -> Option<Option<Value>> {
        self.known.lock().expect("known lock").remove(secret)
    }

    fn remember(&self, secret: &SecretRef, state: Option<Value>) {
        let replaced = self
            .known
            .lock()
            .expect("known lock")
            .insert(secret.clone(), state);
        if let Some(replaced) = replaced.flatten() {
            wipe(replaced);
        }
    }

    /// The Secret as the API server has it (with its managedFields), as JSON.
    async fn current(&self, secret: &SecretRef) -> Result<Option<Value>, KubeTargetError> {
        if let Some(known) = self.take_known(secret) {
            return Ok(known);
        }
        read_secret(&self.client, secret).await
    }
}

/// `secret` as the API server has it (with its managedFields), as JSON.
pub(super) async fn read_secret(
    client: &Client,
    secret: &SecretRef,
) -> Result<Option<Value>, KubeTargetError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace);
    let found = api
        .get_opt(&secret.name)
        .await
        .map_err(|source| KubeTargetError::new("read", secret, source))?;
    Ok(found.map(|secret| serde_json::to_value(secret).expect("a Secret serializes")))
}

/// The values of a Secret as JSON (base64 strings), which are wiped.
pub(super) fn values_of(secret: Value) -> BTreeMap<String, SecretBytes> {
    let values = secret["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let bytes = STANDARD
                .decode(value.as_str().unwrap_or_default())
                .unwrap_or_default();
            (key.clone(), SecretBytes::from(bytes))
        })
        .collect();
    wipe(secret);
    values
}

/// Overwrites the values of a Secret as JSON before it is dropped.
fn wipe(mut secret: Value) {
    for value in secret["data"]
        .as_object_mut()
        .into_iter()
        .flat_map(|d| d.values_mut())
    {
        if let Value::String(text) = value {
            text.zeroize();
        }
    }
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
        let current = self.current(write.target).await?;
        let applied = KubeTarget::applied(current.clone(), write);
        let version = if self.diff {
            Ok(match &current {
                Some(current) if unchanged(current, &applied) => {
                    current["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                }
                _ => "diff".into(),
            })
        } else {
            self.target.apply(write).await
        };
        if let Some(current) = current {
            wipe(current);
        }
        match version {
            Ok(_) => self.remember(write.target, Some(applied)),
            Err(_) => wipe(applied),
        }
        version
    }

    async fn delete(&self, secret: &SecretRef, version: &str) -> Result<(), Self::Error> {
        if !self.diff {
            self.target.delete(secret, version).await?;
        }
        self.remember(secret, None);
        Ok(())
    }
}

impl Observable for ClusterStore {
    async fn values(
        &self,
        secret: &SecretRef,
    ) -> Result<Option<BTreeMap<String, SecretBytes>>, KubeTargetError> {
        let known = self.take_known(secret);
        let found = match known {
            Some(known) => known,
            None => {
                // Read for a write to come, which starts from it.
                let read = self.current(secret).await?;
                self.remember(secret, read.clone());
                read
            }
        };
        Ok(found.map(values_of))
    }

    async fn prune_candidates(
        &self,
        namespaces: Option<&BTreeSet<String>>,
    ) -> anyhow::Result<Vec<SecretRef>> {
        let selector = format!("{SYNC_LABEL}=true");
        let mut candidates = Vec::new();
        for (api, scope) in scoped::<Secret>(&self.client, namespaces) {
            let params = ListParams::default().labels(&selector);
            let listed = list_all(params, |params| {
                let api = api.clone();
                async move { api.list_metadata(&params).await }
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot list the Secrets labelled {selector} in {scope}: {}",
                    api_message(&e)
                )
            })?;
            candidates.extend(listed.into_iter().filter_map(|secret| {
                Some(SecretRef {
                    namespace: secret.metadata.namespace?,
                    name: secret.metadata.name?,
                })
            }));
        }
        Ok(candidates)
    }
}

/// Where a prune looks, and how messages name it: each of `namespaces`, or all namespaces.
pub(super) fn scoped<K>(
    client: &Client,
    namespaces: Option<&BTreeSet<String>>,
) -> Vec<(Api<K>, String)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespaces {
        Some(namespaces) => namespaces
            .iter()
            .map(|ns| {
                (
                    Api::namespaced(client.clone(), ns),
                    format!("namespace {ns}"),
                )
            })
            .collect(),
        None => vec![(Api::all(client.clone()), "all namespaces".into())],
    }
}

/// Objects listed per call: a cluster may hold many.
const LIST_PAGE: u32 = 500;

/// Every object that `list` gives for `params`, page by page.
pub(super) async fn list_all<T, F, Fut>(
    params: ListParams,
    mut list: F,
) -> Result<Vec<T>, kube::Error>
where
    T: Clone,
    F: FnMut(ListParams) -> Fut,
    Fut: Future<Output = Result<ObjectList<T>, kube::Error>>,
{
    let mut params = params.limit(LIST_PAGE);
    let mut listed = Vec::new();
    loop {
        let page = list(params.clone()).await?;
        listed.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(listed),
        }
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
        assert_eq!(values_of(new_key)["user"].expose(), b"admin");
    }
}
