//! Without private keys, `validate` and `reencrypt` (kubeseal's `--validate`, `--re-encrypt`;
//! and `reencrypt --all` over a tree) ask the controller, and `seal --clusters` fetches a
//! cluster's certificate, through the API server's service proxy: here the real upstream
//! controller, with upstream kubeseal on the same inputs as the reference.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Context;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use sealsync_api::{
    Format, KEY_LABEL, SealedSecret, SecretManifest, keyring_from_key_secrets, parse_documents,
    to_document, unseal,
};
use sealsync_crypto::{Keyring, SealingCertificate};
use sealsync_testkit::{
    Component, NetNs, TestCluster, UpstreamController, binary, project_binary, run_ok, wait_for,
};

const NAMES: [&str; 4] = ["db", "api", "cache", "queue"];

#[tokio::test(flavor = "multi_thread")]
async fn validate_and_reencrypt_go_through_the_controller() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("through-controller").await?;
    let netns = NetNs::create()?;
    let mut controller = UpstreamController::start_behind_service(&cluster, &ns, &netns).await?;
    let proxy =
        format!("/api/v1/namespaces/{ns}/services/http:sealed-secrets-controller:http/proxy");
    let client = cluster.client();
    wait_for(
        "the controller through the service proxy",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let client = client.clone();
            let request = http::Request::get(format!("{proxy}/v1/cert.pem")).body(Vec::new());
            async move { Ok(client.request_text(request?).await?.contains("CERTIFICATE")) }
        },
    )
    .await?;

    let dir = cluster.dir().join("through-controller");
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let in_dir = |program: &Path, args: &[&str]| {
        let mut command = Command::new(program);
        command
            .current_dir(&dir)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("SEALED_SECRETS_CERT")
            .args(args);
        command
    };
    let sealsync_bin = project_binary("sealsync");
    let sealsync = |args: &[&str]| in_dir(&sealsync_bin, args);
    let kubeseal_link = dir.join("kubeseal");
    std::os::unix::fs::symlink(&sealsync_bin, &kubeseal_link)?;
    let upstream_kubeseal = binary(Component::SealedSecrets, "SEALSYNC_KUBESEAL");
    // Both kubeseals, ours first, with the same arguments.
    let kubeseals = [kubeseal_link.as_path(), upstream_kubeseal.as_path()];

    // Four Secrets sealed to the controller's certificate, fetched through the proxy too.
    let secrets: String = NAMES
        .iter()
        .map(|name| {
            format!(
                "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nstringData: {{password: pw-{name}}}\n"
            )
        })
        .collect();
    std::fs::write(dir.join("secrets.yaml"), secrets)?;
    run_ok(&mut sealsync(&[
        "seal",
        "-f",
        "secrets.yaml",
        "--controller-namespace",
        &ns,
        "-w",
        "sealed.yaml",
    ]));

    // Valid: one line per object from `sealsync validate`; four requests are more than the
    // controller's rate limit lets through at once, so its 429s are waited out.
    let out = run_ok(&mut sealsync(&[
        "validate",
        "-f",
        "sealed.yaml",
        "--controller-namespace",
        &ns,
        "--context",
        "test",
    ]));
    let report = String::from_utf8(out.stdout)?;
    assert_eq!(report.lines().count(), NAMES.len(), "{report}");
    for name in NAMES {
        assert!(report.contains(&format!("{ns}/{name}: valid")), "{report}");
    }
    // kubeseal --validate is silent on success.
    for program in kubeseals {
        let out = run_ok(&mut in_dir(
            program,
            &[
                "--validate",
                "-f",
                "sealed.yaml",
                "--controller-namespace",
                &ns,
            ],
        ));
        assert!(out.stdout.is_empty(), "{program:?}");
    }

    // Not valid: one renamed after sealing (its strict-scope label no longer matches), one
    // sealed to a certificate the controller has no key of; each after a valid object.
    let sealed: Vec<SealedSecret> = parse_documents(
        &std::fs::read_to_string(dir.join("sealed.yaml"))?,
        "sealed.yaml",
        "SealedSecret",
    )?;
    let mut renamed = sealed[0].clone();
    renamed.metadata.name = Some("db-renamed".into());
    write_sealed(&dir.join("renamed.yaml"), &[sealed[1].clone(), renamed])?;
    run_ok(&mut sealsync(&[
        "keygen",
        "--bits",
        "2048",
        "--key-out",
        "foreign-key.pem",
        "--cert-out",
        "foreign-cert.pem",
    ]));
    run_ok(&mut sealsync(&[
        "seal",
        "-f",
        "secrets.yaml",
        "--cert",
        "foreign-cert.pem",
        "-w",
        "foreign-all.yaml",
    ]));
    let foreign: Vec<SealedSecret> = parse_documents(
        &std::fs::read_to_string(dir.join("foreign-all.yaml"))?,
        "foreign-all.yaml",
        "SealedSecret",
    )?;
    write_sealed(
        &dir.join("foreign.yaml"),
        &[sealed[2].clone(), foreign[3].clone()],
    )?;
    for (file, object) in [("renamed.yaml", "db-renamed"), ("foreign.yaml", "queue")] {
        let object = format!("{ns}/{object}");
        let out = sealsync(&["validate", "-f", file, "--controller-namespace", &ns]).output()?;
        assert_one_line_failure(&out, &format!("unable to decrypt sealed secret {object}"));
        for program in kubeseals {
            let out = in_dir(
                program,
                &["--validate", "-f", file, "--controller-namespace", &ns],
            )
            .output()?;
            assert!(!out.status.success(), "{program:?} --validate {file}");
        }
        let out = in_dir(
            &kubeseal_link,
            &["--validate", "-f", file, "--controller-namespace", &ns],
        )
        .output()?;
        assert_one_line_failure(&out, &format!("unable to decrypt sealed secret {object}"));
    }

    // Multi-cluster sealing: one cluster's certificate from its controller (through a
    // kubeconfig context), another's from a file; each file opens only where it should.
    for overlay in ["here", "elsewhere"] {
        std::fs::create_dir_all(dir.join("fleet/overlays").join(overlay))?;
    }
    std::fs::write(
        dir.join("fleet/clusters.yaml"),
        format!(
            "clusters:\n\
             - {{name: here, context: test, controllerNamespace: {ns}, overlay: overlays/here}}\n\
             - {{name: elsewhere, cert: ../foreign-cert.pem, overlay: overlays/elsewhere}}\n"
        ),
    )?;
    run_ok(&mut sealsync(&[
        "seal",
        "-f",
        "secrets.yaml",
        "--clusters",
        "fleet/clusters.yaml",
        "-w",
        "sealed.yaml",
    ]));
    let validate =
        |file: &str| sealsync(&["validate", "-f", file, "--controller-namespace", &ns]).output();
    let out = validate("fleet/overlays/here/sealed.yaml")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_one_line_failure(
        &validate("fleet/overlays/elsewhere/sealed.yaml")?,
        "unable to decrypt sealed secret",
    );

    // Re-encryption: the controller gets a new key (SIGUSR1, its manual rotation) and
    // re-seals to it.
    let secrets_api: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let old_cert = controller.certificate()?;
    run_ok(Command::new("kill").args(["-USR1", &controller.process().id().to_string()]));
    wait_for(
        "the controller's second key",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let secrets_api = secrets_api.clone();
            async move {
                let keys = secrets_api
                    .list(&ListParams::default().labels(KEY_LABEL))
                    .await?;
                Ok(keys.items.len() == 2)
            }
        },
    )
    .await?;
    wait_for(
        "the controller to serve its new certificate",
        Duration::from_secs(30),
        None,
        || {
            let changed = controller.certificate().map(|pem| pem != old_cert);
            async move { changed }
        },
    )
    .await?;
    let new_cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let (old_keys, new_keys) = keyrings(&secrets_api, &new_cert).await?;

    run_ok(&mut sealsync(&[
        "reencrypt",
        "-f",
        "sealed.yaml",
        "--controller-namespace",
        &ns,
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "-o",
        "json",
        "-w",
        "resealed.json",
    ]));
    let text = std::fs::read_to_string(dir.join("resealed.json"))?;
    assert!(text.starts_with('{'), "JSON asked for: {text}");
    let resealed: Vec<SealedSecret> = parse_documents(&text, "resealed.json", "SealedSecret")?;
    assert_eq!(resealed.len(), NAMES.len());
    for (object, name) in resealed.iter().zip(NAMES) {
        assert_eq!(object.metadata.name.as_deref(), Some(name));
        assert_eq!(object.metadata.namespace.as_deref(), Some(ns.as_str()));
        let opened = unseal(object, &new_keys)?;
        assert_eq!(
            opened.secret.data["password"].expose(),
            format!("pw-{name}").as_bytes()
        );
        assert!(
            unseal(object, &old_keys).is_err(),
            "{name} was re-sealed to the new key, not the old one"
        );
    }

    // kubeseal --re-encrypt: ours writes what upstream writes, ciphertexts aside, to
    // standard output (-o yaml) and in place (a -f file without -w, kubeseal's #405).
    let mut printed = Vec::new();
    for (program, label) in kubeseals.into_iter().zip(["ours", "upstream"]) {
        let stdin = std::fs::File::open(dir.join("sealed.yaml"))?;
        let out = run_ok(
            in_dir(
                program,
                &["--re-encrypt", "--controller-namespace", &ns, "-o", "yaml"],
            )
            .stdin(stdin),
        );
        let on_stdout = String::from_utf8(out.stdout)?;
        let in_place = dir.join(format!("{label}.yaml"));
        std::fs::copy(dir.join("sealed.yaml"), &in_place)?;
        let out = run_ok(&mut in_dir(
            program,
            &[
                "--re-encrypt",
                "-f",
                &in_place.display().to_string(),
                "--controller-namespace",
                &ns,
            ],
        ));
        assert!(out.stdout.is_empty(), "{program:?} wrote in place");
        for text in [on_stdout, std::fs::read_to_string(&in_place)?] {
            assert!(!text.trim_start().starts_with('{'), "YAML expected: {text}");
            let objects: Vec<SealedSecret> =
                parse_documents(&text, "kubeseal output", "SealedSecret")
                    .with_context(|| format!("{program:?} printed {text:?}"))?;
            assert_eq!(objects.len(), NAMES.len(), "{program:?}");
            for object in &objects {
                unseal(object, &new_keys)?;
            }
            printed.push(objects.iter().map(without_ciphertext).collect::<Vec<_>>());
        }
    }
    assert_eq!(printed[0], printed[2], "standard output, ours and upstream");
    assert_eq!(printed[1], printed[3], "in place, ours and upstream");

    // `reencrypt --all`: a repository tree re-encrypted in place through the controller;
    // the comment and the layout stay, a file the controller cannot open stays untouched.
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("apps/db/overlays/prod"))?;
    let overlay = format!(
        "# sealed for prod\n{}",
        std::fs::read_to_string(dir.join("sealed.yaml"))?
    );
    std::fs::write(repo.join("apps/db/overlays/prod/sealed.yaml"), &overlay)?;
    let foreign_text = std::fs::read_to_string(dir.join("foreign.yaml"))?;
    std::fs::write(repo.join("foreign.yaml"), &foreign_text)?;
    let out = sealsync(&[
        "reencrypt",
        "--all",
        "repo",
        "--controller-namespace",
        &ns,
        "-o",
        "json",
    ])
    .output()?;
    assert!(!out.status.success(), "foreign.yaml fails");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(summary["reencrypted"], NAMES.len(), "{summary}");
    assert_eq!(summary["filesRewritten"], 1, "{summary}");
    assert_eq!(
        summary["failures"][0]["file"], "repo/foreign.yaml",
        "{summary}"
    );
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(
        std::fs::read_to_string(repo.join("foreign.yaml"))?,
        foreign_text
    );
    let rewritten = std::fs::read_to_string(repo.join("apps/db/overlays/prod/sealed.yaml"))?;
    assert!(rewritten.starts_with("# sealed for prod\n"), "{rewritten}");
    assert_eq!(rewritten.lines().count(), overlay.lines().count());
    let objects: Vec<SealedSecret> = parse_documents(&rewritten, "overlay", "SealedSecret")?;
    for (object, name) in objects.iter().zip(NAMES) {
        let opened = unseal(object, &new_keys)?;
        assert_eq!(
            opened.secret.data["password"].expose(),
            format!("pw-{name}").as_bytes()
        );
        assert!(
            unseal(object, &old_keys).is_err(),
            "{name} moved to the new key"
        );
    }

    // An object the controller cannot open fails re-encryption with its name, and nothing
    // is written.
    let out = sealsync(&[
        "reencrypt",
        "-f",
        "foreign.yaml",
        "--controller-namespace",
        &ns,
        "-w",
        "not-written.yaml",
    ])
    .output()?;
    assert_one_line_failure(
        &out,
        &format!("cannot re-encrypt sealed secret {ns}/queue through controller {ns}/"),
    );
    assert!(!dir.join("not-written.yaml").exists());

    // The controller flags are honoured: another name is another Service.
    let out = sealsync(&[
        "validate",
        "-f",
        "sealed.yaml",
        "--controller-namespace",
        &ns,
        "--controller-name",
        "nope",
    ])
    .output()?;
    assert_one_line_failure(&out, &format!("cannot reach controller {ns}/nope"));

    // A controller that is down fails at once, naming it.
    controller.process().kill();
    let out = sealsync(&[
        "validate",
        "-f",
        "sealed.yaml",
        "--controller-namespace",
        &ns,
    ])
    .output()?;
    assert_one_line_failure(
        &out,
        &format!(
            "cannot validate sealed secret {ns}/db through controller {ns}/sealed-secrets-controller"
        ),
    );
    Ok(())
}

fn write_sealed(path: &Path, objects: &[SealedSecret]) -> anyhow::Result<()> {
    std::fs::write(path, to_document(objects, Format::Yaml)?.as_bytes())?;
    Ok(())
}

fn assert_one_line_failure(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// The keyring of the controller's key that is not `newest`'s, and of that one.
async fn keyrings(
    secrets: &Api<Secret>,
    newest: &SealingCertificate,
) -> anyhow::Result<(Keyring, Keyring)> {
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for secret in secrets
        .list(&ListParams::default().labels(KEY_LABEL))
        .await?
        .items
    {
        let manifest: SecretManifest = serde_json::from_value(serde_json::to_value(&secret)?)?;
        let (keyring, cert) = keyring_from_key_secrets(std::slice::from_ref(&manifest))?;
        let cert = cert.context("a key Secret has its certificate")?;
        if cert.public_key() == newest.public_key() {
            new.push(keyring);
        } else {
            old.push(keyring);
        }
    }
    match (old.pop(), new.pop(), old.is_empty() && new.is_empty()) {
        (Some(old), Some(new), true) => Ok((old, new)),
        _ => anyhow::bail!("expected one old key and the new one"),
    }
}

/// The object as JSON with each ciphertext replaced by its key, for comparing outputs.
fn without_ciphertext(object: &SealedSecret) -> serde_json::Value {
    let mut object = object.clone();
    for (key, value) in object.spec.encrypted_data.iter_mut() {
        *value = key.clone();
    }
    serde_json::to_value(object).expect("SealedSecrets serialize")
}
