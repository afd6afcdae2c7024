//! The registered benchmark groups. To add one, write `fn(&mut Bench)` in a module next to this
//! file and add a [`Group`] line to [`groups`]; `cargo xtask bench <FILTER>` then runs it.

mod core;
mod harness_selfcheck;

use crate::harness::Group;

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
    ]
}
