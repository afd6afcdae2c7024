//! The in-process result cache: TTL on the perf-core clock, byte bound with LRU eviction,
//! table-indexed invalidation, the L2 seam.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_core::clock::ManualClock;
use perf_query::{ResultCache, ResultKey, ResultStore, TableName};

fn key(n: u32) -> ResultKey {
    ResultKey::new(
        "SELECT * FROM t WHERE id = $1",
        &[Some(&n.to_be_bytes()[..])],
    )
}

#[test]
fn ttl_expires_on_the_clock() {
    let clock = ManualClock::new();
    let c: ResultCache<String> =
        ResultCache::new(Duration::from_secs(10), 1 << 20).with_clock(clock.shared());
    c.insert(key(1), "a".to_string(), 10, vec![TableName::new("t")]);
    clock.advance(Duration::from_secs(9));
    assert!(c.get(&key(1)).is_some());
    clock.advance(Duration::from_secs(1));
    assert!(c.get(&key(1)).is_none());
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.entries, s.bytes), (1, 1, 0, 0));
}

#[test]
fn byte_bound_evicts_least_recently_used() {
    let c: ResultCache<u32> = ResultCache::new(Duration::from_secs(60), 100);
    for i in 0..4 {
        c.insert(key(i), i, 30, vec![]);
    }
    // 120 bytes > 100: the oldest went.
    assert!(c.get(&key(0)).is_none());
    assert!(c.get(&key(1)).is_some()); // now most recently used
    c.insert(key(9), 9, 30, vec![]);
    assert!(c.get(&key(2)).is_none());
    assert!(c.get(&key(1)).is_some());
    assert!(c.stats().bytes <= 100);
    // Larger than the whole bound: not cached.
    c.insert(key(10), 10, 101, vec![]);
    assert!(c.get(&key(10)).is_none());
}

#[test]
fn invalidation_hits_only_the_tables_written() {
    let c: ResultCache<u32> = ResultCache::new(Duration::from_secs(60), 1 << 20);
    c.insert(
        key(1),
        1,
        8,
        vec![TableName::new("orders"), TableName::new("customers")],
    );
    c.insert(key(2), 2, 8, vec![TableName::new("customers")]);
    c.insert(key(3), 3, 8, vec![TableName::qualified("shop", "products")]);
    assert_eq!(c.invalidate_table(&TableName::new("orders")), 1);
    assert!(c.get(&key(1)).is_none());
    assert!(c.get(&key(2)).is_some());
    // A bare name matches a qualified one.
    assert_eq!(c.invalidate_table(&TableName::new("products")), 1);
    assert!(c.get(&key(3)).is_none());
    assert_eq!(c.stats().invalidations, 2);
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl ResultStore for Recorder {
    fn stored(&self, _key: &ResultKey, tables: &[TableName]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("stored {}", tables.len()));
    }
    fn invalidated(&self, table: &TableName) {
        self.0.lock().unwrap().push(format!("invalidated {table}"));
    }
}

#[test]
fn second_level_sees_inserts_and_invalidations() {
    let store = Arc::new(Recorder::default());
    let c: ResultCache<u32> =
        ResultCache::new(Duration::from_secs(60), 1 << 20).with_store(store.clone());
    c.insert(key(1), 1, 8, vec![TableName::new("t")]);
    c.invalidate_table(&TableName::new("t"));
    assert_eq!(
        *store.0.lock().unwrap(),
        vec!["stored 1".to_string(), "invalidated t".to_string()]
    );
}
