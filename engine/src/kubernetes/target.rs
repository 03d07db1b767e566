//! Secrets in the API server: written with server-side apply under each source's field
//! manager, and known from a compact cache, shared by every generator of a runtime, fed by
//! one metadata-only watch of Secrets that keeps, of each Secret the engine may touch, only
//! what the ownership guard reads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::api::{Api, DeleteParams, PartialObjectMeta, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::generator::{ReasonedError, SecretRef, WriteMode};
use crate::policy::{Consent, ExistingSecret, Writer};
use crate::target::{SecretObject, SecretTarget, SecretWrite};

/// Secrets in the API server, read from the shared compact cache and written with
/// server-side apply. Generated Secrets carry no bookkeeping of the engine's: whose they are
/// is read from their ownerReferences and managedFields.
#[derive(Clone)]
pub struct KubeTarget {
    client: Client,
    cache: Arc<SecretCache>,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget").finish_non_exhaustive()
    }
}

/// Which Secrets are worth caching: the ones some generator of the runtime may touch.
#[derive(Debug, Default)]
struct CacheRules {
    /// Bases of the generators' field managers: `<base>/...` write for their sources.
    managers: Vec<String>,
    /// `apiVersion` and kind of the sources, whose controlling ownerReferences make a
    /// Secret worth caching.
    owner_kinds: Vec<(String, String)>,
    /// The consent annotations, the only annotations kept.
    consent: BTreeSet<String>,
}

/// What the watch told of the Secrets that matter, by name.
#[derive(Debug, Default)]
pub(crate) struct SecretCache {
    rules: RwLock<CacheRules>,
    entries: Mutex<HashMap<SecretRef, ExistingSecret>>,
    /// For each watch (a namespace, or all), the Secrets listed since it (re)started, until
    /// the list is complete: those cached before and not listed again were deleted while
    /// the watch was down.
    listing: Mutex<HashMap<Option<String>, HashSet<SecretRef>>>,
}

impl SecretCache {
    /// Makes the cache keep what a generator writing under `field_manager` for sources of
    /// `owner_kind`, with `consent`, may touch.
    pub(crate) fn keep_for(
        &self,
        field_manager: &str,
        owner_kind: (String, String),
        consent: &Consent,
    ) {
        let mut rules = self.rules.write().expect("cache rules lock");
        rules.managers.push(format!("{field_manager}/"));
        rules.owner_kinds.push(owner_kind);
        rules
            .consent
            .extend(consent.annotations().map(str::to_string));
    }

    /// Takes in one event of the Secret watch of `scope` (a namespace, or all) and returns
    /// the Secrets it named, with their new version (none when gone), except the cached
    /// ones it left unchanged. Of Secrets no
    /// generator may touch nothing is kept (their annotations may hold `kubectl apply`'s
    /// copy of their data).
    pub(crate) fn observe(
        &self,
        scope: Option<&str>,
        event: watcher::Event<PartialObjectMeta<Secret>>,
    ) -> Vec<(SecretRef, Option<String>)> {
        let mut entries = self.entries.lock().expect("cache lock");
        let mut listing = self.listing.lock().expect("cache lock");
        let scope_key = scope.map(str::to_string);
        match event {
            watcher::Event::Init => {
                listing.insert(scope_key, HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(secret) | watcher::Event::Apply(secret) => {
                let Some(key) = secret_ref(&secret.metadata) else {
                    return Vec::new();
                };
                if let Some(listed) = listing.get_mut(&scope_key) {
                    listed.insert(key.clone());
                }
                let version = secret.metadata.resource_version.clone();
                match self.worth_caching(&secret.metadata) {
                    Some(existing) if entries.get(&key) == Some(&existing) => Vec::new(),
                    Some(existing) => {
                        entries.insert(key.clone(), existing);
                        vec![(key, version)]
                    }
                    None => {
                        entries.remove(&key);
                        vec![(key, version)]
                    }
                }
            }
            watcher::Event::Delete(secret) => secret_ref(&secret.metadata)
                .inspect(|key| {
                    entries.remove(key);
                })
                .map(|key| (key, None))
                .into_iter()
                .collect(),
            watcher::Event::InitDone => {
                let Some(listed) = listing.remove(&scope_key) else {
                    return Vec::new();
                };
                let gone: Vec<SecretRef> = entries
                    .keys()
                    .filter(|key| scope.is_none_or(|ns| key.namespace == ns))
                    .filter(|key| !listed.contains(key))
                    .cloned()
                    .collect();
                for key in &gone {
                    entries.remove(key);
                }
                gone.into_iter().map(|key| (key, None)).collect()
            }
        }
    }

    /// What the guard needs of a Secret some generator wrote, may take over, or whose
    /// source owns it; `None` for every other Secret.
    fn worth_caching(&self, meta: &ObjectMeta) -> Option<ExistingSecret> {
        let rules = self.rules.read().expect("cache rules lock");
        let owned_by_a_source = meta.owner_references.iter().flatten().any(|o| {
            o.controller == Some(true)
                && rules
                    .owner_kinds
                    .iter()
                    .any(|(api_version, kind)| &o.api_version == api_version && &o.kind == kind)
        });
        let existing = existing_from(&rules, meta);
        let written_by_a_source = existing.writers.iter().any(|w| {
            rules
                .managers
                .iter()
                .any(|m| w.manager.starts_with(m.as_str()))
        });
        (written_by_a_source || owned_by_a_source || !existing.annotations.is_empty())
            .then_some(existing)
    }

    fn get(&self, secret: &SecretRef) -> Option<ExistingSecret> {
        self.entries
            .lock()
            .expect("cache lock")
            .get(secret)
            .cloned()
    }

    fn controlled_by(&self, namespace: &str, uid: &str) -> Vec<(SecretRef, ExistingSecret)> {
        self.entries
            .lock()
            .expect("cache lock")
            .iter()
            .filter(|(secret, existing)| {
                secret.namespace == namespace && existing.controller_uid.as_deref() == Some(uid)
            })
            .map(|(secret, existing)| (secret.clone(), existing.clone()))
            .collect()
    }

    fn existing_from(&self, meta: &ObjectMeta) -> ExistingSecret {
        existing_from(&self.rules.read().expect("cache rules lock"), meta)
    }
}

/// What the guard reads of a Secret: its consent annotations, controller, and the field
/// managers that wrote its content.
fn existing_from(rules: &CacheRules, meta: &ObjectMeta) -> ExistingSecret {
    let writes_content = |e: &ManagedFieldsEntry| {
        e.fields_v1
            .as_ref()
            .and_then(|f| f.0.as_object())
            .is_some_and(|f| CONTENT_FIELDS.iter().any(|c| f.contains_key(*c)))
    };
    ExistingSecret {
        resource_version: meta.resource_version.clone(),
        controller_uid: meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone()),
        writers: meta
            .managed_fields
            .iter()
            .flatten()
            .filter(|e| writes_content(e))
            .map(|e| Writer {
                manager: e.manager.clone().unwrap_or_default(),
                time: e.time.as_ref().map(|t| t.0),
                data_keys: data_keys(e),
            })
            .collect(),
        annotations: meta
            .annotations
            .iter()
            .flatten()
            .filter(|(name, _)| rules.consent.contains(name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    }
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
    pub(crate) fn new(client: Client, cache: Arc<SecretCache>) -> Self {
        Self { client, cache }
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

/// The data keys a managedFields entry owns.
fn data_keys(entry: &ManagedFieldsEntry) -> BTreeSet<String> {
    entry
        .fields_v1
        .as_ref()
        .and_then(|f| f.0.get("f:data")?.as_object())
        .into_iter()
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

    fn controlled_by(&self, namespace: &str, uid: &str) -> Vec<(SecretRef, ExistingSecret)> {
        self.cache.controlled_by(namespace, uid)
    }

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, Self::Error> {
        if let Some(existing) = self.cache.get(secret) {
            return Ok(Some(existing));
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
        Ok(meta.map(|meta| self.cache.existing_from(&meta.metadata)))
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, Self::Error> {
        let failed = |source| KubeTargetError {
            action: "write",
            secret: write.target.clone(),
            source,
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &write.target.namespace);
        let name = &write.target.name;
        let manager = write.manager;
        let params = PatchParams::apply(manager.name()).force();
        let body = Patch::Apply(SecretObject::new(write, &write.secret.data));
        // An immutable Secret (or one of another type) is not replaced: deleting it first
        // could lose it, and upstream leaves it too. The error says what to do.
        let mut meta = api
            .patch_metadata(name, &params, &body)
            .await
            .map_err(failed)?;
        if write.mode == WriteMode::Replace {
            // What others wrote besides: upstream's Secret has exactly the template's. The
            // keys of other sources stay theirs.
            let mut patch = serde_json::Map::new();
            let theirs: BTreeSet<String> = meta
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .filter(|e| {
                    e.manager
                        .as_deref()
                        .is_some_and(|m| m != manager.name() && !manager.is_sibling(m))
                })
                .flat_map(data_keys)
                .collect();
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

    async fn delete(&self, secret: &SecretRef, version: &str) -> Result<(), Self::Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &secret.namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(version.into()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&secret.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(KubeTargetError {
                action: "delete",
                secret: secret.clone(),
                source,
            }),
        }
    }
}
