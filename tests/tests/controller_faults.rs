//! sealsync-controller through faults: an API server restart in the middle of a sync, and
//! a graceful stop on SIGTERM that hands the leader lease over.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use sealsync_api::{
    KEY_LABEL, SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret,
};
use sealsync_crypto::SealingCertificate;
use sealsync_testkit::{SealsyncController, TestCluster, wait_for};

const COUNT: usize = 60;

#[tokio::test(flavor = "multi_thread")]
async fn converges_after_an_api_server_restart_mid_sync_and_stops_gracefully() -> anyhow::Result<()>
{
    let mut cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("faults").await?;
    let ns = cluster.namespace("apps").await?;
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;

    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let sealed: Vec<SealedSecret> = (0..COUNT)
        .map(|i| {
            let yaml = format!(
                "kind: Secret\nmetadata: {{name: s{i}, namespace: {ns}}}\nstringData: {{a: a{i}, b: b{i}}}\n"
            );
            let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
            Ok(seal_secret(&secret, cert.public_key(), &SealOptions::default())?)
        })
        .collect::<anyhow::Result<_>>()?;
    futures::stream::iter(&sealed)
        .map(|s| {
            let api = sealed_api.clone();
            async move { api.create(&PostParams::default(), s).await }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    // The API server goes away while the controller is working through them.
    cluster.restart_apiserver(Duration::from_secs(3)).await?;

    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    wait_for(
        "every Secret after the restart",
        Duration::from_secs(120),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.list(&ListParams::default()).await?.items.len() == COUNT) }
        },
    )
    .await?;
    wait_for(
        "every SealedSecret Synced",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let api = sealed_api.clone();
            async move {
                let list = api.list(&ListParams::default()).await?;
                Ok(list.items.iter().all(|s| {
                    s.status.as_ref().is_some_and(|st| {
                        st.conditions
                            .iter()
                            .any(|c| c.type_ == "Synced" && c.status == "True")
                    })
                }))
            }
        },
    )
    .await?;
    let keys: Api<Secret> = Api::namespaced(cluster.client(), &controller_ns);
    assert_eq!(
        keys.list(&ListParams::default().labels(KEY_LABEL))
            .await?
            .items
            .len(),
        1,
        "no second key after the restart"
    );

    // SIGTERM: a clean exit that gives the lease up.
    let leases: Api<Lease> = Api::namespaced(cluster.client(), &controller_ns);
    let held = |lease: &Lease| {
        lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .is_some_and(|h| !h.is_empty())
    };
    assert!(held(&leases.get("sealed-secrets-controller").await?));
    let exited = controller
        .process()
        .terminate(Duration::from_secs(10))
        .await?
        .expect("the controller stops within 10 s of SIGTERM");
    assert!(
        exited.success(),
        "{exited}:\n{}",
        controller.process().log_tail()
    );
    assert!(
        !held(&leases.get("sealed-secrets-controller").await?),
        "lease released"
    );
    Ok(())
}

/// Sends `signal` (e.g. `-STOP`, `-CONT`) to the process `pid`.
fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {signal} {pid}: {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forgets_sources_deleted_while_the_watch_was_down() -> anyhow::Result<()> {
    const CONDITION_INFO: &str = "sealed_secrets_controller_condition_info";
    let mut cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("faults").await?;
    let ns = cluster.namespace("apps").await?;
    let mut controller =
        SealsyncController::start(&cluster, &controller_ns, &["--resync-period=2s"]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    for name in ["gone", "stays"] {
        let yaml = format!(
            "kind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {{a: b}}\n"
        );
        let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
        let sealed = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
        sealed_api.create(&PostParams::default(), &sealed).await?;
    }
    for name in ["gone", "stays"] {
        let labels = format!("name=\"{name}\"");
        wait_for(
            &format!("the condition series of {name}"),
            Duration::from_secs(60),
            None,
            || async { Ok(controller.metric(CONDITION_INFO, &labels)? == 1.0) },
        )
        .await?;
    }

    // Frozen, the controller misses the delete event; the API server's restart then makes
    // its watch start over from a list in which the SealedSecret is missing.
    let pid = controller.process().id();
    signal(pid, "-STOP")?;
    let deleted = sealed_api.delete("gone", &Default::default()).await;
    let restarted = cluster.restart_apiserver(Duration::from_secs(1)).await;
    signal(pid, "-CONT")?;
    deleted?;
    restarted?;

    wait_for(
        "the condition series of the SealedSecret deleted meanwhile removed",
        Duration::from_secs(90),
        None,
        || async {
            Ok(controller
                .metric_if_exposed(CONDITION_INFO, "name=\"gone\"")?
                .is_none())
        },
    )
    .await?;
    assert_eq!(
        controller.metric(CONDITION_INFO, "name=\"stays\"")?,
        1.0,
        "the other series stays"
    );
    Ok(())
}
