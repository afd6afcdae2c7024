//! Weighers: how many bytes of the L1 budget an entry costs.

use serde::Serialize;

use super::shard::Node;

/// Bytes of bookkeeping every stored entry costs whatever its types: its share of the hash
/// index (4-byte slot plus control byte at hashbrown's worst load after growth, about 12 B),
/// of the frequency sketch (up to 8 B), of the ghost history (2 B), of TinyLFU's miniature
/// simulations (up to 6 B), of the free-slot list (4 B) and, once any entry has a TTL, of the
/// deadline column (8 B plus the slab's spare). [`entry_overhead`] adds the type-dependent
/// part (the slot, which holds the key and the value inline).
pub const ENTRY_OVERHEAD: u64 = 40;

/// What the default weigher charges per entry beyond the heap data of its key and value: the
/// entry's slot in the shard's slab, which holds the key and the value inline (with the slab's
/// up to 25 % spare capacity), and [`ENTRY_OVERHEAD`].
///
/// ```
/// use perf_cache::l1::{entry_overhead, ENTRY_OVERHEAD};
///
/// // u64 -> u64: a 32-byte slot (key, value, links, weight, policy bits), +25 %, 40 B more.
/// assert_eq!(entry_overhead::<u64, u64>(), 40 + ENTRY_OVERHEAD);
/// ```
pub fn entry_overhead<K, V>() -> u64 {
    let slot = std::mem::size_of::<Option<Node<K, V>>>() as u64;
    slot + slot / 4 + ENTRY_OVERHEAD
}

/// The bytes an allocation of `n` bytes occupies in a malloc-style allocator: 8 bytes of
/// header, rounded up to 16, at least 32; from 128 KiB up, whole 4 KiB pages (mmap).
pub(crate) fn allocation_size(n: u64) -> u64 {
    if n == 0 {
        0
    } else if n >= 128 << 10 {
        n.saturating_add(8).div_ceil(4096).saturating_mul(4096)
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// The heap bytes behind a value of type `T` that encodes to `encoded` bytes: none for a small
/// plain value whose encoding fits in the type itself (numbers, `bool`, `char`...); for a
/// pointer-sized owner (`Arc<T>`, `Box<T>`: serde encodes them as their pointee) the pointee's
/// allocation, charged as an `Arc` of a 24-byte value (a `String`, a `Vec`) plus one allocation
/// of the encoded size; else one allocation of the encoded size (strings, byte vectors, and a
/// conservative estimate for other types).
fn heap_size<T>(encoded: u64) -> u64 {
    let inline = std::mem::size_of::<T>() as u64;
    if inline <= 8 && std::mem::needs_drop::<T>() {
        allocation_size(16 + 24) + allocation_size(encoded)
    } else if inline <= 8 && encoded <= inline {
        0
    } else {
        allocation_size(encoded)
    }
}

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

/// Charges an entry its postcard-encoded size: what it costs in L2, and a close estimate of
/// the memory of byte strings, strings and vectors of bytes (one allocation of the encoded
/// size, rounded as malloc rounds it). For other values it can be far too low, because
/// postcard writes integers as varints: a `Vec<u64>` of small numbers encodes to one byte per
/// element but occupies eight. [`MemorySize`](super::MemorySize), the default weigher,
/// charges such values what they occupy.
///
/// A key or value that owns heap data is charged its encoded size rounded as a malloc-style
/// allocator rounds it; a plain one of up to 8 bytes whose encoding fits in it (a small
/// number) only its place in the slot (a larger one, such as `u64::MAX` or a `u128`, is
/// charged a 32-byte allocation it does not have); every entry pays [`entry_overhead`] on top. The size is computed by serializing into a counter, without
/// allocating. A value that cannot be serialized weighs `u64::MAX` and is rejected.
///
/// ```
/// use perf_cache::l1::{entry_overhead, EncodedSize, Weigher};
///
/// // "key" and "value" encode to 4 and 6 bytes; each is one 32-byte allocation.
/// let w = EncodedSize.weigh(&b"key".to_vec(), &"value".to_owned());
/// assert_eq!(w, 32 + 32 + entry_overhead::<Vec<u8>, String>());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodedSize;

impl<K: Serialize, V: Serialize> Weigher<K, V> for EncodedSize {
    fn weigh(&self, key: &K, value: &V) -> u64 {
        match (encoded_len(key), encoded_len(value)) {
            (Some(k), Some(v)) => heap_size::<K>(k)
                .saturating_add(heap_size::<V>(v))
                .saturating_add(entry_overhead::<K, V>()),
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
        let iter = iter.into_iter();
        self.0 += match iter.size_hint() {
            (low, Some(high)) if low == high => low as u64,
            _ => iter.count() as u64,
        };
    }
}
