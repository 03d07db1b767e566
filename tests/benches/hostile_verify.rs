//! What one hostile `POST /v1/verify` costs a running `sealsync-controller`: the largest
//! body it accepts, full of well-formed garbage values, against a keyring of 12 keys (a
//! benchmark, never a test; see docs/benchmarks.md, the count is asserted in
//! tests/tests/hostile_input.rs).
//!
//! ```sh
//! SEALSYNC_CONTROLLER_BIN=path/to/sealsync-controller \
//!   cargo test -p sealsync-testkit --bench hostile_verify -- [--keys 12] [--key-bits 4096] [--requests 5]
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sealsync_api::{MAX_SEALED_VALUES, SealedSecret, SealedSecretSpec, key_secret};
use sealsync_controller::MAX_BODY_BYTES;
use sealsync_crypto::{CertificateParams, PrivateKey, SealingCertificate};
use sealsync_testkit::{Process, TestCluster, free_port, http_get, http_post, wait_for};

const RSA_DECRYPTIONS: &str = "sealsync_rsa_decryptions_total";

#[derive(Parser, Debug)]
#[command(about = "Cost of a hostile /v1/verify on a running sealsync-controller")]
struct Args {
    /// Keys in the controller's keyring.
    #[arg(long, default_value_t = 12)]
    keys: usize,
    /// Size of each key.
    #[arg(long, default_value_t = 4096)]
    key_bits: usize,
    /// Requests measured (median and range are over them).
    #[arg(long, default_value_t = 5)]
    requests: usize,
}

/// Status code and seconds of a plain HTTP/1.0 POST, waiting out the rate limit (429,
/// not timed).
fn post(addr: SocketAddrV4, path: &str, body: &[u8]) -> anyhow::Result<(u16, f64)> {
    loop {
        let started = Instant::now();
        let (code, _) = http_post(addr, path, body, Duration::from_secs(600))?;
        if code != 429 {
            return Ok((code, started.elapsed().as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(600));
    }
}

/// As many garbage values of the keys' form as the body limit and the value cap allow.
fn hostile_body(key_bytes: usize) -> anyhow::Result<Vec<u8>> {
    let value = |seed: usize| {
        let mut bytes = u16::try_from(key_bytes).unwrap().to_be_bytes().to_vec();
        // A leading zero keeps the RSA part below every modulus: each try is a full
        // private-key operation, not an early range check.
        bytes.push(0);
        bytes.extend((1..key_bytes + 32).map(|i| ((seed * 31 + i * 7) % 251) as u8));
        BASE64.encode(bytes)
    };
    let per_value = value(0).len() + 10;
    let count = (MAX_BODY_BYTES / per_value - 1).min(MAX_SEALED_VALUES);
    let mut sealed = SealedSecret::new(
        "hostile",
        SealedSecretSpec {
            encrypted_data: (0..count).map(|i| (format!("k{i:04}"), value(i))).collect(),
            ..SealedSecretSpec::default()
        },
    );
    sealed.metadata.namespace = Some("default".into());
    let body = serde_json::to_vec(&sealed)?;
    anyhow::ensure!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
    Ok(body)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(ticks / String::from_utf8(out.stdout)?.trim().parse::<f64>()?)
}

fn metric(addr: SocketAddrV4, name: &str) -> Option<f64> {
    let text = http_get(addr, "/metrics").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    format!(
        "median {:.3}, range {:.3}-{:.3}",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1]
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --bench` passes harness flags such as `--bench`; only ours count.
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let binary = match std::env::var_os("SEALSYNC_CONTROLLER_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").context("CARGO_TARGET_DIR")?)
            .join("debug/sealsync-controller"),
    };
    if !binary.is_file() {
        bail!("no controller binary at {}", binary.display());
    }
    let cluster = TestCluster::start().await?;
    let namespace = cluster.namespace("controller").await?;
    eprintln!("making {} RSA-{} keys...", args.keys, args.key_bits);
    let key_secrets: Api<Secret> = Api::namespaced(cluster.client(), &namespace);
    for _ in 0..args.keys {
        let key = PrivateKey::generate(args.key_bits)?;
        let cert = SealingCertificate::generate(&key, &CertificateParams::default())?;
        let manifest = key_secret(&key, &cert, &namespace);
        key_secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::to_value(&manifest)?)?,
            )
            .await?;
    }
    let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let mut process = Process::spawn(
        "sealsync-controller",
        Command::new(&binary)
            .env("KUBECONFIG", cluster.kubeconfig())
            .arg(format!("--controller-namespace={namespace}"))
            .arg(format!("--listen-addr={api}"))
            .arg(format!("--listen-metrics-addr={metrics}")),
        cluster.dir(),
    )?;
    wait_for(
        "the controller's certificate",
        Duration::from_secs(120),
        Some(&mut process),
        || async move { Ok(http_get(api, "/v1/cert.pem").is_ok()) },
    )
    .await?;

    let body = hostile_body(args.key_bits / 8)?;
    let values = serde_json::from_slice::<SealedSecret>(&body)?
        .spec
        .encrypted_data
        .len();
    let (mut seconds, mut cpu, mut decryptions) = (Vec::new(), Vec::new(), Vec::new());
    for request in 1..=args.requests {
        let (cpu_before, ops_before) =
            (cpu_seconds(process.id())?, metric(metrics, RSA_DECRYPTIONS));
        let (code, elapsed) = post(api, "/v1/verify", &body)?;
        anyhow::ensure!(code == 409, "POST /v1/verify answered {code}");
        seconds.push(elapsed);
        cpu.push(cpu_seconds(process.id())? - cpu_before);
        if let (Some(before), Some(after)) = (ops_before, metric(metrics, RSA_DECRYPTIONS)) {
            decryptions.push(after - before);
        }
        eprintln!("request {request}: {elapsed:.3} s");
    }
    println!("binary: {}", binary.display());
    println!(
        "body: {} bytes, {values} garbage values for RSA-{} keys; keyring: {} keys",
        body.len(),
        args.key_bits,
        args.keys
    );
    println!("wall seconds per request: {}", summary(seconds));
    println!("controller CPU seconds per request: {}", summary(cpu));
    if decryptions.is_empty() {
        println!("RSA decryptions per request: no {RSA_DECRYPTIONS} on this controller");
    } else {
        println!("RSA decryptions per request: {}", summary(decryptions));
    }
    Ok(())
}
