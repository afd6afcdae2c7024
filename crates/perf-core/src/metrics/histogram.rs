//! A lock-free latency histogram with bounded relative error, and its mergeable snapshot.
//!
//! Values (nanoseconds for latencies, but any `u64` works) fall into log-linear buckets: exact
//! below 256, and above that 128 buckets per power of two. A bucket is at most 1/128 of its
//! value wide and a quantile reports the bucket's midpoint, so every reported quantile is within
//! 0.4 % of a value that really is at that rank. Recording is two relaxed atomic additions (plus
//! a min/max update only when a new extreme arrives); there is no lock anywhere. The running sum
//! is striped over cache-line-sized cells picked per thread, so threads recording at once do not
//! all bounce one cache line.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Values below this are counted exactly, one bucket each.
const EXACT_LIMIT: u64 = 256;
/// Sub-buckets per power of two above [`EXACT_LIMIT`].
const SUB_BUCKETS: u64 = 128;
/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 7;
/// Total number of buckets needed to cover every `u64`.
const BUCKETS: usize = (EXACT_LIMIT + (64 - 8) * SUB_BUCKETS) as usize;

/// Cells the running sum is striped over.
const SUM_STRIPES: usize = 8;

/// An atomic alone on its cache line (128 bytes covers adjacent-line prefetching).
#[derive(Default)]
#[repr(align(128))]
struct PaddedU64(AtomicU64);

/// This thread's stripe, assigned round-robin on first use.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed) % SUM_STRIPES;
            s.set(v);
        }
        v
    })
}

/// The bucket a value falls in.
#[inline]
fn bucket_of(value: u64) -> usize {
    if value < EXACT_LIMIT {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros(); // >= 8
    let shift = msb - SUB_BITS;
    let mantissa = value >> shift; // in [128, 256)
    (EXACT_LIMIT + u64::from(msb - 8) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)) as usize
}

/// The smallest and largest value of a bucket.
fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < EXACT_LIMIT {
        return (index, index);
    }
    let rel = index - EXACT_LIMIT;
    let msb = rel / SUB_BUCKETS + 8;
    let mantissa = rel % SUB_BUCKETS + SUB_BUCKETS;
    let shift = msb - u64::from(SUB_BITS);
    let low = mantissa << shift;
    let high = low.saturating_add((1u64 << shift) - 1);
    (low, high)
}

/// A concurrent histogram of `u64` values, usually latencies in nanoseconds.
///
/// ```
/// use std::time::Duration;
/// use perf_core::metrics::LatencyHistogram;
///
/// let h = LatencyHistogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let s = h.snapshot();
/// assert_eq!(s.count, 100);
/// let p99 = s.p99() as f64;
/// assert!((p99 - 99e6).abs() / 99e6 < 0.01);
/// ```
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    sum: [PaddedU64; SUM_STRIPES],
    min: AtomicU64,
    max: AtomicU64,
}

impl LatencyHistogram {
    /// An empty histogram (about 60 KB of buckets, allocated once).
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: Default::default(),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
        }
    }

    /// Records a duration, in nanoseconds (saturating at `u64::MAX` ns, about 584 years).
    #[inline]
    pub fn record(&self, duration: Duration) {
        self.record_value(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records a raw value.
    #[inline]
    pub fn record_value(&self, value: u64) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.sum[stripe()].0.fetch_add(value, Ordering::Relaxed);
        // Load first: the read-modify-write (and its cache-line contention) happens only when a
        // new extreme arrives, which is rare after warm-up.
        if value < self.min.load(Ordering::Relaxed) {
            self.min.fetch_min(value, Ordering::Relaxed);
        }
        if value > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(value, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy of the current state: every bucket is read once, so values
    /// recorded while the snapshot is taken may or may not be in it, but nothing is counted twice.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::new();
        let mut count = 0u64;
        for (index, bucket) in self.buckets.iter().enumerate() {
            let n = bucket.load(Ordering::Relaxed);
            if n > 0 {
                count += n;
                buckets.push((index as u32, n));
            }
        }
        let (min, max) = if count == 0 {
            (0, 0)
        } else {
            (
                self.min.load(Ordering::Relaxed),
                self.max.load(Ordering::Relaxed),
            )
        };
        HistogramSnapshot {
            count,
            sum: self
                .sum
                .iter()
                .fold(0u64, |acc, s| acc.wrapping_add(s.0.load(Ordering::Relaxed))),
            min,
            max,
            buckets,
        }
    }

    /// Clears every bucket. Not atomic with respect to concurrent recording.
    pub fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Relaxed);
        }
        for s in &self.sum {
            s.0.store(0, Ordering::Relaxed);
        }
        self.min.store(u64::MAX, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("LatencyHistogram")
            .field("count", &s.count)
            .field("p50", &s.p50())
            .field("p99", &s.p99())
            .field("max", &s.max)
            .finish()
    }
}

/// A point-in-time copy of a [`LatencyHistogram`]: serializable, mergeable across threads,
/// processes and machines, and the thing quantiles are read from.
///
/// ```
/// use perf_core::metrics::LatencyHistogram;
///
/// let (a, b) = (LatencyHistogram::new(), LatencyHistogram::new());
/// a.record_value(10);
/// b.record_value(30);
/// let mut merged = a.snapshot();
/// merged.merge(&b.snapshot());
/// assert_eq!((merged.count, merged.min, merged.max, merged.mean()), (2, 10, 30, 20.0));
/// let json = serde_json::to_string(&merged).unwrap();
/// let back: perf_core::metrics::HistogramSnapshot = serde_json::from_str(&json).unwrap();
/// assert_eq!(back, merged);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Number of recorded values.
    pub count: u64,
    /// Sum of recorded values (wrapping on overflow, which needs ~18 quintillion ns in total).
    pub sum: u64,
    /// Smallest recorded value (0 when empty).
    pub min: u64,
    /// Largest recorded value (0 when empty).
    pub max: u64,
    /// Non-empty buckets as `(bucket index, count)`, sorted by index.
    pub buckets: Vec<(u32, u64)>,
}

impl HistogramSnapshot {
    /// The arithmetic mean, or 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.0 ..= 1.0; out-of-range values are clamped), or 0 when
    /// empty. The rank is `ceil(q × count)`, as in the nearest-rank definition.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for &(index, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let (low, high) = bucket_bounds(index as usize);
                let mid = low + (high - low) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// The median.
    pub fn p50(&self) -> u64 {
        self.quantile(0.50)
    }

    /// The 95th percentile.
    pub fn p95(&self) -> u64 {
        self.quantile(0.95)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> u64 {
        self.quantile(0.99)
    }

    /// Adds `other`'s values into this snapshot.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ia, na)), Some(&&(ib, nb))) => {
                    if ia == ib {
                        merged.push((ia, na + nb));
                        a.next();
                        b.next();
                    } else if ia < ib {
                        merged.push((ia, na));
                        a.next();
                    } else {
                        merged.push((ib, nb));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    merged.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut next_low = 0u64;
        for index in 0..BUCKETS {
            let (low, high) = bucket_bounds(index);
            assert_eq!(low, next_low, "gap before bucket {index}");
            assert!(high >= low);
            assert_eq!(bucket_of(low), index);
            assert_eq!(bucket_of(high), index);
            next_low = high.wrapping_add(1);
        }
        assert_eq!(next_low, 0, "last bucket must end at u64::MAX");
    }

    #[test]
    fn bucket_width_is_bounded() {
        for index in EXACT_LIMIT as usize..BUCKETS {
            let (low, high) = bucket_bounds(index);
            assert!(((high - low) as f64) / (low as f64) <= 1.0 / 128.0);
        }
    }

    #[test]
    fn empty_snapshot_is_zero() {
        let s = LatencyHistogram::new().snapshot();
        assert_eq!(
            (s.count, s.min, s.max, s.p99(), s.mean()),
            (0, 0, 0, 0, 0.0)
        );
    }

    #[test]
    fn small_values_are_exact() {
        let h = LatencyHistogram::new();
        for v in 0..200 {
            h.record_value(v);
        }
        let s = h.snapshot();
        assert_eq!(s.p50(), 99);
        assert_eq!(s.quantile(1.0), 199);
        assert_eq!(s.quantile(0.0), 0);
    }
}
