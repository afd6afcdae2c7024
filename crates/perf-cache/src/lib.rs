//! `perf-cache`: a multi-level cache for async Rust services that sit in front of expensive
//! calls (LLM responses, database queries, remote lookups), many worker processes each with an
//! in-process L1 and a shared L2.
//!
//! - [`l1`]: the in-process cache. Sharded for many tokio tasks on many threads; bounded by
//!   bytes (default weigher: postcard-encoded size plus the measured per-entry overhead, or your
//!   own [`Weigher`](l1::Weigher)) and optionally by entries; per-entry TTL on perf-core's clock;
//!   LRU, LFU, FIFO or the adaptive scan-resistant W-TinyLFU default; tags with O(tagged
//!   entries) invalidation; exact statistics and a sampled latency histogram; single-flight
//!   `get_or_compute` with negative caching and stale-while-revalidate; snapshot/restore.
//! - [`single_flight`]: the coalescing protocol on its own, for any tier.
//! - [`tiered`], [`tier`] and, behind the `redis` / `postgres` features, the Redis L2, the
//!   PostgreSQL tier and cross-process coherency.
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
//! assert_eq!(*summary, "a short summary");
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
