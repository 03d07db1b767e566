//! Flags of the controller: every flag of upstream's controller (v0.36) with its syntax
//! (pflag: `--flag value`, `--flag=value`, booleans bare or `=true`/`=false`, the last of
//! repeated flags wins) and defaults, each also readable from `SEALED_SECRETS_<FLAG>`
//! (upper case, `-` as `_`) as upstream does, plus sealsync's own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args as FlagGroup, Parser, ValueEnum};
use sealsync_api::parse_go_duration;
use time::OffsetDateTime;

/// Unseals SealedSecrets (bitnami.com/v1alpha1) into Secrets and keeps the sealing keys.
/// A drop-in replacement for the Sealed Secrets controller: same keys, CRD, HTTP endpoints,
/// metric names and flags. Every flag can also be set as SEALED_SECRETS_<FLAG>.
#[derive(Debug, Parser)]
#[command(name = "sealsync-controller", args_override_self = true)]
pub struct Args {
    /// Print the version and exit.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub version: bool,

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
    #[arg(long, env = "SEALED_SECRETS_KEY_TTL", default_value = "87600h", value_parser = parse_go_duration)]
    pub key_ttl: Duration,

    /// Make a new key this long after the newest one; 0 disables renewal.
    /// `--rotate-period` is its deprecated name.
    #[arg(long, alias = "rotate-period", env = "SEALED_SECRETS_KEY_RENEW_PERIOD", default_value = "720h", value_parser = parse_go_duration)]
    pub key_renew_period: Duration,

    /// Make a new key at start if the newest one is older than this time (RFC 1123 with
    /// numeric zone, e.g. "Mon, 02 Jan 2026 15:04:05 -0700").
    #[arg(long, env = "SEALED_SECRETS_KEY_CUTOFF_TIME", value_parser = parse_cutoff)]
    pub key_cutoff_time: Option<OffsetDateTime>,

    /// Which key is the newest (it seals, and renewal counts from it): the one whose
    /// certificate starts last, or the Secret created last.
    #[arg(long, env = "SEALED_SECRETS_KEY_ORDER_PRIORITY", value_enum, default_value_t = KeyOrder::CertNotBefore)]
    pub key_order_priority: KeyOrder,

    /// Common name of new certificates.
    #[arg(long, env = "SEALED_SECRETS_MY_CN", default_value = "")]
    pub my_cn: String,

    /// Annotations put on new key Secrets: `key=value,key=value`.
    #[arg(long, env = "SEALED_SECRETS_PRIVATEKEY_ANNOTATIONS", default_value = "", value_parser = parse_pairs)]
    pub privatekey_annotations: Pairs,

    /// Labels put on new key Secrets: `key=value,key=value` (the key label itself stays
    /// `active`).
    #[arg(long, env = "SEALED_SECRETS_PRIVATEKEY_LABELS", default_value = "", value_parser = parse_pairs)]
    pub privatekey_labels: Pairs,

    /// Accept the deprecated `spec.data` form (a whole Secret sealed as one value); when
    /// false such SealedSecrets get Synced=False.
    #[arg(long, env = "SEALED_SECRETS_ACCEPT_DEPRECATED_V1_DATA", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = true, value_parser = parse_go_bool)]
    pub accept_deprecated_v1_data: bool,

    #[command(flatten)]
    pub scope: ScopeFlags,

    /// Address of the HTTP API (/healthz, /v1/cert.pem, /v1/verify, /v1/rotate).
    #[arg(long, env = "SEALED_SECRETS_LISTEN_ADDR", default_value = ":8080", value_parser = parse_listen)]
    pub listen_addr: SocketAddr,

    /// Address of /metrics.
    #[arg(long, env = "SEALED_SECRETS_LISTEN_METRICS_ADDR", default_value = ":8081", value_parser = parse_listen)]
    pub listen_metrics_addr: SocketAddr,

    /// Longest time to read a request's body (both ports).
    #[arg(long, env = "SEALED_SECRETS_READ_TIMEOUT", default_value = "2m", value_parser = parse_go_duration)]
    pub read_timeout: Duration,

    /// Longest time to answer a request once its headers are read (both ports).
    #[arg(long, env = "SEALED_SECRETS_WRITE_TIMEOUT", default_value = "2m", value_parser = parse_go_duration)]
    pub write_timeout: Duration,

    /// Sustained /v1/verify requests per second per client.
    #[arg(long, env = "SEALED_SECRETS_RATE_LIMIT", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,

    /// /v1/verify requests per client allowed above the rate at once.
    #[arg(long, env = "SEALED_SECRETS_RATE_LIMIT_BURST", default_value_t = 2)]
    pub rate_limit_burst: u32,

    /// SealedSecrets unsealed at the same time (default: the number of cores).
    #[arg(long, env = "SEALED_SECRETS_CONCURRENCY")]
    pub concurrency: Option<u16>,

    /// Unseal SealedSecrets and keep the sealing keys (`=false` runs only the ExternalSecret
    /// reconciler: no keys are made).
    #[arg(long, env = "SEALED_SECRETS_SEALED_SECRETS", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = true, value_parser = parse_go_bool)]
    pub sealed_secrets: bool,

    /// Also sync ExternalSecrets (`external-secrets.io/v1`, with their SecretStores and
    /// ClusterSecretStores; their CRDs must be installed).
    #[arg(long, env = "SEALED_SECRETS_EXTERNAL_SECRETS", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub external_secrets: bool,

    /// ExternalSecrets synced at the same time per watched namespace (they wait on their
    /// providers, not on the cores).
    #[arg(
        long,
        env = "SEALED_SECRETS_EXTERNAL_SECRETS_CONCURRENCY",
        default_value_t = 16
    )]
    pub external_secrets_concurrency: u16,

    /// Every SealedSecret is checked again this often (no decryption when nothing changed).
    #[arg(long, env = "SEALED_SECRETS_RESYNC_PERIOD", default_value = "10m", value_parser = parse_go_duration)]
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

    /// Lowest level logged (default: RUST_LOG, else INFO).
    #[arg(long, env = "SEALED_SECRETS_LOG_LEVEL", value_enum, ignore_case = true)]
    pub log_level: Option<LogLevel>,

    /// Write INFO and DEBUG lines to stdout (WARN and ERROR stay on stderr).
    #[arg(long, env = "SEALED_SECRETS_LOG_INFO_STDOUT", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub log_info_stdout: bool,

    #[command(flatten)]
    pub without_effect: WithoutEffect,

    #[command(flatten)]
    pub glog: GlogFlags,
}

/// Upstream's flags that decide what the engine watches and writes (see [`SyncScope`]).
#[derive(Debug, Clone, FlagGroup)]
pub struct ScopeFlags {
    /// Watch SealedSecrets in every namespace; when false, only in the controller's
    /// namespace and --additional-namespaces.
    #[arg(long, env = "SEALED_SECRETS_ALL_NAMESPACES", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = true, value_parser = parse_go_bool)]
    pub all_namespaces: bool,

    /// Namespaces watched besides the controller's when --all-namespaces=false: `a,b`.
    #[arg(long, env = "SEALED_SECRETS_ADDITIONAL_NAMESPACES", default_value = "", value_parser = parse_list)]
    pub additional_namespaces: List,

    /// Only SealedSecrets matching this label selector are unsealed.
    #[arg(long, env = "SEALED_SECRETS_LABEL_SELECTOR")]
    pub label_selector: Option<String>,

    /// Do not watch generated Secrets: a deleted or edited one is not restored until its
    /// SealedSecret changes (for clusters where the controller may not watch Secrets).
    #[arg(long, env = "SEALED_SECRETS_SKIP_RECREATE", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub skip_recreate: bool,

    /// Write SealedSecrets' status (observedGeneration, Synced condition).
    #[arg(long, env = "SEALED_SECRETS_UPDATE_STATUS", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = true, value_parser = parse_go_bool)]
    pub update_status: bool,
}

/// Upstream's flags that have no effect here (docs/controller.md says why); accepted so
/// that upstream's manifests run unchanged, and checked as upstream checks them.
#[derive(Debug, Clone, FlagGroup)]
#[command(next_help_heading = "Accepted for compatibility, without effect")]
pub struct WithoutEffect {
    /// Key Secrets are always watched here.
    #[arg(long, env = "SEALED_SECRETS_WATCH_FOR_SECRETS", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub watch_for_secrets: bool,

    /// Generated Secrets are always deleted by the garbage collector (ownerReference).
    #[arg(long, env = "SEALED_SECRETS_OLD_GC_BEHAVIOR", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub old_gc_behavior: bool,

    /// Failed SealedSecrets are retried with backoff, without a limit.
    #[arg(long, env = "SEALED_SECRETS_MAX_UNSEAL_RETRIES", default_value_t = 5)]
    pub max_unseal_retries: i32,

    /// The Kubernetes client has no client-side rate limit.
    #[arg(
        long,
        env = "SEALED_SECRETS_KUBECLIENT_QPS",
        default_value_t = 5.0,
        allow_negative_numbers = true
    )]
    pub kubeclient_qps: f32,

    /// The Kubernetes client has no client-side rate limit.
    #[arg(
        long,
        env = "SEALED_SECRETS_KUBECLIENT_BURST",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub kubeclient_burst: i32,
}

/// glog's flags, which upstream's command line also takes; logging is configured by
/// --log-level, --log-format and --log-info-stdout instead.
#[derive(Debug, Clone, FlagGroup)]
#[command(next_help_heading = "glog flags, accepted and ignored")]
pub struct GlogFlags {
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = true, value_parser = parse_go_bool)]
    pub logtostderr: bool,
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub alsologtostderr: bool,
    #[arg(long = "add_dir_header", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub add_dir_header: bool,
    #[arg(long = "skip_headers", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub skip_headers: bool,
    #[arg(long = "skip_log_headers", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false, value_parser = parse_go_bool)]
    pub skip_log_headers: bool,
    /// Verbosity.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: i32,
    #[arg(long, default_value = "")]
    pub vmodule: String,
    #[arg(long, default_value = "")]
    pub stderrthreshold: String,
    #[arg(long = "log_dir", default_value = "")]
    pub log_dir: String,
    #[arg(long = "log_file", default_value = "")]
    pub log_file: String,
    #[arg(long = "log_file_max_size", default_value_t = 1800)]
    pub log_file_max_size: u64,
    #[arg(long = "log_backtrace_at", default_value = "")]
    pub log_backtrace_at: String,
}

/// What the engine watches and writes, from upstream's flags, as the controller hands it
/// to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncScope {
    /// `None`: every namespace; else only these.
    pub namespaces: Option<Vec<String>>,
    /// Label selector of the SealedSecrets to unseal.
    pub label_selector: Option<String>,
    /// Create again the generated Secrets that someone deleted (not `--skip-recreate`).
    pub restore_drift: bool,
    /// Write the SealedSecrets' status.
    pub update_status: bool,
}

impl Default for SyncScope {
    /// Upstream's defaults: every namespace, every SealedSecret, drift restored, status written.
    fn default() -> Self {
        Self {
            namespaces: None,
            label_selector: None,
            restore_drift: true,
            update_status: true,
        }
    }
}

impl ScopeFlags {
    /// The scope, with `own_namespace` (the controller's) watched when not all are.
    pub fn scope(&self, own_namespace: &str) -> SyncScope {
        let namespaces = (!self.all_namespaces).then(|| {
            let mut namespaces = vec![own_namespace.to_string()];
            for namespace in &self.additional_namespaces.0 {
                if !namespaces.contains(namespace) {
                    namespaces.push(namespace.clone());
                }
            }
            namespaces
        });
        SyncScope {
            namespaces,
            label_selector: self.label_selector.clone().filter(|s| !s.is_empty()),
            restore_drift: !self.skip_recreate,
            update_status: self.update_status,
        }
    }
}

impl Args {
    /// The flags of this process: its command line over `SEALED_SECRETS_*` variables.
    pub fn from_env() -> Self {
        Self::parse_from(with_deprecated_env(
            std::env::args_os(),
            std::env::var_os(ROTATE_PERIOD_VARIABLE),
        ))
    }
}

/// The variable of the deprecated `--rotate-period`.
const ROTATE_PERIOD_VARIABLE: &str = "SEALED_SECRETS_ROTATE_PERIOD";

/// `argv` with the deprecated variable turned into its flag's new name, first, so that the
/// command line still wins (clap reads one variable per flag, an alias has none).
fn with_deprecated_env(
    argv: impl IntoIterator<Item = OsString>,
    rotate_period: Option<OsString>,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = argv.into_iter().collect();
    if let Some(value) = rotate_period {
        let mut flag = OsString::from("--key-renew-period=");
        flag.push(value);
        argv.insert(argv.len().min(1), flag);
    }
    argv
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

/// Upstream's level names (Go's slog).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

/// How the newest key is told (`--key-order-priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyOrder {
    /// The key whose certificate's NotBefore is latest.
    #[value(name = "CertNotBefore")]
    CertNotBefore,
    /// The key whose Secret was created last.
    #[value(name = "SecretCreationTimestamp")]
    SecretCreationTimestamp,
}

/// `key=value` pairs of a comma list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(pub BTreeMap<String, String>);

/// A comma list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List(pub Vec<String>);

fn parse_list(text: &str) -> Result<List, String> {
    Ok(List(
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

fn parse_pairs(text: &str) -> Result<Pairs, String> {
    parse_list(text)?
        .0
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(format!("expected key=value, got {pair:?}")),
        })
        .collect::<Result<_, _>>()
        .map(Pairs)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("expected true or false, got {text:?}")),
    }
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

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("controller").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?} refused: {e}"))
    }

    #[test]
    fn upstream_flag_values_parse() {
        let args = parse(&[
            "--key-renew-period=0",
            "--key-cutoff-time=Mon, 02 Jan 2006 15:04:05 -0700",
            "--listen-addr=:9090",
            "--leader-election-identity=replica-a",
        ]);
        assert_eq!(args.key_renew_period, Duration::ZERO);
        assert_eq!(args.key_cutoff_time.unwrap().year(), 2006);
        assert_eq!(args.listen_addr, "[::]:9090".parse().unwrap());
        assert_eq!(args.listen_metrics_addr, "[::]:8081".parse().unwrap());
        assert_eq!(args.leader_election_identity.as_deref(), Some("replica-a"));
        assert_eq!(args.key_ttl, Duration::from_secs(87600 * 3600));
    }

    #[test]
    fn defaults_are_upstreams() {
        let args = parse(&[]);
        assert!(!args.version);
        assert_eq!(args.key_order_priority, KeyOrder::CertNotBefore);
        assert!(args.accept_deprecated_v1_data);
        assert!(args.scope.all_namespaces);
        assert!(args.scope.update_status);
        assert!(!args.scope.skip_recreate);
        assert_eq!((args.rate_limit, args.rate_limit_burst), (2, 2));
        assert_eq!(args.read_timeout, Duration::from_secs(120));
        assert_eq!(args.write_timeout, Duration::from_secs(120));
        assert_eq!(args.log_level, None);
        assert!(!args.log_info_stdout);
        assert_eq!(args.without_effect.max_unseal_retries, 5);
        assert_eq!(args.without_effect.kubeclient_qps, 5.0);
        assert_eq!(args.without_effect.kubeclient_burst, 10);
        assert_eq!(args.scope.scope("kube-system"), SyncScope::default());
    }

    #[test]
    fn booleans_are_bare_or_take_a_value_after_an_equals_sign() {
        let args = parse(&["--update-status", "--skip-recreate", "--log-info-stdout"]);
        assert!(args.scope.update_status && args.scope.skip_recreate && args.log_info_stdout);
        let args = parse(&[
            "--update-status=false",
            "--all-namespaces=0",
            "--accept-deprecated-v1-data=False",
            "--watch-for-secrets=true",
            "--logtostderr=false",
        ]);
        assert!(!args.scope.update_status);
        assert!(!args.scope.all_namespaces);
        assert!(!args.accept_deprecated_v1_data);
        assert!(args.without_effect.watch_for_secrets);
        assert!(!args.glog.logtostderr);
        assert!(
            Args::try_parse_from(["controller", "--skip-recreate=maybe"]).is_err(),
            "only Go's boolean words"
        );
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value() {
        let args = parse(&[
            "--key-prefix",
            "first",
            "--key-prefix=second",
            "--skip-recreate",
            "--skip-recreate=false",
            "--rate-limit=5",
            "--rate-limit",
            "7",
        ]);
        assert_eq!(args.key_prefix, "second");
        assert!(!args.scope.skip_recreate);
        assert_eq!(args.rate_limit, 7);
    }

    #[test]
    fn the_engine_scope_collects_upstreams_watch_flags() {
        let args = parse(&[
            "--all-namespaces=false",
            "--additional-namespaces=apps, ci,,apps",
            "--label-selector=team=a",
            "--skip-recreate",
            "--update-status=false",
        ]);
        assert_eq!(
            args.scope.scope("kube-system"),
            SyncScope {
                namespaces: Some(vec!["kube-system".into(), "apps".into(), "ci".into()]),
                label_selector: Some("team=a".into()),
                restore_drift: false,
                update_status: false,
            }
        );
        let args = parse(&["--additional-namespaces=apps"]);
        assert_eq!(
            args.scope.scope("kube-system").namespaces,
            None,
            "--additional-namespaces only matters without --all-namespaces"
        );
    }

    #[test]
    fn key_metadata_lists_and_upstream_words_parse() {
        let args = parse(&[
            "--privatekey-labels=team=platform,tier=keys",
            "--privatekey-annotations",
            "backup.example/policy=daily,note=a=b",
            "--key-order-priority=SecretCreationTimestamp",
            "--log-level=error",
            "--kubeclient-qps",
            "-1",
            "-v",
            "2",
            "--vmodule=controller=3",
            "--log_dir=/tmp",
        ]);
        assert_eq!(args.privatekey_labels.0["team"], "platform");
        assert_eq!(args.privatekey_labels.0["tier"], "keys");
        assert_eq!(args.privatekey_annotations.0["note"], "a=b");
        assert_eq!(args.key_order_priority, KeyOrder::SecretCreationTimestamp);
        assert_eq!(args.log_level, Some(LogLevel::Error));
        assert_eq!(args.without_effect.kubeclient_qps, -1.0);
        assert_eq!(args.glog.verbosity, 2);
        assert!(Args::try_parse_from(["controller", "--privatekey-labels=team"]).is_err());
        assert!(Args::try_parse_from(["controller", "--key-order-priority=Newest"]).is_err());
    }

    #[test]
    fn rotate_period_is_the_old_name_of_key_renew_period() {
        let args = parse(&["--rotate-period=1h"]);
        assert_eq!(args.key_renew_period, Duration::from_secs(3600));
        let args = parse(&["--rotate-period=1h", "--key-renew-period=2h"]);
        assert_eq!(args.key_renew_period, Duration::from_secs(7200));

        // Its variable, under the command line.
        let argv = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        let from = |argv: Vec<OsString>| Args::try_parse_from(argv).unwrap().key_renew_period;
        let env = Some(OsString::from("3h"));
        assert_eq!(
            from(with_deprecated_env(argv(&["controller"]), env.clone())),
            Duration::from_secs(3 * 3600)
        );
        assert_eq!(
            from(with_deprecated_env(
                argv(&["controller", "--key-renew-period=4h"]),
                env
            )),
            Duration::from_secs(4 * 3600)
        );
    }

    #[test]
    fn each_upstream_flag_is_accepted_with_its_variable() {
        let command = <Args as clap::CommandFactory>::command();
        for long in UPSTREAM_FLAGS {
            let arg = command
                .get_arguments()
                .find(|a| {
                    a.get_long() == Some(long)
                        || a.get_all_aliases()
                            .is_some_and(|aliases| aliases.contains(long))
                })
                .unwrap_or_else(|| panic!("no --{long}"));
            // --version has none: a SEALED_SECRETS_VERSION set for other ends (an image's
            // version, say) must not stop the controller. The alias's is read by `from_env`.
            if *long == "version" || *long == "rotate-period" {
                continue;
            }
            let variable = format!("SEALED_SECRETS_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(variable.as_str()),
                "--{long}"
            );
        }
    }

    /// Every flag of upstream's controller v0.36 (cmd/controller/main.go,
    /// pkg/controller/server.go).
    const UPSTREAM_FLAGS: &[&str] = &[
        "key-prefix",
        "key-size",
        "key-ttl",
        "my-cn",
        "key-renew-period",
        "rotate-period",
        "key-order-priority",
        "accept-deprecated-v1-data",
        "key-cutoff-time",
        "all-namespaces",
        "additional-namespaces",
        "label-selector",
        "rate-limit",
        "rate-limit-burst",
        "privatekey-annotations",
        "privatekey-labels",
        "old-gc-behavior",
        "update-status",
        "watch-for-secrets",
        "skip-recreate",
        "log-info-stdout",
        "log-level",
        "log-format",
        "max-unseal-retries",
        "kubeclient-qps",
        "kubeclient-burst",
        "listen-addr",
        "listen-metrics-addr",
        "read-timeout",
        "write-timeout",
        "version",
    ];
}
