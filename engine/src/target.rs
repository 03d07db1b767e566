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
use crate::policy::ExistingSecret;

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
    /// annotations, as upstream writes it; in [`WriteMode::Merge`] others' stay.
    pub mode: WriteMode,
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
}

impl ReasonedError for LocalDirError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Read { .. } | Self::Parse { .. } => "TargetReadFailed",
            Self::Write { .. } => "TargetWriteFailed",
        }
    }
}

/// Secrets as `<root>/<namespace>/<name>.yaml` manifests, written atomically with mode 0600.
/// Versions are digests of the file contents, so an edit by hand is seen as drift. The store
/// has no managedFields: each file it writes names its writer in [`LOCAL_WRITER_ANNOTATION`].
#[derive(Debug, Clone)]
pub struct LocalDirTarget {
    root: PathBuf,
    field_manager: String,
}

/// Annotation of the local store's files naming the field manager that wrote them.
pub const LOCAL_WRITER_ANNOTATION: &str = "sealsync.dev/written-by";

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

impl LocalDirTarget {
    pub fn new(root: impl Into<PathBuf>, field_manager: &str) -> Self {
        Self {
            root: root.into(),
            field_manager: field_manager.into(),
        }
    }

    /// The file of `secret`.
    pub fn path(&self, secret: &SecretRef) -> PathBuf {
        self.root
            .join(&secret.namespace)
            .join(format!("{}.yaml", secret.name))
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

impl SecretTarget for LocalDirTarget {
    type Error = LocalDirError;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, LocalDirError> {
        Ok(
            Self::read(&self.path(secret))?.map(|(stored, version)| ExistingSecret {
                resource_version: Some(version),
                written_by_us: stored.metadata.annotations.get(LOCAL_WRITER_ANNOTATION)
                    == Some(&self.field_manager),
                annotations: stored.metadata.annotations,
                controller_uid: stored
                    .metadata
                    .owner_references
                    .into_iter()
                    .find(|o| o.controller)
                    .map(|o| o.uid),
                changed_by_others: false,
                our_data_keys: None,
            }),
        )
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, LocalDirError> {
        let path = self.path(write.target);
        let mut data = write.secret.data.clone();
        if write.mode == WriteMode::Merge
            && let Some((stored, _)) = Self::read(&path)?
        {
            for (key, encoded) in stored.data {
                data.entry(key).or_insert_with(|| {
                    SecretBytes::from(STANDARD.decode(encoded.trim()).unwrap_or_default())
                });
            }
        }
        let mut annotations = write.secret.annotations.clone();
        annotations.insert(LOCAL_WRITER_ANNOTATION.into(), self.field_manager.clone());
        let mut object = SecretObject::new(write, &data);
        object.metadata.annotations = &annotations;
        let text =
            zeroize::Zeroizing::new(serde_norway::to_string(&object).expect("a Secret serializes"));
        let dir = path.parent().expect("a Secret file has a directory");
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
        Ok(hex_sha256(text.as_bytes()))
    }
}
