//! The `cache_redis` group: perf-cache's Redis L2 tier (pipelined multi-set / multi-get through
//! one multiplexed connection) against `redis-benchmark` on the same server in the same run.
//!
//! Both sides write and read 64-byte values over a 100k keyspace, 16 commands per pipeline, with
//! one client and with 50 concurrent clients. Differences to keep in mind when reading the rows:
//! our multi-get is one `MGET` of 16 keys where `redis-benchmark` pipelines 16 `GET`s; our
//! multi-set sends `SET key value PX ttl` (with a namespace prefix), as the cache does; our 50
//! "clients" are 50 tokio tasks sharing one multiplexed connection, theirs are 50 connections.
//! Both sides run in a spare database (the highest of 15..8 that holds no key at the start:
//! `redis-benchmark --dbnum N`, our URL with `/N`), and what they wrote is removed afterwards
//! by pattern (`key:*` and our prefix); nothing is flushed.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perf_cache::redis::{RedisTier, RedisTierConfig};
use perf_cache::tier::{RemoteTier, TierEntry};

use crate::harness::{Bench, Row};

const KEYSPACE: u64 = 100_000;
const PIPELINE: usize = 16;
const VALUE: [u8; 64] = [0xab; 64];

/// `redis-benchmark -t set,get` results in requests per second, run in database `db`.
fn redis_benchmark(
    host: &str,
    port: u16,
    db: u32,
    clients: usize,
    requests: u64,
) -> Option<(f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", host, "-p", &port.to_string()])
        .args(["-t", "set,get", "-n", &requests.to_string()])
        .args(["-P", &PIPELINE.to_string(), "-c", &clients.to_string()])
        .args(["-d", &VALUE.len().to_string(), "-r", &KEYSPACE.to_string()])
        .args(["--dbnum", &db.to_string(), "-q", "--csv"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = |test: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
    };
    Some((rps("SET")?, rps("GET")?))
}

/// Keys per second of `clients` tasks running `batches` pipelined batches each.
async fn ours(tier: &Arc<RedisTier>, clients: usize, requests: u64, get: bool) -> f64 {
    let per_client = requests / clients as u64 / PIPELINE as u64;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let tier = tier.clone();
        tasks.push(tokio::spawn(async move {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1);
            for _ in 0..per_client {
                let keys: Vec<Vec<u8>> = (0..PIPELINE)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        format!("key:{:012}", x % KEYSPACE).into_bytes()
                    })
                    .collect();
                if get {
                    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                    tier.mget(&refs).await.unwrap();
                } else {
                    let entries: Vec<TierEntry<'_>> = keys
                        .iter()
                        .map(|k| TierEntry::new(k, &VALUE, Some(Duration::from_secs(600))))
                        .collect();
                    tier.mset(&entries).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per_client * clients as u64 * PIPELINE as u64) as f64 / started.elapsed().as_secs_f64()
}

/// A Redis database that held no key when the group started: benchmark keys go there (never
/// into database 0, where applications and tests live) and are removed by pattern afterwards.
/// Nothing is ever flushed.
pub(crate) struct SpareDb {
    /// The database number.
    pub(crate) db: u32,
    /// The Redis URL with `/db` as its path.
    pub(crate) url: String,
}

/// `url` with its database path replaced by `/db` (query string kept).
pub(crate) fn url_with_db(url: &str, db: u32) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}

/// A multiplexed connection to `url`, or `None` when it cannot be made.
pub(crate) async fn connect(url: &str) -> Option<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()
}

/// The multi-threaded runtime (two workers, like the machine's cores) the Redis groups use.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A spare database and a tier on it under a unique prefix (`unique_name(name)`), with a 5 s
/// call timeout; records a skip and returns `None` when no database is free.
pub(crate) fn tier_in_spare_db(
    bench: &mut Bench,
    runtime: &tokio::runtime::Runtime,
    url: &str,
    name: &str,
) -> Option<(SpareDb, Arc<RedisTier>)> {
    let Some(spare) = runtime.block_on(spare_db(url)) else {
        bench.skip("no empty Redis database among 8..15 to run in");
        return None;
    };
    let prefix = perf_testkit::unique_name(name);
    let tier = runtime.block_on(async {
        RedisTier::new(
            RedisTierConfig::new(spare.url.as_str())
                .prefix(prefix.as_str())
                .timeout(Duration::from_secs(5)),
        )
        .unwrap()
    });
    Some((spare, Arc::new(tier)))
}

/// The highest-numbered of databases 15 down to 8 that holds no key now.
pub(crate) async fn spare_db(url: &str) -> Option<SpareDb> {
    for db in (8..16u32).rev() {
        let candidate = url_with_db(url, db);
        // A server configured with fewer databases refuses the SELECT: try the next one.
        let Some(mut conn) = connect(&candidate).await else {
            continue;
        };
        let keys: Option<u64> = redis::cmd("DBSIZE").query_async(&mut conn).await.ok();
        if keys == Some(0) {
            return Some(SpareDb { db, url: candidate });
        }
    }
    None
}

impl SpareDb {
    /// Unlinks every key matching `pattern` (a `SCAN MATCH` glob); returns how many.
    pub(crate) async fn unlink_matching(&self, pattern: &str) -> u64 {
        let Some(mut conn) = connect(&self.url).await else {
            return 0;
        };
        let mut cursor = 0u64;
        let mut removed = 0u64;
        loop {
            let page: Option<(u64, Vec<Vec<u8>>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .ok();
            let Some((next, keys)) = page else {
                return removed;
            };
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(0);
                removed += n;
            }
            if next == 0 {
                return removed;
            }
            cursor = next;
        }
    }

    /// Keys left in the database.
    pub(crate) async fn keys_left(&self) -> u64 {
        match connect(&self.url).await {
            Some(mut conn) => redis::cmd("DBSIZE")
                .query_async(&mut conn)
                .await
                .unwrap_or(u64::MAX),
            None => u64::MAX,
        }
    }
}

/// L2 get/set ops/s, pipelined, vs `redis-benchmark`.
pub(crate) fn l2_vs_redis_benchmark(bench: &mut Bench) {
    let Some(url) = bench.require_redis() else {
        return;
    };
    if perf_testkit::support::find_binary("redis-benchmark").is_none() {
        bench.skip("needs the redis-benchmark binary on PATH (apt-get install redis-tools)");
        return;
    }
    let Some((host, port)) = perf_testkit::support::host_port(&url) else {
        bench.skip("REDIS_URL has no host:port");
        return;
    };
    let requests: u64 = bench.pick(32_000, 320_000);
    let runtime = runtime();
    let Some((spare, tier)) = tier_in_spare_db(bench, &runtime, &url, "bench_l2") else {
        return;
    };
    for clients in [1usize, 50] {
        // Interleave: ours, theirs, ours, theirs, ... and keep the medians.
        let rounds = bench.pick(3, 5);
        let (mut our_set, mut our_get, mut peer_set, mut peer_get) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            our_set.push(runtime.block_on(ours(&tier, clients, requests, false)));
            our_get.push(runtime.block_on(ours(&tier, clients, requests, true)));
            let Some((s, g)) = redis_benchmark(&host, port, spare.db, clients, requests) else {
                bench.skip("redis-benchmark did not run or printed no CSV");
                runtime.block_on(cleanup(&spare, &tier));
                return;
            };
            peer_set.push(s);
            peer_get.push(g);
        }
        let med = |v: &mut Vec<f64>| crate::harness::median(v.as_slice());
        let note = format!(
            "{requests} keys per run, 64 B values, 100k keyspace, median of {rounds} interleaved runs; \
             ours: tokio tasks on one multiplexed connection, theirs: connections; both in spare db {}",
            spare.db
        );
        bench.record(
            Row::new(
                format!("set, pipeline {PIPELINE}, {clients} client(s)"),
                "ops/s",
                true,
            )
            .subject("perf-cache RedisTier::mset (SET PX)", med(&mut our_set))
            .peer("redis-benchmark SET -P 16", med(&mut peer_set))
            .note(note.clone()),
        );
        bench.record(
            Row::new(
                format!("get, pipeline {PIPELINE}, {clients} client(s)"),
                "ops/s",
                true,
            )
            .subject("perf-cache RedisTier::mget (MGET of 16)", med(&mut our_get))
            .peer("redis-benchmark GET -P 16", med(&mut peer_get))
            .note(note),
        );
    }
    runtime.block_on(cleanup(&spare, &tier));
}

/// Removes what both sides wrote: our namespace and `redis-benchmark`'s `key:*` keyspace, in
/// the spare database only; says so if anything is left.
async fn cleanup(spare: &SpareDb, tier: &RedisTier) {
    let _ = tier.clear().await;
    spare.unlink_matching("key:*").await;
    let left = spare.keys_left().await;
    if left != 0 {
        eprintln!(
            "perf-bench: cache_redis: {left} keys left in Redis database {} after cleanup",
            spare.db
        );
    }
}

/// Coherency staleness: how long after `set` returns in process A the old entry is gone from
/// process B's L1 (two managers sharing Redis, separate L1s, in one OS process).
pub(crate) fn coherency_staleness(bench: &mut Bench) {
    use perf_cache::coherency::{Coherency, CoherencyConfig};
    use perf_cache::l1::Cache;
    use perf_cache::tier::SharedTier;
    use perf_cache::tiered::{TieredCache, WriteOptions};

    let Some(url) = bench.require_redis() else {
        return;
    };
    let rounds: usize = bench.pick(300, 3_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let prefix = perf_testkit::unique_name("bench_coherency");
    let (gone_us, coherency_stats) = runtime.block_on(async {
        let process = || {
            let tier = Arc::new(
                RedisTier::new(RedisTierConfig::new(url.as_str()).prefix(prefix.as_str())).unwrap(),
            );
            let cache: TieredCache<u64> = TieredCache::builder()
                .l1(Cache::new(1 << 20))
                .l2(tier.clone() as SharedTier)
                .build();
            let coherency = Coherency::attach(&cache, &tier, CoherencyConfig::default()).unwrap();
            (cache, coherency)
        };
        let (a, _ca) = process();
        let (b, cb) = process();
        assert!(_ca.wait_subscribed(Duration::from_secs(5)).await);
        assert!(cb.wait_subscribed(Duration::from_secs(5)).await);
        let mut gone_us = Vec::with_capacity(rounds);
        for i in 0..rounds as u64 {
            a.set(b"k", i, WriteOptions::new()).await;
            // B reads the new value into its L1. A promotion is skipped while the invalidation
            // of this very write is still in flight (the read may have raced with it), so
            // read until B holds it.
            let mut held = false;
            for _ in 0..100_000 {
                if b.get(b"k").await.as_deref() == Some(&i)
                    && b.l1().unwrap().contains_key(b"k".as_slice())
                {
                    held = true;
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert!(held, "B never held the value in L1");
            a.set(b"k", i + 1, WriteOptions::new()).await;
            let returned = Instant::now();
            let mut spins = 0u64;
            while b.l1().unwrap().contains_key(b"k".as_slice()) {
                spins += 1;
                assert!(spins < 50_000_000, "invalidation never arrived");
                tokio::task::yield_now().await;
            }
            gone_us.push(returned.elapsed().as_secs_f64() * 1e6);
        }
        a.clear().await;
        (gone_us, cb.stats())
    });
    let mut sorted = gone_us.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let note = format!(
        "{rounds} overwrites of a key held in B's L1; two managers with separate L1s in one process, \
         pub/sub over the shared Redis"
    );
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        bench.record(
            Row::new(
                format!("coherency: A's set returned -> entry gone from B's L1, {label}"),
                "us",
                false,
            )
            .subject("perf-cache Coherency (Redis pub/sub)", pick(q))
            .note(note.clone()),
        );
    }
    let s = &coherency_stats.staleness;
    bench.record(
        Row::new(
            "coherency: publish -> applied in B (send to apply), p99",
            "us",
            false,
        )
        .subject("perf-cache Coherency (Redis pub/sub)", s.p99() as f64 / 1e3)
        .note(format!(
            "{} messages applied; p50 {:.0} us, max {:.0} us",
            s.count,
            s.p50() as f64 / 1e3,
            s.max as f64 / 1e3
        )),
    );
}
