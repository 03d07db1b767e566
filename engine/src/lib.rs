//! The sync engine: a declared source (a SealedSecret, an ExternalSecret) becomes a Secret
//! that is applied, watched for drift, pruned with its source and reported on, continuously.
//!
//! A [`Generator`] says what Secret a source wants; the engine owns everything else: the
//! ownership guard ([`policy`]), where Secrets are written ([`target`]: the Kubernetes API or
//! a local directory), the reconcile loop with backoff and resync ([`kubernetes`]), leader
//! election ([`leader`]), metrics ([`metrics`]) and logs ([`telemetry`]).

pub mod backoff;
mod events;
mod generator;
pub mod kubernetes;
pub mod leader;
pub mod metrics;
pub mod policy;
mod sync;
pub mod target;
pub mod telemetry;

pub use generator::{
    AppliedAction, DesiredSecret, Generator, Outcome, Plan, ReasonedError, SecretRef, WriteMode,
    digest_of,
};
pub use sync::{Syncer, source_annotation};

/// Annotation naming the source of a generated Secret (`<Kind>/<name>`): how the engine
/// knows a Secret is its own even without ownerReferences.
pub const SOURCE_ANNOTATION: &str = "sealsync.dev/source";
/// Annotation with the digest of the source inputs the Secret was generated from: when it
/// matches, nothing needs to be opened or written.
pub const DIGEST_ANNOTATION: &str = "sealsync.dev/input-digest";
/// Label on every generated Secret (value: the field manager), so that they are watched
/// with a label selector instead of caching every Secret of the cluster.
pub const MANAGED_BY_LABEL: &str = "sealsync.dev/managed-by";
