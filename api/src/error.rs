//! Errors about whole objects; each names the object or key concerned, never a value.

use sealsync_crypto::CryptoError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{source_name}: document {index} is not valid {format}: {reason}")]
    Parse {
        source_name: String,
        index: usize,
        format: &'static str,
        reason: String,
    },
    #[error("{source_name}: document {index} is a {found}, not a {expected}")]
    WrongKind {
        source_name: String,
        index: usize,
        found: String,
        expected: &'static str,
    },
    #[error("{source_name}: no {expected} found")]
    Empty {
        source_name: String,
        expected: &'static str,
    },
    #[error("Secret {object} has no data: add keys, or pass --allow-empty-data to seal it anyway")]
    EmptySecret { object: String },
    #[error("Secret has no name: set metadata.name (strict scope binds values to it)")]
    MissingName,
    #[error("Secret {object}: key {key:?} has invalid base64 in data")]
    InvalidBase64 { object: String, key: String },
    #[error("cannot seal key {key:?} of {object}: {source}")]
    Seal {
        object: String,
        key: String,
        source: CryptoError,
    },
    #[error(
        "{kind} {object} has {count} values, more than the {max} a SealedSecret may hold: \
         split it into several"
    )]
    TooManyValues {
        kind: &'static str,
        object: String,
        count: usize,
        max: usize,
    },
    #[error("cannot unseal key {key:?} of SealedSecret {object}: {reason}")]
    Unseal {
        object: String,
        key: String,
        reason: String,
    },
    /// `problem` is sealsync-template's error, which describes values by kind, never by
    /// value.
    #[error("cannot render template.data key {key:?} of {object}: {problem}")]
    Template {
        object: String,
        key: String,
        problem: String,
    },
    #[error("{source_name}: {reason}")]
    PrivateKey { source_name: String, reason: String },
    #[error("cannot write {format}: {reason}")]
    Serialize {
        format: &'static str,
        reason: String,
    },
}
