//! Tests of the `#[perf_cache::cached]` attribute (feature `macros`): one body run per distinct
//! arguments, single-flight, errors returned unchanged and not cached, the key shared with
//! `cached_call`, skipped parameters, the cache as a parameter, and the TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use perf_cache::l1::Cache;
use perf_cache::tiered::{TieredCache, WriteOptions};
use perf_core::clock::ManualClock;

fn fresh<V: perf_cache::tiered::CacheValue>() -> TieredCache<V> {
    TieredCache::builder().l1(Cache::new(1 << 20)).build()
}

/// Body runs per argument tuple, for the functions below.
static RUNS: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

fn ran(what: String) {
    *RUNS.lock().unwrap().entry(what).or_default() += 1;
}

fn runs(what: &str) -> usize {
    RUNS.lock().unwrap().get(what).copied().unwrap_or(0)
}

static SQUARES: LazyLock<TieredCache<u64>> = LazyLock::new(fresh);

#[perf_cache::cached(cache = SQUARES)]
async fn square(tag: &str, x: u64) -> Result<u64, perf_cache::Error> {
    ran(format!("square:{tag}:{x}"));
    Ok(x * x)
}

#[tokio::test]
async fn the_body_runs_once_per_distinct_arguments() {
    for _ in 0..3 {
        for x in 0..5u64 {
            assert_eq!(square("once", x).await.unwrap(), x * x);
        }
    }
    for x in 0..5u64 {
        assert_eq!(runs(&format!("square:once:{x}")), 1, "x = {x}");
    }
    // Another first argument is another key.
    assert_eq!(square("other", 2).await.unwrap(), 4);
    assert_eq!(runs("square:other:2"), 1);
}

static SLOW: LazyLock<TieredCache<String>> = LazyLock::new(fresh);

#[perf_cache::cached(cache = SLOW)]
async fn slow_upper(word: String) -> Result<String, perf_cache::Error> {
    ran(format!("slow:{word}"));
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    Ok(word.to_uppercase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_run() {
    let calls: Vec<_> = (0..32)
        .map(|_| tokio::spawn(slow_upper("flight".to_owned())))
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "FLIGHT");
    }
    assert_eq!(runs("slow:flight"), 1);
}

/// An application error that a cache error converts into.
#[derive(Debug, PartialEq)]
enum AppError {
    NotFound(u32),
    Cache(String),
}

impl From<perf_cache::Error> for AppError {
    fn from(e: perf_cache::Error) -> Self {
        AppError::Cache(e.to_string())
    }
}

static USERS: LazyLock<TieredCache<String>> = LazyLock::new(fresh);

#[perf_cache::cached(cache = USERS)]
async fn user(id: u32) -> Result<String, AppError> {
    ran(format!("user:{id}"));
    if id == 0 {
        return Err(AppError::NotFound(id));
    }
    Ok(format!("user {id}"))
}

#[tokio::test]
async fn errors_come_back_unchanged_and_are_not_cached() {
    assert_eq!(user(0).await, Err(AppError::NotFound(0)));
    assert_eq!(user(0).await, Err(AppError::NotFound(0)));
    assert_eq!(runs("user:0"), 2);
    assert_eq!(user(1).await.unwrap(), "user 1");
    assert_eq!(user(1).await.unwrap(), "user 1");
    assert_eq!(runs("user:1"), 1);
}

static NAMED: LazyLock<TieredCache<u64>> = LazyLock::new(fresh);

#[perf_cache::cached(cache = NAMED, name = "price")]
async fn price(sku: &str, qty: u32) -> Result<u64, perf_cache::Error> {
    ran(format!("price:{sku}:{qty}"));
    Ok(u64::from(qty) * 3)
}

#[tokio::test]
async fn the_key_is_the_one_cached_call_computes() {
    assert_eq!(price("a", 4).await.unwrap(), 12);
    let via_helper = NAMED
        .cached_call("price", &("a", 4u32), WriteOptions::new(), || async {
            Ok::<u64, std::io::Error>(0)
        })
        .await
        .unwrap();
    assert_eq!(*via_helper, 12);
    // And the other way round.
    NAMED
        .cached_call("price", &("b", 1u32), WriteOptions::new(), || async {
            Ok::<u64, std::io::Error>(99)
        })
        .await
        .unwrap();
    assert_eq!(price("b", 1).await.unwrap(), 99);
    assert_eq!(runs("price:b:1"), 0);
}

/// A handle that is not `Serialize`: it must be skipped.
struct Client {
    calls: AtomicUsize,
}

#[perf_cache::cached(cache = cache, skip(client))]
async fn fetch(
    cache: &TieredCache<u64>,
    client: &Client,
    id: u64,
) -> Result<u64, perf_cache::Error> {
    client.calls.fetch_add(1, Ordering::SeqCst);
    Ok(id + 1)
}

#[tokio::test]
async fn the_cache_parameter_and_skipped_ones_are_not_in_the_key() {
    let (a, b) = (fresh::<u64>(), fresh::<u64>());
    let client = Client {
        calls: AtomicUsize::new(0),
    };
    let other_client = Client {
        calls: AtomicUsize::new(0),
    };
    assert_eq!(fetch(&a, &client, 1).await.unwrap(), 2);
    // Another client, same id: cached.
    assert_eq!(fetch(&a, &other_client, 1).await.unwrap(), 2);
    assert_eq!(client.calls.load(Ordering::SeqCst), 1);
    assert_eq!(other_client.calls.load(Ordering::SeqCst), 0);
    // Another cache is another store, but the same key.
    assert_eq!(fetch(&b, &client, 1).await.unwrap(), 2);
    assert_eq!(client.calls.load(Ordering::SeqCst), 2);
    assert_eq!(a.l1().unwrap().len(), 1);
    assert_eq!(b.l1().unwrap().len(), 1);
}

#[perf_cache::cached(cache = cache, ttl = Duration::from_secs(60))]
async fn stamped(cache: Arc<TieredCache<u64>>, counter: &str) -> Result<u64, perf_cache::Error> {
    ran(counter.to_owned());
    Ok(runs(counter) as u64)
}

#[tokio::test]
async fn the_ttl_applies_on_the_manual_clock() {
    let clock = ManualClock::new();
    let cache: Arc<TieredCache<u64>> = Arc::new(
        TieredCache::builder()
            .l1(Cache::builder()
                .max_bytes(1 << 20)
                .clock(clock.shared())
                .build())
            .clock(clock.shared())
            .build(),
    );
    assert_eq!(stamped(cache.clone(), "ttl").await.unwrap(), 1);
    clock.advance(Duration::from_secs(59));
    assert_eq!(stamped(cache.clone(), "ttl").await.unwrap(), 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(stamped(cache.clone(), "ttl").await.unwrap(), 2);
}
