//! Leadership and start-up of sealsync-controller on the real API server: a leader frozen
//! until a standby took over writes nothing once it resumes, neither a key nor a Secret of
//! what arrived meanwhile; the lease is held from the
//! moment it is won, also while the first key cannot be made; a start-up that cannot go on
//! says why, and SIGTERM ends every wait.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use sealsync_api::{
    KEY_LABEL, SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret,
};
use sealsync_crypto::SealingCertificate;
use sealsync_testkit::{
    Process, SealsyncController, TestCluster, free_port, project_binary, wait_for,
};

const KEY_SIZE: &str = "--key-size=2048";
const LEASE: &str = "sealed-secrets-controller";
const VALUE: &str = "s3cr3t-password-value";
/// A controller that is asked to stop exits within this.
const GRACE: Duration = Duration::from_secs(10);

fn sealed(namespace: &str, name: &str, cert: &SealingCertificate) -> anyhow::Result<SealedSecret> {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         stringData: {{password: {VALUE}}}\n"
    );
    let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
    Ok(seal_secret(
        &secret,
        cert.public_key(),
        &SealOptions::default(),
    )?)
}

async fn key_count(cluster: &TestCluster, namespace: &str) -> anyhow::Result<usize> {
    let api: Api<Secret> = Api::namespaced(cluster.client(), namespace);
    Ok(api
        .list(&ListParams::default().labels(KEY_LABEL))
        .await?
        .items
        .len())
}

/// Holder and renewTime of the leader Lease, if it exists.
async fn lease(
    cluster: &TestCluster,
    namespace: &str,
) -> anyhow::Result<(Option<String>, Option<Timestamp>)> {
    let api: Api<Lease> = Api::namespaced(cluster.client(), namespace);
    let spec = api.get_opt(LEASE).await?.and_then(|l| l.spec);
    Ok((
        spec.as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        spec.and_then(|s| s.renew_time).map(|t| t.0),
    ))
}

async fn wait_for_holder(
    cluster: &TestCluster,
    namespace: &str,
    holder: &str,
    process: &mut Process,
) -> anyhow::Result<()> {
    wait_for(
        &format!("{holder} to hold the Lease"),
        Duration::from_secs(60),
        Some(process),
        || async move { Ok(lease(cluster, namespace).await?.0.as_deref() == Some(holder)) },
    )
    .await
}

async fn wait_for_log(process: &mut Process, text: &str) -> anyhow::Result<()> {
    let log = process.log_path();
    wait_for(
        &format!("the log line {text:?}"),
        Duration::from_secs(60),
        Some(process),
        || {
            let log = log.clone();
            async move { Ok(std::fs::read_to_string(log)?.contains(text)) }
        },
    )
    .await
}

/// `sealsync-controller` with `kubeconfig` and `args`, without waiting for anything.
fn spawn_controller(
    dir: &std::path::Path,
    name: &str,
    kubeconfig: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<Process> {
    let listen = |port| SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    Process::spawn(
        name,
        Command::new(project_binary("sealsync-controller"))
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .arg(format!("--listen-addr={}", listen(free_port())))
            .arg(format!("--listen-metrics-addr={}", listen(free_port())))
            .args(args),
        dir,
    )
}

async fn stops_on_sigterm(process: &mut Process) -> anyhow::Result<()> {
    let status = process.terminate(GRACE).await?.with_context(|| {
        format!(
            "no exit within {GRACE:?} of SIGTERM:\n{}",
            process.log_tail()
        )
    })?;
    anyhow::ensure!(status.success(), "{status}:\n{}", process.log_tail());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_leader_writes_nothing_once_resumed_and_the_standby_takes_over()
-> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    // The leader freezes (a paused VM, a starved container) for longer than the lease, most
    // likely while it generates its first key (4096 bits take seconds).
    let namespace = format!("--controller-namespace={controller_ns}");
    let mut a = spawn_controller(
        cluster.dir(),
        "replica-a",
        cluster.kubeconfig(),
        &[
            &namespace,
            "--key-size=4096",
            "--leader-election-identity=replica-a",
        ],
    )?;
    wait_for_holder(&cluster, &controller_ns, "replica-a", &mut a).await?;
    a.stop()?;
    eprintln!(
        "frozen with {} key(s) made",
        key_count(&cluster, &controller_ns).await?
    );
    let mut b = SealsyncController::start(
        &cluster,
        &controller_ns,
        &[KEY_SIZE, "--leader-election-identity=replica-b"],
    )
    .await?;
    wait_for_holder(&cluster, &controller_ns, "replica-b", b.process()).await?;
    assert_eq!(key_count(&cluster, &controller_ns).await?, 1);
    let cert = SealingCertificate::from_pem(b.certificate()?.as_bytes())?;

    // The new leader unseals what arrives meanwhile.
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    sealed_api
        .create(&PostParams::default(), &sealed(&ns, "while-frozen", &cert)?)
        .await?;
    wait_for(
        "while-frozen unsealed and Synced",
        Duration::from_secs(30),
        Some(b.process()),
        || {
            let (sealed_api, secrets) = (sealed_api.clone(), secrets.clone());
            async move {
                let value = secrets
                    .get_opt("while-frozen")
                    .await?
                    .and_then(|s| s.data?.get("password").cloned());
                let synced = sealed_api
                    .get("while-frozen")
                    .await?
                    .status
                    .into_iter()
                    .flat_map(|s| s.conditions)
                    .any(|c| c.type_ == "Synced" && c.status == "True");
                Ok(synced && value.is_some_and(|v| v.0 == VALUE.as_bytes()))
            }
        },
    )
    .await?;
    let secret_version = secrets.get("while-frozen").await?.metadata.resource_version;
    let sealed_version = sealed_api
        .get("while-frozen")
        .await?
        .metadata
        .resource_version;

    // It resumes with its key generation under way, a rotation request pending and work it
    // has not seen: it must notice that it lost the lease before acting on any of it, and
    // stop.
    a.signal("USR1")?;
    let before = a.log().len();
    a.resume()?;
    let status = a
        .wait_exit(Duration::from_secs(30))
        .await?
        .context("the resumed leader goes on running")?;
    let log = a.log();
    let resumed = &log[before..];
    assert!(!status.success(), "{status}: {resumed}");
    assert!(resumed.contains("lost the leader lease"), "{resumed}");
    assert!(!resumed.contains("new sealing key"), "{resumed}");

    assert_eq!(
        key_count(&cluster, &controller_ns).await?,
        1,
        "no second key"
    );
    assert_eq!(
        secrets.get("while-frozen").await?.metadata.resource_version,
        secret_version
    );
    assert_eq!(
        sealed_api
            .get("while-frozen")
            .await?
            .metadata
            .resource_version,
        sealed_version,
        "no status written by the old leader"
    );
    let events: Api<Event> = Api::namespaced(cluster.client(), &ns);
    let about: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("while-frozen"))
        .collect();
    assert!(!about.is_empty());
    for event in &about {
        assert_eq!(
            event.reporting_instance.as_deref(),
            Some("replica-b"),
            "{event:?}"
        );
    }
    assert_eq!(
        lease(&cluster, &controller_ns).await?.0.as_deref(),
        Some("replica-b")
    );
    b.process().ensure_running()?;
    Ok(())
}

/// Whether `name` has its Secret with the sealed value.
async fn unsealed(secrets: &Api<Secret>, name: &str) -> anyhow::Result<bool> {
    Ok(secrets
        .get_opt(name)
        .await?
        .and_then(|s| s.data?.get("password").cloned())
        .is_some_and(|v| v.0 == VALUE.as_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_leader_does_not_unseal_what_arrived_while_it_was_frozen() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    // A leader with its key and its engine running, unsealing.
    let mut a = SealsyncController::start(
        &cluster,
        &controller_ns,
        &[KEY_SIZE, "--leader-election-identity=replica-a"],
    )
    .await?;
    wait_for_holder(&cluster, &controller_ns, "replica-a", a.process()).await?;
    let cert = SealingCertificate::from_pem(a.certificate()?.as_bytes())?;
    sealed_api
        .create(&PostParams::default(), &sealed(&ns, "before", &cert)?)
        .await?;
    wait_for(
        "before unsealed",
        Duration::from_secs(30),
        Some(a.process()),
        || unsealed(&secrets, "before"),
    )
    .await?;

    // It freezes; a standby takes over and freezes too, holding the lease: nobody may act
    // on what arrives now.
    a.process().stop()?;
    let mut b = SealsyncController::start(
        &cluster,
        &controller_ns,
        &[KEY_SIZE, "--leader-election-identity=replica-b"],
    )
    .await?;
    wait_for_holder(&cluster, &controller_ns, "replica-b", b.process()).await?;
    b.process().stop()?;
    sealed_api
        .create(&PostParams::default(), &sealed(&ns, "unseen", &cert)?)
        .await?;

    // The old leader resumes with the key in memory and the new object in its watch: it
    // would unseal it at once if it did not know it no longer leads.
    let before = a.process().log().len();
    a.process().resume()?;
    let status = a
        .process()
        .wait_exit(Duration::from_secs(30))
        .await?
        .context("the resumed leader goes on running")?;
    let resumed = a.process().log()[before..].to_string();
    assert!(!status.success(), "{status}: {resumed}");
    assert!(resumed.contains("lost the leader lease"), "{resumed}");
    assert!(
        secrets.get_opt("unseen").await?.is_none(),
        "the old leader wrote a Secret: {resumed}"
    );
    assert!(
        sealed_api.get("unseen").await?.status.is_none(),
        "the old leader wrote a status: {resumed}"
    );

    // The standby resumes and does the work.
    b.process().resume()?;
    wait_for(
        "unseen unsealed by the standby",
        Duration::from_secs(60),
        Some(b.process()),
        || unsealed(&secrets, "unseen"),
    )
    .await?;
    Ok(())
}

/// ServiceAccount `namespace/name` allowed to use the Lease and read Secrets, but not to
/// create them: the first key cannot be made.
async fn account_that_cannot_create_keys(
    cluster: &TestCluster,
    namespace: &str,
    name: &str,
) -> anyhow::Result<()> {
    let meta = || ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    };
    let params = PostParams::default();
    Api::<ServiceAccount>::namespaced(cluster.client(), namespace)
        .create(
            &params,
            &ServiceAccount {
                metadata: meta(),
                ..ServiceAccount::default()
            },
        )
        .await?;
    Api::<Role>::namespaced(cluster.client(), namespace)
        .create(
            &params,
            &Role {
                metadata: meta(),
                rules: Some(vec![
                    rule(
                        "coordination.k8s.io",
                        "leases",
                        &["get", "create", "update"],
                    ),
                    rule("", "secrets", &["get", "list", "watch"]),
                ]),
            },
        )
        .await?;
    Api::<RoleBinding>::namespaced(cluster.client(), namespace)
        .create(
            &params,
            &RoleBinding {
                metadata: meta(),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: name.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(namespace.into()),
                    ..Subject::default()
                }]),
            },
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_is_held_while_the_first_key_cannot_be_made_and_sigterm_ends_each_wait()
-> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("controller").await?;
    account_that_cannot_create_keys(&cluster, &ns, "no-keys").await?;
    let kubeconfig = cluster.service_account_kubeconfig(&ns, "no-keys").await?;
    let namespace = format!("--controller-namespace={ns}");
    let mut a = spawn_controller(
        cluster.dir(),
        "replica-a",
        &kubeconfig,
        &[KEY_SIZE, &namespace, "--leader-election-identity=replica-a"],
    )?;

    // The leader says why there is no key, naming the verb and the resource to grant.
    wait_for_log(&mut a, "cannot create resource").await?;
    let log = a.log();
    assert!(log.contains("\"secrets\""), "{log}");
    assert!(
        log.contains("grant the controller's ServiceAccount"),
        "{log}"
    );

    // A standby arrives; the leader, still without a key, keeps renewing the lease well past
    // the point where the standby could take it over, so the standby keeps waiting.
    let mut b = spawn_controller(
        cluster.dir(),
        "replica-b",
        &kubeconfig,
        &[KEY_SIZE, &namespace, "--leader-election-identity=replica-b"],
    )?;
    wait_for_log(&mut b, "another replica leads").await?;
    let standby_since = Timestamp::now();
    wait_for(
        "renewals of the lease for longer than its duration",
        Duration::from_secs(60),
        Some(&mut a),
        || async {
            let (holder, renewed) = lease(&cluster, &ns).await?;
            anyhow::ensure!(
                holder.as_deref() == Some("replica-a"),
                "the Lease holder is {holder:?}"
            );
            Ok(renewed.is_some_and(|r| r > standby_since + SignedDuration::from_secs(16)))
        },
    )
    .await?;
    b.ensure_running()?;
    assert_eq!(key_count(&cluster, &ns).await?, 0);
    assert!(!b.log().contains("became the leader"), "{}", b.log());

    // SIGTERM ends the wait for the lease, and the wait for the first key (and the lease is
    // given up).
    stops_on_sigterm(&mut b).await?;
    assert!(
        b.log()
            .contains("stopped while waiting for the leader lease"),
        "{}",
        b.log()
    );
    stops_on_sigterm(&mut a).await?;
    assert!(
        a.log()
            .contains("stopped while waiting for the first sealing key"),
        "{}",
        a.log()
    );
    assert_eq!(lease(&cluster, &ns).await?.0, None, "lease released");

    // Without any permission, the wait for the lease says which one is missing.
    Api::<ServiceAccount>::namespaced(cluster.client(), &ns)
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("nothing".into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await?;
    let powerless = cluster.service_account_kubeconfig(&ns, "nothing").await?;
    let mut c = spawn_controller(cluster.dir(), "powerless", &powerless, &[&namespace])?;
    wait_for_log(&mut c, "cannot get resource \"leases\"").await?;
    assert!(
        c.log().contains("grant the controller's ServiceAccount"),
        "{}",
        c.log()
    );
    stops_on_sigterm(&mut c).await?;
    Ok(())
}

/// A kubeconfig for the API server at `127.0.0.1:port` (which is none).
fn kubeconfig_for_port(dir: &std::path::Path, port: u16) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("port-{port}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters:\n- name: x\n  cluster:\n    \
             server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: x\n  \
             user: {{token: none}}\ncontexts:\n- name: x\n  context: {{cluster: x, user: x}}\n"
        ),
    )?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_that_refuses_or_never_answers_is_reported_and_sigterm_ends_the_wait()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;

    // No configuration at all: the process ends at once and says what is missing.
    let out = Command::new(project_binary("sealsync-controller"))
        .env("KUBECONFIG", dir.path().join("missing"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("NO_COLOR", "1")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot configure the Kubernetes client"),
        "{stderr}"
    );

    // Connections refused: reported, with what to check.
    let refused = kubeconfig_for_port(dir.path(), free_port())?;
    let mut a = spawn_controller(
        dir.path(),
        "refused",
        &refused,
        &["--controller-namespace=x"],
    )?;
    wait_for_log(&mut a, "cannot take the leader lease").await?;
    assert!(
        a.log().contains("check the API server's address"),
        "{}",
        a.log()
    );
    stops_on_sigterm(&mut a).await?;

    // Connections accepted and never answered: the call times out instead of hanging.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = silent.local_addr()?.port();
    let hung = kubeconfig_for_port(dir.path(), port)?;
    let mut b = spawn_controller(dir.path(), "hung", &hung, &["--controller-namespace=x"])?;
    wait_for_log(&mut b, "no answer about the leader lease").await?;
    stops_on_sigterm(&mut b).await?;
    drop(silent);
    Ok(())
}
