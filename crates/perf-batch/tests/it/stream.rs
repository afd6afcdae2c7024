//! StreamProcessor: flush by size and by time (manual clock, no item arriving), ordered and
//! unordered output, per-batch errors, concurrency, backpressure and graceful shutdown.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use perf_batch::{
    CancellationToken, FlushTrigger, ItemFailure, LoadProbe, LoadSample, StreamProcessor,
};
use perf_core::clock::ManualClock;

async fn yield_n(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn flush_interval_fires_with_no_new_item() {
    let clock = ManualClock::new();
    let (tx, rx) = futures::channel::mpsc::unbounded::<u32>();
    let p = StreamProcessor::new()
        .buffer_size(100)
        .flush_interval(Duration::from_secs(5))
        .clock(clock.shared());
    let mut out = Box::pin(p.process(rx, |b: Vec<u32>| async move { Ok::<_, ()>(b) }));
    tx.unbounded_send(7).unwrap();
    tx.unbounded_send(8).unwrap();
    let next = tokio::spawn(async move {
        let first = out.next().await.unwrap();
        (first, out)
    });
    // The processor has buffered both items and armed its timer; no more items will come.
    while clock.pending_sleeps() == 0 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_secs(4));
    yield_n(20).await;
    assert!(!next.is_finished(), "flushed before the interval");
    clock.advance(Duration::from_secs(1));
    let (first, mut out) = next.await.unwrap();
    assert_eq!(first.trigger, FlushTrigger::Time);
    assert_eq!(first.outcome.unwrap(), vec![7, 8]);
    // The input still open: the stream ends only once it closes.
    drop(tx);
    assert!(out.next().await.is_none());
}

#[tokio::test]
async fn batches_are_cut_by_size_and_drained_at_the_end() {
    let p = StreamProcessor::new().buffer_size(4);
    let out: Vec<_> = p
        .process(futures::stream::iter(0..10u32), |b: Vec<u32>| async move {
            Ok::<_, ()>(b)
        })
        .collect()
        .await;
    let shape: Vec<_> = out.iter().map(|b| (b.seq, b.items, b.trigger)).collect();
    assert_eq!(
        shape,
        vec![
            (0, 4, FlushTrigger::Size),
            (1, 4, FlushTrigger::Size),
            (2, 2, FlushTrigger::Drain)
        ]
    );
}

#[tokio::test]
async fn ordered_output_follows_input_and_unordered_follows_completion() {
    let run = |ordered: bool| async move {
        let p = StreamProcessor::new()
            .buffer_size(2)
            .max_concurrent_batches(5)
            .ordered(ordered);
        p.process(futures::stream::iter(0..10u32), |b: Vec<u32>| async move {
            // Earlier batches take longer.
            yield_n(50 - 10 * (b[0] as usize / 2)).await;
            Ok::<_, ()>(b)
        })
        .map(|b| b.seq)
        .collect::<Vec<_>>()
        .await
    };
    assert_eq!(run(true).await, vec![0, 1, 2, 3, 4]);
    assert_eq!(run(false).await, vec![4, 3, 2, 1, 0]);
}

#[tokio::test]
async fn per_batch_errors_and_panics_are_surfaced() {
    let p = StreamProcessor::new().buffer_size(3);
    let out: Vec<_> = p
        .process(futures::stream::iter(0..9u32), |b: Vec<u32>| async move {
            if b.contains(&4) {
                return Err(format!("batch with {b:?} failed"));
            }
            assert!(!b.contains(&7), "batch function panicked");
            Ok(b)
        })
        .collect()
        .await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].outcome.as_ref().unwrap(), &vec![0, 1, 2]);
    assert!(matches!(&out[1].outcome, Err(ItemFailure::Error(m)) if m.contains("[3, 4, 5]")));
    assert!(matches!(&out[2].outcome, Err(ItemFailure::Panicked(m)) if m.contains("panicked")));
    assert_eq!(
        out[1].items, 3,
        "a failed batch still says how many items it held"
    );
}

/// Counts batches running at once and lets the test release them.
struct Gate {
    running: AtomicUsize,
    max_running: AtomicUsize,
    open: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            open: tokio::sync::Semaphore::new(0),
        }
    }
}

#[tokio::test]
async fn concurrency_and_in_flight_items_are_bounded() {
    let gate = Arc::new(Gate::default());
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = StreamProcessor::new()
        .buffer_size(4)
        .max_concurrent_batches(3)
        .max_in_flight_items(10);
    let pl = pulled.clone();
    let input = futures::stream::iter(0..100u32).inspect(move |_| {
        pl.fetch_add(1, Ordering::SeqCst);
    });
    let g = gate.clone();
    let out = p.process(input, move |b: Vec<u32>| {
        let g = g.clone();
        async move {
            let now = g.running.fetch_add(1, Ordering::SeqCst) + 1;
            g.max_running.fetch_max(now, Ordering::SeqCst);
            g.open.acquire().await.unwrap().forget();
            g.running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, ()>(vec![b.len()])
        }
    });
    let consumer = tokio::spawn(out.collect::<Vec<_>>());
    yield_n(100).await;
    // Two full batches run (8 items) and two more items are buffered: 10 in flight, no more
    // read, even though a third batch slot is free.
    assert_eq!(pulled.load(Ordering::SeqCst), 10);
    assert_eq!(gate.running.load(Ordering::SeqCst), 2);
    gate.open.add_permits(1000);
    let out = consumer.await.unwrap();
    assert_eq!(out.iter().map(|b| b.items).sum::<usize>(), 100);
    assert!(gate.max_running.load(Ordering::SeqCst) <= 3);
}

#[derive(Debug)]
struct HighRss(AtomicU64);
impl LoadProbe for HighRss {
    fn sample(&self) -> LoadSample {
        LoadSample {
            cpu_percent: 0.0,
            memory_percent: 0.0,
            rss_bytes: self.rss_bytes(),
        }
    }
    fn rss_bytes(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn over_the_memory_ceiling_only_one_batch_runs() {
    let gate = Arc::new(Gate::default());
    let p = StreamProcessor::new()
        .buffer_size(2)
        .max_concurrent_batches(8)
        .load_probe(Arc::new(HighRss(AtomicU64::new(2 << 30))))
        .memory_ceiling_bytes(Some(1 << 30));
    let g = gate.clone();
    let out: Vec<_> = p
        .process(futures::stream::iter(0..20u32), move |b: Vec<u32>| {
            let g = g.clone();
            async move {
                let now = g.running.fetch_add(1, Ordering::SeqCst) + 1;
                g.max_running.fetch_max(now, Ordering::SeqCst);
                yield_n(5).await;
                g.running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(b)
            }
        })
        .collect()
        .await;
    assert_eq!(out.len(), 10);
    assert_eq!(gate.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn shutdown_stops_reading_flushes_and_drains() {
    let token = CancellationToken::new();
    let pulled = Arc::new(AtomicUsize::new(0));
    let pl = pulled.clone();
    // An endless input.
    let input = futures::stream::iter(0u64..).inspect(move |_| {
        pl.fetch_add(1, Ordering::SeqCst);
    });
    let finished: Arc<Mutex<Vec<u64>>> = Arc::default();
    let f = finished.clone();
    let t = token.clone();
    let p = StreamProcessor::new()
        .buffer_size(5)
        .max_concurrent_batches(2)
        .shutdown_token(token.clone());
    let out: Vec<_> = p
        .process(input, move |b: Vec<u64>| {
            let (f, t) = (f.clone(), t.clone());
            async move {
                if b[0] >= 20 {
                    t.cancel();
                }
                yield_n(3).await;
                f.lock().unwrap().extend(&b);
                Ok::<_, ()>(b)
            }
        })
        .collect()
        .await;
    let total: usize = out.iter().map(|b| b.items).sum();
    // Every item read was processed and returned; nothing was dropped on shutdown.
    assert_eq!(total, pulled.load(Ordering::SeqCst));
    assert_eq!(finished.lock().unwrap().len(), total);
    assert!(out.iter().all(|b| b.outcome.is_ok()));
    assert!((25..1000).contains(&total), "{total}");
}

#[tokio::test]
async fn the_output_stream_can_be_spawned() {
    let p = StreamProcessor::new().buffer_size(3);
    let out = p.process(futures::stream::iter(0..7u32), |b: Vec<u32>| async move {
        Ok::<_, String>(vec![b.len()])
    });
    let handle = tokio::spawn(out.map(|b| b.items).collect::<Vec<_>>());
    assert_eq!(handle.await.unwrap(), vec![3, 3, 1]);
}

#[tokio::test]
async fn spawned_batches_progress_while_the_consumer_is_slow() {
    let completed = Arc::new(AtomicUsize::new(0));
    let f = {
        let completed = completed.clone();
        move |b: Vec<u32>| {
            let completed = completed.clone();
            async move {
                yield_n(3).await;
                completed.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(b)
            }
        }
    };
    let p = StreamProcessor::new()
        .buffer_size(1)
        .max_concurrent_batches(3);
    // A plain output stream does nothing while nobody polls it …
    let plain = p.process(futures::stream::iter(0..6u32), f.clone());
    yield_n(50).await;
    assert_eq!(completed.load(Ordering::SeqCst), 0);
    drop(plain);
    // … the spawned one finishes every batch before the consumer asks for the first.
    let mut spawned = p.spawn(futures::stream::iter(0..6u32), f);
    while completed.load(Ordering::SeqCst) < 6 {
        tokio::task::yield_now().await;
    }
    let mut seqs = Vec::new();
    while let Some(b) = spawned.next().await {
        seqs.push(b.seq);
    }
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn spawned_mode_still_bounds_items_waiting_for_the_consumer() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let pl = pulled.clone();
    let input = futures::stream::iter(0u64..).inspect(move |_| {
        pl.fetch_add(1, Ordering::SeqCst);
    });
    let p = StreamProcessor::new()
        .buffer_size(2)
        .max_concurrent_batches(2)
        .max_in_flight_items(6);
    let mut out = p.spawn(input, |b: Vec<u64>| async move { Ok::<_, ()>(b) });
    yield_n(200).await;
    // Nobody consumes: finished batches wait and the input is read no further than the bound
    // (6 items) plus the one batch in the hand-off to the consumer.
    assert_eq!(pulled.load(Ordering::SeqCst), 8);
    let first = out.next().await.unwrap();
    assert_eq!(first.items, 2);
    yield_n(200).await;
    assert_eq!(pulled.load(Ordering::SeqCst), 10);
}
