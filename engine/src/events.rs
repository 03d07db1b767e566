//! Kubernetes events (`events.k8s.io/v1`, or core `v1` where those are refused) of the
//! engine's state changes.
//!
//! The engine announces a change of state once (a Secret written, a failure that changed the
//! status), so there is nothing to aggregate into series: every event is one create and
//! nothing is remembered afterwards. kube-runtime's `Recorder` keeps every event it published
//! for six minutes to count repeats, which is one cached Event per source object after an
//! initial sync of thousands.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{self as core, EventSource, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::kubernetes::fallback::{Fallbacks, Preferred, is_refusal};

/// Whether an event is routine or asks for attention (`kubectl get events --field-selector
/// type=Warning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Publishes events under one reporting controller.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
    fallbacks: Arc<Fallbacks>,
}

impl EventPublisher {
    /// `controller` names the reporter; `instance` tells replicas apart (the pod name).
    pub(crate) fn new(
        client: Client,
        controller: String,
        instance: String,
        fallbacks: Arc<Fallbacks>,
    ) -> Self {
        Self {
            client,
            controller,
            instance,
            fallbacks,
        }
    }

    /// Creates one event about `regarding`, in its namespace.
    pub async fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        // Events about cluster-scoped objects live in `default`, as kubectl looks for them.
        let namespace = regarding
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let metadata = ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        };
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        // The same in the older form, which upstream Sealed Secrets' RBAC grants.
        let older = core::Event {
            metadata: metadata.clone(),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            message: Some(note.clone()),
            involved_object: regarding.clone(),
            source: Some(EventSource {
                component: Some(self.controller.clone()),
                host: None,
            }),
            reporting_component: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..core::Event::default()
        };
        let publish_older = || async {
            Api::<core::Event>::namespaced(self.client.clone(), &namespace)
                .create(&PostParams::default(), &older)
                .await
                .map(drop)
        };
        if self.fallbacks.refused(Preferred::EventsV1) {
            return publish_older().await;
        }
        let event = Event {
            metadata,
            event_time: Some(MicroTime(now)),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        match Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
        {
            // The older form stands in from now on only if it is allowed where this one was
            // not: a namespace where neither is (`default`, for a controller limited to some
            // namespaces) changes nothing for the others.
            Err(refused) if is_refusal(&refused) => {
                let published = publish_older().await;
                if published.is_ok() {
                    self.fallbacks.falls_back(Preferred::EventsV1, &refused);
                }
                published
            }
            result => result.map(drop),
        }
    }
}
