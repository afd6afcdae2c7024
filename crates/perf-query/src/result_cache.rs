//! Query result cache: values keyed by statement text and encoded parameters, with a TTL
//! (perf-core clock) and a byte bound (least recently used evicted first), and a
//! table → keys index so a write invalidates exactly the results that read the tables it
//! writes — no scan over every entry.
//!
//! The cache is in-process; the [`ResultStore`] seam lets a second level see every insert
//! and invalidation. The cache that processes share — results in perf-cache's Redis L2,
//! invalidated in every process by writes — is `SharedResultCache` (feature `shared-cache`,
//! served by `TrackedPool::query_shared`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use perf_core::clock::{system_clock, SharedClock};
use serde::{Deserialize, Serialize};

use crate::sql::TableName;

/// A cache key: blake3 of the statement text and its encoded parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResultKey(pub [u8; 32]);

impl ResultKey {
    /// Key of `sql` with parameters already encoded (each `None` is SQL NULL). The text is
    /// keyed as written (trimmed): literals are part of what a result depends on.
    ///
    /// ```
    /// use perf_query::ResultKey;
    /// let a = ResultKey::new("SELECT * FROM t WHERE id = $1", &[Some(&1i32.to_be_bytes()[..])]);
    /// let b = ResultKey::new("SELECT * FROM t WHERE id = $1", &[Some(&2i32.to_be_bytes()[..])]);
    /// assert_ne!(a, b);
    /// assert_ne!(ResultKey::new("SELECT 1", &[None]), ResultKey::new("SELECT 1", &[Some(&[][..])]));
    /// ```
    pub fn new(sql: &str, params: &[Option<&[u8]>]) -> Self {
        let mut h = blake3::Hasher::new();
        let sql = sql.trim();
        h.update(&(sql.len() as u64).to_le_bytes());
        h.update(sql.as_bytes());
        for p in params {
            match p {
                None => {
                    h.update(&[0]);
                }
                Some(bytes) => {
                    h.update(&[1]);
                    h.update(&(bytes.len() as u64).to_le_bytes());
                    h.update(bytes);
                }
            }
        }
        ResultKey(*h.finalize().as_bytes())
    }
}

/// Counters of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResultCacheStats {
    /// Lookups served.
    pub hits: u64,
    /// Lookups not served (absent or expired).
    pub misses: u64,
    /// Entries removed by writes to their tables.
    pub invalidations: u64,
    /// Entries evicted for the byte bound.
    pub evictions: u64,
    /// Entries now.
    pub entries: u64,
    /// Bytes now (as estimated by the caller at insert).
    pub bytes: u64,
}

/// The seam for a second cache level (e.g. perf-cache's Redis-backed L2), so processes can
/// share results. Implementations must not block for long: they are called inline.
pub trait ResultStore: Send + Sync + std::fmt::Debug {
    /// A value was cached under `key`, reading `tables`.
    fn stored(&self, key: &ResultKey, tables: &[TableName]);
    /// Every result reading `table` is invalid.
    fn invalidated(&self, table: &TableName);
}

#[derive(Debug)]
struct Entry<V> {
    value: Arc<V>,
    bytes: u64,
    expires: Instant,
    tables: Vec<TableName>,
}

#[derive(Debug)]
struct Inner<V> {
    entries: LruCache<ResultKey, Entry<V>>,
    by_table: HashMap<TableName, HashSet<ResultKey>>,
    bytes: u64,
}

/// The cache; see the module documentation.
///
/// ```
/// use std::time::Duration;
/// use perf_core::clock::ManualClock;
/// use perf_query::{ResultCache, ResultKey, TableName};
///
/// let clock = ManualClock::new();
/// let cache: ResultCache<Vec<i64>> = ResultCache::new(Duration::from_secs(60), 1 << 20)
///     .with_clock(clock.shared());
/// let key = ResultKey::new("SELECT id FROM users", &[]);
/// cache.insert(key, vec![1, 2, 3], 24, vec![TableName::new("users")]);
/// assert_eq!(*cache.get(&key).unwrap(), vec![1, 2, 3]);
/// cache.invalidate_table(&TableName::new("users"));
/// assert!(cache.get(&key).is_none());
/// ```
#[derive(Debug)]
pub struct ResultCache<V> {
    ttl: Duration,
    max_bytes: u64,
    clock: SharedClock,
    inner: Mutex<Inner<V>>,
    store: Option<Arc<dyn ResultStore>>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    evictions: AtomicU64,
}

impl<V> ResultCache<V> {
    /// A cache holding values for `ttl`, at most `max_bytes` in total.
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        ResultCache {
            ttl,
            max_bytes,
            clock: system_clock(),
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                by_table: HashMap::new(),
                bytes: 0,
            }),
            store: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// A cache with the TTL and byte bound of perf-core's `[query]` section.
    pub fn from_config(cfg: &perf_core::config::QueryConfig) -> Self {
        ResultCache::new(Duration::from_secs(cfg.cache_ttl_secs), cfg.cache_max_bytes)
    }

    /// Uses `clock` for expiry (tests use `ManualClock`).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Attaches a second level that sees inserts and invalidations.
    pub fn with_store(mut self, store: Arc<dyn ResultStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The cached value, unless absent or expired.
    pub fn get(&self, key: &ResultKey) -> Option<Arc<V>> {
        let now = self.clock.now();
        let Ok(mut inner) = self.inner.lock() else {
            return None;
        };
        let found = match inner.entries.get(key) {
            Some(e) if e.expires > now => Some(Arc::clone(&e.value)),
            Some(_) => {
                Self::remove(&mut inner, key);
                None
            }
            None => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches `value` (of about `bytes` bytes) read from `tables`. A value larger than the
    /// whole bound is not cached.
    pub fn insert(
        &self,
        key: ResultKey,
        value: impl Into<Arc<V>>,
        bytes: u64,
        tables: Vec<TableName>,
    ) {
        if bytes > self.max_bytes {
            return;
        }
        let expires = self.clock.now() + self.ttl;
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        Self::remove(&mut inner, &key);
        for t in &tables {
            inner.by_table.entry(t.clone()).or_default().insert(key);
        }
        if let Some(store) = &self.store {
            store.stored(&key, &tables);
        }
        inner.bytes += bytes;
        inner.entries.put(
            key,
            Entry {
                value: value.into(),
                bytes,
                expires,
                tables,
            },
        );
        while inner.bytes > self.max_bytes {
            let Some((k, _)) = inner.entries.peek_lru().map(|(k, e)| (*k, e.bytes)) else {
                break;
            };
            Self::remove(&mut inner, &k);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops every result that read `table`; returns how many.
    pub fn invalidate_table(&self, table: &TableName) -> usize {
        let Ok(mut inner) = self.inner.lock() else {
            return 0;
        };
        // Results recorded under the bare name match a qualified write and vice versa.
        let keys: Vec<ResultKey> = inner
            .by_table
            .iter()
            .filter(|(t, _)| {
                t.name == table.name
                    && (t.schema.is_none() || table.schema.is_none() || t.schema == table.schema)
            })
            .flat_map(|(_, keys)| keys.iter().copied())
            .collect();
        for k in &keys {
            Self::remove(&mut inner, k);
        }
        drop(inner);
        if let Some(store) = &self.store {
            store.invalidated(table);
        }
        self.invalidations
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        keys.len()
    }

    /// Drops everything (a write whose tables are unknown).
    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            let n = inner.entries.len() as u64;
            inner.entries.clear();
            inner.by_table.clear();
            inner.bytes = 0;
            self.invalidations.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counters and sizes.
    pub fn stats(&self) -> ResultCacheStats {
        let (entries, bytes) = self
            .inner
            .lock()
            .map(|i| (i.entries.len() as u64, i.bytes))
            .unwrap_or((0, 0));
        ResultCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries,
            bytes,
        }
    }

    fn remove(inner: &mut Inner<V>, key: &ResultKey) {
        if let Some(e) = inner.entries.pop(key) {
            inner.bytes = inner.bytes.saturating_sub(e.bytes);
            for t in &e.tables {
                if let Some(set) = inner.by_table.get_mut(t) {
                    set.remove(key);
                    if set.is_empty() {
                        inner.by_table.remove(t);
                    }
                }
            }
        }
    }
}
