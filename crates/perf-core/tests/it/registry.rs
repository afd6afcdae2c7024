//! The metrics registry, snapshot merging and Prometheus exposition.

use std::sync::Arc;

use perf_core::metrics::{MetricsRegistry, MetricsSnapshot};

#[test]
fn handles_are_shared_by_name() {
    let r = MetricsRegistry::new();
    let a = r.counter("x");
    let b = r.counter("x");
    assert!(Arc::ptr_eq(&a, &b));
    a.add(2);
    b.inc();
    assert_eq!(r.snapshot().counters["x"], 3);
}

#[test]
fn concurrent_counting_is_exact() {
    let r = Arc::new(MetricsRegistry::new());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || {
                let c = r.counter("requests_total");
                let g = r.gauge("in_flight");
                for _ in 0..100_000 {
                    c.inc();
                    g.add(1);
                    g.sub(1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = r.snapshot();
    assert_eq!(s.counters["requests_total"], 800_000);
    assert_eq!(s.gauges["in_flight"], 0);
}

#[test]
fn snapshots_merge_and_serialize() {
    let a = MetricsRegistry::new();
    let b = MetricsRegistry::new();
    a.counter("hits").add(10);
    b.counter("hits").add(5);
    b.counter("misses").add(1);
    a.gauge("bytes").set(100);
    b.gauge("bytes").set(50);
    a.histogram("get").record_value(1_000);
    b.histogram("get").record_value(3_000);
    let mut s = a.snapshot();
    s.merge(&b.snapshot());
    assert_eq!(s.counters["hits"], 15);
    assert_eq!(s.counters["misses"], 1);
    assert_eq!(s.gauges["bytes"], 150);
    assert_eq!(s.histograms["get"].count, 2);
    let json = serde_json::to_string(&s).unwrap();
    let back: MetricsSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn prometheus_text_is_well_formed() {
    let r = MetricsRegistry::new();
    r.counter("cache.hits").add(4);
    r.gauge("l1 bytes").set(-3);
    let h = r.histogram("llm_call_seconds");
    for ms in 1..=1000u64 {
        h.record_value(ms * 1_000_000);
    }
    let text = r.snapshot().to_prometheus("");
    let mut types = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            types += 1;
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            assert!(matches!(
                parts.next(),
                Some("counter" | "gauge" | "summary")
            ));
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(!series.is_empty());
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    }
    assert_eq!(types, 3);
    assert!(text.contains("cache_hits 4\n"));
    assert!(text.contains("l1_bytes -3\n"));
    // Already ends in _seconds: not doubled.
    assert!(text.contains("llm_call_seconds_count 1000\n"));
    assert!(!text.contains("_seconds_seconds"));
    let p99_line = text
        .lines()
        .find(|l| l.starts_with("llm_call_seconds{quantile=\"0.99\"}"))
        .unwrap();
    let p99: f64 = p99_line.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert!((p99 - 0.99).abs() / 0.99 < 0.01, "{p99}");
}

#[test]
fn global_registry_is_one_instance() {
    let a = MetricsRegistry::global() as *const _;
    let b = MetricsRegistry::global() as *const _;
    assert_eq!(a, b);
}
