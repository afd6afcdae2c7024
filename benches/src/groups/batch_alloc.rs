//! `batch_alloc`: heap allocations per item of a no-op batch, perf-batch against futures'
//! `buffer_unordered` and tokio's `JoinSet`: perf-batch allocates per chunk, not per item.
//!
//! The count comes from glibc's allocation trace (`mtrace`, from `libc_malloc_debug.so`
//! preloaded into a child process of this binary), switched on around the measured run only,
//! so every `malloc`/`realloc` the run makes is counted, whoever makes it. Without glibc's
//! debug library the group records a skip.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use perf_batch::{BatchProcessor, RetryPolicy};

use super::batch_child::{child_command, field, param, result_line};
use crate::harness::{Bench, Row};

const CONCURRENCY: usize = 64;
const CHUNK: usize = 1000;
const DEBUG_LIB: &str = "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0";

extern "C" {
    // glibc: start and stop writing every allocation to the file named by `MALLOC_TRACE`.
    fn mtrace();
    fn muntrace();
}

/// Allocations (`malloc` and `realloc`) in a glibc trace file.
fn count_allocations(trace: &Path) -> u64 {
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with('@') && (l.contains(" + ") || l.contains(" > ")))
        .count() as u64
}

/// Runs `f` with glibc's trace on and returns the allocations it made.
fn traced(trace: &Path, f: impl FnOnce()) -> u64 {
    // SAFETY: plain glibc calls without arguments; the tokio runtime here has one thread, so
    // no allocation races the switch.
    unsafe { mtrace() };
    f();
    // SAFETY: as above.
    unsafe { muntrace() };
    count_allocations(trace)
}

/// Child entry: prints `BATCH_ALLOC <subject>=<allocations>` for `PERFKIT_BENCH_ITEMS` items.
pub(crate) fn child() -> ExitCode {
    let n: u64 = param("PERFKIT_BENCH_ITEMS");
    let trace: PathBuf = param::<String>("MALLOC_TRACE").into();
    let rt = super::batch::runtime();
    let p: BatchProcessor<()> = BatchProcessor::new()
        .max_concurrency(CONCURRENCY)
        .chunk_size(CHUNK)
        .retry(RetryPolicy::none());
    let ours = || super::batch::noop_batch(&rt, &p, n);
    let buffered = || super::batch::noop_buffer_unordered(&rt, CONCURRENCY, n);
    let joinset = || super::batch::noop_joinset(&rt, CONCURRENCY, n);
    // One untraced run of each first: lazy runtime and thread-local set-up is not per item.
    ours();
    buffered();
    joinset();
    let counts = [
        ("perf_batch", traced(&trace, ours)),
        ("buffer_unordered", traced(&trace, buffered)),
        ("joinset", traced(&trace, joinset)),
    ];
    let fields: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("BATCH_ALLOC {}", fields.join(" "));
    ExitCode::SUCCESS
}

/// Allocations of each subject for `n` items, from a child process.
fn run_child(n: u64) -> [u64; 3] {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("malloc.trace");
    let mut cmd = child_command("batch_alloc");
    cmd.env("PERFKIT_BENCH_ITEMS", n.to_string())
        .env("MALLOC_TRACE", &trace)
        .env("LD_PRELOAD", DEBUG_LIB);
    let line = result_line(cmd, "BATCH_ALLOC ");
    [
        field(&line, "perf_batch"),
        field(&line, "buffer_unordered"),
        field(&line, "joinset"),
    ]
}

/// Allocations per item at two batch sizes: perf-batch's count grows with chunks, the peers'
/// with items.
pub(crate) fn allocations(bench: &mut Bench) {
    if !Path::new(DEBUG_LIB).exists() {
        bench.skip(format!("needs glibc's {DEBUG_LIB} to trace allocations"));
        return;
    }
    let (small, large) = (10_000u64, bench.pick(100_000u64, 200_000));
    let a = run_child(small);
    let b = run_child(large);
    let per_1000 = |i: usize| 1000.0 * (b[i] - a[i].min(b[i])) as f64 / (large - small) as f64;
    let chunks = (large - small) / CHUNK as u64;
    for (i, peer) in [
        (1, "futures buffer_unordered"),
        (2, "tokio JoinSet (window of 64)"),
    ] {
        bench.record(
            Row::new(
                format!("no-op async items, concurrency {CONCURRENCY}, chunks of {CHUNK}: heap allocations per 1,000 items"),
                "allocs/1k items",
                false,
            )
            .subject("perf-batch BatchProcessor::run", per_1000(0))
            .peer(peer, per_1000(i))
            .note(format!(
                "1000 × (allocations at {large} items − at {small}) ÷ {} items, glibc mtrace in a child process; perf-batch: {} → {} allocations, {:.2} per chunk of {CHUNK}; peer: {} → {}",
                large - small,
                a[0],
                b[0],
                (b[0] - a[0].min(b[0])) as f64 / chunks as f64,
                a[i],
                b[i]
            )),
        );
    }
}
