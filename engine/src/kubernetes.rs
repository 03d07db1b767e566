//! The engine on the Kubernetes API: generated Secrets applied with server-side apply,
//! watched metadata-only through a label selector, and a controller loop per generator
//! with per-object backoff, periodic resync, status and events.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backoff::{Backoff, jitter};
use crate::events::{EventPublisher, EventType};
use crate::generator::{AppliedAction, Generator, Outcome, ReasonedError, SecretRef, WriteMode};
use crate::leader::Leadership;
use crate::metrics::EngineMetrics;
use crate::policy::{self, Consent, ExistingSecret};
use crate::sync::Syncer;
use crate::target::{SecretObject, SecretTarget, SecretWrite};
use crate::{MANAGED_BY_LABEL, SOURCE_ANNOTATION};

/// Secrets in the API server, read from a metadata-only cache and written with
/// server-side apply under one field manager.
#[derive(Clone)]
pub struct KubeTarget {
    client: Client,
    field_manager: String,
    /// Annotation by which a Secret consents to merging (its other keys are not ours).
    merge: Option<String>,
    store: Store<PartialObjectMeta<Secret>>,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

/// A Secret could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} Secret {secret}: {}", api_message(.source))]
pub struct KubeTargetError {
    action: &'static str,
    secret: SecretRef,
    source: kube::Error,
}

impl ReasonedError for KubeTargetError {
    fn reason(&self) -> &'static str {
        "ErrUpdateFailed"
    }
}

/// A source could not be read again before generating its Secret.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {object}: {}", api_message(.source))]
pub struct SourceReadError {
    object: String,
    source: kube::Error,
}

impl ReasonedError for SourceReadError {
    fn reason(&self) -> &'static str {
        "ErrReadFailed"
    }
}

/// The API server's own message (it never quotes Secret values), not the whole status.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

impl SecretTarget for KubeTarget {
    type Error = KubeTargetError;

    async fn existing(&self, secret: &SecretRef) -> Result<Option<ExistingSecret>, Self::Error> {
        let key = ObjectRef::new(&secret.name).within(&secret.namespace);
        if let Some(meta) = self.store.get(&key) {
            return Ok(Some(existing_from(
                &meta.metadata,
                &self.field_manager,
                self.merge.as_deref(),
            )));
        }
        // Not one of ours (the cache holds only labelled Secrets): someone else's Secret of
        // that name must be found before anything is created.
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &secret.namespace);
        let meta = api
            .get_metadata_opt(&secret.name)
            .await
            .map_err(|source| KubeTargetError {
                action: "read",
                secret: secret.clone(),
                source,
            })?;
        Ok(meta
            .map(|meta| existing_from(&meta.metadata, &self.field_manager, self.merge.as_deref())))
    }

    async fn apply(&self, write: &SecretWrite<'_>) -> Result<String, Self::Error> {
        let failed = |source| KubeTargetError {
            action: "write",
            secret: write.target.clone(),
            source,
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &write.target.namespace);
        let name = &write.target.name;
        let params = PatchParams::apply(&self.field_manager).force();
        let body = Patch::Apply(SecretObject::new(write, &write.secret.data));
        let mut meta = match api.patch_metadata(name, &params, &body).await {
            // An immutable Secret (or one of another type) cannot change in place: when it is
            // wholly ours, it is replaced; a Secret merged into keeps its other keys and the
            // error is reported.
            Err(kube::Error::Api(e))
                if e.code == 422
                    && e.message.contains("immutable")
                    && write.mode == WriteMode::Replace =>
            {
                api.delete(name, &DeleteParams::background())
                    .await
                    .map_err(failed)?;
                api.patch_metadata(name, &params, &body).await
            }
            other => other,
        }
        .map_err(failed)?;
        if write.mode == WriteMode::Replace {
            let stale = data_keys(&meta.metadata, |manager| {
                manager != Some(&self.field_manager)
            })
            .into_iter()
            .filter(|key| !write.secret.data.contains_key(key))
            .map(|key| (key, serde_json::Value::Null))
            .collect::<serde_json::Map<_, _>>();
            if !stale.is_empty() {
                let patch = Patch::Merge(json!({ "data": stale }));
                meta = api
                    .patch_metadata(name, &PatchParams::default(), &patch)
                    .await
                    .map_err(failed)?;
            }
        }
        Ok(meta.metadata.resource_version.unwrap_or_default())
    }
}

/// kubectl's copy of the last applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Reduces the managedFields of a cached Secret to what [`existing_from`] reads: who wrote
/// which content field when, and, in a Secret that consents to merging, which data keys are
/// ours. Keeps the cache small when there are many Secrets.
fn keep_content_ownership(meta: &mut ObjectMeta, field_manager: &str, merge: Option<&str>) {
    let merging = consents(meta, merge);
    for entry in meta.managed_fields.iter_mut().flatten() {
        let keep_keys = merging && entry.manager.as_deref() == Some(field_manager);
        if let Some(fields) = entry.fields_v1.as_mut()
            && let Some(object) = fields.0.as_object_mut()
        {
            object.retain(|key, _| CONTENT_FIELDS.contains(&key.as_str()));
            for (key, value) in object.iter_mut() {
                if !(keep_keys && key == "f:data") {
                    *value = json!({});
                }
            }
        }
    }
}

/// Whether the Secret consents to `annotation` ([`policy::consents`]).
fn consents(meta: &ObjectMeta, annotation: Option<&str>) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|annotations| policy::consents(annotations, annotation))
}

/// Fields that make up a Secret's content (not its metadata).
const CONTENT_FIELDS: [&str; 4] = ["f:data", "f:stringData", "f:type", "f:immutable"];

fn existing_from(meta: &ObjectMeta, field_manager: &str, merge: Option<&str>) -> ExistingSecret {
    let entries = meta.managed_fields.as_deref().unwrap_or_default();
    let our_last_write = entries
        .iter()
        .filter(|e| e.manager.as_deref() == Some(field_manager))
        .filter_map(|e| e.time.clone())
        .max();
    let changed_by_others = entries
        .iter()
        .filter(|e| e.manager.as_deref() != Some(field_manager))
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.as_object())
                .is_some_and(|f| CONTENT_FIELDS.iter().any(|c| f.contains_key(*c)))
        })
        .any(|e| match (&our_last_write, &e.time) {
            (Some(ours), Some(theirs)) => theirs > ours,
            _ => true,
        });
    ExistingSecret {
        resource_version: meta.resource_version.clone(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        controller_uid: meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone()),
        changed_by_others,
        our_data_keys: consents(meta, merge)
            .then(|| data_keys(meta, |manager| manager == Some(field_manager))),
    }
}

/// Data keys owned (in managedFields) by the managers `whose` accepts.
fn data_keys(meta: &ObjectMeta, whose: impl Fn(Option<&str>) -> bool) -> BTreeSet<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|e| whose(e.manager.as_deref()))
        .filter_map(|e| e.fields_v1.as_ref()?.0.get("f:data")?.as_object())
        .flat_map(|data| data.keys())
        .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
        .collect()
}

/// How the engine runs one generator.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Server-side apply field manager, also the value of the managed-by label.
    pub field_manager: String,
    /// Every source is checked again this often even when nothing happened.
    pub resync: Duration,
    /// Sources reconciled at the same time.
    pub concurrency: u16,
    pub consent: Consent,
    /// First and longest retry delay after a failure.
    pub backoff: (Duration, Duration),
    /// Who publishes the events.
    pub reporter: String,
    /// This replica, in events (e.g. its leader-election identity).
    pub instance: String,
    /// Asked before each reconcile: a replica that no longer leads writes nothing.
    pub leadership: Leadership,
}

struct Context<G: Generator> {
    syncer: Syncer<G, KubeTarget>,
    client: Client,
    config: EngineConfig,
    events: EventPublisher,
    metrics: EngineMetrics,
    backoff: Backoff,
}

/// A reconcile that did not converge; the object is retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotConverged(String);

/// Runs the engine for generator `G` until `shutdown` resolves. `reconcile_all` makes
/// every source be looked at again (e.g. when keys changed).
pub async fn run<G>(
    client: Client,
    generator: Arc<G>,
    config: EngineConfig,
    metrics: EngineMetrics,
    reconcile_all: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    G: Generator,
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let (secret_store, secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let selector = format!("{MANAGED_BY_LABEL}={}", config.field_manager);
    let secret_events = watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .modify({
        let field_manager = config.field_manager.clone();
        let merge = config.consent.merge.clone();
        move |secret| keep_content_ownership(&mut secret.metadata, &field_manager, merge.as_deref())
    })
    .reflect(secret_writer)
    .touched_objects();
    let kind = G::Source::kind(&()).into_owned();
    let to_source = move |secret: PartialObjectMeta<Secret>| {
        let namespace = secret.namespace()?;
        let source = secret.annotations().get(SOURCE_ANNOTATION)?;
        let name = source.strip_prefix(&kind)?.strip_prefix('/')?;
        Some(ObjectRef::<G::Source>::new(name).within(&namespace))
    };

    let target = KubeTarget {
        client: client.clone(),
        field_manager: config.field_manager.clone(),
        merge: config.consent.merge.clone(),
        store: secret_store,
    };
    let context = Arc::new(Context {
        syncer: Syncer::new(
            generator.clone(),
            target,
            &config.field_manager,
            config.consent.clone(),
        ),
        events: EventPublisher::new(
            client.clone(),
            config.reporter.clone(),
            config.instance.clone(),
        ),
        client: client.clone(),
        backoff: Backoff::new(config.backoff.0, config.backoff.1),
        metrics,
        config: config.clone(),
    });
    let (source_store, source_writer) = reflector::store::<G::Source>();
    let sources = watcher(
        Api::<G::Source>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(move |source| {
        // Bookkeeping the engine never reads, often as large as the spec.
        source.meta_mut().managed_fields = None;
        if let Some(annotations) = source.meta_mut().annotations.as_mut() {
            annotations.remove(LAST_APPLIED);
        }
        generator.compact(source);
    })
    .reflect(source_writer)
    .inspect_ok({
        let context = context.clone();
        move |event| {
            if let watcher::Event::Delete(source) = event {
                context.syncer.forget(source);
                context.backoff.succeeded(&object_key(source));
            }
        }
    })
    .applied_objects()
    .predicate_filter(declared_state, Default::default());

    info!(field_manager = %config.field_manager, concurrency = config.concurrency, "engine started");
    Controller::for_stream(sources, source_store)
        .watches_stream(secret_events, to_source)
        .reconcile_all_on(reconcile_all)
        .graceful_shutdown_on(shutdown)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .run(reconcile::<G>, error_policy::<G>, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "reconcile not converged");
            }
        })
        .await;
    info!("engine stopped");
}

/// Changes of a source that matter: its spec (generation), labels and annotations. Status
/// writes (our own) do not retrigger a reconcile.
fn declared_state<K: Resource>(source: &K) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    source.meta().generation.hash(&mut hasher);
    source.meta().labels.hash(&mut hasher);
    source.meta().annotations.hash(&mut hasher);
    source.meta().uid.hash(&mut hasher);
    Some(hasher.finish())
}

async fn reconcile<G>(
    source: Arc<G::Source>,
    context: Arc<Context<G>>,
) -> Result<Action, NotConverged>
where
    G: Generator,
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let key = object_key(source.as_ref());
    let span = info_span!("reconcile", object = %key, kind = %G::Source::kind(&()));
    async move {
        if source.meta().deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        if !context.config.leadership.is_leading() {
            debug!("not leading: nothing written");
            return Ok(Action::await_change());
        }
        let in_flight = context.metrics.started();
        let api: Api<G::Source> = Api::namespaced(
            context.client.clone(),
            source.meta().namespace.as_deref().unwrap_or_default(),
        );
        let name = source.meta().name.as_deref().unwrap_or_default();
        let read = async {
            api.get_opt(name).await.map_err(|source| SourceReadError {
                object: key.clone(),
                source,
            })
        };
        let outcome = context.syncer.sync_cached(source.as_ref(), read).await;
        drop(in_flight);
        report(&context, source.as_ref(), &outcome).await;
        match outcome {
            Outcome::Unchanged | Outcome::Applied { .. } => {
                context.backoff.succeeded(&key);
                Ok(Action::requeue(jitter(context.config.resync)))
            }
            Outcome::Refused { message } | Outcome::Failed { message, .. } => {
                Err(NotConverged(message))
            }
        }
    }
    .instrument(span)
    .await
}

fn error_policy<G: Generator>(
    source: Arc<G::Source>,
    error: &NotConverged,
    context: Arc<Context<G>>,
) -> Action {
    let key = object_key(source.as_ref());
    let delay = context.backoff.failed(&key);
    debug!(object = %key, error = %error, retry_in = ?delay, "will retry");
    Action::requeue(delay)
}

fn object_key<K: Resource>(source: &K) -> String {
    format!(
        "{}/{}",
        source.meta().namespace.as_deref().unwrap_or_default(),
        source.meta().name.as_deref().unwrap_or_default()
    )
}

/// Metrics, status (only when it changed), event and log line of one outcome.
async fn report<G>(context: &Context<G>, source: &G::Source, outcome: &Outcome<G::Report>)
where
    G: Generator,
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let (result, reason, write) = match outcome {
        Outcome::Unchanged => ("unchanged", None, None),
        Outcome::Applied { action, .. } => ("applied", None, Some(action_label(*action))),
        Outcome::Refused { .. } => ("refused", Some(G::REFUSED_REASON), None),
        Outcome::Failed { reason, .. } => ("failed", Some(*reason), None),
    };
    context.metrics.finished(result, reason, write);

    let status = context.syncer.generator().status(source, outcome);
    let status_changed = status.is_some();
    if let Some(status) = status {
        let api: Api<G::Source> = Api::namespaced(
            context.client.clone(),
            source.meta().namespace.as_deref().unwrap_or_default(),
        );
        let patch = Patch::Apply(json!({
            "apiVersion": G::Source::api_version(&()),
            "kind": G::Source::kind(&()),
            "status": status,
        }));
        let params = PatchParams::apply(&context.config.field_manager).force();
        let name = source.meta().name.as_deref().unwrap_or_default();
        if let Err(e) = api.patch_status(name, &params, &patch).await {
            warn!(error = %e, "cannot write the status");
        }
    }

    let event = match outcome {
        Outcome::Applied {
            action: AppliedAction::Refreshed,
            ..
        }
        | Outcome::Unchanged => None,
        Outcome::Applied { action, .. } => {
            info!(
                action = action_label(*action),
                "Secret {}",
                action.describe()
            );
            Some((
                EventType::Normal,
                G::APPLIED_REASON,
                format!("Secret {}", action.describe()),
            ))
        }
        // Failures are announced when the status changes, not on every retry.
        Outcome::Refused { message } if status_changed => {
            warn!(%message, "Secret left alone");
            Some((EventType::Warning, G::REFUSED_REASON, message.clone()))
        }
        Outcome::Failed { reason, message } if status_changed => {
            warn!(%reason, %message, "cannot sync");
            Some((EventType::Warning, *reason, message.clone()))
        }
        Outcome::Refused { .. } | Outcome::Failed { .. } => None,
    };
    if let Some((type_, reason, note)) = event
        && let Err(e) = context
            .events
            .publish(source.object_ref(&()), type_, reason, "Sync", note)
            .await
    {
        warn!(error = %e, "cannot publish an event");
    }
}

fn action_label(action: AppliedAction) -> &'static str {
    match action {
        AppliedAction::Created => "created",
        AppliedAction::Updated => "updated",
        AppliedAction::DriftReverted => "drift_reverted",
        AppliedAction::Adopted => "adopted",
        AppliedAction::Refreshed => "refreshed",
    }
}
