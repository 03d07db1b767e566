//! Secrets in the API server: written with server-side apply under each source's field
//! manager, and known from a compact cache, shared by every generator of a runtime, fed by
//! one metadata-only watch of Secrets that keeps, of each Secret the engine may touch, only
//! what the ownership guard reads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::api::{
    Api, DeleteParams, GetParams, PartialObjectMeta, Patch, PatchParams, PostParams, Preconditions,
};
use kube::core::Request;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use super::fallback::{Fallbacks, Preferred, UPDATE_ATTEMPTS, conflict};
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
    fallbacks: Arc<Fallbacks>,
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
    /// The annotations the guard reads (the consent annotations), the only ones kept.
    kept_annotations: BTreeSet<String>,
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
            .kept_annotations
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
            .filter(|(name, _)| rules.kept_annotations.contains(name.as_str()))
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

impl KubeTargetError {
    /// To `action` (read, write, delete) `secret` failed with `source`.
    pub fn new(action: &'static str, secret: &SecretRef, source: kube::Error) -> Self {
        Self {
            action,
            secret: secret.clone(),
            source,
        }
    }
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
    pub(crate) fn new(client: Client, cache: Arc<SecretCache>, fallbacks: Arc<Fallbacks>) -> Self {
        Self {
            client,
            cache,
            fallbacks,
        }
    }

    /// A target outside a runtime, for a one-shot command (`sealsync sync --cluster`):
    /// nothing is cached, so every [`SecretTarget::existing`] reads the API server, and
    /// the guard sees the `annotations` named (consent, and whatever else the caller
    /// checks) besides the managers and owners.
    pub fn uncached(client: Client, annotations: impl IntoIterator<Item = String>) -> Self {
        let cache = SecretCache::default();
        cache
            .rules
            .write()
            .expect("cache rules lock")
            .kept_annotations
            .extend(annotations);
        Self::new(client, Arc::new(cache), Arc::default())
    }

    /// The Secret `current` (as the API server has it, with its managedFields; `None`
    /// when there is none) as [`SecretTarget::apply`] of `write` would leave it, worked out
    /// without writing: what a diff shows. The same reckoning as the update fallback's.
    pub fn applied(
        current: Option<serde_json::Value>,
        write: &SecretWrite<'_>,
    ) -> serde_json::Value {
        match current {
            Some(current) => as_applied(current, write),
            None => serde_json::to_value(SecretObject::new(write, &write.secret.data))
                .expect("a Secret serializes"),
        }
    }
}

impl KubeTarget {
    /// The write by get and update (create when new), for an identity that may not patch
    /// Secrets: the same Secret as server-side apply gives, guarded by resourceVersion.
    async fn update(&self, write: &SecretWrite<'_>) -> Result<String, kube::Error> {
        let secrets = Request::new(format!(
            "/api/v1/namespaces/{}/secrets",
            write.target.namespace
        ));
        let name = &write.target.name;
        let params = PostParams {
            field_manager: Some(write.manager.name().into()),
            ..PostParams::default()
        };
        let mut attempt = 1;
        loop {
            let current = self
                .client
                .request::<serde_json::Value>(
                    secrets
                        .get(name, &GetParams::default())
                        .map_err(kube::Error::BuildRequest)?,
                )
                .await;
            let request = match current {
                Ok(current) => secrets
                    .replace(name, &params, to_body(&as_applied(current, write))?)
                    .map_err(kube::Error::BuildRequest)?,
                Err(kube::Error::Api(status)) if status.code == 404 => secrets
                    .create(
                        &params,
                        to_body(&SecretObject::new(write, &write.secret.data))?,
                    )
                    .map_err(kube::Error::BuildRequest)?,
                Err(e) => return Err(e),
            };
            // The answer is read as metadata only: the values are not decoded again.
            match self
                .client
                .request::<PartialObjectMeta<Secret>>(request)
                .await
            {
                Ok(meta) => return Ok(meta.metadata.resource_version.unwrap_or_default()),
                // Written (or created) by someone else since it was read: read it again.
                Err(e) if conflict(&e) && attempt < UPDATE_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

fn to_body(object: &impl serde::Serialize) -> Result<Vec<u8>, kube::Error> {
    serde_json::to_vec(object).map_err(kube::Error::SerdeError)
}

/// Secret `current` (as read, with its managedFields) as server-side apply of `write` and,
/// in [`WriteMode::Replace`], the removal of what others wrote would leave it: what this
/// source wrote before and no longer writes is gone, other sources' keys stay, and in
/// [`WriteMode::Merge`] everything of others stays.
fn as_applied(mut current: serde_json::Value, write: &SecretWrite<'_>) -> serde_json::Value {
    let desired = serde_json::to_value(SecretObject::new(write, &write.secret.data))
        .expect("a Secret serializes");
    let entries: Vec<ManagedFieldsEntry> =
        serde_json::from_value(current["metadata"]["managedFields"].take()).unwrap_or_default();
    let manager = write.manager;
    // Who owns the item `key` of the map at `path`.
    let owners = |path: &[&str], key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|e| {
                let mut fields = e.fields_v1.as_ref().map(|f| &f.0);
                for step in path {
                    fields = fields.and_then(|f| f.get(*step));
                }
                fields.is_some_and(|f| f.get(key).is_some())
            })
            .map(|e| e.manager.as_deref().unwrap_or_default())
            .collect()
    };
    let only_ours =
        |owners: &[&str]| !owners.is_empty() && owners.iter().all(|m| *m == manager.name());
    let replace = write.mode == WriteMode::Replace;
    let keep_data = |key: &str| {
        let owners = owners(&["f:data"], &format!("f:{key}"));
        if replace {
            let others = owners
                .iter()
                .any(|m| *m != manager.name() && !manager.is_sibling(m));
            !others && (owners.is_empty() || owners.iter().any(|m| manager.is_sibling(m)))
        } else {
            !only_ours(&owners)
        }
    };
    let data = merged(&current["data"], &desired["data"], keep_data);
    let mut metadata = current["metadata"].take();
    for field in ["labels", "annotations"] {
        let keep = |key: &str| {
            !replace
                && !only_ours(&owners(
                    &["f:metadata", &format!("f:{field}")],
                    &format!("f:{key}"),
                ))
        };
        metadata[field] = merged(&metadata[field], &desired["metadata"][field], keep).into();
    }
    let ours = desired["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut references: Vec<serde_json::Value> = metadata["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|reference| {
            let uid = reference["uid"].as_str().unwrap_or_default();
            let key = format!("k:{}", json!({ "uid": uid }));
            !ours.iter().any(|o| o["uid"] == uid)
                && !only_ours(&owners(&["f:metadata", "f:ownerReferences"], &key))
        })
        .collect();
    references.extend(ours);
    metadata["ownerReferences"] = references.into();
    // Left out, the API server keeps them and records the update under `fieldManager`.
    if let Some(metadata) = metadata.as_object_mut() {
        metadata.remove("managedFields");
    }
    current["metadata"] = metadata;
    current["data"] = data.into();
    for field in ["type", "immutable"] {
        if !desired[field].is_null() {
            current[field] = desired[field].clone();
        }
    }
    current
}

/// `desired` over the items of `current` that `keep` keeps.
fn merged(
    current: &serde_json::Value,
    desired: &serde_json::Value,
    keep: impl Fn(&str) -> bool,
) -> serde_json::Map<String, serde_json::Value> {
    let mut merged: serde_json::Map<String, serde_json::Value> = current
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| keep(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if let Some(desired) = desired.as_object() {
        merged.extend(desired.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    merged
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
            .map_err(|source| KubeTargetError::new("read", secret, source))?;
        Ok(meta.map(|meta| self.cache.existing_from(&meta.metadata)))
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, Self::Error> {
        let failed = |source| KubeTargetError::new("write", write.target, source);
        if self.fallbacks.refused(Preferred::SecretApply) {
            return self.update(write).await.map_err(failed);
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &write.target.namespace);
        let name = &write.target.name;
        let manager = write.manager;
        let params = PatchParams::apply(manager.name()).force();
        let body = Patch::Apply(SecretObject::new(write, &write.secret.data));
        // An immutable Secret (or one of another type) is not replaced: deleting it first
        // could lose it, and upstream leaves it too. The error says what to do.
        let mut meta = match api.patch_metadata(name, &params, &body).await {
            Ok(meta) => meta,
            Err(e) if self.fallbacks.falls_back(Preferred::SecretApply, &e) => {
                return self.update(write).await.map_err(failed);
            }
            Err(e) => return Err(failed(e)),
        };
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
            Err(source) => Err(KubeTargetError::new("delete", secret, source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sealsync_crypto::SecretBytes;

    use super::*;
    use crate::generator::DesiredSecret;
    use crate::policy::FieldManager;
    use crate::target::Owner;

    /// A managedFields entry of `manager` owning `fields`.
    fn entry(manager: &str, fields: serde_json::Value) -> serde_json::Value {
        json!({ "manager": manager, "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": fields })
    }

    fn write_of<'a>(
        target: &'a SecretRef,
        secret: &'a DesiredSecret,
        owner: Option<&'a Owner>,
        mode: WriteMode,
        manager: &'a FieldManager,
    ) -> SecretWrite<'a> {
        SecretWrite {
            target,
            secret,
            owner,
            mode,
            manager,
        }
    }

    fn desired(data: &[(&str, &str)], labels: &[(&str, &str)]) -> DesiredSecret {
        DesiredSecret {
            type_: Some("Opaque".into()),
            immutable: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes())))
                .collect(),
        }
    }

    const OURS: &str = "sealsync-controller/SealedSecret/db";

    #[test]
    fn an_update_in_replace_mode_leaves_what_server_side_apply_leaves() {
        // Upstream's controller wrote `a` and `old`, a label and its ownerReference; another
        // source of the engine wrote `s`.
        let current = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "db", "namespace": "app", "resourceVersion": "7",
                "labels": { "theirs": "x" },
                "annotations": { "note": "x" },
                "ownerReferences": [{ "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "name": "db", "uid": "u1", "controller": true }],
                "managedFields": [
                    entry("controller", json!({ "f:data": { "f:a": {}, "f:old": {} }, "f:metadata": { "f:labels": { "f:theirs": {} } } })),
                    entry("sealsync-controller/ExternalSecret/db", json!({ "f:data": { "f:s": {} } })),
                ],
            },
            "type": "Opaque",
            "data": { "a": "b2xk", "old": "b2xk", "s": "c2li" },
        });
        let target = SecretRef {
            namespace: "app".into(),
            name: "db".into(),
        };
        let secret = desired(&[("a", "new")], &[("ours", "y")]);
        let owner = Owner {
            api_version: "bitnami.com/v1alpha1".into(),
            kind: "SealedSecret".into(),
            name: "db".into(),
            uid: "u1".into(),
        };
        let manager = FieldManager::of_source("sealsync-controller", "SealedSecret", "db");
        assert_eq!(manager.name(), OURS);
        let write = write_of(&target, &secret, Some(&owner), WriteMode::Replace, &manager);
        let updated = as_applied(current, &write);
        assert_eq!(updated["data"], json!({ "a": "bmV3", "s": "c2li" }));
        assert_eq!(updated["metadata"]["labels"], json!({ "ours": "y" }));
        assert_eq!(updated["metadata"]["annotations"], json!({}));
        assert_eq!(
            updated["metadata"]["ownerReferences"],
            json!([{ "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "name": "db", "uid": "u1", "controller": true }])
        );
        assert_eq!(
            updated["metadata"]["resourceVersion"], "7",
            "guarded by the version read"
        );
        assert!(updated["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn an_update_in_merge_mode_keeps_others_and_drops_what_only_this_source_wrote() {
        let current = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "db", "namespace": "app", "resourceVersion": "7",
                "labels": { "theirs": "x", "was-ours": "y" },
                "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u9" }],
                "managedFields": [
                    entry("kubectl", json!({ "f:data": { "f:a": {}, "f:theirs": {} }, "f:metadata": { "f:labels": { "f:theirs": {} }, "f:ownerReferences": { "k:{\"uid\":\"u9\"}": {} } } })),
                    entry(OURS, json!({ "f:data": { "f:gone": {} }, "f:metadata": { "f:labels": { "f:was-ours": {} } } })),
                ],
            },
            "data": { "a": "b2xk", "theirs": "dA==", "gone": "Zw==" },
        });
        let target = SecretRef {
            namespace: "app".into(),
            name: "db".into(),
        };
        let secret = desired(&[("a", "new")], &[]);
        let manager = FieldManager::of_source("sealsync-controller", "SealedSecret", "db");
        let write = write_of(&target, &secret, None, WriteMode::Merge, &manager);
        let updated = as_applied(current, &write);
        assert_eq!(updated["data"], json!({ "a": "bmV3", "theirs": "dA==" }));
        assert_eq!(updated["metadata"]["labels"], json!({ "theirs": "x" }));
        assert_eq!(
            updated["metadata"]["ownerReferences"],
            json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u9" }])
        );
        assert_eq!(updated["type"], "Opaque");
    }
}
