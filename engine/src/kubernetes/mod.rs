//! The engine on the Kubernetes API: the target ([`KubeTarget`]: server-side apply, a
//! compact cache of the Secrets that matter) and the controller loop of a generator
//! ([`run`]).

mod runtime;
mod target;

pub use runtime::{EngineConfig, NotConverged, SourceReadError, run};
pub use target::{KubeTarget, KubeTargetError, api_message};
