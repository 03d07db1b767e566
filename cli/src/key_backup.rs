//! `sealsync keys backup|restore`: the controller's key Secrets in a file encrypted with age
//! (to a passphrase or to age recipients), and back. Plaintext exists only in zeroized
//! buffers; nothing secret is printed.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use anyhow::{Context, bail};
use kube::Client;
use kube::api::{GetParams, ListParams, PostParams};
use sealsync_api::{
    KEY_LABEL, KEY_LABEL_ACTIVE, KEY_SECRET_GENERATE_NAME, ObjectMeta, ROTATION_REQUESTED,
    SecretManifest, parse_documents,
};
use sealsync_crypto::{PrivateKey, SealingCertificate};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cluster::{ClusterTarget, describe, status_of};
use crate::files::{Sensitivity, write_atomically};

/// Environment variable holding the passphrase, for scripts.
pub const PASSPHRASE_VARIABLE: &str = "SEALSYNC_KEYS_PASSPHRASE";
/// Largest backup file read: far above any real number of keys.
const MAX_BACKUP_BYTES: u64 = 16 * 1024 * 1024;
/// Most key Secrets one backup may hold.
const MAX_BACKUP_KEYS: usize = 1000;
/// Annotation kubectl keeps a copy of a whole applied object in (the private key too).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How a backup is encrypted, or opened.
#[derive(Debug, Clone, Default)]
pub struct BackupKey {
    /// age recipients (`age1...`); none: a passphrase.
    pub recipients: Vec<String>,
    /// age identity files, to open a backup made for recipients.
    pub identities: Vec<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
}

impl BackupKey {
    /// The passphrase: from `--passphrase-file`, else [`PASSPHRASE_VARIABLE`], else asked
    /// on the terminal (twice when `confirm`).
    fn passphrase(&self, confirm: bool) -> anyhow::Result<SecretString> {
        let passphrase = if let Some(path) = &self.passphrase_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read passphrase file {}", path.display()))?,
            );
            Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string())
        } else if let Ok(passphrase) = std::env::var(PASSPHRASE_VARIABLE) {
            Zeroizing::new(passphrase)
        } else if std::io::stderr().is_terminal() {
            let ask = |prompt: &str| {
                rpassword::prompt_password(prompt)
                    .map(Zeroizing::new)
                    .context("cannot read the passphrase from the terminal")
            };
            let passphrase = ask("Passphrase of the key backup: ")?;
            if confirm && *ask("Same passphrase again: ")? != *passphrase {
                bail!("the passphrases differ: nothing written");
            }
            passphrase
        } else {
            bail!(
                "no passphrase: set {PASSPHRASE_VARIABLE}, pass --passphrase-file FILE, run on a \
                 terminal, or use age keys (--recipient / --identity)"
            );
        };
        if passphrase.is_empty() {
            bail!("the passphrase is empty");
        }
        Ok(SecretString::from(passphrase.to_string()))
    }
}

/// One run of `keys backup`.
#[derive(Debug, Clone)]
pub struct KeysBackupJob {
    pub cluster: ClusterTarget,
    pub output: PathBuf,
    pub key: BackupKey,
    pub force: bool,
}

/// The file's plaintext: a `v1` List of key Secrets, as kubectl writes one (so that `age -d`
/// gives what `sealsync unseal --private-key` and `kubeseal --recovery-private-key` read).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeySecretList<'a> {
    api_version: &'static str,
    kind: &'static str,
    items: &'a [SecretManifest],
}

impl KeysBackupJob {
    pub fn run(&self) -> anyhow::Result<()> {
        if self.output.exists() && !self.force {
            bail!(
                "{} already exists: pass --force to overwrite it",
                self.output.display()
            );
        }
        let namespace = &self.cluster.controller_namespace;
        let encryptor = if self.key.recipients.is_empty() {
            age::Encryptor::with_user_passphrase(self.key.passphrase(true)?)
        } else {
            let recipients = self
                .key
                .recipients
                .iter()
                .map(|r| {
                    r.parse::<age::x25519::Recipient>()
                        .map_err(|e| anyhow::anyhow!("--recipient {r}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .context("cannot encrypt to these recipients")?
        };
        let (client, runtime) = self.cluster.api_server()?;
        let secrets = runtime.block_on(list_key_secrets(client, namespace))?;
        if secrets.is_empty() {
            bail!("namespace {namespace} has no key Secrets ({KEY_LABEL}): nothing to back up");
        }
        let items: Vec<SecretManifest> = secrets.iter().map(portable).collect();
        let mut encrypted = Vec::new();
        let mut writer = encryptor
            .wrap_output(&mut encrypted)
            .context("cannot encrypt")?;
        // Straight into the encryptor: no whole plaintext copy.
        serde_json::to_writer_pretty(
            &mut writer,
            &KeySecretList {
                api_version: "v1",
                kind: "List",
                items: &items,
            },
        )
        .context("cannot encrypt the key Secrets")?;
        writer.finish().context("cannot encrypt")?;
        write_atomically(&self.output, &encrypted, Sensitivity::Private)?;
        let mut report = format!(
            "Backed up {} key Secrets of namespace {namespace} to {} (encrypted to {}):\n",
            items.len(),
            self.output.display(),
            if self.key.recipients.is_empty() {
                "a passphrase".to_string()
            } else {
                format!("{} age recipients", self.key.recipients.len())
            }
        );
        for item in &items {
            report.push_str(&format!("  {}\n", describe_key(item)));
        }
        eprint!("{report}");
        Ok(())
    }
}

/// Every key Secret of `namespace`, values zeroized.
async fn list_key_secrets(client: Client, namespace: &str) -> anyhow::Result<Vec<SecretManifest>> {
    #[derive(serde::Deserialize)]
    struct Items {
        items: Vec<SecretManifest>,
    }
    let request = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/secrets"))
        .list(&ListParams::default().labels(KEY_LABEL))
        .context("cannot build the request")?;
    let body = Zeroizing::new(client.request_text(request).await.map_err(describe).with_context(
        || format!("cannot list the key Secrets of namespace {namespace} (needs `list` on Secrets there)"),
    )?);
    let list: Items = serde_json::from_str(&body)
        .with_context(|| format!("the key Secrets of namespace {namespace} do not read"))?;
    Ok(list.items)
}

/// A key Secret as it can be created again anywhere: name, labels, annotations (not
/// kubectl's copy, nor a rotation request), type and data; nothing the server set.
fn portable(secret: &SecretManifest) -> SecretManifest {
    let mut annotations = secret.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(LAST_APPLIED);
    annotations.remove(ROTATION_REQUESTED);
    let mut labels = secret.metadata.labels.clone().unwrap_or_default();
    labels
        .entry(KEY_LABEL.into())
        .or_insert_with(|| KEY_LABEL_ACTIVE.into());
    let metadata = ObjectMeta {
        name: secret.metadata.name.clone(),
        generate_name: secret
            .metadata
            .name
            .is_none()
            .then(|| KEY_SECRET_GENERATE_NAME.into()),
        namespace: secret.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    };
    let mut portable = SecretManifest::new(metadata, secret.data.clone());
    portable.type_ = Some("kubernetes.io/tls".into());
    portable
}

/// `name: fingerprint (status)` of a key Secret, from its certificate.
fn describe_key(secret: &SecretManifest) -> String {
    let fingerprint = secret
        .data
        .get("tls.crt")
        .and_then(|pem| SealingCertificate::from_pem(pem.expose()).ok())
        .map_or("-".to_string(), |c| {
            c.public_key().fingerprint().to_string()
        });
    let status = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(KEY_LABEL))
        .map_or("", String::as_str);
    format!(
        "{}: {fingerprint} ({status})",
        secret.metadata.name.as_deref().unwrap_or("<unnamed>")
    )
}

/// Refuses a backed-up key Secret whose key and certificate do not read or do not match.
fn check_key_secret(secret: &SecretManifest, index: usize) -> anyhow::Result<()> {
    let name = secret.metadata.name.as_deref().unwrap_or("<unnamed>");
    let field = |field: &str| {
        secret
            .data
            .get(field)
            .with_context(|| format!("backup item {index} ({name}) has no {field}"))
    };
    let key = std::str::from_utf8(field("tls.key")?.expose())
        .ok()
        .and_then(|pem| PrivateKey::from_pem(pem).ok())
        .with_context(|| format!("backup item {index} ({name}): tls.key is not a private key"))?;
    let cert = SealingCertificate::from_pem(field("tls.crt")?.expose())
        .with_context(|| format!("backup item {index} ({name}): tls.crt"))?;
    if cert.public_key() != key.public_key() {
        bail!("backup item {index} ({name}): tls.crt is not the certificate of tls.key");
    }
    Ok(())
}

/// One run of `keys restore`.
#[derive(Debug, Clone)]
pub struct KeysRestoreJob {
    pub cluster: ClusterTarget,
    pub input: PathBuf,
    pub key: BackupKey,
}

impl KeysRestoreJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let secrets = self.read()?;
        let namespace = &self.cluster.controller_namespace;
        let (client, runtime) = self.cluster.api_server()?;
        let mut failed = 0;
        for secret in &secrets {
            let mut secret = portable(secret);
            secret.metadata.namespace = Some(namespace.clone());
            let what = describe_key(&secret);
            match runtime.block_on(restore(client.clone(), namespace, &secret)) {
                Ok(Restored::Created) => eprintln!("restored {what}"),
                Ok(Restored::AlreadyThere) => eprintln!("already present: {what}"),
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e:#}");
                }
            }
        }
        if failed > 0 {
            bail!(
                "{failed} of {} key Secrets not restored into namespace {namespace}",
                secrets.len()
            );
        }
        eprintln!(
            "The controller in {namespace} loads them at once (no restart); renewal counts from \
             now, so no new key is made for their age. `sealsync keys list` shows which seals."
        );
        Ok(())
    }

    /// The backup's key Secrets, each checked, or an error before anything is written.
    fn read(&self) -> anyhow::Result<Vec<SecretManifest>> {
        let path = self.input.as_path();
        let name = path.display().to_string();
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
        let mut encrypted = Vec::new();
        file.take(MAX_BACKUP_BYTES + 1)
            .read_to_end(&mut encrypted)
            .with_context(|| format!("cannot read {name}"))?;
        if encrypted.len() as u64 > MAX_BACKUP_BYTES {
            bail!("{name} is larger than {MAX_BACKUP_BYTES} bytes: not a key backup");
        }
        let plaintext = self.decrypt(&encrypted, path)?;
        let text = std::str::from_utf8(&plaintext)
            .with_context(|| format!("{name}: the decrypted backup is not text"))?;
        let secrets = parse_documents::<SecretManifest>(text, &name, "Secret")?;
        if secrets.is_empty() || secrets.len() > MAX_BACKUP_KEYS {
            bail!(
                "{name} holds {} key Secrets; a backup holds 1 to {MAX_BACKUP_KEYS}",
                secrets.len()
            );
        }
        for (index, secret) in secrets.iter().enumerate() {
            check_key_secret(secret, index).with_context(|| name.clone())?;
        }
        Ok(secrets)
    }

    fn decrypt(&self, encrypted: &[u8], path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let name = path.display();
        let decryptor = age::Decryptor::new_buffered(encrypted)
            .with_context(|| format!("{name} is not an age-encrypted key backup"))?;
        let identities: Vec<Box<dyn age::Identity>> = if decryptor.is_scrypt() {
            vec![Box::new(age::scrypt::Identity::new(
                self.key.passphrase(false)?,
            ))]
        } else {
            if self.key.identities.is_empty() {
                bail!("{name} is encrypted to age recipients: pass --identity FILE");
            }
            let mut identities: Vec<Box<dyn age::Identity>> = Vec::new();
            for file in &self.key.identities {
                let read = age::IdentityFile::from_file(file.display().to_string())
                    .ok()
                    .and_then(|f| f.into_identities().ok())
                    .with_context(|| format!("{} is not an age identity file", file.display()))?;
                identities.extend(read.into_iter().map(|i| i as Box<dyn age::Identity>));
            }
            identities
        };
        let mut reader = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref()))
            .with_context(|| format!("cannot decrypt {name} (wrong passphrase or identity?)"))?;
        let mut plaintext = Zeroizing::new(Vec::with_capacity(encrypted.len()));
        reader
            .read_to_end(&mut plaintext)
            .with_context(|| format!("cannot decrypt {name}: damaged"))?;
        Ok(plaintext)
    }
}

enum Restored {
    Created,
    AlreadyThere,
}

/// Creates key Secret `secret`; one of that name holding the same certificate is left as it is.
async fn restore(
    client: Client,
    namespace: &str,
    secret: &SecretManifest,
) -> anyhow::Result<Restored> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let secrets = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/secrets"));
    let body = Zeroizing::new(serde_json::to_vec(secret).context("cannot serialize")?);
    let failed = || format!("cannot create key Secret {namespace}/{name}");
    let create = secrets
        .create(&PostParams::default(), body.to_vec())
        .with_context(failed)?;
    match client.request_text(create).await {
        // The answer holds the private key: dropped at once, zeroized.
        Ok(answer) => {
            drop(Zeroizing::new(answer));
            Ok(Restored::Created)
        }
        Err(e) if status_of(&e) == Some(http::StatusCode::CONFLICT) => {
            let get = secrets
                .get(&name, &GetParams::default())
                .with_context(failed)?;
            let existing = Zeroizing::new(
                client
                    .request_text(get)
                    .await
                    .map_err(describe)
                    .with_context(failed)?,
            );
            let existing: SecretManifest = serde_json::from_str(&existing).with_context(failed)?;
            let same = |field: &str| {
                existing.data.get(field).map(|v| v.expose())
                    == secret.data.get(field).map(|v| v.expose())
            };
            if same("tls.crt") && same("tls.key") {
                Ok(Restored::AlreadyThere)
            } else {
                bail!(
                    "key Secret {namespace}/{name} exists and holds another key: left as it is \
                     (rename the backup's item, or delete that Secret if it is not needed)"
                )
            }
        }
        Err(e) => Err(describe(e))
            .with_context(|| format!("{} (needs `create` on Secrets there)", failed())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealsync_api::key_secret;
    use sealsync_crypto::{CertificateParams, MIN_KEY_BITS};

    fn stored_key_secret() -> SecretManifest {
        let key = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let cert = SealingCertificate::generate(&key, &CertificateParams::default()).unwrap();
        let mut secret = key_secret(&key, &cert, "kube-system");
        let metadata = &mut secret.metadata;
        metadata.name = Some("sealed-secrets-keyabcde".into());
        metadata.generate_name = None;
        metadata.uid = Some("1234".into());
        metadata.resource_version = Some("42".into());
        metadata.annotations = Some(
            [
                (LAST_APPLIED.to_string(), "{...}".to_string()),
                (ROTATION_REQUESTED.to_string(), "now".to_string()),
                ("team".to_string(), "platform".to_string()),
            ]
            .into(),
        );
        secret
    }

    #[test]
    fn a_backed_up_key_secret_keeps_only_what_recreates_it() {
        let portable = portable(&stored_key_secret());
        let metadata = &portable.metadata;
        assert_eq!(metadata.name.as_deref(), Some("sealed-secrets-keyabcde"));
        assert_eq!(
            (metadata.uid.as_ref(), metadata.resource_version.as_ref()),
            (None, None)
        );
        assert_eq!(
            metadata.annotations,
            Some([("team".to_string(), "platform".to_string())].into())
        );
        assert_eq!(
            metadata.labels.as_ref().unwrap()[KEY_LABEL],
            KEY_LABEL_ACTIVE
        );
        check_key_secret(&portable, 0).unwrap();
    }

    #[test]
    fn backups_round_trip_with_a_passphrase_and_refuse_a_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let secret = portable(&stored_key_secret());
        let pem = std::str::from_utf8(secret.data["tls.key"].expose())
            .unwrap()
            .to_string();
        let mut encrypted = Vec::new();
        let encryptor = age::Encryptor::with_user_passphrase(SecretString::from("correct horse"));
        let mut writer = encryptor.wrap_output(&mut encrypted).unwrap();
        let list = KeySecretList {
            api_version: "v1",
            kind: "List",
            items: std::slice::from_ref(&secret),
        };
        serde_json::to_writer(&mut writer, &list).unwrap();
        writer.finish().unwrap();
        let body = pem.lines().nth(1).unwrap();
        assert!(!String::from_utf8_lossy(&encrypted).contains(body));
        let path = dir.path().join("keys.age");
        std::fs::write(&path, &encrypted).unwrap();
        let passphrase_file = dir.path().join("passphrase");
        let job = |passphrase: &str| {
            std::fs::write(&passphrase_file, format!("{passphrase}\n")).unwrap();
            KeysRestoreJob {
                cluster: ClusterTarget::default(),
                input: path.clone(),
                key: BackupKey {
                    passphrase_file: Some(passphrase_file.clone()),
                    ..BackupKey::default()
                },
            }
        };
        let read = job("correct horse").read().unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].data["tls.key"].expose(), pem.as_bytes());
        let error = job("wrong").read().unwrap_err();
        assert!(
            format!("{error:#}").contains("wrong passphrase"),
            "{error:#}"
        );
    }

    #[test]
    fn a_backup_with_a_mismatched_key_is_refused_whole() {
        let mut secret = portable(&stored_key_secret());
        let other = portable(&stored_key_secret());
        secret
            .data
            .insert("tls.crt".into(), other.data["tls.crt"].clone());
        let error = check_key_secret(&secret, 3).unwrap_err();
        assert_eq!(
            error.to_string(),
            "backup item 3 (sealed-secrets-keyabcde): tls.crt is not the certificate of tls.key"
        );
    }
}
