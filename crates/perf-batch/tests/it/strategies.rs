//! Chunking strategies: ADAPTIVE learns the rate during the run, DYNAMIC follows load,
//! MEMORY_BASED keeps RSS under its threshold.

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
    assert_eq!(sizes[0], 10);
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
