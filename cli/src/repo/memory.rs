//! What a local store remembers of the SealedSecrets synced into it (inputs, keys, file
//! digest), so that a sync opens again only those that changed (docs/sync.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use sealsync_engine::SecretRef;
use serde::{Deserialize, Serialize};

use crate::files::{Sensitivity, write_atomically};

/// Its file in the store: not a namespace folder, so never taken for a Secret.
const FILE: &str = ".sealsync-memory.json";
/// A larger file is no memory (some 300 bytes per Secret: over 200,000 Secrets).
const MAX_BYTES: u64 = 64 << 20;

/// What one Secret of the store was synced from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The input digest of the SealedSecret it was opened from.
    pub inputs: String,
    /// The file's digest (its version in the store) right after the sync wrote it.
    pub file: String,
    /// Fingerprints of the keys that opened it.
    pub keys: BTreeSet<String>,
}

impl Entry {
    /// Whether the Secret is still as this entry left it: opened from the inputs it has
    /// `now` (whose keys are unused), by keys all among `keys`, its file unchanged since.
    pub fn holds(&self, now: &Entry, keys: &BTreeSet<String>) -> bool {
        self.inputs == now.inputs
            && self.file == now.file
            && !self.keys.is_empty()
            && self.keys.is_subset(keys)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    /// The version of sealsync that wrote it.
    sealsync: String,
    /// By source: by Secret (`namespace/name`).
    sources: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// The memory of a store, for one source's sync.
#[derive(Debug)]
pub struct Memory {
    path: PathBuf,
    source: String,
    remembered: Remembered,
}

impl Memory {
    /// The memory of the store `store` for `source`.
    pub fn load(store: &Path, source: &str) -> Self {
        let path = store.join(FILE);
        let mut bytes = Vec::new();
        // Not a FIFO or a device either: it could block or never end.
        let read = std::fs::metadata(&path).is_ok_and(|m| m.is_file())
            && std::fs::File::open(&path)
                .and_then(|file| file.take(MAX_BYTES + 1).read_to_end(&mut bytes))
                .is_ok_and(|read| read as u64 <= MAX_BYTES);
        let remembered = read
            .then(|| serde_json::from_slice::<Remembered>(&bytes).ok())
            .flatten()
            .filter(|r| r.sealsync == env!("CARGO_PKG_VERSION"))
            .unwrap_or_default();
        Self {
            path,
            source: source.into(),
            remembered,
        }
    }

    /// What this source's last sync of the Secret `target` left, if anything.
    pub fn kept(&self, target: &SecretRef) -> Option<&Entry> {
        self.remembered
            .sources
            .get(&self.source)?
            .get(&target.to_string())
    }

    /// Replaces what the source's syncs left with `entries` (by Secret), and writes the
    /// memory (atomically, owner-only: it sits next to plaintext).
    pub fn save(mut self, entries: BTreeMap<SecretRef, Entry>) -> anyhow::Result<()> {
        let entries = entries
            .into_iter()
            .map(|(target, entry)| (target.to_string(), entry))
            .collect();
        self.remembered.sealsync = env!("CARGO_PKG_VERSION").into();
        self.remembered.sources.insert(self.source, entries);
        let json = serde_json::to_vec(&self.remembered)?;
        write_atomically(&self.path, &json, Sensitivity::Private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str) -> SecretRef {
        SecretRef {
            namespace: "app".into(),
            name: name.into(),
        }
    }

    fn entry(inputs: &str, file: &str, keys: &[&str]) -> Entry {
        Entry {
            inputs: inputs.into(),
            file: file.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn keys(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|k| k.to_string()).collect()
    }

    /// Whether `memory` has `name` unchanged with inputs `i1`, file `f1` and keys `given`.
    fn unchanged(memory: &Memory, name: &str, inputs: &str, file: &str, given: &[&str]) -> bool {
        memory
            .kept(&secret(name))
            .is_some_and(|kept| kept.holds(&entry(inputs, file, &[]), &keys(given)))
    }

    #[test]
    fn a_secret_is_unchanged_only_for_its_source_inputs_file_and_keys() {
        let store = tempfile::tempdir().unwrap();
        let empty = Memory::load(store.path(), "repo-a");
        assert!(!unchanged(&empty, "db", "i1", "f1", &["k1"]));
        empty
            .save(BTreeMap::from([(secret("db"), entry("i1", "f1", &["k1"]))]))
            .unwrap();
        Memory::load(store.path(), "repo-b")
            .save(BTreeMap::from([(
                secret("api"),
                entry("i2", "f2", &["k2"]),
            )]))
            .unwrap();

        let memory = Memory::load(store.path(), "repo-a");
        assert!(unchanged(&memory, "db", "i1", "f1", &["k1", "k9"]));
        assert!(!unchanged(&memory, "db", "i9", "f1", &["k1"]), "new inputs");
        assert!(
            !unchanged(&memory, "db", "i1", "f9", &["k1"]),
            "the file changed"
        );
        assert!(
            !unchanged(&memory, "db", "i1", "f1", &["k9"]),
            "its key not given"
        );
        assert!(
            !unchanged(&memory, "api", "i2", "f2", &["k2"]),
            "another source's"
        );
        let other = Memory::load(store.path(), "repo-b");
        assert!(unchanged(&other, "api", "i2", "f2", &["k2"]));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(store.path().join(FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_memory_that_does_not_read_is_too_large_or_of_another_version_is_none() {
        let store = tempfile::tempdir().unwrap();
        let path = store.path().join(FILE);
        let written = |sealsync: &str| {
            let remembered = Remembered {
                sealsync: sealsync.into(),
                sources: BTreeMap::from([(
                    "repo".to_string(),
                    BTreeMap::from([("app/db".to_string(), entry("i", "f", &["k"]))]),
                )]),
            };
            std::fs::write(&path, serde_json::to_vec(&remembered).unwrap()).unwrap();
        };
        let loaded = || Memory::load(store.path(), "repo");
        written(env!("CARGO_PKG_VERSION"));
        assert!(unchanged(&loaded(), "db", "i", "f", &["k"]));
        written("0.0.0-other");
        assert!(!unchanged(&loaded(), "db", "i", "f", &["k"]));
        std::fs::write(&path, "{not json").unwrap();
        assert!(!unchanged(&loaded(), "db", "i", "f", &["k"]));
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(!unchanged(&loaded(), "db", "i", "f", &["k"]));
    }
}
