//! Finding the files to audit: YAML and PEM files under the given paths, without following
//! symbolic links (those leading out of the tree are reported), skipping `.git` and the
//! Go-template `templates/` folders of Helm charts.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::report::{Finding, Rule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Yaml,
    Pem,
}

/// A file to read, with the path shown in findings and its folder's (for duplicates and
/// Kustomize namespaces).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub display: String,
    pub dir: String,
    pub kind: FileKind,
}

/// Largest file read: manifests are small, and a huge file is not worth the memory.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

impl Entry {
    /// The file's text, or why it cannot be read (said so that ": not audited" or the
    /// like can follow).
    pub fn read(&self) -> Result<Zeroizing<String>, String> {
        let file = fs::File::open(&self.path).map_err(|e| format!("cannot open it ({e})"))?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it ({e})"))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(format!(
                "larger than {} MiB (split it)",
                MAX_FILE_BYTES / 1024 / 1024
            ));
        }
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(Zeroizing::new(text.to_string())),
            Err(_) => Err("not UTF-8 text (save it as UTF-8)".into()),
        }
    }
}

pub fn display(path: &Path) -> String {
    let text = path.display().to_string();
    match text.strip_prefix("./") {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => text,
    }
}

fn kind_of(path: &Path) -> Option<FileKind> {
    match path.extension()?.to_str()? {
        "yaml" | "yml" => Some(FileKind::Yaml),
        "pem" | "crt" | "cert" | "key" => Some(FileKind::Pem),
        _ => None,
    }
}

/// The files under `root` (or `root` itself when it is a file: any file given by name is
/// read as YAML unless it has a PEM extension).
pub fn walk(root: &Path, entries: &mut Vec<Entry>, findings: &mut Vec<Finding>) {
    let unreadable = |path: &Path, message: String| Finding {
        rule: Rule::UnreadableFile,
        file: display(path),
        line: None,
        object: None,
        message,
    };
    let canonical_root = match fs::canonicalize(root) {
        Ok(path) => path,
        Err(error) => {
            findings.push(unreadable(
                root,
                format!("cannot read it ({error}): check the path and its permissions"),
            ));
            return;
        }
    };
    if canonical_root.is_file() {
        entries.push(Entry {
            path: root.to_path_buf(),
            display: display(root),
            dir: display(root.parent().unwrap_or(Path::new(""))),
            kind: kind_of(root).unwrap_or(FileKind::Yaml),
        });
        return;
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(error) => {
                findings.push(unreadable(
                    &dir,
                    format!("cannot list this directory ({error}): nothing under it was audited"),
                ));
                continue;
            }
        };
        let mut children: Vec<PathBuf> = listing.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        let is_chart = children
            .iter()
            .any(|c| c.file_name() == Some("Chart.yaml".as_ref()));
        for child in children {
            let Ok(metadata) = fs::symlink_metadata(&child) else {
                findings.push(unreadable(
                    &child,
                    "cannot read its metadata: not audited".into(),
                ));
                continue;
            };
            let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if metadata.is_symlink() {
                match fs::canonicalize(&child) {
                    // Inside the tree: the target is audited where it is.
                    Ok(target) if target.starts_with(&canonical_root) => {}
                    Ok(_) => findings.push(Finding {
                        rule: Rule::SymlinkOutsideTree,
                        file: display(&child),
                        line: None,
                        object: None,
                        message: "symbolic link to a path outside the tree: not followed; \
                                  replace it with the file, or give its target too"
                            .into(),
                    }),
                    Err(_) => findings.push(unreadable(
                        &child,
                        "symbolic link to nothing (its target does not exist): remove or fix it"
                            .into(),
                    )),
                }
            } else if metadata.is_dir() {
                if name != ".git" && !(is_chart && name == "templates") {
                    pending.push(child);
                }
            } else if let Some(kind) = kind_of(&child) {
                entries.push(Entry {
                    display: display(&child),
                    dir: display(&dir),
                    path: child,
                    kind,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_yaml_and_pem_and_reports_links_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.yaml"), "kind: Secret\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in ["a/b", ".git", "chart/templates"] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        for file in [
            "a/b/x.yaml",
            "a/y.yml",
            "a/cert.pem",
            "a/readme.md",
            ".git/c.yaml",
            "chart/Chart.yaml",
            "chart/templates/t.yaml",
        ] {
            std::fs::write(r.join(file), "").unwrap();
        }
        std::os::unix::fs::symlink(outside.path().join("secret.yaml"), r.join("a/out.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(r.join("a/y.yml"), r.join("in.yaml")).unwrap();
        std::os::unix::fs::symlink(r.join("gone"), r.join("broken.yaml")).unwrap();

        let (mut entries, mut findings) = (Vec::new(), Vec::new());
        walk(r, &mut entries, &mut findings);
        let mut files: Vec<_> = entries
            .iter()
            .map(|e| e.path.strip_prefix(r).unwrap().display().to_string())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["a/b/x.yaml", "a/cert.pem", "a/y.yml", "chart/Chart.yaml"]
        );
        let mut rules: Vec<_> = findings
            .iter()
            .map(|f| (f.rule, f.file.rsplit('/').next().unwrap().to_string()))
            .collect();
        rules.sort();
        assert_eq!(
            rules,
            [
                (Rule::SymlinkOutsideTree, "out.yaml".to_string()),
                (Rule::UnreadableFile, "broken.yaml".to_string()),
            ]
        );
    }
}
