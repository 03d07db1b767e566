//! `sealsync keys list|rotate|retire`: the controller's sealing keys for auditors, without
//! moving key material. Facts come from the controller (`GET /v1/keys`) and the SealedSecrets'
//! status; changes are Kubernetes writes RBAC authorises (an annotation, a label).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use sealsync_api::{
    KEY_LABEL, KEY_LABEL_ACTIVE, KEY_LABEL_RETIRED, KeyInfo, KeyList, ROTATION_REQUESTED,
    SealedSecret,
};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cluster::{ClusterSealedSecrets, ClusterTarget, Controller, describe};
use crate::files::{Sensitivity, write_output};

/// Most dependents an error lists by name.
const MAX_NAMED: usize = 20;

/// One run of `keys list`.
#[derive(Debug, Clone)]
pub struct KeysListJob {
    pub cluster: ClusterTarget,
    pub json: bool,
}

impl KeysListJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let controller = self.cluster.connect()?;
        let inventory = Inventory::new(
            &self.cluster.to_string(),
            controller.keys()?,
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
    keys: Vec<ListedKey>,
    /// Older key Secrets the controller left out of its answer.
    omitted: usize,
    /// SealedSecrets whose status names a key no key Secret holds (deleted keys).
    sealed_secrets_by_unknown_key: BTreeMap<String, usize>,
    /// SealedSecrets whose status names no key (not opened yet, failing, or opened by a
    /// controller that does not record it, like upstream's).
    sealed_secrets_without_key: usize,
    /// Objects that are not valid SealedSecrets, counted in no other figure.
    invalid_sealed_secrets: usize,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ListedKey {
    #[serde(flatten)]
    key: KeyInfo,
    /// SealedSecrets whose status says this key opened them.
    sealed_secrets: usize,
}

/// The SealedSecrets each key fingerprint opened (`namespace/name`), and those that name none.
fn dependents(sealed_secrets: &[SealedSecret]) -> (BTreeMap<&str, Vec<String>>, Vec<String>) {
    let mut by_key: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut without_key = Vec::new();
    for sealed in sealed_secrets {
        let fingerprints = sealed
            .status
            .as_ref()
            .map(|s| s.key_fingerprints.as_slice())
            .unwrap_or_default();
        if fingerprints.is_empty() {
            without_key.push(sealed.object_ref());
        }
        for fingerprint in fingerprints {
            by_key
                .entry(fingerprint)
                .or_default()
                .push(sealed.object_ref());
        }
    }
    (by_key, without_key)
}

impl Inventory {
    fn new(controller: &str, list: KeyList, sealed_secrets: &ClusterSealedSecrets) -> Self {
        let (mut by_key, without_key) = dependents(&sealed_secrets.valid);
        let keys = list
            .keys
            .into_iter()
            .map(|key| ListedKey {
                sealed_secrets: key
                    .fingerprint
                    .as_deref()
                    .and_then(|f| by_key.remove(f))
                    .map_or(0, |d| d.len()),
                key,
            })
            .collect();
        Inventory {
            controller: controller.to_string(),
            keys,
            omitted: list.omitted,
            sealed_secrets_by_unknown_key: by_key
                .into_iter()
                .map(|(f, d)| (f.to_string(), d.len()))
                .collect(),
            sealed_secrets_without_key: without_key.len(),
            invalid_sealed_secrets: sealed_secrets.invalid.len(),
        }
    }

    fn text(&self) -> String {
        let mut text = format!("Keys of controller {}, oldest first:\n", self.controller);
        let width = |column: fn(&ListedKey) -> usize, title: &str| {
            self.keys
                .iter()
                .map(column)
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let fingerprint_width = width(
            |k| k.key.fingerprint.as_deref().map_or(1, str::len),
            "FINGERPRINT",
        );
        let status_width = width(|k| status(&k.key).len(), "STATUS");
        let row = |fingerprint: &str,
                   status: &str,
                   created: &str,
                   expires: &str,
                   count: &str,
                   secret: &str| {
            format!(
                "  {fingerprint:fingerprint_width$}  {status:status_width$}  {created:20}  \
                 {expires:20}  {count:>13}  {secret}\n"
            )
        };
        text.push_str(&row(
            "FINGERPRINT",
            "STATUS",
            "CREATED",
            "EXPIRES",
            "SEALEDSECRETS",
            "SECRET",
        ));
        for listed in &self.keys {
            let key = &listed.key;
            text.push_str(&row(
                key.fingerprint.as_deref().unwrap_or("-"),
                &status(key),
                key.created.as_deref().unwrap_or("-"),
                key.not_after.as_deref().unwrap_or("-"),
                &listed.sealed_secrets.to_string(),
                &key.secret,
            ));
            if let Some(problem) = &key.problem {
                text.push_str(&format!("    not usable: {problem}\n"));
            }
        }
        if self.omitted > 0 {
            text.push_str(&format!(
                "  ({} older key Secrets not listed by the controller)\n",
                self.omitted
            ));
        }
        for (fingerprint, count) in &self.sealed_secrets_by_unknown_key {
            text.push_str(&format!(
                "SealedSecrets last opened by {fingerprint}, a key no key Secret holds: {count}\n"
            ));
        }
        text.push_str(&format!(
            "SealedSecrets with no key recorded in their status: {}\n",
            self.sealed_secrets_without_key
        ));
        if self.invalid_sealed_secrets > 0 {
            text.push_str(&format!(
                "Objects that are not valid SealedSecrets (nothing known of their keys): {}\n",
                self.invalid_sealed_secrets
            ));
        }
        text
    }
}

/// `active (sealing)`, `active`, `retired`, or the label's other value.
fn status(key: &KeyInfo) -> String {
    if key.sealing {
        format!("{} (sealing)", key.status)
    } else {
        key.status.clone()
    }
}

/// `list` as a sentence: at most [`MAX_NAMED`] names, then how many more.
fn named(list: &[String]) -> String {
    let mut text = list
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > MAX_NAMED {
        text.push_str(&format!(" and {} more", list.len() - MAX_NAMED));
    }
    text
}

/// Patches the metadata of key Secret `name` (the answer holds no data).
fn patch_key_secret(
    controller: &Controller,
    name: &str,
    patch: serde_json::Value,
) -> anyhow::Result<()> {
    let namespace = controller.namespace().to_string();
    controller
        .block_on(|client| async move {
            Api::<Secret>::namespaced(client, &namespace)
                .patch_metadata(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
        })
        .map(drop)
        .map_err(describe)
        .with_context(|| {
            format!(
                "cannot patch key Secret {}/{name} (needs `patch` on Secrets there)",
                controller.namespace()
            )
        })
}

/// One run of `keys rotate`.
#[derive(Debug, Clone)]
pub struct KeysRotateJob {
    pub cluster: ClusterTarget,
    /// How long to wait for the controller's new key; zero: do not wait.
    pub wait: Duration,
}

impl KeysRotateJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let controller = self.cluster.connect()?;
        let sealing = sealing_key(&controller.keys()?).with_context(|| {
            format!(
                "controller {} has no sealing key yet: it makes one by itself",
                self.cluster
            )
        })?;
        let old = sealing.fingerprint.clone().unwrap_or_default();
        let requested = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        patch_key_secret(
            &controller,
            &sealing.secret,
            serde_json::json!({"metadata": {"annotations": {ROTATION_REQUESTED: requested}}}),
        )?;
        eprintln!(
            "Asked controller {} for a new key (annotation {ROTATION_REQUESTED} on key Secret {}/{})",
            self.cluster,
            controller.namespace(),
            sealing.secret
        );
        if self.wait.is_zero() {
            return Ok(());
        }
        let deadline = Instant::now() + self.wait;
        loop {
            let keys = controller.keys()?;
            if let Some(new) = sealing_key(&keys).filter(|k| k.fingerprint.as_deref() != Some(&old))
            {
                let text = format!(
                    "New sealing key {} (Secret {}/{}); the previous key {old} stays active and \
                     opens what was sealed to it\n",
                    new.fingerprint.as_deref().unwrap_or("-"),
                    controller.namespace(),
                    new.secret
                );
                return write_output(None, text.as_bytes(), Sensitivity::Public);
            }
            if Instant::now() >= deadline {
                bail!(
                    "controller {} made no new key within {}: the request stays on key Secret \
                     {} and is served when its leader runs; see its log",
                    self.cluster,
                    humantime::format_duration(self.wait),
                    sealing.secret
                );
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn sealing_key(list: &KeyList) -> Option<KeyInfo> {
    list.keys.iter().find(|k| k.sealing).cloned()
}

/// One run of `keys retire`.
#[derive(Debug, Clone)]
pub struct KeysRetireJob {
    pub cluster: ClusterTarget,
    pub fingerprint: String,
}

impl KeysRetireJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let controller = self.cluster.connect()?;
        let keys = controller.keys()?;
        let key = keys
            .keys
            .iter()
            .find(|k| k.fingerprint.as_deref() == Some(&self.fingerprint))
            .with_context(|| {
                format!(
                    "controller {} has no key {}: `sealsync keys list` shows its keys",
                    self.cluster, self.fingerprint
                )
            })?;
        if key.status == KEY_LABEL_RETIRED {
            eprintln!("Key {} is already retired", self.fingerprint);
            return Ok(());
        }
        check_retirable(key, &controller.sealed_secrets()?)?;
        patch_key_secret(
            &controller,
            &key.secret,
            serde_json::json!({"metadata": {"labels": {KEY_LABEL: KEY_LABEL_RETIRED}}}),
        )?;
        let text = format!(
            "Retired key {} (Secret {}/{}): the controller no longer opens or seals with it. \
             Undo: kubectl -n {} label secret {} {KEY_LABEL}={KEY_LABEL_ACTIVE} --overwrite\n",
            self.fingerprint,
            controller.namespace(),
            key.secret,
            controller.namespace(),
            key.secret
        );
        write_output(None, text.as_bytes(), Sensitivity::Public)
    }
}

/// Refuses to retire the sealing key, or a key that SealedSecrets depend on (or may: those
/// whose status names no key and that do not fail).
fn check_retirable(key: &KeyInfo, listed: &ClusterSealedSecrets) -> anyhow::Result<()> {
    let fingerprint = key.fingerprint.as_deref().unwrap_or_default();
    if key.sealing {
        bail!(
            "key {fingerprint} seals new SealedSecrets: rotate first (`sealsync keys rotate`), \
             re-encrypt what it opens, then retire it"
        );
    }
    let sealed_secrets = &listed.valid;
    let (by_key, _) = dependents(sealed_secrets);
    if let Some(dependents) = by_key.get(fingerprint) {
        bail!(
            "key {fingerprint} still opens {} SealedSecrets: {}; re-encrypt them \
             (`sealsync reencrypt`) and let the controller open them with the new key first",
            dependents.len(),
            named(dependents)
        );
    }
    if !listed.invalid.is_empty() {
        bail!(
            "cannot tell which key opens {} objects that are not valid SealedSecrets: {}; fix \
             or delete them",
            listed.invalid.len(),
            named(&listed.invalid)
        );
    }
    let unknown: Vec<String> = sealed_secrets
        .iter()
        .filter(|sealed| {
            let status = sealed.status.as_ref();
            let recorded = status.is_some_and(|s| !s.key_fingerprints.is_empty());
            let failing = status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Synced" && c.status == "False")
            });
            !recorded && !failing
        })
        .map(SealedSecret::object_ref)
        .collect();
    if !unknown.is_empty() {
        bail!(
            "cannot tell which key opens {} SealedSecrets (their status records none: not \
             opened yet, or statuses are off): {}; retry once the controller has opened them",
            unknown.len(),
            named(&unknown)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealsync_api::{SealedSecretCondition, SealedSecretSpec, SealedSecretStatus};

    fn key(secret: &str, fingerprint: &str, status: &str, sealing: bool) -> KeyInfo {
        KeyInfo {
            secret: secret.into(),
            fingerprint: Some(fingerprint.into()),
            created: Some("2026-01-01T00:00:00Z".into()),
            not_before: Some("2026-01-01T00:00:00Z".into()),
            not_after: Some("2036-01-01T00:00:00Z".into()),
            status: status.into(),
            sealing,
            problem: None,
        }
    }

    fn listed(valid: Vec<SealedSecret>, invalid: &[&str]) -> ClusterSealedSecrets {
        ClusterSealedSecrets {
            valid,
            invalid: invalid.iter().map(|name| name.to_string()).collect(),
        }
    }

    fn sealed(name: &str, fingerprints: &[&str], synced: Option<&str>) -> SealedSecret {
        let mut sealed = SealedSecret::new(name, SealedSecretSpec::default());
        sealed.metadata.namespace = Some("apps".into());
        sealed.status = Some(SealedSecretStatus {
            key_fingerprints: fingerprints.iter().map(|f| f.to_string()).collect(),
            conditions: synced
                .map(|status| SealedSecretCondition {
                    type_: "Synced".into(),
                    status: status.into(),
                    ..SealedSecretCondition::default()
                })
                .into_iter()
                .collect(),
            ..SealedSecretStatus::default()
        });
        sealed
    }

    #[test]
    fn each_key_is_listed_with_its_dependents() {
        let list = KeyList {
            keys: vec![
                key("key-a", "SHA256:old", "retired", false),
                key("key-b", "SHA256:new", "active", true),
            ],
            omitted: 0,
        };
        let inventory = Inventory::new(
            "kube-system/sealed-secrets-controller",
            list,
            &listed(
                vec![
                    sealed("a", &["SHA256:new"], Some("True")),
                    sealed("b", &["SHA256:new", "SHA256:gone"], Some("True")),
                    sealed("c", &[], None),
                ],
                &["apps/broken"],
            ),
        );
        let counts: Vec<_> = inventory.keys.iter().map(|k| k.sealed_secrets).collect();
        assert_eq!(counts, [0, 2]);
        assert_eq!(
            inventory.sealed_secrets_by_unknown_key,
            BTreeMap::from([("SHA256:gone".to_string(), 1)])
        );
        assert_eq!(inventory.sealed_secrets_without_key, 1);
        assert_eq!(inventory.invalid_sealed_secrets, 1);
        let text = inventory.text();
        assert!(
            text.ends_with(
                "Objects that are not valid SealedSecrets (nothing known of their keys): 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  SHA256:new   active (sealing)  2026-01-01T00:00:00Z  2036-01-01T00:00:00Z              2  key-b\n"),
            "{text}"
        );
        assert!(text.contains("  SHA256:old   retired"), "{text}");
        let json = serde_json::to_value(&inventory).unwrap();
        assert_eq!(json["keys"][1]["sealedSecrets"], 2, "{json}");
        assert_eq!(json["keys"][1]["fingerprint"], "SHA256:new", "{json}");
    }

    #[test]
    fn a_key_is_retired_only_once_nothing_depends_on_it() {
        let old = key("key-a", "SHA256:old", "active", false);
        let error = check_retirable(
            &old,
            &listed(
                vec![
                    sealed("a", &["SHA256:old"], Some("True")),
                    sealed("b", &["SHA256:new"], Some("True")),
                ],
                &[],
            ),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "key SHA256:old still opens 1 SealedSecrets: apps/a; re-encrypt them \
             (`sealsync reencrypt`) and let the controller open them with the new key first"
        );
        let error = check_retirable(&old, &listed(vec![sealed("c", &[], None)], &[])).unwrap_err();
        assert!(error.to_string().contains(": apps/c;"), "{error}");
        // Failing SealedSecrets open with no key: they depend on none.
        let failing = vec![
            sealed("b", &["SHA256:new"], Some("True")),
            sealed("d", &[], Some("False")),
        ];
        check_retirable(&old, &listed(failing.clone(), &[])).unwrap();
        // Of one that is not valid, nothing is known.
        let error = check_retirable(&old, &listed(failing, &["apps/broken"])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("1 objects that are not valid SealedSecrets: apps/broken;"),
            "{error}"
        );
        let sealing = key("key-b", "SHA256:new", "active", true);
        let error = check_retirable(&sealing, &listed(Vec::new(), &[])).unwrap_err();
        assert!(error.to_string().contains("rotate first"), "{error}");
    }

    #[test]
    fn long_lists_of_dependents_are_cut() {
        let names: Vec<String> = (0..25).map(|i| format!("apps/s{i}")).collect();
        let text = named(&names);
        assert!(text.ends_with("apps/s19 and 5 more"), "{text}");
    }
}
