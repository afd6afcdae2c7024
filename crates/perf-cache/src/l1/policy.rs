//! The replacement policies L1 offers, and their mapping from `perf.toml`.

use perf_core::config::CachePolicy;
use serde::{Deserialize, Serialize};

/// Which entry L1 evicts when it is full.
///
/// Every policy is O(1) per operation; none scans the cache.
///
/// ```
/// use perf_cache::l1::Policy;
/// use perf_core::config::CachePolicy;
///
/// assert_eq!(Policy::default(), Policy::TinyLfu);
/// assert_eq!(Policy::from(CachePolicy::ScanResistant), Policy::TinyLfu);
/// assert_eq!(Policy::from(CachePolicy::Lru), Policy::Lru);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Policy {
    /// Least recently used: a hit moves the entry to the front, the back is evicted.
    Lru,
    /// Least frequently used: sixteen frequency levels (a hit moves an entry up one level,
    /// saturating at 15), the least recent entry of the lowest level is evicted.
    Lfu,
    /// First in, first out: hits change nothing, the oldest entry is evicted.
    Fifo,
    /// The scan-resistant default: adaptive W-TinyLFU. New entries enter a window queue. An
    /// entry used while in the window moves on to the main segmented LRU (probation,
    /// protected) when it leaves the window; an unused one is admitted only if a count-min
    /// sketch says it is used more often than the entry it would displace. The window's size
    /// (1 % to 90 % of the shard) is chosen by miniature simulations: five small copies of
    /// this policy, one per candidate window, fed a spatial sample of the keys; the shard
    /// adopts the window of the one with the most (slowly decayed) hits, once it has filled.
    /// A shard starts at the 1 % window. One that holds 16384 entries or more when it fills,
    /// whose simulations see one key in 64 and so judge slowly, then moves to the half window
    /// and keeps it at the first decision a period or more later only if its simulation is the
    /// best one and leads the 1 % window's by 32 hits (shrinking the window later loses
    /// nothing, growing it late loses the newcomers the small window turned away). The
    /// policy thus
    /// leans towards frequency on loops and scans and towards recency on recency-heavy
    /// traces. Admission asks a candidate to beat the victim's frequency by more than one,
    /// unless a ghost history (two small Bloom filters of recently evicted keys) says it is
    /// coming back, in which case a tie suffices. Hits in the window and the protected queue
    /// set a CLOCK reference bit (second chance at the tail) rather than moving the entry.
    #[default]
    TinyLfu,
}

impl From<CachePolicy> for Policy {
    fn from(p: CachePolicy) -> Self {
        match p {
            CachePolicy::Lru => Self::Lru,
            CachePolicy::Lfu => Self::Lfu,
            CachePolicy::Fifo => Self::Fifo,
            // `ScanResistant` and any policy a later perf-core adds fall back to the default.
            _ => Self::TinyLfu,
        }
    }
}
