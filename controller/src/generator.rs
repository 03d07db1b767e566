//! SealedSecrets as a generator of the sync engine: the plan of a SealedSecret, its Secret
//! unsealed with the current keys (all or nothing), and its upstream-shaped status.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use sealsync_api::{SealedSecret, SealedSecretCondition, SealedSecretStatus, unseal};
use sealsync_engine::{
    DesiredSecret, Generator, Outcome, Plan, ReasonedError, SecretRef, WriteMode, digest_of,
};
use serde_json::json;

use crate::keys::KeyStore;
use crate::metrics::ControllerMetrics;

/// Annotation of a SealedSecret asking for no ownerReference on its Secret (upstream's).
pub const SKIP_OWNER_REFERENCES: &str = "sealedsecrets.bitnami.com/skip-set-owner-references";
/// Annotation of an existing Secret that lets a SealedSecret take it over.
pub const MANAGED: &str = "sealedsecrets.bitnami.com/managed";
/// Annotation of an existing Secret that lets a SealedSecret merge its keys into it.
pub const PATCH: &str = "sealedsecrets.bitnami.com/patch";

/// Unseals SealedSecrets with the keys of a [`KeyStore`].
#[derive(Debug)]
pub struct SealedSecretGenerator {
    keys: Arc<KeyStore>,
    metrics: ControllerMetrics,
}

/// Why a SealedSecret was not unsealed. Messages name the object and key, never a value.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("SealedSecret has no name or namespace")]
    Unnamed,
    #[error(
        "{0}; re-seal it with this controller's certificate (sealsync seal --fetch-cert), \
         or restore the key it was sealed with"
    )]
    Unseal(sealsync_api::ApiError),
    #[error("the unsealing task failed: {0}")]
    Task(String),
}

impl ReasonedError for UnsealError {
    fn reason(&self) -> &'static str {
        "ErrUnsealFailed"
    }
}

impl SealedSecretGenerator {
    pub fn new(keys: Arc<KeyStore>, metrics: ControllerMetrics) -> Self {
        Self { keys, metrics }
    }
}

const SYNCED: &str = "Synced";

impl Generator for SealedSecretGenerator {
    type Source = SealedSecret;
    type Report = BTreeSet<String>;
    type Error = UnsealError;

    const APPLIED_REASON: &'static str = "Unsealed";
    const REFUSED_REASON: &'static str = "ErrUpdateFailed";

    fn plan(&self, sealed: &SealedSecret) -> Result<Plan, UnsealError> {
        let meta = &sealed.metadata;
        let (Some(name), Some(namespace)) = (meta.name.clone(), meta.namespace.clone()) else {
            return Err(UnsealError::Unnamed);
        };
        let annotations = meta.annotations.clone().unwrap_or_default();
        let skip_owner = annotations.get(SKIP_OWNER_REFERENCES).map(String::as_str) == Some("true");
        // Everything the Secret depends on, short of the keys: a new key changes nothing
        // that already opens.
        let input_digest = digest_of(&json!({
            "spec": sealed.spec,
            "scope": sealed.scope().to_string(),
            "ownerReference": !skip_owner,
        }));
        Ok(Plan {
            target: SecretRef { namespace, name },
            input_digest,
            owner_reference: !skip_owner,
            write: WriteMode::Replace,
        })
    }

    async fn generate(
        &self,
        sealed: &SealedSecret,
    ) -> Result<(DesiredSecret, BTreeSet<String>), UnsealError> {
        let keys = self.keys.current();
        let sealed_copy = sealed.clone();
        let namespace = sealed.metadata.namespace.clone().unwrap_or_default();
        self.metrics
            .unseal_requested(sealed.spec.encrypted_data.len());
        let unsealed = tokio::task::spawn_blocking(move || unseal(&sealed_copy, &keys.keyring))
            .await
            .map_err(|e| UnsealError::Task(e.to_string()))?
            .map_err(|e| {
                self.metrics.unseal_failed("unseal", &namespace);
                UnsealError::Unseal(e)
            })?;
        let secret = unsealed.secret;
        let values = secret.values();
        let desired = DesiredSecret {
            type_: secret.type_.clone(),
            immutable: secret.immutable,
            labels: secret.metadata.labels.clone().unwrap_or_default(),
            annotations: secret.metadata.annotations.clone().unwrap_or_default(),
            data: values
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let fingerprints = unsealed.opened_by.values().map(|f| f.to_string()).collect();
        Ok((desired, fingerprints))
    }

    fn status_is_current(&self, sealed: &SealedSecret) -> bool {
        sealed.status.as_ref().is_some_and(|status| {
            status.observed_generation == sealed.metadata.generation
                && status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == SYNCED && c.status == "True")
        })
    }

    fn status(
        &self,
        sealed: &SealedSecret,
        outcome: &Outcome<BTreeSet<String>>,
    ) -> Option<serde_json::Value> {
        let current = sealed.status.clone().unwrap_or_default();
        let previous = current.conditions.iter().find(|c| c.type_ == SYNCED);
        let (synced, reason, message, fingerprints) = match outcome {
            Outcome::Unchanged => (true, None, None, current.key_fingerprints.clone()),
            Outcome::Applied { report, .. } => (true, None, None, report.iter().cloned().collect()),
            Outcome::Refused { message } => (
                false,
                Some(Self::REFUSED_REASON),
                Some(message.clone()),
                current.key_fingerprints.clone(),
            ),
            Outcome::Failed { reason, message } => (
                false,
                Some(*reason),
                Some(message.clone()),
                current.key_fingerprints.clone(),
            ),
        };
        self.metrics.condition(sealed, synced);
        let status_word = if synced { "True" } else { "False" };
        let same = current.observed_generation == sealed.metadata.generation
            && current.key_fingerprints == fingerprints
            && previous.is_some_and(|c| {
                c.status == status_word
                    && c.reason.as_deref() == reason
                    && c.message.as_deref() == message.as_deref()
            });
        if same {
            return None;
        }
        let now = Timestamp::now().to_string();
        let transitioned = previous.is_none_or(|c| c.status != status_word);
        let status = SealedSecretStatus {
            observed_generation: sealed.metadata.generation,
            conditions: vec![SealedSecretCondition {
                type_: SYNCED.into(),
                status: status_word.into(),
                last_update_time: Some(now.clone()),
                last_transition_time: if transitioned {
                    Some(now)
                } else {
                    previous.and_then(|c| c.last_transition_time.clone())
                },
                reason: reason.map(str::to_string),
                message,
            }],
            key_fingerprints: fingerprints,
        };
        Some(serde_json::to_value(status).expect("a status serializes"))
    }
}
