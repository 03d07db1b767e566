//! Prometheus metrics of the engine, registered in the registry the binary serves:
//! reconciles by result, errors by reason, reconcile duration, reconciles in flight and
//! Secret writes by action.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The engine's metrics, all labelled with the controller they belong to.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    controller: String,
    reconciles: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    writes: Family<Labels, Counter>,
    duration: Family<Labels, Histogram>,
    in_flight: Family<Labels, Gauge>,
}

impl EngineMetrics {
    pub fn register(registry: &mut Registry, controller: &str) -> Self {
        let metrics = Self {
            controller: controller.into(),
            reconciles: Family::default(),
            errors: Family::default(),
            writes: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            in_flight: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("sealsync");
        sub.register(
            "reconciles",
            "Reconciles by result (unchanged, applied, refused, failed)",
            metrics.reconciles.clone(),
        );
        sub.register(
            "reconcile_errors",
            "Failed reconciles by reason",
            metrics.errors.clone(),
        );
        sub.register(
            "secret_writes",
            "Secrets written by action (created, updated, drift reverted, adopted)",
            metrics.writes.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Time to reconcile one object",
            metrics.duration.clone(),
        );
        sub.register(
            "reconciles_in_flight",
            "Objects being reconciled right now",
            metrics.in_flight.clone(),
        );
        metrics
    }

    /// The same metrics for another controller (generator) of the process.
    pub fn for_controller(&self, controller: &str) -> Self {
        Self {
            controller: controller.into(),
            ..self.clone()
        }
    }

    fn labels(&self, extra: &[(&'static str, &str)]) -> Labels {
        std::iter::once(("controller", self.controller.clone()))
            .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
            .collect()
    }

    pub(crate) fn started(&self) -> InFlight<'_> {
        let gauge = self.in_flight.get_or_create(&self.labels(&[])).clone();
        gauge.inc();
        InFlight {
            gauge,
            metrics: self,
            started: std::time::Instant::now(),
        }
    }

    pub(crate) fn finished(&self, result: &str, reason: Option<&str>, write: Option<&str>) {
        self.reconciles
            .get_or_create(&self.labels(&[("result", result)]))
            .inc();
        if let Some(reason) = reason {
            self.errors
                .get_or_create(&self.labels(&[("reason", reason)]))
                .inc();
        }
        if let Some(action) = write {
            self.writes
                .get_or_create(&self.labels(&[("action", action)]))
                .inc();
        }
    }
}

/// A reconcile in progress: counted in flight until dropped, then its duration observed.
pub(crate) struct InFlight<'a> {
    gauge: Gauge,
    metrics: &'a EngineMetrics,
    started: std::time::Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
        self.metrics
            .duration
            .get_or_create(&self.metrics.labels(&[]))
            .observe(self.started.elapsed().as_secs_f64());
    }
}
