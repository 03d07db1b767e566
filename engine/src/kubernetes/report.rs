//! Status and events of objects, as the runtime writes them for sources, for the objects a
//! generator's controllers keep besides (e.g. stores).

use kube::core::Request;
use kube::{Client, Resource};
use serde_json::json;

use crate::events::{EventPublisher, EventType};

/// Writes statuses (server-side apply of the status subresource under one field manager)
/// and publishes events.
#[derive(Clone)]
pub struct ObjectReporter {
    client: Client,
    events: EventPublisher,
    field_manager: String,
}

impl std::fmt::Debug for ObjectReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReporter")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl ObjectReporter {
    pub(crate) fn new(client: Client, events: EventPublisher, field_manager: &str) -> Self {
        Self {
            client,
            events,
            field_manager: field_manager.into(),
        }
    }

    /// Sets the status of `object` (namespaced or cluster-scoped) to `status`.
    pub async fn write_status<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        status: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let meta = object.meta();
        let name = meta.name.as_deref().unwrap_or_default();
        let patch = kube::api::Patch::Apply(json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        }));
        let params = kube::api::PatchParams::apply(&self.field_manager).force();
        let request = Request::new(K::url_path(&(), meta.namespace.as_deref()))
            .patch_subresource("status", name, &params, &patch)
            .map_err(kube::Error::BuildRequest)?;
        self.client
            .request::<serde_json::Value>(request)
            .await
            .map(drop)
    }

    /// Publishes an event about `object`.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.events
            .publish(object.object_ref(&()), type_, reason, action, note)
            .await
    }

    /// Publishes an event about an object known only by reference (e.g. one that cannot
    /// be read).
    pub(crate) async fn event_about(
        &self,
        regarding: k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.events
            .publish(regarding, type_, reason, "Sync", note)
            .await
    }
}
