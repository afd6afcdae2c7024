//! `get_or_compute` on L1: single-flight loading, negative caching and stale-while-revalidate.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use super::{lock, Cache, EntryOptions};
use crate::error::{Error, Result};
use crate::single_flight::{loader_error, Flight};

/// Options of a `get_or_compute` call.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::l1::ComputeOptions;
///
/// let opts = ComputeOptions::new()
///     .ttl(Duration::from_secs(600))
///     .refresh_after(Duration::from_secs(480))
///     .negative_ttl(Duration::from_secs(5))
///     .tag("reports");
/// assert_eq!(opts.entry().ttl_override(), Some(Duration::from_secs(600)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ComputeOptions {
    entry: EntryOptions,
    negative_ttl: Option<Duration>,
    refresh_after: Option<Duration>,
}

impl ComputeOptions {
    /// Default TTL, no tags, no negative caching, no refresh.
    pub fn new() -> Self {
        Self::default()
    }

    /// TTL of the computed entry.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.entry = self.entry.ttl(ttl);
        self
    }

    /// Tags the computed entry.
    pub fn tag(mut self, tag: impl Into<Arc<str>>) -> Self {
        self.entry = self.entry.tag(tag);
        self
    }

    /// Caches a loader failure for `ttl`: calls within it get [`Error::NegativelyCached`]
    /// without running the loader. Off by default — failures are never cached unless asked.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Stale-while-revalidate: once an entry is older than `age` (it has less than
    /// `ttl - age` left to live), a get still returns it and one background refresh replaces it.
    /// Needs a TTL (this call's or the cache's default); used by
    /// [`Cache::get_or_refresh`](super::Cache::get_or_refresh).
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.refresh_after = Some(age);
        self
    }

    /// The entry options (TTL, tags) the computed value is stored with.
    pub fn entry(&self) -> &EntryOptions {
        &self.entry
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The cached value of `key`, or `loader`'s, computed once however many tasks ask at the
    /// same time; every waiting caller gets a clone of the value (store an `Arc<T>` as `V` when
    /// values are expensive to clone). A loader error is returned to every waiting caller and
    /// not cached.
    ///
    /// ```
    /// use perf_cache::l1::Cache;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache: Cache<String, String> = Cache::new(1 << 20);
    /// let v = cache
    ///     .get_or_compute("greeting".to_owned(), || async { Ok::<_, std::io::Error>("hi".to_owned()) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(v, "hi");
    /// assert!(cache.get("greeting").is_some());
    /// # });
    /// ```
    pub async fn get_or_compute<F, Fut, E>(&self, key: K, loader: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        self.get_or_compute_with(key, &ComputeOptions::default(), loader)
            .await
    }

    /// [`get_or_compute`](Self::get_or_compute) with options (TTL, tags, negative caching).
    pub async fn get_or_compute_with<F, Fut, E>(
        &self,
        key: K,
        options: &ComputeOptions,
        loader: F,
    ) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        if !self.inner.enabled {
            lock(self.shard(self.hash(&key))).stats.misses.inc();
            return loader().await.map_err(loader_error);
        }
        let mut loader = Some(loader);
        loop {
            if let Some(v) = self.get(&key) {
                return Ok(v);
            }
            if let Some(e) = self.negative_hit(&key, options) {
                return Err(e);
            }
            match self.inner.flights.begin(key.clone()) {
                Flight::Leader(leader) => {
                    // Another leader may have finished between our miss and `begin`.
                    if let Some(v) = self.peek(&key) {
                        let result = Ok(v);
                        leader.complete(&result);
                        return result;
                    }
                    let Some(load) = loader.take() else {
                        return Err(Error::Cancelled);
                    };
                    let result = self.load_and_store(key.clone(), options, load).await;
                    leader.complete(&result);
                    return result;
                }
                Flight::Follower(follower) => {
                    if let Some(result) = follower.wait().await {
                        return result;
                    }
                    // The leader was cancelled: go round again and take over.
                }
            }
        }
    }

    async fn load_and_store<F, Fut, E>(
        &self,
        key: K,
        options: &ComputeOptions,
        loader: F,
    ) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<V, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        match loader().await {
            Ok(value) => {
                self.insert_opts(key, value.clone(), &options.entry);
                Ok(value)
            }
            Err(e) => {
                let err = loader_error(e);
                if let Some(ttl) = options.negative_ttl {
                    let deadline = self.deadline_after(ttl);
                    lock(&self.inner.negative).put(key, (deadline, err.clone()));
                }
                Err(err)
            }
        }
    }

    fn negative_hit<Q>(&self, key: &Q, options: &ComputeOptions) -> Option<Error>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        options.negative_ttl?;
        let now = self.now_ticks();
        let mut negative = lock(&self.inner.negative);
        let (deadline, err) = negative.get(key)?;
        if *deadline > now {
            return Some(Error::NegativelyCached {
                reason: err.to_string(),
            });
        }
        negative.pop(key);
        None
    }

    /// Forgets a cached loader failure of `key` (negative cache).
    pub fn forget_failure<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        lock(&self.inner.negative).pop(key);
    }

    /// Stale-while-revalidate `get_or_compute`: like
    /// [`get_or_compute_with`](Self::get_or_compute_with), and when the entry found is older
    /// than `options.refresh_after` it is returned at once while one background task (on the
    /// current tokio runtime) reloads it. Concurrent stale hits start one refresh, not many;
    /// a failed refresh keeps the old value until its TTL.
    ///
    /// ```
    /// use std::time::Duration;
    /// use perf_cache::l1::{Cache, ComputeOptions};
    /// use perf_core::clock::ManualClock;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let clock = ManualClock::new();
    /// let cache: Cache<String, u32> = Cache::builder().clock(clock.shared()).build();
    /// let opts = ComputeOptions::new().ttl(Duration::from_secs(60)).refresh_after(Duration::from_secs(30));
    /// let v = cache.get_or_refresh("k".into(), &opts, || async { Ok::<_, std::io::Error>(1) }).await.unwrap();
    /// assert_eq!(v, 1);
    /// clock.advance(Duration::from_secs(31));
    /// // Stale: the old value comes back at once, a refresh runs in the background.
    /// let v = cache.get_or_refresh("k".into(), &opts, || async { Ok::<_, std::io::Error>(2) }).await.unwrap();
    /// assert_eq!(v, 1);
    /// while cache.peek("k") != Some(2) { tokio::task::yield_now().await; }
    /// # });
    /// ```
    pub async fn get_or_refresh<F, Fut, E>(
        &self,
        key: K,
        options: &ComputeOptions,
        loader: F,
    ) -> Result<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let ttl = options.entry.ttl.or(self.inner.default_ttl);
        let (Some(age), Some(ttl), true) = (options.refresh_after, ttl, self.inner.enabled) else {
            return self.get_or_compute_with(key, options, loader).await;
        };
        let hash = self.hash(&key);
        let found = lock(self.shard(hash)).get_entry(hash, &key, || self.now_ticks(), V::clone);
        let Some((value, deadline)) = found else {
            return self.get_or_compute_with(key, options, loader).await;
        };
        let fresh_for = ttl.saturating_sub(age);
        let now = self.now_ticks();
        let stale = deadline != 0 && Duration::from_nanos(deadline.saturating_sub(now)) < fresh_for;
        if stale {
            self.spawn_refresh(key, options.clone(), loader);
        }
        Ok(value)
    }

    fn spawn_refresh<F, Fut, E>(&self, key: K, options: ComputeOptions, loader: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        // Without a runtime the value is served until it expires; with a flight for the key
        // running, that flight stores a fresh value.
        let Some((runtime, leader)) = self.inner.flights.begin_background(key.clone()) else {
            return;
        };
        let cache = self.clone();
        runtime.spawn(async move {
            let result = match loader().await {
                Ok(value) => {
                    cache.insert_opts(key, value.clone(), &options.entry);
                    Ok(value)
                }
                Err(e) => {
                    tracing::debug!("stale-while-revalidate refresh failed; keeping the old value");
                    Err(loader_error(e))
                }
            };
            leader.complete(&result);
        });
    }
}
