//! The sync's target (the embedded local store, [`LocalDirTarget`], or a cluster), observed:
//! each write and deletion is recorded as a change of keys (values only as keyed hashes),
//! and each Secret written is marked with the source that wrote it, so that a later sync of
//! that source prunes only its own.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use sealsync_crypto::SecretBytes;
use sealsync_engine::policy::ExistingSecret;
use sealsync_engine::target::{LocalDirError, LocalDirTarget, SecretTarget, SecretWrite};
use sealsync_engine::{DesiredSecret, ReasonedError, SecretRef, WriteMode};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Annotation of the Secrets a sync wrote: the source (`--source-id`, else the repository's
/// remote and path, else the folder) it synced. Set by hand on an existing Secret, it lets
/// that source merge into it.
pub const SYNC_SOURCE_ANNOTATION: &str = "sealsync.dev/sync-source";
/// Label of the Secrets a sync wrote (value `true`), by which a cluster lists them for
/// pruning.
pub const SYNC_LABEL: &str = "sealsync.dev/synced";
/// Reason of a write the sync refused (outside `--namespaces`, a service-account token, a
/// merge into a Secret that is not the source's): reported as refused, not failed.
pub const REFUSED: &str = "SyncRefused";
/// Service-account token Secrets: the API server puts a token of the account they name in
/// them; a repository never gets to make one.
const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";

/// Why a sync that may write only in `namespaces` (all when `None`) leaves `object` (of
/// `kind`) alone, if it does.
pub fn outside(
    kind: &str,
    namespaces: Option<&BTreeSet<String>>,
    object: &SecretRef,
) -> Option<String> {
    let allowed = namespaces?;
    (!allowed.contains(&object.namespace)).then(|| {
        format!(
            "{kind} {object} left alone: namespace {} is not one of --namespaces",
            object.namespace
        )
    })
}

/// Why a sync makes no Secret of type `type_`, if it makes none (`refused`: what was not
/// done): service-account tokens.
pub fn token_refusal(type_: Option<&str>, refused: &str) -> Option<String> {
    (type_ == Some(SERVICE_ACCOUNT_TOKEN)).then(|| {
        format!(
            "{refused}: a sync makes no {SERVICE_ACCOUNT_TOKEN} Secret; create it by hand, or \
             let the token come from the TokenRequest API"
        )
    })
}

/// Base of the field managers of one source's syncs: `sealsync-sync/<digest of the
/// source>`, so that the Secrets one repository wrote are not another's to overwrite
/// or prune (its writes are `sealsync-sync/<digest>/SealedSecret/<name>`).
pub fn field_manager_base(source: &str) -> String {
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sealsync-sync/{hex}")
}

/// How the keys of one Secret changed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KeyChanges {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub added: BTreeMap<String, String>,
    /// Key to the old and new value hashes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub changed: BTreeMap<String, (String, String)>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub removed: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub unchanged: BTreeSet<String>,
}

/// What happened to one Secret of the store.
#[derive(Debug, Clone)]
pub struct Change {
    pub existed: bool,
    /// Whether the file changed at all (data, labels, annotations, type).
    pub modified: bool,
    pub keys: KeyChanges,
}

/// Hashes values for reports: SHA-256 keyed with a random key of this run, so that a
/// report tells values apart (changed or not) but a short value cannot be guessed from it.
#[derive(Debug)]
pub struct ValueHasher {
    key: [u8; 32],
}

impl ValueHasher {
    pub fn new() -> Self {
        let mut key = [0; 32];
        getrandom::fill(&mut key).expect("the system's random source");
        Self { key }
    }

    pub fn hash(&self, value: &SecretBytes) -> String {
        let digest = Sha256::new()
            .chain_update(self.key)
            .chain_update(value.expose())
            .finalize();
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("hash:{hex}")
    }

    /// How `before` became `after`.
    pub fn changes(
        &self,
        before: &BTreeMap<String, SecretBytes>,
        after: &BTreeMap<String, SecretBytes>,
    ) -> KeyChanges {
        let mut changes = KeyChanges::default();
        for (key, value) in after {
            match before.get(key) {
                None => {
                    changes.added.insert(key.clone(), self.hash(value));
                }
                Some(old) if old.expose() != value.expose() => {
                    changes
                        .changed
                        .insert(key.clone(), (self.hash(old), self.hash(value)));
                }
                Some(_) => {
                    changes.unchanged.insert(key.clone());
                }
            }
        }
        for (key, value) in before {
            if !after.contains_key(key) {
                changes.removed.insert(key.clone(), self.hash(value));
            }
        }
        changes
    }
}

/// What the observed store reads of its target besides what the engine reads.
pub trait Observable: SecretTarget {
    /// The values of a Secret, if it exists.
    fn values(
        &self,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, SecretBytes>>, Self::Error>> + Send;

    /// The Secrets that some sync wrote (marked [`SYNC_LABEL`]), or, where listing is
    /// cheap, all, in `namespaces` (all when `None`): the candidates for pruning.
    fn prune_candidates(
        &self,
        namespaces: Option<&BTreeSet<String>>,
    ) -> impl Future<Output = anyhow::Result<Vec<SecretRef>>> + Send;
}

impl Observable for LocalDirTarget {
    async fn values(
        &self,
        secret: &SecretRef,
    ) -> Result<Option<BTreeMap<String, SecretBytes>>, LocalDirError> {
        self.data(secret)
    }

    async fn prune_candidates(
        &self,
        namespaces: Option<&BTreeSet<String>>,
    ) -> anyhow::Result<Vec<SecretRef>> {
        let mut listed = self.list()?;
        listed
            .retain(|secret| namespaces.is_none_or(|allowed| allowed.contains(&secret.namespace)));
        Ok(listed)
    }
}

/// A write of the target failed, or the sync refused it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError<E> {
    #[error(transparent)]
    Target(#[from] E),
    #[error("{0}")]
    Refused(String),
}

impl<E: ReasonedError> ReasonedError for StoreError<E> {
    fn reason(&self) -> &'static str {
        match self {
            Self::Target(e) => e.reason(),
            Self::Refused(_) => REFUSED,
        }
    }
}

/// The target, recording what is done to it, and refusing what a repository may not do to
/// a target others share: write outside the namespaces allowed, make or write a
/// service-account token, merge into a Secret that is not its source's.
#[derive(Debug)]
pub struct ObservedStore<T> {
    pub store: T,
    /// The source being synced ([`SYNC_SOURCE_ANNOTATION`]).
    source: String,
    /// Its field managers' base ([`field_manager_base`]).
    manager_base: String,
    /// The namespaces it may write (all when `None`).
    pub namespaces: Option<BTreeSet<String>>,
    /// The annotation with which a Secret consents to any source's merge (sealed-secrets'
    /// `patch`), besides naming the source.
    merge_consent: String,
    hasher: ValueHasher,
    changes: Mutex<BTreeMap<SecretRef, Change>>,
    /// One write of a Secret at a time (several sources may merge into one), so that the
    /// values read before and after are that write's.
    locks: Mutex<BTreeMap<SecretRef, Arc<tokio::sync::Mutex<()>>>>,
}

impl<T> ObservedStore<T> {
    pub fn new(
        store: T,
        source: &str,
        namespaces: Option<BTreeSet<String>>,
        merge_consent: &str,
    ) -> Self {
        Self {
            store,
            source: source.into(),
            manager_base: field_manager_base(source),
            namespaces,
            merge_consent: merge_consent.into(),
            hasher: ValueHasher::new(),
            changes: Mutex::default(),
            locks: Mutex::default(),
        }
    }

    async fn lock(&self, secret: &SecretRef) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .expect("locks lock")
            .entry(secret.clone())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// The base of this source's field managers.
    pub fn manager_base(&self) -> &str {
        &self.manager_base
    }

    /// What happened to `secret` in this run, if anything was written or deleted.
    pub fn change(&self, secret: &SecretRef) -> Option<Change> {
        self.changes
            .lock()
            .expect("changes lock")
            .get(secret)
            .cloned()
    }

    /// Whether this source's sync wrote `existing` (and nobody else did): then it may
    /// prune it.
    pub fn is_own(&self, existing: &ExistingSecret) -> bool {
        existing.annotations.get(SYNC_SOURCE_ANNOTATION) == Some(&self.source)
            && !existing.writers.is_empty()
            && existing
                .writers
                .iter()
                .all(|w| self.writes_for_source(&w.manager))
    }

    fn writes_for_source(&self, manager: &str) -> bool {
        manager
            .strip_prefix(self.manager_base.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Why the sync may not touch `secret` at all (not even read it), if it may not.
    fn outside(&self, secret: &SecretRef) -> Option<String> {
        outside("Secret", self.namespaces.as_ref(), secret)
    }

    /// Why the sync may not make `write` over `existing`, if it may not.
    fn refusal(
        &self,
        write: &SecretWrite<'_>,
        existing: Option<&ExistingSecret>,
    ) -> Option<String> {
        let target = write.target;
        if let Some(refusal) = token_refusal(
            write.secret.type_.as_deref(),
            &format!("Secret {target} not written"),
        ) {
            return Some(refusal);
        }
        // A merge would force its keys into anyone's Secret: only into one that this source
        // wrote, that names it, or that consents to merges.
        let foreign = existing.is_some_and(|existing| {
            let annotation = |name: &str| existing.annotations.get(name).map(String::as_str);
            annotation(SYNC_SOURCE_ANNOTATION) != Some(self.source.as_str())
                && annotation(&self.merge_consent) != Some("true")
                && !existing
                    .writers
                    .iter()
                    .any(|w| self.writes_for_source(&w.manager))
        });
        (write.mode == WriteMode::Merge && foreign).then(|| {
            format!(
                "Secret {target} exists and this sync did not write it: it merges into it only \
                 with its consent; annotate it {SYNC_SOURCE_ANNOTATION}={}",
                self.source
            )
        })
    }

    fn record(&self, secret: &SecretRef, change: Change) {
        self.changes
            .lock()
            .expect("changes lock")
            .insert(secret.clone(), change);
    }
}

impl<T: Observable> SecretTarget for ObservedStore<T> {
    type Error = StoreError<T::Error>;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, Self::Error> {
        if let Some(refusal) = self.outside(secret) {
            return Err(StoreError::Refused(refusal));
        }
        Ok(self.store.existing(secret).await?)
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, Self::Error> {
        let _one_at_a_time = self.lock(write.target).await;
        let existing = self.existing(write.target).await?;
        if let Some(refusal) = self.refusal(write, existing.as_ref()) {
            return Err(StoreError::Refused(refusal));
        }
        let before = self.store.values(write.target).await?;
        let previous = existing.and_then(|e| e.resource_version);
        let mut secret: DesiredSecret = write.secret.clone();
        secret
            .annotations
            .insert(SYNC_SOURCE_ANNOTATION.into(), self.source.clone());
        secret.labels.insert(SYNC_LABEL.into(), "true".into());
        let version = self
            .store
            .apply(&SecretWrite {
                secret: &secret,
                ..*write
            })
            .await?;
        let after = self.store.values(write.target).await?.unwrap_or_default();
        self.record(
            write.target,
            Change {
                existed: before.is_some(),
                modified: previous.as_ref() != Some(&version),
                keys: self.hasher.changes(&before.unwrap_or_default(), &after),
            },
        );
        Ok(version)
    }

    /// Deletes only what this source wrote (and nobody else): a source's policy (an
    /// ExternalSecret's `deletionPolicy: Delete`) never deletes another's Secret.
    async fn delete(&self, secret: &SecretRef, version: &str) -> Result<(), Self::Error> {
        let _one_at_a_time = self.lock(secret).await;
        if let Some(existing) = self.existing(secret).await?
            && !self.is_own(&existing)
        {
            return Err(StoreError::Refused(format!(
                "Secret {secret} not deleted: this sync did not write it, or others wrote it too"
            )));
        }
        let before = self.store.values(secret).await?.unwrap_or_default();
        self.store.delete(secret, version).await?;
        if self.store.values(secret).await?.is_none() {
            self.record(
                secret,
                Change {
                    existed: true,
                    modified: true,
                    keys: self.hasher.changes(&before, &BTreeMap::new()),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sealsync_engine::policy::{FieldManager, Writer};

    use super::*;

    #[test]
    fn changes_name_keys_and_hash_values_without_showing_them() {
        let hasher = ValueHasher::new();
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, SecretBytes> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), SecretBytes::from(v.as_bytes().to_vec())))
                .collect()
        };
        let changes = hasher.changes(
            &map(&[("user", "admin"), ("password", "old-pass"), ("gone", "x")]),
            &map(&[
                ("user", "admin"),
                ("password", "new-pass"),
                ("token", "t0ken"),
            ]),
        );
        assert_eq!(changes.added.keys().collect::<Vec<_>>(), ["token"]);
        assert_eq!(changes.removed.keys().collect::<Vec<_>>(), ["gone"]);
        assert_eq!(changes.unchanged.iter().collect::<Vec<_>>(), ["user"]);
        let (old, new) = &changes.changed["password"];
        assert_ne!(old, new);
        let json = serde_json::to_string(&changes).unwrap();
        for value in ["admin", "old-pass", "new-pass", "t0ken"] {
            assert!(!json.contains(value), "{json}");
        }
        assert_ne!(
            ValueHasher::new().hash(&SecretBytes::from(b"1234".to_vec())),
            hasher.hash(&SecretBytes::from(b"1234".to_vec())),
            "keyed per run: no lookup table of short values"
        );
    }

    fn existing(annotations: &[(&str, &str)], managers: &[&str]) -> ExistingSecret {
        ExistingSecret {
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            writers: managers
                .iter()
                .map(|m| Writer {
                    manager: m.to_string(),
                    ..Writer::default()
                })
                .collect(),
            ..ExistingSecret::default()
        }
    }

    #[test]
    fn a_source_touches_only_what_is_its_own_or_consents() {
        let namespaces = Some(BTreeSet::from(["dev".to_string()]));
        let x = ObservedStore::new((), "repo-x", namespaces, "example/patch");
        let y = field_manager_base("repo-y");
        assert_ne!(x.manager_base(), y, "one base per source");
        assert!(x.manager_base().starts_with("sealsync-sync/"));
        let ours = format!("{}/ExternalSecret/db", x.manager_base());
        let theirs = format!("{y}/ExternalSecret/db");
        let source = (SYNC_SOURCE_ANNOTATION, "repo-x");

        assert!(x.is_own(&existing(&[source], &[&ours])));
        assert!(
            !x.is_own(&existing(&[source], &[&theirs])),
            "Y's field manager"
        );
        assert!(!x.is_own(&existing(&[source], &[&ours, "kubectl"])));
        assert!(!x.is_own(&existing(&[], &[&ours])), "no source annotation");
        let prefix_only = format!("{}0/ExternalSecret/db", x.manager_base());
        assert!(!x.is_own(&existing(&[source], &[&prefix_only])));

        let manager = FieldManager::of_source(x.manager_base(), "ExternalSecret", "db");
        let secret = DesiredSecret::default();
        let in_dev = SecretRef {
            namespace: "dev".into(),
            name: "db".into(),
        };
        let write = |target, secret, mode| SecretWrite {
            target,
            secret,
            owner: None,
            mode,
            manager: &manager,
        };
        let merge = write(&in_dev, &secret, WriteMode::Merge);
        let refused = |existing: Option<ExistingSecret>| x.refusal(&merge, existing.as_ref());
        assert_eq!(refused(None), None, "a new Secret");
        assert!(
            refused(Some(existing(&[], &["kubectl"])))
                .unwrap()
                .contains("annotate it sealsync.dev/sync-source=repo-x")
        );
        assert!(
            refused(Some(existing(
                &[(SYNC_SOURCE_ANNOTATION, "repo-y")],
                &[&theirs]
            )))
            .is_some()
        );
        assert_eq!(
            refused(Some(existing(&[source], &["kubectl"]))),
            None,
            "names the source"
        );
        assert_eq!(
            refused(Some(existing(&[("example/patch", "true")], &["kubectl"]))),
            None
        );
        assert_eq!(
            refused(Some(existing(&[], &[&ours]))),
            None,
            "written by the source"
        );
        let replace = write(&in_dev, &secret, WriteMode::Replace);
        assert_eq!(
            x.refusal(&replace, Some(&existing(&[], &["kubectl"]))),
            None,
            "the engine's guard decides a replace"
        );

        let in_prod = SecretRef {
            namespace: "prod".into(),
            name: "db".into(),
        };
        assert!(
            x.outside(&in_prod)
                .unwrap()
                .contains("not one of --namespaces")
        );
        assert_eq!(x.outside(&in_dev), None);
        let token = DesiredSecret {
            type_: Some(SERVICE_ACCOUNT_TOKEN.into()),
            ..DesiredSecret::default()
        };
        let minted = write(&in_dev, &token, WriteMode::Replace);
        assert!(
            x.refusal(&minted, None)
                .unwrap()
                .contains(SERVICE_ACCOUNT_TOKEN)
        );
    }
}
