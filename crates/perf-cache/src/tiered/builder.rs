//! [`TieredCacheBuilder`]: which levels a [`TieredCache`] has, its breaker and its clock.

use std::sync::Arc;
use std::time::Duration;

use perf_core::clock::{system_clock, SharedClock};
use perf_core::metrics::Counter;

use super::breaker::{Breaker, BreakerConfig};
use super::cache::{level, CacheValue, Inner, TieredCache};
use crate::analytics::CacheAnalytics;
use crate::l1::Cache;
use crate::single_flight::SingleFlight;
use crate::tier::SharedTier;

/// Builds a [`TieredCache`]; every level is optional.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::l1::Cache;
/// use perf_cache::tiered::{BreakerConfig, TieredCache};
///
/// let cache: TieredCache<String> = TieredCache::builder()
///     .l1(Cache::new(64 << 20))
///     .breaker(BreakerConfig::new(3, Duration::from_millis(100), Duration::from_secs(1)))
///     .build();
/// assert!(cache.l1().is_some());
/// ```
#[derive(Debug)]
pub struct TieredCacheBuilder<V> {
    l1: Option<Cache<Vec<u8>, Arc<V>>>,
    l2: Option<SharedTier>,
    db: Option<SharedTier>,
    breaker: BreakerConfig,
    clock: SharedClock,
    enabled: bool,
    negative_ttl: Option<Duration>,
    #[cfg(feature = "redis")]
    fleet_lock: Option<super::FleetLockConfig>,
    analytics: Option<Arc<CacheAnalytics>>,
}

impl<V: CacheValue> TieredCacheBuilder<V> {
    pub(crate) fn new() -> Self {
        Self {
            l1: None,
            l2: None,
            db: None,
            breaker: BreakerConfig::default(),
            clock: system_clock(),
            enabled: true,
            negative_ttl: None,
            #[cfg(feature = "redis")]
            fleet_lock: None,
            analytics: None,
        }
    }

    /// Levels from the `[cache]` section of `perf.toml`: L1 from its `l1_*` fields, L2 from
    /// `l2_url` (feature `redis`), the database tier from `database_url` (feature `postgres`),
    /// and the `enabled` rollback switch. Must be called inside a Tokio runtime when an L2 URL
    /// is set. Nothing connects yet: the first call does.
    ///
    /// ```
    /// use perf_core::config::CacheConfig;
    /// use perf_cache::tiered::TieredCache;
    ///
    /// let section = CacheConfig::default(); // L1 only
    /// let cache: TieredCache<String> = TieredCache::builder().from_config(&section).unwrap().build();
    /// assert!(cache.l1().is_some());
    /// ```
    pub fn from_config(mut self, section: &perf_core::config::CacheConfig) -> crate::Result<Self> {
        section.validate()?;
        self.enabled = section.enabled;
        self.l1 = Some(
            Cache::builder()
                .config(&crate::l1::L1Config::from(section))
                .build(),
        );
        if section.l2_url.is_some() {
            #[cfg(feature = "redis")]
            if let Some(cfg) = crate::redis::RedisTierConfig::from_cache_config(section) {
                let cluster = crate::redis::url_kind(&cfg.url)? == crate::redis::UrlKind::Cluster;
                #[cfg(feature = "redis-cluster")]
                if cluster {
                    self.l2 = Some(Arc::new(crate::redis::RedisClusterTier::new(cfg)?));
                    return self.database_from_config(section);
                }
                let _ = cluster;
                self.l2 = Some(Arc::new(crate::redis::RedisTier::new(cfg)?));
            }
            #[cfg(not(feature = "redis"))]
            return Err(crate::Error::InvalidConfig {
                field: "l2_url",
                reason: "an L2 URL needs perf-cache's `redis` feature".to_owned(),
            });
        }
        self.database_from_config(section)
    }

    fn database_from_config(
        #[allow(unused_mut)] mut self,
        section: &perf_core::config::CacheConfig,
    ) -> crate::Result<Self> {
        if section.database_url.is_some() {
            #[cfg(feature = "postgres")]
            if let Some(cfg) = crate::postgres::PostgresTierConfig::from_cache_config(section) {
                self.db = Some(Arc::new(crate::postgres::PostgresTier::new(cfg)?));
            }
            #[cfg(not(feature = "postgres"))]
            return Err(crate::Error::InvalidConfig {
                field: "database_url",
                reason: "a database URL needs perf-cache's `postgres` feature".to_owned(),
            });
        }
        Ok(self)
    }

    /// The in-process L1. It holds the values as `Arc<V>`, so an L1 hit hands out the shared
    /// value without copying it (`Cache::new(bytes)` infers the type).
    pub fn l1(mut self, cache: Cache<Vec<u8>, Arc<V>>) -> Self {
        self.l1 = Some(cache);
        self
    }

    /// The shared L2 (usually the Redis tier, `perf_cache::redis::RedisTier`).
    pub fn l2(mut self, tier: SharedTier) -> Self {
        self.l2 = Some(tier);
        self
    }

    /// The database tier (usually the PostgreSQL tier).
    pub fn database(mut self, tier: SharedTier) -> Self {
        self.db = Some(tier);
        self
    }

    /// When a failing remote level is skipped, and for how long.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// The clock of breaker backoffs, value expiry and fleet-lock waits (tests pass a
    /// `ManualClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The rollback switch: `false` makes every get a miss and stores nothing.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Only one process of the fleet runs a `get_or_compute` loader (or a `get_or_refresh`
    /// refresh) for a key, under a lock in `tier` (feature `redis`): a
    /// [`RedisTier`](crate::redis::RedisTier) or, with `redis-cluster`, a
    /// `RedisClusterTier` — any [`RedisBackend`](crate::redis::RedisBackend).
    ///
    /// ```no_run
    /// # async fn demo() -> perf_cache::Result<()> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use perf_cache::redis::{RedisTier, RedisTierConfig};
    /// use perf_cache::tier::SharedTier;
    /// use perf_cache::tiered::{FleetLockConfig, TieredCache};
    ///
    /// let l2 = Arc::new(RedisTier::new(RedisTierConfig::new("redis://127.0.0.1:6379"))?);
    /// let cache: TieredCache<String> = TieredCache::builder()
    ///     .l2(l2.clone() as SharedTier)
    ///     .fleet_lock(l2, FleetLockConfig::new(Duration::from_secs(30)))
    ///     .build();
    /// # let _ = cache; Ok(()) }
    /// ```
    ///
    /// `tier` is an `Arc<dyn RedisBackend>`: an `Arc<RedisTier>` or an `Arc<RedisClusterTier>`
    /// coerces to it at the call site (this compiles; it only builds values):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use perf_cache::redis::{RedisBackend, RedisTier};
    /// use perf_cache::tiered::{FleetLockConfig, TieredCache};
    ///
    /// fn forms(tier: RedisTier, shared: Arc<RedisTier>, any: Arc<dyn RedisBackend>) {
    ///     let cfg = || FleetLockConfig::new(Duration::from_secs(30));
    ///     let _ = TieredCache::<u64>::builder().fleet_lock(Arc::new(tier), cfg());
    ///     let _ = TieredCache::<u64>::builder().fleet_lock(shared, cfg());
    ///     let _ = TieredCache::<u64>::builder().fleet_lock(any, cfg());
    /// }
    /// # #[cfg(feature = "redis-cluster")]
    /// fn cluster(tier: Arc<perf_cache::redis::RedisClusterTier>) {
    ///     let _ = TieredCache::<u64>::builder()
    ///         .fleet_lock(tier, FleetLockConfig::new(Duration::from_secs(30)));
    /// }
    /// ```
    #[cfg(feature = "redis")]
    pub fn fleet_lock(
        mut self,
        tier: Arc<dyn crate::redis::RedisBackend>,
        mut config: super::FleetLockConfig,
    ) -> Self {
        config.tier = Some(tier);
        self.fleet_lock = Some(config);
        self
    }

    /// Negative caching: a failed `get_or_compute` load of a key is remembered for `ttl`
    /// (per process, at most 10,000 keys, least recently failed dropped first), and calls within
    /// that time return [`Error::NegativelyCached`](crate::Error::NegativelyCached) without
    /// running the loader. Off by default: failures are not cached.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Feeds `analytics` from every read: each key asked of [`TieredCache::get`] or
    /// [`TieredCache::get_many`] (and so of `get_or_compute` and warming's skip check) is
    /// recorded as a hit when any level had it, a miss otherwise. Off by default. Memory stays
    /// bounded by the analytics' own configuration (its Space-Saving capacity), whatever the
    /// number of distinct keys; the cost is one short mutex-held update per read.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use perf_cache::analytics::{AnalyticsConfig, CacheAnalytics};
    /// use perf_cache::l1::Cache;
    /// use perf_cache::tiered::{TieredCache, WriteOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let analytics = Arc::new(CacheAnalytics::new(AnalyticsConfig::default()));
    /// let cache: TieredCache<u8> = TieredCache::builder()
    ///     .l1(Cache::new(1 << 20))
    ///     .analytics(analytics.clone())
    ///     .build();
    /// cache.set(b"k", 1, WriteOptions::new()).await;
    /// cache.get(b"k").await;
    /// cache.get(b"other").await;
    /// let snap = analytics.snapshot();
    /// assert_eq!((snap.total_hits, snap.total_misses), (1, 1));
    /// # });
    /// ```
    pub fn analytics(mut self, analytics: Arc<CacheAnalytics>) -> Self {
        self.analytics = Some(analytics);
        self
    }

    /// The cache.
    pub fn build(self) -> TieredCache<V> {
        let breaker = |clock: &SharedClock| Breaker::new(self.breaker, clock.clone());
        TieredCache {
            inner: Arc::new(Inner {
                l2: self.l2.map(|t| level("l2", t, breaker(&self.clock))),
                db: self.db.map(|t| level("db", t, breaker(&self.clock))),
                l1: self.l1,
                clock: self.clock,
                enabled: self.enabled,
                flights: SingleFlight::new(),
                l1_promotions: Counter::new(),
                loads: Counter::new(),
                load_errors: Counter::new(),
                refreshes: Counter::new(),
                refreshes_elsewhere: Counter::new(),
                sink: std::sync::RwLock::new(None),
                l1_bypass: std::sync::atomic::AtomicBool::new(false),
                epochs: super::epoch::Epochs::default(),
                negative: self.negative_ttl.map(|ttl| {
                    let cap =
                        std::num::NonZeroUsize::new(10_000).unwrap_or(std::num::NonZeroUsize::MIN);
                    (ttl, std::sync::Mutex::new(lru::LruCache::new(cap)))
                }),
                #[cfg(feature = "redis")]
                fleet_lock: self.fleet_lock,
                analytics: self.analytics,
            }),
        }
    }
}
