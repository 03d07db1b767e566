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

pub use events::EventType;
pub use generator::{
    AppliedAction, Dependency, Desired, DesiredSecret, Generator, Outcome, Ownership, Plan, Policy,
    ReasonedError, SecretRef, WhenAbsent, WriteMode, digest_of,
};
pub use sync::{SourceKey, Syncer};
