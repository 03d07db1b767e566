//! What a generator plugs into the engine: the plan of a source (which Secret, how to treat
//! an existing one), the desired Secret it generates, and its status for each outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::{Duration, SystemTime};

use kube::Resource;
use sealsync_crypto::SecretBytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// A namespaced Secret name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How the generated data meets an existing Secret's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The Secret holds exactly the generated keys; keys written by others are removed.
    Replace,
    /// Only the generated keys are written; other keys are left alone.
    Merge,
}

/// Whose a source's Secret is, and so how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Created with an ownerReference to the source (garbage-collected with it), holding
    /// exactly the generated data.
    Owner,
    /// As `Owner`, without the ownerReference: the Secret outlives its source.
    Orphan,
    /// Only the source's own keys are written into the Secret, next to what others write
    /// (other sources included); never an ownerReference. `create`: a missing Secret is
    /// created, else the source waits until someone creates it.
    Merge { create: bool },
}

/// What happens to an existing Secret when its source wants none ([`Desired::Absent`],
/// e.g. its data was deleted at the provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAbsent {
    /// The Secret stays as it is.
    Keep,
    /// The Secret is deleted, when it is the source's.
    Delete,
    /// Only the source's own keys are removed from it.
    RemoveOwnKeys,
}

/// How the engine treats a source's Secret: each source declares its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub ownership: Ownership,
    /// Whether a change of the Secret by someone else is reverted.
    pub repair_drift: bool,
    /// Whether a Secret deleted by someone else is created again (upstream's
    /// `--skip-recreate` turns it off).
    pub recreate_deleted: bool,
    pub when_absent: WhenAbsent,
    /// The Secret is generated again this long after its last sync even when its inputs
    /// did not change (data from outside, e.g. a provider); `None`: only on change.
    pub refresh: Option<Duration>,
}

impl Default for Policy {
    /// Owned, drift repaired, generated again only when its inputs change.
    fn default() -> Self {
        Self {
            ownership: Ownership::Owner,
            repair_drift: true,
            recreate_deleted: true,
            when_absent: WhenAbsent::Keep,
            refresh: None,
        }
    }
}

/// An object a source's Secret is generated from besides the source itself (a store, a
/// credentials Secret): when it changes, the sources that depend on it are reconciled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dependency {
    pub kind: String,
    /// `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    pub name: String,
}

impl Dependency {
    /// A Secret: the Secret watch of the engine reconciles its dependents by itself.
    pub fn secret(secret: &SecretRef) -> Self {
        Self {
            kind: "Secret".into(),
            namespace: Some(secret.namespace.clone()),
            name: secret.name.clone(),
        }
    }
}

/// What a source declares, known without opening anything.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SecretRef,
    /// Digest of everything the generated Secret depends on (see [`digest_of`]); when the
    /// Secret was generated from the same digest and not changed by anyone else since,
    /// nothing is done.
    pub input_digest: String,
    pub policy: Policy,
    /// The data keys the generated Secret will have, when known without generating it. A
    /// Secret that others write too (merge mode) has drifted only when one of these is no
    /// longer ours, not whenever it is written.
    pub data_keys: Option<BTreeSet<String>>,
    /// What else the Secret is generated from ([`Dependency`]).
    pub dependencies: Vec<Dependency>,
}

/// The Secret a source wants. Values are zeroized when it is dropped.
#[derive(Debug, Clone, Default)]
pub struct DesiredSecret {
    pub type_: Option<String>,
    pub immutable: Option<bool>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, SecretBytes>,
}

/// What a source wants.
#[derive(Debug)]
pub enum Desired {
    Secret(DesiredSecret),
    /// No Secret (its data is gone); [`Policy::when_absent`] says what happens.
    Absent,
}

/// What happened to a source in one reconcile, handed to the generator to make its status.
#[derive(Debug)]
pub enum Outcome<R> {
    /// The Secret was already up to date; nothing was opened or written.
    Unchanged,
    /// The source's desired state was brought about (its Secret created, updated, restored
    /// after drift, deleted...) from the inputs of `input_digest`, which the status
    /// records ([`Generator::synced_digest`]).
    Applied {
        report: R,
        action: AppliedAction,
        input_digest: String,
    },
    /// An existing Secret belongs to someone else; it was left alone.
    Refused { message: String },
    /// Generating or writing failed; nothing was changed.
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// Why the engine wrote a Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedAction {
    Created,
    Updated,
    /// Someone else changed or deleted the Secret; it was restored.
    DriftReverted,
    /// An existing Secret that allowed it was taken over.
    Adopted,
    /// Generated again because its refresh was due; nothing in it changed.
    Refreshed,
    /// The source wants no Secret ([`Desired::Absent`]) and its Secret was deleted,
    Deleted,
    /// ... or the source's keys were removed from it,
    KeysRemoved,
    /// ... or it was kept as it is (or there was none).
    Kept,
}

/// An error that knows its short machine-readable reason (metric label, event reason).
pub trait ReasonedError: std::error::Error + Send + Sync + 'static {
    fn reason(&self) -> &'static str;
}

impl ReasonedError for std::convert::Infallible {
    fn reason(&self) -> &'static str {
        match *self {}
    }
}

/// Turns one kind of source into Secrets. The engine does the rest.
pub trait Generator: Send + Sync + 'static {
    type Source: Resource<DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static;
    /// What generation learnt that the status reports (e.g. which key opened what).
    type Report: Debug + Send + Sync + 'static;
    type Error: ReasonedError;

    /// Event reason when a Secret was written ([`Generator::applied_reason`]).
    const APPLIED_REASON: &'static str;
    /// Event reason when an existing Secret is not ours and is left alone.
    const REFUSED_REASON: &'static str;
    /// A finalizer that another controller of the kind (upstream) puts on its sources: the
    /// engine removes it from a source being deleted, so that sources taken over do not
    /// hang in deletion. The engine adds none: a Secret goes with its source through its
    /// ownerReference.
    const FOREIGN_FINALIZER: Option<&'static str> = None;

    /// Event reason of `action`: [`Generator::APPLIED_REASON`] unless the generator's kind
    /// names each action (ExternalSecrets say `Created`, `Updated` or `Deleted`).
    fn applied_reason(&self, _action: AppliedAction) -> &'static str {
        Self::APPLIED_REASON
    }

    /// The plan of `source`, cheap: no decryption, no network.
    fn plan(&self, source: &Self::Source) -> Result<Plan, Self::Error>;

    /// Whether the cached copies of sources are compact: without their last-applied
    /// annotation and with [`Generator::compact`] applied, so that thousands of sources stay
    /// small in memory, at the cost of a read of the full object before each
    /// [`Generator::generate`]. Otherwise `generate` is handed the cached copy (all but its
    /// managedFields) and a sync reads nothing more.
    const COMPACT: bool = false;

    /// With [`Generator::COMPACT`], drops from the cached copy of `source` what only
    /// [`Generator::generate`] reads (e.g. ciphertexts). `plan`, `synced_digest` and
    /// `status` must give the same answers on the compact copy as on the full object. The
    /// default keeps everything.
    fn compact(&self, _source: &mut Self::Source) {}

    /// `source` was deleted: drop what was kept about it (e.g. its metric series). Its
    /// Secret goes with it through its ownerReference.
    fn forget(&self, _source: &Self::Source) {}

    /// The desired state of `source`'s Secret.
    fn generate(
        &self,
        source: &Self::Source,
    ) -> impl Future<Output = Result<(Desired, Self::Report), Self::Error>> + Send;

    /// The input digest ([`Plan::input_digest`]) of the Secret that the status of `source`
    /// reports as synced for its current generation, if any: when it is the plan's, an
    /// unchanged Secret needs no regeneration, also after a restart. The engine keeps no
    /// bookkeeping on the Secret itself.
    fn synced_digest(&self, source: &Self::Source) -> Option<String>;

    /// When the status of `source` says its Secret was last generated, for the refresh
    /// ([`Policy::refresh`]) after a restart. The default: unknown, so a source with a
    /// refresh is generated once when the process starts.
    fn synced_at(&self, _source: &Self::Source) -> Option<SystemTime> {
        None
    }

    /// When the data of a generated Secret was read, if earlier than its generation (a
    /// read shared with other sources): the refresh interval counts from then, so that the
    /// readers of one remote value fall due together and keep sharing its reads. The
    /// default: the data is as old as the generation.
    fn data_read_at(&self, _report: &Self::Report) -> Option<SystemTime> {
        None
    }

    /// The status `source` should have after `outcome`, or `None` when its current status
    /// already says so (statuses are written only when they change). After
    /// [`Outcome::Applied`] it records the outcome's input digest for `synced_digest`; after
    /// the other outcomes it keeps the recorded one (the Secret did not change).
    fn status(
        &self,
        source: &Self::Source,
        outcome: &Outcome<Self::Report>,
    ) -> Option<serde_json::Value>;
}

/// Hex SHA-256 of the JSON of `inputs`, for [`Plan::input_digest`].
pub fn digest_of<T: Serialize>(inputs: &T) -> String {
    hex_sha256(&serde_json::to_vec(inputs).expect("plain data serializes to JSON"))
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
