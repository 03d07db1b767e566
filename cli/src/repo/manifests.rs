//! The sources declared in a repository: every YAML document under the path (or what
//! `kustomize build` makes of it), with the SealedSecrets kept and each bad input reported
//! with its file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sealsync_api::{SealedSecret, parse_json};
use sealsync_engine::SecretRef;
use serde::Serialize;

use super::source::Checkout;
use crate::audit::manifests::{api_group, is_known_kind};
use crate::audit::walk::{self, FileKind};
use crate::audit::yaml::{Node, parse_stream};
use crate::reencrypt_all::kustomization_namespace;

/// Something in the repository that could not be read or used; the rest goes on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A SealedSecret of the repository and where it is declared.
#[derive(Debug)]
pub struct Declared {
    pub sealed: SealedSecret,
    pub target: SecretRef,
    pub file: String,
    pub line: usize,
}

/// What a repository declares.
#[derive(Debug, Default)]
pub struct Repository {
    pub sources: Vec<Declared>,
    /// Every Secret some document declares, also those not synced because of a problem:
    /// they are never pruned.
    pub declared: Vec<SecretRef>,
    pub problems: Vec<Problem>,
    /// Whether some file could not be read entirely: what it declares is unknown, so
    /// nothing is pruned.
    pub incomplete: bool,
    /// Sources these commands do not sync (ExternalSecrets), `Kind ns/name (file:line)`.
    pub skipped: Vec<String>,
    pub files: usize,
    pub documents: usize,
}

/// Reads the sources under `checkout`: with `kustomize build` when the path is a Kustomize
/// root, else every YAML file under it. `namespace` is for objects that name none.
pub fn read(checkout: &Checkout, namespace: Option<&str>) -> Repository {
    let mut repository = Repository::default();
    match checkout.kustomization() {
        Some(kustomization) => {
            let shown = checkout.display(&walk::display(&kustomization));
            match kustomize_build(&checkout.path) {
                Ok(text) => {
                    repository.files = 1;
                    let context = FileContext {
                        shown: format!(
                            "kustomize build {}",
                            checkout.display(&walk::display(&checkout.path))
                        ),
                        kustomization_namespace: None,
                        namespace,
                    };
                    repository.stream(&text, &context);
                }
                Err(message) => {
                    repository.incomplete = true;
                    repository.problem(&shown, None, message);
                }
            }
        }
        None => {
            let (mut entries, mut findings) = (Vec::new(), Vec::new());
            walk::walk(&checkout.path, &mut entries, &mut findings);
            for finding in findings {
                repository.incomplete = true;
                repository.problem(
                    &checkout.display(&finding.file),
                    finding.line,
                    finding.message,
                );
            }
            for entry in entries.iter().filter(|e| e.kind == FileKind::Yaml) {
                repository.files += 1;
                let shown = checkout.display(&entry.display);
                match entry.read() {
                    Ok(text) => {
                        let context = FileContext {
                            shown,
                            kustomization_namespace: kustomization_namespace(&entry.path),
                            namespace,
                        };
                        repository.stream(&text, &context);
                    }
                    Err(reason) => {
                        repository.incomplete = true;
                        repository.problem(&shown, None, format!("{reason}: not read"));
                    }
                }
            }
        }
    }
    repository.reject_duplicates();
    repository.sources.sort_by(|a, b| a.target.cmp(&b.target));
    repository.problems.sort();
    repository
}

/// Where the documents of one stream come from.
struct FileContext<'a> {
    shown: String,
    /// The `namespace:` of a kustomization next to the file, which Kustomize would set.
    kustomization_namespace: Option<String>,
    namespace: Option<&'a str>,
}

impl Repository {
    fn problem(&mut self, file: &str, line: Option<usize>, message: String) {
        self.problems.push(Problem {
            file: file.to_string(),
            line,
            message,
        });
    }

    fn stream(&mut self, text: &str, context: &FileContext<'_>) {
        let (documents, error) = parse_stream(text);
        if let Some(error) = error {
            self.incomplete = true;
            // At the end of the input the parser names the line after the last one.
            let line = error.line.min(text.lines().count().max(1));
            self.problem(
                &context.shown,
                Some(line),
                format!("invalid YAML ({}): this document and the rest of the file were not read; fix it", error.reason),
            );
        }
        for document in &documents {
            self.document(document, context);
        }
    }

    fn document(&mut self, document: &Node, context: &FileContext<'_>) {
        self.documents += 1;
        let shown = &context.shown;
        if !document.is_map() {
            // A scalar or a list at the top: not a manifest, nothing to sync.
            return;
        }
        let kind = document.str_at("kind");
        let api_version = document.str_at("apiVersion");
        let (kind, api_version) = match (kind, api_version) {
            // Values files, kustomizations and other configuration.
            (None, None) => return,
            (Some(kind), Some(api_version)) => (kind, api_version),
            (None, Some(_)) => {
                return self.problem(
                    shown,
                    Some(document.line),
                    "manifest with an apiVersion but no kind: add its kind".into(),
                );
            }
            (Some(kind), None) => {
                if KUSTOMIZATION_KINDS.contains(&kind) {
                    return;
                }
                return self.problem(
                    shown,
                    Some(document.line),
                    format!("{kind} has no apiVersion: add it"),
                );
            }
        };
        if !is_known_kind(api_version, kind) {
            let group = match api_group(api_version) {
                "" => "core (v1)",
                group => group,
            };
            return self.problem(
                shown,
                Some(document.line),
                format!("unknown kind {kind:?}: the {group} API has no such kind; fix the kind or the apiVersion"),
            );
        }
        match (api_group(api_version), kind) {
            ("", "List") => {
                for item in document.get("items").map(Node::items).unwrap_or_default() {
                    self.document(item, context);
                }
                self.documents -= 1;
            }
            ("bitnami.com", "SealedSecret") => self.sealed_secret(document, context),
            ("external-secrets.io", kind @ ("ExternalSecret" | "ClusterExternalSecret")) => {
                self.skipped.push(format!(
                    "{kind} {}{} ({shown}:{})",
                    document
                        .path(&["metadata", "namespace"])
                        .and_then(|n| n.scalar())
                        .map(|s| format!("{}/", s.text()))
                        .unwrap_or_default(),
                    document
                        .path(&["metadata", "name"])
                        .and_then(|n| n.scalar())
                        .map_or("", |s| s.text()),
                    document.line
                ));
            }
            _ => {}
        }
    }

    fn sealed_secret(&mut self, document: &Node, context: &FileContext<'_>) {
        let shown = &context.shown;
        let line = document.line;
        let json = serde_json::to_vec(&document.to_json()).unwrap_or_default();
        let mut sealed: SealedSecret = match parse_json(&json) {
            Ok(sealed) => sealed,
            Err(e) => {
                return self.problem(
                    shown,
                    Some(line),
                    format!("not a valid SealedSecret: {e}; fix it"),
                );
            }
        };
        let Some(name) = sealed.metadata.name.clone() else {
            return self.problem(
                shown,
                Some(line),
                "SealedSecret has no metadata.name: add it".into(),
            );
        };
        let namespace = sealed
            .metadata
            .namespace
            .clone()
            .or_else(|| context.kustomization_namespace.clone())
            .or_else(|| context.namespace.map(str::to_string));
        let Some(namespace) = namespace else {
            return self.problem(
                shown,
                Some(line),
                format!("SealedSecret {name} has no namespace: set metadata.namespace, or pass -n NAMESPACE"),
            );
        };
        sealed.metadata.namespace = Some(namespace.clone());
        let target = SecretRef { namespace, name };
        self.declared.push(target.clone());
        self.sources.push(Declared {
            sealed,
            target,
            file: shown.clone(),
            line,
        });
    }

    /// Two sources of one Secret would write it in turns: neither is synced, both are named.
    fn reject_duplicates(&mut self) {
        let mut by_target: BTreeMap<SecretRef, Vec<(String, usize)>> = BTreeMap::new();
        for source in &self.sources {
            by_target
                .entry(source.target.clone())
                .or_default()
                .push((source.file.clone(), source.line));
        }
        for (target, places) in by_target.iter().filter(|(_, places)| places.len() > 1) {
            for (file, line) in places {
                let others: Vec<String> = places
                    .iter()
                    .filter(|other| other != &&(file.clone(), *line))
                    .map(|(f, l)| format!("{f}:{l}"))
                    .collect();
                self.problems.push(Problem {
                    file: file.clone(),
                    line: Some(*line),
                    message: format!(
                        "Secret {target} is also declared at {}: not synced; keep one source per Secret",
                        others.join(", ")
                    ),
                });
            }
        }
        self.sources
            .retain(|source| by_target.get(&source.target).is_some_and(|p| p.len() == 1));
    }
}

const KUSTOMIZATION_KINDS: [&str; 2] = ["Kustomization", "Component"];

/// `kustomize build DIR` (or `kubectl kustomize DIR`), from PATH.
fn kustomize_build(dir: &Path) -> Result<String, String> {
    let (program, mut args) = if let Some(kustomize) = on_path("kustomize") {
        (kustomize, vec!["build".to_string()])
    } else if let Some(kubectl) = on_path("kubectl") {
        (kubectl, vec!["kustomize".to_string()])
    } else {
        return Err(
            "a Kustomize root, and neither kustomize nor kubectl is on PATH: install \
                    kustomize (sigs.k8s.io/kustomize/kustomize/v5) or kubectl, or give a folder \
                    without kustomization.yaml"
                .into(),
        );
    };
    args.push(dir.display().to_string());
    let output = Command::new(&program)
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !output.status.success() {
        // Kustomize's own message (its last line says what failed), never the manifests.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(format!(
            "{} {} failed: {}",
            program.file_name().unwrap_or_default().to_string_lossy(),
            args[0],
            reason.trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| "kustomize printed text that is not UTF-8".into())
}

/// The executable `name` in a folder of PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(files: &[(&str, &str)]) -> (Repository, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let checkout = Checkout::directory(dir.path()).unwrap();
        (read(&checkout, None), dir)
    }

    const SEALED: &str = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: app}\nspec: {encryptedData: {password: AgBx}}\n";

    #[test]
    fn sealed_secrets_are_kept_and_other_kinds_ignored() {
        let (repository, _dir) = read_text(&[
            ("a/db.yaml", SEALED),
            (
                "a/deploy.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
            ),
            ("values.yaml", "replicas: 2\n"),
            (
                "b/list.yaml",
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: bitnami.com/v1alpha1\n  kind: SealedSecret\n  metadata: {name: api}\n  spec: {encryptedData: {}}\n",
            ),
            (
                "b/kustomization.yaml",
                "namespace: dev\nresources: [list.yaml]\n",
            ),
            (
                "es.yaml",
                "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: api, namespace: app}\n",
            ),
        ]);
        assert_eq!(repository.problems, []);
        assert_eq!(repository.skipped.len(), 1);
        assert!(
            repository.skipped[0].starts_with("ExternalSecret app/api ("),
            "{:?}",
            repository.skipped
        );
        assert!(repository.skipped[0].ends_with("es.yaml:1)"));
        let targets: Vec<String> = repository
            .sources
            .iter()
            .map(|s| s.target.to_string())
            .collect();
        assert_eq!(
            targets,
            ["app/db", "dev/api"],
            "the kustomization's namespace applies"
        );
        assert!(!repository.incomplete);
    }

    #[test]
    fn bad_input_is_reported_with_file_and_line_and_the_rest_is_read() {
        let (repository, _dir) = read_text(&[
            ("good.yaml", SEALED),
            (
                "broken.yaml",
                "apiVersion: v1\nkind: ConfigMap\n---\nkind: [\n",
            ),
            (
                "typo.yaml",
                "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecrets\nmetadata: {name: x}\n",
            ),
            (
                "noname.yaml",
                "---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {namespace: app}\nspec: {encryptedData: {}}\n",
            ),
            (
                "nons.yaml",
                "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: lonely}\nspec: {encryptedData: {}}\n",
            ),
            (
                "dup/one.yaml",
                "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: twin, namespace: app}\nspec: {encryptedData: {}}\n",
            ),
            (
                "dup/two.yaml",
                "# the same Secret\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: twin, namespace: app}\nspec: {encryptedData: {}}\n",
            ),
        ]);
        let seen: Vec<(String, Option<usize>)> = repository
            .problems
            .iter()
            .map(|p| (p.file.rsplit('/').next().unwrap().to_string(), p.line))
            .collect();
        assert_eq!(
            seen,
            [
                ("broken.yaml".to_string(), Some(4)),
                ("one.yaml".to_string(), Some(1)),
                ("two.yaml".to_string(), Some(2)),
                ("noname.yaml".to_string(), Some(2)),
                ("nons.yaml".to_string(), Some(1)),
                ("typo.yaml".to_string(), Some(1)),
            ],
            "{:#?}",
            repository.problems
        );
        assert!(
            repository.problems[5]
                .message
                .contains("unknown kind \"SealedSecrets\"")
        );
        assert!(repository.problems[1].message.contains("two.yaml:2"));
        let targets: Vec<String> = repository
            .sources
            .iter()
            .map(|s| s.target.to_string())
            .collect();
        assert_eq!(targets, ["app/db"]);
        assert!(
            repository.declared.iter().any(|d| d.name == "twin"),
            "never pruned"
        );
        assert!(repository.incomplete, "a file was not read entirely");
    }
}
