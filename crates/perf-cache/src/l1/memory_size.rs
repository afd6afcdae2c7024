//! [`MemorySize`], the default weigher: what an entry occupies in memory, estimated by walking
//! its key and value with serde.
//!
//! A serializer sees every field at its own width (a `u64` as eight bytes, a `u8` as one), the
//! length of every string and sequence, and the length of every map. From that it rebuilds the
//! value's layout: each `String`, `Vec` and map is one heap allocation of its elements' inline
//! size (rounded as malloc rounds it), and each element may own allocations of its own. The
//! postcard-encoded length that [`EncodedSize`](super::EncodedSize) charges is a good estimate
//! for byte strings only: postcard writes integers as varints, so a `Vec<u64>` of small numbers
//! encodes to one byte per element but occupies eight.

use std::fmt;

use serde::ser::{self, Serialize};

use super::weigher::{allocation_size, entry_overhead, Weigher};

/// The default weigher: the memory an entry really occupies, so that the byte budget bounds
/// resident memory, not only payload. The key and the value are walked with serde, which shows
/// every field at its own width and every string, sequence and map with its length; each of
/// those is charged one allocation of its elements' inline size, rounded as a malloc-style
/// allocator rounds it. A plain value (a number, a struct of numbers) owns no allocation and
/// costs only its place in the slot. Every entry pays [`entry_overhead`] on top.
///
/// The walk sees what serde sees, so it is an estimate where types serialize differently from
/// how they are laid out:
/// - a map is charged the larger of a hash table's and a B-tree's layout (serde shows both the
///   same way): up to about twice what it holds, never less;
/// - a `HashSet` is charged as a `Vec` of its elements, without the hash table's spare buckets
///   and control bytes: up to about half too little;
/// - an untagged enum's elements are charged at the width of what each holds, not the enum's:
///   an array of numbers in a `serde_json::Value` counts 8 bytes per element where memory holds
///   32 (its objects, as B-tree maps, are charged more than they hold, which usually makes up
///   for it in whole documents);
/// - a `Box<str>` or `Arc<str>` is charged as a `String` behind a pointer (some 48 bytes too
///   many), and a `Box` or `Arc` inside another value as what it points to (its own allocation
///   unseen);
/// - a type with a custom `Serialize` is charged by what it writes.
///
/// Weighing walks the value once per insert. A string and a `Vec` of numbers (`Vec<u8>`
/// included) cost the same whatever their length; other sequences and maps about 1.6 ns per
/// element.
///
/// An `Arc<T>` or `Box<T>` value itself is recognised: a pointer-sized value that shows more
/// inline bytes than it has. A value that cannot be serialized weighs `u64::MAX` and is
/// rejected. For exact control pass your own [`Weigher`].
///
/// ```
/// use perf_cache::l1::{entry_overhead, MemorySize, Weigher};
///
/// // 1000 small `u64`s: postcard encodes them in 1002 bytes, memory holds 8000 of them.
/// let w = MemorySize.weigh(&1u64, &vec![1u64; 1000]);
/// assert_eq!(w, 8016 + entry_overhead::<u64, Vec<u64>>());
/// // A `String` of 5 bytes is one 32-byte allocation (8 bytes of header, rounded up).
/// let w = MemorySize.weigh(&1u64, &"value".to_owned());
/// assert_eq!(w, 32 + entry_overhead::<u64, String>());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MemorySize;

impl<K: Serialize, V: Serialize> Weigher<K, V> for MemorySize {
    fn weigh(&self, key: &K, value: &V) -> u64 {
        match (heap_size(key), heap_size(value)) {
            (Some(k), Some(v)) => k.saturating_add(v).saturating_add(entry_overhead::<K, V>()),
            _ => u64::MAX,
        }
    }
}

/// The inline size and alignment of one value, as far as serde shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Footprint {
    size: u64,
    align: u64,
}

impl Footprint {
    const fn new(size: u64, align: u64) -> Self {
        Self { size, align }
    }

    /// An owning container's inline part: pointer, capacity and length (`String`, `Vec`).
    const OWNER: Self = Self::new(24, 8);
    /// A `HashMap` with its default hasher state.
    const MAP: Self = Self::new(48, 8);

    /// The distance between two such values in an array.
    fn stride(self) -> u64 {
        round_up(self.size, self.align)
    }
}

/// `size` rounded up to `align`, a power of two (every alignment here is one): a mask, not a
/// division, because a sequence's elements are each rounded.
fn round_up(size: u64, align: u64) -> u64 {
    let mask = align.max(1) - 1;
    (size + mask) & !mask
}

/// Fields laid out one after another, padded to the widest alignment (Rust reorders fields to
/// minimize padding, so this is close).
#[derive(Default)]
struct Fields {
    size: u64,
    align: u64,
}

impl Fields {
    fn add(&mut self, field: Footprint) {
        self.size += field.size;
        self.align = self.align.max(field.align);
    }

    fn footprint(&self) -> Footprint {
        let align = self.align.max(1);
        Footprint::new(round_up(self.size, align), align)
    }
}

/// A value that cannot be walked (its `Serialize` implementation failed).
#[derive(Debug)]
struct Unmeasurable;

impl fmt::Display for Unmeasurable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("value cannot be serialized")
    }
}

impl std::error::Error for Unmeasurable {}

impl ser::Error for Unmeasurable {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Unmeasurable
    }
}

/// The heap bytes behind a value of type `T`: what its fields own, plus the pointee's
/// allocation when `T` is a pointer to what serde showed (`Arc<T>` and `Box<T>` serialize as
/// their pointee, so a pointer-sized `T` showing more bytes than it has gives them away). An
/// `Arc` adds two 8-byte counts; a `Box` is charged the same, 16 bytes too many. `None` when
/// `value` cannot be serialized.
fn heap_size<T: Serialize>(value: &T) -> Option<u64> {
    let mut heap = 0;
    let footprint = value.serialize(Walker { heap: &mut heap }).ok()?;
    let inline = std::mem::size_of::<T>() as u64;
    // Only a pointer-sized `T` (a thin or fat pointer) is taken for one: a `BTreeMap` shows the
    // footprint of a map, which may exceed its own size without pointing anywhere.
    let pointee = if std::mem::needs_drop::<T>() && inline <= 16 && footprint.size > inline {
        allocation_size(16 + footprint.size)
    } else {
        0
    };
    Some(heap + pointee)
}

/// Walks a value, adding the allocations it owns to `heap`, and returns its inline layout.
struct Walker<'a> {
    heap: &'a mut u64,
}

/// Sequence elements: the widest stride times their number is the buffer.
struct Seq<'a> {
    heap: &'a mut u64,
    stride: u64,
    count: u64,
}

/// Map entries: key-value slots in a hash table or a B-tree.
struct Map<'a> {
    heap: &'a mut u64,
    key: Footprint,
    entry: u64,
    count: u64,
}

/// Struct, tuple and variant fields laid out inline.
struct Inline<'a> {
    heap: &'a mut u64,
    fields: Fields,
}

impl<'a> Walker<'a> {
    /// A `String` or `Vec<u8>` of `len` bytes.
    fn owned_bytes(self, len: usize) -> Result<Footprint, Unmeasurable> {
        *self.heap += allocation_size(len as u64);
        Ok(Footprint::OWNER)
    }

    fn inline(self) -> Inline<'a> {
        Inline {
            heap: self.heap,
            fields: Fields::default(),
        }
    }

    /// An enum variant: its tag next to its fields.
    fn variant(self) -> Inline<'a> {
        let mut inline = self.inline();
        inline.fields.add(Footprint::new(1, 1));
        inline
    }
}

/// The bytes of a map of `len` entries of `entry` bytes each. Serde shows a `HashMap` and a
/// `BTreeMap` the same way, so this is the larger of the two layouts: a small B-tree is one
/// 11-entry node however few entries it holds, a hash table's buckets grow by powers of two.
fn map_bytes(len: u64, entry: u64) -> u64 {
    hash_table_bytes(len, entry).max(btree_bytes(len, entry))
}

/// hashbrown: buckets at a 7/8 load, powers of two, at least 4; one allocation of the buckets,
/// a control byte per bucket and a group's worth more.
fn hash_table_bytes(len: u64, entry: u64) -> u64 {
    let buckets = match len {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (len * 8 / 7).next_power_of_two(),
    };
    allocation_size(buckets * entry + buckets + 16)
}

/// The standard B-tree: nodes of 11 entries (plus parent link, index and length; internal
/// nodes also 12 edges), leaves taken as about three quarters full.
fn btree_bytes(len: u64, entry: u64) -> u64 {
    const CAPACITY: u64 = 11;
    let leaf = allocation_size(CAPACITY * entry + 16);
    match len {
        0 => 0,
        1..=CAPACITY => leaf,
        _ => {
            let leaves = len.div_ceil(8);
            let internal = leaves.div_ceil(8);
            leaves * leaf + internal * allocation_size(CAPACITY * entry + 16 + 12 * 8)
        }
    }
}

/// The width of `T` when it is a number, `bool` or `char`, or a reference to one (what a
/// `Vec`'s iterator yields), going by its type name.
fn primitive_width<T: ?Sized>() -> Option<u64> {
    let name = std::any::type_name::<T>();
    Some(match name.strip_prefix('&').unwrap_or(name) {
        "u8" | "i8" | "bool" => 1,
        "u16" | "i16" => 2,
        "u32" | "i32" | "f32" | "char" => 4,
        "u64" | "i64" | "f64" => 8,
        "u128" | "i128" => 16,
        _ => return None,
    })
}

macro_rules! primitive {
    ($($method:ident: $ty:ty => $size:expr),* $(,)?) => {
        $(#[inline]
        fn $method(self, _v: $ty) -> Result<Footprint, Unmeasurable> {
            Ok(Footprint::new($size, $size))
        })*
    };
}

impl<'a> ser::Serializer for Walker<'a> {
    type Ok = Footprint;
    type Error = Unmeasurable;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Inline<'a>;
    type SerializeTupleStruct = Inline<'a>;
    type SerializeTupleVariant = Inline<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Inline<'a>;
    type SerializeStructVariant = Inline<'a>;

    primitive! {
        serialize_bool: bool => 1,
        serialize_i8: i8 => 1,
        serialize_u8: u8 => 1,
        serialize_i16: i16 => 2,
        serialize_u16: u16 => 2,
        serialize_i32: i32 => 4,
        serialize_u32: u32 => 4,
        serialize_f32: f32 => 4,
        serialize_char: char => 4,
        serialize_i64: i64 => 8,
        serialize_u64: u64 => 8,
        serialize_f64: f64 => 8,
        serialize_i128: i128 => 16,
        serialize_u128: u128 => 16,
    }

    fn serialize_str(self, v: &str) -> Result<Footprint, Unmeasurable> {
        self.owned_bytes(v.len())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Footprint, Unmeasurable> {
        self.owned_bytes(v.len())
    }

    fn serialize_none(self) -> Result<Footprint, Unmeasurable> {
        // What the `Some` would hold is unknown: count a pointer-sized niche.
        Ok(Footprint::new(8, 8))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Footprint, Unmeasurable> {
        // Owners and references have a niche; other payloads get a tag.
        let inner = value.serialize(self)?;
        Ok(if inner == Footprint::OWNER {
            inner
        } else {
            let mut fields = Fields::default();
            fields.add(Footprint::new(1, 1));
            fields.add(inner);
            fields.footprint()
        })
    }

    fn serialize_unit(self) -> Result<Footprint, Unmeasurable> {
        Ok(Footprint::new(0, 1))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Footprint, Unmeasurable> {
        Ok(Footprint::new(0, 1))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<Footprint, Unmeasurable> {
        Ok(Footprint::new(1, 1))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Footprint, Unmeasurable> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<Footprint, Unmeasurable> {
        let mut variant = self.variant();
        ser::SerializeTupleVariant::serialize_field(&mut variant, value)?;
        ser::SerializeTupleVariant::end(variant)
    }

    /// A `Vec` of numbers (`Vec<u8>` above all) is one allocation of its length times their
    /// width, without visiting each element (1.6 ns each: 1.7 ms for a 1 MiB `Vec<u8>`). The
    /// element type is recognised by name; a name this does not know only takes the walk.
    fn collect_seq<I>(self, iter: I) -> Result<Footprint, Unmeasurable>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let iter = iter.into_iter();
        if let (Some(width), (low, Some(high))) = (primitive_width::<I::Item>(), iter.size_hint()) {
            if low == high {
                *self.heap += allocation_size(width * low as u64);
                return Ok(Footprint::OWNER);
            }
        }
        let mut seq = self.serialize_seq(None)?;
        for item in iter {
            ser::SerializeSeq::serialize_element(&mut seq, &item)?;
        }
        ser::SerializeSeq::end(seq)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>, Unmeasurable> {
        Ok(Seq {
            heap: self.heap,
            stride: 0,
            count: 0,
        })
    }

    fn serialize_tuple(self, _len: usize) -> Result<Inline<'a>, Unmeasurable> {
        Ok(self.inline())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Inline<'a>, Unmeasurable> {
        Ok(self.inline())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Inline<'a>, Unmeasurable> {
        Ok(self.variant())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a>, Unmeasurable> {
        Ok(Map {
            heap: self.heap,
            key: Footprint::new(0, 1),
            entry: 0,
            count: 0,
        })
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Inline<'a>, Unmeasurable> {
        Ok(self.inline())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Inline<'a>, Unmeasurable> {
        Ok(self.variant())
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = Footprint;
    type Error = Unmeasurable;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unmeasurable> {
        let element = value.serialize(Walker { heap: self.heap })?;
        self.stride = self.stride.max(element.stride());
        self.count += 1;
        Ok(())
    }

    fn end(self) -> Result<Footprint, Unmeasurable> {
        *self.heap += allocation_size(self.stride * self.count);
        Ok(Footprint::OWNER)
    }
}

impl Inline<'_> {
    fn field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unmeasurable> {
        let layout = value.serialize(Walker { heap: self.heap })?;
        self.fields.add(layout);
        Ok(())
    }
}

/// The compound serializers of inline values: every field adds to the layout, whatever its
/// key (`$($key)?`: the field-name parameter of struct-like traits).
macro_rules! inline_compound {
    ($($trait:ident :: $method:ident $(($key:ident))?),* $(,)?) => {
        $(impl ser::$trait for Inline<'_> {
            type Ok = Footprint;
            type Error = Unmeasurable;

            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result<(), Unmeasurable> {
                self.field(value)
            }

            fn end(self) -> Result<Footprint, Unmeasurable> {
                Ok(self.fields.footprint())
            }
        })*
    };
}

inline_compound! {
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
    SerializeStruct::serialize_field(_key),
    SerializeStructVariant::serialize_field(_key),
}

impl ser::SerializeMap for Map<'_> {
    type Ok = Footprint;
    type Error = Unmeasurable;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unmeasurable> {
        self.key = key.serialize(Walker { heap: self.heap })?;
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unmeasurable> {
        let value = value.serialize(Walker { heap: self.heap })?;
        let mut entry = Fields::default();
        entry.add(self.key);
        entry.add(value);
        self.entry = self.entry.max(entry.footprint().stride());
        self.count += 1;
        Ok(())
    }

    fn end(self) -> Result<Footprint, Unmeasurable> {
        *self.heap += map_bytes(self.count, self.entry);
        Ok(Footprint::MAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes as a sequence whose length the iterator does not know: the element walk.
    struct Unsized<'a, T>(&'a [T]);

    impl<T: Serialize> Serialize for Unsized<'_, T> {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.iter().filter(|_| true))
        }
    }

    #[test]
    fn numbers_are_recognised_by_name() {
        assert_eq!(primitive_width::<&u8>(), Some(1));
        assert_eq!(primitive_width::<u64>(), Some(8));
        assert_eq!(primitive_width::<&char>(), Some(4));
        assert_eq!(primitive_width::<&String>(), None);
        assert_eq!(primitive_width::<&Option<u8>>(), None);
    }

    #[test]
    fn the_fast_path_for_numbers_agrees_with_the_walk() {
        let bytes = vec![3u8; 1000];
        let longs = vec![3u64; 1000];
        assert_eq!(heap_size(&bytes), heap_size(&Unsized(&bytes)));
        assert_eq!(heap_size(&longs), heap_size(&Unsized(&longs)));
        assert_eq!(heap_size(&longs), Some(allocation_size(8000)));
        // Strings take the walk either way: each is an allocation of its own.
        let strings = vec!["abc".to_owned(); 10];
        assert_eq!(
            heap_size(&strings),
            Some(allocation_size(240) + 10 * allocation_size(3))
        );
    }
}
