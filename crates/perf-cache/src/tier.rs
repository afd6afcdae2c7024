//! The byte-level interface of a remote cache tier (Redis L2, PostgreSQL) and its statistics.
//!
//! A tier stores opaque bytes under byte-string keys: the tiered manager encodes values with
//! perf-core's versioned codec before they reach a tier, and decodes (and checks) them after.
//! Every call returns its own `Result`, so the manager can count a failure, fall back to another
//! level and carry on; a tier never panics on what the network or the server hands it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use perf_core::metrics::{Counter, HistogramSnapshot, LatencyHistogram};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One entry of a multi-set: key, encoded value, time to live and tags.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::tier::TierEntry;
///
/// let e = TierEntry::new(b"user:7", b"\xb7\x01...", Some(Duration::from_secs(60))).with_tags(&["users"]);
/// assert_eq!(e.tags, ["users"]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TierEntry<'a> {
    /// The key; any byte string.
    pub key: &'a [u8],
    /// The encoded value.
    pub value: &'a [u8],
    /// Time to live; `None` uses the tier's default.
    pub ttl: Option<Duration>,
    /// Tags for [`RemoteTier::delete_by_tags`].
    pub tags: &'a [&'a str],
}

impl<'a> TierEntry<'a> {
    /// An entry without tags.
    pub fn new(key: &'a [u8], value: &'a [u8], ttl: Option<Duration>) -> Self {
        Self {
            key,
            value,
            ttl,
            tags: &[],
        }
    }

    /// The same entry with `tags`.
    pub fn with_tags(mut self, tags: &'a [&'a str]) -> Self {
        self.tags = tags;
        self
    }
}

/// A shared cache tier that stores opaque bytes: Redis, PostgreSQL, or your own.
///
/// Implementations put a timeout on every call and count hits, misses, errors and latency in
/// their [`TierStats`]. Keys are arbitrary byte strings; values are opaque.
///
/// ```
/// # #[cfg(feature = "redis")]
/// # async fn demo() -> perf_cache::Result<()> {
/// use perf_cache::tier::RemoteTier;
/// use perf_cache::redis::{RedisTier, RedisTierConfig};
///
/// let tier = RedisTier::new(RedisTierConfig::new("redis://127.0.0.1:6379").prefix("demo"))?;
/// tier.set(b"k", b"bytes", None, &["tag"]).await?;
/// assert_eq!(tier.get(b"k").await?.as_deref(), Some(&b"bytes"[..]));
/// tier.delete_by_tags(&["tag"]).await?;
/// assert_eq!(tier.get(b"k").await?, None);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait RemoteTier: Send + Sync + fmt::Debug {
    /// A short name for statistics and errors, e.g. `redis`.
    fn name(&self) -> &'static str;

    /// The value under `key`, or `None`.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The values under `keys`, in order (`None` for each missing key), in as few round trips
    /// as the backend allows.
    async fn mget(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Stores `value` under `key` for `ttl` (`None`: the tier's default), attached to `tags`.
    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[&str],
    ) -> Result<()>;

    /// Stores every entry, in as few round trips as the backend allows.
    async fn mset(&self, entries: &[TierEntry<'_>]) -> Result<()>;

    /// Removes `key` (and its tag memberships); `true` when it was there.
    async fn delete(&self, key: &[u8]) -> Result<bool>;

    /// Removes every key attached to any of `tags`; returns how many keys were removed.
    async fn delete_by_tags(&self, tags: &[&str]) -> Result<u64>;

    /// Removes every key of this tier's namespace (and nothing else); returns how many.
    async fn clear(&self) -> Result<u64>;

    /// One round trip to the backend; returns its latency.
    async fn health(&self) -> Result<Duration>;

    /// The tier's counters and latency histogram.
    fn stats(&self) -> &TierStats;
}

/// Counters and a latency histogram of one tier. Lock-free; shared by every call.
///
/// ```
/// use perf_cache::tier::TierStats;
///
/// let stats = TierStats::default();
/// stats.hits.add(3);
/// stats.misses.inc();
/// let s = stats.snapshot();
/// assert_eq!((s.hits, s.misses, s.errors), (3, 1, 0));
/// assert_eq!(s.hit_ratio(), 0.75);
/// ```
#[derive(Debug, Default)]
pub struct TierStats {
    /// Keys found.
    pub hits: Counter,
    /// Keys not found.
    pub misses: Counter,
    /// Keys written.
    pub writes: Counter,
    /// Keys deleted (by key, tag or clear).
    pub deletes: Counter,
    /// Calls that failed, timeouts included.
    pub errors: Counter,
    /// Calls that hit their timeout (also counted in `errors`).
    pub timeouts: Counter,
    /// Latency of every call, successful or not, in nanoseconds.
    pub latency: LatencyHistogram,
}

impl TierStats {
    /// A copy of the current figures.
    pub fn snapshot(&self) -> TierStatsSnapshot {
        TierStatsSnapshot {
            hits: self.hits.get(),
            misses: self.misses.get(),
            writes: self.writes.get(),
            deletes: self.deletes.get(),
            errors: self.errors.get(),
            timeouts: self.timeouts.get(),
            latency: self.latency.snapshot(),
        }
    }

    /// Counts the answers of a multi-get: a hit per value found, a miss per key without one.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn count_lookups(&self, values: &[Option<Vec<u8>>]) {
        let hits = values.iter().filter(|v| v.is_some()).count() as u64;
        self.hits.add(hits);
        self.misses.add(values.len() as u64 - hits);
    }

    /// Runs `call`, recording its latency and counting a failure (and a timeout).
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) async fn track<T, F>(&self, call: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let result = call.await;
        self.latency.record(started.elapsed());
        if let Err(e) = &result {
            self.errors.inc();
            if matches!(e, crate::Error::Timeout { .. }) {
                self.timeouts.inc();
            }
        }
        result
    }
}

/// A serializable copy of [`TierStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TierStatsSnapshot {
    /// Keys found.
    pub hits: u64,
    /// Keys not found.
    pub misses: u64,
    /// Keys written.
    pub writes: u64,
    /// Keys deleted.
    pub deletes: u64,
    /// Calls that failed, timeouts included.
    pub errors: u64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Call latency in nanoseconds.
    pub latency: HistogramSnapshot,
}

impl TierStatsSnapshot {
    /// `hits / (hits + misses)`, or 0 before the first lookup.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// A tier shared between the manager and the caller.
pub type SharedTier = Arc<dyn RemoteTier>;
