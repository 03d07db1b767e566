//! The upstream External Secrets Operator (v0.16, AWS and Vault providers only), run out of
//! cluster against the harness's API server with the administrator's kubeconfig: the peer
//! that sealsync's ExternalSecret reconciler is compared with.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

use crate::bins::{Component, binary};
use crate::process::{Process, free_port, http_get, wait_for};
use crate::{Moto, TestCluster};

/// Upstream's CRD bundle (`deploy/crds/bundle.yaml` of the pinned module): every CRD of
/// `external-secrets.io` and `generators.external-secrets.io`, one YAML document each.
pub fn upstream_eso_crds() -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let path: PathBuf = binary(Component::ExternalSecrets, "SEALSYNC_EXTERNAL_SECRETS_CRDS");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            CustomResourceDefinition::deserialize(document)
                .with_context(|| format!("{} holds a document that is no CRD", path.display()))
        })
        .collect()
}

/// A running upstream controller (`external-secrets` root command: the ExternalSecret,
/// store, ClusterExternalSecret and PushSecret reconcilers; no webhook, no cert controller).
#[derive(Debug)]
pub struct UpstreamEso {
    process: Process,
    metrics: SocketAddrV4,
}

impl UpstreamEso {
    /// Installs upstream's CRDs into `cluster` (which then cannot take sealsync's own
    /// ExternalSecret CRDs: one cluster, one owner of the group).
    pub async fn install_crds(cluster: &TestCluster) -> anyhow::Result<()> {
        for crd in upstream_eso_crds()? {
            cluster.install_crd(crd).await?;
        }
        Ok(())
    }

    /// Starts the controller, watching only `namespace` if given, with its AWS calls sent to
    /// `moto` if given (the SDK still needs a real region name, so stores name
    /// [`Moto::REGION`]). The CRDs must be installed first.
    pub async fn start(
        cluster: &TestCluster,
        namespace: Option<&str>,
        moto: Option<&Moto>,
    ) -> anyhow::Result<Self> {
        let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let mut command = Command::new(binary(
            Component::ExternalSecrets,
            "SEALSYNC_EXTERNAL_SECRETS",
        ));
        command
            .env("KUBECONFIG", cluster.kubeconfig())
            .arg("--enable-leader-election=false")
            // Its default, `:8080`, listens on every interface and clashes between tests.
            .arg(format!("--metrics-addr={metrics}"))
            .arg("--loglevel=debug");
        if let Some(namespace) = namespace {
            command.arg(format!("--namespace={namespace}"));
        }
        if let Some(moto) = moto {
            command
                .env("AWS_SECRETSMANAGER_ENDPOINT", moto.endpoint())
                .env("AWS_STS_ENDPOINT", moto.endpoint());
        }
        let mut process = Process::spawn(
            &format!("upstream-eso-{}", metrics.port()),
            &mut command,
            cluster.dir(),
        )?;
        wait_for(
            "upstream ESO's metrics endpoint",
            Duration::from_secs(120),
            Some(&mut process),
            || async move { Ok(http_get(metrics, "/metrics").is_ok()) },
        )
        .await?;
        Ok(Self { process, metrics })
    }

    /// Everything `/metrics` exposes, in Prometheus' text format.
    pub fn metrics(&self) -> anyhow::Result<String> {
        http_get(self.metrics, "/metrics")
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
