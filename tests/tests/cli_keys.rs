//! `sealsync keys` against sealsync's controller behind its Service on the harness's API
//! server: list, rotate (one key per request), retire (refused while SealedSecrets depend
//! on the key), backup and restore (no unwanted key), and no key material in any output.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sealsync_api::{
    KEY_LABEL, SealOptions, SealedSecret, SecretManifest, key_secret, parse_documents, seal_secret,
};
use sealsync_crypto::{PrivateKey, SealingCertificate};
use sealsync_testkit::{NetNs, SealsyncController, TestCluster, project_binary, wait_for};

const CONTROLLER_ARGS: &[&str] = &["--key-size=2048", "--key-renew-period=1h"];

/// The `sealsync` command line against the controller in `controller_ns`.
fn sealsync(cluster: &TestCluster, controller_ns: &str, args: &[&str]) -> Command {
    let mut command = Command::new(project_binary("sealsync"));
    command
        .current_dir(cluster.dir())
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("SEALSYNC_KEYS_PASSPHRASE", "correct horse battery staple")
        .args(args)
        .args(["--controller-namespace", controller_ns]);
    command
}

/// Runs `command`, keeps its output in `outputs` (checked for key material at the end).
fn run(command: &mut Command, outputs: &mut String) -> Output {
    let out = command.output().expect("sealsync starts");
    outputs.push_str(&String::from_utf8_lossy(&out.stdout));
    outputs.push_str(&String::from_utf8_lossy(&out.stderr));
    out
}

fn run_ok(command: &mut Command, outputs: &mut String) -> String {
    let out = run(command, outputs);
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Seals `password: pw-<name>` to `cert` as SealedSecret `ns/name` (replacing it).
async fn seal(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    cert: &SealingCertificate,
) -> anyhow::Result<()> {
    let yaml = format!(
        "kind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {{password: pw-{name}}}\n"
    );
    let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
    let sealed = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
    let api: Api<SealedSecret> = Api::namespaced(cluster.client(), ns);
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&sealed),
    )
    .await?;
    Ok(())
}

/// Waits until SealedSecret `ns/name` records exactly `fingerprint` as the key that opened it.
async fn wait_opened_by(
    cluster: &TestCluster,
    ns: &str,
    name: &str,
    fingerprint: &str,
) -> anyhow::Result<()> {
    let api: Api<SealedSecret> = Api::namespaced(cluster.client(), ns);
    wait_for(
        &format!("{name} opened by {fingerprint}"),
        Duration::from_secs(120),
        None,
        || {
            let api = api.clone();
            async move {
                Ok(api
                    .get(name)
                    .await?
                    .status
                    .is_some_and(|s| s.key_fingerprints == [fingerprint]))
            }
        },
    )
    .await
}

/// Waits until Secret `ns/name` holds its sealed password.
async fn wait_unsealed(cluster: &TestCluster, ns: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(cluster.client(), ns);
    wait_for(
        &format!("Secret {name} unsealed"),
        Duration::from_secs(120),
        None,
        || {
            let api = api.clone();
            async move {
                Ok(api.get_opt(name).await?.is_some_and(|s| {
                    s.data
                        .and_then(|d| d.get("password").cloned())
                        .is_some_and(|v| v.0 == format!("pw-{name}").as_bytes())
                }))
            }
        },
    )
    .await
}

/// The key Secrets of `ns`, full (the test is the administrator).
async fn key_secrets(cluster: &TestCluster, ns: &str) -> anyhow::Result<Vec<Secret>> {
    let api: Api<Secret> = Api::namespaced(cluster.client(), ns);
    Ok(api
        .list(&ListParams::default().labels(KEY_LABEL))
        .await?
        .items)
}

/// A body line of each key Secret's private key PEM: none may show in any output.
async fn private_key_lines(cluster: &TestCluster, ns: &str) -> anyhow::Result<Vec<String>> {
    Ok(key_secrets(cluster, ns)
        .await?
        .into_iter()
        .filter_map(|s| {
            let pem = String::from_utf8(s.data?.get("tls.key")?.0.clone()).ok()?;
            pem.lines().nth(2).map(str::to_string)
        })
        .collect())
}

fn fingerprint(pem: &str) -> String {
    SealingCertificate::from_pem(pem.as_bytes())
        .unwrap()
        .public_key()
        .fingerprint()
        .to_string()
}

/// Waits until the controller's log has `count` lines containing `text`.
async fn wait_log(
    controller: &mut SealsyncController,
    text: &str,
    count: usize,
) -> anyhow::Result<()> {
    let what = format!("{count} log lines with {text:?}");
    let log = controller.process().log_path();
    wait_for(
        &what,
        Duration::from_secs(90),
        Some(controller.process()),
        || {
            let log = log.clone();
            async move {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                Ok(log.matches(text).count() >= count)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_makes_one_key_per_request_and_retire_waits_for_re_encryption() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("keys-rotate").await?;
    let ns = cluster.namespace("apps").await?;
    let netns = NetNs::create()?;
    let mut controller =
        SealsyncController::start_behind_service(&cluster, &controller_ns, &netns, CONTROLLER_ARGS)
            .await?;
    let mut outputs = String::new();
    let first_pem = controller.certificate()?;
    let first = fingerprint(&first_pem);
    seal(
        &cluster,
        &ns,
        "alpha",
        &SealingCertificate::from_pem(first_pem.as_bytes())?,
    )
    .await?;
    wait_opened_by(&cluster, &ns, "alpha", &first).await?;

    // One request, one key: the controller serves the new certificate.
    let out = run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "rotate"]),
        &mut outputs,
    );
    let second = fingerprint(&controller.certificate()?);
    assert_ne!(second, first);
    assert!(out.contains(&format!("New sealing key {second}")), "{out}");
    assert_eq!(key_secrets(&cluster, &controller_ns).await?.len(), 2);

    // A flood of requests on the newest key makes one key, not one each.
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &controller_ns);
    let newest = key_secrets(&cluster, &controller_ns)
        .await?
        .into_iter()
        .find(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get("tls.crt"))
                .is_some_and(|c| fingerprint(&String::from_utf8_lossy(&c.0)) == second)
        })
        .and_then(|s| s.metadata.name)
        .expect("the second key's Secret");
    let current = controller
        .process()
        .log()
        .matches("sealing key current")
        .count();
    for i in 0..10 {
        let patch = serde_json::json!({"metadata": {"annotations": {
            sealsync_api::ROTATION_REQUESTED: format!("flood-{i}")
        }}});
        secrets
            .patch_metadata(&newest, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    // Three keys made (the first, the rotation, the flood), then the manager found its
    // key current again: any further key would have been made before that line.
    wait_log(&mut controller, "new sealing key", 3).await?;
    wait_log(&mut controller, "sealing key current", current + 1).await?;
    let third = fingerprint(&controller.certificate()?);
    let keys = key_secrets(&cluster, &controller_ns).await?;
    assert_eq!(keys.len(), 3, "{keys:?}");
    let log = controller.process().log();
    assert_eq!(log.matches("new sealing key").count(), 3, "{log}");

    // The first key is retired only once nothing depends on it, and not while it seals.
    let refused = run(
        &mut sealsync(&cluster, &controller_ns, &["keys", "retire", &first]),
        &mut outputs,
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("still opens 1 SealedSecrets: {ns}/alpha;")),
        "{stderr}"
    );
    let refused = run(
        &mut sealsync(&cluster, &controller_ns, &["keys", "retire", &third]),
        &mut outputs,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rotate first"));

    seal(
        &cluster,
        &ns,
        "alpha",
        &SealingCertificate::from_pem(controller.certificate()?.as_bytes())?,
    )
    .await?;
    wait_opened_by(&cluster, &ns, "alpha", &third).await?;
    let out = run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "retire", &first]),
        &mut outputs,
    );
    assert!(out.contains(&format!("Retired key {first}")), "{out}");

    // Retired, it opens nothing new (once the controller has seen the label: a SealedSecret
    // applied before may still open); `keys list` shows each key's status and dependents.
    let api = controller.api();
    wait_for("the key retired", Duration::from_secs(120), None, || {
        let first = first.clone();
        async move {
            let list: sealsync_api::KeyList =
                serde_json::from_str(&sealsync_testkit::http_get(api, "/v1/keys")?)?;
            Ok(list
                .keys
                .iter()
                .any(|k| k.fingerprint.as_deref() == Some(first.as_str()) && k.status == "retired"))
        }
    })
    .await?;
    seal(
        &cluster,
        &ns,
        "beta",
        &SealingCertificate::from_pem(first_pem.as_bytes())?,
    )
    .await?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    wait_for("beta refused", Duration::from_secs(120), None, || {
        let api = sealed_api.clone();
        async move {
            Ok(api.get("beta").await?.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Synced" && c.status == "False")
            }))
        }
    })
    .await?;
    let listed: serde_json::Value = serde_json::from_str(&run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "list", "-o", "json"]),
        &mut outputs,
    ))?;
    let rows: BTreeSet<(String, String, bool, u64)> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["fingerprint"].as_str().unwrap().to_string(),
                k["status"].as_str().unwrap().to_string(),
                k["sealing"].as_bool().unwrap(),
                k["sealedSecrets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        BTreeSet::from([
            (first.clone(), "retired".into(), false, 0),
            (second.clone(), "active".into(), false, 0),
            (third.clone(), "active".into(), true, 1),
        ]),
        "{listed}"
    );
    assert_eq!(listed["sealedSecretsWithoutKey"], 1, "{listed}");
    let text = run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "list"]),
        &mut outputs,
    );
    assert!(text.contains(&format!("  {first}  retired")), "{text}");
    assert!(text.contains("active (sealing)"), "{text}");

    // An object that is not a valid SealedSecret, which anyone who may create SealedSecrets
    // can make, is counted apart and stops no count; a retirement, which cannot tell what
    // it needs, is refused naming it.
    cluster
        .create_invalid_sealed_secret(&ns, "invalid", serde_json::json!({}))
        .await?;
    let again: serde_json::Value = serde_json::from_str(&run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "list", "-o", "json"]),
        &mut outputs,
    ))?;
    assert_eq!(again["keys"], listed["keys"], "{again}");
    assert_eq!(again["invalidSealedSecrets"], 1, "{again}");
    let refused = run(
        &mut sealsync(&cluster, &controller_ns, &["keys", "retire", &second]),
        &mut outputs,
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("not valid SealedSecrets: {ns}/invalid;")),
        "{stderr}"
    );

    outputs.push_str(&controller.process().log());
    for line in private_key_lines(&cluster, &controller_ns).await? {
        assert!(!outputs.contains(&line), "key material in an output");
    }
    assert!(!outputs.contains("PRIVATE KEY"), "{outputs}");
    Ok(())
}

/// A key Secret whose certificate was made long ago (as restored keys are).
fn old_key_secret(cluster: &TestCluster, namespace: &str) -> anyhow::Result<SecretManifest> {
    let key_file = cluster.dir().join("old-key.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key_file)
        .output()?;
    anyhow::ensure!(made.status.success(), "openssl genpkey failed");
    let pem = std::fs::read_to_string(&key_file)?;
    let signer = rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = SealingCertificate::from_pem(params.self_signed(&signer)?.pem().as_bytes())?;
    let mut secret = key_secret(&PrivateKey::from_pem(&pem)?, &cert, namespace);
    secret.metadata.name = Some("sealed-secrets-keyold01".into());
    secret.metadata.generate_name = None;
    Ok(secret)
}

#[tokio::test(flavor = "multi_thread")]
async fn restored_keys_open_old_sealed_secrets_without_an_extra_key() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("keys-backup").await?;
    let ns = cluster.namespace("apps").await?;
    let netns = NetNs::create()?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &controller_ns);
    // A key older than the renewal period (1h), placed just now: no renewal at start.
    let old = old_key_secret(&cluster, &controller_ns)?;
    let old: Secret = serde_json::from_value(serde_json::to_value(&old)?)?;
    secrets.create(&PostParams::default(), &old).await?;
    let mut controller =
        SealsyncController::start_behind_service(&cluster, &controller_ns, &netns, CONTROLLER_ARGS)
            .await?;
    wait_log(&mut controller, "sealing key current", 1).await?;
    assert_eq!(key_secrets(&cluster, &controller_ns).await?.len(), 1);
    let old_pem = controller.certificate()?;
    let old_fingerprint = fingerprint(&old_pem);
    let old_cert = SealingCertificate::from_pem(old_pem.as_bytes())?;
    seal(&cluster, &ns, "alpha", &old_cert).await?;
    wait_unsealed(&cluster, &ns, "alpha").await?;

    let mut outputs = String::new();
    let backup = cluster.dir().join("keys.age");
    let backup_arg = backup.to_str().unwrap();
    run_ok(
        &mut sealsync(
            &cluster,
            &controller_ns,
            &["keys", "backup", "-o", backup_arg],
        ),
        &mut outputs,
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup)?.permissions().mode() & 0o777,
        0o600
    );
    let key_lines = private_key_lines(&cluster, &controller_ns).await?;
    let encrypted = String::from_utf8_lossy(&std::fs::read(&backup)?).into_owned();
    assert!(key_lines.iter().all(|l| !encrypted.contains(l.as_str())));

    // Disaster: keys and the Secret gone, the controller stopped; restored before it starts.
    controller
        .process()
        .terminate(Duration::from_secs(30))
        .await?;
    secrets
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(KEY_LABEL),
        )
        .await?;
    let app_secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    app_secrets
        .delete("alpha", &DeleteParams::default())
        .await?;
    let wrong = run(
        sealsync(&cluster, &controller_ns, &["keys", "restore", backup_arg])
            .env("SEALSYNC_KEYS_PASSPHRASE", "wrong"),
        &mut outputs,
    );
    assert!(!wrong.status.success());
    assert!(key_secrets(&cluster, &controller_ns).await?.is_empty());
    run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "restore", backup_arg]),
        &mut outputs,
    );
    controller
        .restart(&cluster, &controller_ns, CONTROLLER_ARGS)
        .await?;
    wait_log(&mut controller, "sealing key current", 1).await?;
    wait_unsealed(&cluster, &ns, "alpha").await?;
    let restored = key_secrets(&cluster, &controller_ns).await?;
    assert_eq!(restored.len(), 1, "no key made for the restored key's age");
    assert_eq!(fingerprint(&controller.certificate()?), old_fingerprint);
    assert_eq!(
        restored[0].metadata.labels.as_ref().unwrap()[KEY_LABEL],
        "active"
    );

    // A fresh cluster's controller made its own key before the restore: the restored key
    // is loaded at once and opens the old SealedSecret, and no further key is made.
    controller
        .process()
        .terminate(Duration::from_secs(30))
        .await?;
    secrets
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(KEY_LABEL),
        )
        .await?;
    controller
        .restart(&cluster, &controller_ns, CONTROLLER_ARGS)
        .await?;
    assert_ne!(fingerprint(&controller.certificate()?), old_fingerprint);
    app_secrets
        .delete("alpha", &DeleteParams::default())
        .await?;
    run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "restore", backup_arg]),
        &mut outputs,
    );
    wait_unsealed(&cluster, &ns, "alpha").await?;
    wait_opened_by(&cluster, &ns, "alpha", &old_fingerprint).await?;
    assert_eq!(key_secrets(&cluster, &controller_ns).await?.len(), 2);
    let log = controller.process().log();
    assert_eq!(log.matches("new sealing key").count(), 1, "{log}");
    // Restoring again changes nothing.
    let again = run_ok(
        &mut sealsync(&cluster, &controller_ns, &["keys", "restore", backup_arg]),
        &mut outputs,
    );
    assert!(again.is_empty());
    assert!(
        outputs.contains("already present: sealed-secrets-keyold01"),
        "{outputs}"
    );

    outputs.push_str(&controller.process().log());
    for line in key_lines
        .iter()
        .chain(&private_key_lines(&cluster, &controller_ns).await?)
    {
        assert!(
            !outputs.contains(line.as_str()),
            "key material in an output"
        );
    }
    assert!(!outputs.contains("PRIVATE KEY"), "{outputs}");
    Ok(())
}
