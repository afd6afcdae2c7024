//! Request coalescing: concurrent loads become the expected number of batch calls, duplicates
//! are fetched once, each caller gets its own value or error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_batch::{LoadError, Loader};
use perf_core::clock::ManualClock;

type Calls = Arc<Mutex<Vec<Vec<u32>>>>;

fn squares(calls: &Calls, clock: &ManualClock, max_batch: usize) -> Loader<u32, u64, String> {
    let c = calls.clone();
    Loader::builder(move |keys: Vec<u32>| {
        c.lock().unwrap().push(keys.clone());
        async move {
            // Key 13 does not exist.
            Ok(keys
                .into_iter()
                .filter(|&k| k != 13)
                .map(|k| (k, u64::from(k) * u64::from(k)))
                .collect::<HashMap<_, _>>())
        }
    })
    .max_batch_size(max_batch)
    .max_wait(Duration::from_millis(10))
    .clock(clock.shared())
    .build()
}

async fn wait_for_loads<K, V, E>(loader: &Loader<K, V, E>, n: u64)
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
    E: Send + Sync + 'static,
{
    while loader.stats().loads < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn loads_within_the_window_become_one_batch_call() {
    let clock = ManualClock::new();
    let calls = Calls::default();
    let loader = squares(&calls, &clock, 100);
    // 30 concurrent callers over 10 distinct keys (each asked three times), plus a missing key.
    let mut handles = Vec::new();
    for i in 0..30u32 {
        let l = loader.clone();
        handles.push(tokio::spawn(async move { l.load(i % 10).await }));
    }
    let l = loader.clone();
    let missing = tokio::spawn(async move { l.load(13).await });
    wait_for_loads(&loader, 31).await;
    assert!(
        calls.lock().unwrap().is_empty(),
        "nothing sent before the window ends"
    );
    clock.advance(Duration::from_millis(10));
    for (i, h) in handles.into_iter().enumerate() {
        let k = i as u64 % 10;
        assert_eq!(h.await.unwrap().unwrap(), Some(k * k));
    }
    assert_eq!(missing.await.unwrap().unwrap(), None);
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    let mut keys = calls[0].clone();
    keys.sort_unstable();
    assert_eq!(keys, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13]);
    let stats = loader.stats();
    assert_eq!(
        (
            stats.loads,
            stats.batches,
            stats.keys_fetched,
            stats.duplicate_loads
        ),
        (31, 1, 11, 20)
    );
    assert_eq!((stats.flushed_by_time, stats.flushed_by_size), (1, 0));
}

#[tokio::test]
async fn a_full_batch_goes_at_once_and_the_rest_waits_for_the_window() {
    let clock = ManualClock::new();
    let calls = Calls::default();
    let loader = squares(&calls, &clock, 4);
    let mut handles = Vec::new();
    for i in 0..10u32 {
        let l = loader.clone();
        handles.push(tokio::spawn(async move { l.load(i).await }));
    }
    wait_for_loads(&loader, 10).await;
    // Two full batches of 4 went without waiting.
    while loader.stats().batches < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.lock().unwrap().len(), 2);
    clock.advance(Duration::from_millis(10));
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap(), Some((i * i) as u64));
    }
    let sizes: Vec<usize> = calls.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    let stats = loader.stats();
    assert_eq!((stats.flushed_by_size, stats.flushed_by_time), (2, 1));
    assert_eq!((stats.batch_size.min, stats.batch_size.max), (2, 4));
}

#[tokio::test]
async fn per_key_errors_and_batch_errors_reach_each_caller() {
    let clock = ManualClock::new();
    // Per-key outcomes: the value type carries each key's own error.
    let loader: Loader<u32, Result<u32, String>, String> =
        Loader::builder(|keys: Vec<u32>| async move {
            if keys.contains(&99) {
                return Err("backend down".to_owned());
            }
            Ok(keys
                .into_iter()
                .map(|k| {
                    (
                        k,
                        if k == 3 {
                            Err(format!("key {k} is bad"))
                        } else {
                            Ok(k)
                        },
                    )
                })
                .collect::<HashMap<_, _>>())
        })
        .max_wait(Duration::from_millis(5))
        .clock(clock.shared())
        .build();
    let l = loader.clone();
    let batch = tokio::spawn(async move { l.load_many([1, 3, 5]).await });
    wait_for_loads(&loader, 3).await;
    clock.advance(Duration::from_millis(5));
    let answers = batch.await.unwrap();
    assert_eq!(answers[0].as_ref().unwrap(), &Some(Ok(1)));
    assert_eq!(
        answers[1].as_ref().unwrap(),
        &Some(Err("key 3 is bad".to_owned()))
    );
    assert_eq!(answers[2].as_ref().unwrap(), &Some(Ok(5)));

    let l = loader.clone();
    let failing = tokio::spawn(async move { l.load_many([98, 99]).await });
    wait_for_loads(&loader, 5).await;
    clock.advance(Duration::from_millis(5));
    for answer in failing.await.unwrap() {
        assert!(matches!(answer, Err(LoadError::Batch(e)) if *e == "backend down"));
    }
    assert_eq!(loader.stats().failed_batches, 1);
}

#[tokio::test]
async fn a_panicking_batch_fails_its_callers_and_the_loader_goes_on() {
    let clock = ManualClock::new();
    let loader: Loader<u32, u32, String> = Loader::builder(|keys: Vec<u32>| async move {
        assert!(!keys.contains(&0), "zero is not allowed");
        Ok(keys.into_iter().map(|k| (k, k)).collect::<HashMap<_, _>>())
    })
    .max_wait(Duration::from_millis(1))
    .clock(clock.shared())
    .build();
    let l = loader.clone();
    let bad = tokio::spawn(async move { l.load(0).await });
    wait_for_loads(&loader, 1).await;
    clock.advance(Duration::from_millis(1));
    assert!(matches!(bad.await.unwrap(), Err(LoadError::Panicked(m)) if m.contains("zero")));
    let l = loader.clone();
    let good = tokio::spawn(async move { l.load(4).await });
    wait_for_loads(&loader, 2).await;
    clock.advance(Duration::from_millis(1));
    assert_eq!(good.await.unwrap().unwrap(), Some(4));
}

#[tokio::test]
async fn each_batch_type_gets_its_own_batch_call() {
    let clock = ManualClock::new();
    let (user_calls, doc_calls) = (Calls::default(), Calls::default());
    let users = squares(&user_calls, &clock, 100);
    let docs = squares(&doc_calls, &clock, 100);
    let mut handles = Vec::new();
    for i in 0..8u32 {
        let (u, d) = (users.clone(), docs.clone());
        handles.push(tokio::spawn(async move {
            (u.load(i).await, d.load(i + 100).await)
        }));
    }
    wait_for_loads(&users, 8).await;
    clock.advance(Duration::from_millis(10));
    wait_for_loads(&docs, 8).await;
    clock.advance(Duration::from_millis(10));
    for h in handles {
        let (u, d) = h.await.unwrap();
        assert!(u.unwrap().is_some() && d.unwrap().is_some());
    }
    assert_eq!(
        (
            user_calls.lock().unwrap().len(),
            doc_calls.lock().unwrap().len()
        ),
        (1, 1)
    );
}
