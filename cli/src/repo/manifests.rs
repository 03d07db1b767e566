//! The sources declared in a repository: every YAML document under the path (or what
//! `kustomize build` makes of it), with the SealedSecrets and ExternalSecrets kept (also
//! those ClusterExternalSecrets stamp into the repository's Namespaces), and what
//! ExternalSecrets read (stores, ConfigMaps, Namespaces), each bad input reported with its
//! file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Resource, ResourceExt};
use sealsync_api::external::{
    ClusterExternalSecret, ClusterSecretStore, ExternalSecret, SecretStore, StoreKind,
};
use sealsync_api::{SealedSecret, parse_json};
use sealsync_engine::SecretRef;
use sealsync_external::cluster_external_secret::{
    external_secret_metadata, external_secret_name, selected_by_labels,
};
use sealsync_external::lookups::served_namespace_labels;
use sealsync_external::stores::{Store, StoreKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// A source of the repository (a SealedSecret or an ExternalSecret) and where it is
/// declared.
#[derive(Debug)]
pub struct Declared<S> {
    pub source: S,
    pub target: SecretRef,
    pub file: String,
    pub line: usize,
}

impl<S> Declared<S> {
    /// `file:line`.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// What a repository declares.
#[derive(Debug, Default)]
pub struct Repository {
    pub sealed: Vec<Declared<SealedSecret>>,
    pub external: Vec<Declared<ExternalSecret>>,
    /// The SecretStores and ClusterSecretStores the ExternalSecrets read from.
    pub stores: Vec<Store>,
    /// What ExternalSecrets' templates and stores may look up.
    pub config_maps: Vec<ConfigMap>,
    pub namespaces: Vec<Namespace>,
    /// Every Secret some document declares, also those not synced because of a problem:
    /// they are never pruned.
    pub declared: Vec<SecretRef>,
    pub problems: Vec<Problem>,
    /// Whether some file could not be read entirely: what it declares is unknown, so
    /// nothing is pruned.
    pub incomplete: bool,
    /// ClusterExternalSecrets that select no Namespace the repository declares, so that
    /// nothing is synced for them: `Kind name (file:line): why`.
    pub skipped: Vec<String>,
    /// ClusterExternalSecrets and where they are declared, stamped into `external` once
    /// every Namespace is read.
    cluster_external: Vec<(ClusterExternalSecret, String, usize)>,
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
    repository.stamp_cluster_external_secrets();
    repository.reject_duplicates();
    repository.sealed.sort_by(|a, b| a.target.cmp(&b.target));
    repository.external.sort_by(|a, b| a.target.cmp(&b.target));
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

impl FileContext<'_> {
    /// The namespace of an object that says `own`: its own, else the kustomization's, else
    /// `-n`.
    fn namespace_of(&self, own: Option<String>) -> Option<String> {
        own.or_else(|| self.kustomization_namespace.clone())
            .or_else(|| self.namespace.map(str::to_string))
    }
}

impl Repository {
    /// How many sources it syncs.
    pub fn sources(&self) -> usize {
        self.sealed.len() + self.external.len()
    }

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
            // It may have been a source: what it made must not be pruned.
            (None, Some(_)) => {
                self.incomplete = true;
                return self.problem(
                    shown,
                    Some(document.line),
                    "manifest with an apiVersion but no kind: add its kind (nothing is pruned)"
                        .into(),
                );
            }
            (Some(kind), None) => {
                if KUSTOMIZATION_KINDS.contains(&kind) {
                    return;
                }
                self.incomplete = true;
                return self.problem(
                    shown,
                    Some(document.line),
                    format!("{kind} has no apiVersion: add it (nothing is pruned)"),
                );
            }
        };
        if !is_known_kind(api_version, kind) {
            let group = match api_group(api_version) {
                "" => "core (v1)",
                group => group,
            };
            // A misspelt SealedSecret or ExternalSecret: what it made must not be pruned.
            let source_group = matches!(group, "bitnami.com" | "external-secrets.io");
            self.incomplete |= source_group;
            return self.problem(
                shown,
                Some(document.line),
                format!(
                    "unknown kind {kind:?}: the {group} API has no such kind; fix the kind or \
                     the apiVersion{}",
                    if source_group {
                        " (nothing is pruned)"
                    } else {
                        ""
                    }
                ),
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
            ("external-secrets.io", "ExternalSecret") => self.external_secret(document, context),
            ("external-secrets.io", kind @ ("SecretStore" | "ClusterSecretStore")) => {
                self.store(document, context, kind);
            }
            ("external-secrets.io", "ClusterExternalSecret") => {
                match self.parse(document, context, kind) {
                    Some((ces, _)) => {
                        self.cluster_external
                            .push((ces, shown.clone(), document.line))
                    }
                    // Which Secrets it makes is unknown: none may be pruned.
                    None => self.incomplete = true,
                }
            }
            // Not sources: one that is not valid is not this command's to report.
            ("", "ConfigMap") => {
                if let Ok(mut map) = serde_json::from_value::<ConfigMap>(document.to_json()) {
                    map.metadata.namespace = context.namespace_of(map.metadata.namespace.take());
                    if map.metadata.name.is_none() {
                        return self.problem(
                            &context.shown,
                            Some(document.line),
                            "ConfigMap without metadata.name: ignored; name it".into(),
                        );
                    }
                    let same = |other: &ConfigMap| {
                        other.metadata.name == map.metadata.name
                            && other.metadata.namespace == map.metadata.namespace
                    };
                    if self.config_maps.iter().any(same) {
                        let name = map.metadata.name.unwrap_or_default();
                        let namespace = map.metadata.namespace.unwrap_or_default();
                        return self.problem(
                            &context.shown,
                            Some(document.line),
                            format!(
                                "ConfigMap {namespace}/{name} is declared twice: this one is \
                                 ignored; keep one"
                            ),
                        );
                    }
                    self.config_maps.push(map);
                }
            }
            ("", "Namespace") => {
                if let Ok(namespace) = serde_json::from_value::<Namespace>(document.to_json()) {
                    let problem = match namespace.metadata.name.as_deref() {
                        None | Some("") => {
                            "Namespace without metadata.name: ignored; name it".into()
                        }
                        Some(name) if self.namespaces.iter().any(|n| n.name_any() == name) => {
                            format!(
                                "Namespace {name} is declared twice: this one is ignored; keep one"
                            )
                        }
                        Some(_) => return self.namespaces.push(namespace),
                    };
                    self.problem(shown, Some(document.line), problem);
                }
            }
            _ => {}
        }
    }

    /// An object of kind `kind` and its name; `None`, with the problem reported, when it
    /// is not valid.
    fn parse<T>(
        &mut self,
        document: &Node,
        context: &FileContext<'_>,
        kind: &str,
    ) -> Option<(T, String)>
    where
        T: DeserializeOwned + Resource,
    {
        let (shown, line) = (&context.shown, document.line);
        let json = serde_json::to_vec(&document.to_json()).unwrap_or_default();
        let object: T = match parse_json(&json) {
            Ok(object) => object,
            Err(e) => {
                self.problem(
                    shown,
                    Some(line),
                    format!("not a valid {kind}: {e}; fix it"),
                );
                return None;
            }
        };
        let Some(name) = object.meta().name.clone() else {
            self.problem(
                shown,
                Some(line),
                format!("{kind} has no metadata.name: add it"),
            );
            return None;
        };
        Some((object, name))
    }

    /// A namespaced object of kind `kind`, its namespace set as Kustomize (or `-n`) would.
    fn object<T>(
        &mut self,
        document: &Node,
        context: &FileContext<'_>,
        kind: &str,
    ) -> Option<(T, SecretRef)>
    where
        T: DeserializeOwned + Resource,
    {
        let (mut object, name) = self.parse::<T>(document, context, kind)?;
        // What a cluster wrote into an exported manifest is not the repository's: a
        // status or generation kept would pass an old sync off as current.
        let meta = object.meta_mut();
        (
            meta.uid,
            meta.resource_version,
            meta.generation,
            meta.managed_fields,
        ) = (None, None, None, None);
        let namespace = context.namespace_of(object.meta().namespace.clone());
        let Some(namespace) = namespace else {
            self.problem(
                &context.shown,
                Some(document.line),
                format!(
                    "{kind} {name} has no namespace: set metadata.namespace, or pass -n NAMESPACE"
                ),
            );
            return None;
        };
        object.meta_mut().namespace = Some(namespace.clone());
        Some((object, SecretRef { namespace, name }))
    }

    fn sealed_secret(&mut self, document: &Node, context: &FileContext<'_>) {
        let Some((mut sealed, target)) =
            self.object::<SealedSecret>(document, context, "SealedSecret")
        else {
            // Which Secret it makes is unknown: none may be pruned.
            self.incomplete = true;
            return;
        };
        sealed.status = None;
        self.declared.push(target.clone());
        self.sealed.push(Declared {
            source: sealed,
            target,
            file: context.shown.clone(),
            line: document.line,
        });
    }

    fn external_secret(&mut self, document: &Node, context: &FileContext<'_>) {
        let Some((mut es, object)) =
            self.object::<ExternalSecret>(document, context, "ExternalSecret")
        else {
            self.incomplete = true;
            return;
        };
        es.status = None;
        self.declare_external(es, object, context.shown.clone(), document.line);
    }

    /// ExternalSecret `es`, named `object`, declared at `file:line`.
    fn declare_external(
        &mut self,
        es: ExternalSecret,
        object: SecretRef,
        file: String,
        line: usize,
    ) {
        let target = SecretRef {
            name: es.spec.target_name(&object.name).to_string(),
            namespace: object.namespace,
        };
        self.declared.push(target.clone());
        self.external.push(Declared {
            source: es,
            target,
            file,
            line,
        });
    }

    /// The ExternalSecret of each ClusterExternalSecret in every namespace it selects, as
    /// the controller stamps them into a cluster's: the Namespaces the repository declares
    /// that a selector selects (by their labels and the `kubernetes.io/metadata.name` label
    /// the API server adds), and those its `namespaces` names. Declared at the
    /// ClusterExternalSecret.
    fn stamp_cluster_external_secrets(&mut self) {
        let declared: Vec<(String, BTreeMap<String, String>)> = self
            .namespaces
            .iter()
            .map(|ns| {
                let name = ns.name_any();
                let labels = served_namespace_labels(&name, ns.labels().clone());
                (name, labels)
            })
            .collect();
        // Where each ExternalSecret name is declared.
        let mut named: BTreeMap<(String, String), String> = self
            .external
            .iter()
            .filter_map(|es| {
                let meta = &es.source.metadata;
                Some(((meta.namespace.clone()?, meta.name.clone()?), es.place()))
            })
            .collect();
        let (mut matched, mut stamped) = (0usize, 0usize);
        for (ces, file, line) in std::mem::take(&mut self.cluster_external) {
            let place = format!("ClusterExternalSecret {} ({file}:{line})", ces.name_any());
            // Label matching is bounded: a few selectors over many Namespaces cannot hang
            // the run.
            let work = selector_work(&ces).saturating_mul(declared.len());
            matched = matched.saturating_add(work);
            if matched > MAX_SELECTOR_WORK {
                self.incomplete = true;
                self.problem(
                    &file,
                    Some(line),
                    format!(
                        "{place}: not stamped: matching its selectors against the {} Namespaces \
                         would take the repository over {MAX_SELECTOR_WORK} label comparisons; \
                         use fewer selectors or list the namespaces",
                        declared.len()
                    ),
                );
                continue;
            }
            let mut selected: BTreeSet<&str> = declared
                .iter()
                .filter(|(_, labels)| selected_by_labels(&ces, labels))
                .map(|(name, _)| name.as_str())
                .collect();
            selected.extend(ces.spec.namespaces.iter().map(String::as_str));
            selected.remove("");
            if selected.is_empty() {
                self.skipped.push(format!(
                    "{place}: selects no Namespace the repository declares; declare them \
                     (with their labels) or name them in spec.namespaces"
                ));
                continue;
            }
            let name = external_secret_name(&ces);
            let metadata = external_secret_metadata(&ces);
            let spec = &ces.spec.external_secret_spec;
            let target = spec.target_name(&name).to_string();
            // What a document declares is never pruned, also when it is not stamped.
            let declare = |namespace: &str| SecretRef {
                namespace: namespace.to_string(),
                name: target.clone(),
            };
            // Each stamp is a copy of the spec and metadata: a few manifests cannot make
            // gigabytes.
            let size = STAMP_OVERHEAD
                + 4 * name.len()
                + serde_json::to_vec(spec).map_or(0, |v| v.len())
                + serde_json::to_vec(&metadata).map_or(0, |v| v.len());
            stamped = stamped.saturating_add(size.saturating_mul(selected.len()));
            let refusal = if name.len() > MAX_NAME {
                Some(format!(
                    "its ExternalSecrets' name has {} characters, more than {MAX_NAME}",
                    name.len()
                ))
            } else if stamped > MAX_STAMPED_BYTES {
                Some(format!(
                    "its {} ExternalSecrets ({size} bytes each) would take the repository's \
                     ClusterExternalSecrets over {} MiB; select fewer namespaces or split \
                     its spec",
                    selected.len(),
                    MAX_STAMPED_BYTES >> 20
                ))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                self.declared.extend(selected.iter().map(|ns| declare(ns)));
                self.problem(
                    &file,
                    Some(line),
                    format!("{place}: not stamped: {refusal}"),
                );
                continue;
            }
            for namespace in selected {
                let key = (namespace.to_string(), name.clone());
                if let Some(other) = named.get(&key) {
                    let message = format!(
                        "{place}: ExternalSecret {namespace}/{name} is already declared at \
                         {other}: not stamped into {namespace}; rename one (externalSecretName)"
                    );
                    self.declared.push(declare(namespace));
                    self.problem(&file, Some(line), message);
                    continue;
                }
                named.insert(key, format!("{file}:{line}"));
                let mut es = ExternalSecret::new(&name, spec.clone());
                es.metadata.namespace = Some(namespace.to_string());
                es.metadata.labels = (!metadata.labels.is_empty()).then(|| metadata.labels.clone());
                es.metadata.annotations =
                    (!metadata.annotations.is_empty()).then(|| metadata.annotations.clone());
                let object = SecretRef {
                    namespace: namespace.to_string(),
                    name: name.clone(),
                };
                self.declare_external(es, object, file.clone(), line);
            }
        }
    }

    /// A SecretStore or ClusterSecretStore; the first of a name is used.
    fn store(&mut self, document: &Node, context: &FileContext<'_>, kind: &str) {
        let parsed = if kind == "SecretStore" {
            self.object::<SecretStore>(document, context, kind)
                .map(|(store, object)| {
                    let key = StoreKey {
                        kind: StoreKind::SecretStore,
                        namespace: Some(object.namespace),
                        name: object.name,
                    };
                    (key, store.spec)
                })
        } else {
            self.parse::<ClusterSecretStore>(document, context, kind)
                .map(|(store, name)| {
                    let key = StoreKey {
                        kind: StoreKind::ClusterSecretStore,
                        namespace: None,
                        name,
                    };
                    (key, store.spec.0)
                })
        };
        let Some((key, spec)) = parsed else {
            return;
        };
        if self.stores.iter().any(|s| s.key == key) {
            return self.problem(
                &context.shown,
                Some(document.line),
                format!("{key} is declared twice: this one is ignored; keep one"),
            );
        }
        self.stores.push(Store {
            key,
            uid: String::new(),
            generation: 0,
            spec,
        });
    }

    /// Two sources of one Secret would write it in turns: neither is synced, both are named.
    fn reject_duplicates(&mut self) {
        let mut by_target: BTreeMap<SecretRef, Vec<(String, usize)>> = BTreeMap::new();
        let places = self
            .sealed
            .iter()
            .map(|s| (&s.target, &s.file, s.line))
            .chain(self.external.iter().map(|s| (&s.target, &s.file, s.line)));
        for (target, file, line) in places {
            by_target
                .entry(target.clone())
                .or_default()
                .push((file.clone(), line));
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
        let single = |target: &SecretRef| by_target.get(target).is_some_and(|p| p.len() == 1);
        self.sealed.retain(|source| single(&source.target));
        self.external.retain(|source| single(&source.target));
    }
}

/// The most the ExternalSecrets that the ClusterExternalSecrets of one repository make
/// may hold, counted as JSON (each a copy of its ClusterExternalSecret's spec and
/// metadata).
const MAX_STAMPED_BYTES: usize = 256 << 20;
/// What a stamp holds besides them, counted against [`MAX_STAMPED_BYTES`] (so that at
/// most about a million are made).
const STAMP_OVERHEAD: usize = 256;
/// The longest object name (a DNS subdomain).
const MAX_NAME: usize = 253;
/// The most label comparisons the ClusterExternalSecrets of one repository may take to
/// select their Namespaces ([`selector_work`] times the Namespaces), a few seconds.
const MAX_SELECTOR_WORK: usize = 50_000_000;

/// The comparisons matching the namespace selectors of `ces` takes per Namespace, at most.
fn selector_work(ces: &ClusterExternalSecret) -> usize {
    let selector = |s: &LabelSelector| {
        1 + s.match_labels.as_ref().map_or(0, BTreeMap::len)
            + s.match_expressions
                .iter()
                .flatten()
                .map(|e| 1 + e.values.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    };
    ces.spec
        .namespace_selectors
        .iter()
        .chain(ces.spec.namespace_selector.iter())
        .map(selector)
        .sum()
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
                "ces.yaml",
                "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: api}\nspec: {externalSecretSpec: {}, namespaceSelectors: [{matchLabels: {env: none}}]}\n",
            ),
        ]);
        assert_eq!(repository.problems, []);
        assert_eq!(repository.skipped.len(), 1);
        assert!(
            repository.skipped[0].starts_with("ClusterExternalSecret api ("),
            "{:?}",
            repository.skipped
        );
        assert!(
            repository.skipped[0].contains("ces.yaml:1): selects no Namespace"),
            "{:?}",
            repository.skipped
        );
        let targets: Vec<String> = repository
            .sealed
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
    fn a_source_that_does_not_parse_prunes_nothing() {
        for document in [
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: app}\nspec: {encryptedData: [not, a, map]}\n",
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {namespace: app}\nspec: {}\n",
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: api}\nspec: {}\n",
            // A misspelt kind, or a kind or apiVersion line lost, may have been a source.
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecrets\nmetadata: {name: db, namespace: app}\n",
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecrets\nmetadata: {name: api, namespace: app}\n",
            "apiVersion: bitnami.com/v1alpha1\nmetadata: {name: db, namespace: app}\n",
            "kind: SealedSecret\nmetadata: {name: db, namespace: app}\n",
        ] {
            let (repository, _dir) = read_text(&[("bad.yaml", document)]);
            assert_eq!(repository.problems.len(), 1, "{document}");
            assert!(
                repository.incomplete,
                "the Secret it made is unknown: {document}"
            );
        }
        let (repository, _dir) = read_text(&[("typo.yaml", "apiVersion: v1\nkind: Secrett\n")]);
        assert_eq!(repository.problems.len(), 1);
        assert!(!repository.incomplete, "not a source's kind");
    }

    #[test]
    fn cluster_external_secrets_are_stamped_into_the_namespaces_they_select() {
        let (repository, _dir) = read_text(&[
            (
                "namespaces.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\n\
                 apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n",
            ),
            (
                "ces.yaml",
                "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: api, annotations: {external-secrets.io/force-sync: '1'}}\n\
                 spec:\n  externalSecretName: api-es\n  externalSecretMetadata: {labels: {app: api}}\n\
                 \x20 namespaceSelectors: [{matchLabels: {team: shop}}]\n  namespaces: [listed]\n\
                 \x20 externalSecretSpec: {secretStoreRef: {kind: ClusterSecretStore, name: aws}, target: {name: api-token}}\n\
                 ---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: by-name}\n\
                 spec: {externalSecretSpec: {}, namespaceSelectors: [{matchLabels: {kubernetes.io/metadata.name: other}}]}\n\
                 ---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: all}\n\
                 spec: {externalSecretSpec: {}, namespaceSelector: {}}\n\
                 ---\napiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: broken}\nspec: 3\n",
            ),
            (
                "taken.yaml",
                "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: by-name, namespace: other}\nspec: {}\n",
            ),
        ]);
        let stamped: Vec<(String, String)> = repository
            .external
            .iter()
            .map(|es| (es.target.to_string(), es.place()))
            .collect();
        let targets: Vec<&str> = stamped.iter().map(|(t, _)| t.as_str()).collect();
        // `all` selects every declared Namespace, not the one `api` lists.
        assert_eq!(
            targets,
            [
                "listed/api-token",
                "other/all",
                "other/by-name",
                "shop/all",
                "shop/api-token"
            ]
        );
        assert!(stamped[0].1.ends_with("ces.yaml:1"), "{stamped:?}");
        assert!(stamped[2].1.ends_with("taken.yaml:1"), "{stamped:?}");
        let es = &repository.external[4].source;
        assert_eq!(es.metadata.name.as_deref(), Some("api-es"));
        assert_eq!(es.labels()["app"], "api");
        assert_eq!(es.annotations()["external-secrets.io/force-sync"], "1");
        assert_eq!(repository.problems.len(), 2, "{:?}", repository.problems);
        assert!(
            repository.problems[1]
                .to_string()
                .contains("not a valid ClusterExternalSecret"),
            "{:?}",
            repository.problems
        );
        assert!(
            repository.incomplete,
            "what an invalid ClusterExternalSecret made is not pruned"
        );
        let problem = repository.problems[0].to_string();
        assert!(
            problem.contains("ClusterExternalSecret by-name (")
                && problem.contains("ExternalSecret other/by-name is already declared at ")
                && problem.contains("not stamped into other"),
            "{problem}"
        );
        assert!(repository.skipped.is_empty());
    }

    #[test]
    fn cluster_external_secrets_selectors_take_bounded_work() {
        // 1,000 Namespaces against a selector of 50,000 values: 50 million comparisons.
        let namespaces: Vec<String> = (0..1000)
            .map(|i| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns-{i}}}\n"))
            .collect();
        let values: Vec<String> = (0..50_000).map(|i| format!("v{i}")).collect();
        let ces = format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: slow}}\n\
             spec: {{externalSecretSpec: {{}}, namespaceSelector: {{matchExpressions: \
             [{{key: team, operator: In, values: [{}]}}]}}}}\n",
            values.join(", ")
        );
        let (repository, _dir) = read_text(&[
            ("namespaces.yaml", &namespaces.join("---\n")),
            ("ces.yaml", &ces),
            (
                "twice.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-1}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {}\n",
            ),
        ]);
        let problems: Vec<String> = repository.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("ClusterExternalSecret slow (")
                && problems[0]
                    .contains("not stamped: matching its selectors against the 1000 Namespaces"),
            "{problems:?}"
        );
        assert!(repository.incomplete, "nothing is pruned");
        assert!(problems[1].contains("twice.yaml:1: Namespace ns-1 is declared twice"));
        assert!(
            problems[2].contains("Namespace without metadata.name: ignored"),
            "{problems:?}"
        );
    }

    #[test]
    fn cluster_external_secrets_stamp_at_most_256_mib() {
        // 1,100 namespaces of a 250 kB spec: 275 MB of copies.
        let namespaces: Vec<String> = (0..1100).map(|i| format!("ns-{i}")).collect();
        let entries: Vec<String> = (0..2500)
            .map(|i| {
                format!(
                    "{{secretKey: k{i:05}, remoteRef: {{key: {}}}}}",
                    "x".repeat(60)
                )
            })
            .collect();
        let ces = format!(
            "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {{name: big}}\n\
             spec: {{namespaces: [{}], externalSecretSpec: {{data: [{}]}}}}\n",
            namespaces.join(", "),
            entries.join(", ")
        );
        let (repository, _dir) = read_text(&[("ces.yaml", &ces)]);
        assert!(repository.external.is_empty());
        assert_eq!(
            repository.declared.len(),
            1100,
            "its Secrets are declared, so not pruned"
        );
        assert_eq!(repository.problems.len(), 1, "{:?}", repository.problems);
        let problem = repository.problems[0].to_string();
        assert!(
            problem.contains("ClusterExternalSecret big (")
                && problem.contains("not stamped: its 1100 ExternalSecrets (")
                && problem.contains("over 256 MiB"),
            "{problem}"
        );
    }

    #[test]
    fn bad_input_is_reported_with_file_and_line_and_the_rest_is_read() {
        let (repository, _dir) = read_text(&[
            ("good.yaml", SEALED),
            (
                "broken.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\nkind: [\n",
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
                ("broken.yaml".to_string(), Some(5)),
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
            .sealed
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

    #[test]
    fn external_secrets_their_stores_and_config_maps_are_read() {
        let store = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: fake}\nspec: {provider: {fake: {data: [{key: a, value: b}]}}}\n";
        let (repository, _dir) = read_text(&[
            (
                "dev/es.yaml",
                "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: api}\nspec:\n  secretStoreRef: {name: fake}\n  target: {name: api-secret}\n",
            ),
            ("dev/store.yaml", store),
            ("dev/again.yaml", store),
            (
                "dev/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tpl}\ndata: {t: x}\n",
            ),
            (
                "dev/cm2.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tpl}\ndata: {t: y}\n",
            ),
            (
                "dev/nameless.yaml",
                "apiVersion: v1\nkind: ConfigMap\ndata: {t: z}\n",
            ),
            (
                "cluster.yaml",
                "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: shared}\nspec: {provider: {fake: {data: []}}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {team: a}}\n",
            ),
            ("dev/kustomization.yaml", "namespace: dev\nresources: []\n"),
            (
                "bad.yaml",
                "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: x, namespace: dev}\nspec: {data: 3}\n",
            ),
        ]);
        let external: Vec<String> = repository
            .external
            .iter()
            .map(|s| s.target.to_string())
            .collect();
        assert_eq!(
            external,
            ["dev/api-secret"],
            "the target's name, the kustomization's namespace"
        );
        assert!(repository.declared.iter().any(|d| d.name == "api-secret"));
        let stores: Vec<String> = repository
            .stores
            .iter()
            .map(|s| s.key.to_string())
            .collect();
        assert_eq!(
            stores,
            ["ClusterSecretStore shared", "SecretStore dev/fake"]
        );
        assert_eq!(
            repository.config_maps[0].metadata.namespace.as_deref(),
            Some("dev")
        );
        assert_eq!(repository.namespaces.len(), 1);
        let problems: Vec<String> = repository
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("dev/nameless.yaml:1: ConfigMap without metadata.name")),
            "{problems:#?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("dev/cm2.yaml:1: ConfigMap dev/tpl is declared twice")),
            "{problems:#?}"
        );
        assert_eq!(repository.config_maps.len(), 1, "the first one counts");
        assert!(
            problems[0].contains("bad.yaml:1: not a valid ExternalSecret"),
            "{problems:#?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("SecretStore dev/fake is declared twice")),
            "{problems:#?}"
        );
    }
}
