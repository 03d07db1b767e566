//! The sealing keys of sealsync-controller on the real API server: one upstream-format key
//! made at start, more on SIGUSR1 and on the renewal period, keys added or retired from
//! outside used at once, one key for two racing replicas, nothing redone after a restart.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use sealsync_api::{
    KEY_LABEL, SealOptions, SealedSecret, SecretManifest, key_secret, parse_documents, seal_secret,
};
use sealsync_crypto::{CertificateParams, PrivateKey, SealingCertificate};
use sealsync_testkit::{SealsyncController, TestCluster, run_ok, wait_for};
use serde_json::json;

/// Half upstream's 4096 bits, so that making keys does not dominate the run time.
const KEY_SIZE: &str = "--key-size=2048";
const VALUE: &str = "s3cr3t-password-value";

/// `name` in `namespace` holding [`VALUE`], sealed to `cert`.
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

/// The key Secrets of `namespace`, whatever their label value.
async fn key_secrets(cluster: &TestCluster, namespace: &str) -> anyhow::Result<Vec<Secret>> {
    let api: Api<Secret> = Api::namespaced(cluster.client(), namespace);
    Ok(api
        .list(&ListParams::default().labels(KEY_LABEL))
        .await?
        .items)
}

fn certificate_of(key_secret: &Secret) -> anyhow::Result<SealingCertificate> {
    let pem = key_secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .context("a key Secret without tls.crt")?;
    Ok(SealingCertificate::from_pem(&pem.0)?)
}

fn fingerprint(cert: &SealingCertificate) -> String {
    cert.public_key().fingerprint().to_string()
}

/// Fingerprint of the certificate `controller` serves at /v1/cert.pem.
fn served(controller: &SealsyncController) -> anyhow::Result<String> {
    Ok(fingerprint(&SealingCertificate::from_pem(
        controller.certificate()?.as_bytes(),
    )?))
}

/// Waits until `namespace` holds `count` key Secrets; returns them.
async fn wait_for_keys(
    cluster: &TestCluster,
    namespace: &str,
    count: usize,
    timeout: Duration,
    controller: &mut SealsyncController,
) -> anyhow::Result<Vec<Secret>> {
    wait_for(
        &format!("{count} key Secrets"),
        timeout,
        Some(controller.process()),
        || async move { Ok(key_secrets(cluster, namespace).await?.len() >= count) },
    )
    .await?;
    let keys = key_secrets(cluster, namespace).await?;
    assert_eq!(keys.len(), count, "more keys than expected");
    Ok(keys)
}

/// Waits until the Synced condition of SealedSecret `name` has `status` ("True"/"False").
async fn wait_synced(
    api: &Api<SealedSecret>,
    name: &str,
    status: &str,
    timeout: Duration,
    controller: &mut SealsyncController,
) -> anyhow::Result<()> {
    wait_for(
        &format!("{name}: Synced={status}"),
        timeout,
        Some(controller.process()),
        || async move {
            let Some(sealed) = api.get_opt(name).await? else {
                return Ok(false);
            };
            Ok(sealed
                .status
                .into_iter()
                .flat_map(|s| s.conditions)
                .any(|c| c.type_ == "Synced" && c.status == status))
        },
    )
    .await
}

/// Waits until Secret `name` holds [`VALUE`].
async fn wait_unsealed(
    api: &Api<Secret>,
    name: &str,
    timeout: Duration,
    controller: &mut SealsyncController,
) -> anyhow::Result<()> {
    wait_for(
        &format!("the Secret {name}"),
        timeout,
        Some(controller.process()),
        || async move {
            let value = api
                .get_opt(name)
                .await?
                .and_then(|s| s.data?.get("password").cloned());
            Ok(value.is_some_and(|v| v.0 == VALUE.as_bytes()))
        },
    )
    .await
}

/// Status code of a plain HTTP/1.0 POST of a JSON body.
fn http_post(addr: SocketAddrV4, path: &str, body: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .context("malformed HTTP response")?;
    Ok(code.parse()?)
}

fn signal(signal: &str, controller: &mut SealsyncController) {
    run_ok(
        Command::new("kill")
            .arg(signal)
            .arg(controller.process().id().to_string()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_adds_a_key_that_seals_and_the_old_key_still_opens() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[KEY_SIZE]).await?;

    // No key at start: exactly one is made, in upstream's format.
    let keys = wait_for_keys(
        &cluster,
        &controller_ns,
        1,
        Duration::from_secs(5),
        &mut controller,
    )
    .await?;
    let first = &keys[0];
    assert_eq!(first.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(first.metadata.labels.as_ref().unwrap()[KEY_LABEL], "active");
    assert_eq!(
        first.metadata.generate_name.as_deref(),
        Some("sealed-secrets-key")
    );
    let old = certificate_of(first)?;
    assert_eq!(served(&controller)?, fingerprint(&old));

    // Certificates count whole seconds and the newest one seals: rotate in a later second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    signal("-USR1", &mut controller);
    let keys = wait_for_keys(
        &cluster,
        &controller_ns,
        2,
        Duration::from_secs(20),
        &mut controller,
    )
    .await?;
    let second = keys
        .iter()
        .find(|k| k.metadata.name != first.metadata.name)
        .unwrap();
    assert!(
        second
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("sealed-secrets-key")
    );
    let new = certificate_of(second)?;
    wait_for(
        "/v1/cert.pem to serve the new key",
        Duration::from_secs(10),
        None,
        || {
            let served = served(&controller);
            let new = fingerprint(&new);
            async move { Ok(served? == new) }
        },
    )
    .await?;

    // Old keys are kept: what was sealed to the old certificate still opens, as does the new.
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    for (name, cert) in [("to-old", &old), ("to-new", &new)] {
        sealed_api
            .create(&PostParams::default(), &sealed(&ns, name, cert)?)
            .await?;
    }
    for name in ["to-old", "to-new"] {
        wait_unsealed(&secrets, name, Duration::from_secs(30), &mut controller).await?;
    }
    assert_eq!(key_secrets(&cluster, &controller_ns).await?.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_added_or_retired_from_outside_takes_effect_without_restart() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[KEY_SIZE]).await?;
    let own = served(&controller)?;
    let pid = controller.process().id();

    // A key the controller does not have yet, e.g. restored from a backup; made in a later
    // second than the controller's, so that it is the newest.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let key = PrivateKey::generate(2048)?;
    let cert = SealingCertificate::generate(&key, &CertificateParams::default())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let restored = sealed(&ns, "restored", &cert)?;
    sealed_api.create(&PostParams::default(), &restored).await?;
    wait_synced(
        &sealed_api,
        "restored",
        "False",
        Duration::from_secs(30),
        &mut controller,
    )
    .await?;
    assert!(secrets.get_opt("restored").await?.is_none());

    // Adding the key Secret is enough: same process, no restart.
    let key_secrets_api: Api<Secret> = Api::namespaced(cluster.client(), &controller_ns);
    let manifest = key_secret(&key, &cert, &controller_ns);
    let added = key_secrets_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::to_value(&manifest)?)?,
        )
        .await?;
    wait_unsealed(
        &secrets,
        "restored",
        Duration::from_secs(30),
        &mut controller,
    )
    .await?;
    wait_synced(
        &sealed_api,
        "restored",
        "True",
        Duration::from_secs(30),
        &mut controller,
    )
    .await?;
    assert_eq!(controller.process().id(), pid);
    assert_eq!(
        served(&controller)?,
        fingerprint(&cert),
        "the newest key seals"
    );

    // Relabelled (retired, e.g. compromised): no longer used, the Secret it opened is kept.
    key_secrets_api
        .patch(
            added.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {KEY_LABEL: "compromised"}}})),
        )
        .await?;
    wait_for(
        "/v1/cert.pem back to the controller's own key",
        Duration::from_secs(10),
        None,
        || {
            let served = served(&controller);
            let own = own.clone();
            async move { Ok(served? == own) }
        },
    )
    .await?;
    let verify = |sealed: &SealedSecret| -> anyhow::Result<u16> {
        http_post(
            controller.api(),
            "/v1/verify",
            &serde_json::to_string(sealed)?,
        )
    };
    assert_eq!(verify(&restored)?, 409, "a retired key opens nothing");
    let own_cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    assert_eq!(verify(&sealed(&ns, "restored", &own_cert)?)?, 200);
    sealed_api
        .create(&PostParams::default(), &sealed(&ns, "too-late", &cert)?)
        .await?;
    wait_synced(
        &sealed_api,
        "too-late",
        "False",
        Duration::from_secs(30),
        &mut controller,
    )
    .await?;
    assert!(secrets.get_opt("too-late").await?.is_none());
    assert!(secrets.get_opt("restored").await?.is_some());
    assert_eq!(controller.process().id(), pid);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_make_one_key_and_the_standby_takes_over() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let (a, b) = tokio::join!(
        SealsyncController::start(
            &cluster,
            &controller_ns,
            &[KEY_SIZE, "--leader-election-identity=replica-a"],
        ),
        SealsyncController::start(
            &cluster,
            &controller_ns,
            &[KEY_SIZE, "--leader-election-identity=replica-b"],
        ),
    );
    let (mut a, b) = (a?, b?);

    // One key, made by the leader, served by both.
    wait_for_keys(&cluster, &controller_ns, 1, Duration::from_secs(5), &mut a).await?;
    assert_eq!(served(&a)?, served(&b)?);
    let leases: Api<Lease> = Api::namespaced(cluster.client(), &controller_ns);
    let holder = leases
        .get("sealed-secrets-controller")
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .context("the Lease has no holder")?;
    let (mut leader, mut standby, standby_identity) = match holder.as_str() {
        "replica-a" => (a, b, "replica-b"),
        "replica-b" => (b, a, "replica-a"),
        other => anyhow::bail!("unexpected Lease holder {other}"),
    };

    // A rotation request to the standby neither kills it nor makes a key.
    signal("-USR1", &mut standby);
    wait_for(
        "the standby to report the request ignored",
        Duration::from_secs(10),
        None,
        || {
            let log = standby.process().log();
            async move { Ok(log.contains("SIGUSR1 ignored")) }
        },
    )
    .await?;
    standby.process().ensure_running()?;
    leader.process().ensure_running()?;
    assert_eq!(
        key_secrets(&cluster, &controller_ns).await?.len(),
        1,
        "still one key once the standby handled the request"
    );

    // The leader dies without giving the Lease up; the standby unseals once it expires.
    let cert = SealingCertificate::from_pem(standby.certificate()?.as_bytes())?;
    leader.process().kill();
    let killed = Instant::now();
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    sealed_api
        .create(
            &PostParams::default(),
            &sealed(&ns, "after-failover", &cert)?,
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    wait_unsealed(
        &secrets,
        "after-failover",
        Duration::from_secs(40),
        &mut standby,
    )
    .await?;
    eprintln!(
        "the standby unsealed {:?} after the leader died",
        killed.elapsed()
    );
    let holder = leases.get("sealed-secrets-controller").await?.spec;
    assert_eq!(
        holder.and_then(|s| s.holder_identity).as_deref(),
        Some(standby_identity)
    );
    assert_eq!(key_secrets(&cluster, &controller_ns).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_controller_opens_only_what_changed_while_it_was_down() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[KEY_SIZE]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    for name in ["one", "two"] {
        sealed_api
            .create(&PostParams::default(), &sealed(&ns, name, &cert)?)
            .await?;
    }
    for name in ["one", "two"] {
        wait_synced(
            &sealed_api,
            name,
            "True",
            Duration::from_secs(30),
            &mut controller,
        )
        .await?;
    }
    let versions = |secrets: Vec<Secret>| -> Vec<Option<String>> {
        secrets
            .into_iter()
            .map(|s| s.metadata.resource_version)
            .collect()
    };
    let before = versions(vec![secrets.get("one").await?, secrets.get("two").await?]);

    // Killed (no graceful release of the Lease), and a SealedSecret arrives meanwhile.
    controller.process().kill();
    sealed_api
        .create(&PostParams::default(), &sealed(&ns, "three", &cert)?)
        .await?;
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[KEY_SIZE]).await?;
    // The new process is a new candidate: it leads once the dead one's Lease expires (15 s).
    wait_unsealed(&secrets, "three", Duration::from_secs(45), &mut controller).await?;
    wait_for(
        "the restarted controller to examine every SealedSecret",
        Duration::from_secs(20),
        None,
        || {
            let unchanged = controller.metric("sealsync_reconciles_total", "result=\"unchanged\"");
            async move { Ok(unchanged? >= 2.0) }
        },
    )
    .await?;
    assert_eq!(
        controller.metric("sealsync_values_opened_total", "")?,
        1.0,
        "only the value of the SealedSecret created while it was down is opened"
    );
    let after = versions(vec![secrets.get("one").await?, secrets.get("two").await?]);
    assert_eq!(before, after, "Secrets already in sync are not written");
    assert_eq!(
        key_secrets(&cluster, &controller_ns).await?.len(),
        1,
        "the restart makes no key"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_status_records_what_its_secret_was_made_from_so_a_restart_opens_nothing()
-> anyhow::Result<()> {
    // Many at once: the watch's copy of a SealedSecret often lags behind the status the
    // controller just wrote, and a status made from that copy must not undo it.
    const COUNT: usize = 300;
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[KEY_SIZE]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let objects = (0..COUNT)
        .map(|i| sealed(&ns, &format!("s{i}"), &cert))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let params = PostParams::default();
    futures::future::try_join_all(
        objects
            .iter()
            .map(|object| sealed_api.create(&params, object)),
    )
    .await?;
    let recorded = || async {
        let list = sealed_api.list(&ListParams::default()).await?;
        Ok::<_, anyhow::Error>(
            list.items
                .iter()
                .filter(|s| {
                    s.status.as_ref().is_some_and(|status| {
                        status.input_digest.is_some()
                            && !status.key_fingerprints.is_empty()
                            && status.conditions.iter().any(|c| c.status == "True")
                    })
                })
                .count(),
        )
    };
    wait_for(
        "every SealedSecret Synced with its input digest and key fingerprints",
        Duration::from_secs(120),
        Some(controller.process()),
        || async {
            let count = recorded().await?;
            let sample = sealed_api
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|s| s.status.as_ref().is_none_or(|st| st.input_digest.is_none()))
                .map(|s| format!("{:?} gen {:?}", s.status, s.metadata.generation));
            anyhow::ensure!(
                count == COUNT,
                "{count} of {COUNT} recorded, e.g. {sample:?}"
            );
            Ok(true)
        },
    )
    .await?;
    // Later reconciles (the watch events of the Secrets) must not take them away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(recorded().await?, COUNT, "a status lost what it recorded");

    controller.process().kill();
    let controller = SealsyncController::start(&cluster, &controller_ns, &[KEY_SIZE]).await?;
    wait_for(
        "the restarted controller to examine every SealedSecret",
        Duration::from_secs(120),
        None,
        || {
            let unchanged = controller.metric("sealsync_reconciles_total", "result=\"unchanged\"");
            async move { Ok(unchanged? >= COUNT as f64) }
        },
    )
    .await?;
    assert_eq!(
        controller.metric("sealsync_rsa_decryptions_total", "")?,
        0.0,
        "a restart over synced SealedSecrets decrypts nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_renewed_on_the_period_and_once_at_a_cutoff_time() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;

    // --key-renew-period: a new key that long after the newest, and it seals.
    let renewing_ns = cluster.namespace("renewing").await?;
    let mut renewing =
        SealsyncController::start(&cluster, &renewing_ns, &[KEY_SIZE, "--key-renew-period=5s"])
            .await?;
    let first = certificate_of(
        &wait_for_keys(
            &cluster,
            &renewing_ns,
            1,
            Duration::from_secs(5),
            &mut renewing,
        )
        .await?[0],
    )?;
    wait_for(
        "a renewed key",
        Duration::from_secs(20),
        Some(renewing.process()),
        || async { Ok(key_secrets(&cluster, &renewing_ns).await?.len() >= 2) },
    )
    .await?;
    let newest = key_secrets(&cluster, &renewing_ns)
        .await?
        .iter()
        .map(certificate_of)
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .max_by_key(SealingCertificate::not_before)
        .unwrap();
    assert!(
        newest.not_before().unix_timestamp() - first.not_before().unix_timestamp() >= 5,
        "renewed early: {} then {}",
        first.not_before(),
        newest.not_before()
    );
    wait_for(
        "/v1/cert.pem to serve the renewed key",
        Duration::from_secs(10),
        None,
        || {
            // A third key may have come meanwhile; any key newer than the first will do.
            let served =
                SealingCertificate::from_pem(renewing.certificate().unwrap_or_default().as_bytes());
            let first = first.not_before();
            async move { Ok(served?.not_before() > first) }
        },
    )
    .await?;
    drop(renewing);

    // --key-cutoff-time after the newest key's: one new key at start, not one per check.
    let cutoff_ns = cluster.namespace("cutoff").await?;
    let key = PrivateKey::generate(2048)?;
    let cert = SealingCertificate::generate(&key, &CertificateParams::default())?;
    let api: Api<Secret> = Api::namespaced(cluster.client(), &cutoff_ns);
    let manifest = key_secret(&key, &cert, &cutoff_ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::to_value(&manifest)?)?,
    )
    .await?;
    let cutoff = Timestamp::now() + SignedDuration::from_hours(1);
    let cutoff_arg = format!(
        "--key-cutoff-time={}",
        cutoff.strftime("%a, %d %b %Y %H:%M:%S +0000")
    );
    let mut cutting =
        SealsyncController::start(&cluster, &cutoff_ns, &[KEY_SIZE, &cutoff_arg]).await?;
    wait_for_keys(
        &cluster,
        &cutoff_ns,
        2,
        Duration::from_secs(20),
        &mut cutting,
    )
    .await?;
    // The key manager checks again after making the key, and then finds it current.
    wait_for(
        "the key manager to find the new key current",
        Duration::from_secs(20),
        None,
        || {
            let log = cutting.process().log();
            async move { Ok(log.contains("sealing key current")) }
        },
    )
    .await?;
    cutting.process().ensure_running()?;
    assert_eq!(key_secrets(&cluster, &cutoff_ns).await?.len(), 2);
    Ok(())
}
