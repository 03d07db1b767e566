//! `sealsync sync --cluster` without keys: the repository's SealedSecrets applied for the
//! cluster's controller to open, timed until the report is out (every Secret right), with
//! upstream's controller v0.36.0 and with sealsync's, each on its own fresh control plane; then
//! a sync that changes nothing. A benchmark, never a test (docs/benchmarks.md).
//!
//! ```sh
//! SEALSYNC_CONTROLLER_BIN=<release controller> SEALSYNC_BIN=<release sealsync> \
//!   cargo bench -p sealsync-testkit --bench cluster_sync -- [--secrets N] [--runs R] [--controllers upstream,sealsync]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::{Parser, ValueEnum};
use sealsync_api::{SealOptions, SecretManifest, parse_documents, seal_secret};
use sealsync_crypto::{CertificateParams, DEFAULT_KEY_BITS, PrivateKey, SealingCertificate};
use sealsync_testkit::stats::summary;
use sealsync_testkit::{Sealing, SealingController, TestCluster, project_binary};

/// Namespace of the SealedSecrets.
const NAMESPACE: &str = "bench";
/// SealedSecrets per repository file.
const PER_FILE: usize = 10;

#[derive(Parser, Debug)]
#[command(about = "sealsync sync --cluster without keys, through each Sealed Secrets controller")]
struct Args {
    /// SealedSecrets in the repository (one value each).
    #[arg(long, default_value_t = 1000)]
    secrets: usize,
    /// Runs per controller, each on a fresh control plane.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Which::Upstream, Which::Sealsync])]
    controllers: Vec<Which>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Upstream,
    Sealsync,
}

/// The repository: `secrets` SealedSecrets sealed to `cert`, `PER_FILE` to a file.
fn repository(dir: &Path, secrets: usize, cert: &SealingCertificate) -> anyhow::Result<()> {
    for first in (0..secrets).step_by(PER_FILE) {
        let mut text = String::new();
        for i in first..(first + PER_FILE).min(secrets) {
            let yaml = format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i:05}, namespace: {NAMESPACE}}}\n\
                 stringData: {{password: pw-{i:05}}}\n"
            );
            let secret = parse_documents::<SecretManifest>(&yaml, "bench", "Secret")?.remove(0);
            let sealed = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
            text.push_str("---\n");
            text.push_str(&serde_json::to_string(&sealed)?);
            text.push('\n');
        }
        std::fs::write(dir.join(format!("sealed-{first:05}.yaml")), text)?;
    }
    Ok(())
}

/// Runs `sealsync sync DIR --cluster` and checks that every row is `expect`; its wall time.
fn sync(
    bin: &Path,
    dir: &Path,
    cluster: &TestCluster,
    secrets: usize,
    expect: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let output = Command::new(bin)
        .args([
            "sync",
            dir.to_str().context("path")?,
            "--cluster",
            "--timeout",
            "1h",
            "-o",
            "json",
        ])
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| String::from_utf8_lossy(&output.stderr).into_owned())?;
    let rows = report["secrets"].as_array().context("no rows")?;
    ensure!(
        output.status.success()
            && rows.len() == secrets
            && rows.iter().all(|r| r["action"] == expect),
        "not all {expect}: {report}"
    );
    Ok(wall)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = std::env::var_os("SEALSYNC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_binary("sealsync"));
    eprintln!(
        "making an RSA-{DEFAULT_KEY_BITS} key and {} SealedSecrets...",
        args.secrets
    );
    let key = PrivateKey::generate(DEFAULT_KEY_BITS)?;
    let cert = SealingCertificate::generate(&key, &CertificateParams::default())?;
    let repo = tempfile::tempdir()?;
    repository(repo.path(), args.secrets, &cert)?;
    println!(
        "{} SealedSecrets (one RSA-{DEFAULT_KEY_BITS} value each) in {} files; sealsync {}",
        args.secrets,
        args.secrets.div_ceil(PER_FILE),
        bin.display()
    );
    for which in &args.controllers {
        let kind = match which {
            Which::Upstream => Sealing::Upstream,
            Which::Sealsync => Sealing::Sealsync,
        };
        let (mut first, mut again) = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            let cluster = TestCluster::start().await?;
            let _controller =
                SealingController::start_with_key(&cluster, kind, &key, &cert).await?;
            cluster.create_namespaces(&[NAMESPACE]).await?;
            let sync_first = sync(&bin, repo.path(), &cluster, args.secrets, "created")?;
            let sync_again = sync(&bin, repo.path(), &cluster, args.secrets, "unchanged")?;
            eprintln!("{which:?} run {run}: first {sync_first:.2} s, again {sync_again:.2} s");
            first.push(sync_first);
            again.push(sync_again);
        }
        let (first_median, first_range) = summary(&first);
        let (again_median, again_range) = summary(&again);
        println!(
            "{which:?}: first sync (all created, every Secret right) {first_median} s ({first_range}); \
             a sync that changes nothing {again_median} s ({again_range}); {} runs",
            args.runs
        );
    }
    Ok(())
}
