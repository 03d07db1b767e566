//! What an ExternalSecret controller costs its provider and its cluster: upstream External
//! Secrets Operator v0.16.2 and `sealsync-controller --external-secrets`, in the same run,
//! each alone on its own fresh control plane and its own fresh moto, so that every count is
//! its own (a benchmark, never a test; see docs/benchmarks.md).
//!
//! ```sh
//! cargo bench -p sealsync-testkit --bench external_secrets -- [--external-secrets N] [--memory-objects M]
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use sealsync_testkit::stats::{median, summary};
use sealsync_testkit::{
    Component, Moto, MotoCalls, Process, TestCluster, UpstreamEso, Vault, binary, free_port,
    http_get,
};
use serde_json::{Value, json};

/// Namespace of the store, its credentials and the ExternalSecrets.
const WORK_NS: &str = "bench";
/// Namespace of sealsync-controller's leader Lease.
const CONTROLLER_NS: &str = "sealsync";
const STORE: &str = "store";
/// The file of Vault's audit device, in the case's folder.
const AUDIT_LOG: &str = "audit.log";
/// Provider calls by provider, call and status, under this name on both controllers.
const PROVIDER_CALLS_METRIC: &str = "externalsecret_provider_api_calls_count";
/// Syncs of ExternalSecrets (reconciles that got as far as the provider), on both.
const SYNC_CALLS_METRIC: &str = "externalsecret_sync_calls_total";

#[derive(Parser, Debug)]
#[command(about = "Provider calls, sync time and memory of ExternalSecret controllers")]
struct Args {
    /// ExternalSecrets of the main case.
    #[arg(long, default_value_t = 1000)]
    external_secrets: usize,
    /// The provider the remote secrets are in: AWS Secrets Manager (moto) or Vault (KV v2,
    /// token auth).
    #[arg(long, value_enum, default_value_t = ProviderKind::Aws)]
    provider: ProviderKind,
    /// Distinct remote secrets they read: ExternalSecret i reads key i mod K.
    #[arg(long, default_value_t = 100)]
    remote_keys: usize,
    /// Distinct properties read per remote key: ExternalSecret i reads property
    /// (i / K) mod P (1: all ExternalSecrets of a key read the same property).
    #[arg(long, default_value_t = 1)]
    properties: usize,
    /// `refreshInterval` of every ExternalSecret, and the length of the counted window.
    #[arg(long, default_value_t = 60)]
    refresh_secs: u64,
    /// Spread the creation of the ExternalSecrets evenly over this many seconds (0: as fast
    /// as --in-flight allows), so that their refresh times are spread as in a cluster
    /// filled over time.
    #[arg(long, default_value_t = 0)]
    spread_secs: u64,
    /// ExternalSecrets of the memory case (sync time and memory only; 0: not run).
    #[arg(long, default_value_t = 0)]
    memory_objects: usize,
    /// Runs of each case and controller (median and range are over runs).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Controllers to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Which::Upstream, Which::Sealsync])]
    controllers: Vec<Which>,
    /// Objects created concurrently.
    #[arg(long, default_value_t = 24)]
    in_flight: usize,
    /// How long calls are sampled after a restart (default: the refresh interval + 30 s).
    #[arg(long)]
    restart_window_secs: Option<u64>,
    /// Give up on a controller that has not made everything Ready after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Pause between all Ready and the memory reading of the memory case.
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProviderKind {
    Aws,
    Vault,
}

/// The provider of a case, running, and where the calls it receives are counted.
enum Backend {
    Aws(Moto, MotoCalls),
    /// Vault with a file audit device: one JSON line per request, counted after the
    /// fixture is written.
    Vault(Vault, tempfile::TempDir),
}

impl Backend {
    /// The provider, with the remote secrets written and its call counting started.
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let payload = |k: usize| -> serde_json::Map<String, Value> {
            (0..args.properties)
                .map(|p| (property(p), remote_value(k, p).into()))
                .collect()
        };
        match args.provider {
            ProviderKind::Aws => {
                let moto = Moto::start().await?;
                let aws = moto.client();
                futures::stream::iter(0..args.remote_keys)
                    .map(|k| {
                        let aws = aws.clone();
                        async move {
                            aws.create_secret()
                                .name(remote_key(k))
                                .secret_string(Value::Object(payload(k)).to_string())
                                .send()
                                .await
                                .with_context(|| format!("cannot create {} in moto", remote_key(k)))
                        }
                    })
                    .buffer_unordered(8)
                    .try_for_each(|_| async { Ok(()) })
                    .await?;
                let calls = MotoCalls::start(&moto)?;
                Ok(Backend::Aws(moto, calls))
            }
            ProviderKind::Vault => {
                let vault = Vault::start().await?;
                let client = vault.client()?;
                for k in 0..args.remote_keys {
                    vaultrs::kv2::set(&client, Vault::KV2_MOUNT, &remote_key(k), &payload(k))
                        .await
                        .with_context(|| format!("cannot write {} to Vault", remote_key(k)))?;
                }
                let dir = tempfile::Builder::new()
                    .prefix("sealsync-bench-audit-")
                    .tempdir()?;
                let log = dir.path().join(AUDIT_LOG);
                let enabled = Command::new(binary(Component::Vault, "SEALSYNC_VAULT"))
                    .args(["audit", "enable", "file"])
                    .arg(format!("file_path={}", log.display()))
                    .env("VAULT_ADDR", vault.address())
                    .env("VAULT_TOKEN", Vault::ROOT_TOKEN)
                    .output()?;
                anyhow::ensure!(
                    enabled.status.success(),
                    "vault audit enable: {}",
                    String::from_utf8_lossy(&enabled.stderr)
                );
                Ok(Backend::Vault(vault, dir))
            }
        }
    }

    /// The credentials Secret's data and the SecretStore's provider.
    fn store(&self) -> (Vec<(&'static str, String)>, Value) {
        match self {
            Backend::Aws(..) => {
                let key_ref = |key: &str| json!({ "name": "credentials", "key": key });
                (
                    vec![
                        ("access-key-id", Moto::ACCESS_KEY_ID.into()),
                        ("secret-access-key", Moto::SECRET_ACCESS_KEY.into()),
                    ],
                    json!({ "aws": {
                        "service": "SecretsManager",
                        "region": Moto::REGION,
                        "auth": { "secretRef": {
                            "accessKeyIDSecretRef": key_ref("access-key-id"),
                            "secretAccessKeySecretRef": key_ref("secret-access-key"),
                        } }
                    } }),
                )
            }
            Backend::Vault(vault, ..) => (
                vec![("token", Vault::ROOT_TOKEN.into())],
                json!({ "vault": {
                    "server": vault.address(),
                    "path": Vault::KV2_MOUNT,
                    "version": "v2",
                    "auth": { "tokenSecretRef": { "name": "credentials", "key": "token" } }
                } }),
            ),
        }
    }

    /// Environment for a controller: its AWS calls go to moto.
    fn env(&self, controller: &Controller) -> Vec<(&'static str, String)> {
        match (self, controller) {
            (Backend::Aws(moto, _), Controller::Upstream) => vec![
                ("AWS_SECRETSMANAGER_ENDPOINT", moto.endpoint().into()),
                ("AWS_STS_ENDPOINT", moto.endpoint().into()),
            ],
            (Backend::Aws(moto, _), Controller::Sealsync(_)) => {
                vec![("AWS_ENDPOINT_URL", moto.endpoint().into())]
            }
            (Backend::Vault(..), _) => Vec::new(),
        }
    }

    /// Requests received so far, by operation: the AWS operation (`X-Amz-Target`), or
    /// Vault's operation and path (KV paths by their prefix).
    fn by_operation(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        match self {
            Backend::Aws(_, calls) => calls.by_operation(),
            Backend::Vault(_, dir) => {
                let mut counts = BTreeMap::new();
                let text = std::fs::read_to_string(dir.path().join(AUDIT_LOG)).unwrap_or_default();
                for line in text.lines() {
                    let entry: Value = serde_json::from_str(line)?;
                    if entry["type"] != "request" {
                        continue;
                    }
                    let path = entry["request"]["path"].as_str().unwrap_or_default();
                    let kind = match path.find("/bench/") {
                        Some(at) => format!("{}*", &path[..at + 1]),
                        None => path.to_string(),
                    };
                    let operation = entry["request"]["operation"].as_str().unwrap_or_default();
                    *counts.entry(format!("{operation} {kind}")).or_insert(0) += 1;
                }
                Ok(counts)
            }
        }
    }

    fn total(&self) -> anyhow::Result<u64> {
        Ok(self.by_operation()?.values().sum())
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Aws(..) => "moto",
            Backend::Vault(..) => "vault",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Upstream,
    Sealsync,
}

/// A controller under test and how to start it.
#[derive(Debug, Clone)]
enum Controller {
    /// Upstream v0.16.2 with its default flags (one reconcile at a time), but for the
    /// two that running out of cluster needs.
    Upstream,
    Sealsync(PathBuf),
}

impl Controller {
    fn name(&self) -> &'static str {
        match self {
            Controller::Upstream => "upstream",
            Controller::Sealsync(_) => "sealsync",
        }
    }

    async fn install_crds(&self, cluster: &TestCluster) -> anyhow::Result<()> {
        match self {
            Controller::Upstream => UpstreamEso::install_crds(cluster).await,
            Controller::Sealsync(_) => cluster.install_external_secrets_crds().await,
        }
    }

    /// Starts the controller with its AWS calls sent to `backend`, and waits for its
    /// metrics.
    async fn start(&self, cluster: &TestCluster, backend: &Backend) -> anyhow::Result<Running> {
        let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let mut command = match self {
            // `UpstreamEso::start` logs at debug level, which is not upstream's default.
            Controller::Upstream => {
                let mut command = Command::new(binary(
                    Component::ExternalSecrets,
                    "SEALSYNC_EXTERNAL_SECRETS",
                ));
                command
                    .arg("--enable-leader-election=false")
                    .arg(format!("--metrics-addr={metrics}"));
                command
            }
            Controller::Sealsync(path) => {
                let mut command = Command::new(path);
                command
                    .arg(format!("--controller-namespace={CONTROLLER_NS}"))
                    .arg(format!("--listen-addr=127.0.0.1:{}", free_port()))
                    .arg(format!("--listen-metrics-addr={metrics}"))
                    .args(["--external-secrets", "--sealed-secrets=false"]);
                command
            }
        };
        command
            .envs(backend.env(self))
            .env("KUBECONFIG", cluster.kubeconfig());
        let name = format!("{}-{}", self.name(), metrics.port());
        let mut process = Process::spawn(&name, &mut command, cluster.dir())?;
        let started = Instant::now();
        while http_get(metrics, "/metrics").is_err() {
            process.ensure_running()?;
            if started.elapsed() > Duration::from_secs(120) {
                bail!("{name} serves no /metrics after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Running { process, metrics })
    }
}

/// A started controller; stopped when dropped.
struct Running {
    process: Process,
    metrics: SocketAddrV4,
}

impl Running {
    /// Sum of the series of `name` on the controller's `/metrics`; 0 when it has none yet
    /// (both create their series on first use).
    fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = http_get(self.metrics, "/metrics")?;
        let mut sum = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if series.split_once('{').map_or(series, |(n, _)| n) == name {
                sum += value.parse::<f64>()?;
            }
        }
        Ok(sum)
    }

    /// `VmRSS` and `VmHWM` in MiB, from `/proc/<pid>/status`.
    fn memory(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))?;
        let field = |name: &str| -> anyhow::Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/<pid>/status"))?;
            let kib: f64 = line
                .split_whitespace()
                .nth(1)
                .context("malformed status line")?
                .parse()?;
            Ok(kib / 1024.0)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM (a rolling restart), SIGKILL after 30 s.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.process.terminate(Duration::from_secs(30)).await?;
        Ok(())
    }
}

fn difference(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = after
        .iter()
        .map(|(op, n)| (op, n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn remote_key(k: usize) -> String {
    format!("bench/key-{k:03}")
}

fn property(p: usize) -> String {
    format!("p{p}")
}

/// The value of property `p` of remote key `k`, so Secrets can be checked without keeping
/// the values.
fn remote_value(k: usize, p: usize) -> String {
    format!("value {p} of key {k} (benchmark)")
}

fn es_name(i: usize) -> String {
    format!("es-{i:05}")
}

/// (remote key, property) of ExternalSecret `i`.
fn reads(args: &Args, i: usize) -> (usize, usize) {
    (
        i % args.remote_keys,
        (i / args.remote_keys) % args.properties,
    )
}

fn external_secret(args: &Args, i: usize) -> anyhow::Result<DynamicObject> {
    let (k, p) = reads(args, i);
    Ok(serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": { "name": es_name(i) },
        "spec": {
            "refreshInterval": format!("{}s", args.refresh_secs),
            "secretStoreRef": { "name": STORE, "kind": "SecretStore" },
            "target": { "name": es_name(i) },
            "data": [ { "secretKey": "value", "remoteRef": { "key": remote_key(k), "property": property(p) } } ],
        },
    }))?)
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", kind))
}

fn is_ready(object: &DynamicObject) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A fresh control plane with the CRDs `controller` reads, the store and its credentials;
/// a fresh provider with the remote secrets, its call counting started; the controller
/// started and the store Ready.
async fn prepare(
    args: &Args,
    controller: &Controller,
) -> anyhow::Result<(TestCluster, Backend, Running)> {
    let cluster = TestCluster::start().await?;
    controller.install_crds(&cluster).await?;
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    for name in [WORK_NS, CONTROLLER_NS] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": name } }))?,
            )
            .await?;
    }
    let backend = Backend::start(args).await?;
    let (credentials, provider) = backend.store();
    let client = cluster.client();
    Api::<Secret>::namespaced(client.clone(), WORK_NS)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("credentials".into()),
                    ..Default::default()
                },
                data: Some(
                    credentials
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                        .collect(),
                ),
                ..Secret::default()
            },
        )
        .await?;
    let store: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "SecretStore",
        "metadata": { "name": STORE },
        "spec": { "provider": provider }
    }))?;
    let stores: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), WORK_NS, &resource("SecretStore"));
    stores.create(&PostParams::default(), &store).await?;

    let mut running = controller.start(&cluster, &backend).await?;
    let started = Instant::now();
    while !is_ready(&stores.get(STORE).await?) {
        running.process.ensure_running()?;
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "{}: the SecretStore is not Ready after 120 s",
                controller.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((cluster, backend, running))
}

/// Creates `n` ExternalSecrets and polls their statuses (a list call every `poll`) until all
/// are Ready=True. Returns the seconds from the first create to the last create and to
/// the list that found all Ready, or `None` after the timeout.
async fn create_and_wait_ready(
    args: &Args,
    client: &Client,
    n: usize,
    running: &mut Running,
) -> anyhow::Result<Option<(f64, f64)>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), WORK_NS, &resource("ExternalSecret"));
    let objects = (0..n)
        .map(|i| external_secret(args, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let poll = Duration::from_millis((n as u64 / 2).clamp(500, 5000));
    let spread = Duration::from_secs(args.spread_secs);
    let start = Instant::now();
    let create = futures::stream::iter(objects.iter().enumerate())
        .map(|(i, object)| {
            let api = api.clone();
            async move {
                tokio::time::sleep_until((start + spread.mul_f64(i as f64 / n as f64)).into())
                    .await;
                api.create(&PostParams::default(), object)
                    .await
                    .with_context(|| format!("cannot create ExternalSecret {}", es_name(i)))
            }
        })
        .buffer_unordered(args.in_flight)
        .try_for_each(|_| async { Ok(()) });
    let created = async {
        create.await?;
        anyhow::Ok(start.elapsed().as_secs_f64())
    };
    let ready = async {
        let mut last_report = Instant::now();
        loop {
            tokio::time::sleep(poll).await;
            running.process.ensure_running()?;
            let list = api.list(&ListParams::default()).await?;
            let count = list.items.iter().filter(|o| is_ready(o)).count();
            if count >= n {
                return Ok(Some(start.elapsed().as_secs_f64()));
            }
            if start.elapsed() > Duration::from_secs(args.timeout_secs) {
                eprintln!("    gave up at {count} of {n} Ready");
                return Ok(None);
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                last_report = Instant::now();
                eprintln!(
                    "    {count} of {n} Ready after {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
        }
    };
    let (created, ready) = futures::try_join!(created, ready)?;
    Ok(ready.map(|ready| (created, ready)))
}

/// How many of the `n` target Secrets hold the value their ExternalSecret reads.
async fn right_secrets(args: &Args, client: &Client, n: usize) -> anyhow::Result<usize> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), WORK_NS);
    let expected: BTreeMap<String, String> = (0..n)
        .map(|i| {
            let (k, p) = reads(args, i);
            (es_name(i), remote_value(k, p))
        })
        .collect();
    Ok(secrets
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|s| {
            let name = s.metadata.name.as_deref().unwrap_or_default();
            let value = s.data.as_ref().and_then(|d| d.get("value"));
            expected
                .get(name)
                .is_some_and(|want| value.is_some_and(|v| v.0 == want.as_bytes()))
        })
        .count())
}

/// Requests the provider receives per second over `window`, sampled every second; returns
/// (peak per second, mean per second, total).
async fn rate(
    calls: &Backend,
    running: &mut Running,
    window: Duration,
) -> anyhow::Result<(f64, f64, u64)> {
    let start = Instant::now();
    let first = calls.total()?;
    let (mut last, mut last_at) = (first, Instant::now());
    let mut peak: f64 = 0.0;
    while start.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        running.process.ensure_running()?;
        let (now, at) = (calls.total()?, Instant::now());
        peak = peak.max((now - last) as f64 / (at - last_at).as_secs_f64());
        (last, last_at) = (now, at);
    }
    let total = last - first;
    Ok((peak, total as f64 / start.elapsed().as_secs_f64(), total))
}

/// The main case: sync of N ExternalSecrets, provider calls in the sync and in one refresh
/// window, memory after it, then the calls after a restart.
async fn main_case(
    args: &Args,
    controller: &Controller,
    results: &mut Results,
) -> anyhow::Result<()> {
    let n = args.external_secrets;
    let name = controller.name();
    let setup = Instant::now();
    let (cluster, calls, mut running) = prepare(args, controller).await?;
    let client = cluster.client();
    let provider = calls.name();
    eprintln!(
        "  {name}: cluster, {provider} ({} secrets), store Ready in {:.0} s",
        args.remote_keys,
        setup.elapsed().as_secs_f64()
    );
    let before_sync = calls.by_operation()?;
    let metric_before = running.metric(PROVIDER_CALLS_METRIC)?;
    let Some((created, ready)) = create_and_wait_ready(args, &client, n, &mut running).await?
    else {
        results.notes.push(format!(
            "{name}: not all {n} ExternalSecrets Ready after {} s",
            args.timeout_secs
        ));
        return Ok(());
    };
    let after_sync = calls.by_operation()?;
    let metric_after_sync = running.metric(PROVIDER_CALLS_METRIC)?;
    let right = right_secrets(args, &client, n).await?;
    eprintln!(
        "  {name}: {n} created in {created:.1} s, all Ready at {ready:.1} s, {right} Secrets right; \
         {provider} during the sync: {}",
        difference(&after_sync, &before_sync)
    );
    let label = |what: &str| format!("N={n}: {what}");
    results.record(&label("all Ready=True, s"), controller, ready);
    results.record(
        &label(&format!("provider calls during the sync ({provider})")),
        controller,
        total(&after_sync) - total(&before_sync),
    );
    results.record(
        &label("provider calls during the sync (metric)"),
        controller,
        metric_after_sync - metric_before,
    );
    if right < n {
        results.notes.push(format!(
            "{name}: only {right} of {n} Secrets hold the right value"
        ));
    }

    // The refreshes of ExternalSecrets synced together come together: the window starts
    // half an interval after the sync, so that its edges fall between those bursts.
    let window = Duration::from_secs(args.refresh_secs);
    tokio::time::sleep(window / 2).await;
    let window_start = calls.by_operation()?;
    let metric_window_start = running.metric(PROVIDER_CALLS_METRIC)?;
    let syncs_window_start = running.metric(SYNC_CALLS_METRIC)?;
    let (peak, mean, _) = rate(&calls, &mut running, window).await?;
    let after_window = calls.by_operation()?;
    let metric_after_window = running.metric(PROVIDER_CALLS_METRIC)?;
    let syncs = running.metric(SYNC_CALLS_METRIC)? - syncs_window_start;
    let provider_window = total(&after_window) - total(&window_start);
    eprintln!(
        "  {name}: one refresh window ({} s): {provider} {}; {syncs} syncs; peak {peak:.0}/s, mean {mean:.1}/s",
        args.refresh_secs,
        difference(&after_window, &window_start)
    );
    let window_label = |what: &str| label(&format!("one refresh window: {what}"));
    results.record(
        &window_label(&format!("provider calls ({provider})")),
        controller,
        provider_window,
    );
    results.record(
        &window_label("provider calls (metric)"),
        controller,
        metric_after_window - metric_window_start,
    );
    results.record(
        &window_label("syncs (externalsecret_sync_calls_total)"),
        controller,
        syncs,
    );
    results.record(
        &window_label(&format!("peak calls/s ({provider})")),
        controller,
        peak,
    );
    results.record(
        &window_label(&format!("mean calls/s ({provider})")),
        controller,
        mean,
    );
    let (rss, hwm) = running.memory()?;
    results.record(&label("VmRSS after the window, MiB"), controller, rss);
    results.record(&label("VmHWM after the window, MiB"), controller, hwm);
    eprintln!("  {name}: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB");

    running.stop().await?;
    let restart_window =
        Duration::from_secs(args.restart_window_secs.unwrap_or(args.refresh_secs + 30));
    let mut restarted = controller.start(&cluster, &calls).await?;
    let (peak, mean, total_calls) = rate(&calls, &mut restarted, restart_window).await?;
    let after_restart = calls.by_operation()?;
    eprintln!(
        "  {name}: {} s after a restart: {provider} {}; peak {peak:.0}/s, mean {mean:.1}/s",
        restart_window.as_secs(),
        difference(&after_restart, &after_window)
    );
    let restart_label = |what: &str| {
        label(&format!(
            "{} s after a restart: {what}",
            restart_window.as_secs()
        ))
    };
    results.record(
        &restart_label(&format!("provider calls ({provider})")),
        controller,
        total_calls as f64,
    );
    results.record(
        &restart_label(&format!("peak calls/s ({provider})")),
        controller,
        peak,
    );
    results.record(
        &restart_label(&format!("mean calls/s ({provider})")),
        controller,
        mean,
    );
    drop(calls);
    Ok(())
}

fn total(counts: &BTreeMap<String, u64>) -> f64 {
    counts.values().sum::<u64>() as f64
}

/// The memory case: M ExternalSecrets synced, then the controller's memory.
async fn memory_case(
    args: &Args,
    controller: &Controller,
    results: &mut Results,
) -> anyhow::Result<()> {
    let m = args.memory_objects;
    let name = controller.name();
    let (cluster, _backend, mut running) = prepare(args, controller).await?;
    let client = cluster.client();
    let Some((created, ready)) = create_and_wait_ready(args, &client, m, &mut running).await?
    else {
        results.notes.push(format!(
            "{name}: not all {m} ExternalSecrets Ready after {} s",
            args.timeout_secs
        ));
        return Ok(());
    };
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    running.process.ensure_running()?;
    let (rss, hwm) = running.memory()?;
    let right = right_secrets(args, &client, m).await?;
    eprintln!(
        "  {name}: {m} created in {created:.1} s, all Ready at {ready:.1} s, {right} right; \
         VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB"
    );
    let label = |what: &str| format!("M={m}: {what}");
    results.record(&label("all Ready=True, s"), controller, ready);
    results.record(&label("VmRSS after sync, MiB"), controller, rss);
    results.record(&label("VmHWM after sync, MiB"), controller, hwm);
    if right < m {
        results.notes.push(format!(
            "{name}: only {right} of {m} Secrets hold the right value"
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Results {
    rows: Vec<(String, Vec<f64>, Vec<f64>)>,
    notes: Vec<String>,
}

impl Results {
    fn record(&mut self, metric: &str, controller: &Controller, value: f64) {
        let index = match self.rows.iter().position(|(m, _, _)| m == metric) {
            Some(i) => i,
            None => {
                self.rows.push((metric.to_string(), Vec::new(), Vec::new()));
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[index];
        match controller {
            Controller::Upstream => row.1.push(value),
            Controller::Sealsync(_) => row.2.push(value),
        }
    }

    fn print(&self) {
        println!(
            "\n| metric | upstream median | upstream min-max | sealsync median | sealsync min-max | sealsync / upstream |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
        for (metric, upstream, sealsync) in &self.rows {
            let (um, ur) = summary(upstream);
            let (sm, sr) = summary(sealsync);
            let ratio = match (median(sealsync), median(upstream)) {
                (Some(s), Some(u)) if u != 0.0 => format!("{:.3}", s / u),
                _ => "-".into(),
            };
            println!("| {metric} | {um} | {ur} | {sm} | {sr} | {ratio} |");
        }
        for note in &self.notes {
            println!("\n{note}");
        }
    }
}

/// `sealsync-controller`: `SEALSYNC_CONTROLLER_BIN`, else a release or debug build in the
/// cargo target folder.
fn sealsync_controller_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SEALSYNC_CONTROLLER_BIN") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("sealsync-controller"))
        .find(|p| p.is_file())
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.remote_keys > 0 && args.properties > 0,
        "--remote-keys and --properties must be at least 1"
    );
    let began = Instant::now();
    let mut controllers = Vec::new();
    for which in &args.controllers {
        match which {
            Which::Upstream => controllers.push(Controller::Upstream),
            Which::Sealsync => match sealsync_controller_binary() {
                Some(binary) => {
                    eprintln!("sealsync: {}", binary.display());
                    controllers.push(Controller::Sealsync(binary));
                }
                None => eprintln!(
                    "sealsync: SKIPPED, no sealsync-controller binary (set SEALSYNC_CONTROLLER_BIN, or build it into $CARGO_TARGET_DIR/release)"
                ),
            },
        }
    }
    if controllers.is_empty() {
        bail!("no controller to measure");
    }
    eprintln!("load average at the start: {}", load_average());
    let mut results = Results::default();
    for run in 1..=args.runs {
        eprintln!("run {run} of {}", args.runs);
        // Controllers alternate within a run, so slow drifts of the machine hit both.
        for controller in &controllers {
            if args.external_secrets > 0 {
                main_case(&args, controller, &mut results).await?;
            }
        }
        for controller in &controllers {
            if args.memory_objects > 0 {
                memory_case(&args, controller, &mut results).await?;
            }
        }
    }
    println!(
        "\nMachine: nproc {}, {}, load average at the end {}; {}",
        command_line("nproc", &[]),
        command_line("uname", &["-sr"]),
        load_average(),
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    );
    println!(
        "N={} ExternalSecrets over {} {:?} secrets ({} distinct properties read per secret), \
         refreshInterval {} s, creation spread over {} s; memory case M={}",
        args.external_secrets,
        args.remote_keys,
        args.provider,
        args.properties,
        args.refresh_secs,
        args.spread_secs,
        args.memory_objects
    );
    println!(
        "{} run(s); whole benchmark {:.0} s",
        args.runs,
        began.elapsed().as_secs_f64()
    );
    results.print();
    Ok(())
}
