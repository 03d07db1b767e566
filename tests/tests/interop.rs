//! sealsync and the upstream kubeseal open each other's ciphertexts.

use std::path::Path;
use std::process::{Command, Output};

use sealsync_testkit::{Component, binary, project_binary, run_ok};

const SECRET: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"prod"},"data":{"password":"aHVudGVyMg==","blob":"AJ+Slv8="}}"#;

fn sealsync(dir: &Path) -> Command {
    let mut command = Command::new(project_binary("sealsync"));
    command.current_dir(dir).env("KUBECONFIG", dir.join("none"));
    command
}

fn kubeseal(dir: &Path) -> Command {
    let mut command = Command::new(binary(Component::SealedSecrets, "SEALSYNC_KUBESEAL"));
    command.current_dir(dir).env("KUBECONFIG", dir.join("none"));
    command
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.json"), SECRET).unwrap();
    run_ok(sealsync(dir.path()).args(["keygen", "--key-out", "key.pem", "--cert-out", "cert.pem"]));
    dir
}

/// The unsealed Secret (JSON on stdout) carries `SECRET`'s values, byte for byte.
fn assert_holds_the_original_values(out: &Output, scope: &str) {
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==", "scope {scope}");
    assert_eq!(secret["data"]["blob"], "AJ+Slv8=", "scope {scope}");
}

#[test]
fn upstream_kubeseal_seals_and_sealsync_unseals() {
    let dir = setup();
    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        run_ok(kubeseal(dir.path()).args([
            "--cert",
            "cert.pem",
            "--scope",
            scope,
            "-f",
            "secret.json",
            "-w",
            "sealed.json",
        ]));
        let out = run_ok(sealsync(dir.path()).args([
            "unseal",
            "-f",
            "sealed.json",
            "-k",
            "key.pem",
            "-o",
            "json",
        ]));
        assert_holds_the_original_values(&out, scope);
    }
}

#[test]
fn sealsync_seals_and_upstream_kubeseal_unseals() {
    let dir = setup();
    for scope in ["strict", "namespace-wide", "cluster-wide"] {
        run_ok(sealsync(dir.path()).args([
            "seal",
            "--cert",
            "cert.pem",
            "--scope",
            scope,
            "-f",
            "secret.json",
            "-w",
            "sealed.yaml",
        ]));
        let out = run_ok(kubeseal(dir.path()).args([
            "--recovery-unseal",
            "--recovery-private-key",
            "key.pem",
            "-f",
            "sealed.yaml",
            "-o",
            "json",
        ]));
        assert_holds_the_original_values(&out, scope);
    }
}

#[test]
fn raw_values_interoperate() {
    let dir = setup();
    std::fs::write(dir.path().join("value.txt"), "raw-value").unwrap();
    let upstream = run_ok(kubeseal(dir.path()).args([
        "--raw",
        "--cert",
        "cert.pem",
        "-n",
        "prod",
        "--name",
        "db",
        "--from-file",
        "value.txt",
    ]));
    let doc = format!(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {{name: db, namespace: prod}}\nspec:\n  encryptedData:\n    v: {}\n",
        String::from_utf8(upstream.stdout).unwrap()
    );
    std::fs::write(dir.path().join("raw.yaml"), doc).unwrap();
    let out = run_ok(
        sealsync(dir.path()).args(["unseal", "-f", "raw.yaml", "-k", "key.pem", "-o", "json"]),
    );
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secret["data"]["v"], "cmF3LXZhbHVl");
}
