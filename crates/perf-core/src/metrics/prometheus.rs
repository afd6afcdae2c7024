//! Prometheus text exposition (format 0.0.4) of a [`MetricsSnapshot`].

use std::fmt::Write as _;

use super::MetricsSnapshot;

/// Turns any string into a valid Prometheus metric name: characters outside
/// `[a-zA-Z0-9_:]` become `_`, and a leading digit gets a `_` in front.
///
/// ```
/// assert_eq!(perf_core::metrics::prometheus_name("cache.l1 hits"), "cache_l1_hits");
/// assert_eq!(perf_core::metrics::prometheus_name("99th"), "_99th");
/// ```
pub fn prometheus_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

impl MetricsSnapshot {
    /// Renders the snapshot in the Prometheus text format.
    ///
    /// Counters and gauges keep their (sanitized) names. Histograms hold nanoseconds and are
    /// exposed as summaries in seconds, named `<name>_seconds` (unless the name already ends so),
    /// with the 0.5, 0.95 and 0.99 quantiles, `_sum` and `_count`. `prefix`, when not empty, is
    /// put in front of every name with an underscore.
    ///
    /// ```
    /// use perf_core::metrics::MetricsRegistry;
    ///
    /// let registry = MetricsRegistry::new();
    /// registry.counter("hits_total").add(3);
    /// registry.histogram("get").record_value(2_000_000);
    /// let text = registry.snapshot().to_prometheus("perfkit");
    /// assert!(text.contains("# TYPE perfkit_hits_total counter\nperfkit_hits_total 3\n"));
    /// assert!(text.contains("perfkit_get_seconds{quantile=\"0.99\"} 0.002"));
    /// assert!(text.contains("perfkit_get_seconds_count 1\n"));
    /// ```
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let full = |name: &str| {
            if prefix.is_empty() {
                prometheus_name(name)
            } else {
                prometheus_name(&format!("{prefix}_{name}"))
            }
        };
        let mut out = String::new();
        // `write!` into a String cannot fail; the results are ignored on purpose.
        for (name, value) in &self.counters {
            let name = full(name);
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {value}");
        }
        for (name, value) in &self.gauges {
            let name = full(name);
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {value}");
        }
        for (name, h) in &self.histograms {
            let mut name = full(name);
            if !name.ends_with("_seconds") {
                name.push_str("_seconds");
            }
            let _ = writeln!(out, "# TYPE {name} summary");
            for q in [0.5, 0.95, 0.99] {
                let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", seconds(h.quantile(q)));
            }
            let _ = writeln!(out, "{name}_sum {}", seconds(h.sum));
            let _ = writeln!(out, "{name}_count {}", h.count);
        }
        out
    }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}
