//! HashiCorp Vault's KV engines (v1 and v2) through `vaultrs`. The store logs in once; its
//! token is kept, logged in again when it nears its expiry, and revoked when the store goes
//! (ESO logs in on every reconcile unless told otherwise: #376, #2163).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sealsync_crypto::SecretBytes;
use tokio::sync::RwLock;
use vaultrs::client::{Client, Identity, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::value::property;
use crate::{ErrorKind, Find, ProviderError, RemoteRef, SecretProvider};

const PROVIDER: &str = "Vault";

/// The KV engine's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvVersion {
    V1,
    #[default]
    V2,
}

/// How the store logs in.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token from a Secret (`tokenSecretRef`): used as it is, never revoked.
    Token(SecretBytes),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretBytes,
    },
    /// A service-account token (from the TokenRequest API, or a Secret).
    Kubernetes {
        mount: String,
        role: String,
        jwt: SecretBytes,
    },
    Jwt {
        mount: String,
        role: Option<String>,
        jwt: SecretBytes,
    },
    UserPass {
        mount: String,
        username: String,
        password: SecretBytes,
    },
    /// TLS certificate auth with the client certificate ([`VaultConfig::client_identity`]),
    /// as `role` (any role that trusts the certificate when `None`).
    Cert { mount: String, role: Option<String> },
}

/// A store's Vault configuration, resolved.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `https://vault.example:8200`.
    pub server: String,
    /// The KV mount (`path`); `None`: the key's first segment.
    pub mount: Option<String>,
    pub version: KvVersion,
    /// Vault Enterprise namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// CA certificates (PEM) the server's certificate is checked against, besides the
    /// system's.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate and its key (PEM) presented to the server (mTLS, cert auth).
    pub client_identity: Option<SecretBytes>,
    pub auth: VaultAuth,
}

/// A logged-in Vault client of one store.
#[derive(Debug)]
pub struct Vault {
    config: VaultConfig,
    session: RwLock<Session>,
}

struct Session {
    client: VaultClient,
    /// When the token stops working; `None`: it does not expire, or it is not ours.
    expires: Option<Instant>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A token this close to its expiry is replaced before it is used.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Vault {
    /// A client of `config`, logged in.
    pub async fn connect(config: VaultConfig) -> Result<Self, ProviderError> {
        let session = login(&config).await?;
        Ok(Self {
            config,
            session: RwLock::new(session),
        })
    }

    /// Revokes the store's token (not a token it was given): the store is gone.
    pub async fn revoke(&self) -> Result<(), ProviderError> {
        if matches!(self.config.auth, VaultAuth::Token(_)) {
            return Ok(());
        }
        let session = self.session.read().await;
        vaultrs::token::revoke_self(&session.client)
            .await
            .map_err(|e| error("revoke-self", "", e))
    }

    /// The session, logged in again first when its token nears its expiry.
    async fn session(&self) -> Result<tokio::sync::RwLockReadGuard<'_, Session>, ProviderError> {
        let expiring = |s: &Session| {
            s.expires
                .is_some_and(|at| at.saturating_duration_since(Instant::now()) < RENEW_MARGIN)
        };
        if expiring(&*self.session.read().await) {
            let mut session = self.session.write().await;
            if expiring(&session) {
                *session = login(&self.config).await?;
            }
        }
        Ok(self.session.read().await)
    }

    fn locate<'k>(&'k self, key: &'k str) -> (&'k str, &'k str) {
        locate(self.config.mount.as_deref(), self.config.version, key)
    }

    /// The data of the secret at `key`, as a JSON object.
    async fn read_data(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<serde_json::Value, ProviderError> {
        let (mount, path) = self.locate(key);
        let session = self.session().await?;
        let client = &session.client;
        let read = async {
            match (self.config.version, version) {
                (KvVersion::V1, _) => vaultrs::kv1::get(client, mount, path).await,
                (KvVersion::V2, None) => vaultrs::kv2::read(client, mount, path).await,
                (KvVersion::V2, Some(version)) => {
                    let version = version.parse().map_err(|_| ClientError::APIError {
                        code: 400,
                        errors: vec![format!("version {version} is not a number")],
                    })?;
                    vaultrs::kv2::read_version(client, mount, path, version).await
                }
            }
        };
        timed(read).await.map_err(|e| error("read", key, e))
    }

    /// The metadata of the secret at `key` (KV v2): its custom metadata and versions.
    async fn metadata(&self, key: &str) -> Result<serde_json::Value, ProviderError> {
        if self.config.version == KvVersion::V1 {
            return Err(ProviderError {
                kind: ErrorKind::Invalid,
                provider: PROVIDER,
                operation: "read metadata",
                key: key.into(),
                reason: "KV version 1 has no metadata; use version v2".into(),
            });
        }
        let (mount, path) = self.locate(key);
        let session = self.session().await?;
        let metadata = timed(vaultrs::kv2::read_metadata(&session.client, mount, path))
            .await
            .map_err(|e| error("read metadata", key, e))?;
        let mut object: serde_json::Map<String, serde_json::Value> = metadata
            .custom_metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        object.insert("created_time".into(), metadata.created_time.into());
        object.insert("current_version".into(), metadata.current_version.into());
        object.insert(
            "delete_version_after".into(),
            metadata.delete_version_after.into(),
        );
        Ok(object.into())
    }

    /// Every secret below `path` of `mount` (recursive LIST), by its path in the mount.
    async fn list(&self, mount: &str, path: &str) -> Result<Vec<String>, ProviderError> {
        let session = self.session().await?;
        let mut found = Vec::new();
        let mut folders = vec![path.trim_end_matches('/').to_string()];
        while let Some(folder) = folders.pop() {
            let listed = match self.config.version {
                KvVersion::V1 => timed(vaultrs::kv1::list(&session.client, mount, &folder))
                    .await
                    .map(|r| r.data.keys),
                KvVersion::V2 => timed(vaultrs::kv2::list(&session.client, mount, &folder)).await,
            };
            let entries = match listed {
                Ok(entries) => entries,
                // An empty folder lists as missing.
                Err(ClientError::APIError { code: 404, .. }) => Vec::new(),
                Err(e) => return Err(error("list", &folder, e)),
            };
            for entry in entries {
                let full = if folder.is_empty() {
                    entry.clone()
                } else {
                    format!("{folder}/{entry}")
                };
                match full.strip_suffix('/') {
                    Some(subfolder) => folders.push(subfolder.to_string()),
                    None => found.push(full),
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

impl SecretProvider for Vault {
    async fn read(&self, reference: &RemoteRef) -> Result<SecretBytes, ProviderError> {
        let data = if reference.metadata {
            self.metadata(&reference.key).await?
        } else {
            self.read_data(&reference.key, reference.version.as_deref())
                .await?
        };
        let payload = zeroize::Zeroizing::new(serde_json::to_vec(&data).expect("JSON"));
        Ok(payload.as_slice().into())
    }

    fn select(
        &self,
        payload: &SecretBytes,
        reference: &RemoteRef,
    ) -> Result<SecretBytes, ProviderError> {
        // An exact top-level key wins, then a path.
        property(payload, reference, true).map_err(|property| ProviderError {
            kind: ErrorKind::NotFound,
            provider: PROVIDER,
            operation: "read",
            key: reference.key.clone(),
            reason: format!("cannot find secret data for key {property}"),
        })
    }

    async fn find(&self, find: &Find) -> Result<BTreeMap<String, SecretBytes>, ProviderError> {
        let name = find.name_regex(PROVIDER, "find")?;
        if !find.tags.is_empty() && self.config.version == KvVersion::V1 {
            return Err(ProviderError {
                kind: ErrorKind::Invalid,
                provider: PROVIDER,
                operation: "find",
                key: find.path.clone().unwrap_or_default(),
                reason: "finding by tags needs KV version v2".into(),
            });
        }
        let path = find.path.as_deref().unwrap_or_default();
        let (mount, inner) = match &self.config.mount {
            Some(mount) => (mount.clone(), path.to_string()),
            None => {
                let (mount, inner) = path.split_once('/').unwrap_or((path, ""));
                (mount.to_string(), inner.to_string())
            }
        };
        let mut found = BTreeMap::new();
        for secret in self.list(&mount, &inner).await? {
            let key = match &self.config.mount {
                Some(_) => secret,
                None => format!("{mount}/{secret}"),
            };
            if name.as_ref().is_some_and(|n| !n.is_match(&key)) {
                continue;
            }
            if !find.tags.is_empty() {
                let metadata = self.metadata(&key).await?;
                let tagged = find
                    .tags
                    .iter()
                    .all(|(k, v)| metadata.get(k).and_then(|m| m.as_str()) == Some(v));
                if !tagged {
                    continue;
                }
            }
            let data = self.read_data(&key, None).await?;
            found.insert(key, serde_json::to_vec(&data).expect("JSON").into());
        }
        Ok(found)
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        let session = self.session().await?;
        timed(vaultrs::token::lookup_self(&session.client))
            .await
            .map(drop)
            .map_err(|e| error("token lookup", "", e))
    }
}

/// The mount and the path inside it of `key`, as ESO builds them: with a mount, a leading
/// `<mount>/` (and on v2 `data/`) is dropped from the key; without, the key's first segment
/// is the mount (on v2, what precedes a `/data/` in it).
fn locate<'k>(mount: Option<&'k str>, version: KvVersion, key: &'k str) -> (&'k str, &'k str) {
    let v2 = version == KvVersion::V2;
    match mount {
        Some(mount) => {
            let mut path = key
                .strip_prefix(mount)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(key);
            if v2 {
                path = path.strip_prefix("data/").unwrap_or(path);
            }
            (mount, path)
        }
        None => match key.split_once("/data/").filter(|_| v2) {
            Some(split) => split,
            None => key.split_once('/').unwrap_or((key, "")),
        },
    }
}

/// Logs in as `config` says.
async fn login(config: &VaultConfig) -> Result<Session, ProviderError> {
    let failed = |reason: String| ProviderError {
        kind: ErrorKind::Invalid,
        provider: PROVIDER,
        operation: "configuration",
        key: config.server.clone(),
        reason,
    };
    // vaultrs panics on an address that is not a URL: check it first.
    url::Url::parse(&config.server).map_err(|e| failed(format!("invalid server address: {e}")))?;
    let ca_file = match &config.ca_pem {
        Some(pem) => {
            let mut file = tempfile::NamedTempFile::new()
                .map_err(|e| failed(format!("cannot keep the CA bundle: {e}")))?;
            std::io::Write::write_all(&mut file, pem)
                .map_err(|e| failed(format!("cannot keep the CA bundle: {e}")))?;
            Some(file)
        }
        None => None,
    };
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(&config.server)
        .timeout(Some(CALL_TIMEOUT))
        .ca_certs(
            ca_file
                .iter()
                .map(|f| f.path().display().to_string())
                .collect(),
        );
    if let Some(namespace) = &config.namespace {
        settings.set_namespace(namespace.clone());
    }
    if let Some(pem) = &config.client_identity {
        settings.identity(Some(Identity::from_pem(pem.expose()).map_err(|_| {
            failed("the client certificate or key is not valid PEM".into())
        })?));
    }
    let text = |secret: &SecretBytes| {
        std::str::from_utf8(secret.expose())
            .map(str::to_string)
            .map_err(|_| failed("a credential is not text".into()))
    };
    if let VaultAuth::Token(token) = &config.auth {
        settings.token(text(token)?);
    }
    let mut client = VaultClient::new(
        settings
            .build()
            .map_err(|e| failed(format!("invalid settings: {e}")))?,
    )
    .map_err(|e| failed(e.to_string()))?;
    let logged_in = match &config.auth {
        VaultAuth::Token(_) => None,
        VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } => Some(
            timed(vaultrs::auth::approle::login(
                &client,
                mount,
                role_id,
                &text(secret_id)?,
            ))
            .await,
        ),
        VaultAuth::Kubernetes { mount, role, jwt } => Some(
            timed(vaultrs::auth::kubernetes::login(
                &client,
                mount,
                role,
                &text(jwt)?,
            ))
            .await,
        ),
        VaultAuth::Jwt { mount, role, jwt } => Some(
            timed(vaultrs::auth::oidc::login(
                &client,
                mount,
                &text(jwt)?,
                role.clone(),
            ))
            .await,
        ),
        VaultAuth::UserPass {
            mount,
            username,
            password,
        } => Some(
            timed(vaultrs::auth::userpass::login(
                &client,
                mount,
                username,
                &text(password)?,
            ))
            .await,
        ),
        VaultAuth::Cert { mount, role } => Some(
            timed(vaultrs::auth::cert::login(
                &client,
                mount,
                role.as_deref().unwrap_or_default(),
            ))
            .await,
        ),
    };
    let expires = match logged_in {
        None => None,
        Some(Err(e)) => return Err(error("login", "", e)),
        Some(Ok(auth)) => {
            client.set_token(&auth.client_token);
            (auth.lease_duration > 0)
                .then(|| Instant::now() + Duration::from_secs(auth.lease_duration))
        }
    };
    Ok(Session { client, expires })
}

/// A Vault call bounded in time.
async fn timed<T>(call: impl Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::APIError {
                code: 504,
                errors: vec!["the call timed out".into()],
            })
        })
}

/// A failed call as a [`ProviderError`]: Vault's own error messages name paths and
/// permissions, never values.
fn error(operation: &'static str, key: &str, e: ClientError) -> ProviderError {
    let (kind, reason) = match &e {
        ClientError::APIError { code, errors } => (
            match code {
                404 => ErrorKind::NotFound,
                429 => ErrorKind::Throttled,
                401 | 403 => ErrorKind::Denied,
                400 => ErrorKind::Invalid,
                _ => ErrorKind::Unavailable,
            },
            format!("HTTP {code}: {}", errors.join("; ")),
        ),
        ClientError::ResponseEmptyError => (ErrorKind::NotFound, "no secret there".into()),
        other => (ErrorKind::Unavailable, other.to_string()),
    };
    ProviderError {
        kind,
        provider: PROVIDER,
        operation,
        key: key.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_as_eso_builds_them() {
        use KvVersion::{V1, V2};
        assert_eq!(locate(Some("secret"), V2, "app/db"), ("secret", "app/db"));
        assert_eq!(
            locate(Some("secret"), V2, "secret/app/db"),
            ("secret", "app/db")
        );
        assert_eq!(
            locate(Some("secret"), V2, "secret/data/app/db"),
            ("secret", "app/db")
        );
        assert_eq!(locate(Some("secret"), V2, "data/app"), ("secret", "app"));
        assert_eq!(locate(Some("kv"), V1, "kv/data/app"), ("kv", "data/app"));
        assert_eq!(locate(None, V2, "secret/app/db"), ("secret", "app/db"));
        assert_eq!(locate(None, V2, "secret/data/app/db"), ("secret", "app/db"));
        assert_eq!(locate(None, V1, "kv/app"), ("kv", "app"));
        assert_eq!(locate(None, V1, "kv/data/app"), ("kv", "data/app"));
    }
}
