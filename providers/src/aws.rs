//! AWS Secrets Manager, with the SDK's own configuration chain: the region and credentials
//! a store names (static keys, a web identity token for IRSA, or the default chain), then
//! its role chain. Endpoints are overridden the way the SDK honours it (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`), or explicitly.

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{
    Credentials, ProvideCredentials, Region, SharedCredentialsProvider,
};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use regex::Regex;
use sealsync_crypto::SecretBytes;

use crate::value::property;
use crate::{ErrorKind, Find, ProviderError, RemoteRef, SecretProvider};

const PROVIDER: &str = "AWS Secrets Manager";

/// How the provider authenticates before its role chain.
#[derive(Debug, Clone)]
pub enum AwsCredentials {
    /// The SDK's default chain (environment, profile, container or instance role).
    DefaultChain,
    /// Keys from a credentials Secret.
    Static {
        access_key_id: String,
        secret_access_key: SecretBytes,
        session_token: Option<SecretBytes>,
    },
    /// A service-account token (from the TokenRequest API) exchanged for the credentials
    /// of `role_arn` with `AssumeRoleWithWebIdentity` (IRSA).
    WebIdentity {
        role_arn: String,
        token: SecretBytes,
    },
}

/// A store's AWS configuration, resolved.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    pub credentials: AwsCredentials,
    /// Roles assumed in order after the credentials (`additionalRoles`)...
    pub additional_roles: Vec<String>,
    /// ... then this one (`role`), with `external_id`.
    pub role: Option<String>,
    pub external_id: Option<String>,
    /// Prepended to every key (`prefix`).
    pub prefix: String,
    /// An endpoint for every AWS call, else the SDK's `AWS_ENDPOINT_URL*` settings.
    pub endpoint: Option<String>,
}

/// Secrets Manager through one client.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: Client,
    credentials: SharedCredentialsProvider,
    prefix: String,
}

/// Bounds on every call (the SDK has none by default): a provider that stops answering
/// fails the sync, which is retried with backoff, instead of holding it forever.
fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .operation_attempt_timeout(std::time::Duration::from_secs(10))
        .operation_timeout(std::time::Duration::from_secs(30))
        .build()
}

/// Name of the sessions of assumed roles, seen in CloudTrail.
const SESSION_NAME: &str = "sealsync";
/// `BatchGetSecretValue` takes at most this many secrets per call.
pub const BATCH: usize = 20;

impl SecretsManager {
    /// A client for `config`; credentials are resolved on first use.
    pub async fn connect(config: AwsConfig) -> Result<Self, ProviderError> {
        let failed = |reason: String| ProviderError {
            kind: ErrorKind::Denied,
            provider: PROVIDER,
            operation: "authentication",
            key: String::new(),
            reason,
        };
        let loader = || {
            let loader = aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(config.region.clone()))
                .timeout_config(timeouts());
            match &config.endpoint {
                Some(endpoint) => loader.endpoint_url(endpoint),
                None => loader,
            }
        };
        let base = loader().load().await;
        let mut credentials: SharedCredentialsProvider = match config.credentials {
            AwsCredentials::DefaultChain => base
                .credentials_provider()
                .ok_or_else(|| failed("no credentials in the default chain".into()))?,
            AwsCredentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => SharedCredentialsProvider::new(Credentials::new(
                access_key_id,
                utf8(&secret_access_key)
                    .map_err(|_| failed("the secret access key is not text".into()))?,
                session_token
                    .as_ref()
                    .map(utf8)
                    .transpose()
                    .map_err(|_| failed("the session token is not text".into()))?,
                None,
                "sealsync-store",
            )),
            AwsCredentials::WebIdentity { role_arn, token } => {
                SharedCredentialsProvider::new(web_identity(&base, &role_arn, &token).await?)
            }
        };
        let chain = config
            .additional_roles
            .iter()
            .map(|role| (role, None))
            .chain(
                config
                    .role
                    .iter()
                    .map(|role| (role, config.external_id.as_ref())),
            );
        for (role, external_id) in chain {
            let mut builder = AssumeRoleProvider::builder(role)
                .session_name(SESSION_NAME)
                .configure(&base);
            if let Some(id) = external_id {
                builder = builder.external_id(id);
            }
            credentials =
                SharedCredentialsProvider::new(builder.build_from_provider(credentials).await);
        }
        let sdk = loader()
            .credentials_provider(credentials.clone())
            .load()
            .await;
        Ok(Self {
            client: Client::new(&sdk),
            credentials,
            prefix: config.prefix,
        })
    }

    async fn payload(&self, reference: &RemoteRef) -> Result<SecretBytes, ProviderError> {
        let key = format!("{}{}", self.prefix, reference.key);
        if reference.metadata {
            let described = self
                .client
                .describe_secret()
                .secret_id(&key)
                .send()
                .await
                .map_err(|e| error("DescribeSecret", &key, e))?;
            let tags: BTreeMap<&str, &str> = described
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
                .collect();
            return Ok(serde_json::to_vec(&tags).expect("tags serialize").into());
        }
        let mut request = self.client.get_secret_value().secret_id(&key);
        request = match reference.version.as_deref() {
            None => request,
            Some(version) => match version.strip_prefix("uuid/") {
                Some(id) => request.version_id(id),
                None => request.version_stage(version),
            },
        };
        let value = request
            .send()
            .await
            .map_err(|e| error("GetSecretValue", &key, e))?;
        Ok(secret_bytes(value.secret_binary(), value.secret_string()))
    }

    /// The names of all secrets (paginated `ListSecrets`) that `name` matches.
    async fn names_matching(&self, name: &Regex) -> Result<Vec<String>, ProviderError> {
        let mut names = Vec::new();
        let mut pages = self.client.list_secrets().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| error("ListSecrets", name.as_str(), e))?;
            names.extend(
                page.secret_list()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| name.is_match(n))
                    .map(str::to_string),
            );
        }
        Ok(names)
    }

    /// The current values of up to [`BATCH`] secrets (`keys` without the store's prefix)
    /// in one `BatchGetSecretValue`, each with its own result (a secret that does not
    /// exist is [`ErrorKind::NotFound`]); `Err` when the call itself failed.
    pub async fn read_current(
        &self,
        keys: &[String],
    ) -> Result<BTreeMap<String, Result<SecretBytes, ProviderError>>, ProviderError> {
        let ids: Vec<String> = keys.iter().map(|k| format!("{}{k}", self.prefix)).collect();
        let what = ids.first().cloned().unwrap_or_default();
        let page = self
            .client
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids.clone()))
            .send()
            .await
            .map_err(|e| error("BatchGetSecretValue", &what, e))?;
        let mut results = BTreeMap::new();
        for (key, id) in keys.iter().zip(&ids) {
            let named = |name: Option<&str>, arn: Option<&str>| {
                name == Some(id.as_str()) || arn == Some(id.as_str())
            };
            let result = if let Some(value) = page
                .secret_values()
                .iter()
                .find(|v| named(v.name(), v.arn()))
            {
                Ok(secret_bytes(value.secret_binary(), value.secret_string()))
            } else if let Some(failed) = page.errors().iter().find(|e| e.secret_id() == Some(id)) {
                let code = failed.error_code().unwrap_or("error");
                let message = failed.message().unwrap_or_default();
                Err(ProviderError {
                    kind: kind_of(code, message),
                    provider: PROVIDER,
                    operation: "BatchGetSecretValue",
                    key: id.clone(),
                    reason: format!("{code}: {message}"),
                })
            } else {
                continue;
            };
            results.insert(key.clone(), result);
        }
        Ok(results)
    }

    /// `BatchGetSecretValue` of `names` (20 a call) or of the secrets `filters` select.
    async fn batch(
        &self,
        names: Option<&[String]>,
        filters: Vec<Filter>,
        what: &str,
    ) -> Result<BTreeMap<String, SecretBytes>, ProviderError> {
        let mut found = BTreeMap::new();
        let requests: Vec<_> = match names {
            Some(names) => names
                .chunks(BATCH)
                .map(|chunk| {
                    self.client
                        .batch_get_secret_value()
                        .set_secret_id_list(Some(chunk.to_vec()))
                })
                .collect(),
            None => vec![
                self.client
                    .batch_get_secret_value()
                    .set_filters(Some(filters)),
            ],
        };
        for request in requests {
            let mut pages = request.into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| error("BatchGetSecretValue", what, e))?;
                if let Some(failed) = page.errors().first() {
                    return Err(ProviderError {
                        kind: ErrorKind::Unavailable,
                        provider: PROVIDER,
                        operation: "BatchGetSecretValue",
                        key: failed.secret_id().unwrap_or(what).into(),
                        reason: format!(
                            "{}: {}",
                            failed.error_code().unwrap_or("error"),
                            failed.message().unwrap_or_default()
                        ),
                    });
                }
                for value in page.secret_values() {
                    let Some(name) = value.name() else { continue };
                    found.insert(
                        name.to_string(),
                        secret_bytes(value.secret_binary(), value.secret_string()),
                    );
                }
            }
        }
        Ok(found)
    }
}

impl SecretProvider for SecretsManager {
    async fn read(&self, reference: &RemoteRef) -> Result<SecretBytes, ProviderError> {
        self.payload(reference).await
    }

    fn select(
        &self,
        payload: &SecretBytes,
        reference: &RemoteRef,
    ) -> Result<SecretBytes, ProviderError> {
        // A dotted property names a literal key first, then a path.
        let dotted = reference
            .property
            .as_deref()
            .is_some_and(|p| p.contains('.'));
        property(payload, reference, dotted).map_err(|property| ProviderError {
            kind: ErrorKind::NotFound,
            provider: PROVIDER,
            operation: "GetSecretValue",
            key: reference.key.clone(),
            reason: format!("key {property} does not exist in the secret"),
        })
    }

    async fn find(&self, find: &Find) -> Result<BTreeMap<String, SecretBytes>, ProviderError> {
        let name = find.name_regex(PROVIDER, "find")?;
        if find.path.is_none() && find.tags.is_empty() {
            // By name alone: list, match, then read the matches in batches.
            let Some(name) = name else {
                return Ok(BTreeMap::new());
            };
            let names = self.names_matching(&name).await?;
            if names.is_empty() {
                return Ok(BTreeMap::new());
            }
            return self.batch(Some(&names), Vec::new(), name.as_str()).await;
        }
        let filter = |key: FilterNameStringType, values: Vec<String>| {
            Filter::builder().key(key).set_values(Some(values)).build()
        };
        let mut filters = Vec::new();
        if let Some(path) = &find.path {
            filters.push(filter(FilterNameStringType::Name, vec![path.clone()]));
        }
        for (key, value) in &find.tags {
            filters.push(filter(FilterNameStringType::TagKey, vec![key.clone()]));
            filters.push(filter(FilterNameStringType::TagValue, vec![value.clone()]));
        }
        let what = find.path.clone().unwrap_or_else(|| "tags".into());
        let mut found = self.batch(None, filters, &what).await?;
        if let Some(name) = name {
            found.retain(|n, _| name.is_match(n));
        }
        Ok(found)
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        self.credentials
            .provide_credentials()
            .await
            .map(drop)
            .map_err(|e| ProviderError {
                kind: ErrorKind::Denied,
                provider: PROVIDER,
                operation: "authentication",
                key: String::new(),
                reason: error_chain(&e),
            })
    }
}

/// Credentials for `role_arn` from a web identity token.
async fn web_identity(
    base: &aws_config::SdkConfig,
    role_arn: &str,
    token: &SecretBytes,
) -> Result<Credentials, ProviderError> {
    let failed = |reason: String| ProviderError {
        kind: ErrorKind::Denied,
        provider: PROVIDER,
        operation: "AssumeRoleWithWebIdentity",
        key: role_arn.into(),
        reason,
    };
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(base)
            .credentials_provider(Credentials::new("", "", None, None, "anonymous"))
            .build(),
    );
    let assumed = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(SESSION_NAME)
        .web_identity_token(utf8(token).map_err(|_| failed("the token is not text".into()))?)
        .send()
        .await
        .map_err(|e| failed(sdk_reason(&e)))?;
    let credentials = assumed
        .credentials()
        .ok_or_else(|| failed("STS returned no credentials".into()))?;
    Ok(Credentials::new(
        credentials.access_key_id(),
        credentials.secret_access_key(),
        Some(credentials.session_token().to_string()),
        std::time::SystemTime::try_from(*credentials.expiration()).ok(),
        "sealsync-web-identity",
    ))
}

/// A secret's payload: its binary form when it has one, byte for byte, else its string.
fn secret_bytes(
    binary: Option<&aws_sdk_secretsmanager::primitives::Blob>,
    string: Option<&str>,
) -> SecretBytes {
    match (binary, string) {
        (Some(binary), _) => binary.as_ref().into(),
        (None, Some(text)) => text.as_bytes().into(),
        (None, None) => SecretBytes::default(),
    }
}

fn utf8(bytes: &SecretBytes) -> Result<String, std::str::Utf8Error> {
    std::str::from_utf8(bytes.expose()).map(str::to_string)
}

/// The error code and message of a failed call, without its request ID.
fn sdk_reason<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: &SdkError<E, R>,
) -> String {
    match error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("error"),
                e.message().unwrap_or_default()
            )
        }
        SdkError::TimeoutError(_) => "the call timed out".into(),
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            "the endpoint cannot be reached".into()
        }
        other => error_chain(other),
    }
}

/// An error and its sources, which name the cause; none of them holds a credential.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    reason
}

/// A failed call as a [`ProviderError`] of the right kind.
fn error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    key: &str,
    e: SdkError<E, R>,
) -> ProviderError {
    ProviderError {
        kind: kind_of(
            e.code().unwrap_or_default(),
            e.message().unwrap_or_default(),
        ),
        provider: PROVIDER,
        operation,
        key: key.into(),
        reason: sdk_reason(&e),
    }
}

/// The kind of an error by its AWS error code (and message).
fn kind_of(code: &str, message: &str) -> ErrorKind {
    match code {
        "ResourceNotFoundException" => ErrorKind::NotFound,
        "InvalidParameterException" if message.contains("marked for deletion") => {
            ErrorKind::NotFound
        }
        "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            ErrorKind::Throttled
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "DecryptionFailure" => ErrorKind::Denied,
        "InvalidParameterException" | "InvalidRequestException" | "ValidationException" => {
            ErrorKind::Invalid
        }
        _ => ErrorKind::Unavailable,
    }
}
