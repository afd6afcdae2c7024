//! The tiered manager against a real Redis: promotion with tags, corrupted bytes, the breaker on
//! the manual clock, per-level write reports, single-flight and the fleet lock, and a Redis
//! crash under load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use perf_cache::l1::Cache;
use perf_cache::redis::{RedisBackend, RedisTier, RedisTierConfig};
use perf_cache::tier::{RemoteTier, SharedTier};
use perf_cache::tiered::{BreakerConfig, FleetLockConfig, TieredCache, WriteOptions};
use perf_cache::Error;
use perf_core::clock::ManualClock;

fn redis_tier(url: &str, prefix: &str) -> Arc<RedisTier> {
    Arc::new(RedisTier::new(RedisTierConfig::new(url).prefix(prefix)).unwrap())
}

fn l1<V: serde::Serialize + Send + Sync + 'static>() -> Cache<Vec<u8>, V> {
    Cache::new(1 << 20)
}

fn with_l2<V: perf_cache::tiered::CacheValue>(tier: &Arc<RedisTier>) -> TieredCache<V> {
    TieredCache::builder()
        .l1(l1())
        .l2(tier.clone() as SharedTier)
        .build()
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A port nothing listens on: connections are refused at once.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test]
async fn remote_hits_are_promoted_with_their_tags() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_promote");
    let tier = redis_tier(&url, &prefix);
    let a: TieredCache<String> = with_l2(&tier);
    let b: TieredCache<String> = with_l2(&tier);
    let report = a
        .set(
            b"user:1",
            "Ada".into(),
            WriteOptions::new().tags(&["users"]),
        )
        .await;
    assert_eq!(report.l1, Some(true));
    assert!(matches!(report.l2, Some(Ok(()))) && report.db.is_none());
    assert!(report.is_complete());

    // B has an empty L1: the value comes from L2 and lands in B's L1 with its tag.
    assert_eq!(
        b.get(b"user:1").await.as_deref().map(String::as_str),
        Some("Ada")
    );
    let s = b.stats();
    assert_eq!(s.l1_promotions, 1);
    assert_eq!(
        s.l2.as_ref().map(|l| (l.hits, l.misses, l.errors)),
        Some((1, 0, 0))
    );
    assert!(b.l1().unwrap().contains_key(b"user:1".as_slice()));
    assert_eq!(b.l1().unwrap().invalidate_tag("users"), 1);

    // A tag invalidation reaches L1 and L2.
    assert!(b.get(b"user:1").await.is_some(), "promoted again from L2");
    let report = a.delete_by_tags(&["users"]).await;
    assert_eq!(report.l1, Some(true));
    assert!(report.is_complete());
    assert!(tier.get(b"user:1").await.unwrap().is_none());
    assert!(a.get(b"user:1").await.is_none());
    a.clear().await;
}

#[tokio::test]
async fn a_value_larger_than_l1_skips_l1_and_is_served_from_l2() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_oversized");
    let tier = redis_tier(&url, &prefix);
    let cache: TieredCache<String> = TieredCache::builder()
        .l1(Cache::new(16 << 10))
        .l2(tier.clone() as SharedTier)
        .build();
    let in_l1 = |cache: &TieredCache<String>| cache.l1().unwrap().contains_key(b"k".as_slice());
    let report = cache.set(b"k", "small".into(), WriteOptions::new()).await;
    assert_eq!(report.l1, Some(true));
    assert!(in_l1(&cache));
    // 64 KiB against a 16 KiB L1: L2 stores it, L1 refuses it and drops the old value.
    let big = "x".repeat(64 << 10);
    let report = cache.set(b"k", big.clone(), WriteOptions::new()).await;
    assert_eq!(report.l1, Some(false));
    assert!(matches!(report.l2, Some(Ok(()))));
    assert!(!in_l1(&cache), "the old value stayed in L1");
    for _ in 0..2 {
        assert_eq!(cache.get(b"k").await.as_deref(), Some(&big));
        assert!(!in_l1(&cache), "promoted into an L1 it does not fit");
    }
    let s = cache.stats();
    assert_eq!(s.l2.as_ref().map(|l| (l.hits, l.errors)), Some((2, 0)));
    assert!(s.l1.as_ref().is_some_and(|l1| l1.bytes <= 16 << 10));
    cache.clear().await;
}

#[tokio::test]
async fn expiry_travels_with_the_value() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_expiry");
    let tier = redis_tier(&url, &prefix);
    let clock = ManualClock::new();
    let a: TieredCache<u32> = TieredCache::builder()
        .l2(tier.clone() as SharedTier)
        .clock(clock.shared())
        .build();
    a.set(b"k", 5, WriteOptions::new().ttl(Duration::from_secs(60)))
        .await;
    assert_eq!(a.get(b"k").await.as_deref(), Some(&5));
    // Our clock says the entry is past its expiry even if Redis still holds it: a miss.
    clock.advance(Duration::from_secs(61));
    assert_eq!(a.get(b"k").await, None);
    a.clear().await;
}

#[tokio::test]
async fn corrupted_or_foreign_bytes_are_a_counted_miss_and_deleted() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_corrupt");
    let tier = redis_tier(&url, &prefix);
    let cache: TieredCache<String> = with_l2(&tier);
    let mut conn = raw(&url).await;

    // Foreign bytes (JSON written by another program), a flipped bit, and a valid encoding of
    // another type.
    let mut flipped = perf_core::codec::encode(&(None::<u64>, Vec::<String>::new(), "x")).unwrap();
    flipped[3] ^= 0x40;
    let other_type = perf_core::codec::encode(&(1u8, 2u8)).unwrap();
    let cases: [(&[u8], Vec<u8>); 3] = [
        (b"json", b"{\"v\":1}".to_vec()),
        (b"flipped", flipped),
        (b"other", other_type),
    ];
    for (i, (key, bytes)) in cases.iter().enumerate() {
        let storage = tier.storage_key(key);
        let () = redis::cmd("SET")
            .arg(&storage)
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(cache.get(key).await, None);
        let exists: u64 = redis::cmd("EXISTS")
            .arg(&storage)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            exists,
            0,
            "bad bytes under {:?} were not deleted",
            String::from_utf8_lossy(key)
        );
        let l2 = cache.stats().l2.unwrap();
        assert_eq!(
            (l2.decode_errors, l2.errors, l2.misses, l2.hits),
            (i as u64 + 1, i as u64 + 1, i as u64 + 1, 0)
        );
    }
    // A loader still serves the key, and the good value replaces the bad one.
    let v = cache
        .get_or_compute(b"json", WriteOptions::new(), || async {
            Ok::<_, std::io::Error>("fresh".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(*v, "fresh");
    assert!(tier.get(b"json").await.unwrap().is_some());
    cache.clear().await;
}

#[tokio::test]
async fn a_down_level_is_skipped_for_its_backoff_then_retried() {
    let clock = ManualClock::new();
    let tier = Arc::new(
        RedisTier::new(RedisTierConfig::new(dead_url()).timeout(Duration::from_millis(300)))
            .unwrap(),
    );
    let cache: TieredCache<u32> = TieredCache::builder()
        .l1(l1())
        .l2(tier.clone() as SharedTier)
        .breaker(BreakerConfig::new(
            2,
            Duration::from_secs(10),
            Duration::from_secs(40),
        ))
        .clock(clock.shared())
        .build();
    let loads = AtomicUsize::new(0);
    let load = |n: u32| {
        let loads = &loads;
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(n)
        }
    };
    // Reads never fail: the loader answers while L2 errors.
    assert_eq!(
        *cache
            .get_or_compute(b"a", WriteOptions::new(), load(1))
            .await
            .unwrap(),
        1
    );
    // Miss in L2 (error), then the write to L2 (error): two failures open the breaker.
    let after_two = tier.stats().snapshot().errors;
    assert_eq!(after_two, 2);
    let s = cache.stats().l2.unwrap();
    assert!(s.down);
    // While open, L2 is not called at all.
    assert_eq!(
        *cache
            .get_or_compute(b"b", WriteOptions::new(), load(2))
            .await
            .unwrap(),
        2
    );
    let report = cache.set(b"c", 3, WriteOptions::new()).await;
    assert_eq!(report.l1, Some(true));
    assert!(matches!(
        report.l2,
        Some(Err(Error::TierUnavailable { tier: "l2", .. }))
    ));
    assert!(!report.is_complete());
    assert_eq!(tier.stats().snapshot().errors, 2);
    assert_eq!(cache.stats().l2.unwrap().skipped, 3);
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    // After the backoff one probe goes through; it fails and the backoff doubles.
    clock.advance(Duration::from_secs(10));
    assert_eq!(cache.get(b"zzz").await, None);
    assert_eq!(tier.stats().snapshot().errors, 3);
    clock.advance(Duration::from_secs(10));
    assert_eq!(cache.get(b"zzz").await, None);
    assert_eq!(
        tier.stats().snapshot().errors,
        3,
        "still backing off (20 s now)"
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(cache.get(b"zzz").await, None);
    assert_eq!(tier.stats().snapshot().errors, 4);
}

#[tokio::test]
async fn single_flight_runs_the_loader_once_and_never_caches_errors() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_flight");
    let tier = redis_tier(&url, &prefix);
    let cache: TieredCache<u64> = with_l2(&tier);
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_compute(b"hot", WriteOptions::new(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, std::io::Error>(99)
                })
                .await
        }));
    }
    // Let every task join the flight, then release the loader.
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    for t in tasks {
        assert_eq!(*t.await.unwrap().unwrap(), 99);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads, 1);
    assert!(tier.get(b"hot").await.unwrap().is_some());

    // Errors reach the caller and are not cached.
    let fail = || async { Err::<u64, _>(std::io::Error::other("upstream 503")) };
    let err = cache
        .get_or_compute(b"bad", WriteOptions::new(), fail)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upstream 503"));
    let ok = cache
        .get_or_compute(b"bad", WriteOptions::new(), || async {
            Ok::<_, std::io::Error>(1)
        })
        .await
        .unwrap();
    assert_eq!(*ok, 1);
    let s = cache.stats();
    assert_eq!((s.loads, s.load_errors), (3, 1));
    cache.clear().await;
}

/// A "process" with its own L1 and `tier` as L2 and fleet lock, waiting at most `wait` for
/// another holder's value (polling every 5 ms); shared with the cluster tests.
pub(crate) fn fleet_cache<T: RemoteTier + RedisBackend + 'static>(
    tier: Arc<T>,
    wait: Duration,
) -> TieredCache<u64> {
    TieredCache::builder()
        .l1(l1())
        .l2(tier.clone() as SharedTier)
        .fleet_lock(
            tier,
            FleetLockConfig::new(Duration::from_secs(30)).waiting(wait, Duration::from_millis(5)),
        )
        .build()
}

/// A `get_or_compute` loader that counts its runs, then waits for a permit of `gate` and
/// returns 7. Releasing the gate with `add_permits(16)` lets every run through, so a second
/// run shows as a count of 2 rather than a hang.
fn gated_loader(
    calls: &Arc<AtomicUsize>,
    gate: &Arc<tokio::sync::Semaphore>,
) -> impl FnOnce() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u64, std::io::Error>> + Send>,
> + Send
       + 'static {
    let (calls, gate) = (calls.clone(), gate.clone());
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let _permit = gate.acquire().await.map_err(std::io::Error::other)?;
            Ok(7)
        })
    }
}

/// Two "processes" `a` and `b` of one fleet, `callers` concurrent `get_or_compute` calls of
/// one key in each: A's leader takes the lock (seen through `probe`) and runs the loader, B's
/// leader finds the lock taken and polls L2 until A's value is there. Checks that the loader
/// ran once for the fleet and that the lock was released.
pub(crate) async fn one_loader_run_for_the_fleet(
    a: &TieredCache<u64>,
    b: &TieredCache<u64>,
    callers: usize,
    probe: &dyn RedisBackend,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let start = |cache: &TieredCache<u64>| {
        (0..callers)
            .map(|_| {
                let (cache, loader) = (cache.clone(), gated_loader(&calls, &gate));
                tokio::spawn(async move {
                    cache
                        .get_or_compute(b"report", WriteOptions::new(), loader)
                        .await
                })
            })
            .collect::<Vec<_>>()
    };
    // A's callers: one of them takes the lock and runs the loader, which waits at the gate.
    let in_a = start(a);
    until("A's loader to start", async || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // B's callers miss L2 once each; one more miss is its leader's poll after finding the
    // lock taken. (Were the lock to fail, B's leader would run its loader without polling;
    // were it granted twice, the loader would run twice.)
    let in_b = start(b);
    let misses = u64::try_from(callers).unwrap() + 1;
    until("B to poll L2 while A holds the lock", async || {
        probe.is_locked(b"report").await.unwrap() && b.stats().l2.unwrap().misses >= misses
    })
    .await;
    gate.add_permits(16);
    tokio::time::timeout(WAIT_BOUND, async {
        for caller in in_a.into_iter().chain(in_b) {
            assert_eq!(*caller.await.unwrap().unwrap(), 7);
        }
    })
    .await
    .expect("every caller returns");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader run for the fleet"
    );
    assert!(!probe.is_locked(b"report").await.unwrap(), "lock released");
}

#[tokio::test]
async fn the_fleet_lock_lets_one_process_compute() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_fleet");
    // Two "processes": separate L1s, separate tier connections, one Redis.
    let make = || fleet_cache(redis_tier(&url, &prefix), Duration::from_secs(10));
    let (a, b) = (make(), make());
    one_loader_run_for_the_fleet(&a, &b, 1, redis_tier(&url, &prefix).as_ref()).await;
    a.clear().await;
}

#[tokio::test]
async fn disabled_cache_stores_nothing() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_off");
    let tier = redis_tier(&url, &prefix);
    let cache: TieredCache<u8> = TieredCache::builder()
        .l1(l1())
        .l2(tier.clone() as SharedTier)
        .enabled(false)
        .build();
    let report = cache.set(b"k", 1, WriteOptions::new()).await;
    assert!(report.l1.is_none() && report.l2.is_none());
    assert_eq!(cache.get(b"k").await, None);
    assert!(tier.get(b"k").await.unwrap().is_none());
    let v = cache
        .get_or_compute(b"k", WriteOptions::new(), || async {
            Ok::<_, std::io::Error>(4)
        })
        .await
        .unwrap();
    assert_eq!(*v, 4);
    assert!(tier.get(b"k").await.unwrap().is_none());
}

/// Redis crashes under load: reads keep being served by L1 and the loader, and L2 is used again
/// soon after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crash_under_load_fails_no_read_and_recovers() {
    let Some(mut server) = perf_testkit::TempRedis::start_or_skip() else {
        return;
    };
    let url = server.url();
    let tier = redis_tier(&url, "fault");
    let cache: TieredCache<u64> = TieredCache::builder()
        .l1(l1())
        .l2(tier.clone() as SharedTier)
        .breaker(BreakerConfig::new(
            3,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .build();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed_reads = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (cache, stop, failed, reads) = (
            cache.clone(),
            stop.clone(),
            failed_reads.clone(),
            reads.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{}", (w * 31 + i) % 200);
                let r = cache
                    .get_or_compute(key.as_bytes(), WriteOptions::new(), || async move {
                        Ok::<_, std::io::Error>(i)
                    })
                    .await;
                reads.fetch_add(1, Ordering::Relaxed);
                if r.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if i % 7 == 0 {
                    cache
                        .set(format!("w{w}").as_bytes(), i, WriteOptions::new())
                        .await;
                }
                if i % 50 == 0 {
                    // Make L1 misses happen, so L2 is exercised throughout.
                    cache.l1().unwrap().clear();
                }
                i += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    let wait_reads = |n: usize| {
        let reads = reads.clone();
        async move {
            let target = reads.load(Ordering::Relaxed) + n;
            for _ in 0..2_000 {
                if reads.load(Ordering::Relaxed) >= target {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("workers made no progress");
        }
    };
    wait_reads(500).await;
    // Read before the kill: the reads in flight at the kill can fail and open the breaker
    // before a later snapshot, and with the breaker open no further error would be counted.
    let errors_before = tier.stats().snapshot().errors;
    server.stop().unwrap();
    wait_reads(500).await;
    assert!(
        tier.stats().snapshot().errors > errors_before,
        "the outage was seen"
    );
    server.start_again().unwrap();
    let restarted = Instant::now();

    // A second process with an empty L1 must find, in L2, a value written after the restart.
    let probe: TieredCache<u64> = TieredCache::builder()
        .l2(tier.clone() as SharedTier)
        .build();
    let fresh = redis_tier(&url, "fault");
    let mut recovered = None;
    for attempt in 0..400 {
        if cache
            .set(b"after", 42, WriteOptions::new())
            .await
            .is_complete()
            && fresh.get(b"after").await.ok().flatten().is_some()
            && probe.get(b"after").await.as_deref() == Some(&42)
        {
            recovered = Some((attempt, restarted.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (attempts, took) = recovered.expect("L2 not used again within 400 attempts");
    eprintln!("redis restart: L2 hits resumed after {attempts} attempts, {took:?}");
    wait_reads(300).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failed_reads.load(Ordering::Relaxed),
        0,
        "a read failed during the outage"
    );
    let hits_after = probe.stats().l2.unwrap().hits;
    assert!(hits_after >= 1);
}

/// L1 → L2 → database: with L2 down the database answers, and its hits are promoted to L1; with
/// L2 up they are promoted to L2 too.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_database_tier_serves_and_promotes_upward() {
    use perf_cache::postgres::{PostgresTier, PostgresTierConfig};

    let url = perf_testkit::require_redis!();
    let db_url = perf_testkit::require_postgres!();
    let prefix = perf_testkit::unique_name("tiered_db");
    let db = Arc::new(PostgresTier::new(PostgresTierConfig::new(&db_url).schema(&prefix)).unwrap());
    let l2 = redis_tier(&url, &prefix);
    let writer: TieredCache<String> = TieredCache::builder()
        .l2(l2.clone() as SharedTier)
        .database(db.clone() as SharedTier)
        .build();
    let report = writer
        .set(b"doc", "body".into(), WriteOptions::new().tags(&["docs"]))
        .await;
    assert!(report.is_complete() && matches!(report.db, Some(Ok(()))));
    assert!(
        l2.delete(b"doc").await.unwrap(),
        "now only the database has it"
    );

    // A reader whose L2 is down: the database answers, L1 gets the value.
    let down = Arc::new(
        RedisTier::new(RedisTierConfig::new(dead_url()).timeout(Duration::from_millis(200)))
            .unwrap(),
    );
    let reader: TieredCache<String> = TieredCache::builder()
        .l1(l1())
        .l2(down as SharedTier)
        .database(db.clone() as SharedTier)
        .build();
    assert_eq!(
        reader.get(b"doc").await.as_deref().map(String::as_str),
        Some("body")
    );
    let s = reader.stats();
    // The read and the promotion into L2 both failed there.
    assert_eq!(s.l2.as_ref().unwrap().errors, 2);
    assert_eq!(s.db.as_ref().unwrap().hits, 1);
    assert_eq!(s.l1_promotions, 1);

    // A reader with L2 up promotes the database hit into L2, tags included.
    let full: TieredCache<String> = TieredCache::builder()
        .l1(l1())
        .l2(l2.clone() as SharedTier)
        .database(db.clone() as SharedTier)
        .build();
    assert!(full.get(b"doc").await.is_some());
    assert_eq!(full.stats().l2.unwrap().promotions, 1);
    assert!(l2.get(b"doc").await.unwrap().is_some());
    let report = full.delete_by_tags(&["docs"]).await;
    assert!(report.is_complete());
    assert!(l2.get(b"doc").await.unwrap().is_none());
    assert!(db.get(b"doc").await.unwrap().is_none());

    let (client, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP SCHEMA \"{prefix}\" CASCADE"))
        .await
        .unwrap();
    l2.clear().await.unwrap();
}

#[tokio::test]
async fn built_from_the_perf_toml_section() {
    let url = perf_testkit::require_redis!();
    let mut section = perf_core::config::CacheConfig::default();
    section.l2_url = Some(url);
    section.l2_prefix = perf_testkit::unique_name("tiered_config");
    let a: TieredCache<String> = TieredCache::builder()
        .from_config(&section)
        .unwrap()
        .build();
    let b: TieredCache<String> = TieredCache::builder()
        .from_config(&section)
        .unwrap()
        .build();
    assert!(a
        .set(b"k", "v".into(), WriteOptions::new())
        .await
        .is_complete());
    assert_eq!(b.get(b"k").await.as_deref().map(String::as_str), Some("v"));
    assert_eq!(b.stats().l2.unwrap().hits, 1);

    // The rollback switch.
    section.enabled = false;
    let off: TieredCache<String> = TieredCache::builder()
        .from_config(&section)
        .unwrap()
        .build();
    assert!(off.get(b"k").await.is_none());
    a.clear().await;

    section.enabled = true;
    section.l2_url = Some("http://nope".into());
    assert!(TieredCache::<String>::builder()
        .from_config(&section)
        .is_err());
}

#[tokio::test]
async fn failures_are_remembered_only_when_asked_and_only_for_their_ttl() {
    let clock = ManualClock::new();
    let cache: TieredCache<u32> = TieredCache::builder()
        .l1(l1())
        .clock(clock.shared())
        .negative_ttl(Duration::from_secs(5))
        .build();
    let calls = AtomicUsize::new(0);
    let fail = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err::<u32, _>(std::io::Error::other("down"))
    };
    let ok = || async { Ok::<_, std::io::Error>(1) };
    assert!(matches!(
        cache.get_or_compute(b"k", WriteOptions::new(), fail).await,
        Err(Error::Loader(_))
    ));
    let err = cache
        .get_or_compute(b"k", WriteOptions::new(), ok)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NegativelyCached { .. }) && err.to_string().contains("down"),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        *cache
            .get_or_compute(b"k", WriteOptions::new(), ok)
            .await
            .unwrap(),
        1
    );
    // A write forgets a remembered failure.
    assert!(cache
        .get_or_compute(b"j", WriteOptions::new(), fail)
        .await
        .is_err());
    cache.set(b"j", 2, WriteOptions::new()).await;
    assert_eq!(
        *cache
            .get_or_compute(b"j", WriteOptions::new(), ok)
            .await
            .unwrap(),
        2
    );
}

/// The real Redis tier, with reads held at a gate after they got their answer: a slow read.
#[derive(Debug)]
struct SlowReads {
    inner: Arc<RedisTier>,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl RemoteTier for SlowReads {
    fn name(&self) -> &'static str {
        "slow-redis"
    }
    async fn get(&self, key: &[u8]) -> perf_cache::Result<Option<Vec<u8>>> {
        let v = self.inner.get(key).await;
        self.gate.acquire().await.unwrap().forget();
        v
    }
    async fn mget(&self, keys: &[&[u8]]) -> perf_cache::Result<Vec<Option<Vec<u8>>>> {
        self.inner.mget(keys).await
    }
    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[&str],
    ) -> perf_cache::Result<()> {
        self.inner.set(key, value, ttl, tags).await
    }
    async fn mset(&self, entries: &[perf_cache::tier::TierEntry<'_>]) -> perf_cache::Result<()> {
        self.inner.mset(entries).await
    }
    async fn delete(&self, key: &[u8]) -> perf_cache::Result<bool> {
        self.inner.delete(key).await
    }
    async fn delete_by_tags(&self, tags: &[&str]) -> perf_cache::Result<u64> {
        self.inner.delete_by_tags(tags).await
    }
    async fn clear(&self) -> perf_cache::Result<u64> {
        self.inner.clear().await
    }
    async fn health(&self) -> perf_cache::Result<Duration> {
        self.inner.health().await
    }
    fn stats(&self) -> &perf_cache::tier::TierStats {
        self.inner.stats()
    }
}

#[tokio::test]
async fn a_slow_read_does_not_put_back_a_value_written_meanwhile() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_race");
    let redis = redis_tier(&url, &prefix);
    let slow = Arc::new(SlowReads {
        inner: redis.clone(),
        gate: tokio::sync::Semaphore::new(0),
    });
    let cache: TieredCache<String> = TieredCache::builder()
        .l1(l1())
        .l2(slow.clone() as SharedTier)
        .build();
    // Only L2 has v1.
    let old = TieredCache::<String>::builder()
        .l2(redis.clone() as SharedTier)
        .build();
    old.set(b"k", "v1".into(), WriteOptions::new()).await;

    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get(b"k").await })
    };
    // The read has its answer (v1) and waits at the gate; now v2 is written.
    while redis.stats().snapshot().hits == 0 {
        tokio::task::yield_now().await;
    }
    cache.set(b"k", "v2".into(), WriteOptions::new()).await;
    slow.gate.add_permits(1);
    assert_eq!(
        reader.await.unwrap().as_deref().map(String::as_str),
        Some("v1")
    );
    // The late v1 was not copied over v2 in L1.
    assert_eq!(
        cache
            .l1()
            .unwrap()
            .get(b"k".as_slice())
            .as_deref()
            .map(String::as_str),
        Some("v2")
    );
    assert_eq!(cache.stats().l1_promotions, 0);
    slow.gate.add_permits(100);
    cache.clear().await;
}

#[tokio::test]
async fn get_many_asks_l2_once_for_every_l1_miss() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_many");
    let tier = redis_tier(&url, &prefix);
    let a: TieredCache<u32> = with_l2(&tier);
    let b: TieredCache<u32> = with_l2(&tier);
    let keys: Vec<Vec<u8>> = (0..10u32).map(|i| format!("k{i}").into_bytes()).collect();
    for (i, k) in keys.iter().enumerate() {
        a.set(k, i as u32, WriteOptions::new()).await;
    }
    b.set(&keys[0], 100, WriteOptions::new()).await; // B's own newer value, in B's L1
    let mut conn = raw(&url).await;
    let () = redis::cmd("SET")
        .arg(tier.storage_key(&keys[3]))
        .arg("garbage")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut asked: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    asked.push(b"missing");
    let calls_before = tier.stats().snapshot().latency.count;
    let got = b.get_many(&asked).await;
    let got: Vec<Option<u32>> = got.iter().map(|v| v.as_deref().copied()).collect();
    assert_eq!(
        got,
        [
            Some(100),
            Some(1),
            Some(2),
            None,
            Some(4),
            Some(5),
            Some(6),
            Some(7),
            Some(8),
            Some(9),
            None
        ]
    );
    // One multi-get, plus the delete of the undecodable value.
    assert_eq!(tier.stats().snapshot().latency.count - calls_before, 2);
    let l2 = b.stats().l2.unwrap();
    assert_eq!((l2.hits, l2.misses, l2.decode_errors), (8, 2, 1));
    assert_eq!(b.stats().l1_promotions, 8);
    // Now L1 answers: no further L2 calls for those keys.
    let calls_before = tier.stats().snapshot().latency.count;
    let again = b.get_many(&asked[..3]).await;
    assert!(again.iter().all(Option::is_some));
    assert_eq!(tier.stats().snapshot().latency.count, calls_before);
    a.clear().await;
}

/// `set_many` writes every entry to L1 and, in one multi-set, to Redis with the shared TTL and
/// tags: another manager reads them from Redis, and a tag invalidation removes them all.
#[tokio::test]
async fn set_many_writes_every_level_with_ttl_and_tags() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_set_many");
    let tier = redis_tier(&url, &prefix);
    let a: TieredCache<u32> = with_l2(&tier);
    let b: TieredCache<u32> = with_l2(&tier);
    let calls_before = tier.stats().snapshot().latency.count;
    let entries: Vec<(Vec<u8>, u32)> = (0..300u32)
        .map(|i| (format!("many:{i}").into_bytes(), i))
        .collect();
    let report = a
        .set_many(
            entries,
            WriteOptions::new()
                .ttl(Duration::from_secs(120))
                .tags(&["batch"]),
        )
        .await;
    assert_eq!(report.l1, Some(true));
    assert!(report.is_complete(), "{report:?}");
    // One multi-set call on the tier for the 300 entries.
    assert_eq!(tier.stats().snapshot().latency.count - calls_before, 1);
    assert_eq!(a.l1().unwrap().len(), 300);
    let mut conn = raw(&url).await;
    let ms: i64 = redis::cmd("PTTL")
        .arg(tier.storage_key(b"many:7"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ms > 100_000 && ms <= 120_000, "pttl {ms}");
    assert_eq!(b.get(b"many:299").await.as_deref(), Some(&299));
    assert!(matches!(
        b.delete_by_tags(&["batch"]).await.l2,
        Some(Ok(()))
    ));
    assert_eq!(tier.get(b"many:0").await.unwrap(), None);
    assert_eq!(tier.get(b"many:299").await.unwrap(), None);
    tier.clear().await.unwrap();
}

/// A loader for `get_or_refresh` that counts its calls, waits for `gate` (if any), then
/// returns `value` (or an error when `value` is `None`).
pub(crate) fn refresh_loader(
    calls: &Arc<AtomicUsize>,
    gate: Option<&Arc<tokio::sync::Notify>>,
    value: Option<&'static str>,
) -> impl FnOnce() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<String, std::io::Error>> + Send>,
> + Send
       + 'static {
    let (calls, gate) = (calls.clone(), gate.cloned());
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = gate {
                gate.notified().await;
            }
            value
                .map(str::to_owned)
                .ok_or_else(|| std::io::Error::other("upstream down"))
        })
    }
}

/// The bound of the tests' waits for background work: generous, so that a loaded machine
/// (several servers, a cluster being created) does not fail a test; it is not a timing
/// assertion, only what keeps a broken test from hanging.
pub(crate) const WAIT_BOUND: Duration = Duration::from_secs(30);

/// Polls (bounded by [`WAIT_BOUND`]) until `done` holds: background work on Redis, not time, is
/// awaited.
pub(crate) async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT_BOUND;
    while Instant::now() < deadline {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test]
async fn stale_values_are_served_while_one_refresh_writes_every_level() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_swr");
    let tier = redis_tier(&url, &prefix);
    let clock = ManualClock::new();
    let a: TieredCache<String> = TieredCache::builder()
        .l1(Cache::builder().clock(clock.shared()).build())
        .l2(tier.clone() as SharedTier)
        .clock(clock.shared())
        .build();
    // Another process without L1: its staleness comes from the expiry stored in Redis.
    let b: TieredCache<String> = TieredCache::builder()
        .l2(redis_tier(&url, &prefix) as SharedTier)
        .clock(clock.shared())
        .build();
    let opts = WriteOptions::new().ttl(Duration::from_secs(60));
    let age = Duration::from_secs(30);
    let calls = Arc::new(AtomicUsize::new(0));
    let get = |c: &TieredCache<String>, loader| {
        let c = c.clone();
        async move { c.get_or_refresh(b"k", opts, age, loader).await.unwrap() }
    };

    // A miss loads in the foreground.
    assert_eq!(
        *get(&a, refresh_loader(&calls, None, Some("v1"))).await,
        "v1"
    );
    // Fresh (20 s old): no refresh.
    clock.advance(Duration::from_secs(20));
    assert_eq!(
        *get(&a, refresh_loader(&calls, None, Some("x"))).await,
        "v1"
    );
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Stale (31 s old): three readers get v1 at once; one refresh runs, held at the gate.
    clock.advance(Duration::from_secs(11));
    let gate = Arc::new(tokio::sync::Notify::new());
    for _ in 0..3 {
        let loader = refresh_loader(&calls, Some(&gate), Some("v2"));
        assert_eq!(*get(&a, loader).await, "v1");
    }
    until("the refresh's start", async || {
        calls.load(Ordering::SeqCst) == 2
    })
    .await;
    gate.notify_one();
    until("the refreshed value in L1", async || {
        a.get(b"k").await.as_deref().map(String::as_str) == Some("v2")
    })
    .await;
    // The refresh has written every level once it is counted.
    until("the refresh to finish", async || a.stats().refreshes == 1).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one refresh for three stale reads"
    );
    // Written to L2 too, with a new TTL: fresh for B.
    assert_eq!(
        *get(&b, refresh_loader(&calls, None, Some("x"))).await,
        "v2"
    );
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // B sees v2 go stale from Redis's copy; its refresh fails and v2 stays until its TTL.
    clock.advance(Duration::from_secs(31));
    assert_eq!(*get(&b, refresh_loader(&calls, None, None)).await, "v2");
    until("the failed refresh", async || b.stats().refreshes == 1).await;
    assert_eq!((b.stats().loads, b.stats().load_errors), (1, 1));
    assert_eq!(b.get(b"k").await.as_deref().map(String::as_str), Some("v2"));
    // The next stale read refreshes again, and v3 reaches Redis.
    assert_eq!(
        *get(&b, refresh_loader(&calls, None, Some("v3"))).await,
        "v2"
    );
    until("the second refresh", async || b.stats().refreshes == 2).await;
    assert_eq!(b.get(b"k").await.as_deref().map(String::as_str), Some("v3"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // Past its TTL nothing stale is served: the read loads in the foreground.
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        *get(&b, refresh_loader(&calls, None, Some("v4"))).await,
        "v4"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    a.clear().await;
}

/// One "process" for the fleet-lock refresh tests: an L1 and the manager on `clock`, `tier`
/// as L2 and as the holder of a 30 s fleet lock.
pub(crate) fn fleet_refresh_cache<T: RemoteTier + RedisBackend + 'static>(
    tier: Arc<T>,
    clock: &ManualClock,
) -> TieredCache<String> {
    TieredCache::builder()
        .l1(Cache::builder().clock(clock.shared()).build())
        .l2(tier.clone() as SharedTier)
        .clock(clock.shared())
        .fleet_lock(tier, FleetLockConfig::new(Duration::from_secs(30)))
        .build()
}

#[tokio::test]
async fn with_the_fleet_lock_one_process_refreshes() {
    let url = perf_testkit::require_redis!();
    let prefix = perf_testkit::unique_name("tiered_swr_fleet");
    let clock = ManualClock::new();
    let make = || fleet_refresh_cache(redis_tier(&url, &prefix), &clock);
    let (a, b) = (make(), make());
    let opts = WriteOptions::new().ttl(Duration::from_secs(60));
    let age = Duration::from_secs(30);
    let (calls_a, calls_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let v = a
        .get_or_refresh(b"k", opts, age, refresh_loader(&calls_a, None, Some("v1")))
        .await
        .unwrap();
    assert_eq!(*v, "v1");
    assert_eq!(*b.get(b"k").await.unwrap(), "v1");
    clock.advance(Duration::from_secs(31));
    // A's refresh takes the lock and waits at the gate; B's stale hit finds it locked.
    let gate = Arc::new(tokio::sync::Notify::new());
    let loader = refresh_loader(&calls_a, Some(&gate), Some("v2"));
    assert_eq!(
        *a.get_or_refresh(b"k", opts, age, loader).await.unwrap(),
        "v1"
    );
    until("A's refresh to start", async || {
        calls_a.load(Ordering::SeqCst) == 2
    })
    .await;
    // A stale read in B: v1 at once, and B's refresh, the `nth`, left to A.
    let b_stale_read = async |nth: u64, what: &str| {
        let loader = refresh_loader(&calls_b, None, Some("from b"));
        assert_eq!(
            *b.get_or_refresh(b"k", opts, age, loader).await.unwrap(),
            "v1"
        );
        until(what, async || b.stats().refreshes_elsewhere == nth).await;
    };
    b_stale_read(1, "B to leave the refresh to A").await;
    gate.notify_one();
    until("A's refresh", async || a.stats().refreshes == 1).await;
    // B's L1 still holds v1 (no coherency here); Redis has A's v2.
    let l2_only: TieredCache<String> = TieredCache::builder()
        .l2(redis_tier(&url, &prefix) as SharedTier)
        .clock(clock.shared())
        .build();
    assert_eq!(
        l2_only.get(b"k").await.as_deref().map(String::as_str),
        Some("v2")
    );
    assert_eq!(calls_b.load(Ordering::SeqCst), 0, "B never ran its loader");
    assert_eq!(b.stats().refreshes, 0);
    // B's L1 copy is still stale: its next read takes the free lock, finds A's fresh value
    // in Redis and uses it instead of loading again.
    b_stale_read(2, "B to take A's value").await;
    assert_eq!(b.get(b"k").await.as_deref().map(String::as_str), Some("v2"));
    assert_eq!(
        calls_b.load(Ordering::SeqCst),
        0,
        "B still never ran its loader"
    );
    a.clear().await;
}
