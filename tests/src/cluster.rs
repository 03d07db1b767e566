//! A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, client
//! certificates, service-account tokens) and kube-controller-manager (garbage collection,
//! namespace deletion, service-account tokens).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt};
use sealsync_api::SealedSecret;
use tempfile::TempDir;

use crate::bins::{Component, binary};
use crate::pki::{ClusterPki, Pair};
use crate::process::{Process, free_port, wait_for};

const STARTUP: Duration = Duration::from_secs(120);

/// A running control plane. Dropping it stops every process and removes its data.
#[allow(missing_debug_implementations)] // kube::Client has no Debug
pub struct TestCluster {
    // Field order is drop order: processes stop before their folder is removed.
    controller_manager: Process,
    apiserver: Process,
    etcd: Process,
    apiserver_args: Vec<String>,
    client: Client,
    server: String,
    kubeconfig: PathBuf,
    pki: ClusterPki,
    dir: TempDir,
}

impl TestCluster {
    /// Starts etcd, kube-apiserver and kube-controller-manager, and installs the CRDs.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sealsync-cluster-")
            .tempdir()?;
        let root = dir.path();
        let pki = ClusterPki::generate()?;
        let file = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = root.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        let ca_cert = file("ca.crt", &pki.ca.cert)?;
        let ca_key = file("ca.key", &pki.ca.key)?;
        let serving_cert = file("apiserver.crt", &pki.serving.cert)?;
        let serving_key = file("apiserver.key", &pki.serving.key)?;
        let sa_key = file("sa.key", &pki.service_account_key)?;
        let sa_pub = file("sa.pub", &pki.service_account_public_key)?;

        let etcd_port = free_port();
        let etcd_peer_port = free_port();
        let mut etcd = Process::spawn(
            "etcd",
            Command::new(binary(Component::Etcd, "SEALSYNC_ETCD"))
                .arg("--name=test")
                .arg(format!("--data-dir={}", root.join("etcd").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
                .arg(format!(
                    "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
                ))
                .arg(format!(
                    "--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"
                ))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"
                ))
                .arg(format!(
                    "--initial-cluster=test=http://127.0.0.1:{etcd_peer_port}"
                ))
                .arg("--unsafe-no-fsync")
                .arg("--log-level=warn"),
            root,
        )?;
        wait_for("etcd", STARTUP, Some(&mut etcd), || async move {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", etcd_port))
                .await
                .is_ok())
        })
        .await?;

        let api_port = free_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            "--advertise-address=127.0.0.1".into(),
            // The "kubernetes" Service would point at loopback, which Endpoints refuse.
            "--endpoint-reconciler-type=none".into(),
            format!("--tls-cert-file={}", serving_cert.display()),
            format!("--tls-private-key-file={}", serving_key.display()),
            format!("--client-ca-file={}", ca_cert.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
        ];
        let mut apiserver = spawn_apiserver(&apiserver_args, root)?;
        let admin_kubeconfig = file(
            "admin.kubeconfig",
            &kubeconfig_yaml(&server, &pki.ca.cert, &pki.admin),
        )?;
        let client = client_from(&admin_kubeconfig).await?;
        wait_until_ready(&client, &mut apiserver).await?;

        let kcm_kubeconfig = file(
            "kcm.kubeconfig",
            &kubeconfig_yaml(&server, &pki.ca.cert, &pki.controller_manager),
        )?;
        let controller_manager = Process::spawn(
            "kube-controller-manager",
            Command::new(binary(
                Component::Kubernetes,
                "SEALSYNC_KUBE_CONTROLLER_MANAGER",
            ))
            .arg(format!("--kubeconfig={}", kcm_kubeconfig.display()))
            .arg(format!(
                "--authentication-kubeconfig={}",
                kcm_kubeconfig.display()
            ))
            .arg(format!(
                "--authorization-kubeconfig={}",
                kcm_kubeconfig.display()
            ))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={}", free_port()))
            .arg("--leader-elect=false")
            .arg("--use-service-account-credentials=false")
            .arg(format!(
                "--service-account-private-key-file={}",
                sa_key.display()
            ))
            .arg(format!("--root-ca-file={}", ca_cert.display()))
            .arg(format!("--cluster-signing-cert-file={}", ca_cert.display()))
            .arg(format!("--cluster-signing-key-file={}", ca_key.display()))
            .arg(format!("--cert-dir={}", root.join("kcm-certs").display())),
            root,
        )?;

        let cluster = Self {
            controller_manager,
            apiserver,
            etcd,
            apiserver_args,
            client,
            server,
            kubeconfig: admin_kubeconfig,
            pki,
            dir,
        };
        cluster.install_crd(SealedSecret::crd()).await?;
        Ok(cluster)
    }

    /// A client with cluster-admin rights.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Kubeconfig file for processes (kubeseal, the controller), with cluster-admin rights.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>` of the API server.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// PEM of the cluster CA.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca.cert
    }

    /// The folder of this cluster's files; also a good place for a test's own files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process handles, to kill or inspect one (fault tests).
    /// Stops kube-apiserver (SIGKILL) and starts it again on the same port and etcd, as a
    /// crash or an upgrade would; returns once it is ready. Watches of clients break.
    pub async fn restart_apiserver(&mut self, down_for: std::time::Duration) -> anyhow::Result<()> {
        self.apiserver.kill();
        tokio::time::sleep(down_for).await;
        self.apiserver = spawn_apiserver(&self.apiserver_args, self.dir.path())?;
        wait_until_ready(&self.client, &mut self.apiserver).await
    }

    pub fn apiserver_process(&mut self) -> &mut Process {
        &mut self.apiserver
    }

    pub fn controller_manager_process(&mut self) -> &mut Process {
        &mut self.controller_manager
    }

    pub fn etcd_process(&mut self) -> &mut Process {
        &mut self.etcd
    }

    /// Creates the namespaces `names`, as they are named.
    pub async fn create_namespaces(&self, names: &[&str]) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client());
        for name in names {
            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            namespaces
                .create(&PostParams::default(), &namespace)
                .await
                .with_context(|| format!("cannot create namespace {name}"))?;
        }
        Ok(())
    }

    /// Creates, in `namespace`, the object `name` of the SealedSecret API, with `labels`,
    /// that is not a valid SealedSecret (its template's metadata has a number for a uid):
    /// the API server takes it, as anyone who may create SealedSecrets can.
    pub async fn create_invalid_sealed_secret(
        &self,
        namespace: &str,
        name: &str,
        labels: serde_json::Value,
    ) -> anyhow::Result<()> {
        let resource = ApiResource::erase::<SealedSecret>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(self.client(), namespace, &resource);
        let invalid = serde_json::from_value(serde_json::json!({
            "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
            "metadata": {"name": name, "labels": labels},
            "spec": {"encryptedData": {}, "template": {"metadata": {"uid": 5}}},
        }))?;
        api.create(&PostParams::default(), &invalid)
            .await
            .with_context(|| format!("cannot create SealedSecret {namespace}/{name}"))?;
        Ok(())
    }

    /// Creates a namespace with a unique name starting with `prefix`, and waits until the
    /// controller-manager has given it its `default` ServiceAccount.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let namespaces: Api<Namespace> = Api::all(self.client());
        let created = namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{prefix}-")),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                },
            )
            .await
            .context("cannot create a test namespace")?;
        let name = created
            .metadata
            .name
            .context("the API server named the namespace")?;
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client(), &name);
        wait_for(
            "the default ServiceAccount (kube-controller-manager)",
            STARTUP,
            None,
            || {
                let accounts = accounts.clone();
                async move { Ok(accounts.get_opt("default").await?.is_some()) }
            },
        )
        .await?;
        Ok(name)
    }

    /// Installs sealsync's ExternalSecret, SecretStore, ClusterSecretStore and
    /// ClusterExternalSecret CRDs.
    pub async fn install_external_secrets_crds(&self) -> anyhow::Result<()> {
        use kube::CustomResourceExt;
        use sealsync_api::external::{
            ClusterExternalSecret, ClusterSecretStore, ExternalSecret, SecretStore,
        };
        for crd in [
            ExternalSecret::crd(),
            SecretStore::crd(),
            ClusterSecretStore::crd(),
            ClusterExternalSecret::crd(),
        ] {
            self.install_crd(crd).await?;
        }
        Ok(())
    }

    /// Installs a CRD and waits until it is served.
    pub async fn install_crd(&self, crd: CustomResourceDefinition) -> anyhow::Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client());
        let name = crd.metadata.name.clone().context("CRDs have names")?;
        crds.create(&PostParams::default(), &crd)
            .await
            .with_context(|| format!("cannot create CRD {name}"))?;
        wait_for(
            &format!("CRD {name} to be established"),
            STARTUP,
            None,
            || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await?;
                    Ok(crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True"))
                }
            },
        )
        .await
    }

    /// Makes Service `namespace/name` (port `port_name`:`port`) lead to `ip`, for a process
    /// the harness runs in a [`crate::NetNs`]. The API server's service proxy only forwards to
    /// endpoints that are Pods, so a placeholder Pod (never scheduled: there are no nodes)
    /// carries `ip` in its status and the EndpointSlice points at it.
    pub async fn route_service(
        &self,
        namespace: &str,
        name: &str,
        port_name: &str,
        port: u16,
        ip: std::net::Ipv4Addr,
    ) -> anyhow::Result<()> {
        use k8s_openapi::api::core::v1::{
            Container, Pod, PodSpec, Service, ServicePort, ServiceSpec,
        };
        use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
        use kube::api::{Patch, PatchParams};

        let meta = |name: &str| ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        };
        let pod_name = format!("{name}-netns");
        let pods: Api<Pod> = Api::namespaced(self.client(), namespace);
        pods.create(
            &PostParams::default(),
            &Pod {
                metadata: meta(&pod_name),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "outside".into(),
                        image: Some("sealsync.invalid/runs-in-a-network-namespace".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
                status: None,
            },
        )
        .await?;
        let status = serde_json::json!({"status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}]}});
        pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(status))
            .await?;

        let services: Api<Service> = Api::namespaced(self.client(), namespace);
        services
            .create(
                &PostParams::default(),
                &Service {
                    metadata: meta(name),
                    spec: Some(ServiceSpec {
                        ports: Some(vec![ServicePort {
                            name: Some(port_name.into()),
                            port: port.into(),
                            ..ServicePort::default()
                        }]),
                        ..ServiceSpec::default()
                    }),
                    status: None,
                },
            )
            .await?;

        let mut slice_meta = meta(&format!("{name}-netns"));
        slice_meta.labels =
            Some([("kubernetes.io/service-name".to_string(), name.to_string())].into());
        let slices: Api<EndpointSlice> = Api::namespaced(self.client(), namespace);
        slices
            .create(
                &PostParams::default(),
                &EndpointSlice {
                    metadata: slice_meta,
                    address_type: "IPv4".into(),
                    endpoints: Some(vec![Endpoint {
                        addresses: vec![ip.to_string()],
                        target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                            kind: Some("Pod".into()),
                            name: Some(pod_name.clone()),
                            namespace: Some(namespace.into()),
                            ..Default::default()
                        }),
                        ..Endpoint::default()
                    }]),
                    ports: Some(vec![EndpointPort {
                        name: Some(port_name.into()),
                        port: Some(port.into()),
                        ..EndpointPort::default()
                    }]),
                },
            )
            .await?;
        Ok(())
    }

    /// A client authenticated as ServiceAccount `namespace/name`, with a fresh token.
    pub async fn client_as_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Client> {
        let token = self.service_account_token(namespace, name).await?;
        let mut config = Config::new(self.server.parse()?);
        config.root_cert = Some(vec![pem_to_der(&self.pki.ca.cert)?]);
        config.auth_info.token = Some(token.into());
        Ok(Client::try_from(config)?)
    }

    /// Kubeconfig file for a process (the controller) authenticated as ServiceAccount
    /// `namespace/name`, with a fresh one-hour token: it has that account's rights only.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        use base64::Engine;
        let token = self.service_account_token(namespace, name).await?;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.pki.ca.cert);
        let path = self.dir().join(format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: sa\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context: {{cluster: test, user: sa}}\n",
                self.server
            ),
        )?;
        Ok(path)
    }

    /// A fresh one-hour token of ServiceAccount `namespace/name` (TokenRequest API).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<String> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let request = TokenRequest {
            metadata: ObjectMeta::default(),
            spec: Some(k8s_openapi::api::authentication::v1::TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            status: None,
        };
        let response: TokenRequest = accounts
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("cannot get a token for ServiceAccount {namespace}/{name}"))?;
        response
            .status
            .and_then(|s| s.token)
            .context("the token request returned no token")
    }

    /// Port of the API server on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.server
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the server URL ends with its port")
    }
}

fn http_get(path: &str) -> anyhow::Result<http::Request<Vec<u8>>> {
    Ok(http::Request::get(path).body(Vec::new())?)
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn kubeconfig_yaml(server: &str, ca: &str, user: &Pair) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: test\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\n",
        b64(ca),
        b64(&user.cert),
        b64(&user.key)
    )
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

fn spawn_apiserver(args: &[String], dir: &Path) -> anyhow::Result<Process> {
    Process::spawn(
        "kube-apiserver",
        Command::new(binary(Component::Kubernetes, "SEALSYNC_KUBE_APISERVER")).args(args),
        dir,
    )
}

async fn wait_until_ready(client: &Client, apiserver: &mut Process) -> anyhow::Result<()> {
    wait_for(
        "kube-apiserver /readyz",
        STARTUP,
        Some(apiserver),
        move || {
            let client = client.clone();
            async move {
                let request = http_get("/readyz")?;
                Ok(client
                    .request_text(request)
                    .await
                    .map(|body| body.trim() == "ok")?)
            }
        },
    )
    .await
}
