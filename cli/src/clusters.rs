//! Multi-cluster sealing: the clusters one `seal` writes a SealedSecret for, each with its
//! own certificate and output file, from a clusters file or `--cluster-cert NAME=CERT`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::audit::yaml::parse_stream;
use crate::cluster::{ClusterTarget, KubeconfigChoice};
use crate::files::read_input;
use crate::ops::CertSource;

/// Where `{cluster}` in `-w` is replaced by each cluster's name.
pub const CLUSTER_PLACEHOLDER: &str = "{cluster}";

/// One cluster to seal for.
#[derive(Debug, Clone)]
pub struct SealTarget {
    pub name: String,
    pub cert: CertSource,
    pub output: PathBuf,
}

/// A clusters file: `clusters:` with each cluster's `name`, `cert` (or `context`) and
/// `overlay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClustersFile {
    clusters: Vec<ClusterEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClusterEntry {
    name: String,
    /// The cluster's sealing certificate: a file (relative to the clusters file) or URL...
    cert: Option<String>,
    /// ... or the kubeconfig context whose controller serves it (`/v1/cert.pem`).
    context: Option<String>,
    /// The controller's Service and namespace there (default: the command's flags).
    controller_name: Option<String>,
    controller_namespace: Option<String>,
    /// The folder (relative to the clusters file) its SealedSecrets go to.
    overlay: PathBuf,
}

/// The clusters of `path`, each writing `file_name` (which may hold `{cluster}`) in its
/// overlay. Relative paths in the file are relative to its folder, so that a clusters file
/// at a repository's root works from any working directory. `defaults` gives the
/// kubeconfig and controller of clusters that name a context but not all of those.
pub fn from_clusters_file(
    path: &Path,
    file_name: &str,
    defaults: &ClusterTarget,
) -> anyhow::Result<Vec<SealTarget>> {
    let (text, source) = read_input(Some(path))?;
    let (documents, error) = parse_stream(&text);
    if let Some(error) = error {
        bail!(
            "{source}: line {}: not valid YAML ({}): fix it",
            error.line,
            error.reason
        );
    }
    let [document] = documents.as_slice() else {
        bail!("{source}: expected one YAML document with a `clusters:` list");
    };
    let file: ClustersFile = serde_json::from_value(document.to_json()).with_context(|| {
        format!("{source}: expected `clusters:`, a list of {{name, cert, overlay}}")
    })?;
    if Path::new(file_name).is_absolute() {
        bail!("-w {file_name}: with --clusters, give a file name relative to each overlay");
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let targets = file
        .clusters
        .into_iter()
        .map(|entry| {
            let cert = match (entry.cert, &entry.context) {
                (Some(cert), None) if cert.contains("://") => Some(cert),
                (Some(cert), None) => Some(base.join(cert).display().to_string()),
                (None, Some(_)) => None,
                _ => bail!(
                    "{source}: cluster {:?}: give either `cert` (a file or URL) or `context` \
                     (whose controller serves the certificate)",
                    entry.name
                ),
            };
            let cluster = ClusterTarget {
                kubeconfig: KubeconfigChoice {
                    path: defaults.kubeconfig.path.clone(),
                    context: entry.context,
                },
                controller_name: entry
                    .controller_name
                    .unwrap_or_else(|| defaults.controller_name.clone()),
                controller_namespace: entry
                    .controller_namespace
                    .unwrap_or_else(|| defaults.controller_namespace.clone()),
            };
            Ok(SealTarget {
                output: base
                    .join(&entry.overlay)
                    .join(file_name.replace(CLUSTER_PLACEHOLDER, &entry.name)),
                name: entry.name,
                cert: CertSource { cert, cluster },
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    checked(targets, &source)
}

/// The clusters of `--cluster-cert NAME=CERT` flags, each writing `output` with `{cluster}`
/// replaced by its name.
pub fn from_cluster_certs(specs: &[String], output: &str) -> anyhow::Result<Vec<SealTarget>> {
    if !output.contains(CLUSTER_PLACEHOLDER) {
        bail!(
            "--cluster-cert needs -w with {CLUSTER_PLACEHOLDER} in it, e.g. -w \
             overlays/{CLUSTER_PLACEHOLDER}/sealed.yaml: one file per cluster"
        );
    }
    let targets = specs
        .iter()
        .map(|spec| {
            let (name, cert) = spec
                .split_once('=')
                .with_context(|| format!("--cluster-cert {spec}: expected NAME=FILE|URL"))?;
            Ok(SealTarget {
                name: name.to_string(),
                cert: CertSource {
                    cert: Some(cert.to_string()),
                    cluster: ClusterTarget::default(),
                },
                output: PathBuf::from(output.replace(CLUSTER_PLACEHOLDER, name)),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    checked(targets, "--cluster-cert")
}

/// Refuses no clusters, names that are not safe in paths, and two clusters sharing a name
/// or an output file (one would overwrite the other).
fn checked(targets: Vec<SealTarget>, source: &str) -> anyhow::Result<Vec<SealTarget>> {
    if targets.is_empty() {
        bail!("{source}: no cluster given");
    }
    let (mut names, mut outputs) = (BTreeSet::new(), BTreeSet::new());
    for target in &targets {
        let name = &target.name;
        let safe = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !safe {
            bail!(
                "{source}: cluster name {name:?} is not a plain name: use letters, digits, '-', \
                 '_' and '.'"
            );
        }
        if !names.insert(name) {
            bail!("{source}: cluster {name:?} is listed twice");
        }
        if !outputs.insert(&target.output) {
            bail!(
                "{source}: cluster {name:?} would write {} too: give each cluster its own file",
                target.output.display()
            );
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_file_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clusters.yaml");
        std::fs::write(
            &file,
            "# one key per cluster\nclusters:\n- {name: dev, cert: certs/dev.pem, overlay: overlays/dev}\n- name: prod\n  cert: https://prod.example/v1/cert.pem\n  overlay: overlays/prod\n- {name: qa, context: qa-admin, controllerNamespace: sealing, overlay: overlays/qa}\n",
        )
        .unwrap();
        let defaults = ClusterTarget {
            controller_name: "sealed-secrets-controller".into(),
            controller_namespace: "kube-system".into(),
            ..ClusterTarget::default()
        };
        let targets = from_clusters_file(&file, "db.yaml", &defaults).unwrap();
        let summary: Vec<_> = targets
            .iter()
            .map(|t| (t.name.as_str(), t.cert.cert.clone(), t.output.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "dev",
                    Some(dir.path().join("certs/dev.pem").display().to_string()),
                    dir.path().join("overlays/dev/db.yaml"),
                ),
                (
                    "prod",
                    Some("https://prod.example/v1/cert.pem".into()),
                    dir.path().join("overlays/prod/db.yaml"),
                ),
                ("qa", None, dir.path().join("overlays/qa/db.yaml")),
            ]
        );
        let qa = &targets[2].cert.cluster;
        assert_eq!(qa.kubeconfig.context.as_deref(), Some("qa-admin"));
        assert_eq!(
            (
                qa.controller_name.as_str(),
                qa.controller_namespace.as_str()
            ),
            ("sealed-secrets-controller", "sealing")
        );

        for entry in [
            "{name: dev, overlay: o}",
            "{name: dev, cert: a.pem, context: dev, overlay: o}",
        ] {
            std::fs::write(&file, format!("clusters:\n- {entry}\n")).unwrap();
            let error = from_clusters_file(&file, "db.yaml", &defaults)
                .unwrap_err()
                .to_string();
            assert!(error.contains("give either `cert`"), "{error}");
        }
        std::fs::write(&file, "clusters:\n- {name: dev, cert: a.pem}\n").unwrap();
        let error = format!(
            "{:#}",
            from_clusters_file(&file, "db.yaml", &defaults).unwrap_err()
        );
        assert!(error.contains("missing field `overlay`"), "{error}");
    }

    #[test]
    fn cluster_certs_need_a_placeholder_and_distinct_plain_names() {
        let specs = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let targets = from_cluster_certs(
            &specs(&["dev=dev.pem", "prod=prod.pem"]),
            "o/{cluster}/s.yaml",
        )
        .unwrap();
        assert_eq!(targets[1].output, PathBuf::from("o/prod/s.yaml"));
        for (flags, output, error) in [
            (&["dev=dev.pem"][..], "s.yaml", "needs -w with {cluster}"),
            (&["dev"][..], "{cluster}.yaml", "expected NAME=FILE|URL"),
            (&["../x=a.pem"][..], "{cluster}.yaml", "not a plain name"),
            (
                &["a=1.pem", "a=2.pem"][..],
                "{cluster}.yaml",
                "listed twice",
            ),
        ] {
            let message = from_cluster_certs(&specs(flags), output)
                .unwrap_err()
                .to_string();
            assert!(message.contains(error), "{flags:?}: {message}");
        }
    }
}
