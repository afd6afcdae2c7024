//! Weighers: how many bytes of the L1 budget an entry costs.

use serde::Serialize;

/// Bytes every stored entry costs beyond its key and value: the slot (links, expiry, weight,
/// policy bits), the value's `Arc` header, the hash-table index and its spare capacity, the
/// frequency sketch and TinyLFU's miniature simulations. Measured at 1M entries by the
/// `cache_memory` benchmark group (about 63 B, plus about 5 B of simulations on a full shard);
/// the default weigher adds it so that the byte budget bounds resident memory, not only
/// payload.
pub const ENTRY_OVERHEAD: u64 = 64;

/// Computes what an entry costs against the byte budget.
///
/// Implemented for closures `Fn(&K, &V) -> u64`.
///
/// ```
/// use perf_cache::l1::{Cache, Weigher};
///
/// let cache: Cache<String, String> = Cache::builder()
///     .max_bytes(1_000)
///     .weigher(|k: &String, v: &String| (k.len() + v.len()) as u64)
///     .build();
/// assert!(cache.insert("k".to_owned(), "v".repeat(10)));
/// assert_eq!(cache.stats().bytes, 11);
/// ```
pub trait Weigher<K, V>: Send + Sync + 'static {
    /// The entry's cost in bytes (or in whatever unit the budget is expressed).
    fn weigh(&self, key: &K, value: &V) -> u64;
}

impl<K, V, F> Weigher<K, V> for F
where
    F: Fn(&K, &V) -> u64 + Send + Sync + 'static,
{
    fn weigh(&self, key: &K, value: &V) -> u64 {
        self(key, value)
    }
}

/// The default weigher: the postcard-encoded size of key and value plus [`ENTRY_OVERHEAD`].
///
/// The encoded size is what the value costs in L2 and a close estimate of its heap size for
/// byte strings, strings and vectors of numbers. It is computed by serializing into a counter,
/// without allocating. A value that cannot be serialized weighs `u64::MAX` and is rejected.
///
/// ```
/// use perf_cache::l1::{EncodedSize, Weigher, ENTRY_OVERHEAD};
///
/// let w = EncodedSize.weigh(&b"key".to_vec(), &"value".to_owned());
/// assert_eq!(w, 4 + 6 + ENTRY_OVERHEAD); // one length byte each
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodedSize;

impl<K: Serialize, V: Serialize> Weigher<K, V> for EncodedSize {
    fn weigh(&self, key: &K, value: &V) -> u64 {
        match (encoded_len(key), encoded_len(value)) {
            (Some(k), Some(v)) => k.saturating_add(v).saturating_add(ENTRY_OVERHEAD),
            _ => u64::MAX,
        }
    }
}

/// Every entry weighs 1: the budget becomes an entry count (used by hit-ratio benchmarks).
///
/// ```
/// use perf_cache::l1::{Cache, Unit};
///
/// let cache: Cache<u64, u64> = Cache::builder().max_bytes(2).weigher(Unit).shards(1).build();
/// cache.insert(1, 1);
/// cache.insert(2, 2);
/// cache.insert(3, 3);
/// assert_eq!(cache.len(), 2);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Unit;

impl<K, V> Weigher<K, V> for Unit {
    fn weigh(&self, _key: &K, _value: &V) -> u64 {
        1
    }
}

/// The postcard-encoded length of `value`, or `None` when it cannot be serialized.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Option<u64> {
    let mut counter = CountingSink(0);
    postcard::to_extend(value, &mut counter).ok()?;
    Some(counter.0)
}

struct CountingSink(u64);

impl Extend<u8> for &mut CountingSink {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0 += iter.into_iter().count() as u64;
    }
}
