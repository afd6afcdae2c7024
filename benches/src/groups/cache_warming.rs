//! The `cache_warming` group: perf-cache's `Warmer` filling L1 and L1 + Redis, in items/s,
//! against plain insert loops (moka, quick_cache, perf-cache's own L1) and against the redis
//! crate writing the same number of keys one `SET` per round trip, or pipelined.
//!
//! The targets are ≥ 1M items/s into L1 and ≥ 100k items/s into Redis (the plan's:
//! 10,000/s); they are noted on the rows, the ratios are against the peers of the same run.
//! Loaders return at once (`u64` values), so the figures are the cost of the warming machinery
//! and the writes. Redis keys go to a spare database under a unique prefix and are removed.

// A benchmark whose setup fails should stop loudly, not report a figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use perf_cache::l1::Cache;
use perf_cache::redis::RedisTier;
use perf_cache::tier::SharedTier;
use perf_cache::tiered::TieredCache;
use perf_cache::warming::{WarmTask, Warmer};

use super::cache_redis::{connect, runtime, tier_in_spare_db, SpareDb};
use crate::harness::{median, Bench, Row};

/// Keys per batch-loader call.
const BATCH: usize = 1_000;
/// Batches in flight.
const CONCURRENCY: usize = 4;
/// Items in flight for item tasks (one tokio task per key: more of them hide the spawn cost).
const ITEM_CONCURRENCY: usize = 64;
/// Time to live of the peers' Redis writes: the tier's default, which ours get.
const TTL: Duration = Duration::from_secs(3600);

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("warm:{i:08}").into_bytes())
        .collect()
}

/// A batch task whose loader returns each key's length.
fn batch_task(keys: Vec<Vec<u8>>) -> WarmTask<u64> {
    WarmTask::batch("bench", 0, keys, BATCH, |keys: Vec<Vec<u8>>| async move {
        Ok::<_, std::io::Error>(keys.iter().map(|k| k.len() as u64).collect())
    })
}

/// Items/s of a `Warmer` run of `task` into `target`; checks every key was stored.
fn run_warmer<T>(
    rt: &tokio::runtime::Runtime,
    task: WarmTask<u64>,
    concurrency: usize,
    target: T,
) -> f64
where
    T: perf_cache::warming::WarmTarget<u64> + Clone,
{
    let n = task.len() as u64;
    let started = Instant::now();
    let report = rt.block_on(
        Warmer::new()
            .max_concurrency(concurrency)
            .task(task)
            .run(target),
    );
    let secs = started.elapsed().as_secs_f64();
    let t = &report.unwrap().tasks[0];
    assert_eq!(
        (t.completed, t.errors),
        (n, 0),
        "warming did not store every key"
    );
    n as f64 / secs
}

/// Items/s of `insert` called for every key in a plain loop.
fn plain_loop(keys: Vec<Vec<u8>>, mut insert: impl FnMut(Vec<u8>, u64)) -> f64 {
    let n = keys.len();
    let started = Instant::now();
    for k in keys {
        let v = k.len() as u64;
        insert(k, v);
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn l1_cache() -> Cache<Vec<u8>, u64> {
    Cache::new(1 << 30)
}

/// Warming into L1 vs plain insert loops.
pub(crate) fn l1(bench: &mut Bench) {
    let n: usize = bench.pick(200_000, 1_000_000);
    let rounds: usize = bench.pick(3, 5);
    let rt = runtime();
    let mut ours_batch = Vec::new();
    let mut ours_items = Vec::new();
    let mut own_loop = Vec::new();
    let mut moka_loop = Vec::new();
    let mut quick_loop = Vec::new();
    for _ in 0..rounds {
        ours_batch.push(run_warmer(
            &rt,
            batch_task(keys(n)),
            CONCURRENCY,
            l1_cache(),
        ));
        let items = keys(n).into_iter().fold(WarmTask::new("items", 0), |t, k| {
            let v = k.len() as u64;
            t.item(k, move || async move { Ok::<_, std::io::Error>(v) })
        });
        ours_items.push(run_warmer(&rt, items, ITEM_CONCURRENCY, l1_cache()));
        let own = l1_cache();
        own_loop.push(plain_loop(keys(n), |k, v| {
            own.insert(k, v);
        }));
        let moka: moka::sync::Cache<Vec<u8>, u64> = moka::sync::Cache::new(n as u64);
        moka_loop.push(plain_loop(keys(n), |k, v| moka.insert(k, v)));
        let quick: quick_cache::sync::Cache<Vec<u8>, u64> = quick_cache::sync::Cache::new(n);
        quick_loop.push(plain_loop(keys(n), |k, v| quick.insert(k, v)));
    }
    let note = format!(
        "{n} keys, median of {rounds} interleaved runs; Warmer: batches of {BATCH}, {CONCURRENCY} in flight, \
         2 tokio workers; peers: one thread inserting in a loop, nothing else (no skip check, no report); \
         target >= 1M items/s"
    );
    let batch = median(&ours_batch);
    for (peer, values) in [
        ("moka::sync insert loop", &moka_loop),
        ("quick_cache::sync insert loop", &quick_loop),
        ("perf-cache L1 insert loop", &own_loop),
    ] {
        bench.record(
            Row::new(format!("warm {n} keys into L1"), "items/s", true)
                .subject("perf-cache Warmer, batch task", batch)
                .peer(peer, median(values))
                .note(note.clone()),
        );
    }
    bench.record(
        Row::new(
            format!("warm {n} keys into L1, one loader per key"),
            "items/s",
            true,
        )
        .subject("perf-cache Warmer, item task", median(&ours_items))
        .peer("moka::sync insert loop", median(&moka_loop))
        .note(format!(
            "{note}; the item task runs each key's loader as its own tokio task, {ITEM_CONCURRENCY} in flight"
        )),
    );
}

/// Per-key `SET … PX` awaited one at a time: the plan's naive warming loop.
async fn naive_sets(url: &str, prefix: &str, n: usize, value: &[u8]) -> f64 {
    let mut conn = connect(url).await.unwrap();
    let ms = TTL.as_millis() as u64;
    let started = Instant::now();
    for i in 0..n {
        let () = redis::cmd("SET")
            .arg(format!("{prefix}:naive:{i:08}"))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Pipelines of `BATCH` `SET … PX`, `CONCURRENCY` at once on one multiplexed connection.
async fn pipelined_sets(url: &str, prefix: &str, n: usize, value: &[u8]) -> f64 {
    let conn = connect(url).await.unwrap();
    let ms = TTL.as_millis() as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (mut conn, prefix, value) = (conn.clone(), prefix.to_owned(), value.to_vec());
        tasks.push(tokio::spawn(async move {
            for chunk in (0..n).skip(w * BATCH).step_by(CONCURRENCY * BATCH) {
                let mut pipe = redis::pipe();
                for i in chunk..(chunk + BATCH).min(n) {
                    pipe.cmd("SET")
                        .arg(format!("{prefix}:piped:{i:08}"))
                        .arg(&value)
                        .arg("PX")
                        .arg(ms)
                        .ignore();
                }
                let () = pipe.query_async(&mut conn).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Warming into L1 + Redis vs the redis crate writing the same keys.
pub(crate) fn redis(bench: &mut Bench) {
    let Some(url) = bench.require_redis() else {
        return;
    };
    let n: usize = bench.pick(100_000, 400_000);
    let naive_n = n / 5;
    let rounds: usize = bench.pick(3, 5);
    let rt = runtime();
    let Some((spare, tier)) = tier_in_spare_db(bench, &rt, &url, "bench_warm") else {
        return;
    };
    let prefix = tier.config().prefix.clone();
    // The peers write values as long as ours: the codec envelope around a u64.
    let value = vec![0xabu8; 16];
    let (mut ours, mut ours_l2, mut naive, mut piped) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Fresh keys each round: a key left by the previous round would be skipped.
        rt.block_on(tier_clear(&tier));
        let tiered: TieredCache<u64> = TieredCache::builder()
            .l1(Cache::new(1 << 30))
            .l2(tier.clone() as SharedTier)
            .build();
        ours.push(run_warmer(&rt, batch_task(keys(n)), CONCURRENCY, tiered));
        rt.block_on(tier_clear(&tier));
        let l2_only: TieredCache<u64> = TieredCache::builder()
            .l2(tier.clone() as SharedTier)
            .build();
        ours_l2.push(run_warmer(&rt, batch_task(keys(n)), CONCURRENCY, l2_only));
        naive.push(rt.block_on(naive_sets(&spare.url, &prefix, naive_n, &value)));
        piped.push(rt.block_on(pipelined_sets(&spare.url, &prefix, n, &value)));
    }
    rt.block_on(cleanup(&spare, &tier, &prefix));
    let note = format!(
        "{n} keys ({naive_n} for the per-key loop), 16 B values, SET PX, median of {rounds} interleaved runs, \
         spare db {}; Warmer: batches of {BATCH} (one pipelined MGET skip check + pipelined SETs of 500), \
         {CONCURRENCY} in flight; target >= 100k items/s",
        spare.db
    );
    for (subject, values) in [
        ("perf-cache Warmer -> L1 + Redis", &ours),
        ("perf-cache Warmer -> Redis only", &ours_l2),
    ] {
        bench.record(
            Row::new(format!("warm {n} keys into Redis"), "items/s", true)
                .subject(subject, median(values))
                .peer("redis crate, one SET per round trip", median(&naive))
                .note(note.clone()),
        );
        bench.record(
            Row::new(format!("warm {n} keys into Redis"), "items/s", true)
                .subject(subject, median(values))
                .peer(
                    format!("redis crate, pipelines of {BATCH} SETs, {CONCURRENCY} in flight"),
                    median(&piped),
                )
                .note(note.clone()),
        );
    }
}

async fn tier_clear(tier: &RedisTier) {
    use perf_cache::tier::RemoteTier;
    tier.clear().await.unwrap();
}

/// Removes everything written under `prefix` in the spare database; says so if keys are left.
async fn cleanup(spare: &SpareDb, tier: &RedisTier, prefix: &str) {
    tier_clear(tier).await;
    spare.unlink_matching(&format!("{prefix}:*")).await;
    let left = spare.keys_left().await;
    if left != 0 {
        eprintln!(
            "perf-bench: cache_warming: {left} keys left in Redis database {} after cleanup",
            spare.db
        );
    }
}
