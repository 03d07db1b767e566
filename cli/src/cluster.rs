//! Reaching the controller the way kubeseal does: through the API server's service proxy
//! (`/api/v1/namespaces/<ns>/services/http:<name>:<port>/proxy/...`), with the user's
//! kubeconfig, so nothing but the API server needs to be exposed.

use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use k8s_openapi::api::core::v1::Service;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Where the kubeconfig is and which context to use (kubectl's `--kubeconfig`, `--context`).
#[derive(Debug, Clone, Default)]
pub struct KubeconfigChoice {
    pub path: Option<PathBuf>,
    pub context: Option<String>,
}

impl KubeconfigChoice {
    /// The kubeconfig, or `None` when there is none at the default places.
    fn read(&self) -> anyhow::Result<Option<Kubeconfig>> {
        match &self.path {
            Some(path) => Kubeconfig::read_from(path)
                .map(Some)
                .with_context(|| format!("cannot read kubeconfig {}", path.display())),
            None => match Kubeconfig::read() {
                Ok(config) => Ok(Some(config)),
                // No kubeconfig at all is normal on a laptop that only seals offline.
                Err(kube::config::KubeconfigError::ReadConfig(..))
                | Err(kube::config::KubeconfigError::FindPath) => Ok(None),
                Err(e) => Err(e).context("cannot read kubeconfig"),
            },
        }
    }

    /// The namespace of the chosen context, if a kubeconfig exists and sets one.
    pub fn namespace(&self) -> anyhow::Result<Option<String>> {
        let Some(config) = self.read()? else {
            return Ok(None);
        };
        let Some(context_name) = self.context.clone().or(config.current_context.clone()) else {
            return Ok(None);
        };
        let context = config
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .with_context(|| format!("kubeconfig has no context named {context_name:?}"))?;
        Ok(context.context.as_ref().and_then(|c| c.namespace.clone()))
    }

    async fn client(&self) -> anyhow::Result<Client> {
        let config = match self.read()? {
            Some(kubeconfig) => {
                let options = KubeConfigOptions {
                    context: self.context.clone(),
                    ..KubeConfigOptions::default()
                };
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .context("cannot use kubeconfig")?
            }
            // In a pod: the service account's credentials.
            None => Config::incluster().context(
                "no kubeconfig found (KUBECONFIG, ~/.kube/config) and not running in a cluster",
            )?,
        };
        Client::try_from(config).context("cannot make a Kubernetes client")
    }
}

/// How to reach the controller through the API server (kubeseal's cluster flags).
#[derive(Debug, Clone, Default)]
pub struct ClusterTarget {
    pub kubeconfig: KubeconfigChoice,
    pub controller_name: String,
    pub controller_namespace: String,
}

impl fmt::Display for ClusterTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.controller_namespace, self.controller_name)
    }
}

impl ClusterTarget {
    /// Operations of the controller this version does not call yet.
    pub fn unavailable(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{what} through the controller {self} is not supported by this version of sealsync \
             yet: work offline with --private-key/--recovery-private-key (and --cert)"
        )
    }

    /// The controller's certificate, `GET /v1/cert.pem` through the service proxy.
    pub fn fetch_certificate(&self) -> anyhow::Result<String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime
            .block_on(self.proxy_get("/v1/cert.pem"))
            .with_context(|| {
                format!(
                    "cannot fetch the certificate of controller {self} through the API server \
                     (set --controller-name/--controller-namespace, or pass --cert FILE|URL)"
                )
            })
    }

    async fn proxy_get(&self, path: &str) -> anyhow::Result<String> {
        let client = self.kubeconfig.client().await?;
        let services: Api<Service> = Api::namespaced(client.clone(), &self.controller_namespace);
        // Like kubeseal: the Service's first port, by name.
        let service = services.get(&self.controller_name).await?;
        let port = service
            .spec
            .and_then(|spec| spec.ports)
            .and_then(|ports| ports.into_iter().next())
            .context("the controller's Service has no port")?;
        let port = port.name.unwrap_or_else(|| port.port.to_string());
        let url = format!(
            "/api/v1/namespaces/{}/services/http:{}:{port}/proxy{path}",
            self.controller_namespace, self.controller_name
        );
        let request = http::Request::get(url).body(Vec::new())?;
        Ok(client.request_text(request).await?)
    }
}
