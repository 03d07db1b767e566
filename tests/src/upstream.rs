//! The upstream Sealed Secrets controller, as an interoperability peer on the real API
//! server. It only knows in-cluster configuration, so it runs in a private mount namespace
//! (`unshare`) where a ServiceAccount token is bind-mounted at the in-cluster path. Needs root.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde::Deserialize;
use serde_json::Value;
use tempfile::TempDir;

use crate::bins::{Component, binary};
use crate::process::{Process, free_port, http_get, run_ok, wait_for};
use crate::{NetNs, TestCluster};

const IN_CLUSTER_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The Service name kubeseal looks for by default, and the name of the controller's account.
const NAME: &str = "sealed-secrets-controller";

/// A running upstream controller whose own namespace (keys included) is `namespace`.
#[derive(Debug)]
pub struct UpstreamController {
    process: Process,
    addr: SocketAddrV4,
    _dir: TempDir,
}

impl UpstreamController {
    /// Starts the controller with its HTTP server on the host's loopback.
    pub async fn start(cluster: &TestCluster, namespace: &str) -> anyhow::Result<Self> {
        Self::start_listening(
            cluster,
            namespace,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
        )
        .await
    }

    /// Starts the controller behind Service `namespace/sealed-secrets-controller` (port
    /// `http`), reachable through the API server's service proxy as kubeseal reaches it in
    /// a cluster. The proxy refuses loopback endpoints, so the controller listens on the
    /// host's end of `netns`'s link, a non-loopback address of the host that still reaches
    /// the API server on 127.0.0.1.
    pub async fn start_behind_service(
        cluster: &TestCluster,
        namespace: &str,
        netns: &NetNs,
    ) -> anyhow::Result<Self> {
        let addr = SocketAddrV4::new(netns.host_ip(), 8080);
        let controller = Self::start_listening(cluster, namespace, addr).await?;
        cluster
            .route_service(namespace, NAME, "http", addr.port(), *addr.ip())
            .await?;
        Ok(controller)
    }

    async fn start_listening(
        cluster: &TestCluster,
        namespace: &str,
        addr: SocketAddrV4,
    ) -> anyhow::Result<Self> {
        let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client(), namespace);
        let meta = |n: &str| ObjectMeta {
            name: Some(n.into()),
            ..ObjectMeta::default()
        };
        accounts
            .create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: meta(NAME),
                    ..ServiceAccount::default()
                },
            )
            .await?;
        let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client());
        bindings
            .create(
                &PostParams::default(),
                &ClusterRoleBinding {
                    metadata: meta(&format!("upstream-sealed-secrets-{namespace}")),
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "ClusterRole".into(),
                        name: "cluster-admin".into(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: NAME.into(),
                        namespace: Some(namespace.into()),
                        ..Subject::default()
                    }]),
                },
            )
            .await?;

        let dir = tempfile::Builder::new()
            .prefix("sealsync-upstream-")
            .tempdir()?;
        let mount = dir.path().join("serviceaccount");
        std::fs::create_dir_all(&mount)?;
        std::fs::write(
            mount.join("token"),
            cluster.service_account_token(namespace, NAME).await?,
        )?;
        std::fs::write(mount.join("ca.crt"), cluster.ca_pem())?;
        std::fs::write(mount.join("namespace"), namespace)?;
        std::fs::create_dir_all(IN_CLUSTER_PATH)
            .context("creating the in-cluster path needs root")?;

        let mut process = Process::spawn(
            "upstream-controller",
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(format!(
                    "mount --bind \"$0\" {IN_CLUSTER_PATH} && exec \"$@\""
                ))
                .arg(&mount)
                .arg(binary(
                    Component::SealedSecrets,
                    "SEALSYNC_UPSTREAM_CONTROLLER",
                ))
                .arg(format!("--listen-addr={addr}"))
                .arg(format!("--listen-metrics-addr=127.0.0.1:{}", free_port()))
                .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
                .env("KUBERNETES_SERVICE_PORT", cluster.port().to_string()),
            dir.path(),
        )?;
        wait_for(
            "the upstream controller's certificate",
            Duration::from_secs(120),
            Some(&mut process),
            || async move { Ok(http_get(addr, "/v1/cert.pem").is_ok()) },
        )
        .await?;
        Ok(Self {
            process,
            addr,
            _dir: dir,
        })
    }

    /// `GET /v1/cert.pem`.
    pub fn certificate(&self) -> anyhow::Result<String> {
        http_get(self.addr, "/v1/cert.pem")
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The objects of upstream's chart (`helm/sealed-secrets` of the upstream module, next to
/// the CRD the harness names, rendered by the harness's helm) into `namespace` with `set`
/// values.
fn upstream_chart(namespace: &str, set: &[&str]) -> Vec<Value> {
    let crd = binary(Component::SealedSecrets, "SEALSYNC_SEALED_SECRETS_CRD");
    let chart = crd
        .parent()
        .and_then(|crds| crds.parent())
        .expect("the CRD sits in the chart's crds/");
    let mut command = Command::new(binary(Component::Helm, "SEALSYNC_HELM"));
    command
        .args(["template", "sealed-secrets"])
        .arg(chart)
        .args(["--namespace", namespace]);
    for value in set {
        command.args(["--set", value]);
    }
    let out = run_ok(&mut command);
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("helm renders valid YAML"))
        .filter(|object| !object.is_null())
        .collect()
}

/// The controller container's command and args in upstream's chart with `set` values.
pub fn upstream_chart_command_line(set: &[&str]) -> (Vec<String>, Vec<String>) {
    let deployment = upstream_chart("kube-system", set)
        .into_iter()
        .find(|object| object["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().expect("strings").to_string())
            .collect()
    };
    (strings(&container["command"]), strings(&container["args"]))
}

/// Installs exactly the RBAC of upstream's chart (its ServiceAccount, ClusterRole, Roles and
/// their bindings) released into `namespace` with `set` values, by server-side apply.
pub async fn install_upstream_chart_rbac(
    cluster: &TestCluster,
    namespace: &str,
    set: &[&str],
) -> anyhow::Result<()> {
    let client = cluster.client();
    for value in upstream_chart(namespace, set) {
        let kind = value["kind"].as_str().unwrap_or_default();
        if !(kind == "ServiceAccount"
            || kind.starts_with("ClusterRole")
            || kind.starts_with("Role"))
        {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(value.clone())?;
        let gvk = GroupVersionKind::try_from(object.types.as_ref().expect("a kind"))?;
        let (resource, capabilities) = pinned_kind(&client, &gvk).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("sealsync-testkit").force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("cannot install upstream's {kind} {name}"))?;
    }
    Ok(())
}
