//! Keys and ciphertexts of a running upstream controller work with sealsync, and the
//! upstream controller unseals what sealsync seals: the ground for a drop-in switch.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use sealsync_api::{
    KEY_LABEL, SealOptions, SealedSecret, SecretManifest, keyring_from_key_secrets,
    parse_documents, seal_secret, unseal,
};
use sealsync_crypto::SealingCertificate;
use sealsync_testkit::{Component, TestCluster, UpstreamController, binary, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn upstream_keys_and_controller_interoperate_with_sealsync() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("upstream").await?;
    let controller = UpstreamController::start(&cluster, &ns).await?;

    // The key Secret the upstream controller generated, read as sealsync reads key Secrets.
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let key_secrets = secrets
        .list(&ListParams::default().labels(KEY_LABEL))
        .await?
        .items;
    assert_eq!(key_secrets.len(), 1, "the upstream controller made one key");
    let manifests: Vec<SecretManifest> = key_secrets
        .iter()
        .map(|s| serde_json::from_value(serde_json::to_value(s)?))
        .collect::<Result<_, _>>()?;
    let (keyring, newest) = keyring_from_key_secrets(&manifests)?;
    let served = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    assert_eq!(newest.unwrap().public_key(), served.public_key());

    // Upstream kubeseal seals to the controller's certificate; sealsync opens it with the
    // upstream key Secret.
    let dir = cluster.dir().join("upstream-interop");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("cert.pem"), served.pem())?;
    let secret_json = format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"from-kubeseal","namespace":"{ns}"}},"stringData":{{"password":"pw-1"}}}}"#
    );
    std::fs::write(dir.join("secret.json"), &secret_json)?;
    let out = std::process::Command::new(binary(Component::SealedSecrets, "SEALSYNC_KUBESEAL"))
        .current_dir(&dir)
        .env("KUBECONFIG", cluster.kubeconfig())
        .args(["--cert", "cert.pem", "-f", "secret.json"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed: Vec<SealedSecret> = parse_documents(
        std::str::from_utf8(&out.stdout)?,
        "kubeseal output",
        "SealedSecret",
    )?;
    let opened = unseal(&sealed[0], &keyring)?;
    assert_eq!(opened.secret.data["password"].expose(), b"pw-1");

    // sealsync seals to the same certificate; the running upstream controller unseals it.
    let mine: Vec<SecretManifest> = parse_documents(
        &format!(
            "kind: Secret\nmetadata: {{name: from-sealsync, namespace: {ns}}}\nstringData: {{token: tk-2}}\n"
        ),
        "test",
        "Secret",
    )?;
    let sealed = seal_secret(&mine[0], served.public_key(), &SealOptions::default())?;
    Api::<SealedSecret>::namespaced(cluster.client(), &ns)
        .create(&PostParams::default(), &sealed)
        .await?;
    wait_for(
        "the upstream controller to unseal sealsync's SealedSecret",
        Duration::from_secs(60),
        None,
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("from-sealsync").await?.is_some()) }
        },
    )
    .await?;
    let unsealed = secrets.get("from-sealsync").await?;
    let value = &unsealed.data.unwrap()["token"];
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(&value.0),
        "dGstMg=="
    );
    Ok(())
}
