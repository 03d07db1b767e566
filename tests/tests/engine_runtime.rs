//! The engine with two generators in one `Runtime` on the harness's real API server: one
//! shared Secret watch, sources of two kinds merging into one Secret (each owns its keys,
//! no ping-pong, drift of one's key repaired without touching the other's), triggers that
//! reconcile only the dependents of an object, refresh as a per-source due time, a missing
//! Secret waited for, and a Secret deleted when its source wants none; and the reporter of
//! status and events for objects that are not sources; and a runtime that does not lead
//! writes nothing until it does.
//!
//! The generators turn ConfigMaps and ServiceAccounts into Secret keys read from an
//! in-memory "provider", as an ExternalSecret reads a secret manager.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use prometheus_client::registry::Registry;
use sealsync_api::SealedSecret;
use sealsync_crypto::SecretBytes;
use sealsync_engine::kubernetes::{GeneratorConfig, Runtime, RuntimeConfig, Triggers};
use sealsync_engine::leader::LeaderElection;
use sealsync_engine::metrics::EngineMetrics;
use sealsync_engine::policy::Consent;
use sealsync_engine::{
    Dependency, Desired, DesiredSecret, EventType, Generator, Outcome, Ownership, Plan, Policy,
    ReasonedError, SecretRef, WhenAbsent, digest_of,
};
use sealsync_testkit::{TestCluster, events_about, wait_for};
use serde::Serialize;
use serde::de::DeserializeOwned;

const BASE: &str = "engine-test";

/// One entry of the provider: a version (what a store's generation would be) and the data,
/// `None` when the entry was deleted.
type Entry = (u64, Option<BTreeMap<String, String>>);

/// Entries by name.
#[derive(Debug, Default)]
struct Provider(Mutex<HashMap<String, Entry>>);

impl Provider {
    fn set(&self, entry: &str, version: u64, data: Option<&[(&str, &str)]>) {
        let data = data.map(|d| {
            d.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        self.0.lock().unwrap().insert(entry.into(), (version, data));
    }

    fn get(&self, entry: &str) -> Entry {
        self.0
            .lock()
            .unwrap()
            .get(entry)
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the source has no entry annotation")]
struct NoEntry;

impl ReasonedError for NoEntry {
    fn reason(&self) -> &'static str {
        "NoEntry"
    }
}

/// Sources of kind `K` whose annotations say: `engine.test/entry` (the provider entry),
/// `engine.test/target` (the Secret), `engine.test/ownership` (`merge`, `merge-create`,
/// else owner), `engine.test/absent` (`delete`, else keep), `engine.test/refresh` (s).
#[derive(Debug)]
struct FromProvider<K> {
    provider: Arc<Provider>,
    /// When each source was generated, by name.
    generated: Mutex<Vec<(String, Instant)>>,
    kind: PhantomData<fn() -> K>,
}

impl<K> FromProvider<K> {
    fn new(provider: Arc<Provider>) -> Self {
        Self {
            provider,
            generated: Mutex::default(),
            kind: PhantomData,
        }
    }

    fn generations(&self, source: &str) -> Vec<Instant> {
        self.generated
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| name == source)
            .map(|(_, at)| *at)
            .collect()
    }
}

fn entry_dependency(entry: &str) -> Dependency {
    Dependency {
        kind: "Entry".into(),
        namespace: None,
        name: entry.into(),
    }
}

impl<K> Generator for FromProvider<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static,
{
    type Source = K;
    type Report = ();
    type Error = NoEntry;
    const APPLIED_REASON: &'static str = "Synced";
    const REFUSED_REASON: &'static str = "NotOwned";

    fn plan(&self, source: &K) -> Result<Plan, NoEntry> {
        let annotation = |name: &str| source.annotations().get(name).cloned();
        let entry = annotation("engine.test/entry").ok_or(NoEntry)?;
        let (version, _) = self.provider.get(&entry);
        Ok(Plan {
            target: SecretRef {
                namespace: source.namespace().unwrap_or_default(),
                name: annotation("engine.test/target").unwrap_or_else(|| source.name_any()),
            },
            input_digest: digest_of(&(source.annotations(), version)),
            policy: Policy {
                ownership: match annotation("engine.test/ownership").as_deref() {
                    Some("merge") => Ownership::Merge { create: false },
                    Some("merge-create") => Ownership::Merge { create: true },
                    _ => Ownership::Owner,
                },
                when_absent: match annotation("engine.test/absent").as_deref() {
                    Some("delete") => WhenAbsent::Delete,
                    _ => WhenAbsent::Keep,
                },
                refresh: annotation("engine.test/refresh")
                    .map(|s| Duration::from_secs(s.parse().expect("seconds"))),
                ..Policy::default()
            },
            data_keys: None,
            dependencies: vec![entry_dependency(&entry)],
        })
    }

    async fn generate(&self, source: &K) -> Result<(Desired, ()), NoEntry> {
        self.generated
            .lock()
            .unwrap()
            .push((source.name_any(), Instant::now()));
        let entry = source
            .annotations()
            .get("engine.test/entry")
            .ok_or(NoEntry)?;
        let desired = match self.provider.get(entry).1 {
            Some(data) => Desired::Secret(DesiredSecret {
                data: data
                    .into_iter()
                    .map(|(k, v)| (k, SecretBytes::from(v.into_bytes())))
                    .collect(),
                ..DesiredSecret::default()
            }),
            None => Desired::Absent,
        };
        Ok((desired, ()))
    }

    fn synced_digest(&self, _: &K) -> Option<String> {
        None
    }

    fn status(&self, _: &K, _: &Outcome<()>) -> Option<serde_json::Value> {
        None
    }
}

/// A runtime of the ConfigMap generator alone in `namespace`, with `leadership`.
fn config_map_runtime(
    cluster: &TestCluster,
    namespace: &str,
    leadership: sealsync_engine::leader::Leadership,
    generator: Arc<FromProvider<ConfigMap>>,
) -> Runtime {
    let mut runtime = Runtime::new(
        cluster.client(),
        RuntimeConfig {
            reporter: BASE.into(),
            instance: "test".into(),
            namespaces: Some(vec![namespace.into()]),
            leadership,
        },
    );
    runtime.add(
        generator,
        generator_config(),
        EngineMetrics::register(&mut Registry::default(), "config-maps"),
        futures::stream::pending(),
    );
    runtime
}

fn generator_config() -> GeneratorConfig {
    GeneratorConfig {
        field_manager: BASE.into(),
        resync: Duration::from_secs(3600),
        concurrency: 4,
        consent: Consent::default(),
        backoff: (Duration::from_millis(200), Duration::from_secs(2)),
        source_selector: Some("engine.test/source=yes".into()),
    }
}

struct Engine {
    config_maps: Arc<FromProvider<ConfigMap>>,
    accounts: Arc<FromProvider<ServiceAccount>>,
    config_map_triggers: Triggers,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<()>,
    registry: Arc<Mutex<Registry>>,
}

impl Engine {
    async fn start(cluster: &TestCluster, namespace: &str, provider: Arc<Provider>) -> Self {
        let client = cluster.client();
        let leader = LeaderElection::new(client.clone(), namespace, "engine-test", "test")
            .acquire()
            .await;
        let mut registry = Registry::default();
        let metrics = EngineMetrics::register(&mut registry, "config-maps");
        let mut runtime = Runtime::new(
            client,
            RuntimeConfig {
                reporter: BASE.into(),
                instance: "test".into(),
                namespaces: Some(vec![namespace.into()]),
                leadership: leader.leadership(),
            },
        );
        let config = generator_config();
        let config_maps = Arc::new(FromProvider::<ConfigMap>::new(provider.clone()));
        let accounts = Arc::new(FromProvider::<ServiceAccount>::new(provider));
        let config_map_triggers = runtime.add(
            config_maps.clone(),
            config.clone(),
            metrics.clone(),
            futures::stream::pending(),
        );
        runtime.add(
            accounts.clone(),
            config,
            metrics.for_controller("service-accounts"),
            futures::stream::pending(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let running = tokio::spawn(async move {
            runtime.run(stopped.map(drop)).await;
            drop(leader);
        });
        Self {
            config_maps,
            accounts,
            config_map_triggers,
            stop,
            running,
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.running).await;
    }

    /// `sealsync_reconciles_total` of `controller`, all results.
    fn reconciles(&self, controller: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock().unwrap())
            .unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("sealsync_reconciles_total{")
                    && l.contains(&format!("controller=\"{controller}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

fn meta(name: &str, namespace: &str, annotations: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some([("engine.test/source".to_string(), "yes".to_string())].into()),
        annotations: Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ObjectMeta::default()
    }
}

/// Creates a source named `name` with `annotations`.
async fn create<K>(
    api: &Api<K>,
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> anyhow::Result<()>
where
    K: Resource + Default + Clone + Debug + Serialize + DeserializeOwned,
{
    let mut object = K::default();
    *object.meta_mut() = meta(name, namespace, annotations);
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

fn values(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn wait_for_data(
    secrets: &Api<Secret>,
    name: &str,
    expected: &BTreeMap<String, String>,
) -> anyhow::Result<Secret> {
    wait_for(
        &format!("Secret {name} with the expected keys"),
        Duration::from_secs(30),
        None,
        || async {
            Ok(secrets
                .get_opt(name)
                .await?
                .is_some_and(|s| &values(&s) == expected))
        },
    )
    .await?;
    Ok(secrets.get(name).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_generators_share_one_secret_and_one_runtime() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("engine").await?;
    let client = cluster.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let provider = Arc::new(Provider::default());
    provider.set("db", 1, Some(&[("db-password", "one")]));
    provider.set("api", 1, Some(&[("api-token", "two")]));
    provider.set("other", 1, Some(&[("other", "three")]));
    let engine = Engine::start(&cluster, &ns, provider.clone()).await;

    // A ConfigMap and a ServiceAccount merge into one Secret that nobody created yet: the
    // one that may not create it waits, and is reconciled when the other creates it.
    let merge_into = |entry, ownership| {
        [
            ("engine.test/entry", entry),
            ("engine.test/target", "shared"),
            ("engine.test/ownership", ownership),
        ]
    };
    create(&config_maps, &ns, "db", &merge_into("db", "merge")).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(secrets.get_opt("shared").await?.is_none());
    create(&accounts, &ns, "api", &merge_into("api", "merge-create")).await?;
    let both = map(&[("api-token", "two"), ("db-password", "one")]);
    let shared = wait_for_data(&secrets, "shared", &both).await?;
    let mut managers: Vec<String> = shared
        .managed_fields()
        .iter()
        .filter_map(|e| e.manager.clone())
        .collect();
    managers.sort();
    assert_eq!(
        managers,
        ["engine-test/ConfigMap/db", "engine-test/ServiceAccount/api"],
        "a field manager per source"
    );
    assert!(
        shared.owner_references().is_empty(),
        "a merged Secret is nobody's to garbage-collect"
    );

    // No ping-pong: the Secret stays at its version while both keep reconciling.
    let version = shared.resource_version();
    let before = (
        engine.reconciles("config-maps"),
        engine.reconciles("service-accounts"),
    );
    engine.config_map_triggers.changed(&entry_dependency("db"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (
        engine.reconciles("config-maps"),
        engine.reconciles("service-accounts"),
    );
    assert!(after.0 > before.0, "the trigger reconciled the ConfigMap");
    assert_eq!(secrets.get("shared").await?.resource_version(), version);

    // Someone overwrites one source's key: that one is restored, the other's left alone.
    secrets
        .patch(
            "shared",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"db-password": "edited"}})),
        )
        .await?;
    wait_for_data(&secrets, "shared", &both).await?;

    // A trigger reconciles the dependents of one entry, and only them.
    create(
        &config_maps,
        &ns,
        "bystander",
        &[("engine.test/entry", "other")],
    )
    .await?;
    wait_for_data(&secrets, "bystander", &map(&[("other", "three")])).await?;
    let bystander_generations = engine.config_maps.generations("bystander").len();
    provider.set("db", 2, Some(&[("db-password", "rotated")]));
    engine.config_map_triggers.changed(&entry_dependency("db"));
    wait_for_data(
        &secrets,
        "shared",
        &map(&[("api-token", "two"), ("db-password", "rotated")]),
    )
    .await?;
    assert_eq!(
        engine.config_maps.generations("bystander").len(),
        bystander_generations,
        "a source that does not depend on the entry is not generated again"
    );

    // Refresh: the provider's data changes without a new version; a source with a
    // refresh picks it up when due, and is generated no earlier than that.
    create(
        &accounts,
        &ns,
        "refreshed",
        &[
            ("engine.test/entry", "ticking"),
            ("engine.test/refresh", "2"),
        ],
    )
    .await?;
    provider.set("ticking", 1, Some(&[("tick", "0")]));
    wait_for_data(&secrets, "refreshed", &map(&[("tick", "0")])).await?;
    provider.set("ticking", 1, Some(&[("tick", "1")]));
    wait_for_data(&secrets, "refreshed", &map(&[("tick", "1")])).await?;
    wait_for(
        "three generations of the refreshed source",
        Duration::from_secs(30),
        None,
        || async { Ok(engine.accounts.generations("refreshed").len() >= 3) },
    )
    .await?;
    let generations = engine.accounts.generations("refreshed");
    for pair in generations.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1900),
            "generated again after {gap:?}, before its refresh was due"
        );
    }

    // A source whose entry is gone, with `absent: delete`, deletes its Secret.
    create(
        &config_maps,
        &ns,
        "doomed",
        &[
            ("engine.test/entry", "doomed"),
            ("engine.test/absent", "delete"),
        ],
    )
    .await?;
    provider.set("doomed", 1, Some(&[("k", "v")]));
    engine
        .config_map_triggers
        .changed(&entry_dependency("doomed"));
    wait_for_data(&secrets, "doomed", &map(&[("k", "v")])).await?;
    provider.set("doomed", 2, None);
    engine
        .config_map_triggers
        .changed(&entry_dependency("doomed"));
    wait_for(
        "the Secret of a source that wants none deleted",
        Duration::from_secs(30),
        None,
        || async { Ok(secrets.get_opt("doomed").await?.is_none()) },
    )
    .await?;
    // The others are untouched.
    assert_eq!(
        values(&secrets.get("shared").await?),
        map(&[("api-token", "two"), ("db-password", "rotated")])
    );
    engine.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporter_writes_status_and_events_of_objects_that_are_not_sources()
-> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("reporter").await?;
    let client = cluster.client();
    let leadership = LeaderElection::new(client.clone(), &ns, "unused", "test").leadership();
    let runtime = Runtime::new(
        client.clone(),
        RuntimeConfig {
            reporter: BASE.into(),
            instance: "test".into(),
            namespaces: None,
            leadership,
        },
    );
    let reporter = runtime.reporter("engine-test-stores");

    // A namespaced custom object (standing in for a store) gets its status.
    let sealed: SealedSecret = serde_json::from_value(serde_json::json!({
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "store", "namespace": ns},
        "spec": {"encryptedData": {}},
    }))?;
    let api: Api<SealedSecret> = Api::namespaced(client.clone(), &ns);
    let sealed = api.create(&PostParams::default(), &sealed).await?;
    reporter
        .write_status(
            &sealed,
            serde_json::json!({"conditions": [{"type": "Synced", "status": "False",
                "reason": "InvalidProviderConfig", "message": "no region"}]}),
        )
        .await?;
    let status = api.get("store").await?.status.expect("a status");
    let condition = &status.conditions[0];
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_deref()),
        ("False", Some("InvalidProviderConfig"))
    );

    // An event about a cluster-scoped object lands in `default`, where kubectl shows it.
    let namespace: Namespace = Api::all(client.clone()).get(&ns).await?;
    reporter
        .event(
            &namespace,
            EventType::Warning,
            "ValidationFailed",
            "Validate",
            "no region".into(),
        )
        .await?;
    let events: Api<Event> = Api::namespaced(client, "default");
    let about = events_about(&events, "Namespace", &ns).await?;
    assert_eq!(
        about,
        [(
            "Warning".to_string(),
            "ValidationFailed".to_string(),
            "no region".to_string()
        )]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_that_does_not_lead_writes_nothing_until_it_leads() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("standby").await?;
    let provider = Arc::new(Provider::default());
    provider.set("entry", 1, Some(&[("k", "v")]));
    let election = LeaderElection::new(cluster.client(), &ns, "standby-test", "standby");
    let generator = Arc::new(FromProvider::<ConfigMap>::new(provider));
    let runtime = config_map_runtime(&cluster, &ns, election.leadership(), generator.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(runtime.run(stopped.map(drop)));
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    create(&config_maps, &ns, "app", &[("engine.test/entry", "entry")]).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        generator.generations("app").is_empty(),
        "a runtime that does not lead generates nothing"
    );
    assert!(secrets.get_opt("app").await?.is_none());

    // Once it leads, the source it already saw is done without any change to it.
    let leader = election.acquire().await;
    wait_for_data(&secrets, "app", &map(&[("k", "v")])).await?;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), running).await;
    drop(leader);
    Ok(())
}
