//! The operations both front ends (`sealsync` subcommands and kubeseal flags) run.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealsync_api::{
    Format, ObjectMeta, SealOptions, SealedSecret, SecretManifest, merge_into, parse_documents,
    seal_secret, to_document, unseal,
};
use sealsync_crypto::{PublicKey, Scope, SealingCertificate, SecretBytes, seal_value};

use crate::cluster::ClusterTarget;
use crate::clusters::SealTarget;
use crate::files::{
    Sensitivity, load_certificate, load_keyring, read_input, write_atomically, write_output,
};

/// Where the sealing certificate comes from.
#[derive(Debug, Clone, Default)]
pub struct CertSource {
    /// File path, `file://` or `http(s)://` URL.
    pub cert: Option<String>,
    pub cluster: ClusterTarget,
}

impl CertSource {
    pub fn load(&self) -> anyhow::Result<SealingCertificate> {
        match &self.cert {
            Some(location) => load_certificate(location),
            None => {
                let pem = self.cluster.fetch_certificate()?;
                let cert = SealingCertificate::from_pem(pem.as_bytes())
                    .with_context(|| format!("certificate of controller {}", self.cluster))?;
                cert.ensure_current()
                    .with_context(|| format!("certificate of controller {}", self.cluster))?;
                Ok(cert)
            }
        }
    }
}

/// `seal`: Secrets in, SealedSecrets out.
#[derive(Debug, Clone)]
pub struct SealJob {
    pub input: Option<PathBuf>,
    pub cert: CertSource,
    pub scope: Option<Scope>,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub merge_into: Option<PathBuf>,
    pub raw: bool,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub from_files: Vec<String>,
    pub allow_empty_data: bool,
    /// Seal for each of these clusters instead (`cert` and `output` unused).
    pub clusters: Vec<SealTarget>,
}

impl SealJob {
    /// The certificate comes first, as with kubeseal: a wrong `--cert` is reported as such,
    /// not as the empty input of a command that was waiting for it.
    pub fn run(&self) -> anyhow::Result<()> {
        if !self.clusters.is_empty() {
            return self.seal_per_cluster();
        }
        let cert = self.cert.load()?;
        if self.raw {
            return self.seal_raw(&cert);
        }
        let secrets = self.read_secrets()?;
        let key = cert.public_key();
        if let Some(target) = &self.merge_into {
            let (text, source_name) = read_input(Some(target))?;
            let mut existing: Vec<SealedSecret> =
                parse_documents(&text, &source_name, "SealedSecret")?;
            let [sealed] = existing.as_mut_slice() else {
                bail!("{source_name}: --merge-into needs a file with exactly one SealedSecret");
            };
            for secret in &secrets {
                merge_into(sealed, secret, key)?;
            }
            let format = detect_format(&text);
            let out = to_document(&existing, format)?;
            return write_atomically(target, out.as_bytes(), Sensitivity::Public);
        }
        let out = to_document(&self.seal_all(&secrets, key)?, self.format)?;
        write_output(self.output.as_deref(), out.as_bytes(), Sensitivity::Public)
    }

    fn seal_all(
        &self,
        secrets: &[SecretManifest],
        key: &PublicKey,
    ) -> anyhow::Result<Vec<SealedSecret>> {
        let options = SealOptions {
            scope: self.scope,
            allow_empty_data: self.allow_empty_data,
        };
        Ok(secrets
            .iter()
            .map(|secret| seal_secret(secret, key, &options))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// One file per cluster, sealed to that cluster's certificate, so each opens only with
    /// its cluster's key. Every certificate is loaded and everything sealed before the first
    /// file is written: a bad certificate leaves no cluster updated and others not.
    fn seal_per_cluster(&self) -> anyhow::Result<()> {
        for target in &self.clusters {
            let folder = target.output.parent().unwrap_or(Path::new("."));
            if !folder.as_os_str().is_empty() && !folder.is_dir() {
                bail!(
                    "cluster {}: folder {} does not exist: create it or fix the path",
                    target.name,
                    folder.display()
                );
            }
        }
        let certs = self
            .clusters
            .iter()
            .map(|target| {
                target
                    .cert
                    .load()
                    .with_context(|| format!("certificate of cluster {}", target.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let secrets = self.read_secrets()?;
        let documents = certs
            .iter()
            .map(|cert| {
                Ok(to_document(
                    &self.seal_all(&secrets, cert.public_key())?,
                    self.format,
                )?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for ((target, cert), document) in self.clusters.iter().zip(&certs).zip(documents) {
            write_atomically(&target.output, document.as_bytes(), Sensitivity::Public)?;
            eprintln!(
                "{}: wrote {} (sealed to {})",
                target.name,
                target.output.display(),
                cert.public_key().fingerprint()
            );
        }
        Ok(())
    }

    /// The Secrets to seal, with their namespaces resolved as kubeseal does: the input's,
    /// then `-n`, then the kubeconfig context's, then `default`.
    fn read_secrets(&self) -> anyhow::Result<Vec<SecretManifest>> {
        let mut secrets = if self.input.is_none() && !self.from_files.is_empty() {
            vec![self.secret_from_files()?]
        } else {
            let (text, source_name) = read_input(self.input.as_deref())?;
            parse_documents::<SecretManifest>(&text, &source_name, "Secret")?
        };
        let fallback = self.fallback_namespace()?;
        for secret in &mut secrets {
            match (&secret.metadata.namespace, &self.namespace) {
                (Some(own), Some(flag)) if !own.is_empty() && own != flag => bail!(
                    "Secret {} is in namespace {own:?} but -n says {flag:?}: drop -n or fix the input",
                    secret.object_ref()
                ),
                (Some(own), _) if !own.is_empty() => {}
                _ => secret.metadata.namespace = Some(fallback.clone()),
            }
            if self.merge_into.is_none() && secret.metadata.name.is_none() {
                secret.metadata.name = self.name.clone();
            }
        }
        Ok(secrets)
    }

    /// A Secret made of files, like `kubectl create secret generic --from-file`.
    fn secret_from_files(&self) -> anyhow::Result<SecretManifest> {
        let mut data = std::collections::BTreeMap::new();
        for spec in &self.from_files {
            let (key, value) = read_from_file(spec)?;
            data.insert(key, value);
        }
        let metadata = ObjectMeta {
            name: self.name.clone(),
            ..ObjectMeta::default()
        };
        Ok(SecretManifest::new(metadata, data))
    }

    fn fallback_namespace(&self) -> anyhow::Result<String> {
        if let Some(namespace) = &self.namespace {
            return Ok(namespace.clone());
        }
        Ok(self
            .cert
            .cluster
            .kubeconfig
            .namespace()?
            .unwrap_or_else(|| "default".into()))
    }

    /// `--raw`: one value, sealed and printed as base64 (for `encryptedData` or templates).
    fn seal_raw(&self, cert: &SealingCertificate) -> anyhow::Result<()> {
        let scope = self.scope.unwrap_or_default();
        let namespace = self.fallback_namespace()?;
        let name = self.name.clone().unwrap_or_default();
        if scope == Scope::Strict && name.is_empty() {
            bail!("--raw with strict scope needs --name: the value is bound to that name");
        }
        let value = match self.from_files.as_slice() {
            [] => SecretBytes::from(read_input(None)?.0.as_bytes()),
            [spec] => read_from_file(spec)?.1,
            _ => bail!(
                "--raw seals one value: give --from-file once, or the value on standard input"
            ),
        };
        let sealed = seal_value(
            cert.public_key(),
            &scope.label(&namespace, &name),
            value.expose(),
        )?;
        write_output(
            self.output.as_deref(),
            STANDARD.encode(sealed).as_bytes(),
            Sensitivity::Public,
        )
    }
}

/// `[key=]path`: the key defaults to the file's name.
fn read_from_file(spec: &str) -> anyhow::Result<(String, SecretBytes)> {
    let (key, path) = match spec.split_once('=') {
        Some((key, path)) => (key.to_string(), PathBuf::from(path)),
        None => {
            let path = PathBuf::from(spec);
            let key = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("--from-file {spec}: cannot take a key from this path"))?
                .to_string();
            (key, path)
        }
    };
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((key, SecretBytes::from(bytes)))
}

fn detect_format(text: &str) -> Format {
    if text.trim_start().starts_with('{') {
        Format::Json
    } else {
        Format::Yaml
    }
}

/// Reads SealedSecrets from the input.
fn read_sealed(input: Option<&std::path::Path>) -> anyhow::Result<Vec<SealedSecret>> {
    let (text, source_name) = read_input(input)?;
    Ok(parse_documents(&text, &source_name, "SealedSecret")?)
}

/// `unseal` / `--recovery-unseal`: SealedSecrets back into Secrets with private keys.
#[derive(Debug, Clone)]
pub struct UnsealJob {
    pub input: Option<PathBuf>,
    pub private_keys: Vec<PathBuf>,
    pub format: Format,
    pub output: Option<PathBuf>,
}

impl UnsealJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let keyring = load_keyring(&self.private_keys)?;
        let secrets = read_sealed(self.input.as_deref())?
            .iter()
            .map(|sealed| unseal(sealed, &keyring).map(|u| u.secret))
            .collect::<Result<Vec<_>, _>>()?;
        let out = to_document(&secrets, self.format)?;
        write_output(self.output.as_deref(), out.as_bytes(), Sensitivity::Private)
    }
}

/// `reencrypt` / `--re-encrypt`: SealedSecrets re-sealed to a new key: offline to `cert`
/// with the old private keys, or by the controller to its newest key when none is given.
#[derive(Debug, Clone)]
pub struct ReencryptJob {
    pub input: Option<PathBuf>,
    pub private_keys: Vec<PathBuf>,
    pub cert: CertSource,
    pub format: Format,
    pub output: Option<PathBuf>,
}

impl ReencryptJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let resealed = if self.private_keys.is_empty() {
            let sealed = read_sealed(self.input.as_deref())?;
            let controller = self.cert.cluster.connect()?;
            sealed
                .iter()
                .map(|sealed| controller.rotate(sealed))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let keyring = load_keyring(&self.private_keys)?;
            let cert = self.cert.load()?;
            read_sealed(self.input.as_deref())?
                .iter()
                .map(|sealed| sealsync_api::reencrypt(sealed, &keyring, cert.public_key()))
                .collect::<Result<Vec<_>, _>>()?
        };
        let out = to_document(&resealed, self.format)?;
        write_output(self.output.as_deref(), out.as_bytes(), Sensitivity::Public)
    }
}

/// `validate` / `--validate`: do the SealedSecrets open, with these keys or, when none is
/// given, with the controller's?
#[derive(Debug, Clone)]
pub struct ValidateJob {
    pub input: Option<PathBuf>,
    pub private_keys: Vec<PathBuf>,
    pub cluster: ClusterTarget,
    /// Print one line per valid object (kubeseal prints nothing on success).
    pub report: bool,
}

impl ValidateJob {
    pub fn run(&self) -> anyhow::Result<()> {
        if self.private_keys.is_empty() {
            return self.validate_through_controller();
        }
        let keyring = load_keyring(&self.private_keys)?;
        for sealed in read_sealed(self.input.as_deref())? {
            let unsealed = unseal(&sealed, &keyring)?;
            if self.report {
                let keys: std::collections::BTreeSet<_> =
                    unsealed.opened_by.values().map(|f| f.as_str()).collect();
                println!(
                    "{}: valid, {} values open with {}",
                    sealed.object_ref(),
                    unsealed.opened_by.len(),
                    if keys.is_empty() {
                        "no key needed".to_string()
                    } else {
                        keys.into_iter().collect::<Vec<_>>().join(", ")
                    }
                );
            }
        }
        Ok(())
    }

    /// Asks the controller (`/v1/verify`) about each object, stopping at the first it
    /// cannot open.
    fn validate_through_controller(&self) -> anyhow::Result<()> {
        let sealed = read_sealed(self.input.as_deref())?;
        let controller = self.cluster.connect()?;
        for sealed in &sealed {
            controller.verify(sealed)?;
            if self.report {
                println!(
                    "{}: valid, opens with the keys of controller {}",
                    sealed.object_ref(),
                    self.cluster
                );
            }
        }
        Ok(())
    }
}
