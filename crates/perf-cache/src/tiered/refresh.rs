//! Stale-while-revalidate for the tiered manager: a value past its refresh age is served at
//! once while one background task reloads it and writes it to every level.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::cache::{CacheValue, TieredCache, WriteOptions};
use crate::error::Result;

impl<V: CacheValue> TieredCache<V> {
    /// Like [`get_or_compute`](Self::get_or_compute), and once the value found is older than
    /// `refresh_after` (its TTL, `opts.ttl`, minus the time it has left), returns it at once
    /// while one background task (on the current tokio runtime) runs `loader` and writes the
    /// new value to every level.
    ///
    /// - **One refresh per key**: stale hits while a refresh or a load of the key runs in this
    ///   process start nothing more; with a [fleet lock](super::TieredCacheBuilder::fleet_lock),
    ///   a process whose `try_lock` finds the key locked leaves the refresh to the holder,
    ///   one that gets the lock after another process refreshed takes that value instead of
    ///   loading again (both count in `refreshes_elsewhere`), and a process refreshes itself
    ///   if Redis fails.
    /// - **A failed refresh keeps the old value** until its TTL runs out; the error is
    ///   counted (`load_errors` in [`stats`](Self::stats)) and not cached. `refreshes` and
    ///   `refreshes_elsewhere` count the refreshes run here and those left to the lock holder.
    /// - The age is known on every level: L1 keeps each entry's deadline, and remote levels
    ///   store the absolute expiry with the value. Without `opts.ttl` there is no age, and
    ///   this is `get_or_compute`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use perf_cache::l1::Cache;
    /// use perf_cache::tiered::{TieredCache, WriteOptions};
    /// use perf_core::clock::ManualClock;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let clock = ManualClock::new();
    /// let cache: TieredCache<u32> = TieredCache::builder()
    ///     .l1(Cache::builder().clock(clock.shared()).build())
    ///     .clock(clock.shared())
    ///     .build();
    /// let opts = WriteOptions::new().ttl(Duration::from_secs(60));
    /// let age = Duration::from_secs(30);
    /// let v = cache.get_or_refresh(b"k", opts, age, || async { Ok::<_, std::io::Error>(1) }).await.unwrap();
    /// assert_eq!(*v, 1);
    /// clock.advance(Duration::from_secs(31));
    /// // Stale: the old value comes back at once, a refresh runs in the background.
    /// let v = cache.get_or_refresh(b"k", opts, age, || async { Ok::<_, std::io::Error>(2) }).await.unwrap();
    /// assert_eq!(*v, 1);
    /// while cache.get(b"k").await.as_deref() != Some(&2) { tokio::task::yield_now().await; }
    /// # });
    /// ```
    pub async fn get_or_refresh<F, Fut, E>(
        &self,
        key: &[u8],
        opts: WriteOptions<'_>,
        refresh_after: Duration,
        loader: F,
    ) -> Result<Arc<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let Some(ttl) = opts.ttl.filter(|_| self.inner.enabled) else {
            return self.get_or_compute(key, opts, loader).await;
        };
        let found = self.get_walk_timed(key, true).await;
        if let Some(a) = &self.inner.analytics {
            a.record(key, found.is_some());
        }
        let Some((value, left)) = found else {
            return self.compute_missing(key, opts, loader).await;
        };
        let fresh_for = ttl.saturating_sub(refresh_after);
        if left.is_some_and(|left| left < fresh_for) {
            self.spawn_refresh(key, opts, fresh_for, loader);
        }
        Ok(value)
    }

    /// Reloads `key` in the background. `fresh_for`: how long a value just written has left
    /// to live at least (with the fleet lock, a copy that fresh means another process has
    /// refreshed it already).
    fn spawn_refresh<F, Fut, E>(
        &self,
        key: &[u8],
        opts: WriteOptions<'_>,
        fresh_for: Duration,
        loader: F,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        // Without a runtime the value is served until it expires; with a flight for the key
        // running, that flight stores a fresh value.
        let Some((runtime, leader)) = self.inner.flights.begin_background(key.to_vec()) else {
            return;
        };
        let cache = self.clone();
        let key = key.to_vec();
        let ttl = opts.ttl;
        let tags: Vec<String> = opts.tags.iter().map(|t| (*t).to_owned()).collect();
        #[cfg(not(feature = "redis"))]
        let _ = fresh_for;
        runtime.spawn(async move {
            #[cfg(feature = "redis")]
            use crate::redis::RedisBackend as _;
            #[cfg(feature = "redis")]
            let guard = match &cache.inner.fleet_lock {
                Some(lock) => match &lock.tier {
                    Some(tier) => match tier.try_lock(&key, lock.ttl).await {
                        Ok(Some(guard)) => Some(guard),
                        // Another process refreshes; dropping the leader lets waiters retry.
                        Ok(None) => {
                            drop(leader);
                            cache.inner.refreshes_elsewhere.inc();
                            return;
                        }
                        // Redis trouble: refresh here rather than not at all.
                        Err(_) => None,
                    },
                    None => None,
                },
                None => None,
            };
            // The lock's last holder may have just refreshed the key: take its value.
            #[cfg(feature = "redis")]
            let guard = match guard {
                Some(guard) => match cache.fresh_remote(&key, fresh_for).await {
                    Some(fresh) => {
                        let _ = guard.release().await;
                        leader.complete(&Ok(fresh));
                        cache.inner.refreshes_elsewhere.inc();
                        return;
                    }
                    None => Some(guard),
                },
                None => None,
            };
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            let mut opts = WriteOptions::new().tags(&tags);
            if let Some(ttl) = ttl {
                opts = opts.ttl(ttl);
            }
            let result = cache.run_loader(loader).await;
            match &result {
                Ok(value) => {
                    cache.set_arc(&key, value.clone(), opts).await;
                }
                Err(_) => {
                    tracing::debug!("stale-while-revalidate refresh failed; keeping the old value");
                }
            }
            #[cfg(feature = "redis")]
            if let Some(guard) = guard {
                let _ = guard.release().await;
            }
            leader.complete(&result);
            cache.inner.refreshes.inc();
        });
    }
}
