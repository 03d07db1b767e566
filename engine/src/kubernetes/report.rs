//! Status and events of objects, as the runtime writes them for sources, for the objects a
//! generator's controllers keep besides (e.g. stores).

use std::sync::Arc;

use kube::api::{GetParams, PostParams};
use kube::core::Request;
use kube::{Client, Resource};
use serde_json::json;

use super::fallback::{Fallbacks, Preferred, UPDATE_ATTEMPTS, conflict};
use crate::events::{EventPublisher, EventType};

/// Writes statuses (server-side apply of the status subresource under one field manager;
/// read and update where patching it is refused) and publishes events.
#[derive(Clone)]
pub struct ObjectReporter {
    client: Client,
    events: EventPublisher,
    field_manager: String,
    fallbacks: Arc<Fallbacks>,
}

impl std::fmt::Debug for ObjectReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReporter")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl ObjectReporter {
    pub(crate) fn new(
        client: Client,
        events: EventPublisher,
        field_manager: &str,
        fallbacks: Arc<Fallbacks>,
    ) -> Self {
        Self {
            client,
            events,
            field_manager: field_manager.into(),
            fallbacks,
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
        let objects = Request::new(K::url_path(&(), meta.namespace.as_deref()));
        if self.fallbacks.refused(Preferred::StatusApply) {
            return self.update_status(&objects, name, status).await;
        }
        let patch = kube::api::Patch::Apply(json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        }));
        let params = kube::api::PatchParams::apply(&self.field_manager).force();
        let request = objects
            .patch_subresource("status", name, &params, &patch)
            .map_err(kube::Error::BuildRequest)?;
        match self.client.request::<serde_json::Value>(request).await {
            Err(e) if self.fallbacks.falls_back(Preferred::StatusApply, &e) => {
                self.update_status(&objects, name, status).await
            }
            result => result.map(drop),
        }
    }

    /// The status written by a read of the object and an update of its status subresource,
    /// guarded by resourceVersion. The whole status is this field manager's, as the only
    /// writer of the statuses it reports.
    async fn update_status(
        &self,
        objects: &Request,
        name: &str,
        status: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let params = PostParams {
            field_manager: Some(self.field_manager.clone()),
            ..PostParams::default()
        };
        let mut attempt = 1;
        loop {
            let mut object: serde_json::Value = self
                .client
                .request(
                    objects
                        .get(name, &GetParams::default())
                        .map_err(kube::Error::BuildRequest)?,
                )
                .await?;
            object["status"] = status.clone();
            let body = serde_json::to_vec(&object).map_err(kube::Error::SerdeError)?;
            let request = objects
                .replace_subresource("status", name, &params, body)
                .map_err(kube::Error::BuildRequest)?;
            match self.client.request::<serde_json::Value>(request).await {
                Ok(_) => return Ok(()),
                Err(e) if conflict(&e) && attempt < UPDATE_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
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
