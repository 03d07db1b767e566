//! sealsync-controller through faults: an API server restart in the middle of a sync, a
//! graceful stop on SIGTERM that hands the leader lease over, and a missing permission.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
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

/// An identity that may do what the controller does except list SealedSecrets (a
/// ClusterRole missing that verb): one log line names the missing permission, and SIGTERM
/// still stops the controller at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_forbidden_list_is_one_log_line_naming_it_and_sigterm_still_stops() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("rbac").await?;
    let client = cluster.client();
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "controller" },
    }))?;
    Api::<ServiceAccount>::namespaced(client.clone(), &controller_ns)
        .create(&PostParams::default(), &account)
        .await?;
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "no-list" },
        "rules": [
            { "apiGroups": ["bitnami.com"], "resources": ["sealedsecrets"], "verbs": ["get", "watch"] },
            { "apiGroups": ["bitnami.com"], "resources": ["sealedsecrets/status"], "verbs": ["patch"] },
            { "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "patch", "delete"] },
            { "apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"] },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"] },
        ],
    }))?;
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await?;
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "no-list" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "no-list" },
        "subjects": [{ "kind": "ServiceAccount", "name": "controller", "namespace": controller_ns }],
    }))?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    let kubeconfig = cluster
        .service_account_kubeconfig(&controller_ns, "controller")
        .await?;
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let mut controller = SealsyncController::start_with_env(
        &cluster,
        &controller_ns,
        &[],
        &[("KUBECONFIG", kubeconfig)],
    )
    .await?;
    let refusal = "cannot list resource \"sealedsecrets\"";
    // The list refused three times (each retry is a debug line of the engine's): still
    // one line at the level users see.
    let log_path = controller.process().log_path();
    wait_for(
        "three refused lists",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let log = std::fs::read_to_string(&log_path);
            async move {
                let log = log?;
                let retries = log
                    .lines()
                    .filter(|l| l.contains(" DEBUG ") && l.contains(refusal));
                Ok(retries.count() >= 3)
            }
        },
    )
    .await?;
    let status = controller
        .process()
        .terminate(Duration::from_secs(10))
        .await?;
    let log = controller.process().log();
    assert!(status.is_some(), "no exit within 10 s of SIGTERM:\n{log}");
    // At the level of the chart and of upstream's (info): the engine's debug lines left out.
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") && !l.contains(" DEBUG "))
        .collect();
    assert_eq!(lines.len(), 1, "one line:\n{log}");
    assert!(
        lines[0].contains(refusal),
        "it names the refused verb:\n{log}"
    );
    assert!(
        lines[0].contains("grant list and watch on bitnami.com sealedsecrets"),
        "it says what to grant:\n{log}"
    );
    Ok(())
}
