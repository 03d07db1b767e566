//! `sealsync audit` over fixture repositories built in temporary folders, run as the real
//! binary: findings with file and line in every format, exit codes, and no value ever
//! printed or written.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// Values planted in the fixture: none may appear in any output.
const PLANTED: [&str; 7] = [
    "planted-db-password",
    "cGxhbnRlZC1iYXNlNjQ=",
    "planted-configmap-pw",
    "planted-helm-pw",
    "AKIAPLANTEDVALUE0001",
    "planted-generator-pw",
    "MIIplantedprivatekeybody",
];

/// A finding as (rule, file, line).
type Found = (String, String, Option<u64>);

struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new() -> Self {
        Repo {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn sealsync(&self, args: &[&str]) -> Output {
        Command::cargo_bin("sealsync")
            .unwrap()
            .current_dir(self.path())
            .env("KUBECONFIG", self.path().join("no-kubeconfig"))
            .env_remove("SEALED_SECRETS_CERT")
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs an audit with JSON output and returns (success, findings as (rule, file, line)).
    fn audit_json(&self, args: &[&str]) -> (bool, Vec<Found>, Value) {
        let mut all = vec!["audit", "-o", "json"];
        all.extend(args);
        let out = self.sealsync(&all);
        assert_no_values(&out);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        let findings = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_string(),
                    f["file"].as_str().unwrap().to_string(),
                    f["line"].as_u64(),
                )
            })
            .collect();
        (out.status.success(), findings, report)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_values(out: &Output) {
    for value in PLANTED {
        assert!(!text(&out.stdout).contains(value), "{value} in stdout");
        assert!(!text(&out.stderr).contains(value), "{value} in stderr");
    }
}

fn finding(rule: &str, file: &str, line: Option<u64>) -> Found {
    (rule.into(), file.into(), line)
}

/// A repository with every kind of leak and bad input, next to clean manifests.
fn leaky_repo() -> Repo {
    let repo = Repo::new();
    repo.write(
        "apps/db/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\nstringData:\n  password: planted-db-password\ndata:\n  token: cGxhbnRlZC1iYXNlNjQ=\n",
    );
    repo.write(
        "apps/db/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db, namespace: prod}\nspec: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: db-config, namespace: prod}\ndata:\n  LOG_LEVEL: info\n  DB_PASSWORD: planted-configmap-pw\n",
    );
    repo.write(
        "apps/db/sealed.yaml",
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: prod}\nspec:\n  encryptedData:\n    password: AgBy3i4OJSWK+PiTySYZZA==\n",
    );
    repo.write(
        "charts/web/values.yaml",
        "image:\n  tag: 1.2.3\nauth:\n  existingSecret: web-auth\n  adminPassword: planted-helm-pw\nenv:\n  - name: AWS\n    value: AKIAPLANTEDVALUE0001\n",
    );
    repo.write(
        "charts/web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 1.0.0\n",
    );
    repo.write(
        "charts/web/templates/secret.yaml",
        "{{- if .Values.auth }}\napiVersion: v1\nkind: Secret\n{{- end }}\n",
    );
    repo.write(
        "overlays/prod/kustomization.yaml",
        "namespace: prod\nresources: [../../apps/db]\nsecretGenerator:\n- name: api\n  literals:\n  - user=admin\n  - password=planted-generator-pw\n",
    );
    repo.write(
        "overlays/prod/external.yaml",
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: vault, namespace: prod}\nspec: {}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: api, namespace: prod}\nspec:\n  secretStoreRef: {name: vault}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: aws, namespace: prod}\nspec:\n  secretStoreRef:\n    name: aws-secrets-manager\n    kind: ClusterSecretStore\n",
    );
    repo.write(
        "keys/backup.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIplantedprivatekeybody\n-----END RSA PRIVATE KEY-----\n",
    );
    repo.write(
        "broken/invalid.yaml",
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: [unclosed\n",
    );
    repo.write(
        "broken/typo.yaml",
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecrets\nmetadata: {name: x}\n",
    );
    std::fs::write(repo.path().join("broken/latin1.yaml"), b"name: caf\xe9\n").unwrap();
    let outside = repo.path().parent().unwrap().join(format!(
        "{}-outside.yaml",
        repo.path().file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&outside, "kind: Secret\n").unwrap();
    std::os::unix::fs::symlink(&outside, repo.path().join("broken/link.yaml")).unwrap();
    repo
}

#[test]
fn every_leak_and_bad_input_is_found_at_its_line_and_no_value_is_shown() {
    let repo = leaky_repo();
    let (success, findings, report) = repo.audit_json(&["."]);
    assert!(!success);
    let expected = [
        finding("plaintext-secret", "apps/db/secret.yaml", Some(6)),
        finding("credential-like-value", "apps/db/deployment.yaml", Some(11)),
        finding("duplicate-secret", "apps/db/secret.yaml", Some(2)),
        finding("credential-like-value", "charts/web/values.yaml", Some(5)),
        finding("credential-format", "charts/web/values.yaml", Some(8)),
        finding(
            "credential-like-value",
            "overlays/prod/kustomization.yaml",
            Some(7),
        ),
        finding(
            "undeclared-secret-store",
            "overlays/prod/external.yaml",
            Some(16),
        ),
        finding("private-key-file", "keys/backup.pem", Some(1)),
        finding("invalid-yaml", "broken/invalid.yaml", Some(5)),
        finding("unknown-kind", "broken/typo.yaml", Some(2)),
        finding("unreadable-file", "broken/latin1.yaml", None),
        finding("symlink-outside-tree", "broken/link.yaml", None),
    ];
    for item in &expected {
        assert!(
            findings.contains(item),
            "{item:?} missing from {findings:#?}"
        );
    }
    assert_eq!(findings.len(), expected.len(), "{findings:#?}");
    let messages: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m
            .contains("Secret prod/db holds 2 plaintext values (keys: token, password)")
            || m.contains("Secret prod/db holds 2 plaintext values (keys: password, token)")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("ClusterSecretStore \"aws-secrets-manager\""))
    );
    assert_eq!(report["summary"]["documents"], 11);

    // The table and SARIF, to standard output and to a file: no value either.
    let table = repo.sealsync(&["audit"]);
    assert_no_values(&table);
    assert!(!table.status.success());
    let stdout = text(&table.stdout);
    assert!(stdout.starts_with("SEVERITY"), "{stdout}");
    assert!(stdout.contains("apps/db/secret.yaml:6"), "{stdout}");
    assert!(
        stdout.contains("12 findings (8 errors, 4 warnings, 0 info)"),
        "{stdout}"
    );
    assert!(text(&table.stderr).starts_with("error: 12 findings at or above severity warning"));

    let out = repo.dir.path().parent().unwrap().join(format!(
        "{}.sarif",
        repo.path().file_name().unwrap().to_str().unwrap()
    ));
    let sarif_run = repo.sealsync(&["audit", "-o", "sarif", "-w", out.to_str().unwrap(), "."]);
    assert_no_values(&sarif_run);
    let written = std::fs::read_to_string(&out).unwrap();
    for value in PLANTED {
        assert!(!written.contains(value), "{value} in the SARIF file");
    }
    let sarif: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 12);
    let plaintext = results
        .iter()
        .find(|r| r["ruleId"] == "plaintext-secret")
        .unwrap();
    assert_eq!(plaintext["level"], "error");
    assert_eq!(
        plaintext["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "apps/db/secret.yaml"
    );
    assert_eq!(
        plaintext["locations"][0]["physicalLocation"]["region"]["startLine"],
        6
    );
    std::fs::remove_file(out).unwrap();
    std::fs::remove_file(repo.path().join("broken/link.yaml").canonicalize().unwrap()).unwrap();
}

#[test]
fn a_clean_repository_passes_and_fail_on_sets_the_threshold() {
    let repo = Repo::new();
    repo.write(
        "base/app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {LOG_LEVEL: info, DB_HOST: db.prod.svc}\n",
    );
    repo.write("base/kustomization.yaml", "resources: [app.yaml]\n");
    let out = repo.sealsync(&["audit", "base"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "0 findings (0 errors, 0 warnings, 0 info) in 2 files, 3 documents\n"
    );

    // A warning fails by default, not with --fail-on error.
    repo.write(
        "base/external.yaml",
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: x}\nspec:\n  secretStoreRef: {name: vault}\n",
    );
    let (success, findings, _) = repo.audit_json(&["base"]);
    assert!(!success);
    assert_eq!(
        findings,
        [finding(
            "undeclared-secret-store",
            "base/external.yaml",
            Some(5)
        )]
    );
    let (success, ..) = repo.audit_json(&["--fail-on", "error", "base"]);
    assert!(success);
}

#[test]
fn keys_find_sealed_secrets_that_no_longer_open_or_use_old_keys() {
    let repo = Repo::new();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("key.pem");
    let cert = keys.path().join("cert.pem");
    let out = repo.sealsync(&[
        "keygen",
        "--bits",
        "2048",
        "--key-out",
        key.to_str().unwrap(),
        "--cert-out",
        cert.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secret = keys.path().join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\nstringData: {password: planted-db-password}\n",
    )
    .unwrap();
    let sealed = repo.sealsync(&[
        "seal",
        "-f",
        secret.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
    ]);
    assert!(sealed.status.success(), "{}", text(&sealed.stderr));
    let sealed = text(&sealed.stdout);
    repo.write("prod/db.yaml", &sealed);
    // Moved to another namespace after sealing: it can never open there.
    repo.write(
        "staging/db.yaml",
        &sealed.replace("namespace: prod", "namespace: staging"),
    );

    let key_arg = key.to_str().unwrap();
    let (success, findings, report) = repo.audit_json(&["-k", key_arg, "."]);
    assert!(!success);
    assert_eq!(
        findings,
        [finding(
            "sealed-secret-does-not-open",
            "staging/db.yaml",
            Some(2)
        )]
    );
    let message = report["findings"][0]["message"].as_str().unwrap();
    assert!(message.contains("\"staging/db\""), "{message}");

    // The key's age comes from its certificate; without it, the age is unknown.
    let (_, findings, _) = repo.audit_json(&["-k", key_arg, "--max-key-age", "0s", "prod"]);
    assert_eq!(findings, [finding("key-age-unknown", key_arg, None)]);
    let (success, findings, _) = repo.audit_json(&[
        "-k",
        key_arg,
        "--cert",
        cert.to_str().unwrap(),
        "--max-key-age",
        "0s",
        "prod",
    ]);
    assert!(!success);
    assert_eq!(
        findings,
        [finding("sealed-with-old-key", "prod/db.yaml", Some(2))]
    );
    let (success, ..) = repo.audit_json(&[
        "-k",
        key_arg,
        "--max-key-age",
        "3650days",
        "--cert",
        cert.to_str().unwrap(),
        "prod",
    ]);
    assert!(success);
}

#[test]
fn certificates_that_expire_soon_are_reported() {
    let repo = Repo::new();
    let keys = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("certs")).unwrap();
    let out = repo.sealsync(&[
        "keygen",
        "--bits",
        "2048",
        "--validity",
        "10days",
        "--key-out",
        keys.path().join("key.pem").to_str().unwrap(),
        "--cert-out",
        "certs/sealing.pem",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (success, findings, _) = repo.audit_json(&[]);
    assert!(!success);
    assert_eq!(
        findings,
        [finding(
            "certificate-expiring",
            "certs/sealing.pem",
            Some(1)
        )]
    );
    let (success, ..) = repo.audit_json(&["--cert-expiry-warning", "5days"]);
    assert!(success);
}

#[test]
fn both_keys_and_controller_is_refused() {
    let repo = Repo::new();
    let out = repo.sealsync(&["audit", "--controller", "-k", "key.pem"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("give --private-key or --controller, not both"));
}
