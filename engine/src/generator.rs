//! What a generator plugs into the engine: the plan of a source (which Secret, how to treat
//! an existing one), the desired Secret it generates, and its status for each outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

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

/// What a source declares, known without opening anything.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SecretRef,
    /// Digest of everything the generated Secret depends on (see [`digest_of`]); when the
    /// Secret carries the same digest and was not changed by anyone else, nothing is done.
    pub input_digest: String,
    /// Whether the Secret gets an ownerReference to its source (garbage-collected with it).
    pub owner_reference: bool,
    pub write: WriteMode,
    /// Whether a Secret deleted by someone else is created again (drift repair of a
    /// deletion; upstream's `--skip-recreate` turns it off).
    pub recreate_deleted: bool,
    /// The data keys the generated Secret will have, when known without generating it. A
    /// Secret that others write too (merge mode) has drifted only when one of these is no
    /// longer ours, not whenever it is written.
    pub data_keys: Option<BTreeSet<String>>,
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

/// What happened to a source in one reconcile, handed to the generator to make its status.
#[derive(Debug)]
pub enum Outcome<R> {
    /// The Secret was already up to date; nothing was opened or written.
    Unchanged,
    /// The Secret was written (created, updated, or restored after drift) from the inputs
    /// of `input_digest`, which the status records ([`Generator::synced_digest`]).
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

    /// Event reason when a Secret was written.
    const APPLIED_REASON: &'static str;
    /// Event reason when an existing Secret is not ours and is left alone.
    const REFUSED_REASON: &'static str;

    /// The plan of `source`, cheap: no decryption, no network.
    fn plan(&self, source: &Self::Source) -> Result<Plan, Self::Error>;

    /// Drops from the cached copy of `source` what only [`Generator::generate`] reads (e.g.
    /// ciphertexts), so that thousands of sources stay small in memory. `plan`,
    /// `synced_digest` and `status` must give the same answers on the compact copy as on
    /// the full object; `generate` is always handed the full object, read again. The default
    /// keeps everything.
    fn compact(&self, _source: &mut Self::Source) {}

    /// `source` was deleted: drop what was kept about it (e.g. its metric series). Its
    /// Secret goes with it through its ownerReference.
    fn forget(&self, _source: &Self::Source) {}

    /// The desired Secret of `source`.
    fn generate(
        &self,
        source: &Self::Source,
    ) -> impl Future<Output = Result<(DesiredSecret, Self::Report), Self::Error>> + Send;

    /// The input digest ([`Plan::input_digest`]) of the Secret that the status of `source`
    /// reports as synced for its current generation, if any: when it is the plan's, an
    /// unchanged Secret needs no regeneration, also after a restart. The engine keeps no
    /// bookkeeping on the Secret itself.
    fn synced_digest(&self, source: &Self::Source) -> Option<String>;

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
