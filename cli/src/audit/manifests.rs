//! The checks of one file's documents (plaintext Secrets, credential-like values, malformed
//! SealedSecrets, unknown kinds), and the facts the checks across files need: declared
//! Secrets, stores and store references, SealedSecrets, Kustomize namespaces.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::credentials::classify;
use super::keys::scan_pem;
use super::report::{Finding, Rule};
use super::walk::{Entry, FileKind};
use super::yaml::{Node, parse_stream};

/// What the checks across files need to know of a file.
#[derive(Debug, Default)]
pub struct Facts {
    pub documents: usize,
    secrets: Vec<Declared>,
    stores: Vec<Store>,
    store_refs: Vec<StoreRef>,
    pub sealed: Vec<SealedDoc>,
    /// The `namespace:` of each folder's kustomization.
    namespaces: BTreeMap<String, String>,
}

impl SealedDoc {
    #[cfg(test)]
    pub fn new(object: String, json: serde_json::Value, file: &str, line: usize) -> Self {
        SealedDoc {
            object,
            json,
            dir: ".".into(),
            file: file.into(),
            line,
        }
    }
}

impl Facts {
    pub fn extend(&mut self, other: Facts) {
        self.documents += other.documents;
        self.secrets.extend(other.secrets);
        self.stores.extend(other.stores);
        self.store_refs.extend(other.store_refs);
        self.sealed.extend(other.sealed);
        self.namespaces.extend(other.namespaces);
    }
}

/// A manifest that makes a Secret (a Secret or a SealedSecret).
#[derive(Debug)]
struct Declared {
    object: String,
    namespace: String,
    name: String,
    dir: String,
    file: String,
    line: usize,
}

#[derive(Debug)]
struct Store {
    cluster: bool,
    namespace: Option<String>,
    name: String,
}

#[derive(Debug)]
struct StoreRef {
    object: String,
    namespace: Option<String>,
    cluster: bool,
    name: String,
    file: String,
    line: usize,
}

/// A SealedSecret to check with keys or the controller: ciphertext only, as JSON.
#[derive(Debug)]
pub struct SealedDoc {
    pub object: String,
    pub json: serde_json::Value,
    dir: String,
    pub file: String,
    pub line: usize,
}

/// Core (`v1`) kinds: any other kind under `apiVersion: v1` is a typo.
/// The API group of an `apiVersion` ("" for the core `v1`).
pub(crate) fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// Whether `kind` exists in the API of `api_version`, for the groups whose kinds are known
/// here (core, Sealed Secrets, External Secrets, Kustomize); any kind of another group is.
pub(crate) fn is_known_kind(api_version: &str, kind: &str) -> bool {
    match api_group(api_version) {
        "" => CORE_KINDS.contains(&kind),
        "bitnami.com" => kind == "SealedSecret",
        "external-secrets.io" => matches!(
            kind,
            "ExternalSecret"
                | "ClusterExternalSecret"
                | "SecretStore"
                | "ClusterSecretStore"
                | "PushSecret"
                | "ClusterPushSecret"
        ),
        "kustomize.config.k8s.io" => matches!(kind, "Kustomization" | "Component"),
        _ => true,
    }
}

const CORE_KINDS: &[&str] = &[
    "Binding",
    "ComponentStatus",
    "ConfigMap",
    "Endpoints",
    "Event",
    "LimitRange",
    "List",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "ResourceQuota",
    "Secret",
    "Service",
    "ServiceAccount",
];

/// Reads and checks one file.
pub fn scan_file(
    entry: &Entry,
    now: time::OffsetDateTime,
    expiry_warning: std::time::Duration,
) -> (Vec<Finding>, Facts) {
    let mut scan = Scan {
        entry,
        findings: Vec::new(),
        facts: Facts::default(),
    };
    let text = match entry.read() {
        Ok(text) => text,
        Err(reason) => {
            scan.file_finding(Rule::UnreadableFile, None, format!("{reason}: not audited"));
            return (scan.findings, scan.facts);
        }
    };
    match entry.kind {
        FileKind::Pem => scan.findings = scan_pem(&entry.display, &text, now, expiry_warning),
        FileKind::Yaml => {
            let (documents, error) = parse_stream(&text);
            for document in &documents {
                scan.document(document);
            }
            if let Some(error) = error {
                scan.file_finding(
                    Rule::InvalidYaml,
                    Some(error.line),
                    format!(
                        "not valid YAML: {}; fix it (nothing after this line was audited)",
                        error.reason
                    ),
                );
            }
        }
    }
    (scan.findings, scan.facts)
}

struct Scan<'a> {
    entry: &'a Entry,
    findings: Vec<Finding>,
    facts: Facts,
}

/// `Kind namespace/name`, or `Kind name` without a namespace.
fn object_of(kind: &str, node: &Node) -> String {
    let name = node
        .path(&["metadata", "name"])
        .and_then(|n| n.scalar())
        .map(|s| s.text());
    let namespace = node
        .path(&["metadata", "namespace"])
        .and_then(|n| n.scalar())
        .map(|s| s.text());
    match (namespace, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        (_, None) => format!("{kind} (no name)"),
    }
}

fn file_name(entry: &Entry) -> &str {
    entry
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
}

/// Helm values files by the names charts and tools use: `values.yaml`, `values-prod.yaml`,
/// `values.prod.yaml`, `prod-values.yaml`.
fn is_values_file(entry: &Entry) -> bool {
    let stem = file_name(entry)
        .rsplit_once('.')
        .map_or("", |(stem, _)| stem);
    stem == "values"
        || ["values-", "values.", "values_"]
            .iter()
            .any(|p| stem.starts_with(p))
        || ["-values", ".values", "_values"]
            .iter()
            .any(|s| stem.ends_with(s))
}

fn is_kustomization_file(entry: &Entry) -> bool {
    matches!(file_name(entry), "kustomization.yaml" | "kustomization.yml")
}

impl Scan<'_> {
    fn file_finding(&mut self, rule: Rule, line: Option<usize>, message: String) {
        self.findings.push(Finding {
            rule,
            file: self.entry.display.clone(),
            line,
            object: None,
            message,
        });
    }

    fn finding(&mut self, rule: Rule, line: usize, object: &str, message: String) {
        self.findings.push(Finding {
            rule,
            file: self.entry.display.clone(),
            line: Some(line),
            object: Some(object.to_string()),
            message,
        });
    }

    fn document(&mut self, document: &Node) {
        self.facts.documents += 1;
        if !document.is_map() {
            return;
        }
        let kind = document.entry("kind");
        let api_version = document.str_at("apiVersion");
        match (kind, api_version) {
            (None, None) => {
                if is_kustomization_file(self.entry) {
                    self.kustomization(document);
                } else if is_values_file(self.entry) {
                    self.values(document, &mut String::new(), "");
                }
            }
            (None, Some(_)) => {
                if !matches!(file_name(self.entry), "Chart.yaml" | "Chart.yml")
                    && !is_kustomization_file(self.entry)
                    && !is_values_file(self.entry)
                {
                    self.file_finding(
                        Rule::InvalidManifest,
                        Some(document.line),
                        "manifest with an apiVersion but no kind: add its kind".into(),
                    );
                }
            }
            (Some((key, kind)), api_version) => match kind.scalar().and_then(|s| s.as_str()) {
                None => self.file_finding(
                    Rule::InvalidManifest,
                    Some(key.line),
                    "kind is not a string: set it to the object's kind".into(),
                ),
                Some(kind) => match api_version {
                    Some(api_version) => self.manifest(document, api_version, kind, key.line),
                    None if is_kustomization_file(self.entry) && kind == "Kustomization" => {
                        self.kustomization(document)
                    }
                    None => {
                        let object = object_of(kind, document);
                        self.finding(
                            Rule::InvalidManifest,
                            key.line,
                            &object,
                            format!("{object} has no apiVersion: add it"),
                        )
                    }
                },
            },
        }
    }

    fn manifest(&mut self, document: &Node, api_version: &str, kind: &str, line: usize) {
        let group = api_group(api_version);
        let known = is_known_kind(api_version, kind);
        let object = object_of(kind, document);
        if !known {
            let group = if group.is_empty() { "core (v1)" } else { group };
            self.finding(
                Rule::UnknownKind,
                line,
                &object,
                format!(
                    "{object}: the {group} API has no kind {kind:?}: fix the kind or the apiVersion"
                ),
            );
            return;
        }
        match (group, kind) {
            ("", "List") => {
                for item in document.get("items").map(Node::items).unwrap_or_default() {
                    self.document(item);
                }
                // The list is a wrapper, not a document of its own.
                self.facts.documents -= 1;
            }
            ("", "Secret") => self.secret(document, &object, line),
            ("", "ConfigMap") => {
                let data = document.get("data");
                for (key, value) in data.map(Node::entries).unwrap_or_default() {
                    let (Some(key_text), Some(text)) = (
                        key.scalar().map(|s| s.text()),
                        value.scalar().and_then(|s| s.as_str()),
                    ) else {
                        continue;
                    };
                    if let Some(found) = classify(key_text, text) {
                        self.finding(
                            found.rule,
                            key.line,
                            &object,
                            format!(
                                "{object} key {key_text:?} looks like {}: move it into a \
                                 SealedSecret and read it from the Secret",
                                found.what
                            ),
                        );
                    }
                }
            }
            ("bitnami.com", "SealedSecret") => self.sealed_secret(document, &object, line),
            ("external-secrets.io", "SecretStore" | "ClusterSecretStore") => {
                if let Some(name) = document
                    .path(&["metadata", "name"])
                    .and_then(|n| n.scalar())
                {
                    self.facts.stores.push(Store {
                        cluster: kind == "ClusterSecretStore",
                        namespace: document
                            .path(&["metadata", "namespace"])
                            .and_then(|n| n.scalar())
                            .map(|s| s.text().to_string()),
                        name: name.text().to_string(),
                    });
                }
            }
            ("external-secrets.io", "ExternalSecret") => {
                self.store_refs(document, &object, document.get("spec"), false)
            }
            ("external-secrets.io", "ClusterExternalSecret") => self.store_refs(
                document,
                &object,
                document.path(&["spec", "externalSecretSpec"]),
                true,
            ),
            ("kustomize.config.k8s.io", "Kustomization" | "Component") => {
                self.kustomization(document)
            }
            _ => {}
        }
    }

    fn secret(&mut self, document: &Node, object: &str, line: usize) {
        self.declare(document, object, line);
        let mut keys = Vec::new();
        let mut first_line: Option<usize> = None;
        for field in ["data", "stringData"] {
            let Some((field_key, values)) = document.entry(field) else {
                continue;
            };
            for (key, value) in values.entries() {
                if value
                    .scalar()
                    .and_then(|s| s.as_str())
                    .is_some_and(|v| !v.is_empty())
                {
                    first_line = Some(first_line.map_or(field_key.line, |l| l.min(field_key.line)));
                    keys.push(
                        key.scalar()
                            .map(|s| s.text().to_string())
                            .unwrap_or_default(),
                    );
                }
            }
        }
        let Some(first_line) = first_line else {
            return;
        };
        let shown = if keys.len() > 5 {
            format!("{}, and {} more", keys[..5].join(", "), keys.len() - 5)
        } else {
            keys.join(", ")
        };
        self.finding(
            Rule::PlaintextSecret,
            first_line,
            object,
            format!(
                "{object} holds {} plaintext values (keys: {shown}): seal it (sealsync seal) \
                 and commit the SealedSecret instead, and rotate the values (Git history keeps \
                 them)",
                keys.len()
            ),
        );
    }

    fn declare(&mut self, document: &Node, object: &str, line: usize) {
        let text = |key: &str| {
            document
                .path(&["metadata", key])
                .and_then(|n| n.scalar())
                .map(|s| s.text().to_string())
        };
        if let Some(name) = text("name") {
            self.facts.secrets.push(Declared {
                object: object.to_string(),
                namespace: text("namespace").unwrap_or_default(),
                name,
                dir: self.entry.dir.clone(),
                file: self.entry.display.clone(),
                line,
            });
        }
    }

    fn sealed_secret(&mut self, document: &Node, object: &str, line: usize) {
        if document
            .path(&["metadata", "name"])
            .and_then(|n| n.scalar())
            .is_none()
        {
            self.finding(
                Rule::InvalidManifest,
                line,
                object,
                format!("{object} has no metadata.name: set the name it was sealed for"),
            );
            return;
        }
        self.declare(document, object, line);
        let encrypted = document.path(&["spec", "encryptedData"]);
        for (key, value) in encrypted.map(Node::entries).unwrap_or_default() {
            let key_text = key.scalar().map(|s| s.text()).unwrap_or_default();
            let valid = value
                .scalar()
                .and_then(|s| s.as_str())
                .is_some_and(|v| STANDARD.decode(v.trim()).is_ok_and(|b| b.len() > 2));
            if !valid {
                self.finding(
                    Rule::SealedSecretMalformed,
                    key.line,
                    object,
                    format!(
                        "{object} value {key_text:?} is not base64 ciphertext: it will never \
                         open; seal the value again"
                    ),
                );
            }
        }
        self.facts.sealed.push(SealedDoc {
            object: object.to_string(),
            json: document.to_json(),
            dir: self.entry.dir.clone(),
            file: self.entry.display.clone(),
            line,
        });
    }

    /// The stores an ExternalSecret's spec reads from: `secretStoreRef`, and the
    /// `sourceRef.storeRef` of its `data` and `dataFrom` entries.
    fn store_refs(
        &mut self,
        document: &Node,
        object: &str,
        spec: Option<&Node>,
        any_namespace: bool,
    ) {
        let Some(spec) = spec else {
            return;
        };
        let namespace = (!any_namespace)
            .then(|| {
                document
                    .path(&["metadata", "namespace"])
                    .and_then(|n| n.scalar())
            })
            .flatten()
            .map(|s| s.text().to_string());
        let sources = ["data", "dataFrom"]
            .iter()
            .flat_map(|field| spec.get(field).map(Node::items).unwrap_or_default())
            .filter_map(|item| item.get("sourceRef")?.entry("storeRef"));
        for (key, reference) in spec.entry("secretStoreRef").into_iter().chain(sources) {
            let Some(name) = reference.get("name").and_then(|n| n.scalar()) else {
                continue;
            };
            self.facts.store_refs.push(StoreRef {
                object: object.to_string(),
                namespace: namespace.clone(),
                cluster: reference.str_at("kind") == Some("ClusterSecretStore"),
                name: name.text().to_string(),
                file: self.entry.display.clone(),
                line: key.line,
            });
        }
    }

    fn kustomization(&mut self, document: &Node) {
        if let Some(namespace) = document.str_at("namespace") {
            self.facts
                .namespaces
                .insert(self.entry.dir.clone(), namespace.to_string());
        }
        for generator in ["secretGenerator", "configMapGenerator"] {
            for item in document.get(generator).map(Node::items).unwrap_or_default() {
                let name = item.str_at("name").unwrap_or("(no name)").to_string();
                for literal in item.get("literals").map(Node::items).unwrap_or_default() {
                    let Some((key, value)) = literal
                        .scalar()
                        .and_then(|s| s.as_str())
                        .and_then(|l| l.split_once('='))
                    else {
                        continue;
                    };
                    if let Some(found) = classify(key, value) {
                        let object = format!("{generator} {name}");
                        self.finding(
                            found.rule,
                            literal.line,
                            &object,
                            format!(
                                "{object} literal {key:?} looks like {}: seal it into a \
                                 SealedSecret instead of generating the Secret from plaintext",
                                found.what
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Every string leaf of a Helm values file, by its dotted path.
    fn values(&mut self, node: &Node, path: &mut String, key: &str) {
        let length = path.len();
        if let Some(text) = node.scalar().and_then(|s| s.as_str())
            && let Some(found) = classify(key, text)
        {
            let object = format!("Helm value {path}");
            self.finding(
                found.rule,
                node.line,
                &object,
                format!(
                    "Helm value {path} looks like {}: move it into a SealedSecret and point \
                     the chart at that Secret (often an existingSecret value)",
                    found.what
                ),
            );
        }
        for (index, item) in node.items().iter().enumerate() {
            path.push_str(&format!("[{index}]"));
            self.values(item, path, key);
            path.truncate(length);
        }
        for (child_key, value) in node.entries() {
            let child = child_key.scalar().map(|s| s.text()).unwrap_or_default();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(child);
            self.values(value, path, child);
            path.truncate(length);
        }
    }
}

/// The checks across files: duplicate Secrets within a folder, store references the tree
/// does not declare; and SealedSecrets without a namespace get their kustomization's.
pub fn cross_checks(facts: &mut Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    facts
        .secrets
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let mut first: HashMap<(&str, &str, &str), &Declared> = HashMap::new();
    for declared in &facts.secrets {
        let key = (
            declared.dir.as_str(),
            declared.namespace.as_str(),
            declared.name.as_str(),
        );
        match first.get(&key) {
            None => {
                first.insert(key, declared);
            }
            Some(earlier) => findings.push(Finding {
                rule: Rule::DuplicateSecret,
                file: declared.file.clone(),
                line: Some(declared.line),
                object: Some(declared.object.clone()),
                message: format!(
                    "{} makes the same Secret as {} at {}:{}: keep one (both would write one \
                     Secret)",
                    declared.object, earlier.object, earlier.file, earlier.line
                ),
            }),
        }
    }
    for reference in &facts.store_refs {
        let declared = facts.stores.iter().any(|store| {
            store.cluster == reference.cluster
                && store.name == reference.name
                && (reference.cluster
                    || store.namespace.is_none()
                    || reference.namespace.is_none()
                    || store.namespace == reference.namespace)
        });
        if !declared {
            let kind = if reference.cluster {
                "ClusterSecretStore"
            } else {
                "SecretStore"
            };
            findings.push(Finding {
                rule: Rule::UndeclaredSecretStore,
                file: reference.file.clone(),
                line: Some(reference.line),
                object: Some(reference.object.clone()),
                message: format!(
                    "{} reads from {kind} {:?}, which no manifest in the audited tree \
                     declares: add it, fix the storeRef, or audit the folder that declares it",
                    reference.object, reference.name
                ),
            });
        }
    }
    for sealed in &mut facts.sealed {
        let metadata = &mut sealed.json["metadata"];
        if metadata
            .get("namespace")
            .is_none_or(serde_json::Value::is_null)
            && let Some(namespace) = facts.namespaces.get(&sealed.dir)
        {
            metadata["namespace"] = namespace.clone().into();
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    type Found = Vec<(Rule, Option<usize>)>;

    /// Scans `text` as the file `name`: the (rule, line) pairs, facts and messages.
    fn scan(name: &str, text: &str) -> (Found, Facts, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let entry = Entry {
            path: PathBuf::from(&path),
            display: name.into(),
            dir: ".".into(),
            kind: FileKind::Yaml,
        };
        let (findings, facts) = scan_file(
            &entry,
            time::OffsetDateTime::now_utc(),
            std::time::Duration::ZERO,
        );
        let messages = findings.iter().map(|f| f.message.clone()).collect();
        (
            findings.iter().map(|f| (f.rule, f.line)).collect(),
            facts,
            messages,
        )
    }

    #[test]
    fn plaintext_secrets_are_found_at_their_data_line() {
        let (found, _, messages) = scan(
            "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\nstringData:\n  password: hunter2\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: empty}\ndata: {}\ntype: kubernetes.io/service-account-token\n",
        );
        assert_eq!(found, [(Rule::PlaintextSecret, Some(4))]);
        assert!(messages[0].contains("Secret prod/db holds 1 plaintext values (keys: password)"));
        assert!(!messages[0].contains("hunter2"));
    }

    #[test]
    fn configmaps_values_and_generators_are_checked() {
        let (found, ..) = scan(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata:\n  LOG_LEVEL: debug\n  DB_PASSWORD: hunter22\n",
        );
        assert_eq!(found, [(Rule::CredentialLike, Some(6))]);
        let (found, ..) = scan(
            "values-prod.yaml",
            "image: {tag: '1.2'}\npostgresql:\n  auth:\n    existingSecret: db\n    password: hunter22\nextraEnv:\n  - AKIAIOSFODNN7EXAMPLE\n",
        );
        assert_eq!(
            found,
            [
                (Rule::CredentialLike, Some(5)),
                (Rule::CredentialFormat, Some(7))
            ]
        );
        let (found, ..) = scan(
            "kustomization.yaml",
            "namespace: prod\nsecretGenerator:\n- name: db\n  literals:\n  - user=admin\n  - password=hunter22\n",
        );
        assert_eq!(found, [(Rule::CredentialLike, Some(6))]);
        // The same keys elsewhere are not values files.
        let (found, ..) = scan("compose.yaml", "password: hunter22\n");
        assert!(found.is_empty());
    }

    #[test]
    fn bad_input_is_reported_and_the_rest_scanned() {
        let (found, facts, _) = scan(
            "bad.yaml",
            "apiVersion: v1\nkind: Secrett\nmetadata: {name: a}\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: b}\nspec:\n  encryptedData:\n    k: not base64!\n---\nkind: Deployment\n---\napiVersion: v1\nkind: ConfigMap\ndata: {a: [\n",
        );
        assert_eq!(
            found,
            [
                (Rule::UnknownKind, Some(2)),
                (Rule::SealedSecretMalformed, Some(10)),
                (Rule::InvalidManifest, Some(12)),
                (Rule::InvalidYaml, Some(17)),
            ]
        );
        assert_eq!(facts.sealed.len(), 1);
    }

    #[test]
    fn duplicates_and_undeclared_stores_across_files() {
        let (_, mut facts, _) = scan(
            "a.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: prod}\nspec: {encryptedData: {}}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: vault, namespace: prod}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: x, namespace: prod}\nspec:\n  secretStoreRef: {name: vault}\n  dataFrom:\n  - sourceRef:\n      storeRef: {name: aws, kind: ClusterSecretStore}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: y, namespace: dev}\nspec:\n  secretStoreRef: {name: vault, kind: SecretStore}\n",
        );
        let findings = cross_checks(&mut facts);
        let found: Vec<_> = findings.iter().map(|f| (f.rule, f.line)).collect();
        assert_eq!(
            found,
            [
                (Rule::DuplicateSecret, Some(6)),
                (Rule::UndeclaredSecretStore, Some(21)),
                (Rule::UndeclaredSecretStore, Some(27)),
            ]
        );
        assert!(
            findings[0]
                .message
                .contains("same Secret as Secret prod/db at a.yaml:2")
        );
    }

    #[test]
    fn sealed_secrets_take_their_kustomization_namespace() {
        let (_, mut facts, _) = scan(
            "kustomization.yaml",
            "namespace: prod\n---\napiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db}\nspec: {encryptedData: {}}\n",
        );
        cross_checks(&mut facts);
        assert_eq!(facts.sealed[0].json["metadata"]["namespace"], "prod");
    }
}
