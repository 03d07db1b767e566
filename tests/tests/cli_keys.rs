//! `sealsync keys list` against sealsync's controller behind its Service: the key Secrets
//! (metadata only), the newest key's certificate, and the SealedSecrets each key opened.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sealsync_api::{
    KEY_LABEL, SealOptions, SealedSecret, SecretManifest, key_secret, parse_documents, seal_secret,
};
use sealsync_crypto::{CertificateParams, PrivateKey, SealingCertificate};
use sealsync_testkit::{NetNs, SealsyncController, TestCluster, project_binary, run_ok, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn keys_list_shows_each_key_and_the_sealed_secrets_it_opened() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("keys-list").await?;
    let ns = cluster.namespace("apps").await?;
    let netns = NetNs::create()?;
    let controller =
        SealsyncController::start_behind_service(&cluster, &controller_ns, &netns, &[]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let newest = cert.public_key().fingerprint().to_string();

    // A retired key next to the active one, labelled as upstream marks a compromised key.
    let old_key = PrivateKey::generate(2048)?;
    let old_cert = SealingCertificate::generate(&old_key, &CertificateParams::default())?;
    let mut retired: SecretManifest = key_secret(&old_key, &old_cert, &controller_ns);
    retired
        .metadata
        .labels
        .get_or_insert_default()
        .insert(KEY_LABEL.into(), "compromised".into());
    let retired: Secret = serde_json::from_value(serde_json::to_value(&retired)?)?;
    Api::<Secret>::namespaced(cluster.client(), &controller_ns)
        .create(&PostParams::default(), &retired)
        .await?;

    // Two SealedSecrets the controller opens, one sealed to the retired key it does not use.
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    for (name, to) in [("alpha", &cert), ("beta", &cert), ("gamma", &old_cert)] {
        let yaml = format!(
            "kind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {{password: pw-{name}}}\n"
        );
        let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
        let sealed = seal_secret(&secret, to.public_key(), &SealOptions::default())?;
        sealed_api.create(&PostParams::default(), &sealed).await?;
    }
    for name in ["alpha", "beta"] {
        wait_for(
            &format!("{name} opened"),
            Duration::from_secs(60),
            None,
            || {
                let api = sealed_api.clone();
                async move {
                    Ok(api
                        .get(name)
                        .await?
                        .status
                        .is_some_and(|s| !s.key_fingerprints.is_empty()))
                }
            },
        )
        .await?;
    }

    let sealsync = |args: &[&str]| {
        let mut command = Command::new(project_binary("sealsync"));
        command
            .current_dir(cluster.dir())
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(args)
            .args(["--controller-namespace", &controller_ns]);
        command
    };
    let out = run_ok(&mut sealsync(&["keys", "list", "-o", "json"]));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let statuses: BTreeSet<&str> = listed["keySecrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from(["active", "compromised"]),
        "{listed}"
    );
    assert_eq!(listed["newest"]["fingerprint"], newest.as_str(), "{listed}");
    assert_eq!(
        listed["sealedSecretsByKey"],
        serde_json::json!({ &newest: 2 }),
        "{listed}"
    );
    assert_eq!(listed["sealedSecretsWithoutKey"], 1, "{listed}");

    let out = run_ok(&mut sealsync(&["keys", "list"]));
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains(&format!("  {newest} (newest key): 2\n")),
        "{text}"
    );
    assert!(text.contains("compromised\n"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    Ok(())
}
