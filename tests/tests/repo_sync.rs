//! `sealsync render`, `diff` and `sync` as a user runs them: the real binary on a copy of
//! `examples/config-repo` (SealedSecrets sealed to the demo key, an ExternalSecret of a
//! fake store), on a Git repository made
//! here, and on overlays built by the harness's pinned kustomize. No planted value may
//! appear in any output but `render --show-values`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use sealsync_api::SealedSecret;
use sealsync_crypto::{PrivateKey, SealingCertificate};
use sealsync_testkit::{
    Component, Moto, Sealing, SealingController, TestCluster, Vault, binary, project_binary,
    wait_for,
};
use serde_json::Value;

/// The made-up values sealed in the example repository.
const PLANTED: [&str; 4] = [
    "demo-dev-db-password",
    "demo-dev-payment-token",
    "demo-prod-db-password",
    "demo-dev-recaptcha-key",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn demo_key() -> PathBuf {
    repo_root().join("examples/demo-key/DEMO-ONLY-key.pem")
}

fn demo_cert() -> PathBuf {
    repo_root().join("examples/demo-key/DEMO-ONLY-cert.pem")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the example repository.
fn example_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/config-repo"), dir.path());
    dir
}

/// A PATH with no kustomize or kubectl on it (sealsync needs nothing from PATH but them),
/// and one with only the harness's kustomize.
fn path_without_kustomize() -> String {
    "/nonexistent".into()
}

fn path_with_kustomize() -> String {
    let kustomize = binary(Component::Kustomize, "SEALSYNC_KUSTOMIZE");
    format!(
        "{}:{}",
        kustomize.parent().unwrap().display(),
        path_without_kustomize()
    )
}

struct Run {
    output: Output,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout(), self.stderr()))
    }

    fn succeeded(&self) -> bool {
        self.output.status.success()
    }

    /// Fails when a planted value, plain or base64, is in its output.
    fn shows_no_value(&self) -> &Self {
        let all = self.stdout() + &self.stderr();
        for value in PLANTED {
            assert!(!all.contains(value), "{value} printed:\n{all}");
            assert!(
                !all.contains(&STANDARD.encode(value)),
                "{value} printed in base64:\n{all}"
            );
        }
        self
    }
}

fn sealsync(args: &[&str], path_env: &str) -> Run {
    sealsync_with(args, path_env, &[])
}

/// [`sealsync`] with environment variables set: none of the user's AWS or Vault settings,
/// only `env`.
fn sealsync_with(args: &[&str], path_env: &str, env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(project_binary("sealsync"));
    command
        .args(args)
        .env("PATH", path_env)
        .env_remove("XDG_DATA_HOME");
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("VAULT_") {
            command.env_remove(name);
        }
    }
    let output = command.envs(env.iter().copied()).output().unwrap();
    Run { output }
}

fn sync(command: &str, source: &Path, out: &Path, extra: &[&str]) -> Run {
    let key = demo_key();
    let mut args = vec![
        command,
        source.to_str().unwrap(),
        "-k",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    sealsync(&args, &path_with_kustomize())
}

/// `secret -> action` of a report.
fn actions(report: &Value) -> Vec<(String, String)> {
    report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["secret"].as_str().unwrap().to_string(),
                row["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The store's memory of what it was synced from.
const MEMORY: &str = ".sealsync-memory.json";

/// Every file under `dir`, relative, sorted; in a store, all but its memory.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path != dir.join(MEMORY) {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// A SealedSecret of the demo key, made with `sealsync seal`.
fn sealed(namespace: &str, name: &str, values: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.yaml");
    let data: Vec<String> = values
        .iter()
        .map(|(k, v)| format!("  {k}: {v}\n"))
        .collect();
    fs::write(
        &secret,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData:\n{}",
            data.concat()
        ),
    )
    .unwrap();
    let run = sealsync(
        &[
            "seal",
            "-f",
            secret.to_str().unwrap(),
            "--cert",
            demo_cert().to_str().unwrap(),
        ],
        &path_without_kustomize(),
    );
    assert!(run.succeeded(), "{}", run.stderr());
    run.stdout()
}

#[test]
fn render_prints_the_secrets_with_values_redacted_unless_asked() {
    let repo = example_repo();
    let key = demo_key();
    let args = [
        "render",
        repo.path().to_str().unwrap(),
        "-k",
        key.to_str().unwrap(),
    ];
    let run = sealsync(&args, &path_without_kustomize());
    assert!(run.succeeded(), "{}", run.stderr());
    run.shows_no_value();
    let text = run.stdout();
    assert_eq!(text.matches("kind: Secret\n").count(), 4, "{text}");
    assert!(text.contains("password: (redacted, 20 bytes)"), "{text}");
    assert!(text.contains("namespace: shop-prod"), "{text}");

    let shown = sealsync(
        &[&args[..], &["--show-values"]].concat(),
        &path_without_kustomize(),
    );
    assert!(shown.succeeded(), "{}", shown.stderr());
    for value in PLANTED {
        assert!(shown.stdout().contains(&STANDARD.encode(value)), "{value}");
    }
    assert!(
        shown.stdout().contains(
            &STANDARD.encode("postgres://shop:demo-prod-db-password@db.shop-prod.svc:5432/shop")
        ),
        "the template was rendered: {}",
        shown.stdout()
    );

    let refused = sealsync(
        &["sync", repo.path().to_str().unwrap(), "--show-values"],
        &path_without_kustomize(),
    );
    assert!(!refused.succeeded());
    assert!(refused.stderr().contains("--show-values goes with render"));
}

#[test]
fn sync_writes_private_files_atomically_and_a_second_sync_changes_nothing() {
    let repo = example_repo();
    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("store");

    fs::write(
        repo.path().join("overlays/dev/external.yaml"),
        "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: api}\n\
         spec: {externalSecretSpec: {}, namespaceSelectors: [{matchLabels: {env: none}}]}\n",
    )
    .unwrap();
    let first = sync("sync", repo.path(), &out, &[]);
    assert!(
        first.succeeded(),
        "a ClusterExternalSecret that selects nothing is listed, not a failure: {}",
        first.stderr()
    );
    first.shows_no_value();
    let report = first.json();
    assert_eq!(report["skipped"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        actions(&report),
        pairs(&[
            ("shop-dev/db-credentials", "created"),
            ("shop-dev/feature-flags", "created"),
            ("shop-dev/payment-api-token", "created"),
            ("shop-prod/db-credentials", "created"),
        ])
    );
    let keys = &report["secrets"][3]["keys"]["added"];
    assert_eq!(
        keys.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["password", "url", "username"]
    );
    assert!(keys["password"].as_str().unwrap().starts_with("hash:"));
    assert_eq!(
        files(&out),
        [
            "shop-dev/db-credentials.yaml",
            "shop-dev/feature-flags.yaml",
            "shop-dev/payment-api-token.yaml",
            "shop-prod/db-credentials.yaml"
        ],
        "one manifest per Secret, no temporary file left"
    );
    assert_eq!(
        fs::metadata(out.join(MEMORY)).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700,
        "a new store is its owner's only"
    );
    let file = out.join("shop-prod/db-credentials.yaml");
    let metadata = fs::metadata(&file).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    let manifest: Value = serde_norway::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "Secret");
    assert_eq!(manifest["metadata"]["labels"]["app"], "shop");
    assert_eq!(
        manifest["data"]["password"],
        STANDARD.encode("demo-prod-db-password")
    );

    let second = sync("sync", repo.path(), &out, &[]);
    assert!(second.succeeded(), "{}", second.stderr());
    assert_eq!(
        actions(&second.json()),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "unchanged"),
            ("shop-prod/db-credentials", "unchanged"),
        ])
    );
    assert_eq!(
        fs::metadata(&file).unwrap().ino(),
        metadata.ino(),
        "an unchanged Secret is not rewritten"
    );

    let text = sealsync(
        &[
            "sync",
            repo.path().to_str().unwrap(),
            "-k",
            demo_key().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &path_without_kustomize(),
    );
    assert!(text.succeeded());
    assert!(
        text.stdout()
            .contains("4 unchanged, 0 pruned, 0 refused, 0 failed; 0 problems"),
        "{}",
        text.stdout()
    );

    // The store remembers what each file was synced from, and with which key: another key
    // given too changes nothing; without the key that opened them, the SealedSecrets are
    // opened again (and fail); a file edited by hand is reverted.
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("key.pem");
    let made = sealsync(
        &[
            "keygen",
            "--key-out",
            other_key.to_str().unwrap(),
            "--cert-out",
            other.path().join("cert.pem").to_str().unwrap(),
        ],
        &path_without_kustomize(),
    );
    assert!(made.succeeded(), "{}", made.stderr());
    let keys = format!("{},{}", other_key.display(), demo_key().display());
    let with_keys = |command: &str, keys: &str| {
        let args = [
            command,
            repo.path().to_str().unwrap(),
            "-k",
            keys,
            "--out",
            out.to_str().unwrap(),
            "-o",
            "json",
        ];
        let run = sealsync(&args, &path_without_kustomize());
        run.shows_no_value();
        run
    };
    let both = with_keys("sync", &keys);
    assert!(both.succeeded(), "{}", both.stderr());
    assert_eq!(actions(&both.json()), actions(&second.json()));
    fs::remove_file(out.join(MEMORY)).unwrap();
    let opened = with_keys("sync", &keys);
    assert_eq!(
        opened.json()["secrets"],
        both.json()["secrets"],
        "a remembered Secret's row is an opened one's"
    );
    let without = with_keys("diff", other_key.to_str().unwrap());
    assert!(!without.succeeded());
    assert_eq!(
        actions(&without.json()),
        pairs(&[
            ("shop-dev/db-credentials", "failed"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "failed"),
            ("shop-prod/db-credentials", "failed"),
        ]),
        "the memory holds only with the keys that opened them"
    );
    let edited = fs::read_to_string(&file).unwrap().replace(
        &STANDARD.encode("demo-prod-db-password"),
        &STANDARD.encode("edited-by-hand"),
    );
    fs::write(&file, edited).unwrap();
    let reverted = with_keys("sync", &keys);
    assert!(reverted.succeeded(), "{}", reverted.stderr());
    assert_eq!(
        actions(&reverted.json()),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "unchanged"),
            ("shop-prod/db-credentials", "updated"),
        ])
    );
    assert!(
        fs::read_to_string(&file)
            .unwrap()
            .contains(&STANDARD.encode("demo-prod-db-password"))
    );
}

#[test]
fn diff_reports_keys_added_changed_and_removed_and_sync_prunes_only_its_own() {
    let repo = example_repo();
    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("store");
    assert!(sync("sync", repo.path(), &out, &[]).succeeded());
    // Secrets of the store this source's sync did not write: by hand, and by a sync of
    // another folder.
    fs::create_dir_all(out.join("shop-dev")).unwrap();
    fs::write(
        out.join("shop-dev/by-hand.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: by-hand, namespace: shop-dev}\ndata: {a: YQ==}\n",
    )
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    fs::write(
        other.path().join("other.yaml"),
        sealed("shop-dev", "from-elsewhere", &[("k", "elsewhere-value")]),
    )
    .unwrap();
    assert!(sync("sync", other.path(), &out, &[]).succeeded());

    // The repository changes: a value changed, a key added and one removed, a Secret gone.
    fs::write(
        repo.path().join("overlays/dev/db-credentials.yaml"),
        sealed(
            "shop-dev",
            "db-credentials",
            &[
                ("username", "shop"),
                ("password", "new-dev-secret"),
                ("port", "'5432'"),
            ],
        ),
    )
    .unwrap();
    fs::remove_file(repo.path().join("overlays/dev/payment-api-token.yaml")).unwrap();
    let before = fs::read(out.join("shop-dev/db-credentials.yaml")).unwrap();

    let diff = sync("diff", repo.path(), &out, &[]);
    assert!(diff.succeeded(), "{}", diff.stderr());
    diff.shows_no_value();
    assert!(!diff.stdout().contains("new-dev-secret"));
    let report = diff.json();
    assert_eq!(
        actions(&report),
        pairs(&[
            ("shop-dev/db-credentials", "updated"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "pruned"),
            ("shop-prod/db-credentials", "unchanged"),
        ])
    );
    let keys = &report["secrets"][0]["keys"];
    assert_eq!(keys["added"].as_object().unwrap().len(), 1);
    assert!(keys["added"]["port"].as_str().unwrap().starts_with("hash:"));
    let (old, new) = (
        keys["changed"]["password"][0].as_str().unwrap(),
        keys["changed"]["password"][1].as_str().unwrap(),
    );
    assert_ne!(old, new);
    assert_eq!(keys["unchanged"], serde_json::json!(["username"]));
    assert!(report["secrets"][2]["keys"]["removed"]["token"].is_string());
    assert_eq!(
        fs::read(out.join("shop-dev/db-credentials.yaml")).unwrap(),
        before,
        "diff writes nothing"
    );
    assert!(out.join("shop-dev/payment-api-token.yaml").exists());

    let text = sealsync(
        &[
            "diff",
            repo.path().to_str().unwrap(),
            "-k",
            demo_key().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &path_without_kustomize(),
    );
    text.shows_no_value();
    assert!(
        text.stdout().contains("    ~ password  hash:"),
        "{}",
        text.stdout()
    );
    assert!(
        text.stdout().contains("    + port  hash:"),
        "{}",
        text.stdout()
    );
    assert!(
        text.stdout().contains("- shop-dev/payment-api-token"),
        "{}",
        text.stdout()
    );

    let applied = sync("sync", repo.path(), &out, &[]);
    assert!(applied.succeeded(), "{}", applied.stderr());
    assert_eq!(
        actions(&applied.json()),
        actions(&report),
        "sync did what diff said"
    );
    assert_eq!(
        files(&out),
        [
            "shop-dev/by-hand.yaml",
            "shop-dev/db-credentials.yaml",
            "shop-dev/feature-flags.yaml",
            "shop-dev/from-elsewhere.yaml",
            "shop-prod/db-credentials.yaml"
        ],
        "only this source's Secret was pruned"
    );
    let again = sync("diff", repo.path(), &out, &[]);
    assert!(
        actions(&again.json()).iter().all(|(_, a)| a == "unchanged"),
        "{}",
        again.stdout()
    );
}

#[test]
fn kustomize_overlays_are_rendered_with_kustomize_from_path() {
    let repo = example_repo();
    let overlay = repo.path().join("overlays/prod");
    let key = demo_key();
    let args = [
        "render",
        overlay.to_str().unwrap(),
        "-k",
        key.to_str().unwrap(),
        "-o",
        "json",
    ];
    let run = sealsync(&args, &path_with_kustomize());
    assert!(run.succeeded(), "{}", run.stderr());
    run.shows_no_value();
    let list = run.json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "the Deployment is not a Secret: {list}");
    assert_eq!(items[0]["metadata"]["namespace"], "shop-prod");
    assert_eq!(items[0]["data"]["url"], "(redacted, 64 bytes)");

    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("store");
    let mut synced = sealsync(
        &[
            "sync",
            repo.path().join("overlays/dev").to_str().unwrap(),
            "-k",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-o",
            "json",
        ],
        &path_with_kustomize(),
    );
    assert!(synced.succeeded(), "{}", synced.stderr());
    assert_eq!(
        actions(&synced.json()),
        pairs(&[
            ("shop-dev/db-credentials", "created"),
            ("shop-dev/feature-flags", "created"),
            ("shop-dev/payment-api-token", "created"),
        ])
    );
    let source = synced.json()["secrets"][0]["source"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(source.starts_with("kustomize build "), "{source}");

    synced = sealsync(&args, &path_without_kustomize());
    assert!(!synced.succeeded());
    assert!(
        synced
            .stderr()
            .contains("neither kustomize nor kubectl is on PATH: install kustomize"),
        "{}",
        synced.stderr()
    );
    assert!(synced.stderr().contains("overlays/prod/kustomization.yaml"));
}

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(repo)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

#[test]
fn a_git_revision_is_read_as_committed() {
    let repo = example_repo();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(
        repo.path(),
        &[
            "remote",
            "add",
            "origin",
            "https://deploy:hunter2@git.example.invalid/shop/config.git",
        ],
    );
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "first"]);
    fs::remove_file(repo.path().join("overlays/prod/db-credentials.yaml")).unwrap();
    git(
        repo.path(),
        &["commit", "-q", "-a", "-m", "prod secret gone"],
    );
    // Not committed: only a read of the files on disk sees it.
    fs::write(
        repo.path().join("overlays/dev/extra.yaml"),
        sealed("shop-dev", "extra", &[("k", "uncommitted-value")]),
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("store");
    let dev = repo.path().join("overlays/dev");

    let head = sync("render", &dev, &out, &["--git"]);
    assert!(head.succeeded(), "{}", head.stderr());
    let rendered = head.json();
    let names: Vec<&str> = rendered["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["db-credentials", "feature-flags", "payment-api-token"],
        "HEAD has no extra.yaml"
    );

    let first = sync("sync", repo.path(), &out, &["--revision", "main~1"]);
    assert!(first.succeeded(), "{}", first.stderr());
    first.shows_no_value();
    let report = first.json();
    assert_eq!(report["revision"], "main~1");
    assert_eq!(
        report["secrets"][3]["source"],
        "main~1:overlays/prod/db-credentials.yaml:2"
    );
    assert_eq!(actions(&report).len(), 4);

    let head = sync("sync", repo.path(), &out, &["--revision", "HEAD"]);
    assert!(head.succeeded(), "{}", head.stderr());
    assert_eq!(
        actions(&head.json()),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "unchanged"),
            ("shop-prod/db-credentials", "pruned"),
        ]),
        "another revision of the same path prunes what it no longer declares"
    );
    let stored = fs::read_to_string(out.join("shop-dev/db-credentials.yaml")).unwrap();
    assert!(
        stored.contains("sealsync.dev/sync-source: git.example.invalid/shop/config\n"),
        "the source is the repository's remote, without its scheme or credentials: {stored}"
    );
    let on_disk = sync("sync", repo.path(), &out, &[]);
    assert!(on_disk.succeeded(), "{}", on_disk.stderr());
    assert_eq!(
        actions(&on_disk.json()),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/extra", "created"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "unchanged"),
        ]),
        "the working tree of the clone is the same source as its revisions"
    );

    let missing = sync("sync", repo.path(), &out, &["--revision", "no-such-branch"]);
    assert!(!missing.succeeded());
    assert!(
        missing.stderr().contains("revision \"no-such-branch\""),
        "{}",
        missing.stderr()
    );
}

#[test]
fn bad_input_is_reported_with_its_file_and_line_and_the_rest_is_synced() {
    let repo = example_repo();
    let r = repo.path();
    fs::write(
        r.join("broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n",
    )
    .unwrap();
    fs::write(
        r.join("typo.yaml"),
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecrets\nmetadata: {name: x, namespace: shop-dev}\n",
    )
    .unwrap();
    // The same Secret twice.
    fs::copy(
        r.join("overlays/prod/db-credentials.yaml"),
        r.join("overlays/prod/copy.yaml"),
    )
    .unwrap();
    // Sealed for another namespace: does not open here.
    let moved = fs::read_to_string(r.join("overlays/dev/payment-api-token.yaml"))
        .unwrap()
        .replace("namespace: shop-dev", "namespace: shop-qa");
    fs::write(r.join("moved.yaml"), moved).unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(
        outside.path().join("s.yaml"),
        sealed("shop-dev", "outside", &[("k", "v")]),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path().join("s.yaml"), r.join("link.yaml")).unwrap();
    fs::write(r.join("binary.yaml"), [0xff, 0xfe, 0x00, 0x41]).unwrap();

    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("store");
    let run = sync("sync", r, &out, &[]);
    assert!(!run.succeeded(), "exits non-zero");
    run.shows_no_value();
    let report = run.json();
    let problems: Vec<(String, Option<u64>)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["file"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                p["line"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            ("binary.yaml".to_string(), None),
            ("broken.yaml".to_string(), Some(5)),
            ("link.yaml".to_string(), None),
            ("copy.yaml".to_string(), Some(2)),
            ("db-credentials.yaml".to_string(), Some(2)),
            ("typo.yaml".to_string(), Some(1)),
        ],
        "{report:#}"
    );
    assert_eq!(
        actions(&report),
        pairs(&[
            ("shop-dev/db-credentials", "created"),
            ("shop-dev/feature-flags", "created"),
            ("shop-dev/payment-api-token", "created"),
            ("shop-qa/payment-api-token", "failed"),
        ]),
        "the rest is synced; the duplicate is not"
    );
    assert!(
        report["secrets"][3]["message"]
            .as_str()
            .unwrap()
            .contains("re-seal")
    );
    assert_eq!(
        report["pruned"], false,
        "a file was not read: nothing is pruned"
    );
    assert!(
        run.stderr().contains("failures (listed above)"),
        "{}",
        run.stderr()
    );
    assert!(!out.join("shop-dev/outside.yaml").exists());
}

/// A repository of ExternalSecrets reading AWS Secrets Manager (moto) and Vault (a dev
/// server) through stores whose auth names Secrets of a cluster.
const PROVIDER_REPO: &str = r#"apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: aws, namespace: shop}
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: aws-credentials, key: id}
          secretAccessKeySecretRef: {name: aws-credentials, key: secret}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: vault}
spec:
  conditions:
  - namespaceSelector: {matchLabels: {team: shop}}
  provider:
    vault:
      server: VAULT_ADDRESS
      path: secret
      version: v2
      auth:
        tokenSecretRef: {name: vault-token, namespace: eso, key: token}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: dsn, namespace: shop}
data:
  url: "postgres://{{ .user }}:{{ .password }}@db:5432/shop"
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: api, namespace: shop}
spec:
  secretStoreRef: {name: aws}
  data:
  - secretKey: token
    remoteRef: {key: shop/api, property: token}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: db, namespace: shop}
spec:
  secretStoreRef: {kind: ClusterSecretStore, name: vault}
  target:
    template:
      templateFrom:
      - configMap:
          name: dsn
          items: [{key: url}]
  dataFrom:
  - extract: {key: shop/db}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: lost, namespace: shop}
spec:
  secretStoreRef: {name: nowhere}
  data:
  - secretKey: k
    remoteRef: {key: shop/api}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: temp, namespace: shop}
spec:
  secretStoreRef: {name: aws}
  target: {deletionPolicy: Delete}
  data:
  - secretKey: k
    remoteRef: {key: shop/temp, property: k}
"#;

/// Values of [`PROVIDER_REPO`]'s remote secrets.
const PROVIDER_VALUES: [&str; 2] = ["aws-planted-token", "vault-planted-password"];

#[test]
fn external_secrets_sync_from_aws_and_vault_with_the_users_credentials() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (moto, vault) = runtime.block_on(async {
        let moto = Moto::start().await.unwrap();
        moto.client()
            .create_secret()
            .name("shop/api")
            .secret_string(format!(r#"{{"token":"{}"}}"#, PROVIDER_VALUES[0]))
            .send()
            .await
            .unwrap();
        moto.client()
            .create_secret()
            .name("shop/temp")
            .secret_string(r#"{"k":"v"}"#)
            .send()
            .await
            .unwrap();
        let vault = Vault::start().await.unwrap();
        let db = serde_json::json!({"user": "shop", "password": PROVIDER_VALUES[1]});
        vaultrs::kv2::set(&vault.client().unwrap(), Vault::KV2_MOUNT, "shop/db", &db)
            .await
            .unwrap();
        (moto, vault)
    });
    let repo = tempfile::tempdir().unwrap();
    fs::write(
        repo.path().join("shop.yaml"),
        PROVIDER_REPO.replace("VAULT_ADDRESS", vault.address()),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("store");
    let args = [
        "sync",
        repo.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-o",
        "json",
    ];
    let home_env = ("HOME", home.path().to_str().unwrap());
    let endpoint = moto.endpoint().to_string();
    let aws_env = [
        ("AWS_ACCESS_KEY_ID", Moto::ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", Moto::SECRET_ACCESS_KEY),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        home_env,
    ];
    let vault_env = [
        ("VAULT_ADDR", vault.address()),
        ("VAULT_TOKEN", Vault::ROOT_TOKEN),
    ];
    let everything = [&aws_env[..], &vault_env].concat();
    let shows_no_value = |run: &Run| {
        let all = run.stdout() + &run.stderr();
        for value in PROVIDER_VALUES {
            assert!(!all.contains(value), "{value} printed:\n{all}");
        }
    };

    let run = sealsync_with(&args, &path_without_kustomize(), &everything);
    shows_no_value(&run);
    assert!(!run.succeeded(), "one ExternalSecret has no store");
    let report = run.json();
    assert_eq!(
        actions(&report),
        pairs(&[
            ("shop/api", "created"),
            ("shop/db", "created"),
            ("shop/lost", "failed"),
            ("shop/temp", "created"),
        ]),
        "{report:#}"
    );
    let lost = report["secrets"][2]["message"].as_str().unwrap();
    assert!(
        lost.contains("SecretStore shop/nowhere does not exist"),
        "{lost}"
    );
    let source = report["secrets"][2]["source"].as_str().unwrap();
    assert!(source.ends_with("/shop.yaml:61"), "{source}");
    let data = |name: &str| -> Value {
        let text = fs::read_to_string(out.join(format!("shop/{name}.yaml"))).unwrap();
        serde_norway::from_str::<Value>(&text).unwrap()["data"].clone()
    };
    assert_eq!(
        data("api")["token"],
        STANDARD.encode(PROVIDER_VALUES[0]),
        "read from moto with the environment's keys, not the store's Secret"
    );
    assert_eq!(
        data("db")["url"],
        STANDARD.encode(format!(
            "postgres://shop:{}@db:5432/shop",
            PROVIDER_VALUES[1]
        )),
        "read from Vault with VAULT_TOKEN, the template from the repository's ConfigMap"
    );

    // Its remote secret gone, deletionPolicy Delete: the Secret is deleted, and said so.
    runtime.block_on(async {
        moto.client()
            .delete_secret()
            .secret_id("shop/temp")
            .force_delete_without_recovery(true)
            .send()
            .await
            .unwrap();
    });
    let run = sealsync_with(&args, &path_without_kustomize(), &everything);
    assert_eq!(
        run.json()["secrets"][3]["action"],
        "deleted",
        "{}",
        run.stdout()
    );
    assert!(!out.join("shop/temp.yaml").exists());

    // A SealedSecret and no key: reported, and the ExternalSecrets still synced.
    fs::write(
        repo.path().join("sealed.yaml"),
        sealed("shop", "sealed-one", &[("k", "v")]),
    )
    .unwrap();
    let run = sealsync_with(&args, &path_without_kustomize(), &everything);
    let report = run.json();
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("SealedSecret shop/sealed-one not opened: no private key"),
        "{report:#}"
    );
    assert_eq!(report["secrets"][0]["action"], "unchanged", "{report:#}");

    // The token goes to VAULT_ADDR only, never to a server the repository names.
    let before = fs::read(out.join("shop/db.yaml")).unwrap();
    let elsewhere = [
        &aws_env[..],
        &[vault_env[1], ("VAULT_ADDR", "https://127.0.0.1:1")],
    ]
    .concat();
    let run = sealsync_with(&args, &path_without_kustomize(), &elsewhere);
    let report = run.json();
    let message = report["secrets"][1]["message"].as_str().unwrap();
    assert!(
        message.contains("is not VAULT_ADDR (https://127.0.0.1:1): a local sync sends your Vault token to VAULT_ADDR only"),
        "{message}"
    );
    assert!(!run.stdout().contains(Vault::ROOT_TOKEN) && !run.stderr().contains(Vault::ROOT_TOKEN));

    // No Vault token: that ExternalSecret fails and its Secret stays as it was.
    let run = sealsync_with(&args, &path_without_kustomize(), &aws_env);
    shows_no_value(&run);
    let report = run.json();
    assert_eq!(report["secrets"][1]["action"], "failed", "{report:#}");
    let message = report["secrets"][1]["message"].as_str().unwrap();
    assert!(
        message.contains("no Vault token: set VAULT_TOKEN"),
        "{message}"
    );
    assert_eq!(report["secrets"][0]["action"], "unchanged");
    assert_eq!(fs::read(out.join("shop/db.yaml")).unwrap(), before);

    // `vault login`'s token file serves as well.
    fs::write(home.path().join(".vault-token"), Vault::ROOT_TOKEN).unwrap();
    let with_file = [&aws_env[..], &vault_env[..1]].concat();
    let run = sealsync_with(&args, &path_without_kustomize(), &with_file);
    assert_eq!(
        run.json()["secrets"][1]["action"],
        "unchanged",
        "{}",
        run.stdout()
    );

    // AWS down: its ExternalSecret fails, nothing is deleted or pruned.
    drop(moto);
    let run = sealsync_with(&args, &path_without_kustomize(), &everything);
    shows_no_value(&run);
    let report = run.json();
    assert_eq!(report["secrets"][0]["action"], "failed", "{report:#}");
    assert_eq!(
        files(&out),
        ["shop/api.yaml", "shop/db.yaml"],
        "an outage deletes nothing"
    );
    assert_eq!(data("api")["token"], STANDARD.encode(PROVIDER_VALUES[0]));
}

/// A repository with a fake ClusterSecretStore, Namespaces `dev` and `prod` of team shop
/// and `web` of another, and a ClusterExternalSecret for team shop's.
const FAN_OUT_REPO: &str = r#"apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: flags}
spec:
  provider:
    fake:
      data:
      - {key: /shop/token, value: demo-dev-payment-token}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: web, labels: {team: web}}
---
apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata: {name: token}
spec:
  namespaceSelectors: [{matchLabels: {team: shop}}]
  externalSecretSpec:
    secretStoreRef: {kind: ClusterSecretStore, name: flags}
    target: {name: payment-token}
    data:
    - secretKey: token
      remoteRef: {key: /shop/token}
"#;

#[test]
fn cluster_external_secrets_sync_into_each_declared_namespace_they_select() {
    let repo = tempfile::tempdir().unwrap();
    let manifests = repo.path().join("cluster.yaml");
    fs::write(&manifests, FAN_OUT_REPO).unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("store");

    let run = sync("sync", repo.path(), &out, &[]);
    run.shows_no_value();
    assert!(run.succeeded(), "{}", run.stderr());
    assert_eq!(
        actions(&run.json()),
        pairs(&[
            ("dev/payment-token", "created"),
            ("prod/payment-token", "created"),
        ]),
        "one Secret per selected Namespace, none in web"
    );
    let source = run.json()["secrets"][0]["source"].clone();
    assert!(
        source.as_str().unwrap().ends_with("/cluster.yaml:22"),
        "named by the ClusterExternalSecret: {source}"
    );
    let token = fs::read_to_string(out.join("prod/payment-token.yaml")).unwrap();
    let token: Value = serde_norway::from_str(&token).unwrap();
    assert_eq!(
        token["data"]["token"],
        STANDARD.encode("demo-dev-payment-token")
    );

    // prod leaves the team: its Secret is pruned, dev's stays as it was.
    let before = fs::read(out.join("dev/payment-token.yaml")).unwrap();
    fs::write(
        &manifests,
        FAN_OUT_REPO.replace(
            "{name: prod, labels: {team: shop}}",
            "{name: prod, labels: {team: none}}",
        ),
    )
    .unwrap();
    let run = sync("sync", repo.path(), &out, &[]);
    run.shows_no_value();
    assert!(run.succeeded(), "{}", run.stderr());
    assert_eq!(
        actions(&run.json()),
        pairs(&[
            ("dev/payment-token", "unchanged"),
            ("prod/payment-token", "pruned"),
        ])
    );
    assert_eq!(files(&out), ["dev/payment-token.yaml"]);
    assert_eq!(
        fs::read(out.join("dev/payment-token.yaml")).unwrap(),
        before
    );

    // Selecting no declared Namespace: listed, and nothing fails.
    fs::write(
        &manifests,
        FAN_OUT_REPO.replace("{team: shop}}]", "{team: gone}}]"),
    )
    .unwrap();
    let run = sealsync(
        &["render", repo.path().to_str().unwrap()],
        &path_without_kustomize(),
    );
    assert!(run.succeeded(), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("Not rendered: ClusterExternalSecret token (")
            && run
                .stderr()
                .contains("cluster.yaml:22): selects no Namespace the repository declares"),
        "{}",
        run.stderr()
    );
}

/// Changes dev's database password (to `new-dev-secret`) in a copy of the example and drops
/// its payment-api-token; the actions a sync reports next.
fn edit_the_example(repo: &Path) -> Vec<(String, String)> {
    fs::write(
        repo.join("overlays/dev/db-credentials.yaml"),
        sealed(
            "shop-dev",
            "db-credentials",
            &[("username", "shop"), ("password", "new-dev-secret")],
        ),
    )
    .unwrap();
    fs::remove_file(repo.join("overlays/dev/payment-api-token.yaml")).unwrap();
    pairs(&[
        ("shop-dev/db-credentials", "updated"),
        ("shop-dev/feature-flags", "unchanged"),
        ("shop-dev/payment-api-token", "pruned"),
        ("shop-prod/db-credentials", "unchanged"),
    ])
}

/// `sync` and `diff` with `--cluster` against the harness's API server, opening the
/// SealedSecrets with the demo key.
fn sync_cluster(command: &str, source: &Path, cluster: &TestCluster, extra: &[&str]) -> Run {
    let key = demo_key();
    let mut with_key = vec!["-k", key.to_str().unwrap()];
    with_key.extend_from_slice(extra);
    sync_cluster_without_keys(command, source, cluster, &with_key)
}

/// `sync` and `diff` with `--cluster` and no key (unless `extra` passes one): the cluster's
/// controller opens the SealedSecrets.
fn sync_cluster_without_keys(
    command: &str,
    source: &Path,
    cluster: &TestCluster,
    extra: &[&str],
) -> Run {
    let mut args = vec![
        command,
        source.to_str().unwrap(),
        "--cluster",
        "--kubeconfig",
        cluster.kubeconfig().to_str().unwrap(),
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let run = tokio::task::block_in_place(|| sealsync(&args, &path_with_kustomize()));
    run.shows_no_value();
    run
}

/// Makes the namespaces `names` in `cluster`.
async fn namespaces(cluster: &TestCluster, names: &[&str]) {
    cluster.create_namespaces(names).await.unwrap();
}

/// A Secret written by someone else (field manager `kubectl-create`).
fn by_hand(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        string_data: Some([("password".to_string(), "by-hand".to_string())].into()),
        ..Secret::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_into_a_cluster_applies_server_side_prunes_only_its_own_and_diff_writes_nothing() {
    let cluster = TestCluster::start().await.unwrap();
    let client = cluster.client();
    namespaces(&cluster, &["shop-dev", "shop-prod"]).await;
    let dev: Api<Secret> = Api::namespaced(client.clone(), "shop-dev");
    let prod: Api<Secret> = Api::namespaced(client.clone(), "shop-prod");
    let hand = PostParams {
        field_manager: Some("kubectl-create".into()),
        ..PostParams::default()
    };
    // Someone else's Secret where the repository declares one, and one that carries the
    // sync's label without being its.
    prod.create(&hand, &by_hand("shop-prod", "db-credentials", &[]))
        .await
        .unwrap();
    dev.create(
        &hand,
        &by_hand("shop-dev", "by-hand", &[("sealsync.dev/synced", "true")]),
    )
    .await
    .unwrap();
    let repo = example_repo();
    let first = pairs(&[
        ("shop-dev/db-credentials", "created"),
        ("shop-dev/feature-flags", "created"),
        ("shop-dev/payment-api-token", "created"),
        ("shop-prod/db-credentials", "refused"),
    ]);

    let diff = sync_cluster("diff", repo.path(), &cluster, &[]);
    assert!(!diff.succeeded(), "a refused Secret fails the run");
    assert_eq!(actions(&diff.json()), first, "{}", diff.stderr());
    assert!(
        dev.get_opt("db-credentials").await.unwrap().is_none(),
        "diff writes nothing"
    );

    let sync = sync_cluster("sync", repo.path(), &cluster, &[]);
    assert!(!sync.succeeded());
    assert_eq!(actions(&sync.json()), first, "sync did what diff said");
    let written = dev.get("db-credentials").await.unwrap();
    assert_eq!(
        written.data.as_ref().unwrap()["password"].0,
        b"demo-dev-db-password"
    );
    assert_eq!(written.labels()["sealsync.dev/synced"], "true");
    let managers: Vec<_> = written
        .managed_fields()
        .iter()
        .filter_map(|e| e.manager.as_deref())
        .collect();
    assert!(
        matches!(managers[..], [m] if m.starts_with("sealsync-sync/") && m.ends_with("/SealedSecret/db-credentials")),
        "{managers:?}"
    );
    let kept = prod.get("db-credentials").await.unwrap();
    assert_eq!(
        kept.data.unwrap()["password"].0,
        b"by-hand",
        "refused: left alone"
    );

    // Without the other's Secret in the way, the rest is unchanged: nothing written again.
    prod.delete("db-credentials", &Default::default())
        .await
        .unwrap();
    let version = written.resource_version();
    let sync = sync_cluster("sync", repo.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stderr());
    assert_eq!(
        actions(&sync.json()),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "unchanged"),
            ("shop-prod/db-credentials", "created"),
        ])
    );
    assert_eq!(
        dev.get("db-credentials").await.unwrap().resource_version(),
        version
    );

    // A value changed and a Secret no longer declared: the diff says so and writes
    // nothing; the sync updates and prunes, and leaves the labelled Secret not its own.
    let second = edit_the_example(repo.path());
    let diff = sync_cluster("diff", repo.path(), &cluster, &[]);
    assert!(diff.succeeded(), "{}", diff.stderr());
    assert!(!diff.stdout().contains("new-dev-secret"));
    let report = diff.json();
    assert_eq!(actions(&report), second);
    let changed = &report["secrets"][0]["keys"]["changed"]["password"];
    assert_ne!(changed[0], changed[1]);
    assert_eq!(
        dev.get("db-credentials").await.unwrap().resource_version(),
        version,
        "diff writes nothing"
    );
    assert!(dev.get_opt("payment-api-token").await.unwrap().is_some());

    let sync = sync_cluster("sync", repo.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stderr());
    assert_eq!(actions(&sync.json()), second);
    assert_eq!(
        dev.get("db-credentials").await.unwrap().data.unwrap()["password"].0,
        b"new-dev-secret"
    );
    assert!(dev.get_opt("payment-api-token").await.unwrap().is_none());
    assert!(
        dev.get_opt("by-hand").await.unwrap().is_some(),
        "not its own"
    );
}

/// A repository of team Y: ExternalSecrets of a fake store in `shop-dev`, for Secrets
/// named by `targets` (`name`, `name:Merge`, `name:Delete` for a merge deleted with its
/// remote secrets, or `name:token` for a service-account token).
fn team_y(targets: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: y, namespace: shop-dev}\nspec: {provider: {fake: {data: [{key: /y/key, value: team-y-value}]}}}\n",
    );
    for target in targets {
        let (name, how) = target.split_once(':').unwrap_or((target, ""));
        let target = match how {
            "Merge" => format!("{{name: {name}, creationPolicy: Merge}}"),
            "Delete" => {
                format!("{{name: {name}, creationPolicy: Merge, deletionPolicy: Delete}}")
            }
            "token" => format!(
                "{{name: {name}, template: {{type: kubernetes.io/service-account-token, metadata: {{annotations: {{kubernetes.io/service-account.name: default}}}}}}}}"
            ),
            _ => format!("{{name: {name}}}"),
        };
        yaml.push_str(&format!(
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es-{name}, namespace: shop-dev}}\nspec:\n  secretStoreRef: {{name: y, kind: SecretStore}}\n  target: {target}\n  data: [{{secretKey: from-y, remoteRef: {{key: /y/key}}}}]\n"
        ));
    }
    fs::write(dir.path().join("secrets.yaml"), yaml).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_sync_keeps_to_its_source_its_namespaces_and_secrets_that_consent() {
    let cluster = TestCluster::start().await.unwrap();
    namespaces(&cluster, &["shop-dev", "shop-prod"]).await;
    let dev: Api<Secret> = Api::namespaced(cluster.client(), "shop-dev");
    let prod: Api<Secret> = Api::namespaced(cluster.client(), "shop-prod");
    let hand = PostParams {
        field_manager: Some("kubectl-create".into()),
        ..PostParams::default()
    };
    dev.create(&hand, &by_hand("shop-dev", "by-hand", &[]))
        .await
        .unwrap();
    let x = example_repo();
    let as_x = ["--source-id", "team-x"];
    let sync = sync_cluster("sync", x.path(), &cluster, &as_x);
    assert!(sync.succeeded(), "{}", sync.stderr());
    assert_eq!(actions(&sync.json()).len(), 4);
    let flags = dev.get("feature-flags").await.unwrap();

    // Team Y declares X's Secret, merges into someone's Secret, would delete X's Secret
    // with its remote secrets, asks for a token: none of it done, and its prune leaves X's
    // Secrets.
    let y = team_y(&[
        "feature-flags",
        "by-hand:Merge",
        "payment-api-token:Delete",
        "token:token",
    ]);
    let as_y = ["--source-id", "team-y"];
    for command in ["diff", "sync"] {
        let run = sync_cluster(command, y.path(), &cluster, &as_y);
        assert!(!run.succeeded());
        let report = run.json();
        assert_eq!(
            actions(&report),
            pairs(&[
                ("shop-dev/by-hand", "refused"),
                ("shop-dev/feature-flags", "refused"),
                ("shop-dev/payment-api-token", "failed"),
                ("shop-dev/token", "refused"),
            ]),
            "{command}: {report:#}"
        );
        let messages: Vec<&str> = report["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["message"].as_str().unwrap())
            .collect();
        assert!(
            messages[0].contains("annotate it sealsync.dev/sync-source=team-y"),
            "{messages:?}"
        );
        assert!(messages[1].contains("already exists"), "{messages:?}");
        assert!(
            messages[2].contains("set creationPolicy Owner"),
            "{messages:?}"
        );
        assert!(
            messages[3].contains("kubernetes.io/service-account-token"),
            "{messages:?}"
        );
    }
    assert_eq!(
        dev.get("feature-flags").await.unwrap().resource_version(),
        flags.resource_version(),
        "X's Secret untouched"
    );
    assert!(dev.get_opt("token").await.unwrap().is_none());
    assert!(dev.get_opt("payment-api-token").await.unwrap().is_some());
    let kept = dev.get("by-hand").await.unwrap().data.unwrap();
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["password"]);

    // The Secret names Y: Y merges into it, and leaves its other keys.
    let consent =
        serde_json::json!({"metadata": {"annotations": {"sealsync.dev/sync-source": "team-y"}}});
    dev.patch(
        "by-hand",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&consent),
    )
    .await
    .unwrap();
    let y = team_y(&["by-hand:Merge"]);
    let run = sync_cluster("sync", y.path(), &cluster, &as_y);
    assert!(run.succeeded(), "{}", run.stderr());
    assert_eq!(
        actions(&run.json()),
        pairs(&[("shop-dev/by-hand", "updated")])
    );
    let merged = dev.get("by-hand").await.unwrap().data.unwrap();
    assert_eq!(merged["password"].0, b"by-hand");
    assert_eq!(merged["from-y"].0, b"team-y-value");

    // X limited to shop-dev: its prod Secret is refused, and not pruned when X drops it.
    let limited = ["--source-id", "team-x", "--namespaces", "shop-dev"];
    let run = sync_cluster("sync", x.path(), &cluster, &limited);
    assert!(!run.succeeded());
    let report = run.json();
    let prod_row = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["secret"] == "shop-prod/db-credentials")
        .unwrap();
    assert_eq!(prod_row["action"], "refused");
    assert!(
        prod_row["message"]
            .as_str()
            .unwrap()
            .contains("not one of --namespaces"),
        "{prod_row}"
    );
    fs::remove_file(x.path().join("overlays/prod/db-credentials.yaml")).unwrap();
    let run = sync_cluster("sync", x.path(), &cluster, &limited);
    assert!(run.succeeded(), "{}", run.stderr());
    assert!(prod.get_opt("db-credentials").await.unwrap().is_some());
    let run = sync_cluster("sync", x.path(), &cluster, &as_x);
    assert!(run.succeeded(), "{}", run.stderr());
    assert!(
        actions(&run.json()).contains(&("shop-prod/db-credentials".into(), "pruned".into())),
        "without the limit, X prunes its own"
    );
    assert!(prod.get_opt("db-credentials").await.unwrap().is_none());
}

/// The message of the report's row of `secret`.
fn message(report: &Value, secret: &str) -> String {
    report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["secret"] == secret)
        .unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until `api` has no object `name` (a minute at most).
async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(
        &format!("{name} to be deleted"),
        std::time::Duration::from_secs(60),
        None,
        || {
            let api = api.clone();
            async move { Ok(api.get_opt(name).await?.is_none()) }
        },
    )
    .await
    .unwrap();
}

/// A sealing controller of `kind` in `cluster` whose only key is the demo key.
async fn controller_with_demo_key(cluster: &TestCluster, kind: Sealing) -> SealingController {
    let key = PrivateKey::from_pem(&fs::read_to_string(demo_key()).unwrap()).unwrap();
    let cert = SealingCertificate::from_pem(&fs::read(demo_cert()).unwrap()).unwrap();
    SealingController::start_with_key(cluster, kind, &key, &cert)
        .await
        .unwrap()
}

/// `sync --cluster` without keys, with `kind`'s controller opening the SealedSecrets: the
/// report is the Secrets' as a sync with keys gives it, a second sync changes nothing, a
/// diff applies nothing, a SealedSecret no longer declared is pruned with its Secret, and
/// one someone else applied, or that does not open, fails alone.
async fn sync_through_the_controller(kind: Sealing) {
    let cluster = TestCluster::start().await.unwrap();
    let _controller = controller_with_demo_key(&cluster, kind).await;
    let client = cluster.client();
    namespaces(&cluster, &["shop-dev", "shop-prod"]).await;
    let dev: Api<Secret> = Api::namespaced(client.clone(), "shop-dev");
    let sealed_dev: Api<SealedSecret> = Api::namespaced(client.clone(), "shop-dev");
    let repo = example_repo();
    let created = pairs(&[
        ("shop-dev/db-credentials", "created"),
        ("shop-dev/feature-flags", "created"),
        ("shop-dev/payment-api-token", "created"),
        ("shop-prod/db-credentials", "created"),
    ]);

    let diff = sync_cluster_without_keys("diff", repo.path(), &cluster, &[]);
    assert!(diff.succeeded(), "{}", diff.stderr());
    assert_eq!(actions(&diff.json()), created);
    assert!(
        sealed_dev
            .get_opt("db-credentials")
            .await
            .unwrap()
            .is_none(),
        "diff applies nothing"
    );

    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stderr());
    let report = sync.json();
    assert_eq!(actions(&report), created);
    let keys = &report["secrets"][0]["keys"]["added"];
    assert!(
        keys["password"].as_str().unwrap().starts_with("hash:") && keys["username"].is_string(),
        "{report}"
    );
    let written = dev.get("db-credentials").await.unwrap();
    assert_eq!(
        written.data.as_ref().unwrap()["password"].0,
        b"demo-dev-db-password"
    );
    let owner = &written.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("SealedSecret", "db-credentials"),
        "the controller made it"
    );
    let applied = sealed_dev.get("db-credentials").await.unwrap();
    assert_eq!(applied.labels()["sealsync.dev/synced"], "true");
    let annotations = applied.annotations();
    assert_eq!(
        annotations["sealsync.dev/sync-created-by"], annotations["sealsync.dev/sync-source"],
        "{annotations:?}"
    );

    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stderr());
    assert_eq!(
        actions(&sync.json()),
        created
            .iter()
            .map(|(secret, _)| (secret.clone(), "unchanged".to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        sealed_dev
            .get("db-credentials")
            .await
            .unwrap()
            .resource_version(),
        applied.resource_version(),
        "nothing applied again"
    );
    let limited =
        sync_cluster_without_keys("sync", repo.path(), &cluster, &["--namespaces", "shop-dev"]);
    assert!(!limited.succeeded());
    let report = limited.json();
    assert_eq!(
        actions(&report),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/payment-api-token", "unchanged"),
            ("shop-prod/db-credentials", "refused"),
        ]),
        "{report}"
    );

    // A value changed and a SealedSecret no longer declared.
    let second = edit_the_example(repo.path());
    let diff = sync_cluster_without_keys("diff", repo.path(), &cluster, &[]);
    assert!(diff.succeeded(), "{}", diff.stderr());
    assert_eq!(actions(&diff.json()), second);
    assert!(
        sealed_dev
            .get_opt("payment-api-token")
            .await
            .unwrap()
            .is_some()
    );
    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stderr());
    let report = sync.json();
    assert_eq!(actions(&report), second);
    let changed = &report["secrets"][0]["keys"]["changed"]["password"];
    assert_ne!(changed[0], changed[1]);
    assert_eq!(
        dev.get("db-credentials").await.unwrap().data.unwrap()["password"].0,
        b"new-dev-secret"
    );
    assert!(
        sealed_dev
            .get_opt("payment-api-token")
            .await
            .unwrap()
            .is_none()
    );
    gone(&dev, "payment-api-token").await;

    // Someone else's SealedSecret where the repository declares one, one sealed for
    // another name, and one for a service-account token: each fails alone, the rest is
    // unchanged.
    // One that is not a valid SealedSecret, carrying the sync's label, stops no other's
    // verdict (given to sealsync's controller only, which skips it; what upstream's makes
    // of one is not this test's subject).
    if kind == Sealing::Sealsync {
        let labels = serde_json::json!({"sealsync.dev/synced": "true"});
        cluster
            .create_invalid_sealed_secret("shop-dev", "invalid", labels)
            .await
            .unwrap();
    }

    // Theirs is server-side applied, so that a forced apply over it takes all their
    // writes of its spec.
    let their_value = "AgBtaGVpcnMtY2lwaGVydGV4dA==";
    sealed_dev
        .patch(
            "theirs",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
                "metadata": {"name": "theirs", "namespace": "shop-dev"},
                "spec": {"encryptedData": {"password": their_value}},
            })),
        )
        .await
        .unwrap();
    fs::write(
        repo.path().join("overlays/dev/theirs.yaml"),
        sealed("shop-dev", "theirs", &[("password", "not-ours")]),
    )
    .unwrap();
    fs::write(
        repo.path().join("overlays/dev/renamed.yaml"),
        sealed("shop-dev", "original", &[("password", "renamed-value")])
            .replace("name: original", "name: renamed"),
    )
    .unwrap();
    fs::write(
        repo.path().join("overlays/dev/token.yaml"),
        sealed("shop-dev", "token", &[("token", "forged")]).replace(
            "  encryptedData:",
            "    type: kubernetes.io/service-account-token\n  encryptedData:",
        ),
    )
    .unwrap();
    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &["--timeout", "90s"]);
    assert!(!sync.succeeded());
    assert!(!sync.stdout().contains("not-ours") && !sync.stdout().contains("renamed-value"));
    let report = sync.json();
    assert_eq!(
        actions(&report),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/renamed", "failed"),
            ("shop-dev/theirs", "refused"),
            ("shop-dev/token", "refused"),
            ("shop-prod/db-credentials", "unchanged"),
        ])
    );
    assert!(sealed_dev.get_opt("token").await.unwrap().is_none());
    assert!(
        message(&report, "shop-dev/renamed")
            .contains("the controller did not open SealedSecret shop-dev/renamed"),
        "{report}"
    );
    assert!(
        message(&report, "shop-dev/theirs").contains("this sync did not apply it"),
        "{report}"
    );
    assert_eq!(
        sealed_dev.get("theirs").await.unwrap().spec.encrypted_data["password"],
        their_value,
        "left alone"
    );

    // Handed over by its annotation, it is synced; dropped from the repository, it is not
    // pruned: this source did not create it.
    let source = &applied.annotations()["sealsync.dev/sync-source"];
    sealed_dev
        .patch(
            "theirs",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"sealsync.dev/sync-source": source}}
            })),
        )
        .await
        .unwrap();
    for name in ["renamed", "token"] {
        fs::remove_file(repo.path().join(format!("overlays/dev/{name}.yaml"))).unwrap();
    }
    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stderr());
    assert_eq!(
        actions(&sync.json()),
        pairs(&[
            ("shop-dev/db-credentials", "unchanged"),
            ("shop-dev/feature-flags", "unchanged"),
            ("shop-dev/renamed", "pruned"),
            // Their ciphertext opened with no key: it had no Secret.
            ("shop-dev/theirs", "created"),
            ("shop-prod/db-credentials", "unchanged"),
        ])
    );
    assert_eq!(
        dev.get("theirs").await.unwrap().data.unwrap()["password"].0,
        b"not-ours"
    );
    fs::remove_file(repo.path().join("overlays/dev/theirs.yaml")).unwrap();
    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stderr());
    assert_eq!(actions(&sync.json()).len(), 3, "nothing pruned");
    assert!(sealed_dev.get_opt("theirs").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_sync_without_keys_has_sealsyncs_controller_open_the_sealed_secrets() {
    sync_through_the_controller(Sealing::Sealsync).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_sync_without_keys_has_upstreams_controller_open_the_sealed_secrets() {
    sync_through_the_controller(Sealing::Upstream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_sync_without_keys_says_when_no_controller_or_no_sealed_secret_api_is_there() {
    let cluster = TestCluster::start().await.unwrap();
    namespaces(&cluster, &["shop-dev"]).await;
    let repo = example_repo();

    // No controller: applied, then a failure that says what to check; a namespace that
    // does not exist is named; the ExternalSecret is synced all the same.
    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &["--timeout", "1s"]);
    assert!(!sync.succeeded());
    let report = sync.json();
    assert_eq!(
        actions(&report),
        pairs(&[
            ("shop-dev/db-credentials", "failed"),
            ("shop-dev/feature-flags", "created"),
            ("shop-dev/payment-api-token", "failed"),
            ("shop-prod/db-credentials", "failed"),
        ])
    );
    assert!(
        message(&report, "shop-dev/db-credentials")
            .contains("no controller reported on it within 1s"),
        "{report}"
    );
    assert!(
        message(&report, "shop-prod/db-credentials")
            .contains(r#"namespaces "shop-prod" not found"#),
        "{report}"
    );
    namespaces(&cluster, &["shop-prod"]).await;

    // No SealedSecret API: each SealedSecret says so, and a repository of ExternalSecrets
    // alone syncs (there is nothing to prune).
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    crds.delete("sealedsecrets.bitnami.com", &Default::default())
        .await
        .unwrap();
    gone(&crds, "sealedsecrets.bitnami.com").await;
    let sync = sync_cluster_without_keys("sync", repo.path(), &cluster, &[]);
    assert!(!sync.succeeded());
    let report = sync.json();
    assert!(
        message(&report, "shop-prod/db-credentials")
            .contains("the cluster has no SealedSecret API"),
        "{report}"
    );
    let y = team_y(&["only-external"]);
    let sync = sync_cluster_without_keys("sync", y.path(), &cluster, &[]);
    assert!(sync.succeeded(), "{}", sync.stdout());
    assert_eq!(
        actions(&sync.json()),
        pairs(&[("shop-dev/only-external", "created")])
    );
}
