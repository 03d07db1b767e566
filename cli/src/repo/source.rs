//! The files a repository command reads: a directory as it is on disk, or a path in a Git
//! repository at a revision, exported with gix (no `git` binary, no worktree change) into a
//! private temporary folder that goes away with the [`Checkout`].

use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use gix::objs::tree::EntryKind;

/// Most bytes and files exported from one revision: a config repository is small, a
/// mono-repo's sources are not what is wanted.
const MAX_EXPORT_BYTES: u64 = 512 * 1024 * 1024;
const MAX_EXPORT_FILES: usize = 200_000;

/// Names of a Kustomize root's file.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The files to read, on disk.
#[derive(Debug)]
pub struct Checkout {
    /// The folder (or file) asked for.
    pub path: PathBuf,
    /// What identifies the source across runs, whatever its revision: which Secrets of the
    /// local store a sync of it may prune.
    pub identity: String,
    /// `(temporary root, label)`: paths under the root are shown as `label` + the path in
    /// the repository (`HEAD:overlays/dev/db.yaml`).
    exported: Option<(PathBuf, String)>,
    _temp: Option<tempfile::TempDir>,
}

impl Checkout {
    /// `path` as it is on disk.
    pub fn directory(path: &Path) -> anyhow::Result<Self> {
        let canonical = fs::canonicalize(path)
            .with_context(|| format!("cannot read {}: check the path", path.display()))?;
        let in_a_repository = gix::discover(&canonical).ok().and_then(|repo| {
            let workdir = fs::canonicalize(repo.workdir()?).ok()?;
            let relative = canonical.strip_prefix(&workdir).ok()?;
            Some(identity(&repo, &workdir, relative))
        });
        Ok(Self {
            path: path.to_path_buf(),
            identity: in_a_repository.unwrap_or_else(|| canonical.display().to_string()),
            exported: None,
            _temp: None,
        })
    }

    /// `path` (inside a Git repository's worktree, or the repository itself) as committed at
    /// `revision` (anything `git rev-parse` takes: HEAD, a branch, a tag, a commit).
    pub fn git(path: &Path, revision: &str) -> anyhow::Result<Self> {
        let canonical = fs::canonicalize(path)
            .with_context(|| format!("cannot read {}: check the path", path.display()))?;
        let repo = gix::discover(&canonical).map_err(|e| {
            anyhow!(
                "{} is not in a Git repository ({e}): drop --git/--revision to read the files \
                 as they are",
                path.display()
            )
        })?;
        let workdir = repo
            .workdir()
            .map(fs::canonicalize)
            .transpose()?
            .with_context(|| format!("{}: a bare repository has no paths", path.display()))?;
        let relative = canonical
            .strip_prefix(&workdir)
            .context("the path is outside the repository's worktree")?
            .to_path_buf();
        let commit = repo
            .rev_parse_single(revision)
            .map_err(|e| anyhow!("revision {revision:?}: {e}: name a commit, branch or tag"))?;
        let tree = commit
            .object()
            .and_then(|object| object.peel_to_tree())
            .map_err(|e| anyhow!("revision {revision:?} has no tree: {e}"))?;
        let shown = relative.display().to_string();
        let at_root = relative.as_os_str().is_empty();
        let exported_tree = if at_root {
            tree.clone()
        } else {
            let entry = tree
                .lookup_entry_by_path(&relative)
                .map_err(|e| anyhow!("{revision}:{shown}: {e}"))?
                .with_context(|| {
                    format!("{revision}:{shown} does not exist: commit it, or check the revision")
                })?;
            if !entry.mode().is_tree() {
                bail!("{revision}:{shown} is not a folder: give the folder that holds it");
            }
            entry
                .object()
                .map(gix::Object::into_tree)
                .map_err(|e| anyhow!("{revision}:{shown}: {e}"))?
        };
        // Kustomize may read anything under the repository (`../../base`): export all of it
        // then, else only the folder asked for.
        let kustomized = KUSTOMIZATION_FILES.iter().any(|name| {
            exported_tree
                .lookup_entry_by_path(name)
                .ok()
                .flatten()
                .is_some()
        });
        let temp = tempfile::Builder::new().prefix("sealsync-git-").tempdir()?;
        let mut budget = Budget::default();
        if kustomized {
            export(&repo, &tree, temp.path(), &mut budget)?;
        } else {
            let dir = temp.path().join(&relative);
            fs::create_dir_all(&dir)?;
            export(&repo, &exported_tree, &dir, &mut budget)?;
        }
        Ok(Self {
            path: temp.path().join(&relative),
            identity: identity(&repo, &workdir, &relative),
            exported: Some((temp.path().to_path_buf(), format!("{revision}:"))),
            _temp: Some(temp),
        })
    }

    /// How a file under the checkout is shown to the user.
    pub fn display(&self, shown: &str) -> String {
        match &self.exported {
            Some((root, label)) => {
                let root = root.display().to_string();
                match shown.strip_prefix(&root) {
                    Some(rest) => format!("{label}{}", rest.trim_start_matches('/')),
                    None => shown.to_string(),
                }
            }
            None => shown.to_string(),
        }
    }

    /// The Kustomize root's file of the path asked for, if it is one.
    pub fn kustomization(&self) -> Option<PathBuf> {
        KUSTOMIZATION_FILES
            .iter()
            .map(|name| self.path.join(name))
            .find(|file| file.is_file())
    }
}

/// What identifies a path of a repository, whether read from the working tree or at a
/// revision: `<repository>:<path in it>` (the repository alone at its root), the repository
/// named by its remote `origin` when it has one (`host/path` of its URL, without scheme,
/// user, password, port or `.git`, so that every clone, on any machine and by any URL, is
/// the same source), else by its folder.
fn identity(repo: &gix::Repository, workdir: &Path, relative: &Path) -> String {
    let remote = repo.find_remote("origin").ok();
    let url = remote
        .as_ref()
        .and_then(|r| r.url(gix::remote::Direction::Fetch));
    let repository = match url {
        Some(url) => {
            let path = url.path.to_string();
            let path = path.trim_matches('/');
            let path = path.strip_suffix(".git").unwrap_or(path);
            match url.host() {
                Some(host) => format!("{}/{path}", host.to_ascii_lowercase()),
                None => format!("/{path}"),
            }
        }
        None => workdir.display().to_string(),
    };
    match relative.display().to_string().as_str() {
        "" => repository,
        path => format!("{repository}:{path}"),
    }
}

#[derive(Debug, Default)]
struct Budget {
    bytes: u64,
    files: usize,
}

/// Writes `tree` into `dir`: blobs as files (mode 0600), symbolic links as links (the walker
/// reports those that lead out of the tree), submodules left out.
fn export(
    repo: &gix::Repository,
    tree: &gix::Tree<'_>,
    dir: &Path,
    budget: &mut Budget,
) -> anyhow::Result<()> {
    for entry in tree.iter() {
        let entry = entry.map_err(|e| anyhow!("cannot read a tree of the revision: {e}"))?;
        let name = entry.filename().to_string();
        // A name that is not one plain path component (`..`, `a/b`) is never written.
        let mut components = Path::new(&name).components();
        if !matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        ) {
            continue;
        }
        let path = dir.join(&name);
        match entry.mode().kind() {
            EntryKind::Tree => {
                fs::create_dir(&path)?;
                let subtree = repo
                    .find_tree(entry.object_id())
                    .map_err(|e| anyhow!("cannot read tree {name}: {e}"))?;
                export(repo, &subtree, &path, budget)?;
            }
            EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => {
                let size = repo
                    .find_header(entry.object_id())
                    .map_err(|e| anyhow!("cannot read {name}: {e}"))?
                    .size();
                budget.bytes += size;
                budget.files += 1;
                if budget.bytes > MAX_EXPORT_BYTES || budget.files > MAX_EXPORT_FILES {
                    bail!(
                        "the revision holds more than {} MiB or {MAX_EXPORT_FILES} files: give \
                         the folder of the manifests",
                        MAX_EXPORT_BYTES / 1024 / 1024
                    );
                }
                let blob = repo
                    .find_blob(entry.object_id())
                    .map_err(|e| anyhow!("cannot read {name}: {e}"))?;
                if entry.mode().kind() == EntryKind::Link {
                    let target = String::from_utf8_lossy(&blob.data).into_owned();
                    std::os::unix::fs::symlink(target, &path)?;
                } else {
                    write_private(&path, &blob.data)?;
                }
            }
            EntryKind::Commit => {}
        }
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_paths_are_shown_with_the_revision() {
        let checkout = Checkout {
            path: "/tmp/x/overlays".into(),
            identity: String::new(),
            exported: Some(("/tmp/x".into(), "main:".into())),
            _temp: None,
        };
        assert_eq!(
            checkout.display("/tmp/x/overlays/db.yaml"),
            "main:overlays/db.yaml"
        );
        assert_eq!(checkout.display("elsewhere.yaml"), "elsewhere.yaml");
    }

    #[test]
    fn every_url_of_a_repository_names_the_same_source() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let status = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        let relative = Path::new("overlays/dev");
        let named = || identity(&gix::open(dir.path()).unwrap(), dir.path(), relative);
        assert_eq!(
            named(),
            format!("{}:overlays/dev", dir.path().display()),
            "no remote: the folder"
        );
        git(&["remote", "add", "origin", "git@GitHub.com:shop/config.git"]);
        assert_eq!(named(), "github.com/shop/config:overlays/dev");
        for url in [
            "https://deploy:s3cret@github.com:443/shop/config/",
            "ssh://git@github.com/shop/config.git",
            "https://github.com/shop/config",
        ] {
            git(&["remote", "set-url", "origin", url]);
            assert_eq!(named(), "github.com/shop/config:overlays/dev", "{url}");
        }
        assert_eq!(
            identity(&gix::open(dir.path()).unwrap(), dir.path(), Path::new("")),
            "github.com/shop/config",
            "the repository's root"
        );
    }
}
