//! [`MemorySize`], the default weigher: what an entry occupies in memory, estimated by walking
//! its key and value with serde.
//!
//! A serializer sees every field at its own width (a `u64` as eight bytes, a `u8` as one), the
//! length of every string and sequence, and the length of every map. From that it rebuilds the
//! value's layout: each `String` and `Vec` is one heap allocation of its elements' inline size,
//! a map or set the allocations of its hash table or B-tree (rounded as malloc rounds them),
//! and each element may own allocations of its own. What serde does not show (spare capacity
//! above all) is listed on [`MemorySize`]. The
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
/// Where serde shows a value by reference (a struct's fields, a tuple's elements, a map's
/// entries, an option's payload), the walk also takes the size of its type, so an enum field
/// in a small variant or an `Option<[u64; 8]>` that is `None` is charged what it occupies.
///
/// What the walk cannot see, and how it is charged:
/// - **Spare capacity.** Serde shows lengths, not capacities: a `String::with_capacity(4096)`
///   holding one character, a `Vec` grown by pushes (up to twice its length), a map after
///   removals. Call `shrink_to_fit` before inserting values built that way, or pass your own
///   [`Weigher`].
/// - **Elements of a `Vec` of enums** are charged the width of the variants present (serde
///   hands them over behind a reference): a `Vec` whose elements are all in a small variant of
///   a large enum is undercharged. A `None` is taken for an optional `String` or `Vec` (24
///   bytes); `serde_json::Value` elements, recognised by name, for 32 bytes each.
/// - **Maps** are charged the larger of a hash table's and a B-tree's layout (serde shows both
///   the same way), B-tree leaves taken as half full: up to about two and a half times what a
///   map holds, not less. A `HashSet`, `BTreeSet` or `LinkedList` is recognised by its type's
///   name and charged its own layout; a set or list type this does not know, as a `Vec`.
/// - **Pointers inside values.** A `Box` or `Arc` field is charged as what it points to, its
///   own allocation unseen; a `Box<str>` or `Arc<str>` as a `String` (some 48 bytes too many).
/// - **Custom serialization.** A type with its own `Serialize`, a field with
///   `#[serde(skip)]`, `skip_serializing_if` or `serialize_with`, is charged by what it
///   writes (a skipped field that owns memory is charged nothing); `#[serde(flatten)]` turns
///   a struct into a map, charged as one.
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

    /// The wider and more aligned of the two.
    fn max(self, other: Self) -> Self {
        Self::new(self.size.max(other.size), self.align.max(other.align))
    }

    /// The distance between two such values in an array.
    fn stride(self) -> u64 {
        round_up(self.size, self.align)
    }
}

/// `size` rounded up to `align`, a power of two (every alignment here is one): a mask, not a
/// division, because a sequence's elements are each rounded.
fn round_up(size: u64, align: u64) -> u64 {
    let mask = align.max(1) - 1;
    size.saturating_add(mask) & !mask
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
        self.size = self.size.saturating_add(field.size);
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
/// their pointee: see the rule below). An `Arc` adds two 8-byte counts; a `Box` is charged the
/// same, 16 bytes too many. `None` when `value` cannot be serialized.
fn heap_size<T: Serialize>(value: &T) -> Option<u64> {
    let mut heap = 0;
    let footprint = value.serialize(Walker { heap: &mut heap }).ok()?;
    let inline = std::mem::size_of::<T>() as u64;
    // A thin pointer (8 bytes that need dropping: `Box<T>`, `Arc<T>`, `Option<Box<T>>`) points
    // at what serde showed; a fat one (16 bytes) only when it showed more than 16. A larger
    // `T` (a `BTreeMap` shows a map's 48 bytes in its 24) points nowhere.
    let pointer = inline == 8 || (inline <= 16 && footprint.size > inline);
    let pointee = if std::mem::needs_drop::<T>() && pointer {
        allocation_size(footprint.size.max(8).saturating_add(16))
    } else {
        0
    };
    Some(heap.saturating_add(pointee))
}

/// Walks a value, adding the allocations it owns to `heap`, and returns its inline layout.
struct Walker<'a> {
    heap: &'a mut u64,
}

/// Adds `bytes` to a walk's heap count (saturating: a `Serialize` may claim any length).
fn charge(heap: &mut u64, bytes: u64) {
    *heap = heap.saturating_add(bytes);
}

/// Sequence elements, kept in the layout of the collection that serialized them.
struct Seq<'a> {
    heap: &'a mut u64,
    layout: SeqLayout,
    stride: u64,
    count: u64,
}

/// How a collection serialized as a sequence keeps its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqLayout {
    /// One buffer of `count × stride` (`Vec`, `VecDeque`, slices, and anything not known).
    Buffer,
    /// A hash table (`HashSet`).
    HashTable,
    /// A B-tree (`BTreeSet`).
    BTree,
    /// One node per element with two links (`LinkedList`).
    Nodes,
}

impl SeqLayout {
    /// The layout of the collection type `C`, by its name.
    fn of<C: ?Sized>() -> Self {
        // The path before the generic arguments (a `memchr` and a comparison: weighing a short
        // key must stay in nanoseconds).
        let name = std::any::type_name::<C>().trim_start_matches('&');
        if name.starts_with("alloc::vec::Vec<") || name.starts_with('[') {
            return Self::Buffer;
        }
        let path = name.find('<').map_or(name, |generics| &name[..generics]);
        if path.ends_with("::HashSet") {
            Self::HashTable
        } else if path.ends_with("::BTreeSet") {
            Self::BTree
        } else if path.ends_with("::LinkedList") {
            Self::Nodes
        } else {
            Self::Buffer
        }
    }

    fn bytes(self, count: u64, stride: u64) -> u64 {
        match self {
            Self::Buffer => allocation_size(count.saturating_mul(stride)),
            Self::HashTable => hash_table_bytes(count, stride),
            Self::BTree => btree_bytes(count, stride),
            Self::Nodes => count.saturating_mul(allocation_size(stride.saturating_add(16))),
        }
    }
}

/// Map entries: key-value slots in a hash table or a B-tree.
struct Map<'a> {
    heap: &'a mut u64,
    /// The key just serialized, for `serialize_value`.
    key: Footprint,
    keys: Footprint,
    values: Footprint,
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
        charge(self.heap, allocation_size(len as u64));
        Ok(Footprint::OWNER)
    }

    /// A sequence kept in `layout`, its elements at least `stride` bytes apart.
    fn seq(self, layout: SeqLayout, stride: u64) -> Seq<'a> {
        Seq {
            heap: self.heap,
            layout,
            stride,
            count: 0,
        }
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

/// The bytes of a map of `len` entries. Serde shows a `HashMap` and a `BTreeMap` the same way,
/// so this is the larger of the two layouts: a small B-tree is one 11-entry node however few
/// entries it holds, a hash table's buckets grow by powers of two.
fn map_bytes(len: u64, keys: Footprint, values: Footprint) -> u64 {
    let mut entry = Fields::default();
    entry.add(keys);
    entry.add(values);
    let entry = entry.footprint().stride();
    // A B-tree node keeps keys and values in two arrays.
    let slot = keys.stride().saturating_add(values.stride());
    hash_table_bytes(len, entry).max(btree_bytes(len, slot))
}

/// hashbrown: buckets at a 7/8 load, powers of two, at least 4; one allocation of the buckets,
/// a control byte per bucket and a group's worth more.
fn hash_table_bytes(len: u64, entry: u64) -> u64 {
    let buckets = match len {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (len.saturating_mul(8) / 7)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX),
    };
    allocation_size(
        buckets
            .saturating_mul(entry.saturating_add(1))
            .saturating_add(16),
    )
}

/// The standard B-tree of `len` elements of `slot` bytes (key plus value): nodes of 11 slots
/// plus parent link, index and length, internal nodes also 12 edges. Leaves are taken as about
/// half full: ascending inserts split them 6/5 and leave that.
fn btree_bytes(len: u64, slot: u64) -> u64 {
    const CAPACITY: u64 = 11;
    let leaf = allocation_size(slot.saturating_mul(CAPACITY).saturating_add(16));
    match len {
        0 => 0,
        1..=CAPACITY => leaf,
        _ => {
            let leaves = len.div_ceil(6);
            let internal = leaves.div_ceil(6);
            let node = allocation_size(slot.saturating_mul(CAPACITY).saturating_add(16 + 12 * 8));
            leaves
                .saturating_mul(leaf)
                .saturating_add(internal.saturating_mul(node))
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
        "usize" | "isize" => std::mem::size_of::<usize>() as u64,
        "u128" | "i128" => 16,
        "()" => 0,
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
        // What the `Some` would hold is unknown: count the common case, an optional `String`
        // or `Vec` (a `Vec<Option<String>>` of `None`s holds 24 bytes each).
        Ok(Footprint::OWNER)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Footprint, Unmeasurable> {
        // Owners and references have a niche; other payloads get a tag.
        let inner = at_least_its_size(value, value.serialize(self)?);
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
    /// element type is recognised by name, and so is the collection (a `HashSet`, `BTreeSet`
    /// or `LinkedList` is not one buffer); a name this does not know only takes the walk.
    fn collect_seq<I>(self, iter: I) -> Result<Footprint, Unmeasurable>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let layout = SeqLayout::of::<I>();
        let iter = iter.into_iter();
        if let (Some(width), (low, Some(high))) = (primitive_width::<I::Item>(), iter.size_hint()) {
            if low == high {
                charge(self.heap, layout.bytes(low as u64, width));
                return Ok(Footprint::OWNER);
            }
        }
        let mut seq = self.seq(layout, element_floor::<I::Item>());
        for item in iter {
            ser::SerializeSeq::serialize_element(&mut seq, &item)?;
        }
        ser::SerializeSeq::end(seq)
    }

    /// Text written through `Display` (`collect_str`): counted, not collected into a string.
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<Footprint, Unmeasurable> {
        struct Count(usize);
        impl fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 = self.0.saturating_add(s.len());
                Ok(())
            }
        }
        let mut count = Count(0);
        fmt::write(&mut count, format_args!("{value}")).map_err(|_| Unmeasurable)?;
        self.owned_bytes(count.0)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>, Unmeasurable> {
        Ok(self.seq(SeqLayout::Buffer, 0))
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
        let empty = Footprint::new(0, 1);
        Ok(Map {
            heap: self.heap,
            key: empty,
            keys: empty,
            values: empty,
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
        charge(self.heap, self.layout.bytes(self.count, self.stride));
        Ok(Footprint::OWNER)
    }
}

impl Inline<'_> {
    fn field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unmeasurable> {
        let walked = value.serialize(Walker { heap: self.heap })?;
        self.fields.add(at_least_its_size(value, walked));
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
        self.key = at_least_its_size(key, key.serialize(Walker { heap: self.heap })?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unmeasurable> {
        let value = at_least_its_size(value, value.serialize(Walker { heap: self.heap })?);
        self.keys = self.keys.max(self.key);
        self.values = self.values.max(value);
        self.count += 1;
        Ok(())
    }

    fn end(self) -> Result<Footprint, Unmeasurable> {
        charge(self.heap, map_bytes(self.count, self.keys, self.values));
        Ok(Footprint::MAP)
    }
}

/// `walked`, widened to the size and alignment of `value`'s type where the walk saw less: a
/// field, tuple element or map entry handed over by reference shows its real type (an
/// `Option<[u64; 8]>` that is `None`, an enum in a small variant), which serde's calls alone
/// do not. A reference handed over by reference (what collections' iterators yield) only shows
/// a pointer's 8 bytes, so elements of a `Vec` keep their walked width.
fn at_least_its_size<T: ?Sized>(value: &T, walked: Footprint) -> Footprint {
    Footprint::new(
        walked.size.max(std::mem::size_of_val(value) as u64),
        walked.align.max(std::mem::align_of_val(value) as u64),
    )
}

/// The least stride of a sequence's elements of type `T` that the walk cannot see:
/// `serde_json::Value` serializes as what it holds (a number as 8 bytes) but occupies 32
/// (without its `preserve_order` feature).
fn element_floor<T: ?Sized>() -> u64 {
    let name = std::any::type_name::<T>();
    if name.trim_start_matches('&') == "serde_json::value::Value" {
        32
    } else {
        0
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
