//! Tests of `perf_cache::warming`: priority order, the concurrency bound, skipping cached keys,
//! per-task errors, progress, batch loaders, cancellation, and both targets (L1, tiered).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use perf_cache::l1::Cache;
use perf_cache::tiered::TieredCache;
use perf_cache::warming::{WarmProgress, WarmTask, Warmer};

type L1 = Cache<Vec<u8>, u64>;

fn l1() -> L1 {
    Cache::new(16 << 20)
}

fn key(i: usize) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

/// An item task of `n` keys whose loaders return the key's index.
fn counting_task(name: &str, priority: i32, n: usize, calls: &Arc<AtomicUsize>) -> WarmTask<u64> {
    (0..n).fold(WarmTask::new(name, priority), |t, i| {
        let calls = calls.clone();
        t.item(key(i), move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(i as u64)
        })
    })
}

#[tokio::test]
async fn tasks_run_highest_priority_first() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let task = |name: &'static str, priority: i32| {
        let order = order.clone();
        (0..3).fold(WarmTask::new(name, priority), move |t, i| {
            let order = order.clone();
            t.item(format!("{name}:{i}"), move || async move {
                order.lock().unwrap().push(name);
                Ok::<_, io::Error>(1u64)
            })
        })
    };
    let report = Warmer::new()
        .max_concurrency(3)
        .task(task("low", 1))
        .task(task("high", 10))
        .task(task("mid-a", 5))
        .task(task("mid-b", 5))
        .run(l1())
        .await
        .unwrap();
    let names: Vec<&str> = report.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["high", "mid-a", "mid-b", "low"]);
    let ran = order.lock().unwrap().clone();
    let expected: Vec<&str> = ["high", "mid-a", "mid-b", "low"]
        .iter()
        .flat_map(|n| [*n; 3])
        .collect();
    assert_eq!(ran, expected);
    assert!(!report.cancelled);
}

/// Runs 100 loaders that each yield a few times while counted as in flight.
async fn max_in_flight(limit: usize) -> (usize, u64) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let task = (0..100).fold(WarmTask::new("bounded", 0), |t, i| {
        let (in_flight, max) = (in_flight.clone(), max.clone());
        t.item(key(i), move || async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, io::Error>(i as u64)
        })
    });
    let report = Warmer::new()
        .max_concurrency(limit)
        .task(task)
        .run(l1())
        .await
        .unwrap();
    (max.load(Ordering::SeqCst), report.tasks[0].completed)
}

#[tokio::test]
async fn concurrency_bound_is_reached_and_never_exceeded() {
    // On one thread the warmer fills every permit before its loaders run.
    assert_eq!(max_in_flight(4).await, (4, 100));
    assert_eq!(max_in_flight(1).await, (1, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_bound_holds_on_many_threads() {
    let (max, completed) = max_in_flight(3).await;
    assert!((1..=3).contains(&max), "max in flight {max}");
    assert_eq!(completed, 100);
}

#[tokio::test]
async fn cached_keys_are_skipped_and_counted() {
    let cache = l1();
    for i in 0..10 {
        cache.insert(key(i), 1000 + i as u64);
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let report = Warmer::new()
        .task(counting_task("t", 0, 30, &calls))
        .run(cache.clone())
        .await
        .unwrap();
    let t = &report.tasks[0];
    assert_eq!((t.total, t.completed, t.skipped, t.errors), (30, 20, 10, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    // Cached values were left alone; the others were loaded.
    assert_eq!(cache.get(key(3).as_slice()), Some(1003));
    assert_eq!(cache.get(key(29).as_slice()), Some(29));
}

#[tokio::test]
async fn task_reports_time_each_task_on_the_warmers_clock() {
    // Each load takes 10 ms of the manual clock; 10 of 50 keys are cached already.
    let clock = perf_core::clock::ManualClock::new();
    let cache = l1();
    for i in 0..10 {
        cache.insert(key(i), 1);
    }
    let task = |name: &str, n: usize| {
        (0..n).fold(WarmTask::new(name, 0), |t, i| {
            let clock = clock.clone();
            t.item(key(i), move || async move {
                clock.advance(std::time::Duration::from_millis(10));
                Ok::<_, io::Error>(i as u64)
            })
        })
    };
    let report = Warmer::new()
        .max_concurrency(4)
        .clock(clock.shared())
        .task(task("first", 50))
        .task(WarmTask::new("empty", -1))
        .run(cache)
        .await
        .unwrap();
    let t = &report.tasks[0];
    assert_eq!((t.total, t.completed, t.skipped, t.errors), (50, 40, 10, 0));
    assert_eq!(t.duration, std::time::Duration::from_millis(400));
    assert!(
        (t.items_per_sec - 125.0).abs() < 1e-9,
        "{}",
        t.items_per_sec
    );
    // A task with nothing to do took no time, and reports no rate rather than a division by 0.
    let empty = &report.tasks[1];
    assert_eq!(
        (empty.total, empty.duration, empty.items_per_sec),
        (0, std::time::Duration::ZERO, 0.0)
    );
    assert_eq!(report.duration, std::time::Duration::from_millis(400));
}

#[tokio::test]
async fn errors_are_counted_by_index_and_the_rest_is_warmed() {
    let cache = l1();
    let task = (0..10).fold(WarmTask::new("flaky", 0), |t, i| {
        t.item(key(i), move || async move {
            if i == 3 || i == 7 {
                Err(io::Error::other("upstream 503"))
            } else {
                Ok(i as u64)
            }
        })
    });
    let report = Warmer::new()
        .max_concurrency(4)
        .task(task)
        .task(WarmTask::new("next", -1).item(b"after".to_vec(), || async { Ok::<_, io::Error>(1) }))
        .run(cache.clone())
        .await
        .unwrap();
    let t = &report.tasks[0];
    assert_eq!((t.completed, t.errors, t.skipped), (8, 2, 0));
    let mut failed: Vec<usize> = t.failures.iter().map(|f| f.index).collect();
    failed.sort_unstable();
    assert_eq!(failed, [3, 7]);
    assert!(t.failures[0].error.to_string().contains("upstream 503"));
    for i in 0..10 {
        assert_eq!(
            cache.contains_key(key(i).as_slice()),
            i != 3 && i != 7,
            "key {i}"
        );
    }
    // A failing task does not stop the next one.
    assert_eq!(report.tasks[1].completed, 1);
}

async fn boom() -> Result<u64, io::Error> {
    panic!("loader bug")
}

#[tokio::test]
async fn a_panicking_loader_is_an_error_at_its_index() {
    let task = WarmTask::new("panics", 0)
        .item(key(0), || async { Ok::<_, io::Error>(0) })
        .item(key(1), boom)
        .item(key(2), || async { Ok::<_, io::Error>(2) });
    let report = Warmer::new().task(task).run(l1()).await.unwrap();
    let t = &report.tasks[0];
    assert_eq!((t.completed, t.errors), (2, 1));
    assert_eq!(t.failures[0].index, 1);
}

#[tokio::test]
async fn progress_is_monotonic_and_ends_at_total() {
    let seen: Arc<Mutex<Vec<WarmProgress>>> = Arc::default();
    let cache = l1();
    cache.insert(key(0), 0);
    let calls = Arc::new(AtomicUsize::new(0));
    let sink = seen.clone();
    let report = Warmer::new()
        .max_concurrency(3)
        .on_progress(move |p| sink.lock().unwrap().push(p.clone()))
        .task(counting_task("a", 2, 17, &calls))
        .task(WarmTask::batch(
            "b",
            1,
            (0..25).map(|i| format!("b{i}").into_bytes()).collect(),
            10,
            |keys| async move { Ok::<_, io::Error>(vec![7u64; keys.len()]) },
        ))
        .run(cache)
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    for task in ["a", "b"] {
        let dones: Vec<u64> = seen
            .iter()
            .filter(|p| p.task == task)
            .map(|p| p.done)
            .collect();
        assert!(dones.windows(2).all(|w| w[0] <= w[1]), "{task}: {dones:?}");
        let total = if task == "a" { 17 } else { 25 };
        assert_eq!(dones.last(), Some(&total));
        assert!(seen
            .iter()
            .filter(|p| p.task == task)
            .all(|p| p.total == total));
    }
    // One call per item for "a", one per batch (10 + 10 + 5) for "b".
    assert_eq!(seen.iter().filter(|p| p.task == "a").count(), 17);
    assert_eq!(seen.iter().filter(|p| p.task == "b").count(), 3);
    assert_eq!(report.tasks[0].skipped, 1);
}

#[tokio::test]
async fn batch_loader_gets_only_missing_keys_and_failures_hit_its_batch() {
    let cache = l1();
    cache.insert(b"b1".to_vec(), 100);
    cache.insert(b"b12".to_vec(), 100);
    let batches: Arc<Mutex<Vec<Vec<Vec<u8>>>>> = Arc::default();
    let log = batches.clone();
    let keys: Vec<Vec<u8>> = (0..25).map(|i| format!("b{i}").into_bytes()).collect();
    let task = WarmTask::batch("batch", 0, keys, 10, move |keys: Vec<Vec<u8>>| {
        log.lock().unwrap().push(keys.clone());
        async move {
            if keys.iter().any(|k| k.as_slice() == b"b20") {
                return Err(io::Error::other("batch down"));
            }
            if keys.iter().any(|k| k.as_slice() == b"b10") {
                return Ok(vec![1u64]); // wrong length
            }
            Ok(keys.iter().map(|k| k.len() as u64).collect())
        }
    });
    let report = Warmer::new()
        .max_concurrency(1)
        .task(task)
        .run(cache.clone())
        .await
        .unwrap();
    let t = &report.tasks[0];
    // Batch 0..10: 9 loaded, 1 skipped; 10..20: 1 skipped, 9 failed (length); 20..25: 5 failed.
    assert_eq!((t.total, t.completed, t.skipped, t.errors), (25, 9, 2, 14));
    let mut failed: Vec<usize> = t.failures.iter().map(|f| f.index).collect();
    failed.sort_unstable();
    let expected: Vec<usize> = (10..25).filter(|&i| i != 12).collect();
    assert_eq!(failed, expected);
    let batches = batches.lock().unwrap();
    assert_eq!(batches.len(), 3);
    assert!(batches
        .iter()
        .flatten()
        .all(|k| k.as_slice() != b"b1" && k.as_slice() != b"b12"));
    assert_eq!(cache.get(b"b3".as_slice()), Some(2));
    assert_eq!(cache.get(b"b1".as_slice()), Some(100));
    assert!(!cache.contains_key(b"b11".as_slice()));
}

#[tokio::test]
async fn cancellation_stops_new_loads_and_reports_cancelled() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let started = Arc::new(AtomicUsize::new(0));
    let task = (0..10).fold(WarmTask::new("slow", 1), |t, i| {
        let started = started.clone();
        t.item(key(i), move || async move {
            started.fetch_add(1, Ordering::SeqCst);
            if i >= 2 {
                std::future::pending::<()>().await;
            }
            Ok::<_, io::Error>(i as u64)
        })
    });
    let report = Warmer::new()
        .max_concurrency(2)
        .on_progress(move |p| {
            if p.done == 2 {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        })
        .task(task)
        .task(WarmTask::new("never", 0).item(b"x".to_vec(), || async { Ok::<_, io::Error>(0) }))
        .run_until(l1(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    assert!(report.cancelled);
    assert_eq!(
        report.tasks.len(),
        1,
        "the lower-priority task never started"
    );
    let t = &report.tasks[0];
    assert!(t.cancelled);
    assert_eq!((t.completed, t.errors), (2, 0));
    assert!(started.load(Ordering::SeqCst) <= 4);
}

#[tokio::test]
async fn zero_concurrency_is_a_typed_error() {
    let e = Warmer::<u64>::new()
        .max_concurrency(0)
        .run(l1())
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        perf_cache::Error::InvalidConfig {
            field: "max_concurrency",
            ..
        }
    ));
}

#[tokio::test]
async fn warms_a_tiered_cache() {
    let tiered: TieredCache<u64> = TieredCache::builder().l1(Cache::new(16 << 20)).build();
    tiered
        .set(&key(0), 99, perf_cache::tiered::WriteOptions::new())
        .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let report = Warmer::new()
        .task(counting_task("tiered", 0, 5, &calls))
        .run(tiered.clone())
        .await
        .unwrap();
    let t = &report.tasks[0];
    assert_eq!((t.completed, t.skipped), (4, 1));
    assert_eq!(*tiered.get(&key(0)).await.unwrap(), 99);
    assert_eq!(*tiered.get(&key(4)).await.unwrap(), 4);
}

/// Counts its drops, to see loaders being aborted.
struct DropGuard(Arc<AtomicUsize>);
impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn dropping_the_run_future_aborts_loads_in_flight() {
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let task = (0..10).fold(WarmTask::new("hangs", 0), |t, i| {
        let (started, dropped) = (started.clone(), dropped.clone());
        t.item(key(i), move || async move {
            let _guard = DropGuard(dropped);
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok::<_, io::Error>(i as u64)
        })
    });
    let run = Warmer::new().max_concurrency(2).task(task).run(l1());
    tokio::select! {
        biased;
        _ = run => panic!("the run cannot finish: its loaders never complete"),
        () = async {
            while started.load(Ordering::SeqCst) < 2 {
                tokio::task::yield_now().await;
            }
        } => {}
    }
    // `run` was dropped by `select!`; its JoinSet aborted both loads.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

/// Batch warming into L1 + Redis: keys already in Redis are skipped (and promoted), the rest
/// is written with one pipelined multi-get and one pipelined multi-set per batch, per-task
/// results and progress hold, and the values are really in Redis.
#[cfg(feature = "redis")]
#[tokio::test]
async fn batch_warming_into_redis_is_pipelined_per_batch() {
    use perf_cache::redis::{RedisTier, RedisTierConfig};
    use perf_cache::tier::{RemoteTier, SharedTier};
    use perf_cache::tiered::WriteOptions;

    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("warm_redis");
    let tier =
        Arc::new(RedisTier::new(RedisTierConfig::new(&url).prefix(&prefix).batch(100)).unwrap());
    let tiered: TieredCache<u64> = TieredCache::builder()
        .l1(Cache::new(16 << 20))
        .l2(tier.clone() as SharedTier)
        .build();
    // Two keys already cached in Redis only (another process warmed them).
    let other: TieredCache<u64> = TieredCache::builder()
        .l2(tier.clone() as SharedTier)
        .build();
    other.set(&key(3), 1_003, WriteOptions::new()).await;
    other.set(&key(700), 1_700, WriteOptions::new()).await;
    let calls_before = tier.stats().snapshot().latency.count;

    let asked = Arc::new(Mutex::new(Vec::new()));
    let asked_in = asked.clone();
    let progress = Arc::new(Mutex::new(Vec::new()));
    let progress_in = progress.clone();
    let keys: Vec<Vec<u8>> = (0..1_000).map(key).collect();
    let task = WarmTask::batch("redis", 0, keys, 250, move |keys: Vec<Vec<u8>>| {
        asked_in.lock().unwrap().push(keys.len());
        async move {
            Ok::<_, io::Error>(
                keys.iter()
                    .map(|k| {
                        std::str::from_utf8(&k[4..])
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                    })
                    .collect(),
            )
        }
    });
    let report = Warmer::new()
        .max_concurrency(2)
        .task(task)
        .on_progress(move |p: &WarmProgress| progress_in.lock().unwrap().push(p.done))
        .run(tiered.clone())
        .await
        .unwrap();
    let t = &report.tasks[0];
    assert_eq!(
        (t.total, t.completed, t.skipped, t.errors),
        (1_000, 998, 2, 0)
    );
    assert!(t.failures.is_empty());
    let mut sizes = asked.lock().unwrap().clone();
    sizes.sort_unstable();
    assert_eq!(sizes, [249, 249, 250, 250]);
    let done = progress.lock().unwrap().clone();
    assert_eq!(done.len(), 4);
    assert!(done.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(done.last(), Some(&1_000));
    // Per batch: one multi-get and one multi-set call on the tier (each pipelined by 100 keys).
    let s = tier.stats().snapshot();
    assert_eq!(s.latency.count - calls_before, 8);
    assert_eq!(s.writes, 2 + 998);
    // The skipped keys kept their Redis values and were promoted into L1.
    assert_eq!(
        tiered.l1().unwrap().get(key(3).as_slice()).as_deref(),
        Some(&1_003)
    );
    // Everything else is in Redis, readable by a process without L1.
    let got = other
        .get_many(&[key(0).as_slice(), key(500).as_slice(), key(999).as_slice()])
        .await;
    let got: Vec<Option<u64>> = got.iter().map(|v| v.as_deref().copied()).collect();
    assert_eq!(got, [Some(0), Some(500), Some(999)]);
    assert_eq!(tier.clear().await.unwrap(), 1_000);
}

/// A Redis level that fails makes every key of the batch an error; the loader ran once per
/// batch and L1 still got the values.
#[cfg(feature = "redis")]
#[tokio::test]
async fn batch_warming_counts_a_failing_redis_level_per_key() {
    use std::time::Duration;

    use perf_cache::redis::{RedisTier, RedisTierConfig};
    use perf_cache::tier::SharedTier;

    // Nothing listens on this port: every Redis call fails after the connect timeout.
    let port = perf_testkit::support::free_port().unwrap();
    let tier = RedisTier::new(
        RedisTierConfig::new(format!("redis://127.0.0.1:{port}"))
            .prefix("unused")
            .timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let tiered: TieredCache<u64> = TieredCache::builder()
        .l1(Cache::new(16 << 20))
        .l2(Arc::new(tier) as SharedTier)
        .build();
    let keys: Vec<Vec<u8>> = (0..10).map(key).collect();
    let task = WarmTask::batch("down", 0, keys, 5, |keys: Vec<Vec<u8>>| async move {
        Ok::<_, io::Error>(vec![1u64; keys.len()])
    });
    let report = Warmer::new().task(task).run(tiered.clone()).await.unwrap();
    let t = &report.tasks[0];
    assert_eq!((t.completed, t.errors), (0, 10));
    let mut indexes: Vec<usize> = t.failures.iter().map(|f| f.index).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (0..10).collect::<Vec<_>>());
    assert!(tiered.l1().unwrap().contains_key(key(9).as_slice()));
}
