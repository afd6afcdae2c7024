//! What a write did on each level ([`WriteReport`]) and the manager's per-level statistics.

use perf_core::metrics::Counter;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::l1::CacheStats;
use crate::tier::TierStatsSnapshot;

/// The outcome of a write (set, delete, tag invalidation, clear) on every level.
///
/// A write never stops at the first failing level: each level is tried, and each result is
/// reported. `None` means the level is not configured.
///
/// ```
/// use perf_cache::l1::Cache;
/// use perf_cache::tiered::{TieredCache, WriteOptions};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache: TieredCache<u32> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
/// let r = cache.set(b"k", 1, WriteOptions::new()).await;
/// assert_eq!(r.l1, Some(true));
/// assert!(r.l2.is_none() && r.db.is_none());
/// assert!(r.is_complete() && r.first_error().is_none());
/// # });
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriteReport {
    /// L1: whether the entry was stored (a set) or something was removed (a delete).
    pub l1: Option<bool>,
    /// L2's result.
    pub l2: Option<Result<()>>,
    /// The database tier's result.
    pub db: Option<Result<()>>,
}

impl WriteReport {
    pub(crate) fn new(l1: Option<bool>) -> Self {
        Self {
            l1,
            l2: None,
            db: None,
        }
    }

    /// `true` when no remote level failed.
    pub fn is_complete(&self) -> bool {
        self.first_error().is_none()
    }

    /// The first remote failure, L2 before the database.
    pub fn first_error(&self) -> Option<&Error> {
        [&self.l2, &self.db]
            .into_iter()
            .flatten()
            .find_map(|r| r.as_ref().err())
    }
}

/// Counters the manager keeps for one remote level (the tier keeps its own, see
/// [`TierStats`](crate::tier::TierStats)).
#[derive(Debug, Default)]
pub(crate) struct LevelCounters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) errors: Counter,
    pub(crate) decode_errors: Counter,
    pub(crate) skipped: Counter,
    pub(crate) promotions: Counter,
}

/// Statistics of one remote level as the manager saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LevelStats {
    /// Reads this level answered.
    pub hits: u64,
    /// Reads it did not have.
    pub misses: u64,
    /// Calls that failed (timeouts, connection errors), reads and writes.
    pub errors: u64,
    /// Values that were found but did not decode (corrupted or foreign bytes); each was
    /// deleted and counted as a miss.
    pub decode_errors: u64,
    /// Calls not made because the level was marked down.
    pub skipped: u64,
    /// Values copied into this level from a lower one.
    pub promotions: u64,
    /// Whether the level is marked down now.
    pub down: bool,
    /// The tier's own counters and latency.
    pub tier: TierStatsSnapshot,
}

impl LevelCounters {
    pub(crate) fn snapshot(&self, down: bool, tier: TierStatsSnapshot) -> LevelStats {
        LevelStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            errors: self.errors.get(),
            decode_errors: self.decode_errors.get(),
            skipped: self.skipped.get(),
            promotions: self.promotions.get(),
            down,
            tier,
        }
    }
}

/// Statistics of a [`TieredCache`](super::TieredCache), per level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TieredStats {
    /// L1's statistics, when there is an L1.
    pub l1: Option<CacheStats>,
    /// L2's, when configured.
    pub l2: Option<LevelStats>,
    /// The database tier's, when configured.
    pub db: Option<LevelStats>,
    /// Values copied into L1 from a remote level.
    pub l1_promotions: u64,
    /// Loader runs of `get_or_compute`.
    pub loads: u64,
    /// Loader runs that failed.
    pub load_errors: u64,
    /// Background refreshes of `get_or_refresh` that have run (their loader runs are counted
    /// in `loads` and `load_errors` too).
    pub refreshes: u64,
    /// Background refreshes left to another process that held the fleet lock.
    pub refreshes_elsewhere: u64,
}
