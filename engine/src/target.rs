//! Where generated Secrets are written, behind one trait: the Kubernetes API
//! ([`crate::kubernetes::KubeTarget`]) or a local directory of Secret manifests
//! ([`LocalDirTarget`], for the CLI and for tests of the engine's semantics).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use sealsync_crypto::SecretBytes;
use serde::{Deserialize, Serialize, Serializer};

use crate::generator::{DesiredSecret, ReasonedError, SecretRef, WriteMode, hex_sha256};
use crate::policy::{ExistingSecret, FieldManager, Writer};

/// The source a Secret is owned by (becomes an ownerReference with `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// Everything written for one Secret.
#[derive(Debug)]
pub struct SecretWrite<'a> {
    pub target: &'a SecretRef,
    pub secret: &'a DesiredSecret,
    pub owner: Option<&'a Owner>,
    /// In [`WriteMode::Replace`] the Secret ends with exactly the generated data, labels and
    /// annotations (and other sources' keys), as upstream writes it; in [`WriteMode::Merge`]
    /// others' stay.
    pub mode: WriteMode,
    /// Whose write it is: the keys it owns afterwards are exactly the generated ones.
    pub manager: &'a FieldManager,
}

/// A store of Secrets the engine can read metadata from and write to.
pub trait SecretTarget: Send + Sync + 'static {
    type Error: ReasonedError;

    /// The metadata of the Secret, if it exists.
    fn existing(
        &self,
        secret: &SecretRef,
    ) -> impl Future<Output = Result<Option<ExistingSecret>, Self::Error>> + Send;

    /// Writes the Secret and returns its new version (resourceVersion).
    fn apply(
        &self,
        write: &SecretWrite<'_>,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;

    /// Deletes the Secret if it is still at `version` (nobody wrote it since it was
    /// decided on); a Secret already gone is not an error.
    fn delete(
        &self,
        secret: &SecretRef,
        version: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The Secrets in `namespace` whose controlling owner has `uid`, as far as the target
    /// knows without a call; used to prune a source's Secret left under its old name when
    /// its target was renamed. The default knows none.
    fn controlled_by(&self, _namespace: &str, _uid: &str) -> Vec<(SecretRef, ExistingSecret)> {
        Vec::new()
    }
}

/// One target shared by several syncers (one per generator).
impl<T: SecretTarget> SecretTarget for std::sync::Arc<T> {
    type Error = T::Error;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, T::Error> {
        (**self).existing(secret).await
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, T::Error> {
        (**self).apply(write).await
    }

    async fn delete(&self, secret: &SecretRef, version: &str) -> Result<(), T::Error> {
        (**self).delete(secret, version).await
    }

    fn controlled_by(&self, namespace: &str, uid: &str) -> Vec<(SecretRef, ExistingSecret)> {
        (**self).controlled_by(namespace, uid)
    }
}

/// The Secret object as sent to the API server or written to a file, values base64-encoded
/// straight into the output buffer (no intermediate plaintext strings).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretObject<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMetadata<'a>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    immutable: Option<bool>,
    #[serde(serialize_with = "base64_values")]
    data: &'a BTreeMap<String, SecretBytes>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectMetadata<'a> {
    name: &'a str,
    namespace: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    owner_references: Vec<OwnerReference<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OwnerReference<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
    controller: bool,
}

impl<'a> SecretObject<'a> {
    pub(crate) fn new(write: &'a SecretWrite<'a>, data: &'a BTreeMap<String, SecretBytes>) -> Self {
        Self {
            api_version: "v1",
            kind: "Secret",
            metadata: ObjectMetadata {
                name: &write.target.name,
                namespace: &write.target.namespace,
                labels: &write.secret.labels,
                annotations: &write.secret.annotations,
                owner_references: write
                    .owner
                    .map(|o| OwnerReference {
                        api_version: &o.api_version,
                        kind: &o.kind,
                        name: &o.name,
                        uid: &o.uid,
                        controller: true,
                    })
                    .into_iter()
                    .collect(),
            },
            type_: write.secret.type_.as_deref(),
            immutable: write.secret.immutable,
            data,
        }
    }
}

impl std::fmt::Debug for SecretObject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secret {}/{} (<{} values redacted>)",
            self.metadata.namespace,
            self.metadata.name,
            self.data.len()
        )
    }
}

fn base64_values<S: Serializer>(
    values: &&BTreeMap<String, SecretBytes>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(
        values
            .iter()
            .map(|(k, v)| (k, DisplayAsStr(Base64Display::new(v.expose(), &STANDARD)))),
    )
}

struct DisplayAsStr<T>(T);

impl<T: std::fmt::Display> Serialize for DisplayAsStr<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Errors of the local directory store.
#[derive(Debug, thiserror::Error)]
pub enum LocalDirError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Secret manifest: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A name that is not a Kubernetes name could lead out of the store (`..`, `/`).
    #[error("Secret {secret:?}: not a valid Kubernetes namespace/name, refused by the local store")]
    InvalidName { secret: String },
    #[error("{path} is a symbolic link: the local store does not write through links; remove it")]
    Link { path: PathBuf },
}

impl ReasonedError for LocalDirError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Read { .. } | Self::Parse { .. } => "TargetReadFailed",
            Self::Write { .. } | Self::InvalidName { .. } | Self::Link { .. } => {
                "TargetWriteFailed"
            }
        }
    }
}

/// Secrets as `<root>/<namespace>/<name>.yaml` manifests, written atomically with mode 0600,
/// only under valid Kubernetes names and never through a symbolic link, so that nothing is
/// written outside `root`; a write that changes nothing leaves the file alone.
/// Versions are digests of the file contents, so an edit by hand is seen as drift. The store
/// has no managedFields: each file says which field manager wrote which of its keys in
/// [`LOCAL_KEYS_ANNOTATION`].
#[derive(Debug, Clone)]
pub struct LocalDirTarget {
    root: PathBuf,
}

/// Annotation of the local store's files: a JSON map from each field manager that wrote
/// the file to the data keys it wrote.
pub const LOCAL_KEYS_ANNOTATION: &str = "sealsync.dev/managed-keys";

/// What the local store reads back from a manifest.
#[derive(Deserialize)]
struct StoredSecret {
    #[serde(default)]
    metadata: StoredMetadata,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoredMetadata {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    owner_references: Vec<StoredOwner>,
}

#[derive(Deserialize)]
struct StoredOwner {
    uid: String,
    #[serde(default)]
    controller: bool,
}

type KeysByManager = BTreeMap<String, std::collections::BTreeSet<String>>;

impl StoredSecret {
    /// Who wrote which keys; a file edited into something else has no writers.
    fn keys_by_manager(&self) -> KeysByManager {
        self.metadata
            .annotations
            .get(LOCAL_KEYS_ANNOTATION)
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }
}

impl LocalDirTarget {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of `secret`, refused unless its namespace and name are Kubernetes names.
    pub fn path(&self, secret: &SecretRef) -> Result<PathBuf, LocalDirError> {
        if !is_dns_label(&secret.namespace) || !is_dns_subdomain(&secret.name) {
            return Err(LocalDirError::InvalidName {
                secret: secret.to_string(),
            });
        }
        Ok(self
            .root
            .join(&secret.namespace)
            .join(format!("{}.yaml", secret.name)))
    }

    /// Every Secret in the store, by its file (others are ignored).
    pub fn list(&self) -> Result<Vec<SecretRef>, LocalDirError> {
        let listing = |dir: &Path| {
            fs::read_dir(dir).map_err(|source| LocalDirError::Read {
                path: dir.into(),
                source,
            })
        };
        let mut secrets = Vec::new();
        let namespaces = match listing(&self.root) {
            Err(LocalDirError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(secrets);
            }
            listed => listed?,
        };
        for namespace in namespaces.filter_map(Result::ok) {
            let Some(namespace_name) = namespace.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !is_dns_label(&namespace_name) || !namespace.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for file in listing(&namespace.path())?.filter_map(Result::ok) {
                let file_name = file.file_name();
                let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".yaml")) else {
                    continue;
                };
                if is_dns_subdomain(name) && file.file_type().is_ok_and(|t| t.is_file()) {
                    secrets.push(SecretRef {
                        namespace: namespace_name.clone(),
                        name: name.into(),
                    });
                }
            }
        }
        secrets.sort();
        Ok(secrets)
    }

    /// The data of `secret`, if it is in the store (a value that is not base64 reads as
    /// empty), e.g. to tell which keys a write would change.
    pub fn data(
        &self,
        secret: &SecretRef,
    ) -> Result<Option<BTreeMap<String, SecretBytes>>, LocalDirError> {
        Ok(Self::read(&self.path(secret)?)?.map(|(stored, _)| {
            stored
                .data
                .into_iter()
                .map(|(key, encoded)| (key, decoded(&encoded)))
                .collect()
        }))
    }

    fn read(path: &Path) -> Result<Option<(StoredSecret, String)>, LocalDirError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => zeroize::Zeroizing::new(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LocalDirError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let stored = serde_norway::from_str(&text).map_err(|e| LocalDirError::Parse {
            path: path.into(),
            // Only the position: the YAML error could quote a value.
            reason: e
                .location()
                .map(|l| format!("invalid YAML at line {}", l.line()))
                .unwrap_or_else(|| "invalid YAML".into()),
        })?;
        Ok(Some((stored, hex_sha256(text.as_bytes()))))
    }
}

fn decoded(encoded: &str) -> SecretBytes {
    SecretBytes::from(STANDARD.decode(encoded.trim()).unwrap_or_default())
}

/// Whether `name` can be a namespace: a DNS-1123 label.
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A Secret's name: a DNS-1123 subdomain (dot-separated labels).
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

impl SecretTarget for LocalDirTarget {
    type Error = LocalDirError;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, LocalDirError> {
        Ok(
            Self::read(&self.path(secret)?)?.map(|(stored, version)| ExistingSecret {
                resource_version: Some(version),
                writers: stored
                    .keys_by_manager()
                    .into_iter()
                    .map(|(manager, data_keys)| Writer {
                        manager,
                        time: None,
                        data_keys,
                    })
                    .collect(),
                controller_uid: stored
                    .metadata
                    .owner_references
                    .into_iter()
                    .find(|o| o.controller)
                    .map(|o| o.uid),
                annotations: stored.metadata.annotations,
            }),
        )
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, LocalDirError> {
        let path = self.path(write.target)?;
        let dir = path.parent().expect("a Secret file has a directory");
        if fs::symlink_metadata(dir).is_ok_and(|m| m.is_symlink()) {
            return Err(LocalDirError::Link { path: dir.into() });
        }
        let manager = write.manager;
        let mut data = write.secret.data.clone();
        let mut keys = KeysByManager::new();
        let mut current = None;
        if let Some((stored, version)) = Self::read(&path)? {
            current = Some(version);
            keys = stored.keys_by_manager();
            let ours = keys.remove(manager.name()).unwrap_or_default();
            // Merge keeps every key but the ones this source no longer writes; replace keeps
            // only the other sources' keys.
            let kept = |key: &String| match write.mode {
                WriteMode::Merge => !ours.contains(key),
                WriteMode::Replace => keys
                    .iter()
                    .any(|(m, k)| manager.is_sibling(m) && k.contains(key)),
            };
            for (key, encoded) in stored.data {
                if kept(&key) {
                    data.entry(key).or_insert_with(|| decoded(&encoded));
                }
            }
            if write.mode == WriteMode::Replace {
                keys.retain(|m, _| manager.is_sibling(m));
            }
        }
        keys.insert(
            manager.name().into(),
            write.secret.data.keys().cloned().collect(),
        );
        let mut annotations = write.secret.annotations.clone();
        annotations.insert(
            LOCAL_KEYS_ANNOTATION.into(),
            serde_json::to_string(&keys).expect("names serialize"),
        );
        let mut object = SecretObject::new(write, &data);
        object.metadata.annotations = &annotations;
        let text =
            zeroize::Zeroizing::new(serde_norway::to_string(&object).expect("a Secret serializes"));
        let version = hex_sha256(text.as_bytes());
        if current.as_ref() == Some(&version) {
            return Ok(version);
        }
        let failed = |source| LocalDirError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(failed)?;
        let mut file = tempfile::Builder::new()
            .prefix(".sealsync-")
            .tempfile_in(dir)
            .map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.persist(&path).map_err(|e| failed(e.error))?;
        Ok(version)
    }

    async fn delete(&self, secret: &SecretRef, version: &str) -> Result<(), LocalDirError> {
        let path = self.path(secret)?;
        match Self::read(&path)? {
            Some((_, current)) if current == version => {
                fs::remove_file(&path).map_err(|source| LocalDirError::Write { path, source })
            }
            // Changed since it was decided on: the next reconcile decides again.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn secret(namespace: &str, name: &str) -> SecretRef {
        SecretRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    async fn write(store: &LocalDirTarget, target: &SecretRef) -> Result<String, LocalDirError> {
        let desired = DesiredSecret {
            data: [(
                "password".to_string(),
                SecretBytes::from(b"hunter2".to_vec()),
            )]
            .into(),
            ..DesiredSecret::default()
        };
        let manager = FieldManager::of_source("test", "Source", &target.name);
        store
            .apply(&SecretWrite {
                target,
                secret: &desired,
                owner: None,
                mode: WriteMode::Replace,
                manager: &manager,
            })
            .await
    }

    #[tokio::test]
    async fn names_that_could_leave_the_store_are_refused_and_nothing_is_written() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("store");
        let store = LocalDirTarget::new(&root);
        for (namespace, name) in [
            ("..", "x"),
            ("app", "../../escaped"),
            ("app", "a/b"),
            ("App", "db"),
            ("app", ".hidden"),
            ("", "db"),
            ("app", ""),
        ] {
            let refused = write(&store, &secret(namespace, name)).await.unwrap_err();
            assert!(
                matches!(refused, LocalDirError::InvalidName { .. }),
                "{namespace}/{name}: {refused}"
            );
        }
        assert!(!root.exists(), "nothing was created");
        assert_eq!(fs::read_dir(outer.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn files_are_private_listed_and_an_unchanged_write_leaves_them_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirTarget::new(dir.path());
        let db = secret("app", "db.primary");
        let first = write(&store, &db).await.unwrap();
        let path = store.path(&db).unwrap();
        let before = fs::metadata(&path).unwrap();
        assert_eq!(before.permissions().mode() & 0o777, 0o600);
        assert_eq!(write(&store, &db).await.unwrap(), first);
        assert_eq!(
            fs::metadata(&path).unwrap().ino(),
            before.ino(),
            "not rewritten"
        );
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temporary file left"
        );

        fs::write(dir.path().join("app/notes.txt"), "").unwrap();
        fs::create_dir(dir.path().join("Not_A_Namespace")).unwrap();
        write(&store, &secret("other", "api")).await.unwrap();
        assert_eq!(
            store.list().unwrap(),
            [secret("app", "db.primary"), secret("other", "api")]
        );
        let data = store.data(&db).unwrap().unwrap();
        assert_eq!(data["password"].expose(), b"hunter2");
        assert!(store.data(&secret("app", "gone")).unwrap().is_none());
        assert!(
            LocalDirTarget::new(dir.path().join("none"))
                .list()
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_namespace_folder_that_is_a_link_is_not_written_through() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("app")).unwrap();
        let store = LocalDirTarget::new(dir.path());
        let refused = write(&store, &secret("app", "db")).await.unwrap_err();
        assert!(matches!(refused, LocalDirError::Link { .. }), "{refused}");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
