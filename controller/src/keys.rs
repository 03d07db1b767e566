//! The sealing keys: upstream-format key Secrets in the controller's namespace, watched so
//! that an added, relabelled or deleted key takes effect at once; generated when none
//! exists, renewed on a period or a cutoff time, and on demand (SIGUSR1, or the rotation
//! annotation on the newest key Secret, which RBAC guards), by the leader only.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{WatchStreamExt, reflector};
use sealsync_api::{
    KEY_LABEL, KeyInfo, ROTATION_REQUESTED, SecretManifest, key_secret, keyring_from_key_secrets,
};
use sealsync_crypto::{CertificateParams, Keyring, PrivateKey, SealingCertificate};
use sealsync_engine::kubernetes::api_message;
use sealsync_engine::leader::Leadership;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::args::KeyOrder;

/// The keys in use at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keyring: Keyring,
    /// The certificate new SealedSecrets are sealed to (the newest key's).
    pub newest: Option<SealingCertificate>,
    /// When the newest key was made, by the key order (what `--key-cutoff-time` compares).
    pub newest_made: Option<OffsetDateTime>,
    /// When the newest key came into use here: made, or its Secret created (restored), if
    /// later. Renewal counts from it, so restoring old keys does not renew at once.
    pub renew_from: Option<OffsetDateTime>,
    /// The newest key's Secret, when it carries [`ROTATION_REQUESTED`].
    pub rotation_request: Option<String>,
    /// Every key Secret, retired ones too, oldest first: public data for `GET /v1/keys`.
    pub inventory: Vec<KeyInfo>,
}

/// The current key set, shared by the unsealer and the HTTP API, replaced on every change.
#[derive(Debug)]
pub struct KeyStore {
    current: RwLock<Arc<KeySet>>,
    /// Counts key set changes; subscribers re-examine what failed before.
    generation: watch::Sender<u64>,
}

impl Default for KeyStore {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            generation: watch::Sender::new(0),
        }
    }
}

impl KeyStore {
    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().expect("key store lock").clone()
    }

    /// Notified after each change of the key set.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) fn replace(&self, keys: KeySet) {
        *self.current.write().expect("key store lock") = Arc::new(keys);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Returns once a key set change shows a rotation request (checked against the API
    /// server by the caller: the cache may lag).
    async fn rotation_requested(&self, changes: &mut watch::Receiver<u64>) {
        loop {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if self.current().rotation_request.is_some() {
                return;
            }
        }
    }

    /// Waits until the key set has been loaded once and holds at least one key.
    pub async fn wait_for_a_key(&self) {
        let mut changes = self.subscribe();
        while self.current().newest.is_none() {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Keeps `store` equal to the active key Secrets of `namespace`, newest first by `order`,
/// forever.
pub async fn watch_keys(client: Client, namespace: String, store: Arc<KeyStore>, order: KeyOrder) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let (reader, writer) = reflector::store();
    let mut events = watcher(api, watcher::Config::default().labels(KEY_LABEL))
        .default_backoff()
        .reflect(writer)
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init | Event::InitApply(_)) => {}
            Ok(_) => {
                let keys =
                    load_key_set(&manifests(reader.state().iter().map(AsRef::as_ref)), order);
                info!(
                    namespace = %namespace,
                    keys = keys.keyring.len(),
                    sealing_key = keys.newest.as_ref().map(|c| c.public_key().fingerprint().to_string()),
                    "key set loaded"
                );
                store.replace(keys);
            }
            Err(e) => warn!(error = %e, "watch of key Secrets interrupted"),
        }
    }
}

/// Key Secrets as the api crate reads them.
fn manifests<'a>(secrets: impl Iterator<Item = &'a Secret>) -> Vec<SecretManifest> {
    secrets
        .filter_map(|s| serde_json::from_value(serde_json::to_value(s).ok()?).ok())
        .collect()
}

/// The key set of `secrets`, the newest by `order`; a broken key Secret is reported and
/// skipped, not fatal.
fn load_key_set(secrets: &[SecretManifest], order: KeyOrder) -> KeySet {
    let mut usable = Vec::new();
    let mut inventory = Vec::new();
    let mut newest: Option<(OffsetDateTime, SealingCertificate, usize)> = None;
    for secret in secrets {
        let mut info = key_info(secret);
        match keyring_from_key_secrets(std::slice::from_ref(secret)) {
            Ok((_, Some(cert))) => {
                let made = ordering_time(secret, &cert, order);
                // Ties (creation timestamps count whole seconds) go to the later certificate.
                let newer = newest.as_ref().is_none_or(|(newest_made, newest_cert, _)| {
                    (made, cert.not_before()) > (*newest_made, newest_cert.not_before())
                });
                if newer {
                    newest = Some((made, cert, inventory.len()));
                }
                usable.push(secret.clone());
            }
            // Not labelled active.
            Ok((_, None)) => {}
            Err(e) => {
                warn!(error = %e, "key Secret ignored");
                info.problem = Some(e.to_string());
            }
        }
        inventory.push(info);
    }
    let (keyring, _) = keyring_from_key_secrets(&usable).unwrap_or_default();
    let newest_secret = newest.as_ref().map(|(_, _, index)| &secrets[*index]);
    if let Some((_, _, index)) = &newest {
        inventory[*index].sealing = true;
    }
    inventory.sort_by(|a, b| (&a.created, &a.secret).cmp(&(&b.created, &b.secret)));
    KeySet {
        keyring,
        newest_made: newest.as_ref().map(|(made, _, _)| *made),
        renew_from: newest
            .as_ref()
            .zip(newest_secret)
            .map(|((made, _, _), secret)| created(secret).map_or(*made, |c| c.max(*made))),
        rotation_request: newest_secret
            .filter(|secret| {
                secret
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(ROTATION_REQUESTED))
            })
            .map(|secret| secret.metadata.name.clone().unwrap_or_default()),
        newest: newest.map(|(_, cert, _)| cert),
        inventory,
    }
}

/// The public facts of a key Secret, read from its certificate alone.
fn key_info(secret: &SecretManifest) -> KeyInfo {
    let rfc3339 = |t: OffsetDateTime| t.format(&Rfc3339).ok();
    let cert = secret
        .data
        .get("tls.crt")
        .ok_or_else(|| "no tls.crt".to_string())
        .and_then(|pem| SealingCertificate::from_pem(pem.expose()).map_err(|e| e.to_string()));
    let (fingerprint, not_before, not_after, problem) = match &cert {
        Ok(cert) => (
            Some(cert.public_key().fingerprint().to_string()),
            rfc3339(cert.not_before()),
            rfc3339(cert.not_after()),
            None,
        ),
        Err(e) => (None, None, None, Some(format!("tls.crt: {e}"))),
    };
    KeyInfo {
        secret: secret.metadata.name.clone().unwrap_or_default(),
        fingerprint,
        created: created(secret).and_then(rfc3339),
        not_before,
        not_after,
        status: secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(KEY_LABEL))
            .cloned()
            .unwrap_or_default(),
        sealing: false,
        problem,
    }
}

/// When the Secret was created, by the API server.
fn created(secret: &SecretManifest) -> Option<OffsetDateTime> {
    let created = secret.metadata.creation_timestamp.as_ref()?;
    OffsetDateTime::from_unix_timestamp(created.0.as_second()).ok()
}

/// When a key counts as made, for `order`.
fn ordering_time(
    secret: &SecretManifest,
    cert: &SealingCertificate,
    order: KeyOrder,
) -> OffsetDateTime {
    match order {
        KeyOrder::CertNotBefore => cert.not_before(),
        KeyOrder::SecretCreationTimestamp => created(secret).unwrap_or_else(|| cert.not_before()),
    }
}

/// A certificate for `key` whose NotBefore (whole seconds) is after `newest`'s: a key made
/// in the same second as the newest would tie with it and might not seal.
fn certificate_after(
    key: &PrivateKey,
    params: &CertificateParams,
    newest: Option<OffsetDateTime>,
) -> Result<SealingCertificate, sealsync_crypto::CryptoError> {
    let cert = SealingCertificate::generate(key, params)?;
    if newest != Some(cert.not_before()) {
        return Ok(cert);
    }
    let into_second = OffsetDateTime::now_utc().nanosecond();
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - u64::from(into_second)));
    SealingCertificate::generate(key, params)
}

/// How the leader makes keys.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    pub prefix: String,
    pub bits: usize,
    pub certificate: CertificateParams,
    /// Zero: never renew.
    pub renew_period: Duration,
    pub cutoff: Option<OffsetDateTime>,
    pub order: KeyOrder,
    /// Put on new key Secrets (`--privatekey-annotations`, `--privatekey-labels`).
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Key creation and renewal in `namespace`, run by the leader.
#[derive(Debug, Clone)]
pub struct KeyManager {
    api: Api<Secret>,
    namespace: String,
    policy: KeyPolicy,
    /// Its changes wake the manager for rotation requests.
    store: Arc<KeyStore>,
}

/// A key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot list the key Secrets of namespace {namespace}: {}", api_message(.source))]
    List {
        namespace: String,
        source: kube::Error,
    },
    #[error("cannot create a key Secret in namespace {namespace}: {}", api_message(.source))]
    Create {
        namespace: String,
        source: kube::Error,
    },
    #[error("cannot generate a key: {0}")]
    Generate(String),
    #[error("no key made: this replica no longer leads")]
    NotLeading,
}

/// `secret` with the policy's labels and annotations added; the key label keeps its value.
fn with_extra_metadata(mut secret: SecretManifest, policy: &KeyPolicy) -> SecretManifest {
    let metadata = &mut secret.metadata;
    let mut labels = policy.labels.clone();
    labels.extend(metadata.labels.take().unwrap_or_default());
    metadata.labels = Some(labels);
    let mut annotations = metadata.annotations.take().unwrap_or_default();
    annotations.extend(policy.annotations.clone());
    // A new key carrying a request would ask for the next one at once.
    annotations.remove(ROTATION_REQUESTED);
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    secret
}

impl KeyManager {
    pub fn new(client: Client, namespace: &str, policy: KeyPolicy, store: Arc<KeyStore>) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            policy,
            store,
        }
    }

    /// The key set read from the API server (not a cache, so that a new leader never
    /// doubles a key its predecessor just made, nor a request it already served).
    async fn key_set(&self) -> Result<KeySet, KeyError> {
        let secrets = self
            .api
            .list(&ListParams::default().labels(KEY_LABEL))
            .await
            .map_err(|source| KeyError::List {
                namespace: self.namespace.clone(),
                source,
            })?;
        Ok(load_key_set(
            &manifests(secrets.items.iter()),
            self.policy.order,
        ))
    }

    /// Removes the served request from `secret`, which is no longer the newest; left
    /// there, it would ask again if the new key were deleted.
    async fn clear_request(&self, secret: &str) {
        let patch = serde_json::json!({"metadata": {"annotations": {ROTATION_REQUESTED: null}}});
        if let Err(e) = self
            .api
            .patch_metadata(secret, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            warn!(
                secret,
                error = %api_message(&e),
                "cannot remove the served rotation request (harmless: only the newest key's counts)"
            );
        }
    }

    /// Makes a key whose certificate is newer than `newest`'s, the current newest key.
    async fn create_key(
        &self,
        why: &str,
        leadership: &Leadership,
        newest: Option<OffsetDateTime>,
    ) -> Result<(), KeyError> {
        let policy = self.policy.clone();
        let namespace = self.namespace.clone();
        let manifest = tokio::task::spawn_blocking(move || {
            let key = PrivateKey::generate(policy.bits).map_err(|e| e.to_string())?;
            let cert =
                certificate_after(&key, &policy.certificate, newest).map_err(|e| e.to_string())?;
            let mut secret = with_extra_metadata(key_secret(&key, &cert, &namespace), &policy);
            secret.metadata.generate_name = Some(policy.prefix.clone());
            Ok::<_, String>((secret, cert.public_key().fingerprint().to_string()))
        })
        .await
        .map_err(|e| KeyError::Generate(e.to_string()))?
        .map_err(KeyError::Generate)?;
        let (manifest, fingerprint) = manifest;
        let secret: Secret = serde_json::from_value(
            serde_json::to_value(&manifest).expect("a key Secret serializes"),
        )
        .expect("a key Secret is a Secret");
        // Checked after the slow part: the lease may have been lost while generating.
        if !leadership.is_leading() {
            return Err(KeyError::NotLeading);
        }
        let created = self
            .api
            .create(&PostParams::default(), &secret)
            .await
            .map_err(|source| KeyError::Create {
                namespace: self.namespace.clone(),
                source,
            })?;
        info!(
            secret = created.metadata.name.as_deref().unwrap_or_default(),
            %fingerprint,
            reason = why,
            "new sealing key"
        );
        Ok(())
    }

    /// Makes a key now if there is none or the newest is older than the cutoff time; then
    /// renews on the period and whenever `rotate` is notified. Runs until an error; makes
    /// a key only while `leadership` says this replica leads.
    pub async fn run(&self, rotate: &Notify, leadership: &Leadership) -> Result<(), KeyError> {
        let mut cutoff = self.policy.cutoff;
        let mut changes = self.store.subscribe();
        loop {
            let keys = self.key_set().await?;
            // Checked once, at start, as upstream does: a key made now is still older than
            // a cutoff time in the future, so checking again would make keys without end.
            let before_cutoff = cutoff
                .take()
                .is_some_and(|cutoff| keys.newest_made.is_some_and(|made| made < cutoff));
            let due = match keys.renew_from {
                None => Some("no key yet"),
                Some(_) if before_cutoff => Some("the newest key is older than --key-cutoff-time"),
                Some(_) if keys.rotation_request.is_some() => {
                    Some("rotation requested (annotation on the newest key Secret)")
                }
                Some(made) if !self.policy.renew_period.is_zero() => {
                    let age = OffsetDateTime::now_utc() - made;
                    (age >= self.policy.renew_period).then_some("renewal period elapsed")
                }
                Some(_) => None,
            };
            let newest = keys.newest.as_ref().map(SealingCertificate::not_before);
            if let Some(why) = due {
                self.create_key(why, leadership, newest).await?;
                if let Some(secret) = &keys.rotation_request {
                    self.clear_request(secret).await;
                }
                continue;
            }
            let made = keys.renew_from.expect("a key exists");
            let wait = if self.policy.renew_period.is_zero() {
                info!("sealing key current; renewal disabled");
                Duration::MAX
            } else {
                let age = (OffsetDateTime::now_utc() - made).unsigned_abs();
                let wait = self.policy.renew_period.saturating_sub(age);
                info!(renewal_in_seconds = wait.as_secs(), "sealing key current");
                wait
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.min(Duration::from_secs(86_400 * 365))) => {}
                _ = rotate.notified() => {
                    self.create_key("rotation requested (SIGUSR1)", leadership, newest).await?;
                }
                () = self.store.rotation_requested(&mut changes) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use sealsync_api::{KEY_LABEL_ACTIVE, KEY_LABEL_RETIRED};

    use super::*;

    /// A key Secret, made now, whose Secret says it was created `created` s after the epoch.
    fn key_secret_created(created: i64) -> (SecretManifest, SealingCertificate) {
        let key = PrivateKey::generate(2048).unwrap();
        let cert = SealingCertificate::generate(&key, &CertificateParams::default()).unwrap();
        let mut secret = key_secret(&key, &cert, "kube-system");
        secret.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        (secret, cert)
    }

    #[test]
    fn the_key_order_decides_which_key_seals() {
        // The later certificate (they count whole seconds), restored into the cluster first.
        let (early_secret, early_cert) = key_secret_created(2_000);
        std::thread::sleep(Duration::from_millis(1100));
        let (late_secret, late_cert) = key_secret_created(1_000);
        let secrets = [early_secret, late_secret];
        let fingerprint =
            |cert: Option<&SealingCertificate>| cert.unwrap().public_key().fingerprint().clone();

        let by_cert = load_key_set(&secrets, KeyOrder::CertNotBefore);
        assert_eq!(
            fingerprint(by_cert.newest.as_ref()),
            fingerprint(Some(&late_cert))
        );
        assert_eq!(by_cert.newest_made, Some(late_cert.not_before()));
        let by_secret = load_key_set(&secrets, KeyOrder::SecretCreationTimestamp);
        assert_eq!(
            fingerprint(by_secret.newest.as_ref()),
            fingerprint(Some(&early_cert))
        );
        assert_eq!(
            by_secret.newest_made,
            Some(OffsetDateTime::from_unix_timestamp(2_000).unwrap())
        );
        assert_eq!(by_secret.keyring.len(), 2, "both keys still open");
    }

    /// A policy whose new keys get `annotations` and `labels`.
    fn policy_with(
        annotations: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> KeyPolicy {
        KeyPolicy {
            prefix: "k".into(),
            bits: 2048,
            certificate: CertificateParams::default(),
            renew_period: Duration::ZERO,
            cutoff: None,
            order: KeyOrder::CertNotBefore,
            annotations,
            labels,
        }
    }

    #[test]
    fn new_key_secrets_carry_the_extra_labels_and_annotations() {
        let (secret, _) = key_secret_created(1_000);
        let policy = policy_with(
            BTreeMap::from([("backup".into(), "daily".into())]),
            BTreeMap::from([
                ("team".into(), "platform".into()),
                (KEY_LABEL.into(), "compromised".into()),
            ]),
        );
        let secret = with_extra_metadata(secret, &policy);
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(labels["team"], "platform");
        assert_eq!(
            labels[KEY_LABEL], KEY_LABEL_ACTIVE,
            "a new key is always active"
        );
        assert_eq!(secret.metadata.annotations.unwrap()["backup"], "daily");
    }

    fn named(mut secret: SecretManifest, name: &str) -> SecretManifest {
        secret.metadata.name = Some(name.into());
        secret
    }

    #[test]
    fn renewal_counts_from_when_the_newest_key_came_into_the_cluster() {
        let (made_here, cert) = key_secret_created(1_000);
        let keys = load_key_set(&[made_here], KeyOrder::CertNotBefore);
        assert_eq!(keys.renew_from, Some(cert.not_before()));
        // Restored an hour after its certificate was made: a full period from the restore.
        let restored_at = cert.not_before().unix_timestamp() + 3600;
        let (restored, _) = key_secret_created(restored_at);
        let keys = load_key_set(&[restored], KeyOrder::CertNotBefore);
        assert_eq!(
            keys.renew_from,
            Some(OffsetDateTime::from_unix_timestamp(restored_at).unwrap())
        );
        assert!(
            keys.newest_made < keys.renew_from,
            "the cutoff still sees its age"
        );
    }

    #[test]
    fn only_the_newest_key_carries_a_rotation_request() {
        let (old, _) = key_secret_created(1_000);
        std::thread::sleep(Duration::from_millis(1100));
        let (new, _) = key_secret_created(2_000);
        let request = |mut secret: SecretManifest| {
            secret
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(ROTATION_REQUESTED.into(), "2026-12-02T06:00:00Z".into());
            secret
        };
        let (old, new) = (named(old, "key-old"), named(new, "key-new"));
        let served = load_key_set(
            &[request(old.clone()), new.clone()],
            KeyOrder::CertNotBefore,
        );
        assert_eq!(served.rotation_request, None, "a served request is ignored");
        let asked = load_key_set(&[old, request(new)], KeyOrder::CertNotBefore);
        assert_eq!(asked.rotation_request.as_deref(), Some("key-new"));
    }

    #[test]
    fn the_inventory_lists_every_key_secret_with_public_facts_only() {
        let (retired, retired_cert) = key_secret_created(1_000);
        let (active, active_cert) = key_secret_created(2_000);
        let (mut broken, _) = key_secret_created(3_000);
        broken.data.remove("tls.crt");
        let mut retired = named(retired, "key-retired");
        retired
            .metadata
            .labels
            .get_or_insert_default()
            .insert(KEY_LABEL.into(), KEY_LABEL_RETIRED.into());
        let secrets = [
            named(broken, "key-broken"),
            named(active, "key-active"),
            retired,
        ];
        let keys = load_key_set(&secrets, KeyOrder::CertNotBefore);
        assert_eq!(keys.keyring.len(), 1, "the retired key opens nothing");
        let listed: Vec<_> = keys
            .inventory
            .iter()
            .map(|k| {
                (
                    k.secret.as_str(),
                    k.status.as_str(),
                    k.sealing,
                    k.problem.is_some(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("key-retired", "retired", false, false),
                ("key-active", "active", true, false),
                ("key-broken", "active", false, true),
            ]
        );
        let fingerprint =
            |cert: &SealingCertificate| Some(cert.public_key().fingerprint().to_string());
        assert_eq!(keys.inventory[0].fingerprint, fingerprint(&retired_cert));
        assert_eq!(keys.inventory[1].fingerprint, fingerprint(&active_cert));
        assert_eq!(
            keys.inventory[0].created.as_deref(),
            Some("1970-01-01T00:16:40Z")
        );
        let json = serde_json::to_string(&keys.inventory).unwrap();
        assert!(!json.contains("PRIVATE"), "{json}");
    }

    #[test]
    fn a_new_key_is_newer_than_one_made_in_the_same_second() {
        let key = PrivateKey::generate(2048).unwrap();
        let params = CertificateParams::default();
        let newest = SealingCertificate::generate(&key, &params)
            .unwrap()
            .not_before();
        let cert = certificate_after(&key, &params, Some(newest)).unwrap();
        assert!(cert.not_before() > newest);
    }

    #[test]
    fn a_new_key_never_carries_a_rotation_request() {
        let (secret, _) = key_secret_created(1_000);
        let policy = policy_with(
            BTreeMap::from([(ROTATION_REQUESTED.into(), "x".into())]),
            BTreeMap::new(),
        );
        assert_eq!(
            with_extra_metadata(secret, &policy).metadata.annotations,
            None
        );
    }
}
