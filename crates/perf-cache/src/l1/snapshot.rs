//! Snapshot of L1 to a file and restore at start-up (warm restarts).
//!
//! The file is perf-core's versioned codec (marker, format version, checksum) around a list of
//! entries in eviction order, coldest first, each with its remaining TTL, tags, queue and
//! frequency. Restoring inserts them in that order and puts each back in its queue with its
//! frequency, so the hot set after a restart is the hot set before it. Remaining TTLs shrink by
//! the wall-clock time the process was down; entries that expired meanwhile are skipped.
//!
//! With TinyLFU the file also carries what each shard's simulations learned (its queue shape
//! and their hit counts, whether it had filled): a cache of the same configuration (policy,
//! budget, entry bound, shard count) takes it back before the entries go in, so it keeps the
//! shape it had chosen instead of learning it again. Format 1 files (entries only) still load.
//!
//! A [`TieredCache`](crate::tiered::TieredCache) restarts warm the same way, through its L1:
//! `cache.l1()` then `save_snapshot` / `load_snapshot` (its `Arc<V>` values serialize as `V`).

use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::shard::Adaptation;
use super::{lock, Cache, Policy};
use crate::error::{Error, Result};

/// Format 2 added [`Learned`] after the entries; format 1 files load without it.
const SNAPSHOT_FORMAT: u32 = 2;

#[derive(Serialize)]
struct FileOut<'a, K, V> {
    format: u32,
    policy: Policy,
    saved_at_unix_ms: u64,
    entries: Vec<EntryOut<'a, K, V>>,
    learned: Learned,
}

/// The configuration the shards adapted under, and what each one learned (`None`: a shard
/// that does not adapt).
#[derive(Serialize, Deserialize)]
struct Learned {
    max_bytes: u64,
    max_entries: Option<u64>,
    shards: Vec<Option<Adaptation>>,
}

#[derive(Serialize)]
struct EntryOut<'a, K, V> {
    key: &'a K,
    value: &'a V,
    ttl_ms: Option<u64>,
    tags: Vec<String>,
    queue: u8,
    freq: u8,
}

#[derive(Deserialize)]
struct FileIn<K, V> {
    format: u32,
    policy: Policy,
    saved_at_unix_ms: u64,
    entries: Vec<EntryIn<K, V>>,
    learned: Learned,
}

/// Format 1: the same without [`Learned`].
#[derive(Deserialize)]
struct FileInV1<K, V> {
    format: u32,
    policy: Policy,
    saved_at_unix_ms: u64,
    entries: Vec<EntryIn<K, V>>,
}

#[derive(Deserialize)]
struct EntryIn<K, V> {
    key: K,
    value: V,
    ttl_ms: Option<u64>,
    tags: Vec<String>,
    queue: u8,
    freq: u8,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::SnapshotIo {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// Entries stored.
    pub restored: usize,
    /// Entries whose TTL ran out while the process was down.
    pub expired: usize,
    /// Entries refused (heavier than the cache's budget now).
    pub rejected: usize,
    /// Shards that took back the queue shape and simulation counts they had learned
    /// ([`Policy::TinyLfu`] shards large enough to adapt, when policy, budget, entry bound and
    /// shard count are those of the cache that saved the file; otherwise 0, and the shards
    /// learn again).
    pub shapes_restored: usize,
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Writes every live entry (with TTL left, tags and policy state) to `path`, atomically
    /// (a temporary file renamed over it). Returns the number of entries written. The values
    /// are cloned shard by shard (one lock at a time) and encoded unlocked, so the snapshot
    /// briefly holds a copy of them: cheap when `V` is an `Arc<T>`.
    ///
    /// ```
    /// use perf_cache::l1::Cache;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("l1.snapshot");
    /// let cache: Cache<String, u32> = Cache::new(1 << 20);
    /// cache.insert("a".into(), 1);
    /// assert_eq!(cache.save_snapshot(&path).unwrap(), 1);
    ///
    /// let restarted: Cache<String, u32> = Cache::new(1 << 20);
    /// assert_eq!(restarted.load_snapshot(&path).unwrap().restored, 1);
    /// assert_eq!(restarted.get("a"), Some(1));
    /// ```
    pub fn save_snapshot(&self, path: impl AsRef<Path>) -> Result<usize>
    where
        V: Clone,
    {
        let path = path.as_ref();
        let now = self.now_ticks();
        // Collect clones shard by shard (one lock at a time), then encode unlocked.
        type Collected<K, V> = (K, V, Option<u64>, Vec<String>, u8, u8);
        let mut collected: Vec<Collected<K, V>> = Vec::new();
        let mut learned = Vec::with_capacity(self.inner.shards.len());
        for shard in self.inner.shards.iter() {
            let shard = lock(&shard.0);
            learned.push(shard.adaptation());
            shard.for_each_cold_first(now, |node, expires, freq, tags| {
                let ttl_ms = (expires != 0).then(|| (expires - now).div_ceil(1_000_000));
                collected.push((
                    node.key.clone(),
                    node.value.clone(),
                    ttl_ms,
                    tags.iter().map(|t| t.to_string()).collect(),
                    node.queue,
                    freq,
                ));
            });
        }
        let file = FileOut {
            format: SNAPSHOT_FORMAT,
            policy: self.inner.policy,
            saved_at_unix_ms: unix_ms(self.inner.clock.system_now()),
            entries: collected
                .iter()
                .map(|(key, value, ttl_ms, tags, queue, freq)| EntryOut {
                    key,
                    value,
                    ttl_ms: *ttl_ms,
                    tags: tags.clone(),
                    queue: *queue,
                    freq: *freq,
                })
                .collect(),
            learned: Learned {
                max_bytes: self.max_bytes(),
                max_entries: self.max_entries(),
                shards: learned,
            },
        };
        let bytes = perf_core::codec::encode(&file)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))?;
        Ok(collected.len())
    }

    /// Restores a snapshot written by [`save_snapshot`](Self::save_snapshot) into this cache.
    /// A corrupted or foreign file is a typed error ([`Error::Core`]), never a panic; a
    /// snapshot of another policy restores entries without their policy state. TinyLFU
    /// shards take back the queue shape they had learned only if this cache has the saving
    /// cache's budget, entry bound and shard count ([`Restored::shapes_restored`]).
    pub fn load_snapshot(&self, path: impl AsRef<Path>) -> Result<Restored> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        let file = decode_file::<K, V>(&bytes, path)?;
        let same_policy = file.policy == self.inner.policy;
        let down_ms = unix_ms(self.inner.clock.system_now()).saturating_sub(file.saved_at_unix_ms);
        let mut outcome = Restored::default();
        // Shapes first: a shard at its learned shape keeps its window's entries as they go in.
        if let Some(learned) = file.learned.filter(|l| {
            same_policy
                && l.max_bytes == self.max_bytes()
                && l.max_entries == self.max_entries()
                && l.shards.len() == self.inner.shards.len()
        }) {
            for (shard, adaptation) in self.inner.shards.iter().zip(&learned.shards) {
                if let Some(adaptation) = adaptation {
                    if lock(&shard.0).adapt_to(adaptation) {
                        outcome.shapes_restored += 1;
                    }
                }
            }
        }
        for e in file.entries {
            let expires = match e.ttl_ms {
                None => 0,
                Some(ttl) if ttl <= down_ms => {
                    outcome.expired += 1;
                    continue;
                }
                Some(ttl) => self.deadline_after(Duration::from_millis(ttl - down_ms)),
            };
            let tags: Vec<Arc<str>> = e.tags.iter().map(|t| Arc::from(t.as_str())).collect();
            let hash = self.hash(&e.key);
            let key = e.key.clone();
            if !self.insert_raw(e.key, e.value, expires, &tags) {
                outcome.rejected += 1;
                continue;
            }
            if same_policy {
                lock(self.shard(hash)).place(hash, &key, e.queue, e.freq);
            }
            outcome.restored += 1;
        }
        Ok(outcome)
    }
}

/// A snapshot file of either format.
struct Decoded<K, V> {
    policy: Policy,
    saved_at_unix_ms: u64,
    entries: Vec<EntryIn<K, V>>,
    learned: Option<Learned>,
}

fn decode_file<K, V>(bytes: &[u8], path: &Path) -> Result<Decoded<K, V>>
where
    K: DeserializeOwned,
    V: DeserializeOwned,
{
    // Every format starts with its number: read it, then decode the whole file as that format.
    let payload = perf_core::codec::verified_payload(bytes)?;
    let unsupported = |format: String| Error::SnapshotIo {
        path: path.display().to_string(),
        reason: format!("snapshot format {format} is not supported"),
    };
    let format = postcard::take_from_bytes::<u32>(payload)
        .map_err(|_| unsupported("(unreadable)".into()))?
        .0;
    match format {
        1 => {
            let file: FileInV1<K, V> = perf_core::codec::decode(bytes)?;
            debug_assert_eq!(file.format, 1);
            Ok(Decoded {
                policy: file.policy,
                saved_at_unix_ms: file.saved_at_unix_ms,
                entries: file.entries,
                learned: None,
            })
        }
        SNAPSHOT_FORMAT => {
            let file: FileIn<K, V> = perf_core::codec::decode(bytes)?;
            debug_assert_eq!(file.format, SNAPSHOT_FORMAT);
            Ok(Decoded {
                policy: file.policy,
                saved_at_unix_ms: file.saved_at_unix_ms,
                entries: file.entries,
                learned: Some(file.learned),
            })
        }
        other => Err(unsupported(other.to_string())),
    }
}
