//! sealsync's ExternalSecret reconciler: `external-secrets.io/v1` ExternalSecrets synced
//! from SecretStores and ClusterSecretStores (AWS Secrets Manager, HashiCorp Vault) into
//! Secrets, as External Secrets Operator does, on the same sync engine as SealedSecrets.
//!
//! Beyond upstream: a remote secret read for several ExternalSecrets through the same
//! store and credentials is read once per window ([`clients::SharedReads`]); clients (and
//! Vault tokens) are kept per store configuration, not made per reconcile; refreshes are
//! spread by the engine's jitter; a change of a store or of its credentials re-syncs only
//! the ExternalSecrets that use it.

pub mod clients;
pub mod cluster_external_secret;
mod generator;
mod hash;
pub mod lookups;
mod metrics;
pub mod store_controller;
pub mod stores;
mod template;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::{Api, Client};
use sealsync_api::external::{ClusterSecretStore, SecretStore};
use sealsync_engine::kubernetes::{GeneratorConfig, Runtime};
use sealsync_engine::metrics::EngineMetrics;
use sealsync_engine::policy::Consent;

pub use generator::{ExternalSecretGenerator, SyncError, SyncReport, synced_resource_version};
pub use hash::{created_by, data_hash};
pub use metrics::EsoMetrics;
pub use template::{ANNOTATION_DATA_HASH, LABEL_CREATED_BY, LABEL_MANAGED};

/// Base of the field managers of the Secrets written and of the statuses.
pub const FIELD_MANAGER: &str = "sealsync-controller";

/// How the reconciler runs.
#[derive(Debug, Clone)]
pub struct ExternalSecretsConfig {
    /// ExternalSecrets synced at the same time per namespace watched: provider calls wait
    /// on the network, so many more than the cores.
    pub concurrency: u16,
    /// Sources without a refresh are looked at again this often.
    pub resync: Duration,
    /// Namespaces watched (`None`: all).
    pub namespaces: Option<Vec<String>>,
    pub leadership: sealsync_engine::leader::Leadership,
}

/// Adds the ExternalSecret generator to `runtime`, and returns the store controllers to
/// run next to it.
pub fn add_to(
    runtime: &mut Runtime,
    client: Client,
    config: ExternalSecretsConfig,
    registry: &mut prometheus_client::registry::Registry,
    engine_metrics: &EngineMetrics,
) -> futures::future::BoxFuture<'static, ()> {
    let metrics = EsoMetrics::register(registry);
    let engine_metrics = engine_metrics.for_controller("ExternalSecret");
    let stores = Arc::new(stores::Stores::default());
    let clients = Arc::new(clients::Clients::default());
    let generator = Arc::new(ExternalSecretGenerator::new(
        lookups::Lookups::Cluster(client.clone()),
        stores.clone(),
        clients.clone(),
        metrics.clone(),
    ));
    let triggers = runtime.add(
        generator,
        GeneratorConfig {
            field_manager: FIELD_MANAGER.into(),
            resync: config.resync,
            concurrency: config.concurrency,
            consent: Consent::default(),
            backoff: (Duration::from_secs(1), Duration::from_secs(7 * 60)),
            source_selector: None,
        },
        engine_metrics,
        futures::stream::pending(),
    );
    let context = store_controller::StoreContext {
        reporter: runtime.reporter(FIELD_MANAGER),
        client,
        stores,
        clients,
        triggers,
        leadership: config.leadership,
        metrics,
    };
    let store_apis: Vec<Api<SecretStore>> = match &config.namespaces {
        Some(namespaces) => namespaces
            .iter()
            .map(|ns| Api::namespaced(context.client.clone(), ns))
            .collect(),
        None => vec![Api::all(context.client.clone())],
    };
    let cluster_apis: Vec<Api<ClusterSecretStore>> = vec![Api::all(context.client.clone())];
    // ClusterExternalSecrets write into any namespace: only a controller that watches
    // them all runs them.
    let cluster_external_secrets = match config.namespaces {
        None => cluster_external_secret::run(
            context.client.clone(),
            context.reporter.clone(),
            context.leadership.clone(),
        )
        .boxed(),
        Some(_) => futures::future::ready(()).boxed(),
    };
    let namespaced = store_controller::run(context.clone(), store_apis);
    let cluster = store_controller::run(context, cluster_apis);
    futures::future::join3(namespaced, cluster, cluster_external_secrets)
        .map(drop)
        .boxed()
}
