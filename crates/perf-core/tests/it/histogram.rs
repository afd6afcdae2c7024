//! Histogram accuracy against exact quantiles, concurrency and merging.

use std::sync::Arc;

use perf_core::metrics::{HistogramSnapshot, LatencyHistogram};

use perf_testkit::XorShift as Rng;

fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn check_within_one_percent(samples: &mut [u64], what: &str) {
    let h = LatencyHistogram::new();
    for &v in samples.iter() {
        h.record_value(v);
    }
    let snapshot = h.snapshot();
    samples.sort_unstable();
    assert_eq!(snapshot.count, samples.len() as u64);
    assert_eq!(snapshot.min, samples[0]);
    assert_eq!(snapshot.max, *samples.last().unwrap());
    let exact_sum: u64 = samples.iter().sum();
    assert_eq!(snapshot.sum, exact_sum);
    for q in [0.001, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
        let exact = exact_quantile(samples, q) as f64;
        let approx = snapshot.quantile(q) as f64;
        let error = (approx - exact).abs() / exact.max(1.0);
        assert!(
            error <= 0.01,
            "{what}: q={q} exact={exact} approx={approx} error={:.4}%",
            error * 100.0
        );
    }
}

#[test]
fn quantiles_within_one_percent_on_a_million_log_uniform_samples() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    // Latencies from 1 µs to 10 s, uniform in log space: every bucket scale is exercised.
    let mut samples: Vec<u64> = (0..1_000_000)
        .map(|_| (1e3 * 1e7f64.powf(rng.unit())) as u64)
        .collect();
    check_within_one_percent(&mut samples, "log-uniform");
}

#[test]
fn quantiles_within_one_percent_on_a_million_heavy_tailed_samples() {
    let mut rng = Rng::new(42);
    // Pareto-like tail on top of a 2 ms body, as real request latencies look.
    let mut samples: Vec<u64> = (0..1_000_000)
        .map(|_| {
            let u = rng.unit().max(1e-12);
            (2e6 * u.powf(-0.7)) as u64
        })
        .collect();
    check_within_one_percent(&mut samples, "heavy-tailed");
}

#[test]
fn concurrent_recording_loses_nothing() {
    let h = Arc::new(LatencyHistogram::new());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..50_000u64 {
                    h.record_value(t * 1_000_000 + i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = h.snapshot();
    assert_eq!(s.count, 400_000);
    assert_eq!(s.min, 0);
    assert_eq!(s.max, 7 * 1_000_000 + 49_999);
}

#[test]
fn merged_snapshots_equal_one_histogram_of_all_values() {
    let (a, b, all) = (
        LatencyHistogram::new(),
        LatencyHistogram::new(),
        LatencyHistogram::new(),
    );
    let mut rng = Rng::new(7);
    for i in 0..100_000 {
        let v = rng.next_u64() % 50_000_000;
        if i % 3 == 0 { &a } else { &b }.record_value(v);
        all.record_value(v);
    }
    let mut merged = a.snapshot();
    merged.merge(&b.snapshot());
    assert_eq!(merged, all.snapshot());

    let mut from_empty = HistogramSnapshot::default();
    from_empty.merge(&merged);
    assert_eq!(from_empty, merged);
}

#[test]
fn snapshot_survives_postcard_and_json() {
    let h = LatencyHistogram::new();
    for v in [5, 500, 50_000, 5_000_000_000] {
        h.record_value(v);
    }
    let s = h.snapshot();
    let json: HistogramSnapshot =
        serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(json, s);
    let bytes = perf_core::codec::encode(&s).unwrap();
    assert_eq!(
        perf_core::codec::decode::<HistogramSnapshot>(&bytes).unwrap(),
        s
    );
}
