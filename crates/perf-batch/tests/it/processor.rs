//! BatchProcessor behaviour: order, concurrency bound, retries, fail-fast, panics, cancellation,
//! progress, the rollback switch and blocking items.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_batch::{
    BatchProcessor, BatchStatus, CancellationToken, ItemFailure, Progress, RetryPolicy,
};
use perf_core::clock::ManualClock;

/// Yields `n` times, so items finish in a scrambled order.
async fn yield_n(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn preserve_order_returns_input_order_despite_scrambled_completion() {
    let p = BatchProcessor::new().max_concurrency(16).chunk_size(7);
    let r = p
        .run(0..200usize, |i| async move {
            yield_n((i * 7919) % 13).await;
            Ok::<_, ()>(i * 10)
        })
        .await;
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(r.total_items, 200);
    let expected: Vec<_> = (0..200).map(|i| (i, i * 10)).collect();
    assert_eq!(r.results, expected);

    let unordered = BatchProcessor::new()
        .max_concurrency(16)
        .chunk_size(7)
        .preserve_order(false);
    let r = unordered
        .run(0..200usize, |i| async move {
            yield_n((i * 7919) % 13).await;
            Ok::<_, ()>(i * 10)
        })
        .await;
    assert_ne!(
        r.results, expected,
        "completion order differs from input order"
    );
    let mut sorted = r.results;
    sorted.sort();
    assert_eq!(sorted, expected);
}

#[tokio::test]
async fn concurrency_is_bounded_and_reached() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let p = BatchProcessor::new().max_concurrency(7).chunk_size(3);
    let r = p
        .run(0..100, |_| {
            let (in_flight, max_seen) = (in_flight.clone(), max_seen.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                yield_n(5).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(())
            }
        })
        .await;
    assert_eq!(r.succeeded, 100);
    assert_eq!(max_seen.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn retries_wait_on_the_clock_with_exponential_backoff() {
    let clock = ManualClock::new();
    let attempts = Arc::new(AtomicUsize::new(0));
    let p = BatchProcessor::new()
        .clock(clock.shared())
        .retry(RetryPolicy::new(3, Duration::from_secs(10)).with_jitter(0.0));
    let a = attempts.clone();
    let run = tokio::spawn(async move {
        p.run(vec![1u32], move |x| {
            let a = a.clone();
            async move {
                if a.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err("transient")
                } else {
                    Ok(x)
                }
            }
        })
        .await
    });
    // First failure: a 10 s backoff is pending; nothing happens until the clock moves.
    while clock.pending_sleeps() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(9));
    yield_n(20).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(1));
    // Second failure: the backoff doubles to 20 s.
    while attempts.load(Ordering::SeqCst) < 2 || clock.pending_sleeps() == 0 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_secs(19));
    yield_n(20).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    clock.advance(Duration::from_secs(1));
    let r = run.await.unwrap();
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(r.retries, 2);
    assert_eq!(r.into_values(), vec![1]);
}

#[tokio::test]
async fn retry_predicate_and_exhausted_retries_are_reported_per_item() {
    let p = BatchProcessor::new()
        .retry(
            RetryPolicy::new(2, Duration::ZERO)
                .with_jitter(0.0)
                .retry_if(|e: &&str| *e == "retryable"),
        )
        .max_concurrency(4);
    let r = p
        .run(0..10u32, |i| async move {
            match i {
                3 => Err("fatal"),
                5 => Err("retryable"),
                _ => Ok(i),
            }
        })
        .await;
    assert_eq!(r.status, BatchStatus::Partial);
    assert_eq!(r.succeeded, 8);
    assert_eq!(r.failed, 2);
    let mut errors: Vec<_> = r
        .errors
        .iter()
        .map(|e| match &e.failure {
            ItemFailure::Error(msg) => (e.index, e.attempts, *msg),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    errors.sort();
    assert_eq!(errors, vec![(3, 1, "fatal"), (5, 3, "retryable")]);
    assert_eq!(r.retries, 2);
}

#[tokio::test]
async fn fail_fast_stops_starting_items() {
    let started = Arc::new(AtomicUsize::new(0));
    let p = BatchProcessor::new()
        .retry(RetryPolicy::none())
        .fail_fast(true)
        .max_concurrency(2)
        .chunk_size(10);
    let s = started.clone();
    let r = p
        .run(0..1000u32, move |i| {
            s.fetch_add(1, Ordering::SeqCst);
            async move {
                yield_n(2).await;
                if i == 20 {
                    Err("boom")
                } else {
                    Ok(i)
                }
            }
        })
        .await;
    assert_eq!(r.status, BatchStatus::Failed);
    assert_eq!(r.failed, 1);
    assert_eq!(r.errors[0].index, 20);
    assert!(started.load(Ordering::SeqCst) < 30);
    assert!(r.not_run() > 900);
}

#[tokio::test]
async fn a_panicking_item_is_its_own_error_and_the_batch_goes_on() {
    let p = BatchProcessor::new().retry(RetryPolicy::new(3, Duration::ZERO));
    let r = p
        .run(0..20u32, |i| async move {
            if i == 4 {
                panic!("item four exploded");
            }
            Ok::<_, ()>(i)
        })
        .await;
    assert_eq!(r.status, BatchStatus::Partial);
    assert_eq!(r.succeeded, 19);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].index, 4);
    assert_eq!(r.errors[0].attempts, 1, "a panic is not retried");
    assert!(matches!(&r.errors[0].failure, ItemFailure::Panicked(m) if m.contains("exploded")));

    // A function that panics before returning its future, and a blocking function.
    let r = p
        .run(0..5u32, |i| {
            assert!(i != 2, "synchronous panic");
            async move { Ok::<_, ()>(i) }
        })
        .await;
    assert_eq!((r.succeeded, r.errors[0].index), (4, 2));
    let r = p
        .run_blocking(0..5u32, |i| {
            assert!(i != 1, "blocking panic");
            Ok::<_, ()>(i)
        })
        .await;
    assert_eq!((r.succeeded, r.errors[0].index), (4, 1));
    assert!(
        matches!(&r.errors[0].failure, ItemFailure::Panicked(m) if m.contains("blocking panic"))
    );
}

#[tokio::test]
async fn cancellation_stops_the_run_and_keeps_finished_results() {
    let token = CancellationToken::new();
    let p = BatchProcessor::new()
        .max_concurrency(4)
        .chunk_size(5)
        .cancel_token(token.clone());
    let finished = Arc::new(AtomicUsize::new(0));
    let (t, f) = (token.clone(), finished.clone());
    let r = p
        .run(0..1000u32, move |i| {
            let (t, f) = (t.clone(), f.clone());
            async move {
                yield_n(1).await;
                if f.fetch_add(1, Ordering::SeqCst) == 50 {
                    t.cancel();
                }
                Ok::<_, ()>(i)
            }
        })
        .await;
    assert_eq!(r.status, BatchStatus::Cancelled);
    assert!(r.succeeded >= 50 && r.succeeded < 1000, "{}", r.succeeded);
    assert_eq!(r.results.len(), r.succeeded);
    assert!(r.results.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(r.not_run() > 0);
}

#[tokio::test]
async fn progress_reports_done_total_rate_and_eta() {
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let s = seen.clone();
    let p = BatchProcessor::new()
        .chunk_size(10)
        .max_concurrency(3)
        .on_progress(move |p| s.lock().unwrap().push(*p));
    let r = p
        .run(vec![1u8; 95], |x| async move { Ok::<_, ()>(x) })
        .await;
    assert_eq!(r.succeeded, 95);
    let seen = seen.lock().unwrap();
    // One report per chunk (10) and a final one.
    assert_eq!(seen.len(), 11);
    assert!(seen.windows(2).all(|w| w[0].done <= w[1].done));
    let last = seen.last().unwrap();
    assert_eq!((last.done, last.total), (95, Some(95)));
    assert_eq!(last.eta, Some(Duration::ZERO));
}

#[cfg(feature = "progress")]
#[tokio::test]
async fn indicatif_adapter_tracks_the_run() {
    let bar = indicatif::ProgressBar::hidden();
    let p = BatchProcessor::new().progress_callback(perf_batch::progress_bar(bar.clone()));
    p.run(0..42u32, |x| async move { Ok::<_, ()>(x) }).await;
    assert_eq!((bar.position(), bar.length()), (42, Some(42)));
    assert!(bar.is_finished());
}

#[tokio::test]
async fn disabled_config_runs_items_one_at_a_time_in_order() {
    let mut config = perf_core::config::BatchConfig::default();
    config.enabled = false;
    config.max_concurrency = 50;
    config.preserve_order = false;
    config.strategy = perf_batch::ChunkStrategy::Adaptive;
    let p = BatchProcessor::from_config(&config).unwrap();
    let order: Arc<Mutex<Vec<u32>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let o = order.clone();
    let r = p
        .run(0..60u32, move |i| {
            let (o, in_flight) = (o.clone(), in_flight.clone());
            async move {
                assert_eq!(in_flight.fetch_add(1, Ordering::SeqCst), 0);
                o.lock().unwrap().push(i);
                yield_n((i as usize * 31) % 5).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, ()>(i)
            }
        })
        .await;
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!(*order.lock().unwrap(), (0..60).collect::<Vec<_>>());
    assert_eq!(r.chunk_sizes, vec![60]);
}

#[test]
fn blocking_items_do_not_block_the_runtime() {
    // A single-threaded runtime: if a blocking item ran on it, the task that unblocks the item
    // could never run and the item would time out.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let rx = Arc::new(Mutex::new(rx));
        let feeder = tokio::spawn(async move {
            for i in 0..4 {
                tokio::task::yield_now().await;
                tx.send(i).unwrap();
            }
        });
        let p = BatchProcessor::new().max_concurrency(1);
        let r = p
            .run_blocking(0..4u32, move |_| {
                rx.lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20))
                    .map_err(|e| e.to_string())
            })
            .await;
        feeder.await.unwrap();
        assert_eq!(r.status, BatchStatus::Completed, "{:?}", r.errors);
        assert_eq!(r.into_values(), vec![0, 1, 2, 3]);
    });
}

#[tokio::test]
async fn a_run_can_be_spawned_onto_the_runtime() {
    let p = BatchProcessor::new();
    let handle = tokio::spawn(async move {
        p.run(vec!["a".to_owned(), "b".to_owned()], |s| async move {
            Ok::<_, String>(s.len())
        })
        .await
    });
    assert_eq!(handle.await.unwrap().into_values(), vec![1, 1]);
}

#[tokio::test]
async fn empty_input_completes() {
    let p = BatchProcessor::new();
    let r = p
        .run(Vec::<u8>::new(), |x| async move { Ok::<_, ()>(x) })
        .await;
    assert_eq!(r.status, BatchStatus::Completed);
    assert_eq!((r.total_items, r.results.len()), (0, 0));
}

#[test]
fn invalid_config_is_an_error() {
    let mut config = perf_core::config::BatchConfig::default();
    config.chunk_size = 0;
    let err = BatchProcessor::<()>::from_config(&config).unwrap_err();
    assert!(err.to_string().contains("chunk_size"), "{err}");
}
