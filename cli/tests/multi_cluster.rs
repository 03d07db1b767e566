//! Multi-cluster sealing, run as the real binary: one `seal` writes a SealedSecret per
//! cluster into its overlay, each opening only with its own cluster's key.

use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

const CLUSTERS: [&str; 3] = ["dev", "staging", "prod"];

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: db, namespace: shop}
stringData: {password: hunter2}
";

struct Repo {
    dir: TempDir,
}

impl Repo {
    /// A repository with a key and certificate per cluster (`keys/<c>.pem`,
    /// `repo/certs/<c>.pem`), an overlay folder per cluster and `secret.yaml`.
    fn new() -> Self {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        for dir in ["keys", "repo/certs"] {
            std::fs::create_dir_all(repo.dir.path().join(dir)).unwrap();
        }
        for cluster in CLUSTERS {
            std::fs::create_dir_all(
                repo.dir
                    .path()
                    .join(format!("repo/apps/db/overlays/{cluster}")),
            )
            .unwrap();
            repo.ok(&[
                "keygen",
                "--bits",
                "2048",
                "--key-out",
                &format!("keys/{cluster}.pem"),
                "--cert-out",
                &format!("repo/certs/{cluster}.pem"),
            ]);
        }
        repo.write("secret.yaml", SECRET);
        repo
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn sealsync(&self, args: &[&str]) -> Output {
        Command::cargo_bin("sealsync")
            .unwrap()
            .current_dir(self.dir.path())
            .env("KUBECONFIG", self.dir.path().join("no-kubeconfig"))
            .env_remove("SEALED_SECRETS_CERT")
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.sealsync(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    }

    fn exists(&self, name: &str) -> bool {
        self.dir.path().join(name).exists()
    }

    /// Which clusters' keys open `file`.
    fn opened_by(&self, file: &str) -> Vec<&'static str> {
        CLUSTERS
            .into_iter()
            .filter(|cluster| {
                let key = format!("keys/{cluster}.pem");
                let out = self.sealsync(&["unseal", "-f", file, "-k", &key]);
                if out.status.success() {
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(text.contains("namespace: shop"), "{text}");
                    assert!(text.contains("password: aHVudGVyMg=="), "{text}");
                }
                out.status.success()
            })
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn overlay(cluster: &str) -> String {
    format!("repo/apps/db/overlays/{cluster}/db-sealed.yaml")
}

#[test]
fn a_clusters_file_seals_once_per_cluster_into_each_overlay() {
    let repo = Repo::new();
    // Paths relative to the clusters file; one certificate as a file:// URL.
    let prod_cert = repo.dir.path().join("repo/certs/prod.pem");
    repo.write(
        "repo/clusters.yaml",
        &format!(
            "# Where each cluster's SealedSecrets go\nclusters:\n\
             - name: dev\n  cert: certs/dev.pem\n  overlay: apps/db/overlays/dev\n\
             - {{name: staging, cert: certs/staging.pem, overlay: apps/db/overlays/staging}}\n\
             - name: prod\n  cert: file://{}\n  overlay: apps/db/overlays/prod\n",
            prod_cert.display()
        ),
    );
    let out = repo.ok(&[
        "seal",
        "-f",
        "secret.yaml",
        "--clusters",
        "repo/clusters.yaml",
        "-w",
        "db-sealed.yaml",
    ]);
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    for cluster in CLUSTERS {
        let wrote = format!("{cluster}: wrote {} (sealed to SHA256:", overlay(cluster));
        assert!(err.contains(&wrote), "{err}");
        assert_eq!(repo.opened_by(&overlay(cluster)), [cluster], "{cluster}");
    }
    assert!(!err.contains("hunter2"));

    // A cluster whose certificate cannot be read: named, and no overlay is written.
    for cluster in CLUSTERS {
        std::fs::remove_file(repo.dir.path().join(overlay(cluster))).unwrap();
    }
    std::fs::remove_file(repo.dir.path().join("repo/certs/staging.pem")).unwrap();
    let out = repo.sealsync(&[
        "seal",
        "-f",
        "secret.yaml",
        "--clusters",
        "repo/clusters.yaml",
        "-w",
        "db-sealed.yaml",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: certificate of cluster staging: open "),
        "{err}"
    );
    for cluster in CLUSTERS {
        assert!(!repo.exists(&overlay(cluster)), "{cluster} written");
    }
}

#[test]
fn cluster_certs_seal_to_a_path_per_cluster() {
    let repo = Repo::new();
    repo.ok(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cluster-cert",
        "dev=repo/certs/dev.pem",
        "--cluster-cert",
        "prod=repo/certs/prod.pem",
        "-w",
        "repo/apps/db/overlays/{cluster}/db-sealed.yaml",
        "-o",
        "json",
    ]);
    for cluster in ["dev", "prod"] {
        let text = std::fs::read_to_string(repo.dir.path().join(overlay(cluster))).unwrap();
        assert!(text.starts_with('{'), "JSON asked for: {text}");
        assert_eq!(repo.opened_by(&overlay(cluster)), [cluster]);
    }
    assert!(!repo.exists(&overlay("staging")));

    for (args, error) in [
        (
            &["--cluster-cert", "dev=repo/certs/dev.pem", "-w", "db.yaml"][..],
            "error: --cluster-cert needs -w with {cluster} in it",
        ),
        (
            &["--cluster-cert", "dev=repo/certs/dev.pem"][..],
            "error: --cluster-cert needs -w FILE",
        ),
        (
            &[
                "--cluster-cert",
                "dev=repo/certs/dev.pem",
                "--cert",
                "repo/certs/dev.pem",
                "-w",
                "{cluster}.yaml",
            ][..],
            "error: --cluster-cert gives each cluster its certificate: drop --cert",
        ),
        (
            &[
                "--cluster-cert",
                "dev=repo/certs/dev.pem",
                "--cluster-cert",
                "qa=repo/certs/prod.pem",
                "-w",
                "repo/apps/db/overlays/{cluster}/x.yaml",
            ][..],
            "error: cluster qa: folder repo/apps/db/overlays/qa does not exist",
        ),
    ] {
        let mut all = vec!["seal", "-f", "secret.yaml"];
        all.extend(args);
        let out = repo.sealsync(&all);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).starts_with(error),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        !repo.exists("repo/apps/db/overlays/dev/x.yaml"),
        "nothing written"
    );
}
