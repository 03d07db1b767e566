//! How fast a Sealed Secrets controller brings a cluster in sync, and how much memory it
//! holds: the upstream controller v0.36.0 and `sealsync-controller`, in the same run, each
//! alone on its own fresh control plane, against the physical limit of that sync on the
//! same machine (a benchmark, never a test; see docs/benchmarks.md).
//!
//! ```sh
//! cargo bench -p sealsync-testkit --bench controller_sync -- [--secrets N] [--memory-objects M] [--runs R]
//! ```

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::{ByteString, NamespaceResourceScope};
use kube::api::{
    Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Resource, ResourceExt};
use sealsync_api::{
    SealOptions, SealedSecret, SealedSecretCondition, SealedSecretStatus, SecretManifest,
    key_secret, seal_secret,
};
use sealsync_crypto::{
    CertificateParams, DEFAULT_KEY_BITS, PrivateKey, SealingCertificate, SecretBytes,
};
use sealsync_testkit::stats::{median, summary};
use sealsync_testkit::{Process, TestCluster, UpstreamController, free_port, http_get};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

/// Namespace of the controller and its key Secret.
const CONTROLLER_NS: &str = "sealed-secrets";
/// Namespace of the SealedSecrets and the Secrets unsealed from them.
const WORK_NS: &str = "bench";
/// Namespace of the unrelated Secrets of the memory case.
const UNRELATED_NS: &str = "bench-unrelated";
/// Label on the SealedSecrets and, through their template, on the Secrets unsealed from them.
const LABEL: &str = "sealsync-bench=sealed";
/// Values per SealedSecret.
const VALUES: usize = 3;
/// Prometheus counter of RSA private-key decryptions on sealsync-controller's `/metrics`.
const SEALSYNC_DECRYPTIONS_METRIC: &str = "sealsync_rsa_decryptions_total";
/// Sum and count of sealsync-controller's histogram of reconcile durations (from its start
/// to the end of its Secret write, status and event excluded).
const SEALSYNC_RECONCILE_SECONDS_SUM: &str = "sealsync_reconcile_duration_seconds_sum";
const SEALSYNC_RECONCILE_SECONDS_COUNT: &str = "sealsync_reconcile_duration_seconds_count";
/// Prometheus counter of finished reconciles (every result) on sealsync-controller.
const SEALSYNC_RECONCILES_METRIC: &str = "sealsync_reconciles_total";

#[derive(Parser, Debug)]
#[command(about = "Initial sync and memory of Sealed Secrets controllers on a real API server")]
struct Args {
    /// SealedSecrets in the initial-sync case.
    #[arg(long, default_value_t = 1000)]
    secrets: usize,
    /// SealedSecrets, and as many unrelated Secrets, in the memory case.
    #[arg(long, default_value_t = 5000)]
    memory_objects: usize,
    /// Size of the one value of each unrelated Secret, in bytes.
    #[arg(long, default_value_t = 1024)]
    unrelated_bytes: usize,
    /// Runs of each case and controller (median and range are over runs).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Which cases to run.
    #[arg(long, value_enum, default_value_t = Cases::All)]
    cases: Cases,
    /// Controllers to compare.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Which::Upstream, Which::Sealsync])]
    controllers: Vec<Which>,
    /// Objects created concurrently while filling a cluster.
    #[arg(long, default_value_t = 24)]
    in_flight: usize,
    /// SealedSecrets the bare client of the limit case writes for concurrently (a Secret,
    /// then a status, each): each level on its own fresh control plane; the fastest counts.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32, 128])]
    limit_in_flight: Vec<usize>,
    /// Give up on a controller that has not synced after this many seconds.
    #[arg(long, default_value_t = 7200)]
    timeout_secs: u64,
    /// After the Secrets, how long to wait for every status to read Synced=True.
    #[arg(long, default_value_t = 120)]
    status_grace_secs: u64,
    /// Pause between the end of the sync and the memory reading.
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
    /// How long a restarted sealsync-controller gets for its resync before its decryptions
    /// are read.
    #[arg(long, default_value_t = 30)]
    resync_settle_secs: u64,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Cases {
    All,
    /// (a) and (c) for each controller, then the limit of (a).
    Sync,
    Memory,
    /// The limit of (a) alone.
    Limit,
}

impl Cases {
    fn sync(self) -> bool {
        matches!(self, Cases::All | Cases::Sync)
    }

    fn limit(self) -> bool {
        matches!(self, Cases::All | Cases::Sync | Cases::Limit)
    }

    fn memory(self) -> bool {
        matches!(self, Cases::All | Cases::Memory)
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
    /// Upstream v0.36.0 with its default flags (client QPS 5, burst 10; all namespaces).
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

    async fn start(&self, cluster: &TestCluster) -> anyhow::Result<Running> {
        match self {
            Controller::Upstream => Ok(Running::Upstream(
                UpstreamController::start(cluster, CONTROLLER_NS).await?,
            )),
            Controller::Sealsync(binary) => {
                let metrics_port = free_port();
                let process = Process::spawn(
                    "sealsync-controller",
                    Command::new(binary)
                        .env("KUBECONFIG", cluster.kubeconfig())
                        .args(["--controller-namespace", CONTROLLER_NS])
                        .arg("--listen-addr")
                        .arg(format!("127.0.0.1:{}", free_port()))
                        .arg("--listen-metrics-addr")
                        .arg(format!("127.0.0.1:{metrics_port}")),
                    cluster.dir(),
                )?;
                Ok(Running::Sealsync {
                    process,
                    metrics_port,
                })
            }
        }
    }
}

/// A started controller; stopped when dropped.
#[derive(Debug)]
enum Running {
    Upstream(UpstreamController),
    Sealsync { process: Process, metrics_port: u16 },
}

impl Running {
    fn process(&mut self) -> &mut Process {
        match self {
            Running::Upstream(controller) => controller.process(),
            Running::Sealsync { process, .. } => process,
        }
    }

    /// The controller's own process: upstream runs behind `unshare` and `sh -c ... exec`,
    /// which normally keep the pid; children are followed in case they did not.
    fn pid(&mut self) -> anyhow::Result<u32> {
        let mut pid = self.process().id();
        for _ in 0..3 {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
            if !matches!(comm.trim(), "unshare" | "sh") {
                return Ok(pid);
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
            pid = children
                .split_whitespace()
                .next()
                .context("the wrapper has no child")?
                .parse()?;
        }
        bail!(
            "cannot find the controller under pid {}",
            self.process().id()
        )
    }

    /// Hook for (c): RSA decryptions so far, from the controller's `/metrics`. Upstream
    /// counts none (its `unseal_requests_total` counts attempts, not decryptions).
    fn decryptions(&self) -> Option<anyhow::Result<f64>> {
        self.sealsync_metric(SEALSYNC_DECRYPTIONS_METRIC)
    }

    /// Sum of the series of a sealsync-controller metric; `None` for upstream.
    fn sealsync_metric(&self, name: &str) -> Option<anyhow::Result<f64>> {
        match self {
            Running::Upstream(_) => None,
            Running::Sealsync { metrics_port, .. } => {
                let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, *metrics_port);
                Some(http_get(addr, "/metrics").and_then(|text| metric_sum(&text, name)))
            }
        }
    }
}

/// What a controller finds in the cluster when it starts: a key Secret and SealedSecrets
/// sealed to it, made once and created again in every fresh cluster.
struct Fixture {
    key_secret: Secret,
    sync: Vec<SealedSecret>,
    memory: Vec<SealedSecret>,
    unrelated: Vec<Secret>,
}

impl Fixture {
    fn make(args: &Args) -> anyhow::Result<Self> {
        let key = PrivateKey::generate(DEFAULT_KEY_BITS)?;
        let cert = SealingCertificate::generate(&key, &CertificateParams::default())?;
        let key_secret = serde_json::from_value(serde_json::to_value(key_secret(
            &key,
            &cert,
            CONTROLLER_NS,
        ))?)?;
        let seal_all = |count: usize| {
            (0..count)
                .map(|i| sealed_secret(i, &cert))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let sync = if args.cases.limit() {
            seal_all(args.secrets)?
        } else {
            Vec::new()
        };
        let (memory, unrelated) = if args.cases.memory() {
            let unrelated = (0..args.memory_objects)
                .map(|i| unrelated_secret(i, args.unrelated_bytes))
                .collect();
            (seal_all(args.memory_objects)?, unrelated)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Self {
            key_secret,
            sync,
            memory,
            unrelated,
        })
    }
}

fn object_name(i: usize) -> String {
    format!("s-{i:05}")
}

fn value_name(j: usize) -> String {
    format!("value-{j}")
}

/// The plaintext of value `j` of the Secret named `name`, so a Secret's data can be checked
/// without keeping the plaintexts.
fn plaintext(name: &str, j: usize) -> String {
    format!("plaintext {j} of {name} (benchmark)")
}

fn sealed_secret(i: usize, cert: &SealingCertificate) -> anyhow::Result<SealedSecret> {
    let name = object_name(i);
    let (label_key, label_value) = LABEL.split_once('=').expect("LABEL is key=value");
    let labels = [(label_key.to_string(), label_value.to_string())];
    let data = (0..VALUES)
        .map(|j| {
            (
                value_name(j),
                SecretBytes::from(plaintext(&name, j).as_bytes()),
            )
        })
        .collect();
    let secret = SecretManifest::new(
        ObjectMeta {
            name: Some(name),
            namespace: Some(WORK_NS.into()),
            labels: Some(labels.clone().into()),
            ..ObjectMeta::default()
        },
        data,
    );
    let mut sealed = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
    sealed.metadata.labels = Some(labels.into());
    Ok(sealed)
}

fn unrelated_secret(i: usize, bytes: usize) -> Secret {
    // Not compressible, not random: a cheap xorshift from the index.
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let value = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("other-{i:05}")),
            namespace: Some(UNRELATED_NS.into()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some([("blob".to_string(), ByteString(value))].into()),
        ..Secret::default()
    }
}

/// The Secret a controller makes of `sealed`: its values, the template's labels, owned by it.
fn unsealed_secret(sealed: &SealedSecret) -> Secret {
    let name = sealed.name_any();
    let data = (0..VALUES)
        .map(|j| (value_name(j), ByteString(plaintext(&name, j).into_bytes())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: sealed.namespace(),
            labels: sealed.metadata.labels.clone(),
            owner_references: Some(vec![
                sealed
                    .controller_owner_ref(&())
                    .expect("a listed SealedSecret has a uid"),
            ]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The Secret unsealed from `s-i` with the right values.
fn secret_is_right(secret: &Secret) -> bool {
    let name = secret.name_any();
    let data = secret.data.as_ref();
    data.is_some_and(|data| {
        data.len() == VALUES
            && (0..VALUES).all(|j| {
                data.get(&value_name(j))
                    .is_some_and(|v| v.0 == plaintext(&name, j).as_bytes())
            })
    })
}

fn is_synced(sealed: &SealedSecret) -> bool {
    sealed.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Synced" && c.status == "True")
    })
}

/// A fresh control plane holding the key Secret, `sealed` and `unrelated`.
async fn fill_cluster(
    fixture: &Fixture,
    sealed: &[SealedSecret],
    unrelated: &[Secret],
    in_flight: usize,
) -> anyhow::Result<TestCluster> {
    let cluster = TestCluster::start().await?;
    cluster
        .create_namespaces(&[CONTROLLER_NS, WORK_NS, UNRELATED_NS])
        .await?;
    let key_secrets: Api<Secret> = Api::namespaced(cluster.client(), CONTROLLER_NS);
    key_secrets
        .create(&PostParams::default(), &fixture.key_secret)
        .await?;
    create_all(
        Api::namespaced(cluster.client(), WORK_NS),
        sealed,
        in_flight,
    )
    .await?;
    create_all(
        Api::namespaced(cluster.client(), UNRELATED_NS),
        unrelated,
        in_flight,
    )
    .await?;
    Ok(cluster)
}

async fn create_all<K>(api: Api<K>, objects: &[K], in_flight: usize) -> anyhow::Result<()>
where
    K: Resource + Clone + serde::Serialize + DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(objects)
        .map(|object| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), object)
                    .await
                    .with_context(|| format!("cannot create {}", object.name_any()))
            }
        })
        .buffer_unordered(in_flight)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// Counts, from a list and then a watch of the labelled objects of [`WORK_NS`], how many
/// satisfy a condition, and notes the moment `target` of them do.
struct Tally {
    count: Arc<AtomicUsize>,
    reached: JoinHandle<anyhow::Result<Instant>>,
}

impl Tally {
    /// Returns once the initial list is in, so that nothing the controller does is missed.
    async fn start<K>(api: Api<K>, target: usize, condition: fn(&K) -> bool) -> anyhow::Result<Self>
    where
        K: Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        let count = Arc::new(AtomicUsize::new(0));
        let (mut satisfied, mut version) = list_satisfied(&api, condition).await?;
        count.store(satisfied.len(), Ordering::Relaxed);
        let progress = count.clone();
        let reached = tokio::spawn(async move {
            loop {
                if satisfied.len() >= target {
                    return Ok(Instant::now());
                }
                let params = WatchParams::default().labels(LABEL);
                let mut events = Box::pin(api.watch(&params, &version).await?);
                while let Some(event) = events.try_next().await? {
                    match event {
                        WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                            version = object.resource_version().unwrap_or_default();
                            if condition(&object) {
                                satisfied.insert(object.name_any());
                            } else {
                                satisfied.remove(&object.name_any());
                            }
                        }
                        WatchEvent::Deleted(object) => {
                            version = object.resource_version().unwrap_or_default();
                            satisfied.remove(&object.name_any());
                        }
                        WatchEvent::Bookmark(bookmark) => {
                            version = bookmark.metadata.resource_version;
                        }
                        WatchEvent::Error(e) if e.code == 410 => {
                            (satisfied, version) = list_satisfied(&api, condition).await?;
                            break;
                        }
                        WatchEvent::Error(e) => bail!("watch failed: {e:?}"),
                    }
                    progress.store(satisfied.len(), Ordering::Relaxed);
                    if satisfied.len() >= target {
                        return Ok(Instant::now());
                    }
                }
            }
        });
        Ok(Self { count, reached })
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

async fn list_satisfied<K>(
    api: &Api<K>,
    condition: fn(&K) -> bool,
) -> anyhow::Result<(HashSet<String>, String)>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&ListParams::default().labels(LABEL)).await?;
    let satisfied = list
        .items
        .iter()
        .filter(|o| condition(o))
        .map(|o| o.name_any())
        .collect();
    Ok((
        satisfied,
        list.metadata.resource_version.unwrap_or_default(),
    ))
}

/// Waits for `tally` while the controller keeps running; prints progress now and then.
async fn wait_reached(
    what: &str,
    tally: &mut Tally,
    target: usize,
    controller: &mut Running,
    start: Instant,
    timeout: Duration,
) -> anyhow::Result<Option<Duration>> {
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            reached = &mut tally.reached => return Ok(Some(reached?? - start)),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        controller.process().ensure_running()?;
        if start.elapsed() > timeout {
            eprintln!(
                "    {what}: gave up at {} of {target} after {:.0} s",
                tally.count(),
                start.elapsed().as_secs_f64()
            );
            tally.reached.abort();
            return Ok(None);
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "    {what}: {} of {target} after {:.0} s",
                tally.count(),
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// `VmRSS`, `VmHWM` (MiB) and CPU seconds (user + system) of a process.
struct Usage {
    rss_mib: f64,
    hwm_mib: f64,
    cpu_secs: f64,
}

fn usage(pid: u32, clock_ticks: f64) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
        let value: f64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed status line")?
            .parse()?;
        Ok(value)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_comm: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = after_comm[11].parse::<f64>()? + after_comm[12].parse::<f64>()?;
    Ok(Usage {
        rss_mib: kib("VmRSS:")? / 1024.0,
        hwm_mib: kib("VmHWM:")? / 1024.0,
        cpu_secs: ticks / clock_ticks,
    })
}

/// Figures of each controller, case by case, in the order they were first recorded, and of
/// the limit of the initial sync.
#[derive(Default)]
struct Results {
    rows: Vec<(String, Vec<f64>, Vec<f64>)>,
    limit_rows: Vec<(String, Vec<f64>)>,
    /// The limit of (a), one per run; rows named in [`AGAINST_LIMIT`] are divided by it.
    limit: Vec<f64>,
    floor_version: Option<String>,
    notes: Vec<String>,
}

/// The end of an initial sync: a controller writes the statuses after the Secrets.
const AGAINST_LIMIT: &str = "all Synced=True, s";

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

    fn record_limit(&mut self, metric: &str, value: f64) {
        match self.limit_rows.iter_mut().find(|(m, _)| m == metric) {
            Some((_, values)) => values.push(value),
            None => self.limit_rows.push((metric.to_string(), vec![value])),
        }
    }

    fn print(&self) {
        println!(
            "\n| metric | upstream median | upstream min-max | sealsync median | sealsync min-max | sealsync / upstream | upstream / limit | sealsync / limit (goal <= 1.5x) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        let limit = median(&self.limit);
        for (metric, upstream, sealsync) in &self.rows {
            let (um, ur) = summary(upstream);
            let (sm, sr) = summary(sealsync);
            let (upstream, sealsync) = (median(upstream), median(sealsync));
            let (upstream_vs_limit, sealsync_vs_limit) = if metric.ends_with(AGAINST_LIMIT) {
                (ratio(upstream, limit), ratio(sealsync, limit))
            } else {
                (String::new(), String::new())
            };
            println!(
                "| {metric} | {um} | {ur} | {sm} | {sr} | {} | {upstream_vs_limit} | {sealsync_vs_limit} |",
                ratio(sealsync, upstream)
            );
        }
        if !self.limit_rows.is_empty() {
            println!("\n| limit of (a) | median | min-max |");
            println!("|---|---:|---:|");
            for (metric, values) in &self.limit_rows {
                let (m, r) = summary(values);
                println!("| {metric} | {m} | {r} |");
            }
            if let Some(version) = &self.floor_version {
                println!("\nFloor: Python `cryptography` with {version}.");
            }
        }
        for note in &self.notes {
            println!("\n{note}");
        }
    }
}

/// Case (a): every SealedSecret of `fixture.sync` is in the cluster before the controller
/// starts; how long until all their Secrets hold the right data and all statuses say Synced.
async fn initial_sync(
    args: &Args,
    fixture: &Fixture,
    controller: &Controller,
    results: &mut Results,
    clock_ticks: f64,
) -> anyhow::Result<()> {
    let n = fixture.sync.len();
    let setup = Instant::now();
    let cluster = fill_cluster(fixture, &fixture.sync, &[], args.in_flight).await?;
    eprintln!(
        "  sync {}: cluster with {n} SealedSecrets ready in {:.0} s",
        controller.name(),
        setup.elapsed().as_secs_f64()
    );
    let mut secrets = Tally::start(
        Api::namespaced(cluster.client(), WORK_NS),
        n,
        secret_is_right,
    )
    .await?;
    let mut statuses =
        Tally::start(Api::namespaced(cluster.client(), WORK_NS), n, is_synced).await?;

    let start = Instant::now();
    let mut running = controller.start(&cluster).await?;
    let ready = start.elapsed();
    let timeout = Duration::from_secs(args.timeout_secs);
    let all_secrets =
        wait_reached("Secrets", &mut secrets, n, &mut running, start, timeout).await?;
    let Some(all_secrets) = all_secrets else {
        results.notes.push(format!(
            "{}: only {} of {n} Secrets after {} s",
            controller.name(),
            secrets.count(),
            args.timeout_secs
        ));
        return Ok(());
    };
    let pid = running.pid()?;
    let cpu = usage(pid, clock_ticks)?.cpu_secs;
    let grace = all_secrets + Duration::from_secs(args.status_grace_secs);
    let all_synced = wait_reached("Synced", &mut statuses, n, &mut running, start, grace).await?;

    let label = |case: &str, what: &str| format!("({case}) N={n}: {what}");
    if matches!(controller, Controller::Upstream) {
        results.record(
            &label("a", "certificate served, s"),
            controller,
            ready.as_secs_f64(),
        );
    }
    results.record(
        &label("a", "all Secrets right, s"),
        controller,
        all_secrets.as_secs_f64(),
    );
    match all_synced {
        Some(t) => results.record(
            &label("a", "all Synced=True, s"),
            controller,
            t.as_secs_f64(),
        ),
        None => results.notes.push(format!(
            "{}: {} of {n} SealedSecrets with Synced=True {} s after the last Secret",
            controller.name(),
            statuses.count(),
            args.status_grace_secs
        )),
    }
    results.record(
        &label("a", "controller CPU until Secrets right, s"),
        controller,
        cpu,
    );
    eprintln!(
        "  sync {}: Secrets {:.1} s, Synced {}, CPU {cpu:.1} s",
        controller.name(),
        all_secrets.as_secs_f64(),
        all_synced.map_or("-".into(), |t| format!("{:.1} s", t.as_secs_f64()))
    );

    // Where the time of sealsync's sync goes: reconciles run `--concurrency` at a time.
    if let (Some(Ok(count)), Some(Ok(sum))) = (
        running.sealsync_metric(SEALSYNC_RECONCILE_SECONDS_COUNT),
        running.sealsync_metric(SEALSYNC_RECONCILE_SECONDS_SUM),
    ) {
        results.record(&label("a", "reconciles until in sync"), controller, count);
        if count > 0.0 {
            results.record(
                &label("a", "mean reconcile time, ms"),
                controller,
                sum / count * 1000.0,
            );
        }
    }
    match running.decryptions() {
        None => {}
        Some(Ok(during_sync)) => {
            results.record(
                &label("c", "RSA decryptions during the sync"),
                controller,
                during_sync,
            );
            // A restart opens again what has no digest to compare with.
            let sealed: Api<SealedSecret> = Api::namespaced(cluster.client(), WORK_NS);
            let undigested = sealed
                .list(&ListParams::default().labels(LABEL))
                .await?
                .items
                .iter()
                .filter(|s| is_synced(s))
                .filter(|s| s.status.as_ref().is_none_or(|st| st.input_digest.is_none()))
                .count();
            results.record(
                &label("c", "Synced=True without status.inputDigest after the sync"),
                controller,
                undigested as f64,
            );
            // Stopped as a rollout stops it (SIGTERM): the lease is handed over, so the
            // restart does not wait for it to expire.
            running
                .process()
                .terminate(Duration::from_secs(10))
                .await?
                .context("sealsync-controller did not stop within 10 s of SIGTERM")?;
            drop(running);
            let (after, checked) = resync(args, &cluster, controller, n).await?;
            results.record(
                &label("c", "RSA decryptions in a resync with nothing changed"),
                controller,
                after,
            );
            match checked {
                Some(seconds) => results.record(
                    &label("c", "restart: all SealedSecrets checked, s"),
                    controller,
                    seconds,
                ),
                None => results.notes.push(format!(
                    "{}: restart: not all {n} SealedSecrets checked within {} s",
                    controller.name(),
                    args.resync_settle_secs
                )),
            }
        }
        Some(Err(e)) => results.notes.push(format!(
            "{}: no decryption count on /metrics, (c) not measured: {e:#}",
            controller.name()
        )),
    }
    Ok(())
}

/// Hook for (c): a restart over a cluster already in sync must decrypt nothing. The
/// controller's startup pass is the resync with the least cached; how long it takes to look
/// at all `n` SealedSecrets is read from its reconcile counter, and its decryption counter
/// after `--resync-settle-secs`. Returns (decryptions, seconds until all were checked).
async fn resync(
    args: &Args,
    cluster: &TestCluster,
    controller: &Controller,
    n: usize,
) -> anyhow::Result<(f64, Option<f64>)> {
    let start = Instant::now();
    let mut restarted = controller.start(cluster).await?;
    let settled = start + Duration::from_secs(args.resync_settle_secs);
    let mut all_checked = None;
    while Instant::now() < settled {
        restarted.process().ensure_running()?;
        if all_checked.is_none()
            && restarted
                .sealsync_metric(SEALSYNC_RECONCILES_METRIC)
                .and_then(Result::ok)
                .is_some_and(|done| done >= n as f64)
        {
            all_checked = Some(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let decryptions = restarted
        .decryptions()
        .context("the controller reports decryptions")??;
    Ok((decryptions, all_checked))
}

/// Case (b): resident memory once the SealedSecrets of `fixture.memory` are unsealed, with as
/// many unrelated Secrets in another namespace.
async fn memory(
    args: &Args,
    fixture: &Fixture,
    controller: &Controller,
    results: &mut Results,
    clock_ticks: f64,
) -> anyhow::Result<()> {
    let m = fixture.memory.len();
    let setup = Instant::now();
    let cluster =
        fill_cluster(fixture, &fixture.memory, &fixture.unrelated, args.in_flight).await?;
    eprintln!(
        "  memory {}: cluster with {m} SealedSecrets and {} unrelated Secrets ready in {:.0} s",
        controller.name(),
        fixture.unrelated.len(),
        setup.elapsed().as_secs_f64()
    );
    let mut secrets = Tally::start(
        Api::namespaced(cluster.client(), WORK_NS),
        m,
        secret_is_right,
    )
    .await?;
    let start = Instant::now();
    let mut running = controller.start(&cluster).await?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let Some(all_secrets) =
        wait_reached("Secrets", &mut secrets, m, &mut running, start, timeout).await?
    else {
        results.notes.push(format!(
            "{}: memory case: only {} of {m} Secrets after {} s",
            controller.name(),
            secrets.count(),
            args.timeout_secs
        ));
        return Ok(());
    };
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    running.process().ensure_running()?;
    let pid = running.pid()?;
    let used = usage(pid, clock_ticks)?;
    let label = |what: &str| format!("(b) M={m}+{m}: {what}");
    results.record(
        &label("all Secrets right, s"),
        controller,
        all_secrets.as_secs_f64(),
    );
    results.record(&label("VmRSS after sync, MiB"), controller, used.rss_mib);
    results.record(&label("VmHWM after sync, MiB"), controller, used.hwm_mib);
    eprintln!(
        "  memory {}: Secrets {:.1} s, VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        controller.name(),
        all_secrets.as_secs_f64(),
        used.rss_mib,
        used.hwm_mib
    );
    Ok(())
}

/// Case (d): the physical limit of (a) on this machine, measured next to it. A bare client
/// (kube-rs, no client-side rate limit) writes on a fresh control plane holding the same
/// SealedSecrets what a controller must write, at each `--limit-in-flight` level: the
/// fastest level counts. Then OpenSSL through Python `cryptography` (`cli/benches/floor.py`,
/// the floor of `cli/benches/end_to_end.sh`) decrypts the RSA part of every value in one
/// process. Limit = writes + the CPU time of those decryptions / cores: on a shared machine
/// the wall time of one process includes waiting for a core behind others' work, which is
/// not a cost of decrypting (it is shown too).
async fn limit(args: &Args, fixture: &Fixture, results: &mut Results) -> anyhow::Result<()> {
    let n = fixture.sync.len();
    let label = |what: &str| format!("(d) N={n}: {what}");
    let mut writes = f64::INFINITY;
    for &in_flight in &args.limit_in_flight {
        let (seen, written) = bare_writes(args, fixture, in_flight).await?;
        eprintln!(
            "  limit: {in_flight} in flight: writes seen after {seen:.1} s (last response {written:.1} s)"
        );
        results.record_limit(
            &label(&format!(
                "bare client, {in_flight} in flight: {n} Secrets + {n} statuses written and seen, s"
            )),
            seen,
        );
        writes = writes.min(seen);
    }
    let floor = floor_decryptions(fixture)?;
    let cores = std::thread::available_parallelism()?.get() as f64;
    let total = writes + floor.cpu_secs / cores;
    let values = n * VALUES;
    results.record_limit(&label("writes: the fastest level, s"), writes);
    results.record_limit(
        &label(&format!(
            "floor: {values} RSA-4096 OAEP decryptions, one core, wall s"
        )),
        floor.wall_secs,
    );
    results.record_limit(
        &label(&format!(
            "floor: {values} RSA-4096 OAEP decryptions, one core, CPU s"
        )),
        floor.cpu_secs,
    );
    results.record_limit(
        &label(&format!(
            "limit = writes + decryptions (CPU) / {cores} cores, s"
        )),
        total,
    );
    results.record_limit(
        &label("the same with the decryptions' wall time, s"),
        writes + floor.wall_secs / cores,
    );
    results.limit.push(total);
    results.floor_version = Some(floor.openssl);
    eprintln!(
        "  limit: writes {writes:.1} s, {values} decryptions {:.1} s wall / {:.1} s CPU on \
         one core, limit {total:.1} s",
        floor.wall_secs, floor.cpu_secs
    );
    Ok(())
}

/// On a fresh control plane holding `fixture.sync`, each Secret as a controller leaves it
/// (create), then each status with `Synced=True` (merge patch of the status subresource),
/// `in_flight` SealedSecrets at a time. Returns the seconds until a watch has seen all of
/// them, timed as (a) is, and until the last response.
async fn bare_writes(
    args: &Args,
    fixture: &Fixture,
    in_flight: usize,
) -> anyhow::Result<(f64, f64)> {
    let n = fixture.sync.len();
    let cluster = fill_cluster(fixture, &fixture.sync, &[], args.in_flight).await?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), WORK_NS);
    let secret_api: Api<Secret> = Api::namespaced(cluster.client(), WORK_NS);
    let listed = sealed_api
        .list(&ListParams::default().labels(LABEL))
        .await?
        .items;
    let mut secrets = Tally::start(secret_api.clone(), n, secret_is_right).await?;
    let mut statuses = Tally::start(sealed_api.clone(), n, is_synced).await?;

    let start = Instant::now();
    futures::stream::iter(&listed)
        .map(|sealed| {
            let (secret_api, sealed_api) = (secret_api.clone(), sealed_api.clone());
            async move {
                let name = sealed.name_any();
                secret_api
                    .create(&PostParams::default(), &unsealed_secret(sealed))
                    .await
                    .with_context(|| format!("cannot create Secret {name}"))?;
                sealed_api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(synced_status(sealed)),
                    )
                    .await
                    .with_context(|| format!("cannot patch the status of {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(in_flight)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let written = start.elapsed();
    let grace = Duration::from_secs(args.status_grace_secs);
    let secrets_seen = tokio::time::timeout(grace, &mut secrets.reached)
        .await
        .context("the watch did not see every Secret")???
        - start;
    let statuses_seen = tokio::time::timeout(grace, &mut statuses.reached)
        .await
        .context("the watch did not see every status")???
        - start;
    Ok((
        secrets_seen.max(statuses_seen).as_secs_f64(),
        written.as_secs_f64(),
    ))
}

/// The status a controller writes once a SealedSecret's Secret is right.
fn synced_status(sealed: &SealedSecret) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = SealedSecretStatus {
        observed_generation: sealed.metadata.generation,
        conditions: vec![SealedSecretCondition {
            type_: "Synced".into(),
            status: "True".into(),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
            ..SealedSecretCondition::default()
        }],
        ..SealedSecretStatus::default()
    };
    serde_json::json!({ "status": status })
}

/// Time of one round of RSA decryptions of every value of `fixture.sync` at the floor.
struct Floor {
    openssl: String,
    wall_secs: f64,
    cpu_secs: f64,
}

/// Runs `cli/benches/floor.py` over the sealed values of `fixture.sync`, with its key.
fn floor_decryptions(fixture: &Fixture) -> anyhow::Result<Floor> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("key.pem");
    let sealed = dir.path().join("sealed.json");
    let pem = fixture
        .key_secret
        .data
        .as_ref()
        .and_then(|data| data.get("tls.key"))
        .context("the key Secret has no tls.key")?;
    std::fs::write(&key, &pem.0)?;
    std::fs::write(
        &sealed,
        serde_json::to_vec(&serde_json::json!({ "items": fixture.sync }))?,
    )?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/benches/floor.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&key, &sealed])
        .arg("1")
        .output()
        .context("cannot run python3 (the floor needs Python `cryptography`)")?;
    if !out.status.success() {
        bail!(
            "floor.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let values = report["values"].as_f64().context("floor.py: no values")?;
    let per_value = |field: &str| {
        report[field][0]
            .as_f64()
            .with_context(|| format!("floor.py: no {field}"))
    };
    Ok(Floor {
        openssl: report["openssl"].as_str().unwrap_or_default().to_string(),
        wall_secs: per_value("batch_wall")? * values,
        cpu_secs: per_value("batch_cpu")? * values,
    })
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

fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Sum of a Prometheus metric over its label sets.
fn metric_sum(exposition: &str, name: &str) -> anyhow::Result<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().unwrap_or_default();
        sum += value.parse::<f64>()?;
        found = true;
    }
    if !found {
        bail!("no metric {name} on /metrics");
    }
    Ok(sum)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let began = Instant::now();
    let clock_ticks = clock_ticks()?;
    let mut controllers = Vec::new();
    for which in &args.controllers {
        match which {
            Which::Upstream => controllers.push(Controller::Upstream),
            Which::Sealsync => match sealsync_controller_binary() {
                Some(binary) => controllers.push(Controller::Sealsync(binary)),
                None => eprintln!(
                    "sealsync: SKIPPED, no sealsync-controller binary (set SEALSYNC_CONTROLLER_BIN, or build it into $CARGO_TARGET_DIR/release)"
                ),
            },
        }
    }
    if controllers.is_empty() && args.cases != Cases::Limit {
        bail!("no controller to measure");
    }
    eprintln!("sealing the fixtures (one RSA-4096 key)...");
    let fixture = Fixture::make(&args)?;

    let mut results = Results::default();
    for run in 1..=args.runs {
        eprintln!("run {run} of {}", args.runs);
        // Controllers alternate within a run, so slow drifts of the machine hit both.
        for controller in &controllers {
            if args.cases.sync() {
                initial_sync(&args, &fixture, controller, &mut results, clock_ticks).await?;
            }
        }
        // Right after the sync cases, so that the same load hits both.
        if args.cases.limit() {
            limit(&args, &fixture, &mut results).await?;
        }
        for controller in &controllers {
            if args.cases.memory() {
                memory(&args, &fixture, controller, &mut results, clock_ticks).await?;
            }
        }
    }

    println!(
        "\nMachine: nproc {}, {}, load average {}; {}",
        command_line("nproc", &[]),
        command_line("uname", &["-sr"]),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    );
    if args.cases.limit() {
        println!(
            "(a) {} SealedSecrets of {VALUES} values in one namespace",
            args.secrets
        );
    }
    if args.cases.memory() {
        println!(
            "(b) {m} SealedSecrets of {VALUES} values + {m} unrelated Opaque Secrets of {} bytes",
            args.unrelated_bytes,
            m = args.memory_objects
        );
    }
    println!(
        "{} run(s); whole benchmark {:.0} s",
        args.runs,
        began.elapsed().as_secs_f64()
    );
    results.print();
    Ok(())
}
