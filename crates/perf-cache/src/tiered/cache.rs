//! [`TieredCache`]: reads walk L1 → L2 → database and promote hits upward; writes go to every
//! level and report per level; a failing level is skipped for a backoff period.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use perf_core::clock::SharedClock;
use perf_core::metrics::Counter;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::breaker::Breaker;
use super::envelope;
use super::report::{LevelCounters, TieredStats, WriteReport};
use crate::analytics::CacheAnalytics;
use crate::error::{Error, Result};
use crate::l1::{Cache, EntryOptions};
use crate::single_flight::SingleFlight;
use crate::tier::SharedTier;

/// Bounds a cached value type must meet: encodable by perf-core's codec and shareable.
pub trait CacheValue: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> CacheValue for T {}

/// Options of one write: time to live (`None`: each level's default) and tags.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::tiered::WriteOptions;
///
/// let opts = WriteOptions::new().ttl(Duration::from_secs(60)).tags(&["tenant:4"]);
/// assert_eq!(opts.tags, ["tenant:4"]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct WriteOptions<'a> {
    /// Time to live on every level; `None` uses each level's default.
    pub ttl: Option<Duration>,
    /// Tags for [`TieredCache::delete_by_tags`].
    pub tags: &'a [&'a str],
}

impl<'a> WriteOptions<'a> {
    /// No TTL override, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the tags.
    pub fn tags(mut self, tags: &'a [&'a str]) -> Self {
        self.tags = tags;
        self
    }
}

/// A remote level: its tier, breaker and counters.
pub(crate) struct Level {
    pub(crate) name: &'static str,
    pub(crate) tier: SharedTier,
    pub(crate) breaker: Breaker,
    pub(crate) counters: LevelCounters,
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Level")
            .field("name", &self.name)
            .field("tier", &self.tier)
            .field("down", &self.breaker.is_open())
            .finish()
    }
}

impl Level {
    /// Runs `call` unless the level is marked down; feeds the breaker and the counters.
    pub(crate) async fn call<T, F>(&self, call: impl FnOnce(SharedTier) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        if let Err(wait) = self.breaker.admit() {
            self.counters.skipped.inc();
            return Err(Error::TierUnavailable {
                tier: self.name,
                retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            });
        }
        match call(self.tier.clone()).await {
            Ok(v) => {
                self.breaker.on_success();
                Ok(v)
            }
            Err(e) => {
                self.breaker.on_failure();
                self.counters.errors.inc();
                tracing::debug!(level = self.name, error = %e, "cache level call failed");
                Err(e)
            }
        }
    }
}

impl Level {
    async fn set(&self, key: &[u8], bytes: &[u8], opts: WriteOptions<'_>) -> Result<()> {
        self.call(|t| async move { t.set(key, bytes, opts.ttl, opts.tags).await })
            .await
    }

    async fn mset(&self, entries: &[crate::tier::TierEntry<'_>]) -> Result<()> {
        self.call(|t| async move { t.mset(entries).await }).await
    }
}

/// What the coherency layer does to an L1 of any value type.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait L1Handle: Send + Sync {
    fn remove(&self, key: &[u8]);
    fn invalidate_tag(&self, tag: &str);
    fn clear(&self);
}

impl<V: CacheValue> L1Handle for TieredCache<V> {
    fn remove(&self, key: &[u8]) {
        self.inner.epochs.bump_key(key);
        if let Some(l1) = &self.inner.l1 {
            l1.remove(key);
        }
    }
    fn invalidate_tag(&self, tag: &str) {
        self.inner.epochs.bump_all();
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate_tag(tag);
        }
    }
    fn clear(&self) {
        self.inner.epochs.bump_all();
        if let Some(l1) = &self.inner.l1 {
            l1.clear();
        }
    }
}

/// Hooks the coherency layer uses to tell other processes about writes.
pub(crate) trait InvalidationSink: Send + Sync + fmt::Debug {
    /// Publishes that `keys` changed.
    fn keys<'a>(&'a self, keys: &'a [&'a [u8]]) -> futures_lite::BoxFuture<'a>;
    /// Publishes that `tags` were invalidated.
    fn tags<'a>(&'a self, tags: &'a [&'a str]) -> futures_lite::BoxFuture<'a>;
    /// Publishes that everything was cleared.
    fn clear(&self) -> futures_lite::BoxFuture<'_>;
}

/// Minimal boxed-future alias, so the crate needs no `futures` dependency.
pub(crate) mod futures_lite {
    /// A boxed, sendable unit future.
    pub(crate) type BoxFuture<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// Remembered loader failures: key → (until, error).
pub(crate) type NegativeCache =
    std::sync::Mutex<lru::LruCache<Vec<u8>, (std::time::Instant, Error)>>;

pub(crate) struct Inner<V> {
    /// Values are shared: a hit clones the `Arc`, never the value.
    pub(crate) l1: Option<Cache<Vec<u8>, Arc<V>>>,
    pub(crate) l2: Option<Level>,
    pub(crate) db: Option<Level>,
    pub(crate) clock: SharedClock,
    pub(crate) enabled: bool,
    pub(crate) flights: SingleFlight<Vec<u8>, Arc<V>>,
    pub(crate) l1_promotions: Counter,
    pub(crate) loads: Counter,
    pub(crate) load_errors: Counter,
    /// Background refreshes of `get_or_refresh` that ran their loader, and those left to
    /// another process holding the fleet lock.
    pub(crate) refreshes: Counter,
    pub(crate) refreshes_elsewhere: Counter,
    pub(crate) sink: std::sync::RwLock<Option<Arc<dyn InvalidationSink>>>,
    /// Loader failures remembered for `negative_ttl` (bounded LRU), when asked for.
    pub(crate) negative: Option<(Duration, NegativeCache)>,
    /// Writes and invalidations, so a slow remote read does not resurrect a replaced value.
    pub(crate) epochs: super::epoch::Epochs,
    /// Set by the coherency layer while its subscription is down (with `BypassL1`).
    pub(crate) l1_bypass: std::sync::atomic::AtomicBool,
    #[cfg(feature = "redis")]
    pub(crate) fleet_lock: Option<super::compute::FleetLockConfig>,
    /// Fed by every `get` / `get_many` when the builder was given one.
    pub(crate) analytics: Option<Arc<CacheAnalytics>>,
}

/// A multi-level cache of `V` values: an optional in-process L1 ([`Cache`]), an optional L2
/// (usually `perf_cache::redis::RedisTier`) and an optional database tier, any of which
/// may be left out. Cheap to clone.
///
/// - `get` walks L1 → L2 → database; a remote hit is copied into the levels above it
///   (with its tags and remaining TTL). A value that does not decode is a miss, counted in
///   [`LevelStats::decode_errors`](super::LevelStats::decode_errors) and deleted.
/// - A level whose calls fail is not allowed to fail a read: the error is counted, the next
///   level (or the loader) answers, and after [`BreakerConfig::failures_to_open`](super::BreakerConfig)
///   consecutive failures the level is skipped for a backoff period on the perf-core clock.
/// - Writes go to every level and return a [`WriteReport`].
///
/// ```
/// use perf_cache::l1::Cache;
/// use perf_cache::tiered::{TieredCache, WriteOptions};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let cache: TieredCache<String> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
/// cache.set(b"greeting", "hello".to_owned(), WriteOptions::new()).await;
/// assert_eq!(cache.get(b"greeting").await.as_deref().map(String::as_str), Some("hello"));
/// let v = cache
///     .get_or_compute(b"other", WriteOptions::new(), || async { Ok::<_, std::io::Error>("computed".to_owned()) })
///     .await
///     .unwrap();
/// assert_eq!(*v, "computed");
/// # });
/// ```
pub struct TieredCache<V> {
    pub(crate) inner: Arc<Inner<V>>,
}

impl<V> Clone for TieredCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V> fmt::Debug for TieredCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("l1", &self.inner.l1.is_some())
            .field("l2", &self.inner.l2)
            .field("db", &self.inner.db)
            .field("enabled", &self.inner.enabled)
            .finish()
    }
}

impl<V: CacheValue> TieredCache<V> {
    /// A builder with no level configured.
    pub fn builder() -> super::TieredCacheBuilder<V> {
        super::TieredCacheBuilder::new()
    }

    /// The L1 cache, if any. It holds `Arc<V>` values, so an L1 hit shares the value.
    pub fn l1(&self) -> Option<&Cache<Vec<u8>, Arc<V>>> {
        self.inner.l1.as_ref()
    }

    /// The analytics fed by this cache's reads, when the builder was given some (see
    /// [`TieredCacheBuilder::analytics`](super::TieredCacheBuilder::analytics)).
    pub fn analytics(&self) -> Option<&Arc<CacheAnalytics>> {
        self.inner.analytics.as_ref()
    }

    /// The value under `key`, from the highest level that has it; `None` on a miss everywhere.
    /// With [analytics](Self::analytics), the access is recorded as a hit or a miss.
    ///
    /// Never fails: a level that errors is counted and skipped.
    pub async fn get(&self, key: &[u8]) -> Option<Arc<V>> {
        if !self.inner.enabled {
            return None;
        }
        let found = self.get_walk(key).await;
        if let Some(a) = &self.inner.analytics {
            a.record(key, found.is_some());
        }
        found
    }

    /// The walk of [`get`](Self::get): L1, then L2, then the database.
    async fn get_walk(&self, key: &[u8]) -> Option<Arc<V>> {
        self.get_walk_timed(key, false)
            .await
            .map(|(value, _)| value)
    }

    /// The walk of [`get`](Self::get), with the time the value has left to live (`None`: no
    /// expiry). A remote hit always knows it; an L1 hit is asked for it only if `l1_ttl`
    /// (one more lookup), and is reported without expiry otherwise.
    pub(crate) async fn get_walk_timed(
        &self,
        key: &[u8],
        l1_ttl: bool,
    ) -> Option<(Arc<V>, Option<Duration>)> {
        if let Some(l1) = self.l1_active() {
            if let Some(v) = l1.get(key) {
                let left = if l1_ttl {
                    l1.time_to_live(key).flatten()
                } else {
                    None
                };
                return Some((v, left));
            }
        }
        let seen = self.inner.epochs.seen(key);
        let (found, from_db) = self.first_remote(key).await?;
        let left = found.1.remaining(self.inner.clock.system_now());
        Some((self.promote(key, found, from_db, seen).await, left))
    }

    /// The copy of `key` on the highest remote level that has it, and whether that level is
    /// the database.
    async fn first_remote(&self, key: &[u8]) -> Option<((Vec<u8>, envelope::Decoded<V>), bool)> {
        for (level, from_db) in [
            (self.inner.l2.as_ref(), false),
            (self.inner.db.as_ref(), true),
        ] {
            if let Some(found) = self.get_remote(level, key).await {
                return Some((found, from_db));
            }
        }
        None
    }

    /// The highest remote copy of `key` if it has at least `fresh_for` left to live (another
    /// process has just refreshed it), promoted into the levels above it; `None` otherwise.
    #[cfg(feature = "redis")]
    pub(crate) async fn fresh_remote(&self, key: &[u8], fresh_for: Duration) -> Option<Arc<V>> {
        let seen = self.inner.epochs.seen(key);
        let (found, from_db) = self.first_remote(key).await?;
        let left = found.1.remaining(self.inner.clock.system_now());
        if left.is_some_and(|left| left < fresh_for) {
            return None;
        }
        Some(self.promote(key, found, from_db, seen).await)
    }

    /// The values under `keys`, in order, each from the highest level that has it; remote
    /// levels are asked once for all the keys L1 did not have (one pipelined multi-get each).
    /// Never fails, like [`get`](Self::get).
    ///
    /// ```
    /// use perf_cache::l1::Cache;
    /// use perf_cache::tiered::{TieredCache, WriteOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache: TieredCache<u8> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
    /// cache.set(b"a", 1, WriteOptions::new()).await;
    /// let got = cache.get_many(&[b"a", b"b"]).await;
    /// assert_eq!(got.iter().map(|v| v.as_deref().copied()).collect::<Vec<_>>(), [Some(1), None]);
    /// # });
    /// ```
    pub async fn get_many(&self, keys: &[&[u8]]) -> Vec<Option<Arc<V>>> {
        let mut out: Vec<Option<Arc<V>>> = vec![None; keys.len()];
        if !self.inner.enabled {
            return out;
        }
        let mut missing: Vec<usize> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            match self.l1_active().and_then(|l1| l1.get(*key)) {
                Some(v) => out[i] = Some(v),
                None => missing.push(i),
            }
        }
        let seen: Vec<super::epoch::Seen> = missing
            .iter()
            .map(|&i| self.inner.epochs.seen(keys[i]))
            .collect();
        let mut seen_of: std::collections::HashMap<usize, super::epoch::Seen> =
            missing.iter().copied().zip(seen).collect();
        for (level, from_db) in [
            (self.inner.l2.as_ref(), false),
            (self.inner.db.as_ref(), true),
        ] {
            let Some(level) = level else { continue };
            if missing.is_empty() {
                break;
            }
            let asked: Vec<&[u8]> = missing.iter().map(|&i| keys[i]).collect();
            let Ok(found) = level
                .call(|t| {
                    let asked = &asked;
                    async move { t.mget(asked).await }
                })
                .await
            else {
                continue;
            };
            let mut still = Vec::with_capacity(missing.len());
            for (&i, bytes) in missing.iter().zip(found) {
                let hit = match bytes {
                    Some(bytes) => self.decode_hit(level, keys[i], bytes).await,
                    None => {
                        level.counters.misses.inc();
                        None
                    }
                };
                match hit {
                    Some(found) => {
                        let seen = seen_of
                            .remove(&i)
                            .unwrap_or_else(|| self.inner.epochs.seen(keys[i]));
                        out[i] = Some(self.promote(keys[i], found, from_db, seen).await);
                    }
                    None => still.push(i),
                }
            }
            missing = still;
        }
        if let Some(a) = &self.inner.analytics {
            for (key, v) in keys.iter().zip(&out) {
                a.record(key, v.is_some());
            }
        }
        out
    }

    /// Reads and decodes `key` from one remote level. Undecodable bytes are deleted.
    async fn get_remote(
        &self,
        level: Option<&Level>,
        key: &[u8],
    ) -> Option<(Vec<u8>, envelope::Decoded<V>)> {
        let level = level?;
        let bytes = match level.call(|t| async move { t.get(key).await }).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                level.counters.misses.inc();
                return None;
            }
            Err(_) => return None,
        };
        self.decode_hit(level, key, bytes).await
    }

    /// Decodes bytes a level returned for `key`; undecodable bytes are counted and deleted.
    async fn decode_hit(
        &self,
        level: &Level,
        key: &[u8],
        bytes: Vec<u8>,
    ) -> Option<(Vec<u8>, envelope::Decoded<V>)> {
        match envelope::decode::<V>(&bytes) {
            Ok(decoded) => {
                if decoded.remaining(self.inner.clock.system_now()) == Some(Duration::ZERO) {
                    level.counters.misses.inc();
                    return None;
                }
                level.counters.hits.inc();
                Some((bytes, decoded))
            }
            Err(e) => {
                level.counters.decode_errors.inc();
                level.counters.errors.inc();
                level.counters.misses.inc();
                tracing::warn!(level = level.name, error = %e, "undecodable cache value deleted");
                let _ = level.call(|t| async move { t.delete(key).await }).await;
                None
            }
        }
    }

    /// Copies a remote hit into the levels above it and returns the value.
    async fn promote(
        &self,
        key: &[u8],
        (bytes, decoded): (Vec<u8>, envelope::Decoded<V>),
        from_db: bool,
        seen: super::epoch::Seen,
    ) -> Arc<V> {
        let now = self.inner.clock.system_now();
        let remaining = decoded.remaining(now);
        let value = Arc::new(decoded.value);
        let epochs = &self.inner.epochs;
        if let Some(l1) = self.l1_active().filter(|_| epochs.unchanged(key, seen)) {
            let mut opts = EntryOptions::new().tags(decoded.tags.iter().map(String::as_str));
            if let Some(ttl) = remaining {
                opts = opts.ttl(ttl);
            }
            if l1.insert_opts(key.to_vec(), value.clone(), &opts) {
                if epochs.unchanged(key, seen) {
                    self.inner.l1_promotions.inc();
                } else {
                    // A write raced with the insert: drop what may be the older value.
                    l1.remove(key);
                }
            }
        }
        if from_db {
            if let Some(l2) = &self.inner.l2 {
                let tags: Vec<&str> = decoded.tags.iter().map(String::as_str).collect();
                let stored = l2
                    .call(|t| {
                        let (bytes, tags) = (&bytes, &tags);
                        async move { t.set(key, bytes, remaining, tags).await }
                    })
                    .await;
                if stored.is_ok() {
                    l2.counters.promotions.inc();
                }
            }
        }
        value
    }

    /// Stores `value` on every level.
    pub async fn set(&self, key: &[u8], value: V, opts: WriteOptions<'_>) -> WriteReport {
        self.set_arc(key, Arc::new(value), opts).await
    }

    /// Stores an already shared value on every level.
    pub async fn set_arc(&self, key: &[u8], value: Arc<V>, opts: WriteOptions<'_>) -> WriteReport {
        if !self.inner.enabled {
            return WriteReport::new(None);
        }
        self.inner.epochs.bump_key(key);
        let l1 = self.l1_active().map(|l1| {
            let mut o = EntryOptions::new().tags(opts.tags.iter().copied());
            if let Some(ttl) = opts.ttl {
                o = o.ttl(ttl);
            }
            let stored = l1.insert_opts(key.to_vec(), value.clone(), &o);
            if !stored {
                // Too large for L1: make sure an older value does not stay behind.
                l1.remove(key);
            }
            stored
        });
        self.forget_failure(key);
        let mut report = WriteReport::new(l1);
        if self.inner.l2.is_some() || self.inner.db.is_some() {
            let expires = opts.ttl.map(|ttl| self.inner.clock.system_now() + ttl);
            match envelope::encode(&*value, opts.tags, expires) {
                Ok(bytes) => {
                    if let Some(l2) = &self.inner.l2 {
                        report.l2 = Some(l2.set(key, &bytes, opts).await);
                    }
                    if let Some(db) = &self.inner.db {
                        report.db = Some(db.set(key, &bytes, opts).await);
                    }
                }
                Err(e) => {
                    report.l2 = self.inner.l2.as_ref().map(|_| Err(e.clone()));
                    report.db = self.inner.db.as_ref().map(|_| Err(e));
                }
            }
        }
        self.publish_keys(&[key]).await;
        report
    }

    /// Stores every `(key, value)` on every level with the same options: L1 entry by entry,
    /// each remote level with one multi-set (pipelined by the Redis tier, `batch` keys per
    /// round trip), and one coherency message for all the keys. This is what warming uses.
    ///
    /// The report's `l1` is `true` when L1 stored every entry; `l2` and `db` are the result of
    /// the level's multi-set (or the first value that failed to encode: the others are still
    /// written).
    ///
    /// ```
    /// use perf_cache::l1::Cache;
    /// use perf_cache::tiered::{TieredCache, WriteOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache: TieredCache<u32> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
    /// let report = cache.set_many(vec![(b"a".to_vec(), 1), (b"b".to_vec(), 2)], WriteOptions::new()).await;
    /// assert_eq!(report.l1, Some(true));
    /// assert_eq!(cache.get(b"b").await.as_deref(), Some(&2));
    /// # });
    /// ```
    pub async fn set_many<K: AsRef<[u8]>>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
        opts: WriteOptions<'_>,
    ) -> WriteReport {
        if !self.inner.enabled {
            return WriteReport::new(None);
        }
        let entries: Vec<(K, Arc<V>)> =
            entries.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        let l1_opts = self.l1_active().map(|_| {
            let mut o = EntryOptions::new().tags(opts.tags.iter().copied());
            if let Some(ttl) = opts.ttl {
                o = o.ttl(ttl);
            }
            o
        });
        let mut all_in_l1 = true;
        for (key, value) in &entries {
            let key = key.as_ref();
            self.inner.epochs.bump_key(key);
            if let (Some(l1), Some(o)) = (self.l1_active(), &l1_opts) {
                if !l1.insert_opts(key.to_vec(), value.clone(), o) {
                    l1.remove(key);
                    all_in_l1 = false;
                }
            }
            self.forget_failure(key);
        }
        let mut report = WriteReport::new(l1_opts.map(|_| all_in_l1));
        if self.inner.l2.is_some() || self.inner.db.is_some() {
            let expires = opts.ttl.map(|ttl| self.inner.clock.system_now() + ttl);
            let mut encode_error = None;
            let encoded: Vec<(&[u8], Vec<u8>)> = entries
                .iter()
                .filter_map(|(k, v)| match envelope::encode(&**v, opts.tags, expires) {
                    Ok(bytes) => Some((k.as_ref(), bytes)),
                    Err(e) => {
                        encode_error.get_or_insert(e);
                        None
                    }
                })
                .collect();
            let tier_entries: Vec<crate::tier::TierEntry<'_>> = encoded
                .iter()
                .map(|(k, bytes)| {
                    crate::tier::TierEntry::new(k, bytes, opts.ttl).with_tags(opts.tags)
                })
                .collect();
            let finish = |r: Result<()>| match (&encode_error, r) {
                (Some(e), Ok(())) => Err(e.clone()),
                (_, r) => r,
            };
            if let Some(l2) = &self.inner.l2 {
                report.l2 = Some(finish(l2.mset(&tier_entries).await));
            }
            if let Some(db) = &self.inner.db {
                report.db = Some(finish(db.mset(&tier_entries).await));
            }
        }
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_ref()).collect();
        self.publish_keys(&keys).await;
        report
    }

    /// Removes `key` from every level.
    pub async fn delete(&self, key: &[u8]) -> WriteReport {
        self.inner.epochs.bump_key(key);
        let l1 = self.inner.l1.as_ref().map(|l1| l1.remove(key).is_some());
        self.forget_failure(key);
        let mut report = WriteReport::new(l1);
        if let Some(l2) = &self.inner.l2 {
            report.l2 = Some(
                l2.call(|t| async move { t.delete(key).await.map(drop) })
                    .await,
            );
        }
        if let Some(db) = &self.inner.db {
            report.db = Some(
                db.call(|t| async move { t.delete(key).await.map(drop) })
                    .await,
            );
        }
        self.publish_keys(&[key]).await;
        report
    }

    /// Removes every entry tagged with any of `tags` from every level.
    pub async fn delete_by_tags(&self, tags: &[&str]) -> WriteReport {
        self.inner.epochs.bump_all();
        let l1 = self
            .inner
            .l1
            .as_ref()
            .map(|l1| tags.iter().map(|t| l1.invalidate_tag(t)).sum::<usize>() > 0);
        let mut report = WriteReport::new(l1);
        if let Some(l2) = &self.inner.l2 {
            report.l2 = Some(
                l2.call(|t| async move { t.delete_by_tags(tags).await.map(drop) })
                    .await,
            );
        }
        if let Some(db) = &self.inner.db {
            report.db = Some(
                db.call(|t| async move { t.delete_by_tags(tags).await.map(drop) })
                    .await,
            );
        }
        let sink = self.sink();
        if let Some(sink) = sink {
            sink.tags(tags).await;
        }
        report
    }

    /// Removes every entry of this cache's namespace from every level.
    pub async fn clear(&self) -> WriteReport {
        self.inner.epochs.bump_all();
        let l1 = self.inner.l1.as_ref().map(|l1| {
            let had = !l1.is_empty();
            l1.clear();
            had
        });
        let mut report = WriteReport::new(l1);
        if let Some(l2) = &self.inner.l2 {
            report.l2 = Some(l2.call(|t| async move { t.clear().await.map(drop) }).await);
        }
        if let Some(db) = &self.inner.db {
            report.db = Some(db.call(|t| async move { t.clear().await.map(drop) }).await);
        }
        if let Some(sink) = self.sink() {
            sink.clear().await;
        }
        report
    }

    /// Forgets a remembered loader failure of `key` (see
    /// [`TieredCacheBuilder::negative_ttl`](super::TieredCacheBuilder::negative_ttl)).
    pub fn forget_failure(&self, key: &[u8]) {
        if let Some((_, map)) = &self.inner.negative {
            map.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop(key);
        }
    }

    /// A remembered, unexpired loader failure of `key`.
    pub(crate) fn negative_hit(&self, key: &[u8]) -> Option<Error> {
        let (_, map) = self.inner.negative.as_ref()?;
        let mut map = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (deadline, err) = map.get(key)?;
        if self.inner.clock.now() < *deadline {
            return Some(Error::NegativelyCached {
                reason: err.to_string(),
            });
        }
        map.pop(key);
        None
    }

    /// Remembers a loader failure of `key`, when negative caching is on.
    pub(crate) fn remember_failure(&self, key: &[u8], err: &Error) {
        if let Some((ttl, map)) = &self.inner.negative {
            let deadline = self.inner.clock.now() + *ttl;
            map.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .put(key.to_vec(), (deadline, err.clone()));
        }
    }

    /// Every level's figures as a perf-core metrics snapshot (`l1_*`, `l2_*`, `db_*` and
    /// `tiered_*` names), ready for `to_prometheus` or merging across processes.
    ///
    /// ```
    /// use perf_cache::l1::Cache;
    /// use perf_cache::tiered::TieredCache;
    ///
    /// let cache: TieredCache<u8> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
    /// let text = cache.metrics().to_prometheus("app");
    /// assert!(text.contains("l1_misses_total") && text.contains("tiered_loads_total"));
    /// ```
    pub fn metrics(&self) -> perf_core::metrics::MetricsSnapshot {
        let mut m = self
            .inner
            .l1
            .as_ref()
            .map(|l1| l1.metrics("l1"))
            .unwrap_or_default();
        for (prefix, level) in [("l2", &self.inner.l2), ("db", &self.inner.db)] {
            let Some(level) = level else { continue };
            let s = level
                .counters
                .snapshot(level.breaker.is_open(), level.tier.stats().snapshot());
            for (name, value) in [
                ("hits", s.hits),
                ("misses", s.misses),
                ("errors", s.errors),
                ("decode_errors", s.decode_errors),
                ("skipped", s.skipped),
                ("promotions", s.promotions),
                ("timeouts", s.tier.timeouts),
                ("writes", s.tier.writes),
                ("deletes", s.tier.deletes),
            ] {
                m.counters.insert(format!("{prefix}_{name}_total"), value);
            }
            m.gauges.insert(format!("{prefix}_down"), i64::from(s.down));
            m.histograms
                .insert(format!("{prefix}_call_latency_ns"), s.tier.latency);
        }
        for (name, value) in [
            ("l1_promotions", self.inner.l1_promotions.get()),
            ("loads", self.inner.loads.get()),
            ("load_errors", self.inner.load_errors.get()),
            ("refreshes", self.inner.refreshes.get()),
            ("refreshes_elsewhere", self.inner.refreshes_elsewhere.get()),
        ] {
            m.counters.insert(format!("tiered_{name}_total"), value);
        }
        m
    }

    /// Per-level statistics.
    pub fn stats(&self) -> TieredStats {
        let level = |l: &Option<Level>| {
            l.as_ref().map(|l| {
                l.counters
                    .snapshot(l.breaker.is_open(), l.tier.stats().snapshot())
            })
        };
        TieredStats {
            l1: self.inner.l1.as_ref().map(Cache::stats),
            l2: level(&self.inner.l2),
            db: level(&self.inner.db),
            l1_promotions: self.inner.l1_promotions.get(),
            loads: self.inner.loads.get(),
            load_errors: self.inner.load_errors.get(),
            refreshes: self.inner.refreshes.get(),
            refreshes_elsewhere: self.inner.refreshes_elsewhere.get(),
        }
    }

    /// L1, unless it is being bypassed while coherency is disconnected.
    fn l1_active(&self) -> Option<&Cache<Vec<u8>, Arc<V>>> {
        if self
            .inner
            .l1_bypass
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return None;
        }
        self.inner.l1.as_ref()
    }

    /// Type-erased access to L1 for the coherency layer.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn l1_handle(&self) -> Option<Arc<dyn L1Handle>> {
        self.inner
            .l1
            .as_ref()
            .map(|_| Arc::new(self.clone()) as Arc<dyn L1Handle>)
    }

    /// Stops (or resumes) reading and writing L1.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_l1_bypass(&self, on: bool) {
        self.inner
            .l1_bypass
            .store(on, std::sync::atomic::Ordering::Release);
    }

    fn sink(&self) -> Option<Arc<dyn InvalidationSink>> {
        self.inner
            .sink
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn publish_keys(&self, keys: &[&[u8]]) {
        if let Some(sink) = self.sink() {
            sink.keys(keys).await;
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_sink(&self, sink: Arc<dyn InvalidationSink>) {
        *self
            .inner
            .sink
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sink);
    }
}

/// The tier behind a level, for the builder's type-erased storage.
pub(crate) fn level(name: &'static str, tier: SharedTier, breaker: Breaker) -> Level {
    Level {
        name,
        tier,
        breaker,
        counters: LevelCounters::default(),
    }
}
