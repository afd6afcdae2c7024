//! The registered benchmark groups. To add one, write `fn(&mut Bench)` in a module next to this
//! file and add a [`Group`] line to [`groups`]; `cargo xtask bench <FILTER>` then runs it.

mod batch;
mod batch_alloc;
mod batch_child;
mod batch_distributed;
mod batch_memory;
mod cache;
mod cache_latency;
mod cache_redis;
mod cache_restart;
mod cache_seeds;
mod cache_tags;
mod cache_warming;
mod core;
mod cost;
mod harness_selfcheck;
mod query;

use crate::harness::Group;

pub use batch_child::run_child_if_requested;

/// Every benchmark group, in the order they run.
///
/// ```
/// let names: Vec<&str> = perfkit_benches::groups::groups().iter().map(|g| g.name).collect();
/// assert!(names.contains(&"harness_selfcheck"));
/// ```
pub fn groups() -> Vec<Group> {
    vec![
        Group::new(
            "harness_selfcheck",
            "the harness on itself: an A/A run (identical code, expect 1.00x) and Vec vs VecDeque",
            harness_selfcheck::run,
        ),
        Group::new(
            "core_histogram",
            "perf-core LatencyHistogram vs hdrhistogram behind a Mutex, 1 and 2 threads",
            core::histogram,
        ),
        Group::new(
            "core_codec",
            "perf-core versioned codec vs bare postcard",
            core::codec,
        ),
        Group::new(
            "core_keys",
            "perf-core stable keys vs md5 of JSON (the plan's idiom)",
            core::keys,
        ),
        Group::new(
            "core_resource",
            "perf-core resource monitor vs a bare /proc read; cost of a full sample",
            core::resource,
        ),
        // Other crates' groups go here, e.g.
        // Group::new("cache_lru", "perf-cache LRU vs the lru crate", cache_lru::run),
        Group::new(
            "batch_overhead",
            "perf-batch per-item overhead (no-op items) vs futures buffer_unordered, tokio JoinSet, a plain loop",
            batch::overhead,
        ),
        Group::new(
            "batch_timers",
            "perf-batch vs buffer_unordered: 65,536 timers of 100 µs, 256 in flight",
            batch::timers,
        ),
        Group::new(
            "batch_slow_consumer",
            "perf-batch StreamProcessor::spawn vs buffer_unordered when the consumer takes 100 ms per result",
            batch::slow_consumer,
        ),
        Group::new(
            "batch_io_bound",
            "perf-batch vs buffer_unordered: 1 ms I/O items at concurrency 100, % of concurrency ÷ latency",
            batch::io_bound,
        ),
        Group::new(
            "batch_checkpoint",
            "perf-batch checkpoint overhead at the default interval (file store, fsync) vs no checkpoints",
            batch::checkpoint,
        ),
        Group::new(
            "batch_adaptive",
            "perf-batch ADAPTIVE vs FIXED chunking when the item cost changes mid-run",
            batch::adaptive,
        ),
        Group::new(
            "batch_alloc",
            "perf-batch vs buffer_unordered and JoinSet: heap allocations per item (per chunk, not per item)",
            batch_alloc::allocations,
        ),
        Group::new(
            "batch_memory",
            "perf-batch MEMORY_BASED vs FIXED: peak RSS against a 512 MiB threshold on 1–1.25 GiB of lazily made documents",
            batch_memory::memory_based,
        ),
        Group::new(
            "batch_distributed",
            "perf-batch over Redis Streams: items/s with 1, 2 and 4 worker processes, scaling vs 1",
            batch_distributed::distributed,
        ),
        Group::new(
            "cache_hit_ratio_traces",
            "perf-cache L1 hit % vs moka, quick_cache, lru on OLTP, P3, LIRS loop/glimpse, next to the README's reference policies",
            cache::hit_ratio_traces,
        ),
        Group::new(
            "cache_hit_ratio_p12",
            "perf-cache L1 hit % vs moka, quick_cache, lru on the ARC P12 trace (13.2M requests)",
            cache::hit_ratio_p12,
        ),
        Group::new(
            "cache_hit_ratio_synthetic",
            "perf-cache L1 hit % vs moka, quick_cache, lru and OPT on Zipf, Zipf+scans and loops",
            cache::hit_ratio_synthetic,
        ),
        Group::new(
            "cache_seed_sensitivity",
            "perf-cache L1 hit % over hash seeds 1-8 on the goal rows: the worst seed against the goal",
            cache_seeds::hit_ratio_seeds,
        ),
        Group::new(
            "cache_seed_sensitivity_p12",
            "perf-cache L1 hit % over hash seeds 1-8 on the P12 goal rows: the worst seed against the goal",
            cache_seeds::hit_ratio_seeds_p12,
        ),
        Group::new(
            "cache_throughput",
            "perf-cache L1 vs moka, quick_cache, Mutex<lru>: Zipf(0.99), 90 % reads, 1 and 2 threads",
            cache::throughput,
        ),
        Group::new(
            "cache_latency",
            "perf-cache L1 vs moka, quick_cache, Mutex<lru>: per-operation p50 / p99 / p99.9 / max, fill from empty and read-through churn",
            cache_latency::latency,
        ),
        Group::new(
            "cache_tags",
            "perf-cache L1 tag invalidation: 10 tagged entries in a cache of 1M vs 10k entries, and vs a scan of every entry",
            cache_tags::tag_invalidation,
        ),
        Group::new(
            "cache_memory",
            "perf-cache L1 vs moka, quick_cache, lru: heap bytes per entry at 1M entries",
            cache::memory,
        ),
        Group::new(
            "cache_weigher",
            "perf-cache weighers: bytes charged vs allocated, and ns per weigh, MemorySize vs EncodedSize",
            cache::weighers,
        ),
        Group::new(
            "cache_redis",
            "perf-cache Redis L2 pipelined get/set ops/s vs redis-benchmark on the same server, 1 and 50 clients",
            cache_redis::l2_vs_redis_benchmark,
        ),
        Group::new(
            "cache_warming_l1",
            "perf-cache Warmer into L1 items/s vs insert loops of moka, quick_cache and perf-cache's L1",
            cache_warming::l1,
        ),
        Group::new(
            "cache_warming_redis",
            "perf-cache Warmer into L1 + Redis items/s vs the redis crate: one SET per round trip, and pipelined",
            cache_warming::redis,
        ),
        Group::new(
            "cache_coherency",
            "perf-cache cross-process L1 coherency: staleness after a set, two managers sharing Redis",
            cache_redis::coherency_staleness,
        ),
        Group::new(
            "cache_redis_restart",
            "perf-cache: a private Redis killed and restarted under load; time until L2 is used again vs the 1 s target, failed reads",
            cache_restart::restart_under_load,
        ),
        Group::new(
            "cost_count",
            "perf-cost token counting MB/s and tokens/s vs tiktoken-rs and bpe-openai (same counts), plus 1 MiB one-piece texts",
            cost::counting,
        ),
        Group::new(
            "cost_track",
            "perf-cost CostTracker::track events/s and report cost vs the plan's event list",
            cost::tracking,
        ),
        Group::new(
            "cost_ledger",
            "perf-cost reserve + commit pairs/s on the Redis and PostgreSQL ledgers vs a 2-round-trip floor",
            cost::ledgers,
        ),
        Group::new(
            "query_fingerprint",
            "perf-query fingerprint throughput (queries/s) vs sqlparser parse alone; full SQL analysis cost",
            query::fingerprint,
        ),
        Group::new(
            "query_workload",
            "perf-query on a generated 1M-order shop (--quick: 50k): index speedups, slow-query recall, N+1 reduction, result-cache repeats",
            query::workload,
        ),
    ]
}
