//! `sealsync seal` and `kubeseal --fetch-cert` reach the controller's certificate the same
//! way: the API server's service proxy to the controller's Service.

use std::process::Command;
use std::time::Duration;

use sealsync_testkit::{Component, NetNs, TestCluster, binary, project_binary, run_ok, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn certificate_is_fetched_through_the_service_proxy() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ns = cluster.namespace("sealing").await?;
    let dir = cluster.dir().join("controller");
    std::fs::create_dir_all(dir.join("v1"))?;
    let sealsync = |args: &[&str]| {
        let mut command = Command::new(project_binary("sealsync"));
        command
            .current_dir(&dir)
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(args);
        command
    };
    run_ok(&mut sealsync(&[
        "keygen",
        "--bits",
        "2048",
        "--key-out",
        "key.pem",
        "--cert-out",
        "v1/cert.pem",
    ]));

    // A stand-in controller serving its certificate at /v1/cert.pem, in a network namespace
    // behind a Service, as the real controller sits behind its Service in a cluster.
    let netns = NetNs::create()?;
    let mut server = netns.serve_files(&dir, 8080, cluster.dir())?;
    cluster
        .route_service(&ns, "sealed-secrets-controller", "http", 8080, netns.ip())
        .await?;
    let ip = netns.ip();
    wait_for(
        "the stand-in controller",
        Duration::from_secs(30),
        Some(&mut server),
        || async move { Ok(tokio::net::TcpStream::connect((ip, 8080)).await.is_ok()) },
    )
    .await?;

    // The upstream kubeseal fetches it through the proxy...
    let upstream = run_ok(
        Command::new(binary(Component::SealedSecrets, "SEALSYNC_KUBESEAL"))
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(["--fetch-cert", "--controller-namespace", &ns]),
    );
    let served = std::fs::read_to_string(dir.join("v1/cert.pem"))?;
    assert_eq!(String::from_utf8(upstream.stdout)?, served);

    // ...and so does sealsync, in both of its modes.
    std::fs::write(
        dir.join("secret.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {ns}}}\nstringData: {{password: pw}}\n"
        ),
    )?;
    run_ok(&mut sealsync(&[
        "seal",
        "-f",
        "secret.yaml",
        "--controller-namespace",
        &ns,
        "-w",
        "sealed.yaml",
    ]));
    run_ok(&mut sealsync(&[
        "validate",
        "-f",
        "sealed.yaml",
        "-k",
        "key.pem",
    ]));
    let link = dir.join("kubeseal");
    std::os::unix::fs::symlink(project_binary("sealsync"), &link)?;
    let fetched = run_ok(
        Command::new(&link)
            .env("KUBECONFIG", cluster.kubeconfig())
            .args(["--fetch-cert", "--controller-namespace", &ns]),
    );
    assert_eq!(String::from_utf8(fetched.stdout)?, served);

    // A wrong controller name fails with one line that says what to set.
    let out = sealsync(&[
        "seal",
        "-f",
        "secret.yaml",
        "--controller-namespace",
        &ns,
        "--controller-name",
        "nope",
    ])
    .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("controller {ns}/nope")), "{err}");
    assert!(err.contains("--controller-name"), "{err}");
    Ok(())
}
