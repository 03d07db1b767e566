//! Size of sealsync-controller's container image and how fast a container of it is ready
//! on the harness's API server with its key already there: from `podman run` to the first
//! 200 of `/healthz` and of `/v1/cert.pem` (a benchmark, never a test; see
//! docs/benchmarks.md).
//!
//! ```sh
//! cargo bench -p sealsync-testkit --bench image_start --profile dev -- [--runs R]
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sealsync_testkit::{
    Container, TestCluster, controller_image, free_port, http_get, podman, run_ok, wait_for,
};

#[derive(Parser, Debug)]
#[command(about = "Size and start time of sealsync-controller's container image")]
struct Args {
    /// Timed starts (median and range are over them).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Accepted for `cargo bench`, which passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A container of `image` on `cluster` whose own namespace is `namespace`, serving on `api`.
fn start(
    cluster: &TestCluster,
    image: &str,
    namespace: &str,
    api: SocketAddrV4,
) -> anyhow::Result<Container> {
    let kubeconfig = format!(
        "{}:/etc/sealsync/kubeconfig:ro",
        cluster.kubeconfig().display()
    );
    Container::run(
        "sealsync-image-bench",
        &[
            "--volume",
            &kubeconfig,
            "--env",
            "KUBECONFIG=/etc/sealsync/kubeconfig",
        ],
        image,
        &[
            &format!("--controller-namespace={namespace}"),
            &format!("--listen-addr={api}"),
            &format!("--listen-metrics-addr=127.0.0.1:{}", free_port()),
        ],
        cluster.dir(),
    )
}

/// Polls `path` every 5 ms until it answers 200.
async fn until_ok(api: SocketAddrV4, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(api, path).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{path} not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.0} ms, range {:.0}-{:.0} ms",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let image = controller_image();
    let out = run_ok(podman().args(["image", "inspect", "--format", "{{.Size}}", image]));
    let bytes: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    println!("{image}: {:.1} MB ({bytes} bytes)", bytes as f64 / 1e6);

    let cluster = TestCluster::start().await?;
    let namespace = cluster.namespace("controller").await?;
    // The first container makes the key; the timed ones find it.
    let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let mut first = start(&cluster, image, &namespace, api)?;
    wait_for(
        "the first container's key",
        Duration::from_secs(120),
        Some(first.process()),
        || async move { Ok(http_get(api, "/v1/cert.pem").is_ok()) },
    )
    .await?;
    drop(first);

    let (mut healthz, mut cert) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let started = Instant::now();
        let container = start(&cluster, image, &namespace, api)?;
        until_ok(api, "/healthz").await.context("a timed start")?;
        healthz.push(started.elapsed());
        until_ok(api, "/v1/cert.pem")
            .await
            .context("a timed start")?;
        cert.push(started.elapsed());
        drop(container);
    }
    println!("podman run to /healthz: {}", summary(healthz));
    println!("podman run to /v1/cert.pem: {}", summary(cert));
    Ok(())
}
