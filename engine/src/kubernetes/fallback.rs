//! Calls that the RBAC of upstream Sealed Secrets refuses (it grants `update`, not `patch`,
//! and core events), and which older calls stand in for them once refused, so that
//! sealsync's image runs in upstream's chart with no RBAC change. Each refusal is logged
//! once and remembered for the life of the process: the refused call is not tried again.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::info;

use super::api_message;

/// A call the engine prefers, with an older one that does the same.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Preferred {
    /// Server-side apply of Secrets (`patch`); else read and `update` (or `create`).
    SecretApply,
    /// Server-side apply of statuses (`patch`); else read and `update` of the subresource.
    StatusApply,
    /// `events.k8s.io/v1` events; else core `v1` Events.
    EventsV1,
}

impl Preferred {
    /// What is used instead, and what to grant to use the preferred call again.
    fn instead(self) -> &'static str {
        match self {
            Self::SecretApply => {
                "writing Secrets by get and update (create when new) from now on; grant patch on secrets to use server-side apply"
            }
            Self::StatusApply => {
                "writing statuses by get and update of the status subresource from now on; grant patch on the status subresource to use server-side apply"
            }
            Self::EventsV1 => {
                "publishing core v1 Events from now on; grant create on events.k8s.io events to publish those"
            }
        }
    }
}

/// Which preferred calls this process found refused.
#[derive(Debug, Default)]
pub(crate) struct Fallbacks {
    refused: [AtomicBool; 3],
}

impl Fallbacks {
    /// Whether `call` was refused before: use the older call at once.
    pub(crate) fn refused(&self, call: Preferred) -> bool {
        self.refused[call as usize].load(Ordering::Relaxed)
    }

    /// Whether `error` of `call` is a refusal by RBAC, which makes the older call stand in
    /// from now on; the first refusal is logged.
    pub(crate) fn falls_back(&self, call: Preferred, error: &kube::Error) -> bool {
        if !is_refusal(error) {
            return false;
        }
        if !self.refused[call as usize].swap(true, Ordering::Relaxed) {
            info!(refused = %api_message(error), "{}", call.instead());
        }
        true
    }
}

/// Whether `error` is a refusal by RBAC (403).
pub(crate) fn is_refusal(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

impl Fallbacks {}

/// Tries of a read and update that lost the race for a resourceVersion against another
/// writer, before the write fails (and is retried with the source's backoff).
pub(crate) const UPDATE_ATTEMPTS: usize = 3;

/// Whether `error` says the object changed since it was read (resourceVersion conflict).
pub fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("secrets is forbidden", "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn only_a_refusal_by_rbac_is_remembered_and_per_call() {
        let fallbacks = Fallbacks::default();
        assert!(!fallbacks.falls_back(Preferred::SecretApply, &status(500)));
        assert!(!fallbacks.refused(Preferred::SecretApply));
        assert!(fallbacks.falls_back(Preferred::SecretApply, &status(403)));
        assert!(fallbacks.refused(Preferred::SecretApply));
        assert!(!fallbacks.refused(Preferred::StatusApply));
        assert!(!fallbacks.refused(Preferred::EventsV1));
    }
}
