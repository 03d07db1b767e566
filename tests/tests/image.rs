//! The container image of sealsync-controller (controller/image/): what it holds, and the
//! containerised controller on the harness's API server (read-only root filesystem,
//! non-root), with sealsync's own flags and with the command line of upstream's chart.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use sealsync_api::KEY_LABEL;
use sealsync_testkit::{
    Container, TestCluster, controller_image, free_port, http_get, install_upstream_chart_rbac,
    podman, podman_run, run_ok, seal_and_wait_unsealed, upstream_chart_command_line, wait_for,
};
use serde_json::Value;

const VALUE: &str = "image-test-value";
/// Where the tests mount the kubeconfig in the container.
const KUBECONFIG: &str = "/etc/sealsync/kubeconfig";
/// The uid of the image's user (upstream's chart runs its controller as 1001 too).
const UID: u32 = 1001;

fn podman_stdout(args: &[&str]) -> String {
    let out = run_ok(podman().args(args));
    String::from_utf8(out.stdout).expect("podman prints UTF-8")
}

/// The files of `root`, relative, directories with a trailing `/`, symlinks as `a -> b`.
fn files_under(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("the image's directories are readable") {
        let path = entry.expect("a directory entry").path();
        let name = path.strip_prefix(root).unwrap().display().to_string();
        let kind = path.symlink_metadata().unwrap().file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            found.insert(format!("{name} -> {}", target.display()));
        } else if kind.is_dir() {
            found.insert(format!("{name}/"));
            files_under(root, &path, found);
        } else {
            found.insert(name);
        }
    }
}

#[test]
fn the_image_holds_the_binary_ca_certificates_and_a_user_only() {
    let image = controller_image();
    let inspect: Value = serde_json::from_str(&podman_stdout(&["image", "inspect", image]))
        .expect("podman inspects as JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], format!("{UID}:{UID}"));
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(labels["org.opencontainers.image.source"].is_string());
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .expect("a revision label");
    // The image is the one `tests/run.sh` built from this checkout: its own commit, not
    // the label of an earlier build left in a cache.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    let head = String::from_utf8_lossy(&head.stdout);
    assert_eq!(
        revision.trim_end_matches("-dirty"),
        head.trim(),
        "the revision label is not this checkout's commit"
    );

    let mount = podman_stdout(&["image", "mount", image]);
    let mut files = BTreeSet::new();
    files_under(Path::new(mount.trim()), Path::new(mount.trim()), &mut files);
    podman_stdout(&["image", "unmount", image]);
    let expected = [
        "etc/",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/passwd",
        "etc/ssl/",
        "etc/ssl/certs/",
        "etc/ssl/certs/ca-certificates.crt",
        "usr/",
        "usr/local/",
        "usr/local/bin/",
        "usr/local/bin/controller -> sealsync-controller",
        "usr/local/bin/sealsync-controller",
    ];
    assert_eq!(files, expected.map(String::from).into());

    // `controller`, the name upstream's chart runs, is on the image's PATH.
    let out = run_ok(podman_run().args([
        "--network",
        "none",
        "--entrypoint",
        "controller",
        image,
        "--version",
    ]));
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("controller version: v{}", env!("CARGO_PKG_VERSION"))
    );
}

/// The kubeconfig `kubeconfig` of the cluster with the API server named `localhost`, so
/// that the containerised controller resolves a name and checks the server's certificate
/// for it; as podman's `--volume` argument.
fn kubeconfig_by_name(cluster: &TestCluster, kubeconfig: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(kubeconfig)?;
    let by_name = text.replace("server: https://127.0.0.1:", "server: https://localhost:");
    assert_ne!(text, by_name, "the harness's kubeconfig names 127.0.0.1");
    let path = cluster.dir().join("by-name.kubeconfig");
    std::fs::write(&path, by_name)?;
    Ok(format!("{}:{KUBECONFIG}:ro", path.display()))
}

/// Waits for `/healthz` and the certificate of the controller at `api`, checks its key
/// Secret in `controller_ns`, then seals a value to the certificate and waits for the
/// Secret in a fresh namespace.
async fn makes_its_key_and_unseals(
    cluster: &TestCluster,
    container: &mut Container,
    api: SocketAddrV4,
    controller_ns: &str,
) -> anyhow::Result<()> {
    let ready = |path: &'static str| move || async move { Ok(http_get(api, path).is_ok()) };
    let timeout = Duration::from_secs(120);
    wait_for(
        "/healthz",
        timeout,
        Some(container.process()),
        ready("/healthz"),
    )
    .await?;
    wait_for(
        "/v1/cert.pem",
        timeout,
        Some(container.process()),
        ready("/v1/cert.pem"),
    )
    .await?;
    assert_eq!(
        container.uid()?,
        UID,
        "the controller runs as the image's user"
    );

    let keys: Api<Secret> = Api::namespaced(cluster.client(), controller_ns);
    let keys = keys.list(&ListParams::default().labels(KEY_LABEL)).await?;
    assert_eq!(keys.items.len(), 1, "one key Secret");
    assert_eq!(
        keys.items[0].metadata.generate_name.as_deref(),
        Some("sealed-secrets-key")
    );

    let ns = cluster.namespace("app").await?;
    let cert = http_get(api, "/v1/cert.pem")?;
    seal_and_wait_unsealed(cluster, &ns, &cert, VALUE, container.process()).await?;
    assert!(
        !container.process().log().contains(VALUE),
        "the log shows the value"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_containerised_controller_makes_its_key_and_unseals() -> anyhow::Result<()> {
    let image = controller_image();
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let mut container = Container::run(
        "sealsync-image",
        &[
            "--volume",
            &kubeconfig_by_name(&cluster, cluster.kubeconfig())?,
            "--env",
            &format!("KUBECONFIG={KUBECONFIG}"),
        ],
        image,
        &[
            &format!("--controller-namespace={controller_ns}"),
            &format!("--listen-addr={api}"),
            &format!("--listen-metrics-addr={metrics}"),
        ],
        cluster.dir(),
    )?;
    makes_its_key_and_unseals(&cluster, &mut container, api, &controller_ns).await
}

/// A user who only swaps the image in upstream's chart gets a working controller: the
/// chart's command and args, unchanged, its RBAC and ServiceAccount and nothing more, and
/// its pod's user, capabilities, read-only root with an empty /tmp, and namespace file.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_with_the_command_line_of_upstreams_chart() -> anyhow::Result<()> {
    let (command, args) = upstream_chart_command_line(&[]);
    assert_eq!(command, ["controller"]);
    let listens_on = |flag: &str| {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1)?.strip_prefix(':')?.parse::<u16>().ok()
    };
    let port = listens_on("--listen-addr").expect("the chart sets --listen-addr :<port>");
    assert!(
        listens_on("--listen-metrics-addr").is_some(),
        "the chart sets --listen-metrics-addr"
    );

    let image = controller_image();
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    install_upstream_chart_rbac(&cluster, &controller_ns, &[]).await?;
    // The chart's ServiceAccount is named after the release.
    let identity = cluster
        .service_account_kubeconfig(&controller_ns, "sealed-secrets")
        .await?;
    let service_account = cluster.dir().join("serviceaccount");
    std::fs::create_dir(&service_account)?;
    std::fs::write(service_account.join("namespace"), &controller_ns)?;
    let entrypoint = serde_json::to_string(&command)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut container = Container::run(
        "sealsync-image-chart",
        &[
            "--volume",
            &kubeconfig_by_name(&cluster, &identity)?,
            "--env",
            &format!("KUBECONFIG={KUBECONFIG}"),
            "--volume",
            &format!(
                "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
                service_account.display()
            ),
            "--user",
            &UID.to_string(),
            "--cap-drop",
            "all",
            "--tmpfs",
            "/tmp",
            "--entrypoint",
            &entrypoint,
        ],
        image,
        &args,
        cluster.dir(),
    )?;
    let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    makes_its_key_and_unseals(&cluster, &mut container, api, &controller_ns).await
}
