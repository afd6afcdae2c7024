//! `cache_latency`: the latency of single L1 operations, percentile by percentile, next to
//! moka, quick_cache and a `Mutex<lru::LruCache>`.
//!
//! `cache_throughput` reports the mean; a service also feels the rare slow operation, such as
//! an insert that has to grow or rebuild a hash table while holding a lock. Every operation is
//! timed on its own with `Instant::now()` (about 20–30 ns on this machine, the same for every
//! library) and recorded in perf-core's `LatencyHistogram`. Two workloads, one thread:
//! - **fill**: 1M fresh keys inserted into an empty cache of 1M entries, so that every table
//!   grows from small to full size;
//! - **read-through churn**: get, and insert on a miss, of uniform keys over 1M with a
//!   capacity of 100k: nine requests in ten miss, insert and evict, which leaves deleted slots
//!   behind in open-addressing tables until they are cleaned up.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Instant;

use perf_cache::l1::{Cache, Unit};
use perf_core::metrics::{HistogramSnapshot, LatencyHistogram};
use perf_testkit::XorShift as Rng;

use crate::harness::{Bench, Row};

/// One library under test: an insert and a get of `u64 → u64`.
trait Subject {
    fn name(&self) -> &'static str;
    fn insert(&self, key: u64);
    fn get(&self, key: u64) -> bool;
}

struct Ours(Cache<u64, u64>);
struct Moka(moka::sync::Cache<u64, u64>);
struct Quick(quick_cache::sync::Cache<u64, u64>);
struct Lru(Mutex<lru::LruCache<u64, u64>>);

/// `Subject` for a cache whose API is `insert(key, value)` and `get(&key) -> Option<_>`.
macro_rules! insert_get_subject {
    ($($ty:ident: $name:literal),* $(,)?) => {$(
        impl Subject for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn insert(&self, key: u64) {
                self.0.insert(key, key);
            }
            fn get(&self, key: u64) -> bool {
                self.0.get(&key).is_some()
            }
        }
    )*};
}

insert_get_subject!(
    Ours: "perf-cache L1 (TinyLfu)",
    Moka: "moka 0.12 (sync)",
    Quick: "quick_cache 0.7 (sync)",
);

impl Subject for Lru {
    fn name(&self) -> &'static str {
        "Mutex<lru::LruCache>"
    }
    fn insert(&self, key: u64) {
        if let Ok(mut c) = self.0.lock() {
            c.put(key, key);
        }
    }
    fn get(&self, key: u64) -> bool {
        self.0.lock().is_ok_and(|mut c| c.get(&key).is_some())
    }
}

fn subjects(capacity: u64) -> Vec<Box<dyn Subject>> {
    let lru_capacity = NonZeroUsize::new(capacity as usize).unwrap_or(NonZeroUsize::MIN);
    vec![
        Box::new(Ours(
            Cache::builder().max_bytes(capacity).weigher(Unit).build(),
        )),
        Box::new(Moka(moka::sync::Cache::new(capacity))),
        Box::new(Quick(quick_cache::sync::Cache::new(capacity as usize))),
        Box::new(Lru(Mutex::new(lru::LruCache::new(lru_capacity)))),
    ]
}

/// Reads one figure (a percentile, the maximum) off a snapshot.
type Figure = fn(&HistogramSnapshot) -> f64;

/// Times `op` once per key.
fn timed(keys: &[u64], mut op: impl FnMut(u64)) -> HistogramSnapshot {
    let histogram = LatencyHistogram::new();
    for &k in keys {
        let start = Instant::now();
        op(k);
        histogram.record_value(start.elapsed().as_nanos() as u64);
    }
    histogram.snapshot()
}

fn record(
    bench: &mut Bench,
    workload: &str,
    (subject, ours): (&str, HistogramSnapshot),
    peers: &[(&str, HistogramSnapshot)],
) {
    let figures: [(&str, Figure); 4] = [
        ("p50", |s| s.p50() as f64),
        ("p99", |s| s.p99() as f64),
        ("p99.9", |s| s.quantile(0.999) as f64),
        ("max", |s| s.max as f64),
    ];
    for (label, figure) in figures {
        for (peer, snapshot) in peers {
            bench.record(
                Row::new(format!("{workload}: {label}"), "ns", false)
                    .subject(subject, figure(&ours))
                    .peer(*peer, figure(snapshot))
                    .note(format!(
                        "{} operations, each timed alone (Instant::now() included); max is one operation, so noisy",
                        ours.count
                    )),
            );
        }
    }
}

/// Per-operation latency percentiles: fill from empty, and read-through churn.
pub(crate) fn latency(bench: &mut Bench) {
    let fill = bench.pick(200_000u64, 1_000_000);
    let mut rng = Rng::new(0x5eed);
    let fresh: Vec<u64> = (0..fill).map(|_| rng.next_u64()).collect();
    let workload = format!("insert {fill} fresh keys into an empty cache of {fill} entries");
    let mut results = Vec::new();
    for subject in subjects(fill) {
        let snapshot = timed(&fresh, |k| subject.insert(k));
        results.push((subject.name(), snapshot));
    }
    let ours = results.remove(0);
    record(bench, &workload, ours, &results);

    let capacity = 100_000u64;
    let key_space = 1_000_000u64;
    let requests = bench.pick(1_000_000usize, 4_000_000);
    let keys: Vec<u64> = (0..requests).map(|_| rng.next_u64() % key_space).collect();
    let workload = format!(
        "get, insert on a miss: uniform keys over {key_space}, capacity {capacity}, {requests} requests"
    );
    let mut results = Vec::new();
    for subject in subjects(capacity) {
        // Fill first, so that every library is measured at its steady state.
        for k in 0..capacity {
            subject.insert(key_space + k);
        }
        let snapshot = timed(&keys, |k| {
            if !black_box(subject.get(k)) {
                subject.insert(k);
            }
        });
        results.push((subject.name(), snapshot));
    }
    let ours = results.remove(0);
    record(bench, &workload, ours, &results);
}
