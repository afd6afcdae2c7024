//! L1's honest byte bound: a child process fills a cache far beyond its budget with keys and
//! values of mixed sizes, and the parent checks the child's resident memory growth against the
//! budget, both ways (not above it by more than 5 %, and not far below: the cache really holds
//! about its budget of memory). Once with byte strings, once with structured values whose
//! numbers occupy far more memory than their encoding (the encoded size as the weight let
//! resident memory grow to 2.1 times the budget).

use perf_cache::l1::Cache;
use perf_core::resource::ResourceMonitor;
use serde::Serialize;

const CHILD_VAR: &str = "PERF_CACHE_L1_MEMORY_CHILD";
const STRUCTURED_CHILD_VAR: &str = "PERF_CACHE_L1_MEMORY_STRUCTURED_CHILD";
const BUDGET: u64 = 128 << 20;

/// SplitMix64's finalizer: a deterministic pseudo-random number for each `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Half small values (1..64 B), 30 % medium (64 B..1 KiB), 20 % large (1..16 KiB).
fn value_len(r: u64) -> usize {
    let (class, within) = (r % 10, (r / 10) as usize);
    match class {
        0..=4 => 1 + within % 63,
        5..=7 => 64 + within % 960,
        _ => 1024 + within % (15 * 1024),
    }
}

#[test]
#[ignore = "entry point of the child process of `resident_memory_stays_within_the_budget`"]
fn memory_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let monitor = ResourceMonitor::new().unwrap();
    let cache: Cache<Vec<u8>, Vec<u8>> = Cache::builder().max_bytes(BUDGET).build();
    let before = monitor.rss_bytes();
    let mut inserted = 0u64;
    let mut i = 0u64;
    // Two budgets' worth of payload over a key space about twice what fits: evictions,
    // replacements and reinsertions all happen, as in a long-running process.
    while inserted < 2 * BUDGET {
        let id = mix(3 * i) % 1_000_000;
        let mut key = id.to_le_bytes().to_vec();
        key.resize(8 + (mix(3 * i + 1) % 41) as usize, (id % 251) as u8);
        let value = vec![(i % 256) as u8; value_len(mix(3 * i + 2))];
        inserted += (key.len() + value.len()) as u64;
        cache.insert(key, value);
        if i % 4 == 0 {
            let probe = (mix(i) % 1_000_000).to_le_bytes();
            std::hint::black_box(cache.get(probe.as_slice()));
        }
        i += 1;
    }
    report(&monitor, before, &cache.stats());
}

/// Prints the child's result line: resident memory before and after filling, and the cache's
/// own account.
fn report(monitor: &ResourceMonitor, before: u64, s: &perf_cache::l1::CacheStats) {
    let after = monitor.rss_bytes();
    println!(
        "MEMORY_RESULT budget={BUDGET} rss_before={before} rss_after={after} bytes={} entries={} evictions={}",
        s.bytes, s.entries, s.evictions
    );
}

/// A user's row: numbers that postcard writes in a byte or two but memory holds in eight.
#[derive(Clone, Serialize)]
struct Row {
    id: u64,
    scores: Vec<u64>,
    labels: Vec<String>,
    flag: Option<u32>,
}

#[test]
#[ignore = "entry point of the child process of `resident_memory_stays_within_the_budget_for_structured_values`"]
fn structured_memory_child() {
    if std::env::var_os(STRUCTURED_CHILD_VAR).is_none() {
        return;
    }
    let monitor = ResourceMonitor::new().unwrap();
    let cache: Cache<u64, Row> = Cache::builder().max_bytes(BUDGET).build();
    let before = monitor.rss_bytes();
    let mut inserted = 0u64;
    let mut i = 0u64;
    while inserted < 2 * BUDGET {
        let id = mix(3 * i) % 1_000_000;
        let r = mix(3 * i + 1);
        let scores = vec![r % 100; value_len(mix(3 * i + 2)) / 8 + 1];
        let labels = (0..r % 4).map(|j| format!("label {j} of {id}")).collect();
        let row = Row {
            id,
            scores,
            labels,
            flag: (r % 3 == 0).then_some(7),
        };
        inserted += 8 * row.scores.len() as u64;
        cache.insert(id, row);
        if i % 4 == 0 {
            std::hint::black_box(cache.get(&(mix(i) % 1_000_000)));
        }
        i += 1;
    }
    report(&monitor, before, &cache.stats());
}

/// Runs `child` in a fresh process and checks its resident memory growth against the budget.
fn assert_resident_memory_within_budget(child: &str, var: &str) {
    if !std::path::Path::new("/proc/self/statm").exists() {
        eprintln!("skipped: needs Linux /proc to read the resident set size");
        return;
    }
    let result = perf_testkit::run_child_test(child, var, "MEMORY_RESULT");
    let line = &result.line;
    eprintln!("{line}");
    let field = |name: &str| result.u64(name);
    let growth = field("rss_after").saturating_sub(field("rss_before"));
    let budget = field("budget");
    assert!(field("evictions") > 0, "the cache never filled: {line}");
    assert!(field("bytes") <= budget, "{line}");
    assert!(
        field("bytes") >= budget / 100 * 95,
        "the cache holds much less than its budget: {line}"
    );
    assert!(
        growth <= budget / 100 * 105,
        "resident memory grew by {growth} bytes for a budget of {budget}: {line}"
    );
    assert!(
        growth >= budget / 100 * 80,
        "resident memory grew by only {growth} bytes for a budget of {budget}: the weigher overcharges: {line}"
    );
}

#[test]
fn resident_memory_stays_within_the_budget() {
    assert_resident_memory_within_budget("l1_memory::memory_child", CHILD_VAR);
}

#[test]
fn resident_memory_stays_within_the_budget_for_structured_values() {
    assert_resident_memory_within_budget(
        "l1_memory::structured_memory_child",
        STRUCTURED_CHILD_VAR,
    );
}
