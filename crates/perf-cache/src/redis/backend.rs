//! [`RedisBackend`]: what the fleet lock and the coherency layer need of a Redis deployment,
//! implemented by [`RedisTier`] (one server) and `RedisClusterTier` (feature `redis-cluster`),
//! and the [`Connection`] to either kind that they share.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue};

use super::config::RedisTierConfig;
use super::lock::{self, LockGuard};
use super::tier::{bounded, RedisTier};
use crate::error::Result;
use crate::tier::TierStats;

/// A Redis deployment that can hold [fleet locks](crate::tiered::FleetLockConfig) and carry
/// [coherency](crate::coherency) messages: [`RedisTier`] (one server) or `RedisClusterTier`
/// (feature `redis-cluster`), or an `Arc`, a `Box` or a reference of any backend (so
/// `Arc<dyn RedisBackend>` too). Sealed: perf-cache implements it for its own tiers only.
///
/// A lock is one key (`{prefix}:lock:{name}`, one slot on a cluster), taken with
/// `SET NX PX` and released by a Lua compare-and-delete of its token, so it works the same on
/// both deployment kinds.
///
/// ```no_run
/// # async fn demo() -> perf_cache::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use perf_cache::redis::{RedisBackend, RedisTier, RedisTierConfig};
///
/// // Either kind of tier behind one type.
/// let backend: Arc<dyn RedisBackend> =
///     Arc::new(RedisTier::new(RedisTierConfig::new("redis://127.0.0.1:6379"))?);
/// if let Some(guard) = backend.try_lock(b"nightly-report", Duration::from_secs(30)).await? {
///     // ... only this process of the fleet runs the job ...
///     guard.release().await?;
/// }
/// assert_eq!(backend.config().prefix, "perfkit");
/// # Ok(()) }
/// ```
///
/// The forms that are backends (this compiles; it only builds values):
///
/// ```
/// use std::sync::Arc;
/// use perf_cache::coherency::{Coherency, CoherencyConfig};
/// use perf_cache::redis::{RedisBackend, RedisTier};
/// use perf_cache::tiered::TieredCache;
///
/// fn is_backend<B: RedisBackend + ?Sized>(_: &B) {}
///
/// fn forms(tier: RedisTier, cache: &TieredCache<String>) -> perf_cache::Result<()> {
///     let by_ref: &RedisTier = &tier;
///     is_backend(&tier);
///     is_backend(&by_ref); // &&RedisTier
///     let boxed: Box<RedisTier> = Box::new(tier);
///     is_backend(&boxed);
///     let shared: Arc<dyn RedisBackend> = Arc::<RedisTier>::from(boxed);
///     is_backend(&shared);
///     is_backend(&*shared); // dyn RedisBackend
///     // Coherency::attach takes a reference to any of them.
///     let _c = Coherency::attach(cache, &shared, CoherencyConfig::default())?;
///     Ok(())
/// }
/// ```
#[async_trait]
pub trait RedisBackend: sealed::Sealed + Send + Sync + std::fmt::Debug {
    /// The configuration in use (URL, prefix, timeout, TLS files).
    ///
    /// ```
    /// use perf_cache::redis::{RedisBackend, RedisTier, RedisTierConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Making a tier does not connect.
    /// let tier = RedisTier::new(RedisTierConfig::new("redis://127.0.0.1:6379").prefix("app"))?;
    /// let backend: &dyn RedisBackend = &tier;
    /// assert_eq!(backend.config().prefix, "app");
    /// # Ok::<_, perf_cache::Error>(()) }).unwrap();
    /// ```
    fn config(&self) -> &RedisTierConfig;

    /// Tries once to take the fleet-wide lock `name` (stored at `{prefix}:lock:{name}`) for
    /// `ttl`; `None` when another holder has it.
    ///
    /// ```no_run
    /// # async fn demo(backend: std::sync::Arc<dyn perf_cache::redis::RedisBackend>) -> perf_cache::Result<()> {
    /// use std::time::Duration;
    /// use perf_cache::redis::RedisBackend;
    ///
    /// match backend.try_lock(b"rebuild-index", Duration::from_secs(60)).await? {
    ///     Some(guard) => {
    ///         // ... this process rebuilds ...
    ///         guard.release().await?;
    ///     }
    ///     None => { /* another process of the fleet is at it */ }
    /// }
    /// # Ok(()) }
    /// ```
    async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockGuard>> {
        lock::try_lock(self, name, ttl).await
    }

    /// Whether the lock `name` is currently held by anyone.
    ///
    /// ```no_run
    /// # async fn demo(backend: &dyn perf_cache::redis::RedisBackend) -> perf_cache::Result<()> {
    /// use std::time::Duration;
    /// use perf_cache::redis::RedisBackend;
    ///
    /// let guard = backend.try_lock(b"job", Duration::from_secs(10)).await?;
    /// assert_eq!(backend.is_locked(b"job").await?, true);
    /// if let Some(guard) = guard {
    ///     guard.release().await?;
    ///     assert!(!backend.is_locked(b"job").await?);
    /// }
    /// # Ok(()) }
    /// ```
    async fn is_locked(&self, name: &[u8]) -> Result<bool> {
        lock::is_locked(self, name).await
    }
}

pub(crate) mod sealed {
    use super::Connection;
    use crate::error::Result;
    use crate::tier::TierStats;

    /// The crate-internal side of [`RedisBackend`](super::RedisBackend).
    pub trait Sealed {
        /// A connection for single-key commands (lock, `PUBLISH`), cheap to clone.
        fn connection(&self) -> Connection;
        /// `{prefix}:lock:{name}`.
        fn lock_key(&self, name: &[u8]) -> Vec<u8>;
        /// The tier's statistics, where lock calls are counted.
        fn tier_stats(&self) -> &TierStats;
        /// The URLs of the nodes a subscriber may connect to, in order of preference: the
        /// server itself, or a cluster's seed nodes.
        fn node_urls(&self) -> Result<Vec<String>>;
    }
}

/// A connection to one server or to a cluster, cheap to clone; a cluster's is set up by its
/// first command and then kept.
#[derive(Clone)]
pub enum Connection {
    /// One server, through the tier's self-reconnecting connection manager.
    Single(ConnectionManager),
    /// A cluster, routed by key.
    #[cfg(feature = "redis-cluster")]
    Cluster(Arc<super::cluster::LazyCluster>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("Connection::Single"),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(_) => f.write_str("Connection::Cluster"),
        }
    }
}

impl Connection {
    /// Runs `cmd`, bounded by `timeout` (a cluster's first connection included).
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        timeout: Duration,
        op: &'static str,
        cmd: &Cmd,
    ) -> Result<T> {
        match self {
            Self::Single(conn) => {
                let mut conn = conn.clone();
                bounded(timeout, op, cmd.query_async(&mut conn)).await
            }
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(cluster) => {
                let mut conn = cluster.connect(timeout).await?;
                bounded(timeout, op, cmd.query_async(&mut conn)).await
            }
        }
    }
}

impl RedisBackend for RedisTier {
    fn config(&self) -> &RedisTierConfig {
        RedisTier::config(self)
    }
}

impl sealed::Sealed for RedisTier {
    fn connection(&self) -> Connection {
        Connection::Single(RedisTier::connection(self))
    }

    fn lock_key(&self, name: &[u8]) -> Vec<u8> {
        RedisTier::lock_key(self, name)
    }

    fn tier_stats(&self) -> &TierStats {
        crate::tier::RemoteTier::stats(self)
    }

    fn node_urls(&self) -> Result<Vec<String>> {
        Ok(vec![self.config().url.clone()])
    }
}

/// `Arc`, `Box` and `&` of a backend are backends too (so `&Arc<RedisTier>`, `&&RedisTier`
/// and `Arc<dyn RedisBackend>` are accepted wherever a backend is).
macro_rules! forward_backend {
    ($($pointer:ty),+) => {$(
        #[async_trait]
        impl<T: RedisBackend + ?Sized> RedisBackend for $pointer {
            fn config(&self) -> &RedisTierConfig {
                (**self).config()
            }

            async fn try_lock(&self, name: &[u8], ttl: Duration) -> Result<Option<LockGuard>> {
                (**self).try_lock(name, ttl).await
            }

            async fn is_locked(&self, name: &[u8]) -> Result<bool> {
                (**self).is_locked(name).await
            }
        }

        impl<T: RedisBackend + ?Sized> sealed::Sealed for $pointer {
            fn connection(&self) -> Connection {
                (**self).connection()
            }

            fn lock_key(&self, name: &[u8]) -> Vec<u8> {
                (**self).lock_key(name)
            }

            fn tier_stats(&self) -> &TierStats {
                (**self).tier_stats()
            }

            fn node_urls(&self) -> Result<Vec<String>> {
                (**self).node_urls()
            }
        }
    )+};
}

forward_backend!(Arc<T>, Box<T>, &T);
