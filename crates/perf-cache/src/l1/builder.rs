//! The L1 builder and the `perf.toml` section it accepts.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_core::clock::{system_clock, SharedClock};
use perf_core::config::CacheConfig;
use perf_core::metrics::LatencyHistogram;

use super::hasher;
use super::shard::Shard;
use super::{Cache, Inner, MemorySize, Padded, Policy, Weigher};
use crate::single_flight::SingleFlight;

/// Bound on the negative cache of `get_or_compute` (recent loader failures), in entries.
const NEGATIVE_CAPACITY: usize = 4096;
/// Smallest per-shard budget the automatic shard count allows (in weigher units: bytes by
/// default). Below it one shard's share would be too small for its policy to work well.
const MIN_SHARD_WEIGHT: u64 = 4096;
/// Smallest per-shard entry bound the automatic shard count allows.
const MIN_SHARD_ENTRIES: u64 = 64;

/// The L1 part of `[cache]` in `perf.toml`.
///
/// ```
/// use perf_cache::l1::{Cache, L1Config, Policy};
/// use perf_core::config::CacheConfig;
///
/// let mut file = CacheConfig::default();
/// file.l1_max_bytes = 8 << 20;
/// file.enabled = false;
/// let config = L1Config::from(&file);
/// assert_eq!(config.max_bytes, 8 << 20);
/// let cache: Cache<String, String> = Cache::builder().config(&config).build();
/// assert!(!cache.insert("k".into(), "v".into()));
/// assert!(cache.get("k").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct L1Config {
    /// Rollback switch: `false` stores nothing and every get misses.
    pub enabled: bool,
    /// Byte budget.
    pub max_bytes: u64,
    /// Optional entry bound.
    pub max_entries: Option<u64>,
    /// Replacement policy.
    pub policy: Policy,
    /// Default TTL of entries.
    pub default_ttl: Option<Duration>,
}

impl Default for L1Config {
    fn default() -> Self {
        Self::from(&CacheConfig::default())
    }
}

impl From<&CacheConfig> for L1Config {
    fn from(c: &CacheConfig) -> Self {
        Self {
            enabled: c.enabled,
            max_bytes: c.l1_max_bytes,
            max_entries: c.l1_max_entries,
            policy: c.l1_policy.into(),
            default_ttl: c.l1_ttl_secs.map(Duration::from_secs),
        }
    }
}

/// Builds a [`Cache`]. `W` is the weigher type; [`MemorySize`] until [`weigher`](Self::weigher)
/// replaces it.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::l1::{Cache, Policy};
/// use perf_core::clock::ManualClock;
///
/// let clock = ManualClock::new();
/// let cache: Cache<u64, Vec<u8>> = Cache::builder()
///     .max_bytes(1 << 20)
///     .max_entries(10_000)
///     .policy(Policy::Lru)
///     .default_ttl(Duration::from_secs(30))
///     .clock(clock.shared())
///     .build();
/// cache.insert(1, vec![0; 100]);
/// clock.advance(Duration::from_secs(31));
/// assert!(cache.get(&1).is_none());
/// ```
pub struct CacheBuilder<K, V, W = MemorySize> {
    config: L1Config,
    shards: Option<usize>,
    clock: Option<SharedClock>,
    hash_seed: Option<u64>,
    weigher: W,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V, W> std::fmt::Debug for CacheBuilder<K, V, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("config", &self.config)
            .field("shards", &self.shards)
            .field("hash_seed", &self.hash_seed.map(|_| "fixed"))
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V, MemorySize> {
    pub(crate) fn new() -> Self {
        Self {
            config: L1Config::default(),
            shards: None,
            clock: None,
            hash_seed: None,
            weigher: MemorySize,
            _types: PhantomData,
        }
    }
}

impl<K, V, W> CacheBuilder<K, V, W> {
    /// Takes every field of `config` (budget, entry bound, policy, TTL, enabled).
    pub fn config(mut self, config: &L1Config) -> Self {
        self.config = config.clone();
        self
    }

    /// Byte budget (default 256 MiB). Zero stores nothing.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.config.max_bytes = bytes;
        self
    }

    /// Entry bound in addition to the byte budget.
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.config.max_entries = Some(entries);
        self
    }

    /// Replacement policy (default [`Policy::TinyLfu`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = policy;
        self
    }

    /// TTL of entries inserted without their own.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = Some(ttl);
        self
    }

    /// `false` turns the cache into a pass-through: nothing stored, every get a miss.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// Number of shards, rounded up to a power of two. Default: four per CPU (at most 64),
    /// fewer when that would give a shard less than 4096 bytes (weigher units) or 64 entries.
    /// Each shard has `max_bytes / shards` of the budget; an entry heavier than that borrows
    /// budget from the other shards, so any entry up to `max_bytes` is admitted.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.max(1));
        self
    }

    /// The clock for TTLs (default: the system clock; tests pass a `ManualClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Hashes keys with a fixed seed instead of a random one, so that two caches built alike
    /// and fed the same operations make the same eviction decisions (reproducible benchmarks
    /// and tests). The default, a seed drawn at random per cache, is the safe choice for
    /// keys an outsider can choose: with a known seed, an attacker can craft colliding keys
    /// that slow the index down and skew admission (hash flooding). Both modes hash with
    /// foldhash; only the seed differs.
    ///
    /// ```
    /// use perf_cache::l1::{Cache, Unit};
    ///
    /// let run = || {
    ///     let cache: Cache<u64, ()> =
    ///         Cache::builder().max_bytes(100).weigher(Unit).shards(1).hash_seed(42).build();
    ///     let mut hits = 0;
    ///     for i in 0..10_000_u64 {
    ///         let key = (i * 7919) % 1000 ^ (i % 13);
    ///         if cache.get(&key).is_some() {
    ///             hits += 1;
    ///         } else {
    ///             cache.insert(key, ());
    ///         }
    ///     }
    ///     hits
    /// };
    /// assert_eq!(run(), run());
    /// ```
    pub fn hash_seed(mut self, seed: u64) -> Self {
        self.hash_seed = Some(seed);
        self
    }

    /// Replaces the weigher.
    pub fn weigher<W2>(self, weigher: W2) -> CacheBuilder<K, V, W2> {
        CacheBuilder {
            config: self.config,
            shards: self.shards,
            clock: self.clock,
            hash_seed: self.hash_seed,
            weigher,
            _types: PhantomData,
        }
    }

    fn shard_count(&self) -> usize {
        if let Some(n) = self.shards {
            return n.next_power_of_two();
        }
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let mut n = (cpus * 4).next_power_of_two().min(64) as u64;
        while n > 1
            && (self.config.max_bytes / n < MIN_SHARD_WEIGHT
                || self
                    .config
                    .max_entries
                    .is_some_and(|e| e / n < MIN_SHARD_ENTRIES))
        {
            n /= 2;
        }
        n as usize
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<K, V>
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Send + Sync + 'static,
        W: Weigher<K, V>,
    {
        let n = self.shard_count();
        let hasher = self.hash_seed.map_or_else(hasher::random, hasher::seeded);
        let per_bytes = self.config.max_bytes / n as u64;
        let per_entries = self.config.max_entries.map_or(usize::MAX, |e| {
            usize::try_from(e / n as u64).unwrap_or(usize::MAX)
        });
        let clock = self.clock.unwrap_or_else(system_clock);
        let shards = (0..n)
            .map(|_| {
                Padded(Mutex::new(Shard::new(
                    self.config.policy,
                    per_bytes,
                    per_entries,
                    hasher.clone(),
                )))
            })
            .collect();
        let negative = lru::LruCache::new(NonZeroUsize::MIN.saturating_add(NEGATIVE_CAPACITY - 1));
        Cache {
            inner: Arc::new(Inner {
                shards,
                shard_bits: n.trailing_zeros(),
                hasher,
                weigher: Box::new(self.weigher),
                base: clock.now(),
                clock,
                default_ttl: self.config.default_ttl,
                enabled: self.config.enabled,
                policy: self.config.policy,
                max_bytes: self.config.max_bytes,
                max_entries: self.config.max_entries,
                share: per_bytes,
                pool: std::sync::atomic::AtomicU64::new(
                    self.config.max_bytes - per_bytes * n as u64,
                ),
                latency: LatencyHistogram::new(),
                flights: SingleFlight::default(),
                negative: Mutex::new(negative),
            }),
        }
    }
}
