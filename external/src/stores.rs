//! SecretStores and ClusterSecretStores: the copies the reconciler reads (kept by the store
//! controller), which namespaces may use a cluster store, and a store's spec resolved into
//! a provider's plain configuration (credentials read from their Secrets, service-account
//! tokens requested from the TokenRequest API).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use regex::Regex;
use sealsync_api::external::{
    AwsProvider, AwsService, CaProviderType, ClusterSecretStoreCondition, FakeProvider,
    LabelSelector, SecretKeySelector, SecretStoreSpec, ServiceAccountSelector, StoreKind,
    VaultKvVersion, VaultProvider,
};
use sealsync_crypto::SecretBytes;
use sealsync_engine::{Dependency, digest_of};
use sealsync_providers::aws::{AwsConfig, AwsCredentials};
use sealsync_providers::fake::FakeSecret;
use sealsync_providers::vault::{KvVersion, VaultAuth, VaultConfig};
use serde_json::json;

use crate::lookups::Lookups;

/// A store by kind and name (`namespace` is `None` for a ClusterSecretStore).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey {
    pub kind: StoreKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl StoreKey {
    pub fn dependency(&self) -> Dependency {
        Dependency {
            kind: kind_name(self.kind).into(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

impl std::fmt::Display for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", kind_name(self.kind), self.name),
            None => write!(f, "{} {}", kind_name(self.kind), self.name),
        }
    }
}

pub fn kind_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::SecretStore => "SecretStore",
        StoreKind::ClusterSecretStore => "ClusterSecretStore",
    }
}

/// What the reconciler knows of one store.
#[derive(Debug, Clone)]
pub struct Store {
    pub key: StoreKey,
    pub uid: String,
    pub generation: i64,
    pub spec: SecretStoreSpec,
}

/// The stores the store controller has seen, by key.
#[derive(Debug, Default)]
pub struct Stores(RwLock<HashMap<StoreKey, Arc<Store>>>);

impl Stores {
    pub fn get(&self, key: &StoreKey) -> Option<Arc<Store>> {
        self.0.read().expect("stores lock").get(key).cloned()
    }

    /// Records `store`; whether it changed what ExternalSecrets get from it.
    pub fn put(&self, store: Store) -> bool {
        let mut stores = self.0.write().expect("stores lock");
        let changed = stores
            .get(&store.key)
            .is_none_or(|old| old.uid != store.uid || old.generation != store.generation);
        stores.insert(store.key.clone(), Arc::new(store));
        changed
    }

    pub fn remove(&self, key: &StoreKey) -> Option<Arc<Store>> {
        self.0.write().expect("stores lock").remove(key)
    }
}

/// Why a store cannot be used. Messages name the store and the object at fault, never a
/// credential.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{store} does not exist (or was not seen yet): create it, or fix secretStoreRef")]
    Missing { store: StoreKey },
    #[error(
        "{store} does not allow ExternalSecrets of namespace \"{namespace}\" (its spec.conditions)"
    )]
    Forbidden { store: StoreKey, namespace: String },
    #[error("{store}: {problem}")]
    Invalid { store: StoreKey, problem: String },
    #[error("{store}: cannot read {what}: {reason}")]
    Credentials {
        store: StoreKey,
        what: String,
        reason: String,
    },
}

/// A store's provider configuration, with the digest of everything it was made from
/// (credential values by their digests): equal digests can share one connected client.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: ProviderConfig,
    pub digest: String,
    /// Made with a requested service-account token, which expires: the client is made
    /// again from time to time with a new one.
    pub uses_requested_token: bool,
}

#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Aws(AwsConfig),
    Vault(VaultConfig),
    Fake(Vec<FakeSecret>),
}

/// The remote secrets of a fake store.
fn fake_secrets(fake: &FakeProvider) -> Vec<FakeSecret> {
    fake.data
        .iter()
        .map(|d| FakeSecret {
            key: d.key.clone(),
            version: d.version.clone().unwrap_or_default(),
            value: SecretBytes::from(d.value.as_bytes()),
        })
        .collect()
}

/// The Secrets a store's spec reads credentials from, for the dependency index: a change
/// of one of them re-reconciles the ExternalSecrets that use the store.
pub fn credential_secrets(store: &Store, es_namespace: &str) -> Vec<Dependency> {
    let mut selectors: Vec<&SecretKeySelector> = Vec::new();
    if let Some(aws) = &store.spec.provider.aws
        && let Some(keys) = aws.auth.as_ref().and_then(|a| a.secret_ref.as_ref())
    {
        selectors.extend(
            [
                &keys.access_key_id_secret_ref,
                &keys.secret_access_key_secret_ref,
                &keys.session_token_secret_ref,
            ]
            .into_iter()
            .flatten(),
        );
    }
    if let Some(auth) = store
        .spec
        .provider
        .vault
        .as_ref()
        .and_then(|v| v.auth.as_ref())
    {
        selectors.extend(auth.token_secret_ref.iter());
        if let Some(approle) = &auth.app_role {
            selectors.push(&approle.secret_ref);
            selectors.extend(approle.role_ref.iter());
        }
        selectors.extend(auth.kubernetes.iter().filter_map(|k| k.secret_ref.as_ref()));
        selectors.extend(auth.user_pass.iter().filter_map(|u| u.secret_ref.as_ref()));
        selectors.extend(auth.jwt.iter().filter_map(|j| j.secret_ref.as_ref()));
        if let Some(cert) = &auth.cert {
            selectors.extend(cert.client_cert.iter().chain(&cert.secret_ref));
        }
    }
    if let Some(tls) = store
        .spec
        .provider
        .vault
        .as_ref()
        .and_then(|v| v.tls.as_ref())
    {
        selectors.extend(tls.cert_secret_ref.iter().chain(&tls.key_secret_ref));
    }
    let mut dependencies: Vec<Dependency> = selectors
        .into_iter()
        .filter_map(|s| {
            Some(Dependency {
                kind: "Secret".into(),
                namespace: Some(ref_namespace(store, s.namespace.as_deref(), es_namespace)),
                name: s.name.clone()?,
            })
        })
        .collect();
    dependencies.sort();
    dependencies.dedup();
    dependencies
}

/// The namespace a store's reference reads from: a SecretStore's own; for a
/// ClusterSecretStore the one named, else the ExternalSecret's.
fn ref_namespace(store: &Store, named: Option<&str>, es_namespace: &str) -> String {
    match (&store.key.namespace, named) {
        (Some(own), _) => own.clone(),
        (None, Some(named)) => named.into(),
        (None, None) => es_namespace.into(),
    }
}

/// Whether ExternalSecrets of `namespace` (with `labels`) may use the cluster store with
/// `conditions` (any one condition; none: every namespace).
pub fn allows(
    conditions: &[ClusterSecretStoreCondition],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    conditions.is_empty()
        || conditions.iter().any(|c| {
            c.namespaces.iter().any(|n| n == namespace)
                || c.namespace_regexes
                    .iter()
                    .any(|r| Regex::new(r).is_ok_and(|r| r.is_match(namespace)))
                || c.namespace_selector
                    .as_ref()
                    .is_some_and(|s| selects(s, labels))
        })
}

/// Whether `selector` selects an object with `labels`, as the API server does.
pub(crate) fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let matches = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    matches
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
}

/// Checks that ExternalSecrets of `namespace` may use `store` (cluster stores' conditions,
/// checked on every use as upstream does).
pub async fn check_allowed(
    lookups: &Lookups,
    store: &Store,
    namespace: &str,
) -> Result<(), StoreError> {
    if store.key.namespace.is_some() || store.spec.conditions.is_empty() {
        return Ok(());
    }
    let needs_labels = store
        .spec
        .conditions
        .iter()
        .any(|c| c.namespace_selector.is_some());
    let labels = if needs_labels {
        lookups
            .namespace_labels(namespace)
            .await
            .map_err(|reason| StoreError::Credentials {
                store: store.key.clone(),
                what: format!("Namespace {namespace}"),
                reason,
            })?
    } else {
        BTreeMap::new()
    };
    if allows(&store.spec.conditions, namespace, &labels) {
        Ok(())
    } else {
        Err(StoreError::Forbidden {
            store: store.key.clone(),
            namespace: namespace.into(),
        })
    }
}

/// Reads what a store's spec refers to.
struct Reader<'a> {
    lookups: &'a Lookups,
    store: &'a Store,
    es_namespace: &'a str,
    /// Digests of the credential values read, for [`Resolved::digest`].
    read: Vec<String>,
    requested_token: bool,
}

/// The pod's own service-account token, for Vault's kubernetes auth with no reference.
const POD_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// IRSA's annotation of a ServiceAccount naming the role its tokens assume.
const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// Lifetime asked of requested tokens; clients made with one are made again well before.
const TOKEN_SECONDS: i64 = 3600;

impl Reader<'_> {
    fn invalid(&self, problem: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            store: self.store.key.clone(),
            problem: problem.into(),
        }
    }

    fn credentials(&self, what: String, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Credentials {
            store: self.store.key.clone(),
            what,
            reason: reason.to_string(),
        }
    }

    /// The value of the key a selector names.
    async fn secret_value(
        &mut self,
        selector: &SecretKeySelector,
    ) -> Result<SecretBytes, StoreError> {
        let (Some(name), Some(key)) = (&selector.name, &selector.key) else {
            return Err(self.invalid("a secret reference needs a name and a key"));
        };
        let namespace = ref_namespace(self.store, selector.namespace.as_deref(), self.es_namespace);
        let what = format!("key \"{key}\" of Secret {namespace}/{name}");
        let secret = self
            .lookups
            .secret(&namespace, name)
            .await
            .map_err(|e| self.credentials(what.clone(), e))?
            .ok_or_else(|| self.credentials(what.clone(), "the Secret does not exist"))?;
        let value = secret
            .data
            .and_then(|mut data| data.remove(key))
            .ok_or_else(|| self.credentials(what.clone(), "the Secret has no such key"))?;
        let value = SecretBytes::from(value.0);
        self.read
            .push(digest_of(&json!([what, digest_of(&value.expose())])));
        Ok(value)
    }

    async fn text_value(&mut self, selector: &SecretKeySelector) -> Result<String, StoreError> {
        let value = self.secret_value(selector).await?;
        String::from_utf8(value.expose().to_vec())
            .map(|s| s.trim().to_string())
            .map_err(|_| self.invalid("a referenced key is not UTF-8 text"))
    }

    /// A token of a ServiceAccount from the TokenRequest API.
    async fn token(
        &mut self,
        account: &ServiceAccountSelector,
        default_audiences: &[&str],
    ) -> Result<(SecretBytes, ServiceAccount), StoreError> {
        let namespace = ref_namespace(self.store, account.namespace.as_deref(), self.es_namespace);
        let what = format!("a token of ServiceAccount {namespace}/{}", account.name);
        let Lookups::Cluster(client) = self.lookups else {
            return Err(self.credentials(what, "tokens are requested in the cluster only"));
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        let found = accounts
            .get(&account.name)
            .await
            .map_err(|e| self.credentials(what.clone(), e))?;
        let audiences = if account.audiences.is_empty() {
            default_audiences.iter().map(|a| a.to_string()).collect()
        } else {
            account.audiences.clone()
        };
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(audiences).filter(|a: &Vec<String>| !a.is_empty()),
                expiration_seconds: Some(TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let response = accounts
            .create_subresource::<_, TokenRequest>(
                "token",
                &account.name,
                &PostParams::default(),
                &request,
            )
            .await
            .map_err(|e| self.credentials(what.clone(), e))?;
        let token = response
            .status
            .and_then(|s| s.token)
            .ok_or_else(|| self.credentials(what.clone(), "the API server returned no token"))?;
        self.requested_token = true;
        self.read.push(digest_of(&what));
        Ok((SecretBytes::from(token.into_bytes()), found))
    }

    async fn aws(&mut self, aws: &AwsProvider) -> Result<AwsConfig, StoreError> {
        if aws.service != AwsService::SecretsManager {
            return Err(self.invalid(
                "only the SecretsManager service is supported (ParameterStore and \
                 CertificateManager are not)",
            ));
        }
        let auth = aws.auth.clone().unwrap_or_default();
        let credentials = if self.lookups.local().is_some() {
            AwsCredentials::DefaultChain
        } else if let Some(account) = auth.jwt.and_then(|j| j.service_account_ref) {
            let (token, found) = self.token(&account, &["sts.amazonaws.com"]).await?;
            let role_arn = found
                .annotations()
                .get(ROLE_ARN_ANNOTATION)
                .cloned()
                .ok_or_else(|| {
                    self.invalid(format!(
                        "ServiceAccount {} has no {ROLE_ARN_ANNOTATION} annotation",
                        account.name
                    ))
                })?;
            AwsCredentials::WebIdentity { role_arn, token }
        } else if let Some(keys) = auth.secret_ref {
            let (Some(id), Some(secret)) = (
                keys.access_key_id_secret_ref,
                keys.secret_access_key_secret_ref,
            ) else {
                return Err(self.invalid(
                    "auth.secretRef needs accessKeyIDSecretRef and secretAccessKeySecretRef",
                ));
            };
            let access_key_id = self.text_value(&id).await?;
            let secret_access_key = self.secret_value(&secret).await?;
            let session_token = match keys.session_token_secret_ref {
                Some(token) => Some(self.secret_value(&token).await?),
                None => None,
            };
            AwsCredentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            }
        } else {
            AwsCredentials::DefaultChain
        };
        Ok(AwsConfig {
            region: aws.region.clone(),
            credentials,
            additional_roles: aws.additional_roles.clone(),
            role: aws.role.clone().filter(|r| !r.is_empty()),
            external_id: aws.external_id.clone().filter(|r| !r.is_empty()),
            prefix: aws.prefix.clone().unwrap_or_default(),
            endpoint: None,
        })
    }

    async fn vault(&mut self, vault: &VaultProvider) -> Result<VaultConfig, StoreError> {
        let Some(spec) = vault.auth.clone() else {
            return Err(self.invalid("the Vault provider needs auth"));
        };
        let local = self.lookups.local();
        let auth = if let Some(local) = local {
            VaultAuth::Token(
                local
                    .vault_token(&vault.server)
                    .map_err(|e| self.invalid(e))?,
            )
        } else if let Some(token) = &spec.token_secret_ref {
            VaultAuth::Token(self.secret_value(token).await?)
        } else if let Some(approle) = &spec.app_role {
            let role_id = match (&approle.role_id, &approle.role_ref) {
                (Some(id), _) => id.clone(),
                (None, Some(selector)) => self.text_value(selector).await?,
                (None, None) => return Err(self.invalid("appRole needs roleId or roleRef")),
            };
            VaultAuth::AppRole {
                mount: approle.path.clone(),
                role_id,
                secret_id: self.secret_value(&approle.secret_ref).await?,
            }
        } else if let Some(kubernetes) = &spec.kubernetes {
            let jwt =
                match (&kubernetes.service_account_ref, &kubernetes.secret_ref) {
                    (Some(account), _) => self.token(account, &[]).await?.0,
                    (None, Some(selector)) => self.secret_value(selector).await?,
                    (None, None) => SecretBytes::from(std::fs::read(POD_TOKEN).map_err(|e| {
                        self.credentials("the pod's service-account token".into(), e)
                    })?),
                };
            VaultAuth::Kubernetes {
                mount: kubernetes.mount_path.clone(),
                role: kubernetes.role.clone(),
                jwt,
            }
        } else if let Some(jwt) = &spec.jwt {
            let token = match (&jwt.secret_ref, &jwt.kubernetes_service_account_token) {
                (Some(selector), _) => self.secret_value(selector).await?,
                (None, Some(account)) => {
                    let mut selector = account.service_account_ref.clone();
                    if !account.audiences.is_empty() {
                        selector.audiences = account.audiences.clone();
                    }
                    self.token(&selector, &[]).await?.0
                }
                (None, None) => {
                    return Err(
                        self.invalid("jwt needs secretRef or kubernetesServiceAccountToken")
                    );
                }
            };
            VaultAuth::Jwt {
                mount: jwt.path.clone(),
                role: jwt.role.clone(),
                jwt: token,
            }
        } else if let Some(user_pass) = &spec.user_pass {
            let Some(selector) = &user_pass.secret_ref else {
                return Err(self.invalid("userPass needs secretRef"));
            };
            VaultAuth::UserPass {
                mount: user_pass.path.clone(),
                username: user_pass.username.clone(),
                password: self.secret_value(selector).await?,
            }
        } else if let Some(cert) = &spec.cert {
            VaultAuth::Cert {
                mount: cert.path.clone().unwrap_or_else(|| "cert".into()),
                role: cert.vault_role.clone().filter(|r| !r.is_empty()),
            }
        } else {
            return Err(self.invalid(
                "this Vault auth method is not supported: use tokenSecretRef, appRole, \
                 kubernetes, jwt, userPass or cert",
            ));
        };
        // Cert auth presents its own certificate; `tls` is the client certificate of the
        // connection otherwise.
        let pair = match (&spec.cert, &vault.tls) {
            _ if local.is_some() => None,
            (Some(cert), _) => Some((&cert.client_cert, &cert.secret_ref, "cert auth")),
            (None, Some(tls)) => Some((&tls.cert_secret_ref, &tls.key_secret_ref, "tls")),
            (None, None) => None,
        };
        let client_identity = match pair {
            Some((Some(cert), Some(key), _)) => {
                let cert = self.secret_value(cert).await?;
                let key = self.secret_value(key).await?;
                // Sized at once: no reallocation leaves a copy of the key behind.
                let mut pem = Vec::with_capacity(cert.expose().len() + 1 + key.expose().len());
                pem.extend_from_slice(cert.expose());
                pem.push(b'\n');
                pem.extend_from_slice(key.expose());
                Some(SecretBytes::from(pem))
            }
            Some((_, _, what)) => {
                return Err(self.invalid(format!(
                    "{what} needs both the client certificate and its key"
                )));
            }
            None => None,
        };
        let ca_pem = match (local, &vault.ca_bundle, &vault.ca_provider) {
            (Some(local), _, _) => local.vault_ca(),
            (None, Some(bundle), _) => Some(
                STANDARD
                    .decode(bundle.trim())
                    .map_err(|_| self.invalid("caBundle is not base64"))?,
            ),
            (None, None, Some(provider)) => Some(self.ca_from(provider).await?),
            (None, None, None) => None,
        };
        Ok(VaultConfig {
            server: vault.server.clone(),
            mount: vault.path.clone().filter(|p| !p.is_empty()),
            version: match vault.version {
                Some(VaultKvVersion::V1) => KvVersion::V1,
                _ => KvVersion::V2,
            },
            namespace: vault.namespace.clone().filter(|n| !n.is_empty()),
            ca_pem,
            client_identity,
            auth,
        })
    }

    /// The CA bundle a `caProvider` names.
    async fn ca_from(
        &mut self,
        provider: &sealsync_api::external::CaProvider,
    ) -> Result<Vec<u8>, StoreError> {
        let key = provider.key.clone().unwrap_or_else(|| "ca.crt".into());
        let selector = SecretKeySelector {
            name: Some(provider.name.clone()),
            namespace: provider.namespace.clone(),
            key: Some(key.clone()),
        };
        match provider.type_ {
            CaProviderType::Secret => Ok(self.secret_value(&selector).await?.expose().to_vec()),
            CaProviderType::ConfigMap => {
                let namespace =
                    ref_namespace(self.store, provider.namespace.as_deref(), self.es_namespace);
                let what = format!("key \"{key}\" of ConfigMap {namespace}/{}", provider.name);
                let map = self
                    .lookups
                    .config_map(&namespace, &provider.name)
                    .await
                    .map_err(|e| self.credentials(what.clone(), e))?
                    .ok_or_else(|| {
                        self.credentials(what.clone(), "the ConfigMap does not exist")
                    })?;
                let value = map
                    .data
                    .and_then(|mut d| d.remove(&key))
                    .ok_or_else(|| self.credentials(what.clone(), "no such key"))?;
                self.read.push(digest_of(&json!([what, digest_of(&value)])));
                Ok(value.into_bytes())
            }
        }
    }
}

/// `store` resolved for ExternalSecrets of `es_namespace`.
pub async fn resolve(
    lookups: &Lookups,
    store: &Store,
    es_namespace: &str,
) -> Result<Resolved, StoreError> {
    let mut reader = Reader {
        lookups,
        store,
        es_namespace,
        read: Vec::new(),
        requested_token: false,
    };
    let provider = &store.spec.provider;
    let config = match (&provider.aws, &provider.vault, &provider.fake) {
        (Some(aws), None, None) => ProviderConfig::Aws(reader.aws(aws).await?),
        (None, Some(vault), None) => ProviderConfig::Vault(reader.vault(vault).await?),
        (None, None, Some(fake)) => ProviderConfig::Fake(fake_secrets(fake)),
        _ => {
            return Err(reader.invalid("the store needs exactly one provider: aws, vault or fake"));
        }
    };
    let digest = digest_of(&json!({
        "store": store.key.to_string(),
        "uid": store.uid,
        "generation": store.generation,
        "read": reader.read,
    }));
    Ok(Resolved {
        config,
        digest,
        uses_requested_token: reader.requested_token,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn condition() -> ClusterSecretStoreCondition {
        ClusterSecretStoreCondition::default()
    }

    #[test]
    fn cluster_store_conditions_are_ored() {
        let labels = BTreeMap::from([("team".to_string(), "a".to_string())]);
        assert!(allows(&[], "any", &labels));
        let by_name = ClusterSecretStoreCondition {
            namespaces: vec!["prod".into()],
            ..condition()
        };
        let by_regex = ClusterSecretStoreCondition {
            namespace_regexes: vec!["^team-.*$".into()],
            ..condition()
        };
        let by_label = ClusterSecretStoreCondition {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into()]),
                }]),
                ..LabelSelector::default()
            }),
            ..condition()
        };
        let all = [by_name, by_regex, by_label];
        assert!(allows(&all, "prod", &BTreeMap::new()));
        assert!(allows(&all, "team-x", &BTreeMap::new()));
        assert!(allows(&all, "other", &labels));
        assert!(!allows(&all, "other", &BTreeMap::new()));
    }
}
