//! Metrics: lock-free counters and gauges, a latency histogram with p50/p95/p99, a registry of
//! named metrics, mergeable serializable snapshots, and Prometheus text exposition.

mod counter;
#[cfg(feature = "metrics-facade")]
mod facade;
mod histogram;
mod prometheus;
mod registry;

pub use counter::{Counter, Gauge};
pub use histogram::{HistogramSnapshot, LatencyHistogram};
pub use prometheus::prometheus_name;
pub use registry::{MetricsRegistry, MetricsSnapshot};
