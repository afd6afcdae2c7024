//! L1 statistics: exact per-shard counters summed on read, and their snapshot.

use std::cell::Cell;

use perf_core::metrics::{HistogramSnapshot, MetricsSnapshot};
use serde::{Deserialize, Serialize};

/// One figure of one shard. It is read and written only under the shard's lock (the shard
/// owns it, and the cache reaches shards through their mutexes), so a plain cell is exact and
/// a hit costs no atomic read-modify-write.
#[derive(Debug, Default)]
pub(crate) struct Tally(Cell<u64>);

impl Tally {
    /// Adds one.
    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }

    /// Replaces the value (gauges: bytes and entries).
    #[inline]
    pub(crate) fn set(&self, value: u64) {
        self.0.set(value);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.get()
    }
}

/// One shard's counters and gauges, exact (see [`Tally`]).
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub(crate) hits: Tally,
    pub(crate) misses: Tally,
    pub(crate) inserts: Tally,
    pub(crate) updates: Tally,
    pub(crate) evictions: Tally,
    pub(crate) expirations: Tally,
    pub(crate) rejections: Tally,
    pub(crate) removals: Tally,
    pub(crate) bytes: Tally,
    pub(crate) entries: Tally,
}

/// A copy of L1's statistics.
///
/// `bytes` is the weight of the live entries (what the budget bounds), `entries` their number.
/// Counters are exact: every get is either a hit or a miss, every stored entry leaves by an
/// eviction, an expiration or a removal (explicit `remove`, tag invalidation, `clear`, or an
/// oversized replacement).
///
/// ```
/// let cache: perf_cache::l1::Cache<String, String> = perf_cache::l1::Cache::new(1 << 20);
/// cache.insert("a".into(), "1".into());
/// assert!(cache.get("a").is_some());
/// assert!(cache.get("b").is_none());
/// let s = cache.stats();
/// assert_eq!((s.hits, s.misses, s.inserts, s.entries), (1, 1, 1, 1));
/// assert_eq!(s.hit_ratio(), 0.5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Gets that found a live entry.
    pub hits: u64,
    /// Gets that found nothing or an expired entry.
    pub misses: u64,
    /// New entries stored.
    pub inserts: u64,
    /// Existing entries replaced.
    pub updates: u64,
    /// Entries evicted by the policy to make room.
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
    /// Inserts refused because the entry was heavier than the cache's budget.
    pub rejections: u64,
    /// Entries removed by `remove`, tag invalidation, `clear` or a rejected replacement.
    pub removals: u64,
    /// Weight of the live entries (bytes with the default weigher).
    pub bytes: u64,
    /// Number of live entries.
    pub entries: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, 0 when there were no gets.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    pub(crate) fn add(&mut self, s: &ShardStats) {
        self.hits += s.hits.get();
        self.misses += s.misses.get();
        self.inserts += s.inserts.get();
        self.updates += s.updates.get();
        self.evictions += s.evictions.get();
        self.expirations += s.expirations.get();
        self.rejections += s.rejections.get();
        self.removals += s.removals.get();
        self.bytes += s.bytes.get();
        self.entries += s.entries.get();
    }

    /// These statistics and the get-latency histogram as a perf-core [`MetricsSnapshot`]
    /// (counters `<prefix>_hits_total`, …; gauges `<prefix>_bytes`, `<prefix>_entries`;
    /// histogram `<prefix>_get_latency_ns`), ready for `to_prometheus` or fleet merging.
    pub fn to_metrics(&self, prefix: &str, latency: &HistogramSnapshot) -> MetricsSnapshot {
        let mut m = MetricsSnapshot::default();
        for (name, value) in [
            ("hits", self.hits),
            ("misses", self.misses),
            ("inserts", self.inserts),
            ("updates", self.updates),
            ("evictions", self.evictions),
            ("expirations", self.expirations),
            ("rejections", self.rejections),
            ("removals", self.removals),
        ] {
            m.counters.insert(format!("{prefix}_{name}_total"), value);
        }
        m.gauges
            .insert(format!("{prefix}_bytes"), self.bytes as i64);
        m.gauges
            .insert(format!("{prefix}_entries"), self.entries as i64);
        m.histograms
            .insert(format!("{prefix}_get_latency_ns"), latency.clone());
        m
    }
}
