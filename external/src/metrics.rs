//! External Secrets Operator's metric names and labels, so its dashboards and alerts keep
//! working. prometheus-client suffixes counters with `_total`, which upstream's
//! `externalsecret_sync_calls_error` and `externalsecret_provider_api_calls_count` lack:
//! those are exposed as monotonic gauges under upstream's exact names.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type Total = Gauge<u64, AtomicU64>;

#[derive(Debug, Clone, Default)]
pub struct EsoMetrics {
    sync_calls: Family<Labels, Counter>,
    sync_errors: Family<Labels, Total>,
    condition: Family<Labels, Gauge>,
    duration: Family<Labels, Gauge>,
    provider_calls: Family<Labels, Total>,
    store_condition: Family<Labels, Gauge>,
    cluster_store_condition: Family<Labels, Gauge>,
}

fn object(namespace: &str, name: &str) -> Labels {
    vec![("name", name.into()), ("namespace", namespace.into())]
}

impl EsoMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let es = registry.sub_registry_with_prefix("externalsecret");
        es.register(
            "sync_calls",
            "Total number of the External Secret sync calls",
            metrics.sync_calls.clone(),
        );
        es.register(
            "sync_calls_error",
            "Total number of the External Secret sync errors",
            metrics.sync_errors.clone(),
        );
        es.register(
            "status_condition",
            "The status condition of a specific External Secret",
            metrics.condition.clone(),
        );
        es.register(
            "reconcile_duration",
            "The duration time to reconcile the External Secret, in nanoseconds",
            metrics.duration.clone(),
        );
        es.register(
            "provider_api_calls_count",
            "Number of API calls towards the secret provider",
            metrics.provider_calls.clone(),
        );
        registry.sub_registry_with_prefix("secretstore").register(
            "status_condition",
            "The status condition of a specific SecretStore",
            metrics.store_condition.clone(),
        );
        registry
            .sub_registry_with_prefix("clustersecretstore")
            .register(
                "status_condition",
                "The status condition of a specific ClusterSecretStore",
                metrics.cluster_store_condition.clone(),
            );
        metrics
    }

    /// One sync of an ExternalSecret (a generation from its provider), and how it ended.
    pub fn synced(&self, namespace: &str, name: &str, took: Duration, failed: bool) {
        let labels = object(namespace, name);
        self.sync_calls.get_or_create(&labels).inc();
        if failed {
            self.sync_errors.get_or_create(&labels).inc();
        }
        self.duration
            .get_or_create(&labels)
            .set(i64::try_from(took.as_nanos()).unwrap_or(i64::MAX));
    }

    /// The Ready condition of an ExternalSecret: 1 on the series of its status, 0 on the
    /// other, as upstream sets them.
    pub fn ready(&self, namespace: &str, name: &str, ready: bool) {
        set_condition(&self.condition, object(namespace, name), ready);
    }

    /// The Ready condition of a store (`namespace` `None` for a ClusterSecretStore).
    pub fn store_ready(&self, namespace: Option<&str>, name: &str, ready: bool) {
        match namespace {
            Some(ns) => set_condition(&self.store_condition, object(ns, name), ready),
            None => set_condition(
                &self.cluster_store_condition,
                vec![("name", name.into())],
                ready,
            ),
        }
    }

    /// Drops the series of a deleted ExternalSecret.
    pub fn forget(&self, namespace: &str, name: &str) {
        let labels = object(namespace, name);
        self.sync_calls.remove(&labels);
        self.sync_errors.remove(&labels);
        self.duration.remove(&labels);
        for status in ["True", "False"] {
            self.condition
                .remove(&condition_labels(labels.clone(), status));
        }
    }

    pub fn provider_call(&self, provider: &str, call: &str, status: &str) {
        self.provider_calls
            .get_or_create(&vec![
                ("provider", provider.into()),
                ("call", call.into()),
                ("status", status.into()),
            ])
            .inc();
    }
}

fn condition_labels(mut labels: Labels, status: &str) -> Labels {
    labels.push(("condition", "Ready".into()));
    labels.push(("status", status.into()));
    labels
}

fn set_condition(family: &Family<Labels, Gauge>, labels: Labels, ready: bool) {
    family
        .get_or_create(&condition_labels(labels.clone(), "True"))
        .set(i64::from(ready));
    family
        .get_or_create(&condition_labels(labels, "False"))
        .set(i64::from(!ready));
}
