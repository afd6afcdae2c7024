//! In-process cache analytics: hit rate over sliding windows, hot keys by a bounded-memory
//! Space-Saving top-k, cold keys among the tracked set, and JSON / Prometheus export.
//!
//! # What is recorded
//!
//! Only keys (byte strings) and whether the access was a hit or a miss — never cache values.
//! Keys themselves may be sensitive (user ids, e-mail addresses, prompt hashes): with
//! [`AnalyticsConfig::hash_keys`] the sketch stores and reports the blake3 hash of each key
//! (perf-core's [`bytes_key`](perf_core::keys::bytes_key) under the namespace `analytics`) and
//! the raw key is never retained.
//!
//! # Definitions
//!
//! - **Sliding windows.** Each window (default 1 min, 5 min, 1 h) is a ring of
//!   [`AnalyticsConfig::buckets_per_window`] buckets of `window / buckets` each, driven by the
//!   configured [`SharedClock`]. A window's figures cover the current (partial) bucket and the
//!   `buckets - 1` before it, so they span between `window - bucket` and `window` of time.
//!   Recording is O(1) per window; a bucket left behind by the clock is reset when it is reused.
//! - **Hot keys.** The Space-Saving algorithm (Metwally et al., 2005) with a fixed number of
//!   counters ([`AnalyticsConfig::capacity`]). Each reported key carries `count` (an upper
//!   bound of its true number of accesses) and `error` (the largest possible over-count), so
//!   the true count lies in `[count - error, count]`. Every key accessed more than
//!   `N / capacity` times out of `N` accesses is guaranteed to be tracked. Memory never grows
//!   past `capacity` keys, whatever the number of distinct keys.
//! - **Cold keys.** Keys *among the tracked set* (the Space-Saving counters) whose last access is
//!   at least [`AnalyticsConfig::cold_after`] ago, oldest first. These are keys that were once
//!   frequent enough to hold a counter and have gone quiet — candidates to evict or stop
//!   warming. Keys never tracked are not reported: that would take a per-key map of every key.
//!
//! # Cost and thread safety
//!
//! [`CacheAnalytics`] is `Send + Sync` and cheap to share behind an `Arc`. Lifetime totals are
//! lock-free counters; the windows and the sketch sit behind one `Mutex`, held for one hash
//! lookup and one heap sift (O(log capacity)) per record. Under heavy contention from many
//! threads, shard it (one `CacheAnalytics` per shard) or sample accesses. Measured in a release
//! build on a loaded 2-core machine, with 10,000 distinct keys cycling through 1,024 counters
//! (almost every record replaces a counter, the worst case): about 0.22 µs per record on one
//! thread, 0.68 µs with `hash_keys` (blake3), 0.19 µs of wall time per record with two threads.
//!
//! ```
//! use perf_cache::analytics::{AnalyticsConfig, CacheAnalytics};
//!
//! let analytics = CacheAnalytics::new(AnalyticsConfig::default());
//! analytics.record_hit(b"user:1");
//! analytics.record_hit(b"user:1");
//! analytics.record_miss(b"user:2");
//! let snap = analytics.snapshot();
//! assert_eq!((snap.total_hits, snap.total_misses), (2, 1));
//! assert_eq!(snap.hot_keys[0].key, "user:1");
//! let json = snap.to_json().unwrap();
//! assert!(json.contains("\"hot_keys\""));
//! assert!(snap.to_prometheus("app").contains("app_cache_hits_total 2"));
//! ```

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use perf_core::clock::{system_clock, SharedClock};
use perf_core::config::CacheConfig;
use perf_core::metrics::prometheus_name;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of a [`CacheAnalytics`].
///
/// ```
/// use std::time::Duration;
/// use perf_cache::analytics::AnalyticsConfig;
///
/// let config = AnalyticsConfig::default()
///     .windows(vec![Duration::from_secs(10), Duration::from_secs(60)])
///     .capacity(256)
///     .hash_keys(true);
/// assert_eq!(config.capacity, 256);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct AnalyticsConfig {
    /// `false` turns every `record_*` call into a no-op (the rollback switch).
    pub enabled: bool,
    /// Sliding windows to report, each at least one bucket long (default 1 min, 5 min, 1 h).
    pub windows: Vec<Duration>,
    /// Buckets per window (default 60): the window's time resolution is `window / buckets`.
    pub buckets_per_window: u32,
    /// Space-Saving counters, the most keys ever held in memory (default 1024).
    pub capacity: usize,
    /// How long a tracked key must go unaccessed to be reported cold (default 5 min).
    pub cold_after: Duration,
    /// Entries in each of the hot and cold key lists of a snapshot (default 20).
    pub report_limit: usize,
    /// Store and report blake3 hashes of keys instead of the raw keys (default `false`).
    pub hash_keys: bool,
    /// The clock driving the windows and last-access times (default: the system clock).
    pub clock: SharedClock,
}

impl fmt::Debug for AnalyticsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalyticsConfig")
            .field("enabled", &self.enabled)
            .field("windows", &self.windows)
            .field("buckets_per_window", &self.buckets_per_window)
            .field("capacity", &self.capacity)
            .field("cold_after", &self.cold_after)
            .field("report_limit", &self.report_limit)
            .field("hash_keys", &self.hash_keys)
            .finish_non_exhaustive()
    }
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            windows: vec![
                Duration::from_secs(60),
                Duration::from_secs(300),
                Duration::from_secs(3600),
            ],
            buckets_per_window: 60,
            capacity: 1024,
            cold_after: Duration::from_secs(300),
            report_limit: 20,
            hash_keys: false,
            clock: system_clock(),
        }
    }
}

impl AnalyticsConfig {
    /// Sets [`enabled`](Self::enabled).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
    /// Sets the sliding windows.
    pub fn windows(mut self, windows: Vec<Duration>) -> Self {
        self.windows = windows;
        self
    }
    /// Sets the buckets per window.
    pub fn buckets_per_window(mut self, buckets: u32) -> Self {
        self.buckets_per_window = buckets;
        self
    }
    /// Sets the number of Space-Saving counters.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
    /// Sets the idle time after which a tracked key is cold.
    pub fn cold_after(mut self, idle: Duration) -> Self {
        self.cold_after = idle;
        self
    }
    /// Sets the length of the hot and cold key lists.
    pub fn report_limit(mut self, limit: usize) -> Self {
        self.report_limit = limit;
        self
    }
    /// Report blake3 hashes of keys instead of raw keys.
    pub fn hash_keys(mut self, hash: bool) -> Self {
        self.hash_keys = hash;
        self
    }
    /// Sets the clock (tests use perf-core's `ManualClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The defaults with the `[cache]` section's rollback switch: analytics are off when
    /// caching is.
    ///
    /// ```
    /// use perf_cache::analytics::AnalyticsConfig;
    /// use perf_core::config::CacheConfig;
    ///
    /// let config = AnalyticsConfig::from_config(&CacheConfig::default());
    /// assert_eq!(config.enabled, CacheConfig::default().enabled);
    /// ```
    pub fn from_config(section: &CacheConfig) -> Self {
        Self::default().enabled(section.enabled)
    }

    fn validate(&self) -> Result<()> {
        if self.capacity == 0 {
            return Err(invalid("capacity", "must be at least 1"));
        }
        if self.buckets_per_window == 0 {
            return Err(invalid("buckets_per_window", "must be at least 1"));
        }
        for w in &self.windows {
            if (*w / self.buckets_per_window).is_zero() {
                return Err(invalid(
                    "windows",
                    format!("{w:?} is shorter than one nanosecond per bucket"),
                ));
            }
        }
        Ok(())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

/// One bucket of a window ring: the bucket's sequence number since start, and its counts.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    seq: u64,
    hits: u64,
    misses: u64,
}

/// A sliding window as a ring of buckets.
#[derive(Debug)]
struct Window {
    length: Duration,
    width_nanos: u64,
    ring: Vec<Bucket>,
}

impl Window {
    fn new(length: Duration, buckets: u32) -> Self {
        let width = (length / buckets).as_nanos().max(1);
        Self {
            length,
            width_nanos: u64::try_from(width).unwrap_or(u64::MAX),
            ring: vec![Bucket::default(); buckets as usize],
        }
    }

    fn record(&mut self, now_nanos: u64, hit: bool) {
        let seq = now_nanos / self.width_nanos;
        let slot = (seq % self.ring.len() as u64) as usize;
        let b = &mut self.ring[slot];
        if b.seq != seq {
            *b = Bucket {
                seq,
                hits: 0,
                misses: 0,
            };
        }
        if hit {
            b.hits += 1;
        } else {
            b.misses += 1;
        }
    }

    fn totals(&self, now_nanos: u64) -> (u64, u64) {
        let seq = now_nanos / self.width_nanos;
        let oldest = seq.saturating_sub(self.ring.len() as u64 - 1);
        self.ring
            .iter()
            .filter(|b| b.seq >= oldest && b.seq <= seq)
            .fold((0, 0), |(h, m), b| (h + b.hits, m + b.misses))
    }
}

/// One Space-Saving counter.
#[derive(Debug, Clone)]
struct Slot {
    key: Arc<[u8]>,
    count: u64,
    error: u64,
    hits: u64,
    last_access: u64,
}

/// Space-Saving: counters in stable slots, a binary min-heap of slot ids ordered by count, and
/// a key → slot index. Heap moves touch only the `pos` array, never the hash index, so a record
/// costs one hash lookup plus O(log capacity) array swaps.
#[derive(Debug)]
struct SpaceSaving {
    capacity: usize,
    slots: Vec<Slot>,
    /// Slot ids, a min-heap on `slots[id].count`.
    heap: Vec<u32>,
    /// `pos[id]`: where slot `id` sits in `heap`.
    pos: Vec<u32>,
    index: hashbrown::HashMap<Arc<[u8]>, u32>,
}

impl SpaceSaving {
    fn new(capacity: usize) -> Self {
        // Slot ids are u32; more counters than that would not fit in memory anyway.
        let capacity = capacity.min(u32::MAX as usize);
        let pre = capacity.min(1 << 16);
        Self {
            capacity,
            slots: Vec::with_capacity(pre),
            heap: Vec::with_capacity(pre),
            pos: Vec::with_capacity(pre),
            index: hashbrown::HashMap::with_capacity(pre),
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn record(&mut self, key: &[u8], hit: bool, now: u64) {
        if let Some(&id) = self.index.get(key) {
            let s = &mut self.slots[id as usize];
            s.count += 1;
            s.hits += u64::from(hit);
            s.last_access = now;
            self.sift_down(self.pos[id as usize] as usize);
            return;
        }
        // One allocation per newly tracked key, shared by the slot and the index.
        let key: Arc<[u8]> = Arc::from(key);
        let slot = |count: u64, error: u64| Slot {
            key: key.clone(),
            count,
            error,
            hits: u64::from(hit),
            last_access: now,
        };
        if self.slots.len() < self.capacity {
            let id = self.slots.len() as u32;
            self.slots.push(slot(1, 0));
            self.heap.push(id);
            self.pos.push(id);
            self.index.insert(key, id);
            self.sift_up(id as usize);
            return;
        }
        // Replace the minimum: the newcomer inherits its count as the over-count bound.
        let id = self.heap[0];
        let min = self.slots[id as usize].count;
        let old = std::mem::replace(&mut self.slots[id as usize], slot(min + 1, min));
        self.index.remove(&old.key);
        self.index.insert(key, id);
        self.sift_down(0);
    }

    fn count_at(&self, heap_pos: usize) -> u64 {
        self.slots[self.heap[heap_pos] as usize].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a] as usize] = a as u32;
        self.pos[self.heap[b] as usize] = b as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(parent) <= self.count_at(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * pos + 1, 2 * pos + 2);
            let mut least = pos;
            if l < n && self.count_at(l) < self.count_at(least) {
                least = l;
            }
            if r < n && self.count_at(r) < self.count_at(least) {
                least = r;
            }
            if least == pos {
                break;
            }
            self.swap(pos, least);
            pos = least;
        }
    }
}

#[derive(Debug)]
struct State {
    windows: Vec<Window>,
    sketch: SpaceSaving,
}

/// Hit-rate windows, hot keys and cold keys of one cache; see the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use perf_cache::analytics::{AnalyticsConfig, CacheAnalytics};
///
/// let analytics = Arc::new(CacheAnalytics::try_new(AnalyticsConfig::default().capacity(64))?);
/// analytics.record(b"k", true);
/// assert_eq!(analytics.snapshot().windows[0].hits, 1);
/// # Ok::<(), perf_cache::Error>(())
/// ```
pub struct CacheAnalytics {
    config: AnalyticsConfig,
    start: Instant,
    hits: AtomicU64,
    misses: AtomicU64,
    state: Mutex<State>,
}

impl fmt::Debug for CacheAnalytics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheAnalytics")
            .field("config", &self.config)
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .field("misses", &self.misses.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CacheAnalytics {
    /// Analytics with `config`. Out-of-range fields are repaired, with a `tracing` warning:
    /// a zero capacity or bucket count takes its default, and a window shorter than one
    /// nanosecond per bucket is dropped. Use [`try_new`](Self::try_new) to get the error instead.
    ///
    /// ```
    /// use perf_cache::analytics::{AnalyticsConfig, CacheAnalytics};
    /// let a = CacheAnalytics::new(AnalyticsConfig::default().capacity(0));
    /// assert_eq!(a.config().capacity, AnalyticsConfig::default().capacity);
    /// ```
    pub fn new(mut config: AnalyticsConfig) -> Self {
        if let Err(e) = config.validate() {
            tracing::warn!(error = %e, "invalid analytics config, repairing it");
            let d = AnalyticsConfig::default();
            if config.capacity == 0 {
                config.capacity = d.capacity;
            }
            if config.buckets_per_window == 0 {
                config.buckets_per_window = d.buckets_per_window;
            }
            let buckets = config.buckets_per_window;
            config.windows.retain(|w| !(*w / buckets).is_zero());
        }
        Self::build(config)
    }

    /// Analytics with `config`, or [`Error::InvalidConfig`] when it is out of range.
    ///
    /// ```
    /// use perf_cache::analytics::{AnalyticsConfig, CacheAnalytics};
    /// assert!(CacheAnalytics::try_new(AnalyticsConfig::default().capacity(0)).is_err());
    /// ```
    pub fn try_new(config: AnalyticsConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(config))
    }

    fn build(config: AnalyticsConfig) -> Self {
        let windows = config
            .windows
            .iter()
            .map(|w| Window::new(*w, config.buckets_per_window))
            .collect();
        let sketch = SpaceSaving::new(config.capacity);
        Self {
            start: config.clock.now(),
            config,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            state: Mutex::new(State { windows, sketch }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &AnalyticsConfig {
        &self.config
    }

    /// Records a hit on `key`.
    pub fn record_hit(&self, key: &[u8]) {
        self.record(key, true);
    }

    /// Records a miss on `key`.
    pub fn record_miss(&self, key: &[u8]) {
        self.record(key, false);
    }

    /// Records an access to `key`, a hit when `hit`.
    pub fn record(&self, key: &[u8], hit: bool) {
        if !self.config.enabled {
            return;
        }
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        let now = self.now_nanos();
        let hashed;
        let key = if self.config.hash_keys {
            hashed = perf_core::keys::bytes_key("analytics", key);
            hashed.as_bytes()
        } else {
            key
        };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for w in &mut st.windows {
            w.record(now, hit);
        }
        st.sketch.record(key, hit, now);
    }

    /// Number of keys the sketch holds now (never more than the configured capacity).
    pub fn tracked_keys(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sketch
            .len()
    }

    fn now_nanos(&self) -> u64 {
        let d = self
            .config
            .clock
            .now()
            .saturating_duration_since(self.start);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The figures now: lifetime totals, each window, hot keys (most accessed first) and cold
    /// keys (longest idle first), each list at most `report_limit` long.
    pub fn snapshot(&self) -> AnalyticsSnapshot {
        let now = self.now_nanos();
        let (windows, mut slots) = {
            let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let windows: Vec<WindowStats> = st
                .windows
                .iter()
                .map(|w| {
                    let (hits, misses) = w.totals(now);
                    WindowStats {
                        window_secs: w.length.as_secs_f64(),
                        hits,
                        misses,
                        hit_rate: ratio(hits, misses),
                    }
                })
                .collect();
            (windows, st.sketch.slots.clone())
        };
        let tracked_keys = slots.len();
        let limit = self.config.report_limit;
        let cold_after = u64::try_from(self.config.cold_after.as_nanos()).unwrap_or(u64::MAX);
        let stat = |s: &Slot| KeyStats {
            key: render_key(&s.key, self.config.hash_keys).0,
            key_encoding: render_key(&s.key, self.config.hash_keys).1,
            count: s.count,
            error: s.error,
            hits: s.hits,
            idle_secs: Duration::from_nanos(now.saturating_sub(s.last_access)).as_secs_f64(),
        };
        let mut cold: Vec<&Slot> = slots
            .iter()
            .filter(|s| now.saturating_sub(s.last_access) >= cold_after)
            .collect();
        cold.sort_by(|a, b| a.last_access.cmp(&b.last_access).then(a.key.cmp(&b.key)));
        let cold_keys = cold.into_iter().take(limit).map(stat).collect();
        slots.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
        let hot_keys = slots.iter().take(limit).map(stat).collect();
        let total_hits = self.hits.load(Ordering::Relaxed);
        let total_misses = self.misses.load(Ordering::Relaxed);
        AnalyticsSnapshot {
            total_hits,
            total_misses,
            hit_rate: ratio(total_hits, total_misses),
            windows,
            hot_keys,
            cold_keys,
            tracked_keys,
            capacity: self.config.capacity,
            keys_hashed: self.config.hash_keys,
        }
    }
}

fn ratio(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

fn render_key(key: &[u8], hashed: bool) -> (String, KeyEncoding) {
    if hashed {
        return (
            String::from_utf8_lossy(key).into_owned(),
            KeyEncoding::Blake3,
        );
    }
    match std::str::from_utf8(key) {
        Ok(s) => (s.to_owned(), KeyEncoding::Utf8),
        Err(_) => {
            let mut hex = String::with_capacity(key.len() * 2);
            for b in key {
                let _ = write!(hex, "{b:02x}");
            }
            (hex, KeyEncoding::Hex)
        }
    }
}

/// How [`KeyStats::key`] renders the key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyEncoding {
    /// The key was valid UTF-8 and is shown as is.
    Utf8,
    /// The key was not UTF-8 and is shown as lowercase hex.
    Hex,
    /// The key is perf-core's blake3 `bytes_key("analytics", key)`; the raw key was never kept.
    Blake3,
}

/// Figures of one sliding window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WindowStats {
    /// The window's length in seconds.
    pub window_secs: f64,
    /// Hits inside the window.
    pub hits: u64,
    /// Misses inside the window.
    pub misses: u64,
    /// `hits / (hits + misses)`, `None` without accesses.
    pub hit_rate: Option<f64>,
}

/// One tracked key of the Space-Saving sketch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key, rendered as [`key_encoding`](Self::key_encoding) says.
    pub key: String,
    /// How `key` renders the key bytes.
    pub key_encoding: KeyEncoding,
    /// Upper bound of the key's accesses; the true count is in `[count - error, count]`.
    pub count: u64,
    /// The largest possible over-count of `count`.
    pub error: u64,
    /// Hits seen since the key took its counter (a lower bound of its hits).
    pub hits: u64,
    /// Seconds since the key's last access.
    pub idle_secs: f64,
}

impl KeyStats {
    /// The guaranteed lower bound of the key's accesses, `count - error`.
    pub fn guaranteed(&self) -> u64 {
        self.count.saturating_sub(self.error)
    }
}

/// A point-in-time view of a [`CacheAnalytics`], serializable with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AnalyticsSnapshot {
    /// Hits since start.
    pub total_hits: u64,
    /// Misses since start.
    pub total_misses: u64,
    /// Lifetime hit rate, `None` without accesses.
    pub hit_rate: Option<f64>,
    /// One entry per configured window, in configuration order.
    pub windows: Vec<WindowStats>,
    /// The most accessed tracked keys, highest `count` first.
    pub hot_keys: Vec<KeyStats>,
    /// Tracked keys idle for at least `cold_after`, longest idle first.
    pub cold_keys: Vec<KeyStats>,
    /// Keys the sketch holds (at most `capacity`).
    pub tracked_keys: usize,
    /// The sketch's number of counters.
    pub capacity: usize,
    /// Whether keys are blake3 hashes.
    pub keys_hashed: bool,
}

impl AnalyticsSnapshot {
    /// The snapshot as JSON.
    ///
    /// ```
    /// use perf_cache::analytics::{AnalyticsConfig, AnalyticsSnapshot, CacheAnalytics};
    /// let snap = CacheAnalytics::new(AnalyticsConfig::default()).snapshot();
    /// let back = AnalyticsSnapshot::from_json(&snap.to_json()?)?;
    /// assert_eq!(back, snap);
    /// # Ok::<(), perf_cache::Error>(())
    /// ```
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| {
            Error::from(perf_core::Error::CodecEncode {
                reason: format!("analytics JSON: {e}"),
            })
        })
    }

    /// A snapshot read back from [`to_json`](Self::to_json)'s output; foreign JSON is a
    /// perf-core `CodecDecode` error.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| {
            Error::from(perf_core::Error::CodecDecode {
                reason: format!("analytics JSON: {e}"),
            })
        })
    }

    /// The snapshot in the Prometheus text format, every name prefixed with `prefix_` (when
    /// not empty) and sanitized by perf-core's `prometheus_name`. Windows are labelled
    /// `window="<seconds>s"`; hot keys are exported as `cache_hot_key_accesses` with `key` and
    /// `rank` labels (escaped; enable `hash_keys` if keys must not reach your monitoring).
    /// Hit ratios without accesses are `NaN`.
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let name = |n: &str| {
            if prefix.is_empty() {
                prometheus_name(n)
            } else {
                prometheus_name(&format!("{prefix}_{n}"))
            }
        };
        let rate = |r: Option<f64>| r.map_or_else(|| "NaN".to_owned(), |r| r.to_string());
        let mut out = String::new();
        let mut metric = |n: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let n = name(n);
            let _ = writeln!(out, "# HELP {n} {help}");
            let _ = writeln!(out, "# TYPE {n} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{n}{labels} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        metric(
            "cache_hits_total",
            "counter",
            "Cache hits since start.",
            &one(self.total_hits.to_string()),
        );
        metric(
            "cache_misses_total",
            "counter",
            "Cache misses since start.",
            &one(self.total_misses.to_string()),
        );
        metric(
            "cache_hit_ratio",
            "gauge",
            "Hit ratio since start.",
            &one(rate(self.hit_rate)),
        );
        let per_window = |f: &dyn Fn(&WindowStats) -> String| -> Vec<(String, String)> {
            self.windows
                .iter()
                .map(|w| (format!("{{window=\"{}s\"}}", w.window_secs), f(w)))
                .collect()
        };
        metric(
            "cache_window_hits",
            "gauge",
            "Hits inside the sliding window.",
            &per_window(&|w| w.hits.to_string()),
        );
        metric(
            "cache_window_misses",
            "gauge",
            "Misses inside the sliding window.",
            &per_window(&|w| w.misses.to_string()),
        );
        metric(
            "cache_window_hit_ratio",
            "gauge",
            "Hit ratio inside the sliding window.",
            &per_window(&|w| rate(w.hit_rate)),
        );
        metric(
            "cache_tracked_keys",
            "gauge",
            "Keys held by the hot-key sketch.",
            &one(self.tracked_keys.to_string()),
        );
        let hot: Vec<(String, String)> = self
            .hot_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    format!("{{key=\"{}\",rank=\"{}\"}}", escape_label(&k.key), i + 1),
                    k.count.to_string(),
                )
            })
            .collect();
        metric(
            "cache_hot_key_accesses",
            "gauge",
            "Estimated accesses of the hottest keys (upper bound).",
            &hot,
        );
        out
    }
}

fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
