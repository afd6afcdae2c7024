//! Export of snapshots to the `metrics` facade (feature `metrics-facade`).

use super::MetricsSnapshot;

impl MetricsSnapshot {
    /// Publishes this snapshot through the [`metrics`] facade, for services that already run a
    /// `metrics` exporter: counters as absolute counters, gauges as gauges, and each histogram as
    /// gauges `<name>_p50_seconds`, `<name>_p95_seconds`, `<name>_p99_seconds`,
    /// `<name>_max_seconds` plus a counter `<name>_count`.
    ///
    /// Call it periodically (for example every scrape interval); with no recorder installed it
    /// does nothing.
    ///
    /// ```
    /// let registry = perf_core::metrics::MetricsRegistry::new();
    /// registry.counter("hits_total").inc();
    /// registry.snapshot().export_to_metrics_facade();
    /// ```
    pub fn export_to_metrics_facade(&self) {
        for (name, value) in &self.counters {
            metrics::counter!(name.clone()).absolute(*value);
        }
        for (name, value) in &self.gauges {
            metrics::gauge!(name.clone()).set(*value as f64);
        }
        for (name, h) in &self.histograms {
            for (suffix, nanos) in [
                ("p50", h.p50()),
                ("p95", h.p95()),
                ("p99", h.p99()),
                ("max", h.max),
            ] {
                metrics::gauge!(format!("{name}_{suffix}_seconds")).set(nanos as f64 / 1e9);
            }
            metrics::counter!(format!("{name}_count")).absolute(h.count);
        }
    }
}
