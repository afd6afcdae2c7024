//! `perf-cache`: a multi-level cache for async Rust services that sit in front of expensive
//! calls (LLM responses, database queries, remote lookups), many worker processes each with an
//! in-process L1 and a shared L2.
//!
//! - [`l1`]: the in-process cache. Sharded for many tokio tasks on many threads; bounded by
//!   bytes (default weigher [`MemorySize`](l1::MemorySize): the allocations a key and value
//!   occupy plus the measured per-entry overhead, or your own [`Weigher`](l1::Weigher)) and
//!   optionally by entries; per-entry TTL on perf-core's clock;
//!   LRU, LFU, FIFO or the adaptive scan-resistant W-TinyLFU default; tags with O(tagged
//!   entries) invalidation; exact statistics and a sampled latency histogram; single-flight
//!   `get_or_compute` with negative caching and stale-while-revalidate; snapshot/restore.
//! - [`single_flight`]: the coalescing protocol on its own, for any tier.
//! - [`tiered`], [`tier`] and, behind the `redis` / `postgres` features, the Redis L2, the
//!   PostgreSQL tier and cross-process coherency. The tiered manager has single-flight
//!   `get_or_compute` (one loader per fleet with the Redis lock) and stale-while-revalidate
//!   `get_or_refresh` on every level.
//! - [`warming`]: prioritized warming tasks with bounded concurrency into L1 or the tiered
//!   manager; [`analytics`]: windowed hit rates, bounded-memory hot and cold keys, JSON and
//!   Prometheus export.
//!
//! What it is not: not a distributed cache by itself (L2 is your Redis or PostgreSQL), not a
//! store of record (every level may drop entries at any time), and L1 is not a general
//! concurrent map: it evicts.
//!
//! ```
//! use std::time::Duration;
//! use perf_cache::l1::{Cache, ComputeOptions};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let cache: Cache<String, String> = Cache::builder()
//!     .max_bytes(64 << 20)
//!     .default_ttl(Duration::from_secs(600))
//!     .build();
//! let opts = ComputeOptions::new().tag("summaries");
//! // However many tasks ask at once, the loader runs once; its result is cached.
//! let summary = cache
//!     .get_or_compute_with("doc:17".to_owned(), &opts, || async {
//!         Ok::<_, std::io::Error>("a short summary".to_owned())
//!     })
//!     .await?;
//! assert_eq!(summary, "a short summary");
//! assert_eq!(cache.stats().misses, 1);
//! assert_eq!(cache.invalidate_tag("summaries"), 1);
//! # Ok::<(), perf_cache::Error>(())
//! # }).unwrap();
//! ```

pub mod analytics;
#[cfg(feature = "redis")]
pub mod coherency;
pub mod error;
pub mod l1;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
pub mod single_flight;
pub mod tier;
pub mod tiered;
pub mod warming;

pub use error::{Error, Result};

// The `#[cached]` macro's expansion names `::perf_cache`, also inside this crate's own tests.
#[cfg(feature = "macros")]
extern crate self as perf_cache;

#[cfg(feature = "macros")]
#[doc(hidden)]
#[path = "macros.rs"]
pub mod __private;

/// Caches an `async fn`'s results in a [`TieredCache`](tiered::TieredCache), keyed by the
/// function's name and arguments (perf-core's stable key hashing, the same key as
/// [`TieredCache::cached_call`](tiered::TieredCache::cached_call) with the arguments as a
/// tuple). Feature `macros`.
///
/// `#[perf_cache::cached(cache = EXPR, ttl = DURATION, name = "ns", skip(param, ...))]`:
/// - `cache` (required): a `TieredCache<T>`, or anything that dereferences to one (a `static`
///   `LazyLock`, an `Arc`, a `&TieredCache<T>` parameter, which is then left out of the key);
/// - `ttl`: a `std::time::Duration` for every level (default: each level's own);
/// - `name`: the key namespace (default: `module_path!()::function_name`, so two functions
///   of the same name in different modules never share entries);
/// - `skip(...)`: parameters left out of the key (clients, handles).
///
/// The function must be an `async fn` (not a method with `self`) with plain parameter names,
/// each hashed argument `Serialize`, returning `Result<T, E>` with `E: From<perf_cache::Error>`.
/// Concurrent calls with equal arguments run the body once; the caller that ran it gets its
/// own error back unchanged; errors are not cached. Anything else is a compile error that
/// points at the offending part.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use perf_cache::l1::Cache;
/// use perf_cache::tiered::TieredCache;
///
/// static CALLS: AtomicUsize = AtomicUsize::new(0);
///
/// /// The cache is a parameter here: it is not part of the key.
/// #[perf_cache::cached(cache = cache, ttl = Duration::from_secs(300))]
/// async fn summary(cache: &TieredCache<String>, doc: u64, lang: &str) -> Result<String, perf_cache::Error> {
///     CALLS.fetch_add(1, Ordering::SeqCst);
///     Ok(format!("summary of {doc} in {lang}"))
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache: TieredCache<String> = TieredCache::builder().l1(Cache::new(1 << 20)).build();
/// assert_eq!(summary(&cache, 7, "en").await?, "summary of 7 in en");
/// assert_eq!(summary(&cache, 7, "en").await?, "summary of 7 in en");
/// assert_eq!(summary(&cache, 7, "fr").await?, "summary of 7 in fr");
/// assert_eq!(CALLS.load(Ordering::SeqCst), 2);
/// # Ok::<(), perf_cache::Error>(())
/// # }).unwrap();
/// ```
#[cfg(feature = "macros")]
pub use perf_cache_macros::cached;
