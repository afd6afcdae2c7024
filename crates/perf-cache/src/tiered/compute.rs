//! `get_or_compute`: one loader run per key per process (single-flight), optionally one per
//! fleet (a Redis lock), the result written to every level; loader errors are never cached.

use std::future::Future;
use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;

use super::cache::{CacheValue, TieredCache, WriteOptions};
use crate::error::{Error, Result};

/// The fleet-wide compute lock of [`TieredCache::get_or_compute`] (feature `redis`).
///
/// The process that takes `{prefix}:lock:{key}` computes; the others poll L2 every `poll` for
/// the value, for at most `wait`, and compute themselves after that (or when Redis fails), so
/// the lock can delay a read but never fail it.
///
/// ```
/// # #[cfg(feature = "redis")] {
/// use std::time::Duration;
/// use perf_cache::tiered::FleetLockConfig;
///
/// let lock = FleetLockConfig::new(Duration::from_secs(30));
/// assert_eq!(lock.wait, Duration::from_secs(5));
/// # }
/// ```
#[cfg(feature = "redis")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FleetLockConfig {
    /// The Redis deployment holding the lock (usually the L2 tier itself: a `RedisTier` or a
    /// `RedisClusterTier`).
    pub tier: Option<Arc<dyn crate::redis::RedisBackend>>,
    /// Lock lifetime: longer than a loader run, so it does not expire mid-computation.
    pub ttl: Duration,
    /// Longest a process waits for another's result before computing itself.
    pub wait: Duration,
    /// Interval between checks of L2 while waiting.
    pub poll: Duration,
}

#[cfg(feature = "redis")]
impl FleetLockConfig {
    /// A lock of `ttl`, waiting at most 5 s, polling every 20 ms; the tier is set by
    /// [`TieredCacheBuilder::fleet_lock`](super::TieredCacheBuilder::fleet_lock).
    pub fn new(ttl: Duration) -> Self {
        Self {
            tier: None,
            ttl,
            wait: Duration::from_secs(5),
            poll: Duration::from_millis(20),
        }
    }

    /// Sets how long to wait for another process's result and how often to look.
    pub fn waiting(mut self, wait: Duration, poll: Duration) -> Self {
        self.wait = wait;
        self.poll = poll;
        self
    }
}

/// The key [`TieredCache::cached_call`] (and the `#[cached]` macro) uses for a call of
/// `function` with `args`: perf-core's stable key in the namespace `function`.
#[cfg_attr(not(feature = "macros"), allow(dead_code))]
pub(crate) fn call_key<A: serde::Serialize + ?Sized>(function: &str, args: &A) -> Result<String> {
    Ok(perf_core::keys::stable_key(function, args)?)
}

impl<V: CacheValue> TieredCache<V> {
    /// The value under `key`; on a miss at every level, runs `loader` once for all concurrent
    /// callers of this process (and, with a fleet lock, of the fleet), stores its value on every
    /// level and returns it. A loader error is returned to every waiting caller and not cached.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use perf_cache::l1::Cache;
    /// use perf_cache::tiered::{TieredCache, WriteOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache: TieredCache<u64> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
    /// let calls = AtomicUsize::new(0);
    /// let load = || async { calls.fetch_add(1, Ordering::SeqCst); Ok::<_, std::io::Error>(7) };
    /// let (a, b) = tokio::join!(
    ///     cache.get_or_compute(b"k", WriteOptions::new(), load),
    ///     cache.get_or_compute(b"k", WriteOptions::new(), load),
    /// );
    /// assert_eq!((*a.unwrap(), *b.unwrap()), (7, 7));
    /// assert_eq!(calls.load(Ordering::SeqCst), 1);
    /// # });
    /// ```
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &[u8],
        opts: WriteOptions<'_>,
        loader: F,
    ) -> Result<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        if let Some(v) = self.get(key).await {
            return Ok(v);
        }
        self.compute_missing(key, opts, loader).await
    }

    /// The miss path of [`get_or_compute`](Self::get_or_compute): `key` was found on no level.
    pub(crate) async fn compute_missing<F, Fut, E>(
        &self,
        key: &[u8],
        opts: WriteOptions<'_>,
        loader: F,
    ) -> Result<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        if !self.inner.enabled {
            return self.run_loader(loader).await;
        }
        if let Some(e) = self.negative_hit(key) {
            return Err(e);
        }
        let flights = self.inner.flights.clone();
        flights
            .run(key.to_vec(), || async move {
                // A leader that finished just before we joined has stored its value.
                if let Some(v) = self.inner.l1.as_ref().and_then(|l1| l1.get(key)) {
                    return Ok(v);
                }
                #[cfg(feature = "redis")]
                if let Some(lock) = &self.inner.fleet_lock {
                    return self.compute_with_fleet_lock(key, opts, lock, loader).await;
                }
                let value = match self.run_loader(loader).await {
                    Ok(v) => v,
                    Err(e) => {
                        self.remember_failure(key, &e);
                        return Err(e);
                    }
                };
                self.set_arc(key, value.clone(), opts).await;
                Ok(value)
            })
            .await
    }

    /// Caches an async function's result keyed by its name and arguments: the key is
    /// perf-core's stable, versioned hash of `(function, args)`, so every process computes the
    /// same key for the same call.
    ///
    /// ```
    /// use perf_cache::l1::Cache;
    /// use perf_cache::tiered::{TieredCache, WriteOptions};
    ///
    /// async fn price(sku: &str, qty: u32) -> Result<u64, std::io::Error> {
    ///     Ok(u64::from(qty) * if sku == "a" { 3 } else { 5 })
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache: TieredCache<u64> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
    /// let v = cache.cached_call("price", &("a", 4u32), WriteOptions::new(), || price("a", 4)).await.unwrap();
    /// assert_eq!(*v, 12);
    /// // Same name and arguments: served from the cache.
    /// let v = cache.cached_call("price", &("a", 4u32), WriteOptions::new(), || async { Ok::<u64, std::io::Error>(0) }).await.unwrap();
    /// assert_eq!(*v, 12);
    /// # });
    /// ```
    pub async fn cached_call<A, F, Fut, E>(
        &self,
        function: &str,
        args: &A,
        opts: WriteOptions<'_>,
        loader: F,
    ) -> Result<Arc<V>>
    where
        A: serde::Serialize + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let key = call_key(function, args)?;
        self.get_or_compute(key.as_bytes(), opts, loader).await
    }

    pub(crate) async fn run_loader<F, Fut, E>(&self, loader: F) -> Result<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.inner.loads.inc();
        match loader().await {
            Ok(v) => Ok(Arc::new(v)),
            Err(e) => {
                self.inner.load_errors.inc();
                Err(Error::Loader(Arc::from(e.into())))
            }
        }
    }

    #[cfg(feature = "redis")]
    async fn compute_with_fleet_lock<F, Fut, E>(
        &self,
        key: &[u8],
        opts: WriteOptions<'_>,
        lock: &FleetLockConfig,
        loader: F,
    ) -> Result<Arc<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        use crate::redis::RedisBackend as _;
        let Some(tier) = &lock.tier else {
            let value = self.run_loader(loader).await?;
            self.set_arc(key, value.clone(), opts).await;
            return Ok(value);
        };
        let deadline = self.inner.clock.now() + lock.wait;
        let guard = loop {
            match tier.try_lock(key, lock.ttl).await {
                Ok(Some(guard)) => break Some(guard),
                // Redis trouble: compute locally rather than fail or wait.
                Err(_) => break None,
                Ok(None) => {}
            }
            // Another process computes: wait for its value in L2.
            if self.inner.clock.now() >= deadline {
                break None;
            }
            self.inner.clock.sleep(lock.poll).await;
            if let Some(v) = self.get(key).await {
                return Ok(v);
            }
        };
        // The holder may have finished between our last look and our lock.
        if guard.is_some() {
            if let Some(v) = self.get(key).await {
                if let Some(g) = guard {
                    let _ = g.release().await;
                }
                return Ok(v);
            }
        }
        let result = self.run_loader(loader).await;
        match &result {
            Ok(value) => {
                self.set_arc(key, value.clone(), opts).await;
            }
            Err(e) => self.remember_failure(key, e),
        }
        if let Some(g) = guard {
            let _ = g.release().await;
        }
        result
    }
}
