//! `cache_tags`: what invalidating a tag costs as the cache grows. perf-cache keeps a tag →
//! entries index, so invalidating a tag of 10 entries should cost the same in a cache of 10k
//! entries as in one of 1M; a cache without an index (the plan's idiom: a scan of every
//! entry's tags) pays for every entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use perf_cache::l1::{Cache, EntryOptions, Unit};

use crate::harness::Bench;

/// Tagged entries per invalidation.
const TAGGED: u64 = 10;

/// A cache holding `entries` entries spread over 1,000 tags, with room for as many again (so
/// the measured inserts never evict).
fn filled(entries: u64) -> Cache<u64, u64> {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_bytes(2 * entries)
        .weigher(Unit)
        .build();
    let tags: Vec<EntryOptions> = (0..1_000)
        .map(|t| EntryOptions::new().tag(format!("bulk:{t}")))
        .collect();
    for k in 0..entries {
        cache.insert_with(k, k, tags[(k % 1_000) as usize].clone());
    }
    assert_eq!(cache.len() as u64, entries);
    cache
}

/// Inserts `TAGGED` entries under the tag `probe` and invalidates it, `iters` times.
fn insert_and_invalidate(cache: &Cache<u64, u64>, base: u64, iters: u64) {
    let probe = EntryOptions::new().tag("probe");
    for i in 0..iters {
        for j in 0..TAGGED {
            cache.insert_with(base + j, i, probe.clone());
        }
        let gone = cache.invalidate_tag("probe");
        debug_assert_eq!(gone as u64, TAGGED);
        black_box(gone);
    }
}

pub(crate) fn tag_invalidation(bench: &mut Bench) {
    let large = bench.pick(200_000u64, 1_000_000);
    let small = 10_000u64;
    let (big, little) = (filled(large), filled(small));
    let workload = |entries: u64| {
        format!("insert {TAGGED} entries under one tag and invalidate it, cache of {entries} entries in 1,000 other tags (ns per round)")
    };
    bench.compare_ns(
        workload(large),
        format!("perf-cache invalidate_tag, {large} entries"),
        |iters| insert_and_invalidate(&big, large, iters),
        format!("perf-cache invalidate_tag, {small} entries"),
        |iters| insert_and_invalidate(&little, small, iters),
    );
    // Without an index: every entry's tag is looked at on each invalidation.
    let mut pairs: Vec<(u64, u32)> = (0..large).map(|k| (k, (k % 1_000) as u32)).collect();
    const PROBE: u32 = u32::MAX;
    bench.compare_ns(
        workload(large),
        format!("perf-cache invalidate_tag, {large} entries"),
        |iters| insert_and_invalidate(&big, large, iters),
        "Vec<(key, tag)> push + retain (a scan of every entry)",
        |iters| {
            for _ in 0..iters {
                for j in 0..TAGGED {
                    pairs.push((large + j, PROBE));
                }
                pairs.retain(|&(_, tag)| tag != PROBE);
                black_box(pairs.len());
            }
        },
    );
    assert_eq!(big.len() as u64, large, "the probes left nothing behind");
}
