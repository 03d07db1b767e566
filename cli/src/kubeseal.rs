//! kubeseal's flat flag set, for drop-in use as `kubeseal` (a symlink to sealsync).

use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use sealsync_api::{ApiError, Format};
use sealsync_crypto::Scope;

use crate::cluster::{ClusterTarget, KubeconfigChoice};
use crate::files::{Sensitivity, write_output};
use crate::ops::{CertSource, ReencryptJob, SealJob, UnsealJob, ValidateJob};

/// kubeseal-compatible interface of sealsync: reads a Secret from standard input (or -f)
/// and writes a SealedSecret, with kubeseal's flags and defaults.
///
/// A repeated flag takes its last value, as Go's flag parsing does (scripts and kubeseal's
/// own test suite repeat `--kubeconfig` or `-n`); `--version` prints what kubeseal prints.
#[derive(Debug, Parser)]
#[command(
    name = "kubeseal",
    version = concat!("version: v", env!("CARGO_PKG_VERSION")),
    args_override_self = true
)]
pub struct Kubeseal {
    /// Certificate / public key file or URL to use for encryption.
    #[arg(long, env = "SEALED_SECRETS_CERT", value_name = "FILE|URL")]
    cert: Option<String>,
    /// Output format for the sealed secret (a .yaml or .yml output file is always YAML).
    #[arg(short = 'o', long = "format", value_enum, default_value = "json")]
    format: KubesealFormat,
    /// Secret file to seal (default: standard input).
    #[arg(short = 'f', long = "secret-file", value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Sealed secret file to write (default: standard output; with --re-encrypt, the -f
    /// file, in place).
    #[arg(short = 'w', long = "sealed-secret-file", value_name = "FILE")]
    sealed_secret_file: Option<PathBuf>,
    /// Scope: strict, namespace-wide or cluster-wide (default: the Secret's annotations).
    #[arg(long, value_parser = clap::value_parser!(Scope))]
    scope: Option<Scope>,
    /// Encrypt a raw value passed via --from-file or standard input.
    #[arg(long)]
    raw: bool,
    /// Name of the sealed secret (with --raw).
    #[arg(long)]
    name: Option<String>,
    /// Namespace scope for this request.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// File holding the raw value, as [key=]path (with --raw).
    #[arg(long = "from-file")]
    from_file: Vec<String>,
    /// Merge items from the input Secret into this existing SealedSecret file, in place.
    #[arg(long, value_name = "FILE")]
    merge_into: Option<PathBuf>,
    /// Allow empty data in the Secret.
    #[arg(long)]
    allow_empty_data: bool,
    /// Decrypt a SealedSecret with the private keys (--recovery-private-key).
    #[arg(long)]
    recovery_unseal: bool,
    /// Private key file(s) for --recovery-unseal, and to --re-encrypt and --validate offline
    /// (without them, the controller does); repeatable or comma-separated.
    #[arg(long = "recovery-private-key", value_delimiter = ',')]
    recovery_private_key: Vec<PathBuf>,
    /// Re-encrypt the given SealedSecret to the newest key.
    #[arg(long = "re-encrypt", alias = "rotate")]
    re_encrypt: bool,
    /// Validate the given SealedSecret.
    #[arg(long)]
    validate: bool,
    /// Write the certificate the controller seals to on standard output.
    #[arg(long)]
    fetch_cert: bool,
    /// Name of the sealed-secrets controller.
    #[arg(long, default_value = "sealed-secrets-controller")]
    controller_name: String,
    /// Namespace of the sealed-secrets controller.
    #[arg(long, default_value = "kube-system")]
    controller_namespace: String,
    /// Path to the kubeconfig file.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long)]
    context: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KubesealFormat {
    Json,
    Yaml,
}

impl Kubeseal {
    pub fn run(self) -> anyhow::Result<()> {
        let cluster = ClusterTarget {
            kubeconfig: KubeconfigChoice {
                path: self.kubeconfig.clone(),
                context: self.context.clone(),
            },
            controller_name: self.controller_name.clone(),
            controller_namespace: self.controller_namespace.clone(),
        };
        // kubeseal re-encrypts a file given with -f in place unless -w says otherwise (#405),
        // and writes YAML into any .yaml/.yml file whatever -o says.
        let output = match (&self.sealed_secret_file, &self.secret_file) {
            (None, Some(input)) if self.re_encrypt && input.as_os_str() != "-" => {
                Some(input.clone())
            }
            (output, _) => output.clone(),
        };
        let yaml_file = output
            .as_deref()
            .and_then(Path::extension)
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        let format = match self.format {
            _ if yaml_file => Format::Yaml,
            KubesealFormat::Json => Format::Json,
            KubesealFormat::Yaml => Format::Yaml,
        };
        let cert = CertSource {
            cert: self.cert.clone(),
            cluster: cluster.clone(),
        };
        if self.fetch_cert {
            let cert = cert.load()?;
            return write_output(
                output.as_deref(),
                cert.pem().as_bytes(),
                Sensitivity::Public,
            );
        }
        if self.recovery_unseal {
            let no_keys = self.recovery_private_key.is_empty();
            return UnsealJob {
                input: self.secret_file,
                private_keys: self.recovery_private_key,
                format,
                output,
            }
            .run()
            .map_err(|error| upstream_unseal_error(error, no_keys));
        }
        if self.re_encrypt {
            return ReencryptJob {
                input: self.secret_file,
                private_keys: self.recovery_private_key,
                cert,
                format,
                output,
            }
            .run();
        }
        if self.validate {
            return ValidateJob {
                input: self.secret_file,
                private_keys: self.recovery_private_key,
                cluster,
                report: false,
            }
            .run();
        }
        SealJob {
            input: self.secret_file,
            cert,
            scope: self.scope,
            format,
            output,
            merge_into: self.merge_into,
            raw: self.raw,
            name: self.name,
            namespace: self.namespace,
            from_files: self.from_file,
            allow_empty_data: self.allow_empty_data,
            clusters: Vec::new(),
        }
        .run()
    }
}

/// kubeseal words a value that no key opens `no key could decrypt secret (<key>)`, and
/// scripts look for it; sealsync's own reason follows, or what to do when no key was given.
fn upstream_unseal_error(error: anyhow::Error, no_keys: bool) -> anyhow::Error {
    let Some(ApiError::Unseal { key, .. }) = error.downcast_ref::<ApiError>() else {
        return error;
    };
    let upstream = format!("no key could decrypt secret ({key})");
    if no_keys {
        anyhow::anyhow!("{upstream}: no key given, pass --recovery-private-key FILE")
    } else {
        error.context(upstream)
    }
}
