//! Reaching the controller the way kubeseal does: through the API server's service proxy
//! (`/api/v1/namespaces/<ns>/services/http:<name>:<port>/proxy/...`), with the user's
//! kubeconfig, so nothing but the API server needs to be exposed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DeserializeGuard;
use kube::{Api, Client, Config};
use sealsync_api::{KeyList, SealedSecret};

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
        Ok(self.connect().await?.0)
    }

    /// A client of the chosen context, and the API server's URL.
    pub async fn connect(&self) -> anyhow::Result<(Client, http::Uri)> {
        let config = self.config().await?;
        let url = config.cluster_url.clone();
        let client = Client::try_from(config).context("cannot make a Kubernetes client")?;
        Ok((client, url))
    }

    /// The client configuration of the chosen context (in a pod: the service account's).
    async fn config(&self) -> anyhow::Result<Config> {
        let mut config = match self.read()? {
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
        // kube retries 503s for minutes by default: a controller that is down should fail
        // at once. The 429s of the controller's rate limit are retried in `Controller::call`.
        config.default_retry = false;
        // kube waits for an answer for ever by default: a hung API server should fail a
        // command. Counted from each request (not from when its pooled connection went idle).
        config.read_timeout = Some(std::time::Duration::from_secs(60));
        config.reset_reader_on_write = true;
        Ok(config)
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
    /// The controller, for validation and re-encryption (the offline alternative: keys).
    pub fn connect(&self) -> anyhow::Result<Controller> {
        self.open().with_context(|| {
            format!(
                "cannot reach controller {self} through the API server (set \
                 --controller-name/--controller-namespace, or give the private keys to work \
                 offline)"
            )
        })
    }

    /// The controller's certificate, `GET /v1/cert.pem` through the service proxy.
    pub fn fetch_certificate(&self) -> anyhow::Result<String> {
        let failed = || {
            format!(
                "cannot fetch the certificate of controller {self} through the API server \
                 (set --controller-name/--controller-namespace, or pass --cert FILE|URL)"
            )
        };
        self.open()
            .and_then(|controller| controller.certificate())
            .with_context(failed)
    }

    /// A client of the API server alone (no controller needed) and a runtime to drive it.
    pub fn api_server(&self) -> anyhow::Result<(Client, tokio::runtime::Runtime)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = runtime.block_on(self.kubeconfig.client())?;
        Ok((client, runtime))
    }

    fn open(&self) -> anyhow::Result<Controller> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let (client, proxy_path) = runtime.block_on(self.locate())?;
        Ok(Controller {
            target: self.to_string(),
            namespace: self.controller_namespace.clone(),
            client,
            proxy_path,
            runtime,
        })
    }

    /// A client and the service proxy path of the controller's HTTP port.
    async fn locate(&self) -> anyhow::Result<(Client, String)> {
        let client = self.kubeconfig.client().await?;
        let services: Api<Service> = Api::namespaced(client.clone(), &self.controller_namespace);
        // Like kubeseal: the Service's first port, by name.
        let service = services
            .get(&self.controller_name)
            .await
            .map_err(describe)?;
        let port = service
            .spec
            .and_then(|spec| spec.ports)
            .and_then(|ports| ports.into_iter().next())
            .context("the controller's Service has no port")?;
        let port = port.name.unwrap_or_else(|| port.port.to_string());
        let proxy_path = format!(
            "/api/v1/namespaces/{}/services/http:{}:{port}/proxy",
            self.controller_namespace, self.controller_name
        );
        Ok((client, proxy_path))
    }
}

/// The SealedSecrets of a cluster.
#[derive(Debug, Default)]
pub struct ClusterSealedSecrets {
    /// Those that are valid SealedSecrets.
    pub valid: Vec<SealedSecret>,
    /// Those that are not (`namespace/name`): nothing can be told of them.
    pub invalid: Vec<String>,
}

/// The controller's HTTP API (`/v1/...`) through the service proxy, callable from
/// synchronous code.
pub struct Controller {
    target: String,
    namespace: String,
    client: Client,
    proxy_path: String,
    runtime: tokio::runtime::Runtime,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("target", &self.target)
            .field("proxy_path", &self.proxy_path)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// `POST /v1/verify`: fails unless one of the controller's keys opens `sealed`.
    pub fn verify(&self, sealed: &SealedSecret) -> anyhow::Result<()> {
        let object = sealed.object_ref();
        match self.call(Method::POST, "/v1/verify", to_json(sealed)?) {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(StatusCode::CONFLICT) => bail!(
                "unable to decrypt sealed secret {object}: no key of controller {} opens it \
                 (sealed to another certificate, damaged, or renamed, moved or re-scoped after \
                 sealing)",
                self.target
            ),
            Err(e) => Err(describe(e)).with_context(|| {
                format!(
                    "cannot validate sealed secret {object} through controller {}",
                    self.target
                )
            }),
        }
    }

    /// `POST /v1/rotate`: `sealed` re-encrypted by the controller to its newest key.
    pub fn rotate(&self, sealed: &SealedSecret) -> anyhow::Result<SealedSecret> {
        let object = sealed.object_ref();
        let failed = || {
            format!(
                "cannot re-encrypt sealed secret {object} through controller {}",
                self.target
            )
        };
        let body = match self.call(Method::POST, "/v1/rotate", to_json(sealed)?) {
            Ok(body) => body,
            // The controller answers a bare 500 to anything it cannot re-encrypt, mostly
            // because none of its keys opens the object.
            Err(kube::Error::Api(status))
                if status.code == StatusCode::INTERNAL_SERVER_ERROR.as_u16()
                    && status.message.is_empty() =>
            {
                bail!(
                    "{}: it failed (HTTP 500), usually because none of its keys opens it; \
                     validate it to check",
                    failed()
                )
            }
            Err(e) => return Err(describe(e)).with_context(failed),
        };
        sealsync_api::parse_json(body.as_bytes())
            .map_err(|e| anyhow!("{}: its answer is not a SealedSecret: {e}", failed()))
    }

    /// `GET /v1/cert.pem`: the certificate of the newest key.
    pub fn certificate(&self) -> anyhow::Result<String> {
        self.call(Method::GET, "/v1/cert.pem", Vec::new())
            .map_err(describe)
    }

    /// `GET /v1/keys` (sealsync's controller only): the key Secrets' public facts.
    pub fn keys(&self) -> anyhow::Result<KeyList> {
        let body = match self.call(Method::GET, "/v1/keys", Vec::new()) {
            Ok(body) => body,
            Err(e) if status_of(&e) == Some(StatusCode::NOT_FOUND) => bail!(
                "controller {} does not serve /v1/keys (upstream's does not): `sealsync keys` \
                 needs sealsync-controller",
                self.target
            ),
            Err(e) => {
                return Err(describe(e)).with_context(|| {
                    format!("cannot list the keys of controller {}", self.target)
                });
            }
        };
        serde_json::from_str(&body).with_context(|| {
            format!(
                "the answer of controller {} to /v1/keys is not a key list",
                self.target
            )
        })
    }

    /// The namespace of the controller (and of its key Secrets).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Runs `call` with the client on this controller's runtime.
    pub fn block_on<F: Future>(&self, call: impl FnOnce(Client) -> F) -> F::Output {
        self.runtime.block_on(call(self.client.clone()))
    }

    /// Every SealedSecret of the cluster, a page at a time; one that is not valid (anyone
    /// who may create one can make it so) is named, and stops no other.
    pub fn sealed_secrets(&self) -> anyhow::Result<ClusterSealedSecrets> {
        let api: Api<DeserializeGuard<SealedSecret>> = Api::all(self.client.clone());
        let mut listed = ClusterSealedSecrets::default();
        let mut params = ListParams::default().limit(500);
        loop {
            let page = self
                .runtime
                .block_on(api.list(&params))
                .map_err(describe)
                .context("cannot list the cluster's SealedSecrets")?;
            for item in page.items {
                match item.0 {
                    Ok(sealed) => listed.valid.push(sealed),
                    Err(invalid) => listed.invalid.push(format!(
                        "{}/{}",
                        invalid.metadata.namespace.unwrap_or_default(),
                        invalid.metadata.name.unwrap_or_default()
                    )),
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(listed),
            }
        }
    }

    /// One request through the service proxy, retried while the controller answers 429
    /// (its rate limit on `/v1/verify`, 2 per second by default, or no free slot for the RSA
    /// work of `/v1/verify` and `/v1/rotate`).
    fn call(&self, method: Method, path: &str, body: Vec<u8>) -> Result<String, kube::Error> {
        self.runtime.block_on(async {
            let mut pause = Duration::from_millis(500);
            let mut retries = 5;
            loop {
                let request = http::Request::builder()
                    .method(method.clone())
                    .uri(format!("{}{path}", self.proxy_path))
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .map_err(kube::Error::HttpError)?;
                match self.client.request_text(request).await {
                    Err(e)
                        if status_of(&e) == Some(StatusCode::TOO_MANY_REQUESTS) && retries > 0 =>
                    {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                        retries -= 1;
                    }
                    result => return result,
                }
            }
        })
    }
}

/// The JSON the controller reads. SealedSecrets hold only ciphertext: nothing to zeroize.
fn to_json(sealed: &SealedSecret) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(sealed)
        .with_context(|| format!("cannot serialize sealed secret {}", sealed.object_ref()))
}

pub(crate) fn status_of(error: &kube::Error) -> Option<StatusCode> {
    match error {
        kube::Error::Api(status) => StatusCode::from_u16(status.code).ok(),
        _ => None,
    }
}

/// A one-line description of a failed API call: the server's message and the HTTP status.
pub(crate) fn describe(error: kube::Error) -> anyhow::Error {
    match error {
        kube::Error::Api(status) => {
            let code = StatusCode::from_u16(status.code)
                .map(|c| c.to_string())
                .unwrap_or_else(|_| status.code.to_string());
            if status.message.is_empty() {
                anyhow!("HTTP {code}")
            } else {
                anyhow!("{} (HTTP {code})", status.message)
            }
        }
        other => other.into(),
    }
}
