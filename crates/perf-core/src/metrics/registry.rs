//! Named metrics: a registry of counters, gauges and histograms, and its serializable snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::{Counter, Gauge, HistogramSnapshot, LatencyHistogram};

/// A set of named metrics. Handles are `Arc`s: look one up once, keep it, and record on the hot
/// path without touching the registry again.
///
/// ```
/// use perf_core::metrics::MetricsRegistry;
///
/// let registry = MetricsRegistry::new();
/// let hits = registry.counter("cache_hits_total");
/// hits.add(3);
/// registry.histogram("llm_call").record_value(1_500_000);
/// let snapshot = registry.snapshot();
/// assert_eq!(snapshot.counters["cache_hits_total"], 3);
/// assert_eq!(snapshot.histograms["llm_call"].count, 1);
/// ```
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    counters: RwLock<BTreeMap<String, Arc<Counter>>>,
    gauges: RwLock<BTreeMap<String, Arc<Gauge>>>,
    histograms: RwLock<BTreeMap<String, Arc<LatencyHistogram>>>,
}

fn get_or_insert<T: Default>(map: &RwLock<BTreeMap<String, Arc<T>>>, name: &str) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(PoisonError::into_inner).get(name) {
        return found.clone();
    }
    map.write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name.to_owned())
        .or_default()
        .clone()
}

impl MetricsRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide default registry, used by the free functions in
    /// [`timing`](crate::timing).
    pub fn global() -> &'static MetricsRegistry {
        static GLOBAL: OnceLock<MetricsRegistry> = OnceLock::new();
        GLOBAL.get_or_init(MetricsRegistry::new)
    }

    /// The counter called `name`, created at zero on first use.
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        get_or_insert(&self.counters, name)
    }

    /// The gauge called `name`, created at zero on first use.
    pub fn gauge(&self, name: &str) -> Arc<Gauge> {
        get_or_insert(&self.gauges, name)
    }

    /// The histogram called `name`, created empty on first use.
    pub fn histogram(&self, name: &str) -> Arc<LatencyHistogram> {
        get_or_insert(&self.histograms, name)
    }

    /// A copy of every metric's current value.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let read = |m: &RwLock<BTreeMap<String, Arc<Counter>>>| {
            m.read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, v)| (k.clone(), v.get()))
                .collect()
        };
        MetricsSnapshot {
            counters: read(&self.counters),
            gauges: self
                .gauges
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, v)| (k.clone(), v.get()))
                .collect(),
            histograms: self
                .histograms
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(k, v)| (k.clone(), v.snapshot()))
                .collect(),
        }
    }
}

/// Every metric of a registry at one moment. Serializes with serde (JSON for a stats endpoint,
/// postcard to ship between processes), merges with snapshots of other processes, and renders
/// as Prometheus text with [`to_prometheus`](MetricsSnapshot::to_prometheus).
///
/// ```
/// use perf_core::metrics::MetricsRegistry;
///
/// let (worker_a, worker_b) = (MetricsRegistry::new(), MetricsRegistry::new());
/// worker_a.counter("requests_total").add(2);
/// worker_b.counter("requests_total").add(5);
/// let mut fleet = worker_a.snapshot();
/// fleet.merge(&worker_b.snapshot());
/// assert_eq!(fleet.counters["requests_total"], 7);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Counter values by name.
    pub counters: BTreeMap<String, u64>,
    /// Gauge values by name.
    pub gauges: BTreeMap<String, i64>,
    /// Histogram snapshots by name.
    pub histograms: BTreeMap<String, HistogramSnapshot>,
}

impl MetricsSnapshot {
    /// Adds `other` into this snapshot: counters and gauges are summed (a fleet's bytes in use is
    /// the sum of its processes'), histograms merged.
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        for (name, value) in &other.counters {
            *self.counters.entry(name.clone()).or_default() += value;
        }
        for (name, value) in &other.gauges {
            *self.gauges.entry(name.clone()).or_default() += value;
        }
        for (name, histogram) in &other.histograms {
            self.histograms
                .entry(name.clone())
                .or_default()
                .merge(histogram);
        }
    }
}
