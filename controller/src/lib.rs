//! sealsync's sealing controller: unseals SealedSecrets into Secrets through the sync
//! engine, keeps the sealing keys, and serves upstream's HTTP API and metrics.

mod args;
mod generator;
mod http;
mod keys;
mod metrics;

use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use kube::Client;
use prometheus_client::registry::Registry;
use sealsync_crypto::CertificateParams;
use sealsync_engine::kubernetes::{GeneratorConfig, Runtime, RuntimeConfig};
use sealsync_engine::leader::{LeaderElection, Leadership, remedy};
use sealsync_engine::metrics::EngineMetrics;
use sealsync_engine::policy::Consent;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Notify, watch};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracing::{error, info, warn};

pub use args::{Args, KeyOrder, LogFormat, LogLevel, SyncScope};
pub use generator::{MANAGED, PATCH, SealedSecretGenerator, UnsealOptions};
pub use http::MAX_BODY_BYTES;
use keys::{KeyError, KeyManager, KeyPolicy, KeyStore, watch_keys};

/// Field manager of the Secrets and statuses this controller writes.
pub const FIELD_MANAGER: &str = "sealsync-controller";
const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
// Timeouts of every call to the API server, so that a server that stops answering fails
// the call instead of hanging it. The read timeout counts from the request and also applies
// to watches, which the API server ends after 290 s (kube's watcher asks for that): it is
// longer, so that a quiet watch is not cut (a shorter one cut them every time it passed).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// First and longest pause before the key manager tries again after a failure.
const KEY_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// Runs the controller until SIGTERM (or Ctrl-C), or until it loses the leader lease.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Listened to from the start: SIGUSR1's default action would end the process, and
    // SIGTERM must end every stage, the waits for the lease and the first key included.
    let rotation_requests =
        signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?;
    let shutdown = termination().context("cannot listen for SIGTERM")?;
    let client = client().await?;
    let namespace = match args.controller_namespace.clone() {
        Some(namespace) => namespace,
        None => std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
            .map(|n| n.trim().to_string())
            .unwrap_or_else(|_| "kube-system".into()),
    };
    info!(%namespace, version = env!("CARGO_PKG_VERSION"), "sealsync-controller starting");
    let scope = args.scope.scope(&namespace);

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

    // A limit of 0 (which upstream's flags accept) is taken as 1.
    let rate_limit = |n: u32| std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
    let api_state = Arc::new(http::ApiState::new(
        keys.clone(),
        controller_metrics.clone(),
        rate_limit(args.rate_limit),
        rate_limit(args.rate_limit_burst),
        args.accept_deprecated_v1_data,
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
        timeouts(http::metrics_router(registry.clone())),
        "metrics",
    )
    .await?;

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
    let leadership = election.leadership();
    let rotate = Arc::new(Notify::new());
    tokio::spawn(rotate_on_request(
        rotation_requests,
        leadership.clone(),
        rotate.clone(),
    ));
    let mut leader = tokio::select! {
        leader = election.acquire() => leader,
        () = stopped(shutdown.clone()) => {
            info!("stopped while waiting for the leader lease");
            return Ok(());
        }
    };

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
        keys.clone(),
    );
    let key_manager = async {
        if args.sealed_secrets {
            keep_keys(manager, rotate, leadership.clone()).await
        } else {
            std::future::pending().await
        }
    };

    let mut runtime = Runtime::new(
        client.clone(),
        RuntimeConfig {
            reporter: FIELD_MANAGER.into(),
            instance: identity.clone(),
            namespaces: scope.namespaces.clone(),
            leadership: leadership.clone(),
        },
    );
    let config = GeneratorConfig {
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
        source_selector: scope.label_selector.clone(),
    };
    let generator = Arc::new(SealedSecretGenerator::new(
        keys.clone(),
        controller_metrics,
        UnsealOptions {
            accept_deprecated_data: args.accept_deprecated_v1_data,
            update_status: scope.update_status,
            recreate_deleted: scope.restore_drift,
        },
    ));
    let key_changes = changes(keys.subscribe());
    if args.external_secrets {
        let stores = sealsync_external::add_to(
            &mut runtime,
            client,
            sealsync_external::ExternalSecretsConfig {
                concurrency: args.external_secrets_concurrency.max(1),
                resync: args.resync_period,
                namespaces: scope.namespaces.clone(),
                leadership: leadership.clone(),
            },
            &mut registry.lock().expect("metrics registry lock"),
            &engine_metrics,
        );
        tokio::spawn(stores);
    }
    if args.sealed_secrets {
        // SealedSecrets depend on nothing but the keys, which reconcile them all.
        runtime.add(generator, config, engine_metrics, key_changes);
    }
    let engine = runtime.run(stopped(shutdown.clone()));
    let lead = async {
        if args.sealed_secrets {
            if keys.current().newest.is_none() {
                info!("waiting for the first sealing key");
            }
            tokio::select! {
                () = keys.wait_for_a_key() => {}
                () = stopped(shutdown.clone()) => {
                    info!("stopped while waiting for the first sealing key");
                    return;
                }
            }
        }
        engine.await;
    };
    let outcome = tokio::select! {
        () = lead => Ok(()),
        never = key_manager => match never {},
        lost = leader.lost() => Err(anyhow::Error::new(lost)),
    };
    if let Err(e) = &outcome {
        error!(error = %e, "stopping");
    }
    leader.release().await;
    info!("sealsync-controller stopped");
    outcome
}

/// A client of the API server (in-cluster configuration or KUBECONFIG) whose calls time out.
async fn client() -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("cannot configure the Kubernetes client (in-cluster config or KUBECONFIG)")?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    Client::try_from(config).context("cannot make a client of the Kubernetes API")
}

/// Runs the key manager for as long as the process leads. A failure is logged with what
/// to do and retried with backoff, so that a missing permission shows and, once granted,
/// takes effect without a restart.
async fn keep_keys(manager: KeyManager, rotate: Arc<Notify>, leadership: Leadership) -> Infallible {
    let mut delay = KEY_RETRY.0;
    loop {
        let started = tokio::time::Instant::now();
        let Err(e) = manager.run(&rotate, &leadership).await else {
            unreachable!("the key manager runs until an error");
        };
        // The lease is lost: the process is stopping, nothing to report or retry.
        if matches!(e, KeyError::NotLeading) || !leadership.is_leading() {
            std::future::pending::<()>().await;
        }
        // A failure after a long healthy run starts the backoff over.
        if started.elapsed() > KEY_RETRY.1 {
            delay = KEY_RETRY.0;
        }
        let hint = match &e {
            KeyError::List { source, .. } | KeyError::Create { source, .. } => remedy(source),
            KeyError::Generate(_) | KeyError::NotLeading => "retrying",
        };
        warn!(error = %e, hint, retry_in = ?delay, "the key manager failed");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(KEY_RETRY.1);
    }
}

/// One item per change of the key set.
fn changes(receiver: tokio::sync::watch::Receiver<u64>) -> impl futures::Stream<Item = ()> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
}

/// Serves `router` on `address` in the background; returns the address bound.
async fn serve(
    address: SocketAddr,
    router: axum::Router,
    what: &str,
) -> anyhow::Result<SocketAddr> {
    let listener = listen(address)
        .and_then(tokio::net::TcpListener::from_std)
        .with_context(|| format!("cannot listen on {address} for the {what}"))?;
    let address = listener.local_addr()?;
    info!(%address, "{what} listening");
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(address)
}

/// Binds `address`. `[::]` (what `:port` means) takes IPv4 connections too, as Go's `:port`
/// does; on a machine without IPv6 it falls back to IPv4's `0.0.0.0`.
fn listen(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let dual_stack = address.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    match bind(address, dual_stack) {
        Err(e)
            if dual_stack
                && !matches!(e.kind(), ErrorKind::AddrInUse | ErrorKind::PermissionDenied) =>
        {
            warn!(error = %e, "no IPv6 here: listening on IPv4 only");
            bind(
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), address.port()),
                false,
            )
        }
        bound => bound,
    }
}

fn bind(address: SocketAddr, dual_stack: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Turns true on SIGTERM (or Ctrl-C).
fn termination() -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let (requested, receiver) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        info!("termination requested");
        requested.send_replace(true);
    });
    Ok(receiver)
}

/// Resolves once termination is requested.
async fn stopped(mut termination: watch::Receiver<bool>) {
    // The value stays true once set, also after its sender is gone.
    let _ = termination.wait_for(|requested| *requested).await;
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
async fn rotate_on_request(mut requests: Signal, leadership: Leadership, rotate: Arc<Notify>) {
    while requests.recv().await.is_some() {
        if leadership.is_leading() {
            rotate.notify_one();
        } else {
            warn!("SIGUSR1 ignored: this replica does not lead; signal the Lease holder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn healthz(address: SocketAddr) -> String {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(stream, "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_port_alone_answers_on_ipv4_and_ipv6() {
        let mut registry = Registry::default();
        let state = Arc::new(http::ApiState::new(
            Arc::new(KeyStore::default()),
            metrics::ControllerMetrics::register(&mut registry),
            std::num::NonZeroU32::MIN,
            std::num::NonZeroU32::MIN,
            true,
        ));
        let any = "[::]:0".parse().unwrap();
        let port = serve(any, http::api_router(state), "API")
            .await
            .unwrap()
            .port();
        for client in ["127.0.0.1", "::1"] {
            let address = SocketAddr::new(client.parse().unwrap(), port);
            let response = tokio::task::spawn_blocking(move || healthz(address))
                .await
                .unwrap();
            assert!(response.starts_with("HTTP/1.0 200"), "{client}: {response}");
            assert!(response.ends_with("ok"), "{client}: {response}");
        }
    }
}
