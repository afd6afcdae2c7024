//! Single-flight loading: one loader call for many concurrent callers, shared errors, negative
//! caching, cancelled leaders, stale-while-revalidate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use perf_cache::l1::{Cache, ComputeOptions};
use perf_cache::single_flight::{Flight, SingleFlight};
use perf_cache::Error;
use perf_core::clock::ManualClock;
use tokio::sync::{Barrier, Notify};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_callers_run_the_loader_once() {
    let cache: Cache<String, String> = Cache::new(1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let barrier = Arc::new(Barrier::new(65));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (cache, calls, release, barrier) = (
            cache.clone(),
            calls.clone(),
            release.clone(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cache
                .get_or_compute("k".to_owned(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok::<_, std::io::Error>("v".to_owned())
                })
                .await
        }));
    }
    barrier.wait().await;
    // Wait until the leader is inside the loader, then let it finish.
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "v");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get("k").as_deref(), Some("v"));
}

// One thread: the tasks run in the order they were spawned, each up to its first await, so
// the first one leads (and waits at `release`) and the 63 others join its flight before the
// main task resumes: the loader must run exactly once (the success path is tested on four
// threads above). A regression that let a second caller lead would wait on the spent
// `release` forever, hence the timeout.
#[tokio::test(flavor = "current_thread")]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    let cache: Cache<String, u32> = Cache::new(1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (cache, calls, release) = (cache.clone(), calls.clone(), release.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute("k".to_owned(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Err::<u32, _>(std::io::Error::other("upstream down"))
                })
                .await
        }));
    }
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let mut errors = 0;
    for t in tasks {
        let joined = tokio::time::timeout(Duration::from_secs(30), t).await;
        match joined
            .expect("a caller never got the leader's result")
            .unwrap()
        {
            Err(Error::Loader(e)) => {
                assert!(e.to_string().contains("upstream down"));
                errors += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, 64);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader call for 64 callers"
    );
    // Not cached: the next call runs the loader again and can succeed.
    let v = cache
        .get_or_compute("k".to_owned(), || async { Ok::<_, std::io::Error>(5) })
        .await
        .unwrap();
    assert_eq!(v, 5);
}

#[tokio::test]
async fn negative_caching_has_its_own_ttl() {
    let clock = ManualClock::new();
    let cache: Cache<String, u32> = Cache::builder().clock(clock.shared()).build();
    let opts = ComputeOptions::new().negative_ttl(Duration::from_secs(5));
    let calls = AtomicUsize::new(0);
    let fail = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err::<u32, _>("no such row")
    };
    assert!(matches!(
        cache.get_or_compute_with("k".into(), &opts, fail).await,
        Err(Error::Loader(_))
    ));
    let again = cache.get_or_compute_with("k".into(), &opts, fail).await;
    assert!(
        matches!(again, Err(Error::NegativelyCached { ref reason }) if reason.contains("no such row"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(5));
    let ok = cache
        .get_or_compute_with("k".into(), &opts, || async { Ok::<_, std::io::Error>(1) })
        .await
        .unwrap();
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_over_to_a_waiter() {
    let cache: Cache<String, u32> = Cache::new(1 << 20);
    let started = Arc::new(Notify::new());
    let leader = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("k".to_owned(), || async move {
                    started.notify_one();
                    std::future::pending::<Result<u32, std::io::Error>>().await
                })
                .await
        })
    };
    started.notified().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for _ in 0..8 {
        let (cache, calls) = (cache.clone(), calls.clone());
        waiters.push(tokio::spawn(async move {
            cache
                .get_or_compute("k".to_owned(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(9)
                })
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "waiters wait for the leader"
    );
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), 9);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "exactly one waiter took over"
    );
}

#[tokio::test]
async fn generic_single_flight_protocol() {
    let flights: SingleFlight<u32, String> = SingleFlight::new();
    let Flight::Leader(leader) = flights.begin(1) else {
        panic!("first caller leads")
    };
    let Flight::Follower(follower) = flights.begin(1) else {
        panic!("second caller follows")
    };
    assert_eq!(flights.in_flight(), 1);
    leader.complete(&Ok("one".to_owned()));
    assert_eq!(follower.wait().await.unwrap().unwrap(), "one");
    assert_eq!(flights.in_flight(), 0);
    // A dropped leader releases followers with None.
    let Flight::Leader(leader) = flights.begin(2) else {
        panic!()
    };
    let Flight::Follower(follower) = flights.begin(2) else {
        panic!()
    };
    drop(leader);
    assert!(follower.wait().await.is_none());
    assert!(matches!(flights.begin(2), Flight::Leader(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_old_value_and_refreshes_once() {
    let clock = ManualClock::new();
    let cache: Cache<String, u32> = Cache::builder().clock(clock.shared()).build();
    let opts = ComputeOptions::new()
        .ttl(Duration::from_secs(60))
        .refresh_after(Duration::from_secs(30));
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let loader = |value: u32| {
        let (calls, release) = (calls.clone(), release.clone());
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if value > 1 {
                release.notified().await;
            }
            Ok::<_, std::io::Error>(value)
        }
    };
    assert_eq!(
        cache
            .get_or_refresh("k".into(), &opts, loader(1))
            .await
            .unwrap(),
        1
    );
    clock.advance(Duration::from_secs(29));
    assert_eq!(
        cache
            .get_or_refresh("k".into(), &opts, loader(2))
            .await
            .unwrap(),
        1
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "fresh: no refresh");
    clock.advance(Duration::from_secs(2));
    for _ in 0..10 {
        assert_eq!(
            cache
                .get_or_refresh("k".into(), &opts, loader(2))
                .await
                .unwrap(),
            1
        );
    }
    while calls.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    while cache.peek("k") != Some(2) {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "ten stale hits, one refresh"
    );
    assert_eq!(cache.time_to_live("k"), Some(Some(Duration::from_secs(60))));
}
