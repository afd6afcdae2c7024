//! The `batch_*` groups: perf-batch against the idioms it replaces.
//!
//! - overhead per item of a no-op function: `BatchProcessor::run` vs futures'
//!   `buffer_unordered`, tokio's `JoinSet` (bounded window) and a plain sequential loop;
//! - 65,536 timers of 100 µs with 256 in flight (8,192 in `--quick`);
//! - a slow consumer (100 ms per result): in-flight items keep progressing under
//!   `StreamProcessor::spawn`, while `buffer_unordered` only polls them when the consumer asks;
//! - I/O-bound items (1 ms) at concurrency 100: throughput as a share of concurrency ÷ latency;
//! - checkpoint overhead at the default interval (100 items, file store with fsync);
//! - ADAPTIVE vs FIXED when the item cost changes mid-run.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use perf_batch::checkpoint::{CheckpointStore, FileCheckpointStore};
use perf_batch::{BatchProcessor, ChunkStrategy, RetryPolicy, StreamProcessor};

use crate::harness::{median, Bench, Row};

/// A current-thread runtime with timers and I/O, as the `batch_*` groups use.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn processor(concurrency: usize) -> BatchProcessor<()> {
    BatchProcessor::new()
        .max_concurrency(concurrency)
        .retry(RetryPolicy::none())
}

/// Runs `a` and `b` alternately `reps` times and returns their median wall times in ms.
fn interleaved_ms(reps: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        a();
        ta.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        b();
        tb.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(&ta), median(&tb))
}

/// `n` no-op items through `p`, results collected.
pub(super) fn noop_batch(rt: &tokio::runtime::Runtime, p: &BatchProcessor<()>, n: u64) {
    let r = rt.block_on(p.run(0..n, |i| async move { Ok::<_, ()>(black_box(i)) }));
    black_box(r.results.len());
}

/// `n` no-op items through futures' `buffer_unordered(conc)`, results collected.
pub(super) fn noop_buffer_unordered(rt: &tokio::runtime::Runtime, conc: usize, n: u64) {
    let v: Vec<u64> = rt.block_on(
        futures::stream::iter(0..n)
            .map(|i| async move { black_box(i) })
            .buffer_unordered(conc)
            .collect(),
    );
    black_box(v.len());
}

/// `n` no-op items as tokio tasks, at most `conc` in a `JoinSet` at once, results collected.
pub(super) fn noop_joinset(rt: &tokio::runtime::Runtime, conc: usize, n: u64) {
    let v = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n {
            if set.len() >= conc {
                out.push(set.join_next().await.unwrap().unwrap());
            }
            set.spawn(async move { black_box(i) });
        }
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    black_box(v.len());
}

/// Overhead per item of a no-op item function.
pub(crate) fn overhead(bench: &mut Bench) {
    let rt = runtime();
    let conc = 64;
    let p = processor(conc);
    let ours = |iters: u64| noop_batch(&rt, &p, iters);
    let buffered = |iters: u64| noop_buffer_unordered(&rt, conc, iters);
    let joinset = |iters: u64| noop_joinset(&rt, conc, iters);
    let plain = |iters: u64| {
        let v = rt.block_on(async {
            let mut out = Vec::with_capacity(iters as usize);
            for i in 0..iters {
                out.push(async move { black_box(i) }.await);
            }
            out
        });
        black_box(v.len());
    };
    let workload = format!("no-op async item, concurrency {conc}, results collected (ns/item)");
    let vs_buffered = bench.compare_ns(
        workload.clone(),
        "perf-batch BatchProcessor::run",
        ours,
        "futures buffer_unordered",
        buffered,
    );
    bench.compare_ns(
        workload.clone(),
        "perf-batch BatchProcessor::run",
        ours,
        "tokio JoinSet (window of 64)",
        joinset,
    );
    let vs_plain = bench.compare_ns(
        workload,
        "perf-batch BatchProcessor::run",
        ours,
        "plain sequential loop",
        plain,
    );
    let overhead = vs_plain.subject_value - vs_plain.peer_value;
    bench.record(
        Row::new(
            "overhead per item over a plain loop (goal ≤ 200 ns)",
            "ns/item",
            false,
        )
        .subject("perf-batch BatchProcessor::run", overhead)
        .peer(
            "futures buffer_unordered",
            vs_buffered.peer_value - vs_plain.peer_value,
        )
        .note("each figure minus the plain loop's ns/item measured in the same group"),
    );
}

/// 65,536 timers of 100 µs with 256 in flight.
pub(crate) fn timers(bench: &mut Bench) {
    let rt = runtime();
    let n: u64 = bench.pick(8_192, 65_536);
    let reps = bench.pick(3, 7);
    let conc = 256;
    let p = processor(conc).chunk_size(1024);
    let (ours, peer) = interleaved_ms(
        reps,
        || {
            let r = rt.block_on(p.run(0..n, |i| async move {
                tokio::time::sleep(Duration::from_micros(100)).await;
                Ok::<_, ()>(i)
            }));
            assert_eq!(r.results.len(), n as usize);
        },
        || {
            let v: Vec<u64> = rt.block_on(
                futures::stream::iter(0..n)
                    .map(|i| async move {
                        tokio::time::sleep(Duration::from_micros(100)).await;
                        i
                    })
                    .buffer_unordered(conc)
                    .collect(),
            );
            assert_eq!(v.len(), n as usize);
        },
    );
    bench.record(
        Row::new(
            format!("{n} timers of 100 µs, {conc} in flight (ms per run)"),
            "ms",
            false,
        )
        .subject("perf-batch BatchProcessor::run", ours)
        .peer("futures buffer_unordered", peer)
        .note(format!(
            "median of {reps} interleaved runs; tokio timers have 1 ms resolution, so the floor is about {} ms",
            n / conc as u64
        )),
    );
}

/// In-flight items keep progressing while the consumer of results is slow.
pub(crate) fn slow_consumer(bench: &mut Bench) {
    let rt = runtime();
    let n: u64 = bench.pick(8, 16);
    let conc = 8;
    let consumer = Duration::from_millis(100);
    // Each item is five sequential 4 ms steps (a paged fetch): 20 ms of work.
    async fn item(i: u64, last_done: Arc<Mutex<Option<Instant>>>) -> u64 {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        *last_done.lock().unwrap() = Some(Instant::now());
        i
    }
    let run = |spawned: bool| {
        rt.block_on(async {
            let last_done = Arc::new(Mutex::new(None));
            let start = Instant::now();
            let ld = last_done.clone();
            let mut count = 0;
            if spawned {
                let p = StreamProcessor::new()
                    .buffer_size(1)
                    .max_concurrent_batches(conc);
                let mut out = p.spawn(futures::stream::iter(0..n), move |b: Vec<u64>| {
                    let ld = ld.clone();
                    async move { Ok::<_, ()>(vec![item(b[0], ld).await]) }
                });
                while let Some(b) = out.next().await {
                    black_box(b);
                    count += 1;
                    tokio::time::sleep(consumer).await;
                }
            } else {
                let mut out = futures::stream::iter(0..n)
                    .map(move |i| item(i, ld.clone()))
                    .buffer_unordered(conc);
                while let Some(v) = out.next().await {
                    black_box(v);
                    count += 1;
                    tokio::time::sleep(consumer).await;
                }
            }
            assert_eq!(count, n);
            let done = last_done.lock().unwrap().unwrap();
            (done - start).as_secs_f64() * 1e3
        })
    };
    let ours = run(true);
    let peer = run(false);
    bench.record(
        Row::new(
            format!(
                "{n} items of 5×4 ms steps, {conc} in flight, consumer takes 100 ms per result: ms until every item's work is done"
            ),
            "ms",
            false,
        )
        .subject("perf-batch StreamProcessor::spawn", ours)
        .peer("futures buffer_unordered", peer)
        .note("one run each; the peer's futures advance only while the consumer polls, one step per result"),
    );
}

/// I/O-bound items at concurrency 100: throughput against concurrency ÷ latency.
pub(crate) fn io_bound(bench: &mut Bench) {
    let rt = runtime();
    let n: u64 = bench.pick(5_000, 50_000);
    let conc = 100;
    let reps = bench.pick(3, 5);
    let p = processor(conc).chunk_size(1000);
    // Returns (items/s, mean latency of one item in s).
    let measure = |ours: bool| {
        let total_latency = Arc::new(AtomicU64::new(0));
        let item = {
            let total = total_latency.clone();
            move |i: u64| {
                let total = total.clone();
                async move {
                    let t = Instant::now();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    total.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    i
                }
            }
        };
        let start = Instant::now();
        if ours {
            let r = rt.block_on(p.run(0..n, |i| {
                let f = item(i);
                async move { Ok::<_, ()>(f.await) }
            }));
            assert_eq!(r.results.len(), n as usize);
        } else {
            let v: Vec<u64> = rt.block_on(
                futures::stream::iter(0..n)
                    .map(item)
                    .buffer_unordered(conc)
                    .collect(),
            );
            assert_eq!(v.len(), n as usize);
        }
        let secs = start.elapsed().as_secs_f64();
        let mean_latency = total_latency.load(Ordering::Relaxed) as f64 / 1e9 / n as f64;
        (n as f64 / secs, mean_latency)
    };
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let (mut ours_lat, mut peer_lat) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (t, l) = measure(true);
        ours.push(100.0 * t / (conc as f64 / l));
        ours_lat.push(l);
        let (t, l) = measure(false);
        peer.push(100.0 * t / (conc as f64 / l));
        peer_lat.push(l);
    }
    bench.record(
        Row::new(
            format!("{n} items of 1 ms I/O, concurrency {conc}: throughput as % of concurrency ÷ measured latency (goal ≥ 95 %)"),
            "%",
            true,
        )
        .subject("perf-batch BatchProcessor::run", median(&ours))
        .peer("futures buffer_unordered", median(&peer))
        .note(format!(
            "median of {reps} runs; measured item latency {:.2} ms / {:.2} ms (tokio's 1 ms timer rounds up)",
            median(&ours_lat) * 1e3,
            median(&peer_lat) * 1e3
        )),
    );
}

/// Checkpoint overhead at the default interval.
pub(crate) fn checkpoint(bench: &mut Bench) {
    let rt = runtime();
    let n: u64 = bench.pick(5_000, 20_000);
    let reps = bench.pick(3, 5);
    let config = perf_core::config::BatchConfig::default();
    let interval = config.checkpoint_interval;
    let base: BatchProcessor<()> = BatchProcessor::from_config(&config)
        .unwrap()
        .retry(RetryPolicy::none());
    // On the target directory's disk, so fsync is real (a tmpfs would make it free).
    let dir = tempfile::tempdir_in(perf_testkit::support::target_dir()).unwrap();
    let store = FileCheckpointStore::new(dir.path());
    let job = AtomicU64::new(0);
    let item = |i: u64| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, ()>(i.wrapping_mul(0x9E37_79B9))
    };
    for (label, p) in [
        ("defaults (500 ms minimum gap)", base.clone()),
        (
            "no minimum gap",
            base.clone().checkpoint_min_gap(Duration::ZERO),
        ),
    ] {
        let segments = AtomicU64::new(0);
        let (with, without) = interleaved_ms(
            reps,
            || {
                let name = format!("bench-{}", job.fetch_add(1, Ordering::Relaxed));
                let r = rt
                    .block_on(p.run_checkpointed(&store, &name, 0..n, item))
                    .unwrap();
                assert_eq!(r.results.len(), n as usize);
                assert!(r.checkpoint_errors.is_empty());
                segments.fetch_add(r.checkpoints as u64, Ordering::Relaxed);
            },
            || {
                let r = rt.block_on(p.run(0..n, item));
                assert_eq!(r.results.len(), n as usize);
            },
        );
        bench.record(
            Row::new(
                format!(
                    "{n} items of 1 ms I/O, concurrency {}, checkpoint every {interval} items, {label}, file store with fsync: ms per run (goal: < 1 % overhead)",
                    config.max_concurrency
                ),
                "ms",
                false,
            )
            .subject("perf-batch run_checkpointed", with)
            .peer("perf-batch run (no checkpoints)", without)
            .note(format!(
                "median of {reps} interleaved runs; overhead {:+.2} % (includes the final segment's fsync before the run returns); {:.0} segments per run, written in the background",
                100.0 * (with - without) / without,
                segments.load(Ordering::Relaxed) as f64 / reps as f64
            )),
        );
    }
    for j in 0..job.load(Ordering::Relaxed) {
        rt.block_on(store.clear(&format!("bench-{j}"))).unwrap();
    }
}

/// ADAPTIVE vs FIXED when the item cost changes tenfold mid-run.
pub(crate) fn adaptive(bench: &mut Bench) {
    let rt = runtime();
    let n: u64 = bench.pick(2_000, 8_000);
    let target = Duration::from_millis(20);
    let spin = |d: Duration| {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    };
    let run = |strategy: ChunkStrategy| {
        let ends: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let e = ends.clone();
        let p = processor(1)
            .strategy(strategy)
            .chunk_size(1000)
            .chunk_bounds(1, 100_000)
            .target_chunk_time(target)
            .on_progress(move |p| e.lock().unwrap().push(p.elapsed));
        let start = Instant::now();
        let r = rt.block_on(p.run(0..n, |i| {
            // 20 µs per item for the first half, 200 µs after.
            spin(Duration::from_micros(if i < n / 2 { 20 } else { 200 }));
            async move { Ok::<_, ()>(i) }
        }));
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(r.results.len(), n as usize);
        let ends = ends.lock().unwrap();
        // Chunk durations from consecutive progress reports (the last report is the final one).
        let mut prev = Duration::ZERO;
        let mut deviations = Vec::new();
        for &end in ends.iter().take(ends.len().saturating_sub(1)) {
            let d = end.saturating_sub(prev).as_secs_f64();
            deviations.push(100.0 * (d - target.as_secs_f64()).abs() / target.as_secs_f64());
            prev = end;
        }
        let mean_dev = deviations.iter().sum::<f64>() / deviations.len().max(1) as f64;
        (mean_dev, n as f64 / secs, r.chunk_sizes.len())
    };
    let (fixed_dev, fixed_rate, fixed_chunks) = run(ChunkStrategy::Fixed);
    let (adaptive_dev, adaptive_rate, adaptive_chunks) = run(ChunkStrategy::Adaptive);
    bench.record(
        Row::new(
            format!(
                "{n} items, cost 20 µs then 200 µs, target chunk 20 ms: mean |chunk time − target| (%)"
            ),
            "%",
            false,
        )
        .subject("perf-batch ADAPTIVE", adaptive_dev)
        .peer("perf-batch FIXED (1000 items)", fixed_dev)
        .note(format!(
            "{adaptive_chunks} vs {fixed_chunks} chunks; ADAPTIVE re-sizes the remaining chunks during the run"
        )),
    );
    bench.record(
        Row::new(
            format!("{n} items, cost 20 µs then 200 µs: items/s (same work)"),
            "items/s",
            true,
        )
        .subject("perf-batch ADAPTIVE", adaptive_rate)
        .peer("perf-batch FIXED (1000 items)", fixed_rate)
        .note("shows re-sizing costs no throughput; one run each"),
    );
}
