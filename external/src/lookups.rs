//! What a sync reads besides its stores and providers: the Secrets and ConfigMaps a store
//! or a `templateFrom` names, the labels of Namespaces (for cluster stores' conditions),
//! service-account tokens. The controller reads them from the API server; `sealsync sync`
//! on a laptop reads ConfigMaps and Namespaces from the repository, and signs in to the
//! providers with the user's own credentials instead of the Secrets a store names (what it
//! finds in the environment is the caller's to give).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use sealsync_crypto::SecretBytes;

/// Where a sync looks things up.
#[derive(Clone)]
pub enum Lookups {
    /// Through the API server.
    Cluster(Client),
    /// From a repository, with local credentials.
    Local(Arc<Local>),
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lookups::Cluster(_) => "Lookups::Cluster",
            Lookups::Local(_) => "Lookups::Local",
        })
    }
}

/// What a local sync knows: the repository's ConfigMaps and Namespaces, and the user's
/// Vault login.
#[derive(Debug, Default)]
pub struct Local {
    config_maps: HashMap<(String, String), ConfigMap>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    vault: VaultLogin,
}

/// The user's Vault login (as the `vault` CLI's environment gives it).
#[derive(Debug, Default)]
pub struct VaultLogin {
    pub token: Option<SecretBytes>,
    /// The only server the token is sent to (`VAULT_ADDR`).
    pub address: Option<String>,
    /// The CA bundle that server's certificate chains to (`VAULT_CACERT`); the system's
    /// roots without one.
    pub ca_pem: Option<Vec<u8>>,
}

impl Local {
    /// The lookups of a repository declaring `config_maps` and `namespaces`, signing in to
    /// Vault with `vault`.
    pub fn new(config_maps: Vec<ConfigMap>, namespaces: Vec<Namespace>, vault: VaultLogin) -> Self {
        Self {
            config_maps: config_maps
                .into_iter()
                .map(|map| ((map.namespace().unwrap_or_default(), map.name_any()), map))
                .collect(),
            namespace_labels: namespaces
                .into_iter()
                .map(|ns| (ns.name_any(), ns.labels().clone()))
                .collect(),
            vault,
        }
    }

    /// The token a Vault store at `server` signs in with on a local sync. A repository
    /// names the server, so the token goes only to the one the user set (`VAULT_ADDR`):
    /// a store pointing elsewhere cannot collect it.
    pub fn vault_token(&self, server: &str) -> Result<SecretBytes, String> {
        let token = self.vault.token.clone().ok_or(
            "no Vault token: set VAULT_TOKEN or sign in with `vault login` (a local sync uses \
             your token, not the store's auth)",
        )?;
        let same = |a: &str| a.trim_end_matches('/') == server.trim_end_matches('/');
        match &self.vault.address {
            Some(addr) if same(addr) => Ok(token),
            Some(addr) => Err(format!(
                "the store's server {server} is not VAULT_ADDR ({addr}): a local sync sends \
                 your Vault token to VAULT_ADDR only; set VAULT_ADDR={server} if you trust it"
            )),
            None => Err(format!(
                "VAULT_ADDR is not set: a local sync sends your Vault token to VAULT_ADDR only; \
                 set VAULT_ADDR={server} if you trust that server"
            )),
        }
    }

    /// The CA bundle of the user's Vault: never the store's, which the repository chose.
    pub fn vault_ca(&self) -> Option<Vec<u8>> {
        self.vault.ca_pem.clone()
    }
}

impl Lookups {
    pub fn local(&self) -> Option<&Local> {
        match self {
            Lookups::Cluster(_) => None,
            Lookups::Local(local) => Some(local),
        }
    }

    /// Secret `namespace/name`, `None` when it does not exist.
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        match self {
            Lookups::Cluster(client) => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(|e| e.to_string()),
            Lookups::Local(_) => Err(
                "a local sync reads no Secrets (a config repository holds none in plaintext); \
                 sync this ExternalSecret in the cluster"
                    .into(),
            ),
        }
    }

    /// ConfigMap `namespace/name`, `None` when it does not exist.
    pub async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, String> {
        match self {
            Lookups::Cluster(client) => Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(|e| e.to_string()),
            Lookups::Local(local) => Ok(local
                .config_maps
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()),
        }
    }

    /// The labels of Namespace `name`: for one the repository does not declare, only the
    /// `kubernetes.io/metadata.name` label the API server gives every Namespace.
    pub async fn namespace_labels(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        match self {
            Lookups::Cluster(client) => Api::<Namespace>::all(client.clone())
                .get(name)
                .await
                .map(|ns| ns.labels().clone())
                .map_err(|e| e.to_string()),
            Lookups::Local(local) => Ok(served_namespace_labels(
                name,
                local
                    .namespace_labels
                    .get(name)
                    .cloned()
                    .unwrap_or_default(),
            )),
        }
    }
}

/// The labels of Namespace `name` that declares `labels`, as the API server serves them: with
/// the `kubernetes.io/metadata.name` label it gives every Namespace.
pub fn served_namespace_labels(
    name: &str,
    mut labels: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    labels
}
