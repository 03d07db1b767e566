//! The controller loop of one generator: its sources watched (an object that cannot be read
//! is reported and skipped), each reconciled with per-object backoff and periodic resync, its
//! Secrets' changes reconciling their sources, and status, events and metrics reported.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
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
use tracing::{Instrument, debug, info, info_span, warn};

use super::fallback::Fallbacks;
use super::report::ObjectReporter;
use super::target::{KubeTarget, SecretCache, api_message};
use crate::backoff::{Backoff, jitter};
use crate::events::{EventPublisher, EventType};
use crate::generator::{AppliedAction, Dependency, Generator, Outcome, ReasonedError, SecretRef};
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

/// What the generators of one runtime share.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Who publishes the events.
    pub reporter: String,
    /// This replica, in events (e.g. its leader-election identity).
    pub instance: String,
    /// The namespaces whose sources and Secrets are watched, each on its own (nothing is
    /// read elsewhere, so Roles in those namespaces are enough); `None`: all of them.
    pub namespaces: Option<Vec<String>>,
    /// Asked before each reconcile: a replica that no longer leads writes nothing.
    pub leadership: Leadership,
}

/// How the runtime runs one generator.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Field manager of the sources' statuses, and base of their Secret writes' field
    /// managers ([`crate::policy::FieldManager::of_source`]).
    pub field_manager: String,
    /// Sources without a refresh ([`crate::Policy::refresh`]) are checked again this often
    /// even when nothing happened.
    pub resync: Duration,
    /// Sources reconciled at the same time, in each watched namespace (network-bound
    /// generators want many more than the core count).
    pub concurrency: u16,
    pub consent: Consent,
    /// First and longest retry delay after a failure.
    pub backoff: (Duration, Duration),
    /// Only sources with these labels (a label selector) are reconciled.
    pub source_selector: Option<String>,
}

struct Context<G: Generator> {
    syncer: Syncer<G, KubeTarget>,
    client: Client,
    config: GeneratorConfig,
    leadership: Leadership,
    reporter: ObjectReporter,
    metrics: EngineMetrics,
    backoff: Backoff,
    /// Slots for due refreshes of synced sources: half the concurrency.
    refreshes: Arc<tokio::sync::Semaphore>,
    /// The generation of each source whose success this process wrote to its status: until
    /// an outcome changes, its status is current, even when the watch's copy of the source
    /// does not show it yet (a status made from that copy would undo it).
    reported: std::sync::Mutex<std::collections::HashMap<String, Option<i64>>>,
    /// UIDs of sources forgotten (deleted), so that a reconcile of one still in flight
    /// then does not leave its metrics behind; at most [`MAX_FORGOTTEN`], the oldest
    /// dropped all at once (a reconcile lasts far less than that many deletions).
    forgotten: std::sync::Mutex<HashSet<String>>,
}

/// Most UIDs [`Context::forgotten`] keeps.
const MAX_FORGOTTEN: usize = 4096;

/// A reconcile that did not converge; the object is retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotConverged(String);

/// Asks a generator's engine to reconcile the sources that depend on an object
/// ([`crate::Plan::dependencies`]), and only those. Secrets need none: the runtime's Secret
/// watch reconciles their dependents by itself.
#[derive(Clone)]
pub struct Triggers(Arc<Notify>);

/// Reconciles the dependents of an object, with the version a Secret changed to.
type Notify = dyn Fn(&Dependency, Option<&str>) + Send + Sync;

impl Triggers {
    /// `dependency` changed.
    pub fn changed(&self, dependency: &Dependency) {
        (self.0)(dependency, None)
    }

    /// Secret `secret` changed to `version`.
    fn secret_changed(&self, secret: &SecretRef, version: Option<&str>) {
        (self.0)(&Dependency::secret(secret), version)
    }
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Triggers")
    }
}

type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;
type Task = Box<dyn FnOnce(Shutdown) -> futures::future::BoxFuture<'static, ()> + Send>;

/// Several generators in one process: one shared metadata-only watch of Secrets (per
/// watched namespace) feeding one compact cache, one leadership, and per generator its
/// own source watches, concurrency, backoff, resync and metrics.
pub struct Runtime {
    client: Client,
    config: RuntimeConfig,
    cache: Arc<SecretCache>,
    events: EventPublisher,
    /// The preferred calls found refused, for every writer of the process.
    fallbacks: Arc<Fallbacks>,
    /// What each generator does with Secrets that changed.
    secret_listeners: Vec<Triggers>,
    generators: Vec<Task>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .field("generators", &self.generators.len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    pub fn new(client: Client, config: RuntimeConfig) -> Self {
        let fallbacks = Arc::<Fallbacks>::default();
        Self {
            events: EventPublisher::new(
                client.clone(),
                config.reporter.clone(),
                config.instance.clone(),
                fallbacks.clone(),
            ),
            fallbacks,
            client,
            config,
            cache: Arc::default(),
            secret_listeners: Vec::new(),
            generators: Vec::new(),
        }
    }

    /// Status and events of objects that are not sources (e.g. a generator's stores),
    /// written as the runtime writes those of sources.
    pub fn reporter(&self, field_manager: &str) -> ObjectReporter {
        ObjectReporter::new(
            self.client.clone(),
            self.events.clone(),
            field_manager,
            self.fallbacks.clone(),
        )
    }

    /// Adds generator `G`; `reconcile_all` makes every one of its sources be looked at
    /// again (e.g. when keys changed). The returned [`Triggers`] reconcile the sources
    /// that depend on an object.
    pub fn add<G>(
        &mut self,
        generator: Arc<G>,
        config: GeneratorConfig,
        metrics: EngineMetrics,
        reconcile_all: impl Stream<Item = ()> + Send + 'static,
    ) -> Triggers
    where
        G: Generator,
        G::Source: Resource<Scope = NamespaceResourceScope>,
    {
        self.cache.keep_for(
            &config.field_manager,
            (
                G::Source::api_version(&()).into_owned(),
                G::Source::kind(&()).into_owned(),
            ),
            &config.consent,
        );
        let context = Arc::new(Context {
            syncer: Syncer::new(
                generator,
                KubeTarget::new(
                    self.client.clone(),
                    self.cache.clone(),
                    self.fallbacks.clone(),
                ),
                &config.field_manager,
                config.consent.clone(),
            ),
            reporter: self.reporter(&config.field_manager),
            client: self.client.clone(),
            backoff: Backoff::new(config.backoff.0, config.backoff.1),
            refreshes: Arc::new(tokio::sync::Semaphore::new(
                usize::from(config.concurrency / 2).max(1),
            )),
            leadership: self.config.leadership.clone(),
            reported: Default::default(),
            forgotten: Default::default(),
            metrics,
            config,
        });
        let scopes = self.scopes();
        let (senders, receivers): (Vec<_>, Vec<_>) = scopes
            .iter()
            .map(|scope| {
                let (sender, receiver) = mpsc::unbounded();
                ((scope.clone(), sender), receiver)
            })
            .unzip();
        let triggers = Triggers(Arc::new({
            let context = context.clone();
            move |dependency: &Dependency, version: Option<&str>| {
                for source in context.syncer.dependents(dependency, version) {
                    let scope = senders.iter().find(|(scope, _)| {
                        scope.as_deref().is_none_or(|ns| ns == source.namespace)
                    });
                    if let Some((_, sender)) = scope {
                        // Closed only once the generator stopped.
                        let _ = sender
                            .unbounded_send(ObjectRef::new(&source.name).within(&source.namespace));
                    }
                }
            }
        }));
        self.secret_listeners.push(triggers.clone());
        let client = self.client.clone();
        self.generators.push(Box::new(move |shutdown| {
            run_generator(client, context, scopes, receivers, reconcile_all, shutdown).boxed()
        }));
        triggers
    }

    fn scopes(&self) -> Vec<Option<String>> {
        match &self.config.namespaces {
            None => vec![None],
            Some(namespaces) => namespaces.iter().cloned().map(Some).collect(),
        }
    }

    /// Runs every generator until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let shutdown: Shutdown = shutdown.boxed().shared();
        let scopes = self.scopes();
        let listeners = Arc::new(self.secret_listeners);
        let watches = scopes.into_iter().map(|scope| {
            watch_secrets(
                self.client.clone(),
                self.cache.clone(),
                scope,
                listeners.clone(),
            )
        });
        let generators = self
            .generators
            .into_iter()
            .map(|task| task(shutdown.clone()));
        // The Secret watches never end; the runtime stops when its generators have.
        tokio::select! {
            _ = futures::future::join_all(generators) => {}
            _ = futures::future::join_all(watches) => {}
        }
        info!("engine stopped");
    }
}

/// One metadata-only watch of the Secrets of `scope`: it feeds the shared cache, and the
/// sources depending on a Secret that changed are reconciled.
async fn watch_secrets(
    client: Client,
    cache: Arc<SecretCache>,
    scope: Option<String>,
    listeners: Arc<Vec<Triggers>>,
) {
    watcher(
        api_in::<PartialObjectMeta<Secret>>(client, scope.as_deref()),
        watcher::Config::default(),
    )
    .default_backoff()
    .for_each({
        let mut errors = WatchErrors::of::<Secret>(scope.as_deref());
        move |event| {
            errors.observe(&event);
            if let Ok(event) = event {
                for (secret, version) in cache.observe(scope.as_deref(), event) {
                    for listener in listeners.iter() {
                        listener.secret_changed(&secret, version.as_deref());
                    }
                }
            }
            std::future::ready(())
        }
    })
    .await;
}

/// The errors of one watch, which its backoff retries: a refusal by RBAC is one warning
/// naming what to grant, until the watch works again; the others are logged at debug.
struct WatchErrors {
    /// `<group> <plural>`, as a Role names them.
    resource: String,
    namespace: String,
    refused: bool,
}

impl WatchErrors {
    fn of<K: Resource<DynamicType = ()>>(scope: Option<&str>) -> Self {
        let group = K::group(&());
        Self {
            resource: format!(
                "{} {}",
                if group.is_empty() { "core" } else { &group },
                K::plural(&())
            ),
            namespace: scope.unwrap_or("*").into(),
            refused: false,
        }
    }

    fn observe<T>(&mut self, event: &Result<watcher::Event<T>, watcher::Error>) {
        use watcher::Error::{InitialListFailed, WatchError, WatchFailed, WatchStartFailed};
        let refusal = match event {
            // Sent before each list, also one that is refused.
            Ok(watcher::Event::Init) => return,
            Ok(_) => {
                self.refused = false;
                return;
            }
            Err(InitialListFailed(kube::Error::Api(status)))
            | Err(WatchStartFailed(kube::Error::Api(status)))
            | Err(WatchFailed(kube::Error::Api(status)))
            | Err(WatchError(status))
                if status.code == 403 =>
            {
                &status.message
            }
            Err(e) => {
                debug!(error = %e, resource = %self.resource, "the watch restarts");
                return;
            }
        };
        if !std::mem::replace(&mut self.refused, true) {
            warn!(
                namespace = %self.namespace,
                refused = %refusal,
                "cannot watch {0}: grant list and watch on {0} to the controller's identity (ClusterRole, or a Role in each watched namespace); retrying",
                self.resource
            );
        }
    }
}

/// One generator in each scope, with the runtime's triggers for each.
async fn run_generator<G>(
    client: Client,
    context: Arc<Context<G>>,
    scopes: Vec<Option<String>>,
    triggered: Vec<mpsc::UnboundedReceiver<ObjectRef<G::Source>>>,
    reconcile_all: impl Stream<Item = ()> + Send + 'static,
    shutdown: Shutdown,
) where
    G: Generator,
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let (all, _) = tokio::sync::broadcast::channel(16);
    let runs = scopes.into_iter().zip(triggered).map(|(scope, triggered)| {
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
            context.clone(),
            scope,
            triggered,
            reconcile_all,
            shutdown.clone(),
        )
    });
    let forward = reconcile_all.for_each(|()| {
        // No receiver only when every scope has stopped.
        let _ = all.send(());
        std::future::ready(())
    });
    // The generator stops when its scopes stop; the end of `reconcile_all` stops nothing.
    let forward = async move {
        forward.await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = futures::future::join_all(runs) => {}
        () = forward => {}
    }
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

/// The generator in one namespace, or in all.
async fn run_scope<G>(
    client: Client,
    context: Arc<Context<G>>,
    scope: Option<String>,
    triggered: impl Stream<Item = ObjectRef<G::Source>> + Send + 'static,
    reconcile_all: impl Stream<Item = ()> + Send + 'static,
    shutdown: Shutdown,
) where
    G: Generator,
    G::Source: Resource<Scope = NamespaceResourceScope>,
{
    let config = &context.config;
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
    .inspect({
        let mut errors = WatchErrors::of::<G::Source>(scope.as_deref());
        move |event| errors.observe(event)
    })
    .filter_map({
        let context = context.clone();
        let store = source_store.clone();
        move |event| std::future::ready(readable(event, &context, &store).transpose())
    })
    .modify({
        let context = context.clone();
        move |source| {
            // Bookkeeping the engine never reads, often as large as the spec.
            source.meta_mut().managed_fields = None;
            if G::COMPACT {
                if let Some(annotations) = source.meta_mut().annotations.as_mut() {
                    annotations.remove(LAST_APPLIED);
                }
                context.syncer.generator().compact(source);
            }
        }
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
        kind = %G::Source::kind(&()),
        concurrency = config.concurrency,
        namespace = scope.as_deref().unwrap_or("*"),
        "engine started"
    );
    let listed = source_store.clone();
    let controller = Controller::for_stream(sources, source_store)
        .reconcile_on(triggered)
        .reconcile_all_on(reconcile_all)
        .graceful_shutdown_on(shutdown.clone())
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .run(reconcile::<G>, error_policy::<G>, context.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "reconcile not converged");
            }
        });
    // kube's controller holds its queue until the first list of the sources completes, and
    // so never sees a shutdown before that (e.g. the list is refused): nothing has run yet,
    // so it is dropped at once.
    let never_listed = async {
        shutdown.await;
        if listed.wait_until_ready().now_or_never().is_some() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = controller => {}
        () = never_listed => {}
    }
}

/// How often a replica that does not lead looks at a source again.
const NOT_LEADING_RETRY: Duration = Duration::from_secs(2);
/// A refresh deferred for lack of a slot is tried again about this much later.
const REFRESH_DEFERRED: Duration = Duration::from_secs(2);

/// kubectl's copy of the last applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
    let reporter = context.reporter.clone();
    tokio::spawn(async move {
        if let Err(e) = reporter
            .event_about(regarding, EventType::Warning, UNREADABLE, message)
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
    if let Some(uid) = &source.meta().uid {
        let mut forgotten = context.forgotten.lock().expect("forgotten lock");
        if forgotten.len() >= MAX_FORGOTTEN {
            forgotten.clear();
        }
        forgotten.insert(uid.clone());
    }
    context.syncer.forget(source);
    let key = object_key(source);
    context.reported.lock().expect("reported lock").remove(&key);
    context.backoff.succeeded(&key);
}

/// Changes of a source that matter: its spec (generation), labels and annotations. Status
/// writes (our own) do not retrigger a reconcile.
/// Removes `finalizer` from `source` (being deleted), if it is still there: a patch at the
/// source's resourceVersion, refused when it changed meanwhile, so no other finalizer is
/// lost.
async fn release<K>(client: &Client, source: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let finalizers = &source.meta().finalizers;
    let Some(list) = finalizers
        .as_ref()
        .filter(|l| l.iter().any(|f| f == finalizer))
    else {
        return Ok(());
    };
    let remaining: Vec<&String> = list.iter().filter(|f| *f != finalizer).collect();
    let patch = serde_json::json!({ "metadata": {
        "finalizers": remaining,
        "resourceVersion": source.meta().resource_version,
    } });
    let api: Api<K> = Api::namespaced(
        client.clone(),
        source.meta().namespace.as_deref().unwrap_or_default(),
    );
    let name = source.meta().name.as_deref().unwrap_or_default();
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {
            info!(
                finalizer,
                "removed another controller's finalizer from a source being deleted"
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn declared_state<K: Resource>(source: &K) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    source.meta().deletion_timestamp.is_some().hash(&mut hasher);
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
            if let Some(finalizer) = G::FOREIGN_FINALIZER
                && context.leadership.is_leading()
            {
                release(&context.client, source.as_ref(), finalizer)
                    .await
                    .map_err(|e| {
                        NotConverged(format!("cannot remove the finalizer {finalizer}: {e}"))
                    })?;
            }
            return Ok(Action::await_change());
        }
        if !context.leadership.is_leading() {
            // Looked at again soon: a replica that leads later does the work.
            debug!("not leading: nothing written");
            return Ok(Action::requeue(jitter(NOT_LEADING_RETRY)));
        }
        // Past half the reconciles at once, a due refresh of a synced source waits: a
        // process that cannot keep up serves first syncs and changes before refreshes.
        let _refresh = if context.syncer.only_refresh_due(source.as_ref()) {
            match context.refreshes.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    debug!("refresh deferred: first syncs and changes go first");
                    return Ok(Action::requeue(jitter(REFRESH_DEFERRED)));
                }
            }
        } else {
            None
        };
        let in_flight = context.metrics.started();
        let api: Api<G::Source> = Api::namespaced(
            context.client.clone(),
            source.meta().namespace.as_deref().unwrap_or_default(),
        );
        let name = source.meta().name.as_deref().unwrap_or_default();
        let read = async {
            if !G::COMPACT {
                return Ok(Some(source.as_ref().clone()));
            }
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
                // A source with a refresh comes back when it is due, never earlier; the
                // others at a jittered resync.
                Ok(Action::requeue(
                    match context.syncer.due_in(source.as_ref()) {
                        Some(due) => due + jitter(due / 20),
                        None => jitter(context.config.resync),
                    },
                ))
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

    let key = object_key(source);
    let generation = source.meta().generation;
    let reported = || context.reported.lock().expect("reported lock");
    let current =
        matches!(outcome, Outcome::Unchanged) && reported().get(&key) == Some(&generation);
    let status = (!current)
        .then(|| context.syncer.generator().status(source, outcome))
        .flatten();
    // Deleted while this reconcile ran: the status just made (its metrics with it) is of
    // an object that is gone.
    let gone = source.meta().uid.as_ref().is_some_and(|uid| {
        context
            .forgotten
            .lock()
            .expect("forgotten lock")
            .contains(uid)
    });
    if gone {
        forget(context, source);
        return;
    }
    let status_changed = status.is_some();
    let written = match status {
        Some(status) => match context.reporter.write_status(source, status).await {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "cannot write the status");
                false
            }
        },
        None => true,
    };
    match outcome {
        Outcome::Unchanged | Outcome::Applied { .. } if written => {
            reported().insert(key, generation);
        }
        _ => {
            reported().remove(&key);
        }
    }

    let event = match outcome {
        Outcome::Unchanged => None,
        // A refresh that changed nothing is routine: no event every interval.
        Outcome::Applied {
            action: AppliedAction::Refreshed,
            ..
        } => None,
        Outcome::Applied { action, .. } => {
            info!(
                action = action_label(*action),
                "Secret {}",
                action.describe()
            );
            Some((
                EventType::Normal,
                context.syncer.generator().applied_reason(*action),
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
            .reporter
            .event(source, type_, reason, "Sync", note)
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
        AppliedAction::Deleted => "deleted",
        AppliedAction::KeysRemoved => "keys_removed",
        AppliedAction::Kept => "kept",
    }
}
