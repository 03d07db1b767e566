//! The engine on the Kubernetes API: the target ([`KubeTarget`]: server-side apply, a
//! compact cache of the Secrets that matter), the [`Runtime`] that runs several generators
//! in one process, and status and events of other objects ([`ObjectReporter`]).

pub(crate) mod fallback;
mod report;
mod runtime;
mod target;

pub use fallback::conflict;
pub use report::ObjectReporter;
pub use runtime::{
    GeneratorConfig, NotConverged, Runtime, RuntimeConfig, SourceReadError, Triggers,
};
pub use target::{KubeTarget, KubeTargetError, api_message};
