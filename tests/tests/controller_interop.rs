//! sealsync-controller as a drop-in for the upstream controller: upstream kubeseal fetches
//! its certificate through the service proxy, and a cluster run by the upstream controller
//! is taken over with every Secret unchanged.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sealsync_api::{SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret};
use sealsync_crypto::SealingCertificate;
use sealsync_testkit::{
    Component, NetNs, SealsyncController, TestCluster, UpstreamController, binary, project_binary,
    run_ok, wait_for,
};

async fn wait_for_secret(secrets: &Api<Secret>, name: &str) -> anyhow::Result<Secret> {
    wait_for(
        &format!("Secret {name}"),
        Duration::from_secs(60),
        None,
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt(name).await?.is_some()) }
        },
    )
    .await?;
    Ok(secrets.get(name).await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_kubeseal_fetches_the_certificate_and_this_controller_unseals()
-> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("kube-sealing").await?;
    let netns = NetNs::create()?;
    let _controller = SealsyncController::start_behind_service(&cluster, &ns, &netns, &[]).await?;

    let dir = cluster.dir().join("kubeseal-interop");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("secret.json"),
        format!(
            r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"api-token","namespace":"{ns}"}},"stringData":{{"token":"tk-from-kubeseal"}}}}"#
        ),
    )?;
    // Upstream kubeseal with no --cert: it fetches the certificate through the proxy.
    let sealed = run_ok(
        Command::new(binary(Component::SealedSecrets, "SEALSYNC_KUBESEAL"))
            .current_dir(&dir)
            .env("KUBECONFIG", cluster.kubeconfig())
            .args([
                "--controller-namespace",
                &ns,
                "-f",
                "secret.json",
                "-w",
                "sealed.json",
            ]),
    );
    assert!(sealed.status.success());
    let text = std::fs::read_to_string(dir.join("sealed.json"))?;
    let sealed: Vec<SealedSecret> = parse_documents(&text, "sealed.json", "SealedSecret")?;
    Api::<SealedSecret>::namespaced(cluster.client(), &ns)
        .create(&PostParams::default(), &sealed[0])
        .await?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let secret = wait_for_secret(&secrets, "api-token").await?;
    assert_eq!(secret.data.unwrap()["token"].0, b"tk-from-kubeseal");

    // Both kubeseal and sealsync validate it through this controller.
    run_ok(
        Command::new(binary(Component::SealedSecrets, "SEALSYNC_KUBESEAL"))
            .current_dir(&dir)
            .env("KUBECONFIG", cluster.kubeconfig())
            .args([
                "--controller-namespace",
                &ns,
                "--validate",
                "-f",
                "sealed.json",
            ]),
    );
    let sealsync = |args: &[&str]| {
        let mut command = Command::new(project_binary("sealsync"));
        command
            .current_dir(&dir)
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(args)
            .args(["--controller-namespace", &ns]);
        command
    };
    run_ok(&mut sealsync(&["validate", "-f", "sealed.json"]));
    // Re-encrypted by the controller, still valid; renamed, no longer valid.
    run_ok(&mut sealsync(&[
        "reencrypt",
        "-f",
        "sealed.json",
        "-o",
        "json",
        "-w",
        "rotated.json",
    ]));
    run_ok(&mut sealsync(&["validate", "-f", "rotated.json"]));
    std::fs::write(
        dir.join("renamed.json"),
        text.replace("\"api-token\"", "\"other-name\""),
    )?;
    let refused = sealsync(&["validate", "-f", "renamed.json"]).output()?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("other-name"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_run_by_the_upstream_controller_is_taken_over_unchanged() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("takeover").await?;
    let ns = cluster.namespace("apps").await?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);

    let upstream = UpstreamController::start(&cluster, &controller_ns).await?;
    let upstream_cert = upstream.certificate()?;
    let cert = SealingCertificate::from_pem(upstream_cert.as_bytes())?;
    let names = ["alpha", "beta", "gamma"];
    for name in names {
        let yaml = format!(
            "kind: Secret\ntype: Opaque\nmetadata: {{name: {name}, namespace: {ns}, labels: {{tier: db}}}}\n\
             stringData: {{user: u-{name}, password: p-{name}}}\n"
        );
        let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
        let sealed = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
        sealed_api.create(&PostParams::default(), &sealed).await?;
    }
    let mut before = Vec::new();
    for name in names {
        before.push(wait_for_secret(&secrets, name).await?);
    }
    drop(upstream);

    let controller = SealsyncController::start(&cluster, &controller_ns, &[]).await?;
    assert_eq!(
        controller.certificate()?,
        upstream_cert,
        "the upstream key is picked up as it is, no new key made"
    );
    for (name, old) in names.iter().zip(&before) {
        wait_for(
            &format!("{name} synced by sealsync"),
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
        let now = secrets.get(name).await?;
        assert_eq!(now.data, old.data, "{name}: same values");
        assert_eq!(now.type_, old.type_, "{name}: same type");
        assert_eq!(
            now.metadata.uid, old.metadata.uid,
            "{name}: same object, not recreated"
        );
        assert_eq!(now.metadata.owner_references, old.metadata.owner_references);
        assert_eq!(now.metadata.labels.as_ref().unwrap()["tier"], "db");
        let status = sealed_api.get(name).await?.status.unwrap();
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(
            status.key_fingerprints,
            vec![cert.public_key().fingerprint().to_string()]
        );
    }
    let keys: Api<Secret> = Api::namespaced(cluster.client(), &controller_ns);
    let key_secrets = keys
        .list(&kube::api::ListParams::default().labels(sealsync_api::KEY_LABEL))
        .await?;
    assert_eq!(key_secrets.items.len(), 1, "no second key");
    Ok(())
}
