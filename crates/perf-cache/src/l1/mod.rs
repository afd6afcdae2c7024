//! The in-process L1 cache: sharded, bounded by bytes (and optionally entries), per-entry TTL,
//! tags, selectable policies and exact statistics.
//!
//! # Costs
//!
//! - **Memory per entry** beyond key and value, measured by the `cache_memory` benchmark
//!   (counting global allocator, 1M `u64 -> u64` entries, 8 shards): about 38 bytes — a
//!   32-byte slot holding key and value inline plus two `u32` links, weight and policy bits
//!   (16 bytes of overhead; a one-byte niche keeps `Option` of the slot at 32 bytes), up to
//!   25 % of spare slab capacity, 5–11 bytes of hash index, 4 bytes of frequency sketch, about
//!   2 bytes of ghost history and, with [`Policy::TinyLfu`], about 5 bytes of miniature
//!   simulations. Values are not boxed: a large value should be stored as an `Arc<T>` (an
//!   allocation of its own, and a hit is then a reference-count increment). Deadlines live in
//!   a column of their own that exists only once an entry has a TTL (8 bytes per slot then).
//!   Peers measured the same way: quick_cache 36 B, lru 52 B, moka 226 B.
//! - **The byte bound is honest**: the default weigher ([`MemorySize`]) charges what an entry
//!   really occupies (its allocations, rebuilt from a serde walk and rounded as malloc rounds
//!   them, the slot, the bookkeeping: [`entry_overhead`]), so resident memory stays within a
//!   few percent of the budget (the `l1_memory` tests measure the RSS of a child process
//!   filled far beyond a 128 MiB budget with byte strings, and with structured rows). What
//!   serde cannot show, spare capacity above all, is listed on [`MemorySize`].
//! - **Gets** take one shard mutex (no global lock) and clone the value under it (no
//!   allocation for plain values and `Arc`s; a `String` value is copied); one get in
//!   [`LATENCY_SAMPLE_EVERY`] is timed into the latency histogram. A TinyLFU hit in the
//!   window or the protected queue sets a reference bit instead of relinking the entry.
//! - **An entry heavier than one shard's share** borrows budget from the other shards (one
//!   lock at a time; the lenders evict), so anything up to the whole budget is cached.
//! - **Expired entries** are never returned; they are removed when read, by a sweeping hand
//!   that checks two slots per insert, or by [`Cache::purge_expired`]. No operation scans the
//!   cache.
//!
//! ```
//! use std::time::Duration;
//! use perf_cache::l1::{Cache, EntryOptions, Policy};
//!
//! let cache: Cache<Vec<u8>, String> = Cache::builder()
//!     .max_bytes(64 << 20)
//!     .policy(Policy::TinyLfu)
//!     .default_ttl(Duration::from_secs(300))
//!     .build();
//! cache.insert_with(b"user:7".to_vec(), "Ada".into(), EntryOptions::new().tag("user"));
//! assert_eq!(cache.get(b"user:7".as_slice()).as_deref(), Some("Ada"));
//! assert_eq!(cache.invalidate_tag("user"), 1);
//! assert!(cache.get(b"user:7".as_slice()).is_none());
//! ```

mod builder;
mod compute;
mod ghost;
mod hasher;
mod memory_size;
mod policy;
mod shard;
mod sketch;
mod snapshot;
mod stats;
mod weigher;

use std::borrow::Borrow;
use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use perf_core::clock::SharedClock;
use perf_core::metrics::{HistogramSnapshot, LatencyHistogram, MetricsSnapshot};

pub use builder::{CacheBuilder, L1Config};
pub use compute::ComputeOptions;
pub use memory_size::MemorySize;
pub use policy::Policy;
pub use snapshot::Restored;
pub use stats::CacheStats;
pub use weigher::{entry_overhead, EncodedSize, Unit, Weigher, ENTRY_OVERHEAD};

use crate::single_flight::SingleFlight;
use shard::{Hasher, Inserted, Shard};

/// One in how many gets is timed into the latency histogram. Timing every get would cost two
/// clock reads (~40 ns) on an operation that takes ~50 ns; sampling keeps the hot path cheap
/// while the histogram still sees thousands of gets per second under load.
pub const LATENCY_SAMPLE_EVERY: u32 = 64;

/// Per-insert options: a TTL overriding the cache's default, and tags.
///
/// ```
/// use std::time::Duration;
/// use perf_cache::l1::EntryOptions;
///
/// let opts = EntryOptions::new().ttl(Duration::from_secs(60)).tag("tenant:4").tags(["report"]);
/// assert_eq!(opts.tag_list().len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct EntryOptions {
    ttl: Option<Duration>,
    no_ttl: bool,
    tags: Vec<Arc<str>>,
}

impl EntryOptions {
    /// No TTL override, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// This entry expires `ttl` after the insert.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self.no_ttl = false;
        self
    }

    /// This entry never expires, whatever the cache's default TTL.
    pub fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self.no_ttl = true;
        self
    }

    /// Adds a tag, for [`Cache::invalidate_tag`].
    pub fn tag(mut self, tag: impl Into<Arc<str>>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds several tags.
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// The tags set so far.
    pub fn tag_list(&self) -> &[Arc<str>] {
        &self.tags
    }

    /// The TTL override, if any.
    pub fn ttl_override(&self) -> Option<Duration> {
        self.ttl
    }
}

/// A shard behind its own cache line, so two threads locking neighbouring shards do not
/// contend on the same line.
#[repr(align(128))]
struct Padded<T>(T);

/// The shards, each behind its own mutex and cache line.
type Shards<K, V> = Box<[Padded<Mutex<Shard<K, V>>>]>;

pub(crate) struct Inner<K, V> {
    shards: Shards<K, V>,
    shard_bits: u32,
    hasher: Hasher,
    weigher: Box<dyn Weigher<K, V>>,
    clock: SharedClock,
    base: Instant,
    default_ttl: Option<Duration>,
    enabled: bool,
    policy: Policy,
    max_bytes: u64,
    max_entries: Option<u64>,
    /// Each shard's nominal budget (`max_bytes / shards`).
    share: u64,
    /// Budget no shard holds: given up by shards that lent theirs to a heavy entry, claimed
    /// back by shards below their share. The shards' budgets plus this never exceed
    /// `max_bytes`.
    pool: AtomicU64,
    latency: LatencyHistogram,
    pub(crate) flights: SingleFlight<K, V>,
    pub(crate) negative: Mutex<NegativeCache<K>>,
}

/// Recent loader failures kept for the negative-cache TTL (bounded; see [`ComputeOptions`]).
pub(crate) type NegativeCache<K> = lru::LruCache<K, (u64, crate::Error)>;

/// A concurrent, byte-bounded in-process cache. Cheap to clone (clones share the entries).
///
/// Keys are any `K: Hash + Eq` (use `Vec<u8>` or `Box<[u8]>` for "any byte string is a key";
/// lookups take any borrowed form, e.g. `&[u8]` or `&str`). Values are stored inline in the
/// entry, and a hit returns a clone (`V: Clone`), as with moka and quick_cache. For values that
/// are expensive to clone, store an `Arc<T>`: a hit then costs a reference-count increment,
/// never a deep copy.
///
/// ```
/// use std::sync::Arc;
/// use perf_cache::l1::Cache;
///
/// // A large value shared, not copied, by every hit.
/// let cache: Cache<String, Arc<Vec<u8>>> = Cache::new(16 << 20);
/// cache.insert("report".to_owned(), Arc::new(vec![0u8; 1 << 20]));
/// let a = cache.get("report").unwrap();
/// let b = cache.get("report").unwrap();
/// assert!(Arc::ptr_eq(&a, &b));
/// ```
///
/// The cache is split into shards (a power of two), each a mutex around its share of the
/// budget, its policy queues and its hash index; a key's shard comes from a fast (foldhash)
/// hash. The shards' budgets never sum to more than the configured budget, so the byte bound
/// holds at every instant. An entry heavier than one shard's share (but not than the whole
/// budget) is still stored: its shard borrows budget from the others, which evict what no
/// longer fits, and gives it back once the entry leaves. Only an entry heavier than the whole
/// budget is rejected (counted in [`CacheStats::rejections`]): a value larger than L1's
/// budget skips L1.
pub struct Cache<K, V> {
    pub(crate) inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("policy", &self.inner.policy)
            .field("max_bytes", &self.inner.max_bytes)
            .field("max_entries", &self.inner.max_entries)
            .field("shards", &self.inner.shards.len())
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

thread_local! {
    static GET_COUNT: Cell<u32> = const { Cell::new(0) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Shard state is kept consistent at every await-free step; a panic in a user's weigher or
    // `Hash` impl cannot leave it half-updated, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + serde::Serialize + Send + Sync + 'static,
    V: serde::Serialize + Send + Sync + 'static,
{
    /// A cache of `max_bytes` with the default policy and weigher ([`MemorySize`]).
    pub fn new(max_bytes: u64) -> Self {
        Self::builder().max_bytes(max_bytes).build()
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A builder with production defaults: 256 MiB, [`Policy::TinyLfu`], no TTL, the
    /// [`MemorySize`] weigher, the system clock.
    pub fn builder() -> CacheBuilder<K, V, MemorySize> {
        CacheBuilder::new()
    }

    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        if self.inner.shard_bits == 0 {
            0
        } else {
            // Mix before taking the top bits: the index uses the low bits and the control
            // bytes the top seven, so the shard must not be decided by either alone.
            let mixed = (hash ^ hash.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (mixed >> (64 - self.inner.shard_bits)) as usize
        }
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard<K, V>> {
        &self.inner.shards[self.shard_index(hash)].0
    }

    /// Takes up to `want` from the unassigned budget; returns how much it got.
    fn claim(&self, want: u64) -> u64 {
        let previous = self
            .inner
            .pool
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p - p.min(want))
            })
            .unwrap_or_else(|p| p);
        previous.min(want)
    }

    /// Under `shard`'s lock: gives back budget above its share that its entries do not use,
    /// or claims budget up to its share.
    fn rebalance(&self, shard: &mut Shard<K, V>) {
        let share = self.inner.share;
        if shard.max_weight > share {
            let keep = share.max(shard.weight());
            if keep < shard.max_weight {
                let surplus = shard.max_weight - keep;
                shard.set_budget(keep);
                self.inner.pool.fetch_add(surplus, Ordering::AcqRel);
            }
        } else if shard.max_weight < share && self.inner.pool.load(Ordering::Acquire) > 0 {
            let got = self.claim(share - shard.max_weight);
            shard.set_budget(shard.max_weight + got);
        }
    }

    /// Makes shard `i`'s budget at least `weight` by taking the unassigned budget and then
    /// budget from the other shards (each evicts what no longer fits). Locks one shard at a
    /// time, and lowers a lender's budget before the borrower raises its own, so the sum of
    /// the shards' budgets never exceeds the cache's.
    fn make_room(&self, i: usize, weight: u64) {
        let n = self.inner.shards.len();
        let mut needed = {
            let mut own = lock(&self.inner.shards[i].0);
            let needed = weight.saturating_sub(own.max_weight);
            let got = self.claim(needed);
            let max = own.max_weight;
            own.set_budget(max + got);
            needed - got
        };
        for j in (1..n).map(|d| (i + d) % n) {
            if needed == 0 {
                break;
            }
            {
                let mut lender = lock(&self.inner.shards[j].0);
                let lent = needed.min(lender.max_weight);
                let max = lender.max_weight;
                lender.set_budget(max - lent);
                self.inner.pool.fetch_add(lent, Ordering::AcqRel);
            }
            let mut own = lock(&self.inner.shards[i].0);
            let got = self.claim(needed);
            let max = own.max_weight;
            own.set_budget(max + got);
            needed -= got.min(needed);
        }
    }

    /// Clock ticks: nanoseconds since the cache was built, plus one (0 means "no deadline").
    #[inline]
    pub(crate) fn now_ticks(&self) -> u64 {
        let d = self
            .inner
            .clock
            .now()
            .saturating_duration_since(self.inner.base);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    pub(crate) fn deadline_after(&self, ttl: Duration) -> u64 {
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        self.now_ticks().saturating_add(ttl).max(1)
    }

    /// The value under `key`, if present and not expired. Counts a hit or a miss and updates
    /// the policy's recency/frequency state.
    ///
    /// ```
    /// let cache: perf_cache::l1::Cache<String, u32> = perf_cache::l1::Cache::new(1 << 20);
    /// cache.insert("answer".to_owned(), 42);
    /// assert_eq!(cache.get("answer"), Some(42));
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        V: Clone,
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let sampled = GET_COUNT.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n % LATENCY_SAMPLE_EVERY == 0
        });
        let start = sampled.then(Instant::now);
        let hash = self.hash(key);
        let found = if self.inner.enabled {
            lock(self.shard(hash))
                .get_entry(hash, key, || self.now_ticks(), V::clone)
                .map(|(v, _)| v)
        } else {
            lock(self.shard(hash)).stats.misses.inc();
            None
        };
        if let Some(start) = start {
            self.inner.latency.record(start.elapsed());
        }
        found
    }

    /// The value under `key` (a clone) without counting a hit or miss or touching the policy.
    ///
    /// ```
    /// let cache: perf_cache::l1::Cache<String, String> = perf_cache::l1::Cache::new(1 << 20);
    /// cache.insert("k".to_owned(), "v".to_owned());
    /// assert_eq!(cache.peek("k").as_deref(), Some("v"));
    /// assert_eq!(cache.stats().hits, 0);
    /// ```
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        V: Clone,
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.now_ticks();
        lock(self.shard(hash)).peek(hash, key, now).cloned()
    }

    /// Whether `key` has a live entry (no statistics, no policy update).
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.now_ticks();
        lock(self.shard(hash)).peek(hash, key, now).is_some()
    }

    /// The time `key`'s entry has left to live: `Some(None)` for an entry without TTL, `None`
    /// when absent or expired.
    pub fn time_to_live<Q>(&self, key: &Q) -> Option<Option<Duration>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.now_ticks();
        let deadline = lock(self.shard(hash)).deadline(hash, key, now)?;
        Some((deadline != 0).then(|| Duration::from_nanos(deadline - now)))
    }

    /// Stores `value` under `key` with the default TTL and no tags. Returns `false` when the
    /// entry was not stored (heavier than the cache's budget or than 4 GiB, or the cache is
    /// disabled); a refused insert also removes the key's older value, so no stale value
    /// outlives a write.
    pub fn insert(&self, key: K, value: V) -> bool {
        self.insert_opts(key, value, &EntryOptions::default())
    }

    /// Stores `value` with per-entry options (TTL, tags).
    pub fn insert_with(&self, key: K, value: V, options: EntryOptions) -> bool {
        self.insert_opts(key, value, &options)
    }

    /// [`insert_with`](Self::insert_with) with borrowed options, for callers that store many
    /// entries with the same options.
    pub(crate) fn insert_opts(&self, key: K, value: V, options: &EntryOptions) -> bool {
        if !self.inner.enabled {
            return false;
        }
        let ttl = if options.no_ttl {
            None
        } else {
            options.ttl.or(self.inner.default_ttl)
        };
        let expires = ttl.map_or(0, |t| self.deadline_after(t));
        self.insert_raw(key, value, expires, &options.tags)
    }

    pub(crate) fn insert_raw(&self, key: K, value: V, expires: u64, tags: &[Arc<str>]) -> bool {
        let weight = self.inner.weigher.weigh(&key, &value);
        let hash = self.hash(&key);
        let tags = (!tags.is_empty()).then(|| tags.to_vec().into_boxed_slice());
        let i = self.shard_index(hash);
        let multi = self.inner.shards.len() > 1;
        if multi && weight > self.inner.share && weight <= self.inner.max_bytes {
            self.make_room(i, weight);
        }
        let mut shard = lock(&self.inner.shards[i].0);
        let outcome = shard.insert(hash, key, value, weight, expires, tags, || self.now_ticks());
        if multi {
            self.rebalance(&mut shard);
        }
        outcome != Inserted::Rejected
    }

    /// Removes `key`, returning its value if it was present.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut shard = lock(self.shard(hash));
        let removed = shard.remove(hash, key);
        if self.inner.shards.len() > 1 {
            self.rebalance(&mut shard);
        }
        removed
    }

    /// Removes every entry tagged `tag`; returns how many. Costs O(shards + entries with the
    /// tag): each shard keeps a tag → entries index, cleaned whenever an entry leaves.
    pub fn invalidate_tag(&self, tag: &str) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| lock(&s.0).invalidate_tag(tag))
            .sum()
    }

    /// Removes every entry.
    pub fn clear(&self) {
        for s in self.inner.shards.iter() {
            lock(&s.0).clear();
        }
    }

    /// Removes every expired entry now (O(entries)). Not needed for correctness — expired
    /// entries are never returned and are reclaimed on access and by a sweeping hand that
    /// checks two slots per insert — but useful before a snapshot or a memory report.
    pub fn purge_expired(&self) -> usize {
        let now = self.now_ticks();
        self.inner
            .shards
            .iter()
            .map(|s| lock(&s.0).purge_expired(now))
            .sum()
    }

    /// Number of entries (including expired ones not yet reclaimed).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(&s.0).len()).sum()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight of the entries (bytes with the default weigher); never above
    /// [`max_bytes`](Self::max_bytes).
    pub fn weighted_size(&self) -> u64 {
        let sum: u64 = self.inner.shards.iter().map(|s| lock(&s.0).weight()).sum();
        // One shard at a time, as in `stats`.
        sum.min(self.inner.max_bytes)
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// The entry bound, if any.
    pub fn max_entries(&self) -> Option<u64> {
        self.inner.max_entries
    }

    /// The replacement policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Whether caching is enabled (`false`: nothing is stored, every get misses).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The cache's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Exact statistics, summed over shards (one shard lock at a time, so each shard's
    /// figures are consistent; `bytes` never exceeds the budget).
    pub fn stats(&self) -> CacheStats {
        let mut total = CacheStats::default();
        for s in self.inner.shards.iter() {
            total.add(&lock(&s.0).stats);
        }
        // The shards are read one after the other: while a heavy entry borrows budget, a
        // lender read before and a borrower read after the loan could add up to more than
        // the budget, which the cache itself never holds.
        total.bytes = total.bytes.min(self.inner.max_bytes);
        total
    }

    /// The sampled get-latency histogram (nanoseconds; one get in [`LATENCY_SAMPLE_EVERY`]).
    pub fn latency(&self) -> HistogramSnapshot {
        self.inner.latency.snapshot()
    }

    /// Statistics and latency as a perf-core metrics snapshot named `<prefix>_…`.
    ///
    /// ```
    /// let cache: perf_cache::l1::Cache<String, String> = perf_cache::l1::Cache::new(1 << 20);
    /// cache.get("x");
    /// let text = cache.metrics("l1").to_prometheus("app");
    /// assert!(text.contains("l1_misses_total"));
    /// ```
    pub fn metrics(&self, prefix: &str) -> MetricsSnapshot {
        self.stats().to_metrics(prefix, &self.latency())
    }

    /// TinyLFU's current window size per shard (diagnostics; empty for other policies).
    pub fn window_sizes(&self) -> Vec<u64> {
        self.inner
            .shards
            .iter()
            .filter_map(|s| lock(&s.0).window_max())
            .collect()
    }

    /// TinyLFU's frequency estimate for `key` (diagnostics; 0 for other policies).
    pub fn frequency<Q>(&self, key: &Q) -> u8
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        lock(self.shard(hash)).frequency(hash)
    }
}
