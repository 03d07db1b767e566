//! The store controller: keeps the copies of SecretStores and ClusterSecretStores that the
//! ExternalSecret generator reads, re-syncs only the ExternalSecrets of a store that
//! changed, validates each store (its credentials resolve and its provider answers) into
//! its `Ready` condition, and lets go of the clients (Vault tokens revoked) of stores that
//! are gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use sealsync_api::external::{
    CAPABILITIES_READ_WRITE, CONDITION_READY, ClusterSecretStore,
    REASON_STORE_INVALID_PROVIDER_CONFIG, REASON_STORE_VALID, STATUS_FALSE, STATUS_TRUE,
    SecretStore, SecretStoreCondition, SecretStoreSpec, SecretStoreStatus, StoreKind,
};
use sealsync_engine::EventType;
use sealsync_engine::kubernetes::{ObjectReporter, Triggers};
use sealsync_engine::leader::Leadership;
use sealsync_providers::SecretProvider;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::clients::Clients;
use crate::lookups::Lookups;
use crate::metrics::EsoMetrics;
use crate::stores::{self, Store, StoreKey, Stores};

/// How often a store is validated again when its spec does not say (upstream's
/// `--store-requeue-interval`).
const DEFAULT_REVALIDATE: Duration = Duration::from_secs(300);
/// A replica that does not lead looks again this often, to validate once it leads.
const NOT_LEADING_RETRY: Duration = Duration::from_secs(2);

/// The two store kinds, seen alike.
pub trait StoreObject:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    const KIND: StoreKind;
    fn store_spec(&self) -> &SecretStoreSpec;
    fn store_status(&self) -> Option<&SecretStoreStatus>;
}

impl StoreObject for SecretStore {
    const KIND: StoreKind = StoreKind::SecretStore;
    fn store_spec(&self) -> &SecretStoreSpec {
        &self.spec
    }
    fn store_status(&self) -> Option<&SecretStoreStatus> {
        self.status.as_ref()
    }
}

impl StoreObject for ClusterSecretStore {
    const KIND: StoreKind = StoreKind::ClusterSecretStore;
    fn store_spec(&self) -> &SecretStoreSpec {
        &self.spec.0
    }
    fn store_status(&self) -> Option<&SecretStoreStatus> {
        self.status.as_ref()
    }
}

/// What the store controller shares with the generator.
#[derive(Clone)]
pub struct StoreContext {
    pub client: Client,
    pub stores: Arc<Stores>,
    pub clients: Arc<Clients>,
    pub reporter: ObjectReporter,
    pub triggers: Triggers,
    pub leadership: Leadership,
    pub metrics: EsoMetrics,
}

impl std::fmt::Debug for StoreContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreContext").finish_non_exhaustive()
    }
}

fn key_of<S: StoreObject>(store: &S) -> StoreKey {
    StoreKey {
        kind: S::KIND,
        namespace: store.namespace(),
        name: store.name_any(),
    }
}

/// Keeps the stores that `apis` list, for as long as the process runs.
pub async fn run<S: StoreObject>(context: StoreContext, apis: Vec<Api<S>>) {
    let validations: Arc<Mutex<HashMap<StoreKey, tokio::task::JoinHandle<()>>>> = Arc::default();
    let watches = apis.into_iter().map(|api| {
        let context = context.clone();
        let validations = validations.clone();
        async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(store) | watcher::Event::InitApply(store)) => {
                        applied(&context, &validations, store).await;
                    }
                    Ok(watcher::Event::Delete(store)) => {
                        let key = key_of(&store);
                        info!(store = %key, "store deleted");
                        if let Some(task) = validations.lock().await.remove(&key) {
                            task.abort();
                        }
                        context.stores.remove(&key);
                        context.clients.forget_store(&key);
                        context.triggers.changed(&key.dependency());
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                    Err(e) => warn!(kind = stores::kind_name(S::KIND), error = %e, "store watch failed; retrying"),
                }
            }
        }
    });
    futures::future::join_all(watches).await;
}

async fn applied<S: StoreObject>(
    context: &StoreContext,
    validations: &Mutex<HashMap<StoreKey, tokio::task::JoinHandle<()>>>,
    object: S,
) {
    let key = key_of(&object);
    let store = Store {
        key: key.clone(),
        uid: object.uid().unwrap_or_default(),
        generation: object.meta().generation.unwrap_or_default(),
        spec: object.store_spec().clone(),
    };
    if !context.stores.put(store.clone()) {
        return;
    }
    context.clients.forget_store(&key);
    context.triggers.changed(&key.dependency());
    // One validation loop per store, restarted with its new spec.
    let task = tokio::spawn(validate_periodically(context.clone(), object, store));
    if let Some(old) = validations.lock().await.insert(key, task) {
        old.abort();
    }
}

async fn validate_periodically<S: StoreObject>(context: StoreContext, object: S, store: Store) {
    let every = revalidate_interval(&store.spec);
    let mut reported = object.store_status().and_then(|s| {
        let c = s.conditions.iter().find(|c| c.type_ == CONDITION_READY)?;
        Some((c.status.clone(), c.message.clone().unwrap_or_default()))
    });
    loop {
        if !context.leadership.is_leading() {
            tokio::time::sleep(NOT_LEADING_RETRY).await;
            continue;
        }
        validate(&context, &object, &store, &mut reported).await;
        tokio::time::sleep(every).await;
    }
}

fn revalidate_interval(spec: &SecretStoreSpec) -> Duration {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &spec.refresh_interval {
        Some(IntOrString::Int(seconds)) if *seconds > 0 => Duration::from_secs(*seconds as u64),
        Some(IntOrString::String(text)) => sealsync_api::parse_go_duration(text)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_REVALIDATE),
        _ => DEFAULT_REVALIDATE,
    }
}

/// Checks that the store's credentials resolve and its provider answers, and reports it.
/// `reported`: the Ready status and message last written, which are not written again.
async fn validate<S: StoreObject>(
    context: &StoreContext,
    object: &S,
    store: &Store,
    reported: &mut Option<(String, String)>,
) {
    // A cluster store's references name their namespaces (or the ExternalSecret's, which
    // a validation has none of: "default" stands for it).
    let namespace = store
        .key
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let result = async {
        let resolved =
            stores::resolve(&Lookups::Cluster(context.client.clone()), store, &namespace)
                .await
                .map_err(|e| e.to_string())?;
        let client = context
            .clients
            .client(&store.key, resolved)
            .await
            .map_err(|e| format!("{}: {e}", store.key))?;
        client
            .validate()
            .await
            .map_err(|e| format!("{}: {e}", store.key))
    }
    .await;
    let (ready, reason, message) = match &result {
        Ok(()) => (true, REASON_STORE_VALID, "store validated".to_string()),
        Err(message) => (false, REASON_STORE_INVALID_PROVIDER_CONFIG, message.clone()),
    };
    context
        .metrics
        .store_ready(store.key.namespace.as_deref(), &store.key.name, ready);
    let status_text = if ready { STATUS_TRUE } else { STATUS_FALSE };
    let now_reported = Some((status_text.to_string(), message.clone()));
    if *reported == now_reported {
        return;
    }
    let status = SecretStoreStatus {
        conditions: vec![SecretStoreCondition {
            type_: CONDITION_READY.into(),
            status: status_text.into(),
            reason: Some(reason.into()),
            message: Some(message.clone()),
            last_transition_time: Some(
                k8s_openapi::jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            ),
        }],
        capabilities: Some(CAPABILITIES_READ_WRITE.into()),
    };
    let status = serde_json::to_value(status).expect("a status serializes");
    match context.reporter.write_status(object, status).await {
        Ok(()) => *reported = now_reported,
        Err(e) => warn!(store = %store.key, error = %e, "cannot write the store's status"),
    }
    let type_ = if ready {
        EventType::Normal
    } else {
        EventType::Warning
    };
    if let Err(e) = context
        .reporter
        .event(object, type_, reason, "Validate", message)
        .await
    {
        warn!(store = %store.key, error = %e, "cannot publish an event");
    }
}
