//! The events (`events.k8s.io/v1`) a controller published about an object.

use k8s_openapi::api::events::v1::Event;
use kube::api::Api;

/// `(type, reason, note)` of the events of `api` about the `kind` object `name`, oldest
/// first.
pub async fn events_about(
    api: &Api<Event>,
    kind: &str,
    name: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut events: Vec<Event> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    Ok(events
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect())
}
