//! The default weigher against real allocations: a counting global allocator records what
//! building each value asks of the allocator on this thread, and `MemorySize` must charge at
//! least that and no more than malloc's rounding of it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, LinkedList};
use std::sync::Arc;

use perf_cache::l1::{entry_overhead, Cache, EncodedSize, MemorySize, Weigher};
use serde::Serialize;

/// Passes every call to the system allocator and counts, per thread, the bytes and blocks live.
struct Counting;

thread_local! {
    static LIVE: Cell<(i64, i64)> = const { Cell::new((0, 0)) };
}

fn track(bytes: i64, blocks: i64) {
    // `try_with`: allocations made while the thread's locals are torn down go uncounted.
    let _ = LIVE.try_with(|c| {
        let (b, n) = c.get();
        c.set((b + bytes, n + blocks));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as i64, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as i64), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as i64 - layout.size() as i64, 0);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The bytes and blocks `make`'s result holds on to (temporaries cancel out).
fn allocated<T>(make: impl FnOnce() -> T) -> (T, u64, u64) {
    let (b0, n0) = LIVE.with(Cell::get);
    let value = make();
    let (b1, n1) = LIVE.with(Cell::get);
    (value, (b1 - b0) as u64, (n1 - n0) as u64)
}

/// What `MemorySize` charges for `value`'s heap (the entry's fixed part taken off).
fn charged<V: Serialize>(value: &V) -> u64 {
    MemorySize.weigh(&(), value) - entry_overhead::<(), V>()
}

/// `MemorySize`'s charge is at least the bytes asked of the allocator and at most `over`
/// times malloc's rounding of them (8 bytes of header, multiples of 16, at least 32 per
/// block): 1 where the layout is known exactly, more where the walk must assume the larger of
/// two layouts.
fn assert_charged<V: Serialize + std::fmt::Debug>(
    what: &str,
    make: impl FnOnce() -> V,
    over: f64,
) -> u64 {
    let (value, bytes, blocks) = allocated(make);
    let charge = charged(&value);
    let rounded = (bytes + 32 * blocks) as f64;
    assert!(
        charge >= bytes && charge as f64 <= rounded * over,
        "{what}: charged {charge} B for {bytes} B in {blocks} blocks"
    );
    charge
}

#[derive(Debug, Serialize)]
struct Record {
    id: u64,
    score: f32,
    tags: Vec<u32>,
    name: String,
    note: Option<String>,
    children: Vec<Child>,
}

/// A field whose `None` serde shows as nothing, though it occupies 72 bytes.
#[derive(Debug, Clone, Serialize)]
struct Wide {
    id: u64,
    block: Option<[u64; 8]>,
}

#[derive(Debug, Serialize)]
enum Child {
    Leaf(u16),
    Named { label: String, weight: u32 },
    Empty,
}

fn record(i: u32) -> Record {
    Record {
        id: u64::from(i),
        score: 0.5,
        tags: (0..i % 13).collect(),
        name: format!("record number {i}"),
        note: (i % 2 == 0).then(|| "x".repeat(i as usize % 300)),
        children: vec![
            Child::Leaf(7),
            Child::Named {
                label: "child".repeat(1 + i as usize % 5),
                weight: i,
            },
            Child::Empty,
        ],
    }
}

#[test]
fn memory_size_charges_what_values_really_allocate() {
    let plain = assert_charged("u64", || 7u64, 1.0);
    assert_eq!(plain, 0, "a number owns no allocation");

    let numbers = assert_charged("Vec<u64> of small numbers", || vec![1u64; 1000], 1.0);
    // postcard writes each as one byte: the encoded size misses seven eighths of the memory.
    let encoded = EncodedSize.weigh(&(), &vec![1u64; 1000]) - entry_overhead::<(), Vec<u64>>();
    assert!(
        encoded * 4 < numbers,
        "encoded {encoded} vs memory {numbers}"
    );

    assert_charged(
        "Vec<String>",
        || {
            (0..100)
                .map(|i| format!("name-{i}"))
                .collect::<Vec<String>>()
        },
        1.0,
    );
    assert_charged(
        "Vec<Vec<u16>>",
        || {
            (0..20)
                .map(|i| vec![i as u16; i * 3])
                .collect::<Vec<Vec<u16>>>()
        },
        1.0,
    );
    // A map is charged the larger of a hash table and a B-tree.
    assert_charged(
        "HashMap<String, u64>",
        || {
            (0..50)
                .map(|i| (format!("key-{i}"), i as u64))
                .collect::<HashMap<String, u64>>()
        },
        2.0,
    );
    // Built from a sorted iterator a B-tree's leaves are full; built by ascending inserts they
    // are about half full, the layout charged.
    for n in [1, 11, 200] {
        assert_charged(
            &format!("BTreeMap of {n}, collected"),
            || {
                (0..n)
                    .map(|i| (i, u64::from(i)))
                    .collect::<BTreeMap<u32, u64>>()
            },
            2.5,
        );
    }
    assert_charged(
        "BTreeMap of 1792, ascending inserts",
        || {
            let mut map = BTreeMap::new();
            for i in 0..1792u64 {
                map.insert(i, i);
            }
            map
        },
        2.5,
    );
    assert_charged(
        "HashSet<u64> of 1000",
        || (0..1000u64).collect::<HashSet<u64>>(),
        2.0,
    );
    assert_charged(
        "BTreeSet<u64> of 1000, ascending inserts",
        || {
            let mut set = BTreeSet::new();
            for i in 0..1000u64 {
                set.insert(i);
            }
            set
        },
        2.5,
    );
    assert_charged(
        "LinkedList<u8> of 100",
        || (0..100u8).collect::<LinkedList<u8>>(),
        1.0,
    );
    // Elements whose type is wider than what serde shows of them.
    assert_charged(
        "Vec<Option<String>> of None",
        || vec![None::<String>; 1000],
        1.0,
    );
    assert_charged(
        "Vec<Wide> with None fields",
        || vec![Wide { id: 1, block: None }; 100],
        1.0,
    );
    assert_charged("Arc<u64>", || Arc::new(7u64), 1.0);
    assert_charged("Box<u64>", || Box::new(7u64), 1.0);
    // JSON: objects are B-trees of eleven slots per node, values 32-byte `Value`s.
    // (Four array elements: serde_json grows a Vec to 4, then 8; spare capacity is not seen.)
    for text in [r#"{"a":1,"b":2}"#, r#"[null,true,2.5,"x"]"#] {
        assert_charged(
            text,
            || serde_json::from_str::<serde_json::Value>(text).unwrap(),
            2.0,
        );
    }
    assert_charged(
        "JSON array of 1000 small objects",
        || {
            let text = format!("[{}]", vec![r#"{"k":1}"#; 1000].join(","));
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        },
        2.0,
    );
    // A parsed chat-completion response.
    let json = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,
        "choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help?"},
        "finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12},
        "nested":{"a":{"b":[true,false,null]}}}"#;
    assert_charged(
        "serde_json::Value",
        || serde_json::from_str::<serde_json::Value>(json).unwrap(),
        2.0,
    );
    assert_charged("Arc<Vec<u64>>", || Arc::new(vec![5u64; 100]), 1.0);
    assert_charged(
        "Arc<String>",
        || Arc::new("an arc-shared string".to_owned()),
        1.0,
    );
    for i in [0, 1, 2, 11, 299] {
        assert_charged(&format!("Record {i}"), || record(i), 1.0);
    }
    assert_charged(
        "Vec<Record>",
        || (0..40).map(record).collect::<Vec<Record>>(),
        1.0,
    );
}

#[test]
fn memory_size_is_the_default_weigher() {
    let cache: Cache<u64, Vec<u64>> = Cache::builder().max_bytes(1 << 20).shards(1).build();
    cache.insert(1, vec![9; 1000]);
    assert_eq!(
        cache.stats().bytes,
        MemorySize.weigh(&1u64, &vec![9u64; 1000])
    );
    // 100 such entries (about 8 KB each) cannot fit in 256 KiB.
    let small: Cache<u64, Vec<u64>> = Cache::builder().max_bytes(256 << 10).shards(1).build();
    for k in 0..100 {
        small.insert(k, vec![k; 1000]);
    }
    assert!(
        small.len() <= 32,
        "{} entries of 8 KB in 256 KiB",
        small.len()
    );
    assert!(small.stats().bytes <= 256 << 10);
}

#[test]
fn a_value_that_cannot_be_serialized_weighs_the_maximum() {
    #[derive(Clone)]
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    assert_eq!(MemorySize.weigh(&1u64, &Refuses), u64::MAX);
    let cache: Cache<u64, Refuses> = Cache::new(1 << 20);
    assert!(
        !cache.insert(1, Refuses),
        "an unmeasurable value is rejected"
    );
    assert_eq!(cache.len(), 0);
}

/// Claims sequences of `usize::MAX` numbers (without holding them).
#[derive(Clone)]
struct Absurd;

impl Serialize for Absurd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&Many)?;
        t.serialize_element(&Many)?;
        t.end()
    }
}

struct Many;

impl Serialize for Many {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(std::iter::repeat_n(0u64, usize::MAX))
    }
}

#[test]
fn absurd_sizes_saturate_instead_of_overflowing() {
    // Debug builds check arithmetic: an overflow anywhere in the walk would panic here.
    let weight = MemorySize.weigh(&1u64, &Absurd);
    assert!(weight > u64::MAX / 2, "{weight}");
    let cache: Cache<u64, Absurd> = Cache::new(1 << 20);
    assert!(!cache.insert(1, Absurd));
}
