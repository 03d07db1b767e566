//! sealsync-controller runs with the command line of upstream's chart (helm/sealed-secrets of
//! the upstream module, rendered by the harness's helm): its defaults, then every optional
//! flag its values add; and upstream's HTTP timeouts hold.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use sealsync_api::{KEY_LABEL, SealedSecret};
use sealsync_testkit::{
    SealsyncController, TestCluster, http_post, seal_and_wait_unsealed,
    upstream_chart_command_line, wait_for,
};
use serde_json::Value;

const VALUE: &str = "flags-test-value";

/// `args` without the listen addresses, which the harness picks (free loopback ports);
/// checks they were upstream's.
fn with_harness_ports(args: &[String]) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--listen-addr" => assert_eq!(rest.next().map(String::as_str), Some(":8080")),
            "--listen-metrics-addr" => {
                assert_eq!(rest.next().map(String::as_str), Some(":8081"))
            }
            other => kept.push(other),
        }
    }
    kept
}

/// Starts the controller with `args`, seals a value to the certificate it serves, and waits
/// for the Secret; returns the controller and its namespace.
async fn unseals_with(
    cluster: &TestCluster,
    args: &[&str],
) -> anyhow::Result<(SealsyncController, String)> {
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller = SealsyncController::start(cluster, &controller_ns, args).await?;
    let cert = controller.certificate()?;
    seal_and_wait_unsealed(cluster, &ns, &cert, VALUE, controller.process()).await?;
    Ok((controller, controller_ns))
}

async fn key_secrets(cluster: &TestCluster, namespace: &str) -> anyhow::Result<Vec<Secret>> {
    let api: Api<Secret> = Api::namespaced(cluster.client(), namespace);
    Ok(api
        .list(&ListParams::default().labels(KEY_LABEL))
        .await?
        .items)
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_with_the_command_line_of_upstreams_chart() -> anyhow::Result<()> {
    let (command, args) = upstream_chart_command_line(&[]);
    assert_eq!(command, ["controller"]);
    assert_eq!(
        args,
        [
            "--update-status",
            "--key-prefix",
            "sealed-secrets-key",
            "--listen-addr",
            ":8080",
            "--listen-metrics-addr",
            ":8081",
        ],
        "upstream's chart defaults"
    );
    let cluster = TestCluster::start().await?;
    let (_controller, controller_ns) = unseals_with(&cluster, &with_harness_ports(&args)).await?;
    let keys = key_secrets(&cluster, &controller_ns).await?;
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].metadata.generate_name.as_deref(),
        Some("sealed-secrets-key")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_with_every_optional_flag_of_upstreams_chart() -> anyhow::Result<()> {
    let (_, args) = upstream_chart_command_line(&[
        "skipRecreate=true",
        "keyrenewperiod=720h",
        "keyttl=8760h",
        "keycutofftime=Mon\\, 02 Jan 2006 15:04:05 -0700",
        "rateLimit=5",
        "rateLimitBurst=10",
        "additionalNamespaces={apps,ci}",
        "privateKeyAnnotations.backup=daily",
        "privateKeyLabels.team=platform",
        "logInfoStdout=true",
        "logLevel=INFO",
        "logFormat=json",
        "maxRetries=3",
        "watchForSecrets=true",
        "kubeClientQPS=20",
        "kubeClientBurst=40",
    ]);
    for flag in [
        "--skip-recreate",
        "--key-renew-period",
        "--key-ttl",
        "--key-cutoff-time",
        "--rate-limit",
        "--rate-limit-burst",
        "--additional-namespaces",
        "--privatekey-annotations",
        "--privatekey-labels",
        "--log-info-stdout",
        "--log-level",
        "--log-format",
        "--max-unseal-retries",
        "--watch-for-secrets",
        "--kubeclient-qps",
        "--kubeclient-burst",
    ] {
        assert!(
            args.iter().any(|a| a == flag),
            "the chart renders no {flag}: {args:?}"
        );
    }
    let cluster = TestCluster::start().await?;
    let (mut controller, controller_ns) =
        unseals_with(&cluster, &with_harness_ports(&args)).await?;

    // --privatekey-labels and --privatekey-annotations are on the key Secret.
    let keys = key_secrets(&cluster, &controller_ns).await?;
    assert_eq!(keys.len(), 1);
    let metadata = &keys[0].metadata;
    assert_eq!(metadata.labels.as_ref().unwrap()["team"], "platform");
    assert_eq!(metadata.labels.as_ref().unwrap()[KEY_LABEL], "active");
    assert_eq!(metadata.annotations.as_ref().unwrap()["backup"], "daily");

    // --rate-limit-burst=10: ten verifications at once pass (upstream's default, 2, would
    // refuse the third).
    let sealed = serde_json::json!({
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "x", "namespace": "y"}, "spec": {"encryptedData": {}},
    })
    .to_string();
    for attempt in 1..=10 {
        let status = post(controller.api(), "/v1/verify", &sealed, sealed.len())?;
        assert_ne!(
            status, 429,
            "verification {attempt} refused by the rate limit"
        );
    }

    // --log-format=json: the log is JSON lines.
    let log = controller.process().log();
    let started = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "sealsync-controller starting");
    assert!(started.is_some(), "no JSON start line in:\n{log}");
    assert!(!log.contains(VALUE), "the log shows a value");
    Ok(())
}

/// A POST whose body is `body` of a declared `length` (a longer length leaves the request
/// waiting for the rest); the response's status.
fn post(
    addr: std::net::SocketAddrV4,
    path: &str,
    body: &str,
    length: usize,
) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n{body}"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {response:?}"))?;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_stalls_is_ended_by_the_read_and_write_timeouts() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let namespace = cluster.namespace("controller").await?;
    // The body announces 100 bytes and sends 2.
    for (flags, expected) in [
        // Reading the body gives up: the request is refused as unreadable.
        (["--read-timeout=1s", "--write-timeout=2m"], 400),
        // Answering gives up.
        (["--read-timeout=2m", "--write-timeout=1s"], 408),
    ] {
        let controller = SealsyncController::start(
            &cluster,
            &namespace,
            &["--key-size=2048", flags[0], flags[1]],
        )
        .await?;
        assert_eq!(
            post(controller.api(), "/v1/verify", "{}", 100)?,
            expected,
            "{flags:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deprecated_data_form_is_refused_when_not_accepted() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller = SealsyncController::start(
        &cluster,
        &controller_ns,
        &["--key-size=2048", "--accept-deprecated-v1-data=false"],
    )
    .await?;
    let legacy: SealedSecret = serde_json::from_value(serde_json::json!({
        "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret",
        "metadata": {"name": "legacy", "namespace": ns},
        "spec": {"data": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq"},
    }))?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    sealed_api.create(&PostParams::default(), &legacy).await?;
    wait_for(
        "Synced=False naming the flag",
        Duration::from_secs(30),
        Some(controller.process()),
        || {
            let api = sealed_api.clone();
            async move {
                let status = api.get("legacy").await?.status.unwrap_or_default();
                Ok(status.conditions.iter().any(|c| {
                    c.type_ == "Synced"
                        && c.status == "False"
                        && c.message.as_deref().is_some_and(|m| {
                            m.contains("deprecated spec.data")
                                && m.contains("--accept-deprecated-v1-data")
                        })
                }))
            }
        },
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    assert!(secrets.get_opt("legacy").await?.is_none());

    // Validating or re-encrypting it through the controller is refused the same way.
    let body = serde_json::to_vec(&legacy)?;
    for path in ["/v1/verify", "/v1/rotate"] {
        let (status, answer) = http_post(controller.api(), path, &body, Duration::from_secs(30))?;
        assert_eq!(status, 409, "{path}: {answer}");
        assert_eq!(
            answer,
            format!(
                "SealedSecret {ns}/legacy uses the deprecated spec.data, refused \
                 (--accept-deprecated-v1-data=false): re-seal it into spec.encryptedData\n"
            ),
            "{path}"
        );
    }
    Ok(())
}
