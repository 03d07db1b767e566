//! Runs the real `sealsync` binary, also under the name `kubeseal`, the way users do.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
  labels: {app: db}
type: Opaque
data:
  password: aHVudGVyMg==
stringData:
  username: admin-user
";

/// Plaintext values of `SECRET`, which must never show up where they should not.
const PLAINTEXTS: [&str; 2] = ["hunter2", "admin-user"];

struct Workspace {
    dir: TempDir,
}

impl Workspace {
    /// A temporary folder with a 2048-bit key (`key.pem`), its certificate (`cert.pem`)
    /// and `secret.yaml`.
    fn new() -> Self {
        let ws = Workspace {
            dir: tempfile::tempdir().unwrap(),
        };
        ws.write("secret.yaml", SECRET);
        ws.keygen("key.pem", "cert.pem");
        ws
    }

    fn keygen(&self, key: &str, cert: &str) {
        self.sealsync(&[
            "keygen",
            "--bits",
            "2048",
            "--key-out",
            key,
            "--cert-out",
            cert,
        ])
        .assert()
        .success();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    fn sealsync(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("sealsync").unwrap();
        cmd.current_dir(self.dir.path())
            .env_remove("SEALED_SECRETS_CERT")
            .env("KUBECONFIG", self.path("no-kubeconfig"))
            .args(args);
        cmd
    }

    /// The same binary invoked through a symlink named `kubeseal`.
    fn kubeseal(&self, args: &[&str]) -> Command {
        let link = self.path("kubeseal");
        if !link.exists() {
            std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("sealsync"), &link).unwrap();
        }
        let mut cmd = Command::new(link);
        cmd.current_dir(self.dir.path())
            .env_remove("SEALED_SECRETS_CERT")
            .env("KUBECONFIG", self.path("no-kubeconfig"))
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.sealsync(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure as users should see it: non-zero exit, one `error:` line naming `needle`,
/// no panic, no secret value.
fn assert_clean_failure(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for plaintext in PLAINTEXTS {
        assert!(!err.contains(plaintext), "secret value in error: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(plaintext));
    }
}

#[test]
fn seal_then_unseal_round_trips_without_leaking_plaintext() {
    let ws = Workspace::new();
    let sealed = ws.run(&["seal", "-f", "secret.yaml", "--cert", "cert.pem"]);
    for plaintext in PLAINTEXTS {
        assert!(!sealed.contains(plaintext));
    }
    assert!(sealed.contains("kind: SealedSecret"));
    assert!(
        sealed.contains("app: db"),
        "labels carried into the template: {sealed}"
    );
    ws.write("sealed.yaml", &sealed);

    let secret = ws.run(&["unseal", "-f", "sealed.yaml", "--private-key", "key.pem"]);
    assert!(secret.contains("password: aHVudGVyMg=="), "{secret}");
    assert!(secret.contains("username: YWRtaW4tdXNlcg=="), "{secret}");
    assert!(secret.contains("namespace: prod"));

    let report = ws.run(&["validate", "-f", "sealed.yaml", "-k", "key.pem"]);
    assert!(
        report.starts_with("prod/db: valid, 2 values open with SHA256:"),
        "{report}"
    );
}

#[test]
fn unseal_renders_template_data_over_the_values() {
    let ws = Workspace::new();
    let sealed = ws.run(&["seal", "-f", "secret.yaml", "--cert", "cert.pem"]);
    let template = "  template:\n    data:\n      \
                    dsn: 'postgres://{{ .username }}:{{ .password | upper }}@db'\n";
    ws.write(
        "sealed.yaml",
        &sealed.replacen("  template:\n", template, 1),
    );

    let secret = ws.run(&["unseal", "-f", "sealed.yaml", "-k", "key.pem", "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_str(&secret).unwrap();
    // base64 of postgres://admin-user:HUNTER2@db
    assert_eq!(
        secret["data"]["dsn"],
        "cG9zdGdyZXM6Ly9hZG1pbi11c2VyOkhVTlRFUjJAZGI="
    );
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");

    ws.write(
        "broken.yaml",
        &sealed.replacen(
            "  template:\n",
            "  template:\n    data:\n      dsn: '{{ lt .password 1 }}'\n",
            1,
        ),
    );
    let out = ws
        .sealsync(&["unseal", "-f", "broken.yaml", "-k", "key.pem"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "template.data key \"dsn\" of SealedSecret prod/db");
}

#[test]
fn several_documents_and_json_output() {
    let ws = Workspace::new();
    ws.write(
        "two.yaml",
        &format!("{SECRET}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: other}}\nstringData: {{k: v}}\n"),
    );
    let out = ws.run(&[
        "seal", "-f", "two.yaml", "--cert", "cert.pem", "-o", "json", "-n", "prod",
    ]);
    let objects: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(
        objects[1]["metadata"]["namespace"], "prod",
        "-n fills a missing namespace"
    );
    assert_eq!(objects[1]["metadata"]["name"], "other");
}

#[test]
fn namespace_comes_from_the_kubeconfig_context_then_default() {
    let ws = Workspace::new();
    ws.write(
        "nons.yaml",
        "kind: Secret\nmetadata: {name: x}\nstringData: {k: v}\n",
    );
    let out = ws.run(&["seal", "-f", "nons.yaml", "--cert", "cert.pem"]);
    assert!(out.contains("namespace: default"), "{out}");

    ws.write(
        "kubeconfig",
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts:\n- name: dev\n  context: {cluster: c, user: u, namespace: team-a}\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {}\n",
    );
    let out = ws.run(&[
        "seal",
        "-f",
        "nons.yaml",
        "--cert",
        "cert.pem",
        "--kubeconfig",
        "kubeconfig",
    ]);
    assert!(out.contains("namespace: team-a"), "{out}");
}

#[test]
fn a_conflicting_namespace_flag_is_an_error() {
    let ws = Workspace::new();
    let out = ws
        .sealsync(&[
            "seal",
            "-f",
            "secret.yaml",
            "--cert",
            "cert.pem",
            "-n",
            "staging",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&out, "namespace \"prod\" but -n says \"staging\"");
}

#[test]
fn scopes_decide_where_values_open() {
    let ws = Workspace::new();
    let sealed = ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        "cert.pem",
        "--scope",
        "namespace-wide",
    ]);
    assert!(
        sealed.contains("sealedsecrets.bitnami.com/namespace-wide: 'true'"),
        "{sealed}"
    );
    // Renaming is allowed in namespace-wide scope...
    ws.write(
        "renamed.yaml",
        &sealed.replacen("name: db", "name: renamed", 1),
    );
    ws.run(&["validate", "-f", "renamed.yaml", "-k", "key.pem"]);
    // ...but dropping the annotation makes it strict, and the error explains it.
    ws.write(
        "stripped.yaml",
        &sealed.replace(
            "sealedsecrets.bitnami.com/namespace-wide: 'true'",
            "team: core",
        ),
    );
    let out = ws
        .sealsync(&["validate", "-f", "stripped.yaml", "-k", "key.pem"])
        .output()
        .unwrap();
    assert_clean_failure(
        &out,
        "sealed with namespace-wide scope but the SealedSecret declares strict",
    );
}

#[test]
fn raw_values_open_inside_a_sealed_secret() {
    let ws = Workspace::new();
    let out = ws
        .sealsync(&[
            "seal", "--raw", "--cert", "cert.pem", "-n", "prod", "--name", "db",
        ])
        .write_stdin("hunter2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let value = String::from_utf8(out.stdout).unwrap();
    ws.write(
        "raw.yaml",
        &format!("apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {{name: db, namespace: prod}}\nspec:\n  encryptedData:\n    password: {value}\n"),
    );
    let secret = ws.run(&["unseal", "-f", "raw.yaml", "-k", "key.pem", "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_str(&secret).unwrap();
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==");

    let out = ws
        .sealsync(&["seal", "--raw", "--cert", "cert.pem"])
        .write_stdin("x")
        .output()
        .unwrap();
    assert_clean_failure(&out, "--raw with strict scope needs --name");
}

#[test]
fn merge_into_updates_in_place_and_failures_leave_files_untouched() {
    let ws = Workspace::new();
    ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        "cert.pem",
        "-w",
        "sealed.yaml",
    ]);
    let before = ws.read("sealed.yaml");
    ws.write(
        "update.yaml",
        "kind: Secret\nmetadata: {}\nstringData: {token: abc}\n",
    );
    ws.run(&[
        "seal",
        "-f",
        "update.yaml",
        "--cert",
        "cert.pem",
        "--merge-into",
        "sealed.yaml",
    ]);
    let merged = ws.read("sealed.yaml");
    assert!(merged.contains("token: "), "{merged}");
    let untouched_line = before.lines().find(|l| l.contains("username: ")).unwrap();
    assert!(
        merged.contains(untouched_line),
        "other keys are kept as they were"
    );
    let unsealed = ws.run(&["unseal", "-f", "sealed.yaml", "-k", "key.pem"]);
    assert!(unsealed.contains("token: YWJj"), "{unsealed}");

    // A failing run (garbled certificate) leaves both the merge target and -w files alone.
    ws.write(
        "bad-cert.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let out = ws
        .sealsync(&[
            "seal",
            "-f",
            "update.yaml",
            "--cert",
            "bad-cert.pem",
            "--merge-into",
            "sealed.yaml",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&out, "certificate bad-cert.pem");
    assert_eq!(ws.read("sealed.yaml"), merged);
    let out = ws
        .sealsync(&[
            "seal",
            "-f",
            "broken.yaml",
            "--cert",
            "cert.pem",
            "-w",
            "sealed.yaml",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&out, "cannot open broken.yaml");
    assert_eq!(ws.read("sealed.yaml"), merged);
}

#[test]
fn reencrypt_moves_sealed_secrets_to_a_new_key_offline() {
    let ws = Workspace::new();
    ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        "cert.pem",
        "-w",
        "sealed.yaml",
    ]);
    ws.keygen("new-key.pem", "new-cert.pem");
    ws.run(&[
        "reencrypt",
        "-f",
        "sealed.yaml",
        "-k",
        "key.pem",
        "--cert",
        "new-cert.pem",
        "-w",
        "resealed.yaml",
    ]);
    let out = ws
        .sealsync(&["validate", "-f", "resealed.yaml", "-k", "key.pem"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "no key could decrypt it");
    let secret = ws.run(&["unseal", "-f", "resealed.yaml", "-k", "new-key.pem"]);
    assert!(secret.contains("password: aHVudGVyMg=="));

    // Without the old keys the controller re-encrypts to its own key, so a --cert would be
    // ignored: refused, and the output file is not written.
    let out = ws
        .sealsync(&[
            "reencrypt",
            "-f",
            "sealed.yaml",
            "--cert",
            "new-cert.pem",
            "-w",
            "ignored.yaml",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&out, "--cert (or SEALED_SECRETS_CERT) needs --private-key");
    assert!(!ws.path("ignored.yaml").exists());
}

#[test]
fn without_private_keys_validate_and_reencrypt_ask_the_controller() {
    let ws = Workspace::new();
    ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        "cert.pem",
        "-w",
        "sealed.yaml",
    ]);
    // There is no kubeconfig here: the error names the controller and the way out.
    for args in [
        &[
            "validate",
            "-f",
            "sealed.yaml",
            "--controller-namespace",
            "sealing",
        ][..],
        &[
            "reencrypt",
            "-f",
            "sealed.yaml",
            "--controller-namespace",
            "sealing",
        ][..],
    ] {
        let out = ws.sealsync(args).output().unwrap();
        assert_clean_failure(&out, "controller sealing/sealed-secrets-controller");
        assert!(stderr(&out).contains("private keys to work offline"));
    }
    for flag in ["--validate", "--re-encrypt"] {
        let out = ws
            .kubeseal(&[flag, "-f", "sealed.yaml", "--controller-name", "ss"])
            .output()
            .unwrap();
        assert_clean_failure(&out, "controller kube-system/ss");
    }
}

#[test]
fn bad_input_fails_with_one_clear_line() {
    let ws = Workspace::new();
    ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        "cert.pem",
        "-w",
        "sealed.yaml",
    ]);
    let sealed = ws.read("sealed.yaml");
    ws.write("malformed.yaml", "kind: Secret\nmetadata: [\n");
    ws.write(
        "configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    ws.write(
        "empty.yaml",
        "kind: Secret\nmetadata: {name: e, namespace: n}\n",
    );
    ws.write(
        "badb64.yaml",
        "kind: Secret\nmetadata: {name: e, namespace: n}\ndata: {password: 'hunter2'}\n",
    );
    ws.write("not-a-key.pem", "hello\n");
    let password_line = sealed.lines().find(|l| l.contains("password: ")).unwrap();
    let truncated = format!("{}\n", &password_line[..password_line.len() - 40]);
    ws.write(
        "truncated.yaml",
        &sealed.replace(&format!("{password_line}\n"), &truncated),
    );
    ws.write(
        "garbage.yaml",
        &sealed.replace(&format!("{password_line}\n"), "    password: '%%%'\n"),
    );
    ws.write(
        "moved.yaml",
        &sealed.replace("namespace: prod", "namespace: staging"),
    );
    ws.keygen("other-key.pem", "other-cert.pem");

    let cases: &[(&[&str], &str)] = &[
        (
            &["seal", "-f", "malformed.yaml", "--cert", "cert.pem"],
            "malformed.yaml: document 1 is not valid YAML",
        ),
        (
            &["seal", "-f", "configmap.yaml", "--cert", "cert.pem"],
            "document 1 is a ConfigMap, not a Secret",
        ),
        (
            &["seal", "-f", "empty.yaml", "--cert", "cert.pem"],
            "Secret n/e has no data",
        ),
        (
            &["seal", "-f", "badb64.yaml", "--cert", "cert.pem"],
            "key \"password\" in data is not valid base64",
        ),
        (
            &["seal", "-f", "secret.yaml", "--cert", "missing.pem"],
            "open missing.pem: no such file or directory",
        ),
        (
            &["seal", "-f", "secret.yaml", "--cert", "key.pem"],
            "no PEM 'CERTIFICATE' block",
        ),
        (
            &["seal", "-f", "secret.yaml"],
            "cannot fetch the certificate of controller kube-system/sealed-secrets-controller",
        ),
        (
            &["unseal", "-f", "secret.yaml", "-k", "key.pem"],
            "is a Secret, not a SealedSecret",
        ),
        (
            &["unseal", "-f", "sealed.yaml", "-k", "not-a-key.pem"],
            "not-a-key.pem",
        ),
        (&["unseal", "-f", "sealed.yaml"], "no private key given"),
        (
            &["unseal", "-f", "truncated.yaml", "-k", "key.pem"],
            "key \"password\" of SealedSecret prod/db",
        ),
        (
            &["unseal", "-f", "garbage.yaml", "-k", "key.pem"],
            "not valid base64",
        ),
        (
            &["unseal", "-f", "moved.yaml", "-k", "key.pem"],
            "strict scope label \"staging/db\"",
        ),
        (
            &["unseal", "-f", "sealed.yaml", "-k", "other-key.pem"],
            "not among the 1 given",
        ),
    ];
    for (args, needle) in cases {
        let out = ws.sealsync(args).output().unwrap();
        assert_clean_failure(&out, needle);
    }
    let out = ws
        .sealsync(&[
            "seal",
            "-f",
            "empty.yaml",
            "--cert",
            "cert.pem",
            "--allow-empty-data",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn certificates_are_checked_before_sealing() {
    let ws = Workspace::new();
    ws.sealsync(&[
        "keygen",
        "--bits",
        "2048",
        "--key-out",
        "old.pem",
        "--cert-out",
        "old-cert.pem",
        "--validity",
        "1s",
    ])
    .assert()
    .success();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = ws
        .sealsync(&["seal", "-f", "secret.yaml", "--cert", "old-cert.pem"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "expired");
    let info = ws.run(&["cert", "--cert", "old-cert.pem"]);
    assert!(info.contains("(EXPIRED)"), "{info}");

    let ec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ec-cert.pem");
    let out = ws
        .sealsync(&["seal", "-f", "secret.yaml", "--cert", ec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_clean_failure(&out, "not RSA");

    let info: serde_json::Value =
        serde_json::from_str(&ws.run(&["cert", "--cert", "file://cert.pem", "-o", "json"]))
            .unwrap();
    assert_eq!(info["keyBits"], 2048);
    assert_eq!(info["expired"], false);
    assert!(info["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
}

#[test]
fn keygen_refuses_to_overwrite_and_protects_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    let mode = std::fs::metadata(ws.path("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = ws
        .sealsync(&[
            "keygen",
            "--bits",
            "2048",
            "--key-out",
            "key.pem",
            "--cert-out",
            "x.pem",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&out, "key.pem already exists");
}

#[test]
fn kubeseal_mode_speaks_kubeseal_flags() {
    let ws = Workspace::new();
    // Default format is JSON; the certificate may come from SEALED_SECRETS_CERT.
    let out = ws
        .kubeseal(&[])
        .env("SEALED_SECRETS_CERT", ws.path("cert.pem"))
        .write_stdin(SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sealed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sealed["kind"], "SealedSecret");
    assert_eq!(sealed["apiVersion"], "bitnami.com/v1alpha1");

    ws.kubeseal(&[
        "--cert",
        "cert.pem",
        "-f",
        "secret.yaml",
        "-w",
        "sealed.json",
        "--format",
        "json",
    ])
    .assert()
    .success();
    ws.keygen("key2.pem", "cert2.pem");
    // Comma-separated recovery keys, one of which opens the values.
    let out = ws
        .kubeseal(&[
            "--recovery-unseal",
            "--recovery-private-key",
            "key2.pem,key.pem",
            "-f",
            "sealed.json",
            "-o",
            "yaml",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("password: aHVudGVyMg=="));

    // --validate is silent on success, as kubeseal is.
    let out = ws
        .kubeseal(&[
            "--validate",
            "--recovery-private-key",
            "key.pem",
            "-f",
            "sealed.json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        stderr(&out)
    );

    // --re-encrypt offline, then the new key opens it.
    ws.kubeseal(&[
        "--re-encrypt",
        "--recovery-private-key",
        "key.pem",
        "--cert",
        "cert2.pem",
        "-f",
        "sealed.json",
        "-w",
        "rotated.json",
    ])
    .assert()
    .success();
    ws.kubeseal(&[
        "--validate",
        "--recovery-private-key",
        "key2.pem",
        "-f",
        "rotated.json",
    ])
    .assert()
    .success();

    let out = ws
        .kubeseal(&["--fetch-cert", "--controller-namespace", "sealing"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "controller sealing/sealed-secrets-controller");
    let out = ws.kubeseal(&["--no-such-flag"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn kubeseal_mode_re_encrypts_in_place_and_writes_yaml_to_yaml_files() {
    let ws = Workspace::new();
    ws.keygen("key2.pem", "cert2.pem");
    // -o json, but a .yaml file gets YAML, as kubeseal writes it.
    ws.kubeseal(&[
        "--cert",
        "cert.pem",
        "-f",
        "secret.yaml",
        "-w",
        "sealed.yaml",
        "-o",
        "json",
    ])
    .assert()
    .success();
    let sealed = ws.read("sealed.yaml");
    assert!(
        sealed.starts_with("apiVersion: bitnami.com/v1alpha1"),
        "{sealed}"
    );
    // --re-encrypt with -f and no -w rewrites the input file, still as YAML, and prints
    // nothing.
    let out = ws
        .kubeseal(&[
            "--re-encrypt",
            "--recovery-private-key",
            "key.pem",
            "--cert",
            "cert2.pem",
            "-f",
            "sealed.yaml",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        stderr(&out)
    );
    let rotated = ws.read("sealed.yaml");
    assert!(
        rotated.starts_with("apiVersion: bitnami.com/v1alpha1"),
        "{rotated}"
    );
    assert_ne!(rotated, sealed);
    ws.run(&["validate", "-f", "sealed.yaml", "-k", "key2.pem"]);
}

#[test]
fn help_and_completions() {
    let ws = Workspace::new();
    let help = ws.run(&["--help"]);
    for command in [
        "seal",
        "unseal",
        "reencrypt",
        "validate",
        "cert",
        "keygen",
        "completion",
    ] {
        assert!(help.contains(command), "{help}");
    }
    let bash = ws.run(&["completion", "bash"]);
    assert!(
        bash.contains("_sealsync"),
        "completion script names the command"
    );
    let out = ws.kubeseal(&["--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--recovery-private-key"));
}

#[test]
fn certificate_from_an_http_url() {
    use std::io::{Read, Write};
    let ws = Workspace::new();
    let cert = ws.read("cert.pem");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).unwrap();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{cert}",
            cert.len()
        );
        stream.write_all(response.as_bytes()).unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/v1/cert.pem");
    ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        &url,
        "-w",
        "sealed.yaml",
    ]);
    server.join().unwrap();
    ws.run(&["validate", "-f", "sealed.yaml", "-k", "key.pem"]);

    let out = ws
        .sealsync(&["seal", "-f", "secret.yaml", "--cert", &url])
        .output()
        .unwrap();
    assert_clean_failure(&out, "cannot fetch certificate from http://127.0.0.1");
}

#[test]
fn from_file_builds_a_secret_without_input() {
    let ws = Workspace::new();
    ws.write("password.txt", "hunter2");
    ws.write("tls.crt", "not-really-a-cert");
    let sealed = ws.run(&[
        "seal",
        "--cert",
        "cert.pem",
        "--name",
        "files",
        "-n",
        "prod",
        "--from-file",
        "db-password=password.txt",
        "--from-file",
        "tls.crt",
        "-w",
        "-",
    ]);
    ws.write("files.yaml", &sealed);
    let secret = ws.run(&["unseal", "-f", "files.yaml", "-k", "key.pem", "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_str(&secret).unwrap();
    assert_eq!(secret["metadata"]["name"], "files");
    assert_eq!(secret["data"]["db-password"], "aHVudGVyMg==");
    assert_eq!(secret["data"]["tls.crt"], "bm90LXJlYWxseS1hLWNlcnQ=");
}

#[test]
fn kubeseal_mode_takes_the_last_of_a_repeated_flag() {
    let ws = Workspace::new();
    ws.write(
        "nons.yaml",
        "kind: Secret\nmetadata: {name: x}\nstringData: {k: v}\n",
    );
    let kubeconfig = |namespace: &str| {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts:\n- name: dev\n  context: {{cluster: c, user: u, namespace: {namespace}}}\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:1'}}\nusers:\n- name: u\n  user: {{}}\n"
        )
    };
    ws.write("first.kubeconfig", &kubeconfig("first"));
    ws.write("second.kubeconfig", &kubeconfig("second"));
    let namespace_of = |args: &[&str]| {
        let out = ws.kubeseal(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let sealed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        sealed["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let seal = [
        "--cert",
        "missing.pem",
        "--cert",
        "cert.pem",
        "-f",
        "nons.yaml",
    ];
    assert_eq!(
        namespace_of(&[&seal[..], &["-n", "x", "--namespace", "y"]].concat()),
        "y"
    );
    assert_eq!(
        namespace_of(
            &[
                &seal[..],
                &[
                    "--kubeconfig",
                    "first.kubeconfig",
                    "--kubeconfig",
                    "second.kubeconfig"
                ]
            ]
            .concat()
        ),
        "second"
    );

    ws.kubeseal(&[
        "--cert",
        "cert.pem",
        "-f",
        "secret.yaml",
        "-w",
        "sealed.json",
    ])
    .assert()
    .success();
    let out = ws
        .kubeseal(&[
            "--validate",
            "--validate",
            "--recovery-private-key",
            "key.pem",
            "-f",
            "sealed.json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn kubeseal_mode_prints_its_version_as_kubeseal_does() {
    let ws = Workspace::new();
    let out = ws.kubeseal(&["--version"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("kubeseal version: v{}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn kubeseal_recovery_unseal_without_a_usable_key_says_no_key_could_decrypt() {
    let ws = Workspace::new();
    ws.keygen("other-key.pem", "other-cert.pem");
    ws.kubeseal(&[
        "--cert",
        "cert.pem",
        "-f",
        "secret.yaml",
        "-w",
        "sealed.json",
    ])
    .assert()
    .success();
    for keys in [&[][..], &["--recovery-private-key", "other-key.pem"]] {
        let args = [&["--recovery-unseal", "-f", "sealed.json"][..], keys].concat();
        let out = ws.kubeseal(&args).output().unwrap();
        assert_clean_failure(&out, "no key could decrypt secret (password)");
        // kubeseal has no --private-key flag: the error must not send users to it.
        assert!(!stderr(&out).contains(" --private-key"), "{}", stderr(&out));
    }
    let out = ws
        .kubeseal(&["--recovery-unseal", "-f", "sealed.json"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("--recovery-private-key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn recovery_keys_may_be_a_secret_list_without_kinds_or_a_list() {
    use base64::Engine;
    let ws = Workspace::new();
    let b64 = |name: &str| base64::engine::general_purpose::STANDARD.encode(ws.read(name));
    // What Go's json.Marshal writes for a client-go SecretList: no kind or apiVersion.
    let item = format!(
        r#"{{"metadata":{{"name":"sealed-secrets-keyabcde","namespace":"kube-system","labels":{{"sealedsecrets.bitnami.com/sealed-secrets-key":"active"}}}},"data":{{"tls.crt":"{}","tls.key":"{}"}},"type":"kubernetes.io/tls"}}"#,
        b64("cert.pem"),
        b64("key.pem")
    );
    ws.write(
        "typed-list.json",
        &format!(r#"{{"metadata":{{"resourceVersion":"42"}},"items":[{item}]}}"#),
    );
    ws.write(
        "list.json",
        &format!(r#"{{"apiVersion":"v1","kind":"List","items":[{item}]}}"#),
    );
    ws.kubeseal(&[
        "--cert",
        "cert.pem",
        "-f",
        "secret.yaml",
        "-w",
        "sealed.json",
    ])
    .assert()
    .success();
    for backup in ["typed-list.json", "list.json"] {
        let out = ws
            .kubeseal(&[
                "--recovery-unseal",
                "--recovery-private-key",
                backup,
                "-f",
                "sealed.json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{backup}: {}", stderr(&out));
        let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(secret["data"]["password"], "aHVudGVyMg==", "{backup}");
    }
}

#[test]
fn kubeseal_reports_a_missing_certificate_before_reading_the_input() {
    let ws = Workspace::new();
    let out = ws
        .kubeseal(&["--cert", "no/such/cert.pem"])
        .write_stdin("")
        .output()
        .unwrap();
    assert_clean_failure(&out, "open no/such/cert.pem: no such file or directory");
}

/// Values of the wrong type or form, as an attacker or a typo may write them; none of their
/// text may show up in any output.
const WRONG_VALUES: [(&str, &str); 6] = [
    ("987654321", "found an integer"),
    ("-31415.9265", "found a number"),
    ("true", "found a boolean"),
    ("{inner: hunter2}", "found a map"),
    ("[hunter2, admin-user]", "found a list"),
    ("null", "found null"),
];

/// Fails like [`assert_clean_failure`], without the text of any of `WRONG_VALUES`.
fn assert_no_value(out: &Output, needle: &str) {
    assert_clean_failure(out, needle);
    let err = stderr(out);
    for text in ["987654321", "31415", "9265", "true", "inner"] {
        assert!(!err.contains(text), "value {text:?} in: {err}");
    }
}

#[test]
fn values_of_the_wrong_type_are_named_by_key_never_shown() {
    let ws = Workspace::new();
    let long_bad_base64 = "hunter2!".repeat(500);
    for (field, key) in [("data", "password"), ("stringData", "username")] {
        for (value, found) in WRONG_VALUES {
            // null is an empty value in a Secret, as Kubernetes takes it.
            if value == "null" {
                continue;
            }
            ws.write(
                "wrong.yaml",
                &format!("kind: Secret\nmetadata: {{name: db, namespace: prod}}\n{field}:\n  {key}: {value}\n"),
            );
            let out = ws
                .sealsync(&["seal", "-f", "wrong.yaml", "--cert", "cert.pem"])
                .output()
                .unwrap();
            assert_no_value(
                &out,
                &format!(
                    "wrong.yaml: document 1 is not valid Secret: {field}.{key}: expected a string, {found}"
                ),
            );
        }
    }
    ws.write(
        "long.yaml",
        &format!("kind: Secret\nmetadata: {{name: db, namespace: prod}}\ndata:\n  password: {long_bad_base64}\n"),
    );
    let out = ws
        .sealsync(&["seal", "-f", "long.yaml", "--cert", "cert.pem"])
        .output()
        .unwrap();
    assert_no_value(&out, "key \"password\" in data is not valid base64");

    // SealedSecrets: unseal, validate and reencrypt read them the same way.
    ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        "cert.pem",
        "-w",
        "sealed.yaml",
    ]);
    let sealed = ws.read("sealed.yaml");
    let password_line = sealed.lines().find(|l| l.contains("password: ")).unwrap();
    let commands: [&[&str]; 3] = [
        &["unseal", "-f", "bad.yaml", "-k", "key.pem"],
        &["validate", "-f", "bad.yaml", "-k", "key.pem"],
        &[
            "reencrypt",
            "-f",
            "bad.yaml",
            "-k",
            "key.pem",
            "--cert",
            "cert.pem",
        ],
    ];
    for (value, found) in WRONG_VALUES {
        ws.write(
            "bad.yaml",
            &sealed.replace(password_line, &format!("    password: {value}")),
        );
        for args in commands {
            let out = ws.sealsync(args).output().unwrap();
            assert_no_value(
                &out,
                &format!("spec.encryptedData.password: expected a string, {found}"),
            );
        }
    }
    ws.write(
        "bad.yaml",
        &sealed.replace(
            password_line,
            &format!("    password: {}", "hunter2".repeat(500)),
        ),
    );
    for args in commands {
        let out = ws.sealsync(args).output().unwrap();
        assert_no_value(&out, "key \"password\" of SealedSecret prod/db");
    }

    // Key backups.
    for (value, found) in WRONG_VALUES {
        if value == "null" {
            continue;
        }
        ws.write(
            "backup.yaml",
            &format!("kind: Secret\nmetadata: {{name: k, namespace: kube-system}}\ndata:\n  tls.key: {value}\n"),
        );
        let out = ws
            .sealsync(&["unseal", "-f", "sealed.yaml", "-k", "backup.yaml"])
            .output()
            .unwrap();
        assert_no_value(
            &out,
            &format!(
                "backup.yaml: document 1 is not valid Secret: data[\"tls.key\"]: expected a string, {found}"
            ),
        );
    }
}

#[test]
fn objects_with_too_many_values_are_refused_by_their_count() {
    let ws = Workspace::new();
    let many = (0..=4096).fold(
        "kind: Secret\nmetadata: {name: db, namespace: prod}\nstringData:\n".to_string(),
        |yaml, i| yaml + &format!("  k{i}: v\n"),
    );
    ws.write("many.yaml", &many);
    let out = ws
        .sealsync(&["seal", "-f", "many.yaml", "--cert", "cert.pem"])
        .output()
        .unwrap();
    assert_clean_failure(
        &out,
        "Secret prod/db has 4097 values, more than the 4096 a SealedSecret may hold",
    );

    ws.run(&[
        "seal",
        "-f",
        "secret.yaml",
        "--cert",
        "cert.pem",
        "-w",
        "sealed.yaml",
    ]);
    let sealed = ws.read("sealed.yaml");
    let extra = (0..4096).fold(String::new(), |text, i| text + &format!("    x{i}: AAAA\n"));
    ws.write(
        "many-sealed.yaml",
        &sealed.replace("  encryptedData:\n", &format!("  encryptedData:\n{extra}")),
    );
    for args in [
        &["unseal", "-f", "many-sealed.yaml", "-k", "key.pem"][..],
        &["validate", "-f", "many-sealed.yaml", "-k", "key.pem"],
    ] {
        let out = ws.sealsync(args).output().unwrap();
        assert_clean_failure(
            &out,
            "SealedSecret prod/db has 4098 values, more than the 4096 a SealedSecret may hold: split it into several",
        );
    }
}

/// Nested ranges that write nothing would run for hours; the template budget stops them.
#[test]
fn unseal_stops_a_template_that_exceeds_its_budget() {
    let ws = Workspace::new();
    let sealed = ws.run(&["seal", "-f", "secret.yaml", "--cert", "cert.pem"]);
    // Two values: 2^24 iterations.
    let depth = 24;
    let hostile = format!(
        "{}{}",
        "{{ range $k := keys $ }}".repeat(depth),
        "{{ end }}".repeat(depth)
    );
    ws.write(
        "hostile.yaml",
        &sealed.replacen(
            "  template:\n",
            &format!("  template:\n    data:\n      spin: '{hostile}'\n"),
            1,
        ),
    );
    let out = ws
        .sealsync(&["unseal", "-f", "hostile.yaml", "-k", "key.pem"])
        .output()
        .unwrap();
    assert_clean_failure(
        &out,
        "template.data key \"spin\" of SealedSecret prod/db: exceeded its execution budget",
    );
    assert!(out.stdout.is_empty());
}
