//! sealsync's own controller (`sealsync-controller`, built by cargo) on the harness's API
//! server, with the administrator's kubeconfig, optionally behind its Service.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sealsync_crypto::{PrivateKey, SealingCertificate};

use crate::bins::project_binary;
use crate::process::{Process, free_port, http_get, wait_for};
use crate::{NetNs, TestCluster, UpstreamController};

/// Name of the controller's Service, as kubeseal expects it by default.
const NAME: &str = "sealed-secrets-controller";

/// A running `sealsync-controller` whose namespace (keys, lease) is `namespace`.
#[derive(Debug)]
pub struct SealsyncController {
    process: Process,
    api: SocketAddrV4,
    metrics: SocketAddrV4,
}

impl SealsyncController {
    /// Starts a controller listening on loopback, with `args` added to its command line,
    /// and waits until it serves a certificate.
    pub async fn start(
        cluster: &TestCluster,
        namespace: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with_env(cluster, namespace, args, &[]).await
    }

    /// [`SealsyncController::start`] with environment variables set (e.g. the AWS SDK's
    /// `AWS_ENDPOINT_URL` pointing at moto).
    pub async fn start_with_env(
        cluster: &TestCluster,
        namespace: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        Self::start_listening(cluster, namespace, api, args, env).await
    }

    /// Starts a controller behind Service `namespace/sealed-secrets-controller` (port
    /// `http`), reachable through the API server's service proxy (see
    /// [`crate::UpstreamController::start_behind_service`] for why it listens on the host's
    /// end of `netns`'s link).
    pub async fn start_behind_service(
        cluster: &TestCluster,
        namespace: &str,
        netns: &NetNs,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let api = SocketAddrV4::new(netns.host_ip(), 8080);
        let controller = Self::start_listening(cluster, namespace, api, args, &[]).await?;
        cluster
            .route_service(namespace, NAME, "http", api.port(), *api.ip())
            .await?;
        Ok(controller)
    }

    async fn start_listening(
        cluster: &TestCluster,
        namespace: &str,
        api: SocketAddrV4,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let mut process = Process::spawn(
            &format!("sealsync-controller-{}", api.port()),
            Command::new(controller_binary())
                .env("KUBECONFIG", cluster.kubeconfig())
                .env("RUST_LOG", "info,sealsync_engine=debug")
                .envs(env.iter().copied())
                .arg(format!("--controller-namespace={namespace}"))
                .arg(format!("--listen-addr={api}"))
                .arg(format!("--listen-metrics-addr={metrics}"))
                .args(args),
            cluster.dir(),
        )?;
        wait_for(
            "sealsync-controller's certificate",
            Duration::from_secs(120),
            Some(&mut process),
            || async move { Ok(http_get(api, "/v1/cert.pem").is_ok()) },
        )
        .await?;
        Ok(Self {
            process,
            api,
            metrics,
        })
    }

    /// Stops this controller (SIGTERM), unless it has stopped, and starts it again on the
    /// same address (behind the same Service, if it was) with `args`; waits until it serves
    /// a certificate.
    pub async fn restart(
        &mut self,
        cluster: &TestCluster,
        namespace: &str,
        args: &[&str],
    ) -> anyhow::Result<()> {
        if self.process.exit_status()?.is_none() {
            self.process.terminate(Duration::from_secs(30)).await?;
        }
        *self = Self::start_listening(cluster, namespace, self.api, args, &[]).await?;
        Ok(())
    }

    /// `GET /v1/cert.pem`.
    pub fn certificate(&self) -> anyhow::Result<String> {
        http_get(self.api, "/v1/cert.pem")
    }

    /// The value of a metric, e.g. `sealsync_values_opened_total`, summed over the series
    /// whose labels contain `labels` (e.g. `result="applied"`). Fails when there is no such
    /// series: a renamed metric must not read as 0.
    pub fn metric(&self, name: &str, labels: &str) -> anyhow::Result<f64> {
        self.metric_if_exposed(name, labels)?.with_context(|| {
            format!("sealsync-controller exposes no series {name}{{{labels}}} on /metrics")
        })
    }

    /// Everything `/metrics` exposes, in Prometheus' text format.
    pub fn metrics(&self) -> anyhow::Result<String> {
        http_get(self.metrics, "/metrics")
    }

    /// As [`Self::metric`], `None` when no such series is exposed (yet, or any more).
    pub fn metric_if_exposed(&self, name: &str, labels: &str) -> anyhow::Result<Option<f64>> {
        let text = self.metrics()?;
        let values: Vec<f64> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
            })
            .collect();
        Ok((!values.is_empty()).then(|| values.iter().sum()))
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Address of the HTTP API.
    pub fn api(&self) -> SocketAddrV4 {
        self.api
    }
}

/// Seals `password: value` to `cert_pem` (the certificate a controller serves) as
/// SealedSecret `namespace/db`, and waits until the controller running as `process` has
/// unsealed it into Secret `db`.
pub async fn seal_and_wait_unsealed(
    cluster: &TestCluster,
    namespace: &str,
    cert_pem: &str,
    value: &str,
    process: &mut Process,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};
    use sealsync_api::{SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret};

    let cert = sealsync_crypto::SealingCertificate::from_pem(cert_pem.as_bytes())?;
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {namespace}}}\n\
         stringData: {{password: {value}}}\n"
    );
    let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
    let sealed = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), namespace);
    sealed_api.create(&PostParams::default(), &sealed).await?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), namespace);
    wait_for(
        "the Secret unsealed",
        Duration::from_secs(60),
        Some(process),
        || {
            let secrets = secrets.clone();
            async move {
                Ok(secrets.get_opt("db").await?.is_some_and(|s| {
                    s.data
                        .and_then(|d| d.get("password").cloned())
                        .is_some_and(|v| v.0 == value.as_bytes())
                }))
            }
        },
    )
    .await
}

/// The `sealsync-controller` the harness starts: `SEALSYNC_CONTROLLER_BIN` (for benchmarks of
/// a release build), else the workspace's debug build.
fn controller_binary() -> std::path::PathBuf {
    std::env::var_os("SEALSYNC_CONTROLLER_BIN")
        .map(Into::into)
        .unwrap_or_else(|| project_binary("sealsync-controller"))
}

/// Which Sealed Secrets controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    Sealsync,
    Upstream,
}

/// A running controller of either kind.
#[derive(Debug)]
pub enum SealingController {
    Sealsync(SealsyncController),
    Upstream(UpstreamController),
}

impl SealingController {
    /// Starts a controller of `kind` in `cluster`, in a namespace of its own whose only key
    /// is `key` with `cert`.
    pub async fn start_with_key(
        cluster: &TestCluster,
        kind: Sealing,
        key: &PrivateKey,
        cert: &SealingCertificate,
    ) -> anyhow::Result<Self> {
        let namespace = cluster.namespace("sealing").await?;
        let manifest = sealsync_api::key_secret(key, cert, &namespace);
        let secret: Secret = serde_json::from_value(serde_json::to_value(manifest)?)?;
        Api::<Secret>::namespaced(cluster.client(), &namespace)
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(match kind {
            Sealing::Sealsync => {
                Self::Sealsync(SealsyncController::start(cluster, &namespace, &[]).await?)
            }
            Sealing::Upstream => {
                Self::Upstream(UpstreamController::start(cluster, &namespace).await?)
            }
        })
    }
}
