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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    use crate::metrics::MetricsRegistry;

    /// Captures the last value written to each counter and gauge, by name.
    #[derive(Default)]
    struct Capture(Arc<Mutex<BTreeMap<String, f64>>>);

    struct Cell(String, Arc<Mutex<BTreeMap<String, f64>>>);

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
        }
        fn absolute(&self, value: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), value as f64);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, value: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
        }
        fn decrement(&self, value: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= value;
        }
        fn set(&self, value: f64) {
            self.1.lock().unwrap().insert(self.0.clone(), value);
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Cell(key.name().to_owned(), self.0.clone())))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Cell(key.name().to_owned(), self.0.clone())))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn snapshot_reaches_a_recorder() {
        let registry = MetricsRegistry::new();
        registry.counter("hits_total").add(7);
        registry.gauge("bytes").set(-4);
        let h = registry.histogram("get");
        for v in 1..=100u64 {
            h.record_value(v * 1_000_000);
        }
        let recorder = Capture::default();
        let seen = recorder.0.clone();
        metrics::with_local_recorder(&recorder, || {
            registry.snapshot().export_to_metrics_facade();
            // Exporting twice must not double counters: they are absolute.
            registry.snapshot().export_to_metrics_facade();
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen["hits_total"], 7.0);
        assert_eq!(seen["bytes"], -4.0);
        assert_eq!(seen["get_count"], 100.0);
        assert!((seen["get_p99_seconds"] - 0.099).abs() < 0.001, "{seen:?}");
        assert_eq!(seen["get_max_seconds"], 0.1);
    }
}
