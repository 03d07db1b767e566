//! The secret providers of the ExternalSecret reconciler, behind one trait that knows
//! nothing of Kubernetes: what to read ([`RemoteRef`], [`Find`]) in, secret bytes out.
//! Store specs, credentials Secrets and service-account tokens are resolved by the caller
//! into each provider's plain configuration.
//!
//! Values are [`SecretBytes`] (zeroized, never printed); errors name the provider, the
//! operation and the remote key, with the provider's reason and never a value, request ID
//! or credential.

pub mod aws;
pub mod fake;
mod value;
pub mod vault;

use std::collections::BTreeMap;

pub use sealsync_crypto::SecretBytes;
pub use value::{
    ConversionStrategy, DecodingStrategy, NullBytePolicy, ValueError, check_null_bytes,
    convert_key, decode,
};

/// What one `remoteRef` of an ExternalSecret reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RemoteRef {
    pub key: String,
    /// A path into the secret's JSON (gjson syntax), or `None` for the whole payload.
    pub property: Option<String>,
    /// Provider-specific: an AWS version stage or `uuid/<VersionId>`, a Vault KV version.
    pub version: Option<String>,
    /// Read the secret's metadata (tags) instead of its value.
    pub metadata: bool,
}

/// A value holding a JSON object, one value per top-level key: what `extract` makes of
/// the value `reference` selects.
pub fn split_object(
    value: &SecretBytes,
    reference: &RemoteRef,
) -> Result<BTreeMap<String, SecretBytes>, ProviderError> {
    value::json_object(value.expose()).map_err(|reason| ProviderError {
        kind: ErrorKind::Invalid,
        provider: "provider",
        operation: "extract",
        key: reference.key.clone(),
        reason,
    })
}

/// What a `dataFrom.find` selects: secrets under a path, with a name matching a regular
/// expression, carrying all of some tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Find {
    pub path: Option<String>,
    pub name: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl Find {
    /// Its `name` regular expression, compiled; one that does not compile is an invalid
    /// `operation` of `provider`.
    fn name_regex(
        &self,
        provider: &'static str,
        operation: &'static str,
    ) -> Result<Option<regex::Regex>, ProviderError> {
        self.name
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| ProviderError {
                kind: ErrorKind::Invalid,
                provider,
                operation,
                key: self.name.clone().unwrap_or_default(),
                reason: format!("invalid name regexp: {e}"),
            })
    }
}

/// Why a provider call failed, for the caller's policy: a missing secret may delete a
/// target, throttling and outages back off, the others are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The remote secret (or its property or version) does not exist.
    NotFound,
    /// The provider asked to slow down (AWS ThrottlingException, Vault 429).
    Throttled,
    /// The provider could not be reached or failed (network, 5xx).
    Unavailable,
    /// The credentials were refused, or lack a permission.
    Denied,
    /// The request or the store's configuration is wrong (a bad regexp, a bad version).
    Invalid,
}

/// A provider call that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider} {operation} of \"{key}\": {reason}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub provider: &'static str,
    pub operation: &'static str,
    /// The remote key (or path) asked for.
    pub key: String,
    /// The provider's reason, without request IDs, credentials or values.
    pub reason: String,
}

/// A source of secrets.
pub trait SecretProvider: Send + Sync {
    /// The whole payload of one remote secret (its key, version, or metadata; the property
    /// is left to [`SecretProvider::select`]): a string as its UTF-8 bytes, a binary secret
    /// byte for byte. One read serves every property of the secret.
    fn read(
        &self,
        reference: &RemoteRef,
    ) -> impl Future<Output = Result<SecretBytes, ProviderError>> + Send;

    /// The property `reference` names of a `payload` read for it (all of it without one),
    /// as the provider looks properties up.
    fn select(
        &self,
        payload: &SecretBytes,
        reference: &RemoteRef,
    ) -> Result<SecretBytes, ProviderError>;

    /// One remote secret, or one property of it.
    fn get(
        &self,
        reference: &RemoteRef,
    ) -> impl Future<Output = Result<SecretBytes, ProviderError>> + Send {
        async move {
            let payload = self.read(reference).await?;
            self.select(&payload, reference)
        }
    }

    /// A remote secret holding a JSON object, as one value per top-level key (`extract`):
    /// strings unquoted, anything else as its JSON text.
    fn get_map(
        &self,
        reference: &RemoteRef,
    ) -> impl Future<Output = Result<BTreeMap<String, SecretBytes>, ProviderError>> + Send {
        async move { split_object(&self.get(reference).await?, reference) }
    }

    /// Every secret `find` selects, by its full remote name.
    fn find(
        &self,
        find: &Find,
    ) -> impl Future<Output = Result<BTreeMap<String, SecretBytes>, ProviderError>> + Send;

    /// Whether the store can be used: its credentials resolve (a store's Ready condition).
    fn validate(&self) -> impl Future<Output = Result<(), ProviderError>> + Send;
}
