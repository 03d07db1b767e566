//! `sealsync reencrypt --all` offline, run as the real binary over a repository tree with
//! comments and odd formatting: only the ciphertexts change, files stay atomic and keep
//! their mode, failures are listed and leave their file untouched.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

const PLAINTEXTS: [&str; 3] = ["hunter2", "admin-user", "s3cr3t-token"];

struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new() -> Self {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        for (key, cert) in [
            ("old-key.pem", "old-cert.pem"),
            ("new-key.pem", "new-cert.pem"),
        ] {
            repo.ok(&[
                "keygen",
                "--bits",
                "2048",
                "--key-out",
                key,
                "--cert-out",
                cert,
            ]);
        }
        repo
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    fn sealsync(&self, args: &[&str]) -> Output {
        Command::cargo_bin("sealsync")
            .unwrap()
            .current_dir(self.dir.path())
            .env("KUBECONFIG", self.path("no-kubeconfig"))
            .env_remove("SEALED_SECRETS_CERT")
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.sealsync(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// One ciphertext per value of a Secret named `name` in `prod`, sealed to `cert`.
    fn ciphertexts(&self, name: &str, values: &[(&str, &str)], cert: &str) -> Vec<String> {
        let data: Vec<String> = values.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        self.write(
            "in.yaml",
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: prod}}\nstringData: {{{}}}\n",
                data.join(", ")
            ),
        );
        let sealed: Value = serde_json::from_str(
            &self.ok(&["seal", "-f", "in.yaml", "--cert", cert, "-o", "json"]),
        )
        .unwrap();
        values
            .iter()
            .map(|(k, _)| {
                sealed["spec"]["encryptedData"][k]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// The plaintext Secrets of a file of SealedSecrets, opened with `key`.
    fn unseal(&self, file: &str, key: &str) -> Output {
        self.sealsync(&["unseal", "-f", file, "-k", key, "-o", "json"])
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `text` with every long base64 run (a ciphertext) replaced by `<ciphertext>`.
fn masked(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let (mut out, mut run) = (String::new(), String::new());
    for c in text.chars().chain(std::iter::once('\n')) {
        if is_b64(c) {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 200 {
            "<ciphertext>"
        } else {
            &run
        });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn assert_no_plaintext(out: &Output) {
    for plaintext in PLAINTEXTS {
        assert!(!String::from_utf8_lossy(&out.stdout).contains(plaintext));
        assert!(!stderr(out).contains(plaintext));
    }
}

fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn reencrypt_all_rewrites_only_the_ciphertexts_and_opens_with_the_new_key() {
    let repo = Repo::new();
    let db = repo.ciphertexts(
        "db",
        &[("password", "hunter2"), ("username", "admin-user")],
        "old-cert.pem",
    );
    let api = repo.ciphertexts("api", &[("token", "s3cr3t-token")], "old-cert.pem");
    // Comments everywhere, kind before apiVersion, four-space indents, quoted and flow
    // values, non-ASCII text, and a document that is not a SealedSecret in between.
    let overlay = format!(
        "# Sealed for prod — ünïcode in a comment\n\
         ---\n\
         kind: SealedSecret   # kind first\n\
         apiVersion: bitnami.com/v1alpha1\n\
         metadata:\n    name: db\n    namespace: prod\n\
         spec:\n    encryptedData:\n        # the password\n        username:   \"{}\"\n        password: '{}'   # trailing\n\
         \x20   template: {{metadata: {{name: db, namespace: prod, labels: {{app: db}}}}}}\n\
         ---\n\
         apiVersion: bitnami.com/v1alpha1\n\
         kind: SealedSecret\n\
         metadata: {{name: api, namespace: prod}}\n\
         spec: {{encryptedData: {{token: {}}}}}   # flow style\n",
        db[1], db[0], api[0]
    );
    repo.write("repo/apps/db/overlays/prod/sealed.yaml", &overlay);
    std::fs::set_permissions(
        repo.path("repo/apps/db/overlays/prod/sealed.yaml"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let config_map =
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n";
    repo.write("repo/base/settings.yaml", config_map);
    // No namespace of its own: sealed for the one its folder's kustomization sets.
    let cache = repo.ciphertexts("cache", &[("url", "s3cr3t-token")], "old-cert.pem");
    let kustomization = "namespace: prod\nresources: [sealed.yaml, cache.yaml]\n";
    repo.write(
        "repo/apps/db/overlays/prod/kustomization.yaml",
        kustomization,
    );
    let cache_text = format!(
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: cache\nspec:\n  encryptedData:\n    url: {}\n",
        cache[0]
    );
    repo.write("repo/apps/db/overlays/prod/cache.yaml", &cache_text);
    // A Go template is no YAML, and holds no SealedSecret: not a failure.
    let template = "{{- if .Values.enabled }}\nkind: ConfigMap\n{{- end }}\n";
    repo.write("repo/base/template.yaml", template);
    let plaintext = repo.unseal("repo/apps/db/overlays/prod/sealed.yaml", "old-key.pem");
    assert!(plaintext.status.success(), "{}", stderr(&plaintext));

    // A dry run says what it would do and writes nothing.
    let out = repo.sealsync(&[
        "reencrypt",
        "--all",
        "repo",
        "--dry-run",
        "-k",
        "old-key.pem",
        "--cert",
        "new-cert.pem",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = summary(&out);
    assert_eq!(report["dryRun"], true);
    assert_eq!(
        (
            report["reencrypted"].as_u64(),
            report["filesRewritten"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(repo.read("repo/apps/db/overlays/prod/sealed.yaml"), overlay);

    let out = repo.sealsync(&[
        "reencrypt",
        "--all",
        "repo",
        "-k",
        "old-key.pem",
        "--cert",
        "new-cert.pem",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_plaintext(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Re-encrypted 3 SealedSecrets in 2 of 5 files; 0 already sealed to the newest key; 0 files failed"),
        "{text}"
    );

    let rewritten = repo.read("repo/apps/db/overlays/prod/sealed.yaml");
    assert_eq!(
        masked(&rewritten),
        masked(&overlay),
        "only the ciphertexts change"
    );
    for old in db.iter().chain(&api) {
        assert!(!rewritten.contains(old.as_str()), "every ciphertext is new");
    }
    assert_eq!(repo.read("repo/base/settings.yaml"), config_map);
    assert_eq!(repo.read("repo/base/template.yaml"), template);
    let cache_rewritten = repo.read("repo/apps/db/overlays/prod/cache.yaml");
    assert_eq!(masked(&cache_rewritten), masked(&cache_text));
    assert!(!cache_rewritten.contains(&cache[0]));
    // The audit (which also takes the kustomization's namespace) opens it with the new key.
    let opens = |key: &str| {
        let out = repo.sealsync(&["audit", "-o", "json", "-k", key, "repo/apps"]);
        !summary(&out)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "sealed-secret-does-not-open")
    };
    assert!(opens("new-key.pem"));
    assert!(!opens("old-key.pem"));
    let mode = std::fs::metadata(repo.path("repo/apps/db/overlays/prod/sealed.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "the file keeps its mode");

    // The same Secrets open with the new key, and no longer with the old one.
    let resealed = repo.unseal("repo/apps/db/overlays/prod/sealed.yaml", "new-key.pem");
    assert!(resealed.status.success(), "{}", stderr(&resealed));
    assert_eq!(resealed.stdout, plaintext.stdout);
    let old = repo.unseal("repo/apps/db/overlays/prod/sealed.yaml", "old-key.pem");
    assert!(!old.status.success());

    // Run again with both keys: everything is sealed to the newest key already.
    let out = repo.sealsync(&[
        "reencrypt",
        "--all",
        "repo",
        "-k",
        "old-key.pem,new-key.pem",
        "--cert",
        "new-cert.pem",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = summary(&out);
    assert_eq!(
        (
            report["reencrypted"].as_u64(),
            report["unchanged"].as_u64(),
            report["failed"].as_u64()
        ),
        (Some(0), Some(3), Some(0))
    );
    assert_eq!(
        repo.read("repo/apps/db/overlays/prod/sealed.yaml"),
        rewritten
    );
}

#[test]
fn reencrypt_all_leaves_failing_files_untouched_and_lists_them() {
    let repo = Repo::new();
    repo.ok(&[
        "keygen",
        "--bits",
        "2048",
        "--key-out",
        "foreign-key.pem",
        "--cert-out",
        "foreign-cert.pem",
    ]);
    let good = repo.ciphertexts("db", &[("password", "hunter2")], "old-cert.pem");
    let foreign = repo.ciphertexts("api", &[("token", "s3cr3t-token")], "foreign-cert.pem");
    let sealed = |name: &str, key: &str, value: &str| {
        format!(
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n  encryptedData:\n    {key}: {value}\n"
        )
    };
    let files = [
        // Opens, re-encrypted.
        ("repo/good.yaml", sealed("db", "password", &good[0])),
        // One object opens, the other does not: the whole file stays as it is.
        (
            "repo/mixed.yaml",
            format!(
                "{}---\n{}",
                sealed("db", "password", &good[0]),
                sealed("api", "token", &foreign[0])
            ),
        ),
        (
            "repo/broken.yaml",
            format!("{}  oops: [\n", sealed("db", "password", &good[0])),
        ),
        (
            "repo/block.yaml",
            sealed("db", "password", &format!("|\n      {}", good[0])),
        ),
    ];
    for (name, text) in &files {
        repo.write(name, text);
    }
    let out = repo.sealsync(&[
        "reencrypt",
        "--all",
        "repo",
        "-k",
        "old-key.pem",
        "--cert",
        "new-cert.pem",
        "-o",
        "json",
    ]);
    assert!(!out.status.success());
    assert_no_plaintext(&out);
    assert_eq!(
        stderr(&out),
        "error: 3 files failed and were left untouched (listed above): fix and run again\n"
    );
    let report = summary(&out);
    assert_eq!(
        (report["reencrypted"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(3))
    );
    let failures: Vec<(String, String)> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().into(),
                f["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    let files_failed: Vec<&str> = failures.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files_failed,
        ["repo/block.yaml", "repo/broken.yaml", "repo/mixed.yaml"]
    );
    assert!(
        failures[0]
            .1
            .contains("value \"password\" (line 6) is a block scalar"),
        "{failures:?}"
    );
    assert!(failures[1].1.contains("not valid YAML"), "{failures:?}");
    assert!(
        failures[2].1.starts_with("line 8: SealedSecret prod/api: "),
        "{failures:?}"
    );
    for (name, text) in &files[1..] {
        assert_eq!(&repo.read(name), text, "{name} is untouched");
    }
    assert_ne!(repo.read("repo/good.yaml"), files[0].1);
    assert!(
        repo.unseal("repo/good.yaml", "new-key.pem")
            .status
            .success()
    );

    // The text summary lists them too.
    let out = repo.sealsync(&[
        "reencrypt",
        "--all",
        "repo",
        "-k",
        "old-key.pem,new-key.pem",
        "--cert",
        "new-cert.pem",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 files failed:\n  repo/block.yaml: "),
        "{text}"
    );
}

#[test]
fn reencrypt_all_without_keys_goes_through_the_controller() {
    let repo = Repo::new();
    repo.write("repo/a.yaml", "kind: ConfigMap\n");
    let out = repo.sealsync(&[
        "reencrypt",
        "--all",
        "repo",
        "--controller-namespace",
        "sealing",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("controller sealing/sealed-secrets-controller"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // --all rewrites files in place: no -f or -w with it; --dry-run needs it.
    for args in [
        &["reencrypt", "--all", "repo", "-f", "a.yaml"][..],
        &["reencrypt", "--all", "repo", "-w", "out.yaml"][..],
    ] {
        let out = repo.sealsync(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let out = repo.sealsync(&["reencrypt", "--dry-run", "-f", "repo/a.yaml"]);
    assert_eq!(
        stderr(&out),
        "error: --dry-run goes with --all PATH: add --all, or drop --dry-run\n"
    );
}
