//! SealedSecrets as a generator of the sync engine: the plan of a SealedSecret, its Secret
//! unsealed with the current keys (all or nothing), and its upstream-shaped status.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use sealsync_api::{
    ApiError, SealedSecret, SealedSecretCondition, SealedSecretSpec, SealedSecretStatus, unseal,
};
use sealsync_crypto::Keyring;
use sealsync_engine::{
    Desired, DesiredSecret, Generator, Outcome, Ownership, Plan, Policy, ReasonedError, SecretRef,
    digest_of,
};
use serde_json::json;

use crate::keys::{KeySet, KeyStore};
use crate::metrics::ControllerMetrics;

/// Annotation of a SealedSecret asking for no ownerReference on its Secret (upstream's).
pub const SKIP_OWNER_REFERENCES: &str = "sealedsecrets.bitnami.com/skip-set-owner-references";
/// Annotation of an existing Secret that lets a SealedSecret take it over.
pub const MANAGED: &str = "sealedsecrets.bitnami.com/managed";
/// Annotation of an existing Secret that lets a SealedSecret merge its keys into it.
pub const PATCH: &str = "sealedsecrets.bitnami.com/patch";

/// Unseals SealedSecrets with the keys of a [`KeyStore`], or with a fixed keyring.
#[derive(Debug)]
pub struct SealedSecretGenerator {
    keys: Keys,
    metrics: ControllerMetrics,
    options: UnsealOptions,
}

/// What the controller's flags say of unsealing.
#[derive(Debug, Clone, Copy)]
pub struct UnsealOptions {
    /// `--accept-deprecated-v1-data`.
    pub accept_deprecated_data: bool,
    /// `--update-status`.
    pub update_status: bool,
    /// Not `--skip-recreate`.
    pub recreate_deleted: bool,
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
    /// Refused before any decryption (too many values): re-sealing alone does not help.
    #[error("{0}")]
    Refused(sealsync_api::ApiError),
    #[error("the unsealing task failed: {0}")]
    Task(String),
    #[error(
        "SealedSecret {object} uses the deprecated spec.data, refused \
         (--accept-deprecated-v1-data=false): re-seal it into spec.encryptedData"
    )]
    DeprecatedData { object: String },
}

/// Refuses the deprecated `spec.data` under `--accept-deprecated-v1-data=false`, before any
/// decryption: the same in the reconciler as in `/v1/verify` and `/v1/rotate`.
pub fn check_data_form(sealed: &SealedSecret, accept_deprecated: bool) -> Result<(), UnsealError> {
    if sealed.spec.data.is_some() && !accept_deprecated {
        return Err(UnsealError::DeprecatedData {
            object: sealed.object_ref(),
        });
    }
    Ok(())
}

impl ReasonedError for UnsealError {
    fn reason(&self) -> &'static str {
        "ErrUnsealFailed"
    }
}

/// Everything the Secret of `sealed` depends on, short of the keys (a new key changes
/// nothing that already opens), with ciphertexts by their digests: the same on the cached
/// compact copy as on the full object.
fn input_digest(sealed: &SealedSecret, owner_reference: bool) -> String {
    let mut spec = sealed.spec.clone();
    compact_spec(&mut spec);
    digest_of(&json!({
        "spec": spec,
        "scope": sealed.scope().to_string(),
        "ownerReference": owner_reference,
    }))
}

/// Prefix of what stands for a ciphertext once compacted. Ciphertexts are base64, which has
/// no ':', so a ciphertext is never mistaken for one.
const CIPHERTEXT_DIGEST: &str = "sha256:";

/// Replaces each ciphertext (~700 bytes for RSA-4096) by its digest; idempotent.
fn compact_spec(spec: &mut SealedSecretSpec) {
    for value in spec.encrypted_data.values_mut().chain(spec.data.as_mut()) {
        if !value.starts_with(CIPHERTEXT_DIGEST) {
            *value = format!("{CIPHERTEXT_DIGEST}{}", digest_of(value));
        }
    }
}

/// Where the keys come from: the controller's watched key Secrets, or the private keys a
/// command line was given (`sealsync sync`), which do not change during a run.
#[derive(Debug)]
enum Keys {
    Watched(Arc<KeyStore>),
    Fixed(Arc<KeySet>),
}

impl Keys {
    fn current(&self) -> Arc<KeySet> {
        match self {
            Self::Watched(store) => store.current(),
            Self::Fixed(keys) => keys.clone(),
        }
    }
}

impl SealedSecretGenerator {
    pub fn new(keys: Arc<KeyStore>, metrics: ControllerMetrics, options: UnsealOptions) -> Self {
        Self {
            keys: Keys::Watched(keys),
            metrics,
            options,
        }
    }

    /// A generator outside the controller, with `keyring` only; its metrics are not exposed.
    pub fn with_keyring(keyring: Keyring, options: UnsealOptions) -> Self {
        let metrics =
            ControllerMetrics::register(&mut prometheus_client::registry::Registry::default());
        Self {
            keys: Keys::Fixed(Arc::new(KeySet {
                keyring,
                ..KeySet::default()
            })),
            metrics,
            options,
        }
    }
}

const SYNCED: &str = "Synced";

impl Generator for SealedSecretGenerator {
    type Source = SealedSecret;
    type Report = BTreeSet<String>;
    type Error = UnsealError;

    const APPLIED_REASON: &'static str = "Unsealed";
    const REFUSED_REASON: &'static str = "ErrUpdateFailed";
    // Ciphertexts are most of a SealedSecret: a sync reads the one it opens again.
    const COMPACT: bool = true;

    fn plan(&self, sealed: &SealedSecret) -> Result<Plan, UnsealError> {
        let meta = &sealed.metadata;
        let (Some(name), Some(namespace)) = (meta.name.clone(), meta.namespace.clone()) else {
            return Err(UnsealError::Unnamed);
        };
        check_data_form(sealed, self.options.accept_deprecated_data)?;
        let annotations = meta.annotations.clone().unwrap_or_default();
        let skip_owner = annotations.get(SKIP_OWNER_REFERENCES).map(String::as_str) == Some("true");
        Ok(Plan {
            target: SecretRef { namespace, name },
            input_digest: input_digest(sealed, !skip_owner),
            // The deprecated spec.data is a whole sealed Secret: its keys are inside.
            data_keys: sealed.spec.data.is_none().then(|| {
                sealed
                    .spec
                    .encrypted_data
                    .keys()
                    .chain(sealed.spec.template.iter().flat_map(|t| t.data.keys()))
                    .cloned()
                    .collect()
            }),
            policy: Policy {
                ownership: if skip_owner {
                    Ownership::Orphan
                } else {
                    Ownership::Owner
                },
                recreate_deleted: self.options.recreate_deleted,
                ..Policy::default()
            },
            dependencies: Vec::new(),
        })
    }

    fn compact(&self, sealed: &mut SealedSecret) {
        compact_spec(&mut sealed.spec);
    }

    fn forget(&self, sealed: &SealedSecret) {
        self.metrics.forget(sealed);
    }

    async fn generate(
        &self,
        sealed: &SealedSecret,
    ) -> Result<(Desired, BTreeSet<String>), UnsealError> {
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
                match e {
                    ApiError::TooManyValues { .. } => UnsealError::Refused(e),
                    e => UnsealError::Unseal(e),
                }
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
        Ok((Desired::Secret(desired), fingerprints))
    }

    fn synced_digest(&self, sealed: &SealedSecret) -> Option<String> {
        let status = sealed.status.as_ref()?;
        let synced = status.observed_generation == sealed.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == SYNCED && c.status == "True");
        synced.then(|| status.input_digest.clone()).flatten()
    }

    fn status(
        &self,
        sealed: &SealedSecret,
        outcome: &Outcome<BTreeSet<String>>,
    ) -> Option<serde_json::Value> {
        let current = sealed.status.clone().unwrap_or_default();
        let previous = current.conditions.iter().find(|c| c.type_ == SYNCED);
        let mut input_digest = current.input_digest.clone();
        let (synced, reason, message, fingerprints) = match outcome {
            Outcome::Unchanged => (true, None, None, current.key_fingerprints.clone()),
            Outcome::Applied {
                report,
                input_digest: written_from,
                ..
            } => {
                input_digest = Some(written_from.clone());
                (true, None, None, report.iter().cloned().collect())
            }
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
        if !self.options.update_status {
            return None;
        }
        let status_word = if synced { "True" } else { "False" };
        let same = current.observed_generation == sealed.metadata.generation
            && current.key_fingerprints == fingerprints
            && current.input_digest == input_digest
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
            input_digest,
        };
        Some(serde_json::to_value(status).expect("a status serializes"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sealed(values: &[(&str, &str)]) -> SealedSecret {
        serde_json::from_value(json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": "db", "namespace": "app"},
            "spec": {
                "encryptedData": values.iter().copied().collect::<BTreeMap<_, _>>(),
                "template": {"metadata": {"labels": {"app": "shop"}}},
            },
        }))
        .expect("a SealedSecret")
    }

    #[test]
    fn the_compact_copy_has_the_digest_of_the_full_object_and_no_ciphertext() {
        let ciphertext = "AgB".to_string() + &"x".repeat(700);
        let full = sealed(&[("password", &ciphertext), ("user", "AgBshort")]);
        let mut compact = full.clone();
        compact_spec(&mut compact.spec);
        let size = |s: &SealedSecret| serde_json::to_vec(s).unwrap().len();
        assert!(size(&compact) < size(&full) - 500);
        assert!(!serde_json::to_string(&compact).unwrap().contains("AgB"));
        assert_eq!(input_digest(&compact, true), input_digest(&full, true));

        let mut twice = compact.clone();
        compact_spec(&mut twice.spec);
        assert_eq!(
            twice.spec.encrypted_data, compact.spec.encrypted_data,
            "compacting is idempotent"
        );
    }

    #[test]
    fn the_deprecated_data_form_is_refused_only_when_not_accepted() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ControllerMetrics::register(&mut registry);
        let mut legacy = sealed(&[]);
        legacy.spec.data = Some("AgBwhole".into());
        let generator = |accept| {
            SealedSecretGenerator::new(
                Arc::new(KeyStore::default()),
                metrics.clone(),
                UnsealOptions {
                    accept_deprecated_data: accept,
                    update_status: true,
                    recreate_deleted: true,
                },
            )
        };
        assert!(generator(true).plan(&legacy).is_ok());
        let refused = generator(false).plan(&legacy).unwrap_err();
        assert_eq!(refused.reason(), "ErrUnsealFailed");
        assert!(
            refused.to_string().contains("--accept-deprecated-v1-data"),
            "{refused}"
        );
        assert!(
            generator(false)
                .plan(&sealed(&[("password", "AgBone")]))
                .is_ok(),
            "encryptedData is unaffected"
        );
    }

    #[test]
    fn the_digest_changes_with_any_ciphertext_and_the_owner_reference() {
        let base = input_digest(&sealed(&[("password", "AgBone")]), true);
        assert_ne!(input_digest(&sealed(&[("password", "AgBtwo")]), true), base);
        assert_ne!(input_digest(&sealed(&[("other", "AgBone")]), true), base);
        assert_ne!(
            input_digest(&sealed(&[("password", "AgBone")]), false),
            base
        );
    }
}
