//! Upstream's metric names (`sealed_secrets_controller_*`), so existing dashboards and
//! alerts keep working, plus counts of values opened (to show that resyncs open nothing) and
//! of RSA decryptions (the cost of untrusted input, also through `/v1/verify`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sealsync_api::SealedSecret;

type Labels = Vec<(&'static str, String)>;

/// Metrics of the sealing controller.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    unseal_requests: Counter,
    unseal_errors: Family<Labels, Counter>,
    values_opened: Counter,
    condition_info: Family<Labels, Gauge>,
    http_requests: Family<Labels, Counter>,
    http_duration: Family<Labels, Histogram>,
}

impl ControllerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            unseal_requests: Counter::default(),
            unseal_errors: Family::default(),
            values_opened: Counter::default(),
            condition_info: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
        };
        let sub = registry.sub_registry_with_prefix("sealed_secrets_controller");
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&vec![("revision", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        sub.register("build_info", "Build information", build_info);
        sub.register(
            "unseal_requests",
            "Total number of sealed secret unseal requests",
            metrics.unseal_requests.clone(),
        );
        sub.register(
            "unseal_errors",
            "Total number of sealed secret unseal errors by reason",
            metrics.unseal_errors.clone(),
        );
        sub.register(
            "condition_info",
            "Current SealedSecret condition status: 1 true, -1 false, 0 unknown",
            metrics.condition_info.clone(),
        );
        sub.register(
            "http_requests",
            "Total number of HTTP requests by handler and code",
            metrics.http_requests.clone(),
        );
        sub.register(
            "http_request_duration_seconds",
            "HTTP request latencies by handler",
            metrics.http_duration.clone(),
        );
        let own = registry.sub_registry_with_prefix("sealsync");
        own.register(
            "values_opened",
            "Sealed values of SealedSecrets the controller set out to open",
            metrics.values_opened.clone(),
        );
        own.register_collector(Box::new(RsaDecryptions));
        metrics
    }

    pub fn unseal_requested(&self, values: usize) {
        self.unseal_requests.inc();
        self.values_opened.inc_by(values as u64);
    }

    pub fn unseal_failed(&self, reason: &str, namespace: &str) {
        self.unseal_errors
            .get_or_create(&vec![
                ("reason", reason.to_string()),
                ("namespace", namespace.to_string()),
            ])
            .inc();
    }

    pub fn condition(&self, sealed: &SealedSecret, synced: bool) {
        self.condition_info
            .get_or_create(&condition_labels(sealed))
            .set(if synced { 1 } else { -1 });
    }

    /// A deleted SealedSecret has no condition any more.
    pub fn forget(&self, sealed: &SealedSecret) {
        self.condition_info.remove(&condition_labels(sealed));
    }

    pub fn http_request(&self, handler: &str, code: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&vec![
                ("handler", handler.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
        self.http_duration
            .get_or_create(&vec![("handler", handler.to_string())])
            .observe(seconds);
    }
}

/// The process's RSA private-key decryptions (unsealing, `/v1/verify`, `/v1/rotate`), as
/// counted by the crypto layer.
#[derive(Debug)]
struct RsaDecryptions;

impl Collector for RsaDecryptions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(sealsync_crypto::rsa_decryptions());
        let metric = encoder.encode_descriptor(
            "rsa_decryptions",
            "RSA private-key decryptions, one per key tried on a sealed value",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

fn condition_labels(sealed: &SealedSecret) -> Labels {
    vec![
        ("name", sealed.metadata.name.clone().unwrap_or_default()),
        (
            "namespace",
            sealed.metadata.namespace.clone().unwrap_or_default(),
        ),
        ("condition", "Synced".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_decryptions_are_exposed() {
        let mut registry = Registry::default();
        ControllerMetrics::register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("sealsync_rsa_decryptions_total ")),
            "{text}"
        );
    }
}
