//! Secrets in the API server: written with server-side apply under one field manager, and
//! known from a compact cache fed by one metadata-only watch of Secrets that keeps, of each
//! Secret the engine may touch, only what the ownership guard reads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::generator::{ReasonedError, SecretRef, WriteMode};
use crate::policy::{Consent, ExistingSecret, consents};
use crate::target::{SecretObject, SecretTarget, SecretWrite};

/// Secrets in the API server, read from a compact cache and written with server-side apply
/// under one field manager. Generated Secrets carry no bookkeeping of the engine's: whose
/// they are is read from their ownerReferences and managedFields.
#[derive(Clone)]
pub struct KubeTarget {
    client: Client,
    field_manager: String,
    consent: Consent,
    /// `apiVersion` and kind of the sources, whose controlling ownerReferences make a
    /// Secret worth caching.
    owner_kind: (String, String),
    cache: Arc<SecretCache>,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

/// What the watch told of the Secrets that matter, by name.
#[derive(Debug, Default)]
struct SecretCache {
    entries: Mutex<HashMap<SecretRef, ExistingSecret>>,
    /// The Secrets listed since the watch (re)started, until the list is complete: those
    /// cached before and not listed again were deleted while the watch was down.
    listing: Mutex<Option<HashSet<SecretRef>>>,
}

/// A Secret could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} Secret {secret}: {}", describe(.source))]
pub struct KubeTargetError {
    action: &'static str,
    secret: SecretRef,
    source: kube::Error,
}

impl ReasonedError for KubeTargetError {
    fn reason(&self) -> &'static str {
        "ErrUpdateFailed"
    }
}

/// The API server's own message (it never quotes Secret values), with what to do when the
/// Secret's immutable fields stand in the way.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 422 && status.message.contains("immutable") => {
            format!(
                "the target Secret is immutable ({}); it was left unchanged: delete it to let \
                 it be created again",
                status.message
            )
        }
        other => api_message(other),
    }
}

/// The API server's own message, not the whole status.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

impl KubeTarget {
    pub(crate) fn new(
        client: Client,
        field_manager: &str,
        consent: Consent,
        owner_kind: (String, String),
    ) -> Self {
        Self {
            client,
            field_manager: field_manager.into(),
            consent,
            owner_kind,
            cache: Arc::default(),
        }
    }

    /// Takes in one event of the Secret watch and returns the Secrets it changed. Of other
    /// Secrets nothing is kept (their annotations may hold `kubectl apply`'s copy of their
    /// data).
    pub(crate) fn observe(
        &self,
        event: watcher::Event<PartialObjectMeta<Secret>>,
    ) -> Vec<SecretRef> {
        let mut entries = self.cache.entries.lock().expect("cache lock");
        let mut listing = self.cache.listing.lock().expect("cache lock");
        match event {
            watcher::Event::Init => {
                *listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(secret) | watcher::Event::Apply(secret) => {
                let Some(key) = secret_ref(&secret.metadata) else {
                    return Vec::new();
                };
                if let Some(listed) = listing.as_mut() {
                    listed.insert(key.clone());
                }
                match self.worth_caching(&secret.metadata) {
                    Some(existing) => {
                        let changed = entries.get(&key) != Some(&existing);
                        entries.insert(key.clone(), existing);
                        if changed { vec![key] } else { Vec::new() }
                    }
                    None => entries.remove(&key).map(|_| key).into_iter().collect(),
                }
            }
            watcher::Event::Delete(secret) => secret_ref(&secret.metadata)
                .and_then(|key| entries.remove(&key).map(|_| key))
                .into_iter()
                .collect(),
            watcher::Event::InitDone => {
                let Some(listed) = listing.take() else {
                    return Vec::new();
                };
                let gone: Vec<SecretRef> = entries
                    .keys()
                    .filter(|key| !listed.contains(key))
                    .cloned()
                    .collect();
                for key in &gone {
                    entries.remove(key);
                }
                gone
            }
        }
    }

    /// What the guard needs of a Secret the engine wrote, may take over, or whose source
    /// owns it; `None` for every other Secret.
    fn worth_caching(&self, meta: &ObjectMeta) -> Option<ExistingSecret> {
        let owned_by_a_source = meta.owner_references.iter().flatten().any(|o| {
            o.controller == Some(true)
                && o.api_version == self.owner_kind.0
                && o.kind == self.owner_kind.1
        });
        let existing = self.existing_from(meta);
        (existing.written_by_us || owned_by_a_source || !existing.annotations.is_empty())
            .then_some(existing)
    }

    fn existing_from(&self, meta: &ObjectMeta) -> ExistingSecret {
        let entries = meta.managed_fields.as_deref().unwrap_or_default();
        let ours = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
            e.manager.as_deref() == Some(self.field_manager.as_str())
        };
        let writes_content =
            |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
                e.fields_v1
                    .as_ref()
                    .and_then(|f| f.0.as_object())
                    .is_some_and(|f| CONTENT_FIELDS.iter().any(|c| f.contains_key(*c)))
            };
        let our_last_write = entries
            .iter()
            .filter(ours)
            .filter(writes_content)
            .filter_map(|e| e.time.clone())
            .max();
        let changed_by_others = entries
            .iter()
            .filter(|e| !ours(e))
            .filter(writes_content)
            .any(|e| match (&our_last_write, &e.time) {
                (Some(ours), Some(theirs)) => theirs > ours,
                _ => true,
            });
        let annotations = meta
            .annotations
            .iter()
            .flatten()
            .filter(|(name, _)| self.consent.is_consent_annotation(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let merging = consents(&annotations, self.consent.merge.as_deref());
        ExistingSecret {
            resource_version: meta.resource_version.clone(),
            controller_uid: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            written_by_us: entries.iter().filter(ours).any(|e| writes_content(&e)),
            changed_by_others,
            our_data_keys: merging
                .then(|| data_keys(meta, |manager| manager == Some(&self.field_manager))),
            annotations,
        }
    }
}

fn secret_ref(meta: &ObjectMeta) -> Option<SecretRef> {
    Some(SecretRef {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
    })
}

/// Fields that make up a Secret's content (not its metadata).
const CONTENT_FIELDS: [&str; 4] = ["f:data", "f:stringData", "f:type", "f:immutable"];

/// Data keys owned (in managedFields) by the managers `whose` accepts.
fn data_keys(meta: &ObjectMeta, whose: impl Fn(Option<&str>) -> bool) -> BTreeSet<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|e| whose(e.manager.as_deref()))
        .filter_map(|e| e.fields_v1.as_ref()?.0.get("f:data")?.as_object())
        .flat_map(|data| data.keys())
        .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
        .collect()
}

/// `{key: null}` for each of `present` that `wanted` lacks: a merge patch removing them.
fn removals<'a>(
    present: impl IntoIterator<Item = &'a String>,
    wanted: impl Fn(&str) -> bool,
) -> serde_json::Map<String, serde_json::Value> {
    present
        .into_iter()
        .filter(|key| !wanted(key))
        .map(|key| (key.clone(), serde_json::Value::Null))
        .collect()
}

impl SecretTarget for KubeTarget {
    type Error = KubeTargetError;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, Self::Error> {
        if let Some(existing) = self.cache.entries.lock().expect("cache lock").get(secret) {
            return Ok(Some(existing.clone()));
        }
        // Not cached: someone else's Secret of that name must be found before anything is
        // created (the cache keeps only the Secrets the engine may touch).
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &secret.namespace);
        let meta = api
            .get_metadata_opt(&secret.name)
            .await
            .map_err(|source| KubeTargetError {
                action: "read",
                secret: secret.clone(),
                source,
            })?;
        Ok(meta.map(|meta| self.existing_from(&meta.metadata)))
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, Self::Error> {
        let failed = |source| KubeTargetError {
            action: "write",
            secret: write.target.clone(),
            source,
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &write.target.namespace);
        let name = &write.target.name;
        let params = PatchParams::apply(&self.field_manager).force();
        let body = Patch::Apply(SecretObject::new(write, &write.secret.data));
        // An immutable Secret (or one of another type) is not replaced: deleting it first
        // could lose it, and upstream leaves it too. The error says what to do.
        let mut meta = api
            .patch_metadata(name, &params, &body)
            .await
            .map_err(failed)?;
        if write.mode == WriteMode::Replace {
            // What others wrote besides: upstream's Secret has exactly the template's.
            let mut patch = serde_json::Map::new();
            let theirs = data_keys(&meta.metadata, |manager| {
                manager != Some(&self.field_manager)
            });
            let stale = removals(&theirs, |key| write.secret.data.contains_key(key));
            if !stale.is_empty() {
                patch.insert("data".into(), stale.into());
            }
            let labels = removals(meta.labels().keys(), |k| {
                write.secret.labels.contains_key(k)
            });
            let annotations = removals(meta.annotations().keys(), |k| {
                write.secret.annotations.contains_key(k)
            });
            let mut metadata = serde_json::Map::new();
            if !labels.is_empty() {
                metadata.insert("labels".into(), labels.into());
            }
            if !annotations.is_empty() {
                metadata.insert("annotations".into(), annotations.into());
            }
            if !metadata.is_empty() {
                patch.insert("metadata".into(), metadata.into());
            }
            if !patch.is_empty() {
                meta = api
                    .patch_metadata(name, &PatchParams::default(), &Patch::Merge(json!(patch)))
                    .await
                    .map_err(failed)?;
            }
        }
        Ok(meta.metadata.resource_version.unwrap_or_default())
    }
}
