//! sealsync's sealing controller: unseals SealedSecrets into Secrets through the sync
//! engine, keeps the sealing keys, and serves upstream's HTTP API and metrics.

mod args;
mod generator;
mod http;
mod keys;
mod metrics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use prometheus_client::registry::Registry;
use sealsync_crypto::CertificateParams;
use sealsync_engine::kubernetes::{EngineConfig, run as run_engine};
use sealsync_engine::leader::LeaderElection;
use sealsync_engine::metrics::EngineMetrics;
use sealsync_engine::policy::Consent;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracing::{error, info, warn};

pub use args::{Args, KeyOrder, LogFormat, LogLevel, SyncScope};
pub use generator::SealedSecretGenerator;
use keys::{KeyManager, KeyPolicy, KeyStore, watch_keys};

/// Field manager of the Secrets and statuses this controller writes.
pub const FIELD_MANAGER: &str = "sealsync-controller";
const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Runs the controller until SIGTERM (or Ctrl-C), or until it loses the leader lease.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Listened to from the start: SIGUSR1's default action would end the process.
    let rotation_requests =
        signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
    let leading = Arc::new(AtomicBool::new(false));
    let rotate = Arc::new(Notify::new());
    tokio::spawn(rotate_on_request(
        rotation_requests,
        leading.clone(),
        rotate.clone(),
    ));
    let client = Client::try_default()
        .await
        .context("cannot connect to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let namespace = match args.controller_namespace.clone() {
        Some(namespace) => namespace,
        None => std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
            .map(|n| n.trim().to_string())
            .unwrap_or_else(|_| "kube-system".into()),
    };
    info!(%namespace, version = env!("CARGO_PKG_VERSION"), "sealsync-controller starting");
    let scope = args.scope.scope(&namespace);
    if scope != SyncScope::default() {
        warn!(
            ?scope,
            "--all-namespaces, --additional-namespaces, --label-selector, --skip-recreate \
             and --update-status are not applied yet: every SealedSecret is unsealed"
        );
    }

    let mut registry = Registry::default();
    let controller_metrics = metrics::ControllerMetrics::register(&mut registry);
    let engine_metrics = EngineMetrics::register(&mut registry, FIELD_MANAGER);
    let registry = Arc::new(Mutex::new(registry));

    let keys = Arc::new(KeyStore::default());
    tokio::spawn(watch_keys(
        client.clone(),
        namespace.clone(),
        keys.clone(),
        args.key_order_priority,
    ));

    let api_state = Arc::new(http::ApiState::new(
        keys.clone(),
        controller_metrics.clone(),
        args.rate_limit,
        args.rate_limit_burst,
    ));
    let timeouts =
        |router: axum::Router| with_timeouts(router, args.read_timeout, args.write_timeout);
    serve(
        args.listen_addr,
        timeouts(http::api_router(api_state)),
        "API",
    )
    .await?;
    serve(
        args.listen_metrics_addr,
        timeouts(http::metrics_router(registry)),
        "metrics",
    )
    .await?;

    let shutdown = Arc::new(Notify::new());
    tokio::spawn(notify_on_termination(shutdown.clone()));

    let identity = args.leader_election_identity.clone().unwrap_or_else(|| {
        format!(
            "{}_{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "sealsync-controller".into()),
            fastrand::u32(..)
        )
    });
    let election = LeaderElection::new(
        client.clone(),
        &namespace,
        &args.leader_election_lease,
        &identity,
    );
    tokio::select! {
        () = election.acquire() => {}
        () = shutdown.notified() => return Ok(()),
    }
    leading.store(true, Ordering::Release);

    let manager = KeyManager::new(
        client.clone(),
        &namespace,
        KeyPolicy {
            prefix: args.key_prefix.clone(),
            bits: args.key_size,
            certificate: CertificateParams {
                common_name: args.my_cn.clone(),
                validity: args.key_ttl,
            },
            renew_period: args.key_renew_period,
            cutoff: args.key_cutoff_time,
            order: args.key_order_priority,
            annotations: args.privatekey_annotations.0.clone(),
            labels: args.privatekey_labels.0.clone(),
        },
    );
    let key_task = tokio::spawn(async move { manager.run(rotate).await });
    keys.wait_for_a_key().await;

    let config = EngineConfig {
        field_manager: FIELD_MANAGER.into(),
        resync: args.resync_period,
        concurrency: args
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u16)),
        consent: Consent {
            adopt: Some(generator::MANAGED.into()),
            merge: Some(generator::PATCH.into()),
        },
        backoff: (Duration::from_millis(500), Duration::from_secs(300)),
        reporter: FIELD_MANAGER.into(),
        instance: identity.clone(),
    };
    let generator = Arc::new(SealedSecretGenerator::new(
        keys.clone(),
        controller_metrics,
        args.accept_deprecated_v1_data,
    ));
    let key_changes = changes(keys.subscribe());
    let stop = shutdown.clone();
    let engine = run_engine(
        client,
        generator,
        config,
        engine_metrics,
        key_changes,
        async move { stop.notified().await },
    );
    let outcome = tokio::select! {
        () = engine => Ok(()),
        lost = election.hold() => Err(anyhow::Error::new(lost)),
        keys = key_task => match keys {
            Ok(Err(e)) => Err(anyhow::Error::new(e)),
            _ => Err(anyhow::anyhow!("the key manager stopped")),
        },
    };
    if let Err(e) = &outcome {
        error!(error = %e, "stopping");
    }
    election.release().await;
    info!("sealsync-controller stopped");
    outcome
}

/// One item per change of the key set.
fn changes(receiver: tokio::sync::watch::Receiver<u64>) -> impl futures::Stream<Item = ()> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
}

async fn serve(address: SocketAddr, router: axum::Router, what: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the {what}"))?;
    info!(%address, "{what} listening");
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(())
}

async fn notify_on_termination(shutdown: Arc<Notify>) {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("termination requested");
    shutdown.notify_waiters();
    // A second notification for whoever starts waiting after the first.
    shutdown.notify_one();
}

/// `router` with upstream's `--read-timeout` for reading a request's body (then 400) and
/// `--write-timeout` for answering once the headers are read (then 408).
fn with_timeouts(router: axum::Router, read: Duration, write: Duration) -> axum::Router {
    router
        .layer(RequestBodyTimeoutLayer::new(read))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            write,
        ))
}

/// SIGUSR1 asks for a new key; only the leader makes keys, so a standby ignores it.
async fn rotate_on_request(mut requests: Signal, leading: Arc<AtomicBool>, rotate: Arc<Notify>) {
    while requests.recv().await.is_some() {
        if leading.load(Ordering::Acquire) {
            rotate.notify_one();
        } else {
            warn!("SIGUSR1 ignored: this replica does not lead; signal the Lease holder");
        }
    }
}
