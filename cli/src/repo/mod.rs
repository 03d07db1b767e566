//! `sealsync render`, `diff` and `sync`: the controller's SealedSecret generator and the
//! sync engine run on a config repository (a folder, or a Git revision), with the embedded
//! local store as the target (docs/sync.md).

mod manifests;
mod report;
mod source;
mod store;

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use sealsync_controller::{MANAGED, PATCH, SealedSecretGenerator, UnsealOptions};
use sealsync_engine::policy::Consent;
use sealsync_engine::target::{LocalDirTarget, SecretTarget};
use sealsync_engine::{Desired, Generator, Outcome, Syncer};

use crate::files::{Sensitivity, load_keyring, write_output};
use crate::reencrypt_all::{count, progress_bar};
use manifests::{Declared, Problem, Repository};
use report::{Action, Report, Row};
use source::Checkout;
use store::{FIELD_MANAGER, ObservedStore};

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

impl RepoJob {
    pub fn run(&self) -> anyhow::Result<()> {
        let checkout = match &self.revision {
            Some(revision) => Checkout::git(&self.path, revision)?,
            None => Checkout::directory(&self.path)?,
        };
        let repository = manifests::read(&checkout, self.namespace.as_deref());
        if !repository.sources.is_empty() && self.private_keys.is_empty() {
            bail!(
                "{} SealedSecrets to open and no private key: pass --private-key FILE (PEM, key \
                 Secret or backup List) with the keys they were sealed with",
                repository.sources.len()
            );
        }
        let generator = Arc::new(SealedSecretGenerator::with_keyring(
            load_keyring(&self.private_keys)?,
            UnsealOptions {
                accept_deprecated_data: true,
                update_status: false,
                recreate_deleted: true,
            },
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        match self.mode {
            Mode::Render => runtime.block_on(self.render(&generator, &repository)),
            Mode::Diff | Mode::Sync => {
                runtime.block_on(self.sync(generator, &repository, &checkout))
            }
        }
    }

    /// Prints the Secrets (values redacted unless `--show-values`); what fails goes to
    /// standard error.
    async fn render(
        &self,
        generator: &SealedSecretGenerator,
        repository: &Repository,
    ) -> anyhow::Result<()> {
        let progress = &progress_bar(repository.sources.len(), "Secrets");
        let rendered: Vec<(&Declared, Result<_, String>)> =
            futures::stream::iter(&repository.sources)
                .map(|source| async move {
                    let generated = generator
                        .generate(&source.sealed)
                        .await
                        .map_err(|e| e.to_string());
                    progress.inc(1);
                    (source, generated)
                })
                .buffered(parallelism())
                .collect()
                .await;
        progress.finish_and_clear();
        let mut secrets = Vec::new();
        let mut failures = Vec::new();
        for (source, generated) in rendered {
            match generated {
                Ok((Desired::Secret(secret), _)) => secrets.push(report::secret_manifest(
                    &source.target,
                    &secret,
                    self.show_values,
                )),
                Ok((Desired::Absent, _)) => {}
                Err(message) => failures.push(Problem {
                    file: source.file.clone(),
                    line: Some(source.line),
                    message: format!("SealedSecret {}: {message}", source.target),
                }),
            }
        }
        let text = report::manifests(&secrets, self.json)?;
        write_output(None, text.as_bytes(), self.sensitivity())?;
        for skipped in &repository.skipped {
            eprintln!("Not rendered: {skipped}: ExternalSecrets are synced by the controller only");
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

    /// Diff (into a scratch copy of the store) or sync, then prune and report.
    async fn sync(
        &self,
        generator: Arc<SealedSecretGenerator>,
        repository: &Repository,
        checkout: &Checkout,
    ) -> anyhow::Result<()> {
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
        let syncer = Syncer::new(
            generator,
            ObservedStore::new(LocalDirTarget::new(root), &checkout.identity),
            FIELD_MANAGER,
            Consent {
                adopt: Some(MANAGED.into()),
                merge: Some(PATCH.into()),
            },
        );
        let progress = &progress_bar(repository.sources.len(), "Secrets");
        let syncer = &syncer;
        let outcomes: Vec<(&Declared, Outcome<_>)> = futures::stream::iter(&repository.sources)
            .map(|source| async move {
                let outcome = syncer.sync(&source.sealed).await;
                progress.inc(1);
                (source, outcome)
            })
            .buffered(parallelism())
            .collect()
            .await;
        progress.finish_and_clear();
        let store = syncer.target();
        let mut rows: Vec<Row> = outcomes
            .into_iter()
            .map(|(source, outcome)| {
                let change = store.change(&source.target);
                Row::of_outcome(source, &outcome, change)
            })
            .collect();
        let mut problems = repository.problems.clone();
        let pruned = if repository.incomplete {
            false
        } else {
            match self.prune(store, repository).await {
                Ok(pruned) => {
                    rows.extend(pruned);
                    true
                }
                Err(e) => {
                    problems.push(Problem {
                        file: out.display().to_string(),
                        line: None,
                        message: format!("nothing pruned: {e}"),
                    });
                    false
                }
            }
        };
        rows.sort_by(|a, b| a.secret.cmp(&b.secret));
        let report = Report {
            command: if self.mode == Mode::Diff {
                "diff"
            } else {
                "sync"
            },
            source: checkout.display(&self.path.display().to_string()),
            revision: self.revision.clone(),
            store: out.display().to_string(),
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
    /// no longer declares.
    async fn prune(
        &self,
        store: &ObservedStore,
        repository: &Repository,
    ) -> anyhow::Result<Vec<Row>> {
        let declared: BTreeSet<_> = repository.declared.iter().collect();
        let mut rows = Vec::new();
        for secret in store.store.list()? {
            if declared.contains(&secret) {
                continue;
            }
            let Some(existing) = store.existing(&secret).await? else {
                continue;
            };
            if !store.is_own(&existing) {
                continue;
            }
            let version = existing.resource_version.unwrap_or_default();
            store.delete(&secret, &version).await?;
            if let Some(change) = store.change(&secret) {
                rows.push(Row::new(&secret, Action::Pruned, None, Some(change.keys)));
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

fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
