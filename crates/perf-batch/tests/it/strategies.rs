//! Chunking strategies: ADAPTIVE learns the rate during the run, DYNAMIC follows load,
//! MEMORY_BASED keeps RSS under its threshold (with a fake probe, and with real allocations in
//! a child process whose peak RSS the kernel reports).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_batch::{BatchProcessor, BatchStatus, ChunkStrategy, LoadProbe, LoadSample};
use perf_core::clock::ManualClock;

#[tokio::test]
async fn adaptive_resizes_remaining_chunks_when_item_cost_changes() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let p = BatchProcessor::new()
        .strategy(ChunkStrategy::Adaptive)
        .chunk_size(10)
        .max_concurrency(1)
        .target_chunk_time(Duration::from_secs(1))
        .clock(clock.shared());
    // Items cost 10 ms each for the first 1000, then 100 ms each.
    let r = p
        .run(0..1500u32, move |i| {
            let cost = if i < 1000 { 10 } else { 100 };
            c.advance(Duration::from_millis(cost));
            async move { Ok::<_, ()>(i) }
        })
        .await;
    assert_eq!(r.status, BatchStatus::Completed);
    let sizes = &r.chunk_sizes;
    assert_eq!(sizes[0], 10, "starts at chunk_size");
    assert_eq!(sizes[1], 100, "100 items/s × 1 s after the first chunk");
    // After the cost change the size falls to about 10 (10 items/s × 1 s).
    let tail = &sizes[sizes.len() - 5..sizes.len() - 1];
    assert!(tail.iter().all(|&s| (10..=12).contains(&s)), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 1500);
}

#[derive(Debug, Default)]
struct FakeProbe {
    cpu: Mutex<f32>,
    rss: AtomicU64,
}

impl LoadProbe for FakeProbe {
    fn sample(&self) -> LoadSample {
        LoadSample {
            cpu_percent: *self.cpu.lock().unwrap(),
            memory_percent: 0.0,
            rss_bytes: self.rss.load(Ordering::SeqCst),
        }
    }
    fn rss_bytes(&self) -> u64 {
        self.rss.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn dynamic_shrinks_chunks_when_the_machine_gets_busy() {
    let probe = Arc::new(FakeProbe::default());
    let pr = probe.clone();
    let p = BatchProcessor::new()
        .strategy(ChunkStrategy::Dynamic)
        .chunk_size(100)
        .max_concurrency(1)
        .load_probe(probe.clone());
    let r = p
        .run(0..1000u32, move |i| {
            if i == 300 {
                *pr.cpu.lock().unwrap() = 100.0;
            }
            async move { Ok::<_, ()>(i) }
        })
        .await;
    assert_eq!(r.status, BatchStatus::Completed);
    // 100 % CPU and 0 % memory: half the base size.
    assert_eq!(&r.chunk_sizes[..4], &[100, 100, 100, 100]);
    assert!(
        r.chunk_sizes[4..].iter().all(|&s| s == 50),
        "{:?}",
        r.chunk_sizes
    );
}

#[tokio::test]
async fn memory_based_sizes_from_rss_growth_and_drains_over_the_threshold() {
    const MB: u64 = 1 << 20;
    let probe = Arc::new(FakeProbe::default());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let starts: Arc<Mutex<Vec<(u32, usize)>>> = Arc::default();
    let p = BatchProcessor::new()
        .strategy(ChunkStrategy::MemoryBased)
        .chunk_size(10)
        .max_concurrency(4)
        .memory_threshold_bytes(50 * MB)
        .load_probe(probe.clone());
    let (pr, inf, st) = (probe.clone(), in_flight.clone(), starts.clone());
    let r = p
        .run(0..80u32, move |i| {
            let (pr, inf, st) = (pr.clone(), inf.clone(), st.clone());
            async move {
                let now = inf.fetch_add(1, Ordering::SeqCst) + 1;
                st.lock().unwrap().push((i, now));
                tokio::task::yield_now().await;
                // Every finished item keeps 1 MiB.
                pr.rss.fetch_add(MB, Ordering::SeqCst);
                inf.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(i)
            }
        })
        .await;
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(r.peak_rss_bytes, Some(80 * MB));
    let sizes = &r.chunk_sizes;
    // Nothing is measured before the first chunk: a probe of `max_concurrency` items.
    assert_eq!(sizes[0], 4);
    // Over the threshold every chunk is one item, started only once nothing else runs.
    let first_single = sizes.iter().position(|&s| s == 1).unwrap();
    let from: usize = sizes[..first_single].iter().sum();
    assert!(from <= 60, "{sizes:?}");
    assert!(sizes[first_single..].iter().all(|&s| s == 1), "{sizes:?}");
    let starts = starts.lock().unwrap();
    assert!(starts
        .iter()
        .filter(|(i, _)| *i as usize >= from)
        .all(|(_, n)| *n == 1));
}

const MEMORY_CHILD_VAR: &str = "PERF_BATCH_MEMORY_CHILD";
const MIB: u64 = 1 << 20;

/// This process's peak RSS since the last reset, from the kernel (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Resets the kernel's peak RSS of this process to the current RSS.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Runs 96 items of 2 MiB each (192 MiB in all), generated lazily by the input iterator and
/// freed when the item finishes, with a threshold 48 MiB above the starting RSS. Returns
/// (threshold, kernel peak RSS, chunk sizes).
async fn memory_workload(strategy: ChunkStrategy) -> (u64, u64, Vec<usize>) {
    let monitor = perf_core::resource::ResourceMonitor::new().unwrap();
    reset_peak_rss();
    let threshold = monitor.rss_bytes() + 48 * MIB;
    let p = BatchProcessor::new()
        .strategy(strategy)
        .chunk_size(64)
        .max_concurrency(4)
        .memory_threshold_bytes(threshold);
    // Each input item is a 2 MiB document, every page written so it is resident.
    let docs = (0..96u64).map(|i| vec![(i % 251) as u8 | 1; 2 * MIB as usize]);
    let r = p
        .run(docs, |doc: Vec<u8>| async move {
            tokio::task::yield_now().await;
            Ok::<_, ()>(doc.iter().step_by(4096).map(|&b| u64::from(b)).sum::<u64>())
        })
        .await;
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(r.results.len(), 96);
    (threshold, peak_rss(), r.chunk_sizes)
}

/// Child-process entry of the real-memory test: a fresh process, so no other test's memory
/// counts into the peak.
#[tokio::test]
#[ignore = "entry point of the child process of memory_based_keeps_real_rss_under_the_threshold"]
async fn memory_child() {
    if std::env::var_os(MEMORY_CHILD_VAR).is_none() {
        return;
    }
    let (threshold, memory_peak, memory_sizes) = memory_workload(ChunkStrategy::MemoryBased).await;
    let (_, fixed_peak, _) = memory_workload(ChunkStrategy::Fixed).await;
    println!(
        "MEMORY_RESULT threshold={threshold} memory_based_peak={memory_peak} fixed_peak={fixed_peak} sizes={memory_sizes:?}"
    );
}

#[test]
fn memory_based_keeps_real_rss_under_the_threshold() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        eprintln!("skipped: needs Linux /proc to read the peak RSS");
        return;
    }
    let result = perf_testkit::run_child_test(
        "strategies::memory_child",
        MEMORY_CHILD_VAR,
        "MEMORY_RESULT",
    );
    let line = &result.line;
    eprintln!("{line}");
    let field = |name: &str| result.u64(name);
    let threshold = field("threshold");
    // The same workload in fixed chunks of 64 holds 128 MiB of waiting documents at once.
    assert!(field("fixed_peak") > threshold, "{line}");
    assert!(field("memory_based_peak") < threshold, "{line}");
}
