//! The controller loop of one generator: its sources watched (an object that cannot be read
//! is reported and skipped), each reconciled with per-object backoff and periodic resync, its
//! Secrets' changes reconciling their sources, and status, events and metrics reported.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use super::target::{KubeTarget, api_message};
use crate::backoff::{Backoff, jitter};
use crate::events::{EventPublisher, EventType};
use crate::generator::{AppliedAction, Generator, Outcome, ReasonedError};
use crate::leader::Leadership;
use crate::metrics::EngineMetrics;
use crate::policy::Consent;
use crate::sync::Syncer;

/// A source could not be read again before generating its Secret.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {object}: {}", describe_read_error(.source))]
pub struct SourceReadError {
    object: String,
    source: kube::Error,
}

impl ReasonedError for SourceReadError {
    fn reason(&self) -> &'static str {
        "ErrReadFailed"
    }
}

/// A deserialization error says where, not what: serde's messages quote the value.
fn describe_read_error(error: &kube::Error) -> String {
    match error {
        kube::Error::SerdeError(e) => format!(
            "it does not match its type ({:?} error at line {}, column {}); fix the object",
            e.classify(),
            e.line(),
            e.column()
        ),
        other => api_message(other),
    }
}

/// Why an object of the watch could not be read, without the value serde quotes: the
/// expected type when serde names it, or just the kind.
fn describe_invalid(kind: &str, invalid: &InvalidObject) -> String {
    let expected = invalid
        .error
        .rsplit_once(", expected ")
        .map(|(_, expected)| format!(" (a field is not {expected})"))
        .unwrap_or_default();
    format!("the object cannot be read as a {kind}{expected}; it is skipped until it is fixed")
}

/// How the engine runs one generator.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Server-side apply field manager of Secrets and statuses.
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
    /// The namespaces whose sources are reconciled; `None`: all of them.
    pub namespaces: Option<Vec<String>>,
    /// Only sources with these labels (a label selector) are reconciled.
    pub source_selector: Option<String>,
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
/// every source be looked at again (e.g. when keys changed). With
/// [`EngineConfig::namespaces`], each namespace is watched on its own (nothing is read
/// elsewhere, so Roles in those namespaces are enough).
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
    let scopes: Vec<Option<String>> = match &config.namespaces {
        None => vec![None],
        Some(namespaces) => namespaces.iter().cloned().map(Some).collect(),
    };
    let (all, _) = tokio::sync::broadcast::channel(16);
    let shutdown = shutdown.shared();
    let runs = scopes.into_iter().map(|scope| {
        let reconcile_all = futures::stream::unfold(all.subscribe(), |mut requests| async move {
            // A lagging receiver missed some requests: one reconcile of all covers them.
            match requests.recv().await {
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
                Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    Some(((), requests))
                }
            }
        });
        run_scope(
            client.clone(),
            generator.clone(),
            config.clone(),
            metrics.clone(),
            scope,
            reconcile_all,
            shutdown.clone(),
        )
    });
    let forward = reconcile_all.for_each(|()| {
        // No receiver only when every scope has stopped.
        let _ = all.send(());
        std::future::ready(())
    });
    // The engine stops when its scopes stop; the end of `reconcile_all` stops nothing.
    let forward = async move {
        forward.await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        () = forward => {}
    }
    info!("engine stopped");
}

/// `Api::all` or `Api::namespaced`, as `scope` says.
fn api_in<K>(client: Client, scope: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match scope {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    }
}

/// The engine in one namespace, or in all.
async fn run_scope<G>(
    client: Client,
    generator: Arc<G>,
    config: EngineConfig,
    metrics: EngineMetrics,
    scope: Option<String>,
    reconcile_all: impl Stream<Item = ()> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    G: Generator,
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let target = KubeTarget::new(
        client.clone(),
        &config.field_manager,
        config.consent.clone(),
        (
            G::Source::api_version(&()).into_owned(),
            G::Source::kind(&()).into_owned(),
        ),
    );
    let context = Arc::new(Context {
        syncer: Syncer::new(generator.clone(), target, config.consent.clone()),
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
    let secret_changes = secret_changes(
        api_in::<PartialObjectMeta<Secret>>(client.clone(), scope.as_deref()),
        context.clone(),
    );
    let mut source_watch = watcher::Config::default();
    if let Some(selector) = &config.source_selector {
        source_watch = source_watch.labels(selector);
    }

    let (source_store, source_writer) = reflector::store::<G::Source>();
    let sources = watcher(
        api_in::<DeserializeGuard<G::Source>>(client.clone(), scope.as_deref()),
        source_watch,
    )
    .default_backoff()
    .filter_map({
        let context = context.clone();
        let store = source_store.clone();
        move |event| std::future::ready(readable(event, &context, &store).transpose())
    })
    .modify(move |source| {
        // Bookkeeping the engine never reads, often as large as the spec.
        source.meta_mut().managed_fields = None;
        if let Some(annotations) = source.meta_mut().annotations.as_mut() {
            annotations.remove(LAST_APPLIED);
        }
        generator.compact(source);
    })
    .map({
        let context = context.clone();
        let store = source_store.clone();
        let mut relisted = None;
        move |event| {
            if let Ok(event) = &event {
                forget_unlisted(event, &mut relisted, &store, &context);
            }
            event
        }
    })
    .reflect(source_writer)
    .inspect_ok({
        let context = context.clone();
        move |event| {
            if let watcher::Event::Delete(source) = event {
                forget(&context, source);
            }
        }
    })
    .applied_objects()
    .predicate_filter(declared_state, Default::default());

    info!(
        field_manager = %config.field_manager,
        concurrency = config.concurrency,
        namespace = scope.as_deref().unwrap_or("*"),
        "engine started"
    );
    Controller::for_stream(sources, source_store)
        .reconcile_on(secret_changes)
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
}

/// kubectl's copy of the last applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The sources whose Secrets changed, from one metadata-only watch of all Secrets that feeds
/// the target's compact cache.
fn secret_changes<G: Generator>(
    secrets: Api<PartialObjectMeta<Secret>>,
    context: Arc<Context<G>>,
) -> impl Stream<Item = ObjectRef<G::Source>> + Send + 'static {
    watcher(secrets, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let changed = match event {
                Ok(event) => context.syncer.target().observe(event),
                Err(e) => {
                    debug!(error = %e, "the Secret watch restarts");
                    Vec::new()
                }
            };
            let sources: Vec<_> = changed
                .into_iter()
                .filter_map(|secret| {
                    let name = context.syncer.source_of(&secret)?;
                    Some(ObjectRef::new(&name).within(&secret.namespace))
                })
                .collect();
            std::future::ready(Some(futures::stream::iter(sources)))
        })
        .flatten()
}

/// The event with its object read, or `None` for an object that cannot be read as a
/// source, which is reported (log line, Warning event) and left out. A deleted unreadable
/// object is deleted as the last readable copy the store holds.
fn readable<G: Generator>(
    event: Result<watcher::Event<DeserializeGuard<G::Source>>, watcher::Error>,
    context: &Arc<Context<G>>,
    store: &Store<G::Source>,
) -> Result<Option<watcher::Event<G::Source>>, watcher::Error>
where
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let read = |guard: DeserializeGuard<G::Source>| match guard.0 {
        Ok(source) => Some(source),
        Err(invalid) => {
            report_unreadable::<G>(context, invalid);
            None
        }
    };
    Ok(match event? {
        watcher::Event::Apply(guard) => read(guard).map(watcher::Event::Apply),
        watcher::Event::InitApply(guard) => read(guard).map(watcher::Event::InitApply),
        watcher::Event::Delete(guard) => match guard.0 {
            Ok(source) => Some(watcher::Event::Delete(source)),
            Err(invalid) => {
                let name = invalid.metadata.name.as_deref().unwrap_or_default();
                let namespace = invalid.metadata.namespace.as_deref().unwrap_or_default();
                store
                    .get(&ObjectRef::new(name).within(namespace))
                    .map(|source| watcher::Event::Delete(source.as_ref().clone()))
            }
        },
        watcher::Event::Init => Some(watcher::Event::Init),
        watcher::Event::InitDone => Some(watcher::Event::InitDone),
    })
}

/// One object that cannot be read must not stop the others: it is named in a log line and
/// a Warning event on it, then skipped.
fn report_unreadable<G: Generator>(context: &Arc<Context<G>>, invalid: InvalidObject)
where
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let kind = G::Source::kind(&()).into_owned();
    let meta = &invalid.metadata;
    let object = format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    );
    let message = describe_invalid(&kind, &invalid);
    warn!(%object, %kind, %message, "cannot read an object of the watch");
    context.metrics.finished("failed", Some(UNREADABLE), None);
    let regarding = ObjectReference {
        api_version: Some(G::Source::api_version(&()).into_owned()),
        kind: Some(kind),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    };
    let events = context.events.clone();
    tokio::spawn(async move {
        if let Err(e) = events
            .publish(regarding, EventType::Warning, UNREADABLE, "Sync", message)
            .await
        {
            warn!(%object, error = %e, "cannot publish an event");
        }
    });
}

/// Event reason (and metric label) of a source that cannot be read.
const UNREADABLE: &str = "ErrInvalidObject";

/// After a relist (watch expiry, API server restart), forgets the sources that were not
/// listed again: they were deleted while the watch was down, with no delete event. Runs
/// before the store takes in the list, so the store still holds them.
fn forget_unlisted<G: Generator>(
    event: &watcher::Event<G::Source>,
    relisted: &mut Option<HashSet<ObjectRef<G::Source>>>,
    store: &Store<G::Source>,
    context: &Arc<Context<G>>,
) where
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    match event {
        watcher::Event::Init => *relisted = Some(HashSet::new()),
        watcher::Event::InitApply(source) => {
            if let Some(listed) = relisted.as_mut() {
                listed.insert(ObjectRef::from_obj(source));
            }
        }
        watcher::Event::InitDone => {
            let Some(listed) = relisted.take() else {
                return;
            };
            for source in store.state() {
                if !listed.contains(&ObjectRef::from_obj(source.as_ref())) {
                    forget(context, source.as_ref());
                }
            }
        }
        watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
    }
}

/// `source` is gone: what was kept about it goes too.
fn forget<G: Generator>(context: &Context<G>, source: &G::Source) {
    context.syncer.forget(source);
    context.backoff.succeeded(&object_key(source));
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
        Outcome::Unchanged => None,
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
    }
}
