//! The sync's target (the embedded local store, [`LocalDirTarget`], or a cluster), observed:
//! each write and deletion is recorded as a change of keys (values only as keyed hashes),
//! and each Secret written is marked with the source that wrote it, so that a later sync of
//! that source prunes only its own.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;

use sealsync_crypto::SecretBytes;
use sealsync_engine::policy::ExistingSecret;
use sealsync_engine::target::{LocalDirError, LocalDirTarget, SecretTarget, SecretWrite};
use sealsync_engine::{DesiredSecret, SecretRef};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Annotation of the Secrets a sync wrote: the source (folder or repository path) it
/// synced.
pub const SYNC_SOURCE_ANNOTATION: &str = "sealsync.dev/sync-source";
/// Label of the Secrets a sync wrote, by which a cluster lists them for pruning.
pub const SYNC_LABEL: &str = "sealsync.dev/synced";
/// Base of the field managers of a sync's writes (`sealsync-sync/SealedSecret/<name>`).
pub const FIELD_MANAGER: &str = "sealsync-sync";

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
    /// cheap, all: the candidates for pruning.
    fn synced(&self) -> impl Future<Output = anyhow::Result<Vec<SecretRef>>> + Send;
}

impl Observable for LocalDirTarget {
    async fn values(
        &self,
        secret: &SecretRef,
    ) -> Result<Option<BTreeMap<String, SecretBytes>>, LocalDirError> {
        self.data(secret)
    }

    async fn synced(&self) -> anyhow::Result<Vec<SecretRef>> {
        Ok(self.list()?)
    }
}

/// The target, recording what is done to it.
#[derive(Debug)]
pub struct ObservedStore<T> {
    pub store: T,
    /// The source being synced ([`SYNC_SOURCE_ANNOTATION`]).
    source: String,
    hasher: ValueHasher,
    changes: Mutex<BTreeMap<SecretRef, Change>>,
}

impl<T> ObservedStore<T> {
    pub fn new(store: T, source: &str) -> Self {
        Self {
            store,
            source: source.into(),
            hasher: ValueHasher::new(),
            changes: Mutex::default(),
        }
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
        let prefix = format!("{FIELD_MANAGER}/");
        existing.annotations.get(SYNC_SOURCE_ANNOTATION) == Some(&self.source)
            && !existing.writers.is_empty()
            && existing
                .writers
                .iter()
                .all(|w| w.manager.starts_with(&prefix))
    }

    fn record(&self, secret: &SecretRef, change: Change) {
        self.changes
            .lock()
            .expect("changes lock")
            .insert(secret.clone(), change);
    }
}

impl<T: Observable> SecretTarget for ObservedStore<T> {
    type Error = T::Error;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, T::Error> {
        self.store.existing(secret).await
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, T::Error> {
        let before = self.store.values(write.target).await?;
        let previous = self
            .store
            .existing(write.target)
            .await?
            .and_then(|e| e.resource_version);
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

    async fn delete(&self, secret: &SecretRef, version: &str) -> Result<(), T::Error> {
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
}
