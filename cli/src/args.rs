//! The `sealsync` subcommands.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use sealsync_api::Format;
use sealsync_crypto::{
    CertificateParams, DEFAULT_KEY_BITS, MIN_KEY_BITS, PrivateKey, Scope, SealingCertificate,
};

use crate::cluster::{ClusterTarget, KubeconfigChoice};
use crate::clusters::{SealTarget, from_cluster_certs, from_clusters_file};
use crate::files::{Sensitivity, read_certificate, write_atomically, write_output};
use crate::ops::{CertSource, ReencryptJob, SealJob, UnsealJob, ValidateJob};

/// Seal Kubernetes Secrets for Git, and recover, re-encrypt and check SealedSecrets, offline
/// or through the controller.
///
/// Output is compatible with Bitnami Sealed Secrets (bitnami.com/v1alpha1). Invoked as
/// `kubeseal` (for example through a symlink), sealsync accepts kubeseal's flags instead.
#[derive(Debug, Parser)]
#[command(name = "sealsync", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seal Secrets (YAML or JSON, several documents) into SealedSecrets.
    Seal(SealArgs),
    /// Recover Secrets from SealedSecrets with private keys (prints plaintext!).
    Unseal(UnsealArgs),
    /// Re-encrypt SealedSecrets: offline to --cert with the old private keys, or without
    /// them by the controller, to its newest key.
    Reencrypt(ReencryptArgs),
    /// Check that SealedSecrets open, with the given private keys or else by asking the
    /// controller, printing no value.
    Validate(ValidateArgs),
    /// Show a sealing certificate: fingerprint, subject, validity and key size.
    Cert(CertArgs),
    /// Audit a GitOps repository: plaintext Secrets, credential-like values, SealedSecrets
    /// that will not open or use old keys, expiring certificates (see docs/audit.md).
    Audit(AuditArgs),
    /// Generate a private key and its sealing certificate, for offline or bring-your-own-key use.
    Keygen(KeygenArgs),
    /// Print the Secrets a config repository makes (values redacted unless --show-values).
    ///
    /// Reads every YAML file under PATH (or `kustomize build PATH` when PATH has a
    /// kustomization.yaml), from disk or at a Git --revision, opens its SealedSecrets with
    /// --private-key and reads its ExternalSecrets from the stores it declares with your
    /// own credentials (AWS default chain, VAULT_TOKEN or ~/.vault-token), as the
    /// controller would. Nothing is written.
    #[command(after_help = REPO_EXAMPLES)]
    Render(RepoArgs),
    /// Show what `sealsync sync` would change in the local store (or, with --cluster, in a
    /// cluster): Secrets created, updated, pruned, and their keys added, changed or removed
    /// (values as hashes, never plaintext).
    ///
    /// Like `kubectl diff`; nothing is written.
    #[command(after_help = REPO_EXAMPLES)]
    Diff(RepoArgs),
    /// Sync a config repository into the local store: the Secrets its SealedSecrets and
    /// ExternalSecrets make are written (one 0600 manifest per Secret, atomically), and the
    /// Secrets an earlier sync of the same PATH wrote that the repository no longer declares
    /// are pruned. With --cluster, the same into a cluster, with server-side apply.
    ///
    /// Prints a report (-o json for scripts) and exits non-zero when anything failed; the
    /// rest is synced. See docs/sync.md.
    #[command(after_help = REPO_EXAMPLES)]
    Sync(RepoArgs),
    /// The controller's sealing keys, through the API server.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Yaml,
    Json,
}

impl From<OutputFormat> for Format {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Yaml => Format::Yaml,
            OutputFormat::Json => Format::Json,
        }
    }
}

#[derive(Debug, Args)]
struct InputArgs {
    /// Input file; standard input when absent or "-".
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    format: OutputFormat,
    /// Write to FILE (atomically) instead of standard output.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CertArg {
    /// Sealing certificate: a file, file:// or http(s):// URL.
    #[arg(long, env = "SEALED_SECRETS_CERT", value_name = "FILE|URL")]
    cert: Option<String>,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Name of the controller's Service.
    #[arg(long, default_value = "sealed-secrets-controller", value_name = "NAME")]
    controller_name: String,
    /// Namespace of the controller.
    #[arg(long, default_value = "kube-system", value_name = "NAMESPACE")]
    controller_namespace: String,
}

impl ClusterArgs {
    fn target(&self) -> ClusterTarget {
        ClusterTarget {
            kubeconfig: KubeconfigChoice {
                path: self.kubeconfig.clone(),
                context: self.context.clone(),
            },
            controller_name: self.controller_name.clone(),
            controller_namespace: self.controller_namespace.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// Private key: PEM (PKCS#1 or PKCS#8), a key Secret or a backup List, YAML or JSON.
    /// Repeat, or separate with commas.
    #[arg(
        short = 'k',
        long = "private-key",
        value_name = "FILE",
        value_delimiter = ','
    )]
    private_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct SealArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    cert: CertArg,
    /// Scope; default: the Secret's scope annotations, else strict.
    #[arg(long, value_parser = clap::value_parser!(Scope))]
    scope: Option<Scope>,
    /// Namespace of Secrets that name none (default: the kubeconfig context's, else "default").
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Add or replace keys in this SealedSecret file, in place.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["raw", "write"])]
    merge_into: Option<PathBuf>,
    /// Seal one value (standard input or --from-file) and print its base64 ciphertext.
    #[arg(long)]
    raw: bool,
    /// Name for --raw with strict scope, or of a Secret built with --from-file.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Value from a file, as [key=]path; repeatable to build a Secret without input.
    #[arg(long = "from-file", value_name = "[KEY=]PATH")]
    from_files: Vec<String>,
    /// Seal Secrets that have no data.
    #[arg(long)]
    allow_empty_data: bool,
    /// Seal once per cluster, as a YAML file lists them (name, cert file or URL or a
    /// kubeconfig context, overlay folder); -w names the file written in each overlay.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["raw", "merge_into", "cluster_certs"])]
    clusters: Option<PathBuf>,
    /// Seal for cluster NAME with its certificate; repeatable; -w holds {cluster}, e.g.
    /// -w overlays/{cluster}/db.yaml.
    #[arg(long = "cluster-cert", value_name = "NAME=FILE|URL", conflicts_with_all = ["raw", "merge_into"])]
    cluster_certs: Vec<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
struct UnsealArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct ReencryptArgs {
    /// Re-encrypt every SealedSecret in the YAML files under PATH, in place: only the
    /// encryptedData values change; prints a summary (-o json for scripts).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["file", "write"])]
    all: Option<PathBuf>,
    /// With --all: report what would be re-encrypted, write nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    cert: CertArg,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
struct CertArgs {
    #[command(flatten)]
    cert: CertArg,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    format: CertFormat,
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Files or directories to audit (default: the current directory).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Report format (SARIF 2.1.0 for code-scanning tools).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    format: crate::audit::ReportFormat,
    /// Write the report to FILE (atomically) instead of standard output.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Exit non-zero when a finding has this severity or a higher one.
    #[arg(long, value_enum, default_value = "warning")]
    fail_on: crate::audit::Severity,
    #[command(flatten)]
    keys: KeyArgs,
    /// Without --private-key: check that SealedSecrets open through the controller's
    /// /v1/verify (about two a second: its rate limit).
    #[arg(long)]
    controller: bool,
    /// A sealing certificate to check for expiry (PEM files in the tree are checked too);
    /// repeatable.
    #[arg(long = "cert", value_name = "FILE|URL")]
    certs: Vec<String>,
    /// Report SealedSecrets sealed with a key older than this, e.g. 180days (needs
    /// --private-key files with their certificates, or --cert).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    max_key_age: Option<std::time::Duration>,
    /// Warn about certificates that expire within this.
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration, value_name = "DURATION")]
    cert_expiry_warning: std::time::Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
}

const REPO_EXAMPLES: &str = "Examples:
  sealsync render overlays/prod -k key.pem              # kustomize build, then open
  sealsync diff . -k backup.yaml --out /tmp/store        # what a sync would change
  sealsync sync . --revision main -k key.pem -o json    # committed files at main
  sealsync diff overlays/dev -k key.pem --cluster       # against the current context's cluster
  sealsync sync overlays/dev --cluster                  # the cluster's controller opens them
  sealsync sync overlays/dev -k key.pem --cluster --namespaces shop-dev --source-id shop-config";

#[derive(Debug, Args)]
struct RepoArgs {
    /// The repository folder, or a folder (e.g. an overlay) inside it.
    #[arg(value_name = "PATH", default_value = ".")]
    path: PathBuf,
    /// Read PATH from the Git repository it is in, as committed at this revision (a
    /// commit, branch or tag), instead of the files on disk.
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    /// Same as --revision HEAD: the committed files, not the working tree's.
    #[arg(long, conflicts_with = "revision")]
    git: bool,
    #[command(flatten)]
    keys: KeyArgs,
    /// Namespace of objects that name none (like Argo CD's destination namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// The local store: a folder of Secret manifests (default:
    /// $XDG_DATA_HOME/sealsync/store, else ~/.local/share/sealsync/store).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Diff against, or sync into, the cluster of the kubeconfig context instead of the
    /// local store: Secrets written with server-side apply through the controller's apply
    /// path, and pruned only where an earlier sync of the same source wrote them. Without
    /// --private-key, the SealedSecrets themselves are applied and the cluster's controller
    /// opens them.
    #[arg(long, conflicts_with = "out")]
    cluster: bool,
    /// What identifies this source across runs and machines (diff, sync): a sync prunes,
    /// overwrites or merges into only what a sync of the same source wrote. Default: the
    /// Git remote `origin` and the path in the repository, else the folder's path.
    #[arg(long, value_name = "ID")]
    source_id: Option<String>,
    /// Namespaces the sync may write and prune in, comma-separated (diff, sync; default:
    /// all): a Secret declared for another namespace is refused.
    #[arg(long, value_name = "NS,...", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Kubeconfig file, with --cluster (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context, with --cluster (default: the current context).
    #[arg(long, value_name = "NAME", requires = "cluster")]
    context: Option<String>,
    /// With --cluster and no --private-key: how long to wait for the cluster's sealing
    /// controller to open the SealedSecrets applied.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration, value_name = "DURATION", requires = "cluster")]
    timeout: std::time::Duration,
    /// Print Secret values (render only; base64, as in a Secret manifest).
    #[arg(long)]
    show_values: bool,
    /// Output format: render prints YAML documents or a JSON List; diff and sync a report.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    format: RepoFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RepoFormat {
    /// YAML manifests (render) or a readable report (diff, sync).
    Text,
    Json,
}

impl RepoArgs {
    fn job(self, mode: crate::repo::Mode) -> anyhow::Result<crate::repo::RepoJob> {
        if self.show_values && mode != crate::repo::Mode::Render {
            bail!("--show-values goes with render: diff and sync never print values");
        }
        if mode == crate::repo::Mode::Render
            && (self.cluster || self.source_id.is_some() || !self.namespaces.is_empty())
        {
            bail!(
                "--cluster, --source-id and --namespaces go with diff and sync: render writes \
                 nowhere"
            );
        }
        if self
            .source_id
            .as_ref()
            .is_some_and(|id| id.trim().is_empty())
        {
            bail!("--source-id is empty: name the source, or leave the flag out");
        }
        if let Some(bad) = self
            .namespaces
            .iter()
            .find(|ns| !sealsync_engine::target::is_dns_label(ns))
        {
            bail!("--namespaces: {bad:?} is not a namespace name");
        }
        Ok(crate::repo::RepoJob {
            mode,
            revision: self.revision.or(self.git.then(|| "HEAD".into())),
            path: self.path,
            namespace: self.namespace,
            private_keys: self.keys.private_keys,
            out: self.out,
            cluster: self.cluster.then_some(KubeconfigChoice {
                path: self.kubeconfig,
                context: self.context,
            }),
            source_id: self.source_id,
            namespaces: (!self.namespaces.is_empty())
                .then(|| self.namespaces.into_iter().collect()),
            timeout: self.timeout,
            show_values: self.show_values,
            json: matches!(self.format, RepoFormat::Json),
        })
    }
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Every key: fingerprint, status (active, sealing, retired), creation, expiry and how
    /// many SealedSecrets last opened with it (from the controller's /v1/keys and their
    /// status; no key material leaves the cluster).
    List(KeysListArgs),
    /// Ask the controller for a new sealing key now: annotates the newest key Secret (needs
    /// `patch` on Secrets in the controller's namespace); the controller makes the key.
    Rotate(KeysRotateArgs),
    /// Retire a key no SealedSecret depends on: relabelled `retired`, the controller no
    /// longer opens or seals with it. Refused, naming them, while SealedSecrets depend on it.
    Retire(KeysRetireArgs),
    /// Export the key Secrets to a file encrypted with age, to a passphrase (prompt,
    /// $SEALSYNC_KEYS_PASSPHRASE or --passphrase-file) or to --recipient keys. Mode 0600.
    Backup(KeysBackupArgs),
    /// Create the key Secrets of a backup in the controller's namespace; the controller
    /// loads them at once and makes no new key for their age.
    Restore(KeysRestoreArgs),
}

#[derive(Debug, Args)]
struct KeysRotateArgs {
    /// How long to wait for the new key (0: do not wait).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    wait: std::time::Duration,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
struct KeysRetireArgs {
    /// The key's fingerprint, as `sealsync keys list` prints it (SHA256:...).
    fingerprint: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
struct KeysBackupArgs {
    /// The backup file to write (age format).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Encrypt to this age recipient (age1...) instead of a passphrase. Repeatable.
    #[arg(long = "recipient", short = 'r', value_name = "AGE_RECIPIENT")]
    recipients: Vec<String>,
    /// Read the passphrase from this file (first line) instead of $SEALSYNC_KEYS_PASSPHRASE
    /// or the terminal.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
struct KeysRestoreArgs {
    /// The backup file (age format), as `keys backup` writes it.
    input: PathBuf,
    /// age identity file (AGE-SECRET-KEY-1...) for a backup made with --recipient. Repeatable.
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    identities: Vec<PathBuf>,
    /// Read the passphrase from this file (first line) instead of $SEALSYNC_KEYS_PASSPHRASE
    /// or the terminal.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Args)]
struct KeysListArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    format: CertFormat,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CertFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Where to write the private key (PKCS#1 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    key_out: PathBuf,
    /// Where to write the certificate (PEM).
    #[arg(long, value_name = "FILE")]
    cert_out: PathBuf,
    /// RSA key size in bits.
    #[arg(long, default_value_t = DEFAULT_KEY_BITS, value_parser = clap::value_parser!(u16).range(MIN_KEY_BITS as i64..=16384).map(usize::from))]
    bits: usize,
    /// Certificate subject common name (upstream's --my-cn).
    #[arg(long, default_value = "", value_name = "CN")]
    common_name: String,
    /// Certificate validity, e.g. 87600h or 3650days (upstream's --key-ttl).
    #[arg(long, default_value = "87600h", value_parser = humantime::parse_duration)]
    validity: std::time::Duration,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Seal(args) => SealJob {
                clusters: seal_targets(&args)?,
                input: args.input.file,
                cert: CertSource {
                    cert: args.cert.cert,
                    cluster: args.cluster.target(),
                },
                scope: args.scope,
                format: args.output.format.into(),
                output: args.output.write,
                merge_into: args.merge_into,
                raw: args.raw,
                name: args.name,
                namespace: args.namespace,
                from_files: args.from_files,
                allow_empty_data: args.allow_empty_data,
            }
            .run(),
            Command::Unseal(args) => {
                if args.keys.private_keys.is_empty() {
                    bail!(
                        "no private key given: pass --private-key FILE (PEM, key Secret or \
                         backup List)"
                    );
                }
                UnsealJob {
                    input: args.input.file,
                    private_keys: args.keys.private_keys,
                    format: args.output.format.into(),
                    output: args.output.write,
                }
                .run()
            }
            Command::Reencrypt(args) => {
                if args.keys.private_keys.is_empty() && args.cert.cert.is_some() {
                    // Without old keys the controller re-encrypts to its own newest key: a
                    // silently ignored --cert would leave the output sealed to another key
                    // than the one asked for.
                    bail!(
                        "--cert (or SEALED_SECRETS_CERT) needs --private-key: without the old \
                         keys the controller re-encrypts to its own newest key; add \
                         --private-key, or drop --cert"
                    );
                }
                if args.dry_run && args.all.is_none() {
                    bail!("--dry-run goes with --all PATH: add --all, or drop --dry-run");
                }
                if let Some(root) = args.all {
                    return crate::reencrypt_all::ReencryptAllJob {
                        root,
                        private_keys: args.keys.private_keys,
                        cert: CertSource {
                            cert: args.cert.cert,
                            cluster: args.cluster.target(),
                        },
                        json: matches!(args.output.format, OutputFormat::Json),
                        dry_run: args.dry_run,
                    }
                    .run();
                }
                ReencryptJob {
                    input: args.input.file,
                    private_keys: args.keys.private_keys,
                    cert: CertSource {
                        cert: args.cert.cert,
                        cluster: args.cluster.target(),
                    },
                    format: args.output.format.into(),
                    output: args.output.write,
                }
                .run()
            }
            Command::Validate(args) => ValidateJob {
                input: args.input.file,
                private_keys: args.keys.private_keys,
                cluster: args.cluster.target(),
                report: true,
            }
            .run(),
            Command::Cert(args) => show_certificate(args),
            Command::Audit(args) => crate::audit::AuditJob {
                paths: args.paths,
                private_keys: args.keys.private_keys,
                controller: args.controller.then(|| args.cluster.target()),
                certs: args.certs,
                max_key_age: args.max_key_age,
                cert_expiry_warning: args.cert_expiry_warning,
                format: args.format,
                fail_on: args.fail_on,
                output: args.write,
            }
            .run(),
            Command::Keygen(args) => keygen(args),
            Command::Render(args) => args.job(crate::repo::Mode::Render)?.run(),
            Command::Diff(args) => args.job(crate::repo::Mode::Diff)?.run(),
            Command::Sync(args) => args.job(crate::repo::Mode::Sync)?.run(),
            Command::Keys { command } => run_keys(command),
            Command::Completion { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "sealsync",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
        }
    }
}

fn run_keys(command: KeysCommand) -> anyhow::Result<()> {
    use crate::key_backup::{BackupKey, KeysBackupJob, KeysRestoreJob};
    use crate::keys::{KeysListJob, KeysRetireJob, KeysRotateJob};
    match command {
        KeysCommand::List(args) => KeysListJob {
            cluster: args.cluster.target(),
            json: matches!(args.format, CertFormat::Json),
        }
        .run(),
        KeysCommand::Rotate(args) => KeysRotateJob {
            cluster: args.cluster.target(),
            wait: args.wait,
        }
        .run(),
        KeysCommand::Retire(args) => KeysRetireJob {
            cluster: args.cluster.target(),
            fingerprint: args.fingerprint,
        }
        .run(),
        KeysCommand::Backup(args) => KeysBackupJob {
            cluster: args.cluster.target(),
            output: args.output,
            key: BackupKey {
                recipients: args.recipients,
                identities: Vec::new(),
                passphrase_file: args.passphrase_file,
            },
            force: args.force,
        }
        .run(),
        KeysCommand::Restore(args) => KeysRestoreJob {
            cluster: args.cluster.target(),
            input: args.input,
            key: BackupKey {
                recipients: Vec::new(),
                identities: args.identities,
                passphrase_file: args.passphrase_file,
            },
        }
        .run(),
    }
}

/// The clusters of `--clusters` or `--cluster-cert`, none without them.
fn seal_targets(args: &SealArgs) -> anyhow::Result<Vec<SealTarget>> {
    let flag = match (&args.clusters, args.cluster_certs.is_empty()) {
        (None, true) => return Ok(Vec::new()),
        (Some(_), _) => "--clusters",
        (None, false) => "--cluster-cert",
    };
    // SEALED_SECRETS_CERT may be set for everyday sealing; an explicit --cert is a mistake.
    if args.cert.cert.is_some() && std::env::var_os("SEALED_SECRETS_CERT").is_none() {
        bail!("{flag} gives each cluster its certificate: drop --cert");
    }
    let output = args
        .output
        .write
        .as_ref()
        .with_context(|| format!("{flag} needs -w FILE: the file written for each cluster"))?
        .to_str()
        .context("-w: the path is not UTF-8")?;
    match &args.clusters {
        Some(file) => from_clusters_file(file, output, &args.cluster.target()),
        None => from_cluster_certs(&args.cluster_certs, output),
    }
}

fn show_certificate(args: CertArgs) -> anyhow::Result<()> {
    let location = args
        .cert
        .cert
        .context("no certificate given: pass --cert FILE|URL or set SEALED_SECRETS_CERT")?;
    let cert = read_certificate(&location)?;
    let expired = cert.ensure_current().is_err();
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    let info = serde_json::json!({
        "fingerprint": cert.public_key().fingerprint().as_str(),
        "subject": cert.subject(),
        "serial": cert.serial(),
        "notBefore": rfc3339(cert.not_before()),
        "notAfter": rfc3339(cert.not_after()),
        "keyBits": cert.public_key().bits(),
        "expired": expired,
    });
    let text = match args.format {
        CertFormat::Json => serde_json::to_string_pretty(&info)? + "\n",
        CertFormat::Text => format!(
            "Fingerprint: {}\nSubject:     {}\nSerial:      {}\nNot before:  {}\nNot after:   {}{}\nKey:         RSA {} bits\n",
            cert.public_key().fingerprint(),
            if cert.subject().is_empty() {
                "(empty)"
            } else {
                cert.subject()
            },
            cert.serial(),
            rfc3339(cert.not_before()),
            rfc3339(cert.not_after()),
            if expired { " (EXPIRED)" } else { "" },
            cert.public_key().bits(),
        ),
    };
    write_output(None, text.as_bytes(), Sensitivity::Public)
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    for path in [&args.key_out, &args.cert_out] {
        if path.exists() && !args.force {
            bail!(
                "{} already exists: pass --force to overwrite it",
                path.display()
            );
        }
    }
    eprintln!("Generating a {}-bit RSA key...", args.bits);
    let key = PrivateKey::generate(args.bits)?;
    let params = CertificateParams {
        common_name: args.common_name,
        validity: args.validity,
    };
    let cert = SealingCertificate::generate(&key, &params)?;
    write_atomically(
        &args.key_out,
        key.to_pkcs1_pem().as_bytes(),
        Sensitivity::Private,
    )?;
    write_atomically(&args.cert_out, cert.pem().as_bytes(), Sensitivity::Public)?;
    eprintln!(
        "Wrote {} and {} ({})",
        args.key_out.display(),
        args.cert_out.display(),
        key.fingerprint()
    );
    Ok(())
}
