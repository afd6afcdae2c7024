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
