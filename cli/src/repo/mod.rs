//! `sealsync render`, `diff` and `sync`: the controller's SealedSecret and ExternalSecret
//! generators and the sync engine run on a config repository (a folder, or a Git
//! revision), with the embedded local store as the target (docs/sync.md).

mod cluster_store;
mod manifests;
mod memory;
mod report;
mod source;
mod store;
mod through_controller;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::ProgressBar;
use kube::Resource;
use sealsync_api::SealedSecret;
use sealsync_controller::{MANAGED, PATCH, SealedSecretGenerator, UnsealOptions};
use sealsync_crypto::SecretBytes;
use sealsync_engine::policy::Consent;
use sealsync_engine::target::{LocalDirTarget, SecretTarget};
use sealsync_engine::{Desired, Generator, Outcome, SecretRef, Syncer};
use sealsync_external::lookups::{Local, Lookups, VaultLogin};
use sealsync_external::stores::Stores;
use sealsync_external::{EsoMetrics, ExternalSecretGenerator};
use zeroize::Zeroizing;

use crate::cluster::KubeconfigChoice;
use crate::files::{Sensitivity, load_keyring, write_output};
use crate::reencrypt_all::{count, progress_bar};
use cluster_store::ClusterStore;
use manifests::{Declared, Problem, Repository};
use memory::Memory;
use report::{Action, Metadata, Report, Row};
use source::Checkout;
use store::{KeyChanges, Observable, ObservedStore, SYNC_SOURCE_ANNOTATION, field_manager_base};
use through_controller::ThroughController;

/// What a repository command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Print the Secrets the repository makes.
    Render,
    /// Show what a sync would change in the store.
    Diff,
    /// Write the store, prune what the repository no longer declares.
    Sync,
}

/// One run of `sealsync render|diff|sync`.
#[derive(Debug, Clone)]
pub struct RepoJob {
    pub mode: Mode,
    pub path: PathBuf,
    /// Read the path at this Git revision instead of as it is on disk.
    pub revision: Option<String>,
    /// Namespace of SealedSecrets that name none.
    pub namespace: Option<String>,
    pub private_keys: Vec<PathBuf>,
    /// The local store; `None`: [`default_store`].
    pub out: Option<PathBuf>,
    /// Sync into (diff against) this kubeconfig's cluster instead of the local store.
    pub cluster: Option<KubeconfigChoice>,
    /// What identifies the source across runs; `None`: [`Checkout::identity`].
    pub source_id: Option<String>,
    /// The namespaces a sync may write and prune in; `None`: all.
    pub namespaces: Option<BTreeSet<String>>,
    /// With `cluster` and no `private_keys`: how long to wait for the cluster's controller
    /// to open the SealedSecrets applied.
    pub timeout: std::time::Duration,
    pub show_values: bool,
    pub json: bool,
}

/// The embedded local store: `$XDG_DATA_HOME/sealsync/store` (or under `~/.local/share`),
/// outside any repository, so that its plaintext is never committed by mistake.
pub fn default_store() -> anyhow::Result<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/share")))
        .context("no HOME or XDG_DATA_HOME: pass --out DIR")?;
    Ok(data.join("sealsync/store"))
}

/// The controller's two generators, as a repository command runs them.
struct Generators {
    sealed: Arc<SealedSecretGenerator>,
    external: Arc<ExternalSecretGenerator>,
    /// Fingerprints of the private keys given.
    keys: BTreeSet<String>,
}

impl Generators {
    /// SealedSecrets open with `private_keys`; ExternalSecrets read the repository's stores
    /// with the user's credentials ([`Lookups::Local`]).
    fn new(private_keys: &[PathBuf], repository: &mut Repository) -> anyhow::Result<Self> {
        let keyring = load_keyring(private_keys)?;
        let keys = keyring
            .keys()
            .iter()
            .map(|key| key.fingerprint().to_string())
            .collect();
        let sealed = SealedSecretGenerator::with_keyring(
            keyring,
            UnsealOptions {
                accept_deprecated_data: true,
                update_status: false,
                recreate_deleted: true,
            },
        );
        // Read only when needed: an unreadable VAULT_CACERT fails no run without Vault.
        let vault = if repository
            .stores
            .iter()
            .any(|s| s.spec.provider.vault.is_some())
        {
            vault_login()?
        } else {
            VaultLogin::default()
        };
        let stores = Stores::default();
        for store in std::mem::take(&mut repository.stores) {
            stores.put(store);
        }
        let lookups = Lookups::Local(Arc::new(Local::new(
            std::mem::take(&mut repository.config_maps),
            std::mem::take(&mut repository.namespaces),
            vault,
        )));
        let external = ExternalSecretGenerator::new(
            lookups,
            Arc::new(stores),
            Arc::default(),
            EsoMetrics::default(),
        );
        Ok(Self {
            sealed: Arc::new(sealed),
            external: Arc::new(external),
            keys,
        })
    }
}

impl RepoJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let checkout = match &self.revision {
            Some(revision) => Checkout::git(&self.path, revision)?,
            None => Checkout::directory(&self.path)?,
        };
        let mut repository = manifests::read(&checkout, self.namespace.as_deref());
        if self.private_keys.is_empty() && self.cluster.is_none() {
            // Still declared (never pruned); the ExternalSecrets go on.
            for source in std::mem::take(&mut repository.sealed) {
                repository.problems.push(Problem {
                    file: source.file,
                    line: Some(source.line),
                    message: format!(
                        "SealedSecret {} not opened: no private key; pass --private-key FILE \
                         (PEM, key Secret or backup List) with the keys it was sealed with, \
                         or sync with --cluster for the cluster's controller to open it",
                        source.target
                    ),
                });
            }
        }
        let generators = Generators::new(&self.private_keys, &mut repository)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        match self.mode {
            Mode::Render => runtime.block_on(self.render(&generators, &repository)),
            Mode::Diff | Mode::Sync => {
                runtime.block_on(self.sync(&generators, &repository, &checkout))
            }
        }
    }

    /// Prints the Secrets (values redacted unless `--show-values`); what fails goes to
    /// standard error.
    async fn render(&self, generators: &Generators, repository: &Repository) -> anyhow::Result<()> {
        let progress = &progress_bar(repository.sources(), "Secrets");
        let sealed = generate_all(&*generators.sealed, &repository.sealed, progress).await;
        let external = generate_all(&*generators.external, &repository.external, progress).await;
        progress.finish_and_clear();
        let mut rendered: Vec<_> = sealed
            .into_iter()
            .map(|generated| (generated, Metadata::Plain))
            .chain(
                external
                    .into_iter()
                    .map(|generated| (generated, Metadata::FromValues)),
            )
            .collect();
        rendered.sort_by(|(a, _), (b, _)| match (a, b) {
            (Ok((a, _)), Ok((b, _))) => a.cmp(b),
            _ => a.is_ok().cmp(&b.is_ok()),
        });
        let mut secrets = Vec::new();
        let mut failures = Vec::new();
        for (generated, metadata) in rendered {
            match generated {
                Ok((target, Desired::Secret(secret))) => secrets.push(report::secret_manifest(
                    target,
                    &secret,
                    metadata,
                    self.show_values,
                )),
                Ok((_, Desired::Absent)) => {}
                Err(problem) => failures.push(problem),
            }
        }
        let text = report::manifests(&secrets, self.json)?;
        write_output(None, text.as_bytes(), self.sensitivity())?;
        for skipped in &repository.skipped {
            eprintln!("Not rendered: {skipped}");
        }
        let problems = repository.problems.iter().chain(&failures);
        for problem in problems.clone() {
            eprintln!("{problem}");
        }
        let failed = problems.count();
        if failed > 0 {
            bail!(
                "{} (listed above); the other Secrets were rendered",
                count(failed, "problem", "problems")
            );
        }
        Ok(())
    }

    /// Diff or sync into the local store (a diff into a scratch copy of it) or, with
    /// `--cluster`, into the cluster (a diff writes nothing there).
    async fn sync(
        &self,
        generators: &Generators,
        repository: &Repository,
        checkout: &Checkout,
    ) -> anyhow::Result<()> {
        if let Some(kubeconfig) = &self.cluster {
            let (client, url) = kubeconfig.connect().await?;
            // What the guard reads: the sealed generator's consent, and whose sync it was.
            let annotations = [MANAGED, PATCH, SYNC_SOURCE_ANNOTATION].map(String::from);
            let diff = self.mode == Mode::Diff;
            // Without keys, the cluster's controller opens the SealedSecrets.
            let opening = if self.private_keys.is_empty() {
                let source = self.source(checkout);
                Opening::Controller(ThroughController::new(
                    client.clone(),
                    source,
                    &field_manager_base(source),
                    self.namespaces.clone(),
                    diff,
                    self.timeout,
                ))
            } else {
                Opening::Keys(None)
            };
            let store = ClusterStore::new(client, annotations, diff);
            return self
                .sync_into(
                    generators,
                    repository,
                    checkout,
                    store,
                    url.to_string(),
                    opening,
                )
                .await;
        }
        let out = match &self.out {
            Some(out) => out.clone(),
            None => default_store()?,
        };
        if self.mode == Mode::Sync && !out.exists() {
            // Only its owner may list the store, whose files hold plaintext.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&out)
                .with_context(|| format!("cannot create the store {}", out.display()))?;
        }
        let real = LocalDirTarget::new(&out);
        let scratch = match self.mode {
            Mode::Diff => Some(scratch_copy(&real)?),
            _ => None,
        };
        let root = scratch.as_ref().map_or(out.as_path(), |dir| dir.path());
        let store = LocalDirTarget::new(root);
        let memory = Memory::load(&out, self.source(checkout));
        self.sync_into(
            generators,
            repository,
            checkout,
            store,
            out.display().to_string(),
            Opening::Keys(Some(memory)),
        )
        .await
    }

    /// What identifies the source across runs: `--source-id`, else the checkout's identity.
    fn source<'a>(&'a self, checkout: &'a Checkout) -> &'a str {
        self.source_id.as_ref().unwrap_or(&checkout.identity)
    }

    /// Syncs the repository's sources into `target` (`name` in the report), prunes, and
    /// reports; the SealedSecrets are opened as `opening` says.
    async fn sync_into<T: Observable>(
        &self,
        generators: &Generators,
        repository: &Repository,
        checkout: &Checkout,
        target: T,
        name: String,
        opening: Opening,
    ) -> anyhow::Result<()> {
        let source = self.source(checkout);
        let store = Arc::new(ObservedStore::new(
            target,
            source,
            self.namespaces.clone(),
            PATCH,
        ));
        let sealed = Syncer::new(
            generators.sealed.clone(),
            store.clone(),
            store.manager_base(),
            Consent {
                adopt: Some(MANAGED.into()),
                merge: Some(PATCH.into()),
            },
        );
        let external = Syncer::new(
            generators.external.clone(),
            store.clone(),
            store.manager_base(),
            Consent::default(),
        );
        let progress = &progress_bar(repository.sources(), "Secrets");
        let (mut rows, remembered) = match &opening {
            Opening::Controller(controller) => (
                controller.sync(&repository.sealed, progress).await,
                BTreeMap::new(),
            ),
            Opening::Keys(memory) => {
                let memory = memory.as_ref().map(|memory| (memory, &generators.keys));
                sync_sealed(&sealed, memory, &repository.sealed, progress).await
            }
        };
        rows.extend(sync_all(&external, &repository.external, progress).await);
        progress.finish_and_clear();
        let mut problems = repository.problems.clone();
        let mut pruned = !repository.incomplete;
        if pruned {
            let declared: BTreeSet<_> = repository.declared.iter().collect();
            let mut failed = |what: &str, e: anyhow::Error| {
                problems.push(Problem {
                    file: name.clone(),
                    line: None,
                    message: format!("{what}: {e}"),
                });
                pruned = false;
            };
            match self.prune(&store, &declared).await {
                Ok(done) => rows.extend(done),
                Err(e) => failed("Secrets not pruned", e),
            }
            if let Opening::Controller(controller) = &opening {
                match controller
                    .prune(&declared, !repository.sealed.is_empty())
                    .await
                {
                    Ok(done) => rows.extend(done),
                    Err(e) => failed("SealedSecrets not pruned", e),
                }
            }
        }
        if let (Opening::Keys(Some(memory)), Mode::Sync) = (opening, self.mode)
            && let Err(e) = memory.save(remembered)
        {
            // Only a shortcut: the next sync opens everything again.
            eprintln!("warning: {e:#}");
        }
        rows.sort_by(|a, b| a.secret.cmp(&b.secret));
        let report = Report {
            command: if self.mode == Mode::Diff {
                "diff"
            } else {
                "sync"
            },
            source: checkout.display(&self.path.display().to_string()),
            revision: self.revision.clone(),
            store: name,
            secrets: rows,
            problems,
            skipped: repository.skipped.clone(),
            files: repository.files,
            documents: repository.documents,
            pruned,
        };
        let text = if self.json {
            serde_json::to_string_pretty(&report)? + "\n"
        } else {
            report.text()
        };
        write_output(None, text.as_bytes(), Sensitivity::Public)?;
        let failed = report.failures();
        if failed > 0 {
            bail!(
                "{} (listed above){}",
                count(failed, "failure", "failures"),
                if self.mode == Mode::Sync {
                    "; the other Secrets were synced"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    /// Deletes the Secrets of the store that this source's syncs wrote and the repository
    /// no longer declares: a row for each, failed ones too (the others are still pruned).
    async fn prune<T: Observable>(
        &self,
        store: &ObservedStore<T>,
        declared: &BTreeSet<&SecretRef>,
    ) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();
        for secret in store
            .store
            .prune_candidates(store.namespaces.as_ref())
            .await?
        {
            if declared.contains(&secret) {
                continue;
            }
            let pruned = async {
                match store.existing(&secret).await? {
                    Some(existing) if store.is_own(&existing) => {
                        let version = existing.resource_version.unwrap_or_default();
                        store.delete(&secret, &version).await
                    }
                    _ => Ok(()),
                }
            };
            match pruned.await {
                Ok(()) => rows.extend(
                    store
                        .change(&secret)
                        .map(|change| Row::new(&secret, Action::Pruned, None, Some(change.keys))),
                ),
                Err(e) => rows.push(Row::failed(&secret, format!("not pruned: {e}"))),
            }
        }
        Ok(rows)
    }

    fn sensitivity(&self) -> Sensitivity {
        if self.show_values {
            Sensitivity::Private
        } else {
            Sensitivity::Public
        }
    }
}

/// The user's Vault login from the `vault` CLI's environment: `VAULT_TOKEN` (else the file
/// `vault login` writes, `~/.vault-token`), `VAULT_ADDR`, `VAULT_CACERT`.
fn vault_login() -> anyhow::Result<VaultLogin> {
    let token = match std::env::var("VAULT_TOKEN").map(Zeroizing::new) {
        Ok(token) if !token.trim().is_empty() => Some(SecretBytes::from(token.trim().as_bytes())),
        _ => std::env::var_os("HOME")
            .and_then(|home| std::fs::read(Path::new(&home).join(".vault-token")).ok())
            .map(SecretBytes::from)
            .map(|file| SecretBytes::from(file.expose().trim_ascii()))
            .filter(|token| !token.expose().is_empty()),
    };
    let ca_pem =
        match std::env::var_os("VAULT_CACERT").filter(|p| !p.is_empty()) {
            Some(path) => Some(std::fs::read(&path).with_context(|| {
                format!("cannot read VAULT_CACERT {}", Path::new(&path).display())
            })?),
            None => None,
        };
    Ok(VaultLogin {
        token,
        address: std::env::var("VAULT_ADDR").ok().filter(|a| !a.is_empty()),
        ca_pem,
    })
}

/// The Secret of each source (as many at once as there are cores), or the problem that
/// names the source.
async fn generate_all<'a, G: Generator>(
    generator: &G,
    sources: &'a [Declared<G::Source>],
    progress: &ProgressBar,
) -> Vec<Result<(&'a SecretRef, Desired), Problem>> {
    let kind = &G::Source::kind(&());
    futures::stream::iter(sources)
        .map(|source| async move {
            let generated = generator.generate(&source.source).await;
            progress.inc(1);
            generated
                .map(|(desired, _)| (&source.target, desired))
                .map_err(|e| {
                    let message = e.to_string();
                    Problem {
                        file: source.file.clone(),
                        line: Some(source.line),
                        // ExternalSecrets' errors name them already.
                        message: if message.starts_with(&format!("{kind} ")) {
                            message
                        } else {
                            format!("{kind} {}: {message}", source.target)
                        },
                    }
                })
        })
        .buffered(parallelism())
        .collect()
        .await
}

/// How a sync opens the SealedSecrets.
enum Opening {
    /// With the private keys; a local store's memory spares opening those unchanged since.
    Keys(Option<Memory>),
    /// Through the cluster's controller.
    Controller(ThroughController),
}

/// The inputs of `source` and the digest of its Secret's file now, for the memory (`None`
/// when it has none, or it is not this sync's to read); no keys yet.
async fn entry_now<T: Observable>(
    generator: &SealedSecretGenerator,
    store: &ObservedStore<T>,
    source: &Declared<SealedSecret>,
) -> Option<memory::Entry> {
    let plan = generator.plan(&source.source).ok()?;
    let existing = store.existing(&source.target).await.ok()??;
    Some(memory::Entry {
        inputs: plan.input_digest,
        file: existing.resource_version?,
        keys: BTreeSet::new(),
    })
}

/// Syncs the SealedSecrets with the keys, except those the store's memory has as opened
/// from their current inputs, with keys still given, into a file unchanged since
/// (`unchanged`, nothing opened). With a memory, also what it keeps of each: its file as
/// this sync left it, read right after its write (a later edit is seen next time).
async fn sync_sealed<T: Observable>(
    syncer: &Syncer<SealedSecretGenerator, Arc<ObservedStore<T>>>,
    memory: Option<(&Memory, &BTreeSet<String>)>,
    sources: &[Declared<SealedSecret>],
    progress: &ProgressBar,
) -> (Vec<Row>, BTreeMap<SecretRef, memory::Entry>) {
    let (generator, store) = (syncer.generator(), syncer.target());
    let done: Vec<(Row, Option<(&SecretRef, memory::Entry)>)> = futures::stream::iter(sources)
        .map(|source| async move {
            let Some((memory, keys)) = memory else {
                return (sync_one(syncer, source, progress).await.0, None);
            };
            // Only a Secret the memory has is read before it is synced.
            if let Some(kept) = memory.kept(&source.target)
                && let Some(now) = entry_now(generator, store, source).await
                && kept.holds(&now, keys)
            {
                progress.inc(1);
                // Its keys as an opened one lists them: the names, read from the file.
                let names = store.store.values(&source.target).await.ok().flatten();
                let keys = names.map(|values| KeyChanges {
                    unchanged: values.into_keys().collect(),
                    ..KeyChanges::default()
                });
                let row = Row::new(
                    &source.target,
                    Action::Unchanged,
                    Some(source.place()),
                    keys,
                );
                return (row, Some((&source.target, kept.clone())));
            }
            let (row, opened_by) = sync_one(syncer, source, progress).await;
            let synced = matches!(
                row.action,
                Action::Created | Action::Updated | Action::Unchanged
            );
            let entry = match opened_by {
                Some(keys) if synced => entry_now(generator, store, source)
                    .await
                    .map(|now| (&source.target, memory::Entry { keys, ..now })),
                _ => None,
            };
            (row, entry)
        })
        .buffered(parallelism())
        .collect()
        .await;
    let mut entries = BTreeMap::new();
    let rows = done
        .into_iter()
        .map(|(row, entry)| {
            if let Some((target, entry)) = entry {
                entries.insert(target.clone(), entry);
            }
            row
        })
        .collect();
    (rows, entries)
}

/// Syncs one source into the store: its report row, and what its generator reported when
/// it generated the Secret.
async fn sync_one<G: Generator, T: Observable>(
    syncer: &Syncer<G, Arc<ObservedStore<T>>>,
    source: &Declared<G::Source>,
    progress: &ProgressBar,
) -> (Row, Option<G::Report>) {
    let outcome = syncer.sync(&source.source).await;
    progress.inc(1);
    let change = syncer.target().change(&source.target);
    let row = Row::of_outcome(source, &outcome, change);
    match outcome {
        Outcome::Applied { report, .. } => (row, Some(report)),
        _ => (row, None),
    }
}

/// Syncs each source into the store: one report row per source.
async fn sync_all<'a, G: Generator, T: Observable>(
    syncer: &Syncer<G, Arc<ObservedStore<T>>>,
    sources: impl IntoIterator<Item = &'a Declared<G::Source>>,
    progress: &ProgressBar,
) -> Vec<Row> {
    futures::stream::iter(sources)
        .map(|source| async move { sync_one(syncer, source, progress).await.0 })
        .buffered(parallelism())
        .collect()
        .await
}

/// A private temporary copy of the store's Secrets, for `diff` to sync into.
fn scratch_copy(store: &LocalDirTarget) -> anyhow::Result<tempfile::TempDir> {
    let scratch = tempfile::Builder::new()
        .prefix("sealsync-diff-")
        .tempdir()?;
    let copy = LocalDirTarget::new(scratch.path());
    for secret in store.list()? {
        let (from, to) = (store.path(&secret)?, copy.path(&secret)?);
        std::fs::create_dir_all(to.parent().expect("a Secret file has a folder"))?;
        std::fs::copy(&from, &to).with_context(|| format!("cannot read {}", from.display()))?;
    }
    Ok(scratch)
}

/// Sources handled at once: twice the cores, so that one's RSA work runs while another's
/// file or API call waits; at most 16, not to flood an API server.
fn parallelism() -> usize {
    (2 * std::thread::available_parallelism().map_or(2, |n| n.get())).min(16)
}
