//! L1 snapshots: round trip with TTL, tags and policy state; corrupted files; downtime.

use std::time::{Duration, SystemTime};

use perf_cache::l1::{Cache, EntryOptions, Policy, Unit};
use perf_cache::Error;
use perf_core::clock::ManualClock;

fn cache(clock: &ManualClock, policy: Policy, capacity: u64) -> Cache<String, String> {
    Cache::builder()
        .max_bytes(capacity)
        .weigher(Unit)
        .shards(1)
        .policy(policy)
        .clock(clock.shared())
        .build()
}

#[test]
fn round_trip_keeps_values_ttl_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let clock = ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let before = cache(&clock, Policy::TinyLfu, 100);
    before.insert("plain".into(), "p".into());
    before.insert_with(
        "ttl".into(),
        "t".into(),
        EntryOptions::new().ttl(Duration::from_secs(100)),
    );
    before.insert_with(
        "short".into(),
        "s".into(),
        EntryOptions::new().ttl(Duration::from_secs(5)),
    );
    before.insert_with("tagged".into(), "g".into(), EntryOptions::new().tag("team"));
    clock.advance(Duration::from_secs(10));
    // "short" has expired: it is not written.
    assert_eq!(before.save_snapshot(&path).unwrap(), 3);

    // The process is down for 30 s of wall-clock time.
    let later = ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_040));
    let after = cache(&later, Policy::TinyLfu, 100);
    let restored = after.load_snapshot(&path).unwrap();
    assert_eq!(
        (restored.restored, restored.expired, restored.rejected),
        (3, 0, 0)
    );
    assert_eq!(after.get("plain").as_deref(), Some("p"));
    assert_eq!(after.time_to_live("plain"), Some(None));
    // 100 s TTL, 10 s used before the snapshot, 30 s of downtime.
    assert_eq!(
        after.time_to_live("ttl"),
        Some(Some(Duration::from_secs(60)))
    );
    assert_eq!(after.invalidate_tag("team"), 1);
    later.advance(Duration::from_secs(60));
    assert!(after.get("ttl").is_none());
}

#[test]
fn entries_expired_during_downtime_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let clock = ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
    let before = cache(&clock, Policy::Lru, 10);
    before.insert_with(
        "k".into(),
        "v".into(),
        EntryOptions::new().ttl(Duration::from_secs(20)),
    );
    before.save_snapshot(&path).unwrap();
    let later = ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_100));
    let after = cache(&later, Policy::Lru, 10);
    let restored = after.load_snapshot(&path).unwrap();
    assert_eq!((restored.restored, restored.expired), (0, 1));
    assert!(after.is_empty());
}

#[test]
fn restore_keeps_the_hot_set() {
    // Build a TinyLFU cache whose hot keys are in the protected queue, snapshot it, restore it,
    // then push a scan through: the restored hot keys must survive like the original ones.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let clock = ManualClock::new();
    let before = cache(&clock, Policy::TinyLfu, 100);
    for _ in 0..10 {
        for k in 0..40 {
            let key = format!("hot{k}");
            if before.get(key.as_str()).is_none() {
                before.insert(key, "x".into());
            }
        }
    }
    before.save_snapshot(&path).unwrap();
    let after = cache(&clock, Policy::TinyLfu, 100);
    after.load_snapshot(&path).unwrap();
    assert!(after.frequency("hot0") >= 5, "frequency restored");
    for k in 0..5_000 {
        let key = format!("scan{k}");
        if after.get(key.as_str()).is_none() {
            after.insert(key, "y".into());
        }
    }
    let survivors = (0..40)
        .filter(|k| after.peek(format!("hot{k}").as_str()).is_some())
        .count();
    assert!(survivors >= 36, "only {survivors} of 40 hot keys survived");
}

#[test]
fn lru_order_survives_restore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let clock = ManualClock::new();
    let before = cache(&clock, Policy::Lru, 3);
    for k in ["a", "b", "c"] {
        before.insert(k.into(), k.into());
    }
    before.get("a"); // order, coldest first: b, c, a
    before.save_snapshot(&path).unwrap();
    let after = cache(&clock, Policy::Lru, 3);
    after.load_snapshot(&path).unwrap();
    after.insert("d".into(), "d".into());
    assert!(
        after.peek("b").is_none(),
        "b was the least recently used before the restart"
    );
    assert!(after.peek("a").is_some());
}

#[test]
fn corrupted_or_missing_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let clock = ManualClock::new();
    let c = cache(&clock, Policy::Lru, 10);
    c.insert("k".into(), "v".into());
    c.save_snapshot(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(c.load_snapshot(&path), Err(Error::Core(_))));
    std::fs::write(&path, b"{\"not\": \"ours\"}").unwrap();
    assert!(matches!(c.load_snapshot(&path), Err(Error::Core(_))));
    assert!(matches!(
        c.load_snapshot(dir.path().join("absent")),
        Err(Error::SnapshotIo { .. })
    ));
}

/// A one-shard TinyLFU cache of `capacity` unit entries with a fixed hash seed.
fn adaptive(capacity: u64) -> Cache<u64, ()> {
    Cache::builder()
        .max_bytes(capacity)
        .weigher(Unit)
        .shards(1)
        .hash_seed(7)
        .build()
}

/// Reads `key` and inserts it on a miss; returns the shard's window size afterwards.
fn read_through(cache: &Cache<u64, ()>, key: u64) -> u64 {
    if cache.get(&key).is_none() {
        cache.insert(key, ());
    }
    cache.window_sizes()[0]
}

/// xorshift64: a reproducible stream of pseudo-random numbers.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn tinylfu_shards_keep_the_shape_they_learned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    // Half the requests are new keys, three in ten re-read a key that arrived 5,000 to 15,000
    // new keys ago, two in ten read a hot set of 20,000: a workload that wants a large window.
    let before = adaptive(65_536);
    let first_window = before.window_sizes()[0];
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let mut fresh = 0u64;
    for _ in 0..400_000 {
        let r = next();
        let key = match r % 10 {
            0..=4 => {
                fresh += 1;
                fresh
            }
            5..=7 => fresh.saturating_sub(5_000 + (r >> 32) % 10_000),
            _ => (1 << 40) + (r >> 32) % 20_000,
        };
        read_through(&before, key);
    }
    let learned = before.window_sizes();
    assert!(
        learned[0] > first_window,
        "the shard learned a larger window ({first_window} -> {})",
        learned[0]
    );
    before.save_snapshot(&path).unwrap();

    let after = adaptive(65_536);
    let restored = after.load_snapshot(&path).unwrap();
    assert_eq!(restored.shapes_restored, 1);
    assert_eq!(after.window_sizes(), learned);
    assert_eq!(after.len(), before.len(), "every entry went back in");

    // Another budget: the entries come back, the shard learns its shape again.
    let other = adaptive(65_000);
    let restored = other.load_snapshot(&path).unwrap();
    assert_eq!(restored.shapes_restored, 0);
    assert_eq!(other.window_sizes(), [650]);
}

#[test]
fn a_restored_full_shard_does_not_hedge_again() {
    // Skewed re-reads of 100k keys in a shard of 16384: the shard hedges with the half
    // window when it fills, and its simulations send it back to the 1 % window.
    let skewed = |seed: u64, n: usize| {
        let mut next = xorshift(seed);
        (0..n).map(move |_| {
            let r = next();
            (r % 100_000).min((r >> 32) % 100_000)
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let before = adaptive(16_384);
    let mut windows = vec![before.window_sizes()[0]];
    for key in skewed(0x9E37_79B9_7F4A_7C15, 400_000) {
        let window = read_through(&before, key);
        if windows.last() != Some(&window) {
            windows.push(window);
        }
    }
    assert_eq!(windows, [163, 8_192, 163], "hedged, then judged");
    before.save_snapshot(&path).unwrap();

    // After the restart the shard is full and evicts at once; a shard that had not learned it
    // had filled long ago would hedge again for a period.
    let after = adaptive(16_384);
    assert_eq!(after.load_snapshot(&path).unwrap().shapes_restored, 1);
    let mut windows = vec![after.window_sizes()[0]];
    for key in skewed(0x2545_F491_4F6C_DD1D, 100_000) {
        let window = read_through(&after, key);
        if windows.last() != Some(&window) {
            windows.push(window);
        }
    }
    assert_eq!(windows, [163]);
}

#[test]
fn format_1_files_still_load() {
    // Format 1: (format, policy, saved at, entries of (key, value, ttl, tags, queue, freq)),
    // without what the shards learned.
    type EntryV1 = (String, String, Option<u64>, Vec<String>, u8, u8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let clock = ManualClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
    let entries: Vec<EntryV1> = vec![
        ("a".into(), "1".into(), None, vec![], 0, 0),
        (
            "b".into(),
            "2".into(),
            Some(60_000),
            vec!["team".into()],
            0,
            0,
        ),
    ];
    let file = (1u32, Policy::TinyLfu, 1_000_000u64, entries);
    std::fs::write(&path, perf_core::codec::encode(&file).unwrap()).unwrap();
    let after = cache(&clock, Policy::TinyLfu, 100);
    let restored = after.load_snapshot(&path).unwrap();
    assert_eq!((restored.restored, restored.shapes_restored), (2, 0));
    assert_eq!(after.get("a").as_deref(), Some("1"));
    assert_eq!(after.invalidate_tag("team"), 1);

    let file = (99u32, Policy::TinyLfu, 1_000_000u64, Vec::<EntryV1>::new());
    std::fs::write(&path, perf_core::codec::encode(&file).unwrap()).unwrap();
    let err = after.load_snapshot(&path).unwrap_err();
    assert!(
        matches!(&err, Error::SnapshotIo { reason, .. } if reason.contains("format 99")),
        "{err}"
    );
}

#[tokio::test]
async fn a_tiered_cache_restarts_warm_from_its_l1_snapshot() {
    use perf_cache::tiered::{TieredCache, WriteOptions};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.snap");
    let tiered =
        || -> TieredCache<String> { TieredCache::builder().l1(Cache::new(1 << 20)).build() };
    let before = tiered();
    before
        .set(b"answer", "42".into(), WriteOptions::new().tags(&["math"]))
        .await;
    before
        .set(
            b"short",
            "s".into(),
            WriteOptions::new().ttl(Duration::from_secs(600)),
        )
        .await;
    // The tiered manager's L1 holds `Arc<V>` values, which serialize as `V`.
    assert_eq!(before.l1().unwrap().save_snapshot(&path).unwrap(), 2);

    let after = tiered();
    let restored = after.l1().unwrap().load_snapshot(&path).unwrap();
    assert_eq!(restored.restored, 2);
    assert_eq!(
        after.get(b"answer").await.as_deref().map(String::as_str),
        Some("42")
    );
    let left = after
        .l1()
        .unwrap()
        .time_to_live(b"short".as_slice())
        .unwrap();
    assert!(left.is_some_and(|d| d <= Duration::from_secs(600)));
    // Tags came back too: invalidating one goes through the manager.
    after.delete_by_tags(&["math"]).await;
    assert!(after.get(b"answer").await.is_none());
}
