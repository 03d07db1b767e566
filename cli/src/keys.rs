//! `sealsync keys list`: the controller's sealing keys as the cluster shows them without
//! handing out key material: the key Secrets' metadata, the newest key's certificate
//! (`/v1/cert.pem`), and how many SealedSecrets each key last opened (their status).

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use sealsync_api::{KEY_LABEL, SealedSecret};
use sealsync_crypto::SealingCertificate;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cluster::ClusterTarget;
use crate::files::{Sensitivity, write_output};

/// One run of `keys list`.
#[derive(Debug, Clone)]
pub struct KeysListJob {
    pub cluster: ClusterTarget,
    pub json: bool,
}

impl KeysListJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let controller = self.cluster.connect()?;
        let failed = |what: &str| format!("{what} of controller {}", self.cluster);
        let pem = controller
            .certificate()
            .with_context(|| failed("cannot fetch the certificate"))?;
        let newest = SealingCertificate::from_pem(pem.as_bytes())
            .with_context(|| failed("the certificate"))?;
        let inventory = Inventory::new(
            &self.cluster.to_string(),
            &controller.key_secrets()?,
            &newest,
            &controller.sealed_secrets()?,
        );
        let text = if self.json {
            serde_json::to_string_pretty(&inventory)? + "\n"
        } else {
            inventory.text()
        };
        write_output(None, text.as_bytes(), Sensitivity::Public)
    }
}

/// What `keys list` prints (`-o json` as is).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Inventory {
    controller: String,
    /// Oldest first.
    key_secrets: Vec<KeySecret>,
    newest: NewestKey,
    /// By key fingerprint: the SealedSecrets whose status says that key opened them.
    sealed_secrets_by_key: BTreeMap<String, usize>,
    /// SealedSecrets whose status names no key (not opened yet, or by a controller that
    /// does not record it, like upstream's).
    sealed_secrets_without_key: usize,
}

#[derive(Debug, Serialize, PartialEq)]
struct KeySecret {
    name: String,
    created: Option<String>,
    /// The key label's value: `active`, or e.g. `compromised` for a retired key.
    status: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct NewestKey {
    fingerprint: String,
    not_before: String,
    not_after: String,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

impl Inventory {
    fn new(
        controller: &str,
        key_secrets: &[PartialObjectMeta<Secret>],
        newest: &SealingCertificate,
        sealed_secrets: &[SealedSecret],
    ) -> Self {
        let mut keys: Vec<KeySecret> = key_secrets
            .iter()
            .map(|secret| KeySecret {
                name: secret.metadata.name.clone().unwrap_or_default(),
                created: secret
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string()),
                status: secret
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(KEY_LABEL))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        keys.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        let mut without_key = 0;
        for sealed in sealed_secrets {
            let fingerprints = sealed
                .status
                .as_ref()
                .map(|s| s.key_fingerprints.as_slice())
                .unwrap_or_default();
            if fingerprints.is_empty() {
                without_key += 1;
            }
            for fingerprint in fingerprints {
                *by_key.entry(fingerprint.clone()).or_default() += 1;
            }
        }
        Inventory {
            controller: controller.to_string(),
            key_secrets: keys,
            newest: NewestKey {
                fingerprint: newest.public_key().fingerprint().to_string(),
                not_before: rfc3339(newest.not_before()),
                not_after: rfc3339(newest.not_after()),
            },
            sealed_secrets_by_key: by_key,
            sealed_secrets_without_key: without_key,
        }
    }

    fn text(&self) -> String {
        let mut text = format!(
            "Key Secrets of controller {} (metadata only):\n",
            self.controller
        );
        let width = self
            .key_secrets
            .iter()
            .map(|k| k.name.len())
            .max()
            .unwrap_or(0)
            .max("NAME".len());
        text.push_str(&format!("  {:width$}  {:20}  STATUS\n", "NAME", "CREATED"));
        for key in &self.key_secrets {
            text.push_str(&format!(
                "  {:width$}  {:20}  {}\n",
                key.name,
                key.created.as_deref().unwrap_or("-"),
                key.status
            ));
        }
        text.push_str(&format!(
            "Newest key (sealing certificate): {}, valid {} to {}\n\
             SealedSecrets by the key that last opened them (from their status):\n",
            self.newest.fingerprint, self.newest.not_before, self.newest.not_after
        ));
        for (fingerprint, count) in &self.sealed_secrets_by_key {
            let newest = if *fingerprint == self.newest.fingerprint {
                " (newest key)"
            } else {
                ""
            };
            text.push_str(&format!("  {fingerprint}{newest}: {count}\n"));
        }
        text.push_str(&format!(
            "  no key recorded: {}\n",
            self.sealed_secrets_without_key
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use sealsync_api::{SealedSecretSpec, SealedSecretStatus};
    use sealsync_crypto::{CertificateParams, PrivateKey};

    fn key_secret(name: &str, created: &str, label: &str) -> PartialObjectMeta<Secret> {
        let mut meta: PartialObjectMeta<Secret> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {}
        }))
        .unwrap();
        meta.metadata = ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(created.parse().unwrap())),
            labels: Some([(KEY_LABEL.to_string(), label.to_string())].into()),
            ..ObjectMeta::default()
        };
        meta
    }

    fn sealed(fingerprints: &[&str]) -> SealedSecret {
        let mut sealed = SealedSecret::new("x", SealedSecretSpec::default());
        sealed.status = Some(SealedSecretStatus {
            key_fingerprints: fingerprints.iter().map(|f| f.to_string()).collect(),
            ..SealedSecretStatus::default()
        });
        sealed
    }

    #[test]
    fn keys_are_listed_oldest_first_with_their_dependents() {
        let key = PrivateKey::generate(2048).unwrap();
        let cert = SealingCertificate::generate(&key, &CertificateParams::default()).unwrap();
        let newest = cert.public_key().fingerprint().to_string();
        let inventory = Inventory::new(
            "kube-system/sealed-secrets-controller",
            &[
                key_secret("key-b", "2026-06-01T00:00:00Z", "active"),
                key_secret("key-a", "2025-01-01T00:00:00Z", "compromised"),
            ],
            &cert,
            &[
                sealed(&[&newest]),
                sealed(&["SHA256:old"]),
                sealed(&[&newest, "SHA256:old"]),
                sealed(&[]),
            ],
        );
        let names: Vec<_> = inventory.key_secrets.iter().map(|k| &k.name).collect();
        assert_eq!(names, ["key-a", "key-b"]);
        assert_eq!(inventory.key_secrets[0].status, "compromised");
        assert_eq!(
            inventory.sealed_secrets_by_key,
            BTreeMap::from([(newest.clone(), 2), ("SHA256:old".to_string(), 2)])
        );
        assert_eq!(inventory.sealed_secrets_without_key, 1);
        let text = inventory.text();
        assert!(
            text.contains(&format!("  {newest} (newest key): 2\n")),
            "{text}"
        );
        assert!(
            text.contains("  key-a  2025-01-01T00:00:00Z  compromised\n"),
            "{text}"
        );
        assert!(text.contains("  no key recorded: 1\n"), "{text}");
    }
}
