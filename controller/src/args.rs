//! Flags of the controller: upstream's names and defaults, each also readable from
//! `SEALED_SECRETS_<FLAG>` (upper case, `-` as `_`) as upstream does.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use time::OffsetDateTime;

/// Unseals SealedSecrets (bitnami.com/v1alpha1) into Secrets and keeps the sealing keys.
/// A drop-in replacement for the Sealed Secrets controller: same keys, CRD, HTTP endpoints
/// and metric names.
#[derive(Debug, Parser)]
#[command(name = "sealsync-controller", version)]
pub struct Args {
    /// Namespace of the key Secrets, the leader Lease and the controller itself (default:
    /// the pod's namespace, else kube-system).
    #[arg(long, env = "SEALED_SECRETS_CONTROLLER_NAMESPACE")]
    pub controller_namespace: Option<String>,

    /// generateName prefix of new key Secrets.
    #[arg(
        long,
        env = "SEALED_SECRETS_KEY_PREFIX",
        default_value = "sealed-secrets-key"
    )]
    pub key_prefix: String,

    /// Size in bits of new keys.
    #[arg(long, env = "SEALED_SECRETS_KEY_SIZE", default_value_t = 4096)]
    pub key_size: usize,

    /// Validity of new certificates.
    #[arg(long, env = "SEALED_SECRETS_KEY_TTL", default_value = "87600h", value_parser = humantime::parse_duration)]
    pub key_ttl: Duration,

    /// Make a new key this long after the newest one; 0 disables renewal.
    #[arg(long, env = "SEALED_SECRETS_KEY_RENEW_PERIOD", default_value = "720h", value_parser = parse_period)]
    pub key_renew_period: Duration,

    /// Make a new key at start if the newest one is older than this time (RFC 1123 with
    /// numeric zone, e.g. "Mon, 02 Jan 2026 15:04:05 -0700").
    #[arg(long, env = "SEALED_SECRETS_KEY_CUTOFF_TIME", value_parser = parse_cutoff)]
    pub key_cutoff_time: Option<OffsetDateTime>,

    /// Common name of new certificates.
    #[arg(long, env = "SEALED_SECRETS_MY_CN", default_value = "")]
    pub my_cn: String,

    /// Address of the HTTP API (/healthz, /v1/cert.pem, /v1/verify, /v1/rotate).
    #[arg(long, env = "SEALED_SECRETS_LISTEN_ADDR", default_value = ":8080", value_parser = parse_listen)]
    pub listen_addr: SocketAddr,

    /// Address of /metrics.
    #[arg(long, env = "SEALED_SECRETS_LISTEN_METRICS_ADDR", default_value = ":8081", value_parser = parse_listen)]
    pub listen_metrics_addr: SocketAddr,

    /// SealedSecrets unsealed at the same time (default: the number of cores).
    #[arg(long, env = "SEALED_SECRETS_CONCURRENCY")]
    pub concurrency: Option<u16>,

    /// Every SealedSecret is checked again this often (no decryption when nothing changed).
    #[arg(long, env = "SEALED_SECRETS_RESYNC_PERIOD", default_value = "10m", value_parser = humantime::parse_duration)]
    pub resync_period: Duration,

    /// Name of the Lease for leader election, so that several replicas can run.
    #[arg(
        long,
        env = "SEALED_SECRETS_LEADER_ELECTION_LEASE",
        default_value = "sealed-secrets-controller"
    )]
    pub leader_election_lease: String,

    /// This replica's name in the leader Lease (default: $HOSTNAME, i.e. the pod name,
    /// with a random suffix so that a restarted process counts as a new candidate).
    #[arg(long, env = "SEALED_SECRETS_LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,

    /// Log format.
    #[arg(long, env = "SEALED_SECRETS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn is_json(self) -> bool {
        self == Self::Json
    }
}

/// Go-style durations; a bare `0` means "never".
fn parse_period(text: &str) -> Result<Duration, humantime::DurationError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
}

fn parse_cutoff(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822)
        .map_err(|e| format!("expected e.g. \"Mon, 02 Jan 2026 15:04:05 -0700\": {e}"))
}

/// Go-style listen addresses: `:8080` means every interface, IPv6 and IPv4 (`[::]`, which
/// the listener binds dual-stack).
fn parse_listen(text: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    match text.strip_prefix(':') {
        Some(port) => format!("[::]:{port}").parse(),
        None => text.parse(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_flag_values_parse() {
        let args = Args::try_parse_from([
            "sealsync-controller",
            "--key-renew-period=0",
            "--key-cutoff-time=Mon, 02 Jan 2006 15:04:05 -0700",
            "--listen-addr=:9090",
            "--leader-election-identity=replica-a",
        ])
        .unwrap();
        assert_eq!(args.key_renew_period, Duration::ZERO);
        assert_eq!(args.key_cutoff_time.unwrap().year(), 2006);
        assert_eq!(args.listen_addr, "[::]:9090".parse().unwrap());
        assert_eq!(args.listen_metrics_addr, "[::]:8081".parse().unwrap());
        assert_eq!(args.leader_election_identity.as_deref(), Some("replica-a"));
        assert_eq!(args.key_ttl, Duration::from_secs(87600 * 3600));
    }
}
